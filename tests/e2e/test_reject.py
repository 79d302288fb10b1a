"""A human rejects the plan: the incident escalates and nothing is executed."""
from sntest import Daemon, check, journal, scenario

d = Daemon().start()
try:
    d.post_file(scenario("payments-memory"))
    waiting = d.wait_for(lambda: d.incidents("awaiting_approval"), what="an approval request")[0]
    st, body = d.json("POST", "/v1/incidents/%s/reject" % waiting["id"],
                      '{"reason":"not during the sale"}')
    check(st == 200, "reject answers 200")
    d.wait_for(lambda: d.json("GET", "/v1/incidents/" + waiting["id"])[1]["state"] == "escalated",
               what="the rejected incident to escalate")
    st, doc = d.json("GET", "/v1/incidents/" + waiting["id"])
    check(doc["approvals"][-1]["decision"] == "rejected", "rejection recorded")
    check(doc["executions"] == [], "no execution after a rejection")
    check(not [j for j in journal(d) if j.get("op") == "execute"], "executor never called")
    st, audit = d.json("GET", "/v1/audit?action=reject")
    check(len(audit["records"]) == 1 and audit["records"][0]["detail"]["reason"] ==
          "not during the sale", "rejection audited with its reason")
finally:
    d.cleanup()
