#!/usr/bin/env python3
"""Alert fatigue: how many pages threshold-only alerting sends for a generated six hours of
telemetry, against how many incidents Sentinel's detect + correlate path opens, and whether
every true incident is still caught.

The scenario (deterministic, seed fixed) has 12 services x 3 metrics at 10 s resolution, with:
  - 8 true incidents, each a level shift of 8-14 sigma on latency and error rate of 2-4 services
    for 5-15 minutes, noisy enough to dip back under a threshold now and then;
  - a slow load ramp (latency +30 % over two hours on three services) that crosses a static
    threshold but is not an incident;
  - one CPU series hovering around its threshold for two hours (flapping);
  - isolated 3.5-sigma blips.
Threshold-only alerting is the common static rule: page when a value rises above the mean +
3 sigma of the first 30 minutes (one page per rising edge). Sentinel's pages are the incidents
it opens. An incident matches a true one when they share a service and its onset lies between
5 minutes before the true start and 10 minutes after its end.

Usage: alert_fatigue.py [--sentineld PATH] [--json]   (prints bench: lines)
"""
import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
T0 = 1795600800000
STEP = 10000
N = 6 * 360  # six hours
SERVICES = ["svc%02d" % i for i in range(12)]
METRICS = {"http_p99_latency_ms": (120.0, 5.0), "http_error_ratio": (0.5, 0.05),
           "cpu_percent": (40.0, 2.0)}


def generate(seed=7):
    rnd = random.Random(seed)
    truth = []
    used = set()
    for k in range(8):
        start = 60 + k * 250 + rnd.randrange(0, 60)
        length = rnd.randrange(30, 91)
        svcs = rnd.sample([s for s in SERVICES if s not in ("svc10", "svc11")], rnd.randrange(2, 5))
        truth.append({"start": start, "end": start + length, "services": svcs,
                      "sigma": rnd.uniform(8, 14)})
        used.update(svcs)
    ramp = ["svc09", "svc10", "svc11"]
    flap = "svc11"
    blips = {(rnd.choice(SERVICES), rnd.choice(list(METRICS)), rnd.randrange(200, N))
             for _ in range(40)}
    lines = []
    values = {}
    for i in range(N):
        ts = T0 + i * STEP
        for svc in SERVICES:
            for m, (mu, sd) in METRICS.items():
                v = rnd.gauss(mu, sd)
                if m == "http_p99_latency_ms" and svc in ramp and 900 <= i < 1620:
                    v *= 1 + 0.3 * (i - 900) / 720
                if m == "cpu_percent" and svc == flap and 1200 <= i < 1920:
                    v = mu + 3 * sd + rnd.gauss(0, sd)  # hovering at the threshold
                if (svc, m, i) in blips:
                    v = mu + 3.5 * sd
                for t in truth:
                    if svc in t["services"] and m != "cpu_percent" and t["start"] <= i < t["end"]:
                        v = mu + t["sigma"] * sd + rnd.gauss(0, 3 * sd)
                values.setdefault((svc, m), []).append(v)
                lines.append(json.dumps({"ts": ts, "metric": m, "value": round(v, 4),
                                         "labels": {"service": svc}}))
    return lines, values, truth


def threshold_pages(values):
    """Static rule: mean + 3 sigma of the first 30 minutes; one page per rising edge."""
    pages = []
    for (svc, m), vs in values.items():
        base = vs[:180]
        mu = sum(base) / len(base)
        sd = (sum((x - mu) ** 2 for x in base) / len(base)) ** 0.5
        above = False
        for i, v in enumerate(vs):
            if v > mu + 3 * sd and not above:
                pages.append((svc, m, i))
            above = v > mu + 3 * sd
    return pages


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


CONF = """
[sentinel]
listen = 127.0.0.1:{port}
state = local
group_wait = 60
group_wait_wall = 30
correlate_window = 300

[store:local]
plugin = sqlite
path = {dir}/sentinel.db

[input:events]
plugin = http

[detector:latency]
plugin = zscore
threshold = 4

[analyzer:rca]
plugin = stats

[notifier:log]
plugin = log

[pipeline]
edge = events -> latency -> correlate -> rca -> resolve
"""


def run_sentinel(sentineld, lines):
    d = tempfile.mkdtemp(prefix="sn-fatigue-")
    port = free_port()
    conf = os.path.join(d, "sentinel.conf")
    with open(conf, "w") as f:
        f.write(CONF.format(port=port, dir=d))
    log = open(os.path.join(d, "sentineld.log"), "wb")
    proc = subprocess.Popen([sentineld, "-c", conf], stdout=log, stderr=log)
    base = "http://127.0.0.1:%d" % port

    def get(path):
        with urllib.request.urlopen(base + path, timeout=30) as r:
            return json.loads(r.read())

    try:
        deadline = time.time() + 10
        while True:
            try:
                get("/health")
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("sentineld did not start; see " + d)
                time.sleep(0.05)
        for i in range(0, len(lines), 5000):
            req = urllib.request.Request(base + "/v1/events", method="POST",
                                         data=("\n".join(lines[i:i + 5000]) + "\n").encode())
            with urllib.request.urlopen(req, timeout=60) as r:
                r.read()
        # Wait until the detectors caught up and nothing is still gathering.
        deadline = time.time() + 60
        while time.time() < deadline:
            h = get("/health/detailed")
            incs = get("/v1/incidents")["incidents"]
            if h["telemetry"]["queued"] == 0 and incs and \
                    not any(i["state"] == "gathering" for i in incs):
                time.sleep(0.5)
                if len(get("/v1/incidents")["incidents"]) == len(incs):
                    break
            time.sleep(0.2)
        docs = [get("/v1/incidents/" + i["id"]) for i in get("/v1/incidents")["incidents"]]
        return docs
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        if os.environ.get("SN_KEEP") is None:
            shutil.rmtree(d, ignore_errors=True)


def onset_index(doc):
    return min((a["ts"] - T0) // STEP for a in doc["anomalies"]) if doc["anomalies"] else None


def evaluate(truth, pages, docs):
    """Pages on each side, true incidents each caught, and the reduction."""
    def caught_by_docs(t):
        return any(set(d["services"]) & set(t["services"]) and onset_index(d) is not None
                   and t["start"] - 30 <= onset_index(d) <= t["end"] + 60 for d in docs)

    def caught_by_pages(t):
        return any(p[0] in t["services"] and t["start"] - 30 <= p[2] <= t["end"] + 60
                   for p in pages)

    missed = [t for t in truth if not caught_by_docs(t)]
    reduction = 100.0 * (1 - len(docs) / len(pages)) if pages else 0.0
    return {"threshold_pages": len(pages), "sentinel_pages": len(docs),
            "true_incidents": len(truth),
            "threshold_caught": sum(1 for t in truth if caught_by_pages(t)),
            "sentinel_missed": len(missed), "missed": missed,
            "reduction_pct": round(reduction, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentineld", default=os.path.join(ROOT, "build", "core", "sentineld"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    lines, values, truth = generate()
    pages = threshold_pages(values)
    r = evaluate(truth, pages, run_sentinel(a.sentineld, lines))
    if a.json:
        print(json.dumps(r))
    print("bench: alert_threshold_pages %d pages" % r["threshold_pages"])
    print("bench: alert_sentinel_pages %d pages" % r["sentinel_pages"])
    print("bench: alert_reduction_pct %.1f %%" % r["reduction_pct"])
    print("bench: alert_true_incidents_missed %d of %d" % (r["sentinel_missed"],
                                                           r["true_incidents"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
