/**
 * @file pagerduty.c
 * Notifier `pagerduty`: keeps one PagerDuty alert per incident through the Events API v2
 * (POST /v2/enqueue), using the host's asynchronous HTTP client.
 *
 * Every event of an incident carries the same dedup_key, "sentinel-" + incident id, so PagerDuty
 * applies them to one alert: `trigger` on opened (and again on approval_needed, escalated,
 * rolled_back and any other update: a repeat trigger adds a log entry to the open alert instead
 * of paging again), `acknowledge` on executing (acknowledge_on_execute), `resolve` on the closing
 * events named in resolve_on (default resolved and closed; a closing event not named there
 * re-triggers, so the alert stays with the humans).
 *
 * Trigger body: routing_key, event_action, dedup_key, payload {summary ("[P2] <title>", with the
 * event in front of updates, at most 1024 bytes), source, severity (priority P1..P4 ->
 * critical, error, warning, info; without a priority from the incident severity), timestamp,
 * component (first service), custom_details {incident, event, state, priority, severity,
 * confidence, services, top_hypothesis, plan_summary}}, client, and links to the console
 * (console_url). Acknowledge and resolve carry only routing_key, event_action and dedup_key.
 *
 * Delivery follows PagerDuty's guidance: 2xx succeeds; 429, 5xx and transport errors are retried
 * up to max_retries times after a full-jitter exponential backoff (a 429 waits at least half the
 * backoff ceiling, since retrying a throttle at once is pointless), or after Retry-After seconds
 * when the response carries one; 400 and any other status are final and logged with the message
 * of the error body (done gets SN_EINVAL for those, SN_EIO when retries run out). Events of one
 * incident are sent one at a time and in order (a delayed trigger never lands after its
 * resolve); different incidents proceed in parallel. At most
 * max_per_minute requests leave in any sliding 60 s window (PagerDuty accepts about 120 per
 * integration key), and at most max_pending events are queued; beyond that notify fails with
 * SN_ENOMEM at once. Once a resolve was accepted, a late trigger or acknowledge for that alert (a
 * re-delivery from the core's outbox) is skipped rather than reopening it.
 *
 * The routing key travels only in request bodies: it is never logged, never put into an error,
 * scrubbed from error messages echoed by the receiver; each request body is wiped before it is
 * freed.
 */
#include "retry.h"
#include <sentinel/plugin.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define PD_DEFAULT_URL "https://events.pagerduty.com/v2/enqueue"
#define PD_RESPONSE_MAX 65536 /* response body bytes read */
#define PD_SUMMARY_MAX 1024   /* payload.summary limit of the Events API */
#define PD_DEDUP_PREFIX "sentinel-"
#define PD_DEDUP_MAX 255 /* dedup_key limit of the Events API */
#define PD_WINDOW_MS 60000
#define PD_ERROR_MAX 256
#define PD_RESOLVED_KEPT 4096 /* dedup keys remembered as resolved */

typedef struct pd pd_t;
typedef struct pd_stream pd_stream_t;

typedef enum { PD_TRIGGER, PD_ACKNOWLEDGE, PD_RESOLVE, PD_SKIP } pd_action_t;

static const char *const pd_action_names[] = {"trigger", "acknowledge", "resolve", "skip"};

/* One queued event. */
typedef struct pd_event {
    struct pd_event *next; /* FIFO of its stream */
    pd_t *p;               /* NULL once the instance was destroyed while a request was in flight */
    pd_stream_t *s;
    char *body; /* holds the routing key: wiped before it is freed */
    size_t len;
    pd_action_t action;
    char event[32]; /* sanitised, for log lines */
    int attempts;
    int in_flight;
    sn_timer_t *timer; /* waiting for a retry or for room in the rate window */
    long last_status;
    char last_error[PD_ERROR_MAX];
    sn_done_fn done;
    void *arg;
} pd_event_t;

/* The events of one incident (one dedup_key), sent in order, head first. */
struct pd_stream {
    pd_stream_t *next, *prev;
    pd_event_t *head, *tail;
    char dedup[PD_DEDUP_MAX + 1];
};

struct pd {
    const sn_host_t *host;
    const char *key; /* host-owned secret */
    const char *url, *console_url, *source;
    int ack_on_execute;
    int resolve_resolved, resolve_closed, resolve_rejected;
    int64_t retry_base_ms, retry_max_ms, timeout_ms, max_retries, max_pending, per_minute;
    int64_t *window; /* send times (monotonic ms), a ring of per_minute entries */
    size_t wn, widx;
    uint64_t rng;
    pd_stream_t *streams;
    uint64_t resolved[PD_RESOLVED_KEPT]; /* hashes of dedup keys whose resolve was accepted */
    size_t nresolved, ridx;
    size_t npending;
    unsigned long sent, failed, dropped;
    int stopping;
    sn_done_fn stop_done;
    void *stop_arg;
};

static const sn_param_t pd_params[] = {
    {"routing_key", SN_T_STRING, NULL, SN_PARAM_REQUIRED | SN_PARAM_SECRET,
     "integration key of an Events API v2 integration (use ${env:NAME} or ${file:/path})"},
    {"api_url", SN_T_STRING, PD_DEFAULT_URL, 0,
     "Events API v2 enqueue URL (tests point it at a test double)"},
    {"console_url", SN_T_STRING, NULL, 0,
     "console link on the alert: {id} is replaced by the incident id, else /incidents/<id> is "
     "appended"},
    {"source", SN_T_STRING, NULL, 0, "payload.source; default: the incident's first service"},
    {"acknowledge_on_execute", SN_T_BOOL, "true", 0,
     "acknowledge the alert when the remediation starts executing"},
    {"resolve_on", SN_T_LIST, "resolved,closed", 0,
     "closing events that resolve the alert: any of resolved, closed, rejected"},
    {"max_per_minute", SN_T_INT, "100", 0, "requests in any 60 s window (PagerDuty: ~120/key)"},
    {"retry_base", SN_T_DURATION, "1s", 0, "first backoff ceiling; doubles on every retry"},
    {"retry_max", SN_T_DURATION, "60s", 0,
     "longest wait between two attempts, also the cap on a Retry-After"},
    {"max_retries", SN_T_INT, "8", 0, "retries after the first attempt before giving up"},
    {"max_pending", SN_T_INT, "1000", 0, "events queued or in flight; more are refused"},
    {"timeout", SN_T_DURATION, "10s", 0, "deadline of one request"},
    {NULL, 0, NULL, 0, NULL},
};

/* ---- helpers ----------------------------------------------------------------------------- */

static void pd_wipe(void *buf, size_t n)
{
    volatile unsigned char *v = buf;
    while (n--)
        *v++ = 0;
}

static void pd_count(pd_t *p, const char *name, const char *help)
{
    p->host->metric(p->host, SN_METRIC_COUNTER, name, help, 1);
}

static void pd_gauge(pd_t *p)
{
    p->host->metric(p->host, SN_METRIC_GAUGE, "notifier_pagerduty_pending",
                    "PagerDuty events queued or in flight", (double)p->npending);
}

/* Full jitter in [lo, ceil] with lo = 0, or ceil / 2 for a throttle. */
static int64_t pd_backoff(pd_t *p, int attempts, int throttled)
{
    int64_t ceil = snr_ceiling(p->retry_base_ms, p->retry_max_ms, attempts);
    return snr_jitter(&p->rng, throttled ? ceil / 2 : 0, ceil);
}

/* Milliseconds until the sliding window has room for one more request (0: now). */
static int64_t pd_rate_delay(pd_t *p)
{
    if (p->wn < (size_t)p->per_minute)
        return 0;
    int64_t age = p->host->mono_ms(p->host) - p->window[p->widx]; /* the oldest entry */
    return age >= PD_WINDOW_MS ? 0 : PD_WINDOW_MS - age;
}

static void pd_rate_take(pd_t *p)
{
    p->window[p->widx] = p->host->mono_ms(p->host);
    p->widx = (p->widx + 1) % (size_t)p->per_minute;
    if (p->wn < (size_t)p->per_minute)
        p->wn++;
}

/* FNV-1a: identifies a dedup key in the resolved ring (collisions are harmless: at worst a stale
 * update of another incident is not sent). */
static uint64_t pd_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static int pd_was_resolved(const pd_t *p, uint64_t h)
{
    for (size_t i = 0; i < p->nresolved; i++)
        if (p->resolved[i] == h)
            return 1;
    return 0;
}

static void pd_mark_resolved(pd_t *p, uint64_t h)
{
    if (pd_was_resolved(p, h))
        return;
    p->resolved[p->ridx] = h;
    p->ridx = (p->ridx + 1) % PD_RESOLVED_KEPT;
    if (p->nresolved < PD_RESOLVED_KEPT)
        p->nresolved++;
}

/* Copy @p in into @p out without control characters and without the routing key. */
static void pd_clean(const pd_t *p, const char *in, char *out, size_t cap)
{
    size_t o = 0, klen = p->key ? strlen(p->key) : 0;
    while (*in && o + 1 < cap) {
        if (klen && strncmp(in, p->key, klen) == 0) {
            for (const char *r = "[routing key]"; *r && o + 1 < cap; r++)
                out[o++] = *r;
            in += klen;
            continue;
        }
        unsigned char c = (unsigned char)*in++;
        out[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    out[o] = '\0';
}

/* The receiver's explanation: "message: error; error" of an Events API error body, or the start
 * of a body that is not one. */
static void pd_error_text(const pd_t *p, const sn_http_response_t *resp, char *out, size_t cap)
{
    char raw[PD_ERROR_MAX * 2] = "";
    json_t *doc = resp->body ? json_loads(resp->body, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(doc, "message"));
    if (msg) {
        size_t n = (size_t)snprintf(raw, sizeof(raw), "%s", msg);
        const char *sep = ": ";
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(doc, "errors"), i, e)
        {
            if (!json_is_string(e) || n >= sizeof(raw))
                continue;
            n += (size_t)snprintf(raw + n, sizeof(raw) - n, "%s%s", sep, json_string_value(e));
            sep = "; ";
        }
    } else if (resp->body) {
        snprintf(raw, sizeof(raw), "%.120s", resp->body);
    }
    json_decref(doc);
    char clean[PD_ERROR_MAX];
    pd_clean(p, raw, clean, sizeof(clean));
    if (clean[0])
        snprintf(out, cap, "HTTP %ld: %.200s", resp->status, clean);
    else
        snprintf(out, cap, "HTTP %ld", resp->status);
}

/* ---- event bodies ------------------------------------------------------------------------ */

static void pd_rfc3339(int64_t ms, char *out, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", base, (int)(ms % 1000));
}

/** The Events API severity: from the priority (P1 critical, P2 error, P3 warning, P4 info), else
 * from the incident severity (critical, high -> error, medium -> warning, low -> info; the four
 * Events API words pass through), else error. */
static const char *pd_severity(const json_t *incident)
{
    static const char *const by_prio[] = {"critical", "error", "warning", "info"};
    const char *prio = json_string_value(json_object_get(incident, "priority"));
    if (prio && (prio[0] == 'P' || prio[0] == 'p') && prio[1] >= '1' && prio[1] <= '4' && !prio[2])
        return by_prio[prio[1] - '1'];
    const char *sev = json_string_value(json_object_get(incident, "severity"));
    static const char *const map[][2] = {
        {"critical", "critical"}, {"high", "error"}, {"error", "error"}, {"medium", "warning"},
        {"warning", "warning"},   {"low", "info"},   {"info", "info"},
    };
    for (size_t i = 0; sev && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcasecmp(sev, map[i][0]) == 0)
            return map[i][1];
    return "error";
}

/* The hypothesis with the highest confidence, or NULL. */
static const json_t *pd_top(const json_t *incident)
{
    const json_t *best = NULL;
    double best_c = -1;
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(incident, "hypotheses"), i, h)
    {
        double c = json_number_value(json_object_get(h, "confidence"));
        if (json_is_object(h) && c > best_c) {
            best = h;
            best_c = c;
        }
    }
    return best;
}

static const char *pd_str(const json_t *o, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : def;
}

/* One line per plan step: "mock:scale_deployment deployment/shop/payments (risk medium,
 * downtime 0s)". */
static json_t *pd_plan_summary(const json_t *incident)
{
    json_t *out = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(incident, "plan"), i, a)
    {
        char line[512];
        snprintf(line, sizeof(line), "%s:%s %s (risk %s, downtime %llds)",
                 pd_str(a, "executor", "?"), pd_str(a, "verb", "?"), pd_str(a, "target", "?"),
                 pd_str(a, "risk", "?"),
                 (long long)json_number_value(json_object_get(a, "downtime_s")));
        json_array_append_new(out, json_string(line));
    }
    return out;
}

/* Truncate @p s to at most @p max bytes without cutting a UTF-8 sequence. */
static void pd_truncate_utf8(char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    s[n] = '\0';
}

/* What an update says in front of the title. */
static const char *pd_prefix(const char *event)
{
    static const char *const map[][2] = {
        {"approval_needed", "Approval needed: "},
        {"escalated", "Escalated to humans: "},
        {"rolled_back", "Rolled back: "},
        {"rejected", "Plan rejected: "},
        {"closed", "Closed: "},
        {"resolved", "Resolved: "},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(event, map[i][0]) == 0)
            return map[i][1];
    return "";
}

/* The link to the console for @p id: {id} substituted, or /incidents/<id> appended. */
static char *pd_console_link(const pd_t *p, const char *id)
{
    const char *u = p->console_url, *at = strstr(u, "{id}");
    char *out = NULL;
    int n;
    if (at) {
        n = asprintf(&out, "%.*s%s%s", (int)(at - u), u, id, at + 4);
    } else {
        size_t len = strlen(u);
        while (len > 0 && u[len - 1] == '/')
            len--;
        n = asprintf(&out, "%.*s/incidents/%s", (int)len, u, id);
    }
    return n < 0 ? NULL : out;
}

static json_t *pd_trigger_payload(const pd_t *p, const json_t *incident, const char *id,
                                  const char *event)
{
    char summary[PD_SUMMARY_MAX + 64], ts[40];
    const char *prio = json_string_value(json_object_get(incident, "priority"));
    const char *title = pd_str(incident, "title", "incident");
    if (prio)
        snprintf(summary, sizeof(summary), "[%.8s] %s%s", prio, pd_prefix(event), title);
    else
        snprintf(summary, sizeof(summary), "%s%s", pd_prefix(event), title);
    pd_truncate_utf8(summary, PD_SUMMARY_MAX);
    pd_rfc3339(p->host->now_ms(p->host), ts, sizeof(ts));
    const json_t *services = json_object_get(incident, "services");
    const char *first = json_string_value(json_array_get(services, 0));
    const char *source = p->source ? p->source : first ? first : "sentinel";

    const json_t *top = pd_top(incident);
    json_t *top_h = json_null();
    if (top)
        top_h = json_pack("{s:s?,s:s?,s:O?}", "service",
                          json_string_value(json_object_get(top, "service")), "cause",
                          json_string_value(json_object_get(top, "cause")), "confidence",
                          json_object_get(top, "confidence"));
    json_t *details = json_pack(
        "{s:s,s:s,s:s?,s:s?,s:s?,s:O?,s:o,s:o,s:o}", "incident", id, "event", event, "state",
        json_string_value(json_object_get(incident, "state")), "priority", prio, "severity",
        json_string_value(json_object_get(incident, "severity")), "confidence",
        json_object_get(incident, "confidence"), "services",
        json_is_array(services) ? json_deep_copy(services) : json_array(), "top_hypothesis",
        top_h ? top_h : json_null(), "plan_summary", pd_plan_summary(incident));
    if (!details)
        return NULL;
    json_t *payload =
        json_pack("{s:s,s:s,s:s,s:s,s:o}", "summary", summary, "source", source, "severity",
                  pd_severity(incident), "timestamp", ts, "custom_details", details);
    if (payload && first)
        json_object_set_new(payload, "component", json_string(first));
    return payload;
}

/* Ownership: caller frees (and wipes: the body carries the routing key). */
static char *pd_body(const pd_t *p, const json_t *incident, const char *id, const char *dedup,
                     const char *event, pd_action_t action)
{
    json_t *doc = json_pack("{s:s,s:s,s:s}", "routing_key", p->key, "event_action",
                            pd_action_names[action], "dedup_key", dedup);
    if (!doc)
        return NULL;
    if (action == PD_TRIGGER) {
        json_t *payload = pd_trigger_payload(p, incident, id, event);
        if (!payload) {
            json_decref(doc);
            return NULL;
        }
        json_object_set_new(doc, "payload", payload);
        json_object_set_new(doc, "client", json_string("Sentinel"));
        if (p->console_url) {
            char *link = pd_console_link(p, id);
            if (link) {
                json_object_set_new(doc, "links",
                                    json_pack("[{s:s,s:s}]", "href", link, "text",
                                              "Incident in the Sentinel console"));
                free(link);
            }
            if (!strstr(p->console_url, "{id}"))
                json_object_set_new(doc, "client_url", json_string(p->console_url));
        }
    }
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return s;
}

/* What @p event becomes on the alert. */
static pd_action_t pd_action_for(const pd_t *p, const char *event)
{
    if (strcmp(event, "executing") == 0)
        return p->ack_on_execute ? PD_ACKNOWLEDGE : PD_SKIP;
    if (strcmp(event, "resolved") == 0)
        return p->resolve_resolved ? PD_RESOLVE : PD_TRIGGER;
    if (strcmp(event, "closed") == 0)
        return p->resolve_closed ? PD_RESOLVE : PD_TRIGGER;
    if (strcmp(event, "rejected") == 0)
        return p->resolve_rejected ? PD_RESOLVE : PD_TRIGGER;
    /* opened, approval_needed, escalated, rolled_back and, as a pipeline node, state names. */
    return PD_TRIGGER;
}

/* ---- delivery ---------------------------------------------------------------------------- */

static void pd_kick(pd_stream_t *s, pd_t *p);
static void pd_maybe_stopped(pd_t *p);

static void pd_event_free(pd_event_t *ev)
{
    if (ev->body) {
        pd_wipe(ev->body, ev->len);
        free(ev->body);
    }
    free(ev);
}

static pd_stream_t *pd_stream_find(pd_t *p, const char *dedup)
{
    for (pd_stream_t *s = p->streams; s; s = s->next)
        if (strcmp(s->dedup, dedup) == 0)
            return s;
    return NULL;
}

static void pd_stream_unlink(pd_t *p, pd_stream_t *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        p->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

/* Complete the head of its stream with @p rc, free it, then start the next one. Thread: loop. */
static void pd_finish(pd_event_t *ev, int rc)
{
    pd_t *p = ev->p;
    pd_stream_t *s = ev->s;
    s->head = ev->next;
    p->npending--;
    pd_gauge(p);
    json_t *res = json_pack("{s:s,s:s,s:i,s:i}", "action", pd_action_names[ev->action], "dedup_key",
                            s->dedup, "status", (int)ev->last_status, "attempts", ev->attempts);
    if (rc == 0) {
        p->sent++;
        pd_count(p, "notifier_pagerduty_sent_total", "PagerDuty events accepted");
        if (ev->action == PD_RESOLVE)
            pd_mark_resolved(p, pd_hash(s->dedup));
    } else {
        p->failed++;
        pd_count(p, "notifier_pagerduty_failed_total", "PagerDuty events given up on");
        if (res)
            json_object_set_new(res, "error", json_string(ev->last_error));
        p->host->log(p->host, SN_LOG_WARN,
                     "PagerDuty %s for %s (%s) not accepted after %d attempt%s: %s",
                     pd_action_names[ev->action], s->dedup, ev->event, ev->attempts,
                     ev->attempts == 1 ? "" : "s", ev->last_error);
    }
    if (!s->head) {
        s->tail = NULL;
        pd_stream_unlink(p, s);
        s = NULL;
    }
    /* done may queue the incident's next event: into s, or into a new stream when s is gone. */
    ev->done(ev->arg, rc, res);
    json_decref(res);
    pd_event_free(ev);
    if (s)
        pd_kick(s, p);
    pd_maybe_stopped(p);
}

static void pd_timer_cb(void *arg)
{
    pd_event_t *ev = arg;
    ev->timer = NULL;
    pd_kick(ev->s, ev->p);
}

static void pd_schedule(pd_event_t *ev, int64_t delay)
{
    pd_t *p = ev->p;
    ev->timer = p->host->timer_add(p->host, delay, 0, pd_timer_cb, ev);
    if (!ev->timer) {
        snprintf(ev->last_error, sizeof(ev->last_error), "cannot schedule a timer");
        pd_finish(ev, SN_EIO);
    }
}

/* Thread: loop. */
static void pd_http_done(void *arg, const sn_http_response_t *resp)
{
    pd_event_t *ev = arg;
    ev->in_flight = 0;
    if (!ev->p) {
        pd_event_free(ev);
        return;
    }
    pd_t *p = ev->p;
    long st = resp ? resp->status : 0;
    ev->last_status = st;
    if (st >= 200 && st < 300) {
        pd_finish(ev, 0);
        return;
    }
    if (st == 0)
        pd_clean(p, resp && resp->error ? resp->error : "no response", ev->last_error,
                 sizeof(ev->last_error));
    else
        pd_error_text(p, resp, ev->last_error, sizeof(ev->last_error));
    if (st == 429)
        pd_count(p, "notifier_pagerduty_throttled_total", "PagerDuty answers 429");
    int retryable = st == 0 || st == 429 || st >= 500;
    if (!retryable) {
        /* The event itself is wrong (or the key): sending it again cannot help. */
        pd_finish(ev, SN_EINVAL);
        return;
    }
    if (ev->attempts > p->max_retries || p->stopping) {
        pd_finish(ev, SN_EIO);
        return;
    }
    int64_t delay = 0;
    if (!snr_retry_after(resp, &delay))
        delay = pd_backoff(p, ev->attempts, st == 429);
    if (delay > p->retry_max_ms)
        delay = p->retry_max_ms;
    pd_count(p, "notifier_pagerduty_retries_total", "PagerDuty attempts retried");
    p->host->log(p->host, SN_LOG_INFO, "PagerDuty %s for %s (%s): %s, retry %d in %lld ms",
                 pd_action_names[ev->action], ev->s->dedup, ev->event, ev->last_error, ev->attempts,
                 (long long)delay);
    pd_schedule(ev, delay);
}

/* Send the head of @p s unless it is in flight or waiting; wait for room in the rate window
 * first (not while stopping). Thread: loop. */
static void pd_kick(pd_stream_t *s, pd_t *p)
{
    pd_event_t *ev = s->head;
    if (!ev || ev->in_flight || ev->timer)
        return;
    if (!p->stopping) {
        int64_t wait = pd_rate_delay(p);
        if (wait > 0) {
            pd_schedule(ev, wait);
            return;
        }
    }
    pd_rate_take(p);
    const char *headers[] = {"Content-Type: application/json", "User-Agent: sentinel-pagerduty/1.0",
                             NULL};
    sn_http_request_t req = {
        .struct_size = sizeof(req),
        .method = "POST",
        .url = p->url,
        .headers = headers,
        .body = ev->body,
        .body_len = ev->len,
        .timeout_ms = (long)p->timeout_ms,
        .max_response = PD_RESPONSE_MAX,
    };
    ev->attempts++;
    ev->in_flight = 1;
    if (p->host->http(p->host, &req, pd_http_done, ev) != 0) {
        /* Refused synchronously: handled like a transport error (retry or give up). */
        sn_http_response_t none = {.status = 0, .error = "request refused by the HTTP client"};
        pd_http_done(ev, &none);
    }
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static int pd_url_ok(const char *u)
{
    return u && (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0);
}

static int pd_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    pd_t *p = calloc(1, sizeof(*p));
    int rc = SN_EINVAL;
    if (!p) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    p->host = host;
    p->key = host->cfg_str(cfg, "routing_key");
    p->url = host->cfg_str(cfg, "api_url");
    p->console_url = host->cfg_str(cfg, "console_url");
    if (p->console_url && !p->console_url[0])
        p->console_url = NULL;
    p->source = host->cfg_str(cfg, "source");
    if (p->source && !p->source[0])
        p->source = NULL;
    p->ack_on_execute = host->cfg_bool(cfg, "acknowledge_on_execute");
    p->per_minute = host->cfg_int(cfg, "max_per_minute");
    p->retry_base_ms = host->cfg_int(cfg, "retry_base");
    p->retry_max_ms = host->cfg_int(cfg, "retry_max");
    p->max_retries = host->cfg_int(cfg, "max_retries");
    p->max_pending = host->cfg_int(cfg, "max_pending");
    p->timeout_ms = host->cfg_int(cfg, "timeout");
    p->rng = (uint64_t)host->now_ms(host) ^ ((uint64_t)host->mono_ms(host) << 21) ^
             (uint64_t)(uintptr_t)p;
    if (!p->rng)
        p->rng = 0x9e3779b97f4a7c15ULL;
    /* Neither the key nor its length is echoed. */
    if (!p->key || !p->key[0]) {
        snprintf(err->msg, sizeof(err->msg), "routing_key is empty");
        goto out;
    }
    for (const char *c = p->key; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            snprintf(err->msg, sizeof(err->msg), "routing_key contains a control character");
            goto out;
        }
    if (!pd_url_ok(p->url)) {
        snprintf(err->msg, sizeof(err->msg), "api_url must start with http:// or https://");
        goto out;
    }
    if (p->console_url && !pd_url_ok(p->console_url)) {
        snprintf(err->msg, sizeof(err->msg), "console_url must start with http:// or https://");
        goto out;
    }
    for (const char *const *e = host->cfg_list(cfg, "resolve_on"); e && *e; e++) {
        if (strcmp(*e, "resolved") == 0)
            p->resolve_resolved = 1;
        else if (strcmp(*e, "closed") == 0)
            p->resolve_closed = 1;
        else if (strcmp(*e, "rejected") == 0)
            p->resolve_rejected = 1;
        else {
            snprintf(err->msg, sizeof(err->msg),
                     "resolve_on: '%.32s' is not one of resolved, closed, rejected", *e);
            goto out;
        }
    }
    if (p->per_minute < 1 || p->per_minute > 100000) {
        snprintf(err->msg, sizeof(err->msg), "max_per_minute must be between 1 and 100000");
        goto out;
    }
    if (p->retry_base_ms < 1 || p->retry_max_ms < p->retry_base_ms) {
        snprintf(err->msg, sizeof(err->msg),
                 "retry_base must be at least 1ms and retry_max at least retry_base");
        goto out;
    }
    if (p->max_retries < 0 || p->max_retries > 100) {
        snprintf(err->msg, sizeof(err->msg), "max_retries must be between 0 and 100");
        goto out;
    }
    if (p->max_pending < 1 || p->max_pending > 1000000) {
        snprintf(err->msg, sizeof(err->msg), "max_pending must be between 1 and 1000000");
        goto out;
    }
    if (p->timeout_ms < 1) {
        snprintf(err->msg, sizeof(err->msg), "timeout must be positive");
        goto out;
    }
    p->window = calloc((size_t)p->per_minute, sizeof(*p->window));
    if (!p->window) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        rc = SN_ENOMEM;
        goto out;
    }
    if (strlen(p->key) != 32)
        host->log(host, SN_LOG_WARN,
                  "routing_key is not 32 characters long: PagerDuty will refuse the events");
    rc = 0;
    *self = p;
out:
    if (rc != 0)
        free(p);
    return rc;
}

static void pd_maybe_stopped(pd_t *p)
{
    if (!p->stopping || !p->stop_done || p->npending)
        return;
    sn_done_fn done = p->stop_done;
    p->stop_done = NULL;
    done(p->stop_arg, 0, NULL);
}

/**
 * Drain: events waiting for a retry or for the rate window are sent now, queued events follow in
 * order without waiting, nothing is retried any more; done runs when none is left (possibly
 * before this returns).
 */
static void pd_stop(void *self, sn_done_fn done, void *arg)
{
    pd_t *p = self;
    p->stopping = 1;
    p->stop_done = done;
    p->stop_arg = arg;
    for (pd_stream_t *s = p->streams, *next; s; s = next) {
        next = s->next;
        if (s->head && s->head->timer) {
            p->host->timer_del(s->head->timer);
            s->head->timer = NULL;
            pd_kick(s, p);
        }
    }
    pd_maybe_stopped(p);
}

/** Every queued event completes now with SN_EIO; requests in flight are left to finish on their
 * own and only free their event. */
static void pd_destroy(void *self)
{
    pd_t *p = self;
    while (p->streams) {
        pd_stream_t *s = p->streams;
        p->streams = s->next;
        while (s->head) {
            pd_event_t *ev = s->head;
            s->head = ev->next;
            if (ev->timer)
                p->host->timer_del(ev->timer);
            ev->done(ev->arg, SN_EIO, NULL);
            if (ev->in_flight) {
                ev->p = NULL;
                ev->s = NULL;
            } else {
                pd_event_free(ev);
            }
        }
        free(s);
    }
    free(p->window);
    free(p);
}

static int pd_health(void *self, sn_health_t *out)
{
    pd_t *p = self;
    out->ok = p->npending < (size_t)p->max_pending;
    snprintf(out->detail, sizeof(out->detail), "%lu accepted, %lu failed, %lu dropped, %zu pending",
             p->sent, p->failed, p->dropped, p->npending);
    return 0;
}

/**
 * Queue the alert event for @p event and send it when the incident's earlier events are through.
 * done runs once: later with 0 (accepted), SN_EINVAL (refused with 400 or another final status:
 * the same event can never succeed, so a caller must not retry it) or SN_EIO (retries exhausted;
 * worth trying again later); or before this returns with 0 (nothing to send: result {"action":
 * "skip", "reason"}), SN_ENOMEM (queue full), SN_EAGAIN (stopping) or SN_EINVAL (no incident
 * id). Result: {"action", "dedup_key", "status": last HTTP status, "attempts"[, "error"]}.
 * Ownership: @p incident and @p event are borrowed (the body is built before this returns).
 * Thread: loop.
 */
static void pd_notify(void *self, const json_t *incident, const char *event, sn_done_fn done,
                      void *arg)
{
    pd_t *p = self;
    int rc = 0;
    pd_event_t *ev = NULL;
    pd_stream_t *s = NULL;
    json_t *skipped = NULL;
    const char *id = json_string_value(json_object_get(incident, "id"));
    char dedup[PD_DEDUP_MAX + 1];
    if (!json_is_object(incident) || !event || !id || !id[0] ||
        strlen(id) + strlen(PD_DEDUP_PREFIX) > PD_DEDUP_MAX) {
        rc = SN_EINVAL;
        goto out;
    }
    snprintf(dedup, sizeof(dedup), "%s%s", PD_DEDUP_PREFIX, id);
    pd_action_t action = pd_action_for(p, event);
    if (action == PD_SKIP) {
        skipped = json_pack("{s:s,s:s}", "action", "skip", "reason", "not sent for this event");
        goto out;
    }
    if (action != PD_RESOLVE && pd_was_resolved(p, pd_hash(dedup))) {
        /* A late delivery (a retry from the core's outbox) must not reopen a resolved alert. */
        p->host->log(p->host, SN_LOG_INFO, "%s for %s (%s) not sent: the alert was resolved",
                     pd_action_names[action], dedup, event);
        skipped = json_pack("{s:s,s:s}", "action", "skip", "reason", "alert already resolved");
        goto out;
    }
    if (p->stopping) {
        rc = SN_EAGAIN;
        goto out;
    }
    if (p->npending >= (size_t)p->max_pending) {
        p->dropped++;
        pd_count(p, "notifier_pagerduty_dropped_total",
                 "PagerDuty events refused because max_pending was reached");
        p->host->log(p->host, SN_LOG_WARN, "%zu events pending (max_pending): %s for %s dropped",
                     p->npending, pd_action_names[action], dedup);
        rc = SN_ENOMEM;
        goto out;
    }
    ev = calloc(1, sizeof(*ev));
    if (!ev || !(ev->body = pd_body(p, incident, id, dedup, event, action))) {
        rc = SN_ENOMEM;
        goto out;
    }
    ev->len = strlen(ev->body);
    ev->p = p;
    ev->action = action;
    ev->done = done;
    ev->arg = arg;
    size_t i = 0;
    for (const char *c = event; *c && i + 1 < sizeof(ev->event); c++)
        if (isalnum((unsigned char)*c) || *c == '_' || *c == '-')
            ev->event[i++] = *c;
    ev->event[i] = '\0';
    s = pd_stream_find(p, dedup);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s) {
            rc = SN_ENOMEM;
            goto out;
        }
        snprintf(s->dedup, sizeof(s->dedup), "%s", dedup);
        s->next = p->streams;
        if (p->streams)
            p->streams->prev = s;
        p->streams = s;
    }
    ev->s = s;
    if (s->tail)
        s->tail->next = ev;
    else
        s->head = ev;
    s->tail = ev;
    p->npending++;
    pd_gauge(p);
    pd_kick(s, p);
    return;
out:
    if (ev)
        pd_event_free(ev);
    done(arg, rc, skipped);
    json_decref(skipped);
}

static const sn_notifier_ops_t pd_ops = {
    .struct_size = sizeof(sn_notifier_ops_t),
    .notify = pd_notify,
};

static const sn_plugin_t pd_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_NOTIFIER,
    .type = "pagerduty",
    .version = "1.0.0",
    .summary = "one PagerDuty alert per incident (Events API v2: trigger, acknowledge, resolve)",
    .params = pd_params,
    .create = pd_create,
    .stop = pd_stop,
    .destroy = pd_destroy,
    .health = pd_health,
    .ops = &pd_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &pd_plugin;
}
