#!/usr/bin/env python3
"""Consumer lag recovery after ClickHouse stops for 60 s: sentineld consumes a Kafka topic
(librdkafka's mock cluster, tools/kafka-mock) at a steady produce rate, through zscore + iqr +
seasonal, with a ClickHouse (tests/support/chserver.py) [sentinel] telemetry store. Then

  1. steady state for --warmup seconds: the consumer lag is sampled every 250 ms; its pre-pause
     level is the largest value of the last 10 s. The lag is counted end to end: records
     produced minus distinct records in ClickHouse, i.e. what the input has read or will read
     but the pipeline has not yet acknowledged (an offset commits only once its records are in
     the telemetry store, so this is the committed lag as the group sees it, plus kcat's
     linger). It is not read from the input's own kafka_consumer_lag gauge, so that the
     figure does not depend on what it measures (the gauge moves once per statistics interval,
     and while the partitions are paused it comes from queries to the brokers);
  2. ClickHouse is stopped with SIGSTOP (a hung server: inserts time out, /ping does not answer)
     for --pause seconds while producing goes on. Without a spool_dir the store keeps its
     batches in memory and does not acknowledge them, so the input's batches wait, the
     partitions pause and the lag grows with the produce rate;
  3. SIGCONT; the store's next /ping probe (backoff capped by --retry-max) finds it, inserts the
     backlog, the input resumes and catches up.

Prints the seconds from SIGCONT until the lag is back to its pre-pause level (the first sample
at or below it):

    bench: kafka_lag_recovery_after_60s_clickhouse_pause_s VALUE s

Usage: bench_kafka_lag.py [BUILD_DIR] [--rate 3000] [--partitions 12] [--pause 60]
       [--warmup 20] [--retry-max 1s] [--spool]
--spool gives the store a spool_dir: batches go to disk while ClickHouse is away, are
acknowledged from there, and the lag barely moves. The producer is one kcat -P fed at a steady
rate; the mock keeps about 5 MiB of compressed data per partition (the run checks at the end
that every produced record was observed). Writes the lag samples to --samples (TSV) when given.
"""
import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "support"))

from kafkabench import conf as conf_for, record_line  # noqa: E402

class Producer:
    """One kcat -P process fed @rate keyed records per second from a thread, in 50 ms ticks."""

    def __init__(self, k, topic, rate):
        from kafkamock import KCAT
        self.rate = rate
        self.sent = 0
        self.stop_flag = threading.Event()
        self.rnd = random.Random(5)
        self.proc = subprocess.Popen([KCAT, "-b", k.bootstrap, "-P", "-t", topic, "-z", "lz4",
                                      "-K", "|", "-X", "linger.ms=100",
                                      "-X", "message.timeout.ms=600000"],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def line(self, i):
        return record_line(i, 1000, self.rnd)

    def run(self):
        t0 = time.monotonic()
        while not self.stop_flag.is_set():
            due = int((time.monotonic() - t0) * self.rate)
            if due > self.sent:
                chunk = "".join(self.line(i) for i in range(self.sent, due))
                self.proc.stdin.write(chunk.encode())
                self.proc.stdin.flush()
                self.sent = due
            time.sleep(0.05)

    def close(self):
        self.stop_flag.set()
        self.thread.join()
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


def metrics(d):
    out = {}
    try:
        st, raw, _ = d.request("GET", "/metrics")
    except OSError:
        return out
    for line in raw.decode().splitlines():
        for name in ("kafka_consumer_lag", "kafka_assigned_partitions", "kafka_paused",
                     "telemetry_points_observed"):
            if line.startswith("sentinel_" + name + "{") or line.startswith("sentinel_" + name
                                                                            + " "):
                out[name] = float(line.split()[-1])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default=os.environ.get("SN_BUILD_DIR", "build"))
    ap.add_argument("--rate", type=int, default=3000, help="records (messages) per second")
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--pause", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=20)
    ap.add_argument("--retry-max", default="1s", help="the store's retry_max (probe backoff cap)")
    ap.add_argument("--spool", action="store_true", help="give the store a spool_dir")
    ap.add_argument("--samples", help="write time/lag/observed samples here (TSV)")
    args = ap.parse_args()
    os.environ["SN_BUILD_DIR"] = os.path.abspath(args.build)
    import chserver
    import sntest
    sntest.BUILD = os.environ["SN_BUILD_DIR"]
    sntest.SENTINELD = os.path.join(sntest.BUILD, "core", "sentineld")
    from kafkamock import KafkaMock
    if not chserver.available():
        sys.exit("bench: clickhouse-server is not installed")

    srv = chserver.ChServer().start()
    k = KafkaMock(topics={"bench": args.partitions}, brokers=1, build=sntest.BUILD).start()
    d = prod = None
    samples = []  # (seconds since start, lag, kafka_consumer_lag gauge, observed, produced)
    try:
        conf = conf_for(k.bootstrap, "lag-%d" % os.getpid(), telemetry="ch",
                        input_lines=["statistics_interval = 500ms"], ch_url=srv.url,
                        ch_db="benchlag",
                        ch_lines=["retry_base = 100ms", "retry_max = " + args.retry_max]
                        + (["spool_dir = {dir}/spool"] if args.spool else []))
        d = sntest.Daemon(conf=conf).start()
        deadline = time.time() + 60
        while metrics(d).get("kafka_assigned_partitions", 0) < args.partitions:
            if time.time() > deadline:
                sys.exit("bench: sentineld was not assigned the partitions\n" + d.logtext())
            time.sleep(0.05)
        prod = Producer(k, "bench", args.rate)
        start = time.monotonic()

        stored = [0]

        def sample(ch=True):
            """One sample; @ch False while ClickHouse is stopped (a query would hang)."""
            produced = prod.sent
            if ch:
                st, out = srv.query("SELECT uniqExact(series, ts) FROM benchlag.points")
                if st == 200:
                    stored[0] = int(out)
            m = metrics(d)
            s = (time.monotonic() - start, max(0, produced - stored[0]),
                 m.get("kafka_consumer_lag", -1), m.get("telemetry_points_observed", -1),
                 produced)
            samples.append(s)
            return s

        while time.monotonic() - start < args.warmup:
            sample()
            time.sleep(0.25)
        steady = [s[1] for s in samples if s[0] >= args.warmup - 10]
        baseline = max(steady)
        ch_pid = srv.pid()
        os.kill(ch_pid, signal.SIGSTOP)
        paused_at = time.monotonic()
        try:
            while time.monotonic() - paused_at < args.pause:
                sample(ch=False)
                time.sleep(0.25)
        finally:
            os.kill(ch_pid, signal.SIGCONT)
        resumed = time.monotonic()
        peak, recovered = samples[-1][1], None
        while time.monotonic() - resumed < 600:
            lag = sample()[1]
            peak = max(peak, lag)
            if lag <= baseline:
                recovered = time.monotonic() - resumed
                break
            time.sleep(0.1)
        if recovered is None:
            sys.exit("bench: the lag did not come back to %d within 600 s (last %d)\n%s"
                     % (baseline, samples[-1][1], d.logtext()))
        prod.close()
        total = prod.sent
        deadline = time.time() + 300
        while metrics(d).get("telemetry_points_observed", 0) < total and time.time() < deadline:
            time.sleep(0.2)
        observed = metrics(d).get("telemetry_points_observed", 0)
        deadline = time.time() + 120
        while time.time() < deadline:
            st, out = srv.query("SELECT count() FROM benchlag.points")
            if st == 200 and int(out) >= total:
                break
            time.sleep(0.5)
        st, out = srv.query("SELECT count() FROM benchlag.points")
        in_ch = int(out) if st == 200 else -1
    finally:
        if prod and prod.proc.poll() is None:
            prod.stop_flag.set()
            prod.proc.kill()
        if d:
            d.cleanup()
        k.stop()
        srv.cleanup()
    if args.samples:
        with open(args.samples, "w") as f:
            f.write("t_s\tlag\tkafka_consumer_lag\tobserved\tproduced\n")
            for s in samples:
                f.write("%.2f\t%d\t%d\t%d\t%d\n" % s)
    print("bench: kafka_lag_recovery_after_60s_clickhouse_pause_s %.1f s" % recovered, flush=True)
    print("info: rate %d msg/s, %d partitions, pause %.0f s (SIGSTOP), retry_max %s, %s; lag "
          "before %d, at resume %d; %d produced, %d observed by the detectors, %d rows "
          "in ClickHouse" % (args.rate, args.partitions, args.pause, args.retry_max,
                             "spool_dir" if args.spool else "no spool (batches wait in memory)",
                             baseline, peak, total, observed, in_ch), file=sys.stderr)
    if observed < total or in_ch < total:
        sys.exit("bench: records missing (%d produced, %d observed, %d in ClickHouse)"
                 % (total, observed, in_ch))


if __name__ == "__main__":
    main()
