/**
 * @file seasonal.c
 * Detector `seasonal`: judges each point against what is normal for its hour of the day or of
 * the week, so a surge that comes every Monday at 9 AM is expected while the same surge on a
 * Sunday at 3 AM is reported.
 *
 * Two models run side by side on every point of a series:
 *  - plain: Holt level + trend on the raw values and the exponentially weighted variance of its
 *    one-step residual. It is the whole detector with `period = none`, and judges the points of
 *    hour slots that have not yet seen `min_cycles` full periods.
 *  - seasonal (additive Holt-Winters without trend): a de-seasonalised level, one additive
 *    offset per hour slot (24 hour-of-day slots for `period = day`, 168 hour-of-week slots for
 *    `week`, stored as float) and the residual variance as a base variance times a per-slot
 *    spread factor. expected = level + offset(slot, position in the hour).
 *    The trend is left out of this model: a slowly growing series is followed by the level (lag
 *    = growth rate * level_window), while a trend term would drift against the offsets, which
 *    only meet the level once a period.
 *
 * Learning. Windows are durations of event time, so the sampling rate does not change what they
 * mean: a point moves the levels by 1 - exp(-dt / level_window), the variances by
 * 1 - exp(-dt / variance_window), the trend by 1 - exp(-dt / trend_window) (at least 1/n while
 * few points have been seen, which gives the running mean and variance, as in zscore).
 * A visit is the points of one clock hour in one slot. During a slot's first visit its offset is
 * the running mean of (value - level) and the seasonal level stays where it is, so no slot is
 * learnt against a level that is itself being dragged by the pattern. Later visits update the
 * level first and the offset with what remains, as an exponentially weighted mean over visits
 * (weight max(1 / visits, 1 / season_cycles) per visit, spread over the visit's points by the
 * time each covers).
 * Inside a slot the offset is reconstructed as the slot's mean plus a ramp whose slope is the
 * minmod of the differences to the neighbouring slots (MUSCL): a smooth daily curve is followed
 * within the hour, while a step at an hour boundary (a surge starting at 9:00) and a slot that is
 * a peak or trough stay flat; no value beyond the neighbours' is ever predicted.
 * The spread factor of a slot (4 bits: 2^(q / 3), 1 to 32) follows the mean over visits of the
 * slot's squared residual over the base variance (the first scored visit sets it, later ones
 * average in like the offsets), so hours that are noisier (busy daytime) or that hourly offsets
 * fit less well get a wider spread. A point is judged with the widest spread of its slot and the
 * two next to it, and no spread is below 1: a few visits cannot tell a quieter hour from
 * sampling noise, and a spread that is too narrow reports noise.
 * Slots are clock hours in UTC shifted by `utc_offset_minutes` (fixed: no daylight saving; a
 * DST change moves the pattern by one hour until the offsets relearn it).
 *
 * Behaviour the pipeline relies on:
 *  - a slot speaks once it has data from `min_cycles` earlier visits (full periods) and the
 *    seasonal model has 30 residuals for its variance; until then the plain level + trend model
 *    judges the point, so the first periods behave like a level detector (a weekly surge is
 *    reported while it is being learnt);
 *  - nothing is reported before `min_history` points;
 *  - one episode, one anomaly: only the first point of an episode has anomalous = 1; the episode
 *    ends after `hysteresis` consecutive normal points;
 *  - a point beyond the threshold feeds each model at a tenth of its weight (the seasonal model
 *    only where its slot speaks: while a slot learns everything enters at full weight, and a
 *    one-off event during the learning periods fades as later visits are averaged in);
 *  - NaN/Inf values and points not newer than the newest seen are ignored and leave state as is;
 *  - gaps: the trend is extrapolated over at most `max_gap`, and every time-based weight counts
 *    a longer gap as `max_gap`, so a week without data does not launch the trend, and the first
 *    point after it moves the variances by at most 1 - exp(-max_gap / variance_window) (4 % by
 *    default); the offsets learnt before the gap still apply after it;
 *  - the residual standard deviation is floored at 1e-9 * max(1, |expected|), so a constant
 *    series never divides by zero and any larger deviation from it is anomalous (|z| capped
 *    at 1e6).
 *
 * Score: 1 - exp(-max(0, |z| - 1) / threshold), monotone in |z| (the zscore formula).
 * Confidence: min(1, n / (4 * min_history)) * cycles * (0.5 + 0.5 * min(1, |z| / (2 *
 * threshold))) where cycles = min(1, (1 + earlier visits of the slot) / (1 + 2 * min_cycles))
 * (1 with `period = none`): it grows with the history of the slot and with the deviation.
 *
 * warmup() runs the very same step as observe(), so priming from a store and observing the same
 * points leave byte-identical state (an episode still open at the end included).
 *
 * State lives in the core-owned per-series blob (se_state_t, 952 bytes, zeroed on first use);
 * observe() never allocates and reads the instance read-only, as worker threads share it.
 *
 * Speed. The per-slot arrays are most of the state, but a point only needs its slot and the two
 * next to it, and most points fall in the hour of the point before. Those three slots are
 * therefore copied into the state's first 112 bytes (near[], near_slot[]) when a series enters
 * an hour and written back when it leaves it: a point inside the hour touches only those bytes
 * (two cache lines), not three lines scattered over the blob. Reciprocals of the time constants
 * and the per-visit weights are computed once in create(), so the usual point takes no pow()
 * or log() and few divisions.
 */
#include <sentinel/plugin.h>

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SE_SLOTS 168                /* hour-of-week slots; `day` uses the first 24 */
#define SE_HOUR_MS 3600000LL        /* one slot */
#define SE_Z_CAP 1e6                /* |z| cap, reached by deviations from a constant series */
#define SE_SIGMA_FLOOR 1e-9         /* relative to max(1, |expected|) */
#define SE_OUTLIER_WEIGHT 0.1       /* weight of an outlier in the baselines */
#define SE_MAX_OFFSET_MIN (14 * 60) /* UTC+14:00 is the furthest real zone */
#define SE_VISITS_MAX 15            /* the visit counter is 4 bits and saturates */
#define SE_MIN_CYCLES_MAX 7         /* so that confidence can reach 1 below SE_VISITS_MAX */
#define SE_MIN_RESIDUALS 30         /* seasonal residuals before that model judges */

typedef struct se {
    const sn_host_t *host;
    int slots; /* 0 (none), 24 (day) or 168 (week) */
    int64_t offset_ms;
    double threshold;
    int64_t min_history;
    int64_t hysteresis;
    int min_cycles;
    int season_cycles;
    double level_ms, variance_ms, trend_ms, max_gap_ms;
    double inv_level, inv_variance, inv_trend; /* 1 / the windows (0 for a disabled trend) */
    double inv_season_cycles;
    /* per visit count v (1..15): max(1 / v, 1 / season_cycles), the per-visit offset weight,
     * and log(1 - it) (0 when it is 1), so observe() needs no pow() or division */
    double per_visit[SE_VISITS_MAX + 1];
    double log_keep[SE_VISITS_MAX + 1];
    /* per spread weight of a finished visit for v visits (1..15):
     * max(v > 2 ? 1 / (v - 1) : 1, 1 / season_cycles) */
    double fold_w[SE_VISITS_MAX + 1];
    /* per earlier visits (0..15): min(1, (1 + it) / (1 + 2 * min_cycles)), the confidence factor */
    double cycles_conf[SE_VISITS_MAX + 1];
    double hist_div; /* 4 * min_history: confidence grows with n up to there */
} se_t;

/* Per-series state: all-zero bytes are a valid "never seen" state. Laid out without implicit
 * padding so that two states compare byte for byte. */
typedef struct se_state {
    int64_t last_ts;
    int64_t last_hour;            /* local hour index of the newest point */
    double lvl_r, trend_r, var_r; /* plain model (trend per ms) */
    double lvl_s, var_s;          /* seasonal model: de-seasonalised level, base variance */
    double visit_z2;              /* sum of residual^2 / base variance in the current visit */
    uint64_t n;                   /* points accepted */
    uint64_t n_s;                 /* points that fed var_s */
    uint32_t normal_run;          /* consecutive normal points inside an episode */
    uint16_t visit_points;        /* points so far in the current visit */
    uint16_t visit_scored;        /* of which fed visit_z2 */
    uint8_t in_episode;
    /* The hot copy (valid once n > 0 with a period): hot is the slot of last_hour, near[] and
     * near_slot[] hold season[] and slot[] of hot - 1, hot and hot + 1 (cyclically). near[1]
     * and near_slot[1] are authoritative, season[hot] and slot[hot] stale until the series
     * leaves the hour; the neighbours' copies are only read. */
    uint8_t hot;
    uint8_t near_slot[3];
    uint8_t reserved[3];
    float near[3];
    uint8_t reserved2[4];
    float season[SE_SLOTS]; /* additive offset per slot: the slot's mean */
    uint8_t slot[SE_SLOTS]; /* low nibble: visits (current included), high nibble: spread class q
                               (factor 2^(q / 3)) */
} se_state_t;

_Static_assert(sizeof(se_state_t) <= 1024, "the seasonal state must fit in 1 KiB");
_Static_assert(offsetof(se_state_t, season) == 112, "the hot part is the first 112 bytes");
_Static_assert(sizeof(se_state_t) == 112 + SE_SLOTS * 5, "no implicit padding");

static const sn_param_t se_params[] = {
    {"period", SN_T_STRING, "week", 0,
     "seasonality: week (168 hour-of-week slots), day (24 hour-of-day slots) or none (level + "
     "trend only)"},
    {"utc_offset_minutes", SN_T_INT, "0", 0,
     "shift from UTC to the local time the pattern follows, -840 to 840 (fixed, no DST)"},
    {"threshold", SN_T_DOUBLE, "4", 0,
     "|z| of the residual at or above which a point is anomalous; score = 1 - exp(-max(0, |z| - "
     "1) / threshold)"},
    {"hysteresis", SN_T_INT, "5", 0,
     "consecutive normal points that end an anomaly episode; only the first point of an "
     "episode is reported anomalous"},
    {"min_history", SN_T_INT, "30", 0,
     "points a series must have before the detector reports anything"},
    {"min_cycles", SN_T_INT, "2", 0,
     "full periods a slot must have seen before its seasonal baseline judges, 1 to 7; before, "
     "the plain level + trend does"},
    {"season_cycles", SN_T_INT, "4", 0,
     "memory of the seasonal offsets in periods (a visit weighs at least 1 / season_cycles), "
     "1 to 15"},
    {"level_window", SN_T_DURATION, "1h", 0,
     "time constant of the levels (exponential smoothing over event time)"},
    {"variance_window", SN_T_DURATION, "1d", 0, "time constant of the residual variances"},
    {"trend_window", SN_T_DURATION, "1d", 0,
     "time constant of the plain model's trend; 0 disables the trend"},
    {"max_gap", SN_T_DURATION, "1h", 0,
     "a gap counts as at most this long: caps the trend extrapolation and the weight of the "
     "first point after a gap"},
    {NULL, 0, NULL, 0, NULL},
};

static int se_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    se_t *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    c->host = host;
    const char *period = host->cfg_str(cfg, "period");
    int64_t off = host->cfg_int(cfg, "utc_offset_minutes");
    c->threshold = host->cfg_double(cfg, "threshold");
    c->hysteresis = host->cfg_int(cfg, "hysteresis");
    c->min_history = host->cfg_int(cfg, "min_history");
    int64_t min_cycles = host->cfg_int(cfg, "min_cycles");
    int64_t season_cycles = host->cfg_int(cfg, "season_cycles");
    int64_t level = host->cfg_int(cfg, "level_window");
    int64_t variance = host->cfg_int(cfg, "variance_window");
    int64_t trend = host->cfg_int(cfg, "trend_window");
    int64_t max_gap = host->cfg_int(cfg, "max_gap");

    int rc = SN_EINVAL;
    if (!period || strcmp(period, "week") == 0)
        c->slots = SE_SLOTS;
    else if (strcmp(period, "day") == 0)
        c->slots = 24;
    else if (strcmp(period, "none") == 0)
        c->slots = 0;
    else {
        snprintf(err->msg, sizeof(err->msg), "period must be week, day or none");
        goto out;
    }
    if (off < -SE_MAX_OFFSET_MIN || off > SE_MAX_OFFSET_MIN) {
        snprintf(err->msg, sizeof(err->msg),
                 "utc_offset_minutes must be between -%d and %d (got %lld)", SE_MAX_OFFSET_MIN,
                 SE_MAX_OFFSET_MIN, (long long)off);
        goto out;
    }
    if (!(c->threshold > 0) || !isfinite(c->threshold)) {
        snprintf(err->msg, sizeof(err->msg), "threshold must be a positive number");
        goto out;
    }
    if (c->hysteresis < 0 || c->hysteresis > 1000000) {
        snprintf(err->msg, sizeof(err->msg), "hysteresis must be between 0 and 1000000");
        goto out;
    }
    if (c->min_history < 0 || c->min_history > 1000000000) {
        snprintf(err->msg, sizeof(err->msg), "min_history must be between 0 and 1000000000");
        goto out;
    }
    if (min_cycles < 1 || min_cycles > SE_MIN_CYCLES_MAX) {
        snprintf(err->msg, sizeof(err->msg), "min_cycles must be between 1 and %d (got %lld)",
                 SE_MIN_CYCLES_MAX, (long long)min_cycles);
        goto out;
    }
    if (season_cycles < 1 || season_cycles > SE_VISITS_MAX) {
        snprintf(err->msg, sizeof(err->msg), "season_cycles must be between 1 and %d (got %lld)",
                 SE_VISITS_MAX, (long long)season_cycles);
        goto out;
    }
    if (level <= 0 || variance <= 0 || max_gap <= 0) {
        snprintf(err->msg, sizeof(err->msg), "%s must be a positive duration",
                 level <= 0      ? "level_window"
                 : variance <= 0 ? "variance_window"
                                 : "max_gap");
        goto out;
    }
    c->offset_ms = off * 60000;
    c->min_cycles = (int)min_cycles;
    c->season_cycles = (int)season_cycles;
    c->inv_season_cycles = 1.0 / (double)season_cycles;
    for (int v = 1; v <= SE_VISITS_MAX; v++) {
        /* the weight of one visit: 1 / v, but never below 1 / season_cycles */
        double pv = 1.0 / v >= c->inv_season_cycles ? 1.0 / v : c->inv_season_cycles;
        c->per_visit[v] = pv;
        c->log_keep[v] = pv < 1 ? log1p(-pv) : 0;
        double fw = v > 2 ? 1.0 / (v - 1) : 1.0;
        c->fold_w[v] = fw > c->inv_season_cycles ? fw : c->inv_season_cycles;
    }
    for (int e = 0; e <= SE_VISITS_MAX; e++) {
        double cyc = (1.0 + e) / (1.0 + 2.0 * c->min_cycles);
        c->cycles_conf[e] = cyc < 1 ? cyc : 1;
    }
    c->hist_div = 4.0 * (double)c->min_history;
    c->level_ms = (double)level;
    c->variance_ms = (double)variance;
    c->trend_ms = (double)trend;
    c->max_gap_ms = (double)max_gap;
    c->inv_level = 1.0 / c->level_ms;
    c->inv_variance = 1.0 / c->variance_ms;
    c->inv_trend = trend > 0 ? 1.0 / c->trend_ms : 0;
    *self = c;
    c = NULL;
    rc = 0;
out:
    free(c);
    return rc;
}

static void se_destroy(void *self)
{
    free(self);
}

static int64_t se_floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if (a % b != 0 && (a < 0) != (b < 0))
        q--;
    return q;
}

static int se_visits_of(uint8_t b)
{
    return b & 0x0f;
}

/* 2^(q / 3) for the 16 spread classes: a table, not an exp2() per point. */
static const double se_spread_of[16] = {
    1,  1.2599210498948732, 1.5874010519681994, 2, 2.5198420997897464, 3.1748021039363992,
    4,  5.0396841995794928, 6.3496042078727974, 8, 10.079368399158986, 12.699208415745595,
    16, 20.158736798317967, 25.398416831491197, 32};

/* 2^(-q / 3): every point scales a residual by its slot's spread, by a multiplication. */
static const double se_inv_spread_of[16] = {1.0,    0.7937005259840998,   0.6299605249474366,
                                            0.5,    0.3968502629920499,   0.3149802624737183,
                                            0.25,   0.19842513149602492,  0.15749013123685915,
                                            0.125,  0.09921256574801246,  0.07874506561842957,
                                            0.0625, 0.049606282874006244, 0.03937253280921478,
                                            0.03125};

static int se_slot_of(const se_t *c, int64_t hour)
{
    /* hour-of-week slot 0 is Monday 00:00 (the epoch fell on a Thursday, 72 hours later) */
    int64_t m = (hour + (c->slots == SE_SLOTS ? 72 : 0)) % c->slots;
    return (int)(m < 0 ? m + c->slots : m);
}

/* Where a point at @p ts falls, computed from the state without changing it. */
typedef struct se_ctx {
    int64_t hour;  /* local hour index */
    double frac;   /* position inside the local hour, [0, 1) */
    int slot;      /* 0 when the period is none */
    int new_visit; /* the point opens a new visit of its slot */
    int completed; /* earlier visits of the slot */
    int seasonal;  /* the slot speaks */
    double dt;     /* ms since the newest point (0 for the first) */
    double h;      /* dt capped at max_gap */
    /* where the offsets and slot bytes of slot - 1, slot, slot + 1 live now: the hot copy, or
     * the arrays (the hot slot's entry still read from the copy); NULL with period none */
    float *val[3];
    uint8_t *byte[3];
} se_ctx_t;

static void se_context(const se_t *c, se_state_t *s, int64_t ts, se_ctx_t *k)
{
    /* every field is set below (no memset: it would cost more than the rest) */
    /* Most points fall in the hour of the previous one: no division then. */
    int in_range = s->last_hour > INT64_MIN / SE_HOUR_MS + 100 &&
                   s->last_hour < INT64_MAX / SE_HOUR_MS - 100; /* no overflow below */
    int64_t start = in_range ? s->last_hour * SE_HOUR_MS - c->offset_ms : 0;
    int same_hour = s->n > 0 && in_range && ts >= start && ts < start + SE_HOUR_MS;
    if (same_hour) {
        k->hour = s->last_hour;
        k->frac = (double)(ts - start) * (1.0 / (double)SE_HOUR_MS);
    } else {
        /* split before adding the offset: no overflow even near INT64_MAX */
        int64_t q = se_floordiv(ts, SE_HOUR_MS);
        int64_t rem = ts - q * SE_HOUR_MS + c->offset_ms;
        int64_t carry = se_floordiv(rem, SE_HOUR_MS);
        k->hour = q + carry;
        k->frac = (double)(rem - carry * SE_HOUR_MS) * (1.0 / (double)SE_HOUR_MS);
        same_hour = s->n > 0 && k->hour == s->last_hour;
    }
    k->dt = k->h = 0;
    if (s->n > 0 && ts > s->last_ts) {
        k->dt = (double)(ts - s->last_ts);
        k->h = k->dt < c->max_gap_ms ? k->dt : c->max_gap_ms;
    }
    if (c->slots == 0) {
        k->slot = k->new_visit = k->completed = k->seasonal = 0;
        for (int i = 0; i < 3; i++) {
            k->val[i] = NULL;
            k->byte[i] = NULL;
        }
        return;
    }
    if (same_hour) {
        k->slot = s->hot;
        for (int i = 0; i < 3; i++) {
            k->val[i] = &s->near[i];
            k->byte[i] = &s->near_slot[i];
        }
    } else {
        k->slot = se_slot_of(c, k->hour);
        int at[3] = {(k->slot + c->slots - 1) % c->slots, k->slot, (k->slot + 1) % c->slots};
        for (int i = 0; i < 3; i++) {
            int hot = s->n > 0 && at[i] == s->hot;
            k->val[i] = hot ? &s->near[1] : &s->season[at[i]];
            k->byte[i] = hot ? &s->near_slot[1] : &s->slot[at[i]];
        }
    }
    k->new_visit = !same_hour;
    k->completed = se_visits_of(*k->byte[1]) - (k->new_visit ? 0 : 1);
    k->seasonal = k->completed >= c->min_cycles && s->n_s >= SE_MIN_RESIDUALS;
}

/* The series enters the hour of slot @p slot: write the hot copy back (when there is one) and
 * copy the new slot's neighbourhood in. */
static void se_settle(const se_t *c, se_state_t *s, int had_hot, int slot)
{
    if (had_hot) {
        s->season[s->hot] = s->near[1];
        s->slot[s->hot] = s->near_slot[1];
    }
    int at[3] = {(slot + c->slots - 1) % c->slots, slot, (slot + 1) % c->slots};
    for (int i = 0; i < 3; i++) {
        s->near[i] = s->season[at[i]];
        s->near_slot[i] = s->slot[at[i]];
    }
    s->hot = (uint8_t)slot;
}

/* The spread a point is judged with: the widest of its slot and the two next to it. A slot's
 * own estimate rests on a few visits; neighbouring hours share most of their noise, and taking
 * the widest errs towards silence. */
static double se_spread_near(const se_ctx_t *k)
{
    int q = *k->byte[1] >> 4, prev = *k->byte[0] >> 4, next = *k->byte[2] >> 4;
    if (prev > q)
        q = prev;
    if (next > q)
        q = next;
    return se_spread_of[q];
}

/* The offset at a point: the slot's mean plus a ramp through it whose slope is the minmod of
 * the differences to the neighbouring slots (0 when they differ in sign or a neighbour was never
 * seen). The ramp integrates to zero over the slot, which therefore still learns its mean. */
static double se_offset(const se_ctx_t *k)
{
    double mid = (double)*k->val[1];
    if (!se_visits_of(*k->byte[0]) || !se_visits_of(*k->byte[2]))
        return mid;
    double back = mid - (double)*k->val[0];
    double fwd = (double)*k->val[2] - mid;
    if (back * fwd <= 0)
        return mid;
    double slope = fabs(back) < fabs(fwd) ? back : fwd;
    return mid + (k->frac - 0.5) * slope;
}

/* Expected value and residual variance of the model that judges a point in context @p k;
 * @p off is se_offset(k) when the slot speaks. */
static double se_expected(const se_state_t *s, const se_ctx_t *k, double off, double *var)
{
    if (k->seasonal) {
        *var = s->var_s * se_spread_near(k);
        return s->lvl_s + off;
    }
    *var = s->var_r;
    return s->lvl_r + s->trend_r * k->h;
}

static double se_floor2(double expected)
{
    double f = SE_SIGMA_FLOOR * (fabs(expected) > 1 ? fabs(expected) : 1);
    return f * f;
}

static double se_zvalue(double x, double expected, double var)
{
    double floor2 = se_floor2(expected);
    double z = (x - expected) / sqrt(var > floor2 ? var : floor2);
    if (z > SE_Z_CAP)
        z = SE_Z_CAP;
    if (z < -SE_Z_CAP)
        z = -SE_Z_CAP;
    return z;
}

/* (1 - exp(-x)) / x for x > 0. Points are usually seconds apart and the time constants hours,
 * so x is small: there the series 1 - x/2 + x^2/6 - x^3/24 + x^4/120 is within 2e-16 relative
 * (for x < 0.01) and costs no libm call and no division; larger steps take expm1(). */
static inline double se_one_minus_exp_over(double x)
{
    if (x < 0.01)
        return 1 - x * 0.5 * (1 - x * (1.0 / 3) * (1 - x * 0.25 * (1 - x * 0.2)));
    return -expm1(-x) / x;
}

/* 1 - exp(-x) for x >= 0, as above. */
static inline double se_one_minus_exp(double x)
{
    if (x < 0.01)
        return x * se_one_minus_exp_over(x);
    return -expm1(-x);
}

/* max(w, 1 / n) for n >= 1, without the division once 1 / n is clearly the smaller (n * w
 * beyond 1 by far more than rounding): the usual case once a series has some history. */
static inline double se_max_inv(double w, uint64_t n)
{
    double inv = (double)n * w > 1 + 1e-9 ? 0 : 1.0 / (double)n;
    return w > inv ? w : inv;
}

/* West's weighted update of an exponentially weighted variance around the prediction. */
static void se_var_update(double *var, double d2, double a)
{
    *var = (1 - a) * (*var + a * d2);
}

/* The time weights of a step of k->h (1 - exp(-h / window)), shared by both models. */
typedef struct se_weights {
    double level, variance;
} se_weights_t;

static void se_update_plain(const se_t *c, se_state_t *s, const se_ctx_t *k, const se_weights_t *tw,
                            double x, double w)
{
    /* n already counts this point */
    double pred = s->lvl_r + s->trend_r * k->h;
    double a = se_max_inv(tw->level, s->n) * w;
    double lvl = pred + a * (x - pred);
    if (c->trend_ms > 0) /* (1 - exp(-h / trend_window)) / h */
        s->trend_r += se_one_minus_exp_over(k->h * c->inv_trend) * c->inv_trend * w * (lvl - pred);
    se_var_update(&s->var_r, (x - pred) * (x - pred), se_max_inv(tw->variance, s->n) * w);
    s->lvl_r = lvl;
}

/* Fold the finished visit's mean squared standardised residual into its slot's spread class,
 * weighted like the offsets. The finished visit's slot is the hot one. */
static void se_fold_visit(const se_t *c, se_state_t *s)
{
    if (s->visit_scored == 0)
        return;
    uint8_t *b = &s->near_slot[1];
    /* the first scored visit (the slot's second) sets the spread, later ones average in */
    double w = c->fold_w[se_visits_of(*b)];
    double old = se_spread_of[*b >> 4];
    double ratio = old + w * (s->visit_z2 / s->visit_scored - old);
    long q = ratio > 1 ? lround(3 * log2(ratio)) : 0;
    if (q < 0)
        q = 0;
    if (q > 15)
        q = 15;
    *b = (uint8_t)((*b & 0x0f) | (q << 4));
}

static void se_update_seasonal(const se_t *c, se_state_t *s, const se_ctx_t *k,
                               const se_weights_t *tw, double off, double x, double w)
{
    double pred = s->lvl_s + off;
    double d2 = (x - pred) * (x - pred);
    double inv_spread = se_inv_spread_of[*k->byte[1] >> 4];
    double base = s->var_s;
    if (k->new_visit) {
        se_fold_visit(c, s);
        s->visit_z2 = 0;
        s->visit_scored = 0;
        s->visit_points = 0;
        if (se_visits_of(*k->byte[1]) < SE_VISITS_MAX)
            (*k->byte[1])++;
    }
    if (s->visit_points < UINT16_MAX)
        s->visit_points++;
    if (k->completed >= 1) {
        /* only residuals against an offset learnt in an earlier period describe the model */
        if (s->n_s >= SE_MIN_RESIDUALS && w == 1.0 && s->visit_scored < UINT16_MAX) {
            double floor2 = se_floor2(pred);
            double z2 = d2 / (base > floor2 ? base : floor2);
            s->visit_z2 += z2 < 1e6 ? z2 : 1e6;
            s->visit_scored++;
        }
        s->n_s++;
        se_var_update(&s->var_s, d2 * inv_spread, se_max_inv(tw->variance, s->n_s) * w);
    }
    double mean = (double)*k->val[1];
    int v = se_visits_of(*k->byte[1]);
    if (v == 1) {
        /* first visit: the offset is the running mean of (value - level); the level stays */
        *k->val[1] = (float)(mean + (x - s->lvl_s - mean) / (double)s->visit_points);
        return;
    }
    /* level first, then the slot's mean takes what the level left of the residual */
    double a = se_max_inv(tw->level, s->n) * w;
    double lvl = s->lvl_s + a * (x - pred);
    double f = k->dt < (double)SE_HOUR_MS ? k->dt * (1.0 / (double)SE_HOUR_MS) : 1.0;
    /* 1 - (1 - per_visit)^f, with log1p(-per_visit) read from the instance's table */
    double ws = (c->per_visit[v] >= 1 ? 1.0 : se_one_minus_exp(-f * c->log_keep[v])) * w;
    *k->val[1] = (float)(mean + ws * (x - lvl - off));
    s->lvl_s = lvl;
}

static void se_first(const se_t *c, se_state_t *s, const se_ctx_t *k, int64_t ts, double x)
{
    s->lvl_r = s->lvl_s = x;
    s->n = 1;
    s->last_ts = ts;
    s->last_hour = k->hour;
    if (c->slots) {
        *k->byte[1] = 1;
        s->visit_points = 1;
        *k->val[1] = 0;
        se_settle(c, s, 0, k->slot);
    }
}

/* One point: judge against the models as they were, then fold the point in. @p out may be NULL
 * (warmup); the state changes identically either way. */
static void se_step(const se_t *c, se_state_t *s, int64_t ts, double x, sn_verdict_t *out)
{
    se_ctx_t k;
    double var;
    if (out)
        memset(out, 0, sizeof(*out));
    if (!isfinite(x) || (s->n > 0 && ts <= s->last_ts)) {
        if (out && s->n > 0) {
            se_context(c, s, ts > s->last_ts ? ts : s->last_ts, &k);
            out->expected = se_expected(s, &k, k.seasonal ? se_offset(&k) : 0, &var);
        }
        return;
    }
    se_context(c, s, ts, &k);
    if (s->n == 0) {
        se_first(c, s, &k, ts, x);
        if (out)
            out->expected = x;
        return;
    }

    double off = c->slots ? se_offset(&k) : 0;
    double expected = se_expected(s, &k, off, &var);
    double zv = se_zvalue(x, expected, var);
    double az = fabs(zv);
    int speaking = s->n >= (uint64_t)c->min_history;
    int outlier = speaking && az >= c->threshold;

    if (out) {
        out->expected = expected;
        if (speaking) {
            double excess = az - 1 > 0 ? az - 1 : 0;
            out->score = excess > 0 ? 1 - exp(-excess / c->threshold) : 0; /* most points */
            double hist = (double)s->n >= c->hist_div ? 1.0 : (double)s->n / c->hist_div;
            if (c->slots)
                hist *= c->cycles_conf[k.completed];
            double size = az / (2 * c->threshold);
            out->confidence = hist * (0.5 + 0.5 * (size < 1 ? size : 1));
        }
    }
    if (speaking) {
        if (outlier) {
            if (!s->in_episode && out)
                out->anomalous = 1;
            s->in_episode = 1;
            s->normal_run = 0;
        } else if (s->in_episode) {
            if (++s->normal_run >= (uint64_t)c->hysteresis) {
                s->in_episode = 0;
                s->normal_run = 0;
            }
        }
    }

    /* Each model weighs the point by its own verdict on it (the same one when the plain model
     * is the judge). */
    int out_r = outlier;
    if (k.seasonal) {
        se_ctx_t plain = k;
        plain.seasonal = 0;
        double var_r;
        double exp_r = se_expected(s, &plain, 0, &var_r);
        out_r = speaking && fabs(se_zvalue(x, exp_r, var_r)) >= c->threshold;
    }
    int out_s = k.seasonal && outlier;
    se_weights_t tw = {se_one_minus_exp(k.h * c->inv_level),
                       se_one_minus_exp(k.h * c->inv_variance)};
    s->n++;
    se_update_plain(c, s, &k, &tw, x, out_r ? SE_OUTLIER_WEIGHT : 1.0);
    if (c->slots) {
        se_update_seasonal(c, s, &k, &tw, off, x, out_s ? SE_OUTLIER_WEIGHT : 1.0);
        if (k.new_visit)
            se_settle(c, s, 1, k.slot);
    }
    s->last_ts = ts;
    s->last_hour = k.hour;
}

/** Thread: telemetry worker. Ownership: @p state is the core's per-series blob. */
static int se_observe(const void *self, void *state, const sn_point_t *p, sn_verdict_t *out)
{
    se_step(self, state, p->ts_ms, p->value, out);
    return 0;
}

/** Prime a series from history (oldest first) with the same step as observe(), minus the
 * verdicts, so the state is exactly what observing the points would have left.
 * Thread: telemetry worker. */
static int se_warmup(const void *self, void *state, const int64_t *ts, const double *v, size_t n)
{
    if (n > 0 && (!ts || !v))
        return SN_EINVAL;
    for (size_t i = 0; i < n; i++)
        se_step(self, state, ts[i], v[i], NULL);
    return 0;
}

static int se_health(void *self, sn_health_t *out)
{
    (void)self;
    out->ok = 1;
    out->detail[0] = '\0';
    return 0;
}

static const sn_detector_ops_t se_ops = {
    .struct_size = sizeof(sn_detector_ops_t),
    .state_size = sizeof(se_state_t),
    .observe = se_observe,
    .warmup = se_warmup,
};

static const sn_plugin_t se_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_DETECTOR,
    .type = "seasonal",
    .version = "1.0.0",
    .summary = "hour-of-day/week baselines (Holt-Winters) with a residual z-score, one anomaly "
               "per episode",
    .params = se_params,
    .create = se_create,
    .destroy = se_destroy,
    .health = se_health,
    .ops = &se_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &se_plugin;
}
