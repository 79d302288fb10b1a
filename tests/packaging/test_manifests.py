"""Deployment artefacts hold their promises: every kustomize overlay renders, and the rendered
objects keep the invariants (probes, resources, non-root read-only containers, config from a
ConfigMap, secrets only by reference, least-privilege RBAC equal to the executor's, network
policy, disruption budget, service and monitor, the backup job); the container file is
multi-stage, non-root, with a health check; the Prometheus rules pass promtool and their unit
test; every metric the dashboard and the rules name is one the code exports."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import yaml

SRC = os.environ.get("SN_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
PKG = os.path.join(SRC, "packaging")


def check(cond, msg):
    if not cond:
        print("FAIL: " + msg)
        sys.exit(1)
    print("ok - " + msg)


def render(overlay):
    out = subprocess.run(["kubectl", "kustomize", os.path.join(PKG, "kubernetes", "overlays",
                                                                 overlay)],
                         capture_output=True, text=True)
    check(out.returncode == 0, "kustomize renders %s (%s)" % (overlay, out.stderr.strip()[:200]))
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def rules_of(docs):
    role = [d for d in docs if d["kind"] == "Role"][0]
    return sorted(json.dumps(r, sort_keys=True) for r in role["rules"])


if shutil.which("kubectl"):
    executor_rules = rules_of(list(yaml.safe_load_all(open(os.path.join(
        PKG, "kubernetes", "rbac-executor.yaml")))))
    for overlay in ("dev", "prod"):
        docs = render(overlay)
        kinds = {d["kind"] for d in docs}
        for k in ("Deployment", "ConfigMap", "ServiceAccount", "Role", "RoleBinding",
                  "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceMonitor", "CronJob",
                  "PersistentVolumeClaim"):
            check(k in kinds, "%s: has a %s" % (overlay, k))
        check("Secret" not in kinds, "%s: no Secret with values in the manifests" % overlay)
        check(all(d["metadata"].get("namespace") == ("sentinel-dev" if overlay == "dev"
                                                      else "sentinel")
                  for d in docs), "%s: every object in the overlay's namespace" % overlay)
        dep = [d for d in docs if d["kind"] == "Deployment"][0]
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        check("livenessProbe" in c and "readinessProbe" in c
              and c["readinessProbe"]["httpGet"]["path"] == "/health",
              "%s: liveness and readiness probes on /health" % overlay)
        check(all(k in c["resources"].get(x, {}) for x in ("requests", "limits")
                  for k in ("cpu", "memory")), "%s: requests and limits" % overlay)
        sc = c["securityContext"]
        check(pod["securityContext"]["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
              and sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"],
              "%s: non-root, read-only root, no privilege escalation, no capabilities" % overlay)
        envs = c.get("env", [])
        check(all("valueFrom" in e for e in envs) and envs,
              "%s: secrets only by reference (secretKeyRef)" % overlay)
        check(any(v.get("configMap", {}).get("name") == "sentinel-config"
                  for v in pod["volumes"]), "%s: sentinel.conf from the ConfigMap" % overlay)
        check(rules_of(docs) == executor_rules,
              "%s: the Role grants exactly what the kubernetes executor uses" % overlay)
        cron = [d for d in docs if d["kind"] == "CronJob"][0]
        check("backup" in json.dumps(cron), "%s: a CronJob backs the state store up" % overlay)
else:
    print("skip - kubectl not installed: manifests not rendered")

cf = open(os.path.join(PKG, "container", "Containerfile")).read()
check(len(re.findall(r"^FROM ", cf, re.M)) == 2 and "debian:12-slim" in cf,
      "Containerfile: multi-stage, runs on Debian 12 slim")
user = re.findall(r"^USER (\S+)", cf, re.M)
check(user and not user[-1].startswith("root"), "Containerfile: runs as a non-root user")
check(re.search(r"^HEALTHCHECK .*?/health", cf, re.M | re.S) is not None,
      "Containerfile: HEALTHCHECK on /health")

obs = os.path.join(PKG, "observability")
if shutil.which("promtool"):
    r = subprocess.run(["promtool", "check", "rules", os.path.join(obs, "sentinel-rules.yml")],
                       capture_output=True, text=True)
    check(r.returncode == 0, "promtool check rules")
    r = subprocess.run(["promtool", "test", "rules", "rules-test.yml"], cwd=obs,
                       capture_output=True, text=True)
    check(r.returncode == 0, "promtool test rules: %s" % r.stdout.strip().splitlines()[-1])

# Every sentinel_ metric named by the dashboard and the rules is exported by the code.
exported = set()
for f in glob.glob(os.path.join(SRC, "core", "*.c")) + glob.glob(
        os.path.join(SRC, "plugins", "*", "*", "*.c")):
    exported |= set(re.findall(r'"([a-z][a-z0-9_]*)"', open(f).read()))
exported |= {"incidents_%s_total" % s for s in ("resolved", "escalated", "rejected", "closed")}
named = set()
for f in (os.path.join(obs, "grafana-dashboard.json"), os.path.join(obs, "sentinel-rules.yml")):
    named |= set(re.findall(r"sentinel_([a-z0-9_]+)", open(f).read()))
missing = sorted(n for n in named if n not in exported)
check(not missing, "every metric the dashboard and rules name is exported (%d names)%s"
      % (len(named), ": missing " + ", ".join(missing) if missing else ""))
json.load(open(os.path.join(obs, "grafana-dashboard.json")))

# Terraform (JSON syntax; no terraform binary can be installed here, so `terraform fmt` and
# `validate` cannot run): every file parses, every module call names a module that exists and
# passes only variables it declares, and every variable without a default.
tf = os.path.join(PKG, "terraform")
root = json.load(open(os.path.join(tf, "main.tf.json")))
for name, call in root["module"].items():
    mdir = os.path.normpath(os.path.join(tf, call["source"]))
    declared = {}
    for f in glob.glob(os.path.join(mdir, "*.tf.json")):
        declared.update(json.load(open(f)).get("variable", {}))
    check(declared, "terraform module %s exists with variables" % name)
    passed = {k for k in call if k != "source"}
    unknown = passed - set(declared)
    missing = {k for k, v in declared.items() if "default" not in v} - passed
    check(not unknown and not missing, "terraform module %s: inputs match (unknown %s, missing %s)"
          % (name, sorted(unknown), sorted(missing)))
print("1..ok")
