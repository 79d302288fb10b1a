/**
 * @file kafka_dlq.c
 * The dead-letter topic: a message the core refuses (a line that is not a valid record) or one
 * over max_message_bytes is produced to `dead_letter_topic` with its key, its original headers
 * and timestamp, and headers saying why and where it came from:
 *
 *     sentinel.error      the reason ("line 2: field 'value': not a number", "message of ...")
 *     sentinel.topic      source topic
 *     sentinel.partition  source partition (decimal)
 *     sentinel.offset     source offset (decimal)
 *     sentinel.truncated  original size in bytes, when the value was cut to max_message_bytes
 *
 * The producer compresses with lz4 (compression.type; an `rdkafka` setting overrides it), so a
 * large message of repetitive lines stays within the broker's message.max.bytes, which applies
 * to the compressed batch.
 *
 * The source offset is not committed until the broker confirmed the dead letter: a failed
 * delivery is retried (with backoff, logged), never skipped. Without a dead-letter topic the
 * message is logged with its position and reason and counted, and then committed.
 *
 * Thread: the consumer thread (delivery reports are served by its rd_kafka_poll on the
 * producer).
 */
#include "kafka-internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KC_DLQ_RETRY_MIN_MS 500
#define KC_DLQ_RETRY_MAX_MS 30000

int kc_key_is_secret(const char *key)
{
    char low[128];
    size_t n = 0;
    for (; key[n] && n + 1 < sizeof(low); n++)
        low[n] = (char)tolower((unsigned char)key[n]);
    low[n] = '\0';
    return strstr(low, "password") || strstr(low, "secret") ||
           strstr(low, "sasl.oauthbearer.config") || strstr(low, "ssl.key.pem") ||
           strstr(low, "token");
}

static void dlq_free(kc_dlq_t *d)
{
    if (!d)
        return;
    free(d->topic);
    free(d->key);
    free(d->value);
    if (d->headers)
        rd_kafka_headers_destroy(d->headers);
    free(d);
}

/* Delivered (or given up on without a topic): the source offset may be committed. */
static void dlq_finish(kc_t *kc, kc_dlq_t *d)
{
    kc->dlq_pending--;
    kc->dlq_bytes -= d->value_len;
    kc_part_done(kc, d->part, d->seq);
    kc_part_unref(kc, d->part);
    dlq_free(d);
}

static void dlq_schedule_retry(kc_t *kc, kc_dlq_t *d, const char *why)
{
    int64_t delay = KC_DLQ_RETRY_MIN_MS;
    for (int i = 1; i < d->attempts && delay < KC_DLQ_RETRY_MAX_MS; i++)
        delay *= 2;
    if (delay > KC_DLQ_RETRY_MAX_MS)
        delay = KC_DLQ_RETRY_MAX_MS;
    d->retry_at = kc_mono(kc) + delay;
    d->next = kc->dlq_wait;
    kc->dlq_wait = d;
    const sn_host_t *h = kc->host;
    h->metric(h, SN_METRIC_COUNTER, "kafka_dead_letter_failures_total",
              "Dead-letter deliveries that failed and will be retried", 1);
    h->log(h, SN_LOG_ERROR,
           "dead letter for %s[%" PRId32 "]@%" PRId64 " not delivered (%s, attempt %d): retrying "
           "in %" PRId64 " ms; the offset is not committed meanwhile",
           d->topic, d->partition, d->offset, why, d->attempts, delay);
}

static void dlq_produce(kc_t *kc, kc_dlq_t *d)
{
    d->attempts++;
    d->retry_at = 0;
    rd_kafka_headers_t *hdrs =
        d->headers ? rd_kafka_headers_copy(d->headers) : rd_kafka_headers_new(6);
    char num[32];
    rd_kafka_header_add(hdrs, "sentinel.error", -1, d->reason, -1);
    rd_kafka_header_add(hdrs, "sentinel.topic", -1, d->topic, -1);
    snprintf(num, sizeof(num), "%" PRId32, d->partition);
    rd_kafka_header_add(hdrs, "sentinel.partition", -1, num, -1);
    snprintf(num, sizeof(num), "%" PRId64, d->offset);
    rd_kafka_header_add(hdrs, "sentinel.offset", -1, num, -1);
    if (d->orig_len > d->value_len) {
        snprintf(num, sizeof(num), "%zu", d->orig_len);
        rd_kafka_header_add(hdrs, "sentinel.truncated", -1, num, -1);
    }
    rd_kafka_resp_err_t err = rd_kafka_producev(
        kc->prod, RD_KAFKA_V_TOPIC(kc->dlq_topic), RD_KAFKA_V_VALUE(d->value, d->value_len),
        RD_KAFKA_V_KEY(d->key, d->key_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_TIMESTAMP(d->timestamp > 0 ? d->timestamp : 0), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(hdrs); /* not taken on failure */
        dlq_schedule_retry(kc, d, rd_kafka_err2str(err));
    }
}

void kc_dlq_report(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kc_t *kc = opaque;
    kc_dlq_t *d = m->_private;
    if (!d)
        return;
    if (m->err) {
        dlq_schedule_retry(kc, d, rd_kafka_err2str(m->err));
        return;
    }
    kc->host->metric(kc->host, SN_METRIC_COUNTER, "kafka_dead_letters_total",
                     "Messages delivered to the dead-letter topic", 1);
    dlq_finish(kc, d);
}

void kc_dlq_send(kc_t *kc, kc_part_t *p, uint64_t seq, const rd_kafka_message_t *m,
                 const char *reason)
{
    const sn_host_t *h = kc->host;
    const char *topic = rd_kafka_topic_name(m->rkt);
    h->metric(h, SN_METRIC_COUNTER, "kafka_malformed_total",
              "Messages refused: a line the core does not take, or over max_message_bytes", 1);
    if (!kc->prod) {
        h->log(h, SN_LOG_ERROR,
               "message %s[%" PRId32 "]@%" PRId64 " refused and skipped (no dead_letter_topic): %s",
               topic, m->partition, m->offset, reason);
        return;
    }
    kc_dlq_t *d = calloc(1, sizeof(*d));
    size_t vlen = m->len > kc->max_message_bytes ? kc->max_message_bytes : m->len;
    if (d) {
        d->topic = strdup(topic);
        d->value = malloc(vlen ? vlen : 1);
        d->key = m->key_len ? malloc(m->key_len) : NULL;
    }
    if (!d || !d->topic || !d->value || (m->key_len && !d->key)) {
        /* Out of memory: the offset must not be committed past this message, and we cannot
         * keep it either. Stop committing this partition (its entry stays pending) and say so;
         * a restart re-reads it. */
        h->log(h, SN_LOG_ERROR,
               "out of memory for the dead letter of %s[%" PRId32 "]@%" PRId64
               ": the partition stops committing until restart",
               topic, m->partition, m->offset);
        dlq_free(d);
        kc_part_ent(p, seq)->pending++;
        return;
    }
    d->kc = kc;
    d->part = p;
    d->seq = seq;
    p->refs++;
    kc_part_ent(p, seq)->pending++;
    d->partition = m->partition;
    d->offset = m->offset;
    rd_kafka_timestamp_type_t tstype;
    d->timestamp = rd_kafka_message_timestamp(m, &tstype);
    if (vlen)
        memcpy(d->value, m->payload, vlen);
    d->value_len = vlen;
    d->orig_len = m->len;
    if (m->key_len) {
        memcpy(d->key, m->key, m->key_len);
        d->key_len = m->key_len;
    }
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs)
        d->headers = rd_kafka_headers_copy(hdrs);
    snprintf(d->reason, sizeof(d->reason), "%s", reason);
    kc->dlq_pending++;
    kc->dlq_bytes += vlen;
    h->log(h, SN_LOG_WARN, "message %s[%" PRId32 "]@%" PRId64 " to dead-letter topic %s: %s", topic,
           m->partition, m->offset, kc->dlq_topic, reason);
    dlq_produce(kc, d);
}

void kc_dlq_poll(kc_t *kc)
{
    if (!kc->prod)
        return;
    rd_kafka_poll(kc->prod, 0);
    if (!kc->dlq_wait)
        return;
    int64_t now = kc_mono(kc);
    kc_dlq_t **pp = &kc->dlq_wait;
    while (*pp) {
        kc_dlq_t *d = *pp;
        if (d->retry_at > now) {
            pp = &d->next;
            continue;
        }
        *pp = d->next;
        d->next = NULL;
        dlq_produce(kc, d);
    }
}

void kc_dlq_free_all(kc_t *kc)
{
    while (kc->dlq_wait) {
        kc_dlq_t *d = kc->dlq_wait;
        kc->dlq_wait = d->next;
        kc->dlq_pending--;
        kc->dlq_bytes -= d->value_len;
        kc_part_unref(kc, d->part);
        dlq_free(d);
    }
}
