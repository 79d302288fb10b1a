/**
 * @file pg_telemetry.c
 * TELEMETRY of the `postgres` store (optional capability): points (series, ts, value) in one
 * indexed table. A batch is one INSERT ... SELECT FROM unnest() of three array parameters, so it
 * is written all or nothing in one round trip. Meant for modest volumes (warm-up windows for the
 * detectors); a column store suits raw telemetry at scale better.
 */
#include "pg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_MAX_BATCH 100000  /**< points in one telemetry_write */
#define PG_MAX_WINDOW 100000 /**< points in one telemetry_window answer */

static int step_write(pg_op_t *op, const PGresult *res)
{
    (void)res;
    op->status = 0;
    return PG_DONE;
}

/* One column of the batch as PostgreSQL array text "{a,b,c}". Ownership: caller frees. */
static char *array_text(const sn_point_t *pts, size_t n, int which)
{
    size_t cap = n * 26 + 3, off = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    buf[off++] = '{';
    for (size_t i = 0; i < n; i++) {
        int w;
        if (which == 0)
            w = snprintf(buf + off, cap - off, "%s%lld", i ? "," : "",
                         (long long)(int64_t)pts[i].series); /* the same 64 bits */
        else if (which == 1)
            w = snprintf(buf + off, cap - off, "%s%lld", i ? "," : "", (long long)pts[i].ts_ms);
        else
            w = snprintf(buf + off, cap - off, "%s%.17g", i ? "," : "", pts[i].value);
        if (w < 0 || (size_t)w >= cap - off) {
            free(buf);
            return NULL;
        }
        off += (size_t)w;
    }
    buf[off++] = '}';
    buf[off] = '\0';
    return buf;
}

/**
 * Write a batch of points in one statement; all or none. At most 100000 points a batch
 * (SN_ENOMEM beyond). Non-finite values are refused (SN_EINVAL).
 * Ownership: @p pts is borrowed for the call (copied before it returns). Thread: loop.
 */
void pg_tel_write(void *self, const sn_point_t *pts, size_t n, sn_done_fn done, void *arg)
{
    pg_t *s = self;
    pg_op_t *op = pg_op_new(s, "telemetry_write", done, arg);
    if (!op)
        return;
    op->sql = "INSERT INTO points (series, ts, value)"
              " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::float8[])";
    op->step = step_write;
    if (n == 0) {
        op->sql = "SELECT 1"; /* nothing to write: complete with 0 */
    } else if (!pts) {
        pg_op_fail(op, SN_EINVAL);
    } else if (n > PG_MAX_BATCH) {
        s->host->metric(s->host, SN_METRIC_COUNTER, "store_rejected_total",
                        "Store operations refused at a bound (in flight, batch size)", 1);
        s->host->log(s->host, SN_LOG_WARN, "telemetry batch of %zu points exceeds %d: refused", n,
                     PG_MAX_BATCH);
        pg_op_fail(op, SN_ENOMEM);
    } else {
        for (size_t i = 0; i < n; i++)
            if (!isfinite(pts[i].value))
                pg_op_fail(op, SN_EINVAL);
        for (int k = 0; k < 3 && op->status == 0; k++) {
            op->params[k] = array_text(pts, n, k);
            if (!op->params[k])
                pg_op_fail(op, SN_ENOMEM);
        }
        op->nparams = 3;
    }
    pg_submit(op);
}

static int step_window(pg_op_t *op, const PGresult *res)
{
    json_t *pts = json_array();
    int n = PQntuples(res);
    for (int i = 0; pts && i < n; i++) {
        json_t *p = json_pack("[I,f]", (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10),
                              strtod(PQgetvalue(res, i, 1), NULL));
        if (!p || json_array_append_new(pts, p) != 0) {
            json_decref(pts);
            pts = NULL;
        }
    }
    op->result = pts ? json_pack("{s:o}", "points", pts) : NULL;
    op->status = op->result ? 0 : SN_ENOMEM;
    return PG_DONE;
}

/**
 * Points of @p series with from_ms <= ts <= to_ms. result: {"points": [[ts_ms, value], ...]},
 * oldest first, the oldest @p limit of the range (0 or more than 100000: 100000).
 * Thread: loop.
 */
void pg_tel_window(void *self, uint64_t series, int64_t from_ms, int64_t to_ms, size_t limit,
                   sn_done_fn done, void *arg)
{
    pg_op_t *op = pg_op_new(self, "telemetry_window", done, arg);
    if (!op)
        return;
    op->sql = "SELECT ts, value FROM points WHERE series = $1::bigint AND ts >= $2::bigint"
              " AND ts <= $3::bigint ORDER BY ts LIMIT $4::bigint";
    op->step = step_window;
    pg_op_param_i64(op, 0, (int64_t)series);
    pg_op_param_i64(op, 1, from_ms);
    pg_op_param_i64(op, 2, to_ms);
    pg_op_param_i64(op, 3, limit == 0 || limit > PG_MAX_WINDOW ? PG_MAX_WINDOW : (int64_t)limit);
    pg_submit(op);
}

static int step_tel_retain(pg_op_t *op, const PGresult *res)
{
    int64_t n = strtoll(PQcmdTuples((PGresult *)res), NULL, 10);
    if (n > 0)
        op->s->host->metric(op->s->host, SN_METRIC_COUNTER, "store_points_expired_total",
                            "Telemetry points deleted by retention", (double)n);
    op->status = 0;
    return PG_DONE;
}

/** Delete points older than @p cutoff_ms (event time). Thread: loop. */
void pg_tel_retain(pg_t *s, int64_t cutoff_ms, sn_done_fn done, void *arg)
{
    pg_op_t *op = pg_op_new(s, "telemetry retention", done, arg);
    if (!op)
        return;
    op->sql = "DELETE FROM points WHERE ts < $1::bigint";
    op->step = step_tel_retain;
    pg_op_param_i64(op, 0, cutoff_ms);
    pg_submit(op);
}
