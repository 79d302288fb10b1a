/**
 * @file postgres.c
 * Store `postgres`: STATE (checkpoints, leases), AUDIT (append-only hash chain with anchored
 * retention) and, optionally, TELEMETRY in a PostgreSQL database shared by any number of
 * sentineld instances. Everything is asynchronous on the host's loop (pg_conn.c): no call here
 * ever blocks, a server restart costs a reconnect, not a crash.
 *
 * This file holds the parameters, the lifecycle (create validates without I/O; start opens the
 * pool, whose first connection applies the migrations), health, and the retention timer.
 * The DSN may carry a password (expanded by the core from ${env:...} or ${file:...}): it is a
 * secret parameter, wiped when freed, and only its host, port, database and user are logged.
 */
#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const sn_param_t pg_params[] = {
    {"dsn", SN_T_STRING, NULL, SN_PARAM_REQUIRED | SN_PARAM_SECRET,
     "libpq connection string or postgresql:// URI; put the password in ${env:NAME} or "
     "${file:/path} (only host, port, database and user are ever logged)"},
    {"connections", SN_T_INT, "2", 0, "connections in the pool (1 to 64)"},
    {"max_inflight", SN_T_INT, "1024", 0,
     "operations queued or running; beyond it an operation fails at once with SN_EAGAIN"},
    {"statement_timeout", SN_T_DURATION, "10s", 0,
     "server-side limit of one statement (0: none); a statement over it fails SN_ETIMEDOUT"},
    {"op_timeout", SN_T_DURATION, "30s", 0,
     "how long an operation may wait for a connection and run in all before it fails"},
    {"connect_timeout", SN_T_DURATION, "5s", 0, "deadline of one connection attempt"},
    {"reconnect_max", SN_T_DURATION, "5s", 0,
     "longest wait between reconnect attempts (backoff starts at 100ms and doubles)"},
    {"audit_retention", SN_T_DURATION, "0", 0,
     "audit records older than this are deleted behind an anchor hash; 0 (default) keeps all"},
    {"telemetry_retention", SN_T_DURATION, "7d", 0,
     "telemetry points older than this (event time) are deleted; 0 keeps them forever"},
    {"maintenance_interval", SN_T_DURATION, "1h", 0, "how often retention runs"},
    {NULL, 0, NULL, 0, NULL},
};

/* ---- lifecycle ------------------------------------------------------------------------------ */

void pg_free(pg_t *s)
{
    if (s->dsn) {
        explicit_bzero(s->dsn, strlen(s->dsn));
        free(s->dsn);
    }
    free(s);
}

/* "host=... port=... dbname=... user=..." from the parsed DSN: never the password. */
static int describe_dsn(pg_t *s, char *why, size_t whylen)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(s->dsn, &err);
    if (!opts) {
        /* libpq's message may quote a fragment of the string, password included: not echoed. */
        if (err)
            PQfreemem(err);
        snprintf(why, whylen,
                 "dsn is not a valid libpq connection string (keyword=value pairs or a "
                 "postgresql:// URI)");
        return SN_EINVAL;
    }
    const char *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL, *user = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = o->val;
        else if (strcmp(o->keyword, "user") == 0)
            user = o->val;
    }
    snprintf(s->where, sizeof(s->where), "host=%.80s port=%.16s dbname=%.63s user=%.63s",
             host       ? host
             : hostaddr ? hostaddr
                        : "(default)",
             port ? port : "(default)", db ? db : "(default)", user ? user : "(default)");
    PQconninfoFree(opts);
    return 0;
}

/**
 * Validate the settings and parse the DSN; no I/O (the first connection happens in start).
 * Ownership: *self belongs to the plugin until destroy. Thread: loop.
 */
static int pg_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    int rc = 0;
    const char *dsn = host->cfg_str(cfg, "dsn");
    pg_t *s = calloc(1, sizeof(*s));
    if (!s)
        return SN_ENOMEM;
    s->host = host;
    int64_t conns = host->cfg_int(cfg, "connections");
    s->max_inflight = host->cfg_int(cfg, "max_inflight");
    s->stmt_timeout_ms = host->cfg_int(cfg, "statement_timeout");
    s->op_timeout_ms = host->cfg_int(cfg, "op_timeout");
    s->connect_timeout_ms = host->cfg_int(cfg, "connect_timeout");
    s->reconnect_max_ms = host->cfg_int(cfg, "reconnect_max");
    s->audit_retention_ms = host->cfg_int(cfg, "audit_retention");
    s->tel_retention_ms = host->cfg_int(cfg, "telemetry_retention");
    s->maint_ms = host->cfg_int(cfg, "maintenance_interval");
    if (!dsn || !*dsn) {
        snprintf(err->msg, sizeof(err->msg), "dsn is empty");
        rc = SN_EINVAL;
    } else if (conns < 1 || conns > PG_MAX_CONNS) {
        snprintf(err->msg, sizeof(err->msg), "connections must be between 1 and %d", PG_MAX_CONNS);
        rc = SN_EINVAL;
    } else if (s->max_inflight < 1) {
        snprintf(err->msg, sizeof(err->msg), "max_inflight must be at least 1");
        rc = SN_EINVAL;
    } else if (s->stmt_timeout_ms < 0) {
        snprintf(err->msg, sizeof(err->msg), "statement_timeout must not be negative");
        rc = SN_EINVAL;
    } else if (s->op_timeout_ms < 100 || s->connect_timeout_ms < 100 || s->reconnect_max_ms < 100) {
        snprintf(err->msg, sizeof(err->msg),
                 "op_timeout, connect_timeout and reconnect_max must be at least 100ms");
        rc = SN_EINVAL;
    } else if (s->maint_ms < 1000) {
        snprintf(err->msg, sizeof(err->msg), "maintenance_interval must be at least 1s");
        rc = SN_EINVAL;
    } else if (s->audit_retention_ms < 0 || s->tel_retention_ms < 0) {
        snprintf(err->msg, sizeof(err->msg), "retention must not be negative");
        rc = SN_EINVAL;
    }
    if (rc != 0)
        goto out;
    s->nconns = (int)conns;
    if (!(s->dsn = strdup(dsn))) {
        rc = SN_ENOMEM;
        goto out;
    }
    rc = describe_dsn(s, err->msg, sizeof(err->msg));
out:
    if (rc != 0) {
        pg_free(s);
        return rc;
    }
    *self = s;
    return 0;
}

/* ---- maintenance ---------------------------------------------------------------------------- */

static void maint_done(void *arg, int status, json_t *result)
{
    (void)result;
    pg_t *s = arg;
    s->maint_busy--;
    if (status != 0)
        s->host->log(s->host, SN_LOG_WARN, "retention failed (%d); next try in %lld ms", status,
                     (long long)s->maint_ms);
}

/* Thread: loop (timer). At most one round of retention at a time. */
static void maint_tick(void *arg)
{
    pg_t *s = arg;
    if (s->maint_busy || s->stopping || s->destroyed)
        return;
    pg_enter(s);
    int64_t now = s->host->now_ms(s->host);
    if (s->audit_retention_ms > 0) {
        s->maint_busy++;
        pg_audit_retain(s, now - s->audit_retention_ms, maint_done, s);
    }
    if (s->tel_retention_ms > 0) {
        s->maint_busy++;
        pg_tel_retain(s, now - s->tel_retention_ms, maint_done, s);
    }
    pg_leave(s);
}

/** Opens the pool (asynchronously) and starts the deadline and retention timers. Thread: loop. */
static int pg_start(void *self)
{
    pg_t *s = self;
    if (s->started)
        return 0;
    s->started = 1;
    s->host->log(s->host, SN_LOG_INFO, "connecting to %s (%d connections)", s->where, s->nconns);
    if (pg_tick_start(s) != 0) {
        s->host->log(s->host, SN_LOG_ERROR, "cannot start the deadline timer");
        return SN_ENOMEM;
    }
    if (s->audit_retention_ms > 0 || s->tel_retention_ms > 0) {
        s->maint = s->host->timer_add(s->host, s->maint_ms, 1, maint_tick, s);
        if (!s->maint) {
            s->host->log(s->host, SN_LOG_ERROR, "cannot start the retention timer");
            return SN_ENOMEM;
        }
    }
    pg_start_conns(s);
    return 0;
}

/**
 * Stop retention and call @p done (may be NULL) once every operation in flight completed.
 * Operations submitted meanwhile are still served; when the database is unreachable (no
 * connection up, none on its first attempt), the queued ones fail
 * at once (SN_EAGAIN) instead of waiting for a server that may not come back. Thread: loop.
 */
static void pg_stop(void *self, sn_done_fn done, void *arg)
{
    pg_t *s = self;
    if (s->maint) {
        s->host->timer_del(s->maint);
        s->maint = NULL;
    }
    pg_stop_queue(s);
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
 * Close every connection (PQfinish, which never waits in non-blocking mode) and free the
 * instance. Operations still in flight are dropped without their done() being called.
 * Thread: loop.
 */
static void pg_destroy(void *self)
{
    pg_t *s = self;
    if (s->inflight > 0)
        s->host->log(s->host, SN_LOG_WARN,
                     "destroyed with %zu operations in flight: their results are dropped",
                     s->inflight);
    s->destroyed = 1;
    if (s->maint) {
        s->host->timer_del(s->maint);
        s->maint = NULL;
    }
    if (s->tick) {
        s->host->timer_del(s->tick);
        s->tick = NULL;
    }
    pg_close_all(s);
    pg_free_ops(s);
    if (s->depth == 0 && s->posted == 0)
        pg_free(s);
}

/**
 * Healthy while at least one connection is up and the schema is current; the detail says how
 * many connections are up and how many operations wait, or why none is. Never does I/O.
 * Thread: loop.
 */
static int pg_health(void *self, sn_health_t *out)
{
    pg_t *s = self;
    int up = pg_conns_up(s);
    out->ok = up > 0 && s->schema_ok && !s->schema_fatal;
    if (out->ok)
        snprintf(out->detail, sizeof(out->detail), "%d/%d connections up, %zu operations in flight",
                 up, s->nconns, s->inflight);
    else if (s->schema_err[0])
        snprintf(out->detail, sizeof(out->detail), "%s", s->schema_err);
    else if (s->last_err[0])
        snprintf(out->detail, sizeof(out->detail), "not connected: %.200s", s->last_err);
    else
        snprintf(out->detail, sizeof(out->detail), "connecting");
    return 0;
}

static const sn_store_ops_t pg_ops = {
    .struct_size = sizeof(sn_store_ops_t),
    .caps = SN_STORE_STATE | SN_STORE_AUDIT | SN_STORE_TELEMETRY,
    .telemetry_write = pg_tel_write,
    .telemetry_window = pg_tel_window,
    .state_save = pg_state_save,
    .state_load = pg_state_load,
    .state_list_open = pg_state_list_open,
    .state_lease = pg_state_lease,
    .audit_append = pg_audit_append,
    .audit_query = pg_audit_query,
};

static const sn_plugin_t pg_plugin = {
    .abi_major = SN_ABI_MAJOR,
    .abi_minor = SN_ABI_MINOR,
    .struct_size = sizeof(sn_plugin_t),
    .kind = SN_STORE,
    .type = "postgres",
    .version = "1.0.0",
    .summary = "shared PostgreSQL store: checkpoints with leases, append-only audit chain and "
               "telemetry, asynchronous and reconnecting",
    .params = pg_params,
    .create = pg_create,
    .start = pg_start,
    .stop = pg_stop,
    .destroy = pg_destroy,
    .health = pg_health,
    .ops = &pg_ops,
};

/** The plugin's descriptor. Ownership: static. Thread: loader. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &pg_plugin;
}
