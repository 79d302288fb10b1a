/** @file check_util.c Unit tests for util.c and diag.c. */
#include "sentinel-internal.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

START_TEST(sha256_known_vector)
{
    char hex[65];
    sn_sha256_hex("abc", 3, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
END_TEST

START_TEST(hmac_rfc4231_case2)
{
    char hex[65];
    const char *data = "what do ya want for nothing?";
    sn_hmac_sha256_hex("Jefe", 4, data, strlen(data), hex);
    ck_assert_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}
END_TEST

START_TEST(ct_equal_compares_whole_strings)
{
    ck_assert(sn_ct_equal("secret", "secret"));
    ck_assert(!sn_ct_equal("secret", "secreT"));
    ck_assert(!sn_ct_equal("secret", "secret2"));
    ck_assert(!sn_ct_equal("", "x"));
}
END_TEST

START_TEST(uuid7_is_versioned_and_ordered)
{
    char a[37], b[37];
    sn_uuid7(a);
    ck_assert_int_eq(strlen(a), 36);
    ck_assert_int_eq(a[14], '7');
    ck_assert(strchr("89ab", a[19]) != NULL);
    sn_uuid7(b);
    ck_assert_int_le(strncmp(a, b, 13), 0);
}
END_TEST

START_TEST(time_parses_rfc3339_and_epoch)
{
    int64_t ms;
    ck_assert_int_eq(sn_parse_time_ms("1970-01-01T00:00:00Z", &ms), 0);
    ck_assert_int_eq(ms, 0);
    ck_assert_int_eq(sn_parse_time_ms("2026-11-25T10:00:00.250Z", &ms), 0);
    ck_assert_int_eq(ms, 1795600800250LL);
    ck_assert_int_eq(sn_parse_time_ms("2026-11-25T11:00:00+01:00", &ms), 0);
    ck_assert_int_eq(ms, 1795600800000LL);
    ck_assert_int_eq(sn_parse_time_ms("1795600800000", &ms), 0);
    ck_assert_int_eq(ms, 1795600800000LL);
    ck_assert_int_eq(sn_parse_time_ms("2026-13-01T00:00:00Z", &ms), SN_EINVAL);
    ck_assert_int_eq(sn_parse_time_ms("2026-02-31T00:00:00Z", &ms), SN_EINVAL);
    ck_assert_int_eq(sn_parse_time_ms("2026-04-31T00:00:00Z", &ms), SN_EINVAL);
    ck_assert_int_eq(sn_parse_time_ms("2026-02-29T00:00:00Z", &ms), SN_EINVAL);
    ck_assert_int_eq(sn_parse_time_ms("2028-02-29T00:00:00Z", &ms), 0); /* leap year */
    ck_assert_int_eq(sn_parse_time_ms("2100-02-29T00:00:00Z", &ms), SN_EINVAL);
    ck_assert_int_eq(sn_parse_time_ms("2000-02-29T00:00:00Z", &ms), 0);
    ck_assert_int_eq(sn_parse_time_ms("yesterday", &ms), SN_EINVAL);
    ck_assert_int_eq(sn_parse_time_ms("2026-11-25T10:00:00", &ms), SN_EINVAL);
    char out[32];
    sn_format_time_ms(1795600800250LL, out);
    ck_assert_str_eq(out, "2026-11-25T10:00:00.250Z");
}
END_TEST

START_TEST(series_hash_depends_on_labels)
{
    sn_label_t a[] = {{"service", "checkout"}}, b[] = {{"service", "cart"}};
    ck_assert_uint_ne(sn_series_hash("p99", a, 1), sn_series_hash("p99", b, 1));
    ck_assert_uint_eq(sn_series_hash("p99", a, 1), sn_series_hash("p99", a, 1));
    ck_assert_uint_ne(sn_series_hash("p99", a, 1), sn_series_hash("p99", NULL, 0));
}
END_TEST

START_TEST(canonical_json_sorts_keys)
{
    json_t *j = json_pack("{s:i,s:s}", "b", 1, "a", "x");
    char *s = sn_json_canonical(j);
    ck_assert_str_eq(s, "{\"a\":\"x\",\"b\":1}");
    free(s);
    json_decref(j);
}
END_TEST

START_TEST(diag_prefixes_location)
{
    sn_diag_t d;
    sn_diag_init(&d);
    sn_diag_add(&d, "a.conf", 3, "unknown key '%s'", "x");
    sn_diag_add(&d, "a.conf", 0, "no [pipeline]");
    ck_assert_int_eq(d.n, 2);
    ck_assert_str_eq(d.msgs[0], "a.conf:3: unknown key 'x'");
    ck_assert_str_eq(d.msgs[1], "a.conf: no [pipeline]");
    sn_diag_free(&d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, sha256_known_vector);
    tcase_add_test(tc, hmac_rfc4231_case2);
    tcase_add_test(tc, ct_equal_compares_whole_strings);
    tcase_add_test(tc, uuid7_is_versioned_and_ordered);
    tcase_add_test(tc, time_parses_rfc3339_and_epoch);
    tcase_add_test(tc, series_hash_depends_on_labels);
    tcase_add_test(tc, canonical_json_sorts_keys);
    tcase_add_test(tc, diag_prefixes_location);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
