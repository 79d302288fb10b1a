"""Scale-out on one state store: two sentineld instances share it; an incident is owned by the
instance holding its lease, the other leaves it alone; kill -9 the owner and, once the lease has
expired, the other takes the incident over at its last checkpoint and finishes it, with exactly
one execution per action."""
import json
import time

from sntest import BASE_CONF, Daemon, check, journal, scenario


def conf(name, dbdir=None):
    text = BASE_CONF.replace("[sentinel]", "[sentinel]\ninstance_id = %s\nlease_ttl = 3s" % name)
    if dbdir:
        text = text.replace("{dir}/sentinel.db", dbdir + "/sentinel.db")
        text = text.replace("{dir}/journal.jsonl", dbdir + "/journal.jsonl")
    return text


a = Daemon(conf=conf("alpha")).start()
b = None
try:
    a.post_file(scenario("payments-memory"))
    waiting = a.wait_for(lambda: a.incidents("awaiting_approval"), what="an approval request")[0]
    iid = waiting["id"]

    b = Daemon(conf=conf("beta", a.dir)).start()
    time.sleep(4.5)  # more than a lease_ttl: beta has scanned the store at least once
    st_b = b.json("GET", "/v1/incidents/" + iid)
    check(st_b[0] == 404,
          "while alpha holds the lease, beta leaves the incident alone: %s" % (st_b,))
    check(a.json("GET", "/v1/incidents/" + iid)[1]["state"] == "awaiting_approval",
          "alpha still owns it")

    a.kill9()
    doc = b.wait_for(lambda: (lambda r: r[1] if r[0] == 200 else None)(
        b.json("GET", "/v1/incidents/" + iid)), timeout=20,
        what="beta to take the incident over after alpha's lease expired")
    check(doc["state"] == "awaiting_approval", "beta resumed it at its last checkpoint")
    events = [t["event"] for t in doc["timeline"]]
    check("resumed" in events, "the timeline says it was resumed")

    st, body = b.json("POST", "/v1/incidents/%s/approve" % iid, '{"reason":"after failover"}')
    check(st == 200, "the operator approves on the surviving instance")
    b.wait_for(lambda: b.json("GET", "/v1/incidents/" + iid)[1]["state"] == "resolved",
               what="the incident to resolve on beta")
    execs = [j for j in journal(a) if j.get("op") == "execute" and not j.get("dry_run")]
    check(len(execs) == 1, "exactly one execution across both instances (%d)" % len(execs))
    st, raw, _ = b.request("GET", "/metrics")
    check(b"incidents_resumed_total" in raw, "the takeover is counted")

    # alpha comes back: the incident is closed and owned elsewhere; it does not act again.
    a.start()
    time.sleep(4.5)
    execs = [j for j in journal(a) if j.get("op") == "execute" and not j.get("dry_run")]
    check(len(execs) == 1, "alpha's return changes nothing (%d executions)" % len(execs))
finally:
    if b:
        b.cleanup()
    a.cleanup()
