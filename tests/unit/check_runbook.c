/** @file check_runbook.c Tests of the runbook analyzer, loaded as a .so through the harness. */
#include "harness.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

typedef struct rb_fix {
    sn_harness_t *h;
    const sn_analyzer_ops_t *ops;
    void *self;
} rb_fix_t;

static void rb_open(rb_fix_t *f, const char *settings)
{
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    f->self = sn_harness_create(f->h, SN_ANALYZER, "runbook", settings, &p, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    f->ops = p->ops;
    ck_assert_ptr_nonnull(f->ops->plan);
    ck_assert_ptr_null(f->ops->analyze); /* plan only */
}

/* Two hypotheses; the top one (confidence 0.8) is listed second on purpose and carries the
 * labels, the optional version and namespace. */
static json_t *incident_v(const char *service, const char *cause, const char *version,
                          const char *ns)
{
    json_t *labels = json_pack("{s:s}", "service", service);
    if (ns)
        json_object_set_new(labels, "namespace", json_string(ns));
    json_t *top = json_pack("{s:s, s:f, s:s, s:[], s:o}", "service", service, "confidence", 0.8,
                            "cause", cause, "evidence", "labels", labels);
    if (version)
        json_object_set_new(top, "version", json_string(version));
    return json_pack("{s:[{s:s, s:f, s:s, s:[]}, o]}", "hypotheses", "service", "frontend",
                     "confidence", 0.3, "cause", "error anomaly on frontend", "evidence", top);
}

static json_t *rb_run(rb_fix_t *f, json_t *inc, sn_result_t *r)
{
    memset(r, 0, sizeof(*r));
    f->ops->plan(f->self, inc, sn_result_done, r);
    ck_assert_msg(r->done, "plan must complete before it returns");
    ck_assert_int_eq(r->status, 0);
    json_t *plan = json_object_get(r->result, "plan");
    ck_assert(json_is_array(plan));
    return plan;
}

static const char *field(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

START_TEST(templates_fill_from_top_hypothesis)
{
    rb_fix_t f;
    rb_open(&f, "rule = cause~memory -> k8s:scale_deployment deployment/{namespace}/{service} "
                "replicas=6\n"
                "rule = cause~DEPLOY -> k8s:rollout_undo deployment/{namespace}/{service} "
                "to={version} wait=true note=after_{service}\n"
                "rule = * -> mock:noop pod/{namespace}/{service}\n");
    json_t *inc = incident_v("checkout", "deploy of checkout v2.3.1", "v2.3.1", "shop");
    sn_result_t r;
    json_t *plan = rb_run(&f, inc, &r);
    ck_assert_uint_eq(json_array_size(plan), 1); /* first match wins */
    json_t *a = json_array_get(plan, 0);
    ck_assert_str_eq(field(a, "executor"), "k8s");
    ck_assert_str_eq(field(a, "verb"), "rollout_undo");
    ck_assert_str_eq(field(a, "target"), "deployment/shop/checkout");
    json_t *params = json_object_get(a, "params");
    ck_assert_str_eq(field(params, "to"), "v2.3.1");
    ck_assert(json_is_true(json_object_get(params, "wait")));
    ck_assert_str_eq(field(params, "note"), "after_checkout");
    ck_assert_ptr_nonnull(strstr(field(a, "reason"), "rule 2"));
    sn_result_clear(&r);
    json_decref(inc);

    /* no namespace label: the parameter's default; integer values become numbers */
    inc = incident_v("payments", "process_resident_memory_bytes anomaly on payments", NULL, NULL);
    plan = rb_run(&f, inc, &r);
    ck_assert_uint_eq(json_array_size(plan), 1);
    a = json_array_get(plan, 0);
    ck_assert_str_eq(field(a, "target"), "deployment/default/payments");
    ck_assert(json_is_integer(json_object_get(json_object_get(a, "params"), "replicas")));
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(a, "params"), "replicas")),
                     6);
    sn_result_clear(&r);
    json_decref(inc);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(namespace_parameter_and_all_matches)
{
    rb_fix_t f;
    rb_open(&f, "namespace = shop\n"
                "all_matches = true\n"
                "rule = service=checkout -> mock:restart_pod pod/{namespace}/{service}\n"
                "rule = cause~deploy -> mock:rollout_restart deployment/{namespace}/{service}\n"
                "rule = cause~memory -> mock:scale deployment/{namespace}/{service}\n");
    json_t *inc = incident_v("checkout", "deploy of checkout", NULL, NULL);
    sn_result_t r;
    json_t *plan = rb_run(&f, inc, &r);
    ck_assert_uint_eq(json_array_size(plan), 2);
    ck_assert_str_eq(field(json_array_get(plan, 0), "target"), "pod/shop/checkout");
    ck_assert_str_eq(field(json_array_get(plan, 1), "verb"), "rollout_restart");
    ck_assert_str_eq(field(json_array_get(plan, 1), "target"), "deployment/shop/checkout");
    sn_result_clear(&r);
    json_decref(inc);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(no_match_gives_empty_plan_with_reason)
{
    rb_fix_t f;
    rb_open(&f, "rule = cause~memory -> mock:scale deployment/shop/{service}\n");
    json_t *inc = incident_v("checkout", "deploy of checkout", NULL, NULL);
    sn_result_t r;
    json_t *plan = rb_run(&f, inc, &r);
    ck_assert_uint_eq(json_array_size(plan), 0);
    ck_assert_str_eq(field(r.result, "reason"), "no runbook rule matched");
    sn_result_clear(&r);
    json_decref(inc);

    /* an incident without hypotheses plans nothing either */
    inc = json_object();
    plan = rb_run(&f, inc, &r);
    ck_assert_uint_eq(json_array_size(plan), 0);
    ck_assert_str_eq(field(r.result, "reason"), "no runbook rule matched");
    sn_result_clear(&r);
    json_decref(inc);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(unfillable_or_unsafe_placeholders_skip_the_rule)
{
    rb_fix_t f;
    rb_open(&f, "rule = * -> mock:rollback deployment/shop/{service} to={version}\n"
                "rule = * -> mock:restart_pod pod/shop/{service}\n");
    /* no version known: rule 1 is skipped, rule 2 plans */
    json_t *inc = incident_v("cart", "error anomaly on cart", NULL, NULL);
    sn_result_t r;
    json_t *plan = rb_run(&f, inc, &r);
    ck_assert_uint_eq(json_array_size(plan), 1);
    ck_assert_str_eq(field(json_array_get(plan, 0), "verb"), "restart_pod");
    sn_result_clear(&r);
    json_decref(inc);

    /* a service label that would leave its path segment is never put into a target */
    inc = incident_v("../kube-system/coredns", "error anomaly", "v1", NULL);
    plan = rb_run(&f, inc, &r);
    ck_assert_uint_eq(json_array_size(plan), 0);
    ck_assert_str_eq(field(r.result, "reason"), "no runbook rule matched");
    ck_assert_ptr_nonnull(strstr(field(r.result, "detail"), "{service}"));
    sn_result_clear(&r);
    json_decref(inc);
    sn_harness_free(f.h);
}
END_TEST

START_TEST(bad_rules_fail_create_naming_the_rule)
{
    static const struct {
        const char *rule, *phrase;
    } cases[] = {
        {"cause~x mock:restart pod/a", "missing '->'"},
        {" -> mock:restart pod/a", "no matcher"},
        {"severity>3 -> mock:restart pod/a", "matcher 'severity>3'"},
        {"* -> mock pod/a", "EXECUTOR:VERB"},
        {"* -> mock:restart", "no target"},
        {"* -> mock:restart pod/{service", "unclosed '{'"},
        {"* -> mock:restart pod/{}", "empty placeholder"},
        {"* -> mock:restart pod/a replicas", "'replicas' is not key=value"},
        {"* -> mock:restart pod/a n=1 n=2", "duplicate parameter 'n'"},
        {"* ->", "nothing after '->'"},
    };
    sn_harness_t *h = sn_harness_new();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char settings[256];
        snprintf(settings, sizeof(settings),
                 "rule = * -> mock:restart_pod pod/shop/{service}\nrule = %s\n", cases[i].rule);
        sn_err_t err = {{0}};
        const sn_plugin_t *p = NULL;
        void *self = sn_harness_create(h, SN_ANALYZER, "runbook", settings, &p, &err);
        ck_assert_msg(self == NULL, "'%s' was accepted", cases[i].rule);
        ck_assert_msg(strstr(err.msg, "rule 2: ") && strstr(err.msg, cases[i].phrase),
                      "'%s' gave '%s'", cases[i].rule, err.msg);
    }
    sn_harness_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("runbook");
    TCase *tc = tcase_create("analyzer");
    tcase_add_test(tc, templates_fill_from_top_hypothesis);
    tcase_add_test(tc, namespace_parameter_and_all_matches);
    tcase_add_test(tc, no_match_gives_empty_plan_with_reason);
    tcase_add_test(tc, unfillable_or_unsafe_placeholders_skip_the_rule);
    tcase_add_test(tc, bad_rules_fail_create_naming_the_rule);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
