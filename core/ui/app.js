// Sentinel console: routing by location hash and the views (#/incidents, #/incidents/ID,
// #/audit, #/silences, #/notifications). Everything is built with DOM calls (textContent, never
// innerHTML), so nothing the daemon returns is ever parsed as markup.

import { ApiError, explain, get, getKey, onKeyChange, post, query, setKey } from "./api.js";
import { drawChart, fmtNum } from "./charts.js";

const REFRESH_MS = 5000;
const HEALTH_MS = 15000;
const WINDOW_MS = 30 * 60 * 1000; // charts: onset - 30 min .. last anomaly + 30 min
const MAX_CHARTS = 6;
const STATES = ["gathering", "analyzing", "awaiting_approval", "executing", "verifying",
  "rolling_back", "resolved", "escalated", "rejected", "closed"];
const AUDIT_ACTIONS = ["approve", "reject", "approval_refused", "execution_intent", "execution",
  "execution_resumed", "execution_denied", "execution_dry_run", "action_denied", "rollback",
  "rollback_failed", "silence_create", "silence_expire", "login_failed", "config_reload", "start",
  "stop"];

const viewEl = document.getElementById("view");
const banner = document.getElementById("banner");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("api-key");
const keyState = document.getElementById("key-state");
const healthEl = document.getElementById("health");

// State of the page, reset when the key changes.
let authPaused = false;   // a 401: periodic refreshes stop until another key is given
let decideRefused = false; // a 403 on approve/reject: this key cannot decide
let current = { gen: 0, timers: [] };
const seriesCache = new Map();

// ---- small DOM helpers ----

function h(tag, attrs, ...kids) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false)
      continue;
    if (k === "class")
      n.className = v;
    else if (k.startsWith("on") && typeof v === "function")
      n.addEventListener(k.slice(2), v);
    else
      n.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of kids.flat(Infinity))
    if (c !== null && c !== undefined && c !== false)
      n.append(c instanceof Node ? c : String(c));
  return n;
}

/** A table with a caption and column headers; rows are arrays of cells or {attrs, cells}. */
function table(id, caption, cols, rows, empty) {
  const body = h("tbody", {});
  for (const r of rows) {
    const cells = Array.isArray(r) ? r : r.cells;
    body.append(h("tr", Array.isArray(r) ? {} : r.attrs, cells.map((c, i) =>
      h("td", { class: cols[i].cls }, c))));
  }
  if (!rows.length)
    body.append(h("tr", { class: "empty" }, h("td", { colspan: cols.length }, empty || "None.")));
  return h("table", { id, class: "data" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col", class: c.cls }, c.name)))),
    body);
}

function col(name, cls) {
  return { name, cls };
}

function badge(kind, value) {
  const v = value || "unknown";
  return h("span", { class: `badge ${kind}-${String(v).replace(/[^a-z0-9_-]/gi, "")}` },
    String(v).replace(/_/g, " "));
}

function section(id, title, ...kids) {
  return h("section", { id, class: "block", "aria-labelledby": id + "-h" },
    h("h2", { id: id + "-h" }, title), kids);
}

function errorBox(msg) {
  return h("p", { class: "error", role: "alert" }, msg);
}

// ---- time ----

function ms(v) {
  if (typeof v === "number")
    return v;
  if (typeof v === "string" && v) {
    const t = Date.parse(v);
    return isNaN(t) ? null : t;
  }
  return null;
}

function fmtTime(v) {
  const t = ms(v);
  if (t === null)
    return v === undefined || v === null ? "" : String(v);
  return new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function timeEl(v) {
  const t = ms(v);
  if (t === null)
    return "";
  return h("time", { datetime: new Date(t).toISOString() }, fmtTime(t));
}

/** Age of @p v from now: "45s", "12m", "3h 05m", "2d 4h". */
function fmtAge(v) {
  const t = ms(v);
  if (t === null)
    return "";
  const s = Math.max(0, Math.floor((Date.now() - t) / 1000));
  if (s < 60)
    return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60)
    return m + "m";
  const hr = Math.floor(m / 60);
  if (hr < 24)
    return `${hr}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

function pct(v) {
  return typeof v === "number" ? Math.round(v * 100) + "%" : "";
}

function labelsText(labels) {
  if (!labels || typeof labels !== "object")
    return "";
  return Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join(", ");
}

function compact(v) {
  if (v === null || v === undefined)
    return "";
  if (typeof v === "object")
    return JSON.stringify(v);
  return String(v);
}

// ---- page state: banner, key, health ----

function showBanner(msg) {
  banner.textContent = msg;
  banner.hidden = false;
}

function hideBanner() {
  banner.hidden = true;
  banner.textContent = "";
}

/** Handles a failed read: a 401 pauses refreshes and says so at the top. */
function readFailed(err, what, target) {
  const msg = explain(err, what);
  if (err instanceof ApiError && err.status === 401) {
    authPaused = true;
    showBanner(msg + " Automatic refresh is paused until a key is given.");
  }
  if (target)
    target.replaceChildren(errorBox(msg));
}

function readOk() {
  if (!banner.hidden && !authPaused)
    hideBanner();
}

function showKeyState() {
  keyState.textContent = getKey() ? "a key is set for this tab" : "no key (loopback only)";
}

keyForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const k = keyInput.value.trim();
  if (!k) {
    keyState.textContent = "paste a key first";
    keyInput.focus();
    return;
  }
  keyInput.value = "";
  setKey(k);
});

document.getElementById("key-forget").addEventListener("click", () => {
  keyInput.value = "";
  setKey("");
});

onKeyChange(() => {
  authPaused = false;
  decideRefused = false;
  seriesCache.clear();
  hideBanner();
  showKeyState();
  route(false);
});

async function health() {
  try {
    const r = await get("/health");
    healthEl.textContent = "daemon: " + (r && r.status ? r.status : "?");
    healthEl.className = "health " + (r && r.status === "ok" ? "ok" : "warn");
  } catch (e) {
    healthEl.textContent = "daemon: unreachable";
    healthEl.className = "health bad";
  }
}

// ---- routing ----

/** Runs @p fn every @p every ms while the current view stays (and no 401 is pending). */
function every(period, fn) {
  const gen = current.gen;
  const id = window.setInterval(() => {
    if (gen === current.gen && !authPaused && !document.hidden)
      fn();
  }, period);
  current.timers.push(id);
}

function mount(title, ...nodes) {
  document.title = title + " · Sentinel";
  viewEl.replaceChildren(...nodes);
}

function route(focus) {
  for (const id of current.timers)
    window.clearInterval(id);
  current = { gen: current.gen + 1, timers: [] };
  const gen = current.gen;
  const alive = () => gen === current.gen;
  const hash = location.hash || "#/incidents";
  const qpos = hash.indexOf("?");
  const path = (qpos >= 0 ? hash.slice(0, qpos) : hash).replace(/^#\/?/, "");
  const params = new URLSearchParams(qpos >= 0 ? hash.slice(qpos + 1) : "");
  const parts = path.split("/").filter(Boolean);
  const section = parts[0] || "incidents";
  for (const a of document.querySelectorAll("nav a[data-nav]")) {
    if (a.dataset.nav === section)
      a.setAttribute("aria-current", "page");
    else
      a.removeAttribute("aria-current");
  }
  let done;
  if (section === "incidents" && parts[1])
    done = viewIncident(safeDecode(parts[1]), alive);
  else if (section === "audit")
    done = viewAudit(params, alive);
  else if (section === "silences")
    done = viewSilences(alive);
  else if (section === "notifications")
    done = viewNotifications(params, alive);
  else
    done = viewIncidents(params, alive);
  if (focus)
    done.then(() => {
      const h1 = viewEl.querySelector("h1");
      if (alive() && h1)
        h1.focus();
    });
}

function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch (e) {
    return s;
  }
}

window.addEventListener("hashchange", () => route(true));

// ---- #/incidents ----

async function viewIncidents(params, alive) {
  const state = params.get("state") || "";
  const select = h("select", { id: "state-filter" },
    h("option", { value: "" }, "all states"),
    STATES.map((s) => h("option", { value: s, selected: s === state }, s.replace(/_/g, " "))));
  select.addEventListener("change", () => {
    location.hash = "#/incidents" + query({ state: select.value });
  });
  const meta = h("p", { class: "meta", id: "list-meta" }, "Loading…");
  const holder = h("div", { id: "incident-list" });
  mount("Incidents",
    h("h1", { tabindex: "-1" }, "Incidents"),
    h("div", { class: "toolbar" }, h("label", { for: "state-filter" }, "State"), select, meta),
    holder);

  const load = async () => {
    let data;
    try {
      data = await get("/v1/incidents" + query({ state }));
    } catch (e) {
      if (alive())
        readFailed(e, "reading incidents", holder);
      return;
    }
    if (!alive())
      return;
    readOk();
    const list = (data && data.incidents) || [];
    // Keep the keyboard focus on the same link across the refresh.
    const active = document.activeElement;
    const href = active && holder.contains(active) ? active.getAttribute("href") : null;
    holder.replaceChildren(incidentTable(list));
    if (href) {
      const again = [...holder.querySelectorAll("a[href]")].find((a) =>
        a.getAttribute("href") === href);
      if (again)
        again.focus();
    }
    meta.textContent = `${list.length} incident${list.length === 1 ? "" : "s"} · updated ` +
      `${new Date().toLocaleTimeString()} · refreshes every ${REFRESH_MS / 1000} s`;
  };
  await load();
  every(REFRESH_MS, load);
}

function incidentTable(list) {
  const cols = [col("Incident", "title"), col("State", "state"), col("Severity", "severity"),
    col("Priority", "priority"), col("Confidence", "num confidence"),
    col("Services", "services"), col("Age", "age"), col("Updated", "updated")];
  const rows = list.map((i) => ({
    attrs: { "data-id": i.id, "data-state": i.state },
    cells: [
      [h("a", { href: "#/incidents/" + encodeURIComponent(i.id) }, i.title || i.id),
        h("span", { class: "id" }, i.id)],
      badge("state", i.state),
      badge("sev", i.severity),
      i.priority || "",
      pct(i.confidence),
      (i.services || []).join(", "),
      h("span", { title: "opened " + fmtTime(i.opened_at) }, fmtAge(i.opened_at)),
      timeEl(i.updated_at),
    ],
  }));
  return table("incident-table", "Incidents, newest first", cols, rows, "No incidents.");
}

// ---- #/incidents/ID ----

async function viewIncident(id, alive) {
  const root = h("div", { class: "incident", id: "incident" }, h("p", { class: "loading" },
    "Loading…"));
  mount("Incident", h("p", { class: "back" }, h("a", { href: "#/incidents" }, "← All incidents")),
    root);
  let stamp = null;
  const panel = decisionPanel(id, () => load(true));

  async function load(force) {
    let doc;
    try {
      doc = await get("/v1/incidents/" + encodeURIComponent(id));
    } catch (e) {
      if (alive())
        readFailed(e, "reading the incident", stamp === null ? root : null);
      return;
    }
    if (!alive())
      return;
    readOk();
    const s = JSON.stringify([doc.updated_at, doc.state, (doc.timeline || []).length,
      (doc.anomalies || []).length, (doc.approvals || []).length,
      (doc.executions || []).map((x) => x.state)]);
    if (s === stamp && !force)
      return;
    const first = stamp === null;
    stamp = s;
    document.title = (doc.title || doc.id) + " · Sentinel";
    renderIncident(root, doc, panel);
    if (first) {
      const h1 = root.querySelector("h1");
      if (h1 && document.activeElement === viewEl)
        h1.focus();
    }
  }
  await load(false);
  every(REFRESH_MS, () => load(false));
}

function renderIncident(root, doc, panel) {
  const anomalies = doc.anomalies || [];
  const executions = doc.executions || [];
  const rollbacks = executions.filter((x) => x.rolled_back_at || /^roll/.test(x.state || ""));
  const kids = [];
  kids.push(h("h1", { tabindex: "-1", id: "incident-title" }, doc.title || doc.id));
  kids.push(h("dl", { class: "summary", id: "incident-summary" },
    dt("State", badge("state", doc.state)),
    dt("Severity", badge("sev", doc.severity)),
    dt("Priority", doc.priority || ""),
    dt("Confidence", pct(doc.confidence)),
    dt("Services", (doc.services || []).join(", ")),
    dt("Opened", [timeEl(doc.opened_at), ` (${fmtAge(doc.opened_at)} ago)`]),
    dt("Updated", timeEl(doc.updated_at)),
    doc.onset ? dt("Onset", timeEl(doc.onset)) : null,
    dt("ID", h("code", {}, doc.id)),
    doc.silenced_by ? dt("Silenced by", h("code", {}, doc.silenced_by)) : null,
    doc.loop_count ? dt("Loops", String(doc.loop_count)) : null));

  panel.sync(doc);
  if (panel.visible())
    kids.push(panel.el);

  const charts = h("div", { class: "charts", id: "charts" });
  kids.push(section("charts-section", "Anomalous series around the onset", charts));

  kids.push(section("timeline-section", "Timeline",
    table("timeline-table", "What happened, in order", [col("Time", "time"), col("Node", "node"),
      col("Event", "event"), col("Detail", "detail")],
    (doc.timeline || []).map((t) => ({ attrs: { "data-event": t.event || "" },
      cells: [timeEl(t.ts), t.node || "", badge("ev", t.event), t.detail || ""] })))));

  kids.push(section("hypotheses-section", "Hypotheses",
    table("hypotheses-table", "Likely causes, most confident first", [col("Service", "service"),
      col("Cause", "cause"), col("Confidence", "num"), col("Evidence", "evidence")],
    (doc.hypotheses || []).map((x) => [x.service || "", x.cause || "", pct(x.confidence),
      h("ul", {}, (x.evidence || []).map((e) => h("li", {}, compact(e))))]), "No hypotheses yet.")));

  kids.push(section("plan-section", "Plan",
    table("plan-table", "Actions the runbook proposes", [col("#", "num"), col("Executor"),
      col("Verb", "verb"), col("Target", "target"), col("Params"), col("Risk", "risk"),
      col("Downtime", "num"), col("Blast radius"), col("Allowed"), col("Approved by")],
    (doc.plan || []).map((a, i) => [String(i + 1), a.executor || "", a.verb || "",
      h("code", {}, a.target || ""), a.params && Object.keys(a.params).length ? compact(a.params) : "", badge("risk", a.risk),
      typeof a.downtime_s === "number" ? a.downtime_s + " s" : "", a.blast_radius || "",
      a.allowed === false ? "no: " + (a.denied_reason || "") : "yes", a.approved_by || ""]),
    "No plan yet.")));

  kids.push(section("approvals-section", "Approvals",
    table("approvals-table", "Decisions on the plan", [col("Time", "time"), col("Actor", "actor"),
      col("Decision", "verdict"), col("Reason"), col("Attempt", "num")],
    (doc.approvals || []).map((a) => [timeEl(a.ts), a.actor || "", badge("ev", a.decision),
      a.reason || "", a.attempt === undefined ? "" : String(a.attempt)]), "No decision yet.")));

  kids.push(section("executions-section", "Executions",
    table("executions-table", "Actions run", [col("Step", "num"), col("Attempt", "num"),
      col("Executor"), col("Verb"), col("Target"), col("State", "state"), col("Started"),
      col("Finished"), col("Error")],
    executions.map((x) => [String(x.step ?? ""), String(x.attempt ?? ""), x.executor || "",
      x.verb || "", h("code", {}, x.target || ""), badge("ex", x.state), timeEl(x.started_at),
      timeEl(x.finished_at), x.error ? compact(x.error) : ""]), "Nothing executed.")));

  kids.push(section("rollbacks-section", "Rollbacks",
    table("rollbacks-table", "Actions undone from their snapshot", [col("Step", "num"),
      col("Target"), col("State", "state"), col("Rolled back at")],
    rollbacks.map((x) => [String(x.step ?? ""), h("code", {}, x.target || ""), badge("ex", x.state),
      timeEl(x.rolled_back_at)]), "No rollback.")));

  kids.push(section("anomalies-section", "Anomalies",
    table("anomalies-table", "Anomalous points that opened or joined the incident",
      [col("Time", "time"), col("Metric"), col("Labels"), col("Value", "num"),
        col("Expected", "num"), col("Score", "num"), col("Confidence", "num"), col("Detector")],
      anomalies.map((a) => [timeEl(a.ts), a.metric || "", labelsText(a.labels), fmtNum(a.value),
        typeof a.expected === "number" ? fmtNum(a.expected) : "",
        typeof a.score === "number" ? a.score.toFixed(2) : "", pct(a.confidence),
        a.detector || ""]), "No anomalies.")));

  if ((doc.changes || []).length)
    kids.push(section("changes-section", "Changes",
      table("changes-table", "Change events near the incident", [col("Time", "time"),
        col("Change"), col("Labels")],
      doc.changes.map((c) => [timeEl(c.ts), c.change || "", labelsText(c.labels)]))));

  kids.push(h("details", { class: "raw" }, h("summary", {}, "Raw incident document"),
    h("pre", {}, JSON.stringify(doc, null, 2))));

  const active = document.activeElement;
  root.replaceChildren(...kids);
  if (active && active !== document.activeElement && panel.el.contains(active))
    active.focus(); // the panel moved: typing a reason survives a refresh
  renderCharts(charts, doc);
}

function dt(name, value) {
  return h("div", { class: "pair" }, h("dt", {}, name), h("dd", {}, value));
}

// ---- the decision panel (Approve / Reject) ----

function decisionPanel(id, reload) {
  const reason = h("input", { id: "decision-reason", type: "text", maxlength: "500",
    autocomplete: "off", "aria-describedby": "decision-note" });
  const approve = h("button", { type: "button", id: "approve-btn", class: "approve" }, "Approve");
  const reject = h("button", { type: "button", id: "reject-btn", class: "reject" }, "Reject");
  const note = h("p", { id: "decision-note", class: "note" });
  const msg = h("p", { id: "decision-msg", class: "decision-msg", role: "status" });
  const actions = h("p", { id: "decision-actions" });
  const controls = h("div", { class: "controls" },
    h("label", { for: "decision-reason" }, "Reason (goes into the audit log)"), reason,
    h("div", { class: "buttons" }, approve, reject));
  const el = h("section", { id: "decision", class: "block decision",
    "aria-labelledby": "decision-h" },
  h("h2", { id: "decision-h" }, "Decision"), actions, controls, note, msg);
  let waiting = false;
  let busy = false;

  function refresh() {
    const off = busy || decideRefused || !waiting;
    approve.disabled = off;
    reject.disabled = off;
    reason.disabled = !waiting || decideRefused;
    controls.hidden = !waiting;
    note.textContent = decideRefused
      ? "Approve and Reject are disabled: this key may not decide. Paste an operator or admin " +
        "key above."
      : waiting ? "Needs the operator role. Approving runs the plan; rejecting drops it and the " +
        "pipeline takes the incident on (escalation, usually)." : "";
  }

  async function decide(ok) {
    if (busy)
      return;
    busy = true;
    refresh();
    msg.className = "decision-msg";
    msg.textContent = ok ? "Approving…" : "Rejecting…";
    const what = ok ? "approving" : "rejecting";
    try {
      await post(`/v1/incidents/${encodeURIComponent(id)}/${ok ? "approve" : "reject"}`,
        { reason: reason.value.trim() });
      msg.className = "decision-msg ok";
      msg.textContent = ok ? "Approved with this key: the plan runs now."
        : "Rejected with this key: the plan will not run.";
      reason.value = "";
    } catch (e) {
      msg.className = "decision-msg bad";
      if (e instanceof ApiError && e.status === 403) {
        decideRefused = true;
        msg.textContent = explain(e, what) + " Nothing was changed.";
      } else if (e instanceof ApiError && e.status === 409) {
        msg.textContent = "The incident is no longer waiting for a decision (someone else " +
          "decided, or it moved on). Nothing was changed.";
      } else if (e instanceof ApiError && e.status === 401) {
        readFailed(e, what, null);
        msg.textContent = explain(e, what);
      } else {
        msg.textContent = explain(e, what);
      }
    } finally {
      busy = false;
      refresh();
      reload();
    }
  }
  approve.addEventListener("click", () => decide(true));
  reject.addEventListener("click", () => decide(false));

  return {
    el,
    sync(doc) {
      waiting = doc.state === "awaiting_approval";
      const need = (doc.plan || []).filter((a) => a.allowed !== false);
      actions.textContent = waiting
        ? `This incident waits for a human: ${need.length} action` +
          (need.length === 1 ? " in the plan needs" : "s in the plan need") + " approval."
        : `Not waiting for a decision (state: ${String(doc.state).replace(/_/g, " ")}).`;
      refresh();
    },
    visible() {
      return waiting || msg.textContent !== "";
    },
  };
}

// ---- charts ----

function seriesOf(doc) {
  const by = new Map();
  for (const a of doc.anomalies || []) {
    const t = ms(a.ts);
    if (!a.series || t === null)
      continue;
    let s = by.get(a.series);
    if (!s) {
      s = { series: a.series, metric: a.metric || "", labels: a.labels || {}, anomalies: [],
        score: 0 };
      by.set(a.series, s);
    }
    s.anomalies.push(Object.assign({}, a, { ts: t }));
    s.score = Math.max(s.score, typeof a.score === "number" ? a.score : 0);
  }
  return [...by.values()].sort((a, b) => b.score - a.score);
}

function loadSeries(series, from, to) {
  const key = `${series}|${from}|${to}`;
  if (!seriesCache.has(key)) {
    const p = get(`/v1/series/${encodeURIComponent(series)}` +
      query({ from, to, limit: 5000 }))
      .then((r) => ({ points: (r && r.points) || [], note: "" }))
      .catch((e) => {
        seriesCache.delete(key);
        if (e instanceof ApiError && e.status === 501)
          return { points: [], note: "No telemetry store is configured (telemetry in " +
            "[sentinel]), so only the anomaly points from the incident are shown." };
        if (e instanceof ApiError && e.status === 401)
          readFailed(e, "reading the series", null);
        return { points: [], note: explain(e, "reading the series") +
          " Only the anomaly points from the incident are shown." };
      });
    seriesCache.set(key, p);
  }
  return seriesCache.get(key);
}

function renderCharts(holder, doc) {
  const all = seriesOf(doc);
  if (!all.length) {
    holder.replaceChildren(h("p", { class: "note" }, "No anomalous series to chart."));
    return;
  }
  const times = all.flatMap((s) => s.anomalies.map((a) => a.ts));
  const first = Math.min(...times);
  const onset = ms(doc.onset) ?? first;
  const from = Math.min(onset, first) - WINDOW_MS;
  const to = Math.max(...times) + WINDOW_MS;
  const shown = all.slice(0, MAX_CHARTS);
  holder.replaceChildren();
  for (const s of shown) {
    const name = s.metric + (Object.keys(s.labels).length ? `{${labelsText(s.labels)}}` : "");
    const fig = h("figure", { class: "chart-fig", "data-series": s.series },
      h("p", { class: "loading" }, "Loading the series…"),
      h("figcaption", {}, h("code", {}, name), ` · ${s.anomalies.length} anomal` +
        (s.anomalies.length === 1 ? "y" : "ies") + " · series " + s.series));
    holder.append(fig);
    loadSeries(s.series, from, to).then((r) => {
      const svg = drawChart({ points: r.points, anomalies: s.anomalies, from, to, onset,
        label: name });
      const kids = [svg];
      if (r.note)
        kids.push(h("p", { class: "note chart-note" }, r.note));
      kids.push(h("p", { class: "legend", "aria-hidden": "true" },
        h("span", { class: "key key-series" }, "series"),
        h("span", { class: "key key-anomaly" }, "anomaly"),
        h("span", { class: "key key-expected" }, "expected"),
        h("span", { class: "key key-onset" }, "onset")));
      fig.firstChild.replaceWith(...kids);
    });
  }
  if (all.length > shown.length)
    holder.append(h("p", { class: "note" }, `${all.length - shown.length} more series not ` +
      "charted: see the anomalies table."));
}

// ---- #/audit ----

async function viewAudit(params, alive) {
  const fields = ["actor", "action", "incident", "since", "until"];
  const f = {};
  for (const k of fields)
    f[k] = params.get(k) || "";
  const limit = Math.max(1, Math.min(1000, parseInt(params.get("limit") || "100", 10) || 100));
  const after = parseInt(params.get("after_seq") || "0", 10) || 0;
  const inputs = {};
  const hints = { since: "2026-01-31T00:00:00Z", until: "2026-01-31T23:59:59Z",
    incident: "incident id", actor: "api:alice", action: "approve" };
  const form = h("form", { id: "audit-filter", class: "filters", role: "search" });
  for (const k of fields) {
    inputs[k] = h("input", { id: "audit-" + k, name: k, type: "text", value: f[k],
      placeholder: hints[k], autocomplete: "off", list: k === "action" ? "audit-actions" : null });
    form.append(h("div", { class: "field" }, h("label", { for: "audit-" + k }, k), inputs[k]));
  }
  inputs.limit = h("input", { id: "audit-limit", name: "limit", type: "number", min: "1",
    max: "1000", value: String(limit) });
  form.append(h("div", { class: "field" }, h("label", { for: "audit-limit" }, "page size"),
    inputs.limit));
  form.append(h("datalist", { id: "audit-actions" },
    AUDIT_ACTIONS.map((a) => h("option", { value: a }))));
  form.append(h("div", { class: "buttons" },
    h("button", { type: "submit", id: "audit-apply" }, "Apply"),
    h("button", { type: "button", id: "audit-clear", onclick: () => go("#/audit") }, "Clear")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = {};
    for (const k of fields)
      q[k] = inputs[k].value.trim();
    q.limit = inputs.limit.value !== "100" ? inputs.limit.value : "";
    go("#/audit" + query(q));
  });
  const holder = h("div", { id: "audit-list" }, h("p", { class: "loading" }, "Loading…"));
  const pager = h("div", { class: "pager" });
  mount("Audit log", h("h1", { tabindex: "-1" }, "Audit log"),
    h("p", { class: "meta" }, "Every approval, rejection, execution, rollback, login failure " +
      "and reload, oldest first, from the hash chain."),
    form, holder, pager);

  let data;
  try {
    data = await get("/v1/audit" + query(Object.assign({}, f, { limit,
      after_seq: after || "" })));
  } catch (e) {
    if (alive())
      readFailed(e, "reading the audit log", holder);
    return;
  }
  if (!alive())
    return;
  readOk();
  const recs = (data && data.records) || [];
  const cols = [col("Seq", "num"), col("Time", "time"), col("Actor", "actor"),
    col("Action", "action"), col("Incident", "incident"), col("Detail", "detail")];
  const rows = recs.map((r) => ({
    attrs: { "data-seq": r.seq, "data-action": r.action || "" },
    cells: [String(r.seq), timeEl(r.ts), r.actor || "", r.action || "",
      r.incident ? h("a", { href: "#/incidents/" + encodeURIComponent(r.incident) }, r.incident)
        : "",
      [h("span", { class: "summary-text" }, summarize(r)),
        r.detail && Object.keys(r.detail).length
          ? h("details", {}, h("summary", {}, "JSON"), h("pre", {}, JSON.stringify(r.detail, null,
            2))) : ""]],
  }));
  const kids = [];
  if (data.anchor)
    kids.push(h("p", { class: "note" }, `Records up to seq ${data.anchor.seq} were dropped by ` +
      `retention; the chain continues from anchor ${String(data.anchor.hash).slice(0, 16)}….`));
  kids.push(table("audit-table", `${recs.length} record${recs.length === 1 ? "" : "s"}` +
    (after ? ` after seq ${after}` : ""), cols, rows, "No records match."));
  holder.replaceChildren(...kids);
  const base = Object.assign({}, f, { limit: limit !== 100 ? limit : "" });
  if (after)
    pager.append(h("button", { type: "button", id: "audit-first",
      onclick: () => go("#/audit" + query(base)) }, "First page"));
  if (recs.length >= limit)
    pager.append(h("button", { type: "button", id: "audit-next",
      onclick: () => go("#/audit" + query(Object.assign({}, base,
        { after_seq: recs[recs.length - 1].seq }))) }, "Next page"));
}

/** Goes to @p hash, re-running the view when it is already there. */
function go(hash) {
  if (location.hash === hash)
    route(true);
  else
    location.hash = hash;
}

function summarize(r) {
  const d = r.detail || {};
  if (d.decision)
    return d.decision + (d.reason ? ": " + d.reason : "");
  if (d.verb || d.target)
    return [d.verb, d.target, d.state].filter(Boolean).join(" ") + (d.error ? " — " + d.error
      : "");
  const parts = [];
  for (const [k, v] of Object.entries(d))
    if (v === null || typeof v !== "object")
      parts.push(`${k}=${v}`);
  return parts.slice(0, 6).join(" ");
}

// ---- #/silences ----

async function viewSilences(alive) {
  const holder = h("div", { id: "silence-list" }, h("p", { class: "loading" }, "Loading…"));
  mount("Silences", h("h1", { tabindex: "-1" }, "Silences"),
    h("p", { class: "meta" }, "Matching incidents are opened but not notified while a silence " +
      "is active. Create and expire them with POST /v1/silences (operator)."), holder);
  const load = async () => {
    let data;
    try {
      data = await get("/v1/silences");
    } catch (e) {
      if (alive())
        readFailed(e, "reading silences", holder);
      return;
    }
    if (!alive())
      return;
    readOk();
    const now = Date.now();
    const rows = ((data && data.silences) || []).map((s) => {
      const st = s.expired || (s.ends_at_ms && s.ends_at_ms <= now) ? "expired"
        : s.starts_at_ms && s.starts_at_ms > now ? "pending" : "active";
      return [h("code", {}, s.id || ""), badge("sil", st), labelsText(s.matchers),
        timeEl(s.starts_at), timeEl(s.ends_at), s.comment || "", s.created_by || ""];
    });
    holder.replaceChildren(table("silences-table", "Silences", [col("ID"), col("State"),
      col("Matchers"), col("Starts"), col("Ends"), col("Comment"), col("Created by")], rows,
    "No silences."));
  };
  await load();
  every(REFRESH_MS, load);
}

// ---- #/notifications ----

async function viewNotifications(params, alive) {
  const state = params.get("state") || "";
  const select = h("select", { id: "notification-state" },
    ["", "pending", "dead"].map((s) => h("option", { value: s, selected: s === state },
      s || "pending and dead")));
  select.addEventListener("change", () => go("#/notifications" + query({ state: select.value })));
  const holder = h("div", { id: "notification-list" }, h("p", { class: "loading" }, "Loading…"));
  mount("Notifications", h("h1", { tabindex: "-1" }, "Notifications"),
    h("p", { class: "meta" }, "Notifications still being delivered, and those given up (dead)."),
    h("div", { class: "toolbar" }, h("label", { for: "notification-state" }, "State"), select),
    holder);
  const load = async () => {
    let data;
    try {
      data = await get("/v1/notifications" + query({ state }));
    } catch (e) {
      if (alive())
        readFailed(e, "reading notifications", holder);
      return;
    }
    if (!alive())
      return;
    readOk();
    const rows = ((data && data.notifications) || []).map((n) => [
      n.incident ? h("a", { href: "#/incidents/" + encodeURIComponent(n.incident) }, n.incident)
        : "",
      n.notifier || "", n.event || "", badge("ob", n.state), String(n.attempts ?? ""),
      timeEl(n.created_at), n.state === "dead" ? "" : timeEl(n.next_at), n.error || ""]);
    holder.replaceChildren(table("notifications-table", "Notifications", [col("Incident"),
      col("Notifier"), col("Event"), col("State"), col("Attempts", "num"), col("Created"),
      col("Next attempt"), col("Last error")], rows, "Nothing pending or dead."));
  };
  await load();
  every(REFRESH_MS, load);
}

// ---- start ----

showKeyState();
health();
window.setInterval(health, HEALTH_MS);
route(false);
