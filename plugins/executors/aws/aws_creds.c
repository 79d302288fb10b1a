/**
 * @file aws_creds.c
 * Credential chain of the `aws` executor (see sigv4.h), in botocore's order:
 *
 *  1. environment: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
 *     skipped when a profile was configured explicitly, as botocore does;
 *  2. shared credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials), section
 *     [PROFILE] (or [profile PROFILE]): aws_access_key_id, aws_secret_access_key,
 *     aws_session_token; read on the host's offload pool, never on the loop;
 *  3. container credentials endpoint: AWS_CONTAINER_CREDENTIALS_FULL_URI (https, or http to a
 *     loopback or the ECS/EKS link-local address) or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
 *     (under http://169.254.170.2), with the Authorization header from
 *     AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or AWS_CONTAINER_AUTHORIZATION_TOKEN;
 *  4. instance metadata (IMDSv2 only): PUT /latest/api/token, then GET
 *     /latest/meta-data/iam/security-credentials/ for the role and GET .../ROLE for the keys,
 *     both with X-aws-ec2-metadata-token. No IMDSv1 fallback.
 *
 * The environment is read at resolution time, so credentials rotated in the environment of a
 * running daemon are not seen until the cache expires (five minutes for env and file
 * credentials; temporary credentials until five minutes before their Expiration).
 * A refresh that fails while cached temporary credentials are still valid keeps using them.
 *
 * Secrets are wiped before they are freed and never appear in an error phrase: an endpoint's
 * answer body is never quoted.
 */
#include "sigv4.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define AWC_FILE_MAX (1 << 20)         /* credentials file size limit */
#define AWC_STATIC_TTL_MS (300 * 1000) /* env and file credentials are re-read after this */
#define AWC_REFRESH_MARGIN_MS (300 * 1000)
#define AWC_IMDS_TOKEN_TTL_S 21600
#define AWC_MAX_WAITERS 4096
#define AWC_ERR 512

typedef struct awc_waiter {
    struct awc_waiter *next;
    awc_done_fn done;
    void *arg;
} awc_waiter_t;

/* One offload read or HTTP request in flight. c is NULL once the chain was freed. */
typedef struct awc_job {
    awc_t *c;
    int kind; /* JOB_FILE, JOB_TOKEN_FILE, JOB_HTTP */
    char *path, *profile;
    /* file results (worker thread fills them) */
    char *ak, *sk, *tok;
    int found; /* 1: profile found with keys; 0: no such profile; -1: unreadable */
    char why[160];
} awc_job_t;

enum { JOB_FILE = 1, JOB_TOKEN_FILE, JOB_HTTP };
enum { ST_ENV = 0, ST_FILE, ST_CONTAINER, ST_IMDS, ST_DONE };
enum { IM_TOKEN = 1, IM_ROLE, IM_CREDS };

struct awc {
    const sn_host_t *host;
    awc_source_t source;
    char *profile;
    int profile_explicit;
    char *file;
    char *container_host, *imds;
    int imds_disabled;
    long timeout_ms;

    /* cache */
    int have;
    char *ak, *sk, *tok;
    int64_t expires_ms; /* wall clock; 0 = static credentials */
    int64_t cached_mono;
    char src[96];

    /* resolution */
    int resolving;
    int stage;
    int imds_step;
    awc_job_t *job;
    char *auth_token; /* container Authorization header value */
    char *imds_token;
    int64_t imds_token_mono;
    char role[128];
    char err[AWC_ERR];
    awc_waiter_t *waiters, **tail;
    size_t nwaiters;
};

/* ---- small helpers ------------------------------------------------------------------------- */

static void wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static void add_err(awc_t *c, const char *fmt, const char *a, const char *b)
{
    size_t n = strlen(c->err);
    if (n >= sizeof(c->err) - 4)
        return;
    snprintf(c->err + n, sizeof(c->err) - n, "%s", n ? "; " : "");
    n = strlen(c->err);
    snprintf(c->err + n, sizeof(c->err) - n, fmt, a ? a : "", b ? b : "");
}

static int header_safe(const char *s)
{
    for (; *s; s++)
        if (*s == '\r' || *s == '\n' || (unsigned char)*s < 0x20)
            return 0;
    return 1;
}

static void job_free(awc_job_t *j)
{
    if (!j)
        return;
    free(j->path);
    free(j->profile);
    wipe_free(j->ak);
    wipe_free(j->sk);
    wipe_free(j->tok);
    free(j);
}

static void cache_clear(awc_t *c)
{
    wipe_free(c->ak);
    wipe_free(c->sk);
    wipe_free(c->tok);
    c->ak = c->sk = c->tok = NULL;
    c->have = 0;
    c->expires_ms = 0;
}

static int64_t now_ms(const awc_t *c)
{
    return c->host->now_ms(c->host);
}

static int64_t mono_ms(const awc_t *c)
{
    return c->host->mono_ms(c->host);
}

static int cache_fresh(const awc_t *c)
{
    if (!c->have)
        return 0;
    if (c->expires_ms)
        return now_ms(c) < c->expires_ms - AWC_REFRESH_MARGIN_MS;
    return mono_ms(c) - c->cached_mono < AWC_STATIC_TTL_MS;
}

/* Cached temporary credentials that are past the refresh margin but not expired. */
static int cache_usable(const awc_t *c)
{
    return c->have && (c->expires_ms == 0 || now_ms(c) < c->expires_ms - 10 * 1000);
}

/* ---- completion ----------------------------------------------------------------------------- */

static void deliver(awc_t *c, int status, const char *error)
{
    awc_waiter_t *w = c->waiters;
    c->waiters = NULL;
    c->tail = &c->waiters;
    c->nwaiters = 0;
    c->resolving = 0;
    awc_creds_t cr = {c->ak, c->sk, c->tok, c->expires_ms, c->src};
    while (w) {
        awc_waiter_t *next = w->next;
        if (status == 0)
            w->done(w->arg, 0, &cr, NULL);
        else
            w->done(w->arg, status, NULL, error);
        free(w);
        w = next;
    }
}

static void set_creds(awc_t *c, const char *ak, const char *sk, const char *tok, int64_t exp,
                      const char *src)
{
    cache_clear(c);
    c->ak = strdup(ak);
    c->sk = strdup(sk);
    c->tok = tok && *tok ? strdup(tok) : NULL;
    if (!c->ak || !c->sk || (tok && *tok && !c->tok)) {
        cache_clear(c);
        deliver(c, SN_ENOMEM, "out of memory");
        return;
    }
    c->have = 1;
    c->expires_ms = exp;
    c->cached_mono = mono_ms(c);
    snprintf(c->src, sizeof(c->src), "%s", src);
    deliver(c, 0, NULL);
}

static void resolve_failed(awc_t *c, int status)
{
    if (cache_usable(c)) {
        c->host->log(c->host, SN_LOG_WARN,
                     "refreshing AWS credentials failed (%s); using the cached ones from %s",
                     c->err, c->src);
        c->cached_mono = mono_ms(c);
        deliver(c, 0, NULL);
        return;
    }
    char msg[AWC_ERR + 40];
    snprintf(msg, sizeof(msg), "no AWS credentials: %s", c->err);
    deliver(c, status, msg);
}

/* ---- the chain ------------------------------------------------------------------------------ */

static void next_stage(awc_t *c);

static int valid_key_id(const char *s)
{
    if (!s || strlen(s) < 4 || strlen(s) > 128)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s))
            return 0;
    return 1;
}

static void try_env(awc_t *c)
{
    const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
    if (c->profile_explicit && c->source == AWC_CHAIN) {
        add_err(c, "env: skipped (profile %s configured)", c->profile, NULL);
    } else if (ak && sk) {
        if (!valid_key_id(ak)) {
            add_err(c, "env: AWS_ACCESS_KEY_ID is not an access key id", NULL, NULL);
            if (c->source == AWC_ENV) {
                resolve_failed(c, SN_EINVAL);
                return;
            }
        } else {
            set_creds(c, ak, sk, env("AWS_SESSION_TOKEN"), 0, "env");
            return;
        }
    } else {
        add_err(c, "env: %s not set", ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID", NULL);
    }
    if (c->source == AWC_ENV) {
        resolve_failed(c, SN_ENOTFOUND);
        return;
    }
    c->stage = ST_FILE;
    next_stage(c);
}

/* -- shared credentials file (offload thread) -- */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Thread: offload pool. Touches only the job. */
static void file_work(void *arg)
{
    awc_job_t *j = arg;
    FILE *f = fopen(j->path, "re");
    if (!f) {
        j->found = -1;
        snprintf(j->why, sizeof(j->why), "%s", strerror(errno));
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    size_t total = 0;
    int in = 0, seen = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        total += (size_t)n;
        if (total > AWC_FILE_MAX) {
            j->found = -1;
            snprintf(j->why, sizeof(j->why), "larger than %d bytes", AWC_FILE_MAX);
            break;
        }
        char *s = trim(line);
        size_t sl = strlen(s);
        if (sl && s[sl - 1] == '\n')
            s[--sl] = '\0';
        s = trim(s);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (!e)
                continue;
            *e = '\0';
            char *name = trim(s + 1);
            if (strncmp(name, "profile ", 8) == 0)
                name = trim(name + 8);
            in = strcmp(name, j->profile) == 0;
            seen |= in;
            continue;
        }
        if (!in)
            continue;
        char *eq = strchr(s, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        char **slot = strcasecmp(k, "aws_access_key_id") == 0       ? &j->ak
                      : strcasecmp(k, "aws_secret_access_key") == 0 ? &j->sk
                      : strcasecmp(k, "aws_session_token") == 0     ? &j->tok
                                                                    : NULL;
        if (slot && *v) {
            wipe_free(*slot);
            *slot = strdup(v);
        }
    }
    if (line) {
        OPENSSL_cleanse(line, cap);
        free(line);
    }
    fclose(f);
    if (j->found < 0)
        return;
    if (!seen) {
        j->found = 0;
        snprintf(j->why, sizeof(j->why), "no [%s] section", j->profile);
    } else if (!j->ak || !j->sk) {
        j->found = 0;
        snprintf(j->why, sizeof(j->why), "[%s] lacks aws_access_key_id or aws_secret_access_key",
                 j->profile);
    } else {
        j->found = 1;
    }
}

static void file_done(void *arg)
{
    awc_job_t *j = arg;
    awc_t *c = j->c;
    if (!c) {
        job_free(j);
        return;
    }
    c->job = NULL;
    if (j->found == 1 && valid_key_id(j->ak)) {
        char src[96];
        snprintf(src, sizeof(src), "file:%s", c->profile);
        set_creds(c, j->ak, j->sk, j->tok, 0, src);
        job_free(j);
        return;
    }
    if (j->found == 1)
        add_err(c, "file %s: [%s] aws_access_key_id is not an access key id", c->file, c->profile);
    else
        add_err(c, "file %s: %s", c->file, j->why);
    job_free(j);
    if (c->source == AWC_FILE || c->profile_explicit) {
        resolve_failed(c, SN_ENOTFOUND);
        return;
    }
    c->stage = ST_CONTAINER;
    next_stage(c);
}

static void try_file(awc_t *c)
{
    if (!c->file) {
        add_err(c, "file: no path (HOME not set)", NULL, NULL);
        if (c->source == AWC_FILE || c->profile_explicit) {
            resolve_failed(c, SN_ENOTFOUND);
            return;
        }
        c->stage = ST_CONTAINER;
        next_stage(c);
        return;
    }
    awc_job_t *j = calloc(1, sizeof(*j));
    if (!j || !(j->path = strdup(c->file)) || !(j->profile = strdup(c->profile))) {
        job_free(j);
        add_err(c, "file: out of memory", NULL, NULL);
        {
            resolve_failed(c, SN_ENOMEM);
            return;
        }
    }
    j->c = c;
    j->kind = JOB_FILE;
    c->job = j;
    if (c->host->offload(c->host, file_work, file_done, j) != 0) {
        c->job = NULL;
        job_free(j);
        add_err(c, "file: the offload pool refused the read", NULL, NULL);
        {
            resolve_failed(c, SN_EAGAIN);
            return;
        }
    }
}

/* -- HTTP metadata endpoints -- */

static int64_t parse_expiration(awc_t *c, const char *text)
{
    if (!text)
        return 0;
    int64_t ms = 0;
    if (SN_HOST_HAS(c->host, parse_time) && c->host->parse_time(c->host, text, &ms) == 0)
        return ms;
    struct tm tm = {0};
    const char *e = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!e)
        return -1;
    return (int64_t)timegm(&tm) * 1000;
}

/* Take {"AccessKeyId","SecretAccessKey","Token","Expiration"} from a metadata answer. */
static int take_json_creds(awc_t *c, const char *body, size_t len, const char *src, const char *who)
{
    json_error_t je;
    json_t *doc = json_loadb(body, len, 0, &je);
    const char *ak = json_string_value(json_object_get(doc, "AccessKeyId"));
    const char *sk = json_string_value(json_object_get(doc, "SecretAccessKey"));
    const char *tok = json_string_value(json_object_get(doc, "Token"));
    const char *exp = json_string_value(json_object_get(doc, "Expiration"));
    const char *code = json_string_value(json_object_get(doc, "Code"));
    int rc = SN_EIO;
    if (!doc)
        add_err(c, "%s: the answer is not JSON", who, NULL);
    else if (code && strcmp(code, "Success") != 0)
        add_err(c, "%s: Code is %s", who, code);
    else if (!valid_key_id(ak) || !sk || !*sk)
        add_err(c, "%s: the answer lacks AccessKeyId or SecretAccessKey", who, NULL);
    else {
        int64_t ms = parse_expiration(c, exp);
        if (ms < 0) {
            add_err(c, "%s: Expiration is not a time", who, NULL);
        } else if (ms && ms <= now_ms(c)) {
            add_err(c, "%s: the credentials have already expired", who, NULL);
        } else {
            set_creds(c, ak, sk, tok, ms, src);
            rc = 0;
        }
    }
    if (doc) {
        /* The document holds the secret: wipe the strings jansson owns. */
        const char *keys[] = {"SecretAccessKey", "Token"};
        for (size_t i = 0; i < 2; i++) {
            json_t *v = json_object_get(doc, keys[i]);
            if (json_is_string(v))
                OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
        }
        json_decref(doc);
    }
    return rc;
}

static void http_done(void *arg, const sn_http_response_t *resp);

static int http_send(awc_t *c, const char *method, const char *url, const char *const *headers)
{
    awc_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return SN_ENOMEM;
    j->c = c;
    j->kind = JOB_HTTP;
    c->job = j;
    sn_http_request_t req = {
        .struct_size = sizeof(req),
        .method = method,
        .url = url,
        .headers = headers,
        .body = "",
        .body_len = 0,
        .timeout_ms = c->timeout_ms,
        .max_response = 64 * 1024,
    };
    if (c->host->http(c->host, &req, http_done, j) != 0) {
        c->job = NULL;
        free(j);
        return SN_EIO;
    }
    return 0;
}

static int loopback_or_ecs(const char *url)
{
    if (strncasecmp(url, "https://", 8) == 0)
        return 1;
    if (strncasecmp(url, "http://", 7) != 0)
        return 0;
    const char *h = url + 7;
    size_t n = strcspn(h, ":/?#");
    if (*h == '[') {
        n = strcspn(h, "]") + 1;
    }
    char host[64];
    if (n == 0 || n >= sizeof(host))
        return 0;
    memcpy(host, h, n);
    host[n] = '\0';
    return strncmp(host, "127.", 4) == 0 || strcasecmp(host, "localhost") == 0 ||
           strcmp(host, "[::1]") == 0 || strcmp(host, "169.254.170.2") == 0 ||
           strcmp(host, "169.254.170.23") == 0 || strcasecmp(host, "[fd00:ec2::23]") == 0;
}

static void container_fetch(awc_t *c)
{
    const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    char url[1024];
    if (rel) {
        if (rel[0] != '/' || !header_safe(rel)) {
            add_err(c, "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is not a path", NULL,
                    NULL);
            {
                resolve_failed(c, SN_EINVAL);
                return;
            }
        }
        snprintf(url, sizeof(url), "%s%s", c->container_host, rel);
    } else {
        if (!loopback_or_ecs(full) || !header_safe(full)) {
            add_err(c,
                    "container: AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http to a "
                    "loopback or the ECS/EKS credentials address",
                    NULL, NULL);
            {
                resolve_failed(c, SN_EINVAL);
                return;
            }
        }
        snprintf(url, sizeof(url), "%s", full);
    }
    char auth[4200];
    const char *hdrs[3] = {NULL, NULL, NULL};
    size_t nh = 0;
    if (c->auth_token) {
        if (!header_safe(c->auth_token) || strlen(c->auth_token) > 4096) {
            add_err(c, "container: the authorization token is malformed", NULL, NULL);
            {
                resolve_failed(c, SN_EINVAL);
                return;
            }
        }
        snprintf(auth, sizeof(auth), "Authorization: %s", c->auth_token);
        hdrs[nh++] = auth;
    }
    hdrs[nh++] = "Accept: application/json";
    int rc = http_send(c, "GET", url, hdrs);
    OPENSSL_cleanse(auth, sizeof(auth));
    if (rc != 0) {
        add_err(c, "container: the HTTP client refused the request", NULL, NULL);
        resolve_failed(c, rc);
    }
}

static void token_file_work(void *arg)
{
    awc_job_t *j = arg;
    FILE *f = fopen(j->path, "re");
    if (!f) {
        j->found = -1;
        snprintf(j->why, sizeof(j->why), "%s", strerror(errno));
        return;
    }
    char buf[4200];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    j->tok = strdup(buf);
    OPENSSL_cleanse(buf, sizeof(buf));
    j->found = j->tok ? 1 : -1;
}

static void token_file_done(void *arg)
{
    awc_job_t *j = arg;
    awc_t *c = j->c;
    if (!c) {
        job_free(j);
        return;
    }
    c->job = NULL;
    if (j->found != 1) {
        add_err(c, "container: cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: %s", j->why,
                NULL);
        job_free(j);
        {
            resolve_failed(c, SN_EIO);
            return;
        }
    }
    wipe_free(c->auth_token);
    c->auth_token = j->tok;
    j->tok = NULL;
    job_free(j);
    container_fetch(c);
}

static void try_container(awc_t *c)
{
    const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    if (!full && !rel) {
        add_err(c, "container: AWS_CONTAINER_CREDENTIALS_FULL_URI/RELATIVE_URI not set", NULL,
                NULL);
        if (c->source == AWC_CONTAINER) {
            resolve_failed(c, SN_ENOTFOUND);
            return;
        }
        c->stage = ST_IMDS;
        {
            next_stage(c);
            return;
        }
    }
    wipe_free(c->auth_token);
    c->auth_token = NULL;
    const char *tfile = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    if (tfile) {
        awc_job_t *j = calloc(1, sizeof(*j));
        if (!j || !(j->path = strdup(tfile))) {
            job_free(j);
            {
                resolve_failed(c, SN_ENOMEM);
                return;
            }
        }
        j->c = c;
        j->kind = JOB_TOKEN_FILE;
        c->job = j;
        if (c->host->offload(c->host, token_file_work, token_file_done, j) != 0) {
            c->job = NULL;
            job_free(j);
            add_err(c, "container: the offload pool refused the token read", NULL, NULL);
            {
                resolve_failed(c, SN_EAGAIN);
                return;
            }
        }
        return;
    }
    const char *tok = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    if (tok && !(c->auth_token = strdup(tok))) {
        resolve_failed(c, SN_ENOMEM);
        return;
    }
    container_fetch(c);
}

static void imds_request(awc_t *c)
{
    char url[600], tokhdr[200], ttl[80];
    const char *hdrs[3] = {NULL, NULL, NULL};
    const char *method = "GET";
    if (c->imds_step == IM_TOKEN) {
        snprintf(url, sizeof(url), "%s/latest/api/token", c->imds);
        snprintf(ttl, sizeof(ttl), "X-aws-ec2-metadata-token-ttl-seconds: %d",
                 AWC_IMDS_TOKEN_TTL_S);
        hdrs[0] = ttl;
        method = "PUT";
    } else {
        if (c->imds_step == IM_ROLE)
            snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", c->imds);
        else
            snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/%s", c->imds,
                     c->role);
        snprintf(tokhdr, sizeof(tokhdr), "X-aws-ec2-metadata-token: %s", c->imds_token);
        hdrs[0] = tokhdr;
    }
    int rc = http_send(c, method, url, hdrs);
    OPENSSL_cleanse(tokhdr, sizeof(tokhdr));
    if (rc != 0) {
        add_err(c, "imds: the HTTP client refused the request", NULL, NULL);
        resolve_failed(c, rc);
    }
}

static void try_imds(awc_t *c)
{
    const char *dis = env("AWS_EC2_METADATA_DISABLED");
    if (c->imds_disabled || (dis && strcasecmp(dis, "true") == 0)) {
        add_err(c, "imds: disabled", NULL, NULL);
        {
            resolve_failed(c, SN_ENOTFOUND);
            return;
        }
    }
    int token_ok =
        c->imds_token && mono_ms(c) - c->imds_token_mono < (AWC_IMDS_TOKEN_TTL_S - 60) * 1000LL;
    c->imds_step = token_ok ? IM_ROLE : IM_TOKEN;
    imds_request(c);
}

static void imds_answer(awc_t *c, const sn_http_response_t *r)
{
    char st[32];
    snprintf(st, sizeof(st), "%ld", r->status);
    if (r->status == 0) {
        add_err(c, "imds: %s", r->error ? r->error : "no answer", NULL);
        {
            resolve_failed(c, SN_EIO);
            return;
        }
    }
    if (r->status == 401 && c->imds_step != IM_TOKEN) {
        wipe_free(c->imds_token); /* expired: the next resolution asks for a new one */
        c->imds_token = NULL;
    }
    if (r->status != 200) {
        const char *what = c->imds_step == IM_TOKEN  ? "token PUT"
                           : c->imds_step == IM_ROLE ? "role GET"
                                                     : "credentials GET";
        add_err(c, "imds: %s answered HTTP %s", what, st);
        {
            resolve_failed(c, r->status == 404 ? SN_ENOTFOUND : SN_EIO);
            return;
        }
    }
    if (c->imds_step == IM_TOKEN) {
        size_t n = r->body_len;
        while (n > 0 && (r->body[n - 1] == '\n' || r->body[n - 1] == '\r'))
            n--;
        if (n == 0 || n > 150 || memchr(r->body, '\n', n)) {
            add_err(c, "imds: the token answer is malformed", NULL, NULL);
            {
                resolve_failed(c, SN_EIO);
                return;
            }
        }
        wipe_free(c->imds_token);
        c->imds_token = strndup(r->body, n);
        if (!c->imds_token || !header_safe(c->imds_token)) {
            resolve_failed(c, SN_ENOMEM);
            return;
        }
        c->imds_token_mono = mono_ms(c);
        c->imds_step = IM_ROLE;
        {
            imds_request(c);
            return;
        }
    }
    if (c->imds_step == IM_ROLE) {
        size_t n = strcspn(r->body, "\r\n");
        if (n == 0 || n >= sizeof(c->role)) {
            add_err(c, "imds: no instance profile role", NULL, NULL);
            {
                resolve_failed(c, SN_ENOTFOUND);
                return;
            }
        }
        memcpy(c->role, r->body, n);
        c->role[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if (!isalnum((unsigned char)c->role[i]) && !strchr("+=,.@_-", c->role[i])) {
                add_err(c, "imds: the role name is malformed", NULL, NULL);
                {
                    resolve_failed(c, SN_EIO);
                    return;
                }
            }
        c->imds_step = IM_CREDS;
        {
            imds_request(c);
            return;
        }
    }
    char src[160];
    snprintf(src, sizeof(src), "imds:%s", c->role);
    if (take_json_creds(c, r->body, r->body_len, src, "imds") != 0)
        resolve_failed(c, SN_EIO);
}

static void http_done(void *arg, const sn_http_response_t *resp)
{
    awc_job_t *j = arg;
    awc_t *c = j->c;
    job_free(j);
    if (!c)
        return;
    c->job = NULL;
    if (c->stage == ST_IMDS) {
        imds_answer(c, resp);
        return;
    }
    /* container */
    char st[32];
    snprintf(st, sizeof(st), "%ld", resp->status);
    if (resp->status == 0) {
        add_err(c, "container: %s", resp->error ? resp->error : "no answer", NULL);
        {
            resolve_failed(c, SN_EIO);
            return;
        }
    }
    if (resp->status != 200) {
        add_err(c, "container: the endpoint answered HTTP %s", st, NULL);
        {
            resolve_failed(c, resp->status == 401 || resp->status == 403 ? SN_EDENIED : SN_EIO);
            return;
        }
    }
    if (take_json_creds(c, resp->body, resp->body_len, "container", "container") != 0)
        resolve_failed(c, SN_EIO);
}

static void next_stage(awc_t *c)
{
    switch (c->stage) {
    case ST_ENV: {
        try_env(c);
        return;
    }
    case ST_FILE: {
        try_file(c);
        return;
    }
    case ST_CONTAINER: {
        try_container(c);
        return;
    }
    case ST_IMDS: {
        try_imds(c);
        return;
    }
    default: {
        resolve_failed(c, SN_ENOTFOUND);
        return;
    }
    }
}

/* ---- public ---------------------------------------------------------------------------------- */

int awc_new(const sn_host_t *host, const awc_opts_t *o, awc_t **out, char *err, size_t errlen)
{
    *out = NULL;
    awc_t *c = calloc(1, sizeof(*c));
    if (!c)
        return SN_ENOMEM;
    c->host = host;
    c->source = o->source;
    c->tail = &c->waiters;
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 1000;
    c->imds_disabled = o->imds_disabled;
    const char *profile = o->profile && *o->profile ? o->profile : env("AWS_PROFILE");
    c->profile_explicit = o->profile && *o->profile;
    c->profile = strdup(profile ? profile : "default");
    const char *file = o->credentials_file && *o->credentials_file
                           ? o->credentials_file
                           : env("AWS_SHARED_CREDENTIALS_FILE");
    if (file && strncmp(file, "~/", 2) != 0) {
        c->file = strdup(file);
    } else {
        const char *home = env("HOME");
        const char *rest = file ? file + 2 : ".aws/credentials";
        if (home) {
            size_t n = strlen(home) + strlen(rest) + 2;
            c->file = malloc(n);
            if (c->file)
                snprintf(c->file, n, "%s/%s", home, rest);
        }
    }
    const char *ch =
        o->container_host && *o->container_host ? o->container_host : "http://169.254.170.2";
    const char *im = o->imds_endpoint && *o->imds_endpoint
                         ? o->imds_endpoint
                         : env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    c->container_host = strdup(ch);
    c->imds = strdup(im ? im : "http://169.254.169.254");
    if (!c->profile || !c->container_host || !c->imds) {
        awc_free(c);
        return SN_ENOMEM;
    }
    /* No trailing '/' on bases: paths are appended. */
    for (char *b = c->imds; *b && b[strlen(b) - 1] == '/';)
        b[strlen(b) - 1] = '\0';
    for (char *b = c->container_host; *b && b[strlen(b) - 1] == '/';)
        b[strlen(b) - 1] = '\0';
    const char *bases[] = {c->container_host, c->imds};
    for (size_t i = 0; i < 2; i++)
        if ((strncmp(bases[i], "http://", 7) != 0 && strncmp(bases[i], "https://", 8) != 0) ||
            !header_safe(bases[i]) || strlen(bases[i]) > 400) {
            snprintf(err, errlen, "%s must be an http:// or https:// URL",
                     i == 0 ? "container_endpoint" : "imds_endpoint");
            awc_free(c);
            return SN_EINVAL;
        }
    for (const char *p = c->profile; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_-.@+", *p)) {
            snprintf(err, errlen, "profile may hold letters, digits and _-.@+ only");
            awc_free(c);
            return SN_EINVAL;
        }
    *out = c;
    return 0;
}

void awc_get(awc_t *c, awc_done_fn done, void *arg)
{
    if (cache_fresh(c)) {
        awc_creds_t cr = {c->ak, c->sk, c->tok, c->expires_ms, c->src};
        done(arg, 0, &cr, NULL);
        return;
    }
    if (c->nwaiters >= AWC_MAX_WAITERS) {
        done(arg, SN_EAGAIN, NULL, "too many calls waiting for credentials");
        return;
    }
    awc_waiter_t *w = calloc(1, sizeof(*w));
    if (!w) {
        done(arg, SN_ENOMEM, NULL, "out of memory");
        return;
    }
    w->done = done;
    w->arg = arg;
    *c->tail = w;
    c->tail = &w->next;
    c->nwaiters++;
    if (c->resolving)
        return;
    c->resolving = 1;
    c->err[0] = '\0';
    switch (c->source) {
    case AWC_FILE:
        c->stage = ST_FILE;
        break;
    case AWC_CONTAINER:
        c->stage = ST_CONTAINER;
        break;
    case AWC_IMDS:
        c->stage = ST_IMDS;
        break;
    default:
        c->stage = ST_ENV;
    }
    next_stage(c);
}

void awc_invalidate(awc_t *c)
{
    if (c && !c->resolving)
        cache_clear(c);
}

int awc_busy(const awc_t *c)
{
    return c && c->job != NULL;
}

void awc_free(awc_t *c)
{
    if (!c)
        return;
    if (c->job)
        c->job->c = NULL; /* finishes on its own */
    awc_waiter_t *w = c->waiters;
    while (w) {
        awc_waiter_t *next = w->next;
        free(w);
        w = next;
    }
    cache_clear(c);
    wipe_free(c->auth_token);
    wipe_free(c->imds_token);
    free(c->profile);
    free(c->file);
    free(c->container_host);
    free(c->imds);
    free(c);
}
