#!/usr/bin/env python3
"""LLM analysis figures for `make bench`, against sentineld from the build tree (argument or
SN_BUILD_DIR) and the REAL inference fixture (tests/e2e/llm_fixture: llama.cpp through
node-llama-cpp, a tiny random-weight model, one thread). Prints

    bench: llm_analysis_stats_only_ms VALUE ms
    bench: llm_tool_loop_overhead_ms VALUE ms
    bench: embedding_cache_hit_rate_pct VALUE %

llm_analysis_stats_only_ms: the analysis of an incident with statistics only (pipeline
    correlate -> rca -> runbook, no LLM): for each of N incidents (a deploy then a latency spike
    on svcNN, an hour apart in event time, posted together) the time from the incident's "opened" timeline entry
    to the runbook's "planned" entry (daemon clock, ms resolution); the median. Target: well
    under 50 ms.
llm_tool_loop_overhead_ms: what the llm analyzer's tool loop costs beyond the model. With
    max_tool_calls = 2, max_turns = 3 and the fixture calling a tool whenever tools are open,
    one analysis is three model calls (tool, tool, answer). Overhead = (timestamp of the llm
    node's entries, written when its analysis completes, minus that of the rca node's
    "analyzed" entry, when it started) minus the sum over the fixture's requests of server_ms
    (request body received to reply sent: tokenising, prompt evaluation, generation). What is
    left is prompt, schema and redaction work, the tool runs, three HTTP round trips on
    127.0.0.1 and reply validation. Median over 3 incidents.
embedding_cache_hit_rate_pct: the openai embedder's cache on a replayed day of alerts: 48
    firings of 8 recurring alerts (name, service) over 24 hours of event time, each firing its
    own fingerprint, embedded through the fixture's POST /v1/embeddings. The core embeds an
    incident's description when it opens (deduplication) and when it resolves (memory);
    hits / (hits + misses) from the embedder's metrics.
Without node/npm (or when npm cannot install node-llama-cpp) a note goes to stderr and only
the first figure is printed.
"""
import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "e2e", "llm_fixture"))

T0 = 1795593600000

CORE = """
[sentinel]
listen = 127.0.0.1:{port}
state = local
vector = local
embedder = %(embedder)s
group_wait = 60
group_wait_wall = 1
%(core)s
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
rule = cause~deploy -> mock:rollout_restart deployment/shop/{{service}}
rule = * -> mock:rollout_restart deployment/shop/{{service}}

[executor:mock]
plugin = mock
allow = deployment/shop/*
journal = {dir}/journal.jsonl
max_per_hour = 1000
max_per_minute = 1000
{extra_mock}
%(sections)s
[pipeline]
edge = events -> latency
edge = latency -> correlate
edge = events -> correlate
edge = %(chain)s -> approve -> mock -> verify
edge = verify -> resolve [on=ok]
"""

LLM = """
[analyzer:llm]
plugin = llm
provider = p1 kind=openai url=%s model=random-tiny timeout=60s retries=0
action = mock:rollout_restart deployment/shop/{{service}}
plan_from_incident = false
max_tokens = 300
max_turns = 3
max_tool_calls = 2
"""

EMBED = """
[embedder:oa]
plugin = openai
url = %s
model = random-tiny
dim = 64
batch_wait = 5ms
"""


def conf(chain, sections="", embedder="hashing", core=""):
    return CORE % {"chain": chain, "sections": sections, "embedder": embedder, "core": core}


def incident_lines(i):
    import sntest  # imported by main() first, once SN_BUILD_DIR is set
    return sntest.deploy_spike_lines(i, T0)


def ms(ts):
    """'2026-11-30T12:28:21.409Z' -> epoch ms."""
    import calendar
    return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) * 1000 + int(ts[20:23])


def entry(doc, node, event=None):
    return next((t for t in doc["timeline"] if t.get("node") == node and
                 (event is None or t["event"] == event)), None)


def incident_of(d, svc):
    for x in d.incidents():
        if svc in x.get("services", []):
            return d.json("GET", "/v1/incidents/" + x["id"])[1]
    return None


def stats_only(sntest, n):
    d = sntest.Daemon(conf=conf("correlate -> rca -> runbook")).start()
    lat = []
    try:
        for i in range(n):
            d.json("POST", "/v1/events", incident_lines(i))
        for i in range(n):
            doc = d.wait_for(lambda: (lambda x: x if x and entry(x, "runbook", "planned")
                                      else None)(incident_of(d, "svc%02d" % i)),
                             timeout=60, what="incident %d to be planned" % i)
            lat.append(ms(entry(doc, "runbook", "planned")["ts"]) -
                       ms(entry(doc, "correlate", "opened")["ts"]))
    finally:
        d.cleanup()
    return lat


def tool_loop(sntest, fx, n):
    fx.faults([{"tools": "open"}])
    d = sntest.Daemon(conf=conf("correlate -> rca -> llm -> runbook",
                                LLM % fx.url("p1"))).start()
    out = []
    try:
        for i in range(n):
            fx.reset()
            d.json("POST", "/v1/events", incident_lines(i))
            doc = d.wait_for(lambda: (lambda x: x if x and entry(x, "llm") else None)(
                incident_of(d, "svc%02d" % i)), timeout=120, what="llm analysis %d" % i)
            reqs = [r for r in fx.stats()["requests"] if r["status"] == 200]
            wall = ms(entry(doc, "llm")["ts"]) - ms(entry(doc, "rca", "analyzed")["ts"])
            server = sum(r["server_ms"] for r in reqs)
            print("# tool loop %d: %d calls (%s), analysis %d ms, fixture %d ms"
                  % (i, len(reqs), ",".join(r["format"] for r in reqs), wall, server),
                  file=sys.stderr)
            out.append(wall - server)
    finally:
        d.cleanup()
        fx.faults([])
    return out


def day_of_alerts(rng):
    """48 firings of 8 recurring alerts over 24 hours: the flappers fire most."""
    kinds = [("disk_full", "nginx"), ("high_latency", "checkout"), ("pod_crashloop", "cart"),
             ("error_rate", "payments"), ("memory_pressure", "search"), ("cert_expiry", "edge"),
             ("queue_backlog", "orders"), ("replica_lag", "db")]
    weights = [10, 8, 6, 4, 3, 2, 2, 1]
    out = []
    for k in range(48):
        name, svc = rng.choices(kinds, weights)[0]
        ts = T0 + k * 1800 * 1000
        out.append({"ts": ts, "alert": name, "status": "firing", "fingerprint": "fp-%d" % k,
                    "labels": {"service": svc, "severity": "page"}})
    return out


def embed_hit_rate(sntest, fx):
    d = sntest.Daemon(conf=conf("correlate -> rca -> runbook", EMBED % fx.url(), "oa",
                                "dedup_similarity = 0.999")).start()

    def metric(name):
        st, raw, _ = d.request("GET", "/metrics")
        for line in raw.decode().splitlines():
            if line.startswith("sentinel_" + name + '{instance="embedder:oa"}'):
                return float(line.split()[-1])
        return 0.0

    try:
        alerts = day_of_alerts(random.Random(7))
        for a in alerts:  # one an event-time half hour apart, posted as they would arrive
            d.json("POST", "/v1/events", json.dumps(a) + "\n")
            time.sleep(0.05)
        # done when every incident is resolved and the embedder has been quiet for a while
        last, quiet = None, time.time()
        deadline = time.time() + 90
        while time.time() < deadline:
            now = (metric("embedder_cache_hits_total"), metric("embedder_cache_misses_total"),
                   len(d.incidents()), len(d.incidents("resolved")))
            if now != last:
                last, quiet = now, time.time()
            elif time.time() - quiet > 3 and now[2] and now[2] == now[3]:
                break
            time.sleep(0.2)
        hits, misses = last[0], last[1]
        print("# embeddings: %d hits, %d misses, %d incidents (%d resolved) from %d alerts"
              % (hits, misses, last[2], last[3], len(alerts)), file=sys.stderr)
        return 100.0 * hits / (hits + misses) if hits + misses else float("nan")
    finally:
        d.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.environ.get("SN_BUILD_DIR"))
    ap.add_argument("--incidents", type=int, default=20)
    ap.add_argument("--tool-incidents", type=int, default=3)
    a = ap.parse_args()
    if a.build:
        os.environ["SN_BUILD_DIR"] = os.path.abspath(a.build)
    os.environ.setdefault("SN_SOURCE_DIR", os.path.join(HERE, "..", ".."))
    import sntest  # noqa: E402  (reads SN_BUILD_DIR at import)
    from fixture import LLMFixture, Unavailable  # noqa: E402

    lat = stats_only(sntest, a.incidents)
    print("bench: llm_analysis_stats_only_ms %.1f ms" % statistics.median(lat))
    print("# stats-only analysis over %d incidents: max %d ms" % (len(lat), max(lat)),
          file=sys.stderr)

    tmp = tempfile.mkdtemp(prefix="sn-bench-llm-")
    try:
        fx = LLMFixture(sntest.BUILD).start(tmp)
    except Unavailable as e:
        print("# bench_llm: no real inference engine (%s): tool loop and embedding figures "
              "skipped" % e, file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        over = tool_loop(sntest, fx, a.tool_incidents)
        print("bench: llm_tool_loop_overhead_ms %.0f ms" % statistics.median(over))
        print("bench: embedding_cache_hit_rate_pct %.1f %%" % embed_hit_rate(sntest, fx))
    finally:
        fx.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
