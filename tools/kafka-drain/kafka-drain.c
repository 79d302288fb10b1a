/**
 * @file kafka-drain.c
 * A plain librdkafka consumer for the Kafka benchmark: it joins a consumer group, consumes a
 * topic from the beginning and does nothing with the records but count them. It reports how
 * long the drain took, measured the way bench_kafka.py measures sentineld: from the moment the
 * group assigned it the partitions to the moment the last record arrived. Process start, group
 * join and the wait for end-of-partition are left out of that window (with the default
 * fetch.wait.max.ms of 500 ms, the end-of-partition wait alone is longer than draining 600 000
 * records), so the figure is the consumer's rate, not its start-up time.
 *
 *     kafka-drain -b BOOTSTRAP -t TOPIC -g GROUP -n RECORDS [-X key=value]...
 *
 * It stops when RECORDS records arrived or every assigned partition reached its end, and prints
 * one JSON object: {"records": N, "bytes": B, "seconds": S, "assign_to_first_s": F}. Exit 1 on
 * a configuration or consumer error, or when it saw fewer than RECORDS records.
 */
#include <librdkafka/rdkafka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct drain {
    double assigned_at; /* monotonic seconds; 0 until the group assigned partitions */
    int partitions;     /* assigned */
    int at_end;         /* of those, at their end */
} drain_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: kafka-drain -b BOOTSTRAP -t TOPIC -g GROUP -n RECORDS "
                 "[-X key=value]...\n");
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    drain_t *d = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, parts);
        d->partitions += parts->cnt;
        if (d->assigned_at == 0)
            d->assigned_at = now_s();
    } else {
        rd_kafka_assign(rk, NULL);
        d->partitions = 0;
    }
}

static int set(rd_kafka_conf_t *conf, const char *key, const char *value)
{
    char err[256];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka-drain: %s: %s\n", key, err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *topic = NULL, *group = NULL;
    long long want = -1;
    drain_t d = {0};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rd_kafka_conf_destroy(conf);
            return 0;
        }
        if (!v || a[0] != '-' || strlen(a) != 2 || !strchr("btgnX", a[1])) {
            usage(stderr);
            rd_kafka_conf_destroy(conf);
            return 1;
        }
        i++;
        if (a[1] == 'b')
            brokers = v;
        else if (a[1] == 't')
            topic = v;
        else if (a[1] == 'g')
            group = v;
        else if (a[1] == 'n')
            want = strtoll(v, NULL, 10);
        else {
            char kv[512];
            char *eq;
            if (snprintf(kv, sizeof(kv), "%s", v) >= (int)sizeof(kv) || !(eq = strchr(kv, '='))) {
                fprintf(stderr, "kafka-drain: -X wants key=value, not %s\n", v);
                rd_kafka_conf_destroy(conf);
                return 1;
            }
            *eq = '\0';
            if (set(conf, kv, eq + 1) != 0) {
                rd_kafka_conf_destroy(conf);
                return 1;
            }
        }
    }
    if (!brokers || !topic || !group || want < 1) {
        usage(stderr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    if (set(conf, "bootstrap.servers", brokers) || set(conf, "group.id", group) ||
        set(conf, "auto.offset.reset", "earliest") || set(conf, "enable.partition.eof", "true") ||
        set(conf, "enable.auto.commit", "false")) {
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_conf_set_opaque(conf, &d);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "kafka-drain: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) {
        fprintf(stderr, "kafka-drain: subscribe %s: %s\n", topic, rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return 1;
    }
    long long got = 0;
    unsigned long long bytes = 0;
    double first = 0, last = 0, give_up = now_s() + 600;
    int rc = 0;
    while (got < want && (d.partitions == 0 || d.at_end < d.partitions)) {
        if (now_s() > give_up) {
            fprintf(stderr, "kafka-drain: %lld of %lld records after 600 s\n", got, want);
            rc = 1;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            d.at_end++;
        } else if (m->err) {
            fprintf(stderr, "kafka-drain: %s\n", rd_kafka_message_errstr(m));
            if (m->err != RD_KAFKA_RESP_ERR__TRANSPORT) {
                rd_kafka_message_destroy(m);
                rc = 1;
                break;
            }
        } else {
            last = now_s();
            if (got++ == 0)
                first = last;
            bytes += m->len;
        }
        rd_kafka_message_destroy(m);
    }
    if (rc == 0 && got < want) {
        fprintf(stderr, "kafka-drain: the partitions ended after %lld of %lld records\n", got,
                want);
        rc = 1;
    }
    printf("{\"records\": %lld, \"bytes\": %llu, \"seconds\": %.6f, \"assign_to_first_s\": %.6f}\n",
           got, bytes, got ? last - d.assigned_at : 0.0, got ? first - d.assigned_at : 0.0);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}
