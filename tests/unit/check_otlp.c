/**
 * @file check_otlp.c
 * Tests of the otlp input loaded as a .so through the harness. The test stands in for the HTTP
 * API: it installs engine hooks that capture the route the plugin registers, serve fake
 * requests (body, headers, reply) to it, and record or refuse what it hands to emit_lines. The
 * OpenTelemetry project's example request (tests/data/otlp) must give exactly the expected
 * points; every skip and reject path, malformed, oversized and compressed bodies, content
 * types, auth and backpressure are covered.
 */
#include "harness.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OT_LABELS "instance=\"input:otlp\""

/* The request as the fake HTTP API hands it to the plugin (opaque to the plugin). */
struct sn_route_req {
    const char *body;
    size_t len;
    const char *names[8];
    const char *values[8];
    size_t nheaders;
    int replied;
    int status;
    char ctype[64];
    char *reply;
};

typedef struct fake {
    sn_route_fn fn;
    void *self;
    char method[8];
    char path[64];
    int emit_calls;
    int emit_rc;     /* non-zero: emit_lines answers this */
    int core_reject; /* emit_lines refuses this many lines */
    char *emitted;   /* last body handed to emit_lines */
} fake_t;

static fake_t g;

static int f_emit(void *eng, const char *instance, const char *buf, size_t len, const char *origin)
{
    (void)eng;
    (void)instance;
    (void)origin;
    g.emit_calls++;
    if (g.emit_rc)
        return g.emit_rc;
    free(g.emitted);
    g.emitted = strndup(buf, len);
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    return lines - g.core_reject;
}

static int f_route_add(void *eng, const char *instance, const char *method, const char *path,
                       sn_route_fn fn, void *self)
{
    (void)eng;
    (void)instance;
    snprintf(g.method, sizeof(g.method), "%s", method);
    snprintf(g.path, sizeof(g.path), "%s", path);
    g.fn = fn;
    g.self = self;
    return 0;
}

static const char *f_body(sn_route_req_t *r, size_t *len)
{
    *len = r->len;
    return r->body;
}

static const char *f_header(sn_route_req_t *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->names[i], name) == 0)
            return r->values[i];
    return NULL;
}

static void f_reply(sn_route_req_t *r, int status, const char *ctype, const char *body, size_t len)
{
    ck_assert_int_eq(r->replied, 0);
    r->replied = 1;
    r->status = status;
    snprintf(r->ctype, sizeof(r->ctype), "%s", ctype ? ctype : "");
    r->reply = strndup(body, len);
}

static sn_harness_t *g_h;

/* A harness whose engine hooks are the fakes above, with one otlp instance. */
static void *open_otlp(const char *settings, sn_err_t *err)
{
    sn_engine_hooks_t hooks = {
        .emit_lines = f_emit,
        .route_add = f_route_add,
        .req_body = f_body,
        .req_header = f_header,
        .req_reply = f_reply,
    };
    free(g.emitted);
    memset(&g, 0, sizeof(g));
    g_h = sn_harness_new();
    ck_assert_ptr_nonnull(g_h);
    sn_runtime_set_hooks(sn_harness_runtime(g_h), &hooks, &g);
    return sn_harness_create(g_h, SN_INPUT, "otlp", settings, NULL, err);
}

static void start(const char *settings)
{
    sn_err_t err = {{0}};
    void *self = open_otlp(settings, &err);
    ck_assert_msg(self != NULL, "create failed: %s", err.msg);
    ck_assert_str_eq(g.method, "POST");
    ck_assert_str_eq(g.path, "v1/metrics");
    ck_assert_ptr_eq(g.self, self);
}

static void finish(void)
{
    sn_harness_free(g_h);
    g_h = NULL;
    free(g.emitted);
    g.emitted = NULL;
}

static double metric(const char *name)
{
    return sn_metric_value(sn_harness_runtime(g_h), name, OT_LABELS);
}

typedef struct answer {
    int status;
    json_t *body;
    char *text;
} answer_t;

static void answer_free(answer_t *a)
{
    json_decref(a->body);
    free(a->text);
    memset(a, 0, sizeof(*a));
}

/* POST @p body (@p len bytes) with headers given as name, value, ..., NULL. */
static answer_t post_raw(const char *body, size_t len, ...)
{
    sn_route_req_t req;
    memset(&req, 0, sizeof(req));
    req.body = body;
    req.len = len;
    va_list ap;
    va_start(ap, len);
    const char *name;
    while ((name = va_arg(ap, const char *)) != NULL && req.nheaders < 8) {
        req.names[req.nheaders] = name;
        req.values[req.nheaders++] = va_arg(ap, const char *);
    }
    va_end(ap);
    g.fn(g.self, &req);
    ck_assert_int_eq(req.replied, 1);
    ck_assert_str_eq(req.ctype, "application/json");
    answer_t a = {req.status, json_loads(req.reply, 0, NULL), req.reply};
    ck_assert_msg(a.body != NULL, "reply is not JSON: %s", req.reply);
    return a;
}

static answer_t post_json(const char *body)
{
    return post_raw(body, strlen(body), "Content-Type", "application/json", NULL);
}

static const char *message(const answer_t *a)
{
    const char *m = json_string_value(json_object_get(a->body, "message"));
    ck_assert_msg(m != NULL, "no message in %s", a->text);
    return m;
}

static json_t *emitted_lines(void)
{
    json_t *arr = json_array();
    const char *p = g.emitted ? g.emitted : "";
    while (*p) {
        const char *nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        json_t *o = json_loadb(p, (size_t)(nl - p), 0, NULL);
        ck_assert_ptr_nonnull(o);
        json_array_append_new(arr, o);
        p = nl + 1;
    }
    return arr;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void assert_point(json_t *p, int64_t ts, const char *metric_name, double value,
                         const char *labels_json)
{
    char *txt = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_msg(json_integer_value(json_object_get(p, "ts")) == ts, "ts in %s", txt);
    ck_assert_msg(strcmp(json_string_value(json_object_get(p, "metric")), metric_name) == 0,
                  "metric in %s", txt);
    ck_assert_msg(json_number_value(json_object_get(p, "value")) == value, "value in %s", txt);
    json_t *want = json_loads(labels_json, 0, NULL);
    ck_assert_ptr_nonnull(want);
    ck_assert_msg(json_equal(json_object_get(p, "labels"), want), "labels in %s, want %s", txt,
                  labels_json);
    json_decref(want);
    free(txt);
}

/* One resource (service.name = cart) and one scope around @p metrics. */
#define REQ(metrics)                                                                               \
    "{\"resourceMetrics\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":"    \
    "{\"stringValue\":\"cart\"}}]},\"scopeMetrics\":[{\"metrics\":[" metrics "]}]}]}"
#define GAUGE(name, dps) "{\"name\":\"" name "\",\"gauge\":{\"dataPoints\":[" dps "]}}"
#define T1 "\"timeUnixNano\":\"1700000000123456789\""

/* ---- the official example ------------------------------------------------------------------ */

START_TEST(example_request_gives_expected_points)
{
    start("");
    size_t len;
    char *body = read_file(SN_TEST_DATA "/otlp/metrics-example.json", &len);
    answer_t a = post_raw(body, len, "Content-Type", "application/json", NULL);
    ck_assert_int_eq(a.status, 200);
    ck_assert_int_eq(g.emit_calls, 1);
    json_t *ps = json_object_get(a.body, "partialSuccess");
    ck_assert_ptr_nonnull(ps);
    ck_assert_str_eq(json_string_value(json_object_get(ps, "rejectedDataPoints")), "1");
    const char *em = json_string_value(json_object_get(ps, "errorMessage"));
    ck_assert_ptr_nonnull(strstr(em, "1 of 3 data points rejected"));
    ck_assert_ptr_nonnull(strstr(em, "resourceMetrics[0].scopeMetrics[0].metrics[2].histogram: "
                                     "histogram data points are not ingested"));

    json_t *pts = emitted_lines();
    ck_assert_int_eq(json_array_size(pts), 2);
    assert_point(json_array_get(pts, 0), 1544712660300, "my.counter", 5,
                 "{\"service\":\"my.service\",\"my_counter_attr\":\"some value\"}");
    assert_point(json_array_get(pts, 1), 1544712660300, "my.gauge", 10,
                 "{\"service\":\"my.service\",\"my_gauge_attr\":\"some value\"}");
    json_decref(pts);

    ck_assert(metric("input_otlp_points_received_total") == 3);
    ck_assert(metric("input_otlp_points_accepted_total") == 2);
    ck_assert(metric("input_otlp_points_rejected_total") == 1);
    ck_assert(metric("input_otlp_requests_200_total") == 1);
    answer_free(&a);
    free(body);
    finish();
}
END_TEST

START_TEST(example_with_count_sum_and_scope_labels)
{
    start("histograms = count_sum\nscope_labels = true\n");
    size_t len;
    char *body = read_file(SN_TEST_DATA "/otlp/metrics-example.json", &len);
    answer_t a = post_raw(body, len, "Content-Type", "application/json", NULL);
    ck_assert_int_eq(a.status, 200);
    ck_assert_str_eq(a.text, "{}");
    json_t *pts = emitted_lines();
    ck_assert_int_eq(json_array_size(pts), 4);
    const char *scope = "\"service\":\"my.service\",\"otel_scope_name\":\"my.library\","
                        "\"otel_scope_version\":\"1.0.0\","
                        "\"my_scope_attribute\":\"some scope attribute\"";
    char want[512];
    snprintf(want, sizeof(want), "{%s,\"my_gauge_attr\":\"some value\"}", scope);
    assert_point(json_array_get(pts, 1), 1544712660300, "my.gauge", 10, want);
    snprintf(want, sizeof(want), "{%s,\"my_histogram_attr\":\"some value\"}", scope);
    assert_point(json_array_get(pts, 2), 1544712660300, "my.histogram_count", 3, want);
    assert_point(json_array_get(pts, 3), 1544712660300, "my.histogram_sum", 3, want);
    json_decref(pts);
    ck_assert(metric("input_otlp_points_rejected_total") == 0);
    answer_free(&a);
    free(body);
    finish();
}
END_TEST

/* ---- values, times, names and labels ------------------------------------------------------- */

START_TEST(as_int_as_string_and_number_and_label_mapping)
{
    start("");
    const char *body =
        "{\"resourceMetrics\":[{\"resource\":{\"attributes\":["
        "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"cart\"}},"
        "{\"key\":\"host.name\",\"value\":{\"stringValue\":\"node-1\"}},"
        "{\"key\":\"k8s.deployment.name\",\"value\":{\"stringValue\":\"cart-v2\"}},"
        "{\"key\":\"process.pid\",\"value\":{\"intValue\":\"4242\"}},"
        "{\"key\":\"zone\",\"value\":{\"stringValue\":\"from-resource\"}}]},"
        "\"scopeMetrics\":[{\"scope\":{\"name\":\"lib\"},\"metrics\":["
        "{\"name\":\"queue.depth\",\"gauge\":{\"dataPoints\":["
        "{\"asInt\":\"-42\",\"timeUnixNano\":\"1700000000123456789\"},"
        "{\"asInt\":7,\"timeUnixNano\":1700000001999999999},"
        "{\"asInt\":\"9007199254740993\",\"timeUnixNano\":\"1700000002000000000\","
        "\"attributes\":[{\"key\":\"http.status-code\",\"value\":{\"intValue\":200}},"
        "{\"key\":\"ratio\",\"value\":{\"doubleValue\":0.25}},"
        "{\"key\":\"whole\",\"value\":{\"doubleValue\":\"2\"}},"
        "{\"key\":\"ok\",\"value\":{\"boolValue\":true}},"
        "{\"key\":\"1st\",\"value\":{\"stringValue\":\"x\"}},"
        "{\"key\":\"zone\",\"value\":{\"stringValue\":\"from-point\"}}]}]}},"
        "{\"name\":\"9lives/http-req\",\"sum\":{\"aggregationTemporality\":2,\"isMonotonic\":true,"
        "\"dataPoints\":[{\"asDouble\":\"1.5\"," T1 "}]}}]}]}]}";
    answer_t a = post_json(body);
    ck_assert_int_eq(a.status, 200);
    ck_assert_str_eq(a.text, "{}");
    json_t *pts = emitted_lines();
    ck_assert_int_eq(json_array_size(pts), 4);
    const char *res = "\"service\":\"cart\",\"host\":\"node-1\",\"deployment\":\"cart-v2\","
                      "\"process_pid\":\"4242\"";
    char want[512];
    snprintf(want, sizeof(want), "{%s,\"zone\":\"from-resource\"}", res);
    assert_point(json_array_get(pts, 0), 1700000000123, "queue.depth", -42, want);
    assert_point(json_array_get(pts, 1), 1700000001999, "queue.depth", 7, want);
    snprintf(want, sizeof(want),
             "{%s,\"zone\":\"from-point\",\"http_status_code\":\"200\",\"ratio\":\"0.25\","
             "\"whole\":\"2\",\"ok\":\"true\",\"_1st\":\"x\"}",
             res);
    assert_point(json_array_get(pts, 2), 1700000002000, "queue.depth", 9007199254740992.0, want);
    snprintf(want, sizeof(want), "{%s,\"zone\":\"from-resource\"}", res);
    assert_point(json_array_get(pts, 3), 1700000000123, "_9lives_http_req", 1.5, want);
    json_decref(pts);
    answer_free(&a);
    finish();
}
END_TEST

START_TEST(resource_attributes_and_rename_settings)
{
    start("resource_attributes = service.name, zone\nrename = service.name=svc, zone=az\n");
    answer_t a = post_json(
        "{\"resourceMetrics\":[{\"resource\":{\"attributes\":["
        "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"cart\"}},"
        "{\"key\":\"host.name\",\"value\":{\"stringValue\":\"node-1\"}},"
        "{\"key\":\"zone\",\"value\":{\"stringValue\":\"a\"}}]},"
        "\"scopeMetrics\":[{\"metrics\":[" GAUGE("g", "{\"asDouble\":1," T1 "}") "]}]}]}");
    ck_assert_int_eq(a.status, 200);
    json_t *pts = emitted_lines();
    ck_assert_int_eq(json_array_size(pts), 1);
    assert_point(json_array_get(pts, 0), 1700000000123, "g", 1, "{\"svc\":\"cart\",\"az\":\"a\"}");
    json_decref(pts);
    answer_free(&a);
    finish();
}
END_TEST

/* ---- skipped attributes and rejected points ------------------------------------------------ */

START_TEST(skip_and_reject_paths)
{
    start("");
    char long_value[400];
    memset(long_value, 'v', 300);
    long_value[300] = '\0';
    char many[4096] = "";
    for (int i = 0; i < 33; i++) {
        char one[96];
        snprintf(one, sizeof(one), "%s{\"key\":\"a%d\",\"value\":{\"stringValue\":\"x\"}}",
                 i ? "," : "", i);
        strcat(many, one);
    }
    char *body = NULL;
    int n = asprintf(
        &body,
        REQ(GAUGE("good", "{\"asDouble\":1," T1 ",\"attributes\":["
                          "{\"key\":\"arr\",\"value\":{\"arrayValue\":{\"values\":[]}}},"
                          "{\"key\":\"kv\",\"value\":{\"kvlistValue\":{\"values\":[]}}},"
                          "{\"key\":\"bytes\",\"value\":{\"bytesValue\":\"AAE=\"}},"
                          "{\"key\":\"empty\",\"value\":{}},"
                          "{\"key\":\"nothing\"},"
                          "{\"key\":\"long\",\"value\":{\"stringValue\":\"%s\"}}]},"
                          "{\"asDouble\":2," T1 ",\"flags\":1}") "," /* no recorded value */
            GAUGE("novalue", "{" T1 "}") "," GAUGE("nan", "{\"asDouble\":\"NaN\"," T1 "}") "," GAUGE(
                "inf",
                "{\"asDouble\":\"-Infinity\"," T1
                "}") "," GAUGE("notime",
                               "{\"asDouble\":1}") "," GAUGE("", "{\"asDouble\":1," T1
                                                                 "}") "," GAUGE("manylabels",
                                                                                "{\"asDouble\":"
                                                                                "1," T1
                                                                                ",\"attributes\":[%"
                                                                                "s]}") ","
                                                                                       "{\"name\":"
                                                                                       "\"lat\","
                                                                                       "\"summary\""
                                                                                       ":{"
                                                                                       "\"dataPoint"
                                                                                       "s\":[{" T1
                                                                                       ",\"count\":"
                                                                                       "\"2\"}]}},"
                                                                                       "{\"name\":"
                                                                                       "\"exp\","
                                                                                       "\"exponenti"
                                                                                       "alHistogram"
                                                                                       "\":{"
                                                                                       "\"dataPoint"
                                                                                       "s\":[{" T1
                                                                                       "},{" T1
                                                                                       "}]}},"
                                                                                       "{\"name\":"
                                                                                       "\"nodata\""
                                                                                       "}"),
        long_value, many);
    ck_assert_int_gt(n, 0);
    answer_t a = post_json(body);
    ck_assert_int_eq(a.status, 200);
    json_t *pts = emitted_lines();
    ck_assert_int_eq(json_array_size(pts), 1);
    assert_point(json_array_get(pts, 0), 1700000000123, "good", 1, "{\"service\":\"cart\"}");
    json_decref(pts);
    json_t *ps = json_object_get(a.body, "partialSuccess");
    ck_assert_ptr_nonnull(ps);
    /* novalue, nan, inf, notime, no name, manylabels, 1 summary, 2 exponential histogram */
    ck_assert_str_eq(json_string_value(json_object_get(ps, "rejectedDataPoints")), "9");
    const char *em = json_string_value(json_object_get(ps, "errorMessage"));
    ck_assert_ptr_nonnull(strstr(em, "9 of 11 data points rejected"));
    ck_assert_ptr_nonnull(
        strstr(em, "resourceMetrics[0].scopeMetrics[0].metrics[1].gauge.dataPoints[0]: no "
                   "asDouble or asInt"));
    ck_assert_ptr_nonnull(strstr(em, "metrics[2].gauge.dataPoints[0]: asDouble is not a finite"));
    ck_assert_ptr_nonnull(strstr(em, "; ..."));
    ck_assert(metric("input_otlp_attributes_skipped_total") == 6);
    ck_assert(metric("input_otlp_points_skipped_total") == 1);
    ck_assert(metric("input_otlp_points_rejected_total") == 9);
    ck_assert(metric("input_otlp_points_accepted_total") == 1);
    ck_assert(metric("input_otlp_points_received_total") == 11);
    answer_free(&a);
    free(body);
    finish();
}
END_TEST

START_TEST(reject_reasons_named)
{
    start("");
    char many[4096] = "";
    for (int i = 0; i < 33; i++) {
        char one[96];
        snprintf(one, sizeof(one), "%s{\"key\":\"a%d\",\"value\":{\"stringValue\":\"x\"}}",
                 i ? "," : "", i);
        strcat(many, one);
    }
    char *body = NULL;
    ck_assert_int_gt(asprintf(&body,
                              REQ(GAUGE("notime", "{\"asDouble\":1}") "," GAUGE(
                                  "", "{\"asDouble\":1," T1
                                      "}") "," GAUGE("manylabels", "{\"asDouble\":1," T1
                                                                   ",\"attributes\":[%s]}")),
                              many),
                     0);
    answer_t a = post_json(body);
    ck_assert_int_eq(a.status, 200);
    ck_assert_ptr_null(g.emitted);
    ck_assert_int_eq(g.emit_calls, 0);
    const char *em = json_string_value(
        json_object_get(json_object_get(a.body, "partialSuccess"), "errorMessage"));
    ck_assert_ptr_nonnull(strstr(em, "metrics[0].gauge.dataPoints[0]: timeUnixNano missing"));
    ck_assert_ptr_nonnull(strstr(em, "metrics[1].gauge: metric without a name"));
    ck_assert_ptr_nonnull(strstr(em, "metrics[2].gauge.dataPoints[0]: 34 labels, more than 32"));
    answer_free(&a);
    free(body);
    finish();
}
END_TEST

/* ---- malformed bodies ---------------------------------------------------------------------- */

static void expect_400(const char *body, const char *want)
{
    answer_t a = post_raw(body, strlen(body), "Content-Type", "application/json", "X-Request-ID",
                          "req-7", NULL);
    ck_assert_msg(a.status == 400, "status %d for %s", a.status, body);
    ck_assert_int_eq(json_integer_value(json_object_get(a.body, "code")), 3);
    ck_assert_msg(strstr(message(&a), want) != NULL, "'%s' not in '%s'", want, message(&a));
    ck_assert_ptr_nonnull(strstr(message(&a), "(request req-7)"));
    answer_free(&a);
}

START_TEST(malformed_bodies_name_the_field)
{
    start("");
    expect_400("{\"resourceMetrics\":[", "body is not JSON");
    expect_400("", "body is not JSON");
    expect_400("[1]", "body: not a JSON object");
    expect_400("{\"resourceMetrics\":{}}", "resourceMetrics: not an array");
    expect_400("{\"resourceMetrics\":[7]}", "resourceMetrics[0]: not an object");
    /* the path of the issue: second scope, third metric */
    expect_400("{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[]},{\"metrics\":["
               "{\"name\":\"a\",\"gauge\":{}},{\"name\":\"b\"},"
               "{\"name\":\"c\",\"gauge\":{\"dataPoints\":[{\"asDouble\":1,\"timeUnixNano\":"
               "\"12:00\"}]}}]}]}]}",
               "resourceMetrics[0].scopeMetrics[1].metrics[2].gauge.dataPoints[0].timeUnixNano: "
               "not an unsigned 64-bit integer");
    expect_400(REQ(GAUGE("g", "{\"asDouble\":1,\"timeUnixNano\":-5}")),
               "gauge.dataPoints[0].timeUnixNano");
    expect_400(REQ(GAUGE("g", "{\"asInt\":\"1.5\"," T1 "}")),
               "metrics[0].gauge.dataPoints[0].asInt: not a 64-bit integer");
    expect_400(REQ(GAUGE("g", "{\"asDouble\":true," T1 "}")),
               "dataPoints[0].asDouble: not a number");
    expect_400(REQ(GAUGE("g", "{\"asDouble\":1,\"asInt\":\"1\"," T1 "}")),
               "dataPoints[0]: has both asDouble and asInt");
    expect_400(REQ(GAUGE("g", "{\"asDouble\":1," T1 ",\"attributes\":[{\"key\":\"k\",\"value\":"
                              "{\"stringValue\":5}}]}")),
               "dataPoints[0].attributes[0].value.stringValue: not a string");
    expect_400(REQ(GAUGE("g", "{\"asDouble\":1," T1 ",\"attributes\":{}}")),
               "dataPoints[0].attributes: not an array");
    expect_400("{\"resourceMetrics\":[{\"resource\":{\"attributes\":[{\"key\":3}]}}]}",
               "resourceMetrics[0].resource.attributes[0].key: not a string");
    expect_400(REQ("{\"name\":\"g\",\"gauge\":{\"dataPoints\":[]},\"sum\":{}}"),
               "metrics[0]: has more than one of gauge, sum");
    expect_400(REQ("{\"name\":7,\"gauge\":{}}"), "metrics[0].name: not a string");
    ck_assert_int_eq(g.emit_calls, 0);
    ck_assert(metric("input_otlp_requests_400_total") == 15);
    ck_assert(metric("input_otlp_points_received_total") == 0);
    /* still serving */
    answer_t a = post_json(REQ(GAUGE("g", "{\"asDouble\":1," T1 "}")));
    ck_assert_int_eq(a.status, 200);
    ck_assert_int_eq(g.emit_calls, 1);
    answer_free(&a);
    finish();
}
END_TEST

START_TEST(max_points_gives_413)
{
    start("max_points = 3\n");
    const char *four = REQ(GAUGE("a", "{\"asDouble\":1," T1 "},{\"asDouble\":2," T1 "}") "," GAUGE(
        "b", "{\"asDouble\":1," T1 "}") ",{\"name\":\"h\",\"histogram\":{\"dataPoints\":[{}]}}");
    answer_t a = post_json(four);
    ck_assert_int_eq(a.status, 413);
    ck_assert_ptr_nonnull(strstr(message(&a), "more than max_points (3)"));
    ck_assert_int_eq(g.emit_calls, 0);
    answer_free(&a);
    const char *three = REQ(GAUGE("a", "{\"asDouble\":1," T1 "},{\"asDouble\":2," T1
                                       "}") "," GAUGE("b", "{\"asDouble\":1," T1 "}"));
    a = post_json(three);
    ck_assert_int_eq(a.status, 200);
    ck_assert_int_eq(g.emit_calls, 1);
    ck_assert(metric("input_otlp_requests_413_total") == 1);
    answer_free(&a);
    finish();
}
END_TEST

/* ---- compressed bodies --------------------------------------------------------------------- */

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

/* gzip with stored (uncompressed) deflate blocks: valid for any inflater, no zlib needed. */
static unsigned char *gzip_stored(const char *in, size_t n, size_t *outlen)
{
    size_t blocks = n / 65535 + 1;
    unsigned char *out = malloc(18 + n + blocks * 5);
    size_t k = 0;
    static const unsigned char hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255};
    memcpy(out, hdr, 10);
    k = 10;
    size_t off = 0;
    do {
        size_t len = n - off > 65535 ? 65535 : n - off;
        int last = off + len == n;
        out[k++] = (unsigned char)last;
        out[k++] = (unsigned char)(len & 0xff);
        out[k++] = (unsigned char)(len >> 8);
        out[k++] = (unsigned char)(~len & 0xff);
        out[k++] = (unsigned char)((~len >> 8) & 0xff);
        memcpy(out + k, in + off, len);
        k += len;
        off += len;
    } while (off < n);
    uint32_t crc = crc32_of((const unsigned char *)in, n);
    for (int i = 0; i < 4; i++)
        out[k++] = (unsigned char)(crc >> (8 * i));
    for (int i = 0; i < 4; i++)
        out[k++] = (unsigned char)((uint32_t)n >> (8 * i));
    *outlen = k;
    return out;
}

START_TEST(gzip_bodies_bounded)
{
    start("max_decompressed = 2k\n");
    size_t len, zlen;
    char *body = read_file(SN_TEST_DATA "/otlp/metrics-example.json", &len);
    ck_assert_int_gt(len, 2048); /* the example is ~3 kB: over the bound once inflated */
    unsigned char *z = gzip_stored(body, len, &zlen);
    answer_t a = post_raw((const char *)z, zlen, "Content-Type", "application/json",
                          "Content-Encoding", "gzip", NULL);
    ck_assert_int_eq(a.status, 413);
    ck_assert_ptr_nonnull(strstr(message(&a), "max_decompressed"));
    answer_free(&a);
    free(z);

    const char *small = REQ(GAUGE("g", "{\"asDouble\":4," T1 "}"));
    z = gzip_stored(small, strlen(small), &zlen);
    a = post_raw((const char *)z, zlen, "Content-Type", "application/json", "Content-Encoding",
                 "gzip", NULL);
    ck_assert_int_eq(a.status, 200);
    json_t *pts = emitted_lines();
    ck_assert_int_eq(json_array_size(pts), 1);
    assert_point(json_array_get(pts, 0), 1700000000123, "g", 4, "{\"service\":\"cart\"}");
    json_decref(pts);
    answer_free(&a);

    z[zlen - 5] ^= 0x55; /* CRC no longer matches */
    a = post_raw((const char *)z, zlen, "Content-Type", "application/json", "Content-Encoding",
                 "gzip", NULL);
    ck_assert_int_eq(a.status, 400);
    ck_assert_ptr_nonnull(strstr(message(&a), "corrupt or truncated"));
    answer_free(&a);
    a = post_raw((const char *)z, zlen / 2, "Content-Type", "application/json", "Content-Encoding",
                 "gzip", NULL);
    ck_assert_int_eq(a.status, 400);
    answer_free(&a);
    a = post_raw(small, strlen(small), "Content-Type", "application/json", "Content-Encoding", "br",
                 NULL);
    ck_assert_int_eq(a.status, 415);
    ck_assert_ptr_nonnull(strstr(message(&a), "Content-Encoding br is not supported"));
    answer_free(&a);
    free(z);
    free(body);
    finish();
}
END_TEST

/* ---- content types, auth, backpressure ----------------------------------------------------- */

START_TEST(content_type_must_be_json)
{
    start("");
    const char *body = REQ(GAUGE("g", "{\"asDouble\":1," T1 "}"));
    answer_t a = post_raw(body, strlen(body), NULL);
    ck_assert_int_eq(a.status, 415);
    answer_free(&a);
    a = post_raw(body, strlen(body), "Content-Type", "application/x-protobuf", NULL);
    ck_assert_int_eq(a.status, 415);
    ck_assert_ptr_nonnull(strstr(message(&a), "protobuf encoding is not supported"));
    ck_assert_ptr_nonnull(strstr(message(&a), "encoding: json"));
    answer_free(&a);
    a = post_raw(body, strlen(body), "Content-Type", "text/plain", NULL);
    ck_assert_int_eq(a.status, 415);
    ck_assert_ptr_nonnull(strstr(message(&a), "must be application/json"));
    answer_free(&a);
    a = post_raw(body, strlen(body), "Content-Type", "application/jsonx", NULL);
    ck_assert_int_eq(a.status, 415);
    answer_free(&a);
    ck_assert_int_eq(g.emit_calls, 0);
    a = post_raw(body, strlen(body), "Content-Type", "Application/JSON; charset=utf-8", NULL);
    ck_assert_int_eq(a.status, 200);
    answer_free(&a);
    ck_assert(metric("input_otlp_requests_415_total") == 4);
    finish();
}
END_TEST

START_TEST(bearer_token)
{
    setenv("SN_OTLP_TEST_TOKEN", "s3cret-t0ken", 1);
    start("token = ${env:SN_OTLP_TEST_TOKEN}\n");
    const char *body = REQ(GAUGE("g", "{\"asDouble\":1," T1 "}"));
    answer_t a = post_raw(body, strlen(body), "Content-Type", "application/json", NULL);
    ck_assert_int_eq(a.status, 401);
    ck_assert_int_eq(json_integer_value(json_object_get(a.body, "code")), 16);
    answer_free(&a);
    const char *wrong[] = {"Bearer s3cret-t0ke", "Bearer s3cret-t0ken2", "s3cret-t0ken",
                           "Basic s3cret-t0ken"};
    for (size_t i = 0; i < 4; i++) {
        a = post_raw(body, strlen(body), "Content-Type", "application/json", "Authorization",
                     wrong[i], NULL);
        ck_assert_int_eq(a.status, 401);
        ck_assert_ptr_null(strstr(a.text, "s3cret"));
        answer_free(&a);
    }
    ck_assert_int_eq(g.emit_calls, 0);
    /* auth comes first: a wrong token with a wrong content type is still 401 */
    a = post_raw(body, strlen(body), "Content-Type", "text/plain", NULL);
    ck_assert_int_eq(a.status, 401);
    answer_free(&a);
    a = post_raw(body, strlen(body), "Content-Type", "application/json", "Authorization",
                 "Bearer s3cret-t0ken", NULL);
    ck_assert_int_eq(a.status, 200);
    ck_assert_int_eq(g.emit_calls, 1);
    answer_free(&a);
    ck_assert(metric("input_otlp_requests_401_total") == 6);
    finish();
}
END_TEST

START_TEST(backpressure_and_ingest_refusals)
{
    start("");
    size_t len;
    char *body = read_file(SN_TEST_DATA "/otlp/metrics-example.json", &len);
    g.emit_rc = SN_EAGAIN;
    answer_t a = post_raw(body, len, "Content-Type", "application/json", NULL);
    ck_assert_int_eq(a.status, 503);
    ck_assert_int_eq(json_integer_value(json_object_get(a.body, "code")), 14);
    ck_assert_ptr_nonnull(strstr(message(&a), "nothing from this request was taken"));
    ck_assert_int_eq(g.emit_calls, 1); /* the whole request in one call */
    answer_free(&a);
    ck_assert(metric("input_otlp_points_received_total") == 0);
    g.emit_rc = SN_ENOMEM;
    a = post_raw(body, len, "Content-Type", "application/json", NULL);
    ck_assert_int_eq(a.status, 500);
    answer_free(&a);
    /* the retry goes through */
    g.emit_rc = 0;
    g.core_reject = 1;
    a = post_raw(body, len, "Content-Type", "application/json", NULL);
    ck_assert_int_eq(a.status, 200);
    json_t *ps = json_object_get(a.body, "partialSuccess");
    ck_assert_str_eq(json_string_value(json_object_get(ps, "rejectedDataPoints")), "2");
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(ps, "errorMessage")), "1 refused by the ingest"));
    answer_free(&a);
    ck_assert(metric("input_otlp_requests_503_total") == 1);
    ck_assert(metric("input_otlp_requests_500_total") == 1);
    ck_assert(metric("input_otlp_points_accepted_total") == 1);
    free(body);
    finish();
}
END_TEST

START_TEST(bad_settings_refused)
{
    const char *bad[][2] = {
        {"histograms = all\n", "histograms"},
        {"rename = service.name\n", "rename"},
        {"rename = service.name=bad-label\n", "rename"},
        {"max_points = 0\n", "max_points"},
        {"max_decompressed = 10\n", "max_decompressed"},
        {"token = \n", "token"},
        {"tokn = x\n", "did you mean"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sn_err_t err = {{0}};
        void *self = open_otlp(bad[i][0], &err);
        ck_assert_msg(self == NULL, "'%s' accepted", bad[i][0]);
        ck_assert_msg(strstr(err.msg, bad[i][1]) != NULL, "'%s' not in '%s'", bad[i][1], err.msg);
        finish();
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("otlp");
    TCase *tc = tcase_create("input");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, example_request_gives_expected_points);
    tcase_add_test(tc, example_with_count_sum_and_scope_labels);
    tcase_add_test(tc, as_int_as_string_and_number_and_label_mapping);
    tcase_add_test(tc, resource_attributes_and_rename_settings);
    tcase_add_test(tc, skip_and_reject_paths);
    tcase_add_test(tc, reject_reasons_named);
    tcase_add_test(tc, malformed_bodies_name_the_field);
    tcase_add_test(tc, max_points_gives_413);
    tcase_add_test(tc, gzip_bodies_bounded);
    tcase_add_test(tc, content_type_must_be_json);
    tcase_add_test(tc, bearer_token);
    tcase_add_test(tc, backpressure_and_ingest_refusals);
    tcase_add_test(tc, bad_settings_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
