"""Memory that learns: a resolved incident is remembered with what fixed it; the next similar
incident retrieves it (similar_incidents in the document and the timeline), and when no runbook
rule covers the new one, the planner reuses what worked, behind the same safety gates."""
import json

from sntest import BASE_CONF, Daemon, check

T0 = 1795600800000


def spike(service, t0, metric="queue_depth"):
    out = []
    for i in range(120):
        v = 100 + (i % 7) * 0.3
        if i == 100:
            v = 400
        out.append(json.dumps({"ts": t0 + i * 10000, "metric": metric, "value": v,
                               "labels": {"service": service}}))
    return "\n".join(out) + "\n"


# The first time a rule covers it; the second time that rule is gone (as if written for one
# service only) and memory has to carry the plan.
conf = BASE_CONF.replace("rule = cause~deploy",
                         "rule = service=worker -> mock:rollout_restart deployment/shop/worker\n"
                         "rule = cause~deploy")
d = Daemon(conf=conf).start()
try:
    d.json("POST", "/v1/events", spike("worker", T0))
    first = d.wait_for(lambda: [i for i in d.incidents() if i["state"] == "resolved"],
                       what="the first incident to resolve")[0]
    d.stop()
    with open(d.conf_path) as f:
        text = f.read()
    with open(d.conf_path, "w") as f:
        f.write(text.replace("rule = service=worker -> mock:rollout_restart deployment/shop/worker\n",
                             ""))
    d.start()
    d.json("POST", "/v1/events", spike("worker", T0 + 6 * 3600 * 1000))
    second = d.wait_for(lambda: [i for i in d.incidents() if i["id"] != first["id"]
                                 and i["state"] not in ("gathering", "analyzing")],
                        what="the second incident")[0]
    doc = d.wait_for(lambda: (lambda x: x if x["state"] in ("resolved", "escalated", "closed")
                              else None)(d.json("GET", "/v1/incidents/" + second["id"])[1]),
                     what="the second incident to finish")
    sim = doc.get("similar_incidents", [])
    check(sim and sim[0]["id"] == first["id"] and sim[0]["outcome"] == "resolved",
          "the second incident recalls the first, resolved one: %s" % sim[:1])
    check(any(t["event"] == "similar" for t in doc["timeline"]), "the timeline says so")
    check(doc["plan"] and "resolved similar incident" in doc["plan"][0].get("reason", ""),
          "no rule matched: the planner reused what worked: %s" % doc["plan"])
    check(doc["state"] == "resolved", "and the incident resolved with it (%s)" % doc["state"])
finally:
    d.cleanup()
