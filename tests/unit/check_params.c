/**
 * @file check_params.c
 * Parameter validation (params.c): unknown keys with "did you mean", duplicates, repeatable
 * keys, required keys, types, defaults, ${env:}/${file:} expansion, typed accessors, and that
 * a secret's value never reaches a message.
 */
#include "sentinel-internal.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET "hunter2-Sup3r-s3cret"

static const sn_param_t params[] = {
    {"window", SN_T_INT, "300", 0, ""},
    {"threshold", SN_T_DOUBLE, "4.5", 0, ""},
    {"timeout", SN_T_DURATION, "5", 0, ""},
    {"limit", SN_T_SIZE, "1m", 0, ""},
    {"enabled", SN_T_BOOL, "yes", 0, ""},
    {"brokers", SN_T_LIST, "a, b ,,c", 0, ""},
    {"token", SN_T_STRING, NULL, SN_PARAM_SECRET, ""},
    {"pin", SN_T_INT, NULL, SN_PARAM_SECRET, ""},
    {"rule", SN_T_STRING, NULL, SN_PARAM_MULTI, ""},
    {"port", SN_T_INT, NULL, SN_PARAM_MULTI, ""},
    {"name", SN_T_STRING, NULL, SN_PARAM_REQUIRED, ""},
    {"url", SN_T_STRING, NULL, 0, ""},
    {NULL, 0, NULL, 0, NULL},
};

/* What the core adds for, e.g., executors; its definitions win over the plugin's. */
static const sn_param_t core[] = {
    {"plugin", SN_T_STRING, NULL, SN_PARAM_REQUIRED, ""},
    {"cooldown", SN_T_DURATION, "10m", 0, ""},
    {"dry_run", SN_T_BOOL, "false", 0, ""},
    {"window", SN_T_DURATION, "1h", 0, ""},
    {NULL, 0, NULL, 0, NULL},
};

static sn_diag_t d;

static void setup(void)
{
    sn_diag_init(&d);
    setenv("SN_TEST_SECRET", SECRET, 1);
    setenv("SN_TEST_HOST", "db.internal", 1);
    unsetenv("SN_TEST_UNSET");
}

static void teardown(void)
{
    /* Whatever a test did, no message may ever carry the secret. */
    for (size_t i = 0; i < d.n; i++)
        ck_assert_msg(strstr(d.msgs[i], "hunter2") == NULL, "secret leaked: %s", d.msgs[i]);
    sn_diag_free(&d);
}

/* Build the first section of @p text against @p p and @p cp. */
static sn_cfg_t *build2(const char *text, const sn_param_t *p, const sn_param_t *cp)
{
    sn_conf_t *c = sn_conf_load_string("t.conf", text, &d);
    ck_assert_msg(c != NULL, "parse failed: %s", d.n ? d.msgs[0] : "?");
    sn_cfg_t *cfg = sn_cfg_build(c, &c->sections[0], p, cp, &d);
    sn_conf_free(c);
    return cfg;
}

static sn_cfg_t *build(const char *text)
{
    return build2(text, params, NULL);
}

START_TEST(values_and_defaults)
{
    sn_cfg_t *c = build("[detector:x]\n"
                        "name = a   # comment\n"
                        "timeout = 250ms\n"
                        "threshold = -2.25\n"
                        "enabled = Off\n");
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(d.n, 0);
    ck_assert_str_eq(sn_cfg_str(c, "name"), "a");
    ck_assert_int_eq(sn_cfg_int(c, "timeout"), 250);
    ck_assert_double_eq(sn_cfg_double(c, "threshold"), -2.25);
    ck_assert_int_eq(sn_cfg_bool(c, "enabled"), 0);
    /* Defaults for what was not given. */
    ck_assert_str_eq(sn_cfg_str(c, "window"), "300");
    ck_assert_int_eq(sn_cfg_int(c, "window"), 300);
    ck_assert_int_eq(sn_cfg_int(c, "limit"), 1 << 20);
    const char *const *b = sn_cfg_list(c, "brokers");
    ck_assert_str_eq(b[0], "a");
    ck_assert_str_eq(b[1], "b");
    ck_assert_str_eq(b[2], "c");
    ck_assert_ptr_null(b[3]);
    /* Absent without default: nothing. */
    ck_assert_ptr_null(sn_cfg_str(c, "token"));
    ck_assert_ptr_null(sn_cfg_str(c, "url"));
    ck_assert_int_eq(sn_cfg_int(c, "pin"), 0);
    ck_assert_double_eq(sn_cfg_double(c, "url"), 0);
    ck_assert_int_eq(sn_cfg_bool(c, "url"), 0);
    ck_assert_ptr_null(sn_cfg_list(c, "rule"));
    ck_assert_ptr_null(sn_cfg_str(c, "not-a-key"));
    sn_cfg_free(c);

    /* Accessors on no cfg at all. */
    ck_assert_ptr_null(sn_cfg_str(NULL, "x"));
    ck_assert_int_eq(sn_cfg_int(NULL, "x"), 0);
    ck_assert_ptr_null(sn_cfg_list(NULL, "x"));
}
END_TEST

START_TEST(units_in_accessors)
{
    static const struct {
        const char *text;
        int64_t ms;
    } durs[] = {{"300", 300000}, {"0", 0},        {"1500ms", 1500},   {"45s", 45000},
                {"5m", 300000},  {"2h", 7200000}, {"1d", 86400000LL}, {"10d", 864000000LL}};
    for (size_t i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "[detector:x]\nname = n\ntimeout = %s\n", durs[i].text);
        sn_cfg_t *c = build(text);
        ck_assert_msg(c != NULL, "%s", durs[i].text);
        ck_assert_int_eq(sn_cfg_int(c, "timeout"), durs[i].ms);
        ck_assert_double_eq(sn_cfg_double(c, "timeout"), (double)durs[i].ms);
        ck_assert_str_eq(sn_cfg_str(c, "timeout"), durs[i].text); /* the text is kept */
        sn_cfg_free(c);
    }
    static const struct {
        const char *text;
        int64_t bytes;
    } sizes[] = {{"512", 512},     {"4k", 4096},         {"4KiB", 4096},     {"2m", 2097152},
                 {"2MB", 2097152}, {"3g", 3221225472LL}, {"1G", 1073741824}, {"0k", 0}};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "[detector:x]\nname = n\nlimit = %s\n", sizes[i].text);
        sn_cfg_t *c = build(text);
        ck_assert_msg(c != NULL, "%s", sizes[i].text);
        ck_assert_int_eq(sn_cfg_int(c, "limit"), sizes[i].bytes);
        sn_cfg_free(c);
    }
    static const char *const yes[] = {"true", "TRUE", "yes", "on", "1", "Yes"};
    static const char *const no[] = {"false", "no", "off", "0", "OFF"};
    for (size_t i = 0; i < 6; i++) {
        char text[128];
        snprintf(text, sizeof(text), "[detector:x]\nname = n\nenabled = %s\n", yes[i]);
        sn_cfg_t *c = build(text);
        ck_assert_int_eq(sn_cfg_bool(c, "enabled"), 1);
        ck_assert_int_eq(sn_cfg_int(c, "enabled"), 1);
        sn_cfg_free(c);
    }
    for (size_t i = 0; i < 5; i++) {
        char text[128];
        snprintf(text, sizeof(text), "[detector:x]\nname = n\nenabled = %s\n", no[i]);
        sn_cfg_t *c = build(text);
        ck_assert_int_eq(sn_cfg_bool(c, "enabled"), 0);
        sn_cfg_free(c);
    }
    sn_cfg_t *c = build("[detector:x]\nname = n\nwindow = -7\nthreshold = 3\n");
    ck_assert_int_eq(sn_cfg_int(c, "window"), -7);
    ck_assert_double_eq(sn_cfg_double(c, "window"), -7.0);
    ck_assert_double_eq(sn_cfg_double(c, "threshold"), 3.0);
    ck_assert_int_eq(sn_cfg_int(c, "threshold"), 3);
    sn_cfg_free(c);
}
END_TEST

START_TEST(core_table_types_apply)
{
    /* The core's table wins: 'window' is a duration here although the plugin says int, and the
     * accessors read core keys by the core's types. */
    sn_cfg_t *c =
        build2("[executor:x]\nplugin = p\nname = n\nwindow = 2m\ncooldown = 30\n", params, core);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sn_cfg_int(c, "window"), 120000);
    ck_assert_int_eq(sn_cfg_int(c, "cooldown"), 30000);
    ck_assert_int_eq(sn_cfg_bool(c, "dry_run"), 0);
    ck_assert_str_eq(sn_cfg_str(c, "plugin"), "p");
    sn_cfg_free(c);
    c = build2("[executor:x]\nplugin = p\nname = n\n", params, core);
    ck_assert_int_eq(sn_cfg_int(c, "window"), 3600000); /* the core's default, not "300" */
    ck_assert_int_eq(sn_cfg_int(c, "cooldown"), 600000);
    sn_cfg_free(c);
}
END_TEST

START_TEST(unknown_keys_suggest_the_nearest)
{
    ck_assert_ptr_null(build2("[detector:latency]\n"
                              "name = n\n"
                              "treshold = 4\n" /* 3: distance 1 */
                              "thresh = 4\n"   /* 4: prefix */
                              "windw = 5\n"    /* 5 */
                              "dry-run = no\n" /* 6: from the core table */
                              "plugn = z\n"    /* 7 */
                              "plugin = z\n"   /* 8 */
                              "zzzzzzzz = 1\n" /* 9: nothing near */
                              "ab = 1\n",      /* 10: distance 2 but all different */
                              params, core));
    ck_assert_uint_eq(d.n, 7); /* name and plugin given, the rest have defaults */
    ck_assert_str_eq(d.msgs[0],
                     "t.conf:3: unknown key 'treshold' in [detector:latency] (did you mean "
                     "'threshold'?)");
    ck_assert_str_eq(d.msgs[1], "t.conf:4: unknown key 'thresh' in [detector:latency] (did you "
                                "mean 'threshold'?)");
    ck_assert_str_eq(
        d.msgs[2], "t.conf:5: unknown key 'windw' in [detector:latency] (did you mean 'window'?)");
    ck_assert_str_eq(d.msgs[3], "t.conf:6: unknown key 'dry-run' in [detector:latency] (did you "
                                "mean 'dry_run'?)");
    ck_assert_str_eq(
        d.msgs[4], "t.conf:7: unknown key 'plugn' in [detector:latency] (did you mean 'plugin'?)");
    ck_assert_str_eq(d.msgs[5], "t.conf:9: unknown key 'zzzzzzzz' in [detector:latency]");
    ck_assert_str_eq(d.msgs[6], "t.conf:10: unknown key 'ab' in [detector:latency]");
}
END_TEST

START_TEST(duplicates_are_refused_unless_multi)
{
    ck_assert_ptr_null(build2("[executor:x]\n"
                              "name = a\n"
                              "plugin = p\n"
                              "token = ${env:SN_TEST_SECRET}\n"
                              "name = b\n"
                              "token = " SECRET "\n"
                              "plugin = q\n"
                              "name = c\n",
                              params, core));
    ck_assert_uint_eq(d.n, 4);
    ck_assert_str_eq(d.msgs[0], "t.conf:5: duplicate key 'name' in [executor:x] (first on line 2)");
    ck_assert_str_eq(d.msgs[1],
                     "t.conf:6: duplicate key 'token' in [executor:x] (first on line 4)");
    ck_assert_str_eq(d.msgs[2],
                     "t.conf:7: duplicate key 'plugin' in [executor:x] (first on line 3)");
    ck_assert_str_eq(d.msgs[3], "t.conf:8: duplicate key 'name' in [executor:x] (first on line 2)");
}
END_TEST

START_TEST(multi_keys_join_into_a_list)
{
    sn_cfg_t *c = build("[detector:x]\nname = n\nrule = a\nport = 1\nrule = b, c\n"
                        "rule = ${env:SN_TEST_HOST}\nport = 2\n");
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(sn_cfg_str(c, "rule"), "a, b, c, db.internal");
    const char *const *r = sn_cfg_list(c, "rule");
    ck_assert_str_eq(r[0], "a");
    ck_assert_str_eq(r[1], "b");
    ck_assert_str_eq(r[2], "c");
    ck_assert_str_eq(r[3], "db.internal");
    ck_assert_ptr_null(r[4]);
    ck_assert_ptr_eq(sn_cfg_list(c, "rule"), r); /* cached */
    const char *const *p = sn_cfg_list(c, "port");
    ck_assert_str_eq(p[0], "1");
    ck_assert_str_eq(p[1], "2");
    ck_assert_ptr_null(p[2]);
    sn_cfg_free(c);
    /* Each repetition is type-checked on its own line. */
    ck_assert_ptr_null(build("[detector:x]\nname = n\nport = 1\nport = x\n"));
    ck_assert_uint_eq(d.n, 1);
    ck_assert_str_eq(d.msgs[0], "t.conf:4: key 'port': 'x' is not an integer");
}
END_TEST

START_TEST(lists_split_trim_and_cache)
{
    sn_cfg_t *c = build("[detector:x]\nname = n\nbrokers = ,  one ,two,, three four ,\n"
                        "url = x, y\n");
    ck_assert_ptr_nonnull(c);
    const char *const *b = sn_cfg_list(c, "brokers");
    ck_assert_str_eq(b[0], "one");
    ck_assert_str_eq(b[1], "two");
    ck_assert_str_eq(b[2], "three four");
    ck_assert_ptr_null(b[3]);
    ck_assert_ptr_eq(sn_cfg_list(c, "brokers"), b);
    /* Any key can be read as a list; the split is cached on first use. */
    const char *const *u = sn_cfg_list(c, "url");
    ck_assert_str_eq(u[0], "x");
    ck_assert_str_eq(u[1], "y");
    ck_assert_ptr_null(u[2]);
    ck_assert_ptr_eq(sn_cfg_list(c, "url"), u);
    ck_assert_str_eq(sn_cfg_str(c, "url"), "x, y");
    sn_cfg_free(c);
    c = build("[detector:x]\nname = n\nbrokers =\n");
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(sn_cfg_list(c, "brokers")[0]);
    sn_cfg_free(c);
}
END_TEST

START_TEST(missing_and_empty_required)
{
    ck_assert_ptr_null(build2("\n[input:in]\nwindow = 3\n", params, core));
    ck_assert_uint_eq(d.n, 2);
    ck_assert_str_eq(d.msgs[0], "t.conf:2: [input:in]: missing required key 'plugin'");
    ck_assert_str_eq(d.msgs[1], "t.conf:2: [input:in]: missing required key 'name'");
    sn_diag_free(&d);
    sn_diag_init(&d);
    ck_assert_ptr_null(build("[input:in]\nname =\n"));
    ck_assert_uint_eq(d.n, 1);
    ck_assert_str_eq(d.msgs[0], "t.conf:2: key 'name': empty value");
}
END_TEST

START_TEST(type_errors_quote_the_value)
{
    ck_assert_ptr_null(build("[detector:x]\n"
                             "name = n\n"
                             "window = abc\n"
                             "threshold = 1e999\n"
                             "timeout = 5 m\n"
                             "limit = 8t\n"
                             "enabled = maybe\n"
                             "url = anything goes\n"));
    ck_assert_uint_eq(d.n, 5);
    ck_assert_str_eq(d.msgs[0], "t.conf:3: key 'window': 'abc' is not an integer");
    ck_assert_str_eq(d.msgs[1], "t.conf:4: key 'threshold': '1e999' is not a finite number");
    ck_assert_str_eq(d.msgs[2],
                     "t.conf:5: key 'timeout': '5 m' is not a duration (e.g. 30, 500ms, 5m, 1h)");
    ck_assert_str_eq(d.msgs[3], "t.conf:6: key 'limit': '8t' is not a size (e.g. 512k, 8m)");
    ck_assert_str_eq(d.msgs[4], "t.conf:7: key 'enabled': 'maybe' is not a boolean (true/false)");
}
END_TEST

START_TEST(secrets_never_in_messages)
{
    /* A secret of a checked type that fails the check: the value is not shown... */
    setenv("SN_TEST_PIN", "hunter2", 1);
    ck_assert_ptr_null(build("[notifier:x]\nname = n\npin = ${env:SN_TEST_PIN}\n"));
    ck_assert_uint_eq(d.n, 1);
    ck_assert_str_eq(d.msgs[0], "t.conf:3: key 'pin': invalid value (secret not shown)");
    sn_diag_free(&d);
    sn_diag_init(&d);
    /* ... not even when written inline. */
    ck_assert_ptr_null(build("[notifier:x]\nname = n\npin = hunter2\n"));
    ck_assert_str_eq(d.msgs[0], "t.conf:3: key 'pin': invalid value (secret not shown)");
    sn_diag_free(&d);
    sn_diag_init(&d);
    /* An unresolvable reference names the reference only. */
    ck_assert_ptr_null(build("[notifier:x]\nname = n\ntoken = ${env:SN_TEST_UNSET}\n"));
    ck_assert_str_eq(d.msgs[0],
                     "t.conf:3: key 'token': ${env:SN_TEST_UNSET}: environment variable not set");
    sn_diag_free(&d);
    sn_diag_init(&d);
    /* A secret that resolves is usable, expanded. */
    sn_cfg_t *c = build("[notifier:x]\nname = n\ntoken = Bearer ${env:SN_TEST_SECRET}\npin = 42\n");
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(sn_cfg_str(c, "token"), "Bearer " SECRET);
    ck_assert_int_eq(sn_cfg_int(c, "pin"), 42);
    sn_cfg_free(c);
    /* teardown checks every message of every case for the secret */
}
END_TEST

START_TEST(every_value_is_expanded)
{
    char path[] = "/tmp/sn-check-params-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "17\n", 3), 3);
    close(fd);
    char text[512];
    snprintf(text, sizeof(text),
             "[detector:x]\nplugin = p\nname = ${env:SN_TEST_HOST}\nwindow = ${file:%s}\n"
             "url = https://${env:SN_TEST_HOST}:8443/x\n",
             path);
    sn_cfg_t *c = build2(text, params, core);
    unlink(path);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(sn_cfg_str(c, "name"), "db.internal");
    ck_assert_str_eq(sn_cfg_str(c, "url"), "https://db.internal:8443/x");
    /* Types are checked after expansion: the file said 17, 'window' is the core's duration. */
    ck_assert_int_eq(sn_cfg_int(c, "window"), 17000);
    sn_cfg_free(c);
    ck_assert_ptr_null(build("[detector:x]\nname = n\nwindow = ${file:/nonexistent/sn}\n"));
    ck_assert_str_eq(d.msgs[0], "t.conf:3: key 'window': ${file:/nonexistent/sn}: cannot read: No "
                                "such file or directory");
}
END_TEST

START_TEST(broken_defaults_are_reported)
{
    static const sn_param_t bad[] = {
        {"n", SN_T_INT, "ten", 0, ""},
        {"s", SN_T_INT, "hunter2", SN_PARAM_SECRET, ""},
        {NULL, 0, NULL, 0, NULL},
    };
    ck_assert_ptr_null(build2("[detector:x]\n", bad, NULL));
    ck_assert_uint_eq(d.n, 2);
    ck_assert_str_eq(d.msgs[0], "t.conf:1: [detector:x]: default of key 'n': 'ten' is not an "
                                "integer");
    ck_assert_str_eq(d.msgs[1], "t.conf:1: [detector:x]: default of key 's' is invalid");
    /* Given a good value, the default does not matter. */
    sn_diag_free(&d);
    sn_diag_init(&d);
    sn_cfg_t *c = build2("[detector:x]\nn = 10\ns = 3\n", bad, NULL);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sn_cfg_int(c, "n"), 10);
    sn_cfg_free(c);
}
END_TEST

START_TEST(no_tables_accept_nothing)
{
    sn_cfg_t *c = build2("[store:x]\n", NULL, NULL);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->n, 0);
    sn_cfg_free(c);
    ck_assert_ptr_null(build2("[store:x]\nk = v\n", NULL, NULL));
    ck_assert_str_eq(d.msgs[0], "t.conf:2: unknown key 'k' in [store:x]");
}
END_TEST

START_TEST(parse_helpers)
{
    int64_t v = 0;
    int b = 0;
    ck_assert_int_eq(sn_parse_duration_ms("90", &v), 0);
    ck_assert_int_eq(v, 90000);
    ck_assert_int_eq(sn_parse_duration_ms("90ms", &v), 0);
    ck_assert_int_eq(v, 90);
    static const char *const bad_durations[] = {
        "",
        "-5",
        "+5",
        " 5",
        "5x",
        "5 m",
        "1.5h",
        "m",
        "5mm",
        "5S",
        "99999999999999999999",
        "9999999999999999d",
    };
    for (size_t i = 0; i < sizeof(bad_durations) / sizeof(bad_durations[0]); i++)
        ck_assert_msg(sn_parse_duration_ms(bad_durations[i], &v) == SN_EINVAL, "'%s'",
                      bad_durations[i]);
    ck_assert_int_eq(sn_parse_size("7", &v), 0);
    ck_assert_int_eq(v, 7);
    ck_assert_int_eq(sn_parse_size("7kb", &v), 0);
    ck_assert_int_eq(v, 7168);
    static const char *const bad_sizes[] = {"",    "-1",  "1.5m", "1x",
                                            "1kk", "1 k", "k",    "9999999999999g"};
    for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++)
        ck_assert_msg(sn_parse_size(bad_sizes[i], &v) == SN_EINVAL, "'%s'", bad_sizes[i]);
    ck_assert_int_eq(sn_parse_bool("On", &b), 0);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(sn_parse_bool("no", &b), 0);
    ck_assert_int_eq(b, 0);
    b = 7;
    ck_assert_int_eq(sn_parse_bool("2", &b), SN_EINVAL);
    ck_assert_int_eq(sn_parse_bool("", &b), SN_EINVAL);
    ck_assert_int_eq(sn_parse_bool("truth", &b), SN_EINVAL);
    ck_assert_int_eq(b, 7);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("params");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, values_and_defaults);
    tcase_add_test(tc, units_in_accessors);
    tcase_add_test(tc, core_table_types_apply);
    tcase_add_test(tc, unknown_keys_suggest_the_nearest);
    tcase_add_test(tc, duplicates_are_refused_unless_multi);
    tcase_add_test(tc, multi_keys_join_into_a_list);
    tcase_add_test(tc, lists_split_trim_and_cache);
    tcase_add_test(tc, missing_and_empty_required);
    tcase_add_test(tc, type_errors_quote_the_value);
    tcase_add_test(tc, secrets_never_in_messages);
    tcase_add_test(tc, every_value_is_expanded);
    tcase_add_test(tc, broken_defaults_are_reported);
    tcase_add_test(tc, no_tables_accept_nothing);
    tcase_add_test(tc, parse_helpers);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
