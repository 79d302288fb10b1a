/**
 * @file fixture.c
 * One source, several broken plugins: compiled with FIXTURE_* definitions into the modules the
 * loader must refuse (see check_loader.c).
 */
#include <sentinel/plugin.h>

#include <stdlib.h>

static int fx_create(const sn_host_t *h, const sn_cfg_t *c, void **self, sn_err_t *e)
{
    (void)h;
    (void)c;
    (void)e;
    *self = NULL;
    return 0;
}

static void fx_destroy(void *self)
{
    (void)self;
}

static const sn_input_ops_t fx_ops = {
#ifdef FIXTURE_SHORT_OPS
    .struct_size = 2,
#else
    .struct_size = sizeof(sn_input_ops_t),
#endif
};

static const sn_plugin_t fx_plugin = {
    .abi_major = SN_ABI_MAJOR,
    .abi_minor = SN_ABI_MINOR,
#ifdef FIXTURE_SHORT
    .struct_size = 16,
#else
    .struct_size = sizeof(sn_plugin_t),
#endif
#ifdef FIXTURE_KIND
    .kind = (sn_kind_t)FIXTURE_KIND,
#else
    .kind = SN_INPUT,
#endif
    .type = FIXTURE_TYPE,
    .version = "0",
    .create = fx_create,
    .destroy = fx_destroy,
    .ops = &fx_ops,
};

#ifndef FIXTURE_NO_ENTRY
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &fx_plugin;
}
#else
SN_EXPORT int not_a_plugin(void);
SN_EXPORT int not_a_plugin(void)
{
    return fx_plugin.kind;
}
#endif
