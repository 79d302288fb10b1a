"""A tiny W3C WebDriver client over urllib, enough to drive headless Chromium through
chromedriver in the console test: session, navigation, CSS lookups, text, clicks, keys, scripts,
browser logs. Standard library only."""
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element identifier key


class WebDriverError(Exception):
    def __init__(self, status, error, message):
        super().__init__("%s (%s): %s" % (error, status, message))
        self.status = status
        self.error = error


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Element:
    def __init__(self, driver, eid):
        self.d = driver
        self.id = eid

    def _p(self, suffix=""):
        return "/element/%s%s" % (self.id, suffix)

    @property
    def text(self):
        return self.d.cmd("GET", self._p("/text"))

    def click(self):
        self.d.cmd("POST", self._p("/click"), {})

    def clear(self):
        self.d.cmd("POST", self._p("/clear"), {})

    def send_keys(self, text):
        self.d.cmd("POST", self._p("/value"), {"text": text})

    def attribute(self, name):
        return self.d.cmd("GET", self._p("/attribute/" + name))

    def prop(self, name):
        return self.d.cmd("GET", self._p("/property/" + name))

    def enabled(self):
        return self.d.cmd("GET", self._p("/enabled"))

    def find(self, css):
        return Element(self.d, self.d.cmd("POST", self._p("/element"),
                                          {"using": "css selector", "value": css})[ELEMENT])

    def find_all(self, css):
        return [Element(self.d, e[ELEMENT]) for e in
                self.d.cmd("POST", self._p("/elements"), {"using": "css selector", "value": css})]


class Chrome:
    """chromedriver on a free loopback port plus one headless Chromium session."""

    def __init__(self, chromium="/usr/bin/chromium", chromedriver="/usr/bin/chromedriver",
                 logs=True):
        self.port = _free_port()
        self.profile = tempfile.mkdtemp(prefix="sn-chrome-")
        self.log = open(os.path.join(self.profile, "chromedriver.log"), "wb")
        self.proc = subprocess.Popen([chromedriver, "--port=%d" % self.port],
                                     stdout=self.log, stderr=self.log)
        self.base = "http://127.0.0.1:%d" % self.port
        self.session = None
        deadline = time.time() + 15
        while True:
            try:
                if self._http("GET", "/status").get("value", {}).get("ready"):
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.quit()
                raise RuntimeError("chromedriver did not become ready")
            time.sleep(0.05)
        opts = {"binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--user-data-dir=" + self.profile,
                         "--no-first-run", "--no-default-browser-check",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--window-size=1280,1000"]}
        caps = {"browserName": "chrome", "goog:chromeOptions": opts}
        if logs:
            caps["goog:loggingPrefs"] = {"browser": "ALL"}
        try:
            r = self._http("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        except Exception:
            self.quit()
            raise
        self.session = r["value"]["sessionId"]

    # ---- transport ----

    def _http(self, method, path, body=None, timeout=60):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json; charset=utf-8")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                v = json.loads(raw).get("value", {})
            except ValueError:
                v = {"error": "http %d" % e.code, "message": raw.decode("utf-8", "replace")}
            raise WebDriverError(e.code, v.get("error"), v.get("message", "")[:500])

    def cmd(self, method, path, body=None):
        return self._http(method, "/session/%s%s" % (self.session, path), body).get("value")

    # ---- commands ----

    def get(self, url):
        self.cmd("POST", "/url", {"url": url})

    @property
    def url(self):
        return self.cmd("GET", "/url")

    def find(self, css):
        return Element(self, self.cmd("POST", "/element",
                                      {"using": "css selector", "value": css})[ELEMENT])

    def find_all(self, css):
        return [Element(self, e[ELEMENT]) for e in
                self.cmd("POST", "/elements", {"using": "css selector", "value": css})]

    def execute(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, path):
        """Saves a PNG of the viewport (for debugging a failing test)."""
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.cmd("GET", "/screenshot")))

    def browser_log(self):
        """The browser console entries since the last call, or None if not exposed."""
        for path in ("/se/log", "/log"):
            try:
                return self.cmd("POST", path, {"type": "browser"})
            except WebDriverError:
                continue
        return None

    def wait(self, pred, timeout=15, what="condition", interval=0.1):
        """Polls @p pred until it returns a true value; stale lookups count as not yet."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                v = pred()
                if v:
                    return v
            except WebDriverError as e:
                last = e
            time.sleep(interval)
        raise TimeoutError("timed out waiting for %s%s" % (what, " (%s)" % last if last else ""))

    def quit(self):
        if self.session:
            try:
                self._http("DELETE", "/session/" + self.session, timeout=20)
            except (OSError, WebDriverError):
                pass
            self.session = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if os.environ.get("SN_KEEP") is None:
            shutil.rmtree(self.profile, ignore_errors=True)
