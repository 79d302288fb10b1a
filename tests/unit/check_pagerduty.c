/**
 * @file check_pagerduty.c
 * Tests of the pagerduty notifier loaded as a .so through the harness, against a scripted evhttp
 * receiver on 127.0.0.1 (an ephemeral port) served by the harness's own loop, standing in for the
 * Events API v2: trigger body and severity mapping, the event -> action mapping and its
 * parameters, 429 with Retry-After, 5xx retried then given up, 400 final with its message and
 * without the routing key, order kept per incident, the pending bound, the rate window, no
 * reopening after a resolve, and settings refused without echoing the key.
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

#define PD_LABELS "instance=\"notifier:pagerduty\""
#define KEY "0123456789abcdef0123456789abcdef"
#define ID_A "0190a0b0-0000-7000-8000-00000000000a"
#define ID_B "0190a0b0-0000-7000-8000-00000000000b"
#define MAX_REQS 32

typedef struct seen {
    char path[64];
    char ctype[64];
    json_t *ev;
    int64_t at;
} seen_t;

/* The receiver: answers request i with status[i] (the last one repeats). */
typedef struct rcv {
    struct evhttp *http;
    int port;
    int status[8];
    int nstatus;
    const char *retry_after; /* sent with 429 */
    const char *error_body;  /* sent with 4xx other than 429 */
    seen_t seen[MAX_REQS];
    int n;
} rcv_t;

static void rcv_cb(struct evhttp_request *req, void *arg)
{
    rcv_t *rc = arg;
    int i = rc->n < rc->nstatus ? rc->n : rc->nstatus - 1;
    int code = rc->status[i];
    json_t *ev = NULL;
    if (rc->n < MAX_REQS) {
        seen_t *s = &rc->seen[rc->n];
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        char *body = calloc(1, len + 1);
        evbuffer_copyout(in, body, len);
        s->ev = ev = json_loads(body, 0, NULL);
        free(body);
        snprintf(s->path, sizeof(s->path), "%s", evhttp_request_get_uri(req));
        const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
        snprintf(s->ctype, sizeof(s->ctype), "%s", ct ? ct : "");
        s->at = sn_mono_ms();
    }
    rc->n++;
    if (code == 429 && rc->retry_after)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", rc->retry_after);
    struct evbuffer *out = evbuffer_new();
    if (code >= 200 && code < 300) {
        const char *dk = json_string_value(json_object_get(ev, "dedup_key"));
        evbuffer_add_printf(out,
                            "{\"status\":\"success\",\"message\":\"Event processed\","
                            "\"dedup_key\":\"%s\"}",
                            dk ? dk : "generated");
    } else if (code >= 400 && code < 500 && code != 429 && rc->error_body) {
        evbuffer_add_printf(out, "%s", rc->error_body);
    } else {
        evbuffer_add_printf(out, "{\"status\":\"error\",\"message\":\"code %d\"}", code);
    }
    evhttp_send_reply(req, code, code < 300 ? "Accepted" : "Nope", out);
    evbuffer_free(out);
}

typedef struct pd_fix {
    sn_harness_t *h;
    rcv_t rcv;
    const sn_notifier_ops_t *ops;
    void *self;
} pd_fix_t;

static void rcv_start(pd_fix_t *f, const int *codes, int n)
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
static void pd_open(pd_fix_t *f, const int *codes, int n, const char *extra)
{
    setenv("SN_TEST_PD_KEY", KEY, 1);
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    rcv_start(f, codes, n);
    char settings[1024];
    snprintf(settings, sizeof(settings),
             "routing_key = ${env:SN_TEST_PD_KEY}\n"
             "api_url = http://127.0.0.1:%d/v2/enqueue\n%s%s",
             f->rcv.port, extra && strstr(extra, "retry_base") ? "" : "retry_base = 10ms\n",
             extra ? extra : "");
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    f->self = sn_harness_create(f->h, SN_NOTIFIER, "pagerduty", settings, &p, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    f->ops = p->ops;
}

static void pd_close(pd_fix_t *f)
{
    evhttp_free(f->rcv.http);
    sn_harness_free(f->h);
    for (int i = 0; i < f->rcv.n && i < MAX_REQS; i++)
        json_decref(f->rcv.seen[i].ev);
}

static json_t *incident(const char *id, const char *priority, const char *severity)
{
    json_t *inc = json_pack("{s:s,s:s,s:s,s:s,s:f,s:[s,s],s:[{s:s,s:s,s:f},{s:s,s:s,s:f}],"
                            "s:[{s:s,s:s,s:s,s:s,s:i}]}",
                            "id", id, "state", "awaiting_approval", "severity", severity, "title",
                            "checkout latency p99 x8", "confidence", 0.75, "services", "checkout",
                            "cart", "hypotheses", "service", "cart", "cause", "noise", "confidence",
                            0.2, "service", "checkout", "cause", "deploy v2.3.1", "confidence", 0.8,
                            "plan", "executor", "k8s", "verb", "rollout_restart", "target",
                            "deployment/shop/checkout", "risk", "medium", "downtime_s", 30);
    if (priority)
        json_object_set_new(inc, "priority", json_string(priority));
    return inc;
}

static double metric(pd_fix_t *f, const char *name)
{
    return sn_metric_value(sn_harness_runtime(f->h), name, PD_LABELS);
}

static int notify_wait(pd_fix_t *f, const json_t *inc, const char *event, sn_result_t *r,
                       int64_t ms)
{
    memset(r, 0, sizeof(*r));
    f->ops->notify(f->self, inc, event, sn_result_done, r);
    ck_assert_int_eq(sn_harness_wait(f->h, r, ms), 0);
    return r->status;
}

static const char *action_of(const seen_t *s)
{
    return json_string_value(json_object_get(s->ev, "event_action"));
}

static const char *payload_str(const seen_t *s, const char *key)
{
    return json_string_value(json_object_get(json_object_get(s->ev, "payload"), key));
}

START_TEST(trigger_follows_the_events_api)
{
    pd_fix_t f;
    int codes[] = {202};
    pd_open(&f, codes, 1, "console_url = https://sentinel.example.com/ui/\n");
    json_t *inc = incident(ID_A, "P1", "high");
    sn_result_t r;
    ck_assert_int_eq(notify_wait(&f, inc, "opened", &r, 5000), 0);
    ck_assert_str_eq(json_string_value(json_object_get(r.result, "action")), "trigger");
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "status")), 202);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "attempts")), 1);
    sn_result_clear(&r);
    json_decref(inc);
    ck_assert_int_eq(f.rcv.n, 1);
    const seen_t *s = &f.rcv.seen[0];
    ck_assert_str_eq(s->path, "/v2/enqueue");
    ck_assert_str_eq(s->ctype, "application/json");
    ck_assert_ptr_nonnull(s->ev);
    ck_assert_str_eq(json_string_value(json_object_get(s->ev, "routing_key")), KEY);
    ck_assert_str_eq(action_of(s), "trigger");
    ck_assert_str_eq(json_string_value(json_object_get(s->ev, "dedup_key")), "sentinel-" ID_A);
    ck_assert_str_eq(payload_str(s, "summary"), "[P1] checkout latency p99 x8");
    ck_assert_str_eq(payload_str(s, "severity"), "critical");
    ck_assert_str_eq(payload_str(s, "source"), "checkout");
    ck_assert_str_eq(payload_str(s, "component"), "checkout");
    const char *ts = payload_str(s, "timestamp");
    ck_assert_ptr_nonnull(ts);
    int64_t ms = 0;
    ck_assert_int_eq(sn_parse_time_ms(ts, &ms), 0);
    ck_assert(ms > sn_now_ms() - 10000 && ms <= sn_now_ms());
    json_t *cd = json_object_get(json_object_get(s->ev, "payload"), "custom_details");
    ck_assert_str_eq(json_string_value(json_object_get(cd, "incident")), ID_A);
    ck_assert_str_eq(json_string_value(json_object_get(cd, "event")), "opened");
    ck_assert_str_eq(json_string_value(json_object_get(cd, "priority")), "P1");
    ck_assert(json_number_value(json_object_get(cd, "confidence")) == 0.75);
    ck_assert_uint_eq(json_array_size(json_object_get(cd, "services")), 2);
    json_t *top = json_object_get(cd, "top_hypothesis");
    ck_assert_str_eq(json_string_value(json_object_get(top, "cause")), "deploy v2.3.1");
    ck_assert_str_eq(json_string_value(json_object_get(top, "service")), "checkout");
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(cd, "plan_summary"), 0)),
                     "k8s:rollout_restart deployment/shop/checkout (risk medium, downtime 30s)");
    json_t *link = json_array_get(json_object_get(s->ev, "links"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(link, "href")),
                     "https://sentinel.example.com/ui/incidents/" ID_A);
    ck_assert_str_eq(json_string_value(json_object_get(s->ev, "client")), "Sentinel");
    ck_assert(metric(&f, "notifier_pagerduty_sent_total") == 1.0);
    pd_close(&f);
}
END_TEST

START_TEST(severity_follows_priority_then_severity)
{
    static const char *const cases[][3] = {
        {"P1", "low", "critical"},   {"P2", "low", "error"},         {"P3", "high", "warning"},
        {"P4", "high", "info"},      {NULL, "critical", "critical"}, {NULL, "high", "error"},
        {NULL, "medium", "warning"}, {NULL, "low", "info"},          {NULL, "odd", "error"},
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    pd_fix_t f;
    int codes[] = {202};
    pd_open(&f, codes, 1, "source = shop-prod\n");
    for (size_t i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "0190a0b0-0000-7000-8000-0000000001%02zu", i);
        json_t *inc = incident(id, cases[i][0], cases[i][1]);
        sn_result_t r;
        ck_assert_int_eq(notify_wait(&f, inc, "opened", &r, 5000), 0);
        sn_result_clear(&r);
        json_decref(inc);
        ck_assert_int_eq(f.rcv.n, (int)i + 1);
        ck_assert_msg(strcmp(payload_str(&f.rcv.seen[i], "severity"), cases[i][2]) == 0,
                      "%s/%s gave %s", cases[i][0] ? cases[i][0] : "-", cases[i][1],
                      payload_str(&f.rcv.seen[i], "severity"));
        ck_assert_str_eq(payload_str(&f.rcv.seen[i], "source"), "shop-prod");
    }
    /* Without a priority the summary has no tag. */
    ck_assert_str_eq(payload_str(&f.rcv.seen[n - 1], "summary"), "checkout latency p99 x8");
    pd_close(&f);
}
END_TEST

/* Send @p events for one incident, one after the other; returns how many requests went out. */
static int run_events(pd_fix_t *f, const char *const *events, int *statuses)
{
    json_t *inc = incident(ID_A, "P2", "medium");
    int before = f->rcv.n;
    for (int i = 0; events[i]; i++) {
        sn_result_t r;
        statuses[i] = notify_wait(f, inc, events[i], &r, 5000);
        sn_result_clear(&r);
    }
    json_decref(inc);
    return f->rcv.n - before;
}

START_TEST(events_map_to_trigger_acknowledge_resolve)
{
    pd_fix_t f;
    int codes[] = {202};
    pd_open(&f, codes, 1, NULL);
    const char *events[] = {"opened",   "approval_needed", "executing", "rolled_back",
                            "rejected", "escalated",       "closed",    NULL};
    const char *want[] = {"trigger", "trigger", "acknowledge", "trigger",
                          "trigger", "trigger", "resolve"};
    int st[8];
    ck_assert_int_eq(run_events(&f, events, st), 7);
    for (int i = 0; i < 7; i++) {
        ck_assert_int_eq(st[i], 0);
        ck_assert_msg(strcmp(action_of(&f.rcv.seen[i]), want[i]) == 0, "%s sent %s", events[i],
                      action_of(&f.rcv.seen[i]));
        ck_assert_str_eq(json_string_value(json_object_get(f.rcv.seen[i].ev, "dedup_key")),
                         "sentinel-" ID_A);
    }
    ck_assert_str_eq(payload_str(&f.rcv.seen[1], "summary"),
                     "[P2] Approval needed: checkout latency p99 x8");
    ck_assert_str_eq(payload_str(&f.rcv.seen[5], "summary"),
                     "[P2] Escalated to humans: checkout latency p99 x8");
    ck_assert_str_eq(payload_str(&f.rcv.seen[1], "severity"), "error");
    /* Acknowledge and resolve carry only what the API needs. */
    ck_assert_uint_eq(json_object_size(f.rcv.seen[2].ev), 3);
    ck_assert_uint_eq(json_object_size(f.rcv.seen[6].ev), 3);
    ck_assert_ptr_null(json_object_get(f.rcv.seen[6].ev, "payload"));
    pd_close(&f);
}
END_TEST

START_TEST(parameters_choose_ack_and_resolve)
{
    pd_fix_t f;
    int codes[] = {202};
    pd_open(&f, codes, 1, "acknowledge_on_execute = false\nresolve_on = rejected\n");
    json_t *inc = incident(ID_A, "P3", "medium");
    sn_result_t r;
    ck_assert_int_eq(notify_wait(&f, inc, "executing", &r, 5000), 0);
    ck_assert_str_eq(json_string_value(json_object_get(r.result, "action")), "skip");
    sn_result_clear(&r);
    ck_assert_int_eq(f.rcv.n, 0);
    ck_assert_int_eq(notify_wait(&f, inc, "closed", &r, 5000), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(notify_wait(&f, inc, "rejected", &r, 5000), 0);
    sn_result_clear(&r);
    json_decref(inc);
    ck_assert_int_eq(f.rcv.n, 2);
    ck_assert_str_eq(action_of(&f.rcv.seen[0]), "trigger"); /* closed: not in resolve_on */
    ck_assert_str_eq(payload_str(&f.rcv.seen[0], "summary"),
                     "[P3] Closed: checkout latency p99 x8");
    ck_assert_str_eq(action_of(&f.rcv.seen[1]), "resolve");
    pd_close(&f);
}
END_TEST

START_TEST(throttle_waits_for_retry_after)
{
    pd_fix_t f;
    int codes[] = {429, 202};
    pd_open(&f, codes, 2, NULL);
    f.rcv.retry_after = "1";
    json_t *inc = incident(ID_A, "P2", "high");
    sn_result_t r;
    ck_assert_int_eq(notify_wait(&f, inc, "opened", &r, 5000), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "attempts")), 2);
    sn_result_clear(&r);
    json_decref(inc);
    ck_assert_int_eq(f.rcv.n, 2);
    int64_t gap = f.rcv.seen[1].at - f.rcv.seen[0].at;
    ck_assert_msg(gap >= 950 && gap < 3000, "second attempt after %lld ms", (long long)gap);
    ck_assert(json_equal(f.rcv.seen[0].ev, f.rcv.seen[1].ev));
    ck_assert(metric(&f, "notifier_pagerduty_throttled_total") == 1.0);
    ck_assert(metric(&f, "notifier_pagerduty_retries_total") == 1.0);
    pd_close(&f);
}
END_TEST

START_TEST(server_errors_are_retried_then_given_up)
{
    pd_fix_t f;
    int codes[] = {500, 503, 502};
    pd_open(&f, codes, 3, "max_retries = 2\n");
    json_t *inc = incident(ID_A, "P2", "high");
    sn_result_t r;
    ck_assert_int_eq(notify_wait(&f, inc, "opened", &r, 5000), SN_EIO);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "attempts")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "status")), 502);
    sn_result_clear(&r);
    json_decref(inc);
    sn_harness_run_ms(f.h, 100);
    ck_assert_int_eq(f.rcv.n, 3);
    ck_assert(metric(&f, "notifier_pagerduty_failed_total") == 1.0);
    pd_close(&f);
}
END_TEST

START_TEST(bad_request_is_final_and_keeps_the_key_out)
{
    pd_fix_t f;
    int codes[] = {400, 202};
    pd_open(&f, codes, 2, "max_retries = 5\n");
    /* A receiver that echoes the key must not get it into the error or the log. */
    f.rcv.error_body = "{\"status\":\"invalid event\",\"message\":\"Event object is invalid\","
                       "\"errors\":[\"'payload.severity' is invalid\",\"key " KEY " unknown\"]}";
    char path[] = "/tmp/sn-pdlog-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    json_t *inc = incident(ID_A, "P2", "high");
    sn_result_t r;
    int st = notify_wait(&f, inc, "opened", &r, 5000);
    sn_harness_run_ms(f.h, 150);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    json_decref(inc);
    ck_assert_int_eq(st, SN_EINVAL);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "attempts")), 1);
    const char *error = json_string_value(json_object_get(r.result, "error"));
    ck_assert_ptr_nonnull(error);
    ck_assert_ptr_nonnull(strstr(error, "HTTP 400"));
    ck_assert_ptr_nonnull(strstr(error, "Event object is invalid"));
    ck_assert_ptr_nonnull(strstr(error, "'payload.severity' is invalid"));
    ck_assert_ptr_null(strstr(error, KEY));
    sn_result_clear(&r);
    ck_assert_int_eq(f.rcv.n, 1);
    ck_assert(metric(&f, "notifier_pagerduty_retries_total") == 0.0);
    char buf[8192] = "";
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_nonnull(strstr(buf, "Event object is invalid"));
    ck_assert_ptr_null(strstr(buf, KEY));
    pd_close(&f);
}
END_TEST

START_TEST(order_is_kept_per_incident)
{
    pd_fix_t f;
    int codes[] = {429, 202};
    pd_open(&f, codes, 2, "retry_base = 400ms\n");
    json_t *a = incident(ID_A, "P2", "high"), *b = incident(ID_B, "P3", "low");
    sn_result_t ra[3], rb;
    memset(ra, 0, sizeof(ra));
    memset(&rb, 0, sizeof(rb));
    /* A's trigger is throttled; its acknowledge and resolve must wait behind it while B's trigger
     * goes out at once. */
    f.ops->notify(f.self, a, "opened", sn_result_done, &ra[0]);
    f.ops->notify(f.self, a, "executing", sn_result_done, &ra[1]);
    f.ops->notify(f.self, a, "resolved", sn_result_done, &ra[2]);
    sn_harness_run_ms(f.h, 50);
    ck_assert(!ra[0].done);
    f.ops->notify(f.self, b, "opened", sn_result_done, &rb);
    ck_assert_int_eq(sn_harness_wait(f.h, &rb, 5000), 0);
    ck_assert_int_eq(rb.status, 0);
    ck_assert_int_eq(sn_harness_wait(f.h, &ra[2], 5000), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert(ra[i].done);
        ck_assert_int_eq(ra[i].status, 0);
        sn_result_clear(&ra[i]);
    }
    sn_result_clear(&rb);
    json_decref(a);
    json_decref(b);
    ck_assert_int_eq(f.rcv.n, 5);
    const char *want[][2] = {{"trigger", ID_A},
                             {"trigger", ID_B},
                             {"trigger", ID_A},
                             {"acknowledge", ID_A},
                             {"resolve", ID_A}};
    for (int i = 0; i < 5; i++) {
        const char *dk = json_string_value(json_object_get(f.rcv.seen[i].ev, "dedup_key"));
        ck_assert_str_eq(action_of(&f.rcv.seen[i]), want[i][0]);
        ck_assert_str_eq(dk + strlen("sentinel-"), want[i][1]);
    }
    /* A throttle without Retry-After waits at least half the backoff ceiling. */
    ck_assert_int_ge(f.rcv.seen[2].at - f.rcv.seen[0].at, 190);
    pd_close(&f);
}
END_TEST

START_TEST(pending_bound_refuses_at_once)
{
    pd_fix_t f;
    int codes[] = {202};
    pd_open(&f, codes, 1, "max_pending = 1\n");
    json_t *a = incident(ID_A, "P2", "high"), *b = incident(ID_B, "P2", "high");
    sn_result_t ra = {0}, rb = {0};
    f.ops->notify(f.self, a, "opened", sn_result_done, &ra);
    ck_assert(!ra.done);
    f.ops->notify(f.self, b, "opened", sn_result_done, &rb);
    ck_assert(rb.done);
    ck_assert_int_eq(rb.status, SN_ENOMEM);
    ck_assert_int_eq(sn_harness_wait(f.h, &ra, 5000), 0);
    ck_assert_int_eq(ra.status, 0);
    ck_assert(metric(&f, "notifier_pagerduty_dropped_total") == 1.0);
    sn_result_clear(&ra);
    sn_result_clear(&rb);
    json_decref(a);
    json_decref(b);
    pd_close(&f);
}
END_TEST

START_TEST(rate_window_holds_requests_back)
{
    pd_fix_t f;
    int codes[] = {202};
    pd_open(&f, codes, 1, "max_per_minute = 2\n");
    const char *ids[] = {ID_A, ID_B, "0190a0b0-0000-7000-8000-00000000000c"};
    sn_result_t r[3];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 3; i++) {
        json_t *inc = incident(ids[i], "P2", "high");
        f.ops->notify(f.self, inc, "opened", sn_result_done, &r[i]);
        json_decref(inc);
    }
    ck_assert_int_eq(sn_harness_wait(f.h, &r[1], 5000), 0);
    sn_harness_run_ms(f.h, 300);
    ck_assert(r[0].done && r[1].done);
    ck_assert(!r[2].done);
    ck_assert_int_eq(f.rcv.n, 2);
    /* Stopping does not wait for the window: the held-back event is tried (the receiver is gone
     * by then) and completes. */
    pd_close(&f);
    ck_assert(r[2].done);
    ck_assert_int_eq(r[2].status, SN_EIO);
    for (int i = 0; i < 3; i++)
        sn_result_clear(&r[i]);
}
END_TEST

START_TEST(resolved_alert_is_not_reopened)
{
    pd_fix_t f;
    int codes[] = {202};
    pd_open(&f, codes, 1, NULL);
    json_t *inc = incident(ID_A, "P2", "high");
    sn_result_t r;
    ck_assert_int_eq(notify_wait(&f, inc, "resolved", &r, 5000), 0);
    sn_result_clear(&r);
    /* A late delivery of earlier events (an outbox retry) after the resolve. */
    ck_assert_int_eq(notify_wait(&f, inc, "opened", &r, 5000), 0);
    ck_assert_str_eq(json_string_value(json_object_get(r.result, "action")), "skip");
    sn_result_clear(&r);
    ck_assert_int_eq(notify_wait(&f, inc, "executing", &r, 5000), 0);
    sn_result_clear(&r);
    json_decref(inc);
    ck_assert_int_eq(f.rcv.n, 1);
    ck_assert_str_eq(action_of(&f.rcv.seen[0]), "resolve");
    pd_close(&f);
}
END_TEST

START_TEST(bad_settings_are_refused_without_echo)
{
    sn_harness_t *h = sn_harness_new();
    sn_err_t err = {{0}};
    setenv("SN_TEST_PD_KEY", KEY, 1);
    ck_assert_ptr_null(sn_harness_create(h, SN_NOTIFIER, "pagerduty",
                                         "api_url = http://127.0.0.1:1/\n", NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "routing_key"));
    ck_assert_ptr_null(sn_harness_create(h, SN_NOTIFIER, "pagerduty",
                                         "routing_key = ${env:SN_TEST_PD_KEY}\n"
                                         "api_url = ftp://events.example/\n",
                                         NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "api_url"));
    ck_assert_ptr_null(strstr(err.msg, KEY));
    ck_assert_ptr_null(sn_harness_create(h, SN_NOTIFIER, "pagerduty",
                                         "routing_key = ${env:SN_TEST_PD_KEY}\n"
                                         "resolve_on = resolved, escalated\n",
                                         NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "escalated"));
    ck_assert_ptr_null(sn_harness_create(h, SN_NOTIFIER, "pagerduty",
                                         "routing_key = ${env:SN_TEST_PD_KEY}\n"
                                         "max_per_minute = 0\n",
                                         NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "max_per_minute"));
    ck_assert_ptr_null(sn_harness_create(h, SN_NOTIFIER, "pagerduty",
                                         "routing_key = ${env:SN_TEST_PD_KEY}\n"
                                         "console_url = javascript:alert(1)\n",
                                         NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "console_url"));
    /* The default endpoint is PagerDuty's; a key of the wrong length only warns. */
    const sn_plugin_t *p = NULL;
    ck_assert_ptr_nonnull(
        sn_harness_create(h, SN_NOTIFIER, "pagerduty", "routing_key = short\n", &p, &err));
    int found = 0;
    for (const sn_param_t *q = p->params; q->key; q++)
        if (strcmp(q->key, "api_url") == 0) {
            ck_assert_str_eq(q->def, "https://events.pagerduty.com/v2/enqueue");
            found = 1;
        } else if (strcmp(q->key, "routing_key") == 0) {
            ck_assert(q->flags & SN_PARAM_SECRET);
        }
    ck_assert(found);
    sn_harness_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pagerduty");
    TCase *tc = tcase_create("notifier");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, trigger_follows_the_events_api);
    tcase_add_test(tc, severity_follows_priority_then_severity);
    tcase_add_test(tc, events_map_to_trigger_acknowledge_resolve);
    tcase_add_test(tc, parameters_choose_ack_and_resolve);
    tcase_add_test(tc, throttle_waits_for_retry_after);
    tcase_add_test(tc, server_errors_are_retried_then_given_up);
    tcase_add_test(tc, bad_request_is_final_and_keeps_the_key_out);
    tcase_add_test(tc, order_is_kept_per_incident);
    tcase_add_test(tc, pending_bound_refuses_at_once);
    tcase_add_test(tc, rate_window_holds_requests_back);
    tcase_add_test(tc, resolved_alert_is_not_reopened);
    tcase_add_test(tc, bad_settings_are_refused_without_echo);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
