/**
 * @file check_mock_executor.c
 * Tests of the mock executor loaded as a .so through the harness: the verbs' effects on the
 * in-memory world, snapshot/rollback, dry runs, idempotency across a re-created instance sharing
 * a journal, and the failure injection knobs.
 */
#include "harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MOCK_LABELS "instance=\"executor:mock\""

typedef struct mk_fix {
    sn_harness_t *h;
    const sn_executor_ops_t *ops;
    void *self;
} mk_fix_t;

static void mk_open(mk_fix_t *f, const char *settings)
{
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    f->self = sn_harness_create(f->h, SN_EXECUTOR, "mock", settings, &p, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    f->ops = p->ops;
    ck_assert_ptr_nonnull(f->ops->execute);
}

static sn_action_t act(const char *verb, const char *target, const char *key, const json_t *params,
                       int dry_run)
{
    sn_action_t a = {
        .struct_size = sizeof(sn_action_t),
        .incident = "0190a0b0-0000-7000-8000-000000000001",
        .verb = verb,
        .target = target,
        .params = params,
        .idempotency_key = key,
        .dry_run = dry_run,
    };
    return a;
}

/* Every call with latency_ms = 0 completes before it returns. */
static int do_execute(mk_fix_t *f, const sn_action_t *a, sn_result_t *r)
{
    memset(r, 0, sizeof(*r));
    f->ops->execute(f->self, a, sn_result_done, r);
    ck_assert_msg(r->done, "execute must complete synchronously without latency");
    return r->status;
}

static int do_verify(mk_fix_t *f, const sn_action_t *a)
{
    sn_result_t r = {0};
    f->ops->verify(f->self, a, sn_result_done, &r);
    ck_assert(r.done);
    int st = r.status;
    sn_result_clear(&r);
    return st;
}

/* Ownership: caller decrefs. */
static json_t *do_snapshot(mk_fix_t *f, const sn_action_t *a)
{
    sn_result_t r = {0};
    f->ops->snapshot(f->self, a, sn_result_done, &r);
    ck_assert(r.done);
    ck_assert_int_eq(r.status, 0);
    json_t *snap = json_incref(r.result);
    sn_result_clear(&r);
    return snap;
}

static json_int_t ival(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    ck_assert_msg(json_is_integer(v), "%s is not an integer", k);
    return json_integer_value(v);
}

static double metric(mk_fix_t *f, const char *name)
{
    return sn_metric_value(sn_harness_runtime(f->h), name, MOCK_LABELS);
}

START_TEST(execute_verify_snapshot_rollback)
{
    mk_fix_t f;
    mk_open(&f, "default_replicas = 4\n");
    const char *t = "deployment/shop/checkout";
    sn_action_t a = act("rollout_restart", t, "inc1:1:1", NULL, 0);

    /* A target starts unhealthy: it is what the incident is about. */
    ck_assert_int_eq(do_verify(&f, &a), SN_EIO);

    sn_result_t r = {0};
    f.ops->assess(f.self, &a, sn_result_done, &r);
    ck_assert(r.done);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(json_string_value(json_object_get(r.result, "risk")), "low");
    ck_assert_int_eq(ival(r.result, "downtime_s"), 30);
    ck_assert_int_eq(ival(r.result, "blast_radius"), 4);
    sn_result_clear(&r);

    json_t *snap = do_snapshot(&f, &a);
    ck_assert_int_eq(ival(snap, "replicas"), 4);
    ck_assert_str_eq(json_string_value(json_object_get(snap, "version")), "v1");
    ck_assert(json_is_false(json_object_get(snap, "healthy")));
    ck_assert_str_eq(json_string_value(json_object_get(snap, "target")), t);

    ck_assert_int_eq(do_execute(&f, &a, &r), 0);
    json_t *after = json_object_get(r.result, "after");
    ck_assert(json_is_true(json_object_get(after, "healthy")));
    ck_assert_int_eq(ival(after, "generation"), 1);
    sn_result_clear(&r);
    ck_assert_int_eq(do_verify(&f, &a), 0);

    /* Rollback restores the snapshot: unhealthy again. */
    f.ops->rollback(f.self, &a, snap, sn_result_done, &r);
    ck_assert(r.done);
    ck_assert_int_eq(r.status, 0);
    sn_result_clear(&r);
    ck_assert_int_eq(do_verify(&f, &a), SN_EIO);
    json_t *now = do_snapshot(&f, &a);
    ck_assert(json_is_false(json_object_get(now, "healthy")));
    ck_assert_int_eq(ival(now, "replicas"), 4);
    json_decref(now);

    /* A snapshot of another shape is refused. */
    json_t *junk = json_pack("{s:s}", "replicas", "many");
    f.ops->rollback(f.self, &a, junk, sn_result_done, &r);
    ck_assert_int_eq(r.status, SN_EINVAL);
    sn_result_clear(&r);
    json_decref(junk);
    json_decref(snap);

    /* scale_deployment sets replicas, which is the next blast radius. */
    json_t *params = json_pack("{s:i}", "replicas", 7);
    sn_action_t s = act("scale_deployment", t, "inc1:2:1", params, 0);
    ck_assert_int_eq(do_execute(&f, &s, &r), 0);
    ck_assert_int_eq(ival(json_object_get(r.result, "after"), "replicas"), 7);
    ck_assert_int_eq(ival(json_object_get(r.result, "before"), "replicas"), 4);
    sn_result_clear(&r);
    f.ops->assess(f.self, &s, sn_result_done, &r);
    ck_assert_str_eq(json_string_value(json_object_get(r.result, "risk")), "medium");
    ck_assert_int_eq(ival(r.result, "blast_radius"), 7);
    sn_result_clear(&r);
    json_decref(params);

    /* rollback_deploy with an explicit version. */
    params = json_pack("{s:s}", "to", "v0.9");
    sn_action_t rb = act("rollback_deploy", t, "inc1:3:1", params, 0);
    ck_assert_int_eq(do_execute(&f, &rb, &r), 0);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(r.result, "after"), "version")), "v0.9");
    sn_result_clear(&r);
    json_decref(params);

    /* Bad parameters and unknown verbs are refused without a mutation. */
    params = json_pack("{s:s}", "replicas", "lots");
    sn_action_t bad = act("scale_deployment", t, "inc1:4:1", params, 0);
    ck_assert_int_eq(do_execute(&f, &bad, &r), SN_EINVAL);
    sn_result_clear(&r);
    json_decref(params);
    sn_action_t unknown = act("format_disk", t, "inc1:5:1", NULL, 0);
    ck_assert_int_eq(do_execute(&f, &unknown, &r), SN_ENOTSUP);
    sn_result_clear(&r);
    ck_assert(metric(&f, "executor_mock_mutations_total") == 3.0);

    const sn_verb_t *v = f.ops->verbs;
    int nverbs = 0;
    for (; v->name; v++, nverbs++)
        if (strcmp(v->name, "reboot_instance") == 0) {
            ck_assert_int_eq(v->risk, SN_RISK_HIGH);
            ck_assert_int_eq(v->downtime_s, 120);
        }
    ck_assert_int_eq(nverbs, 5);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(dry_run_mutates_nothing)
{
    mk_fix_t f;
    mk_open(&f, "");
    const char *t = "deployment/shop/cart";
    json_t *params = json_pack("{s:i}", "replicas", 9);
    sn_action_t dry = act("scale_deployment", t, "inc2:1:1", params, 1);
    sn_result_t r;
    ck_assert_int_eq(do_execute(&f, &dry, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "dry_run")));
    const char *would = json_string_value(json_object_get(r.result, "would"));
    ck_assert_ptr_nonnull(would);
    ck_assert_msg(strstr(would, "replicas 3 -> 9") != NULL, "would: %s", would);
    sn_result_clear(&r);

    json_t *before = do_snapshot(&f, &dry);
    ck_assert_int_eq(ival(before, "generation"), 0);
    ck_assert_int_eq(ival(before, "replicas"), 3);
    /* Again, now that the target exists: still nothing changes. */
    ck_assert_int_eq(do_execute(&f, &dry, &r), 0);
    sn_result_clear(&r);
    json_t *after = do_snapshot(&f, &dry);
    ck_assert(json_equal(before, after));
    ck_assert_int_eq(do_verify(&f, &dry), SN_EIO);
    ck_assert(metric(&f, "executor_mock_mutations_total") == 0.0);
    ck_assert(metric(&f, "executor_mock_dry_runs_total") == 2.0);

    /* The dry run did not consume the key: the real execute runs. */
    sn_action_t real = act("scale_deployment", t, "inc2:1:1", params, 0);
    ck_assert_int_eq(do_execute(&f, &real, &r), 0);
    ck_assert_ptr_null(json_object_get(r.result, "deduplicated"));
    ck_assert_int_eq(ival(json_object_get(r.result, "after"), "replicas"), 9);
    sn_result_clear(&r);
    json_decref(before);
    json_decref(after);
    json_decref(params);
    sn_harness_free(f.h);
}
END_TEST

static char g_dir[64];

static void tmpdir_setup(void)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/sn-mock-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void tmpdir_teardown(void)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/journal.jsonl", g_dir);
    unlink(p);
    rmdir(g_dir);
}

START_TEST(idempotency_survives_recreate)
{
    char settings[256];
    snprintf(settings, sizeof(settings), "journal = %s/journal.jsonl\n", g_dir);
    const char *t = "pod/shop/payments-7f9c";
    sn_action_t a = act("restart_pod", t, "inc3:1:1", NULL, 0);
    sn_result_t r;

    mk_fix_t f;
    mk_open(&f, settings);
    ck_assert_int_eq(do_execute(&f, &a, &r), 0);
    json_t *first = json_incref(r.result);
    sn_result_clear(&r);
    ck_assert_int_eq(do_execute(&f, &a, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "deduplicated")));
    ck_assert(json_equal(json_object_get(r.result, "after"), json_object_get(first, "after")));
    sn_result_clear(&r);
    json_t *snap = do_snapshot(&f, &a);
    ck_assert_int_eq(ival(snap, "generation"), 1);
    json_decref(snap);
    ck_assert(metric(&f, "executor_mock_mutations_total") == 1.0);
    ck_assert(metric(&f, "executor_mock_deduplicated_total") == 1.0);
    sn_harness_free(f.h); /* stop drains the journal */

    /* The journal holds every call, one JSON object a line. */
    char path[128];
    snprintf(path, sizeof(path), "%s/journal.jsonl", g_dir);
    FILE *jf = fopen(path, "r");
    ck_assert_ptr_nonnull(jf);
    char line[4096];
    int n = 0, executes = 0, snapshots = 0;
    while (fgets(line, sizeof(line), jf)) {
        json_t *rec = json_loads(line, 0, NULL);
        ck_assert_msg(rec != NULL, "journal line %d is not JSON", n + 1);
        const char *op = json_string_value(json_object_get(rec, "op"));
        ck_assert_ptr_nonnull(op);
        if (strcmp(op, "execute") == 0) {
            executes++;
            ck_assert_str_eq(json_string_value(json_object_get(rec, "key")), "inc3:1:1");
            ck_assert_str_eq(json_string_value(json_object_get(rec, "verb")), "restart_pod");
            ck_assert(json_is_false(json_object_get(rec, "dry_run")));
            /* The first execute mutated; the second was answered from the key. */
            int first_one = executes == 1;
            ck_assert(json_is_boolean(json_object_get(rec, "mutated")));
            ck_assert_int_eq(json_is_true(json_object_get(rec, "mutated")), first_one);
            ck_assert_int_eq(json_is_true(json_object_get(rec, "deduplicated")), !first_one);
        }
        snapshots += strcmp(op, "snapshot") == 0;
        json_decref(rec);
        n++;
    }
    fclose(jf);
    ck_assert_int_eq(executes, 2);
    ck_assert_int_eq(snapshots, 1);
    ck_assert_int_eq(n, 3);

    /* A new instance over the same journal remembers the key and the world. */
    mk_open(&f, settings);
    ck_assert_int_eq(do_execute(&f, &a, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "deduplicated")));
    ck_assert(json_equal(json_object_get(r.result, "after"), json_object_get(first, "after")));
    sn_result_clear(&r);
    ck_assert(metric(&f, "executor_mock_mutations_total") == 0.0);
    snap = do_snapshot(&f, &a);
    ck_assert_int_eq(ival(snap, "generation"), 1);
    ck_assert(json_is_true(json_object_get(snap, "healthy")));
    json_decref(snap);
    /* A new key is a new mutation. */
    sn_action_t b = act("restart_pod", t, "inc3:1:2", NULL, 0);
    ck_assert_int_eq(do_execute(&f, &b, &r), 0);
    ck_assert_ptr_null(json_object_get(r.result, "deduplicated"));
    ck_assert_int_eq(ival(json_object_get(r.result, "after"), "generation"), 2);
    sn_result_clear(&r);
    json_decref(first);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(fail_verbs_fail_without_mutation)
{
    mk_fix_t f;
    mk_open(&f, "fail_verbs = restart_pod, reboot_instance\n");
    const char *t = "pod/shop/search-1";
    sn_action_t a = act("restart_pod", t, "inc4:1:1", NULL, 0);
    sn_result_t r;
    ck_assert_int_eq(do_execute(&f, &a, &r), SN_EIO);
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(r.result, "error")), "fail_verbs"));
    sn_result_clear(&r);
    /* A failed key is not remembered: the retry runs (and fails) again. */
    ck_assert_int_eq(do_execute(&f, &a, &r), SN_EIO);
    ck_assert_ptr_null(json_object_get(r.result, "deduplicated"));
    sn_result_clear(&r);
    json_t *snap = do_snapshot(&f, &a);
    ck_assert_int_eq(ival(snap, "generation"), 0);
    json_decref(snap);
    sn_action_t ok = act("rollout_restart", t, "inc4:2:1", NULL, 0);
    ck_assert_int_eq(do_execute(&f, &ok, &r), 0);
    sn_result_clear(&r);
    ck_assert(metric(&f, "executor_mock_failures_total") == 2.0);
    ck_assert(metric(&f, "executor_mock_mutations_total") == 1.0);
    sn_harness_free(f.h);

    /* An unknown verb in fail_verbs is a configuration error. */
    sn_harness_t *h = sn_harness_new();
    sn_err_t err = {{0}};
    ck_assert_ptr_null(
        sn_harness_create(h, SN_EXECUTOR, "mock", "fail_verbs = explode\n", NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "explode"));
    sn_harness_free(h);
}
END_TEST

START_TEST(worsen_makes_verify_fail)
{
    mk_fix_t f;
    mk_open(&f, "worsen = true\n");
    const char *t = "deployment/shop/frontend";
    sn_action_t a = act("rollout_restart", t, "inc5:1:1", NULL, 0);
    json_t *snap = do_snapshot(&f, &a);
    sn_result_t r;
    ck_assert_int_eq(do_execute(&f, &a, &r), 0);
    ck_assert(json_is_false(json_object_get(json_object_get(r.result, "after"), "healthy")));
    sn_result_clear(&r);
    f.ops->verify(f.self, &a, sn_result_done, &r);
    ck_assert_int_eq(r.status, SN_EIO);
    ck_assert(json_is_false(json_object_get(r.result, "healthy")));
    sn_result_clear(&r);
    f.ops->rollback(f.self, &a, snap, sn_result_done, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(json_is_true(json_object_get(r.result, "restored")));
    sn_result_clear(&r);
    ck_assert(metric(&f, "executor_mock_rollbacks_total") == 1.0);
    json_decref(snap);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(heal_false_leaves_health_alone)
{
    mk_fix_t f;
    mk_open(&f, "heal = false\n");
    sn_action_t a = act("restart_pod", "pod/shop/x", "inc6:1:1", NULL, 0);
    sn_result_t r;
    ck_assert_int_eq(do_execute(&f, &a, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(do_verify(&f, &a), SN_EIO);
    sn_harness_free(f.h);
}
END_TEST

/* Statuses of 24 executes with distinct keys. */
static void fail_rate_run(const char *settings, int *out)
{
    mk_fix_t f;
    mk_open(&f, settings);
    for (int i = 0; i < 24; i++) {
        char key[32];
        snprintf(key, sizeof(key), "inc7:%d:1", i);
        sn_action_t a = act("restart_pod", "pod/shop/y", key, NULL, 0);
        sn_result_t r;
        out[i] = do_execute(&f, &a, &r);
        sn_result_clear(&r);
    }
    sn_harness_free(f.h);
}

START_TEST(fail_rate_is_deterministic)
{
    int a[24], b[24], c[24];
    fail_rate_run("fail_rate = 0.5\nseed = 7\n", a);
    fail_rate_run("fail_rate = 0.5\nseed = 7\n", b);
    fail_rate_run("fail_rate = 0.5\nseed = 8\n", c);
    int failed = 0, differs = 0;
    for (int i = 0; i < 24; i++) {
        ck_assert_int_eq(a[i], b[i]);
        ck_assert(a[i] == 0 || a[i] == SN_EIO);
        failed += a[i] != 0;
        differs |= a[i] != c[i];
    }
    ck_assert_int_gt(failed, 0);
    ck_assert_int_lt(failed, 24);
    ck_assert(differs);
}
END_TEST

START_TEST(latency_completes_from_a_timer)
{
    mk_fix_t f;
    mk_open(&f, "latency_ms = 80\n");
    sn_action_t a = act("restart_pod", "pod/shop/z", "inc8:1:1", NULL, 0);
    sn_result_t r = {0};
    int64_t t0 = sn_mono_ms();
    f.ops->execute(f.self, &a, sn_result_done, &r);
    ck_assert(!r.done);
    /* The same key while the first is in flight is refused, not run twice. */
    sn_result_t r2 = {0};
    f.ops->execute(f.self, &a, sn_result_done, &r2);
    ck_assert(r2.done);
    ck_assert_int_eq(r2.status, SN_EAGAIN);
    sn_result_clear(&r2);
    ck_assert_int_eq(sn_harness_wait(f.h, &r, 2000), 0);
    ck_assert_int_ge(sn_mono_ms() - t0, 70);
    ck_assert_int_eq(r.status, 0);
    sn_result_clear(&r);
    ck_assert_int_eq(do_verify(&f, &a), 0);
    /* stop waits for a delayed execute still in flight (sn_harness_free drains). */
    sn_action_t b = act("restart_pod", "pod/shop/z", "inc8:2:1", NULL, 0);
    sn_result_t *late = calloc(1, sizeof(*late));
    f.ops->execute(f.self, &b, sn_result_done, late);
    ck_assert(!late->done);
    sn_harness_free(f.h);
    ck_assert(late->done);
    ck_assert_int_eq(late->status, 0);
    sn_result_clear(late);
    free(late);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("mock_executor");
    TCase *tc = tcase_create("executor");
    tcase_add_checked_fixture(tc, tmpdir_setup, tmpdir_teardown);
    tcase_add_test(tc, execute_verify_snapshot_rollback);
    tcase_add_test(tc, dry_run_mutates_nothing);
    tcase_add_test(tc, idempotency_survives_recreate);
    tcase_add_test(tc, fail_verbs_fail_without_mutation);
    tcase_add_test(tc, worsen_makes_verify_fail);
    tcase_add_test(tc, heal_false_leaves_health_alone);
    tcase_add_test(tc, fail_rate_is_deterministic);
    tcase_add_test(tc, latency_completes_from_a_timer);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
