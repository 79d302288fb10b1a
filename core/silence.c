/**
 * @file silence.c
 * Silences and maintenance windows. A silence matches incidents by labels (every matcher must
 * hold for one of the incident's anomalies: an exact value, or a prefix ending in '*'; the
 * label "service" also matches the incident's services) between starts_at and ends_at,
 * optionally only inside a weekly window (days and a UTC time range, "22:00-02:00" wraps past
 * midnight). A silenced incident is still recorded and analysed, but it neither notifies nor
 * remediates without a human: every action of its plan waits for approval.
 *
 * Silences are state-store documents "silence/<uuid>" (open while they can still apply), so they
 * survive restarts and are shared by instances of one store; created and expired through the
 * API, both audited.
 */
#include "engine-internal.h"

#include <stdlib.h>
#include <string.h>

#define SN_SILENCES_MAX 1000
#define SN_MATCHERS_MAX 16

struct sn_silence {
    struct sn_silence *next;
    char id[48];
    json_t *doc; /* {"id","matchers","starts_at","ends_at","weekly","comment","created_by"...} */
    int64_t starts, ends;
    int days;             /* weekly: bit 0 = Monday ... bit 6 = Sunday; 0 = no weekly window */
    int from_min, to_min; /* minutes of the UTC day */
    int expired;
    int busy;    /* a save is in flight */
    int dropped; /* its creation could not be stored: gone, freed once idle */
    int64_t version;
    sn_engine_t *e;
    /* Callers waiting for the save in flight, and for the next one: a change made during a
     * save (next_w not empty) is saved when it completes. */
    struct swait *saving_w, *next_w;
};

/* An API call waiting for its change to be stored. */
typedef struct swait {
    struct swait *next;
    int expire; /* else: the creation */
    char actor[160];
    sn_done_fn done;
    void *arg;
} swait_t;

static const char *const day_names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

static int parse_hhmm(const char *s, int *min)
{
    int h, m;
    char tail;
    if (sscanf(s, "%2d:%2d%c", &h, &m, &tail) != 2 || h < 0 || h > 24 || m < 0 || m > 59 ||
        (h == 24 && m != 0))
        return -1;
    *min = h * 60 + m;
    return 0;
}

/* "weekly": {"days": ["mon", ...], "time": "HH:MM-HH:MM"} (UTC). */
static const char *parse_weekly(const json_t *w, int *days, int *from, int *to)
{
    if (!w)
        return NULL;
    const json_t *d = json_object_get(w, "days");
    const char *t = json_string_value(json_object_get(w, "time"));
    if (!json_is_object(w) || !json_is_array(d) || !json_array_size(d) || !t)
        return "weekly needs {\"days\": [\"mon\", ...], \"time\": \"HH:MM-HH:MM\"}";
    *days = 0;
    size_t i;
    json_t *v;
    json_array_foreach(d, i, v)
    {
        int k = -1;
        for (int j = 0; j < 7 && json_is_string(v); j++)
            if (strcmp(json_string_value(v), day_names[j]) == 0)
                k = j;
        if (k < 0)
            return "weekly days are mon, tue, wed, thu, fri, sat, sun";
        *days |= 1 << k;
    }
    char a[8] = "", b[8] = "";
    const char *dash = strchr(t, '-');
    if (!dash || dash - t >= (int)sizeof(a) || strlen(dash + 1) >= sizeof(b))
        return "weekly time is HH:MM-HH:MM (UTC)";
    memcpy(a, t, (size_t)(dash - t));
    snprintf(b, sizeof(b), "%s", dash + 1);
    if (parse_hhmm(a, from) || parse_hhmm(b, to) || *from == *to)
        return "weekly time is HH:MM-HH:MM (UTC), start and end different";
    return NULL;
}

/* Inside the weekly window at @p now (UTC)? A window past midnight belongs to its start day. */
static int in_weekly(const sn_silence_t *s, int64_t now)
{
    if (!s->days)
        return 1;
    int64_t day = now >= 0 ? now / 86400000 : (now - 86399999) / 86400000;
    int min = (int)((now - day * 86400000) / 60000);
    int wd = (int)(((day % 7) + 7 + 3) % 7); /* 1970-01-01 was a Thursday: Monday = 0 */
    if (s->from_min < s->to_min)
        return (s->days >> wd & 1) && min >= s->from_min && min < s->to_min;
    int yesterday = (wd + 6) % 7;
    return ((s->days >> wd & 1) && min >= s->from_min) ||
           ((s->days >> yesterday & 1) && min < s->to_min);
}

static int active(const sn_silence_t *s, int64_t now)
{
    return !s->expired && !s->dropped && now >= s->starts && now < s->ends && in_weekly(s, now);
}

static int value_matches(const char *pattern, const char *value)
{
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '*')
        return strncmp(pattern, value, n - 1) == 0;
    return strcmp(pattern, value) == 0;
}

static int labels_match(const json_t *matchers, const json_t *labels)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)matchers, k, v)
    {
        const char *have = json_string_value(json_object_get(labels, k));
        if (!have || !value_matches(json_string_value(v), have))
            return 0;
    }
    return 1;
}

static int incident_matches(const sn_silence_t *s, const sn_incident_t *inc)
{
    const json_t *m = json_object_get(s->doc, "matchers");
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(inc->doc, "anomalies"), i, a)
    {
        if (labels_match(m, json_object_get(a, "labels")))
            return 1;
    }
    /* A service matcher alone also matches the incident's services. */
    const char *svc = json_string_value(json_object_get(m, "service"));
    if (svc && json_object_size(m) == 1) {
        json_t *x;
        json_array_foreach(json_object_get(inc->doc, "services"), i, x)
        {
            if (value_matches(svc, json_string_value(x)))
                return 1;
        }
    }
    return 0;
}

const char *sn_silence_match(sn_engine_t *e, const sn_incident_t *inc)
{
    int64_t now = sn_now_ms();
    for (sn_silence_t *s = e->silences; s; s = s->next)
        if (active(s, now) && incident_matches(s, inc))
            return s->id;
    return NULL;
}

/* ---- persistence ---- */

/* The change @p w waited for is stored (status 0) or not: audit it, or undo it, and answer. */
static void finish(sn_silence_t *s, swait_t *w, int status)
{
    sn_engine_t *e = s->e;
    if (status == 0) {
        sn_auditlog_append(e, w->actor, w->expire ? "silence_expire" : "silence_create", NULL,
                           s->doc);
    } else if (w->expire && s->expired && !s->dropped) {
        s->expired = 0; /* as stored: the caller may try again */
        json_object_set_new(s->doc, "expired", json_false());
        json_object_del(s->doc, "expired_by");
    } else if (!w->expire) {
        s->dropped = 1;
    }
    w->done(w->arg, status, status == 0 ? s->doc : NULL);
    free(w);
}

static void finish_all(sn_silence_t *s, swait_t *w, int status)
{
    while (w) {
        swait_t *n = w->next;
        finish(s, w, status);
        w = n;
    }
}

/* The engine is going away with the save in flight: its callers learn it, nothing else. */
static void abandon_all(swait_t *w)
{
    while (w) {
        swait_t *n = w->next;
        w->done(w->arg, SN_EAGAIN, NULL);
        free(w);
        w = n;
    }
}

static void save_now(sn_silence_t *s);

static void saved(void *arg, int status, json_t *result)
{
    (void)result;
    sn_silence_t *s = arg;
    s->busy = 0;
    if (status == 0)
        s->version++;
    else
        sn_log(SN_LOG_ERROR, "silence", NULL, NULL, "could not store silence %s (%d)", s->id,
               status);
    swait_t *w = s->saving_w;
    s->saving_w = NULL;
    finish_all(s, w, status);
    w = s->next_w;
    s->next_w = NULL;
    if (!w)
        return;
    if (s->dropped) { /* its creation was not stored: nor is what followed */
        finish_all(s, w, status);
        return;
    }
    s->saving_w = w;
    save_now(s);
}

static void save_now(sn_silence_t *s)
{
    const sn_store_ops_t *ops = s->e->state->in->mod->plugin->ops;
    int open = !s->expired && s->ends > sn_now_ms();
    char sid[64];
    snprintf(sid, sizeof(sid), "silence/%s", s->id);
    s->busy = 1;
    ops->state_save(s->e->state->self, sid, s->version + 1, open, s->doc, saved, s);
}

/* Store @p s and answer @p w when its change is stored. One save per silence is in flight: a
 * second would carry the same version and the store would refuse it (an expiry right after the
 * creation was lost on restart that way). A change made meanwhile is saved, whole, next. */
static void save(sn_engine_t *e, sn_silence_t *s, swait_t *w)
{
    s->e = e;
    if (!e->state) {
        finish(s, w, 0);
        return;
    }
    if (s->busy) {
        w->next = s->next_w;
        s->next_w = w;
        return;
    }
    w->next = NULL;
    s->saving_w = w;
    save_now(s);
}

static swait_t *waiter(int expire, const char *actor, sn_done_fn done, void *arg)
{
    swait_t *w = calloc(1, sizeof(*w));
    if (w) {
        w->expire = expire;
        snprintf(w->actor, sizeof(w->actor), "%s", actor);
        w->done = done;
        w->arg = arg;
    }
    return w;
}

/* Build from a document (the API's, or the store's); NULL with @p why set. */
static sn_silence_t *from_doc(json_t *doc, char *why, size_t cap)
{
    const json_t *m = json_object_get(doc, "matchers");
    const char *reason = NULL;
    if (!json_is_object(m) || json_object_size(m) == 0 || json_object_size(m) > SN_MATCHERS_MAX)
        reason = "matchers must be an object of 1 to 16 label: value pairs";
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)m, k, v)
    {
        if (!json_is_string(v) || !json_string_length(v))
            reason = "every matcher value is a non-empty string (a trailing * matches a prefix)";
    }
    int64_t starts = json_integer_value(json_object_get(doc, "starts_at_ms"));
    int64_t ends = json_integer_value(json_object_get(doc, "ends_at_ms"));
    if (!reason && ends <= starts)
        reason = "ends_at must be after starts_at";
    int days = 0, from = 0, to = 0;
    if (!reason)
        reason = parse_weekly(json_object_get(doc, "weekly"), &days, &from, &to);
    if (reason) {
        snprintf(why, cap, "%s", reason);
        return NULL;
    }
    sn_silence_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    s->doc = json_incref(doc);
    s->starts = starts;
    s->ends = ends;
    s->days = days;
    s->from_min = from;
    s->to_min = to;
    s->expired = json_is_true(json_object_get(doc, "expired"));
    snprintf(s->id, sizeof(s->id), "%s", json_string_value(json_object_get(doc, "id")));
    return s;
}

static size_t count(const sn_engine_t *e)
{
    size_t n = 0;
    for (const sn_silence_t *s = e->silences; s; s = s->next)
        n++;
    return n;
}

/* Drop expired or ended silences from memory (their documents stay in the store, closed). */
static void prune(sn_engine_t *e)
{
    int64_t now = sn_now_ms();
    for (sn_silence_t **pp = &e->silences; *pp;) {
        sn_silence_t *s = *pp;
        if (!s->busy && (s->dropped || s->expired || s->ends <= now - 86400000)) {
            *pp = s->next;
            json_decref(s->doc);
            free(s);
            continue;
        }
        pp = &s->next;
    }
}

static int64_t time_field(const json_t *body, const char *key, int64_t dflt, int *bad)
{
    const json_t *v = json_object_get(body, key);
    if (!v)
        return dflt;
    int64_t ms;
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v) && sn_parse_time_ms(json_string_value(v), &ms) == 0)
        return ms;
    *bad = 1;
    return dflt;
}

int sn_silence_create(sn_engine_t *e, const json_t *body, const char *actor, char *why, size_t cap,
                      sn_done_fn done, void *arg)
{
    prune(e);
    if (count(e) >= SN_SILENCES_MAX) {
        snprintf(why, cap, "too many silences (%d); expire some first", SN_SILENCES_MAX);
        return SN_ENOMEM;
    }
    if (!json_is_object(body)) {
        snprintf(why, cap, "body must be a JSON object");
        return SN_EINVAL;
    }
    int bad = 0;
    int64_t now = sn_now_ms();
    int64_t starts = time_field(body, "starts_at", now, &bad);
    int64_t ends = time_field(body, "ends_at", 0, &bad);
    const json_t *dur = json_object_get(body, "duration_s");
    if (!ends && json_is_integer(dur) && json_integer_value(dur) > 0)
        ends = starts + json_integer_value(dur) * 1000;
    if (bad || !ends) {
        snprintf(why, cap,
                 "give ends_at (RFC 3339 or epoch ms) or duration_s; starts_at is "
                 "optional (default now)");
        return SN_EINVAL;
    }
    char uuid[37], ts[32], st[32], en[32];
    sn_uuid7(uuid);
    sn_format_time_ms(now, ts);
    sn_format_time_ms(starts, st);
    sn_format_time_ms(ends, en);
    json_t *doc =
        json_pack("{s:s,s:O,s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:b}", "id", uuid, "matchers",
                  json_object_get(body, "matchers"), "starts_at", st, "ends_at", en, "starts_at_ms",
                  (json_int_t)starts, "ends_at_ms", (json_int_t)ends, "comment",
                  json_string_value(json_object_get(body, "comment"))
                      ? json_string_value(json_object_get(body, "comment"))
                      : "",
                  "created_by", actor, "created_at", ts, "expired", 0);
    if (doc && json_object_get(body, "weekly"))
        json_object_set(doc, "weekly", json_object_get(body, "weekly"));
    swait_t *w = waiter(0, actor, done, arg);
    sn_silence_t *s = doc && w ? from_doc(doc, why, cap) : NULL;
    json_decref(doc);
    if (!s) {
        if (!w || !doc)
            snprintf(why, cap, "out of memory");
        free(w);
        return doc && w ? SN_EINVAL : SN_ENOMEM;
    }
    s->next = e->silences;
    e->silences = s;
    save(e, s, w);
    return 0;
}

int sn_silence_expire(sn_engine_t *e, const char *id, const char *actor, sn_done_fn done, void *arg)
{
    for (sn_silence_t *s = e->silences; s; s = s->next) {
        if (s->dropped || strcmp(s->id, id) != 0)
            continue;
        if (s->expired)
            return SN_EINVAL;
        swait_t *w = waiter(1, actor, done, arg);
        if (!w)
            return SN_ENOMEM;
        s->expired = 1;
        json_object_set_new(s->doc, "expired", json_true());
        json_object_set_new(s->doc, "expired_by", json_string(actor));
        save(e, s, w);
        return 0;
    }
    return SN_ENOTFOUND;
}

json_t *sn_silence_list(sn_engine_t *e)
{
    int64_t now = sn_now_ms();
    json_t *arr = json_array();
    for (sn_silence_t *s = e->silences; s; s = s->next) {
        if (s->dropped)
            continue;
        json_t *d = json_deep_copy(s->doc);
        json_object_del(d, "starts_at_ms");
        json_object_del(d, "ends_at_ms");
        json_object_set_new(d, "active", json_boolean(active(s, now)));
        json_array_append_new(arr, d);
    }
    return json_pack("{s:o}", "silences", arr);
}

int sn_silence_is(const char *state_id)
{
    return strncmp(state_id, "silence/", 8) == 0;
}

static void resumed(void *arg, int status, json_t *result)
{
    sn_engine_t *e = arg;
    json_t *doc = json_object_get(result, "doc");
    const char *id = json_string_value(json_object_get(doc, "id"));
    if (status != 0 || !id)
        return;
    for (sn_silence_t *s = e->silences; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return;
    char why[160];
    sn_silence_t *s = from_doc(json_deep_copy(doc), why, sizeof(why));
    if (!s) {
        sn_log(SN_LOG_WARN, "silence", NULL, NULL, "stored silence %s ignored: %s", id, why);
        return;
    }
    json_decref(s->doc); /* from_doc took its own reference to the copy */
    s->version = json_integer_value(json_object_get(result, "version"));
    s->next = e->silences;
    e->silences = s;
}

void sn_silence_resume(sn_engine_t *e, const char *id)
{
    if (e->state)
        ((const sn_store_ops_t *)e->state->in->mod->plugin->ops)
            ->state_load(e->state->self, id, resumed, e);
}

void sn_silences_free(sn_engine_t *e)
{
    while (e->silences) {
        sn_silence_t *s = e->silences;
        e->silences = s->next;
        abandon_all(s->saving_w);
        abandon_all(s->next_w);
        json_decref(s->doc);
        free(s);
    }
}
