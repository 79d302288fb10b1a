/**
 * @file sigv4.c
 * AWS Signature Version 4 signer (see sigv4.h): canonical request, string to sign, signing key
 * and signature, with OpenSSL's SHA-256 and HMAC. Follows the AWS SigV4 test suite and
 * botocore's `SigV4Auth` for the cases that matter to us (non-S3 services, header signing).
 */
#include "sigv4.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SV4_ALGO "AWS4-HMAC-SHA256"
#define SV4_MAX_HEADERS 64

/* ---- growing buffer ------------------------------------------------------------------------ */

static int buf_grow(char **buf, size_t *n, size_t *cap, size_t more)
{
    if (*n + more + 1 <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < *n + more + 1)
        c *= 2;
    char *nb = realloc(*buf, c);
    if (!nb)
        return SN_ENOMEM;
    *buf = nb;
    *cap = c;
    return 0;
}

static int buf_add(char **buf, size_t *n, size_t *cap, const char *s, size_t len)
{
    if (buf_grow(buf, n, cap, len) != 0)
        return SN_ENOMEM;
    memcpy(*buf + *n, s, len);
    *n += len;
    (*buf)[*n] = '\0';
    return 0;
}

static int buf_str(char **buf, size_t *n, size_t *cap, const char *s)
{
    return buf_add(buf, n, cap, s, strlen(s));
}

static int unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

int sv4_uri_encode(const char *in, size_t len, int keep_slash, char **buf, size_t *n, size_t *cap)
{
    static const char hex[] = "0123456789ABCDEF";
    if (buf_grow(buf, n, cap, len * 3) != 0)
        return SN_ENOMEM;
    char *o = *buf + *n;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *n = (size_t)(o - *buf);
    *o = '\0';
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode %XX; @p out has room for @p len bytes. Returns the decoded length. */
static size_t pct_decode(const char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int h, l;
        if (in[i] == '%' && i + 2 < len && (h = hexval((unsigned char)in[i + 1])) >= 0 &&
            (l = hexval((unsigned char)in[i + 2])) >= 0) {
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    return o;
}

/* ---- hashing --------------------------------------------------------------------------------- */

static void to_hex(const unsigned char *d, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * n] = '\0';
}

void sv4_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data ? data : (const void *)"", len, md);
    to_hex(md, sizeof(md), out);
}

static int hmac256(const void *key, size_t klen, const void *msg, size_t mlen, unsigned char *out)
{
    unsigned int olen = 0;
    if (!HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &olen) || olen != 32)
        return SN_EINVAL;
    return 0;
}

int sv4_signing_key(const char *secret, const char *date8, const char *region, const char *service,
                    unsigned char out[32])
{
    if (!secret || !date8 || !region || !service)
        return SN_EINVAL;
    size_t slen = strlen(secret);
    char *k = malloc(slen + 5);
    if (!k)
        return SN_ENOMEM;
    memcpy(k, "AWS4", 4);
    memcpy(k + 4, secret, slen + 1);
    unsigned char a[32], b[32];
    int rc = hmac256(k, slen + 4, date8, strlen(date8), a);
    if (rc == 0)
        rc = hmac256(a, 32, region, strlen(region), b);
    if (rc == 0)
        rc = hmac256(b, 32, service, strlen(service), a);
    if (rc == 0)
        rc = hmac256(a, 32, "aws4_request", 12, out);
    OPENSSL_cleanse(k, slen + 4);
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    free(k);
    return rc;
}

/* ---- canonical parts --------------------------------------------------------------------- */

/* Dot segments removed, repeated '/' collapsed, trailing '/' kept (not for the root). */
static int normalize_path(const char *p, char **out)
{
    size_t len = strlen(p);
    char *res = malloc(len + 2);
    size_t *starts = malloc((len / 2 + 2) * sizeof(size_t));
    if (!res || !starts) {
        free(res);
        free(starts);
        return SN_ENOMEM;
    }
    size_t n = 0, depth = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && p[i] == '/')
            i++;
        size_t s = i;
        while (i < len && p[i] != '/')
            i++;
        size_t sl = i - s;
        if (sl == 0 || (sl == 1 && p[s] == '.'))
            continue;
        if (sl == 2 && p[s] == '.' && p[s + 1] == '.') {
            if (depth > 0)
                n = starts[--depth];
            continue;
        }
        starts[depth++] = n;
        res[n++] = '/';
        memcpy(res + n, p + s, sl);
        n += sl;
    }
    if (n == 0)
        res[n++] = '/';
    else if (len > 0 && p[len - 1] == '/')
        res[n++] = '/';
    res[n] = '\0';
    free(starts);
    *out = res;
    return 0;
}

typedef struct qpair {
    char *k, *v;
} qpair_t;

static int qpair_cmp(const void *a, const void *b)
{
    const qpair_t *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

/* Encode one decoded component into a new string. */
static char *enc_component(const char *raw, size_t len)
{
    char *tmp = malloc(len + 1);
    if (!tmp)
        return NULL;
    size_t dl = pct_decode(raw, len, tmp);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    if (buf_grow(&buf, &n, &cap, 0) != 0 || sv4_uri_encode(tmp, dl, 0, &buf, &n, &cap) != 0) {
        free(buf);
        buf = NULL;
    }
    free(tmp);
    return buf;
}

static int canonical_query(const char *q, char **buf, size_t *n, size_t *cap)
{
    if (!q || !*q)
        return 0;
    size_t count = 1;
    for (const char *s = q; *s; s++)
        count += *s == '&';
    qpair_t *pairs = calloc(count, sizeof(*pairs));
    if (!pairs)
        return SN_ENOMEM;
    size_t np = 0;
    int rc = 0;
    for (const char *s = q; *s && rc == 0;) {
        const char *e = strchr(s, '&');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len > 0) {
            const char *eq = memchr(s, '=', len);
            size_t kl = eq ? (size_t)(eq - s) : len;
            pairs[np].k = enc_component(s, kl);
            pairs[np].v = eq ? enc_component(eq + 1, len - kl - 1) : strdup("");
            if (!pairs[np].k || !pairs[np].v)
                rc = SN_ENOMEM;
            np++;
        }
        s += len + (e ? 1 : 0);
        if (!e)
            break;
    }
    if (rc == 0)
        qsort(pairs, np, sizeof(*pairs), qpair_cmp);
    for (size_t i = 0; i < np && rc == 0; i++) {
        if (i > 0)
            rc = buf_str(buf, n, cap, "&");
        if (rc == 0)
            rc = buf_str(buf, n, cap, pairs[i].k);
        if (rc == 0)
            rc = buf_str(buf, n, cap, "=");
        if (rc == 0)
            rc = buf_str(buf, n, cap, pairs[i].v);
    }
    for (size_t i = 0; i < np; i++) {
        free(pairs[i].k);
        free(pairs[i].v);
    }
    free(pairs);
    return rc;
}

typedef struct chdr {
    char *name;  /* lowercase */
    char *value; /* trimmed, whitespace runs collapsed */
    size_t order;
} chdr_t;

static int chdr_cmp(const void *a, const void *b)
{
    const chdr_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static char *lower_trim(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    char *o = malloc(len + 1);
    if (!o)
        return NULL;
    for (size_t i = 0; i < len; i++)
        o[i] = (char)tolower((unsigned char)s[i]);
    o[len] = '\0';
    return o;
}

static int ws(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static char *collapse(const char *s)
{
    char *o = malloc(strlen(s) + 1);
    if (!o)
        return NULL;
    size_t n = 0;
    int pending = 0;
    for (; *s; s++) {
        if (ws((unsigned char)*s)) {
            pending = n > 0;
            continue;
        }
        if (pending)
            o[n++] = ' ';
        pending = 0;
        o[n++] = *s;
    }
    o[n] = '\0';
    return o;
}

static int valid_scope_part(const char *s)
{
    if (!s || !*s || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '-')
            return 0;
    return 1;
}

static const char *find_header(const sv4_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

static int fail(char *err, size_t errlen, int rc, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return rc;
}

/* ---- sign ------------------------------------------------------------------------------------ */

int sv4_sign(const sv4_request_t *req, const sv4_creds_t *creds, const char *region,
             const char *service, int64_t epoch_s, unsigned flags, sv4_signed_t *out, char *err,
             size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!req || !req->method || !creds || !creds->access_key_id || !creds->secret_access_key ||
        !*creds->access_key_id || !*creds->secret_access_key)
        return fail(err, errlen, SN_EINVAL, "missing request or credentials");
    if (!valid_scope_part(region) || !valid_scope_part(service))
        return fail(err, errlen, SN_EINVAL, "region and service must be lowercase names");
    if (req->nheaders > SV4_MAX_HEADERS)
        return fail(err, errlen, SN_EINVAL, "too many headers");
    if (!find_header(req, "host"))
        return fail(err, errlen, SN_EINVAL, "the request has no Host header");
    for (const char *a = creds->access_key_id; *a; a++)
        if (!isalnum((unsigned char)*a))
            return fail(err, errlen, SN_EINVAL, "the access key id is not alphanumeric");

    /* Date: the request's X-Amz-Date, else the clock handed in. */
    const char *hdate = find_header(req, "x-amz-date");
    if (hdate) {
        char *d = collapse(hdate);
        if (!d)
            return SN_ENOMEM;
        int ok = strlen(d) == 16 && d[8] == 'T' && d[15] == 'Z';
        for (int i = 0; ok && i < 15; i++)
            ok = i == 8 || isdigit((unsigned char)d[i]);
        if (ok)
            memcpy(out->amz_date, d, 17);
        free(d);
        if (!ok)
            return fail(err, errlen, SN_EINVAL, "X-Amz-Date is not YYYYMMDDTHHMMSSZ");
    } else {
        time_t t = (time_t)epoch_s;
        struct tm tm;
        if (!gmtime_r(&t, &tm) ||
            strftime(out->amz_date, sizeof(out->amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16)
            return fail(err, errlen, SN_EINVAL, "cannot format the signing time");
        out->add_date = 1;
    }
    char date8[9];
    memcpy(date8, out->amz_date, 8);
    date8[8] = '\0';
    snprintf(out->scope, sizeof(out->scope), "%s/%s/%s/aws4_request", date8, region, service);

    const char *token = creds->session_token && *creds->session_token ? creds->session_token : NULL;
    if (token && !find_header(req, "x-amz-security-token"))
        out->add_token = 1;

    /* Headers: the request's, plus the ones we add. */
    size_t nh = req->nheaders + (size_t)out->add_date + (size_t)out->add_token;
    chdr_t *h = calloc(nh ? nh : 1, sizeof(*h));
    char *creq = NULL, *sh = NULL, *path = NULL;
    size_t cn = 0, ccap = 0, sn = 0, scap = 0, k = 0;
    int rc = SN_ENOMEM;
    if (!h)
        goto out;
    for (size_t i = 0; i < req->nheaders; i++, k++) {
        h[k].order = k;
        h[k].name = lower_trim(req->headers[i].name ? req->headers[i].name : "");
        h[k].value = collapse(req->headers[i].value ? req->headers[i].value : "");
        if (!h[k].name || !h[k].value) {
            k++;
            goto out;
        }
        if (!*h[k].name || strpbrk(h[k].name, ":\r\n ")) {
            k++;
            rc = fail(err, errlen, SN_EINVAL, "a header name is empty or malformed");
            goto out;
        }
    }
    if (out->add_date) {
        h[k].order = k;
        h[k].name = strdup("x-amz-date");
        h[k].value = strdup(out->amz_date);
        if (!h[k++].name || !h[k - 1].value)
            goto out;
    }
    if (out->add_token) {
        h[k].order = k;
        h[k].name = strdup("x-amz-security-token");
        h[k].value = collapse(token);
        if (!h[k++].name || !h[k - 1].value)
            goto out;
    }
    qsort(h, k, sizeof(*h), chdr_cmp);

    /* 1. canonical request */
    if (buf_str(&creq, &cn, &ccap, req->method) || buf_str(&creq, &cn, &ccap, "\n"))
        goto out;
    const char *rawpath = req->path && *req->path ? req->path : "/";
    if (flags & SV4_S3_PATH) {
        if (sv4_uri_encode(rawpath, strlen(rawpath), 1, &creq, &cn, &ccap))
            goto out;
    } else {
        if (normalize_path(rawpath, &path) ||
            sv4_uri_encode(path, strlen(path), 1, &creq, &cn, &ccap))
            goto out;
    }
    if (buf_str(&creq, &cn, &ccap, "\n") || canonical_query(req->query, &creq, &cn, &ccap) ||
        buf_str(&creq, &cn, &ccap, "\n"))
        goto out;
    for (size_t i = 0; i < k;) {
        size_t j = i;
        if (buf_str(&creq, &cn, &ccap, h[i].name) || buf_str(&creq, &cn, &ccap, ":"))
            goto out;
        if (sn && buf_str(&sh, &sn, &scap, ";"))
            goto out;
        if (buf_str(&sh, &sn, &scap, h[i].name))
            goto out;
        for (; j < k && strcmp(h[j].name, h[i].name) == 0; j++)
            if ((j > i && buf_str(&creq, &cn, &ccap, ",")) ||
                buf_str(&creq, &cn, &ccap, h[j].value))
                goto out;
        if (buf_str(&creq, &cn, &ccap, "\n"))
            goto out;
        i = j;
    }
    sv4_sha256_hex(req->body, req->body ? req->body_len : 0, out->payload_hash);
    if (buf_str(&creq, &cn, &ccap, "\n") || buf_str(&creq, &cn, &ccap, sh) ||
        buf_str(&creq, &cn, &ccap, "\n") || buf_str(&creq, &cn, &ccap, out->payload_hash))
        goto out;

    /* 2. string to sign */
    char creq_hash[65];
    sv4_sha256_hex(creq, cn, creq_hash);
    size_t stslen = strlen(SV4_ALGO) + 1 + 16 + 1 + strlen(out->scope) + 1 + 64 + 1;
    out->string_to_sign = malloc(stslen);
    if (!out->string_to_sign)
        goto out;
    snprintf(out->string_to_sign, stslen, "%s\n%s\n%s\n%s", SV4_ALGO, out->amz_date, out->scope,
             creq_hash);

    /* 3 + 4. signing key and signature */
    unsigned char key[32], sig[32];
    rc = sv4_signing_key(creds->secret_access_key, date8, region, service, key);
    if (rc == 0)
        rc = hmac256(key, sizeof(key), out->string_to_sign, strlen(out->string_to_sign), sig);
    OPENSSL_cleanse(key, sizeof(key));
    if (rc != 0) {
        fail(err, errlen, rc, "HMAC failed");
        goto out;
    }
    to_hex(sig, sizeof(sig), out->signature);

    /* 5. Authorization */
    size_t alen =
        strlen(SV4_ALGO) + strlen(creds->access_key_id) + strlen(out->scope) + sn + 64 + 64;
    out->authorization = malloc(alen);
    if (!out->authorization) {
        rc = SN_ENOMEM;
        goto out;
    }
    snprintf(out->authorization, alen, "%s Credential=%s/%s, SignedHeaders=%s, Signature=%s",
             SV4_ALGO, creds->access_key_id, out->scope, sh, out->signature);
    out->canonical_request = creq;
    out->signed_headers = sh;
    creq = sh = NULL;
    rc = 0;
out:
    if (rc == SN_ENOMEM && err && errlen && !*err)
        snprintf(err, errlen, "out of memory");
    for (size_t i = 0; h && i < k; i++) {
        free(h[i].name);
        if (h[i].value) {
            OPENSSL_cleanse(h[i].value, strlen(h[i].value));
            free(h[i].value);
        }
    }
    free(h);
    free(path);
    if (creq)
        OPENSSL_cleanse(creq, cn);
    free(creq);
    free(sh);
    return rc;
}

void sv4_signed_clear(sv4_signed_t *s)
{
    if (!s)
        return;
    if (s->canonical_request)
        OPENSSL_cleanse(s->canonical_request, strlen(s->canonical_request));
    free(s->canonical_request);
    free(s->string_to_sign);
    free(s->signed_headers);
    free(s->authorization);
    memset(s, 0, sizeof(*s));
}
