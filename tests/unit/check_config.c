/**
 * @file check_config.c
 * INI parsing (config.c): sections and keys with exact line numbers, inline comments, every
 * syntax and section error reported with file:line, ${env:}/${file:} expansion that never
 * echoes a value, and the edit distance behind "did you mean". (The [pipeline] graph has its
 * own suite, check_graph.c.)
 */
#include "sentinel-internal.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static sn_diag_t d;

static void setup(void)
{
    sn_diag_init(&d);
}

static void teardown(void)
{
    sn_diag_free(&d);
}

/* Parse @p text expecting failure; returns the collected messages. */
static void expect_fail(const char *text)
{
    sn_conf_t *c = sn_conf_load_string("t.conf", text, &d);
    ck_assert_ptr_null(c);
    ck_assert_uint_gt(d.n, 0);
}

static void assert_kv(const sn_conf_section_t *s, size_t i, const char *k, const char *v, int line)
{
    ck_assert_uint_lt(i, s->nkv);
    ck_assert_str_eq(s->kvs[i].key, k);
    ck_assert_str_eq(s->kvs[i].value, v);
    ck_assert_int_eq(s->kvs[i].line, line);
}

START_TEST(sections_keys_and_lines)
{
    sn_conf_t *c = sn_conf_load_string("t.conf",
                                       "# leading comment\n"               /* 1 */
                                       "\n"                                /* 2 */
                                       "[sentinel]\n"                      /* 3 */
                                       "listen = 127.0.0.1:8080\n"         /* 4 */
                                       "; another comment\n"               /* 5 */
                                       "dry_run=false\n"                   /* 6 */
                                       "\n"                                /* 7 */
                                       "[detector:latency.p99-x_1]\n"      /* 8 */
                                       "plugin    = zscore\n"              /* 9 */
                                       "[pipeline]\n"                      /* 10 */
                                       "edge = a -> b, c\n"                /* 11 */
                                       "edge = b -> d [on=failed max=3]\n" /* 12 */
                                       "[store:empty]\n",                  /* 13 */
                                       &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(d.n, 0);
    ck_assert_str_eq(c->file, "t.conf");
    ck_assert_uint_eq(c->nsec, 4);
    const sn_conf_section_t *s = &c->sections[0];
    ck_assert_str_eq(s->header, "sentinel");
    ck_assert_str_eq(s->kind, "sentinel");
    ck_assert_ptr_null(s->name);
    ck_assert_int_eq(s->line, 3);
    ck_assert_uint_eq(s->nkv, 2);
    assert_kv(s, 0, "listen", "127.0.0.1:8080", 4);
    assert_kv(s, 1, "dry_run", "false", 6);
    s = &c->sections[1];
    ck_assert_str_eq(s->header, "detector:latency.p99-x_1");
    ck_assert_str_eq(s->kind, "detector");
    ck_assert_str_eq(s->name, "latency.p99-x_1");
    ck_assert_int_eq(s->line, 8);
    assert_kv(s, 0, "plugin", "zscore", 9);
    /* Repeated keys are kept, in order, each with its line. */
    s = &c->sections[2];
    ck_assert_uint_eq(s->nkv, 2);
    assert_kv(s, 0, "edge", "a -> b, c", 11);
    assert_kv(s, 1, "edge", "b -> d [on=failed max=3]", 12);
    ck_assert_uint_eq(c->sections[3].nkv, 0);
    ck_assert_int_eq(c->sections[3].line, 13);

    ck_assert_ptr_eq(sn_conf_find(c, "detector", "latency.p99-x_1"), &c->sections[1]);
    ck_assert_ptr_eq(sn_conf_find(c, "pipeline", NULL), &c->sections[2]);
    ck_assert_ptr_null(sn_conf_find(c, "detector", "other"));
    ck_assert_ptr_null(sn_conf_find(c, "detector", NULL));
    ck_assert_ptr_eq(sn_conf_get(&c->sections[2], "edge"), &c->sections[2].kvs[0]);
    ck_assert_ptr_null(sn_conf_get(&c->sections[2], "nope"));
    ck_assert_ptr_null(sn_conf_get(NULL, "edge"));
    sn_conf_free(c);
}
END_TEST

START_TEST(inline_comments_and_values)
{
    sn_conf_t *c = sn_conf_load_string("t.conf",
                                       "[sentinel]\n"
                                       "a = x   # comment\n"
                                       "b = x;y#z\n"
                                       "c = http://h/p#frag\n"
                                       "d = x ; comment\n"
                                       "e =   # only a comment\n"
                                       "f =#kept\n"
                                       "g = k=v=w\n"
                                       "h: colon separated\n"
                                       "i =\n"
                                       "j = tab\t# comment\n",
                                       &d);
    ck_assert_ptr_nonnull(c);
    const sn_conf_section_t *s = &c->sections[0];
    ck_assert_uint_eq(s->nkv, 10);
    assert_kv(s, 0, "a", "x", 2);
    assert_kv(s, 1, "b", "x;y#z", 3);
    assert_kv(s, 2, "c", "http://h/p#frag", 4);
    assert_kv(s, 3, "d", "x", 5);
    assert_kv(s, 4, "e", "", 6);
    assert_kv(s, 5, "f", "#kept", 7);
    assert_kv(s, 6, "g", "k=v=w", 8);
    assert_kv(s, 7, "h", "colon separated", 9);
    assert_kv(s, 8, "i", "", 10);
    assert_kv(s, 9, "j", "tab", 11);
    sn_conf_free(c);
}
END_TEST

START_TEST(indentation_is_not_a_continuation)
{
    /* libinih is built with multi-line values on: an indented line would be glued to the key
     * above. The parser must give every key on its own, with its own line. */
    sn_conf_t *c = sn_conf_load_string("t.conf",
                                       "[sentinel]\n"
                                       "listen = 127.0.0.1:1\n"
                                       "    plugin_dir = /x\n"
                                       "\tstate = local\n"
                                       "  [detector:a]\n"
                                       "  plugin = z\n",
                                       &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->nsec, 2);
    const sn_conf_section_t *s = &c->sections[0];
    ck_assert_uint_eq(s->nkv, 3);
    assert_kv(s, 0, "listen", "127.0.0.1:1", 2);
    assert_kv(s, 1, "plugin_dir", "/x", 3);
    assert_kv(s, 2, "state", "local", 4);
    ck_assert_int_eq(c->sections[1].line, 5);
    assert_kv(&c->sections[1], 0, "plugin", "z", 6);
    sn_conf_free(c);
}
END_TEST

START_TEST(bom_crlf_and_no_final_newline)
{
    sn_conf_t *c =
        sn_conf_load_string("t.conf", "\xEF\xBB\xBF[sentinel]\r\nlisten = a\r\n\r\nstate = b", &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->sections[0].line, 1);
    assert_kv(&c->sections[0], 0, "listen", "a", 2);
    assert_kv(&c->sections[0], 1, "state", "b", 4);
    sn_conf_free(c);
    c = sn_conf_load_string("t.conf", "", &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->nsec, 0);
    sn_conf_free(c);
    ck_assert_uint_eq(d.n, 0);
}
END_TEST

START_TEST(every_syntax_error_with_its_line)
{
    expect_fail("[sentinel]\n"
                "no equals sign\n"
                "listen = ok\n"
                "still none\n"
                "= value\n"
                "listen 127.0.0.1:8080\n"
                "[pipeline\n"
                "[pipeline] trailing\n");
    ck_assert_uint_eq(d.n, 6);
    ck_assert_str_eq(d.msgs[0], "t.conf:2: syntax error: expected [section] or key = value");
    ck_assert_str_eq(d.msgs[1], "t.conf:4: syntax error: expected [section] or key = value");
    ck_assert_str_eq(d.msgs[2], "t.conf:5: syntax error: empty key");
    ck_assert_str_eq(d.msgs[3],
                     "t.conf:6: invalid key name 'listen 127.0.0.1' (letters, digits, '_', '.', "
                     "'-')");
    ck_assert_str_eq(d.msgs[4], "t.conf:7: syntax error: section header without ']'");
    ck_assert_str_eq(d.msgs[5], "t.conf:8: syntax error: text after ']'");
}
END_TEST

START_TEST(key_before_any_section)
{
    expect_fail("# comment\nlisten = x\n[sentinel]\n");
    ck_assert_uint_eq(d.n, 1);
    ck_assert_str_eq(d.msgs[0], "t.conf:2: key 'listen' appears before any [section]");
}
END_TEST

START_TEST(long_lines_are_refused_not_split)
{
    char text[600];
    int n = snprintf(text, sizeof(text), "[sentinel]\nlisten = ");
    memset(text + n, 'x', 300);
    snprintf(text + n + 300, sizeof(text) - (size_t)n - 300, "\nstate = after\n");
    expect_fail(text);
    ck_assert_uint_eq(d.n, 1);
    ck_assert_str_eq(d.msgs[0], "t.conf:2: line is longer than 198 characters");
    /* The longest line that fits is accepted. */
    sn_diag_free(&d);
    sn_diag_init(&d);
    n = snprintf(text, sizeof(text), "[sentinel]\nk = ");
    memset(text + n, 'y', 198 - 4);
    text[n + 198 - 4] = '\0';
    sn_conf_t *c = sn_conf_load_string("t.conf", text, &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(strlen(c->sections[0].kvs[0].value), 198 - 4);
    sn_conf_free(c);
}
END_TEST

START_TEST(section_errors)
{
    expect_fail("[detectr:a]\n"       /* 1 */
                "[inputs:b]\n"        /* 2 */
                "[frobnicate:c]\n"    /* 3 */
                "[sentinel:x]\n"      /* 4 */
                "[detector]\n"        /* 5 */
                "[detector:]\n"       /* 6 */
                "[detector:a b]\n"    /* 7 */
                "[store:a/b]\n"       /* 8 */
                "[]\n"                /* 9 */
                "[ detector : ok ]\n" /* 10 */
                "plugin = z\n"        /* 11 */
                "[detector:ok]\n"     /* 12 */
                "[sentinel]\n"        /* 13 */
                "[sentinel]\n"        /* 14 */
                "[det]\n");           /* 15 */
    ck_assert_uint_eq(d.n, 12);
    ck_assert_str_eq(d.msgs[0],
                     "t.conf:1: unknown section kind 'detectr' (did you mean 'detector'?)");
    ck_assert_str_eq(d.msgs[1], "t.conf:2: unknown section kind 'inputs' (did you mean 'input'?)");
    ck_assert_str_eq(d.msgs[2], "t.conf:3: unknown section kind 'frobnicate'");
    ck_assert_str_eq(d.msgs[3], "t.conf:4: section [sentinel] takes no instance name");
    ck_assert_str_eq(d.msgs[4], "t.conf:5: section [detector] needs a name: [detector:NAME]");
    ck_assert_str_eq(d.msgs[5], "t.conf:6: section [detector] needs a name: [detector:NAME]");
    ck_assert_str_eq(d.msgs[6], "t.conf:7: instance name 'a b' may hold only letters, digits, "
                                "'_', '.' and '-'");
    ck_assert_str_eq(d.msgs[7], "t.conf:8: instance name 'a/b' may hold only letters, digits, "
                                "'_', '.' and '-'");
    ck_assert_str_eq(d.msgs[8], "t.conf:9: empty section header []");
    ck_assert_str_eq(d.msgs[9], "t.conf:12: duplicate section [detector:ok] (first on line 10)");
    ck_assert_str_eq(d.msgs[10], "t.conf:14: duplicate section [sentinel] (first on line 13)");
    ck_assert_str_eq(d.msgs[11], "t.conf:15: unknown section kind 'det' (did you mean "
                                 "'detector'?)");
}
END_TEST

START_TEST(whitespace_in_header_is_normalised)
{
    sn_conf_t *c = sn_conf_load_string("t.conf", "[ executor : k8s ]   # note\nplugin = x\n", &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->sections[0].header, "executor:k8s");
    ck_assert_str_eq(c->sections[0].kind, "executor");
    ck_assert_str_eq(c->sections[0].name, "k8s");
    sn_conf_free(c);
}
END_TEST

START_TEST(every_kind_is_a_section)
{
    static const char *const kinds[] = {"input",    "detector", "store",   "analyzer",
                                        "executor", "notifier", "embedder"};
    for (size_t i = 0; i < 7; i++) {
        char text[64];
        snprintf(text, sizeof(text), "[%s:n]\nplugin = p\n", kinds[i]);
        sn_conf_t *c = sn_conf_load_string("t.conf", text, &d);
        ck_assert_msg(c != NULL, "%s", kinds[i]);
        ck_assert_str_eq(c->sections[0].kind, kinds[i]);
        sn_conf_free(c);
    }
    ck_assert_uint_eq(d.n, 0);
}
END_TEST

static char tmpdir[64];

static void tmp_setup(void)
{
    setup();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sn-check-config-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    teardown();
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

START_TEST(load_file_and_its_errors)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/s.conf", tmpdir);
    write_file(path, "[sentinel]\nlisten = x\nbad line\n", 31);
    ck_assert_ptr_null(sn_conf_load_file(path, &d));
    ck_assert_uint_eq(d.n, 1);
    char want[256];
    snprintf(want, sizeof(want), "%s:3: syntax error: expected [section] or key = value", path);
    ck_assert_str_eq(d.msgs[0], want);

    write_file(path, "[sentinel]\nlisten = x\n", 22);
    sn_conf_t *c = sn_conf_load_file(path, &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->file, path);
    sn_conf_free(c);

    write_file(path, "[sentinel]\n\0x = 1\n", 18);
    ck_assert_ptr_null(sn_conf_load_file(path, &d));
    snprintf(want, sizeof(want), "%s: contains a NUL byte: not a text file", path);
    ck_assert_str_eq(d.msgs[1], want);

    snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
    ck_assert_ptr_null(sn_conf_load_file(path, &d));
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    ck_assert_str_eq(d.msgs[2], want);

    ck_assert_ptr_null(sn_conf_load_file(tmpdir, &d));
    snprintf(want, sizeof(want), "%s: cannot read: Is a directory", tmpdir);
    ck_assert_str_eq(d.msgs[3], want);
}
END_TEST

START_TEST(expand_env)
{
    char why[256];
    setenv("SN_TEST_X", "val", 1);
    setenv("SN_TEST_EMPTY", "", 1);
    setenv("SN_TEST_NESTED", "${env:SN_TEST_X}", 1);
    char *v = sn_expand("a-${env:SN_TEST_X}-b-${env:SN_TEST_X}", why, sizeof(why));
    ck_assert_str_eq(v, "a-val-b-val");
    free(v);
    v = sn_expand("[${env:SN_TEST_EMPTY}]", why, sizeof(why));
    ck_assert_str_eq(v, "[]");
    free(v);
    /* Expanded text is not expanded again. */
    v = sn_expand("${env:SN_TEST_NESTED}", why, sizeof(why));
    ck_assert_str_eq(v, "${env:SN_TEST_X}");
    free(v);
    v = sn_expand("no refs, a lone $ and } here", why, sizeof(why));
    ck_assert_str_eq(v, "no refs, a lone $ and } here");
    free(v);
    v = sn_expand("", why, sizeof(why));
    ck_assert_str_eq(v, "");
    free(v);

    unsetenv("SN_TEST_UNSET_XYZ");
    ck_assert_ptr_null(sn_expand("x${env:SN_TEST_UNSET_XYZ}", why, sizeof(why)));
    ck_assert_str_eq(why, "${env:SN_TEST_UNSET_XYZ}: environment variable not set");
    ck_assert_ptr_null(sn_expand("${env:1BAD-NAME}", why, sizeof(why)));
    ck_assert_str_eq(why, "${env:1BAD-NAME}: not a variable name");
    ck_assert_ptr_null(sn_expand("${vault:x}", why, sizeof(why)));
    ck_assert_str_eq(why, "${vault:x}: only ${env:NAME} and ${file:/path} expand");
    ck_assert_ptr_null(sn_expand("abc ${env:SN_TEST_X", why, sizeof(why)));
    ck_assert_str_eq(why, "unterminated '${'");
}
END_TEST

START_TEST(expand_file)
{
    char why[256], path[128], ref[256];
    snprintf(path, sizeof(path), "%s/secret", tmpdir);
    write_file(path, "s3cret\nline2\n\n", 14);
    snprintf(ref, sizeof(ref), "<${file:%s}>", path);
    char *v = sn_expand(ref, why, sizeof(why));
    ck_assert_str_eq(v, "<s3cret\nline2>"); /* only trailing newlines go */
    free(v);

    /* Exactly 64 KiB is accepted, one byte more is not. */
    char *big = malloc((64 << 10) + 1);
    memset(big, 'a', (64 << 10) + 1);
    write_file(path, big, 64 << 10);
    snprintf(ref, sizeof(ref), "${file:%s}", path);
    v = sn_expand(ref, why, sizeof(why));
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(strlen(v), 64 << 10);
    free(v);
    write_file(path, big, (64 << 10) + 1);
    free(big);
    ck_assert_ptr_null(sn_expand(ref, why, sizeof(why)));
    char want[300];
    snprintf(want, sizeof(want), "${file:%s}: larger than 64 KiB", path);
    ck_assert_str_eq(why, want);

    snprintf(ref, sizeof(ref), "${file:%s/none}", tmpdir);
    ck_assert_ptr_null(sn_expand(ref, why, sizeof(why)));
    snprintf(want, sizeof(want), "${file:%s/none}: cannot read: No such file or directory", tmpdir);
    ck_assert_str_eq(why, want);

    ck_assert_ptr_null(sn_expand("${file:relative/path}", why, sizeof(why)));
    ck_assert_str_eq(why, "${file:relative/path}: path must be absolute");
}
END_TEST

START_TEST(expansion_errors_never_carry_values)
{
    char why[256], path[128], ref[300];
    setenv("SN_TEST_SECRET_A", "hunter2", 1);
    snprintf(path, sizeof(path), "%s/pw", tmpdir);
    write_file(path, "hunter2\n", 8);
    chmod(path, 0);
    snprintf(ref, sizeof(ref), "${env:SN_TEST_SECRET_A}:${file:%s}", path);
    char *v = sn_expand(ref, why, sizeof(why));
    if (v) /* running as root: the file is readable after all */
        ck_assert_str_eq(v, "hunter2:hunter2");
    else
        ck_assert(strstr(why, "cannot read: Permission denied") != NULL);
    free(v);
    snprintf(ref, sizeof(ref), "${env:SN_TEST_SECRET_A}${env:SN_TEST_UNSET_XYZ}");
    ck_assert_ptr_null(sn_expand(ref, why, sizeof(why)));
    ck_assert(strstr(why, "hunter2") == NULL);
    ck_assert_str_eq(why, "${env:SN_TEST_UNSET_XYZ}: environment variable not set");
}
END_TEST

START_TEST(edit_distance)
{
    ck_assert_uint_eq(sn_edit_distance("kitten", "sitting"), 3);
    ck_assert_uint_eq(sn_edit_distance("flaw", "lawn"), 2);
    ck_assert_uint_eq(sn_edit_distance("treshold", "threshold"), 1);
    ck_assert_uint_eq(sn_edit_distance("", "abc"), 3);
    ck_assert_uint_eq(sn_edit_distance("abc", ""), 3);
    ck_assert_uint_eq(sn_edit_distance("same", "same"), 0);
    ck_assert_uint_eq(sn_edit_distance("ab", "ba"), 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("parse");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, sections_keys_and_lines);
    tcase_add_test(tc, inline_comments_and_values);
    tcase_add_test(tc, indentation_is_not_a_continuation);
    tcase_add_test(tc, bom_crlf_and_no_final_newline);
    tcase_add_test(tc, every_syntax_error_with_its_line);
    tcase_add_test(tc, key_before_any_section);
    tcase_add_test(tc, long_lines_are_refused_not_split);
    tcase_add_test(tc, section_errors);
    tcase_add_test(tc, whitespace_in_header_is_normalised);
    tcase_add_test(tc, every_kind_is_a_section);
    tcase_add_test(tc, edit_distance);
    suite_add_tcase(s, tc);
    TCase *tf = tcase_create("files");
    tcase_add_checked_fixture(tf, tmp_setup, tmp_teardown);
    tcase_add_test(tf, load_file_and_its_errors);
    tcase_add_test(tf, expand_env);
    tcase_add_test(tf, expand_file);
    tcase_add_test(tf, expansion_errors_never_carry_values);
    suite_add_tcase(s, tf);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
