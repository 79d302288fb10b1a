/**
 * @file k8s_verbs.c
 * The kubernetes executor's verbs as chains of API steps: assess (risk, downtime and blast
 * radius from live replicas, readiness and PodDisruptionBudgets), snapshot, execute (with
 * idempotency and dry runs), verify (rollout status with a deadline) and rollback.
 *
 * Idempotency: a deployment change carries the action's idempotency key in the deployment's
 * annotation sentinel.dev/idempotency-key, written in the same PATCH as the change (for
 * rollout_restart) or right after the scale (for scale_deployment, whose absolute replica count
 * makes a repeat harmless anyway). execute() reads the deployment first and skips the mutation
 * when the key is already there, so a workflow resumed after a crash never repeats it, and
 * verify() reports "not applied" when it is missing, which lets the core run it once. A pod
 * delete carries the pod's uid as a precondition, so it can only ever delete the pod it looked
 * at; a pod that is gone counts as restarted.
 */
#include "k8s-internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PATH_MAX_LEN 640
#define LIST_PATH_LEN 2400 /* a namespace, a label selector percent-encoded */
#define SEL_LEN 512

/* ---- JSON helpers ------------------------------------------------------------------------- */

static json_t *jpath(const json_t *o, const char *a, const char *b, const char *c)
{
    const json_t *v = json_object_get(o, a);
    if (b)
        v = json_object_get(v, b);
    if (c)
        v = json_object_get(v, c);
    return (json_t *)v;
}

static json_int_t jint(const json_t *o, const char *a, const char *b)
{
    return json_integer_value(jpath(o, a, b, NULL));
}

static const char *jstr(const json_t *o, const char *a, const char *b, const char *c)
{
    return json_string_value(jpath(o, a, b, c));
}

static const char *dep_ann(const json_t *dep, const char *key)
{
    return json_string_value(json_object_get(jpath(dep, "metadata", "annotations", NULL), key));
}

static const char *tmpl_ann(const json_t *dep, const char *key)
{
    const json_t *t = jpath(dep, "spec", "template", "metadata");
    return json_string_value(json_object_get(json_object_get(t, "annotations"), key));
}

static int pod_ready(const json_t *pod)
{
    size_t i;
    json_t *c;
    if (jpath(pod, "metadata", "deletionTimestamp", NULL))
        return 0;
    json_array_foreach(jpath(pod, "status", "conditions", NULL), i, c)
    {
        const char *t = json_string_value(json_object_get(c, "type"));
        const char *s = json_string_value(json_object_get(c, "status"));
        if (t && strcmp(t, "Ready") == 0)
            return s && strcmp(s, "True") == 0;
    }
    return 0;
}

/* Seconds since the epoch of an RFC 3339 UTC timestamp ("2024-05-01T10:00:00Z"), or -1. */
static int64_t parse_ts(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                     &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

/* The creation time (ms) of a UUIDv7 incident id: its first 48 bits; -1 when not a v7. */
static int64_t uuid7_ms(const char *id)
{
    if (!id || strlen(id) < 36 || id[8] != '-' || id[14] != '7')
        return -1;
    char hex[13];
    memcpy(hex, id, 8);
    memcpy(hex + 8, id + 9, 4);
    hex[12] = 0;
    for (int i = 0; i < 12; i++)
        if (!isxdigit((unsigned char)hex[i]))
            return -1;
    return (int64_t)strtoll(hex, NULL, 16);
}

/* An int or percentage of total, rounded up (maxSurge) or down (maxUnavailable). */
static int64_t int_or_pct(const json_t *v, int64_t total, int round_up, int64_t def)
{
    if (json_is_integer(v))
        return json_integer_value(v);
    const char *s = json_string_value(v);
    if (!s)
        return def;
    double pct = strtod(s, NULL);
    double f = pct * (double)total / 100.0;
    int64_t fl = (int64_t)f;
    return round_up && (double)fl < f ? fl + 1 : fl;
}

/* Compact JSON text of @p v, which is consumed. Ownership: caller frees. */
static char *dump_new(json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    return s;
}

/* ---- paths ---------------------------------------------------------------------------------- */

static void dep_path(const k8s_op_t *op, const char *suffix, char *out, size_t len)
{
    snprintf(out, len, "/apis/apps/v1/namespaces/%s/deployments/%s%s", op->ns, op->name, suffix);
}

static void pod_path(const k8s_op_t *op, char *out, size_t len)
{
    snprintf(out, len, "/api/v1/namespaces/%s/pods/%s", op->ns, op->name);
}

/* Percent-encode @p in for a query value. */
static void qenc(const char *in, char *out, size_t len)
{
    static const char hexd[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < len; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hexd[*p >> 4];
            out[o++] = hexd[*p & 15];
        }
    }
    out[o] = 0;
}

/* "k=v,k2=v2" from a label map, skipping labels that differ between pods of one workload. */
static int selector_of(const json_t *labels, int for_peers, char *out, size_t len)
{
    const char *k;
    json_t *v;
    size_t o = 0;
    out[0] = 0;
    json_object_foreach((json_t *)labels, k, v)
    {
        if (for_peers &&
            (strcmp(k, "pod-template-hash") == 0 || strcmp(k, "controller-revision-hash") == 0 ||
             strcmp(k, "statefulset.kubernetes.io/pod-name") == 0 ||
             strcmp(k, "apps.kubernetes.io/pod-index") == 0))
            continue;
        if (!json_is_string(v))
            continue;
        int n = snprintf(out + o, len - o, "%s%s=%s", o ? "," : "", k, json_string_value(v));
        if (n < 0 || (size_t)n >= len - o)
            return -1;
        o += (size_t)n;
    }
    return 0;
}

static int labels_match(const json_t *sel, const json_t *labels)
{
    const char *k;
    json_t *v;
    if (!json_is_object(sel) || json_object_size(sel) == 0)
        return 0; /* an empty selector selects everything; do not guess with it */
    json_object_foreach((json_t *)sel, k, v)
    {
        const char *have = json_string_value(json_object_get(labels, k));
        if (!have || !json_is_string(v) || strcmp(have, json_string_value(v)) != 0)
            return 0;
    }
    return 1;
}

/* The first PDB of @p list whose selector matches @p labels, or NULL. */
static json_t *pdb_for(const json_t *list, const json_t *labels)
{
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(list, "items"), i, b)
    {
        if (labels_match(jpath(b, "spec", "selector", "matchLabels"), labels))
            return b;
    }
    return NULL;
}

static json_t *pdb_view(const json_t *b)
{
    if (!b)
        return json_null();
    return json_pack("{s:s?,s:I,s:I,s:I}", "name", jstr(b, "metadata", "name", NULL),
                     "disruptionsAllowed", jint(b, "status", "disruptionsAllowed"),
                     "desiredHealthy", jint(b, "status", "desiredHealthy"), "currentHealthy",
                     jint(b, "status", "currentHealthy"));
}

/* ---- validation ------------------------------------------------------------------------------ */

static int dns_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return 0;
    for (const char *p = s; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' || *p == '.'))
            return 0;
    return 1;
}

static int ns_allowed(const k8s_t *k, const char *ns)
{
    if (k->namespaces) {
        for (const char *const *n = k->namespaces; *n; n++)
            if (strcmp(*n, ns) == 0)
                return 1;
        return 0;
    }
    return !k->conn.namespace || strcmp(k->conn.namespace, ns) == 0;
}

/* replicas param: an integer or digits; -1 when missing, -2 when unusable. */
static int64_t replicas_param(const json_t *params)
{
    const json_t *v = json_object_get(params, "replicas");
    if (!v)
        return -1;
    if (json_is_integer(v))
        return json_integer_value(v) >= 0 && json_integer_value(v) <= K8S_REPLICAS_MAX
                   ? json_integer_value(v)
                   : -2;
    const char *s = json_string_value(v);
    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 6)
        return -2;
    long n = strtol(s, NULL, 10);
    return n <= K8S_REPLICAS_MAX ? n : -2;
}

/* ---- assess --------------------------------------------------------------------------------- */

static void assess_result(k8s_op_t *op, const char *risk, int64_t downtime, int64_t blast,
                          const char *detail, json_t *reasons, json_t *live)
{
    json_t *res = json_pack("{s:s,s:I,s:I,s:s,s:o,s:o}", "risk", risk, "downtime_s",
                            (json_int_t)downtime, "blast_radius", (json_int_t)blast, "blast_detail",
                            detail, "reasons", reasons, "live", live ? live : json_null());
    k8s_finish(op, res ? 0 : SN_ENOMEM, res);
    json_decref(res);
}

static void reason(json_t *reasons, const char *fmt, ...) SN_PRINTF(2, 3);
static void reason(json_t *reasons, const char *fmt, ...)
{
    char buf[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_array_append_new(reasons, json_string(buf));
}

static json_t *dep_live(const json_t *dep, const json_t *pdb)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:o}", "replicas", jint(dep, "spec", "replicas"), "ready",
                     jint(dep, "status", "readyReplicas"), "available",
                     jint(dep, "status", "availableReplicas"), "updated",
                     jint(dep, "status", "updatedReplicas"), "pdb", pdb_view(pdb));
}

static void assess_deployment(k8s_op_t *op)
{
    k8s_t *k = op->k;
    json_t *dep = json_object_get(op->work, "deployment");
    json_t *tlabels = json_object_get(jpath(dep, "spec", "template", "metadata"), "labels");
    json_t *pdb = pdb_for(json_object_get(op->work, "pdbs"), tlabels);
    int64_t R = jint(dep, "spec", "replicas");
    int64_t ready = jint(dep, "status", "readyReplicas");
    json_t *reasons = json_array();
    char detail[300];
    const char *risk = "low";
    int64_t downtime = 0, blast;
    json_t *pdb_allowed = pdb ? jpath(pdb, "status", "disruptionsAllowed", NULL) : NULL;
    if (op->verb == K8S_SCALE) {
        int64_t N = op->replicas;
        blast = N > R ? N - R : R - N;
        snprintf(detail, sizeof(detail), "deployment %s/%s: %lld -> %lld replicas", op->ns,
                 op->name, (long long)R, (long long)N);
        if (N == R) {
            reason(reasons, "already at %lld replicas: nothing changes", (long long)N);
        } else if (N > R) {
            reason(reasons, "adds %lld pods; nothing running is touched", (long long)(N - R));
        } else if (N == 0) {
            risk = "high";
            downtime = 3600;
            reason(reasons, "scales to zero: the service has no pod until scaled up again");
        } else if (pdb && jint(pdb, "status", "desiredHealthy") > N) {
            risk = "high";
            reason(reasons, "PodDisruptionBudget %s wants %lld healthy pods, more than %lld",
                   jstr(pdb, "metadata", "name", NULL),
                   (long long)jint(pdb, "status", "desiredHealthy"), (long long)N);
        } else {
            risk = "medium";
            reason(reasons, "removes %lld of %lld pods: capacity drops to %lld", (long long)(R - N),
                   (long long)R, (long long)N);
        }
        assess_result(op, risk, downtime, blast, detail, reasons, dep_live(dep, pdb));
        return;
    }
    /* rollout_restart */
    blast = R;
    snprintf(detail, sizeof(detail), "every pod of deployment %s/%s (%lld) is replaced", op->ns,
             op->name, (long long)R);
    const char *strategy = jstr(dep, "spec", "strategy", "type");
    json_t *ru = jpath(dep, "spec", "strategy", "rollingUpdate");
    int64_t surge = int_or_pct(json_object_get(ru, "maxSurge"), R, 1, (R + 3) / 4);
    int64_t unavail = int_or_pct(json_object_get(ru, "maxUnavailable"), R, 0, R / 4);
    if (surge == 0 && unavail == 0)
        unavail = 1;
    if (R == 0) {
        reason(reasons, "no replicas: nothing restarts");
    } else if (strategy && strcmp(strategy, "Recreate") == 0) {
        risk = "high";
        downtime = k->pod_start_s;
        reason(reasons, "Recreate strategy stops all %lld pods before starting new ones",
               (long long)R);
    } else if (ready == 0) {
        risk = "medium";
        reason(reasons, "no ready replica: the service is already down; a restart cannot make it "
                        "worse but may not help");
    } else if (ready - unavail <= 0) {
        risk = "high";
        downtime = k->pod_start_s;
        reason(reasons, "maxUnavailable %lld can take the only %lld ready replica(s) away",
               (long long)unavail, (long long)ready);
    } else if (ready < R) {
        risk = "medium";
        reason(reasons, "only %lld of %lld replicas ready: the restart lowers capacity further",
               (long long)ready, (long long)R);
    } else if (pdb_allowed && json_integer_value(pdb_allowed) == 0 && unavail > 0) {
        risk = "medium";
        reason(reasons, "PodDisruptionBudget %s allows no disruption now",
               jstr(pdb, "metadata", "name", NULL));
    } else {
        reason(reasons,
               "%lld of %lld ready; rolling update (maxSurge %lld, maxUnavailable %lld) "
               "keeps serving",
               (long long)ready, (long long)R, (long long)surge, (long long)unavail);
    }
    assess_result(op, risk, downtime, blast, detail, reasons, dep_live(dep, pdb));
}

static void assess_pod(k8s_op_t *op)
{
    k8s_t *k = op->k;
    json_t *pod = json_object_get(op->work, "pod");
    json_t *labels = jpath(pod, "metadata", "labels", NULL);
    json_t *pdb = pdb_for(json_object_get(op->work, "pdbs"), labels);
    json_t *owner = NULL;
    size_t i;
    json_t *d;
    json_array_foreach(jpath(op->work, "deployments", "items", NULL), i, d)
    {
        if (labels_match(jpath(d, "spec", "selector", "matchLabels"), labels)) {
            owner = d;
            break;
        }
    }
    int ready = pod_ready(pod);
    int64_t R = owner ? jint(owner, "spec", "replicas") : -1;
    int64_t dep_ready = owner ? jint(owner, "status", "readyReplicas") : -1;
    int64_t peers = owner ? dep_ready - (ready ? 1 : 0) : -1;
    json_t *pdb_allowed = pdb ? jpath(pdb, "status", "disruptionsAllowed", NULL) : NULL;
    json_t *reasons = json_array();
    char detail[300];
    const char *risk = "low";
    int64_t downtime = 0;
    if (owner)
        snprintf(detail, sizeof(detail), "1 pod of %lld (deployment %s/%s)", (long long)R, op->ns,
                 jstr(owner, "metadata", "name", NULL));
    else
        snprintf(detail, sizeof(detail), "1 pod (%s/%s)", op->ns, op->name);
    if (json_array_size(jpath(pod, "metadata", "ownerReferences", NULL)) == 0) {
        risk = "high";
        downtime = 3600;
        reason(reasons, "bare pod without a controller: nothing recreates it");
    } else if (!ready) {
        reason(reasons, "the pod is not ready: deleting it removes no serving capacity");
    } else if (owner && peers <= 0) {
        risk = "high";
        downtime = k->pod_start_s;
        reason(reasons,
               "the only ready replica of deployment %s/%s: down until its replacement "
               "is ready",
               op->ns, jstr(owner, "metadata", "name", NULL));
        if (pdb_allowed && json_integer_value(pdb_allowed) == 0)
            reason(reasons, "PodDisruptionBudget %s allows no disruption now",
                   jstr(pdb, "metadata", "name", NULL));
    } else if (pdb_allowed && json_integer_value(pdb_allowed) == 0) {
        risk = "high";
        reason(reasons,
               "PodDisruptionBudget %s allows no disruption now (%lld healthy, %lld "
               "wanted)",
               jstr(pdb, "metadata", "name", NULL),
               (long long)jint(pdb, "status", "currentHealthy"),
               (long long)jint(pdb, "status", "desiredHealthy"));
    } else if (!owner && !pdb) {
        risk = "medium";
        reason(reasons, "owner is not a deployment and no PodDisruptionBudget covers the pod: "
                        "its peers' readiness is unknown");
    } else if (owner) {
        reason(reasons, "%lld other ready replica(s) keep serving", (long long)peers);
    } else {
        reason(reasons, "PodDisruptionBudget %s allows %lld disruption(s)",
               jstr(pdb, "metadata", "name", NULL), (long long)json_integer_value(pdb_allowed));
    }
    json_t *live = json_pack("{s:b,s:I,s:I,s:o}", "pod_ready", ready, "replicas", (json_int_t)R,
                             "ready", (json_int_t)dep_ready, "pdb", pdb_view(pdb));
    assess_result(op, risk, downtime, 1, detail, reasons, live);
}

static void assess_start(k8s_op_t *op, const k8s_resp_t *unused);

static void assess_got_pdbs(k8s_op_t *op, const k8s_resp_t *r)
{
    if (r->status < 200 || r->status > 299) {
        if (k8s_retryable(r) && k8s_retry(op, r, assess_start))
            return;
        k8s_fail_resp(op, "GET poddisruptionbudgets", r);
        return;
    }
    json_object_set(op->work, "pdbs", r->json);
    if (op->target_is_pod)
        assess_pod(op);
    else
        assess_deployment(op);
}

static void assess_get_pdbs(k8s_op_t *op)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "/apis/policy/v1/namespaces/%s/poddisruptionbudgets", op->ns);
    k8s_call(op, "GET", path, NULL, NULL, assess_got_pdbs);
}

static void assess_got_deps(k8s_op_t *op, const k8s_resp_t *r)
{
    if (r->status < 200 || r->status > 299) {
        if (k8s_retryable(r) && k8s_retry(op, r, assess_start))
            return;
        k8s_fail_resp(op, "GET deployments", r);
        return;
    }
    json_object_set(op->work, "deployments", r->json);
    assess_get_pdbs(op);
}

static void assess_got_obj(k8s_op_t *op, const k8s_resp_t *r)
{
    if (r->status == 404 && op->target_is_pod) {
        assess_result(op, "low", 0, 0, "no pod",
                      json_pack("[s]", "pod not found: nothing to "
                                       "restart"),
                      NULL);
        return;
    }
    if (r->status < 200 || r->status > 299) {
        if (k8s_retryable(r) && k8s_retry(op, r, assess_start))
            return;
        k8s_fail_resp(op, op->target_is_pod ? "GET pod" : "GET deployment", r);
        return;
    }
    json_object_set(op->work, op->target_is_pod ? "pod" : "deployment", r->json);
    if (op->target_is_pod) {
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/deployments", op->ns);
        k8s_call(op, "GET", path, NULL, NULL, assess_got_deps);
        return;
    }
    assess_get_pdbs(op);
}

static void assess_start(k8s_op_t *op, const k8s_resp_t *unused)
{
    (void)unused;
    char path[PATH_MAX_LEN];
    if (op->target_is_pod)
        pod_path(op, path, sizeof(path));
    else
        dep_path(op, "", path, sizeof(path));
    k8s_call(op, "GET", path, NULL, NULL, assess_got_obj);
}

/* ---- snapshot ------------------------------------------------------------------------------- */

static void snap_start(k8s_op_t *op, const k8s_resp_t *unused);

static void snap_got(k8s_op_t *op, const k8s_resp_t *r)
{
    if (r->status < 200 || r->status > 299) {
        if (k8s_retryable(r) && k8s_retry(op, r, snap_start))
            return;
        k8s_fail_resp(op, op->target_is_pod ? "GET pod" : "GET deployment", r);
        return;
    }
    json_t *o = r->json, *res;
    if (op->target_is_pod) {
        json_t *own = json_array_get(jpath(o, "metadata", "ownerReferences", NULL), 0);
        res = json_pack("{s:s,s:s,s:s,s:s,s:s?,s:O?,s:b,s:s?,s:s?}", "kind", "pod", "target",
                        op->target, "namespace", op->ns, "name", op->name, "uid",
                        jstr(o, "metadata", "uid", NULL), "labels",
                        jpath(o, "metadata", "labels", NULL), "ready", pod_ready(o),
                        "creationTimestamp", jstr(o, "metadata", "creationTimestamp", NULL),
                        "owner", json_string_value(json_object_get(own, "name")));
    } else {
        const char *prev = tmpl_ann(o, K8S_ANN_RESTARTED);
        const char *key = dep_ann(o, K8S_ANN_KEY);
        res = json_pack("{s:s,s:s,s:s,s:s,s:s?,s:I,s:o,s:o,s:I,s:I,s:s?,s:I}", "kind", "deployment",
                        "target", op->target, "namespace", op->ns, "name", op->name, "uid",
                        jstr(o, "metadata", "uid", NULL), "replicas", jint(o, "spec", "replicas"),
                        "restartedAt", prev ? json_string(prev) : json_null(), "idempotency_key",
                        key ? json_string(key) : json_null(), "generation",
                        jint(o, "metadata", "generation"), "observedGeneration",
                        jint(o, "status", "observedGeneration"), "resourceVersion",
                        jstr(o, "metadata", "resourceVersion", NULL), "ready",
                        jint(o, "status", "readyReplicas"));
    }
    k8s_finish(op, res ? 0 : SN_ENOMEM, res);
    json_decref(res);
}

static void snap_start(k8s_op_t *op, const k8s_resp_t *unused)
{
    (void)unused;
    char path[PATH_MAX_LEN];
    if (op->target_is_pod)
        pod_path(op, path, sizeof(path));
    else
        dep_path(op, "", path, sizeof(path));
    k8s_call(op, "GET", path, NULL, NULL, snap_got);
}

/* ---- execute: deployments -------------------------------------------------------------------- */

static void exec_dep_start(k8s_op_t *op, const k8s_resp_t *unused);

static void dedup(k8s_op_t *op, const char *why)
{
    json_t *first = k8s_key_get(op->k, op->key);
    json_t *res = first ? json_deep_copy(first)
                        : json_pack("{s:s,s:s}", "verb", op->verb_name, "target", op->target);
    if (res) {
        json_object_set_new(res, "changed", json_false());
        json_object_set_new(res, "deduplicated", json_true());
        json_object_set_new(res, "reason", json_string(why));
    }
    op->k->host->log(op->k->host, SN_LOG_INFO,
                     "%s %s: key %s already applied (%s): no request "
                     "changes anything",
                     op->verb_name, op->target, op->key, why);
    k8s_finish(op, res ? 0 : SN_ENOMEM, res);
    json_decref(res);
}

static void exec_annotated(k8s_op_t *op, const k8s_resp_t *r)
{
    json_t *res = json_object_get(op->work, "result");
    if (r->status >= 200 && r->status <= 299) {
        k8s_key_put(op->k, op->key, res);
        k8s_finish(op, 0, res);
        return;
    }
    if (json_is_true(json_object_get(res, "changed"))) {
        /* The scale landed; only the marker is missing. A repeat finds the replicas already
         * set and changes nothing, so report success and say what is missing. */
        char buf[96];
        char warn[400];
        snprintf(warn, sizeof(warn), "idempotency annotation not written: HTTP %ld %s", r->status,
                 k8s_status_message(r, buf, sizeof(buf)));
        json_object_set_new(res, "warning", json_string(warn));
        op->k->host->log(op->k->host, SN_LOG_WARN, "%s %s: %s", op->verb_name, op->target, warn);
        k8s_key_put(op->k, op->key, res);
        k8s_finish(op, 0, res);
        return;
    }
    if ((r->status == 409 || k8s_retryable(r)) && k8s_retry(op, r, exec_dep_start))
        return;
    k8s_fail_resp(op, "PATCH deployment annotation", r);
}

static void annotate_key(k8s_op_t *op, const char *rv)
{
    char path[PATH_MAX_LEN];
    dep_path(op, "", path, sizeof(path));
    char *body = dump_new(json_pack("{s:{s:s*,s:{s:s}}}", "metadata", "resourceVersion", rv,
                                    "annotations", K8S_ANN_KEY, op->key));
    if (!body) {
        k8s_fail(op, SN_ENOMEM, 0, NULL, "out of memory");
        return;
    }
    k8s_call(op, "PATCH", path, "application/merge-patch+json", body, exec_annotated);
    free(body);
}

static void exec_scaled(k8s_op_t *op, const k8s_resp_t *r)
{
    if (r->status >= 200 && r->status <= 299) {
        json_object_set_new(json_object_get(op->work, "result"), "changed", json_true());
        if (!op->key) {
            exec_annotated(op, r);
            return;
        }
        annotate_key(op, NULL);
        return;
    }
    if ((r->status == 409 || k8s_retryable(r)) && k8s_retry(op, r, exec_dep_start))
        return;
    k8s_fail_resp(op, "PATCH deployments/scale", r);
}

static void exec_patched(k8s_op_t *op, const k8s_resp_t *r)
{
    if (r->status >= 200 && r->status <= 299) {
        json_t *res = json_object_get(op->work, "result");
        json_object_set_new(res, "changed", json_true());
        json_object_set_new(res, "generation",
                            json_integer(jint(r->json, "metadata", "generation")));
        k8s_key_put(op->k, op->key, res);
        k8s_finish(op, 0, res);
        return;
    }
    /* A conflict means someone wrote in between: read again (which also re-checks the key). */
    if ((r->status == 409 || k8s_retryable(r)) && k8s_retry(op, r, exec_dep_start))
        return;
    k8s_fail_resp(op, "PATCH deployment", r);
}

static void exec_dep_got(k8s_op_t *op, const k8s_resp_t *r)
{
    k8s_t *k = op->k;
    if (r->status < 200 || r->status > 299) {
        if (k8s_retryable(r) && k8s_retry(op, r, exec_dep_start))
            return;
        k8s_fail_resp(op, "GET deployment", r);
        return;
    }
    json_t *dep = r->json;
    const char *have = dep_ann(dep, K8S_ANN_KEY);
    if (op->key && have && strcmp(have, op->key) == 0 && !op->dry_run) {
        dedup(op, "the deployment already carries this idempotency key");
        return;
    }
    const char *rv = jstr(dep, "metadata", "resourceVersion", NULL);
    int64_t R = jint(dep, "spec", "replicas");
    const char *prev = tmpl_ann(dep, K8S_ANN_RESTARTED);
    char path[PATH_MAX_LEN], would[1400];
    json_t *result = NULL;
    char *body = NULL;
    const char *ctype;
    if (op->verb == K8S_ROLLOUT_RESTART) {
        char ts[32];
        k8s_rfc3339(k->host->now_ms(k->host), ts);
        dep_path(op, "", path, sizeof(path));
        ctype = "application/strategic-merge-patch+json";
        json_t *patch = json_pack("{s:{s:s*,s:{}},s:{s:{s:{s:{s:s}}}}}", "metadata",
                                  "resourceVersion", rv, "annotations", "spec", "template",
                                  "metadata", "annotations", K8S_ANN_RESTARTED, ts);
        if (patch && op->key)
            json_object_set_new(jpath(patch, "metadata", "annotations", NULL), K8S_ANN_KEY,
                                json_string(op->key));
        body = dump_new(patch);
        snprintf(would, sizeof(would),
                 "PATCH %s (%s): set pod-template annotation %s=%s (was %s), which rolls all "
                 "%lld pods; deployment %s/%s is at generation %lld with %lld/%lld ready",
                 path, ctype, K8S_ANN_RESTARTED, ts, prev ? prev : "unset", (long long)R, op->ns,
                 op->name, (long long)jint(dep, "metadata", "generation"),
                 (long long)jint(dep, "status", "readyReplicas"), (long long)R);
        result = json_pack("{s:s,s:s,s:b,s:s,s:o}", "verb", op->verb_name, "target", op->target,
                           "changed", 0, "restartedAt", ts, "previous_restartedAt",
                           prev ? json_string(prev) : json_null());
    } else {
        ctype = "application/merge-patch+json";
        if (R == op->replicas) {
            dep_path(op, "", path, sizeof(path));
            snprintf(would, sizeof(would),
                     "nothing to scale: deployment %s/%s already has %lld replicas", op->ns,
                     op->name, (long long)R);
        } else {
            dep_path(op, "/scale", path, sizeof(path));
            body = dump_new(json_pack("{s:{s:I}}", "spec", "replicas", (json_int_t)op->replicas));
            snprintf(would, sizeof(would),
                     "PATCH %s (%s): spec.replicas %lld -> %lld for deployment %s/%s (%lld ready)",
                     path, ctype, (long long)R, (long long)op->replicas, op->ns, op->name,
                     (long long)jint(dep, "status", "readyReplicas"));
        }
        result = json_pack("{s:s,s:s,s:b,s:I,s:I}", "verb", op->verb_name, "target", op->target,
                           "changed", 0, "replicas_before", (json_int_t)R, "replicas",
                           (json_int_t)op->replicas);
    }
    if (!result || (!body && !(op->verb == K8S_SCALE && R == op->replicas))) {
        json_decref(result);
        free(body);
        k8s_fail(op, SN_ENOMEM, 0, NULL, "out of memory");
        return;
    }
    if (op->dry_run) {
        json_object_del(result, "changed");
        json_object_set_new(result, "dry_run", json_true());
        json_object_set_new(result, "would", json_string(would));
        if (have)
            json_object_set_new(result, "current_idempotency_key", json_string(have));
        k->host->log(k->host, SN_LOG_INFO, "dry run: %s %s would: %s", op->verb_name, op->target,
                     would);
        k8s_finish(op, 0, result);
        json_decref(result);
        free(body);
        return;
    }
    json_object_set_new(op->work, "result", result);
    if (op->verb == K8S_SCALE && R == op->replicas) {
        if (op->key)
            annotate_key(op, rv);
        else
            exec_annotated(op, &(k8s_resp_t){.status = 200});
    } else {
        k8s_call(op, "PATCH", path, ctype, body,
                 op->verb == K8S_ROLLOUT_RESTART ? exec_patched : exec_scaled);
    }
    free(body);
}

static void exec_dep_start(k8s_op_t *op, const k8s_resp_t *unused)
{
    (void)unused;
    if (op->key && !op->dry_run && k8s_key_get(op->k, op->key)) {
        dedup(op, "this executor already applied this idempotency key");
        return;
    }
    char path[PATH_MAX_LEN];
    dep_path(op, "", path, sizeof(path));
    k8s_call(op, "GET", path, NULL, NULL, exec_dep_got);
}

/* ---- execute: pods ----------------------------------------------------------------------------
 */

static void exec_pod_start(k8s_op_t *op, const k8s_resp_t *unused);

static void pod_result(k8s_op_t *op, int changed, const char *why)
{
    json_t *res = json_pack("{s:s,s:s,s:b,s:s*,s:s*}", "verb", op->verb_name, "target", op->target,
                            "changed", changed, "reason", why, "deleted_uid",
                            changed ? jstr(op->work, "pod", "metadata", "uid") : NULL);
    if (res && changed) {
        json_t *rec = json_pack(
            "{s:s?,s:s,s:I}", "uid", jstr(op->work, "pod", "metadata", "uid"), "selector",
            json_string_value(json_object_get(op->work, "selector"))
                ? json_string_value(json_object_get(op->work, "selector"))
                : "",
            "ready_before", json_integer_value(json_object_get(op->work, "ready_before")));
        if (rec) {
            json_object_set_new(res, "restart", rec);
            k8s_key_put(op->k, op->key, res);
        }
    }
    k8s_finish(op, res ? 0 : SN_ENOMEM, res);
    json_decref(res);
}

static void exec_pod_deleted(k8s_op_t *op, const k8s_resp_t *r)
{
    if (r->status >= 200 && r->status <= 299) {
        pod_result(op, 1, NULL);
        return;
    }
    if (r->status == 404) {
        pod_result(op, 0, "pod already gone");
        return;
    }
    if (r->status == 409) {
        pod_result(op, 0, "the pod was replaced meanwhile (its uid changed): nothing deleted");
        return;
    }
    if (k8s_retryable(r) && k8s_retry(op, r, exec_pod_start))
        return;
    k8s_fail_resp(op, "DELETE pod", r);
}

static void exec_pod_delete(k8s_op_t *op)
{
    char path[PATH_MAX_LEN];
    pod_path(op, path, sizeof(path));
    json_t *opts = json_pack("{s:s,s:s,s:{s:s?}}", "kind", "DeleteOptions", "apiVersion", "v1",
                             "preconditions", "uid", jstr(op->work, "pod", "metadata", "uid"));
    if (opts && op->k->grace_period_s >= 0)
        json_object_set_new(opts, "gracePeriodSeconds", json_integer(op->k->grace_period_s));
    char *body = dump_new(opts);
    if (!body) {
        k8s_fail(op, SN_ENOMEM, 0, NULL, "out of memory");
        return;
    }
    k8s_call(op, "DELETE", path, "application/json", body, exec_pod_deleted);
    free(body);
}

static void exec_pod_peers(k8s_op_t *op, const k8s_resp_t *r)
{
    /* Peers only inform verify; a failed list does not stop the restart. */
    int64_t ready = 0;
    if (r->status >= 200 && r->status <= 299) {
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(r->json, "items"), i, p) ready += pod_ready(p);
    } else {
        ready = pod_ready(json_object_get(op->work, "pod"));
    }
    json_object_set_new(op->work, "ready_before", json_integer(ready));
    exec_pod_delete(op);
}

static void exec_pod_got(k8s_op_t *op, const k8s_resp_t *r)
{
    k8s_t *k = op->k;
    if (r->status == 404) {
        if (op->dry_run) {
            json_t *res =
                json_pack("{s:s,s:s,s:b,s:s}", "verb", op->verb_name, "target", op->target,
                          "dry_run", 1, "would", "nothing: the pod does not exist");
            k8s_finish(op, 0, res);
            json_decref(res);
            return;
        }
        pod_result(op, 0, "pod not found: already gone");
        return;
    }
    if (r->status < 200 || r->status > 299) {
        if (k8s_retryable(r) && k8s_retry(op, r, exec_pod_start))
            return;
        k8s_fail_resp(op, "GET pod", r);
        return;
    }
    json_object_set(op->work, "pod", r->json);
    int terminating = jpath(r->json, "metadata", "deletionTimestamp", NULL) != NULL;
    char path[PATH_MAX_LEN], sel[SEL_LEN], lpath[LIST_PATH_LEN];
    pod_path(op, path, sizeof(path));
    if (op->dry_run) {
        char would[1400];
        if (terminating)
            snprintf(would, sizeof(would), "nothing: pod %s/%s is already terminating", op->ns,
                     op->name);
        else
            snprintf(would, sizeof(would),
                     "DELETE %s with preconditions.uid=%s%s: the pod (%s) is replaced by its "
                     "controller",
                     path, jstr(r->json, "metadata", "uid", NULL),
                     k->grace_period_s >= 0 ? " and a grace period" : "",
                     pod_ready(r->json) ? "ready" : "not ready");
        json_t *res = json_pack("{s:s,s:s,s:b,s:s}", "verb", op->verb_name, "target", op->target,
                                "dry_run", 1, "would", would);
        k8s_finish(op, res ? 0 : SN_ENOMEM, res);
        json_decref(res);
        return;
    }
    if (terminating) {
        pod_result(op, 0, "pod already terminating");
        return;
    }
    if (selector_of(jpath(r->json, "metadata", "labels", NULL), 1, sel, sizeof(sel)) != 0 ||
        !sel[0]) {
        json_object_set_new(op->work, "ready_before", json_integer(0));
        exec_pod_delete(op);
        return;
    }
    json_object_set_new(op->work, "selector", json_string(sel));
    char q[3 * SEL_LEN + 1];
    qenc(sel, q, sizeof(q));
    snprintf(lpath, sizeof(lpath), "/api/v1/namespaces/%s/pods?labelSelector=%s", op->ns, q);
    k8s_call(op, "GET", lpath, NULL, NULL, exec_pod_peers);
}

static void exec_pod_start(k8s_op_t *op, const k8s_resp_t *unused)
{
    (void)unused;
    if (op->key && !op->dry_run && k8s_key_get(op->k, op->key)) {
        dedup(op, "this executor already applied this idempotency key");
        return;
    }
    char path[PATH_MAX_LEN];
    pod_path(op, path, sizeof(path));
    k8s_call(op, "GET", path, NULL, NULL, exec_pod_got);
}

/* ---- verify --------------------------------------------------------------------------------- */

static void verify_poll(k8s_op_t *op, const k8s_resp_t *unused);

/* Wait for the next poll, or fail with the last reason when the deadline has passed. */
static void verify_wait(k8s_op_t *op, json_t *last)
{
    k8s_t *k = op->k;
    int64_t now = k->host->mono_ms(k->host);
    if (now >= op->deadline_mono) {
        json_t *st = last ? json_deep_copy(last) : NULL;
        char msg[600];
        snprintf(msg, sizeof(msg), "%s %s: did not converge within %.1f s: %s", op->verb_name,
                 op->target, (double)(op->deadline_mono - op->started_mono) / 1000.0,
                 op->wait_reason);
        json_t *res = json_pack("{s:b,s:s,s:s,s:o*}", "converged", 0, "error", msg, "reason",
                                op->wait_reason, "status", st);
        k->host->log(k->host, SN_LOG_WARN, "%s", msg);
        k8s_finish(op, SN_ETIMEDOUT, res);
        json_decref(res);
        return;
    }
    int64_t left = op->deadline_mono - now;
    k8s_after(op, op->poll_ms < left ? op->poll_ms : left, verify_poll);
}

static void verify_ok(k8s_op_t *op, json_t *extra)
{
    k8s_t *k = op->k;
    json_t *res = extra ? extra : json_object();
    json_object_set_new(res, "converged", json_true());
    json_object_set_new(res, "waited_ms",
                        json_integer(k->host->mono_ms(k->host) - op->started_mono));
    k8s_finish(op, 0, res);
    json_decref(res);
}

/* kubectl rollout status, step by step: 0 done, 1 wait (reason set), -1 failed (reason set). */
static int rollout_state(const json_t *dep, char *why, size_t len)
{
    int64_t gen = jint(dep, "metadata", "generation");
    int64_t obs = jint(dep, "status", "observedGeneration");
    int64_t want = jint(dep, "spec", "replicas");
    int64_t replicas = jint(dep, "status", "replicas");
    int64_t updated = jint(dep, "status", "updatedReplicas");
    int64_t ready = jint(dep, "status", "readyReplicas");
    int64_t avail = jint(dep, "status", "availableReplicas");
    if (gen > obs) {
        snprintf(why, len, "waiting for the controller to observe generation %lld (observed %lld)",
                 (long long)gen, (long long)obs);
        return 1;
    }
    size_t i;
    json_t *c;
    json_array_foreach(jpath(dep, "status", "conditions", NULL), i, c)
    {
        const char *t = json_string_value(json_object_get(c, "type"));
        const char *r = json_string_value(json_object_get(c, "reason"));
        if (t && r && strcmp(t, "Progressing") == 0 && strcmp(r, "ProgressDeadlineExceeded") == 0) {
            const char *m = json_string_value(json_object_get(c, "message"));
            snprintf(why, len,
                     "rollout failed: ProgressDeadlineExceeded (%s); %lld of %lld "
                     "replicas updated, %lld available",
                     m ? m : "no progress", (long long)updated, (long long)want, (long long)avail);
            return -1;
        }
    }
    if (updated < want) {
        snprintf(why, len, "%lld of %lld new replicas updated", (long long)updated,
                 (long long)want);
        return 1;
    }
    if (replicas > updated) {
        snprintf(why, len, "%lld old replicas pending termination",
                 (long long)(replicas - updated));
        return 1;
    }
    if (avail < updated) {
        snprintf(why, len, "%lld of %lld updated replicas available", (long long)avail,
                 (long long)updated);
        return 1;
    }
    if (ready < want) {
        snprintf(why, len, "%lld of %lld replicas ready", (long long)ready, (long long)want);
        return 1;
    }
    snprintf(why, len, "rolled out: %lld of %lld replicas updated, ready and available",
             (long long)want, (long long)want);
    return 0;
}

static json_t *status_view(const json_t *dep)
{
    return json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "generation", jint(dep, "metadata", "generation"),
        "observedGeneration", jint(dep, "status", "observedGeneration"), "replicas",
        jint(dep, "spec", "replicas"), "statusReplicas", jint(dep, "status", "replicas"),
        "updatedReplicas", jint(dep, "status", "updatedReplicas"), "readyReplicas",
        jint(dep, "status", "readyReplicas"), "availableReplicas",
        jint(dep, "status", "availableReplicas"));
}

static void verify_dep_got(k8s_op_t *op, const k8s_resp_t *r)
{
    char buf[96];
    if (r->status == 0 || k8s_retryable(r)) {
        /* A flaky API is not a failed rollout: keep asking until the deadline. */
        if (r->status)
            snprintf(op->wait_reason, sizeof(op->wait_reason), "the API answered HTTP %ld: %s",
                     r->status, k8s_status_message(r, buf, sizeof(buf)));
        else
            snprintf(op->wait_reason, sizeof(op->wait_reason), "the API is unreachable: %s",
                     k8s_status_message(r, buf, sizeof(buf)));
        verify_wait(op, NULL);
        return;
    }
    if (r->status < 200 || r->status > 299) {
        k8s_fail_resp(op, "GET deployment", r);
        return;
    }
    json_t *dep = r->json;
    if (op->verb == K8S_ROLLOUT_RESTART && op->key) {
        const char *have = dep_ann(dep, K8S_ANN_KEY);
        if (!have || strcmp(have, op->key) != 0) {
            k8s_fail(op, SN_ENOTFOUND, 0, NULL,
                     "change not applied: the deployment carries idempotency key %s, not %s",
                     have ? have : "(none)", op->key);
            return;
        }
    }
    if (op->verb == K8S_SCALE && jint(dep, "spec", "replicas") != op->replicas) {
        k8s_fail(op, SN_ENOTFOUND, 0, NULL,
                 "change not applied or overridden: spec.replicas is %lld, not %lld",
                 (long long)jint(dep, "spec", "replicas"), (long long)op->replicas);
        return;
    }
    int st = rollout_state(dep, op->wait_reason, sizeof(op->wait_reason));
    json_t *view = status_view(dep);
    if (st == 0) {
        json_object_set_new(view, "reason", json_string(op->wait_reason));
        verify_ok(op, view);
        return;
    }
    if (st < 0) {
        char msg[600];
        snprintf(msg, sizeof(msg), "%s %s: %s", op->verb_name, op->target, op->wait_reason);
        json_t *res = json_pack("{s:b,s:s,s:s,s:o}", "converged", 0, "error", msg, "reason",
                                "ProgressDeadlineExceeded", "status", view);
        op->k->host->log(op->k->host, SN_LOG_WARN, "%s", msg);
        k8s_finish(op, SN_EIO, res);
        json_decref(res);
        return;
    }
    verify_wait(op, view);
    json_decref(view);
}

static void verify_pod_list(k8s_op_t *op, const k8s_resp_t *r)
{
    if (r->status < 200 || r->status > 299) {
        snprintf(op->wait_reason, sizeof(op->wait_reason),
                 "listing the replacement pods failed "
                 "(HTTP %ld)",
                 r->status);
        verify_wait(op, NULL);
        return;
    }
    int64_t ready = 0, total = 0;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(r->json, "items"), i, p)
    {
        if (jpath(p, "metadata", "deletionTimestamp", NULL))
            continue;
        total++;
        ready += pod_ready(p);
    }
    json_t *rec = json_object_get(k8s_key_get(op->k, op->key), "restart");
    int64_t want = json_integer_value(json_object_get(rec, "ready_before"));
    if (ready >= want) {
        verify_ok(op, json_pack("{s:s,s:I,s:I}", "reason",
                                "the pod was replaced and its peers "
                                "are ready again",
                                "ready", (json_int_t)ready, "pods", (json_int_t)total));
        return;
    }
    snprintf(op->wait_reason, sizeof(op->wait_reason),
             "waiting for the replacement: %lld of %lld ready before the restart are ready",
             (long long)ready, (long long)want);
    verify_wait(op, NULL);
}

static void verify_pod_got(k8s_op_t *op, const k8s_resp_t *r)
{
    char buf[96];
    if (r->status == 0 || k8s_retryable(r)) {
        snprintf(op->wait_reason, sizeof(op->wait_reason), "API unavailable (%s)",
                 k8s_status_message(r, buf, sizeof(buf)));
        verify_wait(op, NULL);
        return;
    }
    if (r->status != 404 && (r->status < 200 || r->status > 299)) {
        k8s_fail_resp(op, "GET pod", r);
        return;
    }
    json_t *pod = r->status == 404 ? NULL : r->json;
    json_t *rec = json_object_get(k8s_key_get(op->k, op->key), "restart");
    const char *uid = jstr(pod, "metadata", "uid", NULL);
    int terminating = pod && jpath(pod, "metadata", "deletionTimestamp", NULL);
    if (rec) {
        const char *old = json_string_value(json_object_get(rec, "uid"));
        if (pod && uid && old && strcmp(uid, old) == 0) {
            snprintf(op->wait_reason, sizeof(op->wait_reason), "pod %s/%s still terminating",
                     op->ns, op->name);
            verify_wait(op, NULL);
            return;
        }
        const char *sel = json_string_value(json_object_get(rec, "selector"));
        if (!sel || !sel[0]) {
            verify_ok(op, json_pack("{s:s}", "reason", "the pod is gone"));
            return;
        }
        char q[3 * SEL_LEN + 1], path[LIST_PATH_LEN];
        qenc(sel, q, sizeof(q));
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods?labelSelector=%s", op->ns, q);
        k8s_call(op, "GET", path, NULL, NULL, verify_pod_list);
        return;
    }
    /* No record of this key here (the daemon restarted): judge from the pod itself. */
    if (!pod) {
        verify_ok(op, json_pack("{s:s}", "reason", "the pod is gone"));
        return;
    }
    if (terminating) {
        snprintf(op->wait_reason, sizeof(op->wait_reason), "pod %s/%s terminating", op->ns,
                 op->name);
        verify_wait(op, NULL);
        return;
    }
    int64_t created = parse_ts(jstr(pod, "metadata", "creationTimestamp", NULL));
    int64_t since = uuid7_ms(op->incident);
    if (created >= 0 && since >= 0 && created * 1000 + 1000 >= since) {
        if (pod_ready(pod)) {
            verify_ok(op, json_pack("{s:s}", "reason",
                                    "a pod of this name was created after the "
                                    "incident opened and is ready"));
            return;
        }
        snprintf(op->wait_reason, sizeof(op->wait_reason), "replacement pod %s/%s not ready",
                 op->ns, op->name);
        verify_wait(op, NULL);
        return;
    }
    k8s_fail(op, SN_ENOTFOUND, 0, NULL,
             "change not applied: pod %s/%s has run since %s, before the incident opened", op->ns,
             op->name,
             jstr(pod, "metadata", "creationTimestamp", NULL)
                 ? jstr(pod, "metadata", "creationTimestamp", NULL)
                 : "?");
}

static void verify_poll(k8s_op_t *op, const k8s_resp_t *unused)
{
    (void)unused;
    char path[PATH_MAX_LEN];
    if (op->target_is_pod) {
        pod_path(op, path, sizeof(path));
        k8s_call(op, "GET", path, NULL, NULL, verify_pod_got);
    } else {
        dep_path(op, "", path, sizeof(path));
        k8s_call(op, "GET", path, NULL, NULL, verify_dep_got);
    }
}

/* ---- rollback ------------------------------------------------------------------------------- */

static void rb_start(k8s_op_t *op, const k8s_resp_t *unused);

static void rb_done(k8s_op_t *op, const k8s_resp_t *r)
{
    if (r->status >= 200 && r->status <= 299) {
        json_t *res = json_object_get(op->work, "result");
        json_object_set_new(res, "restored", json_true());
        json_object_set_new(res, "generation",
                            json_integer(jint(r->json, "metadata", "generation")));
        op->k->host->log(op->k->host, SN_LOG_INFO, "%s %s: rolled back to the snapshot",
                         op->verb_name, op->target);
        k8s_finish(op, 0, res);
        return;
    }
    if ((r->status == 409 || k8s_retryable(r)) && k8s_retry(op, r, rb_start))
        return;
    k8s_fail_resp(op, op->verb == K8S_SCALE ? "PATCH deployments/scale" : "PATCH deployment", r);
}

static void rb_start(k8s_op_t *op, const k8s_resp_t *unused)
{
    (void)unused;
    const json_t *s = op->snap;
    char path[PATH_MAX_LEN], would[1400];
    char *body = NULL;
    const char *ctype;
    json_t *result;
    if (op->verb == K8S_SCALE) {
        json_int_t n = json_integer_value(json_object_get(s, "replicas"));
        dep_path(op, "/scale", path, sizeof(path));
        ctype = "application/merge-patch+json";
        body = dump_new(json_pack("{s:{s:I}}", "spec", "replicas", n));
        snprintf(would, sizeof(would), "PATCH %s (%s): spec.replicas back to %lld", path, ctype,
                 (long long)n);
        result =
            json_pack("{s:s,s:s,s:I}", "verb", op->verb_name, "target", op->target, "replicas", n);
    } else {
        const json_t *prev = json_object_get(s, "restartedAt");
        dep_path(op, "", path, sizeof(path));
        ctype = "application/strategic-merge-patch+json";
        /* null removes the annotation: the template is exactly what it was, so the controller
         * returns to the previous ReplicaSet. */
        body = dump_new(json_pack("{s:{s:{s:{s:{s:O}}}}}", "spec", "template", "metadata",
                                  "annotations", K8S_ANN_RESTARTED,
                                  json_is_string(prev) ? prev : json_null()));
        snprintf(would, sizeof(would), "PATCH %s (%s): pod-template annotation %s back to %s", path,
                 ctype, K8S_ANN_RESTARTED,
                 json_is_string(prev) ? json_string_value(prev) : "unset");
        result = json_pack("{s:s,s:s,s:O}", "verb", op->verb_name, "target", op->target,
                           "restartedAt", json_is_string(prev) ? prev : json_null());
    }
    if (!body || !result) {
        free(body);
        json_decref(result);
        k8s_fail(op, SN_ENOMEM, 0, NULL, "out of memory");
        return;
    }
    if (op->dry_run) {
        json_object_set_new(result, "dry_run", json_true());
        json_object_set_new(result, "would", json_string(would));
        k8s_finish(op, 0, result);
        json_decref(result);
        free(body);
        return;
    }
    json_object_set_new(op->work, "result", result);
    k8s_call(op, "PATCH", path, ctype, body, rb_done);
    free(body);
}

static void rollback_begin(k8s_op_t *op)
{
    const json_t *s = op->snap;
    const char *kind = json_string_value(json_object_get(s, "kind"));
    const char *target = json_string_value(json_object_get(s, "target"));
    if (!kind || strcmp(kind, op->target_is_pod ? "pod" : "deployment") != 0 || !target ||
        strcmp(target, op->target) != 0) {
        k8s_fail(op, SN_EINVAL, 0, NULL,
                 "the snapshot is not a kubernetes snapshot of this "
                 "target");
        return;
    }
    if (op->target_is_pod) {
        json_t *res = json_pack("{s:s,s:s,s:b,s:s}", "verb", op->verb_name, "target", op->target,
                                "restored", 0, "reason",
                                "a deleted pod cannot be brought back; its controller replaced "
                                "it, so there is nothing to undo");
        k8s_finish(op, 0, res);
        json_decref(res);
        return;
    }
    if (op->verb == K8S_SCALE && !json_is_integer(json_object_get(s, "replicas"))) {
        k8s_fail(op, SN_EINVAL, 0, NULL, "the snapshot has no replicas");
        return;
    }
    rb_start(op, NULL);
}

/* ---- dispatch ------------------------------------------------------------------------------- */

void k8s_verbs_start(k8s_op_t *op)
{
    k8s_t *k = op->k;
    static const char *const names[] = {"restart_pod", "rollout_restart", "scale_deployment"};
    int verb = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(op->verb_name, names[i]) == 0)
            verb = i;
    if (verb < 0) {
        k8s_fail(op, SN_ENOTSUP, 0, NULL, "unknown verb");
        return;
    }
    op->verb = (k8s_verb_t)verb;
    /* Target: kind/namespace/name, as the core canonicalised it. */
    const char *t = op->target;
    const char *s1 = strchr(t, '/');
    const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    if (!s1 || !s2 || strchr(s2 + 1, '/')) {
        k8s_fail(op, SN_EINVAL, 0, NULL, "target must be kind/namespace/name");
        return;
    }
    size_t kl = (size_t)(s1 - t);
    op->ns = strndup(s1 + 1, (size_t)(s2 - s1 - 1));
    op->name = strdup(s2 + 1);
    if (!op->ns || !op->name) {
        k8s_fail(op, SN_ENOMEM, 0, NULL, "out of memory");
        return;
    }
    int is_pod = kl == 3 && strncmp(t, "pod", 3) == 0;
    int is_dep = kl == 10 && strncmp(t, "deployment", 10) == 0;
    if ((op->verb == K8S_RESTART_POD && !is_pod) || (op->verb != K8S_RESTART_POD && !is_dep)) {
        k8s_fail(op, SN_EINVAL, 0, NULL, "%s takes a %s target", op->verb_name,
                 op->verb == K8S_RESTART_POD ? "pod/NAMESPACE/NAME" : "deployment/NAMESPACE/NAME");
        return;
    }
    op->target_is_pod = is_pod;
    if (!dns_name(op->ns) || !dns_name(op->name)) {
        k8s_fail(op, SN_EINVAL, 0, NULL, "namespace and name must be lower-case DNS names");
        return;
    }
    if (!ns_allowed(k, op->ns)) {
        k8s_fail(op, SN_EDENIED, 0, NULL, "namespace %s is outside this executor's namespaces",
                 op->ns);
        return;
    }
    if (op->verb == K8S_SCALE && op->kind != K8S_SNAPSHOT && op->kind != K8S_ROLLBACK) {
        op->replicas = replicas_param(op->params);
        if (op->replicas < 0) {
            k8s_fail(op, SN_EINVAL, 0, NULL, "params.replicas must be an integer from 0 to %d",
                     K8S_REPLICAS_MAX);
            return;
        }
    }
    op->work = json_object();
    if (!op->work) {
        k8s_fail(op, SN_ENOMEM, 0, NULL, "out of memory");
        return;
    }
    switch (op->kind) {
    case K8S_ASSESS:
        assess_start(op, NULL);
        return;
    case K8S_SNAPSHOT:
        snap_start(op, NULL);
        return;
    case K8S_EXECUTE:
        if (op->target_is_pod)
            exec_pod_start(op, NULL);
        else
            exec_dep_start(op, NULL);
        return;
    case K8S_VERIFY: {
        int64_t timeout = k8s_param_duration(op->params, "verify_timeout", k->verify_timeout_ms);
        int64_t poll = k8s_param_duration(op->params, "poll_interval", k->poll_ms);
        if (timeout <= 0 || poll <= 0) {
            k8s_fail(op, SN_EINVAL, 0, NULL,
                     "verify_timeout and poll_interval must be "
                     "durations like 90s, 5m or 500ms");
            return;
        }
        op->poll_ms = poll;
        op->deadline_mono = op->started_mono + timeout;
        snprintf(op->wait_reason, sizeof(op->wait_reason), "no answer yet");
        verify_poll(op, NULL);
        return;
    }
    case K8S_ROLLBACK:
        rollback_begin(op);
        return;
    }
}
