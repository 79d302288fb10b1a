/**
 * @file check_file_input.c
 * Tests of the file input loaded as a .so through the harness, which captures what it hands to
 * host->emit_lines: replay order and completeness across chunks, over-long lines, tail mode
 * (growth, partial lines, truncation, rotation), pacing by the records' ts, and start_delay.
 */
#include "harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FI_LABELS "instance=\"input:file\""

static char g_dir[64];
static char g_path[128];

static void tmp_setup(void)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/sn-file-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_path, sizeof(g_path), "%s/events.jsonl", g_dir);
}

static void tmp_teardown(void)
{
    char old[160];
    snprintf(old, sizeof(old), "%s.1", g_path);
    unlink(old);
    unlink(g_path);
    rmdir(g_dir);
}

static void write_file(const char *path, const char *mode, const char *text)
{
    FILE *f = fopen(path, mode);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    fclose(f);
}

static void *open_input(sn_harness_t *h, const char *extra)
{
    char settings[512];
    snprintf(settings, sizeof(settings), "path = %s\n%s", g_path, extra ? extra : "");
    sn_err_t err = {{0}};
    void *self = sn_harness_create(h, SN_INPUT, "file", settings, NULL, &err);
    ck_assert_msg(self != NULL, "create failed: %s", err.msg);
    return self;
}

/* All emitted bodies joined, in emit order. Ownership: caller frees. */
static char *emitted_text(sn_harness_t *h)
{
    json_t *arr = sn_harness_emitted(h);
    size_t total = 1, i;
    json_t *rec;
    json_array_foreach(arr, i, rec) total += json_string_length(json_object_get(rec, "body"));
    char *out = calloc(1, total);
    size_t off = 0;
    json_array_foreach(arr, i, rec)
    {
        json_t *b = json_object_get(rec, "body");
        memcpy(out + off, json_string_value(b), json_string_length(b));
        off += json_string_length(b);
    }
    return out;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Run the loop until @p lines lines were emitted or @p ms passed. */
static size_t wait_lines(sn_harness_t *h, size_t lines, int64_t ms)
{
    int64_t deadline = sn_mono_ms() + ms;
    size_t n = 0;
    for (;;) {
        char *t = emitted_text(h);
        n = count_lines(t);
        free(t);
        if (n >= lines || sn_mono_ms() >= deadline)
            return n;
        sn_harness_run_ms(h, 5);
    }
}

static double metric(sn_harness_t *h, const char *name)
{
    return sn_metric_value(sn_harness_runtime(h), name, FI_LABELS);
}

static void wait_done(sn_harness_t *h)
{
    int64_t deadline = sn_mono_ms() + 5000;
    while (metric(h, "input_file_done") != 1.0 && sn_mono_ms() < deadline)
        sn_harness_run_ms(h, 5);
    ck_assert_msg(metric(h, "input_file_done") == 1.0, "replay did not finish");
}

START_TEST(replay_emits_every_line_once_in_order)
{
    /* 1203 records over three chunks of 500, with blank lines (skipped, but counted as lines)
     * and a last line without a newline. */
    size_t cap = 1 << 20, off = 0;
    char *text = malloc(cap), *want = malloc(cap);
    size_t woff = 0;
    for (int i = 0; i < 1203; i++) {
        char line[128];
        snprintf(line, sizeof(line), "{\"ts\":%d,\"metric\":\"m\",\"value\":%d}", 1000 + i, i);
        off += (size_t)snprintf(text + off, cap - off, "%s%s", line, i == 1202 ? "" : "\n");
        woff += (size_t)snprintf(want + woff, cap - woff, "%s\n", line);
        if (i == 10 || i == 700)
            off += (size_t)snprintf(text + off, cap - off, "\n  \n");
    }
    write_file(g_path, "w", text);
    sn_harness_t *h = sn_harness_new();
    open_input(h, "batch = 500\n");
    wait_done(h);
    char *got = emitted_text(h);
    ck_assert_str_eq(got, want);
    json_t *arr = sn_harness_emitted(h);
    ck_assert_uint_eq(json_array_size(arr), 3);
    char origin[200];
    snprintf(origin, sizeof(origin), "file:%s:1", g_path);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(arr, 0), "origin")), origin);
    /* Record 500 (0-based) is on line 503: two blank lines after record 10 come before it. */
    snprintf(origin, sizeof(origin), "file:%s:503", g_path);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(arr, 1), "origin")), origin);
    ck_assert(metric(h, "input_file_lines_total") == 1203.0);
    free(got);
    free(text);
    free(want);
    sn_harness_free(h);
}
END_TEST

START_TEST(too_long_line_is_skipped)
{
    size_t big = (1 << 20) + 100;
    char *text = malloc(big + 256);
    size_t off = (size_t)sprintf(text, "{\"n\":1}\n{\"log\":\"");
    memset(text + off, 'x', big);
    off += big;
    off += (size_t)sprintf(text + off, "\"}\n{\"n\":3}\n{\"n\":4}\n");
    text[off] = '\0';
    write_file(g_path, "w", text);
    free(text);
    sn_harness_t *h = sn_harness_new();
    open_input(h, "batch = 1\n");
    wait_done(h);
    char *got = emitted_text(h);
    ck_assert_str_eq(got, "{\"n\":1}\n{\"n\":3}\n{\"n\":4}\n");
    free(got);
    ck_assert(metric(h, "input_file_rejected_total") == 1.0);
    /* The line after the skipped one keeps its own number. */
    json_t *arr = sn_harness_emitted(h);
    char origin[200];
    snprintf(origin, sizeof(origin), "file:%s:3", g_path);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(arr, 1), "origin")), origin);
    sn_harness_free(h);
}
END_TEST

START_TEST(tail_follows_growth_truncation_and_rotation)
{
    write_file(g_path, "w", "{\"n\":1}\n{\"n\":2}\n");
    sn_harness_t *h = sn_harness_new();
    open_input(h, "mode = tail\npoll = 20ms\n");
    ck_assert_uint_eq(wait_lines(h, 2, 3000), 2);

    /* A partial line is held back until its newline arrives. */
    write_file(g_path, "a", "{\"n\":3}\n{\"n\":");
    ck_assert_uint_eq(wait_lines(h, 3, 3000), 3);
    sn_harness_run_ms(h, 100);
    char *got = emitted_text(h);
    ck_assert_str_eq(got, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
    free(got);
    write_file(g_path, "a", "4}\n");
    ck_assert_uint_eq(wait_lines(h, 4, 3000), 4);
    got = emitted_text(h);
    ck_assert_str_eq(got, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n");
    free(got);

    /* Truncated and rewritten shorter: read again from the start. */
    write_file(g_path, "w", "{\"t\":1}\n");
    ck_assert_uint_eq(wait_lines(h, 5, 3000), 5);
    got = emitted_text(h);
    ck_assert_ptr_nonnull(strstr(got, "{\"n\":4}\n{\"t\":1}\n"));
    free(got);

    /* Rotated: the old file moves away, a new one takes the path. */
    char old[160];
    snprintf(old, sizeof(old), "%s.1", g_path);
    ck_assert_int_eq(rename(g_path, old), 0);
    write_file(g_path, "w", "{\"r\":1}\n{\"r\":2}\n");
    ck_assert_uint_eq(wait_lines(h, 7, 3000), 7);
    got = emitted_text(h);
    ck_assert_ptr_nonnull(strstr(got, "{\"t\":1}\n{\"r\":1}\n{\"r\":2}\n"));
    free(got);
    json_t *arr = sn_harness_emitted(h);
    char origin[200];
    snprintf(origin, sizeof(origin), "file:%s:1", g_path);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_array_get(arr, json_array_size(arr) - 1), "origin")),
        origin);
    /* Tail never declares itself done. */
    ck_assert(metric(h, "input_file_done") == 0.0);
    sn_harness_free(h);
}
END_TEST

START_TEST(speed_paces_by_ts_gaps)
{
    /* ts one second apart (RFC 3339 and epoch ms mixed) at speed 5: due at 0, 200, 400, 600 ms. */
    write_file(g_path, "w",
               "{\"ts\":\"2026-11-25T10:00:00Z\",\"n\":1}\n"
               "{\"ts\":1795600801000,\"n\":2}\n"
               "{\"ts\":\"2026-11-25T11:00:02+01:00\",\"n\":3}\n"
               "{\"n\":\"no ts: goes with the one before\"}\n"
               "{\"ts\":\"2026-11-25T10:00:03.000Z\",\"n\":4}\n");
    sn_harness_t *h = sn_harness_new();
    open_input(h, "speed = 5\n");
    ck_assert_uint_eq(wait_lines(h, 1, 2000), 1);
    int64_t t0 = sn_mono_ms();
    sn_harness_run_ms(h, 100);
    char *got = emitted_text(h);
    ck_assert_uint_eq(count_lines(got), 1);
    free(got);
    ck_assert_uint_eq(wait_lines(h, 5, 2000), 5);
    int64_t took = sn_mono_ms() - t0;
    ck_assert_msg(took >= 540 && took < 1500, "paced replay took %lld ms", (long long)took);
    json_t *arr = sn_harness_emitted(h);
    /* One emit per due time; the ts-less record went out with record 3. */
    ck_assert_uint_eq(json_array_size(arr), 4);
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(json_array_get(arr, 2), "body")), "no ts"));
    wait_done(h);
    sn_harness_free(h);
}
END_TEST

START_TEST(start_delay_and_bad_settings)
{
    write_file(g_path, "w", "{\"n\":1}\n");
    sn_harness_t *h = sn_harness_new();
    open_input(h, "start_delay = 300ms\n");
    sn_harness_run_ms(h, 150);
    ck_assert_uint_eq(json_array_size(sn_harness_emitted(h)), 0);
    ck_assert_uint_eq(wait_lines(h, 1, 2000), 1);
    sn_err_t err = {{0}};
    char settings[256];
    snprintf(settings, sizeof(settings), "path = %s\nmode = sideways\n", g_path);
    ck_assert_ptr_null(sn_harness_create(h, SN_INPUT, "file", settings, NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "mode"));
    snprintf(settings, sizeof(settings), "path = %s\nspeed = -1\n", g_path);
    ck_assert_ptr_null(sn_harness_create(h, SN_INPUT, "file", settings, NULL, &err));
    ck_assert_ptr_null(sn_harness_create(h, SN_INPUT, "file", "mode = tail\n", NULL, &err));
    sn_harness_free(h);
}
END_TEST

START_TEST(missing_file_in_replay_is_unhealthy)
{
    sn_harness_t *h = sn_harness_new();
    const sn_plugin_t *p = NULL;
    char settings[256];
    snprintf(settings, sizeof(settings), "path = %s/nope.jsonl\n", g_dir);
    sn_err_t err = {{0}};
    void *self = sn_harness_create(h, SN_INPUT, "file", settings, &p, &err);
    ck_assert_ptr_nonnull(self);
    int64_t deadline = sn_mono_ms() + 3000;
    while (metric(h, "input_file_errors_total") < 1.0 && sn_mono_ms() < deadline)
        sn_harness_run_ms(h, 5);
    ck_assert(metric(h, "input_file_errors_total") == 1.0);
    sn_health_t hl = {0};
    ck_assert_int_eq(p->health(self, &hl), 0);
    ck_assert_int_eq(hl.ok, 0);
    ck_assert_ptr_nonnull(strstr(hl.detail, "nope.jsonl"));
    ck_assert(metric(h, "input_file_done") == 0.0);
    sn_harness_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("file_input");
    TCase *tc = tcase_create("input");
    tcase_set_timeout(tc, 20);
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, replay_emits_every_line_once_in_order);
    tcase_add_test(tc, too_long_line_is_skipped);
    tcase_add_test(tc, tail_follows_growth_truncation_and_rotation);
    tcase_add_test(tc, speed_paces_by_ts_gaps);
    tcase_add_test(tc, start_delay_and_bad_settings);
    tcase_add_test(tc, missing_file_in_replay_is_unhealthy);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
