/** @file check_seasonal.c Tests of the seasonal detector, loaded as a .so through the harness. */
#include "harness.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SE_T0 1767571200000LL /* Monday 2026-01-05 00:00 UTC */
#define SE_MIN 60000LL
#define SE_HOUR (60 * SE_MIN)
#define SE_DAY (24 * SE_HOUR)
#define SE_WEEK (7 * SE_DAY)
#define SE_STEP (5 * SE_MIN)

typedef struct se_fix {
    sn_harness_t *h;
    const sn_detector_ops_t *ops;
    void *self;
    void *state;
} se_fix_t;

static void se_open(se_fix_t *f, const char *settings)
{
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    f->self = sn_harness_create(f->h, SN_DETECTOR, "seasonal", settings, &p, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    ck_assert_int_eq(p->kind, SN_DETECTOR);
    f->ops = p->ops;
    ck_assert_ptr_nonnull(f->ops->observe);
    ck_assert_ptr_nonnull(f->ops->warmup);
    ck_assert_uint_gt(f->ops->state_size, 0);
    f->state = calloc(1, f->ops->state_size);
    ck_assert_ptr_nonnull(f->state);
}

static void se_close(se_fix_t *f)
{
    free(f->state);
    sn_harness_free(f->h);
}

/* Observe one point; every verdict field must be filled and in range. */
static sn_verdict_t se_feed(se_fix_t *f, int64_t ts, double v)
{
    sn_point_t p = {.ts_ms = ts, .value = v, .series = 42, .metric = "requests"};
    sn_verdict_t out;
    memset(&out, 0x5a, sizeof(out)); /* the detector must fill every field */
    ck_assert_int_eq(f->ops->observe(f->self, f->state, &p, &out), 0);
    ck_assert(out.anomalous == 0 || out.anomalous == 1);
    ck_assert(isfinite(out.score) && out.score >= 0 && out.score <= 1);
    ck_assert(isfinite(out.confidence) && out.confidence >= 0 && out.confidence <= 1);
    ck_assert(isfinite(out.expected));
    return out;
}

/* Deterministic noise with standard deviation 1, bounded by 3 (Irwin-Hall, 3 uniforms): a point
 * beyond the threshold of 4 is then the model's error, never the noise's tail. */
static double se_noise(uint64_t *s)
{
    double sum = 0;
    for (int i = 0; i < 3; i++) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        sum += (double)(*s >> 11) / 9007199254740992.0 - 0.5;
    }
    return sum * 2;
}

/* A week-shaped business metric: a smooth daytime bump (smaller at weekends), a one-hour surge
 * every Monday at 9 AM, plus optional events. */
typedef struct se_series {
    uint64_t seed;
    double noise;
    int sunday_surge_week; /* week (0-based) with a surge at Sunday 3 AM, or -1 */
    int shift_day;         /* day from which the level is 50 higher, or -1 */
    int hetero;            /* noise grows with the daytime bump (up to twice the night's) */
} se_series_t;

static double se_value(se_series_t *sr, int64_t ts)
{
    int64_t rel = ts - SE_T0;
    int day = (int)(rel / SE_DAY);
    int dow = day % 7; /* 0 = Monday */
    int hod = (int)(rel % SE_DAY / SE_HOUR);
    double hour = (double)(rel % SE_DAY) / (double)SE_HOUR;
    double bump = (dow < 5 ? 40 : 12) * exp(-pow((hour - 14) / 4, 2));
    double v = 100 + bump + sr->noise * (sr->hetero ? 1 + bump / 40 : 1) * se_noise(&sr->seed);
    if (dow == 0 && hod == 9)
        v += 60;
    if (sr->sunday_surge_week == day / 7 && dow == 6 && hod == 3)
        v += 60;
    if (sr->shift_day >= 0 && day >= sr->shift_day)
        v += 50;
    return v;
}

typedef struct se_hits {
    int count;
    int64_t ts[64];
} se_hits_t;

/* Feed [from, to) at 5-minute steps; anomalies at or after @p count_from are recorded. */
static void se_run(se_fix_t *f, se_series_t *sr, int64_t from, int64_t to, int64_t count_from,
                   se_hits_t *hits)
{
    for (int64_t ts = from; ts < to; ts += SE_STEP) {
        sn_verdict_t out = se_feed(f, ts, se_value(sr, ts));
        if (out.anomalous && ts >= count_from) {
            if (hits->count < 64)
                hits->ts[hits->count] = ts;
            hits->count++;
        }
    }
}

static int se_is_monday_surge(int64_t ts)
{
    int64_t rel = ts - SE_T0;
    return rel % SE_WEEK / SE_HOUR == 9;
}

START_TEST(state_fits_the_budget)
{
    se_fix_t f;
    se_open(&f, "");
    printf("seasonal: state_size = %zu bytes\n", f.ops->state_size);
    ck_assert_uint_le(f.ops->state_size, 1024);
    se_close(&f);
}
END_TEST

START_TEST(weekly_surge_is_normal_after_learning)
{
    se_fix_t f, plain;
    se_open(&f, "");
    se_open(&plain, "period = none\n");
    se_series_t a = {.seed = 7, .noise = 2, .sunday_surge_week = 4, .shift_day = -1};
    se_series_t b = a;
    se_hits_t hs = {0}, hp = {0};
    /* two weeks of learning (min_cycles = 2), then three judged weeks */
    se_run(&f, &a, SE_T0, SE_T0 + 5 * SE_WEEK, SE_T0 + 2 * SE_WEEK, &hs);
    se_run(&plain, &b, SE_T0, SE_T0 + 5 * SE_WEEK, SE_T0 + 2 * SE_WEEK, &hp);

    /* the seasonal detector reports only the Sunday 3 AM surge of week 5, at its first point */
    ck_assert_int_eq(hs.count, 1);
    ck_assert_int_eq(hs.ts[0], SE_T0 + 4 * SE_WEEK + 6 * SE_DAY + 3 * SE_HOUR);

    /* a plain level detector reports the Monday 9 AM surge of every judged week */
    int mondays = 0;
    for (int i = 0; i < hp.count && i < 64; i++)
        mondays += se_is_monday_surge(hp.ts[i]);
    ck_assert_int_eq(mondays, 3);

    /* while the surge is normal, the seasonal expectation includes it */
    int64_t ts = SE_T0 + 5 * SE_WEEK + 9 * SE_HOUR + 30 * SE_MIN;
    sn_verdict_t out = se_feed(&f, ts, se_value(&a, ts));
    ck_assert_int_eq(out.anomalous, 0);
    ck_assert_double_gt(out.expected, 150);
    ck_assert_double_lt(out.score, 0.5);
    ck_assert_double_gt(out.confidence, 0.5);
    se_close(&f);
    se_close(&plain);
}
END_TEST

START_TEST(surge_at_unusual_hour_is_reported_with_high_score)
{
    se_fix_t f;
    se_open(&f, "");
    se_series_t a = {.seed = 19, .noise = 2, .sunday_surge_week = -1, .shift_day = -1};
    se_hits_t hits = {0};
    se_run(&f, &a, SE_T0, SE_T0 + 3 * SE_WEEK + 6 * SE_DAY + 3 * SE_HOUR, SE_T0 + 2 * SE_WEEK,
           &hits);
    ck_assert_int_eq(hits.count, 0);
    int64_t ts = SE_T0 + 3 * SE_WEEK + 6 * SE_DAY + 3 * SE_HOUR; /* Sunday 3 AM */
    sn_verdict_t out = se_feed(&f, ts, se_value(&a, ts) + 60);
    ck_assert_int_eq(out.anomalous, 1);
    ck_assert_double_gt(out.score, 0.9);
    ck_assert_double_gt(out.confidence, 0.5);
    ck_assert_double_lt(fabs(out.expected - 100), 5);
    /* the rest of the hour is the same episode */
    for (int i = 1; i < 12; i++)
        ck_assert_int_eq(se_feed(&f, ts + i * SE_STEP, se_value(&a, ts) + 60).anomalous, 0);
    se_close(&f);
}
END_TEST

START_TEST(noisier_hours_get_their_own_spread)
{
    /* daytime noise up to twice the night's: one residual variance for all hours would report
     * busy hours or miss quiet ones; per-slot spreads do neither, over several noise draws */
    for (uint64_t seed = 1; seed <= 6; seed++) {
        se_fix_t f;
        se_open(&f, "");
        se_series_t a = {
            .seed = seed, .noise = 2, .sunday_surge_week = -1, .shift_day = -1, .hetero = 1};
        se_hits_t hits = {0};
        int64_t t = SE_T0 + 4 * SE_WEEK + 6 * SE_DAY + 3 * SE_HOUR; /* Sunday 3 AM, week 5 */
        se_run(&f, &a, SE_T0, t, SE_T0 + 2 * SE_WEEK, &hits);
        ck_assert_msg(hits.count == 0, "seed %d: %d anomalies", (int)seed, hits.count);
        /* 15 above a night-time baseline (noise sd 2) is reported */
        sn_verdict_t out = se_feed(&f, t, se_value(&a, t) + 15);
        ck_assert_int_eq(out.anomalous, 1);
        se_close(&f);
    }
}
END_TEST

START_TEST(daily_period_learns_in_one_cycle)
{
    /* period = day, min_cycles = 1: from the second day on the seasonal model judges, but only
     * once it has residuals to estimate its variance from */
    se_fix_t f;
    se_open(&f, "period = day\nmin_cycles = 1\nmin_history = 10\n");
    uint64_t seed = 47;
    int count = 0;
    double peak = 0;
    for (int64_t ts = SE_T0; ts < SE_T0 + 5 * SE_DAY; ts += SE_STEP) {
        double hour = (double)((ts - SE_T0) % SE_DAY) / (double)SE_HOUR;
        double v = 100 + 40 * exp(-pow((hour - 14) / 4, 2)) + 2 * se_noise(&seed);
        sn_verdict_t out = se_feed(&f, ts, v);
        if (ts >= SE_T0 + SE_DAY)
            count += out.anomalous;
        if (ts == SE_T0 + 4 * SE_DAY + 14 * SE_HOUR)
            peak = out.expected;
    }
    ck_assert_int_eq(count, 0);
    ck_assert_double_lt(fabs(peak - 140), 3);
    se_close(&f);
}
END_TEST

START_TEST(offsets_survive_period_gaps_and_bad_points)
{
    /* A staircase (each hour of the day its own level) learnt with gaps of exactly one period,
     * which bring a series back to the slot it left, and with ignored points in other hours:
     * every hour's offset must hold what it learnt (the state keeps the current hour's slots
     * apart from the arrays and must hand them back on every path). */
    se_fix_t f;
    se_open(&f, "period = day\nmin_cycles = 1\nmin_history = 10\n");
    uint64_t seed = 53;
    int64_t ts = SE_T0;
    for (int day = 0; day < 6; day++) {
        for (int64_t end = ts + SE_DAY; ts < end; ts += SE_STEP) {
            int hour = (int)((ts - SE_T0) % SE_DAY / SE_HOUR);
            se_feed(&f, ts, 100 + 10 * hour + 0.5 * se_noise(&seed));
            if ((ts - SE_T0) % (7 * SE_HOUR + 5 * SE_MIN) == 0) {
                /* ignored: not finite, in a later hour; older, in an earlier hour */
                se_feed(&f, ts + 3 * SE_HOUR, NAN);
                se_feed(&f, ts - 2 * SE_HOUR, 1e6);
            }
        }
        if (day % 2 == 1)
            ts += SE_DAY + 7 * SE_HOUR; /* back in an hour already seen today, a day later */
        else
            ts += SE_DAY; /* the very slot it left */
    }
    int off = 0;
    for (int hour = 0; hour < 24; hour++) {
        int64_t t = ts - ts % SE_DAY + SE_DAY + hour * SE_HOUR + 30 * SE_MIN;
        sn_verdict_t out = se_feed(&f, t, 100 + 10 * hour);
        off += out.anomalous;
        ck_assert_msg(fabs(out.expected - (100 + 10 * hour)) < 3, "hour %d: expected %g", hour,
                      out.expected);
    }
    ck_assert_int_eq(off, 0);
    se_close(&f);
}
END_TEST

START_TEST(level_shift_is_reported_once)
{
    se_fix_t f;
    se_open(&f, "");
    se_series_t a = {.seed = 11, .noise = 2, .sunday_surge_week = -1, .shift_day = 23};
    se_hits_t hits = {0};
    se_run(&f, &a, SE_T0, SE_T0 + 6 * SE_WEEK, SE_T0 + 2 * SE_WEEK, &hits);
    ck_assert_int_eq(hits.count, 1);
    ck_assert_int_eq(hits.ts[0], SE_T0 + 23 * SE_DAY);
    /* and the model has adopted the new level since */
    int64_t ts = SE_T0 + 6 * SE_WEEK + 2 * SE_HOUR;
    sn_verdict_t out = se_feed(&f, ts, se_value(&a, ts));
    ck_assert_int_eq(out.anomalous, 0);
    ck_assert_double_lt(fabs(out.expected - 150), 5);
    se_close(&f);
}
END_TEST

static void se_constant_then_deviation(const char *settings, int points, int64_t step)
{
    se_fix_t f;
    se_open(&f, settings);
    int64_t ts = SE_T0;
    for (int i = 0; i < points; i++, ts += step) {
        sn_verdict_t out = se_feed(&f, ts, 0.1);
        ck_assert_int_eq(out.anomalous, 0);
        ck_assert_double_eq(out.score, 0);
    }
    /* a deviation far below 1e-9 relative is noise in the representation, not an anomaly */
    sn_verdict_t out = se_feed(&f, ts, 0.1 + 1e-13);
    ck_assert_int_eq(out.anomalous, 0);
    out = se_feed(&f, ts + step, 0.2);
    ck_assert_int_eq(out.anomalous, 1);
    ck_assert_double_gt(out.score, 0.99);
    ck_assert_double_eq_tol(out.expected, 0.1, 1e-9);
    se_close(&f);
}

START_TEST(constant_series_never_divides_by_zero)
{
    /* before the slots speak: the plain level judges */
    se_constant_then_deviation("", 100, SE_STEP);
    /* three weeks of hourly points: the seasonal model judges */
    se_constant_then_deviation("", 3 * 7 * 24, SE_HOUR);
    se_constant_then_deviation("period = day\nmin_cycles = 1\n", 3 * 24, SE_HOUR);
    se_constant_then_deviation("period = none\n", 100, SE_STEP);
}
END_TEST

START_TEST(bad_points_are_ignored)
{
    se_fix_t f;
    se_open(&f, "");
    se_series_t a = {.seed = 9, .noise = 2, .sunday_surge_week = -1, .shift_day = -1};
    se_hits_t hits = {0};
    int64_t end = SE_T0 + 3 * SE_WEEK + 2 * SE_HOUR; /* Monday 2 AM, week 4 */
    se_run(&f, &a, SE_T0, end, SE_T0 + 2 * SE_WEEK, &hits);
    ck_assert_int_eq(hits.count, 0);
    int64_t last = end - SE_STEP;
    void *before = malloc(f.ops->state_size);
    memcpy(before, f.state, f.ops->state_size);
    const struct {
        int64_t ts;
        double v;
    } bad[] = {
        {end, NAN}, {end, INFINITY}, {end, -INFINITY}, {last, 1000}, {last - SE_HOUR, 1000},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sn_verdict_t out = se_feed(&f, bad[i].ts, bad[i].v);
        ck_assert_int_eq(out.anomalous, 0);
        ck_assert_double_eq(out.score, 0);
        ck_assert_double_eq(out.confidence, 0);
        ck_assert_double_lt(fabs(out.expected - 100), 5);
        ck_assert_int_eq(memcmp(before, f.state, f.ops->state_size), 0);
    }
    /* and the series carries on normally; the same spike in order is reported */
    ck_assert_int_eq(se_feed(&f, end, se_value(&a, end)).anomalous, 0);
    ck_assert_int_eq(se_feed(&f, end + SE_STEP, 1000).anomalous, 1);
    free(before);
    se_close(&f);
}
END_TEST

START_TEST(warmup_equals_observe)
{
    se_fix_t a, b;
    se_open(&a, "");
    se_open(&b, "");
    enum { N = 3 * 7 * 288 + 100 };
    int64_t *ts = malloc(N * sizeof(*ts));
    double *v = malloc(N * sizeof(*v));
    se_series_t sr = {.seed = 29, .noise = 2, .sunday_surge_week = 1, .shift_day = -1};
    for (int i = 0; i < N; i++) {
        ts[i] = SE_T0 + i * SE_STEP;
        v[i] = se_value(&sr, ts[i]);
    }
    v[500] = NAN;              /* ignored */
    ts[900] = ts[899];         /* not newer: ignored */
    ts[1200] = ts[1199] - 777; /* older: ignored */
    v[N - 3] += 80;            /* history ends inside an episode */
    for (int i = 0; i < N; i++) {
        sn_point_t p = {.ts_ms = ts[i], .value = v[i], .series = 1, .metric = "m"};
        sn_verdict_t out;
        ck_assert_int_eq(a.ops->observe(a.self, a.state, &p, &out), 0);
    }
    ck_assert_int_eq(b.ops->warmup(b.self, b.state, ts, v, N), 0);
    ck_assert_int_eq(memcmp(a.state, b.state, a.ops->state_size), 0);
    /* split warmups equal one */
    se_fix_t c;
    se_open(&c, "");
    ck_assert_int_eq(c.ops->warmup(c.self, c.state, ts, v, N / 2), 0);
    ck_assert_int_eq(c.ops->warmup(c.self, c.state, ts + N / 2, v + N / 2, N - N / 2), 0);
    ck_assert_int_eq(memcmp(a.state, c.state, a.ops->state_size), 0);
    /* and the primed series judges like the observed one */
    int64_t t = ts[N - 1] + SE_STEP;
    sn_verdict_t oa = se_feed(&a, t, 400), ob = se_feed(&b, t, 400);
    ck_assert_int_eq(memcmp(&oa, &ob, sizeof(oa)), 0);
    ck_assert_int_eq(b.ops->warmup(b.self, b.state, NULL, NULL, 0), 0);
    ck_assert_int_eq(b.ops->warmup(b.self, b.state, NULL, v, 3), SN_EINVAL);
    free(ts);
    free(v);
    se_close(&a);
    se_close(&b);
    se_close(&c);
}
END_TEST

START_TEST(warmup_primes_history)
{
    se_fix_t f;
    se_open(&f, "");
    enum { N = 3 * 7 * 288 };
    int64_t *ts = malloc(N * sizeof(*ts));
    double *v = malloc(N * sizeof(*v));
    se_series_t sr = {.seed = 31, .noise = 2, .sunday_surge_week = -1, .shift_day = -1};
    for (int i = 0; i < N; i++) {
        ts[i] = SE_T0 + i * SE_STEP;
        v[i] = se_value(&sr, ts[i]);
    }
    ck_assert_int_eq(f.ops->warmup(f.self, f.state, ts, v, N), 0);
    /* the first live Monday surge is expected, a surge at 3 AM is not */
    se_hits_t hits = {0};
    se_run(&f, &sr, SE_T0 + 3 * SE_WEEK, SE_T0 + 3 * SE_WEEK + 12 * SE_HOUR, 0, &hits);
    ck_assert_int_eq(hits.count, 0);
    int64_t t = SE_T0 + 3 * SE_WEEK + SE_DAY + 3 * SE_HOUR;
    se_run(&f, &sr, SE_T0 + 3 * SE_WEEK + 12 * SE_HOUR, t, 0, &hits);
    ck_assert_int_eq(se_feed(&f, t, se_value(&sr, t) + 60).anomalous, 1);
    free(ts);
    free(v);
    se_close(&f);
}
END_TEST

START_TEST(long_gap_is_no_anomaly_storm)
{
    se_fix_t f;
    se_open(&f, "");
    se_series_t a = {.seed = 37, .noise = 2, .sunday_surge_week = -1, .shift_day = -1};
    se_hits_t hits = {0};
    /* three weeks, then nothing for five days (Tuesday 10 AM to Sunday 10 AM), then two weeks */
    int64_t stop = SE_T0 + 3 * SE_WEEK + SE_DAY + 10 * SE_HOUR;
    se_run(&f, &a, SE_T0, stop, SE_T0 + 2 * SE_WEEK, &hits);
    se_run(&f, &a, stop + 5 * SE_DAY, SE_T0 + 6 * SE_WEEK, 0, &hits);
    ck_assert_int_eq(hits.count, 0);
    se_close(&f);
}
END_TEST

START_TEST(gap_caps_trend_extrapolation)
{
    se_fix_t f;
    se_open(&f, "period = none\n");
    uint64_t seed = 41;
    /* a week of steady growth, 10 per day */
    int64_t ts = SE_T0;
    double v = 0;
    int count = 0;
    for (; ts < SE_T0 + SE_WEEK; ts += SE_STEP) {
        v = 100 + 10.0 * (double)(ts - SE_T0) / SE_DAY;
        count += se_feed(&f, ts, v + 0.5 * se_noise(&seed)).anomalous;
    }
    /* a month of silence; the series resumes where it stopped and keeps growing */
    ts += 30 * SE_DAY;
    sn_verdict_t out = se_feed(&f, ts, v);
    /* uncapped, the trend would add about 300 over the gap; capped, at most one hour of it */
    ck_assert_double_lt(fabs(out.expected - v), 2);
    count += out.anomalous;
    for (int i = 1; i < 288; i++)
        count += se_feed(&f, ts + i * SE_STEP, v + 10.0 * i * SE_STEP / SE_DAY).anomalous;
    ck_assert_int_eq(count, 0);
    se_close(&f);
}
END_TEST

START_TEST(utc_offset_aligns_slots_with_local_hours)
{
    /* a surge every Monday from 08:30 to 09:30 UTC: at UTC+05:30 that is 14:00 to 15:00 local,
     * one whole slot, learnt exactly; in UTC it straddles two slots, each holding half of it */
    const char *settings[2] = {"utc_offset_minutes = 330\n", ""};
    double expected[2];
    int counts[2];
    for (int k = 0; k < 2; k++) {
        se_fix_t f;
        se_open(&f, settings[k]);
        uint64_t seed = 43;
        counts[k] = 0;
        for (int64_t ts = SE_T0; ts <= SE_T0 + 4 * SE_WEEK + 8 * SE_HOUR + 35 * SE_MIN;
             ts += SE_STEP) {
            int64_t mod = (ts - SE_T0) % SE_WEEK;
            double v = 50 + 2 * se_noise(&seed);
            if (mod >= 8 * SE_HOUR + 30 * SE_MIN && mod < 9 * SE_HOUR + 30 * SE_MIN)
                v += 60;
            sn_verdict_t out = se_feed(&f, ts, v);
            if (ts >= SE_T0 + 2 * SE_WEEK)
                counts[k] += out.anomalous;
            expected[k] = out.expected;
        }
        se_close(&f);
    }
    ck_assert_int_eq(counts[0], 0);
    ck_assert_double_lt(fabs(expected[0] - 110), 3);
    ck_assert_double_gt(fabs(expected[1] - 110), 15);
}
END_TEST

START_TEST(hysteresis_merges_close_spikes)
{
    se_fix_t f;
    se_open(&f, "period = none\nhysteresis = 5\n");
    uint64_t seed = 3;
    int count = 0;
    for (int i = 0; i < 600; i++) {
        double v = 50 + se_noise(&seed);
        if (i == 300 || i == 303) /* 2 normal points between: same episode */
            v += 40;
        if (i == 400 || i == 410) /* 9 normal points between: two episodes */
            v += 40;
        count += se_feed(&f, SE_T0 + i * SE_STEP, v).anomalous;
    }
    ck_assert_int_eq(count, 3);
    se_close(&f);
}
END_TEST

START_TEST(silent_before_min_history)
{
    se_fix_t f;
    se_open(&f, "min_history = 30\n");
    uint64_t seed = 5;
    for (int i = 0; i < 30; i++) {
        double v = 10 + se_noise(&seed) + (i == 20 ? 100 : 0);
        sn_verdict_t out = se_feed(&f, SE_T0 + i * SE_STEP, v);
        ck_assert_int_eq(out.anomalous, 0);
        ck_assert_double_eq(out.score, 0);
        ck_assert_double_eq(out.confidence, 0);
    }
    se_close(&f);
}
END_TEST

START_TEST(bad_settings_fail_create)
{
    static const struct {
        const char *settings, *phrase;
    } cases[] = {
        {"period = month\n", "period"},
        {"utc_offset_minutes = 900\n", "utc_offset_minutes"},
        {"utc_offset_minutes = -841\n", "utc_offset_minutes"},
        {"threshold = 0\n", "threshold"},
        {"threshold = -2\n", "threshold"},
        {"hysteresis = -1\n", "hysteresis"},
        {"min_history = -1\n", "min_history"},
        {"min_cycles = 0\n", "min_cycles"},
        {"min_cycles = 101\n", "min_cycles"},
        {"season_cycles = 0\n", "season_cycles"},
        {"level_window = 0\n", "level_window"},
        {"variance_window = 0\n", "variance_window"},
        {"max_gap = 0\n", "max_gap"},
    };
    sn_harness_t *h = sn_harness_new();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sn_err_t err = {{0}};
        const sn_plugin_t *p = NULL;
        void *self = sn_harness_create(h, SN_DETECTOR, "seasonal", cases[i].settings, &p, &err);
        ck_assert_ptr_null(self);
        ck_assert_msg(strstr(err.msg, cases[i].phrase) != NULL, "'%s' gave '%s'", cases[i].settings,
                      err.msg);
    }
    /* the boundaries themselves are accepted */
    sn_err_t err = {{0}};
    const sn_plugin_t *p = NULL;
    ck_assert_ptr_nonnull(sn_harness_create(h, SN_DETECTOR, "seasonal",
                                            "utc_offset_minutes = -840\nmin_cycles = 1\n"
                                            "trend_window = 0\nperiod = day\n",
                                            &p, &err));
    sn_harness_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("seasonal");
    TCase *tc = tcase_create("detector");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, state_fits_the_budget);
    tcase_add_test(tc, weekly_surge_is_normal_after_learning);
    tcase_add_test(tc, surge_at_unusual_hour_is_reported_with_high_score);
    tcase_add_test(tc, noisier_hours_get_their_own_spread);
    tcase_add_test(tc, daily_period_learns_in_one_cycle);
    tcase_add_test(tc, offsets_survive_period_gaps_and_bad_points);
    tcase_add_test(tc, level_shift_is_reported_once);
    tcase_add_test(tc, constant_series_never_divides_by_zero);
    tcase_add_test(tc, bad_points_are_ignored);
    tcase_add_test(tc, warmup_equals_observe);
    tcase_add_test(tc, warmup_primes_history);
    tcase_add_test(tc, long_gap_is_no_anomaly_storm);
    tcase_add_test(tc, gap_caps_trend_extrapolation);
    tcase_add_test(tc, utc_offset_aligns_slots_with_local_hours);
    tcase_add_test(tc, hysteresis_merges_close_spikes);
    tcase_add_test(tc, silent_before_min_history);
    tcase_add_test(tc, bad_settings_fail_create);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
