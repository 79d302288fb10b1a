"""OTLP/HTTP metrics (JSON encoding) into a real sentineld: [input:otel] plugin = otlp wired to
a zscore detector. The OpenTelemetry project's example request is taken (the histogram reported
in partialSuccess), a generated gauge series with a spike, pushed the way the Collector's
otlphttp exporter does (JSON, gzip, bearer token), opens an incident whose service comes from
the resource's service.name; a malformed body gets 400 naming the field path, wrong content
types and tokens are refused, and the daemon keeps serving. (The Collector binary itself is not
packaged in Debian, so the requests are made with urllib.)"""
import gzip
import json
import os
import random

from sntest import BASE_CONF, Daemon, check

T0 = 1795600800000
STEP = 10000
TOKEN = "otlp-e2e-token"
EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "otlp",
                       "metrics-example.json")

CONF = BASE_CONF.replace(
    "[input:events]\nplugin = http\n",
    "[input:events]\nplugin = http\n\n[input:otel]\nplugin = otlp\n"
    "token = ${{env:SN_E2E_OTLP_TOKEN}}\nmax_points = 500\n").replace(
    "edge = events -> latency", "edge = events -> latency\nedge = otel -> latency")
PATH = "/hooks/otel/v1/metrics"
JSON_HDR = {"Content-Type": "application/json", "Authorization": "Bearer " + TOKEN}


def request(points, service="checkout", host="node-1"):
    """An ExportMetricsServiceRequest with one gauge; points are (ms, value)."""
    return {"resourceMetrics": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "host.name", "value": {"stringValue": host}},
            {"key": "telemetry.sdk.language", "value": {"stringValue": "go"}}]},
        "scopeMetrics": [{"scope": {"name": "shop/http"}, "metrics": [{
            "name": "http.server.latency", "unit": "ms",
            "gauge": {"dataPoints": [
                {"timeUnixNano": str(ms * 1000000), "asDouble": v,
                 "attributes": [{"key": "http.route", "value": {"stringValue": "/pay"}}]}
                for ms, v in points]}}]}]}]}


def metric(d, name):
    st, raw, _ = d.request("GET", "/metrics")
    want = 'sentinel_%s{instance="input:otel"} ' % name
    for line in raw.decode().splitlines():
        if line.startswith(want):
            return float(line.split()[-1])
    return 0.0


os.environ["SN_E2E_OTLP_TOKEN"] = TOKEN
d = Daemon(conf=CONF).start()
try:
    # 1. The official example: 2 points taken, the histogram reported as rejected.
    with open(EXAMPLE, "rb") as f:
        example = f.read()
    st, raw, _ = d.request("POST", PATH, example, headers=JSON_HDR)
    body = json.loads(raw)
    check(st == 200, "the OpenTelemetry example request answers 200 (%d: %s)" % (st, raw[:200]))
    check(body.get("partialSuccess", {}).get("rejectedDataPoints") == "1"
          and "histogram" in body["partialSuccess"]["errorMessage"],
          "partialSuccess reports the skipped histogram: %s" % body)
    check(metric(d, "input_otlp_points_accepted_total") == 2, "its gauge and sum are ingested")

    # 2. A gauge series with a spike, in batches like an exporter's; one batch gzip'd.
    rnd = random.Random(7)
    pts = []
    for i in range(200):
        v = 120.0 + rnd.gauss(0, 2.0)
        if i == 150:
            v = 400.0
        pts.append((T0 + i * STEP, round(v, 3)))
    for b in range(0, len(pts), 50):
        data = json.dumps(request(pts[b:b + 50])).encode()
        hdr = dict(JSON_HDR)
        if b == 100:
            data = gzip.compress(data)
            hdr["Content-Encoding"] = "gzip"
        st, raw, _ = d.request("POST", PATH, data, headers=hdr)
        if st != 200 or json.loads(raw) != {}:
            check(False, "batch %d answered %d: %r" % (b // 50, st, raw[:300]))
    check(metric(d, "input_otlp_points_accepted_total") == 202, "all 200 series points taken")
    inc = d.wait_for(lambda: [i for i in d.incidents() if "checkout" in i["services"]],
                     what="an incident for the checkout spike")[0]
    check(True, "the spike opened an incident for service checkout (from service.name)")
    st, doc = d.json("GET", "/v1/incidents/" + inc["id"])
    anomalies = doc.get("anomalies", [])
    hit = [a for a in anomalies if a.get("metric") == "http.server.latency"]
    check(hit and hit[0].get("ts") == T0 + 150 * STEP and hit[0].get("value") == 400.0,
          "the incident carries the spike at its OTLP time: %s" % json.dumps(anomalies)[:400])
    labels = hit[0].get("labels", {})
    check(labels.get("service") == "checkout" and labels.get("host") == "node-1"
          and labels.get("http_route") == "/pay"
          and labels.get("telemetry_sdk_language") == "go",
          "anomaly labels mapped from OTLP attributes: %s" % labels)

    # 3. Malformed, unauthorised and wrongly typed requests are refused; nothing breaks.
    bad = request([(T0, 1.0)])
    bad["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"][0][
        "timeUnixNano"] = "yesterday"
    st, raw, _ = d.request("POST", PATH, json.dumps(bad),
                           headers=dict(JSON_HDR, **{"X-Request-ID": "otlp-bad-1"}))
    msg = json.loads(raw).get("message", "")
    check(st == 400 and "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0]"
          ".timeUnixNano" in msg and "otlp-bad-1" in msg,
          "malformed body: 400 naming the field path and request (%d: %s)" % (st, msg))
    st, raw, _ = d.request("POST", PATH, b"{not json", headers=JSON_HDR)
    check(st == 400, "a body that is not JSON: 400")
    st, raw, _ = d.request("POST", PATH, example,
                           headers={"Content-Type": "application/x-protobuf",
                                    "Authorization": "Bearer " + TOKEN})
    check(st == 415 and b"protobuf" in raw, "protobuf encoding: 415 saying so")
    st, raw, _ = d.request("POST", PATH, example, headers={"Content-Type": "application/json"})
    check(st == 401 and TOKEN.encode() not in raw, "no bearer token: 401")
    st, raw, _ = d.request("POST", PATH, json.dumps(request([(T0, 1.0)] * 501)),
                           headers=JSON_HDR)
    check(st == 413, "over max_points: 413 (%d)" % st)
    check(d.request("GET", "/health")[0] == 200, "the daemon keeps serving")
    st, raw, _ = d.request("POST", PATH, json.dumps(request([(T0 + 300 * STEP, 120.0)])),
                           headers=JSON_HDR)
    check(st == 200, "and the input keeps taking good requests")
    check(metric(d, "input_otlp_requests_400_total") == 2, "400s counted")
    check(metric(d, "input_otlp_requests_401_total") == 1
          and metric(d, "input_otlp_requests_415_total") == 1
          and metric(d, "input_otlp_requests_413_total") == 1, "401, 413 and 415 counted")
    check(TOKEN not in d.logtext(), "the token never reaches the log")
finally:
    d.cleanup()
print("1..ok")
