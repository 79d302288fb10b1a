/**
 * @file check_safety.c
 * Safety primitives: canonical targets and the whitelist against a battery of bypass attempts
 * ("..", case, encoded characters, wildcards in the target, other namespaces/regions/accounts),
 * token buckets and the circuit breaker on a fake clock, and the approval policy table.
 */
#include "sentinel-internal.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const allow[] = {"deployment/shop/*", "pod/shop/web-*",
                                    "instance/us-east-1/i-0abc", NULL};

static bool allowed(const char *target)
{
    char canon[600], why[160];
    if (sn_target_canon(target, canon, sizeof(canon), why, sizeof(why)) != 0)
        return false;
    return sn_whitelist_match(allow, canon);
}

/* The canonical form, or the refusal phrase prefixed with "!". */
static const char *canon_of(const char *target)
{
    static char buf[700];
    char canon[600], why[160];
    if (sn_target_canon(target, canon, sizeof(canon), why, sizeof(why)) != 0)
        snprintf(buf, sizeof(buf), "!%s", why);
    else
        snprintf(buf, sizeof(buf), "%s", canon);
    return buf;
}

START_TEST(canon_lowercases_the_kind_only)
{
    ck_assert_str_eq(canon_of("deployment/shop/checkout"), "deployment/shop/checkout");
    ck_assert_str_eq(canon_of("DEPLOYMENT/shop/checkout"), "deployment/shop/checkout");
    ck_assert_str_eq(canon_of("Deployment/Shop/Checkout"), "deployment/Shop/Checkout");
    ck_assert_str_eq(canon_of("instance/us-east-1/i-0abc"), "instance/us-east-1/i-0abc");
    ck_assert_str_eq(canon_of("record/zone-1/a.b.example.com/A"),
                     "record/zone-1/a.b.example.com/A");
    ck_assert_str_eq(canon_of("configmap/shop/app_v2.conf"), "configmap/shop/app_v2.conf");
}
END_TEST

START_TEST(canon_refuses_with_a_reason)
{
    static const struct {
        const char *in, *why;
    } cases[] = {
        {"", "!empty target"},
        {"deployment/shop", "!target must be kind/namespace/name"},
        {"deployment", "!target must be kind/namespace/name"},
        {"deployment//checkout", "!empty path segment"},
        {"/deployment/shop/x", "!empty path segment"},
        {"deployment/shop/x/", "!empty path segment"},
        {"deployment/shop/..", "!'.' and '..' segments are refused"},
        {"deployment/./x", "!'.' and '..' segments are refused"},
        {"deployment/shop/%2e%2e", "!'%' is not allowed in a target"},
        {"deployment/shop/*", "!'*' is not allowed in a target"},
        {"deployment/shop/web?", "!'?' is not allowed in a target"},
        {"deployment\\shop\\x", "!'\\' is not allowed in a target"},
        {"deployment/shop/x#y", "!'#' is not allowed in a target"},
        {"deployment/shop/x;id", "!';' is not allowed in a target"},
        {"deployment/shop/$(id)", "!'$' is not allowed in a target"},
        {"deployment/shop/check out", "!whitespace"},
        {"deployment/shop/checkout\n", "!control character"},
        {"deployment/shop/x\x7f", "!control character"},
        {"deployment/shop/caf\xc3\xa9", "!non-ASCII character"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(strcmp(canon_of(cases[i].in), cases[i].why) == 0, "'%s': got '%s'",
                      cases[i].in, canon_of(cases[i].in));
    char why[64], out[8];
    ck_assert_int_eq(sn_target_canon(NULL, out, sizeof(out), why, sizeof(why)), SN_EINVAL);
    ck_assert_int_eq(sn_target_canon("pod/shop/web-1", out, sizeof(out), why, sizeof(why)),
                     SN_EINVAL); /* does not fit: refused, never truncated */
    ck_assert_str_eq(why, "target does not fit the buffer");
}
END_TEST

START_TEST(canon_length_limits)
{
    char t[700], seg[300];
    memset(seg, 'a', 253);
    seg[253] = '\0';
    snprintf(t, sizeof(t), "pod/shop/%s", seg);
    ck_assert_str_eq(canon_of(t), t);
    seg[253] = 'a';
    seg[254] = '\0';
    snprintf(t, sizeof(t), "pod/shop/%s", seg);
    ck_assert_str_eq(canon_of(t), "!segment longer than 253 characters");
    /* 512 in total is fine, 513 is not. */
    memset(seg, 'b', 200);
    seg[200] = '\0';
    snprintf(t, sizeof(t), "pod/%s/%s/", seg, seg); /* 4 + 200 + 1 + 200 + 1 = 406 */
    size_t n = strlen(t);
    memset(t + n, 'c', 512 - n);
    t[512] = '\0';
    ck_assert_str_eq(canon_of(t), t);
    t[512] = 'c';
    t[513] = '\0';
    ck_assert_str_eq(canon_of(t), "!target longer than 512 characters");
}
END_TEST

START_TEST(whitelist_allows_exact_scope)
{
    ck_assert(allowed("deployment/shop/checkout"));
    ck_assert(allowed("Deployment/shop/checkout")); /* kind is case-insensitive */
    ck_assert(allowed("DEPLOYMENT/shop/cart"));
    ck_assert(allowed("pod/shop/web-7f9c"));
    ck_assert(allowed("pod/shop/web-")); /* '*' may match nothing */
    ck_assert(allowed("instance/us-east-1/i-0abc"));
}
END_TEST

/* Every one of these must be refused by canonicalisation or fail to match. */
START_TEST(whitelist_refuses_bypass_attempts)
{
    static const char *const attempts[] = {
        /* dot segments */
        "deployment/shop/../kube-system/coredns",
        "deployment/shop/..",
        "deployment/../shop/x",
        "../shop/checkout",
        "deployment/shop/./checkout",
        "deployment/./shop",
        /* encodings */
        "deployment/shop/%2e%2e/x",
        "deployment/shop%2Fkube-system/x",
        "deployment/shop/%252e%252e",
        "deployment/shop/checkout%00",
        "deployment/shop/\xc0\xae\xc0\xae",  /* overlong UTF-8 '.' */
        "deployment/shop\xef\xbc\x8fkube/x", /* fullwidth solidus */
        "deployment/shop/ch\xc3\xa9"
        "ckout",
        /* case outside the kind */
        "deployment/SHOP/checkout",
        "deployment/Shop/checkout",
        "pod/shop/WEB-1",
        "INSTANCE/US-EAST-1/I-0ABC",
        /* wildcards in the target */
        "deployment/shop/*",
        "deployment/*/checkout",
        "pod/shop/web-*",
        "*/shop/checkout",
        "deployment/shop/check?ut",
        "deployment/shop/[a-z]*",
        /* other namespaces, regions, accounts */
        "deployment/kube-system/checkout",
        "deployment/shop-prod/checkout",
        "deployment/shopx/checkout",
        "deployment/xshop/checkout",
        "instance/us-west-2/i-0abc",
        "instance/us-east-1/i-0abcd",
        "instance/us-east-1/i-0ab",
        "instance/123456789012/us-east-1/i-0abc",
        /* shape */
        "deployment/shop",
        "deployment/shop/checkout/extra",
        "deployment/shop/checkout/",
        "/deployment/shop/checkout",
        "deployment//shop/checkout",
        "deployment/shop//checkout",
        "deployment\\shop\\checkout",
        "deployment/shop/..\\x",
        /* whitespace and control characters */
        "deployment/shop/check out",
        " deployment/shop/checkout",
        "deployment/shop/checkout\n",
        "deployment/shop/\tcheckout",
        "deployment/shop/checkout\r",
        /* other kinds and near-miss prefixes */
        "statefulset/shop/checkout",
        "deployments/shop/checkout",
        "deploymentx/shop/checkout",
        "pod/shop/api-1",
        "pod/shop/web",
        "pod/shop/xweb-1",
        /* punctuation an executor might pass on */
        "deployment/shop/checkout#x",
        "deployment/shop/checkout;rm",
        "deployment/shop/$(id)",
        "deployment/shop/`id`",
        "",
    };
    size_t n = sizeof(attempts) / sizeof(attempts[0]);
    ck_assert_int_ge(n, 15);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(!allowed(attempts[i]), "bypass accepted: %s", attempts[i]);
    ck_assert(!sn_whitelist_match(allow, NULL));
    ck_assert(!sn_whitelist_match(NULL, "deployment/shop/x"));
    static const char *const none[] = {NULL};
    ck_assert(!sn_whitelist_match(none, "deployment/shop/x"));
}
END_TEST

START_TEST(pattern_semantics)
{
    static const struct {
        const char *pattern, *target;
        bool match;
    } cases[] = {
        {"deployment/*/web", "deployment/a/web", true},
        {"deployment/*/web", "deployment/a/b/web", false}, /* '*' never crosses '/' */
        {"*/shop/*", "service/shop/api", true},
        {"pod/shop/*-canary", "pod/shop/web-canary", true},
        {"pod/shop/*-canary", "pod/shop/web-canary-2", false},
        {"pod/*/a*b*c", "pod/ns/aXXbYYc", true},
        {"pod/*/a*b*c", "pod/ns/aXXbYYcd", false},
        {"pod/shop/**", "pod/shop/x", true},
        {"pod/shop/web-1", "pod/shop/web-1", true},
        {"pod/shop/web-1", "pod/shop/web-10", false},
        {"Deployment/shop/*", "deployment/shop/x", true},  /* kind: any case */
        {"deployment/Shop/*", "deployment/shop/x", false}, /* namespace: exact */
        {"deployment/shop/*", "deployment/shop/x/y", false},
        /* Patterns that are not target-shaped never match anything. */
        {"deployment/../*", "deployment/../x", false},
        {"deployment/shop/..*", "deployment/shop/..x", false},
        {"deployment//*", "deployment/x", false},
        {"deployment/shop/", "deployment/shop/x", false},
        {"/shop/*", "deployment/shop/x", false},
        {"deployment/./*", "deployment/x/y", false},
        {"", "deployment/shop/x", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const pats[] = {cases[i].pattern, NULL};
        ck_assert_msg(sn_whitelist_match(pats, cases[i].target) == cases[i].match,
                      "'%s' vs '%s': expected %s", cases[i].pattern, cases[i].target,
                      cases[i].match ? "match" : "no match");
    }
    /* One good pattern among bad ones still matches. */
    static const char *const mixed[] = {"deployment/../*", "deployment//*", "pod/shop/*", NULL};
    ck_assert(sn_whitelist_match(mixed, "pod/shop/x"));
    ck_assert(!sn_whitelist_match(mixed, "deployment/shop/x"));
}
END_TEST

START_TEST(pattern_matching_is_not_exponential)
{
    char target[300];
    memset(target, 0, sizeof(target));
    memcpy(target, "pod/shop/", 9);
    memset(target + 9, 'a', 240);
    const char *const pats[] = {"pod/shop/*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", NULL};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert(!sn_whitelist_match(pats, target));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ck_assert_msg(secs < 0.5, "took %.3f s", secs);
}
END_TEST

START_TEST(bucket_limits_and_refills)
{
    sn_bucket_t b;
    sn_bucket_init(&b, 6, 3600000, 1000); /* 6 an hour: one token back every 10 minutes */
    for (int i = 0; i < 6; i++)
        ck_assert(sn_bucket_take(&b, 1000));
    ck_assert(!sn_bucket_take(&b, 1000));
    ck_assert(!sn_bucket_take(&b, 1000 + 599000)); /* not yet a whole token */
    ck_assert(sn_bucket_take(&b, 1000 + 600000));
    ck_assert(!sn_bucket_take(&b, 1000 + 600000));
    /* A long idle period refills to capacity, not beyond. */
    int64_t later = 1000 + 10 * 3600000LL;
    for (int i = 0; i < 6; i++)
        ck_assert(sn_bucket_take(&b, later));
    ck_assert(!sn_bucket_take(&b, later));
    /* A clock that steps back gives nothing, and does not spoil the next refill. */
    ck_assert(!sn_bucket_take(&b, later - 3600000));
    ck_assert(sn_bucket_take(&b, later + 600000));
}
END_TEST

START_TEST(bucket_per_minute_refills_continuously)
{
    sn_bucket_t b;
    sn_bucket_init(&b, 2, 60000, 0);
    ck_assert(sn_bucket_take(&b, 0));
    ck_assert(sn_bucket_take(&b, 0));
    ck_assert(!sn_bucket_take(&b, 1000));
    ck_assert(sn_bucket_take(&b, 30000)); /* one token back after half the period */
    ck_assert(!sn_bucket_take(&b, 30000));
    ck_assert(!sn_bucket_take(&b, 59999));
    ck_assert(sn_bucket_take(&b, 60000));
    /* An empty bucket never gives. */
    sn_bucket_t z;
    sn_bucket_init(&z, 0, 60000, 0);
    ck_assert(!sn_bucket_take(&z, 0));
    ck_assert(!sn_bucket_take(&z, 3600000));
}
END_TEST

START_TEST(breaker_opens_over_the_threshold)
{
    sn_breaker_t br;
    sn_breaker_init(&br, 0.10, 5, 60000, 1000);
    ck_assert(sn_breaker_closed(&br, 0));
    for (int i = 0; i < 9; i++)
        sn_breaker_record(&br, false, 1 + i);
    sn_breaker_record(&br, true, 10); /* 1 of 10 = 10 %: not over the threshold */
    ck_assert(sn_breaker_closed(&br, 11));
    sn_breaker_record(&br, true, 12); /* 2 of 11 */
    ck_assert(!sn_breaker_closed(&br, 13));
    ck_assert(!sn_breaker_closed(&br, 12 + 999));

    /* Below min_calls nothing opens it, even all failures. */
    sn_breaker_init(&br, 0.10, 5, 60000, 1000);
    for (int i = 0; i < 4; i++)
        sn_breaker_record(&br, true, 100 + i);
    ck_assert(sn_breaker_closed(&br, 200));
    sn_breaker_record(&br, true, 104);
    ck_assert(!sn_breaker_closed(&br, 200));
}
END_TEST

START_TEST(breaker_half_open_admits_one_probe)
{
    sn_breaker_t br;
    sn_breaker_init(&br, 0.10, 2, 60000, 1000);
    sn_breaker_record(&br, true, 10);
    sn_breaker_record(&br, true, 11); /* open at 11 */
    ck_assert(!sn_breaker_admit(&br, 500));
    ck_assert(sn_breaker_closed(&br, 1011)); /* half-open: a query takes nothing */
    ck_assert(sn_breaker_closed(&br, 1011));
    ck_assert(sn_breaker_admit(&br, 1011));  /* the probe */
    ck_assert(!sn_breaker_admit(&br, 1012)); /* a second caller waits for its outcome */
    ck_assert(!sn_breaker_closed(&br, 1012));
    sn_breaker_record(&br, true, 1100); /* probe failed: open for a full cooldown again */
    ck_assert(!sn_breaker_admit(&br, 2099));
    ck_assert(sn_breaker_admit(&br, 2100));
    /* A probe whose outcome never comes frees the slot after another cooldown. */
    ck_assert(!sn_breaker_admit(&br, 3099));
    ck_assert(sn_breaker_admit(&br, 3100));
    sn_breaker_record(&br, false, 3200); /* probe succeeded: closed, every call admitted */
    ck_assert(sn_breaker_admit(&br, 3201));
    ck_assert(sn_breaker_admit(&br, 3202));
}
END_TEST

START_TEST(breaker_window_slides)
{
    sn_breaker_t br;
    sn_breaker_init(&br, 0.5, 4, 10000, 1000);
    /* Old failures age out of the window. */
    sn_breaker_record(&br, true, 1000);
    sn_breaker_record(&br, true, 1001);
    sn_breaker_record(&br, true, 1002);
    for (int i = 0; i < 4; i++)
        sn_breaker_record(&br, false, 20000 + i);
    ck_assert(sn_breaker_closed(&br, 20010));
    sn_breaker_record(&br, true, 20010); /* 1 of 5 in the window */
    sn_breaker_record(&br, true, 20011); /* 2 of 6: not over 50 % */
    ck_assert(sn_breaker_closed(&br, 20012));
    sn_breaker_record(&br, true, 20012); /* 3 of 7 */
    ck_assert(sn_breaker_closed(&br, 20013));
    sn_breaker_record(&br, true, 20013); /* 4 of 8 = 50 %: not over */
    ck_assert(sn_breaker_closed(&br, 20014));
    sn_breaker_record(&br, true, 20014); /* 5 of 9 */
    ck_assert(!sn_breaker_closed(&br, 20015));

    /* The ring holds the last 64 outcomes: 64 successes push an old failure burst out. */
    sn_breaker_init(&br, 0.10, 5, 1000000, 1000);
    for (int i = 0; i < 5; i++)
        sn_breaker_record(&br, i == 0, i); /* 1 of 5 = 20 %: opens */
    ck_assert(!sn_breaker_closed(&br, 10));
    sn_breaker_init(&br, 0.10, 5, 1000000, 1000);
    for (int i = 0; i < 100; i++)
        sn_breaker_record(&br, false, i);
    for (int i = 0; i < 6; i++)
        sn_breaker_record(&br, i % 2 == 0, 100 + i); /* 3 failures of 64 < 10 % */
    ck_assert(sn_breaker_closed(&br, 200));
    sn_breaker_record(&br, true, 200); /* 4 of 64 */
    sn_breaker_record(&br, true, 201); /* 5 of 64 */
    sn_breaker_record(&br, true, 202); /* 6 of 64 */
    ck_assert(sn_breaker_closed(&br, 203));
    sn_breaker_record(&br, true, 203); /* 7 of 64 > 10 % */
    ck_assert(!sn_breaker_closed(&br, 204));
}
END_TEST

START_TEST(breaker_half_opens_and_closes)
{
    sn_breaker_t br;
    sn_breaker_init(&br, 0.10, 2, 60000, 1000);
    sn_breaker_record(&br, true, 100);
    sn_breaker_record(&br, true, 101);
    ck_assert(!sn_breaker_closed(&br, 102));
    /* Outcomes of calls that were already running change nothing while open. */
    sn_breaker_record(&br, false, 500);
    ck_assert(!sn_breaker_closed(&br, 600));
    /* After the cooldown it is half-open: the next call may go; asking twice is the same. */
    ck_assert(sn_breaker_closed(&br, 1101));
    ck_assert(sn_breaker_closed(&br, 1101));
    /* The probe fails: open again for a full cooldown. */
    sn_breaker_record(&br, true, 1200);
    ck_assert(!sn_breaker_closed(&br, 1201));
    ck_assert(!sn_breaker_closed(&br, 2199));
    ck_assert(sn_breaker_closed(&br, 2200));
    /* The probe succeeds: closed, and the window is clean (one failure does not re-open). */
    sn_breaker_record(&br, false, 2300);
    ck_assert(sn_breaker_closed(&br, 2301));
    sn_breaker_record(&br, true, 2302);
    ck_assert(sn_breaker_closed(&br, 2303));
    sn_breaker_record(&br, true, 2304);
    ck_assert(!sn_breaker_closed(&br, 2305));
}
END_TEST

START_TEST(policy_table)
{
    static const struct {
        sn_risk_t risk;
        int downtime, max;
        bool closed, want;
    } rows[] = {
        {SN_RISK_LOW, 0, 60, true, true},     {SN_RISK_LOW, 30, 60, true, true},
        {SN_RISK_LOW, 60, 60, true, true},    {SN_RISK_LOW, 61, 60, true, false},
        {SN_RISK_LOW, 0, 60, false, false},   {SN_RISK_LOW, -1, 60, true, false},
        {SN_RISK_LOW, 0, 0, true, true},      {SN_RISK_LOW, 1, 0, true, false},
        {SN_RISK_MEDIUM, 0, 60, true, false}, {SN_RISK_MEDIUM, 0, 3600, true, false},
        {SN_RISK_HIGH, 0, 60, true, false},   {SN_RISK_HIGH, 0, 60, false, false},
        {(sn_risk_t)0, 0, 60, true, false},   {(sn_risk_t)42, 0, 60, true, false},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        ck_assert_msg(sn_policy_auto_approve(rows[i].risk, rows[i].downtime, rows[i].max,
                                             rows[i].closed) == rows[i].want,
                      "row %zu", i);
}
END_TEST

START_TEST(risk_names)
{
    static const char *const names[] = {"low", "medium", "high"};
    static const sn_risk_t risks[] = {SN_RISK_LOW, SN_RISK_MEDIUM, SN_RISK_HIGH};
    for (size_t i = 0; i < 3; i++) {
        sn_risk_t r = (sn_risk_t)0;
        ck_assert_str_eq(sn_risk_name(risks[i]), names[i]);
        ck_assert_int_eq(sn_risk_parse(names[i], &r), 0);
        ck_assert_int_eq(r, risks[i]);
    }
    sn_risk_t r = SN_RISK_HIGH;
    ck_assert_int_eq(sn_risk_parse("LOW", &r), 0);
    ck_assert_int_eq(r, SN_RISK_LOW);
    r = SN_RISK_HIGH;
    ck_assert_int_eq(sn_risk_parse("critical", &r), SN_EINVAL);
    ck_assert_int_eq(sn_risk_parse("", &r), SN_EINVAL);
    ck_assert_int_eq(sn_risk_parse("lowest", &r), SN_EINVAL);
    ck_assert_int_eq(sn_risk_parse(NULL, &r), SN_EINVAL);
    ck_assert_int_eq(r, SN_RISK_HIGH); /* untouched on failure */
    ck_assert_str_eq(sn_risk_name((sn_risk_t)0), "unknown");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safety");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, canon_lowercases_the_kind_only);
    tcase_add_test(tc, canon_refuses_with_a_reason);
    tcase_add_test(tc, canon_length_limits);
    tcase_add_test(tc, whitelist_allows_exact_scope);
    tcase_add_test(tc, whitelist_refuses_bypass_attempts);
    tcase_add_test(tc, pattern_semantics);
    tcase_add_test(tc, pattern_matching_is_not_exponential);
    tcase_add_test(tc, bucket_limits_and_refills);
    tcase_add_test(tc, bucket_per_minute_refills_continuously);
    tcase_add_test(tc, breaker_opens_over_the_threshold);
    tcase_add_test(tc, breaker_window_slides);
    tcase_add_test(tc, breaker_half_open_admits_one_probe);
    tcase_add_test(tc, breaker_half_opens_and_closes);
    tcase_add_test(tc, policy_table);
    tcase_add_test(tc, risk_names);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
