"""Prometheus remote write into sentineld, with the real Prometheus (/usr/bin/prometheus).

Prometheus scrapes itself and sentineld every second and remote-writes to
/hooks/prom/api/v1/write with a bearer token. sentineld keeps every point in its sqlite
telemetry store ([sentinel] telemetry = local), which is how the test sees exactly which samples
arrived: the `points` table holds (series, ts, value) with series the core's 64-bit hash of
metric + sorted labels, computed here the same way, so finding rows under the hash of
up{cluster="e2e",instance=...,job="prometheus"} proves the name and every label arrived intact.

Then the outage: sentineld is stopped for 30 s while Prometheus keeps scraping; Prometheus
keeps the unsent samples in its WAL-backed queue and retries. After sentineld is back on the
same port, every raw sample Prometheus itself holds for that series over the whole window
(its own /api/v1/query of up[...] gives the raw timestamps) must be in sentineld's store:
nothing lost. The stale markers Prometheus writes when the sentineld scrape target vanishes
arrive too and are counted as stale, not as values.
"""
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from sntest import Daemon, check, fail, free_port

PROMETHEUS = "/usr/bin/prometheus"
TOKEN = "e2e-rw-token-4f1c"
OUTAGE_S = 30

CONF = """
[sentinel]
listen = 127.0.0.1:{port}
state = local
telemetry = local
group_wait = 60
group_wait_wall = 2

[store:local]
plugin = sqlite
path = {dir}/sentinel.db
synchronous = NORMAL

[input:prom]
plugin = prometheus_remote_write
token = ${{env:SN_E2E_RW_TOKEN}}

[detector:latency]
plugin = zscore
threshold = 4

[pipeline]
edge = prom -> latency -> correlate
"""

PROM_YML = """
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
  external_labels:
    cluster: e2e
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{pport}"]
  - job_name: sentinel
    static_configs:
      - targets: ["127.0.0.1:{sport}"]
remote_write:
  - url: http://127.0.0.1:{sport}/hooks/prom/api/v1/write
    authorization:
      credentials: {token}
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 50ms
      max_backoff: 1s
    metadata_config:
      send_interval: 5s
"""


def series_hash(metric, labels):
    """The core's sn_series_hash (core/util.c), as the sqlite store keeps it (signed)."""
    h = 1469598103934665603
    mask = (1 << 64) - 1

    def fnv(h, data):
        for c in data:
            h = ((h ^ c) * 1099511628211) & mask
        return h

    h = fnv(h, metric.encode())
    for name in sorted(labels):
        h = fnv(h, b"\xff" + name.encode())
        h = fnv(h, b"\xfe" + labels[name].encode())
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & mask
    h ^= h >> 33
    return h - (1 << 64) if h >= 1 << 63 else h


def metric(d, name):
    st, raw, _ = d.request("GET", "/metrics")
    if st != 200:
        return 0.0
    total = 0.0
    for line in raw.decode().splitlines():
        if line.startswith("sentinel_" + name + "{") or line.startswith("sentinel_" + name + " "):
            total += float(line.split()[-1])
    return total


def stored_ts(d, series):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.dir, "sentinel.db"), uri=True,
                         timeout=5)
    try:
        return {r[0] for r in db.execute("SELECT ts FROM points WHERE series = ?", (series,))}
    except sqlite3.OperationalError:
        return set()
    finally:
        db.close()


class Prometheus:
    def __init__(self, sport):
        self.dir = tempfile.mkdtemp(prefix="sn-rw-prom-")
        self.port = free_port()
        self.yml = os.path.join(self.dir, "prometheus.yml")
        with open(self.yml, "w") as f:
            f.write(PROM_YML.format(pport=self.port, sport=sport, token=TOKEN))
        self.log = open(os.path.join(self.dir, "prometheus.log"), "ab")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + self.yml,
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=info"],
            stdout=self.log, stderr=self.log)

    def get(self, path):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=10) as r:
            return r.status, r.read()

    def wait_ready(self):
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                fail("prometheus exited:\n" + self.logtext())
            try:
                if self.get("/-/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        fail("prometheus not ready:\n" + self.logtext())

    def raw_ts(self, selector, window_s):
        """Raw sample timestamps (ms) Prometheus holds for @selector over the last window."""
        import json
        q = urllib.parse.urlencode({"query": "%s[%ds]" % (selector, window_s)})
        st, raw = self.get("/api/v1/query?" + q)
        res = json.loads(raw)["data"]["result"]
        if len(res) != 1:
            return set()
        return {int(round(float(t) * 1000)) for t, _ in res[0]["values"]}

    def logtext(self):
        with open(os.path.join(self.dir, "prometheus.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if os.environ.get("SN_KEEP") is None:
            shutil.rmtree(self.dir, ignore_errors=True)


if not os.access(PROMETHEUS, os.X_OK):
    fail(PROMETHEUS + " is missing: apt-get install prometheus (scripts/install-deps.sh)")

os.environ["SN_E2E_RW_TOKEN"] = TOKEN
t_begin = time.time()
# Own temp-dir prefixes: the directory must outlive the restart whatever else runs here.
d = Daemon(conf=CONF, keep_dir=tempfile.mkdtemp(prefix="sn-rw-e2e-"))
d.start()
prom = None
try:
    prom = Prometheus(d.port)
    prom.wait_ready()
    up = {"cluster": "e2e", "instance": "127.0.0.1:%d" % prom.port, "job": "prometheus"}
    up_series = series_hash("up", up)
    sel = 'up{job="prometheus"}'

    d.wait_for(lambda: len(stored_ts(d, up_series)) >= 3, timeout=30,
               what="Prometheus's `up` series to arrive with its labels")
    check(len(stored_ts(d, up_series)) >= 3,
          "up{cluster,instance,job} arrived with every label (found under its series hash)")
    st, h = d.json("GET", "/health/detailed")
    check(st == 200 and h["telemetry"]["points"] > 100,
          "telemetry points grow (%d observed)" % h["telemetry"]["points"])
    check(metric(d, "input_remote_write_samples_accepted_total") > 100,
          "samples accepted through the route")
    check(metric(d, "input_remote_write_requests_ok_total") >= 1, "requests answered 204")
    check(metric(d, "input_remote_write_requests_unauthorized_total") == 0,
          "Prometheus's bearer token is accepted")
    check(metric(d, "input_remote_write_requests_bad_total") == 0, "no request was undecodable")
    check(metric(d, "input_remote_write_samples_rejected_total") == 0,
          "the core took every series Prometheus sent (names and labels in its format)")

    # The outage: Prometheus goes on scraping and queues what it cannot send.
    time.sleep(2)
    t_stop = time.time()
    d.stop()
    time.sleep(OUTAGE_S)
    t_restart = time.time()
    d.start()

    def caught_up():
        want = prom.raw_ts(sel, int(time.time() - t_begin) + 5)
        have = stored_ts(d, up_series)
        tail = max(want) if want else 0
        # Everything Prometheus held up to a second ago must be stored (the last second may
        # still be in its send queue).
        missing = {t for t in want if t <= tail - 1500} - have
        return (want, have) if want and not missing else None

    want, have = d.wait_for(caught_up, timeout=40,
                            what="every sample of the outage to arrive after the restart")
    in_outage = sorted(t for t in have if t_stop * 1000 <= t <= t_restart * 1000)
    check(set(t for t in want if t <= max(want) - 1500) <= have,
          "every raw sample Prometheus holds for `up` (%d) is in sentineld's store" % len(want))
    check(len(in_outage) >= OUTAGE_S * 0.8,
          "%d samples of `up` scraped during the %d s outage arrived after it"
          % (len(in_outage), OUTAGE_S))
    ordered = sorted(have)
    gaps = [b - a for a, b in zip(ordered, ordered[1:])]
    check(max(gaps) < 5000, "no hole in the stored series (largest step %d ms)" % max(gaps))
    d.wait_for(lambda: metric(d, "input_remote_write_samples_stale_total") >= 1, timeout=15,
               what="the stale markers of sentineld's own series")
    check(metric(d, "input_remote_write_samples_stale_total") >= 1,
          "stale markers (sentineld's own series vanished while it was down) were "
          "recognised as such")
    # Ordinary NaNs exist too (Prometheus's own summaries report NaN quantiles before any
    # observation): those are counted apart.
    print("figures: %d stale markers, %d non-finite samples skipped since the restart"
          % (metric(d, "input_remote_write_samples_stale_total"),
             metric(d, "input_remote_write_samples_nonfinite_total")))
    check(metric(d, "input_remote_write_requests_bad_total") == 0, "still no undecodable request")
    print("figures: outage %.1f s, %d outage samples of `up`, total %.1f s"
          % (t_restart - t_stop, len(in_outage), time.time() - t_begin))
finally:
    if prom:
        prom.cleanup()
    d.cleanup()
