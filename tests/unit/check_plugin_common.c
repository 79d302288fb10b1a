/**
 * @file check_plugin_common.c
 * Unit tests for plugins/common, the helpers linked into several plugins: retry arithmetic
 * (backoff ceilings, full jitter bounds, Retry-After), quickselect and the text buffer.
 */
#include "retry.h"
#include "select.h"
#include "strbuf.h"
#include "utf8.h"

#include <jansson.h>

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

START_TEST(ceiling_doubles_up_to_the_cap)
{
    ck_assert_int_eq(snr_ceiling(200, 30000, 1), 200);
    ck_assert_int_eq(snr_ceiling(200, 30000, 2), 400);
    ck_assert_int_eq(snr_ceiling(200, 30000, 4), 1600);
    ck_assert_int_eq(snr_ceiling(200, 30000, 9), 30000);
    ck_assert_int_eq(snr_ceiling(200, 30000, 1000), 30000); /* no overflow past the cap */
    ck_assert_int_eq(snr_ceiling(500, 100, 1), 100);
}
END_TEST

START_TEST(jitter_stays_in_bounds_and_covers_them)
{
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    int seen_lo = 0, seen_hi = 0;
    for (int i = 0; i < 20000; i++) {
        int64_t v = snr_jitter(&rng, 5, 9);
        ck_assert_int_ge(v, 5);
        ck_assert_int_le(v, 9);
        seen_lo |= v == 5;
        seen_hi |= v == 9;
    }
    ck_assert(seen_lo && seen_hi);
    ck_assert_int_eq(snr_jitter(&rng, 7, 7), 7);
    ck_assert_int_eq(snr_jitter(&rng, 7, 3), 7);
    for (int attempts = 1; attempts < 12; attempts++) {
        int64_t v = snr_backoff(&rng, 100, 1000, attempts);
        ck_assert_int_ge(v, 0);
        ck_assert_int_le(v, snr_ceiling(100, 1000, attempts));
    }
    ck_assert_int_eq(snr_backoff(&rng, 0, 1000, 3), 0);
}
END_TEST

START_TEST(digits_take_numbers_only)
{
    int64_t v = -1;
    ck_assert(snr_digits(" 120\r", 86400, &v) && v == 120);
    ck_assert(snr_digits("0", 86400, &v) && v == 0);
    ck_assert(!snr_digits("", 86400, &v));
    ck_assert(!snr_digits("1.5", 86400, &v));
    ck_assert(!snr_digits("Wed, 21 Oct 2026 07:28:00 GMT", 86400, &v));
    ck_assert(!snr_digits("-3", 86400, &v));
    /* The count stops at the cap, so a huge value stays in range but is not a number then. */
    ck_assert(!snr_digits("99999999999999999999999", 86400, &v));
}
END_TEST

static const char *one_header(const sn_http_response_t *r, const char *name)
{
    return strcasecmp(name, "Retry-After") == 0 ? r->priv : NULL;
}

START_TEST(retry_after_is_delay_seconds)
{
    sn_http_response_t r = {.status = 429, .header = one_header, .priv = "3"};
    int64_t ms = -1;
    ck_assert_int_eq(snr_retry_after(&r, &ms), 1);
    ck_assert_int_eq(ms, 3000);
    r.priv = "Wed, 21 Oct 2026 07:28:00 GMT"; /* the HTTP-date form: the caller's backoff */
    ck_assert_int_eq(snr_retry_after(&r, &ms), 0);
    r.priv = NULL;
    ck_assert_int_eq(snr_retry_after(&r, &ms), 0);
    r.header = NULL;
    ck_assert_int_eq(snr_retry_after(&r, &ms), 0);
    ck_assert_int_eq(snr_retry_after(NULL, &ms), 0);
}
END_TEST

START_TEST(select_finds_the_kth_smallest)
{
    double a[257];
    uint64_t rng = 42;
    for (long n = 1; n <= 257; n += 16) {
        for (long k = 0; k < n; k += (n > 8 ? n / 8 : 1)) {
            for (long i = 0; i < n; i++)
                a[i] = (double)(snr_rand(&rng) % 50); /* many ties */
            double sorted[257];
            memcpy(sorted, a, (size_t)n * sizeof(double));
            for (long i = 1; i < n; i++) /* insertion sort as the reference */
                for (long j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
                    double t = sorted[j];
                    sorted[j] = sorted[j - 1];
                    sorted[j - 1] = t;
                }
            double v = snp_select(a, n, k);
            ck_assert(v == sorted[k]);
            for (long i = 0; i < k; i++)
                ck_assert(a[i] <= v);
            for (long i = k + 1; i < n; i++)
                ck_assert(a[i] >= v);
        }
    }
}
END_TEST

START_TEST(buffer_grows_and_stays_terminated)
{
    snp_buf_t b = {0};
    for (int i = 0; i < 1000; i++)
        snp_buf_puts(&b, "abc");
    snp_buf_add(&b, "xyz", 1);
    ck_assert_int_eq(b.oom, 0);
    ck_assert_uint_eq(b.n, 3001);
    ck_assert_uint_eq(strlen(b.p), 3001);
    ck_assert(strncmp(b.p, "abcabc", 6) == 0 && b.p[3000] == 'x');
    free(b.p);
}
END_TEST

START_TEST(utf8_valid_follows_rfc3629)
{
    const char ok[] = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\xa5";
    ck_assert(snp_utf8_valid((const unsigned char *)ok, strlen(ok)));
    ck_assert(!snp_utf8_valid((const unsigned char *)ok, strlen(ok) - 1));    /* cut emoji */
    ck_assert(!snp_utf8_valid((const unsigned char *)"\xc0\xaf", 2));         /* overlong */
    ck_assert(!snp_utf8_valid((const unsigned char *)"\xed\xa0\x80", 3));     /* surrogate */
    ck_assert(!snp_utf8_valid((const unsigned char *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ck_assert(snp_utf8_valid((const unsigned char *)"a\0b", 3));
}
END_TEST

START_TEST(utf8_scrub_replaces_only_invalid_bytes)
{
    char ok[] = "plain ascii, caf\xc3\xa9, \xe2\x82\xac, \xf0\x9f\x94\xa5";
    ck_assert_uint_eq(snp_utf8_scrub(ok), 0);
    ck_assert_str_eq(ok, "plain ascii, caf\xc3\xa9, \xe2\x82\xac, \xf0\x9f\x94\xa5");
    /* A euro sign cut after two of its three bytes, as "%.Ns" does. */
    char cut[] = "cost \xe2\x82";
    ck_assert_uint_eq(snp_utf8_scrub(cut), 2);
    ck_assert_str_eq(cut, "cost ??");
    /* Latin-1, an overlong slash, a surrogate, a stray continuation byte. */
    char bad[] = "caf\xe9 \xc0\xaf \xed\xa0\x80 \x80x";
    ck_assert_uint_eq(snp_utf8_scrub(bad), 7);
    ck_assert_str_eq(bad, "caf? ?? ??? ?x");
    json_t *j = json_string(bad);
    ck_assert_ptr_nonnull(j); /* jansson takes what was scrubbed */
    json_decref(j);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin_common");
    TCase *tc = tcase_create("retry");
    tcase_add_test(tc, ceiling_doubles_up_to_the_cap);
    tcase_add_test(tc, jitter_stays_in_bounds_and_covers_them);
    tcase_add_test(tc, digits_take_numbers_only);
    tcase_add_test(tc, retry_after_is_delay_seconds);
    tcase_add_test(tc, select_finds_the_kth_smallest);
    tcase_add_test(tc, buffer_grows_and_stays_terminated);
    tcase_add_test(tc, utf8_valid_follows_rfc3629);
    tcase_add_test(tc, utf8_scrub_replaces_only_invalid_bytes);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
