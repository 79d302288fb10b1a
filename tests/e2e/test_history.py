"""The telemetry store as history: with [sentinel] telemetry set, points are kept in the store and
a series seen for the first time (after a restart, say) primes its detectors from its history,
so a spike right after the restart is caught; without history the same spike falls inside the
detector's min_history and goes unseen."""
import json
import random

from sntest import Daemon, check

T0 = 1795600800000


def points(n, t0, spike_at=None, seed=3):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        v = 100 + rnd.gauss(0, 1)
        if i == spike_at:
            v = 160
        out.append(json.dumps({"ts": t0 + i * 10000, "metric": "latency_ms", "value": round(v, 3),
                               "labels": {"service": "cart"}}))
    return "\n".join(out) + "\n"


def metric(d, name):
    st, raw, _ = d.request("GET", "/metrics")
    for line in raw.decode().splitlines():
        if line.split(" ")[0] in ("sentinel_" + name, name):
            return float(line.split()[-1])
    return 0.0


def restart_and_spike(d):
    """Restart on the same files, send one normal point, wait for priming, then a spike."""
    d.stop()
    d.start()
    t1 = T0 + 400 * 10000
    check(d.json("POST", "/v1/events", points(1, t1, seed=9))[0] == 200, "first point accepted")
    return t1


d = Daemon(extra_core="telemetry = local")
d.start()
try:
    check(d.json("POST", "/v1/events", points(300, T0))[0] == 200, "history ingested")
    t1 = restart_and_spike(d)
    d.wait_for(lambda: metric(d, "telemetry_series_warmed") >= 1,
               what="the new series to be primed from the store")
    d.json("POST", "/v1/events", points(1, t1 + 10000, spike_at=0, seed=10))
    inc = d.wait_for(lambda: [i for i in d.incidents() if "cart" in i["services"]],
                     what="the spike after the restart to be detected")
    check(len(inc) == 1, "a spike right after a restart is caught thanks to the history")
    doc = d.json("GET", "/v1/incidents/" + inc[0]["id"])[1]
    series = doc["anomalies"][0]["series"]
    st, pts = d.json("GET", "/v1/series/%s?from=%d&to=%d" % (series, T0, T0 + 500 * 10000))
    check(st == 200 and len(pts["points"]) == 302 and pts["points"][0] == [T0, pts["points"][0][1]],
          "GET /v1/series serves the series around the onset from the store (%d points)"
          % len(pts.get("points", [])))
    st, _ = d.json("GET", "/v1/series/%s?from=x&to=1" % series)
    check(st == 400, "a bad range is refused")
    check(metric(d, "telemetry_store_dropped_points_total") == 0, "the store kept every point")
finally:
    d.cleanup()

# The same without a telemetry store: the restarted series is cold and the spike unseen.
d = Daemon()
d.start()
try:
    check(d.json("POST", "/v1/events", points(300, T0))[0] == 200, "history ingested")
    t1 = restart_and_spike(d)
    d.json("POST", "/v1/events", points(1, t1 + 10000, spike_at=0, seed=10))
    d.wait_for(lambda: json.loads(d.request("GET", "/health/detailed")[1])["telemetry"]["points"]
               >= 2, what="both points to be observed")
    import time
    time.sleep(1.5)
    check(d.incidents() == [], "without history the same spike is inside min_history: unseen")
    check(metric(d, "telemetry_series_warmed") == 0, "nothing was primed")
finally:
    d.cleanup()

# The store fails: the new series starts cold (counted), detection goes on, writes are counted.
import os
import sqlite3

d = Daemon(extra_core="telemetry = local")
d.start()
try:
    check(d.json("POST", "/v1/events", points(300, T0))[0] == 200, "history ingested")
    d.stop()
    db = sqlite3.connect(os.path.join(d.dir, "sentinel.db"))
    db.execute("ALTER TABLE points RENAME TO points_gone")
    db.commit()
    db.close()
    d.start()
    t1 = T0 + 400 * 10000
    check(d.json("POST", "/v1/events", points(1, t1, seed=9))[0] == 200,
          "ingest goes on while the telemetry store fails")
    d.wait_for(lambda: metric(d, 'telemetry_series_cold{reason="failed"}') >= 1,
               what="the failed priming to be counted")
    d.json("POST", "/v1/events", points(60, t1 + 10000, spike_at=50, seed=11))
    got = d.wait_for(lambda: [i for i in d.incidents() if "cart" in i["services"]],
                     what="detection from the cold state once min_history is reached")
    check(len(got) == 1, "a cold series still detects once it has min_history")
    check(d.wait_for(lambda: metric(d, 'telemetry_store_dropped_points_total{reason="error"}'),
                     what="refused writes to be counted") >= 1,
          "points the store refused are counted")
finally:
    d.cleanup()
