/**
 * @file aws.c
 * Executor `aws`: EC2 instances and ECS services through the AWS APIs, signed with SigV4
 * (sigv4.c, OpenSSL) and sent through the host's asynchronous HTTP client. No AWS SDK.
 *
 * Targets (the core's canonical kind/namespace/name, three segments):
 *   ec2-instance/REGION/i-0123456789abcdef0
 *   ecs-service/REGION/CLUSTER:SERVICE
 *
 * Verbs: reboot_instance, stop_instance (params: force), start_instance (EC2 Query API,
 * Version=2016-11-15); scale_service (params: desiredCount, required), redeploy_service
 * (ECS JSON 1.1, UpdateService with desiredCount / forceNewDeployment).
 *
 * assess and snapshot read live state (DescribeInstances, DescribeServices). verify polls it
 * until the desired state holds for verify_hold (running/stopped; runningCount == desiredCount,
 * nothing pending and one settled deployment) or verify_timeout passes. rollback restores the
 * snapshot: the prior desiredCount, or the prior running/stopped state of an instance.
 *
 * Dry run (action dry_run): Describe calls only, plus for EC2 the mutating call with
 * DryRun=true (AWS answers DryRunOperation when it would succeed, UnauthorizedOperation when
 * not): nothing changes.
 *
 * Idempotency. reboot/stop/start and UpdateService take no client token, so a call cannot be
 * made idempotent by AWS. Before a mutation the executor writes the action's idempotency key
 * into a tag on the resource (idempotency_tag, default `sentinel:idempotency-key`; CreateTags,
 * ECS TagResource), and every execute first reads live state and that tag:
 *   - the tag holds this key and the change is visible (desiredCount reached, instance
 *     stopping/stopped or pending/running; for reboot and redeploy the tag is the evidence):
 *     the mutation is not repeated, the answer says "deduplicated";
 *   - the resource already is in the wanted state: nothing is sent ("changed": false);
 *   - otherwise tag, then mutate.
 * The tag is written before the mutation, so a crash between the two can lose a reboot or a
 * redeploy (at most once) but never repeats one. Keys are also remembered in memory. verify
 * without a remembered key (after a restart) fails at once when the change is not visible at
 * all, so the core's resume path re-executes it with the same key instead of waiting for the
 * verify deadline.
 *
 * Credentials: see aws_creds.c (environment, shared file + profile, container endpoint,
 * IMDSv2). Retries: transport errors, HTTP 5xx and throttling codes, with exponential backoff
 * and jitter, re-signed every time; expired or rejected temporary credentials are fetched anew
 * once. Secrets are never logged.
 *
 * Shutdown: stop() waits for requests in flight; an operation that would send another request
 * or wait for a poll is parked and dropped by destroy() without a callback: the engine is
 * stopping and resumes that step from its checkpoint (an error here would read as "did not
 * converge" and start a rollback).
 */
#include "sigv4.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AW_EC2_VERSION "2016-11-15"
#define AW_ECS_TARGET "AmazonEC2ContainerServiceV20141113."
#define AW_EC2_CTYPE "application/x-www-form-urlencoded; charset=utf-8"
#define AW_ECS_CTYPE "application/x-amz-json-1.1"
#define AW_KEYS_MAX 10000
#define AW_OPS_MAX 4096
#define AW_COUNT_MAX 10000
#define AW_BACKOFF_MAX_MS 20000
#define AW_XML_DEPTH 64
#define AW_XML_NODES 200000

typedef enum { AK_EC2 = 1, AK_ECS } aw_kind_t;
typedef enum { OP_ASSESS = 1, OP_SNAPSHOT, OP_EXECUTE, OP_VERIFY, OP_ROLLBACK } aw_what_t;
typedef enum { V_REBOOT = 1, V_STOP, V_START, V_SCALE, V_REDEPLOY } aw_verb_t;

typedef struct aw_target {
    aw_kind_t kind;
    char region[32];
    char id[32];       /* EC2 instance id */
    char cluster[256]; /* ECS */
    char service[256];
} aw_target_t;

typedef struct aw aw_t;
typedef struct aw_op aw_op_t;

/** The outcome of one AWS call after retries. */
typedef struct aw_resp {
    int rc;           /* 0 or SN_E* */
    long status;      /* HTTP status, 0 without an answer */
    const char *body; /* borrowed for the continuation */
    size_t len;
    char code[96]; /* AWS error code, "" on success */
    char err[512]; /* a full phrase for the operator, no secrets */
} aw_resp_t;

typedef void (*aw_cont_fn)(aw_op_t *op, const aw_resp_t *r);

struct aw_op {
    aw_op_t *next, *prev;
    aw_t *a; /* NULL once orphaned: destroyed while a request was in flight */
    aw_what_t what;
    aw_verb_t verb;
    const char *verb_name;
    char *incident, *key, *target_text;
    aw_target_t t;
    json_t *params, *snap;
    int dry_run;
    sn_done_fn done;
    void *arg;

    /* the call in progress */
    const char *svc, *action;
    char *body;
    aw_cont_fn cont;
    int attempt, creds_retry;
    int waiting; /* for credentials or an HTTP answer */
    int in_http; /* for an HTTP answer */
    int parked;
    sn_timer_t *timer;
    void (*timer_fn)(aw_op_t *);
    char creds_src[96];

    /* gathered */
    json_t *live; /* normalised live state of the target */
    void (*then)(aw_op_t *);
    int64_t want; /* scale_service desiredCount */
    int force;
    int known; /* the key is remembered in memory */
    int64_t deadline, hold_since;
    int polls;
    char last_err[512];
};

struct aw {
    const sn_host_t *host;
    awc_t *creds;
    char *endpoint;     /* template, NULL for the AWS default */
    const char *region; /* optional restriction */
    const char *tag_key;
    int64_t timeout_ms, retry_base_ms, verify_timeout_ms, verify_interval_ms, verify_hold_ms;
    int max_retries;
    json_t *keys; /* idempotency key -> first result */
    aw_op_t *ops;
    size_t nops;
    uint64_t rng;
    int stopping;
    sn_done_fn stop_done;
    void *stop_arg;
    unsigned long calls, mutations, failures;
};

static const sn_verb_t aw_verbs[] = {
    {"reboot_instance", SN_RISK_HIGH, 120,
     "EC2 RebootInstances (target ec2-instance/REGION/INSTANCE_ID)"},
    {"stop_instance", SN_RISK_HIGH, 600,
     "EC2 StopInstances; params: force (bool); down until started"},
    {"start_instance", SN_RISK_LOW, 0, "EC2 StartInstances"},
    {"scale_service", SN_RISK_MEDIUM, 0,
     "ECS UpdateService desiredCount (target ecs-service/REGION/CLUSTER:SERVICE); params: "
     "desiredCount (0..10000, required)"},
    {"redeploy_service", SN_RISK_LOW, 30,
     "ECS UpdateService forceNewDeployment: rolling replacement of the service's tasks"},
    {NULL, 0, 0, NULL},
};

static const sn_param_t aw_params[] = {
    {"region", SN_T_STRING, NULL, 0,
     "only act on targets in this region (default: the region named by each target)"},
    {"endpoint_url", SN_T_STRING, NULL, 0,
     "base URL of every AWS call instead of https://{service}.{region}.amazonaws.com/ "
     "({service} and {region} are substituted); e.g. a moto server or a VPC endpoint"},
    {"credentials", SN_T_STRING, "chain", 0,
     "chain (env, file, container, imds in that order) or one of env, file, container, imds"},
    {"profile", SN_T_STRING, NULL, 0,
     "profile of the shared credentials file (default $AWS_PROFILE, else default); when set, "
     "environment keys are skipped"},
    {"credentials_file", SN_T_STRING, NULL, 0,
     "shared credentials file (default $AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials)"},
    {"container_endpoint", SN_T_STRING, NULL, 0,
     "base URL for AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (default http://169.254.170.2)"},
    {"imds_endpoint", SN_T_STRING, NULL, 0,
     "instance metadata service (default $AWS_EC2_METADATA_SERVICE_ENDPOINT, else "
     "http://169.254.169.254)"},
    {"imds_disabled", SN_T_BOOL, "false", 0, "never ask the instance metadata service"},
    {"metadata_timeout", SN_T_DURATION, "1s", 0,
     "deadline of one credentials endpoint or metadata request"},
    {"timeout", SN_T_DURATION, "10s", 0, "deadline of one AWS API request"},
    {"max_retries", SN_T_INT, "3", 0,
     "retries of a throttled, 5xx or unanswered request (0..10), exponential backoff with jitter"},
    {"retry_base", SN_T_DURATION, "200ms", 0, "first backoff ceiling, doubled on every retry"},
    {"verify_timeout", SN_T_DURATION, "5m", 0, "verify gives up when the state has not converged"},
    {"verify_interval", SN_T_DURATION, "5s", 0, "pause between verify polls"},
    {"verify_hold", SN_T_DURATION, "0", 0,
     "the converged state must hold this long before verify succeeds"},
    {"idempotency_tag", SN_T_STRING, "sentinel:idempotency-key", 0,
     "tag written on the resource before a mutation, holding the action's idempotency key; "
     "empty: live-state checks and memory only"},
    {NULL, 0, NULL, 0, NULL},
};

/* ---- small helpers ------------------------------------------------------------------------- */

/* snprintf where truncating a long operator phrase is fine. */
static void sfmt(char *buf, size_t n, const char *fmt, ...) SN_PRINTF(3, 4);

static void sfmt(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

static void aw_count(aw_t *a, const char *name, const char *help)
{
    a->host->metric(a->host, SN_METRIC_COUNTER, name, help, 1);
}

static const char *risk_name(sn_risk_t r)
{
    return r == SN_RISK_HIGH ? "high" : r == SN_RISK_MEDIUM ? "medium" : "low";
}

static const sn_verb_t *verb_entry(const char *name)
{
    for (const sn_verb_t *v = aw_verbs; name && v->name; v++)
        if (strcmp(v->name, name) == 0)
            return v;
    return NULL;
}

static aw_verb_t verb_id(const char *name)
{
    static const struct {
        const char *n;
        aw_verb_t v;
    } map[] = {{"reboot_instance", V_REBOOT},
               {"stop_instance", V_STOP},
               {"start_instance", V_START},
               {"scale_service", V_SCALE},
               {"redeploy_service", V_REDEPLOY}};
    for (size_t i = 0; name && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i].n, name) == 0)
            return map[i].v;
    return 0;
}

static double aw_draw(aw_t *a)
{
    uint64_t z = (a->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / (double)(1ULL << 53);
}

/* Copy @p in into @p out without control characters, at most @p n - 1 bytes. */
static void clean_copy(char *out, size_t n, const char *in, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        unsigned char c = (unsigned char)in[i];
        out[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    out[o] = '\0';
}

typedef struct sb {
    char *p;
    size_t n, cap;
} sb_t;

static int sb_add(sb_t *b, const char *s)
{
    size_t len = strlen(s);
    if (b->n + len + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + len + 1)
            c *= 2;
        char *np = realloc(b->p, c);
        if (!np)
            return SN_ENOMEM;
        b->p = np;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, len + 1);
    b->n += len;
    return 0;
}

/* One form field of an EC2 Query body, percent-encoded. */
static int form_add(sb_t *b, const char *k, const char *v)
{
    if ((b->n && sb_add(b, "&")) || sv4_uri_encode(k, strlen(k), 0, &b->p, &b->n, &b->cap) ||
        sb_add(b, "=") || sv4_uri_encode(v, strlen(v), 0, &b->p, &b->n, &b->cap))
        return SN_ENOMEM;
    return 0;
}

/* ---- targets ----------------------------------------------------------------------------------
 */

static int name_ok(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
            return 0;
    return 1;
}

static int region_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 31 || !islower((unsigned char)s[0]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '-')
            return 0;
    return 1;
}

static int parse_target(const char *text, aw_target_t *t, char *why, size_t wn)
{
    memset(t, 0, sizeof(*t));
    const char *s1 = text ? strchr(text, '/') : NULL;
    const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    if (!s1 || !s2 || strchr(s2 + 1, '/')) {
        snprintf(why, wn,
                 "target must be ec2-instance/REGION/INSTANCE_ID or "
                 "ecs-service/REGION/CLUSTER:SERVICE");
        return SN_EINVAL;
    }
    size_t kl = (size_t)(s1 - text), rl = (size_t)(s2 - s1 - 1);
    const char *name = s2 + 1;
    if (rl >= sizeof(t->region)) {
        snprintf(why, wn, "region is too long");
        return SN_EINVAL;
    }
    memcpy(t->region, s1 + 1, rl);
    t->region[rl] = '\0';
    if (!region_ok(t->region)) {
        snprintf(why, wn, "'%s' is not a region name", t->region);
        return SN_EINVAL;
    }
    if (kl == 12 && strncasecmp(text, "ec2-instance", 12) == 0) {
        t->kind = AK_EC2;
        size_t n = strlen(name);
        int ok = n >= 10 && n <= 19 && strncmp(name, "i-", 2) == 0;
        for (size_t i = 2; ok && i < n; i++)
            ok = isxdigit((unsigned char)name[i]) && !isupper((unsigned char)name[i]);
        if (!ok) {
            snprintf(why, wn, "'%.40s' is not an instance id (i- and 8 to 17 hex digits)", name);
            return SN_EINVAL;
        }
        memcpy(t->id, name, n + 1);
        return 0;
    }
    if (kl == 11 && strncasecmp(text, "ecs-service", 11) == 0) {
        t->kind = AK_ECS;
        const char *colon = strchr(name, ':');
        if (!colon || !name_ok(name, (size_t)(colon - name), 255) ||
            !name_ok(colon + 1, strlen(colon + 1), 255)) {
            snprintf(why, wn,
                     "ecs-service targets name CLUSTER:SERVICE (letters, digits, - and _)");
            return SN_EINVAL;
        }
        memcpy(t->cluster, name, (size_t)(colon - name));
        t->cluster[colon - name] = '\0';
        snprintf(t->service, sizeof(t->service), "%s", colon + 1);
        return 0;
    }
    snprintf(why, wn, "unknown target kind (ec2-instance or ecs-service)");
    return SN_EINVAL;
}

/* ---- a minimal XML reader (EC2 answers) -------------------------------------------------- */

typedef struct xn {
    char *name;
    char *text;
    size_t tlen;
    struct xn *child, *last, *next;
} xn_t;

typedef struct xp {
    const char *s, *e;
    int nodes;
} xp_t;

static void xn_free(xn_t *n)
{
    while (n) {
        xn_t *next = n->next;
        xn_free(n->child);
        free(n->name);
        free(n->text);
        free(n);
        n = next;
    }
}

static int xn_text(xn_t *n, const char *s, size_t len)
{
    char *t = realloc(n->text, n->tlen + len + 1);
    if (!t)
        return SN_ENOMEM;
    memcpy(t + n->tlen, s, len);
    n->tlen += len;
    t[n->tlen] = '\0';
    n->text = t;
    return 0;
}

static int utf8_put(unsigned long cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF)
        return 0;
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Text with entities decoded. */
static int xp_text(xn_t *n, const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        const char *amp = memchr(s + i, '&', len - i);
        size_t chunk = amp ? (size_t)(amp - (s + i)) : len - i;
        if (chunk && xn_text(n, s + i, chunk))
            return SN_ENOMEM;
        i += chunk;
        if (!amp)
            break;
        const char *semi = memchr(s + i, ';', len - i < 12 ? len - i : 12);
        if (!semi)
            return SN_EINVAL;
        size_t el = (size_t)(semi - (s + i)) - 1;
        const char *ent = s + i + 1;
        char out[4];
        int on = 0;
        if (el == 2 && strncmp(ent, "lt", 2) == 0)
            out[on++] = '<';
        else if (el == 2 && strncmp(ent, "gt", 2) == 0)
            out[on++] = '>';
        else if (el == 3 && strncmp(ent, "amp", 3) == 0)
            out[on++] = '&';
        else if (el == 4 && strncmp(ent, "quot", 4) == 0)
            out[on++] = '"';
        else if (el == 4 && strncmp(ent, "apos", 4) == 0)
            out[on++] = '\'';
        else if (el >= 2 && ent[0] == '#') {
            char num[12];
            memcpy(num, ent + 1, el - 1);
            num[el - 1] = '\0';
            char *end;
            unsigned long cp = num[0] == 'x' || num[0] == 'X' ? strtoul(num + 1, &end, 16)
                                                              : strtoul(num, &end, 10);
            if (*end || !(on = utf8_put(cp, out)))
                return SN_EINVAL;
        } else {
            return SN_EINVAL;
        }
        if (xn_text(n, out, (size_t)on))
            return SN_ENOMEM;
        i += el + 2;
    }
    return 0;
}

static int xp_skip(xp_t *p, const char *close)
{
    const char *e = strstr(p->s, close);
    if (!e || e >= p->e)
        return SN_EINVAL;
    p->s = e + strlen(close);
    return 0;
}

/* Skip whitespace, <?...?>, <!--...--> and <!DOCTYPE ...>. */
static int xp_misc(xp_t *p)
{
    for (;;) {
        while (p->s < p->e && isspace((unsigned char)*p->s))
            p->s++;
        if (p->e - p->s >= 2 && strncmp(p->s, "<?", 2) == 0) {
            if (xp_skip(p, "?>"))
                return SN_EINVAL;
        } else if (p->e - p->s >= 4 && strncmp(p->s, "<!--", 4) == 0) {
            if (xp_skip(p, "-->"))
                return SN_EINVAL;
        } else if (p->e - p->s >= 2 && strncmp(p->s, "<!", 2) == 0) {
            if (xp_skip(p, ">"))
                return SN_EINVAL;
        } else {
            return 0;
        }
    }
}

static int xp_name(xp_t *p, char **out)
{
    const char *s = p->s;
    while (p->s < p->e && !isspace((unsigned char)*p->s) && *p->s != '>' && *p->s != '/')
        p->s++;
    if (p->s == s)
        return SN_EINVAL;
    const char *colon = memchr(s, ':', (size_t)(p->s - s));
    if (colon)
        s = colon + 1; /* the local name: namespaces play no part in what we read */
    *out = strndup(s, (size_t)(p->s - s));
    return *out ? 0 : SN_ENOMEM;
}

static xn_t *xp_element(xp_t *p, int depth, int *rc)
{
    if (depth > AW_XML_DEPTH || ++p->nodes > AW_XML_NODES || p->s >= p->e || *p->s != '<') {
        *rc = SN_EINVAL;
        return NULL;
    }
    p->s++;
    xn_t *n = calloc(1, sizeof(*n));
    if (!n || (*rc = xp_name(p, &n->name)) != 0) {
        *rc = n ? *rc : SN_ENOMEM;
        xn_free(n);
        return NULL;
    }
    /* attributes: skipped, quotes respected */
    char q = 0;
    while (p->s < p->e &&
           (q || (*p->s != '>' && !(*p->s == '/' && p->s + 1 < p->e && p->s[1] == '>')))) {
        if (q && *p->s == q)
            q = 0;
        else if (!q && (*p->s == '"' || *p->s == '\''))
            q = *p->s;
        p->s++;
    }
    if (p->s >= p->e)
        goto bad;
    if (*p->s == '/') {
        p->s += 2;
        return n;
    }
    p->s++;
    for (;;) {
        const char *lt = memchr(p->s, '<', (size_t)(p->e - p->s));
        if (!lt)
            goto bad;
        if (lt > p->s && xp_text(n, p->s, (size_t)(lt - p->s)))
            goto bad;
        p->s = lt;
        if (p->e - p->s >= 4 && strncmp(p->s, "<!--", 4) == 0) {
            if (xp_skip(p, "-->"))
                goto bad;
        } else if (p->e - p->s >= 9 && strncmp(p->s, "<![CDATA[", 9) == 0) {
            const char *end = strstr(p->s + 9, "]]>");
            if (!end || end >= p->e || xn_text(n, p->s + 9, (size_t)(end - p->s - 9)))
                goto bad;
            p->s = end + 3;
        } else if (p->e - p->s >= 2 && p->s[1] == '/') {
            p->s += 2;
            char *close = NULL;
            if (xp_name(p, &close))
                goto bad;
            int same = strcmp(close, n->name) == 0;
            free(close);
            while (p->s < p->e && isspace((unsigned char)*p->s))
                p->s++;
            if (!same || p->s >= p->e || *p->s != '>')
                goto bad;
            p->s++;
            return n;
        } else if (p->e - p->s >= 2 && p->s[1] == '?') {
            if (xp_skip(p, "?>"))
                goto bad;
        } else {
            xn_t *c = xp_element(p, depth + 1, rc);
            if (!c) {
                xn_free(n);
                return NULL;
            }
            if (n->last)
                n->last->next = c;
            else
                n->child = c;
            n->last = c;
        }
    }
bad:
    if (!*rc)
        *rc = SN_EINVAL;
    xn_free(n);
    return NULL;
}

static xn_t *xml_parse(const char *s, size_t len)
{
    xp_t p = {s, s + len, 0};
    int rc = 0;
    if (xp_misc(&p))
        return NULL;
    return xp_element(&p, 0, &rc);
}

static xn_t *xchild(const xn_t *n, const char *name)
{
    for (xn_t *c = n ? n->child : NULL; c; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* Follow "a/b/c" through first matching children. */
static xn_t *xpath(const xn_t *n, const char *path)
{
    char seg[64];
    while (n && *path) {
        size_t l = strcspn(path, "/");
        if (l >= sizeof(seg))
            return NULL;
        memcpy(seg, path, l);
        seg[l] = '\0';
        n = xchild(n, seg);
        path += l + (path[l] == '/');
    }
    return (xn_t *)n;
}

/* First element named @p name anywhere below @p n (depth first). */
static xn_t *xfind(const xn_t *n, const char *name)
{
    for (xn_t *c = n ? n->child : NULL; c; c = c->next) {
        if (strcmp(c->name, name) == 0)
            return c;
        xn_t *d = xfind(c, name);
        if (d)
            return d;
    }
    return NULL;
}

/* Trimmed text of @p n (modifies the node's copy). */
static const char *xtext(xn_t *n)
{
    if (!n || !n->text)
        return n ? "" : NULL;
    char *s = n->text;
    while (isspace((unsigned char)*s))
        s++;
    size_t l = strlen(s);
    while (l > 0 && isspace((unsigned char)s[l - 1]))
        s[--l] = '\0';
    return s;
}

/* ---- operation lifecycle --------------------------------------------------------------------- */

static void aw_maybe_stopped(aw_t *a);

static void op_free(aw_op_t *op)
{
    if (!op)
        return;
    free(op->incident);
    free(op->key);
    free(op->target_text);
    free(op->body);
    json_decref(op->params);
    json_decref(op->snap);
    json_decref(op->live);
    free(op);
}

static void op_unlink(aw_op_t *op)
{
    aw_t *a = op->a;
    if (!a)
        return;
    if (op->prev)
        op->prev->next = op->next;
    else if (a->ops == op)
        a->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->next = op->prev = NULL;
    a->nops--;
}

/* Complete the operation: done once, then free. Ownership: @p result is stolen. */
static void op_finish(aw_op_t *op, int rc, json_t *result)
{
    aw_t *a = op->a;
    if (op->timer) {
        a->host->timer_del(op->timer);
        op->timer = NULL;
    }
    op_unlink(op);
    sn_done_fn done = op->done;
    void *arg = op->arg;
    op_free(op);
    if (rc != 0) {
        a->failures++;
        aw_count(a, "executor_aws_failures_total", "executor calls that failed");
    }
    done(arg, rc, result);
    json_decref(result);
    aw_maybe_stopped(a);
}

static void op_fail(aw_op_t *op, int rc, const char *fmt, ...) SN_PRINTF(3, 4);

static void op_fail(aw_op_t *op, int rc, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    aw_t *a = op->a;
    a->host->log(a->host, SN_LOG_WARN, "%s %s: %s", op->verb_name, op->target_text, msg);
    json_t *res =
        json_pack("{s:s,s:s,s:s}", "verb", op->verb_name, "target", op->target_text, "error", msg);
    if (res && op->live)
        json_object_set(res, "state", op->live);
    op_finish(op, rc, res);
}

static void op_timer_fired(void *arg)
{
    aw_op_t *op = arg;
    op->timer = NULL;
    void (*fn)(aw_op_t *) = op->timer_fn;
    op->timer_fn = NULL;
    if (op->a->stopping) {
        op->parked = 1;
        aw_maybe_stopped(op->a);
        return;
    }
    fn(op);
}

static void op_after(aw_op_t *op, int64_t ms, void (*fn)(aw_op_t *))
{
    aw_t *a = op->a;
    if (a->stopping) {
        op->parked = 1;
        return;
    }
    op->timer_fn = fn;
    op->timer = a->host->timer_add(a->host, ms < 1 ? 1 : ms, 0, op_timer_fired, op);
    if (!op->timer)
        op_fail(op, SN_ENOMEM, "cannot arm a timer");
}

/* ---- sending ------------------------------------------------------------------------------- */

static void aw_dispatch(aw_op_t *op);

/* The endpoint for @p service in @p region: URL, Host header value and path to sign. */
static int aw_endpoint(const aw_t *a, const char *service, const char *region, char *url, size_t un,
                       char *host, size_t hn, char *path, size_t pn)
{
    char dflt[128];
    snprintf(dflt, sizeof(dflt), "https://{service}.{region}.amazonaws.com%s/",
             strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
    const char *tpl = a->endpoint ? a->endpoint : dflt;
    size_t o = 0;
    for (const char *s = tpl; *s && o + 1 < un;) {
        const char *sub = NULL;
        size_t skip = 1;
        if (strncmp(s, "{service}", 9) == 0)
            sub = service, skip = 9;
        else if (strncmp(s, "{region}", 8) == 0)
            sub = region, skip = 8;
        if (sub) {
            int w = snprintf(url + o, un - o, "%s", sub);
            if (w < 0 || (size_t)w >= un - o)
                return SN_EINVAL;
            o += (size_t)w;
        } else {
            url[o++] = *s;
        }
        s += skip;
    }
    url[o] = '\0';
    const char *auth = strstr(url, "://");
    if (!auth)
        return SN_EINVAL;
    auth += 3;
    size_t al = strcspn(auth, "/");
    if (al == 0 || al >= hn)
        return SN_EINVAL;
    memcpy(host, auth, al);
    host[al] = '\0';
    if (!auth[al]) {
        if (o + 2 > un)
            return SN_EINVAL;
        url[o++] = '/';
        url[o] = '\0';
    }
    snprintf(path, pn, "%s", auth[al] ? auth + al : "/");
    return 0;
}

static int retryable_code(const char *c)
{
    static const char *const codes[] = {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "EC2ThrottledException",
        "RequestTimeout",
        "PriorRequestNotComplete",
        "RequestThrottledException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "ServerException",
        "Unavailable",
        "SlowDown",
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strcmp(c, codes[i]) == 0)
            return 1;
    return 0;
}

static int creds_code(const char *c)
{
    return strcmp(c, "ExpiredToken") == 0 || strcmp(c, "ExpiredTokenException") == 0 ||
           strcmp(c, "RequestExpired") == 0 || strcmp(c, "InvalidClientTokenId") == 0 ||
           strcmp(c, "UnrecognizedClientException") == 0 || strcmp(c, "AuthFailure") == 0 ||
           strcmp(c, "InvalidToken") == 0 || strcmp(c, "SignatureDoesNotMatch") == 0 ||
           strcmp(c, "InvalidSignatureException") == 0 || strcmp(c, "IncompleteSignature") == 0;
}

static int notfound_code(const char *c)
{
    return strstr(c, "NotFound") != NULL || strcmp(c, "ServiceNotActiveException") == 0;
}

/* AWS error code and message from an XML or JSON answer. */
static void parse_error(const char *body, size_t len, const char *hdr_type, char *code, size_t cn,
                        char *msg, size_t mn)
{
    code[0] = msg[0] = '\0';
    while (len > 0 && isspace((unsigned char)*body))
        body++, len--;
    if (len > 0 && *body == '{') {
        json_t *j = json_loadb(body, len, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "__type"));
        if (!t)
            t = json_string_value(json_object_get(j, "code"));
        const char *m = json_string_value(json_object_get(j, "message"));
        if (!m)
            m = json_string_value(json_object_get(j, "Message"));
        if (t) {
            const char *h = strrchr(t, '#');
            clean_copy(code, cn, h ? h + 1 : t, strlen(h ? h + 1 : t));
        }
        if (m)
            clean_copy(msg, mn, m, strlen(m));
        json_decref(j);
    } else if (len > 0 && *body == '<') {
        xn_t *x = xml_parse(body, len);
        const char *c = xtext(xfind(x, "Code")), *m = xtext(xfind(x, "Message"));
        if (c)
            clean_copy(code, cn, c, strlen(c));
        if (m)
            clean_copy(msg, mn, m, strlen(m));
        xn_free(x);
    }
    if (!code[0] && hdr_type) {
        size_t l = strcspn(hdr_type, ":");
        clean_copy(code, cn, hdr_type, l);
    }
    if (strlen(msg) > 300)
        strcpy(msg + 297, "...");
}

static void aw_http_done(void *arg, const sn_http_response_t *resp);

static void aw_have_creds(void *arg, int status, const awc_creds_t *cr, const char *error)
{
    aw_op_t *op = arg;
    aw_t *a = op->a;
    op->waiting = 0;
    if (a->stopping) {
        op->parked = 1;
        aw_maybe_stopped(a);
        return;
    }
    if (status != 0) {
        aw_count(a, "executor_aws_credential_errors_total", "calls without usable credentials");
        aw_resp_t r = {.rc = status == SN_ENOMEM ? SN_ENOMEM : SN_EDENIED};
        snprintf(r.code, sizeof(r.code), "NoCredentials");
        snprintf(r.err, sizeof(r.err), "%s %s: %s", op->svc, op->action, error);
        op->cont(op, &r);
        return;
    }
    snprintf(op->creds_src, sizeof(op->creds_src), "%s", cr->source);
    char url[600], host[300], path[300], err[160] = "";
    if (aw_endpoint(a, op->svc, op->t.region, url, sizeof(url), host, sizeof(host), path,
                    sizeof(path)) != 0) {
        aw_resp_t r = {.rc = SN_EINVAL};
        snprintf(r.err, sizeof(r.err), "%s %s: the endpoint URL does not fit", op->svc, op->action);
        op->cont(op, &r);
        return;
    }
    int ecs = strcmp(op->svc, "ecs") == 0;
    char target[128];
    snprintf(target, sizeof(target), AW_ECS_TARGET "%s", op->action);
    sv4_header_t sh[3] = {{"Host", host}, {"Content-Type", ecs ? AW_ECS_CTYPE : AW_EC2_CTYPE}};
    size_t nsh = 2;
    if (ecs)
        sh[nsh++] = (sv4_header_t){"X-Amz-Target", target};
    sv4_request_t sreq = {
        .method = "POST",
        .path = path,
        .headers = sh,
        .nheaders = nsh,
        .body = op->body,
        .body_len = strlen(op->body),
    };
    sv4_creds_t sc = {cr->access_key_id, cr->secret_access_key, cr->session_token};
    sv4_signed_t sig;
    int rc = sv4_sign(&sreq, &sc, op->t.region, op->svc, a->host->now_ms(a->host) / 1000, 0, &sig,
                      err, sizeof(err));
    if (rc != 0) {
        sv4_signed_clear(&sig);
        aw_resp_t r = {.rc = rc};
        snprintf(r.err, sizeof(r.err), "%s %s: cannot sign the request: %s", op->svc, op->action,
                 err);
        op->cont(op, &r);
        return;
    }
    char h_host[320], h_ct[80], h_tgt[160], h_date[40], h_auth[700];
    char *h_tok = NULL;
    const char *hdrs[9];
    size_t nh = 0;
    snprintf(h_host, sizeof(h_host), "Host: %s", host);
    snprintf(h_ct, sizeof(h_ct), "Content-Type: %s", ecs ? AW_ECS_CTYPE : AW_EC2_CTYPE);
    hdrs[nh++] = h_host;
    hdrs[nh++] = h_ct;
    if (ecs) {
        snprintf(h_tgt, sizeof(h_tgt), "X-Amz-Target: %s", target);
        hdrs[nh++] = h_tgt;
    }
    snprintf(h_date, sizeof(h_date), "X-Amz-Date: %s", sig.amz_date);
    hdrs[nh++] = h_date;
    if (sig.add_token) {
        size_t tl = strlen(cr->session_token) + 32;
        h_tok = malloc(tl);
        if (!h_tok) {
            sv4_signed_clear(&sig);
            aw_resp_t r = {.rc = SN_ENOMEM};
            snprintf(r.err, sizeof(r.err), "out of memory");
            op->cont(op, &r);
            return;
        }
        snprintf(h_tok, tl, "X-Amz-Security-Token: %s", cr->session_token);
        hdrs[nh++] = h_tok;
    }
    snprintf(h_auth, sizeof(h_auth), "Authorization: %s", sig.authorization);
    hdrs[nh++] = h_auth;
    hdrs[nh++] = "User-Agent: sentinel-executor-aws/1.0";
    hdrs[nh] = NULL;
    sv4_signed_clear(&sig);
    sn_http_request_t req = {
        .struct_size = sizeof(req),
        .method = "POST",
        .url = url,
        .headers = hdrs,
        .body = op->body,
        .body_len = strlen(op->body),
        .timeout_ms = a->timeout_ms,
        .max_response = 8u << 20,
    };
    op->waiting = 1;
    op->in_http = 1;
    a->calls++;
    aw_count(a, "executor_aws_requests_total", "AWS API requests sent");
    rc = a->host->http(a->host, &req, aw_http_done, op);
    if (h_tok) {
        OPENSSL_cleanse(h_tok, strlen(h_tok));
        free(h_tok);
    }
    if (rc != 0) {
        sn_http_response_t none = {.status = 0, .error = "request refused by the HTTP client"};
        aw_http_done(op, &none);
    }
}

static void aw_dispatch(aw_op_t *op)
{
    aw_t *a = op->a;
    if (a->stopping) {
        op->parked = 1;
        aw_maybe_stopped(a);
        return;
    }
    op->waiting = 1;
    awc_get(a->creds, aw_have_creds, op);
}

static void aw_redispatch(aw_op_t *op)
{
    aw_dispatch(op);
}

static void aw_http_done(void *arg, const sn_http_response_t *resp)
{
    aw_op_t *op = arg;
    aw_t *a = op->a;
    if (!a) {
        op_free(op); /* orphaned by destroy */
        return;
    }
    op->waiting = 0;
    op->in_http = 0;
    aw_resp_t r = {.status = resp->status,
                   .body = resp->body ? resp->body : "",
                   .len = resp->body ? resp->body_len : 0};
    char msg[400] = "";
    if (resp->status >= 200 && resp->status < 300) {
        op->cont(op, &r);
        aw_maybe_stopped(a);
        return;
    }
    int retry = 0;
    if (resp->status == 0) {
        snprintf(msg, sizeof(msg), "%s", resp->error ? resp->error : "no answer");
        retry = 1;
    } else {
        parse_error(r.body, r.len, resp->header ? resp->header(resp, "x-amzn-ErrorType") : NULL,
                    r.code, sizeof(r.code), msg, sizeof(msg));
        retry = resp->status >= 500 || retryable_code(r.code) || resp->status == 429;
    }
    if (retry && op->attempt < a->max_retries && !a->stopping) {
        double cap =
            (double)a->retry_base_ms * (double)(1LL << (op->attempt < 16 ? op->attempt : 16));
        if (cap > AW_BACKOFF_MAX_MS)
            cap = AW_BACKOFF_MAX_MS;
        int64_t delay = (int64_t)(cap / 2 + aw_draw(a) * cap / 2);
        op->attempt++;
        aw_count(a, "executor_aws_retries_total", "AWS requests retried");
        a->host->log(a->host, SN_LOG_INFO, "%s %s: %s%s%s (HTTP %ld); retry %d in %lld ms", op->svc,
                     op->action, r.code, r.code[0] ? ": " : "", msg, resp->status, op->attempt,
                     (long long)delay);
        op_after(op, delay, aw_redispatch);
        aw_maybe_stopped(a);
        return;
    }
    if (resp->status != 0 && creds_code(r.code) && !op->creds_retry &&
        strncmp(op->creds_src, "env", 3) != 0 && strncmp(op->creds_src, "file", 4) != 0) {
        /* Temporary credentials may have been rotated or revoked: fetch anew, once. */
        op->creds_retry = 1;
        awc_invalidate(a->creds);
        aw_dispatch(op);
        return;
    }
    if (strcmp(r.code, "DryRunOperation") != 0)
        aw_count(a, "executor_aws_request_errors_total", "AWS requests that failed for good");
    if (resp->status == 0) {
        r.rc = SN_EIO;
        snprintf(r.err, sizeof(r.err), "%s %s: no answer from AWS: %s", op->svc, op->action, msg);
    } else {
        if (creds_code(r.code) || resp->status == 401 || resp->status == 403)
            r.rc = SN_EDENIED;
        else if (notfound_code(r.code))
            r.rc = SN_ENOTFOUND;
        else if (retry)
            r.rc = resp->status >= 500 ? SN_EIO : SN_EAGAIN;
        else
            r.rc = SN_EINVAL;
        sfmt(r.err, sizeof(r.err), "%s %s: HTTP %ld %s%s%s%s%s%s", op->svc, op->action,
             resp->status, r.code[0] ? r.code : "error", msg[0] ? ": " : "", msg,
             r.rc == SN_EDENIED ? " (credentials from " : "",
             r.rc == SN_EDENIED ? op->creds_src : "", r.rc == SN_EDENIED ? ")" : "");
    }
    op->cont(op, &r);
    aw_maybe_stopped(a);
}

/* Send one call. Ownership: @p body is stolen. */
static void aw_send(aw_op_t *op, const char *svc, const char *action, char *body, aw_cont_fn cont)
{
    free(op->body);
    op->body = body;
    op->svc = svc;
    op->action = action;
    op->cont = cont;
    op->attempt = 0;
    op->creds_retry = 0;
    if (!body) {
        aw_resp_t r = {.rc = SN_ENOMEM};
        snprintf(r.err, sizeof(r.err), "out of memory");
        cont(op, &r);
        return;
    }
    aw_dispatch(op);
}

/* ---- request bodies -------------------------------------------------------------------------- */

/* EC2: Action=..&Version=..&InstanceId.1=.. [+ extra pairs]. */
static char *ec2_body(const char *action, const char *id, int dry_run, const char *k1,
                      const char *v1)
{
    sb_t b = {0};
    if (form_add(&b, "Action", action) || form_add(&b, "Version", AW_EC2_VERSION) ||
        form_add(&b, "InstanceId.1", id) || (k1 && form_add(&b, k1, v1)) ||
        (dry_run && form_add(&b, "DryRun", "true"))) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static char *ec2_tag_body(const char *id, const char *key, const char *value)
{
    sb_t b = {0};
    if (form_add(&b, "Action", "CreateTags") || form_add(&b, "Version", AW_EC2_VERSION) ||
        form_add(&b, "ResourceId.1", id) || form_add(&b, "Tag.1.Key", key) ||
        form_add(&b, "Tag.1.Value", value)) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static char *json_body(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* ---- live state ----------------------------------------------------------------------------- */

static json_t *ec2_live(const aw_resp_t *r, const char *id, char *why, size_t wn)
{
    xn_t *x = xml_parse(r->body, r->len);
    if (!x) {
        snprintf(why, wn, "DescribeInstances: the answer is not XML");
        return NULL;
    }
    json_t *out = NULL;
    xn_t *inst = NULL;
    for (xn_t *res = xchild(xpath(x, "reservationSet"), "item"); res && !inst; res = res->next)
        for (xn_t *it = xchild(xpath(res, "instancesSet"), "item"); it; it = it->next) {
            const char *iid = xtext(xchild(it, "instanceId"));
            if (iid && strcmp(iid, id) == 0) {
                inst = it;
                break;
            }
        }
    if (!inst) {
        snprintf(why, wn, "instance %s not found", id);
        goto out;
    }
    const char *state = xtext(xpath(inst, "instanceState/name"));
    const char *code = xtext(xpath(inst, "instanceState/code"));
    if (!state || !*state) {
        snprintf(why, wn, "DescribeInstances: %s has no state", id);
        goto out;
    }
    json_t *tags = json_object();
    for (xn_t *t = xchild(xpath(inst, "tagSet"), "item"); t && tags; t = t->next) {
        const char *k = xtext(xchild(t, "key")), *v = xtext(xchild(t, "value"));
        if (k)
            json_object_set_new(tags, k, json_string(v ? v : ""));
    }
    const char *type = xtext(xchild(inst, "instanceType"));
    out = json_pack("{s:s,s:s,s:i,s:s,s:o}", "instance_id", id, "state", state, "state_code",
                    code ? (int)(strtol(code, NULL, 10) & 0xFF) : -1, "instance_type",
                    type ? type : "", "tags", tags ? tags : json_object());
out:
    xn_free(x);
    return out;
}

static json_t *ecs_live(const aw_resp_t *r, const aw_target_t *t, char *why, size_t wn)
{
    json_t *doc = json_loadb(r->body, r->len, 0, NULL);
    json_t *svc = json_array_get(json_object_get(doc, "services"), 0);
    json_t *out = NULL;
    if (!doc) {
        snprintf(why, wn, "DescribeServices: the answer is not JSON");
        goto out;
    }
    if (!json_is_object(svc)) {
        json_t *f = json_array_get(json_object_get(doc, "failures"), 0);
        const char *reason = json_string_value(json_object_get(f, "reason"));
        snprintf(why, wn, "service %s:%s not found (%s)", t->cluster, t->service,
                 reason ? reason : "no answer");
        goto out;
    }
    json_t *deps = json_object_get(svc, "deployments");
    json_t *primary = NULL;
    size_t i;
    json_t *d;
    json_array_foreach(deps, i, d)
    {
        const char *st = json_string_value(json_object_get(d, "status"));
        if (st && strcmp(st, "PRIMARY") == 0)
            primary = d;
    }
    json_t *tags = json_object();
    json_array_foreach(json_object_get(svc, "tags"), i, d)
    {
        const char *k = json_string_value(json_object_get(d, "key"));
        const char *v = json_string_value(json_object_get(d, "value"));
        if (k && tags)
            json_object_set_new(tags, k, json_string(v ? v : ""));
    }
    const char *status = json_string_value(json_object_get(svc, "status"));
    const char *arn = json_string_value(json_object_get(svc, "serviceArn"));
    const char *td = json_string_value(json_object_get(svc, "taskDefinition"));
    const char *rollout = json_string_value(json_object_get(primary, "rolloutState"));
    const char *pid = json_string_value(json_object_get(primary, "id"));
    out = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s?,s:s?,s:s?,s:o}", "cluster", t->cluster,
                    "service", t->service, "arn", arn ? arn : "", "status",
                    status ? status : "UNKNOWN", "desiredCount",
                    json_integer_value(json_object_get(svc, "desiredCount")), "runningCount",
                    json_integer_value(json_object_get(svc, "runningCount")), "pendingCount",
                    json_integer_value(json_object_get(svc, "pendingCount")), "deployments",
                    (json_int_t)json_array_size(deps), "rolloutState", rollout, "primaryDeployment",
                    pid, "taskDefinition", td, "tags", tags ? tags : json_object());
out:
    json_decref(doc);
    return out;
}

static const char *live_str(const aw_op_t *op, const char *k)
{
    const char *v = json_string_value(json_object_get(op->live, k));
    return v ? v : "";
}

static json_int_t live_int(const aw_op_t *op, const char *k)
{
    return json_integer_value(json_object_get(op->live, k));
}

static int tag_matches(const aw_op_t *op)
{
    const char *tk = op->a->tag_key;
    if (!tk || !*tk || !op->key)
        return 0;
    const char *v = json_string_value(json_object_get(json_object_get(op->live, "tags"), tk));
    return v && strcmp(v, op->key) == 0;
}

static int state_is(const aw_op_t *op, const char *a, const char *b)
{
    const char *s = live_str(op, "state");
    return strcmp(s, a) == 0 || (b && strcmp(s, b) == 0);
}

/* One settled deployment, everything running, nothing pending. */
static int ecs_settled(const aw_op_t *op, char *why, size_t wn)
{
    json_int_t des = live_int(op, "desiredCount"), run = live_int(op, "runningCount"),
               pen = live_int(op, "pendingCount"), deps = live_int(op, "deployments");
    const char *ro = json_string_value(json_object_get(op->live, "rolloutState"));
    if (strcmp(live_str(op, "status"), "ACTIVE") != 0)
        snprintf(why, wn, "service status %s", live_str(op, "status"));
    else if (run != des || pen != 0)
        snprintf(why, wn, "runningCount %lld, pendingCount %lld, desiredCount %lld", (long long)run,
                 (long long)pen, (long long)des);
    else if (deps > 1)
        snprintf(why, wn, "%lld deployments still in progress", (long long)deps);
    else if (ro && (strcmp(ro, "IN_PROGRESS") == 0 || strcmp(ro, "FAILED") == 0))
        snprintf(why, wn, "rolloutState %s", ro);
    else
        return 1;
    return 0;
}

/* The change of this action is visible on the resource (or cannot be told apart). */
static int landed(const aw_op_t *op)
{
    int tagging = op->a->tag_key && *op->a->tag_key;
    switch (op->verb) {
    case V_SCALE:
        return live_int(op, "desiredCount") == op->want;
    case V_STOP:
        return state_is(op, "stopping", "stopped");
    case V_START:
        return state_is(op, "pending", "running");
    case V_REBOOT:
    case V_REDEPLOY:
        return tagging ? tag_matches(op) : 1;
    }
    return 0;
}

/* The wanted end state holds. */
static int converged(const aw_op_t *op, char *why, size_t wn)
{
    switch (op->verb) {
    case V_REBOOT:
    case V_START:
        if (state_is(op, "running", NULL))
            return 1;
        snprintf(why, wn, "instance is %s, not running", live_str(op, "state"));
        return 0;
    case V_STOP:
        if (state_is(op, "stopped", NULL))
            return 1;
        snprintf(why, wn, "instance is %s, not stopped", live_str(op, "state"));
        return 0;
    case V_SCALE:
        if (live_int(op, "desiredCount") != op->want) {
            snprintf(why, wn, "desiredCount is %lld, not %lld",
                     (long long)live_int(op, "desiredCount"), (long long)op->want);
            return 0;
        }
        return ecs_settled(op, why, wn);
    case V_REDEPLOY:
        return ecs_settled(op, why, wn);
    }
    return 0;
}

static void described(aw_op_t *op, const aw_resp_t *r);

static void aw_describe(aw_op_t *op, void (*then)(aw_op_t *))
{
    op->then = then;
    if (op->t.kind == AK_EC2) {
        aw_send(op, "ec2", "DescribeInstances",
                ec2_body("DescribeInstances", op->t.id, 0, NULL, NULL), described);
        return;
    }
    aw_send(op, "ecs", "DescribeServices",
            json_body(json_pack("{s:s,s:[s],s:[s]}", "cluster", op->t.cluster, "services",
                                op->t.service, "include", "TAGS")),
            described);
}

static void verify_poll(aw_op_t *op);

static void described(aw_op_t *op, const aw_resp_t *r)
{
    char why[600] = "";
    json_t *live = NULL;
    int rc = r->rc;
    if (rc == 0) {
        live = op->t.kind == AK_EC2 ? ec2_live(r, op->t.id, why, sizeof(why))
                                    : ecs_live(r, &op->t, why, sizeof(why));
        if (!live)
            rc = strstr(why, "not found") ? SN_ENOTFOUND : SN_EIO;
    } else {
        snprintf(why, sizeof(why), "%s", r->err);
    }
    if (rc != 0) {
        /* verify rides out transient trouble until its deadline */
        if (op->what == OP_VERIFY && (rc == SN_EIO || rc == SN_EAGAIN)) {
            sfmt(op->last_err, sizeof(op->last_err), "%s", why);
            verify_poll(op);
            return;
        }
        op_fail(op, rc, "%s", why);
        return;
    }
    json_decref(op->live);
    op->live = live;
    op->then(op);
}

/* ---- remembered keys ------------------------------------------------------------------------ */

static void remember(aw_op_t *op, const json_t *result)
{
    aw_t *a = op->a;
    if (!op->key || json_object_size(a->keys) >= AW_KEYS_MAX)
        return;
    json_object_set_new(a->keys, op->key, json_deep_copy(result));
}

static json_t *result_base(const aw_op_t *op)
{
    json_t *r = json_pack("{s:s,s:s}", "verb", op->verb_name, "target", op->target_text);
    if (r && op->key)
        json_object_set_new(r, "key", json_string(op->key));
    return r;
}

/* ---- assess --------------------------------------------------------------------------------- */

static void assess_described(aw_op_t *op)
{
    const sn_verb_t *v = verb_entry(op->verb_name);
    sn_risk_t risk = v->risk;
    int downtime = v->downtime_s;
    json_int_t blast = 1;
    char detail[300];
    if (op->t.kind == AK_EC2) {
        const char *st = live_str(op, "state");
        snprintf(detail, sizeof(detail), "1 instance (%s, %s)", live_str(op, "instance_type"), st);
        if (op->verb == V_START && strcmp(st, "running") == 0) {
            downtime = 0;
            blast = 0;
            snprintf(detail, sizeof(detail), "instance already running: nothing to do");
        } else if (op->verb == V_STOP && (strcmp(st, "stopped") == 0)) {
            risk = SN_RISK_LOW;
            downtime = 0;
            blast = 0;
            snprintf(detail, sizeof(detail), "instance already stopped: nothing to do");
        } else if (op->verb == V_REBOOT && strcmp(st, "running") != 0) {
            snprintf(detail, sizeof(detail), "instance is %s: a reboot would fail", st);
        }
    } else {
        json_int_t des = live_int(op, "desiredCount"), run = live_int(op, "runningCount");
        if (op->verb == V_SCALE) {
            blast = op->want > des ? op->want - des : des - op->want;
            risk = op->want == 0 ? SN_RISK_HIGH : op->want < des ? SN_RISK_MEDIUM : SN_RISK_LOW;
            downtime = op->want == 0 ? -1 : 0;
            snprintf(detail, sizeof(detail), "desiredCount %lld -> %lld (%lld running)",
                     (long long)des, (long long)op->want, (long long)run);
        } else {
            blast = run;
            /* A single task is down while it is replaced; more roll one by one. */
            if (des < 2) {
                risk = SN_RISK_MEDIUM;
                downtime = 60;
            } else {
                downtime = 0;
            }
            snprintf(detail, sizeof(detail), "replaces %lld running task%s (desiredCount %lld)",
                     (long long)run, run == 1 ? "" : "s", (long long)des);
        }
    }
    json_t *res = json_pack("{s:s,s:i,s:I,s:s,s:O}", "risk", risk_name(risk), "downtime_s",
                            downtime, "blast_radius", blast, "detail", detail, "state", op->live);
    op_finish(op, res ? 0 : SN_ENOMEM, res);
}

/* ---- snapshot -------------------------------------------------------------------------------- */

static void snapshot_described(aw_op_t *op)
{
    json_t *res = json_pack("{s:s,s:s,s:s,s:I}", "target", op->target_text, "kind",
                            op->t.kind == AK_EC2 ? "ec2-instance" : "ecs-service", "region",
                            op->t.region, "taken_at", (json_int_t)op->a->host->now_ms(op->a->host));
    if (res && op->t.kind == AK_EC2) {
        json_object_set_new(res, "instance_id", json_string(op->t.id));
        json_object_set_new(res, "state", json_string(live_str(op, "state")));
    } else if (res) {
        json_object_set_new(res, "cluster", json_string(op->t.cluster));
        json_object_set_new(res, "service", json_string(op->t.service));
        const char *keys[] = {"desiredCount", "runningCount", "pendingCount"};
        for (size_t i = 0; i < 3; i++)
            json_object_set(res, keys[i], json_object_get(op->live, keys[i]));
        json_object_set_new(res, "taskDefinition", json_string(live_str(op, "taskDefinition")));
    }
    op_finish(op, res ? 0 : SN_ENOMEM, res);
}

/* ---- execute --------------------------------------------------------------------------------- */

static const char *ec2_action(aw_verb_t v)
{
    return v == V_REBOOT ? "RebootInstances" : v == V_STOP ? "StopInstances" : "StartInstances";
}

/* Precondition: NULL when the verb can run on the live state, else the reason. */
static const char *precondition(const aw_op_t *op)
{
    if (op->t.kind == AK_ECS)
        return strcmp(live_str(op, "status"), "ACTIVE") == 0 ? NULL : "the service is not ACTIVE";
    const char *st = live_str(op, "state");
    if (strcmp(st, "terminated") == 0 || strcmp(st, "shutting-down") == 0)
        return "the instance is terminated";
    if (op->verb == V_REBOOT && strcmp(st, "running") != 0)
        return "the instance is not running: nothing to reboot";
    if (op->verb == V_START && strcmp(st, "stopping") == 0)
        return "the instance is still stopping";
    return NULL;
}

/* Already in the wanted state: nothing to send. */
static int already(const aw_op_t *op)
{
    switch (op->verb) {
    case V_SCALE:
        return live_int(op, "desiredCount") == op->want;
    case V_STOP:
        return state_is(op, "stopping", "stopped");
    case V_START:
        return state_is(op, "pending", "running");
    default:
        return 0;
    }
}

static void describe_change(const aw_op_t *op, char *out, size_t n)
{
    if (op->t.kind == AK_EC2) {
        const char *to = op->verb == V_STOP ? "stopped" : "running";
        sfmt(out, n, "%s %s (%s): %s -> %s%s", ec2_action(op->verb), op->t.id, op->t.region,
             live_str(op, "state"), op->verb == V_REBOOT ? "rebooted, " : "", to);
    } else if (op->verb == V_SCALE) {
        sfmt(out, n, "UpdateService %s:%s (%s): desiredCount %lld -> %lld", op->t.cluster,
             op->t.service, op->t.region, (long long)live_int(op, "desiredCount"),
             (long long)op->want);
    } else {
        sfmt(out, n, "UpdateService %s:%s (%s): forceNewDeployment, replacing %lld running task%s",
             op->t.cluster, op->t.service, op->t.region, (long long)live_int(op, "runningCount"),
             live_int(op, "runningCount") == 1 ? "" : "s");
    }
}

static void exec_mutated(aw_op_t *op, const aw_resp_t *r)
{
    aw_t *a = op->a;
    if (r->rc != 0) {
        op_fail(op, r->rc, "%s", r->err);
        return;
    }
    a->mutations++;
    aw_count(a, "executor_aws_mutations_total", "mutating AWS calls that succeeded");
    json_t *res = result_base(op);
    char change[400];
    describe_change(op, change, sizeof(change));
    json_object_set_new(res, "changed", json_true());
    json_object_set_new(res, "change", json_string(change));
    json_object_set_new(res, "action", json_string(op->action));
    json_object_set(res, "before", op->live);
    if (op->t.kind == AK_EC2 && op->verb != V_REBOOT) {
        xn_t *x = xml_parse(r->body, r->len);
        const char *cur = xtext(xfind(xfind(x, "currentState"), "name"));
        if (cur)
            json_object_set_new(res, "current_state", json_string(cur));
        xn_free(x);
    } else if (op->t.kind == AK_ECS) {
        json_t *doc = json_loadb(r->body, r->len, 0, NULL);
        json_t *svc = json_object_get(doc, "service");
        json_object_set_new(res, "desiredCount",
                            json_integer(json_integer_value(json_object_get(svc, "desiredCount"))));
        json_decref(doc);
    }
    remember(op, res);
    a->host->log(a->host, SN_LOG_INFO, "%s done (incident %s, key %s)", change,
                 op->incident ? op->incident : "-", op->key ? op->key : "-");
    op_finish(op, 0, res);
}

static void exec_mutate(aw_op_t *op)
{
    if (op->t.kind == AK_EC2) {
        aw_send(op, "ec2", ec2_action(op->verb),
                ec2_body(ec2_action(op->verb), op->t.id, 0,
                         op->verb == V_STOP && op->force ? "Force" : NULL, "true"),
                exec_mutated);
        return;
    }
    json_t *o = json_pack("{s:s,s:s}", "cluster", op->t.cluster, "service", op->t.service);
    if (o && op->verb == V_SCALE)
        json_object_set_new(o, "desiredCount", json_integer(op->want));
    else if (o)
        json_object_set_new(o, "forceNewDeployment", json_true());
    aw_send(op, "ecs", "UpdateService", json_body(o), exec_mutated);
}

static void exec_tagged(aw_op_t *op, const aw_resp_t *r)
{
    if (r->rc != 0) {
        op_fail(op, r->rc, "could not record the idempotency key, nothing was changed: %s", r->err);
        return;
    }
    exec_mutate(op);
}

static void exec_described(aw_op_t *op)
{
    aw_t *a = op->a;
    if (tag_matches(op) && landed(op)) {
        aw_count(a, "executor_aws_deduplicated_total", "executes answered without a mutation");
        json_t *res = result_base(op);
        json_object_set_new(res, "deduplicated", json_true());
        json_object_set_new(res, "changed", json_false());
        json_object_set_new(res, "evidence", json_string("the idempotency tag holds this key"));
        json_object_set(res, "state", op->live);
        remember(op, res);
        a->host->log(a->host, SN_LOG_INFO, "%s %s: key %s already applied (tag %s): not repeated",
                     op->verb_name, op->target_text, op->key, a->tag_key);
        op_finish(op, 0, res);
        return;
    }
    if (already(op)) {
        json_t *res = result_base(op);
        json_object_set_new(res, "changed", json_false());
        json_object_set_new(res, "reason", json_string("already in the wanted state"));
        json_object_set(res, "state", op->live);
        remember(op, res);
        op_finish(op, 0, res);
        return;
    }
    const char *pre = precondition(op);
    if (pre) {
        op_fail(op, SN_EINVAL, "%s (state %s)", pre,
                op->t.kind == AK_EC2 ? live_str(op, "state") : live_str(op, "status"));
        return;
    }
    /* The tag may already hold this key: an earlier attempt died between tag and mutation. */
    if (a->tag_key && *a->tag_key && op->key && !tag_matches(op)) {
        if (op->t.kind == AK_EC2) {
            aw_send(op, "ec2", "CreateTags", ec2_tag_body(op->t.id, a->tag_key, op->key),
                    exec_tagged);
        } else {
            aw_send(op, "ecs", "TagResource",
                    json_body(json_pack("{s:s,s:[{s:s,s:s}]}", "resourceArn", live_str(op, "arn"),
                                        "tags", "key", a->tag_key, "value", op->key)),
                    exec_tagged);
        }
        return;
    }
    exec_mutate(op);
}

static void dry_answered(aw_op_t *op, const aw_resp_t *r)
{
    char change[400];
    describe_change(op, change, sizeof(change));
    json_t *res = result_base(op);
    json_object_set_new(res, "dry_run", json_true());
    json_object_set_new(res, "would", json_string(change));
    json_object_set(res, "state", op->live);
    if (strcmp(r->code, "DryRunOperation") == 0 || r->rc == 0) {
        json_object_set_new(res, "permitted", json_true());
        op_finish(op, 0, res);
    } else if (strcmp(r->code, "UnauthorizedOperation") == 0) {
        json_object_set_new(res, "permitted", json_false());
        json_object_set_new(res, "error", json_string(r->err));
        op_finish(op, SN_EDENIED, res);
    } else {
        json_decref(res);
        op_fail(op, r->rc ? r->rc : SN_EIO, "dry run: %s", r->err);
    }
}

static void dry_described(aw_op_t *op)
{
    aw_count(op->a, "executor_aws_dry_runs_total", "executes in dry-run mode");
    const char *pre = precondition(op);
    if (already(op) || pre) {
        json_t *res = result_base(op);
        json_object_set_new(res, "dry_run", json_true());
        json_object_set_new(res, "would",
                            json_string(pre ? pre : "nothing: already in the wanted state"));
        json_object_set(res, "state", op->live);
        op_finish(op, pre ? SN_EINVAL : 0, res);
        return;
    }
    if (op->t.kind == AK_EC2) {
        /* AWS checks permissions and answers DryRunOperation; nothing changes. */
        aw_send(op, "ec2", ec2_action(op->verb),
                ec2_body(ec2_action(op->verb), op->t.id, 1,
                         op->verb == V_STOP && op->force ? "Force" : NULL, "true"),
                dry_answered);
        return;
    }
    aw_resp_t ok = {0};
    dry_answered(op, &ok);
}

/* ---- verify -----------------------------------------------------------------------------------
 */

static void verify_described(aw_op_t *op);

static void verify_next(aw_op_t *op)
{
    aw_describe(op, verify_described);
}

static void verify_poll(aw_op_t *op)
{
    aw_t *a = op->a;
    int64_t now = a->host->mono_ms(a->host);
    if (now >= op->deadline) {
        json_t *res = result_base(op);
        json_object_set_new(res, "converged", json_false());
        json_object_set_new(res, "polls", json_integer(op->polls));
        json_object_set_new(res, "reason", json_string(op->last_err));
        if (op->live)
            json_object_set(res, "state", op->live);
        a->host->log(a->host, SN_LOG_WARN, "%s %s: not converged after %lld ms: %s", op->verb_name,
                     op->target_text, (long long)a->verify_timeout_ms, op->last_err);
        op_finish(op, SN_ETIMEDOUT, res);
        return;
    }
    int64_t wait = a->verify_interval_ms;
    if (op->hold_since && op->hold_since + a->verify_hold_ms - now < wait)
        wait = op->hold_since + a->verify_hold_ms - now;
    if (op->deadline - now < wait)
        wait = op->deadline - now;
    op_after(op, wait, verify_next);
}

static void verify_described(aw_op_t *op)
{
    aw_t *a = op->a;
    char why[300] = "";
    op->polls++;
    aw_count(a, "executor_aws_verify_polls_total", "verify polls of live state");
    int ok = converged(op, why, sizeof(why));
    if (!ok && !op->known && op->polls == 1 && !landed(op)) {
        /* After a restart: the change never reached the resource. Say so now, so the core
         * re-executes with the same key instead of waiting for the deadline. */
        json_t *res = result_base(op);
        json_object_set_new(res, "converged", json_false());
        json_object_set_new(res, "applied", json_false());
        json_object_set_new(res, "reason", json_string(why));
        json_object_set(res, "state", op->live);
        op_finish(op, SN_EIO, res);
        return;
    }
    int64_t now = a->host->mono_ms(a->host);
    if (ok) {
        if (!op->hold_since)
            op->hold_since = now;
        if (now - op->hold_since >= a->verify_hold_ms) {
            json_t *res = result_base(op);
            json_object_set_new(res, "converged", json_true());
            json_object_set_new(res, "polls", json_integer(op->polls));
            json_object_set(res, "state", op->live);
            op_finish(op, 0, res);
            return;
        }
        snprintf(op->last_err, sizeof(op->last_err), "converged, holding for %lld ms",
                 (long long)a->verify_hold_ms);
    } else {
        op->hold_since = 0;
        sfmt(op->last_err, sizeof(op->last_err), "%s", why);
    }
    verify_poll(op);
}

/* ---- rollback ---------------------------------------------------------------------------------
 */

static void rollback_described(aw_op_t *op);

static void rollback_done(aw_op_t *op, const aw_resp_t *r)
{
    aw_t *a = op->a;
    if (r->rc != 0) {
        op_fail(op, r->rc, "rollback: %s", r->err);
        return;
    }
    a->mutations++;
    aw_count(a, "executor_aws_mutations_total", "mutating AWS calls that succeeded");
    json_t *res = result_base(op);
    json_object_set_new(res, "restored", json_true());
    json_object_set_new(res, "changed", json_true());
    json_object_set_new(res, "action", json_string(op->action));
    json_object_set(res, "before", op->live);
    a->host->log(a->host, SN_LOG_INFO, "rollback of %s %s: %s sent", op->verb_name, op->target_text,
                 op->action);
    op_finish(op, 0, res);
}

static void rollback_dry(aw_op_t *op, const aw_resp_t *r)
{
    json_t *res = result_base(op);
    json_object_set_new(res, "dry_run", json_true());
    json_object_set_new(res, "would", json_string(op->action));
    if (r->rc == 0 || strcmp(r->code, "DryRunOperation") == 0) {
        op_finish(op, 0, res);
        return;
    }
    json_decref(res);
    op_fail(op, r->rc, "rollback dry run: %s", r->err);
}

static void rollback_nothing(aw_op_t *op, const char *why)
{
    json_t *res = result_base(op);
    json_object_set_new(res, "restored", json_true());
    json_object_set_new(res, "changed", json_false());
    json_object_set_new(res, "reason", json_string(why));
    json_object_set(res, "state", op->live);
    op_finish(op, 0, res);
}

static void rollback_again(aw_op_t *op)
{
    aw_describe(op, rollback_described);
}

static void rollback_described(aw_op_t *op)
{
    aw_t *a = op->a;
    if (op->t.kind == AK_ECS) {
        json_int_t want = json_integer_value(json_object_get(op->snap, "desiredCount"));
        if (live_int(op, "desiredCount") == want) {
            rollback_nothing(op, "desiredCount already at the snapshot's value");
            return;
        }
        char *body = json_body(json_pack("{s:s,s:s,s:I}", "cluster", op->t.cluster, "service",
                                         op->t.service, "desiredCount", want));
        if (op->dry_run) {
            free(body);
            op->action = "UpdateService";
            aw_resp_t ok = {0};
            rollback_dry(op, &ok);
            return;
        }
        aw_send(op, "ecs", "UpdateService", body, rollback_done);
        return;
    }
    const char *prior = json_string_value(json_object_get(op->snap, "state"));
    int was_up = strcmp(prior, "running") == 0 || strcmp(prior, "pending") == 0;
    const char *action = NULL;
    if (was_up && state_is(op, "stopping", NULL)) {
        /* StartInstances is refused while stopping: wait for "stopped" (bounded). */
        if (a->host->mono_ms(a->host) >= op->deadline) {
            op_fail(op, SN_ETIMEDOUT, "rollback: the instance is still stopping");
            return;
        }
        op_after(op, a->verify_interval_ms, rollback_again);
        return;
    }
    if (was_up && state_is(op, "stopped", NULL))
        action = "StartInstances";
    else if (strcmp(prior, "stopped") == 0 && state_is(op, "running", "pending"))
        action = "StopInstances";
    if (!action) {
        rollback_nothing(op, "the instance is already in the snapshot's state");
        return;
    }
    aw_send(op, "ec2", action, ec2_body(action, op->t.id, op->dry_run, NULL, NULL),
            op->dry_run ? rollback_dry : rollback_done);
}

/* ---- entry points --------------------------------------------------------------------------- */

static int parse_params(aw_op_t *op, const json_t *params, char *why, size_t wn)
{
    if (op->verb == V_SCALE) {
        const json_t *v = json_object_get(params, "desiredCount");
        if (!v)
            v = json_object_get(params, "desired_count");
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > AW_COUNT_MAX) {
            snprintf(why, wn, "scale_service needs desiredCount, an integer from 0 to %d",
                     AW_COUNT_MAX);
            return SN_EINVAL;
        }
        op->want = json_integer_value(v);
    }
    if (op->verb == V_STOP) {
        const json_t *f = json_object_get(params, "force");
        if (f && !json_is_boolean(f)) {
            snprintf(why, wn, "force must be true or false");
            return SN_EINVAL;
        }
        op->force = json_is_true(f);
    }
    return 0;
}

/* Validate and start an operation; completes it at once when the action is unusable. */
static aw_op_t *op_new(aw_t *a, aw_what_t what, const sn_action_t *act, sn_done_fn done, void *arg)
{
    char why[300] = "";
    int rc = 0;
    aw_op_t *op = NULL;
    if (!act || !act->target || !act->verb) {
        rc = SN_EINVAL;
        snprintf(why, sizeof(why), "the action has no verb or target");
        goto refuse;
    }
    aw_verb_t v = verb_id(act->verb);
    if (!v) {
        rc = SN_ENOTSUP;
        snprintf(why, sizeof(why), "unknown verb %.60s", act->verb);
        goto refuse;
    }
    if (a->stopping) {
        rc = SN_EAGAIN;
        snprintf(why, sizeof(why), "the executor is stopping");
        goto refuse;
    }
    if (a->nops >= AW_OPS_MAX) {
        rc = SN_EAGAIN;
        snprintf(why, sizeof(why), "too many operations in flight");
        goto refuse;
    }
    op = calloc(1, sizeof(*op));
    if (!op || !(op->target_text = strdup(act->target)) ||
        (act->incident && !(op->incident = strdup(act->incident))) ||
        (act->idempotency_key && *act->idempotency_key &&
         !(op->key = strdup(act->idempotency_key)))) {
        rc = SN_ENOMEM;
        snprintf(why, sizeof(why), "out of memory");
        goto refuse;
    }
    op->what = what;
    op->verb = v;
    op->verb_name = verb_entry(act->verb)->name;
    op->dry_run = act->dry_run;
    op->done = done;
    op->arg = arg;
    if ((rc = parse_target(act->target, &op->t, why, sizeof(why))) != 0)
        goto refuse;
    if ((op->t.kind == AK_EC2) != (v == V_REBOOT || v == V_STOP || v == V_START)) {
        rc = SN_EINVAL;
        snprintf(why, sizeof(why), "%s needs an %s target", op->verb_name,
                 op->t.kind == AK_EC2 ? "ecs-service" : "ec2-instance");
        goto refuse;
    }
    if (a->region && strcmp(a->region, op->t.region) != 0) {
        rc = SN_EDENIED;
        snprintf(why, sizeof(why), "region %s is not this executor's region %s", op->t.region,
                 a->region);
        goto refuse;
    }
    if ((rc = parse_params(op, act->params, why, sizeof(why))) != 0)
        goto refuse;
    op->a = a;
    op->next = a->ops;
    if (a->ops)
        a->ops->prev = op;
    a->ops = op;
    a->nops++;
    op->known = op->key && json_object_get(a->keys, op->key) != NULL;
    return op;
refuse:
    op_free(op);
    a->failures++;
    aw_count(a, "executor_aws_failures_total", "executor calls that failed");
    json_t *res = json_pack("{s:s?,s:s?,s:s}", "verb", act ? act->verb : NULL, "target",
                            act ? act->target : NULL, "error", why);
    done(arg, rc, res);
    json_decref(res);
    return NULL;
}

static void aw_assess(void *self, const sn_action_t *act, sn_done_fn done, void *arg)
{
    aw_op_t *op = op_new(self, OP_ASSESS, act, done, arg);
    if (op)
        aw_describe(op, assess_described);
}

static void aw_snapshot(void *self, const sn_action_t *act, sn_done_fn done, void *arg)
{
    aw_op_t *op = op_new(self, OP_SNAPSHOT, act, done, arg);
    if (op)
        aw_describe(op, snapshot_described);
}

/**
 * Execute: dry run (describe, EC2 DryRun), a remembered key (answered from memory), or
 * describe -> tag -> mutate as in the file comment. Ownership: @p act is borrowed (copied).
 * Thread: loop.
 */
static void aw_execute(void *self, const sn_action_t *act, sn_done_fn done, void *arg)
{
    aw_t *a = self;
    aw_op_t *op = op_new(a, OP_EXECUTE, act, done, arg);
    if (!op)
        return;
    if (op->dry_run) {
        aw_describe(op, dry_described);
        return;
    }
    json_t *first = op->key ? json_object_get(a->keys, op->key) : NULL;
    if (first) {
        aw_count(a, "executor_aws_deduplicated_total", "executes answered without a mutation");
        json_t *res = json_deep_copy(first);
        json_object_set_new(res, "deduplicated", json_true());
        op_finish(op, res ? 0 : SN_ENOMEM, res);
        return;
    }
    aw_describe(op, exec_described);
}

static void aw_verify(void *self, const sn_action_t *act, sn_done_fn done, void *arg)
{
    aw_t *a = self;
    aw_op_t *op = op_new(a, OP_VERIFY, act, done, arg);
    if (!op)
        return;
    op->deadline = a->host->mono_ms(a->host) + a->verify_timeout_ms;
    snprintf(op->last_err, sizeof(op->last_err), "no answer yet");
    aw_describe(op, verify_described);
}

static void aw_rollback(void *self, const sn_action_t *act, const json_t *snapshot, sn_done_fn done,
                        void *arg)
{
    aw_t *a = self;
    aw_op_t *op = op_new(a, OP_ROLLBACK, act, done, arg);
    if (!op)
        return;
    const char *st = json_string_value(json_object_get(snapshot, "target"));
    const char *kind = json_string_value(json_object_get(snapshot, "kind"));
    int ok = st && strcmp(st, op->target_text) == 0 && kind &&
             strcmp(kind, op->t.kind == AK_EC2 ? "ec2-instance" : "ecs-service") == 0;
    if (ok && op->t.kind == AK_ECS) {
        const json_t *d = json_object_get(snapshot, "desiredCount");
        ok = json_is_integer(d) && json_integer_value(d) >= 0 &&
             json_integer_value(d) <= AW_COUNT_MAX;
    } else if (ok) {
        ok = json_is_string(json_object_get(snapshot, "state"));
    }
    if (!ok) {
        op_fail(op, SN_EINVAL, "the snapshot is not an aws snapshot of this target");
        return;
    }
    op->snap = json_deep_copy(snapshot);
    op->deadline = a->host->mono_ms(a->host) + a->verify_timeout_ms;
    aw_describe(op, rollback_described);
}

/* ---- lifecycle --------------------------------------------------------------------------------
 */

static int endpoint_ok(const char *u)
{
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return 0;
    for (const char *s = u; *s; s++)
        if (isspace((unsigned char)*s) || (unsigned char)*s < 0x20 || *s == '?' || *s == '#' ||
            *s == '@')
            return 0;
    const char *auth = strstr(u, "://") + 3;
    return *auth && *auth != '/' && strlen(u) < 400;
}

static void aw_destroy(void *self);

static int aw_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    aw_t *a = calloc(1, sizeof(*a));
    if (!a)
        return SN_ENOMEM;
    a->host = host;
    a->keys = json_object();
    a->rng = (uint64_t)host->now_ms(host) ^ (uint64_t)(uintptr_t)a;
    a->region = host->cfg_str(cfg, "region");
    const char *ep = host->cfg_str(cfg, "endpoint_url");
    a->tag_key = host->cfg_str(cfg, "idempotency_tag");
    a->timeout_ms = host->cfg_int(cfg, "timeout");
    a->retry_base_ms = host->cfg_int(cfg, "retry_base");
    a->verify_timeout_ms = host->cfg_int(cfg, "verify_timeout");
    a->verify_interval_ms = host->cfg_int(cfg, "verify_interval");
    a->verify_hold_ms = host->cfg_int(cfg, "verify_hold");
    int64_t retries = host->cfg_int(cfg, "max_retries");
    const char *src = host->cfg_str(cfg, "credentials");
    awc_opts_t o = {
        .profile = host->cfg_str(cfg, "profile"),
        .credentials_file = host->cfg_str(cfg, "credentials_file"),
        .container_host = host->cfg_str(cfg, "container_endpoint"),
        .imds_endpoint = host->cfg_str(cfg, "imds_endpoint"),
        .imds_disabled = host->cfg_bool(cfg, "imds_disabled"),
        .timeout_ms = (long)host->cfg_int(cfg, "metadata_timeout"),
    };
    int rc = SN_EINVAL;
    if (!a->keys) {
        rc = SN_ENOMEM;
        goto fail;
    }
    if (a->region && *a->region && !region_ok(a->region)) {
        snprintf(err->msg, sizeof(err->msg), "region '%.40s' is not a region name", a->region);
        goto fail;
    }
    if (a->region && !*a->region)
        a->region = NULL;
    if (ep && *ep) {
        if (!endpoint_ok(ep)) {
            snprintf(err->msg, sizeof(err->msg),
                     "endpoint_url must be http(s)://host[:port][/path] without query or "
                     "credentials");
            goto fail;
        }
        a->endpoint = strdup(ep);
        if (!a->endpoint) {
            rc = SN_ENOMEM;
            goto fail;
        }
    }
    if (!src || strcmp(src, "chain") == 0)
        o.source = AWC_CHAIN;
    else if (strcmp(src, "env") == 0)
        o.source = AWC_ENV;
    else if (strcmp(src, "file") == 0)
        o.source = AWC_FILE;
    else if (strcmp(src, "container") == 0)
        o.source = AWC_CONTAINER;
    else if (strcmp(src, "imds") == 0)
        o.source = AWC_IMDS;
    else {
        snprintf(err->msg, sizeof(err->msg),
                 "credentials must be chain, env, file, container or imds");
        goto fail;
    }
    if (retries < 0 || retries > 10) {
        snprintf(err->msg, sizeof(err->msg), "max_retries must be from 0 to 10");
        goto fail;
    }
    a->max_retries = (int)retries;
    if (a->timeout_ms <= 0 || a->verify_interval_ms <= 0 || a->verify_timeout_ms <= 0 ||
        a->retry_base_ms <= 0 || a->verify_hold_ms < 0 || o.timeout_ms <= 0) {
        snprintf(err->msg, sizeof(err->msg),
                 "timeout, retry_base, metadata_timeout, verify_timeout and verify_interval must "
                 "be positive");
        goto fail;
    }
    if (a->verify_hold_ms >= a->verify_timeout_ms) {
        snprintf(err->msg, sizeof(err->msg), "verify_hold must be shorter than verify_timeout");
        goto fail;
    }
    if (a->tag_key && *a->tag_key) {
        size_t tl = strlen(a->tag_key);
        int ok = tl <= 128 && strncasecmp(a->tag_key, "aws:", 4) != 0;
        for (size_t i = 0; ok && i < tl; i++)
            ok = isalnum((unsigned char)a->tag_key[i]) || strchr(" _.:/=+-@", a->tag_key[i]);
        if (!ok) {
            snprintf(err->msg, sizeof(err->msg),
                     "idempotency_tag must be a tag key (letters, digits, _.:/=+-@, not aws:)");
            goto fail;
        }
    }
    char why[200] = "";
    rc = awc_new(host, &o, &a->creds, why, sizeof(why));
    if (rc != 0) {
        snprintf(err->msg, sizeof(err->msg), "%s", why[0] ? why : "out of memory");
        goto fail;
    }
    *self = a;
    return 0;
fail:
    aw_destroy(a);
    return rc;
}

static void aw_maybe_stopped(aw_t *a)
{
    if (!a || !a->stopping || !a->stop_done)
        return;
    for (aw_op_t *op = a->ops; op; op = op->next)
        if (op->waiting)
            return;
    sn_done_fn done = a->stop_done;
    a->stop_done = NULL;
    done(a->stop_arg, 0, NULL);
}

/** Drain: waits for requests in flight; operations that would go on are parked. */
static void aw_stop(void *self, sn_done_fn done, void *arg)
{
    aw_t *a = self;
    a->stopping = 1;
    a->stop_done = done;
    a->stop_arg = arg;
    for (aw_op_t *op = a->ops; op; op = op->next)
        if (op->timer) {
            a->host->timer_del(op->timer);
            op->timer = NULL;
            op->parked = 1;
        }
    aw_maybe_stopped(a);
}

static void aw_destroy(void *self)
{
    aw_t *a = self;
    if (!a)
        return;
    while (a->ops) {
        aw_op_t *op = a->ops;
        a->ops = op->next;
        if (op->timer)
            a->host->timer_del(op->timer);
        if (op->in_http) {
            /* The HTTP answer still arrives: it frees the orphaned op. */
            op->a = NULL;
            op->next = op->prev = NULL;
            continue;
        }
        /* Waiting for credentials: awc_free drops the waiter without a callback. */
        op_free(op);
    }
    awc_free(a->creds);
    free(a->endpoint);
    json_decref(a->keys);
    free(a);
}

static int aw_health(void *self, sn_health_t *out)
{
    aw_t *a = self;
    out->ok = 1;
    snprintf(out->detail, sizeof(out->detail),
             "%lu requests, %lu mutations, %lu failures, %zu operations in flight", a->calls,
             a->mutations, a->failures, a->nops);
    return 0;
}

static const sn_executor_ops_t aw_ops = {
    .struct_size = sizeof(sn_executor_ops_t),
    .verbs = aw_verbs,
    .assess = aw_assess,
    .snapshot = aw_snapshot,
    .execute = aw_execute,
    .verify = aw_verify,
    .rollback = aw_rollback,
};

static const sn_plugin_t aw_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_EXECUTOR,
    .type = "aws",
    .version = "1.0.0",
    .summary = "EC2 instances and ECS services via SigV4-signed AWS API calls (no SDK)",
    .params = aw_params,
    .create = aw_create,
    .stop = aw_stop,
    .destroy = aw_destroy,
    .health = aw_health,
    .ops = &aw_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &aw_plugin;
}
