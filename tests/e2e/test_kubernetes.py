"""The kubernetes executor end to end (after a check that the double's objects have the shapes of
the spec samples in tests/data/kubernetes/): a real sentineld with [executor:k8s] plugin = kubernetes,
pointed at the TEST DOUBLE of the Kubernetes API server (k8s_double.py) through a kubeconfig,
runbook rules mapping the scenarios to k8s verbs.

1. checkout-deploy resolves after a real rollout_restart through the double (one PATCH, as
   kubectl sends it, the rollout observed to convergence by verify).
2. A stuck deployment (the new pods never become ready): verify fails on
   ProgressDeadlineExceeded, the core rolls back (the template annotation restored), loops once,
   fails again, rolls back again and escalates; the deployment ends on its original template.
3. dry_run = true: zero mutating calls reach the double.
4. kill -9 between intent and outcome (the double applies the PATCH and holds the answer): the
   restarted daemon verifies the intent (the key is on the deployment) and resolves without a
   second PATCH.
5. A target outside allow (deployment/prod/...) is denied by the core: nothing reaches the
   double for it.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from k8s_double import K8sDouble, load_role_rules  # noqa: E402
from sntest import SOURCE, Daemon, check, scenario  # noqa: E402

# The double answers 403 to anything outside the shipped Role, like the real authorizer.
ROLE = load_role_rules(os.path.join(SOURCE, "packaging", "kubernetes", "rbac-executor.yaml"))

TOKEN = "e2e-token-4f1c2a"
RESTARTED = "kubectl.kubernetes.io/restartedAt"
KEYANN = "sentinel.dev/idempotency-key"

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
rule = cause~deploy -> k8s:rollout_restart deployment/shop/{{service}}
rule = cause~memory -> k8s:scale_deployment deployment/prod/{{service}} replicas=6

[executor:k8s]
plugin = kubernetes
kubeconfig = {dir}/kubeconfig
allow = deployment/shop/*, pod/shop/*
max_per_hour = 60
max_per_minute = 60
poll_interval = 100ms
verify_timeout = 20s
{extra_mock}

[notifier:log]
plugin = log

[pipeline]
edge = events -> latency
edge = latency -> correlate
edge = correlate -> rca -> runbook -> approve -> k8s -> verify
edge = approve -> escalate [on=rejected]
edge = verify -> rca [on=failed max=1]
edge = verify -> resolve [on=ok]
"""

KUBECONFIG = """apiVersion: v1
kind: Config
current-context: e2e
clusters:
- name: double
  cluster:
    server: {url}
contexts:
- name: e2e
  context:
    cluster: double
    user: sentineld
users:
- name: sentineld
  user:
    token: {token}
"""


def daemon(dbl, extra=""):
    d = Daemon(conf=CONF, extra_mock=extra)
    with open(os.path.join(d.dir, "kubeconfig"), "w") as f:
        f.write(KUBECONFIG.format(url=dbl.url, token=TOKEN))
    return d


def terminal(d, states=("resolved", "escalated", "closed", "rejected")):
    inc = [i for i in d.incidents() if i["state"] in states]
    if not inc:
        return None
    st, doc = d.json("GET", "/v1/incidents/" + inc[0]["id"])
    return doc if st == 200 else None


def patches(dbl, path_part="/deployments/checkout"):
    return [r for r in dbl.requests() if r["method"] == "PATCH" and path_part in r["path"]]


def template_annotations(dep):
    return dep["spec"]["template"]["metadata"].get("annotations", {})


# ---- 0. the double answers with the spec's shapes ----------------------------------------------
with open(os.path.join(SOURCE, "tests", "data", "kubernetes", "spec-samples.json")) as f:
    SAMPLES = json.load(f)


def same_shape(sample, got, where=""):
    """Every key of the spec's sample is in the double's object, with the same JSON type (and
    the same kind/apiVersion/status/reason where the sample has them)."""
    if isinstance(sample, dict):
        if not isinstance(got, dict):
            return "%s: not an object" % where
        for k, v in sample.items():
            if k not in got:
                return "%s.%s missing" % (where, k)
            if k in ("kind", "apiVersion", "status", "reason", "type") and isinstance(v, str) \
                    and where.count(".") < 2 and v != got[k] and k != "status":
                return "%s.%s is %r, not %r" % (where, k, got[k], v)
            err = same_shape(v, got[k], where + "." + k)
            if err:
                return err
        return None
    if isinstance(sample, list):
        return None if isinstance(got, list) else "%s: not a list" % where
    if isinstance(sample, bool) or sample is None:
        return None
    if isinstance(sample, (int, float)) != isinstance(got, (int, float)) and \
            not isinstance(sample, str):
        return "%s: type differs" % where
    return None


dbl = K8sDouble(tokens=[TOKEN]).start()  # no Role: the executor never GETs a Scale
dbl.add_deployment("shop", "checkout", replicas=3)
H = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/merge-patch+json"}
code, obj = dbl.handle("GET", "/api/v1/namespaces/shop/pods/web-0", {}, H, b"")
check(code == 404 and same_shape(SAMPLES["status_not_found"], obj) is None,
      "404 is a Status like the spec's (%s)" % same_shape(SAMPLES["status_not_found"], obj))
code, obj = dbl.handle("GET", "/apis/apps/v1/namespaces/shop/deployments/checkout/scale", {}, H,
                       b"")
check(code == 200 and same_shape(SAMPLES["scale"], obj) is None,
      "the scale subresource is an autoscaling/v1 Scale (%s)" % same_shape(SAMPLES["scale"], obj))
code, obj = dbl.handle("GET", "/apis/apps/v1/namespaces/shop/deployments/checkout", {}, H, b"")
check(code == 200 and same_shape(SAMPLES["deployment_status"], obj["status"]) is None and
      [c["type"] for c in obj["status"]["conditions"]] == ["Available", "Progressing"],
      "deployment status has the spec's fields and conditions")
code, obj = dbl.handle("PATCH", "/apis/apps/v1/namespaces/shop/deployments/checkout", {},
                       dict(H, **{"Content-Type": "application/strategic-merge-patch+json"}),
                       json.dumps(SAMPLES["rollout_restart_patch"]).encode())
check(code == 200 and obj["metadata"]["generation"] == 2,
      "the spec's rollout-restart patch is accepted and bumps the generation")
code, obj = dbl.handle("PATCH", "/apis/apps/v1/namespaces/shop/deployments/checkout", {},
                       dict(H, **{"Content-Type": "application/json-patch+json"}), b"[]")
check(code == 415, "other patch types are refused (415)")
directive = {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "app"}]}}}}
code, obj = dbl.handle("PATCH", "/apis/apps/v1/namespaces/shop/deployments/checkout", {},
                       dict(H, **{"Content-Type": "application/strategic-merge-patch+json"}),
                       json.dumps(directive).encode())
check(code == 422 and "$setElementOrder/containers" in obj.get("message", ""),
      "a strategic-merge directive the double does not implement is refused, not misapplied "
      "(%d %s)" % (code, obj.get("message")))
dbl.stop()

# ---- 1. a real rollout restart resolves the incident ------------------------------------------
dbl = K8sDouble(tokens=[TOKEN], pod_ready=0.2, grace=0.1, rbac=ROLE).start()
dbl.add_deployment("shop", "checkout", replicas=3)
d = daemon(dbl).start()
try:
    d.post_file(scenario("checkout-deploy"))
    doc = d.wait_for(lambda: terminal(d), timeout=60, what="the incident to finish")
    check(doc["state"] == "resolved", "checkout-deploy resolved (%s)" % doc["state"])
    execs = doc["executions"]
    check(len(execs) == 1 and execs[0]["state"] == "done" and execs[0]["verb"] ==
          "rollout_restart", "one rollout_restart execution, done")
    check(execs[0]["verify_result"]["converged"] is True and
          execs[0]["verify_result"]["updatedReplicas"] == 3,
          "verify saw the rollout converge: %s" % execs[0]["verify_result"].get("reason"))
    snap = execs[0]["snapshot"]
    check(snap["kind"] == "deployment" and snap["replicas"] == 3 and snap["restartedAt"] is None,
          "snapshot recorded the prior state")
    ps = patches(dbl)
    check(len(ps) == 1, "exactly one PATCH reached the double (%d)" % len(ps))
    p = ps[0]
    check(p["content_type"] == "application/strategic-merge-patch+json" and
          p["token"] == TOKEN and p["path"] == "/apis/apps/v1/namespaces/shop/deployments/"
          "checkout", "the PATCH is kubectl's rollout restart, authenticated")
    check(p["body"]["metadata"]["annotations"][KEYANN] == execs[0]["key"],
          "the PATCH carries the idempotency key")
    dep = dbl.wait_converged("shop", "checkout")
    check(template_annotations(dep).get(RESTARTED) ==
          p["body"]["spec"]["template"]["metadata"]["annotations"][RESTARTED],
          "the double's pod template carries restartedAt")
    check(dep["status"]["observedGeneration"] == dep["metadata"]["generation"] == 2,
          "the controller observed the new generation")
    check(all(r["method"] in ("GET", "PATCH") for r in dbl.requests()),
          "only GETs and the one PATCH")
    check(dbl.rbac_denials == [] and all(r["status"] < 400 for r in dbl.requests()),
          "every call fits the shipped Role (packaging/kubernetes/rbac-executor.yaml)")
    events = [t["event"] for t in doc["timeline"]]
    check("verified" in events and "resolved" in events, "timeline: verified, resolved")
finally:
    d.cleanup()
    dbl.stop()

# ---- 2. a stuck rollout rolls back and escalates ----------------------------------------------
dbl = K8sDouble(tokens=[TOKEN], pod_ready=0.2, grace=0.1, rbac=ROLE).start()
dbl.add_deployment("shop", "checkout", replicas=3, progress_deadline=1)
dbl.set_stuck("shop", "checkout")
d = daemon(dbl).start()
try:
    d.post_file(scenario("checkout-deploy"))
    doc = d.wait_for(lambda: terminal(d), timeout=90, what="the stuck incident to finish")
    check(doc["state"] == "escalated", "stuck rollout ends escalated (%s)" % doc["state"])
    execs = doc["executions"]
    check(len(execs) == 2 and all(x["state"] == "rolled_back" for x in execs),
          "both attempts were rolled back: %s" % [x["state"] for x in execs])
    check(all("ProgressDeadlineExceeded" in x["verify_result"]["error"] for x in execs),
          "verify named ProgressDeadlineExceeded")
    # A conditional PATCH may meet a 409 while the status moves (resourceVersion changes with
    # it); the executor reads again and retries, so count the accepted ones.
    ps = [p for p in patches(dbl) if p["status"] == 200]
    check(len(ps) == 4, "two restarts and two rollbacks were applied by the double (%d)"
          % len(ps))
    rb = [p for p in ps if p["body"]["spec"]["template"]["metadata"]["annotations"][RESTARTED]
          is None]
    check(len(rb) == 2, "each rollback removed restartedAt again (restores the template)")
    dep = dbl.wait_converged("shop", "checkout")
    check(RESTARTED not in template_annotations(dep) and dep["status"]["readyReplicas"] == 3,
          "the deployment is back on its original template, 3 ready")
    events = [t["event"] for t in doc["timeline"]]
    check(events.count("rolled_back") == 2 and "escalated" in events,
          "timeline: rolled_back twice, escalated")
finally:
    d.cleanup()
    dbl.stop()

# ---- 3. dry run: nothing mutating reaches the double ------------------------------------------
dbl = K8sDouble(tokens=[TOKEN], pod_ready=0.2, grace=0.1, rbac=ROLE).start()
dbl.add_deployment("shop", "checkout", replicas=3)
d = daemon(dbl, "dry_run = true").start()
try:
    d.post_file(scenario("checkout-deploy"))
    doc = d.wait_for(lambda: terminal(d), timeout=60, what="the dry-run incident to finish")
    execs = doc["executions"]
    check(len(execs) == 1 and execs[0]["state"] == "dry_run",
          "the action was described, not executed")
    check(dbl.mutating() == [], "zero mutating calls reached the double (%d)"
          % len(dbl.mutating()))
    dep = dbl.deployment("shop", "checkout")
    check(dep["metadata"]["generation"] == 1 and RESTARTED not in template_annotations(dep),
          "the deployment is untouched")
finally:
    d.cleanup()
    dbl.stop()

# ---- 4. kill -9 between intent and outcome ----------------------------------------------------
dbl = K8sDouble(tokens=[TOKEN], pod_ready=0.2, grace=0.1, rbac=ROLE).start()
dbl.add_deployment("shop", "checkout", replicas=3)
# The double applies the PATCH and holds its answer, so the daemon dies with the change made
# and no outcome recorded.
dbl.fault(method="PATCH", path="/deployments/checkout", delay=5, apply=True)
d = daemon(dbl).start()
try:
    d.post_file(scenario("checkout-deploy"))
    d.wait_for(lambda: patches(dbl), timeout=30, what="the PATCH to reach the double")
    inc = d.incidents()[0]
    st, doc = d.json("GET", "/v1/incidents/" + inc["id"])
    check(any(x["state"] == "intent" for x in doc["executions"]),
          "intent recorded, outcome not yet")
    d.kill9()
    d.start()
    doc = d.wait_for(lambda: (lambda s: s[1] if s[0] == 200 and s[1]["state"] == "resolved"
                              else None)(d.json("GET", "/v1/incidents/" + inc["id"])),
                     timeout=60, what="the resumed incident to resolve")
    execs = doc["executions"]
    check(len(execs) == 1 and execs[0]["state"] == "done", "one execution record, done")
    check(execs[0].get("resumed") == "verified after restart",
          "the intent was verified after restart, not re-run: %s" % execs[0].get("resumed"))
    check(len(patches(dbl)) == 1, "the double's request log shows one PATCH (%d)"
          % len(patches(dbl)))
    dep = dbl.deployment("shop", "checkout")
    check(dep["metadata"]["annotations"][KEYANN] == execs[0]["key"],
          "the deployment carries the execution's key")
finally:
    d.cleanup()
    dbl.stop()

# ---- 5. a target outside allow is denied by the core ------------------------------------------
dbl = K8sDouble(tokens=[TOKEN], pod_ready=0.2, grace=0.1, rbac=ROLE).start()
dbl.add_deployment("prod", "payments", replicas=3)
d = daemon(dbl).start()
try:
    d.post_file(scenario("payments-memory"))

    def planned():
        for i in d.incidents():
            st, doc = d.json("GET", "/v1/incidents/" + i["id"])
            if st == 200 and doc.get("plan"):
                return doc
        return None

    doc = d.wait_for(planned, timeout=60, what="a plan for payments")
    a = doc["plan"][0]
    check(a["target"] == "deployment/prod/payments" and a["allowed"] is False and
          "allow" in (a["denied_reason"] or ""), "the plan's action is denied: %s"
          % a["denied_reason"])
    time.sleep(1)
    check(not [r for r in dbl.requests() if "/namespaces/prod/" in r["path"]],
          "nothing reached the double for deployment/prod/payments")
    check(dbl.mutating() == [], "zero mutating calls")
finally:
    d.cleanup()
    dbl.stop()
