"""The clickhouse store as the [sentinel] telemetry store of a real sentineld, against a real
ClickHouse 18.16 (tests/support/chserver.py): a scenario's points land in ClickHouse, a series
seen for the first time after a restart is primed from ClickHouse's history, the stats route
answers through the daemon, and ClickHouse stopped and started in the middle of an ingest loses
nothing (the batches wait in the spool, visible in /metrics)."""
import json
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import chserver  # noqa: E402
from sntest import BASE_CONF, Daemon, check, scenario  # noqa: E402

if not chserver.available():
    print("SKIP: clickhouse-server is not installed")
    sys.exit(0)

T0 = 1795600800000

CH_SECTION = """
[store:ch]
plugin = clickhouse
url = @URL@
database = e2e
user = sentinel
password = ${{env:SN_E2E_CH_PASSWORD}}
spool_dir = {dir}/spool
batch_interval = 200ms
retry_base = 100ms
retry_max = 1s
"""


def points(n, t0, spike_at=None, seed=3, metric="latency_ms", service="cart"):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        v = 100 + rnd.gauss(0, 1)
        if i == spike_at:
            v = 160
        out.append(json.dumps({"ts": t0 + i * 10000, "metric": metric, "value": round(v, 3),
                               "labels": {"service": service}}))
    return "\n".join(out) + "\n"


def metric(d, name):
    st, raw, _ = d.request("GET", "/metrics")
    for line in raw.decode().splitlines():
        if line.split(" ")[0] in ("sentinel_" + name, name):
            return float(line.split()[-1])
    return 0.0


def count(srv, where=""):
    st, out = srv.query("SELECT count() FROM e2e.points" + where)
    return int(out) if st == 200 else -1


def wait_count(d, srv, want, where="", timeout=30, what="points in ClickHouse"):
    return d.wait_for(lambda: count(srv, where) == want, timeout=timeout,
                      what="%d %s (have %d)" % (want, what, count(srv, where)))


os.environ["SN_E2E_CH_PASSWORD"] = chserver.PASSWORD
srv = chserver.ChServer().start()
d = None
try:
    conf = BASE_CONF + CH_SECTION.replace("@URL@", srv.url)
    d = Daemon(conf=conf, extra_core="telemetry = ch")
    d.start()

    # 1. A scenario's points land in ClickHouse, every one.
    with open(scenario("checkout-deploy")) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    pts = [r for r in recs if "metric" in r and "value" in r]
    d.post_file(scenario("checkout-deploy"))
    wait_count(d, srv, len(pts), what="scenario points")
    check(count(srv) == len(pts), "all %d scenario points are in ClickHouse" % len(pts))
    st, out = srv.query("SELECT DISTINCT metric FROM e2e.points ORDER BY metric FORMAT TSV")
    check(out.decode().split() == sorted({r["metric"] for r in pts}),
          "the metric names are kept")
    st, out = srv.query("SELECT count() FROM e2e.points WHERE "
                        "visitParamExtractString(labels, 'service') = 'checkout'")
    check(int(out) == sum(1 for r in pts if r["labels"].get("service") == "checkout"),
          "labels are kept as JSON text")
    check(metric(d, 'clickhouse_up{instance="store:ch"}') == 1, "clickhouse_up is 1")

    # Many series interleaved in one request: the engine shares a series' strings between its
    # points in a batch (256 slots) and the store its encoded labels (4096 slots); with 600
    # series both tables have collisions, and every row must still carry its own labels.
    lines = [json.dumps({"ts": T0 + r * 10000, "metric": "tail_ms", "value": float(k),
                         "labels": {"pod": "p%d" % k, "zone": "z%d" % (k % 3)}})
             for r in range(3) for k in range(600)]
    check(d.json("POST", "/v1/events", "\n".join(lines) + "\n")[0] == 200, "600 series posted")
    wait_count(d, srv, 1800, " WHERE metric = 'tail_ms'", what="interleaved points")
    st, out = srv.query("SELECT count() FROM e2e.points WHERE metric = 'tail_ms' AND labels != "
                        "concat('{\"pod\":\"p', toString(toUInt32(value)), '\",\"zone\":\"z', "
                        "toString(toUInt32(value) % 3), '\"}')")
    check(st == 200 and int(out) == 0, "each of the 1800 rows carries its own series' labels "
          "(%s wrong)" % out.decode().strip())

    # 2. A series seen for the first time after a restart is primed from ClickHouse.
    check(d.json("POST", "/v1/events", points(300, T0))[0] == 200, "history ingested")
    wait_count(d, srv, 300, " WHERE metric = 'latency_ms'", what="history points")
    d.stop()
    d.start()
    t1 = T0 + 400 * 10000
    check(d.json("POST", "/v1/events", points(1, t1, seed=9))[0] == 200, "first point accepted")
    d.wait_for(lambda: metric(d, "telemetry_series_warmed") >= 1,
               what="the new series to be primed from ClickHouse")
    check(metric(d, "telemetry_series_warmed") >= 1,
          "the restarted series was primed from ClickHouse (telemetry_series_warmed)")
    d.json("POST", "/v1/events", points(1, t1 + 10000, spike_at=0, seed=10))
    inc = d.wait_for(lambda: [i for i in d.incidents() if "cart" in i["services"]],
                     what="the spike after the restart to be detected")
    check(len(inc) == 1, "a spike right after the restart is caught thanks to the history")
    doc = d.json("GET", "/v1/incidents/" + inc[0]["id"])[1]
    series = doc["anomalies"][0]["series"]
    def series_points():
        st, body = d.json("GET", "/v1/series/%s?from=%d&to=%d" % (series, T0, T0 + 500 * 10000))
        return body["points"] if st == 200 and len(body["points"]) == 302 else None

    got = d.wait_for(series_points, what="the series to be read back from ClickHouse")
    check(got[0][0] == T0 and got[-1][0] == t1 + 10000 and got[-1][1] == 160,
          "GET /v1/series reads the series back from ClickHouse")

    # The stats route through the daemon.
    st, body = d.json("POST", "/hooks/ch/stats",
                      "series=%s&days=2&until=%d" % (series, T0 + 500 * 10000))
    check(st == 200 and body["all"]["n"] >= 301 and len(body["by_hour"]) >= 1,
          "POST /hooks/ch/stats answers window statistics (n=%s)" % (body or {}).get("all"))
    check(abs(body["all"]["mean"] - 100) < 2 and body["by_hour"][0]["p50"] is not None,
          "mean and quantiles are in range")
    st, body = d.json("POST", "/hooks/ch/stats", "series=nothex")
    check(st == 400, "a bad series is refused with 400")

    # 3. ClickHouse stops in the middle of an ingest: nothing is lost.
    before = count(srv)
    t2 = T0 + 1000 * 10000
    check(d.json("POST", "/v1/events", points(100, t2, metric="q_depth"))[0] == 200,
          "first half ingested")
    wait_count(d, srv, 100, " WHERE metric = 'q_depth'", what="first half")
    srv.stop()
    check(d.json("POST", "/v1/events", points(200, t2 + 100 * 10000, metric="q_depth"))[0] == 200,
          "second half ingested while ClickHouse is down")
    d.wait_for(lambda: metric(d, 'clickhouse_spool_bytes{instance="store:ch"}') > 0,
               what="the spool to fill")
    check(metric(d, 'clickhouse_up{instance="store:ch"}') == 0, "clickhouse_up is 0")
    check(len([f for f in os.listdir(os.path.join(d.dir, "spool")) if f.endswith(".chspool")])
          >= 1, "spool segments on disk")
    st, body = d.json("GET", "/health/detailed")
    check(st == 503 and "ClickHouse unavailable" in json.dumps(body),
          "/health/detailed reports the store unavailable (%d)" % st)
    srv.start()
    wait_count(d, srv, 300, " WHERE metric = 'q_depth'", what="both halves")
    d.wait_for(lambda: metric(d, 'clickhouse_spool_bytes{instance="store:ch"}') == 0,
               what="the spool to drain")
    st, out = srv.query("SELECT uniqExact(ts) FROM e2e.points WHERE metric = 'q_depth'")
    check(int(out) == 300, "no point lost or doubled across the outage")
    check(count(srv) == before + 300, "nothing else changed")
    check(metric(d, 'telemetry_store_dropped_points_total{reason="error"}') == 0 and
          metric(d, 'telemetry_store_dropped_points_total{reason="backlog"}') == 0,
          "the core counted no dropped points")

    # 4. sentineld killed while ClickHouse is down: the spool is replayed at the next start.
    srv.stop()
    t3 = T0 + 2000 * 10000
    check(d.json("POST", "/v1/events", points(50, t3, metric="conn_errors"))[0] == 200,
          "points ingested while ClickHouse is down")
    d.wait_for(lambda: metric(d, 'clickhouse_spool_points{instance="store:ch"}') >= 50,
               what="the points to be spooled")
    d.kill9()
    srv.start()
    d.start()
    wait_count(d, srv, 50, " WHERE metric = 'conn_errors'", what="spooled points after restart")
    check(count(srv, " WHERE metric = 'conn_errors'") == 50,
          "a restart replays the spool left by a killed daemon")
    text = open(os.path.join(d.dir, "sentineld.log"), "rb").read().decode("utf-8", "replace")
    check(chserver.PASSWORD not in text, "the ClickHouse password is never logged")
finally:
    if d:
        d.cleanup()
    srv.cleanup()
