/**
 * @file check_audit.c
 * The audit hash chain: record shape, the hash recomputed independently, a chain of 100 that
 * verifies, and tampering (altered detail, removed record, reordered records, changed hash) each
 * caught at the right record with the right phrase.
 */
#include "sentinel-internal.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define N 100

static json_t *chain[N + 1]; /* chain[i] has seq i; chain[0] unused */

static const char *hash_of(const json_t *rec)
{
    return json_string_value(json_object_get(rec, "hash"));
}

static void build_chain(void)
{
    const char *prev = SN_AUDIT_GENESIS;
    chain[0] = NULL;
    for (int i = 1; i <= N; i++) {
        json_t *d = json_pack("{s:i,s:s,s:{s:b}}", "n", i, "target", "deployment/shop/checkout",
                              "nested", "ok", i % 2);
        char inc[40];
        snprintf(inc, sizeof(inc), "inc-%03d", i / 10);
        chain[i] = sn_audit_record(i, prev, 1764064800000LL + i * 1000, i % 3 ? "alice" : "policy",
                                   i % 2 ? "approve" : "execute", i % 5 ? inc : NULL, d);
        json_decref(d);
        ck_assert_ptr_nonnull(chain[i]);
        prev = hash_of(chain[i]);
    }
}

static void free_chain(void)
{
    for (int i = 1; i <= N; i++)
        json_decref(chain[i]);
}

/* Verify @p recs (n of them) as sentinelctl does: from the genesis, each against the last good
 * one. Returns the index of the first bad record (n when all are good) and its phrase. */
static size_t verify(json_t *const *recs, size_t n, char *why, size_t whylen)
{
    const char *prev = SN_AUDIT_GENESIS;
    int64_t prev_seq = 0;
    for (size_t i = 0; i < n; i++) {
        if (sn_audit_check(recs[i], prev, prev_seq, why, whylen) != 0)
            return i;
        prev = hash_of(recs[i]);
        prev_seq = json_integer_value(json_object_get(recs[i], "seq"));
    }
    why[0] = '\0';
    return n;
}

START_TEST(record_shape)
{
    json_t *d = json_pack("{s:s}", "verb", "restart");
    json_t *r = sn_audit_record(1, SN_AUDIT_GENESIS, 1764064800123LL, "alice", "approve",
                                "0193a1b2-0000-7000-8000-000000000001", d);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(json_object_size(r), 8);
    ck_assert_int_eq(json_integer_value(json_object_get(r, "seq")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(r, "ts")), "2025-11-25T10:00:00.123Z");
    ck_assert_str_eq(json_string_value(json_object_get(r, "actor")), "alice");
    ck_assert_str_eq(json_string_value(json_object_get(r, "action")), "approve");
    ck_assert_str_eq(json_string_value(json_object_get(r, "incident")),
                     "0193a1b2-0000-7000-8000-000000000001");
    ck_assert(json_equal(json_object_get(r, "detail"), d));
    ck_assert_str_eq(json_string_value(json_object_get(r, "prev_hash")), SN_AUDIT_GENESIS);
    const char *h = hash_of(r);
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(strlen(h), 64);
    ck_assert_uint_eq(strspn(h, "0123456789abcdef"), 64);

    /* The detail is copied: changing the caller's object later does not alter the record. */
    json_object_set_new(d, "verb", json_string("delete"));
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "detail"), "verb")),
                     "restart");
    json_decref(d);

    /* Recompute independently: SHA-256(prev_hash || canonical JSON without "hash"). */
    json_t *copy = json_deep_copy(r);
    json_object_del(copy, "hash");
    char *canon = sn_json_canonical(copy);
    ck_assert_ptr_nonnull(strstr(canon, "\"actor\":\"alice\",\"detail\":{\"verb\":\"restart\"}"));
    size_t len = strlen(SN_AUDIT_GENESIS) + strlen(canon);
    char *buf = malloc(len + 1);
    snprintf(buf, len + 1, "%s%s", SN_AUDIT_GENESIS, canon);
    char want[65];
    sn_sha256_hex(buf, len, want);
    ck_assert_str_eq(h, want);
    free(buf);
    free(canon);
    json_decref(copy);
    json_decref(r);
}
END_TEST

START_TEST(record_defaults_and_refusals)
{
    json_t *r = sn_audit_record(7, SN_AUDIT_GENESIS, 0, NULL, "config_reload", NULL, NULL);
    ck_assert_ptr_nonnull(r);
    ck_assert(json_is_null(json_object_get(r, "incident")));
    ck_assert(json_is_object(json_object_get(r, "detail")));
    ck_assert_int_eq(json_object_size(json_object_get(r, "detail")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(r, "actor")), "");
    ck_assert_str_eq(json_string_value(json_object_get(r, "ts")), "1970-01-01T00:00:00.000Z");
    char why[128];
    ck_assert_int_eq(sn_audit_check(r, SN_AUDIT_GENESIS, 6, why, sizeof(why)), 0);
    json_decref(r);

    /* No action, a prev_hash that is not a hash, a detail that is not an object: refused. */
    ck_assert_ptr_null(sn_audit_record(1, SN_AUDIT_GENESIS, 0, "a", NULL, NULL, NULL));
    ck_assert_ptr_null(sn_audit_record(1, "abc", 0, "a", "x", NULL, NULL));
    ck_assert_ptr_null(sn_audit_record(1, NULL, 0, "a", "x", NULL, NULL));
    json_t *s = json_string("not an object");
    ck_assert_ptr_null(sn_audit_record(1, SN_AUDIT_GENESIS, 0, "a", "x", NULL, s));
    json_decref(s);
}
END_TEST

START_TEST(chain_of_100_verifies)
{
    build_chain();
    char why[256];
    ck_assert_int_eq(verify(chain + 1, N, why, sizeof(why)), N);
    /* Each link names its predecessor, and the hashes are all different. */
    for (int i = 2; i <= N; i++) {
        ck_assert_str_eq(json_string_value(json_object_get(chain[i], "prev_hash")),
                         hash_of(chain[i - 1]));
        ck_assert_str_ne(hash_of(chain[i]), hash_of(chain[i - 1]));
    }
    /* Deterministic: building the same chain again gives the same head. */
    char head[65];
    snprintf(head, sizeof(head), "%s", hash_of(chain[N]));
    free_chain();
    build_chain();
    ck_assert_str_eq(hash_of(chain[N]), head);
    free_chain();
}
END_TEST

START_TEST(altered_detail_is_caught)
{
    build_chain();
    char why[256];
    json_object_set_new(json_object_get(chain[50], "detail"), "target",
                        json_string("deployment/kube-system/coredns"));
    ck_assert_int_eq(verify(chain + 1, N, why, sizeof(why)), 49);
    ck_assert_str_eq(why, "record 50: hash mismatch (record altered)");
    free_chain();

    /* Any field: the actor, the time, a nested value, an added key. */
    static const char *const fields[] = {"actor", "ts", "nested", "extra"};
    for (size_t f = 0; f < 4; f++) {
        build_chain();
        json_t *rec = chain[12];
        if (f == 2) /* record 12 has nested.ok = false */
            json_object_set_new(json_object_get(json_object_get(rec, "detail"), "nested"), "ok",
                                json_true());
        else
            json_object_set_new(rec, fields[f], json_string("mallory"));
        ck_assert_int_eq(verify(chain + 1, N, why, sizeof(why)), 11);
        ck_assert_msg(strcmp(why, "record 12: hash mismatch (record altered)") == 0, "%s: %s",
                      fields[f], why);
        free_chain();
    }
}
END_TEST

START_TEST(removed_record_is_caught)
{
    build_chain();
    char why[256];
    json_t *recs[N];
    size_t n = 0;
    for (int i = 1; i <= N; i++)
        if (i != 11)
            recs[n++] = chain[i];
    ck_assert_int_eq(verify(recs, n, why, sizeof(why)), 10);
    ck_assert_str_eq(why, "record 12: seq gap after 10 (record removed)");

    /* Removed and the later records renumbered to hide the gap: the link gives it away. */
    for (int i = 12; i <= N; i++)
        json_object_set_new(chain[i], "seq", json_integer(i - 1));
    ck_assert_int_eq(verify(recs, n, why, sizeof(why)), 10);
    ck_assert_str_eq(why, "record 11: prev_hash does not match record 10 (record removed or "
                          "reordered)");

    /* The last record removed cannot be seen from the chain alone, but the first can. */
    free_chain();
    build_chain();
    ck_assert_int_eq(verify(chain + 2, N - 1, why, sizeof(why)), 0);
    ck_assert_str_eq(why, "record 2: seq gap after 0 (record removed)");
    free_chain();
}
END_TEST

START_TEST(reordered_records_are_caught)
{
    build_chain();
    char why[256];
    json_t *recs[N];
    for (int i = 0; i < N; i++)
        recs[i] = chain[i + 1];
    /* Swap the contents of seq 30 and 31, keeping the seq column in order (a store sorts by
     * seq, so that is what reordering looks like). */
    recs[29] = chain[31];
    recs[30] = chain[30];
    json_object_set_new(chain[31], "seq", json_integer(30));
    json_object_set_new(chain[30], "seq", json_integer(31));
    ck_assert_int_eq(verify(recs, N, why, sizeof(why)), 29);
    ck_assert_str_eq(why, "record 30: prev_hash does not match record 29 (record removed or "
                          "reordered)");
    free_chain();

    /* Swapped without renumbering: the sequence goes backwards. */
    build_chain();
    for (int i = 0; i < N; i++)
        recs[i] = chain[i + 1];
    recs[29] = chain[31];
    recs[30] = chain[30];
    ck_assert_int_eq(verify(recs, N, why, sizeof(why)), 29);
    ck_assert_str_eq(why, "record 31: seq gap after 29 (record removed)");
    /* Checked on its own, the step back is named as such. */
    ck_assert_int_eq(sn_audit_check(chain[30], hash_of(chain[31]), 31, why, sizeof(why)),
                     SN_EINVAL);
    ck_assert_str_eq(why, "record 30: out of order after 31 (records reordered)");
    free_chain();
}
END_TEST

START_TEST(changed_hash_is_caught)
{
    build_chain();
    char why[256];
    char forged[65];
    snprintf(forged, sizeof(forged), "%s", hash_of(chain[70]));
    forged[0] = forged[0] == 'a' ? 'b' : 'a';
    json_object_set_new(chain[70], "hash", json_string(forged));
    ck_assert_int_eq(verify(chain + 1, N, why, sizeof(why)), 69);
    ck_assert_str_eq(why, "record 70: hash mismatch (record altered)");

    /* Rewriting the next record's prev_hash to the forged value does not help: 70 still fails,
     * and 71 on its own fails too. */
    json_object_set_new(chain[71], "prev_hash", json_string(forged));
    ck_assert_int_eq(verify(chain + 1, N, why, sizeof(why)), 69);
    ck_assert_int_eq(sn_audit_check(chain[71], forged, 70, why, sizeof(why)), SN_EINVAL);
    ck_assert_str_eq(why, "record 71: hash mismatch (record altered)");

    /* A missing hash or a record that is not one. */
    json_object_del(chain[72], "hash");
    ck_assert_int_eq(sn_audit_check(chain[72], hash_of(chain[71]), 71, why, sizeof(why)),
                     SN_EINVAL);
    ck_assert_str_eq(why, "record 72: missing hash fields (record altered)");
    json_t *junk = json_pack("{s:s}", "seq", "73");
    ck_assert_int_eq(sn_audit_check(junk, hash_of(chain[72]), 72, why, sizeof(why)), SN_EINVAL);
    ck_assert_str_eq(why, "record after 72: no seq (not an audit record)");
    json_decref(junk);
    free_chain();
}
END_TEST

START_TEST(anchor_after_retention)
{
    /* Retention drops the head of the chain; verification starts from the first kept record's
     * prev_hash and seq - 1, and the rest still checks. */
    build_chain();
    char why[256];
    const char *prev = json_string_value(json_object_get(chain[41], "prev_hash"));
    int64_t seq = 40;
    for (int i = 41; i <= N; i++) {
        ck_assert_int_eq(sn_audit_check(chain[i], prev, seq, why, sizeof(why)), 0);
        prev = hash_of(chain[i]);
        seq = i;
    }
    free_chain();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("audit");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, record_shape);
    tcase_add_test(tc, record_defaults_and_refusals);
    tcase_add_test(tc, chain_of_100_verifies);
    tcase_add_test(tc, altered_detail_is_caught);
    tcase_add_test(tc, removed_record_is_caught);
    tcase_add_test(tc, reordered_records_are_caught);
    tcase_add_test(tc, changed_hash_is_caught);
    tcase_add_test(tc, anchor_after_retention);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
