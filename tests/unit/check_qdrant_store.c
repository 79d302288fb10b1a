/**
 * @file check_qdrant_store.c
 * Tests of the qdrant store loaded as a .so through the harness, against a small in-memory
 * Qdrant REST server written here with evhttp on the harness's own loop (collections, upsert,
 * cosine search with score_threshold and must/match filters, the error envelope, 409 on an
 * existing collection, scripted failures and held requests): collection creation on first use
 * (once), an existing collection of the right or the wrong size, point ids (UUIDs kept, other
 * ids mapped to UUIDv5) with the original id in the payload and back in search results,
 * score_threshold and tag filters, the query API, retries with Retry-After, final errors, a
 * collection deleted behind the store's back, the in-flight and queue bounds, and settings.
 *
 * One more case runs only when SN_EMBED_URL and SN_QDRANT_URL are set (the e2e test
 * test_semantic_dedup.py sets them): real embeddings from the openai embedder into a Qdrant
 * (double) through this store, checking that a paraphrase is found above 0.8 and an unrelated
 * text is not.
 */
#include "harness.h"

#include <arpa/inet.h>
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

#define QD_LABELS "instance=\"store:qdrant\""
#define KEY "qd-test-key-0123456789"
#define MAX_REQS 64
#define MAX_HELD 16
#define WAIT_MS 5000

typedef struct seen {
    char method[8];
    char uri[160];
    char apikey[64];
    json_t *body;
} seen_t;

/* A tiny Qdrant: collections {name: {"size", "points": {id: {"vector", "payload"}}}}. */
typedef struct srv {
    struct evhttp *http;
    int port;
    json_t *colls;
    int script[16]; /* status for request i instead of the normal answer; 0 = normal */
    int nscript;
    const char *retry_after;
    int hold_points; /* keep point requests unanswered until srv_release */
    struct evhttp_request *held[MAX_HELD];
    json_t *held_body[MAX_HELD];
    int nheld, max_held;
    seen_t seen[MAX_REQS];
    int n;
} srv_t;

static void reply_json(struct evhttp_request *req, int code, json_t *doc)
{
    struct evbuffer *out = evbuffer_new();
    char *t = json_dumps(doc, JSON_COMPACT);
    evbuffer_add(out, t, strlen(t));
    free(t);
    json_decref(doc);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", out);
    evbuffer_free(out);
}

static void reply_error(struct evhttp_request *req, int code, const char *msg)
{
    reply_json(req, code, json_pack("{s:{s:s},s:f}", "status", "error", msg, "time", 0.0001));
}

static void reply_ok(struct evhttp_request *req, json_t *result)
{
    reply_json(req, 200,
               json_pack("{s:o,s:s,s:f}", "result", result, "status", "ok", "time", 0.001));
}

static double cosine(json_t *a, json_t *b)
{
    double dot = 0, na = 0, nb = 0;
    size_t n = json_array_size(a);
    if (n != json_array_size(b))
        return -2;
    for (size_t i = 0; i < n; i++) {
        double x = json_number_value(json_array_get(a, i)),
               y = json_number_value(json_array_get(b, i));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    return na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0;
}

/* must: every {"key","match":{"value"}} equals the payload's value. */
static int filter_ok(json_t *filter, json_t *payload)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(filter, "must"), i, c)
    {
        json_t *want = json_object_get(json_object_get(c, "match"), "value");
        json_t *got = json_object_get(payload, json_string_value(json_object_get(c, "key")));
        if (!got || !json_equal(got, want))
            return 0;
    }
    return 1;
}

static int cmp_score(const void *a, const void *b)
{
    double x = json_number_value(json_object_get(*(json_t *const *)a, "score"));
    double y = json_number_value(json_object_get(*(json_t *const *)b, "score"));
    return x < y ? 1 : x > y ? -1 : 0;
}

static void srv_normal(srv_t *s, struct evhttp_request *req, const char *uri, json_t *body)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    char name[128] = "", rest[128] = "";
    if (sscanf(uri, "/collections/%127[^/?]%127s", name, rest) < 1) {
        reply_error(req, 404, "Not found");
        return;
    }
    json_t *coll = json_object_get(s->colls, name);
    if (!rest[0] && cmd == EVHTTP_REQ_PUT) {
        if (coll) {
            char msg[200];
            snprintf(msg, sizeof(msg), "Wrong input: Collection `%s` already exists!", name);
            reply_error(req, 409, msg);
            return;
        }
        json_t *size = json_object_get(json_object_get(body, "vectors"), "size");
        json_object_set_new(s->colls, name, json_pack("{s:O,s:{}}", "size", size, "points"));
        reply_ok(req, json_true());
        return;
    }
    if (!coll) {
        char msg[200];
        snprintf(msg, sizeof(msg), "Not found: Collection `%s` doesn't exist!", name);
        reply_error(req, 404, msg);
        return;
    }
    if (!rest[0] && cmd == EVHTTP_REQ_GET) {
        reply_ok(req, json_pack("{s:s,s:i,s:{s:{s:{s:O,s:s}}}}", "status", "green", "points_count",
                                (int)json_object_size(json_object_get(coll, "points")), "config",
                                "params", "vectors", "size", json_object_get(coll, "size"),
                                "distance", "Cosine"));
        return;
    }
    if (strncmp(rest, "/index", 6) == 0) {
        reply_ok(req, json_pack("{s:i,s:s}", "operation_id", 1, "status", "completed"));
        return;
    }
    if (strncmp(rest, "/points?", 8) == 0 && cmd == EVHTTP_REQ_PUT) {
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(body, "points"), i, p)
        {
            if (json_array_size(json_object_get(p, "vector")) !=
                (size_t)json_integer_value(json_object_get(coll, "size"))) {
                reply_error(req, 400, "Wrong input: Vector dimension error");
                return;
            }
            json_object_set_new(json_object_get(coll, "points"),
                                json_string_value(json_object_get(p, "id")),
                                json_pack("{s:O,s:O}", "vector", json_object_get(p, "vector"),
                                          "payload", json_object_get(p, "payload")));
        }
        reply_ok(req, json_pack("{s:i,s:s}", "operation_id", 7, "status", "completed"));
        return;
    }
    int query = strcmp(rest, "/points/query") == 0;
    if (strcmp(rest, "/points/search") == 0 || query) {
        json_t *v = json_object_get(body, query ? "query" : "vector");
        json_t *thr = json_object_get(body, "score_threshold");
        json_t *filter = json_object_get(body, "filter");
        size_t limit = (size_t)json_integer_value(json_object_get(body, "limit"));
        json_t *hits[64];
        size_t nh = 0;
        const char *id;
        json_t *p;
        json_object_foreach(json_object_get(coll, "points"), id, p)
        {
            double sc = cosine(v, json_object_get(p, "vector"));
            if ((thr && sc < json_number_value(thr)) ||
                !filter_ok(filter, json_object_get(p, "payload")) || nh == 64)
                continue;
            hits[nh++] = json_pack("{s:s,s:i,s:f,s:O}", "id", id, "version", 1, "score", sc,
                                   "payload", json_object_get(p, "payload"));
        }
        qsort(hits, nh, sizeof(hits[0]), cmp_score);
        json_t *arr = json_array();
        for (size_t i = 0; i < nh; i++) {
            if (i < limit)
                json_array_append(arr, hits[i]);
            json_decref(hits[i]);
        }
        reply_ok(req, query ? json_pack("{s:o}", "points", arr) : arr);
        return;
    }
    reply_error(req, 404, "Not found");
}

static void srv_cb(struct evhttp_request *req, void *arg)
{
    srv_t *s = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *raw = calloc(1, len + 1);
    evbuffer_copyout(in, raw, len);
    json_t *body = json_loads(raw, 0, NULL);
    free(raw);
    const char *uri = evhttp_request_get_uri(req);
    int i = s->n++;
    if (i < MAX_REQS) {
        seen_t *x = &s->seen[i];
        enum evhttp_cmd_type c = evhttp_request_get_command(req);
        snprintf(x->method, sizeof(x->method), "%s",
                 c == EVHTTP_REQ_PUT    ? "PUT"
                 : c == EVHTTP_REQ_POST ? "POST"
                 : c == EVHTTP_REQ_GET  ? "GET"
                                        : "OTHER");
        snprintf(x->uri, sizeof(x->uri), "%s", uri);
        const char *k = evhttp_find_header(evhttp_request_get_input_headers(req), "api-key");
        snprintf(x->apikey, sizeof(x->apikey), "%s", k ? k : "");
        x->body = json_incref(body);
    }
    int code = i < s->nscript ? s->script[i] : 0;
    if (code) {
        if (s->retry_after)
            evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After",
                              s->retry_after);
        reply_error(req, code, code == 401 ? "Unauthorized" : "Service unavailable");
    } else if (s->hold_points && strstr(uri, "/points") && s->nheld < MAX_HELD) {
        s->held_body[s->nheld] = body;
        s->held[s->nheld++] = req;
        if (s->nheld > s->max_held)
            s->max_held = s->nheld;
        return;
    } else {
        srv_normal(s, req, uri, body);
    }
    json_decref(body);
}

/* Answer every held request normally. */
static void srv_release(srv_t *s)
{
    int n = s->nheld;
    s->nheld = 0;
    for (int i = 0; i < n; i++) {
        srv_normal(s, s->held[i], evhttp_request_get_uri(s->held[i]), s->held_body[i]);
        json_decref(s->held_body[i]);
    }
}

typedef struct fix {
    sn_harness_t *h;
    srv_t srv;
    const sn_store_ops_t *ops;
    const sn_plugin_t *plugin;
    void *self;
} fix_t;

static void fix_open(fix_t *f)
{
    memset(f, 0, sizeof(*f));
    setenv("SN_TEST_QD_KEY", KEY, 1);
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    f->srv.colls = json_object();
    f->srv.http = evhttp_new(sn_runtime_base(sn_harness_runtime(f->h)));
    ck_assert_ptr_nonnull(f->srv.http);
    evhttp_set_allowed_methods(f->srv.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                                EVHTTP_REQ_DELETE);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(f->srv.http, "127.0.0.1", 0);
    ck_assert_ptr_nonnull(bs);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    ck_assert_int_eq(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl), 0);
    f->srv.port = ntohs(sa.sin_port);
    evhttp_set_gencb(f->srv.http, srv_cb, &f->srv);
}

static void fix_plugin(fix_t *f, const char *extra)
{
    char settings[2048];
    snprintf(settings, sizeof(settings),
             "url = http://127.0.0.1:%d/\napi_key = ${env:SN_TEST_QD_KEY}\nretry_base = 10ms\n%s",
             f->srv.port, extra ? extra : "");
    sn_err_t err = {{0}};
    f->self = sn_harness_create(f->h, SN_STORE, "qdrant", settings, &f->plugin, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    f->ops = f->plugin->ops;
}

static void fix_close(fix_t *f)
{
    evhttp_free(f->srv.http); /* before the loop it runs on */
    sn_harness_free(f->h);
    for (int i = 0; i < f->srv.n && i < MAX_REQS; i++)
        json_decref(f->srv.seen[i].body);
    json_decref(f->srv.colls);
}

static double metric(fix_t *f, const char *name)
{
    return sn_metric_value(sn_harness_runtime(f->h), name, QD_LABELS);
}

static int upsert(fix_t *f, const char *coll, const char *id, const float *v, size_t dim,
                  json_t *payload)
{
    sn_result_t r = {0};
    f->ops->vector_upsert(f->self, coll, id, v, dim, payload, sn_result_done, &r);
    json_decref(payload);
    ck_assert_int_eq(sn_harness_wait(f->h, &r, WAIT_MS), 0);
    int st = r.status;
    sn_result_clear(&r);
    return st;
}

/* Search; returns the status, *out gets the matches (caller decrefs) or NULL. */
static int search(fix_t *f, const char *coll, const float *v, size_t dim, size_t k, double min,
                  json_t **out)
{
    sn_result_t r = {0};
    f->ops->vector_search(f->self, coll, v, dim, k, min, sn_result_done, &r);
    ck_assert_int_eq(sn_harness_wait(f->h, &r, WAIT_MS), 0);
    int st = r.status;
    *out = st == 0 ? json_incref(json_object_get(r.result, "matches")) : NULL;
    sn_result_clear(&r);
    return st;
}

#define INC_ID "0190a0b0-1c2d-7e3f-8a4b-5c6d7e8f9a0b"

START_TEST(first_upsert_creates_the_collection_once)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, NULL);
    float v[3] = {1, 0, 0};
    ck_assert_int_eq(upsert(&f, "incidents", INC_ID, v, 3,
                            json_pack("{s:s,s:[s],s:s}", "fingerprint", "abc", "services",
                                      "checkout", "resolution", "rollback")),
                     0);
    ck_assert_int_eq(f.srv.n, 2);
    const seen_t *c = &f.srv.seen[0], *u = &f.srv.seen[1];
    ck_assert_str_eq(c->method, "PUT");
    ck_assert_str_eq(c->uri, "/collections/sentinel_incidents");
    ck_assert_str_eq(c->apikey, KEY);
    json_t *want = json_pack("{s:{s:i,s:s}}", "vectors", "size", 3, "distance", "Cosine");
    ck_assert(json_equal(c->body, want));
    json_decref(want);
    ck_assert_str_eq(u->method, "PUT");
    ck_assert_str_eq(u->uri, "/collections/sentinel_incidents/points?wait=true");
    ck_assert_str_eq(u->apikey, KEY);
    json_t *p = json_array_get(json_object_get(u->body, "points"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(p, "id")), INC_ID); /* a UUID: kept */
    ck_assert_int_eq(json_array_size(json_object_get(p, "vector")), 3);
    json_t *pl = json_object_get(p, "payload");
    ck_assert_str_eq(json_string_value(json_object_get(pl, "sentinel_id")), INC_ID);
    ck_assert_str_eq(json_string_value(json_object_get(pl, "fingerprint")), "abc");
    ck_assert_str_eq(json_string_value(json_object_get(pl, "resolution")), "rollback");
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(pl, "services"), 0)),
                     "checkout");
    /* Second write: no second create. */
    ck_assert_int_eq(upsert(&f, "incidents", "other", v, 3, NULL), 0);
    ck_assert_int_eq(f.srv.n, 3);
    ck_assert_str_eq(f.srv.seen[2].uri, "/collections/sentinel_incidents/points?wait=true");
    ck_assert(metric(&f, "store_qdrant_upserts_total") == 2);
    fix_close(&f);
}
END_TEST

START_TEST(other_ids_map_to_uuidv5_and_come_back)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, NULL);
    float a[3] = {1, 0, 0}, b[3] = {0, 1, 0}, q[3] = {0.9f, 0.1f, 0};
    ck_assert_int_eq(upsert(&f, "open_incidents", "alpha", a, 3, json_pack("{s:s}", "id", "alpha")),
                     0);
    ck_assert_int_eq(upsert(&f, "open_incidents", "beta", b, 3, NULL), 0);
    /* UUIDv5(5b0c1a8e-7f3d-4c2a-9e61-3d8f2b7a4c10, "alpha"), as Python's uuid.uuid5 gives it. */
    json_t *p = json_array_get(json_object_get(f.srv.seen[1].body, "points"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(p, "id")),
                     "96bad023-c033-58ac-88eb-b3174d3a845f");
    /* The same id again maps to the same point: an overwrite, not a second point. */
    ck_assert_int_eq(upsert(&f, "open_incidents", "alpha", a, 3, NULL), 0);
    ck_assert_int_eq(json_object_size(json_object_get(
                         json_object_get(f.srv.colls, "sentinel_open_incidents"), "points")),
                     2);
    json_t *m = NULL;
    ck_assert_int_eq(search(&f, "open_incidents", q, 3, 5, -1, &m), 0);
    ck_assert_int_eq(json_array_size(m), 2);
    json_t *best = json_array_get(m, 0);
    ck_assert_str_eq(json_string_value(json_object_get(best, "id")), "alpha");
    ck_assert(json_number_value(json_object_get(best, "score")) > 0.99);
    ck_assert_ptr_null(json_object_get(json_object_get(best, "payload"), "sentinel_id"));
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 1), "id")), "beta");
    json_decref(m);
    fix_close(&f);
}
END_TEST

START_TEST(search_shape_threshold_and_limit)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, NULL);
    float a[2] = {1, 0}, b[2] = {1, 1}, c[2] = {0, 1}, q[2] = {1, 0.05f};
    upsert(&f, "incidents", "a", a, 2, NULL);
    upsert(&f, "incidents", "b", b, 2, NULL);
    upsert(&f, "incidents", "c", c, 2, NULL);
    json_t *m = NULL;
    int before = f.srv.n;
    ck_assert_int_eq(search(&f, "incidents", q, 2, 5, 0.8, &m), 0);
    ck_assert_int_eq(json_array_size(m), 1); /* b scores about 0.74 */
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 0), "id")), "a");
    json_decref(m);
    const seen_t *s = &f.srv.seen[before];
    ck_assert_str_eq(s->method, "POST");
    ck_assert_str_eq(s->uri, "/collections/sentinel_incidents/points/search");
    ck_assert_str_eq(s->apikey, KEY);
    ck_assert_int_eq(json_integer_value(json_object_get(s->body, "limit")), 5);
    ck_assert(fabs(json_number_value(json_object_get(s->body, "score_threshold")) - 0.8) < 1e-9);
    ck_assert(json_is_true(json_object_get(s->body, "with_payload")));
    ck_assert_int_eq(json_array_size(json_object_get(s->body, "vector")), 2);
    ck_assert_ptr_null(json_object_get(s->body, "filter"));
    ck_assert_int_eq(search(&f, "incidents", q, 2, 2, -1, &m), 0);
    ck_assert_int_eq(json_array_size(m), 2); /* limit */
    json_decref(m);
    ck_assert_ptr_null(json_object_get(f.srv.seen[f.srv.n - 1].body, "score_threshold"));
    /* k = 0 asks nothing. */
    before = f.srv.n;
    ck_assert_int_eq(search(&f, "incidents", q, 2, 0, 0.5, &m), 0);
    ck_assert_int_eq(json_array_size(m), 0);
    json_decref(m);
    ck_assert_int_eq(f.srv.n, before);
    fix_close(&f);
}
END_TEST

START_TEST(tags_are_stored_and_filter_searches)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "tag = env=prod\ntag = team = sre\ncollection_prefix = t_\n");
    float a[2] = {1, 0};
    ck_assert_int_eq(upsert(&f, "incidents", "mine", a, 2, NULL), 0);
    /* A point of another deployment in the same collection. */
    json_object_set_new(json_object_get(json_object_get(f.srv.colls, "t_incidents"), "points"),
                        "11111111-1111-4111-8111-111111111111",
                        json_pack("{s:[f,f],s:{s:s,s:s,s:s}}", "vector", 1.0, 0.0, "payload",
                                  "sentinel_id", "theirs", "env", "staging", "team", "sre"));
    ck_assert_str_eq(f.srv.seen[0].uri, "/collections/t_incidents");
    /* One keyword index per tag key. */
    int idx = 0;
    for (int i = 0; i < f.srv.n; i++)
        idx += strcmp(f.srv.seen[i].uri, "/collections/t_incidents/index?wait=true") == 0;
    ck_assert_int_eq(idx, 2);
    json_t *pl = NULL;
    for (int i = 0; i < f.srv.n; i++)
        if (strstr(f.srv.seen[i].uri, "/points?wait=true"))
            pl = json_object_get(json_array_get(json_object_get(f.srv.seen[i].body, "points"), 0),
                                 "payload");
    ck_assert_str_eq(json_string_value(json_object_get(pl, "env")), "prod");
    ck_assert_str_eq(json_string_value(json_object_get(pl, "team")), "sre");
    json_t *m = NULL;
    ck_assert_int_eq(search(&f, "incidents", a, 2, 5, 0.5, &m), 0);
    ck_assert_int_eq(json_array_size(m), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 0), "id")), "mine");
    json_decref(m);
    json_t *filter = json_object_get(f.srv.seen[f.srv.n - 1].body, "filter");
    json_t *want = json_pack("{s:[{s:s,s:{s:s}},{s:s,s:{s:s}}]}", "must", "key", "env", "match",
                             "value", "prod", "key", "team", "match", "value", "sre");
    ck_assert(json_equal(filter, want));
    json_decref(want);
    fix_close(&f);
}
END_TEST

START_TEST(query_api_and_foreign_points)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "api = query\n");
    float a[2] = {1, 0};
    ck_assert_int_eq(upsert(&f, "incidents", "x", a, 2, NULL), 0);
    json_object_set_new(
        json_object_get(json_object_get(f.srv.colls, "sentinel_incidents"), "points"), "42",
        json_pack("{s:[f,f],s:{s:s}}", "vector", 1.0, 0.1, "payload", "note",
                  "written by someone else"));
    json_t *m = NULL;
    ck_assert_int_eq(search(&f, "incidents", a, 2, 5, 0.5, &m), 0);
    ck_assert_str_eq(f.srv.seen[f.srv.n - 1].uri, "/collections/sentinel_incidents/points/query");
    ck_assert_int_eq(json_array_size(json_object_get(f.srv.seen[f.srv.n - 1].body, "query")), 2);
    ck_assert_int_eq(json_array_size(m), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 0), "id")), "x");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 1), "id")), "42");
    json_decref(m);
    fix_close(&f);
}
END_TEST

START_TEST(existing_collection_is_checked)
{
    fix_t f;
    fix_open(&f);
    json_object_set_new(f.srv.colls, "sentinel_incidents",
                        json_pack("{s:i,s:{}}", "size", 3, "points"));
    json_object_set_new(f.srv.colls, "sentinel_open_incidents",
                        json_pack("{s:i,s:{}}", "size", 384, "points"));
    fix_plugin(&f, NULL);
    float v[3] = {0, 0, 1};
    ck_assert_int_eq(upsert(&f, "incidents", "a", v, 3, NULL), 0); /* 409, GET, fits */
    ck_assert_int_eq(f.srv.n, 3);
    ck_assert_str_eq(f.srv.seen[1].method, "GET");
    /* A size the embedder does not give: refused with the reason, nothing written. */
    ck_assert_int_eq(upsert(&f, "open_incidents", "a", v, 3, NULL), SN_EINVAL);
    ck_assert_int_eq(json_object_size(json_object_get(
                         json_object_get(f.srv.colls, "sentinel_open_incidents"), "points")),
                     0);
    sn_health_t hl = {0};
    f.plugin->health(f.self, &hl);
    ck_assert_int_eq(hl.ok, 0);
    ck_assert_ptr_nonnull(strstr(hl.detail, "384"));
    /* A vector of another size for a collection in use: refused without a request. */
    int before = f.srv.n;
    float w[4] = {1, 2, 3, 4};
    ck_assert_int_eq(upsert(&f, "incidents", "b", w, 4, NULL), SN_EINVAL);
    ck_assert_int_eq(f.srv.n, before);
    fix_close(&f);
}
END_TEST

START_TEST(concurrent_first_uses_wait_for_one_create)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, NULL);
    float v[2] = {1, 0};
    sn_result_t r[4];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof(id), "p%d", i);
        f.ops->vector_upsert(f.self, "incidents", id, v, 2, NULL, sn_result_done, &r[i]);
    }
    f.ops->vector_search(f.self, "incidents", v, 2, 5, 0.5, sn_result_done, &r[3]);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(sn_harness_wait(f.h, &r[i], WAIT_MS), 0);
        ck_assert_int_eq(r[i].status, 0);
    }
    int creates = 0;
    for (int i = 0; i < f.srv.n; i++)
        creates += strcmp(f.srv.seen[i].uri, "/collections/sentinel_incidents") == 0;
    ck_assert_int_eq(creates, 1);
    ck_assert_int_eq(f.srv.n, 5);
    for (int i = 0; i < 4; i++)
        sn_result_clear(&r[i]);
    json_t *m = NULL;
    ck_assert_int_eq(search(&f, "incidents", v, 2, 5, 0.5, &m), 0);
    ck_assert_int_eq(json_array_size(m), 3);
    json_decref(m);
    fix_close(&f);
}
END_TEST

START_TEST(busy_answers_are_retried)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, NULL);
    float v[2] = {1, 0};
    f.srv.script[0] = 503; /* the create */
    f.srv.script[1] = 0;
    f.srv.script[2] = 500; /* the upsert */
    f.srv.nscript = 3;
    ck_assert_int_eq(upsert(&f, "incidents", "a", v, 2, NULL), 0);
    ck_assert_int_eq(f.srv.n, 4);
    ck_assert(metric(&f, "store_qdrant_retries_total") == 2);
    /* 429 with Retry-After: 1 waits a second. */
    f.srv.script[4] = 429;
    f.srv.nscript = 5;
    f.srv.retry_after = "1";
    int64_t t0 = sn_mono_ms();
    ck_assert_int_eq(upsert(&f, "incidents", "b", v, 2, NULL), 0);
    ck_assert_int_ge(sn_mono_ms() - t0, 950);
    ck_assert_int_eq(f.srv.n, 6);
    fix_close(&f);
}
END_TEST

START_TEST(final_errors)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "max_retries = 1\n");
    float v[2] = {1, 0};
    ck_assert_int_eq(upsert(&f, "incidents", "a", v, 2, NULL), 0);
    int before = f.srv.n;
    f.srv.script[before] = 503;
    f.srv.script[before + 1] = 503;
    f.srv.nscript = before + 2;
    ck_assert_int_eq(upsert(&f, "incidents", "b", v, 2, NULL), SN_EIO);
    ck_assert_int_eq(f.srv.n, before + 2);
    f.srv.script[before + 2] = 401;
    f.srv.nscript = before + 3;
    json_t *m = NULL;
    ck_assert_int_eq(search(&f, "incidents", v, 2, 3, 0.5, &m), SN_EDENIED);
    ck_assert_int_eq(f.srv.n, before + 3); /* not retried */
    /* Wrong input (a 400 from the server): final. */
    json_object_set_new(json_object_get(f.srv.colls, "sentinel_incidents"), "size",
                        json_integer(5));
    ck_assert_int_eq(upsert(&f, "incidents", "c", v, 2, NULL), SN_EINVAL);
    ck_assert_int_eq(f.srv.n, before + 4);
    ck_assert(metric(&f, "store_qdrant_failures_total") == 3);
    sn_health_t hl = {0};
    f.plugin->health(f.self, &hl);
    ck_assert_ptr_nonnull(strstr(hl.detail, "Vector dimension error"));
    ck_assert_ptr_null(strstr(hl.detail, KEY));
    /* NaN is refused before anything is sent. */
    float bad[2] = {NAN, 1};
    before = f.srv.n;
    ck_assert_int_eq(upsert(&f, "incidents", "d", bad, 2, NULL), SN_EINVAL);
    ck_assert_int_eq(upsert(&f, "bad/name", "d", v, 2, NULL), SN_EINVAL);
    ck_assert_int_eq(f.srv.n, before);
    fix_close(&f);
}
END_TEST

START_TEST(deleted_collection_is_created_again)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, NULL);
    float v[2] = {1, 0};
    ck_assert_int_eq(upsert(&f, "incidents", "a", v, 2, NULL), 0);
    json_object_del(f.srv.colls, "sentinel_incidents");
    ck_assert_int_eq(upsert(&f, "incidents", "b", v, 2, NULL), 0);
    /* upsert 404, create, upsert */
    ck_assert_int_eq(f.srv.n, 5);
    ck_assert_str_eq(f.srv.seen[3].uri, "/collections/sentinel_incidents");
    ck_assert_int_eq(json_object_size(json_object_get(
                         json_object_get(f.srv.colls, "sentinel_incidents"), "points")),
                     1);
    fix_close(&f);
}
END_TEST

START_TEST(inflight_and_queue_bounds)
{
    fix_t f;
    fix_open(&f);
    fix_plugin(&f, "max_inflight = 2\nmax_queue = 5\n");
    float v[2] = {1, 0};
    ck_assert_int_eq(upsert(&f, "incidents", "warm", v, 2, NULL), 0);
    f.srv.hold_points = 1;
    sn_result_t r[6];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 6; i++) {
        char id[8];
        snprintf(id, sizeof(id), "h%d", i);
        f.ops->vector_upsert(f.self, "incidents", id, v, 2, NULL, sn_result_done, &r[i]);
    }
    ck_assert_int_eq(r[5].done, 1); /* the sixth is over max_queue */
    ck_assert_int_eq(r[5].status, SN_ENOMEM);
    ck_assert(metric(&f, "store_qdrant_dropped_total") == 1);
    sn_harness_run_ms(f.h, 150);
    ck_assert_int_eq(f.srv.nheld, 2); /* only max_inflight reach the server */
    ck_assert(metric(&f, "store_qdrant_pending") == 5);
    for (int round = 0; round < 5 && f.srv.nheld; round++) {
        srv_release(&f.srv);
        sn_harness_run_ms(f.h, 100);
    }
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(sn_harness_wait(f.h, &r[i], WAIT_MS), 0);
        ck_assert_int_eq(r[i].status, 0);
    }
    ck_assert_int_eq(f.srv.max_held, 2);
    ck_assert(metric(&f, "store_qdrant_pending") == 0);
    for (int i = 0; i < 6; i++)
        sn_result_clear(&r[i]);
    fix_close(&f);
}
END_TEST

START_TEST(bad_settings_are_refused)
{
    setenv("SN_TEST_QD_KEY", KEY, 1);
    sn_harness_t *h = sn_harness_new();
    const char *bad[][2] = {
        {"url = qdrant:6333\napi_key = ${env:SN_TEST_QD_KEY}\n", "url"},
        {"url = http://x\napi = grpc\n", "api"},
        {"url = http://x\ntag = novalue\n", "tag 1"},
        {"url = http://x\ntag = sentinel_id=x\n", "tag 1"},
        {"url = http://x\ncollection_prefix = a/b\n", "collection_prefix"},
        {"url = http://x\nmax_inflight = 0\n", "max_inflight"},
        {"url = http://x\nmax_queue = 0\n", "max_queue"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sn_err_t err = {{0}};
        ck_assert_ptr_null(sn_harness_create(h, SN_STORE, "qdrant", bad[i][0], NULL, &err));
        ck_assert_msg(strstr(err.msg, bad[i][1]) != NULL, "case %zu: %s", i, err.msg);
        ck_assert_ptr_null(strstr(err.msg, KEY));
    }
    sn_harness_free(h);
}
END_TEST

/* ---- real embeddings (only with SN_EMBED_URL and SN_QDRANT_URL) ---- */

typedef struct sem {
    const char *id;
    const char *text;
} sem_t;

static float *embed_real(sn_harness_t *h, const sn_embedder_ops_t *eops, void *e, const char *t)
{
    sn_result_t r = {0};
    eops->embed(e, t, sn_result_done, &r);
    ck_assert_int_eq(sn_harness_wait(h, &r, 20000), 0);
    ck_assert_msg(r.status == 0, "embedding failed: %d", r.status);
    json_t *vec = json_object_get(r.result, "vector");
    ck_assert_int_eq(json_array_size(vec), 512);
    float *v = calloc(512, sizeof(float));
    for (size_t i = 0; i < 512; i++)
        v[i] = (float)json_number_value(json_array_get(vec, i));
    sn_result_clear(&r);
    return v;
}

START_TEST(semantic_match_with_real_embeddings)
{
    const char *eurl = getenv("SN_EMBED_URL"), *qurl = getenv("SN_QDRANT_URL");
    if (!eurl || !qurl) {
        fprintf(stderr, "semantic case: SN_EMBED_URL/SN_QDRANT_URL not set, nothing to check\n");
        return;
    }
    const char *qkey = getenv("SN_QDRANT_KEY");
    sn_harness_t *h = sn_harness_new();
    char settings[1024];
    sn_err_t err = {{0}};
    const sn_plugin_t *ep = NULL, *sp = NULL;
    snprintf(settings, sizeof(settings),
             "url = %s\nmodel = use-lite\ndim = 512\nbatch_wait = 0ms\n", eurl);
    void *e = sn_harness_create(h, SN_EMBEDDER, "openai", settings, &ep, &err);
    ck_assert_msg(e != NULL, "%s", err.msg);
    snprintf(settings, sizeof(settings), "url = %s\n%s%s\ncollection_prefix = semantic_%d_\n", qurl,
             qkey ? "api_key = " : "", qkey ? qkey : "", (int)getpid());
    void *s = sn_harness_create(h, SN_STORE, "qdrant", settings, &sp, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    const sn_embedder_ops_t *eops = ep->ops;
    const sn_store_ops_t *sops = sp->ops;
    sem_t known[] = {
        {"disk", "disk full on /var caused nginx to crash"},
        {"tls", "the TLS certificate of the shop frontend expired"},
        {"pay", "card payments are declined by the payment provider"},
    };
    for (size_t i = 0; i < 3; i++) {
        float *v = embed_real(h, eops, e, known[i].text);
        sn_result_t r = {0};
        json_t *pl = json_pack("{s:s}", "summary", known[i].text);
        sops->vector_upsert(s, "incidents", known[i].id, v, 512, pl, sn_result_done, &r);
        json_decref(pl);
        free(v);
        ck_assert_int_eq(sn_harness_wait(h, &r, 10000), 0);
        ck_assert_int_eq(r.status, 0);
        sn_result_clear(&r);
    }
    struct {
        const char *text;
        const char *want; /* NULL: nothing at or above 0.8 */
    } probes[] = {
        {"nginx crashed because /var ran out of space", "disk"},
        {"the cat sat on the mat", NULL},
        {"quarterly revenue grew in the european market", NULL},
    };
    for (size_t i = 0; i < 3; i++) {
        float *v = embed_real(h, eops, e, probes[i].text);
        sn_result_t r = {0};
        sops->vector_search(s, "incidents", v, 512, 5, 0.8, sn_result_done, &r);
        free(v);
        ck_assert_int_eq(sn_harness_wait(h, &r, 10000), 0);
        ck_assert_int_eq(r.status, 0);
        json_t *m = json_object_get(r.result, "matches");
        char *dump = json_dumps(m, JSON_COMPACT);
        fprintf(stderr, "semantic case: '%s' -> %s\n", probes[i].text, dump);
        free(dump);
        if (probes[i].want) {
            ck_assert_int_eq(json_array_size(m), 1);
            ck_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 0), "id")),
                             probes[i].want);
        } else {
            ck_assert_int_eq(json_array_size(m), 0);
        }
        sn_result_clear(&r);
    }
    sn_harness_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("qdrant_store");
    TCase *tc = tcase_create("store");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, first_upsert_creates_the_collection_once);
    tcase_add_test(tc, other_ids_map_to_uuidv5_and_come_back);
    tcase_add_test(tc, search_shape_threshold_and_limit);
    tcase_add_test(tc, tags_are_stored_and_filter_searches);
    tcase_add_test(tc, query_api_and_foreign_points);
    tcase_add_test(tc, existing_collection_is_checked);
    tcase_add_test(tc, concurrent_first_uses_wait_for_one_create);
    tcase_add_test(tc, busy_answers_are_retried);
    tcase_add_test(tc, final_errors);
    tcase_add_test(tc, deleted_collection_is_created_again);
    tcase_add_test(tc, inflight_and_queue_bounds);
    tcase_add_test(tc, bad_settings_are_refused);
    suite_add_tcase(s, tc);
    TCase *sem = tcase_create("semantic");
    tcase_set_timeout(sem, 60);
    tcase_add_test(sem, semantic_match_with_real_embeddings);
    suite_add_tcase(s, sem);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
