/** @file check_hashing.c Tests of the hashing embedder, loaded as a .so through the harness. */
#include "harness.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct hs_fix {
    sn_harness_t *h;
    const sn_embedder_ops_t *ops;
    void *self;
} hs_fix_t;

static void hs_open(hs_fix_t *f, const char *settings)
{
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    f->self = sn_harness_create(f->h, SN_EMBEDDER, "hashing", settings, &p, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    f->ops = p->ops;
    ck_assert_ptr_nonnull(f->ops->embed);
}

/* Embed @p text into a freshly allocated array of *n doubles. */
static double *hs_vec(hs_fix_t *f, const char *text, size_t *n)
{
    sn_result_t r = {0};
    f->ops->embed(f->self, text, sn_result_done, &r);
    ck_assert_msg(r.done, "embed must complete before it returns");
    ck_assert_int_eq(r.status, 0);
    json_t *v = json_object_get(r.result, "vector");
    ck_assert(json_is_array(v));
    *n = json_array_size(v);
    double *out = calloc(*n ? *n : 1, sizeof(double));
    for (size_t i = 0; i < *n; i++) {
        ck_assert(json_is_number(json_array_get(v, i)));
        out[i] = json_number_value(json_array_get(v, i));
    }
    sn_result_clear(&r);
    return out;
}

static double hs_dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

START_TEST(vectors_are_normalised_and_deterministic)
{
    hs_fix_t f;
    hs_open(&f, "");
    size_t n1, n2;
    double *a = hs_vec(&f, "checkout p99 latency spike after deploy v2.3.1", &n1);
    double *b = hs_vec(&f, "checkout p99 latency spike after deploy v2.3.1", &n2);
    ck_assert_uint_eq(n1, 256);
    ck_assert_uint_eq(n2, 256);
    ck_assert_int_eq(memcmp(a, b, n1 * sizeof(double)), 0);
    ck_assert_double_eq_tol(hs_dot(a, a, n1), 1.0, 1e-9);
    free(a);
    free(b);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(similar_texts_are_closer_than_unrelated)
{
    hs_fix_t f;
    hs_open(&f, "");
    size_t n;
    double *a = hs_vec(&f, "checkout latency spike after deploy of checkout v2.3.1", &n);
    double *b = hs_vec(&f, "Latency spikes on CHECKOUT following a deploy", &n);
    double *c = hs_vec(&f, "payments memory leak: process killed by OOM", &n);
    double ab = hs_dot(a, b, n), ac = hs_dot(a, c, n), bc = hs_dot(b, c, n);
    ck_assert_msg(ab > ac + 0.2, "similar %.3f vs unrelated %.3f", ab, ac);
    ck_assert_msg(ab > bc + 0.2, "similar %.3f vs unrelated %.3f", ab, bc);
    ck_assert_double_gt(ab, 0.3);
    free(a);
    free(b);
    free(c);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(case_and_punctuation_do_not_matter)
{
    hs_fix_t f;
    hs_open(&f, "");
    size_t n;
    double *a = hs_vec(&f, "HTTP error ratio, checkout!", &n);
    double *b = hs_vec(&f, "http_error_ratio checkout", &n);
    ck_assert_double_eq_tol(hs_dot(a, b, n), 1.0, 1e-9);
    free(a);
    free(b);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(word_order_and_stems_count)
{
    hs_fix_t f;
    hs_open(&f, "");
    size_t n;
    double *a = hs_vec(&f, "checkout calls payments", &n);
    double *b = hs_vec(&f, "payments calls checkout", &n);
    double *c = hs_vec(&f, "timeouts", &n);
    double *d = hs_vec(&f, "timeout", &n);
    double *e = hs_vec(&f, "restarted", &n);
    /* same words, other order: close but not identical (bigrams differ) */
    ck_assert_double_lt(hs_dot(a, b, n), 0.999);
    ck_assert_double_gt(hs_dot(a, b, n), 0.5);
    /* shared character trigrams bring inflections together */
    ck_assert_double_gt(hs_dot(c, d, n), hs_dot(c, e, n) + 0.2);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(dim_is_configurable)
{
    hs_fix_t f;
    hs_open(&f, "dim = 64\n");
    size_t n;
    double *a = hs_vec(&f, "disk full on db1", &n);
    ck_assert_uint_eq(n, 64);
    ck_assert_double_eq_tol(hs_dot(a, a, n), 1.0, 1e-9);
    free(a);
    /* text without words embeds to zeros rather than failing */
    a = hs_vec(&f, " ,;- ", &n);
    ck_assert_uint_eq(n, 64);
    ck_assert_double_eq(hs_dot(a, a, n), 0);
    free(a);
    sn_harness_free(f.h);

    sn_harness_t *h = sn_harness_new();
    sn_err_t err = {{0}};
    const sn_plugin_t *p = NULL;
    ck_assert_ptr_null(sn_harness_create(h, SN_EMBEDDER, "hashing", "dim = 4\n", &p, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "dim"));
    sn_harness_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hashing");
    TCase *tc = tcase_create("embedder");
    tcase_add_test(tc, vectors_are_normalised_and_deterministic);
    tcase_add_test(tc, similar_texts_are_closer_than_unrelated);
    tcase_add_test(tc, case_and_punctuation_do_not_matter);
    tcase_add_test(tc, word_order_and_stems_count);
    tcase_add_test(tc, dim_is_configurable);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
