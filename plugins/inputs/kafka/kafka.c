/**
 * @file kafka.c
 * Input `kafka`: consumes topics in a consumer group with librdkafka and hands the messages to
 * the core as JSON lines (one or more records per message), at least once.
 *
 * Threads. librdkafka has its own threads; this instance adds one, the consumer thread, which
 * owns the consumer handle and everything about partitions, batches and offsets. It polls,
 * builds batches, and hands each to host->emit_lines_acked (safe from any thread), which parses
 * on this thread. The core acknowledges a batch on the loop once its records are queued for the
 * detectors and, with a telemetry store, written there; the loop callback only queues the batch
 * back to this thread (under a mutex) and wakes it. Nothing here blocks the loop.
 *
 * Offsets. Every message read gets an entry in its partition's ring, in offset order, with the
 * number of acknowledgements it still waits for (its batch's, and a dead letter's). The head of
 * the ring advances over entries that wait for nothing, and the offset after it is stored
 * (rd_kafka_offsets_store; enable.auto.offset.store is forced off) and committed by librdkafka's
 * auto commit. So an offset is committed only once every message up to it is where the core
 * keeps it: a crash re-reads, never skips.
 *
 * Backpressure. When the core says SN_EAGAIN the batch is kept, every assigned partition is
 * paused (rd_kafka_pause_partitions: nothing more is fetched, and what was prefetched is dropped
 * by librdkafka and fetched again on resume) and the same batch is offered again after `retry`,
 * doubling up to a second; once the backlog is taken the partitions resume. The same happens when
 * `max_inflight` batches await acknowledgement or dead letters pile up. A batch the core
 * acknowledges with a failure (its telemetry store fell behind) is delivered again, in halves.
 * A telemetry store that batches (ClickHouse) acknowledges a write only once its batch is
 * inserted, so the window must hold at least two of its batches: with a window of 4 batches
 * (the old default), 1 KB records and 10000-point store batches, each store batch waited for its
 * batch_interval and the input ran at about 4 000 records/s.
 * A single message the core fails to keep KC_LASTING_TRIES times in a row for a lasting reason
 * (the store refused the records as such, not a backlog, timeout or I/O error) goes to the
 * dead-letter topic with that reason instead of looping (kafka_unkept_total).
 *
 * Large messages. One over max_message_bytes (default 1m) is never handed to the core: it goes
 * to the dead-letter topic cut to max_message_bytes, with its real size in a header (without a
 * dead-letter topic it is logged with its position and counted in kafka_malformed_total). Up to
 * that size it is processed: one over batch_bytes is handed over in parts of whole lines of about
 * batch_bytes each (so one ingest call, and one telemetry write, stays about batch_bytes), and
 * its offset is committed once every part is acknowledged. To process 10 MB messages, set
 * max_message_bytes = 16m; the fetch sizes follow it.
 *
 * Rebalance. On revoke, batches not yet handed over drop the revoked partitions' messages (the
 * next owner reads them from the committed offset), the thread waits up to `revoke_timeout` for
 * the acknowledgements of what was handed over, stores and commits synchronously, then lets the
 * partitions go. On assign, consumption resumes from the committed offsets (auto_offset_reset
 * without one). Eager and cooperative protocols are both handled.
 *
 * Refused messages. A batch whose accepted count is short of its records is examined message by
 * message with the core's own rules (host->check_lines); each message with a refused line goes
 * whole to the dead-letter topic (kafka_dlq.c), as does a message over max_message_bytes, which
 * is never handed to the core. Its offset is committed only after the broker confirmed the dead
 * letter.
 */
#include "kafka-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KC_BACKOFF_MAX_MS 1000
#define KC_POLL_IDLE_MS 100
#define KC_RING_MAX (1u << 20) /* unacknowledged messages of one partition before pausing */
#define KC_FULL_WAIT_MS 1000   /* max_inflight reached: wait this long before pausing */
#define KC_LASTING_TRIES 3     /* a message the core fails to keep this often goes to the DLQ */

static const sn_param_t kc_params[] = {
    {"brokers", SN_T_STRING, NULL, SN_PARAM_REQUIRED,
     "bootstrap servers, host:port[,host:port...] (bootstrap.servers)"},
    {"topics", SN_T_LIST, NULL, SN_PARAM_REQUIRED, "topics to consume"},
    {"group_id", SN_T_STRING, "sentinel", 0,
     "consumer group (group.id): instances that share it split the partitions"},
    {"dead_letter_topic", SN_T_STRING, NULL, 0,
     "topic for messages the core refuses or over max_message_bytes, with the reason and the "
     "source topic/partition/offset in headers; without it they are logged and skipped"},
    {"max_message_bytes", SN_T_SIZE, "1m", 0,
     "largest message handed to the core (up to 256m); larger ones go to the dead-letter topic "
     "(cut to this size) or, without one, are logged and counted; also sets the fetch sizes"},
    {"batch_bytes", SN_T_SIZE, "1m", 0,
     "a batch handed to the core grows to about this size; a larger message is handed over in "
     "parts of whole lines of about this size"},
    {"batch_messages", SN_T_INT, "10000", 0, "most messages in one batch"},
    {"linger", SN_T_DURATION, "20ms", 0,
     "while batches are in flight, wait this long for a batch to fill before handing it over"},
    {"max_inflight", SN_T_INT, "32", 0,
     "batches handed over and not yet acknowledged before the partitions pause; must hold "
     "at least two of the telemetry store's batches (which acknowledge when inserted)"},
    {"retry", SN_T_DURATION, "50ms", 0,
     "backpressure: first delay before a refused batch is offered again (doubles up to 1 s)"},
    {"revoke_timeout", SN_T_DURATION, "10s", 0,
     "on rebalance, how long to wait for acknowledgements before giving partitions up"},
    {"drain_timeout", SN_T_DURATION, "5s", 0,
     "on stop, how long to wait for acknowledgements before closing"},
    {"statistics_interval", SN_T_DURATION, "5s", 0,
     "librdkafka statistics (lag, rates) every this often; 0 disables"},
    {"commit_interval", SN_T_DURATION, "1s", 0, "how often acknowledged offsets are committed"},
    {"auto_offset_reset", SN_T_STRING, "earliest", 0,
     "where a partition without a committed offset starts: earliest or latest"},
    {"rdkafka", SN_T_STRING, NULL, SN_PARAM_MULTI | SN_PARAM_SECRET,
     "librdkafka setting key=value, repeatable (security.protocol, sasl.*, ssl.*, ...); "
     "values of keys with password or secret in the name are never logged"},
    {NULL, 0, NULL, 0, NULL},
};

/* One pass-through setting, rebuilt from the core's comma split. */
typedef struct kc_kv {
    char *key, *val;
} kc_kv_t;

typedef struct kc_priv {
    kc_t kc;
    kc_kv_t *kv;
    size_t nkv;
    rd_kafka_conf_t *cconf, *pconf; /* until start() hands them to rd_kafka_new */
} kc_priv_t;

typedef struct kc_stop_note {
    sn_done_fn done;
    void *arg;
} kc_stop_note_t;

static void kc_on_ack(void *arg, int status, json_t *result);

int64_t kc_mono(const kc_t *kc)
{
    return kc->host->mono_ms(kc->host);
}

/* ---- partitions -------------------------------------------------------------------------- */

static kc_part_t *part_find(kc_t *kc, const char *topic, int32_t id)
{
    for (kc_part_t *p = kc->parts; p; p = p->next)
        if (!p->revoked && p->id == id && strcmp(p->topic, topic) == 0)
            return p;
    return NULL;
}

static kc_part_t *part_add(kc_t *kc, const char *topic, int32_t id)
{
    kc_part_t *p = part_find(kc, topic, id);
    if (p)
        return p;
    p = calloc(1, sizeof(*p));
    if (!p || !(p->topic = strdup(topic))) {
        free(p);
        return NULL;
    }
    p->id = id;
    p->stored = -1;
    p->acked = -1;
    p->lag = -1;
    p->last_off = -1;
    /* Sorted by topic and partition, for readable health lines. */
    kc_part_t **pp = &kc->parts;
    while (*pp) {
        int c = strcmp((*pp)->topic, topic);
        if (c > 0 || (c == 0 && (*pp)->id > id))
            break;
        pp = &(*pp)->next;
    }
    p->next = *pp;
    *pp = p;
    return p;
}

static void part_free(kc_part_t *p)
{
    free(p->topic);
    free(p->ring);
    free(p);
}

void kc_part_unref(kc_t *kc, kc_part_t *p)
{
    if (p->refs)
        p->refs--;
    if (!p->revoked || p->refs)
        return;
    for (kc_part_t **pp = &kc->parts; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            part_free(p);
            return;
        }
}

/* Append the entry of a message just read; returns its seq or UINT64_MAX without memory. */
static uint64_t part_push(kc_part_t *p, int64_t offset)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        kc_ent_t *r = malloc(cap * sizeof(*r));
        if (!r)
            return UINT64_MAX;
        for (size_t i = 0; i < p->n; i++)
            r[i] = p->ring[(p->head + i) % p->cap];
        free(p->ring);
        p->ring = r;
        p->cap = cap;
        p->head = 0;
    }
    p->ring[(p->head + p->n) % p->cap] = (kc_ent_t){offset, 1};
    p->n++;
    p->last_off = offset;
    return p->next_seq++;
}

void kc_part_done(kc_t *kc, kc_part_t *p, uint64_t seq)
{
    (void)kc;
    if (seq < p->head_seq || seq >= p->head_seq + p->n)
        return;
    kc_ent_t *e = kc_part_ent(p, seq);
    if (e->pending)
        e->pending--;
    while (p->n && p->ring[p->head].pending == 0) {
        if (!p->revoked && !p->blocked)
            p->stored = p->acked = p->ring[p->head].offset + 1;
        p->head = (p->head + 1) % p->cap;
        p->n--;
        p->head_seq++;
    }
}

/* Hand every advanced partition's offset to librdkafka, which commits it (auto commit). */
static void store_offsets(kc_t *kc)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    for (kc_part_t *p = kc->parts; p; p = p->next) {
        if (p->revoked || p->stored < 0)
            continue;
        if (!l)
            l = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(l, p->topic, p->id)->offset = p->stored;
    }
    if (!l)
        return;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(kc->rk, l);
    if (err && err != RD_KAFKA_RESP_ERR__STATE)
        kc->host->log(kc->host, SN_LOG_WARN, "storing offsets: %s", rd_kafka_err2str(err));
    for (int i = 0; i < l->cnt; i++) {
        kc_part_t *p = part_find(kc, l->elems[i].topic, l->elems[i].partition);
        if (p && !l->elems[i].err && p->stored == l->elems[i].offset)
            p->stored = -1; /* handed over; -1 until the ring advances again */
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* ---- batches ----------------------------------------------------------------------------- */

/* Let go of a batch entry's message: a part releases its share of the big message. */
static void bmsg_release(kc_bmsg_t *bm)
{
    if (bm->big) {
        if (--bm->big->refs == 0) {
            rd_kafka_message_destroy(bm->big->m);
            free(bm->big);
        }
    } else if (bm->m) {
        rd_kafka_message_destroy(bm->m);
    }
    bm->m = NULL;
    bm->big = NULL;
}

/* Free a batch. With @p kc, messages release their partitions (consumer thread); without, the
 * partitions are left alone (the instance is gone or going). */
static void batch_free(kc_t *kc, kc_batch_t *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        bmsg_release(&b->msgs[i]);
        if (kc)
            kc_part_unref(kc, b->msgs[i].part);
    }
    free(b->msgs);
    free(b->buf);
    free(b);
}

static void batch_release_messages(kc_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        bmsg_release(&b->msgs[i]);
}

static kc_batch_t *batch_new(kc_t *kc)
{
    kc_batch_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->kc = kc;
    b->opened_ms = kc_mono(kc);
    return b;
}

/* Append message @p m (or, with @p big, its part @p partno: the @p len bytes at @p v) to @p b. */
static int batch_append(kc_t *kc, kc_batch_t *b, rd_kafka_message_t *m, kc_big_t *big,
                        uint32_t partno, const char *v, size_t len, kc_part_t *p, uint64_t seq,
                        uint32_t lines)
{
    size_t need = len + 1;
    if (b->len + need > b->cap) {
        size_t cap = b->cap ? b->cap : (kc->batch_bytes < 65536 ? 65536 : kc->batch_bytes + 4096);
        while (cap < b->len + need)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb)
            return SN_ENOMEM;
        b->buf = nb;
        b->cap = cap;
    }
    if (b->n == b->mcap) {
        size_t cap = b->mcap ? b->mcap * 2 : 256;
        kc_bmsg_t *nm = realloc(b->msgs, cap * sizeof(*nm));
        if (!nm)
            return SN_ENOMEM;
        b->msgs = nm;
        b->mcap = cap;
    }
    kc_bmsg_t *bm = &b->msgs[b->n++];
    bm->m = m;
    bm->big = big;
    bm->partno = partno;
    if (big)
        big->refs++;
    bm->part = p;
    bm->seq = seq;
    bm->offset = m->offset;
    bm->off = b->len;
    memcpy(b->buf + b->len, v, len);
    b->len += len;
    if (len && v[len - 1] != '\n')
        b->buf[b->len++] = '\n';
    bm->len = b->len - bm->off;
    bm->lines = lines;
    b->lines += lines;
    p->refs++;
    return 0;
}

/* Drop the messages of revoked partitions from a batch not (or no longer) in the core's hands,
 * compacting its buffer. Their offsets are never committed here: the next owner reads them. */
static void batch_filter_revoked(kc_t *kc, kc_batch_t *b)
{
    size_t w = 0, out = 0;
    b->lines = 0;
    for (size_t i = 0; i < b->n; i++) {
        kc_bmsg_t bm = b->msgs[i];
        if (bm.part->revoked || bm.part->dropping) {
            bmsg_release(&bm);
            kc_part_unref(kc, bm.part);
            continue;
        }
        if (out != bm.off)
            memmove(b->buf + out, b->buf + bm.off, bm.len);
        bm.off = out;
        out += bm.len;
        b->lines += bm.lines;
        b->msgs[w++] = bm;
    }
    b->n = w;
    b->len = out;
}

static void ready_push_back(kc_t *kc, kc_batch_t *b)
{
    b->next = NULL;
    if (kc->ready_tail)
        kc->ready_tail->next = b;
    else
        kc->ready = b;
    kc->ready_tail = b;
    kc->nready++;
}

static void ready_push_front(kc_t *kc, kc_batch_t *b)
{
    b->next = kc->ready;
    kc->ready = b;
    if (!kc->ready_tail)
        kc->ready_tail = b;
    kc->nready++;
}

static kc_batch_t *ready_pop(kc_t *kc)
{
    kc_batch_t *b = kc->ready;
    if (b) {
        kc->ready = b->next;
        if (!kc->ready)
            kc->ready_tail = NULL;
        b->next = NULL;
        kc->nready--;
    }
    return b;
}

/* Move the messages from @p keep on into a new batch placed right after @p b in the ready list:
 * the core refuses a batch it has no room for as a whole, so a refused one is offered in halves. */
static int batch_split(kc_t *kc, kc_batch_t *b, size_t keep)
{
    if (keep == 0 || keep >= b->n)
        return 0;
    kc_batch_t *t = batch_new(kc);
    size_t from = b->msgs[keep].off, tail = b->len - from, nt = b->n - keep;
    if (!t || !(t->buf = malloc(tail)) || !(t->msgs = malloc(nt * sizeof(*t->msgs)))) {
        batch_free(kc, t);
        return SN_ENOMEM;
    }
    memcpy(t->buf, b->buf + from, tail);
    t->cap = t->len = tail;
    t->mcap = nt;
    for (size_t i = keep; i < b->n; i++) {
        kc_bmsg_t bm = b->msgs[i];
        bm.off -= from;
        t->lines += bm.lines;
        t->msgs[t->n++] = bm;
    }
    t->checked = b->checked;
    t->opened_ms = b->opened_ms;
    b->failures = 0; /* counted again for each half */
    b->n = keep;
    b->len = from;
    b->lines -= t->lines;
    t->next = b->next;
    b->next = t;
    if (kc->ready_tail == b)
        kc->ready_tail = t;
    kc->nready++;
    return 0;
}

/* The core did not take or keep batch @p b (at the head of the ready list): offer it again
 * later, in halves, and build smaller batches for a while. */
static void refused(kc_t *kc, kc_batch_t *b)
{
    int64_t now = kc_mono(kc);
    kc->backoff_ms = kc->backoff_ms ? kc->backoff_ms * 2 : kc->retry_ms;
    if (kc->backoff_ms > KC_BACKOFF_MAX_MS)
        kc->backoff_ms = KC_BACKOFF_MAX_MS;
    kc->backoff_until = now + kc->backoff_ms;
    if (b->n > 1) {
        size_t keep = b->n / 2;
        if (batch_split(kc, b, keep) == 0 && (int64_t)keep < kc->batch_cap)
            kc->batch_cap = (int64_t)keep;
        kc->refusals = 0;
    } else if (++kc->refusals % 20 == 0) {
        kc->host->log(kc->host, SN_LOG_ERROR,
                      "a single message of %zu record(s) (%s[%" PRId32 "]@%" PRId64
                      ") keeps being refused: is [sentinel] queue_points smaller than that?",
                      b->lines, b->msgs[0].part->topic, b->msgs[0].part->id, b->msgs[0].offset);
    }
}

static void close_building(kc_t *kc)
{
    kc_batch_t *b = kc->building;
    if (!b)
        return;
    kc->building = NULL;
    if (b->n)
        ready_push_back(kc, b);
    else
        batch_free(kc, b);
}

/* Refused lines: find the messages that hold them, with the core's rules, and send each of those
 * whole to the dead-letter topic. */
static void batch_attribute(kc_t *kc, kc_batch_t *b, size_t accepted)
{
    const sn_host_t *h = kc->host;
    size_t refused = b->lines - accepted, found = 0;
    for (size_t i = 0; i < b->n; i++) {
        kc_bmsg_t *bm = &b->msgs[i];
        char why[200];
        uint32_t bad = h->check_lines(h, b->buf + bm->off, bm->len, why, sizeof(why));
        if (!bad)
            continue;
        found += bad;
        if (bm->big && bm->big->dlq_sent)
            continue; /* another part already sent the whole message */
        char reason[256];
        if (bm->big) {
            bm->big->dlq_sent = 1;
            snprintf(reason, sizeof(reason), "%u of %u line(s) refused in part %u of %u; %.180s",
                     bad, bm->lines, bm->partno, bm->big->parts, why);
        } else {
            snprintf(reason, sizeof(reason), "%u of %u line(s) refused; %.200s", bad, bm->lines,
                     why);
        }
        kc_dlq_send(kc, bm->part, bm->seq, bm->m, reason);
    }
    if (found != refused) {
        h->metric(h, SN_METRIC_COUNTER, "kafka_refused_unattributed_total",
                  "Refused lines no message could be blamed for (see the core's log)",
                  (double)(refused > found ? refused - found : found - refused));
        h->log(h, SN_LOG_WARN,
               "batch from %s[%" PRId32 "]@%" PRId64 ": the core refused %zu line(s), %zu matched "
               "to messages; the core's log names the rest",
               b->msgs[0].part->topic, b->msgs[0].part->id, b->msgs[0].offset, refused, found);
    }
}

static void dispatch(kc_t *kc)
{
    const sn_host_t *h = kc->host;
    while (kc->ready && kc->ninflight < (size_t)kc->max_inflight) {
        int64_t now = kc_mono(kc);
        if (now < kc->backoff_until)
            return;
        kc_batch_t *b = kc->ready;
        if (b->n == 0) {
            batch_free(kc, ready_pop(kc));
            continue;
        }
        char origin[200];
        snprintf(origin, sizeof(origin), "kafka:%.120s/%" PRId32 "@%" PRId64 "+%zu",
                 b->msgs[0].part->topic, b->msgs[0].part->id, b->msgs[0].offset, b->n);
        int rc = h->emit_lines_acked(h, b->buf, b->len, origin, kc_on_ack, b);
        if (rc < 0) {
            refused(kc, b);
            h->metric(h, SN_METRIC_COUNTER, "kafka_backpressure_total",
                      "Batches the core could not take yet (offered again later)", 1);
            if (rc != SN_EAGAIN)
                h->log(h, SN_LOG_WARN, "the core refused a batch (%d): offering it again", rc);
            return;
        }
        ready_pop(kc);
        b->next = kc->inflight;
        kc->inflight = b;
        kc->ninflight++;
        kc->backoff_ms = 0;
        kc->refusals = 0;
        h->metric(h, SN_METRIC_COUNTER, "kafka_records_total", "Records the core accepted",
                  (double)rc);
        if ((size_t)rc < b->lines && !b->checked)
            batch_attribute(kc, b, (size_t)rc);
        if (!b->checked)
            h->metric(h, SN_METRIC_COUNTER, "kafka_messages_total", "Messages handed to the core",
                      (double)b->n);
        b->checked = 1;
    }
}

/* ---- acknowledgements -------------------------------------------------------------------- */

/* Thread: loop. Queue the batch back to the consumer thread; a gone instance frees it. */
static void kc_on_ack(void *arg, int status, json_t *result)
{
    (void)result;
    kc_batch_t *b = arg;
    kc_t *kc = b->kc;
    if (!kc) {
        batch_free(NULL, b);
        return;
    }
    pthread_mutex_lock(&kc->mu);
    b->status = status;
    b->ack_next = NULL;
    if (kc->acks_tail)
        kc->acks_tail->ack_next = b;
    else
        kc->acks = b;
    kc->acks_tail = b;
    pthread_cond_broadcast(&kc->cv);
    if (kc->cq)
        rd_kafka_queue_yield(kc->cq);
    pthread_mutex_unlock(&kc->mu);
}

/* A failure that delivering the same records again will not cure: the telemetry store refused
 * them as such (too many for one write, bad data). Backlog, timeouts and I/O errors pass. */
static int lasting_failure(int status)
{
    return status != SN_EAGAIN && status != SN_ETIMEDOUT && status != SN_EIO &&
           status != SN_EPENDING;
}

static const char *status_name(int status)
{
    switch (status) {
    case SN_EINVAL:
        return "refused as invalid";
    case SN_ENOMEM:
        return "out of memory or over a bound";
    case SN_ENOTSUP:
        return "not supported";
    case SN_EDENIED:
        return "denied";
    default:
        return "failed";
    }
}

/* A one-message batch the core failed to keep KC_LASTING_TRIES times in a row for a lasting
 * reason: delivering it again would loop forever (and feed the detectors the same records each
 * time), so it goes to the dead-letter topic with the reason (or is logged and counted without
 * one), and the partition moves on. A batch of several messages is split first (refused()), so
 * only the message at fault ends here. */
static void give_up(kc_t *kc, kc_batch_t *b)
{
    const sn_host_t *h = kc->host;
    batch_filter_revoked(kc, b); /* not ours any more: the next owner reads it */
    if (b->n == 0) {
        batch_free(kc, b);
        return;
    }
    kc_bmsg_t *bm = &b->msgs[0];
    char part[48] = "", reason[256];
    if (bm->big)
        snprintf(part, sizeof(part), " (part %u of %u)", bm->partno, bm->big->parts);
    snprintf(reason, sizeof(reason),
             "the core could not keep its %u record(s)%s: telemetry store %s (%d), %d times",
             bm->lines, part, status_name(b->status), b->status, b->failures);
    h->metric(h, SN_METRIC_COUNTER, "kafka_unkept_total",
              "Messages the core failed to keep for a lasting reason, given up on (dead letter)",
              1);
    h->log(h, SN_LOG_ERROR, "%s[%" PRId32 "]@%" PRId64 ": %s", bm->part->topic, bm->part->id,
           bm->offset, reason);
    if (!bm->big || !bm->big->dlq_sent) {
        if (bm->big)
            bm->big->dlq_sent = 1;
        kc_dlq_send(kc, bm->part, bm->seq, bm->m, reason);
    }
    kc_part_done(kc, bm->part, bm->seq);
    batch_free(kc, b);
}

static void take_acks(kc_t *kc)
{
    pthread_mutex_lock(&kc->mu);
    kc_batch_t *list = kc->acks;
    kc->acks = kc->acks_tail = NULL;
    pthread_mutex_unlock(&kc->mu);
    if (!list)
        return;
    const sn_host_t *h = kc->host;
    while (list) {
        kc_batch_t *b = list;
        list = b->ack_next;
        for (kc_batch_t **pp = &kc->inflight; *pp; pp = &(*pp)->next)
            if (*pp == b) {
                *pp = b->next;
                kc->ninflight--;
                break;
            }
        b->next = NULL;
        if (b->status == 0) {
            for (size_t i = 0; i < b->n; i++)
                kc_part_done(kc, b->msgs[i].part, b->msgs[i].seq);
            batch_free(kc, b);
            if (kc->batch_cap < kc->batch_messages)
                kc->batch_cap += kc->batch_cap / 8 + 1;
            if (kc->batch_cap > kc->batch_messages)
                kc->batch_cap = kc->batch_messages;
            continue;
        }
        if (!lasting_failure(b->status))
            b->failures = 0;
        else if (++b->failures >= KC_LASTING_TRIES && b->n == 1) {
            give_up(kc, b);
            continue;
        }
        h->metric(h, SN_METRIC_COUNTER, "kafka_redeliveries_total",
                  "Batches the core could not keep and that were delivered again", 1);
        h->log(h, SN_LOG_WARN,
               "a batch of %zu message(s) was not kept by the core (%d): "
               "delivering it again",
               b->n, b->status);
        batch_filter_revoked(kc, b);
        ready_push_front(kc, b);
        refused(kc, b);
    }
    store_offsets(kc);
}

static void wait_cv(kc_t *kc, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    ts.tv_sec += (time_t)(ms / 1000) + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&kc->mu);
    if (!kc->acks && !atomic_load(&kc->abort))
        pthread_cond_timedwait(&kc->cv, &kc->mu, &ts);
    pthread_mutex_unlock(&kc->mu);
}

/* ---- pause / resume ---------------------------------------------------------------------- */

static int ring_full(const kc_t *kc)
{
    for (const kc_part_t *p = kc->parts; p; p = p->next)
        if (!p->revoked && p->n >= KC_RING_MAX)
            return 1;
    return 0;
}

static void set_paused(kc_t *kc, int pause)
{
    const sn_host_t *h = kc->host;
    rd_kafka_topic_partition_list_t *l = NULL;
    if (rd_kafka_assignment(kc->rk, &l) != RD_KAFKA_RESP_ERR_NO_ERROR || !l)
        return;
    rd_kafka_resp_err_t err =
        pause ? rd_kafka_pause_partitions(kc->rk, l) : rd_kafka_resume_partitions(kc->rk, l);
    int n = l->cnt;
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        h->log(h, SN_LOG_WARN, "%s partitions: %s", pause ? "pausing" : "resuming",
               rd_kafka_err2str(err));
        return;
    }
    kc->paused = pause;
    h->metric(h, SN_METRIC_GAUGE, "kafka_paused",
              "1 while the partitions are paused (backpressure or drain)", pause);
    if (pause)
        h->metric(h, SN_METRIC_COUNTER, "kafka_pauses_total", "Times the partitions were paused",
                  1);
    h->log(h, SN_LOG_INFO, "%s %d partition(s)%s", pause ? "pausing" : "resuming", n,
           pause && !atomic_load(&kc->stopping) ? ": the pipeline is not keeping up" : "");
    kc_stats_publish(kc);
}

/* Only max_inflight in the way: acknowledgements usually come within milliseconds, so the
 * thread waits for one (without polling) for up to KC_FULL_WAIT_MS before pausing, which would
 * make librdkafka drop and fetch again what it has prefetched. */
static int wait_for_room(kc_t *kc)
{
    int64_t now = kc_mono(kc);
    if (!kc->ready || kc->ninflight < (size_t)kc->max_inflight || now < kc->backoff_until ||
        kc->paused || atomic_load(&kc->stopping)) {
        kc->full_since = 0;
        return 0;
    }
    if (!kc->full_since)
        kc->full_since = now;
    if (now - kc->full_since >= KC_FULL_WAIT_MS)
        return 0;
    wait_cv(kc, 10);
    return 1;
}

static void update_pause(kc_t *kc)
{
    int64_t now = kc_mono(kc);
    int full = kc->ninflight >= (size_t)kc->max_inflight &&
               (!kc->full_since || now - kc->full_since >= KC_FULL_WAIT_MS);
    int stuck = kc->nready && (now < kc->backoff_until || full);
    int want = atomic_load(&kc->stopping) || kc->nready >= 2 || stuck ||
               kc->dlq_bytes > kc->dlq_max_bytes || ring_full(kc);
    if (want && !kc->paused)
        set_paused(kc, 1);
    else if (!want && kc->paused && kc->nready == 0)
        set_paused(kc, 0);
}

/* ---- messages ---------------------------------------------------------------------------- */

/* A message read but not kept: its entry stays pending, so its partition commits no further and
 * a restart reads it again. Say so loudly. */
static void lost_message(kc_t *kc, const kc_part_t *p, int64_t offset)
{
    const sn_host_t *h = kc->host;
    h->log(h, SN_LOG_ERROR,
           "out of memory: %s[%" PRId32 "]@%" PRId64 " not kept; the partition commits no "
           "further until a restart reads it again",
           p->topic, p->id, offset);
    pthread_mutex_lock(&kc->mu);
    kc->healthy = 0;
    snprintf(kc->health, sizeof(kc->health), "out of memory: %.40s[%" PRId32 "] stuck at %" PRId64,
             p->topic, p->id, offset);
    pthread_mutex_unlock(&kc->mu);
}

/* Length of the next part of a big message at @p v (@p left bytes): whole lines, at most
 * batch_bytes, or one line when that line alone is longer. */
static size_t part_len(const kc_t *kc, const char *v, size_t left)
{
    if (left <= kc->batch_bytes)
        return left;
    for (size_t i = kc->batch_bytes; i > 0; i--)
        if (v[i - 1] == '\n')
            return i;
    const char *nl = memchr(v + kc->batch_bytes, '\n', left - kc->batch_bytes);
    return nl ? (size_t)(nl - v) + 1 : left;
}

/* A message over batch_bytes goes to the core in parts of whole lines (part_len), so one ingest
 * call carries about batch_bytes whatever max_message_bytes allows, and a telemetry store's
 * bound on one write (sqlite: 100000 points) is not reached by one message. The parts share the
 * message (kc_big_t); its entry waits for every part's acknowledgement before it commits. */
static void append_parts(kc_t *kc, rd_kafka_message_t *m, kc_part_t *p, uint64_t seq)
{
    const char *v = m->payload;
    uint32_t nparts = 0;
    for (size_t pos = 0; pos < m->len; pos += part_len(kc, v + pos, m->len - pos))
        nparts++;
    kc_big_t *big = calloc(1, sizeof(*big));
    if (!big) {
        lost_message(kc, p, m->offset);
        rd_kafka_message_destroy(m);
        return;
    }
    big->m = m;
    big->parts = nparts;
    kc_part_ent(p, seq)->pending += nparts - 1; /* part_push counted one */
    uint32_t no = 0;
    for (size_t pos = 0, len; pos < m->len; pos += len) {
        len = part_len(kc, v + pos, m->len - pos);
        no++;
        uint32_t lines = kc_count_lines(v + pos, len);
        if (lines == 0) {
            kc_part_done(kc, p, seq); /* blank lines only: nothing to hand over */
            continue;
        }
        if ((!kc->building && !(kc->building = batch_new(kc))) ||
            batch_append(kc, kc->building, m, big, no, v + pos, len, p, seq, lines) != 0) {
            lost_message(kc, p, m->offset); /* the parts left keep the entry pending */
            break;
        }
        if (kc->building->len >= kc->batch_bytes || kc->building->n >= (size_t)kc->batch_cap)
            close_building(kc);
    }
    if (big->refs == 0) {
        rd_kafka_message_destroy(m);
        free(big);
    }
}

static void on_message(kc_t *kc, rd_kafka_message_t *m)
{
    const sn_host_t *h = kc->host;
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            h->log(h, SN_LOG_WARN, "consumer: %s%s%s", rd_kafka_message_errstr(m),
                   m->rkt ? " on " : "", m->rkt ? rd_kafka_topic_name(m->rkt) : "");
            h->metric(h, SN_METRIC_COUNTER, "kafka_consumer_errors_total",
                      "Errors reported by the consumer", 1);
        }
        rd_kafka_message_destroy(m);
        return;
    }
    if (kc->brokers_down) { /* written on this thread only; read under mu by health() */
        pthread_mutex_lock(&kc->mu);
        kc->brokers_down = 0;
        pthread_mutex_unlock(&kc->mu);
    }
    kc_part_t *p = atomic_load(&kc->stopping)
                       ? NULL
                       : part_find(kc, rd_kafka_topic_name(m->rkt), m->partition);
    if (!p) {
        /* Draining, or a partition no longer ours: not committed, read again later. */
        rd_kafka_message_destroy(m);
        return;
    }
    uint64_t seq = part_push(p, m->offset);
    if (seq == UINT64_MAX) {
        p->blocked = 1; /* no entry to hold the commit back: hold the whole partition */
        lost_message(kc, p, m->offset);
        rd_kafka_message_destroy(m);
        return;
    }
    if (m->len > kc->max_message_bytes) {
        char reason[128];
        snprintf(reason, sizeof(reason), "message of %zu bytes is over max_message_bytes (%zu)",
                 m->len, kc->max_message_bytes);
        kc_dlq_send(kc, p, seq, m, reason);
        kc_part_done(kc, p, seq);
        rd_kafka_message_destroy(m);
        return;
    }
    uint32_t lines = m->len ? kc_count_lines(m->payload, m->len) : 0;
    if (lines == 0) {
        kc_part_done(kc, p, seq); /* nothing to hand over: a tombstone or blank lines */
        rd_kafka_message_destroy(m);
        return;
    }
    if (m->len > kc->batch_bytes && lines > 1) {
        append_parts(kc, m, p, seq);
        return;
    }
    if ((!kc->building && !(kc->building = batch_new(kc))) ||
        batch_append(kc, kc->building, m, NULL, 0, m->payload, m->len, p, seq, lines) != 0) {
        lost_message(kc, p, m->offset);
        rd_kafka_message_destroy(m);
        return;
    }
    if (kc->building->len >= kc->batch_bytes || kc->building->n >= (size_t)kc->batch_cap)
        close_building(kc);
}

/* ---- commits ----------------------------------------------------------------------------- */

static void commit_failed(kc_t *kc)
{
    kc->host->metric(kc->host, SN_METRIC_COUNTER, "kafka_commit_failures_total",
                     "Offset commits the group coordinator refused (messages are read again)", 1);
}

/* Results of the auto commits (served on the consumer thread). */
static void kc_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    (void)offsets;
    kc_t *kc = opaque;
    if (!err || err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    commit_failed(kc);
    kc->host->log(kc->host, SN_LOG_DEBUG, "auto commit: %s", rd_kafka_err2str(err));
}

/* ---- rebalance --------------------------------------------------------------------------- */

static void log_partitions(kc_t *kc, const char *what, const rd_kafka_topic_partition_list_t *l)
{
    char buf[512];
    size_t used = 0;
    buf[0] = '\0';
    if (l->cnt == 0)
        return; /* an incremental round that changed nothing here */
    for (int i = 0; i < l->cnt && used + 64 < sizeof(buf); i++) {
        int same = i > 0 && strcmp(l->elems[i - 1].topic, l->elems[i].topic) == 0;
        int w = snprintf(buf + used, sizeof(buf) - used, "%s%.48s%s%" PRId32,
                         same ? "," : (i ? "] " : ""), same ? "" : l->elems[i].topic,
                         same ? "" : "[", l->elems[i].partition);
        if (w > 0)
            used += (size_t)w;
    }
    kc->host->log(kc->host, SN_LOG_INFO, "%s %d partition(s): %s%s", what, l->cnt, buf,
                  l->cnt ? "]" : "");
}

/* Busy while a batch in the core's hands or a dead letter still points at a revoked partition
 * (the revoke itself holds one reference). */
static int revoking_busy(kc_t *kc)
{
    for (kc_part_t *p = kc->parts; p; p = p->next)
        if (p->dropping && p->refs > 1)
            return 1;
    return 0;
}

static void on_revoke(kc_t *kc, rd_kafka_topic_partition_list_t *l, int lost)
{
    const sn_host_t *h = kc->host;
    log_partitions(kc, lost ? "lost" : "revoking", l);
    for (int i = 0; i < l->cnt; i++) {
        kc_part_t *p = part_find(kc, l->elems[i].topic, l->elems[i].partition);
        if (p) {
            p->dropping = 1;
            p->refs++; /* kept until the end of the revoke */
        }
    }
    /* Not handed over yet: drop them (not committed; the next owner reads them). */
    close_building(kc);
    for (kc_batch_t *b = kc->ready; b; b = b->next)
        batch_filter_revoked(kc, b);
    int64_t deadline = kc_mono(kc) + kc->revoke_timeout_ms;
    if (atomic_load(&kc->stopping) && kc->drain_started &&
        kc->drain_started + kc->drain_timeout_ms < deadline)
        deadline = kc->drain_started + kc->drain_timeout_ms;
    size_t awaited = 0;
    for (kc_part_t *p = kc->parts; p; p = p->next)
        if (p->dropping)
            awaited += p->n;
    h->metric(h, SN_METRIC_GAUGE, "kafka_revoke_waiting",
              "Messages of revoked partitions whose acknowledgement the revoke waits for",
              lost ? 0 : (double)awaited);
    while (!lost && revoking_busy(kc) && !atomic_load(&kc->abort) && kc_mono(kc) < deadline) {
        take_acks(kc);
        kc_dlq_poll(kc);
        store_offsets(kc);
        if (!revoking_busy(kc))
            break;
        dispatch(kc); /* a redelivered batch must reach the core to be acknowledged */
        wait_cv(kc, 10);
    }
    take_acks(kc);
    store_offsets(kc);
    size_t left = 0;
    for (kc_part_t *p = kc->parts; p; p = p->next)
        if (p->dropping)
            left += p->n;
    if (!lost) {
        rd_kafka_resp_err_t err = rd_kafka_commit(kc->rk, NULL, 0);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
            commit_failed(kc);
            h->log(h, SN_LOG_WARN,
                   "commit on revoke: %s (the next owner reads the acknowledged messages again)",
                   rd_kafka_err2str(err));
        }
    }
    h->metric(h, SN_METRIC_GAUGE, "kafka_revoke_waiting",
              "Messages of revoked partitions whose acknowledgement the revoke waits for", 0);
    if (left)
        h->log(h, SN_LOG_WARN,
               "%zu message(s) of the revoked partitions were not acknowledged in time: their "
               "next owner reads them again",
               left);
    for (kc_part_t *p = kc->parts, *next; p; p = next) {
        next = p->next;
        if (p->dropping) {
            kc_stats_forget(kc, p);
            p->dropping = 0;
            p->revoked = 1;
            kc_part_unref(kc, p); /* frees it unless a batch or dead letter still points here */
        }
    }
}

static void kc_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *l, void *opaque)
{
    kc_t *kc = opaque;
    const sn_host_t *h = kc->host;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        pthread_mutex_lock(&kc->mu);
        kc->brokers_down = 0; /* the coordinator answered */
        pthread_mutex_unlock(&kc->mu);
        for (int i = 0; i < l->cnt; i++)
            if (!part_add(kc, l->elems[i].topic, l->elems[i].partition))
                h->log(h, SN_LOG_ERROR, "out of memory for a partition");
        rd_kafka_error_t *e = NULL;
        rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (coop)
            e = rd_kafka_incremental_assign(rk, l);
        else
            aerr = rd_kafka_assign(rk, l);
        if (e) {
            h->log(h, SN_LOG_ERROR, "assign: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        } else if (aerr) {
            h->log(h, SN_LOG_ERROR, "assign: %s", rd_kafka_err2str(aerr));
        }
        if (kc->paused)
            rd_kafka_pause_partitions(rk, l);
        log_partitions(kc, "assigned", l);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(kc, l, rd_kafka_assignment_lost(rk));
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, l);
            if (e)
                rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, NULL);
        }
    } else {
        h->log(h, SN_LOG_ERROR, "rebalance: %s", rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
    }
    h->metric(h, SN_METRIC_COUNTER, "kafka_rebalances_total", "Rebalances of the group", 1);
    kc_stats_publish(kc);
}

/* ---- librdkafka callbacks ---------------------------------------------------------------- */

static void kc_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kc_t *kc = opaque;
    const sn_host_t *h = kc->host;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[256];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        h->log(h, SN_LOG_ERROR, "fatal: %s", why);
        pthread_mutex_lock(&kc->mu);
        kc->healthy = 0;
        snprintf(kc->health, sizeof(kc->health), "fatal: %.200s", why);
        pthread_mutex_unlock(&kc->mu);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        pthread_mutex_lock(&kc->mu);
        kc->brokers_down = 1;
        pthread_mutex_unlock(&kc->mu);
    }
    h->log(h, err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ? SN_LOG_ERROR : SN_LOG_WARN, "%s: %s",
           rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void kc_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    kc_t *kc = rd_kafka_opaque(rk);
    if (!kc)
        return;
    sn_log_level_t lvl = level <= 3   ? SN_LOG_ERROR
                         : level == 4 ? SN_LOG_WARN
                         : level <= 6 ? SN_LOG_INFO
                                      : SN_LOG_DEBUG;
    /* The pass-through settings go to both handles; each ignores the other's properties. */
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, " property and will be ignored by this "))
        lvl = SN_LOG_DEBUG;
    kc->host->log(kc->host, lvl, "rdkafka %s: %s", fac, buf);
}

/* ---- the consumer thread ----------------------------------------------------------------- */

static int drained(kc_t *kc)
{
    if (kc_mono(kc) - kc->drain_started >= kc->drain_timeout_ms)
        return 1;
    return !kc->building && !kc->ready && !kc->inflight && kc->dlq_pending == 0;
}

static void shutdown_consumer(kc_t *kc)
{
    const sn_host_t *h = kc->host;
    close_building(kc);
    while (kc->ready)
        batch_free(kc, ready_pop(kc));
    take_acks(kc);
    store_offsets(kc);
    rd_kafka_resp_err_t err = rd_kafka_commit(kc->rk, NULL, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        commit_failed(kc);
        h->log(h, SN_LOG_WARN, "final commit: %s", rd_kafka_err2str(err));
    }
    err = rd_kafka_consumer_close(kc->rk); /* leaves the group: revoke runs here */
    if (err)
        h->log(h, SN_LOG_WARN, "closing the consumer: %s", rd_kafka_err2str(err));
    /* Batches still in the core's hands keep no librdkafka objects past this point. */
    for (kc_batch_t *b = kc->inflight; b; b = b->next)
        batch_release_messages(b);
    if (kc->prod) {
        int64_t left = kc->drain_timeout_ms - (kc_mono(kc) - kc->drain_started);
        if (atomic_load(&kc->abort) || left < 100)
            left = 100;
        rd_kafka_flush(kc->prod, (int)left);
        rd_kafka_purge(kc->prod, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(kc->prod, 0);
        if (kc->dlq_pending)
            h->log(h, SN_LOG_WARN,
                   "%zu dead letter(s) not confirmed at stop: their messages are read again",
                   kc->dlq_pending);
        kc_dlq_free_all(kc);
        rd_kafka_destroy(kc->prod);
        kc->prod = NULL;
    }
    pthread_mutex_lock(&kc->mu);
    rd_kafka_queue_t *cq = kc->cq;
    kc->cq = NULL;
    pthread_mutex_unlock(&kc->mu);
    rd_kafka_queue_destroy(cq);
    /* Closed above, or tried: without the flag rd_kafka_destroy closes again and, when the
     * close timed out because every broker is down, waits for the group coordinator forever. */
    rd_kafka_destroy_flags(kc->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    kc->rk = NULL;
}

static void stopped_on_loop(void *arg)
{
    kc_stop_note_t *n = arg;
    n->done(n->arg, 0, NULL);
    free(n);
}

static int poll_timeout(kc_t *kc)
{
    int64_t now = kc_mono(kc), t = KC_POLL_IDLE_MS;
    if (kc->building)
        t = kc->building->opened_ms + kc->linger_ms - now;
    if (kc->ready && kc->backoff_until > now && kc->backoff_until - now < t)
        t = kc->backoff_until - now;
    if (kc->dlq_pending && t > 20)
        t = 20;
    if (atomic_load(&kc->stopping) && t > 10)
        t = 10;
    return t < 0 ? 0 : (int)t;
}

static void *kc_main(void *arg)
{
    kc_t *kc = arg;
    const sn_host_t *h = kc->host;
    while (!atomic_load(&kc->abort)) {
        take_acks(kc);
        kc_dlq_poll(kc);
        store_offsets(kc);
        int stopping = atomic_load(&kc->stopping);
        if (stopping) {
            if (!kc->drain_started) {
                kc->drain_started = kc_mono(kc);
                close_building(kc);
            }
            if (drained(kc))
                break;
        }
        if (kc->building) {
            int64_t age = kc_mono(kc) - kc->building->opened_ms;
            if (age >= kc->linger_ms || kc->ninflight == 0)
                close_building(kc);
        }
        dispatch(kc);
        if (wait_for_room(kc))
            continue;
        update_pause(kc);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(kc->rk, poll_timeout(kc));
        /* Drain what is already fetched without waiting, up to a batch. */
        while (m) {
            on_message(kc, m);
            if (!kc->building)
                break; /* a batch was closed: hand it over first */
            m = rd_kafka_consumer_poll(kc->rk, 0);
        }
    }
    if (!kc->drain_started)
        kc->drain_started = kc_mono(kc);
    shutdown_consumer(kc);
    h->log(h, SN_LOG_INFO, "consumer closed");
    pthread_mutex_lock(&kc->mu);
    sn_done_fn done = kc->stop_done;
    void *darg = kc->stop_arg;
    kc->stop_done = NULL;
    kc->finished = 1;
    pthread_mutex_unlock(&kc->mu);
    if (done) {
        kc_stop_note_t *n = malloc(sizeof(*n));
        if (n) {
            n->done = done;
            n->arg = darg;
            if (h->post(h, stopped_on_loop, n) != 0)
                free(n);
        }
    }
    return NULL;
}

/* ---- configuration ----------------------------------------------------------------------- */

static int key_start(const char *s)
{
    size_t i = 0;
    while ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
           (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-')
        i++;
    return i > 0 && s[i] == '=';
}

/* The core split `rdkafka` values on commas; a fragment that does not start with key= belongs
 * to the value before it (ssl.cipher.suites=A,B). */
static int parse_passthrough(kc_priv_t *pv, const char *const *frags, sn_err_t *err)
{
    size_t n = 0;
    for (size_t i = 0; frags && frags[i]; i++)
        n++;
    if (!n)
        return 0;
    pv->kv = calloc(n, sizeof(*pv->kv));
    if (!pv->kv)
        return SN_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *f = frags[i];
        if (key_start(f)) {
            const char *eq = strchr(f, '=');
            kc_kv_t *kv = &pv->kv[pv->nkv++];
            kv->key = strndup(f, (size_t)(eq - f));
            kv->val = strdup(eq + 1);
            if (!kv->key || !kv->val)
                return SN_ENOMEM;
            continue;
        }
        if (!pv->nkv) {
            snprintf(err->msg, sizeof(err->msg), "rdkafka: expected key=value");
            return SN_EINVAL;
        }
        kc_kv_t *kv = &pv->kv[pv->nkv - 1];
        size_t l = strlen(kv->val) + strlen(f) + 2;
        char *j = malloc(l);
        if (!j)
            return SN_ENOMEM;
        snprintf(j, l, "%s,%s", kv->val, f);
        free(kv->val);
        kv->val = j;
    }
    return 0;
}

static int conf_set(rd_kafka_conf_t *c, const char *k, const char *v, sn_err_t *err)
{
    char es[512];
    if (rd_kafka_conf_set(c, k, v, es, sizeof(es)) == RD_KAFKA_CONF_OK)
        return 0;
    if (kc_key_is_secret(k))
        snprintf(err->msg, sizeof(err->msg), "rdkafka: invalid setting '%.64s' (value hidden)", k);
    else
        snprintf(err->msg, sizeof(err->msg), "rdkafka: %.200s", es);
    return SN_EINVAL;
}

static rd_kafka_conf_t *build_conf(kc_priv_t *pv, int producer, sn_err_t *err)
{
    kc_t *kc = &pv->kc;
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char cid[160];
    snprintf(cid, sizeof(cid), "sentinel-%.140s",
             kc->host->instance ? kc->host->instance : "kafka");
    for (char *p = cid; *p; p++)
        if (*p == ':')
            *p = '-';
    size_t fetch = kc->max_message_bytes * 4;
    if (fetch < (1u << 20))
        fetch = 1u << 20;
    if (fetch > (64u << 20))
        fetch = 64u << 20;
    struct {
        const char *k;
        char v[32];
    } defs[10];
    size_t nd = 0;
    if (!producer) {
        defs[nd].k = "max.partition.fetch.bytes";
        snprintf(defs[nd++].v, 32, "%zu", kc->max_message_bytes);
        defs[nd].k = "fetch.max.bytes";
        snprintf(defs[nd++].v, 32, "%zu", fetch);
        defs[nd].k = "auto.commit.interval.ms";
        snprintf(defs[nd++].v, 32, "%" PRId64, kc->commit_ms);
        defs[nd].k = "statistics.interval.ms";
        snprintf(defs[nd++].v, 32, "%" PRId64, kc->stats_ms);
        /* librdkafka stops prefetching once this many messages wait locally (default 100000);
         * with small telemetry messages that threshold, not the 64 MiB byte bound
         * (queued.max.messages.kbytes, which still holds), throttled the consumer to a third of
         * what the brokers could deliver. */
        defs[nd].k = "queued.min.messages";
        snprintf(defs[nd++].v, 32, "1000000");
        /* Incremental rebalancing: only moved partitions stop, and their revoke runs while the
         * group is stable, so its commit is accepted (brokers, and librdkafka's mock, refuse
         * commits once an eager rebalance is under way). */
        defs[nd].k = "partition.assignment.strategy";
        snprintf(defs[nd++].v, 32, "cooperative-sticky");
    } else {
        defs[nd].k = "message.max.bytes";
        snprintf(defs[nd++].v, 32, "%zu", kc->max_message_bytes + 65536);
        defs[nd].k = "linger.ms";
        snprintf(defs[nd++].v, 32, "5");
        defs[nd].k = "message.timeout.ms";
        snprintf(defs[nd++].v, 32, "30000");
        /* Dead letters can be as large as max_message_bytes: compressed, a large one of
         * repetitive lines stays within what brokers take (message.max.bytes, 1 MB by default,
         * applies to the compressed batch). */
        defs[nd].k = "compression.type";
        snprintf(defs[nd++].v, 32, "lz4");
    }
    if (conf_set(c, "client.id", cid, err) || conf_set(c, "bootstrap.servers", kc->brokers, err))
        goto fail;
    for (size_t i = 0; i < nd; i++)
        if (conf_set(c, defs[i].k, defs[i].v, err))
            goto fail;
    if (producer && conf_set(c, "acks", "all", err))
        goto fail;
    if (!producer && conf_set(c, "auto.offset.reset", kc->offset_reset, err))
        goto fail;
    for (size_t i = 0; i < pv->nkv; i++)
        if (conf_set(c, pv->kv[i].key, pv->kv[i].val, err))
            goto fail;
    /* What at-least-once relies on, whatever the pass-through said. */
    if (!producer) {
        if (conf_set(c, "group.id", kc->group_id, err) ||
            conf_set(c, "enable.auto.offset.store", "false", err) ||
            conf_set(c, "enable.auto.commit", "true", err) ||
            conf_set(c, "enable.partition.eof", "false", err))
            goto fail;
        rd_kafka_conf_set_rebalance_cb(c, kc_rebalance);
        rd_kafka_conf_set_stats_cb(c, kc_stats_cb);
        rd_kafka_conf_set_offset_commit_cb(c, kc_commit_cb);
    } else {
        rd_kafka_conf_set_dr_msg_cb(c, kc_dlq_report);
    }
    rd_kafka_conf_set_error_cb(c, kc_error_cb);
    rd_kafka_conf_set_log_cb(c, kc_log_cb);
    rd_kafka_conf_set_opaque(c, kc);
    return c;
fail:
    rd_kafka_conf_destroy(c);
    return NULL;
}

static void kc_destroy(void *self);

static int kc_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    if (!SN_HOST_HAS(host, emit_lines_acked) || !SN_HOST_HAS(host, check_lines)) {
        snprintf(err->msg, sizeof(err->msg),
                 "needs a host of ABI 1.4 or later (emit_lines_acked, check_lines)");
        return SN_ENOTSUP;
    }
    kc_priv_t *pv = calloc(1, sizeof(*pv));
    if (!pv) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    kc_t *kc = &pv->kc;
    kc->host = host;
    pthread_mutex_init(&kc->mu, NULL);
    pthread_cond_init(&kc->cv, NULL);
    kc->healthy = 1;
    snprintf(kc->health, sizeof(kc->health), "starting");
    kc->brokers = host->cfg_str(cfg, "brokers");
    kc->topics = host->cfg_list(cfg, "topics");
    kc->group_id = host->cfg_str(cfg, "group_id");
    kc->dlq_topic = host->cfg_str(cfg, "dead_letter_topic");
    kc->offset_reset = host->cfg_str(cfg, "auto_offset_reset");
    kc->max_message_bytes = (size_t)host->cfg_int(cfg, "max_message_bytes");
    kc->batch_bytes = (size_t)host->cfg_int(cfg, "batch_bytes");
    kc->batch_messages = host->cfg_int(cfg, "batch_messages");
    kc->batch_cap = kc->batch_messages;
    kc->linger_ms = host->cfg_int(cfg, "linger");
    kc->max_inflight = host->cfg_int(cfg, "max_inflight");
    kc->retry_ms = host->cfg_int(cfg, "retry");
    kc->revoke_timeout_ms = host->cfg_int(cfg, "revoke_timeout");
    kc->drain_timeout_ms = host->cfg_int(cfg, "drain_timeout");
    kc->stats_ms = host->cfg_int(cfg, "statistics_interval");
    kc->commit_ms = host->cfg_int(cfg, "commit_interval");
    kc->dlq_max_bytes = kc->max_message_bytes * 16;
    if (kc->dlq_topic && !kc->dlq_topic[0])
        kc->dlq_topic = NULL;
    int rc = SN_EINVAL;
    if (!kc->brokers || !kc->brokers[0]) {
        snprintf(err->msg, sizeof(err->msg), "brokers is required");
        goto out;
    }
    if (!kc->topics || !kc->topics[0]) {
        snprintf(err->msg, sizeof(err->msg), "topics needs at least one topic");
        goto out;
    }
    if (!kc->group_id || !kc->group_id[0]) {
        snprintf(err->msg, sizeof(err->msg), "group_id must not be empty");
        goto out;
    }
    if (kc->max_message_bytes < 1024 || kc->max_message_bytes > (256u << 20)) {
        snprintf(err->msg, sizeof(err->msg), "max_message_bytes must be between 1k and 256m");
        goto out;
    }
    if (kc->batch_bytes < 1024 || kc->batch_bytes > (256u << 20)) {
        snprintf(err->msg, sizeof(err->msg), "batch_bytes must be between 1k and 256m");
        goto out;
    }
    if (kc->batch_messages < 1 || kc->batch_messages > 1000000 || kc->max_inflight < 1 ||
        kc->max_inflight > 1024) {
        snprintf(err->msg, sizeof(err->msg),
                 "batch_messages must be 1..1000000 and max_inflight 1..1024");
        goto out;
    }
    if (kc->linger_ms < 0 || kc->retry_ms < 1 || kc->revoke_timeout_ms < 0 ||
        kc->drain_timeout_ms < 0 || kc->stats_ms < 0 || kc->commit_ms < 10) {
        snprintf(err->msg, sizeof(err->msg),
                 "durations must not be negative (retry >= 1ms, commit_interval >= 10ms)");
        goto out;
    }
    if (!kc->offset_reset ||
        (strcmp(kc->offset_reset, "earliest") != 0 && strcmp(kc->offset_reset, "latest") != 0)) {
        snprintf(err->msg, sizeof(err->msg), "auto_offset_reset must be earliest or latest");
        goto out;
    }
    rc = parse_passthrough(pv, host->cfg_list(cfg, "rdkafka"), err);
    if (rc != 0) {
        if (rc == SN_ENOMEM)
            snprintf(err->msg, sizeof(err->msg), "out of memory");
        goto out;
    }
    rc = SN_EINVAL;
    pv->cconf = build_conf(pv, 0, err);
    if (!pv->cconf)
        goto out;
    if (kc->dlq_topic && !(pv->pconf = build_conf(pv, 1, err)))
        goto out;
    rc = 0;
    *self = pv;
out:
    if (rc != 0)
        kc_destroy(pv);
    return rc;
}

static int kc_start(void *self)
{
    kc_priv_t *pv = self;
    kc_t *kc = &pv->kc;
    const sn_host_t *h = kc->host;
    char es[512];
    for (size_t i = 0; i < pv->nkv; i++)
        h->log(h, SN_LOG_INFO, "rdkafka setting %s=%s", pv->kv[i].key,
               kc_key_is_secret(pv->kv[i].key) ? "(hidden)" : pv->kv[i].val);
    if (pv->pconf) {
        kc->prod = rd_kafka_new(RD_KAFKA_PRODUCER, pv->pconf, es, sizeof(es));
        if (!kc->prod) {
            h->log(h, SN_LOG_ERROR, "dead-letter producer: %s", es);
            return SN_EIO;
        }
        pv->pconf = NULL;
    }
    kc->rk = rd_kafka_new(RD_KAFKA_CONSUMER, pv->cconf, es, sizeof(es));
    if (!kc->rk) {
        h->log(h, SN_LOG_ERROR, "consumer: %s", es);
        return SN_EIO;
    }
    pv->cconf = NULL;
    rd_kafka_poll_set_consumer(kc->rk);
    kc->cq = rd_kafka_queue_get_consumer(kc->rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (size_t i = 0; kc->topics[i]; i++)
        rd_kafka_topic_partition_list_add(l, kc->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(kc->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        h->log(h, SN_LOG_ERROR, "subscribe: %s", rd_kafka_err2str(err));
        return SN_EIO;
    }
    h->metric(h, SN_METRIC_GAUGE, "kafka_paused",
              "1 while the partitions are paused (backpressure or drain)", 0);
    if (pthread_create(&kc->thread, NULL, kc_main, kc) != 0) {
        h->log(h, SN_LOG_ERROR, "cannot start the consumer thread");
        return SN_EIO;
    }
    kc->thread_started = 1;
    h->log(h, SN_LOG_INFO, "consuming %s%s from %s in group %s%s%s", kc->topics[0],
           kc->topics[1] ? " (and more)" : "", kc->brokers, kc->group_id,
           kc->dlq_topic ? ", dead letters to " : "", kc->dlq_topic ? kc->dlq_topic : "");
    return 0;
}

/** Drain: partitions pause, what was read is handed over and acknowledged (up to
 * drain_timeout), offsets are committed and the consumer leaves the group. @p done runs on the
 * loop afterwards (it may be NULL). */
static void kc_stop(void *self, sn_done_fn done, void *arg)
{
    kc_priv_t *pv = self;
    kc_t *kc = &pv->kc;
    if (!kc->thread_started) {
        if (done)
            done(arg, 0, NULL);
        return;
    }
    pthread_mutex_lock(&kc->mu);
    if (kc->finished) { /* stopped before (or stopping by itself): nothing left to drain */
        pthread_mutex_unlock(&kc->mu);
        if (done)
            done(arg, 0, NULL);
        return;
    }
    kc->stop_done = done;
    kc->stop_arg = arg;
    atomic_store(&kc->stopping, 1);
    pthread_cond_broadcast(&kc->cv);
    if (kc->cq)
        rd_kafka_queue_yield(kc->cq);
    pthread_mutex_unlock(&kc->mu);
}

static void kc_destroy(void *self)
{
    kc_priv_t *pv = self;
    if (!pv)
        return;
    kc_t *kc = &pv->kc;
    if (kc->thread_started) {
        pthread_mutex_lock(&kc->mu);
        kc->stop_done = NULL; /* too late for it: the caller is tearing down */
        atomic_store(&kc->abort, 1);
        pthread_cond_broadcast(&kc->cv);
        if (kc->cq)
            rd_kafka_queue_yield(kc->cq);
        pthread_mutex_unlock(&kc->mu);
        pthread_join(kc->thread, NULL);
    } else {
        if (kc->cq)
            rd_kafka_queue_destroy(kc->cq);
        if (kc->rk)
            rd_kafka_destroy(kc->rk);
        if (kc->prod)
            rd_kafka_destroy(kc->prod);
    }
    /* Acknowledged after the thread's last look: free them. */
    for (kc_batch_t *b = kc->acks; b;) {
        kc_batch_t *next = b->ack_next;
        for (kc_batch_t **pp = &kc->inflight; *pp; pp = &(*pp)->next)
            if (*pp == b) {
                *pp = b->next;
                break;
            }
        batch_free(NULL, b);
        b = next;
    }
    /* Still in the core's hands: their acknowledgement frees them. */
    for (kc_batch_t *b = kc->inflight; b; b = b->next) {
        batch_release_messages(b);
        b->kc = NULL;
    }
    while (kc->parts) {
        kc_part_t *p = kc->parts;
        kc->parts = p->next;
        part_free(p);
    }
    if (pv->cconf)
        rd_kafka_conf_destroy(pv->cconf);
    if (pv->pconf)
        rd_kafka_conf_destroy(pv->pconf);
    for (size_t i = 0; i < pv->nkv; i++) {
        free(pv->kv[i].key);
        if (pv->kv[i].val) {
            /* may hold a password */
            memset(pv->kv[i].val, 0, strlen(pv->kv[i].val));
            free(pv->kv[i].val);
        }
    }
    free(pv->kv);
    pthread_cond_destroy(&kc->cv);
    pthread_mutex_destroy(&kc->mu);
    free(pv);
}

static int kc_health(void *self, sn_health_t *out)
{
    kc_priv_t *pv = self;
    kc_t *kc = &pv->kc;
    pthread_mutex_lock(&kc->mu);
    out->ok = kc->healthy && !kc->brokers_down;
    if (kc->healthy && kc->brokers_down)
        snprintf(out->detail, sizeof(out->detail), "all brokers down; %.200s", kc->health);
    else
        snprintf(out->detail, sizeof(out->detail), "%s", kc->health);
    pthread_mutex_unlock(&kc->mu);
    return 0;
}

static const sn_input_ops_t kc_ops = {.struct_size = sizeof(sn_input_ops_t)};

static const sn_plugin_t kc_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_INPUT,
    .type = "kafka",
    .version = "1.0.0",
    .summary = "Kafka consumer group (librdkafka): JSON lines per message, at least once, "
               "backpressure by pausing partitions, dead-letter topic for refused messages",
    .params = kc_params,
    .create = kc_create,
    .start = kc_start,
    .stop = kc_stop,
    .destroy = kc_destroy,
    .health = kc_health,
    .ops = &kc_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &kc_plugin;
}
