/** @file check_zscore.c Tests of the zscore detector, loaded as a .so through the harness. */
#include "harness.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct zs_fix {
    sn_harness_t *h;
    const sn_detector_ops_t *ops;
    void *self;
    void *state;
    int64_t ts;
} zs_fix_t;

static void zs_open(zs_fix_t *f, const char *settings)
{
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    f->self = sn_harness_create(f->h, SN_DETECTOR, "zscore", settings, &p, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    ck_assert_int_eq(p->kind, SN_DETECTOR);
    f->ops = p->ops;
    ck_assert_ptr_nonnull(f->ops->observe);
    ck_assert_uint_gt(f->ops->state_size, 0);
    f->state = calloc(1, f->ops->state_size);
    ck_assert_ptr_nonnull(f->state);
    f->ts = 1795600800000LL;
}

static void zs_close(zs_fix_t *f)
{
    free(f->state);
    sn_harness_free(f->h);
}

/* Observe the next point (10 s later) and return the verdict. */
static sn_verdict_t zs_feed(zs_fix_t *f, double v)
{
    sn_point_t p = {.ts_ms = f->ts, .value = v, .series = 42, .metric = "latency_ms"};
    sn_verdict_t out;
    memset(&out, 0x5a, sizeof(out)); /* the detector must fill every field */
    f->ts += 10000;
    ck_assert_int_eq(f->ops->observe(f->self, f->state, &p, &out), 0);
    ck_assert(out.score >= 0 && out.score <= 1);
    ck_assert(out.confidence >= 0 && out.confidence <= 1);
    ck_assert(out.anomalous == 0 || out.anomalous == 1);
    return out;
}

/* Deterministic noise, roughly normal with standard deviation 1. */
static double zs_noise(uint64_t *s)
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

START_TEST(spikes_are_one_anomaly_each)
{
    zs_fix_t f;
    zs_open(&f, "");
    uint64_t seed = 7;
    int count = 0, first = -1, second = -1;
    for (int i = 0; i < 600; i++) {
        double v = 100 + 3 * zs_noise(&seed);
        if (i == 200)
            v += 60; /* a one-point spike */
        if (i >= 400 && i < 403)
            v += 60; /* a three-point burst: one episode */
        sn_verdict_t out = zs_feed(&f, v);
        if (out.anomalous) {
            count++;
            if (first < 0)
                first = i;
            else if (second < 0)
                second = i;
            ck_assert_double_gt(out.score, 0.6);
            ck_assert_double_gt(out.confidence, 0.5);
            ck_assert_double_lt(fabs(out.expected - 100), 2);
        } else if (i > 40 && i != 200 && (i < 400 || i >= 410)) {
            ck_assert_double_lt(out.score, 0.5);
        }
    }
    ck_assert_int_eq(count, 2);
    ck_assert_int_eq(first, 200);
    ck_assert_int_eq(second, 400);
    zs_close(&f);
}
END_TEST

START_TEST(step_is_one_episode_and_baseline_holds)
{
    zs_fix_t f;
    zs_open(&f, "");
    uint64_t seed = 11;
    int count = 0, at = -1;
    for (int i = 0; i < 500; i++) {
        double v = (i >= 250 ? 160 : 100) + 3 * zs_noise(&seed);
        sn_verdict_t out = zs_feed(&f, v);
        if (out.anomalous) {
            count++;
            at = i;
        }
        /* anomalous points enter at a tenth of their weight: the baseline does not jump */
        if (i == 300)
            ck_assert_double_lt(out.expected, 106);
    }
    ck_assert_int_eq(count, 1);
    ck_assert_int_eq(at, 250);
    zs_close(&f);
}
END_TEST

START_TEST(hysteresis_merges_close_spikes)
{
    zs_fix_t f;
    zs_open(&f, "hysteresis = 5\n");
    uint64_t seed = 3;
    int count = 0;
    for (int i = 0; i < 300; i++) {
        double v = 50 + zs_noise(&seed);
        if (i == 100 || i == 103) /* 2 normal points between: same episode */
            v += 40;
        if (i == 200 || i == 210) /* 9 normal points between: two episodes */
            v += 40;
        if (zs_feed(&f, v).anomalous)
            count++;
    }
    ck_assert_int_eq(count, 3);
    zs_close(&f);
}
END_TEST

START_TEST(silent_before_min_history)
{
    zs_fix_t f;
    zs_open(&f, "min_history = 30\n");
    uint64_t seed = 5;
    for (int i = 0; i < 30; i++) {
        double v = 10 + zs_noise(&seed) + (i == 20 ? 100 : 0);
        sn_verdict_t out = zs_feed(&f, v);
        ck_assert_int_eq(out.anomalous, 0);
        ck_assert_double_eq(out.score, 0);
    }
    zs_close(&f);
}
END_TEST

START_TEST(constant_series_never_divides_by_zero)
{
    zs_fix_t f;
    zs_open(&f, "min_history = 10\n");
    for (int i = 0; i < 50; i++) {
        sn_verdict_t out = zs_feed(&f, 0.1);
        ck_assert_int_eq(out.anomalous, 0);
        ck_assert_double_eq(out.score, 0);
    }
    /* a deviation far below 1e-9 relative is noise in the representation, not an anomaly */
    sn_verdict_t out = zs_feed(&f, 0.1 + 1e-13);
    ck_assert_int_eq(out.anomalous, 0);
    out = zs_feed(&f, 0.2);
    ck_assert_int_eq(out.anomalous, 1);
    ck_assert(isfinite(out.score) && isfinite(out.expected) && isfinite(out.confidence));
    ck_assert_double_gt(out.score, 0.99);
    ck_assert_double_eq_tol(out.expected, 0.1, 1e-12);
    zs_close(&f);
}
END_TEST

START_TEST(nan_and_inf_are_ignored)
{
    zs_fix_t f;
    zs_open(&f, "");
    uint64_t seed = 9;
    for (int i = 0; i < 100; i++)
        zs_feed(&f, 20 + zs_noise(&seed));
    void *before = malloc(f.ops->state_size);
    memcpy(before, f.state, f.ops->state_size);
    const double bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 3; i++) {
        sn_verdict_t out = zs_feed(&f, bad[i]);
        ck_assert_int_eq(out.anomalous, 0);
        ck_assert_double_eq(out.score, 0);
        ck_assert_double_eq(out.confidence, 0);
        ck_assert_int_eq(memcmp(before, f.state, f.ops->state_size), 0);
    }
    /* and the series carries on normally */
    ck_assert_int_eq(zs_feed(&f, 20).anomalous, 0);
    ck_assert_int_eq(zs_feed(&f, 80).anomalous, 1);
    free(before);
    zs_close(&f);
}
END_TEST

START_TEST(out_of_order_points_are_ignored)
{
    zs_fix_t f;
    zs_open(&f, "");
    uint64_t seed = 13;
    for (int i = 0; i < 100; i++)
        zs_feed(&f, 20 + zs_noise(&seed));
    void *before = malloc(f.ops->state_size);
    memcpy(before, f.state, f.ops->state_size);
    sn_point_t late = {.ts_ms = f.ts - 60000, .value = 1000, .series = 42, .metric = "m"};
    sn_verdict_t out;
    ck_assert_int_eq(f.ops->observe(f.self, f.state, &late, &out), 0);
    ck_assert_int_eq(out.anomalous, 0);
    ck_assert_int_eq(memcmp(before, f.state, f.ops->state_size), 0);
    /* the same spike in order is reported */
    ck_assert_int_eq(zs_feed(&f, 1000).anomalous, 1);
    free(before);
    zs_close(&f);
}
END_TEST

START_TEST(robust_mode_handles_quantised_series)
{
    zs_fix_t f;
    zs_open(&f, "robust = true\nrobust_window = 32\nmin_history = 20\n");
    int count = 0, at = -1;
    for (int i = 0; i < 200; i++) {
        /* mostly 10 with an occasional 11: MAD is 0, the fallback spread must be used */
        double v = i % 7 == 0 ? 11 : 10;
        if (i == 150)
            v = 30;
        sn_verdict_t out = zs_feed(&f, v);
        if (out.anomalous) {
            count++;
            at = i;
            ck_assert_double_eq(out.expected, 10); /* the median */
        }
    }
    ck_assert_int_eq(count, 1);
    ck_assert_int_eq(at, 150);
    zs_close(&f);
}
END_TEST

START_TEST(robust_mode_detects_spike_in_noise)
{
    zs_fix_t f;
    zs_open(&f, "robust = true\n");
    uint64_t seed = 17;
    int count = 0;
    for (int i = 0; i < 400; i++) {
        double v = 100 + 3 * zs_noise(&seed) + (i == 300 ? 50 : 0);
        sn_verdict_t out = zs_feed(&f, v);
        if (out.anomalous) {
            count++;
            ck_assert_int_eq(i, 300);
        }
    }
    ck_assert_int_eq(count, 1);
    zs_close(&f);
}
END_TEST

static int zs_count_dir(const char *settings, double delta)
{
    zs_fix_t f;
    zs_open(&f, settings);
    uint64_t seed = 23;
    int count = 0;
    for (int i = 0; i < 200; i++)
        count += zs_feed(&f, 100 + zs_noise(&seed) + (i == 150 ? delta : 0)).anomalous;
    zs_close(&f);
    return count;
}

START_TEST(direction_filters_deviations)
{
    ck_assert_int_eq(zs_count_dir("direction = up\n", 30), 1);
    ck_assert_int_eq(zs_count_dir("direction = up\n", -30), 0);
    ck_assert_int_eq(zs_count_dir("direction = down\n", -30), 1);
    ck_assert_int_eq(zs_count_dir("direction = down\n", 30), 0);
    ck_assert_int_eq(zs_count_dir("direction = both\n", -30), 1);
}
END_TEST

START_TEST(warmup_primes_history)
{
    zs_fix_t f;
    zs_open(&f, "");
    ck_assert_ptr_nonnull(f.ops->warmup);
    int64_t ts[100];
    double v[100];
    uint64_t seed = 29;
    for (int i = 0; i < 100; i++) {
        ts[i] = f.ts - (100 - i) * 10000;
        v[i] = 40 + zs_noise(&seed);
    }
    v[50] = NAN; /* ignored inside warmup too */
    ck_assert_int_eq(f.ops->warmup(f.self, f.state, ts, v, 100), 0);
    /* without warmup the first points are silent; with it the first live spike is reported */
    sn_verdict_t out = zs_feed(&f, 80);
    ck_assert_int_eq(out.anomalous, 1);
    ck_assert_double_eq_tol(out.expected, 40, 1);
    zs_close(&f);
}
END_TEST

START_TEST(bad_settings_fail_create)
{
    static const struct {
        const char *settings, *phrase;
    } cases[] = {
        {"direction = sideways\n", "direction"},
        {"robust_window = 300\n", "robust_window"},
        {"window = 1\n", "window"},
        {"threshold = 0\n", "threshold"},
    };
    sn_harness_t *h = sn_harness_new();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sn_err_t err = {{0}};
        const sn_plugin_t *p = NULL;
        void *self = sn_harness_create(h, SN_DETECTOR, "zscore", cases[i].settings, &p, &err);
        ck_assert_ptr_null(self);
        ck_assert_msg(strstr(err.msg, cases[i].phrase) != NULL, "'%s' gave '%s'", cases[i].settings,
                      err.msg);
    }
    sn_harness_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("zscore");
    TCase *tc = tcase_create("detector");
    tcase_add_test(tc, spikes_are_one_anomaly_each);
    tcase_add_test(tc, step_is_one_episode_and_baseline_holds);
    tcase_add_test(tc, hysteresis_merges_close_spikes);
    tcase_add_test(tc, silent_before_min_history);
    tcase_add_test(tc, constant_series_never_divides_by_zero);
    tcase_add_test(tc, nan_and_inf_are_ignored);
    tcase_add_test(tc, out_of_order_points_are_ignored);
    tcase_add_test(tc, robust_mode_handles_quantised_series);
    tcase_add_test(tc, robust_mode_detects_spike_in_noise);
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
