"""Kafka input -> ClickHouse telemetry store with large records: the input's window of
unacknowledged batches holds more than one store batch, so ClickHouse's batches fill from the
records in flight and are inserted at batch_points, not when batch_interval runs out.

The ClickHouse store acknowledges a write only once its batch is inserted, and the Kafka input
hands over at most max_inflight batches (of about batch_bytes each) before it waits for
acknowledgements. With records of about 1 KB, the old default window (4 batches of 1 MiB, about
4 000 records) never reached the store's 10 000-point batch: every batch waited for
batch_interval. Here batch_interval is 120 s, so that wait cannot hide: 20 000 of 25 000 records
must be in ClickHouse within 20 s (two full batches; about 2 s on this machine). Once the
detectors have seen every record, SIGTERM: the daemon exits cleanly and the last, partial batch
is inserted on the way out, so all 25 000 records are in ClickHouse once each.

Then ClickHouse stalls (SIGSTOP) under a second daemon without a spool: its inserts hang, no
batch is acknowledged, and the input pauses its partitions. Records produced meanwhile must
show in kafka_consumer_lag: librdkafka learns partition ends only from fetches, so its lag would
stand still at the pause; the input asks the brokers instead while paused. After SIGCONT every
record arrives in ClickHouse and the lag drains to 0.

Skipped (exit 0) when the kafka plugin, kafka-mock, kcat or clickhouse-server is missing."""
import json
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))

import chserver  # noqa: E402
from kafkamock import KafkaMock  # noqa: E402
from kafkatest import metric, skip_unless_kafka, wait  # noqa: E402
from sntest import Daemon, check  # noqa: E402

skip_unless_kafka()
if not chserver.available():
    print("skip: clickhouse-server is not installed")
    sys.exit(0)

T0 = 1795600800000
N = 25000
SERIES = 100

CONF = """
[sentinel]
listen = 127.0.0.1:{port}
state = local
telemetry = ch

[store:local]
plugin = sqlite
path = {dir}/sentinel.db

[store:ch]
plugin = clickhouse
url = @URL@
database = wide
batch_interval = 120s

[input:kafka]
plugin = kafka
brokers = @BOOT@
topics = wide
group_id = wide
statistics_interval = 500ms
commit_interval = 200ms

[detector:latency]
plugin = zscore

[pipeline]
edge = kafka -> latency
edge = latency -> correlate
"""


def record(i):
    s = i % SERIES
    return json.dumps({"ts": T0 + (i // SERIES) * 10000, "metric": "wide_latency_ms",
                       "value": float(100 + s % 7 + (i % 13) / 10.0),
                       "labels": {"service": "svc%d" % (s % 20), "pod": "pod-%d" % s,
                                  "note1": "a" * 200, "note2": "b" * 200,
                                  "note3": "c" * 200, "note4": "d" * 200}},
                      separators=(",", ":"))


def observed(d):
    st, body = d.json("GET", "/health/detailed")
    return body["telemetry"]["points"] if st == 200 else 0


def count(srv, what="count()", db="wide"):
    st, out = srv.query("SELECT %s FROM %s.points" % (what, db))
    return int(out) if st == 200 else -1


srv = chserver.ChServer().start()
k = KafkaMock(topics={"wide": 4, "stall": 2}, brokers=1).start()
d = None
try:
    recs = [record(i) for i in range(N)]
    size = sum(len(r) + 1 for r in recs) / N
    check(size > 900, "records of about 1 KB (%.0f bytes)" % size)
    k.produce("wide", recs, keys=["s%d" % (i % SERIES) for i in range(N)])

    d = Daemon(conf=CONF.replace("@URL@", srv.url).replace("@BOOT@", k.bootstrap)).start()
    wait(lambda: count(srv) >= 20000, 20,
         "two full 10000-point batches in ClickHouse before batch_interval (120 s)", d)
    check(metric(d, "kafka_redeliveries_total") == 0, "no batch was refused and delivered again")
    # Every record handed to the core (what the input has not handed over at a stop stays
    # uncommitted in Kafka for the next owner): the rest waits in the store's partial batch.
    wait(lambda: observed(d) >= N, 60, "the detectors to observe all %d records" % N, d)
    check(count(srv) < N, "the last, partial batch still waits for batch_interval (%d rows)"
          % count(srv))
    rc = d.stop()
    check(rc == 0, "sentineld exits 0 on SIGTERM (%s)" % rc)
    got, distinct = count(srv), count(srv, "uniqExact(series, ts)")
    check(got == N and distinct == N,
          "on the way out the partial batch is inserted: %d rows, %d distinct (series, ts), "
          "of %d records" % (got, distinct, N))
    d.cleanup()
    d = None

    # ClickHouse stalls: paused partitions, and a lag that still counts.
    conf = (CONF.replace("@URL@", srv.url).replace("@BOOT@", k.bootstrap)
            .replace("database = wide\nbatch_interval = 120s", "database = stall\n"
                     "batch_interval = 200ms\ntimeout = 2s\nretry_max = 500ms")
            .replace("topics = wide\ngroup_id = wide", "topics = stall\ngroup_id = stall\n"
                     "max_inflight = 1"))
    small = [json.dumps({"ts": T0 + i * 1000, "metric": "stall_ms", "value": float(i % 50),
                         "labels": {"service": "svc%d" % (i % 4)}}) for i in range(8000)]
    keys = ["s%d" % (i % 4) for i in range(8000)]
    k.produce("stall", small[:1000], keys=keys[:1000])
    d = Daemon(conf=conf).start()
    wait(lambda: count(srv, db="stall") == 1000, 30, "the first 1000 records in ClickHouse", d)
    wait(lambda: metric(d, "kafka_consumer_lag", -1) == 0, 30, "lag 0 before the stall", d)
    os.kill(srv.pid(), signal.SIGSTOP)
    try:
        # One batch goes out and hangs (max_inflight = 1); the next waits: the input pauses.
        k.produce("stall", small[1000:2000], keys=keys[1000:2000])
        wait(lambda: metric(d, "kafka_consumer_lag", -1) >= 1000, 20, "the second 1000 read", d)
        k.produce("stall", small[2000:3000], keys=keys[2000:3000])
        wait(lambda: metric(d, "kafka_paused") == 1, 30, "the partitions paused", d)
        k.produce("stall", small[3000:], keys=keys[3000:])
        # 7000 past the last acknowledged offset (1000); librdkafka's own figure stays at most
        # 2000, what it had fetched before the pause.
        lag = wait(lambda: (lambda v: v if v >= 7000 else None)(
            metric(d, "kafka_consumer_lag", -1)), 20,
            "kafka_consumer_lag to count the 5000 records produced while paused", d)
        check(lag == 7000 and metric(d, "kafka_paused") == 1,
              "while paused the lag counts what arrived meanwhile (%d)" % lag)
    finally:
        os.kill(srv.pid(), signal.SIGCONT)
    wait(lambda: count(srv, db="stall") >= 8000, 60, "all 8000 records in ClickHouse", d)
    wait(lambda: metric(d, "kafka_consumer_lag", -1) == 0 and metric(d, "kafka_paused") == 0,
         30, "the lag drained and the partitions resumed", d)
    got = count(srv, "uniqExact(ts)", db="stall")
    check(got == 8000, "after SIGCONT all 8000 records are in ClickHouse (%d distinct), lag 0"
          % got)
finally:
    if d:
        d.cleanup()
    k.stop()
    srv.cleanup()
