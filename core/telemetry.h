/**
 * @file telemetry.h
 * The telemetry plane: points are sharded by series hash over worker threads; each worker owns
 * the per-series detector state of its shard, so the hot path takes no lock. Anomalies travel
 * to the loop in batches through the runtime's post queue.
 */
#ifndef SENTINEL_TELEMETRY_H
#define SENTINEL_TELEMETRY_H

#include "ingest.h"
#include "runtime.h"

typedef struct sn_telemetry sn_telemetry_t;

typedef struct sn_tdetector {
    const char *name;
    const sn_detector_ops_t *ops;
    const void *self;
    const char *const *metrics; /**< patterns: exact, "prefix*", or "*" */
} sn_tdetector_t;

/** One anomaly as delivered to the loop. Ownership: the array and strings belong to the batch. */
typedef struct sn_anomaly {
    uint64_t series;
    int64_t ts_ms;
    double value, expected, score, confidence;
    const char *detector;
    const char *metric;
    json_t *labels;          /**< object */
    const char *fingerprint; /**< alerts: the sender's id, else NULL */
} sn_anomaly_t;

/** Called on the loop with a batch of anomalies; everything is borrowed for the call. */
typedef void (*sn_anomaly_fn)(void *arg, const sn_anomaly_t *a, size_t n);

/** Ask for @p series' history before @p before_ms; answer with sn_telemetry_warm(), naming
 * @p worker. Thread: a worker (post to the loop; never block). */
typedef void (*sn_history_fn)(void *arg, uint64_t series, int64_t before_ms, int worker);

typedef struct sn_telemetry_opts {
    int workers;
    size_t queue_points;   /**< all workers together */
    size_t max_series;     /**< all workers together */
    int evict;             /**< at the cap: evict the least recently seen series (CLOCK) */
    sn_history_fn history; /**< NULL: new series start cold */
    void *history_arg;
    size_t max_warming; /**< history requests in flight (0 = 256); more start cold, counted */
} sn_telemetry_opts_t;

/** A history answer (oldest first; copied). @p ok = 0: the store failed, the series goes on
 * with the state it built meanwhile. Thread: any. */
void sn_telemetry_warm(sn_telemetry_t *t, int worker, uint64_t series, const int64_t *ts,
                       const double *v, size_t n, int ok);

/** Ownership: @p dets is copied (the detector instances must outlive the plane). */
sn_telemetry_t *sn_telemetry_new(sn_runtime_t *rt, const sn_telemetry_opts_t *o,
                                 const sn_tdetector_t *dets, size_t ndets, sn_anomaly_fn cb,
                                 void *arg);
/** Stop the workers after they drained their queues, then free. Thread: loop. */
void sn_telemetry_free(sn_telemetry_t *t);

/** A batch of points being built by one producer before it is handed over whole. */
typedef struct sn_tbuild sn_tbuild_t;
sn_tbuild_t *sn_tbuild_new(sn_telemetry_t *t);
/** Copy one point record into the build. Returns 0 or SN_ENOMEM. */
int sn_tbuild_add(sn_tbuild_t *b, const sn_record_t *rec);
size_t sn_tbuild_count(const sn_tbuild_t *b);
/** Hand every point over, or none: SN_EAGAIN when the queues lack room (backpressure).
 * Frees the build in both cases. Thread: any. */
int sn_tbuild_commit(sn_tbuild_t *b);
void sn_tbuild_free(sn_tbuild_t *b);

/** Block until every point queued so far has been observed (tests, drain). Thread: not a
 * worker. */
void sn_telemetry_flush(sn_telemetry_t *t);

typedef struct sn_telemetry_stats {
    uint64_t points, anomalies, series, series_dropped, series_evicted, rejected_batches, queued;
    uint64_t warmed, warm_failed, warm_skipped; /**< series primed from history, or not */
} sn_telemetry_stats_t;
void sn_telemetry_stats(sn_telemetry_t *t, sn_telemetry_stats_t *out);

#endif /* SENTINEL_TELEMETRY_H */
