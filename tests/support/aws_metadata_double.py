#!/usr/bin/env python3
"""Test double of the AWS credential endpoints the `aws` executor's credential chain asks:

  - the container credentials endpoint (ECS/EKS): GET any path (AWS_CONTAINER_CREDENTIALS_
    FULL_URI points here), answered with {"AccessKeyId","SecretAccessKey","Token",
    "Expiration","RoleArn"}; with an auth token configured the request must carry
    `Authorization: <token>`, else 401;
  - the EC2 instance metadata service, IMDSv2 only: PUT /latest/api/token with
    X-aws-ec2-metadata-token-ttl-seconds returns a token; GET
    /latest/meta-data/iam/security-credentials/ (the role) and .../<role> (the keys) need
    X-aws-ec2-metadata-token, else 401.

The credentials it hands out are read from a JSON file ({"access_key","secret_key","token",
"expiration"}) on every request, so a test can rotate them. Every request is recorded (method,
path, whether the expected headers were present) and served at GET /_double/requests;
POST /_double/reset forgets them. Standard library only.

As a module:   d = MetadataDouble(creds_path, auth="tok").start(); d.url; d.requests(); d.stop()
As a command:  aws_metadata_double.py start DIR [AUTH]   # creds from DIR/creds.json; prints
                                                         # DIR/double.json {"url","pid"}
               aws_metadata_double.py stop DIR
"""
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

ROLE = "sentinel-executor"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class MetadataDouble:
    def __init__(self, creds_path, auth=None, port=None):
        self.creds_path = creds_path
        self.auth = auth
        self.port = port or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.log = []
        self.tokens = set()
        double = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, body, ctype="application/json"):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                if self.path == "/_double/requests":
                    with double.lock:
                        return self.reply(200, json.dumps(double.log))
                if self.path == "/_double/reset":
                    with double.lock:
                        double.log = []
                    return self.reply(200, "{}")
                rec = {"method": self.command, "path": self.path,
                       "ttl": self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"),
                       "has_token": bool(self.headers.get("X-aws-ec2-metadata-token")),
                       "authorized": self.headers.get("Authorization") == double.auth}
                with double.lock:
                    double.log.append(rec)
                status, body, ctype = double.answer(self.command, self.path, self.headers)
                rec["status"] = status
                self.reply(status, body, ctype)

            do_GET = do_PUT = do_POST = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def creds(self):
        with open(self.creds_path) as f:
            return json.load(f)

    def answer(self, method, path, headers):
        if path.startswith("/latest/"):
            if method == "PUT" and path == "/latest/api/token":
                if not headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return 400, "missing ttl", "text/plain"
                tok = "imds-token-%d" % (len(self.tokens) + 1)
                self.tokens.add(tok)
                return 200, tok, "text/plain"
            if headers.get("X-aws-ec2-metadata-token") not in self.tokens:
                return 401, "", "text/plain"
            base = "/latest/meta-data/iam/security-credentials/"
            if path == base:
                return 200, ROLE + "\n", "text/plain"
            if path == base + ROLE:
                c = self.creds()
                return 200, json.dumps({
                    "Code": "Success", "LastUpdated": "2026-01-01T00:00:00Z",
                    "Type": "AWS-HMAC", "AccessKeyId": c["access_key"],
                    "SecretAccessKey": c["secret_key"], "Token": c.get("token", ""),
                    "Expiration": c["expiration"]}), "text/plain"
            return 404, "", "text/plain"
        if method != "GET":
            return 405, "", "text/plain"
        if self.auth is not None and headers.get("Authorization") != self.auth:
            return 401, json.dumps({"message": "unauthorized"}), "application/json"
        c = self.creds()
        return 200, json.dumps({"AccessKeyId": c["access_key"],
                                "SecretAccessKey": c["secret_key"],
                                "Token": c.get("token", ""), "Expiration": c["expiration"],
                                "RoleArn": "arn:aws:iam::123456789012:role/" + ROLE}), \
            "application/json"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def requests(self):
        with self.lock:
            return list(self.log)

    def reset(self):
        with self.lock:
            self.log = []


def main(argv):
    if len(argv) >= 2 and argv[0] == "serve":
        d = argv[1]
        dbl = MetadataDouble(os.path.join(d, "creds.json"),
                             auth=argv[2] if len(argv) > 2 else None).start()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        tmp = os.path.join(d, "double.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"url": dbl.url, "pid": os.getpid()}, f)
        os.rename(tmp, os.path.join(d, "double.json"))
        while not stop.wait(0.5):
            pass
        dbl.stop()
        return 0
    if len(argv) >= 2 and argv[0] == "start":
        d = argv[1]
        info = os.path.join(d, "double.json")
        if os.path.exists(info):
            os.unlink(info)
        log = open(os.path.join(d, "double.log"), "ab")
        subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve"] + argv[1:],
                         stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                         start_new_session=True)
        deadline = time.time() + 20
        while time.time() < deadline and not os.path.exists(info):
            time.sleep(0.05)
        if not os.path.exists(info):
            return 1
        with open(info) as f:
            print(f.read())
        return 0
    if len(argv) >= 2 and argv[0] == "stop":
        try:
            with open(os.path.join(argv[1], "double.json")) as f:
                pid = json.load(f)["pid"]
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
        except (OSError, ValueError):
            pass
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
