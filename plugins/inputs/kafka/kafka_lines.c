/**
 * @file kafka_lines.c
 * The Kafka input's view of the core's ingest format: how many records a message holds. Which
 * of its lines the core refuses, and why, the core says itself (host->check_lines).
 */
#include "kafka-internal.h"

#include <string.h>

uint32_t kc_count_lines(const char *buf, size_t len)
{
    uint32_t n = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - line) : len - pos;
        pos += l + (nl ? 1 : 0);
        if (l && line[l - 1] == '\r')
            l--;
        for (size_t k = 0; k < l; k++)
            if (line[k] != ' ' && line[k] != '\t') {
                n++;
                break;
            }
    }
    return n;
}
