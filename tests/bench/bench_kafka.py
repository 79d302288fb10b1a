#!/usr/bin/env python3
"""Throughput of the Kafka input against a plain librdkafka consumer on the same topic, same
machine, same run. A topic of several partitions on librdkafka's mock cluster (tools/kafka-mock)
is pre-filled with lz4-compressed single-record messages (100 series, keyed by series, in event
time order) by kcat; then

  - a plain consumer, tools/kafka-drain (librdkafka, a consumer group, records counted and
    dropped, the same prefetch setting the input uses: queued.min.messages=1000000), drains it:
    timed from the group's assignment to the arrival of the last record;
  - one sentineld with [input:kafka] feeding zscore + iqr + seasonal, with a ClickHouse
    [sentinel] telemetry store (tests/support/chserver.py, the store's default batches), drains
    it: timed from the moment the group assigned it the partitions until the detectors observed
    every record (/health/detailed telemetry.points) and ClickHouse holds every one of them
    (the issue's pipeline: Kafka -> workers -> zscore+iqr+seasonal -> ClickHouse batches). The
    input commits an offset only once its records are in ClickHouse, so the figure includes the
    inserts. --store sqlite uses the sqlite store as the telemetry store instead, --store none
    none at all (detectors only); without clickhouse-server installed the default falls back to
    none, said on stderr.

Both windows leave out process start, the group join (seconds on the mock) and the wait for the
end of the partitions. Until 2026-11-30 the plain figure came from `kcat -C -e`, whose time is
mostly start-up and that end-of-partition wait (fetch.wait.max.ms, 500 ms): it reported about
650 000 records/s where the consumer itself drains about 1 300 000/s, which made the ratio look
twice as good as it is.

Prints

    bench: kafka_pipeline_events_per_s N events/s
    bench: kafka_plain_consumer_events_per_s N events/s
    bench: kafka_vs_plain_ratio R

Usage: bench_kafka.py [BUILD_DIR] [--records 2400000] [--partitions 32]
                      [--store clickhouse|sqlite|none] [--runs 3]
                      [--input-opt KEY=VALUE]... [--store-opt KEY=VALUE]...
The mock keeps about 5 MiB of (compressed) data per partition and silently drops the oldest
beyond that; the topic is counted after the fill to check that nothing was dropped. Both
consumers run on CPU 0, the mock cluster and the ClickHouse server on CPU 1 when there are two.
A drain takes seconds, and on a shared machine one measurement varies by a factor of 1.3:
each consumer drains the topic --runs times (with a new group, and for the pipeline a new
ClickHouse database, each time) and the figures are the medians of the rates.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "support"))

import kafkabench  # noqa: E402
from kafkabench import record_line  # noqa: E402

PIN = True


def pin(pid, cpu):
    if PIN and os.cpu_count() and os.cpu_count() > 1:
        subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], capture_output=True)


def fill(k, topic, n, path):
    rnd = random.Random(11)
    with open(path, "w") as f:
        for i in range(n):
            f.write(record_line(i, 10000, rnd))
    k.kcat("-P", "-t", topic, "-z", "lz4", "-K", "|", "-X", "linger.ms=50",
           "-X", "batch.num.messages=10000", "-l", path, timeout=600)


def check_holds(k, topic, n):
    """Exit unless the topic holds n records (the mock drops the oldest silently)."""
    got = k.kcat("-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "\\n", timeout=600)
    if got.count(b"\n") != n:
        sys.exit("bench: the topic holds %d of %d records (the mock dropped some: fewer "
                 "--records or more --partitions)" % (got.count(b"\n"), n))


def drain_plain(k, topic, n, run):
    """Seconds for a plain librdkafka consumer (tools/kafka-drain) to drain the topic, from the
    group's assignment to the last record, as the pipeline is timed."""
    import sntest
    tool = os.path.join(sntest.BUILD, "tools", "kafka-drain", "kafka-drain")
    p = subprocess.Popen([tool, "-b", k.bootstrap, "-t", topic, "-g",
                          "plain-%d-%d" % (os.getpid(), run), "-n", str(n),
                          "-X", "queued.min.messages=1000000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pin(p.pid, 0)
    out, err = p.communicate(timeout=660)
    if p.returncode != 0:
        sys.exit("bench: kafka-drain failed (%d): %s" % (p.returncode, err.strip()))
    return json.loads(out)["seconds"]


def observed(d):
    try:
        st, body = d.json("GET", "/health/detailed")
        return body["telemetry"]["points"], body["instances"]["input:kafka"]["detail"]
    except (OSError, KeyError, TypeError, ValueError):
        return 0, ""


def assigned(d):
    from kafkatest import metric
    return int(metric(d, "kafka_assigned_partitions"))


def ch_count(srv, db):
    st, out = srv.query("SELECT count() FROM %s.points" % db)
    return int(out) if st == 200 else 0


def pipeline(k, sntest, n, parts, store, srv, run=0, input_opts=(), store_opts=()):
    db = "bench%d" % run
    ch = store == "clickhouse"
    conf = kafkabench.conf(k.bootstrap, "bench-%d-%d" % (os.getpid(), run),
                           telemetry={"clickhouse": "ch", "sqlite": "local"}.get(store),
                           input_lines=input_opts, ch_url=srv.url if ch else None, ch_db=db,
                           ch_lines=store_opts)
    d = sntest.Daemon(conf=conf).start(wait=False)
    pin(d.proc.pid, 0)
    try:
        deadline = time.time() + 60
        while assigned(d) < parts:
            if time.time() > deadline or d.proc.poll() is not None:
                sys.exit("bench: sentineld was not assigned the partitions\n" + d.logtext())
            time.sleep(0.005)
        t0 = time.perf_counter()
        deadline = time.time() + 600
        stored = None
        while True:
            pts, detail = observed(d)
            if pts >= n:
                if store != "clickhouse":
                    break
                stored = ch_count(srv, db)
                if stored >= n:
                    break
            if time.time() > deadline:
                sys.exit("bench: %d of %d observed after 600 s (%s), %s in ClickHouse\n%s"
                         % (pts, n, detail, stored, d.logtext()))
            time.sleep(0.02 if store != "clickhouse" else 0.1)
        dt = time.perf_counter() - t0
        return dt, pts, (ch_count(srv, db) if store == "clickhouse" else None)
    finally:
        d.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default=os.environ.get("SN_BUILD_DIR", "build"))
    ap.add_argument("--records", type=int, default=2400000)
    ap.add_argument("--partitions", type=int, default=32)
    ap.add_argument("--store", choices=("clickhouse", "sqlite", "none"), default="clickhouse",
                    help="the [sentinel] telemetry store (default clickhouse)")
    ap.add_argument("--runs", type=int, default=3, help="drains of each consumer (medians)")
    ap.add_argument("--input-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for [input:kafka], e.g. max_inflight=8 (repeatable)")
    ap.add_argument("--store-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for the ClickHouse store, e.g. batch_points=50000")
    ap.add_argument("--no-pin", action="store_true",
                    help="let the scheduler place every process (default: consumers on CPU 0, "
                         "the mock and ClickHouse on CPU 1)")
    args = ap.parse_args()
    global PIN
    PIN = not args.no_pin
    os.environ["SN_BUILD_DIR"] = os.path.abspath(args.build)
    import sntest
    sntest.BUILD = os.environ["SN_BUILD_DIR"]
    sntest.SENTINELD = os.path.join(sntest.BUILD, "core", "sentineld")
    from kafkamock import KafkaMock
    import chserver
    srv = None
    if args.store == "clickhouse" and not chserver.available():
        print("info: clickhouse-server not installed: no telemetry store (--store none)",
              file=sys.stderr)
        args.store = "none"
    if args.store == "clickhouse":
        srv = chserver.ChServer().start()
        pin(srv.pid(), 1)
    k = KafkaMock(topics={"bench": args.partitions}, brokers=1, build=sntest.BUILD).start()
    pin(k.proc.pid, 1)
    tmp = tempfile.mkdtemp(prefix="sn-bench-kafka-")
    try:
        t = time.perf_counter()
        fill(k, "bench", args.records, os.path.join(tmp, "records.txt"))
        print("info: %d records produced with kcat in %.1f s" % (args.records,
                                                                 time.perf_counter() - t),
              file=sys.stderr)
        check_holds(k, "bench", args.records)
        plains, pipes = [], []
        for run in range(max(1, args.runs)):
            plains.append(drain_plain(k, "bench", args.records, run))
            pipes.append(pipeline(k, sntest, args.records, args.partitions, args.store, srv, run,
                                  [o.replace("=", " = ", 1) for o in args.input_opt],
                                  [o.replace("=", " = ", 1) for o in args.store_opt]))
    finally:
        k.stop()
        if srv:
            srv.cleanup()
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    pipe = statistics.median(args.records / p[0] for p in pipes)
    plain_rate = statistics.median(args.records / dt for dt in plains)
    print("bench: kafka_pipeline_events_per_s %.0f events/s" % pipe, flush=True)
    print("bench: kafka_plain_consumer_events_per_s %.0f events/s" % plain_rate, flush=True)
    print("bench: kafka_vs_plain_ratio %.3f" % (pipe / plain_rate), flush=True)
    for run, (dt_plain, (dt_pipe, pts, rows)) in enumerate(zip(plains, pipes)):
        print("info: run %d: %d records, %d partitions (lz4); plain %.2f s, pipeline %.2f s (%d "
              "points observed; telemetry store %s%s)"
              % (run + 1, args.records, args.partitions, dt_plain, dt_pipe, pts, args.store,
                 ", %d rows in ClickHouse" % rows if rows is not None else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
