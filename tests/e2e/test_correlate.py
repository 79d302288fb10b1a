"""Correlation on a real sentineld: detector votes (weights, min_votes, one anomaly per vote
window), flapping suppression, fingerprint deduplication against open incidents, confidence and
priority on every incident, and the series cap with its eviction policy."""
import json
import random

from sntest import BASE_CONF, Daemon, check, scenario

T0 = 1795600800000


def series(metric, service, n, spikes=(), base=100.0, noise=1.0, step=10000, t0=T0, seed=1):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        v = base + rnd.gauss(0, noise)
        if i in spikes:
            v = base + 60 * noise
        out.append(json.dumps({"ts": t0 + i * step, "metric": metric, "value": round(v, 3),
                               "labels": {"service": service}}))
    return out


def post(d, lines):
    for i in range(0, len(lines), 2000):
        st, body = d.json("POST", "/v1/events", "\n".join(lines[i:i + 2000]) + "\n")
        if st != 200:
            check(False, "ingest answered %d: %r" % (st, body))


def metric(d, name, labels=""):
    st, raw, _ = d.request("GET", "/metrics")
    for line in raw.decode().splitlines():
        if line.startswith("sentinel_" + name + labels + " ") or \
                line.startswith(name + labels + " "):
            return float(line.split()[-1])
    return 0.0


TWO_DETECTORS = """
[detector:latency]
plugin = zscore
threshold = 4
{w1}

[detector:robust]
plugin = zscore
robust = true
threshold = 4
{w2}
"""


def tuned(text, **kv):
    """BASE_CONF with [sentinel] keys set: replaced where present, added otherwise."""
    lines = text.split("\n")
    for k, v in kv.items():
        hit = [i for i, l in enumerate(lines) if l.startswith(k + " =")]
        if hit:
            lines[hit[0]] = "%s = %s" % (k, v)
        else:
            lines.insert(lines.index("[sentinel]") + 1, "%s = %s" % (k, v))
    return "\n".join(lines)


def conf_with(w1="", w2="", **kv):
    text = BASE_CONF.replace("[detector:latency]\nplugin = zscore\nthreshold = 4\n",
                             TWO_DETECTORS.replace("{w1}", w1).replace("{w2}", w2))
    text = text.replace("edge = latency -> correlate",
                        "edge = latency -> correlate\nedge = events -> robust -> correlate")
    return tuned(text, **kv)


def settle(d):
    d.wait_for(lambda: json.loads(d.request("GET", "/health/detailed")[1])["telemetry"]["queued"]
               == 0, what="telemetry to drain")


# 1. Two detectors that agree on one spike: one anomaly, not two; the duplicate is counted.
d = Daemon(conf=conf_with(group_wait_wall=1)).start()
try:
    post(d, series("latency_ms", "cart", 200, spikes={150}))
    settle(d)
    incs = d.wait_for(lambda: [i for i in d.incidents() if i["state"] != "gathering"],
                      what="an incident")
    check(len(d.incidents()) == 1, "one spike seen by two detectors opens one incident (%d)" % len(incs))
    doc = d.json("GET", "/v1/incidents/" + incs[0]["id"])[1]
    check(doc["anomaly_count"] == 1, "and carries one anomaly (%d)" % doc["anomaly_count"])
    check(metric(d, "anomalies_suppressed_total", '{reason="same_anomaly"}') >= 1,
          "the second detector's verdict is counted as the same anomaly")
    check(incs[0].get("priority") in ("P1", "P2", "P3", "P4")
          and 0 < incs[0].get("confidence", 0) <= 0.99,
          "the incident has a priority and a confidence: %s %s" % (incs[0].get("priority"),
                                                                    incs[0].get("confidence")))
finally:
    d.cleanup()

# 2. min_votes = 2 with one detector abstaining (weight 0): nothing gets through, and it is
#    counted, not silently lost.
d = Daemon(conf=conf_with(w2="weight = 0", min_votes=2, group_wait_wall=1)).start()
try:
    post(d, series("latency_ms", "cart", 200, spikes={150}))
    post(d, series("latency_ms", "cart", 100, t0=T0 + 200 * 10000 + 3600000, seed=2))
    settle(d)
    d.wait_for(lambda: metric(d, "anomalies_suppressed_total", '{reason="unconfirmed"}') >= 1,
               what="the unconfirmed verdict to be counted")
    check(d.incidents() == [], "a verdict short of min_votes opens nothing")
finally:
    d.cleanup()

# 3. Flapping: a series that spikes every 10 minutes is reported a few times, then suppressed.
d = Daemon(conf=tuned(BASE_CONF, flap_threshold=3, flap_window=3600, correlate_window=60,
                      group_wait=30, group_wait_wall=1)).start()
try:
    spikes = set(range(100, 1000, 60))  # every 10 minutes after warm-up: 15 spikes
    post(d, series("queue_depth", "worker", 1000, spikes=spikes))
    settle(d)
    d.wait_for(lambda: metric(d, "series_flapping_total") >= 1, what="flapping to be detected")
    sup = metric(d, "anomalies_suppressed_total", '{reason="flapping"}')
    anomalies = metric(d, "anomalies_total")
    check(sup >= 10, "the flapping series' later anomalies are suppressed (%d of %d)"
          % (sup, anomalies))
    incs = d.wait_for(lambda: d.incidents(), what="incidents")
    check(1 <= len(incs) <= 2, "15 flaps make at most 2 incidents, not 15 (%d)" % len(incs))
finally:
    d.cleanup()

# 4. Fingerprint: the same trouble again while its incident waits for a human folds into it.
d = Daemon(extra_core="flap_threshold = 0").start()
try:
    mem = series("process_resident_memory_bytes", "payments", 1000, spikes={150, 700},
                 base=5e8, noise=1e6)
    post(d, mem[:400])
    waiting = d.wait_for(lambda: d.incidents("awaiting_approval"), what="an approval request")[0]
    post(d, mem[400:])
    settle(d)
    d.wait_for(lambda: any(t["event"] == "duplicate" for t in
                           d.json("GET", "/v1/incidents/" + waiting["id"])[1]["timeline"]),
               what="the repeat to fold into the waiting incident")
    check(len(d.incidents()) == 1, "the repeat opened no second incident (%d)"
          % len(d.incidents()))
    doc = d.json("GET", "/v1/incidents/" + waiting["id"])[1]
    check(doc["anomaly_count"] == 2, "its anomaly moved over (%d)" % doc["anomaly_count"])
    check(metric(d, "incidents_deduplicated_total", '{by="fingerprint"}') == 1,
          "the fold is counted by fingerprint")
finally:
    d.cleanup()

# 5. Series cap: lru evicts idle series and keeps serving new ones; refuse counts them.
for policy in ("lru", "refuse"):
    d = Daemon(extra_core="workers = 1\nmax_series = 20\nseries_eviction = " + policy).start()
    try:
        lines = []
        for s in range(60):
            lines += series("m%d" % s, "svc%d" % s, 5, t0=T0 + s * 100000, seed=s)
        post(d, lines)
        settle(d)
        active = metric(d, "telemetry_series")
        if policy == "lru":
            ev = metric(d, "telemetry_series_evicted")
            check(ev >= 39 and active <= 21, "lru: %d series evicted, %d active" % (ev, active))
            check(metric(d, "telemetry_series_dropped") == 0, "lru: no point dropped")
        else:
            dr = metric(d, "telemetry_series_dropped")
            check(dr >= 39 and active <= 21, "refuse: %d refused, %d active" % (dr, active))
    finally:
        d.cleanup()
