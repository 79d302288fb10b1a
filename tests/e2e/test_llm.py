"""End to end: sentineld with the `llm` analyzer between the statistical analysis and the
runbook (correlate -> rca(stats) -> llm -> runbook -> approve -> mock -> verify), pointed at a
deterministic OpenAI-compatible + Anthropic TEST DOUBLE (llm_double.py), on the bundled
checkout-deploy scenario. Three runs:

1. The double knows this incident (the prompt mentions "deploy of checkout", the statistical
   hypothesis): it calls the recent_changes tool once, then answers a canned root cause and a
   plan. The canned cause becomes the top hypothesis, the request carried the reply schema
   with the incident's own enums, the tool result carried the deploy, tokens and cost are
   counted, and the incident resolves.
2. Every provider is down (500 from both): the statistical analysis stands, the timeline says
   there was no LLM analysis, and the incident still resolves.
3. The model names a verb that does not exist: the reply is refused after one retry with the
   validation error, the timeline says so, nothing of it runs, and the incident resolves on the
   statistical analysis.
"""
import json
import os

from llm_double import LLMDouble
from sntest import BASE_CONF, Daemon, check, journal, scenario

KEY = "sk-e2e-llm-0123456789abcdef"
os.environ["SN_E2E_LLM_KEY"] = KEY

double = LLMDouble(key=KEY).start()

PIPELINE_OLD = "edge = correlate -> rca -> runbook -> approve -> mock -> verify"
PIPELINE_NEW = "edge = correlate -> rca -> llm -> runbook -> approve -> mock -> verify"
assert PIPELINE_OLD in BASE_CONF

LLM_CONF = """
[analyzer:llm]
plugin = llm
provider = p1 kind=openai url=%s model=gpt-double timeout=3s retries=1
provider = p1 key=${{env:SN_E2E_LLM_KEY}} price_in=0.15 price_out=0.60
provider = p2 kind=anthropic url=%s model=claude-double timeout=3s retries=0
provider = p2 key=${{env:SN_E2E_LLM_KEY}} price_in=1 price_out=5
action = mock:rollout_restart deployment/shop/{{service}}
action = mock:scale_deployment deployment/shop/{{service}}
retry_base = 50ms
max_confidence = 0.99
""" % (double.url("p1"), double.url("p2"))

CONF = BASE_CONF.replace(PIPELINE_OLD, PIPELINE_NEW) + LLM_CONF

CANNED_CAUSE = "checkout v2.3.1 shipped a connection pool of 2: requests queue behind it"
CANNED = {
    "hypotheses": [
        {"service": "checkout", "cause": CANNED_CAUSE + " (deploy)", "confidence": 0.97,
         "evidence": ["deploy of checkout v2.3.1 minutes before the latency rose",
                      "frontend and cart degrade after checkout"]},
        {"service": "frontend", "cause": "frontend waits on checkout", "confidence": 0.2,
         "evidence": []},
    ],
    "plan": [{"executor": "mock", "verb": "rollout_restart", "target": "deployment/shop/checkout",
              "params": {}, "reason": "restart onto the previous replica set"}],
}


def run_scenario(rules, what):
    double.load_rules(rules)
    with double.lock:
        double.calls.clear()
    d = Daemon(conf=CONF).start()
    d.post_file(scenario("checkout-deploy"))
    inc = d.wait_for(lambda: [i for i in d.incidents() if "checkout" in i["services"]
                              and i["state"] in ("resolved", "escalated", "closed")],
                     timeout=60, what="the checkout incident to close (%s)" % what)[0]
    st, doc = d.json("GET", "/v1/incidents/" + inc["id"])
    check(st == 200, "%s: GET /v1/incidents/{id} answers" % what)
    st, metrics, _ = d.request("GET", "/metrics")
    return d, doc, metrics.decode()


def llm_timeline(doc):
    return [t for t in doc["timeline"] if t.get("node") == "llm"]


def metric(text, name, provider=None):
    for line in text.splitlines():
        if line.startswith(name + "{") and 'instance="analyzer:llm"' in line and (
                provider is None or 'provider="%s"' % provider in line):
            return float(line.rsplit(" ", 1)[1])
    return None


# ---- 1. the canned root cause -------------------------------------------------------------
d, doc, metrics = run_scenario([
    {"prefix": "p1", "match": "deploy of checkout", "stage": "first",
     "tool_call": {"name": "recent_changes", "arguments": {"service": "checkout"}},
     "usage": {"in": 1200, "out": 30}},
    {"prefix": "p1", "match": "deploy of checkout", "stage": "after_tool", "answer": CANNED,
     "usage": {"in": 1500, "out": 200}},
], "canned answer")
try:
    check(doc["state"] == "resolved", "canned: the incident resolved (was %s)" % doc["state"])
    top = doc["hypotheses"][0]
    check(top["cause"] == CANNED_CAUSE + " (deploy)" and top["analyzer"] == "llm",
          "canned: the model's root cause is the top hypothesis: %s" % top["cause"])
    check(top["service"] == "checkout" and abs(top["confidence"] - 0.97) < 1e-9,
          "canned: on checkout with the model's confidence")
    check(any(h["analyzer"] == "rca" and "deploy of checkout" in h["cause"]
              for h in doc["hypotheses"]), "canned: the statistical hypothesis is kept beside it")
    rec = top.get("llm", {})
    check(rec.get("provider") == "p1" and rec.get("model") == "gpt-double",
          "canned: the hypothesis names provider and model")
    check(rec.get("tokens_in") == 2700 and rec.get("tokens_out") == 230,
          "canned: tokens of both calls counted: %s/%s" % (rec.get("tokens_in"),
                                                          rec.get("tokens_out")))
    check(abs(rec.get("cost_usd", 0) - (2700 * 0.15 + 230 * 0.60) / 1e6) < 1e-9,
          "canned: cost from the price table: %s" % rec.get("cost_usd"))
    check([t["tool"] for t in rec.get("tool_calls", [])] == ["recent_changes"],
          "canned: the tool call is recorded in the document")
    calls = double.calls_to("p1")
    check(len(calls) == 2 and not double.calls_to("p2"), "canned: two calls to p1, none to p2")
    first = calls[0]["json"]
    check(calls[0]["headers"].get("Authorization") == "Bearer " + KEY,
          "canned: the key went in the Authorization header")
    rf = first["response_format"]
    schema = rf["json_schema"]["schema"]
    step = schema["properties"]["plan"]["items"]["properties"]
    check(rf["type"] == "json_schema" and sorted(step["verb"]["enum"]) ==
          ["rollout_restart", "scale_deployment"], "canned: the schema's verbs are the allowed ones")
    check("deployment/shop/checkout" in step["target"]["enum"] and
          all(t.startswith("deployment/shop/") for t in step["target"]["enum"]),
          "canned: targets are the incident's services under the allowed pattern: %s"
          % step["target"]["enum"])
    user = first["messages"][1]["content"]
    check(user.startswith("<incident-data>\n") and "\n</incident-data>" in user,
          "canned: the incident went in as a data block")
    tool_msgs = [m for m in calls[1]["json"]["messages"] if m["role"] == "tool"]
    check(len(tool_msgs) == 1 and "v2.3.1" in tool_msgs[0]["content"],
          "canned: the tool result carried the checkout deploy")
    events = llm_timeline(doc)
    check(any(t["event"] == "analyzed" and CANNED_CAUSE in t["detail"] for t in events),
          "canned: the timeline shows the llm node's analysis")
    check(any(t["event"] == "planned" and "rollout_restart deployment/shop/checkout" in t["detail"]
              for t in events), "canned: the llm node planned the allowed action")
    done = [x for x in doc["executions"] if x["state"] == "done"]
    check(len(done) == 1 and doc["plan"][0]["target"] == "deployment/shop/checkout",
          "canned: one execution on checkout")
    check(metric(metrics, "sentinel_analyzer_llm_tokens_in_total") == 2700.0,
          "canned: /metrics counts input tokens")
    check(metric(metrics, "sentinel_analyzer_llm_provider_requests_total", "p1") == 2.0,
          "canned: /metrics counts requests per provider")
finally:
    d.cleanup()

# ---- 2. every provider down ---------------------------------------------------------------
d, doc, metrics = run_scenario([{"status": 500, "message": "upstream exploded"}], "providers down")
try:
    check(doc["state"] == "resolved", "down: the incident still resolved (was %s)" % doc["state"])
    top = doc["hypotheses"][0]
    check(top["analyzer"] == "rca" and "deploy of checkout" in top["cause"],
          "down: the statistical analysis stands: %s" % top["cause"])
    check(not any(h["analyzer"] == "llm" for h in doc["hypotheses"]), "down: no LLM hypothesis")
    notes = [t["detail"] for t in llm_timeline(doc) if t["detail"].startswith("no LLM analysis")]
    check(len(notes) == 1 and "every provider failed" in notes[0] and "p1: HTTP 500" in notes[0]
          and "p2: HTTP 500" in notes[0], "down: the timeline says why: %s" % notes)
    check(len(double.calls_to("p1")) == 2 and len(double.calls_to("p2")) == 1,
          "down: p1 retried once, then p2 (anthropic) tried once")
    anth = double.calls_to("p2")[0]
    check(anth["headers"].get("x-api-key") == KEY and anth["headers"].get("anthropic-version"),
          "down: the anthropic call carried x-api-key and anthropic-version")
    check(metric(metrics, "sentinel_analyzer_llm_fallbacks_total") == 1.0,
          "down: /metrics counts the fallback")
finally:
    d.cleanup()

# ---- 3. a verb that does not exist --------------------------------------------------------
NUKE = {"hypotheses": [{"service": "checkout", "cause": "cosmic rays", "confidence": 0.99,
                        "evidence": []}],
        "plan": [{"executor": "mock", "verb": "nuke_cluster", "target": "deployment/shop/checkout",
                  "params": {}}]}
d, doc, metrics = run_scenario([{"prefix": "p1", "answer": NUKE}], "unknown verb")
try:
    check(doc["state"] == "resolved", "verb: the incident resolved (was %s)" % doc["state"])
    check(doc["hypotheses"][0]["analyzer"] == "rca" and
          not any("cosmic" in h["cause"] for h in doc["hypotheses"]),
          "verb: the refused reply left no hypothesis")
    notes = [t["detail"] for t in llm_timeline(doc)
             if t["detail"].startswith("no LLM analysis") and "refused" in t["detail"]]
    check(len(notes) == 1 and "nuke_cluster" in notes[0],
          "verb: the timeline says the reply was refused: %s" % notes)
    calls = double.calls_to("p1")
    check(len(calls) == 2 and "previous reply was rejected" in calls[1]["text"]
          and "nuke_cluster" in calls[1]["text"],
          "verb: one retry carried the validation error back to the model")
    check(not double.calls_to("p2"), "verb: a refused reply does not fail over")
    verbs = [j["verb"] for j in journal(d) if j.get("op") == "execute"]
    check(verbs == ["rollout_restart"], "verb: only the runbook's action ran: %s" % verbs)
finally:
    d.cleanup()

double.stop()
print("1..ok")
