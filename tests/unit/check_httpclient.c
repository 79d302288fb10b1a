/** @file check_httpclient.c Unit tests for httpclient.c against a local evhttp server on
 * 127.0.0.1 (ephemeral port) driven by the same loop as the client. */
#include "runtime.h"

#include <arpa/inet.h>
#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct fixture {
    sn_runtime_t *rt;
    struct evhttp *srv;
    int port;
    char base_url[64];
} fixture_t;

typedef struct hres {
    int calls;
    long status;
    char *body;
    size_t len;
    char *error;
    char *x_test;   /* header looked up in done */
    char *location; /* header looked up in done */
    int on_loop;
    pthread_t loop;
} hres_t;

static void serve(struct evhttp_request *req, void *arg)
{
    (void)arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *out = evbuffer_new();
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    if (strcmp(uri, "/hello") == 0) {
        evhttp_add_header(oh, "X-Test", "abc");
        evbuffer_add_printf(out, "hello");
        evhttp_send_reply(req, 200, "OK", out);
    } else if (strcmp(uri, "/echo") == 0) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t n = evbuffer_get_length(in);
        char *body = calloc(1, n + 1);
        evbuffer_remove(in, body, n);
        struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
        const char *m = "OTHER";
        switch (evhttp_request_get_command(req)) {
        case EVHTTP_REQ_GET:
            m = "GET";
            break;
        case EVHTTP_REQ_POST:
            m = "POST";
            break;
        case EVHTTP_REQ_PUT:
            m = "PUT";
            break;
        case EVHTTP_REQ_DELETE:
            m = "DELETE";
            break;
        default:
            break;
        }
        json_t *j = json_pack("{s:s,s:s%,s:s?,s:s?}", "method", m, "body", body, n, "rid",
                              evhttp_find_header(ih, "X-Request-ID"), "ctype",
                              evhttp_find_header(ih, "Content-Type"));
        char *s = json_dumps(j, JSON_COMPACT);
        evbuffer_add(out, s, strlen(s));
        evhttp_add_header(oh, "Content-Type", "application/json");
        evhttp_send_reply(req, 200, "OK", out);
        free(s);
        json_decref(j);
        free(body);
    } else if (strcmp(uri, "/big") == 0 || strcmp(uri, "/huge") == 0) {
        size_t n = strcmp(uri, "/big") == 0 ? 100000 : (5u << 20);
        char *b = malloc(n);
        memset(b, 'x', n);
        evbuffer_add(out, b, n);
        free(b);
        evhttp_send_reply(req, 200, "OK", out);
    } else if (strcmp(uri, "/chunked") == 0) {
        evhttp_send_reply_start(req, 200, "OK");
        char b[4096];
        memset(b, 'y', sizeof(b));
        for (int i = 0; i < 4; i++) {
            struct evbuffer *c = evbuffer_new();
            evbuffer_add(c, b, sizeof(b));
            evhttp_send_reply_chunk(req, c);
            evbuffer_free(c);
        }
        evhttp_send_reply_end(req);
    } else if (strcmp(uri, "/redirect") == 0) {
        evhttp_add_header(oh, "Location", "/hello");
        evhttp_send_reply(req, 302, "Found", out);
    } else {
        evbuffer_add_printf(out, "nope");
        evhttp_send_reply(req, 404, "Not Found", out);
    }
    evbuffer_free(out);
}

static void fixture_init(fixture_t *f)
{
    f->rt = sn_runtime_new(1);
    ck_assert_ptr_nonnull(f->rt);
    f->srv = evhttp_new(sn_runtime_base(f->rt));
    evhttp_set_gencb(f->srv, serve, NULL);
    evhttp_set_allowed_methods(f->srv, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                           EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(f->srv, "127.0.0.1", 0);
    ck_assert_ptr_nonnull(bs);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl);
    f->port = ntohs(sa.sin_port);
    snprintf(f->base_url, sizeof(f->base_url), "http://127.0.0.1:%d", f->port);
}

static void fixture_fini(fixture_t *f)
{
    evhttp_free(f->srv);
    sn_runtime_free(f->rt);
}

static void on_done(void *arg, const sn_http_response_t *r)
{
    hres_t *h = arg;
    h->calls++;
    h->on_loop = pthread_equal(pthread_self(), h->loop);
    h->status = r->status;
    h->len = r->body_len;
    free(h->body);
    h->body = malloc(r->body_len + 1);
    memcpy(h->body, r->body, r->body_len + 1);
    free(h->error);
    h->error = r->error ? strdup(r->error) : NULL;
    const char *xt = r->header(r, "x-TEST");
    h->x_test = xt ? strdup(xt) : NULL;
    const char *loc = r->header(r, "location");
    h->location = loc ? strdup(loc) : NULL;
}

static void hres_free(hres_t *h)
{
    free(h->body);
    free(h->error);
    free(h->x_test);
    free(h->location);
}

static void run_until_done(fixture_t *f, hres_t *res, size_t n, int64_t ms)
{
    int64_t deadline = sn_mono_ms() + ms;
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += res[i].calls > 0;
        if (done == n || sn_mono_ms() > deadline)
            return;
        struct timeval tv = {0, 10000};
        event_base_loopexit(sn_runtime_base(f->rt), &tv);
        event_base_dispatch(sn_runtime_base(f->rt));
    }
}

static int start(fixture_t *f, const char *method, const char *path, const char *const *headers,
                 const char *body, long timeout_ms, size_t max, hres_t *res)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", f->base_url, path);
    sn_http_request_t req = {
        .struct_size = sizeof(req),
        .method = method,
        .url = path[0] == '/' ? url : path,
        .headers = headers,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .timeout_ms = timeout_ms,
        .max_response = max,
    };
    res->loop = pthread_self();
    return sn_runtime_http(f->rt, &req, on_done, res);
}

START_TEST(get_returns_body_and_headers)
{
    fixture_t f;
    fixture_init(&f);
    hres_t r = {0};
    ck_assert_int_eq(start(&f, "GET", "/hello", NULL, NULL, 0, 0, &r), 0);
    ck_assert_uint_eq(sn_runtime_http_inflight(f.rt), 1);
    ck_assert_int_eq(r.calls, 0); /* never completes re-entrantly */
    run_until_done(&f, &r, 1, 5000);
    ck_assert_int_eq(r.calls, 1);
    ck_assert(r.on_loop);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "hello");
    ck_assert_uint_eq(r.len, 5);
    ck_assert_ptr_null(r.error);
    ck_assert_str_eq(r.x_test, "abc");
    ck_assert_uint_eq(sn_runtime_http_inflight(f.rt), 0);
    ck_assert(sn_metric_value(f.rt, "http_client_requests_total", "outcome=\"ok\"") == 1);
    hres_free(&r);
    fixture_fini(&f);
}
END_TEST

START_TEST(methods_bodies_and_request_id)
{
    fixture_t f;
    fixture_init(&f);
    hres_t r[4] = {{0}};
    const char *h1[] = {"Content-Type: application/json", "X-Request-ID: rid-123", NULL};
    ck_assert_int_eq(start(&f, "POST", "/echo", h1, "{\"a\":\"x y\"}", 0, 0, &r[0]), 0);
    ck_assert_int_eq(start(&f, "PUT", "/echo", NULL, "put-body", 0, 0, &r[1]), 0);
    ck_assert_int_eq(start(&f, "DELETE", "/echo", NULL, NULL, 0, 0, &r[2]), 0);
    ck_assert_int_eq(start(&f, "GET", "/echo", NULL, NULL, 0, 0, &r[3]), 0);
    run_until_done(&f, r, 4, 5000);
    const char *want_method[] = {"POST", "PUT", "DELETE", "GET"};
    const char *want_body[] = {"{\"a\":\"x y\"}", "put-body", "", ""};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert_int_eq(r[i].status, 200);
        json_t *j = json_loads(r[i].body, 0, NULL);
        ck_assert_msg(j != NULL, "body: %s", r[i].body);
        ck_assert_str_eq(json_string_value(json_object_get(j, "method")), want_method[i]);
        ck_assert_str_eq(json_string_value(json_object_get(j, "body")), want_body[i]);
        if (i == 0) {
            ck_assert_str_eq(json_string_value(json_object_get(j, "rid")), "rid-123");
            ck_assert_str_eq(json_string_value(json_object_get(j, "ctype")), "application/json");
        } else {
            /* the client adds no X-Request-ID of its own */
            ck_assert(json_is_null(json_object_get(j, "rid")));
        }
        json_decref(j);
        hres_free(&r[i]);
    }
    fixture_fini(&f);
}
END_TEST

START_TEST(current_request_id_is_carried)
{
    fixture_t f;
    fixture_init(&f);
    hres_t r[3] = {{0}};
    sn_runtime_set_request_id(f.rt, "inbound-42");
    ck_assert_str_eq(sn_runtime_request_id(f.rt), "inbound-42");
    ck_assert_int_eq(start(&f, "GET", "/echo", NULL, NULL, 0, 0, &r[0]), 0);
    const char *own[] = {"X-Request-ID: plugin-own", NULL};
    ck_assert_int_eq(start(&f, "GET", "/echo", own, NULL, 0, 0, &r[1]), 0);
    sn_runtime_set_request_id(f.rt, NULL);
    ck_assert_ptr_null(sn_runtime_request_id(f.rt));
    ck_assert_int_eq(start(&f, "GET", "/echo", NULL, NULL, 0, 0, &r[2]), 0);
    run_until_done(&f, r, 3, 5000);
    const char *want[] = {"inbound-42", "plugin-own", NULL};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(r[i].status, 200);
        json_t *j = json_loads(r[i].body, 0, NULL);
        ck_assert_ptr_nonnull(j);
        const char *rid = json_string_value(json_object_get(j, "rid"));
        if (want[i])
            ck_assert_str_eq(rid, want[i]); /* carried, or the plugin's own wins */
        else
            ck_assert_ptr_null(rid); /* captured when the call starts, not later */
        json_decref(j);
        hres_free(&r[i]);
    }
    fixture_fini(&f);
}
END_TEST

START_TEST(http_errors_and_redirects_are_returned_as_is)
{
    fixture_t f;
    fixture_init(&f);
    hres_t r[2] = {{0}};
    ck_assert_int_eq(start(&f, "GET", "/missing", NULL, NULL, 0, 0, &r[0]), 0);
    ck_assert_int_eq(start(&f, "GET", "/redirect", NULL, NULL, 0, 0, &r[1]), 0);
    run_until_done(&f, r, 2, 5000);
    ck_assert_int_eq(r[0].status, 404);
    ck_assert_str_eq(r[0].body, "nope");
    ck_assert_ptr_null(r[0].error);
    ck_assert_int_eq(r[1].status, 302); /* not followed */
    ck_assert_str_eq(r[1].location, "/hello");
    ck_assert_ptr_null(r[1].x_test);
    ck_assert(sn_metric_value(f.rt, "http_client_requests_total", "outcome=\"http_error\"") == 1);
    hres_free(&r[0]);
    hres_free(&r[1]);
    fixture_fini(&f);
}
END_TEST

START_TEST(response_size_is_limited)
{
    fixture_t f;
    fixture_init(&f);
    hres_t r[4] = {{0}};
    ck_assert_int_eq(start(&f, "GET", "/big", NULL, NULL, 0, 1000, &r[0]), 0);
    ck_assert_int_eq(start(&f, "GET", "/chunked", NULL, NULL, 0, 5000, &r[1]), 0);
    ck_assert_int_eq(start(&f, "GET", "/huge", NULL, NULL, 0, 0, &r[2]), 0);
    ck_assert_int_eq(start(&f, "GET", "/big", NULL, NULL, 0, 100000, &r[3]), 0);
    run_until_done(&f, r, 4, 10000);
    ck_assert_int_eq(r[0].status, 0);
    ck_assert_str_eq(r[0].error, "response larger than 1000 bytes");
    ck_assert_int_eq(r[1].status, 0);
    ck_assert_str_eq(r[1].error, "response larger than 5000 bytes");
    ck_assert_int_eq(r[2].status, 0);
    ck_assert_str_eq(r[2].error, "response larger than 4194304 bytes");
    ck_assert_int_eq(r[3].status, 200); /* exactly at the limit is fine */
    ck_assert_uint_eq(r[3].len, 100000);
    ck_assert(sn_metric_value(f.rt, "http_client_requests_total", "outcome=\"too_large\"") == 3);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        hres_free(&r[i]);
    }
    fixture_fini(&f);
}
END_TEST

/* A listener that never accepts: connections hang until the client gives up. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *port = ntohs(sa.sin_port);
    return fd;
}

START_TEST(timeout_fails_with_status_zero)
{
    fixture_t f;
    fixture_init(&f);
    int port;
    int fd = silent_listener(&port);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/slow", port);
    hres_t r = {0};
    int64_t t0 = sn_mono_ms();
    ck_assert_int_eq(start(&f, "GET", url, NULL, NULL, 300, 0, &r), 0);
    run_until_done(&f, &r, 1, 5000);
    int64_t took = sn_mono_ms() - t0;
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.error, "timed out after 300 ms");
    ck_assert_int_ge(took, 250);
    ck_assert_int_lt(took, 3000);
    ck_assert(sn_metric_value(f.rt, "http_client_requests_total", "outcome=\"timeout\"") == 1);
    hres_free(&r);
    close(fd);
    fixture_fini(&f);
}
END_TEST

START_TEST(server_down_fails_with_error)
{
    fixture_t f;
    fixture_init(&f);
    int port;
    int fd = silent_listener(&port);
    close(fd); /* nothing listens there any more */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    hres_t r = {0};
    ck_assert_int_eq(start(&f, "GET", url, NULL, NULL, 0, 0, &r), 0);
    run_until_done(&f, &r, 1, 5000);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(r.error);
    ck_assert_int_gt(strlen(r.error), 0);
    ck_assert_str_eq(r.body, "");
    ck_assert(sn_metric_value(f.rt, "http_client_requests_total", "outcome=\"error\"") == 1);
    hres_free(&r);
    fixture_fini(&f);
}
END_TEST

START_TEST(bad_requests_complete_once_from_the_loop)
{
    fixture_t f;
    fixture_init(&f);
    hres_t r[3] = {{0}};
    sn_http_request_t unsized = {.method = "GET", .url = f.base_url};
    r[0].loop = pthread_self();
    ck_assert_int_eq(sn_runtime_http(f.rt, &unsized, on_done, &r[0]), 0);
    ck_assert_int_eq(start(&f, "GET", "", NULL, NULL, 0, 0, &r[1]), 0);
    ck_assert_int_eq(start(&f, "GET", "file:///etc/passwd", NULL, NULL, 0, 0, &r[2]), 0);
    ck_assert_int_eq(r[0].calls + r[1].calls + r[2].calls, 0);
    ck_assert_int_eq(sn_runtime_http(f.rt, &unsized, NULL, NULL), SN_EINVAL);
    run_until_done(&f, r, 3, 5000);
    ck_assert_str_eq(r[0].error, "request struct_size not set");
    ck_assert_str_eq(r[1].error, "request has no url");
    ck_assert_ptr_nonnull(r[2].error); /* only http and https are allowed */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert(r[i].on_loop);
        ck_assert_int_eq(r[i].status, 0);
        hres_free(&r[i]);
    }
    ck_assert_uint_eq(sn_runtime_http_inflight(f.rt), 0);
    fixture_fini(&f);
}
END_TEST

START_TEST(many_concurrent_requests)
{
    fixture_t f;
    fixture_init(&f);
    enum { N = 300 };
    hres_t *r = calloc(N, sizeof(*r));
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(start(&f, "GET", "/hello", NULL, NULL, 0, 0, &r[i]), 0);
    ck_assert_uint_eq(sn_runtime_http_inflight(f.rt), N);
    run_until_done(&f, r, N, 20000);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert_int_eq(r[i].status, 200);
        ck_assert_str_eq(r[i].body, "hello");
        hres_free(&r[i]);
    }
    ck_assert(sn_metric_value(f.rt, "http_client_requests_total", "outcome=\"ok\"") == N);
    free(r);
    fixture_fini(&f);
}
END_TEST

START_TEST(in_flight_requests_are_bounded)
{
    fixture_t f;
    fixture_init(&f);
    enum { N = 1100 };
    hres_t *r = calloc(N, sizeof(*r));
    /* Refused by the protocol filter without opening sockets, so 1100 are cheap. */
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(start(&f, "GET", "ftp://127.0.0.1/x", NULL, NULL, 0, 0, &r[i]), 0);
    run_until_done(&f, r, N, 10000);
    int rejected = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert_int_eq(r[i].status, 0);
        rejected += strcmp(r[i].error, "too many requests in flight") == 0;
        hres_free(&r[i]);
    }
    ck_assert_int_eq(rejected, N - 1024);
    ck_assert(sn_metric_value(f.rt, "http_client_requests_total", "outcome=\"rejected\"") ==
              N - 1024);
    free(r);
    fixture_fini(&f);
}
END_TEST

START_TEST(free_completes_in_flight_with_shutting_down)
{
    fixture_t f;
    fixture_init(&f);
    int port;
    int fd = silent_listener(&port);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    hres_t r[2] = {{0}};
    ck_assert_int_eq(start(&f, "GET", url, NULL, NULL, 0, 0, &r[0]), 0);
    ck_assert_int_eq(start(&f, "POST", url, NULL, "x", 0, 0, &r[1]), 0);
    struct timeval tv = {0, 50000};
    event_base_loopexit(sn_runtime_base(f.rt), &tv);
    event_base_dispatch(sn_runtime_base(f.rt));
    ck_assert_int_eq(r[0].calls, 0);
    fixture_fini(&f);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert_int_eq(r[i].status, 0);
        ck_assert_str_eq(r[i].error, "shutting down");
        hres_free(&r[i]);
    }
    close(fd);
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("httpclient");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, get_returns_body_and_headers);
    tcase_add_test(tc, current_request_id_is_carried);
    tcase_add_test(tc, methods_bodies_and_request_id);
    tcase_add_test(tc, http_errors_and_redirects_are_returned_as_is);
    tcase_add_test(tc, response_size_is_limited);
    tcase_add_test(tc, timeout_fails_with_status_zero);
    tcase_add_test(tc, server_down_fails_with_error);
    tcase_add_test(tc, bad_requests_complete_once_from_the_loop);
    tcase_add_test(tc, many_concurrent_requests);
    tcase_add_test(tc, in_flight_requests_are_bounded);
    tcase_add_test(tc, free_completes_in_flight_with_shutting_down);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(http_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
