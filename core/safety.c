/**
 * @file safety.c
 * The core's safety primitives: canonical targets and whitelist matching (refusing every
 * encoding trick rather than decoding it), token buckets, the circuit breaker and the
 * approval policy. Pure functions of their inputs and a caller-supplied clock.
 */
#include "sentinel-internal.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

int sn_target_canon(const char *in, char *out, size_t outlen, char *why, size_t whylen)
{
    size_t n = in ? strlen(in) : 0;
    if (n == 0 || n > 512 || n + 1 > outlen) {
        snprintf(why, whylen, "target must be 1..512 characters");
        return SN_EINVAL;
    }
    size_t seg_start = 0, segs = 0;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '/' || c == '\0') {
            size_t len = i - seg_start;
            if (len == 0) {
                snprintf(why, whylen, "empty path segment");
                return SN_EINVAL;
            }
            if (len > 253) {
                snprintf(why, whylen, "segment longer than 253 characters");
                return SN_EINVAL;
            }
            if ((len == 1 && in[seg_start] == '.') ||
                (len == 2 && in[seg_start] == '.' && in[seg_start + 1] == '.')) {
                snprintf(why, whylen, "'.' and '..' segments are refused");
                return SN_EINVAL;
            }
            segs++;
            seg_start = i + 1;
            if (c)
                out[i] = '/';
            continue;
        }
        if (c >= 0x80 || c < 0x20 || c == 0x7f || isspace(c)) {
            snprintf(why, whylen, "non-ASCII, control or space character");
            return SN_EINVAL;
        }
        if (c == '%' || c == '*' || c == '?' || c == '\\') {
            snprintf(why, whylen, "'%c' is not allowed in a target", c);
            return SN_EINVAL;
        }
        out[i] = (char)(segs == 0 ? tolower(c) : c);
    }
    out[n] = '\0';
    if (segs < 2) {
        snprintf(why, whylen, "target must be kind/name or kind/namespace/name");
        return SN_EINVAL;
    }
    return 0;
}

/* '*' matches any run of characters within one segment. */
static bool seg_match(const char *p, size_t pl, const char *s, size_t sl, bool icase)
{
    if (pl == 0)
        return sl == 0;
    if (*p == '*') {
        for (size_t k = 0; k <= sl; k++)
            if (seg_match(p + 1, pl - 1, s + k, sl - k, icase))
                return true;
        return false;
    }
    if (sl == 0)
        return false;
    char a = icase ? (char)tolower((unsigned char)*p) : *p;
    char b = icase ? (char)tolower((unsigned char)*s) : *s;
    return a == b && seg_match(p + 1, pl - 1, s + 1, sl - 1, icase);
}

bool sn_whitelist_match(const char *const *patterns, const char *canon_target)
{
    for (size_t i = 0; patterns && patterns[i]; i++) {
        const char *p = patterns[i], *t = canon_target;
        if (strstr(p, "..") || strstr(p, "//") || !*p)
            continue;
        bool ok = true;
        for (int seg = 0; ok; seg++) {
            const char *pe = strchr(p, '/'), *te = strchr(t, '/');
            size_t pl = pe ? (size_t)(pe - p) : strlen(p);
            size_t tl = te ? (size_t)(te - t) : strlen(t);
            if (!seg_match(p, pl, t, tl, seg == 0)) {
                ok = false;
                break;
            }
            if (!pe || !te) {
                ok = !pe && !te; /* segment counts must match */
                break;
            }
            p = pe + 1;
            t = te + 1;
        }
        if (ok)
            return true;
    }
    return false;
}

void sn_bucket_init(sn_bucket_t *b, double capacity, int64_t period_ms, int64_t now_ms)
{
    b->capacity = capacity;
    b->tokens = capacity;
    b->refill_per_ms = period_ms > 0 ? capacity / (double)period_ms : 0;
    b->last_ms = now_ms;
}

bool sn_bucket_take(sn_bucket_t *b, int64_t now_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * b->refill_per_ms;
        if (b->tokens > b->capacity)
            b->tokens = b->capacity;
        b->last_ms = now_ms;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return true;
    }
    return false;
}

void sn_breaker_init(sn_breaker_t *b, double threshold, int min_calls, int64_t window_ms,
                     int64_t cooldown_ms)
{
    memset(b, 0, sizeof(*b));
    b->threshold = threshold;
    b->min_calls = min_calls;
    b->window_ms = window_ms;
    b->cooldown_ms = cooldown_ms;
}

void sn_breaker_record(sn_breaker_t *b, bool failed, int64_t now_ms)
{
    size_t cap = sizeof(b->ts) / sizeof(b->ts[0]);
    if (b->opened_at) {
        /* Half-open probe: a success closes and forgets, a failure re-opens. */
        if (now_ms - b->opened_at >= b->cooldown_ms) {
            if (failed) {
                b->opened_at = now_ms;
            } else {
                b->opened_at = 0;
                b->count = b->head = 0;
            }
        }
        return;
    }
    b->ts[b->head] = now_ms;
    b->fail[b->head] = failed;
    b->head = (b->head + 1) % cap;
    if (b->count < cap)
        b->count++;
    size_t calls = 0, fails = 0;
    for (size_t i = 0; i < b->count; i++) {
        if (now_ms - b->ts[i] > b->window_ms)
            continue;
        calls++;
        fails += b->fail[i];
    }
    if ((int)calls >= b->min_calls && (double)fails / (double)calls > b->threshold)
        b->opened_at = now_ms ? now_ms : 1;
}

bool sn_breaker_closed(sn_breaker_t *b, int64_t now_ms)
{
    (void)now_ms;
    return b->opened_at == 0;
}

bool sn_policy_auto_approve(sn_risk_t risk, int downtime_s, int max_downtime_s, bool breaker_closed)
{
    return risk == SN_RISK_LOW && downtime_s <= max_downtime_s && breaker_closed;
}

const char *sn_risk_name(sn_risk_t r)
{
    return r == SN_RISK_LOW ? "low" : r == SN_RISK_MEDIUM ? "medium" : "high";
}

int sn_risk_parse(const char *s, sn_risk_t *out)
{
    if (!s)
        return SN_EINVAL;
    if (strcmp(s, "low") == 0)
        *out = SN_RISK_LOW;
    else if (strcmp(s, "medium") == 0)
        *out = SN_RISK_MEDIUM;
    else if (strcmp(s, "high") == 0)
        *out = SN_RISK_HIGH;
    else
        return SN_EINVAL;
    return 0;
}
