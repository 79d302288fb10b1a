#!/usr/bin/env python3
"""Benchmark: Prometheus remote write samples per second into a running sentineld.

    python3 tests/bench/bench_remote_write.py [BUILD_DIR]

prints `bench: remote_write_samples_per_s N samples/s`: samples that went through
POST /hooks/prom/api/v1/write (snappy + protobuf WriteRequests shaped like Prometheus's: 2000
series a request, one sample each, 5 labels a series) and were observed by the zscore detector,
per second of wall time, with sentineld pinned to one core (the loop thread and its one telemetry
worker share it) and this client on another. A 503 (queues full) is retried like Prometheus
does, so the figure is what the pipeline sustains, not what the queue absorbs.

Requests are built here: protobuf by hand (the remote write 1.0 field numbers), snappy through
Debian's libsnappy with ctypes, so nothing beyond the standard library and libsnappy1v5 is needed.
"""
import ctypes
import ctypes.util
import http.client
import os
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
os.environ.setdefault("SN_BUILD_DIR",
                      os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                                      os.path.join(HERE, "..", "..", "build")))
import sntest  # noqa: E402

sntest.BUILD = os.environ["SN_BUILD_DIR"]
sntest.SENTINELD = os.path.join(sntest.BUILD, "core", "sentineld")

SERIES = 20000  # distinct series, like a mid-sized Prometheus
PER_REQUEST = 2000  # Prometheus's max_samples_per_send
ROUNDS = 20  # every series gets this many samples, 15 s apart
T0 = 1795600800000

_snappy = ctypes.CDLL(ctypes.util.find_library("snappy") or "libsnappy.so.1")
_snappy.snappy_max_compressed_length.restype = ctypes.c_size_t
_snappy.snappy_max_compressed_length.argtypes = [ctypes.c_size_t]
_snappy.snappy_compress.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                    ctypes.POINTER(ctypes.c_size_t)]


def snappy(data):
    cap = _snappy.snappy_max_compressed_length(len(data))
    out = ctypes.create_string_buffer(cap)
    n = ctypes.c_size_t(cap)
    if _snappy.snappy_compress(data, len(data), out, ctypes.byref(n)) != 0:
        raise RuntimeError("snappy_compress failed")
    return out.raw[:n.value]


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(field, data):
    """A length-delimited field."""
    return varint(field << 3 | 2) + varint(len(data)) + data


def label(name, value):
    return ld(1, ld(1, name.encode()) + ld(2, value.encode()))


def series_labels(i):
    return (label("__name__", "http_request_duration_seconds_sum") +
            label("code", "200") + label("handler", "/api/v%d" % (i % 40)) +
            label("instance", "10.0.%d.%d:9100" % (i // 250 % 256, i % 250)) +
            label("job", "api") + label("pod", "api-%05d" % i))


def sample(value, ts):
    return ld(2, b"\x09" + struct.pack("<d", value) + b"\x10" + varint(ts))


def bodies():
    labels = [series_labels(i) for i in range(SERIES)]
    out = []
    for r in range(ROUNDS):
        ts = T0 + r * 15000
        for start in range(0, SERIES, PER_REQUEST):
            req = b"".join(ld(1, labels[i] + sample(0.1 + (i * 7919 + r) % 13 * 0.01, ts))
                           for i in range(start, min(start + PER_REQUEST, SERIES)))
            out.append(snappy(req))
    return out


def main():
    reqs = bodies()
    total = ROUNDS * SERIES
    conf = sntest.BASE_CONF.replace(
        "[pipeline]", "[input:prom]\nplugin = prometheus_remote_write\n\n[pipeline]\n"
        "edge = prom -> latency")
    d = sntest.Daemon(conf=conf, extra_core="workers = 1\nmax_body = 64m\nqueue_points = 4000000")
    d.start()
    try:
        subprocess.run(["taskset", "-a", "-p", "-c", "0", str(d.proc.pid)], capture_output=True)
        if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
            os.sched_setaffinity(0, {1})
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
        headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                   "X-Prometheus-Remote-Write-Version": "0.1.0"}
        retries = 0
        t0 = time.perf_counter()
        for body in reqs:
            while True:
                conn.request("POST", "/hooks/prom/api/v1/write", body, headers)
                resp = conn.getresponse()
                raw = resp.read()
                if resp.status == 204:
                    break
                if resp.status != 503:
                    sntest.fail("remote write answered %d %r" % (resp.status, raw[:200]))
                retries += 1
                time.sleep(0.005)
        t_route = time.perf_counter() - t0
        d.wait_for(lambda: d.json("GET", "/health/detailed")[1]["telemetry"]["points"] >= total,
                   timeout=300, what="all samples observed")
        dt = time.perf_counter() - t0
        conn.close()
        print("%d samples in %d requests: route %.2f s, observed %.2f s, %d retries after 503"
              % (total, len(reqs), t_route, dt, retries), file=sys.stderr)
        print("bench: remote_write_samples_per_s %.0f samples/s" % (total / dt))
    finally:
        d.cleanup()


if __name__ == "__main__":
    main()
