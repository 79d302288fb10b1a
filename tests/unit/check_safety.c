/** @file check_safety.c Whitelist bypass battery, token buckets, breaker and policy. */
#include "sentinel-internal.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static const char *const allow[] = {"deployment/shop/*", "pod/shop/web-*",
                                    "instance/us-east-1/i-0abc", NULL};

static int allowed(const char *target)
{
    char canon[600], why[160];
    if (sn_target_canon(target, canon, sizeof(canon), why, sizeof(why)) != 0)
        return 0;
    return sn_whitelist_match(allow, canon);
}

START_TEST(whitelist_allows_exact_scope)
{
    ck_assert(allowed("deployment/shop/checkout"));
    ck_assert(allowed("Deployment/shop/checkout")); /* kind is case-insensitive */
    ck_assert(allowed("pod/shop/web-7f9c"));
    ck_assert(allowed("instance/us-east-1/i-0abc"));
}
END_TEST

START_TEST(whitelist_refuses_bypass_attempts)
{
    static const char *const attempts[] = {
        "deployment/shop/../kube-system/coredns",
        "deployment/shop/..",
        "deployment/../shop/x",
        "deployment/shop/%2e%2e/x",
        "deployment/shop%2Fkube-system/x",
        "deployment/SHOP/checkout",
        "deployment/shop/*",
        "deployment/shop/check?ut",
        "deployment/shop/checkout/extra",
        "deployment/shop",
        "deployment/kube-system/checkout",
        "deployment//shop/checkout",
        "deployment/shop/./checkout",
        "deployment/shop/check out",
        "deployment/shop/checkout\n",
        "deployment/shop/ch\xc3\xa9"
        "ckout",
        "statefulset/shop/checkout",
        "pod/shop/api-1",
        "instance/us-west-2/i-0abc",
        "instance/us-east-1/i-0abcd",
        "deployment\\shop\\checkout",
        "",
    };
    for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++)
        ck_assert_msg(!allowed(attempts[i]), "bypass accepted: %s", attempts[i]);
}
END_TEST

START_TEST(bad_patterns_never_match)
{
    static const char *const bad[] = {"deployment/../*", "deployment//*", NULL};
    ck_assert(!sn_whitelist_match(bad, "deployment/x"));
}
END_TEST

START_TEST(bucket_limits_and_refills)
{
    sn_bucket_t b;
    sn_bucket_init(&b, 2, 60000, 0);
    ck_assert(sn_bucket_take(&b, 0));
    ck_assert(sn_bucket_take(&b, 0));
    ck_assert(!sn_bucket_take(&b, 1000));
    ck_assert(sn_bucket_take(&b, 31000)); /* one token back after half the period */
    ck_assert(!sn_bucket_take(&b, 31000));
}
END_TEST

START_TEST(breaker_opens_half_opens_and_closes)
{
    sn_breaker_t br;
    sn_breaker_init(&br, 0.10, 5, 60000, 1000);
    for (int i = 0; i < 9; i++)
        sn_breaker_record(&br, false, i);
    ck_assert(sn_breaker_closed(&br, 10));
    sn_breaker_record(&br, true, 10); /* 1 of 10 = 10 %: not over the threshold */
    ck_assert(sn_breaker_closed(&br, 11));
    sn_breaker_record(&br, true, 12); /* 2 of 11 */
    ck_assert(!sn_breaker_closed(&br, 13));
    sn_breaker_record(&br, true, 2000); /* half-open probe fails: open again */
    ck_assert(!sn_breaker_closed(&br, 2001));
    sn_breaker_record(&br, false, 4000); /* probe succeeds: closed and cleared */
    ck_assert(sn_breaker_closed(&br, 4001));
}
END_TEST

START_TEST(policy_auto_approves_only_low_risk)
{
    ck_assert(sn_policy_auto_approve(SN_RISK_LOW, 30, 60, true));
    ck_assert(!sn_policy_auto_approve(SN_RISK_LOW, 61, 60, true));
    ck_assert(!sn_policy_auto_approve(SN_RISK_LOW, 0, 60, false));
    ck_assert(!sn_policy_auto_approve(SN_RISK_MEDIUM, 0, 60, true));
    ck_assert(!sn_policy_auto_approve(SN_RISK_HIGH, 0, 60, true));
}
END_TEST

START_TEST(audit_chain_detects_changes)
{
    char prev[65] = SN_AUDIT_GENESIS, why[256];
    json_t *recs[5];
    for (int i = 0; i < 5; i++) {
        json_t *d = json_pack("{s:i}", "n", i);
        recs[i] = sn_audit_record(i + 1, prev, 1000 + i, "tester", "act", NULL, d);
        json_decref(d);
        snprintf(prev, sizeof(prev), "%s", json_string_value(json_object_get(recs[i], "hash")));
    }
    const char *p = SN_AUDIT_GENESIS;
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(sn_audit_check(recs[i], p, i, why, sizeof(why)), 0);
        p = json_string_value(json_object_get(recs[i], "hash"));
    }
    json_object_set_new(json_object_get(recs[2], "detail"), "n", json_integer(99));
    ck_assert_int_ne(sn_audit_check(recs[2], json_string_value(json_object_get(recs[1], "hash")), 2,
                                    why, sizeof(why)),
                     0);
    ck_assert(strstr(why, "hash mismatch") != NULL);
    ck_assert_int_ne(sn_audit_check(recs[3], json_string_value(json_object_get(recs[1], "hash")), 2,
                                    why, sizeof(why)),
                     0);
    ck_assert(strstr(why, "seq gap") != NULL);
    for (int i = 0; i < 5; i++)
        json_decref(recs[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safety");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, whitelist_allows_exact_scope);
    tcase_add_test(tc, whitelist_refuses_bypass_attempts);
    tcase_add_test(tc, bad_patterns_never_match);
    tcase_add_test(tc, bucket_limits_and_refills);
    tcase_add_test(tc, breaker_opens_half_opens_and_closes);
    tcase_add_test(tc, policy_auto_approves_only_low_risk);
    tcase_add_test(tc, audit_chain_detects_changes);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
