/**
 * @file model.h
 * A validated configuration: global settings, plugin instances with their validated settings,
 * and the pipeline graph. Building one performs every check `sentineld -t` promises, and does
 * no I/O beyond reading the file and loading plugin modules.
 */
#ifndef SENTINEL_MODEL_H
#define SENTINEL_MODEL_H

#include "sentinel-internal.h"

/** Core-level settings of an executor instance: the safety gates the core enforces. */
typedef struct sn_exec_policy {
    const char *const *allow; /**< whitelist patterns (borrowed from cfg) */
    int dry_run;
    int64_t max_per_minute, max_per_hour;
    double failure_threshold;
    int64_t breaker_min_calls;
    int64_t breaker_cooldown_ms;
    int rollback_on_failure;
} sn_exec_policy_t;

typedef struct sn_instance {
    sn_kind_t kind;
    char *name;  /**< NAME of [KIND:NAME] */
    char *type;  /**< plugin = TYPE */
    char *label; /**< "kind:name" */
    int line;
    char *digest; /**< hash of the section's settings, to carry instances over on reload */
    const sn_loaded_t *mod;
    sn_cfg_t *cfg;
    sn_exec_policy_t policy;    /**< executors only */
    const char *const *metrics; /**< detectors: metric patterns they observe ("*" = all) */
    double weight;              /**< detectors: vote towards min_votes */
    const char *const *events;  /**< notifiers: events they receive */
} sn_instance_t;

typedef struct sn_settings {
    const char *listen;
    const char *plugin_dir;
    const char *state;    /**< store instance name holding workflows and audit */
    const char *vector;   /**< store instance name for incident memory, or NULL */
    const char *embedder; /**< embedder instance name, or NULL */
    const char *instance_id;
    int dry_run;
    int64_t auto_approve_max_downtime_s;
    int64_t workers;
    int64_t max_body;
    int64_t max_series;
    int64_t queue_points;
    const char *series_eviction; /**< "lru" or "refuse" */
    const char *telemetry;       /**< store instance keeping points and history, or NULL */
    int64_t notify_retries;
    int64_t lease_ttl_ms;
    int64_t notify_backoff_ms;
    int64_t warmup_window_ms;
    int64_t warmup_points;
    double min_votes;
    int64_t vote_window_ms;
    int64_t flap_threshold;
    int64_t flap_window_ms;
    double dedup_similarity;
    int64_t correlate_window_ms;
    int64_t group_wait_ms;
    int64_t group_wait_wall_ms;
    int64_t drain_timeout_ms;
    int64_t max_incidents;
    const char *log_level;
    const char *const *api_keys;
    int api_keys_line;
} sn_settings_t;

typedef struct sn_model {
    sn_conf_t *conf;
    sn_cfg_t *core_cfg; /**< [sentinel] */
    sn_settings_t set;
    sn_instance_t *inst;
    size_t ninst;
    sn_graph_t *graph;
} sn_model_t;

/** Build a model from a parsed config. @p plugin_dir_override may be NULL. Every problem goes
 * to @p d; returns NULL when there was any. Ownership: takes @p conf in all cases. */
sn_model_t *sn_model_build(sn_conf_t *conf, sn_loader_t *loader, sn_diag_t *d);
void sn_model_free(sn_model_t *m);
sn_instance_t *sn_model_find(const sn_model_t *m, const char *name);
/** True when instance @p name is a node of the pipeline graph. */
int sn_model_in_graph(const sn_model_t *m, const char *name);
/** First instance of @p kind, or NULL. */
sn_instance_t *sn_model_first(const sn_model_t *m, sn_kind_t kind);
/** The [sentinel] keys, for --describe and the docs. */
extern const sn_param_t sn_core_params[];
/** Core keys every [KIND:NAME] section may carry, by kind. */
const sn_param_t *sn_model_kind_params(sn_kind_t k);
/** The plugin directory this model uses (settings, else build tree, else install). */
const char *sn_model_default_plugin_dir(void);

#endif /* SENTINEL_MODEL_H */
