/**
 * @file kafka-mock.c
 * A Kafka cluster for tests: librdkafka's mock cluster (rdkafka_mock.h) with N brokers on
 * loopback ports, topics created up front, the bootstrap list written to a file (atomically, so
 * a reader never sees half of it), running until SIGTERM or SIGINT.
 *
 *     kafka-mock --brokers 3 --topic telemetry:6 --topic dlq:1 --bootstrap-file boot.txt
 *
 * The mock speaks enough of the protocol for producers, consumer groups and offset commits, and
 * keeps about 5 MiB or 100000 message sets per partition, dropping the oldest beyond that. It
 * stores each produced batch as sent (compressed), so the limit is on compressed bytes.
 *
 * Faults. With --control, commands are read from stdin, one per line, and each is answered with
 * one line on stdout ("ok" or "error: ..."), after the cluster thread has applied it; broker ids
 * run from 1 to N, -1 means all:
 *
 *     down BROKER            close the broker's connections and refuse new ones (no leader
 *                            change: its partitions are unavailable until `up`)
 *     up BROKER              accept connections again
 *     rtt BROKER MS          delay every answer of the broker by MS milliseconds (0: none)
 *     errors APIKEY ERR...   the next requests of that API (protocol key, e.g. 1 = Fetch,
 *                            8 = OffsetCommit) fail with these error codes, one per request
 *
 * End of stdin ends the control channel, not the cluster (it still runs until SIGTERM).
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KM_MAX_TOPICS 32
#define KM_MAX_ERRORS 64

static void usage(FILE *out)
{
    fprintf(out, "usage: kafka-mock [--brokers N] [--topic NAME:PARTITIONS]... [--control] "
                 "--bootstrap-file PATH\n"
                 "Starts librdkafka's mock cluster, writes its bootstrap list to PATH and runs "
                 "until SIGTERM.\n"
                 "--control: fault commands on stdin (down|up BROKER, rtt BROKER MS, "
                 "errors APIKEY ERR...), answered on stdout\n");
}

static int write_bootstrap(const char *path, const char *list)
{
    size_t n = strlen(path) + 5;
    char *tmp = malloc(n);
    if (!tmp)
        return -1;
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc = -1;
    if (f) {
        int ok = fprintf(f, "%s\n", list) > 0;
        ok = fclose(f) == 0 && ok;
        if (ok && rename(tmp, path) == 0)
            rc = 0;
    }
    if (rc != 0)
        remove(tmp);
    free(tmp);
    return rc;
}

/* One control command; writes the answer (without newline) to @p out. */
static void control_one(rd_kafka_mock_cluster_t *mc, char *line, char *out, size_t outlen)
{
    char *save = NULL;
    const char *cmd = strtok_r(line, " \t\r\n", &save);
    char *args[2 + KM_MAX_ERRORS];
    int nargs = 0;
    char *a;
    while (nargs < (int)(sizeof(args) / sizeof(args[0])) && (a = strtok_r(NULL, " \t\r\n", &save)))
        args[nargs++] = a;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!cmd) {
        snprintf(out, outlen, "error: empty command");
        return;
    }
    if ((strcmp(cmd, "down") == 0 || strcmp(cmd, "up") == 0) && nargs == 1) {
        int32_t id = (int32_t)atoi(args[0]);
        err = cmd[0] == 'd' ? rd_kafka_mock_broker_set_down(mc, id)
                            : rd_kafka_mock_broker_set_up(mc, id);
    } else if (strcmp(cmd, "rtt") == 0 && nargs == 2) {
        err = rd_kafka_mock_broker_set_rtt(mc, (int32_t)atoi(args[0]), atoi(args[1]));
    } else if (strcmp(cmd, "errors") == 0 && nargs >= 2) {
        rd_kafka_resp_err_t errs[KM_MAX_ERRORS];
        size_t n = 0;
        for (int i = 1; i < nargs && n < KM_MAX_ERRORS; i++)
            errs[n++] = (rd_kafka_resp_err_t)atoi(args[i]);
        rd_kafka_mock_push_request_errors_array(mc, (int16_t)atoi(args[0]), n, errs);
    } else {
        snprintf(out, outlen, "error: unknown command or wrong arguments: %s", cmd);
        return;
    }
    if (err)
        snprintf(out, outlen, "error: %s", rd_kafka_err2str(err));
    else
        snprintf(out, outlen, "ok");
}

/* The control thread: commands from stdin until its end (see the file comment). */
static void *control_main(void *arg)
{
    rd_kafka_mock_cluster_t *mc = arg;
    char line[1024], answer[256];
    while (fgets(line, sizeof(line), stdin)) {
        control_one(mc, line, answer, sizeof(answer));
        fprintf(stderr, "kafka-mock: control: %s\n", answer);
        printf("%s\n", answer);
        fflush(stdout);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int brokers = 1;
    const char *boot_file = NULL;
    char *topics[KM_MAX_TOPICS];
    int parts[KM_MAX_TOPICS];
    int ntopics = 0;
    int control = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
            brokers = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--bootstrap-file") == 0 && i + 1 < argc) {
            boot_file = argv[++i];
        } else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc) {
            char *spec = argv[++i];
            char *colon = strrchr(spec, ':');
            if (ntopics == KM_MAX_TOPICS || !colon || colon == spec || atoi(colon + 1) < 1) {
                fprintf(stderr, "kafka-mock: bad --topic '%s' (NAME:PARTITIONS)\n", spec);
                return 2;
            }
            *colon = '\0';
            topics[ntopics] = spec;
            parts[ntopics++] = atoi(colon + 1);
        } else if (strcmp(argv[i], "--control") == 0) {
            control = 1;
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!boot_file || brokers < 1 || brokers > 16) {
        usage(stderr);
        return 2;
    }

    /* Block the signals before librdkafka starts its threads, so they inherit the mask and
     * sigwait() below is the only taker. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The handle only hosts the cluster; it never connects anywhere. */
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "kafka-mock: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "kafka-mock: could not create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < ntopics && rc == 0; i++) {
        int rf = brokers < 3 ? brokers : 3;
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, topics[i], parts[i], rf);
        if (err) {
            fprintf(stderr, "kafka-mock: topic %s: %s\n", topics[i], rd_kafka_err2str(err));
            rc = 1;
        }
    }
    const char *boot = rd_kafka_mock_cluster_bootstraps(mc);
    if (rc == 0 && write_bootstrap(boot_file, boot) != 0) {
        fprintf(stderr, "kafka-mock: cannot write %s\n", boot_file);
        rc = 1;
    }
    if (rc == 0) {
        fprintf(stderr, "kafka-mock: %d broker(s) at %s\n", brokers, boot);
        pthread_t ctl;
        /* Detached: it may sit in fgets() at exit, which is fine for a test tool. */
        if (control && pthread_create(&ctl, NULL, control_main, mc) == 0)
            pthread_detach(ctl);
        int sig = 0;
        sigwait(&set, &sig);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return rc;
}
