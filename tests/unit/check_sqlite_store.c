/**
 * @file check_sqlite_store.c
 * Tests of the sqlite store loaded as a .so through the harness, on a temporary database file
 * (":memory:" is private to one connection): checkpoint versions, conflicts, open listing and
 * lease expiry; audit append, query filters and the append-only triggers (tried through a
 * connection of our own); audit and telemetry retention; vector top-k, threshold and eviction;
 * telemetry windows; two instances on one file; and a reopen that sees everything.
 *
 * The test does not link SQLite (the unit tests link only the core); it dlopen()s the library
 * the plugin itself uses to inspect and tamper with the file directly.
 */
#include "harness.h"

#include <check.h>
#include <dlfcn.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 5000
#define SQ_LABELS "instance=\"store:sqlite\""

/* ---- direct access to the database file ---- */

static struct {
    void *lib;
    int (*open)(const char *, sqlite3 **);
    int (*exec)(sqlite3 *, const char *, int (*)(void *, int, char **, char **), void *, char **);
    int (*busy_timeout)(sqlite3 *, int);
    int (*close)(sqlite3 *);
    void (*free)(void *);
} dl;

static void dl_load(void)
{
    if (dl.lib)
        return;
    dl.lib = dlopen("libsqlite3.so.0", RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(dl.lib != NULL, "dlopen libsqlite3: %s", dlerror());
    dl.open = (int (*)(const char *, sqlite3 **))dlsym(dl.lib, "sqlite3_open");
    dl.exec = (int (*)(sqlite3 *, const char *, int (*)(void *, int, char **, char **), void *,
                       char **))dlsym(dl.lib, "sqlite3_exec");
    dl.busy_timeout = (int (*)(sqlite3 *, int))dlsym(dl.lib, "sqlite3_busy_timeout");
    dl.close = (int (*)(sqlite3 *))dlsym(dl.lib, "sqlite3_close");
    dl.free = (void (*)(void *))dlsym(dl.lib, "sqlite3_free");
    ck_assert(dl.open && dl.exec && dl.busy_timeout && dl.close && dl.free);
}

static int first_value(void *arg, int n, char **vals, char **cols)
{
    (void)cols;
    char *out = arg;
    if (n > 0 && !out[0])
        snprintf(out, 4096, "%s", vals[0] ? vals[0] : "NULL");
    return 0;
}

/* Run @p sql on a fresh connection. Returns the SQLite result; @p out (4096 bytes, may be NULL)
 * gets the first column of the first row, @p errout (256 bytes, may be NULL) the error. */
static int direct(const char *path, const char *sql, char *out, char *errout)
{
    sqlite3 *db = NULL;
    char *err = NULL, buf[4096] = "";
    dl_load();
    ck_assert_int_eq(dl.open(path, &db), SQLITE_OK);
    dl.busy_timeout(db, 5000);
    int rc = dl.exec(db, sql, first_value, buf, &err);
    if (out)
        snprintf(out, 4096, "%s", buf);
    if (errout)
        snprintf(errout, 256, "%s", err ? err : "");
    dl.free(err);
    dl.close(db);
    return rc;
}

/* ---- fixture ---- */

typedef struct fix {
    char dir[64];
    char path[128];
    sn_harness_t *h;
    const sn_store_ops_t *ops;
    void *self;
    const sn_plugin_t *plugin;
} fix_t;

static void fix_dir(fix_t *f)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sn-sqlite-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
}

/* Create a store instance on f->path with extra settings lines. */
static void *store_open(fix_t *f, const char *extra, const sn_store_ops_t **ops)
{
    char settings[512];
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    snprintf(settings, sizeof(settings), "path = %s\n%s", f->path, extra ? extra : "");
    void *self = sn_harness_create(f->h, SN_STORE, "sqlite", settings, &p, &err);
    ck_assert_msg(self != NULL, "create failed: %s", err.msg);
    f->plugin = p;
    *ops = p->ops;
    return self;
}

static void fix_open(fix_t *f, const char *extra)
{
    fix_dir(f);
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    f->self = store_open(f, extra, &f->ops);
    ck_assert_uint_eq(f->ops->caps,
                      SN_STORE_TELEMETRY | SN_STORE_VECTOR | SN_STORE_STATE | SN_STORE_AUDIT);
}

static void fix_close(fix_t *f)
{
    if (f->h)
        sn_harness_free(f->h);
    f->h = NULL;
    char p[200];
    const char *sfx[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s%s", f->path, sfx[i]);
        unlink(p);
    }
    rmdir(f->dir);
}

/* Wait for @p r; the operation must not have completed inside the call that started it. */
static int finish(fix_t *f, sn_result_t *r, int was_done)
{
    ck_assert_msg(!was_done, "done ran inside the call: it must come later, on the loop");
    ck_assert_int_eq(sn_harness_wait(f->h, r, WAIT_MS), 0);
    return r->status;
}

/* ---- STATE helpers ---- */

static int save(fix_t *f, void *self, const sn_store_ops_t *ops, const char *id, int64_t version,
                int open, const char *docjson)
{
    sn_result_t r = {0};
    json_t *doc = json_loads(docjson, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    ops->state_save(self, id, version, open, doc, sn_result_done, &r);
    json_decref(doc); /* borrowed only for the call */
    int st = finish(f, &r, r.done);
    sn_result_clear(&r);
    return st;
}

/* Load @p id: returns the status; *out (caller decrefs) gets the result on success. */
static int load(fix_t *f, void *self, const sn_store_ops_t *ops, const char *id, json_t **out)
{
    sn_result_t r = {0};
    ops->state_load(self, id, sn_result_done, &r);
    int st = finish(f, &r, r.done);
    if (out)
        *out = json_incref(r.result);
    sn_result_clear(&r);
    return st;
}

static json_t *list_open(fix_t *f)
{
    sn_result_t r = {0};
    f->ops->state_list_open(f->self, sn_result_done, &r);
    ck_assert_int_eq(finish(f, &r, r.done), 0);
    json_t *ids = json_incref(json_object_get(r.result, "ids"));
    sn_result_clear(&r);
    ck_assert(json_is_array(ids));
    return ids;
}

static char *dumps(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static void assert_json(const json_t *j, const char *expect)
{
    char *s = dumps(j);
    ck_assert_str_eq(s, expect);
    free(s);
}

static int lease(fix_t *f, const char *id, const char *owner, int64_t ttl, json_t **out)
{
    sn_result_t r = {0};
    f->ops->state_lease(f->self, id, owner, ttl, sn_result_done, &r);
    int st = finish(f, &r, r.done);
    if (out)
        *out = json_incref(r.result);
    sn_result_clear(&r);
    return st;
}

/* ---- AUDIT helpers ---- */

static json_t *audit_rec(int64_t seq, const char *ts, const char *actor, const char *action,
                         const char *incident)
{
    char hash[65];
    snprintf(hash, sizeof(hash), "%064lld", (long long)seq);
    return json_pack("{s:I,s:s,s:s,s:s,s:s?,s:{s:I},s:s,s:s}", "seq", (json_int_t)seq, "ts", ts,
                     "actor", actor, "action", action, "incident", incident, "detail", "n",
                     (json_int_t)seq, "prev_hash", "00", "hash", hash);
}

static int append(fix_t *f, json_t *rec)
{
    sn_result_t r = {0};
    f->ops->audit_append(f->self, rec, sn_result_done, &r);
    json_decref(rec);
    int st = finish(f, &r, r.done);
    sn_result_clear(&r);
    return st;
}

/* Query with a filter given as JSON text; returns the seqs as "1,2,3" (or "ERR<status>"). */
static void query_seqs(fix_t *f, const char *filter, char *out, size_t len)
{
    sn_result_t r = {0};
    json_t *flt = filter ? json_loads(filter, 0, NULL) : NULL;
    ck_assert(!filter || flt);
    f->ops->audit_query(f->self, flt, sn_result_done, &r);
    json_decref(flt);
    int st = finish(f, &r, r.done);
    out[0] = '\0';
    if (st != 0) {
        snprintf(out, len, "ERR%d", st);
    } else {
        size_t i, off = 0;
        json_t *rec;
        json_t *recs = json_object_get(r.result, "records");
        ck_assert(json_is_array(recs));
        json_array_foreach(recs, i, rec)
        {
            ck_assert(json_is_object(rec));
            off += (size_t)snprintf(out + off, len - off, "%s%lld", i ? "," : "",
                                    (long long)json_integer_value(json_object_get(rec, "seq")));
        }
    }
    sn_result_clear(&r);
}

/* ---- VECTOR helpers ---- */

static int upsert(fix_t *f, const char *coll, const char *id, float x, float y, float z,
                  const char *payload)
{
    sn_result_t r = {0};
    float v[3] = {x, y, z};
    json_t *p = payload ? json_loads(payload, JSON_DECODE_ANY, NULL) : NULL;
    f->ops->vector_upsert(f->self, coll, id, v, 3, p, sn_result_done, &r);
    json_decref(p);
    v[0] = v[1] = v[2] = 0; /* the caller's vector is borrowed only for the call */
    int st = finish(f, &r, r.done);
    sn_result_clear(&r);
    return st;
}

/* Search and return "id:score,..." with scores to 3 decimals. @p first_payload gets the best
 * match's payload as JSON text (may be NULL). */
static void search(fix_t *f, const char *coll, float x, float y, float z, size_t k, double min,
                   char *out, size_t len, char *first_payload)
{
    sn_result_t r = {0};
    float v[3] = {x, y, z};
    f->ops->vector_search(f->self, coll, v, 3, k, min, sn_result_done, &r);
    ck_assert_int_eq(finish(f, &r, r.done), 0);
    json_t *ms = json_object_get(r.result, "matches");
    ck_assert(json_is_array(ms));
    size_t i, off = 0;
    json_t *m;
    out[0] = '\0';
    json_array_foreach(ms, i, m)
    {
        off += (size_t)snprintf(out + off, len - off, "%s%s:%.3f", i ? "," : "",
                                json_string_value(json_object_get(m, "id")),
                                json_number_value(json_object_get(m, "score")));
        if (i == 0 && first_payload) {
            char *p = dumps(json_object_get(m, "payload"));
            snprintf(first_payload, 256, "%s", p);
            free(p);
        }
    }
    sn_result_clear(&r);
}

/* ---- TELEMETRY helpers ---- */

static int tel_write(fix_t *f, uint64_t series, const int64_t *ts, const double *v, size_t n)
{
    sn_result_t r = {0};
    sn_point_t *pts = calloc(n, sizeof(*pts));
    for (size_t i = 0; i < n; i++) {
        pts[i].series = series;
        pts[i].ts_ms = ts[i];
        pts[i].value = v[i];
        pts[i].metric = "m";
    }
    f->ops->telemetry_write(f->self, pts, n, sn_result_done, &r);
    /* Borrowed only for the call: scribble over it before the write runs. */
    for (size_t i = 0; i < n; i++) {
        pts[i].ts_ms = -1;
        pts[i].value = NAN;
    }
    free(pts);
    int st = finish(f, &r, r.done);
    sn_result_clear(&r);
    return st;
}

static void window(fix_t *f, uint64_t series, int64_t from, int64_t to, size_t limit, char *out)
{
    sn_result_t r = {0};
    f->ops->telemetry_window(f->self, series, from, to, limit, sn_result_done, &r);
    ck_assert_int_eq(finish(f, &r, r.done), 0);
    char *s = dumps(json_object_get(r.result, "points"));
    snprintf(out, 1024, "%s", s);
    free(s);
    sn_result_clear(&r);
}

/* ---- tests ---- */

START_TEST(test_state_versions)
{
    fix_t f;
    fix_open(&f, NULL);
    json_t *got = NULL;
    ck_assert_int_eq(save(&f, f.self, f.ops, "inc-1", 1, 1, "{\"step\":1}"), 0);
    ck_assert_int_eq(save(&f, f.self, f.ops, "inc-1", 1, 1, "{\"step\":9}"), SN_ECONFLICT);
    ck_assert_int_eq(save(&f, f.self, f.ops, "inc-1", 3, 1, "{\"step\":9}"), SN_ECONFLICT);
    ck_assert_int_eq(save(&f, f.self, f.ops, "inc-1", 2, 1, "{\"step\":2,\"a\":[1,2]}"), 0);
    ck_assert_int_eq(save(&f, f.self, f.ops, "inc-1", 2, 1, "{\"step\":9}"), SN_ECONFLICT);
    ck_assert_int_eq(save(&f, f.self, f.ops, "nope", 2, 1, "{}"), SN_ECONFLICT);
    ck_assert_int_eq(save(&f, f.self, f.ops, "inc-1", 0, 1, "{}"), SN_EINVAL);

    ck_assert_int_eq(load(&f, f.self, f.ops, "inc-1", &got), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(got, "version")), 2);
    assert_json(json_object_get(got, "doc"), "{\"a\":[1,2],\"step\":2}");
    json_decref(got);
    ck_assert_int_eq(load(&f, f.self, f.ops, "nope", &got), SN_ENOTFOUND);
    ck_assert_ptr_null(got);
    fix_close(&f);
}
END_TEST

START_TEST(test_state_list_open)
{
    fix_t f;
    fix_open(&f, NULL);
    ck_assert_int_eq(save(&f, f.self, f.ops, "a", 1, 1, "{}"), 0);
    sn_harness_run_ms(f.h, 5);
    ck_assert_int_eq(save(&f, f.self, f.ops, "b", 1, 0, "{}"), 0);
    sn_harness_run_ms(f.h, 5);
    ck_assert_int_eq(save(&f, f.self, f.ops, "c", 1, 1, "{}"), 0);
    json_t *ids = list_open(&f);
    assert_json(ids, "[\"a\",\"c\"]");
    json_decref(ids);

    /* Saving again moves a behind c; closing c drops it; reopening b brings it in. */
    sn_harness_run_ms(f.h, 5);
    ck_assert_int_eq(save(&f, f.self, f.ops, "a", 2, 1, "{}"), 0);
    ids = list_open(&f);
    assert_json(ids, "[\"c\",\"a\"]");
    json_decref(ids);
    ck_assert_int_eq(save(&f, f.self, f.ops, "c", 2, 0, "{}"), 0);
    sn_harness_run_ms(f.h, 5);
    ck_assert_int_eq(save(&f, f.self, f.ops, "b", 2, 1, "{}"), 0);
    ids = list_open(&f);
    assert_json(ids, "[\"a\",\"b\"]");
    json_decref(ids);
    fix_close(&f);
}
END_TEST

START_TEST(test_state_lease)
{
    fix_t f;
    fix_open(&f, NULL);
    json_t *res = NULL;
    ck_assert_int_eq(save(&f, f.self, f.ops, "inc", 1, 1, "{}"), 0);
    int64_t before = sn_now_ms();
    ck_assert_int_eq(lease(&f, "inc", "node-a", 1000, &res), 0);
    ck_assert_str_eq(json_string_value(json_object_get(res, "owner")), "node-a");
    int64_t until = json_integer_value(json_object_get(res, "until"));
    ck_assert_int_ge(until, before + 1000);
    ck_assert_int_le(until, sn_now_ms() + 1000);
    json_decref(res);

    ck_assert_int_eq(lease(&f, "inc", "node-b", 1000, NULL), SN_ECONFLICT);
    ck_assert_int_eq(lease(&f, "inc", "node-a", 1000, NULL), 0); /* own lease renews */
    ck_assert_int_eq(lease(&f, "missing", "node-a", 300, NULL), SN_ENOTFOUND);
    ck_assert_int_eq(lease(&f, "inc", "node-a", 0, NULL), SN_EINVAL);

    /* Saving keeps the lease. */
    ck_assert_int_eq(save(&f, f.self, f.ops, "inc", 2, 1, "{}"), 0);
    ck_assert_int_eq(lease(&f, "inc", "node-b", 300, NULL), SN_ECONFLICT);

    sn_harness_run_ms(f.h, 1100); /* expires */
    ck_assert_int_eq(lease(&f, "inc", "node-b", 10000, &res), 0);
    ck_assert_str_eq(json_string_value(json_object_get(res, "owner")), "node-b");
    json_decref(res);
    ck_assert_int_eq(lease(&f, "inc", "node-a", 300, NULL), SN_ECONFLICT);
    fix_close(&f);
}
END_TEST

START_TEST(test_audit_append_query)
{
    fix_t f;
    fix_open(&f, NULL);
    char out[512], raw[4096];
    ck_assert_int_eq(append(&f, audit_rec(1, "2024-05-01T10:00:00.000Z", "alice", "approve", "i1")),
                     0);
    ck_assert_int_eq(append(&f, audit_rec(2, "2024-05-01T11:00:00.000Z", "bob", "reject", "i1")),
                     0);
    ck_assert_int_eq(append(&f, audit_rec(3, "2024-05-02T09:00:00.000Z", "alice", "execute", "i2")),
                     0);
    ck_assert_int_eq(
        append(&f, audit_rec(4, "2024-05-03T00:00:00.000Z", "policy", "approve", NULL)), 0);
    ck_assert_int_eq(append(&f, audit_rec(5, "2024-05-04T00:00:00.000Z", "alice", "approve", "i3")),
                     0);
    /* A taken seq conflicts; malformed records are refused. */
    ck_assert_int_eq(append(&f, audit_rec(3, "2024-05-05T00:00:00.000Z", "eve", "x", "i9")),
                     SN_ECONFLICT);
    json_t *bad = audit_rec(6, "2024-05-05T00:00:00.000Z", "eve", "x", "i9");
    json_object_del(bad, "hash");
    ck_assert_int_eq(append(&f, bad), SN_EINVAL);
    bad = audit_rec(6, "2024-05-05T00:00:00.000Z", "eve", "x", "i9");
    json_object_set_new(bad, "seq", json_string("6"));
    ck_assert_int_eq(append(&f, bad), SN_EINVAL);

    query_seqs(&f, NULL, out, sizeof(out));
    ck_assert_str_eq(out, "1,2,3,4,5");
    query_seqs(&f, "{\"actor\":\"alice\"}", out, sizeof(out));
    ck_assert_str_eq(out, "1,3,5");
    query_seqs(&f, "{\"actor\":\"alice\",\"action\":\"approve\"}", out, sizeof(out));
    ck_assert_str_eq(out, "1,5");
    query_seqs(&f, "{\"incident\":\"i1\"}", out, sizeof(out));
    ck_assert_str_eq(out, "1,2");
    query_seqs(&f,
               "{\"since\":\"2024-05-01T11:00:00.000Z\",\"until\":\"2024-05-03T00:00:00.000Z\"}",
               out, sizeof(out));
    ck_assert_str_eq(out, "2,3,4");
    query_seqs(&f, "{\"since\":\"2024-05-02\"}", out, sizeof(out));
    ck_assert_str_eq(out, "3,4,5");
    query_seqs(&f, "{\"after_seq\":2,\"limit\":2}", out, sizeof(out));
    ck_assert_str_eq(out, "3,4");
    query_seqs(&f, "{\"after_seq\":5}", out, sizeof(out));
    ck_assert_str_eq(out, "");
    query_seqs(&f, "{\"actor\":\"nobody\"}", out, sizeof(out));
    ck_assert_str_eq(out, "");
    query_seqs(&f, "{\"actor\":5}", out, sizeof(out));
    ck_assert_str_eq(out, "ERR-1");

    /* Records come back whole, and are stored as their canonical text exactly. */
    sn_result_t r = {0};
    json_t *flt = json_pack("{s:s}", "incident", "i2");
    f.ops->audit_query(f.self, flt, sn_result_done, &r);
    json_decref(flt);
    ck_assert_int_eq(finish(&f, &r, r.done), 0);
    json_t *want = audit_rec(3, "2024-05-02T09:00:00.000Z", "alice", "execute", "i2");
    ck_assert(json_equal(json_array_get(json_object_get(r.result, "records"), 0), want));
    char *canon = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_int_eq(direct(f.path, "SELECT record FROM audit WHERE seq = 3", raw, NULL),
                     SQLITE_OK);
    ck_assert_str_eq(raw, canon);
    free(canon);
    json_decref(want);
    sn_result_clear(&r);
    fix_close(&f);
}
END_TEST

START_TEST(test_audit_append_only)
{
    fix_t f;
    fix_open(&f, NULL);
    char out[512], err[256], raw[4096];
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(append(&f, audit_rec(i, "2024-05-01T10:00:00.000Z", "a", "b", "c")), 0);

    ck_assert_int_ne(direct(f.path, "UPDATE audit SET actor = 'mallory' WHERE seq = 2", NULL, err),
                     SQLITE_OK);
    ck_assert_msg(strstr(err, "append-only") != NULL, "UPDATE refused with: %s", err);
    ck_assert_int_ne(direct(f.path, "DELETE FROM audit WHERE seq = 3", NULL, err), SQLITE_OK);
    ck_assert_msg(strstr(err, "append-only") != NULL, "DELETE refused with: %s", err);
    ck_assert_int_ne(direct(f.path, "DELETE FROM audit", NULL, err), SQLITE_OK);
    /* The retention flag alone is not enough: rows above the anchor stay. */
    ck_assert_int_ne(direct(f.path,
                            "BEGIN; INSERT INTO audit_retention(active) VALUES(1); "
                            "DELETE FROM audit WHERE seq = 3; COMMIT",
                            NULL, err),
                     SQLITE_OK);
    ck_assert_msg(strstr(err, "append-only") != NULL, "flag-only DELETE refused with: %s", err);

    query_seqs(&f, NULL, out, sizeof(out));
    ck_assert_str_eq(out, "1,2,3");
    ck_assert_int_eq(direct(f.path, "SELECT actor FROM audit WHERE seq = 2", raw, NULL), SQLITE_OK);
    ck_assert_str_eq(raw, "a");
    ck_assert_int_eq(direct(f.path, "SELECT count(*) FROM audit_retention", raw, NULL), SQLITE_OK);
    ck_assert_str_eq(raw, "0");
    fix_close(&f);
}
END_TEST

START_TEST(test_retention)
{
    fix_t f;
    char out[1024], raw[4096], old_ts[32], new_ts[32];
    int64_t now = sn_now_ms(), day = 86400000;
    fix_open(&f, "telemetry_retention = 1d\naudit_retention = 1d\nmaintenance_interval = 1s\n");
    sn_format_time_ms(now - 3 * day, old_ts);
    sn_format_time_ms(now, new_ts);
    ck_assert_int_eq(append(&f, audit_rec(1, old_ts, "a", "x", "i")), 0);
    ck_assert_int_eq(append(&f, audit_rec(2, old_ts, "a", "x", "i")), 0);
    ck_assert_int_eq(append(&f, audit_rec(3, new_ts, "a", "x", "i")), 0);
    ck_assert_int_eq(append(&f, audit_rec(4, new_ts, "a", "x", "i")), 0);
    int64_t ts[3] = {now - 2 * day, now - 1000, now};
    double v[3] = {1, 2, 3};
    ck_assert_int_eq(tel_write(&f, 7, ts, v, 3), 0);

    /* Wait for the first maintenance tick (after 1 s) to finish its job. */
    sn_runtime_t *rt = sn_harness_runtime(f.h);
    for (int i = 0; i < 50 && sn_metric_value(rt, "store_audit_retained_total", SQ_LABELS) < 2; i++)
        sn_harness_run_ms(f.h, 100);

    query_seqs(&f, NULL, out, sizeof(out));
    ck_assert_str_eq(out, "3,4");
    ck_assert_int_eq(direct(f.path, "SELECT seq || ' ' || hash FROM audit_anchor", raw, NULL),
                     SQLITE_OK);
    ck_assert_str_eq(raw, "2 0000000000000000000000000000000000000000000000000000000000000002");
    ck_assert_int_eq(direct(f.path, "SELECT count(*) FROM audit_retention", raw, NULL), SQLITE_OK);
    ck_assert_str_eq(raw, "0");
    /* The anchor does not open the rows after it. */
    ck_assert_int_ne(direct(f.path,
                            "BEGIN; INSERT INTO audit_retention(active) VALUES(1); "
                            "DELETE FROM audit WHERE seq = 3; COMMIT",
                            NULL, NULL),
                     SQLITE_OK);
    window(&f, 7, 0, now + 1, 0, out);
    char want[256];
    snprintf(want, sizeof(want), "[[%lld,2.0],[%lld,3.0]]", (long long)(now - 1000),
             (long long)now);
    ck_assert_str_eq(out, want);
    ck_assert(sn_metric_value(rt, "store_points_expired_total", SQ_LABELS) == 1);
    ck_assert(sn_metric_value(rt, "store_audit_retained_total", SQ_LABELS) == 2);

    /* Nothing newer is touched on the next tick. */
    sn_harness_run_ms(f.h, 1200);
    query_seqs(&f, NULL, out, sizeof(out));
    ck_assert_str_eq(out, "3,4");
    fix_close(&f);
}
END_TEST

START_TEST(test_vector_topk)
{
    fix_t f;
    char out[512], payload[256];
    fix_open(&f, NULL);
    ck_assert_int_eq(upsert(&f, "c", "a", 1, 0, 0, "{\"fix\":\"rollback\"}"), 0);
    ck_assert_int_eq(upsert(&f, "c", "b", 0.8f, 0.6f, 0, "{\"fix\":\"restart\"}"), 0);
    ck_assert_int_eq(upsert(&f, "c", "c", 0, 1, 0, NULL), 0);
    ck_assert_int_eq(upsert(&f, "c", "d", -1, 0, 0, "[1,2]"), 0);
    ck_assert_int_eq(upsert(&f, "other", "z", 1, 0, 0, NULL), 0);

    search(&f, "c", 2, 0, 0, 2, -1, out, sizeof(out), payload);
    ck_assert_str_eq(out, "a:1.000,b:0.800");
    ck_assert_str_eq(payload, "{\"fix\":\"rollback\"}");
    search(&f, "c", 1, 0, 0, 10, -1, out, sizeof(out), NULL);
    ck_assert_str_eq(out, "a:1.000,b:0.800,c:0.000,d:-1.000");
    search(&f, "c", 1, 0, 0, 10, 0.5, out, sizeof(out), NULL);
    ck_assert_str_eq(out, "a:1.000,b:0.800");
    search(&f, "c", 0, 1, 0, 1, 0.5, out, sizeof(out), payload);
    ck_assert_str_eq(out, "c:1.000");
    ck_assert_str_eq(payload, "null");
    search(&f, "c", 1, 0, 0, 0, -1, out, sizeof(out), NULL);
    ck_assert_str_eq(out, "");
    search(&f, "empty", 1, 0, 0, 5, -1, out, sizeof(out), NULL);
    ck_assert_str_eq(out, "");

    /* Upsert replaces: a now points along y. */
    ck_assert_int_eq(upsert(&f, "c", "a", 0, 1, 0, "{\"fix\":\"scale\"}"), 0);
    search(&f, "c", 1, 0, 0, 2, -1, out, sizeof(out), NULL);
    ck_assert_str_eq(out, "b:0.800,c:0.000"); /* ties go to the older row: c, not a */
    search(&f, "c", 0, 1, 0, 2, -1, out, sizeof(out), payload);
    ck_assert_str_eq(out, "c:1.000,a:1.000");
    ck_assert_str_eq(payload, "null");
    search(&f, "c", 0, 1, 0, 3, 0.99, out, sizeof(out), NULL);
    ck_assert_str_eq(out, "c:1.000,a:1.000");

    /* Other dimensions never match; bad input is refused. */
    sn_result_t r = {0};
    float v5[5] = {1, 0, 0, 0, 0};
    f.ops->vector_search(f.self, "c", v5, 5, 3, -1, sn_result_done, &r);
    ck_assert_int_eq(finish(&f, &r, r.done), 0);
    ck_assert_int_eq(json_array_size(json_object_get(r.result, "matches")), 0);
    sn_result_clear(&r);
    f.ops->vector_upsert(f.self, "c", "x", v5, 0, NULL, sn_result_done, &r);
    ck_assert_int_eq(finish(&f, &r, r.done), SN_EINVAL);
    sn_result_clear(&r);
    fix_close(&f);
}
END_TEST

START_TEST(test_vector_eviction)
{
    fix_t f;
    char out[512], id[16];
    fix_open(&f, "max_vector_rows = 3\n");
    for (int i = 1; i <= 5; i++) {
        snprintf(id, sizeof(id), "v%d", i);
        ck_assert_int_eq(upsert(&f, "c", id, 1, 0, 0, NULL), 0); /* equal scores: rowid order */
    }
    search(&f, "c", 1, 0, 0, 10, -1, out, sizeof(out), NULL);
    ck_assert_str_eq(out, "v3:1.000,v4:1.000,v5:1.000");
    ck_assert(sn_metric_value(sn_harness_runtime(f.h), "store_vectors_evicted_total", SQ_LABELS) ==
              2);
    /* Re-writing the oldest makes it the newest: v4 goes next. */
    ck_assert_int_eq(upsert(&f, "c", "v3", 1, 0, 0, NULL), 0);
    ck_assert_int_eq(upsert(&f, "c", "v6", 1, 0, 0, NULL), 0);
    search(&f, "c", 1, 0, 0, 10, -1, out, sizeof(out), NULL);
    ck_assert_str_eq(out, "v5:1.000,v3:1.000,v6:1.000");
    fix_close(&f);
}
END_TEST

START_TEST(test_telemetry_window)
{
    fix_t f;
    char out[1024];
    fix_open(&f, "telemetry_retention = 0\n");
    const uint64_t big = 0xF123456789ABCDEFULL; /* above INT64_MAX: must round-trip */
    int64_t ts[5] = {5000, 1000, 3000, 2000, 4000};
    double v[5] = {5.5, 1.5, 3.5, 2.5, 4.5};
    ck_assert_int_eq(tel_write(&f, 42, ts, v, 5), 0);
    int64_t ts2[2] = {2500, 3500};
    double v2[2] = {-1, -2};
    ck_assert_int_eq(tel_write(&f, big, ts2, v2, 2), 0);
    ck_assert_int_eq(tel_write(&f, 42, ts, v, 0), 0); /* empty batch */

    window(&f, 42, 2000, 4000, 0, out);
    ck_assert_str_eq(out, "[[2000,2.5],[3000,3.5],[4000,4.5]]");
    window(&f, 42, 0, 10000, 2, out);
    ck_assert_str_eq(out, "[[1000,1.5],[2000,2.5]]");
    window(&f, big, 0, 10000, 10, out);
    ck_assert_str_eq(out, "[[2500,-1.0],[3500,-2.0]]");
    window(&f, 43, 0, 10000, 10, out);
    ck_assert_str_eq(out, "[]");
    window(&f, 42, 4000, 2000, 10, out);
    ck_assert_str_eq(out, "[]");

    /* A non-finite value fails the whole batch: nothing of it is written. */
    int64_t ts3[2] = {6000, 7000};
    double v3[2] = {6.5, INFINITY};
    ck_assert_int_eq(tel_write(&f, 42, ts3, v3, 2), SN_EINVAL);
    window(&f, 42, 5000, 10000, 10, out);
    ck_assert_str_eq(out, "[[5000,5.5]]");
    fix_close(&f);
}
END_TEST

START_TEST(test_two_instances_one_file)
{
    fix_t f;
    const sn_store_ops_t *ops2;
    fix_open(&f, NULL);
    void *other = store_open(&f, "busy_timeout = 2s\n", &ops2);
    json_t *got = NULL;
    ck_assert_int_eq(save(&f, f.self, f.ops, "shared", 1, 1, "{\"by\":\"one\"}"), 0);
    ck_assert_int_eq(load(&f, other, ops2, "shared", &got), 0);
    assert_json(json_object_get(got, "doc"), "{\"by\":\"one\"}");
    json_decref(got);
    ck_assert_int_eq(save(&f, other, ops2, "shared", 2, 1, "{\"by\":\"two\"}"), 0);
    /* The first instance's stale version loses. */
    ck_assert_int_eq(save(&f, f.self, f.ops, "shared", 2, 1, "{\"by\":\"one\"}"), SN_ECONFLICT);

    /* Interleaved writes from both complete without lock errors. */
    sn_result_t r[20];
    memset(r, 0, sizeof(r));
    json_t *doc = json_object();
    char id[16];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof(id), "k%d", i);
        (i % 2 ? ops2 : f.ops)
            ->state_save(i % 2 ? other : f.self, id, 1, 1, doc, sn_result_done, &r[i]);
    }
    json_decref(doc);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(sn_harness_wait(f.h, &r[i], WAIT_MS), 0);
        ck_assert_int_eq(r[i].status, 0);
        sn_result_clear(&r[i]);
    }
    json_t *ids = list_open(&f);
    ck_assert_int_eq(json_array_size(ids), 21);
    json_decref(ids);
    fix_close(&f);
}
END_TEST

START_TEST(test_reopen_durable)
{
    fix_t f;
    char out[1024], raw[4096];
    fix_open(&f, "synchronous = NORMAL\n");
    ck_assert_int_eq(save(&f, f.self, f.ops, "inc-9", 1, 1, "{\"state\":\"open\"}"), 0);
    ck_assert_int_eq(save(&f, f.self, f.ops, "inc-9", 2, 1, "{\"state\":\"waiting\"}"), 0);
    ck_assert_int_eq(append(&f, audit_rec(1, "2024-05-01T10:00:00.000Z", "a", "approve", "inc-9")),
                     0);
    ck_assert_int_eq(upsert(&f, "incidents", "inc-9", 0, 0, 1, "{\"fix\":\"restart\"}"), 0);
    int64_t ts[2] = {sn_now_ms() - 1000, sn_now_ms()};
    double v[2] = {1, 2};
    ck_assert_int_eq(tel_write(&f, 99, ts, v, 2), 0);

    /* Close everything, then open the same file in a new runtime. */
    sn_harness_free(f.h);
    f.h = sn_harness_new();
    ck_assert_ptr_nonnull(f.h);
    f.self = store_open(&f, NULL, &f.ops);

    json_t *got = NULL;
    ck_assert_int_eq(load(&f, f.self, f.ops, "inc-9", &got), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(got, "version")), 2);
    assert_json(json_object_get(got, "doc"), "{\"state\":\"waiting\"}");
    json_decref(got);
    json_t *ids = list_open(&f);
    assert_json(ids, "[\"inc-9\"]");
    json_decref(ids);
    query_seqs(&f, NULL, out, sizeof(out));
    ck_assert_str_eq(out, "1");
    char payload[256];
    search(&f, "incidents", 0, 0, 1, 3, 0.9, out, sizeof(out), payload);
    ck_assert_str_eq(out, "inc-9:1.000");
    ck_assert_str_eq(payload, "{\"fix\":\"restart\"}");
    window(&f, 99, 0, ts[1], 0, out);
    char want[128];
    snprintf(want, sizeof(want), "[[%lld,1.0],[%lld,2.0]]", (long long)ts[0], (long long)ts[1]);
    ck_assert_str_eq(out, want);

    /* Migrations ran once, the file is in WAL mode, and a version conflict survives a reopen. */
    ck_assert_int_eq(direct(f.path, "SELECT group_concat(v) FROM schema_version", raw, NULL),
                     SQLITE_OK);
    ck_assert_str_eq(raw, "1,2");
    ck_assert_int_eq(direct(f.path, "PRAGMA journal_mode", raw, NULL), SQLITE_OK);
    ck_assert_str_eq(raw, "wal");
    ck_assert_int_eq(save(&f, f.self, f.ops, "inc-9", 2, 1, "{}"), SN_ECONFLICT);
    fix_close(&f);
}
END_TEST

START_TEST(test_config_and_health)
{
    fix_t f;
    fix_open(&f, NULL);
    sn_health_t hl = {0};
    ck_assert_int_eq(f.plugin->health(f.self, &hl), 0);
    ck_assert_msg(hl.ok, "health: %s", hl.detail);

    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    char settings[256];
    snprintf(settings, sizeof(settings), "path = %s\nsynchronous = OFF\n", f.path);
    ck_assert_ptr_null(sn_harness_create(f.h, SN_STORE, "sqlite", settings, &p, &err));
    ck_assert_msg(strstr(err.msg, "synchronous") != NULL, "error: %s", err.msg);
    ck_assert_ptr_null(sn_harness_create(f.h, SN_STORE, "sqlite", "busy_timeout = 1s\n", &p, &err));
    ck_assert_msg(strstr(err.msg, "path") != NULL, "error: %s", err.msg);
    snprintf(settings, sizeof(settings), "path = %s/no/such/dir/x.db\n", f.dir);
    ck_assert_ptr_null(sn_harness_create(f.h, SN_STORE, "sqlite", settings, &p, &err));
    ck_assert_msg(strstr(err.msg, "cannot open") != NULL, "error: %s", err.msg);

    /* A file from a newer plugin version is refused, not silently used. */
    ck_assert_int_eq(direct(f.path, "INSERT INTO schema_version(v) VALUES(99)", NULL, NULL),
                     SQLITE_OK);
    snprintf(settings, sizeof(settings), "path = %s\n", f.path);
    ck_assert_ptr_null(sn_harness_create(f.h, SN_STORE, "sqlite", settings, &p, &err));
    ck_assert_msg(strstr(err.msg, "newer") != NULL, "error: %s", err.msg);

    /* ":memory:" works for a private store. */
    void *mem = sn_harness_create(f.h, SN_STORE, "sqlite", "path = :memory:\n", &p, &err);
    ck_assert_msg(mem != NULL, "create :memory: failed: %s", err.msg);
    ck_assert_int_eq(save(&f, mem, p->ops, "m", 1, 1, "{}"), 0);
    ck_assert_int_eq(load(&f, mem, p->ops, "m", NULL), 0);
    fix_close(&f);
}
END_TEST

/* stop() waits for the operations in flight before it reports done. */
START_TEST(test_stop_drains)
{
    fix_t f;
    fix_open(&f, NULL);
    sn_result_t ops[8], stop = {0};
    memset(ops, 0, sizeof(ops));
    json_t *doc = json_pack("{s:s}", "k", "v");
    char id[16];
    for (int i = 0; i < 8; i++) {
        snprintf(id, sizeof(id), "s%d", i);
        f.ops->state_save(f.self, id, 1, 1, doc, sn_result_done, &ops[i]);
    }
    json_decref(doc);
    f.plugin->stop(f.self, sn_result_done, &stop);
    ck_assert_int_eq(sn_harness_wait(f.h, &stop, WAIT_MS), 0);
    for (int i = 0; i < 8; i++) {
        ck_assert_msg(ops[i].done, "operation %d completed before stop's done", i);
        ck_assert_int_eq(ops[i].status, 0);
        sn_result_clear(&ops[i]);
    }
    sn_result_clear(&stop);
    fix_close(&f);
}
END_TEST

static Suite *sqlite_suite(void)
{
    Suite *s = suite_create("sqlite_store");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_state_versions);
    tcase_add_test(tc, test_state_list_open);
    tcase_add_test(tc, test_state_lease);
    tcase_add_test(tc, test_audit_append_query);
    tcase_add_test(tc, test_audit_append_only);
    tcase_add_test(tc, test_retention);
    tcase_add_test(tc, test_vector_topk);
    tcase_add_test(tc, test_vector_eviction);
    tcase_add_test(tc, test_telemetry_window);
    tcase_add_test(tc, test_two_instances_one_file);
    tcase_add_test(tc, test_reopen_durable);
    tcase_add_test(tc, test_config_and_health);
    tcase_add_test(tc, test_stop_drains);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sqlite_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
