/**
 * @file bench-detectors.c
 * sentinel-bench: throughput, latency and memory of the detector plugins, loaded through the
 * real loader and configured with their defaults exactly as a sentinel.conf section would be.
 * Every figure is one `bench: NAME VALUE UNIT` line on stdout; notes and errors go to stderr as
 * "sentinel-bench note: ..." and "sentinel-bench error: ..." (never containing "bench: ").
 *
 * How it measures (inputs are deterministic, everything runs on one thread unless said):
 *  - Series are visited round-robin: one pass gives every series its next point, event time
 *    advancing 10 s per pass. A value is a per-series level plus noise computed from a hash of
 *    (series, point): near-normal (sigma 1.15), and one point in BENCH_SPIKE_EVERY carries a
 *    spike of about 26 sigma. Computed, not looked up in a table: a table too large for the
 *    cache would charge the detectors a cache miss per point that is the bench's own. Every
 *    series is first warmed up with BENCH_WARM untimed points, past every detector's
 *    min_history and the iqr window.
 *  - <type>_points_per_s: observe() calls per CPU second of the calling thread
 *    (CLOCK_THREAD_CPUTIME_ID, so that preemption on a shared machine does not count), each
 *    series with its own state blob in one array laid out as the telemetry plane lays states
 *    out (each on 64-byte lines of its own, huge pages advised), for about BENCH_SECONDS. Like
 *    the plane, the loop prefetches the first two cache lines of the state of the series
 *    BENCH_PREFETCH ahead; --no-prefetch measures a detector without that help (a state
 *    that is not in cache then costs a memory round trip per point, which with 100000
 *    series and states of a few hundred bytes is most of what a fast detector costs).
 *  - all_detectors_points_per_s: a real engine (sn_engine_new from a generated configuration:
 *    the three detectors with their defaults, each feeding the correlate node, one telemetry
 *    worker) takes records (metric and two labels, series hash computed per record as ingest
 *    does, event-time watermark advanced as ingest does) packed with sn_tbuild_add into
 *    batches of BENCH_BATCH and committed to its telemetry plane; the plane runs the three
 *    detectors and hands every anomaly to correlation on the engine's loop (admission,
 *    grouping into incidents), which this thread runs. The figure is points per CPU second of
 *    the whole process (producer, worker and loop with correlation together: what a point
 *    costs on one core), from the first timed batch until every anomaly has been correlated.
 *    Out of it: JSON parsing of the request body (ingest's parser; sn_ingest has its own
 *    tests), the HTTP layer, and what runs after correlation (the pipeline here ends there).
 *    The note on stderr gives the loop's (correlation's) share.
 *  - bytes_per_series: RSS growth (/proc/self/statm) of that engine from before its first
 *    point to after every series has been warmed up, over the series count: detector state,
 *    series table, metric copy, label object and correlation's memory together.
 *    state_bytes_per_series is the sum of the detectors' state_size, each rounded up to 64
 *    bytes as the plane does.
 *  - verdict_latency_p50_us / _p99_us: one point through the three observe() calls, timed
 *    with CLOCK_MONOTONIC on every BENCH_SAMPLE_EVERY-th point (the clock's own cost, a few
 *    tens of nanoseconds, is included).
 */
#include "engine-internal.h"
#include "model.h"
#include "runtime.h"
#include "telemetry.h"

#include <event2/event.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BENCH_SERIES 100000
#define BENCH_QUICK_SERIES 2000
#define BENCH_SECONDS 1.5
#define BENCH_QUICK_SECONDS 0.05
#define BENCH_WARM 64               /* points per series before timing */
#define BENCH_T0_MS 1795600800000LL /* event time of the first point */
#define BENCH_STEP_MS 10000         /* event time between two points of a series */
#define BENCH_SPIKE_EVERY 500       /* one point in this many is a spike */
#define BENCH_SPIKE 30.0            /* spike height; the noise has sigma 1.15 */
#define BENCH_BATCH 8192            /* points per committed telemetry batch */
#define BENCH_INFLIGHT 4            /* batches queued ahead of the telemetry worker */
#define BENCH_PREFETCH 6            /* direct figures: series ahead whose state is prefetched */
#define BENCH_HUGE (2u << 20)
#define BENCH_SAMPLE_EVERY 64 /* latency: time one point in this many */
#define BENCH_METRIC "bench_latency_ms"

enum { D_ZSCORE, D_IQR, D_SEASONAL, D_N };
static const char *const bench_types[D_N] = {"zscore", "iqr", "seasonal"};

typedef struct bdet {
    const char *type;
    const sn_plugin_t *plugin; /* NULL when the plugin could not be loaded or created */
    const sn_detector_ops_t *ops;
    sn_conf_t *conf;
    sn_cfg_t *cfg;
    sn_host_t host;
    void *self;
} bdet_t;

typedef struct bench {
    sn_runtime_t *rt;
    sn_host_t loader_host; /* stays here: the runtime recognises it by address */
    sn_loader_t *loader;
    bdet_t det[D_N];
    size_t nseries;
    double seconds;
    int prefetch; /* direct figures prefetch states ahead, as the plane does */
} bench_t;

/* ---- clocks, memory, inputs ---- */

static double bench_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int64_t bench_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Resident set size in bytes, or -1. */
static long long bench_rss(void)
{
    long long size, resident;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    int ok = fscanf(f, "%lld %lld", &size, &resident) == 2;
    fclose(f);
    return ok ? resident * sysconf(_SC_PAGESIZE) : -1;
}

/* splitmix64's finaliser: every input bit moves about half the output bits. */
static inline uint64_t bench_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Value of series @p s at its point @p i: level 100 + s % 97 plus the sum of four uniforms
 * (16 bits each of one hash, near-normal with sigma 2 * sqrt(4 / 12) = 1.15), and a spike of
 * +-BENCH_SPIKE on one point in BENCH_SPIKE_EVERY (decided by the high bits of a second
 * product of the hash). The same (s, i) always gives the same value. */
static inline double bench_value(const bench_t *b, size_t s, uint64_t i)
{
    (void)b;
    uint64_t h = bench_mix(((uint64_t)s << 32) ^ i ^ 0x9e3779b97f4a7c15ULL);
    double n = (double)(h & 0xffff) + (double)((h >> 16) & 0xffff) + (double)((h >> 32) & 0xffff) +
               (double)(h >> 48);
    n = (n * (1.0 / 65536) - 2.0) * 2;
    uint32_t r = (uint32_t)((h * 0x9e3779b97f4a7c15ULL) >> 32);
    if (r % BENCH_SPIKE_EVERY == 0)
        n += r & 0x80000000u ? BENCH_SPIKE : -BENCH_SPIKE;
    return 100.0 + (double)(s % 97) + n;
}

static inline int64_t bench_ts(uint64_t i)
{
    return BENCH_T0_MS + (int64_t)i * BENCH_STEP_MS;
}

/* Bytes one detector's state takes in a series blob: rounded up to a cache line, as the
 * telemetry plane lays them out (each state starts on a line of its own). */
static size_t bench_stride(const bdet_t *d)
{
    size_t n = (sn_detector_state_size(d->ops, d->self) + 63) & ~(size_t)63;
    return n ? n : 64;
}

/* @p n blobs of @p stride bytes, zeroed, the first one cache-line aligned (as the plane's). */
static unsigned char *bench_states(size_t n, size_t stride)
{
    size_t bytes = (n * stride + BENCH_HUGE - 1) & ~(size_t)(BENCH_HUGE - 1);
    unsigned char *st = aligned_alloc(BENCH_HUGE, bytes);
    if (st) {
        madvise(st, bytes, MADV_HUGEPAGE);
        memset(st, 0, n * stride);
    }
    return st;
}

/* ---- detectors ---- */

static void bench_det_free(bdet_t *d)
{
    if (d->self && d->plugin && d->plugin->destroy)
        d->plugin->destroy(d->self);
    d->self = NULL;
    d->plugin = NULL;
    sn_cfg_free(d->cfg);
    d->cfg = NULL;
    if (d->conf)
        sn_conf_free(d->conf);
    d->conf = NULL;
}

/* Load TYPE through the loader, validate an empty [detector:bench_TYPE] section (all defaults)
 * against its parameter table, create and check it. Returns 0, or -1 with a note on stderr. */
static int bench_det_load(bench_t *b, bdet_t *d, const char *type)
{
    char why[256] = "", text[160], inst[128];
    sn_diag_t dg;
    sn_diag_init(&dg);
    int rc = -1;
    d->type = type;
    const sn_loaded_t *ld = sn_loader_get(b->loader, SN_DETECTOR, type, why, sizeof(why));
    if (!ld) {
        fprintf(stderr, "sentinel-bench error: detector %s: %s\n", type,
                why[0] ? why : "not loaded");
        goto out;
    }
    const sn_detector_ops_t *ops = ld->plugin->ops;
    if (!ops || !ops->observe) {
        fprintf(stderr, "sentinel-bench error: detector %s: no observe()\n", type);
        goto out;
    }
    snprintf(inst, sizeof(inst), "detector:bench_%s", type);
    snprintf(text, sizeof(text), "[%s]\n", inst);
    d->conf = sn_conf_load_string("<sentinel-bench>", text, &dg);
    if (!d->conf || d->conf->nsec < 1)
        goto diag;
    d->cfg = sn_cfg_build(d->conf, &d->conf->sections[0], ld->plugin->params, NULL, &dg);
    if (!d->cfg)
        goto diag;
    sn_host_fill(b->rt, &d->host, inst);
    sn_err_t err = {{0}};
    if (ld->plugin->create(&d->host, d->cfg, &d->self, &err) != 0) {
        d->self = NULL;
        fprintf(stderr, "sentinel-bench error: detector %s: %s\n", type,
                err.msg[0] ? err.msg : "create failed");
        goto out;
    }
    d->plugin = ld->plugin;
    d->ops = ops;
    if (ld->plugin->check && ld->plugin->check(d->self, &err) != 0) {
        fprintf(stderr, "sentinel-bench error: detector %s: %s\n", type,
                err.msg[0] ? err.msg : "check failed");
        goto out;
    }
    rc = 0;
    goto out;
diag:
    sn_diag_print(&dg, stderr);
out:
    if (rc != 0)
        bench_det_free(d);
    sn_diag_free(&dg);
    return rc;
}

/* ---- one detector, direct observe() calls ---- */

/* One pass of @p d over every series at point @p i. Returns the anomalies reported. */
static uint64_t bench_pass(const bench_t *b, const bdet_t *d, unsigned char *st, size_t stride,
                           uint64_t i)
{
    uint64_t anomalies = 0;
    sn_point_t pt = {.ts_ms = bench_ts(i), .metric = BENCH_METRIC};
    for (size_t s = 0; s < b->nseries; s++) {
        sn_verdict_t v;
        if (b->prefetch && s + BENCH_PREFETCH < b->nseries) {
            /* as the telemetry plane does for the points ahead in a batch */
            __builtin_prefetch(st + (s + BENCH_PREFETCH) * stride, 1);
            __builtin_prefetch(st + (s + BENCH_PREFETCH) * stride + 64, 1);
        }
        pt.value = bench_value(b, s, i);
        pt.series = s + 1;
        if (d->ops->observe(d->self, st + s * stride, &pt, &v) == 0)
            anomalies += v.anomalous != 0;
    }
    return anomalies;
}

/* observe() calls per CPU second of this thread. Returns 0 or SN_ENOMEM. */
static int bench_direct(const bench_t *b, const bdet_t *d, double *rate)
{
    size_t stride = bench_stride(d);
    unsigned char *st = bench_states(b->nseries, stride);
    if (!st)
        return SN_ENOMEM;
    uint64_t i = 0, anomalies = 0, points = 0;
    for (; i < BENCH_WARM; i++)
        bench_pass(b, d, st, stride, i);
    double c0 = bench_clock(CLOCK_THREAD_CPUTIME_ID), w0 = bench_clock(CLOCK_MONOTONIC), c1;
    do {
        anomalies += bench_pass(b, d, st, stride, i++);
        points += b->nseries;
        c1 = bench_clock(CLOCK_THREAD_CPUTIME_ID);
    } while (c1 - c0 < b->seconds);
    double w1 = bench_clock(CLOCK_MONOTONIC);
    *rate = (double)points / (c1 - c0);
    fprintf(stderr,
            "sentinel-bench note: %s: %llu points in %.3f s CPU (%.3f s wall, %.0f points/s wall), "
            "%llu anomalies, state %zu bytes\n",
            d->type, (unsigned long long)points, c1 - c0, w1 - w0, (double)points / (w1 - w0),
            (unsigned long long)anomalies, sn_detector_state_size(d->ops, d->self));
    free(st);
    return 0;
}

/* ---- latency of one point through every detector ---- */

static int bench_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int bench_latency(const bench_t *b, const bdet_t *const *ds, size_t nd, double *p50_us,
                         double *p99_us)
{
    size_t offs[D_N], stride = 0;
    for (size_t k = 0; k < nd; k++) {
        offs[k] = stride;
        stride += bench_stride(ds[k]);
    }
    int rc = SN_ENOMEM;
    size_t ns = 0, cap = 1 << 16;
    int64_t *samples = malloc(cap * sizeof(*samples));
    unsigned char *st = bench_states(b->nseries, stride);
    if (!samples || !st)
        goto out;
    sn_point_t pt = {.metric = BENCH_METRIC};
    sn_verdict_t v;
    uint64_t i = 0, count = 0;
    for (; i < BENCH_WARM; i++) {
        pt.ts_ms = bench_ts(i);
        for (size_t s = 0; s < b->nseries; s++) {
            pt.value = bench_value(b, s, i);
            pt.series = s + 1;
            for (size_t k = 0; k < nd; k++)
                ds[k]->ops->observe(ds[k]->self, st + s * stride + offs[k], &pt, &v);
        }
    }
    double c0 = bench_clock(CLOCK_THREAD_CPUTIME_ID);
    do {
        pt.ts_ms = bench_ts(i);
        for (size_t s = 0; s < b->nseries; s++) {
            unsigned char *base = st + s * stride;
            pt.value = bench_value(b, s, i);
            pt.series = s + 1;
            if (count++ % BENCH_SAMPLE_EVERY != 0) {
                for (size_t k = 0; k < nd; k++)
                    ds[k]->ops->observe(ds[k]->self, base + offs[k], &pt, &v);
                continue;
            }
            int64_t t0 = bench_mono_ns();
            for (size_t k = 0; k < nd; k++)
                ds[k]->ops->observe(ds[k]->self, base + offs[k], &pt, &v);
            int64_t t1 = bench_mono_ns();
            if (ns == cap) {
                int64_t *n = realloc(samples, 2 * cap * sizeof(*samples));
                if (!n)
                    goto out;
                samples = n;
                cap *= 2;
            }
            samples[ns++] = t1 - t0;
        }
        i++;
    } while (bench_clock(CLOCK_THREAD_CPUTIME_ID) - c0 < b->seconds);
    qsort(samples, ns, sizeof(*samples), bench_cmp_i64);
    *p50_us = (double)samples[(ns - 1) / 2] / 1e3;
    *p99_us = (double)samples[(size_t)((double)(ns - 1) * 0.99)] / 1e3;
    fprintf(stderr, "sentinel-bench note: latency: %zu samples, max %.3f us\n", ns,
            (double)samples[ns - 1] / 1e3);
    rc = 0;
out:
    free(samples);
    free(st);
    return rc;
}

/* ---- the telemetry plane of an engine, with correlation ---- */

typedef struct plane {
    const bench_t *b;
    sn_engine_t *e;
    sn_telemetry_t *t; /* the engine's */
    sn_tbuild_t *build;
    const sn_label_t *labels; /* two per series */
    double loop_cpu;          /* CPU seconds spent in the loop: delivery and correlation */
} plane_t;

/* Run the loop's pending callbacks (anomaly deliveries, correlation) without blocking. */
static void plane_loop(plane_t *p)
{
    double c0 = bench_clock(CLOCK_THREAD_CPUTIME_ID);
    event_base_loop(sn_runtime_base(sn_engine_runtime(p->e)), EVLOOP_NONBLOCK);
    p->loop_cpu += bench_clock(CLOCK_THREAD_CPUTIME_ID) - c0;
}

/* Commit the open build once the worker has room: at most BENCH_INFLIGHT batches queued, so
 * the commit is never refused and the producer sleeps (costing next to no CPU) while it
 * waits. */
static int plane_commit(plane_t *p)
{
    if (!p->build)
        return 0;
    for (;;) {
        sn_telemetry_stats_t st;
        sn_telemetry_stats(p->t, &st);
        if (st.queued + sn_tbuild_count(p->build) <= BENCH_INFLIGHT * BENCH_BATCH)
            break;
        plane_loop(p);
        /* A batch takes the worker milliseconds: polling faster only adds producer CPU. */
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    int rc = sn_tbuild_commit(p->build);
    p->build = NULL;
    plane_loop(p);
    return rc;
}

static int plane_pass(plane_t *p, uint64_t i)
{
    const bench_t *b = p->b;
    sn_record_t rec = {
        .type = SN_REC_POINT, .ts_ms = bench_ts(i), .metric = BENCH_METRIC, .nlabels = 2};
    for (size_t s = 0; s < b->nseries; s++) {
        rec.labels = &p->labels[2 * s];
        rec.value = bench_value(b, s, i);
        rec.series = sn_series_hash(rec.metric, rec.labels, rec.nlabels);
        if (!p->build && !(p->build = sn_tbuild_new(p->t)))
            return SN_ENOMEM;
        int rc = sn_tbuild_add(p->build, &rec);
        if (rc == 0 && sn_tbuild_count(p->build) == BENCH_BATCH)
            rc = plane_commit(p);
        if (rc != 0)
            return rc;
    }
    /* Event time as ingest advances it: correlation ends an incident's gathering by it. */
    int64_t cur = atomic_load(&p->e->watermark);
    while (rec.ts_ms > cur && !atomic_compare_exchange_weak(&p->e->watermark, &cur, rec.ts_ms))
        ;
    return 0;
}

/* Commit what is left, wait until the worker has observed everything and the loop has
 * correlated every anomaly. */
static int plane_drain(plane_t *p)
{
    int rc = plane_commit(p);
    if (rc != 0)
        return rc;
    sn_telemetry_flush(p->t);
    double deadline = bench_clock(CLOCK_MONOTONIC) + 30;
    for (;;) {
        sn_telemetry_stats_t st;
        sn_telemetry_stats(p->t, &st);
        plane_loop(p);
        if (p->e->anomalies_delivered >= st.anomalies)
            return 0;
        if (bench_clock(CLOCK_MONOTONIC) > deadline)
            return SN_ETIMEDOUT;
        nanosleep(&(struct timespec){0, 100000}, NULL);
    }
}

typedef struct plane_result {
    double rate;
    double bytes_per_series;
    double state_bytes;
} plane_result_t;

/* The engine's configuration: the detectors with their defaults, each feeding correlate; one
 * telemetry worker with room for every series and the batches in flight. */
static int plane_conf(const bench_t *b, const bdet_t *const *ds, size_t nd, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return SN_EIO;
    fprintf(f,
            "[sentinel]\nworkers = 1\nmax_series = %zu\nqueue_points = %d\nlog_level = error\n\n",
            2 * b->nseries, 2 * BENCH_INFLIGHT * BENCH_BATCH);
    /* A pipeline starts at an input: the HTTP one, idle here (the engine runs without the
     * API; points go straight into its telemetry plane). */
    fprintf(f, "[input:events]\nplugin = http\n\n");
    for (size_t k = 0; k < nd; k++)
        fprintf(f, "[detector:bench_%s]\nplugin = %s\n\n", ds[k]->type, ds[k]->type);
    fprintf(f, "[pipeline]\n");
    for (size_t k = 0; k < nd; k++)
        fprintf(f, "edge = events -> bench_%s\nedge = bench_%s -> correlate\n", ds[k]->type,
                ds[k]->type);
    return fclose(f) == 0 ? 0 : SN_EIO;
}

static int bench_plane(const bench_t *b, const bdet_t *const *ds, size_t nd, const char *plugin_dir,
                       plane_result_t *out)
{
    int rc = SN_ENOMEM;
    plane_t p = {.b = b};
    char dir[] = "/tmp/sentinel-bench-XXXXXX", conf[64] = "";
    char *names = malloc(b->nseries * 32);
    sn_label_t *labels = malloc(b->nseries * 2 * sizeof(*labels));
    if (!names || !labels)
        goto out;
    /* Labels sorted by name, as ingest hands them over: pod=pN, service=svcM. */
    for (size_t s = 0; s < b->nseries; s++) {
        char *pod = names + s * 32, *svc = pod + 16;
        snprintf(pod, 16, "p%u", (unsigned)s);
        snprintf(svc, 16, "svc%u", (unsigned)(s % 50));
        labels[2 * s] = (sn_label_t){"pod", pod};
        labels[2 * s + 1] = (sn_label_t){"service", svc};
    }
    p.labels = labels;
    out->state_bytes = 0;
    for (size_t k = 0; k < nd; k++)
        out->state_bytes += (double)bench_stride(ds[k]);

    rc = SN_EIO;
    if (!mkdtemp(dir))
        goto out;
    snprintf(conf, sizeof(conf), "%s/sentinel.conf", dir);
    if ((rc = plane_conf(b, ds, nd, conf)) != 0)
        goto out;
    sn_diag_t dg;
    sn_diag_init(&dg);
    sn_engine_opts_t eo = {.config_path = conf,
                           .plugin_dir = plugin_dir ? plugin_dir : sn_model_default_plugin_dir(),
                           .no_http = 1};
    p.e = sn_engine_new(&eo, &dg);
    if (!p.e || sn_engine_check(p.e, &dg) != 0 || sn_engine_start(p.e) != 0) {
        sn_diag_print(&dg, stderr);
        sn_diag_free(&dg);
        fprintf(stderr, "sentinel-bench error: the engine did not start\n");
        rc = SN_EINVAL;
        goto out;
    }
    sn_diag_free(&dg);
    p.t = p.e->tel;

    long long rss0 = bench_rss();
    uint64_t i = 0;
    for (; i < BENCH_WARM; i++)
        if ((rc = plane_pass(&p, i)) != 0)
            goto out;
    if ((rc = plane_drain(&p)) != 0)
        goto out;
    long long rss1 = bench_rss();
    out->bytes_per_series = (double)(rss1 - rss0) / (double)b->nseries;

    sn_telemetry_stats_t st0, st1;
    sn_telemetry_stats(p.t, &st0);
    double c0 = bench_clock(CLOCK_PROCESS_CPUTIME_ID), w0 = bench_clock(CLOCK_MONOTONIC);
    p.loop_cpu = 0;
    do {
        if ((rc = plane_pass(&p, i++)) != 0)
            goto out;
    } while (bench_clock(CLOCK_PROCESS_CPUTIME_ID) - c0 < b->seconds);
    if ((rc = plane_drain(&p)) != 0)
        goto out;
    double c1 = bench_clock(CLOCK_PROCESS_CPUTIME_ID), w1 = bench_clock(CLOCK_MONOTONIC);
    sn_telemetry_stats(p.t, &st1);
    uint64_t points = st1.points - st0.points;
    if (st1.points != i * b->nseries || st1.series != b->nseries || st1.series_dropped ||
        st1.rejected_batches) {
        fprintf(stderr,
                "sentinel-bench error: telemetry: %llu points observed of %llu, %llu series, "
                "%llu dropped, %llu batches refused\n",
                (unsigned long long)st1.points, (unsigned long long)(i * b->nseries),
                (unsigned long long)st1.series, (unsigned long long)st1.series_dropped,
                (unsigned long long)st1.rejected_batches);
        rc = SN_EINVAL;
        goto out;
    }
    out->rate = (double)points / (c1 - c0);
    fprintf(stderr,
            "sentinel-bench note: telemetry: %llu points in %.3f s CPU (%.3f s wall, %.0f points/s "
            "wall), %llu anomalies correlated into %zu incidents (loop: %.3f s CPU); RSS %lld -> "
            "%lld bytes over the warm-up\n",
            (unsigned long long)points, c1 - c0, w1 - w0, (double)points / (w1 - w0),
            (unsigned long long)(st1.anomalies - st0.anomalies), p.e->nincidents, p.loop_cpu, rss0,
            rss1);
    rc = 0;
out:
    if (p.build)
        sn_tbuild_free(p.build);
    if (p.e) {
        sn_engine_shutdown(p.e);
        sn_engine_run(p.e);
        sn_engine_free(p.e);
    }
    if (conf[0])
        unlink(conf);
    if (strcmp(dir, "/tmp/sentinel-bench-XXXXXX") != 0)
        rmdir(dir);
    free(labels);
    free(names);
    return rc;
}

/* ---- main ---- */

enum { BENCH_PART_PLANE = D_N, BENCH_PART_LATENCY };

/* The -o bit of part @p name, or 0. */
static unsigned bench_part(const char *name)
{
    for (int k = 0; k < D_N; k++)
        if (strcmp(name, bench_types[k]) == 0)
            return 1u << k;
    if (strcmp(name, "plane") == 0)
        return 1u << BENCH_PART_PLANE;
    if (strcmp(name, "latency") == 0)
        return 1u << BENCH_PART_LATENCY;
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sentinel-bench [--quick] [--no-prefetch] [-p PLUGIN_DIR] [-o PART]\n"
            "  --quick  %d series and %.2f s per figure (a smoke test; figures not meaningful)\n"
            "  -p DIR   load plugins from DIR (default %s)\n"
            "  -o PART  only this part (repeatable): zscore, iqr, seasonal (direct figures),\n"
            "           plane (all_detectors, bytes_per_series) or latency; for profiling\n"
            "  --no-prefetch  direct figures without the plane's look-ahead (see the source)\n"
            "Prints `bench: NAME VALUE UNIT` lines: per-detector and whole-plane throughput,\n"
            "memory per series, verdict latency. Build with -O2 for meaningful figures.\n",
            BENCH_QUICK_SERIES, BENCH_QUICK_SECONDS, sn_model_default_plugin_dir());
}

static void bench_free(bench_t *b)
{
    for (size_t k = 0; k < D_N; k++)
        bench_det_free(&b->det[k]);
    /* The runtime runs leftover callbacks while the plugin code is still loaded. */
    if (b->rt)
        sn_runtime_free(b->rt);
    if (b->loader)
        sn_loader_free(b->loader);
    free(b);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"quick", no_argument, NULL, 'q'},      {"plugin-dir", required_argument, NULL, 'p'},
        {"only", required_argument, NULL, 'o'}, {"no-prefetch", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    const char *plugin_dir = NULL;
    int quick = 0, prefetch = 1, c;
    unsigned only = 0; /* bits: D_ZSCORE..D_SEASONAL, BENCH_PART_PLANE, BENCH_PART_LATENCY */
    while ((c = getopt_long(argc, argv, "qp:o:nh", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            prefetch = 0;
            break;
        case 'o': {
            unsigned bit = bench_part(optarg);
            if (!bit) {
                fprintf(stderr, "sentinel-bench error: unknown part '%s'\n", optarg);
                usage(stderr);
                return 2;
            }
            only |= bit;
            break;
        }
        case 'q':
            quick = 1;
            break;
        case 'p':
            plugin_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!only)
        only = ~0u;

    int status = 1;
    bench_t *b = calloc(1, sizeof(*b));
    if (!b) {
        fprintf(stderr, "sentinel-bench error: out of memory\n");
        return 1;
    }
    b->nseries = quick ? BENCH_QUICK_SERIES : BENCH_SERIES;
    b->seconds = quick ? BENCH_QUICK_SECONDS : BENCH_SECONDS;
    b->prefetch = prefetch;
    b->rt = sn_runtime_new(1);
    if (!b->rt) {
        fprintf(stderr, "sentinel-bench error: cannot create the runtime\n");
        goto out;
    }
    sn_host_fill(b->rt, &b->loader_host, NULL);
    b->loader =
        sn_loader_new(plugin_dir ? plugin_dir : sn_model_default_plugin_dir(), &b->loader_host);
    if (!b->loader) {
        fprintf(stderr, "sentinel-bench error: cannot initialise the plugin loader\n");
        goto out;
    }

    const bdet_t *all[D_N];
    size_t nall = 0;
    for (size_t k = 0; k < D_N; k++) {
        bdet_t *d = &b->det[k];
        char name[64];
        snprintf(name, sizeof(name), "%s_points_per_s", bench_types[k]);
        if (bench_det_load(b, d, bench_types[k]) != 0) {
            printf("bench: %s skipped -\n", name);
            continue;
        }
        all[nall++] = d;
        if (!(only & (1u << k)))
            continue;
        double rate;
        if (bench_direct(b, d, &rate) != 0) {
            fprintf(stderr, "sentinel-bench error: %s: out of memory\n", d->type);
            goto out;
        }
        printf("bench: %s %.0f points/s\n", name, rate);
    }
    if (nall < D_N)
        fprintf(stderr, "sentinel-bench note: the combined figures below cover %zu detector(s)\n",
                nall);
    if (nall == 0) {
        fprintf(stderr, "sentinel-bench error: no detector could be loaded\n");
        goto out;
    }

    if (only & (1u << BENCH_PART_PLANE)) {
        plane_result_t pr = {0};
        int rc = bench_plane(b, all, nall, plugin_dir, &pr);
        if (rc != 0) {
            fprintf(stderr, "sentinel-bench error: telemetry plane failed (%d)\n", rc);
            goto out;
        }
        printf("bench: all_detectors_points_per_s %.0f points/s\n", pr.rate);
        printf("bench: bytes_per_series %.0f bytes\n", pr.bytes_per_series);
        printf("bench: state_bytes_per_series %.0f bytes\n", pr.state_bytes);
    }

    if (only & (1u << BENCH_PART_LATENCY)) {
        double p50, p99;
        if (bench_latency(b, all, nall, &p50, &p99) != 0) {
            fprintf(stderr, "sentinel-bench error: latency: out of memory\n");
            goto out;
        }
        printf("bench: verdict_latency_p99_us %.3f us\n", p99);
        printf("bench: verdict_latency_p50_us %.3f us\n", p50);
    }
    status = 0;
out:
    bench_free(b);
    return status;
}
