/**
 * @file ingest.c
 * Parses JSON lines into points, logs and change events. A bad line is counted by reason and
 * described with its origin, line and field; the lines around it are still taken.
 */
#include "ingest.h"
#include "names.h"
#include "utf8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const reason_names[SN_INGEST_REASONS] = {
    "json", "utf8", "type", "missing", "nonfinite", "time", "name", "labels", "too_long"};

const char *sn_ingest_reason_name(int reason)
{
    return reason >= 0 && reason < SN_INGEST_REASONS ? reason_names[reason] : "unknown";
}

static int metric_name_ok(const char *s)
{
    return snp_metric_name_ok(s, strlen(s));
}

static int label_name_ok(const char *s)
{
    return snp_label_name_ok(s, strlen(s));
}

static int cmp_label(const void *a, const void *b)
{
    return strcmp(((const sn_label_t *)a)->name, ((const sn_label_t *)b)->name);
}

typedef struct bad {
    int reason;
    char msg[256];
} bad_t;

static int parse_ts(json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return *out >= 0 ? 0 : SN_EINVAL;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d < 0 || d > 9.2e18)
            return SN_EINVAL;
        *out = (int64_t)d;
        return 0;
    }
    if (json_is_string(v))
        return sn_parse_time_ms(json_string_value(v), out) == 0 && *out >= 0 ? 0 : SN_EINVAL;
    return SN_EINVAL;
}

/* An alert judged by another system (Alertmanager, say): {"alert": name, "status": "firing" or
 * "resolved", "fingerprint": id, "labels", optional "annotations" (strings), "ends", "group"}. */
static int parse_alert(json_t *o, json_t *al, sn_record_t *rec, bad_t *bad)
{
    rec->type = SN_REC_ALERT;
    json_t *st = json_object_get(o, "status"), *fp = json_object_get(o, "fingerprint"),
           *an = json_object_get(o, "annotations"), *ends = json_object_get(o, "ends"),
           *grp = json_object_get(o, "group");
    const char *field = NULL, *why = NULL;
    if (!json_is_string(al) || !metric_name_ok(json_string_value(al)))
        field = "alert", why = "not an alert name (a metric name)";
    else if (!st)
        field = "status", why = "missing";
    else if (!json_is_string(st) || (strcmp(json_string_value(st), "firing") != 0 &&
                                     strcmp(json_string_value(st), "resolved") != 0))
        field = "status", why = "not 'firing' or 'resolved'";
    else if (!fp)
        field = "fingerprint", why = "missing";
    else if (!json_is_string(fp) || !json_string_length(fp) || json_string_length(fp) > 128)
        field = "fingerprint", why = "not a string of 1 to 128 characters";
    else if (an && !json_is_object(an))
        field = "annotations", why = "not an object";
    else if (grp && !json_is_string(grp))
        field = "group", why = "not a string";
    else if (ends && parse_ts(ends, &rec->ends_ms) != 0)
        field = "ends", why = "not RFC3339 or epoch milliseconds";
    if (field) {
        bad->reason = !st || !fp ? SN_IR_MISSING : SN_IR_TYPE;
        snprintf(bad->msg, sizeof(bad->msg), "field '%s': %s", field, why);
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(an, k, v)
    {
        if (!json_is_string(v)) {
            bad->reason = SN_IR_TYPE;
            snprintf(bad->msg, sizeof(bad->msg), "field 'annotations.%.64s': not a string", k);
            return -1;
        }
    }
    rec->metric = json_string_value(al);
    rec->level = json_string_value(st);
    rec->text = json_string_value(fp);
    rec->annotations = an;
    rec->group = grp ? json_string_value(grp) : NULL;
    rec->series = sn_series_hash(rec->text, NULL, 0);
    return 0;
}

static int parse_line(const char *line, size_t n, const sn_ingest_limits_t *lim, sn_record_t *rec,
                      sn_label_t *labels, json_t **keep, bad_t *bad)
{
    if (!snp_utf8_valid((const unsigned char *)line, n)) {
        bad->reason = SN_IR_UTF8;
        snprintf(bad->msg, sizeof(bad->msg), "invalid UTF-8");
        return -1;
    }
    json_error_t err;
    /* Integers as reals: a value beyond int64 is still a finite number, and epoch ms stay
     * exact (below 2^53). */
    json_t *o = json_loadb(line, n, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &err);
    if (!o) {
        int overflow = strstr(err.text, "overflow") != NULL;
        bad->reason = overflow ? SN_IR_NONFINITE : SN_IR_JSON;
        snprintf(bad->msg, sizeof(bad->msg), "%s: %.80s (column %d)",
                 overflow ? "field 'value': not a finite number" : "not JSON", err.text,
                 err.column);
        return -1;
    }
    *keep = o;
    if (!json_is_object(o)) {
        bad->reason = SN_IR_JSON;
        snprintf(bad->msg, sizeof(bad->msg), "not a JSON object");
        return -1;
    }
    json_t *m = json_object_get(o, "metric"), *lg = json_object_get(o, "log"),
           *ch = json_object_get(o, "change"), *al = json_object_get(o, "alert");
    int kinds = (m != NULL) + (lg != NULL) + (ch != NULL) + (al != NULL);
    if (kinds != 1) {
        bad->reason = kinds ? SN_IR_TYPE : SN_IR_MISSING;
        snprintf(bad->msg, sizeof(bad->msg),
                 kinds ? "a record has exactly one of 'metric', 'log', 'change', 'alert'"
                       : "field 'metric', 'log', 'change' or 'alert': missing");
        return -1;
    }
    json_t *ts = json_object_get(o, "ts");
    if (!ts) {
        bad->reason = SN_IR_MISSING;
        snprintf(bad->msg, sizeof(bad->msg), "field 'ts': missing");
        return -1;
    }
    if (parse_ts(ts, &rec->ts_ms) != 0) {
        bad->reason = SN_IR_TIME;
        snprintf(bad->msg, sizeof(bad->msg), "field 'ts': not RFC3339 or epoch milliseconds");
        return -1;
    }
    json_t *lab = json_object_get(o, "labels");
    rec->nlabels = 0;
    if (lab && !json_is_object(lab)) {
        bad->reason = SN_IR_LABELS;
        snprintf(bad->msg, sizeof(bad->msg), "field 'labels': not an object");
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(lab, k, v)
    {
        if (rec->nlabels >= lim->max_labels) {
            bad->reason = SN_IR_LABELS;
            snprintf(bad->msg, sizeof(bad->msg), "field 'labels': more than %zu labels",
                     lim->max_labels);
            return -1;
        }
        if (!label_name_ok(k) || !json_is_string(v) || json_string_length(v) > lim->max_label_len) {
            bad->reason = SN_IR_LABELS;
            snprintf(bad->msg, sizeof(bad->msg), "field 'labels.%.64s': %s", k,
                     !label_name_ok(k)    ? "bad label name"
                     : !json_is_string(v) ? "value must be a string"
                                          : "value too long");
            return -1;
        }
        labels[rec->nlabels].name = k;
        labels[rec->nlabels].value = json_string_value(v);
        rec->nlabels++;
    }
    qsort(labels, rec->nlabels, sizeof(*labels), cmp_label);
    rec->labels = labels;
    rec->metric = NULL;
    rec->text = NULL;
    rec->level = NULL;
    if (m) {
        rec->type = SN_REC_POINT;
        if (!json_is_string(m) || !metric_name_ok(json_string_value(m))) {
            bad->reason = SN_IR_NAME;
            snprintf(bad->msg, sizeof(bad->msg), "field 'metric': not a metric name");
            return -1;
        }
        json_t *val = json_object_get(o, "value");
        if (!val) {
            bad->reason = SN_IR_MISSING;
            snprintf(bad->msg, sizeof(bad->msg), "field 'value': missing");
            return -1;
        }
        if (!json_is_number(val)) {
            bad->reason = SN_IR_TYPE;
            snprintf(bad->msg, sizeof(bad->msg), "field 'value': not a number");
            return -1;
        }
        rec->value = json_number_value(val);
        if (!isfinite(rec->value)) {
            bad->reason = SN_IR_NONFINITE;
            snprintf(bad->msg, sizeof(bad->msg), "field 'value': not a finite number");
            return -1;
        }
        rec->metric = json_string_value(m);
        rec->series = sn_series_hash(rec->metric, labels, rec->nlabels);
    } else if (lg) {
        rec->type = SN_REC_LOG;
        json_t *lvl = json_object_get(o, "level");
        if (!json_is_string(lg) || (lvl && !json_is_string(lvl))) {
            bad->reason = SN_IR_TYPE;
            snprintf(bad->msg, sizeof(bad->msg), "field '%s': not a string",
                     json_is_string(lg) ? "level" : "log");
            return -1;
        }
        rec->text = json_string_value(lg);
        rec->level = lvl ? json_string_value(lvl) : NULL;
    } else if (al) {
        return parse_alert(o, al, rec, bad);
    } else {
        rec->type = SN_REC_CHANGE;
        if (!json_is_string(ch) || !json_string_length(ch)) {
            bad->reason = SN_IR_TYPE;
            snprintf(bad->msg, sizeof(bad->msg), "field 'change': not a word");
            return -1;
        }
        rec->text = json_string_value(ch);
    }
    return 0;
}

/* The fast path reads a copy of the line, since it terminates strings in place. */
static int try_fast(char *copy, size_t cap, const char *line, size_t n,
                    const sn_ingest_limits_t *lim, sn_record_t *rec, sn_label_t *labels)
{
    if (n >= cap)
        return 0;
    memcpy(copy, line, n);
    return sn_ingest_fast_point(copy, n, lim, rec, labels);
}

int sn_ingest_parse(const char *buf, size_t len, const char *origin, const sn_ingest_limits_t *lim,
                    sn_record_fn cb, void *arg, sn_ingest_stats_t *stats, sn_diag_t *errs,
                    size_t max_errors)
{
    sn_ingest_limits_t l = {65536, 32, 256, 0};
    if (lim) {
        l.jansson_only = lim->jansson_only;
        if (lim->max_line)
            l.max_line = lim->max_line;
        if (lim->max_labels)
            l.max_labels = lim->max_labels < 64 ? lim->max_labels : 64;
        if (lim->max_label_len)
            l.max_label_len = lim->max_label_len;
    }
    if (max_errors > 20)
        max_errors = 20;
    size_t described = 0, lineno = 0, pos = 0;
    sn_label_t labels[64];
    char fast[2048]; /* a line's copy for the fast path, which terminates strings in place */
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl ? 1 : 0);
        lineno++;
        if (n && line[n - 1] == '\r')
            n--;
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t'))
            k++;
        if (k == n)
            continue;
        bad_t bad = {0};
        sn_record_t rec;
        memset(&rec, 0, sizeof(rec));
        rec.line = lineno;
        json_t *keep = NULL;
        int rc;
        if (n > l.max_line) {
            bad.reason = SN_IR_TOO_LONG;
            snprintf(bad.msg, sizeof(bad.msg), "line longer than %zu bytes", l.max_line);
            rc = -1;
        } else if (!l.jansson_only && try_fast(fast, sizeof(fast), line, n, &l, &rec, labels)) {
            rc = 0;
        } else {
            rc = parse_line(line, n, &l, &rec, labels, &keep, &bad);
        }
        if (rc == 0) {
            stats->accepted++;
            cb(arg, &rec);
        } else {
            stats->rejected++;
            stats->by_reason[bad.reason]++;
            if (errs && described < max_errors) {
                sn_diag_add(errs, NULL, 0, "%s: line %zu: %s", origin ? origin : "input", lineno,
                            bad.msg);
                described++;
            }
        }
        json_decref(keep);
    }
    return 0;
}

static void ignore_record(void *arg, const sn_record_t *rec)
{
    (void)arg;
    (void)rec;
}

uint32_t sn_ingest_check(const char *buf, size_t len, char *why, size_t wl)
{
    sn_ingest_stats_t st;
    sn_diag_t errs;
    sn_diag_init(&errs);
    memset(&st, 0, sizeof(st));
    sn_ingest_parse(buf, len, "", NULL, ignore_record, NULL, &st, &errs, 1);
    if (wl)
        snprintf(why, wl, "%s",
                 errs.n == 0 ? "" : errs.msgs[0] + (strncmp(errs.msgs[0], ": ", 2) == 0 ? 2 : 0));
    sn_diag_free(&errs);
    return st.rejected > UINT32_MAX ? UINT32_MAX : (uint32_t)st.rejected;
}
