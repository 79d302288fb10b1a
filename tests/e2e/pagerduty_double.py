"""A TEST DOUBLE of the PagerDuty Events API v2 (alert events), standard library only.

It is not PagerDuty: it follows the published description (PagerDuty/api-schema
reference/events-v2/openapiv3.json and the developer docs, vectors in tests/data/pagerduty/) so
that the `pagerduty` notifier can be tested without the service.

    POST /v2/enqueue    one alert event -> 202 {"status","message","dedup_key"} or 400
                        {"status","message","errors"}; 429 / 5xx on demand (fail_next)

Validation (400 "invalid event" listing every problem): the body is a JSON object;
`routing_key` is a 32-character string; `event_action` is trigger, acknowledge or resolve;
`dedup_key` (at most 255 characters) is present for acknowledge and resolve; a trigger has a
`payload` with a non-blank `summary` (at most 1024 characters), a non-blank `source`, a
`severity` of critical, error, warning or info, an ISO 8601 `timestamp` if any, string
`component`, `group`, `class` and an object `custom_details`; `links` are objects with an `href`
and an optional string `text`; `images` have an https `src`; `client` and `client_url` are
strings. Stricter than the service: unknown fields are refused, so a typo in the notifier shows.
A body that is not JSON answers the documented "Unrecognized object" error. The 512 KB payload
limit answers 400 too (the service's status for it is not documented).

Alert semantics (the documented dedup rules): a trigger for a dedup_key without an open alert
opens one (a "page"); a trigger for an open alert only adds a log entry; acknowledge and resolve
act on the open alert and are dropped silently (still 202) when there is none. Alerts are kept
per routing key and dedup_key.

Every request is recorded in `calls` (thread-safe reads through `snapshot()`); `fail_next()`
makes the next requests (optionally only those with a given routing key) answer 429 or 5xx,
with an optional Retry-After. Run standalone: `python3 pagerduty_double.py --port 8099`;
then GET /_calls lists the calls and POST /_fail {"status":429,"count":1,"retry_after":1}
scripts failures.
"""
import argparse
import datetime
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
TOP_KEYS = {"routing_key", "event_action", "dedup_key", "payload", "client", "client_url",
            "links", "images"}
PAYLOAD_KEYS = {"summary", "source", "severity", "timestamp", "component", "group", "class",
                "custom_details"}
MAX_BODY = 512 * 1024

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "pagerduty",
                       "events-v2-examples.json")


def _iso8601(text):
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    elif len(t) > 5 and t[-5] in "+-" and t[-4:].isdigit():
        t = t[:-2] + ":" + t[-2:]  # "+0000" -> "+00:00"
    try:
        datetime.datetime.fromisoformat(t)
        return True
    except ValueError:
        return False


def _blank(v):
    return not isinstance(v, str) or not v.strip()


def validate(ev):
    """Return the list of problems with alert event @ev (empty: valid)."""
    errs = []
    if not isinstance(ev, dict):
        return ["Event object is not a JSON object"]
    for k in sorted(set(ev) - TOP_KEYS):
        errs.append("Unknown field '%s'" % k)
    rk = ev.get("routing_key")
    if _blank(rk):
        errs.append("'routing_key' is missing or blank")
    elif len(rk) != 32:
        errs.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = ev.get("event_action")
    if action not in ACTIONS:
        errs.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dk = ev.get("dedup_key")
    if dk is not None and (_blank(dk) or len(dk) > 255):
        errs.append("'dedup_key' must be a non-blank string of at most 255 characters")
    if action in ("acknowledge", "resolve") and dk is None:
        errs.append("'dedup_key' is required for %s events" % action)
    if action == "trigger":
        p = ev.get("payload")
        if not isinstance(p, dict):
            errs.append("'payload' is missing or not an object")
        else:
            for k in sorted(set(p) - PAYLOAD_KEYS):
                errs.append("Unknown field 'payload.%s'" % k)
            if _blank(p.get("summary")):
                errs.append("'payload.summary' is missing or blank")
            elif len(p["summary"]) > 1024:
                errs.append("'payload.summary' is longer than 1024 characters")
            if _blank(p.get("source")):
                errs.append("'payload.source' is missing or blank")
            if p.get("severity") not in SEVERITIES:
                errs.append("'payload.severity' is invalid (must be one of critical, error, "
                            "warning, info)")
            if "timestamp" in p and (not isinstance(p["timestamp"], str)
                                     or not _iso8601(p["timestamp"])):
                errs.append("'payload.timestamp' is not an ISO 8601 date-time")
            for k in ("component", "group", "class"):
                if k in p and not isinstance(p[k], str):
                    errs.append("'payload.%s' must be a string" % k)
            if "custom_details" in p and not isinstance(p["custom_details"], dict):
                errs.append("'payload.custom_details' must be an object")
    for k in ("client", "client_url"):
        if k in ev and not isinstance(ev[k], str):
            errs.append("'%s' must be a string" % k)
    links = ev.get("links", [])
    if not isinstance(links, list):
        errs.append("'links' must be an array")
    else:
        for i, l in enumerate(links):
            if not isinstance(l, dict) or _blank(l.get("href")):
                errs.append("'links[%d].href' is missing" % i)
            elif "text" in l and not isinstance(l["text"], str):
                errs.append("'links[%d].text' must be a string" % i)
    images = ev.get("images", [])
    if not isinstance(images, list):
        errs.append("'images' must be an array")
    else:
        for i, im in enumerate(images):
            if not isinstance(im, dict) or not str(im.get("src", "")).startswith("https://"):
                errs.append("'images[%d].src' must be an https URL" % i)
    return errs


class PagerDutyDouble:
    """The Events API v2 test double, served from a thread on 127.0.0.1."""

    def __init__(self, port=0):
        self.lock = threading.Lock()
        self.calls = []
        self.alerts = {}  # (routing_key, dedup_key) -> {"status", "pages", "log"}
        self.failures = []  # scripted answers: {"status","count","retry_after","routing_key"}
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/_calls":
                    return self._send(200, double.snapshot())
                self._send(404, {"status": "not found", "message": "no such route"})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                if self.path == "/_fail":
                    spec = json.loads(raw or b"{}")
                    double.fail_next(spec.get("status", 429), spec.get("count", 1),
                                     spec.get("retry_after"), spec.get("routing_key"))
                    return self._send(200, {"ok": True})
                status, body, headers = double.handle(self.path, dict(self.headers), raw)
                self._send(status, body, headers)

            def _send(self, status, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/v2/enqueue" % self.port

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, status=429, count=1, retry_after=None, routing_key=None):
        """Answer the next @count events (of @routing_key only, if given) with @status."""
        with self.lock:
            self.failures.append({"status": status, "count": count, "retry_after": retry_after,
                                  "routing_key": routing_key})

    def snapshot(self):
        with self.lock:
            return [dict(c) for c in self.calls]

    def alert(self, routing_key, dedup_key):
        with self.lock:
            a = self.alerts.get((routing_key, dedup_key))
            return json.loads(json.dumps(a)) if a else None

    def wait_for(self, pred, timeout=30, what="condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = pred(self.snapshot())
            if v:
                return v
            time.sleep(0.05)
        raise AssertionError("pagerduty double: timed out waiting for " + what)

    def _scripted(self, ev):
        rk = ev.get("routing_key") if isinstance(ev, dict) else None
        for f in self.failures:
            if f["count"] > 0 and (f["routing_key"] is None or f["routing_key"] == rk):
                f["count"] -= 1
                return f
        return None

    def _apply(self, ev):
        """The documented dedup semantics; returns the dedup_key and what happened."""
        action, key = ev["event_action"], ev.get("dedup_key") or uuid.uuid4().hex
        a = self.alerts.get((ev["routing_key"], key))
        is_open = a is not None and a["status"] in ("triggered", "acknowledged")
        if action == "trigger":
            if not is_open:
                a = self.alerts[(ev["routing_key"], key)] = {"status": "triggered",
                                                              "pages": (a or {}).get("pages", 0),
                                                              "log": (a or {}).get("log", [])}
                a["pages"] += 1
                outcome = "opened"
            else:
                outcome = "logged"
        elif not is_open:
            return key, "dropped"
        else:
            a["status"] = "acknowledged" if action == "acknowledge" else "resolved"
            outcome = a["status"]
        a["log"].append(action)
        return key, outcome

    def handle(self, path, headers, raw):
        call = {"ts": time.monotonic(), "path": path, "headers": headers,
                "raw": raw.decode("utf-8", "replace"), "event": None}
        extra = {}
        try:
            ev = json.loads(raw)
        except ValueError:
            ev = None
        call["event"] = ev
        with self.lock:
            scripted = self._scripted(ev) if path == "/v2/enqueue" else None
            if path != "/v2/enqueue":
                status, body = 404, {"status": "not found", "message": "no such route"}
            elif scripted:
                status = scripted["status"]
                body = {"status": "throttle exceeded" if status == 429 else "error",
                        "message": "Requests for this service are arriving too quickly. "
                        "Please retry later." if status == 429 else "Internal server error"}
                if scripted["retry_after"] is not None:
                    extra["Retry-After"] = str(scripted["retry_after"])
            elif len(raw) > MAX_BODY:
                status, body = 400, {"status": "invalid event", "message":
                                     "Event object is invalid",
                                     "errors": ["Payload is larger than 512 KB"]}
            elif ev is None:
                status, body = 400, {"status": "Unrecognized object",
                                     "message": "Event object format is unrecognized",
                                     "errors": ["JSON parse error"]}
            else:
                errs = validate(ev)
                if errs:
                    status, body = 400, {"status": "invalid event",
                                         "message": "Event object is invalid", "errors": errs}
                else:
                    key, outcome = self._apply(ev)
                    call["outcome"] = outcome
                    status, body = 202, {"status": "success", "message": "Event processed",
                                         "dedup_key": key}
            call["status"], call["response"] = status, body
            self.calls.append(call)
        return status, body, extra


def self_test():
    """The double against the spec vectors: the documented examples are accepted and answered
    like the documented 202; broken copies are refused like the documented 400."""
    with open(VECTORS) as f:
        v = json.load(f)
    d = PagerDutyDouble()
    st, body, _ = d.handle("/v2/enqueue", {}, json.dumps(v["trigger"]).encode())
    assert st == 202 and set(body) == set(v["accepted"]) and body["dedup_key"] == "srv01/mysql", body
    st, body, _ = d.handle("/v2/enqueue", {}, json.dumps(v["resolve"]).encode())
    assert st == 202 and d.calls[-1]["outcome"] == "resolved", body
    bad = dict(v["trigger"], routing_key="short")
    st, body, _ = d.handle("/v2/enqueue", {}, json.dumps(bad).encode())
    assert st == 400 and body == v["invalid"], body
    st, body, _ = d.handle("/v2/enqueue", {}, b"{not json")
    assert st == 400 and body == v["unrecognized"], body
    d.server.server_close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="PagerDuty Events API v2 test double")
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        self_test()
        print("pagerduty double: spec vectors ok")
    else:
        d = PagerDutyDouble(a.port).start()
        print("pagerduty double on %s" % d.url, flush=True)
        try:
            d.thread.join()
        except KeyboardInterrupt:
            d.stop()
