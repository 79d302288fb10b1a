// Sentinel console: the API client.
//
// The key lives in sessionStorage only (this tab, until it closes), never in a URL or in
// localStorage, and goes out as "Authorization: Bearer KEY" on every request. The console uses
// the same API and the same roles as any other client: it has no privileges of its own.

const STORAGE = "sentinel.apiKey";
const listeners = [];

export function getKey() {
  try {
    return window.sessionStorage.getItem(STORAGE) || "";
  } catch (e) {
    return "";
  }
}

export function setKey(key) {
  try {
    if (key)
      window.sessionStorage.setItem(STORAGE, key);
    else
      window.sessionStorage.removeItem(STORAGE);
  } catch (e) {
    // Storage disabled: the key cannot be kept, every request goes without one.
  }
  for (const fn of listeners)
    fn(key);
}

export function onKeyChange(fn) {
  listeners.push(fn);
}

/** An answer other than 2xx, or no answer at all (status 0). */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/**
 * One call to the daemon. Resolves with the parsed JSON body; rejects with an ApiError that
 * carries the status and the daemon's "error" text.
 */
export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = getKey();
  if (key)
    headers.Authorization = "Bearer " + key;
  const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "the daemon did not answer (" + e.message + ")", null);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!res.ok) {
    const msg = data && typeof data.error === "string" ? data.error : res.statusText;
    throw new ApiError(res.status, msg, data);
  }
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);

/** Builds a query string from the non-empty members of @p params ("" when none). */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && String(v) !== "")
      q.set(k, String(v));
  const s = q.toString();
  return s ? "?" + s : "";
}

/**
 * A sentence for a person about @p err, for the action described by @p what ("approving",
 * "reading incidents"): 401 and 403 say what the key lacks.
 */
export function explain(err, what) {
  if (!(err instanceof ApiError))
    return "Unexpected error while " + what + ": " + String(err && err.message ? err.message : err);
  if (err.status === 401)
    return getKey()
      ? "This key was refused (401: " + err.message + "). Check it, or paste another key above."
      : "The daemon needs an API key (401). Paste a key above.";
  if (err.status === 403) {
    const m = /role '([a-z]+)' may not do this \(needs ([a-z]+)\)/.exec(err.message || "");
    if (m)
      return "This key is " + article(m[1]) + " " + m[1] + ": " + what + " needs " + m[2] + ".";
    return "Forbidden (403) while " + what + ": " + err.message;
  }
  if (err.status === 0)
    return "No answer from the daemon while " + what + ": " + err.message;
  return "The daemon answered " + err.status + " while " + what + ": " + err.message;
}

function article(word) {
  return /^[aeiou]/.test(word) ? "an" : "a";
}
