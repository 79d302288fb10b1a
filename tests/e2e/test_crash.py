"""kill -9 in the middle of a workflow, between the execution intent and its outcome; the
restarted daemon resumes at the checkpoint, verifies the intent instead of re-running it, and
the incident finishes with exactly one execute call per action."""
import time

from sntest import Daemon, check, journal, scenario

d = Daemon(extra_mock="latency_ms = 3000").start()
try:
    d.post_file(scenario("checkout-deploy"))
    inc = d.wait_for(lambda: [i for i in d.incidents() if i["state"] == "executing"],
                     what="the execution to start")[0]
    st, doc = d.json("GET", "/v1/incidents/" + inc["id"])
    check(any(x["state"] == "intent" for x in doc["executions"]), "intent written before outcome")
    time.sleep(0.3)
    d.kill9()
    d.start()
    doc = d.wait_for(lambda: (lambda s: s[1] if s[0] == 200 and s[1]["state"] == "resolved"
                              else None)(d.json("GET", "/v1/incidents/" + inc["id"])),
                     timeout=40, what="the resumed incident to resolve")
    events = [t["event"] for t in doc["timeline"]]
    check("resumed" in events, "timeline shows the resume")
    execs = [x for x in doc["executions"]]
    check(len(execs) == 1 and execs[0]["state"] == "done", "one execution record, done")
    check(execs[0].get("resumed") in ("verified after restart",
                                      "not applied before restart: executed with the same key"),
          "the intent was verified after restart before anything ran: %s" % execs[0].get("resumed"))
    keys = set(j.get("key") for j in journal(d) if j.get("op") == "execute")
    check(keys <= {execs[0]["key"]}, "every execute call carried the one idempotency key")
    mutations = [j for j in journal(d) if j.get("op") == "execute" and not j.get("deduplicated")]
    check(len(mutations) <= 1, "at most one mutating execute (%d)" % len(mutations))
finally:
    d.cleanup()

# A second kill point: while an incident waits for a human. The restarted daemon resumes it
# still waiting; the approval then runs it to the end, once.
d = Daemon().start()
try:
    d.post_file(scenario("payments-memory"))
    waiting = d.wait_for(lambda: d.incidents("awaiting_approval"), what="an approval request")[0]
    d.kill9()
    d.start()
    again = d.wait_for(lambda: d.incidents("awaiting_approval"), what="the resumed approval")
    check([i["id"] for i in again] == [waiting["id"]], "the waiting incident is waiting again")
    st, _ = d.json("POST", "/v1/incidents/%s/approve" % waiting["id"], "{}")
    check(st == 200, "approval after restart accepted")
    doc = d.wait_for(lambda: (lambda s: s[1] if s[1]["state"] == "resolved" else None)(
        d.json("GET", "/v1/incidents/" + waiting["id"])), what="resolution after restart")
    check(len(doc["executions"]) == 1, "one execution after the restart")
finally:
    d.cleanup()
