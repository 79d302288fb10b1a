/**
 * @file metrics.c
 * The metrics registry behind /metrics: counters and gauges keyed by name + label set, rendered
 * in the Prometheus text format 0.0.4 (HELP/TYPE once per name, families grouped). One mutex
 * guards it, which is fine for control-plane rates; hot paths keep their own counters and
 * publish them here. The registry is bounded: past SN_METRICS_MAX_SERIES new series are
 * refused and counted in sentinel_metrics_series_dropped_total.
 */
#include "runtime-internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SN_METRIC_PREFIX "sentinel_"
#define SN_METRIC_BUCKETS 4096

typedef struct sn_family {
    struct sn_family *next;
    char *name;
    char *help;
    sn_metric_kind_t kind;
} sn_family_t;

typedef struct sn_series {
    struct sn_series *next;
    sn_family_t *fam;
    char *labels; /**< rendered label set without braces, "" when none */
    double v;
} sn_series_t;

struct sn_metrics {
    pthread_mutex_t mu;
    sn_series_t *series[SN_METRIC_BUCKETS];
    sn_family_t *families[SN_METRIC_BUCKETS];
    size_t nseries;
    sn_series_t *dropped; /**< sentinel_metrics_series_dropped_total */
    sn_series_t *invalid; /**< sentinel_metrics_invalid_total */
};

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static size_t bucket(const char *name, const char *labels)
{
    uint64_t h = hash_str(14695981039346656037ULL, name);
    h = hash_str(h ^ 0xff, labels);
    return (size_t)(h % SN_METRIC_BUCKETS);
}

size_t sn_metric_escape(char *out, size_t cap, const char *value)
{
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (const char *p = value ? value : ""; *p; p++) {
        const char *rep = NULL;
        char one[2] = {*p, '\0'};
        if (*p == '\\')
            rep = "\\\\";
        else if (*p == '"')
            rep = "\\\"";
        else if (*p == '\n')
            rep = "\\n";
        else
            rep = one;
        size_t n = strlen(rep);
        if (o + n >= cap)
            break;
        memcpy(out + o, rep, n);
        o += n;
    }
    out[o] = '\0';
    return o;
}

static int valid_metric_name(const char *s)
{
    if (!*s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    return 1;
}

/** Check a rendered label set (name="value",...) and copy it without a trailing comma.
 * Returns NULL when it is malformed (bad name, unescaped quote or newline, bad escape). */
static char *normalize_labels(const char *in)
{
    if (!in)
        in = "";
    size_t n = strlen(in);
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    const char *p = in;
    while (*p) {
        const char *name = p;
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_'))
            goto bad;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
               *p == '_')
            p++;
        if (p - name >= 2 && name[0] == '_' && name[1] == '_')
            goto bad;
        if (*p++ != '=' || *p++ != '"')
            goto bad;
        while (*p && *p != '"') {
            if (*p == '\n')
                goto bad;
            if (*p == '\\') {
                p++;
                if (*p != '\\' && *p != '"' && *p != 'n')
                    goto bad;
            }
            p++;
        }
        if (*p++ != '"')
            goto bad;
        if (*p == ',')
            p++;
        else if (*p)
            goto bad;
    }
    memcpy(out, in, n + 1);
    if (n > 0 && out[n - 1] == ',')
        out[n - 1] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

/** Prefixed copy of @p name, or NULL when it is not a valid metric name. */
static char *full_name(const char *name)
{
    size_t plen = strncmp(name, SN_METRIC_PREFIX, strlen(SN_METRIC_PREFIX)) == 0
                      ? 0
                      : strlen(SN_METRIC_PREFIX);
    size_t n = strlen(name);
    char *out = malloc(plen + n + 1);
    if (!out)
        return NULL;
    memcpy(out, SN_METRIC_PREFIX, plen);
    memcpy(out + plen, name, n + 1);
    if (!valid_metric_name(out)) {
        free(out);
        return NULL;
    }
    return out;
}

static sn_series_t *find_locked(sn_metrics_t *m, const char *name, const char *labels)
{
    for (sn_series_t *s = m->series[bucket(name, labels)]; s; s = s->next)
        if (strcmp(s->fam->name, name) == 0 && strcmp(s->labels, labels) == 0)
            return s;
    return NULL;
}

static sn_family_t *family_locked(sn_metrics_t *m, const char *name, sn_metric_kind_t kind,
                                  const char *help, int *conflict)
{
    size_t b = bucket(name, "");
    *conflict = 0;
    for (sn_family_t *f = m->families[b]; f; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            *conflict = f->kind != kind;
            if (!f->help && help)
                f->help = strdup(help);
            return *conflict ? NULL : f;
        }
    }
    sn_family_t *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->name = strdup(name);
    f->help = help ? strdup(help) : NULL;
    f->kind = kind;
    if (!f->name) {
        free(f->help);
        free(f);
        return NULL;
    }
    f->next = m->families[b];
    m->families[b] = f;
    return f;
}

/** Create a series; the caller holds the lock and has checked the bound. */
static sn_series_t *add_locked(sn_metrics_t *m, sn_metric_kind_t kind, const char *name,
                               const char *help, const char *labels, int *conflict)
{
    sn_family_t *f = family_locked(m, name, kind, help, conflict);
    if (!f)
        return NULL;
    sn_series_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->labels = strdup(labels))) {
        free(s);
        return NULL;
    }
    s->fam = f;
    size_t b = bucket(name, labels);
    s->next = m->series[b];
    m->series[b] = s;
    m->nseries++;
    return s;
}

sn_metrics_t *sn_metrics_new(void)
{
    sn_metrics_t *m = calloc(1, sizeof(*m));
    int conflict;
    if (!m)
        return NULL;
    pthread_mutex_init(&m->mu, NULL);
    m->dropped = add_locked(m, SN_METRIC_COUNTER, "sentinel_metrics_series_dropped_total",
                            "New series refused because the registry was full.", "", &conflict);
    m->invalid = add_locked(m, SN_METRIC_COUNTER, "sentinel_metrics_invalid_total",
                            "Updates refused for a malformed name or label set, or a type clash.",
                            "", &conflict);
    if (!m->dropped || !m->invalid) {
        sn_metrics_free(m);
        return NULL;
    }
    return m;
}

void sn_metrics_free(sn_metrics_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < SN_METRIC_BUCKETS; i++) {
        while (m->series[i]) {
            sn_series_t *s = m->series[i];
            m->series[i] = s->next;
            free(s->labels);
            free(s);
        }
        while (m->families[i]) {
            sn_family_t *f = m->families[i];
            m->families[i] = f->next;
            free(f->name);
            free(f->help);
            free(f);
        }
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void sn_metric(sn_runtime_t *rt, sn_metric_kind_t kind, const char *name, const char *help,
               const char *labels, double v)
{
    if (!rt || !rt->metrics || !name)
        return;
    sn_metrics_t *m = rt->metrics;
    char *fname = full_name(name);
    char *lab = normalize_labels(labels);
    int valid = fname && lab && (kind == SN_METRIC_COUNTER || kind == SN_METRIC_GAUGE);
    pthread_mutex_lock(&m->mu);
    if (!valid) {
        m->invalid->v += 1;
        goto out;
    }
    sn_series_t *s = find_locked(m, fname, lab);
    if (!s) {
        if (m->nseries >= SN_METRICS_MAX_SERIES) {
            m->dropped->v += 1;
            goto out;
        }
        int conflict = 0;
        s = add_locked(m, kind, fname, help, lab, &conflict);
        if (!s) {
            if (conflict)
                m->invalid->v += 1;
            goto out;
        }
    } else if (s->fam->kind != kind) {
        m->invalid->v += 1;
        goto out;
    }
    if (kind == SN_METRIC_GAUGE)
        s->v = v;
    else if (v > 0) /* counters only go up */
        s->v += v;
out:
    pthread_mutex_unlock(&m->mu);
    free(fname);
    free(lab);
}

double sn_metric_value(sn_runtime_t *rt, const char *name, const char *labels)
{
    if (!rt || !rt->metrics || !name)
        return 0;
    double v = 0;
    char *fname = full_name(name);
    char *lab = normalize_labels(labels);
    if (fname && lab) {
        pthread_mutex_lock(&rt->metrics->mu);
        sn_series_t *s = find_locked(rt->metrics, fname, lab);
        if (s)
            v = s->v;
        pthread_mutex_unlock(&rt->metrics->mu);
    }
    free(fname);
    free(lab);
    return v;
}

/* ---- rendering ------------------------------------------------------------------------- */

typedef struct sn_buf {
    char *p;
    size_t len, cap;
    int failed;
} sn_buf_t;

static void buf_add(sn_buf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(sn_buf_t *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void format_value(double v, char out[64])
{
    if (isnan(v))
        snprintf(out, 64, "NaN");
    else if (isinf(v))
        snprintf(out, 64, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, 64, "%.0f", v);
    else {
        snprintf(out, 64, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, 64, "%.17g", v);
    }
}

static int series_cmp(const void *a, const void *b)
{
    const sn_series_t *x = *(const sn_series_t *const *)a, *y = *(const sn_series_t *const *)b;
    int c = strcmp(x->fam->name, y->fam->name);
    return c ? c : strcmp(x->labels, y->labels);
}

char *sn_metrics_render(sn_runtime_t *rt)
{
    if (!rt || !rt->metrics)
        return NULL;
    sn_metrics_t *m = rt->metrics;
    sn_buf_t b = {0};
    char *result = NULL;
    pthread_mutex_lock(&m->mu);
    sn_series_t **all = calloc(m->nseries ? m->nseries : 1, sizeof(*all));
    if (!all)
        goto out;
    size_t n = 0;
    for (size_t i = 0; i < SN_METRIC_BUCKETS; i++)
        for (sn_series_t *s = m->series[i]; s; s = s->next)
            all[n++] = s;
    qsort(all, n, sizeof(*all), series_cmp);
    buf_str(&b, "");
    const sn_family_t *cur = NULL;
    for (size_t i = 0; i < n; i++) {
        const sn_series_t *s = all[i];
        if (s->fam != cur) {
            cur = s->fam;
            if (cur->help) {
                buf_str(&b, "# HELP ");
                buf_str(&b, cur->name);
                buf_str(&b, " ");
                for (const char *p = cur->help; *p; p++) {
                    if (*p == '\\')
                        buf_str(&b, "\\\\");
                    else if (*p == '\n')
                        buf_str(&b, "\\n");
                    else
                        buf_add(&b, p, 1);
                }
                buf_str(&b, "\n");
            }
            buf_str(&b, "# TYPE ");
            buf_str(&b, cur->name);
            buf_str(&b, cur->kind == SN_METRIC_COUNTER ? " counter\n" : " gauge\n");
        }
        char val[64];
        format_value(s->v, val);
        buf_str(&b, s->fam->name);
        if (s->labels[0]) {
            buf_str(&b, "{");
            buf_str(&b, s->labels);
            buf_str(&b, "}");
        }
        buf_str(&b, " ");
        buf_str(&b, val);
        buf_str(&b, "\n");
    }
    if (!b.failed) {
        result = b.p;
        b.p = NULL;
    }
out:
    pthread_mutex_unlock(&m->mu);
    free(all);
    free(b.p);
    return result;
}
