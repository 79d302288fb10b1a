"""A TEST DOUBLE of the Slack endpoints the `slack` notifier talks to. It is not Slack: it
follows the documented behaviour (docs/notifiers/slack.md, Slack's chat.postMessage,
chat.update, incoming webhook and response_url pages) closely enough for end-to-end tests, with
the standard library only.

Endpoints, under http://127.0.0.1:<port>:
  POST /api/chat.postMessage   Bearer token required; JSON body with channel and text/blocks;
                               answers HTTP 200 {"ok": true, "channel", "ts", "message"} or
                               HTTP 200 {"ok": false, "error": "..."} (not_authed,
                               invalid_auth, invalid_json, channel_not_found, no_text,
                               thread_not_found), like the Web API.
  POST /api/chat.update        same auth; channel + ts of a posted message; {"ok": true, ...}
                               or message_not_found.
  POST /services/<...>         an incoming webhook: 200 "ok", 400 invalid_payload.
  POST /actions/<...>          a response_url: 200 {"ok": true}, 400 invalid_payload.
Any method can be made to answer 429 with Retry-After (body {"ok":false,"error":"ratelimited"})
or a 5xx for its next N calls (fail_next). Every call is recorded (calls, calls_to) with its
path, headers, raw body, parsed JSON, the status answered and the time it arrived.
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SlackDouble:
    def __init__(self, token, channel="C0SENTINEL"):
        self.token = token
        self.channel = channel
        self.lock = threading.Lock()
        self.calls = []
        self.messages = {}  # ts -> message as posted
        self.failures = {}  # method -> [(status, retry_after)]
        self.seq = 0
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                status, body, headers = double._handle(self.path, self.headers, raw)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                ctype = "application/json" if not isinstance(body, bytes) else "text/plain"
                self.send_header("Content-Type", ctype)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.api_url = self.url + "/api/"
        self.thread = None

    # ---- control ----

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, method, status=429, retry_after=1, times=1):
        """The next `times` calls of `method` ("chat.postMessage", "chat.update", "actions",
        "services") answer `status` (with Retry-After when status is 429)."""
        with self.lock:
            self.failures.setdefault(method, []).extend([(status, retry_after)] * times)

    def response_url(self, name):
        return "%s/actions/T0TEAM/%s" % (self.url, name)

    def calls_to(self, method, ok=None):
        """Recorded calls of `method`; ok=True: only those answered 200 {"ok": true}."""
        with self.lock:
            out = [c for c in self.calls if c["method"] == method]
        if ok is not None:
            out = [c for c in out if (c["status"] == 200 and c["answer_ok"]) == ok]
        return out

    def wait_for(self, pred, timeout=20, what="a call"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(0.05)
        raise AssertionError("slack double: timed out waiting for " + what)

    # ---- behaviour ----

    def _method(self, path):
        if path.startswith("/api/"):
            return path[5:].split("?")[0]
        if path.startswith("/services/"):
            return "services"
        if path.startswith("/actions/"):
            return "actions"
        return None

    def _handle(self, path, headers, raw):
        method = self._method(path)
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        call = {"method": method, "path": path, "headers": dict(headers), "raw": raw,
                "json": doc, "at": time.time(), "status": None, "answer_ok": False}
        status, body, extra = self._answer(method, headers, doc)
        call["status"] = status
        call["answer"] = body
        call["answer_ok"] = (isinstance(body, dict) and body.get("ok") is True) or body == b"ok"
        with self.lock:
            self.calls.append(call)
        return status, body, extra

    def _answer(self, method, headers, doc):
        if method is None:
            return 404, b"not found", {}
        with self.lock:
            queue = self.failures.get(method) or []
            failure = queue.pop(0) if queue else None
        if failure:
            status, retry_after = failure
            extra = {"Retry-After": str(retry_after)} if status == 429 else {}
            return status, {"ok": False, "error": "ratelimited" if status == 429
                            else "internal_error"}, extra
        if method in ("services", "actions"):
            if not isinstance(doc, dict) or not (doc.get("text") or doc.get("blocks")
                                                 or doc.get("delete_original")):
                return 400, b"invalid_payload", {}
            return (200, b"ok", {}) if method == "services" else (200, {"ok": True}, {})
        if method not in ("chat.postMessage", "chat.update"):
            return 200, {"ok": False, "error": "unknown_method"}, {}
        auth = headers.get("Authorization") or ""
        if not auth:
            return 200, {"ok": False, "error": "not_authed"}, {}
        if auth != "Bearer " + self.token:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        if not isinstance(doc, dict):
            return 200, {"ok": False, "error": "invalid_json"}, {}
        if doc.get("channel") != self.channel:
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        if not doc.get("text") and not doc.get("blocks"):
            return 200, {"ok": False, "error": "no_text"}, {}
        with self.lock:
            if method == "chat.update":
                if doc.get("ts") not in self.messages:
                    return 200, {"ok": False, "error": "message_not_found"}, {}
                self.messages[doc["ts"]] = doc
                return 200, {"ok": True, "channel": self.channel, "ts": doc["ts"],
                             "text": doc.get("text")}, {}
            if doc.get("thread_ts") and doc["thread_ts"] not in self.messages:
                return 200, {"ok": False, "error": "thread_not_found"}, {}
            self.seq += 1
            ts = "1700000000.%06d" % self.seq
            self.messages[ts] = doc
        return 200, {"ok": True, "channel": self.channel, "ts": ts,
                     "message": {"type": "message", "text": doc.get("text"), "ts": ts}}, {}
