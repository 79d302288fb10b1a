/**
 * @file sentinel-internal.h
 * Core-internal interfaces shared by the modules of sentinel_core. Not installed.
 *
 * Module map (one file, one purpose):
 *   diag.c      error collector with file:line, used by config, loader and graph
 *   config.c    INI parsing (inih) into sections with line numbers; ${env:}/${file:} expansion
 *   loader.c    libltdl plugin loading, ABI checks, registry of plugin types
 *   params.c    validation of an instance's keys against its sn_param_t table; sn_cfg_t
 *   model.c     config -> validated model (global settings, instances, graph)
 *   graph.c     [pipeline] edge parsing and validation
 *   safety.c    whitelist, token buckets, circuit breaker, approval policy
 *   audit.c     hash chain records and verification
 *   util.c      hashing, uuidv7, canonical JSON, time parsing
 */
#ifndef SENTINEL_INTERNAL_H
#define SENTINEL_INTERNAL_H

#include "sentinel/plugin.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

/* ---------------------------------------------------------------------------------------------
 * diag: collected errors, each "file:line: phrase" (line 0 = no line)
 * ------------------------------------------------------------------------------------------- */
typedef struct sn_diag {
    char **msgs;
    size_t n, cap;
} sn_diag_t;

void sn_diag_init(sn_diag_t *d);
void sn_diag_free(sn_diag_t *d);
/** Ownership: copies everything. */
void sn_diag_add(sn_diag_t *d, const char *file, int line, const char *fmt, ...) SN_PRINTF(4, 5);
void sn_diag_print(const sn_diag_t *d, FILE *out);

/* ---------------------------------------------------------------------------------------------
 * config: raw INI
 * ------------------------------------------------------------------------------------------- */
typedef struct sn_conf_kv {
    char *key;
    char *value; /**< trimmed, inline "# comment" removed; not yet expanded */
    int line;
} sn_conf_kv_t;

typedef struct sn_conf_section {
    char *header; /**< text between [ and ] */
    char *kind;   /**< "sentinel", "pipeline", or the KIND of [KIND:NAME] */
    char *name;   /**< NAME of [KIND:NAME], or NULL */
    int line;
    sn_conf_kv_t *kvs;
    size_t nkv, cap;
} sn_conf_section_t;

typedef struct sn_conf {
    char *file; /**< path or a name such as "<embedded>" */
    sn_conf_section_t *sections;
    size_t nsec, cap;
} sn_conf_t;

/** Parse @p path. Returns NULL and fills @p d on error. */
sn_conf_t *sn_conf_load_file(const char *path, sn_diag_t *d);
/** Parse text already in memory; @p name is used in messages. */
sn_conf_t *sn_conf_load_string(const char *name, const char *text, sn_diag_t *d);
void sn_conf_free(sn_conf_t *c);
const sn_conf_section_t *sn_conf_find(const sn_conf_t *c, const char *kind, const char *name);
const sn_conf_kv_t *sn_conf_get(const sn_conf_section_t *s, const char *key);

/** Expand ${env:NAME} and ${file:/path} in @p in. Returns NULL and sets @p why on failure.
 * Ownership: caller frees. */
char *sn_expand(const char *in, char *why, size_t whylen);

/** Levenshtein distance, for "did you mean". */
size_t sn_edit_distance(const char *a, const char *b);

/* ---------------------------------------------------------------------------------------------
 * loader
 * ------------------------------------------------------------------------------------------- */
typedef struct sn_loaded {
    const sn_plugin_t *plugin;
    char *path;
    void *handle; /**< lt_dlhandle */
} sn_loaded_t;

typedef struct sn_loader sn_loader_t;

sn_loader_t *sn_loader_new(const char *plugin_dir, const sn_host_t *loader_host);
void sn_loader_free(sn_loader_t *l);
/** Find and load the module for KIND/TYPE (file sn_<kind>_<type>.so in plugin_dir), checking
 * ABI major, struct_size, kind and type; loads each file once. Returns NULL and a phrase. */
const sn_loaded_t *sn_loader_get(sn_loader_t *l, sn_kind_t kind, const char *type, char *why,
                                 size_t whylen);
/** Load one explicit file (for tests and tools). */
const sn_loaded_t *sn_loader_open(sn_loader_t *l, const char *path, char *why, size_t whylen);

const char *sn_kind_name(sn_kind_t k);
int sn_kind_parse(const char *s, sn_kind_t *out);

/* ---------------------------------------------------------------------------------------------
 * params: sn_cfg_t is an instance's validated key/value set
 * ------------------------------------------------------------------------------------------- */
struct sn_cfg {
    char **keys;
    char **vals;   /**< expanded values (secrets included) */
    char ***lists; /**< NULL-terminated lists, built lazily for SN_T_LIST */
    const sn_param_t *params;
    size_t n;
    const sn_param_t *core_params; /**< the core's table for this section, or NULL */
};

/** Validate section @p s against @p params plus the core keys @p core_params (may be NULL):
 * unknown keys (with did-you-mean), duplicates, missing required, bad types. Every error goes
 * to @p d with file:line. Returns NULL when any error was found. */
sn_cfg_t *sn_cfg_build(const sn_conf_t *c, const sn_conf_section_t *s, const sn_param_t *params,
                       const sn_param_t *core_params, sn_diag_t *d);
void sn_cfg_free(sn_cfg_t *cfg);
const char *sn_cfg_str(const sn_cfg_t *c, const char *key);
int64_t sn_cfg_int(const sn_cfg_t *c, const char *key);
double sn_cfg_double(const sn_cfg_t *c, const char *key);
int sn_cfg_bool(const sn_cfg_t *c, const char *key);
const char *const *sn_cfg_list(const sn_cfg_t *c, const char *key);
/** Parse helpers shared with the model. Return 0 or SN_EINVAL. */
int sn_parse_duration_ms(const char *s, int64_t *out);
int sn_parse_size(const char *s, int64_t *out);
int sn_parse_bool(const char *s, int *out);

/* ---------------------------------------------------------------------------------------------
 * graph
 * ------------------------------------------------------------------------------------------- */
typedef enum {
    SN_NODE_INSTANCE = 0, /**< a configured plugin instance */
    SN_NODE_CORRELATE,
    SN_NODE_APPROVE,
    SN_NODE_VERIFY,
    SN_NODE_RESOLVE,
    SN_NODE_ESCALATE,
} sn_node_type_t;

typedef struct sn_node {
    char *name;
    sn_node_type_t type;
    sn_kind_t kind; /**< for SN_NODE_INSTANCE */
    int inst;       /**< index into the model's instances, or -1 */
} sn_node_t;

typedef struct sn_edge {
    int from, to; /**< node indexes */
    char *on;     /**< condition ("ok", "failed", ...) or NULL = always */
    int max;      /**< traversal bound for loop-back edges, 0 = unbounded */
    int line;
} sn_edge_t;

typedef struct sn_graph {
    sn_node_t *nodes;
    size_t nnodes;
    sn_edge_t *edges;
    size_t nedges;
} sn_graph_t;

/** Lookup callback: the kind of instance @p name, or -1 when no such instance. */
typedef int (*sn_graph_lookup_fn)(void *arg, const char *name, sn_kind_t *kind);

/** Build and validate the graph from a [pipeline] section. Errors name file:line and, for
 * cycles, the path. Returns NULL on error. */
sn_graph_t *sn_graph_build(const sn_conf_t *c, const sn_conf_section_t *pipeline,
                           sn_graph_lookup_fn lookup, void *arg, sn_diag_t *d);
void sn_graph_free(sn_graph_t *g);
int sn_graph_node(const sn_graph_t *g, const char *name);
/** Successors of @p node whose condition matches @p outcome (NULL-condition edges always
 * match). Writes up to @p cap edge indexes, returns the count. */
size_t sn_graph_next(const sn_graph_t *g, int node, const char *outcome, int *edges, size_t cap);
/** Print the resolved graph (for sentineld -T). */
void sn_graph_print(const sn_graph_t *g, FILE *out);

/* ---------------------------------------------------------------------------------------------
 * safety
 * ------------------------------------------------------------------------------------------- */
/** Canonicalise a target ("deployment/shop/web"): lower-case kind, no "..", no empty or "."
 * segments, no percent-encoding, no wildcards. Returns 0 or SN_EINVAL with a phrase. */
int sn_target_canon(const char *in, char *out, size_t outlen, char *why, size_t whylen);
/** Match a canonical target against whitelist patterns (e.g. deployment/shop/ followed by a star);
 * the star matches one segment's remainder only, never a '/'. */
bool sn_whitelist_match(const char *const *patterns, const char *canon_target);

typedef struct sn_bucket {
    double tokens, capacity, refill_per_ms;
    int64_t last_ms;
} sn_bucket_t;
void sn_bucket_init(sn_bucket_t *b, double capacity, int64_t period_ms, int64_t now_ms);
bool sn_bucket_take(sn_bucket_t *b, int64_t now_ms);

typedef struct sn_breaker {
    double threshold;    /**< failure rate that opens it, e.g. 0.10 */
    int min_calls;       /**< calls in the window before it can open */
    int64_t window_ms;   /**< sliding window */
    int64_t cooldown_ms; /**< open -> half-open */
    int64_t opened_at;   /**< 0 when closed */
    int64_t probe_at;    /**< half-open: when the one probe call was admitted, 0 = none */
    int64_t ts[64];      /**< ring of recent outcomes */
    bool fail[64];
    size_t head, count;
} sn_breaker_t;
void sn_breaker_init(sn_breaker_t *b, double threshold, int min_calls, int64_t window_ms,
                     int64_t cooldown_ms);
void sn_breaker_record(sn_breaker_t *b, bool failed, int64_t now_ms);
bool sn_breaker_closed(sn_breaker_t *b, int64_t now_ms);
/** Admit one call: true when closed; half-open admits a single probe until its outcome is
 * recorded (or a cooldown passes without one). */
bool sn_breaker_admit(sn_breaker_t *b, int64_t now_ms);

/** Approval policy: true when the action may run without a human. */
bool sn_policy_auto_approve(sn_risk_t risk, int downtime_s, int max_downtime_s,
                            bool breaker_closed);
const char *sn_risk_name(sn_risk_t r);
int sn_risk_parse(const char *s, sn_risk_t *out);

/* ---------------------------------------------------------------------------------------------
 * audit chain: hash = SHA-256(prev_hash_hex || canonical JSON of the record without "hash")
 * ------------------------------------------------------------------------------------------- */
#define SN_AUDIT_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"
/** Build the next record: fills seq, ts, prev_hash and hash. Ownership: caller owns result. */
json_t *sn_audit_record(int64_t seq, const char *prev_hash, int64_t ts_ms, const char *actor,
                        const char *action, const char *incident, const json_t *detail);
/** Check one record against its predecessor's hash. Returns 0 or SN_EINVAL with a phrase. */
int sn_audit_check(const json_t *rec, const char *prev_hash, int64_t prev_seq, char *why,
                   size_t whylen);

/* ---------------------------------------------------------------------------------------------
 * util
 * ------------------------------------------------------------------------------------------- */
/** Lower-case hex SHA-256 of @p data into out[65]. */
void sn_sha256_hex(const void *data, size_t len, char out[65]);
void sn_hmac_sha256_hex(const void *key, size_t klen, const void *data, size_t len, char out[65]);
/** Constant-time comparison of two NUL-terminated strings. */
bool sn_ct_equal(const char *a, const char *b);
/** UUIDv7 text into out[37]. Thread: any. */
void sn_uuid7(char out[37]);
/** Canonical JSON: sorted keys, compact. Ownership: caller frees. */
char *sn_json_canonical(const json_t *j);
/** Write the troff parameter reference of sentinel.conf(5) for every plugin in @p plugin_dir. */
int sn_reference_man(FILE *out, const char *plugin_dir);
/** The per-series state a detector instance needs: state_size_of() when the plugin offers it
 * (ABI 1.1), else its state_size. */
size_t sn_detector_state_size(const sn_detector_ops_t *ops, const void *self);
/** 64-bit series id of metric + sorted labels. */
uint64_t sn_series_hash(const char *metric, const sn_label_t *labels, size_t n);
/** RFC3339 ("2026-11-25T10:00:00Z", fraction and offsets allowed) or epoch ms as text. */
int sn_parse_time_ms(const char *s, int64_t *out);
/** RFC3339 in UTC with milliseconds into out[32]. */
void sn_format_time_ms(int64_t ms, char out[32]);
int64_t sn_now_ms(void);
int64_t sn_mono_ms(void);

#endif /* SENTINEL_INTERNAL_H */
