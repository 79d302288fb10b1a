"""A deterministic TEST DOUBLE of an OpenAI-compatible Chat Completions server and of the
Anthropic Messages API, for the `llm` analyzer's end-to-end tests. It is not a model: it
answers from a rule table the test loads, following the request and response shapes of the
OpenAI OpenAPI description (openai/openai-openapi v2.3.0, commit f85dbe22: chat completions)
and of the Anthropic Python SDK types (anthropics/anthropic-sdk-python commit 009b0353:
message, usage, errors), as summarised in docs/analyzers/llm.md, with the standard library
only.

Endpoints, under http://127.0.0.1:<port>[/<prefix>]  (a prefix such as "p1" lets one double
stand in for several providers; rules can be limited to one prefix):
  POST /v1/chat/completions  OpenAI shape. Checks: JSON body, "model", non-empty "messages"
                             with known roles, tool messages answering a tool call,
                             response_format type; with a key configured, "Authorization:
                             Bearer <key>". Answers {"id","object":"chat.completion",
                             "created","model","choices":[{"index":0,"finish_reason",
                             "message":{"role":"assistant","content"|"tool_calls"}}],
                             "usage":{"prompt_tokens","completion_tokens","total_tokens"}}.
                             Errors: {"error":{"message","type","param","code"}}.
  POST /v1/messages          Anthropic shape. Checks: "anthropic-version" header, x-api-key
                             (with a key configured), "max_tokens" required, "system" only at
                             the top level, messages alternate user/assistant starting with
                             user. Answers {"id","type":"message","role":"assistant","model",
                             "content":[{"type":"text"|"tool_use",...}],"stop_reason",
                             "usage":{"input_tokens","output_tokens",...}}. Errors:
                             {"type":"error","error":{"type","message"}}.
  GET  /v1/models            the model list.

Rules (a list of dicts, first match wins; `load_rules` replaces them, `add_rule` appends):
  "match":   text (case-insensitive) the request's prompt must contain (system, messages and
             tool results joined); "match_all": a list of such texts; neither: any request
  "prefix":  only requests under this prefix ("p1"); "api": "openai" | "anthropic"
  "stage":   "first" (no tool result and no correction yet), "after_tool" (the request
             carries a tool result), "after_error" (the request carries the analyzer's
             "previous reply was rejected" correction); absent: any
  "times":   the rule is used this many times, then skipped
  "delay":   seconds to wait before answering (slow replies beyond the client's timeout)
  "usage":   {"in": n, "out": m} reported usage (default: about four characters a token)
  and one reply:
  "answer":  an object sent as the JSON content (hypotheses + plan)
  "text":    a raw content string (garbage, prose, schema-invalid JSON text)
  "tool_call": {"name": ..., "arguments": {...}} — a tool-call round
  "status":  an HTTP error status (429 with "retry_after" seconds, 500, 503, 400, ...),
             with "error_code" (e.g. "insufficient_quota") optional
  "garbage_envelope": true — HTTP 200 whose body is not a reply at all
  "drop": true — close the connection without answering
No rule matching: HTTP 500 with an error naming the fact.

Every call is recorded in `calls`: {"path","prefix","api","headers","raw","json","text",
"status","rule","at"}.

Run standalone: python3 llm_double.py --rules rules.json [--port N] [--port-file F] [--key K]
"""
import argparse
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OPENAI_ROLES = {"system", "developer", "user", "assistant", "tool"}
CORRECTION = "previous reply was rejected"


def _tokens(text):
    return max(1, len(text) // 4)


class LLMDouble:
    def __init__(self, key=None, rules=None):
        self.key = key
        self.lock = threading.Lock()
        self.rules = []
        self.used = {}
        self.calls = []
        self.seq = 0
        if rules:
            self.load_rules(rules)
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body, headers=None):
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                prefix, path = double._split(self.path)
                if path == "/v1/models":
                    self._send(200, {"object": "list", "data": [
                        {"id": "double-model", "object": "model", "owned_by": "test-double"}]})
                else:
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request_error",
                                               "param": None, "code": None}})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                result = double._handle(self.path, self.headers, raw)
                if result is None:  # drop
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                status, body, headers = result
                try:
                    self._send(status, body, headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = None

    # ---- control ----

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def url(self, prefix=None):
        """Base URL of a provider: http://127.0.0.1:<port>[/<prefix>]/v1"""
        return "http://127.0.0.1:%d%s/v1" % (self.port, "/" + prefix if prefix else "")

    def load_rules(self, rules):
        with self.lock:
            self.rules = list(rules)
            self.used = {}

    def add_rule(self, rule):
        with self.lock:
            self.rules.append(rule)

    def calls_to(self, prefix=None, api=None):
        with self.lock:
            return [c for c in self.calls if (prefix is None or c["prefix"] == prefix)
                    and (api is None or c["api"] == api)]

    # ---- handling ----

    @staticmethod
    def _split(path):
        path = path.split("?", 1)[0]
        if path.startswith("/v1/"):
            return None, path
        parts = path.split("/", 2)
        if len(parts) == 3 and ("/" + parts[2]).startswith("/v1/"):
            return parts[1], "/" + parts[2]
        return None, path

    @staticmethod
    def _openai_error(status, message, etype, code=None):
        return status, {"error": {"message": message, "type": etype, "param": None,
                                  "code": code}}, {}

    @staticmethod
    def _anthropic_error(status, message, etype):
        return status, {"type": "error", "error": {"type": etype, "message": message}}, {}

    def _prompt_text(self, api, doc):
        parts = []
        if api == "anthropic":
            sys_ = doc.get("system")
            if isinstance(sys_, str):
                parts.append(sys_)
            elif isinstance(sys_, list):
                parts += [b.get("text", "") for b in sys_ if isinstance(b, dict)]
        for m in doc.get("messages", []):
            c = m.get("content")
            if isinstance(c, str):
                parts.append(c)
            elif isinstance(c, list):
                for b in c:
                    if not isinstance(b, dict):
                        continue
                    if isinstance(b.get("text"), str):
                        parts.append(b["text"])
                    if isinstance(b.get("content"), str):
                        parts.append(b["content"])
        return "\n".join(parts)

    @staticmethod
    def _has_tool_result(api, doc):
        for m in doc.get("messages", []):
            if api == "openai" and m.get("role") == "tool":
                return True
            if api == "anthropic" and isinstance(m.get("content"), list):
                if any(isinstance(b, dict) and b.get("type") == "tool_result" for b in m["content"]):
                    return True
        return False

    def _check_openai(self, headers, doc):
        if self.key and headers.get("Authorization") != "Bearer " + self.key:
            return self._openai_error(401, "Incorrect API key provided", "invalid_request_error",
                                      "invalid_api_key")
        if not isinstance(doc.get("model"), str) or not doc["model"]:
            return self._openai_error(400, "you must provide a model parameter",
                                      "invalid_request_error")
        msgs = doc.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return self._openai_error(400, "'messages' must be a non-empty array",
                                      "invalid_request_error")
        open_calls = set()
        for m in msgs:
            if not isinstance(m, dict) or m.get("role") not in OPENAI_ROLES:
                return self._openai_error(400, "invalid role in messages", "invalid_request_error")
            if m["role"] == "assistant":
                for tc in m.get("tool_calls") or []:
                    open_calls.add(tc.get("id"))
            if m["role"] == "tool":
                if m.get("tool_call_id") not in open_calls:
                    return self._openai_error(400, "tool message without a matching tool call",
                                              "invalid_request_error")
        rf = doc.get("response_format")
        if rf is not None:
            t = rf.get("type") if isinstance(rf, dict) else None
            if t not in ("text", "json_object", "json_schema"):
                return self._openai_error(400, "invalid response_format", "invalid_request_error")
            if t == "json_schema":
                js = rf.get("json_schema") or {}
                if not js.get("name") or not isinstance(js.get("schema"), dict):
                    return self._openai_error(400, "json_schema needs name and schema",
                                              "invalid_request_error")
        return None

    def _check_anthropic(self, headers, doc):
        if self.key and headers.get("x-api-key") != self.key:
            return self._anthropic_error(401, "invalid x-api-key", "authentication_error")
        if not headers.get("anthropic-version"):
            return self._anthropic_error(400, "anthropic-version header is required",
                                         "invalid_request_error")
        if not isinstance(doc.get("max_tokens"), int):
            return self._anthropic_error(400, "max_tokens: Field required", "invalid_request_error")
        msgs = doc.get("messages")
        if not isinstance(msgs, list) or not msgs or msgs[0].get("role") != "user":
            return self._anthropic_error(400, "messages: first message must use the user role",
                                         "invalid_request_error")
        for i, m in enumerate(msgs):
            if m.get("role") not in ("user", "assistant"):
                return self._anthropic_error(400, "messages: roles must be user or assistant "
                                             "(system is a top-level field)", "invalid_request_error")
            if i and m["role"] == msgs[i - 1]["role"]:
                return self._anthropic_error(400, "messages: roles must alternate",
                                             "invalid_request_error")
        return None

    def _pick(self, prefix, api, text, stage):
        low = text.lower()
        for i, r in enumerate(self.rules):
            if r.get("prefix") is not None and r["prefix"] != prefix:
                continue
            if r.get("api") is not None and r["api"] != api:
                continue
            if r.get("stage") is not None and r["stage"] != stage:
                continue
            if r.get("match") is not None and r["match"].lower() not in low:
                continue
            if any(m.lower() not in low for m in r.get("match_all", [])):
                continue
            if r.get("times") is not None and self.used.get(i, 0) >= r["times"]:
                continue
            self.used[i] = self.used.get(i, 0) + 1
            return i, r
        return None, None

    def _handle(self, path, headers, raw):
        prefix, p = self._split(path)
        api = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}.get(p)
        call = {"path": path, "prefix": prefix, "api": api, "headers": dict(headers),
                "raw": raw.decode("utf-8", "replace"), "json": None, "text": "", "status": None,
                "rule": None, "at": time.time()}
        with self.lock:
            self.calls.append(call)
        if api is None:
            call["status"] = 404
            return self._openai_error(404, "unknown path", "invalid_request_error")
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError
        except ValueError:
            call["status"] = 400
            if api == "openai":
                return self._openai_error(400, "We could not parse the JSON body of your request.",
                                          "invalid_request_error")
            return self._anthropic_error(400, "invalid JSON body", "invalid_request_error")
        call["json"] = doc
        err = self._check_openai(headers, doc) if api == "openai" else \
            self._check_anthropic(headers, doc)
        if err:
            call["status"] = err[0]
            return err
        text = self._prompt_text(api, doc)
        call["text"] = text
        stage = "after_error" if CORRECTION in text else \
            "after_tool" if self._has_tool_result(api, doc) else "first"
        with self.lock:
            idx, rule = self._pick(prefix, api, text, stage)
            self.seq += 1
            seq = self.seq
        call["rule"] = idx
        if rule is None:
            call["status"] = 500
            if api == "openai":
                return self._openai_error(500, "no rule of the test double matched", "server_error")
            return self._anthropic_error(500, "no rule of the test double matched", "api_error")
        if rule.get("delay"):
            time.sleep(rule["delay"])
        if rule.get("drop"):
            call["status"] = 0
            return None
        if rule.get("status"):
            st = rule["status"]
            call["status"] = st
            hdrs = {}
            if rule.get("retry_after") is not None:
                hdrs["Retry-After"] = str(rule["retry_after"])
            if api == "openai":
                etype = "rate_limit_error" if st == 429 else "server_error" if st >= 500 else \
                    "invalid_request_error"
                s, body, _ = self._openai_error(st, rule.get("message", "error from the test double"),
                                                etype, rule.get("error_code"))
            else:
                etype = {429: "rate_limit_error", 529: "overloaded_error"}.get(
                    st, "api_error" if st >= 500 else "invalid_request_error")
                s, body, _ = self._anthropic_error(st, rule.get("message", "error from the test "
                                                   "double"), etype)
            return s, body, hdrs
        if rule.get("garbage_envelope"):
            call["status"] = 200
            return 200, b"<html><body>502 Bad Gateway (but 200)</body></html>", {}
        usage = rule.get("usage") or {}
        model = doc.get("model", "double-model")
        if rule.get("tool_call"):
            tc = rule["tool_call"]
            content = json.dumps(tc.get("arguments", {}))
            tin, tout = usage.get("in", _tokens(text)), usage.get("out", _tokens(content))
            call["status"] = 200
            if api == "openai":
                return 200, {"id": "chatcmpl-%d" % seq, "object": "chat.completion",
                             "created": int(time.time()), "model": model,
                             "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None,
                                          "message": {"role": "assistant", "content": None,
                                                      "refusal": None, "tool_calls": [
                                                          {"id": "call_%d" % seq, "type": "function",
                                                           "function": {"name": tc["name"],
                                                                        "arguments": content}}]}}],
                             "usage": {"prompt_tokens": tin, "completion_tokens": tout,
                                       "total_tokens": tin + tout}}, {}
            return 200, {"id": "msg_%d" % seq, "type": "message", "role": "assistant",
                         "model": model, "stop_reason": "tool_use", "stop_sequence": None,
                         "content": [{"type": "tool_use", "id": "toolu_%d" % seq,
                                      "name": tc["name"], "input": tc.get("arguments", {})}],
                         "usage": {"input_tokens": tin, "output_tokens": tout,
                                   "cache_creation_input_tokens": 0,
                                   "cache_read_input_tokens": 0}}, {}
        if "answer" in rule:
            content = json.dumps(rule["answer"])
        else:
            content = rule.get("text", "")
        tin, tout = usage.get("in", _tokens(text)), usage.get("out", _tokens(content))
        call["status"] = 200
        if api == "openai":
            return 200, {"id": "chatcmpl-%d" % seq, "object": "chat.completion",
                         "created": int(time.time()), "model": model,
                         "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                      "message": {"role": "assistant", "content": content,
                                                  "refusal": None}}],
                         "usage": {"prompt_tokens": tin, "completion_tokens": tout,
                                   "total_tokens": tin + tout,
                                   "prompt_tokens_details": {"cached_tokens": 0},
                                   "completion_tokens_details": {"reasoning_tokens": 0}}}, {}
        return 200, {"id": "msg_%d" % seq, "type": "message", "role": "assistant", "model": model,
                     "content": [{"type": "text", "text": content}], "stop_reason": "end_turn",
                     "stop_sequence": None,
                     "usage": {"input_tokens": tin, "output_tokens": tout,
                               "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}, {}


def main():
    ap = argparse.ArgumentParser(description="OpenAI-compatible / Anthropic Messages test double")
    ap.add_argument("--rules", required=True, help="JSON file with the rule list")
    ap.add_argument("--port-file", help="write the chosen port here")
    ap.add_argument("--key", help="require this API key")
    args = ap.parse_args()
    with open(args.rules) as f:
        rules = json.load(f)
    d = LLMDouble(key=args.key, rules=rules).start()
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(str(d.port))
    print("llm test double on %s" % d.url(), file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        d.stop()


if __name__ == "__main__":
    main()
