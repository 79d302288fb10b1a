/**
 * @file slack.c
 * Notifier `slack`: posts incidents to Slack as Block Kit messages, threads the follow-ups
 * under the incident's first message and lets listed Slack users approve or reject a plan with
 * buttons (the interactivity route lives in interact.c, the rendering in blocks.c).
 *
 * Delivery: with `token` (a bot token) through chat.postMessage at `api_url` to `channel`; the
 * first message of an incident starts a thread whose ts is remembered (at most `max_threads`
 * incidents, oldest dropped, in memory only: after a restart the next message of an incident
 * starts a new thread), later events are replies in it (approval_needed and escalated are also
 * broadcast to the channel). With `webhook_url` (an incoming webhook) every event is a
 * top-level message: a webhook can neither thread nor edit.
 *
 * The Web API answers 200 even on failure, so `ok` is checked. HTTP 429 waits the Retry-After
 * seconds (capped at retry_max); 5xx, transport errors and the transient Web API errors
 * (ratelimited, internal_error, fatal_error, service_unavailable, request_timeout) are retried
 * after a full-jitter backoff, at most max_retries times; anything else is final. Deliveries of
 * one incident go out one after the other, in order. At most `max_pending` deliveries are in
 * progress; beyond that notify fails at once with SN_ENOMEM.
 *
 * Secrets (`token`, `webhook_url`, `signing_secret`): the core expands ${env:..} / ${file:..}
 * when it validates the settings; a reference that reaches the plugin unexpanded is resolved
 * through host->secret. They are kept in private copies wiped on destroy, and never logged or
 * put into an error (neither is a response_url: it is a capability too).
 */
#include "slack.h"
#include "retry.h"

#include <openssl/crypto.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SLK_RESPONSE_MAX 65536

static const sn_param_t slk_params[] = {
    {"token", SN_T_STRING, NULL, SN_PARAM_SECRET,
     "bot token (xoxb-...) for chat.postMessage; use ${env:NAME} or ${file:/path}"},
    {"channel", SN_T_STRING, NULL, 0, "channel ID the bot posts to (with token)"},
    {"webhook_url", SN_T_STRING, NULL, SN_PARAM_SECRET,
     "incoming webhook URL instead of a token (no threads, no updates)"},
    {"api_url", SN_T_STRING, "https://slack.com/api/", 0, "Web API base URL"},
    {"signing_secret", SN_T_STRING, NULL, SN_PARAM_SECRET,
     "Slack app signing secret: enables the Approve/Reject buttons and POST "
     "/hooks/<instance>/interact"},
    {"approvers", SN_T_LIST, NULL, SN_PARAM_MULTI,
     "repeatable or a list: SLACK_USER_ID=name, the users allowed to decide"},
    {"console_url", SN_T_STRING, NULL, 0,
     "base URL of the Sentinel console; messages link to <console_url>/ui/#/incidents/<id>"},
    {"response_url_prefix", SN_T_STRING, "https://hooks.slack.com/", 0,
     "an interaction's response_url must start with this to be used"},
    {"max_threads", SN_T_INT, "10000", 0, "incidents whose first message is remembered"},
    {"retry_base", SN_T_DURATION, "1s", 0, "first backoff ceiling; doubles on every retry"},
    {"retry_max", SN_T_DURATION, "60s", 0,
     "longest wait between two attempts, also the cap on a Retry-After"},
    {"max_retries", SN_T_INT, "5", 0, "retries after the first attempt before giving up"},
    {"max_pending", SN_T_INT, "1000", 0, "deliveries in progress; more are refused"},
    {"timeout", SN_T_DURATION, "10s", 0, "deadline of one request"},
    {NULL, 0, NULL, 0, NULL},
};

/* ---- helpers ------------------------------------------------------------------------------ */

void slk_count(slk_t *s, const char *name, const char *help)
{
    s->host->metric(s->host, SN_METRIC_COUNTER, name, help, 1);
}

static void slk_gauge(slk_t *s)
{
    s->host->metric(s->host, SN_METRIC_GAUGE, "notifier_slack_pending",
                    "Slack deliveries in progress", (double)s->npending);
}

static void slk_wipe_free(char *p)
{
    if (p) {
        OPENSSL_cleanse(p, strlen(p));
        free(p);
    }
}

/* A private copy of a secret setting; an unexpanded ${env:..}/${file:..} goes through
 * host->secret. NULL when absent or empty; *bad set when it cannot be resolved. */
static char *slk_secret(const sn_host_t *h, const char *v, int *bad)
{
    if (!v || !*v)
        return NULL;
    if (strstr(v, "${env:") || strstr(v, "${file:")) {
        char *x = h->secret(h, v);
        if (!x || !*x) {
            slk_wipe_free(x);
            *bad = 1;
            return NULL;
        }
        return x;
    }
    char *x = strdup(v);
    if (!x)
        *bad = 1;
    return x;
}

static int slk_is_http(const char *u)
{
    return u && (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0);
}

/* An error code from Slack, reduced to [a-z0-9_] so it can be logged. */
static void slk_code(char *out, size_t cap, const char *in)
{
    size_t n = 0;
    for (; in && *in && n + 1 < cap && n < 60; in++)
        if (isalnum((unsigned char)*in) || *in == '_')
            out[n++] = (char)tolower((unsigned char)*in);
    out[n] = '\0';
}

/* ---- threads: incident id -> first message --------------------------------------------------- */

static size_t slk_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ULL;
    return (size_t)h;
}

static slk_thread_t *slk_thread_get(slk_t *s, const char *id)
{
    for (slk_thread_t *t = s->buckets[slk_hash(id) & (s->nbuckets - 1)]; t; t = t->hnext)
        if (strcmp(t->id, id) == 0)
            return t;
    return NULL;
}

static void slk_thread_drop_oldest(slk_t *s)
{
    slk_thread_t *t = s->oldest;
    for (slk_thread_t **pp = &s->buckets[slk_hash(t->id) & (s->nbuckets - 1)]; *pp;
         pp = &(*pp)->hnext)
        if (*pp == t) {
            *pp = t->hnext;
            break;
        }
    s->oldest = t->newer;
    if (s->oldest)
        s->oldest->older = NULL;
    else
        s->newest = NULL;
    s->nthreads--;
    free(t);
}

static void slk_thread_put(slk_t *s, const char *id, const char *ts, const char *channel)
{
    if (!*id || slk_thread_get(s, id))
        return;
    if (s->nthreads >= (size_t)s->max_threads)
        slk_thread_drop_oldest(s);
    slk_thread_t *t = calloc(1, sizeof(*t));
    if (!t)
        return;
    snprintf(t->id, sizeof(t->id), "%s", id);
    snprintf(t->ts, sizeof(t->ts), "%s", ts);
    snprintf(t->channel, sizeof(t->channel), "%s", channel);
    size_t b = slk_hash(id) & (s->nbuckets - 1);
    t->hnext = s->buckets[b];
    s->buckets[b] = t;
    t->older = s->newest;
    if (s->newest)
        s->newest->newer = t;
    else
        s->oldest = t;
    s->newest = t;
    s->nthreads++;
}

/* ---- delivery ---------------------------------------------------------------------------- */

static void slk_send(slk_delivery_t *d);
static void slk_maybe_stopped(slk_t *s);

static const char *slk_kind_name(slk_kind_t k)
{
    return k == SLK_POST      ? "chat.postMessage"
           : k == SLK_WEBHOOK ? "webhook"
           : k == SLK_UPDATE  ? "chat.update"
                              : "response_url";
}

static void slk_link(slk_t *s, slk_delivery_t *d)
{
    d->prev = s->tail;
    if (s->tail)
        s->tail->next = d;
    else
        s->head = d;
    s->tail = d;
    s->npending++;
    slk_gauge(s);
}

static void slk_unlink(slk_t *s, slk_delivery_t *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        s->head = d->next;
    if (d->next)
        d->next->prev = d->prev;
    else
        s->tail = d->prev;
    d->next = d->prev = NULL;
    s->npending--;
}

static void slk_free(slk_delivery_t *d)
{
    json_decref(d->inc);
    json_decref(d->msg);
    free(d->body);
    slk_wipe_free(d->url);
    free(d);
}

/* Is an earlier delivery of the same incident still in progress? */
static int slk_busy(slk_t *s, const char *incident)
{
    for (slk_delivery_t *d = s->head; d; d = d->next)
        if (d->incident[0] && strcmp(d->incident, incident) == 0)
            return 1;
    return 0;
}

/* Complete @p d with @p rc, free it, and start the next delivery of its incident. */
static void slk_finish(slk_delivery_t *d, int rc)
{
    slk_t *s = d->s;
    slk_unlink(s, d);
    slk_gauge(s);
    if (rc == 0) {
        s->sent++;
        slk_count(s, "notifier_slack_sent_total", "Slack messages delivered");
    } else {
        s->failed++;
        slk_count(s, "notifier_slack_failed_total", "Slack messages given up on");
        s->host->log(s->host, SN_LOG_WARN,
                     "%s %s for incident %s not delivered after %d attempt%s: %s",
                     slk_kind_name(d->kind), d->event, d->incident[0] ? d->incident : "-",
                     d->attempts, d->attempts == 1 ? "" : "s", d->last_error);
        if (d->kind == SLK_RESPONSE && s->token && d->fb_channel[0] && d->fb_ts[0] && d->msg) {
            /* The response_url expired or failed: edit the message through the Web API. */
            json_t *upd = json_pack("{s:s,s:s,s:O,s:O}", "channel", d->fb_channel, "ts", d->fb_ts,
                                    "text", json_object_get(d->msg, "text"), "blocks",
                                    json_object_get(d->msg, "blocks"));
            slk_delivery_t *u = upd ? calloc(1, sizeof(*u)) : NULL;
            if (u) {
                u->s = s;
                u->kind = SLK_UPDATE;
                u->msg = upd;
                snprintf(u->event, sizeof(u->event), "%s", d->event);
                slk_link(s, u);
                slk_send(u);
            } else {
                json_decref(upd);
            }
        }
    }
    if (d->done) {
        json_t *res =
            json_pack("{s:i,s:i}", "status", (int)d->last_status, "attempts", d->attempts);
        if (res && d->ts[0])
            json_object_set_new(res, "ts", json_string(d->ts));
        if (res && rc != 0)
            json_object_set_new(res, "error", json_string(d->last_error));
        d->done(d->arg, rc, res);
        json_decref(res);
    }
    char incident[SLK_ID_MAX];
    snprintf(incident, sizeof(incident), "%s", d->incident);
    slk_free(d);
    if (incident[0])
        for (slk_delivery_t *n = s->head; n; n = n->next)
            if (n->queued && strcmp(n->incident, incident) == 0) {
                n->queued = 0;
                slk_send(n);
                break;
            }
    slk_maybe_stopped(s);
}

static void slk_retry(void *arg)
{
    slk_delivery_t *d = arg;
    d->timer = NULL;
    slk_send(d);
}

/* Web API errors worth another attempt. */
static int slk_transient(const char *code)
{
    static const char *const t[] = {"ratelimited",         "internal_error",  "fatal_error",
                                    "service_unavailable", "request_timeout", NULL};
    for (size_t i = 0; t[i]; i++)
        if (strcmp(code, t[i]) == 0)
            return 1;
    return 0;
}

/* Thread: loop. */
static void slk_http_done(void *arg, const sn_http_response_t *resp)
{
    slk_delivery_t *d = arg;
    d->in_flight = 0;
    if (!d->s) {
        slk_free(d);
        return;
    }
    slk_t *s = d->s;
    long st = resp ? resp->status : 0;
    int retryable = 0;
    d->last_status = st;
    if (st >= 200 && st < 300 && (d->kind == SLK_POST || d->kind == SLK_UPDATE)) {
        json_t *j = json_loadb(resp->body ? resp->body : "", resp->body_len, 0, NULL);
        char code[64] = "";
        if (json_is_true(json_object_get(j, "ok"))) {
            const char *ts = json_string_value(json_object_get(j, "ts"));
            const char *ch = json_string_value(json_object_get(j, "channel"));
            if (ts)
                slk_copy_utf8(d->ts, sizeof(d->ts), ts);
            if (d->kind == SLK_POST && !d->threaded && ts)
                slk_thread_put(s, d->incident, d->ts, ch ? ch : s->channel);
            json_decref(j);
            slk_finish(d, 0);
            return;
        }
        slk_code(code, sizeof(code), json_string_value(json_object_get(j, "error")));
        json_decref(j);
        snprintf(d->last_error, sizeof(d->last_error), "slack error %s",
                 code[0] ? code : "(unreadable answer)");
        retryable = slk_transient(code);
    } else if (st >= 200 && st < 300) {
        slk_finish(d, 0);
        return;
    } else if (st == 0) {
        snprintf(d->last_error, sizeof(d->last_error), "%.120s",
                 resp && resp->error ? resp->error : "no response");
        retryable = 1;
    } else {
        char code[64] = "";
        if (d->kind == SLK_WEBHOOK || d->kind == SLK_RESPONSE) /* a short text body */
            slk_code(code, sizeof(code), resp->body);
        snprintf(d->last_error, sizeof(d->last_error), "HTTP %ld%s%s", st, code[0] ? " " : "",
                 code);
        retryable = st == 429 || st >= 500;
    }
    if (!retryable || d->attempts > s->max_retries || s->stopping) {
        slk_finish(d, SN_EIO);
        return;
    }
    int64_t delay = 0;
    if (!(resp && (st == 429 || st == 200) && snr_retry_after(resp, &delay)))
        delay = snr_backoff(&s->rng, s->retry_base_ms, s->retry_max_ms, d->attempts);
    if (delay > s->retry_max_ms)
        delay = s->retry_max_ms;
    slk_count(s, "notifier_slack_retries_total", "Slack attempts retried");
    s->host->log(s->host, SN_LOG_DEBUG, "%s %s for incident %s: %s, retry %d in %lld ms",
                 slk_kind_name(d->kind), d->event, d->incident[0] ? d->incident : "-",
                 d->last_error, d->attempts, (long long)delay);
    d->timer = s->host->timer_add(s->host, delay, 0, slk_retry, d);
    if (!d->timer) {
        snprintf(d->last_error, sizeof(d->last_error), "cannot schedule a retry");
        slk_finish(d, SN_EIO);
    }
}

/* Render and serialise on the first attempt: the thread is known by then. */
static int slk_prepare(slk_t *s, slk_delivery_t *d)
{
    if (d->body)
        return 0;
    if (d->kind == SLK_POST || d->kind == SLK_WEBHOOK) {
        slk_thread_t *t = d->kind == SLK_POST ? slk_thread_get(s, d->incident) : NULL;
        d->threaded = t != NULL;
        d->msg = slk_render(s, d->inc, d->event, d->threaded);
        if (d->msg && d->kind == SLK_POST) {
            json_object_set_new(d->msg, "channel", json_string(t ? t->channel : s->channel));
            if (t) {
                json_object_set_new(d->msg, "thread_ts", json_string(t->ts));
                if (strcmp(d->event, "approval_needed") == 0 || strcmp(d->event, "escalated") == 0)
                    json_object_set_new(d->msg, "reply_broadcast", json_true());
            }
        }
        json_decref(d->inc);
        d->inc = NULL;
    }
    d->body = d->msg ? json_dumps(d->msg, JSON_COMPACT) : NULL;
    return d->body ? 0 : SN_ENOMEM;
}

/* Send one attempt. Thread: loop. */
static void slk_send(slk_delivery_t *d)
{
    slk_t *s = d->s;
    if (slk_prepare(s, d) != 0) {
        snprintf(d->last_error, sizeof(d->last_error), "cannot build the message");
        slk_finish(d, SN_ENOMEM);
        return;
    }
    const char *url = d->kind == SLK_POST      ? s->post_url
                      : d->kind == SLK_UPDATE  ? s->update_url
                      : d->kind == SLK_WEBHOOK ? s->webhook_url
                                               : d->url;
    char auth[512] = "";
    const char *headers[4];
    size_t nh = 0;
    headers[nh++] = "Content-Type: application/json; charset=utf-8";
    headers[nh++] = "User-Agent: sentinel-slack/1.0";
    if ((d->kind == SLK_POST || d->kind == SLK_UPDATE) && s->token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", s->token);
        headers[nh++] = auth;
    }
    headers[nh] = NULL;
    sn_http_request_t req = {
        .struct_size = sizeof(req),
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = d->body,
        .body_len = strlen(d->body),
        .timeout_ms = (long)s->timeout_ms,
        .max_response = SLK_RESPONSE_MAX,
    };
    d->attempts++;
    d->in_flight = 1;
    int rc = s->host->http(s->host, &req, slk_http_done, d);
    OPENSSL_cleanse(auth, sizeof(auth));
    if (rc != 0) {
        sn_http_response_t none = {.status = 0, .error = "request refused by the HTTP client"};
        slk_http_done(d, &none);
    }
}

int slk_respond(slk_t *s, const char *url, json_t *msg, const char *channel, const char *ts)
{
    slk_delivery_t *d = NULL;
    if (!msg || s->stopping || s->npending >= (size_t)s->max_pending ||
        !(d = calloc(1, sizeof(*d))) || !(d->url = strdup(url))) {
        json_decref(msg);
        free(d);
        s->dropped++;
        return SN_ENOMEM;
    }
    d->s = s;
    d->kind = SLK_RESPONSE;
    d->msg = msg;
    snprintf(d->event, sizeof(d->event), "decision");
    if (channel && ts) {
        slk_copy_utf8(d->fb_channel, sizeof(d->fb_channel), channel);
        slk_copy_utf8(d->fb_ts, sizeof(d->fb_ts), ts);
    }
    slk_link(s, d);
    slk_send(d);
    return 0;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static void slk_destroy(void *self);

static int slk_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    slk_t *s = calloc(1, sizeof(*s));
    int bad = 0;
    if (!s) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    s->host = host;
    s->token = slk_secret(host, host->cfg_str(cfg, "token"), &bad);
    if (bad) {
        snprintf(err->msg, sizeof(err->msg), "token: cannot resolve the secret reference");
        goto fail;
    }
    s->webhook_url = slk_secret(host, host->cfg_str(cfg, "webhook_url"), &bad);
    if (bad) {
        snprintf(err->msg, sizeof(err->msg), "webhook_url: cannot resolve the secret reference");
        goto fail;
    }
    s->signing_secret = slk_secret(host, host->cfg_str(cfg, "signing_secret"), &bad);
    if (bad) {
        snprintf(err->msg, sizeof(err->msg), "signing_secret: cannot resolve the secret reference");
        goto fail;
    }
    s->channel = host->cfg_str(cfg, "channel");
    if (s->channel && !*s->channel)
        s->channel = NULL;
    const char *api = host->cfg_str(cfg, "api_url");
    const char *console = host->cfg_str(cfg, "console_url");
    s->response_prefix = host->cfg_str(cfg, "response_url_prefix");
    s->retry_base_ms = host->cfg_int(cfg, "retry_base");
    s->retry_max_ms = host->cfg_int(cfg, "retry_max");
    s->max_retries = host->cfg_int(cfg, "max_retries");
    s->max_pending = host->cfg_int(cfg, "max_pending");
    s->timeout_ms = host->cfg_int(cfg, "timeout");
    s->max_threads = host->cfg_int(cfg, "max_threads");
    s->rng = (uint64_t)host->now_ms(host) ^ ((uint64_t)host->mono_ms(host) << 21) ^
             (uint64_t)(uintptr_t)s;
    if (!s->rng)
        s->rng = 0x9e3779b97f4a7c15ULL;

    if (!s->token == !s->webhook_url) {
        snprintf(err->msg, sizeof(err->msg), "set either token (with channel) or webhook_url");
        goto fail;
    }
    if (s->token && !s->channel) {
        snprintf(err->msg, sizeof(err->msg), "token needs channel (a channel ID such as C0123)");
        goto fail;
    }
    if (s->channel && strlen(s->channel) >= SLK_CHANNEL_MAX) {
        snprintf(err->msg, sizeof(err->msg), "channel must be shorter than %d characters",
                 SLK_CHANNEL_MAX);
        goto fail;
    }
    if (s->token && strpbrk(s->token, "\r\n")) {
        snprintf(err->msg, sizeof(err->msg), "token contains a line break");
        goto fail;
    }
    /* Not echoed: a webhook URL carries its token in the path. */
    if (s->webhook_url && !slk_is_http(s->webhook_url)) {
        snprintf(err->msg, sizeof(err->msg), "webhook_url must start with http:// or https://");
        goto fail;
    }
    if (!slk_is_http(api) || strlen(api) > 400) {
        snprintf(err->msg, sizeof(err->msg),
                 "api_url must start with http:// or https:// (at most 400 characters)");
        goto fail;
    }
    const char *sep = api[strlen(api) - 1] == '/' ? "" : "/";
    snprintf(s->post_url, sizeof(s->post_url), "%s%schat.postMessage", api, sep);
    snprintf(s->update_url, sizeof(s->update_url), "%s%schat.update", api, sep);
    if (console && *console) {
        if (!slk_is_http(console) || strlen(console) > 400 || strpbrk(console, "<>| \t\r\n")) {
            snprintf(err->msg, sizeof(err->msg),
                     "console_url must be an http:// or https:// URL (at most 400 characters)");
            goto fail;
        }
        snprintf(s->console, sizeof(s->console), "%s", console);
        size_t n = strlen(s->console);
        while (n > 0 && s->console[n - 1] == '/')
            s->console[--n] = '\0';
    }
    if (!slk_is_http(s->response_prefix)) {
        snprintf(err->msg, sizeof(err->msg),
                 "response_url_prefix must start with http:// or https://");
        goto fail;
    }
    if (slk_approvers_parse(s, host->cfg_list(cfg, "approvers"), err) != 0)
        goto fail;
    if (s->napprovers && !s->signing_secret) {
        snprintf(err->msg, sizeof(err->msg), "approvers need signing_secret (the buttons)");
        goto fail;
    }
    if (s->retry_base_ms < 1 || s->retry_max_ms < s->retry_base_ms) {
        snprintf(err->msg, sizeof(err->msg),
                 "retry_base must be at least 1ms and retry_max at least retry_base");
        goto fail;
    }
    if (s->max_retries < 0 || s->max_retries > 100) {
        snprintf(err->msg, sizeof(err->msg), "max_retries must be between 0 and 100");
        goto fail;
    }
    if (s->max_pending < 1 || s->max_pending > 1000000) {
        snprintf(err->msg, sizeof(err->msg), "max_pending must be between 1 and 1000000");
        goto fail;
    }
    if (s->max_threads < 1 || s->max_threads > 1000000) {
        snprintf(err->msg, sizeof(err->msg), "max_threads must be between 1 and 1000000");
        goto fail;
    }
    if (s->timeout_ms < 1) {
        snprintf(err->msg, sizeof(err->msg), "timeout must be positive");
        goto fail;
    }
    for (s->nbuckets = 16; s->nbuckets < (size_t)s->max_threads; s->nbuckets *= 2)
        ;
    s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    if (!s->buckets) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        goto fail;
    }
    *self = s;
    return 0;
fail:
    slk_destroy(s);
    return SN_EINVAL;
}

static int slk_start(void *self)
{
    slk_t *s = self;
    if (!s->signing_secret)
        return 0;
    int rc = s->host->route_add(s->host, "POST", "interact", slk_interact, s);
    if (rc == SN_ENOTSUP) {
        s->host->log(s->host, SN_LOG_WARN,
                     "no HTTP API to serve /hooks/.../interact: the buttons will not work");
        return 0;
    }
    if (rc != 0)
        s->host->log(s->host, SN_LOG_ERROR, "cannot register the interactivity route (%d)", rc);
    else if (!s->napprovers)
        s->host->log(s->host, SN_LOG_WARN, "no approvers: every Slack decision is refused");
    return rc;
}

static void slk_maybe_stopped(slk_t *s)
{
    if (!s->stopping || !s->stop_done || s->npending)
        return;
    sn_done_fn done = s->stop_done;
    s->stop_done = NULL;
    done(s->stop_arg, 0, NULL);
}

/**
 * Drain: deliveries waiting for a retry get one last attempt now, requests in flight finish,
 * queued ones go out after them, nothing is retried; done runs when none is left.
 */
static void slk_stop(void *self, sn_done_fn done, void *arg)
{
    slk_t *s = self;
    s->stopping = 1;
    s->stop_done = done;
    s->stop_arg = arg;
    for (slk_delivery_t *d = s->head, *next; d; d = next) {
        next = d->next;
        if (d->timer) {
            s->host->timer_del(d->timer);
            d->timer = NULL;
            slk_send(d);
            next = s->head; /* the list may have changed: rescan (timers are gone) */
        }
    }
    slk_maybe_stopped(s);
}

/** Every delivery still in progress completes now with SN_EIO; requests in flight are left to
 * finish on their own and only free their delivery. */
static void slk_destroy(void *self)
{
    slk_t *s = self;
    if (!s)
        return;
    while (s->head) {
        slk_delivery_t *d = s->head;
        slk_unlink(s, d);
        if (d->timer)
            s->host->timer_del(d->timer);
        if (d->done)
            d->done(d->arg, SN_EIO, NULL);
        if (d->in_flight)
            d->s = NULL;
        else
            slk_free(d);
    }
    while (s->oldest)
        slk_thread_drop_oldest(s);
    free(s->buckets);
    if (s->approvers) {
        OPENSSL_cleanse(s->approvers, s->napprovers * sizeof(*s->approvers));
        free(s->approvers);
    }
    free(s->seen);
    slk_wipe_free(s->token);
    slk_wipe_free(s->webhook_url);
    slk_wipe_free(s->signing_secret);
    free(s);
}

static int slk_health(void *self, sn_health_t *out)
{
    slk_t *s = self;
    out->ok = s->npending < (size_t)s->max_pending;
    snprintf(out->detail, sizeof(out->detail),
             "%lu delivered, %lu failed, %lu dropped, %zu pending, %lu decisions, %lu refused, "
             "%lu bad signatures",
             s->sent, s->failed, s->dropped, s->npending, s->decided, s->refused, s->forged);
    return 0;
}

/* The fields the messages use; the timeline only by its last entry. */
static json_t *slk_slim(const json_t *inc)
{
    static const char *const keys[] = {"id",         "title",     "severity", "priority",
                                       "confidence", "state",     "services", "hypotheses",
                                       "plan",       "approvals", NULL};
    json_t *o = json_object();
    for (size_t i = 0; o && keys[i]; i++) {
        json_t *v = json_object_get(inc, keys[i]);
        if (v)
            json_object_set_new(o, keys[i], json_deep_copy(v));
    }
    const json_t *tl = json_object_get(inc, "timeline");
    size_t n = json_array_size(tl);
    if (o && n)
        json_object_set_new(o, "timeline", json_pack("[O]", json_array_get(tl, n - 1)));
    return o;
}

/**
 * Queue one notification and send it (or queue it behind the incident's earlier ones). done
 * runs once: later with 0 or SN_EIO, or before this returns with SN_ENOMEM (queue full),
 * SN_EAGAIN (stopping) or SN_EINVAL. Result: {"status", "attempts"[, "ts"][, "error"]}.
 * Ownership: @p incident and @p event are borrowed. Thread: loop.
 */
static void slk_notify(void *self, const json_t *incident, const char *event, sn_done_fn done,
                       void *arg)
{
    slk_t *s = self;
    int rc = 0;
    slk_delivery_t *d = NULL;
    const char *id = json_string_value(json_object_get(incident, "id"));
    if (!json_is_object(incident) || !event || !id || !*id || strlen(id) >= SLK_ID_MAX) {
        rc = SN_EINVAL;
        goto out;
    }
    if (s->stopping) {
        rc = SN_EAGAIN;
        goto out;
    }
    if (s->npending >= (size_t)s->max_pending) {
        s->dropped++;
        slk_count(s, "notifier_slack_dropped_total",
                  "Slack notifications refused because max_pending was reached");
        s->host->log(s->host, SN_LOG_WARN,
                     "%zu deliveries pending (max_pending): notification %.32s dropped",
                     s->npending, event);
        rc = SN_ENOMEM;
        goto out;
    }
    d = calloc(1, sizeof(*d));
    if (!d || !(d->inc = slk_slim(incident))) {
        rc = SN_ENOMEM;
        goto out;
    }
    d->s = s;
    d->kind = s->token ? SLK_POST : SLK_WEBHOOK;
    d->done = done;
    d->arg = arg;
    size_t i = 0;
    for (const char *p = event; *p && i + 1 < sizeof(d->event); p++)
        if (isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.')
            d->event[i++] = *p;
    d->event[i] = '\0';
    snprintf(d->incident, sizeof(d->incident), "%s", id);
    d->queued = slk_busy(s, d->incident);
    slk_link(s, d);
    if (!d->queued)
        slk_send(d);
    return;
out:
    if (d)
        slk_free(d);
    done(arg, rc, NULL);
}

static const sn_notifier_ops_t slk_ops = {
    .struct_size = sizeof(sn_notifier_ops_t),
    .notify = slk_notify,
};

static const sn_plugin_t slk_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_NOTIFIER,
    .type = "slack",
    .version = "1.0.0",
    .summary = "Slack Block Kit messages, threaded follow-ups, Approve/Reject buttons",
    .params = slk_params,
    .create = slk_create,
    .start = slk_start,
    .stop = slk_stop,
    .destroy = slk_destroy,
    .health = slk_health,
    .ops = &slk_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &slk_plugin;
}
