#!/usr/bin/env python3
"""Throughput of the alertmanager input: Alertmanager webhook notifications (version 4, 100
alerts each) posted straight to POST /hooks/<instance>/webhook over one keep-alive connection
for a few seconds, then waiting until the core has taken every accepted alert
(sentinel_alerts_received_total). Prints

    bench: alertmanager_alerts_per_s N alerts/s

Against a running sentineld:  bench_alertmanager.py --url http://127.0.0.1:8080/hooks/am/webhook
                              [--token T] [--seconds 5]
Without --url it starts a sentineld from the build tree (argument or SN_BUILD_DIR) with an
[input:am] alertmanager instance wired am -> correlate, pinned to one core (this client on
another), and stops it afterwards.

The notifications cycle over 20 groups of 100 alerts (2000 fingerprints on 10 services), so
after the first round they are repeats, as Alertmanager sends them every repeat_interval.
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

GROUPS, PER_GROUP = 20, 100


def payloads():
    out = []
    starts = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 60))
    for g in range(GROUPS):
        svc = "svc%d" % (g % 10)
        alerts = []
        for i in range(PER_GROUP):
            alerts.append({"status": "firing",
                           "labels": {"alertname": "BenchAlert%d" % g, "service": svc,
                                      "instance": "pod-%d" % i, "severity": "warning"},
                           "annotations": {"summary": "bench alert %d of group %d" % (i, g)},
                           "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
                           "generatorURL": "http://prometheus/graph"})
        out.append(json.dumps({"version": "4", "status": "firing", "receiver": "sentinel",
                               "groupKey": '{}:{alertname="BenchAlert%d", service="%s"}' % (g, svc),
                               "truncatedAlerts": 0, "groupLabels": {}, "commonLabels": {},
                               "commonAnnotations": {}, "externalURL": "http://am:9093",
                               "alerts": alerts}).encode())
    return out


def received(host, port):
    """sentinel_alerts_received_total summed over status, from /metrics."""
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("sentinel_alerts_received_total"):
            total += float(line.split()[-1])
    return total


def run(url, token, seconds):
    u = urllib.parse.urlsplit(url)
    host, port = u.hostname, u.port or 80
    headers = {"Content-Type": "application/json", "User-Agent": "bench_alertmanager"}
    if token:
        headers["Authorization"] = "Bearer " + token
    bodies = payloads()
    base = received(host, port)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    accepted = busy = 0
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        conn.request("POST", u.path, bodies[i % len(bodies)], headers)
        r = conn.getresponse()
        body = r.read()
        if r.status == 200:
            accepted += json.loads(body)["accepted"]
            i += 1
        elif r.status == 503:
            busy += 1  # the same notification again, as Alertmanager would
        else:
            sys.exit("bench: the webhook answered %d: %r" % (r.status, body[:200]))
    conn.close()
    deadline = time.time() + 60
    while received(host, port) - base < accepted and time.time() < deadline:
        time.sleep(0.05)
    dt = time.perf_counter() - t0
    if received(host, port) - base < accepted:
        sys.exit("bench: the core did not take all %d accepted alerts within 60 s" % accepted)
    return accepted / dt, accepted, busy


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default=os.environ.get("SN_BUILD_DIR", "build"))
    ap.add_argument("--url", help="the webhook of a running sentineld")
    ap.add_argument("--token", default=os.environ.get("SN_AM_TOKEN"))
    ap.add_argument("--seconds", type=float, default=5)
    args = ap.parse_args()
    if args.url:
        rate, n, busy = run(args.url, args.token, args.seconds)
    else:
        os.environ["SN_BUILD_DIR"] = os.path.abspath(args.build)
        import sntest
        sntest.BUILD = os.environ["SN_BUILD_DIR"]
        sntest.SENTINELD = os.path.join(sntest.BUILD, "core", "sentineld")
        conf = sntest.BASE_CONF.replace(
            "[pipeline]\n", "[input:am]\nplugin = alertmanager\nmax_alerts = 1000\n\n"
            "[pipeline]\nedge = am -> correlate\n")
        d = sntest.Daemon(conf=conf).start()
        # As the other ingest benchmarks: sentineld on one core, this client on another.
        subprocess.run(["taskset", "-a", "-p", "-c", "0", str(d.proc.pid)], capture_output=True)
        if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
            os.sched_setaffinity(0, {1})
        try:
            rate, n, busy = run("http://127.0.0.1:%d/hooks/am/webhook" % d.port, None,
                                args.seconds)
        finally:
            d.cleanup()
    print("bench: alertmanager_alerts_per_s %.0f alerts/s" % rate, flush=True)
    print("info: %d alerts accepted in notifications of %d, %d answered 503"
          % (n, PER_GROUP, busy), file=sys.stderr)


if __name__ == "__main__":
    main()
