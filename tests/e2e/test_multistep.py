"""Multi-step plans: the actions of a plan run in order, the first failure stops the rest, and
what already ran is rolled back in reverse order."""
from sntest import BASE_CONF, Daemon, check, journal, scenario

conf = BASE_CONF.replace(
    "rule = cause~memory -> mock:scale_deployment deployment/shop/{{service}} replicas=6",
    "rule = cause~memory -> mock:scale_deployment deployment/shop/{{service}} replicas=6\n"
    "rule = cause~memory -> mock:restart_pod pod/shop/{{service}}-0\n"
    "rule = cause~memory -> mock:rollout_restart deployment/shop/{{service}}\n"
    "rule = cause~memory -> mock:restart_pod pod/shop/{{service}}-1\n"
    "all_matches = true")
d = Daemon(conf=conf, extra_mock="fail_verbs = rollout_restart").start()
try:
    d.post_file(scenario("payments-memory"))
    inc = d.wait_for(lambda: d.incidents("awaiting_approval"), what="the plan to wait")[0]
    doc = d.json("GET", "/v1/incidents/" + inc["id"])[1]
    check([a["verb"] for a in doc["plan"]] ==
          ["scale_deployment", "restart_pod", "rollout_restart", "restart_pod"],
          "a four-step plan: %s" % [a["verb"] for a in doc["plan"]])
    d.json("POST", "/v1/incidents/%s/approve" % inc["id"], '{"reason":"go"}')
    doc = d.wait_for(lambda: (lambda x: x if x["state"] in ("resolved", "escalated", "closed")
                              else None)(d.json("GET", "/v1/incidents/" + inc["id"])[1]),
                     what="the incident to finish")
    ops = [(j["op"], j.get("verb"), j.get("target")) for j in journal(d)
           if j.get("op") in ("execute", "rollback") and not j.get("dry_run")]
    execs = [o for o in ops if o[0] == "execute"]
    check([e[1] for e in execs][:3] == ["scale_deployment", "restart_pod", "rollout_restart"],
          "the actions ran in plan order until the failure: %s" % execs)
    check(("execute", "restart_pod", "pod/shop/payments-1") not in ops,
          "the first failure stops the plan: the fourth action never ran")
    first_try = ops[:ops.index(("execute", "rollout_restart", "deployment/shop/payments")) + 1]
    rest = ops[len(first_try):]
    rolled = [o for o in rest if o[0] == "rollback"][:2]
    check([r[2] for r in rolled] == ["pod/shop/payments-0", "deployment/shop/payments"],
          "what ran is rolled back in reverse order: %s" % rolled)
    check(doc["state"] == "escalated", "the incident goes to humans (%s)" % doc["state"])
finally:
    d.cleanup()
