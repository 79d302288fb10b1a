/**
 * @file harness.h
 * Plugin test harness: a real runtime and the real loader over the build's plugin directory,
 * with engine hooks that capture what plugins emit, audit and decide. A test loads a plugin by
 * kind and type, configures it with INI text validated like sentinel.conf, drives it and runs
 * the loop until its callbacks arrive.
 */
#ifndef SENTINEL_TEST_HARNESS_H
#define SENTINEL_TEST_HARNESS_H

#include "runtime.h"
#include "sentinel-internal.h"

typedef struct sn_harness sn_harness_t;

/** Where an sn_done_fn lands. @p result is a json_incref'd reference, or NULL. */
typedef struct sn_result {
    int done;
    int status;
    json_t *result;
} sn_result_t;

/** Runtime + loader over SN_PLUGIN_DIR_BUILD; hooks capture emit/audit/decide.
 * Ownership: caller frees with sn_harness_free. Thread: the calling thread runs the loop. */
sn_harness_t *sn_harness_new(void);

/** Stops every instance (newest first, each drained within 5 s), destroys it, frees all. */
void sn_harness_free(sn_harness_t *h);

/**
 * Load KIND/TYPE through the real loader, validate @p settings ("key = value" lines, an INI
 * body without header) with sn_cfg_build, then create + check + start.
 * Returns the plugin's self, or NULL with err->msg filled (load, config, create, check or start
 * error). The instance is named "<kind>:<type>" ("<kind>:<type>_2", ... for more of one type).
 * Ownership: the harness owns the instance and destroys it in sn_harness_free.
 */
void *sn_harness_create(sn_harness_t *h, sn_kind_t kind, const char *type, const char *settings,
                        const sn_plugin_t **plugin, sn_err_t *err);

/** An sn_done_fn: @p arg is an sn_result_t*. */
void sn_result_done(void *arg, int status, json_t *result);
/** Drop the result and zero @p r so it can be reused. */
void sn_result_clear(sn_result_t *r);

/** Run the loop until r->done. Returns 0 or SN_ETIMEDOUT. */
int sn_harness_wait(sn_harness_t *h, sn_result_t *r, int64_t timeout_ms);
/** Run the loop for @p ms. */
void sn_harness_run_ms(sn_harness_t *h, int64_t ms);

sn_runtime_t *sn_harness_runtime(sn_harness_t *h);

/** Borrowed array of {"instance","origin","body"} captured from host->emit_lines. Emits from
 * other threads are appended on the loop, so run it before reading. */
json_t *sn_harness_emitted(sn_harness_t *h);
/** Borrowed array of {"actor","action","incident","detail"} from host->audit. */
json_t *sn_harness_audits(sn_harness_t *h);
/** Borrowed array of {"incident","approve","actor","reason"} from host->decide. */
json_t *sn_harness_decisions(sn_harness_t *h);

#endif /* SENTINEL_TEST_HARNESS_H */
