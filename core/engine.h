/**
 * @file engine.h
 * The engine: a running model. It owns the runtime, the plugin instances, the telemetry plane,
 * the incidents and their workflows, the audit chain and the HTTP API. sentineld's main(),
 * the tests and the benchmarks all drive it through this interface.
 */
#ifndef SENTINEL_ENGINE_H
#define SENTINEL_ENGINE_H

#include "model.h"
#include "runtime.h"

typedef struct sn_engine sn_engine_t;

typedef struct sn_engine_opts {
    const char *config_path; /**< file to load (and reload on SIGHUP) */
    const char *plugin_dir;  /**< override, or NULL */
    const char *listen;      /**< override of [sentinel] listen, or NULL */
    int no_http;             /**< tests: run without the HTTP API */
} sn_engine_opts_t;

/** Load, validate and create everything (no I/O beyond reading files and loading modules
 * until sn_engine_start). Errors go to @p d. Ownership: caller frees with sn_engine_free. */
sn_engine_t *sn_engine_new(const sn_engine_opts_t *o, sn_diag_t *d);
/** check() every instance (sentineld -t stops here). */
int sn_engine_check(sn_engine_t *e, sn_diag_t *d);
/** Start instances, the telemetry plane, the HTTP API, and resume open incidents. */
int sn_engine_start(sn_engine_t *e);
/** Run the loop until sn_engine_shutdown completes. */
int sn_engine_run(sn_engine_t *e);
/** Begin a drain: stop inputs, flush telemetry, checkpoint, stop plugins within the
 * drain_timeout, then leave the loop. Thread: loop. */
void sn_engine_shutdown(sn_engine_t *e);
/** SIGHUP: build a new model beside the old; keep the old one if anything fails. */
int sn_engine_reload(sn_engine_t *e);
void sn_engine_free(sn_engine_t *e);

sn_runtime_t *sn_engine_runtime(sn_engine_t *e);
const sn_model_t *sn_engine_model(sn_engine_t *e);
/** The port the HTTP API listens on (useful with listen = 127.0.0.1:0). */
int sn_engine_port(sn_engine_t *e);

/** Ingest a body of JSON lines. Returns 0 (stats filled, errors described in @p errs),
 * SN_EAGAIN when the queues are full (nothing taken). Thread: any. */
struct sn_ingest_stats;
int sn_engine_ingest(sn_engine_t *e, const char *buf, size_t len, const char *origin,
                     struct sn_ingest_stats *stats, sn_diag_t *errs);
/** The same, and when it returns 0, @p done(arg, status, NULL) on the loop once the points are
 * in the telemetry store (or at once without one). */
int sn_engine_ingest_acked(sn_engine_t *e, const char *buf, size_t len, const char *origin,
                           struct sn_ingest_stats *stats, sn_diag_t *errs, sn_done_fn done,
                           void *arg);

/** Incidents as JSON. Ownership: caller decrefs. Thread: loop. */
json_t *sn_engine_incidents(sn_engine_t *e, const char *state);
json_t *sn_engine_incident(sn_engine_t *e, const char *id);
/** Human decision on a waiting incident. Returns 0, SN_ENOTFOUND, or SN_EINVAL when the
 * incident is not waiting for approval. */
int sn_engine_decide(sn_engine_t *e, const char *id, int approve, const char *actor,
                     const char *reason);
/** Append to the audit chain. Thread: loop. */
int sn_engine_audit(sn_engine_t *e, const char *actor, const char *action, const char *incident,
                    const json_t *detail);
/** Query the audit log of the state store; done gets {"records": [...]}. */
void sn_engine_audit_query(sn_engine_t *e, const json_t *filter, sn_done_fn done, void *arg);
/** Health of every instance: {"status","instances":{...},"telemetry":{...}}. */
json_t *sn_engine_health(sn_engine_t *e);

#endif /* SENTINEL_ENGINE_H */
