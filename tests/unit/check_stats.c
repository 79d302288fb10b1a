/** @file check_stats.c Tests of the stats analyzer, loaded as a .so through the harness. */
#include "harness.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define T0 1795600800000LL /* 2026-11-25T10:00:00Z */
#define MIN (60 * 1000LL)

typedef struct st_fix {
    sn_harness_t *h;
    const sn_analyzer_ops_t *ops;
    void *self;
} st_fix_t;

static void st_open(st_fix_t *f, const char *settings)
{
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    f->self = sn_harness_create(f->h, SN_ANALYZER, "stats", settings, &p, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    f->ops = p->ops;
    ck_assert_ptr_nonnull(f->ops->analyze);
}

static json_t *anomaly(const char *service, const char *metric, int64_t ts, double value,
                       double expected, double score)
{
    return json_pack("{s:s, s:s, s:{s:s, s:s}, s:I, s:f, s:f, s:f, s:f, s:s}", "series",
                     "00000000000000ab", "metric", metric, "labels", "service", service, "env",
                     "prod", "ts", (json_int_t)ts, "value", value, "expected", expected, "score",
                     score, "confidence", 0.9, "detector", "latency");
}

static json_t *change(const char *kind, const char *service, const char *version, int64_t ts)
{
    return json_pack("{s:I, s:s, s:{s:s, s:s}}", "ts", (json_int_t)ts, "change", kind, "labels",
                     "service", service, "version", version);
}

/* Run analyze and return the hypotheses array (owned by *r). */
static json_t *st_run(st_fix_t *f, json_t *incident, sn_result_t *r)
{
    memset(r, 0, sizeof(*r));
    f->ops->analyze(f->self, incident, sn_result_done, r);
    ck_assert_msg(r->done, "analyze must complete before it returns");
    ck_assert_int_eq(r->status, 0);
    json_t *hyps = json_object_get(r->result, "hypotheses");
    ck_assert(json_is_array(hyps));
    /* ordered by confidence, every confidence in [0,1], every field present */
    double prev = 2;
    size_t i;
    json_t *h;
    json_array_foreach(hyps, i, h)
    {
        ck_assert(json_is_string(json_object_get(h, "service")));
        ck_assert(json_is_string(json_object_get(h, "cause")));
        ck_assert(json_is_array(json_object_get(h, "evidence")));
        ck_assert_uint_gt(json_array_size(json_object_get(h, "evidence")), 0);
        double c = json_number_value(json_object_get(h, "confidence"));
        ck_assert(c >= 0 && c <= 1);
        ck_assert_double_le(c, prev);
        prev = c;
    }
    return hyps;
}

static int has_evidence(const json_t *h, const char *a, const char *b)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(h, "evidence"), i, e)
    {
        const char *s = json_string_value(e);
        if (s && strstr(s, a) && (!b || strstr(s, b)))
            return 1;
    }
    return 0;
}

/* A deploy of checkout at 10:00; checkout's latency goes up at 10:04, small; frontend follows
 * at 10:05 with more and stronger anomalies. The deployed service must still come first. */
static json_t *deploy_incident(void)
{
    json_t *anoms = json_array();
    json_array_append_new(anoms,
                          anomaly("checkout", "http_p99_latency_ms", T0 + 4 * MIN, 840, 120, 0.55));
    for (int i = 0; i < 6; i++) {
        json_array_append_new(anoms, anomaly("frontend", "http_p99_latency_ms",
                                             T0 + 5 * MIN + i * 10000, 2000, 180, 1.0));
        json_array_append_new(anoms, anomaly("frontend", "http_error_ratio",
                                             T0 + 5 * MIN + i * 10000, 0.3, 0.002, 1.0));
    }
    json_t *changes = json_array();
    json_array_append_new(changes, change("deploy", "checkout", "v2.3.1", T0));
    json_array_append_new(changes, change("deploy", "search", "v7", T0 - 2 * 60 * MIN));
    return json_pack("{s:o, s:o, s:[s,s]}", "anomalies", anoms, "changes", changes, "services",
                     "checkout", "frontend");
}

START_TEST(deploy_before_onset_names_the_deployed_service)
{
    st_fix_t f;
    st_open(&f, "");
    json_t *inc = deploy_incident();
    sn_result_t r;
    json_t *hyps = st_run(&f, inc, &r);
    ck_assert_uint_ge(json_array_size(hyps), 2);
    json_t *top = json_array_get(hyps, 0);
    ck_assert_str_eq(json_string_value(json_object_get(top, "service")), "checkout");
    ck_assert_str_eq(json_string_value(json_object_get(top, "cause")), "deploy of checkout v2.3.1");
    ck_assert_str_eq(json_string_value(json_object_get(top, "version")), "v2.3.1");
    ck_assert(
        has_evidence(top, "deploy checkout v2.3.1 at 2026-11-25T10:00:00Z", "4 min before onset"));
    ck_assert(has_evidence(top, "first anomaly on checkout at 2026-11-25T10:04:00Z",
                           "http_p99_latency_ms 840 vs expected 120"));
    json_t *second = json_array_get(hyps, 1);
    ck_assert_str_eq(json_string_value(json_object_get(second, "service")), "frontend");
    ck_assert_str_eq(json_string_value(json_object_get(second, "cause")),
                     "http_p99_latency_ms anomaly on frontend");
    ck_assert(has_evidence(second, "onset 1 min after", "checkout"));
    /* a deploy two hours earlier is outside the window: search is no candidate */
    for (size_t i = 0; i < json_array_size(hyps); i++)
        ck_assert_str_ne(json_string_value(json_object_get(json_array_get(hyps, i), "service")),
                         "search");
    sn_result_clear(&r);
    json_decref(inc);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(without_change_the_earliest_service_leads)
{
    st_fix_t f;
    st_open(&f, "");
    json_t *anoms = json_array();
    json_array_append_new(anoms, anomaly("payments", "process_resident_memory_bytes", T0 + 2 * MIN,
                                         1.4e9, 5.1e8, 0.8));
    json_array_append_new(anoms,
                          anomaly("checkout", "http_p99_latency_ms", T0 + 6 * MIN, 900, 120, 0.9));
    json_t *inc = json_pack("{s:o, s:[]}", "anomalies", anoms, "changes");
    sn_result_t r;
    json_t *hyps = st_run(&f, inc, &r);
    ck_assert_uint_eq(json_array_size(hyps), 2);
    json_t *top = json_array_get(hyps, 0);
    ck_assert_str_eq(json_string_value(json_object_get(top, "service")), "payments");
    ck_assert_str_eq(json_string_value(json_object_get(top, "cause")),
                     "process_resident_memory_bytes anomaly on payments");
    ck_assert(has_evidence(top, "payments showed anomalies first", "before checkout"));
    ck_assert_ptr_null(json_object_get(top, "change"));
    /* symptom-only confidence stays modest */
    ck_assert_double_le(json_number_value(json_object_get(top, "confidence")), 0.6);
    sn_result_clear(&r);
    json_decref(inc);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(change_window_bounds_the_change)
{
    json_t *anoms = json_array();
    json_array_append_new(anoms,
                          anomaly("cart", "http_error_ratio", T0 + 20 * MIN, 0.05, 0.002, 0.9));
    json_t *changes = json_array();
    json_array_append_new(changes, change("config", "cart", "r42", T0));
    json_t *inc = json_pack("{s:o, s:o}", "anomalies", anoms, "changes", changes);

    st_fix_t f;
    sn_result_t r;
    st_open(&f, ""); /* 15m: a change 20 min earlier does not count */
    json_t *top = json_array_get(st_run(&f, inc, &r), 0);
    ck_assert_str_eq(json_string_value(json_object_get(top, "cause")),
                     "http_error_ratio anomaly on cart");
    double plain = json_number_value(json_object_get(top, "confidence"));
    sn_result_clear(&r);
    sn_harness_free(f.h);

    st_open(&f, "change_window = 30m\n");
    top = json_array_get(st_run(&f, inc, &r), 0);
    ck_assert_str_eq(json_string_value(json_object_get(top, "cause")), "config change of cart r42");
    ck_assert(has_evidence(top, "config change of cart r42", "20 min before onset"));
    ck_assert_double_gt(json_number_value(json_object_get(top, "confidence")), plain + 0.15);
    sn_result_clear(&r);
    sn_harness_free(f.h);
    json_decref(inc);
}
END_TEST

START_TEST(groups_by_host_then_instance_then_unknown)
{
    st_fix_t f;
    st_open(&f, "max_hypotheses = 2\n");
    json_t *inc = json_pack("{s:[{s:s, s:{s:s}, s:I, s:f, s:f}, {s:s, s:{s:s}, s:s, s:f, s:f},"
                            " {s:s, s:{}, s:I, s:f, s:f}]}",
                            "anomalies", "metric", "cpu", "labels", "host", "db1", "ts",
                            (json_int_t)T0, "value", 99.0, "score", 0.9, "metric", "disk", "labels",
                            "instance", "10.0.0.7:9100", "ts", "2026-11-25T10:01:00Z", "value", 1.0,
                            "score", 0.5, "metric", "x", "labels", "ts", (json_int_t)(T0 + 3 * MIN),
                            "value", 1.0, "score", 0.2);
    sn_result_t r;
    json_t *hyps = st_run(&f, inc, &r);
    ck_assert_uint_eq(json_array_size(hyps), 2); /* max_hypotheses */
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(hyps, 0), "service")), "db1");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(hyps, 1), "service")),
                     "10.0.0.7:9100");
    sn_result_clear(&r);
    json_decref(inc);
    sn_harness_free(f.h);

    st_open(&f, "");
    inc = json_pack("{s:[{s:s, s:{}, s:I, s:f}]}", "anomalies", "metric", "x", "labels", "ts",
                    (json_int_t)T0, "score", 0.5);
    hyps = st_run(&f, inc, &r);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(hyps, 0), "service")),
                     "unknown");
    sn_result_clear(&r);
    json_decref(inc);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(empty_incident_gives_no_hypotheses)
{
    st_fix_t f;
    st_open(&f, "");
    json_t *inc = json_pack("{s:[], s:[{s:I, s:s, s:{s:s}}]}", "anomalies", "changes", "ts",
                            (json_int_t)T0, "change", "deploy", "labels", "service", "a");
    sn_result_t r;
    ck_assert_uint_eq(json_array_size(st_run(&f, inc, &r)), 0);
    sn_result_clear(&r);
    json_decref(inc);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(bad_settings_fail_create)
{
    sn_harness_t *h = sn_harness_new();
    sn_err_t err = {{0}};
    const sn_plugin_t *p = NULL;
    ck_assert_ptr_null(
        sn_harness_create(h, SN_ANALYZER, "stats", "max_hypotheses = 0\n", &p, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "max_hypotheses"));
    sn_harness_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("analyzer");
    tcase_add_test(tc, deploy_before_onset_names_the_deployed_service);
    tcase_add_test(tc, without_change_the_earliest_service_leads);
    tcase_add_test(tc, change_window_bounds_the_change);
    tcase_add_test(tc, groups_by_host_then_instance_then_unknown);
    tcase_add_test(tc, empty_incident_gives_no_hypotheses);
    tcase_add_test(tc, bad_settings_fail_create);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
