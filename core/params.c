/**
 * @file params.c
 * Validates an instance's keys against its plugin's sn_param_t table (plus the keys the core
 * handles itself) and holds the result as an sn_cfg_t. Every error names file:line; values of
 * SN_PARAM_SECRET keys never appear in a message, and are wiped when the cfg is freed.
 *
 * Message formats (the location "file:line: " is added by sn_diag_add):
 *   unknown key 'K' in [HDR] (did you mean 'P'?)
 *   duplicate key 'K' in [HDR] (first on line N)
 *   [HDR]: missing required key 'K'
 *   key 'K': empty value                        (a required key given as "K =")
 *   key 'K': 'V' is not an integer               (and the other type phrases below)
 *   key 'K': invalid value (secret not shown)    (any type error on a secret key)
 *   key 'K': ${env:NAME}: environment variable not set   (expansion errors, see sn_expand)
 */
#include "sentinel-internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const sn_param_t *find_param(const sn_param_t *t, const char *key)
{
    for (; t && t->key; t++)
        if (strcmp(t->key, key) == 0)
            return t;
    return NULL;
}

/* The core's table wins, so a plugin cannot redefine a key the core enforces (plugin, allow). */
static const sn_param_t *lookup(const sn_param_t *params, const sn_param_t *core_params,
                                const char *key)
{
    const sn_param_t *p = find_param(core_params, key);
    return p ? p : find_param(params, key);
}

/* Nearest valid key for "did you mean": the closest within edit distance 2 (and closer than
 * the key's own length, so "ab" does not suggest "id"), else the first key @p key prefixes. */
static const char *nearest(const sn_param_t *a, const sn_param_t *b, const char *key)
{
    const char *best = NULL, *prefix = NULL;
    size_t bd = 3, klen = strlen(key);
    const sn_param_t *tabs[2] = {a, b};
    for (int i = 0; i < 2; i++)
        for (const sn_param_t *t = tabs[i]; t && t->key; t++) {
            size_t d = sn_edit_distance(key, t->key);
            if (d < bd && d < klen) {
                bd = d;
                best = t->key;
            }
            if (!prefix && klen >= 2 && strncmp(t->key, key, klen) == 0)
                prefix = t->key;
        }
    return best ? best : prefix;
}

int sn_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    if (!s)
        return SN_EINVAL;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return SN_EINVAL;
}

/* Leading decimal integer; *rest points after it. No leading blanks or '+': values are trimmed,
 * so anything else is a typo worth reporting. */
static int parse_int(const char *s, int allow_neg, int64_t *out, const char **rest)
{
    if (!s || !(isdigit((unsigned char)s[0]) || (allow_neg && s[0] == '-')))
        return SN_EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || !isdigit((unsigned char)end[-1]) || errno)
        return SN_EINVAL;
    *out = v;
    *rest = end;
    return 0;
}

static int parse_int_full(const char *s, int64_t *out)
{
    const char *rest;
    int64_t v;
    if (parse_int(s, 1, &v, &rest) != 0 || *rest)
        return SN_EINVAL;
    *out = v;
    return 0;
}

static int parse_double_full(const char *s, double *out)
{
    if (!s || !*s || isspace((unsigned char)s[0]))
        return SN_EINVAL;
    errno = 0;
    char *end;
    double d = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(d))
        return SN_EINVAL;
    *out = d;
    return 0;
}

/**
 * Parse a duration into milliseconds. A bare number is SECONDS ("300" = 5 minutes, matching how
 * operators write windows); the suffixes ms, s, m, h and d are accepted, with no space between
 * number and unit. Negative values and overflow are refused.
 * Ownership: none. Thread: any.
 */
int sn_parse_duration_ms(const char *s, int64_t *out)
{
    int64_t v, mul;
    const char *u;
    if (parse_int(s, 0, &v, &u) != 0)
        return SN_EINVAL;
    if (!*u || strcmp(u, "s") == 0)
        mul = 1000;
    else if (strcmp(u, "ms") == 0)
        mul = 1;
    else if (strcmp(u, "m") == 0)
        mul = 60 * 1000;
    else if (strcmp(u, "h") == 0)
        mul = 3600 * 1000;
    else if (strcmp(u, "d") == 0)
        mul = 86400 * 1000;
    else
        return SN_EINVAL;
    if (v > INT64_MAX / mul)
        return SN_EINVAL;
    *out = v * mul;
    return 0;
}

/**
 * Parse a size into bytes: a bare number is bytes; k, m, g (also kb/kib, any case) are binary
 * multiples. Negative values and overflow are refused.
 * Ownership: none. Thread: any.
 */
int sn_parse_size(const char *s, int64_t *out)
{
    int64_t v, mul = 1;
    const char *u;
    if (parse_int(s, 0, &v, &u) != 0)
        return SN_EINVAL;
    if (*u) {
        char c = (char)tolower((unsigned char)u[0]);
        const char *tail = u + 1;
        if (strcasecmp(tail, "") != 0 && strcasecmp(tail, "b") != 0 && strcasecmp(tail, "ib") != 0)
            return SN_EINVAL;
        mul = c == 'k' ? 1024 : c == 'm' ? 1024 * 1024 : c == 'g' ? 1024LL * 1024 * 1024 : 0;
        if (!mul)
            return SN_EINVAL;
    }
    if (v > INT64_MAX / mul)
        return SN_EINVAL;
    *out = v * mul;
    return 0;
}

/* NULL when @p v suits @p t, else the phrase completing "'v' ...". */
static const char *type_check(sn_type_t t, const char *v)
{
    int64_t i;
    double d;
    int b;
    switch (t) {
    case SN_T_INT:
        return parse_int_full(v, &i) == 0 ? NULL : "is not an integer";
    case SN_T_DOUBLE:
        return parse_double_full(v, &d) == 0 ? NULL : "is not a finite number";
    case SN_T_BOOL:
        return sn_parse_bool(v, &b) == 0 ? NULL : "is not a boolean (true/false)";
    case SN_T_DURATION:
        return sn_parse_duration_ms(v, &i) == 0 ? NULL
                                                : "is not a duration (e.g. 30, 500ms, 5m, 1h)";
    case SN_T_SIZE:
        return sn_parse_size(v, &i) == 0 ? NULL : "is not a size (e.g. 512k, 8m)";
    case SN_T_STRING:
    case SN_T_LIST:
        return NULL;
    }
    return "has a type this sentineld does not know";
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void list_free(char **l)
{
    if (!l)
        return;
    for (char **p = l; *p; p++)
        wipe_free(*p);
    free(l);
}

/* Split on commas, trim, drop empty items. Returns a NULL-terminated array or NULL (no memory). */
static char **split_list(const char *v)
{
    size_t n = 1;
    for (const char *p = v; *p; p++)
        n += *p == ',';
    char **l = calloc(n + 1, sizeof(*l));
    if (!l)
        return NULL;
    size_t k = 0;
    const char *p = v;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *a = p, *z = p + len;
        while (a < z && isspace((unsigned char)*a))
            a++;
        while (z > a && isspace((unsigned char)z[-1]))
            z--;
        if (z > a) {
            l[k] = strndup(a, (size_t)(z - a));
            if (!l[k]) {
                list_free(l);
                return NULL;
            }
            k++;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return l;
}

static int cfg_index(const sn_cfg_t *c, const char *key)
{
    for (size_t i = 0; c && i < c->n; i++)
        if (strcmp(c->keys[i], key) == 0)
            return (int)i;
    return -1;
}

/* Takes ownership of @p v (also on failure). */
static int cfg_add(sn_cfg_t *c, const char *k, char *v)
{
    char **nk = realloc(c->keys, (c->n + 1) * sizeof(*nk));
    if (nk)
        c->keys = nk;
    char **nv = nk ? realloc(c->vals, (c->n + 1) * sizeof(*nv)) : NULL;
    if (nv)
        c->vals = nv;
    char ***nl = nv ? realloc(c->lists, (c->n + 1) * sizeof(*nl)) : NULL;
    if (nl)
        c->lists = nl;
    char *kc = nl ? strdup(k) : NULL;
    if (!kc) {
        wipe_free(v);
        return SN_ENOMEM;
    }
    c->keys[c->n] = kc;
    c->vals[c->n] = v;
    c->lists[c->n] = NULL;
    c->n++;
    return 0;
}

/* Joins a repeated SN_PARAM_MULTI value onto the first: "a" + "b" -> "a, b". */
static int cfg_join(sn_cfg_t *c, int at, char *v)
{
    size_t l = strlen(c->vals[at]) + strlen(v) + 3;
    char *j = malloc(l);
    if (!j) {
        wipe_free(v);
        return SN_ENOMEM;
    }
    snprintf(j, l, "%s, %s", c->vals[at], v);
    wipe_free(c->vals[at]);
    wipe_free(v);
    c->vals[at] = j;
    return 0;
}

static int first_line(const sn_conf_section_t *s, size_t upto, const char *key)
{
    for (size_t k = 0; k < upto; k++)
        if (strcmp(s->kvs[k].key, key) == 0)
            return s->kvs[k].line;
    return 0;
}

/* One configured key: checks, expands and stores it. Errors go to @p d; returns SN_ENOMEM only
 * when memory ran out. */
static int take_key(sn_cfg_t *c, const sn_conf_section_t *s, size_t i, const char *file,
                    const char *hdr, sn_diag_t *d)
{
    const sn_conf_kv_t *kv = &s->kvs[i];
    const sn_param_t *p = lookup(c->params, c->core_params, kv->key);
    if (!p) {
        const char *near = nearest(c->params, c->core_params, kv->key);
        if (near)
            sn_diag_add(d, file, kv->line, "unknown key '%s' in [%s] (did you mean '%s'?)", kv->key,
                        hdr, near);
        else
            sn_diag_add(d, file, kv->line, "unknown key '%s' in [%s]", kv->key, hdr);
        return 0;
    }
    int at = cfg_index(c, kv->key);
    int first = first_line(s, i, kv->key);
    if (first && !(p->flags & SN_PARAM_MULTI)) {
        sn_diag_add(d, file, kv->line, "duplicate key '%s' in [%s] (first on line %d)", kv->key,
                    hdr, first);
        return 0;
    }
    char why[256] = "";
    char *val = sn_expand(kv->value, why, sizeof(why));
    if (!val) {
        /* sn_expand names the reference, never a value. */
        sn_diag_add(d, file, kv->line, "key '%s': %s", kv->key, why[0] ? why : "out of memory");
        return 0;
    }
    const char *bad = type_check(p->type, val);
    if (bad && (p->flags & SN_PARAM_SECRET))
        sn_diag_add(d, file, kv->line, "key '%s': invalid value (secret not shown)", kv->key);
    else if (bad)
        sn_diag_add(d, file, kv->line, "key '%s': '%s' %s", kv->key, val, bad);
    else if (!*val && (p->flags & SN_PARAM_REQUIRED))
        sn_diag_add(d, file, kv->line, "key '%s': empty value", kv->key);
    if (bad || (!*val && (p->flags & SN_PARAM_REQUIRED))) {
        wipe_free(val);
        return 0;
    }
    if (at >= 0)
        return cfg_join(c, at, val);
    if (first) { /* an earlier occurrence failed; keep reporting, store nothing */
        wipe_free(val);
        return 0;
    }
    return cfg_add(c, kv->key, val);
}

/* Absent keys: required ones are errors, the rest get their default. */
static int fill_defaults(sn_cfg_t *c, const sn_param_t *tab, int is_core, const char *file,
                         const sn_conf_section_t *s, const char *hdr, sn_diag_t *d)
{
    for (const sn_param_t *p = tab; p && p->key; p++) {
        if (!is_core && find_param(c->core_params, p->key))
            continue; /* the core's definition applies */
        if (cfg_index(c, p->key) >= 0 || sn_conf_get(s, p->key))
            continue; /* given (possibly with an error already reported) */
        if (p->flags & SN_PARAM_REQUIRED) {
            sn_diag_add(d, file, s->line, "[%s]: missing required key '%s'", hdr, p->key);
            continue;
        }
        if (!p->def)
            continue;
        const char *bad = type_check(p->type, p->def);
        if (bad) { /* a plugin bug, but say so instead of running with a broken value */
            if (p->flags & SN_PARAM_SECRET)
                sn_diag_add(d, file, s->line, "[%s]: default of key '%s' is invalid", hdr, p->key);
            else
                sn_diag_add(d, file, s->line, "[%s]: default of key '%s': '%s' %s", hdr, p->key,
                            p->def, bad);
            continue;
        }
        char *v = strdup(p->def);
        if (!v || cfg_add(c, p->key, v) != 0)
            return SN_ENOMEM;
    }
    return 0;
}

/**
 * Validate a section and build its cfg. Lists of SN_T_LIST and SN_PARAM_MULTI keys are split
 * here, so sn_cfg_list() on them never writes to the cfg and is safe from any thread.
 * Ownership: the result belongs to the caller (sn_cfg_free); @p params and @p core_params are
 * borrowed and must outlive it (they are static tables in practice).
 * Thread: any, but not concurrently on the same diag.
 */
sn_cfg_t *sn_cfg_build(const sn_conf_t *conf, const sn_conf_section_t *s, const sn_param_t *params,
                       const sn_param_t *core_params, sn_diag_t *d)
{
    size_t before = d->n;
    const char *file = conf ? conf->file : NULL;
    const char *hdr = s->header ? s->header : "?";
    int rc = 0;
    sn_cfg_t *c = calloc(1, sizeof(*c));
    if (!c) {
        sn_diag_add(d, file, s->line, "[%s]: out of memory", hdr);
        return NULL;
    }
    c->params = params;
    c->core_params = core_params;
    for (size_t i = 0; i < s->nkv && rc == 0; i++)
        rc = take_key(c, s, i, file, hdr, d);
    if (rc == 0)
        rc = fill_defaults(c, core_params, 1, file, s, hdr, d);
    if (rc == 0)
        rc = fill_defaults(c, params, 0, file, s, hdr, d);
    for (size_t i = 0; i < c->n && rc == 0; i++) {
        const sn_param_t *p = lookup(params, core_params, c->keys[i]);
        if (p && (p->type == SN_T_LIST || (p->flags & SN_PARAM_MULTI))) {
            c->lists[i] = split_list(c->vals[i]);
            if (!c->lists[i])
                rc = SN_ENOMEM;
        }
    }
    if (rc != 0)
        sn_diag_add(d, file, s->line, "[%s]: out of memory", hdr);
    if (d->n > before) {
        sn_cfg_free(c);
        return NULL;
    }
    return c;
}

/** Ownership: frees @p c and everything it holds; values are wiped first (secrets). */
void sn_cfg_free(sn_cfg_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->keys[i]);
        wipe_free(c->vals[i]);
        list_free(c->lists[i]);
    }
    free(c->keys);
    free(c->vals);
    free(c->lists);
    free(c);
}

/** Ownership: the string belongs to @p c. NULL when the key is absent. Thread: any. */
const char *sn_cfg_str(const sn_cfg_t *c, const char *key)
{
    int i = cfg_index(c, key);
    return i >= 0 ? c->vals[i] : NULL;
}

static sn_type_t key_type(const sn_cfg_t *c, const char *key)
{
    const sn_param_t *p = lookup(c->params, c->core_params, key);
    return p ? p->type : SN_T_STRING;
}

/** Integer value: SN_T_DURATION in milliseconds, SN_T_SIZE in bytes, SN_T_BOOL as 0/1,
 * SN_T_DOUBLE truncated. 0 when absent or unparsable. Thread: any. */
int64_t sn_cfg_int(const sn_cfg_t *c, const char *key)
{
    const char *v = sn_cfg_str(c, key);
    int64_t out = 0;
    double dv;
    int b;
    if (!v)
        return 0;
    switch (key_type(c, key)) {
    case SN_T_DURATION:
        return sn_parse_duration_ms(v, &out) == 0 ? out : 0;
    case SN_T_SIZE:
        return sn_parse_size(v, &out) == 0 ? out : 0;
    case SN_T_BOOL:
        return sn_parse_bool(v, &b) == 0 ? b : 0;
    case SN_T_DOUBLE:
        return parse_double_full(v, &dv) == 0 && dv > -9.2e18 && dv < 9.2e18 ? (int64_t)dv : 0;
    default:
        return parse_int_full(v, &out) == 0 ? out : 0;
    }
}

/** Floating value; durations and sizes as for sn_cfg_int. 0 when absent or unparsable. */
double sn_cfg_double(const sn_cfg_t *c, const char *key)
{
    const char *v = sn_cfg_str(c, key);
    double out = 0;
    if (!v)
        return 0;
    switch (key_type(c, key)) {
    case SN_T_DURATION:
    case SN_T_SIZE:
    case SN_T_BOOL:
        return (double)sn_cfg_int(c, key);
    default:
        return parse_double_full(v, &out) == 0 ? out : 0;
    }
}

/** Boolean value (true/false, yes/no, on/off, 1/0); 0 when absent or unparsable. */
int sn_cfg_bool(const sn_cfg_t *c, const char *key)
{
    const char *v = sn_cfg_str(c, key);
    int b = 0;
    if (v && sn_parse_bool(v, &b) != 0)
        b = 0;
    return b;
}

/**
 * The value split on commas and trimmed (empty items dropped), as a NULL-terminated array.
 * Ownership: the array belongs to @p c. NULL when the key is absent.
 * Thread: any for SN_T_LIST and SN_PARAM_MULTI keys (split at build time); for other keys the
 * first call caches the split, so make it on the loop before sharing the cfg.
 */
const char *const *sn_cfg_list(const sn_cfg_t *c, const char *key)
{
    int i = cfg_index(c, key);
    if (i < 0)
        return NULL;
    if (!c->lists[i])
        c->lists[i] = split_list(c->vals[i]); /* lists[] is a cache: logically const */
    return (const char *const *)c->lists[i];
}
