/**
 * @file check_llm.c
 * Tests of the `llm` analyzer loaded as a .so through the harness, against a scripted
 * OpenAI-compatible / Anthropic Messages server (evhttp on 127.0.0.1, an ephemeral port, served
 * by the harness's own loop): request shape of both APIs, schema validation of replies (valid,
 * invalid, garbage), enum refusal of unknown verbs and targets, the one retry with the
 * validation error before falling back, provider failover on timeout, the circuit breaker,
 * Retry-After, per-incident and daily budgets, redaction (asserted on the bytes the server
 * received), the tool loop, and token/cost accounting. The validator and the redactor are also
 * checked directly (their sources are compiled into this test).
 */
#include "harness.h"

#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The pure parts, compiled in: schema validation and redaction. */
#include "../../plugins/analyzers/llm/llm_redact.c"
#include "../../plugins/analyzers/llm/llm_schema.c"

#define LLM_LABELS "instance=\"analyzer:llm\""
#define KEY "test-key-0123456789"
#define MAX_SEEN 32
#define MAX_STEPS 8

/* ---- the scripted server -------------------------------------------------------------------- */

typedef struct step {
    int status;
    char *body; /* owned */
    const char *retry_after;
    int delay_ms;
} step_t;

/* Requests whose path starts with prefix get steps[n] (the last one repeats). */
typedef struct route {
    const char *prefix;
    step_t steps[MAX_STEPS];
    int nsteps;
    int n;
} route_t;

typedef struct seen {
    char path[96];
    char *body;
    char auth[128];
    char xkey[128];
    char version[32];
    int64_t at;
} seen_t;

typedef struct srv {
    struct evhttp *http;
    struct event_base *base;
    int port;
    route_t routes[3];
    int nroutes;
    seen_t seen[MAX_SEEN];
    int n;
} srv_t;

typedef struct delayed {
    struct evhttp_request *req;
    struct event *ev;
    int status;
    char *body;
    const char *retry_after;
    int dead;
} delayed_t;

static const char *hdr(struct evhttp_request *req, const char *name)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
    return v ? v : "";
}

static void reply_now(struct evhttp_request *req, int status, const char *body,
                      const char *retry_after)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Content-Type", "application/json");
    if (retry_after)
        evhttp_add_header(out, "Retry-After", retry_after);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(req, status, status < 300 ? "OK" : "Nope", b);
    evbuffer_free(b);
}

static void delayed_close(struct evhttp_connection *c, void *arg)
{
    (void)c;
    ((delayed_t *)arg)->dead = 1;
}

static void delayed_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    delayed_t *d = arg;
    if (!d->dead) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(d->req), NULL, NULL);
        reply_now(d->req, d->status, d->body, d->retry_after);
    }
    event_free(d->ev);
    free(d->body);
    free(d);
}

static void srv_cb(struct evhttp_request *req, void *arg)
{
    srv_t *s = arg;
    const char *uri = evhttp_request_get_uri(req);
    route_t *r = NULL;
    for (int i = 0; i < s->nroutes; i++)
        if (strncmp(uri, s->routes[i].prefix, strlen(s->routes[i].prefix)) == 0)
            r = &s->routes[i];
    if (s->n < MAX_SEEN) {
        seen_t *x = &s->seen[s->n];
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        x->body = calloc(1, len + 1);
        evbuffer_copyout(in, x->body, len);
        snprintf(x->path, sizeof(x->path), "%s", uri);
        snprintf(x->auth, sizeof(x->auth), "%s", hdr(req, "Authorization"));
        snprintf(x->xkey, sizeof(x->xkey), "%s", hdr(req, "x-api-key"));
        snprintf(x->version, sizeof(x->version), "%s", hdr(req, "anthropic-version"));
        x->at = sn_mono_ms();
    }
    s->n++;
    if (!r) {
        reply_now(req, 404, "{\"error\":{\"message\":\"no route\"}}", NULL);
        return;
    }
    step_t *st = &r->steps[r->n < r->nsteps ? r->n : r->nsteps - 1];
    r->n++;
    if (st->delay_ms > 0) {
        delayed_t *d = calloc(1, sizeof(*d));
        d->req = req;
        d->status = st->status;
        d->body = strdup(st->body);
        d->retry_after = st->retry_after;
        d->ev = evtimer_new(s->base, delayed_fire, d);
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), delayed_close, d);
        struct timeval tv = {st->delay_ms / 1000, (st->delay_ms % 1000) * 1000};
        evtimer_add(d->ev, &tv);
        return;
    }
    reply_now(req, st->status, st->body, st->retry_after);
}

/* ---- fixture -------------------------------------------------------------------------------- */

typedef struct fix {
    sn_harness_t *h;
    srv_t srv;
    const sn_analyzer_ops_t *ops;
    const sn_plugin_t *plugin;
    void *self;
} fix_t;

static void srv_start(fix_t *f)
{
    memset(&f->srv, 0, sizeof(f->srv));
    f->srv.base = sn_runtime_base(sn_harness_runtime(f->h));
    f->srv.http = evhttp_new(f->srv.base);
    ck_assert_ptr_nonnull(f->srv.http);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(f->srv.http, "127.0.0.1", 0);
    ck_assert_ptr_nonnull(bs);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    ck_assert_int_eq(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl), 0);
    f->srv.port = ntohs(sa.sin_port);
    evhttp_set_gencb(f->srv.http, srv_cb, &f->srv);
}

static route_t *route(fix_t *f, const char *prefix)
{
    route_t *r = &f->srv.routes[f->srv.nroutes++];
    r->prefix = prefix;
    return r;
}

/* Append a step; @p body is copied. */
static void step(route_t *r, int status, const char *body, const char *retry_after, int delay_ms)
{
    ck_assert_int_lt(r->nsteps, MAX_STEPS);
    step_t *s = &r->steps[r->nsteps++];
    s->status = status;
    s->body = strdup(body);
    s->retry_after = retry_after;
    s->delay_ms = delay_ms;
}

/* A harness and server; the analyzer is created by open_llm once routes are scripted. */
static void fix_new(fix_t *f)
{
    memset(f, 0, sizeof(*f));
    setenv("SN_TEST_LLM_KEY", KEY, 1);
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    srv_start(f);
}

/* Settings: "%P" is replaced by the server's port. */
static void open_llm(fix_t *f, const char *settings)
{
    char buf[4096], port[16];
    snprintf(port, sizeof(port), "%d", f->srv.port);
    size_t o = 0;
    for (const char *p = settings; *p && o + 16 < sizeof(buf); p++) {
        if (p[0] == '%' && p[1] == 'P') {
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s", port);
            p++;
        } else {
            buf[o++] = *p;
        }
    }
    buf[o] = '\0';
    sn_err_t err = {{0}};
    f->self = sn_harness_create(f->h, SN_ANALYZER, "llm", buf, &f->plugin, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    f->ops = f->plugin->ops;
}

static void fix_free(fix_t *f)
{
    evhttp_free(f->srv.http);
    sn_harness_free(f->h);
    for (int i = 0; i < f->srv.n && i < MAX_SEEN; i++)
        free(f->srv.seen[i].body);
    for (int i = 0; i < f->srv.nroutes; i++)
        for (int j = 0; j < f->srv.routes[i].nsteps; j++)
            free(f->srv.routes[i].steps[j].body);
}

static double metric(fix_t *f, const char *name)
{
    return sn_metric_value(sn_harness_runtime(f->h), name, LLM_LABELS);
}

/* A per-provider counter: labelled with the provider beside the instance. */
static double pmetric(fix_t *f, const char *name, const char *provider)
{
    char labels[128];
    snprintf(labels, sizeof(labels), LLM_LABELS ",provider=\"%s\"", provider);
    return sn_metric_value(sn_harness_runtime(f->h), name, labels);
}

#define P1 "provider = p1 kind=openai url=http://127.0.0.1:%P/p1/v1 model=gpt-test\n"
#define P1_OPTS                                                                                    \
    "provider = p1 key=${env:SN_TEST_LLM_KEY} timeout=2s retries=0 price_in=0.15 "                 \
    "price_out=0.60\n"
#define P2 "provider = p2 kind=openai url=http://127.0.0.1:%P/p2/v1 model=backup-model retries=0\n"
#define ACTIONS                                                                                    \
    "action = mock:rollout_restart deployment/shop/{service}\n"                                    \
    "action = mock:scale_deployment deployment/shop/{service}\n"                                   \
    "retry_base = 10ms\nretry_max = 2s\n"

static json_t *incident(const char *id)
{
    return json_pack(
        "{s:s,s:s,s:s,s:[s,s],"
        "s:[{s:s,s:s,s:{s:s},s:I,s:f,s:f,s:f,s:s},{s:s,s:s,s:{s:s},s:I,s:f,s:f,s:f,s:s}],"
        "s:[{s:I,s:s,s:{s:s,s:s}}],"
        "s:[{s:I,s:s,s:s,s:{s:s}}],"
        "s:[{s:s,s:s,s:f,s:[s],s:s}],s:[]}",
        "id", id, "title", "checkout latency", "severity", "high", "services", "checkout",
        "frontend", "anomalies", "series", "a1", "metric", "http_p99_latency_ms", "labels",
        "service", "checkout", "ts", (json_int_t)1795601040000LL, "value", 900.0, "expected", 120.0,
        "score", 0.95, "detector", "latency", "series", "a2", "metric", "http_p99_latency_ms",
        "labels", "service", "frontend", "ts", (json_int_t)1795601100000LL, "value", 700.0,
        "expected", 180.0, "score", 0.8, "detector", "latency", "changes", "ts",
        (json_int_t)1795600800000LL, "change", "deploy", "labels", "service", "checkout", "version",
        "v2.3.1", "logs", "ts", (json_int_t)1795601050000LL, "level", "error", "log",
        "db pool exhausted", "labels", "service", "checkout", "hypotheses", "service", "checkout",
        "cause", "deploy of checkout v2.3.1", "confidence", 0.8, "evidence", "deploy 4 min before",
        "analyzer", "rca", "plan");
}

#define GOOD_ANSWER                                                                                \
    "{\"hypotheses\":[{\"service\":\"checkout\",\"cause\":\"deploy v2.3.1 of checkout exhausted "  \
    "the DB pool\",\"confidence\":0.9,\"evidence\":[\"deploy 4 min before onset\",\"db pool "      \
    "exhausted\"]}],\"plan\":[{\"executor\":\"mock\",\"verb\":\"rollout_restart\",\"target\":"     \
    "\"deployment/shop/checkout\",\"params\":{},\"reason\":\"undo the bad rollout\"}]}"

/* An OpenAI chat completion whose message content is @p content. Ownership: caller frees. */
static char *oai(const char *content, int in, int out)
{
    json_t *d = json_pack("{s:s,s:s,s:[{s:i,s:s,s:{s:s,s:s}}],s:{s:i,s:i,s:i}}", "id", "chatcmpl-1",
                          "object", "chat.completion", "choices", "index", 0, "finish_reason",
                          "stop", "message", "role", "assistant", "content", content, "usage",
                          "prompt_tokens", in, "completion_tokens", out, "total_tokens", in + out);
    char *s = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    return s;
}

static void step_oai(route_t *r, const char *content, int in, int out)
{
    char *b = oai(content, in, out);
    step(r, 200, b, NULL, 0);
    free(b);
}

/* An OpenAI reply that calls one tool. */
static void step_tool(route_t *r, const char *id, const char *name, const char *args)
{
    json_t *d =
        json_pack("{s:[{s:i,s:s,s:{s:s,s:n,s:[{s:s,s:s,s:{s:s,s:s}}]}}],s:{s:i,s:i}}", "choices",
                  "index", 0, "finish_reason", "tool_calls", "message", "role", "assistant",
                  "content", "tool_calls", "id", id, "type", "function", "function", "name", name,
                  "arguments", args, "usage", "prompt_tokens", 100, "completion_tokens", 10);
    char *s = json_dumps(d, JSON_COMPACT);
    step(r, 200, s, NULL, 0);
    free(s);
    json_decref(d);
}

static json_t *run(fix_t *f, const char *id, sn_result_t *r, int64_t ms)
{
    json_t *inc = incident(id);
    memset(r, 0, sizeof(*r));
    f->ops->analyze(f->self, inc, sn_result_done, r);
    json_decref(inc);
    ck_assert_int_eq(sn_harness_wait(f->h, r, ms), 0);
    ck_assert_int_eq(r->status, 0); /* never fails the incident */
    ck_assert(json_is_array(json_object_get(r->result, "hypotheses")));
    return r->result;
}

static json_t *plan_of(fix_t *f, const char *id, sn_result_t *r)
{
    json_t *inc = incident(id);
    memset(r, 0, sizeof(*r));
    f->ops->plan(f->self, inc, sn_result_done, r);
    json_decref(inc);
    ck_assert(r->done);
    ck_assert_int_eq(r->status, 0);
    ck_assert(json_is_array(json_object_get(r->result, "plan")));
    return r->result;
}

static json_t *body_of(fix_t *f, int i)
{
    ck_assert_int_gt(f->srv.n, i);
    json_t *b = json_loads(f->srv.seen[i].body, 0, NULL);
    ck_assert_msg(b != NULL, "request %d is not JSON", i);
    return b;
}

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int has_string(const json_t *arr, const char *s)
{
    size_t i;
    const json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return 1;
    }
    return 0;
}

static const char *note_of(const json_t *res)
{
    return str(res, "note") ? str(res, "note") : "";
}

/* ---- request shape and the happy path ------------------------------------------------------ */

START_TEST(openai_request_shape_and_accounting)
{
    fix_t f;
    fix_new(&f);
    step_oai(route(&f, "/p1/"), GOOD_ANSWER, 1000, 500);
    open_llm(&f, P1 P1_OPTS ACTIONS);
    sn_result_t r;
    json_t *res = run(&f, "inc-1", &r, 5000);
    ck_assert_int_eq(f.srv.n, 1);
    ck_assert_str_eq(f.srv.seen[0].path, "/p1/v1/chat/completions");
    ck_assert_str_eq(f.srv.seen[0].auth, "Bearer " KEY);

    json_t *b = body_of(&f, 0);
    ck_assert_str_eq(str(b, "model"), "gpt-test");
    ck_assert_int_eq(json_integer_value(json_object_get(b, "max_completion_tokens")), 1024);
    ck_assert(json_is_number(json_object_get(b, "temperature")));
    json_t *msgs = json_object_get(b, "messages");
    ck_assert_uint_eq(json_array_size(msgs), 2);
    ck_assert_str_eq(str(json_array_get(msgs, 0), "role"), "system");
    ck_assert_ptr_nonnull(strstr(str(json_array_get(msgs, 0), "content"), "never follow"));
    const char *user = str(json_array_get(msgs, 1), "content");
    ck_assert_str_eq(str(json_array_get(msgs, 1), "role"), "user");
    ck_assert_ptr_nonnull(strstr(user, "<incident-data>\n{"));
    ck_assert_ptr_nonnull(strstr(user, "}\n</incident-data>"));
    ck_assert_ptr_nonnull(strstr(user, "db pool exhausted"));
    /* The data block is JSON: the deploy is data with its version. */
    ck_assert_ptr_nonnull(strstr(user, "\"version\":\"v2.3.1\""));
    json_t *rf = json_object_get(b, "response_format");
    ck_assert_str_eq(str(rf, "type"), "json_schema");
    json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
    json_t *step_props = json_object_get(
        json_object_get(json_object_get(json_object_get(schema, "properties"), "plan"), "items"),
        "properties");
    json_t *verbs = json_object_get(json_object_get(step_props, "verb"), "enum");
    ck_assert_uint_eq(json_array_size(verbs), 2);
    ck_assert(has_string(verbs, "rollout_restart") && has_string(verbs, "scale_deployment"));
    json_t *targets = json_object_get(json_object_get(step_props, "target"), "enum");
    ck_assert(has_string(targets, "deployment/shop/checkout"));
    ck_assert(has_string(targets, "deployment/shop/frontend"));
    ck_assert_uint_eq(json_array_size(targets), 2);
    json_t *svc = json_object_get(
        json_object_get(
            json_object_get(json_object_get(json_object_get(schema, "properties"), "hypotheses"),
                            "items"),
            "properties"),
        "service");
    ck_assert(has_string(json_object_get(svc, "enum"), "checkout"));
    json_t *tools = json_object_get(b, "tools");
    ck_assert_uint_eq(json_array_size(tools), 3); /* history, recent_changes, logs */
    ck_assert_str_eq(str(json_object_get(json_array_get(tools, 0), "function"), "name"), "history");
    ck_assert_str_eq(str(b, "tool_choice"), "auto");
    json_decref(b);

    json_t *hyps = json_object_get(res, "hypotheses");
    ck_assert_uint_eq(json_array_size(hyps), 1);
    json_t *h = json_array_get(hyps, 0);
    ck_assert_str_eq(str(h, "cause"), "deploy v2.3.1 of checkout exhausted the DB pool");
    ck_assert_str_eq(str(h, "service"), "checkout");
    ck_assert_str_eq(str(h, "source"), "llm");
    ck_assert_str_eq(str(h, "provider"), "p1");
    ck_assert_str_eq(str(h, "model"), "gpt-test");
    ck_assert(fabs(json_number_value(json_object_get(h, "confidence")) - 0.9) < 1e-9);
    ck_assert_uint_eq(json_array_size(json_object_get(h, "evidence")), 2);
    json_t *rec = json_object_get(h, "llm");
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "tokens_in")), 1000);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "tokens_out")), 500);
    /* 1000 * 0.15 / 1e6 + 500 * 0.60 / 1e6 */
    ck_assert(fabs(json_real_value(json_object_get(rec, "cost_usd")) - 0.00045) < 1e-12);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "calls")), 1);
    ck_assert_ptr_nonnull(strstr(note_of(res), "1 planned step"));
    sn_result_clear(&r);

    json_t *p = plan_of(&f, "inc-1", &r);
    json_t *a = json_array_get(json_object_get(p, "plan"), 0);
    ck_assert_str_eq(str(a, "executor"), "mock");
    ck_assert_str_eq(str(a, "verb"), "rollout_restart");
    ck_assert_str_eq(str(a, "target"), "deployment/shop/checkout");
    ck_assert_ptr_nonnull(strstr(str(a, "reason"), "undo the bad rollout"));
    sn_result_clear(&r);

    ck_assert(metric(&f, "analyzer_llm_tokens_in_total") == 1000.0);
    ck_assert(metric(&f, "analyzer_llm_tokens_out_total") == 500.0);
    ck_assert(fabs(metric(&f, "analyzer_llm_cost_usd_total") - 0.00045) < 1e-12);
    ck_assert(pmetric(&f, "analyzer_llm_provider_tokens_in_total", "p1") == 1000.0);
    ck_assert(fabs(pmetric(&f, "analyzer_llm_provider_cost_usd_total", "p1") - 0.00045) < 1e-12);
    ck_assert(pmetric(&f, "analyzer_llm_provider_requests_total", "p1") == 1.0);
    ck_assert(metric(&f, "analyzer_llm_day_tokens") == 1500.0);
    ck_assert(metric(&f, "analyzer_llm_fallbacks_total") == 0.0);
    fix_free(&f);
}
END_TEST

START_TEST(anthropic_request_shape)
{
    fix_t f;
    fix_new(&f);
    json_t *d = json_pack("{s:s,s:s,s:s,s:s,s:[{s:s,s:s}],s:s,s:{s:i,s:i,s:i,s:i}}", "id", "msg_1",
                          "type", "message", "role", "assistant", "model", "claude-test", "content",
                          "type", "text", "text", GOOD_ANSWER, "stop_reason", "end_turn", "usage",
                          "input_tokens", 300, "output_tokens", 40, "cache_creation_input_tokens",
                          0, "cache_read_input_tokens", 20);
    char *s = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    step(route(&f, "/a/"), 200, s, NULL, 0);
    free(s);
    open_llm(&f, "provider = claude kind=anthropic url=http://127.0.0.1:%P/a/v1 "
                 "model=claude-test\nprovider = claude key=${env:SN_TEST_LLM_KEY} price_in=1 "
                 "price_out=5\n" ACTIONS "tools = false\n");
    sn_result_t r;
    json_t *res = run(&f, "inc-a", &r, 5000);
    ck_assert_int_eq(f.srv.n, 1);
    ck_assert_str_eq(f.srv.seen[0].path, "/a/v1/messages");
    ck_assert_str_eq(f.srv.seen[0].xkey, KEY);
    ck_assert_str_eq(f.srv.seen[0].auth, "");
    ck_assert_str_eq(f.srv.seen[0].version, "2023-06-01");
    json_t *b = body_of(&f, 0);
    ck_assert_str_eq(str(b, "model"), "claude-test");
    ck_assert_int_eq(json_integer_value(json_object_get(b, "max_tokens")), 1024);
    ck_assert_ptr_nonnull(strstr(str(b, "system"), "JSON Schema"));
    ck_assert_ptr_nonnull(strstr(str(b, "system"), "rollout_restart"));
    ck_assert_ptr_null(json_object_get(b, "response_format"));
    ck_assert_ptr_null(json_object_get(b, "tools"));
    json_t *msgs = json_object_get(b, "messages");
    ck_assert_uint_eq(json_array_size(msgs), 1);
    ck_assert_str_eq(str(json_array_get(msgs, 0), "role"), "user");
    json_decref(b);
    json_t *h = json_array_get(json_object_get(res, "hypotheses"), 0);
    ck_assert_str_eq(str(h, "provider"), "claude");
    json_t *rec = json_object_get(h, "llm");
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "tokens_in")), 320);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "tokens_out")), 40);
    ck_assert(fabs(json_real_value(json_object_get(rec, "cost_usd")) - 0.00052) < 1e-12);
    sn_result_clear(&r);
    fix_free(&f);
}
END_TEST

/* ---- validation ------------------------------------------------------------------------------ */

START_TEST(validator_direct)
{
    json_t *services = json_pack("[s,s]", "checkout", "cart");
    json_t *allowed = json_pack("[{s:s,s:s,s:s}]", "executor", "mock", "verb", "rollout_restart",
                                "target", "deployment/shop/checkout");
    json_t *schema = llm_schema_build(services, allowed);
    char err[400];
    static const char *const cases[][2] = {
        {GOOD_ANSWER, NULL},
        {"{\"hypotheses\":[],\"plan\":[]}", NULL},
        {"{\"hypotheses\":[]}", "$: missing required property 'plan'"},
        {"{\"hypotheses\":[{\"service\":\"db\",\"cause\":\"x\",\"confidence\":0.5,\"evidence\":[]}]"
         ",\"plan\":[]}",
         "$.hypotheses[0].service: 'db' is not one of checkout, cart"},
        {"{\"hypotheses\":[{\"service\":\"cart\",\"cause\":\"x\",\"confidence\":1.5,\"evidence\":[]"
         "}],\"plan\":[]}",
         "$.hypotheses[0].confidence: 1.5 is above the maximum 1"},
        {"{\"hypotheses\":[{\"service\":\"cart\",\"cause\":\"x\",\"confidence\":\"high\","
         "\"evidence\":[]}],\"plan\":[]}",
         "$.hypotheses[0].confidence: expected number, got string"},
        {"{\"hypotheses\":[],\"plan\":[],\"sudo\":true}", "$: unexpected property 'sudo'"},
        {"{\"hypotheses\":[],\"plan\":[{\"executor\":\"mock\",\"verb\":\"nuke\",\"target\":"
         "\"deployment/shop/checkout\",\"params\":{}}]}",
         "$.plan[0].verb: 'nuke' is not one of rollout_restart"},
        {"{\"hypotheses\":[],\"plan\":[{\"executor\":\"mock\",\"verb\":\"rollout_restart\","
         "\"target\":\"deployment/shop/checkout\",\"params\":{\"x\":[1]}}]}",
         "$.plan[0].params.x: array is not an allowed type"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *doc = llm_reply_json(cases[i][0], err, sizeof(err));
        ck_assert_ptr_nonnull(doc);
        int rc = llm_schema_validate(schema, doc, err, sizeof(err));
        if (!cases[i][1])
            ck_assert_msg(rc == 0, "case %zu: %s", i, err);
        else
            ck_assert_msg(rc != 0 && strcmp(err, cases[i][1]) == 0, "case %zu: got '%s'", i, err);
        json_decref(doc);
    }
    /* Enums alone do not pin the combination: the semantic check does. */
    json_t *two = json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s}]", "executor", "mock", "verb",
                            "rollout_restart", "target", "deployment/shop/checkout", "executor",
                            "mock", "verb", "scale_deployment", "target", "deployment/shop/cart");
    json_t *doc =
        json_pack("{s:[],s:[{s:s,s:s,s:s,s:{}}]}", "hypotheses", "plan", "executor", "mock", "verb",
                  "scale_deployment", "target", "deployment/shop/checkout", "params");
    ck_assert_int_ne(llm_reply_check(doc, two, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "not one of the allowed actions"));
    json_decref(doc);
    json_decref(two);
    /* Garbage and fences. */
    ck_assert_ptr_null(llm_reply_json("The root cause is the database.", err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "not JSON"));
    ck_assert_ptr_null(llm_reply_json("[1,2]", err, sizeof(err)));
    doc = llm_reply_json("```json\n{\"hypotheses\":[],\"plan\":[]}\n```\n", err, sizeof(err));
    ck_assert_ptr_nonnull(doc);
    json_decref(doc);
    doc = llm_reply_json("Sure! {\"hypotheses\":[],\"plan\":[]} Hope it helps.", err, sizeof(err));
    ck_assert_ptr_nonnull(doc);
    json_decref(doc);
    /* No allowed action: the plan must be empty. */
    json_t *none = json_array();
    json_t *s2 = llm_schema_build(services, none);
    doc = llm_reply_json(GOOD_ANSWER, err, sizeof(err));
    ck_assert_int_ne(llm_schema_validate(s2, doc, err, sizeof(err)), 0);
    ck_assert_str_eq(err, "$.plan: 1 items, at most 0 allowed");
    json_decref(doc);
    json_decref(s2);
    json_decref(none);
    json_decref(schema);
    json_decref(services);
    json_decref(allowed);
}
END_TEST

START_TEST(garbage_is_retried_once_with_the_error)
{
    fix_t f;
    fix_new(&f);
    route_t *p1 = route(&f, "/p1/");
    step_oai(p1, "I believe the database is slow.", 100, 10);
    step_oai(p1, GOOD_ANSWER, 200, 50);
    open_llm(&f, P1 P1_OPTS ACTIONS);
    sn_result_t r;
    json_t *res = run(&f, "inc-g", &r, 5000);
    ck_assert_int_eq(f.srv.n, 2);
    json_t *b = body_of(&f, 1);
    json_t *msgs = json_object_get(b, "messages");
    ck_assert_uint_eq(json_array_size(msgs), 4);
    ck_assert_str_eq(str(json_array_get(msgs, 2), "role"), "assistant");
    ck_assert_str_eq(str(json_array_get(msgs, 2), "content"), "I believe the database is slow.");
    const char *fix = str(json_array_get(msgs, 3), "content");
    ck_assert_ptr_nonnull(strstr(fix, "previous reply was rejected"));
    ck_assert_ptr_nonnull(strstr(fix, "not JSON"));
    json_decref(b);
    json_t *h = json_array_get(json_object_get(res, "hypotheses"), 0);
    ck_assert_ptr_nonnull(h);
    ck_assert(json_is_true(json_object_get(json_object_get(h, "llm"), "validation_retry")));
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(h, "llm"), "tokens_in")),
                     300);
    sn_result_clear(&r);
    ck_assert(metric(&f, "analyzer_llm_refused_total") == 1.0);
    fix_free(&f);
}
END_TEST

START_TEST(unknown_verb_is_refused_then_falls_back)
{
    const char *bad =
        "{\"hypotheses\":[{\"service\":\"checkout\",\"cause\":\"x\",\"confidence\":0.9,"
        "\"evidence\":[]}],\"plan\":[{\"executor\":\"mock\",\"verb\":\"nuke_cluster\","
        "\"target\":\"deployment/shop/checkout\",\"params\":{}}]}";
    fix_t f;
    fix_new(&f);
    route_t *p1 = route(&f, "/p1/");
    step_oai(p1, bad, 100, 10);
    open_llm(&f, P1 P1_OPTS ACTIONS);
    sn_result_t r;
    json_t *res = run(&f, "inc-v", &r, 5000);
    ck_assert_int_eq(f.srv.n, 2); /* the reply, and one retry with the error */
    json_t *b = body_of(&f, 1);
    json_t *msgs = json_object_get(b, "messages");
    ck_assert_ptr_nonnull(strstr(str(json_array_get(msgs, 3), "content"), "'nuke_cluster'"));
    json_decref(b);
    ck_assert_uint_eq(json_array_size(json_object_get(res, "hypotheses")), 0);
    ck_assert_ptr_nonnull(strstr(note_of(res), "refused"));
    ck_assert_ptr_nonnull(strstr(note_of(res), "nuke_cluster"));
    int timeline_says = 0;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(res, "timeline"), i, t)
    {
        if (strcmp(str(t, "event"), "llm_refused") == 0)
            timeline_says = 1;
    }
    ck_assert(timeline_says);
    sn_result_clear(&r);
    /* plan(): nothing from the model; the incident's plan passes through with the reason. */
    json_t *p = plan_of(&f, "inc-v", &r);
    ck_assert_uint_eq(json_array_size(json_object_get(p, "plan")), 0);
    ck_assert_ptr_nonnull(strstr(str(p, "reason"), "no LLM analysis"));
    ck_assert_ptr_nonnull(strstr(str(p, "reason"), "nuke_cluster"));
    sn_result_clear(&r);

    /* A target outside the enum is refused the same way. */
    const char *elsewhere =
        "{\"hypotheses\":[],\"plan\":[{\"executor\":\"mock\",\"verb\":\"rollout_restart\","
        "\"target\":\"deployment/prod/database\",\"params\":{}}]}";
    p1->nsteps = 0;
    p1->n = 0;
    free(p1->steps[0].body);
    step_oai(p1, elsewhere, 100, 10);
    res = run(&f, "inc-v2", &r, 5000);
    ck_assert_ptr_nonnull(strstr(note_of(res), "deployment/prod/database"));
    sn_result_clear(&r);
    fix_free(&f);
}
END_TEST

/* ---- provider chain ------------------------------------------------------------------------ */

START_TEST(timeout_fails_over_to_the_next_provider)
{
    fix_t f;
    fix_new(&f);
    char *slow = oai(GOOD_ANSWER, 10, 10);
    step(route(&f, "/p1/"), 200, slow, NULL, 1500);
    free(slow);
    step_oai(route(&f, "/p2/"), GOOD_ANSWER, 10, 10);
    open_llm(&f, P1 "provider = p1 timeout=300ms retries=0\n" P2 ACTIONS);
    int64_t t0 = sn_mono_ms();
    sn_result_t r;
    json_t *res = run(&f, "inc-t", &r, 5000);
    int64_t took = sn_mono_ms() - t0;
    ck_assert_msg(took < 1400, "took %lld ms", (long long)took);
    ck_assert_int_eq(f.srv.n, 2);
    ck_assert_str_eq(f.srv.seen[1].path, "/p2/v1/chat/completions");
    ck_assert_str_eq(f.srv.seen[1].auth, ""); /* p2 has no key */
    json_t *h = json_array_get(json_object_get(res, "hypotheses"), 0);
    ck_assert_str_eq(str(h, "provider"), "p2");
    ck_assert_str_eq(str(h, "model"), "backup-model");
    int failed_note = 0;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(res, "timeline"), i, t)
    {
        if (strcmp(str(t, "event"), "llm_provider_failed") == 0 &&
            strstr(str(t, "detail"), "provider p1"))
            failed_note = 1;
    }
    ck_assert(failed_note);
    sn_result_clear(&r);
    ck_assert(pmetric(&f, "analyzer_llm_provider_failures_total", "p1") == 1.0);
    sn_harness_run_ms(f.h, 1300); /* let the slow reply go out to a closed connection */
    fix_free(&f);
}
END_TEST

START_TEST(breaker_skips_a_failing_provider)
{
    fix_t f;
    fix_new(&f);
    step(route(&f, "/p1/"), 500, "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}",
         NULL, 0);
    step_oai(route(&f, "/p2/"), GOOD_ANSWER, 10, 10);
    open_llm(&f, P1 P2 ACTIONS "breaker_failures = 2\nbreaker_cooldown = 400ms\n"
                               "provider = p1 retries=0\n");
    sn_result_t r;
    const char *ids[] = {"b1", "b2", "b3"};
    for (int i = 0; i < 3; i++) {
        json_t *res = run(&f, ids[i], &r, 5000);
        ck_assert_str_eq(str(json_array_get(json_object_get(res, "hypotheses"), 0), "provider"),
                         "p2");
        sn_result_clear(&r);
    }
    /* p1 was called for b1 and b2, then skipped for b3 */
    ck_assert_int_eq(f.srv.routes[0].n, 2);
    ck_assert_int_eq(f.srv.routes[1].n, 3);
    ck_assert(metric(&f, "analyzer_llm_breaker_opened_total") == 1.0);
    sn_health_t hl;
    f.plugin->health(f.self, &hl);
    ck_assert(hl.ok); /* p2 still serves */
    ck_assert_ptr_nonnull(strstr(hl.detail, "1 of 2 providers open"));
    /* After the cooldown one call probes p1 again. */
    sn_harness_run_ms(f.h, 450);
    run(&f, "b4", &r, 5000);
    sn_result_clear(&r);
    ck_assert_int_eq(f.srv.routes[0].n, 3);
    fix_free(&f);
}
END_TEST

START_TEST(retry_after_is_honoured)
{
    fix_t f;
    fix_new(&f);
    route_t *p1 = route(&f, "/p1/");
    step(p1, 429, "{\"error\":{\"message\":\"slow down\",\"code\":\"rate_limit_exceeded\"}}", "1",
         0);
    step_oai(p1, GOOD_ANSWER, 10, 10);
    open_llm(&f, P1 "provider = p1 retries=2\n" ACTIONS);
    sn_result_t r;
    json_t *res = run(&f, "inc-r", &r, 5000);
    ck_assert_int_eq(f.srv.n, 2);
    int64_t gap = f.srv.seen[1].at - f.srv.seen[0].at;
    ck_assert_msg(gap >= 950 && gap < 3000, "retried after %lld ms", (long long)gap);
    ck_assert_uint_eq(json_array_size(json_object_get(res, "hypotheses")), 1);
    sn_result_clear(&r);
    ck_assert(metric(&f, "analyzer_llm_retries_total") == 1.0);
    fix_free(&f);
}
END_TEST

START_TEST(garbage_envelope_is_retried_like_a_server_error)
{
    fix_t f;
    fix_new(&f);
    route_t *p1 = route(&f, "/p1/");
    step(p1, 200, "<html>502 Bad Gateway</html>", NULL, 0);
    step(p1, 200, "{\"choices\":[]}", NULL, 0);
    step_oai(p1, GOOD_ANSWER, 10, 10);
    open_llm(&f, P1 "provider = p1 retries=2\n" ACTIONS);
    sn_result_t r;
    json_t *res = run(&f, "inc-env", &r, 5000);
    ck_assert_int_eq(f.srv.n, 3);
    ck_assert_uint_eq(json_array_size(json_object_get(res, "hypotheses")), 1);
    /* not a validation problem: no correction was sent */
    ck_assert_ptr_null(strstr(f.srv.seen[2].body, "previous reply was rejected"));
    sn_result_clear(&r);
    ck_assert(metric(&f, "analyzer_llm_retries_total") == 2.0);
    ck_assert(metric(&f, "analyzer_llm_refused_total") == 0.0);
    fix_free(&f);
}
END_TEST

START_TEST(quota_and_long_retry_after_move_on)
{
    fix_t f;
    fix_new(&f);
    step(route(&f, "/p1/"), 429,
         "{\"error\":{\"message\":\"You exceeded your quota\",\"code\":\"insufficient_quota\"}}",
         NULL, 0);
    step(route(&f, "/p2/"), 429, "{\"error\":{\"message\":\"busy\"}}", "3600", 0);
    open_llm(&f, P1 "provider = p1 retries=3\n" P2 "provider = p2 retries=3\n" ACTIONS);
    sn_result_t r;
    json_t *res = run(&f, "inc-q", &r, 5000);
    ck_assert_int_eq(f.srv.routes[0].n, 1); /* insufficient_quota: never retried */
    ck_assert_int_eq(f.srv.routes[1].n, 1); /* Retry-After beyond retry_max: next provider */
    ck_assert_uint_eq(json_array_size(json_object_get(res, "hypotheses")), 0);
    ck_assert_ptr_nonnull(strstr(note_of(res), "every provider failed"));
    ck_assert_ptr_nonnull(strstr(note_of(res), "insufficient_quota"));
    ck_assert_ptr_nonnull(strstr(note_of(res), "beyond retry_max"));
    sn_result_clear(&r);
    fix_free(&f);
}
END_TEST

START_TEST(all_providers_down_keeps_the_incident_going)
{
    /* p2 points at a port nobody listens on. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    fix_t f;
    fix_new(&f);
    step(route(&f, "/p1/"), 503, "{\"error\":{\"message\":\"overloaded\"}}", NULL, 0);
    char settings[1024], p2[128];
    snprintf(p2, sizeof(p2), "provider = p2 url=http://127.0.0.1:%d/v1 model=m retries=1\n",
             ntohs(sa.sin_port));
    snprintf(settings, sizeof(settings), "%s%s%s", P1 "provider = p1 retries=1\n", p2, ACTIONS);
    open_llm(&f, settings);
    sn_result_t r;
    json_t *res = run(&f, "inc-d", &r, 5000);
    ck_assert_int_eq(f.srv.routes[0].n, 2); /* one retry */
    ck_assert_uint_eq(json_array_size(json_object_get(res, "hypotheses")), 0);
    ck_assert_ptr_nonnull(strstr(note_of(res), "no LLM analysis: every provider failed"));
    ck_assert_ptr_nonnull(strstr(note_of(res), "p1: HTTP 503"));
    sn_result_clear(&r);
    /* The incident's existing plan (from an earlier planner) passes through. */
    json_t *inc = incident("inc-d");
    json_object_set_new(inc, "plan",
                        json_pack("[{s:s,s:s,s:s,s:{},s:s,s:b}]", "executor", "mock", "verb",
                                  "scale_deployment", "target", "deployment/shop/cart", "params",
                                  "risk", "medium", "allowed", 1));
    memset(&r, 0, sizeof(r));
    f.ops->plan(f.self, inc, sn_result_done, &r);
    json_decref(inc);
    ck_assert(r.done);
    json_t *a = json_array_get(json_object_get(r.result, "plan"), 0);
    ck_assert_str_eq(str(a, "verb"), "scale_deployment");
    ck_assert_ptr_null(json_object_get(a, "risk")); /* the core recomputes it */
    sn_result_clear(&r);
    ck_assert(metric(&f, "analyzer_llm_fallbacks_total") == 1.0);
    fix_free(&f);
}
END_TEST

/* ---- budgets --------------------------------------------------------------------------------- */

START_TEST(incident_token_budget)
{
    fix_t f;
    fix_new(&f);
    route_t *p1 = route(&f, "/p1/");
    step_oai(p1, GOOD_ANSWER, 800, 400);
    open_llm(&f, P1 P1_OPTS ACTIONS "incident_tokens = 1000\n");
    sn_result_t r;
    json_t *res = run(&f, "inc-b", &r, 5000);
    ck_assert_uint_eq(json_array_size(json_object_get(res, "hypotheses")), 1);
    sn_result_clear(&r);
    json_t *b = body_of(&f, 0);
    /* the output limit never asks for more than the budget leaves */
    ck_assert_int_eq(json_integer_value(json_object_get(b, "max_completion_tokens")), 1000);
    json_decref(b);
    /* The same incident again (a loop-back): skipped, no request. */
    res = run(&f, "inc-b", &r, 5000);
    ck_assert(r.done);
    ck_assert_int_eq(f.srv.n, 1);
    ck_assert_uint_eq(json_array_size(json_object_get(res, "hypotheses")), 0);
    ck_assert_ptr_nonnull(strstr(note_of(res), "incident's token budget is spent (1200 of 1000)"));
    sn_result_clear(&r);
    /* Another incident still gets its own budget. */
    res = run(&f, "inc-b2", &r, 5000);
    ck_assert_int_eq(f.srv.n, 2);
    sn_result_clear(&r);
    ck_assert(metric(&f, "analyzer_llm_budget_skips_total") == 1.0);
    fix_free(&f);
}
END_TEST

START_TEST(daily_cost_budget)
{
    fix_t f;
    fix_new(&f);
    step_oai(route(&f, "/p1/"), GOOD_ANSWER, 1000, 500);
    open_llm(&f, P1 P1_OPTS ACTIONS "daily_cost = 0.0004\n");
    sn_result_t r;
    run(&f, "day-1", &r, 5000); /* USD 0.00045: over the day's budget afterwards */
    sn_result_clear(&r);
    json_t *res = run(&f, "day-2", &r, 5000);
    ck_assert_int_eq(f.srv.n, 1);
    ck_assert_ptr_nonnull(strstr(note_of(res), "daily budget is spent"));
    sn_result_clear(&r);
    json_t *p = plan_of(&f, "day-2", &r);
    ck_assert_ptr_nonnull(strstr(str(p, "reason"), "daily budget is spent"));
    sn_result_clear(&r);
    fix_free(&f);
}
END_TEST

/* ---- redaction ----------------------------------------------------------------------------- */

START_TEST(redactor_direct)
{
    llm_redactor_t red;
    char err[256];
    const char *pats[] = {"acct-[0-9]+", NULL};
    ck_assert_int_eq(llm_redact_init(&red, pats, NULL, 1, 1, err, sizeof(err)), 0);
    static const char *const cases[][2] = {
        {"Authorization: Bearer sk-live-abcdefghijk123 ok", "Authorization: Bearer [REDACTED] ok"},
        {"key AKIAABCDEFGHIJKLMNOP used", "key [REDACTED] used"},
        {"password=hunter2x; user=bob", "password=[REDACTED]; user=bob"},
        {"mail bob@example.com now", "mail [REDACTED] now"},
        {"from 10.1.2.3:8080", "from [REDACTED]:8080"},
        {"version 1.2.3.4.5 stays", "version 1.2.3.4.5 stays"},
        {"acct-99812 billed", "[REDACTED] billed"},
        {"nothing secret here", "nothing secret here"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t hits = 0;
        char *out = llm_redact_str(&red, cases[i][0], &hits);
        ck_assert_msg(strcmp(out, cases[i][1]) == 0, "'%s' -> '%s'", cases[i][0], out);
        free(out);
    }
    llm_redact_free(&red);
    const char *bad[] = {"([", NULL};
    ck_assert_int_ne(llm_redact_init(&red, bad, NULL, 0, 1, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "pattern 1"));
}
END_TEST

START_TEST(secrets_never_reach_the_provider)
{
    static const char *const secrets[] = {
        "sk-live-abcdefghijk123",
        "AKIAABCDEFGHIJKLMNOP",
        "bob@example.com",
        "10.1.2.3",
        "acct-99812",
        "hunter2x",
        "tok-abcd1234efgh",
    };
    fix_t f;
    fix_new(&f);
    route_t *p1 = route(&f, "/p1/");
    step_tool(p1, "call_1", "recent_changes", "{\"service\":\"checkout\"}");
    step_oai(p1, GOOD_ANSWER, 10, 10);
    open_llm(&f, P1 P1_OPTS ACTIONS "redact = acct-[0-9]+\nredact_ips = true\n");
    json_t *inc = incident("inc-s");
    json_t *log = json_array_get(json_object_get(inc, "logs"), 0);
    json_object_set_new(
        log, "log",
        json_string("login failed for bob@example.com from 10.1.2.3: Authorization: "
                    "Bearer sk-live-abcdefghijk123 password=hunter2x acct-99812 "
                    "key AKIAABCDEFGHIJKLMNOP"));
    json_t *labels = json_object_get(json_array_get(json_object_get(inc, "changes"), 0), "labels");
    json_object_set_new(labels, "note", json_string("token=tok-abcd1234efgh"));
    sn_result_t r = {0};
    f.ops->analyze(f.self, inc, sn_result_done, &r);
    json_decref(inc);
    ck_assert_int_eq(sn_harness_wait(f.h, &r, 5000), 0);
    ck_assert_int_eq(f.srv.n, 2);
    for (int i = 0; i < 2; i++) {
        for (size_t k = 0; k < sizeof(secrets) / sizeof(secrets[0]); k++)
            ck_assert_msg(strstr(f.srv.seen[i].body, secrets[k]) == NULL, "request %d carries '%s'",
                          i, secrets[k]);
        ck_assert_ptr_nonnull(strstr(f.srv.seen[i].body, "[REDACTED]"));
    }
    /* the tool result (the change) was redacted too, and is there */
    ck_assert_ptr_nonnull(strstr(f.srv.seen[1].body, "token=[REDACTED]"));
    json_t *rec =
        json_object_get(json_array_get(json_object_get(r.result, "hypotheses"), 0), "llm");
    ck_assert_int_ge(json_integer_value(json_object_get(rec, "redactions")), 7);
    sn_result_clear(&r);
    ck_assert(metric(&f, "analyzer_llm_redactions_total") >= 7.0);
    fix_free(&f);
}
END_TEST

/* ---- tools -------------------------------------------------------------------------------------
 */

START_TEST(tool_round_is_recorded)
{
    fix_t f;
    fix_new(&f);
    route_t *p1 = route(&f, "/p1/");
    step_tool(p1, "call_1", "recent_changes", "{\"service\":\"checkout\"}");
    step_oai(p1, GOOD_ANSWER, 10, 10);
    open_llm(&f, P1 P1_OPTS ACTIONS);
    sn_result_t r;
    json_t *res = run(&f, "inc-tool", &r, 5000);
    ck_assert_int_eq(f.srv.n, 2);
    json_t *b = body_of(&f, 1);
    json_t *msgs = json_object_get(b, "messages");
    ck_assert_uint_eq(json_array_size(msgs), 4);
    json_t *asst = json_array_get(msgs, 2);
    ck_assert_str_eq(str(asst, "role"), "assistant");
    json_t *call = json_array_get(json_object_get(asst, "tool_calls"), 0);
    ck_assert_str_eq(str(call, "id"), "call_1");
    ck_assert_str_eq(str(json_object_get(call, "function"), "name"), "recent_changes");
    json_t *tool = json_array_get(msgs, 3);
    ck_assert_str_eq(str(tool, "role"), "tool");
    ck_assert_str_eq(str(tool, "tool_call_id"), "call_1");
    json_t *content = json_loads(str(tool, "content"), 0, NULL);
    ck_assert_ptr_nonnull(content);
    json_t *ch = json_array_get(json_object_get(content, "changes"), 0);
    ck_assert_str_eq(str(ch, "version"), "v2.3.1");
    ck_assert_str_eq(str(ch, "change"), "deploy");
    json_decref(content);
    json_decref(b);
    json_t *rec = json_object_get(json_array_get(json_object_get(res, "hypotheses"), 0), "llm");
    json_t *tl = json_array_get(json_object_get(rec, "tool_calls"), 0);
    ck_assert_str_eq(str(tl, "tool"), "recent_changes");
    ck_assert_str_eq(str(json_object_get(tl, "args"), "service"), "checkout");
    ck_assert_ptr_nonnull(strstr(str(tl, "answer"), "v2.3.1"));
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "turns")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "tokens_in")), 110);
    sn_result_clear(&r);
    ck_assert(metric(&f, "analyzer_llm_tool_calls_total") == 1.0);
    fix_free(&f);
}
END_TEST

START_TEST(tool_loop_is_bounded)
{
    fix_t f;
    fix_new(&f);
    route_t *p1 = route(&f, "/p1/");
    step_tool(p1, "call_1", "history", "{not json");
    open_llm(&f, P1 P1_OPTS ACTIONS "max_turns = 3\n");
    sn_result_t r;
    json_t *res = run(&f, "inc-loop", &r, 5000);
    ck_assert_int_eq(f.srv.n, 3);
    /* the last call closes the tools */
    json_t *b = body_of(&f, 2);
    ck_assert_str_eq(str(b, "tool_choice"), "none");
    json_decref(b);
    b = body_of(&f, 1);
    ck_assert_str_eq(str(b, "tool_choice"), "auto");
    /* arguments that are not JSON get an error answer; the raw text goes back as it came */
    json_t *msgs = json_object_get(b, "messages");
    json_t *call = json_array_get(json_object_get(json_array_get(msgs, 2), "tool_calls"), 0);
    ck_assert_str_eq(str(json_object_get(call, "function"), "arguments"), "{not json");
    ck_assert_ptr_nonnull(strstr(str(json_array_get(msgs, 3), "content"), "must be a JSON object"));
    json_decref(b);
    ck_assert_uint_eq(json_array_size(json_object_get(res, "hypotheses")), 0);
    ck_assert_ptr_nonnull(strstr(note_of(res), "still calling tools"));
    sn_result_clear(&r);
    fix_free(&f);
}
END_TEST

START_TEST(anthropic_tool_round_alternates_roles)
{
    fix_t f;
    fix_new(&f);
    route_t *a = route(&f, "/a/");
    json_t *d = json_pack("{s:s,s:s,s:[{s:s,s:s,s:s,s:{s:s}}],s:s,s:{s:i,s:i}}", "type", "message",
                          "role", "assistant", "content", "type", "tool_use", "id", "toolu_1",
                          "name", "logs", "input", "service", "checkout", "stop_reason", "tool_use",
                          "usage", "input_tokens", 50, "output_tokens", 5);
    char *s = json_dumps(d, JSON_COMPACT);
    step(a, 200, s, NULL, 0);
    free(s);
    json_decref(d);
    d = json_pack("{s:s,s:s,s:[{s:s,s:s}],s:s,s:{s:i,s:i}}", "type", "message", "role", "assistant",
                  "content", "type", "text", "text", "```json\n" GOOD_ANSWER "\n```", "stop_reason",
                  "end_turn", "usage", "input_tokens", 80, "output_tokens", 20);
    s = json_dumps(d, JSON_COMPACT);
    step(a, 200, s, NULL, 0);
    free(s);
    json_decref(d);
    open_llm(&f, "provider = c kind=anthropic url=http://127.0.0.1:%P/a/v1 model=m\n" ACTIONS);
    sn_result_t r;
    json_t *res = run(&f, "inc-at", &r, 5000);
    ck_assert_int_eq(f.srv.n, 2);
    json_t *b = body_of(&f, 0);
    json_t *tools = json_object_get(b, "tools");
    ck_assert_uint_eq(json_array_size(tools), 3);
    ck_assert(json_is_object(json_object_get(json_array_get(tools, 0), "input_schema")));
    ck_assert_str_eq(str(json_object_get(b, "tool_choice"), "type"), "auto");
    json_decref(b);
    b = body_of(&f, 1);
    json_t *msgs = json_object_get(b, "messages");
    ck_assert_uint_eq(json_array_size(msgs), 3);
    ck_assert_str_eq(str(json_array_get(msgs, 0), "role"), "user");
    json_t *asst = json_array_get(msgs, 1);
    ck_assert_str_eq(str(asst, "role"), "assistant");
    json_t *use = json_array_get(json_object_get(asst, "content"), 0);
    ck_assert_str_eq(str(use, "type"), "tool_use");
    ck_assert_str_eq(str(use, "id"), "toolu_1");
    ck_assert_str_eq(str(json_object_get(use, "input"), "service"), "checkout");
    json_t *user = json_array_get(msgs, 2);
    ck_assert_str_eq(str(user, "role"), "user");
    json_t *tr = json_array_get(json_object_get(user, "content"), 0);
    ck_assert_str_eq(str(tr, "type"), "tool_result");
    ck_assert_str_eq(str(tr, "tool_use_id"), "toolu_1");
    ck_assert_ptr_nonnull(strstr(str(tr, "content"), "db pool exhausted"));
    json_decref(b);
    /* the fenced JSON of the final answer was accepted */
    ck_assert_uint_eq(json_array_size(json_object_get(res, "hypotheses")), 1);
    sn_result_clear(&r);
    fix_free(&f);
}
END_TEST

static void stop_done(void *arg, int status, json_t *result)
{
    (void)result;
    *(int *)arg = status == 0 ? 1 : -1;
}

START_TEST(stop_ends_waiting_analyses)
{
    fix_t f;
    fix_new(&f);
    step(route(&f, "/p1/"), 429, "{\"error\":{\"message\":\"later\"}}", "1", 0);
    open_llm(&f, P1 "provider = p1 retries=3\n" ACTIONS);
    json_t *inc = incident("inc-stop");
    sn_result_t r = {0};
    f.ops->analyze(f.self, inc, sn_result_done, &r);
    json_decref(inc);
    /* the first attempt is answered 429 and the analysis waits a second to retry */
    for (int i = 0; i < 100 && f.srv.n == 0; i++)
        sn_harness_run_ms(f.h, 10);
    sn_harness_run_ms(f.h, 50);
    ck_assert_int_eq(f.srv.n, 1);
    ck_assert(!r.done);
    int stopped = 0;
    f.plugin->stop(f.self, stop_done, &stopped);
    ck_assert(r.done); /* at once, without the model */
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(note_of(r.result), "stopping"));
    ck_assert_int_eq(stopped, 1);
    sn_result_clear(&r);
    /* a stopped analyzer answers without calling anyone */
    inc = incident("inc-stop2");
    f.ops->analyze(f.self, inc, sn_result_done, &r);
    json_decref(inc);
    ck_assert(r.done);
    ck_assert_int_eq(r.status, 0);
    sn_result_clear(&r);
    sn_harness_run_ms(f.h, 1100);
    ck_assert_int_eq(f.srv.n, 1);
    fix_free(&f);
}
END_TEST

/* ---- configuration ------------------------------------------------------------------------------
 */

START_TEST(bad_settings_are_refused_without_echo)
{
    static const char *const bad[][2] = {
        {"provider = p1 kind=openai\n", "model=... is required"},
        {"provider = p1 kind=gemini model=m\n", "kind must be openai or anthropic"},
        {"provider = p1 model=m key=SUPERSECRET-1 colour=blue\n", "option 'colour'"},
        {"provider = p1 model=m url=ftp://x\n", "http://"},
        {"provider = p-1 model=m\n", "provider line 1"},
        {"provider = p1 model=m retries=99\n", "retries"},
        {"provider = p1 model=m\naction = rollout_restart deployment/x\n", "action 1"},
        {"provider = p1 model=m\naction = mock:restart deployment/{name}\n", "{service}"},
        {"provider = p1 model=m\nredact = ([\n", "pattern 1"},
        {"provider = p1 model=m\nmax_confidence = 0\n", "max_confidence"},
    };
    sn_harness_t *h = sn_harness_new();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sn_err_t err = {{0}};
        ck_assert_ptr_null(sn_harness_create(h, SN_ANALYZER, "llm", bad[i][0], NULL, &err));
        ck_assert_msg(strstr(err.msg, bad[i][1]) != NULL, "%s: '%s' lacks '%s'", bad[i][0], err.msg,
                      bad[i][1]);
        ck_assert_ptr_null(strstr(err.msg, "SUPERSECRET"));
    }
    sn_err_t err = {{0}};
    ck_assert_ptr_null(sn_harness_create(h, SN_ANALYZER, "llm", "max_turns = 3\n", NULL, &err));
    sn_harness_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("llm");
    TCase *tc = tcase_create("analyzer");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, openai_request_shape_and_accounting);
    tcase_add_test(tc, anthropic_request_shape);
    tcase_add_test(tc, validator_direct);
    tcase_add_test(tc, garbage_is_retried_once_with_the_error);
    tcase_add_test(tc, unknown_verb_is_refused_then_falls_back);
    tcase_add_test(tc, timeout_fails_over_to_the_next_provider);
    tcase_add_test(tc, breaker_skips_a_failing_provider);
    tcase_add_test(tc, retry_after_is_honoured);
    tcase_add_test(tc, garbage_envelope_is_retried_like_a_server_error);
    tcase_add_test(tc, quota_and_long_retry_after_move_on);
    tcase_add_test(tc, all_providers_down_keeps_the_incident_going);
    tcase_add_test(tc, incident_token_budget);
    tcase_add_test(tc, daily_cost_budget);
    tcase_add_test(tc, redactor_direct);
    tcase_add_test(tc, secrets_never_reach_the_provider);
    tcase_add_test(tc, tool_round_is_recorded);
    tcase_add_test(tc, tool_loop_is_bounded);
    tcase_add_test(tc, anthropic_tool_round_alternates_roles);
    tcase_add_test(tc, stop_ends_waiting_analyses);
    tcase_add_test(tc, bad_settings_are_refused_without_echo);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
