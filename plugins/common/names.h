/**
 * @file names.h
 * The naming rules of the ingest format: metric names [a-zA-Z_:][a-zA-Z0-9_:.]* of at most 200
 * bytes, label names [a-zA-Z_][a-zA-Z0-9_]*. Shared by the core's ingest and the inputs that
 * check lines themselves (kafka) or build them (alertmanager). Linked statically
 * (sn_plugin_common); not part of the plugin ABI.
 */
#ifndef SENTINEL_PLUGIN_NAMES_H
#define SENTINEL_PLUGIN_NAMES_H

#include <stddef.h>

/** On @p n bytes of @p s. */
int snp_metric_name_ok(const char *s, size_t n);
int snp_label_name_ok(const char *s, size_t n);

#endif
