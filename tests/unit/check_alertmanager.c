/**
 * @file check_alertmanager.c
 * Tests of the alertmanager input loaded as a .so through the harness. The harness accepts
 * routes without serving them, so this suite wraps the harness runtime's engine hooks: it keeps
 * the route the plugin registers, serves it with scripted requests, and forwards emit_lines to
 * the harness (so sn_harness_emitted sees what the core would) unless a test scripts a full
 * queue. Covered: payload -> alert lines, the fingerprint fallback (Alertmanager's own hash),
 * group_label, bearer and basic auth, malformed payloads naming the field, max_alerts and the
 * record size bound, backpressure (503), partial refusal by the core, settings errors, and
 * secrets kept out of the log.
 */
#include "harness.h"
#include "runtime-internal.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define AM_LABELS "instance=\"input:alertmanager\""
#define MAX_ROUTES 4
#define MAX_HDRS 4

/* A scripted request: what the route handler reads and what it answers. */
typedef struct fake_req {
    const char *body;
    size_t len;
    const char *hname[MAX_HDRS], *hval[MAX_HDRS];
    int nh;
    int status;
    char ctype[64];
    char reply[4096];
    int replies;
} fake_req_t;

typedef struct fix {
    sn_harness_t *h;
    sn_engine_hooks_t orig;
    void *orig_eng;
    struct {
        char method[8], path[64];
        sn_route_fn fn;
        void *self;
    } routes[MAX_ROUTES];
    int nroutes;
    int emit_rc;  /* non-zero: emit_lines answers this instead of forwarding */
    int emit_cap; /* > 0: forward, but report at most this many records taken */
    int emits;    /* emit_lines calls seen */
} fix_t;

static int w_emit(void *eng, const char *instance, const char *buf, size_t len, const char *origin)
{
    fix_t *f = eng;
    f->emits++;
    if (f->emit_rc)
        return f->emit_rc;
    int n = f->orig.emit_lines(f->orig_eng, instance, buf, len, origin);
    return f->emit_cap > 0 && n > f->emit_cap ? f->emit_cap : n;
}

static int w_route_add(void *eng, const char *instance, const char *method, const char *path,
                       sn_route_fn fn, void *self)
{
    fix_t *f = eng;
    ck_assert_int_lt(f->nroutes, MAX_ROUTES);
    snprintf(f->routes[f->nroutes].method, sizeof(f->routes[0].method), "%s", method);
    snprintf(f->routes[f->nroutes].path, sizeof(f->routes[0].path), "%s", path);
    f->routes[f->nroutes].fn = fn;
    f->routes[f->nroutes].self = self;
    f->nroutes++;
    return f->orig.route_add(f->orig_eng, instance, method, path, fn, self);
}

static int w_audit(void *eng, const char *actor, const char *action, const char *incident,
                   const json_t *detail)
{
    fix_t *f = eng;
    return f->orig.audit(f->orig_eng, actor, action, incident, detail);
}

static int w_decide(void *eng, const char *incident, int approve, const char *actor,
                    const char *reason)
{
    fix_t *f = eng;
    return f->orig.decide(f->orig_eng, incident, approve, actor, reason);
}

static const char *w_req_body(sn_route_req_t *r, size_t *len)
{
    fake_req_t *q = (fake_req_t *)r;
    *len = q->len;
    return q->body;
}

static const char *w_req_header(sn_route_req_t *r, const char *name)
{
    fake_req_t *q = (fake_req_t *)r;
    for (int i = 0; i < q->nh; i++)
        if (strcasecmp(q->hname[i], name) == 0)
            return q->hval[i];
    return NULL;
}

static void w_req_reply(sn_route_req_t *r, int status, const char *content_type, const char *body,
                        size_t len)
{
    fake_req_t *q = (fake_req_t *)r;
    q->replies++;
    q->status = status;
    snprintf(q->ctype, sizeof(q->ctype), "%s", content_type ? content_type : "");
    snprintf(q->reply, sizeof(q->reply), "%.*s", (int)len, body ? body : "");
}

static const sn_engine_hooks_t w_hooks = {
    .emit_lines = w_emit,
    .audit = w_audit,
    .route_add = w_route_add,
    .req_body = w_req_body,
    .req_header = w_req_header,
    .req_reply = w_req_reply,
    .decide = w_decide,
};

/* A harness whose hooks are wrapped, then the plugin with @p settings. Returns 0 or the create
 * error in @p err. */
static int am_open(fix_t *f, const char *settings, sn_err_t *err)
{
    memset(f, 0, sizeof(*f));
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    sn_runtime_t *rt = sn_harness_runtime(f->h);
    f->orig = rt->hooks;
    f->orig_eng = rt->eng;
    sn_runtime_set_hooks(rt, &w_hooks, f);
    sn_err_t local = {{0}};
    void *self =
        sn_harness_create(f->h, SN_INPUT, "alertmanager", settings, NULL, err ? err : &local);
    return self ? 0 : -1;
}

static void am_must_open(fix_t *f, const char *settings)
{
    sn_err_t err = {{0}};
    ck_assert_msg(am_open(f, settings, &err) == 0, "create failed: %s", err.msg);
    ck_assert_int_eq(f->nroutes, 2);
}

static void am_close(fix_t *f)
{
    sn_harness_free(f->h);
}

/* POST @p body to /hooks/alertmanager/<path> with header pairs (name, value, ..., NULL). */
static int post(fix_t *f, const char *path, const char *body, fake_req_t *q, ...)
{
    memset(q, 0, sizeof(*q));
    q->body = body;
    q->len = body ? strlen(body) : 0;
    va_list ap;
    va_start(ap, q);
    for (const char *n; (n = va_arg(ap, const char *)) != NULL && q->nh < MAX_HDRS; q->nh++) {
        q->hname[q->nh] = n;
        q->hval[q->nh] = va_arg(ap, const char *);
    }
    va_end(ap);
    for (int i = 0; i < f->nroutes; i++) {
        if (strcmp(f->routes[i].path, path) == 0 && strcmp(f->routes[i].method, "POST") == 0) {
            f->routes[i].fn(f->routes[i].self, (sn_route_req_t *)q);
            ck_assert_int_eq(q->replies, 1);
            return q->status;
        }
    }
    ck_abort_msg("no route '%s'", path);
    return 0;
}

static double metric(fix_t *f, const char *name)
{
    return sn_metric_value(sn_harness_runtime(f->h), name, AM_LABELS);
}

/* The emitted records of emit call @p call as JSON objects. Ownership: caller decrefs. */
static json_t *emitted_records(fix_t *f, size_t call)
{
    json_t *em = sn_harness_emitted(f->h);
    ck_assert_uint_gt(json_array_size(em), call);
    const char *body = json_string_value(json_object_get(json_array_get(em, call), "body"));
    ck_assert_ptr_nonnull(body);
    json_t *out = json_array();
    for (const char *p = body; *p;) {
        const char *nl = strchr(p, '\n');
        ck_assert_msg(nl != NULL, "every record ends with a newline");
        json_error_t e;
        json_t *o = json_loadb(p, (size_t)(nl - p), 0, &e);
        ck_assert_msg(o != NULL, "record is JSON: %s", e.text);
        json_array_append_new(out, o);
        p = nl + 1;
    }
    return out;
}

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static const char PAYLOAD[] =
    "{\"receiver\":\"sentinel\",\"status\":\"firing\",\"version\":\"4\","
    "\"groupKey\":\"{}:{alertname=\\\"HighLatency\\\", service=\\\"checkout\\\"}\","
    "\"truncatedAlerts\":0,\"groupLabels\":{\"alertname\":\"HighLatency\"},"
    "\"commonLabels\":{},\"commonAnnotations\":{},\"externalURL\":\"http://am:9093\","
    "\"alerts\":["
    "{\"status\":\"firing\",\"labels\":{\"alertname\":\"HighLatency\",\"service\":\"checkout\","
    "\"severity\":\"page\"},\"annotations\":{\"summary\":\"p99 over 2 s\"},"
    "\"startsAt\":\"2026-01-01T10:00:00.123456789Z\",\"endsAt\":\"0001-01-01T00:00:00Z\","
    "\"generatorURL\":\"http://prom/graph\",\"fingerprint\":\"75072a3d82457715\"},"
    "{\"status\":\"resolved\",\"labels\":{\"alertname\":\"HighLatency\",\"service\":\"cart\"},"
    "\"annotations\":{},\"startsAt\":\"2026-01-01T09:00:00+01:00\","
    "\"endsAt\":\"2026-01-01T09:30:00Z\",\"fingerprint\":\"00000000000000aa\"}]}";

START_TEST(payload_becomes_one_batch_of_alert_lines)
{
    fix_t f;
    am_must_open(&f, "");
    fake_req_t q;
    ck_assert_int_eq(post(&f, "webhook", PAYLOAD, &q, "X-Request-ID", "req-1", NULL), 200);
    ck_assert_str_eq(q.ctype, "application/json");
    json_t *rep = json_loads(q.reply, 0, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(rep, "accepted")), 2);
    json_decref(rep);
    ck_assert_int_eq(f.emits, 1); /* the whole notification in one call */
    json_t *em = json_array_get(sn_harness_emitted(f.h), 0);
    ck_assert_str_eq(str(em, "instance"), "input:alertmanager");
    ck_assert_ptr_nonnull(strstr(str(em, "origin"), "req-1"));

    json_t *recs = emitted_records(&f, 0);
    ck_assert_uint_eq(json_array_size(recs), 2);
    json_t *a = json_array_get(recs, 0);
    ck_assert_str_eq(str(a, "ts"), "2026-01-01T10:00:00.123456789Z"); /* as given */
    ck_assert_str_eq(str(a, "alert"), "HighLatency");
    ck_assert_str_eq(str(a, "status"), "firing");
    ck_assert_str_eq(str(a, "fingerprint"), "75072a3d82457715");
    ck_assert_str_eq(str(a, "group"), "{}:{alertname=\"HighLatency\", service=\"checkout\"}");
    json_t *labels = json_object_get(a, "labels");
    ck_assert_uint_eq(json_object_size(labels), 2);
    ck_assert_ptr_null(json_object_get(labels, "alertname"));
    ck_assert_str_eq(str(labels, "service"), "checkout");
    ck_assert_str_eq(str(labels, "severity"), "page");
    ck_assert_str_eq(str(json_object_get(a, "annotations"), "summary"), "p99 over 2 s");
    ck_assert_ptr_null(json_object_get(a, "ends")); /* only resolved alerts carry ends */
    ck_assert_ptr_null(json_object_get(a, "generatorURL"));

    json_t *b = json_array_get(recs, 1);
    ck_assert_str_eq(str(b, "status"), "resolved");
    ck_assert_str_eq(str(b, "ts"), "2026-01-01T09:00:00+01:00");
    ck_assert_str_eq(str(b, "ends"), "2026-01-01T09:30:00Z");
    ck_assert_str_eq(str(b, "fingerprint"), "00000000000000aa");
    ck_assert(json_is_object(json_object_get(b, "annotations")));
    json_decref(recs);

    ck_assert(metric(&f, "input_alertmanager_alerts_firing_total") == 1);
    ck_assert(metric(&f, "input_alertmanager_alerts_resolved_total") == 1);
    ck_assert(metric(&f, "input_alertmanager_payloads_200_total") == 1);

    /* The bare instance path answers too; an empty alerts list is taken without an emit. */
    ck_assert_int_eq(post(&f, "", "{\"version\":\"4\",\"groupKey\":\"g\",\"alerts\":[]}", &q, NULL),
                     200);
    ck_assert_int_eq(f.emits, 1);
    ck_assert(metric(&f, "input_alertmanager_payloads_200_total") == 2);
    am_close(&f);
}
END_TEST

START_TEST(fingerprint_fallback_is_alertmanagers_hash)
{
    fix_t f;
    am_must_open(&f, "");
    fake_req_t q;
    /* Same label set as PAYLOAD's first alert, other order, no fingerprint: the value the
     * real Alertmanager 0.25 sent for it. */
    const char *body =
        "{\"version\":\"4\",\"groupKey\":\"g\",\"alerts\":["
        "{\"status\":\"firing\",\"labels\":{\"severity\":\"page\",\"service\":\"checkout\","
        "\"alertname\":\"HighLatency\"},\"startsAt\":\"2026-01-01T10:00:00Z\"},"
        "{\"status\":\"firing\",\"labels\":{\"alertname\":\"HighLatency\",\"service\":\"cart\","
        "\"severity\":\"page\"},\"startsAt\":\"2026-01-01T10:00:00Z\",\"fingerprint\":\"\"},"
        "{\"status\":\"firing\",\"labels\":{\"job\":\"node\"},\"annotations\":null,"
        "\"startsAt\":\"2026-01-01T10:00:00Z\"}]}";
    ck_assert_int_eq(post(&f, "webhook", body, &q, NULL), 200);
    json_t *recs = emitted_records(&f, 0);
    ck_assert_uint_eq(json_array_size(recs), 3);
    const char *fp0 = str(json_array_get(recs, 0), "fingerprint");
    char fp1[32];
    snprintf(fp1, sizeof(fp1), "%s", str(json_array_get(recs, 1), "fingerprint"));
    ck_assert_str_eq(fp0, "75072a3d82457715");
    ck_assert_uint_eq(strlen(fp1), 16);
    ck_assert_str_ne(fp0, fp1);
    json_t *c = json_array_get(recs, 2);
    ck_assert_str_eq(str(c, "alert"), "alert"); /* no alertname */
    ck_assert_str_eq(str(json_object_get(c, "labels"), "job"), "node");
    ck_assert_uint_eq(json_object_size(json_object_get(c, "annotations")), 0);
    ck_assert_str_eq(str(c, "group"), "g");
    json_decref(recs);

    /* Stable: the same notification again gives the same fingerprints. */
    ck_assert_int_eq(post(&f, "webhook", body, &q, NULL), 200);
    recs = emitted_records(&f, 1);
    ck_assert_str_eq(str(json_array_get(recs, 1), "fingerprint"), fp1);
    json_decref(recs);
    am_close(&f);
}
END_TEST

START_TEST(group_label_fills_missing_service)
{
    fix_t f;
    am_must_open(&f, "group_label = job");
    fake_req_t q;
    const char *body = "{\"version\":\"4\",\"groupKey\":\"g\",\"alerts\":["
                       "{\"status\":\"firing\",\"labels\":{\"alertname\":\"Down\",\"job\":\"api\"},"
                       "\"startsAt\":\"2026-01-01T10:00:00Z\"},"
                       "{\"status\":\"firing\",\"labels\":{\"alertname\":\"Down\",\"job\":\"api\","
                       "\"service\":\"gateway\"},\"startsAt\":\"2026-01-01T10:00:00Z\"},"
                       "{\"status\":\"firing\",\"labels\":{\"alertname\":\"Down\"},"
                       "\"startsAt\":\"2026-01-01T10:00:00Z\"}]}";
    ck_assert_int_eq(post(&f, "webhook", body, &q, NULL), 200);
    json_t *recs = emitted_records(&f, 0);
    json_t *l0 = json_object_get(json_array_get(recs, 0), "labels");
    ck_assert_str_eq(str(l0, "service"), "api");
    ck_assert_str_eq(str(l0, "job"), "api");
    ck_assert_str_eq(str(json_object_get(json_array_get(recs, 1), "labels"), "service"),
                     "gateway"); /* an existing service label wins */
    ck_assert_ptr_null(
        json_object_get(json_object_get(json_array_get(recs, 2), "labels"), "service"));
    /* The fingerprint is the sender's label set, before the copy. */
    ck_assert_str_ne(str(json_array_get(recs, 0), "fingerprint"),
                     str(json_array_get(recs, 1), "fingerprint"));
    json_decref(recs);
    am_close(&f);
}
END_TEST

static const char SMALL[] =
    "{\"version\":\"4\",\"groupKey\":\"g\",\"alerts\":[{\"status\":\"firing\","
    "\"labels\":{\"alertname\":\"A\"},\"startsAt\":\"2026-01-01T10:00:00Z\"}]}";

START_TEST(bearer_token_from_env)
{
    setenv("AM_TEST_TOKEN", "tok-0123456789", 1);
    fix_t f;
    am_must_open(&f, "token = ${env:AM_TEST_TOKEN}");
    fake_req_t q;
    ck_assert_int_eq(post(&f, "webhook", SMALL, &q, NULL), 401);
    ck_assert_ptr_nonnull(strstr(q.reply, "credentials"));
    ck_assert_int_eq(post(&f, "webhook", SMALL, &q, "Authorization", "Bearer tok-012345678", NULL),
                     401);
    ck_assert_int_eq(
        post(&f, "webhook", SMALL, &q, "Authorization", "Bearer tok-01234567890", NULL), 401);
    ck_assert_int_eq(post(&f, "webhook", SMALL, &q, "Authorization", "Basic tok-0123456789", NULL),
                     401);
    ck_assert_int_eq(f.emits, 0);
    ck_assert(metric(&f, "input_alertmanager_payloads_401_total") == 4);
    ck_assert_int_eq(post(&f, "webhook", SMALL, &q, "Authorization", "Bearer tok-0123456789", NULL),
                     200);
    ck_assert_int_eq(post(&f, "", SMALL, &q, "authorization", "bearer tok-0123456789", NULL), 200);
    ck_assert_int_eq(f.emits, 2);
    am_close(&f);
    unsetenv("AM_TEST_TOKEN");
}
END_TEST

START_TEST(basic_auth)
{
    setenv("AM_TEST_PASS", "pa:ss", 1);
    fix_t f;
    am_must_open(&f, "username = am\npassword = ${env:AM_TEST_PASS}");
    fake_req_t q;
    /* base64("am:pa:ss") = YW06cGE6c3M= */
    ck_assert_int_eq(post(&f, "webhook", SMALL, &q, "Authorization", "Basic YW06cGE6c3M=", NULL),
                     200);
    ck_assert_int_eq(post(&f, "webhook", SMALL, &q, "Authorization", "Basic YW06cGE6c3N=", NULL),
                     401);
    ck_assert_int_eq(post(&f, "webhook", SMALL, &q, "Authorization", "Bearer YW06cGE6c3M=", NULL),
                     401);
    ck_assert_int_eq(post(&f, "webhook", SMALL, &q, NULL), 401);
    ck_assert_int_eq(f.emits, 1);
    am_close(&f);
    unsetenv("AM_TEST_PASS");
}
END_TEST

/* Posts @p body, expects @p code, an error naming @p needle and @p emits emit_lines calls. */
static void refused_emits(fix_t *f, const char *body, int code, const char *needle, int emits)
{
    fake_req_t q;
    emits += f->emits;
    ck_assert_int_eq(post(f, "webhook", body, &q, "X-Request-ID", "rid-7", NULL), code);
    json_t *rep = json_loads(q.reply, 0, NULL);
    ck_assert_msg(rep != NULL, "reply is JSON: %s", q.reply);
    const char *err = str(rep, "error");
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err, needle) != NULL, "'%s' names '%s'", err, needle);
    ck_assert_str_eq(str(rep, "request_id"), "rid-7");
    json_decref(rep);
    ck_assert_int_eq(f->emits, emits);
}

/* The same, for refusals before anything reaches the core. */
static void refused(fix_t *f, const char *body, int code, const char *needle)
{
    refused_emits(f, body, code, needle, 0);
}

#define ALERT(status, extra)                                                                       \
    "{\"status\":\"" status "\",\"labels\":{\"alertname\":\"A\"},"                                 \
    "\"startsAt\":\"2026-01-01T10:00:00Z\"" extra "}"
#define NOTE(alerts) "{\"version\":\"4\",\"groupKey\":\"g\",\"alerts\":[" alerts "]}"

START_TEST(malformed_payloads_name_the_field)
{
    fix_t f;
    am_must_open(&f, "");
    refused(&f, "", 400, "empty body");
    refused(&f, "{\"version\":\"4\",", 400, "not JSON");
    refused(&f, "[1,2]", 400, "not a JSON object");
    refused(&f, "{\"version\":\"3\",\"alerts\":[]}", 400, "'version': \"3\"");
    refused(&f, "{\"version\":4,\"alerts\":[]}", 400, "'version': missing");
    refused(&f, "{\"version\":\"4\"}", 400, "'alerts'");
    refused(&f, "{\"version\":\"4\",\"groupKey\":5,\"alerts\":[]}", 400, "'groupKey'");
    refused(&f, NOTE(ALERT("firing", "") ", 7"), 400, "'alerts[1]'");
    refused(&f, NOTE(ALERT("firing", "") "," ALERT("pending", "")), 400, "'alerts[1].status'");
    refused(&f, NOTE("{\"status\":\"firing\",\"startsAt\":\"2026-01-01T10:00:00Z\"}"), 400,
            "'alerts[0].labels': missing");
    refused(&f,
            NOTE("{\"status\":\"firing\",\"labels\":{\"alertname\":\"A\",\"n\":3},"
                 "\"startsAt\":\"2026-01-01T10:00:00Z\"}"),
            400, "'alerts[0].labels.n': not a string");
    refused(&f, NOTE(ALERT("firing", ",\"annotations\":[]")), 400, "'alerts[0].annotations'");
    refused(&f, NOTE("{\"status\":\"firing\",\"labels\":{},\"startsAt\":\"yesterday\"}"), 400,
            "'alerts[0].startsAt'");
    refused(&f, NOTE("{\"status\":\"firing\",\"labels\":{}}"), 400, "'alerts[0].startsAt'");
    refused(&f, NOTE(ALERT("resolved", ",\"endsAt\":\"0001-01-01T00:00:00Z\"")), 400,
            "'alerts[0].endsAt'");
    refused(&f, NOTE(ALERT("resolved", "")), 400, "'alerts[0].endsAt'");
    refused(&f, NOTE(ALERT("firing", ",\"fingerprint\":12")), 400, "'alerts[0].fingerprint'");
    refused(&f, "{\"version\":\"4\",\"version\":\"4\",\"alerts\":[]}", 400, "not JSON");
    ck_assert(metric(&f, "input_alertmanager_payloads_400_total") == 18);
    ck_assert_uint_eq(json_array_size(sn_harness_emitted(f.h)), 0);
    am_close(&f);
}
END_TEST

START_TEST(limits_refuse_with_413)
{
    fix_t f;
    am_must_open(&f, "max_alerts = 2");
    fake_req_t q;
    refused(&f, NOTE(ALERT("firing", "") "," ALERT("firing", "") "," ALERT("firing", "")), 413,
            "3 alerts in one notification, over max_alerts 2");
    ck_assert_int_eq(
        post(&f, "webhook", NOTE(ALERT("firing", "") "," ALERT("firing", "")), &q, NULL), 200);
    /* A group key that cannot fit in a record of the core: refused whole, not truncated. */
    size_t big = 70000;
    char *body = malloc(big + 512);
    int n = snprintf(body, big + 512, "{\"version\":\"4\",\"groupKey\":\"");
    memset(body + n, 'g', big);
    snprintf(body + n + big, 512, "\",\"alerts\":[" ALERT("firing", "") "]}");
    refused(&f, body, 413, "alerts[0]");
    free(body);
    ck_assert(metric(&f, "input_alertmanager_payloads_413_total") == 2);
    ck_assert_int_eq(f.emits, 1);
    am_close(&f);
}
END_TEST

/* Labels, names and annotations are fitted to what the core takes in one record, so an alert is
 * never lost for its decoration; the fingerprint stays the sender's. */
START_TEST(alerts_are_fitted_to_the_core_limits)
{
    fix_t f;
    am_must_open(&f, "");
    char *body = malloc(200000);
    size_t off = (size_t)sprintf(
        body, "{\"version\":\"4\",\"groupKey\":\"g\",\"alerts\":["
              "{\"status\":\"firing\",\"startsAt\":\"2026-01-01T10:00:00Z\","
              "\"fingerprint\":\"f1\",\"labels\":{\"alertname\":\"9 high "
              "latency \u00e9\",\"service\":\"zz\",\"bad-name\":\"v\",\"a_long\":\"");
    memset(body + off, 'v', 300);
    off += 300;
    off += (size_t)sprintf(body + off, "\"");
    for (int i = 0; i < 40; i++)
        off += (size_t)sprintf(body + off, ",\"l%02d\":\"x\"", i);
    off += (size_t)sprintf(body + off, "},\"annotations\":{\"summary\":\"short\",\"d\":\"");
    memset(body + off, 'd', 80000);
    off += 80000;
    sprintf(body + off, "\"}}]}");
    fake_req_t q;
    ck_assert_int_eq(post(&f, "webhook", body, &q, NULL), 200);
    free(body);
    json_t *recs = emitted_records(&f, 0);
    json_t *a = json_array_get(recs, 0);
    ck_assert_str_eq(str(a, "alert"), "_9_high_latency__");
    ck_assert_str_eq(str(a, "fingerprint"), "f1");
    json_t *l = json_object_get(a, "labels");
    ck_assert_uint_eq(json_object_size(l), 32);
    ck_assert_str_eq(str(l, "service"), "zz");                        /* kept first */
    ck_assert_str_eq(str(l, "alertname"), "9 high latency \xc3\xa9"); /* the original */
    ck_assert_str_eq(str(l, "bad_name"), "v");
    ck_assert_uint_eq(strlen(str(l, "a_long")), 256);
    json_t *an = json_object_get(a, "annotations");
    ck_assert_str_eq(str(an, "summary"), "short");
    ck_assert_uint_eq(strlen(str(an, "d")), 1024);
    json_decref(recs);
    ck_assert(metric(&f, "input_alertmanager_alerts_fitted_total") == 1);
    am_close(&f);
}
END_TEST

START_TEST(full_queue_answers_503_and_partial_refusal_400)
{
    fix_t f;
    am_must_open(&f, "");
    f.emit_rc = SN_EAGAIN;
    refused_emits(&f, NOTE(ALERT("firing", "")), 503, "retry", 1);
    ck_assert_int_eq(f.emits, 1);
    ck_assert(metric(&f, "input_alertmanager_payloads_503_total") == 1);
    ck_assert(metric(&f, "input_alertmanager_alerts_firing_total") == 0);
    f.emit_rc = SN_EIO;
    fake_req_t q;
    ck_assert_int_eq(post(&f, "webhook", NOTE(ALERT("firing", "")), &q, NULL), 500);
    /* The core takes one of two records: named, not retried as a 5xx. */
    f.emit_rc = 0;
    f.emit_cap = 1;
    ck_assert_int_eq(
        post(&f, "webhook", NOTE(ALERT("firing", "") "," ALERT("firing", "")), &q, NULL), 400);
    json_t *rep = json_loads(q.reply, 0, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(rep, "accepted")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(rep, "rejected")), 1);
    json_decref(rep);
    am_close(&f);
}
END_TEST

START_TEST(settings_errors)
{
    static const struct {
        const char *settings, *needle;
    } bad[] = {
        {"token = a\nusername = u\npassword = p", "exclude"},
        {"username = u", "go together"},
        {"password = p", "go together"},
        {"username = a:b\npassword = p", "username"},
        {"max_alerts = 0", "max_alerts"},
        {"max_alerts = 1000000", "max_alerts"},
        {"group_label = service", "group_label"},
        {"group_label = bad-name", "group_label"},
        {"token = ${env:AM_TEST_UNSET_VAR}", "AM_TEST_UNSET_VAR"},
    };
    unsetenv("AM_TEST_UNSET_VAR");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fix_t f;
        sn_err_t err = {{0}};
        ck_assert_msg(am_open(&f, bad[i].settings, &err) != 0, "'%s' is refused", bad[i].settings);
        ck_assert_msg(strstr(err.msg, bad[i].needle) != NULL, "'%s' names '%s'", err.msg,
                      bad[i].needle);
        ck_assert_int_eq(f.nroutes, 0);
        am_close(&f);
    }
}
END_TEST

START_TEST(secrets_never_logged)
{
    char path[] = "/tmp/sn-am-log-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    setenv("AM_TEST_TOKEN", "very-secret-token-42", 1);
    fix_t f;
    am_must_open(&f, "token = ${env:AM_TEST_TOKEN}");
    fake_req_t q;
    ck_assert_int_eq(
        post(&f, "webhook", SMALL, &q, "Authorization", "Bearer guessed-token-99", NULL), 401);
    ck_assert_int_eq(
        post(&f, "webhook", "{", &q, "Authorization", "Bearer very-secret-token-42", NULL), 400);
    am_close(&f);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char log[16384] = "";
    ssize_t n = pread(fd, log, sizeof(log) - 1, 0);
    close(fd);
    unlink(path);
    ck_assert_int_gt(n, 0);
    log[n] = '\0';
    ck_assert_msg(strstr(log, "401") != NULL, "the refusal is logged: %s", log);
    ck_assert_ptr_null(strstr(log, "very-secret-token-42"));
    ck_assert_ptr_null(strstr(log, "guessed-token-99"));
    ck_assert_ptr_null(strstr(q.reply, "very-secret-token-42"));
    unsetenv("AM_TEST_TOKEN");
}
END_TEST

static Suite *am_suite(void)
{
    Suite *s = suite_create("alertmanager");
    TCase *tc = tcase_create("webhook");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, payload_becomes_one_batch_of_alert_lines);
    tcase_add_test(tc, fingerprint_fallback_is_alertmanagers_hash);
    tcase_add_test(tc, group_label_fills_missing_service);
    tcase_add_test(tc, bearer_token_from_env);
    tcase_add_test(tc, basic_auth);
    tcase_add_test(tc, malformed_payloads_name_the_field);
    tcase_add_test(tc, limits_refuse_with_413);
    tcase_add_test(tc, alerts_are_fitted_to_the_core_limits);
    tcase_add_test(tc, full_queue_answers_503_and_partial_refusal_400);
    tcase_add_test(tc, settings_errors);
    tcase_add_test(tc, secrets_never_logged);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(am_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
