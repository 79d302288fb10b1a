"""Shared helpers for the end-to-end tests: run a real sentineld from the build tree on a
config written into a temp dir, talk to its HTTP API with the standard library only."""
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BUILD = os.environ.get("SN_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE = os.environ.get("SN_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
SENTINELD = os.path.join(BUILD, "core", "sentineld")
SENTINELCTL = os.path.join(BUILD, "tools", "sentinelctl", "sentinelctl")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok - " + msg)


BASE_CONF = """
[sentinel]
listen = 127.0.0.1:{port}
state = local
vector = local
embedder = hashing
group_wait = 60
group_wait_wall = 2
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
rule = cause~memory -> mock:scale_deployment deployment/shop/{{service}} replicas=6

[executor:mock]
plugin = mock
allow = deployment/shop/*, pod/shop/*
journal = {dir}/journal.jsonl
max_per_hour = 60
max_per_minute = 60
{extra_mock}

[notifier:log]
plugin = log

[pipeline]
edge = events -> latency
edge = latency -> correlate
edge = correlate -> rca -> runbook -> approve -> mock -> verify
edge = approve -> escalate [on=rejected]
edge = verify -> rca [on=failed max=2]
edge = verify -> resolve [on=ok]
"""


def wait_until(pred, timeout, what, daemons=()):
    """pred()'s first true value within @timeout seconds; else fail with the logs of
    @daemons (one daemon or a sequence of them)."""
    if hasattr(daemons, "logtext"):
        daemons = [daemons]
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    fail("timed out waiting for %s\n%s" % (what, "\n".join(d.logtext() for d in daemons)))


class Daemon:
    def __init__(self, extra_core="", extra_mock="", conf=None, keep_dir=None):
        self.dir = keep_dir or tempfile.mkdtemp(prefix="sn-e2e-")
        self.port = free_port()
        self.conf_path = os.path.join(self.dir, "sentinel.conf")
        text = conf if conf is not None else BASE_CONF
        with open(self.conf_path, "w") as f:
            f.write(text.format(port=self.port, dir=self.dir, extra_core=extra_core,
                                extra_mock=extra_mock))
        self.proc = None
        self.key = None

    def start(self, wait=True):
        self.log = open(os.path.join(self.dir, "sentineld.log"), "ab")
        self.proc = subprocess.Popen([SENTINELD, "-c", self.conf_path], stderr=self.log,
                                     stdout=self.log)
        if wait:
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    if self.request("GET", "/health")[0] == 200:
                        return self
                except OSError:
                    pass
                if self.proc.poll() is not None:
                    fail("sentineld exited early:\n" + self.logtext())
                time.sleep(0.05)
            fail("sentineld did not answer /health")
        return self

    def logtext(self):
        with open(os.path.join(self.dir, "sentineld.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    def request(self, method, path, body=None, key=None, headers=None):
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data,
                                     method=method)
        k = key if key is not None else self.key
        if k:
            req.add_header("Authorization", "Bearer " + k)
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, raw, dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def json(self, method, path, body=None, key=None):
        st, raw, _ = self.request(method, path, body, key)
        try:
            return st, json.loads(raw) if raw else None
        except ValueError:
            return st, raw

    def post_file(self, path, chunk=2000):
        with open(path) as f:
            lines = f.readlines()
        for i in range(0, len(lines), chunk):
            st, body = self.json("POST", "/v1/events", "".join(lines[i:i + chunk]))
            if st != 200:
                fail("ingest answered %d: %r" % (st, body))

    def incidents(self, state=None):
        st, body = self.json("GET", "/v1/incidents" + ("?state=" + state if state else ""))
        if st != 200:
            fail("GET /v1/incidents answered %d" % st)
        return body["incidents"]

    def wait_for(self, pred, timeout=30, what="condition"):
        return wait_until(pred, timeout, what, [self])

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                fail("sentineld did not drain within 15 s")
            return rc
        return self.proc.returncode if self.proc else None

    def cleanup(self):
        self.stop()
        if os.environ.get("SN_KEEP") is None:
            shutil.rmtree(self.dir, ignore_errors=True)


def deploy_spike_lines(i, t0):
    """Ingest lines for one incident of svc<i> (an hour after @t0 per i): a smooth baseline,
    a deploy, a six-point latency spike, then normal traffic again."""
    svc = "svc%02d" % i
    base = t0 + i * 3600 * 1000
    out = []
    for k in range(100):
        ts = base + k * 10000
        if k == 60:
            out.append({"ts": ts, "change": "deploy", "labels": {"service": svc,
                                                                 "version": "v2.%d" % i}})
        wave = math.sin(k * 0.7)
        lat = (900 + 20 * wave) if 66 <= k < 72 else (100 + 3 * wave)
        out.append({"ts": ts, "metric": "http_p99_latency_ms", "value": round(lat, 2),
                    "labels": {"env": "prod", "service": svc}})
    return "".join(json.dumps(x) + "\n" for x in out)


def scenario(name):
    return os.path.join(SOURCE, "etc", "scenarios", name + ".jsonl")


def journal(d):
    path = os.path.join(d.dir, "journal.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]
