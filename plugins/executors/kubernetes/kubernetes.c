/**
 * @file kubernetes.c
 * Executor `kubernetes`: remediation on a Kubernetes cluster through its REST API, over the
 * host's asynchronous HTTP client (never blocking the loop). Verbs: restart_pod (DELETE a pod so
 * its controller replaces it), rollout_restart (what `kubectl rollout restart` sends: a pod
 * template annotation), scale_deployment (the scale subresource). assess() reads live state
 * (replicas, readiness, PodDisruptionBudgets) to grade risk, downtime and blast radius;
 * snapshot() records what rollback() restores; verify() polls a rollout the way
 * `kubectl rollout status` judges it, with a deadline.
 *
 * This file holds the plugin descriptor, settings, lifecycle, the token re-reading and the
 * operation machinery (requests, retries, timers, completion). k8s_auth.c reads kubeconfig and
 * in-cluster credentials; k8s_verbs.c holds each verb's steps. docs/executors/kubernetes.md is
 * the operator's guide.
 *
 * Operations: every call becomes a k8s_op_t on the instance's list; it runs as a chain of HTTP
 * steps and timers on the loop and completes exactly once through done(), unless the instance
 * stops first: at stop() operations waiting on a timer (verify polls, back-offs) are abandoned
 * without a completion (the core resumes the incident from its checkpoint and verifies), and
 * operations with a request in flight may still complete when it answers but start nothing new.
 */
#include "k8s-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define K8S_TOKEN_MAX (64 * 1024)
#define K8S_BACKOFF_MS 200
#define K8S_BACKOFF_MAX_MS 5000

static const sn_verb_t k8s_verbs[] = {
    {"restart_pod", SN_RISK_LOW, 5,
     "delete one pod (target pod/NS/NAME) so its controller recreates it"},
    {"rollout_restart", SN_RISK_LOW, 30,
     "rolling restart of a deployment (target deployment/NS/NAME), as kubectl rollout restart"},
    {"scale_deployment", SN_RISK_MEDIUM, 0,
     "set a deployment's replicas through the scale subresource (params: replicas=N)"},
    {NULL, 0, 0, NULL},
};

static const sn_param_t k8s_params[] = {
    {"kubeconfig", SN_T_STRING, NULL, 0,
     "kubeconfig file (server, certificate-authority[-data], token or client-certificate/key"
     "[-data], context namespace); without it the in-cluster service account is used"},
    {"context", SN_T_STRING, NULL, 0, "kubeconfig context to use instead of current-context"},
    {"server", SN_T_STRING, NULL, 0,
     "API server URL, overriding KUBERNETES_SERVICE_HOST/PORT in-cluster (proxies, tests)"},
    {"token_file", SN_T_STRING, "/var/run/secrets/kubernetes.io/serviceaccount/token", 0,
     "in-cluster bearer token file; re-read every token_refresh and after a 401"},
    {"ca_file", SN_T_STRING, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", 0,
     "in-cluster CA bundle that verifies the API server"},
    {"namespaces", SN_T_LIST, NULL, 0,
     "namespaces this executor may touch (others are refused); default: the kubeconfig "
     "context's namespace if it names one, else any"},
    {"insecure_skip_tls_verify", SN_T_BOOL, "false", 0,
     "do not verify the API server's certificate (logged as a warning; never in production)"},
    {"verify_timeout", SN_T_DURATION, "5m", 0,
     "how long verify waits for a rollout to converge (action param verify_timeout overrides)"},
    {"poll_interval", SN_T_DURATION, "2s", 0,
     "pause between verify's reads (action param poll_interval overrides)"},
    {"request_timeout", SN_T_DURATION, "10s", 0, "deadline of one API request"},
    {"token_refresh", SN_T_DURATION, "1m", 0, "how often a token file is re-read"},
    {"retries", SN_T_INT, "3", 0,
     "attempts after a conflict (409), 429, 5xx or transport error, with back-off"},
    {"grace_period", SN_T_INT, "-1", 0,
     "restart_pod: gracePeriodSeconds of the delete (-1: the pod's own)"},
    {"pod_start_estimate", SN_T_DURATION, "30s", 0,
     "assess: downtime estimated when the last ready pod of a workload goes away"},
    {NULL, 0, NULL, 0, NULL},
};

/* ---- small helpers ------------------------------------------------------------------------ */

static char *dup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void count(k8s_t *k, const char *name, const char *help)
{
    k->host->metric(k->host, SN_METRIC_COUNTER, name, help, 1);
}

void k8s_rfc3339(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int64_t k8s_param_duration(const json_t *params, const char *key, int64_t def_ms)
{
    const json_t *v = params ? json_object_get(params, key) : NULL;
    if (!v)
        return def_ms;
    if (json_is_integer(v))
        return json_integer_value(v) > 0 && json_integer_value(v) < 86400 * 7
                   ? (int64_t)json_integer_value(v) * 1000
                   : -1;
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    char *end = NULL;
    double n = strtod(s, &end);
    if (end == s || n <= 0)
        return -1;
    double mul = 1000;
    if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "m") == 0)
        mul = 60000;
    else if (strcmp(end, "h") == 0)
        mul = 3600000;
    else if (*end && strcmp(end, "s") != 0)
        return -1;
    double ms = n * mul;
    return ms >= 1 && ms < 7.0 * 86400000 ? (int64_t)ms : -1;
}

json_t *k8s_key_get(k8s_t *k, const char *key)
{
    return key ? json_object_get(k->keys, key) : NULL;
}

void k8s_key_put(k8s_t *k, const char *key, json_t *rec)
{
    if (!key || !rec)
        return;
    if (json_object_size(k->keys) >= K8S_KEYS_MAX) {
        void *it = json_object_iter(k->keys); /* insertion order: the oldest first */
        if (it)
            json_object_del(k->keys, json_object_iter_key(it));
    }
    json_object_set(k->keys, key, rec);
}

/* ---- operations --------------------------------------------------------------------------- */

static void op_free(k8s_op_t *op)
{
    free(op->verb_name);
    free(op->target);
    free(op->ns);
    free(op->name);
    free(op->key);
    free(op->incident);
    json_decref(op->params);
    json_decref(op->snap);
    json_decref(op->work);
    free(op->method);
    free(op->path);
    free(op->body);
    free(op->ctype);
    free(op);
}

static void op_unlink(k8s_t *k, k8s_op_t *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        k->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->next = op->prev = NULL;
    k->nops--;
}

static void maybe_stopped(k8s_t *k)
{
    if (!k->stopping || !k->stop_done || k->ops || k->token_reading)
        return;
    sn_done_fn done = k->stop_done;
    k->stop_done = NULL;
    done(k->stop_arg, 0, NULL);
}

/* Drop an operation without completing it (the instance is stopping). */
static void op_abandon(k8s_op_t *op, const char *why)
{
    k8s_t *k = op->k;
    k->host->log(k->host, SN_LOG_INFO,
                 "%s %s: abandoned (%s); the core resumes it from its "
                 "checkpoint",
                 op->verb_name, op->target, why);
    if (op->timer)
        k->host->timer_del(op->timer);
    op->timer = NULL;
    op_unlink(k, op);
    op_free(op);
    maybe_stopped(k);
}

void k8s_finish(k8s_op_t *op, int rc, json_t *result)
{
    k8s_t *k = op->k;
    if (rc != 0) {
        k->failures++;
        count(k, "executor_kubernetes_failures_total", "Operations that ended in an error");
    }
    op_unlink(k, op);
    sn_done_fn done = op->done;
    void *arg = op->arg;
    json_incref(result); /* it may live in op->work */
    op_free(op);
    done(arg, rc, result);
    json_decref(result);
    maybe_stopped(k);
}

void k8s_fail(k8s_op_t *op, int rc, long code, const char *reason, const char *fmt, ...)
{
    char phrase[768], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(phrase, sizeof(phrase), fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof(msg), "%s %s: %s", op->verb_name, op->target, phrase);
    json_t *res =
        json_pack("{s:s,s:s,s:s}", "error", msg, "verb", op->verb_name, "target", op->target);
    if (res && code)
        json_object_set_new(res, "code", json_integer(code));
    if (res && reason)
        json_object_set_new(res, "reason", json_string(reason));
    op->k->host->log(op->k->host, SN_LOG_WARN, "%s", msg);
    k8s_finish(op, rc, res);
    json_decref(res);
}

const char *k8s_status_message(const k8s_resp_t *r, char *buf, size_t len)
{
    const char *m = json_string_value(json_object_get(r->json, "message"));
    if (m)
        return m;
    if (r->status == 0)
        return r->error ? r->error : "no response";
    snprintf(buf, len, "HTTP %ld without a Status body", r->status);
    return buf;
}

int k8s_retryable(const k8s_resp_t *r)
{
    return r->status == 0 || r->status == 429 || r->status == 500 || r->status == 502 ||
           r->status == 503 || r->status == 504;
}

void k8s_fail_resp(k8s_op_t *op, const char *what, const k8s_resp_t *r)
{
    char buf[96];
    const char *msg = k8s_status_message(r, buf, sizeof(buf));
    const char *reason = json_string_value(json_object_get(r->json, "reason"));
    int rc;
    switch (r->status) {
    case 0:
        rc = SN_EIO;
        break;
    case 404:
        rc = SN_ENOTFOUND;
        break;
    case 409:
        rc = SN_ECONFLICT;
        break;
    case 400:
    case 415:
    case 422:
        rc = SN_EINVAL;
        break;
    case 401:
    case 403:
        rc = SN_EDENIED;
        break;
    default:
        rc = k8s_retryable(r) ? SN_EAGAIN : SN_EIO;
    }
    if (r->status == 0) {
        k8s_fail(op, rc, 0, NULL, "%s failed: %s", what, msg);
        return;
    }
    /* 422: name the first invalid field too. */
    const json_t *cause =
        json_array_get(json_object_get(json_object_get(r->json, "details"), "causes"), 0);
    const char *field = json_string_value(json_object_get(cause, "field"));
    int add_field = field && !strstr(msg, field);
    k8s_fail(op, rc, r->status, reason, "%s failed: HTTP %ld %s: %s%s%s%s", what, r->status,
             reason ? reason : "", msg, add_field ? " (field " : "", add_field ? field : "",
             add_field ? ")" : "");
}

static void op_timer_fired(void *arg)
{
    k8s_op_t *op = arg;
    op->timer = NULL;
    k8s_step_fn fn = op->after_timer;
    op->after_timer = NULL;
    if (op->k->stopping) {
        op_abandon(op, "executor stopping");
        return;
    }
    fn(op, NULL);
}

void k8s_after(k8s_op_t *op, int64_t ms, k8s_step_fn fn)
{
    k8s_t *k = op->k;
    if (k->stopping) {
        op_abandon(op, "executor stopping");
        return;
    }
    op->after_timer = fn;
    op->timer = k->host->timer_add(k->host, ms > 0 ? ms : 1, 0, op_timer_fired, op);
    if (!op->timer)
        k8s_fail(op, SN_ENOMEM, 0, NULL, "cannot arm a timer");
}

int k8s_retry(k8s_op_t *op, const k8s_resp_t *r, k8s_step_fn restart)
{
    if (op->attempt >= op->k->retries)
        return 0;
    op->attempt++;
    int64_t ms = (int64_t)K8S_BACKOFF_MS << (op->attempt - 1);
    if (r && r->retry_after_s > 0)
        ms = r->retry_after_s * 1000;
    if (ms > K8S_BACKOFF_MAX_MS)
        ms = K8S_BACKOFF_MAX_MS;
    op->k->host->log(op->k->host, SN_LOG_INFO, "%s %s: attempt %d after %s, in %lld ms",
                     op->verb_name, op->target, op->attempt + 1,
                     r && r->status ? (r->status == 409 ? "a conflict" : "a server error")
                                    : "a transport error",
                     (long long)ms);
    k8s_after(op, ms, restart);
    return 1;
}

/* ---- HTTP --------------------------------------------------------------------------------- */

static void send_current(k8s_op_t *op);
static void k8s_token_reload(k8s_t *k);

static void http_done(void *arg, const sn_http_response_t *resp)
{
    k8s_op_t *op = arg;
    op->inflight = 0;
    if (!op->k) { /* the instance is gone */
        op_free(op);
        return;
    }
    k8s_t *k = op->k;
    k8s_resp_t r = {.status = resp ? resp->status : 0,
                    .error = resp && resp->error ? resp->error : "no response"};
    if (resp && resp->status && resp->body && resp->body_len)
        r.json = json_loadb(resp->body, resp->body_len, 0, NULL);
    if (resp && resp->status && resp->header) {
        const char *ra = resp->header(resp, "Retry-After");
        if (ra)
            r.retry_after_s = strtol(ra, NULL, 10);
    }
    if (r.status == 401 && k->conn.token_file && !op->auth_retried && !k->stopping) {
        /* A projected token rotates: read it again once before giving up. */
        op->auth_retried = 1;
        json_decref(r.json);
        op->wait_next = k->token_waiters;
        k->token_waiters = op;
        count(k, "executor_kubernetes_unauthorized_total", "401 answers (token re-read)");
        k8s_token_reload(k);
        return;
    }
    k8s_step_fn step = op->step;
    op->step = NULL;
    step(op, &r);
    json_decref(r.json);
}

static void send_current(k8s_op_t *op)
{
    k8s_t *k = op->k;
    if (k->stopping) {
        op_abandon(op, "executor stopping");
        return;
    }
    char *url = malloc(strlen(k->conn.server) + strlen(op->path) + 1);
    char *auth = NULL;
    const char *hdrs[6];
    size_t nh = 0;
    if (!url) {
        k8s_fail(op, SN_ENOMEM, 0, NULL, "out of memory");
        return;
    }
    sprintf(url, "%s%s", k->conn.server, op->path);
    hdrs[nh++] = "Accept: application/json";
    hdrs[nh++] = "User-Agent: sentinel-executor-kubernetes/1.0";
    char ct[128];
    if (op->ctype) {
        snprintf(ct, sizeof(ct), "Content-Type: %s", op->ctype);
        hdrs[nh++] = ct;
    }
    if (k->conn.token) {
        size_t n = strlen(k->conn.token) + 32;
        auth = malloc(n);
        if (!auth) {
            free(url);
            k8s_fail(op, SN_ENOMEM, 0, NULL, "out of memory");
            return;
        }
        snprintf(auth, n, "Authorization: Bearer %s", k->conn.token);
        hdrs[nh++] = auth;
    }
    hdrs[nh] = NULL;
    sn_http_request_t req = {
        .struct_size = sizeof(sn_http_request_t),
        .method = op->method,
        .url = url,
        .headers = hdrs,
        .body = op->body,
        .body_len = op->body ? strlen(op->body) : 0,
        .timeout_ms = (long)k->request_timeout_ms,
    };
#ifdef SN_HTTP_TLS_MINOR
    if (k->tls_ok) {
        req.ca_file = k->conn.ca_file;
        req.ca_pem = k->conn.ca_pem;
        req.client_cert_pem = k->conn.cert_pem;
        req.client_key_pem = k->conn.key_pem;
        req.insecure_skip_verify = k->conn.insecure;
    }
#endif
    op->inflight = 1;
    k->calls++;
    count(k, "executor_kubernetes_requests_total", "API requests sent");
    if (strcmp(op->method, "GET") != 0) {
        k->mutations++;
        count(k, "executor_kubernetes_mutating_requests_total",
              "API requests that may change the cluster (PATCH, PUT, DELETE)");
    }
    int rc = k->host->http(k->host, &req, http_done, op);
    if (auth) {
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    free(url);
    if (rc != 0) {
        op->inflight = 0;
        k8s_resp_t r = {.status = 0, .error = "the host refused the request"};
        k8s_step_fn step = op->step;
        op->step = NULL;
        step(op, &r);
    }
}

void k8s_call(k8s_op_t *op, const char *method, const char *path, const char *ctype,
              const char *body, k8s_step_fn step)
{
    free(op->method);
    free(op->path);
    free(op->body);
    free(op->ctype);
    op->method = strdup(method);
    op->path = strdup(path);
    op->body = dup0(body);
    op->ctype = dup0(ctype);
    op->auth_retried = 0;
    op->step = step;
    if (!op->method || !op->path || (body && !op->body) || (ctype && !op->ctype)) {
        k8s_fail(op, SN_ENOMEM, 0, NULL, "out of memory");
        return;
    }
    send_current(op);
}

/* ---- token re-reading (offloaded) --------------------------------------------------------- */

typedef struct k8s_tok {
    k8s_t *k; /* NULL once the instance was destroyed */
    char *path;
    char *token;
    int err;
} k8s_tok_t;

/* Thread: offload pool. */
static void tok_work(void *arg)
{
    k8s_tok_t *t = arg;
    int rc = k8s_read_file(t->path, K8S_TOKEN_MAX, &t->token, NULL);
    if (rc == 0) {
        size_t n = strlen(t->token);
        while (n && (t->token[n - 1] == '\n' || t->token[n - 1] == '\r' || t->token[n - 1] == ' '))
            t->token[--n] = 0;
        if (n == 0)
            rc = -ENODATA;
    }
    t->err = -rc;
}

static void tok_free(k8s_tok_t *t)
{
    if (t->token) {
        memset(t->token, 0, strlen(t->token));
        free(t->token);
    }
    free(t->path);
    free(t);
}

/* Thread: loop. */
static void tok_done(void *arg)
{
    k8s_tok_t *t = arg;
    k8s_t *k = t->k;
    if (!k) {
        tok_free(t);
        return;
    }
    k->token_reading = 0;
    k->tok_job = NULL;
    if (t->err == 0 && t->token) {
        if (!k->conn.token || strcmp(k->conn.token, t->token) != 0) {
            k->host->log(k->host, SN_LOG_INFO, "token re-read from %s (changed)", t->path);
            count(k, "executor_kubernetes_token_reloads_total",
                  "Token file re-reads that "
                  "found a new token");
        }
        if (k->conn.token) {
            memset(k->conn.token, 0, strlen(k->conn.token));
            free(k->conn.token);
        }
        k->conn.token = t->token;
        t->token = NULL;
    } else {
        k->host->log(k->host, SN_LOG_WARN, "cannot re-read token %s: %s (keeping the old one)",
                     t->path, strerror(t->err));
    }
    tok_free(t);
    /* Send again what a 401 held back, with whatever token we now have. */
    k8s_op_t *w = k->token_waiters;
    k->token_waiters = NULL;
    while (w) {
        k8s_op_t *next = w->wait_next;
        w->wait_next = NULL;
        send_current(w);
        w = next;
    }
    maybe_stopped(k);
}

static void k8s_token_reload(k8s_t *k)
{
    if (k->token_reading || !k->conn.token_file)
        return;
    k8s_tok_t *t = calloc(1, sizeof(*t));
    if (t)
        t->path = strdup(k->conn.token_file);
    if (!t || !t->path) {
        free(t);
        goto failed;
    }
    t->k = k;
    if (k->host->offload(k->host, tok_work, tok_done, t) != 0) {
        tok_free(t);
        goto failed;
    }
    k->token_reading = 1;
    k->tok_job = t;
    return;
failed:
    /* No re-read possible now: let the waiting calls see their 401 by re-sending once. */
    k->host->log(k->host, SN_LOG_WARN, "cannot schedule a token re-read");
    for (k8s_op_t *w = k->token_waiters; w;) {
        k8s_op_t *next = w->wait_next;
        w->wait_next = NULL;
        send_current(w);
        w = next;
    }
    k->token_waiters = NULL;
}

static void tok_tick(void *arg)
{
    k8s_token_reload(arg);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static int k8s_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    k8s_t *k = calloc(1, sizeof(*k));
    char why[sizeof(err->msg)] = "";
    if (!k || !(k->keys = json_object())) {
        free(k);
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    k->host = host;
    const char *kubeconfig = host->cfg_str(cfg, "kubeconfig");
    int rc;
    if (kubeconfig && kubeconfig[0]) {
        rc = k8s_conn_kubeconfig(&k->conn, kubeconfig, host->cfg_str(cfg, "context"), why,
                                 sizeof(why));
        const char *server = host->cfg_str(cfg, "server");
        if (rc == 0 && server && server[0]) {
            free(k->conn.server);
            k->conn.server = strdup(server);
            if (!k->conn.server)
                rc = SN_ENOMEM;
        }
    } else {
        rc = k8s_conn_in_cluster(&k->conn, host->cfg_str(cfg, "server"),
                                 host->cfg_str(cfg, "token_file"), host->cfg_str(cfg, "ca_file"),
                                 why, sizeof(why));
    }
    if (rc != 0)
        goto fail;
    if (host->cfg_bool(cfg, "insecure_skip_tls_verify"))
        k->conn.insecure = 1;
    k->namespaces = host->cfg_list(cfg, "namespaces");
    k->verify_timeout_ms = host->cfg_int(cfg, "verify_timeout");
    k->poll_ms = host->cfg_int(cfg, "poll_interval");
    k->request_timeout_ms = host->cfg_int(cfg, "request_timeout");
    k->token_refresh_ms = host->cfg_int(cfg, "token_refresh");
    k->retries = (int)host->cfg_int(cfg, "retries");
    k->grace_period_s = host->cfg_int(cfg, "grace_period");
    k->pod_start_s = host->cfg_int(cfg, "pod_start_estimate") / 1000;
    if (k->verify_timeout_ms <= 0 || k->poll_ms <= 0 || k->request_timeout_ms <= 0 ||
        k->token_refresh_ms <= 0) {
        snprintf(why, sizeof(why),
                 "verify_timeout, poll_interval, request_timeout and "
                 "token_refresh must be positive durations");
        goto fail;
    }
    if (k->retries < 0 || k->retries > 10) {
        snprintf(why, sizeof(why), "retries must be 0..10");
        goto fail;
    }
    int https = strncmp(k->conn.server, "https://", 8) == 0;
    int custom_tls = k->conn.ca_file || k->conn.ca_pem || k->conn.cert_pem || k->conn.insecure;
#ifdef SN_HTTP_TLS_MINOR
    k->tls_ok = host->abi_minor >= SN_HTTP_TLS_MINOR;
#endif
    if (https && custom_tls && !k->tls_ok) {
        snprintf(why, sizeof(why),
                 "%s needs TLS settings (cluster CA, client certificate or "
                 "insecure_skip_tls_verify) that this sentineld's HTTP client cannot apply "
                 "(sn_http_request_t has no TLS fields before ABI 1.2)",
                 k->conn.server);
        goto fail;
    }
    if (!https && k->conn.token)
        host->log(host, SN_LOG_WARN,
                  "API server %s is plain http: the bearer token travels "
                  "unencrypted (tests only)",
                  k->conn.server);
    if (https && k->conn.insecure)
        host->log(host, SN_LOG_WARN,
                  "insecure_skip_tls_verify is set: the API server %s is "
                  "NOT verified; anyone on the path can impersonate it",
                  k->conn.server);
    /* A kubeconfig context pinned to a namespace scopes the executor unless namespaces says
     * otherwise. */
    if (!k->namespaces && k->conn.namespace)
        host->log(host, SN_LOG_INFO, "namespaces not set: limited to the context's namespace %s",
                  k->conn.namespace);
    host->log(host, SN_LOG_INFO, "API server %s via %s", k->conn.server, k->conn.source);
    *self = k;
    return 0;
fail:
    snprintf(err->msg, sizeof(err->msg), "%s", why[0] ? why : "out of memory");
    k8s_conn_free(&k->conn);
    json_decref(k->keys);
    free(k);
    return rc ? rc : SN_EINVAL;
}

static int k8s_start(void *self)
{
    k8s_t *k = self;
    if (k->conn.token_file) {
        k->token_timer = k->host->timer_add(k->host, k->token_refresh_ms, 1, tok_tick, k);
        if (!k->token_timer)
            return SN_ENOMEM;
    }
    return 0;
}

static void k8s_stop(void *self, sn_done_fn done, void *arg)
{
    k8s_t *k = self;
    k->stopping = 1;
    k->stop_done = done;
    k->stop_arg = arg;
    if (k->token_timer) {
        k->host->timer_del(k->token_timer);
        k->token_timer = NULL;
    }
    /* Timers (polls, back-offs) end now; requests in flight finish on their own. */
    for (k8s_op_t *op = k->ops; op;) {
        k8s_op_t *next = op->next;
        if (op->timer)
            op_abandon(op, "executor stopping");
        op = next;
    }
    maybe_stopped(k);
}

static void k8s_destroy(void *self)
{
    k8s_t *k = self;
    if (!k)
        return;
    if (k->token_timer)
        k->host->timer_del(k->token_timer);
    if (k->tok_job)
        k->tok_job->k = NULL;
    k->token_waiters = NULL;
    while (k->ops) {
        k8s_op_t *op = k->ops;
        op_unlink(k, op);
        if (op->timer)
            k->host->timer_del(op->timer);
        if (op->inflight) {
            op->k = NULL; /* http_done frees it */
            continue;
        }
        op_free(op);
    }
    k8s_conn_free(&k->conn);
    json_decref(k->keys);
    free(k);
}

static int k8s_health(void *self, sn_health_t *out)
{
    k8s_t *k = self;
    out->ok = 1;
    snprintf(out->detail, sizeof(out->detail),
             "%s via %s; %lu requests, %lu mutating, %lu failures, %zu in progress", k->conn.server,
             k->conn.source, k->calls, k->mutations, k->failures, k->nops);
    return 0;
}

/* ---- executor entry points ---------------------------------------------------------------- */

static void begin(k8s_t *k, k8s_opkind_t kind, const sn_action_t *a, const json_t *snap,
                  sn_done_fn done, void *arg)
{
    static const char *const kinds[] = {"assess", "snapshot", "execute", "verify", "rollback"};
    k8s_op_t *op = calloc(1, sizeof(*op));
    if (!op) {
        done(arg, SN_ENOMEM, NULL);
        return;
    }
    op->k = k;
    op->kind = kind;
    op->done = done;
    op->arg = arg;
    op->verb_name = strdup(a && a->verb ? a->verb : "?");
    op->target = strdup(a && a->target ? a->target : "?");
    op->key = a && a->idempotency_key && a->idempotency_key[0] ? strdup(a->idempotency_key) : NULL;
    op->incident = a ? dup0(a->incident) : NULL;
    op->params = a && a->params ? json_deep_copy(a->params) : json_object();
    op->snap = snap ? json_deep_copy(snap) : NULL;
    op->dry_run = a ? a->dry_run : 0;
    op->started_mono = k->host->mono_ms(k->host);
    op->next = k->ops;
    if (k->ops)
        k->ops->prev = op;
    k->ops = op;
    k->nops++;
    if (!op->verb_name || !op->target || !op->params ||
        (a && a->idempotency_key && a->idempotency_key[0] && !op->key) || (snap && !op->snap)) {
        k8s_fail(op, SN_ENOMEM, 0, NULL, "out of memory");
        return;
    }
    char phase[64];
    snprintf(phase, sizeof(phase), "executor_kubernetes_%s_total", kinds[kind]);
    count(k, phase, "Executor calls by kind");
    if (k->stopping) {
        k8s_fail(op, SN_EAGAIN, 0, NULL, "executor is stopping");
        return;
    }
    if (!a) {
        k8s_fail(op, SN_EINVAL, 0, NULL, "no action");
        return;
    }
    k8s_verbs_start(op);
}

static void k8s_assess(void *self, const sn_action_t *a, sn_done_fn done, void *arg)
{
    begin(self, K8S_ASSESS, a, NULL, done, arg);
}

static void k8s_snapshot(void *self, const sn_action_t *a, sn_done_fn done, void *arg)
{
    begin(self, K8S_SNAPSHOT, a, NULL, done, arg);
}

static void k8s_execute(void *self, const sn_action_t *a, sn_done_fn done, void *arg)
{
    begin(self, K8S_EXECUTE, a, NULL, done, arg);
}

static void k8s_verify(void *self, const sn_action_t *a, sn_done_fn done, void *arg)
{
    begin(self, K8S_VERIFY, a, NULL, done, arg);
}

static void k8s_rollback(void *self, const sn_action_t *a, const json_t *snapshot, sn_done_fn done,
                         void *arg)
{
    if (!snapshot) {
        json_t *res = json_pack("{s:s}", "error", "rollback needs the snapshot");
        done(arg, SN_EINVAL, res);
        json_decref(res);
        return;
    }
    begin(self, K8S_ROLLBACK, a, snapshot, done, arg);
}

static const sn_executor_ops_t k8s_ops = {
    .struct_size = sizeof(sn_executor_ops_t),
    .verbs = k8s_verbs,
    .assess = k8s_assess,
    .snapshot = k8s_snapshot,
    .execute = k8s_execute,
    .verify = k8s_verify,
    .rollback = k8s_rollback,
};

static const sn_plugin_t k8s_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_EXECUTOR,
    .type = "kubernetes",
    .version = "1.0.0",
    .summary = "restart pods, rolling-restart and scale deployments through the Kubernetes API",
    .params = k8s_params,
    .create = k8s_create,
    .start = k8s_start,
    .stop = k8s_stop,
    .destroy = k8s_destroy,
    .health = k8s_health,
    .ops = &k8s_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &k8s_plugin;
}
