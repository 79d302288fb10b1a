"""The durable outbox on a real sentineld with the webhook notifier: a receiver that is down gets
every notification once it is back, even across a kill -9 of the daemon (the outbox lives in the
state store); a receiver that never answers ends in the dead-letter list, visible in the API and
in /metrics; nothing is delivered twice."""
import http.server
import json
import os
import socket
import sqlite3
import threading
import time

from sntest import BASE_CONF, Daemon, check, free_port, scenario


class Receiver:
    """A webhook receiver that can be switched off (connection refused) and on."""

    def __init__(self, port):
        self.port = port
        self.got = []
        self.server = None

    def start(self):
        got = self.got

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                got.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def conf(port, retries):
    text = BASE_CONF.replace("[notifier:log]\nplugin = log\n",
                             "[notifier:log]\nplugin = log\n\n[notifier:hook]\nplugin = webhook\n"
                             "url = http://127.0.0.1:%d/hook\nmax_retries = 0\n"
                             "retry_base = 10ms\ntimeout = 2s\n" % port)
    return text.replace("group_wait_wall = 2", "group_wait_wall = 2\nnotify_backoff = 200ms\n"
                        "notify_retries = %d" % retries)


def closed_in_store(d):
    """The closing checkpoint is in the store: a restart will not re-run the close (which
    would rightly notify again)."""
    db = sqlite3.connect(os.path.join(d.dir, "sentinel.db"))
    try:
        return db.execute("SELECT count(*) FROM checkpoints WHERE id NOT LIKE 'outbox/%' "
                          "AND open = 1").fetchone()[0] == 0
    finally:
        db.close()


def hook_pending(d):
    got = d.json("GET", "/v1/notifications?state=pending")[1]["notifications"]
    return [n for n in got if n["notifier"] == "hook"]


def metric(d, name):
    st, raw, _ = d.request("GET", "/metrics")
    for line in raw.decode().splitlines():
        if line.split(" ")[0] == "sentinel_" + name:
            return float(line.split()[-1])
    return 0.0


# 1. Receiver down, daemon killed, both come back: everything arrives, once.
port = free_port()
rx = Receiver(port)
d = Daemon(conf=conf(port, 50)).start()
try:
    d.post_file(scenario("checkout-deploy"))
    d.wait_for(lambda: [i for i in d.incidents() if i["state"] == "resolved"],
               what="the incident to resolve")
    pending = d.wait_for(lambda: (lambda p: p if len(p) >= 3 else None)(hook_pending(d)),
                         what="the webhook's notifications to wait for the receiver")
    check(len(pending) >= 3, "with the receiver down, %d notifications wait in the outbox"
          % len(pending))
    check(metric(d, "outbox_pending") >= len(pending), "/metrics shows them pending")
    events = sorted(n["event"] for n in pending)
    d.wait_for(lambda: closed_in_store(d), what="the closed incident to be checkpointed")
    d.kill9()
    rx.start()
    d.start()
    d.wait_for(lambda: len(rx.got) >= len(events), timeout=30,
               what="the outbox to deliver after the restart")
    time.sleep(1.0)
    got = sorted(b["event"] for b in rx.got)
    check(got == events, "every notification arrived once after kill -9: %s" % got)
    check(d.json("GET", "/v1/notifications?state=pending")[1]["notifications"] == [],
          "nothing is left pending")
finally:
    rx.stop()
    d.cleanup()

# 2. A receiver that never comes back: dead after notify_retries, listed and counted.
port = free_port()
d = Daemon(conf=conf(port, 2)).start()
try:
    d.post_file(scenario("checkout-deploy"))
    dead = d.wait_for(lambda: d.json("GET", "/v1/notifications?state=dead")[1]["notifications"],
                      timeout=30, what="a dead notification")
    check(dead[0]["attempts"] == 2 and "gave up" in dead[0]["error"],
          "dead after 2 attempts: %s" % dead[0]["error"])
    check(metric(d, "outbox_dead") >= 1, "/metrics counts the dead letters")
    check("is dead" in d.logtext(), "the log says which notification died and where to look")
    st, _ = d.json("GET", "/v1/notifications?state=bogus")
    check(st == 400, "a bad state filter is refused")
finally:
    d.cleanup()

# 3. Two instances sharing one state store resume the same pending entries: each goes out once.
port = free_port()
rx = Receiver(port)
base = conf(port, 50)
a = Daemon(conf=base.replace("[sentinel]", "[sentinel]\ninstance_id = first")).start()
b = None
try:
    a.post_file(scenario("checkout-deploy"))
    a.wait_for(lambda: [i for i in a.incidents() if i["state"] == "resolved"],
               what="the incident to resolve")
    pending = a.wait_for(lambda: (lambda p: p if len(p) >= 3 else None)(hook_pending(a)),
                         what="pending notifications")
    a.wait_for(lambda: closed_in_store(a), what="the closed incident to be checkpointed")
    a.kill9()
    b = Daemon(conf=base.replace("[sentinel]", "[sentinel]\ninstance_id = second")
               .replace("{dir}/sentinel.db", a.dir + "/sentinel.db"))
    rx.start()
    a.start()
    b.start()
    a.wait_for(lambda: len(rx.got) >= len(pending), timeout=40, what="delivery by either instance")
    time.sleep(3)
    got = sorted(x["event"] for x in rx.got)
    check(got == sorted(n["event"] for n in pending),
          "two instances on one store deliver each notification once: %s" % got)
finally:
    rx.stop()
    if b:
        b.cleanup()
    a.cleanup()
