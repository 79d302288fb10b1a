/**
 * @file util.c
 * Small shared helpers: hashing, constant-time compare, UUIDv7, canonical JSON, series ids and
 * time parsing. Everything here is pure or thread-safe.
 */
#include "sentinel-internal.h"

#include <stddef.h>

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void sn_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    to_hex(md, 32, out);
}

void sn_hmac_sha256_hex(const void *key, size_t klen, const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    HMAC(EVP_sha256(), key, (int)klen, data, len, md, &mdlen);
    to_hex(md, 32, out);
}

bool sn_ct_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    /* Compare over the longer length so timing does not reveal a prefix match. */
    size_t n = la > lb ? la : lb;
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < n; i++) {
        unsigned char ca = i < la ? (unsigned char)a[i] : 0;
        unsigned char cb = i < lb ? (unsigned char)b[i] : 0;
        diff |= ca ^ cb;
    }
    return diff == 0;
}

void sn_uuid7(char out[37])
{
    unsigned char b[16];
    uint64_t ms = (uint64_t)sn_now_ms();
    if (RAND_bytes(b, sizeof(b)) != 1)
        memset(b, 0, sizeof(b)); /* the timestamp still orders ids; never fails in practice */
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x70);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char hex[33];
    to_hex(b, 16, hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

char *sn_json_canonical(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

/* FNV-1a over metric, then each "name=value" with separators that cannot occur in UTF-8 text,
 * finished with a murmur-style mix so low bits shard well. */
uint64_t sn_series_hash(const char *metric, const sn_label_t *labels, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
#define SN_FNV(c) (h = (h ^ (unsigned char)(c)) * 1099511628211ULL)
    for (const char *p = metric; *p; p++)
        SN_FNV(*p);
    for (size_t i = 0; i < n; i++) {
        SN_FNV(0xff);
        for (const char *p = labels[i].name; *p; p++)
            SN_FNV(*p);
        SN_FNV(0xfe);
        for (const char *p = labels[i].value; *p; p++)
            SN_FNV(*p);
    }
#undef SN_FNV
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int sn_parse_time_ms(const char *s, int64_t *out)
{
    if (!s || !*s)
        return SN_EINVAL;
    const char *p = s;
    int all_digits = 1;
    for (const char *q = s; *q; q++)
        if (!isdigit((unsigned char)*q) && !(q == s && *q == '-'))
            all_digits = 0;
    if (all_digits) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (*end)
            return SN_EINVAL;
        *out = v;
        return 0;
    }
    int y, mo, d, h, mi, se;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return SN_EINVAL;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &se))
        return SN_EINVAL;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h > 23 || mi > 59 || se > 60)
        return SN_EINVAL; /* 2026-02-31 is refused, not read as 3 March */
    int64_t frac_ms = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        while (isdigit((unsigned char)*p)) {
            if (nd < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
            nd++;
            p++;
        }
        if (nd == 0)
            return SN_EINVAL;
        for (; nd < 3; nd++)
            frac_ms *= 10;
    }
    int64_t off_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om))
            return SN_EINVAL;
        off_s = sign * (oh * 3600 + om * 60);
    } else {
        return SN_EINVAL;
    }
    if (*p)
        return SN_EINVAL;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off_s;
    *out = secs * 1000 + frac_ms;
    return 0;
}

void sn_format_time_ms(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int rem = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    /* Clamp to the ranges gmtime_r guarantees so the compiler can prove the size. */
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, rem % 1000);
}

int64_t sn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sn_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t sn_detector_state_size(const sn_detector_ops_t *ops, const void *self)
{
    int has = ops->struct_size >=
                  offsetof(sn_detector_ops_t, state_size_of) + sizeof(ops->state_size_of) &&
              ops->state_size_of;
    size_t n = has ? ops->state_size_of(self) : ops->state_size;
    /* Never trust a plugin beyond its own declared bound. */
    return n <= ops->state_size ? n : ops->state_size;
}
