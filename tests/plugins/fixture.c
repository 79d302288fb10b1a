/**
 * @file fixture.c
 * One source, many plugins: compiled with FIXTURE_* definitions into a good module and into
 * the broken ones the loader must refuse (see tests/unit/check_loader.c). Built against the
 * public header only, like any third-party plugin.
 */
#include <sentinel/plugin.h>

#include <stdlib.h>

/* Some variants leave a callback or the table out on purpose. */
#define FX_MAYBE_UNUSED __attribute__((unused))

#ifndef FIXTURE_TYPE
#define FIXTURE_TYPE "good"
#endif

FX_MAYBE_UNUSED static int fx_create(const sn_host_t *h, const sn_cfg_t *c, void **self,
                                     sn_err_t *e)
{
    (void)h;
    (void)c;
    (void)e;
    *self = NULL;
    return 0;
}

FX_MAYBE_UNUSED static void fx_destroy(void *self)
{
    (void)self;
}

#ifdef FIXTURE_DETECTOR_OPS
static int fx_observe(const void *self, void *state, const sn_point_t *p, sn_verdict_t *out)
{
    (void)self;
    (void)state;
    (void)p;
    out->anomalous = 0;
    return 0;
}

FX_MAYBE_UNUSED static const sn_detector_ops_t fx_ops = {
    .struct_size = sizeof(sn_detector_ops_t),
    .observe = fx_observe,
};
#else
FX_MAYBE_UNUSED static const sn_input_ops_t fx_ops = {
#ifdef FIXTURE_SHORT_OPS
    .struct_size = 2,
#else
    .struct_size = sizeof(sn_input_ops_t),
#endif
};
#endif

static const sn_plugin_t fx_plugin = {
#ifdef FIXTURE_ABI_MAJOR
    .abi_major = FIXTURE_ABI_MAJOR,
#else
    .abi_major = SN_ABI_MAJOR,
#endif
    .abi_minor = SN_ABI_MINOR,
#ifdef FIXTURE_STRUCT_SIZE
    .struct_size = FIXTURE_STRUCT_SIZE,
#else
    .struct_size = sizeof(sn_plugin_t),
#endif
#ifdef FIXTURE_KIND
    .kind = (sn_kind_t)FIXTURE_KIND,
#else
    .kind = SN_INPUT,
#endif
#ifdef FIXTURE_NO_TYPE
    .type = NULL,
#else
    .type = FIXTURE_TYPE,
#endif
    .version = "0",
    .summary = "loader test fixture",
#ifndef FIXTURE_NO_CREATE
    .create = fx_create,
#endif
#ifndef FIXTURE_NO_DESTROY
    .destroy = fx_destroy,
#endif
#ifndef FIXTURE_NO_OPS
    .ops = &fx_ops,
#endif
};

#ifndef FIXTURE_NO_ENTRY
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
#ifdef FIXTURE_UNRESOLVED
    /* Defined nowhere: linked without --no-undefined, so only the loader can catch it. */
    extern int sn_fixture_missing_symbol(void);
    if (sn_fixture_missing_symbol() != 0)
        return NULL;
#endif
#ifdef FIXTURE_NULL_DESC
    (void)host;
    (void)&fx_plugin;
    return NULL;
#else
    /* The loader hands over its host table; refusing without one lets a test see that. */
    if (!host || host->abi_major != SN_ABI_MAJOR)
        return NULL;
    return &fx_plugin;
#endif
}
#else
/* A plain shared object: exports something, but not the entry point. */
SN_EXPORT int fx_not_a_plugin(void);
SN_EXPORT int fx_not_a_plugin(void)
{
    return fx_plugin.kind;
}
#endif
