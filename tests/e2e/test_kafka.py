"""The Kafka input in a real sentineld against librdkafka's mock cluster (tools/kafka-mock, three
brokers), with the real `kcat` CLI as the third-party producer and consumer:

1. records produced with kcat (single- and multi-line messages, lz4) all reach the telemetry
   store, a spike opens an incident, and poison messages (a bad value, a line that is not JSON,
   one over max_message_bytes) land in the dead-letter topic with the error and the source
   topic/partition/offset in headers;
2. kill -9 in the middle of a stream and restart: every record is in the telemetry store (the
   sqlite `points` table, distinct (series, ts)) at least once, none lost;
3. backpressure: with [sentinel] queue_points = 1024 a burst of 20000 records pauses the
   partitions and resumes them, and every record arrives;
4. two sentineld instances in one consumer group split the partitions; kill -9 one, the other
   takes its partitions over (the mock notices after session.timeout.ms) and nothing is lost.

Skipped (exit 0) when the kafka plugin, kafka-mock or kcat is missing."""
import json
import os
import random
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
topics = {topic}
group_id = {group}
dead_letter_topic = dlq
max_message_bytes = 64k
statistics_interval = 1s
commit_interval = 200ms
rdkafka = session.timeout.ms=6000
rdkafka = heartbeat.interval.ms=500
"""


def conf(boot, topic, group):
    return conf_with(KAFKA.format(boot=boot, topic=topic, group=group))


def record(i, metric="kafka_e2e", value=None, service=None, step=1000):
    return json.dumps({"ts": T0 + i * step, "metric": metric,
                       "value": float(i % 97) if value is None else value,
                       "labels": {"service": service or "svc%d" % (i % 20)}})


def points(*daemons):
    """Distinct (series, ts) over the telemetry stores of @daemons."""
    seen = set()
    for d in daemons:
        seen.update(store_rows(d, "SELECT DISTINCT series, ts FROM points"))
    return len(seen)






def producer(k, topic, total, chunk, pause, first=0):
    """Produce records first..first+total-1 in chunks, keyed, from a thread."""
    def run():
        for c in range(first, first + total, chunk):
            ids = range(c, min(c + chunk, first + total))
            k.produce(topic, [record(i) for i in ids], keys=["k%d" % i for i in ids])
            time.sleep(pause)
    t = threading.Thread(target=run)
    t.start()
    return t


k = KafkaMock(topics={"telemetry": 6, "stream": 6, "burst": 4, "shared": 6, "dlq": 1},
              brokers=3).start()
try:
    # 1. Arrival, an incident, dead letters.
    rnd = random.Random(3)
    msgs, keys = [], []
    for i in range(300):
        v = 120.0 + rnd.gauss(0, 2.0)
        if i == 250:
            v = 900.0
        msgs.append(record(i, metric="checkout_latency_ms", value=round(v, 3),
                           service="checkout", step=10000))
        keys.append("checkout")  # one key per series keeps it in order on one partition
    for m in range(20):  # multi-line messages: 10 records each
        msgs.append("\n".join(record(1000 + m * 10 + j) for j in range(10)) + "\n")
        keys.append("m%d" % m)
    poison = ['{"ts": 5, "metric": "x", "value": "oops"}',
              record(5000) + "\nthis is not json\n",
              "\n".join(record(6000 + j) for j in range(800))]  # about 100 KB > 64k
    msgs += poison
    keys += ["p0", "p1", "p2"]
    k.produce("telemetry", msgs, keys=keys)

    d = Daemon(conf=conf(k.bootstrap, "telemetry", "e2e-a"),
               extra_core="telemetry = local").start()
    try:
        # 300 + 200 + the good line of the mixed poison message.
        n = wait(lambda: points(d) >= 501 and points(d), 30, "the records in the store", [d])
        check(n == 501, "every produced record reached the telemetry store (%d of 501)" % n)
        st, health = d.json("GET", "/health/detailed")
        check(health["telemetry"]["points"] >= 501,
              "/health/detailed counts them: %s" % health["telemetry"])
        check(health["instances"]["input:kafka"]["ok"]
              and "6 partition(s): telemetry[" in health["instances"]["input:kafka"]["detail"],
              "the input reports its 6 partitions: %s" % health["instances"]["input:kafka"])
        wait(lambda: [i for i in d.incidents() if "checkout" in i["services"]], 30,
             "an incident for the checkout spike", [d])
        check(any("checkout" in i["services"] for i in d.incidents()),
              "the spike produced with kcat opened an incident for checkout")
        wait(lambda: metric(d, "kafka_dead_letters_total") >= 3, 20, "three dead letters", [d])
        out = k.consume("dlq", fmt="%h\\t%S\\n").decode("utf-8", "replace")
        lines = [ln for ln in out.splitlines() if ln.strip()]
        check(len(lines) == 3, "three messages in the dead-letter topic (%d)" % len(lines))
        check(all("sentinel.topic=telemetry" in ln and "sentinel.partition=" in ln
                  and "sentinel.offset=" in ln for ln in lines),
              "each carries the source topic, partition and offset")
        check(any("sentinel.error=1 of 1 line(s) refused; line 1: field 'value': not a number"
                  in ln for ln in lines), "the bad value's error header")
        check(any("line 2: not JSON" in ln for ln in lines), "the non-JSON line's error header")
        check(any("over max_message_bytes (65536)" in ln and "sentinel.truncated=" in ln
                  for ln in lines), "the oversized message's error header, value cut to 64k")
    finally:
        d.cleanup()

    # 2. kill -9 mid-stream, restart: nothing lost.
    total = 40000
    d = Daemon(conf=conf(k.bootstrap, "stream", "e2e-b"), extra_core="telemetry = local").start()
    try:
        t = producer(k, "stream", total, 4000, 0.4)
        wait(lambda: points(d) > 6000, 30, "the stream to start", [d])
        d.kill9()
        at_kill = points(d)
        check(0 < at_kill < total, "killed mid-stream (%d of %d stored)" % (at_kill, total))
        t.join()
        d.start()
        n = wait(lambda: points(d) >= total and points(d), 60, "every record after restart", [d])
        check(n == total, "after kill -9 and restart every record is stored (%d of %d)"
              % (n, total))
        check(metric(d, "kafka_assigned_partitions") == 6, "the restarted daemon owns all 6")
    finally:
        d.cleanup()

    # 3. Backpressure: a tiny queue and a burst.
    burst = 20000
    ids = list(range(200))
    k.produce("burst", ["\n".join(record(m * 100 + j) for j in range(100)) for m in ids],
              keys=["b%d" % m for m in ids])
    d = Daemon(conf=conf(k.bootstrap, "burst", "e2e-c"),
               extra_core="telemetry = local\nqueue_points = 1024").start()
    try:
        n = wait(lambda: points(d) >= burst and points(d), 60, "the burst", [d])
        check(n == burst, "the whole burst arrived through a 1024-point queue (%d)" % n)
        check(metric(d, "kafka_backpressure_total") > 0,
              "the core pushed back (%d refusals)" % metric(d, "kafka_backpressure_total"))
        check(metric(d, "kafka_pauses_total") > 0,
              "the partitions were paused (%d times)" % metric(d, "kafka_pauses_total"))
        wait(lambda: metric(d, "kafka_paused") == 0 and metric(d, "kafka_consumer_lag") == 0,
             10, "resume", [d])
        check(metric(d, "kafka_paused") == 0 and metric(d, "kafka_consumer_lag") == 0,
              "and resumed: not paused, no lag left")
        prefix = 'sentinel_kafka_partition_lag{instance="input:kafka",topic="burst",partition="'
        lags = wait(lambda: (lambda v: v if len(v) == 4 and not any(v.values()) else None)(
            {l[len(prefix):].split('"')[0]: float(l.split()[-1])
             for l in d.request("GET", "/metrics")[1].decode().splitlines()
             if l.startswith(prefix)}), 10, "per-partition lag gauges", [d])
        check(sorted(lags) == ["0", "1", "2", "3"],
              "a lag gauge per partition, labelled with topic and partition: %s" % lags)
    finally:
        d.cleanup()

    # 4. Two instances in one group; one dies, the other takes over.
    a = Daemon(conf=conf(k.bootstrap, "shared", "e2e-d"), extra_core="telemetry = local")
    b = Daemon(conf=conf(k.bootstrap, "shared", "e2e-d"), extra_core="telemetry = local")
    a.start()
    b.start()
    try:
        wait(lambda: metric(a, "kafka_assigned_partitions") > 0
             and metric(b, "kafka_assigned_partitions") > 0
             and metric(a, "kafka_assigned_partitions")
             + metric(b, "kafka_assigned_partitions") == 6, 40, "the group to split", [a, b])
        check(metric(a, "kafka_assigned_partitions") + metric(b, "kafka_assigned_partitions")
              == 6, "the two instances split the 6 partitions (%d + %d)"
              % (metric(a, "kafka_assigned_partitions"), metric(b, "kafka_assigned_partitions")))
        total = 30000
        t = producer(k, "shared", total, 3000, 0.4)
        wait(lambda: points(a) > 2000 and points(b) > 2000, 30, "both to consume", [a, b])
        a.kill9()
        wait(lambda: metric(b, "kafka_assigned_partitions") == 6, 40,
             "the survivor to take all partitions", [b])
        check(metric(b, "kafka_assigned_partitions") == 6,
              "after kill -9 of one, the other owns all 6 partitions")
        with open(os.path.join(b.dir, "sentineld.log"), "rb") as f:
            assigns = f.read().decode("utf-8", "replace").count('"msg":"assigned ')
        check(assigns >= 2, "the takeover is in the survivor's log (%d assignments)" % assigns)
        t.join()
        n = wait(lambda: points(a, b) >= total and points(a, b), 60, "every record", [b])
        check(n == total, "nothing lost across the failover (%d of %d)" % (n, total))
    finally:
        a.cleanup()
        b.cleanup()
finally:
    k.stop()
