/**
 * @file clickhouse.c
 * Store `clickhouse`: the TELEMETRY capability on a ClickHouse server (18.16 or newer) through
 * its HTTP interface, using the host's asynchronous HTTP client only (nothing blocks the loop).
 *
 * Writes. telemetry_write() encodes the points as RowBinary (exact Float64, no text parsing)
 * into the current batch; a batch is sealed at batch_points or batch_interval and inserted with
 * one `INSERT ... FORMAT RowBinary`. A write's done() runs when its points are durable: inserted,
 * or appended and fsync'ed to the spool. One write-path operation (schema, insert, spool append,
 * spool replay) is in flight at a time, so batches reach ClickHouse in the order they were
 * sealed, spooled ones first.
 *
 * Failures. Transport errors, 5xx answers and refused credentials mark ClickHouse down: sealed
 * batches then go to the spool (spool_dir) or wait in memory (no spool_dir), and /ping is probed
 * with full-jitter exponential backoff (retry_base .. retry_max). When it answers, the spool is
 * replayed oldest segment first, then direct inserts resume. An answer that says the data or the
 * schema is wrong (a 4xx, or a 5xx whose `Code:` is a parse/type/column error: 18.16 answers 500
 * for those) is final: the batch's writers get SN_EINVAL with the server's exception text. Past
 * spool_max bytes buffered (spool + memory) writes fail with SN_EAGAIN, logged; nothing is
 * dropped silently. Delivery is at least once: an insert that timed out after the server stored
 * it is sent again.
 *
 * Reads. telemetry_window() and the stats route (POST /hooks/<instance>/stats) query ClickHouse
 * directly; points still in the current batch or in the spool are not visible to them.
 *
 * Threads: everything runs on the loop except the spool file I/O (ch_spool.c), which runs on the
 * offload pool.
 */
#include "ch_spool.h"

#include <sentinel/plugin.h>

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CH_MAX_BATCH_BYTES ((size_t)16 << 20) /**< a batch is sealed at this size too */
#define CH_MEM_MAX ((int64_t)64 << 20)        /**< memory bound with a spool_dir */
#define CH_SEG_MAX ((uint64_t)8 << 20)        /**< spool segment size bound */
#define CH_SEG_MIN ((uint64_t)4 << 10)
#define CH_MAX_READS 64       /**< window/stats queries in flight */
#define CH_MAX_WINDOW 100000  /**< points in one telemetry_window answer */
#define CH_MAX_POINTS 1000000 /**< points in one telemetry_write */
#define CH_LOG_EVERY_MS 10000 /**< repeated warnings at most this often */
#define CH_PING_TIMEOUT_MS 2000
#define CH_TAIL_SLOTS 4096 /**< series whose encoded metric and labels are kept (power of 2) */
#define CH_TAIL_MAX 1024   /**< longest such encoding kept */

static const sn_param_t ch_params[] = {
    {"url", SN_T_STRING, "http://127.0.0.1:8123", 0,
     "ClickHouse HTTP interface (http:// or https://, no credentials in it)"},
    {"database", SN_T_STRING, "sentinel", 0,
     "database holding the points table (created if missing); letters, digits, _"},
    {"user", SN_T_STRING, "", 0,
     "ClickHouse user (X-ClickHouse-User); empty: the server's default"},
    {"password", SN_T_STRING, "", SN_PARAM_SECRET,
     "password (X-ClickHouse-Key), e.g. ${env:CLICKHOUSE_PASSWORD}; never sent in the URL"},
    {"batch_points", SN_T_INT, "10000", 0, "a batch is inserted when it holds this many points"},
    {"batch_interval", SN_T_DURATION, "1s", 0, "... or when its first point is this old"},
    {"spool_dir", SN_T_STRING, "", 0,
     "directory for the on-disk spool used while ClickHouse is unavailable; empty: batches "
     "wait in memory (and their writers are not acknowledged) instead"},
    {"spool_max", SN_T_SIZE, "256m", 0,
     "bytes buffered while ClickHouse is unavailable (spool plus memory); writes beyond fail "
     "with SN_EAGAIN"},
    {"retry_base", SN_T_DURATION, "200ms", 0, "first backoff step after a failure"},
    {"retry_max", SN_T_DURATION, "30s", 0, "backoff cap"},
    {"timeout", SN_T_DURATION, "10s", 0, "deadline of one HTTP request to ClickHouse"},
    {"stats_token", SN_T_STRING, "", SN_PARAM_SECRET,
     "when set, the stats route requires `Authorization: Bearer <token>`"},
    {NULL, 0, NULL, 0, NULL},
};

/* ---- types ---------------------------------------------------------------------------------- */

typedef struct ch_waiter {
    sn_done_fn done;
    void *arg;
} ch_waiter_t;

/** A batch of encoded points and the writes waiting for it. */
typedef struct ch_batch {
    struct ch_batch *next;
    char *buf; /* RowBinary rows */
    size_t len, cap;
    size_t npoints;
    ch_waiter_t *w;
    size_t nw, wcap;
} ch_batch_t;

/* The end of a series' rows (metric, labels as JSON), as last encoded: the series id is the
 * hash of exactly those, so a row of a series seen before copies it instead of escaping the
 * labels again (about a third of the encoding's cost). */
typedef struct ch_tail {
    uint64_t series;
    size_t len;
    char *bytes; /* NULL: empty slot */
} ch_tail_t;

typedef struct ch {
    const sn_host_t *host;
    /* settings */
    char *base; /* url without a trailing slash */
    char db[64];
    char *insert_url, *query_url, *ping_url;
    char *hdr_user, *hdr_key; /* "X-ClickHouse-...: v" or NULL */
    const char *headers[3];
    char *spool_dir; /* NULL: memory only */
    char *token;     /* stats_token or NULL */
    int64_t batch_points, batch_ms, spool_max, mem_max, retry_base, retry_max, timeout_ms;
    uint64_t seg_max;
    /* batching */
    ch_batch_t *cur;
    sn_timer_t *flush_timer;
    ch_batch_t *qhead, *qtail;
    size_t qbytes, qpoints;
    ch_tail_t *tails; /* CH_TAIL_SLOTS, direct-mapped by series; NULL when memory was short */
    /* ClickHouse state */
    int up, schema_ok, attempt;
    uint64_t rng; /* xorshift state for the backoff jitter */
    sn_timer_t *probe_timer, *kick_timer;
    int probing;
    char last_error[300];
    int busy; /* a write-path operation is in flight */
    /* spool */
    int lock_fd;
    int spool_ready;
    chs_seg_t *segs;
    size_t nsegs, segcap;
    uint64_t spool_bytes, spool_points, next_seq;
    int tail_open; /* the last segment still takes appends */
    /* logging throttle */
    int64_t refused_log_ms, down_log_ms;
    int down_logged;
    uint64_t refused_since_log;
    /* lifecycle */
    size_t inflight, reads;
    int started, stopping, destroyed;
    sn_done_fn stop_done;
    void *stop_arg;
} ch_t;

static void ch_pump(ch_t *c);
static void ch_check_stopped(ch_t *c);

/* ---- small helpers -------------------------------------------------------------------------- */

static void ch_free(ch_t *c)
{
    for (ch_batch_t *b = c->qhead, *n; b; b = n) {
        n = b->next;
        free(b->buf);
        free(b->w);
        free(b);
    }
    if (c->cur) {
        free(c->cur->buf);
        free(c->cur->w);
        free(c->cur);
    }
    if (c->lock_fd >= 0)
        close(c->lock_fd);
    for (size_t i = 0; c->tails && i < CH_TAIL_SLOTS; i++)
        free(c->tails[i].bytes);
    free(c->tails);
    free(c->segs);
    free(c->base);
    free(c->insert_url);
    free(c->query_url);
    free(c->ping_url);
    free(c->hdr_user);
    if (c->hdr_key) {
        memset(c->hdr_key, 0, strlen(c->hdr_key));
        free(c->hdr_key);
    }
    free(c->spool_dir);
    if (c->token) {
        memset(c->token, 0, strlen(c->token));
        free(c->token);
    }
    free(c);
}

/* Account for one completion; returns 1 when the instance was destroyed (and maybe freed):
 * the caller must not touch it any more. */
static int ch_release(ch_t *c)
{
    c->inflight--;
    if (!c->destroyed)
        return 0;
    if (c->inflight == 0)
        ch_free(c);
    return 1;
}

static void ch_gauges(ch_t *c)
{
    const sn_host_t *h = c->host;
    size_t mem = c->qpoints + (c->cur ? c->cur->npoints : 0);
    h->metric(h, SN_METRIC_GAUGE, "clickhouse_spool_bytes",
              "Bytes in the on-disk spool waiting for ClickHouse", (double)c->spool_bytes);
    h->metric(h, SN_METRIC_GAUGE, "clickhouse_spool_points",
              "Points in the on-disk spool waiting for ClickHouse", (double)c->spool_points);
    h->metric(h, SN_METRIC_GAUGE, "clickhouse_buffered_points",
              "Points held in memory for the next inserts", (double)mem);
    h->metric(h, SN_METRIC_GAUGE, "clickhouse_up",
              "1 while ClickHouse answers, 0 while it is treated as unavailable", c->up ? 1 : 0);
}

static void ch_count(ch_t *c, const char *name, const char *help, double v)
{
    c->host->metric(c->host, SN_METRIC_COUNTER, name, help, v);
}

/* Full jitter: uniform in [0, min(retry_max, retry_base * 2^attempt)]. */
static int64_t ch_backoff(ch_t *c)
{
    int64_t cap = c->retry_base;
    for (int i = 0; i < c->attempt && cap < c->retry_max; i++)
        cap *= 2;
    if (cap > c->retry_max)
        cap = c->retry_max;
    if (cap < 1)
        cap = 1;
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return (int64_t)(c->rng % (uint64_t)cap) + 1;
}

static char *ch_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static char *ch_printf(const char *fmt, ...) SN_PRINTF(1, 2);
static char *ch_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Percent-encode @p s for a URL query value. Ownership: caller frees. */
static char *ch_urlenc(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *o = malloc(n * 3 + 1), *p = o;
    if (!o)
        return NULL;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || strchr("-_.~", ch)) {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p = '\0';
    return o;
}

/* ---- completions soon, never inside the call that started them ----------------------------- */

typedef struct ch_soon {
    ch_t *c;
    sn_done_fn done;
    void *arg;
    int status;
    json_t *result;
} ch_soon_t;

static void ch_soon_run(void *arg)
{
    ch_soon_t *s = arg;
    ch_t *c = s->c;
    if (!c->destroyed && s->done)
        s->done(s->arg, s->status, s->result);
    json_decref(s->result);
    free(s);
    if (!ch_release(c))
        ch_check_stopped(c);
}

/* Ownership: @p result (may be NULL) is taken. */
static void ch_soon(ch_t *c, sn_done_fn done, void *arg, int status, json_t *result)
{
    ch_soon_t *s = calloc(1, sizeof(*s));
    if (s) {
        s->c = c;
        s->done = done;
        s->arg = arg;
        s->status = status;
        s->result = result;
        c->inflight++;
        if (c->host->post(c->host, ch_soon_run, s) == 0)
            return;
        c->inflight--;
        free(s);
    }
    /* Even the post queue refuses: answer now rather than never. */
    if (done)
        done(arg, status, result);
    json_decref(result);
}

/* ---- ClickHouse answers --------------------------------------------------------------------- */

enum { CH_OK, CH_RETRY, CH_AUTH, CH_SCHEMA, CH_BAD };

/* Exception codes that mean the request itself is wrong (data, types, columns, syntax): sending
 * it again cannot help. 18.16 answers most of them with HTTP 500. */
static int ch_code_bad(long code)
{
    static const long bad[] = {6,  16, 26, 27, 32, 33, 36, 38,  41,  43,  44,
                               47, 53, 62, 69, 70, 72, 73, 115, 117, 131, 0};
    for (size_t i = 0; bad[i]; i++)
        if (bad[i] == code)
            return 1;
    return 0;
}

static int ch_code_auth(long code)
{
    return code == 164 || code == 192 || code == 193 || code == 194 || code == 195 || code == 497 ||
           code == 516;
}

/* Classify an answer; @p text gets a one-line phrase (the exception text, or the transport
 * error), *code the exception code or 0. */
static int ch_classify(const sn_http_response_t *r, long *code, char *text, size_t cap)
{
    *code = 0;
    text[0] = '\0';
    if (r->status == 0) {
        snprintf(text, cap, "%s", r->error ? r->error : "no response");
        return CH_RETRY;
    }
    if (r->status >= 200 && r->status < 300)
        return CH_OK;
    const char *hc = r->header ? r->header(r, "X-ClickHouse-Exception-Code") : NULL;
    const char *body = r->body ? r->body : "";
    const char *cp = strstr(body, "Code: ");
    if (hc)
        *code = strtol(hc, NULL, 10);
    else if (cp)
        *code = strtol(cp + 6, NULL, 10);
    size_t n = strcspn(body, "\n");
    while (n > 0 && isspace((unsigned char)body[n - 1]))
        n--;
    if (n == 0)
        snprintf(text, cap, "HTTP %ld", r->status);
    else
        snprintf(text, cap, "HTTP %ld: %.*s", r->status, (int)(n > 240 ? 240 : n), body);
    if (r->status == 401 || r->status == 403 || ch_code_auth(*code))
        return CH_AUTH;
    if (*code == 60 || *code == 81)
        return CH_SCHEMA;
    if (ch_code_bad(*code))
        return CH_BAD;
    if (r->status >= 400 && r->status < 500 && r->status != 408 && r->status != 429)
        return CH_BAD;
    return CH_RETRY;
}

static void ch_http(ch_t *c, const char *method, const char *url, const char *body, size_t len,
                    long timeout_ms, size_t max_response, sn_http_done_fn done, void *arg)
{
    sn_http_request_t rq = {
        .struct_size = sizeof(rq),
        .method = method,
        .url = url,
        .headers = c->headers,
        .body = body,
        .body_len = len,
        .timeout_ms = timeout_ms,
        .max_response = max_response,
    };
    c->inflight++;
    c->host->http(c->host, &rq, done, arg); /* done always runs, later, on the loop */
}

/* ---- up / down ------------------------------------------------------------------------------ */

static void ch_probe_done(void *arg, const sn_http_response_t *r)
{
    ch_t *c = arg;
    c->probing = 0;
    if (ch_release(c))
        return;
    if (r->status == 200 && r->body && strncmp(r->body, "Ok.", 3) == 0) {
        c->up = 1;
        if (c->down_logged)
            c->host->log(c->host, SN_LOG_INFO,
                         "ClickHouse answers again; %" PRIu64
                         " spooled bytes and %zu buffered points to send",
                         c->spool_bytes, c->qpoints + (c->cur ? c->cur->npoints : 0));
        c->down_logged = 0;
        ch_gauges(c);
    } else {
        if (c->attempt < 30)
            c->attempt++;
    }
    ch_pump(c);
}

static void ch_probe_fire(void *arg)
{
    ch_t *c = arg;
    c->probe_timer = NULL;
    if (c->up || c->stopping || c->destroyed)
        return;
    c->probing = 1;
    ch_http(c, "GET", c->ping_url, NULL, 0, CH_PING_TIMEOUT_MS, 4096, ch_probe_done, c);
}

static void ch_probe_arm(ch_t *c)
{
    if (c->up || c->probe_timer || c->probing || c->stopping || c->destroyed)
        return;
    c->probe_timer = c->host->timer_add(c->host, ch_backoff(c), 0, ch_probe_fire, c);
}

/* ClickHouse failed us: later batches go to the spool (or wait) until /ping answers. */
static void ch_set_down(ch_t *c, const char *why, int auth)
{
    /* The same failure again (a refused password behind a /ping that answers, say) is logged
     * once a minute, not at every probe. */
    int64_t now = c->host->mono_ms(c->host);
    int fresh = strcmp(why, c->last_error) != 0 || now - c->down_log_ms >= 6 * CH_LOG_EVERY_MS;
    snprintf(c->last_error, sizeof(c->last_error), "%s", why);
    ch_count(c, "clickhouse_failures_total",
             "Requests to ClickHouse that failed and will be retried", 1);
    if (c->attempt < 30)
        c->attempt++;
    if (c->up) {
        c->up = 0;
        if (fresh) {
            c->host->log(c->host, auth ? SN_LOG_ERROR : SN_LOG_WARN,
                         "ClickHouse unavailable (%s%s); batches %s until it answers again", why,
                         auth ? "; check user and password" : "",
                         c->spool_dir ? "go to the spool" : "wait in memory");
            c->down_log_ms = now;
            c->down_logged = 1;
        }
        ch_gauges(c);
    }
    ch_probe_arm(c); /* also when only a read noticed: windows fail fast until it answers */
}

/* ---- batches -------------------------------------------------------------------------------- */

static void ch_batch_free(ch_batch_t *b)
{
    free(b->buf);
    free(b->w);
    free(b);
}

/* Complete every writer of @p b. Ownership: @p result is borrowed. */
static void ch_batch_finish(ch_t *c, ch_batch_t *b, int status, json_t *result)
{
    for (size_t i = 0; i < b->nw && !c->destroyed; i++)
        if (b->w[i].done)
            b->w[i].done(b->w[i].arg, status, result);
}

static ch_batch_t *ch_qpop(ch_t *c)
{
    ch_batch_t *b = c->qhead;
    if (!b)
        return NULL;
    c->qhead = b->next;
    if (!c->qhead)
        c->qtail = NULL;
    c->qbytes -= b->len;
    c->qpoints -= b->npoints;
    b->next = NULL;
    return b;
}

static int ch_reserve(ch_batch_t *b, size_t more)
{
    if (b->cap - b->len >= more)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more)
        cap *= 2;
    char *n = realloc(b->buf, cap);
    if (!n)
        return -1;
    b->buf = n;
    b->cap = cap;
    return 0;
}

static char *put_le(char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        *p++ = (char)(unsigned char)(v >> (8 * i));
    return p;
}

static char *put_varint(char *p, uint64_t v)
{
    do {
        unsigned char b = v & 0x7f;
        v >>= 7;
        *p++ = (char)(b | (v ? 0x80 : 0));
    } while (v);
    return p;
}

/* The fixed head of a row: date, series, ts, value (26 bytes). */
static char *put_head(char *p, const sn_point_t *pt)
{
    int64_t days = pt->ts_ms >= 0 ? pt->ts_ms / 86400000 : 0;
    if (days > 65535)
        days = 65535;
    uint64_t vbits;
    memcpy(&vbits, &pt->value, sizeof(vbits));
    p = put_le(p, (uint64_t)days, 2);
    p = put_le(p, pt->series, 8);
    p = put_le(p, (uint64_t)pt->ts_ms, 8);
    return put_le(p, vbits, 8);
}

static int ch_encode_known(ch_batch_t *b, const sn_point_t *pt, const ch_tail_t *tail)
{
    if (ch_reserve(b, 26 + tail->len) != 0)
        return -1;
    char *p = put_head(b->buf + b->len, pt);
    memcpy(p, tail->bytes, tail->len);
    b->len = (size_t)(p + tail->len - b->buf);
    return 0;
}

/* JSON string escaping: the bytes needed for @p s between its quotes, and the writer. */
static size_t json_esc_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        n += ch == '"' || ch == '\\' ? 2 : ch < 0x20 ? 6 : 1;
    }
    return n;
}

static char *json_esc_put(char *p, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            *p++ = '\\';
            *p++ = (char)ch;
        } else if (ch < 0x20) {
            memcpy(p, "\\u00", 4);
            p[4] = hex[ch >> 4];
            p[5] = hex[ch & 15];
            p += 6;
        } else {
            *p++ = (char)ch;
        }
    }
    return p;
}

/* Append one point as a RowBinary row (date, series, ts, value, metric, labels). */
static int ch_encode(ch_t *c, ch_batch_t *b, const sn_point_t *pt)
{
    ch_tail_t *tail = c->tails ? &c->tails[pt->series & (CH_TAIL_SLOTS - 1)] : NULL;
    if (tail && tail->bytes && tail->series == pt->series)
        return ch_encode_known(b, pt, tail);
    const char *metric = pt->metric ? pt->metric : "";
    size_t mlen = strlen(metric);
    size_t llen = 2; /* {} */
    for (size_t i = 0; i < pt->nlabels; i++) {
        const sn_label_t *l = &pt->labels[i];
        llen += json_esc_len(l->name ? l->name : "") + json_esc_len(l->value ? l->value : "") + 5 +
                (i ? 1 : 0); /* "n":"v" and a comma */
    }
    if (ch_reserve(b, 2 + 8 + 8 + 8 + 10 + mlen + 10 + llen) != 0)
        return -1;
    char *p = put_head(b->buf + b->len, pt);
    char *from = p;
    p = put_varint(p, mlen);
    memcpy(p, metric, mlen);
    p += mlen;
    p = put_varint(p, llen);
    *p++ = '{';
    for (size_t i = 0; i < pt->nlabels; i++) {
        const sn_label_t *l = &pt->labels[i];
        if (i)
            *p++ = ',';
        *p++ = '"';
        p = json_esc_put(p, l->name ? l->name : "");
        *p++ = '"';
        *p++ = ':';
        *p++ = '"';
        p = json_esc_put(p, l->value ? l->value : "");
        *p++ = '"';
    }
    *p++ = '}';
    b->len = (size_t)(p - b->buf);
    size_t n = (size_t)(p - from);
    if (tail && n <= CH_TAIL_MAX) {
        char *keep = realloc(tail->bytes, n);
        if (keep) { /* else the slot stays as it was: still right for its series */
            memcpy(keep, from, n);
            tail->bytes = keep;
            tail->len = n;
            tail->series = pt->series;
        }
    }
    return 0;
}

/* Move the current batch to the queue. */
static void ch_seal(ch_t *c)
{
    if (c->flush_timer) {
        c->host->timer_del(c->flush_timer);
        c->flush_timer = NULL;
    }
    ch_batch_t *b = c->cur;
    if (!b)
        return;
    c->cur = NULL;
    if (b->npoints == 0 && b->nw == 0) {
        ch_batch_free(b);
        return;
    }
    if (c->qtail)
        c->qtail->next = b;
    else
        c->qhead = b;
    c->qtail = b;
    c->qbytes += b->len;
    c->qpoints += b->npoints;
}

static void ch_flush_fire(void *arg)
{
    ch_t *c = arg;
    c->flush_timer = NULL;
    ch_seal(c);
    ch_pump(c);
}

/* Writes are refused (SN_EAGAIN) past the buffer bounds: say so, at most every 10 s. */
static void ch_refuse_log(ch_t *c, size_t n, const char *what)
{
    int64_t now = c->host->mono_ms(c->host);
    ch_count(c, "clickhouse_points_refused_total",
             "Points refused with SN_EAGAIN because the spool or buffer was full", (double)n);
    c->refused_since_log += n;
    if (c->refused_log_ms && now - c->refused_log_ms < CH_LOG_EVERY_MS)
        return;
    c->refused_log_ms = now;
    c->host->log(c->host, SN_LOG_ERROR,
                 "%s (%" PRIu64 " spooled + %zu buffered bytes, spool_max %" PRId64
                 "); ClickHouse %s: refusing writes with SN_EAGAIN (%" PRIu64
                 " points so far), their inputs must deliver them again",
                 what, c->spool_bytes, c->qbytes + (c->cur ? c->cur->len : 0), c->spool_max,
                 c->up ? "is slow" : "is unavailable", c->refused_since_log);
    c->refused_since_log = 0;
}

/**
 * Append @p n points to the current batch; done() runs once they are inserted or spooled.
 * Non-finite values are refused (SN_EINVAL, nothing written); past spool_max the write fails
 * with SN_EAGAIN. Ownership: @p pts is borrowed for the call (encoded before it returns).
 * Thread: loop.
 */
static void ch_tel_write(void *self, const sn_point_t *pts, size_t n, sn_done_fn done, void *arg)
{
    ch_t *c = self;
    if (n == 0) {
        ch_soon(c, done, arg, 0, NULL);
        return;
    }
    if (!pts || n > CH_MAX_POINTS) {
        ch_soon(c, done, arg, SN_EINVAL, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(pts[i].value)) {
            ch_soon(c, done, arg, SN_EINVAL, NULL);
            return;
        }
    if (!c->cur) {
        if (!(c->cur = calloc(1, sizeof(*c->cur)))) {
            ch_soon(c, done, arg, SN_ENOMEM, NULL);
            return;
        }
        /* Room for a full batch of typical rows up front (growing by doubling copied each
         * batch about once over); untouched pages cost nothing. A failure here is not one. */
        size_t want = (size_t)c->batch_points * 64;
        (void)ch_reserve(c->cur, want < ((size_t)4 << 20) ? want : ((size_t)4 << 20));
    }
    ch_batch_t *b = c->cur;
    size_t before = b->len;
    for (size_t i = 0; i < n; i++)
        if (ch_encode(c, b, &pts[i]) != 0) {
            b->len = before;
            ch_soon(c, done, arg, SN_ENOMEM, NULL);
            return;
        }
    /* Bounds: memory always; the spool's whenever batches are headed there. */
    uint64_t mem = c->qbytes + b->len;
    int to_spool = c->spool_dir && (!c->up || c->nsegs > 0 || !c->spool_ready);
    const char *full = NULL;
    if ((int64_t)mem > c->mem_max)
        full = c->spool_dir ? "memory buffer full" : "buffer full";
    else if (to_spool && (int64_t)(c->spool_bytes + mem + CHS_HEADER * 2) > c->spool_max)
        full = "spool full";
    if (full) {
        b->len = before;
        ch_refuse_log(c, n, full);
        ch_soon(c, done, arg, SN_EAGAIN, NULL);
        return;
    }
    if (b->nw == b->wcap) {
        size_t cap = b->wcap ? b->wcap * 2 : 8;
        ch_waiter_t *w = realloc(b->w, cap * sizeof(*w));
        if (!w) {
            b->len = before;
            ch_soon(c, done, arg, SN_ENOMEM, NULL);
            return;
        }
        b->w = w;
        b->wcap = cap;
    }
    b->w[b->nw].done = done;
    b->w[b->nw].arg = arg;
    b->nw++;
    b->npoints += n;
    if ((int64_t)b->npoints >= c->batch_points || b->len >= CH_MAX_BATCH_BYTES) {
        ch_seal(c);
        ch_pump(c);
    } else if (!c->flush_timer) {
        c->flush_timer = c->host->timer_add(c->host, c->batch_ms, 0, ch_flush_fire, c);
        if (!c->flush_timer) {
            ch_seal(c);
            ch_pump(c);
        }
    }
    ch_gauges(c);
}

/* ---- write path: one operation at a time ---------------------------------------------------- */

typedef struct ch_op {
    ch_t *c;
    ch_batch_t *batch; /* insert / append */
    int step;          /* schema: 0 exists, 1 database, 2 table */
    /* spool jobs (offload) */
    uint64_t seq, size, points;
    char *buf;
    size_t len;
    int rc, reject;
    int kick; /* end: retry the pump later instead of at once (the pool refused a job) */
    char why[300];
    chs_seg_t *segs;
    size_t nsegs, rejected;
    uint64_t cut;
} ch_op_t;

static void ch_kick_fire(void *arg)
{
    ch_t *c = arg;
    c->kick_timer = NULL;
    ch_pump(c);
}

/* Pump again a little later: something (memory, the offload pool) refused just now. */
static void ch_kick(ch_t *c)
{
    if (!c->kick_timer && !c->destroyed)
        c->kick_timer = c->host->timer_add(c->host, 100, 0, ch_kick_fire, c);
}

static ch_op_t *ch_op_new(ch_t *c)
{
    ch_op_t *op = calloc(1, sizeof(*op));
    if (op) {
        op->c = c;
        c->busy = 1;
    } else {
        ch_kick(c);
    }
    return op;
}

/* The operation is over: free it and let the next one start. Returns 1 when the instance is
 * gone. */
static int ch_op_end(ch_op_t *op)
{
    ch_t *c = op->c;
    int kick = op->kick;
    free(op->buf);
    free(op->segs);
    if (op->batch)
        ch_batch_free(op->batch);
    free(op);
    c->busy = 0;
    if (ch_release(c))
        return 1;
    if (kick)
        ch_kick(c);
    else
        ch_pump(c);
    return 0;
}

static int ch_offload(ch_t *c, ch_op_t *op, void (*work)(void *), void (*done)(void *))
{
    c->inflight++;
    if (c->host->offload(c->host, work, done, op) == 0)
        return 0;
    c->inflight--;
    op->kick = 1;
    return -1;
}

/* -- schema -- */

static void ch_schema_step(ch_op_t *op);

static void ch_schema_done(void *arg, const sn_http_response_t *r)
{
    ch_op_t *op = arg;
    ch_t *c = op->c;
    long code;
    char text[300];
    int k = ch_classify(r, &code, text, sizeof(text));
    c->inflight--; /* the request's; ch_op_end releases the operation's */
    if (c->destroyed) {
        ch_op_end(op);
        return;
    }
    if (k != CH_OK) {
        if (k == CH_BAD)
            c->host->log(c->host, SN_LOG_ERROR, "cannot create the schema in %s: %s", c->db, text);
        ch_set_down(c, text, k == CH_AUTH);
        ch_op_end(op);
        return;
    }
    if (op->step == 0 && r->body && r->body[0] == '1') {
        op->step = 3; /* the table exists */
    } else {
        op->step++;
    }
    if (op->step >= 3) {
        c->schema_ok = 1;
        ch_op_end(op);
        return;
    }
    ch_schema_step(op);
}

static void ch_schema_step(ch_op_t *op)
{
    ch_t *c = op->c;
    char sql[512];
    if (op->step == 0)
        snprintf(sql, sizeof(sql), "EXISTS TABLE %s.points", c->db);
    else if (op->step == 1)
        snprintf(sql, sizeof(sql), "CREATE DATABASE IF NOT EXISTS %s", c->db);
    else
        snprintf(sql, sizeof(sql),
                 "CREATE TABLE IF NOT EXISTS %s.points (date Date, series UInt64, ts Int64, "
                 "value Float64, metric String, labels String) ENGINE = MergeTree "
                 "PARTITION BY date ORDER BY (series, ts) SETTINGS index_granularity = 8192",
                 c->db);
    if (op->step == 2)
        c->host->log(c->host, SN_LOG_INFO, "creating table %s.points", c->db);
    ch_http(c, "POST", c->base, sql, strlen(sql), c->timeout_ms, 65536, ch_schema_done, op);
}

/* -- direct insert of the queue head -- */

static void ch_insert_done(void *arg, const sn_http_response_t *r)
{
    ch_op_t *op = arg;
    ch_t *c = op->c;
    long code;
    char text[300];
    int k = ch_classify(r, &code, text, sizeof(text));
    c->inflight--; /* the request's */
    if (c->destroyed) {
        ch_op_end(op);
        return;
    }
    if (k == CH_OK || k == CH_BAD) {
        ch_batch_t *b = ch_qpop(c);
        op->batch = b;
        if (k == CH_OK) {
            c->attempt = 0;
            ch_count(c, "clickhouse_points_written_total", "Points inserted into ClickHouse",
                     (double)b->npoints);
            ch_gauges(c);
            ch_batch_finish(c, b, 0, NULL);
        } else {
            c->host->log(c->host, SN_LOG_ERROR, "ClickHouse refused a batch of %zu points: %s",
                         b->npoints, text);
            ch_count(c, "clickhouse_points_rejected_total",
                     "Points ClickHouse refused as invalid (reported to the writers)",
                     (double)b->npoints);
            ch_gauges(c);
            json_t *res = json_pack("{s:s,s:I}", "error", text, "code", (json_int_t)code);
            ch_batch_finish(c, b, SN_EINVAL, res);
            json_decref(res);
        }
    } else {
        if (k == CH_SCHEMA)
            c->schema_ok = 0;
        ch_set_down(c, text, k == CH_AUTH);
    }
    ch_op_end(op);
}

static void ch_insert(ch_t *c)
{
    ch_op_t *op = ch_op_new(c);
    if (!op)
        return;
    c->inflight++; /* the operation's */
    ch_batch_t *b = c->qhead;
    ch_http(c, "POST", c->insert_url, b->buf, b->len, c->timeout_ms, 65536, ch_insert_done, op);
}

/* -- spool: scan at start -- */

static void ch_scan_work(void *arg)
{
    ch_op_t *op = arg;
    ch_t *c = op->c;
    op->rc = chs_scan(c->spool_dir, &op->segs, &op->nsegs, &op->cut, &op->rejected, op->why,
                      sizeof(op->why));
}

static void ch_scan_done(void *arg)
{
    ch_op_t *op = arg;
    ch_t *c = op->c;
    c->inflight--;
    if (c->destroyed) {
        ch_op_end(op);
        return;
    }
    if (op->rc != 0) {
        c->host->log(c->host, SN_LOG_ERROR, "spool %s cannot be read (%s); retrying", c->spool_dir,
                     op->why);
        ch_op_end(op);
        return;
    }
    free(c->segs);
    c->segs = op->segs;
    c->nsegs = c->segcap = op->nsegs;
    op->segs = NULL;
    c->spool_bytes = c->spool_points = 0;
    uint64_t maxseq = 0;
    for (size_t i = 0; i < c->nsegs; i++) {
        c->spool_bytes += c->segs[i].bytes;
        c->spool_points += c->segs[i].points;
        if (c->segs[i].seq > maxseq)
            maxseq = c->segs[i].seq;
    }
    /* Never reuse a number, not even one of a .rejected file: start past the clock. */
    uint64_t clock = (uint64_t)c->host->now_ms(c->host) * 1000u;
    c->next_seq = maxseq + 1 > clock ? maxseq + 1 : clock;
    c->tail_open = 0;
    c->spool_ready = 1;
    if (op->cut)
        c->host->log(c->host, SN_LOG_WARN,
                     "spool: cut %" PRIu64 " bytes of torn or damaged frames (an append that "
                     "never completed: its writers were not acknowledged)",
                     op->cut);
    if (c->nsegs)
        c->host->log(c->host, SN_LOG_INFO,
                     "spool: %zu segments, %" PRIu64 " bytes, %" PRIu64 " points to replay",
                     c->nsegs, c->spool_bytes, c->spool_points);
    if (op->rejected)
        c->host->log(c->host, SN_LOG_WARN,
                     "spool: %zu segments ClickHouse refused are kept aside as *.rejected in %s",
                     op->rejected, c->spool_dir);
    ch_gauges(c);
    ch_op_end(op);
}

/* -- spool: append the queue head -- */

static void ch_append_work(void *arg)
{
    ch_op_t *op = arg;
    ch_t *c = op->c;
    op->rc = chs_append(c->spool_dir, op->seq, op->batch->buf, op->batch->len,
                        (uint32_t)op->batch->npoints, &op->size, op->why, sizeof(op->why));
}

static void ch_append_done(void *arg)
{
    ch_op_t *op = arg;
    ch_t *c = op->c;
    ch_batch_t *b = op->batch;
    c->inflight--;
    if (c->destroyed) {
        ch_op_end(op);
        return;
    }
    if (op->rc == 0) {
        chs_seg_t *tail = c->nsegs ? &c->segs[c->nsegs - 1] : NULL;
        if (!tail || tail->seq != op->seq) {
            /* room was made before the job started */
            tail = &c->segs[c->nsegs++];
            tail->seq = op->seq;
            tail->bytes = tail->points = 0;
            c->tail_open = 1;
        }
        c->spool_bytes += op->size - tail->bytes;
        c->spool_points += b->npoints;
        tail->bytes = op->size;
        tail->points += b->npoints;
        ch_count(c, "clickhouse_points_spooled_total", "Points written to the on-disk spool",
                 (double)b->npoints);
        ch_gauges(c);
        ch_batch_finish(c, b, 0, NULL);
    } else {
        c->host->log(c->host, SN_LOG_ERROR,
                     "spool append failed (%s): %zu points not acknowledged, their inputs "
                     "must deliver them again",
                     op->why, b->npoints);
        ch_gauges(c);
        ch_batch_finish(c, b, SN_EIO, NULL);
    }
    ch_op_end(op);
}

/* Returns 0 when the head was handled or a job started, -1 when nothing could be done now. */
static int ch_append(ch_t *c)
{
    ch_batch_t *b = c->qhead;
    if ((int64_t)(c->spool_bytes + b->len + CHS_HEADER) > c->spool_max) {
        /* Accepted while ClickHouse was up; it went down since and the spool has no room. */
        b = ch_qpop(c);
        ch_refuse_log(c, b->npoints, "spool full");
        ch_gauges(c);
        ch_batch_finish(c, b, SN_EAGAIN, NULL);
        ch_batch_free(b);
        return 0; /* the caller pumps again */
    }
    if (c->nsegs == c->segcap) {
        size_t cap = c->segcap ? c->segcap * 2 : 16;
        chs_seg_t *n = realloc(c->segs, cap * sizeof(*n));
        if (!n)
            return -1;
        c->segs = n;
        c->segcap = cap;
    }
    ch_op_t *op = ch_op_new(c);
    if (!op)
        return -1;
    chs_seg_t *tail = c->nsegs ? &c->segs[c->nsegs - 1] : NULL;
    if (tail && c->tail_open && tail->bytes + b->len + CHS_HEADER <= c->seg_max)
        op->seq = tail->seq;
    else
        op->seq = c->next_seq++;
    op->batch = ch_qpop(c);
    c->inflight++; /* the operation's */
    if (ch_offload(c, op, ch_append_work, ch_append_done) != 0) {
        /* the pool refuses: put the batch back and try again on the next event */
        ch_batch_t *back = op->batch;
        op->batch = NULL;
        back->next = c->qhead;
        c->qhead = back;
        if (!c->qtail)
            c->qtail = back;
        c->qbytes += back->len;
        c->qpoints += back->npoints;
        ch_op_end(op); /* kicks the pump later */
    }
    return 0;
}

/* -- spool: replay the oldest segment -- */

static void ch_replay_drop_work(void *arg)
{
    ch_op_t *op = arg;
    op->rc = chs_drop(op->c->spool_dir, op->seq, op->reject, op->why, sizeof(op->why));
}

static void ch_replay_dropped(void *arg)
{
    ch_op_t *op = arg;
    ch_t *c = op->c;
    c->inflight--;
    if (c->destroyed) {
        ch_op_end(op);
        return;
    }
    if (op->rc != 0)
        c->host->log(c->host, SN_LOG_ERROR,
                     "spool: %s; the segment stays and its points may be inserted twice", op->why);
    if (c->nsegs && c->segs[0].seq == op->seq) {
        c->spool_bytes -= c->segs[0].bytes;
        c->spool_points -= c->segs[0].points;
        memmove(c->segs, c->segs + 1, (c->nsegs - 1) * sizeof(*c->segs));
        c->nsegs--;
        if (c->nsegs == 0)
            c->tail_open = 0;
    }
    ch_gauges(c);
    ch_op_end(op);
}

static void ch_replay_sent(void *arg, const sn_http_response_t *r)
{
    ch_op_t *op = arg;
    ch_t *c = op->c;
    long code;
    char text[300];
    int k = ch_classify(r, &code, text, sizeof(text));
    c->inflight--;
    free(op->buf);
    op->buf = NULL;
    if (c->destroyed) {
        ch_op_end(op);
        return;
    }
    if (k == CH_OK) {
        c->attempt = 0;
        ch_count(c, "clickhouse_points_written_total", "Points inserted into ClickHouse",
                 (double)op->points);
        ch_count(c, "clickhouse_spool_points_replayed_total",
                 "Spooled points inserted into ClickHouse", (double)op->points);
    } else if (k == CH_BAD) {
        op->reject = 1;
        c->host->log(c->host, SN_LOG_ERROR,
                     "ClickHouse refused spool segment %" PRIu64 " (%" PRIu64
                     " points): %s; kept as %s/%020" PRIu64 ".chspool.rejected",
                     op->seq, op->points, text, c->spool_dir, op->seq);
        ch_count(c, "clickhouse_points_rejected_total",
                 "Points ClickHouse refused as invalid (reported to the writers)",
                 (double)op->points);
    } else {
        if (k == CH_SCHEMA)
            c->schema_ok = 0;
        ch_set_down(c, text, k == CH_AUTH);
        ch_op_end(op);
        return;
    }
    if (ch_offload(c, op, ch_replay_drop_work, ch_replay_dropped) != 0)
        ch_op_end(op);
}

static void ch_replay_read_work(void *arg)
{
    ch_op_t *op = arg;
    op->rc = chs_read(op->c->spool_dir, op->seq, &op->buf, &op->len, &op->points, op->why,
                      sizeof(op->why));
}

static void ch_replay_read(void *arg)
{
    ch_op_t *op = arg;
    ch_t *c = op->c;
    c->inflight--;
    if (c->destroyed) {
        ch_op_end(op);
        return;
    }
    if (op->rc != 0) {
        c->host->log(c->host, SN_LOG_ERROR, "spool: %s; moving the segment aside", op->why);
        op->reject = 1;
        if (ch_offload(c, op, ch_replay_drop_work, ch_replay_dropped) != 0)
            ch_op_end(op);
        return;
    }
    if (op->len == 0) {
        if (ch_offload(c, op, ch_replay_drop_work, ch_replay_dropped) != 0)
            ch_op_end(op);
        return;
    }
    /* The client copies the body; ours goes as soon as the answer is in. */
    ch_http(c, "POST", c->insert_url, op->buf, op->len, c->timeout_ms * 3, 65536, ch_replay_sent,
            op);
}

static void ch_replay(ch_t *c)
{
    ch_op_t *op = ch_op_new(c);
    if (!op)
        return;
    op->seq = c->segs[0].seq;
    if (c->nsegs == 1)
        c->tail_open = 0; /* appends go to a new segment from now on */
    c->inflight++;        /* the operation's */
    if (ch_offload(c, op, ch_replay_read_work, ch_replay_read) != 0)
        ch_op_end(op);
}

/* -- the pump -- */

static void ch_check_stopped(ch_t *c)
{
    if (!c->stopping || c->busy || c->qhead || c->cur || c->inflight > 0)
        return;
    sn_done_fn d = c->stop_done;
    void *arg = c->stop_arg;
    c->stop_done = NULL;
    c->stopping = 2; /* stopped */
    if (d)
        d(arg, 0, NULL);
}

/* Start the next write-path operation, if any and none is in flight. */
static void ch_pump(ch_t *c)
{
    if (c->busy || c->destroyed || !c->started)
        return;
    if (c->spool_dir && !c->spool_ready) {
        ch_op_t *op = ch_op_new(c);
        if (!op)
            return;
        c->inflight++;
        if (ch_offload(c, op, ch_scan_work, ch_scan_done) != 0)
            ch_op_end(op);
        return;
    }
    if (c->up && !c->schema_ok && (c->qhead || c->nsegs || !c->stopping)) {
        ch_op_t *op = ch_op_new(c);
        if (!op)
            return;
        c->inflight++;
        ch_schema_step(op);
        return;
    }
    while (c->qhead && !c->busy) {
        if (c->spool_dir && (!c->up || c->nsegs > 0)) {
            if (ch_append(c) != 0) { /* pops the head itself when the spool has no room */
                ch_kick(c);
                break;
            }
            continue;
        }
        if (c->up) {
            ch_insert(c);
            break;
        }
        if (!c->stopping)
            break;
        /* Stopping, ClickHouse down and no spool: the writers must deliver these again. */
        ch_batch_t *b = ch_qpop(c);
        c->host->log(c->host, SN_LOG_WARN,
                     "stopping while ClickHouse is unavailable: %zu points not written, their "
                     "inputs must deliver them again",
                     b->npoints);
        ch_batch_finish(c, b, SN_EAGAIN, NULL);
        ch_batch_free(b);
        ch_gauges(c);
    }
    if (!c->busy && !c->qhead && c->up && c->nsegs > 0 && !c->stopping)
        ch_replay(c);
    if (!c->up)
        ch_probe_arm(c);
    ch_check_stopped(c);
}

/* ---- reads: telemetry_window and the stats route -------------------------------------------- */

typedef struct ch_read {
    ch_t *c;
    sn_done_fn done;
    void *arg;
    size_t limit;
    sn_route_req_t *req; /* stats */
    void (*reply)(sn_route_req_t *, int, const char *, const char *, size_t);
    char series[17];
    int64_t from, until;
    int days;
} ch_read_t;

static int ch_read_status(ch_t *c, int k, const char *text)
{
    if (k == CH_RETRY && c->up && strncmp(text, "HTTP", 4) != 0)
        ch_set_down(c, text, 0); /* no answer at all: the write path probes */
    return k == CH_BAD ? SN_EINVAL : k == CH_AUTH ? SN_EDENIED : SN_EIO;
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void ch_window_done(void *arg, const sn_http_response_t *r)
{
    ch_read_t *rd = arg;
    ch_t *c = rd->c;
    long code;
    char text[300];
    int st = 0;
    json_t *res = NULL;
    int k = ch_classify(r, &code, text, sizeof(text));
    c->reads--;
    if (ch_release(c)) {
        free(rd);
        return;
    }
    if (k != CH_OK) {
        c->host->log(c->host, SN_LOG_WARN, "telemetry_window failed: %s", text);
        st = ch_read_status(c, k, text);
        if (k == CH_BAD || k == CH_SCHEMA)
            res = json_pack("{s:s,s:I}", "error", text, "code", (json_int_t)code);
    } else if (r->body_len % 16 != 0) {
        c->host->log(c->host, SN_LOG_WARN,
                     "telemetry_window: an answer of %zu bytes is not whole rows", r->body_len);
        st = SN_EIO;
    } else {
        json_t *pts = json_array();
        const unsigned char *p = (const unsigned char *)r->body;
        size_t n = r->body_len / 16;
        for (size_t i = 0; pts && i < n; i++, p += 16) {
            uint64_t vb = get_le(p + 8, 8);
            double v;
            memcpy(&v, &vb, sizeof(v));
            if (!isfinite(v))
                continue;
            json_array_append_new(pts, json_pack("[I,f]", (json_int_t)(int64_t)get_le(p, 8), v));
        }
        res = pts ? json_pack("{s:o}", "points", pts) : NULL;
        if (!res)
            st = SN_ENOMEM;
    }
    if (rd->done)
        rd->done(rd->arg, st, res);
    json_decref(res);
    free(rd);
    ch_check_stopped(c);
}

/**
 * Points of @p series with from_ms <= ts <= to_ms: {"points": [[ts_ms, value], ...]}, oldest
 * first, the oldest @p limit of the range (0 or over 100000: 100000). SN_EAGAIN at once while
 * ClickHouse is unavailable. Thread: loop.
 */
static void ch_tel_window(void *self, uint64_t series, int64_t from_ms, int64_t to_ms, size_t limit,
                          sn_done_fn done, void *arg)
{
    ch_t *c = self;
    char sql[512];
    if (!c->up || c->reads >= CH_MAX_READS) {
        ch_soon(c, done, arg, SN_EAGAIN, NULL);
        return;
    }
    ch_read_t *rd = calloc(1, sizeof(*rd));
    if (!rd) {
        ch_soon(c, done, arg, SN_ENOMEM, NULL);
        return;
    }
    rd->c = c;
    rd->done = done;
    rd->arg = arg;
    rd->limit = limit == 0 || limit > CH_MAX_WINDOW ? CH_MAX_WINDOW : limit;
    snprintf(sql, sizeof(sql),
             "SELECT ts, value FROM %s.points WHERE series = %" PRIu64 " AND ts >= %" PRId64
             " AND ts <= %" PRId64 " ORDER BY ts LIMIT %zu FORMAT RowBinary",
             c->db, series, from_ms, to_ms, rd->limit);
    c->reads++;
    ch_http(c, "POST", c->query_url, sql, strlen(sql), c->timeout_ms, rd->limit * 16 + 4096,
            ch_window_done, rd);
}

/* -- stats route -- */

static void ch_reply(ch_t *c, sn_route_req_t *req, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    const char *t = text ? text : "{\"error\":\"out of memory\"}";
    c->host->req_reply(req, status, "application/json", t, strlen(t));
    free(text);
    json_decref(body);
}

static void ch_reply_error(ch_t *c, sn_route_req_t *req, int status, const char *msg)
{
    ch_reply(c, req, status, json_pack("{s:s}", "error", msg));
}

static json_t *ch_num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* One TabSeparated line k, dow, hour, n, mean, sd, [p50,p90,p99] as a JSON bucket. */
static json_t *ch_bucket(char **f, int *dow, int *hour)
{
    *dow = atoi(f[1]);
    *hour = atoi(f[2]);
    double q[3] = {NAN, NAN, NAN};
    const char *p = f[6];
    if (*p == '[')
        p++;
    for (int i = 0; i < 3 && *p; i++) {
        char *end;
        q[i] = strtod(p, &end);
        p = *end == ',' ? end + 1 : end;
    }
    return json_pack("{s:I,s:o,s:o,s:o,s:o,s:o}", "n", (json_int_t)strtoll(f[3], NULL, 10), "mean",
                     ch_num(strtod(f[4], NULL)), "stddev", ch_num(strtod(f[5], NULL)), "p50",
                     ch_num(q[0]), "p90", ch_num(q[1]), "p99", ch_num(q[2]));
}

static void ch_stats_done(void *arg, const sn_http_response_t *r)
{
    ch_read_t *rd = arg;
    ch_t *c = rd->c;
    long code;
    char text[300];
    int k = ch_classify(r, &code, text, sizeof(text));
    c->reads--;
    if (ch_release(c)) {
        /* The instance is gone, the route request still needs its answer. */
        const char *m = "{\"error\":\"the store was shut down\"}";
        rd->reply(rd->req, 503, "application/json", m, strlen(m));
        free(rd);
        return;
    }
    if (k != CH_OK) {
        ch_read_status(c, k, text);
        ch_reply(c, rd->req, 502, json_pack("{s:s,s:I}", "error", text, "code", (json_int_t)code));
        free(rd);
        ch_check_stopped(c);
        return;
    }
    json_t *hours[24] = {0}, *dows[8] = {0}, *how[8][24] = {{0}}, *all = NULL;
    char *body = strndup(r->body ? r->body : "", r->body_len);
    char *save = NULL;
    for (char *line = body ? strtok_r(body, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        char *f[7];
        int nf = 0;
        for (char *s = line; nf < 7; nf++) {
            f[nf] = s;
            char *tab = strchr(s, '\t');
            if (!tab) {
                nf++;
                break;
            }
            *tab = '\0';
            s = tab + 1;
        }
        if (nf != 7)
            continue;
        int d, h;
        json_t *b = ch_bucket(f, &d, &h);
        if (!b)
            continue;
        json_t **slot = NULL;
        if (strcmp(f[0], "all") == 0)
            slot = &all;
        else if (strcmp(f[0], "hour") == 0 && h >= 0 && h < 24)
            slot = &hours[h];
        else if (strcmp(f[0], "dow") == 0 && d >= 1 && d <= 7)
            slot = &dows[d];
        else if (strcmp(f[0], "how") == 0 && d >= 1 && d <= 7 && h >= 0 && h < 24)
            slot = &how[d][h];
        if (!slot || *slot) {
            json_decref(b);
            continue;
        }
        *slot = b;
    }
    free(body);
    json_t *bh = json_array(), *bd = json_array(), *bw = json_array();
    for (int h = 0; h < 24; h++)
        if (hours[h]) {
            json_object_set_new(hours[h], "hour", json_integer(h));
            json_array_append_new(bh, hours[h]);
        }
    for (int d = 1; d <= 7; d++) {
        if (dows[d]) {
            json_object_set_new(dows[d], "dow", json_integer(d));
            json_array_append_new(bd, dows[d]);
        }
        for (int h = 0; h < 24; h++)
            if (how[d][h]) {
                json_object_set_new(how[d][h], "dow", json_integer(d));
                json_object_set_new(how[d][h], "hour", json_integer(h));
                json_array_append_new(bw, how[d][h]);
            }
    }
    if (all && json_integer_value(json_object_get(all, "n")) == 0) {
        json_decref(all);
        all = NULL;
    }
    json_t *out =
        json_pack("{s:s,s:I,s:I,s:i,s:[f,f,f],s:s,s:o,s:o,s:o,s:o}", "series", rd->series, "from",
                  (json_int_t)rd->from, "until", (json_int_t)rd->until, "days", rd->days,
                  "quantiles", 0.5, 0.9, 0.99, "tz", "UTC", "all", all ? all : json_null(),
                  "by_hour", bh, "by_dow", bd, "by_hour_of_week", bw);
    ch_reply(c, rd->req, out ? 200 : 500, out);
    free(rd);
    ch_check_stopped(c);
}

/* Decode %XX and + in place. */
static void ch_urldec(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '+') {
            *o++ = ' ';
        } else if (*s == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
            char hx[3] = {s[1], s[2], 0};
            *o++ = (char)strtol(hx, NULL, 16);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

static int ch_token_ok(const char *want, const char *auth)
{
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return 0;
    const char *got = auth + 7;
    size_t wl = strlen(want), gl = strlen(got);
    unsigned diff = (unsigned)(wl ^ gl);
    for (size_t i = 0; i < wl; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < gl ? got[i] : 0);
    return diff == 0;
}

/**
 * Window statistics of one series for seasonal baselines: POST /hooks/<instance>/stats with a
 * form body `series=<16 hex digits>&days=N[&until=T][&exact=1]` (GET with the same body works
 * too). Answers {"series","from","until","days","quantiles","tz","all","by_hour","by_dow",
 * "by_hour_of_week"}, each bucket {"n","mean","stddev","p50","p90","p99"} over
 * [until - days, until). Thread: loop.
 */
static void ch_route_stats(void *self, sn_route_req_t *req)
{
    ch_t *c = self;
    const sn_host_t *h = c->host;
    size_t len = 0;
    char *form = NULL, *save = NULL, *sql = NULL;
    const char *series = NULL, *days_s = NULL, *until_s = NULL, *exact_s = NULL;
    if (c->token && !ch_token_ok(c->token, h->req_header(req, "Authorization"))) {
        ch_reply_error(c, req, 401, "this route needs Authorization: Bearer <stats_token>");
        return;
    }
    const char *body = h->req_body(req, &len);
    form = strndup(body ? body : "", len);
    if (!form) {
        ch_reply_error(c, req, 500, "out of memory");
        return;
    }
    for (char *kv = strtok_r(form, "&\r\n", &save); kv; kv = strtok_r(NULL, "&\r\n", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            continue;
        *eq = '\0';
        ch_urldec(kv);
        ch_urldec(eq + 1);
        if (strcmp(kv, "series") == 0)
            series = eq + 1;
        else if (strcmp(kv, "days") == 0)
            days_s = eq + 1;
        else if (strcmp(kv, "until") == 0)
            until_s = eq + 1;
        else if (strcmp(kv, "exact") == 0)
            exact_s = eq + 1;
    }
    char *end = NULL;
    long days = days_s ? strtol(days_s, &end, 10) : 28;
    int64_t until = h->now_ms(h);
    int exact = exact_s && (strcmp(exact_s, "1") == 0 || strcasecmp(exact_s, "true") == 0);
    if (!series || strlen(series) != 16 || strspn(series, "0123456789abcdefABCDEF") != 16 ||
        (days_s && (*end || days < 1 || days > 400)) ||
        (until_s && h->parse_time(h, until_s, &until) != 0)) {
        ch_reply_error(c, req, 400,
                       "form body: series=<16 hex digits>&days=1..400 (default 28)"
                       "[&until=<epoch ms or RFC 3339>][&exact=1]");
        goto out;
    }
    if (!c->up) {
        char msg[400];
        snprintf(msg, sizeof(msg), "ClickHouse unavailable: %s", c->last_error);
        ch_reply_error(c, req, 503, msg);
        goto out;
    }
    if (c->reads >= CH_MAX_READS) {
        ch_reply_error(c, req, 503, "too many queries in flight");
        goto out;
    }
    ch_read_t *rd = calloc(1, sizeof(*rd));
    if (!rd) {
        ch_reply_error(c, req, 500, "out of memory");
        goto out;
    }
    rd->c = c;
    rd->req = req;
    rd->reply = h->req_reply;
    rd->days = (int)days;
    rd->until = until;
    rd->from = until - (int64_t)days * 86400000;
    for (int i = 0; i < 16; i++)
        rd->series[i] = (char)tolower((unsigned char)series[i]);
    uint64_t sid = strtoull(rd->series, NULL, 16);
    const char *q =
        exact ? "quantilesExact(0.5, 0.9, 0.99)(value)" : "quantiles(0.5, 0.9, 0.99)(value)";
    char w[320];
    snprintf(w, sizeof(w),
             "(SELECT toDateTime(intDiv(ts, 1000), 'UTC') AS t, value FROM %s.points WHERE "
             "series = %" PRIu64 " AND ts >= %" PRId64 " AND ts < %" PRId64 ")",
             c->db, sid, rd->from, rd->until);
    const char *agg = "count(), avg(value), stddevPop(value)";
    sql = ch_printf("SELECT 'all', toUInt8(0), toUInt8(0), %s, %s FROM %s "
                    "UNION ALL SELECT 'hour', toUInt8(0), toHour(t, 'UTC') AS hh, %s, %s FROM %s "
                    "GROUP BY hh "
                    "UNION ALL SELECT 'dow', toDayOfWeek(t, 'UTC') AS dd, toUInt8(0), %s, %s "
                    "FROM %s GROUP BY dd "
                    "UNION ALL SELECT 'how', toDayOfWeek(t, 'UTC') AS dd, toHour(t, 'UTC') AS hh, "
                    "%s, %s FROM %s GROUP BY dd, hh FORMAT TabSeparated",
                    agg, q, w, agg, q, w, agg, q, w, agg, q, w);
    if (!sql) {
        free(rd);
        ch_reply_error(c, req, 500, "out of memory");
        goto out;
    }
    c->reads++;
    ch_http(c, "POST", c->query_url, sql, strlen(sql), c->timeout_ms, 1 << 20, ch_stats_done, rd);
out:
    free(sql);
    free(form);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static int ch_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    int rc = SN_EINVAL;
    ch_t *c = calloc(1, sizeof(*c));
    if (!c)
        return SN_ENOMEM;
    c->host = host;
    c->lock_fd = -1;
    c->up = 1;
    c->tails = calloc(CH_TAIL_SLOTS, sizeof(*c->tails)); /* NULL: every row encoded in full */
    const char *url = host->cfg_str(cfg, "url");
    const char *db = host->cfg_str(cfg, "database");
    const char *user = host->cfg_str(cfg, "user");
    const char *pw = host->cfg_str(cfg, "password");
    const char *spool = host->cfg_str(cfg, "spool_dir");
    const char *token = host->cfg_str(cfg, "stats_token");
    c->batch_points = host->cfg_int(cfg, "batch_points");
    c->batch_ms = host->cfg_int(cfg, "batch_interval");
    c->spool_max = host->cfg_int(cfg, "spool_max");
    c->retry_base = host->cfg_int(cfg, "retry_base");
    c->retry_max = host->cfg_int(cfg, "retry_max");
    c->timeout_ms = host->cfg_int(cfg, "timeout");
    size_t ul = url ? strlen(url) : 0;
    while (ul > 0 && url[ul - 1] == '/')
        ul--;
    const char *auth = url ? strstr(url, "://") : NULL;
    size_t authlen = auth ? strcspn(auth + 3, "/?#") : 0;
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
        ul <= (size_t)(auth + 3 - url) || strchr(url, '?') || strchr(url, '#')) {
        snprintf(err->msg, sizeof(err->msg), "url must be http://host:port or https://host:port");
        goto out;
    }
    if (memchr(auth + 3, '@', authlen)) {
        snprintf(err->msg, sizeof(err->msg),
                 "url must not carry credentials: use user and password");
        goto out;
    }
    if (!db || !*db || strlen(db) >= sizeof(c->db) || isdigit((unsigned char)db[0]) ||
        strspn(db, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") !=
            strlen(db)) {
        snprintf(err->msg, sizeof(err->msg),
                 "database must be 1..63 letters, digits or _ and not start with a digit");
        goto out;
    }
    if (c->batch_points < 1 || c->batch_points > CH_MAX_POINTS) {
        snprintf(err->msg, sizeof(err->msg), "batch_points must be 1..%d", CH_MAX_POINTS);
        goto out;
    }
    if (c->batch_ms < 1 || c->retry_base < 1 || c->retry_max < c->retry_base ||
        c->timeout_ms < 100) {
        snprintf(err->msg, sizeof(err->msg),
                 "batch_interval and retry_base must be positive, retry_max >= retry_base, "
                 "timeout at least 100ms");
        goto out;
    }
    if (c->spool_max < 4096) {
        snprintf(err->msg, sizeof(err->msg), "spool_max must be at least 4k");
        goto out;
    }
    if ((user && strpbrk(user, "\r\n")) || (pw && strpbrk(pw, "\r\n"))) {
        snprintf(err->msg, sizeof(err->msg), "user and password must be one line");
        goto out;
    }
    snprintf(c->db, sizeof(c->db), "%s", db);
    rc = SN_ENOMEM;
    char *ins = ch_printf("INSERT INTO %s.points (date, series, ts, value, metric, labels) FORMAT "
                          "RowBinary",
                          c->db);
    char *enc = ins ? ch_urlenc(ins) : NULL;
    free(ins);
    c->base = strndup(url, ul);
    c->insert_url = enc && c->base ? ch_printf("%s/?query=%s", c->base, enc) : NULL;
    free(enc);
    c->query_url = c->base ? ch_printf("%s/?wait_end_of_query=1&max_execution_time=%" PRId64,
                                       c->base, (c->timeout_ms + 999) / 1000)
                           : NULL;
    c->ping_url = c->base ? ch_printf("%s/ping", c->base) : NULL;
    if (!c->insert_url || !c->query_url || !c->ping_url)
        goto out;
    size_t nh = 0;
    if (user && *user) {
        if (!(c->hdr_user = ch_printf("X-ClickHouse-User: %s", user)))
            goto out;
        c->headers[nh++] = c->hdr_user;
    }
    if (pw && *pw) {
        if (!(c->hdr_key = ch_printf("X-ClickHouse-Key: %s", pw)))
            goto out;
        c->headers[nh++] = c->hdr_key;
    }
    c->headers[nh] = NULL;
    if (spool && *spool && !(c->spool_dir = ch_strdup(spool)))
        goto out;
    if (token && *token && !(c->token = ch_strdup(token)))
        goto out;
    c->mem_max =
        c->spool_dir ? (c->spool_max < CH_MEM_MAX ? c->spool_max : CH_MEM_MAX) : c->spool_max;
    c->seg_max = (uint64_t)c->spool_max / 8;
    if (c->seg_max > CH_SEG_MAX)
        c->seg_max = CH_SEG_MAX;
    if (c->seg_max < CH_SEG_MIN)
        c->seg_max = CH_SEG_MIN;
    c->rng = ((uint64_t)host->now_ms(host) << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)c;
    if (!c->rng)
        c->rng = 0x9E3779B97F4A7C15ULL;
    rc = 0;
out:
    if (rc != 0) {
        ch_free(c);
        return rc;
    }
    *self = c;
    return 0;
}

/** Lock the spool directory, register the stats route and start the write path (spool scan,
 * schema, replay) asynchronously: an unavailable ClickHouse does not fail the start.
 * Thread: loop. */
static int ch_start(void *self)
{
    ch_t *c = self;
    if (c->spool_dir) {
        char why[300];
        c->lock_fd = chs_lock(c->spool_dir, why, sizeof(why));
        if (c->lock_fd < 0) {
            c->host->log(c->host, SN_LOG_ERROR, "spool_dir: %s", why);
            return SN_EIO;
        }
    }
    if (SN_HOST_HAS(c->host, route_add)) {
        int rc = c->host->route_add(c->host, "POST", "stats", ch_route_stats, c);
        if (rc == 0)
            rc = c->host->route_add(c->host, "GET", "stats", ch_route_stats, c);
        if (rc != 0 && rc != SN_ENOTSUP)
            c->host->log(c->host, SN_LOG_WARN, "cannot register the stats route (%d)", rc);
    }
    c->started = 1;
    ch_gauges(c);
    ch_pump(c);
    return 0;
}

/**
 * Seal the current batch and call @p done once every batch is inserted or spooled (or, with
 * no spool and ClickHouse down, refused with SN_EAGAIN) and every request has completed. The
 * spool is not replayed while stopping: the next start does it. Thread: loop.
 */
static void ch_stop(void *self, sn_done_fn done, void *arg)
{
    ch_t *c = self;
    if (c->probe_timer) {
        c->host->timer_del(c->probe_timer);
        c->probe_timer = NULL;
    }
    c->stopping = 1;
    c->stop_done = done;
    c->stop_arg = arg;
    ch_seal(c);
    ch_pump(c);
    ch_check_stopped(c);
}

/** Free the instance; with requests in flight it goes when the last completes (their done
 * callbacks are not called). Thread: loop. */
static void ch_destroy(void *self)
{
    ch_t *c = self;
    if (c->flush_timer)
        c->host->timer_del(c->flush_timer);
    if (c->probe_timer)
        c->host->timer_del(c->probe_timer);
    if (c->kick_timer)
        c->host->timer_del(c->kick_timer);
    c->flush_timer = c->probe_timer = c->kick_timer = NULL;
    size_t lost = c->qpoints + (c->cur ? c->cur->npoints : 0);
    if (lost)
        c->host->log(c->host, SN_LOG_WARN,
                     "destroyed with %zu points not written: they were not acknowledged", lost);
    c->destroyed = 1;
    if (c->inflight == 0)
        ch_free(c);
}

static int ch_health(void *self, sn_health_t *out)
{
    ch_t *c = self;
    int full = (int64_t)(c->spool_bytes + c->qbytes) >= c->spool_max;
    out->ok = c->up && !full;
    if (!c->up)
        snprintf(out->detail, sizeof(out->detail),
                 "ClickHouse unavailable: %.150s; spool %" PRIu64 " bytes", c->last_error,
                 c->spool_bytes);
    else if (full)
        snprintf(out->detail, sizeof(out->detail), "spool full (%" PRIu64 " bytes)",
                 c->spool_bytes);
    else
        snprintf(out->detail, sizeof(out->detail),
                 "%s; spool %" PRIu64 " bytes; %zu points buffered",
                 c->schema_ok ? "up" : "creating the schema", c->spool_bytes,
                 c->qpoints + (c->cur ? c->cur->npoints : 0));
    return 0;
}

static const sn_store_ops_t ch_ops = {
    .struct_size = sizeof(sn_store_ops_t),
    .caps = SN_STORE_TELEMETRY,
    .telemetry_write = ch_tel_write,
    .telemetry_window = ch_tel_window,
};

static const sn_plugin_t ch_plugin = {
    .abi_major = SN_ABI_MAJOR,
    .abi_minor = SN_ABI_MINOR,
    .struct_size = sizeof(sn_plugin_t),
    .kind = SN_STORE,
    .type = "clickhouse",
    .version = "1.0.0",
    .summary = "telemetry in ClickHouse (18.16+) over HTTP, with an on-disk spool for outages",
    .params = ch_params,
    .create = ch_create,
    .start = ch_start,
    .stop = ch_stop,
    .destroy = ch_destroy,
    .health = ch_health,
    .ops = &ch_ops,
};

/** The plugin's descriptor. Ownership: static. Thread: loader. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &ch_plugin;
}
