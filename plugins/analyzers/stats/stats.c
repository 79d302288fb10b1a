/**
 * @file stats.c
 * Analyzer `stats`: ranks the services of an incident as root-cause candidates from the timing
 * and strength of their anomalies and from recent change events, without any model.
 *
 * Input (the incident document built by the core): "anomalies" [{series, metric, labels, ts,
 * value, expected, score, confidence, detector}], "changes" [{ts, change, labels}], optionally
 * "logs" [{ts, log, level, labels}]. Anomalies and changes are grouped by the `service` label,
 * else `host`, else `instance`, else "unknown". ts is epoch ms (a number, or text holding epoch
 * ms or RFC3339).
 *
 * Ranking (why: the root of a cascade usually shows first, and most incidents follow a change):
 *   onset_w  = exp(-(onset - first onset of the incident) / 120 s)
 *   base     = 0.5 * onset_w + 0.3 * max score + 0.2 * min(1, anomalies / 5)
 *   no change:   confidence = 0.6 * base
 *   with change: confidence = 0.6 * base + 0.4 * kind_w * prox * (0.5 + 0.5 * onset_w)
 * where a change counts when it lies within `change_window` before the service's onset (or up
 * to a minute after: pipelines stamp a rollout when it completes), prox falls from 1 at the
 * onset to 0.5 at the window's edge, and kind_w is 1 for deploy, 0.9 config, 0.7 scale and 0.6
 * for other kinds. A change on a service with no anomaly of its own, shortly before the
 * incident's first onset, is a candidate with base 0.4 and onset_w 0.5. Symptom-only hypotheses
 * therefore stay at or below 0.6, and a change near the onset lifts its service above them.
 *
 * Result: {"hypotheses": [{"service", "cause", "confidence", "evidence": [...], "onset" and
 * "metric" (when the service has anomalies), "labels", and "change", "change_at", "version"
 * when a change is implicated}]}, highest
 * confidence first, at most `max_hypotheses`. Completes synchronously.
 */
#include <sentinel/plugin.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ST_MAX_SERVICES 512 /* bound on candidates per incident */
#define ST_MAX_METRICS 16   /* distinct metrics counted per service */
#define ST_ONSET_TAU_MS 120000.0
#define ST_CHANGE_GRACE_MS 60000
#define ST_MAX_LOG_EVIDENCE 2
#define ST_LOG_TEXT_MAX 120

typedef struct st {
    const sn_host_t *host;
    int64_t change_window_ms;
    int64_t max_hypotheses;
} st_t;

typedef struct st_svc {
    char name[128];
    int has_anoms;
    int64_t onset;
    const json_t *first; /* the strongest anomaly at the onset */
    double first_score;
    double max_score;
    size_t count;
    const char *metrics[ST_MAX_METRICS];
    size_t nmetrics;
    const json_t *change; /* the implicated change event, or NULL */
    int64_t change_ts;
    double onset_w;
    double conf;
} st_svc_t;

static const sn_param_t st_params[] = {
    {"change_window", SN_T_DURATION, "15m", 0,
     "how long before a service's first anomaly a change event (deploy, config, scale) on that "
     "service is still taken as its likely cause; bare numbers are seconds"},
    {"max_hypotheses", SN_T_INT, "5", 0, "hypotheses returned at most, 1 to 100"},
    {NULL, 0, NULL, 0, NULL},
};

static int st_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    int64_t cw = host->cfg_int(cfg, "change_window");
    int64_t mh = host->cfg_int(cfg, "max_hypotheses");
    if (cw <= 0) {
        snprintf(err->msg, sizeof(err->msg), "change_window must be positive");
        return SN_EINVAL;
    }
    if (mh < 1 || mh > 100) {
        snprintf(err->msg, sizeof(err->msg), "max_hypotheses must be between 1 and 100");
        return SN_EINVAL;
    }
    if (!SN_HOST_HAS(host, parse_time)) {
        snprintf(err->msg, sizeof(err->msg), "needs a host of ABI 1.1 or later (parse_time)");
        return SN_ENOTSUP;
    }
    st_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    s->host = host;
    s->change_window_ms = cw;
    s->max_hypotheses = mh;
    *self = s;
    return 0;
}

static void st_destroy(void *self)
{
    free(self);
}

/* ---- time ------------------------------------------------------------------------------- */

/* Epoch ms from a JSON number or time text (parsed by the host, one parser for all). */
static int st_time(const sn_host_t *h, const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v) && isfinite(json_real_value(v))) {
        *out = (int64_t)json_real_value(v);
        return 0;
    }
    if (json_is_string(v))
        return h->parse_time(h, json_string_value(v), out);
    return -1;
}

static void st_format_time(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        snprintf(out, 32, "%lld", (long long)ms);
        return;
    }
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac)
        snprintf(out + n, 32 - n, ".%03dZ", frac);
    else
        snprintf(out + n, 32 - n, "Z");
}

/* "45 s", "4 min", "2 h 5 min" */
static void st_format_lag(int64_t ms, char *out, size_t len)
{
    int64_t s = (ms + 500) / 1000;
    if (s < 60)
        snprintf(out, len, "%lld s", (long long)s);
    else if (s < 3600)
        snprintf(out, len, "%lld min", (long long)((s + 30) / 60));
    else
        snprintf(out, len, "%lld h %lld min", (long long)(s / 3600), (long long)((s % 3600) / 60));
}

/* Short human number: 840, 12.5, 0.0593, 1586296965. */
static void st_format_num(double v, char *out, size_t len)
{
    double a = fabs(v);
    if (!isfinite(v))
        snprintf(out, len, "%g", v);
    else if (a >= 100 || (v == floor(v) && a < 1e15))
        snprintf(out, len, "%.0f", v);
    else if (a >= 1)
        snprintf(out, len, "%.2f", v);
    else
        snprintf(out, len, "%.3g", v);
    if (strchr(out, '.') && !strchr(out, 'e')) {
        size_t n = strlen(out);
        while (n > 0 && out[n - 1] == '0')
            out[--n] = '\0';
        if (n > 0 && out[n - 1] == '.')
            out[--n] = '\0';
    }
}

/* ---- grouping --------------------------------------------------------------------------- */

static const char *st_label(const json_t *labels, const char *key)
{
    const json_t *v = json_object_get(labels, key);
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

/* The grouping key of a label set: service, else host, else instance. NULL when none. */
static const char *st_group(const json_t *labels)
{
    const char *s = st_label(labels, "service");
    if (!s)
        s = st_label(labels, "host");
    if (!s)
        s = st_label(labels, "instance");
    return s;
}

static double st_num(const json_t *o, const char *key, double def)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) && isfinite(json_number_value(v)) ? json_number_value(v) : def;
}

static const char *st_str(const json_t *o, const char *key, const char *def)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : def;
}

typedef struct st_set {
    const sn_host_t *host;
    st_svc_t *v;
    size_t n, cap;
} st_set_t;

static st_svc_t *st_find(st_set_t *set, const char *name, int create)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->v[i].name, name) == 0)
            return &set->v[i];
    if (!create || set->n >= ST_MAX_SERVICES)
        return NULL;
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 8;
        st_svc_t *v = realloc(set->v, cap * sizeof(*v));
        if (!v)
            return NULL;
        set->v = v;
        set->cap = cap;
    }
    st_svc_t *s = &set->v[set->n++];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    return s;
}

static void st_add_anomaly(st_set_t *set, const json_t *a)
{
    int64_t ts;
    if (!json_is_object(a) || st_time(set->host, json_object_get(a, "ts"), &ts) != 0)
        return;
    const char *name = st_group(json_object_get(a, "labels"));
    st_svc_t *s = st_find(set, name ? name : "unknown", 1);
    if (!s)
        return;
    double score = st_num(a, "score", 0);
    if (!s->has_anoms || ts < s->onset || (ts == s->onset && score > s->first_score)) {
        s->onset = ts;
        s->first = a;
        s->first_score = score;
    }
    if (!s->has_anoms || score > s->max_score)
        s->max_score = score;
    s->has_anoms = 1;
    s->count++;
    const char *metric = st_str(a, "metric", NULL);
    if (metric) {
        size_t i = 0;
        while (i < s->nmetrics && strcmp(s->metrics[i], metric) != 0)
            i++;
        if (i == s->nmetrics && s->nmetrics < ST_MAX_METRICS)
            s->metrics[s->nmetrics++] = metric;
    }
}

/* Keep, per service, the change nearest to (and preferably before) the reference time. */
static void st_add_change(const st_t *st, st_set_t *set, const json_t *c, int64_t first_onset)
{
    int64_t ts;
    if (!json_is_object(c) || st_time(set->host, json_object_get(c, "ts"), &ts) != 0)
        return;
    const char *name = st_group(json_object_get(c, "labels"));
    if (!name)
        return;
    st_svc_t *s = st_find(set, name, 0);
    int64_t ref = s && s->has_anoms ? s->onset : first_onset;
    if (ts < ref - st->change_window_ms || ts > ref + ST_CHANGE_GRACE_MS)
        return;
    if (!s) {
        s = st_find(set, name, 1);
        if (!s)
            return;
        s->onset = first_onset;
    }
    if (s->change) {
        int64_t old = s->change_ts, now = ts;
        /* Prefer a change at or before the reference, and the latest of those. */
        int old_before = old <= ref, new_before = now <= ref;
        if (old_before && !new_before)
            return;
        if (old_before == new_before && (new_before ? now < old : now > old))
            return;
    }
    s->change = c;
    s->change_ts = ts;
}

static double st_kind_weight(const char *kind)
{
    if (strcmp(kind, "deploy") == 0)
        return 1.0;
    if (strcmp(kind, "config") == 0)
        return 0.9;
    if (strcmp(kind, "scale") == 0)
        return 0.7;
    return 0.6;
}

static void st_score(const st_t *st, st_svc_t *s, int64_t first_onset)
{
    double base;
    if (s->has_anoms) {
        double lag = (double)(s->onset - first_onset);
        s->onset_w = exp(-(lag > 0 ? lag : 0) / ST_ONSET_TAU_MS);
        double breadth = (double)s->count / 5.0;
        base = 0.5 * s->onset_w + 0.3 * (s->max_score < 1 ? s->max_score : 1) +
               0.2 * (breadth < 1 ? breadth : 1);
    } else {
        s->onset_w = 0.5;
        base = 0.4;
    }
    double conf = 0.6 * base;
    if (s->change) {
        int64_t ref = s->onset;
        double before = (double)(ref - s->change_ts);
        double frac = before > 0 ? before / (double)st->change_window_ms : 0;
        double prox = 1 - 0.5 * (frac < 1 ? frac : 1);
        const char *kind = st_str(s->change, "change", "change");
        conf += 0.4 * st_kind_weight(kind) * prox * (0.5 + 0.5 * s->onset_w);
    }
    if (conf > 1)
        conf = 1;
    if (conf < 0)
        conf = 0;
    s->conf = round(conf * 1000) / 1000;
}

static int st_cmp(const void *a, const void *b)
{
    const st_svc_t *x = a, *y = b;
    if (x->conf != y->conf)
        return x->conf > y->conf ? -1 : 1;
    if (x->has_anoms != y->has_anoms)
        return x->has_anoms ? -1 : 1;
    if (x->onset != y->onset)
        return x->onset < y->onset ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* ---- output ----------------------------------------------------------------------------- */

static int st_evidence(json_t *ev, const char *fmt, ...) SN_PRINTF(2, 3);
static int st_evidence(json_t *ev, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return json_array_append_new(ev, json_string(buf));
}

/* "deploy checkout v2.3.1 at 2026-...Z (4 min before onset)" */
static void st_change_evidence(json_t *ev, const st_svc_t *s, const char *onset_name)
{
    const json_t *labels = json_object_get(s->change, "labels");
    const char *kind = st_str(s->change, "change", "change");
    const char *version = st_label(labels, "version");
    char when[32], lag[48];
    st_format_time(s->change_ts, when);
    int64_t d = s->onset - s->change_ts;
    if (d == 0)
        snprintf(lag, sizeof(lag), "at the onset");
    else
        st_format_lag(d > 0 ? d : -d, lag, sizeof(lag));
    int deploy = strcmp(kind, "deploy") == 0;
    st_evidence(ev, "%s%s %s%s%s at %s (%s%s%s)", kind, deploy ? "" : " change of", s->name,
                version ? " " : "", version ? version : "", when, lag,
                d == 0 ? "" : (d > 0 ? " before " : " after "), d == 0 ? "" : onset_name);
}

static void st_log_evidence(json_t *ev, const st_t *st, const st_svc_t *s, const json_t *logs)
{
    size_t i, shown = 0;
    const json_t *l;
    json_array_foreach(logs, i, l)
    {
        if (shown >= ST_MAX_LOG_EVIDENCE)
            break;
        const char *level = st_str(l, "level", "");
        if (strcmp(level, "error") != 0 && strcmp(level, "fatal") != 0 &&
            strcmp(level, "critical") != 0)
            continue;
        const char *name = st_group(json_object_get(l, "labels"));
        int64_t ts;
        if (!name || strcmp(name, s->name) != 0 ||
            st_time(st->host, json_object_get(l, "ts"), &ts) != 0)
            continue;
        if (ts < s->onset - st->change_window_ms)
            continue;
        char when[32];
        st_format_time(ts, when);
        const char *text = st_str(l, "log", "");
        st_evidence(ev, "%s log on %s at %s: %.*s%s", level, s->name, when, ST_LOG_TEXT_MAX, text,
                    strlen(text) > ST_LOG_TEXT_MAX ? "..." : "");
        shown++;
    }
}

static json_t *st_hypothesis(const st_t *st, const st_set_t *set, const st_svc_t *s,
                             int64_t first_onset, const json_t *logs)
{
    json_t *h = json_object(), *ev = json_array();
    if (!h || !ev)
        goto fail;
    char cause[256], when[32];
    const json_t *clabels = s->change ? json_object_get(s->change, "labels") : NULL;
    const char *version = clabels ? st_label(clabels, "version") : NULL;
    const char *metric = s->first ? st_str(s->first, "metric", "metric") : NULL;

    if (s->change) {
        const char *kind = st_str(s->change, "change", "change");
        if (strcmp(kind, "deploy") == 0)
            snprintf(cause, sizeof(cause), "deploy of %s%s%s", s->name, version ? " " : "",
                     version ? version : "");
        else
            snprintf(cause, sizeof(cause), "%s change of %s%s%s", kind, s->name, version ? " " : "",
                     version ? version : "");
    } else {
        snprintf(cause, sizeof(cause), "%s anomaly on %s", metric, s->name);
    }

    if (s->has_anoms) {
        char val[32], exp_[32];
        st_format_time(s->onset, when);
        st_format_num(st_num(s->first, "value", NAN), val, sizeof(val));
        const json_t *e = json_object_get(s->first, "expected");
        if (json_is_number(e)) {
            st_format_num(json_number_value(e), exp_, sizeof(exp_));
            st_evidence(ev, "first anomaly on %s at %s (%s %s vs expected %s)", s->name, when,
                        metric, val, exp_);
        } else {
            st_evidence(ev, "first anomaly on %s at %s (%s %s)", s->name, when, metric, val);
        }
        if (s->change)
            st_change_evidence(ev, s, "onset");
        char score[32];
        st_format_num(s->max_score, score, sizeof(score));
        st_evidence(ev, "%zu anomal%s on %s across %zu metric%s, max score %s", s->count,
                    s->count == 1 ? "y" : "ies", s->name, s->nmetrics, s->nmetrics == 1 ? "" : "s",
                    score);
        /* Timing relative to the other services: the argument for or against being the root. */
        const st_svc_t *next = NULL, *earlier = NULL;
        size_t tied = 0, others = 0;
        for (size_t i = 0; i < set->n; i++) {
            const st_svc_t *o = &set->v[i];
            if (o == s || !o->has_anoms)
                continue;
            others++;
            if (o->onset == s->onset)
                tied++;
            else if (o->onset > s->onset && (!next || o->onset < next->onset))
                next = o;
            else if (o->onset < s->onset && (!earlier || o->onset < earlier->onset))
                earlier = o;
        }
        char lag[48];
        if (earlier) {
            st_format_lag(s->onset - first_onset, lag, sizeof(lag));
            st_evidence(ev, "onset %s after the incident's first anomaly (on %s)", lag,
                        earlier->name);
        } else if (others > 0 && tied == 0 && next) {
            st_format_lag(next->onset - s->onset, lag, sizeof(lag));
            st_evidence(ev, "%s showed anomalies first, %s before %s", s->name, lag, next->name);
        } else if (tied > 0) {
            st_evidence(ev, "%s was among the %zu services whose anomalies started first", s->name,
                        tied + 1);
        }
        st_log_evidence(ev, st, s, logs);
    } else {
        st_change_evidence(ev, s, "the incident's first anomaly");
        st_evidence(ev, "no anomaly on %s itself; it may act through a dependency", s->name);
    }

    st_format_time(s->onset, when);
    const json_t *labels = s->first ? json_object_get(s->first, "labels") : clabels;
    /* evidence first: set_new consumes ev whether or not it succeeds */
    if (json_object_set_new(h, "evidence", ev) ||
        json_object_set_new(h, "service", json_string(s->name)) ||
        json_object_set_new(h, "cause", json_string(cause)) ||
        json_object_set_new(h, "confidence", json_real(s->conf)))
        goto fail_h;
    if (s->has_anoms && json_object_set_new(h, "onset", json_string(when)))
        goto fail_h;
    st_format_time(s->change_ts, when);
    if (s->change && json_object_set_new(h, "change_at", json_string(when)))
        goto fail_h;
    if (metric && json_object_set_new(h, "metric", json_string(metric)))
        goto fail_h;
    if (json_is_object(labels) && json_object_set_new(h, "labels", json_deep_copy(labels)))
        goto fail_h;
    if (s->change &&
        json_object_set_new(h, "change", json_string(st_str(s->change, "change", "change"))))
        goto fail_h;
    if (version && json_object_set_new(h, "version", json_string(version)))
        goto fail_h;
    return h;
fail:
    json_decref(ev);
fail_h:
    json_decref(h);
    return NULL;
}

/**
 * Rank root-cause candidates of @p incident; done runs before this returns.
 * Ownership: @p incident is borrowed; the result is borrowed by done for the call.
 * Thread: loop.
 */
static void st_analyze(void *self, const json_t *incident, sn_done_fn done, void *arg)
{
    const st_t *st = self;
    st_set_t set = {.host = st->host};
    json_t *res = NULL, *hyps = NULL;
    int rc = SN_ENOMEM;
    if (!json_is_object(incident)) {
        rc = SN_EINVAL;
        goto out;
    }
    const json_t *anoms = json_object_get(incident, "anomalies");
    const json_t *changes = json_object_get(incident, "changes");
    const json_t *logs = json_object_get(incident, "logs");
    size_t i;
    const json_t *v;
    json_array_foreach(anoms, i, v)
    {
        st_add_anomaly(&set, v);
    }

    int64_t first_onset = 0;
    int any = 0;
    for (i = 0; i < set.n; i++) {
        if (!any || set.v[i].onset < first_onset)
            first_onset = set.v[i].onset;
        any = 1;
    }
    if (any) {
        json_array_foreach(changes, i, v)
        {
            st_add_change(st, &set, v, first_onset);
        }
    }
    for (i = 0; i < set.n; i++)
        st_score(st, &set.v[i], first_onset);
    if (set.n > 1)
        qsort(set.v, set.n, sizeof(*set.v), st_cmp);

    hyps = json_array();
    res = json_object();
    if (!hyps || !res)
        goto out;
    for (i = 0; i < set.n && i < (size_t)st->max_hypotheses; i++) {
        json_t *h = st_hypothesis(st, &set, &set.v[i], first_onset, logs);
        if (!h || json_array_append_new(hyps, h) != 0)
            goto out;
    }
    int set_rc = json_object_set_new(res, "hypotheses", hyps);
    hyps = NULL;
    if (set_rc != 0)
        goto out;
    rc = 0;
out:
    free(set.v);
    json_decref(hyps);
    done(arg, rc, rc == 0 ? res : NULL);
    json_decref(res);
}

static int st_health(void *self, sn_health_t *out)
{
    (void)self;
    out->ok = 1;
    out->detail[0] = '\0';
    return 0;
}

static const sn_analyzer_ops_t st_ops = {
    .struct_size = sizeof(sn_analyzer_ops_t),
    .analyze = st_analyze,
    .plan = NULL,
};

static const sn_plugin_t st_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_ANALYZER,
    .type = "stats",
    .version = "1.0.0",
    .summary = "root-cause ranking from anomaly onset, strength and recent change events",
    .params = st_params,
    .create = st_create,
    .destroy = st_destroy,
    .health = st_health,
    .ops = &st_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &st_plugin;
}
