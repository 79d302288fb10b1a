/**
 * @file runtime-internal.h
 * Private state of the runtime, shared by runtime.c (lifecycle, host table, timers, watches),
 * offload.c (worker pool and post queue), httpclient.c (libcurl multi on libevent) and
 * metrics.c (the registry). Nothing outside these files includes it.
 */
#ifndef SENTINEL_RUNTIME_INTERNAL_H
#define SENTINEL_RUNTIME_INTERNAL_H

#include "runtime.h"

#include <pthread.h>
#include <stdatomic.h>

struct event;

/** Jobs accepted by the offload pool and not yet completed on the loop. */
#define SN_OFFLOAD_MAX 4096
/** Entries waiting in the post queue. */
#define SN_POST_MAX 65536
/** HTTP requests in flight through the shared client. */
#define SN_HTTP_MAX_INFLIGHT 1024
/** Series the metrics registry holds. */
#define SN_METRICS_MAX_SERIES 10000

typedef struct sn_metrics sn_metrics_t;
typedef struct sn_pool sn_pool_t;
typedef struct sn_httpc sn_httpc_t;
typedef struct sn_rtimer sn_rtimer_t;

/** A runtime-owned instance name, preceded by its runtime so a host call can find it from
 * h->instance even when the caller copied the sn_host_t. */
typedef struct sn_host_name {
    struct sn_host_name *next;
    sn_runtime_t *rt;
    uint32_t magic;
    char name[];
} sn_host_name_t;

struct sn_runtime {
    struct event_base *base;
    sn_metrics_t *metrics;
    sn_pool_t *pool;
    sn_httpc_t *http;
    sn_engine_hooks_t hooks;
    void *eng;
    sn_host_name_t *names;
    /* Loader tables (instance == NULL) are recognised by address. */
    const sn_host_t **loader_hosts;
    size_t nloader_hosts;
    /* Timers and watches still registered, freed with the runtime. */
    sn_rtimer_t *timers;
    uint64_t next_timer_id;
    struct sn_watch *watches;
    /* Post queue: a bounded ring, drained on the loop by one event. */
    pthread_mutex_t post_mu;
    struct sn_post_entry *post_ring;
    size_t post_head, post_count;
    struct sn_offload_job *done_head, *done_tail; /**< offload completions */
    struct event *post_ev;
    int freeing;
    char request_id[80]; /**< the inbound request being handled on the loop, or "" */
};

/* offload.c */
int sn_pool_start(sn_runtime_t *rt, int threads);
/** Join the workers (queued work still runs) and run the pending completions. */
void sn_pool_stop(sn_runtime_t *rt);
int sn_postq_init(sn_runtime_t *rt);
/** Run everything still queued (bounded), then free the queue. */
void sn_postq_fini(sn_runtime_t *rt);

/* httpclient.c */
sn_httpc_t *sn_httpc_new(sn_runtime_t *rt);
/** Completes every request in flight with status 0 "shutting down", then frees. */
void sn_httpc_free(sn_httpc_t *c);

/* metrics.c */
sn_metrics_t *sn_metrics_new(void);
void sn_metrics_free(sn_metrics_t *m);

#endif /* SENTINEL_RUNTIME_INTERNAL_H */
