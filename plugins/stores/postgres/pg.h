/**
 * @file pg.h
 * Private to the `postgres` store: the instance, its connection pool and operation queue
 * (pg_conn.c), the schema migrations (pg_schema.c) and the operations of each capability
 * (pg_state.c, pg_audit.c, pg_telemetry.c). Everything here runs on the loop thread.
 */
#ifndef SN_STORE_PG_H
#define SN_STORE_PG_H

#include <sentinel/plugin.h>

#include <libpq-fe.h>
#include <stdint.h>

#define PG_MAX_CONNS 64
#define PG_MAX_PARAMS 8
#define PG_MAX_SENDS 3 /**< a first send and at most two more after lost connections */

typedef struct pg pg_t;
typedef struct pg_op pg_op_t;
typedef struct pg_conn pg_conn_t;

/** What a step function tells the queue. */
enum { PG_DONE = 0, PG_AGAIN = 1 };

/**
 * Called with the successful result of the op's current statement. Sets op->status and
 * op->result and returns PG_DONE, or prepares another statement (op->sql, op->params) for the
 * same connection and returns PG_AGAIN. Error results never reach it: the queue maps them.
 */
typedef int (*pg_step_fn)(pg_op_t *op, const PGresult *res);

/** One operation: queued, then running on a connection, then completed with done(). */
struct pg_op {
    pg_op_t *next;
    pg_t *s;
    const char *what; /**< operation name for logs */
    sn_done_fn done;  /**< NULL for internal operations (maintenance) */
    void *arg;
    const char *sql; /**< static text */
    int nparams;
    char *params[PG_MAX_PARAMS]; /**< owned; NULL is SQL NULL */
    pg_step_fn step;
    int write;  /**< changes data: a re-send after a lost connection may find it applied */
    int resent; /**< sent again after the connection died with the outcome unknown */
    int sends;
    int status;
    json_t *result;
    int64_t deadline; /**< monotonic ms: fail when still not completed */
    int64_t sent_at;  /**< monotonic ms of the current send */
    int64_t n[2];     /**< operation-specific numbers */
    pg_conn_t *conn;  /**< while running */
};

enum pg_conn_state {
    PGC_DOWN = 0,   /**< not connected; a reconnect timer may be pending */
    PGC_CONNECTING, /**< PQconnectPoll in progress */
    PGC_SETUP,      /**< session settings being applied */
    PGC_MIGRATING,  /**< this connection applies the schema migrations */
    PGC_IDLE,       /**< ready for an operation */
    PGC_BUSY,       /**< running op */
};

struct pg_conn {
    pg_t *s;
    int idx;
    PGconn *c;
    enum pg_conn_state state;
    sn_watch_t *watch;
    int watch_fd, watch_ev;
    sn_timer_t *timer;  /**< reconnect backoff, or the connect deadline */
    int64_t backoff_ms; /**< next reconnect delay */
    int64_t deadline;   /**< monotonic ms: connect or setup must finish by then */
    int attempts;       /**< failed connects since the last success */
    int was_up;         /**< has been connected before: the next success is a reconnect */
    pg_op_t *op;        /**< running operation (PGC_BUSY) */
    PGresult *res;      /**< result kept while the statement's results drain */
    int mig_step;
    int mig_from; /**< schema version found before migrating */
};

struct pg {
    const sn_host_t *host;
    char *dsn;       /**< secret: never logged */
    char where[256]; /**< host, port, database and user, for logs */
    int nconns;
    int64_t max_inflight;
    int64_t stmt_timeout_ms, op_timeout_ms, connect_timeout_ms, reconnect_max_ms;
    int64_t audit_retention_ms, tel_retention_ms, maint_ms;
    pg_conn_t conns[PG_MAX_CONNS];
    pg_op_t *qhead, *qtail; /**< waiting for a connection */
    size_t queued, inflight;
    size_t posted;    /**< completions posted to the loop and not yet run */
    sn_timer_t *tick; /**< deadlines and gauges */
    sn_timer_t *maint;
    int maint_busy;
    int started, stopping, destroyed, depth;
    int schema_ok, migrating;
    char schema_err[200]; /**< why the migrations failed; "" when they did not */
    int schema_fatal;     /**< the database is newer than this plugin: fail operations at once */
    char last_err[200];   /**< last connection error, for health */
    uint64_t rng;         /**< reconnect jitter */
    sn_done_fn stop_done;
    void *stop_arg;
};

/* ---- pg_conn.c ---- */
pg_op_t *pg_op_new(pg_t *s, const char *what, sn_done_fn done, void *arg);
/** Copy @p v into param @p i; a failed copy marks the op SN_ENOMEM. */
void pg_op_param(pg_op_t *op, int i, const char *v);
void pg_op_param_i64(pg_op_t *op, int i, int64_t v);
void pg_op_fail(pg_op_t *op, int status);
/** Queue @p op (or complete it soon on the loop when it already failed). */
void pg_submit(pg_op_t *op);
void pg_start_conns(pg_t *s);
/** Start the repeating timer that enforces deadlines. */
int pg_tick_start(pg_t *s);
/** stop(): with no connection up, fail the queued operations now. */
void pg_stop_queue(pg_t *s);
/** Fail every queued operation with @p status (done() runs later, on the loop). */
void pg_fail_queued(pg_t *s, int status, const char *why);
void pg_close_all(pg_t *s);
void pg_free_ops(pg_t *s);
int pg_conns_up(const pg_t *s);
/** Re-enter guard for callbacks that may run plugin code (done functions). */
void pg_enter(pg_t *s);
void pg_leave(pg_t *s);
void pg_free(pg_t *s);
/** Copy libpq's (multi-line) message @p msg as one short line into @p out. */
void pg_oneline(const char *msg, char *out, size_t len);

/* Connection services for the migrations (pg_schema.c). */
/** Send @p sql (one or more statements, no parameters) on @p c. */
void pg_conn_send_simple(pg_conn_t *c, const char *sql);
/** The schema is current: @p c becomes an ordinary idle connection. */
void pg_conn_migrated(pg_conn_t *c);
/** Drop @p c (it reconnects after a backoff) after logging @p why. */
void pg_conn_drop(pg_conn_t *c, const char *why);

/* ---- pg_schema.c ---- */
/** Start the migrations on @p c (PGC_MIGRATING). */
void pg_schema_begin(pg_conn_t *c);
/** The migration statement on @p c finished with @p res (NULL when the connection died). */
void pg_schema_result(pg_conn_t *c, const PGresult *res);
extern const int pg_schema_version;

/* ---- operations ---- */
void pg_state_save(void *self, const char *id, int64_t version, int open, const json_t *doc,
                   sn_done_fn done, void *arg);
void pg_state_load(void *self, const char *id, sn_done_fn done, void *arg);
void pg_state_list_open(void *self, sn_done_fn done, void *arg);
void pg_state_lease(void *self, const char *id, const char *owner, int64_t ttl_ms, sn_done_fn done,
                    void *arg);
void pg_audit_append(void *self, const json_t *record, sn_done_fn done, void *arg);
void pg_audit_query(void *self, const json_t *filter, sn_done_fn done, void *arg);
/** Retention: drop audit records older than the cutoff behind an anchor. */
void pg_audit_retain(pg_t *s, int64_t cutoff_ms, sn_done_fn done, void *arg);
void pg_tel_write(void *self, const sn_point_t *pts, size_t n, sn_done_fn done, void *arg);
void pg_tel_window(void *self, uint64_t series, int64_t from_ms, int64_t to_ms, size_t limit,
                   sn_done_fn done, void *arg);
void pg_tel_retain(pg_t *s, int64_t cutoff_ms, sn_done_fn done, void *arg);

#endif /* SN_STORE_PG_H */
