/**
 * @file openai.c
 * Embedder `openai`: text -> vector through an OpenAI-compatible `POST /v1/embeddings`
 * (OpenAI, vLLM, llama.cpp server, Ollama, a local test server), asynchronously on the host's
 * HTTP client.
 *
 * Batching: texts are queued for up to `batch_wait` or until `batch_size` of them are waiting,
 * then sent as one request {"model", "input": [texts]}; answers are matched by `index`. At most
 * `max_inflight` requests are out at once; the rest wait in the queue, which is bounded by
 * `max_pending` embed calls (beyond it embed fails at once with SN_ENOMEM and is counted).
 *
 * Cache: a bounded LRU (`cache_size` vectors) keyed by SHA-256(model NUL text), so a text seen
 * before is answered without a request, before embed() returns. The same text asked for again
 * while it is queued or in flight joins that request instead of sending another. Hits, misses
 * and the hit ratio are exported as metrics.
 *
 * Errors: 408, 409, 429 (unless the quota is exhausted) and 5xx answers and transport errors are
 * retried with full-jitter exponential backoff, honouring Retry-After (seconds) and
 * retry-after-ms; 401/403 fail with SN_EDENIED, other 4xx with SN_EINVAL, exhausted retries with
 * SN_EIO (SN_ETIMEDOUT when the last attempt timed out). Every vector must have `dim` numbers:
 * a model that answers another length fails the call with SN_EINVAL, logs both numbers and turns
 * health red until a good answer arrives.
 *
 * The API key only ever goes into the Authorization header: it is not logged, not put into an
 * error, and an error message of the server is not logged for 401/403 (some servers echo part of
 * the key there) nor when it contains the key.
 */
#include "retry.h"
#include <sentinel/plugin.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OA_DIM_MAX 65536
#define OA_BATCH_MAX 2048 /* the OpenAI limit on inputs per request */
#define OA_ERRMSG_MAX 160
#define OA_RESPONSE_MAX ((size_t)256 << 20)

typedef struct oa oa_t;

/* One embed() call waiting for its vector. */
typedef struct oa_waiter {
    struct oa_waiter *next;
    sn_done_fn done;
    void *arg;
} oa_waiter_t;

/* One distinct text waiting for its vector (queued or in a request). */
typedef struct oa_item {
    struct oa_item *next;
    unsigned char key[32];
    json_t *text; /* the text as a JSON string (validated UTF-8) */
    oa_waiter_t *waiters, *wtail;
} oa_item_t;

/* One request with its texts, through its retries. */
typedef struct oa_batch {
    struct oa_batch *next, *prev;
    oa_t *o; /* NULL once the instance was destroyed while a request was in flight */
    oa_item_t *items;
    size_t n;
    char *body;
    size_t len;
    int attempts;
    int in_flight;
    sn_timer_t *timer;
    long last_status;
    int last_timeout;
    char last_error[OA_ERRMSG_MAX];
} oa_batch_t;

/* One cached vector. */
typedef struct oa_centry {
    struct oa_centry *hnext;       /* bucket chain */
    struct oa_centry *prev, *next; /* LRU list, most recent first */
    unsigned char key[32];
    float v[]; /* dim numbers */
} oa_centry_t;

struct oa {
    const sn_host_t *host;
    char *endpoint;
    const char *model;
    char *auth; /* "Authorization: Bearer ..." or NULL; wiped in destroy */
    const char *key;
    size_t dim;
    int64_t batch_size, batch_wait_ms, cache_size, timeout_ms, max_retries, retry_base_ms,
        retry_max_ms, max_pending, max_inflight, max_text;
    int send_dimensions;
    uint64_t rng;
    /* queue */
    oa_item_t *qhead, *qtail;
    size_t qn;
    sn_timer_t *batch_timer;
    int overdue; /* the queue's batch_wait is over */
    /* requests */
    oa_batch_t *batches;
    size_t inflight;
    size_t waiting; /* embed calls not yet completed */
    /* cache */
    oa_centry_t **buckets;
    size_t nbuckets, ncache;
    oa_centry_t *lru_head, *lru_tail;
    /* counters */
    unsigned long long hits, misses, requests, texts, failures, dropped;
    size_t bad_dim; /* the last wrong dimension the model answered, 0 when fine */
    char last_error[OA_ERRMSG_MAX];
    int stopping;
    sn_done_fn stop_done;
    void *stop_arg;
};

static const sn_param_t oa_params[] = {
    {"url", SN_T_STRING, NULL, SN_PARAM_REQUIRED,
     "server root (http://127.0.0.1:8000) or API base ending in /v1; requests go to "
     ".../v1/embeddings"},
    {"model", SN_T_STRING, "text-embedding-3-small", 0, "model name sent with every request"},
    {"api_key", SN_T_STRING, NULL, SN_PARAM_SECRET,
     "bearer token (use ${env:NAME} or ${file:/path}); none for local servers"},
    {"dim", SN_T_INT, NULL, SN_PARAM_REQUIRED,
     "vector length the model answers (1536 for text-embedding-3-small); a different answer is "
     "an error"},
    {"send_dimensions", SN_T_BOOL, "false", 0,
     "also send \"dimensions\": dim (text-embedding-3-* can shorten their vectors)"},
    {"batch_size", SN_T_INT, "32", 0, "texts per request, 1 to 2048"},
    {"batch_wait", SN_T_DURATION, "20ms", 0,
     "how long a text waits for others to share its request"},
    {"cache_size", SN_T_INT, "4096", 0, "vectors kept in the LRU cache; 0 disables it"},
    {"max_pending", SN_T_INT, "1000", 0, "embed calls waiting at once; more fail at once"},
    {"max_inflight", SN_T_INT, "4", 0, "requests out at once"},
    {"max_text", SN_T_SIZE, "16k", 0, "longer texts are cut to this many bytes (UTF-8 safe)"},
    {"timeout", SN_T_DURATION, "15s", 0, "deadline of one request"},
    {"max_retries", SN_T_INT, "3", 0, "retries after the first attempt"},
    {"retry_base", SN_T_DURATION, "500ms", 0, "first backoff ceiling; doubles on every retry"},
    {"retry_max", SN_T_DURATION, "30s", 0,
     "longest wait between attempts, also the cap on a Retry-After"},
    {NULL, 0, NULL, 0, NULL},
};

static void oa_count(oa_t *o, const char *name, const char *help, double v)
{
    o->host->metric(o->host, SN_METRIC_COUNTER, name, help, v);
}

static void oa_gauge(oa_t *o, const char *name, const char *help, double v)
{
    o->host->metric(o->host, SN_METRIC_GAUGE, name, help, v);
}

static void oa_gauges(oa_t *o)
{
    oa_gauge(o, "embedder_pending", "Embed calls waiting for a vector", (double)o->waiting);
    oa_gauge(o, "embedder_requests_inflight", "Embedding requests out (with their retries)",
             (double)o->inflight);
}

static void oa_ratio(oa_t *o)
{
    unsigned long long all = o->hits + o->misses;
    oa_gauge(o, "embedder_cache_hit_ratio", "Share of embed calls answered from the cache",
             all ? (double)o->hits / (double)all : 0.0);
}

static void oa_key(const oa_t *o, const char *text, size_t len, unsigned char out[32])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int n = 0;
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(c, o->model, strlen(o->model) + 1) != 1 ||
        EVP_DigestUpdate(c, text, len) != 1 || EVP_DigestFinal_ex(c, out, &n) != 1) {
        /* Cannot happen with the default provider; a zero key only costs cache precision. */
        memset(out, 0, 32);
    }
    EVP_MD_CTX_free(c);
}

/* {"vector": [dim numbers]}, or NULL. */
static json_t *oa_result(const float *v, size_t dim)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < dim; i++) {
        if (json_array_append_new(arr, json_real(v[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (!arr)
        return NULL;
    json_t *res = json_object();
    if (res && json_object_set_new(res, "vector", arr) == 0)
        return res;
    json_decref(res);
    return NULL;
}

/* ---- cache -------------------------------------------------------------------------------- */

static size_t oa_bucket(const oa_t *o, const unsigned char key[32])
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return (size_t)(h & (o->nbuckets - 1));
}

static void oa_lru_unlink(oa_t *o, oa_centry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        o->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        o->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void oa_lru_front(oa_t *o, oa_centry_t *e)
{
    e->next = o->lru_head;
    e->prev = NULL;
    if (o->lru_head)
        o->lru_head->prev = e;
    o->lru_head = e;
    if (!o->lru_tail)
        o->lru_tail = e;
}

static oa_centry_t *oa_cache_get(oa_t *o, const unsigned char key[32])
{
    if (!o->nbuckets)
        return NULL;
    for (oa_centry_t *e = o->buckets[oa_bucket(o, key)]; e; e = e->hnext) {
        if (memcmp(e->key, key, 32) == 0) {
            oa_lru_unlink(o, e);
            oa_lru_front(o, e);
            return e;
        }
    }
    return NULL;
}

static void oa_cache_drop(oa_t *o, oa_centry_t *e)
{
    oa_centry_t **pp = &o->buckets[oa_bucket(o, e->key)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    oa_lru_unlink(o, e);
    free(e);
    o->ncache--;
}

static void oa_cache_put(oa_t *o, const unsigned char key[32], const float *v)
{
    if (!o->nbuckets || oa_cache_get(o, key))
        return;
    while (o->ncache >= (size_t)o->cache_size && o->lru_tail)
        oa_cache_drop(o, o->lru_tail);
    oa_centry_t *e = malloc(sizeof(*e) + o->dim * sizeof(float));
    if (!e)
        return; /* only a later miss */
    memcpy(e->key, key, 32);
    memcpy(e->v, v, o->dim * sizeof(float));
    size_t b = oa_bucket(o, key);
    e->hnext = o->buckets[b];
    o->buckets[b] = e;
    oa_lru_front(o, e);
    o->ncache++;
    oa_gauge(o, "embedder_cache_entries", "Vectors in the cache", (double)o->ncache);
}

/* ---- items -------------------------------------------------------------------------------- */

static void oa_item_free(oa_item_t *it)
{
    while (it->waiters) {
        oa_waiter_t *w = it->waiters;
        it->waiters = w->next;
        free(w);
    }
    json_decref(it->text);
    free(it);
}

/* Complete every waiter of @p it (detached from queue and batch) and free it. The waiters'
 * callbacks may call embed() again: nothing of @p it is reachable from the instance any more. */
static void oa_item_finish(oa_t *o, oa_item_t *it, int status, json_t *result)
{
    while (it->waiters) {
        oa_waiter_t *w = it->waiters;
        it->waiters = w->next;
        if (o) {
            o->waiting--;
            if (status != 0)
                o->failures++;
        }
        w->done(w->arg, status, status == 0 ? result : NULL);
        free(w);
    }
    oa_item_free(it);
}

static int oa_add_waiter(oa_item_t *it, sn_done_fn done, void *arg)
{
    oa_waiter_t *w = calloc(1, sizeof(*w));
    if (!w)
        return SN_ENOMEM;
    w->done = done;
    w->arg = arg;
    if (it->wtail)
        it->wtail->next = w;
    else
        it->waiters = w;
    it->wtail = w;
    return 0;
}

/* The queued or in-flight item for @p key, if any. */
static oa_item_t *oa_find(oa_t *o, const unsigned char key[32])
{
    for (oa_item_t *it = o->qhead; it; it = it->next)
        if (memcmp(it->key, key, 32) == 0)
            return it;
    for (oa_batch_t *b = o->batches; b; b = b->next)
        for (oa_item_t *it = b->items; it; it = it->next)
            if (memcmp(it->key, key, 32) == 0)
                return it;
    return NULL;
}

/* ---- requests ----------------------------------------------------------------------------- */

static void oa_send(oa_batch_t *b);
static void oa_kick(oa_t *o, int force);
static void oa_maybe_stopped(oa_t *o);

static void oa_batch_unlink(oa_t *o, oa_batch_t *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        o->batches = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->next = b->prev = NULL;
    o->inflight--;
}

static void oa_batch_free(oa_batch_t *b)
{
    while (b->items) {
        oa_item_t *it = b->items;
        b->items = it->next;
        oa_item_free(it);
    }
    free(b->body);
    free(b);
}

/* Retry-After (delay-seconds) or retry-after-ms; the HTTP-date form falls back to backoff. */
static int oa_retry_after(const sn_http_response_t *resp, int64_t *ms)
{
    const char *v;
    int64_t n;
    if (!resp || !resp->header)
        return 0;
    if ((v = resp->header(resp, "retry-after-ms")) && snr_digits(v, 86400000, &n)) {
        *ms = n;
        return 1;
    }
    if ((v = resp->header(resp, "Retry-After")) && snr_digits(v, 86400000, &n)) {
        *ms = n * 1000;
        return 1;
    }
    return 0;
}

/* The server's error message and code from {"error": {"message", "code"}}, if any. */
static void oa_server_error(const char *body, size_t len, char *msg, size_t cap, char *code,
                            size_t ccap)
{
    msg[0] = code[0] = '\0';
    json_t *doc = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *err = json_object_get(doc, "error");
    const char *m = json_string_value(json_object_get(err, "message"));
    if (!m)
        m = json_string_value(err); /* some servers answer {"error": "text"} */
    const char *c = json_string_value(json_object_get(err, "code"));
    if (!c)
        c = json_string_value(json_object_get(err, "type"));
    if (m)
        snprintf(msg, cap, "%s", m);
    if (c)
        snprintf(code, ccap, "%s", c);
    json_decref(doc);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
}

/* Complete every item of @p b with @p status and free the batch (already unlinked). */
static void oa_batch_fail(oa_t *o, oa_batch_t *b, int status)
{
    oa_item_t *items = b->items;
    b->items = NULL;
    size_t n = b->n;
    oa_count(o, "embedder_failures_total", "Texts that could not be embedded", (double)n);
    snprintf(o->last_error, sizeof(o->last_error), "%s", b->last_error);
    o->host->log(o->host, SN_LOG_WARN, "%zu text%s not embedded after %d attempt%s: %s", n,
                 n == 1 ? "" : "s", b->attempts, b->attempts == 1 ? "" : "s", b->last_error);
    oa_batch_free(b);
    while (items) {
        oa_item_t *it = items;
        items = it->next;
        oa_item_finish(o, it, status, NULL);
    }
    oa_gauges(o);
}

/* A 2xx answer: match vectors to items by index, cache them, complete the waiters. Returns 0,
 * or an SN_E* code with b->last_error filled (nothing completed). */
static int oa_batch_answer(oa_t *o, oa_batch_t *b, const char *body, size_t len)
{
    json_error_t je;
    json_t *doc = json_loadb(body, len, 0, &je);
    json_t *data = json_object_get(doc, "data");
    int rc = SN_EIO;
    float *vecs = NULL;
    unsigned char *seen = NULL;
    if (!json_is_array(data)) {
        snprintf(b->last_error, sizeof(b->last_error), "answer without a \"data\" array");
        goto out;
    }
    if (json_array_size(data) != b->n) {
        snprintf(b->last_error, sizeof(b->last_error), "answer has %zu vectors for %zu texts",
                 json_array_size(data), b->n);
        goto out;
    }
    vecs = malloc(b->n * o->dim * sizeof(float));
    seen = calloc(b->n, 1);
    if (!vecs || !seen) {
        rc = SN_ENOMEM;
        snprintf(b->last_error, sizeof(b->last_error), "out of memory");
        goto out;
    }
    size_t i;
    json_t *d;
    json_array_foreach(data, i, d)
    {
        json_t *jx = json_object_get(d, "index"), *emb = json_object_get(d, "embedding");
        size_t idx = jx ? (size_t)json_integer_value(jx) : i;
        if ((jx && (!json_is_integer(jx) || json_integer_value(jx) < 0)) || idx >= b->n ||
            seen[idx]) {
            snprintf(b->last_error, sizeof(b->last_error), "answer has a bad or repeated index");
            goto out;
        }
        if (!json_is_array(emb)) {
            snprintf(b->last_error, sizeof(b->last_error),
                     "answer has no \"embedding\" array (base64 encoding is not supported)");
            goto out;
        }
        size_t got = json_array_size(emb);
        if (got != o->dim) {
            rc = SN_EINVAL;
            if (o->bad_dim != got)
                o->host->log(o->host, SN_LOG_ERROR,
                             "model %s answers vectors of %zu numbers but dim = %zu: set dim = "
                             "%zu (vector collections made with the old size must be recreated)",
                             o->model, got, o->dim, got);
            o->bad_dim = got;
            snprintf(b->last_error, sizeof(b->last_error),
                     "model answered %zu dimensions, dim = %zu", got, o->dim);
            goto out;
        }
        float *v = vecs + idx * o->dim;
        for (size_t k = 0; k < got; k++) {
            json_t *x = json_array_get(emb, k);
            if (!json_is_number(x)) {
                snprintf(b->last_error, sizeof(b->last_error), "answer has a non-number");
                goto out;
            }
            v[k] = (float)json_number_value(x);
        }
        seen[idx] = 1;
    }
    o->bad_dim = 0;
    /* Detach everything before the first callback: a waiter may call embed() again. */
    oa_item_t *items = b->items;
    b->items = NULL;
    oa_batch_free(b);
    size_t k = 0;
    for (oa_item_t *it = items; it; it = it->next, k++)
        oa_cache_put(o, it->key, vecs + k * o->dim);
    k = 0;
    while (items) {
        oa_item_t *it = items;
        items = it->next;
        json_t *res = oa_result(vecs + k * o->dim, o->dim);
        oa_item_finish(o, it, res ? 0 : SN_ENOMEM, res);
        json_decref(res);
        k++;
    }
    rc = 0;
out:
    free(vecs);
    free(seen);
    json_decref(doc);
    return rc;
}

static void oa_retry(void *arg)
{
    oa_batch_t *b = arg;
    b->timer = NULL;
    oa_send(b);
}

/* Thread: loop. */
static void oa_http_done(void *arg, const sn_http_response_t *resp)
{
    oa_batch_t *b = arg;
    b->in_flight = 0;
    oa_t *o = b->o;
    if (!o) {
        oa_batch_free(b);
        return;
    }
    long st = resp ? resp->status : 0;
    b->last_status = st;
    b->last_timeout = 0;
    if (st >= 200 && st < 300) {
        oa_batch_unlink(o, b);
        int rc = oa_batch_answer(o, b, resp->body, resp->body_len);
        if (rc != 0) {
            oa_batch_fail(o, b, rc);
        } else {
            o->last_error[0] = '\0';
            oa_gauges(o);
        }
        oa_kick(o, 0);
        oa_maybe_stopped(o);
        return;
    }
    char smsg[OA_ERRMSG_MAX] = "", code[64] = "";
    if (st == 0) {
        const char *e = resp && resp->error ? resp->error : "no response";
        b->last_timeout = strstr(e, "timed out") != NULL;
        snprintf(b->last_error, sizeof(b->last_error), "%.120s", e);
    } else {
        oa_server_error(resp->body, resp->body_len, smsg, sizeof(smsg), code, sizeof(code));
        int quiet = st == 401 || st == 403 || (o->key && o->key[0] && strstr(smsg, o->key));
        if (quiet || !smsg[0])
            snprintf(b->last_error, sizeof(b->last_error), "HTTP %ld%s", st,
                     st == 401 || st == 403 ? " (check api_key)" : "");
        else
            snprintf(b->last_error, sizeof(b->last_error), "HTTP %ld: %.120s", st, smsg);
    }
    int quota = st == 429 && strcmp(code, "insufficient_quota") == 0;
    int retryable = st == 0 || st == 408 || st == 409 || (st == 429 && !quota) || st >= 500;
    if (!retryable || b->attempts > o->max_retries || o->stopping) {
        int rc = st == 401 || st == 403 ? SN_EDENIED
                 : retryable || quota   ? (b->last_timeout ? SN_ETIMEDOUT : SN_EIO)
                                        : SN_EINVAL;
        oa_batch_unlink(o, b);
        oa_batch_fail(o, b, rc);
        oa_kick(o, 0);
        oa_maybe_stopped(o);
        return;
    }
    int64_t delay = 0;
    if (!oa_retry_after(resp, &delay))
        delay = snr_backoff(&o->rng, o->retry_base_ms, o->retry_max_ms, b->attempts);
    if (delay > o->retry_max_ms)
        delay = o->retry_max_ms;
    oa_count(o, "embedder_retries_total", "Embedding requests retried", 1);
    o->host->log(o->host, SN_LOG_DEBUG, "embedding request of %zu texts: %s, retry %d in %lld ms",
                 b->n, b->last_error, b->attempts, (long long)delay);
    b->timer = o->host->timer_add(o->host, delay, 0, oa_retry, b);
    if (!b->timer) {
        snprintf(b->last_error, sizeof(b->last_error), "cannot schedule a retry");
        oa_batch_unlink(o, b);
        oa_batch_fail(o, b, SN_EIO);
        oa_kick(o, 0);
        oa_maybe_stopped(o);
    }
}

static void oa_send(oa_batch_t *b)
{
    oa_t *o = b->o;
    const char *headers[4];
    size_t nh = 0;
    headers[nh++] = "Content-Type: application/json";
    if (o->auth)
        headers[nh++] = o->auth;
    headers[nh] = NULL;
    /* Vectors come back as JSON text: about 24 bytes a number, plus room for the envelope. */
    size_t max = b->n * o->dim * 24 + 65536;
    if (max > OA_RESPONSE_MAX)
        max = OA_RESPONSE_MAX;
    sn_http_request_t req = {
        .struct_size = sizeof(req),
        .method = "POST",
        .url = o->endpoint,
        .headers = headers,
        .body = b->body,
        .body_len = b->len,
        .timeout_ms = (long)o->timeout_ms,
        .max_response = max,
    };
    b->attempts++;
    b->in_flight = 1;
    o->requests++;
    oa_count(o, "embedder_requests_total", "Embedding requests sent (attempts)", 1);
    if (o->host->http(o->host, &req, oa_http_done, b) != 0) {
        sn_http_response_t none = {.status = 0, .error = "request refused by the HTTP client"};
        oa_http_done(b, &none);
    }
}

/* Take up to batch_size queued items into one request and send it. */
static void oa_send_batch(oa_t *o)
{
    oa_batch_t *b = calloc(1, sizeof(*b));
    json_t *input = json_array();
    oa_item_t *tail = NULL;
    if (!b || !input) {
        free(b);
        json_decref(input);
        return; /* retried by the next kick; the items stay queued */
    }
    while (o->qhead && b->n < (size_t)o->batch_size) {
        oa_item_t *it = o->qhead;
        o->qhead = it->next;
        if (!o->qhead)
            o->qtail = NULL;
        o->qn--;
        it->next = NULL;
        if (tail)
            tail->next = it;
        else
            b->items = it;
        tail = it;
        b->n++;
        json_array_append(input, it->text);
    }
    json_t *doc = json_pack("{s:s,s:o}", "model", o->model, "input", input);
    if (doc && o->send_dimensions)
        json_object_set_new(doc, "dimensions", json_integer((json_int_t)o->dim));
    b->body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    b->o = o;
    b->next = o->batches;
    if (o->batches)
        o->batches->prev = b;
    o->batches = b;
    o->inflight++;
    o->texts += b->n;
    oa_count(o, "embedder_texts_total", "Texts sent to the model", (double)b->n);
    if (!b->body) {
        snprintf(b->last_error, sizeof(b->last_error), "out of memory");
        oa_batch_unlink(o, b);
        oa_batch_fail(o, b, SN_ENOMEM);
        return;
    }
    b->len = strlen(b->body);
    oa_gauges(o);
    oa_send(b);
}

static void oa_batch_timer(void *arg)
{
    oa_t *o = arg;
    o->batch_timer = NULL;
    oa_kick(o, 1);
}

/* Send what may go: full batches, and everything queued once its wait is over (@p force, from
 * the batch timer; it stays over until the queue is empty, also while every request slot is
 * taken and a completion has to make room). */
static void oa_kick(oa_t *o, int force)
{
    if (force)
        o->overdue = 1;
    while (o->qn > 0 && o->inflight < (size_t)o->max_inflight &&
           (o->overdue || o->stopping || o->qn >= (size_t)o->batch_size)) {
        size_t before = o->qn;
        oa_send_batch(o);
        if (o->qn == before)
            break; /* out of memory: leave them for the next kick */
    }
    if (o->qn == 0) {
        o->overdue = 0;
        if (o->batch_timer) {
            o->host->timer_del(o->batch_timer);
            o->batch_timer = NULL;
        }
    } else if (!o->batch_timer && !o->overdue) {
        o->batch_timer = o->host->timer_add(o->host, o->batch_wait_ms, 0, oa_batch_timer, o);
    }
}

/* ---- embed -------------------------------------------------------------------------------- */

/* The longest prefix of at most @p max bytes that does not split a UTF-8 sequence. */
static size_t oa_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static int oa_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return 0;
    return 1;
}

/**
 * Embed @p text. done runs exactly once: before this returns for a cache hit ({"vector"}) and
 * for a refusal (SN_EINVAL: no text, blank or not UTF-8; SN_ENOMEM: max_pending reached;
 * SN_EAGAIN: stopping), otherwise later on the loop with the vector or the request's error.
 * Ownership: @p text is borrowed for the call; the result is borrowed by done for its call.
 * Thread: loop.
 */
static void oa_embed(void *self, const char *text, sn_done_fn done, void *arg)
{
    oa_t *o = self;
    int rc = 0;
    json_t *jt = NULL, *res = NULL;
    oa_item_t *it = NULL;
    if (!text) {
        rc = SN_EINVAL;
        goto out;
    }
    if (o->stopping) {
        rc = SN_EAGAIN;
        goto out;
    }
    size_t len = strlen(text), n = oa_cut(text, len, (size_t)o->max_text);
    if (n < len)
        oa_count(o, "embedder_truncated_total", "Texts cut to max_text before embedding", 1);
    if (n == 0 || oa_blank(text, n) || !(jt = json_stringn(text, n))) {
        rc = SN_EINVAL; /* an empty input is refused by the API; not UTF-8 cannot be sent */
        goto out;
    }
    unsigned char key[32];
    oa_key(o, text, n, key);
    oa_centry_t *e = oa_cache_get(o, key);
    if (e) {
        o->hits++;
        oa_count(o, "embedder_cache_hits_total", "Embed calls answered from the cache", 1);
        oa_ratio(o);
        res = oa_result(e->v, o->dim);
        rc = res ? 0 : SN_ENOMEM;
        goto out;
    }
    o->misses++;
    oa_count(o, "embedder_cache_misses_total", "Embed calls the cache could not answer", 1);
    oa_ratio(o);
    if (o->waiting >= (size_t)o->max_pending) {
        o->dropped++;
        oa_count(o, "embedder_dropped_total", "Embed calls refused because max_pending was reached",
                 1);
        o->host->log(o->host, SN_LOG_WARN, "%zu embed calls pending (max_pending): one refused",
                     o->waiting);
        rc = SN_ENOMEM;
        goto out;
    }
    it = oa_find(o, key);
    if (it) {
        /* The same text is already on its way: share its answer. */
        if ((rc = oa_add_waiter(it, done, arg)) != 0)
            goto out;
        o->waiting++;
        oa_count(o, "embedder_coalesced_total",
                 "Embed calls that joined a request for the same text", 1);
        oa_gauges(o);
        json_decref(jt);
        return;
    }
    it = calloc(1, sizeof(*it));
    if (!it || oa_add_waiter(it, done, arg) != 0) {
        free(it);
        rc = SN_ENOMEM;
        goto out;
    }
    memcpy(it->key, key, 32);
    it->text = jt;
    jt = NULL;
    if (o->qtail)
        o->qtail->next = it;
    else
        o->qhead = it;
    o->qtail = it;
    o->qn++;
    o->waiting++;
    oa_gauges(o);
    oa_kick(o, o->batch_wait_ms == 0);
    return;
out:
    json_decref(jt);
    done(arg, rc, rc == 0 ? res : NULL);
    json_decref(res);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static char *oa_endpoint(const char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    const char *suffix = "/v1/embeddings";
    if (n >= 11 && strncmp(url + n - 11, "/embeddings", 11) == 0)
        suffix = "";
    else if (n >= 3 && strncmp(url + n - 3, "/v1", 3) == 0)
        suffix = "/embeddings";
    char *out = NULL;
    if (asprintf(&out, "%.*s%s", (int)n, url, suffix) < 0)
        return NULL;
    return out;
}

static void oa_free(oa_t *o)
{
    if (o->auth) {
        OPENSSL_cleanse(o->auth, strlen(o->auth));
        free(o->auth);
    }
    while (o->lru_head)
        oa_cache_drop(o, o->lru_head);
    free(o->buckets);
    free(o->endpoint);
    free(o);
}

static int oa_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    oa_t *o = calloc(1, sizeof(*o));
    if (!o) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    int rc = SN_EINVAL;
    o->host = host;
    const char *url = host->cfg_str(cfg, "url");
    o->model = host->cfg_str(cfg, "model");
    o->key = host->cfg_str(cfg, "api_key");
    int64_t dim = host->cfg_int(cfg, "dim");
    o->send_dimensions = host->cfg_bool(cfg, "send_dimensions");
    o->batch_size = host->cfg_int(cfg, "batch_size");
    o->batch_wait_ms = host->cfg_int(cfg, "batch_wait");
    o->cache_size = host->cfg_int(cfg, "cache_size");
    o->max_pending = host->cfg_int(cfg, "max_pending");
    o->max_inflight = host->cfg_int(cfg, "max_inflight");
    o->max_text = host->cfg_int(cfg, "max_text");
    o->timeout_ms = host->cfg_int(cfg, "timeout");
    o->max_retries = host->cfg_int(cfg, "max_retries");
    o->retry_base_ms = host->cfg_int(cfg, "retry_base");
    o->retry_max_ms = host->cfg_int(cfg, "retry_max");
    o->rng = (uint64_t)host->now_ms(host) ^ ((uint64_t)host->mono_ms(host) << 21) ^
             (uint64_t)(uintptr_t)o;
    if (!o->rng)
        o->rng = 0x9e3779b97f4a7c15ULL;
    if (!url || (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)) {
        snprintf(err->msg, sizeof(err->msg), "url must start with http:// or https://");
        goto out;
    }
    if (!o->model || !o->model[0]) {
        snprintf(err->msg, sizeof(err->msg), "model must not be empty");
        goto out;
    }
    if (dim < 1 || dim > OA_DIM_MAX) {
        snprintf(err->msg, sizeof(err->msg), "dim must be between 1 and %d (got %lld)", OA_DIM_MAX,
                 (long long)dim);
        goto out;
    }
    o->dim = (size_t)dim;
    if (o->batch_size < 1 || o->batch_size > OA_BATCH_MAX) {
        snprintf(err->msg, sizeof(err->msg), "batch_size must be between 1 and %d", OA_BATCH_MAX);
        goto out;
    }
    if (o->batch_wait_ms < 0 || o->batch_wait_ms > 60000) {
        snprintf(err->msg, sizeof(err->msg), "batch_wait must be between 0 and 60s");
        goto out;
    }
    if (o->cache_size < 0 || o->cache_size > 10000000) {
        snprintf(err->msg, sizeof(err->msg), "cache_size must be between 0 and 10000000");
        goto out;
    }
    if (o->max_pending < 1 || o->max_pending > 1000000) {
        snprintf(err->msg, sizeof(err->msg), "max_pending must be between 1 and 1000000");
        goto out;
    }
    if (o->max_inflight < 1 || o->max_inflight > 256) {
        snprintf(err->msg, sizeof(err->msg), "max_inflight must be between 1 and 256");
        goto out;
    }
    if (o->max_text < 16) {
        snprintf(err->msg, sizeof(err->msg), "max_text must be at least 16 bytes");
        goto out;
    }
    if (o->timeout_ms < 1) {
        snprintf(err->msg, sizeof(err->msg), "timeout must be positive");
        goto out;
    }
    if (o->max_retries < 0 || o->max_retries > 100) {
        snprintf(err->msg, sizeof(err->msg), "max_retries must be between 0 and 100");
        goto out;
    }
    if (o->retry_base_ms < 1 || o->retry_max_ms < o->retry_base_ms) {
        snprintf(err->msg, sizeof(err->msg),
                 "retry_base must be at least 1ms and retry_max at least retry_base");
        goto out;
    }
    if (o->key && strpbrk(o->key, "\r\n")) {
        snprintf(err->msg, sizeof(err->msg), "api_key contains a line break");
        goto out;
    }
    rc = SN_ENOMEM;
    if (!(o->endpoint = oa_endpoint(url))) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        goto out;
    }
    if (o->key && o->key[0] && asprintf(&o->auth, "Authorization: Bearer %s", o->key) < 0) {
        o->auth = NULL;
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        goto out;
    }
    if (o->cache_size > 0) {
        size_t nb = 16;
        while (nb < (size_t)o->cache_size * 2)
            nb *= 2;
        if (!(o->buckets = calloc(nb, sizeof(*o->buckets)))) {
            snprintf(err->msg, sizeof(err->msg), "out of memory");
            goto out;
        }
        o->nbuckets = nb;
    }
    rc = 0;
    *self = o;
out:
    if (rc != 0)
        oa_free(o);
    return rc;
}

static void oa_maybe_stopped(oa_t *o)
{
    if (!o->stopping || !o->stop_done || o->qn || o->inflight)
        return;
    sn_done_fn done = o->stop_done;
    o->stop_done = NULL;
    done(o->stop_arg, 0, NULL);
}

/**
 * Drain: queued texts are sent now, requests waiting for a retry get one last attempt, nothing
 * is retried any more; done runs when nothing is left (possibly before this returns).
 */
static void oa_stop(void *self, sn_done_fn done, void *arg)
{
    oa_t *o = self;
    o->stopping = 1;
    o->stop_done = done;
    o->stop_arg = arg;
    for (oa_batch_t *b = o->batches, *next; b; b = next) {
        next = b->next;
        if (b->timer) {
            o->host->timer_del(b->timer);
            b->timer = NULL;
            oa_send(b);
        }
    }
    oa_kick(o, 0);
    oa_maybe_stopped(o);
}

/** Every call still waiting completes now with SN_EIO; requests in flight are left to finish on
 * their own and only free their batch. */
static void oa_destroy(void *self)
{
    oa_t *o = self;
    if (o->batch_timer)
        o->host->timer_del(o->batch_timer);
    while (o->qhead) {
        oa_item_t *it = o->qhead;
        o->qhead = it->next;
        oa_item_finish(NULL, it, SN_EIO, NULL);
    }
    while (o->batches) {
        oa_batch_t *b = o->batches;
        o->batches = b->next;
        if (b->timer)
            o->host->timer_del(b->timer);
        oa_item_t *items = b->items;
        b->items = NULL;
        if (b->in_flight)
            b->o = NULL;
        else
            oa_batch_free(b);
        while (items) {
            oa_item_t *it = items;
            items = it->next;
            oa_item_finish(NULL, it, SN_EIO, NULL);
        }
    }
    oa_free(o);
}

static int oa_health(void *self, sn_health_t *out)
{
    oa_t *o = self;
    out->ok = !o->bad_dim && o->waiting < (size_t)o->max_pending;
    if (o->bad_dim)
        snprintf(out->detail, sizeof(out->detail), "model answers %zu dimensions, dim = %zu",
                 o->bad_dim, o->dim);
    else
        snprintf(out->detail, sizeof(out->detail),
                 "dim %zu, %llu requests, cache %zu/%lld (hits %llu, misses %llu), %zu pending%s%s",
                 o->dim, o->requests, o->ncache, (long long)o->cache_size, o->hits, o->misses,
                 o->waiting, o->last_error[0] ? ", last error: " : "", o->last_error);
    return 0;
}

/* dim here is only a placeholder: every instance answers vectors of its configured `dim`. */
static const sn_embedder_ops_t oa_ops = {
    .struct_size = sizeof(sn_embedder_ops_t),
    .dim = 1536,
    .embed = oa_embed,
};

static const sn_plugin_t oa_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_EMBEDDER,
    .type = "openai",
    .version = "1.0.0",
    .summary = "OpenAI-compatible /v1/embeddings: batched, cached (LRU), retried",
    .params = oa_params,
    .create = oa_create,
    .stop = oa_stop,
    .destroy = oa_destroy,
    .health = oa_health,
    .ops = &oa_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &oa_plugin;
}
