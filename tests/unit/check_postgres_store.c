/**
 * @file check_postgres_store.c
 * Integration suite of the postgres store, loaded as a .so through the harness, against a real
 * PostgreSQL 15 server this program starts (tests/support/pgserver.py) on a free loopback port
 * and removes at exit. Each test works in a database of its own.
 *
 * It mirrors the sqlite store's suite (versions and conflicts, open listing, leases, audit
 * append/conflict/query/filters, retention with anchor, telemetry windows, stop drain) and adds
 * what a shared server brings: two instances (two "sentineld"s) competing for leases and
 * starting migrations together, the append-only triggers refusing UPDATE, DELETE and TRUNCATE
 * from a plain psql session, the password never appearing in a log line, a bounded queue, and
 * faults: the server restarted in the middle of a series of writes, and the server frozen
 * (SIGSTOP) — while a libevent timer on the same loop proves the loop never blocks.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <event2/event.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 15000
#define PG_LABELS "instance=\"store:postgres\""

static struct {
    char dir[256];
    int port;
    char password[80];
    char helper[512];
} srv;

/* ---- processes ---- */

/* Run @p argv (with PGPASSWORD set for psql) and capture stdout+stderr into @p out. */
static int run(char *const argv[], char *out, size_t outlen)
{
    int fds[2];
    /* No ck_assert here: main() uses it outside any test. */
    if (pipe(fds) != 0)
        abort();
    pid_t pid = fork();
    if (pid < 0)
        abort();
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        setenv("PGPASSWORD", srv.password, 1);
        setenv("PGCONNECT_TIMEOUT", "5", 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    size_t off = 0;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof(buf))) > 0) {
        size_t take = (size_t)n;
        if (out && off + take >= outlen)
            take = outlen - off - 1;
        if (out && take > 0) {
            memcpy(out + off, buf, take);
            off += take;
        }
    }
    close(fds[0]);
    if (out) {
        while (off > 0 && (out[off - 1] == '\n' || out[off - 1] == ' '))
            off--;
        out[off] = '\0';
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* A plain psql session as @p user. Returns psql's exit code (0 on success). */
static int psql_as(const char *user, const char *db, const char *sql, char *out)
{
    char port[16], local[4096];
    snprintf(port, sizeof(port), "%d", srv.port);
    char *const argv[] = {"psql", "-X",        "-q", "-At",       "-v", "ON_ERROR_STOP=1",
                          "-h",   "127.0.0.1", "-p", port,        "-U", (char *)user,
                          "-d",   (char *)db,  "-c", (char *)sql, NULL};
    return run(argv, out ? out : local, 4096);
}

/* A plain psql session as the application role (the schema's owner). */
static int psql(const char *db, const char *sql, char *out)
{
    return psql_as("sentinel", db, sql, out);
}

static int helper(const char *cmd, const char *arg)
{
    char out[4096];
    char *const argv[] = {"python3", srv.helper, (char *)cmd, srv.dir, (char *)arg, NULL};
    int rc = run(argv, out, sizeof(out));
    if (rc != 0)
        fprintf(stderr, "pgserver %s: %s\n", cmd, out);
    return rc;
}

/* Start "pgserver.py restart DIR --down S" in the background; returns its pid. */
static pid_t helper_bg_restart(const char *down)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execlp("python3", "python3", srv.helper, "restart", srv.dir, "--down", down, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* ---- fixture ---- */

typedef struct fix {
    char db[64];
    sn_harness_t *h;
    const sn_store_ops_t *ops;
    void *self;
    const sn_plugin_t *plugin;
} fix_t;

static void dsn_for(const char *db, char *out, size_t len)
{
    snprintf(out, len,
             "host=127.0.0.1 port=%d dbname=%s user=sentinel password=${env:SN_PG_PASSWORD}",
             srv.port, db);
}

/* Create a store instance on f->db with extra settings lines. */
static void *store_open(fix_t *f, const char *extra, const sn_store_ops_t **ops)
{
    char settings[1024], dsn[256];
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    dsn_for(f->db, dsn, sizeof(dsn));
    snprintf(settings, sizeof(settings), "dsn = %s\n%s", dsn, extra ? extra : "");
    void *self = sn_harness_create(f->h, SN_STORE, "postgres", settings, &p, &err);
    ck_assert_msg(self != NULL, "create failed: %s", err.msg);
    f->plugin = p;
    *ops = p->ops;
    return self;
}

static void fix_db(fix_t *f, const char *name)
{
    char sql[128], out[4096];
    memset(f, 0, sizeof(*f));
    snprintf(f->db, sizeof(f->db), "%s", name);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->db);
    ck_assert_msg(psql("sentinel", sql, out) == 0, "%s", out);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->db);
    ck_assert_msg(psql("sentinel", sql, out) == 0, "%s", out);
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
}

static void fix_open_db(fix_t *f, const char *name, const char *extra)
{
    fix_db(f, name);
    f->self = store_open(f, extra, &f->ops);
    ck_assert_uint_eq(f->ops->caps, SN_STORE_STATE | SN_STORE_AUDIT | SN_STORE_TELEMETRY);
    ck_assert_ptr_null(f->ops->vector_upsert);
}
#define fix_open(f, extra) fix_open_db((f), __func__, (extra))

static void fix_close(fix_t *f)
{
    if (f->h)
        sn_harness_free(f->h);
    f->h = NULL;
}

/* Wait for @p r; the operation must not have completed inside the call that started it. */
static int finish(fix_t *f, sn_result_t *r, int was_done)
{
    ck_assert_msg(!was_done, "done ran inside the call: it must come later, on the loop");
    ck_assert_int_eq(sn_harness_wait(f->h, r, WAIT_MS), 0);
    return r->status;
}

static int healthy(fix_t *f, void *self, char *detail)
{
    sn_health_t hl = {0};
    ck_assert_int_eq(f->plugin->health(self, &hl), 0);
    if (detail)
        snprintf(detail, 256, "%s", hl.detail);
    return hl.ok;
}

static int wait_healthy(fix_t *f, void *self, int64_t ms)
{
    int64_t deadline = sn_mono_ms() + ms;
    while (!healthy(f, self, NULL) && sn_mono_ms() < deadline)
        sn_harness_run_ms(f->h, 20);
    return healthy(f, self, NULL);
}

static double metric(fix_t *f, const char *name, const char *labels)
{
    return sn_metric_value(sn_harness_runtime(f->h), name, labels ? labels : PG_LABELS);
}

/* ---- loop liveness: a 10 ms libevent timer on the same loop records its longest gap ---- */

typedef struct gap {
    struct event *ev;
    int64_t last, max;
    int fires;
} gap_t;

static void gap_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gap_t *g = arg;
    int64_t now = sn_mono_ms();
    if (g->last && now - g->last > g->max)
        g->max = now - g->last;
    g->last = now;
    g->fires++;
}

static void gap_start(fix_t *f, gap_t *g)
{
    memset(g, 0, sizeof(*g));
    g->ev = event_new(sn_runtime_base(sn_harness_runtime(f->h)), -1, EV_PERSIST, gap_cb, g);
    struct timeval tv = {0, 10000};
    ck_assert_ptr_nonnull(g->ev);
    event_add(g->ev, &tv);
    g->last = sn_mono_ms();
}

static void gap_stop(gap_t *g)
{
    event_free(g->ev);
    g->ev = NULL;
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

static void assert_json(const json_t *j, const char *expect)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    ck_assert_str_eq(s, expect);
    free(s);
}

static int lease(fix_t *f, void *self, const sn_store_ops_t *ops, const char *id, const char *owner,
                 int64_t ttl, json_t **out)
{
    sn_result_t r = {0};
    ops->state_lease(self, id, owner, ttl, sn_result_done, &r);
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

/* Query with a filter given as JSON text; returns the seqs as "1,2,3" (or "ERR<status>");
 * @p anchor (may be NULL) gets "seq:hash" of the anchor or "". */
static void query_seqs(fix_t *f, const char *filter, char *out, size_t len, char *anchor)
{
    sn_result_t r = {0};
    json_t *flt = filter ? json_loads(filter, 0, NULL) : NULL;
    ck_assert(!filter || flt);
    f->ops->audit_query(f->self, flt, sn_result_done, &r);
    json_decref(flt);
    int st = finish(f, &r, r.done);
    out[0] = '\0';
    if (anchor)
        anchor[0] = '\0';
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
        json_t *a = json_object_get(r.result, "anchor");
        if (anchor && a)
            snprintf(anchor, 128, "%lld:%s",
                     (long long)json_integer_value(json_object_get(a, "seq")),
                     json_string_value(json_object_get(a, "hash")));
    }
    sn_result_clear(&r);
}

/* ---- TELEMETRY helpers ---- */

static int tel_write(fix_t *f, uint64_t series, const int64_t *ts, const double *v, size_t n)
{
    sn_result_t r = {0};
    sn_point_t *pts = calloc(n ? n : 1, sizeof(*pts));
    for (size_t i = 0; i < n; i++) {
        pts[i].series = series;
        pts[i].ts_ms = ts[i];
        pts[i].value = v[i];
        pts[i].metric = "m";
    }
    f->ops->telemetry_write(f->self, pts, n, sn_result_done, &r);
    for (size_t i = 0; i < n; i++)
        pts[i].ts_ms = -1; /* borrowed only for the call */
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
    char *s = json_dumps(json_object_get(r.result, "points"), JSON_COMPACT);
    snprintf(out, 1024, "%s", s);
    free(s);
    sn_result_clear(&r);
}

/* ---- tests: STATE ---- */

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
    /* jsonb cannot hold \u0000: refused as bad input, nothing written. */
    sn_result_t r = {0};
    json_t *nul = json_pack("{s:s%}", "x", "a\0b", (size_t)3);
    f.ops->state_save(f.self, "inc-1", 3, 1, nul, sn_result_done, &r);
    json_decref(nul);
    ck_assert_int_eq(finish(&f, &r, r.done), SN_EINVAL);
    sn_result_clear(&r);

    ck_assert_int_eq(load(&f, f.self, f.ops, "inc-1", &got), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(got, "version")), 2);
    ck_assert(json_is_true(json_object_get(got, "open")));
    assert_json(json_object_get(got, "doc"), "{\"a\":[1,2],\"step\":2}");
    json_decref(got);
    ck_assert_int_eq(load(&f, f.self, f.ops, "nope", &got), SN_ENOTFOUND);
    ck_assert_ptr_null(got);

    /* Large numbers, nesting and unicode survive jsonb. */
    const char *doc = "{\"big\":9007199254740993,\"f\":0.1,\"n\":{\"s\":\"h\\u00e9\",\"z\":null}}";
    ck_assert_int_eq(save(&f, f.self, f.ops, "inc-2", 1, 0, doc), 0);
    ck_assert_int_eq(load(&f, f.self, f.ops, "inc-2", &got), 0);
    json_t *want = json_loads(doc, 0, NULL);
    ck_assert(json_equal(json_object_get(got, "doc"), want));
    json_decref(want);
    ck_assert(json_is_false(json_object_get(got, "open")));
    json_decref(got);

    /* Stored as documented: jsonb doc, version column, timestamps. */
    char out[4096];
    ck_assert_int_eq(psql(f.db,
                          "SELECT version || ' ' || open || ' ' || (doc->>'step') || ' ' || "
                          "(updated_at <= now()) FROM checkpoints WHERE id = 'inc-1'",
                          out),
                     0);
    ck_assert_str_eq(out, "2 true 2 true");
    fix_close(&f);
}
END_TEST

START_TEST(test_state_list_open)
{
    fix_t f;
    fix_open(&f, NULL);
    ck_assert_int_eq(save(&f, f.self, f.ops, "a", 1, 1, "{}"), 0);
    ck_assert_int_eq(save(&f, f.self, f.ops, "b", 1, 0, "{}"), 0);
    ck_assert_int_eq(save(&f, f.self, f.ops, "c", 1, 1, "{}"), 0);
    json_t *ids = list_open(&f);
    assert_json(ids, "[\"a\",\"c\"]");
    json_decref(ids);

    /* Saving again moves a behind c; closing c drops it; reopening b brings it in. */
    ck_assert_int_eq(save(&f, f.self, f.ops, "a", 2, 1, "{}"), 0);
    ids = list_open(&f);
    assert_json(ids, "[\"c\",\"a\"]");
    json_decref(ids);
    ck_assert_int_eq(save(&f, f.self, f.ops, "c", 2, 0, "{}"), 0);
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
    ck_assert_int_eq(lease(&f, f.self, f.ops, "inc", "node-a", 1000, &res), 0);
    ck_assert_str_eq(json_string_value(json_object_get(res, "owner")), "node-a");
    int64_t until = json_integer_value(json_object_get(res, "until"));
    ck_assert_int_ge(until, before + 1000 - 5); /* the database clock; same host */
    ck_assert_int_le(until, sn_now_ms() + 1000);
    json_decref(res);

    ck_assert_int_eq(lease(&f, f.self, f.ops, "inc", "node-b", 1000, NULL), SN_ECONFLICT);
    ck_assert_int_eq(lease(&f, f.self, f.ops, "inc", "node-a", 1000, NULL), 0); /* renews */
    ck_assert_int_eq(lease(&f, f.self, f.ops, "missing", "node-a", 300, NULL), SN_ENOTFOUND);
    ck_assert_int_eq(lease(&f, f.self, f.ops, "inc", "node-a", 0, NULL), SN_EINVAL);

    /* Saving keeps the lease. */
    ck_assert_int_eq(save(&f, f.self, f.ops, "inc", 2, 1, "{}"), 0);
    ck_assert_int_eq(lease(&f, f.self, f.ops, "inc", "node-b", 300, NULL), SN_ECONFLICT);
    char out[4096];
    ck_assert_int_eq(psql(f.db, "SELECT lease_owner FROM checkpoints WHERE id = 'inc'", out), 0);
    ck_assert_str_eq(out, "node-a");

    sn_harness_run_ms(f.h, 1100); /* expires */
    ck_assert_int_eq(lease(&f, f.self, f.ops, "inc", "node-b", 10000, &res), 0);
    ck_assert_str_eq(json_string_value(json_object_get(res, "owner")), "node-b");
    json_decref(res);
    ck_assert_int_eq(lease(&f, f.self, f.ops, "inc", "node-a", 300, NULL), SN_ECONFLICT);
    fix_close(&f);
}
END_TEST

/* Two instances of the plugin on one database: two sentineld processes sharing the store. */
START_TEST(test_two_instances)
{
    fix_t f;
    const sn_store_ops_t *ops2;
    fix_open(&f, NULL);
    void *other = store_open(&f, "connections = 3\n", &ops2);
    json_t *got = NULL;
    ck_assert_int_eq(save(&f, f.self, f.ops, "shared", 1, 1, "{\"by\":\"one\"}"), 0);
    ck_assert_int_eq(load(&f, other, ops2, "shared", &got), 0);
    assert_json(json_object_get(got, "doc"), "{\"by\":\"one\"}");
    json_decref(got);
    ck_assert_int_eq(save(&f, other, ops2, "shared", 2, 1, "{\"by\":\"two\"}"), 0);
    ck_assert_int_eq(save(&f, f.self, f.ops, "shared", 2, 1, "{\"by\":\"one\"}"), SN_ECONFLICT);

    /* Leases across instances: one holder at a time; the other takes over after expiry. */
    ck_assert_int_eq(lease(&f, f.self, f.ops, "shared", "sentineld-1", 800, NULL), 0);
    ck_assert_int_eq(lease(&f, other, ops2, "shared", "sentineld-2", 800, NULL), SN_ECONFLICT);
    sn_harness_run_ms(f.h, 900);
    ck_assert_int_eq(lease(&f, other, ops2, "shared", "sentineld-2", 60000, NULL), 0);
    ck_assert_int_eq(lease(&f, f.self, f.ops, "shared", "sentineld-1", 800, NULL), SN_ECONFLICT);

    /* Races: both instances ask at once for each of 20 free checkpoints; exactly one wins each. */
    enum { N = 20 };
    sn_result_t ra[N], rb[N];
    memset(ra, 0, sizeof(ra));
    memset(rb, 0, sizeof(rb));
    char id[16];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "race-%d", i);
        ck_assert_int_eq(save(&f, f.self, f.ops, id, 1, 1, "{}"), 0);
    }
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "race-%d", i);
        f.ops->state_lease(f.self, id, "sentineld-1", 60000, sn_result_done, &ra[i]);
        ops2->state_lease(other, id, "sentineld-2", 60000, sn_result_done, &rb[i]);
    }
    int wins_a = 0, wins_b = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(sn_harness_wait(f.h, &ra[i], WAIT_MS), 0);
        ck_assert_int_eq(sn_harness_wait(f.h, &rb[i], WAIT_MS), 0);
        ck_assert_msg((ra[i].status == 0) != (rb[i].status == 0), "race %d: %d and %d", i,
                      ra[i].status, rb[i].status);
        ck_assert(ra[i].status == 0 || ra[i].status == SN_ECONFLICT);
        ck_assert(rb[i].status == 0 || rb[i].status == SN_ECONFLICT);
        wins_a += ra[i].status == 0;
        wins_b += rb[i].status == 0;
        sn_result_clear(&ra[i]);
        sn_result_clear(&rb[i]);
    }
    ck_assert_int_eq(wins_a + wins_b, N);
    char out[4096];
    ck_assert_int_eq(psql(f.db,
                          "SELECT count(*) FROM checkpoints WHERE id LIKE 'race-%' AND "
                          "lease_owner IN ('sentineld-1', 'sentineld-2')",
                          out),
                     0);
    ck_assert_str_eq(out, "20");

    /* Interleaved writes from both complete. */
    sn_result_t r[20];
    memset(r, 0, sizeof(r));
    json_t *doc = json_object();
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
    ck_assert_int_eq(json_array_size(ids), 41);
    json_decref(ids);
    fix_close(&f);
}
END_TEST

/* ---- tests: AUDIT ---- */

START_TEST(test_audit_append_query)
{
    fix_t f;
    fix_open(&f, NULL);
    char out[512], raw[4096], anchor[128];
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

    query_seqs(&f, NULL, out, sizeof(out), anchor);
    ck_assert_str_eq(out, "1,2,3,4,5");
    ck_assert_str_eq(anchor, "");
    query_seqs(&f, "{\"actor\":\"alice\"}", out, sizeof(out), NULL);
    ck_assert_str_eq(out, "1,3,5");
    query_seqs(&f, "{\"actor\":\"alice\",\"action\":\"approve\"}", out, sizeof(out), NULL);
    ck_assert_str_eq(out, "1,5");
    query_seqs(&f, "{\"incident\":\"i1\"}", out, sizeof(out), NULL);
    ck_assert_str_eq(out, "1,2");
    query_seqs(&f,
               "{\"since\":\"2024-05-01T11:00:00.000Z\",\"until\":\"2024-05-03T00:00:00.000Z\"}",
               out, sizeof(out), NULL);
    ck_assert_str_eq(out, "2,3,4");
    query_seqs(&f, "{\"since\":\"2024-05-02\"}", out, sizeof(out), NULL);
    ck_assert_str_eq(out, "3,4,5");
    query_seqs(&f, "{\"after_seq\":2,\"limit\":2}", out, sizeof(out), NULL);
    ck_assert_str_eq(out, "3,4");
    query_seqs(&f, "{\"after_seq\":5}", out, sizeof(out), NULL);
    ck_assert_str_eq(out, "");
    query_seqs(&f, "{\"actor\":\"nobody\"}", out, sizeof(out), NULL);
    ck_assert_str_eq(out, "");
    query_seqs(&f, "{\"actor\":5}", out, sizeof(out), NULL);
    ck_assert_str_eq(out, "ERR-1");
    query_seqs(&f, "{\"limit\":\"x\"}", out, sizeof(out), NULL);
    ck_assert_str_eq(out, "ERR-1");
    query_seqs(&f, "{\"actor\":null,\"limit\":0}", out, sizeof(out), NULL);
    ck_assert_str_eq(out, "1,2,3,4,5");

    /* Records come back whole, and are stored as their canonical text exactly. */
    sn_result_t r = {0};
    json_t *flt = json_pack("{s:s}", "incident", "i2");
    f.ops->audit_query(f.self, flt, sn_result_done, &r);
    json_decref(flt);
    ck_assert_int_eq(finish(&f, &r, r.done), 0);
    json_t *want = audit_rec(3, "2024-05-02T09:00:00.000Z", "alice", "execute", "i2");
    ck_assert(json_equal(json_array_get(json_object_get(r.result, "records"), 0), want));
    char *canon = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_int_eq(psql(f.db, "SELECT record FROM audit WHERE seq = 3", raw), 0);
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
    char out[512], raw[4096];
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(append(&f, audit_rec(i, "2024-05-01T10:00:00.000Z", "a", "b", "c")), 0);

    /* A plain psql session as the very role the store uses is refused every change. */
    ck_assert_int_ne(psql(f.db, "UPDATE audit SET actor = 'mallory' WHERE seq = 2", raw), 0);
    ck_assert_msg(strstr(raw, "append-only") != NULL, "UPDATE refused with: %s", raw);
    ck_assert_int_ne(psql(f.db, "DELETE FROM audit WHERE seq = 3", raw), 0);
    ck_assert_msg(strstr(raw, "append-only") != NULL, "DELETE refused with: %s", raw);
    ck_assert_int_ne(psql(f.db, "DELETE FROM audit", raw), 0);
    ck_assert_int_ne(psql(f.db, "TRUNCATE audit", raw), 0);
    ck_assert_msg(strstr(raw, "append-only") != NULL, "TRUNCATE refused with: %s", raw);
    /* The retention flag alone is not enough: rows above the (missing) anchor stay. */
    ck_assert_int_ne(psql(f.db,
                          "BEGIN; SET LOCAL sentinel.audit_retention = 'on'; "
                          "DELETE FROM audit WHERE seq = 3; COMMIT",
                          raw),
                     0);
    ck_assert_msg(strstr(raw, "append-only") != NULL, "flag-only DELETE refused with: %s", raw);
    /* Anchors cannot be forged without the flag, nor changed at all. */
    ck_assert_int_ne(psql(f.db, "INSERT INTO audit_anchor (seq, hash) VALUES (3, 'x')", raw), 0);
    ck_assert_msg(strstr(raw, "append-only") != NULL, "anchor INSERT refused with: %s", raw);

    query_seqs(&f, NULL, out, sizeof(out), NULL);
    ck_assert_str_eq(out, "1,2,3");
    ck_assert_int_eq(psql(f.db, "SELECT actor FROM audit WHERE seq = 2", raw), 0);
    ck_assert_str_eq(raw, "a");
    ck_assert_int_eq(psql(f.db, "SELECT count(*) FROM audit_anchor", raw), 0);
    ck_assert_str_eq(raw, "0");
    /* The store's own attempt at an UPDATE-like conflict is a conflict, not a change. */
    ck_assert_int_eq(append(&f, audit_rec(2, "2024-05-01T10:00:00.000Z", "mallory", "b", "c")),
                     SN_ECONFLICT);
    ck_assert_int_eq(psql(f.db, "SELECT actor FROM audit WHERE seq = 2", raw), 0);
    ck_assert_str_eq(raw, "a");
    fix_close(&f);
}
END_TEST

START_TEST(test_retention)
{
    fix_t f;
    char out[1024], raw[4096], old_ts[32], new_ts[32], anchor[128];
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

    for (int i = 0; i < 50 && metric(&f, "store_audit_retained_total", NULL) < 2; i++)
        sn_harness_run_ms(f.h, 100);

    query_seqs(&f, NULL, out, sizeof(out), anchor);
    ck_assert_str_eq(out, "3,4");
    ck_assert_str_eq(anchor, "2:0000000000000000000000000000000000000000000000000000000000000002");
    /* Later pages do not repeat the anchor. */
    query_seqs(&f, "{\"after_seq\":3}", out, sizeof(out), anchor);
    ck_assert_str_eq(out, "4");
    ck_assert_str_eq(anchor, "");
    ck_assert_int_eq(psql(f.db, "SELECT seq || ' ' || hash FROM audit_anchor", raw), 0);
    ck_assert_str_eq(raw, "2 0000000000000000000000000000000000000000000000000000000000000002");
    /* The anchor does not open the rows after it, flag or not. */
    ck_assert_int_ne(psql(f.db,
                          "BEGIN; SET LOCAL sentinel.audit_retention = 'on'; "
                          "DELETE FROM audit WHERE seq = 3; COMMIT",
                          raw),
                     0);
    /* A seq at or below the anchor can never be written again. */
    ck_assert_int_eq(append(&f, audit_rec(2, new_ts, "a", "x", "i")), SN_ECONFLICT);
    window(&f, 7, 0, now + 1, 0, out);
    char want[256];
    snprintf(want, sizeof(want), "[[%lld,2.0],[%lld,3.0]]", (long long)(now - 1000),
             (long long)now);
    ck_assert_str_eq(out, want);
    ck_assert(metric(&f, "store_points_expired_total", NULL) == 1);
    ck_assert(metric(&f, "store_audit_retained_total", NULL) == 2);

    /* Nothing newer is touched on the next tick. */
    sn_harness_run_ms(f.h, 1200);
    query_seqs(&f, NULL, out, sizeof(out), NULL);
    ck_assert_str_eq(out, "3,4");
    fix_close(&f);
}
END_TEST

/* ---- tests: TELEMETRY ---- */

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
    double v2[2] = {-1, 0.1};
    ck_assert_int_eq(tel_write(&f, big, ts2, v2, 2), 0);
    ck_assert_int_eq(tel_write(&f, 42, ts, v, 0), 0); /* empty batch */

    window(&f, 42, 2000, 4000, 0, out);
    ck_assert_str_eq(out, "[[2000,2.5],[3000,3.5],[4000,4.5]]");
    window(&f, 42, 0, 10000, 2, out);
    ck_assert_str_eq(out, "[[1000,1.5],[2000,2.5]]");
    window(&f, big, 0, 10000, 10, out);
    ck_assert_str_eq(out, "[[2500,-1.0],[3500,0.10000000000000001]]");
    window(&f, 43, 0, 10000, 10, out);
    ck_assert_str_eq(out, "[]");

    int64_t ts3[2] = {6000, 7000};
    double v3[2] = {6.5, INFINITY};
    ck_assert_int_eq(tel_write(&f, 42, ts3, v3, 2), SN_EINVAL);
    window(&f, 42, 5000, 10000, 10, out);
    ck_assert_str_eq(out, "[[5000,5.5]]");
    fix_close(&f);
}
END_TEST

/* ---- tests: schema, configuration, secrets ---- */

/* Two instances that start together on an empty database apply the migrations once; a database
 * from a newer plugin is refused. */
START_TEST(test_migrations)
{
    fix_t f;
    const sn_store_ops_t *ops2, *ops3;
    char raw[4096], detail[256];
    fix_db(&f, "test_migrations");
    f.self = store_open(&f, "connections = 4\n", &f.ops);
    void *b = store_open(&f, "connections = 4\n", &ops2);
    void *c = store_open(&f, "connections = 4\n", &ops3);
    ck_assert(wait_healthy(&f, f.self, 10000));
    ck_assert(wait_healthy(&f, b, 10000));
    ck_assert(wait_healthy(&f, c, 10000));
    ck_assert_int_eq(
        psql(f.db, "SELECT string_agg(version::text, ',') FROM schema_migrations", raw), 0);
    ck_assert_str_eq(raw, "1");
    ck_assert_int_eq(save(&f, b, ops2, "m", 1, 1, "{}"), 0);
    ck_assert_int_eq(load(&f, c, ops3, "m", NULL), 0);
    ck_assert(healthy(&f, f.self, detail));
    ck_assert_msg(strstr(detail, "4/4 connections up") != NULL, "detail: %s", detail);

    /* A newer schema: refused, operations fail at once, health says why. */
    ck_assert_int_eq(psql(f.db, "INSERT INTO schema_migrations (version) VALUES (99)", raw), 0);
    void *d = store_open(&f, NULL, &ops2);
    for (int i = 0; i < 100 && !strstr(detail, "newer"); i++) {
        sn_harness_run_ms(f.h, 50);
        healthy(&f, d, detail);
    }
    ck_assert(!healthy(&f, d, detail));
    ck_assert_msg(strstr(detail, "newer") != NULL, "detail: %s", detail);
    int64_t t0 = sn_mono_ms();
    ck_assert_int_eq(load(&f, d, ops2, "m", NULL), SN_EIO);
    ck_assert_int_lt(sn_mono_ms() - t0, 1000);
    fix_close(&f);
}
END_TEST

START_TEST(test_config_and_health)
{
    fix_t f;
    char settings[512], logpath[64] = "/tmp/sn-pg-log-XXXXXX";
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    /* Everything the plugin logs goes to a file we search for the password afterwards. */
    int logfd = mkstemp(logpath);
    ck_assert_int_ge(logfd, 0);
    int saved = dup(2);
    dup2(logfd, 2);
    sn_log_set_level(SN_LOG_DEBUG);

    fix_open(&f, NULL);
    ck_assert(wait_healthy(&f, f.self, 10000));

    ck_assert_ptr_null(sn_harness_create(f.h, SN_STORE, "postgres", "connections = 2\n", &p, &err));
    ck_assert_msg(strstr(err.msg, "dsn") != NULL, "error: %s", err.msg);
    snprintf(settings, sizeof(settings), "dsn = host=x password=%s 'unterminated\n", srv.password);
    ck_assert_ptr_null(sn_harness_create(f.h, SN_STORE, "postgres", settings, &p, &err));
    ck_assert_msg(strstr(err.msg, "libpq connection string") != NULL, "error: %s", err.msg);
    ck_assert_msg(strstr(err.msg, srv.password) == NULL, "the password leaked: %s", err.msg);
    snprintf(settings, sizeof(settings), "dsn = host=127.0.0.1 port=%d\nconnections = 0\n",
             srv.port);
    ck_assert_ptr_null(sn_harness_create(f.h, SN_STORE, "postgres", settings, &p, &err));
    ck_assert_msg(strstr(err.msg, "connections") != NULL, "error: %s", err.msg);

    /* A wrong password: never healthy, the reason in health, operations fail after op_timeout. */
    snprintf(settings, sizeof(settings),
             "dsn = host=127.0.0.1 port=%d dbname=%s user=sentinel password=wrong%s\n"
             "op_timeout = 1s\nreconnect_max = 200ms\n",
             srv.port, f.db, srv.password);
    void *bad = sn_harness_create(f.h, SN_STORE, "postgres", settings, &p, &err);
    ck_assert_msg(bad != NULL, "create failed: %s", err.msg);
    sn_result_t r = {0};
    const sn_store_ops_t *bops = p->ops;
    bops->state_load(bad, "x", sn_result_done, &r);
    ck_assert_int_eq(sn_harness_wait(f.h, &r, WAIT_MS), 0);
    ck_assert_int_eq(r.status, SN_EAGAIN);
    sn_result_clear(&r);
    char detail[256];
    ck_assert(!healthy(&f, bad, detail));
    ck_assert_msg(strstr(detail, "password authentication failed") != NULL, "detail: %s", detail);
    ck_assert_msg(strstr(detail, srv.password) == NULL, "the password leaked: %s", detail);

    /* Healthy instance: the ok detail. */
    ck_assert(healthy(&f, f.self, detail));
    ck_assert_msg(strstr(detail, "connections up") != NULL, "detail: %s", detail);
    fix_close(&f);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char buf[65536];
    ssize_t n = pread(logfd, buf, sizeof(buf) - 1, 0);
    close(logfd);
    unlink(logpath);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_msg(strstr(buf, srv.password) == NULL, "the password appears in the logs");
    char where[128];
    snprintf(where, sizeof(where), "host=127.0.0.1 port=%d dbname=%s user=sentinel", srv.port,
             f.db);
    ck_assert_msg(strstr(buf, where) != NULL, "host/db not logged: %s", buf);
}
END_TEST

/* Least privilege: the schema's owner migrates once; the role sentineld then runs as may only
 * read and append — no UPDATE or DELETE on audit, no CREATE — and still does everything,
 * retention included (through the SECURITY DEFINER function). */
START_TEST(test_least_privilege)
{
    fix_t f;
    char raw[4096], dsn[256], settings[512], out[256];
    fix_open(&f, NULL);
    ck_assert(wait_healthy(&f, f.self, 10000));
    ck_assert_int_eq(psql(f.db,
                          "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
                          "GRANT SELECT, INSERT, UPDATE ON checkpoints TO sentinel_app;"
                          "GRANT SELECT, INSERT ON audit TO sentinel_app;"
                          "GRANT SELECT ON audit_anchor, schema_migrations TO sentinel_app;"
                          "GRANT SELECT, INSERT, DELETE ON points TO sentinel_app;"
                          "GRANT EXECUTE ON FUNCTION sentinel_audit_retain(text) TO sentinel_app",
                          raw),
                     0);
    dsn_for(f.db, dsn, sizeof(dsn));
    char *u = strstr(dsn, "user=sentinel");
    ck_assert_ptr_nonnull(u);
    memmove(u + strlen("user=sentinel_app"), u + strlen("user=sentinel"),
            strlen(u + strlen("user=sentinel")) + 1);
    memcpy(u, "user=sentinel_app", strlen("user=sentinel_app"));
    int64_t now = sn_now_ms(), day = 86400000;
    char old_ts[32], new_ts[32];
    sn_format_time_ms(now - 3 * day, old_ts);
    sn_format_time_ms(now, new_ts);
    snprintf(settings, sizeof(settings),
             "dsn = %s\naudit_retention = 1d\nmaintenance_interval = 1s\n", dsn);
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    void *app = sn_harness_create(f.h, SN_STORE, "postgres", settings, &p, &err);
    ck_assert_msg(app != NULL, "create: %s", err.msg);
    ck_assert_msg(wait_healthy(&f, app, 10000), "the restricted role cannot start");
    const sn_store_ops_t *ops = p->ops;
    void *owner = f.self;
    const sn_store_ops_t *owner_ops = f.ops;
    f.self = app;
    f.ops = ops;
    ck_assert_int_eq(save(&f, app, ops, "lp", 1, 1, "{}"), 0);
    ck_assert_int_eq(save(&f, app, ops, "lp", 2, 1, "{}"), 0);
    ck_assert_int_eq(lease(&f, app, ops, "lp", "me", 1000, NULL), 0);
    ck_assert_int_eq(load(&f, app, ops, "lp", NULL), 0);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(append(&f, audit_rec(i, i < 3 ? old_ts : new_ts, "a", "x", "i")), 0);
    for (int i = 0;
         i < 50 && metric(&f, "store_audit_retained_total", "instance=\"store:postgres_2\"") < 1;
         i++)
        sn_harness_run_ms(f.h, 100);
    query_seqs(&f, NULL, out, sizeof(out), raw);
    ck_assert_str_eq(out, "3");
    ck_assert_str_eq(raw, "2:0000000000000000000000000000000000000000000000000000000000000002");

    /* The role itself cannot touch the chain at all, flag or not. */
    ck_assert_int_ne(psql_as("sentinel_app", f.db, "UPDATE audit SET actor = 'x'", raw), 0);
    ck_assert_msg(strstr(raw, "permission denied") != NULL, "%s", raw);
    ck_assert_int_ne(psql_as("sentinel_app", f.db,
                             "BEGIN; SET LOCAL sentinel.audit_retention = 'on';"
                             "DELETE FROM audit; COMMIT",
                             raw),
                     0);
    ck_assert_msg(strstr(raw, "permission denied") != NULL, "%s", raw);
    ck_assert_int_ne(psql_as("sentinel_app", f.db, "ALTER TABLE audit DISABLE TRIGGER ALL", raw),
                     0);
    ck_assert_int_eq(psql(f.db, "SELECT count(*) FROM audit", raw), 0);
    ck_assert_str_eq(raw, "1");
    /* Nor can anyone else call the retention function. */
    ck_assert_int_eq(psql(f.db,
                          "SELECT has_function_privilege('public', 'sentinel_audit_retain(text)', "
                          "'EXECUTE')",
                          raw),
                     0);
    ck_assert_str_eq(raw, "f");
    f.self = owner;
    f.ops = owner_ops;
    fix_close(&f);
}
END_TEST

/* ---- tests: bounds and lifecycle ---- */

START_TEST(test_bounded_queue)
{
    fix_t f;
    fix_open(&f, "max_inflight = 4\nconnections = 1\n");
    ck_assert(wait_healthy(&f, f.self, 10000));
    sn_result_t r[10];
    memset(r, 0, sizeof(r));
    json_t *doc = json_object();
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "q%d", i);
        f.ops->state_save(f.self, id, 1, 1, doc, sn_result_done, &r[i]);
        ck_assert(!r[i].done);
    }
    json_decref(doc);
    int ok = 0, refused = 0;
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(sn_harness_wait(f.h, &r[i], WAIT_MS), 0);
        ok += r[i].status == 0;
        refused += r[i].status == SN_EAGAIN;
        sn_result_clear(&r[i]);
    }
    ck_assert_int_eq(ok, 4);
    ck_assert_int_eq(refused, 6);
    ck_assert(metric(&f, "store_rejected_total", NULL) == 6);
    ck_assert(metric(&f, "store_queue_depth", NULL) == 0);
    ck_assert(metric(&f, "store_queries_total", NULL) >= 4);
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

/* ---- tests: faults ---- */

typedef struct chain {
    fix_t *f;
    char id[16];
    int64_t next; /* version to save next */
    int inflight; /* a save is running */
    int ok, errors, conflicts, after_ok;
    sn_result_t r;
} chain_t;

static void chain_issue(chain_t *c)
{
    char doc[64];
    snprintf(doc, sizeof(doc), "{\"v\":%lld}", (long long)c->next);
    json_t *d = json_loads(doc, 0, NULL);
    memset(&c->r, 0, sizeof(c->r));
    c->f->ops->state_save(c->f->self, c->id, c->next, 1, d, sn_result_done, &c->r);
    json_decref(d);
    c->inflight = 1;
}

/* The server restarts (fast shutdown: every session killed) in the middle of a stream of saves
 * and audit appends. Every operation completes, with success or an error; the plugin reconnects
 * and later operations succeed; what was reported saved is exactly what is stored; the loop
 * keeps turning throughout. */
START_TEST(test_restart_midway)
{
    fix_t f;
    gap_t g;
    enum { NCH = 4 };
    chain_t ch[NCH];
    fix_open(&f, "op_timeout = 20s\nreconnect_max = 500ms\nconnections = 2\n");
    ck_assert(wait_healthy(&f, f.self, 10000));
    memset(ch, 0, sizeof(ch));
    for (int i = 0; i < NCH; i++) {
        ch[i].f = &f;
        snprintf(ch[i].id, sizeof(ch[i].id), "chain-%d", i);
        ch[i].next = 1;
    }
    int64_t seq = 1, audit_ok = 0;
    sn_result_t ar = {0};
    int audit_inflight = 0;
    char ts[32];
    sn_format_time_ms(sn_now_ms(), ts);

    gap_start(&f, &g);
    pid_t child = 0;
    int restarted = 0;
    int64_t start = sn_mono_ms(), deadline = start + 45000;
    while (sn_mono_ms() < deadline) {
        for (int i = 0; i < NCH; i++) {
            chain_t *c = &ch[i];
            if (c->inflight && c->r.done) {
                c->inflight = 0;
                if (c->r.status == 0) {
                    c->ok++;
                    c->next++;
                    c->after_ok += restarted;
                } else {
                    c->errors++;
                    c->conflicts += c->r.status == SN_ECONFLICT;
                }
                sn_result_clear(&c->r);
            }
            if (!c->inflight)
                chain_issue(c);
        }
        if (audit_inflight && ar.done) {
            audit_inflight = 0;
            if (ar.status == 0) {
                audit_ok++;
                seq++;
            } else {
                ck_assert_int_ne(ar.status, SN_ECONFLICT); /* a re-sent append is not a conflict */
            }
            sn_result_clear(&ar);
        }
        if (!audit_inflight) {
            json_t *rec = audit_rec(seq, ts, "a", "x", "i");
            f.ops->audit_append(f.self, rec, sn_result_done, &ar);
            json_decref(rec);
            audit_inflight = 1;
        }
        if (!child && sn_mono_ms() - start > 500)
            child = helper_bg_restart("0.7");
        if (child && !restarted) {
            int st;
            if (waitpid(child, &st, WNOHANG) == child) {
                ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "restart failed");
                restarted = 1;
            }
        }
        int enough = restarted;
        for (int i = 0; i < NCH; i++)
            enough &= ch[i].after_ok >= 10;
        if (enough)
            break;
        sn_harness_run_ms(f.h, 5);
    }
    ck_assert_msg(restarted, "the server restart did not finish");
    /* Let the last operations complete. */
    for (int i = 0; i < NCH; i++) {
        if (ch[i].inflight) {
            ck_assert_int_eq(sn_harness_wait(f.h, &ch[i].r, WAIT_MS), 0);
            if (ch[i].r.status == 0) {
                ch[i].ok++;
                ch[i].next++;
            } else {
                ch[i].errors++;
            }
            sn_result_clear(&ch[i].r);
        }
    }
    if (audit_inflight) {
        ck_assert_int_eq(sn_harness_wait(f.h, &ar, WAIT_MS), 0);
        audit_ok += ar.status == 0;
        sn_result_clear(&ar);
    }
    gap_stop(&g);

    int errors = 0;
    for (int i = 0; i < NCH; i++) {
        ck_assert_msg(ch[i].after_ok >= 10, "chain %d: only %d saves after the restart", i,
                      ch[i].after_ok);
        ck_assert_int_eq(ch[i].conflicts, 0);
        errors += ch[i].errors;
        /* Exactly the reported successes are stored: nothing lost, nothing applied twice. */
        json_t *got = NULL;
        ck_assert_int_eq(load(&f, f.self, f.ops, ch[i].id, &got), 0);
        ck_assert_int_eq(json_integer_value(json_object_get(got, "version")), ch[i].ok);
        json_decref(got);
    }
    char out[65536];
    query_seqs(&f, "{\"limit\":10000}", out, sizeof(out), NULL);
    char *last = strrchr(out, ',');
    ck_assert_int_eq(atoll(last ? last + 1 : out), audit_ok);
    ck_assert(metric(&f, "store_reconnects_total", NULL) >= 1);
    fprintf(stderr,
            "restart: %d saves ok, %d errors, %lld appends ok, %.0f operations re-sent; loop "
            "timer fired %d times, longest gap %lld ms\n",
            ch[0].ok + ch[1].ok + ch[2].ok + ch[3].ok, errors, (long long)audit_ok,
            metric(&f, "store_resent_total", NULL), g.fires, (long long)g.max);
    ck_assert_msg(g.max < 300, "the loop stalled for %lld ms", (long long)g.max);
    ck_assert(wait_healthy(&f, f.self, 5000));
    fix_close(&f);
}
END_TEST

/* The server is frozen (SIGSTOP): sockets accept but nothing answers. Operations time out at
 * op_timeout instead of hanging, connection attempts give up at connect_timeout, the loop never
 * waits; once the server thaws everything works again. */
START_TEST(test_server_frozen)
{
    fix_t f;
    gap_t g;
    char detail[256];
    fix_open(&f, "op_timeout = 1500ms\nconnect_timeout = 500ms\nreconnect_max = 300ms\n");
    ck_assert_int_eq(save(&f, f.self, f.ops, "frozen", 1, 1, "{}"), 0);
    ck_assert_int_eq(helper("pause", NULL), 0);
    gap_start(&f, &g);
    sn_result_t r1 = {0}, r2 = {0};
    json_t *doc = json_object();
    f.ops->state_save(f.self, "other", 1, 1, doc, sn_result_done, &r1);
    json_decref(doc);
    f.ops->state_load(f.self, "frozen", sn_result_done, &r2);
    int64_t t0 = sn_mono_ms();
    ck_assert_int_eq(sn_harness_wait(f.h, &r1, 5000), 0);
    ck_assert_int_eq(sn_harness_wait(f.h, &r2, 5000), 0);
    int64_t took = sn_mono_ms() - t0;
    ck_assert_msg(r1.status == SN_ETIMEDOUT || r1.status == SN_EAGAIN, "save: %d", r1.status);
    ck_assert_msg(r2.status == SN_ETIMEDOUT || r2.status == SN_EAGAIN, "load: %d", r2.status);
    ck_assert_int_ge(took, 1000);
    ck_assert_int_lt(took, 3000);
    sn_result_clear(&r1);
    sn_result_clear(&r2);
    sn_harness_run_ms(f.h, 800); /* reconnect attempts hang and give up meanwhile */
    ck_assert(!healthy(&f, f.self, detail));
    gap_stop(&g);
    ck_assert_msg(g.max < 300, "the loop stalled for %lld ms", (long long)g.max);
    ck_assert_int_eq(helper("resume", NULL), 0);
    ck_assert_msg(wait_healthy(&f, f.self, 10000), "not healthy after the thaw");
    json_t *got = NULL;
    ck_assert_int_eq(load(&f, f.self, f.ops, "frozen", &got), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(got, "version")), 1);
    json_decref(got);
    ck_assert_int_eq(save(&f, f.self, f.ops, "frozen", 2, 1, "{}"), 0);
    fix_close(&f);
}
END_TEST

/* The connection dies after the server committed a write but before its answer arrived: the
 * test reads the answer off the plugin's socket itself, then shuts the socket down. The write is
 * re-sent on a new connection and recognised as already applied: success, not a false
 * conflict, and applied once. */
static int steal_answer(void)
{
    int stolen = -1;
    for (int fd = 3; fd < 1024; fd++) {
        struct sockaddr_in peer;
        socklen_t len = sizeof(peer);
        if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0 || peer.sin_family != AF_INET ||
            ntohs(peer.sin_port) != srv.port)
            continue;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        ck_assert_msg(n > 0, "no answer waiting on the plugin's connection");
        shutdown(fd, SHUT_RDWR);
        ck_assert_int_eq(stolen, -1); /* exactly one connection to the server */
        stolen = fd;
    }
    return stolen;
}

START_TEST(test_unknown_outcome)
{
    fix_t f;
    char out[512];
    fix_open(&f, "connections = 1\n");
    ck_assert_int_eq(save(&f, f.self, f.ops, "u", 1, 1, "{\"n\":1}"), 0);

    sn_result_t r = {0};
    json_t *doc = json_pack("{s:i}", "n", 2);
    f.ops->state_save(f.self, "u", 2, 1, doc, sn_result_done, &r);
    json_decref(doc);
    usleep(300000); /* the loop does not run: the answer waits in the socket */
    ck_assert_int_ge(steal_answer(), 0);
    ck_assert_int_eq(finish(&f, &r, r.done), 0);
    sn_result_clear(&r);
    json_t *got = NULL;
    ck_assert_int_eq(load(&f, f.self, f.ops, "u", &got), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(got, "version")), 2);
    json_decref(got);

    json_t *rec = audit_rec(1, "2024-05-01T10:00:00.000Z", "a", "x", "u");
    f.ops->audit_append(f.self, rec, sn_result_done, &r);
    json_decref(rec);
    usleep(300000);
    ck_assert_int_ge(steal_answer(), 0);
    ck_assert_int_eq(finish(&f, &r, r.done), 0);
    sn_result_clear(&r);
    query_seqs(&f, NULL, out, sizeof(out), NULL);
    ck_assert_str_eq(out, "1");

    /* A lease is idempotent: re-sent as is. */
    f.ops->state_lease(f.self, "u", "me", 60000, sn_result_done, &r);
    usleep(300000);
    ck_assert_int_ge(steal_answer(), 0);
    ck_assert_int_eq(finish(&f, &r, r.done), 0);
    sn_result_clear(&r);
    ck_assert(metric(&f, "store_resent_total", NULL) == 3);

    /* A real conflict stays a conflict even when re-sent. */
    ck_assert_int_eq(save(&f, f.self, f.ops, "u", 2, 1, "{\"n\":9}"), SN_ECONFLICT);
    fix_close(&f);
}
END_TEST

static Suite *pg_suite(void)
{
    Suite *s = suite_create("postgres_store");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_state_versions);
    tcase_add_test(tc, test_state_list_open);
    tcase_add_test(tc, test_state_lease);
    tcase_add_test(tc, test_two_instances);
    tcase_add_test(tc, test_audit_append_query);
    tcase_add_test(tc, test_audit_append_only);
    tcase_add_test(tc, test_retention);
    tcase_add_test(tc, test_telemetry_window);
    tcase_add_test(tc, test_migrations);
    tcase_add_test(tc, test_config_and_health);
    tcase_add_test(tc, test_least_privilege);
    tcase_add_test(tc, test_bounded_queue);
    tcase_add_test(tc, test_stop_drains);
    tcase_add_test(tc, test_unknown_outcome);
    tcase_add_test(tc, test_restart_midway);
    tcase_add_test(tc, test_server_frozen);
    suite_add_tcase(s, tc);
    return s;
}

/* Start the throwaway server; it is removed at exit (or by its watchdog if we crash).
 * Returns 0, 77 when PostgreSQL is not installed, or -1. */
static int server_start(void)
{
    char cmd[1024], line[4096] = "";
    snprintf(srv.helper, sizeof(srv.helper), "%s/tests/support/pgserver.py", SN_SOURCE_DIR);
    snprintf(cmd, sizeof(cmd), "python3 %s start --watch-pid %d", srv.helper, (int)getpid());
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    int got = fgets(line, sizeof(line), p) != NULL;
    int st = pclose(p);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        return 77; /* no PostgreSQL installed: skipped */
    if (!got || st != 0)
        return -1;
    json_t *info = json_loads(line, 0, NULL);
    if (!info)
        return -1;
    snprintf(srv.dir, sizeof(srv.dir), "%s", json_string_value(json_object_get(info, "dir")));
    snprintf(srv.password, sizeof(srv.password), "%s",
             json_string_value(json_object_get(info, "password")));
    srv.port = (int)json_integer_value(json_object_get(info, "port"));
    json_decref(info);
    /* The store reads it through ${env:SN_PG_PASSWORD}; libpq itself never sees it in the
     * environment (PGPASSWORD stays unset here). */
    setenv("SN_PG_PASSWORD", srv.password, 1);
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int rc = server_start();
    if (rc == 77) {
        fprintf(stderr, "skipped: no PostgreSQL server binaries on this machine\n");
        return 77;
    }
    if (rc != 0) {
        fprintf(stderr, "cannot start a PostgreSQL server through tests/support/pgserver.py\n");
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(pg_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    helper("stop", NULL);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
