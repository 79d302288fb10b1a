#!/usr/bin/env python3
"""make bench: figures printed as `bench: NAME VALUE UNIT`.

ingest_zscore_events_per_s  points/s through HTTP ingest -> parse -> shard -> zscore with one
                            worker thread (sentineld pinned to one core with taskset)
demo_detect_to_resolve_ms   the demo scenario: from the incident's opening (gathering done) to
                            resolved, as the incident timeline records it (median of 3 runs)
"""
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "e2e"))
os.environ.setdefault("SN_BUILD_DIR", os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build"))
import sntest  # noqa: E402

sntest.BUILD = os.environ["SN_BUILD_DIR"]
sntest.SENTINELD = os.path.join(sntest.BUILD, "core", "sentineld")


def ingest_rate():
    d = sntest.Daemon(extra_core="workers = 1\nmax_body = 64m\nqueue_points = 4000000")
    # One core for the daemon: the loop thread and its one worker share it.
    d.start()
    subprocess.run(["taskset", "-a", "-p", "-c", "0", str(d.proc.pid)], capture_output=True)
    lines = []
    series, per = 2000, 50
    for s in range(series):
        for i in range(per):
            lines.append('{"ts":%d,"metric":"bench_latency_ms","value":%.3f,"labels":'
                         '{"service":"svc%d","pod":"p%d"}}' % (1795600800000 + i * 1000,
                                                               100 + (i * 7919 + s) % 13, s % 50, s))
    body = ("\n".join(lines) + "\n").encode()
    rounds = 20
    total = rounds * len(lines)
    t0 = time.perf_counter()
    for r in range(rounds):
        st, raw, _ = d.request("POST", "/v1/events", body)
        if st != 200:
            sntest.fail("bench ingest answered %d %r" % (st, raw[:200]))
    d.wait_for(lambda: d.json("GET", "/health/detailed")[1]["telemetry"]["points"] >= total,
               timeout=300, what="all points observed")
    dt = time.perf_counter() - t0
    d.cleanup()
    return total / dt


def parse_ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")


def detect_to_resolve():
    runs = []
    for _ in range(3):
        d = sntest.Daemon().start()
        d.post_file(sntest.scenario("checkout-deploy"))
        inc = d.wait_for(lambda: [i for i in d.incidents() if i["state"] == "resolved"],
                         what="resolution")[0]
        doc = d.json("GET", "/v1/incidents/" + inc["id"])[1]
        tl = {t["event"]: parse_ts(t["ts"]) for t in reversed(doc["timeline"])}
        runs.append((tl["resolved"] - tl["opened"]).total_seconds() * 1000)
        d.cleanup()
    return statistics.median(runs)


print("bench: ingest_zscore_events_per_s %.0f events/s" % ingest_rate())
print("bench: demo_detect_to_resolve_ms %.1f ms" % detect_to_resolve())
