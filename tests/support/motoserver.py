#!/usr/bin/env python3
"""A throwaway AWS double for tests: moto's server (`moto_server -H 127.0.0.1 -p PORT`) with
INITIAL_NO_AUTH_ACTION_COUNT=0 in its environment, so every request's SigV4 signature is
verified and its action checked against moto's IAM; in front of it a small recording proxy that
logs every request (service, action, DryRun, status, AWS error code, headers, body), can delay a
request or its answer, and can inject errors. Tests talk to sentineld through the proxy and
count mutating calls there.

As a module:
    srv = MotoServer().start()        # srv.url (moto), srv.proxy_url (the proxy)
    keys = srv.bootstrap()            # POST /moto-api/reset + IAM users: admin (everything),
                                      # executor (exactly the actions of the terraform policy),
                                      # readonly (Describe only), and a role's STS credentials
    ec2 = srv.client("ec2", keys["admin"]); iid = srv.make_instance(keys["admin"])
    srv.make_services(keys["admin"], "prod", ["payments"])
    srv.calls(); srv.mutations(); srv.configure(delay_response={"UpdateService": 3})
    srv.stop()

As a command (the C suites shell out to it):
    motoserver.py start DIR            # moto + proxy in the background; prints DIR/info.json
    motoserver.py stop DIR
    motoserver.py ctl DIR bootstrap    # reset, users, one instance, cluster prod with services
                                       # payments and checkout; prints keys and ids
    motoserver.py ctl DIR instance ID  # {"state", "tags"}
    motoserver.py ctl DIR service CLUSTER NAME   # {"desiredCount", ..., "tags"}
    motoserver.py ctl DIR tag-service CLUSTER NAME VALUE   # the idempotency tag, as a crash
                                                           # between tag and mutation leaves it
    motoserver.py ctl DIR calls | reset-calls | configure JSON | stop-instance ID
    (the same as HTTP: POST PROXY/_proxy/ctl {"cmd","args"}, GET /_proxy/calls,
     POST /_proxy/reset, POST /_proxy/configure)
    motoserver.py botocore-sign FILE   # botocore's SigV4 for fixed inputs (a second oracle)

boto3/botocore/moto come with the moto package. The proxy keeps the client's Host header, so
moto checks the signature over exactly what the client signed.
"""
import datetime
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, "..", ".."))
TERRAFORM = os.path.join(SOURCE, "packaging", "terraform", "modules", "iam", "policy.tf.json")
REGION = "us-east-1"
MUTATING = {"RebootInstances", "StopInstances", "StartInstances", "CreateTags", "DeleteTags",
            "UpdateService", "TagResource", "UntagResource", "RunInstances",
            "TerminateInstances", "CreateService", "DeleteService"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def terraform_actions(path=TERRAFORM):
    """Every action the least-privilege policy allows (conditions are not modelled by moto)."""
    with open(path) as f:
        doc = json.load(f)
    stmts = doc["data"]["aws_iam_policy_document"]["sentinel_executor"]["statement"]
    return sorted({a for s in stmts if s.get("effect", "Allow") == "Allow" for a in s["actions"]})


def policy(actions):
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})


# ---- the recording proxy --------------------------------------------------------------------

def classify(headers, body):
    auth = headers.get("Authorization", "")
    service = ""
    if "Credential=" in auth:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        service = scope[3] if len(scope) > 3 else ""
    action, dry = "", False
    target = headers.get("X-Amz-Target", "")
    if target:
        action = target.rsplit(".", 1)[-1]
    else:
        form = urllib.parse.parse_qs(body, keep_blank_values=True)
        action = (form.get("Action") or [""])[0]
        dry = (form.get("DryRun") or ["false"])[0].lower() == "true"
    return service, action, dry


class Proxy:
    def __init__(self, upstream_port, port=None):
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.lock = threading.Lock()
        self.log = []
        self.conf = {}
        self.controller = None  # cmd, args -> JSON-able; set by `serve`
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, body, ctype="application/json", extra=None):
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                if self.path.startswith("/_proxy/"):
                    return self.control(raw)
                return proxy.forward(self, raw)

            def control(self, raw):
                if self.path == "/_proxy/calls":
                    with proxy.lock:
                        return self.reply(200, json.dumps(proxy.log))
                if self.path == "/_proxy/reset":
                    with proxy.lock:
                        proxy.log = []
                        proxy.conf = {}
                    return self.reply(200, "{}")
                if self.path == "/_proxy/configure":
                    with proxy.lock:
                        proxy.conf = json.loads(raw or b"{}")
                    return self.reply(200, "{}")
                if self.path == "/_proxy/ctl" and proxy.controller:
                    req = json.loads(raw or b"{}")
                    try:
                        out = proxy.controller(req["cmd"], req.get("args", []))
                    except Exception as e:  # the test reads the reason
                        return self.reply(500, json.dumps({"error": repr(e)}))
                    return self.reply(200, json.dumps(out))
                return self.reply(404, "{}")

            do_GET = do_POST = do_PUT = do_DELETE = do_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def forward(self, h, raw):
        text = raw.decode("utf-8", "replace")
        headers = {k: v for k, v in h.headers.items()}
        service, action, dry = classify(headers, text)
        rec = {"t": time.time(), "method": h.command, "path": h.path, "service": service,
               "action": action, "dry_run": dry, "mutating": action in MUTATING and not dry,
               "headers": headers, "body": text}
        with self.lock:
            rec["seq"] = len(self.log)
            self.log.append(rec)
            conf = json.loads(json.dumps(self.conf))
            fails = conf.get("fail", {}).get(action) or []
            fail = self.conf["fail"][action].pop(0) if fails else None
        time.sleep(float(conf.get("delay_request", {}).get(action, 0)))
        if fail is not None:
            status, code = (fail, "ServiceUnavailable") if isinstance(fail, int) else \
                (fail["status"], fail["code"])
            if service == "ecs":
                body = json.dumps({"__type": code, "message": "injected by the test proxy"})
                ctype = "application/x-amz-json-1.1"
            else:
                body = ("<Response><Errors><Error><Code>%s</Code><Message>injected by the test "
                        "proxy</Message></Error></Errors><RequestID>x</RequestID></Response>"
                        % code)
                ctype = "text/xml"
            rec.update(status=status, code=code, injected=True)
            return h.reply(status, body, ctype)
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        fwd = {k: v for k, v in headers.items()
               if k.lower() not in ("connection", "keep-alive", "proxy-connection")}
        conn.request(h.command, h.path, body=raw, headers=fwd)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        rec["status"] = resp.status
        if resp.status >= 300:
            rec["code"] = error_code(data)
        time.sleep(float(conf.get("delay_response", {}).get(action, 0)))
        try:
            h.reply(resp.status, data, resp.getheader("Content-Type") or "text/plain")
        except OSError:
            rec["client_gone"] = True


def error_code(data):
    text = data.decode("utf-8", "replace")
    if "<Code>" in text:
        return text.split("<Code>", 1)[1].split("</Code>", 1)[0]
    try:
        t = json.loads(text).get("__type", "")
        return t.rsplit("#", 1)[-1]
    except ValueError:
        return ""


# ---- moto -------------------------------------------------------------------------------------

class MotoServer:
    def __init__(self, port=None, proxy=True, running=2):
        self.port = port or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.with_proxy = proxy
        self.running = running
        self.proc = None
        self.proxy = None
        self.keys = None
        self.dir = None  # scratch directory (moto's log, test files), removed by stop()

    @property
    def proxy_url(self):
        return "http://127.0.0.1:%d" % self.proxy.port if self.proxy else self.url

    def start(self, timeout=30):
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0",
                   MOTO_ECS_SERVICE_RUNNING=str(self.running))
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(k, None)
        exe = shutil.which("moto_server")
        cmd = [exe] if exe else [sys.executable, "-m", "moto.server"]
        self.dir = tempfile.mkdtemp(prefix="sn-moto-")
        self.log = open(os.path.join(self.dir, "moto.log"), "ab")
        self.proc = subprocess.Popen(cmd + ["-H", "127.0.0.1", "-p", str(self.port)], env=env,
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("moto_server exited with %s" % self.proc.returncode)
            try:
                with urllib.request.urlopen(self.url + "/moto-api/", timeout=2):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("moto_server did not answer")
        if self.with_proxy:
            self.proxy = Proxy(self.port).start()
        return self

    def stop(self):
        if self.proxy:
            self.proxy.stop()
            self.proxy = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.dir and os.environ.get("SN_KEEP") is None:
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _post(self, path, data=b""):
        req = urllib.request.Request(self.url + path, data=data, method="POST",
                                     headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read()

    def auth(self, on):
        """moto's switch: with INITIAL_NO_AUTH_ACTION_COUNT=inf nothing is checked."""
        self._post("/moto-api/reset-auth", b"0" if on else b"inf")

    def client(self, service, creds, proxy=False, region=REGION):
        import boto3
        return boto3.client(service, endpoint_url=self.proxy_url if proxy else self.url,
                            region_name=region, aws_access_key_id=creds["access_key"],
                            aws_secret_access_key=creds["secret_key"],
                            aws_session_token=creds.get("token"))

    def reset(self):
        self._post("/moto-api/reset")
        self.reset_calls()

    def bootstrap(self, executor_actions=None):
        """Reset moto and create principals. Auth is off while doing so, on afterwards."""
        import boto3
        self.reset()
        self.auth(False)
        try:
            anon = dict(endpoint_url=self.url, region_name=REGION, aws_access_key_id="bootstrap",
                        aws_secret_access_key="bootstrap")
            iam = boto3.client("iam", **anon)
            keys = {}
            actions = executor_actions or terraform_actions()
            users = {"admin": ["*"], "executor": actions,
                     "readonly": ["ec2:DescribeInstances", "ecs:DescribeServices"]}
            for name, acts in users.items():
                iam.create_user(UserName=name)
                iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=policy(acts))
                k = iam.create_access_key(UserName=name)["AccessKey"]
                keys[name] = {"access_key": k["AccessKeyId"], "secret_key": k["SecretAccessKey"]}
            trust = json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
            role = iam.create_role(RoleName="sentinel-executor", AssumeRolePolicyDocument=trust)
            iam.put_role_policy(RoleName="sentinel-executor", PolicyName="p",
                                PolicyDocument=policy(actions))
            sts = boto3.client("sts", **anon)
            c = sts.assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName="sentinel",
                                DurationSeconds=3600)["Credentials"]
            keys["role"] = {"access_key": c["AccessKeyId"], "secret_key": c["SecretAccessKey"],
                            "token": c["SessionToken"],
                            "expiration": c["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ")}
        finally:
            self.auth(True)
        self.keys = keys
        return keys

    def make_instance(self, creds, managed=True):
        ec2 = self.client("ec2", creds)
        tags = [{"ResourceType": "instance",
                 "Tags": [{"Key": "sentinel:managed", "Value": "true"}]}] if managed else []
        r = ec2.run_instances(ImageId="ami-03cf127a", MinCount=1, MaxCount=1,
                              InstanceType="t3.micro", TagSpecifications=tags)
        return r["Instances"][0]["InstanceId"]

    def make_services(self, creds, cluster, names, desired=2):
        ecs = self.client("ecs", creds)
        ecs.create_cluster(clusterName=cluster)
        ecs.register_task_definition(family="web", containerDefinitions=[
            {"name": "web", "image": "nginx", "memory": 128}])
        out = {}
        for n in names:
            s = ecs.create_service(cluster=cluster, serviceName=n, taskDefinition="web",
                                   desiredCount=desired,
                                   tags=[{"key": "sentinel:managed", "value": "true"}])
            out[n] = s["service"]["serviceArn"]
        return out

    def instance(self, creds, iid):
        i = self.client("ec2", creds).describe_instances(
            InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        return {"state": i["State"]["Name"],
                "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])}}

    def service(self, creds, cluster, name):
        s = self.client("ecs", creds).describe_services(
            cluster=cluster, services=[name], include=["TAGS"])["services"][0]
        return {"desiredCount": s["desiredCount"], "runningCount": s["runningCount"],
                "pendingCount": s["pendingCount"], "deployments": len(s["deployments"]),
                "primary": s["deployments"][0]["id"] if s["deployments"] else None,
                "tags": {t["key"]: t["value"] for t in s.get("tags", [])}}

    # proxy helpers (work for a proxy in this process or in a `serve` process)
    def _proxy(self, path, body=None):
        req = urllib.request.Request(self.proxy_url + path, data=body,
                                     method="POST" if body is not None else "GET")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def calls(self):
        return self._proxy("/_proxy/calls")

    def mutations(self):
        return [c for c in self.calls() if c["mutating"]]

    def reset_calls(self):
        if self.proxy or getattr(self, "remote_proxy", None):
            self._proxy("/_proxy/reset", b"")

    def configure(self, **conf):
        self._proxy("/_proxy/configure", json.dumps(conf).encode())


# ---- botocore as an oracle ------------------------------------------------------------------

def botocore_sign(cases):
    """[{method,url,headers,body,access_key,secret_key,token,region,service,epoch}] ->
    [{canonical_request, string_to_sign, authorization, x_amz_date}] signed by botocore at the
    given time."""
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    out = []
    real = botocore.auth.get_current_datetime
    try:
        for c in cases:
            when = datetime.datetime.fromtimestamp(c["epoch"], datetime.timezone.utc).replace(
                tzinfo=None)
            botocore.auth.get_current_datetime = lambda when=when: when
            req = AWSRequest(method=c["method"], url=c["url"], headers=dict(c["headers"]),
                             data=(c.get("body") or "").encode())
            auth = botocore.auth.SigV4Auth(
                Credentials(c["access_key"], c["secret_key"], c.get("token")), c["service"],
                c["region"])
            auth.add_auth(req)
            authz = req.headers["Authorization"]
            del req.headers["Authorization"]
            creq = auth.canonical_request(req)
            out.append({"name": c.get("name"), "canonical_request": creq,
                        "string_to_sign": auth.string_to_sign(req, creq),
                        "authorization": authz, "x_amz_date": req.headers["X-Amz-Date"]})
    finally:
        botocore.auth.get_current_datetime = real
    return out


def botocore_resign(call, secret_key, token=None):
    """Re-sign a request the proxy recorded with botocore (same headers, same X-Amz-Date) and
    return (botocore's Authorization, the one the client sent)."""
    h = {k.lower(): v for k, v in call["headers"].items()}
    sent = h["authorization"]
    akid = sent.split("Credential=", 1)[1].split("/", 1)[0]
    scope = sent.split("Credential=", 1)[1].split(",", 1)[0].split("/")
    signed = sent.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    when = datetime.datetime.strptime(h["x-amz-date"], "%Y%m%dT%H%M%SZ")
    headers = {k: v for k, v in call["headers"].items()
               if k.lower() in signed and k.lower() not in ("x-amz-date", "x-amz-security-token")}
    got = botocore_sign([{"method": call["method"],
                          "url": "http://%s%s" % (h["host"], call["path"]),
                          "headers": headers, "body": call["body"], "access_key": akid,
                          "secret_key": secret_key, "token": token, "region": scope[2],
                          "service": scope[3], "epoch": int(when.replace(
                              tzinfo=datetime.timezone.utc).timestamp())}])[0]
    return got["authorization"], sent


# ---- command line ------------------------------------------------------------------------------

def control(srv, cmd, args):
    """What `ctl` does, run inside the serve process (boto3 is loaded once)."""
    if cmd == "bootstrap":
        keys = srv.bootstrap()
        out = {"keys": keys, "instance": srv.make_instance(keys["admin"]),
               "stopped_instance": srv.make_instance(keys["admin"]),
               "services": srv.make_services(keys["admin"], "prod", ["payments", "checkout"])}
        srv.client("ec2", keys["admin"]).stop_instances(InstanceIds=[out["stopped_instance"]])
        return out
    if cmd == "instance":
        return srv.instance(srv.keys["admin"], args[0])
    if cmd == "service":
        return srv.service(srv.keys["admin"], args[0], args[1])
    if cmd == "stop-instance":
        srv.client("ec2", srv.keys["admin"]).stop_instances(InstanceIds=[args[0]])
        return {}
    if cmd == "tag-service":  # CLUSTER NAME VALUE: the idempotency tag, as a crash leaves it
        ecs = srv.client("ecs", srv.keys["admin"])
        arn = ecs.describe_services(cluster=args[0], services=[args[1]])["services"][0]
        ecs.tag_resource(resourceArn=arn["serviceArn"],
                         tags=[{"key": "sentinel:idempotency-key", "value": args[2]}])
        return {}
    raise ValueError("unknown command %s" % cmd)


def serve(d):
    srv = MotoServer().start()
    srv.proxy.controller = lambda cmd, args: control(srv, cmd, args)
    info = {"url": srv.url, "proxy_url": srv.proxy_url, "pid": os.getpid()}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    tmp = os.path.join(d, "info.json.tmp")
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.rename(tmp, os.path.join(d, "info.json"))
    while not stop.wait(0.5):
        pass
    srv.stop()


def attach(d):
    with open(os.path.join(d, "info.json")) as f:
        info = json.load(f)
    srv = MotoServer(port=int(info["url"].rsplit(":", 1)[1]), proxy=False)
    srv.proxy_port = int(info["proxy_url"].rsplit(":", 1)[1])
    srv.remote_proxy = True

    class P:  # stands for the proxy of the serve process
        port = srv.proxy_port
    srv.proxy = P()
    return srv


def main(argv):
    if len(argv) >= 2 and argv[0] == "botocore-sign":
        with open(argv[1]) as f:
            print(json.dumps(botocore_sign(json.load(f))))
        return 0
    if len(argv) >= 2 and argv[0] == "serve":
        serve(argv[1])
        return 0
    if len(argv) >= 2 and argv[0] == "start":
        d = argv[1]
        os.makedirs(d, exist_ok=True)
        info = os.path.join(d, "info.json")
        if os.path.exists(info):
            os.unlink(info)
        log = open(os.path.join(d, "serve.log"), "ab")
        subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", d],
                         stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                         start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline and not os.path.exists(info):
            time.sleep(0.1)
        if not os.path.exists(info):
            print("motoserver did not start", file=sys.stderr)
            return 1
        with open(info) as f:
            print(f.read())
        return 0
    if len(argv) >= 2 and argv[0] == "stop":
        try:
            with open(os.path.join(argv[1], "info.json")) as f:
                pid = json.load(f)["pid"]
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
        except (OSError, ValueError):
            pass
        return 0
    if len(argv) >= 3 and argv[0] == "ctl":
        srv = attach(argv[1])
        cmd, args = argv[2], argv[3:]
        if cmd in ("bootstrap", "instance", "service", "stop-instance", "tag-service"):
            print(json.dumps(srv._proxy("/_proxy/ctl", json.dumps(
                {"cmd": cmd, "args": args}).encode())))
        elif cmd == "calls":
            print(json.dumps(srv.calls()))
        elif cmd == "reset-calls":
            srv.reset_calls()
            print("{}")
        elif cmd == "configure":
            srv._proxy("/_proxy/configure", args[0].encode())
            print("{}")
        else:
            print("unknown ctl command %s" % cmd, file=sys.stderr)
            return 2
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
