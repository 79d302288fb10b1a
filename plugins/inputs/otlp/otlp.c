/**
 * @file otlp.c
 * Input `otlp`: OpenTelemetry metrics pushed over OTLP/HTTP with the JSON encoding, served at
 * POST /hooks/<instance>/v1/metrics (an OpenTelemetry Collector `otlphttp` exporter with
 * `encoding: json` and `metrics_endpoint` pointing there).
 *
 * The body is an ExportMetricsServiceRequest. Gauge and sum data points become points in the
 * core's ingest format: metric = the metric name (sanitised to the core's charset), ts = the
 * data point's timeUnixNano in milliseconds, labels = resource attributes, optionally scope
 * attributes, then data point attributes (later ones win), with `service.name`, `host.name`
 * and `k8s.deployment.name` renamed to the labels correlation groups by (service, host,
 * deployment) and other keys sanitised (dots to underscores). Histograms, exponential
 * histograms and summaries are rejected (reported in partialSuccess) or, with
 * histograms = count_sum, become <name>_count and <name>_sum points.
 *
 * One request is one host->emit_lines call, so backpressure (SN_EAGAIN -> 503) takes nothing
 * and the sender's retry cannot duplicate. Structural errors answer 400 with the field path
 * (resourceMetrics[0].scopeMetrics[1].metrics[2].gauge.dataPoints[0].timeUnixNano); points that
 * are well-formed but unusable (no value, NaN, no time, too many labels) are rejected one by one
 * and counted in partialSuccess. Every body is bounded: the core's max_body on the wire,
 * max_decompressed after gzip, max_points data points per request.
 */
#include "strbuf.h"

#include <sentinel/plugin.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#ifdef OTLP_HAVE_ZLIB
#include <zlib.h>
#endif

/* What the core's ingest accepts (core/ingest.c defaults): a point with more labels or a longer
 * label value would be refused there, so both are enforced here first with a precise reason. */
#define OT_MAX_LABELS 32
#define OT_MAX_VALUE 256
#define OT_MAX_METRIC 200
#define OT_MAX_LABEL_NAME 128
/** Reasons quoted in partialSuccess.errorMessage; the rest are counted only. */
#define OT_MAX_NOTES 3

/* gRPC status codes for the google.rpc.Status body OTLP/HTTP error responses carry. */
#define OT_INVALID_ARGUMENT 3
#define OT_INTERNAL 13
#define OT_UNAVAILABLE 14
#define OT_UNAUTHENTICATED 16

typedef struct ot_rename {
    char *from;
    char *to;
} ot_rename_t;

typedef struct otlp {
    const sn_host_t *host;
    const char *token; /* owned by the host's cfg */
    int64_t max_points;
    int64_t max_decompressed;
    int count_sum;
    int scope_labels;
    int res_all;                  /* every resource attribute becomes a label */
    const char *const *res_attrs; /* else only these (host-owned list) */
    ot_rename_t *renames;
    size_t nrenames;
    unsigned long accepted, rejected, refused;
} otlp_t;

static const sn_param_t ot_params[] = {
    {"token", SN_T_STRING, NULL, SN_PARAM_SECRET,
     "bearer token senders must present (use ${env:NAME} or ${file:/path}); none = open, for "
     "loopback setups"},
    {"max_points", SN_T_INT, "20000", 0,
     "data points one request may carry (all metric types); more is refused with 413"},
    {"max_decompressed", SN_T_SIZE, "32m", 0,
     "largest body after gzip/deflate decompression; more is refused with 413"},
    {"histograms", SN_T_STRING, "skip", 0,
     "skip: histogram, exponential histogram and summary data points are rejected (reported in "
     "partialSuccess); count_sum: each becomes <name>_count and <name>_sum points"},
    {"scope_labels", SN_T_BOOL, "false", 0,
     "also label points with otel_scope_name, otel_scope_version and the scope's attributes"},
    {"resource_attributes", SN_T_LIST, "*", 0,
     "resource attributes (original keys) kept as labels; * keeps all"},
    {"rename", SN_T_LIST, "service.name=service,host.name=host,k8s.deployment.name=deployment", 0,
     "attribute=label renames applied to resource, scope and data point attributes; other keys "
     "have every character outside [A-Za-z0-9_] replaced by _"},
    {NULL, 0, NULL, 0, NULL},
};

/* ---- small helpers ------------------------------------------------------------------------ */

/* json_dump_callback's writer into a snp_buf_t. */
static int sbuf_add(const char *s, size_t len, void *arg)
{
    snp_buf_t *b = arg;
    snp_buf_add(b, s, len);
    return b->oom ? -1 : 0;
}

/* Constant time over the presented length so a prefix match is not observable. */
static int ot_token_ok(const char *want, const char *got)
{
    size_t lw = strlen(want), lg = strlen(got);
    unsigned char diff = (unsigned char)(lw != lg);
    for (size_t i = 0; i < lg; i++)
        diff |= (unsigned char)(got[i] ^ (i < lw ? want[i] : 0));
    return diff == 0;
}

/* "application/json; charset=utf-8" is application/json. */
static int media_is(const char *ct, const char *want)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strlen(want);
    if (strncasecmp(ct, want, n) != 0)
        return 0;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t';
}

static int is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* A label name the core accepts: [A-Za-z_][A-Za-z0-9_]*. Returns 0, or -1 when empty or too
 * long. */
static int label_name(const char *key, char *out, size_t cap)
{
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        if (k == 0 && is_digit(*p))
            out[k++] = '_';
        if (k + 1 >= cap)
            return -1;
        out[k++] = (char)(is_alpha(*p) || is_digit(*p) ? *p : '_');
    }
    out[k] = '\0';
    return k ? 0 : -1;
}

/* A metric name the core accepts: [A-Za-z_:][A-Za-z0-9_:.]*, at most OT_MAX_METRIC bytes with
 * @p suffix. Returns 0, -1 when empty, -2 when too long. */
static int metric_name(const char *name, const char *suffix, char *out, size_t cap)
{
    size_t k = 0, room = cap - 1 < OT_MAX_METRIC ? cap - 1 : OT_MAX_METRIC;
    if (!*name)
        return -1;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        int first = is_alpha(*p) || *p == ':';
        int rest = is_digit(*p) || *p == '.';
        if (k == 0 && rest)
            out[k++] = '_';
        if (k >= room)
            return -2;
        out[k++] = (char)(first || rest ? *p : '_');
    }
    size_t sl = strlen(suffix);
    if (k + sl > room)
        return -2;
    memcpy(out + k, suffix, sl + 1);
    return 0;
}

/* Proto3 JSON: a uint64 is a string of digits or a number. */
static int parse_u64(json_t *v, uint64_t *out)
{
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0)
            return -1;
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= 0 && d < 1.8e19) || d != floor(d))
            return -1;
        *out = (uint64_t)d;
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!is_digit((unsigned char)s[i]))
            return -1;
    errno = 0;
    unsigned long long u = strtoull(s, NULL, 10);
    if (errno == ERANGE)
        return -1;
    *out = (uint64_t)u;
    return 0;
}

/* Proto3 JSON: an int64 is a decimal string or a number. */
static int parse_i64(json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= -9.2e18 && d <= 9.2e18) || d != floor(d))
            return -1;
        *out = (int64_t)d;
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v), i = s[0] == '-' ? 1 : 0;
    if (n == i || n - i > 19)
        return -1;
    for (; i < n; i++)
        if (!is_digit((unsigned char)s[i]))
            return -1;
    errno = 0;
    long long x = strtoll(s, NULL, 10);
    if (errno == ERANGE)
        return -1;
    *out = (int64_t)x;
    return 0;
}

/* Proto3 JSON: a double is a number, "NaN", "Infinity", "-Infinity" or a number as text. */
static int parse_double(json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    if (strcmp(s, "NaN") == 0) {
        *out = NAN;
        return 0;
    }
    if (strcmp(s, "Infinity") == 0 || strcmp(s, "-Infinity") == 0) {
        *out = s[0] == '-' ? -INFINITY : INFINITY;
        return 0;
    }
    if (!*s || strspn(s, "0123456789+-.eE") != json_string_length(v))
        return -1;
    char *end = NULL;
    *out = strtod(s, &end);
    return end && *end == '\0' ? 0 : -1;
}

/* The shortest text that reads back as @p d. */
static void fmt_double(double d, char *buf, size_t n)
{
    if (isnan(d)) {
        snprintf(buf, n, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, n, "%s", d < 0 ? "-Infinity" : "Infinity");
        return;
    }
    if (d == floor(d) && fabs(d) < 1e15) {
        snprintf(buf, n, "%.0f", d);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

/* ---- one request -------------------------------------------------------------------------- */

typedef struct ot_req {
    otlp_t *o;
    char path[512]; /* where the walk is, e.g. resourceMetrics[0].scopeMetrics[1] */
    size_t plen;
    char err[1024];
    int status; /* 0, or 400/413/500 when the walk was abandoned */
    snp_buf_t out;
    size_t lines;
    size_t received, rejected, skipped, attrs_skipped;
    char notes[OT_MAX_NOTES][720];
    size_t nnotes;
} ot_req_t;

/* Append a segment ("name" or "[3]") to the path; returns the length to restore. */
static size_t path_push(ot_req_t *r, const char *fmt, ...) SN_PRINTF(2, 3);
static size_t path_push(ot_req_t *r, const char *fmt, ...)
{
    size_t old = r->plen;
    size_t cap = sizeof(r->path);
    if (r->plen + 2 >= cap)
        return old;
    if (r->plen && fmt[0] != '[')
        r->path[r->plen++] = '.';
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(r->path + r->plen, cap - r->plen, fmt, ap);
    va_end(ap);
    if (w > 0)
        r->plen = r->plen + (size_t)w < cap ? r->plen + (size_t)w : cap - 1;
    r->path[r->plen] = '\0';
    return old;
}

static void path_pop(ot_req_t *r, size_t old)
{
    r->plen = old;
    r->path[old] = '\0';
}

/* A structural error: the whole request is refused with 400 naming path.field. */
static int bad(ot_req_t *r, const char *field, const char *what)
{
    if (field)
        snprintf(r->err, sizeof(r->err), "%s%s%s: %s", r->path, r->plen ? "." : "", field, what);
    else
        snprintf(r->err, sizeof(r->err), "%s: %s", r->plen ? r->path : "body", what);
    r->status = 400;
    return -1;
}

/* @p n well-formed data points at the current path are not taken; the first few reasons are
 * quoted in partialSuccess. */
static void reject(ot_req_t *r, size_t n, const char *fmt, ...) SN_PRINTF(3, 4);
static void reject(ot_req_t *r, size_t n, const char *fmt, ...)
{
    r->rejected += n;
    if (r->nnotes >= OT_MAX_NOTES)
        return;
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(r->notes[r->nnotes++], sizeof(r->notes[0]), "%s: %s", r->path, what);
}

static int ot_renamed(const otlp_t *o, const char *key, char *out, size_t cap)
{
    for (size_t i = 0; i < o->nrenames; i++)
        if (strcmp(o->renames[i].from, key) == 0) {
            snprintf(out, cap, "%s", o->renames[i].to);
            return 1;
        }
    return 0;
}

static int res_attr_kept(const otlp_t *o, const char *key)
{
    if (o->res_all)
        return 1;
    for (size_t i = 0; o->res_attrs && o->res_attrs[i]; i++)
        if (strcmp(o->res_attrs[i], key) == 0)
            return 1;
    return 0;
}

/* An AnyValue as label text. Returns 0 with *text (borrowed from @p val or written to @p num),
 * 1 when the kind cannot be a label (arrays, kvlists, bytes, empty), -1 on a structural error.
 * The path points at the value. */
static int any_value(ot_req_t *r, json_t *val, char *num, size_t numlen, const char **text)
{
    json_t *x;
    if (!json_is_object(val))
        return bad(r, NULL, "not an object");
    if ((x = json_object_get(val, "stringValue"))) {
        if (!json_is_string(x))
            return bad(r, "stringValue", "not a string");
        *text = json_string_value(x);
        return 0;
    }
    if ((x = json_object_get(val, "boolValue"))) {
        if (!json_is_boolean(x))
            return bad(r, "boolValue", "not true or false");
        *text = json_is_true(x) ? "true" : "false";
        return 0;
    }
    if ((x = json_object_get(val, "intValue"))) {
        int64_t i;
        if (parse_i64(x, &i) != 0)
            return bad(r, "intValue", "not a 64-bit integer (a decimal string or a number)");
        snprintf(num, numlen, "%lld", (long long)i);
        *text = num;
        return 0;
    }
    if ((x = json_object_get(val, "doubleValue"))) {
        double d;
        if (parse_double(x, &d) != 0)
            return bad(r, "doubleValue", "not a number");
        fmt_double(d, num, numlen);
        *text = num;
        return 0;
    }
    return 1;
}

/* Add the "attributes" of @p parent to @p labels (later keys replace earlier ones). */
static int put_attrs(ot_req_t *r, json_t *parent, json_t *labels, int resource)
{
    json_t *attrs = json_object_get(parent, "attributes");
    if (!attrs || json_is_null(attrs))
        return 0;
    if (!json_is_array(attrs))
        return bad(r, "attributes", "not an array");
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a)
    {
        size_t p0 = path_push(r, "attributes[%zu]", i);
        if (!json_is_object(a))
            return bad(r, NULL, "not an object");
        json_t *key = json_object_get(a, "key");
        if (key && !json_is_string(key))
            return bad(r, "key", "not a string");
        json_t *val = json_object_get(a, "value");
        const char *k = key ? json_string_value(key) : "";
        if (resource && !res_attr_kept(r->o, k)) {
            path_pop(r, p0);
            continue;
        }
        char num[40], name[OT_MAX_LABEL_NAME + 1];
        const char *text = NULL;
        int rc = 1;
        if (val && !json_is_null(val)) {
            size_t p1 = path_push(r, "value");
            rc = any_value(r, val, num, sizeof(num), &text);
            if (rc < 0)
                return -1;
            path_pop(r, p1);
        }
        path_pop(r, p0);
        if (rc == 1 ||
            (!ot_renamed(r->o, k, name, sizeof(name)) && label_name(k, name, sizeof(name)) != 0)) {
            r->attrs_skipped++;
            continue;
        }
        if (strlen(text) > OT_MAX_VALUE) {
            r->attrs_skipped++;
            continue;
        }
        json_object_set_new(labels, name, json_string(text));
    }
    return 0;
}

/* The data point's time in epoch ms: 0 when missing or zero (rejected by the caller), -1 on a
 * structural error. */
static int point_time(ot_req_t *r, json_t *dp, int64_t *ms)
{
    json_t *t = json_object_get(dp, "timeUnixNano");
    uint64_t ns = 0;
    if (t && !json_is_null(t) && parse_u64(t, &ns) != 0)
        return bad(r, "timeUnixNano",
                   "not an unsigned 64-bit integer (a string of digits or "
                   "a number) of nanoseconds");
    *ms = (int64_t)(ns / 1000000u);
    return 0;
}

/* Skip data points flagged FLAG_NO_RECORDED_VALUE (bit 0): they mark absence, not a value. */
static int point_flags(ot_req_t *r, json_t *dp, int *no_value)
{
    json_t *f = json_object_get(dp, "flags");
    uint64_t flags = 0;
    if (f && !json_is_null(f) && parse_u64(f, &flags) != 0)
        return bad(r, "flags", "not an unsigned integer");
    *no_value = (flags & 1u) != 0;
    return 0;
}

static int emit_point(ot_req_t *r, int64_t ms, const char *metric, double v, json_t *labels)
{
    json_t *o = json_pack("{s:I,s:s,s:f,s:O}", "ts", (json_int_t)ms, "metric", metric, "value", v,
                          "labels", labels);
    if (!o || json_dump_callback(o, sbuf_add, &r->out, JSON_COMPACT) != 0 ||
        sbuf_add("\n", 1, &r->out) != 0) {
        json_decref(o);
        snprintf(r->err, sizeof(r->err), "out of memory");
        r->status = 500;
        return -1;
    }
    json_decref(o);
    r->lines++;
    return 0;
}

/* Labels for one data point: @p base plus its attributes. NULL with r->status set on error. */
static json_t *point_labels(ot_req_t *r, json_t *dp, json_t *base)
{
    json_t *pl = json_copy(base);
    if (!pl) {
        snprintf(r->err, sizeof(r->err), "out of memory");
        r->status = 500;
        return NULL;
    }
    if (put_attrs(r, dp, pl, 0) != 0) {
        json_decref(pl);
        return NULL;
    }
    return pl;
}

/* A gauge or sum NumberDataPoint. The path points at the data point. */
static int number_point(ot_req_t *r, json_t *dp, const char *metric, json_t *base)
{
    if (!json_is_object(dp))
        return bad(r, NULL, "not an object");
    int no_value;
    int64_t ms;
    if (point_flags(r, dp, &no_value) != 0 || point_time(r, dp, &ms) != 0)
        return -1;
    json_t *ad = json_object_get(dp, "asDouble"), *ai = json_object_get(dp, "asInt");
    ad = json_is_null(ad) ? NULL : ad;
    ai = json_is_null(ai) ? NULL : ai;
    double v = 0;
    if (ad && ai)
        return bad(r, NULL, "has both asDouble and asInt");
    if (ad && parse_double(ad, &v) != 0)
        return bad(r, "asDouble", "not a number");
    if (ai) {
        int64_t i;
        if (parse_i64(ai, &i) != 0)
            return bad(r, "asInt", "not a 64-bit integer (a decimal string or a number)");
        v = (double)i;
    }
    json_t *pl = point_labels(r, dp, base);
    if (!pl)
        return -1;
    int rc = 0;
    if (no_value)
        r->skipped++;
    else if (!ad && !ai)
        reject(r, 1, "no asDouble or asInt");
    else if (!isfinite(v))
        reject(r, 1, "asDouble is not a finite number");
    else if (ms == 0)
        reject(r, 1, "timeUnixNano missing or zero");
    else if (json_object_size(pl) > OT_MAX_LABELS)
        reject(r, 1, "%zu labels, more than %d (narrow resource_attributes)", json_object_size(pl),
               OT_MAX_LABELS);
    else
        rc = emit_point(r, ms, metric, v, pl);
    json_decref(pl);
    return rc;
}

/* A histogram, exponential histogram or summary data point as <name>_count and <name>_sum. */
static int count_sum_point(ot_req_t *r, json_t *dp, const char *kind, const char *mcount,
                           const char *msum, json_t *base)
{
    if (!json_is_object(dp))
        return bad(r, NULL, "not an object");
    int no_value;
    int64_t ms;
    if (point_flags(r, dp, &no_value) != 0 || point_time(r, dp, &ms) != 0)
        return -1;
    json_t *c = json_object_get(dp, "count"), *s = json_object_get(dp, "sum");
    uint64_t count = 0;
    double sum = 0;
    if (c && !json_is_null(c) && parse_u64(c, &count) != 0)
        return bad(r, "count", "not an unsigned 64-bit integer (a string of digits or a number)");
    if (s && !json_is_null(s) && parse_double(s, &sum) != 0)
        return bad(r, "sum", "not a number");
    /* A summary's sum is a plain proto3 double (absent = 0); the histograms' is optional. */
    int has_sum = (s && !json_is_null(s)) || strcmp(kind, "summary") == 0;
    json_t *pl = point_labels(r, dp, base);
    if (!pl)
        return -1;
    int rc = 0;
    if (no_value)
        r->skipped++;
    else if (ms == 0)
        reject(r, 1, "timeUnixNano missing or zero");
    else if (json_object_size(pl) > OT_MAX_LABELS)
        reject(r, 1, "%zu labels, more than %d (narrow resource_attributes)", json_object_size(pl),
               OT_MAX_LABELS);
    else {
        rc = emit_point(r, ms, mcount, (double)count, pl);
        if (rc == 0 && has_sum && isfinite(sum))
            rc = emit_point(r, ms, msum, sum, pl);
    }
    json_decref(pl);
    return rc;
}

static const char *const ot_kinds[] = {"gauge",   "sum", "histogram", "exponentialHistogram",
                                       "summary", NULL};

/* One entry of metrics[]. The path points at it. */
static int one_metric(ot_req_t *r, json_t *m, json_t *base)
{
    if (!json_is_object(m))
        return bad(r, NULL, "not an object");
    json_t *jn = json_object_get(m, "name");
    if (jn && !json_is_null(jn) && !json_is_string(jn))
        return bad(r, "name", "not a string");
    const char *name = json_is_string(jn) ? json_string_value(jn) : "";
    const char *kind = NULL;
    json_t *data = NULL;
    for (int i = 0; ot_kinds[i]; i++) {
        json_t *d = json_object_get(m, ot_kinds[i]);
        if (!d || json_is_null(d))
            continue;
        if (data)
            return bad(r, NULL,
                       "has more than one of gauge, sum, histogram, "
                       "exponentialHistogram, summary");
        data = d;
        kind = ot_kinds[i];
    }
    if (!data)
        return 0; /* a metric without data carries no points */
    size_t p0 = path_push(r, "%s", kind);
    if (!json_is_object(data))
        return bad(r, NULL, "not an object");
    json_t *dps = json_object_get(data, "dataPoints");
    if (!dps || json_is_null(dps)) {
        path_pop(r, p0);
        return 0;
    }
    if (!json_is_array(dps))
        return bad(r, "dataPoints", "not an array");
    size_t n = json_array_size(dps);
    r->received += n;
    if ((int64_t)r->received > r->o->max_points) {
        snprintf(r->err, sizeof(r->err),
                 "more than max_points (%lld) data points in one request: send smaller batches",
                 (long long)r->o->max_points);
        r->status = 413;
        return -1;
    }
    if (n == 0) {
        path_pop(r, p0);
        return 0;
    }
    int number = strcmp(kind, "gauge") == 0 || strcmp(kind, "sum") == 0;
    if (!number && !r->o->count_sum) {
        reject(r, n, "%s data points are not ingested (histograms = skip)", kind);
        path_pop(r, p0);
        return 0;
    }
    char mname[OT_MAX_METRIC + 1], msum[OT_MAX_METRIC + 1];
    int nrc = metric_name(name, number ? "" : "_count", mname, sizeof(mname));
    if (nrc == 0 && !number)
        nrc = metric_name(name, "_sum", msum, sizeof(msum));
    if (nrc != 0) {
        if (nrc == -1)
            reject(r, n, "metric without a name");
        else
            reject(r, n, "metric name longer than %d characters once sanitised", OT_MAX_METRIC);
        path_pop(r, p0);
        return 0;
    }
    size_t i;
    json_t *dp;
    json_array_foreach(dps, i, dp)
    {
        size_t p1 = path_push(r, "dataPoints[%zu]", i);
        int rc = number ? number_point(r, dp, mname, base)
                        : count_sum_point(r, dp, kind, mname, msum, base);
        if (rc != 0)
            return -1;
        path_pop(r, p1);
    }
    path_pop(r, p0);
    return 0;
}

static int scope_metrics(ot_req_t *r, json_t *sm, json_t *res_labels)
{
    if (!json_is_object(sm))
        return bad(r, NULL, "not an object");
    json_t *scope = json_object_get(sm, "scope");
    if (scope && !json_is_null(scope) && !json_is_object(scope))
        return bad(r, "scope", "not an object");
    json_t *metrics = json_object_get(sm, "metrics");
    if (metrics && !json_is_null(metrics) && !json_is_array(metrics))
        return bad(r, "metrics", "not an array");
    json_t *base = json_copy(res_labels);
    if (!base) {
        r->status = 500;
        snprintf(r->err, sizeof(r->err), "out of memory");
        return -1;
    }
    int rc = 0;
    if (r->o->scope_labels && json_is_object(scope)) {
        size_t p0 = path_push(r, "scope");
        const char *fields[][2] = {{"name", "otel_scope_name"}, {"version", "otel_scope_version"}};
        for (size_t i = 0; i < 2 && rc == 0; i++) {
            json_t *v = json_object_get(scope, fields[i][0]);
            if (v && !json_is_null(v) && !json_is_string(v))
                rc = bad(r, fields[i][0], "not a string");
            else if (json_is_string(v) && json_string_length(v) > 0 &&
                     json_string_length(v) <= OT_MAX_VALUE)
                json_object_set(base, fields[i][1], v);
        }
        if (rc == 0)
            rc = put_attrs(r, scope, base, 0);
        if (rc == 0)
            path_pop(r, p0);
    }
    size_t k;
    json_t *m;
    if (rc == 0 && json_is_array(metrics))
        json_array_foreach(metrics, k, m)
        {
            size_t p1 = path_push(r, "metrics[%zu]", k);
            if ((rc = one_metric(r, m, base)) != 0)
                break;
            path_pop(r, p1);
        }
    json_decref(base);
    return rc;
}

static int resource_metrics(ot_req_t *r, json_t *rm)
{
    if (!json_is_object(rm))
        return bad(r, NULL, "not an object");
    json_t *res = json_object_get(rm, "resource");
    if (res && !json_is_null(res) && !json_is_object(res))
        return bad(r, "resource", "not an object");
    json_t *sms = json_object_get(rm, "scopeMetrics");
    if (sms && !json_is_null(sms) && !json_is_array(sms))
        return bad(r, "scopeMetrics", "not an array");
    json_t *labels = json_object();
    if (!labels) {
        r->status = 500;
        snprintf(r->err, sizeof(r->err), "out of memory");
        return -1;
    }
    int rc = 0;
    if (json_is_object(res)) {
        size_t p0 = path_push(r, "resource");
        rc = put_attrs(r, res, labels, 1);
        if (rc == 0)
            path_pop(r, p0);
    }
    size_t j;
    json_t *sm;
    if (rc == 0 && json_is_array(sms))
        json_array_foreach(sms, j, sm)
        {
            size_t p1 = path_push(r, "scopeMetrics[%zu]", j);
            if ((rc = scope_metrics(r, sm, labels)) != 0)
                break;
            path_pop(r, p1);
        }
    json_decref(labels);
    return rc;
}

static int walk(ot_req_t *r, json_t *doc)
{
    if (!json_is_object(doc))
        return bad(r, NULL, "not a JSON object (an ExportMetricsServiceRequest)");
    json_t *rms = json_object_get(doc, "resourceMetrics");
    if (!rms || json_is_null(rms))
        return 0;
    if (!json_is_array(rms))
        return bad(r, "resourceMetrics", "not an array");
    size_t i;
    json_t *rm;
    json_array_foreach(rms, i, rm)
    {
        size_t p0 = path_push(r, "resourceMetrics[%zu]", i);
        if (resource_metrics(r, rm) != 0)
            return -1;
        path_pop(r, p0);
    }
    return 0;
}

/* ---- decompression ------------------------------------------------------------------------ */

#ifdef OTLP_HAVE_ZLIB
/* Inflate @p in into *out (malloc'd), at most @p max bytes. Returns 0, 400 (corrupt or
 * truncated), 413 (over max) or 500. */
static int ot_inflate(const char *in, size_t len, int gzip, size_t max, char **out, size_t *outlen,
                      const char **why)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    *out = NULL;
    if (len > UINT_MAX) {
        *why = "compressed body too large";
        return 413;
    }
    if (inflateInit2(&zs, gzip ? 16 + MAX_WBITS : 32 + MAX_WBITS) != Z_OK) {
        *why = "cannot start decompression";
        return 500;
    }
    size_t cap = len < 16384 ? 65536 : len * 4;
    if (cap > max + 1)
        cap = max + 1;
    char *buf = malloc(cap);
    size_t used = 0;
    int res = 0;
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    for (;;) {
        if (!buf) {
            res = 500;
            *why = "out of memory";
            break;
        }
        if (used == cap) {
            if (cap > max) {
                res = 413;
                break;
            }
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                res = 500;
                *why = "out of memory";
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t room = cap - used > UINT_MAX ? UINT_MAX : cap - used;
        zs.next_out = (Bytef *)buf + used;
        zs.avail_out = (uInt)room;
        int zr = inflate(&zs, Z_NO_FLUSH);
        used += room - zs.avail_out;
        if (zr == Z_STREAM_END)
            break;
        if (zr == Z_OK || (zr == Z_BUF_ERROR && used == cap))
            continue;
        res = zr == Z_MEM_ERROR ? 500 : 400;
        *why = zr == Z_MEM_ERROR ? "out of memory" : "compressed body is corrupt or truncated";
        break;
    }
    if (res == 0 && used > max)
        res = 413;
    if (res == 0 && zs.avail_in != 0) {
        res = 400;
        *why = "data after the end of the compressed stream";
    }
    if (res == 413)
        *why = "body decompresses to more than max_decompressed";
    inflateEnd(&zs);
    if (res != 0) {
        free(buf);
        return res;
    }
    *out = buf;
    *outlen = used;
    return 0;
}
#endif

/* ---- the route ---------------------------------------------------------------------------- */

static void ot_count_status(otlp_t *o, int status)
{
    char name[64], help[64];
    snprintf(name, sizeof(name), "input_otlp_requests_%d_total", status);
    snprintf(help, sizeof(help), "OTLP export requests answered %d", status);
    o->host->metric(o->host, SN_METRIC_COUNTER, name, help, 1);
}

static void ot_send(otlp_t *o, sn_route_req_t *req, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    static const char fallback[] = "{}";
    o->host->req_reply(req, status, "application/json", text ? text : fallback,
                       text ? strlen(text) : sizeof(fallback) - 1);
    free(text);
    json_decref(body);
    ot_count_status(o, status);
}

/* An OTLP/HTTP error answer: a google.rpc.Status {code, message}. */
static void ot_fail(otlp_t *o, sn_route_req_t *req, const char *rid, int status, int code,
                    const char *msg)
{
    char full[1200];
    if (rid)
        snprintf(full, sizeof(full), "%s (request %.64s)", msg, rid);
    else
        snprintf(full, sizeof(full), "%s", msg);
    o->refused++;
    o->host->log(o->host, status >= 500 ? SN_LOG_INFO : SN_LOG_WARN, "refused with %d: %s", status,
                 full);
    ot_send(o, req, status, json_pack("{s:i,s:s}", "code", code, "message", full));
}

static void ot_metrics(void *self, sn_route_req_t *req)
{
    otlp_t *o = self;
    const sn_host_t *host = o->host;
    const char *rid = host->req_header(req, "X-Request-ID");
    if (o->token) {
        const char *auth = host->req_header(req, "Authorization");
        if (!auth || strncmp(auth, "Bearer ", 7) != 0 || !ot_token_ok(o->token, auth + 7)) {
            ot_fail(o, req, rid, 401, OT_UNAUTHENTICATED, "missing or wrong bearer token");
            return;
        }
    }
    const char *ct = host->req_header(req, "Content-Type");
    if (!ct || !media_is(ct, "application/json")) {
        char msg[200];
        if (ct && media_is(ct, "application/x-protobuf"))
            snprintf(msg, sizeof(msg),
                     "the protobuf encoding is not supported: configure the "
                     "exporter with encoding: json");
        else
            snprintf(msg, sizeof(msg), "Content-Type must be application/json (got %.40s)",
                     ct ? ct : "none");
        ot_fail(o, req, rid, 415, OT_INVALID_ARGUMENT, msg);
        return;
    }
    size_t len = 0;
    const char *body = host->req_body(req, &len);
    char *inflated = NULL;
    const char *ce = host->req_header(req, "Content-Encoding");
    if (ce && !media_is(ce, "identity")) {
        int gzip = media_is(ce, "gzip") || media_is(ce, "x-gzip");
        if (!gzip && !media_is(ce, "deflate")) {
            char msg[160];
            snprintf(msg, sizeof(msg), "Content-Encoding %.40s is not supported (use gzip or none)",
                     ce);
            ot_fail(o, req, rid, 415, OT_INVALID_ARGUMENT, msg);
            return;
        }
#ifdef OTLP_HAVE_ZLIB
        const char *why = "";
        size_t ilen = 0;
        int st = ot_inflate(body, len, gzip, (size_t)o->max_decompressed, &inflated, &ilen, &why);
        if (st != 0) {
            char msg[200];
            if (st == 413)
                snprintf(msg, sizeof(msg), "%s (%lld bytes)", why, (long long)o->max_decompressed);
            else
                snprintf(msg, sizeof(msg), "%s", why);
            ot_fail(o, req, rid, st, st == 500 ? OT_INTERNAL : OT_INVALID_ARGUMENT, msg);
            return;
        }
        body = inflated;
        len = ilen;
#else
        ot_fail(o, req, rid, 415, OT_INVALID_ARGUMENT,
                "compressed bodies are not supported by this build (no zlib): set the "
                "exporter's compression to none");
        return;
#endif
    }

    json_error_t jerr;
    json_t *doc = json_loadb(body ? body : "", len, 0, &jerr);
    free(inflated);
    if (!doc) {
        char msg[300];
        snprintf(msg, sizeof(msg), "body is not JSON: %.120s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        ot_fail(o, req, rid, 400, OT_INVALID_ARGUMENT, msg);
        return;
    }
    ot_req_t *r = calloc(1, sizeof(*r));
    if (!r) {
        json_decref(doc);
        ot_fail(o, req, rid, 500, OT_INTERNAL, "out of memory");
        return;
    }
    r->o = o;
    walk(r, doc);
    json_decref(doc);
    if (!r->status && r->out.oom) {
        r->status = 500;
        snprintf(r->err, sizeof(r->err), "out of memory");
    }
    if (r->status) {
        ot_fail(o, req, rid, r->status, r->status == 500 ? OT_INTERNAL : OT_INVALID_ARGUMENT,
                r->err);
        goto out;
    }

    /* The whole request in one call: all of it or, under backpressure, none of it. */
    size_t accepted = 0;
    if (r->lines) {
        int n = host->emit_lines(host, r->out.p, r->out.n, host->instance);
        if (n == SN_EAGAIN) {
            ot_fail(o, req, rid, 503, OT_UNAVAILABLE,
                    "ingest queues are full: nothing from this request was taken, retry");
            goto out;
        }
        if (n < 0) {
            ot_fail(o, req, rid, 500, OT_INTERNAL,
                    "ingest failed: nothing from this request was taken");
            goto out;
        }
        accepted = (size_t)n;
    }
    size_t core_rejected = r->lines > accepted ? r->lines - accepted : 0;
    size_t rejected = r->rejected + core_rejected;
    o->accepted += accepted;
    o->rejected += rejected;
    host->metric(host, SN_METRIC_COUNTER, "input_otlp_points_received_total",
                 "OTLP data points received in well-formed requests", (double)r->received);
    host->metric(host, SN_METRIC_COUNTER, "input_otlp_points_accepted_total",
                 "Points from OTLP data points accepted by the ingest", (double)accepted);
    host->metric(host, SN_METRIC_COUNTER, "input_otlp_points_rejected_total",
                 "OTLP data points rejected (reported in partialSuccess)", (double)rejected);
    if (r->skipped)
        host->metric(host, SN_METRIC_COUNTER, "input_otlp_points_skipped_total",
                     "OTLP data points flagged as having no recorded value", (double)r->skipped);
    if (r->attrs_skipped)
        host->metric(host, SN_METRIC_COUNTER, "input_otlp_attributes_skipped_total",
                     "Attributes not usable as labels (arrays, kvlists, bytes, empty, too long)",
                     (double)r->attrs_skipped);
    json_t *resp = json_object();
    if (rejected > 0) {
        snp_buf_t msg = {0};
        char head[160];
        snprintf(head, sizeof(head), "%zu of %zu data points rejected", rejected, r->received);
        sbuf_add(head, strlen(head), &msg);
        for (size_t i = 0; i < r->nnotes; i++) {
            sbuf_add(i ? "; " : ": ", 2, &msg);
            sbuf_add(r->notes[i], strlen(r->notes[i]), &msg);
        }
        if (r->rejected > r->nnotes && r->nnotes == OT_MAX_NOTES)
            sbuf_add("; ...", 5, &msg);
        if (core_rejected) {
            snprintf(head, sizeof(head), "; %zu refused by the ingest (see the daemon log)",
                     core_rejected);
            sbuf_add(head, strlen(head), &msg);
        }
        char count[32];
        snprintf(count, sizeof(count), "%zu", rejected);
        /* int64 as a decimal string, as proto3 JSON renders it. */
        json_object_set_new(resp, "partialSuccess",
                            json_pack("{s:s,s:s}", "rejectedDataPoints", count, "errorMessage",
                                      msg.p ? msg.p : ""));
        host->log(host, SN_LOG_INFO, "request %.64s: %s", rid ? rid : "-", msg.p ? msg.p : "");
        free(msg.p);
    }
    ot_send(o, req, 200, resp);
out:
    free(r->out.p);
    free(r);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static void ot_destroy(void *self)
{
    otlp_t *o = self;
    if (!o)
        return;
    for (size_t i = 0; i < o->nrenames; i++) {
        free(o->renames[i].from);
        free(o->renames[i].to);
    }
    free(o->renames);
    free(o);
}

static int ot_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    otlp_t *o = calloc(1, sizeof(*o));
    if (!o) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    o->host = host;
    o->token = host->cfg_str(cfg, "token");
    o->max_points = host->cfg_int(cfg, "max_points");
    o->max_decompressed = host->cfg_int(cfg, "max_decompressed");
    o->scope_labels = host->cfg_bool(cfg, "scope_labels");
    const char *hist = host->cfg_str(cfg, "histograms");
    int rc = SN_EINVAL;
    if (o->token && !o->token[0]) {
        snprintf(err->msg, sizeof(err->msg), "key 'token': empty (leave it out for no token)");
        goto fail;
    }
    if (o->max_points < 1) {
        snprintf(err->msg, sizeof(err->msg), "key 'max_points': must be at least 1");
        goto fail;
    }
    if (o->max_decompressed < 1024) {
        snprintf(err->msg, sizeof(err->msg), "key 'max_decompressed': must be at least 1k");
        goto fail;
    }
    if (hist && strcmp(hist, "count_sum") == 0) {
        o->count_sum = 1;
    } else if (hist && strcmp(hist, "skip") != 0) {
        snprintf(err->msg, sizeof(err->msg), "key 'histograms': '%.40s' is not skip or count_sum",
                 hist);
        goto fail;
    }
    o->res_attrs = host->cfg_list(cfg, "resource_attributes");
    for (size_t i = 0; o->res_attrs && o->res_attrs[i]; i++)
        o->res_all |= strcmp(o->res_attrs[i], "*") == 0;
    const char *const *ren = host->cfg_list(cfg, "rename");
    size_t n = 0;
    while (ren && ren[n])
        n++;
    o->renames = n ? calloc(n, sizeof(*o->renames)) : NULL;
    if (n && !o->renames) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        rc = SN_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(ren[i], '=');
        char name[OT_MAX_LABEL_NAME + 1];
        const char *to = eq ? eq + 1 : "";
        while (*to == ' ')
            to++;
        size_t fl = eq ? (size_t)(eq - ren[i]) : 0;
        while (fl && ren[i][fl - 1] == ' ')
            fl--;
        if (!eq || fl == 0 || label_name(to, name, sizeof(name)) != 0 || strcmp(name, to) != 0) {
            snprintf(
                err->msg, sizeof(err->msg),
                "key 'rename': '%.60s' is not attribute=label (a label is [A-Za-z_][A-Za-z0-9_]*)",
                ren[i]);
            goto fail;
        }
        o->renames[i].from = strndup(ren[i], fl);
        o->renames[i].to = strdup(to);
        o->nrenames = i + 1;
        if (!o->renames[i].from || !o->renames[i].to) {
            snprintf(err->msg, sizeof(err->msg), "out of memory");
            rc = SN_ENOMEM;
            goto fail;
        }
    }
    *self = o;
    return 0;
fail:
    ot_destroy(o);
    return rc;
}

static int ot_start(void *self)
{
    otlp_t *o = self;
    if (!SN_HOST_HAS(o->host, route_add))
        return SN_ENOTSUP;
    int rc = o->host->route_add(o->host, "POST", "v1/metrics", ot_metrics, o);
    if (rc == SN_ENOTSUP) {
        o->host->log(o->host, SN_LOG_WARN, "HTTP API disabled: no route registered");
        return 0;
    }
    return rc;
}

static int ot_health(void *self, sn_health_t *out)
{
    otlp_t *o = self;
    out->ok = 1;
    snprintf(out->detail, sizeof(out->detail),
             "%lu points accepted, %lu data points rejected, %lu requests refused", o->accepted,
             o->rejected, o->refused);
    return 0;
}

static const sn_input_ops_t ot_ops = {.struct_size = sizeof(sn_input_ops_t)};

static const sn_plugin_t ot_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_INPUT,
    .type = "otlp",
    .version = "1.0.0",
    .summary = "OpenTelemetry metrics over OTLP/HTTP (JSON encoding) at "
               "POST /hooks/<instance>/v1/metrics",
    .params = ot_params,
    .create = ot_create,
    .start = ot_start,
    .destroy = ot_destroy,
    .health = ot_health,
    .ops = &ot_ops,
};

SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &ot_plugin;
}
