/**
 * @file retry.c
 * See retry.h.
 */
#include "retry.h"

uint64_t snr_rand(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545f4914f6cdd1dULL;
}

int64_t snr_ceiling(int64_t base_ms, int64_t max_ms, int attempts)
{
    int64_t ceil = base_ms;
    for (int i = 1; i < attempts && ceil < max_ms; i++)
        ceil *= 2;
    return ceil > max_ms ? max_ms : ceil;
}

int64_t snr_jitter(uint64_t *state, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + (int64_t)(snr_rand(state) % (uint64_t)(hi - lo + 1));
}

int64_t snr_backoff(uint64_t *state, int64_t base_ms, int64_t max_ms, int attempts)
{
    return snr_jitter(state, 0, snr_ceiling(base_ms, max_ms, attempts));
}

int snr_digits(const char *v, int64_t cap, int64_t *out)
{
    while (*v == ' ' || *v == '\t')
        v++;
    int64_t n = 0;
    int digits = 0;
    for (; *v >= '0' && *v <= '9' && n < cap; v++, digits++)
        n = n * 10 + (*v - '0');
    while (*v == ' ' || *v == '\t' || *v == '\r')
        v++;
    if (!digits || *v)
        return 0;
    *out = n;
    return 1;
}

int snr_retry_after(const sn_http_response_t *resp, int64_t *ms)
{
    const char *v = resp && resp->header ? resp->header(resp, "Retry-After") : NULL;
    int64_t s;
    if (!v || !snr_digits(v, 86400, &s))
        return 0;
    *ms = s * 1000;
    return 1;
}
