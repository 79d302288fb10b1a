/**
 * @file kafka_stats.c
 * librdkafka statistics (statistics.interval.ms) turned into gauges, and the health line.
 *
 * Every interval librdkafka hands the consumer thread a JSON document; from it come the consumer
 * lag of each assigned partition (what is left to read past the stored offset, i.e. past what
 * the core acknowledged) and the receive counters, from which messages and bytes per second are
 * derived. Each partition's lag is a gauge labelled with its topic and partition
 * (kafka_partition_lag, on hosts with the labelled metric call of ABI 1.3), and the lags are also
 * summed (kafka_consumer_lag) and their maximum kept (kafka_consumer_lag_max); the health detail
 * lists them too.
 *
 * The lag is librdkafka's while the partitions are consumed. librdkafka learns a partition's
 * end from its fetches, so while they are paused (backpressure) its lag would stand still at
 * the pause, exactly when the backlog grows. Then each statistics interval asks the brokers for
 * every assigned partition's end instead (rd_kafka_query_watermark_offsets, blocking, on the
 * consumer thread, which has nothing to fetch meanwhile), within KC_LAG_QUERY_BUDGET_MS in all,
 * and counts the lag from the acknowledged offset.
 */
#include "kafka-internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kc_part_t *find_part(kc_t *kc, const char *topic, int32_t id)
{
    for (kc_part_t *p = kc->parts; p; p = p->next)
        if (!p->revoked && p->id == id && strcmp(p->topic, topic) == 0)
            return p;
    return NULL;
}

#define KC_LAG_QUERY_BUDGET_MS 1000 /* the paused-lag queries of one interval, in all */
#define KC_LAG_QUERY_MAX_MS 500     /* one query */

static int64_t int_field(json_t *o, const char *k, int64_t def)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

/* Paused: the partition ends from the brokers, the lag from the acknowledged offsets. A
 * partition with nothing acknowledged yet keeps librdkafka's figure; the first failed or slow
 * answer ends the round (the brokers are likely unreachable, and the thread has acknowledgements to
 * serve). */
static void paused_lag(kc_t *kc, rd_kafka_t *rk)
{
    int64_t deadline = kc_mono(kc) + KC_LAG_QUERY_BUDGET_MS;
    for (kc_part_t *p = kc->parts; p; p = p->next) {
        if (p->revoked || p->acked < 0)
            continue;
        int64_t left = deadline - kc_mono(kc);
        if (left <= 0)
            break;
        int64_t lo = -1, hi = -1;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
            rk, p->topic, p->id, &lo, &hi,
            (int)(left < KC_LAG_QUERY_MAX_MS ? left : KC_LAG_QUERY_MAX_MS));
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kc->host->log(kc->host, SN_LOG_DEBUG, "paused: end of %s[%" PRId32 "] unknown: %s",
                          p->topic, p->id, rd_kafka_err2str(e));
            break;
        }
        if (hi >= p->acked)
            p->lag = hi - p->acked;
    }
}

int kc_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    kc_t *kc = opaque;
    const sn_host_t *h = kc->host;
    json_t *doc = json_loadb(json, len, 0, NULL);
    if (!doc)
        return 0;
    int64_t now = kc_mono(kc);
    int64_t msgs = int_field(doc, "rxmsgs", -1), bytes = int_field(doc, "rxmsg_bytes", -1);
    if (kc->stats_prev_ms > 0 && now > kc->stats_prev_ms && msgs >= kc->stats_prev_msgs &&
        bytes >= kc->stats_prev_bytes) {
        double secs = (double)(now - kc->stats_prev_ms) / 1000.0;
        h->metric(h, SN_METRIC_GAUGE, "kafka_messages_per_second",
                  "Messages received from the brokers per second (last statistics interval)",
                  (double)(msgs - kc->stats_prev_msgs) / secs);
        h->metric(h, SN_METRIC_GAUGE, "kafka_bytes_per_second",
                  "Message bytes received from the brokers per second (last statistics interval)",
                  (double)(bytes - kc->stats_prev_bytes) / secs);
    }
    kc->stats_prev_ms = now;
    kc->stats_prev_msgs = msgs;
    kc->stats_prev_bytes = bytes;

    for (kc_part_t *p = kc->parts; p; p = p->next)
        p->lag = -1;
    const char *tname;
    json_t *t;
    json_object_foreach(json_object_get(doc, "topics"), tname, t)
    {
        const char *pname;
        json_t *pj;
        json_object_foreach(json_object_get(t, "partitions"), pname, pj)
        {
            int64_t id = int_field(pj, "partition", -1);
            kc_part_t *p = id >= 0 ? find_part(kc, tname, (int32_t)id) : NULL;
            if (!p)
                continue;
            int64_t lag = int_field(pj, "consumer_lag_stored", -1);
            if (lag < 0)
                lag = int_field(pj, "consumer_lag", -1);
            p->lag = lag;
            h->log(h, SN_LOG_DEBUG, "lag %s[%" PRId32 "] = %" PRId64, p->topic, p->id, lag);
        }
    }
    json_decref(doc);
    if (kc->paused)
        paused_lag(kc, rk);
    kc_stats_publish(kc);
    return 0; /* librdkafka frees json */
}

static void partition_gauge(const kc_t *kc, const kc_part_t *p, double lag)
{
    const sn_host_t *h = kc->host;
    if (!SN_HOST_HAS(h, metric_labels))
        return;
    char id[16];
    snprintf(id, sizeof(id), "%" PRId32, p->id);
    const char *labels[] = {"topic", p->topic, "partition", id, NULL};
    h->metric_labels(h, SN_METRIC_GAUGE, "kafka_partition_lag",
                     "Messages behind the partition end past the acknowledged offset (0 once the "
                     "partition is no longer assigned to this instance)",
                     labels, lag);
}

void kc_stats_forget(kc_t *kc, const kc_part_t *p)
{
    partition_gauge(kc, p, 0);
}

void kc_stats_publish(kc_t *kc)
{
    const sn_host_t *h = kc->host;
    int64_t sum = 0, max = 0;
    size_t n = 0, used = 0;
    char detail[200];
    const char *last_topic = NULL;
    int cut = 0;
    detail[0] = '\0';
    /* "telemetry[0=12,1=0,2] dlq[0]": partition=lag, lag omitted while unknown. */
    for (kc_part_t *p = kc->parts; p; p = p->next) {
        if (p->revoked)
            continue;
        n++;
        if (p->lag >= 0)
            partition_gauge(kc, p, (double)p->lag);
        if (p->lag > 0) {
            sum += p->lag;
            if (p->lag > max)
                max = p->lag;
        }
        if (cut)
            continue;
        int same = last_topic && strcmp(last_topic, p->topic) == 0;
        char one[96], lag[24] = "";
        if (p->lag >= 0)
            snprintf(lag, sizeof(lag), "=%" PRId64, p->lag);
        int w =
            snprintf(one, sizeof(one), "%s%.40s%s%" PRId32 "%s", same ? "," : (used ? "] " : ""),
                     same ? "" : p->topic, same ? "" : "[", p->id, lag);
        if (w < 0 || used + (size_t)w + 5 >= sizeof(detail)) {
            cut = 1;
            continue;
        }
        memcpy(detail + used, one, (size_t)w + 1);
        used += (size_t)w;
        last_topic = p->topic;
    }
    if (used)
        snprintf(detail + used, sizeof(detail) - used, "]%s", cut ? "..." : "");
    h->metric(h, SN_METRIC_GAUGE, "kafka_assigned_partitions",
              "Partitions assigned to this consumer by the group", (double)n);
    h->metric(h, SN_METRIC_GAUGE, "kafka_consumer_lag",
              "Messages behind the partition ends past the acknowledged offsets (all assigned "
              "partitions)",
              (double)sum);
    h->metric(h, SN_METRIC_GAUGE, "kafka_consumer_lag_max",
              "Largest consumer lag of one assigned partition", (double)max);
    h->metric(h, SN_METRIC_GAUGE, "kafka_dead_letters_pending",
              "Dead letters not yet confirmed by the broker", (double)kc->dlq_pending);
    pthread_mutex_lock(&kc->mu);
    if (kc->healthy)
        snprintf(kc->health, sizeof(kc->health), "%zu partition(s)%s%s, lag %" PRId64 "%s", n,
                 n ? ": " : "", detail, sum, kc->paused ? ", paused (backpressure)" : "");
    pthread_mutex_unlock(&kc->mu);
}
