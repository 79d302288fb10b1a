/** @file wrong_major.c A plugin that claims a future ABI major: the loader must refuse it. */
#include <sentinel/plugin.h>

static const sn_executor_ops_t ops = {.struct_size = sizeof(sn_executor_ops_t)};
static const sn_plugin_t plugin = {
    .abi_major = SN_ABI_MAJOR + 1,
    .abi_minor = 0,
    .struct_size = sizeof(sn_plugin_t),
    .kind = SN_EXECUTOR,
    .type = "hello",
    .ops = &ops,
};

SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &plugin;
}
