/**
 * @file sqlite.c
 * Store `sqlite`: the embedded store offering all four capabilities (TELEMETRY, VECTOR, STATE,
 * AUDIT) in one SQLite database file.
 *
 * Threads. Every operation is copied into a job on the loop (the caller's arguments are borrowed
 * only for the call), runs on the host's offload pool and completes with done() on the loop.
 * There is one connection per instance, opened SQLITE_OPEN_FULLMUTEX and additionally guarded by
 * our own mutex so that a job's statement sequence (BEGIN ... COMMIT, sqlite3_changes()) is never
 * interleaved with another job's: jobs on one instance run one at a time. create() opens the file
 * and applies the schema migrations synchronously; that is allowed because create runs before
 * the loop starts (and before any thread does).
 *
 * Files. The database runs in WAL mode with a busy timeout, so several processes (two sentineld
 * instances, or sentinelctl beside the daemon) may open the same file: readers never block,
 * writers wait up to busy_timeout for each other. Writing transactions start with
 * BEGIN IMMEDIATE so a lock conflict shows up (and waits) at BEGIN instead of deadlocking at the
 * first write. Migrations run in one IMMEDIATE transaction, so two processes that open a new file
 * at once apply them exactly once. Vectors are stored as float32 in host byte order.
 *
 * Audit. The audit table is append-only: triggers abort every UPDATE and every DELETE, except a
 * DELETE issued by retention (sq_audit_retain): inside one transaction it records the newest
 * record it drops in audit_anchor (seq, hash), inserts the flag row in audit_retention, deletes
 * the records at or below the anchor and removes the flag again, so no other connection ever sees
 * the flag. The delete trigger lets a row through only while the flag exists and only when its
 * seq is at or below the newest anchor; the chain stays verifiable from the first kept record.
 * Retention is off unless audit_retention is set (the core does not ask for it yet).
 *
 * Maintenance. Every maintenance_interval (default hourly) a job deletes telemetry points older
 * than telemetry_retention (by event time) and, when enabled, audit records older than
 * audit_retention.
 */
#include <sentinel/plugin.h>

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SQ_MAX_INFLIGHT 1024 /**< operations accepted and not yet completed, per instance */
#define SQ_MAX_BATCH 100000  /**< points in one telemetry_write */
#define SQ_MAX_WINDOW 100000 /**< points in one telemetry_window answer */
#define SQ_MAX_DIM 65536     /**< floats in one vector */
#define SQ_MAX_K 1000        /**< matches in one vector_search answer */
#define SQ_MAX_OPEN 100000   /**< ids in one state_list_open answer */
#define SQ_AUDIT_LIMIT 1000  /**< audit_query default limit */
#define SQ_AUDIT_LIMIT_MAX 10000

typedef struct sq {
    const sn_host_t *host;
    sqlite3 *db;
    pthread_mutex_t mu; /* one job on the connection at a time */
    int64_t max_vectors;
    int64_t tel_retention_ms;   /* 0: keep forever */
    int64_t audit_retention_ms; /* 0: keep forever */
    int64_t maint_ms;
    sn_timer_t *maint; /* loop only */
    int maint_busy;    /* loop only: a maintenance job is in flight */
    size_t inflight;   /* loop only: jobs accepted and not yet completed */
    int stopping;      /* loop only: stop_done fires when inflight reaches 0 */
    int destroyed;     /* loop only: free once the last job completes */
    sn_done_fn stop_done;
    void *stop_arg;
    atomic_int failing; /* the last job failed with an I/O error (health) */
} sq_t;

typedef struct sq_point {
    int64_t series, ts;
    double value;
} sq_point_t;

typedef struct sq_job sq_job_t;
struct sq_job {
    sq_t *s;
    void (*work)(sq_job_t *j); /* on an offload thread, under s->mu; NULL: complete at once */
    sn_done_fn done;           /* NULL for maintenance */
    void *arg;
    int status;
    json_t *result;
    int64_t now_ms;
    /* Inputs, all owned by the job. */
    char *id, *owner, *collection;
    char *text;   /* checkpoint doc, vector payload or audit record, serialized on the loop */
    char *col[5]; /* append: ts, actor, action, incident, hash; query: see SQ_F_* */
    int64_t version, ttl_ms, seq, from_ms, to_ms;
    int64_t series; /* telemetry series, the uint64_t hash stored as the same 64 bits */
    int open;
    size_t limit, n, dim;
    double min_score;
    float *vec;
    sq_point_t *pts;
};

enum { SQ_A_TS, SQ_A_ACTOR, SQ_A_ACTION, SQ_A_INCIDENT, SQ_A_HASH };
enum { SQ_F_ACTOR, SQ_F_ACTION, SQ_F_INCIDENT, SQ_F_SINCE, SQ_F_UNTIL };

static const sn_param_t sq_params[] = {
    {"path", SN_T_STRING, NULL, SN_PARAM_REQUIRED,
     "database file (created if missing); \":memory:\" for a private in-memory database"},
    {"busy_timeout", SN_T_DURATION, "5s", 0,
     "how long to wait for a lock held by another connection or process"},
    {"telemetry_retention", SN_T_DURATION, "7d", 0,
     "telemetry points older than this (event time) are deleted; 0 keeps them forever"},
    {"audit_retention", SN_T_DURATION, "0", 0,
     "audit records older than this are deleted behind an anchor hash; 0 (default) keeps all"},
    {"maintenance_interval", SN_T_DURATION, "1h", 0, "how often retention runs"},
    {"max_vector_rows", SN_T_INT, "100000", 0,
     "vectors kept over all collections; the oldest are evicted beyond it"},
    {"synchronous", SN_T_STRING, "FULL", 0,
     "SQLite synchronous mode: FULL (durable checkpoints and audit) or NORMAL"},
    {NULL, 0, NULL, 0, NULL},
};

/*
 * Versioned migrations: entry i brings the schema from version i to i + 1. Never edit an entry
 * that has shipped; append a new one.
 */
static const char *const sq_migrations[] = {
    /* 1: the four capabilities' tables, append-only audit */
    "CREATE TABLE checkpoints(id TEXT PRIMARY KEY, version INTEGER NOT NULL, open INTEGER NOT "
    "NULL, doc TEXT NOT NULL, updated_at INTEGER NOT NULL, lease_owner TEXT, lease_until "
    "INTEGER);"
    "CREATE INDEX checkpoints_open ON checkpoints(open, updated_at);"
    "CREATE TABLE audit(seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, actor TEXT, action TEXT, "
    "incident TEXT, record TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE TABLE audit_retention(active INTEGER NOT NULL);"
    "CREATE TABLE audit_anchor(seq INTEGER PRIMARY KEY, hash TEXT NOT NULL);"
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is "
    "append-only'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit WHEN (SELECT count(*) FROM "
    "audit_retention WHERE active = 1) = 0 BEGIN SELECT RAISE(ABORT, 'audit is append-only'); "
    "END;"
    "CREATE TABLE vectors(collection TEXT NOT NULL, id TEXT NOT NULL, dim INTEGER NOT NULL, vec "
    "BLOB NOT NULL, payload TEXT, PRIMARY KEY(collection, id));"
    "CREATE TABLE points(series INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL);"
    "CREATE INDEX points_series_ts ON points(series, ts);",
    /* 2: retention may only delete at or below an anchor; indexes for the audit filters */
    "DROP TRIGGER audit_no_delete;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit WHEN NOT EXISTS (SELECT 1 FROM "
    "audit_retention WHERE active = 1) OR OLD.seq > (SELECT coalesce(max(seq), 0) FROM "
    "audit_anchor) BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"
    "CREATE INDEX audit_ts ON audit(ts);"
    "CREATE INDEX audit_incident ON audit(incident, seq);",
};
#define SQ_SCHEMA_VERSION ((int)(sizeof(sq_migrations) / sizeof(sq_migrations[0])))

/* ---- helpers -------------------------------------------------------------------------------- */

/* Map a SQLite result to an SN_E* code; failures other than constraint violations are logged
 * and counted. Thread: any (call it under s->mu so errmsg is ours). */
static int sq_status(sq_t *s, int rc, const char *what)
{
    int st;
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_CONSTRAINT:
        return SN_ECONFLICT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        st = SN_EAGAIN;
        break;
    case SQLITE_NOMEM:
        st = SN_ENOMEM;
        break;
    default:
        st = SN_EIO;
        break;
    }
    s->host->log(s->host, SN_LOG_ERROR, "%s failed: %s", what, sqlite3_errmsg(s->db));
    s->host->metric(s->host, SN_METRIC_COUNTER, "store_errors_total",
                    "Store operations that failed in the database", 1);
    return st;
}

static int sq_exec(sq_t *s, const char *sql, const char *what)
{
    return sq_status(s, sqlite3_exec(s->db, sql, NULL, NULL, NULL), what);
}

/* End a transaction begun with BEGIN IMMEDIATE: commit when @p st is 0, else (or when the
 * commit fails) roll back. Returns the final status. */
static int sq_finish(sq_t *s, int st, const char *what)
{
    if (st == 0)
        st = sq_exec(s, "COMMIT", what);
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

static int sq_prepare(sq_t *s, const char *sql, sqlite3_stmt **st, const char *what)
{
    return sq_status(s, sqlite3_prepare_v2(s->db, sql, -1, st, NULL), what);
}

/* Bind text or NULL. */
static void sq_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* The core's fixed audit time format (RFC3339, UTC, milliseconds), so text order is time order. */
static void sq_format_time(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int rem = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, rem % 1000);
}

/* Count and log an operation refused at one of the bounds above. */
static void sq_reject(sq_t *s, const char *what, size_t n, size_t bound)
{
    s->host->metric(s->host, SN_METRIC_COUNTER, "store_rejected_total",
                    "Store operations refused at a bound (in flight, batch size)", 1);
    s->host->log(s->host, SN_LOG_WARN, "%s: %zu exceeds the bound of %zu: refused", what, n, bound);
}

/* ---- jobs ----------------------------------------------------------------------------------- */

static void sq_free(sq_t *s)
{
    sqlite3_close_v2(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void sq_job_free(sq_job_t *j)
{
    json_decref(j->result);
    free(j->id);
    free(j->owner);
    free(j->collection);
    free(j->text);
    for (size_t i = 0; i < sizeof(j->col) / sizeof(j->col[0]); i++)
        free(j->col[i]);
    free(j->vec);
    free(j->pts);
    free(j);
}

/* Thread: offload pool. */
static void sq_job_work(void *arg)
{
    sq_job_t *j = arg;
    sq_t *s = j->s;
    pthread_mutex_lock(&s->mu);
    j->work(j);
    atomic_store(&s->failing, j->status == SN_EIO || j->status == SN_ENOMEM);
    pthread_mutex_unlock(&s->mu);
}

/* Thread: loop. Hands the result to the caller (borrowed for the call), then releases the job;
 * the last completion after stop() finishes the stop, after destroy() frees the instance. */
static void sq_job_done(void *arg)
{
    sq_job_t *j = arg;
    sq_t *s = j->s;
    if (j->done && !s->destroyed)
        j->done(j->arg, j->status, j->status == 0 ? j->result : NULL);
    sq_job_free(j);
    s->inflight--;
    if (s->destroyed) {
        if (s->inflight == 0)
            sq_free(s);
        return;
    }
    if (s->inflight == 0 && s->stopping) {
        sn_done_fn d = s->stop_done;
        s->stopping = 0;
        s->stop_done = NULL;
        if (d)
            d(s->stop_arg, 0, NULL);
    }
}

/* Ownership: NULL (the caller has been told SN_ENOMEM) or a job the caller submits. */
static sq_job_t *sq_job_new(sq_t *s, void (*work)(sq_job_t *), sn_done_fn done, void *arg)
{
    sq_job_t *j = calloc(1, sizeof(*j));
    if (!j) {
        if (done)
            done(arg, SN_ENOMEM, NULL);
        return NULL;
    }
    j->s = s;
    j->work = work;
    j->done = done;
    j->arg = arg;
    j->now_ms = s->host->now_ms(s->host);
    return j;
}

/* Copy @p v into the job; a failed copy marks the job SN_ENOMEM. */
static char *sq_dup(sq_job_t *j, const char *v)
{
    if (!v)
        return NULL;
    char *c = strdup(v);
    if (!c && j->status == 0)
        j->status = SN_ENOMEM;
    return c;
}

static void sq_fail(sq_job_t *j, int status)
{
    if (j->status == 0)
        j->status = status;
}

/* Thread: loop. Runs the job on the offload pool, or completes it soon on the loop when it
 * already failed (the caller's done never runs inside the call that started it, unless even the
 * post queue refuses). */
static void sq_submit(sq_job_t *j)
{
    sq_t *s = j->s;
    s->inflight++;
    if (j->status == 0 && j->work && s->inflight > SQ_MAX_INFLIGHT) {
        j->status = SN_EAGAIN;
        sq_reject(s, "operations in flight", s->inflight, SQ_MAX_INFLIGHT);
    }
    if (j->status == 0 && j->work) {
        if (s->host->offload(s->host, sq_job_work, sq_job_done, j) == 0)
            return;
        j->status = SN_EAGAIN;
    }
    if (s->host->post(s->host, sq_job_done, j) != 0)
        sq_job_done(j);
}

/* ---- STATE ---------------------------------------------------------------------------------- */

static void w_state_save(sq_job_t *j)
{
    sq_t *s = j->s;
    sqlite3_stmt *st = NULL;
    const char *sql = j->version == 1
                          ? "INSERT INTO checkpoints(id, version, open, doc, updated_at) "
                            "VALUES(?1, ?2, ?3, ?4, ?5)"
                          : "UPDATE checkpoints SET version = ?2, open = ?3, doc = ?4, "
                            "updated_at = ?5 WHERE id = ?1 AND version = ?2 - 1";
    if ((j->status = sq_prepare(s, sql, &st, "state_save")) != 0)
        goto out;
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, j->version);
    sqlite3_bind_int(st, 3, j->open);
    sqlite3_bind_text(st, 4, j->text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, j->now_ms);
    if ((j->status = sq_status(s, sqlite3_step(st), "state_save")) == 0 &&
        sqlite3_changes(s->db) != 1)
        j->status = SN_ECONFLICT; /* stored version is not version - 1, or no such id */
out:
    sqlite3_finalize(st);
}

/**
 * Save a checkpoint: version 1 creates @p id, version n > 1 replaces version n - 1.
 * Ownership: all arguments are borrowed for the call (@p doc is serialized before it returns).
 * Thread: loop.
 */
static void sq_state_save(void *self, const char *id, int64_t version, int open, const json_t *doc,
                          sn_done_fn done, void *arg)
{
    sq_job_t *j = sq_job_new(self, w_state_save, done, arg);
    if (!j)
        return;
    if (!id || !*id || version < 1 || !doc)
        sq_fail(j, SN_EINVAL);
    j->id = sq_dup(j, id);
    j->version = version;
    j->open = open != 0;
    if (doc && !(j->text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY)))
        sq_fail(j, SN_ENOMEM);
    sq_submit(j);
}

static void w_state_load(sq_job_t *j)
{
    sq_t *s = j->s;
    sqlite3_stmt *st = NULL;
    if ((j->status = sq_prepare(s, "SELECT version, open, doc FROM checkpoints WHERE id = ?1", &st,
                                "state_load")) != 0)
        goto out;
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        j->status = rc == SQLITE_DONE ? SN_ENOTFOUND : sq_status(s, rc, "state_load");
        goto out;
    }
    json_t *doc = json_loads((const char *)sqlite3_column_text(st, 2), JSON_DECODE_ANY, NULL);
    if (!doc) {
        s->host->log(s->host, SN_LOG_ERROR, "checkpoint '%s' does not hold valid JSON", j->id);
        j->status = SN_EIO;
        goto out;
    }
    j->result = json_pack("{s:I,s:b,s:o}", "version", (json_int_t)sqlite3_column_int64(st, 0),
                          "open", sqlite3_column_int(st, 1), "doc", doc);
    if (!j->result)
        j->status = SN_ENOMEM;
out:
    sqlite3_finalize(st);
}

/**
 * Load a checkpoint. result: {"version": n, "open": bool, "doc": ...}; SN_ENOTFOUND when absent.
 * Ownership: @p id is borrowed for the call. Thread: loop.
 */
static void sq_state_load(void *self, const char *id, sn_done_fn done, void *arg)
{
    sq_job_t *j = sq_job_new(self, w_state_load, done, arg);
    if (!j)
        return;
    if (!id)
        sq_fail(j, SN_EINVAL);
    j->id = sq_dup(j, id);
    sq_submit(j);
}

static void w_list_open(sq_job_t *j)
{
    sq_t *s = j->s;
    sqlite3_stmt *st = NULL;
    json_t *ids = json_array();
    if (!ids) {
        j->status = SN_ENOMEM;
        goto out;
    }
    if ((j->status = sq_prepare(s,
                                "SELECT id FROM checkpoints WHERE open = 1 ORDER BY updated_at, "
                                "rowid LIMIT ?1",
                                &st, "state_list_open")) != 0)
        goto out;
    sqlite3_bind_int64(st, 1, SQ_MAX_OPEN + 1);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (json_array_size(ids) == SQ_MAX_OPEN) {
            s->host->log(s->host, SN_LOG_WARN, "more than %d open checkpoints: listing the first",
                         SQ_MAX_OPEN);
            break;
        }
        if (json_array_append_new(ids, json_string((const char *)sqlite3_column_text(st, 0)))) {
            j->status = SN_ENOMEM;
            goto out;
        }
    }
    if (rc != SQLITE_ROW && (j->status = sq_status(s, rc, "state_list_open")) != 0)
        goto out;
    j->result = json_pack("{s:O}", "ids", ids);
    if (!j->result)
        j->status = SN_ENOMEM;
out:
    json_decref(ids);
    sqlite3_finalize(st);
}

/**
 * List open checkpoints. result: {"ids": [...]}, least recently saved first.
 * Thread: loop.
 */
static void sq_state_list_open(void *self, sn_done_fn done, void *arg)
{
    sq_job_t *j = sq_job_new(self, w_list_open, done, arg);
    if (j)
        sq_submit(j);
}

static void w_lease(sq_job_t *j)
{
    sq_t *s = j->s;
    sqlite3_stmt *st = NULL;
    int64_t until = j->ttl_ms > INT64_MAX - j->now_ms ? INT64_MAX : j->now_ms + j->ttl_ms;
    /* One statement: taking the lease is atomic against every other connection. */
    if ((j->status = sq_prepare(s,
                                "UPDATE checkpoints SET lease_owner = ?2, lease_until = ?3 "
                                "WHERE id = ?1 AND (lease_owner IS NULL OR lease_owner = ?2 OR "
                                "lease_until IS NULL OR lease_until <= ?4)",
                                &st, "state_lease")) != 0)
        goto out;
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, j->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, until);
    sqlite3_bind_int64(st, 4, j->now_ms);
    if ((j->status = sq_status(s, sqlite3_step(st), "state_lease")) != 0)
        goto out;
    if (sqlite3_changes(s->db) == 1) {
        j->result = json_pack("{s:s,s:I}", "owner", j->owner, "until", (json_int_t)until);
        if (!j->result)
            j->status = SN_ENOMEM;
        goto out;
    }
    /* Not taken: held by someone else, or no such checkpoint. */
    sqlite3_finalize(st);
    st = NULL;
    if ((j->status =
             sq_prepare(s, "SELECT 1 FROM checkpoints WHERE id = ?1", &st, "state_lease")) != 0)
        goto out;
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    j->status = rc == SQLITE_ROW    ? SN_ECONFLICT
                : rc == SQLITE_DONE ? SN_ENOTFOUND
                                    : sq_status(s, rc, "state_lease");
out:
    sqlite3_finalize(st);
}

/**
 * Take or renew the lease on checkpoint @p id for @p owner until now + @p ttl_ms: granted when
 * free, expired or already @p owner's; SN_ECONFLICT when another owner holds it, SN_ENOTFOUND when
 * no such checkpoint. result: {"owner": ..., "until": epoch ms}.
 * Ownership: strings are borrowed for the call. Thread: loop.
 */
static void sq_state_lease(void *self, const char *id, const char *owner, int64_t ttl_ms,
                           sn_done_fn done, void *arg)
{
    sq_job_t *j = sq_job_new(self, w_lease, done, arg);
    if (!j)
        return;
    if (!id || !owner || !*owner || ttl_ms <= 0)
        sq_fail(j, SN_EINVAL);
    j->id = sq_dup(j, id);
    j->owner = sq_dup(j, owner);
    j->ttl_ms = ttl_ms;
    sq_submit(j);
}

/* ---- AUDIT ---------------------------------------------------------------------------------- */

static void w_audit_append(sq_job_t *j)
{
    sq_t *s = j->s;
    sqlite3_stmt *st = NULL;
    if ((j->status = sq_prepare(s,
                                "INSERT INTO audit(seq, ts, actor, action, incident, record, hash) "
                                "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                &st, "audit_append")) != 0)
        goto out;
    sqlite3_bind_int64(st, 1, j->seq);
    sq_bind_text(st, 2, j->col[SQ_A_TS]);
    sq_bind_text(st, 3, j->col[SQ_A_ACTOR]);
    sq_bind_text(st, 4, j->col[SQ_A_ACTION]);
    sq_bind_text(st, 5, j->col[SQ_A_INCIDENT]);
    sqlite3_bind_text(st, 6, j->text, -1, SQLITE_STATIC);
    sq_bind_text(st, 7, j->col[SQ_A_HASH]);
    j->status = sq_status(s, sqlite3_step(st), "audit_append"); /* seq taken: SN_ECONFLICT */
out:
    sqlite3_finalize(st);
}

/* A string member, or NULL when absent or null; -1 when present with another type. */
static int sq_opt_str(const json_t *o, const char *key, const char **out)
{
    const json_t *v = json_object_get(o, key);
    *out = json_string_value(v);
    return v && !json_is_null(v) && !json_is_string(v) ? -1 : 0;
}

/**
 * Append one audit record, stored as its canonical text (compact, sorted keys) exactly as given.
 * The record needs an integer "seq" > 0 and string "ts" and "hash"; "actor", "action" and
 * "incident" are copied into columns for queries. SN_ECONFLICT when seq is taken.
 * Ownership: @p record is borrowed for the call. Thread: loop.
 */
static void sq_audit_append(void *self, const json_t *record, sn_done_fn done, void *arg)
{
    sq_job_t *j = sq_job_new(self, w_audit_append, done, arg);
    if (!j)
        return;
    static const char *const keys[] = {"ts", "actor", "action", "incident", "hash"};
    const json_t *seq = json_object_get(record, "seq");
    if (!json_is_object(record) || !json_is_integer(seq) || json_integer_value(seq) < 1) {
        sq_fail(j, SN_EINVAL);
    } else {
        j->seq = json_integer_value(seq);
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            const char *v;
            if (sq_opt_str(record, keys[i], &v) != 0)
                sq_fail(j, SN_EINVAL);
            j->col[i] = sq_dup(j, v);
        }
        if (!j->col[SQ_A_TS] || !j->col[SQ_A_HASH] || !*j->col[SQ_A_HASH])
            sq_fail(j, SN_EINVAL);
        if (!(j->text = json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS)))
            sq_fail(j, SN_ENOMEM);
    }
    sq_submit(j);
}

static void w_audit_query(sq_job_t *j)
{
    sq_t *s = j->s;
    static const char *const conds[] = {" AND actor = ?3", " AND action = ?4", " AND incident = ?5",
                                        " AND ts >= ?6", " AND ts <= ?7"};
    char sql[512] = "SELECT seq, record FROM audit WHERE seq > ?1";
    sqlite3_stmt *st = NULL;
    json_t *recs = json_array();
    if (!recs) {
        j->status = SN_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < sizeof(conds) / sizeof(conds[0]); i++)
        if (j->col[i])
            strcat(sql, conds[i]); /* fits: 49 + 5 conditions of at most 20 + 27 < 512 */
    strcat(sql, " ORDER BY seq LIMIT ?2");
    if ((j->status = sq_prepare(s, sql, &st, "audit_query")) != 0)
        goto out;
    sqlite3_bind_int64(st, 1, j->seq);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)j->limit);
    for (size_t i = 0; i < sizeof(conds) / sizeof(conds[0]); i++)
        if (j->col[i])
            sqlite3_bind_text(st, (int)i + 3, j->col[i], -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *r = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
        if (!r) {
            /* Loud, not skipped: a silently missing record would hide tampering. */
            s->host->log(s->host, SN_LOG_ERROR, "audit record %lld is not valid JSON",
                         (long long)sqlite3_column_int64(st, 0));
            j->status = SN_EIO;
            goto out;
        }
        if (json_array_append_new(recs, r)) {
            j->status = SN_ENOMEM;
            goto out;
        }
    }
    if ((j->status = sq_status(s, rc, "audit_query")) != 0)
        goto out;
    j->result = json_pack("{s:O}", "records", recs);
    if (!j->result) {
        j->status = SN_ENOMEM;
        goto out;
    }
    /* The first page says where the kept chain starts, so a verifier can tell retention
     * (records behind an anchor) from deletion (records missing with no anchor). */
    if (j->seq == 0) {
        sqlite3_finalize(st);
        st = NULL;
        if ((j->status = sq_prepare(s,
                                    "SELECT seq, hash FROM audit_anchor ORDER BY seq DESC "
                                    "LIMIT 1",
                                    &st, "audit_query")) != 0)
            goto out;
        if ((rc = sqlite3_step(st)) == SQLITE_ROW)
            json_object_set_new(j->result, "anchor",
                                json_pack("{s:I,s:s}", "seq",
                                          (json_int_t)sqlite3_column_int64(st, 0), "hash",
                                          (const char *)sqlite3_column_text(st, 1)));
        else if ((j->status = sq_status(s, rc, "audit_query")) != 0)
            goto out;
    }
out:
    json_decref(recs);
    sqlite3_finalize(st);
}

/**
 * Query audit records in seq order. filter (optional object): "actor", "action", "incident"
 * (exact), "since", "until" (RFC3339 text compared with the records' fixed-format UTC ts,
 * inclusive), "after_seq" (exclusive), "limit" (default 1000, at most 10000).
 * result: {"records": [record objects]}, and on the first page (no after_seq) "anchor":
 * {"seq", "hash"} when retention has dropped records. SN_EINVAL for a member of the wrong type.
 * Ownership: @p filter is borrowed for the call. Thread: loop.
 */
static void sq_audit_query(void *self, const json_t *filter, sn_done_fn done, void *arg)
{
    sq_job_t *j = sq_job_new(self, w_audit_query, done, arg);
    if (!j)
        return;
    static const char *const keys[] = {"actor", "action", "incident", "since", "until"};
    j->limit = SQ_AUDIT_LIMIT;
    if (filter && !json_is_object(filter)) {
        sq_fail(j, SN_EINVAL);
    } else if (filter) {
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            const char *v;
            if (sq_opt_str(filter, keys[i], &v) != 0)
                sq_fail(j, SN_EINVAL);
            j->col[i] = sq_dup(j, v);
        }
        const json_t *after = json_object_get(filter, "after_seq");
        const json_t *limit = json_object_get(filter, "limit");
        if ((after && !json_is_integer(after) && !json_is_null(after)) ||
            (limit && !json_is_integer(limit) && !json_is_null(limit)))
            sq_fail(j, SN_EINVAL);
        j->seq = json_integer_value(after) > 0 ? json_integer_value(after) : 0;
        json_int_t l = json_integer_value(limit);
        j->limit = l <= 0                   ? SQ_AUDIT_LIMIT
                   : l > SQ_AUDIT_LIMIT_MAX ? SQ_AUDIT_LIMIT_MAX
                                            : (size_t)l;
    }
    sq_submit(j);
}

/*
 * Audit retention. Drops the records older than @p cutoff (the records' ts format) except the
 * newest record, behind an anchor. Runs in one IMMEDIATE transaction: anchor (seq, hash of the
 * newest dropped record), flag row, DELETE of every seq <= anchor, flag removed, commit; the
 * delete trigger admits exactly those rows and only while the flag exists. Not called by the
 * core: it runs from maintenance when audit_retention is set.
 * Returns the number of records dropped or a negative SN_E* code. Thread: offload, under s->mu.
 */
static int64_t sq_audit_retain(sq_t *s, const char *cutoff)
{
    sqlite3_stmt *st = NULL;
    int64_t n = 0, anchor = 0;
    char hash[160] = "";
    int rc = 0;
    if ((rc = sq_exec(s, "BEGIN IMMEDIATE", "audit retention")) != 0)
        return rc;
    if ((rc = sq_prepare(s,
                         "SELECT seq, hash FROM audit WHERE ts < ?1 AND seq < (SELECT max(seq) "
                         "FROM audit) ORDER BY seq DESC LIMIT 1",
                         &st, "audit retention")) != 0)
        goto out;
    sqlite3_bind_text(st, 1, cutoff, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        anchor = sqlite3_column_int64(st, 0);
        snprintf(hash, sizeof(hash), "%s", (const char *)sqlite3_column_text(st, 1));
    } else if ((rc = sq_status(s, step, "audit retention")) != 0) {
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (anchor == 0)
        goto out; /* nothing old enough */
    if ((rc = sq_prepare(s, "INSERT OR REPLACE INTO audit_anchor(seq, hash) VALUES(?1, ?2)", &st,
                         "audit retention")) != 0)
        goto out;
    sqlite3_bind_int64(st, 1, anchor);
    sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC);
    if ((rc = sq_status(s, sqlite3_step(st), "audit retention")) != 0)
        goto out;
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = sq_exec(s, "INSERT INTO audit_retention(active) VALUES(1)", "audit retention")) != 0)
        goto out;
    if ((rc = sq_prepare(s, "DELETE FROM audit WHERE seq <= ?1", &st, "audit retention")) != 0)
        goto out;
    sqlite3_bind_int64(st, 1, anchor);
    if ((rc = sq_status(s, sqlite3_step(st), "audit retention")) != 0)
        goto out;
    n = sqlite3_changes(s->db);
    rc = sq_exec(s, "DELETE FROM audit_retention", "audit retention");
out:
    sqlite3_finalize(st);
    rc = sq_finish(s, rc, "audit retention");
    if (rc == 0 && n > 0)
        s->host->log(s->host, SN_LOG_INFO,
                     "audit retention dropped %lld records; chain anchored at seq %lld",
                     (long long)n, (long long)anchor);
    return rc ? rc : n;
}

/* ---- VECTOR --------------------------------------------------------------------------------- */

static void w_vector_upsert(sq_job_t *j)
{
    sq_t *s = j->s;
    sqlite3_stmt *st = NULL;
    int64_t evicted = 0;
    if ((j->status = sq_exec(s, "BEGIN IMMEDIATE", "vector_upsert")) != 0)
        return;
    /* REPLACE deletes and re-inserts, so rowid order is last-write order for eviction. */
    if ((j->status = sq_prepare(s,
                                "INSERT OR REPLACE INTO vectors(collection, id, dim, vec, payload) "
                                "VALUES(?1, ?2, ?3, ?4, ?5)",
                                &st, "vector_upsert")) != 0)
        goto out;
    sqlite3_bind_text(st, 1, j->collection, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)j->dim);
    sqlite3_bind_blob(st, 4, j->vec, (int)(j->dim * sizeof(float)), SQLITE_STATIC);
    sq_bind_text(st, 5, j->text);
    if ((j->status = sq_status(s, sqlite3_step(st), "vector_upsert")) != 0)
        goto out;
    sqlite3_finalize(st);
    st = NULL;
    if ((j->status = sq_prepare(s,
                                "DELETE FROM vectors WHERE rowid IN (SELECT rowid FROM vectors "
                                "ORDER BY rowid LIMIT max(0, (SELECT count(*) FROM vectors) - ?1))",
                                &st, "vector_upsert")) != 0)
        goto out;
    sqlite3_bind_int64(st, 1, s->max_vectors);
    if ((j->status = sq_status(s, sqlite3_step(st), "vector_upsert")) != 0)
        goto out;
    evicted = sqlite3_changes(s->db);
out:
    sqlite3_finalize(st);
    j->status = sq_finish(s, j->status, "vector_upsert");
    if (j->status == 0 && evicted > 0)
        s->host->metric(s->host, SN_METRIC_COUNTER, "store_vectors_evicted_total",
                        "Vectors evicted because max_vector_rows was reached", (double)evicted);
}

/**
 * Insert or replace vector @p id of @p collection (float32, @p dim > 0) with an optional payload.
 * Beyond max_vector_rows the oldest rows over all collections are evicted.
 * Ownership: arguments are borrowed for the call (copied before it returns). Thread: loop.
 */
static void sq_vector_upsert(void *self, const char *collection, const char *id, const float *v,
                             size_t dim, const json_t *payload, sn_done_fn done, void *arg)
{
    sq_job_t *j = sq_job_new(self, w_vector_upsert, done, arg);
    if (!j)
        return;
    if (!collection || !id || !v || dim == 0 || dim > SQ_MAX_DIM) {
        sq_fail(j, SN_EINVAL);
    } else {
        j->collection = sq_dup(j, collection);
        j->id = sq_dup(j, id);
        j->dim = dim;
        if ((j->vec = malloc(dim * sizeof(float))) != NULL)
            memcpy(j->vec, v, dim * sizeof(float));
        else
            sq_fail(j, SN_ENOMEM);
        if (payload && !(j->text = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY)))
            sq_fail(j, SN_ENOMEM);
    }
    sq_submit(j);
}

typedef struct sq_cand {
    double score;
    int64_t rowid;
} sq_cand_t;

/* Better candidate first: higher score, then the older row. */
static int sq_cand_better(const sq_cand_t *a, const sq_cand_t *b)
{
    return a->score > b->score || (a->score == b->score && a->rowid < b->rowid);
}

/* Min-heap (worst candidate at the root) of the k best so far. */
static void sq_heap_down(sq_cand_t *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && sq_cand_better(&h[w], &h[l]))
            w = l;
        if (r < n && sq_cand_better(&h[w], &h[r]))
            w = r;
        if (w == i)
            return;
        sq_cand_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void sq_heap_up(sq_cand_t *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!sq_cand_better(&h[p], &h[i]))
            return;
        sq_cand_t t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

static int sq_cand_cmp(const void *a, const void *b)
{
    const sq_cand_t *x = a, *y = b;
    return sq_cand_better(x, y) ? -1 : sq_cand_better(y, x) ? 1 : 0;
}

static void w_vector_search(sq_job_t *j)
{
    sq_t *s = j->s;
    sqlite3_stmt *st = NULL;
    size_t k = j->limit, n = 0;
    sq_cand_t *heap = calloc(k ? k : 1, sizeof(*heap));
    float *row = malloc(j->dim * sizeof(float)); /* column blobs need not be aligned */
    json_t *matches = json_array();
    int rc = SQLITE_DONE, began = 0;
    if (!heap || !row || !matches) {
        j->status = SN_ENOMEM;
        goto out;
    }
    double qn = 0;
    for (size_t i = 0; i < j->dim; i++)
        qn += (double)j->vec[i] * j->vec[i];
    qn = sqrt(qn);
    /* One read transaction: the scan and the fetch of the winners see one snapshot. */
    if ((j->status = sq_exec(s, "BEGIN", "vector_search")) != 0)
        goto out;
    began = 1;
    if ((j->status =
             sq_prepare(s, "SELECT rowid, vec FROM vectors WHERE collection = ?1 AND dim = ?2", &st,
                        "vector_search")) != 0)
        goto out;
    sqlite3_bind_text(st, 1, j->collection, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)j->dim);
    while (k > 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((size_t)sqlite3_column_bytes(st, 1) != j->dim * sizeof(float))
            continue;
        memcpy(row, sqlite3_column_blob(st, 1), j->dim * sizeof(float));
        double dot = 0, rn = 0;
        for (size_t i = 0; i < j->dim; i++) {
            dot += (double)row[i] * j->vec[i];
            rn += (double)row[i] * row[i];
        }
        rn = sqrt(rn);
        sq_cand_t c = {qn > 0 && rn > 0 ? dot / (qn * rn) : 0, sqlite3_column_int64(st, 0)};
        if (c.score < j->min_score)
            continue;
        if (n < k) {
            heap[n] = c;
            sq_heap_up(heap, n++);
        } else if (sq_cand_better(&c, &heap[0])) {
            heap[0] = c;
            sq_heap_down(heap, n, 0);
        }
    }
    if (k > 0 && (j->status = sq_status(s, rc, "vector_search")) != 0)
        goto out;
    sqlite3_finalize(st);
    st = NULL;
    qsort(heap, n, sizeof(*heap), sq_cand_cmp);
    if ((j->status = sq_prepare(s, "SELECT id, payload FROM vectors WHERE rowid = ?1", &st,
                                "vector_search")) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, heap[i].rowid);
        if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
            j->status = rc == SQLITE_DONE ? SN_EIO : sq_status(s, rc, "vector_search");
            goto out;
        }
        const char *ptext = (const char *)sqlite3_column_text(st, 1);
        json_t *payload = ptext ? json_loads(ptext, JSON_DECODE_ANY, NULL) : json_null();
        json_t *m = json_pack("{s:s,s:f,s:o}", "id", (const char *)sqlite3_column_text(st, 0),
                              "score", heap[i].score, "payload", payload ? payload : json_null());
        if (!m || json_array_append_new(matches, m)) {
            j->status = SN_ENOMEM;
            goto out;
        }
    }
    j->result = json_pack("{s:O}", "matches", matches);
    if (!j->result)
        j->status = SN_ENOMEM;
out:
    sqlite3_finalize(st);
    if (began)
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL); /* read-only: nothing to lose */
    json_decref(matches);
    free(row);
    free(heap);
}

/**
 * Brute-force cosine similarity of @p v against every vector of @p collection with the same
 * dimension, on the offload thread. result: {"matches": [{"id","score","payload"}]}, best first,
 * at most @p k (capped at 1000), only scores >= @p min_score.
 * Ownership: arguments are borrowed for the call. Thread: loop.
 */
static void sq_vector_search(void *self, const char *collection, const float *v, size_t dim,
                             size_t k, double min_score, sn_done_fn done, void *arg)
{
    sq_job_t *j = sq_job_new(self, w_vector_search, done, arg);
    if (!j)
        return;
    if (!collection || !v || dim == 0 || dim > SQ_MAX_DIM) {
        sq_fail(j, SN_EINVAL);
    } else {
        j->collection = sq_dup(j, collection);
        j->dim = dim;
        j->limit = k > SQ_MAX_K ? SQ_MAX_K : k;
        j->min_score = min_score;
        if ((j->vec = malloc(dim * sizeof(float))) != NULL)
            memcpy(j->vec, v, dim * sizeof(float));
        else
            sq_fail(j, SN_ENOMEM);
    }
    sq_submit(j);
}

/* ---- TELEMETRY ------------------------------------------------------------------------------ */

static void w_tel_write(sq_job_t *j)
{
    sq_t *s = j->s;
    sqlite3_stmt *st = NULL;
    if ((j->status = sq_exec(s, "BEGIN IMMEDIATE", "telemetry_write")) != 0)
        return;
    if ((j->status = sq_prepare(s, "INSERT INTO points(series, ts, value) VALUES(?1, ?2, ?3)", &st,
                                "telemetry_write")) != 0)
        goto out;
    for (size_t i = 0; i < j->n; i++) {
        sqlite3_bind_int64(st, 1, j->pts[i].series);
        sqlite3_bind_int64(st, 2, j->pts[i].ts);
        sqlite3_bind_double(st, 3, j->pts[i].value);
        if ((j->status = sq_status(s, sqlite3_step(st), "telemetry_write")) != 0)
            goto out;
        sqlite3_reset(st);
    }
out:
    sqlite3_finalize(st);
    j->status = sq_finish(s, j->status, "telemetry_write");
}

/**
 * Write a batch of points (series, ts, value) in one transaction; all or none. At most 100000
 * points a batch (SN_ENOMEM beyond). Non-finite values are refused (SN_EINVAL).
 * Ownership: @p pts is borrowed for the call (copied before it returns). Thread: loop.
 */
static void sq_tel_write(void *self, const sn_point_t *pts, size_t n, sn_done_fn done, void *arg)
{
    sq_t *s = self;
    sq_job_t *j = sq_job_new(s, w_tel_write, done, arg);
    if (!j)
        return;
    if (n == 0) {
        j->work = NULL; /* nothing to write: complete soon with 0 */
    } else if (!pts) {
        sq_fail(j, SN_EINVAL);
    } else if (n > SQ_MAX_BATCH) {
        sq_reject(s, "telemetry batch", n, SQ_MAX_BATCH);
        sq_fail(j, SN_ENOMEM);
    } else if (!(j->pts = malloc(n * sizeof(*j->pts)))) {
        sq_fail(j, SN_ENOMEM);
    } else {
        j->n = n;
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(pts[i].value))
                sq_fail(j, SN_EINVAL);
            j->pts[i].series = (int64_t)pts[i].series; /* stored as the same 64 bits */
            j->pts[i].ts = pts[i].ts_ms;
            j->pts[i].value = pts[i].value;
        }
    }
    sq_submit(j);
}

static void w_tel_window(sq_job_t *j)
{
    sq_t *s = j->s;
    sqlite3_stmt *st = NULL;
    json_t *pts = json_array();
    if (!pts) {
        j->status = SN_ENOMEM;
        goto out;
    }
    if ((j->status = sq_prepare(s,
                                "SELECT ts, value FROM points WHERE series = ?1 AND ts >= ?2 AND "
                                "ts <= ?3 ORDER BY ts, rowid LIMIT ?4",
                                &st, "telemetry_window")) != 0)
        goto out;
    sqlite3_bind_int64(st, 1, j->series);
    sqlite3_bind_int64(st, 2, j->from_ms);
    sqlite3_bind_int64(st, 3, j->to_ms);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)j->limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *p = json_pack("[I,f]", (json_int_t)sqlite3_column_int64(st, 0),
                              sqlite3_column_double(st, 1));
        if (!p || json_array_append_new(pts, p)) {
            j->status = SN_ENOMEM;
            goto out;
        }
    }
    if ((j->status = sq_status(s, rc, "telemetry_window")) != 0)
        goto out;
    j->result = json_pack("{s:O}", "points", pts);
    if (!j->result)
        j->status = SN_ENOMEM;
out:
    json_decref(pts);
    sqlite3_finalize(st);
}

/**
 * Points of @p series with from_ms <= ts <= to_ms. result: {"points": [[ts_ms, value], ...]},
 * oldest first, the oldest @p limit of the range (0 or more than 100000: 100000).
 * Thread: loop.
 */
static void sq_tel_window(void *self, uint64_t series, int64_t from_ms, int64_t to_ms, size_t limit,
                          sn_done_fn done, void *arg)
{
    sq_job_t *j = sq_job_new(self, w_tel_window, done, arg);
    if (!j)
        return;
    j->series = (int64_t)series;
    j->from_ms = from_ms;
    j->to_ms = to_ms;
    j->limit = limit == 0 || limit > SQ_MAX_WINDOW ? SQ_MAX_WINDOW : limit;
    sq_submit(j);
}

/* ---- maintenance ---------------------------------------------------------------------------- */

static void w_maintain(sq_job_t *j)
{
    sq_t *s = j->s;
    sqlite3_stmt *st = NULL;
    if (s->tel_retention_ms > 0) {
        if ((j->status = sq_prepare(s, "DELETE FROM points WHERE ts < ?1", &st,
                                    "telemetry retention")) != 0)
            goto out;
        sqlite3_bind_int64(st, 1, j->now_ms - s->tel_retention_ms);
        if ((j->status = sq_status(s, sqlite3_step(st), "telemetry retention")) != 0)
            goto out;
        int n = sqlite3_changes(s->db);
        if (n > 0)
            s->host->metric(s->host, SN_METRIC_COUNTER, "store_points_expired_total",
                            "Telemetry points deleted by retention", n);
    }
    if (s->audit_retention_ms > 0) {
        char cutoff[32];
        sq_format_time(j->now_ms - s->audit_retention_ms, cutoff);
        int64_t n = sq_audit_retain(s, cutoff);
        if (n < 0)
            j->status = (int)n;
        else if (n > 0)
            s->host->metric(s->host, SN_METRIC_COUNTER, "store_audit_retained_total",
                            "Audit records deleted by retention behind an anchor", (double)n);
    }
out:
    sqlite3_finalize(st);
}

static void sq_maint_done(void *arg, int status, json_t *result)
{
    (void)result;
    sq_t *s = arg;
    s->maint_busy = 0;
    if (status != 0)
        s->host->log(s->host, SN_LOG_WARN, "retention failed (%d); next try in %lld ms", status,
                     (long long)s->maint_ms);
}

/* Thread: loop (timer). At most one maintenance job at a time. */
static void sq_maint_tick(void *arg)
{
    sq_t *s = arg;
    if (s->maint_busy || s->stopping || (s->tel_retention_ms <= 0 && s->audit_retention_ms <= 0))
        return;
    sq_job_t *j = sq_job_new(s, w_maintain, sq_maint_done, s);
    if (!j)
        return;
    s->maint_busy = 1;
    sq_submit(j);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

/* Apply the pending migrations in one IMMEDIATE transaction (see the file comment). */
static int sq_migrate(sq_t *s, char *why, size_t whylen)
{
    sqlite3_stmt *st = NULL;
    int v = 0, rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "CREATE TABLE IF NOT EXISTS schema_version(v INTEGER NOT NULL)",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db, "SELECT coalesce(max(v), 0) FROM schema_version", -1, &st,
                                NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        v = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
        snprintf(why, whylen, "cannot read the schema version: %s", sqlite3_errmsg(s->db));
        goto out;
    }
    if (v > SQ_SCHEMA_VERSION) {
        snprintf(why, whylen, "database schema version %d is newer than this plugin's %d", v,
                 SQ_SCHEMA_VERSION);
        rc = SQLITE_ERROR;
        goto out;
    }
    for (int i = v; i < SQ_SCHEMA_VERSION; i++) {
        char sql[96];
        snprintf(sql, sizeof(sql), "INSERT INTO schema_version(v) VALUES(%d)", i + 1);
        if ((rc = sqlite3_exec(s->db, sq_migrations[i], NULL, NULL, NULL)) != SQLITE_OK ||
            (rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL)) != SQLITE_OK) {
            snprintf(why, whylen, "migration to schema version %d failed: %s", i + 1,
                     sqlite3_errmsg(s->db));
            goto out;
        }
    }
    if ((rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
        snprintf(why, whylen, "cannot commit the schema: %s", sqlite3_errmsg(s->db));
    else if (v < SQ_SCHEMA_VERSION)
        s->host->log(s->host, SN_LOG_INFO, "schema migrated from version %d to %d", v,
                     SQ_SCHEMA_VERSION);
out:
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : SN_EIO;
}

/**
 * Open (creating if needed) the database, set WAL, busy timeout, synchronous and foreign keys,
 * and migrate the schema. Blocking, which create may be: it runs before the loop starts.
 * Ownership: *self belongs to the plugin until destroy. Thread: loop, before it runs.
 */
static int sq_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    int rc = 0;
    char why[200] = "", sql[96];
    sqlite3_stmt *st = NULL;
    const char *path = host->cfg_str(cfg, "path");
    const char *sync = host->cfg_str(cfg, "synchronous");
    int64_t busy = host->cfg_int(cfg, "busy_timeout");
    sq_t *s = calloc(1, sizeof(*s));
    if (!s)
        return SN_ENOMEM;
    s->host = host;
    s->max_vectors = host->cfg_int(cfg, "max_vector_rows");
    s->tel_retention_ms = host->cfg_int(cfg, "telemetry_retention");
    s->audit_retention_ms = host->cfg_int(cfg, "audit_retention");
    s->maint_ms = host->cfg_int(cfg, "maintenance_interval");
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return SN_ENOMEM;
    }
    if (!path || !*path) {
        snprintf(err->msg, sizeof(err->msg), "path is empty");
        rc = SN_EINVAL;
    } else if (!sync || (strcasecmp(sync, "FULL") != 0 && strcasecmp(sync, "NORMAL") != 0)) {
        snprintf(err->msg, sizeof(err->msg), "synchronous must be FULL or NORMAL");
        rc = SN_EINVAL;
    } else if (s->max_vectors < 1) {
        snprintf(err->msg, sizeof(err->msg), "max_vector_rows must be at least 1");
        rc = SN_EINVAL;
    } else if (s->maint_ms < 1000) {
        snprintf(err->msg, sizeof(err->msg), "maintenance_interval must be at least 1s");
        rc = SN_EINVAL;
    } else if (busy < 0) {
        snprintf(err->msg, sizeof(err->msg), "busy_timeout must not be negative");
        rc = SN_EINVAL;
    }
    if (rc != 0)
        goto out;
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err->msg, sizeof(err->msg), "cannot open %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        rc = SN_EIO;
        goto out;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, busy > INT_MAX ? INT_MAX : (int)busy);
    snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s; PRAGMA foreign_keys=ON",
             strcasecmp(sync, "NORMAL") == 0 ? "NORMAL" : "FULL");
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err->msg, sizeof(err->msg), "%s: %s", path, sqlite3_errmsg(s->db));
        rc = SN_EIO;
        goto out;
    }
    /* journal_mode answers the mode in force: "memory" for :memory:, "wal" when WAL took. */
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        snprintf(err->msg, sizeof(err->msg), "%s: cannot set WAL mode: %s", path,
                 sqlite3_errmsg(s->db));
        rc = SN_EIO;
        goto out;
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if (mode && strcasecmp(mode, "wal") != 0 && strcmp(path, ":memory:") != 0)
        host->log(host, SN_LOG_WARN,
                  "%s: journal mode is %s, not WAL: other processes may block on it", path, mode);
    sqlite3_finalize(st);
    st = NULL;
    if (sq_migrate(s, why, sizeof(why)) != 0) {
        snprintf(err->msg, sizeof(err->msg), "%s: %s", path, why);
        rc = SN_EIO;
        goto out;
    }
out:
    sqlite3_finalize(st);
    if (rc != 0) {
        sq_free(s);
        return rc;
    }
    *self = s;
    return 0;
}

/** Starts the retention timer. Thread: loop. */
static int sq_start(void *self)
{
    sq_t *s = self;
    if (s->tel_retention_ms <= 0 && s->audit_retention_ms <= 0)
        return 0;
    s->maint = s->host->timer_add(s->host, s->maint_ms, 1, sq_maint_tick, s);
    if (!s->maint) {
        s->host->log(s->host, SN_LOG_ERROR, "cannot start the retention timer");
        return SN_ENOMEM;
    }
    return 0;
}

/**
 * Stop maintenance and call @p done (may be NULL) once every operation in flight completed.
 * Operations submitted meanwhile are still served and waited for. Thread: loop.
 */
static void sq_stop(void *self, sn_done_fn done, void *arg)
{
    sq_t *s = self;
    if (s->maint) {
        s->host->timer_del(s->maint);
        s->maint = NULL;
    }
    if (s->inflight == 0) {
        if (done)
            done(arg, 0, NULL);
        return;
    }
    s->stopping = 1;
    s->stop_done = done;
    s->stop_arg = arg;
}

/**
 * Close the database. Normally called after stop() drained; if operations are still in flight,
 * the instance is freed when the last one completes and their done callbacks are not called.
 * Thread: loop.
 */
static void sq_destroy(void *self)
{
    sq_t *s = self;
    if (s->maint) {
        s->host->timer_del(s->maint);
        s->maint = NULL;
    }
    s->destroyed = 1;
    if (s->inflight == 0) {
        sq_free(s);
        return;
    }
    s->host->log(s->host, SN_LOG_WARN,
                 "destroyed with %zu operations in flight: their results are dropped", s->inflight);
}

/**
 * Healthy when a trivial query on the schema works. Never waits on the loop: when a job holds
 * the connection, the answer is the outcome of the last job. Thread: loop.
 */
static int sq_health(void *self, sn_health_t *out)
{
    sq_t *s = self;
    if (pthread_mutex_trylock(&s->mu) != 0) {
        out->ok = !atomic_load(&s->failing);
        snprintf(out->detail, sizeof(out->detail), "%s",
                 out->ok ? "busy" : "busy; the last operation failed");
        return 0;
    }
    int rc = sqlite3_exec(s->db, "SELECT max(v) FROM schema_version", NULL, NULL, NULL);
    out->ok = rc == SQLITE_OK;
    if (out->ok)
        snprintf(out->detail, sizeof(out->detail), "%zu operations in flight", s->inflight);
    else
        snprintf(out->detail, sizeof(out->detail), "query failed: %s", sqlite3_errmsg(s->db));
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static const sn_store_ops_t sq_ops = {
    .struct_size = sizeof(sn_store_ops_t),
    .caps = SN_STORE_TELEMETRY | SN_STORE_VECTOR | SN_STORE_STATE | SN_STORE_AUDIT,
    .telemetry_write = sq_tel_write,
    .telemetry_window = sq_tel_window,
    .vector_upsert = sq_vector_upsert,
    .vector_search = sq_vector_search,
    .state_save = sq_state_save,
    .state_load = sq_state_load,
    .state_list_open = sq_state_list_open,
    .state_lease = sq_state_lease,
    .audit_append = sq_audit_append,
    .audit_query = sq_audit_query,
};

static const sn_plugin_t sq_plugin = {
    .abi_major = SN_ABI_MAJOR,
    .abi_minor = SN_ABI_MINOR,
    .struct_size = sizeof(sn_plugin_t),
    .kind = SN_STORE,
    .type = "sqlite",
    .version = "1.1.0",
    .summary = "embedded store: state, audit, vectors and telemetry in one WAL-mode SQLite file",
    .params = sq_params,
    .create = sq_create,
    .start = sq_start,
    .stop = sq_stop,
    .destroy = sq_destroy,
    .health = sq_health,
    .ops = &sq_ops,
};

/** The plugin's descriptor. Ownership: static. Thread: loader. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &sq_plugin;
}
