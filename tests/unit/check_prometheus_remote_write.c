/**
 * @file check_prometheus_remote_write.c
 * Tests of the prometheus_remote_write input loaded as a .so through the harness. Requests are
 * encoded independently of the plugin's hand-written decoder, with protobuf-c code generated
 * from the plugin's remote.proto, and compressed with libsnappy.
 *
 * The harness accepts routes without serving them and its emit hook always takes everything, so
 * this suite installs its own engine hooks on the harness's runtime: route_add keeps the route,
 * the request calls serve a request built here, and emit_lines runs the core's real ingest
 * parser over what the plugin hands over (so the lines are checked in the core's format and the
 * accepted count is the core's) or answers a scripted error such as SN_EAGAIN.
 */
#include "harness.h"
#include "ingest.h"
#include "remote.pb-c.h"

#include <check.h>
#include <math.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RW_TYPE "prometheus_remote_write"
#define RW_LABELS "instance=\"input:prometheus_remote_write\""
#define TOKEN "rw-token-0123456789"
#define T0 1795600800000LL

/* ---- a request as the engine would hand it to the plugin ---------------------------------- */

struct sn_route_req {
    const char *body;
    size_t len;
    const char *hdr[16]; /* name, value, ..., NULL */
    int replies;
    int status;
    char ctype[64];
    char *reply;
};

typedef struct fix {
    sn_harness_t *h;
    sn_route_fn fn;
    void *self;
    char method[8], path[64];
    int emit_rc; /* non-zero: emit_lines answers this and takes nothing */
    int emits;   /* emit_lines calls that took lines */
    char origin[160];
    json_t *points; /* what the core's parser made of the emitted lines */
} fix_t;

static void on_point(void *arg, const sn_record_t *rec)
{
    fix_t *f = arg;
    ck_assert_int_eq(rec->type, SN_REC_POINT);
    json_t *labels = json_object();
    for (size_t i = 0; i < rec->nlabels; i++)
        json_object_set_new(labels, rec->labels[i].name, json_string(rec->labels[i].value));
    json_array_append_new(f->points,
                          json_pack("{s:I,s:s,s:f,s:o}", "ts", (json_int_t)rec->ts_ms, "metric",
                                    rec->metric, "value", rec->value, "labels", labels));
}

static int hook_emit(void *eng, const char *instance, const char *buf, size_t len,
                     const char *origin)
{
    fix_t *f = eng;
    ck_assert_str_eq(instance, "input:" RW_TYPE);
    if (f->emit_rc)
        return f->emit_rc;
    sn_ingest_stats_t st;
    memset(&st, 0, sizeof(st));
    sn_ingest_parse(buf, len, origin, NULL, on_point, f, &st, NULL, 0);
    snprintf(f->origin, sizeof(f->origin), "%s", origin ? origin : "");
    f->emits++;
    return (int)st.accepted;
}

static int hook_route_add(void *eng, const char *instance, const char *method, const char *path,
                          sn_route_fn fn, void *self)
{
    fix_t *f = eng;
    (void)instance;
    snprintf(f->method, sizeof(f->method), "%s", method);
    snprintf(f->path, sizeof(f->path), "%s", path);
    f->fn = fn;
    f->self = self;
    return 0;
}

static const char *hook_req_body(sn_route_req_t *r, size_t *len)
{
    *len = r->len;
    return r->body;
}

static const char *hook_req_header(sn_route_req_t *r, const char *name)
{
    for (size_t i = 0; r->hdr[i]; i += 2)
        if (strcasecmp(r->hdr[i], name) == 0)
            return r->hdr[i + 1];
    return NULL;
}

static void hook_req_reply(sn_route_req_t *r, int status, const char *content_type,
                           const char *body, size_t len)
{
    r->replies++;
    r->status = status;
    snprintf(r->ctype, sizeof(r->ctype), "%s", content_type ? content_type : "");
    free(r->reply);
    r->reply = calloc(1, len + 1);
    if (body && len)
        memcpy(r->reply, body, len);
}

static void fix_open(fix_t *f, const char *settings)
{
    memset(f, 0, sizeof(*f));
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    f->points = json_array();
    sn_engine_hooks_t hooks = {
        .emit_lines = hook_emit,
        .route_add = hook_route_add,
        .req_body = hook_req_body,
        .req_header = hook_req_header,
        .req_reply = hook_req_reply,
    };
    sn_runtime_set_hooks(sn_harness_runtime(f->h), &hooks, f);
    sn_err_t err = {{0}};
    ck_assert_msg(sn_harness_create(f->h, SN_INPUT, RW_TYPE, settings, NULL, &err) != NULL,
                  "create failed: %s", err.msg);
    ck_assert_ptr_nonnull(f->fn);
    ck_assert_str_eq(f->method, "POST");
    ck_assert_str_eq(f->path, "api/v1/write");
}

static void fix_close(fix_t *f)
{
    sn_harness_free(f->h);
    json_decref(f->points);
}

static double metric(fix_t *f, const char *name)
{
    return sn_metric_value(sn_harness_runtime(f->h), name, RW_LABELS);
}

/* POST @p body with the remote write headers, then @p extra (name, value, ..., NULL).
 * Returns the status; *reply (if given) gets the body, owned by the caller. */
static int post_with(fix_t *f, const void *body, size_t len, const char *const *extra, int standard,
                     char **reply)
{
    struct sn_route_req r;
    memset(&r, 0, sizeof(r));
    r.body = body;
    r.len = len;
    size_t n = 0;
    if (standard) {
        const char *std[] = {"Content-Encoding",
                             "snappy",
                             "Content-Type",
                             "application/x-protobuf",
                             "X-Prometheus-Remote-Write-Version",
                             "0.1.0",
                             "X-Request-ID",
                             "req-42"};
        for (size_t i = 0; i < sizeof(std) / sizeof(std[0]); i++)
            r.hdr[n++] = std[i];
    }
    for (size_t i = 0; extra && extra[i]; i++)
        r.hdr[n++] = extra[i];
    ck_assert_int_lt(n, 16);
    f->fn(f->self, &r);
    ck_assert_int_eq(r.replies, 1);
    if (r.status != 204)
        ck_assert_str_eq(r.ctype, "text/plain; charset=utf-8");
    if (reply)
        *reply = r.reply;
    else
        free(r.reply);
    return r.status;
}

static int post(fix_t *f, const void *body, size_t len, char **reply)
{
    return post_with(f, body, len, NULL, 1, reply);
}

/* ---- building requests with protobuf-c ----------------------------------------------------- */

#define MAXS 8
#define MAXL 80
#define MAXP 16

typedef struct wr {
    Prometheus__WriteRequest req;
    Prometheus__TimeSeries *tsp[MAXS], ts[MAXS];
    Prometheus__Label *lp[MAXS][MAXL], l[MAXS][MAXL];
    Prometheus__Sample *sp[MAXS][MAXP], s[MAXS][MAXP];
    char names[MAXS][MAXL][16];
} wr_t;

static wr_t *wr_new(void)
{
    wr_t *w = calloc(1, sizeof(*w));
    ck_assert_ptr_nonnull(w);
    prometheus__write_request__init(&w->req);
    w->req.timeseries = w->tsp;
    return w;
}

/* A series with labels @p kv (name, value, ..., NULL); returns its index. */
static int wr_series(wr_t *w, const char *const *kv)
{
    int i = (int)w->req.n_timeseries++;
    ck_assert_int_lt(i, MAXS);
    Prometheus__TimeSeries *t = &w->ts[i];
    prometheus__time_series__init(t);
    t->labels = w->lp[i];
    t->samples = w->sp[i];
    for (size_t k = 0; kv && kv[k]; k += 2) {
        Prometheus__Label *l = &w->l[i][t->n_labels];
        prometheus__label__init(l);
        l->name = (char *)kv[k];
        l->value = (char *)kv[k + 1];
        w->lp[i][t->n_labels++] = l;
    }
    w->tsp[i] = t;
    return i;
}

/* @p n extra labels l00=v, l01=v, ... on series @p i. */
static void wr_many_labels(wr_t *w, int i, size_t n)
{
    Prometheus__TimeSeries *t = &w->ts[i];
    for (size_t k = 0; k < n; k++) {
        ck_assert_int_lt(t->n_labels, MAXL);
        Prometheus__Label *l = &w->l[i][t->n_labels];
        prometheus__label__init(l);
        snprintf(w->names[i][t->n_labels], sizeof(w->names[i][0]), "l%02u", (unsigned)(k % 100));
        l->name = w->names[i][t->n_labels];
        l->value = "v";
        w->lp[i][t->n_labels++] = l;
    }
}

static void wr_sample(wr_t *w, int i, double v, int64_t ts)
{
    Prometheus__TimeSeries *t = &w->ts[i];
    ck_assert_int_lt(t->n_samples, MAXP);
    Prometheus__Sample *s = &w->s[i][t->n_samples];
    prometheus__sample__init(s);
    s->value = v;
    s->timestamp = ts;
    w->sp[i][t->n_samples++] = s;
}

/* Protobuf bytes of @p w, with @p extra raw bytes appended. Ownership: caller frees. */
static uint8_t *wr_pack(const wr_t *w, const void *extra, size_t extra_len, size_t *len)
{
    size_t n = prometheus__write_request__get_packed_size(&w->req);
    uint8_t *out = malloc(n + extra_len + 1);
    ck_assert_ptr_nonnull(out);
    ck_assert_uint_eq(prometheus__write_request__pack(&w->req, out), n);
    if (extra_len)
        memcpy(out + n, extra, extra_len);
    *len = n + extra_len;
    return out;
}

/* snappy block format. Ownership: caller frees. */
static char *compress(const void *in, size_t n, size_t *out_len)
{
    size_t cap = snappy_max_compressed_length(n);
    char *out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    *out_len = cap;
    ck_assert_int_eq(snappy_compress(in, n, out, out_len), SNAPPY_OK);
    return out;
}

/* snappy(protobuf(@p w)). Ownership: caller frees. */
static char *wr_body(const wr_t *w, size_t *len)
{
    size_t pl;
    uint8_t *pb = wr_pack(w, NULL, 0, &pl);
    char *body = compress(pb, pl, len);
    free(pb);
    return body;
}

static double bits_double(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

static json_t *point(fix_t *f, size_t i)
{
    json_t *p = json_array_get(f->points, i);
    ck_assert_ptr_nonnull(p);
    return p;
}

static const char *pstr(json_t *p, const char *key)
{
    return json_string_value(json_object_get(p, key));
}

static const char *plabel(json_t *p, const char *name)
{
    return json_string_value(json_object_get(json_object_get(p, "labels"), name));
}

/* ---- tests --------------------------------------------------------------------------------- */

START_TEST(samples_become_points_with_their_labels)
{
    fix_t f;
    fix_open(&f, "");
    wr_t *w = wr_new();
    const char *a[] = {"__name__", "http_requests_total",
                       "instance", "api-1:9090",
                       "job",      "api",
                       "path",     "/a \"b\" \\c\nd\t\x01 caf\xc3\xa9",
                       NULL};
    const char *b[] = {"__name__", "up", "job", "node", NULL};
    int sa = wr_series(w, a), sb = wr_series(w, b);
    wr_sample(w, sa, 1.5, T0);
    wr_sample(w, sa, 2, T0 + 15000);
    wr_sample(w, sb, 1, T0 + 1);
    size_t len;
    char *body = wr_body(w, &len);
    char *reply = NULL;
    ck_assert_int_eq(post(&f, body, len, &reply), 204);
    ck_assert_str_eq(reply, "");
    free(reply);

    ck_assert_int_eq(f.emits, 1); /* one request, one emit: committed all-or-nothing */
    ck_assert_ptr_nonnull(strstr(f.origin, "input:" RW_TYPE));
    ck_assert_ptr_nonnull(strstr(f.origin, "req-42"));
    ck_assert_uint_eq(json_array_size(f.points), 3);
    json_t *p = point(&f, 0);
    ck_assert_str_eq(pstr(p, "metric"), "http_requests_total");
    ck_assert_int_eq(json_integer_value(json_object_get(p, "ts")), T0);
    ck_assert(json_real_value(json_object_get(p, "value")) == 1.5);
    ck_assert_uint_eq(json_object_size(json_object_get(p, "labels")), 3);
    ck_assert_ptr_null(plabel(p, "__name__"));
    ck_assert_str_eq(plabel(p, "instance"), "api-1:9090");
    ck_assert_str_eq(plabel(p, "job"), "api");
    ck_assert_str_eq(plabel(p, "path"), "/a \"b\" \\c\nd\t\x01 caf\xc3\xa9");
    p = point(&f, 1);
    ck_assert_str_eq(pstr(p, "metric"), "http_requests_total");
    ck_assert_int_eq(json_integer_value(json_object_get(p, "ts")), T0 + 15000);
    ck_assert(json_real_value(json_object_get(p, "value")) == 2.0);
    ck_assert_str_eq(plabel(p, "path"), "/a \"b\" \\c\nd\t\x01 caf\xc3\xa9");
    p = point(&f, 2);
    ck_assert_str_eq(pstr(p, "metric"), "up");
    ck_assert_int_eq(json_integer_value(json_object_get(p, "ts")), T0 + 1);
    ck_assert_uint_eq(json_object_size(json_object_get(p, "labels")), 1);
    ck_assert_str_eq(plabel(p, "job"), "node");

    ck_assert(metric(&f, "input_remote_write_samples_received_total") == 3);
    ck_assert(metric(&f, "input_remote_write_samples_accepted_total") == 3);
    ck_assert(metric(&f, "input_remote_write_samples_skipped_total") == 0);
    ck_assert(metric(&f, "input_remote_write_requests_ok_total") == 1);
    free(body);
    free(w);
    fix_close(&f);
}
END_TEST

START_TEST(values_round_trip_exactly)
{
    fix_t f;
    fix_open(&f, "");
    wr_t *w = wr_new();
    const char *a[] = {"__name__", "g", NULL};
    int s = wr_series(w, a);
    const double vals[] = {0.1,     -2.5e-300, 1e20,     123456789012345678.0,    -7,
                           1.0 / 3, 9e15 - 1,  4.9e-324, -1.7976931348623157e308, 0};
    size_t nv = sizeof(vals) / sizeof(vals[0]);
    for (size_t i = 0; i < nv; i++)
        wr_sample(w, s, vals[i], T0 + (int64_t)i);
    size_t len;
    char *body = wr_body(w, &len);
    ck_assert_int_eq(post(&f, body, len, NULL), 204);
    ck_assert_uint_eq(json_array_size(f.points), nv);
    for (size_t i = 0; i < nv; i++) {
        double got = json_real_value(json_object_get(point(&f, i), "value"));
        ck_assert_msg(got == vals[i], "value %zu: %.17g != %.17g", i, got, vals[i]);
    }
    free(body);
    free(w);
    fix_close(&f);
}
END_TEST

START_TEST(stale_markers_are_skipped_and_nonfinite_counted)
{
    fix_t f;
    fix_open(&f, "");
    wr_t *w = wr_new();
    const char *a[] = {"__name__", "queue_depth", "job", "q", NULL};
    int s = wr_series(w, a);
    wr_sample(w, s, bits_double(0x7ff0000000000002ULL), T0); /* stale marker */
    wr_sample(w, s, bits_double(0x7ff8000000000001ULL), T0 + 1);
    wr_sample(w, s, NAN, T0 + 2);
    wr_sample(w, s, INFINITY, T0 + 3);
    wr_sample(w, s, -INFINITY, T0 + 4);
    wr_sample(w, s, 42, T0 + 5);
    size_t len;
    char *body = wr_body(w, &len);
    ck_assert_int_eq(post(&f, body, len, NULL), 204);
    ck_assert_uint_eq(json_array_size(f.points), 1);
    ck_assert(json_real_value(json_object_get(point(&f, 0), "value")) == 42);
    ck_assert_int_eq(json_integer_value(json_object_get(point(&f, 0), "ts")), T0 + 5);
    ck_assert(metric(&f, "input_remote_write_samples_received_total") == 6);
    ck_assert(metric(&f, "input_remote_write_samples_accepted_total") == 1);
    ck_assert(metric(&f, "input_remote_write_samples_stale_total") == 1);
    ck_assert(metric(&f, "input_remote_write_samples_nonfinite_total") == 4);
    ck_assert(metric(&f, "input_remote_write_samples_skipped_total") == 5);
    free(body);
    free(w);

    /* Only stale markers (a series ended): success, and nothing is handed over. */
    w = wr_new();
    s = wr_series(w, a);
    wr_sample(w, s, bits_double(0x7ff0000000000002ULL), T0 + 10);
    body = wr_body(w, &len);
    ck_assert_int_eq(post(&f, body, len, NULL), 204);
    ck_assert_int_eq(f.emits, 1);
    ck_assert(metric(&f, "input_remote_write_samples_stale_total") == 2);
    free(body);
    free(w);
    fix_close(&f);
}
END_TEST

START_TEST(exemplars_histograms_metadata_and_unknown_fields_are_skipped)
{
    fix_t f;
    fix_open(&f, "");
    wr_t *w = wr_new();
    const char *a[] = {"__name__", "rpc_seconds_sum", "svc", "pay", NULL};
    int s = wr_series(w, a);
    wr_sample(w, s, 3.25, T0);
    Prometheus__Label el = PROMETHEUS__LABEL__INIT, *elp = &el;
    el.name = "trace_id";
    el.value = "abc";
    Prometheus__Exemplar ex = PROMETHEUS__EXEMPLAR__INIT, *exq = &ex;
    ex.n_labels = 1;
    ex.labels = &elp;
    ex.value = 0.7;
    ex.timestamp = T0;
    w->ts[s].n_exemplars = 1;
    w->ts[s].exemplars = &exq;
    int64_t deltas[] = {1, -1, 2};
    Prometheus__Histogram hi = PROMETHEUS__HISTOGRAM__INIT, *hip = &hi;
    hi.count_case = PROMETHEUS__HISTOGRAM__COUNT_COUNT_INT;
    hi.count_int = 4;
    hi.sum = 9.5;
    hi.schema = -2;
    hi.n_positive_deltas = 3;
    hi.positive_deltas = deltas;
    hi.timestamp = T0;
    w->ts[s].n_histograms = 1;
    w->ts[s].histograms = &hip;
    Prometheus__MetricMetadata md = PROMETHEUS__METRIC_METADATA__INIT, *mdp = &md;
    md.type = PROMETHEUS__METRIC_METADATA__METRIC_TYPE__COUNTER;
    md.metric_family_name = "rpc_seconds";
    md.help = "RPC latency";
    w->req.n_metadata = 1;
    w->req.metadata = &mdp;
    /* Unknown top-level fields of every wire type: 9 varint, 10 fixed64, 11 fixed32, 12 bytes. */
    const uint8_t unknown[] = {0x48, 0x96, 0x01, 0x51, 1, 2, 3,    4,    5,   6,   7,
                               8,    0x5d, 1,    2,    3, 4, 0x62, 0x03, 'x', 'y', 'z'};
    size_t pl, len;
    uint8_t *pb = wr_pack(w, unknown, sizeof(unknown), &pl);
    char *body = compress(pb, pl, &len);
    ck_assert_int_eq(post(&f, body, len, NULL), 204);
    ck_assert_uint_eq(json_array_size(f.points), 1);
    ck_assert_str_eq(pstr(point(&f, 0), "metric"), "rpc_seconds_sum");
    ck_assert_str_eq(plabel(point(&f, 0), "svc"), "pay");
    ck_assert_uint_eq(json_object_size(json_object_get(point(&f, 0), "labels")), 1);
    free(body);
    free(pb);

    /* A metadata-only request (Prometheus sends them periodically) succeeds with no points. */
    wr_t *m = wr_new();
    m->req.n_metadata = 1;
    m->req.metadata = &mdp;
    body = wr_body(m, &len);
    ck_assert_int_eq(post(&f, body, len, NULL), 204);
    ck_assert_int_eq(f.emits, 1);
    free(body);
    free(m);
    free(w);
    fix_close(&f);
}
END_TEST

/* snappy of raw bytes, posted; returns the status and checks nothing was taken. */
static int post_raw_pb(fix_t *f, const void *pb, size_t n, char **reply)
{
    size_t len;
    char *body = compress(pb, n, &len);
    int st = post(f, body, len, reply);
    free(body);
    return st;
}

START_TEST(undecodable_bodies_are_400_and_take_nothing)
{
    fix_t f;
    fix_open(&f, "");
    char *reply = NULL;
    /* Not snappy at all. */
    static const char junk[] = {(char)0xff, (char)0xff, (char)0xff,
                                (char)0xff, (char)0xff, (char)0xff};
    ck_assert_int_eq(post(&f, junk, sizeof(junk), &reply), 400);
    ck_assert_ptr_nonnull(strstr(reply, "snappy"));
    ck_assert_ptr_nonnull(strstr(reply, "req-42"));
    free(reply);
    ck_assert_int_eq(post(&f, "", 0, NULL), 400);

    /* Valid snappy header, corrupt stream: a valid request with its tail cut off. */
    wr_t *w = wr_new();
    const char *a[] = {"__name__", "up", "job", "x", NULL};
    int s = wr_series(w, a);
    wr_sample(w, s, 1, T0);
    size_t len;
    char *body = wr_body(w, &len);
    ck_assert_int_eq(post(&f, body, len - 3, NULL), 400);

    /* Snappy fine, protobuf not. */
    const uint8_t overlong[] = {0x0a, 0x05, 0x01}; /* series longer than the body */
    const uint8_t truncated[] = {0x08, 0xff};      /* varint cut short */
    const uint8_t group[] = {0x0b, 0x0c};          /* wire type 3 (group) */
    const uint8_t wrongtype[] = {0x08, 0x01};      /* timeseries as a varint */
    const uint8_t badsample[] = {
        0x0a, 0x13, 0x0a, 0x0d, 0x0a, 0x08, '_',  '_',  'n',  'a', 'm',
        'e',  '_',  '_',  0x12, 0x01, 'a',  0x12, 0x02, 0x09, 0x01}; /* sample value cut */
    const uint8_t field0[] = {0x00, 0x01};
    const uint8_t longvarint[] = {0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    struct {
        const uint8_t *p;
        size_t n;
    } cases[] = {{overlong, sizeof(overlong)},    {truncated, sizeof(truncated)},
                 {group, sizeof(group)},          {wrongtype, sizeof(wrongtype)},
                 {badsample, sizeof(badsample)},  {field0, sizeof(field0)},
                 {longvarint, sizeof(longvarint)}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(post_raw_pb(&f, cases[i].p, cases[i].n, NULL) == 400, "case %zu", i);

    /* Series 1 has no __name__: the whole request is refused, series 0 included. */
    const char *noname[] = {"job", "y", NULL};
    int s1 = wr_series(w, noname);
    wr_sample(w, s1, 2, T0);
    free(body);
    body = wr_body(w, &len);
    ck_assert_int_eq(post(&f, body, len, &reply), 400);
    ck_assert_ptr_nonnull(strstr(reply, "series 1"));
    ck_assert_ptr_nonnull(strstr(reply, "__name__"));
    free(reply);
    /* An empty __name__ is no name either. */
    w->ts[s1].labels[0]->name = "__name__";
    w->ts[s1].labels[0]->value = "";
    free(body);
    body = wr_body(w, &len);
    ck_assert_int_eq(post(&f, body, len, NULL), 400);

    ck_assert_int_eq(f.emits, 0);
    ck_assert_uint_eq(json_array_size(f.points), 0);
    ck_assert(metric(&f, "input_remote_write_requests_bad_total") == 12);
    ck_assert(metric(&f, "input_remote_write_samples_accepted_total") == 0);
    free(body);
    free(w);
    fix_close(&f);
}
END_TEST

START_TEST(over_the_limits_is_413)
{
    fix_t f;
    fix_open(&f, "max_decompressed = 1k\nmax_json = 2k\n");
    /* A request decompressing to more than 1k. */
    wr_t *w = wr_new();
    const char *a[] = {"__name__", "big", NULL};
    int s = 0;
    for (int i = 0; i < 3; i++) {
        s = wr_series(w, a);
        wr_many_labels(w, s, 70);
        wr_sample(w, s, 1, T0);
    }
    size_t len;
    char *body = wr_body(w, &len);
    char *reply = NULL;
    ck_assert_int_eq(post(&f, body, len, &reply), 413);
    ck_assert_ptr_nonnull(strstr(reply, "max_decompressed"));
    free(reply);
    free(body);
    free(w);

    /* A header claiming 1 GiB is refused on the header alone, before any allocation. */
    const char liar[] = {(char)0x80, (char)0x80, (char)0x80, (char)0x80, 0x04, 0x00, 'a'};
    ck_assert_int_eq(post(&f, liar, sizeof(liar), NULL), 413);

    /* Small on the wire, large once every sample repeats its series' 20 labels. */
    w = wr_new();
    s = wr_series(w, a);
    wr_many_labels(w, s, 20);
    for (int i = 0; i < MAXP; i++)
        wr_sample(w, s, i, T0 + i);
    size_t pl;
    uint8_t *pb = wr_pack(w, NULL, 0, &pl);
    ck_assert_uint_lt(pl, 1024);
    free(pb);
    body = wr_body(w, &len);
    ck_assert_int_eq(post(&f, body, len, &reply), 413);
    ck_assert_ptr_nonnull(strstr(reply, "max_json"));
    free(reply);
    free(body);
    free(w);

    ck_assert_int_eq(f.emits, 0);
    ck_assert(metric(&f, "input_remote_write_requests_too_large_total") == 3);
    fix_close(&f);
}
END_TEST

START_TEST(backpressure_is_503_and_the_retry_is_taken_once)
{
    fix_t f;
    fix_open(&f, "");
    wr_t *w = wr_new();
    const char *a[] = {"__name__", "up", "job", "x", NULL};
    int s = wr_series(w, a);
    wr_sample(w, s, 1, T0);
    wr_sample(w, s, 1, T0 + 1000);
    size_t len;
    char *body = wr_body(w, &len);
    char *reply = NULL;
    f.emit_rc = SN_EAGAIN;
    ck_assert_int_eq(post(&f, body, len, &reply), 503);
    ck_assert_ptr_nonnull(strstr(reply, "retry"));
    free(reply);
    ck_assert_int_eq(post(&f, body, len, NULL), 503);
    ck_assert(metric(&f, "input_remote_write_requests_backpressure_total") == 2);
    ck_assert(metric(&f, "input_remote_write_samples_accepted_total") == 0);
    ck_assert_uint_eq(json_array_size(f.points), 0);

    /* Other failures are 500: Prometheus retries those too. */
    f.emit_rc = SN_ENOMEM;
    ck_assert_int_eq(post(&f, body, len, NULL), 500);
    ck_assert(metric(&f, "input_remote_write_requests_failed_total") == 1);

    /* The queues drained: Prometheus's retry is taken, exactly once. */
    f.emit_rc = 0;
    ck_assert_int_eq(post(&f, body, len, NULL), 204);
    ck_assert_int_eq(f.emits, 1);
    ck_assert_uint_eq(json_array_size(f.points), 2);
    ck_assert(metric(&f, "input_remote_write_samples_accepted_total") == 2);
    ck_assert(metric(&f, "input_remote_write_requests_ok_total") == 1);
    free(body);
    free(w);
    fix_close(&f);
}
END_TEST

static char *one_sample_body(size_t *len)
{
    wr_t *w = wr_new();
    const char *a[] = {"__name__", "up", "job", "x", NULL};
    int s = wr_series(w, a);
    wr_sample(w, s, 1, T0);
    char *body = wr_body(w, len);
    free(w);
    return body;
}

START_TEST(bearer_token_is_required_when_set)
{
    setenv("SN_TEST_RW_TOKEN", TOKEN, 1);
    fix_t f;
    fix_open(&f, "token = ${env:SN_TEST_RW_TOKEN}\n");
    size_t len;
    char *body = one_sample_body(&len);
    char *reply = NULL;
    ck_assert_int_eq(post(&f, body, len, &reply), 401);
    ck_assert_ptr_null(strstr(reply, TOKEN));
    free(reply);
    const char *wrong[] = {"Authorization", "Bearer " TOKEN "x", NULL};
    ck_assert_int_eq(post_with(&f, body, len, wrong, 1, NULL), 401);
    const char *prefix[] = {"Authorization", "Bearer rw-token", NULL};
    ck_assert_int_eq(post_with(&f, body, len, prefix, 1, NULL), 401);
    const char *basic[] = {"Authorization", "Basic cHJvbTpzM2NyZXQ=", NULL};
    ck_assert_int_eq(post_with(&f, body, len, basic, 1, NULL), 401);
    ck_assert_int_eq(f.emits, 0);
    const char *right[] = {"Authorization", "Bearer " TOKEN, NULL};
    ck_assert_int_eq(post_with(&f, body, len, right, 1, NULL), 204);
    const char *lower[] = {"Authorization", "bearer " TOKEN, NULL};
    ck_assert_int_eq(post_with(&f, body, len, lower, 1, NULL), 204);
    ck_assert_int_eq(f.emits, 2);
    ck_assert(metric(&f, "input_remote_write_requests_unauthorized_total") == 4);
    free(body);
    fix_close(&f);
}
END_TEST

START_TEST(basic_auth_is_required_when_set)
{
    setenv("SN_TEST_RW_PASSWORD", "s3cret", 1);
    fix_t f;
    fix_open(&f, "username = prom\npassword = ${env:SN_TEST_RW_PASSWORD}\n");
    size_t len;
    char *body = one_sample_body(&len);
    ck_assert_int_eq(post(&f, body, len, NULL), 401);
    const char *wrong[] = {"Authorization", "Basic cHJvbTpzM2NyZXQx", NULL}; /* prom:s3cret1 */
    ck_assert_int_eq(post_with(&f, body, len, wrong, 1, NULL), 401);
    const char *bearer[] = {"Authorization", "Bearer s3cret", NULL};
    ck_assert_int_eq(post_with(&f, body, len, bearer, 1, NULL), 401);
    const char *right[] = {"Authorization", "Basic cHJvbTpzM2NyZXQ=", NULL}; /* prom:s3cret */
    ck_assert_int_eq(post_with(&f, body, len, right, 1, NULL), 204);
    ck_assert_int_eq(f.emits, 1);
    free(body);
    fix_close(&f);
}
END_TEST

START_TEST(bad_settings_are_refused)
{
    sn_harness_t *h = sn_harness_new();
    sn_err_t err = {{0}};
    ck_assert_ptr_null(sn_harness_create(h, SN_INPUT, RW_TYPE, "username = prom\n", NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "password"));
    ck_assert_ptr_null(sn_harness_create(h, SN_INPUT, RW_TYPE,
                                         "token = t\nusername = u\npassword = p\n", NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "either"));
    ck_assert_ptr_null(
        sn_harness_create(h, SN_INPUT, RW_TYPE, "max_decompressed = 10\n", NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "max_decompressed"));
    ck_assert_ptr_null(sn_harness_create(h, SN_INPUT, RW_TYPE, "max_json = lots\n", NULL, &err));
    sn_harness_free(h);
}
END_TEST

START_TEST(other_encodings_and_versions_are_415)
{
    fix_t f;
    fix_open(&f, "");
    size_t len;
    char *body = one_sample_body(&len);
    const char *gzip[] = {"Content-Encoding", "gzip", "Content-Type", "application/x-protobuf",
                          NULL};
    ck_assert_int_eq(post_with(&f, body, len, gzip, 0, NULL), 415);
    const char *json[] = {"Content-Encoding", "snappy", "Content-Type", "application/json", NULL};
    ck_assert_int_eq(post_with(&f, body, len, json, 0, NULL), 415);
    const char *v2[] = {"Content-Encoding",
                        "snappy",
                        "Content-Type",
                        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                        "X-Prometheus-Remote-Write-Version",
                        "2.0.0",
                        NULL};
    char *reply = NULL;
    ck_assert_int_eq(post_with(&f, body, len, v2, 0, &reply), 415);
    ck_assert_ptr_nonnull(strstr(reply, "2.0"));
    free(reply);
    const char *ver[] = {"Content-Encoding", "snappy", "X-Prometheus-Remote-Write-Version", "2.0.0",
                         NULL};
    ck_assert_int_eq(post_with(&f, body, len, ver, 0, NULL), 415);
    /* No headers at all: snappy protobuf is assumed. */
    ck_assert_int_eq(post_with(&f, body, len, NULL, 0, NULL), 204);
    ck_assert_int_eq(f.emits, 1);
    ck_assert(metric(&f, "input_remote_write_requests_unsupported_total") == 4);
    free(body);
    fix_close(&f);
}
END_TEST

START_TEST(series_the_core_refuses_are_counted_not_fatal)
{
    fix_t f;
    fix_open(&f, "");
    wr_t *w = wr_new();
    const char *ok[] = {"__name__", "fine", NULL};
    const char *badname[] = {"__name__", "1bad name", NULL};
    const char *many[] = {"__name__", "wide", NULL};
    const char *lots[] = {"__name__", "wider", NULL};
    int s0 = wr_series(w, ok), s1 = wr_series(w, badname), s2 = wr_series(w, many),
        s3 = wr_series(w, lots);
    wr_many_labels(w, s2, 40); /* the core takes at most 32 labels on a point */
    wr_many_labels(w, s3, 70); /* more than the plugin collects */
    wr_sample(w, s0, 1, T0);
    wr_sample(w, s1, 1, T0);
    wr_sample(w, s2, 1, T0);
    wr_sample(w, s2, 2, T0 + 1);
    wr_sample(w, s3, 1, T0);
    size_t len;
    char *body = wr_body(w, &len);
    ck_assert_int_eq(post(&f, body, len, NULL), 204);
    ck_assert_uint_eq(json_array_size(f.points), 1);
    ck_assert_str_eq(pstr(point(&f, 0), "metric"), "fine");
    ck_assert(metric(&f, "input_remote_write_samples_received_total") == 5);
    ck_assert(metric(&f, "input_remote_write_samples_accepted_total") == 1);
    ck_assert(metric(&f, "input_remote_write_samples_rejected_total") == 4);
    ck_assert(metric(&f, "input_remote_write_samples_skipped_total") == 4);
    free(body);
    free(w);
    fix_close(&f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("prometheus_remote_write");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, samples_become_points_with_their_labels);
    tcase_add_test(tc, values_round_trip_exactly);
    tcase_add_test(tc, stale_markers_are_skipped_and_nonfinite_counted);
    tcase_add_test(tc, exemplars_histograms_metadata_and_unknown_fields_are_skipped);
    tcase_add_test(tc, undecodable_bodies_are_400_and_take_nothing);
    tcase_add_test(tc, over_the_limits_is_413);
    tcase_add_test(tc, backpressure_is_503_and_the_retry_is_taken_once);
    tcase_add_test(tc, bearer_token_is_required_when_set);
    tcase_add_test(tc, basic_auth_is_required_when_set);
    tcase_add_test(tc, bad_settings_are_refused);
    tcase_add_test(tc, other_encodings_and_versions_are_415);
    tcase_add_test(tc, series_the_core_refuses_are_counted_not_fatal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
