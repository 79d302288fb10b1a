/**
 * @file check_loader.c
 * The loader loads real .so files (built from tests/plugins/fixture.c) through libltdl and
 * refuses each broken one with a phrase that names the file and the reason.
 */
#include "sentinel-internal.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define FX SN_BUILD_DIR "/test-plugins"

/* Only what the fixtures' entry looks at: the loader must hand its table over. */
static const sn_host_t host = {
    .abi_major = SN_ABI_MAJOR,
    .abi_minor = SN_ABI_MINOR,
    .struct_size = sizeof(sn_host_t),
};
static sn_loader_t *l;

static void setup(void)
{
    l = sn_loader_new(FX, &host);
    ck_assert_ptr_nonnull(l);
}

static void teardown(void)
{
    sn_loader_free(l);
    l = NULL;
}

static char why[1024];

static const char *refusal(sn_kind_t kind, const char *type)
{
    why[0] = '\0';
    ck_assert_ptr_null(sn_loader_get(l, kind, type, why, sizeof(why)));
    return why;
}

static const char *open_refusal(const char *path)
{
    why[0] = '\0';
    ck_assert_ptr_null(sn_loader_open(l, path, why, sizeof(why)));
    return why;
}

START_TEST(kind_names_round_trip)
{
    static const char *const names[] = {"input",    "detector", "store",   "analyzer",
                                        "executor", "notifier", "embedder"};
    for (int k = SN_INPUT; k <= SN_KIND_MAX; k++) {
        sn_kind_t back = 0;
        ck_assert_str_eq(sn_kind_name((sn_kind_t)k), names[k - 1]);
        ck_assert_int_eq(sn_kind_parse(names[k - 1], &back), 0);
        ck_assert_int_eq(back, k);
    }
    sn_kind_t untouched = SN_STORE;
    ck_assert_int_eq(sn_kind_parse("detectors", &untouched), SN_EINVAL);
    ck_assert_int_eq(sn_kind_parse(NULL, &untouched), SN_EINVAL);
    ck_assert_int_eq(untouched, SN_STORE);
    ck_assert_str_eq(sn_kind_name((sn_kind_t)0), "unknown");
    ck_assert_str_eq(sn_kind_name((sn_kind_t)42), "unknown");
}
END_TEST

START_TEST(good_plugin_loads_once_and_is_cached)
{
    const sn_loaded_t *a = sn_loader_get(l, SN_INPUT, "good", why, sizeof(why));
    ck_assert_msg(a != NULL, "%s", why);
    ck_assert_str_eq(a->plugin->type, "good");
    ck_assert_int_eq(a->plugin->kind, SN_INPUT);
    ck_assert_str_eq(a->path, FX "/sn_input_good.so");
    ck_assert_ptr_nonnull(a->handle);
    ck_assert_ptr_eq(sn_loader_get(l, SN_INPUT, "good", why, sizeof(why)), a);
    /* The same file by its explicit name is the same module, not a duplicate. */
    ck_assert_ptr_eq(sn_loader_open(l, FX "/sn_input_good.so", why, sizeof(why)), a);
    /* Same type name, other kind: a different module. */
    const sn_loaded_t *d = sn_loader_get(l, SN_DETECTOR, "good", why, sizeof(why));
    ck_assert_msg(d != NULL, "%s", why);
    ck_assert_ptr_ne(d, a);
    ck_assert_int_eq(d->plugin->kind, SN_DETECTOR);
    /* Cached entries stay valid while more modules load (no realloc surprises for callers that
     * hold the descriptor, which lives in the module). */
    const sn_plugin_t *desc = a->plugin;
    for (int i = 0; i < 3; i++)
        refusal(SN_INPUT, "badkind");
    ck_assert_ptr_eq(sn_loader_get(l, SN_INPUT, "good", why, sizeof(why))->plugin, desc);
}
END_TEST

START_TEST(missing_and_unsafe_names)
{
    ck_assert_str_eq(refusal(SN_INPUT, "missing"), "no input plugin 'missing' in " FX);
    ck_assert_str_eq(refusal(SN_STORE, "good"), "no store plugin 'good' in " FX);
    ck_assert_str_eq(refusal(SN_INPUT, "../etc"), "'../etc' is not a plugin name (a-z, 0-9, _)");
    ck_assert_str_eq(refusal(SN_INPUT, "Good"), "'Good' is not a plugin name (a-z, 0-9, _)");
    ck_assert_str_eq(refusal(SN_INPUT, ""), "no plugin type given");
    ck_assert_str_eq(refusal((sn_kind_t)9, "good"), "unknown plugin kind 9");
    ck_assert(strncmp(open_refusal(FX "/nothing_here"), "cannot load " FX "/nothing_here: ",
                      strlen("cannot load " FX "/nothing_here: ")) == 0);
}
END_TEST

START_TEST(no_entry_symbol)
{
    ck_assert_str_eq(refusal(SN_INPUT, "noentry"),
                     FX "/sn_input_noentry.so is not a Sentinel plugin: no sn_plugin_entry");
}
END_TEST

START_TEST(entry_returns_null)
{
    ck_assert_str_eq(refusal(SN_INPUT, "nulldesc"),
                     FX "/sn_input_nulldesc.so: sn_plugin_entry returned no descriptor");
}
END_TEST

START_TEST(loader_host_reaches_the_entry)
{
    /* The good fixture returns NULL without a host table: with one it loads (above), without
     * one it must not, which shows the loader passes its own table. */
    sn_loader_t *bare = sn_loader_new(FX, NULL);
    ck_assert_ptr_null(sn_loader_get(bare, SN_INPUT, "good", why, sizeof(why)));
    ck_assert_str_eq(why, FX "/sn_input_good.so: sn_plugin_entry returned no descriptor");
    sn_loader_free(bare);
}
END_TEST

START_TEST(wrong_abi_major_is_checked_first)
{
    /* abi2 is also short and of an unknown kind: the major decides, nothing else is read. */
    ck_assert_str_eq(refusal(SN_INPUT, "abi2"),
                     FX "/sn_input_abi2.so: built for ABI 2.x, this sentineld speaks 1.x");
}
END_TEST

START_TEST(short_descriptor_before_kind)
{
    char want[512];
    snprintf(want, sizeof(want), FX "/sn_input_short.so: descriptor too short: 16 bytes, need %zu",
             sizeof(sn_plugin_t));
    ck_assert_str_eq(refusal(SN_INPUT, "short"), want);
}
END_TEST

START_TEST(unknown_kind_and_kind_mismatch)
{
    ck_assert_str_eq(refusal(SN_INPUT, "badkind"),
                     FX "/sn_input_badkind.so: unknown plugin kind 42");
    ck_assert_str_eq(refusal(SN_INPUT, "mismatch"),
                     FX "/sn_input_mismatch.so: is a detector plugin, not an input plugin");
}
END_TEST

START_TEST(type_must_match_the_file)
{
    ck_assert_str_eq(refusal(SN_INPUT, "wrongtype"),
                     FX "/sn_input_wrongtype.so: declares type 'elsewhere', expected 'wrongtype'");
    ck_assert_str_eq(refusal(SN_INPUT, "notype"), FX "/sn_input_notype.so: declares no type");
}
END_TEST

START_TEST(required_callbacks_and_ops)
{
    ck_assert_str_eq(refusal(SN_INPUT, "nocreate"),
                     FX "/sn_input_nocreate.so: descriptor has no create callback");
    ck_assert_str_eq(refusal(SN_INPUT, "nodestroy"),
                     FX "/sn_input_nodestroy.so: descriptor has no destroy callback");
    ck_assert_str_eq(refusal(SN_INPUT, "noops"),
                     FX "/sn_input_noops.so: descriptor has no ops table");
    char want[512];
    snprintf(want, sizeof(want),
             FX "/sn_input_shortops.so: input ops table too short: 2 bytes, need %zu",
             sizeof(sn_input_ops_t));
    ck_assert_str_eq(refusal(SN_INPUT, "shortops"), want);
    /* The size needed depends on the kind: an input's table is too short for a detector. */
    snprintf(want, sizeof(want),
             FX "/sn_detector_shortops.so: detector ops table too short: %zu bytes, need %zu",
             sizeof(sn_input_ops_t), sizeof(sn_detector_ops_t));
    ck_assert_str_eq(refusal(SN_DETECTOR, "shortops"), want);
}
END_TEST

START_TEST(unresolved_symbol_is_refused_at_load)
{
    /* libltdl binds lazily: without the loader's check this would load, then kill the process
     * when the entry runs. */
    const char *w = refusal(SN_INPUT, "unresolved");
    ck_assert_msg(strncmp(w, "cannot load " FX "/sn_input_unresolved.so: ",
                          strlen("cannot load " FX "/sn_input_unresolved.so: ")) == 0,
                  "%s", w);
    ck_assert_msg(strstr(w, "undefined symbol: sn_fixture_missing_symbol") != NULL, "%s", w);
    /* The loader is still usable afterwards. */
    ck_assert_ptr_nonnull(sn_loader_get(l, SN_INPUT, "good", why, sizeof(why)));
}
END_TEST

START_TEST(refused_module_is_not_cached)
{
    refusal(SN_INPUT, "noentry");
    /* Asking again goes back to the file and says the same thing. */
    ck_assert_str_eq(refusal(SN_INPUT, "noentry"),
                     FX "/sn_input_noentry.so is not a Sentinel plugin: no sn_plugin_entry");
}
END_TEST

START_TEST(duplicate_type_from_another_file_is_refused)
{
    ck_assert_ptr_nonnull(sn_loader_get(l, SN_INPUT, "good", why, sizeof(why)));
    ck_assert_str_eq(open_refusal(FX "/sn_input_otherdup"),
                     FX "/sn_input_otherdup.so: duplicate plugin name input/good (already loaded "
                        "from " FX "/sn_input_good.so)");
    /* The first one still answers. */
    const sn_loaded_t *a = sn_loader_get(l, SN_INPUT, "good", why, sizeof(why));
    ck_assert_ptr_nonnull(a);
    ck_assert_str_eq(a->path, FX "/sn_input_good.so");
}
END_TEST

START_TEST(open_accepts_any_kind)
{
    const sn_loaded_t *d = sn_loader_open(l, FX "/sn_detector_good", why, sizeof(why));
    ck_assert_msg(d != NULL, "%s", why);
    ck_assert_int_eq(d->plugin->kind, SN_DETECTOR);
    /* ... and the registry then answers sn_loader_get for it without reopening. */
    ck_assert_ptr_eq(sn_loader_get(l, SN_DETECTOR, "good", why, sizeof(why)), d);
    /* Broken files are refused through open just the same. */
    ck_assert_str_eq(open_refusal(FX "/sn_input_badkind.so"),
                     FX "/sn_input_badkind.so: unknown plugin kind 42");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, kind_names_round_trip);
    tcase_add_test(tc, good_plugin_loads_once_and_is_cached);
    tcase_add_test(tc, missing_and_unsafe_names);
    tcase_add_test(tc, no_entry_symbol);
    tcase_add_test(tc, entry_returns_null);
    tcase_add_test(tc, loader_host_reaches_the_entry);
    tcase_add_test(tc, wrong_abi_major_is_checked_first);
    tcase_add_test(tc, short_descriptor_before_kind);
    tcase_add_test(tc, unknown_kind_and_kind_mismatch);
    tcase_add_test(tc, type_must_match_the_file);
    tcase_add_test(tc, required_callbacks_and_ops);
    tcase_add_test(tc, unresolved_symbol_is_refused_at_load);
    tcase_add_test(tc, refused_module_is_not_cached);
    tcase_add_test(tc, duplicate_type_from_another_file_is_refused);
    tcase_add_test(tc, open_accepts_any_kind);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
