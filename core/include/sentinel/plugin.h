/**
 * @file plugin.h
 * The whole public contract between sentineld and its plugins.
 *
 * A plugin includes only this header (and jansson), never links against sentineld, and exports
 * one function, sn_plugin_entry(). Every host service reaches it through the sn_host_t table it
 * is handed, so no libevent, libcurl or core type crosses the boundary and a plugin built against
 * ABI 1.x loads into any 1.y host with y >= x.
 *
 * Rules that keep the ABI stable:
 *  - every struct that crosses the boundary starts with a version or size field and only grows
 *    at its end (append-only within a major);
 *  - a function added in a later minor is tested for (SN_HOST_HAS) before it is called;
 *  - all callbacks run on the host's event-loop thread unless documented otherwise;
 *  - pointers handed into a callback are borrowed for that call only.
 */
#ifndef SENTINEL_PLUGIN_H
#define SENTINEL_PLUGIN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SN_ABI_MAJOR 1 /**< a different major is refused at load */
#define SN_ABI_MINOR 4 /**< append-only growth within a major */

#if defined(__GNUC__)
#define SN_EXPORT __attribute__((visibility("default")))
#define SN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SN_EXPORT
#define SN_PRINTF(f, a)
#endif

/* ---------------------------------------------------------------------------------------------
 * Result codes: 0 or a negative SN_E* code.
 * ------------------------------------------------------------------------------------------- */
#define SN_OK 0
#define SN_EINVAL (-1)    /**< bad argument or input */
#define SN_ENOMEM (-2)    /**< allocation failed or a bound was reached */
#define SN_EAGAIN (-3)    /**< transient failure: retry later */
#define SN_EPENDING (-4)  /**< accepted; completion arrives through a callback */
#define SN_ENOTFOUND (-5) /**< no such object */
#define SN_ECONFLICT (-6) /**< version or uniqueness conflict */
#define SN_EIO (-7)       /**< I/O or remote failure */
#define SN_EDENIED (-8)   /**< refused by policy */
#define SN_ETIMEDOUT (-9) /**< deadline passed */
#define SN_ENOTSUP (-10)  /**< operation not offered */

/** Room for one short error phrase; the core adds instance name and file position. */
typedef struct sn_err {
    char msg[256];
} sn_err_t;

/* ---------------------------------------------------------------------------------------------
 * Kinds and parameters
 * ------------------------------------------------------------------------------------------- */
typedef enum {
    SN_INPUT = 1,
    SN_DETECTOR,
    SN_STORE,
    SN_ANALYZER,
    SN_EXECUTOR,
    SN_NOTIFIER,
    SN_EMBEDDER,
} sn_kind_t;
#define SN_KIND_MAX SN_EMBEDDER

typedef enum {
    SN_T_STRING = 1, /**< any text */
    SN_T_INT,        /**< 64-bit signed integer */
    SN_T_DOUBLE,     /**< finite floating point number */
    SN_T_BOOL,       /**< true/false, yes/no, on/off, 1/0 */
    SN_T_DURATION,   /**< integer with optional unit ms, s, m, h, d; read as milliseconds */
    SN_T_LIST,       /**< comma-separated list of strings */
    SN_T_SIZE,       /**< integer with optional unit k, m, g (binary); read as bytes */
} sn_type_t;

#define SN_PARAM_REQUIRED 0x1u /**< the key must be present */
#define SN_PARAM_SECRET 0x2u   /**< never printed, logged or echoed in errors */
#define SN_PARAM_MULTI 0x4u    /**< the key may repeat; values are joined as a list */

/** One accepted configuration key. Tables end with an entry whose key is NULL. */
typedef struct sn_param {
    const char *key;
    sn_type_t type;
    const char *def; /**< default as text, or NULL */
    unsigned flags;
    const char *doc;
} sn_param_t;

/* ---------------------------------------------------------------------------------------------
 * Opaque host-owned handles
 * ------------------------------------------------------------------------------------------- */
typedef struct sn_cfg sn_cfg_t;             /**< one instance's validated settings */
typedef struct sn_timer sn_timer_t;         /**< a timer created by the host */
typedef struct sn_watch sn_watch_t;         /**< an fd watch created by the host */
typedef struct sn_route_req sn_route_req_t; /**< an HTTP request routed to a plugin */

/** Completion of any asynchronous call. @p result is borrowed for the call (may be NULL). */
typedef void (*sn_done_fn)(void *arg, int status, json_t *result);

/* ---------------------------------------------------------------------------------------------
 * Data crossing the boundary
 * ------------------------------------------------------------------------------------------- */
typedef struct sn_label {
    const char *name;
    const char *value;
} sn_label_t;

/** One telemetry point. Labels are sorted by name; series is the hash of metric + labels. */
typedef struct sn_point {
    int64_t ts_ms; /**< event time, milliseconds since the epoch */
    double value;
    uint64_t series;
    const char *metric;
    const sn_label_t *labels;
    size_t nlabels;
} sn_point_t;

/** A detector's answer for one point. */
typedef struct sn_verdict {
    int anomalous;     /**< non-zero when the point is anomalous */
    double score;      /**< anomaly score in [0,1] */
    double expected;   /**< what the detector expected */
    double confidence; /**< confidence in the verdict, [0,1] */
} sn_verdict_t;

typedef enum { SN_RISK_LOW = 1, SN_RISK_MEDIUM, SN_RISK_HIGH } sn_risk_t;

/** One remediation step as handed to an executor. */
typedef struct sn_action {
    uint32_t struct_size;
    const char *incident;        /**< incident id */
    const char *verb;            /**< one of the executor's verbs */
    const char *target;          /**< canonical resource name, already whitelisted */
    const json_t *params;        /**< verb parameters (object, may be empty) */
    const char *idempotency_key; /**< incident:step:attempt, stable across restarts */
    int dry_run;                 /**< non-zero: describe, change nothing */
} sn_action_t;

/** An executor's verb with its defaults; tables end with name == NULL. */
typedef struct sn_verb {
    const char *name;
    sn_risk_t risk;
    int downtime_s;
    const char *doc;
} sn_verb_t;

/** Health as reported by a plugin. */
typedef struct sn_health {
    int ok;           /**< non-zero when healthy */
    char detail[256]; /**< short reason when not */
} sn_health_t;

/* ---------------------------------------------------------------------------------------------
 * HTTP client (one libcurl multi handle owned by the host, driven by the loop)
 * ------------------------------------------------------------------------------------------- */
typedef struct sn_http_request {
    uint32_t struct_size;
    const char *method; /**< "GET", "POST", ... */
    const char *url;
    const char *const *headers; /**< "Name: value" strings, NULL-terminated, or NULL */
    const char *body;
    size_t body_len;
    long timeout_ms;     /**< whole-transfer deadline; 0 = host default */
    size_t max_response; /**< response body limit in bytes; 0 = host default */

    /* ---- ABI 1.2: TLS settings (https only; NULL/0 = the system defaults) ---- */
    const char *ca_file;         /**< PEM bundle that verifies the server (CURLOPT_CAINFO) */
    const char *ca_pem;          /**< the same in memory; wins over ca_file */
    const char *client_cert_pem; /**< client certificate for mutual TLS, PEM in memory */
    const char *client_key_pem;  /**< its private key, PEM in memory; never logged */
    int insecure_skip_verify;    /**< non-zero: do not verify the server (the caller warns) */
} sn_http_request_t;

/** sn_http_request_t carries the TLS settings above from this minor on (test the host's
 * abi_minor before relying on them). */
#define SN_HTTP_TLS_MINOR 2

typedef struct sn_http_response {
    long status;      /**< HTTP status, 0 when no response arrived */
    const char *body; /**< NUL-terminated body */
    size_t body_len;
    const char *error; /**< transport error phrase when status == 0 */
    const char *(*header)(const struct sn_http_response *,
                          const char *name); /**< case-insensitive */
    void *priv;
} sn_http_response_t;

/** Ownership: @p resp is borrowed for the call. Thread: loop. */
typedef void (*sn_http_done_fn)(void *arg, const sn_http_response_t *resp);

/* ---------------------------------------------------------------------------------------------
 * Routes a plugin registers under /hooks/<instance>/...
 * ------------------------------------------------------------------------------------------- */
typedef void (*sn_route_fn)(void *self, sn_route_req_t *req);

typedef enum { SN_LOG_DEBUG = 0, SN_LOG_INFO, SN_LOG_WARN, SN_LOG_ERROR } sn_log_level_t;
typedef enum { SN_METRIC_COUNTER = 1, SN_METRIC_GAUGE } sn_metric_kind_t;

/* ---------------------------------------------------------------------------------------------
 * The host table. Each instance receives its own copy, so log lines and metrics carry the
 * instance automatically. Fields are only ever appended.
 * ------------------------------------------------------------------------------------------- */
typedef struct sn_host sn_host_t;
struct sn_host {
    uint32_t abi_major, abi_minor;
    uint32_t struct_size;
    const char *instance; /**< "kind:name" of the instance, or NULL for the loader's table */

    /* Logging: one JSON line, prefixed with the instance. Thread: any. */
    void (*log)(const sn_host_t *h, sn_log_level_t lvl, const char *fmt, ...) SN_PRINTF(3, 4);

    /* Metrics: counter adds @p v, gauge sets it. Name without prefix; the host adds
     * "sentinel_" and an instance label. Thread: any. */
    void (*metric)(const sn_host_t *h, sn_metric_kind_t kind, const char *name, const char *help,
                   double v);

    /* Configuration accessors for this instance's validated settings. Secrets expanded.
     * Ownership: returned strings belong to the host and live as long as the instance. */
    const char *(*cfg_str)(const sn_cfg_t *c, const char *key);
    int64_t (*cfg_int)(const sn_cfg_t *c, const char *key);
    double (*cfg_double)(const sn_cfg_t *c, const char *key);
    int (*cfg_bool)(const sn_cfg_t *c, const char *key);
    /** NULL-terminated list, owned by the host. */
    const char *const *(*cfg_list)(const sn_cfg_t *c, const char *key);

    /* Timers and fd watches on the loop. Thread: loop. */
    sn_timer_t *(*timer_add)(const sn_host_t *h, int64_t ms, int repeat, void (*cb)(void *),
                             void *arg);
    void (*timer_del)(sn_timer_t *t);
    /** @p events: 1 read, 2 write. */
    sn_watch_t *(*fd_watch)(const sn_host_t *h, int fd, int events,
                            void (*cb)(int fd, int events, void *), void *arg);
    void (*fd_unwatch)(sn_watch_t *w);

    /** Run @p work on the offload pool, then @p done on the loop. Thread: loop. */
    int (*offload)(const sn_host_t *h, void (*work)(void *), void (*done)(void *), void *arg);
    /** Run @p fn on the loop soon. The one call safe from any thread. */
    int (*post)(const sn_host_t *h, void (*fn)(void *), void *arg);

    /** Asynchronous HTTP; @p done always runs exactly once, on the loop. Thread: loop. */
    int (*http)(const sn_host_t *h, const sn_http_request_t *req, sn_http_done_fn done, void *arg);

    /** Expand ${env:NAME} / ${file:/path}; NULL if unresolvable. Ownership: caller frees. */
    char *(*secret)(const sn_host_t *h, const char *ref);

    /** Hand records to the pipeline (inputs). @p buf holds JSON lines. Thread: any.
     * Returns the number of accepted records or a negative SN_E* code. */
    int (*emit_lines)(const sn_host_t *h, const char *buf, size_t len, const char *origin);

    /** Append to the audit chain. Ownership: @p detail is borrowed. Thread: loop. */
    int (*audit)(const sn_host_t *h, const char *actor, const char *action, const char *incident,
                 const json_t *detail);

    /** Wall-clock milliseconds since the epoch, and monotonic milliseconds. Thread: any. */
    int64_t (*now_ms)(const sn_host_t *h);
    int64_t (*mono_ms)(const sn_host_t *h);

    /** Register an HTTP route at /hooks/<name>/<path>. Thread: loop, during start. */
    int (*route_add)(const sn_host_t *h, const char *method, const char *path, sn_route_fn fn,
                     void *self);
    const char *(*req_body)(sn_route_req_t *r, size_t *len);
    const char *(*req_header)(sn_route_req_t *r, const char *name);
    void (*req_reply)(sn_route_req_t *r, int status, const char *content_type, const char *body,
                      size_t len);

    /** Resume a waiting incident with a decision (approvals from notifiers). Thread: loop. */
    int (*decide)(const sn_host_t *h, const char *incident, int approve, const char *actor,
                  const char *reason);

    /* ---- ABI 1.1 ---- */
    /** Parse RFC 3339 ("2026-11-25T10:00:00.250Z", offsets allowed) or epoch milliseconds as
     * digits into epoch milliseconds. Returns 0 or SN_EINVAL. Thread: any. */
    int (*parse_time)(const sn_host_t *h, const char *text, int64_t *out_ms);

    /** emit_lines with an acknowledgement, for inputs that commit upstream (Kafka offsets):
     * when the return value is >= 0, @p done(arg, status, NULL) follows on the loop once the
     * records are where the core keeps them: queued for the detectors and, with a [sentinel]
     * telemetry store, written there (status 0); or not (status < 0: deliver them again, do
     * not commit). Not called when the return value is negative. Thread: any. */
    int (*emit_lines_acked)(const sn_host_t *h, const char *buf, size_t len, const char *origin,
                            sn_done_fn done, void *arg);

    /* ---- ABI 1.3 ---- */
    /** metric() with labels of the plugin's own beside the instance label: @p labels is a
     * NULL-terminated array of name, value pairs, e.g. {"partition", "3", NULL}. The host
     * escapes the values. A label named "instance", a malformed name, a NULL value or more than
     * SN_METRIC_MAX_LABELS pairs refuses the update (counted in
     * sentinel_metrics_invalid_total). Each distinct label set is a series of its own and the
     * registry is bounded, so keep label values to a small known set (providers, partitions),
     * never request or incident ids. Thread: any. */
    void (*metric_labels)(const sn_host_t *h, sn_metric_kind_t kind, const char *name,
                          const char *help, const char *const *labels, double v);

    /* ---- ABI 1.4 ---- */
    /** How many lines of @p buf emit_lines would refuse, by the core's own rules, ingesting
     * nothing: for inputs that must say which of their messages the core refused (a Kafka
     * dead-letter topic). The first refused line's reason, "line N: field 'value': not a
     * number", goes to @p why (cut to @p wl bytes; empty when none). Thread: any. */
    uint32_t (*check_lines)(const sn_host_t *h, const char *buf, size_t len, char *why, size_t wl);
};

/** Most label pairs metric_labels() takes besides the instance label. */
#define SN_METRIC_MAX_LABELS 8

/** True when the host table offers @p field (a newer host may have more, never fewer). */
#define SN_HOST_HAS(h, field)                                                                      \
    ((h)->struct_size >= offsetof(sn_host_t, field) + sizeof((h)->field) && (h)->field != NULL)

/* ---------------------------------------------------------------------------------------------
 * Kind tables
 * ------------------------------------------------------------------------------------------- */

/** Inputs: start() registers sources and pushes records through host->emit_lines. */
typedef struct sn_input_ops {
    uint32_t struct_size;
} sn_input_ops_t;

/**
 * Detectors. The core owns per-series state: it allocates state_size zeroed bytes for every
 * series the detector sees and hands them back on every point, so observe() needs no allocation
 * and each worker thread owns the state of its shard.
 * Thread: observe() runs on telemetry worker threads; self is read-only there.
 */
typedef struct sn_detector_ops {
    uint32_t struct_size;
    size_t state_size;
    int (*observe)(const void *self, void *state, const sn_point_t *p, sn_verdict_t *out);
    /** Optional: prime state from history (ts/value pairs, oldest first). */
    int (*warmup)(const void *self, void *state, const int64_t *ts, const double *v, size_t n);

    /* ---- ABI 1.1 ---- */
    /** Optional: the state size this instance needs, when its settings make it smaller than
     * state_size (which stays the upper bound, for hosts that do not call this). */
    size_t (*state_size_of)(const void *self);
} sn_detector_ops_t;

#define SN_STORE_TELEMETRY 0x1u
#define SN_STORE_VECTOR 0x2u
#define SN_STORE_STATE 0x4u
#define SN_STORE_AUDIT 0x8u

/**
 * Stores. Every call completes through done(arg, status, result) on the loop; result is
 * borrowed. Calls for capabilities not in caps are NULL.
 */
typedef struct sn_store_ops {
    uint32_t struct_size;
    unsigned caps;
    /* TELEMETRY */
    void (*telemetry_write)(void *self, const sn_point_t *pts, size_t n, sn_done_fn done,
                            void *arg);
    /** result: {"points": [[ts_ms, value], ...]} oldest first, at most limit. */
    void (*telemetry_window)(void *self, uint64_t series, int64_t from_ms, int64_t to_ms,
                             size_t limit, sn_done_fn done, void *arg);
    /* VECTOR */
    void (*vector_upsert)(void *self, const char *collection, const char *id, const float *v,
                          size_t dim, const json_t *payload, sn_done_fn done, void *arg);
    /** result: {"matches": [{"id", "score", "payload"}]} best first. */
    void (*vector_search)(void *self, const char *collection, const float *v, size_t dim, size_t k,
                          double min_score, sn_done_fn done, void *arg);
    /* STATE: checkpoints with optimistic versions. save fails SN_ECONFLICT when the stored
     * version is not version - 1. */
    void (*state_save)(void *self, const char *id, int64_t version, int open, const json_t *doc,
                       sn_done_fn done, void *arg);
    /** result: {"version": n, "doc": {...}} or status SN_ENOTFOUND. */
    void (*state_load)(void *self, const char *id, sn_done_fn done, void *arg);
    /** result: {"ids": [...]} of documents saved with open != 0. */
    void (*state_list_open)(void *self, sn_done_fn done, void *arg);
    /** Take or renew a lease on @p id for @p owner until now + ttl; SN_ECONFLICT if held. */
    void (*state_lease)(void *self, const char *id, const char *owner, int64_t ttl_ms,
                        sn_done_fn done, void *arg);
    /* AUDIT: records carry seq, prev_hash and hash computed by the core; append fails
     * SN_ECONFLICT when seq is taken. */
    void (*audit_append)(void *self, const json_t *record, sn_done_fn done, void *arg);
    /** filter: {"actor","action","incident","since","until","after_seq","limit"} (all optional).
     * result: {"records": [...]} in seq order. */
    void (*audit_query)(void *self, const json_t *filter, sn_done_fn done, void *arg);
} sn_store_ops_t;

/** Analyzers: analyze -> {"hypotheses": [...]}; optional plan -> {"plan": [...]}. */
typedef struct sn_analyzer_ops {
    uint32_t struct_size;
    void (*analyze)(void *self, const json_t *incident, sn_done_fn done, void *arg);
    void (*plan)(void *self, const json_t *incident, sn_done_fn done, void *arg);
} sn_analyzer_ops_t;

/** Embedders: text -> float vector; result {"vector": [...]} . */
typedef struct sn_embedder_ops {
    uint32_t struct_size;
    size_t dim;
    void (*embed)(void *self, const char *text, sn_done_fn done, void *arg);
} sn_embedder_ops_t;

/**
 * Executors. The core has already applied whitelist, dry-run, approval, circuit breaker and
 * rate limits before any of these is called; an executor never needs to re-check them, and
 * cannot skip them.
 */
typedef struct sn_executor_ops {
    uint32_t struct_size;
    const sn_verb_t *verbs;
    /** Optional. result: {"risk": "low|medium|high", "downtime_s": n, "blast_radius": n|text}. */
    void (*assess)(void *self, const sn_action_t *a, sn_done_fn done, void *arg);
    /** result: prior state, handed back to rollback. */
    void (*snapshot)(void *self, const sn_action_t *a, sn_done_fn done, void *arg);
    void (*execute)(void *self, const sn_action_t *a, sn_done_fn done, void *arg);
    /** status 0 when the change converged and holds. */
    void (*verify)(void *self, const sn_action_t *a, sn_done_fn done, void *arg);
    void (*rollback)(void *self, const sn_action_t *a, const json_t *snapshot, sn_done_fn done,
                     void *arg);
} sn_executor_ops_t;

/** Notifiers: event is "opened", "approval_needed", "executing", "resolved", ... done() gets 0
 * when delivered, SN_EINVAL when the receiver refused the content (never deliverable as it is:
 * the core's outbox does not retry it), any other negative code for a failure worth retrying
 * later (the outbox retries with backoff across restarts). */
typedef struct sn_notifier_ops {
    uint32_t struct_size;
    void (*notify)(void *self, const json_t *incident, const char *event, sn_done_fn done,
                   void *arg);
} sn_notifier_ops_t;

/* ---------------------------------------------------------------------------------------------
 * The plugin descriptor
 * ------------------------------------------------------------------------------------------- */
typedef struct sn_plugin {
    uint32_t abi_major, abi_minor, struct_size;
    sn_kind_t kind;
    const char *type;    /**< module name used in `plugin = ...` */
    const char *version; /**< the plugin's own version */
    const char *summary;
    const sn_param_t *params; /**< the core validates config against this */
    /** Ownership: *self belongs to the plugin until destroy(). */
    int (*create)(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err);
    int (*check)(void *self, sn_err_t *err);              /**< optional; no I/O */
    int (*start)(void *self);                             /**< optional */
    void (*stop)(void *self, sn_done_fn done, void *arg); /**< optional; asynchronous drain */
    void (*destroy)(void *self);
    int (*health)(void *self, sn_health_t *out); /**< optional */
    const void *ops;                             /**< the kind's table */
} sn_plugin_t;

/** The one exported symbol. @p host is the loader's table (instance == NULL). */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host);

/** Fill a descriptor's ABI fields. */
#define SN_PLUGIN_ABI SN_ABI_MAJOR, SN_ABI_MINOR, (uint32_t)sizeof(sn_plugin_t)

#ifdef __cplusplus
}
#endif
#endif /* SENTINEL_PLUGIN_H */
