/**
 * @file bench-detectors.c
 * sentinel-bench: throughput, latency and memory of the detector plugins, loaded through the
 * real loader and configured with their defaults exactly as a sentinel.conf section would be.
 * Every figure is one `bench: NAME VALUE UNIT` line on stdout; notes and errors go to stderr as
 * "sentinel-bench note: ..." and "sentinel-bench error: ..." (never containing "bench: ").
 *
 * How it measures (inputs are deterministic, everything runs on one thread unless said):
 *  - Series are visited round-robin: one pass gives every series its next point, event time
 *    advancing 10 s per pass. A value is a per-series level plus noise from a fixed table in
 *    which one entry in BENCH_SPIKE_EVERY carries a spike of about 26 sigma. Every series is
 *    first warmed up with BENCH_WARM untimed points, past every detector's min_history and the
 *    iqr window.
 *  - <type>_points_per_s: observe() calls per CPU second of the calling thread
 *    (CLOCK_THREAD_CPUTIME_ID, so that preemption on a shared machine does not count), each
 *    series with its own state blob in one array, for about BENCH_SECONDS.
 *  - all_detectors_points_per_s: records (metric and two labels, series hash computed per
 *    record as ingest does) are packed with sn_tbuild_add into batches of BENCH_BATCH and
 *    committed to a telemetry plane with one worker that runs all three detectors; anomalies
 *    reach a counting callback on the loop. The figure is points per CPU second of the whole
 *    process (producer, worker and loop together: what a point costs on one core), from the
 *    first timed batch until the plane has drained. JSON parsing and correlation are not in it.
 *  - bytes_per_series: RSS growth (/proc/self/statm) of that plane from before its first point
 *    to after every series has been warmed up, over the series count: detector state, series
 *    table, metric copy and label object together. state_bytes_per_series is the sum of the
 *    detectors' state_size, each rounded up to 16 bytes as the plane does.
 *  - verdict_latency_p50_us / _p99_us: one point through the three observe() calls, timed
 *    with CLOCK_MONOTONIC on every BENCH_SAMPLE_EVERY-th point (the clock's own cost, a few
 *    tens of nanoseconds, is included).
 */
#include "model.h"
#include "runtime.h"
#include "telemetry.h"

#include <event2/event.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_SERIES 100000
#define BENCH_QUICK_SERIES 2000
#define BENCH_SECONDS 1.5
#define BENCH_QUICK_SECONDS 0.05
#define BENCH_WARM 64               /* points per series before timing */
#define BENCH_T0_MS 1795600800000LL /* event time of the first point */
#define BENCH_STEP_MS 10000         /* event time between two points of a series */
#define BENCH_VALUES 65536          /* noise table entries, a power of two */
#define BENCH_SPIKE_EVERY 500       /* one noise entry in this many is a spike */
#define BENCH_SPIKE 30.0            /* spike height; the noise has sigma 1.15 */
#define BENCH_BATCH 8192            /* points per committed telemetry batch */
#define BENCH_INFLIGHT 4            /* batches queued ahead of the telemetry worker */
#define BENCH_SAMPLE_EVERY 64       /* latency: time one point in this many */
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
    double noise[BENCH_VALUES];
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

/* xorshift64*: a fixed seed makes every run see the same values. */
static uint64_t bench_rng(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 2685821657736338717ULL;
}

static double bench_uniform(uint64_t *x)
{
    return (double)(bench_rng(x) >> 11) * 0x1.0p-53;
}

static void bench_fill_noise(bench_t *b)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t k = 0; k < BENCH_VALUES; k++) {
        /* Sum of four uniforms: near-normal, sigma = 2 * sqrt(4 / 12) = 1.15. */
        double n = 0;
        for (int j = 0; j < 4; j++)
            n += bench_uniform(&x) - 0.5;
        n *= 2;
        uint64_t r = bench_rng(&x);
        if (r % BENCH_SPIKE_EVERY == 0)
            n += (r >> 32) & 1 ? BENCH_SPIKE : -BENCH_SPIKE;
        b->noise[k] = n;
    }
}

/* Value of series @p s at its point @p i; the table index walks a different path per series. */
static inline double bench_value(const bench_t *b, size_t s, uint64_t i)
{
    uint32_t k = ((uint32_t)s * 2654435761u + (uint32_t)i * 40503u) & (BENCH_VALUES - 1);
    return 100.0 + (double)(s % 97) + b->noise[k];
}

static inline int64_t bench_ts(uint64_t i)
{
    return BENCH_T0_MS + (int64_t)i * BENCH_STEP_MS;
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
    size_t stride = (sn_detector_state_size(d->ops, d->self) + 15) & ~(size_t)15;
    if (!stride)
        stride = 16;
    unsigned char *st = calloc(b->nseries, stride);
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
        stride += (sn_detector_state_size(ds[k]->ops, ds[k]->self) + 15) & ~(size_t)15;
    }
    if (!stride)
        stride = 16;
    int rc = SN_ENOMEM;
    size_t ns = 0, cap = 1 << 16;
    int64_t *samples = malloc(cap * sizeof(*samples));
    unsigned char *st = calloc(b->nseries, stride);
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

/* ---- the telemetry plane ---- */

typedef struct plane {
    const bench_t *b;
    sn_telemetry_t *t;
    sn_tbuild_t *build;
    const sn_label_t *labels; /* two per series */
    uint64_t delivered;       /* anomalies seen by the callback */
} plane_t;

static void plane_on_anomalies(void *arg, const sn_anomaly_t *a, size_t n)
{
    (void)a;
    ((plane_t *)arg)->delivered += n;
}

/* Run the loop's pending callbacks (anomaly deliveries) without blocking. */
static void plane_loop(plane_t *p)
{
    event_base_loop(sn_runtime_base(p->b->rt), EVLOOP_NONBLOCK);
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
    return 0;
}

/* Commit what is left, wait until the worker has observed everything and the loop has
 * delivered every anomaly. */
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
        if (p->delivered >= st.anomalies)
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

static int bench_plane(const bench_t *b, const bdet_t *const *ds, size_t nd, plane_result_t *out)
{
    int rc = SN_ENOMEM;
    plane_t p = {.b = b};
    sn_tdetector_t tds[D_N];
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
    for (size_t k = 0; k < nd; k++) {
        tds[k] = (sn_tdetector_t){
            .name = ds[k]->host.instance, .ops = ds[k]->ops, .self = ds[k]->self, .metrics = NULL};
        out->state_bytes +=
            (double)((sn_detector_state_size(ds[k]->ops, ds[k]->self) + 15) & ~(size_t)15);
    }
    sn_telemetry_opts_t o = {.workers = 1,
                             .queue_points = 2 * BENCH_INFLIGHT * BENCH_BATCH,
                             .max_series = 2 * b->nseries,
                             .evict = 0};
    p.t = sn_telemetry_new(b->rt, &o, tds, nd, plane_on_anomalies, &p);
    if (!p.t)
        goto out;

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
            "wall), %llu anomalies; RSS %lld -> %lld bytes over the warm-up\n",
            (unsigned long long)points, c1 - c0, w1 - w0, (double)points / (w1 - w0),
            (unsigned long long)(st1.anomalies - st0.anomalies), rss0, rss1);
    rc = 0;
out:
    if (p.build)
        sn_tbuild_free(p.build);
    if (p.t) {
        /* Deliver what is still queued for the loop while the plane (its callback arg) lives. */
        sn_telemetry_flush(p.t);
        plane_loop(&p);
        sn_telemetry_free(p.t);
    }
    free(labels);
    free(names);
    return rc;
}

/* ---- main ---- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sentinel-bench [--quick] [-p PLUGIN_DIR]\n"
            "  --quick  %d series and %.2f s per figure (a smoke test; figures not meaningful)\n"
            "  -p DIR   load plugins from DIR (default %s)\n"
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
        {"quick", no_argument, NULL, 'q'},
        {"plugin-dir", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *plugin_dir = NULL;
    int quick = 0, c;
    while ((c = getopt_long(argc, argv, "qp:h", longopts, NULL)) != -1) {
        switch (c) {
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

    int status = 1;
    bench_t *b = calloc(1, sizeof(*b));
    if (!b) {
        fprintf(stderr, "sentinel-bench error: out of memory\n");
        return 1;
    }
    b->nseries = quick ? BENCH_QUICK_SERIES : BENCH_SERIES;
    b->seconds = quick ? BENCH_QUICK_SECONDS : BENCH_SECONDS;
    bench_fill_noise(b);
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

    plane_result_t pr;
    int rc = bench_plane(b, all, nall, &pr);
    if (rc != 0) {
        fprintf(stderr, "sentinel-bench error: telemetry plane failed (%d)\n", rc);
        goto out;
    }
    printf("bench: all_detectors_points_per_s %.0f points/s\n", pr.rate);
    printf("bench: bytes_per_series %.0f bytes\n", pr.bytes_per_series);
    printf("bench: state_bytes_per_series %.0f bytes\n", pr.state_bytes);

    double p50, p99;
    if (bench_latency(b, all, nall, &p50, &p99) != 0) {
        fprintf(stderr, "sentinel-bench error: latency: out of memory\n");
        goto out;
    }
    printf("bench: verdict_latency_p99_us %.3f us\n", p99);
    printf("bench: verdict_latency_p50_us %.3f us\n", p50);
    status = 0;
out:
    bench_free(b);
    return status;
}
