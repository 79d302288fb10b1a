"""Kafka fault: a 10 MB message (about 110000 JSON lines), zstd-compressed by kcat so that
librdkafka's mock cluster keeps it (it stores batches compressed, about 5 MiB per partition), in
one partition between small messages. The defined behaviour (plugins/inputs/kafka, parameter
max_message_bytes, default 1m):

1. At the defaults, with a dead-letter topic, the message is over max_message_bytes: it goes to
   the dead-letter topic cut to 1 MiB, with `sentinel.error` saying why and `sentinel.truncated`
   giving its real size, kafka_malformed_total and kafka_dead_letters_total count it, and the
   small messages on both sides of it are all stored (the partition is not stuck).
2. At the defaults without a dead-letter topic it is logged with its position and reason and
   counted in kafka_malformed_total; never dropped silently; the small messages are stored.
3. With max_message_bytes = 16m the same message is processed: the input hands it to the core
   in parts of about batch_bytes (1m) of whole lines, every one of its lines reaches the telemetry
   store, and nothing goes to the dead-letter topic.
4. With batch_bytes = 16m as well it is handed over whole, and the sqlite telemetry store refuses
   a write of more than 100000 points: a lasting failure. After three attempts the message goes
   to the dead-letter topic with that reason (kafka_unkept_total) instead of being delivered
   again forever, and the partition moves on.

In every case sentineld keeps serving /health and the consumer lag drains to 0.
Skipped (exit 0) when the kafka plugin, kafka-mock or kcat is missing."""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))

from kafkamock import KafkaMock  # noqa: E402
from kafkatest import conf_with, metric, skip_unless_kafka, store_rows, wait  # noqa: E402
from sntest import Daemon, check  # noqa: E402

skip_unless_kafka()

T0 = 1795600800000
BIG = 10 * 1024 * 1024
DEFAULT_MAX = 1024 * 1024  # max_message_bytes' default (1m)

KAFKA = """[input:kafka]
plugin = kafka
brokers = {boot}
topics = big
group_id = {group}
statistics_interval = 500ms
commit_interval = 200ms
{extra}
"""


def conf(boot, group, extra=""):
    return conf_with(KAFKA.format(boot=boot, group=group, extra=extra))


def record(i):
    return json.dumps({"ts": T0 + i * 1000, "metric": "kafka_big", "value": float(i % 97),
                       "labels": {"service": "svc%d" % (i % 20)}})


def stored(d):
    """Distinct timestamps in the telemetry store (each record has its own)."""
    return {r[0] for r in store_rows(d, "SELECT DISTINCT ts FROM points")}






def serving_and_drained(d, what):
    wait(lambda: metric(d, "kafka_assigned_partitions") == 1
         and metric(d, "kafka_consumer_lag") == 0, 30, what + ": lag 0", d)
    st, _, _ = d.request("GET", "/health")
    st2, body = d.json("GET", "/health/detailed")
    check(st == 200 and body["instances"]["input:kafka"]["ok"],
          "%s: sentineld serving, the input healthy, no lag (%s)"
          % (what, body["instances"]["input:kafka"]["detail"]))


# One partition: 100 small messages, the big one, 100 small ones.
small = [record(i) for i in range(100)] + [record(i) for i in range(100, 200)]
lines, size, i = [], 0, 1000
while size < BIG:
    lines.append(record(i))
    size += len(lines[-1]) + 1
    i += 1
big = "\n".join(lines) + "\n"
big_ts = {T0 + j * 1000 for j in range(1000, i)}
small_ts = {T0 + j * 1000 for j in range(200)}

k = KafkaMock(topics={"big": 1, "dlq": 1}, brokers=1).start()
try:
    k.produce("big", small[:100], compression="zstd")
    k.produce("big", [big], compression="zstd")
    k.produce("big", small[100:], compression="zstd")
    held = k.consume("big", fmt="%S\\n").split()
    check(len(held) == 201 and int(held[100]) == len(big) >= BIG,
          "the mock holds the %d-byte message (%d lines) between 200 small ones"
          % (len(big), len(lines)))

    # 1. Defaults, with a dead-letter topic.
    d = Daemon(conf=conf(k.bootstrap, "big-a", "dead_letter_topic = dlq"),
               extra_core="telemetry = local").start()
    try:
        wait(lambda: stored(d) >= small_ts, 30, "the small records", d)
        wait(lambda: metric(d, "kafka_dead_letters_total") >= 1, 30, "the dead letter", d)
        out = k.consume("dlq", fmt="%h\\t%S\\n").decode("utf-8", "replace")
        dl = [ln for ln in out.splitlines() if ln.strip()]
        check(len(dl) == 1, "one message in the dead-letter topic (%d)" % len(dl))
        hdr, vlen = dl[0].rsplit("\t", 1)
        check("sentinel.error=message of %d bytes is over max_message_bytes (%d)"
              % (len(big), DEFAULT_MAX) in hdr,
              "its error header names the size and the limit")
        check("sentinel.truncated=%d" % len(big) in hdr and int(vlen) == DEFAULT_MAX
              and "sentinel.topic=big" in hdr and "sentinel.offset=100" in hdr,
              "cut to max_message_bytes, real size, source and offset in headers")
        check(metric(d, "kafka_malformed_total") == 1, "kafka_malformed_total counts it")
        got = stored(d)
        check(got == small_ts, "the 200 small records are stored, none of the big one (%d)"
              % len(got))
        serving_and_drained(d, "dead-lettered")
    finally:
        d.cleanup()

    # 2. Defaults, no dead-letter topic: logged and counted.
    d = Daemon(conf=conf(k.bootstrap, "big-b"), extra_core="telemetry = local").start()
    try:
        wait(lambda: stored(d) >= small_ts, 30, "the small records", d)
        wait(lambda: metric(d, "kafka_malformed_total") == 1, 30, "the refusal metric", d)
        with open(os.path.join(d.dir, "sentineld.log"), "rb") as f:
            log = f.read().decode("utf-8", "replace")
        check("big[0]@100 refused and skipped (no dead_letter_topic): message of %d bytes is "
              "over max_message_bytes" % len(big) in log,
              "without a dead-letter topic the message is logged with its position and reason")
        serving_and_drained(d, "refused")
    finally:
        d.cleanup()

    # 3. max_message_bytes = 16m: processed, line by line.
    d = Daemon(conf=conf(k.bootstrap, "big-c", "dead_letter_topic = dlq\n"
                         "max_message_bytes = 16m"), extra_core="telemetry = local").start()
    try:
        want = small_ts | big_ts
        wait(lambda: len(stored(d)) >= len(want), 60, "every line of the big message", d)
        got = stored(d)
        check(got == want, "every one of its %d lines and the 200 small records are stored "
              "(%d of %d)" % (len(lines), len(got & want), len(want)))
        check(metric(d, "kafka_malformed_total") == 0 and metric(d, "kafka_unkept_total") == 0
              and len(k.consume("dlq", fmt="%o\\n").split()) == 1,
              "nothing more went to the dead-letter topic")
        check(metric(d, "kafka_redeliveries_total") == 0, "no part had to be delivered again")
        serving_and_drained(d, "processed")
    finally:
        d.cleanup()

    # 4. Handed over whole: the store's bound on one write is a lasting failure.
    d = Daemon(conf=conf(k.bootstrap, "big-d", "dead_letter_topic = dlq\n"
                         "max_message_bytes = 16m\nbatch_bytes = 16m"),
               extra_core="telemetry = local").start()
    try:
        wait(lambda: metric(d, "kafka_unkept_total") == 1
             and metric(d, "kafka_dead_letters_total") == 1, 60, "the message given up on", d)
        out = k.consume("dlq", fmt="%h\\t%S\\n").decode("utf-8", "replace")
        dl = [ln for ln in out.splitlines() if ln.strip()]
        check(len(dl) == 2 and "sentinel.error=the core could not keep its %d record(s): "
              "telemetry store out of memory or over a bound (-2), 3 times" % len(lines) in dl[1]
              and "sentinel.offset=100" in dl[1] and dl[1].endswith("\t%d" % len(big)),
              "after 3 lasting failures the whole message is in the dead-letter topic with the "
              "reason (%s)" % (dl[1:] or dl or ["nothing"])[0][:300])
        # Its batch held small messages too: halved until it was alone, then tried 3 times.
        again = metric(d, "kafka_redeliveries_total")
        time.sleep(2)
        check(2 <= again < 20 and metric(d, "kafka_redeliveries_total") == again,
              "then no more deliveries (%d in all, halving included)" % again)
        got = stored(d)
        check(got == small_ts, "the small records around it are stored (%d)" % len(got))
        serving_and_drained(d, "given up on")
    finally:
        d.cleanup()
finally:
    k.stop()
