/**
 * @file telemetry.c
 * Worker threads that run detectors over points sharded by series hash.
 *
 * Producers pack points into one contiguous buffer per worker (one allocation per batch, not
 * per point), and commit them all-or-nothing so a rejected body loses nothing that was
 * acknowledged. Each worker owns a hash table of its series and their detector state; the core
 * allocates the state blobs, so detectors never allocate on the hot path.
 *
 * Speed. A worker visits its series in whatever order points arrive, so with many series
 * every point would wait for memory twice: its table slot, then its detector state. The worker
 * therefore looks ahead in the batch: it prefetches the table slot of the point SN_PF_SLOT
 * entries ahead and, once that slot is in cache, the detector states of the point SN_PF_STATE
 * entries ahead: whole when they are small (up to SN_PF_WHOLE bytes), else their first two
 * cache lines (a detector with a larger state keeps its per-point fields there).
 * State blobs are carved out of per-worker chunks rather than one malloc each: every
 * detector's state starts on a cache line of its own (offsets rounded to 64 bytes), and the
 * 2 MiB chunks of a large plane are advised to use huge pages, so that a point does not also
 * pay a TLB miss to reach a state among hundreds of megabytes of them.
 */
#include "telemetry.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SN_MAX_DETECTORS 32
#define SN_LINE 64               /* cache line: detector states start on one */
#define SN_CHUNK_MIN (64u << 10) /* the first state chunk of a worker */
#define SN_CHUNK_HUGE (2u << 20) /* chunks grow to this, a huge page, and stay there */
#define SN_PF_SLOT 16            /* entries ahead whose table slot is prefetched */
#define SN_SPARES 4              /* point batch buffers kept for reuse, per plane */
#define SN_SPARE_MAX (2u << 20)  /* larger buffers are freed, not kept */
#define SN_PF_WHOLE 640 /* states up to this size are prefetched whole, larger ones 2 lines */
#define SN_PF_STATE 6   /* entries ahead whose detector states are prefetched */

typedef struct tbatch {
    struct tbatch *next;
    size_t n, used, cap;
    /* A history reply instead of points: data holds hn timestamps then hn values. */
    int warm, warm_ok;
    uint64_t warm_key;
    size_t hn;
    char data[];
} tbatch_t;

/* Points of a series seen while its history is being fetched, replayed after it. */
#define SN_WARM_BUF 64
typedef struct warmbuf {
    uint32_t n;
    int64_t ts[SN_WARM_BUF];
    double v[SN_WARM_BUF];
} warmbuf_t;

/* Packed point: header then metric bytes then labels (u16 name len, u16 value len, bytes). */
typedef struct pentry {
    uint64_t series;
    int64_t ts;
    double value;
    uint16_t size; /* whole entry, aligned to 8 */
    uint16_t metric_len;
    uint16_t nlabels;
    uint16_t pad;
} pentry_t;

typedef struct series {
    uint64_t key;
    char *metric;
    json_t *labels;
    uint32_t mask; /* detectors that observe this series */
    uint32_t ref;  /* seen since the eviction hand last passed */
    unsigned char *state;
    warmbuf_t *warm; /* non-NULL while its history is being fetched */
} series_t;

typedef struct worker {
    struct sn_telemetry *t;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv, idle_cv;
    tbatch_t *head, *tail;
    size_t queued; /* points in the queue */
    int busy, stop;
    /* owned by the worker thread */
    series_t *tab;
    size_t cap, count;
    size_t hand; /* eviction clock hand */
    /* state blobs: carved from chunks, released ones kept on a free list (linked through
     * their first bytes) */
    unsigned char **chunks;
    size_t nchunks, chunks_cap;
    size_t chunk_bytes;  /* size of the newest chunk */
    unsigned char *next; /* unused part of the newest chunk */
    size_t left;         /* blobs left there */
    void *free_states;
} worker_t;

struct sn_telemetry {
    sn_runtime_t *rt;
    sn_tdetector_t dets[SN_MAX_DETECTORS];
    size_t ndets;
    size_t offs[SN_MAX_DETECTORS];
    size_t pf_lines[SN_MAX_DETECTORS]; /* lines of each state prefetched ahead of a point */
    size_t state_size;
    sn_anomaly_fn cb;
    void *cb_arg;
    worker_t *w;
    int nw;
    size_t queue_cap;  /* per worker */
    size_t series_cap; /* per worker */
    int evict;         /* at the cap: evict an idle series (1) or refuse the new one (0) */
    sn_history_fn history;
    void *history_arg;
    size_t max_warming;
    _Atomic size_t batch_hint; /* bytes of the last point batch: the next one starts there */
    /* Processed point batches, kept for the next producer: a buffer of up to a few megabytes
     * is then allocated (and its pages faulted in) once, not once per batch. Bounded: at most
     * SN_SPARES buffers of at most SN_SPARE_MAX bytes. */
    pthread_mutex_t spare_mu;
    tbatch_t *spares[SN_SPARES];
    size_t nspares;
    uint32_t warm_mask; /* detectors that can be primed */
    _Atomic uint64_t points, anomalies, series, dropped, rejected, evicted;
    _Atomic uint64_t warming, warmed, warm_failed, warm_skipped;
};

struct sn_tbuild {
    sn_telemetry_t *t;
    tbatch_t **b; /* one per worker */
    size_t n;
};

/* ---- batch buffers ---- */

static tbatch_t *spare_get(sn_telemetry_t *t)
{
    tbatch_t *b = NULL;
    pthread_mutex_lock(&t->spare_mu);
    if (t->nspares)
        b = t->spares[--t->nspares];
    pthread_mutex_unlock(&t->spare_mu);
    return b;
}

/* Keep @p b for reuse, or free it. Thread: any. */
static void spare_put(sn_telemetry_t *t, tbatch_t *b)
{
    if (!b->warm && b->cap <= SN_SPARE_MAX) {
        pthread_mutex_lock(&t->spare_mu);
        if (t->nspares < SN_SPARES) {
            t->spares[t->nspares++] = b;
            b = NULL;
        }
        pthread_mutex_unlock(&t->spare_mu);
    }
    free(b);
}

/* ---- anomaly delivery ---- */

typedef struct abatch {
    sn_telemetry_t *t;
    sn_anomaly_t *a;
    size_t n, cap;
} abatch_t;

static void abatch_deliver(void *arg)
{
    abatch_t *ab = arg;
    ab->t->cb(ab->t->cb_arg, ab->a, ab->n);
    for (size_t i = 0; i < ab->n; i++) {
        free((char *)ab->a[i].metric);
        json_decref(ab->a[i].labels);
    }
    free(ab->a);
    free(ab);
}

static void abatch_push(abatch_t **abp, sn_telemetry_t *t, const series_t *s, const pentry_t *p,
                        const sn_verdict_t *v, const char *det)
{
    abatch_t *ab = *abp;
    if (!ab) {
        ab = calloc(1, sizeof(*ab));
        if (!ab)
            return;
        ab->t = t;
        *abp = ab;
    }
    if (ab->n == ab->cap) {
        size_t cap = ab->cap ? ab->cap * 2 : 8;
        sn_anomaly_t *na = realloc(ab->a, cap * sizeof(*na));
        if (!na)
            return;
        ab->a = na;
        ab->cap = cap;
    }
    sn_anomaly_t *a = &ab->a[ab->n++];
    a->series = s->key;
    a->ts_ms = p->ts;
    a->value = p->value;
    a->expected = v->expected;
    a->score = v->score;
    a->confidence = v->confidence;
    a->detector = det;
    a->fingerprint = NULL;
    a->metric = strdup(s->metric);
    a->labels = json_incref(s->labels);
}

static void abatch_flush(abatch_t **abp)
{
    abatch_t *ab = *abp;
    *abp = NULL;
    if (!ab)
        return;
    atomic_fetch_add(&ab->t->anomalies, ab->n);
    if (sn_runtime_post(ab->t->rt, abatch_deliver, ab) != 0) {
        /* The loop is saturated: say so loudly rather than drop quietly. */
        sn_log(SN_LOG_ERROR, NULL, NULL, NULL, "telemetry: %zu anomalies lost: post queue full",
               ab->n);
        sn_metric(ab->t->rt, SN_METRIC_COUNTER, "anomalies_dropped_total",
                  "Anomalies that could not reach the loop", NULL, (double)ab->n);
        for (size_t i = 0; i < ab->n; i++) {
            free((char *)ab->a[i].metric);
            json_decref(ab->a[i].labels);
        }
        free(ab->a);
        free(ab);
    }
}

/* ---- state blobs ---- */

/* A zeroed state blob of t->state_size bytes (a multiple of SN_LINE), SN_LINE aligned, or
 * NULL. Thread: the worker. */
static unsigned char *state_alloc(worker_t *w)
{
    size_t size = w->t->state_size;
    unsigned char *st;
    if (w->free_states) {
        st = w->free_states;
        memcpy(&w->free_states, st, sizeof(void *));
    } else {
        if (!w->left) {
            if (w->nchunks == w->chunks_cap) {
                size_t ncap = w->chunks_cap ? 2 * w->chunks_cap : 8;
                unsigned char **nc = realloc(w->chunks, ncap * sizeof(*nc));
                if (!nc)
                    return NULL;
                w->chunks = nc;
                w->chunks_cap = ncap;
            }
            /* Small planes stay small; large ones get huge-page chunks. */
            size_t bytes = w->chunk_bytes ? 2 * w->chunk_bytes : SN_CHUNK_MIN;
            if (bytes > SN_CHUNK_HUGE)
                bytes = SN_CHUNK_HUGE;
            if (bytes < size)
                bytes = (size + SN_CHUNK_HUGE - 1) & ~(size_t)(SN_CHUNK_HUGE - 1);
            size_t align = bytes >= SN_CHUNK_HUGE ? SN_CHUNK_HUGE : SN_LINE;
            unsigned char *c = aligned_alloc(align, bytes);
            if (!c)
                return NULL;
#ifdef MADV_HUGEPAGE
            if (align == SN_CHUNK_HUGE)
                madvise(c, bytes, MADV_HUGEPAGE); /* advice only: failure changes nothing */
#endif
            w->chunks[w->nchunks++] = c;
            w->chunk_bytes = bytes;
            w->next = c;
            w->left = bytes / size;
        }
        st = w->next;
        w->next += size;
        w->left--;
    }
    memset(st, 0, size);
    return st;
}

static void state_free(worker_t *w, unsigned char *st)
{
    if (!st)
        return;
    memcpy(st, &w->free_states, sizeof(void *));
    w->free_states = st;
}

/* ---- series table (open addressing, linear probing; key 0 = empty) ---- */

static bool metric_matches(const char *const *pats, const char *metric)
{
    if (!pats || !pats[0])
        return true;
    for (size_t i = 0; pats[i]; i++) {
        size_t l = strlen(pats[i]);
        if (strcmp(pats[i], "*") == 0 || strcmp(pats[i], metric) == 0)
            return true;
        if (l > 0 && pats[i][l - 1] == '*' && strncmp(pats[i], metric, l - 1) == 0)
            return true;
    }
    return false;
}

/* A zeroed table of @p cap entries; a large one is advised to use huge pages (see the top). */
static series_t *tab_alloc(size_t cap)
{
    size_t bytes = cap * sizeof(series_t);
    if (bytes < SN_CHUNK_HUGE)
        return calloc(cap, sizeof(series_t));
    bytes = (bytes + SN_CHUNK_HUGE - 1) & ~(size_t)(SN_CHUNK_HUGE - 1);
    series_t *tab = aligned_alloc(SN_CHUNK_HUGE, bytes);
    if (!tab)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(tab, bytes, MADV_HUGEPAGE);
#endif
    memset(tab, 0, bytes);
    return tab;
}

static int tab_grow(worker_t *w)
{
    size_t ncap = w->cap ? w->cap * 2 : 1024;
    series_t *nt = tab_alloc(ncap);
    if (!nt)
        return SN_ENOMEM;
    for (size_t i = 0; i < w->cap; i++) {
        if (!w->tab[i].key)
            continue;
        size_t j = w->tab[i].key & (ncap - 1);
        while (nt[j].key)
            j = (j + 1) & (ncap - 1);
        nt[j] = w->tab[i];
    }
    free(w->tab);
    w->tab = nt;
    w->cap = ncap;
    return 0;
}

static void warm_done(sn_telemetry_t *t, series_t *s)
{
    free(s->warm);
    s->warm = NULL;
    atomic_fetch_sub(&t->warming, 1);
}

static void series_release(worker_t *w, series_t *s)
{
    if (s->warm)
        warm_done(w->t, s);
    free(s->metric);
    json_decref(s->labels);
    state_free(w, s->state);
}

/* Remove slot @p i and shift later members of its probe run back, so lookups never meet a
 * hole inside a run (no tombstones). */
static void tab_delete(worker_t *w, size_t i)
{
    size_t mask = w->cap - 1, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!w->tab[j].key)
            break;
        size_t home = w->tab[j].key & mask;
        /* The member at j may move to i unless its home lies cyclically in (i, j]. */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            w->tab[i] = w->tab[j];
            i = j;
        }
    }
    memset(&w->tab[i], 0, sizeof(w->tab[i]));
    w->count--;
}

/* CLOCK (second chance): the hand clears the ref bit of series seen since its last pass and
 * evicts the first one not seen, an approximation of least recently used in O(1) amortised.
 * The evicted series' detector state is lost: it warms up again if it comes back. */
static int evict_one(worker_t *w)
{
    for (size_t steps = 0; steps < 2 * w->cap + 1; steps++) {
        size_t i = w->hand;
        w->hand = (w->hand + 1) & (w->cap - 1);
        series_t *s = &w->tab[i];
        if (!s->key)
            continue;
        if (s->ref) {
            s->ref = 0;
            continue;
        }
        series_release(w, s);
        tab_delete(w, i);
        atomic_fetch_add(&w->t->evicted, 1);
        atomic_fetch_sub(&w->t->series, 1);
        return 0;
    }
    return SN_ENOMEM;
}

static series_t *series_get(worker_t *w, const pentry_t *p)
{
    sn_telemetry_t *t = w->t;
    uint64_t key = p->series ? p->series : 1;
    if (w->cap) {
        size_t j = key & (w->cap - 1);
        while (w->tab[j].key) {
            if (w->tab[j].key == key) {
                w->tab[j].ref = 1;
                return &w->tab[j];
            }
            j = (j + 1) & (w->cap - 1);
        }
    }
    if (w->count >= t->series_cap && (!t->evict || evict_one(w) != 0)) {
        atomic_fetch_add(&t->dropped, 1);
        return NULL;
    }
    if ((w->count + 1) * 4 > w->cap * 3 && tab_grow(w) != 0)
        return NULL;
    size_t j = key & (w->cap - 1);
    while (w->tab[j].key)
        j = (j + 1) & (w->cap - 1);
    series_t *s = &w->tab[j];
    const char *mp = (const char *)(p + 1);
    s->metric = strndup(mp, p->metric_len);
    s->labels = json_object();
    const char *q = mp + p->metric_len;
    for (uint16_t i = 0; i < p->nlabels; i++) {
        uint16_t nl, vl;
        memcpy(&nl, q, 2);
        memcpy(&vl, q + 2, 2);
        char *name = strndup(q + 4, nl);
        json_object_set_new(s->labels, name, json_stringn(q + 4 + nl, vl));
        free(name);
        q += 4 + nl + vl;
    }
    s->state = t->state_size ? state_alloc(w) : NULL;
    if (!s->metric || !s->labels || (t->state_size && !s->state)) {
        series_release(w, s);
        memset(s, 0, sizeof(*s));
        return NULL;
    }
    s->ref = 1;
    s->mask = 0;
    for (size_t d = 0; d < t->ndets; d++)
        if (metric_matches(t->dets[d].metrics, s->metric))
            s->mask |= 1u << d;
    /* A new series asks the telemetry store for its history so its detectors start warm;
     * until the answer comes it is observed cold and its points are kept for the replay. */
    if (t->history && (s->mask & t->warm_mask)) {
        if (atomic_fetch_add(&t->warming, 1) < t->max_warming &&
            (s->warm = calloc(1, sizeof(*s->warm))) != NULL) {
            t->history(t->history_arg, key, p->ts, (int)(w - t->w));
        } else {
            atomic_fetch_sub(&t->warming, 1);
            atomic_fetch_add(&t->warm_skipped, 1);
        }
    }
    s->key = key;
    w->count++;
    atomic_fetch_add(&t->series, 1);
    return s;
}

/* ---- worker ---- */

static series_t *series_find(worker_t *w, uint64_t key);

/* Look-ahead for entry @p p (its slot prefetched a while ago): the detector states of its
 * series (pf_lines of each), when it has one already. */
static void prefetch_state(worker_t *w, const pentry_t *p)
{
    const sn_telemetry_t *t = w->t;
    series_t *s = series_find(w, p->series ? p->series : 1);
    if (!s || !s->state)
        return;
    for (size_t d = 0; d < t->ndets; d++)
        for (size_t l = 0; l < t->pf_lines[d]; l++)
            __builtin_prefetch(s->state + t->offs[d] + l * SN_LINE, 1);
}

static void process_batch(worker_t *w, tbatch_t *b)
{
    sn_telemetry_t *t = w->t;
    abatch_t *ab = NULL;
    size_t off = 0;
    /* two cursors ahead of the current entry: table slots, then states */
    size_t slot_i = 0, slot_off = 0, state_i = 0, state_off = 0;
    for (size_t i = 0; i < b->n; i++) {
        for (; slot_i < b->n && slot_i < i + SN_PF_SLOT; slot_i++) {
            /* Written out here: GCC deems a function that only prefetches pure and drops its
             * calls. */
            const pentry_t *q = (const pentry_t *)(b->data + slot_off);
            if (w->cap) {
                /* both ends: an entry may straddle two lines */
                const char *e = (const char *)&w->tab[(q->series ? q->series : 1) & (w->cap - 1)];
                __builtin_prefetch(e);
                __builtin_prefetch(e + sizeof(series_t) - 1);
            }
            slot_off += q->size;
        }
        for (; state_i < b->n && state_i < i + SN_PF_STATE; state_i++) {
            const pentry_t *q = (const pentry_t *)(b->data + state_off);
            if (state_i > i)
                prefetch_state(w, q);
            state_off += q->size;
        }
        const pentry_t *p = (const pentry_t *)(b->data + off);
        off += p->size;
        series_t *s = series_get(w, p);
        if (!s)
            continue;
        if (s->warm && s->warm->n < SN_WARM_BUF) {
            s->warm->ts[s->warm->n] = p->ts;
            s->warm->v[s->warm->n++] = p->value;
        }
        sn_point_t pt = {.ts_ms = p->ts, .value = p->value, .series = s->key, .metric = s->metric};
        for (size_t d = 0; d < t->ndets; d++) {
            if (!(s->mask & (1u << d)))
                continue;
            sn_verdict_t v = {0};
            if (t->dets[d].ops->observe(t->dets[d].self, s->state + t->offs[d], &pt, &v) == 0 &&
                v.anomalous)
                abatch_push(&ab, t, s, p, &v, t->dets[d].name);
        }
    }
    atomic_fetch_add(&t->points, b->n);
    abatch_flush(&ab);
}

static series_t *series_find(worker_t *w, uint64_t key)
{
    if (!w->cap)
        return NULL;
    for (size_t j = key & (w->cap - 1); w->tab[j].key; j = (j + 1) & (w->cap - 1))
        if (w->tab[j].key == key)
            return &w->tab[j];
    return NULL;
}

/* History arrived: restart the series' detectors from it, then replay what was seen since. */
static void process_warm(worker_t *w, tbatch_t *b)
{
    sn_telemetry_t *t = w->t;
    series_t *s = series_find(w, b->warm_key);
    if (!s || !s->warm)
        return; /* evicted meanwhile */
    if (!b->warm_ok) {
        atomic_fetch_add(&t->warm_failed, 1); /* degrade: it keeps its cold state */
        warm_done(t, s);
        return;
    }
    if (s->warm->n >= SN_WARM_BUF) {
        /* The answer came too late: more points went by than were kept for the replay, and
         * the cold state has seen them all. */
        atomic_fetch_add(&t->warm_skipped, 1);
        warm_done(t, s);
        return;
    }
    const int64_t *ts = (const int64_t *)b->data;
    const double *v = (const double *)(b->data + b->hn * sizeof(int64_t));
    /* Only history older than the first point seen, in order, counts. */
    size_t n = 0;
    while (n < b->hn && (s->warm->n == 0 || ts[n] < s->warm->ts[0]))
        n++;
    if (n > 0) {
        memset(s->state, 0, t->state_size);
        for (size_t d = 0; d < t->ndets; d++) {
            const sn_detector_ops_t *ops = t->dets[d].ops;
            if (!(s->mask & (1u << d)))
                continue;
            if (ops->warmup) {
                ops->warmup(t->dets[d].self, s->state + t->offs[d], ts, v, n);
                ops->warmup(t->dets[d].self, s->state + t->offs[d], s->warm->ts, s->warm->v,
                            s->warm->n);
            } else {
                /* No warmup: its state restarts from the points seen since. */
                sn_point_t pt = {.series = s->key, .metric = s->metric};
                for (uint32_t k = 0; k < s->warm->n; k++) {
                    sn_verdict_t vd;
                    pt.ts_ms = s->warm->ts[k];
                    pt.value = s->warm->v[k];
                    ops->observe(t->dets[d].self, s->state + t->offs[d], &pt, &vd);
                }
            }
        }
        atomic_fetch_add(&t->warmed, 1);
    }
    warm_done(t, s);
}

void sn_telemetry_warm(sn_telemetry_t *t, int worker, uint64_t series, const int64_t *ts,
                       const double *v, size_t n, int ok)
{
    if (worker < 0 || worker >= t->nw)
        return;
    size_t bytes = n * (sizeof(int64_t) + sizeof(double));
    tbatch_t *b = calloc(1, sizeof(*b) + bytes);
    if (!b) {
        /* The series stays marked warming and keeps buffering at most SN_WARM_BUF points;
         * it is freed with the series. */
        atomic_fetch_add(&t->warm_failed, 1);
        return;
    }
    b->warm = 1;
    b->warm_ok = ok;
    b->warm_key = series ? series : 1;
    b->hn = n;
    if (n) {
        memcpy(b->data, ts, n * sizeof(int64_t));
        memcpy(b->data + n * sizeof(int64_t), v, n * sizeof(double));
    }
    worker_t *w = &t->w[worker];
    pthread_mutex_lock(&w->mu);
    if (w->tail)
        w->tail->next = b;
    else
        w->head = b;
    w->tail = b;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->head && w->stop)
            break;
        tbatch_t *b = w->head;
        w->head = b->next;
        if (!w->head)
            w->tail = NULL;
        w->busy = 1;
        pthread_mutex_unlock(&w->mu);
        if (b->warm)
            process_warm(w, b);
        else
            process_batch(w, b);
        pthread_mutex_lock(&w->mu);
        w->queued -= b->n;
        w->busy = 0;
        spare_put(w->t, b);
        if (!w->head)
            pthread_cond_broadcast(&w->idle_cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

sn_telemetry_t *sn_telemetry_new(sn_runtime_t *rt, const sn_telemetry_opts_t *o,
                                 const sn_tdetector_t *dets, size_t ndets, sn_anomaly_fn cb,
                                 void *arg)
{
    if (ndets > SN_MAX_DETECTORS || o->workers < 1)
        return NULL;
    sn_telemetry_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->rt = rt;
    pthread_mutex_init(&t->spare_mu, NULL);
    t->cb = cb;
    t->cb_arg = arg;
    t->ndets = ndets;
    for (size_t d = 0; d < ndets; d++) {
        t->dets[d] = dets[d];
        t->offs[d] = t->state_size;
        /* Every detector's state starts on a cache line of its own (blobs are line aligned). */
        size_t size = (sn_detector_state_size(dets[d].ops, dets[d].self) + SN_LINE - 1) &
                      ~(size_t)(SN_LINE - 1);
        t->state_size += size;
        /* A small state is read whole; a large one keeps its per-point fields in front. */
        t->pf_lines[d] = size <= SN_PF_WHOLE ? size / SN_LINE : 2;
    }
    t->nw = o->workers;
    t->queue_cap = o->queue_points / (size_t)o->workers + 1;
    t->series_cap = o->max_series / (size_t)o->workers + 1;
    t->evict = o->evict;
    t->history = o->history;
    t->history_arg = o->history_arg;
    t->max_warming = o->max_warming ? o->max_warming : 256;
    for (size_t d = 0; d < ndets; d++)
        if (dets[d].ops->warmup)
            t->warm_mask |= 1u << d;
    t->w = calloc((size_t)t->nw, sizeof(*t->w));
    if (!t->w) {
        pthread_mutex_destroy(&t->spare_mu);
        free(t);
        return NULL;
    }
    for (int i = 0; i < t->nw; i++) {
        worker_t *w = &t->w[i];
        w->t = t;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        pthread_cond_init(&w->idle_cv, NULL);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            t->nw = i;
            sn_telemetry_free(t);
            return NULL;
        }
    }
    return t;
}

void sn_telemetry_free(sn_telemetry_t *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->nw; i++) {
        worker_t *w = &t->w[i];
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        for (size_t j = 0; j < w->cap; j++)
            if (w->tab[j].key)
                series_release(w, &w->tab[j]);
        for (size_t j = 0; j < w->nchunks; j++)
            free(w->chunks[j]);
        free(w->chunks);
        while (w->head) {
            tbatch_t *b = w->head;
            w->head = b->next;
            free(b);
        }
        free(w->tab);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        pthread_cond_destroy(&w->idle_cv);
    }
    for (size_t i = 0; i < t->nspares; i++)
        free(t->spares[i]);
    pthread_mutex_destroy(&t->spare_mu);
    free(t->w);
    free(t);
}

/* ---- producers ---- */

sn_tbuild_t *sn_tbuild_new(sn_telemetry_t *t)
{
    sn_tbuild_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->t = t;
    b->b = calloc((size_t)t->nw, sizeof(*b->b));
    if (!b->b) {
        free(b);
        return NULL;
    }
    return b;
}

void sn_tbuild_free(sn_tbuild_t *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->t->nw; i++)
        free(b->b[i]);
    free(b->b);
    free(b);
}

size_t sn_tbuild_count(const sn_tbuild_t *b)
{
    return b->n;
}

/* memcpy for the short strings of a record (names, values: mostly under 16 bytes), without a
 * library call each: fixed-size moves that may overlap. */
static inline void tb_copy(char *dst, const char *src, size_t n)
{
    if (n >= 8 && n <= 16) {
        memcpy(dst, src, 8);
        memcpy(dst + n - 8, src + n - 8, 8);
    } else if (n >= 4 && n < 8) {
        memcpy(dst, src, 4);
        memcpy(dst + n - 4, src + n - 4, 4);
    } else if (n > 16) {
        memcpy(dst, src, n);
    } else {
        for (size_t i = 0; i < n; i++)
            dst[i] = src[i];
    }
}

/* Labels whose lengths sn_tbuild_add measures once; a record with more measures the rest
 * twice. */
#define SN_TB_LENS 32

int sn_tbuild_add(sn_tbuild_t *b, const sn_record_t *rec)
{
    size_t ml = strlen(rec->metric);
    size_t need = sizeof(pentry_t) + ml;
    uint16_t lens[2 * SN_TB_LENS];
    for (size_t i = 0; i < rec->nlabels; i++) {
        size_t nl = strlen(rec->labels[i].name), vl = strlen(rec->labels[i].value);
        if (nl > UINT16_MAX || vl > UINT16_MAX)
            return SN_EINVAL;
        if (i < SN_TB_LENS) {
            lens[2 * i] = (uint16_t)nl;
            lens[2 * i + 1] = (uint16_t)vl;
        }
        need += 4 + nl + vl;
    }
    need = (need + 7) & ~(size_t)7;
    if (need > UINT16_MAX || ml > UINT16_MAX || rec->nlabels > UINT16_MAX)
        return SN_EINVAL; /* ingest limits keep records far below this */
    int wi = (int)(rec->series % (uint64_t)b->t->nw);
    tbatch_t *tb = b->b[wi];
    if (!tb && (tb = spare_get(b->t)) != NULL) {
        tb->n = tb->used = tb->hn = 0;
        tb->next = NULL;
        tb->warm = tb->warm_ok = 0;
        tb->warm_key = 0;
        b->b[wi] = tb;
    }
    if (!tb || tb->used + need > tb->cap) {
        /* A new batch starts at the size the last one reached: no copying while it grows. */
        size_t hint = atomic_load_explicit(&b->t->batch_hint, memory_order_relaxed);
        size_t cap = tb ? tb->cap * 2 : hint > 16384 ? hint : 16384;
        while (cap < (tb ? tb->used : 0) + need)
            cap *= 2;
        tbatch_t *nb = realloc(tb, sizeof(*nb) + cap);
        if (!nb)
            return SN_ENOMEM;
        if (!tb) {
            nb->n = nb->used = nb->hn = 0;
            nb->next = NULL;
            nb->warm = nb->warm_ok = 0;
            nb->warm_key = 0;
        }
        nb->cap = cap;
        b->b[wi] = tb = nb;
    }
    pentry_t *p = (pentry_t *)(tb->data + tb->used);
    p->series = rec->series;
    p->ts = rec->ts_ms;
    p->value = rec->value;
    p->size = (uint16_t)need;
    p->metric_len = (uint16_t)ml;
    p->nlabels = (uint16_t)rec->nlabels;
    p->pad = 0;
    char *q = (char *)(p + 1);
    tb_copy(q, rec->metric, ml);
    q += ml;
    for (size_t i = 0; i < rec->nlabels; i++) {
        uint16_t nl = i < SN_TB_LENS ? lens[2 * i] : (uint16_t)strlen(rec->labels[i].name);
        uint16_t vl = i < SN_TB_LENS ? lens[2 * i + 1] : (uint16_t)strlen(rec->labels[i].value);
        memcpy(q, &nl, 2);
        memcpy(q + 2, &vl, 2);
        tb_copy(q + 4, rec->labels[i].name, nl);
        tb_copy(q + 4 + nl, rec->labels[i].value, vl);
        q += 4 + nl + vl;
    }
    tb->used += need;
    tb->n++;
    b->n++;
    return 0;
}

int sn_tbuild_commit(sn_tbuild_t *b)
{
    sn_telemetry_t *t = b->t;
    int rc = 0;
    /* Lock in index order so concurrent producers cannot deadlock; check room everywhere
     * before enqueuing anywhere, so a body is taken whole or not at all. */
    for (int i = 0; i < t->nw; i++)
        pthread_mutex_lock(&t->w[i].mu);
    for (int i = 0; i < t->nw; i++)
        if (b->b[i] && t->w[i].queued + b->b[i]->n > t->queue_cap)
            rc = SN_EAGAIN;
    if (rc == 0) {
        for (int i = 0; i < t->nw; i++) {
            tbatch_t *tb = b->b[i];
            if (!tb)
                continue;
            worker_t *w = &t->w[i];
            /* the hint: a little over this batch's bytes, capped (1 MiB per worker) */
            size_t hint = tb->used + tb->used / 8;
            if (hint > (1u << 20))
                hint = 1u << 20;
            atomic_store_explicit(&t->batch_hint, hint, memory_order_relaxed);
            tb->next = NULL;
            if (w->tail)
                w->tail->next = tb;
            else
                w->head = tb;
            w->tail = tb;
            w->queued += tb->n;
            b->b[i] = NULL;
            pthread_cond_signal(&w->cv);
        }
    }
    for (int i = t->nw - 1; i >= 0; i--)
        pthread_mutex_unlock(&t->w[i].mu);
    if (rc)
        atomic_fetch_add(&t->rejected, 1);
    sn_tbuild_free(b);
    return rc;
}

void sn_telemetry_flush(sn_telemetry_t *t)
{
    for (int i = 0; i < t->nw; i++) {
        worker_t *w = &t->w[i];
        pthread_mutex_lock(&w->mu);
        while (w->head || w->busy)
            pthread_cond_wait(&w->idle_cv, &w->mu);
        pthread_mutex_unlock(&w->mu);
    }
}

void sn_telemetry_stats(sn_telemetry_t *t, sn_telemetry_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->points = atomic_load(&t->points);
    out->anomalies = atomic_load(&t->anomalies);
    out->series = atomic_load(&t->series);
    out->series_dropped = atomic_load(&t->dropped);
    out->series_evicted = atomic_load(&t->evicted);
    out->warmed = atomic_load(&t->warmed);
    out->warm_failed = atomic_load(&t->warm_failed);
    out->warm_skipped = atomic_load(&t->warm_skipped);
    out->rejected_batches = atomic_load(&t->rejected);
    for (int i = 0; i < t->nw; i++) {
        pthread_mutex_lock(&t->w[i].mu);
        out->queued += t->w[i].queued;
        pthread_mutex_unlock(&t->w[i].mu);
    }
}
