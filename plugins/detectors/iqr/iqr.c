/**
 * @file iqr.c
 * Detector `iqr`: Tukey fences over rolling quartiles. A point is anomalous when it lies below
 * Q1 - k * IQR or above Q3 + k * IQR, the quartiles taken over the last `window` points of its
 * series (linear interpolation between order statistics, R type 7 / numpy "linear").
 *
 * Order structure: a ring of the window's values in arrival order plus a sorted array of the
 * same values. A new point takes the place of the oldest value: two binary searches (where the
 * old value is, where the new one goes) and one memmove of the values between the two places:
 * O(log w + w) moves of at most 1 KiB, no sort per point.
 * Quartiles are then read off the sorted array in O(1).
 *
 * Behaviour the pipeline relies on:
 *  - one episode, one anomaly: only the first point of an episode has anomalous = 1; the episode
 *    ends after `hysteresis` consecutive normal points, so a spike or a step is reported once;
 *  - points beyond a fence enter the window one in ten (the others are withheld), so the
 *    quartiles do not chase the anomaly they are reporting. A lasting level shift is still
 *    absorbed: after about 10 * window / 4 shifted points a quarter of the window holds the new
 *    level, Q3 (or Q1 for a drop) sits on it, the shifted points fall inside the fences and from
 *    then on every one of them enters; the window holds only the new level after about
 *    10 * window / 4 + window points (about 224 with the default window of 64);
 *  - NaN/Inf values and points not newer than the newest seen (ts <= last ts) are ignored and
 *    leave state as is: anomalous, score and confidence are 0, expected is the current median;
 *  - a constant series has IQR = 0: the IQR used is at least 1e-9 * max(1, |median|) (and at
 *    least the resolution of the stored values, below), so any larger deviation is anomalous
 *    and nothing is ever divided by zero.
 *
 * Score: 1 - exp(-d / k) where d is the distance outside [Q1, Q3] in units of IQR (0 inside the
 * box): monotone in d, 1 - 1/e (0.63) exactly at the fence, 0.86 at twice the fence.
 * Confidence: (window fill) * (0.5 + 0.5 * min(1, d / (2k))), growing with the history held
 * and with the size of the deviation; 0 before min_history.
 *
 * Precision: values are stored as float offsets from a per-series double `base` (the first
 * point), so the state stays near 2 KiB at window 256. An offset keeps 24 significant bits,
 * i.e. its rounding error is at most 6e-8 of its distance from base, not of the value itself:
 * a series at 1e9 with noise of 0.01 keeps full resolution. When the median drifts so far from
 * base that float resolution there exceeds 1e-4 of the IQR, the series is rebased onto the
 * current (normal) point, at most once per window; values re-encoded by a rebase carry a known
 * error bound, and until they have left the window that bound (times 4, with the float
 * resolution at the quartiles) is a floor on the IQR, so rounding never reads as an anomaly.
 * Offsets beyond +-1e38 are clamped (only absurd outliers get there).
 *
 * State lives in the core-owned per-series blob (48 bytes + 8 per window point: 560 at the
 * default window of 64, 2096 at 256; state_size_of() tells the core), zeroed on first use;
 * observe() never allocates and reads the instance read-only, as worker threads share it.
 */
#include <sentinel/plugin.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IQ_WINDOW_MIN 8
#define IQ_WINDOW_MAX 256 /* upper bound of window: fixes the state size */
#define IQ_KEEP 10        /* one outlier in this many enters the window */
#define IQ_D_CAP 1e12     /* distance (in IQRs) reported for absurd values */
#define IQ_CLAMP 1e38     /* stored offsets are clamped to +-this (float range) */
#define IQ_REBASE 1e-4    /* rebase when float resolution at the median exceeds this * IQR */
#define IQ_RES_MUL 4.0    /* safety factor on the rounding bound used as an IQR floor */
#define IQ_REL_FLOOR 1e-9 /* IQR floor relative to max(1, |median|) */

enum { IQ_BOTH = 0, IQ_UP, IQ_DOWN };

typedef struct iq {
    const sn_host_t *host;
    int window;
    double k;
    int64_t min_history;
    int64_t hysteresis;
    int direction;
} iq_t;

/* Per-series state: all-zero bytes are a valid "never seen" state. Laid out without padding so
 * two states holding the same history compare equal byte for byte. */
typedef struct iq_state {
    double base;         /* a stored value f stands for base + f */
    double lost;         /* error bound of the values re-encoded by the last rebase */
    int64_t last_ts;     /* newest accepted event time */
    uint64_t n;          /* points accepted */
    uint32_t withheld;   /* outliers seen; every IQ_KEEP-th enters the window */
    uint32_t normal_run; /* consecutive normal points inside an episode */
    uint16_t head;       /* next ring slot to write (the oldest value once full) */
    uint16_t count;      /* values in the window */
    uint16_t stale;      /* values still in the window from before the last rebase */
    uint8_t in_episode;
    uint8_t spare;
    /* sorted[window] (ascending) then ring[window] (arrival order, the same values): sized
     * by the instance's window through state_size_of(). */
    float vals[];
} iq_state_t;

#define IQ_SORTED(s) ((s)->vals)
#define IQ_RING(q, s) ((s)->vals + (q)->window)

static const sn_param_t iq_params[] = {
    {"window", SN_T_INT, "64", 0,
     "points per series the quartiles are taken over (the most recent ones), 8 to 256"},
    {"k", SN_T_DOUBLE, "3", 0,
     "fence distance in IQRs: anomalous below Q1 - k*IQR or above Q3 + k*IQR (1.5 = Tukey's "
     "outer fence, 3 = far out); at least 0.5"},
    {"min_history", SN_T_INT, "32", 0,
     "points a series must have before the detector reports anything"},
    {"hysteresis", SN_T_INT, "5", 0,
     "consecutive normal points that end an anomaly episode; only the first point of an "
     "episode is reported anomalous"},
    {"direction", SN_T_STRING, "both", 0,
     "which deviations count: up (above Q3), down (below Q1) or both"},
    {NULL, 0, NULL, 0, NULL},
};

static int iq_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    iq_t *q = calloc(1, sizeof(*q));
    if (!q) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    q->host = host;
    int64_t window = host->cfg_int(cfg, "window");
    q->k = host->cfg_double(cfg, "k");
    q->min_history = host->cfg_int(cfg, "min_history");
    q->hysteresis = host->cfg_int(cfg, "hysteresis");
    const char *dir = host->cfg_str(cfg, "direction");

    int rc = SN_EINVAL;
    if (window < IQ_WINDOW_MIN || window > IQ_WINDOW_MAX) {
        snprintf(err->msg, sizeof(err->msg), "window must be between %d and %d (got %lld)",
                 IQ_WINDOW_MIN, IQ_WINDOW_MAX, (long long)window);
        goto out;
    }
    q->window = (int)window;
    if (!(q->k >= 0.5) || !isfinite(q->k)) {
        snprintf(err->msg, sizeof(err->msg), "k must be a finite number of at least 0.5 (got %g)",
                 q->k);
        goto out;
    }
    if (q->min_history < 0 || q->min_history > 1000000000) {
        snprintf(err->msg, sizeof(err->msg), "min_history must be between 0 and 1000000000");
        goto out;
    }
    if (q->hysteresis < 0 || q->hysteresis > 1000000) {
        snprintf(err->msg, sizeof(err->msg), "hysteresis must be between 0 and 1000000");
        goto out;
    }
    if (!dir || strcmp(dir, "both") == 0)
        q->direction = IQ_BOTH;
    else if (strcmp(dir, "up") == 0)
        q->direction = IQ_UP;
    else if (strcmp(dir, "down") == 0)
        q->direction = IQ_DOWN;
    else {
        snprintf(err->msg, sizeof(err->msg), "direction must be up, down or both (got '%s')", dir);
        goto out;
    }
    *self = q;
    q = NULL;
    rc = 0;
out:
    free(q);
    return rc;
}

static void iq_destroy(void *self)
{
    free(self);
}

/* ---------------------------------------------------------------------------------------------
 * Order structure
 * ------------------------------------------------------------------------------------------- */

/* First index in a[0..n) whose value is >= v. Branch-free halving (the comparison picks the
 * half with a conditional move): where a new value lands is random, so a branch per step
 * would be mispredicted half of the time. */
static size_t iq_lower(const float *a, size_t n, float v)
{
    if (n == 0)
        return 0;
    const float *base = a;
    while (n > 1) {
        size_t half = n / 2;
        base += (size_t)(base[half - 1] < v) * half;
        n -= half;
    }
    return (size_t)(base - a) + (*base < v);
}

/* First index in a[0..n) whose value is > v (as iq_lower). */
static size_t iq_upper(const float *a, size_t n, float v)
{
    if (n == 0)
        return 0;
    const float *base = a;
    while (n > 1) {
        size_t half = n / 2;
        base += (size_t)(base[half - 1] <= v) * half;
        n -= half;
    }
    return (size_t)(base - a) + (*base <= v);
}

static float iq_encode(const iq_state_t *s, double x)
{
    double f = x - s->base;
    if (!(f <= IQ_CLAMP)) /* also catches +Inf from an overflowing difference */
        f = IQ_CLAMP;
    if (f < -IQ_CLAMP)
        f = -IQ_CLAMP;
    return (float)f;
}

/* Append @p f to the window, evicting the oldest value when it is full. A full window replaces
 * the oldest value by the new one with a single shift of the values between their places
 * (the same array as removing one and inserting the other, for half the moves). */
static void iq_push(const iq_t *q, iq_state_t *s, float f)
{
    size_t cap = (size_t)q->window;
    size_t n = s->count;
    float *a = IQ_SORTED(s);
    if (n >= cap) {
        float old = IQ_RING(q, s)[s->head];
        size_t i = iq_lower(a, n, old);
        /* The value is always there; were the blob ever damaged, drop the nearest one so the
         * array stays sorted and bounded. */
        if (i >= n)
            i = n - 1;
        /* where f goes among the values that stay (upper bound, as an insertion would) */
        size_t j = iq_upper(a, n, f);
        if (j <= i) {
            memmove(&a[j + 1], &a[j], (i - j) * sizeof(float));
            a[j] = f;
        } else {
            memmove(&a[i], &a[i + 1], (j - 1 - i) * sizeof(float));
            a[j - 1] = f;
        }
        if (s->stale > 0 && --s->stale == 0)
            s->lost = 0;
    } else {
        size_t j = iq_upper(a, n, f);
        memmove(&a[j + 1], &a[j], (n - j) * sizeof(float));
        a[j] = f;
        s->count = (uint16_t)(n + 1);
    }
    IQ_RING(q, s)[s->head] = f;
    s->head = (uint16_t)((s->head + 1) % cap);
}

/* Quantile @p p of the window by linear interpolation, as an offset from base. */
static double iq_quantile(const iq_state_t *s, double p)
{
    size_t n = s->count;
    double h = (double)(n - 1) * p;
    size_t lo = (size_t)h;
    double frac = h - (double)lo;
    double v = IQ_SORTED(s)[lo];
    if (lo + 1 < n && frac > 0)
        v += frac * ((double)IQ_SORTED(s)[lo + 1] - v);
    return v;
}

/* Move base to @p x (the normal point just stored) when float resolution at the median
 * has become coarse next to the IQR. Re-encoding is monotone, so the sorted array stays
 * sorted, and it maps equal floats to equal floats, so ring and sorted stay the same multiset. */
static void iq_maybe_rebase(const iq_t *q, iq_state_t *s, double x)
{
    if (s->stale > 0 || s->count < 2)
        return;
    double med = iq_quantile(s, 0.5);
    double iqr = iq_quantile(s, 0.75) - iq_quantile(s, 0.25);
    if (!(FLT_EPSILON * fabs(med) > IQ_REBASE * iqr))
        return;
    double old_base = s->base;
    s->base = x;
    for (size_t i = 0; i < s->count; i++)
        IQ_SORTED(s)[i] = iq_encode(s, old_base + (double)IQ_SORTED(s)[i]);
    size_t filled = s->count; /* ring slots in use: 0..count-1 until full, all once full */
    for (size_t i = 0; i < filled; i++)
        IQ_RING(q, s)[i] = iq_encode(s, old_base + (double)IQ_RING(q, s)[i]);
    /* A stale value v was stored as fl(v - old) and is now fl(old + that - x): its error is at
     * most eps/2 * |v - old| + eps/2 * |v - x| <= eps/2 * |x - old| + eps * |v - x|, plus the
     * double arithmetic. The |v - x| part is the resolution term iq_judge() adds anyway, so
     * only the shift of base needs remembering; outliers in the window do not inflate it. */
    double shift = fabs(x - old_base);
    s->lost = FLT_EPSILON * shift + 4 * DBL_EPSILON * (fabs(old_base) + fabs(x) + shift);
    s->stale = s->count;
}

static void iq_fold(const iq_t *q, iq_state_t *s, double x, int outlier)
{
    s->n++;
    if (outlier && ++s->withheld % IQ_KEEP != 0)
        return;
    iq_push(q, s, iq_encode(s, x));
    if (!outlier)
        iq_maybe_rebase(q, s, x);
}

/* ---------------------------------------------------------------------------------------------
 * Judging
 * ------------------------------------------------------------------------------------------- */

typedef struct iq_view {
    double median; /* absolute */
    double d;      /* distance outside [Q1, Q3] in IQRs, signed: > 0 above, < 0 below */
} iq_view_t;

static void iq_judge(const iq_state_t *s, double x, iq_view_t *v)
{
    double q1 = iq_quantile(s, 0.25), med = iq_quantile(s, 0.5), q3 = iq_quantile(s, 0.75);
    v->median = s->base + med;
    double iqr = q3 - q1;
    double res = IQ_RES_MUL * (s->lost + FLT_EPSILON * (fabs(q1) > fabs(q3) ? fabs(q1) : fabs(q3)));
    double floor = IQ_REL_FLOOR * (fabs(v->median) > 1 ? fabs(v->median) : 1);
    if (iqr < res)
        iqr = res;
    if (iqr < floor)
        iqr = floor;
    double xr = x - s->base; /* may be +-Inf for absurd values; capped below */
    double d = 0;
    if (xr > q3)
        d = (xr - q3) / iqr;
    else if (xr < q1)
        d = -((q1 - xr) / iqr);
    if (!(d <= IQ_D_CAP))
        d = IQ_D_CAP;
    if (d < -IQ_D_CAP)
        d = -IQ_D_CAP;
    v->d = d;
}

/* One point: judge against the window as it was, then fold the point in. @p out may be NULL
 * (warmup). */
static void iq_step(const iq_t *q, iq_state_t *s, int64_t ts, double x, sn_verdict_t *out)
{
    if (out)
        memset(out, 0, sizeof(*out));
    if (!isfinite(x) || (s->n > 0 && ts <= s->last_ts)) {
        if (out && s->count > 0)
            out->expected = s->base + iq_quantile(s, 0.5);
        return;
    }
    if (s->count == 0) {
        /* first point (or a blob never filled): it defines base and is stored exactly */
        s->base = x;
        iq_fold(q, s, x, 0);
        s->last_ts = ts;
        if (out)
            out->expected = x;
        return;
    }

    iq_view_t v;
    iq_judge(s, x, &v);
    double ad = fabs(v.d);
    int outlier = ad > q->k;
    int hit = outlier && (q->direction == IQ_BOTH || (q->direction == IQ_UP && v.d > 0) ||
                          (q->direction == IQ_DOWN && v.d < 0));
    int speaking = s->n >= (uint64_t)q->min_history;

    if (out) {
        out->expected = v.median;
        if (speaking) {
            out->score = ad > 0 ? 1 - exp(-ad / q->k) : 0; /* inside the box: most points */
            double hist = (double)s->count / (double)q->window;
            double size = ad / (2 * q->k);
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
            if (++s->normal_run >= (uint64_t)q->hysteresis) {
                s->in_episode = 0;
                s->normal_run = 0;
            }
        }
    }
    iq_fold(q, s, x, speaking && outlier);
    s->last_ts = ts;
}

/** Thread: telemetry worker. Ownership: @p state is the core's per-series blob. */
static int iq_observe(const void *self, void *state, const sn_point_t *p, sn_verdict_t *out)
{
    iq_step(self, state, p->ts_ms, p->value, out);
    return 0;
}

/** Prime a series from history; the same as observing the points one by one, except that the
 * episode flag is cleared at the end so the first live anomaly is reported even when the history
 * ended inside one. Thread: telemetry worker. */
static int iq_warmup(const void *self, void *state, const int64_t *ts, const double *v, size_t n)
{
    iq_state_t *s = state;
    for (size_t i = 0; i < n; i++)
        iq_step(self, s, ts[i], v[i], NULL);
    s->in_episode = 0;
    s->normal_run = 0;
    return 0;
}

static int iq_health(void *self, sn_health_t *out)
{
    (void)self;
    out->ok = 1;
    out->detail[0] = '\0';
    return 0;
}

/* The largest window: what a host that does not ask state_size_of() allocates. */
#define IQ_STATE_MAX (sizeof(iq_state_t) + 2 * IQ_WINDOW_MAX * sizeof(float))

static size_t iq_state_size_of(const void *self)
{
    const iq_t *q = self;
    return sizeof(iq_state_t) + 2 * (size_t)q->window * sizeof(float);
}

static const sn_detector_ops_t iq_ops = {
    .struct_size = sizeof(sn_detector_ops_t),
    .state_size = IQ_STATE_MAX,
    .observe = iq_observe,
    .warmup = iq_warmup,
    .state_size_of = iq_state_size_of,
};

static const sn_plugin_t iq_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_DETECTOR,
    .type = "iqr",
    .version = "1.0.0",
    .summary = "Tukey fences over rolling quartiles of the last window points, one anomaly per "
               "episode",
    .params = iq_params,
    .create = iq_create,
    .destroy = iq_destroy,
    .health = iq_health,
    .ops = &iq_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &iq_plugin;
}
