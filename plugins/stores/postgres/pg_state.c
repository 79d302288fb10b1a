/**
 * @file pg_state.c
 * STATE of the `postgres` store: checkpoints with optimistic versions and leases, each a single
 * statement (one implicit transaction), so concurrent instances never see half an operation.
 *
 * Times (updated_at, lease_until) come from the database clock, so instances on different
 * hosts agree on when a lease expires.
 *
 * Leases take the row with one conditional UPDATE ... RETURNING: under READ COMMITTED a
 * concurrent UPDATE of the same row makes it wait and re-check its WHERE clause on the row as
 * committed, so two instances can never both get the lease. FOR UPDATE SKIP LOCKED is
 * deliberately not used: the ABI leases one named checkpoint at a time (the core lists the open
 * ones, then leases each), and skipping a row that is merely locked for a moment (by its
 * owner's save) would report a false conflict and make the core drop an incident it owns.
 */
#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_MAX_OPEN 100000                    /**< ids in one state_list_open answer */
#define PG_MAX_TTL_MS (10LL * 365 * 86400000) /**< longest lease: ten years */

/* ---- save ----------------------------------------------------------------------------------- */

static const char SQL_INSERT[] =
    "INSERT INTO checkpoints (id, version, open, doc, updated_at)"
    " VALUES ($1, $2::bigint, $3::boolean, $4::jsonb, clock_timestamp())"
    " ON CONFLICT (id) DO NOTHING RETURNING version";

static const char SQL_UPDATE[] =
    "UPDATE checkpoints SET version = $2::bigint, open = $3::boolean, doc = $4::jsonb,"
    " updated_at = clock_timestamp()"
    " WHERE id = $1 AND version = $2::bigint - 1 RETURNING version";

/* After a lost connection: did our first send commit? Then the row is exactly ours. */
static const char SQL_SAVED_ALREADY[] =
    "SELECT count(*) FROM checkpoints"
    " WHERE id = $1 AND version = $2::bigint AND open = $3::boolean AND doc = $4::jsonb";

static int step_save_verify(pg_op_t *op, const PGresult *res)
{
    op->status = atoi(PQgetvalue(res, 0, 0)) == 1 ? 0 : SN_ECONFLICT;
    if (op->status == 0)
        op->s->host->log(op->s->host, SN_LOG_INFO,
                         "state_save of '%s' version %lld had committed before the connection "
                         "was lost",
                         op->params[0], (long long)op->n[0]);
    return PG_DONE;
}

static int step_save(pg_op_t *op, const PGresult *res)
{
    if (PQntuples(res) == 1) {
        op->status = 0;
        return PG_DONE;
    }
    if (op->resent) {
        op->sql = SQL_SAVED_ALREADY;
        op->step = step_save_verify;
        return PG_AGAIN;
    }
    op->status = SN_ECONFLICT; /* the stored version is not version - 1, or no such id */
    return PG_DONE;
}

/**
 * Save a checkpoint: version 1 creates @p id, version n > 1 replaces version n - 1 (one
 * statement each); SN_ECONFLICT otherwise. The lease columns are left alone.
 * Ownership: all arguments are borrowed for the call (@p doc is serialized before it returns).
 * Thread: loop.
 */
void pg_state_save(void *self, const char *id, int64_t version, int open, const json_t *doc,
                   sn_done_fn done, void *arg)
{
    pg_op_t *op = pg_op_new(self, "state_save", done, arg);
    if (!op)
        return;
    op->sql = version == 1 ? SQL_INSERT : SQL_UPDATE;
    op->step = step_save;
    op->write = 1;
    op->n[0] = version;
    if (!id || !*id || version < 1 || !doc) {
        pg_op_fail(op, SN_EINVAL);
    } else {
        char *text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text)
            pg_op_fail(op, SN_ENOMEM);
        pg_op_param(op, 0, id);
        pg_op_param_i64(op, 1, version);
        pg_op_param(op, 2, open ? "t" : "f");
        pg_op_param(op, 3, text);
        free(text);
    }
    pg_submit(op);
}

/* ---- load ----------------------------------------------------------------------------------- */

static int step_load(pg_op_t *op, const PGresult *res)
{
    if (PQntuples(res) != 1) {
        op->status = SN_ENOTFOUND;
        return PG_DONE;
    }
    json_t *doc = json_loads(PQgetvalue(res, 0, 2), JSON_DECODE_ANY, NULL);
    if (!doc) {
        op->s->host->log(op->s->host, SN_LOG_ERROR, "checkpoint '%s' does not hold valid JSON",
                         op->params[0]);
        op->status = SN_EIO;
        return PG_DONE;
    }
    op->result =
        json_pack("{s:I,s:b,s:o}", "version", (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10),
                  "open", PQgetvalue(res, 0, 1)[0] == 't', "doc", doc);
    op->status = op->result ? 0 : SN_ENOMEM;
    return PG_DONE;
}

/**
 * Load a checkpoint. result: {"version": n, "open": bool, "doc": ...}; SN_ENOTFOUND when absent.
 * Ownership: @p id is borrowed for the call. Thread: loop.
 */
void pg_state_load(void *self, const char *id, sn_done_fn done, void *arg)
{
    pg_op_t *op = pg_op_new(self, "state_load", done, arg);
    if (!op)
        return;
    op->sql = "SELECT version, open, doc::text FROM checkpoints WHERE id = $1";
    op->step = step_load;
    if (!id)
        pg_op_fail(op, SN_EINVAL);
    pg_op_param(op, 0, id);
    pg_submit(op);
}

/* ---- list_open ------------------------------------------------------------------------------ */

static int step_list(pg_op_t *op, const PGresult *res)
{
    json_t *ids = json_array();
    int n = PQntuples(res);
    if (n > PG_MAX_OPEN) {
        op->s->host->log(op->s->host, SN_LOG_WARN,
                         "more than %d open checkpoints: listing the first", PG_MAX_OPEN);
        n = PG_MAX_OPEN;
    }
    for (int i = 0; ids && i < n; i++)
        if (json_array_append_new(ids, json_string(PQgetvalue(res, i, 0))) != 0) {
            json_decref(ids);
            ids = NULL;
        }
    op->result = ids ? json_pack("{s:o}", "ids", ids) : NULL;
    op->status = op->result ? 0 : SN_ENOMEM;
    return PG_DONE;
}

/**
 * List open checkpoints. result: {"ids": [...]}, least recently saved first (at most 100000).
 * Thread: loop.
 */
void pg_state_list_open(void *self, sn_done_fn done, void *arg)
{
    pg_op_t *op = pg_op_new(self, "state_list_open", done, arg);
    if (!op)
        return;
    op->sql = "SELECT id FROM checkpoints WHERE open ORDER BY updated_at, id LIMIT $1::bigint";
    op->step = step_list;
    pg_op_param_i64(op, 0, PG_MAX_OPEN + 1);
    pg_submit(op);
}

/* ---- lease ---------------------------------------------------------------------------------- */

/* One statement: the conditional UPDATE takes or renews the lease; the second column tells "held
 * by someone else" from "no such checkpoint" when it did not. */
static const char SQL_LEASE[] =
    "WITH now AS (SELECT clock_timestamp() AS t),"
    " taken AS (UPDATE checkpoints c"
    "  SET lease_owner = $2, lease_until = (SELECT t FROM now) + $3::bigint * interval '1 ms'"
    "  WHERE c.id = $1 AND (c.lease_owner IS NULL OR c.lease_owner = $2"
    "   OR c.lease_until IS NULL OR c.lease_until <= (SELECT t FROM now))"
    "  RETURNING c.lease_until)"
    " SELECT (SELECT floor(extract(epoch FROM lease_until) * 1000)::bigint FROM taken),"
    " EXISTS (SELECT 1 FROM checkpoints WHERE id = $1)";

static int step_lease(pg_op_t *op, const PGresult *res)
{
    if (PQntuples(res) != 1) {
        op->status = SN_EIO;
        return PG_DONE;
    }
    if (PQgetisnull(res, 0, 0)) {
        op->status = PQgetvalue(res, 0, 1)[0] == 't' ? SN_ECONFLICT : SN_ENOTFOUND;
        return PG_DONE;
    }
    op->result = json_pack("{s:s,s:I}", "owner", op->params[1], "until",
                           (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10));
    op->status = op->result ? 0 : SN_ENOMEM;
    return PG_DONE;
}

/**
 * Take or renew the lease on checkpoint @p id for @p owner until now + @p ttl_ms (database
 * clock): granted when free, expired or already @p owner's; SN_ECONFLICT when another owner holds
 * it, SN_ENOTFOUND when no such checkpoint. result: {"owner": ..., "until": epoch ms}.
 * Renewing is idempotent, so a lease re-sent after a lost connection needs no special care.
 * Ownership: strings are borrowed for the call. Thread: loop.
 */
void pg_state_lease(void *self, const char *id, const char *owner, int64_t ttl_ms, sn_done_fn done,
                    void *arg)
{
    pg_op_t *op = pg_op_new(self, "state_lease", done, arg);
    if (!op)
        return;
    op->sql = SQL_LEASE;
    op->step = step_lease;
    if (!id || !owner || !*owner || ttl_ms <= 0)
        pg_op_fail(op, SN_EINVAL);
    pg_op_param(op, 0, id);
    pg_op_param(op, 1, owner);
    pg_op_param_i64(op, 2, ttl_ms > PG_MAX_TTL_MS ? PG_MAX_TTL_MS : ttl_ms);
    pg_submit(op);
}
