"""End to end: sentineld's `llm` analyzer against a REAL inference engine (llm_fixture/: llama.cpp
through node-llama-cpp, a tiny random-weight model with the real Qwen2 tokenizer, served as an
OpenAI-compatible API). The model's words are nonsense, so this test asserts protocol and
structure, never content; content-level behaviour is test_llm.py's job with its scripted double.

One sentineld, pipeline correlate -> rca -> llm -> runbook -> approve -> mock -> verify, two
providers p1 and p2 on the same fixture (path prefixes), incidents (a deploy then a latency
spike on svcNN, an hour apart in event time) posted one at a time, fault rules set on the
fixture before each:

1. structured replies: p1 answers under the grammar built from the schema sentineld sent. Every
   reply's verdict is recomputed here (JSON, the reply schema with its bounds, the allowed
   (executor, verb, target) combinations): a valid reply must be accepted (an llm hypothesis
   with the model's cause, or an analysis with none when the model listed none), an invalid one
   must be sent back once with the validation error and then refused, leaving the statistical
   analysis in place. Usage: the tokens in the timeline note and the hypothesis record equal
   the fixture's real token counts; /metrics totals equal the sum over the whole test.
2. the tool loop within bounds (max_tool_calls = 2, max_turns = 3): the fixture calls a tool
   whenever tools are open. Exactly two tool rounds with tool_choice "auto", then a third call
   with tool_choice "none" that must answer; the tool results went back with matching ids.
3. the tool loop's bound: a model that keeps calling tools even with tool_choice "none" is cut
   off after max_turns calls with a note, no failover; a dropped connection first is retried.
4. failures: p1 answers 429 with Retry-After: 1 (the retry waits at least a second), then is too
   slow for its timeout; p2 answers; the timeline names p1's failure and the analysis is p2's.
The npm packages and the generated model are cached under the build tree; without node/npm
(or when npm cannot install) the test says why and skips.
"""
import json
import math
import os
import re
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "llm_fixture"))

from fixture import LLMFixture, Unavailable  # noqa: E402
from sntest import BASE_CONF, BUILD, Daemon, check, deploy_spike_lines, fail  # noqa: E402

KEY = "sk-real-llm-fixture-5c1e0a"
os.environ["SN_E2E_LLM_REAL_KEY"] = KEY
T0 = 1795593600000
P1_TIMEOUT_S = 15  # above a normal reply (about 7 s on a busy 2-core machine)

PIPELINE_OLD = "edge = correlate -> rca -> runbook -> approve -> mock -> verify"
PIPELINE_NEW = "edge = correlate -> rca -> llm -> runbook -> approve -> mock -> verify"
assert PIPELINE_OLD in BASE_CONF

LLM_CONF = """
[analyzer:llm]
plugin = llm
provider = p1 kind=openai url=%s model=random-tiny timeout=%ds retries=1
provider = p1 key=${{env:SN_E2E_LLM_REAL_KEY}} price_in=0.15 price_out=0.60
provider = p2 kind=openai url=%s model=random-tiny timeout=60s retries=0 tokens_field=max_tokens
provider = p2 key=${{env:SN_E2E_LLM_REAL_KEY}} price_in=1 price_out=5
action = mock:rollout_restart deployment/shop/{{service}}
action = mock:scale_deployment deployment/shop/{{service}}
plan_from_incident = false
max_tokens = 300
max_turns = 3
max_tool_calls = 2
retry_base = 50ms
breaker_failures = 50
"""


def incident_lines(i):
    return deploy_spike_lines(i, T0)


# ---- the reply contract, recomputed independently of the C validator ----------------------

def schema_problem(s, v, path="$"):
    """The first way @v breaks schema @s (the subset the reply schema uses), or None."""
    types = s.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        kinds = {"object": dict, "array": list, "string": str, "boolean": bool}
        ok = False
        for t in types:
            if t in ("number", "integer"):
                ok |= isinstance(v, (int, float)) and not isinstance(v, bool) and \
                    (t == "number" or isinstance(v, int))
            else:
                ok |= isinstance(v, kinds[t])
        if not ok:
            return "%s: not %s" % (path, types)
    if "enum" in s and v not in s["enum"]:
        return "%s: %r not in enum" % (path, v)
    if isinstance(v, str):
        if len(v) < s.get("minLength", 0) or len(v) > s.get("maxLength", 1 << 30):
            return "%s: length %d" % (path, len(v))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if v < s.get("minimum", -math.inf) or v > s.get("maximum", math.inf):
            return "%s: %r out of range" % (path, v)
    if isinstance(v, list):
        if len(v) < s.get("minItems", 0) or len(v) > s.get("maxItems", 1 << 30):
            return "%s: %d items" % (path, len(v))
        for i, x in enumerate(v):
            p = schema_problem(s.get("items", {}), x, "%s[%d]" % (path, i))
            if p:
                return p
    if isinstance(v, dict):
        for k in s.get("required", []):
            if k not in v:
                return "%s: %s missing" % (path, k)
        if len(v) > s.get("maxProperties", 1 << 30):
            return "%s: too many properties" % path
        props, extra = s.get("properties", {}), s.get("additionalProperties", True)
        for k, x in v.items():
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            if sub is None and extra is False:
                return "%s: unexpected %s" % (path, k)
            p = schema_problem(sub or {}, x, path + "." + k)
            if p:
                return p
    return None


def allowed_actions(req):
    """The allowed combinations sentineld listed in the first user message."""
    user = next(m["content"] for m in req["messages"] if m["role"] == "user")
    block = user.split("Allowed actions", 1)[1].split(":\n", 1)[1].split("\n\n", 1)[0]
    return [(a["executor"], a["verb"], a["target"]) for a in json.loads(block)]


def verdict(req):
    """(valid, parsed reply or None, why) of one answered request, as the analyzer must judge."""
    if req["finish_reason"] != "stop":
        return False, None, "finish_reason " + str(req["finish_reason"])
    try:
        doc = json.loads(req["content"])
    except ValueError as e:
        return False, None, "not JSON: %s" % e
    why = schema_problem(req["request_schema"], doc)
    if why:
        return False, doc, why
    allowed = allowed_actions(req)
    for step in doc["plan"]:
        if (step["executor"], step["verb"], step["target"]) not in allowed:
            return False, doc, "plan step not allowed"
    return True, doc, None


def clean(s):
    return "".join(" " if ord(c) < 0x20 or ord(c) == 0x7F else c for c in s)


# ---- driving -----------------------------------------------------------------------------

def run_incident(d, fx, i, rules, what):
    fx.faults(rules)
    fx.reset()
    svc = "svc%02d" % i
    st, body = d.json("POST", "/v1/events", incident_lines(i))
    check(st == 200, "%s: events accepted" % what)

    def done():
        for x in d.incidents():
            if svc in x.get("services", []):
                doc = d.json("GET", "/v1/incidents/" + x["id"])[1]
                # the analyzer's timeline entries are written when its analysis completes
                if any(t.get("node") == "llm" for t in doc["timeline"]):
                    return doc
        return None

    doc = d.wait_for(done, timeout=90, what="%s: the llm node to finish on %s" % (what, svc))
    reqs = fx.stats()["requests"]
    return doc, reqs


def llm_events(doc):
    return [t for t in doc["timeline"] if t.get("node") == "llm"]


def note_tokens(doc):
    """(tokens in, tokens out) from the llm_analyzed note, or None."""
    for t in llm_events(doc):
        m = re.search(r"(\d+) tokens in, (\d+) out", t["detail"])
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def check_outcome(doc, answered, what, provider="p1"):
    """The analyzer's verdict on the last answer matches the recomputed one."""
    print("# %s: %s" % (what, [(r["format"], r["finish_reason"], r["completion_tokens"],
                                r["server_ms"]) for r in answered]))
    last = answered[-1]
    ok, reply, why = verdict(last)
    events = llm_events(doc)
    details = " | ".join(t["detail"] for t in events)
    tin = sum(r["prompt_tokens"] for r in answered)
    tout = sum(r["completion_tokens"] for r in answered)
    check(tin > 0 and tout > 0 and all(r["prompt_tokens"] > 0 for r in answered),
          "%s: the fixture reported real usage on every reply (%d in, %d out)" % (what, tin, tout))
    llm_hyps = [h for h in doc["hypotheses"] if h.get("analyzer") == "llm"]
    if ok:
        expect = [clean(h["cause"]) for h in reply["hypotheses"]]
        got = [h["cause"] for h in llm_hyps]
        check(got == expect,
              "%s: the schema-valid reply was accepted as the model's hypotheses (%d)"
              % (what, len(expect)))
        check(note_tokens(doc) == (tin, tout),
              "%s: the timeline counts the real tokens %s == %s" % (what, note_tokens(doc),
                                                                    (tin, tout)))
        if llm_hyps:
            rec = llm_hyps[0].get("llm", {})
            check(rec.get("tokens_in") == tin and rec.get("tokens_out") == tout and
                  rec.get("provider") == provider and rec.get("model") == "random-tiny",
                  "%s: the hypothesis record has provider %s and the tokens (%s/%s)"
                  % (what, provider, rec.get("tokens_in"), rec.get("tokens_out")))
    else:
        check(not llm_hyps, "%s: an invalid reply (%s) left no llm hypothesis" % (what, why))
        check(any(h.get("analyzer") == "rca" for h in doc["hypotheses"]),
              "%s: the statistical analysis stands" % what)
        check("refused" in details or "still calling tools" in details,
              "%s: the timeline says the reply was refused: %s" % (what, details[:300]))
    return ok, tin, tout


tmp = tempfile.mkdtemp(prefix="sn-llm-real-")
try:
    fx = LLMFixture(BUILD, api_key=KEY).start(tmp)
except Unavailable as e:
    print("SKIP: " + str(e))
    shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0)

conf = BASE_CONF.replace(PIPELINE_OLD, PIPELINE_NEW) + LLM_CONF % (fx.url("p1"), P1_TIMEOUT_S,
                                                                  fx.url("p2"))
total_in = total_out = 0
d = None
try:
    models = fx._call("GET", "/v1/models")
    check(models["data"][0]["id"] == "random-tiny", "the fixture lists its model")
    d = Daemon(conf=conf).start()

    # ---- 1. structured replies ----------------------------------------------------------
    doc, reqs = run_incident(d, fx, 0, [], "structured")
    answered = [r for r in reqs if r["status"] == 200]
    check(answered and all(r["prefix"] == "p1" for r in reqs),
          "structured: p1 answered: %s" % [(r["prefix"], r["status"], r.get("server_ms"))
                                           for r in reqs])
    first = answered[0]
    check(first["format"] == "json_schema" and first["request_schema"]["properties"]["plan"]
          ["items"]["properties"]["target"]["enum"] == ["deployment/shop/svc00"],
          "structured: the request carried the incident's reply schema (targets on svc00)")
    try:
        json.loads(first["content"])
        parsed = True
    except ValueError:
        parsed = first["finish_reason"] == "length"
    check(parsed, "structured: the grammar-constrained reply parses (or was cut at max_tokens)")
    for a, b in zip(answered, answered[1:]):
        check(not verdict(a)[0] and "previous reply was rejected" in b["messages"][-1]["content"],
              "structured: a second call only after a refused reply, carrying the error")
    ok, tin, tout = check_outcome(doc, answered, "structured")
    total_in += tin
    total_out += tout

    # ---- 2. the tool loop within its bounds -------------------------------------------------
    doc, reqs = run_incident(d, fx, 1, [{"prefix": "p1", "tools": "open"}], "tools")
    answered = [r for r in reqs if r["status"] == 200]
    check([r["tool_choice"] for r in answered[:3]] == ["auto", "auto", "none"] and
          [r["format"] for r in answered[:3]] == ["tool_call", "tool_call", "json_schema"],
          "tools: two tool rounds while tools were open, then tool_choice none and the answer: %s"
          % [(r["tool_choice"], r["format"]) for r in answered])
    check(len(answered) == 3, "tools: max_turns = 3 bounds the calls (no validation retry left)")
    ids = [c["id"] for r in answered[:2] for c in r["tool_calls"]]
    sent = [m["tool_call_id"] for m in answered[2]["messages"] if m["role"] == "tool"]
    check(len(ids) == 2 and sent == ids, "tools: both tool results went back with their call ids")
    names = [c["function"]["name"] for r in answered[:2] for c in r["tool_calls"]]
    calls = [t for t in llm_events(doc) if t["event"] == "llm_tool_call"]
    check(len(calls) == 2 and all(c["detail"].startswith(n) for c, n in zip(calls, names)),
          "tools: the timeline records the two tool calls the model made: %s" % names)
    ok, tin, tout = check_outcome(doc, answered, "tools")
    total_in += tin
    total_out += tout

    # ---- 3. a model that will not stop calling tools -----------------------------------------
    doc, reqs = run_incident(d, fx, 2, [{"prefix": "p1", "drop": True, "times": 1},
                                        {"prefix": "p1", "tools": "always"}], "runaway")
    check(reqs[0]["status"] == "dropped", "runaway: the first connection was dropped")
    answered = [r for r in reqs if r["status"] == 200]
    check(len(answered) == 3 and all(r["format"] == "tool_call" for r in answered) and
          answered[2]["tool_choice"] == "none" and len(reqs) == 4,
          "runaway: the dropped request was sent again, then exactly max_turns = 3 model calls")
    details = " | ".join(t["detail"] for t in llm_events(doc))
    check("still calling tools after 3 calls" in details and
          not [h for h in doc["hypotheses"] if h.get("analyzer") == "llm"],
          "runaway: cut off with a note, no llm hypothesis: %s" % details[:200])
    check(not [r for r in reqs if r["prefix"] == "p2"], "runaway: no failover for a bound")
    total_in += sum(r["prompt_tokens"] for r in answered)
    total_out += sum(r["completion_tokens"] for r in answered)

    # ---- 4. 429 with Retry-After, a slow reply, failover -------------------------------------
    doc, reqs = run_incident(d, fx, 3, [
        {"prefix": "p1", "status": 429, "retry_after": 1, "times": 1},
        {"prefix": "p1", "delay_ms": (P1_TIMEOUT_S + 2) * 1000}], "failover")
    p1 = [r for r in reqs if r["prefix"] == "p1"]
    check(len(p1) == 2 and p1[0]["status"] == 429 and p1[1]["at"] - p1[0]["at"] >= 900,
          "failover: the retry after 429 waited for Retry-After (%d ms, fixture clock in ms)"
          % (p1[1]["at"] - p1[0]["at"] if len(p1) == 2 else -1))
    answered = [r for r in reqs if r["status"] == 200]
    check(answered and all(r["prefix"] == "p2" for r in answered),
          "failover: only p2 answered (p1 was too slow)")
    fails = [t["detail"] for t in llm_events(doc) if t["event"] == "llm_provider_failed"]
    check(len(fails) == 1 and fails[0].startswith("provider p1:"),
          "failover: the timeline names p1's failure: %s" % fails)
    ok, tin, tout = check_outcome(doc, answered, "failover", provider="p2")
    total_in += tin
    total_out += tout

    # ---- usage in /metrics over the whole run ------------------------------------------------
    st, raw, _ = d.request("GET", "/metrics")
    text = raw.decode()

    def metric(name, provider=None):
        for line in text.splitlines():
            if line.startswith("sentinel_" + name + "{") and 'instance="analyzer:llm"' in line \
                    and (provider is None or 'provider="%s"' % provider in line):
                return float(line.rsplit(" ", 1)[1])
        return None

    check(metric("analyzer_llm_tokens_in_total") == total_in and
          metric("analyzer_llm_tokens_out_total") == total_out,
          "metrics: tokens in/out equal the fixture's counts over the run (%s/%s vs %d/%d)"
          % (metric("analyzer_llm_tokens_in_total"), metric("analyzer_llm_tokens_out_total"),
             total_in, total_out))
    check(metric("analyzer_llm_provider_failures_total", "p1") == 1.0 and
          metric("analyzer_llm_retries_total") >= 1.0,
          "metrics: p1's failure and the retries are counted (%s, %s)"
          % (metric("analyzer_llm_provider_failures_total", "p1"), metric("analyzer_llm_retries_total")))
    with open(os.path.join(d.dir, "sentineld.log"), "rb") as f:
        check(KEY.encode() not in f.read(), "the key is never logged")
finally:
    if d:
        d.cleanup()
    fx.stop()
    shutil.rmtree(tmp, ignore_errors=True)
print("1..ok")
