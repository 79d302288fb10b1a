#!/usr/bin/env python3
"""TEST DOUBLE of the Kubernetes API server, for the kubernetes executor's tests.

This is not Kubernetes and not a conformance fake: it implements the few REST calls that
docs/executors/kubernetes.md lists (tests/data/kubernetes/README.md names the spec), with the
behaviour the executor relies on, and nothing else.

Served (JSON only, `Authorization: Bearer <token>` required on every /api and /apis call):

    GET/PATCH        /apis/apps/v1/namespaces/{ns}/deployments/{name}
    GET              /apis/apps/v1/namespaces/{ns}/deployments
    GET/PUT/PATCH    /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale
    GET              /api/v1/namespaces/{ns}/pods[?labelSelector=a%3Db,c%3Dd]
    GET/DELETE       /api/v1/namespaces/{ns}/pods/{name}
    GET              /apis/policy/v1/namespaces/{ns}/poddisruptionbudgets[?labelSelector=...]

Behaviour:
  - Deployments keep metadata.generation (bumped by every spec change) and
    status.observedGeneration (catches up `observe_delay` seconds later). A controller thread
    runs a RollingUpdate (maxSurge/maxUnavailable 25 %, as Kubernetes' defaults round them) over
    explicit pods: a new pod becomes ready `pod_ready` seconds after it is created, an old one is
    removed when enough pods are ready, a deleted pod disappears after `grace` seconds and its
    replacement is created at once. status replicas/updatedReplicas/readyReplicas/
    availableReplicas/unavailableReplicas and the Available/Progressing conditions follow.
  - A "stuck" deployment keeps the template it had when it was made stuck as its only good one:
    pods of any other template never become ready, so a rollout never converges and, after
    progressDeadlineSeconds without progress, Progressing turns False with reason
    ProgressDeadlineExceeded. Restoring the old template (a rollback) converges again.
    "unhealthy" makes every pod of the deployment unready (the service got worse).
  - PATCH accepts application/strategic-merge-patch+json and application/merge-patch+json,
    both applied as a JSON merge patch (RFC 7386). For what the executor sends (maps, scalars,
    and lists given whole, as a rollback's pod template does) that is what the API server
    does; a strategic-merge directive ($patch, $retainKeys, $setElementOrder/...,
    $deleteFromPrimitiveList/...), whose meaning differs, is refused with 422 rather than
    applied wrongly. Other patch types get 415.
    metadata.resourceVersion in a patch or a PUT body is a precondition (409 Conflict).
  - DELETE of a pod honours DeleteOptions preconditions.uid (409), gracePeriodSeconds and
    dryRun=All.
  - With `rbac` (Role rules, e.g. load_role_rules("packaging/kubernetes/rbac-executor.yaml"))
    every call outside the Role is answered 403 like the real authorizer, so tests prove the
    shipped Role is enough for what the executor does.
  - Errors are Status objects (kind Status, status Failure, message, reason, details, code):
    401 without a known token, 403 when the token may not touch the namespace or is read-only,
    404, 409, 415, 422 (details.causes), and whatever a test injects.
  - Every API request is recorded (method, path, query, headers of interest, body, status) so a
    test can assert exactly which calls were made; mutating() lists the non-GET ones.

Use it in-process (`K8sDouble(...).start()`) or as a process:

    k8s_double.py --port 0 --port-file F --token T [--fixture objects.json]

and drive it over its admin routes (no auth, not recorded): POST /_double/deployments,
/_double/pdbs, /_double/tokens, /_double/stuck, /_double/unhealthy, /_double/fault,
/_double/reset (clears the request log and the faults); GET /_double/requests, /_double/deployments/{ns}/{name}, /_double/pods/{ns}.
"""
import argparse
import copy
import hashlib
import http.server
import json
import math
import os
import random
import re
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

RESTART_ANN = "kubectl.kubernetes.io/restartedAt"


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def status_obj(code, reason, message, details=None):
    o = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if details:
        o["details"] = details
    return o


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.body = status_obj(code, reason, message, details)


def load_role_rules(path):
    """The rules of the (first) Role in a manifest such as packaging/kubernetes/
    rbac-executor.yaml. A small reader for that file's shape (standard library only): rule
    entries start with "- apiGroups:" and carry apiGroups/resources/verbs as flow lists."""
    rules, in_role, rule = [], False, None
    with open(path) as f:
        for line in f:
            text = line.split("#", 1)[0].rstrip()
            if text.startswith("kind:"):
                in_role = text.split(":", 1)[1].strip() == "Role"
                continue
            if text == "---":
                in_role = False
                continue
            if not in_role:
                continue
            m = re.match(r"^(- |  )(apiGroups|resources|verbs):\s*(\[.*\])\s*$", text)
            if not m:
                continue
            if m.group(1) == "- ":
                rule = {}
                rules.append(rule)
            rule[m.group(2)] = json.loads(m.group(3))
    return rules


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def prune(v):
    if isinstance(v, dict):
        out = {k: prune(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x != {}}
    return v


def scaled(value, total, round_up):
    """An int or a percentage of total, rounded as Kubernetes rounds maxSurge (up) and
    maxUnavailable (down)."""
    if isinstance(value, str) and value.endswith("%"):
        f = float(value[:-1]) * total / 100.0
        return int(math.ceil(f)) if round_up else int(math.floor(f))
    return int(value)


def selector_text(match_labels):
    return ",".join("%s=%s" % (k, v) for k, v in sorted(match_labels.items()))


def parse_selector(text):
    out = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "==" in part:
            k, v = part.split("==", 1)
        elif "=" in part:
            k, v = part.split("=", 1)
        else:
            raise ApiError(400, "BadRequest", "unable to parse requirement: %r" % part)
        out[k.strip()] = v.strip()
    return out


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


class Deployment:
    def __init__(self, dbl, ns, name, replicas, labels, annotations, template_annotations,
                 progress_deadline):
        self.ns, self.name = ns, name
        self.uid = str(uuid.uuid4())
        self.created = time.time()
        self.labels = dict(labels or {"app": name})
        self.annotations = dict(annotations or {})
        self.selector = dict(self.labels)
        self.spec = {
            "replicas": replicas,
            "selector": {"matchLabels": dict(self.selector)},
            "template": {"metadata": {"labels": dict(self.selector)},
                         "spec": {"containers": [{"name": name,
                                                  "image": "registry.example/%s:v1" % name}]}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "progressDeadlineSeconds": progress_deadline,
            "revisionHistoryLimit": 10,
        }
        if template_annotations:
            self.spec["template"]["metadata"]["annotations"] = dict(template_annotations)
        self.generation = 1
        self.observed = 1
        self.observe_at = 0.0
        self.rv = dbl.next_rv()
        self.stuck_hash = None
        self.unhealthy = False
        self.last_progress = time.time()
        self.progress_sig = None
        self.status = {}

    def template_hash(self):
        # Empty maps are absent maps (omitempty), as the API server stores them.
        raw = json.dumps(prune(self.spec["template"]), sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:10]


class K8sDouble:
    """The double's state and servers. Every public method is thread-safe."""

    def __init__(self, tokens=("test-token",), pod_ready=0.3, grace=0.2, observe_delay=0.1,
                 progress_deadline=600, tls_cert=None, tls_key=None, client_ca=None,
                 tick=0.05, seed=7, rbac=None):
        self.lock = threading.RLock()
        self.tokens = {}
        for t in tokens:
            self.set_token(t)
        self.pod_ready = pod_ready
        self.grace = grace
        self.observe_delay = observe_delay
        self.progress_deadline = progress_deadline
        self.tls = (tls_cert, tls_key, client_ca) if tls_cert else None
        self.tick_s = tick
        self.rbac = rbac  # Role rules every token is limited to (None: no RBAC)
        self.rbac_denials = []
        self.rng = random.Random(seed)
        self._rv = 1000
        self.deployments = {}
        self.pods = {}  # (ns, name) -> pod dict (internal fields prefixed with "_")
        self.pdbs = {}
        self.faults = []
        self.log = []
        self.server = None
        self.port = None
        self._stop = threading.Event()
        self._threads = []

    # ---- setup (tests) ---------------------------------------------------------------------

    def next_rv(self):
        self._rv += 1
        return self._rv

    def set_token(self, token, user="system:serviceaccount:sentinel:sentineld", namespaces=None,
                  readonly=False):
        with self.lock:
            self.tokens[token] = {"user": user, "namespaces": namespaces, "readonly": readonly}

    def clear_tokens(self):
        with self.lock:
            self.tokens = {}

    def add_deployment(self, ns, name, replicas=3, labels=None, annotations=None,
                       template_annotations=None, progress_deadline=None, ready=True):
        """A deployment whose pods exist (and are ready unless ready=False) from the start."""
        with self.lock:
            d = Deployment(self, ns, name, replicas, labels, annotations, template_annotations,
                           progress_deadline or self.progress_deadline)
            self.deployments[(ns, name)] = d
            now = time.time()
            for _ in range(replicas):
                p = self._new_pod(d, now, ready_at=now - 1)
                if not ready:
                    p["_ready_at"] = None
            self._reconcile(d, now)
            return self._deployment_json(d)

    def add_pdb(self, ns, name, match_labels, min_available=None, max_unavailable=None):
        with self.lock:
            spec = {"selector": {"matchLabels": dict(match_labels)}}
            if min_available is not None:
                spec["minAvailable"] = min_available
            if max_unavailable is not None:
                spec["maxUnavailable"] = max_unavailable
            self.pdbs[(ns, name)] = {"uid": str(uuid.uuid4()), "spec": spec,
                                     "rv": self.next_rv()}

    def set_stuck(self, ns, name, stuck=True):
        """Pods of any template but the current one never become ready."""
        with self.lock:
            d = self.deployments[(ns, name)]
            d.stuck_hash = d.template_hash() if stuck else None

    def set_unhealthy(self, ns, name, unhealthy=True):
        with self.lock:
            self.deployments[(ns, name)].unhealthy = unhealthy

    def fault(self, method=None, path=None, code=None, reason=None, message=None, times=1,
              delay=0.0, apply=True, causes=None):
        """Inject a fault into the next `times` requests whose method equals `method` (any if
        None) and whose path contains `path`: answer `code` with a Status, or (without a code)
        answer normally after `delay` seconds (applied first when `apply`, else applied after
        the delay)."""
        with self.lock:
            self.faults.append({"method": method, "path": path, "code": code, "reason": reason,
                                "message": message, "times": times, "delay": delay,
                                "apply": apply, "causes": causes})

    def clear_faults(self):
        with self.lock:
            self.faults = []

    def reset_log(self):
        with self.lock:
            self.log = []

    def requests(self):
        with self.lock:
            return copy.deepcopy(self.log)

    def mutating(self):
        return [r for r in self.requests() if r["method"] not in ("GET", "HEAD")]

    def deployment(self, ns, name):
        with self.lock:
            d = self.deployments.get((ns, name))
            return self._deployment_json(d) if d else None

    def pod_list(self, ns, selector=None):
        with self.lock:
            return [self._pod_json(p) for p in self._pods_in(ns, selector or {})]

    def wait_converged(self, ns, name, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            d = self.deployment(ns, name)
            s = d["status"]
            r = d["spec"]["replicas"]
            if (s.get("observedGeneration", 0) >= d["metadata"]["generation"]
                    and s.get("updatedReplicas", 0) == r and s.get("replicas", 0) == r
                    and s.get("availableReplicas", 0) == r and s.get("readyReplicas", 0) == r):
                return d
            time.sleep(0.05)
        raise AssertionError("deployment %s/%s did not converge" % (ns, name))

    # ---- simulation --------------------------------------------------------------------------

    def _new_pod(self, d, now, ready_at=None, hash_=None):
        h = hash_ or d.template_hash()
        while True:
            name = "%s-%s-%s" % (d.name, h[:10], "".join(
                self.rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5)))
            if (d.ns, name) not in self.pods:
                break
        labels = dict(d.spec["template"]["metadata"].get("labels", {}))
        labels["pod-template-hash"] = h[:10]
        pod = {"_ns": d.ns, "_name": name, "_uid": str(uuid.uuid4()), "_labels": labels,
               "_created": now, "_ready_at": ready_at, "_deleting": None, "_owner": d.name,
               "_hash": h, "_rv": self.next_rv()}
        if ready_at is None and (d.stuck_hash is None or h == d.stuck_hash):
            pod["_ready_at"] = now + self.pod_ready
        self.pods[(d.ns, name)] = pod
        return pod

    def _ready(self, d, p, now):
        return (p["_deleting"] is None and p["_ready_at"] is not None and now >= p["_ready_at"]
                and not (d and d.unhealthy))

    def _dep_pods(self, d):
        return [p for p in self.pods.values() if p["_ns"] == d.ns and p["_owner"] == d.name]

    def _reconcile(self, d, now):
        if d.generation > d.observed and now >= d.observe_at:
            d.observed = d.generation
        for p in self._dep_pods(d):
            if p["_deleting"] is not None and now >= p["_deleting"]:
                del self.pods[(p["_ns"], p["_name"])]
        h = d.template_hash()
        want = d.spec["replicas"]
        if d.observed >= d.generation:
            live = [p for p in self._dep_pods(d) if p["_deleting"] is None]
            new = [p for p in live if p["_hash"] == h]
            old = [p for p in live if p["_hash"] != h]
            ru = d.spec["strategy"].get("rollingUpdate", {})
            surge = scaled(ru.get("maxSurge", "25%"), want, True)
            unavail = scaled(ru.get("maxUnavailable", "25%"), want, False)
            if surge == 0 and unavail == 0:
                unavail = 1
            if not old:
                if len(new) < want:
                    for _ in range(want - len(new)):
                        self._new_pod(d, now)
                elif len(new) > want:
                    extra = sorted(new, key=lambda p: (self._ready(d, p, now), -p["_created"]))
                    for p in extra[:len(new) - want]:
                        p["_deleting"] = now
            else:
                total = len(new) + len(old)
                if len(new) < want and total < want + surge:
                    for _ in range(min(want - len(new), want + surge - total)):
                        new.append(self._new_pod(d, now))
                # Old pods that are not ready go first; ready ones only while enough stay ready.
                for p in [p for p in old if not self._ready(d, p, now)]:
                    p["_deleting"] = now
                old = [p for p in old if p["_deleting"] is None]
                ready = sum(1 for p in new + old if self._ready(d, p, now))
                removable = ready - (want - unavail)
                for p in sorted(old, key=lambda p: p["_created"]):
                    if removable <= 0:
                        break
                    p["_deleting"] = now
                    removable -= 1
                # Scaling down during a rollout: drop surplus new pods.
                new = [p for p in new if p["_deleting"] is None]
                if len(new) > want:
                    for p in new[want:]:
                        p["_deleting"] = now
        self._update_status(d, now, h)

    def _update_status(self, d, now, h):
        want = d.spec["replicas"]
        live = [p for p in self._dep_pods(d) if p["_deleting"] is None]
        updated = [p for p in live if p["_hash"] == h]
        ready = sum(1 for p in live if self._ready(d, p, now))
        ready_updated = sum(1 for p in updated if self._ready(d, p, now))
        sig = (d.observed, len(updated), ready_updated, len(live))
        if sig != d.progress_sig:
            d.progress_sig = sig
            d.last_progress = now
        complete = (d.observed >= d.generation and len(updated) == want and len(live) == want
                    and ready == want)
        ru = d.spec["strategy"].get("rollingUpdate", {})
        unavail = scaled(ru.get("maxUnavailable", "25%"), want, False)
        if complete:
            prog = ("True", "NewReplicaSetAvailable",
                    'ReplicaSet "%s-%s" has successfully progressed.' % (d.name, h))
        elif now - d.last_progress > d.spec.get("progressDeadlineSeconds", 600):
            prog = ("False", "ProgressDeadlineExceeded",
                    'ReplicaSet "%s-%s" has timed out progressing.' % (d.name, h))
        else:
            prog = ("True", "ReplicaSetUpdated",
                    'ReplicaSet "%s-%s" is progressing.' % (d.name, h))
        avail_ok = ready >= want - unavail
        status = {
            "observedGeneration": d.observed,
            "replicas": len(live),
            "updatedReplicas": len(updated),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, len(live) - ready),
            "conditions": [
                {"type": "Available", "status": "True" if avail_ok else "False",
                 "reason": "MinimumReplicasAvailable" if avail_ok else
                 "MinimumReplicasUnavailable",
                 "message": "Deployment has minimum availability." if avail_ok else
                 "Deployment does not have minimum availability."},
                {"type": "Progressing", "status": prog[0], "reason": prog[1],
                 "message": prog[2]},
            ],
        }
        if status != d.status:
            d.status = status
            d.rv = self.next_rv()

    def _controller(self):
        while not self._stop.wait(self.tick_s):
            with self.lock:
                now = time.time()
                for d in list(self.deployments.values()):
                    self._reconcile(d, now)
                # Bare pods (no deployment) only disappear.
                for key, p in list(self.pods.items()):
                    if p["_owner"] not in [d.name for d in self.deployments.values()
                                           if d.ns == p["_ns"]]:
                        if p["_deleting"] is not None and now >= p["_deleting"]:
                            del self.pods[key]

    # ---- JSON views ----------------------------------------------------------------------------

    def _deployment_json(self, d):
        md = {"name": d.name, "namespace": d.ns, "uid": d.uid,
              "resourceVersion": str(d.rv), "generation": d.generation,
              "creationTimestamp": rfc3339(d.created), "labels": dict(d.labels)}
        if d.annotations:
            md["annotations"] = dict(d.annotations)
        return {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": md,
                "spec": copy.deepcopy(d.spec), "status": copy.deepcopy(d.status)}

    def _scale_json(self, d):
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": d.name, "namespace": d.ns, "uid": d.uid,
                             "resourceVersion": str(d.rv),
                             "creationTimestamp": rfc3339(d.created)},
                "spec": {"replicas": d.spec["replicas"]},
                "status": {"replicas": d.status.get("replicas", 0),
                           "selector": selector_text(d.selector)}}

    def _pod_json(self, p):
        now = time.time()
        d = self.deployments.get((p["_ns"], p["_owner"]))
        ready = self._ready(d, p, now)
        md = {"name": p["_name"], "namespace": p["_ns"], "uid": p["_uid"],
              "resourceVersion": str(p["_rv"]), "creationTimestamp": rfc3339(p["_created"]),
              "labels": dict(p["_labels"])}
        if d:
            md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                      "name": "%s-%s" % (d.name, p["_hash"][:10]),
                                      "controller": True, "blockOwnerDeletion": True}]
        if p["_deleting"] is not None:
            md["deletionTimestamp"] = rfc3339(p["_deleting"])
            md["deletionGracePeriodSeconds"] = int(round(self.grace))
        started = p["_ready_at"] is not None and now >= p["_ready_at"]
        return {"kind": "Pod", "apiVersion": "v1", "metadata": md,
                "spec": {"containers": [{"name": p["_owner"]}]},
                "status": {"phase": "Running" if started else "Pending",
                           "conditions": [{"type": "Ready",
                                           "status": "True" if ready else "False"}],
                           "startTime": rfc3339(p["_created"])}}

    def _pdb_json(self, ns, name, b):
        sel = b["spec"]["selector"].get("matchLabels", {})
        now = time.time()
        pods = self._pods_in(ns, sel)
        expected = len(pods)
        healthy = 0
        for p in pods:
            d = self.deployments.get((p["_ns"], p["_owner"]))
            healthy += 1 if self._ready(d, p, now) else 0
        if "minAvailable" in b["spec"]:
            desired = scaled(b["spec"]["minAvailable"], expected, True)
        elif "maxUnavailable" in b["spec"]:
            desired = expected - scaled(b["spec"]["maxUnavailable"], expected, True)
        else:
            desired = expected
        return {"kind": "PodDisruptionBudget", "apiVersion": "policy/v1",
                "metadata": {"name": name, "namespace": ns, "uid": b["uid"],
                             "resourceVersion": str(b["rv"])},
                "spec": copy.deepcopy(b["spec"]),
                "status": {"currentHealthy": healthy, "desiredHealthy": max(0, desired),
                           "expectedPods": expected,
                           "disruptionsAllowed": max(0, healthy - max(0, desired)),
                           "observedGeneration": 1}}

    def _pods_in(self, ns, selector):
        return sorted((p for p in self.pods.values()
                       if p["_ns"] == ns and matches(selector, p["_labels"])),
                      key=lambda p: (p["_created"], p["_name"]))

    # ---- API ---------------------------------------------------------------------------------

    def _authorize(self, headers, method, ns, resource, group, name):
        auth = headers.get("Authorization", "")
        tok = auth[7:] if auth.startswith("Bearer ") else None
        info = self.tokens.get(tok) if tok else None
        if info is None and headers.get("X-Double-Client-CN"):
            info = {"user": headers["X-Double-Client-CN"], "namespaces": None, "readonly": False}
        if info is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        verb = {"GET": "get", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}.get(
            method, method.lower())
        if method == "GET" and not name:
            verb = "list"
        denied = (info["namespaces"] is not None and ns not in info["namespaces"]) or \
            (info["readonly"] and method != "GET")
        if self.rbac is not None and not any(
                group in r.get("apiGroups", []) and resource in r.get("resources", []) and
                verb in r.get("verbs", []) for r in self.rbac):
            denied = True
            self.rbac_denials.append((group, resource, verb))
        if denied:
            what = '%s "%s"' % (resource if not group else resource + "." + group, name) \
                if name else resource + ("." + group if group else "")
            raise ApiError(403, "Forbidden",
                           '%s is forbidden: User "%s" cannot %s resource "%s" in API group '
                           '"%s" in the namespace "%s"' % (what, info["user"], verb, resource,
                                                          group, ns),
                           {"name": name, "group": group, "kind": resource})
        return info

    def handle(self, method, path, query, headers, body):
        """One API call. Returns (code, json). Raises nothing."""
        try:
            return self._route(method, path, query, headers, body)
        except ApiError as e:
            return e.code, e.body

    def _route(self, method, path, query, headers, raw):
        m = re.match(r"^/apis/apps/v1/namespaces/([^/]+)/deployments(?:/([^/]+)(/scale)?)?$",
                     path)
        if m:
            ns, name, scale = m.group(1), m.group(2), m.group(3)
            res = "deployments/scale" if scale else "deployments"
            self._authorize(headers, method, ns, res, "apps", name)
            if not name:
                if method != "GET":
                    raise ApiError(405, "MethodNotAllowed", "the server does not allow this "
                                   "method on the requested resource")
                sel = parse_selector(query.get("labelSelector"))
                items = [self._deployment_json(d) for (n, _), d in sorted(self.deployments.items())
                         if n == ns and matches(sel, d.labels)]
                return 200, {"kind": "DeploymentList", "apiVersion": "apps/v1",
                             "metadata": {"resourceVersion": str(self._rv)}, "items": items}
            d = self.deployments.get((ns, name))
            if d is None:
                raise ApiError(404, "NotFound", 'deployments.apps "%s" not found' % name,
                               {"name": name, "group": "apps", "kind": "deployments"})
            if scale:
                return self._scale(d, method, headers, raw)
            return self._deployment(d, method, headers, raw)
        m = re.match(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?$", path)
        if m:
            ns, name = m.group(1), m.group(2)
            self._authorize(headers, method, ns, "pods", "", name)
            if not name:
                if method != "GET":
                    raise ApiError(405, "MethodNotAllowed", "method not allowed")
                sel = parse_selector(query.get("labelSelector"))
                return 200, {"kind": "PodList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": str(self._rv)},
                             "items": [self._pod_json(p) for p in self._pods_in(ns, sel)]}
            p = self.pods.get((ns, name))
            if p is None:
                raise ApiError(404, "NotFound", 'pods "%s" not found' % name,
                               {"name": name, "kind": "pods"})
            if method == "GET":
                return 200, self._pod_json(p)
            if method == "DELETE":
                return self._delete_pod(p, query, raw)
            raise ApiError(405, "MethodNotAllowed", "method not allowed")
        m = re.match(r"^/apis/policy/v1/namespaces/([^/]+)/poddisruptionbudgets$", path)
        if m:
            ns = m.group(1)
            self._authorize(headers, method, ns, "poddisruptionbudgets", "policy", None)
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "method not allowed")
            return 200, {"kind": "PodDisruptionBudgetList", "apiVersion": "policy/v1",
                         "metadata": {"resourceVersion": str(self._rv)},
                         "items": [self._pdb_json(n, nm, b)
                                   for (n, nm), b in sorted(self.pdbs.items()) if n == ns]}
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _json_body(self, raw):
        try:
            v = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError as e:
            raise ApiError(400, "BadRequest", "error decoding body: %s" % e)
        return v

    def _patch_type(self, headers):
        ct = headers.get("Content-Type", "").split(";")[0].strip()
        if ct in ("application/strategic-merge-patch+json", "application/merge-patch+json"):
            return ct
        raise ApiError(415, "UnsupportedMediaType",
                       'the body of the request was in an unknown format - accepted media '
                       'types include: application/merge-patch+json, '
                       'application/strategic-merge-patch+json (this double)')

    def _refuse_directives(self, ct, patch, path=""):
        """Strategic-merge directives would be applied wrongly as a JSON merge patch: refuse
        them loudly, so a test fails instead of passing on a double's approximation."""
        if ct != "application/strategic-merge-patch+json":
            return
        items = patch.items() if isinstance(patch, dict) else (
            enumerate(patch) if isinstance(patch, list) else ())
        for k, v in items:
            if isinstance(k, str) and k.startswith("$"):
                raise ApiError(422, "Invalid", "strategic-merge directive %s at %s is not "
                               "implemented by this double" % (k, path or "."))
            self._refuse_directives(ct, v, "%s.%s" % (path, k))

    def _check_rv(self, kind, name, rv, want):
        if rv is not None and str(rv) != str(want):
            raise ApiError(409, "Conflict",
                           'Operation cannot be fulfilled on %s "%s": the object has been '
                           'modified; please apply your changes to the latest version and try '
                           'again' % (kind, name), {"name": name, "group": "apps",
                                                     "kind": "deployments"})

    def _invalid(self, d, causes):
        raise ApiError(422, "Invalid", 'Deployment.apps "%s" is invalid: %s' % (
            d.name, "; ".join("%s: %s" % (c["field"], c["message"]) for c in causes)),
            {"name": d.name, "group": "apps", "kind": "Deployment", "causes": causes})

    def _set_spec(self, d, spec):
        r = spec.get("replicas")
        causes = []
        if not isinstance(r, int) or isinstance(r, bool) or r < 0:
            causes.append({"reason": "FieldValueInvalid", "field": "spec.replicas",
                           "message": "Invalid value: %s: must be greater than or equal to 0"
                           % json.dumps(r)})
        ann = spec.get("template", {}).get("metadata", {}).get("annotations", {}) or {}
        for k, v in ann.items():
            if not isinstance(v, str):
                causes.append({"reason": "FieldValueInvalid",
                               "field": "spec.template.metadata.annotations",
                               "message": "Invalid value: %s: annotation values must be "
                               "strings" % json.dumps(v)})
        if causes:
            self._invalid(d, causes)
        if spec != d.spec:
            d.spec = spec
            d.generation += 1
            d.observe_at = time.time() + self.observe_delay
            d.last_progress = time.time()
            d.rv = self.next_rv()

    def _deployment(self, d, method, headers, raw):
        if method == "GET":
            return 200, self._deployment_json(d)
        if method != "PATCH":
            raise ApiError(405, "MethodNotAllowed", "method not allowed (this double)")
        ct = self._patch_type(headers)
        patch = self._json_body(raw)
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "patch body must be a JSON object")
        self._refuse_directives(ct, patch)
        md = patch.get("metadata") or {}
        self._check_rv("deployments.apps", d.name, md.get("resourceVersion"), d.rv)
        cur = {"metadata": {"labels": d.labels, "annotations": d.annotations},
               "spec": d.spec}
        new = merge_patch(cur, {k: v for k, v in patch.items() if k in ("metadata", "spec")})
        nmd = new.get("metadata") or {}
        anns = nmd.get("annotations") or {}
        for k, v in anns.items():
            if not isinstance(v, str):
                self._invalid(d, [{"reason": "FieldValueInvalid",
                                   "field": "metadata.annotations",
                                   "message": "Invalid value: %s" % json.dumps(v)}])
        self._set_spec(d, prune(new.get("spec") or {}))
        if anns != d.annotations or (nmd.get("labels") or {}) != d.labels:
            d.annotations = dict(anns)
            d.labels = dict(nmd.get("labels") or {})
            d.rv = self.next_rv()
        self._reconcile(d, time.time())
        return 200, self._deployment_json(d)

    def _scale(self, d, method, headers, raw):
        if method == "GET":
            return 200, self._scale_json(d)
        ct = None
        if method == "PATCH":
            ct = self._patch_type(headers)
        elif method != "PUT":
            raise ApiError(405, "MethodNotAllowed", "method not allowed")
        body = self._json_body(raw)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "body must be a JSON object")
        self._refuse_directives(ct, body)
        self._check_rv("deployments.apps", d.name,
                       (body.get("metadata") or {}).get("resourceVersion"), d.rv)
        cur = {"spec": {"replicas": d.spec["replicas"]}}
        new = merge_patch(cur, body) if method == "PATCH" else body
        r = (new.get("spec") or {}).get("replicas")
        if not isinstance(r, int) or isinstance(r, bool) or r < 0:
            raise ApiError(422, "Invalid",
                           'Scale.autoscaling "%s" is invalid: spec.replicas: Invalid value: %s:'
                           ' must be greater than or equal to 0' % (d.name, json.dumps(r)),
                           {"name": d.name, "group": "autoscaling", "kind": "Scale",
                            "causes": [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                                        "message": "Invalid value: %s: must be greater than or "
                                        "equal to 0" % json.dumps(r)}]})
        spec = copy.deepcopy(d.spec)
        spec["replicas"] = r
        self._set_spec(d, spec)
        self._reconcile(d, time.time())
        return 200, self._scale_json(d)

    def _delete_pod(self, p, query, raw):
        opts = self._json_body(raw) or {}
        if not isinstance(opts, dict):
            raise ApiError(400, "BadRequest", "DeleteOptions must be an object")
        pre = (opts.get("preconditions") or {}).get("uid")
        if pre is not None and pre != p["_uid"]:
            raise ApiError(409, "Conflict",
                           'Precondition failed: UID in precondition: %s, UID in object meta: %s'
                           % (pre, p["_uid"]), {"name": p["_name"], "kind": "pods"})
        dry = query.get("dryRun") == "All" or opts.get("dryRun") == ["All"]
        if dry or p["_deleting"] is not None:
            return 200, self._pod_json(p)
        grace = opts.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        now = time.time()
        p["_deleting"] = now + (min(float(grace), self.grace) if grace is not None
                                else self.grace)
        p["_rv"] = self.next_rv()
        d = self.deployments.get((p["_ns"], p["_owner"]))
        if d:
            self._reconcile(d, now)
        return 200, self._pod_json(p)

    # ---- faults, recording ------------------------------------------------------------------

    def _take_fault(self, method, path):
        for f in self.faults:
            if f["times"] <= 0:
                continue
            if f["method"] and f["method"] != method:
                continue
            if f["path"] and f["path"] not in path:
                continue
            f["times"] -= 1
            return dict(f)
        return None

    def serve_request(self, method, raw_path, headers, raw):
        """Record, apply faults, route. Returns (code, json)."""
        u = urllib.parse.urlsplit(raw_path)
        query = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        auth = headers.get("Authorization", "")
        with self.lock:
            rec = {"seq": len(self.log) + 1, "ts": time.time(), "method": method,
                   "path": u.path, "query": query, "raw_query": u.query,
                   "content_type": headers.get("Content-Type"),
                   "accept": headers.get("Accept"),
                   "user_agent": headers.get("User-Agent"),
                   "token": auth[7:] if auth.startswith("Bearer ") else None,
                   "client_cn": headers.get("X-Double-Client-CN"),
                   "body": body, "status": None}
            self.log.append(rec)
            fault = self._take_fault(method, u.path)
        if fault and fault["code"]:
            details = {"causes": fault["causes"]} if fault["causes"] else None
            code, out = fault["code"], status_obj(fault["code"], fault["reason"] or "Injected",
                                                  fault["message"] or "injected fault", details)
        elif fault and fault["delay"] and not fault["apply"]:
            time.sleep(fault["delay"])
            with self.lock:
                code, out = self.handle(method, u.path, query, headers, raw)
        else:
            with self.lock:
                code, out = self.handle(method, u.path, query, headers, raw)
            if fault and fault["delay"]:
                time.sleep(fault["delay"])
        with self.lock:
            rec["status"] = code
        return code, out

    # ---- admin (for tests driving the double from another process) ---------------------------

    def admin(self, method, path, body):
        parts = [p for p in path.split("/") if p][1:]  # drop "_double"
        b = body or {}
        if method == "GET" and parts == ["requests"]:
            return 200, {"requests": self.requests()}
        if method == "GET" and len(parts) == 3 and parts[0] == "deployments":
            d = self.deployment(parts[1], parts[2])
            return (200, d) if d else (404, {"error": "no such deployment"})
        if method == "GET" and len(parts) == 2 and parts[0] == "pods":
            return 200, {"items": self.pod_list(parts[1], b.get("selector"))}
        if method == "POST" and parts == ["deployments"]:
            return 200, self.add_deployment(
                b["namespace"], b["name"], b.get("replicas", 3), b.get("labels"),
                b.get("annotations"), b.get("template_annotations"),
                b.get("progress_deadline"), b.get("ready", True))
        if method == "POST" and parts == ["pdbs"]:
            self.add_pdb(b["namespace"], b["name"], b["match_labels"], b.get("min_available"),
                         b.get("max_unavailable"))
            return 200, {}
        if method == "POST" and parts == ["tokens"]:
            if b.get("replace"):
                self.clear_tokens()
            for t in b.get("tokens", []):
                self.set_token(t["token"], t.get("user", "system:serviceaccount:sentinel:"
                                                  "sentineld"), t.get("namespaces"),
                               t.get("readonly", False))
            return 200, {}
        if method == "POST" and parts == ["stuck"]:
            self.set_stuck(b["namespace"], b["name"], b.get("stuck", True))
            return 200, {}
        if method == "POST" and parts == ["unhealthy"]:
            self.set_unhealthy(b["namespace"], b["name"], b.get("unhealthy", True))
            return 200, {}
        if method == "POST" and parts == ["fault"]:
            self.fault(b.get("method"), b.get("path"), b.get("code"), b.get("reason"),
                       b.get("message"), b.get("times", 1), b.get("delay", 0.0),
                       b.get("apply", True), b.get("causes"))
            return 200, {}
        if method == "POST" and parts == ["reset"]:
            if b.get("log", True):
                self.reset_log()
            if b.get("faults", True):
                self.clear_faults()
            return 200, {}
        return 404, {"error": "unknown admin route"}

    # ---- server ------------------------------------------------------------------------------

    def start(self, port=0, host="127.0.0.1"):
        dbl = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _reply(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _any(self):
                raw = self._body()
                headers = {k: v for k, v in self.headers.items()}
                headers.pop("X-Double-Client-CN", None)  # only the TLS layer sets it
                cn = getattr(self.connection, "double_cn", None)
                if cn:
                    headers["X-Double-Client-CN"] = cn
                if self.path.startswith("/_double/"):
                    try:
                        body = json.loads(raw) if raw else None
                        code, out = dbl.admin(self.command, urllib.parse.urlsplit(
                            self.path).path, body)
                    except (KeyError, ValueError, TypeError) as e:
                        code, out = 400, {"error": str(e)}
                    self._reply(code, out)
                    return
                code, out = dbl.serve_request(self.command, self.path, headers, raw)
                self._reply(code, out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                # A client that went away (killed daemon, timed-out request) is routine here.
                if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
                    super().handle_error(request, client_address)

            def get_request(self):
                sock, addr = super().get_request()
                if dbl.tls:
                    sock = ctx.wrap_socket(sock, server_side=True)
                    cert = sock.getpeercert()
                    if cert:
                        for rdn in cert.get("subject", ()):
                            for k, v in rdn:
                                if k == "commonName":
                                    sock.double_cn = v
                return sock, addr

        ctx = None
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls[0], self.tls[1])
            if self.tls[2]:
                ctx.load_verify_locations(self.tls[2])
                ctx.verify_mode = ssl.CERT_OPTIONAL
        self.server = Server((host, port), Handler)
        self.port = self.server.server_address[1]
        for fn in (self.server.serve_forever, self._controller):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    def stop(self):
        self._stop.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def main():
    ap = argparse.ArgumentParser(description="TEST DOUBLE of the Kubernetes API server")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--token", action="append", default=[], help="accepted bearer token")
    ap.add_argument("--fixture", help="JSON {deployments: [...], pdbs: [...]} to load")
    ap.add_argument("--pod-ready", type=float, default=0.3)
    ap.add_argument("--grace", type=float, default=0.2)
    ap.add_argument("--progress-deadline", type=int, default=600)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca")
    ap.add_argument("--rbac", help="limit every token to the Role in this manifest")
    a = ap.parse_args()
    dbl = K8sDouble(tokens=a.token or ["test-token"], pod_ready=a.pod_ready, grace=a.grace,
                    progress_deadline=a.progress_deadline, tls_cert=a.tls_cert,
                    tls_key=a.tls_key, client_ca=a.client_ca,
                    rbac=load_role_rules(a.rbac) if a.rbac else None)
    if a.fixture:
        with open(a.fixture) as f:
            fx = json.load(f)
        for d in fx.get("deployments", []):
            dbl.admin("POST", "/_double/deployments", d)
        for b in fx.get("pdbs", []):
            dbl.admin("POST", "/_double/pdbs", b)
    dbl.start(a.port)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(dbl.port))
        os.rename(tmp, a.port_file)
    print("k8s_double listening on %s" % dbl.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        dbl.stop()


if __name__ == "__main__":
    sys.exit(main())
