"""The `aws` executor end to end: a real sentineld against moto's server with signature
verification on (INITIAL_NO_AUTH_ACTION_COUNT=0) behind a recording proxy
(tests/support/motoserver.py). The executor's IAM user holds exactly the actions of
packaging/terraform/modules/iam/policy.tf.json, so a call outside the least-privilege policy fails.

  1. env credentials: payments-memory -> scale_service (approved) resolves after the real
     UpdateService, moto shows desiredCount 5 and the idempotency tag; checkout-deploy ->
     reboot_instance; every request sentineld sent re-signs identically with botocore;
  2. dry_run = true: the incident closes as a dry run, zero mutating calls reach AWS;
  3. container credentials (the metadata test double, STS session credentials): an alert that
     fires after the action (a forced escalation) rolls back to the prior desiredCount;
  4. IMDSv2 credentials: kill -9 while UpdateService is in flight (the proxy holds its answer);
     the restarted daemon verifies the intent instead of repeating it: one UpdateService;
  5. shared credentials file + profile with a wrong secret: moto's 403 SignatureDoesNotMatch
     is a clear error in the log, the secret never appears; valid keys without permission make
     the execution fail, the circuit breaker counts it, and the next low-risk action waits for
     a human.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

from sntest import Daemon, check, scenario  # noqa: E402

try:
    from motoserver import MotoServer, botocore_resign  # noqa: E402
    from aws_metadata_double import MetadataDouble  # noqa: E402
    import boto3  # noqa: F401,E402
except ImportError as e:
    print("SKIP: %s (the moto package is needed)" % e)
    sys.exit(0)

CONF = """
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
rule = cause~memory -> aws:scale_service ecs-service/us-east-1/prod:{{service}} desiredCount=5
rule = cause~deploy -> aws:DEPLOY_RULE

[executor:aws]
plugin = aws
endpoint_url = PROXY_URL
allow = ec2-instance/us-east-1/*, ecs-service/us-east-1/*
verify_interval = 200ms
verify_timeout = 20s
retry_base = 50ms
max_per_hour = 60
max_per_minute = 60
{extra_mock}

[notifier:log]
plugin = log

[pipeline]
edge = events -> latency
edge = events -> correlate
edge = latency -> correlate
edge = correlate -> rca -> runbook -> approve -> aws -> verify
edge = approve -> escalate [on=rejected]
edge = verify -> rca [on=failed max=2]
edge = verify -> resolve [on=ok]
EXTRA_EDGES
"""

AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
           "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
           "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_DISABLED",
           "AWS_SHARED_CREDENTIALS_FILE")


def set_env(**kv):
    """The daemon inherits this process' environment: only what a phase names is set."""
    for k in AWS_ENV:
        os.environ.pop(k, None)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/sentinel-e2e/credentials"
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    for k, v in kv.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def conf(proxy_url, deploy_rule, extra_edges=""):
    return (CONF.replace("PROXY_URL", proxy_url).replace("DEPLOY_RULE", deploy_rule)
            .replace("EXTRA_EDGES", extra_edges))


def doc(d, iid):
    st, body = d.json("GET", "/v1/incidents/" + iid)
    return body if st == 200 else None


def events(x):
    return [t["event"] for t in x["timeline"]]


def approve_next(d, service, skip=()):
    inc = d.wait_for(lambda: [i for i in d.incidents("awaiting_approval")
                              if service in i["services"] and i["id"] not in skip],
                     timeout=40, what="a %s incident waiting for approval" % service)[0]
    st, _ = d.json("POST", "/v1/incidents/%s/approve" % inc["id"], "{}")
    check(st == 200, "approved the %s incident" % service)
    return inc["id"]


def wait_state(d, iid, states, timeout=40):
    return d.wait_for(lambda: (lambda x: x if x and x["state"] in states else None)(doc(d, iid)),
                      timeout=timeout, what="incident %s to reach %s" % (iid, states))


def daemon_log(d):
    with open(os.path.join(d.dir, "sentineld.log"), "rb") as f:
        return f.read().decode("utf-8", "replace")


def last_ts(name):
    with open(scenario(name)) as f:
        return max(json.loads(line)["ts"] for line in f if line.strip())


def svc(srv, keys, name="payments"):
    return srv.service(keys["admin"], "prod", name)


srv = MotoServer().start()
dbl = None
d = None
try:
    # ---- 1. environment credentials: scale_service and reboot_instance -----------------------
    keys = srv.bootstrap()
    iid = srv.make_instance(keys["admin"])
    srv.make_services(keys["admin"], "prod", ["payments", "checkout"])
    set_env(AWS_ACCESS_KEY_ID=keys["executor"]["access_key"],
            AWS_SECRET_ACCESS_KEY=keys["executor"]["secret_key"])
    d = Daemon(conf=conf(srv.proxy_url, "reboot_instance ec2-instance/us-east-1/" + iid)).start()
    d.post_file(scenario("payments-memory"))
    pay = approve_next(d, "payments")
    x = wait_state(d, pay, ("resolved", "escalated", "closed"))
    check(x["state"] == "resolved", "the payments incident resolves after the real call (%s)"
          % x["state"])
    check(x["plan"][0]["verb"] == "scale_service"
          and x["plan"][0]["target"] == "ecs-service/us-east-1/prod:payments",
          "plan: scale_service ecs-service/us-east-1/prod:payments")
    ex = x["executions"][0]
    check(ex["state"] == "done" and ex["result"]["changed"] is True
          and ex["snapshot"]["desiredCount"] == 2, "one execution, done, with the prior state")
    s = svc(srv, keys)
    check(s["desiredCount"] == 5, "moto shows the new desiredCount (%d)" % s["desiredCount"])
    check(s["tags"].get("sentinel:idempotency-key") == ex["key"],
          "the idempotency key is recorded on the service: %s" % s["tags"])
    muts = srv.mutations()
    check([m["action"] for m in muts] == ["TagResource", "UpdateService"],
          "mutating calls: tag, then one UpdateService (%s)" % [m["action"] for m in muts])
    check(json.loads(muts[1]["body"]) == {"cluster": "prod", "service": "payments",
                                          "desiredCount": 5}, "UpdateService body: %s"
          % muts[1]["body"])
    check(muts[1]["headers"].get("X-Amz-Target")
          == "AmazonEC2ContainerServiceV20141113.UpdateService", "JSON 1.1 target header")

    d.post_file(scenario("checkout-deploy"))
    co = approve_next(d, "checkout")  # reboot_instance is high risk: a human approves
    x = wait_state(d, co, ("resolved", "escalated", "closed"))
    check(x["state"] == "resolved", "the checkout incident resolves after the reboot (%s)"
          % x["state"])
    reboots = [m for m in srv.mutations() if m["action"] == "RebootInstances"]
    check(len(reboots) == 1 and "InstanceId.1=" + iid in reboots[0]["body"]
          and "Version=2016-11-15" in reboots[0]["body"], "one RebootInstances, Query API")
    inst = srv.instance(keys["admin"], iid)
    check(inst["tags"].get("sentinel:idempotency-key") == x["executions"][0]["key"],
          "the instance carries the idempotency tag")

    calls = srv.calls()
    same = [botocore_resign(c, keys["executor"]["secret_key"]) for c in calls]
    check(len(calls) >= 8 and all(a == b for a, b in same),
          "all %d requests re-sign identically with botocore" % len(calls))
    check(all(c["status"] < 300 for c in calls), "moto verified every signature")
    log = daemon_log(d)
    check(keys["executor"]["secret_key"] not in log, "the secret key is never logged")
    rc = d.stop()
    check(rc == 0, "SIGTERM drains and exits 0")
    d.cleanup()

    # ---- 2. dry run: nothing reaches AWS -------------------------------------------------------
    keys = srv.bootstrap()
    srv.make_services(keys["admin"], "prod", ["payments"])
    set_env(AWS_ACCESS_KEY_ID=keys["executor"]["access_key"],
            AWS_SECRET_ACCESS_KEY=keys["executor"]["secret_key"])
    d = Daemon(conf=conf(srv.proxy_url, "redeploy_service ecs-service/us-east-1/prod:{{service}}"),
               extra_mock="dry_run = true").start()
    d.post_file(scenario("payments-memory"))
    pay = approve_next(d, "payments")
    x = wait_state(d, pay, ("resolved", "escalated", "closed"))
    check(x["state"] == "closed" and "dry_run_only" in events(x),
          "a dry run closes the incident without pretending it resolved (%s)" % x["state"])
    check(x["executions"][0]["state"] == "dry_run", "the execution is recorded as a dry run")
    check(srv.mutations() == [], "zero mutating calls reached AWS")
    check(svc(srv, keys)["desiredCount"] == 2, "moto keeps desiredCount 2")
    d.stop()
    d.cleanup()

    # ---- 3. container credentials; a forced escalation rolls back ----------------------------
    keys = srv.bootstrap()
    srv.make_services(keys["admin"], "prod", ["payments"])
    credfile = os.path.join(srv.dir, "creds.json")
    with open(credfile, "w") as f:
        json.dump(keys["role"], f)
    dbl = MetadataDouble(credfile, auth="e2e-container-token").start()
    set_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=dbl.url + "/v2/credentials/e2e",
            AWS_CONTAINER_AUTHORIZATION_TOKEN="e2e-container-token")
    d = Daemon(conf=conf(srv.proxy_url, "redeploy_service ecs-service/us-east-1/prod:{{service}}"),
               extra_mock="verify_hold = 4s",
               # the alert below comes after the scenario's end: let it join the incident
               extra_core="correlate_window = 2h").start()
    d.post_file(scenario("payments-memory"))
    pay = approve_next(d, "payments")
    wait_state(d, pay, ("verifying",))
    check(svc(srv, keys)["desiredCount"] == 5, "scaled to 5 with the container's STS credentials")
    # The signal gets worse after the action: an alert on payments, after the action's time.
    alert = {"ts": last_ts("payments-memory") + 1000, "alert": "PaymentsErrorBudgetBurn",
             "status": "firing", "fingerprint": "e2e-aws-escalation",
             "labels": {"service": "payments", "severity": "page"}}
    st, _ = d.json("POST", "/v1/events", json.dumps(alert) + "\n")
    check(st == 200, "the escalating alert is accepted")
    x = d.wait_for(lambda: (lambda y: y if y and "rolled_back" in events(y) else None)(
        doc(d, pay)), timeout=40, what="the rollback")
    check(x["executions"][0]["state"] == "rolled_back", "the execution is rolled back")
    check(svc(srv, keys)["desiredCount"] == 2, "moto is back at the prior desiredCount 2")
    ups = [json.loads(m["body"])["desiredCount"] for m in srv.mutations()
           if m["action"] == "UpdateService"]
    check(ups == [5, 2], "UpdateService 5, then the rollback's 2 (%s)" % ups)
    check(all("X-Amz-Security-Token" in c["headers"] for c in srv.calls()),
          "session credentials: every request carries X-Amz-Security-Token")
    reqs = dbl.requests()
    check(len(reqs) >= 1 and all(r["authorized"] for r in reqs),
          "the container endpoint was asked with its authorization token (%d time(s))"
          % len(reqs))
    log = daemon_log(d)
    check(keys["role"]["secret_key"] not in log and keys["role"]["token"] not in log
          and "e2e-container-token" not in log, "no secret, session token or endpoint token in "
          "the log")
    d.stop()
    d.cleanup()

    # ---- 4. IMDSv2 credentials; kill -9 between intent and outcome ---------------------------
    keys = srv.bootstrap()
    srv.make_services(keys["admin"], "prod", ["payments"])
    with open(credfile, "w") as f:
        json.dump(keys["role"], f)
    dbl.reset()
    set_env(AWS_EC2_METADATA_DISABLED=None)
    srv.configure(delay_response={"UpdateService": 4})
    d = Daemon(conf=conf(srv.proxy_url, "redeploy_service ecs-service/us-east-1/prod:{{service}}"),
               extra_mock="imds_endpoint = %s\nimds_disabled = false" % dbl.url).start()
    d.post_file(scenario("payments-memory"))
    pay = approve_next(d, "payments")
    d.wait_for(lambda: [m for m in srv.mutations() if m["action"] == "UpdateService"],
               what="UpdateService to reach AWS")
    x = doc(d, pay)
    check(x["executions"][0]["state"] == "intent", "the intent is recorded, the outcome is not")
    time.sleep(0.3)
    d.kill9()
    srv.configure()
    d.start()
    x = wait_state(d, pay, ("resolved", "escalated", "closed"), timeout=60)
    check(x["state"] == "resolved", "the resumed incident resolves (%s)" % x["state"])
    check(x["executions"][0].get("resumed") == "verified after restart",
          "the intent was verified after the restart, not re-run: %s"
          % x["executions"][0].get("resumed"))
    ups = [m for m in srv.mutations() if m["action"] == "UpdateService"]
    check(len(ups) == 1, "exactly one UpdateService across the crash (%d)" % len(ups))
    check(svc(srv, keys)["desiredCount"] == 5, "desiredCount 5")
    paths = [r["path"] for r in dbl.requests()]
    check(paths[:3] == ["/latest/api/token", "/latest/meta-data/iam/security-credentials/",
                        "/latest/meta-data/iam/security-credentials/sentinel-executor"]
          and all(r["has_token"] for r in dbl.requests()[1:3]),
          "IMDSv2: token PUT, then role and keys with the token")
    d.stop()
    d.cleanup()

    # ---- 5. wrong credentials; the breaker ----------------------------------------------------
    keys = srv.bootstrap()
    srv.make_services(keys["admin"], "prod", ["payments", "checkout"])
    set_env()
    cred = os.path.join(srv.dir, "credentials")
    with open(cred, "w") as f:
        f.write("[sentinel]\naws_access_key_id = %s\naws_secret_access_key = wr0ng-S3cret-e2e\n"
                % keys["executor"]["access_key"])
    d = Daemon(conf=conf(srv.proxy_url, "redeploy_service ecs-service/us-east-1/prod:{{service}}"),
               extra_mock="credentials_file = %s\nprofile = sentinel" % cred).start()
    d.post_file(scenario("payments-memory"))
    pay = approve_next(d, "payments")
    x = wait_state(d, pay, ("resolved", "escalated", "closed"))
    check(x["state"] == "escalated" and x["executions"][0]["state"] == "failed",
          "with a wrong secret nothing runs and the incident goes to humans")
    log = daemon_log(d)
    check("HTTP 403 SignatureDoesNotMatch" in log and "credentials from file:sentinel" in log,
          "the log says why: moto's 403 SignatureDoesNotMatch, credentials from the profile")
    check("wr0ng-S3cret-e2e" not in log, "the wrong secret is not logged either")
    statuses = [c["status"] for c in srv.calls()]
    check(statuses and all(st == 403 for st in statuses),
          "moto refused every signed call (the live assessment and the snapshot): %s" % statuses)
    check(svc(srv, keys)["desiredCount"] == 2, "nothing changed")
    d.stop()
    d.cleanup()

    # Valid keys without the permission: the execute fails, the breaker counts it, and the
    # next low-risk action (redeploy, normally auto-approved) waits for a human.
    set_env(AWS_ACCESS_KEY_ID=keys["readonly"]["access_key"],
            AWS_SECRET_ACCESS_KEY=keys["readonly"]["secret_key"])
    d = Daemon(conf=conf(srv.proxy_url, "redeploy_service ecs-service/us-east-1/prod:{{service}}",
                         "edge = aws -> verify [on=failed]"),
               extra_mock="failure_threshold = 0.1\nbreaker_min_calls = 1").start()
    d.post_file(scenario("checkout-deploy"))
    co = d.wait_for(lambda: [i for i in d.incidents() if "checkout" in i["services"]
                             and i["state"] == "awaiting_approval"], timeout=60,
                    what="the second attempt to wait for a human")[0]["id"]
    x = doc(d, co)
    check(x["approvals"][0]["actor"] == "policy",
          "attempt 1: the low-risk redeploy was auto-approved")
    check(x["executions"][0]["state"] == "failed"
          and "AccessDenied" in json.dumps(x["executions"][0].get("result")),
          "attempt 1 failed with moto's AccessDenied")
    check("approval_needed" in events(x), "attempt 2 waits for a human: the breaker is open")
    st, raw, _ = d.request("GET", "/metrics")
    check(b"sentinel_execution_failures_total" in raw, "the failure is counted")
    check(not [m for m in srv.calls() if m["action"] == "UpdateService"],
          "no UpdateService was attempted")
    d.stop()
    d.cleanup()
    d = None
finally:
    if d:
        d.cleanup()
    if dbl:
        dbl.stop()
    srv.stop()
print("1..ok")
