/** @file check_loader.c The loader refuses broken plugins with a message naming the file. */
#include "runtime.h"
#include "sentinel-internal.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define FX SN_BUILD_DIR "/test-plugins"

static sn_runtime_t *rt;
static sn_host_t host;
static sn_loader_t *l;

static void setup(void)
{
    rt = sn_runtime_new(1);
    sn_host_fill(rt, &host, NULL);
    l = sn_loader_new(FX, &host);
}

static void teardown(void)
{
    sn_loader_free(l);
    sn_runtime_free(rt);
}

static const char *refusal(sn_kind_t kind, const char *type)
{
    static char why[512];
    why[0] = '\0';
    const sn_loaded_t *m = sn_loader_get(l, kind, type, why, sizeof(why));
    ck_assert_ptr_null(m);
    return why;
}

START_TEST(good_plugin_loads_once)
{
    char why[256];
    const sn_loaded_t *a = sn_loader_get(l, SN_INPUT, "good", why, sizeof(why));
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_eq(sn_loader_get(l, SN_INPUT, "good", why, sizeof(why)), a);
}
END_TEST

START_TEST(refusals_name_file_and_reason)
{
    ck_assert(strstr(refusal(SN_INPUT, "noentry"), "is not a Sentinel plugin: no sn_plugin_entry"));
    ck_assert(strstr(refusal(SN_INPUT, "short"), "descriptor too short: 16 bytes"));
    ck_assert(strstr(refusal(SN_INPUT, "badkind"), "unknown plugin kind 42"));
    ck_assert(strstr(refusal(SN_INPUT, "detector"), "is a detector plugin, not an input"));
    ck_assert(strstr(refusal(SN_INPUT, "shortops"), "input table too short"));
    ck_assert(strstr(refusal(SN_INPUT, "wrongtype"), "declares type 'elsewhere'"));
    ck_assert(strstr(refusal(SN_INPUT, "missing"), "no input plugin 'missing'"));
    ck_assert(strstr(refusal(SN_INPUT, "../etc"), "not a plugin name"));
    ck_assert(strstr(refusal(SN_INPUT, "noentry"), FX "/sn_input_noentry"));
}
END_TEST

START_TEST(duplicate_type_from_another_file_is_refused)
{
    char why[512];
    ck_assert_ptr_nonnull(sn_loader_get(l, SN_INPUT, "good", why, sizeof(why)));
    ck_assert_ptr_null(sn_loader_open(l, FX "/sn_input_otherdup", why, sizeof(why)));
    ck_assert(strstr(why, "input/good is already loaded from"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, good_plugin_loads_once);
    tcase_add_test(tc, refusals_name_file_and_reason);
    tcase_add_test(tc, duplicate_type_from_another_file_is_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
