/**
 * @file http_api.c
 * The HTTP API of DESIGN.md §6 on evhttp: health, metrics, ingest, incidents, decisions,
 * audit, and the routes plugins register under /hooks/<instance>/.
 *
 * Auth: with no API key configured only loopback listeners are allowed and loopback callers
 * are admin (the embedded default); once any key exists every route but /health needs one.
 * Plugin routes under /hooks/ authenticate their callers themselves (for example Slack's
 * request signature), because those callers cannot hold a Sentinel key.
 */
#include "auth.h"
#include "engine-internal.h"
#include "ingest.h"
#include "ui.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define SN_MAX_ROUTES 64

typedef struct route {
    char method[8];
    char path[256];  /* full path: /hooks/<instance>/<path> */
    char owner[128]; /* the instance label that registered it */
    sn_route_fn fn;
    void *self;
} route_t;

struct sn_api {
    sn_engine_t *e;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    int port;
    sn_auth_t *auth;
    int64_t max_body;
    int loopback; /* listening on loopback only: keyless access is tolerated */
    route_t routes[SN_MAX_ROUTES];
    size_t nroutes;
    struct deferred *deferred; /* requests answered later */
};

struct sn_route_req {
    struct evhttp_request *req;
    const char *body;
    size_t len;
    int replied;
};

typedef struct reqctx {
    sn_api_t *api;
    struct evhttp_request *req;
    char rid[80];
    sn_role_t role;
    const char *actor;
} reqctx_t;

/* A request answered from a callback (a store's). libevent keeps a request whose client went
 * away until it is answered, but frees every request with the server: on sn_api_free the
 * waiting ones are marked orphans, and their callbacks answer nobody. */
typedef struct deferred {
    reqctx_t c;
    struct deferred *prev, *next;
    int orphan;
} deferred_t;

static deferred_t *defer(const reqctx_t *c)
{
    deferred_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->c = *c;
    d->c.actor = NULL; /* borrowed from the key table, which may be reloaded meanwhile */
    d->next = c->api->deferred;
    if (d->next)
        d->next->prev = d;
    c->api->deferred = d;
    return d;
}

/* The request to answer, or NULL when the server is gone. Unlinks @p d; the caller frees it. */
static reqctx_t *undefer(deferred_t *d)
{
    if (d->orphan)
        return NULL;
    if (d->prev)
        d->prev->next = d->next;
    else
        d->c.api->deferred = d->next;
    if (d->next)
        d->next->prev = d->prev;
    return &d->c;
}

/* ---- helpers ---- */

static int valid_request_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isalnum((unsigned char)s[n]) && !strchr("._-:", s[n]))
            return 0;
    return n > 0 && n <= 64;
}

static void reply_json(reqctx_t *c, int status, json_t *body)
{
    struct evbuffer *out = evbuffer_new();
    char *text = json_dumps(body, JSON_COMPACT);
    evbuffer_add_printf(out, "%s\n", text ? text : "{}");
    free(text);
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_send_reply(c->req, status, NULL, out);
    evbuffer_free(out);
    json_decref(body);
}

static void reply_error(reqctx_t *c, int status, const char *msg)
{
    reply_json(c, status, json_pack("{s:s,s:s}", "error", msg, "request_id", c->rid));
}

static int peer_is_loopback(struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    const char *addr = NULL;
    ev_uint16_t port = 0;
    if (!conn)
        return 0;
    evhttp_connection_get_peer(conn, (char **)&addr, &port);
    if (!addr)
        return 0;
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0;
}

static const char *query_get(struct evkeyvalq *q, const char *k)
{
    return evhttp_find_header(q, k);
}

/* ---- handlers ---- */

static void h_health(reqctx_t *c)
{
    reply_json(c, 200, json_pack("{s:s}", "status", c->api->e->shutting_down ? "draining" : "ok"));
}

static void h_health_detailed(reqctx_t *c)
{
    json_t *h = sn_engine_health(c->api->e);
    int ok = strcmp(json_string_value(json_object_get(h, "status")), "ok") == 0;
    reply_json(c, ok ? 200 : 503, h);
}

static void h_metrics(reqctx_t *c)
{
    sn_engine_t *e = c->api->e;
    sn_telemetry_stats_t ts = {0};
    if (e->tel)
        sn_telemetry_stats(e->tel, &ts);
    size_t open = 0, waiting = 0;
    for (sn_incident_t *i = e->incidents; i; i = i->next) {
        open += i->open;
        waiting += i->waiting;
    }
    sn_metric(e->rt, SN_METRIC_GAUGE, "incidents_open", "Open incidents", NULL, (double)open);
    sn_metric(e->rt, SN_METRIC_GAUGE, "approvals_pending", "Incidents waiting for a human", NULL,
              (double)waiting);
    sn_metric(e->rt, SN_METRIC_GAUGE, "telemetry_series", "Active series", NULL, (double)ts.series);
    sn_metric(e->rt, SN_METRIC_GAUGE, "telemetry_queued_points", "Points waiting for workers", NULL,
              (double)ts.queued);
    sn_metric(e->rt, SN_METRIC_GAUGE, "telemetry_points_observed", "Points run through detectors",
              NULL, (double)ts.points);
    sn_metric(e->rt, SN_METRIC_GAUGE, "telemetry_series_dropped",
              "Series refused at the max_series cap", NULL, (double)ts.series_dropped);
    sn_metric(e->rt, SN_METRIC_GAUGE, "telemetry_series_warmed",
              "New series whose detectors were primed from the telemetry store", NULL,
              (double)ts.warmed);
    sn_metric(e->rt, SN_METRIC_GAUGE, "telemetry_series_cold",
              "New series that started cold: history failed or came too late", "reason=\"failed\"",
              (double)ts.warm_failed);
    sn_metric(e->rt, SN_METRIC_GAUGE, "telemetry_series_cold", NULL, "reason=\"skipped\"",
              (double)ts.warm_skipped);
    sn_metric(e->rt, SN_METRIC_GAUGE, "telemetry_series_evicted",
              "Idle series evicted at the max_series cap (detector state restarts)", NULL,
              (double)ts.series_evicted);
    size_t pending, dead;
    sn_outbox_counts(e, &pending, &dead);
    sn_metric(e->rt, SN_METRIC_GAUGE, "outbox_pending", "Notifications waiting to be delivered",
              NULL, (double)pending);
    sn_metric(e->rt, SN_METRIC_GAUGE, "outbox_dead",
              "Notifications given up (GET /v1/notifications?state=dead)", NULL, (double)dead);
    sn_metric(e->rt, SN_METRIC_GAUGE, "audit_seq", "Last audit sequence number written", NULL,
              (double)e->audit.seq);
    char *text = sn_metrics_render(e->rt);
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, text ? text : "", text ? strlen(text) : 0);
    free(text);
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(c->req, 200, NULL, out);
    evbuffer_free(out);
}

static void h_events(reqctx_t *c)
{
    sn_engine_t *e = c->api->e;
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t len = evbuffer_get_length(in);
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    sn_ingest_stats_t st;
    sn_diag_t errs;
    sn_diag_init(&errs);
    char origin[96];
    snprintf(origin, sizeof(origin), "request %s", c->rid);
    int rc = sn_engine_ingest(e, body, len, origin, &st, &errs);
    if (rc == SN_EAGAIN) {
        sn_diag_free(&errs);
        evhttp_add_header(evhttp_request_get_output_headers(c->req), "Retry-After", "1");
        reply_error(c, 503, "ingest queues are full: nothing from this body was taken, retry");
        return;
    }
    if (rc != 0) {
        sn_diag_free(&errs);
        reply_error(c, 500, "ingest failed: out of memory, nothing from this body was taken");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < errs.n; i++) {
        json_array_append_new(arr, json_string(errs.msgs[i]));
        sn_log(SN_LOG_WARN, "ingest", NULL, c->rid, "%s", errs.msgs[i]);
    }
    sn_diag_free(&errs);
    int status = (st.rejected > 0 && st.accepted == 0) ? 400 : 200;
    reply_json(c, status,
               json_pack("{s:I,s:I,s:o,s:s}", "accepted", (json_int_t)st.accepted, "rejected",
                         (json_int_t)st.rejected, "errors", arr, "request_id", c->rid));
}

static void h_incidents(reqctx_t *c, struct evkeyvalq *q)
{
    reply_json(c, 200, sn_engine_incidents(c->api->e, query_get(q, "state")));
}

static void h_notifications(reqctx_t *c, struct evkeyvalq *q)
{
    const char *state = query_get(q, "state");
    if (state && strcmp(state, "pending") != 0 && strcmp(state, "dead") != 0) {
        reply_error(c, 400, "state must be pending or dead");
        return;
    }
    reply_json(c, 200, sn_outbox_list(c->api->e, state));
}

/* The console: static files, public like any page (the data behind them needs a key). */
static void h_ui(reqctx_t *c, const char *path)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    if (strcmp(path, "/ui") == 0) {
        evhttp_add_header(h, "Location", "/ui/");
        evhttp_send_reply(c->req, 301, "Moved Permanently", NULL);
        return;
    }
    const char *name = path + 4; /* after "/ui/" */
    if (!*name)
        name = "index.html";
    for (const sn_ui_asset_t *a = sn_ui_assets; a->name; a++) {
        if (strcmp(a->name, name) != 0)
            continue;
        evhttp_add_header(h, "Content-Type", a->content_type);
        evhttp_add_header(h, "Cache-Control", "no-cache");
        evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
        evhttp_add_header(h, "X-Frame-Options", "DENY");
        evhttp_add_header(h, "Referrer-Policy", "no-referrer");
        evhttp_add_header(h, "Content-Security-Policy",
                          "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                          "script-src 'self'; connect-src 'self'; frame-ancestors 'none'");
        struct evbuffer *out = evbuffer_new();
        evbuffer_add_reference(out, a->data, a->len, NULL, NULL);
        evhttp_send_reply(c->req, 200, "OK", out);
        evbuffer_free(out);
        return;
    }
    reply_error(c, 404, "no such console file");
}

/* GET /v1/series/<16 hex digits>?from=MS&to=MS[&limit=N]: points of one series from the
 * telemetry store, for the console's charts around an incident's onset. */
static void series_read(void *arg, int status, json_t *result)
{
    reqctx_t *c = arg;
    if (status != 0)
        reply_error(c, status == SN_ENOTSUP ? 501 : 502, "telemetry store unavailable");
    else
        reply_json(c, 200, json_incref(result));
    free(c);
}

static void h_series(reqctx_t *c, const char *hex, struct evkeyvalq *q)
{
    sn_engine_t *e = c->api->e;
    char *end;
    unsigned long long series = strtoull(hex, &end, 16);
    const char *from = query_get(q, "from"), *to = query_get(q, "to"),
               *limit = query_get(q, "limit");
    int64_t f, t;
    if (strlen(hex) != 16 || *end || !from || !to || sn_parse_time_ms(from, &f) != 0 ||
        sn_parse_time_ms(to, &t) != 0 || t < f) {
        reply_error(c, 400, "GET /v1/series/<16 hex digits>?from=T&to=T (epoch ms or RFC 3339)");
        return;
    }
    if (!e->telemetry) {
        reply_error(c, 501, "no [sentinel] telemetry store keeps points");
        return;
    }
    long lim = limit ? strtol(limit, NULL, 10) : 2000;
    reqctx_t *copy = malloc(sizeof(*copy));
    if (!copy) {
        reply_error(c, 500, "out of memory");
        return;
    }
    *copy = *c;
    const sn_store_ops_t *ops = e->telemetry->in->mod->plugin->ops;
    ops->telemetry_window(e->telemetry->self, (uint64_t)series, f, t,
                          (size_t)(lim > 0 && lim <= 10000 ? lim : 2000), series_read, copy);
}

static json_t *read_body(reqctx_t *c)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t len = evbuffer_get_length(in);
    if (!len)
        return NULL;
    return json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL);
}

static void silence_created(void *arg, int status, json_t *doc)
{
    deferred_t *d = arg;
    reqctx_t *c = undefer(d);
    if (c && status == 0)
        reply_json(c, 201, json_deep_copy(doc));
    else if (c)
        reply_error(c, 503,
                    "the state store could not keep the silence: it was not created; "
                    "try again");
    free(d);
}

static void h_silence_create(reqctx_t *c)
{
    json_t *body = read_body(c);
    if (!json_is_object(body)) {
        json_decref(body);
        reply_error(c, 400,
                    "body must be a JSON object: {\"matchers\": {\"service\": \"checkout\"}, "
                    "\"duration_s\": 3600, \"comment\": \"...\"}");
        return;
    }
    char actor[160], why[200] = "";
    snprintf(actor, sizeof(actor), "api:%s", c->actor ? c->actor : "anonymous");
    deferred_t *d = defer(c);
    if (!d) {
        json_decref(body);
        reply_error(c, 500, "out of memory");
        return;
    }
    int rc = sn_silence_create(c->api->e, body, actor, why, sizeof(why), silence_created, d);
    json_decref(body);
    if (rc != 0) {
        undefer(d);
        free(d);
        reply_error(c, rc == SN_EINVAL ? 400 : 409, why);
    }
}

static void silence_expired(void *arg, int status, json_t *doc)
{
    deferred_t *d = arg;
    reqctx_t *c = undefer(d);
    if (c && status == 0)
        reply_json(c, 200,
                   json_pack("{s:s,s:b}", "id", json_string_value(json_object_get(doc, "id")),
                             "expired", 1));
    else if (c)
        reply_error(c, 503,
                    "the state store could not keep the expiry: the silence stays "
                    "active; try again");
    free(d);
}

static void h_silence_expire(reqctx_t *c, const char *id)
{
    char actor[160];
    snprintf(actor, sizeof(actor), "api:%s", c->actor ? c->actor : "anonymous");
    deferred_t *d = defer(c);
    if (!d) {
        reply_error(c, 500, "out of memory");
        return;
    }
    int rc = sn_silence_expire(c->api->e, id, actor, silence_expired, d);
    if (rc == 0)
        return;
    undefer(d);
    free(d);
    if (rc == SN_ENOTFOUND)
        reply_error(c, 404, "no such silence");
    else if (rc == SN_ENOMEM)
        reply_error(c, 500, "out of memory");
    else
        reply_error(c, 409, "silence already expired");
}

static void h_incident(reqctx_t *c, const char *id)
{
    json_t *doc = sn_engine_incident(c->api->e, id);
    if (!doc) {
        reply_error(c, 404, "no such incident");
        return;
    }
    reply_json(c, 200, doc);
}

static void h_decide(reqctx_t *c, const char *id, int approve)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t len = evbuffer_get_length(in);
    const char *reason = NULL;
    json_t *body = NULL;
    if (len) {
        json_error_t jerr;
        body = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr);
        if (!json_is_object(body)) {
            json_decref(body);
            reply_error(c, 400, "body must be a JSON object such as {\"reason\": \"...\"}");
            return;
        }
        reason = json_string_value(json_object_get(body, "reason"));
    }
    char actor[160];
    snprintf(actor, sizeof(actor), "api:%s", c->actor ? c->actor : "anonymous");
    int rc = sn_engine_decide(c->api->e, id, approve, actor, reason);
    json_decref(body);
    if (rc == SN_ENOTFOUND)
        reply_error(c, 404, "no such incident");
    else if (rc == SN_EINVAL)
        reply_error(c, 409, "incident is not waiting for approval");
    else
        reply_json(c, 200,
                   json_pack("{s:s,s:s,s:s}", "id", id, "decision",
                             approve ? "approved" : "rejected", "request_id", c->rid));
}

static void audit_done(void *arg, int status, json_t *result)
{
    deferred_t *d = arg;
    reqctx_t *c = undefer(d);
    if (c && status != 0)
        reply_error(c, status == SN_ENOTSUP ? 501 : 500, "audit store unavailable");
    else if (c)
        reply_json(c, 200, json_incref(result));
    free(d);
}

static void h_audit(reqctx_t *c, struct evkeyvalq *q)
{
    json_t *f = json_object();
    const char *keys[] = {"actor", "action", "incident", "since", "until"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = query_get(q, keys[i]);
        if (v)
            json_object_set_new(f, keys[i], json_string(v));
    }
    const char *ints[] = {"after_seq", "limit"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = query_get(q, ints[i]);
        if (!v)
            continue;
        char *end;
        long long n = strtoll(v, &end, 10);
        if (*end || n < 0) {
            json_decref(f);
            reply_error(c, 400, "after_seq and limit must be non-negative integers");
            return;
        }
        json_object_set_new(f, ints[i], json_integer(n));
    }
    deferred_t *d = defer(c);
    if (!d) {
        json_decref(f);
        reply_error(c, 500, "out of memory");
        return;
    }
    sn_engine_audit_query(c->api->e, f, audit_done, d);
    json_decref(f);
}

static int h_hook(reqctx_t *c, const char *path, enum evhttp_cmd_type cmd)
{
    sn_api_t *a = c->api;
    const char *method = cmd == EVHTTP_REQ_GET ? "GET" : cmd == EVHTTP_REQ_POST ? "POST" : "?";
    for (size_t i = 0; i < a->nroutes; i++) {
        route_t *r = &a->routes[i];
        if (strcmp(r->path, path) != 0 || strcmp(r->method, method) != 0)
            continue;
        sn_route_req_t *rr = calloc(1, sizeof(*rr));
        if (!rr) {
            reply_error(c, 500, "out of memory");
            return 1;
        }
        struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
        rr->req = c->req;
        rr->len = evbuffer_get_length(in);
        rr->body = rr->len ? (const char *)evbuffer_pullup(in, -1) : "";
        r->fn(r->self, rr);
        return 1;
    }
    return 0;
}

/* ---- dispatch ---- */

static sn_role_t needed_role(const char *path, enum evhttp_cmd_type cmd)
{
    if (strcmp(path, "/v1/events") == 0)
        return SN_ROLE_INGEST;
    if (cmd == EVHTTP_REQ_POST &&
        (strncmp(path, "/v1/incidents/", 14) == 0 || strncmp(path, "/v1/silences", 12) == 0))
        return SN_ROLE_OPERATOR;
    return SN_ROLE_VIEWER;
}

static int authenticate(reqctx_t *c, const char *path, enum evhttp_cmd_type cmd)
{
    sn_api_t *a = c->api;
    struct evkeyvalq *h = evhttp_request_get_input_headers(c->req);
    if (sn_auth_count(a->auth) == 0) {
        /* The embedded default: loopback only, callers are admin. */
        if (!peer_is_loopback(c->req)) {
            reply_error(c, 403, "no API keys configured: only loopback callers are served");
            return 0;
        }
        c->role = SN_ROLE_ADMIN;
        c->actor = "loopback";
        return 1;
    }
    const char *key = NULL;
    const char *authz = evhttp_find_header(h, "Authorization");
    if (authz)
        key = sn_auth_bearer(authz);
    if (!key)
        key = evhttp_find_header(h, "X-API-Key");
    const char *name = NULL;
    c->role = key ? sn_auth_check(a->auth, key, &name) : SN_ROLE_NONE;
    c->actor = name;
    if (c->role == SN_ROLE_NONE) {
        sn_metric(a->e->rt, SN_METRIC_COUNTER, "http_auth_failures_total",
                  "Requests refused for a missing or unknown API key", NULL, 1);
        json_t *det = json_pack("{s:s,s:s,s:b}", "path", path, "request_id", c->rid,
                                "key_presented", key != NULL);
        sn_engine_audit(a->e, "anonymous", "login_failed", NULL, det);
        json_decref(det);
        evhttp_add_header(evhttp_request_get_output_headers(c->req), "WWW-Authenticate", "Bearer");
        reply_error(c, 401, "missing or unknown API key");
        return 0;
    }
    sn_role_t need = needed_role(path, cmd);
    if (!sn_role_allows(c->role, need)) {
        sn_metric(a->e->rt, SN_METRIC_COUNTER, "http_forbidden_total",
                  "Requests refused for an insufficient role", NULL, 1);
        char msg[96];
        snprintf(msg, sizeof(msg), "role '%s' may not do this (needs %s)", sn_role_name(c->role),
                 sn_role_name(need));
        reply_error(c, 403, msg);
        return 0;
    }
    return 1;
}

static void route(reqctx_t *cp);

static void dispatch(struct evhttp_request *req, void *arg)
{
    sn_api_t *a = arg;
    reqctx_t c = {.api = a, .req = req};
    struct evkeyvalq *hin = evhttp_request_get_input_headers(req);
    const char *rid = evhttp_find_header(hin, "X-Request-ID");
    if (rid && valid_request_id(rid))
        snprintf(c.rid, sizeof(c.rid), "%s", rid);
    else
        sn_uuid7(c.rid);
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Request-ID", c.rid);
    /* Whatever this request sets off synchronously (a plugin route, an approval that runs the
     * next step) sends its outgoing calls with the same X-Request-ID. */
    sn_runtime_set_request_id(a->e->rt, c.rid);
    route(&c);
    sn_runtime_set_request_id(a->e->rt, NULL);
}

static void route(reqctx_t *cp)
{
    reqctx_t c = *cp;
    sn_api_t *a = c.api;
    struct evhttp_request *req = c.req;

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (!path) {
        reply_error(&c, 400, "bad request target");
        return;
    }
    sn_metric(a->e->rt, SN_METRIC_COUNTER, "http_requests_total", "HTTP requests received", NULL,
              1);
    size_t body_len = evbuffer_get_length(evhttp_request_get_input_buffer(req));
    if ((int64_t)body_len > a->max_body) {
        sn_metric(a->e->rt, SN_METRIC_COUNTER, "http_body_too_large_total",
                  "Requests refused with 413", NULL, 1);
        sn_log(SN_LOG_WARN, "http", NULL, c.rid, "413: body of %zu bytes over max_body %lld",
               body_len, (long long)a->max_body);
        char msg[128];
        snprintf(msg, sizeof(msg), "body of %zu bytes is over max_body (%lld bytes)", body_len,
                 (long long)a->max_body);
        reply_error(&c, 413, msg);
        return;
    }
    if (strcmp(path, "/health") == 0 && cmd == EVHTTP_REQ_GET) {
        h_health(&c);
        return;
    }
    if ((strcmp(path, "/ui") == 0 || strncmp(path, "/ui/", 4) == 0) && cmd == EVHTTP_REQ_GET) {
        h_ui(&c, path);
        return;
    }
    if (strncmp(path, "/hooks/", 7) == 0) {
        if (!h_hook(&c, path, cmd))
            reply_error(&c, 404, "no such hook");
        return;
    }
    if (!authenticate(&c, path, cmd))
        return;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (query && evhttp_parse_query_str(query, &q) != 0) {
        reply_error(&c, 400, "malformed query string");
        return;
    }
    if (cmd == EVHTTP_REQ_GET && strcmp(path, "/health/detailed") == 0) {
        h_health_detailed(&c);
    } else if (cmd == EVHTTP_REQ_GET && strcmp(path, "/metrics") == 0) {
        h_metrics(&c);
    } else if (strcmp(path, "/v1/events") == 0) {
        if (cmd != EVHTTP_REQ_POST)
            reply_error(&c, 405, "use POST");
        else
            h_events(&c);
    } else if (cmd == EVHTTP_REQ_GET && strcmp(path, "/v1/incidents") == 0) {
        h_incidents(&c, &q);
    } else if (strncmp(path, "/v1/incidents/", 14) == 0) {
        char id[64] = "", verb[16] = "";
        const char *rest = path + 14;
        const char *slash = strchr(rest, '/');
        size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
        if (idlen == 0 || idlen >= sizeof(id)) {
            reply_error(&c, 404, "no such incident");
        } else {
            memcpy(id, rest, idlen);
            if (slash)
                snprintf(verb, sizeof(verb), "%s", slash + 1);
            if (!slash && cmd == EVHTTP_REQ_GET)
                h_incident(&c, id);
            else if (cmd == EVHTTP_REQ_POST && strcmp(verb, "approve") == 0)
                h_decide(&c, id, 1);
            else if (cmd == EVHTTP_REQ_POST && strcmp(verb, "reject") == 0)
                h_decide(&c, id, 0);
            else
                reply_error(&c, 404, "no such route");
        }
    } else if (strcmp(path, "/v1/silences") == 0) {
        if (cmd == EVHTTP_REQ_POST)
            h_silence_create(&c);
        else
            reply_json(&c, 200, sn_silence_list(a->e));
    } else if (strncmp(path, "/v1/silences/", 13) == 0 && cmd == EVHTTP_REQ_POST) {
        char id[64] = "";
        const char *rest = path + 13, *slash = strchr(rest, '/');
        if (!slash || strcmp(slash, "/expire") != 0 || (size_t)(slash - rest) >= sizeof(id)) {
            reply_error(&c, 404, "no such route (POST /v1/silences/ID/expire)");
        } else {
            memcpy(id, rest, (size_t)(slash - rest));
            h_silence_expire(&c, id);
        }
    } else if (cmd == EVHTTP_REQ_GET && strcmp(path, "/v1/whoami") == 0) {
        reply_json(&c, 200,
                   json_pack("{s:s,s:s}", "name", c.actor ? c.actor : "anonymous", "role",
                             sn_role_name(c.role)));
    } else if (cmd == EVHTTP_REQ_GET && strncmp(path, "/v1/series/", 11) == 0) {
        h_series(&c, path + 11, &q);
    } else if (cmd == EVHTTP_REQ_GET && strcmp(path, "/v1/notifications") == 0) {
        h_notifications(&c, &q);
    } else if (cmd == EVHTTP_REQ_GET && strcmp(path, "/v1/audit") == 0) {
        h_audit(&c, &q);
    } else {
        reply_error(&c, 404, "no such route");
    }
    evhttp_clear_headers(&q);
}

/* ---- plugin routes ---- */

int sn_api_route_add(void *eng, const char *instance, const char *method, const char *path,
                     sn_route_fn fn, void *self)
{
    sn_engine_t *e = eng;
    if (!e->api)
        return SN_ENOTSUP;
    route_t *tab = e->api->routes;
    size_t *n = &e->api->nroutes;
    if (*n >= SN_MAX_ROUTES)
        return SN_ENOMEM;
    const char *name = instance ? strchr(instance, ':') : NULL;
    name = name ? name + 1 : instance ? instance : "core";
    route_t *r = &tab[(*n)++];
    snprintf(r->method, sizeof(r->method), "%s", method);
    snprintf(r->path, sizeof(r->path), "/hooks/%s/%s", name, path[0] == '/' ? path + 1 : path);
    snprintf(r->owner, sizeof(r->owner), "%s", instance ? instance : "core");
    r->fn = fn;
    r->self = self;
    return 0;
}

void sn_api_routes_drop(sn_api_t *a, const char *label)
{
    if (!a)
        return;
    size_t k = 0;
    for (size_t i = 0; i < a->nroutes; i++)
        if (strcmp(a->routes[i].owner, label) != 0)
            a->routes[k++] = a->routes[i];
    a->nroutes = k;
}

sn_auth_t *sn_api_auth_for(sn_api_t *a, const sn_model_t *m, sn_diag_t *d)
{
    size_t before = d->n;
    sn_auth_t *auth = sn_auth_new(m->set.api_keys, m->conf->file, m->set.api_keys_line, d);
    if (auth && d->n == before && sn_auth_count(auth) == 0 && !a->loopback)
        sn_diag_add(d, m->conf->file, m->set.api_keys_line,
                    "the API listens beyond loopback: removing every api_key would serve it "
                    "unauthenticated");
    if (d->n != before) {
        sn_auth_free(auth);
        return NULL;
    }
    return auth;
}

void sn_api_reconfigure(sn_api_t *a, sn_auth_t *auth, int64_t max_body)
{
    sn_auth_free(a->auth);
    a->auth = auth;
    a->max_body = max_body;
    evhttp_set_max_body_size(a->http, (ev_ssize_t)max_body * 4);
}

const char *sn_api_req_body(sn_route_req_t *r, size_t *len)
{
    if (len)
        *len = r->len;
    return r->body;
}

const char *sn_api_req_header(sn_route_req_t *r, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(r->req), name);
}

void sn_api_req_reply(sn_route_req_t *r, int status, const char *content_type, const char *body,
                      size_t len)
{
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, body ? body : "", body ? len : 0);
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    if (content_type)
        evhttp_add_header(h, "Content-Type", content_type);
    if (status == 503 || status == 429)
        evhttp_add_header(h, "Retry-After", "1"); /* the core's queues drain within seconds */
    evhttp_send_reply(r->req, status, NULL, out);
    evbuffer_free(out);
    free(r);
}

/* ---- lifecycle ---- */

static int split_listen(const char *listen, char *host, size_t hl, int *port)
{
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen)
        return SN_EINVAL;
    size_t n = (size_t)(colon - listen);
    if (listen[0] == '[' && n >= 2 && listen[n - 1] == ']') {
        listen++;
        n -= 2;
    }
    if (n >= hl)
        return SN_EINVAL;
    memcpy(host, listen, n);
    host[n] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return SN_EINVAL;
    *port = (int)p;
    return 0;
}

sn_api_t *sn_api_new(sn_engine_t *e, const char *listen, sn_diag_t *d)
{
    const char *file = e->model->conf->file;
    char host[128];
    int port;
    if (split_listen(listen, host, sizeof(host), &port) != 0) {
        sn_diag_add(d, file, 0, "listen '%s' is not host:port", listen);
        return NULL;
    }
    sn_api_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->e = e;
    a->max_body = e->model->set.max_body;
    a->auth = sn_auth_new(e->model->set.api_keys, file, e->model->set.api_keys_line, d);
    if (!a->auth || d->n)
        goto fail;
    int loopback =
        strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 || strcmp(host, "localhost") == 0;
    a->loopback = loopback;
    if (sn_auth_count(a->auth) == 0) {
        if (!loopback) {
            sn_diag_add(d, file, 0,
                        "listen '%s' is not loopback and no api_key is configured: refusing to "
                        "serve an unauthenticated API on the network",
                        listen);
            goto fail;
        }
        sn_log(SN_LOG_WARN, "http", NULL, NULL,
               "no api_key configured: loopback callers are admin (fine for a demo, not for "
               "production)");
    }
    a->http = evhttp_new(sn_runtime_base(e->rt));
    if (!a->http)
        goto fail;
    /* libevent 2.1 answers an oversized body with 413 before any callback runs, so nothing
     * could count it: its hard cap sits at 4 x max_body, and dispatch() refuses (and counts)
     * anything over max_body itself. Memory stays bounded by the hard cap. */
    evhttp_set_max_body_size(a->http, (ev_ssize_t)a->max_body * 4);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(a->http, dispatch, a);
    evhttp_set_timeout(a->http, 30);
    a->sock = evhttp_bind_socket_with_handle(a->http, host, (ev_uint16_t)port);
    if (!a->sock) {
        sn_diag_add(d, file, 0, "cannot listen on %s", listen);
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(evhttp_bound_socket_get_fd(a->sock), (struct sockaddr *)&ss, &sl) == 0)
        a->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    sn_log(SN_LOG_INFO, "http", NULL, NULL, "listening on %s:%d", host, a->port);
    return a;
fail:
    sn_api_free(a);
    return NULL;
}

void sn_api_free(sn_api_t *a)
{
    if (!a)
        return;
    for (deferred_t *d = a->deferred; d; d = d->next)
        d->orphan = 1;
    if (a->http)
        evhttp_free(a->http);
    sn_auth_free(a->auth);
    free(a);
}

int sn_api_port(sn_api_t *a)
{
    return a->port;
}
