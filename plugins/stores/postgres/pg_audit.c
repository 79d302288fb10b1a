/**
 * @file pg_audit.c
 * AUDIT of the `postgres` store: records as the core chains them (seq, prev_hash, hash, ...),
 * kept as their canonical text (compact, sorted keys) in a text column, byte for byte, so the
 * hash chain verifies; the columns beside it only serve the filters. The table is append-only
 * (triggers, see pg_schema.c); retention drops old records behind an anchor (seq, hash) inside
 * sentinel_audit_retain(), the one place allowed to delete.
 */
#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_AUDIT_LIMIT 1000 /**< audit_query default limit */
#define PG_AUDIT_LIMIT_MAX 10000

enum { P_SEQ, P_TS, P_ACTOR, P_ACTION, P_INCIDENT, P_PREV, P_HASH, P_RECORD };

/* ---- append --------------------------------------------------------------------------------- */

/* A seq already taken, or at or below a retention anchor, inserts nothing: SN_ECONFLICT. */
static const char SQL_APPEND[] =
    "INSERT INTO audit (seq, ts, actor, action, incident, prev_hash, hash, record)"
    " SELECT $1::bigint, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text"
    " WHERE NOT EXISTS (SELECT 1 FROM audit_anchor WHERE seq >= $1::bigint)"
    " ON CONFLICT (seq) DO NOTHING RETURNING seq";

static const char SQL_APPENDED_ALREADY[] =
    "SELECT count(*) FROM audit WHERE seq = $1::bigint AND record = $2";

static int step_append_verify(pg_op_t *op, const PGresult *res)
{
    op->status = atoi(PQgetvalue(res, 0, 0)) == 1 ? 0 : SN_ECONFLICT;
    if (op->status == 0)
        op->s->host->log(op->s->host, SN_LOG_INFO,
                         "audit_append of seq %s had committed before the connection was lost",
                         op->params[0]);
    return PG_DONE;
}

static int step_append(pg_op_t *op, const PGresult *res)
{
    if (PQntuples(res) == 1) {
        op->status = 0;
        return PG_DONE;
    }
    if (op->resent) {
        /* Our first send may have committed before the connection died: is the row ours? */
        char *record = op->params[P_RECORD];
        op->params[P_RECORD] = NULL;
        for (int i = 1; i < PG_MAX_PARAMS; i++) {
            free(op->params[i]);
            op->params[i] = NULL;
        }
        op->params[1] = record;
        op->nparams = 2;
        op->sql = SQL_APPENDED_ALREADY;
        op->step = step_append_verify;
        return PG_AGAIN;
    }
    op->status = SN_ECONFLICT;
    return PG_DONE;
}

/* A string member, or NULL when absent or null; -1 when present with another type. */
static int opt_str(const json_t *o, const char *key, const char **out)
{
    const json_t *v = json_object_get(o, key);
    *out = json_string_value(v);
    return v && !json_is_null(v) && !json_is_string(v) ? -1 : 0;
}

/**
 * Append one audit record, stored as its canonical text (compact, sorted keys) exactly as given.
 * The record needs an integer "seq" > 0 and string "ts" and "hash"; "actor", "action",
 * "incident" and "prev_hash" are copied into columns. SN_ECONFLICT when seq is taken.
 * Ownership: @p record is borrowed for the call. Thread: loop.
 */
void pg_audit_append(void *self, const json_t *record, sn_done_fn done, void *arg)
{
    static const struct {
        const char *key;
        int param;
    } cols[] = {{"ts", P_TS},          {"actor", P_ACTOR},
                {"action", P_ACTION},  {"incident", P_INCIDENT},
                {"prev_hash", P_PREV}, {"hash", P_HASH}};
    pg_op_t *op = pg_op_new(self, "audit_append", done, arg);
    if (!op)
        return;
    op->sql = SQL_APPEND;
    op->step = step_append;
    op->write = 1;
    op->nparams = P_RECORD + 1;
    const json_t *seq = json_object_get(record, "seq");
    if (!json_is_object(record) || !json_is_integer(seq) || json_integer_value(seq) < 1) {
        pg_op_fail(op, SN_EINVAL);
    } else {
        pg_op_param_i64(op, P_SEQ, json_integer_value(seq));
        for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
            const char *v;
            if (opt_str(record, cols[i].key, &v) != 0)
                pg_op_fail(op, SN_EINVAL);
            pg_op_param(op, cols[i].param, v);
        }
        if (!op->params[P_TS] || !op->params[P_HASH] || !*op->params[P_HASH])
            pg_op_fail(op, SN_EINVAL);
        char *text = json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
            pg_op_fail(op, SN_ENOMEM);
        pg_op_param(op, P_RECORD, text);
        free(text);
    }
    pg_submit(op);
}

/* ---- query ---------------------------------------------------------------------------------- */

/* Records and, on the first page, the newest anchor, in one statement: one snapshot, so a
 * retention running meanwhile can never show records and an anchor that do not fit. */
static const char SQL_QUERY[] =
    "WITH r AS (SELECT seq, record FROM audit WHERE seq > $1::bigint"
    "  AND ($3::text IS NULL OR actor = $3) AND ($4::text IS NULL OR action = $4)"
    "  AND ($5::text IS NULL OR incident = $5)"
    "  AND ($6::text IS NULL OR ts >= $6 COLLATE \"C\")"
    "  AND ($7::text IS NULL OR ts <= $7 COLLATE \"C\")"
    "  ORDER BY seq LIMIT $2::bigint)"
    " SELECT 0 AS kind, seq, record FROM r"
    " UNION ALL (SELECT 1, seq, hash FROM audit_anchor WHERE $8::boolean"
    "  ORDER BY seq DESC LIMIT 1)"
    " ORDER BY 1, 2";

static int step_query(pg_op_t *op, const PGresult *res)
{
    pg_t *s = op->s;
    json_t *recs = json_array(), *anchor = NULL;
    int n = PQntuples(res);
    op->status = recs ? 0 : SN_ENOMEM;
    for (int i = 0; op->status == 0 && i < n; i++) {
        json_int_t seq = (json_int_t)strtoll(PQgetvalue(res, i, 1), NULL, 10);
        if (PQgetvalue(res, i, 0)[0] == '1') {
            anchor = json_pack("{s:I,s:s}", "seq", seq, "hash", PQgetvalue(res, i, 2));
            if (!anchor)
                op->status = SN_ENOMEM;
            continue;
        }
        json_t *r = json_loads(PQgetvalue(res, i, 2), 0, NULL);
        if (!r) {
            /* Loud, not skipped: a silently missing record would hide tampering. */
            s->host->log(s->host, SN_LOG_ERROR, "audit record %lld is not valid JSON",
                         (long long)seq);
            op->status = SN_EIO;
        } else if (json_array_append_new(recs, r) != 0) {
            op->status = SN_ENOMEM;
        }
    }
    if (op->status == 0) {
        op->result = json_pack("{s:O}", "records", recs);
        if (!op->result)
            op->status = SN_ENOMEM;
        else if (anchor)
            json_object_set(op->result, "anchor", anchor);
    }
    json_decref(recs);
    json_decref(anchor);
    return PG_DONE;
}

/**
 * Query audit records in seq order. filter (optional object): "actor", "action", "incident"
 * (exact), "since", "until" (RFC3339 text compared bytewise with the records' fixed-format UTC
 * ts, inclusive), "after_seq" (exclusive), "limit" (default 1000, at most 10000).
 * result: {"records": [record objects]}, and on the first page (no after_seq) "anchor":
 * {"seq", "hash"} when retention has dropped records. SN_EINVAL for a member of the wrong type.
 * Ownership: @p filter is borrowed for the call. Thread: loop.
 */
void pg_audit_query(void *self, const json_t *filter, sn_done_fn done, void *arg)
{
    static const char *const keys[] = {"actor", "action", "incident", "since", "until"};
    pg_op_t *op = pg_op_new(self, "audit_query", done, arg);
    if (!op)
        return;
    op->sql = SQL_QUERY;
    op->step = step_query;
    op->nparams = 8;
    int64_t after = 0, limit = PG_AUDIT_LIMIT;
    if (filter && !json_is_object(filter)) {
        pg_op_fail(op, SN_EINVAL);
    } else if (filter) {
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            const char *v;
            if (opt_str(filter, keys[i], &v) != 0)
                pg_op_fail(op, SN_EINVAL);
            pg_op_param(op, (int)i + 2, v);
        }
        const json_t *a = json_object_get(filter, "after_seq");
        const json_t *l = json_object_get(filter, "limit");
        if ((a && !json_is_integer(a) && !json_is_null(a)) ||
            (l && !json_is_integer(l) && !json_is_null(l)))
            pg_op_fail(op, SN_EINVAL);
        after = json_integer_value(a) > 0 ? json_integer_value(a) : 0;
        json_int_t lv = json_integer_value(l);
        limit = lv <= 0 ? PG_AUDIT_LIMIT : lv > PG_AUDIT_LIMIT_MAX ? PG_AUDIT_LIMIT_MAX : lv;
    }
    pg_op_param_i64(op, 0, after);
    pg_op_param_i64(op, 1, limit);
    pg_op_param(op, 7, after == 0 ? "t" : "f");
    pg_submit(op);
}

/* ---- retention ------------------------------------------------------------------------------ */

/* The core's fixed audit time format (RFC3339, UTC, milliseconds), so text order is time order. */
static void format_time(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int rem = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, rem % 1000);
}

static int step_retain(pg_op_t *op, const PGresult *res)
{
    int64_t n = PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    if (n > 0) {
        op->s->host->metric(op->s->host, SN_METRIC_COUNTER, "store_audit_retained_total",
                            "Audit records deleted by retention behind an anchor", (double)n);
        op->s->host->log(op->s->host, SN_LOG_INFO,
                         "audit retention dropped %lld records older than %s behind an anchor",
                         (long long)n, op->params[0]);
    }
    op->status = 0;
    return PG_DONE;
}

/** Drop audit records older than @p cutoff_ms (never the newest) behind an anchor. Thread: loop. */
void pg_audit_retain(pg_t *s, int64_t cutoff_ms, sn_done_fn done, void *arg)
{
    char cutoff[32];
    pg_op_t *op = pg_op_new(s, "audit retention", done, arg);
    if (!op)
        return;
    format_time(cutoff_ms, cutoff);
    op->sql = "SELECT sentinel_audit_retain($1)";
    op->step = step_retain;
    pg_op_param(op, 0, cutoff);
    pg_submit(op);
}
