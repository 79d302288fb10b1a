"""The alertmanager input against the real Prometheus Alertmanager (/usr/bin/prometheus-alertmanager):
alerts pushed through Alertmanager's v2 API reach sentineld through the webhook and become one
incident per alert group; repeats (repeat_interval) add no anomaly; resolving the alerts at the
source resolves the incident; an HA pair of clustered Alertmanagers fed the same alerts still
gives one incident with one anomaly per alert fingerprint. Everything runs on free loopback
ports with its own temp dirs."""
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from sntest import BASE_CONF, Daemon, check, fail, free_port

AM_BIN = os.environ.get("SN_ALERTMANAGER", "/usr/bin/prometheus-alertmanager")
TOKEN = "am-e2e-token-5c1d"
INSTANCE = 'instance="input:am"'

AM_CONF = """
route:
  receiver: sentinel
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
receivers:
- name: sentinel
  webhook_configs:
  - url: {url}
    send_resolved: true
    max_alerts: 100
    http_config:
      authorization:
        credentials_file: {cred}
"""


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Alertmanager:
    """One real Alertmanager process; clustered when cluster_port is given."""

    def __init__(self, url, cluster_port=None, peers=()):
        self.dir = tempfile.mkdtemp(prefix="sn-am-")
        self.port = free_port()
        cred = os.path.join(self.dir, "token")
        with open(cred, "w") as f:
            f.write(TOKEN)
        os.chmod(cred, 0o600)
        conf = os.path.join(self.dir, "alertmanager.yml")
        with open(conf, "w") as f:
            f.write(AM_CONF.format(url=url, cred=cred))
        self.args = [AM_BIN, "--config.file=" + conf, "--storage.path=" + self.dir + "/data",
                     "--web.listen-address=127.0.0.1:%d" % self.port]
        if cluster_port:
            self.args += ["--cluster.listen-address=127.0.0.1:%d" % cluster_port,
                          "--cluster.advertise-address=127.0.0.1:%d" % cluster_port,
                          "--cluster.settle-timeout=2s", "--cluster.peer-timeout=10ms",
                          "--cluster.gossip-interval=3s", "--cluster.pushpull-interval=60s"]
            self.args += ["--cluster.peer=127.0.0.1:%d" % p for p in peers]
        else:
            self.args.append("--cluster.listen-address=")
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "alertmanager.log"), "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                fail("alertmanager exited early:\n" + self.logtext())
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port,
                                            timeout=2) as r:
                    if r.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        fail("alertmanager did not become ready:\n" + self.logtext())

    def logtext(self):
        with open(os.path.join(self.dir, "alertmanager.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def push(self, alerts):
        req = urllib.request.Request("http://127.0.0.1:%d/api/v2/alerts" % self.port,
                                     data=json.dumps(alerts).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            if r.status != 200:
                fail("alertmanager refused the alerts: %d" % r.status)

    def peers(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/api/v2/status" % self.port,
                                    timeout=5) as r:
            return len(json.loads(r.read())["cluster"].get("peers") or [])

    def sent(self):
        """Webhook notifications this Alertmanager delivered (its own counter)."""
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("alertmanager_notifications_total{") and \
                        'integration="webhook"' in line:
                    return int(float(line.split()[-1]))
        return 0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def alert(name, service, instance, starts, ends=None, **extra):
    a = {"labels": dict({"alertname": name, "service": service, "instance": instance}, **extra),
         "annotations": {"summary": "%s on %s/%s" % (name, service, instance)},
         "startsAt": rfc3339(starts)}
    if ends is not None:
        a["endsAt"] = rfc3339(ends)
    return a


def metric(d, name, labels=INSTANCE):
    st, raw, _ = d.request("GET", "/metrics")
    for line in raw.decode().splitlines():
        if line.startswith("sentinel_%s{%s}" % (name, labels)) or \
                (not labels and line.startswith("sentinel_%s " % name)):
            return float(line.split()[-1])
    return 0.0


def incidents_of(d, service):
    return [i for i in d.incidents() if service in (i.get("services") or [])]


def doc(d, inc):
    st, body = d.json("GET", "/v1/incidents/" + inc["id"])
    if st != 200:
        fail("GET incident answered %d" % st)
    return body


def fingerprints(document):
    return [a.get("fingerprint") for a in document.get("anomalies", [])]


if not os.access(AM_BIN, os.X_OK):
    print("SKIP: %s not installed" % AM_BIN)
    sys.exit(0)

os.environ["SN_AM_TOKEN"] = TOKEN
# Alerts skip the detectors: am -> correlate. A medium-risk runbook rule for them keeps their
# incidents open (waiting for approval) until Alertmanager says the alerts resolved.
conf = BASE_CONF.replace("[pipeline]\n", "[input:am]\nplugin = alertmanager\n"
                         "token = ${{env:SN_AM_TOKEN}}\nmax_alerts = 100\n\n"
                         "[pipeline]\nedge = am -> correlate\n")
conf = conf.replace("[analyzer:runbook]\nplugin = runbook\n",
                    "[analyzer:runbook]\nplugin = runbook\nrule = cause~anomaly -> "
                    "mock:scale_deployment deployment/shop/{{service}} replicas=6\n")
d = Daemon(conf=conf).start()
ams = []
try:
    hook = "http://127.0.0.1:%d/hooks/am/webhook" % d.port

    # The route refuses a caller without the token, and a payload of another version.
    st, raw, _ = d.request("POST", "/hooks/am/webhook", '{"version":"4","alerts":[]}')
    check(st == 401, "the webhook refuses a caller without the bearer token (%d)" % st)
    st, raw, _ = d.request("POST", "/hooks/am/", '{"version":"3","alerts":[]}', key=TOKEN)
    check(st == 400 and b"version" in raw, "and names 'version' for a payload of version 3")

    # 1. One Alertmanager: two groups (alertname+service) -> two incidents. The core folds
    #    anomalies of any service that start within correlate_window (300 s) of each other
    #    while an incident gathers into one incident (a cascade), so the groups start apart.
    am = Alertmanager(hook).start()
    ams.append(am)
    t0 = time.time() - 5
    firing = [alert("HighLatency", "checkout", "web-1", t0),
              alert("HighLatency", "checkout", "web-2", t0),
              alert("DiskFull", "billing", "db-1", t0 - 1200, severity="page")]
    am.push(firing)
    checkout = d.wait_for(lambda: [i for i in incidents_of(d, "checkout")
                                   if i["state"] != "gathering"], what="the checkout incident")
    billing = d.wait_for(lambda: [i for i in incidents_of(d, "billing")
                                  if i["state"] != "gathering"], what="the billing incident")
    check(len(checkout) == 1 and len(billing) == 1 and len(d.incidents()) == 2,
          "two alert groups open two incidents (%d)" % len(d.incidents()))
    c_doc, b_doc = doc(d, checkout[0]), doc(d, billing[0])
    check(len(c_doc["anomalies"]) == 2 and len(set(fingerprints(c_doc))) == 2,
          "the checkout incident holds its two alerts, one anomaly each (%s)"
          % fingerprints(c_doc))
    check(len(b_doc["anomalies"]) == 1, "the billing incident holds its one alert")
    check(all(len(fp or "") == 16 for fp in fingerprints(c_doc) + fingerprints(b_doc)),
          "anomalies carry Alertmanager's fingerprints")

    # 2. Repeats every repeat_interval (2 s): delivered, yet no anomaly is added.
    p0 = metric(d, "input_alertmanager_payloads_200_total")
    time.sleep(6)
    p1 = metric(d, "input_alertmanager_payloads_200_total")
    check(p1 >= p0 + 2, "Alertmanager repeats the notifications (%d -> %d payloads)" % (p0, p1))
    c_doc, b_doc = doc(d, checkout[0]), doc(d, billing[0])
    check(len(c_doc["anomalies"]) == 2 and len(b_doc["anomalies"]) == 1
          and len(d.incidents()) == 2,
          "repeats are deduplicated: anomaly counts stay 2 and 1, still two incidents")
    check(metric(d, "anomalies_suppressed_total", 'reason="repeat"') >= 3,
          "the core counts the repeats as suppressed (%d)"
          % metric(d, "anomalies_suppressed_total", 'reason="repeat"'))
    check(metric(d, "input_alertmanager_alerts_firing_total") >= 6,
          "the repeated alerts were received (%d firing)"
          % metric(d, "input_alertmanager_alerts_firing_total"))

    # 3. Resolution at the source: the same alerts with endsAt in the past.
    t1 = time.time() - 1
    am.push([dict(a, endsAt=rfc3339(t1)) for a in firing])
    d.wait_for(lambda: all(i["state"] == "resolved" for i in incidents_of(d, "checkout")
                           + incidents_of(d, "billing")),
               what="both incidents to resolve")
    check(True, "resolving the alerts in Alertmanager resolves both incidents")
    check(metric(d, "input_alertmanager_alerts_resolved_total") >= 3,
          "resolved alerts were received (%d)"
          % metric(d, "input_alertmanager_alerts_resolved_total"))
    am.stop()
    ams.remove(am)

    # 4. HA: two clustered Alertmanagers, both sending to Sentinel, fed the same alerts.
    c1, c2 = free_port(), free_port()
    am1 = Alertmanager(hook, cluster_port=c1, peers=[c2])
    am2 = Alertmanager(hook, cluster_port=c2, peers=[c1])
    ams += [am1, am2]
    am1.start()
    am2.start()
    deadline = time.time() + 20
    while time.time() < deadline and (am1.peers() < 2 or am2.peers() < 2):
        time.sleep(0.2)
    check(am1.peers() == 2 and am2.peers() == 2, "the two Alertmanagers form a cluster")
    before = metric(d, "input_alertmanager_payloads_200_total")
    t2 = time.time() - 2
    ha = [alert("ErrorRate", "search", "api-1", t2), alert("ErrorRate", "search", "api-2", t2)]
    am1.push(ha)
    am2.push(ha)
    search = d.wait_for(lambda: [i for i in incidents_of(d, "search")
                                 if i["state"] != "gathering"], what="the search incident")
    time.sleep(5)  # repeats, and whatever duplicates the pair sends
    delivered = metric(d, "input_alertmanager_payloads_200_total") - before
    s_doc = doc(d, search[0])
    fps = fingerprints(s_doc)
    check(len(incidents_of(d, "search")) == 1,
          "the HA pair's alerts open one incident (%d notifications delivered)" % delivered)
    check(len(fps) == 2 and len(set(fps)) == 2,
          "with one anomaly per alert fingerprint (%s)" % fps)
    sent1, sent2 = am1.sent(), am2.sent()
    # Gossip every 3 s with a 10 ms peer timeout: the second peer sends before it hears of the
    # first one's notification, the HA duplicate Sentinel has to absorb.
    check(sent1 >= 1 and sent2 >= 1,
          "both peers delivered the group: duplicates reached Sentinel (%d + %d)"
          % (sent1, sent2))
    t3 = time.time() - 1
    resolved = [dict(a, endsAt=rfc3339(t3)) for a in ha]
    am1.push(resolved)
    am2.push(resolved)
    d.wait_for(lambda: all(i["state"] == "resolved" for i in incidents_of(d, "search")),
               what="the search incident to resolve")
    check(True, "resolving through the HA pair resolves the incident")
    print("info: HA pair delivered %d firing notifications for one group (%d + %d by each "
          "peer)" % (delivered, sent1, sent2))
finally:
    for a in ams:
        a.stop()
    d.cleanup()
