#!/usr/bin/env python3
"""A throwaway ClickHouse server for tests: Debian's clickhouse-server (18.16) with a minimal
config.xml/users.xml in a temp dir, listening on free loopback ports; ready when /ping answers.

As a module:
    srv = ChServer().start()        # srv.url, srv.http_port, srv.query("SELECT 1")
    srv.stop(); srv.start()         # same ports, same data: a restart
    srv.cleanup()                   # stop and remove the directory

As a command (for the C suites, which shell out to it):
    chserver.py start DIR           # prints {"url": ..., "http_port": ..., "pid": ...}
    chserver.py stop DIR [--kill]   # SIGTERM (or SIGKILL) and wait
    chserver.py query DIR SQL       # prints the answer (exit 1 on a non-200 answer)
    chserver.py cleanup DIR         # stop and remove DIR

Users: `default` (no password), `sentinel` (password PASSWORD below) and `reader` (read-only),
all from loopback only. Standard library only.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

BINARY = os.environ.get("CLICKHOUSE_SERVER", "/usr/sbin/clickhouse-server")
PASSWORD = "sentinel-test-pw"

CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>{dir}/log/server.log</log>
    <errorlog>{dir}/log/error.log</errorlog>
    <size>10M</size>
    <count>1</count>
  </logger>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <user_files_path>{dir}/user_files/</user_files_path>
  <users_config>{dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <max_concurrent_queries>64</max_concurrent_queries>
  <keep_alive_timeout>1</keep_alive_timeout>
</yandex>
"""

USERS = """<?xml version="1.0"?>
<yandex>
  <profiles>
    <default><max_memory_usage>1000000000</max_memory_usage></default>
    <readonly><readonly>1</readonly></readonly>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile><quota>default</quota>
    </default>
    <sentinel>
      <password>{password}</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile><quota>default</quota>
    </sentinel>
    <reader>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>readonly</profile><quota>default</quota>
    </reader>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
"""


def available():
    return os.access(BINARY, os.X_OK)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ChServer:
    """One server in @dir (created when None). Ports are chosen once and kept in ports.json, so
    a stop/start cycle (or another process running the CLI on the same dir) reuses them."""

    def __init__(self, dir=None):
        self.dir = dir or tempfile.mkdtemp(prefix="sn-ch-")
        os.makedirs(self.dir, exist_ok=True)
        ports = os.path.join(self.dir, "ports.json")
        if os.path.exists(ports):
            with open(ports) as f:
                p = json.load(f)
        else:
            p = {"http_port": free_port(), "tcp_port": free_port()}
            with open(ports, "w") as f:
                json.dump(p, f)
        self.http_port = p["http_port"]
        self.tcp_port = p["tcp_port"]
        self.url = "http://127.0.0.1:%d" % self.http_port
        for sub in ("data", "tmp", "user_files", "log"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        with open(os.path.join(self.dir, "config.xml"), "w") as f:
            f.write(CONFIG.format(dir=self.dir, http_port=self.http_port, tcp_port=self.tcp_port))
        with open(os.path.join(self.dir, "users.xml"), "w") as f:
            f.write(USERS.format(password=PASSWORD))

    # ---- process ----

    def pid(self):
        try:
            with open(os.path.join(self.dir, "pid")) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def ping(self, timeout=1.0):
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=timeout) as r:
                return r.status == 200 and r.read().startswith(b"Ok.")
        except (OSError, urllib.error.URLError):
            return False

    def start(self, timeout=60):
        if self.pid():
            return self
        out = open(os.path.join(self.dir, "log", "stdout.log"), "ab")
        proc = subprocess.Popen([BINARY, "--config-file=" + os.path.join(self.dir, "config.xml")],
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                cwd=self.dir, start_new_session=True)
        out.close()
        with open(os.path.join(self.dir, "pid"), "w") as f:
            f.write(str(proc.pid))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.ping():
                return self
            if proc.poll() is not None:
                raise RuntimeError("clickhouse-server exited (%s):\n%s" % (proc.returncode,
                                                                           self.logtext()))
            time.sleep(0.1)
        raise RuntimeError("clickhouse-server did not answer /ping:\n" + self.logtext())

    def stop(self, kill=False, timeout=30):
        pid = self.pid()
        if not pid:
            return
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                # Our own child (module use) must be reaped; a CLI-started one is not ours.
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
        try:
            os.unlink(os.path.join(self.dir, "pid"))
        except OSError:
            pass
        # The port must be free before a restart can bind it again.
        deadline = time.time() + 10
        while time.time() < deadline and self.ping(0.2):
            time.sleep(0.05)

    def cleanup(self):
        self.stop(kill=True)
        if os.environ.get("SN_KEEP") is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def logtext(self):
        text = ""
        for name in ("stdout.log", "error.log"):
            try:
                with open(os.path.join(self.dir, "log", name), "rb") as f:
                    text += f.read().decode("utf-8", "replace")[-3000:]
            except OSError:
                pass
        return text

    # ---- queries ----

    def query(self, sql, body=None, user=None, password=None, params=None):
        """POST @sql (with @body after it when given). Returns (status, bytes)."""
        q = {"query": sql}
        q.update(params or {})
        data = body if body is not None else b""
        req = urllib.request.Request(self.url + "/?" + urllib.parse.urlencode(q), data=data,
                                     method="POST")
        if user:
            req.add_header("X-ClickHouse-User", user)
        if password:
            req.add_header("X-ClickHouse-Key", password)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def scalar(self, sql):
        st, out = self.query(sql)
        if st != 200:
            raise RuntimeError("%s: %d %s" % (sql, st, out.decode("utf-8", "replace")))
        return out.decode().strip()


def main(argv):
    if len(argv) < 3 or argv[1] not in ("start", "stop", "query", "cleanup"):
        print(__doc__, file=sys.stderr)
        return 2
    srv = ChServer(argv[2])
    if argv[1] == "start":
        srv.start()
        print(json.dumps({"url": srv.url, "http_port": srv.http_port, "pid": srv.pid()}))
    elif argv[1] == "stop":
        srv.stop(kill="--kill" in argv[3:])
    elif argv[1] == "query":
        st, out = srv.query(argv[3])
        sys.stdout.write(out.decode("utf-8", "replace"))
        return 0 if st == 200 else 1
    else:
        srv.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
