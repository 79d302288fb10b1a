/**
 * @file check_openai_embedder.c
 * Tests of the openai embedder loaded as a .so through the harness, against a scripted evhttp
 * server on 127.0.0.1 (an ephemeral port) that speaks the OpenAI embeddings shape and is served
 * by the harness's own loop: request shape and bearer key, vectors matched by index, batching
 * by time and by size, the LRU cache (a repeated text sends nothing), in-flight coalescing,
 * eviction, hit/miss metrics, dimension mismatch, retries on 429/5xx with Retry-After, no retry
 * on 400/401/quota, timeouts, the pending bound, text limits and configuration errors.
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

#define OA_LABELS "instance=\"embedder:openai\""
#define KEY "sk-test-0123456789abcdef"
#define MAX_REQS 32
#define WAIT_MS 5000

typedef struct seen {
    char method[8];
    char uri[128];
    char auth[96];
    char ctype[64];
    json_t *body;
} seen_t;

/* The server: answers request i with status[i] (the last one repeats; none = 200). */
typedef struct srv {
    struct evhttp *http;
    int port;
    int status[8];
    int nstatus;
    const char *retry_after; /* sent with 429 */
    const char *err_code;    /* "code" of error bodies */
    int answer_dim;          /* numbers per vector */
    int reverse;             /* answer the data in reverse order */
    int hold;                /* never answer */
    seen_t seen[MAX_REQS];
    int n;
} srv_t;

/* The vector the server gives @p text: a function of the text any test can recompute. */
static double vec_at(const char *text, int k)
{
    unsigned h = 2166136261u;
    for (const char *p = text; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return (double)((h >> (k % 24)) % 1000) / 1000.0 + k;
}

static void srv_cb(struct evhttp_request *req, void *arg)
{
    srv_t *s = arg;
    int i = s->n;
    int code = s->nstatus ? s->status[i < s->nstatus ? i : s->nstatus - 1] : 200;
    struct evkeyvalq *hin = evhttp_request_get_input_headers(req);
    json_t *body = NULL;
    if (s->n < MAX_REQS) {
        seen_t *x = &s->seen[s->n];
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        char *raw = calloc(1, len + 1);
        evbuffer_copyout(in, raw, len);
        x->body = json_loads(raw, 0, NULL);
        free(raw);
        body = x->body;
        const char *a = evhttp_find_header(hin, "Authorization");
        const char *c = evhttp_find_header(hin, "Content-Type");
        snprintf(x->auth, sizeof(x->auth), "%s", a ? a : "");
        snprintf(x->ctype, sizeof(x->ctype), "%s", c ? c : "");
        snprintf(x->uri, sizeof(x->uri), "%s", evhttp_request_get_uri(req));
        snprintf(x->method, sizeof(x->method), "%s",
                 evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" : "OTHER");
    }
    s->n++;
    if (s->hold)
        return; /* freed with the connection when the test closes the server */
    struct evbuffer *out = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    if (code != 200) {
        if (code == 429 && s->retry_after)
            evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After",
                              s->retry_after);
        json_t *e =
            json_pack("{s:{s:s,s:s,s:n,s:s?}}", "error", "message", "scripted failure for " KEY,
                      "type", "test", "param", "code", s->err_code);
        char *t = json_dumps(e, JSON_COMPACT);
        evbuffer_add(out, t, strlen(t));
        free(t);
        json_decref(e);
        evhttp_send_reply(req, code, "Scripted", out);
        evbuffer_free(out);
        return;
    }
    json_t *input = json_object_get(body, "input");
    json_t *data = json_array();
    size_t n = json_array_size(input);
    for (size_t j = 0; j < n; j++) {
        size_t idx = s->reverse ? n - 1 - j : j;
        const char *t = json_string_value(json_array_get(input, idx));
        json_t *emb = json_array();
        for (int k = 0; k < s->answer_dim; k++)
            json_array_append_new(emb, json_real(vec_at(t ? t : "", k)));
        json_array_append_new(data, json_pack("{s:s,s:I,s:o}", "object", "embedding", "index",
                                              (json_int_t)idx, "embedding", emb));
    }
    json_t *doc = json_pack("{s:s,s:o,s:s,s:{s:i,s:i}}", "object", "list", "data", data, "model",
                            "test-model", "usage", "prompt_tokens", 3, "total_tokens", 3);
    char *t = json_dumps(doc, JSON_COMPACT);
    evbuffer_add(out, t, strlen(t));
    free(t);
    json_decref(doc);
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

typedef struct fix {
    sn_harness_t *h;
    srv_t srv;
    const sn_embedder_ops_t *ops;
    const sn_plugin_t *plugin;
    void *self;
} fix_t;

static void srv_start(fix_t *f)
{
    f->srv.answer_dim = 4;
    f->srv.http = evhttp_new(sn_runtime_base(sn_harness_runtime(f->h)));
    ck_assert_ptr_nonnull(f->srv.http);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(f->srv.http, "127.0.0.1", 0);
    ck_assert_ptr_nonnull(bs);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    ck_assert_int_eq(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl), 0);
    f->srv.port = ntohs(sa.sin_port);
    evhttp_set_gencb(f->srv.http, srv_cb, &f->srv);
}

/* Harness + server; the embedder is opened by fix_plugin. */
static void fix_open(fix_t *f)
{
    memset(f, 0, sizeof(*f));
    setenv("SN_TEST_OA_KEY", KEY, 1);
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    srv_start(f);
}

static void fix_plugin(fix_t *f, const char *extra)
{
    char settings[2048];
    snprintf(settings, sizeof(settings),
             "url = http://127.0.0.1:%d\nmodel = test-model\ndim = 4\n"
             "api_key = ${env:SN_TEST_OA_KEY}\nretry_base = 10ms\n%s%s",
             f->srv.port, extra && strstr(extra, "batch_wait") ? "" : "batch_wait = 0ms\n",
             extra ? extra : "");
    sn_err_t err = {{0}};
    f->self = sn_harness_create(f->h, SN_EMBEDDER, "openai", settings, &f->plugin, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    f->ops = f->plugin->ops;
}

static void fix_close(fix_t *f)
{
    evhttp_free(f->srv.http); /* before the loop it runs on */
    sn_harness_free(f->h);
    for (int i = 0; i < f->srv.n && i < MAX_REQS; i++)
        json_decref(f->srv.seen[i].body);
}

static double metric(fix_t *f, const char *name)
{
    return sn_metric_value(sn_harness_runtime(f->h), name, OA_LABELS);
}

static void embed(fix_t *f, const char *text, sn_result_t *r)
{
    memset(r, 0, sizeof(*r));
    f->ops->embed(f->self, text, sn_result_done, r);
}

static int embed_wait(fix_t *f, const char *text, sn_result_t *r)
{
    embed(f, text, r);
    ck_assert_int_eq(sn_harness_wait(f->h, r, WAIT_MS), 0);
    return r->status;
}

static void assert_vector(const sn_result_t *r, const char *text)
{
    ck_assert_int_eq(r->status, 0);
    json_t *v = json_object_get(r->result, "vector");
    ck_assert_int_eq(json_array_size(v), 4);
    for (int k = 0; k < 4; k++) {
        double got = json_number_value(json_array_get(v, k));
        double want = (double)(float)vec_at(text, k);
        ck_assert_msg(got == want, "%s[%d]: %g != %g", text, k, got, want);
    }
}

static const char *input_at(const seen_t *s, size_t i)
{
    return json_string_value(json_array_get(json_object_get(s->body, "input"), i));
}

START_TEST(request_shape_and_vector)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, NULL);
    sn_result_t r;
    ck_assert_int_eq(embed_wait(&f, "disk full on /var", &r), 0);
    assert_vector(&r, "disk full on /var");
    sn_result_clear(&r);
    ck_assert_int_eq(f.srv.n, 1);
    const seen_t *s = &f.srv.seen[0];
    ck_assert_str_eq(s->method, "POST");
    ck_assert_str_eq(s->uri, "/v1/embeddings");
    ck_assert_str_eq(s->auth, "Bearer " KEY);
    ck_assert_str_eq(s->ctype, "application/json");
    ck_assert_str_eq(json_string_value(json_object_get(s->body, "model")), "test-model");
    ck_assert_int_eq(json_array_size(json_object_get(s->body, "input")), 1);
    ck_assert_str_eq(input_at(s, 0), "disk full on /var");
    ck_assert_ptr_null(json_object_get(s->body, "dimensions"));
    sn_health_t hl = {0};
    ck_assert_int_eq(f.plugin->health(f.self, &hl), 0);
    ck_assert_int_eq(hl.ok, 1);
    ck_assert_ptr_null(strstr(hl.detail, KEY));
    fix_close(&f);
}
END_TEST

START_TEST(api_base_with_v1_and_no_key)
{
    fix_t f;
    fix_open(&f);
    char settings[512];
    snprintf(settings, sizeof(settings),
             "url = http://127.0.0.1:%d/v1/\ndim = 4\nbatch_wait = 0ms\nsend_dimensions = true\n",
             f.srv.port);
    sn_err_t err = {{0}};
    f.self = sn_harness_create(f.h, SN_EMBEDDER, "openai", settings, &f.plugin, &err);
    ck_assert_msg(f.self != NULL, "%s", err.msg);
    f.ops = f.plugin->ops;
    sn_result_t r;
    ck_assert_int_eq(embed_wait(&f, "x", &r), 0);
    sn_result_clear(&r);
    ck_assert_str_eq(f.srv.seen[0].uri, "/v1/embeddings");
    ck_assert_str_eq(f.srv.seen[0].auth, "");
    ck_assert_str_eq(json_string_value(json_object_get(f.srv.seen[0].body, "model")),
                     "text-embedding-3-small");
    ck_assert_int_eq(json_integer_value(json_object_get(f.srv.seen[0].body, "dimensions")), 4);
    fix_close(&f);
}
END_TEST

START_TEST(texts_within_batch_wait_share_one_request)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "batch_wait = 300ms\nbatch_size = 16\n");
    f.srv.reverse = 1; /* vectors must be matched by index, not by position */
    const char *texts[] = {"alpha", "bravo", "charlie", "delta", "echo"};
    sn_result_t r[5];
    for (int i = 0; i < 5; i++)
        embed(&f, texts[i], &r[i]);
    sn_harness_run_ms(f.h, 50);
    ck_assert_int_eq(f.srv.n, 0); /* still waiting for more texts */
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(sn_harness_wait(f.h, &r[i], WAIT_MS), 0);
    ck_assert_int_eq(f.srv.n, 1);
    ck_assert_int_eq(json_array_size(json_object_get(f.srv.seen[0].body, "input")), 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_str_eq(input_at(&f.srv.seen[0], (size_t)i), texts[i]);
        assert_vector(&r[i], texts[i]);
        sn_result_clear(&r[i]);
    }
    ck_assert(metric(&f, "embedder_texts_total") == 5);
    ck_assert(metric(&f, "embedder_requests_total") == 1);
    fix_close(&f);
}
END_TEST

START_TEST(a_full_batch_goes_at_once)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "batch_wait = 2s\nbatch_size = 2\n");
    const char *texts[] = {"one", "two", "three", "four", "five"};
    sn_result_t r[5];
    for (int i = 0; i < 5; i++)
        embed(&f, texts[i], &r[i]);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(sn_harness_wait(f.h, &r[i], WAIT_MS), 0);
    ck_assert_int_eq(f.srv.n, 2); /* two full batches, no waiting */
    ck_assert_int_eq(r[4].done, 0);
    ck_assert_int_eq(json_array_size(json_object_get(f.srv.seen[0].body, "input")), 2);
    ck_assert_int_eq(json_array_size(json_object_get(f.srv.seen[1].body, "input")), 2);
    int64_t t0 = sn_mono_ms();
    ck_assert_int_eq(sn_harness_wait(f.h, &r[4], WAIT_MS), 0); /* the rest after batch_wait */
    ck_assert_int_ge(sn_mono_ms() - t0, 1000);
    ck_assert_int_eq(f.srv.n, 3);
    ck_assert_str_eq(input_at(&f.srv.seen[2], 0), "five");
    for (int i = 0; i < 5; i++) {
        assert_vector(&r[i], texts[i]);
        sn_result_clear(&r[i]);
    }
    fix_close(&f);
}
END_TEST

START_TEST(repeated_text_is_answered_from_the_cache)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, NULL);
    sn_result_t r;
    ck_assert_int_eq(embed_wait(&f, "nginx crashed", &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(f.srv.n, 1);
    embed(&f, "nginx crashed", &r);
    ck_assert_int_eq(r.done, 1); /* answered before embed() returned */
    assert_vector(&r, "nginx crashed");
    sn_result_clear(&r);
    sn_harness_run_ms(f.h, 50);
    ck_assert_int_eq(f.srv.n, 1); /* no second request */
    ck_assert(metric(&f, "embedder_cache_hits_total") == 1);
    ck_assert(metric(&f, "embedder_cache_misses_total") == 1);
    ck_assert(metric(&f, "embedder_cache_hit_ratio") == 0.5);
    ck_assert(metric(&f, "embedder_cache_entries") == 1);
    fix_close(&f);
}
END_TEST

START_TEST(same_text_in_flight_joins_the_request)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "batch_wait = 50ms\n");
    sn_result_t a, b, c;
    embed(&f, "same", &a);
    embed(&f, "same", &b);
    embed(&f, "other", &c);
    ck_assert_int_eq(sn_harness_wait(f.h, &a, WAIT_MS), 0);
    ck_assert_int_eq(sn_harness_wait(f.h, &b, WAIT_MS), 0);
    ck_assert_int_eq(sn_harness_wait(f.h, &c, WAIT_MS), 0);
    ck_assert_int_eq(f.srv.n, 1);
    ck_assert_int_eq(json_array_size(json_object_get(f.srv.seen[0].body, "input")), 2);
    assert_vector(&a, "same");
    assert_vector(&b, "same");
    assert_vector(&c, "other");
    ck_assert(metric(&f, "embedder_coalesced_total") == 1);
    sn_result_clear(&a);
    sn_result_clear(&b);
    sn_result_clear(&c);
    fix_close(&f);
}
END_TEST

START_TEST(cache_is_bounded_lru)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "cache_size = 2\n");
    sn_result_t r;
    const char *seq[] = {"a", "b", "a", "c", "b", "a"};
    /* a miss, b miss, a hit (a most recent), c miss evicts b, b miss evicts a, a miss. */
    int want_requests[] = {1, 2, 2, 3, 4, 5};
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(embed_wait(&f, seq[i], &r), 0);
        assert_vector(&r, seq[i]);
        sn_result_clear(&r);
        ck_assert_msg(f.srv.n == want_requests[i], "step %d: %d requests", i, f.srv.n);
    }
    ck_assert(metric(&f, "embedder_cache_entries") == 2);
    ck_assert(metric(&f, "embedder_cache_hits_total") == 1);
    fix_close(&f);
}
END_TEST

START_TEST(cache_can_be_disabled)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "cache_size = 0\n");
    sn_result_t r;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(embed_wait(&f, "again", &r), 0);
        sn_result_clear(&r);
    }
    ck_assert_int_eq(f.srv.n, 2);
    fix_close(&f);
}
END_TEST

START_TEST(wrong_dimension_is_an_error)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, NULL);
    f.srv.answer_dim = 3;
    sn_result_t r;
    ck_assert_int_eq(embed_wait(&f, "x", &r), SN_EINVAL);
    ck_assert_ptr_null(r.result);
    sn_health_t hl = {0};
    f.plugin->health(f.self, &hl);
    ck_assert_int_eq(hl.ok, 0);
    ck_assert_ptr_nonnull(strstr(hl.detail, "3 dimensions"));
    ck_assert_int_eq(f.srv.n, 1); /* not retried: it would not change */
    /* Nothing wrong was cached: the right answer later is taken and health recovers. */
    f.srv.answer_dim = 4;
    ck_assert_int_eq(embed_wait(&f, "x", &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(f.srv.n, 2);
    f.plugin->health(f.self, &hl);
    ck_assert_int_eq(hl.ok, 1);
    fix_close(&f);
}
END_TEST

START_TEST(server_errors_are_retried)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, NULL);
    f.srv.status[0] = 503;
    f.srv.status[1] = 500;
    f.srv.status[2] = 200;
    f.srv.nstatus = 3;
    sn_result_t r;
    ck_assert_int_eq(embed_wait(&f, "retry me", &r), 0);
    assert_vector(&r, "retry me");
    sn_result_clear(&r);
    ck_assert_int_eq(f.srv.n, 3);
    ck_assert(metric(&f, "embedder_retries_total") == 2);
    /* Every attempt carries the same body. */
    ck_assert(json_equal(f.srv.seen[0].body, f.srv.seen[2].body));
    fix_close(&f);
}
END_TEST

START_TEST(retry_after_is_honoured)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, NULL);
    f.srv.status[0] = 429;
    f.srv.status[1] = 200;
    f.srv.nstatus = 2;
    f.srv.retry_after = "1";
    sn_result_t r;
    int64_t t0 = sn_mono_ms();
    ck_assert_int_eq(embed_wait(&f, "slow down", &r), 0);
    ck_assert_int_ge(sn_mono_ms() - t0, 950);
    sn_result_clear(&r);
    ck_assert_int_eq(f.srv.n, 2);
    fix_close(&f);
}
END_TEST

START_TEST(retries_run_out)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "max_retries = 2\n");
    f.srv.status[0] = 502;
    f.srv.nstatus = 1;
    sn_result_t r;
    ck_assert_int_eq(embed_wait(&f, "down", &r), SN_EIO);
    ck_assert_int_eq(f.srv.n, 3);
    ck_assert(metric(&f, "embedder_failures_total") == 1);
    sn_health_t hl = {0};
    f.plugin->health(f.self, &hl);
    ck_assert_ptr_nonnull(strstr(hl.detail, "HTTP 502"));
    ck_assert_ptr_null(strstr(hl.detail, KEY)); /* the server echoed the key: not repeated */
    fix_close(&f);
}
END_TEST

START_TEST(client_errors_are_final)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, NULL);
    sn_result_t r;
    f.srv.status[0] = 400;
    f.srv.nstatus = 1;
    ck_assert_int_eq(embed_wait(&f, "bad", &r), SN_EINVAL);
    ck_assert_int_eq(f.srv.n, 1);
    f.srv.status[0] = 401;
    ck_assert_int_eq(embed_wait(&f, "unauthorised", &r), SN_EDENIED);
    ck_assert_int_eq(f.srv.n, 2);
    f.srv.status[0] = 429;
    f.srv.err_code = "insufficient_quota";
    ck_assert_int_eq(embed_wait(&f, "no quota", &r), SN_EIO);
    ck_assert_int_eq(f.srv.n, 3); /* an exhausted quota is not retried */
    sn_health_t hl = {0};
    f.plugin->health(f.self, &hl);
    ck_assert_ptr_null(strstr(hl.detail, KEY));
    fix_close(&f);
}
END_TEST

START_TEST(timeout_is_reported)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "timeout = 200ms\nmax_retries = 1\n");
    f.srv.hold = 1;
    sn_result_t r;
    int64_t t0 = sn_mono_ms();
    ck_assert_int_eq(embed_wait(&f, "never answered", &r), SN_ETIMEDOUT);
    ck_assert_int_ge(sn_mono_ms() - t0, 400);
    ck_assert_int_eq(f.srv.n, 2);
    fix_close(&f);
}
END_TEST

START_TEST(pending_bound_refuses_at_once)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "max_pending = 2\nbatch_wait = 100ms\n");
    sn_result_t r[3];
    embed(&f, "p1", &r[0]);
    embed(&f, "p2", &r[1]);
    embed(&f, "p3", &r[2]);
    ck_assert_int_eq(r[2].done, 1);
    ck_assert_int_eq(r[2].status, SN_ENOMEM);
    ck_assert(metric(&f, "embedder_dropped_total") == 1);
    ck_assert(metric(&f, "embedder_pending") == 2);
    ck_assert_int_eq(sn_harness_wait(f.h, &r[0], WAIT_MS), 0);
    ck_assert_int_eq(sn_harness_wait(f.h, &r[1], WAIT_MS), 0);
    ck_assert(metric(&f, "embedder_pending") == 0);
    for (int i = 0; i < 3; i++)
        sn_result_clear(&r[i]);
    fix_close(&f);
}
END_TEST

START_TEST(inflight_bound_holds_batches_back)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "max_inflight = 1\nbatch_size = 1\ntimeout = 300ms\nmax_retries = 0\n");
    f.srv.hold = 1;
    sn_result_t r[3];
    embed(&f, "i1", &r[0]);
    embed(&f, "i2", &r[1]);
    embed(&f, "i3", &r[2]);
    sn_harness_run_ms(f.h, 100);
    ck_assert_int_eq(f.srv.n, 1); /* one out, two queued */
    ck_assert(metric(&f, "embedder_requests_inflight") == 1);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(sn_harness_wait(f.h, &r[i], WAIT_MS), 0);
        ck_assert_int_eq(r[i].status, SN_ETIMEDOUT);
    }
    ck_assert_int_eq(f.srv.n, 3); /* one after the other */
    fix_close(&f);
}
END_TEST

START_TEST(text_limits)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "max_text = 16\n");
    sn_result_t r;
    embed(&f, "", &r);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.status, SN_EINVAL);
    embed(&f, "  \n\t", &r);
    ck_assert_int_eq(r.status, SN_EINVAL);
    embed(&f, "bad \xff\xfe utf8", &r);
    ck_assert_int_eq(r.status, SN_EINVAL);
    embed(&f, NULL, &r);
    ck_assert_int_eq(r.status, SN_EINVAL);
    ck_assert_int_eq(f.srv.n, 0);
    /* 14 ASCII bytes, then a 3-byte character across the 16-byte limit: cut before it. */
    ck_assert_int_eq(embed_wait(&f, "abcdefghijklmn\xe2\x82\xac tail", &r), 0);
    sn_result_clear(&r);
    ck_assert_str_eq(input_at(&f.srv.seen[0], 0), "abcdefghijklmn");
    ck_assert(metric(&f, "embedder_truncated_total") == 1);
    fix_close(&f);
}
END_TEST

START_TEST(bad_settings_are_refused)
{
    setenv("SN_TEST_OA_KEY", KEY, 1);
    sn_harness_t *h = sn_harness_new();
    sn_err_t err = {{0}};
    const char *bad[][2] = {
        {"url = ftp://x\ndim = 4\napi_key = ${env:SN_TEST_OA_KEY}\n", "url"},
        {"url = http://x\ndim = 0\n", "dim"},
        {"url = http://x\ndim = 4\nbatch_size = 0\n", "batch_size"},
        {"url = http://x\ndim = 4\nbatch_size = 5000\n", "batch_size"},
        {"url = http://x\ndim = 4\nmax_inflight = 0\n", "max_inflight"},
        {"url = http://x\ndim = 4\nretry_base = 2s\nretry_max = 1s\n", "retry"},
        {"url = http://x\nmodel = m\n", "dim"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        ck_assert_ptr_null(sn_harness_create(h, SN_EMBEDDER, "openai", bad[i][0], NULL, &err));
        ck_assert_msg(strstr(err.msg, bad[i][1]) != NULL, "case %zu: %s", i, err.msg);
        ck_assert_ptr_null(strstr(err.msg, KEY));
    }
    sn_harness_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("openai_embedder");
    TCase *tc = tcase_create("embedder");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, request_shape_and_vector);
    tcase_add_test(tc, api_base_with_v1_and_no_key);
    tcase_add_test(tc, texts_within_batch_wait_share_one_request);
    tcase_add_test(tc, a_full_batch_goes_at_once);
    tcase_add_test(tc, repeated_text_is_answered_from_the_cache);
    tcase_add_test(tc, same_text_in_flight_joins_the_request);
    tcase_add_test(tc, cache_is_bounded_lru);
    tcase_add_test(tc, cache_can_be_disabled);
    tcase_add_test(tc, wrong_dimension_is_an_error);
    tcase_add_test(tc, server_errors_are_retried);
    tcase_add_test(tc, retry_after_is_honoured);
    tcase_add_test(tc, retries_run_out);
    tcase_add_test(tc, client_errors_are_final);
    tcase_add_test(tc, timeout_is_reported);
    tcase_add_test(tc, pending_bound_refuses_at_once);
    tcase_add_test(tc, inflight_bound_holds_batches_back);
    tcase_add_test(tc, text_limits);
    tcase_add_test(tc, bad_settings_are_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
