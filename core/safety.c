/**
 * @file safety.c
 * The core's safety primitives, kept here so no executor can skip them: canonical targets and
 * whitelist matching, token buckets, the circuit breaker and the approval policy. Pure functions
 * of their inputs and a caller-supplied clock, so tests drive them with a fake one.
 *
 * Targets are refused rather than normalised: a target holding "..", an encoded character or a
 * wildcard is an attempt to reach outside the whitelist (or a bug), and decoding it would mean
 * guessing what the executor behind it will make of it.
 */
#include "sentinel-internal.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define TARGET_MAX 512
#define SEGMENT_MAX 253 /* a DNS name, the longest Kubernetes object name */

static int refuse(char *why, size_t whylen, const char *phrase)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", phrase);
    return SN_EINVAL;
}

/* Characters that mean something to a URL, a shell or a path in whatever an executor builds
 * from the target. Percent-encoding and wildcards are the main ones; the rest has no business in
 * a resource name either. */
static bool forbidden(unsigned char c)
{
    return strchr("%*?\\#;&|`$<>\"'", c) != NULL;
}

/**
 * Canonicalise @p in into @p out: the kind (first segment) lower-cased, everything else kept
 * exactly. Refused with a short phrase in @p why: fewer than three segments, an empty, "." or
 * ".." segment, '%', '*', '?', '\\' or other URL/shell punctuation, whitespace, control or
 * non-ASCII characters, a segment over 253 or a target over 512 characters.
 * Ownership: borrows @p in; writes @p out (outlen >= strlen(in) + 1) and @p why.
 */
int sn_target_canon(const char *in, char *out, size_t outlen, char *why, size_t whylen)
{
    size_t n = in ? strlen(in) : 0;
    if (n == 0)
        return refuse(why, whylen, "empty target");
    if (n > TARGET_MAX)
        return refuse(why, whylen, "target longer than 512 characters");
    if (!out || n + 1 > outlen)
        return refuse(why, whylen, "target does not fit the buffer");
    size_t seg_start = 0, segs = 0;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '/' || c == '\0') {
            size_t len = i - seg_start;
            if (len == 0)
                return refuse(why, whylen, "empty path segment");
            if (len > SEGMENT_MAX)
                return refuse(why, whylen, "segment longer than 253 characters");
            if ((len == 1 && in[seg_start] == '.') ||
                (len == 2 && in[seg_start] == '.' && in[seg_start + 1] == '.'))
                return refuse(why, whylen, "'.' and '..' segments are refused");
            segs++;
            seg_start = i + 1;
            out[i] = (char)c;
            continue;
        }
        if (c >= 0x80)
            return refuse(why, whylen, "non-ASCII character");
        if (c < 0x20 || c == 0x7f)
            return refuse(why, whylen, "control character");
        if (isspace(c))
            return refuse(why, whylen, "whitespace");
        if (forbidden(c)) {
            if (why && whylen)
                snprintf(why, whylen, "'%c' is not allowed in a target", c);
            return SN_EINVAL;
        }
        /* Only the kind is case-insensitive; names and namespaces are compared exactly. */
        out[i] = (char)(segs == 0 ? tolower(c) : c);
    }
    if (segs < 3) {
        out[0] = '\0';
        return refuse(why, whylen, "target must be kind/namespace/name");
    }
    return 0;
}

/* '*' matches any run (possibly empty) of characters of one segment. Iterative with one
 * backtrack point, so a pattern full of stars stays linear-ish instead of exponential. */
static bool seg_match(const char *p, size_t pl, const char *s, size_t sl, bool icase)
{
    size_t pi = 0, si = 0, star = (size_t)-1, mark = 0;
    while (si < sl) {
        if (pi < pl && p[pi] == '*') {
            star = pi++;
            mark = si;
            continue;
        }
        if (pi < pl) {
            char a = p[pi], b = s[si];
            if (icase) {
                a = (char)tolower((unsigned char)a);
                b = (char)tolower((unsigned char)b);
            }
            if (a == b) {
                pi++;
                si++;
                continue;
            }
        }
        if (star == (size_t)-1)
            return false;
        pi = star + 1;
        si = ++mark;
    }
    while (pi < pl && p[pi] == '*')
        pi++;
    return pi == pl;
}

/* A pattern that could never be a canonical target's shape is ignored: "..", "." or empty
 * segments. Such a pattern is refused at load; this keeps one that slipped through inert. */
static bool pattern_sane(const char *p)
{
    if (!*p || strstr(p, ".."))
        return false;
    const char *seg = p;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (len == 0 || (len == 1 && seg[0] == '.'))
            return false;
        if (!end)
            return true;
        seg = end + 1;
    }
}

/**
 * True when @p canon_target (from sn_target_canon) matches one of @p patterns (NULL-terminated).
 * Segment counts must be equal; '*' matches any run within one segment, never a '/'; the kind
 * segment compares case-insensitively, the others exactly. A pattern with "..", "." or empty
 * segments never matches. Ownership: borrows both.
 */
bool sn_whitelist_match(const char *const *patterns, const char *canon_target)
{
    if (!patterns || !canon_target || !*canon_target)
        return false;
    for (size_t i = 0; patterns[i]; i++) {
        const char *p = patterns[i], *t = canon_target;
        if (!pattern_sane(p))
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

/** A full bucket of @p capacity tokens refilled continuously over @p period_ms.
 * Ownership: caller owns @p b. Thread: the owner's. */
void sn_bucket_init(sn_bucket_t *b, double capacity, int64_t period_ms, int64_t now_ms)
{
    b->capacity = capacity > 0 ? capacity : 0;
    b->tokens = b->capacity;
    b->refill_per_ms = period_ms > 0 ? b->capacity / (double)period_ms : 0;
    b->last_ms = now_ms;
}

/** Take one token at @p now_ms; false when none is left (the caller refuses the action). */
bool sn_bucket_take(sn_bucket_t *b, int64_t now_ms)
{
    /* A clock that steps back refills nothing (and does not move the mark back). */
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * b->refill_per_ms;
        if (b->tokens > b->capacity)
            b->tokens = b->capacity;
        b->last_ms = now_ms;
    }
    /* The epsilon absorbs rounding in the refill so a full period gives back a whole token. */
    if (b->tokens >= 1.0 - 1e-9) {
        b->tokens -= 1.0;
        if (b->tokens < 0)
            b->tokens = 0;
        return true;
    }
    return false;
}

#define RING (sizeof(((sn_breaker_t *)0)->ts) / sizeof(((sn_breaker_t *)0)->ts[0]))

/** A closed breaker. Ownership: caller owns @p b. Thread: the owner's. */
void sn_breaker_init(sn_breaker_t *b, double threshold, int min_calls, int64_t window_ms,
                     int64_t cooldown_ms)
{
    memset(b, 0, sizeof(*b));
    b->threshold = threshold;
    b->min_calls = min_calls > 0 ? min_calls : 1;
    b->window_ms = window_ms;
    b->cooldown_ms = cooldown_ms;
}

static void breaker_clear(sn_breaker_t *b)
{
    b->opened_at = 0;
    b->probe_at = 0;
    b->head = b->count = 0;
}

/** Record one call's outcome at @p now_ms; may open, re-open or close the breaker. */
void sn_breaker_record(sn_breaker_t *b, bool failed, int64_t now_ms)
{
    if (b->opened_at) {
        /* While open, outcomes of calls started before it opened change nothing. After the
         * cooldown the first outcome is the half-open probe: a failure opens it again for a
         * full cooldown, a success closes it with a clean window. */
        if (now_ms - b->opened_at >= b->cooldown_ms) {
            b->probe_at = 0;
            if (failed)
                b->opened_at = now_ms ? now_ms : 1;
            else
                breaker_clear(b);
        }
        return;
    }
    b->ts[b->head] = now_ms;
    b->fail[b->head] = failed;
    b->head = (b->head + 1) % RING;
    if (b->count < RING)
        b->count++;
    /* The ring's filled slots are 0..count-1 until it wraps, then all of them. */
    size_t calls = 0, fails = 0;
    for (size_t i = 0; i < b->count; i++) {
        if (now_ms - b->ts[i] > b->window_ms)
            continue;
        calls++;
        fails += b->fail[i];
    }
    if ((int)calls >= b->min_calls && (double)fails / (double)calls > b->threshold)
        b->opened_at = now_ms ? now_ms : 1; /* 0 means closed */
}

/** True when a call may go ahead: closed, or half-open after the cooldown with the probe slot
 * free. A query: sn_breaker_admit takes the slot. */
bool sn_breaker_closed(sn_breaker_t *b, int64_t now_ms)
{
    return b->opened_at == 0 || (now_ms - b->opened_at >= b->cooldown_ms &&
                                 (b->probe_at == 0 || now_ms - b->probe_at >= b->cooldown_ms));
}

bool sn_breaker_admit(sn_breaker_t *b, int64_t now_ms)
{
    if (b->opened_at == 0)
        return true;
    if (!sn_breaker_closed(b, now_ms))
        return false;
    /* Half-open: this call is the probe; others wait for its outcome. A probe whose outcome
     * never comes (a crash) frees the slot after another cooldown. */
    b->probe_at = now_ms ? now_ms : 1;
    return true;
}

/** True only for low risk, 0 <= downtime_s <= max_downtime_s, with the breaker closed. */
bool sn_policy_auto_approve(sn_risk_t risk, int downtime_s, int max_downtime_s, bool breaker_closed)
{
    return risk == SN_RISK_LOW && downtime_s >= 0 && downtime_s <= max_downtime_s && breaker_closed;
}

/** "low", "medium", "high" (or "unknown"). Ownership: static string. */
const char *sn_risk_name(sn_risk_t r)
{
    switch (r) {
    case SN_RISK_LOW:
        return "low";
    case SN_RISK_MEDIUM:
        return "medium";
    case SN_RISK_HIGH:
        return "high";
    }
    return "unknown";
}

/** Parse "low", "medium" or "high" (any case). Returns 0 or SN_EINVAL, *out untouched. */
int sn_risk_parse(const char *s, sn_risk_t *out)
{
    if (!s || !out)
        return SN_EINVAL;
    if (strcasecmp(s, "low") == 0)
        *out = SN_RISK_LOW;
    else if (strcasecmp(s, "medium") == 0)
        *out = SN_RISK_MEDIUM;
    else if (strcasecmp(s, "high") == 0)
        *out = SN_RISK_HIGH;
    else
        return SN_EINVAL;
    return 0;
}
