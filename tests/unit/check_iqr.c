/** @file check_iqr.c Tests of the iqr detector, loaded as a .so through the harness. */
#include "harness.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct iq_fix {
    sn_harness_t *h;
    const sn_detector_ops_t *ops;
    void *self;
    void *state;
    int64_t ts;
} iq_fix_t;

static void iq_open(iq_fix_t *f, const char *settings)
{
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    f->self = sn_harness_create(f->h, SN_DETECTOR, "iqr", settings, &p, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    ck_assert_int_eq(p->kind, SN_DETECTOR);
    ck_assert_str_eq(p->type, "iqr");
    f->ops = p->ops;
    ck_assert_ptr_nonnull(f->ops->observe);
    ck_assert_uint_gt(f->ops->state_size, 0);
    f->state = calloc(1, f->ops->state_size);
    ck_assert_ptr_nonnull(f->state);
    f->ts = 1795600800000LL;
}

static void iq_close(iq_fix_t *f)
{
    free(f->state);
    sn_harness_free(f->h);
}

/* Observe @p v at @p ts on @p state and check that every verdict field was filled. */
static sn_verdict_t iq_observe_at(iq_fix_t *f, void *state, int64_t ts, double v)
{
    sn_point_t p = {.ts_ms = ts, .value = v, .series = 42, .metric = "latency_ms"};
    sn_verdict_t out;
    memset(&out, 0x5a, sizeof(out)); /* the detector must fill every field */
    ck_assert_int_eq(f->ops->observe(f->self, state, &p, &out), 0);
    ck_assert(out.score >= 0 && out.score <= 1);
    ck_assert(out.confidence >= 0 && out.confidence <= 1);
    ck_assert(out.anomalous == 0 || out.anomalous == 1);
    ck_assert(isfinite(out.expected));
    return out;
}

/* Observe the next point (10 s later). */
static sn_verdict_t iq_feed(iq_fix_t *f, double v)
{
    sn_verdict_t out = iq_observe_at(f, f->state, f->ts, v);
    f->ts += 10000;
    return out;
}

static uint64_t iq_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Deterministic noise, roughly normal with standard deviation 1 (bounded by +-3.5). */
static double iq_noise(uint64_t *s)
{
    double sum = 0;
    for (int i = 0; i < 4; i++)
        sum += (double)(iq_rand(s) >> 11) / 9007199254740992.0 - 0.5;
    return sum * sqrt(3.0);
}

START_TEST(state_is_small)
{
    iq_fix_t f;
    iq_open(&f, "");
    /* float storage: two arrays of window floats and a few counters; state_size is the
     * bound for the largest window, state_size_of() this instance's need */
    ck_assert_uint_le(f.ops->state_size, 2200);
    ck_assert_uint_ge(f.ops->state_size, 2 * 256 * sizeof(float));
    ck_assert_ptr_nonnull(f.ops->state_size_of);
    ck_assert_uint_le(f.ops->state_size_of(f.self), 600); /* default window 64 */
    ck_assert_uint_ge(f.ops->state_size_of(f.self), 2 * 64 * sizeof(float));
    ck_assert_ptr_nonnull(f.ops->warmup);
    iq_close(&f);
}
END_TEST

START_TEST(silent_before_min_history)
{
    iq_fix_t f;
    iq_open(&f, "min_history = 32\n");
    uint64_t seed = 5;
    for (int i = 0; i < 32; i++) {
        double v = 10 + iq_noise(&seed) + (i == 20 ? 100 : 0);
        sn_verdict_t out = iq_feed(&f, v);
        ck_assert_int_eq(out.anomalous, 0);
        ck_assert_double_eq(out.score, 0);
        ck_assert_double_eq(out.confidence, 0);
    }
    /* from min_history on it speaks */
    sn_verdict_t out = iq_feed(&f, 200);
    ck_assert_int_eq(out.anomalous, 1);
    ck_assert_double_gt(out.score, 0.9);
    iq_close(&f);
}
END_TEST

START_TEST(spike_in_noise_is_reported_once)
{
    iq_fix_t f;
    iq_open(&f, "");
    uint64_t seed = 7;
    int count = 0, first = -1, second = -1;
    for (int i = 0; i < 600; i++) {
        double v = 100 + 3 * iq_noise(&seed);
        if (i == 200)
            v += 60; /* a one-point spike */
        if (i >= 400 && i < 403)
            v -= 60; /* a three-point dip: one episode */
        sn_verdict_t out = iq_feed(&f, v);
        if (out.anomalous) {
            count++;
            if (first < 0)
                first = i;
            else if (second < 0)
                second = i;
            ck_assert_double_gt(out.score, 0.9);
            ck_assert_double_gt(out.confidence, 0.9);
            ck_assert_double_lt(fabs(out.expected - 100), 2);
        } else if (i > 40 && i != 200 && (i < 400 || i >= 403)) {
            ck_assert_double_lt(out.score, 1 - exp(-1)); /* inside the fences */
        }
        if (i >= 401 && i < 403) /* still far out, but the same episode */
            ck_assert_double_gt(out.score, 0.9);
    }
    ck_assert_int_eq(count, 2);
    ck_assert_int_eq(first, 200);
    ck_assert_int_eq(second, 400);
    iq_close(&f);
}
END_TEST

START_TEST(step_is_one_episode_then_absorbed)
{
    iq_fix_t f;
    iq_open(&f, ""); /* window 64: absorbed within about 10 * 64 / 4 + 64 points */
    uint64_t seed = 11;
    int count = 0, at = -1;
    for (int i = 0; i < 800; i++) {
        double v = (i >= 250 ? 160 : 100) + 3 * iq_noise(&seed);
        sn_verdict_t out = iq_feed(&f, v);
        if (out.anomalous) {
            count++;
            at = i;
        }
        /* the anomaly does not become normal at once: the window keeps the old level */
        if (i >= 250 && i < 300) {
            ck_assert_double_gt(out.score, 0.9);
            ck_assert_double_lt(fabs(out.expected - 100), 3);
        }
        /* a lasting shift is absorbed: the median moves to the new level */
        if (i >= 600) {
            ck_assert_double_lt(fabs(out.expected - 160), 3);
            ck_assert_double_lt(out.score, 1 - exp(-1));
        }
    }
    ck_assert_int_eq(count, 1);
    ck_assert_int_eq(at, 250);
    /* and a spike on the new level is a new anomaly */
    ck_assert_int_eq(iq_feed(&f, 230).anomalous, 1);
    iq_close(&f);
}
END_TEST

START_TEST(hysteresis_merges_close_spikes)
{
    iq_fix_t f;
    iq_open(&f, "hysteresis = 5\n");
    uint64_t seed = 3;
    int count = 0;
    for (int i = 0; i < 300; i++) {
        double v = 50 + iq_noise(&seed);
        if (i == 100 || i == 103) /* 2 normal points between: same episode */
            v += 40;
        if (i == 200 || i == 210) /* 9 normal points between: two episodes */
            v += 40;
        if (iq_feed(&f, v).anomalous)
            count++;
    }
    ck_assert_int_eq(count, 3);
    iq_close(&f);
}
END_TEST

START_TEST(nan_and_inf_are_ignored)
{
    iq_fix_t f;
    iq_open(&f, "");
    uint64_t seed = 9;
    for (int i = 0; i < 100; i++)
        iq_feed(&f, 20 + iq_noise(&seed));
    void *before = malloc(f.ops->state_size);
    memcpy(before, f.state, f.ops->state_size);
    const double bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 3; i++) {
        sn_verdict_t out = iq_feed(&f, bad[i]);
        ck_assert_int_eq(out.anomalous, 0);
        ck_assert_double_eq(out.score, 0);
        ck_assert_double_eq(out.confidence, 0);
        ck_assert_double_lt(fabs(out.expected - 20), 1);
        ck_assert_int_eq(memcmp(before, f.state, f.ops->state_size), 0);
    }
    /* and the series carries on normally */
    ck_assert_int_eq(iq_feed(&f, 20).anomalous, 0);
    ck_assert_int_eq(iq_feed(&f, 80).anomalous, 1);
    free(before);
    iq_close(&f);
}
END_TEST

START_TEST(out_of_order_and_duplicate_timestamps_are_ignored)
{
    iq_fix_t f;
    iq_open(&f, "");
    uint64_t seed = 13;
    for (int i = 0; i < 100; i++)
        iq_feed(&f, 20 + iq_noise(&seed));
    int64_t last = f.ts - 10000;
    void *before = malloc(f.ops->state_size);
    memcpy(before, f.state, f.ops->state_size);
    const int64_t stale[] = {last - 60000, last};
    for (size_t i = 0; i < 2; i++) {
        sn_verdict_t out = iq_observe_at(&f, f.state, stale[i], 1000);
        ck_assert_int_eq(out.anomalous, 0);
        ck_assert_double_eq(out.score, 0);
        ck_assert_double_eq(out.confidence, 0);
        ck_assert_int_eq(memcmp(before, f.state, f.ops->state_size), 0);
    }
    /* the same spike in order is reported */
    ck_assert_int_eq(iq_feed(&f, 1000).anomalous, 1);
    free(before);
    iq_close(&f);
}
END_TEST

START_TEST(constant_series_then_deviation)
{
    iq_fix_t f;
    iq_open(&f, "min_history = 10\n");
    for (int i = 0; i < 50; i++) {
        sn_verdict_t out = iq_feed(&f, 0.1);
        ck_assert_int_eq(out.anomalous, 0);
        ck_assert_double_eq(out.score, 0);
    }
    /* a deviation far below 1e-9 relative is noise in the representation, not an anomaly */
    sn_verdict_t out = iq_feed(&f, 0.1 + 1e-13);
    ck_assert_int_eq(out.anomalous, 0);
    out = iq_feed(&f, 0.2);
    ck_assert_int_eq(out.anomalous, 1);
    ck_assert(isfinite(out.score) && isfinite(out.expected) && isfinite(out.confidence));
    ck_assert_double_gt(out.score, 0.99);
    ck_assert_double_eq_tol(out.expected, 0.1, 1e-12);
    /* downwards too, in a new episode */
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(iq_feed(&f, 0.1).anomalous, 0);
    ck_assert_int_eq(iq_feed(&f, 0.0999).anomalous, 1);
    /* absurd but finite values are handled without overflow */
    for (int i = 0; i < 10; i++)
        iq_feed(&f, 0.1);
    out = iq_feed(&f, 1e308);
    ck_assert_int_eq(out.anomalous, 1);
    ck_assert_double_eq(out.score, 1);
    /* a run of them: one in ten enters the window (clamped), the series stays usable */
    for (int i = 0; i < 25; i++)
        ck_assert_double_eq(iq_feed(&f, i % 2 ? 1e308 : -1e308).score, 1);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(iq_feed(&f, 0.1).anomalous, 0);
    ck_assert_int_eq(iq_feed(&f, 0.2).anomalous, 1);
    iq_close(&f);
}
END_TEST

START_TEST(resolution_survives_a_large_level_shift)
{
    /* Float offsets from the first value would lose the 0.01 noise at 1e7 (float ulp there is
     * 1); the rebase must restore it. */
    iq_fix_t f;
    iq_open(&f, "");
    uint64_t seed = 31;
    int count = 0;
    for (int i = 0; i < 2000; i++) {
        double v = (i >= 100 ? 1e7 : 0) + 0.01 * iq_noise(&seed);
        sn_verdict_t out = iq_feed(&f, v);
        count += out.anomalous;
        if (i >= 1000)
            ck_assert_double_lt(out.score, 1 - exp(-1));
    }
    ck_assert_int_eq(count, 1);                /* the shift itself */
    sn_verdict_t out = iq_feed(&f, 1e7 + 0.5); /* 50 noise sigmas */
    ck_assert_int_eq(out.anomalous, 1);
    ck_assert_double_eq_tol(out.expected, 1e7, 0.01);
    /* a constant series after a big shift: the stored values' rounding is not an anomaly */
    iq_fix_t g;
    iq_open(&g, "");
    for (int i = 0; i < 40; i++)
        iq_feed(&g, 5);
    count = 0;
    for (int i = 0; i < 1500; i++)
        count += iq_feed(&g, 0.1).anomalous;
    ck_assert_int_eq(count, 1);
    ck_assert_int_eq(iq_feed(&g, 0.1).anomalous, 0);
    ck_assert_int_eq(iq_feed(&g, 0.1001).anomalous, 1);
    iq_close(&g);
    iq_close(&f);
}
END_TEST

START_TEST(score_and_confidence_grow_with_distance_and_history)
{
    iq_fix_t f;
    iq_open(&f, "window = 64\nmin_history = 8\n");
    void *scratch = malloc(f.ops->state_size);
    ck_assert_ptr_nonnull(scratch);
    double conf_young = 0;
    for (int i = 0; i < 100; i++) {
        iq_feed(&f, i % 10); /* Q1 2.25, Q3 6.75, IQR 4.5 once the window holds whole cycles */
        if (i == 15) {
            memcpy(scratch, f.state, f.ops->state_size);
            conf_young = iq_observe_at(&f, scratch, f.ts, 40).confidence;
        }
    }
    /* inside the box: score 0; then monotone in the distance beyond Q3 */
    double prev_s = -1, prev_c = -1;
    const double probes[] = {5, 8, 10, 15, 20, 30, 60, 1e6};
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        memcpy(scratch, f.state, f.ops->state_size);
        sn_verdict_t out = iq_observe_at(&f, scratch, f.ts, probes[i]);
        if (i == 0)
            ck_assert_double_eq(out.score, 0);
        else
            ck_assert_double_gt(out.score, prev_s);
        ck_assert_double_ge(out.confidence, prev_c);
        prev_s = out.score;
        prev_c = out.confidence;
    }
    ck_assert_double_gt(prev_c, 0.99); /* far away, full window */
    memcpy(scratch, f.state, f.ops->state_size);
    double conf_near = iq_observe_at(&f, scratch, f.ts, 8).confidence;
    ck_assert_double_lt(conf_near, 0.6);
    memcpy(scratch, f.state, f.ops->state_size);
    double conf_old = iq_observe_at(&f, scratch, f.ts, 40).confidence;
    ck_assert_double_gt(conf_young, 0);
    ck_assert_double_lt(conf_young, conf_old); /* 16 points held vs a full window */
    free(scratch);
    iq_close(&f);
}
END_TEST

static int iq_count_dir(const char *settings, double delta)
{
    iq_fix_t f;
    iq_open(&f, settings);
    uint64_t seed = 23;
    int count = 0;
    for (int i = 0; i < 200; i++)
        count += iq_feed(&f, 100 + iq_noise(&seed) + (i == 150 ? delta : 0)).anomalous;
    iq_close(&f);
    return count;
}

START_TEST(direction_filters_deviations)
{
    ck_assert_int_eq(iq_count_dir("direction = up\n", 30), 1);
    ck_assert_int_eq(iq_count_dir("direction = up\n", -30), 0);
    ck_assert_int_eq(iq_count_dir("direction = down\n", -30), 1);
    ck_assert_int_eq(iq_count_dir("direction = down\n", 30), 0);
    ck_assert_int_eq(iq_count_dir("direction = both\n", -30), 1);
    ck_assert_int_eq(iq_count_dir("direction = both\n", 30), 1);
}
END_TEST

static int iq_count_k(const char *settings, double probe)
{
    iq_fix_t f;
    iq_open(&f, settings);
    int count = 0;
    /* 0..9 repeating: Q1 about 2.25, Q3 about 6.75, IQR about 4.5 */
    for (int i = 0; i < 200; i++)
        count += iq_feed(&f, i == 150 ? probe : i % 10).anomalous;
    iq_close(&f);
    return count;
}

START_TEST(k_sets_the_fence)
{
    /* 17 is about 2.3 IQRs above Q3: beyond the 1.5 fence, inside the 3 fence */
    ck_assert_int_eq(iq_count_k("k = 3\n", 17), 0);
    ck_assert_int_eq(iq_count_k("k = 1.5\n", 17), 1);
    ck_assert_int_eq(iq_count_k("k = 1.5\n", -8), 1);
    ck_assert_int_eq(iq_count_k("k = 3\n", 40), 1);
}
END_TEST

/* Brute force: quantile p of the last @p w of v[0..n) by sorting a copy (linear
 * interpolation between order statistics). */
static int iq_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double iq_brute(const double *v, size_t n, size_t w, double p)
{
    size_t m = n < w ? n : w;
    double *c = malloc(m * sizeof(double));
    ck_assert_ptr_nonnull(c);
    memcpy(c, v + n - m, m * sizeof(double));
    qsort(c, m, sizeof(double), iq_cmp);
    double h = (double)(m - 1) * p;
    size_t lo = (size_t)h;
    double q = c[lo];
    if (lo + 1 < m)
        q += (h - (double)lo) * (c[lo + 1] - c[lo]);
    free(c);
    return q;
}

/* Distance in IQRs recovered from a score: d = -k * ln(1 - score). */
static double iq_dist(iq_fix_t *f, void *scratch, double k, double x)
{
    memcpy(scratch, f->state, f->ops->state_size);
    sn_verdict_t out = iq_observe_at(f, scratch, f->ts, x);
    ck_assert_double_gt(out.score, 0);
    return -k * log1p(-out.score);
}

/* Feed @p n random values; after every point the reported median must equal the brute force
 * over the last @p w values, and at intervals Q1 and Q3 (recovered from the scores of probes
 * observed on a copy of the state) must too. */
static void iq_check_order(int w, double k, int span, int integers, uint64_t seed, int n)
{
    char settings[128];
    snprintf(settings, sizeof(settings), "window = %d\nk = %g\nmin_history = %d\n", w, k, w);
    iq_fix_t f;
    iq_open(&f, settings);
    double *v = malloc((size_t)n * sizeof(double));
    void *scratch = malloc(f.ops->state_size);
    ck_assert(v && scratch);
    for (int i = 0; i < n; i++) {
        double x = (double)(iq_rand(&seed) % (uint64_t)span);
        if (!integers)
            x = 1000 + x + (double)(iq_rand(&seed) >> 11) / 9007199254740992.0;
        v[i] = x;
        sn_verdict_t out = iq_feed(&f, x);
        /* the brute force assumes every point entered: none may lie beyond a fence */
        ck_assert_double_lt(out.score, 1 - exp(-1));
        double med = iq_brute(v, (size_t)i + 1, (size_t)w, 0.5);
        /* A point with the same timestamp is ignored, and its verdict's expected is the median
         * of the window as it is now, including x. Observed on a copy all the same. */
        memcpy(scratch, f.state, f.ops->state_size);
        double next = iq_observe_at(&f, scratch, f.ts - 10000, x).expected;
        if (integers)
            ck_assert_msg(next == med, "w=%d i=%d median %.17g, brute force %.17g", w, i, next,
                          med);
        else
            ck_assert_msg(fabs(next - med) < 1e-4, "w=%d i=%d median %.17g, brute force %.17g", w,
                          i, next, med);
        if (i >= w && i % 37 == 0) {
            double q1 = iq_brute(v, (size_t)i + 1, (size_t)w, 0.25);
            double q3 = iq_brute(v, (size_t)i + 1, (size_t)w, 0.75);
            double iqr = q3 - q1;
            ck_assert_double_gt(iqr, 0);
            /* probes above Q3 and below Q1 at about 1 and 2 IQRs */
            double a = q3 + iqr, b = q3 + 2 * iqr;
            double da = iq_dist(&f, scratch, k, a), db = iq_dist(&f, scratch, k, b);
            double got_iqr = (b - a) / (db - da);
            double got_q3 = a - da * got_iqr;
            double c = q1 - iqr, e = q1 - 2 * iqr;
            double dc = iq_dist(&f, scratch, k, c), de = iq_dist(&f, scratch, k, e);
            double got_q1 = c + dc * ((c - e) / (de - dc));
            double tol = 1e-6 * (1 + fabs(q3));
            ck_assert_msg(fabs(got_iqr - iqr) < tol, "w=%d i=%d IQR %.9g vs %.9g", w, i, got_iqr,
                          iqr);
            ck_assert_msg(fabs(got_q3 - q3) < tol, "w=%d i=%d Q3 %.9g vs %.9g", w, i, got_q3, q3);
            ck_assert_msg(fabs(got_q1 - q1) < tol, "w=%d i=%d Q1 %.9g vs %.9g", w, i, got_q1, q1);
        }
    }
    free(scratch);
    free(v);
    iq_close(&f);
}

START_TEST(order_structure_matches_brute_force)
{
    /* many duplicates (21 distinct values) exercise removal of equal values */
    iq_check_order(64, 3, 21, 1, 0x9e3779b97f4a7c15ull, 5000);
    iq_check_order(256, 3, 21, 1, 0x2545f4914f6cdd1dull, 5000);
    /* the smallest window, wide range, fences far enough that nothing is withheld */
    iq_check_order(8, 100, 1000, 1, 77, 5000);
    iq_check_order(100, 3, 50, 1, 1234567, 3000);
    /* real values: stored as float offsets, equal to the brute force within 1e-4 */
    iq_check_order(64, 3, 100, 0, 4242, 3000);
}
END_TEST

START_TEST(warmup_equals_feeding)
{
    enum { N = 300 };
    iq_fix_t a, b;
    iq_open(&a, "");
    iq_open(&b, "");
    int64_t ts[N];
    double v[N];
    uint64_t seed = 29;
    for (int i = 0; i < N; i++) {
        ts[i] = a.ts + (int64_t)i * 10000;
        v[i] = 40 + iq_noise(&seed);
    }
    v[50] = NAN;      /* ignored inside warmup too */
    ts[80] = ts[79];  /* duplicate timestamp: ignored */
    v[120] = 40 + 50; /* a spike: withheld from the window */
    v[200] = 40 - 50;
    ck_assert_int_eq(a.ops->warmup(a.self, a.state, ts, v, N), 0);
    for (int i = 0; i < N; i++)
        iq_observe_at(&b, b.state, ts[i], v[i]);
    ck_assert_int_eq(memcmp(a.state, b.state, a.ops->state_size), 0);
    a.ts = b.ts = ts[N - 1] + 10000;
    /* the first live spike is reported, and both carry on identically */
    for (int i = 0; i < 50; i++) {
        double x = 40 + iq_noise(&seed) + (i == 0 ? 40 : 0);
        sn_verdict_t va = iq_feed(&a, x), vb = iq_feed(&b, x);
        ck_assert_int_eq(va.anomalous, vb.anomalous);
        ck_assert_double_eq(va.score, vb.score);
        ck_assert_double_eq(va.expected, vb.expected);
        ck_assert_double_eq(va.confidence, vb.confidence);
        if (i == 0) {
            ck_assert_int_eq(va.anomalous, 1);
            ck_assert_double_eq_tol(va.expected, 40, 1);
        }
    }
    iq_close(&b);
    iq_close(&a);
}
END_TEST

START_TEST(warmup_clears_an_open_episode)
{
    enum { N = 100 };
    iq_fix_t f;
    iq_open(&f, "");
    int64_t ts[N];
    double v[N];
    uint64_t seed = 37;
    for (int i = 0; i < N; i++) {
        ts[i] = f.ts + (int64_t)i * 10000;
        v[i] = 10 + iq_noise(&seed) + (i == N - 1 ? 50 : 0); /* history ends inside a spike */
    }
    ck_assert_int_eq(f.ops->warmup(f.self, f.state, ts, v, N), 0);
    f.ts = ts[N - 1] + 10000;
    ck_assert_int_eq(iq_feed(&f, 60).anomalous, 1);
    iq_close(&f);
}
END_TEST

START_TEST(bad_settings_fail_create)
{
    static const struct {
        const char *settings, *phrase;
    } cases[] = {
        {"window = 7\n", "window must be between 8 and 256"},
        {"window = 257\n", "window must be between 8 and 256"},
        {"window = 0\n", "window"},
        {"k = 0\n", "k must be"},
        {"k = 0.4\n", "k must be"},
        {"k = -3\n", "k must be"},
        {"min_history = -1\n", "min_history"},
        {"hysteresis = -1\n", "hysteresis"},
        {"direction = sideways\n", "direction must be up, down or both"},
    };
    sn_harness_t *h = sn_harness_new();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sn_err_t err = {{0}};
        const sn_plugin_t *p = NULL;
        void *self = sn_harness_create(h, SN_DETECTOR, "iqr", cases[i].settings, &p, &err);
        ck_assert_ptr_null(self);
        ck_assert_msg(strstr(err.msg, cases[i].phrase) != NULL, "'%s' gave '%s'", cases[i].settings,
                      err.msg);
    }
    /* the bounds themselves are accepted */
    sn_err_t err = {{0}};
    ck_assert_ptr_nonnull(
        sn_harness_create(h, SN_DETECTOR, "iqr", "window = 8\nk = 0.5\n", NULL, &err));
    ck_assert_ptr_nonnull(sn_harness_create(h, SN_DETECTOR, "iqr", "window = 256\n", NULL, &err));
    sn_harness_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("iqr");
    TCase *tc = tcase_create("detector");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, state_is_small);
    tcase_add_test(tc, silent_before_min_history);
    tcase_add_test(tc, spike_in_noise_is_reported_once);
    tcase_add_test(tc, step_is_one_episode_then_absorbed);
    tcase_add_test(tc, hysteresis_merges_close_spikes);
    tcase_add_test(tc, nan_and_inf_are_ignored);
    tcase_add_test(tc, out_of_order_and_duplicate_timestamps_are_ignored);
    tcase_add_test(tc, constant_series_then_deviation);
    tcase_add_test(tc, resolution_survives_a_large_level_shift);
    tcase_add_test(tc, score_and_confidence_grow_with_distance_and_history);
    tcase_add_test(tc, direction_filters_deviations);
    tcase_add_test(tc, k_sets_the_fence);
    tcase_add_test(tc, order_structure_matches_brute_force);
    tcase_add_test(tc, warmup_equals_feeding);
    tcase_add_test(tc, warmup_clears_an_open_episode);
    tcase_add_test(tc, bad_settings_fail_create);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
