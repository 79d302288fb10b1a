/**
 * @file check_auth.c
 * Unit tests for auth.c: "NAME:ROLE:sha256:HEX" key specs and their errors (file:line), the
 * role order, matching a presented key to its role and name, and Authorization header parsing.
 */
#include "auth.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* Known SHA-256 digests (FIPS 180-2 test vectors and the empty string), so the test does not
 * rely only on the hash function under the code it checks. */
#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* "NAME:ROLE:sha256:<sha256 of key>" into out. */
static void spec_for(char *out, size_t len, const char *name, const char *role, const char *key)
{
    char hex[65];
    sn_sha256_hex(key, strlen(key), hex);
    snprintf(out, len, "%s:%s:sha256:%s", name, role, hex);
}

/* ---- roles -------------------------------------------------------------------------------- */

START_TEST(role_names_round_trip)
{
    const char *names[] = {"ingest", "viewer", "operator", "admin"};
    sn_role_t want[] = {SN_ROLE_INGEST, SN_ROLE_VIEWER, SN_ROLE_OPERATOR, SN_ROLE_ADMIN};
    for (size_t i = 0; i < 4; i++) {
        sn_role_t r = SN_ROLE_NONE;
        ck_assert_int_eq(sn_role_parse(names[i], &r), 0);
        ck_assert_int_eq(r, want[i]);
        ck_assert_str_eq(sn_role_name(r), names[i]);
    }
    ck_assert_str_eq(sn_role_name(SN_ROLE_NONE), "none");
    ck_assert_str_eq(sn_role_name((sn_role_t)99), "none");
    sn_role_t r = SN_ROLE_VIEWER;
    /* "none" is not a role one can configure; names are case-sensitive. */
    ck_assert_int_eq(sn_role_parse("none", &r), SN_EINVAL);
    ck_assert_int_eq(sn_role_parse("Admin", &r), SN_EINVAL);
    ck_assert_int_eq(sn_role_parse("", &r), SN_EINVAL);
    ck_assert_int_eq(sn_role_parse("admins", &r), SN_EINVAL);
    ck_assert_int_eq(r, SN_ROLE_VIEWER);
}
END_TEST

START_TEST(role_order)
{
    /* viewer < operator < admin; ingest is a separate lane only admin also holds. */
    const sn_role_t all[] = {SN_ROLE_NONE, SN_ROLE_INGEST, SN_ROLE_VIEWER, SN_ROLE_OPERATOR,
                             SN_ROLE_ADMIN};
    /* allows[have][need] for need in ingest, viewer, operator, admin */
    const int allows[5][4] = {
        /* none     */ {0, 0, 0, 0},
        /* ingest   */ {1, 0, 0, 0},
        /* viewer   */ {0, 1, 0, 0},
        /* operator */ {0, 1, 1, 0},
        /* admin    */ {1, 1, 1, 1},
    };
    for (size_t h = 0; h < 5; h++)
        for (size_t n = 1; n < 5; n++)
            ck_assert_msg(sn_role_allows(all[h], all[n]) == (allows[h][n - 1] != 0),
                          "%s needing %s: expected %s", sn_role_name(all[h]), sn_role_name(all[n]),
                          allows[h][n - 1] ? "allowed" : "refused");
}
END_TEST

/* ---- key specs ---------------------------------------------------------------------------- */

START_TEST(specs_parse_and_check)
{
    char s1[160], s2[160], s3[160], s4[160];
    spec_for(s1, sizeof(s1), "shipper", "ingest", "key-ingest-0123456789");
    spec_for(s2, sizeof(s2), "grafana", "viewer", "key-viewer-0123456789");
    spec_for(s3, sizeof(s3), "oncall", "operator", "key-operator-0123456789");
    spec_for(s4, sizeof(s4), "root", "admin", "key-admin-0123456789");
    const char *specs[] = {s1, s2, s3, s4, NULL};
    sn_diag_t d;
    sn_diag_init(&d);
    sn_auth_t *a = sn_auth_new(specs, "sentinel.conf", 12, &d);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(d.n, 0);
    ck_assert_uint_eq(sn_auth_count(a), 4);
    const struct {
        const char *key, *name;
        sn_role_t role;
    } want[] = {{"key-ingest-0123456789", "shipper", SN_ROLE_INGEST},
                {"key-viewer-0123456789", "grafana", SN_ROLE_VIEWER},
                {"key-operator-0123456789", "oncall", SN_ROLE_OPERATOR},
                {"key-admin-0123456789", "root", SN_ROLE_ADMIN}};
    for (size_t i = 0; i < 4; i++) {
        const char *name = NULL;
        ck_assert_int_eq(sn_auth_check(a, want[i].key, &name), want[i].role);
        ck_assert_ptr_nonnull(name);
        ck_assert_str_eq(name, want[i].name);
        /* name may be NULL when the caller does not want it */
        ck_assert_int_eq(sn_auth_check(a, want[i].key, NULL), want[i].role);
    }
    sn_auth_free(a);
    sn_diag_free(&d);
}
END_TEST

START_TEST(check_refuses_near_misses)
{
    char s1[160], s2[160];
    spec_for(s1, sizeof(s1), "oncall", "operator", "s3cret-operator-key");
    spec_for(s2, sizeof(s2), "root", "admin", "s3cret-admin-key");
    const char *specs[] = {s1, s2, NULL};
    sn_diag_t d;
    sn_diag_init(&d);
    sn_auth_t *a = sn_auth_new(specs, "f", 1, &d);
    ck_assert_uint_eq(d.n, 0);
    const char *misses[] = {
        "",                      /* empty */
        "unknown",               /* unknown */
        "s3cret-operator-ke",    /* a prefix of a key */
        "s3cret",                /* a shorter prefix */
        "s3cret-operator-key ",  /* the key plus a blank */
        "s3cret-operator-keyX",  /* the key plus a character */
        "s3cret-operator-key\n", /* the key plus a newline */
        "S3CRET-OPERATOR-KEY",   /* another case */
        " s3cret-admin-key",     /* a leading blank */
    };
    for (size_t i = 0; i < sizeof(misses) / sizeof(misses[0]); i++) {
        const char *name = "untouched";
        ck_assert_msg(sn_auth_check(a, misses[i], &name) == SN_ROLE_NONE, "'%s' was accepted",
                      misses[i]);
        ck_assert_str_eq(name, "untouched");
    }
    /* The stored hash itself is not a key. */
    char hex[65];
    sn_sha256_hex("s3cret-admin-key", strlen("s3cret-admin-key"), hex);
    ck_assert_int_eq(sn_auth_check(a, hex, NULL), SN_ROLE_NONE);
    ck_assert_int_eq(sn_auth_check(a, "s3cret-admin-key", NULL), SN_ROLE_ADMIN);
    sn_auth_free(a);
    sn_diag_free(&d);
}
END_TEST

START_TEST(known_digests_and_upper_case_hex)
{
    /* Keys "abc" and "" by their published digests; upper-case hex is accepted. */
    char up[65];
    for (int i = 0; i < 64; i++)
        up[i] = (char)(SHA_ABC[i] >= 'a' ? SHA_ABC[i] - 'a' + 'A' : SHA_ABC[i]);
    up[64] = '\0';
    char s1[128], s2[128];
    snprintf(s1, sizeof(s1), "abc:viewer:sha256:%s", up);
    snprintf(s2, sizeof(s2), "blank:operator:sha256:%s", SHA_EMPTY);
    const char *specs[] = {s1, s2, NULL};
    sn_diag_t d;
    sn_diag_init(&d);
    sn_auth_t *a = sn_auth_new(specs, "f", 1, &d);
    ck_assert_uint_eq(d.n, 0);
    ck_assert_uint_eq(sn_auth_count(a), 2);
    const char *name = NULL;
    ck_assert_int_eq(sn_auth_check(a, "abc", &name), SN_ROLE_VIEWER);
    ck_assert_str_eq(name, "abc");
    ck_assert_int_eq(sn_auth_check(a, "abcd", NULL), SN_ROLE_NONE);
    /* Whoever configures the digest of "" gets what they asked for: an empty key matches. */
    ck_assert_int_eq(sn_auth_check(a, "", &name), SN_ROLE_OPERATOR);
    ck_assert_str_eq(name, "blank");
    sn_auth_free(a);
    sn_diag_free(&d);
}
END_TEST

START_TEST(bad_specs_name_file_and_line)
{
    char good[160], dup[160], nothex[128];
    spec_for(good, sizeof(good), "grafana", "viewer", "k1");
    spec_for(dup, sizeof(dup), "grafana", "admin", "k2");
    snprintf(nothex, sizeof(nothex), "nothex:viewer:sha256:%.63sg", SHA_ABC);
    char samehash[160], longname[200];
    spec_for(samehash, sizeof(samehash), "rogue", "admin", "k1");
    spec_for(longname, sizeof(longname),
             "a-name-of-sixty-four-characters-is-one-too-many-for-the-table-xx", "viewer", "k3");
    const char *specs[] = {
        good,
        "nohash:viewer:sha256",              /* #2: missing field */
        "weak:viewer:md5:" SHA_ABC,          /* #3: wrong algorithm */
        "boss:root:sha256:" SHA_ABC,         /* unknown role */
        "short:viewer:sha256:abcdef",        /* hash too short */
        "long:viewer:sha256:" SHA_ABC "0",   /* hash too long */
        nothex,                              /* a non-hex digit */
        dup,                                 /* duplicate name */
        "",                                  /* #9: empty */
        "justaname",                         /* #10 */
        "extra:viewer:sha256:" SHA_ABC ":x", /* #11: a fifth field */
        samehash,                            /* the good key's hash under another name */
        longname,                            /* #13 */
        NULL,
    };
    sn_diag_t d;
    sn_diag_init(&d);
    sn_auth_t *a = sn_auth_new(specs, "/etc/sentinel.conf", 42, &d);
    ck_assert_ptr_nonnull(a);
    /* Only the good key is kept; each bad one is reported, at the api_key line. */
    ck_assert_uint_eq(sn_auth_count(a), 1);
    const char *want[] = {
        "/etc/sentinel.conf:42: api_key #2: expected NAME:ROLE:sha256:HEX",
        "/etc/sentinel.conf:42: api_key #3: expected NAME:ROLE:sha256:HEX",
        "/etc/sentinel.conf:42: api_key 'boss': unknown role 'root' (ingest, viewer, operator, "
        "admin)",
        "/etc/sentinel.conf:42: api_key 'short': the hash must be 64 hex digits",
        "/etc/sentinel.conf:42: api_key 'long': the hash must be 64 hex digits",
        "/etc/sentinel.conf:42: api_key 'nothex': the hash must be 64 hex digits",
        "/etc/sentinel.conf:42: api_key 'grafana' is duplicate",
        "/etc/sentinel.conf:42: api_key #9: expected NAME:ROLE:sha256:HEX",
        "/etc/sentinel.conf:42: api_key #10: expected NAME:ROLE:sha256:HEX",
        "/etc/sentinel.conf:42: api_key #11: expected NAME:ROLE:sha256:HEX",
        "/etc/sentinel.conf:42: api_key 'rogue': same hash as 'grafana'",
        "/etc/sentinel.conf:42: api_key #13: name longer than 63 characters",
    };
    ck_assert_uint_eq(d.n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < d.n; i++)
        ck_assert_str_eq(d.msgs[i], want[i]);
    /* The duplicate did not replace the first key, and its key grants nothing. */
    const char *name = NULL;
    ck_assert_int_eq(sn_auth_check(a, "k1", &name), SN_ROLE_VIEWER);
    ck_assert_str_eq(name, "grafana");
    ck_assert_int_eq(sn_auth_check(a, "k2", NULL), SN_ROLE_NONE);
    /* A refused spec's hash is not usable either. */
    ck_assert_int_eq(sn_auth_check(a, "abc", NULL), SN_ROLE_NONE);
    sn_auth_free(a);
    sn_diag_free(&d);
}
END_TEST

START_TEST(no_keys)
{
    sn_diag_t d;
    sn_diag_init(&d);
    sn_auth_t *a = sn_auth_new(NULL, "f", 0, &d);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(sn_auth_count(a), 0);
    ck_assert_int_eq(sn_auth_check(a, "anything", NULL), SN_ROLE_NONE);
    ck_assert_int_eq(sn_auth_check(a, "", NULL), SN_ROLE_NONE);
    sn_auth_free(a);
    const char *none[] = {NULL};
    a = sn_auth_new(none, "f", 0, &d);
    ck_assert_uint_eq(sn_auth_count(a), 0);
    ck_assert_uint_eq(d.n, 0);
    sn_auth_free(a);
    sn_auth_free(NULL);
    ck_assert_uint_eq(sn_auth_count(NULL), 0);
    sn_diag_free(&d);
}
END_TEST

/* ---- Authorization header ----------------------------------------------------------------- */

START_TEST(bearer_parsing)
{
    const struct {
        const char *header, *key;
    } cases[] = {
        {"Bearer abc123", "abc123"},
        {"bearer abc123", "abc123"},
        {"BEARER abc123", "abc123"},
        {"bEaReR abc123", "abc123"},
        {"Bearer     abc123", "abc123"},
        {"Bearer a b", "a b"},
        {"Bearer", NULL},
        {"Bearer ", NULL},
        {"Bearer      ", NULL},
        {"Bearerabc123", NULL},
        {"Basic YWxhZGRpbjpvcGVuc2VzYW1l", NULL},
        {"abc123", NULL},
        {"", NULL},
        {"Token abc123", NULL},
        {"Bear abc123", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = sn_auth_bearer(cases[i].header);
        if (cases[i].key) {
            ck_assert_msg(got && strcmp(got, cases[i].key) == 0, "'%s' -> '%s', expected '%s'",
                          cases[i].header, got ? got : "(null)", cases[i].key);
            /* The key points into the header: nothing was copied. */
            ck_assert(got >= cases[i].header && got < cases[i].header + strlen(cases[i].header));
        } else {
            ck_assert_msg(got == NULL, "'%s' -> '%s', expected no key", cases[i].header, got);
        }
    }
    ck_assert_ptr_null(sn_auth_bearer(NULL));
}
END_TEST

START_TEST(bearer_then_check)
{
    char s[160];
    spec_for(s, sizeof(s), "ci", "ingest", "tok-42");
    const char *specs[] = {s, NULL};
    sn_diag_t d;
    sn_diag_init(&d);
    sn_auth_t *a = sn_auth_new(specs, "f", 3, &d);
    const char *name = NULL;
    ck_assert_int_eq(sn_auth_check(a, sn_auth_bearer("bearer   tok-42"), &name), SN_ROLE_INGEST);
    ck_assert_str_eq(name, "ci");
    ck_assert(sn_role_allows(SN_ROLE_INGEST, SN_ROLE_INGEST));
    ck_assert(!sn_role_allows(sn_auth_check(a, "tok-42", NULL), SN_ROLE_VIEWER));
    sn_auth_free(a);
    sn_diag_free(&d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("roles");
    tcase_add_test(tc, role_names_round_trip);
    tcase_add_test(tc, role_order);
    suite_add_tcase(s, tc);
    tc = tcase_create("keys");
    tcase_add_test(tc, specs_parse_and_check);
    tcase_add_test(tc, check_refuses_near_misses);
    tcase_add_test(tc, known_digests_and_upper_case_hex);
    tcase_add_test(tc, bad_specs_name_file_and_line);
    tcase_add_test(tc, no_keys);
    suite_add_tcase(s, tc);
    tc = tcase_create("bearer");
    tcase_add_test(tc, bearer_parsing);
    tcase_add_test(tc, bearer_then_check);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
