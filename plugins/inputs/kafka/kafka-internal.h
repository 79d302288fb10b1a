/**
 * @file kafka-internal.h
 * Shared state of the Kafka input (kafka.c) and its helpers: line checks (kafka_lines.c), the
 * dead-letter producer (kafka_dlq.c) and statistics (kafka_stats.c).
 *
 * Threads: everything here belongs to the instance's consumer thread, except what is marked
 * "loop" (touched on the host loop) or "mu" (under kc_t.mu).
 */
#ifndef SENTINEL_KAFKA_INTERNAL_H
#define SENTINEL_KAFKA_INTERNAL_H

#include <sentinel/plugin.h>

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/** One message of a partition, in offset order, until it can be committed. */
typedef struct kc_ent {
    int64_t offset;
    uint32_t pending; /* acknowledgements still awaited: the batch's, the DLQ's */
} kc_ent_t;

/** One assigned partition. Freed when revoked and no batch or DLQ record points at it. */
typedef struct kc_part {
    struct kc_part *next;
    char *topic;
    int32_t id;
    int revoked;  /* given up: no more offsets stored, freed once refs drops to 0 */
    int dropping; /* being revoked: unsent messages dropped, acknowledgements awaited */
    int blocked;  /* a message was lost to memory: no more offsets stored for this partition */
    unsigned refs;
    kc_ent_t *ring; /* messages handed out and not yet committable, oldest at head */
    size_t cap, head, n;
    uint64_t head_seq; /* sequence number of ring[head]; a message's seq never changes */
    uint64_t next_seq;
    int64_t stored;   /* offset last given to rd_kafka_offsets_store (next to read), or -1 */
    int64_t acked;    /* next offset past everything acknowledged (stored or to be), or -1 */
    int64_t lag;      /* from statistics, -1 unknown */
    int64_t last_off; /* last offset read, -1 none */
} kc_part_t;

/** The entry of message @p seq (which must still be in the ring). */
static inline kc_ent_t *kc_part_ent(kc_part_t *p, uint64_t seq)
{
    return &p->ring[(p->head + (size_t)(seq - p->head_seq)) % p->cap];
}

/** A message over batch_bytes, handed to the core in parts (each its own slice of lines): the
 * parts share it, and it is destroyed with the last of them. */
typedef struct kc_big {
    rd_kafka_message_t *m;
    unsigned refs;  /* parts still holding it */
    uint32_t parts; /* how many there are */
    int dlq_sent;   /* sent whole to the dead-letter topic once: the other parts do not */
} kc_big_t;

/** One message (or, with @c big, one part of a message) inside a batch. */
typedef struct kc_bmsg {
    rd_kafka_message_t *m; /* kept until acknowledged: the DLQ needs key, headers, timestamp */
    kc_big_t *big;         /* a part of a message over batch_bytes (m is then big->m) */
    uint32_t partno;       /* which part, from 1 (0 for a whole message) */
    kc_part_t *part;
    uint64_t seq;
    int64_t offset;
    size_t off, len; /* its lines in the batch buffer, newline included */
    uint32_t lines;  /* non-blank lines, as the core counts records */
} kc_bmsg_t;

typedef struct kc kc_t;

/** Messages from any partitions, concatenated as JSON lines, handed to the core at once. */
typedef struct kc_batch {
    struct kc_batch *next;     /* ready or in-flight list (consumer thread) */
    struct kc_batch *ack_next; /* acknowledgement queue (mu) */
    kc_t *kc;                  /* loop: NULL once the instance is gone */
    char *buf;
    size_t len, cap;
    kc_bmsg_t *msgs;
    size_t n, mcap;
    size_t lines;
    int checked;  /* refused lines were attributed once; a redelivery does not repeat it */
    int status;   /* acknowledgement status (mu) */
    int failures; /* acknowledgements with a lasting failure in a row (not backlog or I/O) */
    int64_t opened_ms;
} kc_batch_t;

/** A message on its way to the dead-letter topic. */
typedef struct kc_dlq {
    struct kc_dlq *next;
    kc_t *kc;
    kc_part_t *part;
    uint64_t seq;
    char *topic; /* source */
    int32_t partition;
    int64_t offset;
    int64_t timestamp;
    void *key;
    size_t key_len;
    void *value;
    size_t value_len;
    size_t orig_len;             /* > value_len when the value was cut to max_message_bytes */
    rd_kafka_headers_t *headers; /* the source message's headers, copied */
    char reason[256];
    int attempts;
    int64_t retry_at; /* mono ms; 0 = in librdkafka's hands */
} kc_dlq_t;

struct kc {
    const sn_host_t *host;
    /* settings */
    const char *brokers, *group_id, *dlq_topic, *offset_reset;
    const char *const *topics;
    const char *const *rdkafka; /* pass-through key=value fragments as the core split them */
    size_t max_message_bytes, batch_bytes;
    int64_t batch_messages, max_inflight, linger_ms, retry_ms, revoke_timeout_ms;
    int64_t drain_timeout_ms, stats_ms, commit_ms;
    size_t dlq_max_bytes;

    rd_kafka_t *rk;   /* consumer */
    rd_kafka_t *prod; /* dead-letter producer, or NULL */
    rd_kafka_queue_t *cq;
    pthread_t thread;
    int thread_started;

    /* consumer thread */
    kc_part_t *parts; /* assigned and revoked-but-referenced partitions */
    kc_batch_t *building;
    kc_batch_t *ready, *ready_tail;
    kc_batch_t *inflight;
    size_t ninflight, nready;
    int paused;
    int64_t backoff_until, backoff_ms;
    int64_t full_since; /* max_inflight batches in flight since then (mono ms), or 0 */
    int64_t batch_cap;  /* messages per batch now: halved when the core refuses, grows back */
    unsigned refusals;  /* consecutive refusals of a one-message batch */
    kc_dlq_t *dlq_wait; /* produce failed: retried at retry_at */
    size_t dlq_pending, dlq_bytes;
    int64_t drain_started;
    int64_t stats_prev_ms;
    int64_t stats_prev_msgs, stats_prev_bytes;

    /* mu: shared with the loop */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    kc_batch_t *acks, *acks_tail;
    char health[256];
    int healthy;
    int finished;     /* the consumer thread is done */
    int brokers_down; /* librdkafka reported all brokers down; cleared by the next message */
    atomic_int stopping, abort;

    /* loop */
    sn_done_fn stop_done;
    void *stop_arg;
};

/* kafka.c */
void kc_part_done(kc_t *kc, kc_part_t *p, uint64_t seq);
void kc_part_unref(kc_t *kc, kc_part_t *p);
int64_t kc_mono(const kc_t *kc);

/* kafka_lines.c */
/** Non-blank lines of @p buf as the core counts records. */
uint32_t kc_count_lines(const char *buf, size_t len);

/* kafka_dlq.c */
/** Secret-looking keys (password, secret) whose values are never logged. */
int kc_key_is_secret(const char *key);
/**
 * Send one message to the dead-letter topic, or, without one, log it and count it. The message's
 * partition entry @p seq gets one more pending acknowledgement for the delivery.
 */
void kc_dlq_send(kc_t *kc, kc_part_t *p, uint64_t seq, const rd_kafka_message_t *m,
                 const char *reason);
/** Serve delivery reports and due retries. Thread: consumer. */
void kc_dlq_poll(kc_t *kc);
/** Free records still waiting (shutdown). */
void kc_dlq_free_all(kc_t *kc);
void kc_dlq_report(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* kafka_stats.c */
int kc_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque);
/** Refresh the assignment gauges and the health line. Thread: consumer. */
/** The partition left this instance: its labelled lag gauge goes to 0. Thread: consumer. */
void kc_stats_forget(kc_t *kc, const kc_part_t *p);
void kc_stats_publish(kc_t *kc);

#endif
