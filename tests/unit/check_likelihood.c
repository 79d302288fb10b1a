/** @file check_likelihood.c Tests of the likelihood detector, loaded as a .so through the
 * harness. */
#include "harness.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LK_T0 1795564800000LL /* 2026-11-25 00:00 UTC: day boundaries are easy to see */
#define LK_STEP 300000LL      /* 5 minutes: 288 points a day */

typedef struct lk_fix {
    sn_harness_t *h;
    const sn_detector_ops_t *ops;
    void *self;
    void *state;
    int64_t ts;
} lk_fix_t;

static void lk_open(lk_fix_t *f, const char *settings)
{
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    f->self = sn_harness_create(f->h, SN_DETECTOR, "likelihood", settings, &p, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    ck_assert_int_eq(p->kind, SN_DETECTOR);
    f->ops = p->ops;
    ck_assert_ptr_nonnull(f->ops->observe);
    ck_assert_uint_gt(f->ops->state_size, 0);
    f->state = calloc(1, f->ops->state_size);
    ck_assert_ptr_nonnull(f->state);
    f->ts = LK_T0;
}

static void lk_close(lk_fix_t *f)
{
    free(f->state);
    sn_harness_free(f->h);
}

/* Observe the next point (5 minutes later) and return the verdict. */
static sn_verdict_t lk_feed(lk_fix_t *f, double v)
{
    sn_point_t p = {.ts_ms = f->ts, .value = v, .series = 42, .metric = "latency_ms"};
    sn_verdict_t out;
    memset(&out, 0x5a, sizeof(out)); /* the detector must fill every field */
    f->ts += LK_STEP;
    ck_assert_int_eq(f->ops->observe(f->self, f->state, &p, &out), 0);
    ck_assert(out.score >= 0 && out.score <= 1);
    ck_assert(out.confidence >= 0 && out.confidence <= 1);
    ck_assert(out.anomalous == 0 || out.anomalous == 1);
    ck_assert(isfinite(out.expected));
    return out;
}

/* Deterministic noise, roughly normal with standard deviation 1. */
static double lk_noise(uint64_t *s)
{
    double sum = 0;
    for (int i = 0; i < 4; i++) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        sum += (double)(*s >> 11) / 9007199254740992.0 - 0.5;
    }
    return sum * sqrt(3.0);
}

START_TEST(spike_is_one_anomaly_after_the_reference_fills)
{
    lk_fix_t f;
    lk_open(&f, "season = none\nthreshold = 4\n");
    uint64_t seed = 7;
    int count = 0;
    for (int i = 0; i < 1200; i++) {
        double v = 100 + 3 * lk_noise(&seed) + (i == 800 ? 60 : 0);
        sn_verdict_t out = lk_feed(&f, v);
        /* 20 blocks of 8 points (the delay shrinks while the reference is young) before
         * anything is judged */
        if (i < 160) {
            ck_assert_int_eq(out.anomalous, 0);
            ck_assert_double_eq(out.score, 0);
        }
        if (out.anomalous) {
            count++;
            ck_assert_int_eq(i, 800);
            ck_assert_double_gt(out.score, 0.7);
            ck_assert_double_lt(fabs(out.expected - 100), 3);
        } else if (i > 160 && (i < 800 || i > 860)) {
            ck_assert_double_lt(out.score, 0.5);
        }
    }
    ck_assert_int_eq(count, 1);
    lk_close(&f);
}
END_TEST

START_TEST(step_is_one_episode)
{
    lk_fix_t f;
    lk_open(&f, "season = none\nthreshold = 4\n");
    uint64_t seed = 11;
    int count = 0, at = -1;
    for (int i = 0; i < 1400; i++) {
        double v = (i >= 800 ? 160 : 100) + 3 * lk_noise(&seed);
        if (lk_feed(&f, v).anomalous) {
            count++;
            at = i;
        }
    }
    ck_assert_int_eq(count, 1);
    ck_assert_int_eq(at, 800);
    lk_close(&f);
}
END_TEST

START_TEST(young_reference_speaks_after_20_blocks)
{
    /* 200 points: the ring holds 25 blocks, fewer than the 200-point delay plus 20 blocks; the
     * oldest 20 are the reference, so a spike is reported rather than ignored */
    lk_fix_t f;
    lk_open(&f, "season = none\nthreshold = 4\n");
    uint64_t seed = 5;
    int count = 0;
    for (int i = 0; i < 260; i++) {
        sn_verdict_t out = lk_feed(&f, 100 + 3 * lk_noise(&seed) + (i == 200 ? 60 : 0));
        if (out.anomalous) {
            count++;
            ck_assert_int_eq(i, 200);
        }
    }
    ck_assert_int_eq(count, 1);
    lk_close(&f);
}
END_TEST

/* A step from 100 to 160 at point 800 and a spike on the new level at 1400; returns the
 * anomalies, their positions in @p at (up to 4). */
static int lk_shift_then_spike(const char *settings, int *at)
{
    lk_fix_t f;
    lk_open(&f, settings);
    uint64_t seed = 13;
    int count = 0;
    for (int i = 0; i < 1600; i++) {
        double v = (i >= 800 ? 160 : 100) + 3 * lk_noise(&seed) + (i == 1400 ? 40 : 0);
        if (lk_feed(&f, v).anomalous) {
            if (count < 4)
                at[count] = i;
            count++;
        }
    }
    lk_close(&f);
    return count;
}

START_TEST(persistent_shift_is_a_new_regime)
{
    int at[4] = {-1, -1, -1, -1};
    /* the shift is one episode; after `rebase` points of it the new level is the reference,
     * so the spike on it is a second anomaly and nothing in between is reported */
    ck_assert_int_eq(lk_shift_then_spike("season = none\nthreshold = 4\n", at), 2);
    ck_assert_int_eq(at[0], 800);
    ck_assert_int_eq(at[1], 1400);
    /* without it the episode never ends: the reference stays on the old level and the spike
     * is part of the shift's episode */
    ck_assert_int_eq(lk_shift_then_spike("season = none\nthreshold = 4\nrebase = 0\n", at), 1);
    ck_assert_int_eq(at[0], 800);
}
END_TEST

START_TEST(hysteresis_merges_close_spikes)
{
    lk_fix_t f;
    /* one scale: longer ones keep an episode going while the spike is in their window */
    lk_open(&f, "season = none\nscales = 1\nthreshold = 4\nhysteresis = 5\n");
    uint64_t seed = 3;
    int count = 0;
    for (int i = 0; i < 1200; i++) {
        double v = 50 + lk_noise(&seed);
        if (i == 800 || i == 803) /* 2 normal points between: one episode */
            v += 40;
        if (i == 1000 || i == 1010) /* 9 normal points between: two episodes */
            v += 40;
        count += lk_feed(&f, v).anomalous;
    }
    ck_assert_int_eq(count, 3);
    lk_close(&f);
}
END_TEST

START_TEST(recurring_bursts_become_normal)
{
    /* A burst every 50 points is part of what the series does: once the reference holds some,
     * bursts of that size are not reported, a much larger one is. A fixed z threshold would
     * report every burst. */
    lk_fix_t f;
    lk_open(&f, "season = none\nthreshold = 4\n");
    uint64_t seed = 19;
    int count = 0, at = -1;
    for (int i = 0; i < 2000; i++) {
        double v = 100 + 3 * lk_noise(&seed);
        if (i % 50 == 25)
            v += i == 1625 ? 200 : 40;
        sn_verdict_t out = lk_feed(&f, v);
        if (out.anomalous && i >= 1000) {
            count++;
            at = i;
        }
    }
    ck_assert_int_eq(count, 1);
    ck_assert_int_eq(at, 1625);
    lk_close(&f);
}
END_TEST

/* A square daily pattern (80 from 10:00 to 18:00 UTC, 20 otherwise); on day @p broken_day the
 * high hours stay low. Returns the anomalies on days 3 to 6 via @p normal_days and the first
 * anomaly on the broken day as minutes after its midnight (-1 for none). */
static int lk_daily(const char *settings, int seasonal, int broken_day, int *normal_days)
{
    lk_fix_t f;
    lk_open(&f, settings);
    uint64_t seed = 31;
    int first = -1;
    *normal_days = 0;
    for (int i = 0; i < 288 * 8; i++) {
        int day = i / 288, minute = (i % 288) * 5;
        int high = minute >= 600 && minute < 1080 && day != broken_day;
        double v = (high ? 80 : 20) + lk_noise(&seed);
        sn_verdict_t out = lk_feed(&f, v);
        if (out.anomalous && day >= 3 && day < broken_day)
            (*normal_days)++;
        if (out.anomalous && day == broken_day && first < 0)
            first = minute;
        if (seasonal && i > 288 * 3 && minute == 720 && day != broken_day)
            ck_assert_double_lt(fabs(out.expected - 80), 3);
    }
    lk_close(&f);
    return first;
}

START_TEST(daily_profile_sees_a_missing_peak)
{
    int normal = 0;
    int first = lk_daily("threshold = 3\n", 1, 6, &normal);
    ck_assert_int_eq(normal, 0);
    ck_assert_int_ge(first, 600); /* when the peak should have started ... */
    ck_assert_int_lt(first, 660); /* ... within its first hour */
    /* the level features alone see nothing: 20 is an ordinary value */
    first = lk_daily("threshold = 3\nseason = none\n", 0, 6, &normal);
    ck_assert_int_eq(first, -1);
}
END_TEST

START_TEST(constant_series_never_divides_by_zero)
{
    lk_fix_t f;
    lk_open(&f, "season = none\nstride = 1\nhistory = 50\ndelay = 0\n");
    for (int i = 0; i < 100; i++) {
        sn_verdict_t out = lk_feed(&f, 0.1);
        ck_assert_int_eq(out.anomalous, 0);
        ck_assert_double_eq(out.score, 0);
    }
    /* a deviation far below 1e-6 relative is noise in the representation, not an anomaly */
    sn_verdict_t out = lk_feed(&f, 0.1 + 1e-9);
    ck_assert_int_eq(out.anomalous, 0);
    out = lk_feed(&f, 0.2);
    ck_assert_int_eq(out.anomalous, 1);
    ck_assert(isfinite(out.score) && isfinite(out.confidence));
    ck_assert_double_gt(out.score, 0.99);
    lk_close(&f);
}
END_TEST

START_TEST(nan_inf_and_stale_points_are_ignored)
{
    lk_fix_t f;
    lk_open(&f, "season = none\nstride = 1\nhistory = 100\ndelay = 0\n");
    uint64_t seed = 9;
    for (int i = 0; i < 200; i++)
        lk_feed(&f, 20 + lk_noise(&seed));
    void *before = malloc(f.ops->state_size);
    memcpy(before, f.state, f.ops->state_size);
    const double bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 3; i++) {
        sn_verdict_t out = lk_feed(&f, bad[i]);
        ck_assert_int_eq(out.anomalous, 0);
        ck_assert_double_eq(out.score, 0);
        ck_assert_double_eq(out.confidence, 0);
        ck_assert_int_eq(memcmp(before, f.state, f.ops->state_size), 0);
    }
    /* the newest accepted point was at f.ts - 4 steps: equal and older times are ignored */
    int64_t newest = f.ts - 4 * LK_STEP;
    const int64_t stale[] = {newest, newest - 1, newest - 3600000};
    for (size_t i = 0; i < 3; i++) {
        sn_point_t p = {.ts_ms = stale[i], .value = 1000, .series = 42, .metric = "m"};
        sn_verdict_t out;
        ck_assert_int_eq(f.ops->observe(f.self, f.state, &p, &out), 0);
        ck_assert_int_eq(out.anomalous, 0);
        ck_assert_double_eq(out.score, 0);
        ck_assert_int_eq(memcmp(before, f.state, f.ops->state_size), 0);
    }
    /* the same spike in order is reported */
    ck_assert_int_eq(lk_feed(&f, 20).anomalous, 0);
    ck_assert_int_eq(lk_feed(&f, 1000).anomalous, 1);
    free(before);
    lk_close(&f);
}
END_TEST

static int lk_count_dir(const char *dir, double delta)
{
    char settings[160];
    snprintf(settings, sizeof(settings), "season = none\nthreshold = 4\ndirection = %s\n", dir);
    lk_fix_t f;
    lk_open(&f, settings);
    uint64_t seed = 23;
    int count = 0;
    for (int i = 0; i < 1000; i++)
        count += lk_feed(&f, 100 + lk_noise(&seed) + (i == 800 ? delta : 0)).anomalous;
    lk_close(&f);
    return count;
}

START_TEST(direction_filters_deviations)
{
    ck_assert_int_eq(lk_count_dir("up", 30), 1);
    ck_assert_int_eq(lk_count_dir("up", -30), 0);
    ck_assert_int_eq(lk_count_dir("down", -30), 1);
    ck_assert_int_eq(lk_count_dir("down", 30), 0);
    ck_assert_int_eq(lk_count_dir("both", -30), 1);
}
END_TEST

START_TEST(warmup_primes_history)
{
    lk_fix_t f;
    lk_open(&f, "season = none\n");
    ck_assert_ptr_nonnull(f.ops->warmup);
    enum { N = 1000 };
    int64_t *ts = malloc(N * sizeof(*ts));
    double *v = malloc(N * sizeof(*v));
    uint64_t seed = 29;
    for (int i = 0; i < N; i++) {
        ts[i] = f.ts - (N - i) * LK_STEP;
        v[i] = 40 + lk_noise(&seed);
    }
    v[500] = NAN; /* ignored inside warmup too */
    ck_assert_int_eq(f.ops->warmup(f.self, f.state, ts, v, N), 0);
    /* without warmup the first points are silent; with it the first live spike is reported */
    sn_verdict_t out = lk_feed(&f, 80);
    ck_assert_int_eq(out.anomalous, 1);
    ck_assert_double_eq_tol(out.expected, 40, 1);
    free(ts);
    free(v);
    lk_close(&f);
}
END_TEST

START_TEST(bad_settings_fail_create)
{
    static const struct {
        const char *settings, *phrase;
    } cases[] = {
        {"scales = 0\n", "scales"},           {"scales = 1, x\n", "scales"},
        {"scales = 1, 2, 3, 4\n", "at most"}, {"scales = 129\n", "scales"},
        {"season = week\n", "season"},        {"season_days = 0\n", "season_days"},
        {"stride = 0\n", "stride"},           {"history = 10\n", "history"},
        {"history = 5000\n", "history"},      {"delay = 8000\n", "delay"},
        {"quantile = 0.2\n", "quantile"},     {"threshold = 0\n", "threshold"},
        {"hysteresis = -1\n", "hysteresis"},  {"min_history = -1\n", "min_history"},
        {"rebase = -1\n", "rebase"},          {"direction = sideways\n", "direction"},
    };
    sn_harness_t *h = sn_harness_new();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sn_err_t err = {{0}};
        const sn_plugin_t *p = NULL;
        void *self = sn_harness_create(h, SN_DETECTOR, "likelihood", cases[i].settings, &p, &err);
        ck_assert_ptr_null(self);
        ck_assert_msg(strstr(err.msg, cases[i].phrase) != NULL, "'%s' gave '%s'", cases[i].settings,
                      err.msg);
    }
    sn_harness_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("likelihood");
    TCase *tc = tcase_create("detector");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, spike_is_one_anomaly_after_the_reference_fills);
    tcase_add_test(tc, step_is_one_episode);
    tcase_add_test(tc, young_reference_speaks_after_20_blocks);
    tcase_add_test(tc, persistent_shift_is_a_new_regime);
    tcase_add_test(tc, hysteresis_merges_close_spikes);
    tcase_add_test(tc, recurring_bursts_become_normal);
    tcase_add_test(tc, daily_profile_sees_a_missing_peak);
    tcase_add_test(tc, constant_series_never_divides_by_zero);
    tcase_add_test(tc, nan_inf_and_stale_points_are_ignored);
    tcase_add_test(tc, direction_filters_deviations);
    tcase_add_test(tc, warmup_primes_history);
    tcase_add_test(tc, bad_settings_fail_create);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
