/**
 * @file ingest_fast.c
 * The fast path for the one line shape that carries nearly all telemetry: a flat point
 *
 *     {"ts":1795600800000,"metric":"latency_ms","value":12.5,"labels":{"service":"api"}}
 *
 * with keys in any order and optional whitespace. Profiles of the Kafka pipeline showed
 * jansson (tree building, one malloc per node, strtod) taking well over half of the ingest
 * thread, so such lines are read here in one pass without a tree.
 *
 * The rule that keeps this safe: the fast path either produces exactly the record the jansson
 * path (ingest.c) would produce, or it declines and the jansson path reads the line. It declines
 * on anything outside the shape: another key, a duplicate key, a backslash, a byte outside
 * printable ASCII in a string, a label value that is not a string, a number it cannot convert
 * exactly, a name the rules refuse. Errors are therefore always described by the jansson path,
 * and check_ingest compares both paths on valid, edge and mutated lines.
 */
#include "ingest.h"
#include "names.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Exact powers of ten: every one up to 1e22 is representable in a double. */
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

typedef struct cursor {
    char *p, *end;
} cursor_t;

static void skip_ws(cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n'))
        c->p++;
}

/** A string without escapes, terminated in place (its closing quote becomes NUL). */
static const char *take_string(cursor_t *c, size_t *len)
{
    if (c->p >= c->end || *c->p != '"')
        return NULL;
    char *s = ++c->p;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            *len = (size_t)(c->p - s);
            *c->p++ = '\0';
            return s;
        }
        if (ch == '\\' || ch < 0x20 || ch >= 0x7f)
            return NULL; /* escapes, control bytes and UTF-8 are the jansson path's */
        c->p++;
    }
    return NULL;
}

/** A JSON number as jansson reads it with JSON_DECODE_INT_AS_REAL (correctly rounded).
 * @p integer_only refuses a fraction or an exponent and caps the digits at 15. */
static int take_number(cursor_t *c, double *out, int integer_only)
{
    char *start = c->p;
    int neg = 0, digits = 0, frac_digits = 0, exp = 0, exp_neg = 0, exp_digits = 0;
    uint64_t mant = 0;
    if (c->p < c->end && *c->p == '-') {
        neg = 1;
        c->p++;
    }
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return -1;
    if (*c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9')
        return -1; /* leading zero: not JSON */
    for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++, digits++)
        if (digits < 19)
            mant = mant * 10 + (uint64_t)(*c->p - '0');
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++, frac_digits++)
            if (digits + frac_digits < 19)
                mant = mant * 10 + (uint64_t)(*c->p - '0');
        if (frac_digits == 0)
            return -1;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            exp_neg = *c->p++ == '-';
        for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++, exp_digits++)
            if (exp < 10000)
                exp = exp * 10 + (*c->p - '0');
        if (exp_digits == 0)
            return -1;
    }
    if (integer_only && (neg || frac_digits || exp_digits || digits > 15))
        return -1;
    int scale = (exp_neg ? -exp : exp) - frac_digits;
    if (digits + frac_digits <= 15 && scale >= -22 && scale <= 22) {
        /* Clinger's fast path: both operands exact, so one rounding, the correct one. */
        double v = (double)mant;
        v = scale < 0 ? v / pow10_exact[-scale] : v * pow10_exact[scale];
        *out = neg ? -v : v;
        return 0;
    }
    /* Rare shapes: the C library converts the token, as jansson does. */
    char tok[64];
    size_t n = (size_t)(c->p - start);
    if (n >= sizeof(tok))
        return -1;
    memcpy(tok, start, n);
    tok[n] = '\0';
    double v = strtod(tok, NULL);
    if (isinf(v))
        return -1; /* jansson reports the overflow */
    *out = v;
    return 0;
}

static int take_labels(cursor_t *c, const sn_ingest_limits_t *lim, sn_label_t *labels,
                       size_t *nlabels)
{
    size_t n = 0;
    if (*c->p != '{')
        return -1;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        *nlabels = 0;
        return 0;
    }
    for (;;) {
        size_t klen, vlen;
        skip_ws(c);
        const char *k = take_string(c, &klen);
        if (!k || !snp_label_name_ok(k, klen))
            return -1;
        skip_ws(c);
        if (c->p >= c->end || *c->p++ != ':')
            return -1;
        skip_ws(c);
        const char *v = take_string(c, &vlen);
        if (!v || vlen > lim->max_label_len || n >= lim->max_labels)
            return -1;
        /* Insertion in name order (the order qsort gives the jansson path); a repeated name is
         * a duplicate key, which jansson refuses. */
        size_t at = n;
        while (at > 0) {
            int cmp = strcmp(labels[at - 1].name, k);
            if (cmp == 0)
                return -1;
            if (cmp < 0)
                break;
            at--;
        }
        memmove(&labels[at + 1], &labels[at], (n - at) * sizeof(*labels));
        labels[at].name = k;
        labels[at].value = v;
        n++;
        skip_ws(c);
        if (c->p >= c->end)
            return -1;
        if (*c->p == ',') {
            c->p++;
            continue;
        }
        if (*c->p++ != '}')
            return -1;
        *nlabels = n;
        return 0;
    }
}

int sn_ingest_fast_point(char *line, size_t n, const sn_ingest_limits_t *lim, sn_record_t *rec,
                         sn_label_t *labels)
{
    enum { K_TS = 1, K_METRIC = 2, K_VALUE = 4, K_LABELS = 8 };
    cursor_t c = {line, line + n};
    unsigned seen = 0;
    const char *metric = NULL;
    size_t metric_len = 0;
    double value = 0, ts = 0;
    size_t nlabels = 0;
    skip_ws(&c);
    if (c.p >= c.end || *c.p++ != '{')
        return 0;
    for (;;) {
        size_t klen;
        skip_ws(&c);
        const char *k = take_string(&c, &klen);
        if (!k)
            return 0;
        skip_ws(&c);
        if (c.p >= c.end || *c.p++ != ':')
            return 0;
        skip_ws(&c);
        if (c.p >= c.end)
            return 0;
        unsigned key = klen == 2 && memcmp(k, "ts", 2) == 0       ? K_TS
                       : klen == 6 && memcmp(k, "metric", 6) == 0 ? K_METRIC
                       : klen == 5 && memcmp(k, "value", 5) == 0  ? K_VALUE
                       : klen == 6 && memcmp(k, "labels", 6) == 0 ? K_LABELS
                                                                  : 0;
        if (!key || (seen & key))
            return 0; /* another key, or a duplicate: the jansson path decides */
        seen |= key;
        if (key == K_TS) {
            if (take_number(&c, &ts, 1) != 0)
                return 0;
        } else if (key == K_METRIC) {
            metric = take_string(&c, &metric_len);
            if (!metric || !snp_metric_name_ok(metric, metric_len))
                return 0;
        } else if (key == K_VALUE) {
            if (take_number(&c, &value, 0) != 0)
                return 0;
        } else if (take_labels(&c, lim, labels, &nlabels) != 0) {
            return 0;
        }
        skip_ws(&c);
        if (c.p >= c.end)
            return 0;
        if (*c.p == ',') {
            c.p++;
            continue;
        }
        if (*c.p++ != '}')
            return 0;
        break;
    }
    skip_ws(&c);
    if (c.p != c.end || (seen & (K_TS | K_METRIC | K_VALUE)) != (K_TS | K_METRIC | K_VALUE))
        return 0;
    rec->type = SN_REC_POINT;
    rec->ts_ms = (int64_t)ts;
    rec->metric = metric;
    rec->value = value;
    rec->labels = labels;
    rec->nlabels = nlabels;
    rec->text = NULL;
    rec->level = NULL;
    rec->series = sn_series_hash(metric, labels, nlabels);
    return 1;
}
