/**
 * @file qdrant.c
 * Store `qdrant`: the VECTOR capability on a Qdrant server through its REST API, asynchronously
 * on the host's HTTP client.
 *
 * Collections: the core names a collection ("incidents", "open_incidents"); the Qdrant
 * collection is `collection_prefix` + that name. It is created on first use with
 * {"vectors": {"size": dim, "distance": "Cosine"}} (so scores are cosine similarity) and a
 * keyword payload index for every `tag` key; 409 "already exists" is fine once a GET shows the
 * same size and distance (a different size fails with SN_EINVAL and says which). Operations on a
 * collection that is being created wait for it; a collection deleted behind our back (404) is
 * created again, once per operation.
 *
 * Points: Qdrant takes only unsigned integers and UUIDs as point ids, so an id that is a UUID
 * (incident ids are UUIDv7) is used as it is, lower-cased, and any other id becomes the UUIDv5
 * of it in the namespace QD_NAMESPACE. The core's id is kept in the payload as `sentinel_id`
 * and returned from searches as "id"; the payload the core passes is stored beside it, with the
 * `tag` pairs. Upserts use ?wait=true, so a search right after sees the point.
 *
 * Search: POST .../points/search (or .../points/query with `api = query`, Qdrant >= 1.10) with
 * limit = k, score_threshold = min_score, with_payload, and a must filter of every `tag`
 * (key = value), so instances with different tags can share one collection.
 *
 * Requests: at most `max_inflight` are out (a request keeps its slot through its retries), the
 * others wait in order; at most `max_queue` operations are accepted at once, beyond that a call
 * fails at once with SN_ENOMEM and is counted. 408, 429 and 5xx answers and transport errors are
 * retried with full-jitter backoff, honouring Retry-After; 400 fails with SN_EINVAL, 401/403 with
 * SN_EDENIED, exhausted retries with SN_EIO (SN_ETIMEDOUT after a timeout). The API key only goes
 * into the `api-key` header and is never logged.
 */
#include "retry.h"
#include <sentinel/plugin.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define QD_MAX_DIM 65536
#define QD_MAX_K 1000
#define QD_MAX_TAGS 16
#define QD_ERR_MAX 200
#define QD_NAME_MAX 200
#define QD_RESPONSE_MAX ((size_t)16 << 20)

/* The UUIDv5 namespace of ids that are not UUIDs: 5b0c1a8e-7f3d-4c2a-9e61-3d8f2b7a4c10. */
static const unsigned char QD_NAMESPACE[16] = {0x5b, 0x0c, 0x1a, 0x8e, 0x7f, 0x3d, 0x4c, 0x2a,
                                               0x9e, 0x61, 0x3d, 0x8f, 0x2b, 0x7a, 0x4c, 0x10};

typedef struct qd qd_t;
typedef struct qd_req qd_req_t;

enum { QC_UNKNOWN = 0, QC_CREATING, QC_READY };
enum { QO_UPSERT = 1, QO_SEARCH };

typedef struct qd_op qd_op_t;

/* One collection as this instance knows it. */
typedef struct qd_coll {
    struct qd_coll *next;
    char name[QD_NAME_MAX + 1];  /* the core's name */
    char qname[QD_NAME_MAX * 2]; /* prefix + name, the Qdrant collection */
    size_t dim;                  /* size once READY or CREATING */
    int state;
    qd_op_t *waiting, *wtail; /* operations waiting for it to be ready */
} qd_coll_t;

/* One vector_upsert or vector_search call. */
struct qd_op {
    qd_op_t *next; /* in its collection's waiting list */
    int kind;
    qd_coll_t *coll;
    size_t dim;
    char *body;
    char *path;
    int recreated;
    sn_done_fn done;
    void *arg;
};

/* One HTTP exchange, through its retries. */
typedef void (*qd_finish_fn)(qd_t *q, qd_req_t *r, int rc, json_t *doc);

struct qd_req {
    qd_req_t *next, *prev; /* every live request of the instance */
    qd_req_t *qnext;       /* waiting for a slot */
    qd_t *q;               /* NULL once the instance was destroyed with the request in flight */
    const char *method;
    char *url;
    char *body;
    size_t len;
    int attempts, in_flight, has_slot;
    sn_timer_t *timer;
    qd_finish_fn finish;
    qd_op_t *op;     /* the call it serves, or NULL */
    qd_coll_t *coll; /* the collection an internal request is about */
    long last_status;
    int last_timeout;
    char last_error[QD_ERR_MAX];
};

struct qd {
    const sn_host_t *host;
    char *base; /* url without a trailing slash */
    const char *prefix;
    char *api_header; /* "api-key: ..." or NULL; wiped in destroy */
    const char *key;
    int use_query;
    const char *tag_key[QD_MAX_TAGS], *tag_val[QD_MAX_TAGS];
    char *tag_buf[QD_MAX_TAGS];
    size_t ntags;
    int64_t timeout_ms, max_retries, retry_base_ms, retry_max_ms, max_inflight, max_queue;
    uint64_t rng;
    qd_coll_t *colls;
    qd_req_t *reqs;
    qd_req_t *slot_head, *slot_tail; /* waiting for a slot */
    size_t inflight;                 /* requests holding a slot */
    size_t ops;                      /* calls not yet completed */
    unsigned long long upserts, searches, failures, dropped;
    char last_error[QD_ERR_MAX];
    int stopping;
    sn_done_fn stop_done;
    void *stop_arg;
};

static const sn_param_t qd_params[] = {
    {"url", SN_T_STRING, NULL, SN_PARAM_REQUIRED, "Qdrant REST endpoint, e.g. http://qdrant:6333"},
    {"api_key", SN_T_STRING, NULL, SN_PARAM_SECRET,
     "sent as the api-key header (use ${env:NAME} or ${file:/path}); none when the server has "
     "no key"},
    {"collection_prefix", SN_T_STRING, "sentinel_", 0,
     "prepended to the core's collection names (incidents, open_incidents)"},
    {"tag", SN_T_STRING, NULL, SN_PARAM_MULTI,
     "repeatable 'key=value': stored in every point's payload and required in every search, so "
     "several deployments can share a collection"},
    {"api", SN_T_STRING, "search", 0,
     "search (POST .../points/search, every version) or query (POST .../points/query, >= 1.10)"},
    {"max_inflight", SN_T_INT, "8", 0, "requests out at once"},
    {"max_queue", SN_T_INT, "1000", 0, "operations accepted at once; more fail at once"},
    {"timeout", SN_T_DURATION, "10s", 0, "deadline of one request"},
    {"max_retries", SN_T_INT, "3", 0, "retries after the first attempt"},
    {"retry_base", SN_T_DURATION, "200ms", 0, "first backoff ceiling; doubles on every retry"},
    {"retry_max", SN_T_DURATION, "10s", 0,
     "longest wait between attempts, also the cap on a Retry-After"},
    {NULL, 0, NULL, 0, NULL},
};

static void qd_count(qd_t *q, const char *name, const char *help, double v)
{
    q->host->metric(q->host, SN_METRIC_COUNTER, name, help, v);
}

static void qd_gauges(qd_t *q)
{
    q->host->metric(q->host, SN_METRIC_GAUGE, "store_qdrant_pending",
                    "Vector operations accepted and not yet completed", (double)q->ops);
    q->host->metric(q->host, SN_METRIC_GAUGE, "store_qdrant_inflight",
                    "Qdrant requests out (with their retries)", (double)q->inflight);
}

static int qd_is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/**
 * The Qdrant point id of @p id: the UUID itself (lower case) or UUIDv5(QD_NAMESPACE, id).
 * Returns 0, or SN_EIO when the digest is not available.
 */
static int qd_point_id(const char *id, char out[37])
{
    if (qd_is_uuid(id)) {
        for (int i = 0; i < 36; i++)
            out[i] = (char)tolower((unsigned char)id[i]);
        out[36] = '\0';
        return 0;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha1(), NULL) == 1 &&
             EVP_DigestUpdate(c, QD_NAMESPACE, sizeof(QD_NAMESPACE)) == 1 &&
             EVP_DigestUpdate(c, id, strlen(id)) == 1 && EVP_DigestFinal_ex(c, md, &n) == 1 &&
             n >= 16;
    EVP_MD_CTX_free(c);
    if (!ok)
        return SN_EIO;
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x50); /* version 5 */
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", md[0],
             md[1], md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10], md[11], md[12],
             md[13], md[14], md[15]);
    return 0;
}

static int qd_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > QD_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return 0;
    return 1;
}

static json_t *qd_vector(const float *v, size_t dim)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < dim; i++) {
        if (!isfinite(v[i]) || json_array_append_new(arr, json_real(v[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* {"must": [{"key": k, "match": {"value": v}}, ...]} of the tags, or NULL without tags. */
static json_t *qd_filter(const qd_t *q)
{
    if (!q->ntags)
        return NULL;
    json_t *must = json_array();
    for (size_t i = 0; must && i < q->ntags; i++)
        json_array_append_new(must, json_pack("{s:s,s:{s:s}}", "key", q->tag_key[i], "match",
                                              "value", q->tag_val[i]));
    return must ? json_pack("{s:o}", "must", must) : NULL;
}

/* The final status of a request that did not succeed. */
static int qd_status_rc(const qd_req_t *r)
{
    long st = r->last_status;
    if (st == 0)
        return r->last_timeout ? SN_ETIMEDOUT : SN_EIO;
    if (st == 400 || st == 422)
        return SN_EINVAL;
    if (st == 401 || st == 403)
        return SN_EDENIED;
    if (st == 404)
        return SN_ENOTFOUND;
    if (st == 409)
        return SN_ECONFLICT;
    return st == 408 ? SN_ETIMEDOUT : SN_EIO;
}

/* ---- requests ----------------------------------------------------------------------------- */

static void qd_send(qd_req_t *r);
static void qd_maybe_stopped(qd_t *q);

static void qd_req_free(qd_req_t *r)
{
    free(r->url);
    free(r->body);
    free(r);
}

/* Unlink @p r, give back its slot and hand the slot to the next request waiting for one. */
static void qd_req_release(qd_t *q, qd_req_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        q->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
    if (r->has_slot) {
        r->has_slot = 0;
        q->inflight--;
    }
}

static void qd_pump(qd_t *q)
{
    while (q->slot_head && q->inflight < (size_t)q->max_inflight) {
        qd_req_t *r = q->slot_head;
        q->slot_head = r->qnext;
        if (!q->slot_head)
            q->slot_tail = NULL;
        r->qnext = NULL;
        r->has_slot = 1;
        q->inflight++;
        qd_send(r);
    }
    qd_gauges(q);
}

/**
 * Start a request: @p path below the base URL, @p body owned by the request from now on (may
 * be NULL). @p finish runs once on the loop with rc 0 (2xx) or the final SN_E* code and the
 * parsed answer (may be NULL), after which the request is freed.
 */
static int qd_request(qd_t *q, const char *method, const char *path, char *body, qd_finish_fn fin,
                      qd_op_t *op, qd_coll_t *coll)
{
    qd_req_t *r = calloc(1, sizeof(*r));
    if (!r || asprintf(&r->url, "%s%s", q->base, path) < 0) {
        free(r);
        free(body);
        return SN_ENOMEM;
    }
    r->q = q;
    r->method = method;
    r->body = body;
    r->len = body ? strlen(body) : 0;
    r->finish = fin;
    r->op = op;
    r->coll = coll;
    r->next = q->reqs;
    if (q->reqs)
        q->reqs->prev = r;
    q->reqs = r;
    if (q->slot_tail)
        q->slot_tail->qnext = r;
    else
        q->slot_head = r;
    q->slot_tail = r;
    qd_pump(q);
    return 0;
}

static void qd_retry(void *arg)
{
    qd_req_t *r = arg;
    r->timer = NULL;
    qd_send(r);
}

static void qd_http_done(void *arg, const sn_http_response_t *resp)
{
    qd_req_t *r = arg;
    r->in_flight = 0;
    qd_t *q = r->q;
    if (!q) {
        qd_req_free(r);
        return;
    }
    long st = resp ? resp->status : 0;
    r->last_status = st;
    r->last_timeout = 0;
    json_t *doc = NULL;
    if (st != 0 && resp->body_len)
        doc = json_loadb(resp->body, resp->body_len, 0, NULL);
    if (st >= 200 && st < 300) {
        qd_req_release(q, r);
        r->finish(q, r, 0, doc);
        json_decref(doc);
        qd_req_free(r);
        qd_pump(q);
        qd_maybe_stopped(q);
        return;
    }
    if (st == 0) {
        const char *e = resp && resp->error ? resp->error : "no response";
        r->last_timeout = strstr(e, "timed out") != NULL;
        snprintf(r->last_error, sizeof(r->last_error), "%.150s", e);
    } else {
        /* Errors: {"status": {"error": "..."}}; 401 is plain text, never echoed. */
        const char *msg =
            json_string_value(json_object_get(json_object_get(doc, "status"), "error"));
        if (st == 401 || st == 403 || !msg || (q->key && q->key[0] && strstr(msg, q->key)))
            snprintf(r->last_error, sizeof(r->last_error), "HTTP %ld%s", st,
                     st == 401 || st == 403 ? " (check api_key)" : "");
        else
            snprintf(r->last_error, sizeof(r->last_error), "HTTP %ld: %.150s", st, msg);
        for (char *p = r->last_error; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = ' ';
    }
    int retryable = st == 0 || st == 408 || st == 429 || st >= 500;
    if (retryable && r->attempts <= q->max_retries && !q->stopping) {
        int64_t delay = 0;
        if (!(st == 429 && snr_retry_after(resp, &delay)) &&
            !(st == 503 && snr_retry_after(resp, &delay)))
            delay = snr_backoff(&q->rng, q->retry_base_ms, q->retry_max_ms, r->attempts);
        if (delay > q->retry_max_ms)
            delay = q->retry_max_ms;
        qd_count(q, "store_qdrant_retries_total", "Qdrant requests retried", 1);
        q->host->log(q->host, SN_LOG_DEBUG, "%s %s: %s, retry %d in %lld ms", r->method,
                     r->op ? (r->op->kind == QO_UPSERT ? "upsert" : "search") : "collection",
                     r->last_error, r->attempts, (long long)delay);
        r->timer = q->host->timer_add(q->host, delay, 0, qd_retry, r);
        if (r->timer) {
            json_decref(doc);
            return;
        }
        snprintf(r->last_error, sizeof(r->last_error), "cannot schedule a retry");
    }
    qd_req_release(q, r);
    r->finish(q, r, qd_status_rc(r), doc);
    json_decref(doc);
    qd_req_free(r);
    qd_pump(q);
    qd_maybe_stopped(q);
}

static void qd_send(qd_req_t *r)
{
    qd_t *q = r->q;
    const char *headers[4];
    size_t nh = 0;
    headers[nh++] = "Content-Type: application/json";
    if (q->api_header)
        headers[nh++] = q->api_header;
    headers[nh] = NULL;
    sn_http_request_t req = {
        .struct_size = sizeof(req),
        .method = r->method,
        .url = r->url,
        .headers = headers,
        .body = r->body,
        .body_len = r->len,
        .timeout_ms = (long)q->timeout_ms,
        .max_response = QD_RESPONSE_MAX,
    };
    r->attempts++;
    r->in_flight = 1;
    qd_count(q, "store_qdrant_requests_total", "Requests sent to Qdrant (attempts)", 1);
    if (q->host->http(q->host, &req, qd_http_done, r) != 0) {
        sn_http_response_t none = {.status = 0, .error = "request refused by the HTTP client"};
        qd_http_done(r, &none);
    }
}

/* ---- operations --------------------------------------------------------------------------- */

static void qd_op_free(qd_op_t *op)
{
    free(op->body);
    free(op->path);
    free(op);
}

/* Complete a call. Thread: loop. */
static void qd_op_finish(qd_t *q, qd_op_t *op, int rc, json_t *result, const char *why)
{
    q->ops--;
    if (rc != 0) {
        q->failures++;
        qd_count(q, "store_qdrant_failures_total", "Vector operations that failed", 1);
        snprintf(q->last_error, sizeof(q->last_error), "%s", why ? why : "failed");
        q->host->log(q->host, SN_LOG_WARN, "%s on %s failed: %s",
                     op->kind == QO_UPSERT ? "upsert" : "search", op->coll->qname,
                     why ? why : "failed");
    } else {
        q->last_error[0] = '\0';
    }
    sn_done_fn done = op->done;
    void *arg = op->arg;
    qd_op_free(op);
    qd_gauges(q);
    done(arg, rc, rc == 0 ? result : NULL);
}

static void qd_ensure(qd_t *q, qd_op_t *op);

/* {"matches": [{"id", "score", "payload"}]} from a search or query answer. */
static json_t *qd_matches(const json_t *doc)
{
    const json_t *res = json_object_get(doc, "result");
    if (json_is_object(res))
        res = json_object_get(res, "points"); /* the query API */
    if (!json_is_array(res))
        return NULL;
    json_t *matches = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(res, i, p)
    {
        json_t *payload = json_object_get(p, "payload");
        payload = json_is_object(payload) ? json_deep_copy(payload) : json_object();
        json_t *sid = json_object_get(payload, "sentinel_id");
        json_t *id = json_is_string(sid) ? json_incref(sid) : NULL;
        if (!id) {
            /* A point someone else wrote: its own id, as text. */
            json_t *pid = json_object_get(p, "id");
            if (json_is_string(pid)) {
                id = json_incref(pid);
            } else if (json_is_integer(pid)) {
                char buf[32];
                snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(pid));
                id = json_string(buf);
            }
        }
        json_object_del(payload, "sentinel_id");
        json_t *m =
            id ? json_pack("{s:o,s:f,s:o}", "id", id, "score",
                           json_number_value(json_object_get(p, "score")), "payload", payload)
               : NULL;
        if (!id)
            json_decref(payload);
        if (m)
            json_array_append_new(matches, m);
    }
    return json_pack("{s:o}", "matches", matches);
}

static void qd_op_done(qd_t *q, qd_req_t *r, int rc, json_t *doc)
{
    qd_op_t *op = r->op;
    if (rc == SN_ENOTFOUND && !op->recreated) {
        /* The collection was deleted behind our back: create it again, then retry. */
        op->recreated = 1;
        if (op->coll->state == QC_READY)
            op->coll->state = QC_UNKNOWN;
        q->host->log(q->host, SN_LOG_WARN, "collection %s is gone: creating it again",
                     op->coll->qname);
        qd_ensure(q, op);
        return;
    }
    if (rc != 0) {
        qd_op_finish(q, op, rc, NULL, r->last_error);
        return;
    }
    if (op->kind == QO_UPSERT) {
        q->upserts++;
        qd_count(q, "store_qdrant_upserts_total", "Points upserted", 1);
        json_t *res = json_pack("{s:O?}", "result", json_object_get(doc, "result"));
        qd_op_finish(q, op, 0, res, NULL);
        json_decref(res);
        return;
    }
    json_t *res = qd_matches(doc);
    q->searches++;
    qd_count(q, "store_qdrant_searches_total", "Searches answered", 1);
    if (!res) {
        qd_op_finish(q, op, SN_EIO, NULL, "search answer without a result list");
        return;
    }
    qd_op_finish(q, op, 0, res, NULL);
    json_decref(res);
}

static void qd_op_send(qd_t *q, qd_op_t *op)
{
    char *body = strdup(op->body);
    if (!body || qd_request(q, op->kind == QO_UPSERT ? "PUT" : "POST", op->path, body, qd_op_done,
                            op, op->coll) != 0)
        qd_op_finish(q, op, SN_ENOMEM, NULL, "out of memory");
}

/* Release (rc == 0) or fail every operation waiting for @p c. */
static void qd_coll_settle(qd_t *q, qd_coll_t *c, int rc, const char *why)
{
    qd_op_t *list = c->waiting;
    c->waiting = c->wtail = NULL;
    while (list) {
        qd_op_t *op = list;
        list = op->next;
        op->next = NULL;
        if (rc == 0)
            qd_op_send(q, op);
        else
            qd_op_finish(q, op, rc, NULL, why);
    }
}

static void qd_index_done(qd_t *q, qd_req_t *r, int rc, json_t *doc)
{
    (void)doc;
    if (rc != 0)
        q->host->log(q->host, SN_LOG_WARN,
                     "payload index on %s not created (%s): tag filters still work, slower",
                     r->coll->qname, r->last_error);
}

static void qd_coll_ready(qd_t *q, qd_coll_t *c)
{
    c->state = QC_READY;
    qd_coll_settle(q, c, 0, NULL);
}

static void qd_get_done(qd_t *q, qd_req_t *r, int rc, json_t *doc)
{
    qd_coll_t *c = r->coll;
    if (rc != 0) {
        c->state = QC_UNKNOWN;
        qd_coll_settle(q, c, rc, r->last_error);
        return;
    }
    json_t *vectors = json_object_get(
        json_object_get(json_object_get(json_object_get(doc, "result"), "config"), "params"),
        "vectors");
    json_t *size = json_object_get(vectors, "size");
    const char *dist = json_string_value(json_object_get(vectors, "distance"));
    char why[QD_ERR_MAX + QD_NAME_MAX * 2];
    if (!json_is_integer(size)) {
        snprintf(why, sizeof(why),
                 "collection %s exists without a single unnamed vector: use another "
                 "collection_prefix",
                 c->qname);
    } else if ((size_t)json_integer_value(size) != c->dim) {
        snprintf(why, sizeof(why),
                 "collection %s exists with vectors of %lld, the embedder gives %zu: delete it or "
                 "use another collection_prefix",
                 c->qname, (long long)json_integer_value(size), c->dim);
    } else {
        if (dist && strcmp(dist, "Cosine") != 0)
            q->host->log(q->host, SN_LOG_WARN,
                         "collection %s uses %s distance, not Cosine: min_score means something "
                         "else there",
                         c->qname, dist);
        qd_coll_ready(q, c);
        return;
    }
    q->host->log(q->host, SN_LOG_ERROR, "%s", why);
    c->state = QC_UNKNOWN;
    qd_coll_settle(q, c, SN_EINVAL, why);
}

static void qd_create_done(qd_t *q, qd_req_t *r, int rc, json_t *doc)
{
    (void)doc;
    qd_coll_t *c = r->coll;
    char path[QD_NAME_MAX * 2 + 32];
    snprintf(path, sizeof(path), "/collections/%s", c->qname);
    if (rc == SN_ECONFLICT) {
        /* Already there (another instance, or an earlier run): check that it fits. */
        if (qd_request(q, "GET", path, NULL, qd_get_done, NULL, c) != 0) {
            c->state = QC_UNKNOWN;
            qd_coll_settle(q, c, SN_ENOMEM, "out of memory");
        }
        return;
    }
    if (rc != 0) {
        c->state = QC_UNKNOWN;
        qd_coll_settle(q, c, rc, r->last_error);
        return;
    }
    q->host->log(q->host, SN_LOG_INFO, "created collection %s (%zu dimensions, Cosine)", c->qname,
                 c->dim);
    snprintf(path, sizeof(path), "/collections/%s/index?wait=true", c->qname);
    for (size_t i = 0; i < q->ntags; i++) {
        json_t *b = json_pack("{s:s,s:s}", "field_name", q->tag_key[i], "field_schema", "keyword");
        char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
        json_decref(b);
        if (body)
            qd_request(q, "PUT", path, body, qd_index_done, NULL, c);
    }
    qd_coll_ready(q, c);
}

/* Send @p op once its collection is ready, creating the collection first when needed. */
static void qd_ensure(qd_t *q, qd_op_t *op)
{
    qd_coll_t *c = op->coll;
    if (c->state != QC_UNKNOWN && c->dim != op->dim) {
        char why[QD_ERR_MAX + QD_NAME_MAX * 2];
        snprintf(why, sizeof(why), "vector of %zu numbers for collection %s of %zu", op->dim,
                 c->qname, c->dim);
        qd_op_finish(q, op, SN_EINVAL, NULL, why);
        return;
    }
    if (c->state == QC_READY) {
        qd_op_send(q, op);
        return;
    }
    if (c->wtail)
        c->wtail->next = op;
    else
        c->waiting = op;
    c->wtail = op;
    if (c->state == QC_CREATING)
        return;
    c->state = QC_CREATING;
    c->dim = op->dim;
    json_t *b =
        json_pack("{s:{s:I,s:s}}", "vectors", "size", (json_int_t)c->dim, "distance", "Cosine");
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    char path[QD_NAME_MAX * 2 + 16];
    snprintf(path, sizeof(path), "/collections/%s", c->qname);
    if (!body || qd_request(q, "PUT", path, body, qd_create_done, NULL, c) != 0) {
        c->state = QC_UNKNOWN;
        qd_coll_settle(q, c, SN_ENOMEM, "out of memory");
    }
}

static qd_coll_t *qd_coll(qd_t *q, const char *name)
{
    for (qd_coll_t *c = q->colls; c; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    qd_coll_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    snprintf(c->name, sizeof(c->name), "%s", name);
    snprintf(c->qname, sizeof(c->qname), "%s%s", q->prefix, name);
    c->next = q->colls;
    q->colls = c;
    return c;
}

/* Accept a call: refuse it at once (done before return) or queue it. */
static void qd_submit(qd_t *q, int kind, const char *collection, size_t dim, json_t *body,
                      const char *suffix, sn_done_fn done, void *arg)
{
    int rc = 0;
    qd_op_t *op = NULL;
    qd_coll_t *c = NULL;
    if (q->stopping) {
        rc = SN_EAGAIN;
        goto out;
    }
    if (q->ops >= (size_t)q->max_queue) {
        q->dropped++;
        qd_count(q, "store_qdrant_dropped_total",
                 "Vector operations refused because max_queue was reached", 1);
        q->host->log(q->host, SN_LOG_WARN, "%zu operations pending (max_queue): one refused",
                     q->ops);
        rc = SN_ENOMEM;
        goto out;
    }
    if (!body || !(c = qd_coll(q, collection)) || !(op = calloc(1, sizeof(*op))) ||
        !(op->body = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(9))) ||
        asprintf(&op->path, "/collections/%s%s", c->qname, suffix) < 0) {
        if (op)
            op->path = NULL;
        rc = SN_ENOMEM;
        goto out;
    }
    op->kind = kind;
    op->coll = c;
    op->dim = dim;
    op->done = done;
    op->arg = arg;
    q->ops++;
    qd_gauges(q);
    json_decref(body);
    qd_ensure(q, op);
    return;
out:
    json_decref(body);
    if (op)
        qd_op_free(op);
    done(arg, rc, NULL);
}

/**
 * Upsert point @p id (any text; see the file comment for the id mapping) with @p v and a copy of
 * @p payload (an object; anything else is stored under "value") into @p collection, creating the
 * collection on first use. done: 0 with {"result": Qdrant's update result}, or an SN_E* code;
 * before this returns for refusals (SN_EINVAL, SN_ENOMEM at max_queue, SN_EAGAIN stopping).
 * Ownership: arguments are borrowed for the call (copied before it returns). Thread: loop.
 */
static void qd_vector_upsert(void *self, const char *collection, const char *id, const float *v,
                             size_t dim, const json_t *payload, sn_done_fn done, void *arg)
{
    qd_t *q = self;
    char pid[37];
    if (!collection || !qd_name_ok(collection) || !id || !id[0] || !v || dim == 0 ||
        dim > QD_MAX_DIM) {
        done(arg, SN_EINVAL, NULL);
        return;
    }
    if (qd_point_id(id, pid) != 0) {
        done(arg, SN_EIO, NULL);
        return;
    }
    json_t *vec = qd_vector(v, dim);
    if (!vec) {
        done(arg, SN_EINVAL, NULL); /* NaN or infinity */
        return;
    }
    json_t *pl = json_is_object(payload) ? json_deep_copy(payload) : json_object();
    if (pl && payload && !json_is_object(payload))
        json_object_set_new(pl, "value", json_deep_copy(payload));
    for (size_t i = 0; pl && i < q->ntags; i++)
        json_object_set_new(pl, q->tag_key[i], json_string(q->tag_val[i]));
    if (pl)
        json_object_set_new(pl, "sentinel_id", json_string(id));
    json_t *body =
        pl ? json_pack("{s:[{s:s,s:o,s:o}]}", "points", "id", pid, "vector", vec, "payload", pl)
           : NULL;
    if (!pl)
        json_decref(vec);
    qd_submit(q, QO_UPSERT, collection, dim, body, "/points?wait=true", done, arg);
}

/**
 * The @p k (at most 1000) points of @p collection closest to @p v by cosine similarity with a
 * score of at least @p min_score (-1 or less: no threshold), restricted to the instance's tags.
 * result: {"matches": [{"id", "score", "payload"}]} best first; "id" is the id given to upsert.
 * A collection never written to is created (empty). Ownership: arguments are borrowed for the
 * call. Thread: loop.
 */
static void qd_vector_search(void *self, const char *collection, const float *v, size_t dim,
                             size_t k, double min_score, sn_done_fn done, void *arg)
{
    qd_t *q = self;
    if (!collection || !qd_name_ok(collection) || !v || dim == 0 || dim > QD_MAX_DIM ||
        isnan(min_score)) {
        done(arg, SN_EINVAL, NULL);
        return;
    }
    if (k == 0) {
        json_t *res = json_pack("{s:[]}", "matches");
        done(arg, res ? 0 : SN_ENOMEM, res);
        json_decref(res);
        return;
    }
    json_t *vec = qd_vector(v, dim);
    if (!vec) {
        done(arg, SN_EINVAL, NULL);
        return;
    }
    json_t *body = json_pack("{s:o,s:I,s:b}", q->use_query ? "query" : "vector", vec, "limit",
                             (json_int_t)(k > QD_MAX_K ? QD_MAX_K : k), "with_payload", 1);
    if (body && min_score > -1)
        json_object_set_new(body, "score_threshold", json_real(min_score));
    json_t *filter = qd_filter(q);
    if (body && filter)
        json_object_set(body, "filter", filter);
    json_decref(filter);
    qd_submit(q, QO_SEARCH, collection, dim, body,
              q->use_query ? "/points/query" : "/points/search", done, arg);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static void qd_free(qd_t *q)
{
    if (q->api_header) {
        OPENSSL_cleanse(q->api_header, strlen(q->api_header));
        free(q->api_header);
    }
    for (size_t i = 0; i < q->ntags; i++)
        free(q->tag_buf[i]);
    while (q->colls) {
        qd_coll_t *c = q->colls;
        q->colls = c->next;
        free(c);
    }
    free(q->base);
    free(q);
}

static int qd_tag_key_ok(const char *k)
{
    if (!*k || strcmp(k, "sentinel_id") == 0)
        return 0;
    for (; *k; k++)
        if (!isalnum((unsigned char)*k) && *k != '_' && *k != '-')
            return 0;
    return 1;
}

static int qd_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    qd_t *q = calloc(1, sizeof(*q));
    if (!q) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    int rc = SN_EINVAL;
    q->host = host;
    const char *url = host->cfg_str(cfg, "url");
    q->key = host->cfg_str(cfg, "api_key");
    q->prefix = host->cfg_str(cfg, "collection_prefix");
    const char *api = host->cfg_str(cfg, "api");
    q->timeout_ms = host->cfg_int(cfg, "timeout");
    q->max_retries = host->cfg_int(cfg, "max_retries");
    q->retry_base_ms = host->cfg_int(cfg, "retry_base");
    q->retry_max_ms = host->cfg_int(cfg, "retry_max");
    q->max_inflight = host->cfg_int(cfg, "max_inflight");
    q->max_queue = host->cfg_int(cfg, "max_queue");
    q->rng = (uint64_t)host->now_ms(host) ^ ((uint64_t)host->mono_ms(host) << 21) ^
             (uint64_t)(uintptr_t)q;
    if (!q->rng)
        q->rng = 0x9e3779b97f4a7c15ULL;
    if (!q->prefix)
        q->prefix = "";
    if (!url || (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)) {
        snprintf(err->msg, sizeof(err->msg), "url must start with http:// or https://");
        goto out;
    }
    if (q->prefix[0] && (strlen(q->prefix) > QD_NAME_MAX || !qd_name_ok(q->prefix))) {
        snprintf(err->msg, sizeof(err->msg),
                 "collection_prefix may hold only letters, digits, '_' and '-'");
        goto out;
    }
    if (api && strcmp(api, "search") == 0) {
        q->use_query = 0;
    } else if (api && strcmp(api, "query") == 0) {
        q->use_query = 1;
    } else {
        snprintf(err->msg, sizeof(err->msg), "api must be search or query");
        goto out;
    }
    if (q->timeout_ms < 1) {
        snprintf(err->msg, sizeof(err->msg), "timeout must be positive");
        goto out;
    }
    if (q->max_retries < 0 || q->max_retries > 100) {
        snprintf(err->msg, sizeof(err->msg), "max_retries must be between 0 and 100");
        goto out;
    }
    if (q->retry_base_ms < 1 || q->retry_max_ms < q->retry_base_ms) {
        snprintf(err->msg, sizeof(err->msg),
                 "retry_base must be at least 1ms and retry_max at least retry_base");
        goto out;
    }
    if (q->max_inflight < 1 || q->max_inflight > 256) {
        snprintf(err->msg, sizeof(err->msg), "max_inflight must be between 1 and 256");
        goto out;
    }
    if (q->max_queue < 1 || q->max_queue > 1000000) {
        snprintf(err->msg, sizeof(err->msg), "max_queue must be between 1 and 1000000");
        goto out;
    }
    if (q->key && strpbrk(q->key, "\r\n")) {
        snprintf(err->msg, sizeof(err->msg), "api_key contains a line break");
        goto out;
    }
    const char *const *tags = host->cfg_list(cfg, "tag");
    for (size_t i = 0; tags && tags[i]; i++) {
        if (q->ntags == QD_MAX_TAGS) {
            snprintf(err->msg, sizeof(err->msg), "at most %d tag lines", QD_MAX_TAGS);
            goto out;
        }
        char *t = strdup(tags[i]);
        if (!t) {
            rc = SN_ENOMEM;
            snprintf(err->msg, sizeof(err->msg), "out of memory");
            goto out;
        }
        q->tag_buf[q->ntags] = t;
        char *eq = strchr(t, '=');
        if (eq)
            *eq = '\0';
        /* Trim blanks around key and value. */
        char *k = t, *v = eq ? eq + 1 : NULL;
        while (*k == ' ')
            k++;
        for (char *e = k + strlen(k); e > k && e[-1] == ' ';)
            *--e = '\0';
        while (v && *v == ' ')
            v++;
        for (char *e = v ? v + strlen(v) : NULL; e && e > v && e[-1] == ' ';)
            *--e = '\0';
        q->ntags++;
        if (!v || !*v || !qd_tag_key_ok(k)) {
            snprintf(err->msg, sizeof(err->msg),
                     "tag %zu must be 'key=value' with a key of letters, digits, '_' or '-' "
                     "(not sentinel_id)",
                     i + 1);
            goto out;
        }
        q->tag_key[q->ntags - 1] = k;
        q->tag_val[q->ntags - 1] = v;
    }
    rc = SN_ENOMEM;
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (asprintf(&q->base, "%.*s", (int)n, url) < 0) {
        q->base = NULL;
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        goto out;
    }
    if (q->key && q->key[0] && asprintf(&q->api_header, "api-key: %s", q->key) < 0) {
        q->api_header = NULL;
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        goto out;
    }
    rc = 0;
    *self = q;
out:
    if (rc != 0)
        qd_free(q);
    return rc;
}

static void qd_maybe_stopped(qd_t *q)
{
    if (!q->stopping || !q->stop_done || q->ops || q->reqs)
        return;
    sn_done_fn done = q->stop_done;
    q->stop_done = NULL;
    done(q->stop_arg, 0, NULL);
}

/** Drain: requests waiting for a retry get one last attempt now, nothing is retried any more,
 * new calls fail with SN_EAGAIN; done runs when nothing is left (possibly before return). */
static void qd_stop(void *self, sn_done_fn done, void *arg)
{
    qd_t *q = self;
    q->stopping = 1;
    q->stop_done = done;
    q->stop_arg = arg;
    for (qd_req_t *r = q->reqs, *next; r; r = next) {
        next = r->next;
        if (r->timer) {
            q->host->timer_del(r->timer);
            r->timer = NULL;
            qd_send(r);
        }
    }
    qd_maybe_stopped(q);
}

/** Every call still pending completes now with SN_EIO; requests in flight are left to finish on
 * their own and only free themselves. */
static void qd_destroy(void *self)
{
    qd_t *q = self;
    /* Collect the calls first: their callbacks must not see half-freed state. */
    qd_op_t *ops = NULL;
    for (qd_coll_t *c = q->colls; c; c = c->next) {
        while (c->waiting) {
            qd_op_t *op = c->waiting;
            c->waiting = op->next;
            op->next = ops;
            ops = op;
        }
        c->wtail = NULL;
    }
    while (q->reqs) {
        qd_req_t *r = q->reqs;
        q->reqs = r->next;
        if (r->timer)
            q->host->timer_del(r->timer);
        if (r->op) {
            r->op->next = ops;
            ops = r->op;
            r->op = NULL;
        }
        if (r->in_flight)
            r->q = NULL;
        else
            qd_req_free(r);
    }
    while (ops) {
        qd_op_t *op = ops;
        ops = op->next;
        sn_done_fn done = op->done;
        void *arg = op->arg;
        qd_op_free(op);
        done(arg, SN_EIO, NULL);
    }
    qd_free(q);
}

static int qd_health(void *self, sn_health_t *out)
{
    qd_t *q = self;
    out->ok = !q->last_error[0] && q->ops < (size_t)q->max_queue;
    snprintf(out->detail, sizeof(out->detail),
             "%llu upserts, %llu searches, %llu failed, %zu pending%s%s", q->upserts, q->searches,
             q->failures, q->ops, q->last_error[0] ? ", last error: " : "", q->last_error);
    return 0;
}

static const sn_store_ops_t qd_ops = {
    .struct_size = sizeof(sn_store_ops_t),
    .caps = SN_STORE_VECTOR,
    .vector_upsert = qd_vector_upsert,
    .vector_search = qd_vector_search,
};

static const sn_plugin_t qd_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_STORE,
    .type = "qdrant",
    .version = "1.0.0",
    .summary = "vectors in Qdrant over REST: collections made on first use, cosine search",
    .params = qd_params,
    .create = qd_create,
    .stop = qd_stop,
    .destroy = qd_destroy,
    .health = qd_health,
    .ops = &qd_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &qd_plugin;
}
