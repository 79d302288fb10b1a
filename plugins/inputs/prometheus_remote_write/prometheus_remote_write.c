/**
 * @file prometheus_remote_write.c
 * Input `prometheus_remote_write`: a Prometheus remote write 1.0 receiver. It registers
 * POST /hooks/<instance>/api/v1/write, takes snappy-compressed protobuf WriteRequests and hands
 * every sample to the pipeline as a point {ts, metric = __name__, value, labels = the rest}.
 *
 * Prometheus retries 5xx (and 429) and drops a batch on any other 4xx, so the status codes
 * decide whether data is lost: 400 only for bodies that can never decode, 413 over the
 * configured bounds, 503 when the core's queues are full. One request is handed to the core in
 * one emit_lines call, which the core commits all-or-nothing, so a 503 means nothing of the
 * request was taken and Prometheus's retry duplicates nothing.
 *
 * The protobuf wire format is decoded by hand: a single bounded pass over the decompressed
 * bytes that allocates nothing per series or label, skips what a receiver of samples does not
 * need (exemplars, native histograms, metadata, unknown fields) without copying it, and keeps
 * every length checked against the bytes that remain. A generated unpacker (protobuf-c)
 * allocates the whole message tree, several times the decompressed size, and copies unknown
 * fields; the unit test encodes its requests with protobuf-c to check this decoder against it.
 */
#include <sentinel/plugin.h>

#include <math.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/** Labels collected per series; the core takes at most 32 on a point anyway. */
#define RW_MAX_LABELS 64
/** Buffers above this are freed after the request instead of kept for the next one. */
#define RW_KEEP_BUFFER (4u << 20)
/** Backpressure is logged at most this often. */
#define RW_LOG_EVERY_MS 10000
/** Prometheus's stale marker: a NaN with this exact bit pattern ends a series. */
#define RW_STALE_NAN 0x7ff0000000000002ULL

typedef struct rw_buf {
    char *p;
    size_t len, cap;
} rw_buf_t;

typedef struct rw_in {
    const sn_host_t *host;
    size_t max_decompressed;
    size_t max_json;
    const char *token; /* owned by the host's cfg */
    char *basic;       /* base64("user:password"), owned */
    rw_buf_t raw, out; /* decompressed request, JSON lines; reused between requests */
    int64_t last_busy_log;
    unsigned long requests, accepted, refused, busy;
} rw_in_t;

static const sn_param_t rw_params[] = {
    {"max_decompressed", SN_T_SIZE, "16m", 0,
     "largest decompressed WriteRequest; checked against the snappy length header before "
     "anything is allocated (413 above it)"},
    {"max_json", SN_T_SIZE, "64m", 0,
     "largest JSON-lines expansion of one request handed to the core (every sample repeats its "
     "series' labels; 413 above it)"},
    {"token", SN_T_STRING, NULL, SN_PARAM_SECRET,
     "bearer token Prometheus must send (remote_write authorization.credentials); use "
     "${env:NAME} or ${file:/path}"},
    {"username", SN_T_STRING, NULL, 0, "basic-auth user Prometheus must send (with password)"},
    {"password", SN_T_STRING, NULL, SN_PARAM_SECRET,
     "basic-auth password; use ${env:NAME} or ${file:/path}"},
    {NULL, 0, NULL, 0, NULL},
};

/* ---- small helpers ------------------------------------------------------------------------- */

static char *b64(const char *in, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* Constant time over the presented length so a prefix match is not observable. */
static int secret_eq(const char *want, const char *got)
{
    size_t lw = strlen(want), lg = strlen(got);
    unsigned char diff = (unsigned char)(lw != lg);
    for (size_t i = 0; i < lg; i++)
        diff |= (unsigned char)(got[i] ^ (i < lw ? want[i] : 0));
    return diff == 0;
}

static int starts_with_ci(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++)
        if (!*s || (*s | 0x20) != (*prefix | 0x20))
            return 0;
    return 1;
}

/* Room for @p need bytes in all, never more than @p limit (a kept buffer may be larger than
 * this request's limit allows, so the limit is checked first). */
static int buf_reserve(rw_buf_t *b, size_t need, size_t limit)
{
    if (need > limit)
        return SN_ENOMEM;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : (limit < 4096 ? limit : 4096);
    while (cap < need)
        cap = cap > limit / 2 ? limit : cap * 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return SN_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void buf_trim(rw_buf_t *b)
{
    if (b->cap > RW_KEEP_BUFFER) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
    b->len = 0;
}

/* ---- protobuf wire format ------------------------------------------------------------------ */

typedef struct pb {
    const unsigned char *p, *end;
} pb_t;

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

static int pb_varint(pb_t *b, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end)
            return -1;
        unsigned char c = *b->p++;
        if (shift == 63 && c > 1)
            return -1;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Next field key; 1 with *field and *wt set, 0 at the end, -1 when malformed. */
static int pb_key(pb_t *b, uint32_t *field, int *wt)
{
    if (b->p >= b->end)
        return 0;
    uint64_t k;
    if (pb_varint(b, &k) != 0 || (k >> 3) == 0 || (k >> 3) > 0x1fffffff)
        return -1;
    *field = (uint32_t)(k >> 3);
    *wt = (int)(k & 7);
    return 1;
}

static int pb_len(pb_t *b, pb_t *sub)
{
    uint64_t n;
    if (pb_varint(b, &n) != 0 || n > (uint64_t)(b->end - b->p))
        return -1;
    sub->p = b->p;
    sub->end = b->p + n;
    b->p += n;
    return 0;
}

static int pb_fixed64(pb_t *b, uint64_t *out)
{
    if (b->end - b->p < 8)
        return -1;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b->p[i];
    b->p += 8;
    *out = v;
    return 0;
}

static int pb_skip(pb_t *b, int wt)
{
    uint64_t v;
    pb_t sub;
    switch (wt) {
    case PB_VARINT:
        return pb_varint(b, &v);
    case PB_I64:
        return pb_fixed64(b, &v);
    case PB_LEN:
        return pb_len(b, &sub);
    case PB_I32:
        if (b->end - b->p < 4)
            return -1;
        b->p += 4;
        return 0;
    default: /* groups (3, 4) are not proto3; 6 and 7 do not exist */
        return -1;
    }
}

/* ---- JSON output --------------------------------------------------------------------------- */

typedef struct str {
    const char *p;
    size_t n;
} str_t;

typedef struct rw_req {
    rw_in_t *in;
    rw_buf_t *out;
    size_t lines; /* samples written */
    size_t received, stale, nonfinite;
    char why[200]; /* the error phrase for a 4xx */
    int status;    /* 0, or the 4xx/5xx to answer */
} rw_req_t;

/* Room for @p n more bytes of output, or 413 past max_json. */
static int out_room(rw_req_t *r, size_t n)
{
    if (buf_reserve(r->out, r->out->len + n, r->in->max_json) == 0)
        return 0;
    r->status = 413;
    snprintf(r->why, sizeof(r->why),
             "the request expands to more than max_json (%zu bytes) of points", r->in->max_json);
    return -1;
}

static int out_put(rw_req_t *r, const void *p, size_t n)
{
    if (out_room(r, n) != 0)
        return -1;
    memcpy(r->out->p + r->out->len, p, n);
    r->out->len += n;
    return 0;
}

/* A JSON string body (without quotes) for arbitrary bytes; the core checks UTF-8. */
static int out_escaped(rw_req_t *r, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (out_put(r, s + run, i - run) != 0)
            return -1;
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t en = 2;
        if (c == '\n')
            esc[1] = 'n';
        else if (c == '\t')
            esc[1] = 't';
        else if (c == '\r')
            esc[1] = 'r';
        else if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            en = 6;
        }
        if (out_put(r, esc, en) != 0)
            return -1;
        run = i + 1;
    }
    return out_put(r, s + run, n - run);
}

static size_t fmt_int(char *o, int64_t v)
{
    char tmp[24];
    size_t n = 0, k = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        o[k++] = '-';
    while (n)
        o[k++] = tmp[--n];
    return k;
}

/* The shortest of %.15g / %.17g that reads back to the same double; integers plainly. */
static size_t fmt_double(char *o, size_t cap, double v)
{
    if (v == trunc(v) && fabs(v) < 9e15)
        return fmt_int(o, (int64_t)v);
    int n = snprintf(o, cap, "%.15g", v);
    if (strtod(o, NULL) != v)
        n = snprintf(o, cap, "%.17g", v);
    return (size_t)n;
}

/* ---- decoding ------------------------------------------------------------------------------ */

static int bad(rw_req_t *r, const char *fmt, size_t index)
{
    r->status = 400;
    snprintf(r->why, sizeof(r->why), fmt, index);
    return -1;
}

/* Label {string name = 1; string value = 2;} */
static int decode_label(rw_req_t *r, pb_t *b, str_t *name, str_t *value, size_t series)
{
    uint32_t f;
    int wt, k;
    name->p = value->p = "";
    name->n = value->n = 0;
    while ((k = pb_key(b, &f, &wt)) == 1) {
        if (f == 1 || f == 2) {
            pb_t s;
            if (wt != PB_LEN || pb_len(b, &s) != 0)
                return bad(r, "series %zu: malformed label", series);
            str_t *dst = f == 1 ? name : value;
            dst->p = (const char *)s.p;
            dst->n = (size_t)(s.end - s.p);
        } else if (pb_skip(b, wt) != 0) {
            return bad(r, "series %zu: malformed label", series);
        }
    }
    return k == 0 ? 0 : bad(r, "series %zu: malformed label", series);
}

/* Sample {double value = 1; int64 timestamp = 2;} */
static int decode_sample(rw_req_t *r, pb_t *b, double *v, int64_t *ts, size_t series)
{
    uint32_t f;
    int wt, k;
    uint64_t bits = 0, t = 0;
    while ((k = pb_key(b, &f, &wt)) == 1) {
        int rc;
        if (f == 1)
            rc = wt == PB_I64 ? pb_fixed64(b, &bits) : -1;
        else if (f == 2)
            rc = wt == PB_VARINT ? pb_varint(b, &t) : -1;
        else
            rc = pb_skip(b, wt);
        if (rc != 0)
            return bad(r, "series %zu: malformed sample", series);
    }
    if (k != 0)
        return bad(r, "series %zu: malformed sample", series);
    memcpy(v, &bits, sizeof(*v));
    *ts = (int64_t)t;
    if (bits == RW_STALE_NAN)
        return 1;
    return 0;
}

/*
 * TimeSeries {repeated Label labels = 1; repeated Sample samples = 2; exemplars = 3;
 * histograms = 4;}. Two passes over its bytes: the labels (in any order relative to the
 * samples), then one line per sample, whose series part is written once and copied after.
 */
static int decode_series(rw_req_t *r, pb_t ts, size_t index)
{
    str_t names[RW_MAX_LABELS], values[RW_MAX_LABELS];
    str_t metric = {NULL, 0};
    size_t nl = 0, total_labels = 0;
    uint32_t f;
    int wt, k;
    pb_t b = ts;
    while ((k = pb_key(&b, &f, &wt)) == 1) {
        if (f != 1) {
            if (pb_skip(&b, wt) != 0)
                return bad(r, "series %zu: malformed field", index);
            continue;
        }
        pb_t lb;
        str_t n, v;
        if (wt != PB_LEN || pb_len(&b, &lb) != 0)
            return bad(r, "series %zu: malformed label", index);
        if (decode_label(r, &lb, &n, &v, index) != 0)
            return -1;
        if (n.n == 8 && memcmp(n.p, "__name__", 8) == 0) {
            metric = v;
            continue;
        }
        total_labels++;
        if (nl < RW_MAX_LABELS) {
            names[nl] = n;
            values[nl] = v;
            nl++;
        }
    }
    if (k != 0)
        return bad(r, "series %zu: malformed field", index);
    if (!metric.p || metric.n == 0)
        return bad(r, "series %zu: no __name__ label", index);

    size_t tail_off = 0, tail_len = 0;
    int over = total_labels > RW_MAX_LABELS; /* the core would refuse every line anyway */
    b = ts;
    while ((k = pb_key(&b, &f, &wt)) == 1) {
        if (f != 2) {
            if (pb_skip(&b, wt) != 0)
                return bad(r, "series %zu: malformed field", index);
            continue;
        }
        pb_t sb;
        if (wt != PB_LEN || pb_len(&b, &sb) != 0)
            return bad(r, "series %zu: malformed sample", index);
        double v;
        int64_t t;
        int rc = decode_sample(r, &sb, &v, &t, index);
        if (rc < 0)
            return -1;
        r->received++;
        if (rc == 1) {
            r->stale++;
            continue;
        }
        if (!isfinite(v)) {
            r->nonfinite++;
            continue;
        }
        if (over) {
            r->lines++; /* counted as refused by the core: written, not accepted */
            continue;
        }
        char head[96];
        size_t hn = 0;
        memcpy(head, "{\"ts\":", 6);
        hn = 6 + fmt_int(head + 6, t);
        memcpy(head + hn, ",\"value\":", 9);
        hn += 9;
        hn += fmt_double(head + hn, sizeof(head) - hn, v);
        if (out_put(r, head, hn) != 0)
            return -1;
        if (tail_len) {
            /* The series part written for its first sample, copied: offsets survive a
             * realloc, and the copy lands after the original, so they never overlap. */
            if (out_room(r, tail_len) != 0)
                return -1;
            memcpy(r->out->p + r->out->len, r->out->p + tail_off, tail_len);
            r->out->len += tail_len;
        } else {
            tail_off = r->out->len;
            if (out_put(r, ",\"metric\":\"", 11) != 0 || out_escaped(r, metric.p, metric.n) != 0 ||
                out_put(r, "\",\"labels\":{", 12) != 0)
                return -1;
            for (size_t i = 0; i < nl; i++) {
                if ((i && out_put(r, ",", 1) != 0) || out_put(r, "\"", 1) != 0 ||
                    out_escaped(r, names[i].p, names[i].n) != 0 || out_put(r, "\":\"", 3) != 0 ||
                    out_escaped(r, values[i].p, values[i].n) != 0 || out_put(r, "\"", 1) != 0)
                    return -1;
            }
            if (out_put(r, "}}\n", 3) != 0)
                return -1;
            tail_len = r->out->len - tail_off;
        }
        r->lines++;
    }
    if (k != 0)
        return bad(r, "series %zu: malformed field", index);
    return 0;
}

/* WriteRequest {repeated TimeSeries timeseries = 1; reserved 2; metadata = 3;} */
static int decode_request(rw_req_t *r, const char *data, size_t len)
{
    pb_t b = {(const unsigned char *)data, (const unsigned char *)data + len};
    uint32_t f;
    int wt, k;
    size_t index = 0;
    while ((k = pb_key(&b, &f, &wt)) == 1) {
        if (f != 1) {
            if (pb_skip(&b, wt) != 0)
                return bad(r, "malformed protobuf after series %zu", index);
            continue;
        }
        pb_t ts;
        if (wt != PB_LEN || pb_len(&b, &ts) != 0)
            return bad(r, "series %zu: malformed protobuf", index);
        if (decode_series(r, ts, index) != 0)
            return -1;
        index++;
    }
    return k == 0 ? 0 : bad(r, "malformed protobuf after series %zu", index);
}

/* ---- the route ----------------------------------------------------------------------------- */

static void count(rw_in_t *in, const char *name, const char *help, double v)
{
    in->host->metric(in->host, SN_METRIC_COUNTER, name, help, v);
}

static void reply(rw_in_t *in, sn_route_req_t *req, int status, const char *rid, const char *why)
{
    const sn_host_t *host = in->host;
    static const struct {
        int status;
        const char *metric, *help;
    } kinds[] = {
        {204, "input_remote_write_requests_ok_total", "Write requests taken (204)"},
        {400, "input_remote_write_requests_bad_total",
         "Write requests refused as undecodable (400; Prometheus drops them)"},
        {401, "input_remote_write_requests_unauthorized_total",
         "Write requests refused for missing or wrong credentials (401)"},
        {413, "input_remote_write_requests_too_large_total",
         "Write requests over max_decompressed or max_json (413)"},
        {415, "input_remote_write_requests_unsupported_total",
         "Write requests in an encoding or protocol version not served (415)"},
        {500, "input_remote_write_requests_failed_total",
         "Write requests the core failed to take (500; Prometheus retries)"},
        {503, "input_remote_write_requests_backpressure_total",
         "Write requests refused while the core's queues were full (503; Prometheus retries)"},
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (kinds[i].status == status)
            count(in, kinds[i].metric, kinds[i].help, 1);
    if (status == 204) {
        host->req_reply(req, 204, NULL, NULL, 0);
        return;
    }
    in->refused++;
    char body[320];
    int n = snprintf(body, sizeof(body), "%s (request %s)\n", why, rid);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(body))
        n = (int)sizeof(body) - 1;
    if (status < 500)
        host->log(host, SN_LOG_WARN, "%d: %s (request %s)", status, why, rid);
    host->req_reply(req, status, "text/plain; charset=utf-8", body, (size_t)n);
}

static int authorized(rw_in_t *in, sn_route_req_t *req)
{
    if (!in->token && !in->basic)
        return 1;
    const char *auth = in->host->req_header(req, "Authorization");
    if (!auth)
        return 0;
    if (in->token)
        return starts_with_ci(auth, "Bearer ") && secret_eq(in->token, auth + 7);
    return starts_with_ci(auth, "Basic ") && secret_eq(in->basic, auth + 6);
}

/* 0 when the headers describe remote write 1.0 (or say nothing), else the phrase for 415. */
static const char *unsupported(rw_in_t *in, sn_route_req_t *req)
{
    const sn_host_t *host = in->host;
    const char *enc = host->req_header(req, "Content-Encoding");
    if (enc && strcmp(enc, "snappy") != 0)
        return "Content-Encoding must be snappy (block format)";
    const char *ct = host->req_header(req, "Content-Type");
    if (ct && !starts_with_ci(ct, "application/x-protobuf"))
        return "Content-Type must be application/x-protobuf";
    if (ct && strstr(ct, "io.prometheus.write.v2"))
        return "remote write 2.0 is not served: use protobuf_message prometheus.WriteRequest";
    const char *ver = host->req_header(req, "X-Prometheus-Remote-Write-Version");
    if (ver && !(ver[0] == '0' && ver[1] == '.') && !(ver[0] == '1' && ver[1] == '.'))
        return "X-Prometheus-Remote-Write-Version must be 0.1.0 (remote write 1.0)";
    return NULL;
}

static void rw_write(void *self, sn_route_req_t *req)
{
    rw_in_t *in = self;
    const sn_host_t *host = in->host;
    const char *rid = host->req_header(req, "X-Request-ID");
    if (!rid)
        rid = "-";
    char why[240];
    in->requests++;
    if (!authorized(in, req)) {
        reply(in, req, 401, rid, "missing or wrong credentials");
        return;
    }
    const char *unsup = unsupported(in, req);
    if (unsup) {
        reply(in, req, 415, rid, unsup);
        return;
    }

    size_t clen = 0, ulen = 0;
    const char *body = host->req_body(req, &clen);
    if (!body || snappy_uncompressed_length(body, clen, &ulen) != SNAPPY_OK) {
        reply(in, req, 400, rid, "body is not snappy (block format)");
        return;
    }
    if (ulen > in->max_decompressed) {
        snprintf(why, sizeof(why), "decompressed length %zu is over max_decompressed (%zu bytes)",
                 ulen, in->max_decompressed);
        reply(in, req, 413, rid, why);
        return;
    }
    if (buf_reserve(&in->raw, ulen ? ulen : 1, in->max_decompressed + 1) != 0) {
        reply(in, req, 500, rid, "out of memory");
        return;
    }
    size_t got = in->raw.cap;
    if (snappy_uncompress(body, clen, in->raw.p, &got) != SNAPPY_OK || got != ulen) {
        buf_trim(&in->raw);
        reply(in, req, 400, rid, "body is not valid snappy (block format)");
        return;
    }

    rw_req_t r = {.in = in, .out = &in->out};
    in->out.len = 0;
    int drc = decode_request(&r, in->raw.p, ulen);
    buf_trim(&in->raw);
    if (drc != 0) {
        buf_trim(&in->out);
        reply(in, req, r.status ? r.status : 400, rid, r.why);
        return;
    }
    count(in, "input_remote_write_samples_received_total",
          "Samples in decoded write requests (retried requests count again)", (double)r.received);

    int n = 0;
    if (r.lines) {
        char origin[160];
        snprintf(origin, sizeof(origin), "%s request %s", host->instance ? host->instance : "input",
                 rid);
        n = host->emit_lines(host, in->out.p, in->out.len, origin);
    }
    buf_trim(&in->out);
    if (n < 0) {
        if (n == SN_EAGAIN || n == SN_ENOTSUP) {
            in->busy++;
            int64_t now = host->mono_ms(host);
            if (in->last_busy_log == 0 || now - in->last_busy_log >= RW_LOG_EVERY_MS) {
                in->last_busy_log = now;
                host->log(host, SN_LOG_WARN,
                          "503: queues full, nothing of %zu samples taken; Prometheus retries "
                          "(%lu such answers so far)",
                          r.lines, in->busy);
            }
            reply(in, req, 503, rid, "queues full, nothing taken: retry");
        } else {
            host->log(host, SN_LOG_ERROR, "500: ingest failed (%d) for %zu samples (request %s)", n,
                      r.lines, rid);
            reply(in, req, 500, rid, "ingest failed, nothing taken: retry");
        }
        return;
    }
    size_t rejected = r.lines > (size_t)n ? r.lines - (size_t)n : 0;
    in->accepted += (unsigned long)n;
    count(in, "input_remote_write_samples_accepted_total", "Samples taken by the pipeline",
          (double)n);
    count(in, "input_remote_write_samples_stale_total",
          "Stale markers (series ended), skipped without a point", (double)r.stale);
    count(in, "input_remote_write_samples_nonfinite_total",
          "NaN or infinite sample values, skipped", (double)r.nonfinite);
    count(in, "input_remote_write_samples_rejected_total",
          "Samples the core refused (bad name, too many or too long labels)", (double)rejected);
    count(in, "input_remote_write_samples_skipped_total",
          "Samples not taken for any reason (stale, non-finite, refused)",
          (double)(r.stale + r.nonfinite + rejected));
    reply(in, req, 204, rid, NULL);
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static int rw_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    const char *user = host->cfg_str(cfg, "username");
    const char *pass = host->cfg_str(cfg, "password");
    const char *token = host->cfg_str(cfg, "token");
    int64_t maxd = host->cfg_int(cfg, "max_decompressed");
    int64_t maxj = host->cfg_int(cfg, "max_json");
    if (token && !*token)
        token = NULL;
    if ((user && *user) != (pass && *pass)) {
        snprintf(err->msg, sizeof(err->msg), "username and password go together");
        return SN_EINVAL;
    }
    if (token && user && *user) {
        snprintf(err->msg, sizeof(err->msg), "set either token or username/password, not both");
        return SN_EINVAL;
    }
    if (maxd < 1024 || maxj < 1024) {
        snprintf(err->msg, sizeof(err->msg), "%s must be at least 1k",
                 maxd < 1024 ? "max_decompressed" : "max_json");
        return SN_EINVAL;
    }
    rw_in_t *in = calloc(1, sizeof(*in));
    if (!in) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    in->host = host;
    in->token = token;
    in->max_decompressed = (size_t)maxd;
    in->max_json = (size_t)maxj;
    if (user && *user) {
        size_t lu = strlen(user), lp = strlen(pass);
        char *pair = malloc(lu + lp + 2);
        if (pair) {
            memcpy(pair, user, lu);
            pair[lu] = ':';
            memcpy(pair + lu + 1, pass, lp + 1);
            in->basic = b64(pair, lu + lp + 1);
            memset(pair, 0, lu + lp + 1);
            free(pair);
        }
        if (!in->basic) {
            free(in);
            snprintf(err->msg, sizeof(err->msg), "out of memory");
            return SN_ENOMEM;
        }
    }
    *self = in;
    return 0;
}

static int rw_start(void *self)
{
    rw_in_t *in = self;
    if (!SN_HOST_HAS(in->host, route_add))
        return SN_ENOTSUP;
    int rc = in->host->route_add(in->host, "POST", "api/v1/write", rw_write, in);
    if (rc == SN_ENOTSUP) {
        in->host->log(in->host, SN_LOG_WARN, "HTTP API disabled: no route registered");
        return 0;
    }
    return rc;
}

static void rw_destroy(void *self)
{
    rw_in_t *in = self;
    if (!in)
        return;
    if (in->basic) {
        memset(in->basic, 0, strlen(in->basic));
        free(in->basic);
    }
    free(in->raw.p);
    free(in->out.p);
    free(in);
}

static int rw_health(void *self, sn_health_t *out)
{
    rw_in_t *in = self;
    out->ok = 1;
    snprintf(out->detail, sizeof(out->detail),
             "%lu requests, %lu samples accepted, %lu requests refused (%lu for backpressure)",
             in->requests, in->accepted, in->refused, in->busy);
    return 0;
}

static const sn_input_ops_t rw_ops = {.struct_size = sizeof(sn_input_ops_t)};

static const sn_plugin_t rw_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_INPUT,
    .type = "prometheus_remote_write",
    .version = "1.0.0",
    .summary = "Prometheus remote write 1.0 receiver at POST /hooks/<instance>/api/v1/write",
    .params = rw_params,
    .create = rw_create,
    .start = rw_start,
    .destroy = rw_destroy,
    .health = rw_health,
    .ops = &rw_ops,
};

SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &rw_plugin;
}
