/**
 * @file alertmanager.c
 * Input `alertmanager`: the receiver of Prometheus Alertmanager's webhook (payload version 4).
 * It registers POST /hooks/<instance>/ and /hooks/<instance>/webhook and translates each alert
 * of a notification into one alert record of the core's ingest format:
 *
 *   {"ts": startsAt, "alert": labels.alertname, "status": "firing"|"resolved",
 *    "fingerprint": ..., "labels": {...}, "annotations": {...}, "ends": endsAt, "group": groupKey}
 *
 * A whole notification goes to the core in one emit_lines call, so it is taken or refused as a
 * whole: a full queue answers 503 and Alertmanager sends the same notification again. Deciding
 * what an alert means (anomaly, incident, repeat, HA duplicate, resolution) is the core's job;
 * this plugin only checks the payload, authenticates the sender and translates.
 */
#include "names.h"
#include <sentinel/plugin.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AM_MAX_LINE 65536      /**< the core's ingest line limit: one alert must fit in it */
#define AM_MAX_FINGERPRINT 128 /**< Alertmanager sends 16 hex digits */
#define AM_RID_MAX 64

typedef struct am {
    const sn_host_t *host;
    char *token;             /* bearer token, owned, wiped in destroy */
    char *basic;             /* base64("username:password"), owned, wiped in destroy */
    const char *group_label; /* owned by the host's cfg */
    int64_t max_alerts;
    unsigned long firing, resolved, payloads, refused;
} am_t;

static const sn_param_t am_params[] = {
    {"token", SN_T_STRING, NULL, SN_PARAM_SECRET,
     "bearer token Alertmanager presents (http_config.authorization.credentials); write it as "
     "${env:NAME} or ${file:/path}"},
    {"username", SN_T_STRING, NULL, 0,
     "basic-auth user (http_config.basic_auth.username); needs password, excludes token"},
    {"password", SN_T_STRING, NULL, SN_PARAM_SECRET,
     "basic-auth password (http_config.basic_auth.password); ${env:NAME} or ${file:/path}"},
    {"max_alerts", SN_T_INT, "1000", 0,
     "alerts accepted in one notification (1..100000); a larger one is refused with 413, so set "
     "the receiver's max_alerts in alertmanager.yml to at most this"},
    {"group_label", SN_T_STRING, NULL, 0,
     "label (job, namespace, ...) copied into 'service' when an alert has no service label, so "
     "correlation groups its alerts"},
    {NULL, 0, NULL, 0, NULL},
};

/* ---- helpers ---- */

static void wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = '\0';
    free(s);
}

/* Constant time over the presented length, so a prefix match is not observable. */
static int secret_eq(const char *want, const char *got)
{
    size_t lw = strlen(want), lg = strlen(got);
    unsigned char diff = (unsigned char)(lw != lg);
    for (size_t i = 0; i < lg; i++)
        diff |= (unsigned char)(got[i] ^ (i < lw ? want[i] : 0));
    return diff == 0;
}

static char *base64(const char *in)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out)
        return NULL;
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* The core expands ${env:..}/${file:..} in settings; a value that still is a reference (a host
 * that does not) is resolved here. Ownership: caller frees (wipe_free). */
static char *resolve_secret(const sn_host_t *host, const char *v)
{
    if ((strncmp(v, "${env:", 6) == 0 || strncmp(v, "${file:", 7) == 0) &&
        SN_HOST_HAS(host, secret))
        return host->secret(host, v);
    return strdup(v);
}

/* Length of @p s cut to at most @p max bytes without splitting a UTF-8 sequence. */
static int utf8_cut(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return (int)n;
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
        max--;
    return (int)max;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Alertmanager's own fingerprint (prometheus/common model.LabelSet.Fingerprint): FNV-1a 64
 * over the labels sorted by name, each name and value followed by the byte 0xff. Computing the
 * same value keeps a sender that omits the field deduplicated with one that sends it. */
static int fingerprint(json_t *labels, char out[17])
{
    uint64_t h = 14695981039346656037ULL;
    size_t n = json_object_size(labels), i = 0;
    const char **names = n ? malloc(n * sizeof(*names)) : NULL;
    if (n && !names)
        return SN_ENOMEM;
    const char *k;
    json_t *v;
    json_object_foreach(labels, k, v) names[i++] = k;
    qsort(names, n, sizeof(*names), cmp_str);
    for (i = 0; i < n; i++) {
        json_t *val = json_object_get(labels, names[i]);
        const char *parts[2] = {names[i], json_string_value(val)};
        size_t lens[2] = {strlen(names[i]), json_string_length(val)};
        for (int p = 0; p < 2; p++) {
            for (size_t b = 0; b < lens[p]; b++) {
                h ^= (unsigned char)parts[p][b];
                h *= 1099511628211ULL;
            }
            h ^= 0xffu;
            h *= 1099511628211ULL;
        }
    }
    free(names);
    snprintf(out, 17, "%016" PRIx64, h);
    return 0;
}

typedef struct buf {
    char *p;
    size_t len, cap;
} buf_t;

static int buf_add(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return SN_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* ---- translation ---- */

/** Why a notification was refused: HTTP status and a phrase naming the field. */
typedef struct refusal {
    int code;
    char msg[200];
} refusal_t;

static void refuse_set(refusal_t *r, int code, const char *fmt, ...) SN_PRINTF(3, 4);

static void refuse_set(refusal_t *r, int code, const char *fmt, ...)
{
    va_list ap;
    r->code = code;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
    va_end(ap);
}

/* An object whose values are all strings; NULL is allowed when @p optional. Returns 0 or
 * fills @p r naming alerts[i].<field>. */
static int string_map(json_t *o, size_t i, const char *field, int optional, refusal_t *r)
{
    if (!o || json_is_null(o)) {
        if (optional)
            return 0;
        refuse_set(r, 400, "field 'alerts[%zu].%s': missing", i, field);
        return -1;
    }
    if (!json_is_object(o)) {
        refuse_set(r, 400, "field 'alerts[%zu].%s': not an object", i, field);
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (!json_is_string(v)) {
            refuse_set(r, 400, "field 'alerts[%zu].%s.%.*s': not a string", i, field,
                       utf8_cut(k, 64), k);
            return -1;
        }
    }
    return 0;
}

static int time_ok(const sn_host_t *host, const char *s)
{
    int64_t ms;
    if (!SN_HOST_HAS(host, parse_time))
        return s && *s;
    return s && host->parse_time(host, s, &ms) == 0 && ms >= 0;
}

/* What the core's ingest takes in one record (core/ingest.c defaults). */
#define AM_MAX_LABELS 32
#define AM_MAX_VALUE 256
#define AM_MAX_NAME 128
#define AM_MAX_ALERT_NAME 200
/* Annotation values are cut to this when a record would not fit in AM_MAX_LINE otherwise. */
#define AM_SHORT_ANNOTATION 1024

/* Copy @p in into @p out as a name the core accepts: label names [A-Za-z_][A-Za-z0-9_]*,
 * alert (metric) names also ':' anywhere and '.' after the first character. A byte outside
 * that set becomes '_' (a multi-byte UTF-8 character one '_'), a leading digit gets a '_'
 * before it, and the result is cut to @p cap - 1 bytes. Returns non-zero when it changed. */
static int sanitize_name(const char *in, char *out, size_t cap, int metric)
{
    size_t o = 0;
    int changed = 0;
    const unsigned char *p = (const unsigned char *)in;
    if ((*p >= '0' && *p <= '9') || (metric && *p == '.') || !*p) {
        out[o++] = '_';
        changed = 1;
    }
    for (; *p && o + 1 < cap; p++) {
        unsigned char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (c >= '0' && c <= '9') || (metric && (c == ':' || c == '.'));
        if (c >= 0x80) {
            while ((p[1] & 0xc0) == 0x80)
                p++;
        }
        if (!ok) {
            c = '_';
            changed = 1;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return changed || *p;
}

/* @p v cut to @p max bytes on a UTF-8 boundary, as a new JSON string. */
static json_t *cut_string(json_t *v, size_t max, int *cut)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n <= max)
        return json_incref(v);
    *cut = 1;
    return json_stringn(s, (size_t)utf8_cut(s, max));
}

static int is_priority(const char *name)
{
    return strcmp(name, "service") == 0 || strcmp(name, "host") == 0 ||
           strcmp(name, "deployment") == 0;
}

typedef struct cand {
    char name[AM_MAX_NAME];
    json_t *value; /* borrowed */
} cand_t;

static int cmp_cand(const void *x, const void *y)
{
    const cand_t *a = x, *b = y;
    int pa = is_priority(a->name), pb = is_priority(b->name);
    if (pa != pb)
        return pb - pa;
    return strcmp(a->name, b->name);
}

/* The record's labels: the sender's labels but alertname, fitted to what the core takes.
 * service/host/deployment are kept first, the rest by name up to AM_MAX_LABELS; @p dropped
 * counts the labels left out, @p cut is set when a name or value changed. The group_label copy
 * is made here, and an alertname the core would not take as a name is kept as a label
 * (@p orig_name). Returns NULL when out of memory. */
static json_t *fit_labels(am_t *a, json_t *labels, json_t *orig_name, size_t *dropped, int *cut)
{
    size_t n = json_object_size(labels) + 2, k = 0;
    cand_t *c = calloc(n, sizeof(*c));
    json_t *out = json_object();
    if (!c || !out)
        goto fail;
    const char *name;
    json_t *v;
    json_object_foreach(labels, name, v)
    {
        if (strcmp(name, "alertname") == 0)
            continue;
        *cut |= sanitize_name(name, c[k].name, sizeof(c[k].name), 0);
        c[k++].value = v;
    }
    json_t *copy = a->group_label ? json_object_get(labels, a->group_label) : NULL;
    if (copy && !json_object_get(labels, "service")) {
        snprintf(c[k].name, sizeof(c[k].name), "service");
        c[k++].value = copy;
    }
    if (orig_name) {
        snprintf(c[k].name, sizeof(c[k].name), "alertname");
        c[k++].value = orig_name;
    }
    qsort(c, k, sizeof(*c), cmp_cand);
    for (size_t i = 0; i < k; i++) {
        if (json_object_get(out, c[i].name))
            continue; /* two names that sanitize alike: the first stays */
        if (json_object_size(out) >= AM_MAX_LABELS) {
            (*dropped)++;
            continue;
        }
        if (json_object_set_new(out, c[i].name, cut_string(c[i].value, AM_MAX_VALUE, cut)) != 0)
            goto fail;
    }
    free(c);
    return out;
fail:
    free(c);
    json_decref(out);
    return NULL;
}

/* Annotations with every value cut to @p cap bytes (0: as sent). */
static json_t *fit_annotations(json_t *ann, size_t cap, int *cut)
{
    if (!json_is_object(ann))
        return json_object();
    if (!cap)
        return json_incref(ann);
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(ann, k, v)
    {
        if (!out || json_object_set_new(out, k, cut_string(v, cap, cut)) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* Translate alerts[i] into one line appended to @p out. */
static int translate_alert(am_t *a, json_t *al, size_t i, const char *group, buf_t *out,
                           refusal_t *r, size_t *adjusted)
{
    const sn_host_t *host = a->host;
    if (!json_is_object(al)) {
        refuse_set(r, 400, "field 'alerts[%zu]': not an object", i);
        return -1;
    }
    const char *status = json_string_value(json_object_get(al, "status"));
    int resolved = status && strcmp(status, "resolved") == 0;
    if (!status || (!resolved && strcmp(status, "firing") != 0)) {
        refuse_set(r, 400, "field 'alerts[%zu].status': not \"firing\" or \"resolved\"", i);
        return -1;
    }
    json_t *labels = json_object_get(al, "labels"), *ann = json_object_get(al, "annotations");
    if (string_map(labels, i, "labels", 0, r) != 0 || string_map(ann, i, "annotations", 1, r) != 0)
        return -1;
    const char *starts = json_string_value(json_object_get(al, "startsAt"));
    if (!time_ok(host, starts)) {
        refuse_set(r, 400, "field 'alerts[%zu].startsAt': missing or not an RFC 3339 time", i);
        return -1;
    }
    const char *ends = json_string_value(json_object_get(al, "endsAt"));
    if (resolved && !time_ok(host, ends)) {
        refuse_set(r, 400, "field 'alerts[%zu].endsAt': a resolved alert needs an RFC 3339 time",
                   i);
        return -1;
    }
    json_t *fpv = json_object_get(al, "fingerprint");
    char fp[AM_MAX_FINGERPRINT + 1];
    if (fpv && !json_is_null(fpv) && !json_is_string(fpv)) {
        refuse_set(r, 400, "field 'alerts[%zu].fingerprint': not a string", i);
        return -1;
    }
    if (json_string_length(fpv) > AM_MAX_FINGERPRINT) {
        refuse_set(r, 400, "field 'alerts[%zu].fingerprint': longer than %d bytes", i,
                   AM_MAX_FINGERPRINT);
        return -1;
    }
    if (json_string_length(fpv) > 0) {
        snprintf(fp, sizeof(fp), "%s", json_string_value(fpv));
    } else if (fingerprint(labels, fp) != 0) {
        refuse_set(r, 500, "out of memory");
        return -1;
    }

    /* The name the core takes; a sender's name that had to change stays as a label. */
    json_t *name = json_object_get(labels, "alertname");
    char aname[AM_MAX_ALERT_NAME + 1];
    int renamed =
        json_string_length(name) && sanitize_name(json_string_value(name), aname, sizeof(aname), 1);
    if (!json_string_length(name))
        snprintf(aname, sizeof(aname), "alert");

    int rc = -1, cut = 0;
    size_t dropped = 0;
    char *line = NULL;
    json_t *o = json_object();
    json_t *lab = fit_labels(a, labels, renamed ? name : NULL, &dropped, &cut);
    if (!o || !lab || json_object_set_new(o, "ts", json_string(starts)) != 0 ||
        json_object_set_new(o, "alert", json_string(aname)) != 0 ||
        json_object_set_new(o, "status", json_string(status)) != 0 ||
        json_object_set_new(o, "fingerprint", json_string(fp)) != 0 ||
        json_object_set(o, "labels", lab) != 0 ||
        (resolved && json_object_set_new(o, "ends", json_string(ends)) != 0) ||
        json_object_set_new(o, "group", json_string(group)) != 0)
        goto oom;
    /* Long annotations are cut, then dropped, before an alert is refused for its size. */
    static const size_t caps[] = {0, AM_SHORT_ANNOTATION, 0};
    size_t n = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        json_t *an = attempt == 2 ? json_object() : fit_annotations(ann, caps[attempt], &cut);
        if (!an || json_object_set_new(o, "annotations", an) != 0)
            goto oom;
        free(line);
        line = json_dumps(o, JSON_COMPACT);
        if (!line)
            goto oom;
        n = strlen(line);
        if (n <= AM_MAX_LINE)
            break;
        cut = 1;
    }
    if (n > AM_MAX_LINE) {
        refuse_set(r, 413, "alerts[%zu]: %zu bytes once translated, over the %d-byte record limit",
                   i, n, AM_MAX_LINE);
        goto out;
    }
    if (buf_add(out, line, n) != 0 || buf_add(out, "\n", 1) != 0)
        goto oom;
    if (cut || dropped || renamed) {
        (*adjusted)++;
        host->log(host, SN_LOG_DEBUG,
                  "alerts[%zu] (%s): fitted to the core's limits: %zu labels dropped%s%s", i, fp,
                  dropped, cut ? ", values cut or names rewritten" : "",
                  renamed ? ", alertname rewritten" : "");
    }
    rc = 0;
    goto out;
oom:
    refuse_set(r, 500, "out of memory");
out:
    free(line);
    json_decref(lab);
    json_decref(o);
    return rc;
}

/* Check and translate a whole notification. Returns the number of alerts, or -1 with @p r
 * filled. */
static long translate(am_t *a, const char *body, size_t len, buf_t *out, size_t counts[3],
                      refusal_t *r)
{
    json_error_t jerr;
    json_t *root = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    long rc = -1;
    if (!root) {
        if (len)
            refuse_set(r, 400, "body is not JSON: %.100s (line %d, column %d)", jerr.text,
                       jerr.line, jerr.column);
        else
            refuse_set(r, 400, "empty body: expected an Alertmanager webhook notification");
        return -1;
    }
    if (!json_is_object(root)) {
        refuse_set(r, 400, "body is not a JSON object");
        goto out;
    }
    const char *version = json_string_value(json_object_get(root, "version"));
    if (!version || strcmp(version, "4") != 0) {
        refuse_set(r, 400, "field 'version': %s%.*s%s, this receiver reads version \"4\"",
                   version ? "\"" : "missing", version ? utf8_cut(version, 16) : 0,
                   version ? version : "", version ? "\"" : "");
        goto out;
    }
    json_t *alerts = json_object_get(root, "alerts");
    if (!json_is_array(alerts)) {
        refuse_set(r, 400, "field 'alerts': missing or not an array");
        goto out;
    }
    json_t *gk = json_object_get(root, "groupKey");
    if (gk && !json_is_string(gk)) {
        refuse_set(r, 400, "field 'groupKey': not a string");
        goto out;
    }
    size_t n = json_array_size(alerts);
    if ((int64_t)n > a->max_alerts) {
        refuse_set(r, 413, "%zu alerts in one notification, over max_alerts %" PRId64, n,
                   a->max_alerts);
        goto out;
    }
    const char *group = gk ? json_string_value(gk) : "";
    for (size_t i = 0; i < n; i++) {
        json_t *al = json_array_get(alerts, i);
        if (translate_alert(a, al, i, group, out, r, &counts[2]) != 0)
            goto out;
        const char *st = json_string_value(json_object_get(al, "status"));
        counts[strcmp(st, "firing") == 0 ? 0 : 1]++;
    }
    rc = (long)n;
out:
    json_decref(root);
    return rc;
}

/* ---- the route ---- */

static void count_payload(am_t *a, int code)
{
    char name[64];
    snprintf(name, sizeof(name), "input_alertmanager_payloads_%d_total", code);
    a->host->metric(a->host, SN_METRIC_COUNTER, name,
                    "Alertmanager notifications answered, by HTTP status", 1);
    if (code == 200)
        a->payloads++;
    else
        a->refused++;
}

/* X-Request-ID reduced to a safe token for logs and replies ("" when absent). */
static void request_id(const sn_host_t *host, sn_route_req_t *req, char out[AM_RID_MAX + 1])
{
    const char *rid = host->req_header(req, "X-Request-ID");
    size_t o = 0;
    for (; rid && *rid && o < AM_RID_MAX; rid++) {
        char c = *rid;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == ':')
            out[o++] = c;
    }
    out[o] = '\0';
}

static void reply(am_t *a, sn_route_req_t *req, const char *rid, int code, json_t *doc)
{
    if (rid[0])
        json_object_set_new(doc, "request_id", json_string(rid));
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    static const char oom[] = "{\"error\":\"out of memory\"}";
    if (!text)
        code = 500;
    a->host->req_reply(req, code, "application/json", text ? text : oom,
                       text ? strlen(text) : sizeof(oom) - 1);
    free(text);
    count_payload(a, code);
}

static void refuse(am_t *a, sn_route_req_t *req, const char *rid, const refusal_t *r)
{
    a->host->log(a->host, r->code >= 500 ? SN_LOG_ERROR : SN_LOG_WARN, "request %s: %d: %s",
                 rid[0] ? rid : "-", r->code, r->msg);
    reply(a, req, rid, r->code, json_pack("{s:s}", "error", r->msg));
}

static int authorized(am_t *a, sn_route_req_t *req)
{
    if (!a->token && !a->basic)
        return 1;
    const char *auth = a->host->req_header(req, "Authorization");
    const char *scheme = a->token ? "Bearer" : "Basic";
    size_t sl = strlen(scheme);
    if (!auth || strncasecmp(auth, scheme, sl) != 0 || auth[sl] != ' ')
        return 0;
    const char *v = auth + sl;
    while (*v == ' ')
        v++;
    return secret_eq(a->token ? a->token : a->basic, v);
}

static void am_hook(void *self, sn_route_req_t *req)
{
    am_t *a = self;
    const sn_host_t *host = a->host;
    char rid[AM_RID_MAX + 1];
    refusal_t r = {0, ""};
    request_id(host, req, rid);
    if (!authorized(a, req)) {
        refuse_set(&r, 401, "missing or wrong credentials");
        refuse(a, req, rid, &r);
        return;
    }
    size_t len = 0;
    const char *body = host->req_body(req, &len);
    buf_t out = {NULL, 0, 0};
    size_t counts[3] = {0, 0, 0}; /* firing, resolved, fitted to the core's limits */
    long n = translate(a, body ? body : "", body ? len : 0, &out, counts, &r);
    if (n < 0) {
        refuse(a, req, rid, &r);
        goto out;
    }
    int taken = 0;
    if (n > 0) {
        char origin[160];
        snprintf(origin, sizeof(origin), "%s%s%s", host->instance ? host->instance : "alertmanager",
                 rid[0] ? " request " : "", rid);
        taken = host->emit_lines(host, out.p, out.len, origin);
    }
    if (taken == SN_EAGAIN) {
        refuse_set(&r, 503, "queues full, nothing taken: retry");
        refuse(a, req, rid, &r);
        goto out;
    }
    if (taken < 0) {
        refuse_set(&r, 500, "ingest failed (%d)", taken);
        refuse(a, req, rid, &r);
        goto out;
    }
    if (taken < n) {
        /* The core refused some records (each one named in its log as "line N", N-1 being the
         * index in alerts[]). A repeat would be refused again, so this is no retryable 5xx. */
        refuse_set(&r, 400, "the core refused %ld of %ld alerts (see the sentineld log)", n - taken,
                   n);
        host->log(host, SN_LOG_WARN, "request %s: 400: %s", rid[0] ? rid : "-", r.msg);
        reply(a, req, rid, 400,
              json_pack("{s:s,s:i,s:i}", "error", r.msg, "accepted", taken, "rejected",
                        (int)(n - taken)));
        goto out;
    }
    if (counts[0])
        host->metric(host, SN_METRIC_COUNTER, "input_alertmanager_alerts_firing_total",
                     "Firing alerts handed to the core", (double)counts[0]);
    if (counts[1])
        host->metric(host, SN_METRIC_COUNTER, "input_alertmanager_alerts_resolved_total",
                     "Resolved alerts handed to the core", (double)counts[1]);
    if (counts[2])
        host->metric(host, SN_METRIC_COUNTER, "input_alertmanager_alerts_fitted_total",
                     "Alerts whose labels, names or annotations were cut to fit a record",
                     (double)counts[2]);
    a->firing += counts[0];
    a->resolved += counts[1];
    reply(a, req, rid, 200, json_pack("{s:i}", "accepted", taken));
out:
    free(out.p);
}

/* ---- lifecycle ---- */

static void am_destroy(void *self)
{
    am_t *a = self;
    if (!a)
        return;
    wipe_free(a->token);
    wipe_free(a->basic);
    free(a);
}

static int am_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    int rc = SN_EINVAL;
    char *pass = NULL, *pair = NULL;
    am_t *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    a->host = host;
    const char *token = host->cfg_str(cfg, "token");
    const char *user = host->cfg_str(cfg, "username");
    const char *pw = host->cfg_str(cfg, "password");
    a->group_label = host->cfg_str(cfg, "group_label");
    a->max_alerts = host->cfg_int(cfg, "max_alerts");
    if (token && (user || pw)) {
        snprintf(err->msg, sizeof(err->msg), "token and username/password exclude each other");
        goto out;
    }
    if (!user != !pw) {
        snprintf(err->msg, sizeof(err->msg), "username and password go together");
        goto out;
    }
    if (user && (!*user || strchr(user, ':'))) {
        snprintf(err->msg, sizeof(err->msg), "username: empty or contains ':'");
        goto out;
    }
    if (a->max_alerts < 1 || a->max_alerts > 100000) {
        snprintf(err->msg, sizeof(err->msg), "max_alerts: %" PRId64 " is not in 1..100000",
                 a->max_alerts);
        goto out;
    }
    if (a->group_label &&
        (!snp_label_name_ok(a->group_label, strlen(a->group_label)) ||
         strcmp(a->group_label, "service") == 0 || strcmp(a->group_label, "alertname") == 0)) {
        snprintf(err->msg, sizeof(err->msg),
                 "group_label: '%.64s' is not a label name other than service and alertname",
                 a->group_label);
        goto out;
    }
    if (token) {
        a->token = resolve_secret(host, token);
        if (!a->token || !*a->token) {
            snprintf(err->msg, sizeof(err->msg), "token: empty or cannot be resolved");
            goto out;
        }
    }
    if (user) {
        pass = resolve_secret(host, pw);
        if (!pass || !*pass) {
            snprintf(err->msg, sizeof(err->msg), "password: empty or cannot be resolved");
            goto out;
        }
        size_t n = strlen(user) + strlen(pass) + 2;
        pair = malloc(n);
        if (pair) {
            snprintf(pair, n, "%s:%s", user, pass);
            a->basic = base64(pair);
        }
        if (!a->basic) {
            snprintf(err->msg, sizeof(err->msg), "out of memory");
            rc = SN_ENOMEM;
            goto out;
        }
    }
    *self = a;
    a = NULL;
    rc = 0;
out:
    wipe_free(pass);
    wipe_free(pair);
    am_destroy(a);
    return rc;
}

static int am_start(void *self)
{
    am_t *a = self;
    if (!SN_HOST_HAS(a->host, route_add))
        return SN_ENOTSUP;
    int rc = a->host->route_add(a->host, "POST", "", am_hook, a);
    if (rc == 0)
        rc = a->host->route_add(a->host, "POST", "webhook", am_hook, a);
    if (rc == SN_ENOTSUP) {
        a->host->log(a->host, SN_LOG_WARN, "HTTP API disabled: no route registered");
        return 0;
    }
    if (rc == 0 && !a->token && !a->basic)
        a->host->log(a->host, SN_LOG_WARN,
                     "no token or username/password: anyone who reaches the API can post alerts");
    return rc;
}

static int am_health(void *self, sn_health_t *out)
{
    am_t *a = self;
    out->ok = 1;
    snprintf(out->detail, sizeof(out->detail),
             "%lu notifications taken (%lu firing, %lu resolved alerts), %lu refused", a->payloads,
             a->firing, a->resolved, a->refused);
    return 0;
}

static const sn_input_ops_t am_ops = {.struct_size = sizeof(sn_input_ops_t)};

static const sn_plugin_t am_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_INPUT,
    .type = "alertmanager",
    .version = "1.0.0",
    .summary = "Alertmanager webhook receiver at POST /hooks/<instance>/webhook",
    .params = am_params,
    .create = am_create,
    .start = am_start,
    .destroy = am_destroy,
    .health = am_health,
    .ops = &am_ops,
};

SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &am_plugin;
}
