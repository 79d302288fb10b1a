/**
 * @file webhook.c
 * Notifier `webhook`: POSTs each notification as JSON to a URL through the host's asynchronous
 * HTTP client, signed when a secret is configured, retried with backoff when the receiver is
 * unreachable or busy.
 *
 * Body: {"event", "incident": {"id","state","severity","title","services","hypotheses" (the top
 * three by confidence),"plan"}, "sent_at" (RFC 3339, when the notification was queued)}, or,
 * with `template`, that JSON text with its "{{path}}" placeholders filled in: a string that is
 * exactly one placeholder becomes the JSON value at the path (arrays, objects and numbers keep
 * their type; an absent value is null), a placeholder inside a longer string is replaced by the
 * value as text. Paths are event, sent_at, incident and the incident's known fields (see
 * wh_path_known); an unknown path is refused at create. The body is built as a JSON tree, never
 * by pasting text, so a value with quotes cannot break out of its string.
 *
 * Headers: Content-Type: application/json, X-Sentinel-Event, X-Sentinel-Timestamp (unix seconds
 * of this attempt) and, with `secret`, X-Sentinel-Signature: v1=<hex HMAC-SHA256(secret,
 * timestamp + "." + body)>. A receiver recomputes the HMAC over the raw body and rejects stale
 * timestamps, which defeats replays. Extra `header` lines are added as given.
 *
 * Delivery: 2xx succeeds; a transport error, 429 or 5xx is retried up to `max_retries` times
 * after a full-jitter exponential backoff (uniform in [0, min(retry_max, retry_base * 2^n)]), or
 * after the Retry-After seconds of a 429; any other status is final. At most `max_pending`
 * deliveries are in progress; beyond that notify fails with SN_ENOMEM at once.
 *
 * Neither the secret, nor the signature, nor the URL (chat webhooks carry tokens in the path)
 * is ever logged or put into an error.
 */
#include "retry.h"
#include "strbuf.h"
#include <sentinel/plugin.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define WH_HEADERS_MAX 32     /* extra `header` lines */
#define WH_RESPONSE_MAX 65536 /* response body bytes read (only the status matters) */
#define WH_HYPOTHESES 3       /* hypotheses carried in the body */
#define WH_FIXED_HEADERS 6    /* content type, user agent, event, timestamp, signature, NULL */
#define WH_PATH_MAX 128       /* placeholder path length */

typedef struct wh wh_t;

/* One notification being delivered. */
typedef struct wh_delivery {
    struct wh_delivery *next, *prev;
    wh_t *w; /* NULL once the instance was destroyed while a request was in flight */
    char *body;
    size_t len;
    char event[64];    /* sanitised: it goes into a header */
    char incident[80]; /* for log lines */
    int attempts;      /* requests sent so far */
    int in_flight;     /* a request is out; its completion frees an orphan */
    sn_timer_t *timer; /* waiting to retry */
    long last_status;  /* 0 = transport error */
    char last_error[128];
    sn_done_fn done;
    void *arg;
} wh_delivery_t;

struct wh {
    const sn_host_t *host;
    const char *url;    /* host-owned */
    const char *secret; /* host-owned, may be NULL */
    const char *const *extra;
    json_t *tmpl; /* parsed `template`, or NULL for the default body */
    int64_t retry_base_ms, retry_max_ms, timeout_ms, max_retries, max_pending;
    uint64_t rng;
    wh_delivery_t *list;
    size_t npending;
    unsigned long sent, failed, dropped;
    int stopping;
    sn_done_fn stop_done;
    void *stop_arg;
};

static const sn_param_t wh_params[] = {
    {"url", SN_T_STRING, NULL, SN_PARAM_REQUIRED, "http:// or https:// URL the JSON is POSTed to"},
    {"secret", SN_T_STRING, NULL, SN_PARAM_SECRET,
     "HMAC-SHA256 key for X-Sentinel-Signature (use ${env:NAME} or ${file:/path})"},
    {"header", SN_T_STRING, NULL, SN_PARAM_MULTI,
     "repeatable: an extra request header, 'Name: value'"},
    {"template", SN_T_STRING, NULL, 0,
     "JSON body with {{path}} placeholders (event, sent_at, incident.id, incident.services, ...); "
     "long ones via ${file:/path}"},
    {"retry_base", SN_T_DURATION, "1s", 0, "first backoff ceiling; doubles on every retry"},
    {"retry_max", SN_T_DURATION, "60s", 0,
     "longest wait between two attempts, also the cap on a Retry-After"},
    {"max_retries", SN_T_INT, "5", 0, "retries after the first attempt before giving up"},
    {"max_pending", SN_T_INT, "1000", 0, "deliveries in progress; more are refused"},
    {"timeout", SN_T_DURATION, "10s", 0, "deadline of one request"},
    {NULL, 0, NULL, 0, NULL},
};

/* ---- helpers ----------------------------------------------------------------------------- */

static void wh_count(wh_t *w, const char *name, const char *help)
{
    w->host->metric(w->host, SN_METRIC_COUNTER, name, help, 1);
}

static void wh_gauge(wh_t *w)
{
    w->host->metric(w->host, SN_METRIC_GAUGE, "notifier_webhook_pending",
                    "Webhook deliveries in progress", (double)w->npending);
}

/* A header line must be "Name: value", the name an HTTP token, no CR or LF anywhere. */
static const char *wh_header_problem(const char *h)
{
    const char *colon = strchr(h, ':');
    if (!colon || colon == h)
        return "must be 'Name: value'";
    for (const char *p = h; p < colon; p++)
        if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
            return "has an invalid header name";
    if (strpbrk(h, "\r\n"))
        return "contains a line break";
    size_t n = (size_t)(colon - h);
    if ((n >= 11 && strncasecmp(h, "X-Sentinel-", 11) == 0) ||
        (n == 14 && strncasecmp(h, "Content-Length", 14) == 0))
        return "may not override a header the notifier sets";
    return NULL;
}

/* ---- body -------------------------------------------------------------------------------- */

static double wh_conf(const json_t *h)
{
    return json_number_value(json_object_get(h, "confidence"));
}

/* The top three hypotheses by confidence, keeping the given order among equals. */
static json_t *wh_top_hypotheses(const json_t *hyps)
{
    json_t *out = json_array();
    size_t n = json_array_size(hyps);
    const json_t *top[WH_HYPOTHESES];
    size_t k = 0;
    for (size_t i = 0; out && i < n; i++) {
        const json_t *h = json_array_get(hyps, i);
        size_t pos = k;
        while (pos > 0 && wh_conf(top[pos - 1]) < wh_conf(h))
            pos--;
        if (pos >= WH_HYPOTHESES)
            continue;
        if (k < WH_HYPOTHESES)
            k++;
        memmove(&top[pos + 1], &top[pos], (k - 1 - pos) * sizeof(top[0]));
        top[pos] = h;
    }
    for (size_t i = 0; out && i < k; i++)
        json_array_append_new(out, json_deep_copy(top[i]));
    return out;
}

static void wh_rfc3339(int64_t ms, char *out, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", base, (int)(ms % 1000));
}

static json_t *wh_field(const json_t *incident, const char *key)
{
    json_t *v = json_object_get(incident, key);
    return v ? json_deep_copy(v) : json_null();
}

/* ---- template ---------------------------------------------------------------------------- */

/* Fields below incident.hypotheses.N and incident.top_hypothesis, incident.plan.N and
 * incident.timeline.N. "#" matches an array index, a trailing ".*" any deeper path. */
static const char *const wh_hyp_fields[] = {
    "service", "cause", "confidence", "evidence", "evidence.#", "analyzer",
    "metric",  "onset", "labels",     "labels.*", NULL,
};
static const char *const wh_plan_fields[] = {
    "executor",      "verb",   "target",   "risk",           "downtime_s",
    "blast_radius",  "params", "params.*", "needs_approval", "allowed",
    "denied_reason", "reason", NULL,
};
static const char *const wh_timeline_fields[] = {"ts", "node", "event", "detail", NULL};
static const char *const wh_incident_fields[] = {
    "id",           "state",         "severity",    "priority",     "confidence",     "title",
    "services",     "services.#",    "fingerprint", "opened_at",    "updated_at",     "onset",
    "loop_count",   "anomaly_count", "hypotheses",  "hypotheses.#", "top_hypothesis", "plan",
    "plan.#",       "timeline",      "timeline.#",  "approvals",    "approvals.*",    "executions",
    "executions.*", "anomalies",     "anomalies.*", "changes",      "changes.*",      NULL,
};

static int wh_pattern_match(const char *pattern, const char *s)
{
    size_t n = strlen(pattern);
    if (n >= 2 && strcmp(pattern + n - 2, ".*") == 0)
        return strncmp(s, pattern, n - 1) == 0 && s[n - 1] != '\0';
    return strcmp(pattern, s) == 0;
}

static int wh_in(const char *const *patterns, const char *s)
{
    for (; *patterns; patterns++)
        if (wh_pattern_match(*patterns, s))
            return 1;
    return 0;
}

/* Whether a placeholder path names something an incident notification has. */
static int wh_path_known(const char *path)
{
    char norm[WH_PATH_MAX + 8];
    size_t o = 0;
    const char *seg = path;
    if (!*path || strlen(path) > WH_PATH_MAX)
        return 0;
    /* Numeric segments become "#"; empty segments or odd characters make it unknown. */
    for (;;) {
        const char *end = strchr(seg, '.');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        int digits = len > 0 && len <= 9;
        if (len == 0)
            return 0;
        for (size_t i = 0; i < len; i++) {
            if (!isalnum((unsigned char)seg[i]) && seg[i] != '_' && seg[i] != '-')
                return 0;
            digits = digits && isdigit((unsigned char)seg[i]);
        }
        if (digits) {
            norm[o++] = '#';
        } else {
            memcpy(norm + o, seg, len);
            o += len;
        }
        if (!end)
            break;
        norm[o++] = '.';
        seg = end + 1;
    }
    norm[o] = '\0';
    if (strcmp(norm, "event") == 0 || strcmp(norm, "sent_at") == 0 || strcmp(norm, "incident") == 0)
        return 1;
    if (strncmp(norm, "incident.", 9) != 0)
        return 0;
    const char *r = norm + 9;
    if (wh_in(wh_incident_fields, r))
        return 1;
    if (strncmp(r, "hypotheses.#.", 13) == 0)
        return wh_in(wh_hyp_fields, r + 13);
    if (strncmp(r, "top_hypothesis.", 15) == 0)
        return wh_in(wh_hyp_fields, r + 15);
    if (strncmp(r, "plan.#.", 7) == 0)
        return wh_in(wh_plan_fields, r + 7);
    if (strncmp(r, "timeline.#.", 11) == 0)
        return wh_in(wh_timeline_fields, r + 11);
    return 0;
}

/* The next "{{ path }}" in @p s: @p start and @p end delimit the braces, @p path gets the trimmed
 * path. Returns 0 when there is none (an unclosed "{{" is literal text). */
static int wh_next_placeholder(const char *s, const char **start, const char **end, char *path,
                               size_t cap)
{
    const char *a = strstr(s, "{{");
    if (!a)
        return 0;
    const char *b = strstr(a + 2, "}}");
    if (!b)
        return 0;
    const char *p = a + 2, *q = b;
    while (p < q && (*p == ' ' || *p == '\t'))
        p++;
    while (q > p && (q[-1] == ' ' || q[-1] == '\t'))
        q--;
    size_t n = (size_t)(q - p);
    if (n >= cap)
        n = cap - 1;
    memcpy(path, p, n);
    path[n] = '\0';
    *start = a;
    *end = b + 2;
    return 1;
}

/* Check every placeholder of the template; fill @p err and return SN_EINVAL at the first
 * problem. */
static int wh_template_check(const json_t *t, sn_err_t *err)
{
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_object(t)) {
        json_object_foreach((json_t *)t, key, v)
        {
            if (strstr(key, "{{") && strstr(key, "}}")) {
                snprintf(err->msg, sizeof(err->msg),
                         "template: placeholders are not allowed in object keys ('%.64s')", key);
                return SN_EINVAL;
            }
            if (wh_template_check(v, err) != 0)
                return SN_EINVAL;
        }
    } else if (json_is_array(t)) {
        json_array_foreach(t, i, v) if (wh_template_check(v, err) != 0) return SN_EINVAL;
    } else if (json_is_string(t)) {
        const char *s = json_string_value(t), *a, *b;
        char path[WH_PATH_MAX + 2];
        while (wh_next_placeholder(s, &a, &b, path, sizeof(path))) {
            if (!wh_path_known(path)) {
                snprintf(err->msg, sizeof(err->msg), "template: unknown placeholder path '%.*s'",
                         WH_PATH_MAX, path);
                return SN_EINVAL;
            }
            s = b;
        }
    }
    return 0;
}

/* What the placeholders of one notification refer to. */
typedef struct wh_ctx {
    const json_t *incident;
    const char *event;
    const char *sent_at;
} wh_ctx_t;

static const json_t *wh_top(const json_t *incident)
{
    const json_t *best = NULL;
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(incident, "hypotheses"), i, h)
    {
        if (json_is_object(h) && (!best || wh_conf(h) > wh_conf(best)))
            best = h;
    }
    return best;
}

/* The value at a known @p path, as a new reference, or NULL when the notification has none. */
static json_t *wh_lookup(const wh_ctx_t *c, const char *path)
{
    char buf[WH_PATH_MAX + 2];
    snprintf(buf, sizeof(buf), "%s", path);
    char *save = NULL, *seg = strtok_r(buf, ".", &save);
    if (!seg)
        return NULL;
    if (strcmp(seg, "event") == 0)
        return json_string(c->event);
    if (strcmp(seg, "sent_at") == 0)
        return json_string(c->sent_at);
    const json_t *cur = c->incident;
    while (cur && (seg = strtok_r(NULL, ".", &save))) {
        if (cur == c->incident && strcmp(seg, "top_hypothesis") == 0)
            cur = wh_top(c->incident);
        else if (json_is_object(cur))
            cur = json_object_get(cur, seg);
        else if (json_is_array(cur) && isdigit((unsigned char)seg[0]))
            cur = json_array_get(cur, strtoul(seg, NULL, 10));
        else
            cur = NULL;
    }
    return cur ? json_incref((json_t *)cur) : NULL;
}

/* A value as text inside a longer string: strings as they are, absent or null as nothing,
 * numbers and booleans as written in JSON, arrays and objects as compact JSON. */
static void wh_buf_value(snp_buf_t *b, const json_t *v)
{
    char num[64];
    if (!v || json_is_null(v))
        return;
    if (json_is_string(v)) {
        snp_buf_add(b, json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v)) {
        snp_buf_add(
            b, num,
            (size_t)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v)));
    } else if (json_is_real(v)) {
        snp_buf_add(b, num, (size_t)snprintf(num, sizeof(num), "%.15g", json_real_value(v)));
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
        if (!s) {
            b->oom = 1;
            return;
        }
        snp_buf_add(b, s, strlen(s));
        free(s);
    }
}

static json_t *wh_render_string(const json_t *t, const wh_ctx_t *c)
{
    const char *s = json_string_value(t), *a, *e;
    char path[WH_PATH_MAX + 2];
    if (!wh_next_placeholder(s, &a, &e, path, sizeof(path)))
        return json_incref((json_t *)t);
    if (a == s && *e == '\0') {
        json_t *v = wh_lookup(c, path);
        return v ? v : json_null();
    }
    snp_buf_t b = {0};
    do {
        snp_buf_add(&b, s, (size_t)(a - s));
        json_t *v = wh_lookup(c, path);
        wh_buf_value(&b, v);
        json_decref(v);
        s = e;
    } while (wh_next_placeholder(s, &a, &e, path, sizeof(path)));
    snp_buf_add(&b, s, strlen(s));
    json_t *out = b.oom ? NULL : json_stringn(b.p ? b.p : "", b.n);
    free(b.p);
    return out;
}

/* A new tree: @p t with its placeholders filled in. NULL when out of memory. */
static json_t *wh_render(const json_t *t, const wh_ctx_t *c)
{
    const char *key;
    json_t *v, *out = NULL;
    size_t i;
    if (json_is_object(t)) {
        out = json_object();
        json_object_foreach((json_t *)t, key, v)
        {
            if (!out || json_object_set_new(out, key, wh_render(v, c)) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    if (json_is_array(t)) {
        out = json_array();
        json_array_foreach(t, i, v)
        {
            if (!out || json_array_append_new(out, wh_render(v, c)) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    if (json_is_string(t))
        return wh_render_string(t, c);
    return json_incref((json_t *)t);
}

/* Ownership: caller frees the returned string. */
static char *wh_body(wh_t *w, const json_t *incident, const char *event)
{
    char sent_at[40];
    wh_rfc3339(w->host->now_ms(w->host), sent_at, sizeof(sent_at));
    if (w->tmpl) {
        wh_ctx_t c = {.incident = incident, .event = event, .sent_at = sent_at};
        json_t *body = wh_render(w->tmpl, &c);
        char *s = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15))
                       : NULL;
        json_decref(body);
        return s;
    }
    json_t *doc =
        json_pack("{s:s,s:{s:o,s:o,s:o,s:o,s:o,s:o,s:o},s:s}", "event", event, "incident", "id",
                  wh_field(incident, "id"), "state", wh_field(incident, "state"), "severity",
                  wh_field(incident, "severity"), "title", wh_field(incident, "title"), "services",
                  wh_field(incident, "services"), "hypotheses",
                  wh_top_hypotheses(json_object_get(incident, "hypotheses")), "plan",
                  wh_field(incident, "plan"), "sent_at", sent_at);
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return s;
}

/* ---- delivery ---------------------------------------------------------------------------- */

static void wh_send(wh_delivery_t *d);
static void wh_maybe_stopped(wh_t *w);

static void wh_unlink(wh_t *w, wh_delivery_t *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        w->list = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->next = d->prev = NULL;
    w->npending--;
}

static void wh_free(wh_delivery_t *d)
{
    free(d->body);
    free(d);
}

/* Complete @p d with @p rc and free it. Thread: loop. */
static void wh_finish(wh_delivery_t *d, int rc)
{
    wh_t *w = d->w;
    wh_unlink(w, d);
    wh_gauge(w);
    json_t *res = json_pack("{s:i,s:i}", "status", (int)d->last_status, "attempts", d->attempts);
    if (rc == 0) {
        w->sent++;
        wh_count(w, "notifier_webhook_sent_total", "Webhook notifications delivered");
    } else {
        w->failed++;
        wh_count(w, "notifier_webhook_failed_total", "Webhook notifications given up on");
        if (res)
            json_object_set_new(res, "error", json_string(d->last_error));
        w->host->log(w->host, SN_LOG_WARN,
                     "notification %s for incident %s not delivered after %d attempt%s: %s",
                     d->event, d->incident, d->attempts, d->attempts == 1 ? "" : "s",
                     d->last_error);
    }
    d->done(d->arg, rc, res);
    json_decref(res);
    wh_free(d);
    wh_maybe_stopped(w);
}

static void wh_retry(void *arg)
{
    wh_delivery_t *d = arg;
    d->timer = NULL;
    wh_send(d);
}

/* Thread: loop. */
static void wh_http_done(void *arg, const sn_http_response_t *resp)
{
    wh_delivery_t *d = arg;
    d->in_flight = 0;
    if (!d->w) {
        wh_free(d);
        return;
    }
    wh_t *w = d->w;
    long st = resp ? resp->status : 0;
    d->last_status = st;
    if (st >= 200 && st < 300) {
        wh_finish(d, 0);
        return;
    }
    if (st == 0)
        snprintf(d->last_error, sizeof(d->last_error), "%.120s",
                 resp && resp->error ? resp->error : "no response");
    else
        snprintf(d->last_error, sizeof(d->last_error), "HTTP %ld", st);
    int retryable = st == 0 || st == 429 || st >= 500;
    if (!retryable || d->attempts > w->max_retries || w->stopping) {
        wh_finish(d, SN_EIO);
        return;
    }
    int64_t delay = 0;
    if (!(st == 429 && snr_retry_after(resp, &delay)))
        delay = snr_backoff(&w->rng, w->retry_base_ms, w->retry_max_ms, d->attempts);
    if (delay > w->retry_max_ms)
        delay = w->retry_max_ms;
    wh_count(w, "notifier_webhook_retries_total", "Webhook attempts retried");
    w->host->log(w->host, SN_LOG_DEBUG, "notification %s for incident %s: %s, retry %d in %lld ms",
                 d->event, d->incident, d->last_error, d->attempts, (long long)delay);
    d->timer = w->host->timer_add(w->host, delay, 0, wh_retry, d);
    if (!d->timer) {
        snprintf(d->last_error, sizeof(d->last_error), "cannot schedule a retry");
        wh_finish(d, SN_EIO);
    }
}

/* Sign and send one attempt. Thread: loop. */
static void wh_send(wh_delivery_t *d)
{
    wh_t *w = d->w;
    char ts_h[64], event_h[96], sig_h[96] = "";
    const char *headers[WH_FIXED_HEADERS + WH_HEADERS_MAX];
    size_t nh = 0;
    long long ts = (long long)(w->host->now_ms(w->host) / 1000);
    snprintf(ts_h, sizeof(ts_h), "X-Sentinel-Timestamp: %lld", ts);
    snprintf(event_h, sizeof(event_h), "X-Sentinel-Event: %s", d->event);
    headers[nh++] = "Content-Type: application/json";
    headers[nh++] = "User-Agent: sentinel-webhook/1.0";
    headers[nh++] = event_h;
    headers[nh++] = ts_h;
    if (w->secret) {
        char prefix[32];
        int plen = snprintf(prefix, sizeof(prefix), "%lld.", ts);
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        unsigned char *msg = malloc((size_t)plen + d->len);
        if (!msg) {
            snprintf(d->last_error, sizeof(d->last_error), "out of memory");
            wh_finish(d, SN_ENOMEM);
            return;
        }
        memcpy(msg, prefix, (size_t)plen);
        memcpy(msg + plen, d->body, d->len);
        unsigned char *ok = HMAC(EVP_sha256(), w->secret, (int)strlen(w->secret), msg,
                                 (size_t)plen + d->len, mac, &maclen);
        free(msg);
        if (!ok) {
            snprintf(d->last_error, sizeof(d->last_error), "cannot compute the signature");
            wh_finish(d, SN_EIO);
            return;
        }
        size_t off = (size_t)snprintf(sig_h, sizeof(sig_h), "X-Sentinel-Signature: v1=");
        for (unsigned int i = 0; i < maclen && off + 3 <= sizeof(sig_h); i++)
            off += (size_t)snprintf(sig_h + off, sizeof(sig_h) - off, "%02x", mac[i]);
        OPENSSL_cleanse(mac, sizeof(mac));
        headers[nh++] = sig_h;
    }
    for (const char *const *e = w->extra; e && *e; e++)
        headers[nh++] = *e;
    headers[nh] = NULL;
    sn_http_request_t req = {
        .struct_size = sizeof(req),
        .method = "POST",
        .url = w->url,
        .headers = headers,
        .body = d->body,
        .body_len = d->len,
        .timeout_ms = (long)w->timeout_ms,
        .max_response = WH_RESPONSE_MAX,
    };
    d->attempts++;
    d->in_flight = 1;
    int rc = w->host->http(w->host, &req, wh_http_done, d);
    OPENSSL_cleanse(sig_h, sizeof(sig_h));
    if (rc != 0) {
        /* The host refused synchronously: handle it like a transport error (retry or give up). */
        sn_http_response_t none = {.status = 0, .error = "request refused by the HTTP client"};
        wh_http_done(d, &none);
    }
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static int wh_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    wh_t *w = calloc(1, sizeof(*w));
    int rc = SN_EINVAL;
    if (!w) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    w->host = host;
    w->url = host->cfg_str(cfg, "url");
    w->secret = host->cfg_str(cfg, "secret");
    if (w->secret && !w->secret[0])
        w->secret = NULL;
    w->extra = host->cfg_list(cfg, "header");
    w->retry_base_ms = host->cfg_int(cfg, "retry_base");
    w->retry_max_ms = host->cfg_int(cfg, "retry_max");
    w->max_retries = host->cfg_int(cfg, "max_retries");
    w->max_pending = host->cfg_int(cfg, "max_pending");
    w->timeout_ms = host->cfg_int(cfg, "timeout");
    w->rng = (uint64_t)host->now_ms(host) ^ ((uint64_t)host->mono_ms(host) << 21) ^
             (uint64_t)(uintptr_t)w;
    if (!w->rng)
        w->rng = 0x9e3779b97f4a7c15ULL;
    /* The URL is not echoed: chat webhooks carry their token in it. */
    if (!w->url ||
        (strncasecmp(w->url, "http://", 7) != 0 && strncasecmp(w->url, "https://", 8) != 0)) {
        snprintf(err->msg, sizeof(err->msg), "url must start with http:// or https://");
        goto out;
    }
    size_t n = 0;
    for (const char *const *e = w->extra; e && *e; e++, n++) {
        const char *why = wh_header_problem(*e);
        if (why) {
            /* Not echoed either: a header value is often a token. */
            snprintf(err->msg, sizeof(err->msg), "header %zu %s", n + 1, why);
            goto out;
        }
    }
    if (n > WH_HEADERS_MAX) {
        snprintf(err->msg, sizeof(err->msg), "at most %d header lines", WH_HEADERS_MAX);
        goto out;
    }
    if (w->retry_base_ms < 1 || w->retry_max_ms < w->retry_base_ms) {
        snprintf(err->msg, sizeof(err->msg),
                 "retry_base must be at least 1ms and retry_max at least retry_base");
        goto out;
    }
    if (w->max_retries < 0 || w->max_retries > 100) {
        snprintf(err->msg, sizeof(err->msg), "max_retries must be between 0 and 100");
        goto out;
    }
    if (w->max_pending < 1 || w->max_pending > 1000000) {
        snprintf(err->msg, sizeof(err->msg), "max_pending must be between 1 and 1000000");
        goto out;
    }
    if (w->timeout_ms < 1) {
        snprintf(err->msg, sizeof(err->msg), "timeout must be positive");
        goto out;
    }
    const char *tmpl = host->cfg_str(cfg, "template");
    if (tmpl && tmpl[0]) {
        json_error_t je;
        w->tmpl = json_loads(tmpl, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
        if (!w->tmpl) {
            snprintf(err->msg, sizeof(err->msg),
                     "template is not valid JSON: %.120s (line %d, "
                     "column %d)",
                     je.text, je.line, je.column);
            goto out;
        }
        if (wh_template_check(w->tmpl, err) != 0)
            goto out;
    }
    rc = 0;
    *self = w;
out:
    if (rc != 0) {
        json_decref(w->tmpl);
        free(w);
    }
    return rc;
}

static void wh_maybe_stopped(wh_t *w)
{
    if (!w->stopping || !w->stop_done || w->npending)
        return;
    sn_done_fn done = w->stop_done;
    w->stop_done = NULL;
    done(w->stop_arg, 0, NULL);
}

/**
 * Drain: deliveries waiting for a retry get one last attempt now, requests in flight finish,
 * nothing is retried any more; done runs when none is left (possibly before this returns).
 */
static void wh_stop(void *self, sn_done_fn done, void *arg)
{
    wh_t *w = self;
    w->stopping = 1;
    w->stop_done = done;
    w->stop_arg = arg;
    for (wh_delivery_t *d = w->list, *next; d; d = next) {
        next = d->next;
        if (d->timer) {
            w->host->timer_del(d->timer);
            d->timer = NULL;
            wh_send(d);
        }
    }
    wh_maybe_stopped(w);
}

/** Every delivery still in progress completes now with SN_EIO; requests in flight are left to
 * finish on their own and only free their delivery. */
static void wh_destroy(void *self)
{
    wh_t *w = self;
    while (w->list) {
        wh_delivery_t *d = w->list;
        wh_unlink(w, d);
        if (d->timer)
            w->host->timer_del(d->timer);
        d->done(d->arg, SN_EIO, NULL);
        if (d->in_flight)
            d->w = NULL;
        else
            wh_free(d);
    }
    json_decref(w->tmpl);
    free(w);
}

static int wh_health(void *self, sn_health_t *out)
{
    wh_t *w = self;
    out->ok = w->npending < (size_t)w->max_pending;
    snprintf(out->detail, sizeof(out->detail),
             "%lu delivered, %lu failed, %lu dropped, %zu pending", w->sent, w->failed, w->dropped,
             w->npending);
    return 0;
}

/**
 * Queue one notification and send its first attempt. done runs once: later with 0 (2xx) or
 * SN_EIO (given up), or before this returns with SN_ENOMEM (queue full), SN_EAGAIN (stopping)
 * or SN_EINVAL. Result: {"status": last HTTP status, "attempts": n[, "error"]}.
 * Ownership: @p incident and @p event are borrowed (the body is built before this returns).
 * Thread: loop.
 */
static void wh_notify(void *self, const json_t *incident, const char *event, sn_done_fn done,
                      void *arg)
{
    wh_t *w = self;
    int rc = 0;
    wh_delivery_t *d = NULL;
    if (!json_is_object(incident) || !event) {
        rc = SN_EINVAL;
        goto out;
    }
    if (w->stopping) {
        rc = SN_EAGAIN;
        goto out;
    }
    if (w->npending >= (size_t)w->max_pending) {
        w->dropped++;
        wh_count(w, "notifier_webhook_dropped_total",
                 "Webhook notifications refused because max_pending was reached");
        w->host->log(w->host, SN_LOG_WARN,
                     "%zu deliveries pending (max_pending): notification %.32s dropped",
                     w->npending, event);
        rc = SN_ENOMEM;
        goto out;
    }
    d = calloc(1, sizeof(*d));
    if (!d || !(d->body = wh_body(w, incident, event))) {
        rc = SN_ENOMEM;
        goto out;
    }
    d->len = strlen(d->body);
    d->w = w;
    d->done = done;
    d->arg = arg;
    size_t i = 0;
    for (const char *p = event; *p && i + 1 < sizeof(d->event); p++)
        if (isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.')
            d->event[i++] = *p;
    d->event[i] = '\0';
    const char *id = json_string_value(json_object_get(incident, "id"));
    snprintf(d->incident, sizeof(d->incident), "%s", id ? id : "?");
    d->next = w->list;
    if (w->list)
        w->list->prev = d;
    w->list = d;
    w->npending++;
    wh_gauge(w);
    wh_send(d);
    return;
out:
    if (d)
        wh_free(d);
    done(arg, rc, NULL);
}

static const sn_notifier_ops_t wh_ops = {
    .struct_size = sizeof(sn_notifier_ops_t),
    .notify = wh_notify,
};

static const sn_plugin_t wh_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_NOTIFIER,
    .type = "webhook",
    .version = "1.0.0",
    .summary = "signed JSON POST per notification, retried with backoff",
    .params = wh_params,
    .create = wh_create,
    .stop = wh_stop,
    .destroy = wh_destroy,
    .health = wh_health,
    .ops = &wh_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &wh_plugin;
}
