/**
 * @file offload.c
 * The offload pool (blocking work on worker threads) and the post queue (the one way another
 * thread hands work to the loop). Both are bounded and both complete through one libevent
 * event that the queue activates with event_active, so the loop wakes without a pipe of ours.
 */
#include "runtime-internal.h"

#include <event2/event.h>
#include <stdlib.h>

struct sn_post_entry {
    void (*fn)(void *);
    void *arg;
};

struct sn_offload_job {
    struct sn_offload_job *next;
    void (*work)(void *);
    void (*done)(void *);
    void *arg;
};

struct sn_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sn_offload_job *head, *tail; /**< waiting for a worker */
    size_t inflight;                    /**< accepted and not yet completed on the loop */
    int stop;
    pthread_t *threads;
    int nthreads;
};

static void pool_complete(sn_runtime_t *rt, struct sn_offload_job *j)
{
    if (j->done)
        j->done(j->arg);
    pthread_mutex_lock(&rt->pool->mu);
    rt->pool->inflight--;
    pthread_mutex_unlock(&rt->pool->mu);
    free(j);
}

/** Runs on the loop: offload completions first, then the posts queued when it started, so a
 * post that re-posts cannot starve other events. */
static void post_drain(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sn_runtime_t *rt = arg;
    pthread_mutex_lock(&rt->post_mu);
    struct sn_offload_job *jobs = rt->done_head;
    rt->done_head = rt->done_tail = NULL;
    size_t n = rt->post_count;
    pthread_mutex_unlock(&rt->post_mu);

    while (jobs) {
        struct sn_offload_job *j = jobs;
        jobs = j->next;
        pool_complete(rt, j);
    }
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&rt->post_mu);
        if (rt->post_count == 0) {
            pthread_mutex_unlock(&rt->post_mu);
            break;
        }
        struct sn_post_entry e = rt->post_ring[rt->post_head];
        rt->post_head = (rt->post_head + 1) % SN_POST_MAX;
        rt->post_count--;
        pthread_mutex_unlock(&rt->post_mu);
        e.fn(e.arg);
    }
    pthread_mutex_lock(&rt->post_mu);
    int more = rt->post_count > 0 || rt->done_head != NULL;
    pthread_mutex_unlock(&rt->post_mu);
    if (more)
        event_active(rt->post_ev, EV_READ, 0);
}

int sn_postq_init(sn_runtime_t *rt)
{
    if (pthread_mutex_init(&rt->post_mu, NULL) != 0)
        return SN_ENOMEM;
    rt->post_ring = calloc(SN_POST_MAX, sizeof(*rt->post_ring));
    rt->post_ev = event_new(rt->base, -1, 0, post_drain, rt);
    if (!rt->post_ring || !rt->post_ev)
        return SN_ENOMEM;
    sn_metric(rt, SN_METRIC_COUNTER, "post_rejected_total",
              "Calls refused because the post queue was full.", NULL, 0);
    return 0;
}

void sn_postq_fini(sn_runtime_t *rt)
{
    if (!rt->post_ring)
        return;
    /* Run what is left so owners can release their arguments; bounded in case a callback
     * keeps re-posting. */
    for (size_t round = 0; round < 4; round++) {
        pthread_mutex_lock(&rt->post_mu);
        int more = rt->post_count > 0 || rt->done_head != NULL;
        pthread_mutex_unlock(&rt->post_mu);
        if (!more)
            break;
        post_drain(-1, 0, rt);
    }
    if (rt->post_ev)
        event_free(rt->post_ev);
    rt->post_ev = NULL;
    free(rt->post_ring);
    rt->post_ring = NULL;
    pthread_mutex_destroy(&rt->post_mu);
}

int sn_runtime_post(sn_runtime_t *rt, void (*fn)(void *), void *arg)
{
    if (!rt || !fn)
        return SN_EINVAL;
    pthread_mutex_lock(&rt->post_mu);
    if (rt->post_count >= SN_POST_MAX) {
        pthread_mutex_unlock(&rt->post_mu);
        sn_metric(rt, SN_METRIC_COUNTER, "post_rejected_total",
                  "Calls refused because the post queue was full.", NULL, 1);
        return SN_EAGAIN;
    }
    size_t tail = (rt->post_head + rt->post_count) % SN_POST_MAX;
    rt->post_ring[tail].fn = fn;
    rt->post_ring[tail].arg = arg;
    int wake = rt->post_count++ == 0;
    pthread_mutex_unlock(&rt->post_mu);
    /* A non-empty queue already has a wake-up pending, or a drain running that re-arms. */
    if (wake)
        event_active(rt->post_ev, EV_READ, 0);
    return 0;
}

static void *pool_worker(void *arg)
{
    sn_runtime_t *rt = arg;
    sn_pool_t *p = rt->pool;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        struct sn_offload_job *j = p->head;
        if (!j) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);

        j->work(j->arg);

        j->next = NULL;
        pthread_mutex_lock(&rt->post_mu);
        int wake = rt->done_head == NULL;
        if (rt->done_tail)
            rt->done_tail->next = j;
        else
            rt->done_head = j;
        rt->done_tail = j;
        pthread_mutex_unlock(&rt->post_mu);
        if (wake)
            event_active(rt->post_ev, EV_READ, 0);
    }
    return NULL;
}

int sn_pool_start(sn_runtime_t *rt, int threads)
{
    sn_pool_t *p = calloc(1, sizeof(*p));
    if (!p)
        return SN_ENOMEM;
    rt->pool = p;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)threads, sizeof(*p->threads));
    if (!p->threads)
        return SN_ENOMEM;
    sn_metric(rt, SN_METRIC_COUNTER, "offload_rejected_total",
              "Jobs refused because the offload queue was full.", NULL, 0);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_worker, rt) != 0)
            return SN_ENOMEM;
        p->nthreads++;
    }
    return 0;
}

void sn_pool_stop(sn_runtime_t *rt)
{
    sn_pool_t *p = rt->pool;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    /* Work queued before the stop has run; complete it so owners free their arguments. */
    if (rt->post_ring) {
        pthread_mutex_lock(&rt->post_mu);
        struct sn_offload_job *jobs = rt->done_head;
        rt->done_head = rt->done_tail = NULL;
        pthread_mutex_unlock(&rt->post_mu);
        while (jobs) {
            struct sn_offload_job *j = jobs;
            jobs = j->next;
            pool_complete(rt, j);
        }
    }
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
    rt->pool = NULL;
}

int sn_runtime_offload(sn_runtime_t *rt, void (*work)(void *), void (*done)(void *), void *arg)
{
    if (!rt || !work)
        return SN_EINVAL;
    sn_pool_t *p = rt->pool;
    if (!p)
        return SN_EAGAIN;
    struct sn_offload_job *j = calloc(1, sizeof(*j));
    if (!j)
        return SN_ENOMEM;
    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&p->mu);
    if (p->stop || p->inflight >= SN_OFFLOAD_MAX) {
        int stopping = p->stop;
        pthread_mutex_unlock(&p->mu);
        free(j);
        if (!stopping)
            sn_metric(rt, SN_METRIC_COUNTER, "offload_rejected_total",
                      "Jobs refused because the offload queue was full.", NULL, 1);
        return SN_EAGAIN;
    }
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->inflight++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}
