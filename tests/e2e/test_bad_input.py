"""Bad input on /v1/events: each bad line gets an error naming the request, line and field, a
counter in /metrics, and nothing accepted beside it is lost; the daemon keeps serving."""
import json

from sntest import Daemon, check

d = Daemon(extra_core="max_body = 64k").start()
try:
    good = '{"ts":"2026-11-25T10:00:00Z","metric":"cpu","value":1.5,"labels":{"service":"a"}}'
    body = "\n".join([
        good,
        '{"ts":"2026-11-25T10:00:00Z","metric":"cpu","value":"high"}',   # wrong type
        '{"ts":"2026-11-25T10:00:00Z","metric":"cpu","value":1e999}',    # not finite
        '{"metric":"cpu","value":1}',                                     # missing ts
        '{"ts":"yesterday","metric":"cpu","value":1}',                    # bad time
        '{"ts":1,"metric":"cpu","value":1,"labels":{"service":7}}',       # bad label
        'not json at all',
        good.replace("1.5", "2.5"),
    ]).encode() + b'\n{"ts":1,"metric":"cpu\xff","value":1}\n' + good.encode() + b"\n"
    st, raw, hdr = d.request("POST", "/v1/events", body, headers={"X-Request-ID": "req-42"})
    res = json.loads(raw)
    check(st == 200, "partly bad body answers 200 (%d)" % st)
    check(res["accepted"] == 3 and res["rejected"] == 7,
          "3 accepted, 7 rejected: %s" % res)
    errs = "\n".join(res["errors"])
    check("req-42" in errs and "line 2" in errs and "'value'" in errs,
          "errors name the request, line and field")
    check("line 9" in errs, "invalid UTF-8 named by line")
    st, raw, _ = d.request("POST", "/v1/events", "x" * (70 * 1024))
    check(st == 413, "oversized body: 413 (%d)" % st)
    st, raw, _ = d.request("GET", "/metrics")
    m = raw.decode()
    for reason in ("type", "nonfinite", "missing", "time", "labels", "json", "utf8"):
        check('sentinel_ingest_rejected_total{reason="%s"}' % reason in m,
              "rejections counted by reason: " + reason)
    check("sentinel_http_body_too_large_total 1" in m, "413 counted")
    st, h = d.json("GET", "/health/detailed")
    d.wait_for(lambda: d.json("GET", "/health/detailed")[1]["telemetry"]["points"] >= 3,
               what="the accepted points to reach the detectors")
    check(d.request("GET", "/health")[0] == 200, "daemon keeps serving")
finally:
    d.cleanup()
