#!/usr/bin/env python3
"""Generate the bundled demo scenarios as JSON lines (deterministic: fixed seed).

checkout-deploy: two hours of normal traffic for five services, then a deploy of checkout
v2.3.1; a minute later checkout's p99 latency and error rate climb, and the trouble spreads to
frontend and cart. search and payments stay normal. Fixed 15 minutes later.

payments-memory: later the same day, payments' resident memory grows steadily with no deploy:
the runbook proposes a scale-up, which is medium risk and waits for a human.
"""
import json
import random
import sys

STEP = 10  # seconds between points
T0 = 1795600800  # 2026-11-25T10:00:00Z


def series_value(rng, base, noise):
    return max(0.0, rng.gauss(base, noise))


def checkout_deploy(rng):
    out = []
    start = T0 - 2 * 3600
    deploy = T0
    end = T0 + 20 * 60
    services = ["frontend", "checkout", "cart", "search", "payments"]
    base_lat = {"frontend": 180, "checkout": 120, "cart": 90, "search": 60, "payments": 140}
    onset = {"checkout": 60, "frontend": 90, "cart": 120}
    for t in range(start, end, STEP):
        if t == deploy:
            out.append({"ts": t * 1000, "change": "deploy",
                        "labels": {"service": "checkout", "version": "v2.3.1"}})
        for svc in services:
            lat = series_value(rng, base_lat[svc], base_lat[svc] * 0.04)
            err = series_value(rng, 0.002, 0.0004)
            if svc in onset and deploy + onset[svc] <= t < deploy + 15 * 60:
                lat *= 5.5 if svc == "checkout" else 3.0
                err = series_value(rng, 0.06 if svc == "checkout" else 0.03, 0.004)
            labels = {"service": svc, "env": "prod"}
            out.append({"ts": t * 1000, "metric": "http_p99_latency_ms", "value": round(lat, 2),
                        "labels": labels})
            out.append({"ts": t * 1000, "metric": "http_error_ratio", "value": round(err, 5),
                        "labels": labels})
        if (t - start) % 600 == 0:
            out.append({"ts": t * 1000, "log": "healthcheck ok", "level": "info",
                        "labels": {"service": "frontend"}})
    return out


def payments_memory(rng):
    out = []
    start = T0 + 3 * 3600
    onset = start + 90 * 60
    end = onset + 20 * 60
    for t in range(start, end, STEP):
        mem = series_value(rng, 512e6, 4e6)
        if t >= onset:
            mem += (t - onset) * 0.9e6
        labels = {"service": "payments", "env": "prod"}
        out.append({"ts": t * 1000, "metric": "process_resident_memory_bytes",
                    "value": round(mem), "labels": labels})
        out.append({"ts": t * 1000, "metric": "http_p99_latency_ms",
                    "value": round(series_value(rng, 140, 5), 2), "labels": labels})
    return out


def main():
    which = sys.argv[1]
    rng = random.Random(20261125)
    recs = {"checkout-deploy": checkout_deploy, "payments-memory": payments_memory}[which](rng)
    for r in recs:
        sys.stdout.write(json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
