/**
 * @file ingest.h
 * Parsing of the one ingest format (JSON lines of points, logs and change events), shared by
 * POST /v1/events and every input plugin through host->emit_lines.
 */
#ifndef SENTINEL_INGEST_H
#define SENTINEL_INGEST_H
#include "sentinel-internal.h"
typedef enum { SN_REC_POINT = 1, SN_REC_LOG, SN_REC_CHANGE, SN_REC_ALERT } sn_rec_type_t;
typedef struct sn_record {
    sn_rec_type_t type;
    int64_t ts_ms;
    const char *metric;
    double value;
    const sn_label_t *labels;
    size_t nlabels;
    uint64_t series;
    const char *text;  /**< log text, change word, or alert fingerprint */
    const char *level; /**< log level, or alert status ("firing", "resolved") */
    size_t line;
    /* alerts: metric is the alert name */
    const json_t *annotations; /**< object of strings, or NULL */
    int64_t ends_ms;           /**< 0 when absent */
    const char *group;         /**< the sender's group key, or NULL */
} sn_record_t;
typedef struct sn_ingest_limits {
    size_t max_line;
    size_t max_labels;
    size_t max_label_len;
    int jansson_only; /**< tests: read every line with jansson, never the fast path */
} sn_ingest_limits_t;
enum {
    SN_IR_JSON,
    SN_IR_UTF8,
    SN_IR_TYPE,
    SN_IR_MISSING,
    SN_IR_NONFINITE,
    SN_IR_TIME,
    SN_IR_NAME,
    SN_IR_LABELS,
    SN_IR_TOO_LONG,
    SN_INGEST_REASONS
};
typedef struct sn_ingest_stats {
    size_t accepted, rejected;
    size_t by_reason[SN_INGEST_REASONS];
} sn_ingest_stats_t;
typedef void (*sn_record_fn)(void *arg, const sn_record_t *rec);
int sn_ingest_parse(const char *buf, size_t len, const char *origin, const sn_ingest_limits_t *lim,
                    sn_record_fn cb, void *arg, sn_ingest_stats_t *stats, sn_diag_t *errs,
                    size_t max_errors);
const char *sn_ingest_reason_name(int reason);
/* The rules without the records: how many lines of @p buf sn_ingest_parse refuses at the
 * default limits, the first one's reason ("line N: field 'value': not a number") in @p why
 * (empty when none). Thread: any. */
uint32_t sn_ingest_check(const char *buf, size_t len, char *why, size_t wl);
/* ingest_fast.c: read @p line (a mutable copy, terminated in place) as a flat point; 1 with
 * @p rec filled exactly as the jansson path would fill it, or 0 when the line is not of that
 * shape (the caller then reads it with jansson). @p labels holds lim->max_labels entries. */
int sn_ingest_fast_point(char *line, size_t n, const sn_ingest_limits_t *lim, sn_record_t *rec,
                         sn_label_t *labels);
/* Valid records go to cb in order (pointers borrowed for the call); each bad line is counted
 * by reason and, for the first max_errors, described in errs as
 * "<origin>: line N: field 'value': not a finite number". Thread: any. */
#endif
