/**
 * @file zscore.c
 * Detector `zscore`: flags points that lie more than `threshold` standard deviations from a
 * per-series baseline. The baseline is an exponentially weighted mean and variance (the
 * default) or, with `robust = true`, the median and MAD of a fixed ring of recent points.
 *
 * Behaviour the pipeline relies on:
 *  - one episode, one anomaly: only the first point of an episode has anomalous = 1; the episode
 *    ends after `hysteresis` consecutive normal points, so a spike or a step is reported once;
 *  - points beyond the threshold enter the baseline at a tenth of their weight (robust mode: one
 *    in ten enters the ring), so the baseline does not chase the anomaly it is reporting;
 *  - NaN/Inf values and points older than the newest seen are ignored and leave state as is;
 *  - a constant series has zero variance: any deviation larger than 1e-9 * max(1, |mean|) is
 *    anomalous with |z| capped at 1e6, and nothing is ever divided by zero.
 *
 * Score: 1 - exp(-max(0, |z| - 1) / threshold), monotone in |z|, 0 for |z| <= 1, about 0.53 at
 * |z| = threshold and 1 - 1/e (0.63) at |z| = threshold + 1.
 * Confidence: min(1, n / (4 * min_history)) * (0.5 + 0.5 * min(1, |z| / (2 * threshold))),
 * growing with the history length n and with the size of the deviation.
 *
 * State lives in the core-owned per-series blob (zs_state_t, zeroed on first use); observe()
 * never allocates and reads the instance read-only, as worker threads share it.
 */
#include "select.h"
#include <sentinel/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZS_RING_MAX 256       /* upper bound of robust_window: fixes the state size */
#define ZS_Z_CAP 1e6          /* |z| for a deviation from a zero-variance baseline */
#define ZS_EPISODE_WEIGHT 0.1 /* weight of an outlier in the baseline */
#define ZS_ROBUST_KEEP 10     /* robust mode: one outlier in this many enters the ring */

enum { ZS_BOTH = 0, ZS_UP, ZS_DOWN };

typedef struct zs {
    const sn_host_t *host;
    int64_t window;
    double alpha;
    double threshold;
    int64_t min_history;
    int64_t hysteresis;
    int robust;
    int robust_window;
    int direction;
} zs_t;

/* Per-series state: all-zero bytes are a valid "never seen" state. */
typedef struct zs_state {
    int64_t last_ts;
    double mean, var;    /* EWMA baseline (kept in both modes) */
    uint64_t n;          /* points accepted */
    uint32_t normal_run; /* consecutive normal points inside an episode */
    uint32_t withheld;   /* robust mode: outliers seen during which the ring was not fed */
    uint16_t head, count;
    uint8_t in_episode;
    double ring[]; /* robust mode only: robust_window values (state_size_of()) */
} zs_state_t;

static const sn_param_t zs_params[] = {
    {"window", SN_T_INT, "300", 0,
     "effective window in points of the exponentially weighted mean/variance "
     "(alpha = 2 / (window + 1)); at least 2"},
    {"threshold", SN_T_DOUBLE, "4", 0,
     "|z| at or above which a point is anomalous; score = 1 - exp(-max(0, |z| - 1) / threshold)"},
    {"min_history", SN_T_INT, "30", 0,
     "points a series must have before the detector reports anything"},
    {"hysteresis", SN_T_INT, "5", 0,
     "consecutive normal points that end an anomaly episode; only the first point of an "
     "episode is reported anomalous"},
    {"robust", SN_T_BOOL, "false", 0,
     "use median/MAD over the last robust_window points instead of the weighted mean/variance"},
    {"robust_window", SN_T_INT, "64", 0, "points in the robust ring, 3 to 256"},
    {"direction", SN_T_STRING, "both", 0,
     "which deviations count: up (above expected), down (below) or both"},
    {NULL, 0, NULL, 0, NULL},
};

static int zs_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    zs_t *z = calloc(1, sizeof(*z));
    if (!z) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    z->host = host;
    z->window = host->cfg_int(cfg, "window");
    z->threshold = host->cfg_double(cfg, "threshold");
    z->min_history = host->cfg_int(cfg, "min_history");
    z->hysteresis = host->cfg_int(cfg, "hysteresis");
    z->robust = host->cfg_bool(cfg, "robust");
    int64_t rw = host->cfg_int(cfg, "robust_window");
    const char *dir = host->cfg_str(cfg, "direction");

    int rc = SN_EINVAL;
    if (z->window < 2) {
        snprintf(err->msg, sizeof(err->msg), "window must be at least 2 (got %lld)",
                 (long long)z->window);
        goto out;
    }
    if (!(z->threshold > 0) || !isfinite(z->threshold)) {
        snprintf(err->msg, sizeof(err->msg), "threshold must be a positive number");
        goto out;
    }
    if (z->min_history < 0 || z->min_history > 1000000000) {
        snprintf(err->msg, sizeof(err->msg), "min_history must be between 0 and 1000000000");
        goto out;
    }
    if (z->hysteresis < 0 || z->hysteresis > 1000000) {
        snprintf(err->msg, sizeof(err->msg), "hysteresis must be between 0 and 1000000");
        goto out;
    }
    if (rw < 3 || rw > ZS_RING_MAX) {
        snprintf(err->msg, sizeof(err->msg), "robust_window must be between 3 and %d (got %lld)",
                 ZS_RING_MAX, (long long)rw);
        goto out;
    }
    z->robust_window = (int)rw;
    if (!dir || strcmp(dir, "both") == 0)
        z->direction = ZS_BOTH;
    else if (strcmp(dir, "up") == 0)
        z->direction = ZS_UP;
    else if (strcmp(dir, "down") == 0)
        z->direction = ZS_DOWN;
    else {
        snprintf(err->msg, sizeof(err->msg), "direction must be up, down or both");
        goto out;
    }
    z->alpha = 2.0 / ((double)z->window + 1.0);
    *self = z;
    z = NULL;
    rc = 0;
out:
    free(z);
    return rc;
}

static void zs_destroy(void *self)
{
    free(self);
}

static double zs_median(double *a, size_t n)
{
    double hi = snp_select(a, (long)n, (long)(n / 2));
    if (n % 2)
        return hi;
    /* After selection everything below n/2 is <= hi: the lower middle is their maximum. */
    double lo = a[0];
    for (size_t i = 1; i < n / 2; i++)
        if (a[i] > lo)
            lo = a[i];
    return (lo + hi) / 2;
}

/* Robust centre and spread of the ring. When more than half the ring sits on one value (MAD = 0,
 * common on quantised series) the spread falls back to the ring's standard deviation: a value
 * that is merely rarer than the mode must not look infinitely far away. */
static void zs_robust_baseline(const zs_state_t *s, double *centre, double *sigma)
{
    double buf[ZS_RING_MAX];
    size_t n = s->count;
    memcpy(buf, s->ring, n * sizeof(double));
    double med = zs_median(buf, n);
    for (size_t i = 0; i < n; i++)
        buf[i] = fabs(s->ring[i] - med);
    double mad = zs_median(buf, n);
    *centre = med;
    if (mad > 0) {
        *sigma = 1.4826 * mad;
        return;
    }
    double mean = 0, ss = 0;
    for (size_t i = 0; i < n; i++)
        mean += s->ring[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++)
        ss += (s->ring[i] - mean) * (s->ring[i] - mean);
    *sigma = sqrt(ss / (double)n);
}

static void zs_ring_push(const zs_t *z, zs_state_t *s, double x)
{
    size_t cap = (size_t)z->robust_window;
    s->ring[s->head] = x;
    s->head = (uint16_t)((s->head + 1) % cap);
    if (s->count < cap)
        s->count++;
}

static void zs_fold(const zs_t *z, zs_state_t *s, double x, int outlier)
{
    double w = outlier ? ZS_EPISODE_WEIGHT : 1.0;
    s->n++;
    /* 1/n while the history is shorter than the window gives the exact running mean and
     * variance, so the first min_history points are not judged against a biased spread.
     * (No division once n * alpha is clearly past 1: 1/n is then the smaller.) */
    double a = z->alpha;
    if ((double)s->n * z->alpha <= 1 + 1e-9 && 1.0 / (double)s->n > a)
        a = 1.0 / (double)s->n;
    a *= w;
    double d = x - s->mean;
    s->mean += a * d;
    s->var = (1 - a) * (s->var + a * d * d);
    if (!z->robust)
        return;
    if (!outlier) {
        zs_ring_push(z, s, x);
    } else if (++s->withheld % ZS_ROBUST_KEEP == 0) {
        zs_ring_push(z, s, x);
    }
}

static void zs_expected(const zs_t *z, const zs_state_t *s, double *centre, double *sigma)
{
    if (z->robust && s->count > 0) {
        zs_robust_baseline(s, centre, sigma);
        return;
    }
    *centre = s->mean;
    *sigma = s->var > 0 ? sqrt(s->var) : 0;
}

static double zs_zvalue(double x, double centre, double sigma)
{
    double dev = x - centre;
    double scale = fabs(centre) > 1 ? fabs(centre) : 1;
    double z;
    if (sigma > 1e-12 * scale)
        z = dev / sigma;
    else if (fabs(dev) > 1e-9 * scale)
        z = dev > 0 ? ZS_Z_CAP : -ZS_Z_CAP;
    else
        z = 0;
    if (z > ZS_Z_CAP)
        z = ZS_Z_CAP;
    if (z < -ZS_Z_CAP)
        z = -ZS_Z_CAP;
    return z;
}

/* One point: judge against the baseline as it was, then fold the point in. @p out may be NULL
 * (warmup). */
static void zs_step(const zs_t *z, zs_state_t *s, int64_t ts, double x, sn_verdict_t *out)
{
    if (out)
        memset(out, 0, sizeof(*out));
    if (!isfinite(x))
        goto ignored;
    if (s->n > 0 && ts < s->last_ts)
        goto ignored;
    if (s->n == 0) {
        zs_fold(z, s, x, 0);
        s->last_ts = ts;
        if (out)
            out->expected = x;
        return;
    }

    double centre, sigma;
    zs_expected(z, s, &centre, &sigma);
    double zv = zs_zvalue(x, centre, sigma);
    double az = fabs(zv);
    int outlier = az >= z->threshold;
    int hit = outlier && (z->direction == ZS_BOTH || (z->direction == ZS_UP && zv > 0) ||
                          (z->direction == ZS_DOWN && zv < 0));
    int speaking = s->n >= (uint64_t)z->min_history;

    if (out) {
        out->expected = centre;
        if (speaking) {
            double excess = az - 1 > 0 ? az - 1 : 0;
            out->score = excess > 0 ? 1 - exp(-excess / z->threshold) : 0; /* most points */
            double full = 4.0 * (double)z->min_history;
            double hist = (double)s->n >= full ? 1.0 : (double)s->n / full;
            double size = az / (2 * z->threshold);
            out->confidence = (hist < 1 ? hist : 1) * (0.5 + 0.5 * (size < 1 ? size : 1));
        }
    }
    if (speaking) {
        if (hit) {
            if (!s->in_episode && out)
                out->anomalous = 1;
            s->in_episode = 1;
            s->normal_run = 0;
        } else if (s->in_episode) {
            if (++s->normal_run >= (uint64_t)z->hysteresis) {
                s->in_episode = 0;
                s->normal_run = 0;
            }
        }
    }
    zs_fold(z, s, x, speaking && outlier);
    s->last_ts = ts;
    return;
ignored:
    if (out && s->n > 0) {
        double centre, sigma;
        zs_expected(z, s, &centre, &sigma);
        out->expected = centre;
    }
}

/** Thread: telemetry worker. Ownership: @p state is the core's per-series blob. */
static int zs_observe(const void *self, void *state, const sn_point_t *p, sn_verdict_t *out)
{
    zs_step(self, state, p->ts_ms, p->value, out);
    return 0;
}

/** Prime a series from history. The episode flag is cleared at the end so the first live
 * anomaly is reported even when the history ended inside one. Thread: telemetry worker. */
static int zs_warmup(const void *self, void *state, const int64_t *ts, const double *v, size_t n)
{
    zs_state_t *s = state;
    for (size_t i = 0; i < n; i++)
        zs_step(self, s, ts[i], v[i], NULL);
    s->in_episode = 0;
    s->normal_run = 0;
    return 0;
}

static int zs_health(void *self, sn_health_t *out)
{
    (void)self;
    out->ok = 1;
    out->detail[0] = '\0';
    return 0;
}

/* EWMA mode keeps a few counters (about 64 bytes a series); only robust mode needs the ring. */
static size_t zs_state_size_of(const void *self)
{
    const zs_t *z = self;
    return sizeof(zs_state_t) + (z->robust ? (size_t)z->robust_window * sizeof(double) : 0);
}

static const sn_detector_ops_t zs_ops = {
    .struct_size = sizeof(sn_detector_ops_t),
    .state_size = sizeof(zs_state_t) + ZS_RING_MAX * sizeof(double),
    .observe = zs_observe,
    .warmup = zs_warmup,
    .state_size_of = zs_state_size_of,
};

static const sn_plugin_t zs_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_DETECTOR,
    .type = "zscore",
    .version = "1.0.0",
    .summary = "z-score against an EWMA (or median/MAD) baseline, one anomaly per episode",
    .params = zs_params,
    .create = zs_create,
    .destroy = zs_destroy,
    .health = zs_health,
    .ops = &zs_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &zs_plugin;
}
