/** @file check_metrics.c Unit tests for metrics.c: the registry and its Prometheus text
 * rendering (format 0.0.4). */
#include "runtime.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t count_occurrences(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

START_TEST(counters_add_and_gauges_set)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    sn_metric(rt, SN_METRIC_COUNTER, "events_total", "Events.", "kind=\"a\"", 2);
    sn_metric(rt, SN_METRIC_COUNTER, "events_total", "Events.", "kind=\"a\"", 3);
    sn_metric(rt, SN_METRIC_COUNTER, "events_total", "Events.", "kind=\"a\"", -4); /* ignored */
    sn_metric(rt, SN_METRIC_COUNTER, "events_total", "Events.", "kind=\"b\"", 1);
    sn_metric(rt, SN_METRIC_GAUGE, "queue_depth", "Depth.", NULL, 7);
    sn_metric(rt, SN_METRIC_GAUGE, "queue_depth", "Depth.", NULL, 2.5);
    ck_assert(sn_metric_value(rt, "events_total", "kind=\"a\"") == 5);
    ck_assert(sn_metric_value(rt, "events_total", "kind=\"b\"") == 1);
    ck_assert(sn_metric_value(rt, "sentinel_events_total", "kind=\"b\"") == 1);
    ck_assert(sn_metric_value(rt, "queue_depth", NULL) == 2.5);
    ck_assert(sn_metric_value(rt, "queue_depth", "") == 2.5);
    ck_assert(sn_metric_value(rt, "nothing_here", NULL) == 0);
    sn_runtime_free(rt);
}
END_TEST

START_TEST(render_groups_families_with_help_and_type_once)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    sn_metric(rt, SN_METRIC_COUNTER, "b_total", "B things.", "x=\"2\"", 1);
    sn_metric(rt, SN_METRIC_GAUGE, "a_ratio", "A ratio.", NULL, 0.25);
    sn_metric(rt, SN_METRIC_COUNTER, "b_total", "B things.", "x=\"1\"", 10);
    sn_metric(rt, SN_METRIC_COUNTER, "b_total", NULL, "x=\"3\",", 1e20);
    char *t = sn_metrics_render(rt);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(count_occurrences(t, "# HELP sentinel_b_total B things.\n"), 1);
    ck_assert_uint_eq(count_occurrences(t, "# TYPE sentinel_b_total counter\n"), 1);
    ck_assert_uint_eq(count_occurrences(t, "# TYPE sentinel_a_ratio gauge\n"), 1);
    const char *want = "# HELP sentinel_b_total B things.\n"
                       "# TYPE sentinel_b_total counter\n"
                       "sentinel_b_total{x=\"1\"} 10\n"
                       "sentinel_b_total{x=\"2\"} 1\n"
                       "sentinel_b_total{x=\"3\"} 1e+20\n";
    ck_assert_msg(strstr(t, want) != NULL, "family not grouped:\n%s", t);
    ck_assert_ptr_nonnull(strstr(t, "sentinel_a_ratio 0.25\n"));
    /* TYPE precedes the first sample of its family. */
    ck_assert(strstr(t, "# TYPE sentinel_a_ratio") < strstr(t, "sentinel_a_ratio 0.25"));
    ck_assert_int_eq(t[strlen(t) - 1], '\n');
    /* Every line is a comment or "name[{labels}] value". */
    char *save = NULL;
    for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        ck_assert_msg(strncmp(line, "sentinel_", 9) == 0, "unprefixed: %s", line);
        const char *sp = strrchr(line, ' ');
        ck_assert_ptr_nonnull(sp);
        char *end;
        strtod(sp + 1, &end);
        ck_assert_msg(*end == '\0', "bad value in: %s", line);
    }
    free(t);
    sn_runtime_free(rt);
}
END_TEST

START_TEST(label_values_and_help_are_escaped)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    char esc[128], labels[160];
    size_t n = sn_metric_escape(esc, sizeof(esc), "C:\\DIR\\FILE.TXT \"q\"\nx");
    ck_assert_str_eq(esc, "C:\\\\DIR\\\\FILE.TXT \\\"q\\\"\\nx");
    ck_assert_uint_eq(n, strlen(esc));
    /* truncation never splits an escape */
    ck_assert_uint_eq(sn_metric_escape(esc, 3, "a\"b"), 1);
    ck_assert_str_eq(esc, "a");
    sn_metric_escape(esc, sizeof(esc), "C:\\DIR\n\"F\"");
    snprintf(labels, sizeof(labels), "path=\"%s\"", esc);
    sn_metric(rt, SN_METRIC_GAUGE, "file_age_seconds", "Age with \\ and\nnewline \"quoted\".",
              labels, 1.5);
    ck_assert(sn_metric_value(rt, "file_age_seconds", labels) == 1.5);
    char *t = sn_metrics_render(rt);
    ck_assert_ptr_nonnull(
        strstr(t, "# HELP sentinel_file_age_seconds Age with \\\\ and\\nnewline \"quoted\".\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "sentinel_file_age_seconds{path=\"C:\\\\DIR\\n\\\"F\\\"\"} 1.5\n"));
    free(t);
    sn_runtime_free(rt);
}
END_TEST

START_TEST(malformed_series_are_refused)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    sn_metric(rt, SN_METRIC_COUNTER, "bad-name_total", "x", NULL, 1);
    sn_metric(rt, SN_METRIC_COUNTER, "ok_total", "x", "a=\"unterminated", 1);
    sn_metric(rt, SN_METRIC_COUNTER, "ok_total", "x", "a=\"raw\"quote\"", 1);
    sn_metric(rt, SN_METRIC_COUNTER, "ok_total", "x", "a=\"new\nline\"", 1);
    sn_metric(rt, SN_METRIC_COUNTER, "ok_total", "x", "__reserved=\"v\"", 1);
    sn_metric(rt, SN_METRIC_COUNTER, "ok_total", "x", "9a=\"v\"", 1);
    sn_metric(rt, SN_METRIC_COUNTER, "ok_total", "x", "a=\"v\"", 1);
    sn_metric(rt, SN_METRIC_GAUGE, "ok_total", "x", "a=\"w\"", 1); /* type clash */
    ck_assert(sn_metric_value(rt, "metrics_invalid_total", NULL) == 7);
    char *t = sn_metrics_render(rt);
    ck_assert_ptr_null(strstr(t, "bad-name"));
    ck_assert_ptr_null(strstr(t, "unterminated"));
    ck_assert_ptr_null(strstr(t, "__reserved"));
    ck_assert_ptr_nonnull(strstr(t, "sentinel_ok_total{a=\"v\"} 1\n"));
    ck_assert_ptr_null(strstr(t, "a=\"w\""));
    free(t);
    sn_runtime_free(rt);
}
END_TEST

START_TEST(registry_is_bounded)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    char *before = sn_metrics_render(rt);
    size_t builtin = count_occurrences(before, "\nsentinel_") + (before[0] == 's');
    free(before);
    char labels[64];
    for (int i = 0; i < 10100; i++) {
        snprintf(labels, sizeof(labels), "id=\"%d\"", i);
        sn_metric(rt, SN_METRIC_GAUGE, "many", "Many series.", labels, i);
    }
    ck_assert(sn_metric_value(rt, "metrics_series_dropped_total", NULL) == 100 + (double)builtin);
    /* existing series still update when full */
    sn_metric(rt, SN_METRIC_GAUGE, "many", NULL, "id=\"5\"", 55);
    ck_assert(sn_metric_value(rt, "many", "id=\"5\"") == 55);
    snprintf(labels, sizeof(labels), "id=\"%d\"", 10099);
    ck_assert(sn_metric_value(rt, "many", labels) == 0);
    char *t = sn_metrics_render(rt);
    ck_assert_uint_eq(count_occurrences(t, "\nsentinel_") + (t[0] == 's'), 10000);
    free(t);
    sn_runtime_free(rt);
}
END_TEST

START_TEST(special_values_render)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    sn_metric(rt, SN_METRIC_GAUGE, "inf_value", NULL, NULL, INFINITY);
    sn_metric(rt, SN_METRIC_GAUGE, "ninf_value", NULL, NULL, -INFINITY);
    sn_metric(rt, SN_METRIC_GAUGE, "nan_value", NULL, NULL, NAN);
    sn_metric(rt, SN_METRIC_GAUGE, "tenth_value", NULL, NULL, 0.1);
    char *t = sn_metrics_render(rt);
    ck_assert_ptr_nonnull(strstr(t, "sentinel_inf_value +Inf\n"));
    ck_assert_ptr_nonnull(strstr(t, "sentinel_ninf_value -Inf\n"));
    ck_assert_ptr_nonnull(strstr(t, "sentinel_nan_value NaN\n"));
    ck_assert_ptr_nonnull(strstr(t, "sentinel_tenth_value 0.1\n"));
    ck_assert_ptr_null(strstr(t, "# HELP sentinel_inf_value"));
    ck_assert_ptr_nonnull(strstr(t, "# TYPE sentinel_inf_value gauge\n"));
    free(t);
    sn_runtime_free(rt);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, counters_add_and_gauges_set);
    tcase_add_test(tc, render_groups_families_with_help_and_type_once);
    tcase_add_test(tc, label_values_and_help_are_escaped);
    tcase_add_test(tc, malformed_series_are_refused);
    tcase_add_test(tc, registry_is_bounded);
    tcase_add_test(tc, special_values_render);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
