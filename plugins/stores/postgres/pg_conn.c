/**
 * @file pg_conn.c
 * The `postgres` store's connection pool and operation queue, driven entirely by the host's
 * loop: libpq in non-blocking mode (PQconnectStartParams/PQconnectPoll, PQsendQueryParams,
 * PQflush, PQconsumeInput, PQisBusy) behind host fd watches, and host timers for backoff and
 * deadlines. Nothing here ever waits on the network.
 *
 * Operations wait in one FIFO queue (bounded by max_inflight together with the running ones)
 * until a connection is idle, run one at a time per connection and complete with done() posted
 * to the loop, never inside the call that started them.
 *
 * A lost connection (server restart, network error, admin termination) is closed and
 * reconnected with exponential backoff (100 ms doubling up to reconnect_max, with jitter).
 * Meanwhile operations keep waiting in the queue, each until its op_timeout deadline (then
 * SN_EAGAIN). The operation that was running on the connection is re-sent on the next
 * connection, at most PG_MAX_SENDS times in all; a write marks itself `resent`, so that if its
 * first send had in fact committed, the step function recognises its own row instead of
 * reporting a false conflict (see pg_state.c and pg_audit.c).
 */
#include "pg.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_BACKOFF_MIN_MS 100
#define PG_TICK_MS 250

static void conn_start(pg_conn_t *c);
static void conn_lost(pg_conn_t *c, const char *why);
static void pump(pg_t *s);
static void maybe_migrate(pg_t *s);

static int64_t mono(const pg_t *s)
{
    return s->host->mono_ms(s->host);
}

void pg_oneline(const char *msg, char *out, size_t len)
{
    size_t o = 0;
    if (!len)
        return;
    for (const char *p = msg ? msg : ""; *p && o + 1 < len; p++) {
        char ch = *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p;
        if (ch == ' ' && (o == 0 || out[o - 1] == ' '))
            continue;
        out[o++] = ch;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

/* ---- metrics ---------------------------------------------------------------------------- */

static void gauges(pg_t *s)
{
    s->host->metric(s->host, SN_METRIC_GAUGE, "store_queue_depth",
                    "Store operations accepted and not yet completed (queued or running)",
                    (double)s->inflight);
    s->host->metric(s->host, SN_METRIC_GAUGE, "store_connections_up",
                    "Database connections ready for operations", (double)pg_conns_up(s));
}

int pg_conns_up(const pg_t *s)
{
    int n = 0;
    for (int i = 0; i < s->nconns; i++)
        n += s->conns[i].state == PGC_IDLE || s->conns[i].state == PGC_BUSY;
    return n;
}

/* ---- re-entry guard --------------------------------------------------------------------- */

void pg_enter(pg_t *s)
{
    s->depth++;
}

void pg_leave(pg_t *s)
{
    if (--s->depth == 0 && s->destroyed && s->posted == 0)
        pg_free(s);
}

/* ---- operations ------------------------------------------------------------------------- */

pg_op_t *pg_op_new(pg_t *s, const char *what, sn_done_fn done, void *arg)
{
    pg_op_t *op = calloc(1, sizeof(*op));
    if (!op) {
        if (done)
            done(arg, SN_ENOMEM, NULL);
        return NULL;
    }
    op->s = s;
    op->what = what;
    op->done = done;
    op->arg = arg;
    op->deadline = mono(s) + s->op_timeout_ms;
    return op;
}

void pg_op_fail(pg_op_t *op, int status)
{
    if (op->status == 0)
        op->status = status;
}

void pg_op_param(pg_op_t *op, int i, const char *v)
{
    free(op->params[i]);
    op->params[i] = NULL;
    if (v && !(op->params[i] = strdup(v)))
        pg_op_fail(op, SN_ENOMEM);
    if (i >= op->nparams)
        op->nparams = i + 1;
}

void pg_op_param_i64(pg_op_t *op, int i, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    pg_op_param(op, i, buf);
}

static void op_free(pg_op_t *op)
{
    for (int i = 0; i < PG_MAX_PARAMS; i++)
        free(op->params[i]);
    json_decref(op->result);
    free(op);
}

/* Thread: loop (posted). Hands the result to the caller, then releases the op; the last
 * completion after stop() finishes the stop. */
static void op_posted(void *arg)
{
    pg_op_t *op = arg;
    pg_t *s = op->s;
    s->posted--;
    pg_enter(s);
    s->inflight--;
    if (!s->destroyed) {
        if (op->done)
            op->done(op->arg, op->status, op->status == 0 ? op->result : NULL);
        gauges(s);
    }
    op_free(op);
    if (!s->destroyed && s->stopping && s->inflight == 0) {
        sn_done_fn d = s->stop_done;
        s->stopping = 0;
        s->stop_done = NULL;
        if (d)
            d(s->stop_arg, 0, NULL);
    }
    pg_leave(s);
}

/* Complete @p op on the loop soon (never inside the current call chain). */
static void op_finish(pg_op_t *op)
{
    pg_t *s = op->s;
    op->conn = NULL;
    s->posted++;
    if (s->host->post(s->host, op_posted, op) != 0) {
        /* The post queue refused: complete now rather than lose the callback. */
        s->depth++;
        op_posted(op);
        s->depth--;
    }
}

static void enqueue(pg_t *s, pg_op_t *op, int front)
{
    op->next = NULL;
    if (front) {
        op->next = s->qhead;
        s->qhead = op;
        if (!s->qtail)
            s->qtail = op;
    } else {
        if (s->qtail)
            s->qtail->next = op;
        else
            s->qhead = op;
        s->qtail = op;
    }
    s->queued++;
}

static pg_op_t *dequeue(pg_t *s)
{
    pg_op_t *op = s->qhead;
    if (!op)
        return NULL;
    s->qhead = op->next;
    if (!s->qhead)
        s->qtail = NULL;
    op->next = NULL;
    s->queued--;
    return op;
}

void pg_submit(pg_op_t *op)
{
    pg_t *s = op->s;
    s->inflight++;
    if (op->status == 0 && s->schema_fatal)
        op->status = SN_EIO;
    if (op->status == 0 && (int64_t)s->inflight > s->max_inflight) {
        op->status = SN_EAGAIN;
        s->host->metric(s->host, SN_METRIC_COUNTER, "store_rejected_total",
                        "Store operations refused at a bound (in flight, batch size)", 1);
        s->host->log(s->host, SN_LOG_WARN, "%s refused: %lld operations in flight (max_inflight)",
                     op->what, (long long)s->max_inflight);
    }
    if (op->status != 0) {
        op_finish(op);
        return;
    }
    enqueue(s, op, 0);
    gauges(s);
    pump(s);
}

/* Fail every queued operation with @p status (their done() runs later, on the loop). */
static void fail_queued(pg_t *s, int status, int64_t only_before, const char *why)
{
    /* Detach the queue first: a completion may queue new operations. */
    pg_op_t *op = s->qhead;
    size_t n = 0;
    s->qhead = s->qtail = NULL;
    s->queued = 0;
    while (op) {
        pg_op_t *next = op->next;
        if (only_before && op->deadline > only_before) {
            enqueue(s, op, 0);
        } else {
            op->status = status;
            n++;
            op_finish(op);
        }
        op = next;
    }
    if (n > 0)
        s->host->log(s->host, SN_LOG_WARN, "%zu queued operations failed: %s", n, why);
}

void pg_fail_queued(pg_t *s, int status, const char *why)
{
    fail_queued(s, status, 0, why);
}

/* ---- sending and receiving -------------------------------------------------------------- */

static void conn_io(int fd, int ev, void *arg);

static int set_watch(pg_conn_t *c, int events)
{
    int fd = c->c ? PQsocket(c->c) : -1;
    if (c->watch && c->watch_fd == fd && c->watch_ev == events)
        return 0;
    if (c->watch)
        c->s->host->fd_unwatch(c->watch);
    c->watch = NULL;
    if (fd < 0)
        return -1;
    c->watch = c->s->host->fd_watch(c->s->host, fd, events, conn_io, c);
    c->watch_fd = fd;
    c->watch_ev = events;
    return c->watch ? 0 : -1;
}

/* Push pending output; watch for writability while some remains. */
static void conn_flush(pg_conn_t *c)
{
    int r = PQflush(c->c);
    if (r < 0) {
        conn_lost(c, PQerrorMessage(c->c));
        return;
    }
    if (set_watch(c, r == 1 ? 3 : 1) != 0)
        conn_lost(c, "cannot watch the connection's socket");
}

void pg_conn_send_simple(pg_conn_t *c, const char *sql)
{
    if (!PQsendQuery(c->c, sql)) {
        conn_lost(c, PQerrorMessage(c->c));
        return;
    }
    conn_flush(c);
}

static void conn_send(pg_conn_t *c, pg_op_t *op)
{
    c->op = op;
    c->state = PGC_BUSY;
    op->conn = c;
    op->sent_at = mono(c->s);
    if (!PQsendQueryParams(c->c, op->sql, op->nparams, NULL, (const char *const *)op->params, NULL,
                           NULL, 0)) {
        conn_lost(c, PQerrorMessage(c->c));
        return;
    }
    conn_flush(c);
}

static void pump(pg_t *s)
{
    if (!s->schema_ok || s->destroyed)
        return;
    for (int i = 0; i < s->nconns && s->qhead; i++) {
        pg_conn_t *c = &s->conns[i];
        if (c->state != PGC_IDLE)
            continue;
        pg_op_t *op = dequeue(s);
        op->sends++;
        conn_send(c, op);
    }
}

/* Errors that mean the session is gone rather than the statement refused. */
static int session_gone(pg_conn_t *c, const PGresult *res)
{
    if (PQstatus(c->c) == CONNECTION_BAD)
        return 1;
    if (!res)
        return 0;
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (!st)
        return PQresultStatus(res) == PGRES_FATAL_ERROR;
    return strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 ||
           strcmp(st, "57P03") == 0;
}

static int is_error(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY;
}

/* Map a failed statement to an SN_E* code; everything but a conflict is logged and counted. */
static int map_error(pg_t *s, const char *what, const PGresult *res)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char line[200];
    int code = SN_EIO;
    if (!st)
        st = "";
    if (strcmp(st, "23505") == 0)
        return SN_ECONFLICT;
    if (strcmp(st, "57014") == 0)
        code = SN_ETIMEDOUT; /* statement_timeout */
    else if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 || strcmp(st, "55P03") == 0 ||
             strncmp(st, "53", 2) == 0)
        code = SN_EAGAIN;
    else if (strncmp(st, "22", 2) == 0)
        code = SN_EINVAL; /* data exception: e.g. \u0000 in a document */
    else if (strcmp(st, "42501") == 0 || strcmp(st, "P0001") == 0)
        code = SN_EDENIED;
    pg_oneline(msg ? msg : (res ? PQresultErrorMessage(res) : "no result"), line, sizeof(line));
    s->host->log(s->host, SN_LOG_ERROR, "%s failed: %s (SQLSTATE %s)", what, line,
                 *st ? st : "none");
    s->host->metric(s->host, SN_METRIC_COUNTER, "store_errors_total",
                    "Store operations that failed in the database", 1);
    return code;
}

static void op_result(pg_conn_t *c, const PGresult *res)
{
    pg_t *s = c->s;
    pg_op_t *op = c->op;
    double secs = (double)(mono(s) - op->sent_at) / 1000.0;
    s->host->metric(s->host, SN_METRIC_COUNTER, "store_queries_total",
                    "Statements the database answered", 1);
    s->host->metric(s->host, SN_METRIC_COUNTER, "store_query_seconds_total",
                    "Time from sending a statement to its last result", secs);
    int again = 0;
    if (!res || is_error(res))
        op->status = map_error(s, op->what, res);
    else
        again = op->step(op, res) == PG_AGAIN && op->status == 0;
    if (again) {
        conn_send(c, op); /* next statement of the same operation */
        return;
    }
    c->op = NULL;
    c->state = PGC_IDLE;
    op_finish(op);
}

static void setup_done(pg_conn_t *c, const PGresult *res)
{
    pg_t *s = c->s;
    if (!res || is_error(res)) {
        char line[200];
        pg_oneline(res ? PQresultErrorMessage(res) : "no result", line, sizeof(line));
        pg_conn_drop(c, line);
        return;
    }
    if (c->was_up || c->attempts > 0) {
        s->host->metric(s->host, SN_METRIC_COUNTER, "store_reconnects_total",
                        "Database connections re-established after a failure", 1);
        if (c->attempts == 0)
            s->host->log(s->host, SN_LOG_INFO, "connection %d to %s re-established", c->idx,
                         s->where);
        else
            s->host->log(s->host, SN_LOG_INFO, "connection %d to %s established after %d failed %s",
                         c->idx, s->where, c->attempts, c->attempts == 1 ? "attempt" : "attempts");
    }
    c->attempts = 0;
    c->was_up = 1;
    c->backoff_ms = PG_BACKOFF_MIN_MS;
    c->state = PGC_IDLE;
    if (set_watch(c, 1) != 0) {
        conn_lost(c, "cannot watch the connection's socket");
        return;
    }
    gauges(s);
    maybe_migrate(s);
    pump(s);
}

/* The statement (or statement list) running on @p c has returned all its results. */
static void statement_done(pg_conn_t *c)
{
    PGresult *res = c->res;
    c->res = NULL;
    if (res && is_error(res) && session_gone(c, res)) {
        char line[200];
        pg_oneline(PQresultErrorMessage(res), line, sizeof(line));
        PQclear(res);
        conn_lost(c, line);
        return;
    }
    switch (c->state) {
    case PGC_SETUP:
        setup_done(c, res);
        break;
    case PGC_MIGRATING:
        pg_schema_result(c, res);
        break;
    case PGC_BUSY:
        op_result(c, res);
        pump(c->s);
        break;
    default:
        break;
    }
    PQclear(res);
}

static void conn_read(pg_conn_t *c)
{
    if (!PQconsumeInput(c->c)) {
        conn_lost(c, PQerrorMessage(c->c));
        return;
    }
    if (c->state == PGC_IDLE) {
        /* Nothing is expected: only a notice, or the server closing the session. */
        PGnotify *n;
        while ((n = PQnotifies(c->c)) != NULL)
            PQfreemem(n);
        if (PQstatus(c->c) == CONNECTION_BAD)
            conn_lost(c, PQerrorMessage(c->c));
        return;
    }
    while (c->c && !PQisBusy(c->c)) {
        PGresult *r = PQgetResult(c->c);
        if (!r) {
            statement_done(c);
            return;
        }
        /* Keep the first error, else the last result (the one a statement list ends with). */
        if (!c->res) {
            c->res = r;
        } else if (is_error(c->res)) {
            PQclear(r);
        } else {
            PQclear(c->res);
            c->res = r;
        }
    }
    if (c->c && PQstatus(c->c) == CONNECTION_BAD)
        conn_lost(c, PQerrorMessage(c->c));
}

/* ---- connecting ------------------------------------------------------------------------- */

static void notice_cb(void *arg, const char *msg)
{
    pg_t *s = arg;
    char line[200];
    pg_oneline(msg, line, sizeof(line));
    s->host->log(s->host, SN_LOG_DEBUG, "server notice: %s", line);
}

static void connected(pg_conn_t *c)
{
    pg_t *s = c->s;
    char sql[160];
    if (PQsetnonblocking(c->c, 1) != 0) {
        conn_lost(c, PQerrorMessage(c->c));
        return;
    }
    c->state = PGC_SETUP;
    snprintf(sql, sizeof(sql),
             "SET statement_timeout = %lld; SET idle_in_transaction_session_timeout = %lld",
             (long long)s->stmt_timeout_ms,
             (long long)(s->stmt_timeout_ms > 0 ? 2 * s->stmt_timeout_ms : 60000));
    pg_conn_send_simple(c, sql);
}

static void connect_poll(pg_conn_t *c)
{
    switch (PQconnectPoll(c->c)) {
    case PGRES_POLLING_READING:
        if (set_watch(c, 1) != 0)
            conn_lost(c, "cannot watch the connection's socket");
        break;
    case PGRES_POLLING_WRITING:
        if (set_watch(c, 2) != 0)
            conn_lost(c, "cannot watch the connection's socket");
        break;
    case PGRES_POLLING_OK:
        connected(c);
        break;
    default:
        conn_lost(c, PQerrorMessage(c->c));
        break;
    }
}

static void conn_io(int fd, int ev, void *arg)
{
    (void)fd;
    pg_conn_t *c = arg;
    pg_t *s = c->s;
    pg_enter(s);
    if (c->state == PGC_CONNECTING) {
        connect_poll(c);
    } else if (c->c) {
        if ((ev & 2) && c->state != PGC_IDLE)
            conn_flush(c);
        if ((ev & 1) && c->c)
            conn_read(c);
    }
    pg_leave(s);
}

static void reconnect_fire(void *arg)
{
    pg_conn_t *c = arg;
    pg_t *s = c->s;
    c->timer = NULL; /* one-shot: released by the host */
    pg_enter(s);
    if (!s->destroyed && c->state == PGC_DOWN)
        conn_start(c);
    pg_leave(s);
}

static void schedule_reconnect(pg_conn_t *c)
{
    pg_t *s = c->s;
    int64_t d = c->backoff_ms;
    /* Jitter up to a quarter, from a generator seeded per instance, so that instances (and the
     * connections of one) do not reconnect in lockstep. */
    if (!s->rng)
        s->rng = (uint64_t)s->host->now_ms(s->host) ^ ((uint64_t)(uintptr_t)s << 16) ^ 0x9e3779b9u;
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    if (d >= 4)
        d += (int64_t)(s->rng % (uint64_t)(d / 4));
    c->backoff_ms =
        c->backoff_ms * 2 > s->reconnect_max_ms ? s->reconnect_max_ms : c->backoff_ms * 2;
    if (c->backoff_ms < PG_BACKOFF_MIN_MS)
        c->backoff_ms = PG_BACKOFF_MIN_MS;
    c->timer = s->host->timer_add(s->host, d, 0, reconnect_fire, c);
    if (!c->timer)
        s->host->log(s->host, SN_LOG_ERROR, "cannot schedule a reconnect of connection %d", c->idx);
}

static void conn_start(pg_conn_t *c)
{
    pg_t *s = c->s;
    static const char *const keys[] = {"dbname", "fallback_application_name", NULL};
    const char *vals[] = {s->dsn, "sentineld", NULL};
    c->c = PQconnectStartParams(keys, vals, 1);
    if (!c->c) {
        conn_lost(c, "out of memory");
        return;
    }
    if (PQstatus(c->c) == CONNECTION_BAD) {
        conn_lost(c, PQerrorMessage(c->c));
        return;
    }
    PQsetNoticeProcessor(c->c, notice_cb, s);
    c->state = PGC_CONNECTING;
    c->deadline = mono(s) + s->connect_timeout_ms;
    /* Per the libpq protocol, start as if PQconnectPoll had asked for writability. */
    if (set_watch(c, 2) != 0)
        conn_lost(c, "cannot watch the connection's socket");
}

void pg_start_conns(pg_t *s)
{
    for (int i = 0; i < s->nconns; i++) {
        pg_conn_t *c = &s->conns[i];
        c->s = s;
        c->idx = i;
        c->backoff_ms = PG_BACKOFF_MIN_MS;
        if (c->state == PGC_DOWN && !c->timer)
            conn_start(c);
    }
}

/* Close @p c. A running operation is queued again at the front (with its outcome unknown if it
 * writes) unless it has been sent PG_MAX_SENDS times or its deadline passed. */
static void conn_close(pg_conn_t *c)
{
    pg_t *s = c->s;
    pg_op_t *op = c->op;
    c->op = NULL;
    if (c->res) {
        PQclear(c->res);
        c->res = NULL;
    }
    if (c->watch) {
        s->host->fd_unwatch(c->watch);
        c->watch = NULL;
    }
    if (c->c) {
        PQfinish(c->c);
        c->c = NULL;
    }
    if (c->state == PGC_MIGRATING)
        s->migrating = 0;
    c->state = PGC_DOWN;
    if (op) {
        if (op->sends >= PG_MAX_SENDS || mono(s) >= op->deadline || s->destroyed) {
            s->host->log(s->host, SN_LOG_ERROR,
                         "%s failed: the connection was lost while it ran (%d sends)", op->what,
                         op->sends);
            op->status = SN_EIO;
            op_finish(op);
        } else {
            op->resent |= op->write;
            enqueue(s, op, 1);
            s->host->metric(s->host, SN_METRIC_COUNTER, "store_resent_total",
                            "Operations sent again after their connection was lost", 1);
        }
    }
}

static void conn_lost(pg_conn_t *c, const char *why)
{
    pg_t *s = c->s;
    char line[200];
    int was_up = c->state >= PGC_IDLE || c->state == PGC_MIGRATING;
    pg_oneline(why && *why ? why : "connection closed", line, sizeof(line));
    if (was_up) {
        s->host->log(s->host, SN_LOG_WARN, "connection %d to %s lost: %s; reconnecting", c->idx,
                     s->where, line);
    } else {
        c->attempts++;
        /* The first failure of a streak, or a new reason, is worth a line; repeats are not. */
        int news = c->attempts == 1 || strcmp(line, s->last_err) != 0;
        s->host->log(s->host, news ? SN_LOG_WARN : SN_LOG_DEBUG,
                     "connection %d to %s failed (attempt %d): %s", c->idx, s->where, c->attempts,
                     line);
    }
    snprintf(s->last_err, sizeof(s->last_err), "%s", line);
    int was_migrating = c->state == PGC_MIGRATING;
    conn_close(c);
    gauges(s);
    if (s->destroyed)
        return;
    schedule_reconnect(c);
    if (was_migrating)
        maybe_migrate(s);
    pump(s); /* a re-queued operation may run on another connection */
}

void pg_conn_drop(pg_conn_t *c, const char *why)
{
    conn_lost(c, why);
}

/* ---- migrations hand-over --------------------------------------------------------------- */

static void maybe_migrate(pg_t *s)
{
    if (s->schema_ok || s->migrating || s->destroyed || s->schema_fatal)
        return;
    for (int i = 0; i < s->nconns; i++) {
        pg_conn_t *c = &s->conns[i];
        if (c->state == PGC_IDLE) {
            s->migrating = 1;
            c->state = PGC_MIGRATING;
            c->mig_step = 0;
            c->deadline = mono(s) + s->op_timeout_ms;
            pg_schema_begin(c);
            return;
        }
    }
}

void pg_conn_migrated(pg_conn_t *c)
{
    pg_t *s = c->s;
    s->migrating = 0;
    s->schema_ok = 1;
    s->schema_err[0] = '\0';
    c->state = PGC_IDLE;
    gauges(s);
    pump(s);
}

/* ---- deadlines -------------------------------------------------------------------------- */

/* Thread: loop (repeating timer). Fails operations past their deadline, gives up on connection
 * attempts past connect_timeout, refreshes the gauges. */
static void tick(void *arg)
{
    pg_t *s = arg;
    int64_t now = mono(s);
    pg_enter(s);
    if (s->qhead)
        fail_queued(s, SN_EAGAIN, now,
                    pg_conns_up(s) == 0 || !s->schema_ok
                        ? "no usable connection to the database within op_timeout"
                        : "not served within op_timeout (overloaded)");
    for (int i = 0; i < s->nconns; i++) {
        pg_conn_t *c = &s->conns[i];
        if (c->state == PGC_BUSY && c->op && c->op->deadline <= now) {
            pg_op_t *op = c->op;
            c->op = NULL;
            s->host->log(s->host, SN_LOG_ERROR,
                         "%s did not complete within op_timeout: connection %d is reset", op->what,
                         c->idx);
            op->status = SN_ETIMEDOUT;
            op_finish(op);
            conn_lost(c, "operation timed out");
        } else if ((c->state == PGC_CONNECTING || c->state == PGC_SETUP) && c->deadline <= now) {
            conn_lost(c, "connect_timeout expired");
        } else if (c->state == PGC_MIGRATING && c->deadline <= now) {
            snprintf(s->schema_err, sizeof(s->schema_err),
                     "schema migration did not finish within op_timeout");
            conn_lost(c, s->schema_err);
        }
    }
    pg_leave(s);
}

int pg_tick_start(pg_t *s)
{
    s->tick = s->host->timer_add(s->host, PG_TICK_MS, 1, tick, s);
    return s->tick ? 0 : SN_ENOMEM;
}

/* ---- teardown --------------------------------------------------------------------------- */

void pg_close_all(pg_t *s)
{
    for (int i = 0; i < s->nconns; i++) {
        pg_conn_t *c = &s->conns[i];
        if (c->timer) {
            s->host->timer_del(c->timer);
            c->timer = NULL;
        }
        if (c->op) {
            op_free(c->op); /* destroyed: its done() is not called */
            c->op = NULL;
            s->inflight--;
        }
        conn_close(c);
    }
}

void pg_free_ops(pg_t *s)
{
    pg_op_t *op;
    while ((op = dequeue(s)) != NULL) {
        op_free(op);
        s->inflight--;
    }
}

/* Called by stop(): when the database is unreachable (no connection up, none on its first
 * attempt), waiting cannot end well before the deadline, so queued operations fail now and the
 * drain finishes. */
void pg_stop_queue(pg_t *s)
{
    for (int i = 0; i < s->nconns; i++) {
        const pg_conn_t *c = &s->conns[i];
        if (c->state == PGC_IDLE || c->state == PGC_BUSY || c->state == PGC_MIGRATING)
            return; /* being served */
        if (!c->was_up && c->attempts == 0 && c->state != PGC_DOWN)
            return; /* still on its first attempt: give it its chance */
    }
    if (s->qhead)
        fail_queued(s, SN_EAGAIN, 0, "stopping with no connection to the database");
}
