#!/usr/bin/env python3
"""Detection-to-execution latency of an auto-approved remediation: a sentineld from the build
tree (argument or SN_BUILD_DIR) with [executor:k8s] plugin = kubernetes pointed at the TEST
DOUBLE of the Kubernetes API server (tests/e2e/k8s_double.py), and a runbook rule mapping a
deploy cause to k8s:rollout_restart. For each of N incidents (default 20, one service each,
an hour apart in event time, each posted once the previous one is resolved) it posts a baseline, a deploy change event and a latency spike,
then measures from the incident's "opened" timeline entry (the detection, daemon clock) to the
moment the double receives the rollout-restart PATCH (same host clock). Prints

    bench: detect_to_execute_p99_ms N ms

plus the median and max on a second line. The path measured: correlate -> rca -> runbook ->
approve (auto: low risk) -> k8s snapshot (GET) -> intent checkpoint -> execute (GET, PATCH).
"""
import argparse
import calendar
import json
import math
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

CONF = """
[sentinel]
listen = 127.0.0.1:{port}
state = local
vector = local
embedder = hashing
group_wait = 60
group_wait_wall = 1
{extra_core}

[store:local]
plugin = sqlite
path = {dir}/sentinel.db

[input:events]
plugin = http

[detector:latency]
plugin = zscore
threshold = 4

[embedder:hashing]
plugin = hashing

[analyzer:rca]
plugin = stats

[analyzer:runbook]
plugin = runbook
rule = cause~deploy -> k8s:rollout_restart deployment/shop/{{service}}

[executor:k8s]
plugin = kubernetes
kubeconfig = {dir}/kubeconfig
allow = deployment/shop/*
max_per_hour = 1000
max_per_minute = 1000
poll_interval = 100ms
verify_timeout = 30s
{extra_mock}

[pipeline]
edge = events -> latency
edge = latency -> correlate
edge = correlate -> rca -> runbook -> approve -> k8s -> verify
edge = verify -> resolve [on=ok]
"""

KUBECONFIG = """apiVersion: v1
kind: Config
current-context: bench
clusters:
- name: double
  cluster: {{server: "{url}"}}
contexts:
- name: bench
  context: {{cluster: double, user: bench}}
users:
- name: bench
  user: {{token: bench-token}}
"""

T0 = 1795593600000  # event time of the first incident's baseline


def incident_lines(i, rng):
    """Baseline for svc<i>, a deploy, a spike, then normal traffic so the watermark moves on."""
    svc = "svc%02d" % i
    base = T0 + i * 3600 * 1000
    out = []
    for k in range(100):
        ts = base + k * 10000
        if k == 60:
            out.append({"ts": ts, "change": "deploy", "labels": {"service": svc,
                                                                 "version": "v2.%d" % i}})
        spike = 66 <= k < 72
        # A smooth baseline (bounded z-scores, no false alarm before the deploy), then a spike.
        wave = math.sin(k * 0.7 + rng.random() * 0.1)
        lat = (900 + 20 * wave) if spike else (100 + 3 * wave)
        err = (0.2 + 0.01 * wave) if spike else (0.002 + 0.0002 * wave)
        out.append({"ts": ts, "metric": "http_p99_latency_ms", "value": round(lat, 2),
                    "labels": {"env": "prod", "service": svc}})
        out.append({"ts": ts, "metric": "http_error_ratio", "value": round(max(err, 0), 5),
                    "labels": {"env": "prod", "service": svc}})
    return "".join(json.dumps(x) + "\n" for x in out)


def parse_ts(s):
    """'2026-11-30T12:28:21.409Z' -> epoch seconds."""
    return calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) + float("0." + s[20:23])


def pct(values, p):
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(math.ceil(p / 100.0 * len(v))) - 1))
    return v[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.environ.get("SN_BUILD_DIR"))
    ap.add_argument("--incidents", type=int, default=20)
    a = ap.parse_args()
    if a.build:
        os.environ["SN_BUILD_DIR"] = os.path.abspath(a.build)
    os.environ.setdefault("SN_SOURCE_DIR", os.path.join(HERE, "..", ".."))
    import sntest  # noqa: E402  (reads SN_BUILD_DIR at import)
    from k8s_double import K8sDouble  # noqa: E402

    rng = random.Random(42)
    dbl = K8sDouble(tokens=["bench-token"], pod_ready=0.05, grace=0.05).start()
    for i in range(a.incidents):
        dbl.add_deployment("shop", "svc%02d" % i, replicas=2)
    d = sntest.Daemon(conf=CONF)
    with open(os.path.join(d.dir, "kubeconfig"), "w") as f:
        f.write(KUBECONFIG.format(url=dbl.url))
    d.start()
    lat = []
    try:
        for i in range(a.incidents):
            path = "/apis/apps/v1/namespaces/shop/deployments/svc%02d" % i
            st, body = d.json("POST", "/v1/events", incident_lines(i, rng))
            if st != 200:
                sys.exit("bench: ingest answered %d: %r" % (st, body))
            deadline = time.time() + 30
            patch = None
            while time.time() < deadline and patch is None:
                patch = next((r for r in dbl.requests()
                              if r["method"] == "PATCH" and r["path"] == path), None)
                time.sleep(0.01)
            if patch is None:
                sys.exit("bench: incident %d never reached the executor\n%s" % (i, d.logtext()))
            inc = [x for x in d.incidents() if "svc%02d" % i in x.get("services", [])]
            if not inc:
                sys.exit("bench: no incident for svc%02d" % i)
            st, doc = d.json("GET", "/v1/incidents/" + inc[0]["id"])
            opened = next(t["ts"] for t in doc["timeline"] if t["event"] == "opened")
            lat.append((patch["ts"] - parse_ts(opened)) * 1000.0)
            # One incident at a time: an open look-alike would fold the next one into it.
            d.wait_for(lambda: d.json("GET", "/v1/incidents/" + inc[0]["id"])[1]["state"]
                       in ("resolved", "escalated", "closed"), timeout=30,
                       what="incident %d to finish" % i)
    finally:
        d.cleanup()
        dbl.stop()
    print("bench: detect_to_execute_p99_ms %d ms" % round(pct(lat, 99)))
    print("bench: detect_to_execute_p50_ms %.1f ms" % pct(lat, 50))
    print("# detect_to_execute over %d incidents, max %.1f ms" % (len(lat), max(lat)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
