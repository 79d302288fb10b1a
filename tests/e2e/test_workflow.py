"""End to end on a real sentineld: the bundled scenarios move through detect -> correlate ->
analyze -> plan -> approve -> execute -> verify -> resolve; the human path approves and rejects
through the API; the audit chain verifies offline afterwards."""
import subprocess

from sntest import Daemon, SENTINELCTL, check, journal, scenario

d = Daemon().start()
try:
    d.post_file(scenario("checkout-deploy"))
    inc = d.wait_for(lambda: [i for i in d.incidents() if "checkout" in i["services"]
                              and i["state"] in ("resolved", "escalated", "closed")],
                     what="the checkout incident to close")[0]
    st, doc = d.json("GET", "/v1/incidents/" + inc["id"])
    check(st == 200, "GET /v1/incidents/{id} answers")
    check(doc["state"] == "resolved", "checkout incident resolved (was %s)" % doc["state"])
    check(set(["checkout", "frontend", "cart"]) <= set(doc["services"]),
          "one incident folds checkout, frontend and cart: %s" % doc["services"])
    check("search" not in doc["services"] and "payments" not in doc["services"],
          "unrelated services stay out of the incident")
    top = doc["hypotheses"][0]
    check(top["service"] == "checkout" and "deploy" in top["cause"],
          "top hypothesis blames the checkout deploy: %s" % top["cause"])
    confs = [h["confidence"] for h in doc["hypotheses"]]
    check(confs == sorted(confs, reverse=True), "hypotheses ordered by confidence")
    check(len(doc["plan"]) == 1 and doc["plan"][0]["verb"] == "rollout_restart"
          and doc["plan"][0]["target"] == "deployment/shop/checkout"
          and doc["plan"][0]["risk"] == "low", "plan: low-risk rollout restart of checkout")
    check(doc["approvals"][0]["actor"] == "policy", "auto-approved by policy")
    done = [x for x in doc["executions"] if x["state"] == "done"]
    check(len(done) == 1, "exactly one execution")
    events = [t["event"] for t in doc["timeline"]]
    for ev in ("opened", "analyzed", "planned", "approved", "executed", "verified", "resolved"):
        check(ev in events, "timeline has '%s'" % ev)

    # Human in the loop: medium risk waits, the operator approves.
    d.post_file(scenario("payments-memory"))
    waiting = d.wait_for(lambda: d.incidents("awaiting_approval"), what="an approval request")[0]
    check("payments" in waiting["services"], "payments incident waits for a human")
    st, body, _ = d.request("POST", "/v1/incidents/%s/approve" % waiting["id"],
                            '{"reason":"reviewed"}', headers={"X-Request-ID": "approve-req-1"})
    check(st == 200, "approve answers 200")
    st, body = d.json("POST", "/v1/incidents/%s/approve" % waiting["id"], "{}")
    check(st == 409, "a second approval is refused with 409")
    d.wait_for(lambda: d.json("GET", "/v1/incidents/" + waiting["id"])[1]["state"] == "resolved",
               what="the approved incident to resolve")
    st, doc2 = d.json("GET", "/v1/incidents/" + waiting["id"])
    check(doc2["approvals"][-1]["actor"].startswith("api:"), "the approval names the API caller")
    check(doc2["approvals"][-1].get("request_id") == "approve-req-1",
          "the approval keeps the X-Request-ID that outgoing calls for the incident carry")

    st, audit = d.json("GET", "/v1/audit?action=approve")
    check(st == 200 and len(audit["records"]) >= 2, "audit query filters by action")
    st, audit = d.json("GET", "/v1/audit?action=execution")
    check(len(audit["records"]) == 2, "two executions audited")
finally:
    rc = d.stop()
check(rc == 0, "SIGTERM drains and exits 0")
calls = [j for j in journal(d) if j.get("op") == "execute" and not j.get("dry_run")]
check(len(calls) == 2, "the executor saw exactly two execute calls, one per incident (%d)"
      % len(calls))
out = subprocess.run([SENTINELCTL, "audit", "verify", "-c", d.conf_path], capture_output=True,
                     text=True)
check(out.returncode == 0 and "audit chain ok" in out.stdout,
      "sentinelctl audit verify: " + out.stdout.strip() + out.stderr.strip())
d.cleanup()
print("1..ok")
