/**
 * @file check_clickhouse_store.c
 * Integration suite of the clickhouse store: the plugin .so loaded through the harness against a
 * real ClickHouse 18.16 (tests/support/chserver.py starts it in a temp dir on free loopback
 * ports; the suite passes with a SKIP line when clickhouse-server is not installed).
 *
 * Covered: schema creation; batches sealed by size and by time; exact telemetry_window answers;
 * ClickHouse stopped -> batches spooled (gauge > 0) -> started -> replayed, nothing lost or
 * doubled; spool full -> SN_EAGAIN; a restart with a non-empty (and torn) spool replays it;
 * ClickHouse's error text reaches done(); credentials in headers, never in logs; the stats route.
 *
 * Each test uses its own database, so they do not see each other's rows.
 */
#include "harness.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_MS 15000
#define CH_LABELS "instance=\"store:clickhouse\""
#define CHSERVER SN_SOURCE_DIR "/tests/support/chserver.py"
#define CH_PW "sentinel-test-pw" /* chserver.py's password of user `sentinel` */

static char g_dir[128]; /* the server's temp dir */
static char g_url[128];

/* ---- the server ---- */

/* Quote @p s for sh -c within single quotes. */
static void shq(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    out[o++] = '\'';
    for (; *s && o + 5 < cap; s++) {
        if (*s == '\'') {
            memcpy(out + o, "'\\''", 4);
            o += 4;
        } else {
            out[o++] = *s;
        }
    }
    out[o++] = '\'';
    out[o] = '\0';
}

static int chserver(const char *verb)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "python3 %s %s %s >/dev/null", CHSERVER, verb, g_dir);
    return system(cmd);
}

static void ch_up(void)
{
    ck_assert_int_eq(chserver("start"), 0);
}

static void ch_down(void)
{
    ck_assert_int_eq(chserver("stop"), 0);
}

/* Run @p sql on the server; the answer (trimmed) goes to @p out. Returns the exit status. */
static int ch_sql(const char *sql, char *out, size_t cap)
{
    char q[4096], cmd[4600];
    shq(q, sizeof(q), sql);
    snprintf(cmd, sizeof(cmd), "python3 %s query %s %s", CHSERVER, g_dir, q);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    return pclose(p);
}

static long ch_count(const char *sql)
{
    char out[256];
    ck_assert_msg(ch_sql(sql, out, sizeof(out)) == 0, "%s: %s", sql, out);
    return strtol(out, NULL, 10);
}

/* ---- fixture ---- */

typedef struct fix {
    sn_harness_t *h;
    void *self;
    const sn_store_ops_t *ops;
    const sn_plugin_t *plugin;
    char spool[128];
} fix_t;

static void *store_open(fix_t *f, const char *db, const char *extra)
{
    char settings[1024];
    sn_err_t err = {{0}};
    snprintf(settings, sizeof(settings),
             "url = %s\ndatabase = %s\nretry_base = 50ms\nretry_max = 400ms\n%s", g_url, db,
             extra ? extra : "");
    f->self = sn_harness_create(f->h, SN_STORE, "clickhouse", settings, &f->plugin, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    f->ops = f->plugin->ops;
    ck_assert_uint_eq(f->ops->caps, SN_STORE_TELEMETRY);
    return f->self;
}

static void fix_open(fix_t *f, const char *db, const char *extra)
{
    memset(f, 0, sizeof(*f));
    ch_up();
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", db);
    char out[256];
    ck_assert_int_eq(ch_sql(sql, out, sizeof(out)), 0);
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    store_open(f, db, extra);
}

static void spool_dir(fix_t *f)
{
    snprintf(f->spool, sizeof(f->spool), "/tmp/sn-chspool-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->spool));
}

static void rm_tree(const char *dir)
{
    char cmd[256];
    if (dir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
}

static void fix_close(fix_t *f)
{
    if (f->h)
        sn_harness_free(f->h);
    f->h = NULL;
    rm_tree(f->spool);
    ch_up();
}

static double metric(fix_t *f, const char *name)
{
    return sn_metric_value(sn_harness_runtime(f->h), name, CH_LABELS);
}

/* Run the loop until the server-side count reaches @p want (polled every 200 ms). */
static long wait_count(fix_t *f, const char *sql, long want, int64_t ms)
{
    long n = -1;
    for (int64_t waited = 0; waited <= ms; waited += 200) {
        if ((n = ch_count(sql)) == want)
            return n;
        sn_harness_run_ms(f->h, 200);
    }
    return n;
}

static void wait_metric(fix_t *f, const char *name, double want, int64_t ms)
{
    for (int64_t waited = 0; waited <= ms && metric(f, name) != want; waited += 50)
        sn_harness_run_ms(f->h, 50);
    ck_assert_msg(metric(f, name) == want, "%s is %g, want %g", name, metric(f, name), want);
}

/* ---- points ---- */

static const sn_label_t g_labels[] = {{"host", "a\"b"}, {"service", "cart"}};

/* @p n points of @p series: ts = t0 + i * step, value = v0 + i. */
static sn_point_t *mkpts(uint64_t series, int64_t t0, int64_t step, double v0, size_t n)
{
    sn_point_t *p = calloc(n, sizeof(*p));
    for (size_t i = 0; i < n; i++) {
        p[i].series = series;
        p[i].ts_ms = t0 + (int64_t)i * step;
        p[i].value = v0 + (double)i;
        p[i].metric = "latency_ms";
        p[i].labels = g_labels;
        p[i].nlabels = 2;
    }
    return p;
}

/* Start a write; the points are scribbled over right after the call (they are borrowed). */
static void write_start(fix_t *f, sn_point_t *p, size_t n, sn_result_t *r)
{
    memset(r, 0, sizeof(*r));
    f->ops->telemetry_write(f->self, p, n, sn_result_done, r);
    ck_assert_msg(!r->done, "done ran inside the call");
    for (size_t i = 0; i < n; i++) {
        p[i].value = -1;
        p[i].ts_ms = -1;
    }
}

static int write_wait(fix_t *f, uint64_t series, int64_t t0, int64_t step, double v0, size_t n)
{
    sn_result_t r;
    sn_point_t *p = mkpts(series, t0, step, v0, n);
    write_start(f, p, n, &r);
    free(p);
    ck_assert_int_eq(sn_harness_wait(f->h, &r, WAIT_MS), 0);
    int st = r.status;
    sn_result_clear(&r);
    return st;
}

static char *dumps(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static int window(fix_t *f, uint64_t series, int64_t from, int64_t to, size_t limit, json_t **pts)
{
    sn_result_t r = {0};
    f->ops->telemetry_window(f->self, series, from, to, limit, sn_result_done, &r);
    ck_assert_msg(!r.done, "done ran inside the call");
    ck_assert_int_eq(sn_harness_wait(f->h, &r, WAIT_MS), 0);
    if (pts)
        *pts = json_incref(json_object_get(r.result, "points"));
    int st = r.status;
    sn_result_clear(&r);
    return st;
}

#define T0 1795600800000LL /* 2026-11-25T10:00:00Z */

/* ---- tests ---- */

START_TEST(test_schema)
{
    fix_t f;
    char out[4096];
    fix_open(&f, "t_schema", NULL);
    ck_assert_int_eq(write_wait(&f, 7, T0, 1000, 1.5, 3), 0);
    ck_assert_int_eq(ch_sql("SELECT name, type FROM system.columns WHERE database = 't_schema' "
                            "AND table = 'points' FORMAT CSV",
                            out, sizeof(out)),
                     0);
    ck_assert_str_eq(out, "\"date\",\"Date\"\n\"series\",\"UInt64\"\n\"ts\",\"Int64\"\n"
                          "\"value\",\"Float64\"\n\"metric\",\"String\"\n\"labels\",\"String\"");
    ck_assert_int_eq(ch_sql("SELECT engine, partition_key, sorting_key FROM system.tables WHERE "
                            "database = 't_schema' AND name = 'points' FORMAT TSV",
                            out, sizeof(out)),
                     0);
    ck_assert_str_eq(out, "MergeTree\tdate\tseries, ts");
    /* Every column as written: labels as JSON text, the date in UTC. */
    ck_assert_int_eq(ch_sql("SELECT date, series, ts, value, metric, labels FROM t_schema.points "
                            "ORDER BY ts FORMAT TSV",
                            out, sizeof(out)),
                     0);
    ck_assert_str_eq(out, "2026-11-25\t7\t1795600800000\t1.5\tlatency_ms\t{\"host\":\"a\\\\\"b\","
                          "\"service\":\"cart\"}\n"
                          "2026-11-25\t7\t1795600801000\t2.5\tlatency_ms\t{\"host\":\"a\\\\\"b\","
                          "\"service\":\"cart\"}\n"
                          "2026-11-25\t7\t1795600802000\t3.5\tlatency_ms\t{\"host\":\"a\\\\\"b\","
                          "\"service\":\"cart\"}");
    ck_assert_int_eq(ch_count("SELECT visitParamExtractString(labels, 'service') = 'cart' FROM "
                              "t_schema.points LIMIT 1"),
                     1);
    /* A second instance on the existing table just uses it. */
    fix_close(&f);
    fix_t g = {0};
    g.h = sn_harness_new();
    store_open(&g, "t_schema", NULL);
    ck_assert_int_eq(write_wait(&g, 7, T0 + 3000, 1000, 4.5, 1), 0);
    ck_assert_int_eq(ch_count("SELECT count() FROM t_schema.points"), 4);
    fix_close(&g);
}
END_TEST

/* The store keeps each series' encoded metric and labels (a slot per series id modulo 4096):
 * two series that share a slot, written in turn, each keep their own labels. */
START_TEST(test_rows_keep_their_labels)
{
    fix_t f;
    char out[4096];
    fix_open(&f, "t_tails", "batch_interval = 50ms\n");
    static const sn_label_t a[] = {{"service", "cart"}};
    static const sn_label_t b[] = {{"pod", "p-1"}, {"service", "shop"}};
    sn_point_t p[4];
    for (int i = 0; i < 4; i++)
        p[i] = (sn_point_t){.ts_ms = T0 + i * 1000,
                            .value = i,
                            .series = i % 2 ? 5 + 4096 : 5,
                            .metric = i % 2 ? "errors" : "latency_ms",
                            .labels = i % 2 ? b : a,
                            .nlabels = i % 2 ? 2 : 1};
    sn_result_t r;
    write_start(&f, p, 4, &r);
    ck_assert_int_eq(sn_harness_wait(f.h, &r, WAIT_MS), 0);
    ck_assert_int_eq(r.status, 0);
    sn_result_clear(&r);
    ck_assert_int_eq(ch_sql("SELECT series, metric, labels FROM t_tails.points ORDER BY ts "
                            "FORMAT TSV",
                            out, sizeof(out)),
                     0);
    ck_assert_str_eq(out, "5\tlatency_ms\t{\"service\":\"cart\"}\n"
                          "4101\terrors\t{\"pod\":\"p-1\",\"service\":\"shop\"}\n"
                          "5\tlatency_ms\t{\"service\":\"cart\"}\n"
                          "4101\terrors\t{\"pod\":\"p-1\",\"service\":\"shop\"}");
    fix_close(&f);
}
END_TEST

START_TEST(test_batch_by_size)
{
    fix_t f;
    sn_result_t a, b;
    fix_open(&f, "t_size", "batch_points = 100\nbatch_interval = 60s\n");
    sn_point_t *p1 = mkpts(1, T0, 1000, 0, 60), *p2 = mkpts(1, T0 + 60000, 1000, 60, 40);
    write_start(&f, p1, 60, &a);
    sn_harness_run_ms(f.h, 700);
    ck_assert_msg(!a.done, "a partial batch is not flushed before batch_interval");
    ck_assert_int_eq(ch_count("SELECT count() FROM t_size.points"), 0);
    ck_assert(metric(&f, "clickhouse_buffered_points") == 60);
    write_start(&f, p2, 40, &b); /* reaches batch_points */
    ck_assert_int_eq(sn_harness_wait(f.h, &a, WAIT_MS), 0);
    ck_assert_int_eq(sn_harness_wait(f.h, &b, WAIT_MS), 0);
    ck_assert_int_eq(a.status, 0);
    ck_assert_int_eq(b.status, 0);
    ck_assert_int_eq(ch_count("SELECT count() FROM t_size.points"), 100);
    /* One INSERT: one part. */
    ck_assert_int_eq(ch_count("SELECT count() FROM system.parts WHERE database = 't_size' AND "
                              "table = 'points' AND active"),
                     1);
    ck_assert(metric(&f, "clickhouse_points_written_total") == 100);
    ck_assert(metric(&f, "clickhouse_buffered_points") == 0);
    free(p1);
    free(p2);
    sn_result_clear(&a);
    sn_result_clear(&b);
    fix_close(&f);
}
END_TEST

START_TEST(test_batch_by_time)
{
    fix_t f;
    sn_result_t a;
    fix_open(&f, "t_time", "batch_points = 10000\nbatch_interval = 400ms\n");
    sn_point_t *p = mkpts(2, T0, 1000, 0, 5);
    int64_t t = sn_mono_ms();
    write_start(&f, p, 5, &a);
    ck_assert_int_eq(sn_harness_wait(f.h, &a, WAIT_MS), 0);
    int64_t took = sn_mono_ms() - t;
    ck_assert_int_eq(a.status, 0);
    ck_assert_msg(took >= 350 && took < 5000, "flushed after %lld ms", (long long)took);
    ck_assert_int_eq(ch_count("SELECT count() FROM t_time.points"), 5);
    /* Stop flushes what is left at once. */
    free(p);
    p = mkpts(2, T0 + 5000, 1000, 5, 5);
    write_start(&f, p, 5, &a);
    sn_harness_free(f.h);
    f.h = NULL;
    ck_assert(a.done && a.status == 0);
    ck_assert_int_eq(ch_count("SELECT count() FROM t_time.points"), 10);
    free(p);
    sn_result_clear(&a);
    fix_close(&f);
}
END_TEST

START_TEST(test_window_exact)
{
    fix_t f;
    json_t *pts = NULL;
    fix_open(&f, "t_window", "batch_interval = 50ms\n");
    const uint64_t s = 0xF00000000000000FULL; /* over INT64_MAX: UInt64 end to end */
    const double vals[] = {
        0.1, 1e-300, -123456.789, 5e-324, 1.7976931348623157e308, 0.30000000000000004, 100.0, 2.5};
    const int64_t ts[] = {T0 + 5000, T0 + 1000, T0 + 3000, T0,
                          T0 + 7000, T0 + 2000, T0 + 4000, T0 + 6000};
    sn_point_t p[8];
    for (int i = 0; i < 8; i++) {
        p[i] = (sn_point_t){.ts_ms = ts[i], .value = vals[i], .series = s, .metric = "m"};
    }
    sn_result_t r;
    write_start(&f, p, 8, &r);
    ck_assert_int_eq(sn_harness_wait(f.h, &r, WAIT_MS), 0);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(write_wait(&f, s + 1, T0, 1000, 9, 5), 0); /* another series */
    ck_assert_int_eq(window(&f, s, T0, T0 + 7000, 100, &pts), 0);
    ck_assert_uint_eq(json_array_size(pts), 8);
    const double want[] = {5e-324, 1e-300, 0.30000000000000004,   -123456.789, 100.0,
                           0.1,    2.5,    1.7976931348623157e308};
    for (size_t i = 0; i < 8; i++) {
        json_t *pt = json_array_get(pts, i);
        ck_assert_int_eq(json_integer_value(json_array_get(pt, 0)), T0 + (int64_t)i * 1000);
        ck_assert_msg(json_real_value(json_array_get(pt, 1)) == want[i], "point %zu: %.17g", i,
                      json_real_value(json_array_get(pt, 1)));
    }
    json_decref(pts);
    /* Bounds are inclusive; limit keeps the oldest. */
    ck_assert_int_eq(window(&f, s, T0 + 1000, T0 + 3000, 0, &pts), 0);
    char *txt = dumps(pts);
    ck_assert_str_eq(txt, "[[1795600801000,1e-300],[1795600802000,0.30000000000000004],"
                          "[1795600803000,-123456.789]]");
    free(txt);
    json_decref(pts);
    ck_assert_int_eq(window(&f, s, T0, T0 + 7000, 2, &pts), 0);
    ck_assert_uint_eq(json_array_size(pts), 2);
    ck_assert_int_eq(json_integer_value(json_array_get(json_array_get(pts, 1), 0)), T0 + 1000);
    json_decref(pts);
    ck_assert_int_eq(window(&f, 12345, T0, T0 + 7000, 10, &pts), 0);
    ck_assert_uint_eq(json_array_size(pts), 0);
    json_decref(pts);
    /* Non-finite values are refused, nothing of the batch is written. */
    p[0].value = NAN;
    write_start(&f, p, 2, &r);
    ck_assert_int_eq(sn_harness_wait(f.h, &r, WAIT_MS), 0);
    ck_assert_int_eq(r.status, SN_EINVAL);
    fix_close(&f);
}
END_TEST

START_TEST(test_outage_spool_replay)
{
    fix_t f;
    char extra[512];
    spool_dir(&f);
    snprintf(extra, sizeof(extra), "spool_dir = %s\nbatch_points = 50\nbatch_interval = 100ms\n",
             f.spool);
    char keep[128];
    snprintf(keep, sizeof(keep), "%s", f.spool);
    fix_open(&f, "t_outage", extra);
    snprintf(f.spool, sizeof(f.spool), "%s", keep);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(write_wait(&f, 3, T0 + i * 50000, 1000, i * 50, 50), 0);
    ck_assert_int_eq(ch_count("SELECT count() FROM t_outage.points"), 200);

    ch_down();
    /* Every write is acknowledged once on disk. */
    for (int i = 4; i < 10; i++)
        ck_assert_int_eq(write_wait(&f, 3, T0 + i * 50000, 1000, i * 50, 50), 0);
    ck_assert(metric(&f, "clickhouse_spool_bytes") > 0);
    ck_assert(metric(&f, "clickhouse_spool_points") == 300);
    ck_assert(metric(&f, "clickhouse_up") == 0);
    ck_assert(metric(&f, "clickhouse_points_spooled_total") == 300);
    sn_health_t hl = {0};
    f.plugin->health(f.self, &hl);
    ck_assert(!hl.ok);
    ck_assert_msg(strstr(hl.detail, "unavailable") != NULL, "%s", hl.detail);
    ck_assert_int_eq(window(&f, 3, T0, T0 + 1000000, 10, NULL), SN_EAGAIN);

    ch_up();
    ck_assert_int_eq(wait_count(&f, "SELECT count() FROM t_outage.points", 500, 20000), 500);
    wait_metric(&f, "clickhouse_spool_bytes", 0, 5000);
    ck_assert_int_eq(ch_count("SELECT uniqExact(ts) FROM t_outage.points"), 500);
    ck_assert(metric(&f, "clickhouse_up") == 1);
    ck_assert(metric(&f, "clickhouse_spool_points_replayed_total") == 300);
    /* Segments are gone once replayed; direct inserts resume. */
    DIR *d = opendir(f.spool);
    struct dirent *de;
    int segs = 0;
    while ((de = readdir(d)) != NULL)
        segs += strstr(de->d_name, ".chspool") != NULL;
    closedir(d);
    ck_assert_int_eq(segs, 0);
    ck_assert_int_eq(write_wait(&f, 3, T0 + 600000, 1000, 0, 50), 0);
    ck_assert_int_eq(ch_count("SELECT count() FROM t_outage.points"), 550);
    fix_close(&f);
}
END_TEST

START_TEST(test_spool_full)
{
    fix_t f;
    char extra[512], keep[128];
    spool_dir(&f);
    snprintf(keep, sizeof(keep), "%s", f.spool);
    snprintf(extra, sizeof(extra),
             "spool_dir = %s\nspool_max = 8k\nbatch_points = 40\nbatch_interval = 50ms\n", f.spool);
    fix_open(&f, "t_full", extra);
    snprintf(f.spool, sizeof(f.spool), "%s", keep);
    ck_assert_int_eq(write_wait(&f, 4, T0, 1000, 0, 40), 0); /* creates the schema */
    ch_down();
    int accepted = 0, refused = 0;
    for (int i = 1; i < 30 && !refused; i++) {
        int st = write_wait(&f, 4, T0 + i * 40000, 1000, 0, 40);
        if (st == 0)
            accepted++;
        else if (st == SN_EAGAIN)
            refused++;
        else
            ck_abort_msg("unexpected status %d", st);
    }
    ck_assert_msg(refused == 1 && accepted >= 2, "accepted %d refused %d", accepted, refused);
    ck_assert(metric(&f, "clickhouse_spool_bytes") <= 8192);
    ck_assert(metric(&f, "clickhouse_points_refused_total") == 40);
    sn_health_t hl = {0};
    f.plugin->health(f.self, &hl);
    ck_assert(!hl.ok);
    ch_up();
    long want = 40 + accepted * 40L;
    ck_assert_int_eq(wait_count(&f, "SELECT count() FROM t_full.points", want, 20000), want);
    /* Room again: writes are taken. */
    wait_metric(&f, "clickhouse_spool_bytes", 0, 5000);
    ck_assert_int_eq(write_wait(&f, 4, T0 + 100 * 40000, 1000, 0, 40), 0);
    fix_close(&f);
}
END_TEST

START_TEST(test_restart_replays_spool)
{
    fix_t f;
    char extra[512], keep[128], path[512];
    spool_dir(&f);
    snprintf(keep, sizeof(keep), "%s", f.spool);
    snprintf(extra, sizeof(extra), "spool_dir = %s\nbatch_points = 30\nbatch_interval = 50ms\n",
             f.spool);
    fix_open(&f, "t_restart", extra);
    snprintf(f.spool, sizeof(f.spool), "%s", keep);
    ck_assert_int_eq(write_wait(&f, 5, T0, 1000, 0, 30), 0);
    ch_down();
    for (int i = 1; i <= 4; i++)
        ck_assert_int_eq(write_wait(&f, 5, T0 + i * 30000, 1000, 0, 30), 0);
    /* Points still in memory at stop go to the spool too. */
    sn_result_t r;
    sn_point_t *p = mkpts(5, T0 + 5 * 30000, 1000, 0, 10);
    write_start(&f, p, 10, &r);
    free(p);
    sn_harness_free(f.h); /* sentineld stops */
    f.h = NULL;
    ck_assert(r.done && r.status == 0);
    /* A crash in the middle of an append leaves a torn frame: it is cut off at start. */
    DIR *d = opendir(f.spool);
    struct dirent *de;
    path[0] = '\0';
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".chspool"))
            snprintf(path, sizeof(path), "%s/%s", f.spool, de->d_name);
    closedir(d);
    ck_assert(path[0]);
    int fd = open(path, O_WRONLY | O_APPEND);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "SNC1\x40\0\0\0garbage", 15), 15);
    close(fd);

    ch_up();
    f.h = sn_harness_new();
    store_open(&f, "t_restart", extra);
    ck_assert_int_eq(wait_count(&f, "SELECT count() FROM t_restart.points", 160, 20000), 160);
    wait_metric(&f, "clickhouse_spool_bytes", 0, 5000);
    ck_assert_int_eq(ch_count("SELECT uniqExact(ts) FROM t_restart.points"), 160);
    /* One spool directory, one instance. */
    fix_t g = {0};
    sn_err_t err = {{0}};
    char settings[1024];
    g.h = sn_harness_new();
    snprintf(settings, sizeof(settings), "url = %s\ndatabase = t_restart\n%s", g_url, extra);
    ck_assert_ptr_null(sn_harness_create(g.h, SN_STORE, "clickhouse", settings, NULL, &err));
    sn_harness_free(g.h);
    fix_close(&f);
}
END_TEST

START_TEST(test_error_text)
{
    fix_t f;
    char out[256];
    memset(&f, 0, sizeof(f));
    ch_up();
    ck_assert_int_eq(ch_sql("DROP DATABASE IF EXISTS t_bad", out, sizeof(out)), 0);
    ck_assert_int_eq(ch_sql("CREATE DATABASE t_bad", out, sizeof(out)), 0);
    /* A table of another shape (no labels column): the data cannot go in, retrying is useless. */
    ck_assert_int_eq(ch_sql("CREATE TABLE t_bad.points (date Date, series UInt64, ts Int64, "
                            "value Float64, metric String) ENGINE = MergeTree PARTITION BY date "
                            "ORDER BY (series, ts)",
                            out, sizeof(out)),
                     0);
    f.h = sn_harness_new();
    store_open(&f, "t_bad", "batch_interval = 50ms\n");
    sn_result_t r;
    sn_point_t *p = mkpts(6, T0, 1000, 0, 3);
    write_start(&f, p, 3, &r);
    free(p);
    ck_assert_int_eq(sn_harness_wait(f.h, &r, WAIT_MS), 0);
    ck_assert_int_eq(r.status, SN_EINVAL);
    const char *e = json_string_value(json_object_get(r.result, "error"));
    ck_assert_ptr_nonnull(e);
    ck_assert_msg(strstr(e, "Code: 16") && strstr(e, "labels"), "error text: %s", e);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "code")), 16);
    ck_assert(metric(&f, "clickhouse_points_rejected_total") == 3);
    ck_assert(metric(&f, "clickhouse_up") == 1);
    sn_result_clear(&r);
    fix_close(&f);
}
END_TEST

START_TEST(test_credentials)
{
    fix_t f;
    char log[] = "/tmp/sn-chlog-XXXXXX";
    int fd = mkstemp(log);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_ptr_nonnull(freopen(log, "w", stderr)); /* this forked test's own stderr */
    setenv("SN_TEST_CH_PW", CH_PW, 1);
    fix_open(&f, "t_auth",
             "user = sentinel\npassword = ${env:SN_TEST_CH_PW}\nbatch_interval = 50ms\n");
    ck_assert_int_eq(write_wait(&f, 8, T0, 1000, 0, 3), 0);
    ck_assert_int_eq(ch_count("SELECT count() FROM t_auth.points"), 3);
    sn_harness_free(f.h);

    /* A wrong password: ClickHouse counts as unavailable (fixing the password and restarting
     * sends what waited), and says why. */
    setenv("SN_TEST_CH_PW", "not-the-password", 1);
    f.h = sn_harness_new();
    store_open(&f, "t_auth",
               "user = sentinel\npassword = ${env:SN_TEST_CH_PW}\nbatch_interval = 50ms\n");
    sn_result_t r;
    sn_point_t *p = mkpts(8, T0 + 10000, 1000, 0, 3);
    write_start(&f, p, 3, &r);
    free(p);
    sn_harness_run_ms(f.h, 600);
    ck_assert(!r.done);
    sn_health_t hl = {0};
    f.plugin->health(f.self, &hl);
    ck_assert(!hl.ok);
    ck_assert_msg(strstr(hl.detail, "password") != NULL, "%s", hl.detail);
    sn_harness_free(f.h);
    f.h = NULL;
    ck_assert(r.done && r.status == SN_EAGAIN); /* no spool: refused at stop */
    fflush(stderr);
    FILE *lf = fopen(log, "r");
    char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, lf);
    buf[n] = '\0';
    fclose(lf);
    unlink(log);
    ck_assert_msg(strstr(buf, "check user and password") != NULL, "log: %s", buf);
    ck_assert_msg(strstr(buf, CH_PW) == NULL && strstr(buf, "not-the-password") == NULL,
                  "a password reached the log");
    fix_close(&f);
}
END_TEST

/* ---- the stats route, served by hooks of our own ---- */

struct sn_route_req {
    const char *body;
    const char *auth;
    int status;
    char *reply;
};

static struct {
    sn_route_fn fn;
    void *self;
    int n;
} g_route;

static int t_route_add(void *eng, const char *instance, const char *method, const char *path,
                       sn_route_fn fn, void *self)
{
    (void)eng;
    ck_assert_str_eq(instance, "store:clickhouse");
    ck_assert_str_eq(path, "stats");
    if (strcmp(method, "POST") == 0) {
        g_route.fn = fn;
        g_route.self = self;
    }
    g_route.n++;
    return 0;
}

static const char *t_req_body(sn_route_req_t *r, size_t *len)
{
    *len = strlen(r->body);
    return r->body;
}

static const char *t_req_header(sn_route_req_t *r, const char *name)
{
    return strcasecmp(name, "Authorization") == 0 ? r->auth : NULL;
}

static void t_req_reply(sn_route_req_t *r, int status, const char *ct, const char *body, size_t len)
{
    ck_assert_str_eq(ct, "application/json");
    r->status = status;
    r->reply = strndup(body, len);
}

/* Call the route; returns the status, *out the parsed answer. */
static int stats(fix_t *f, const char *body, const char *auth, json_t **out)
{
    sn_route_req_t rq = {.body = body, .auth = auth};
    g_route.fn(g_route.self, &rq);
    for (int i = 0; i < 300 && !rq.status; i++)
        sn_harness_run_ms(f->h, 50);
    ck_assert_int_ne(rq.status, 0);
    *out = json_loads(rq.reply, 0, NULL);
    ck_assert_msg(*out != NULL, "reply: %s", rq.reply);
    free(rq.reply);
    return rq.status;
}

static double num(const json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

START_TEST(test_stats_route)
{
    fix_t f;
    memset(&f, 0, sizeof(f));
    ch_up();
    char out[256];
    ck_assert_int_eq(ch_sql("DROP DATABASE IF EXISTS t_stats", out, sizeof(out)), 0);
    f.h = sn_harness_new();
    sn_engine_hooks_t hooks = {.route_add = t_route_add,
                               .req_body = t_req_body,
                               .req_header = t_req_header,
                               .req_reply = t_req_reply};
    sn_runtime_set_hooks(sn_harness_runtime(f.h), &hooks, NULL);
    memset(&g_route, 0, sizeof(g_route));
    store_open(&f, "t_stats", "batch_points = 100000\nbatch_interval = 100ms\nstats_token = tok\n");
    ck_assert_int_eq(g_route.n, 2); /* POST and GET */
    ck_assert_ptr_nonnull(g_route.fn);
    /* A week from Monday 2026-11-23 00:00 UTC; every hour four points: hour * 10 + 1..4. */
    const int64_t mon = 1795392000000LL;
    const uint64_t s = 0x00ab00cd00ef0012ULL;
    size_t n = 7 * 24 * 4, k = 0;
    sn_point_t *p = calloc(n, sizeof(*p));
    for (int d = 0; d < 7; d++)
        for (int h = 0; h < 24; h++)
            for (int m = 0; m < 4; m++, k++)
                p[k] = (sn_point_t){.ts_ms = mon + ((int64_t)d * 24 + h) * 3600000 + m * 900000,
                                    .value = h * 10 + m + 1,
                                    .series = s,
                                    .metric = "m"};
    sn_result_t r;
    write_start(&f, p, n, &r);
    free(p);
    ck_assert_int_eq(sn_harness_wait(f.h, &r, WAIT_MS), 0);
    ck_assert_int_eq(r.status, 0);

    json_t *j;
    char body[256];
    snprintf(body, sizeof(body), "series=00ab00cd00ef0012&days=7&until=%lld&exact=1",
             (long long)(mon + 7 * 86400000LL));
    ck_assert_int_eq(stats(&f, body, NULL, &j), 401);
    json_decref(j);
    ck_assert_int_eq(stats(&f, body, "Bearer tok", &j), 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "series")), "00ab00cd00ef0012");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "from")), mon);
    json_t *all = json_object_get(j, "all");
    ck_assert_int_eq(json_integer_value(json_object_get(all, "n")), 672);
    ck_assert_double_eq_tol(num(all, "mean"), 117.5, 1e-9);
    json_t *bh = json_object_get(j, "by_hour"), *bd = json_object_get(j, "by_dow"),
           *bw = json_object_get(j, "by_hour_of_week");
    ck_assert_uint_eq(json_array_size(bh), 24);
    ck_assert_uint_eq(json_array_size(bd), 7);
    ck_assert_uint_eq(json_array_size(bw), 168);
    for (int h = 0; h < 24; h++) {
        json_t *b = json_array_get(bh, (size_t)h);
        ck_assert_int_eq(json_integer_value(json_object_get(b, "hour")), h);
        ck_assert_int_eq(json_integer_value(json_object_get(b, "n")), 28);
        ck_assert_double_eq_tol(num(b, "mean"), h * 10 + 2.5, 1e-9);
        ck_assert_double_eq_tol(num(b, "stddev"), sqrt(1.25), 1e-9);
    }
    for (int d = 0; d < 7; d++) {
        json_t *b = json_array_get(bd, (size_t)d);
        ck_assert_int_eq(json_integer_value(json_object_get(b, "dow")), d + 1); /* Monday = 1 */
        ck_assert_int_eq(json_integer_value(json_object_get(b, "n")), 96);
        ck_assert_double_eq_tol(num(b, "mean"), 117.5, 1e-9);
    }
    json_t *b = json_array_get(bw, 24 * 2 + 13); /* Wednesday 13:00 */
    ck_assert_int_eq(json_integer_value(json_object_get(b, "dow")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(b, "hour")), 13);
    ck_assert_int_eq(json_integer_value(json_object_get(b, "n")), 4);
    ck_assert_double_eq_tol(num(b, "mean"), 132.5, 1e-9);
    ck_assert_double_eq_tol(num(b, "p50"), 133, 1e-9); /* quantilesExact: element n * 0.5 */
    ck_assert_double_eq_tol(num(b, "p99"), 134, 1e-9);
    json_decref(j);

    /* A narrower window: the last day only (Sunday). Approximate quantiles are in range. */
    snprintf(body, sizeof(body), "series=00AB00CD00EF0012&days=1&until=%lld",
             (long long)(mon + 7 * 86400000LL));
    ck_assert_int_eq(stats(&f, body, "Bearer tok", &j), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "all"), "n")), 96);
    ck_assert_uint_eq(json_array_size(json_object_get(j, "by_dow")), 1);
    b = json_array_get(json_object_get(j, "by_dow"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(b, "dow")), 7);
    double p90 = num(json_object_get(j, "all"), "p90");
    ck_assert_msg(p90 >= 200 && p90 <= 234, "p90 %g", p90);
    json_decref(j);

    /* No data: no buckets. Bad input: 400. */
    ck_assert_int_eq(stats(&f, "series=0000000000000001&days=3", "Bearer tok", &j), 200);
    ck_assert(json_is_null(json_object_get(j, "all")));
    ck_assert_uint_eq(json_array_size(json_object_get(j, "by_hour")), 0);
    json_decref(j);
    ck_assert_int_eq(stats(&f, "series=xyz&days=3", "Bearer tok", &j), 400);
    json_decref(j);
    ck_assert_int_eq(stats(&f, "series=0000000000000001&days=0", "Bearer tok", &j), 400);
    json_decref(j);
    fix_close(&f);
}
END_TEST

START_TEST(test_config_refused)
{
    sn_harness_t *h = sn_harness_new();
    sn_err_t err = {{0}};
    const char *bad[] = {
        "url = http://u:pw@127.0.0.1:1\n",
        "url = ftp://127.0.0.1:1\n",
        "database = a-b\n",
        "batch_points = 0\n",
        "spool_max = 1k\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err.msg[0] = '\0';
        ck_assert_ptr_null(sn_harness_create(h, SN_STORE, "clickhouse", bad[i], NULL, &err));
        ck_assert_msg(err.msg[0], "no reason for %s", bad[i]);
        ck_assert_msg(strstr(err.msg, "pw") == NULL, "%s", err.msg);
    }
    sn_harness_free(h);
}
END_TEST

static Suite *clickhouse_suite(void)
{
    Suite *s = suite_create("clickhouse_store");
    TCase *tc = tcase_create("integration");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_config_refused);
    tcase_add_test(tc, test_schema);
    tcase_add_test(tc, test_rows_keep_their_labels);
    tcase_add_test(tc, test_batch_by_size);
    tcase_add_test(tc, test_batch_by_time);
    tcase_add_test(tc, test_window_exact);
    tcase_add_test(tc, test_outage_spool_replay);
    tcase_add_test(tc, test_spool_full);
    tcase_add_test(tc, test_restart_replays_spool);
    tcase_add_test(tc, test_error_text);
    tcase_add_test(tc, test_credentials);
    tcase_add_test(tc, test_stats_route);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *bin = getenv("CLICKHOUSE_SERVER");
    if (access(bin ? bin : "/usr/sbin/clickhouse-server", X_OK) != 0) {
        printf("SKIP: clickhouse-server is not installed\n");
        return 0;
    }
    snprintf(g_dir, sizeof(g_dir), "/tmp/sn-chsrv-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    char cmd[512], line[256] = "";
    snprintf(cmd, sizeof(cmd), "python3 %s start %s", CHSERVER, g_dir);
    FILE *p = popen(cmd, "r");
    if (!p || !fgets(line, sizeof(line), p) || pclose(p) != 0) {
        fprintf(stderr, "cannot start clickhouse-server: %s\n", line);
        return 1;
    }
    json_t *info = json_loads(line, 0, NULL);
    snprintf(g_url, sizeof(g_url), "%s", json_string_value(json_object_get(info, "url")));
    json_decref(info);
    SRunner *sr = srunner_create(clickhouse_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    chserver("cleanup");
    return failed == 0 ? 0 : 1;
}
