"""Alerts judged by another system (the ingest format's "alert" records, as inputs such as
Alertmanager's send them): firing alerts join incidents like anomalies, repeats and HA duplicates
fold by fingerprint, and an incident whose alerts all resolve at the source is resolved, even
while it waits for a human."""
import json

from sntest import BASE_CONF, Daemon, check

T0 = 1795600800000
conf = BASE_CONF.replace("edge = latency -> correlate",
                         "edge = latency -> correlate\nedge = events -> correlate")
conf = conf.replace("rule = cause~memory",
                    "rule = cause~HighMemory -> mock:scale_deployment deployment/shop/{{service}} "
                    "replicas=6\nrule = cause~memory")


def alert(fp, status, ts, name="HighMemory", service="payments"):
    return json.dumps({"ts": ts, "alert": name, "status": status, "fingerprint": fp,
                       "labels": {"service": service, "severity": "page"},
                       "annotations": {"summary": "memory above 90%"}, "group": "{}:{}"})


def doc(d, i):
    return d.json("GET", "/v1/incidents/" + i)[1]


d = Daemon(conf=conf).start()
try:
    body = "\n".join([alert("fp-a", "firing", T0), alert("fp-b", "firing", T0 + 1000,
                                                          name="HighMemoryRSS")]) + "\n"
    st, res = d.json("POST", "/v1/events", body)
    check(st == 200 and res["accepted"] == 2, "alert records are accepted: %s" % res)
    # The same alerts again, as a repeat and from a second Alertmanager of an HA pair.
    d.json("POST", "/v1/events", body)
    d.json("POST", "/v1/events", body)
    inc = d.wait_for(lambda: d.incidents("awaiting_approval"), what="the alert incident")[0]
    check(len(d.incidents()) == 1, "two alerts of one service make one incident")
    x = doc(d, inc["id"])
    check(x["anomaly_count"] == 2, "repeats fold by fingerprint (%d anomalies)"
          % x["anomaly_count"])
    check(x["anomalies"][0]["annotations"]["summary"] == "memory above 90%",
          "annotations travel with the alert")
    st, raw, _ = d.request("GET", "/metrics")
    check(b'anomalies_suppressed_total{reason="repeat"} 4' in raw, "the 4 repeats are counted")

    d.json("POST", "/v1/events", alert("fp-a", "resolved", T0) + "\n")
    d.wait_for(lambda: any(t["event"] == "alert_resolved" for t in doc(d, inc["id"])["timeline"]),
               what="the first resolution")
    check(doc(d, inc["id"])["state"] == "awaiting_approval",
          "one alert of two resolved: the incident stays open")
    d.json("POST", "/v1/events", alert("fp-b", "resolved", T0, name="HighMemoryRSS") + "\n")
    d.wait_for(lambda: doc(d, inc["id"])["state"] == "resolved",
               what="the incident to resolve with its alerts")
    check(doc(d, inc["id"])["state"] == "resolved",
          "every alert resolved at the source resolves the waiting incident")

    # A resolution nobody knows of, and a malformed alert, are refused or counted, not fatal.
    d.json("POST", "/v1/events", alert("fp-zzz", "resolved", T0) + "\n")
    st, res = d.json("POST", "/v1/events",
                     json.dumps({"ts": T0, "alert": "X", "status": "pending",
                                 "fingerprint": "f"}) + "\n")
    check(res["rejected"] == 1 and "field 'status'" in res["errors"][0],
          "a bad status is refused with the field: %s" % res["errors"])
    check(d.request("GET", "/health")[0] == 200, "the daemon keeps serving")
finally:
    d.cleanup()
