/**
 * @file history.c
 * The telemetry store, seen from the engine: every accepted point is written to it (in
 * batches, on the loop, bounded), and a series the workers see for the first time reads its
 * history back so its detectors start warm (seasonal baselines, variances) after a restart or
 * on another instance. When the store is slow or down, detection does not wait: writes past the
 * bound are dropped and counted, and a series whose history does not come starts cold.
 */
#include "engine-internal.h"
#include "ingest.h"

#include <stdlib.h>
#include <string.h>

/* ---- writes ---- */

#define SN_HWRITE_SEEN 256 /* series remembered per batch (power of 2) */

struct sn_hwrite {
    sn_engine_t *e;
    sn_done_fn done; /* the input's acknowledgement, or NULL */
    void *done_arg;
    sn_point_t *pts;
    size_t n, cap;
    sn_label_t *labels; /* all points' labels, each point's a slice */
    size_t nlabels, lcap;
    /* One buffer holds the copies of the metric names and labels, NUL-terminated, in place of
     * an allocation per string (which cost more than the rest of the write path). Until the
     * batch is submitted the buffer may move, so points and labels hold offsets into it. */
    char *arena;
    size_t alen, acap;
    /* A batch holds many points of few series, and a series id stands for its metric and
     * labels: a point of a series already in the batch shares that point's copies. */
    struct {
        uint64_t series;
        uint32_t first; /* index of its first point + 1; 0: empty */
    } seen[SN_HWRITE_SEEN];
};

/* Offset of a copy of @p s in the arena, or (size_t)-1 when memory is short. */
static size_t keep(sn_hwrite_t *w, const char *s)
{
    size_t n = strlen(s ? s : "") + 1;
    if (w->alen + n > w->acap) {
        size_t cap = w->acap ? w->acap * 2 : 4096;
        while (cap < w->alen + n)
            cap *= 2;
        char *a = realloc(w->arena, cap);
        if (!a)
            return (size_t)-1;
        w->arena = a;
        w->acap = cap;
    }
    size_t at = w->alen;
    memcpy(w->arena + at, s ? s : "", n);
    w->alen += n;
    return at;
}

#define AS_OFFSET(o) ((const char *)(uintptr_t)(o))
#define FROM_OFFSET(w, p) ((w)->arena + (uintptr_t)(p))

sn_hwrite_t *sn_history_batch(sn_engine_t *e)
{
    if (!e->telemetry)
        return NULL;
    sn_hwrite_t *w = calloc(1, sizeof(*w));
    if (w)
        w->e = e;
    return w;
}

void sn_history_batch_free(sn_hwrite_t *w)
{
    if (!w)
        return;
    free(w->arena);
    free(w->labels);
    free(w->pts);
    free(w);
}

int sn_history_add(sn_hwrite_t *w, const sn_record_t *r)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        sn_point_t *n = realloc(w->pts, cap * sizeof(*n));
        if (!n)
            return SN_ENOMEM;
        w->pts = n;
        w->cap = cap;
    }
    if (w->nlabels + r->nlabels > w->lcap) {
        size_t cap = w->lcap ? w->lcap * 2 : 256;
        while (cap < w->nlabels + r->nlabels)
            cap *= 2;
        sn_label_t *n = realloc(w->labels, cap * sizeof(*n));
        if (!n)
            return SN_ENOMEM;
        w->labels = n;
        w->lcap = cap;
    }
    sn_point_t *p = &w->pts[w->n];
    p->ts_ms = r->ts_ms;
    p->value = r->value;
    p->series = r->series;
    size_t slot = (size_t)(r->series ^ (r->series >> 32)) & (SN_HWRITE_SEEN - 1);
    if (w->seen[slot].first && w->seen[slot].series == r->series) {
        const sn_point_t *like = &w->pts[w->seen[slot].first - 1];
        p->metric = like->metric;
        p->labels = like->labels;
        p->nlabels = like->nlabels;
        w->n++;
        return 0;
    }
    size_t metric = keep(w, r->metric);
    if (metric == (size_t)-1)
        return SN_ENOMEM;
    p->metric = AS_OFFSET(metric);
    /* Labels are an index until the batch is complete: the array may still move. */
    p->labels = (const sn_label_t *)(uintptr_t)w->nlabels;
    p->nlabels = r->nlabels;
    for (size_t i = 0; i < r->nlabels; i++) {
        size_t name = keep(w, r->labels[i].name), value = keep(w, r->labels[i].value);
        if (name == (size_t)-1 || value == (size_t)-1) {
            w->nlabels -= i; /* the point is not counted: forget its labels */
            return SN_ENOMEM;
        }
        sn_label_t *l = &w->labels[w->nlabels++];
        l->name = AS_OFFSET(name);
        l->value = AS_OFFSET(value);
    }
    if (w->n < UINT32_MAX) {
        w->seen[slot].series = r->series;
        w->seen[slot].first = (uint32_t)w->n + 1;
    }
    w->n++;
    return 0;
}

typedef struct ack {
    sn_done_fn done;
    void *arg;
    int status;
} ack_t;

static void ack_on_loop(void *arg)
{
    ack_t *a = arg;
    a->done(a->arg, a->status, NULL);
    free(a);
}

void sn_history_ack(sn_engine_t *e, sn_done_fn done, void *arg, int status)
{
    ack_t *a = malloc(sizeof(*a));
    if (a) {
        a->done = done;
        a->arg = arg;
        a->status = status;
        if (sn_runtime_post(e->rt, ack_on_loop, a) == 0)
            return;
        free(a);
    }
    /* The loop is saturated or memory is short: the input must not wait forever. It learns
     * nothing was confirmed the next time it asks; log it loudly. */
    sn_log(SN_LOG_ERROR, "history", NULL, NULL,
           "could not acknowledge a batch to its input: it will be delivered again");
}

static void written(void *arg, int status, json_t *result)
{
    (void)result;
    sn_hwrite_t *w = arg;
    sn_engine_t *e = w->e;
    if (w->done)
        w->done(w->done_arg, status, NULL);
    atomic_fetch_sub(&e->history_pending, w->n);
    if (status != 0) {
        sn_metric(e->rt, SN_METRIC_COUNTER, "telemetry_store_dropped_points_total",
                  "Points the telemetry store did not keep (detection is unaffected)",
                  "reason=\"error\"", (double)w->n);
        sn_log(SN_LOG_WARN, "history", NULL, NULL,
               "telemetry store refused %zu points (%d): history has a gap", w->n, status);
    }
    sn_history_batch_free(w);
}

static void write_on_loop(void *arg)
{
    sn_hwrite_t *w = arg;
    sn_engine_t *e = w->e;
    if (!e->telemetry) {
        written(w, SN_ENOTSUP, NULL);
        return;
    }
    const sn_store_ops_t *ops = e->telemetry->in->mod->plugin->ops;
    ops->telemetry_write(e->telemetry->self, w->pts, w->n, written, w);
}

void sn_history_submit(sn_hwrite_t *w, sn_done_fn done, void *arg)
{
    if (!w)
        return;
    sn_engine_t *e = w->e;
    if (w->n == 0) {
        if (done)
            sn_history_ack(e, done, arg, 0);
        sn_history_batch_free(w);
        return;
    }
    w->done = done;
    w->done_arg = arg;
    for (size_t i = 0; i < w->n; i++) {
        w->pts[i].labels = w->labels + (uintptr_t)w->pts[i].labels;
        w->pts[i].metric = FROM_OFFSET(w, w->pts[i].metric);
    }
    for (size_t i = 0; i < w->nlabels; i++) {
        w->labels[i].name = FROM_OFFSET(w, w->labels[i].name);
        w->labels[i].value = FROM_OFFSET(w, w->labels[i].value);
    }
    /* Bounded: past queue_points in flight the store is not keeping up, and detection must
     * not wait for it. */
    uint64_t before = atomic_fetch_add(&e->history_pending, w->n);
    if (before + w->n > (uint64_t)e->model->set.queue_points ||
        sn_runtime_post(e->rt, write_on_loop, w) != 0) {
        atomic_fetch_sub(&e->history_pending, w->n);
        sn_metric(e->rt, SN_METRIC_COUNTER, "telemetry_store_dropped_points_total",
                  "Points the telemetry store did not keep (detection is unaffected)",
                  "reason=\"backlog\"", (double)w->n);
        if (done)
            sn_history_ack(e, done, arg, SN_EAGAIN); /* an acked input delivers them again */
        sn_history_batch_free(w);
    }
}

/* ---- reads: priming a new series ---- */

typedef struct hreq {
    sn_engine_t *e;
    uint64_t series;
    int64_t before;
    int worker;
} hreq_t;

static void history_read(void *arg, int status, json_t *result)
{
    hreq_t *r = arg;
    json_t *pts = status == 0 ? json_object_get(result, "points") : NULL;
    size_t n = json_array_size(pts);
    int64_t *ts = calloc(n ? n : 1, sizeof(*ts));
    double *v = calloc(n ? n : 1, sizeof(*v));
    size_t k = 0;
    if (ts && v) {
        for (size_t i = 0; i < n; i++) {
            json_t *p = json_array_get(pts, i);
            ts[k] = (int64_t)json_number_value(json_array_get(p, 0));
            v[k] = json_number_value(json_array_get(p, 1));
            if (k == 0 || ts[k] > ts[k - 1]) /* oldest first, strictly */
                k++;
        }
    }
    if (r->e->tel)
        sn_telemetry_warm(r->e->tel, r->worker, r->series, ts, v, k, status == 0 && ts && v);
    free(ts);
    free(v);
    free(r);
}

static void read_on_loop(void *arg)
{
    hreq_t *r = arg;
    sn_engine_t *e = r->e;
    if (!e->telemetry || e->shutting_down) {
        history_read(r, SN_ENOTSUP, NULL);
        return;
    }
    const sn_settings_t *s = &e->model->set;
    const sn_store_ops_t *ops = e->telemetry->in->mod->plugin->ops;
    ops->telemetry_window(e->telemetry->self, r->series, r->before - s->warmup_window_ms,
                          r->before - 1, (size_t)s->warmup_points, history_read, r);
}

void sn_history_request(void *arg, uint64_t series, int64_t before_ms, int worker)
{
    sn_engine_t *e = arg;
    hreq_t *r = malloc(sizeof(*r));
    if (r) {
        r->e = e;
        r->series = series;
        r->before = before_ms;
        r->worker = worker;
        if (sn_runtime_post(e->rt, read_on_loop, r) == 0)
            return;
        free(r);
    }
    if (e->tel)
        sn_telemetry_warm(e->tel, worker, series, NULL, NULL, 0, 0);
}
