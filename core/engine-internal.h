/**
 * @file engine-internal.h
 * The engine's private state, shared by engine.c (lifecycle), incident.c (documents),
 * correlate.c (anomalies -> incidents), workflow.c (node execution), auditlog.c (the chain)
 * and http_api.c.
 */
#ifndef SENTINEL_ENGINE_INTERNAL_H
#define SENTINEL_ENGINE_INTERNAL_H

#include "engine.h"
#include "telemetry.h"

#include <stdatomic.h>

struct evhttp;
struct event;
typedef struct sn_api sn_api_t;

/** A running plugin instance. */
typedef struct sn_live {
    sn_instance_t *in; /**< borrowed from the model */
    sn_host_t host;
    void *self;
    int created, started;
    /* executors: the core's safety state */
    sn_bucket_t per_minute, per_hour;
    sn_breaker_t breaker;
} sn_live_t;

typedef struct sn_incident {
    struct sn_incident *next;
    struct sn_engine *eng;
    char id[37];
    json_t *doc;
    int64_t version;           /**< last version saved (0 = never) */
    int node;                  /**< cursor: graph node to run, -1 = none */
    int open;                  /**< not closed */
    int gathering;             /**< still collecting anomalies */
    int busy;                  /**< a step or checkpoint is in flight */
    int waiting;               /**< waiting for a human decision */
    int64_t first_ts, last_ts; /**< event time of its anomalies */
    int64_t opened_mono;
    int64_t executed_watermark; /**< event time when the last action ran */
    double max_score_before;    /**< strongest anomaly before the last action */
    int escalated_signal;       /**< a stronger anomaly arrived after an action */
    void *step_ctx;             /**< the running step's context, for checkpoint callbacks */
    int saves_failed;
    int saving;             /**< a checkpoint is in flight (one at a time: versions) */
    void *save_queue;       /**< checkpoints asked for meanwhile, in order (workflow.c) */
    int lost;               /**< another instance took it over: this one stops */
    int lease_busy;         /**< a lease call is in flight */
    int64_t lease_until;    /**< monotonic ms the lease holds until (as far as we know) */
    int64_t lease_renew_at; /**< monotonic ms of the next renewal */
} sn_incident_t;

/** Correlate's memory of one series: votes of the current window, recent anomaly times. */
#define SN_FLAP_MAX 16
typedef struct sn_cseries {
    struct sn_cseries *next;
    uint64_t key;
    int64_t last_ts;
    int64_t vote_start; /**< event time the current vote window opened */
    double votes;
    uint32_t voters; /**< detectors (instance index, first 32) that voted in the window */
    int passed;      /**< the window's anomaly went on: later verdicts in it are the same one */
    int64_t flap_ts[SN_FLAP_MAX];
    unsigned flap_n, flap_head;
    int64_t flapping_until; /**< event time until which its anomalies are suppressed */
} sn_cseries_t;
typedef struct sn_cseries_map sn_cseries_map_t;

typedef struct sn_auditlog {
    int64_t seq;
    char prev[65];
    int ready;       /**< tail loaded */
    int inflight;    /**< an append is in flight */
    json_t *pending; /**< records waiting, in order (bounded) */
} sn_auditlog_t;

struct sn_engine {
    sn_engine_opts_t opts;
    char *config_path;
    sn_runtime_t *rt;
    sn_loader_t *loader;
    sn_host_t loader_host;
    sn_model_t *model;
    sn_live_t **live; /**< parallel to model->inst; each allocated alone so its address
                          survives a reload that carries it over */
    size_t nlive;
    sn_telemetry_t *tel;
    sn_api_t *api;
    sn_live_t *state; /**< the store holding workflows and audit, or NULL */
    sn_live_t *vector;
    sn_live_t *embedder;
    sn_live_t *telemetry;             /**< store keeping points and history, or NULL */
    _Atomic uint64_t history_pending; /**< points on their way to it */
    sn_auditlog_t audit;
    sn_incident_t *incidents;
    size_t nincidents;
    json_t *changes;           /**< ring of recent change events */
    json_t *logs;              /**< ring of recent error logs */
    _Atomic int64_t watermark; /**< highest event time ingested */
    struct event *tick;
    struct event *sig_hup, *sig_term, *sig_int;
    int shutting_down;
    int stops_pending;
    struct event *drain_timer;
    int64_t drain_started;
    char instance_id[128];
    int correlate_node;
    uint64_t anomalies_delivered; /**< anomalies the loop has correlated */
    sn_model_t *reload_pending;   /**< a validated configuration waiting for a quiet moment */
    int64_t reload_since;         /**< when it started waiting (monotonic ms) */
    struct retire *retiring;      /**< old models whose instances are still stopping */
    sn_cseries_map_t *cmap;       /**< correlate's per-series memory */
    int lease_scanning;           /**< a scan for abandoned incidents is in flight */
    int64_t lease_next_scan;      /**< monotonic ms */
    struct sn_outmsg *outbox;     /**< notifications waiting, being sent, or dead */
    struct sn_silence *silences;  /**< silences and maintenance windows */
    size_t noutbox;
};

/* incident.c */
sn_incident_t *sn_incident_new(sn_engine_t *e, int64_t ts);
sn_incident_t *sn_incident_find(sn_engine_t *e, const char *id);
void sn_incident_event(sn_incident_t *inc, const char *node, const char *event, const char *fmt,
                       ...) SN_PRINTF(4, 5);
void sn_incident_set_state(sn_incident_t *inc, const char *state);
const char *sn_incident_state(const sn_incident_t *inc);
json_t *sn_incident_summary(const sn_incident_t *inc);
void sn_incident_trim(sn_engine_t *e);
/** Unlink and free an incident that was never checkpointed (a folded duplicate). */
void sn_incident_remove(sn_engine_t *e, sn_incident_t *inc);
void sn_incidents_free(sn_engine_t *e);

/* correlate.c */
void sn_correlate_anomalies(void *eng, const sn_anomaly_t *a, size_t n);
void sn_correlate_tick(sn_engine_t *e);
void sn_correlate_change(sn_engine_t *e, json_t *change);
/** An alert from another system (firing or resolved), deduplicated by fingerprint. */
void sn_correlate_alert(sn_engine_t *e, json_t *alert);
/** Refresh the incident's candidate causes from the recent change events. */
void sn_correlate_attach_changes(sn_engine_t *e, sn_incident_t *inc);
/** Plain text of what the incident is about, for embeddings. Ownership: caller frees. */
char *sn_correlate_describe(const sn_incident_t *inc);

/* history.c */
typedef struct sn_hwrite sn_hwrite_t;
/** A batch of points for the telemetry store, or NULL when none is configured. */
sn_hwrite_t *sn_history_batch(sn_engine_t *e);
int sn_history_add(sn_hwrite_t *w, const struct sn_record *r);
/** Hand the batch over (ownership taken); past the bound it is dropped and counted. @p done,
 * when set, learns on the loop whether the store kept it. */
void sn_history_submit(sn_hwrite_t *w, sn_done_fn done, void *arg);
/** Call @p done(arg, status, NULL) on the loop. Thread: any. */
void sn_history_ack(sn_engine_t *e, sn_done_fn done, void *arg, int status);
void sn_history_batch_free(sn_hwrite_t *w);
/** sn_history_fn for the telemetry plane. Thread: a worker. */
void sn_history_request(void *arg, uint64_t series, int64_t before_ms, int worker);

/* outbox.c */
typedef struct sn_outmsg sn_outmsg_t;
/** Queue @p event of @p inc for notifier instance @p notifier: recorded, then sent, retried. */
void sn_outbox_add(sn_engine_t *e, sn_incident_t *inc, const char *notifier, const char *event);
/** Send what is due. Thread: loop (the engine's tick). */
void sn_outbox_tick(sn_engine_t *e);
/** True for a state-store id that belongs to the outbox. */
int sn_outbox_is(const char *state_id);
/** Load a pending entry found in the store at start. */
void sn_outbox_resume(sn_engine_t *e, const char *id);
/** {"notifications": [...]} filtered by state (pending, dead) or all. */
json_t *sn_outbox_list(sn_engine_t *e, const char *state);
void sn_outbox_counts(sn_engine_t *e, size_t *pending, size_t *dead);
/** Nothing in flight (drain). */
int sn_outbox_idle(sn_engine_t *e);
void sn_outbox_free(sn_engine_t *e);

/* silence.c */
typedef struct sn_silence sn_silence_t;
/** The id of an active silence matching @p inc, or NULL. */
const char *sn_silence_match(sn_engine_t *e, const sn_incident_t *inc);
/** From an API body {"matchers", "starts_at", "ends_at" | "duration_s", "weekly", "comment"}.
 * SN_EINVAL/SN_ENOMEM with @p why; or 0, and @p done(arg, status, doc) once the silence is
 * stored (then audited; doc borrowed for the call) or could not be (then it is gone). With no
 * state store, done runs before this returns. Thread: loop. */
int sn_silence_create(sn_engine_t *e, const json_t *body, const char *actor, char *why, size_t cap,
                      sn_done_fn done, void *arg);
/** SN_ENOTFOUND, SN_EINVAL when already expired, SN_ENOMEM; or 0, and @p done(arg, status,
 * doc) once the expiry is stored (then audited) or could not be (then undone). */
int sn_silence_expire(sn_engine_t *e, const char *id, const char *actor, sn_done_fn done,
                      void *arg);
json_t *sn_silence_list(sn_engine_t *e);
int sn_silence_is(const char *state_id);
void sn_silence_resume(sn_engine_t *e, const char *state_id);
void sn_silences_free(sn_engine_t *e);

/* lease.c */
int sn_lease_enabled(sn_engine_t *e);
/** Renew held leases; scan for abandoned incidents every lease_ttl. Thread: loop (tick). */
void sn_lease_tick(sn_engine_t *e);
/** Try to take @p id's lease; on success load and adopt it. */
void sn_lease_take(sn_engine_t *e, const char *id);
/** Take the lease of a newly saved incident at once (no window for another instance). */
void sn_lease_claim(sn_incident_t *inc);
/** Renew the lease before an irreversible step; @p then(inc, ok) (ok = 0 and inc->lost when
 * another instance holds it). */
void sn_lease_before_acting(sn_incident_t *inc, void (*then)(sn_incident_t *, int ok));
/** Mark @p inc lost to another instance: it stops here. */
void sn_lease_lost(sn_incident_t *inc, const char *why);

/* cseries.c */
/** The entry of @p key (created), or NULL at the bound / out of memory. */
sn_cseries_t *sn_cseries_get(sn_engine_t *e, uint64_t key, int64_t ts);
size_t sn_cseries_count(const sn_engine_t *e);
void sn_cseries_free(sn_engine_t *e);

/* workflow.c */
/** Continue an incident from node @p from with @p outcome (picks the next edge). */
void sn_workflow_advance(sn_incident_t *inc, int from, const char *outcome);
/** Run the incident's cursor node (after a checkpoint, or on resume). */
void sn_workflow_run(sn_incident_t *inc);
void sn_workflow_checkpoint(sn_incident_t *inc, void (*then)(sn_incident_t *), int retry);
/** Free the checkpoints still waiting behind the one in flight (the incident is freed). */
void sn_workflow_forget_saves(sn_incident_t *inc);
int sn_workflow_decide(sn_incident_t *inc, int approve, const char *actor, const char *reason);
void sn_workflow_resume_all(sn_engine_t *e);
/** Take over an incident from a state_load result; returns it (NULL when not taken). */
sn_incident_t *sn_workflow_adopt(sn_engine_t *e, json_t *loaded);
void sn_workflow_notify(sn_incident_t *inc, const char *event);
/** Close an open incident in @p state (resolved, escalated, rejected, closed), notify, save. */
void sn_workflow_close(sn_incident_t *inc, const char *state, const char *event, const char *why);

/* auditlog.c */
void sn_auditlog_init(sn_engine_t *e);
void sn_auditlog_free(sn_engine_t *e);
int sn_auditlog_append(sn_engine_t *e, const char *actor, const char *action, const char *incident,
                       const json_t *detail);
/** True when nothing waits to be written. */
int sn_auditlog_idle(sn_engine_t *e);

/* engine.c helpers */
/** Incidents with a step or checkpoint in flight. */
int sn_engine_busy_incidents(const sn_engine_t *e);
#define SN_START_KINDS 7
/** Kinds in start order: stores first, inputs last (stop runs it backwards). */
extern const sn_kind_t sn_engine_start_order[SN_START_KINDS];
/** Allocate and create the instance @p in (not started). Errors go to @p d naming @p file and
 * the instance's line. Ownership: free with sn_engine_live_free. */
sn_live_t *sn_engine_live_new(sn_engine_t *e, sn_instance_t *in, const char *file, sn_diag_t *d);
int sn_engine_live_start(sn_live_t *lv);
/** debug, info (also NULL or unknown), warn, error. */
void sn_engine_apply_log_level(const char *level);
/** Destroy (the caller stopped it first) and free. */
void sn_engine_live_free(sn_live_t *lv);
sn_live_t *sn_engine_live(sn_engine_t *e, const char *name);
sn_live_t *sn_engine_live_at(sn_engine_t *e, int inst_index);

/* reload.c */
/** Apply a pending reload once no incident step is in flight. */
void sn_reload_tick(sn_engine_t *e);
/** Destroy what an earlier reload is still stopping (engine teardown). */
void sn_reload_free_retiring(sn_engine_t *e);

/* http_api.c */
/** Drop the routes instance @p label registered (it is being stopped). */
void sn_api_routes_drop(sn_api_t *a, const char *label);
/** Build the key table for @p m; errors to @p d. Returns NULL on error. */
struct sn_auth *sn_api_auth_for(sn_api_t *a, const sn_model_t *m, sn_diag_t *d);
/** Install a key table built by sn_api_auth_for (frees the old one) and @p max_body. */
void sn_api_reconfigure(sn_api_t *a, struct sn_auth *auth, int64_t max_body);
sn_api_t *sn_api_new(sn_engine_t *e, const char *listen, sn_diag_t *d);
void sn_api_free(sn_api_t *a);
int sn_api_port(sn_api_t *a);
int sn_api_route_add(void *eng, const char *instance, const char *method, const char *path,
                     sn_route_fn fn, void *self);
const char *sn_api_req_body(sn_route_req_t *r, size_t *len);
const char *sn_api_req_header(sn_route_req_t *r, const char *name);
void sn_api_req_reply(sn_route_req_t *r, int status, const char *content_type, const char *body,
                      size_t len);

#endif /* SENTINEL_ENGINE_INTERNAL_H */
