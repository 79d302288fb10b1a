"""Kafka fault: the broker connections are cut in the middle of a stream and restored, and
nothing is lost while sentineld keeps serving.

librdkafka's mock cluster (tools/kafka-mock, three brokers) is driven through its control
channel (tests/support/kafkamock.py): `down` closes a broker's connections and refuses new ones,
with no leader change, so its partitions are unreachable until `up`. kcat produces keyed records
from a thread throughout (a chunk is produced again when kcat gives up on the brokers).

1. All brokers cut for 8 s, longer than the group session (6 s), so the consumer loses its
   assignment and joins again after the cut. Meanwhile sentineld answers /health, and
   /health/detailed says the input is down ("all brokers down"). After the cut every produced
   record is in the telemetry store (sqlite `points`; each record has its own timestamp) at least
   once, none that was not produced, the input is healthy again and its lag drains to 0.
2. One broker cut for 4 s (a third of the partitions unreachable; the others keep flowing), then
   restored: again every record arrives.
3. SIGTERM while every broker is cut and the session has expired: sentineld stops cleanly within
   a bounded time (librdkafka's destroy used to wait for the coordinator forever), and once
   restarted with the brokers back it goes on where it left off.

Skipped (exit 0) when the kafka plugin, kafka-mock or kcat is missing."""
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))

from kafkamock import KafkaMock  # noqa: E402
from kafkatest import conf_with, metric, skip_unless_kafka, store_rows, wait  # noqa: E402
from sntest import Daemon, check  # noqa: E402

skip_unless_kafka()

T0 = 1795600800000

KAFKA = """[input:kafka]
plugin = kafka
brokers = {boot}
topics = cut
group_id = e2e-cut
statistics_interval = 500ms
commit_interval = 200ms
rdkafka = session.timeout.ms=6000
rdkafka = heartbeat.interval.ms=500
rdkafka = reconnect.backoff.max.ms=500
"""


def conf(boot):
    return conf_with(KAFKA.format(boot=boot))


def record(i):
    return json.dumps({"ts": T0 + i * 1000, "metric": "kafka_cut", "value": float(i % 97),
                       "labels": {"service": "svc%d" % (i % 20)}})


def expected(first, last):
    """Timestamps of records first..last-1: each record has its own."""
    return {T0 + i * 1000 for i in range(first, last)}


def stored(d):
    """(distinct timestamps, rows) of the daemon's telemetry store (sqlite `points`)."""
    rows = store_rows(d, "SELECT ts FROM points")
    return {r[0] for r in rows}, len(rows)


def count(d):
    rows = store_rows(d, "SELECT COUNT(*) FROM (SELECT DISTINCT series, ts FROM points)")
    return rows[0][0] if rows else 0




def kafka_health(d):
    st, body = d.json("GET", "/health/detailed")
    return st, body["instances"]["input:kafka"]




def producer(k, first, total, chunk, pause):
    """Records first..first+total-1, keyed, in chunks from a thread. kcat gives up when every
    broker is down, so a chunk is produced again until it goes through (an at-least-once
    producer: Kafka may then hold some records twice). Errors past 60 s are kept."""
    errors = []

    def run():
        try:
            for c in range(first, first + total, chunk):
                ids = range(c, min(c + chunk, first + total))
                deadline = time.time() + 60
                while True:
                    try:
                        k.produce("cut", [record(i) for i in ids],
                                  keys=["k%d" % i for i in ids])
                        break
                    except RuntimeError:
                        if time.time() > deadline:
                            raise
                        time.sleep(0.5)
                time.sleep(pause)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
    t = threading.Thread(target=run)
    t.start()
    return t, errors


def check_store(d, first, last, what):
    pairs, rows = stored(d)
    want = expected(first, last)
    missing = want - pairs
    extra = pairs - expected(0, last)
    check(not missing and not extra,
          "%s: every produced record is stored (%d of %d, %d missing, %d unexpected)"
          % (what, len(pairs & want), len(want), len(missing), len(extra)))
    print("info: %d rows for %d distinct records (%d redelivered)" % (rows, len(pairs),
                                                                      rows - len(pairs)))


k = KafkaMock(topics={"cut": 6}, brokers=3).start()
d = None
try:
    d = Daemon(conf=conf(k.bootstrap), extra_core="telemetry = local").start()

    # 1. Every broker cut, longer than the session timeout.
    total = 24000
    t, errs = producer(k, 0, total, 1500, 0.3)
    wait(lambda: count(d) > 3000, 30, "the stream to start", d)
    k.broker_down(-1)
    cut_at = count(d)
    check(0 < cut_at < total, "all brokers cut mid-stream (%d of %d stored)" % (cut_at, total))
    st, _, _ = d.request("GET", "/health")
    check(st == 200, "sentineld answers /health during the cut")
    st, kh = wait(lambda: (lambda r: r if not r[1]["ok"] else None)(kafka_health(d)), 10,
                  "the input to report the cut", d)
    check(st == 503 and "all brokers down" in kh["detail"],
          "/health/detailed reports the input down (%d, %s)" % (st, kh["detail"]))
    time.sleep(8)
    st, _, _ = d.request("GET", "/health")
    check(st == 200 and d.proc.poll() is None, "still serving after 8 s without brokers")
    k.broker_up(-1)
    t.join(120)
    check(not t.is_alive() and not errs, "kcat delivered everything once the brokers were back "
          "(%s)" % (errs[0] if errs else "ok"))
    wait(lambda: count(d) >= total, 60, "every record after the cut", d)
    check_store(d, 0, total, "after the cut of all brokers")
    wait(lambda: kafka_health(d)[1]["ok"] and metric(d, "kafka_assigned_partitions", None) == 6
         and metric(d, "kafka_consumer_lag", None) == 0, 30, "the input to recover", d)
    st, kh = kafka_health(d)
    check(kh["ok"], "the input is healthy again with its 6 partitions and no lag (%s)"
          % kh["detail"])
    with open(os.path.join(d.dir, "sentineld.log"), "rb") as f:
        log = f.read().decode("utf-8", "replace")
    check(log.count('"msg":"assigned ') >= 2,
          "the group was joined again after the session expired (%d assignments)"
          % log.count('"msg":"assigned '))

    # 2. One broker cut: a third of the partitions wait, the rest flow.
    more = 12000
    t, errs = producer(k, total, more, 1500, 0.3)
    wait(lambda: count(d) > total + 2000, 30, "the second stream to start", d)
    k.broker_down(2)
    before = count(d)
    time.sleep(4)
    during = count(d)
    st, _, _ = d.request("GET", "/health")
    check(st == 200, "sentineld answers /health with broker 2 cut")
    k.broker_up(2)
    t.join(120)
    check(not t.is_alive() and not errs, "kcat delivered the second stream (%s)"
          % (errs[0] if errs else "ok"))
    wait(lambda: count(d) >= total + more, 60, "every record after the second cut", d)
    print("info: %d records stored while broker 2 was cut" % (during - before))
    check_store(d, 0, total + more, "after the cut of broker 2")
    wait(lambda: kafka_health(d)[1]["ok"] and metric(d, "kafka_consumer_lag", None) == 0, 30,
         "the input to recover from the second cut", d)
    check(kafka_health(d)[1]["ok"] and metric(d, "kafka_consumer_lag", None) == 0,
          "the input is healthy again, no lag")

    # 3. Stopped while every broker is cut and the session has expired: the drain is bounded.
    k.broker_down(-1)
    time.sleep(7)
    t0 = time.time()
    rc = d.stop()
    took = time.time() - t0
    check(rc == 0 and took < 12, "SIGTERM with every broker cut: stopped cleanly in %.1f s" % took)
    k.broker_up(-1)
    d.start()
    last = total + more + 3000
    t, errs = producer(k, total + more, 3000, 1500, 0.1)
    t.join(60)
    wait(lambda: count(d) >= last, 60, "the records after the restart", d)
    check_store(d, 0, last, "restarted once the brokers were back")
finally:
    if d:
        d.cleanup()
    k.stop()
