/**
 * @file kafka_lines.c
 * The Kafka input's view of the core's ingest format: how many records a message holds, and
 * which of its lines the core would refuse and why. The check mirrors core/ingest.c rule for
 * rule (the plugin cannot link the core); it runs only for a batch whose accepted count came
 * back short, to find the messages that go to the dead-letter topic.
 */
#include "kafka-internal.h"
#include "names.h"
#include "utf8.h"

#include <math.h>
#include <stdio.h>
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

/* Integers arrive as reals (the core decodes with JSON_DECODE_INT_AS_REAL, and so do we). */
static int ts_ok(const sn_host_t *h, json_t *v)
{
    if (json_is_real(v)) {
        double d = json_real_value(v);
        return isfinite(d) && d >= 0 && d <= 9.2e18;
    }
    if (json_is_integer(v))
        return json_integer_value(v) >= 0;
    int64_t ms;
    return json_is_string(v) && h->parse_time(h, json_string_value(v), &ms) == 0 && ms >= 0;
}

static const char *alert_problem(const sn_host_t *h, json_t *o, json_t *al, const char **field)
{
    json_t *st = json_object_get(o, "status"), *fp = json_object_get(o, "fingerprint"),
           *an = json_object_get(o, "annotations"), *ends = json_object_get(o, "ends"),
           *grp = json_object_get(o, "group");
    if (!json_is_string(al) ||
        !snp_metric_name_ok(json_string_value(al), strlen(json_string_value(al))))
        return *field = "alert", "not an alert name (a metric name)";
    if (!st)
        return *field = "status", "missing";
    if (!json_is_string(st) || (strcmp(json_string_value(st), "firing") != 0 &&
                                strcmp(json_string_value(st), "resolved") != 0))
        return *field = "status", "not 'firing' or 'resolved'";
    if (!fp)
        return *field = "fingerprint", "missing";
    if (!json_is_string(fp) || !json_string_length(fp) || json_string_length(fp) > 128)
        return *field = "fingerprint", "not a string of 1 to 128 characters";
    if (an && !json_is_object(an))
        return *field = "annotations", "not an object";
    if (grp && !json_is_string(grp))
        return *field = "group", "not a string";
    if (ends && !ts_ok(h, ends))
        return *field = "ends", "not RFC3339 or epoch milliseconds";
    const char *k;
    json_t *v;
    json_object_foreach(an, k, v)
    {
        if (!json_is_string(v))
            return *field = "annotations", "a value is not a string";
    }
    return NULL;
}

/* 0 when the core takes the line, else -1 with the reason in why. */
static int line_check(const sn_host_t *h, const char *line, size_t n, char *why, size_t wl)
{
    if (n > KC_MAX_LINE) {
        snprintf(why, wl, "line longer than %d bytes", KC_MAX_LINE);
        return -1;
    }
    if (!snp_utf8_valid((const unsigned char *)line, n)) {
        snprintf(why, wl, "invalid UTF-8");
        return -1;
    }
    json_error_t err;
    json_t *o = json_loadb(line, n, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &err);
    if (!o) {
        snprintf(why, wl, "not JSON: %.80s (column %d)", err.text, err.column);
        return -1;
    }
    int rc = -1;
    const char *field = NULL, *problem = NULL;
    if (!json_is_object(o)) {
        snprintf(why, wl, "not a JSON object");
        goto out;
    }
    json_t *m = json_object_get(o, "metric"), *lg = json_object_get(o, "log"),
           *ch = json_object_get(o, "change"), *al = json_object_get(o, "alert");
    int kinds = (m != NULL) + (lg != NULL) + (ch != NULL) + (al != NULL);
    if (kinds != 1) {
        snprintf(why, wl, "%s",
                 kinds ? "a record has exactly one of 'metric', 'log', 'change', 'alert'"
                       : "field 'metric', 'log', 'change' or 'alert': missing");
        goto out;
    }
    json_t *ts = json_object_get(o, "ts");
    if (!ts) {
        field = "ts", problem = "missing";
    } else if (!ts_ok(h, ts)) {
        field = "ts", problem = "not RFC3339 or epoch milliseconds";
    } else {
        json_t *lab = json_object_get(o, "labels");
        if (lab && !json_is_object(lab)) {
            field = "labels", problem = "not an object";
        } else if (json_object_size(lab) > KC_MAX_LABELS) {
            field = "labels", problem = "too many labels";
        } else {
            const char *k;
            json_t *v;
            json_object_foreach(lab, k, v)
            {
                if (!snp_label_name_ok(k, strlen(k)) || !json_is_string(v) ||
                    json_string_length(v) > KC_MAX_LABEL_LEN) {
                    field = "labels", problem = !snp_label_name_ok(k, strlen(k)) ? "bad label name"
                                                : !json_is_string(v) ? "value must be a string"
                                                                     : "value too long";
                    break;
                }
            }
        }
    }
    if (!problem) {
        if (m) {
            json_t *val = json_object_get(o, "value");
            if (!json_is_string(m) ||
                !snp_metric_name_ok(json_string_value(m), strlen(json_string_value(m))))
                field = "metric", problem = "not a metric name";
            else if (!val)
                field = "value", problem = "missing";
            else if (!json_is_number(val))
                field = "value", problem = "not a number";
            else if (!isfinite(json_number_value(val)))
                field = "value", problem = "not a finite number";
        } else if (lg) {
            json_t *lvl = json_object_get(o, "level");
            if (!json_is_string(lg))
                field = "log", problem = "not a string";
            else if (lvl && !json_is_string(lvl))
                field = "level", problem = "not a string";
        } else if (al) {
            problem = alert_problem(h, o, al, &field);
        } else if (!json_is_string(ch) || !json_string_length(ch)) {
            field = "change", problem = "not a word";
        }
    }
    if (problem) {
        snprintf(why, wl, "field '%s': %s", field, problem);
        goto out;
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

uint32_t kc_check_message(const sn_host_t *h, const char *buf, size_t len, char *why, size_t wl)
{
    uint32_t bad = 0, lineno = 0;
    size_t pos = 0;
    if (wl)
        why[0] = '\0';
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - line) : len - pos;
        pos += l + (nl ? 1 : 0);
        lineno++;
        if (l && line[l - 1] == '\r')
            l--;
        size_t k = 0;
        while (k < l && (line[k] == ' ' || line[k] == '\t'))
            k++;
        if (k == l)
            continue;
        char one[200];
        if (line_check(h, line, l, one, sizeof(one)) != 0) {
            if (bad == 0 && wl)
                snprintf(why, wl, "line %u: %s", lineno, one);
            bad++;
        }
    }
    return bad;
}
