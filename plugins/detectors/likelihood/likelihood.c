/**
 * @file likelihood.c
 * Detector `likelihood`: anomaly likelihood from statistics alone. For every point it asks how
 * improbable the series' recent behaviour is, judged against the series' own longer history, and
 * reports that as a tail probability p: L = -log10 p, score = L / (L + threshold).
 *
 * Features of the newest point x:
 *  - level at several time scales: the mean of the last k values for each k in `scales` (1 sees
 *    spikes, longer scales see level shifts and drifts that are small point by point);
 *  - with `season = day`, the daily residual x - profile(hour of day), where the profile is an
 *    exponentially weighted mean per UTC hour over `season_days` days; it speaks once the series
 *    spans two days. It sees a pattern that breaks within the normal range (a daily peak that
 *    does not come, a flat day).
 *
 * Reference: every `stride` points the block maximum and minimum of each feature enter a ring of
 * `history` blocks (250 blocks of 8: about a week of 5-minute points, so the reference follows
 * how the series behaves lately and an old burst does not mask a new one for a month); the newest
 * `delay` points of it are left out, so a slowly developing anomaly is compared with the time
 * before it and not with its own beginning. A feature is judged as soon as its reference has 20
 * blocks: while the ring is shorter than the delay plus 20 blocks, the delay shrinks so that the
 * oldest 20 blocks are the reference (a new series, or one after a change of regime, speaks after
 * 160 points rather than after 360).
 *
 * Tail model (peaks over threshold): for each feature and side, u is the `quantile` level of
 * the block maxima (or minima) of the reference and the excesses over u are taken as exponential
 * (a generalised Pareto distribution with shape 0) with scale sigma = their mean, so a value
 * f > u has p = (1 - quantile) exp(-(f - u) / sigma). Values at or below u have p = 1. The
 * point's p is the smallest p of all features and sides times their number (Bonferroni).
 * Because every feature is judged against its own past, scale, autocorrelation and the bursts a
 * series always had are absorbed, and one threshold means about the same alarm rate everywhere.
 * sigma is at least a tenth of the distance between the two sides' levels and never below
 * 1e-6 * max(1, |u|) (the reference is stored as float): a constant history makes any larger
 * change extreme without a division by zero.
 *
 * Behaviour the pipeline relies on (as zscore):
 *  - one episode, one anomaly: only the first point with L >= threshold has anomalous = 1; the
 *    episode ends after `hysteresis` consecutive points below it;
 *  - inside an episode one point in ten enters the reference and the daily profile learns at a
 *    tenth of its rate, so an anomaly does not become its own reference;
 *  - change of regime: an episode that has lasted `rebase` points, at least half of them
 *    anomalous, is a level (or pattern) that persists: the episode ends and every feature's
 *    reference restarts from that point (the old level no longer says what is normal), so the
 *    next anomaly on the new level is reported once 20 blocks of it were seen, instead of the
 *    episode lasting for ever with the reference frozen on the old level;
 *  - NaN/Inf values and points not newer than the newest seen are ignored (score 0, state as it
 *    was);
 *  - silent (score 0) until `min_history` points were seen and a feature has 20 blocks of
 *    reference.
 *
 * Expected: the hour's profile value once the daily feature speaks, else the exponentially
 * weighted mean of about the last 300 points. Confidence: the filled share of the history times
 * (0.5 + 0.5 score).
 * State lives in the core-owned per-series blob (lk_state_t, about 34 KB whatever `history` is:
 * the ring is sized for its largest value, 1024 blocks; zeroed on first use). That is fine for
 * the offline runner; a daemon watching many series pays 34 KB each (10,000 series: 340 MB).
 * observe() never allocates and reads the instance read-only, as worker threads share it.
 */
#include "select.h"
#include <sentinel/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_SCALES_MAX 3 /* level scales per instance */
#define LK_FEAT_MAX (LK_SCALES_MAX + 1)
#define LK_VALS 128               /* longest scale in points: fixes the value ring */
#define LK_HIST_MAX 1024          /* upper bound of history: fixes the state size */
#define LK_MIN_BLOCKS 20          /* reference blocks a feature needs before it is judged */
#define LK_REFIT 8                /* tail models are refitted every this many points */
#define LK_L_CAP 300.0            /* -log10 p is capped here */
#define LK_FLOOR 0.1              /* smallest sigma, as a share of the distance between levels */
#define LK_REL_FLOOR 1e-6         /* smallest sigma relative to the level: above float resolution */
#define LK_EPISODE_WEIGHT 0.1     /* learning rate of the profile inside an episode */
#define LK_KEEP 10                /* inside an episode one point in this many is referenced */
#define LK_MEAN_ALPHA (2.0 / 301) /* `expected` without a profile: mean over ~300 points */
#define LK_SLOTS 24               /* hour-of-day slots of the daily profile */
#define LK_HOUR_MS 3600000LL
#define LK_DAY_MS (24 * LK_HOUR_MS)

enum { LK_BOTH = 0, LK_UP, LK_DOWN };

typedef struct lk {
    const sn_host_t *host;
    int nscales;
    int scale[LK_SCALES_MAX];
    int nfeat;
    int season; /* feature index of the daily residual, or -1 */
    int history;
    int stride;
    int delay; /* blocks */
    double q;
    double threshold;
    int64_t min_history;
    int64_t hysteresis;
    int64_t rebase; /* points; 0: never */
    int direction;
    double season_tau; /* slot time over which the profile averages, ms */
} lk_t;

/* One side of one feature: level u and exponential scale sigma of the excesses. */
typedef struct lk_tail {
    double u, sigma;
} lk_tail_t;

/* Per-series state: all-zero bytes are a valid "never seen" state. */
typedef struct lk_state {
    int64_t first_ts, last_ts;
    uint64_t n; /* points accepted */
    double mean;
    uint32_t normal_run, withheld, in_block;
    uint32_t ep_age, ep_hits; /* points of the current episode, and its anomalous ones */
    uint16_t vhead, vcount;
    uint16_t hhead, hcount;
    uint16_t since_fit;
    uint8_t in_episode, fitted;
    uint16_t fcount[LK_FEAT_MAX]; /* reference blocks per feature (newest, contiguous) */
    uint8_t bvalid[LK_FEAT_MAX];  /* the feature was valid for the whole current block */
    double bmax[LK_FEAT_MAX], bmin[LK_FEAT_MAX];
    lk_tail_t up[LK_FEAT_MAX], down[LK_FEAT_MAX];
    double prof[LK_SLOTS];
    uint32_t slot_n[LK_SLOTS];
    double vals[LK_VALS];
    float hmax[LK_FEAT_MAX][LK_HIST_MAX];
    float hmin[LK_FEAT_MAX][LK_HIST_MAX];
} lk_state_t;

static const sn_param_t lk_params[] = {
    {"scales", SN_T_LIST, "1, 6, 48", 0,
     "time scales in points: the mean of the last k values is one feature (1 to 128, at most "
     "3 scales)"},
    {"season", SN_T_STRING, "day", 0,
     "day: add the residual from an hour-of-day profile (UTC) as a feature; none: do not"},
    {"season_days", SN_T_INT, "4", 0, "days the hour-of-day profile averages over (1 to 1000)"},
    {"stride", SN_T_INT, "8", 0, "points per reference block (block maxima and minima)"},
    {"history", SN_T_INT, "250", 0, "reference blocks kept per feature (50 to 1024)"},
    {"delay", SN_T_INT, "200", 0,
     "newest points left out of the reference, so a slow anomaly is not judged against itself"},
    {"quantile", SN_T_DOUBLE, "0.95", 0,
     "level of the reference above which excesses are modelled (0.5 to 0.999)"},
    {"threshold", SN_T_DOUBLE, "2.5", 0,
     "-log10 of the tail probability at or above which a point is anomalous; "
     "score = L / (L + threshold)"},
    {"min_history", SN_T_INT, "0", 0,
     "points a series must have before the detector reports anything"},
    {"hysteresis", SN_T_INT, "60", 0,
     "consecutive normal points that end an anomaly episode; only the first point of an "
     "episode is reported anomalous"},
    {"rebase", SN_T_INT, "200", 0,
     "an episode that lasted this many points, at least half of them anomalous, is a new "
     "regime: the reference restarts from it (0: never)"},
    {"direction", SN_T_STRING, "both", 0,
     "which deviations count: up (above expected), down (below) or both"},
    {NULL, 0, NULL, 0, NULL},
};

static int lk_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    lk_t *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    k->host = host;
    const char *const *scales = host->cfg_list(cfg, "scales");
    const char *season = host->cfg_str(cfg, "season");
    int64_t days = host->cfg_int(cfg, "season_days");
    int64_t stride = host->cfg_int(cfg, "stride");
    int64_t history = host->cfg_int(cfg, "history");
    int64_t delay = host->cfg_int(cfg, "delay");
    k->q = host->cfg_double(cfg, "quantile");
    k->threshold = host->cfg_double(cfg, "threshold");
    k->min_history = host->cfg_int(cfg, "min_history");
    k->hysteresis = host->cfg_int(cfg, "hysteresis");
    k->rebase = host->cfg_int(cfg, "rebase");
    const char *dir = host->cfg_str(cfg, "direction");

    int rc = SN_EINVAL;
    for (size_t i = 0; scales && scales[i]; i++) {
        char *end;
        long v = strtol(scales[i], &end, 10);
        if (*end || v < 1 || v > LK_VALS) {
            snprintf(err->msg, sizeof(err->msg), "scales: '%s' is not an integer from 1 to %d",
                     scales[i], LK_VALS);
            goto out;
        }
        if (k->nscales == LK_SCALES_MAX) {
            snprintf(err->msg, sizeof(err->msg), "scales: at most %d", LK_SCALES_MAX);
            goto out;
        }
        k->scale[k->nscales++] = (int)v;
    }
    if (k->nscales == 0) {
        snprintf(err->msg, sizeof(err->msg), "scales: at least one scale is needed");
        goto out;
    }
    k->nfeat = k->nscales;
    k->season = -1;
    if (season && strcmp(season, "day") == 0) {
        k->season = k->nfeat++;
    } else if (season && strcmp(season, "none") != 0) {
        snprintf(err->msg, sizeof(err->msg), "season must be day or none");
        goto out;
    }
    if (days < 1 || days > 1000) {
        snprintf(err->msg, sizeof(err->msg), "season_days must be between 1 and 1000");
        goto out;
    }
    if (stride < 1 || stride > 100000) {
        snprintf(err->msg, sizeof(err->msg), "stride must be between 1 and 100000");
        goto out;
    }
    if (history < 50 || history > LK_HIST_MAX) {
        snprintf(err->msg, sizeof(err->msg), "history must be between 50 and %d (got %lld)",
                 LK_HIST_MAX, (long long)history);
        goto out;
    }
    if (delay < 0 || delay / stride > history - LK_MIN_BLOCKS) {
        snprintf(err->msg, sizeof(err->msg),
                 "delay must be between 0 and (history - %d) * stride points", LK_MIN_BLOCKS);
        goto out;
    }
    if (!(k->q >= 0.5 && k->q <= 0.999)) {
        snprintf(err->msg, sizeof(err->msg), "quantile must be between 0.5 and 0.999");
        goto out;
    }
    if (!(k->threshold > 0) || k->threshold > LK_L_CAP) {
        snprintf(err->msg, sizeof(err->msg), "threshold must be in (0, %g]", LK_L_CAP);
        goto out;
    }
    if (k->min_history < 0 || k->min_history > 1000000000) {
        snprintf(err->msg, sizeof(err->msg), "min_history must be between 0 and 1000000000");
        goto out;
    }
    if (k->hysteresis < 0 || k->hysteresis > 1000000) {
        snprintf(err->msg, sizeof(err->msg), "hysteresis must be between 0 and 1000000");
        goto out;
    }
    if (k->rebase < 0 || k->rebase > 1000000000) {
        snprintf(err->msg, sizeof(err->msg), "rebase must be between 0 and 1000000000");
        goto out;
    }
    if (!dir || strcmp(dir, "both") == 0)
        k->direction = LK_BOTH;
    else if (strcmp(dir, "up") == 0)
        k->direction = LK_UP;
    else if (strcmp(dir, "down") == 0)
        k->direction = LK_DOWN;
    else {
        snprintf(err->msg, sizeof(err->msg), "direction must be up, down or both");
        goto out;
    }
    k->history = (int)history;
    k->stride = (int)stride;
    k->delay = (int)(delay / stride);
    k->season_tau = (double)days * (double)LK_HOUR_MS;
    *self = k;
    k = NULL;
    rc = 0;
out:
    free(k);
    return rc;
}

static void lk_destroy(void *self)
{
    free(self);
}

/* Reference of one ring: its newest @p count blocks except the newest k->delay (fewer while
 * that would leave less than LK_MIN_BLOCKS), times @p sign, into @p out. Returns how many. */
static size_t lk_reference(const lk_t *k, const lk_state_t *s, const float *ring, size_t count,
                           double sign, double *out)
{
    size_t n = count >= (size_t)k->delay + LK_MIN_BLOCKS ? count - (size_t)k->delay
               : count >= LK_MIN_BLOCKS                  ? LK_MIN_BLOCKS
                                                         : 0;
    size_t h = (size_t)k->history;
    size_t oldest = (s->hhead + h - count) % h;
    for (size_t i = 0; i < n; i++)
        out[i] = sign * (double)ring[(oldest + i) % h];
    return n;
}

/* Upper tail of a[0..n-1] (reordered): the quantile level and the mean excess over it. */
static void lk_fit_tail(const lk_t *k, double *a, size_t n, lk_tail_t *t)
{
    double u = snp_select(a, (long)n, (long)floor(k->q * (double)(n - 1)));
    double sum = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i] > u) {
            sum += a[i] - u;
            m++;
        }
    }
    t->u = u;
    t->sigma = m ? sum / (double)m : 0;
}

static void lk_fit(const lk_t *k, lk_state_t *s)
{
    double buf[LK_HIST_MAX];
    for (int j = 0; j < k->nfeat; j++) {
        if (s->fcount[j] < LK_MIN_BLOCKS)
            continue;
        size_t n = lk_reference(k, s, s->hmax[j], s->fcount[j], 1, buf);
        lk_fit_tail(k, buf, n, &s->up[j]);
        n = lk_reference(k, s, s->hmin[j], s->fcount[j], -1, buf);
        lk_fit_tail(k, buf, n, &s->down[j]);
        double hi = s->up[j].u, lo = -s->down[j].u;
        double mag = fabs(hi) > fabs(lo) ? fabs(hi) : fabs(lo);
        double floor_ = LK_FLOOR * (hi - lo);
        if (floor_ < LK_REL_FLOOR * (mag > 1 ? mag : 1))
            floor_ = LK_REL_FLOOR * (mag > 1 ? mag : 1);
        if (s->up[j].sigma < floor_)
            s->up[j].sigma = floor_;
        if (s->down[j].sigma < floor_)
            s->down[j].sigma = floor_;
    }
    s->fitted = 1;
    s->since_fit = 0;
}

/* -log10 of the tail probability of @p f under @p t: 0 at or below the level. */
static double lk_tail_l(const lk_t *k, const lk_tail_t *t, double f)
{
    if (!(f > t->u))
        return 0;
    double l = -log10(1 - k->q) + (f - t->u) / (t->sigma * log(10.0));
    return l < LK_L_CAP ? l : LK_L_CAP;
}

static double lk_recent(const lk_state_t *s, int i)
{
    return s->vals[(s->vhead + LK_VALS - i) % LK_VALS];
}

static int lk_slot(int64_t ts)
{
    int64_t h = ts / LK_HOUR_MS;
    if (ts < 0 && ts % LK_HOUR_MS)
        h--;
    int slot = (int)(h % LK_SLOTS);
    return slot < 0 ? slot + LK_SLOTS : slot;
}

/* The daily residual of @p x into *res, then the profile learns from @p x. Returns whether the
 * residual is valid: the series spans two days and the hour was seen before. */
static int lk_season(const lk_t *k, lk_state_t *s, int64_t ts, int64_t dt, double x, int outlier,
                     double *res)
{
    int slot = lk_slot(ts);
    int valid = s->slot_n[slot] > 0 && ts - s->first_ts >= 2 * LK_DAY_MS;
    *res = valid ? x - s->prof[slot] : 0;
    /* A point stands for the slot time since the previous one (at most an hour), so the
     * profile averages over season_days days whatever the sampling rate. */
    double span = (double)(dt < LK_HOUR_MS ? dt : LK_HOUR_MS);
    double a = 1 - exp(-span / k->season_tau);
    s->slot_n[slot]++;
    if (a < 1.0 / s->slot_n[slot])
        a = 1.0 / s->slot_n[slot];
    if (outlier && valid)
        a *= LK_EPISODE_WEIGHT;
    s->prof[slot] += a * (x - s->prof[slot]);
    return valid;
}

/* Fold the features of one point into the current block; push the block when it is full. */
static void lk_remember(const lk_t *k, lk_state_t *s, const double *f, const int *valid)
{
    for (int j = 0; j < k->nfeat; j++) {
        if (s->in_block == 0 || f[j] > s->bmax[j])
            s->bmax[j] = f[j];
        if (s->in_block == 0 || f[j] < s->bmin[j])
            s->bmin[j] = f[j];
        s->bvalid[j] = (uint8_t)((s->in_block == 0 || s->bvalid[j]) && valid[j]);
    }
    if (++s->in_block < (uint32_t)k->stride)
        return;
    for (int j = 0; j < k->nfeat; j++) {
        s->hmax[j][s->hhead] = (float)s->bmax[j];
        s->hmin[j][s->hhead] = (float)s->bmin[j];
        /* A feature's reference is its newest run of valid blocks. */
        if (!s->bvalid[j])
            s->fcount[j] = 0;
        else if (s->fcount[j] < k->history && ++s->fcount[j] == LK_MIN_BLOCKS)
            s->fitted = 0; /* the feature is judged from now on: fit it before that */
    }
    s->in_block = 0;
    s->hhead = (uint16_t)((s->hhead + 1) % k->history);
    if (s->hcount < k->history)
        s->hcount++;
    s->since_fit = (uint16_t)(s->since_fit + (k->stride < LK_REFIT ? k->stride : LK_REFIT));
}

/* A persistent deviation is a new regime: the episode ends and every feature's reference
 * restarts empty, to be judged again once it has LK_MIN_BLOCKS blocks of the new regime. */
static void lk_rebase(const lk_t *k, lk_state_t *s)
{
    for (int j = 0; j < k->nfeat; j++)
        s->fcount[j] = 0;
    s->in_episode = 0;
    s->normal_run = 0;
    s->fitted = 0;
}

/* One point: judge against the state as it was, then learn from it. @p out may be NULL. */
static void lk_step(const lk_t *k, lk_state_t *s, int64_t ts, double x, sn_verdict_t *out)
{
    if (out)
        memset(out, 0, sizeof(*out));
    if (!isfinite(x) || (s->n > 0 && ts <= s->last_ts)) {
        if (out && s->n > 0)
            out->expected = s->mean;
        return;
    }
    int64_t dt = s->n > 0 ? ts - s->last_ts : 0;
    if (s->n == 0) {
        s->first_ts = ts;
        s->mean = x;
    }
    s->last_ts = ts;
    s->n++;
    s->vals[s->vhead] = x;
    s->vhead = (uint16_t)((s->vhead + 1) % LK_VALS);
    if (s->vcount < LK_VALS)
        s->vcount++;

    double f[LK_FEAT_MAX], expected = s->mean;
    int valid[LK_FEAT_MAX];
    for (int j = 0; j < k->nscales; j++) {
        int len = k->scale[j] < s->vcount ? k->scale[j] : s->vcount;
        double sum = 0;
        for (int i = 1; i <= len; i++)
            sum += lk_recent(s, i);
        f[j] = sum / len;
        valid[j] = 1;
    }
    if (k->season >= 0) {
        valid[k->season] = lk_season(k, s, ts, dt, x, s->in_episode, &f[k->season]);
        if (valid[k->season])
            expected = x - f[k->season];
    }

    /* Judged at the precision the reference keeps, so a constant series sits exactly on it. */
    for (int j = 0; j < k->nfeat; j++)
        f[j] = (double)(float)f[j];
    double l = 0;
    int tests = 0;
    if (s->n > (uint64_t)k->min_history) {
        if (!s->fitted || s->since_fit >= LK_REFIT)
            lk_fit(k, s);
        for (int j = 0; j < k->nfeat; j++) {
            if (!valid[j] || s->fcount[j] < LK_MIN_BLOCKS)
                continue;
            if (k->direction != LK_DOWN) {
                double lj = lk_tail_l(k, &s->up[j], f[j]);
                l = lj > l ? lj : l;
                tests++;
            }
            if (k->direction != LK_UP) {
                double lj = lk_tail_l(k, &s->down[j], -f[j]);
                l = lj > l ? lj : l;
                tests++;
            }
        }
        l = tests ? l - log10((double)tests) : 0;
        if (l < 0)
            l = 0;
    }
    int hit = tests > 0 && l >= k->threshold;

    if (out) {
        out->expected = expected;
        if (tests > 0) {
            out->score = l / (l + k->threshold);
            double fill = (double)s->hcount / (double)k->history;
            out->confidence = (fill < 1 ? fill : 1) * (0.5 + 0.5 * out->score);
        }
    }
    if (hit) {
        if (!s->in_episode) {
            if (out)
                out->anomalous = 1;
            s->ep_age = 0;
            s->ep_hits = 0;
        }
        s->in_episode = 1;
        s->normal_run = 0;
    } else if (s->in_episode && ++s->normal_run >= (uint64_t)k->hysteresis) {
        s->in_episode = 0;
        s->normal_run = 0;
    }
    if (s->in_episode && s->ep_age < UINT32_MAX) { /* saturates: an episode may last for ever */
        s->ep_age++;
        s->ep_hits += (uint32_t)hit;
    }
    if (!s->in_episode || ++s->withheld % LK_KEEP == 0)
        lk_remember(k, s, f, valid);
    if (s->in_episode && k->rebase > 0 && s->ep_age >= (uint64_t)k->rebase &&
        2 * (uint64_t)s->ep_hits >= s->ep_age)
        lk_rebase(k, s);
    s->mean += LK_MEAN_ALPHA * (x - s->mean);
}

/** Thread: telemetry worker. Ownership: @p state is the core's per-series blob. */
static int lk_observe(const void *self, void *state, const sn_point_t *p, sn_verdict_t *out)
{
    lk_step(self, state, p->ts_ms, p->value, out);
    return 0;
}

/** Prime a series from history; the episode flag is cleared at the end so the first live
 * anomaly is reported even when the history ended inside one. Thread: telemetry worker. */
static int lk_warmup(const void *self, void *state, const int64_t *ts, const double *v, size_t n)
{
    lk_state_t *s = state;
    for (size_t i = 0; i < n; i++)
        lk_step(self, s, ts[i], v[i], NULL);
    s->in_episode = 0;
    s->normal_run = 0;
    return 0;
}

static int lk_health(void *self, sn_health_t *out)
{
    (void)self;
    out->ok = 1;
    out->detail[0] = '\0';
    return 0;
}

static const sn_detector_ops_t lk_ops = {
    .struct_size = sizeof(sn_detector_ops_t),
    .state_size = sizeof(lk_state_t),
    .observe = lk_observe,
    .warmup = lk_warmup,
};

static const sn_plugin_t lk_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_DETECTOR,
    .type = "likelihood",
    .version = "1.0.0",
    .summary = "tail probability of multi-scale and daily features against the series' history",
    .params = lk_params,
    .create = lk_create,
    .destroy = lk_destroy,
    .health = lk_health,
    .ops = &lk_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &lk_plugin;
}
