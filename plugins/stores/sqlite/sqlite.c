/**
 * @file sqlite.c
 * Store `sqlite`: the embedded store with all four capabilities (STATE, AUDIT, VECTOR,
 * TELEMETRY) in one WAL-mode database file.
 *
 * Every operation runs on the host's offload pool, never on the loop, through one connection
 * guarded by a mutex (so jobs serialise on it) and completes with done() on the loop.
 * Schema migrations run in create(), before the loop starts. The audit table refuses UPDATE
 * and DELETE through triggers; retention (not yet called by the core) would lift that only
 * inside its own transaction through the audit_retention flag row.
 */
#include <sentinel/plugin.h>

#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sq {
    const sn_host_t *host;
    sqlite3 *db;
    pthread_mutex_t mu; /* one job at a time: statement sequences and changes() stay ours */
    int64_t max_vectors;
    int inflight;
    sn_done_fn stop_done;
    void *stop_arg;
} sq_t;

typedef struct job job_t;
typedef void (*job_fn)(job_t *j);

struct job {
    sq_t *s;
    job_fn work;
    sn_done_fn done;
    void *arg;
    int status;
    json_t *in;     /* owned copy of the input */
    json_t *result; /* built by work */
    char *id, *owner, *collection;
    int64_t a, b, c;
    float *vec;
    size_t dim;
    double min_score;
};

static const sn_param_t sq_params[] = {
    {"path", SN_T_STRING, NULL, SN_PARAM_REQUIRED, "database file"},
    {"busy_timeout", SN_T_DURATION, "5", 0, "wait this long for a lock held by another process"},
    {"max_vector_rows", SN_T_INT, "100000", 0, "incident memories kept (oldest evicted)"},
    {"synchronous", SN_T_STRING, "FULL", 0, "SQLite synchronous mode: NORMAL or FULL"},
    {NULL, 0, NULL, 0, NULL},
};

static const char *const migrations[] = {
    /* 1 */
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
};

static int exec_sql(sqlite3 *db, const char *sql, char *why, size_t whylen)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        snprintf(why, whylen, "%s", err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

static int migrate(sqlite3 *db, char *why, size_t whylen)
{
    if (exec_sql(db, "CREATE TABLE IF NOT EXISTS schema_version(v INTEGER NOT NULL)", why, whylen))
        return -1;
    sqlite3_stmt *st;
    int v = 0;
    if (sqlite3_prepare_v2(db, "SELECT max(v) FROM schema_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    size_t n = sizeof(migrations) / sizeof(migrations[0]);
    for (size_t i = (size_t)v; i < n; i++) {
        char sql[128];
        if (exec_sql(db, "BEGIN IMMEDIATE", why, whylen) ||
            exec_sql(db, migrations[i], why, whylen))
            return -1;
        snprintf(sql, sizeof(sql), "INSERT INTO schema_version(v) VALUES(%zu); COMMIT", i + 1);
        if (exec_sql(db, sql, why, whylen))
            return -1;
    }
    return 0;
}

static int sq_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    sq_t *s = calloc(1, sizeof(*s));
    if (!s)
        return SN_ENOMEM;
    s->host = host;
    pthread_mutex_init(&s->mu, NULL);
    s->max_vectors = host->cfg_int(cfg, "max_vector_rows");
    const char *path = host->cfg_str(cfg, "path");
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err->msg, sizeof(err->msg), "cannot open %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sqlite3_close(s->db);
        free(s);
        return SN_EIO;
    }
    sqlite3_busy_timeout(s->db, (int)host->cfg_int(cfg, "busy_timeout"));
    const char *sync = host->cfg_str(cfg, "synchronous");
    char sql[128], why[200];
    snprintf(sql, sizeof(sql), "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s",
             strcmp(sync, "NORMAL") == 0 ? "NORMAL" : "FULL");
    if (exec_sql(s->db, sql, why, sizeof(why)) || migrate(s->db, why, sizeof(why))) {
        snprintf(err->msg, sizeof(err->msg), "%s: %s", path, why);
        sqlite3_close(s->db);
        free(s);
        return SN_EIO;
    }
    *self = s;
    return 0;
}

static void sq_destroy(void *self)
{
    sq_t *s = self;
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- job plumbing ---- */

static void job_work(void *arg)
{
    job_t *j = arg;
    pthread_mutex_lock(&j->s->mu);
    j->work(j);
    pthread_mutex_unlock(&j->s->mu);
}

static void job_done(void *arg)
{
    job_t *j = arg;
    sq_t *s = j->s;
    j->done(j->arg, j->status, j->result);
    json_decref(j->result);
    json_decref(j->in);
    free(j->id);
    free(j->owner);
    free(j->collection);
    free(j->vec);
    free(j);
    if (--s->inflight == 0 && s->stop_done) {
        sn_done_fn d = s->stop_done;
        s->stop_done = NULL;
        d(s->stop_arg, 0, NULL);
    }
}

static job_t *job_new(sq_t *s, job_fn work, sn_done_fn done, void *arg)
{
    job_t *j = calloc(1, sizeof(*j));
    if (j) {
        j->s = s;
        j->work = work;
        j->done = done;
        j->arg = arg;
    }
    return j;
}

static void job_run(job_t *j)
{
    sq_t *s = j->s;
    s->inflight++;
    if (s->host->offload(s->host, job_work, job_done, j) != 0) {
        j->status = SN_EAGAIN;
        job_done(j);
    }
}

static void fail(job_t *j, int status)
{
    j->status = status;
    j->s->host->log(j->s->host, SN_LOG_ERROR, "sqlite: %s", sqlite3_errmsg(j->s->db));
}

/* ---- STATE ---- */

static void w_state_save(job_t *j)
{
    sqlite3 *db = j->s->db;
    char *doc = json_dumps(j->in, JSON_COMPACT);
    sqlite3_stmt *st = NULL;
    int rc;
    if (j->a == 1) {
        sqlite3_prepare_v2(db,
                           "INSERT INTO checkpoints(id,version,open,doc,updated_at) "
                           "VALUES(?,1,?,?,strftime('%s','now'))",
                           -1, &st, NULL);
        sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, (int)j->b);
        sqlite3_bind_text(st, 3, doc, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        j->status = rc == SQLITE_DONE ? 0 : rc == SQLITE_CONSTRAINT ? SN_ECONFLICT : SN_EIO;
    } else {
        sqlite3_prepare_v2(db,
                           "UPDATE checkpoints SET version=?, open=?, doc=?, "
                           "updated_at=strftime('%s','now') WHERE id=? AND version=?",
                           -1, &st, NULL);
        sqlite3_bind_int64(st, 1, j->a);
        sqlite3_bind_int(st, 2, (int)j->b);
        sqlite3_bind_text(st, 3, doc, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, j->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, j->a - 1);
        rc = sqlite3_step(st);
        j->status = rc != SQLITE_DONE ? SN_EIO : sqlite3_changes(db) == 1 ? 0 : SN_ECONFLICT;
    }
    if (j->status == SN_EIO)
        fail(j, SN_EIO);
    sqlite3_finalize(st);
    free(doc);
}

static void sq_state_save(void *self, const char *id, int64_t version, int open, const json_t *doc,
                          sn_done_fn done, void *arg)
{
    job_t *j = job_new(self, w_state_save, done, arg);
    if (!j) {
        done(arg, SN_ENOMEM, NULL);
        return;
    }
    j->id = strdup(id);
    j->a = version;
    j->b = open;
    j->in = json_deep_copy(doc); /* the caller's document is borrowed only for this call */
    job_run(j);
}

static void w_state_load(job_t *j)
{
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(j->s->db, "SELECT version, doc FROM checkpoints WHERE id=?", -1, &st, NULL);
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        json_error_t e;
        json_t *doc = json_loads((const char *)sqlite3_column_text(st, 1), 0, &e);
        j->result = json_pack("{s:I,s:o}", "version", (json_int_t)sqlite3_column_int64(st, 0),
                              "doc", doc ? doc : json_null());
    } else {
        j->status = rc == SQLITE_DONE ? SN_ENOTFOUND : SN_EIO;
    }
    sqlite3_finalize(st);
}

static void sq_state_load(void *self, const char *id, sn_done_fn done, void *arg)
{
    job_t *j = job_new(self, w_state_load, done, arg);
    if (!j) {
        done(arg, SN_ENOMEM, NULL);
        return;
    }
    j->id = strdup(id);
    job_run(j);
}

static void w_list_open(job_t *j)
{
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(j->s->db, "SELECT id FROM checkpoints WHERE open=1 ORDER BY updated_at", -1,
                       &st, NULL);
    json_t *ids = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(ids, json_string((const char *)sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
    j->result = json_pack("{s:o}", "ids", ids);
}

static void sq_state_list_open(void *self, sn_done_fn done, void *arg)
{
    job_t *j = job_new(self, w_list_open, done, arg);
    if (!j) {
        done(arg, SN_ENOMEM, NULL);
        return;
    }
    job_run(j);
}

static void w_lease(job_t *j)
{
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(j->s->db,
                       "UPDATE checkpoints SET lease_owner=?, lease_until=? WHERE id=? AND "
                       "(lease_owner IS NULL OR lease_owner=? OR lease_until < ?)",
                       -1, &st, NULL);
    sqlite3_bind_text(st, 1, j->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, j->b + j->a);
    sqlite3_bind_text(st, 3, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, j->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, j->b);
    int rc = sqlite3_step(st);
    j->status = rc != SQLITE_DONE ? SN_EIO : sqlite3_changes(j->s->db) ? 0 : SN_ECONFLICT;
    sqlite3_finalize(st);
    if (!j->status)
        j->result = json_pack("{s:s,s:I}", "owner", j->owner, "until", (json_int_t)(j->a + j->b));
}

static void sq_state_lease(void *self, const char *id, const char *owner, int64_t ttl_ms,
                           sn_done_fn done, void *arg)
{
    sq_t *s = self;
    job_t *j = job_new(s, w_lease, done, arg);
    if (!j) {
        done(arg, SN_ENOMEM, NULL);
        return;
    }
    j->id = strdup(id);
    j->owner = strdup(owner);
    j->a = ttl_ms;
    j->b = s->host->now_ms(s->host);
    job_run(j);
}

/* ---- AUDIT ---- */

static void w_audit_append(job_t *j)
{
    char *text = json_dumps(j->in, JSON_COMPACT | JSON_SORT_KEYS);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(j->s->db,
                       "INSERT INTO audit(seq,ts,actor,action,incident,record,hash) "
                       "VALUES(?,?,?,?,?,?,?)",
                       -1, &st, NULL);
    sqlite3_bind_int64(st, 1, json_integer_value(json_object_get(j->in, "seq")));
    const char *keys[] = {"ts", "actor", "action", "incident"};
    for (int i = 0; i < 4; i++)
        sqlite3_bind_text(st, i + 2, json_string_value(json_object_get(j->in, keys[i])), -1,
                          SQLITE_STATIC);
    sqlite3_bind_text(st, 6, text, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, json_string_value(json_object_get(j->in, "hash")), -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    j->status = rc == SQLITE_DONE ? 0 : (rc & 0xff) == SQLITE_CONSTRAINT ? SN_ECONFLICT : SN_EIO;
    if (j->status == SN_EIO)
        fail(j, SN_EIO);
    sqlite3_finalize(st);
    free(text);
}

static void sq_audit_append(void *self, const json_t *record, sn_done_fn done, void *arg)
{
    job_t *j = job_new(self, w_audit_append, done, arg);
    if (!j) {
        done(arg, SN_ENOMEM, NULL);
        return;
    }
    j->in = json_deep_copy(record);
    job_run(j);
}

static void w_audit_query(job_t *j)
{
    const json_t *f = j->in;
    char sql[512] = "SELECT record FROM audit WHERE seq > ?1";
    const char *cols[] = {"actor", "action", "incident"};
    for (int i = 0; i < 3; i++)
        if (json_is_string(json_object_get(f, cols[i]))) {
            size_t l = strlen(sql);
            snprintf(sql + l, sizeof(sql) - l, " AND %s = ?%d", cols[i], i + 2);
        }
    if (json_is_string(json_object_get(f, "since")))
        strcat(sql, " AND ts >= ?5");
    if (json_is_string(json_object_get(f, "until")))
        strcat(sql, " AND ts <= ?6");
    strcat(sql, " ORDER BY seq LIMIT ?7");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(j->s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        fail(j, SN_EIO);
        return;
    }
    sqlite3_bind_int64(st, 1, json_integer_value(json_object_get(f, "after_seq")));
    for (int i = 0; i < 3; i++)
        if (json_is_string(json_object_get(f, cols[i])))
            sqlite3_bind_text(st, i + 2, json_string_value(json_object_get(f, cols[i])), -1,
                              SQLITE_STATIC);
    if (json_is_string(json_object_get(f, "since")))
        sqlite3_bind_text(st, 5, json_string_value(json_object_get(f, "since")), -1, SQLITE_STATIC);
    if (json_is_string(json_object_get(f, "until")))
        sqlite3_bind_text(st, 6, json_string_value(json_object_get(f, "until")), -1, SQLITE_STATIC);
    json_int_t limit = json_integer_value(json_object_get(f, "limit"));
    sqlite3_bind_int64(st, 7, limit <= 0 ? 1000 : limit > 10000 ? 10000 : limit);
    json_t *recs = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_error_t e;
        json_t *r = json_loads((const char *)sqlite3_column_text(st, 0), 0, &e);
        if (r)
            json_array_append_new(recs, r);
    }
    sqlite3_finalize(st);
    j->result = json_pack("{s:o}", "records", recs);
}

static void sq_audit_query(void *self, const json_t *filter, sn_done_fn done, void *arg)
{
    job_t *j = job_new(self, w_audit_query, done, arg);
    if (!j) {
        done(arg, SN_ENOMEM, NULL);
        return;
    }
    j->in = filter ? json_deep_copy(filter) : json_object();
    job_run(j);
}

/* ---- VECTOR ---- */

static void w_vector_upsert(job_t *j)
{
    sqlite3 *db = j->s->db;
    char *payload = json_dumps(j->in, JSON_COMPACT);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db,
                       "INSERT OR REPLACE INTO vectors(collection,id,dim,vec,payload) "
                       "VALUES(?,?,?,?,?)",
                       -1, &st, NULL);
    sqlite3_bind_text(st, 1, j->collection, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)j->dim);
    sqlite3_bind_blob(st, 4, j->vec, (int)(j->dim * sizeof(float)), SQLITE_STATIC);
    sqlite3_bind_text(st, 5, payload ? payload : "null", -1, SQLITE_STATIC);
    j->status = sqlite3_step(st) == SQLITE_DONE ? 0 : SN_EIO;
    sqlite3_finalize(st);
    free(payload);
    /* Bounded memory: the oldest rows make room. */
    char sql[200];
    snprintf(sql, sizeof(sql),
             "DELETE FROM vectors WHERE rowid IN (SELECT rowid FROM vectors ORDER BY rowid DESC "
             "LIMIT -1 OFFSET %lld)",
             (long long)j->s->max_vectors);
    sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (sqlite3_changes(db) > 0)
        j->s->host->metric(j->s->host, SN_METRIC_COUNTER, "store_vectors_evicted_total",
                           "Vector rows evicted at max_vector_rows", sqlite3_changes(db));
}

static void sq_vector_upsert(void *self, const char *collection, const char *id, const float *v,
                             size_t dim, const json_t *payload, sn_done_fn done, void *arg)
{
    job_t *j = job_new(self, w_vector_upsert, done, arg);
    if (!j || !dim) {
        free(j);
        done(arg, dim ? SN_ENOMEM : SN_EINVAL, NULL);
        return;
    }
    j->collection = strdup(collection);
    j->id = strdup(id);
    j->dim = dim;
    j->vec = malloc(dim * sizeof(float));
    memcpy(j->vec, v, dim * sizeof(float));
    j->in = payload ? json_deep_copy(payload) : json_null();
    job_run(j);
}

static int cmp_score(const void *a, const void *b)
{
    double x = json_real_value(json_object_get(*(json_t *const *)a, "score"));
    double y = json_real_value(json_object_get(*(json_t *const *)b, "score"));
    return x < y ? 1 : x > y ? -1 : 0;
}

static void w_vector_search(job_t *j)
{
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(j->s->db,
                       "SELECT id, vec, payload FROM vectors WHERE collection=? AND dim=?", -1, &st,
                       NULL);
    sqlite3_bind_text(st, 1, j->collection, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)j->dim);
    double qn = 0;
    for (size_t i = 0; i < j->dim; i++)
        qn += (double)j->vec[i] * j->vec[i];
    json_t *all = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        const float *v = sqlite3_column_blob(st, 1);
        double dot = 0, vn = 0;
        for (size_t i = 0; i < j->dim; i++) {
            dot += (double)v[i] * j->vec[i];
            vn += (double)v[i] * v[i];
        }
        double score = qn > 0 && vn > 0 ? dot / sqrt(qn * vn) : 0;
        if (score < j->min_score)
            continue;
        json_error_t e;
        json_t *p = json_loads((const char *)sqlite3_column_text(st, 2), JSON_DECODE_ANY, &e);
        json_array_append_new(all, json_pack("{s:s,s:f,s:o}", "id",
                                             (const char *)sqlite3_column_text(st, 0), "score",
                                             score, "payload", p ? p : json_null()));
    }
    sqlite3_finalize(st);
    size_t n = json_array_size(all);
    json_t **v = calloc(n ? n : 1, sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(all, i);
    qsort(v, n, sizeof(*v), cmp_score);
    json_t *out = json_array();
    for (size_t i = 0; i < n && i < (size_t)j->a; i++)
        json_array_append(out, v[i]);
    free(v);
    json_decref(all);
    j->result = json_pack("{s:o}", "matches", out);
}

static void sq_vector_search(void *self, const char *collection, const float *v, size_t dim,
                             size_t k, double min_score, sn_done_fn done, void *arg)
{
    job_t *j = job_new(self, w_vector_search, done, arg);
    if (!j) {
        done(arg, SN_ENOMEM, NULL);
        return;
    }
    j->collection = strdup(collection);
    j->dim = dim;
    j->vec = malloc((dim ? dim : 1) * sizeof(float));
    memcpy(j->vec, v, dim * sizeof(float));
    j->a = (int64_t)k;
    j->min_score = min_score;
    job_run(j);
}

/* ---- TELEMETRY ---- */

static void w_tel_write(job_t *j)
{
    sqlite3 *db = j->s->db;
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "INSERT INTO points(series,ts,value) VALUES(?,?,?)", -1, &st, NULL);
    size_t i;
    json_t *p;
    json_array_foreach(j->in, i, p)
    {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)json_integer_value(json_array_get(p, 0)));
        sqlite3_bind_int64(st, 2, json_integer_value(json_array_get(p, 1)));
        sqlite3_bind_double(st, 3, json_real_value(json_array_get(p, 2)));
        if (sqlite3_step(st) != SQLITE_DONE)
            j->status = SN_EIO;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_exec(db, j->status ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL);
}

static void sq_tel_write(void *self, const sn_point_t *pts, size_t n, sn_done_fn done, void *arg)
{
    job_t *j = job_new(self, w_tel_write, done, arg);
    if (!j) {
        done(arg, SN_ENOMEM, NULL);
        return;
    }
    j->in = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(j->in, json_pack("[I,I,f]", (json_int_t)pts[i].series,
                                               (json_int_t)pts[i].ts_ms, pts[i].value));
    job_run(j);
}

static void w_tel_window(job_t *j)
{
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(j->s->db,
                       "SELECT ts, value FROM points WHERE series=? AND ts>=? AND ts<=? ORDER BY "
                       "ts LIMIT ?",
                       -1, &st, NULL);
    sqlite3_bind_int64(st, 1, j->c);
    sqlite3_bind_int64(st, 2, j->a);
    sqlite3_bind_int64(st, 3, j->b);
    sqlite3_bind_int64(st, 4, json_integer_value(j->in));
    json_t *pts = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(pts, json_pack("[I,f]", (json_int_t)sqlite3_column_int64(st, 0),
                                             sqlite3_column_double(st, 1)));
    sqlite3_finalize(st);
    j->result = json_pack("{s:o}", "points", pts);
}

static void sq_tel_window(void *self, uint64_t series, int64_t from_ms, int64_t to_ms, size_t limit,
                          sn_done_fn done, void *arg)
{
    job_t *j = job_new(self, w_tel_window, done, arg);
    if (!j) {
        done(arg, SN_ENOMEM, NULL);
        return;
    }
    j->c = (int64_t)series;
    j->a = from_ms;
    j->b = to_ms;
    j->in = json_integer((json_int_t)(limit ? limit : 10000));
    job_run(j);
}

/* ---- lifecycle ---- */

static void sq_stop(void *self, sn_done_fn done, void *arg)
{
    sq_t *s = self;
    if (s->inflight == 0) {
        if (done)
            done(arg, 0, NULL);
        return;
    }
    s->stop_done = done;
    s->stop_arg = arg;
}

static int sq_health(void *self, sn_health_t *out)
{
    sq_t *s = self;
    out->ok = 1;
    snprintf(out->detail, sizeof(out->detail), "%d operations in flight", s->inflight);
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
    .version = "1.0.0",
    .summary = "embedded store: state, audit, vectors and telemetry in one WAL-mode SQLite file",
    .params = sq_params,
    .create = sq_create,
    .stop = sq_stop,
    .destroy = sq_destroy,
    .health = sq_health,
    .ops = &sq_ops,
};

SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &sq_plugin;
}
