/**
 * @file http.c
 * Input `http`: a pipeline entry for telemetry pushed over HTTP. It registers
 * POST /hooks/<instance>/events taking the same JSON lines as the core's /v1/events, guarded by
 * its own bearer token when one is configured (for agents that should not hold an API key).
 * The core's /v1/events route feeds the same pipeline; this instance is what makes detectors
 * reachable from an input in the graph.
 */
#include <sentinel/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct http_in {
    const sn_host_t *host;
    const char *token; /* owned by the host's cfg */
    unsigned long accepted, refused;
} http_in_t;

static const sn_param_t http_params[] = {
    {"token", SN_T_STRING, NULL, SN_PARAM_SECRET,
     "bearer token callers must present (use ${env:NAME} or ${file:/path}); none = open, for "
     "loopback setups"},
    {NULL, 0, NULL, 0, NULL},
};

static int http_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    http_in_t *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    h->host = host;
    h->token = host->cfg_str(cfg, "token");
    *self = h;
    return 0;
}

/* Constant time over the presented length so a prefix match is not observable. */
static int token_ok(const char *want, const char *got)
{
    size_t lw = strlen(want), lg = strlen(got);
    unsigned char diff = (unsigned char)(lw != lg);
    for (size_t i = 0; i < lg; i++)
        diff |= (unsigned char)(got[i] ^ (i < lw ? want[i] : 0));
    return diff == 0;
}

static void http_events(void *self, sn_route_req_t *req)
{
    http_in_t *h = self;
    const sn_host_t *host = h->host;
    if (h->token) {
        const char *auth = host->req_header(req, "Authorization");
        if (!auth || strncmp(auth, "Bearer ", 7) != 0 || !token_ok(h->token, auth + 7)) {
            h->refused++;
            host->metric(host, SN_METRIC_COUNTER, "input_http_unauthorized_total",
                         "Pushes refused for a missing or wrong token", 1);
            static const char body[] = "{\"error\":\"missing or wrong bearer token\"}\n";
            host->req_reply(req, 401, "application/json", body, sizeof(body) - 1);
            return;
        }
    }
    size_t len = 0;
    const char *body = host->req_body(req, &len);
    int n = host->emit_lines(host, body, len, host->instance);
    char out[160];
    if (n < 0) {
        int busy = n == SN_EAGAIN;
        int l = snprintf(out, sizeof(out), "{\"error\":\"%s\"}\n",
                         busy ? "queues full, nothing taken: retry" : "ingest failed");
        host->req_reply(req, busy ? 503 : 500, "application/json", out, (size_t)l);
        return;
    }
    h->accepted += (unsigned long)n;
    int l = snprintf(out, sizeof(out), "{\"accepted\":%d}\n", n);
    host->req_reply(req, 200, "application/json", out, (size_t)l);
}

static int http_start(void *self)
{
    http_in_t *h = self;
    if (!SN_HOST_HAS(h->host, route_add))
        return SN_ENOTSUP;
    int rc = h->host->route_add(h->host, "POST", "events", http_events, h);
    if (rc == SN_ENOTSUP) {
        h->host->log(h->host, SN_LOG_WARN, "HTTP API disabled: no route registered");
        return 0;
    }
    return rc;
}

static void http_destroy(void *self)
{
    free(self);
}

static int http_health(void *self, sn_health_t *out)
{
    http_in_t *h = self;
    out->ok = 1;
    snprintf(out->detail, sizeof(out->detail), "%lu records accepted, %lu pushes refused",
             h->accepted, h->refused);
    return 0;
}

static const sn_input_ops_t http_ops = {.struct_size = sizeof(sn_input_ops_t)};

static const sn_plugin_t http_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_INPUT,
    .type = "http",
    .version = "1.0.0",
    .summary = "telemetry pushed as JSON lines to POST /hooks/<instance>/events",
    .params = http_params,
    .create = http_create,
    .start = http_start,
    .destroy = http_destroy,
    .health = http_health,
    .ops = &http_ops,
};

SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &http_plugin;
}
