#!/usr/bin/env python3
"""Throwaway PostgreSQL 15 clusters for tests.

A cluster lives in a fresh temp dir (data/, the socket, the server log), listens on a free
loopback port, accepts password (SCRAM) logins over TCP and trusts the local socket. It holds a
database `sentinel` owned by a plain (non-superuser) role `sentinel` (CREATEDB, so a suite can
make a database per test) whose random password is in DIR/server.json; a second plain role,
`sentinel_app`, has the same password (least-privilege tests grant it rights). So tests exercise
the same privileges and secret handling as production.

As root (the test machines) every server command runs as the `postgres` user through runuser.

Library use:

    from pgserver import PgServer
    with PgServer() as pg:
        pg.dsn            # "host=127.0.0.1 port=N dbname=sentinel user=sentinel" (no password)
        pg.password       # the role's password (hand it over through ${env:...})
        pg.psql("SELECT 1")   -> (returncode, stdout, stderr) of a plain psql session
        pg.restart(down_s=0.5)

Command line (for the C suites):

    pgserver.py start [--watch-pid PID]   prints one JSON line {"dir","port","dsn","password"};
                                          with --watch-pid the cluster is stopped and removed
                                          once that process exits (a crashed test leaks nothing);
                                          exits 77 when no PostgreSQL binaries are installed
    pgserver.py restart DIR [--down S]    fast shutdown, S seconds down, start again (same port)
    pgserver.py stop DIR                  stop and remove
"""
import glob
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def _bindir():
    env = os.environ.get("SN_PG_BIN")
    if env:
        return env
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(cand, "pg_ctl")):
            return cand
    return os.path.dirname(shutil.which("pg_ctl") or "/usr/bin/pg_ctl")


BIN = _bindir()


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _as_pg(args, **kw):
    """Run a server binary as the postgres user (root cannot run PostgreSQL)."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


class PgServer:
    def __init__(self, dir=None):
        """Attach to the cluster in @dir (started earlier), or prepare a new one."""
        self.dir = dir
        self.port = None
        self.password = None
        if dir:
            with open(os.path.join(dir, "server.json")) as f:
                info = json.load(f)
            self.port = info["port"]
            self.password = info["password"]

    # ---- paths and connection strings ----
    @property
    def data(self):
        return os.path.join(self.dir, "data")

    @property
    def dsn(self):
        return "host=127.0.0.1 port=%d dbname=sentinel user=sentinel connect_timeout=5" % self.port

    def _ctl(self, *args, timeout=60):
        r = _as_pg([os.path.join(BIN, "pg_ctl"), "-D", self.data] + list(args), timeout=timeout)
        return r

    # ---- lifecycle ----
    def start(self):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="sn-pg-")
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.port = _free_port()
        self.password = secrets.token_hex(16)
        su_pw = secrets.token_hex(16)
        pwfile = os.path.join(self.dir, "supw")
        with open(pwfile, "w") as f:
            f.write(su_pw + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        r = _as_pg([os.path.join(BIN, "initdb"), "-D", self.data, "-U", "postgres", "--pwfile",
                    pwfile, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                    "--locale=C", "--no-sync"], timeout=120)
        os.unlink(pwfile)
        if r.returncode != 0:
            raise RuntimeError("initdb failed: " + r.stderr)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\nlisten_addresses = '127.0.0.1'\nport = %d\n"
                    "unix_socket_directories = '%s'\nfsync = off\nfull_page_writes = off\n"
                    "shared_buffers = 16MB\nmax_connections = 60\nlog_min_messages = warning\n"
                    "logging_collector = off\n" % (self.port, self.dir))
        with open(os.path.join(self.dir, "server.json"), "w") as f:
            json.dump({"port": self.port, "password": self.password}, f)
        os.chmod(os.path.join(self.dir, "server.json"), 0o600)
        try:
            self._start_server()
            for sql in ("CREATE ROLE sentinel LOGIN CREATEDB PASSWORD '%s'" % self.password,
                        "CREATE ROLE sentinel_app LOGIN PASSWORD '%s'" % self.password,
                        "CREATE DATABASE sentinel OWNER sentinel"):
                rc, out, err = self.psql_admin(sql, db="postgres")
                if rc != 0:
                    raise RuntimeError("cannot create the role/database: " + err)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_server(self):
        r = self._ctl("-l", os.path.join(self.dir, "server.log"), "-w", "-t", "60", "start")
        if r.returncode != 0:
            raise RuntimeError("pg_ctl start failed: %s %s\n%s" % (r.stdout, r.stderr,
                                                                   self.logtext()))
        self.wait_ready()

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = _as_pg([os.path.join(BIN, "pg_isready"), "-h", "127.0.0.1", "-p",
                        str(self.port), "-t", "2"])
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("server not ready after %d s" % timeout)

    def restart(self, down_s=0.0):
        """Fast shutdown (terminates every session), stay down @down_s seconds, start again."""
        r = self._ctl("-m", "fast", "-w", "stop")
        if r.returncode != 0:
            raise RuntimeError("pg_ctl stop failed: " + r.stderr)
        if down_s > 0:
            time.sleep(down_s)
        self._start_server()

    def pause(self):
        """Freeze every server process (SIGSTOP): connections hang instead of failing."""
        self._signal("STOP")

    def resume(self):
        self._signal("CONT")

    def _signal(self, sig):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            pm = int(f.readline())
        pids = [pm]
        r = subprocess.run(["pgrep", "-P", str(pm)], stdout=subprocess.PIPE, text=True)
        pids += [int(p) for p in r.stdout.split()]
        for p in pids:
            try:
                os.kill(p, getattr(__import__("signal"), "SIG" + sig))
            except ProcessLookupError:
                pass

    def stop(self, remove=True):
        if self.dir and os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._ctl("-m", "immediate", "-w", "stop")
        if remove and self.dir and os.environ.get("SN_KEEP") is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def logtext(self):
        try:
            with open(os.path.join(self.dir, "server.log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    # ---- sessions ----
    def psql(self, sql, db="sentinel", user="sentinel"):
        """A plain psql session as the application role over TCP."""
        env = dict(os.environ, PGPASSWORD=self.password, PGCONNECT_TIMEOUT="5")
        r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", user, "-d", db, "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                           timeout=60)
        return r.returncode, r.stdout.strip(), r.stderr.strip()

    def psql_admin(self, sql, db="sentinel"):
        """A superuser session over the (trusted) local socket."""
        r = _as_pg([os.path.join(BIN, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h",
                    self.dir, "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql],
                   timeout=60)
        return r.returncode, r.stdout.strip(), r.stderr.strip()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _watch(pid, dir):
    """Detached: stop and remove the cluster once @pid is gone."""
    if os.fork() != 0:
        return
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            pass
        if not os.path.exists(dir):
            os._exit(0)
        time.sleep(0.5)
    PgServer(dir).stop()
    os._exit(0)


def main(argv):
    if len(argv) >= 1 and argv[0] == "start":
        if not os.path.exists(os.path.join(BIN, "initdb")):
            print("PostgreSQL server binaries not found (set SN_PG_BIN)", file=sys.stderr)
            return 77  # the conventional "skipped" code
        pg = PgServer().start()
        if "--watch-pid" in argv:
            _watch(int(argv[argv.index("--watch-pid") + 1]), pg.dir)
        print(json.dumps({"dir": pg.dir, "port": pg.port, "dsn": pg.dsn,
                          "password": pg.password}), flush=True)
        return 0
    if len(argv) >= 2 and argv[0] == "restart":
        down = float(argv[argv.index("--down") + 1]) if "--down" in argv else 0.0
        PgServer(argv[1]).restart(down)
        return 0
    if len(argv) >= 2 and argv[0] in ("pause", "resume"):
        getattr(PgServer(argv[1]), argv[0])()
        return 0
    if len(argv) >= 2 and argv[0] == "stop":
        PgServer(argv[1]).stop()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
