/** @file check_config.c INI parsing, parameter validation and graph construction. */
#include "sentinel-internal.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const sn_param_t params[] = {
    {"window", SN_T_INT, "300", 0, ""},
    {"timeout", SN_T_DURATION, "5", 0, ""},
    {"limit", SN_T_SIZE, "1m", 0, ""},
    {"token", SN_T_STRING, NULL, SN_PARAM_SECRET, ""},
    {"rule", SN_T_STRING, NULL, SN_PARAM_MULTI, ""},
    {"name", SN_T_STRING, NULL, SN_PARAM_REQUIRED, ""},
    {NULL, 0, NULL, 0, NULL},
};

static sn_cfg_t *build(const char *text, sn_diag_t *d)
{
    sn_conf_t *c = sn_conf_load_string("t.conf", text, d);
    if (!c)
        return NULL;
    sn_cfg_t *cfg = sn_cfg_build(c, &c->sections[0], params, NULL, d);
    sn_conf_free(c);
    return cfg;
}

START_TEST(values_defaults_and_units)
{
    sn_diag_t d;
    sn_diag_init(&d);
    sn_cfg_t *c = build("[detector:x]\nname = a   # comment\ntimeout = 250ms\nrule = a\n"
                        "rule = b\nurl_like = x\n",
                        &d);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(d.n, 1);
    ck_assert_str_eq(d.msgs[0], "t.conf:6: unknown key 'url_like' in [detector:x]");
    sn_diag_free(&d);
    sn_diag_init(&d);
    c = build("[detector:x]\nname = a   # comment\ntimeout = 250ms\nrule = a\nrule = b\n", &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(sn_cfg_str(c, "name"), "a");
    ck_assert_int_eq(sn_cfg_int(c, "timeout"), 250);
    ck_assert_int_eq(sn_cfg_int(c, "window"), 300);
    ck_assert_int_eq(sn_cfg_int(c, "limit"), 1 << 20);
    const char *const *rules = sn_cfg_list(c, "rule");
    ck_assert_str_eq(rules[0], "a");
    ck_assert_str_eq(rules[1], "b");
    ck_assert_ptr_null(rules[2]);
    sn_cfg_free(c);
    sn_diag_free(&d);
}
END_TEST

START_TEST(errors_name_lines_and_hide_secrets)
{
    sn_diag_t d;
    sn_diag_init(&d);
    setenv("SN_TEST_SECRET", "hunter2-not-an-int", 1);
    sn_cfg_t *c = build("[detector:x]\nwindw = 3\nwindow = abc\nwindow = 4\n", &d);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(d.n, 3);
    ck_assert_str_eq(d.msgs[0], "t.conf:2: unknown key 'windw' in [detector:x] (did you mean "
                                "'window'?)");
    ck_assert_str_eq(d.msgs[1], "t.conf:3: key 'window': 'abc' is not an integer");
    ck_assert_str_eq(d.msgs[2], "t.conf:1: [detector:x]: missing required key 'name'");
    sn_diag_free(&d);
    sn_diag_init(&d);
    c = build("[detector:x]\nname = a\ntoken = ${env:SN_TEST_SECRET}\nname = b\n", &d);
    ck_assert_ptr_null(c);
    ck_assert_str_eq(d.msgs[0], "t.conf:4: key 'name' is duplicate (first on line 2)");
    for (size_t i = 0; i < d.n; i++)
        ck_assert(strstr(d.msgs[i], "hunter2") == NULL);
    sn_diag_free(&d);
}
END_TEST

START_TEST(expand_env_and_file)
{
    char why[128];
    setenv("SN_TEST_X", "val", 1);
    char *v = sn_expand("a-${env:SN_TEST_X}-b", why, sizeof(why));
    ck_assert_str_eq(v, "a-val-b");
    free(v);
    ck_assert_ptr_null(sn_expand("${env:SN_TEST_UNSET_XYZ}", why, sizeof(why)));
    ck_assert(strstr(why, "not set") != NULL);
    char path[] = "/tmp/sn-test-secret-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(write(fd, "s3cret\n", 7) == 7);
    close(fd);
    char ref[128];
    snprintf(ref, sizeof(ref), "${file:%s}", path);
    v = sn_expand(ref, why, sizeof(why));
    ck_assert_str_eq(v, "s3cret");
    free(v);
    unlink(path);
}
END_TEST

START_TEST(sections_and_syntax)
{
    sn_diag_t d;
    sn_diag_init(&d);
    ck_assert_ptr_null(sn_conf_load_string("t.conf", "[sentinel]\nx = 1\n[sentinel]\n", &d));
    ck_assert_str_eq(d.msgs[0], "t.conf:3: section [sentinel] is duplicate (first on line 1)");
    sn_diag_free(&d);
    sn_diag_init(&d);
    ck_assert_ptr_null(sn_conf_load_string("t.conf", "[detector]\nplugin = z\n", &d));
    ck_assert_str_eq(d.msgs[0], "t.conf:1: section [detector] needs a name: [detector:NAME]");
    sn_diag_free(&d);
    sn_diag_init(&d);
    ck_assert_ptr_null(sn_conf_load_string("t.conf", "[sentinel]\nno equals sign\n", &d));
    ck_assert_str_eq(d.msgs[0], "t.conf:2: syntax error: expected [section] or key = value");
    sn_diag_free(&d);
}
END_TEST

static int lookup(void *arg, const char *name, sn_kind_t *kind)
{
    (void)arg;
    static const struct {
        const char *n;
        sn_kind_t k;
    } t[] = {{"in", SN_INPUT}, {"det", SN_DETECTOR}, {"rca", SN_ANALYZER}, {"fix", SN_EXECUTOR}};
    for (size_t i = 0; i < 4; i++)
        if (strcmp(t[i].n, name) == 0) {
            *kind = t[i].k;
            return 0;
        }
    return -1;
}

START_TEST(graph_fan_out_conditions_and_bounds)
{
    sn_diag_t d;
    sn_diag_init(&d);
    sn_conf_t *c = sn_conf_load_string(
        "g.conf",
        "[pipeline]\nedge = in -> det -> correlate -> rca -> approve -> fix -> verify\n"
        "edge = verify -> rca [on=failed max=3]\nedge = verify -> resolve [on=ok]\n"
        "edge = approve -> escalate [on=rejected]\n",
        &d);
    ck_assert_ptr_nonnull(c);
    sn_graph_t *g = sn_graph_build(c, &c->sections[0], lookup, NULL, &d);
    ck_assert_ptr_nonnull(g);
    int verify = sn_graph_node(g, "verify"), e[8];
    size_t n = sn_graph_next(g, verify, "failed", e, 8);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(g->edges[e[0]].max, 3);
    ck_assert_str_eq(g->nodes[g->edges[e[0]].to].name, "rca");
    n = sn_graph_next(g, verify, "ok", e, 8);
    ck_assert_str_eq(g->nodes[g->edges[e[0]].to].name, "resolve");
    sn_graph_free(g);
    sn_conf_free(c);
    c = sn_conf_load_string("g.conf",
                            "[pipeline]\nedge = in -> det -> correlate -> rca -> rca2\n"
                            "edge = in -> fix\nedge = rca -> approve [on=sucess]\n",
                            &d);
    g = sn_graph_build(c, &c->sections[0], lookup, NULL, &d);
    ck_assert_ptr_null(g);
    ck_assert_int_eq(d.n, 3);
    ck_assert_str_eq(d.msgs[0], "g.conf:2: unknown node 'rca2' (did you mean 'rca'?)");
    ck_assert_str_eq(d.msgs[1], "g.conf:4: unknown outcome 'on=sucess' (ok, failed, approved, "
                                "rejected, escalated, timeout)");
    ck_assert_str_eq(d.msgs[2], "g.conf:3: edge in -> fix: an input cannot lead to an executor");
    sn_conf_free(c);
    sn_diag_free(&d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, values_defaults_and_units);
    tcase_add_test(tc, errors_name_lines_and_hide_secrets);
    tcase_add_test(tc, expand_env_and_file);
    tcase_add_test(tc, sections_and_syntax);
    tcase_add_test(tc, graph_fan_out_conditions_and_bounds);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
