/**
 * @file check_webhook.c
 * Tests of the webhook notifier loaded as a .so through the harness, against a scripted evhttp
 * receiver on 127.0.0.1 (an ephemeral port) served by the harness's own loop: signature and
 * body, retries on 503 and transport errors, giving up, Retry-After, no retry on 400, the
 * pending-delivery bound, and the JSON body template (types kept, nested paths, unknown paths
 * refused at create, values that cannot break out of their strings). The log notifier's one
 * line is checked here too.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WH_LABELS "instance=\"notifier:webhook\""
#define SECRET "whsec-test-0123456789"
#define MAX_REQS 16

typedef struct seen {
    char *body;
    char ts[32];
    char sig[96];
    char ctype[64];
    char team[32];
    char event[32];
    int64_t at;
} seen_t;

/* The receiver: answers request i with status[i] (the last one repeats). */
typedef struct rcv {
    struct evhttp *http;
    int port;
    int status[8];
    int nstatus;
    const char *retry_after; /* sent with 429 */
    seen_t seen[MAX_REQS];
    int n;
} rcv_t;

static const char *hdr(struct evhttp_request *req, const char *name)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
    return v ? v : "";
}

static void rcv_cb(struct evhttp_request *req, void *arg)
{
    rcv_t *rc = arg;
    int i = rc->n < rc->nstatus ? rc->n : rc->nstatus - 1;
    int code = rc->status[i];
    if (rc->n < MAX_REQS) {
        seen_t *s = &rc->seen[rc->n];
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        s->body = calloc(1, len + 1);
        evbuffer_copyout(in, s->body, len);
        snprintf(s->ts, sizeof(s->ts), "%s", hdr(req, "X-Sentinel-Timestamp"));
        snprintf(s->sig, sizeof(s->sig), "%s", hdr(req, "X-Sentinel-Signature"));
        snprintf(s->ctype, sizeof(s->ctype), "%s", hdr(req, "Content-Type"));
        snprintf(s->team, sizeof(s->team), "%s", hdr(req, "X-Team"));
        snprintf(s->event, sizeof(s->event), "%s", hdr(req, "X-Sentinel-Event"));
        s->at = sn_mono_ms();
    }
    rc->n++;
    if (code == 429 && rc->retry_after)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", rc->retry_after);
    struct evbuffer *out = evbuffer_new();
    evbuffer_add_printf(out, "{\"code\":%d}", code);
    evhttp_send_reply(req, code, code < 300 ? "OK" : "Nope", out);
    evbuffer_free(out);
}

typedef struct wh_fix {
    sn_harness_t *h;
    rcv_t rcv;
    const sn_notifier_ops_t *ops;
    void *self;
} wh_fix_t;

static void rcv_start(wh_fix_t *f, const int *codes, int n)
{
    memset(&f->rcv, 0, sizeof(f->rcv));
    for (int i = 0; i < n; i++)
        f->rcv.status[i] = codes[i];
    f->rcv.nstatus = n;
    f->rcv.http = evhttp_new(sn_runtime_base(sn_harness_runtime(f->h)));
    ck_assert_ptr_nonnull(f->rcv.http);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(f->rcv.http, "127.0.0.1", 0);
    ck_assert_ptr_nonnull(bs);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    ck_assert_int_eq(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl), 0);
    f->rcv.port = ntohs(sa.sin_port);
    evhttp_set_gencb(f->rcv.http, rcv_cb, &f->rcv);
}

/* Start the receiver with @p codes, then the notifier with @p extra settings. */
static void wh_open(wh_fix_t *f, const int *codes, int n, const char *extra)
{
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    rcv_start(f, codes, n);
    char settings[1024];
    snprintf(settings, sizeof(settings),
             "url = http://127.0.0.1:%d/hooks/sentinel?x=1\nretry_base = 10ms\n%s", f->rcv.port,
             extra ? extra : "");
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    f->self = sn_harness_create(f->h, SN_NOTIFIER, "webhook", settings, &p, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    f->ops = p->ops;
}

static void wh_close(wh_fix_t *f)
{
    for (int i = 0; i < f->rcv.n && i < MAX_REQS; i++)
        free(f->rcv.seen[i].body);
    evhttp_free(f->rcv.http);
    sn_harness_free(f->h);
}

static json_t *incident(void)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:[s],s:[{s:s,s:f},{s:s,s:f},{s:s,s:f},{s:s,s:f}],"
                     "s:[{s:s,s:s,s:s}],s:[]}",
                     "id", "0190a0b0-0000-7000-8000-00000000abcd", "state", "waiting_approval",
                     "severity", "critical", "title", "checkout latency p99 x8", "services",
                     "checkout", "hypotheses", "cause", "low", "confidence", 0.1, "cause",
                     "deploy v2.3.1", "confidence", 0.8, "cause", "db pool", "confidence", 0.5,
                     "cause", "noise", "confidence", 0.3, "plan", "executor", "k8s", "verb",
                     "rollout_restart", "target", "deployment/shop/checkout", "timeline");
}

static double metric(wh_fix_t *f, const char *name)
{
    return sn_metric_value(sn_harness_runtime(f->h), name, WH_LABELS);
}

static int notify_wait(wh_fix_t *f, const char *event, sn_result_t *r, int64_t ms)
{
    json_t *inc = incident();
    memset(r, 0, sizeof(*r));
    f->ops->notify(f->self, inc, event, sn_result_done, r);
    json_decref(inc);
    ck_assert_int_eq(sn_harness_wait(f->h, r, ms), 0);
    return r->status;
}

static int count_newlines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The receiver's check: HMAC over "<timestamp>.<body>" with the shared secret. */
static void assert_signed(const seen_t *s)
{
    char *msg = NULL;
    ck_assert_int_gt(asprintf(&msg, "%s.%s", s->ts, s->body), 0);
    char hex[65], want[80];
    sn_hmac_sha256_hex(SECRET, strlen(SECRET), msg, strlen(msg), hex);
    snprintf(want, sizeof(want), "v1=%s", hex);
    ck_assert_str_eq(s->sig, want);
    /* A different secret gives a different signature. */
    sn_hmac_sha256_hex("not-the-secret", 14, msg, strlen(msg), hex);
    ck_assert_str_ne(s->sig + 3, hex);
    free(msg);
}

START_TEST(signed_delivery_carries_the_incident)
{
    setenv("SN_TEST_WEBHOOK_SECRET", SECRET, 1);
    wh_fix_t f;
    int codes[] = {204};
    wh_open(&f, codes, 1,
            "secret = ${env:SN_TEST_WEBHOOK_SECRET}\nheader = X-Team: sre\n"
            "header = X-Env: test\n");
    sn_result_t r;
    ck_assert_int_eq(notify_wait(&f, "approval_needed", &r, 5000), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "attempts")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "status")), 204);
    sn_result_clear(&r);
    ck_assert_int_eq(f.rcv.n, 1);
    const seen_t *s = &f.rcv.seen[0];
    ck_assert_str_eq(s->ctype, "application/json");
    ck_assert_str_eq(s->team, "sre");
    ck_assert_str_eq(s->event, "approval_needed");
    long long ts = strtoll(s->ts, NULL, 10);
    long long now = (long long)(sn_now_ms() / 1000);
    ck_assert_msg(ts > now - 5 && ts <= now + 1, "timestamp %s vs now %lld", s->ts, now);
    assert_signed(s);

    json_t *body = json_loads(s->body, 0, NULL);
    ck_assert_ptr_nonnull(body);
    ck_assert_str_eq(json_string_value(json_object_get(body, "event")), "approval_needed");
    ck_assert(json_is_string(json_object_get(body, "sent_at")));
    json_t *inc = json_object_get(body, "incident");
    ck_assert_str_eq(json_string_value(json_object_get(inc, "id")),
                     "0190a0b0-0000-7000-8000-00000000abcd");
    ck_assert_str_eq(json_string_value(json_object_get(inc, "severity")), "critical");
    ck_assert_str_eq(json_string_value(json_object_get(inc, "state")), "waiting_approval");
    ck_assert_str_eq(json_string_value(json_object_get(inc, "title")), "checkout latency p99 x8");
    ck_assert_uint_eq(json_array_size(json_object_get(inc, "services")), 1);
    ck_assert_uint_eq(json_array_size(json_object_get(inc, "plan")), 1);
    ck_assert_ptr_null(json_object_get(inc, "timeline"));
    json_t *hyps = json_object_get(inc, "hypotheses");
    ck_assert_uint_eq(json_array_size(hyps), 3);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(hyps, 0), "cause")),
                     "deploy v2.3.1");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(hyps, 1), "cause")),
                     "db pool");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(hyps, 2), "cause")), "noise");
    json_decref(body);
    ck_assert(metric(&f, "notifier_webhook_sent_total") == 1.0);
    wh_close(&f);
}
END_TEST

START_TEST(unsigned_without_secret)
{
    wh_fix_t f;
    int codes[] = {200};
    wh_open(&f, codes, 1, NULL);
    sn_result_t r;
    ck_assert_int_eq(notify_wait(&f, "opened", &r, 5000), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(f.rcv.n, 1);
    ck_assert_str_eq(f.rcv.seen[0].sig, "");
    ck_assert_str_ne(f.rcv.seen[0].ts, "");
    wh_close(&f);
}
END_TEST

START_TEST(retries_503_then_succeeds)
{
    setenv("SN_TEST_WEBHOOK_SECRET", SECRET, 1);
    wh_fix_t f;
    int codes[] = {503, 502, 200};
    wh_open(&f, codes, 3, "secret = ${env:SN_TEST_WEBHOOK_SECRET}\n");
    sn_result_t r;
    ck_assert_int_eq(notify_wait(&f, "opened", &r, 5000), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "attempts")), 3);
    sn_result_clear(&r);
    ck_assert_int_eq(f.rcv.n, 3);
    /* Same body every time, each attempt signed for its own timestamp. */
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(f.rcv.seen[i].body, f.rcv.seen[0].body);
        assert_signed(&f.rcv.seen[i]);
    }
    ck_assert(metric(&f, "notifier_webhook_retries_total") == 2.0);
    ck_assert(metric(&f, "notifier_webhook_sent_total") == 1.0);
    wh_close(&f);
}
END_TEST

START_TEST(gives_up_after_max_retries)
{
    wh_fix_t f;
    int codes[] = {500};
    wh_open(&f, codes, 1, "max_retries = 2\n");
    sn_result_t r;
    ck_assert_int_eq(notify_wait(&f, "opened", &r, 5000), SN_EIO);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "attempts")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "status")), 500);
    sn_result_clear(&r);
    sn_harness_run_ms(f.h, 100);
    ck_assert_int_eq(f.rcv.n, 3);
    ck_assert(metric(&f, "notifier_webhook_failed_total") == 1.0);
    wh_close(&f);
}
END_TEST

START_TEST(retry_after_is_honoured)
{
    wh_fix_t f;
    int codes[] = {429, 200};
    wh_open(&f, codes, 2, NULL);
    f.rcv.retry_after = "1";
    sn_result_t r;
    ck_assert_int_eq(notify_wait(&f, "opened", &r, 5000), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(f.rcv.n, 2);
    int64_t gap = f.rcv.seen[1].at - f.rcv.seen[0].at;
    /* Backoff alone would be at most retry_base (10 ms). */
    ck_assert_msg(gap >= 950 && gap < 3000, "second attempt after %lld ms", (long long)gap);
    wh_close(&f);
}
END_TEST

START_TEST(client_error_is_not_retried)
{
    wh_fix_t f;
    int codes[] = {400, 200};
    wh_open(&f, codes, 2, "max_retries = 5\n");
    sn_result_t r;
    ck_assert_int_eq(notify_wait(&f, "opened", &r, 5000), SN_EIO);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "attempts")), 1);
    sn_result_clear(&r);
    sn_harness_run_ms(f.h, 150);
    ck_assert_int_eq(f.rcv.n, 1);
    ck_assert(metric(&f, "notifier_webhook_retries_total") == 0.0);
    wh_close(&f);
}
END_TEST

START_TEST(transport_errors_are_retried)
{
    /* A port nobody listens on: bind, learn the port, close. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    sn_harness_t *h = sn_harness_new();
    char settings[256];
    snprintf(settings, sizeof(settings),
             "url = http://127.0.0.1:%d/\nretry_base = 10ms\nmax_retries = 2\n",
             ntohs(sa.sin_port));
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    void *self = sn_harness_create(h, SN_NOTIFIER, "webhook", settings, &p, &err);
    ck_assert_msg(self != NULL, "%s", err.msg);
    json_t *inc = incident();
    sn_result_t r = {0};
    ((const sn_notifier_ops_t *)p->ops)->notify(self, inc, "opened", sn_result_done, &r);
    json_decref(inc);
    ck_assert_int_eq(sn_harness_wait(h, &r, 5000), 0);
    ck_assert_int_eq(r.status, SN_EIO);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "attempts")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "status")), 0);
    sn_result_clear(&r);
    sn_harness_free(h);
}
END_TEST

START_TEST(pending_bound_refuses_at_once)
{
    wh_fix_t f;
    int codes[] = {200};
    wh_open(&f, codes, 1, "max_pending = 1\n");
    json_t *inc = incident();
    sn_result_t a = {0}, b = {0};
    f.ops->notify(f.self, inc, "opened", sn_result_done, &a);
    ck_assert(!a.done);
    f.ops->notify(f.self, inc, "opened", sn_result_done, &b);
    ck_assert(b.done);
    ck_assert_int_eq(b.status, SN_ENOMEM);
    ck_assert_int_eq(sn_harness_wait(f.h, &a, 5000), 0);
    ck_assert_int_eq(a.status, 0);
    ck_assert(metric(&f, "notifier_webhook_dropped_total") == 1.0);
    /* Room again once the first one is through. */
    sn_result_clear(&b);
    f.ops->notify(f.self, inc, "resolved", sn_result_done, &b);
    ck_assert_int_eq(sn_harness_wait(f.h, &b, 5000), 0);
    ck_assert_int_eq(b.status, 0);
    sn_result_clear(&a);
    sn_result_clear(&b);
    json_decref(inc);
    ck_assert_int_eq(f.rcv.n, 2);
    wh_close(&f);
}
END_TEST

START_TEST(bad_settings_are_refused_without_echo)
{
    sn_harness_t *h = sn_harness_new();
    sn_err_t err = {{0}};
    ck_assert_ptr_null(sn_harness_create(h, SN_NOTIFIER, "webhook",
                                         "url = ftp://hooks.example/T0KEN-abc\n", NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "http://"));
    ck_assert_ptr_null(strstr(err.msg, "T0KEN"));
    ck_assert_ptr_null(sn_harness_create(h, SN_NOTIFIER, "webhook",
                                         "url = http://127.0.0.1:1/\n"
                                         "header = Authorization Bearer T0KEN-abc\n",
                                         NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "header 1"));
    ck_assert_ptr_null(strstr(err.msg, "T0KEN"));
    ck_assert_ptr_null(sn_harness_create(h, SN_NOTIFIER, "webhook",
                                         "url = http://127.0.0.1:1/\n"
                                         "header = X-Sentinel-Signature: v1=forged\n",
                                         NULL, &err));
    ck_assert_ptr_null(sn_harness_create(h, SN_NOTIFIER, "webhook", "secret = x\n", NULL, &err));
    sn_harness_free(h);
}
END_TEST

/* Write @p json to a fresh file and return "template = ${file:<path>}\n" (long templates do not
 * fit one INI line). Ownership: caller frees the text and unlinks @p path. */
static char *template_setting(const char *json, char path[32])
{
    snprintf(path, 32, "/tmp/sn-whtmpl-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    char *out = NULL;
    ck_assert_int_gt(asprintf(&out, "template = ${file:%s}\n", path), 0);
    return out;
}

static json_t *notify_doc(wh_fix_t *f, json_t *inc, const char *event)
{
    sn_result_t r = {0};
    f->ops->notify(f->self, inc, event, sn_result_done, &r);
    ck_assert_int_eq(sn_harness_wait(f->h, &r, 5000), 0);
    ck_assert_int_eq(r.status, 0);
    sn_result_clear(&r);
    ck_assert_int_eq(f->rcv.n, 1);
    json_error_t je;
    json_t *body = json_loads(f->rcv.seen[0].body, 0, &je);
    ck_assert_msg(body != NULL, "body is not JSON (%s): %s", je.text, f->rcv.seen[0].body);
    return body;
}

START_TEST(template_keeps_types_and_nests)
{
    setenv("SN_TEST_WEBHOOK_SECRET", SECRET, 1);
    char path[32];
    char *tmpl = template_setting(
        "{\"text\": \"Incident {{incident.id}}: {{ incident.title }} ({{event}}) on "
        "{{incident.services}}, top {{incident.top_hypothesis.confidence}}\",\n"
        " \"id\": \"{{incident.id}}\", \"event\": \"{{event}}\",\n"
        " \"services\": \"{{incident.services}}\", \"first\": \"{{incident.services.0}}\",\n"
        " \"confidence\": \"{{incident.hypotheses.1.confidence}}\",\n"
        " \"top\": \"{{incident.top_hypothesis}}\",\n"
        " \"target\": {\"deep\": [\"{{incident.plan.0.target}}\", {\"verb\": "
        "\"{{incident.plan.0.verb}}\"}]},\n"
        " \"priority\": \"{{incident.priority}}\", \"gone\": \"{{incident.hypotheses.9.cause}}\",\n"
        " \"sent\": \"{{sent_at}}\", \"literal\": 42, \"flag\": true,\n"
        " \"unclosed\": \"{{ not a placeholder\"}\n",
        path);
    char settings[256];
    snprintf(settings, sizeof(settings), "secret = ${env:SN_TEST_WEBHOOK_SECRET}\n%s", tmpl);
    wh_fix_t f;
    int codes[] = {200};
    wh_open(&f, codes, 1, settings);
    unlink(path);
    free(tmpl);
    json_t *inc = incident();
    json_t *body = notify_doc(&f, inc, "opened");
    json_decref(inc);
    ck_assert_str_eq(f.rcv.seen[0].event, "opened");
    ck_assert_str_eq(f.rcv.seen[0].ctype, "application/json");
    assert_signed(&f.rcv.seen[0]); /* the signature covers the rendered body */
    ck_assert_str_eq(json_string_value(json_object_get(body, "text")),
                     "Incident 0190a0b0-0000-7000-8000-00000000abcd: checkout latency p99 x8 "
                     "(opened) on [\"checkout\"], top 0.8");
    ck_assert_str_eq(json_string_value(json_object_get(body, "id")),
                     "0190a0b0-0000-7000-8000-00000000abcd");
    ck_assert_str_eq(json_string_value(json_object_get(body, "event")), "opened");
    json_t *svc = json_object_get(body, "services");
    ck_assert(json_is_array(svc));
    ck_assert_uint_eq(json_array_size(svc), 1);
    ck_assert_str_eq(json_string_value(json_array_get(svc, 0)), "checkout");
    ck_assert_str_eq(json_string_value(json_object_get(body, "first")), "checkout");
    ck_assert(json_is_real(json_object_get(body, "confidence")));
    ck_assert(json_real_value(json_object_get(body, "confidence")) == 0.8);
    json_t *top = json_object_get(body, "top");
    ck_assert(json_is_object(top));
    ck_assert_str_eq(json_string_value(json_object_get(top, "cause")), "deploy v2.3.1");
    json_t *deep = json_object_get(json_object_get(body, "target"), "deep");
    ck_assert_str_eq(json_string_value(json_array_get(deep, 0)), "deployment/shop/checkout");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(deep, 1), "verb")),
                     "rollout_restart");
    ck_assert(json_is_null(json_object_get(body, "priority")));
    ck_assert(json_is_null(json_object_get(body, "gone")));
    int64_t ms = 0;
    ck_assert_int_eq(sn_parse_time_ms(json_string_value(json_object_get(body, "sent")), &ms), 0);
    ck_assert(ms > sn_now_ms() - 10000);
    ck_assert(json_is_integer(json_object_get(body, "literal")));
    ck_assert_int_eq(json_integer_value(json_object_get(body, "literal")), 42);
    ck_assert(json_is_true(json_object_get(body, "flag")));
    ck_assert_str_eq(json_string_value(json_object_get(body, "unclosed")), "{{ not a placeholder");
    ck_assert_uint_eq(json_object_size(body), 14);
    json_decref(body);
    wh_close(&f);
}
END_TEST

START_TEST(template_values_cannot_break_out)
{
    const char *title = "evil\", \"admin\": true, \"x\": \"\\ {{event}} }} \n\t\u00e9";
    wh_fix_t f;
    int codes[] = {200};
    wh_open(&f, codes, 1,
            "template = {\"title\": \"{{incident.title}}\", \"msg\": \"T: {{incident.title}}\", "
            "\"svc\": \"{{incident.services}}\"}\n");
    json_t *inc = incident();
    json_object_set_new(inc, "title", json_string(title));
    json_object_set_new(inc, "services", json_pack("[s]", "a\"b"));
    json_t *body = notify_doc(&f, inc, "opened");
    json_decref(inc);
    ck_assert_uint_eq(json_object_size(body), 3);
    ck_assert_ptr_null(json_object_get(body, "admin"));
    ck_assert_str_eq(json_string_value(json_object_get(body, "title")), title);
    /* The value is text, not template: its "{{event}}" stays as it is. */
    char want[256];
    snprintf(want, sizeof(want), "T: %s", title);
    ck_assert_str_eq(json_string_value(json_object_get(body, "msg")), want);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(body, "svc"), 0)), "a\"b");
    json_decref(body);
    wh_close(&f);
}
END_TEST

START_TEST(template_is_checked_at_create)
{
    static const char *const bad[][2] = {
        {"{\"a\": \"{{incident.nope}}\"}", "'incident.nope'"},
        {"{\"a\": \"x {{incident.hypotheses.x.cause}}\"}", "'incident.hypotheses.x.cause'"},
        {"{\"a\": [\"{{incident.plan.0.secret}}\"]}", "'incident.plan.0.secret'"},
        {"{\"a\": \"{{event.name}}\"}", "'event.name'"},
        {"{\"a\": \"{{}}\"}", "''"},
        {"{\"{{event}}\": 1}", "object keys"},
        {"{\"a\": \"{{event}}\"", "not valid JSON"},
        {"{\"a\": 1, \"a\": 2}", "not valid JSON"},
    };
    sn_harness_t *h = sn_harness_new();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char settings[256];
        snprintf(settings, sizeof(settings), "url = http://127.0.0.1:1/\ntemplate = %s\n",
                 bad[i][0]);
        sn_err_t err = {{0}};
        ck_assert_ptr_null(sn_harness_create(h, SN_NOTIFIER, "webhook", settings, NULL, &err));
        ck_assert_msg(strstr(err.msg, bad[i][1]) != NULL, "%s: '%s' lacks %s", bad[i][0], err.msg,
                      bad[i][1]);
    }
    /* Known paths of every family are accepted. */
    sn_err_t err = {{0}};
    ck_assert_ptr_nonnull(sn_harness_create(
        h, SN_NOTIFIER, "webhook",
        "url = http://127.0.0.1:1/\ntemplate = [\"{{incident.timeline.3.detail}}\", "
        "\"{{incident.hypotheses.0.labels.pod}}\", \"{{incident.plan.1.params.replicas}}\", "
        "\"{{ incident.approvals }}\"]\n",
        NULL, &err));
    sn_harness_free(h);
}
END_TEST

/* The log notifier lives beside the webhook: one line with event, id, title, severity and the
 * top hypothesis, at the configured level. */
START_TEST(log_notifier_writes_one_line)
{
    sn_harness_t *h = sn_harness_new();
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    void *self = sn_harness_create(h, SN_NOTIFIER, "log", "level = warn\n", &p, &err);
    ck_assert_msg(self != NULL, "%s", err.msg);
    char path[] = "/tmp/sn-lognotify-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    json_t *inc = incident();
    sn_result_t r = {0};
    ((const sn_notifier_ops_t *)p->ops)->notify(self, inc, "opened", sn_result_done, &r);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    json_decref(inc);
    ck_assert(r.done);
    ck_assert_int_eq(r.status, 0);
    char buf[2048] = "";
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(count_newlines(buf), 1);
    json_t *line = json_loads(buf, 0, NULL);
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(json_string_value(json_object_get(line, "level")), "warn");
    const char *msg = json_string_value(json_object_get(line, "msg"));
    ck_assert_ptr_nonnull(strstr(msg, "opened"));
    ck_assert_ptr_nonnull(strstr(msg, "0190a0b0-0000-7000-8000-00000000abcd"));
    ck_assert_ptr_nonnull(strstr(msg, "checkout latency p99 x8"));
    ck_assert_ptr_nonnull(strstr(msg, "critical"));
    ck_assert_ptr_nonnull(strstr(msg, "deploy v2.3.1"));
    json_decref(line);
    ck_assert_ptr_null(sn_harness_create(h, SN_NOTIFIER, "log", "level = loud\n", NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "level"));
    sn_harness_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("webhook");
    TCase *tc = tcase_create("notifier");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, signed_delivery_carries_the_incident);
    tcase_add_test(tc, unsigned_without_secret);
    tcase_add_test(tc, retries_503_then_succeeds);
    tcase_add_test(tc, gives_up_after_max_retries);
    tcase_add_test(tc, retry_after_is_honoured);
    tcase_add_test(tc, client_error_is_not_retried);
    tcase_add_test(tc, transport_errors_are_retried);
    tcase_add_test(tc, pending_bound_refuses_at_once);
    tcase_add_test(tc, bad_settings_are_refused_without_echo);
    tcase_add_test(tc, template_keeps_types_and_nests);
    tcase_add_test(tc, template_values_cannot_break_out);
    tcase_add_test(tc, template_is_checked_at_create);
    tcase_add_test(tc, log_notifier_writes_one_line);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
