/**
 * @file params.c
 * Validates an instance's keys against its plugin's sn_param_t table (plus the keys the core
 * handles itself) and holds the result as an sn_cfg_t. Every error names file:line; values of
 * SN_PARAM_SECRET keys never appear in a message.
 */
#include "sentinel-internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const sn_param_t *find_param(const sn_param_t *t, const char *key)
{
    for (; t && t->key; t++)
        if (strcmp(t->key, key) == 0)
            return t;
    return NULL;
}

static const char *nearest(const sn_param_t *a, const sn_param_t *b, const char *key)
{
    const char *best = NULL;
    size_t bd = 3;
    const sn_param_t *tabs[2] = {a, b};
    for (int i = 0; i < 2; i++)
        for (const sn_param_t *t = tabs[i]; t && t->key; t++) {
            size_t d = sn_edit_distance(key, t->key);
            if (d < bd || (strncmp(t->key, key, strlen(key)) == 0 && !best)) {
                bd = d < bd ? d : bd;
                best = t->key;
            }
        }
    return best;
}

int sn_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no",
                                                                                "off", "0"};
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

static int parse_int(const char *s, int64_t *out, const char **rest)
{
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno)
        return SN_EINVAL;
    *out = v;
    *rest = end;
    return 0;
}

/* Durations: a bare number is seconds; suffixes ms, s, m, h, d. Result in milliseconds. */
int sn_parse_duration_ms(const char *s, int64_t *out)
{
    int64_t v;
    const char *u;
    if (parse_int(s, &v, &u) != 0 || v < 0)
        return SN_EINVAL;
    int64_t mul;
    if (!*u || strcmp(u, "s") == 0)
        mul = 1000;
    else if (strcmp(u, "ms") == 0)
        mul = 1;
    else if (strcmp(u, "m") == 0)
        mul = 60000;
    else if (strcmp(u, "h") == 0)
        mul = 3600000;
    else if (strcmp(u, "d") == 0)
        mul = 86400000;
    else
        return SN_EINVAL;
    if (v > INT64_MAX / mul)
        return SN_EINVAL;
    *out = v * mul;
    return 0;
}

/* Sizes: bytes, or k, m, g (binary). */
int sn_parse_size(const char *s, int64_t *out)
{
    int64_t v;
    const char *u;
    if (parse_int(s, &v, &u) != 0 || v < 0)
        return SN_EINVAL;
    int64_t mul = 1;
    if (*u) {
        char c = (char)tolower((unsigned char)u[0]);
        if (u[1] && !(tolower((unsigned char)u[1]) == 'b' && !u[2]) &&
            !(tolower((unsigned char)u[1]) == 'i' && tolower((unsigned char)u[2]) == 'b' && !u[3]))
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

static const char *type_check(sn_type_t t, const char *v)
{
    int64_t i;
    const char *rest;
    int b;
    switch (t) {
    case SN_T_INT:
        return parse_int(v, &i, &rest) == 0 && !*rest ? NULL : "is not an integer";
    case SN_T_DOUBLE: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        return end != v && !*end && !errno && isfinite(d) ? NULL : "is not a finite number";
    }
    case SN_T_BOOL:
        return sn_parse_bool(v, &b) == 0 ? NULL : "is not a boolean (true/false)";
    case SN_T_DURATION:
        return sn_parse_duration_ms(v, &i) == 0 ? NULL
                                                : "is not a duration (e.g. 30, 500ms, 5m, 1h)";
    case SN_T_SIZE:
        return sn_parse_size(v, &i) == 0 ? NULL : "is not a size (e.g. 512k, 8m)";
    default:
        return NULL;
    }
}

static int cfg_add(sn_cfg_t *c, const char *k, const char *v)
{
    char **nk = realloc(c->keys, (c->n + 1) * sizeof(*nk));
    if (!nk)
        return SN_ENOMEM;
    c->keys = nk;
    char **nv = realloc(c->vals, (c->n + 1) * sizeof(*nv));
    if (!nv)
        return SN_ENOMEM;
    c->vals = nv;
    char ***nl = realloc(c->lists, (c->n + 1) * sizeof(*nl));
    if (!nl)
        return SN_ENOMEM;
    c->lists = nl;
    c->keys[c->n] = strdup(k);
    c->vals[c->n] = strdup(v);
    c->lists[c->n] = NULL;
    c->n++;
    return 0;
}

static int cfg_index(const sn_cfg_t *c, const char *key)
{
    for (size_t i = 0; c && i < c->n; i++)
        if (strcmp(c->keys[i], key) == 0)
            return (int)i;
    return -1;
}

sn_cfg_t *sn_cfg_build(const sn_conf_t *conf, const sn_conf_section_t *s, const sn_param_t *params,
                       const sn_param_t *core_params, sn_diag_t *d)
{
    size_t before = d->n;
    const char *file = conf ? conf->file : NULL;
    sn_cfg_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->params = params;
    const char *hdr = s->header ? s->header : "?";
    for (size_t i = 0; i < s->nkv; i++) {
        const sn_conf_kv_t *kv = &s->kvs[i];
        const sn_param_t *p = find_param(core_params, kv->key);
        if (!p)
            p = find_param(params, kv->key);
        if (!p) {
            const char *near = nearest(params, core_params, kv->key);
            if (near)
                sn_diag_add(d, file, kv->line, "unknown key '%s' in [%s] (did you mean '%s'?)",
                            kv->key, hdr, near);
            else
                sn_diag_add(d, file, kv->line, "unknown key '%s' in [%s]", kv->key, hdr);
            continue;
        }
        int secret = (p->flags & SN_PARAM_SECRET) != 0;
        char why[256] = "";
        char *val = sn_expand(kv->value, why, sizeof(why));
        if (!val) {
            sn_diag_add(d, file, kv->line, "key '%s': %s", kv->key, why);
            continue;
        }
        const char *bad = type_check(p->type, val);
        if (bad) {
            if (secret)
                sn_diag_add(d, file, kv->line, "key '%s': invalid value (secret not shown)",
                            kv->key);
            else
                sn_diag_add(d, file, kv->line, "key '%s': '%s' %s", kv->key, val, bad);
            free(val);
            continue;
        }
        int at = cfg_index(c, kv->key);
        if (at >= 0) {
            if (p->flags & SN_PARAM_MULTI) {
                size_t l = strlen(c->vals[at]) + strlen(val) + 3;
                char *j = malloc(l);
                if (j) {
                    snprintf(j, l, "%s, %s", c->vals[at], val);
                    free(c->vals[at]);
                    c->vals[at] = j;
                }
            } else {
                int first = 0;
                for (size_t k = 0; k < i; k++)
                    if (strcmp(s->kvs[k].key, kv->key) == 0) {
                        first = s->kvs[k].line;
                        break;
                    }
                sn_diag_add(d, file, kv->line, "key '%s' is duplicate (first on line %d)", kv->key,
                            first);
            }
            free(val);
            continue;
        }
        cfg_add(c, kv->key, val);
        free(val);
    }
    const sn_param_t *tabs[2] = {core_params, params};
    for (int t = 0; t < 2; t++)
        for (const sn_param_t *p = tabs[t]; p && p->key; p++) {
            if (cfg_index(c, p->key) >= 0)
                continue;
            if (t == 1 && find_param(core_params, p->key))
                continue;
            if (p->flags & SN_PARAM_REQUIRED)
                sn_diag_add(d, file, s->line, "[%s]: missing required key '%s'", hdr, p->key);
            else if (p->def)
                cfg_add(c, p->key, p->def);
        }
    if (d->n > before) {
        sn_cfg_free(c);
        return NULL;
    }
    return c;
}

void sn_cfg_free(sn_cfg_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->keys[i]);
        /* Wipe values: secrets should not linger in freed memory. */
        if (c->vals[i]) {
            memset(c->vals[i], 0, strlen(c->vals[i]));
            free(c->vals[i]);
        }
        if (c->lists[i]) {
            for (char **l = c->lists[i]; *l; l++)
                free(*l);
            free(c->lists[i]);
        }
    }
    free(c->keys);
    free(c->vals);
    free(c->lists);
    free(c);
}

const char *sn_cfg_str(const sn_cfg_t *c, const char *key)
{
    int i = cfg_index(c, key);
    return i >= 0 ? c->vals[i] : NULL;
}

int64_t sn_cfg_int(const sn_cfg_t *c, const char *key)
{
    const char *v = sn_cfg_str(c, key);
    if (!v)
        return 0;
    const sn_param_t *p = find_param(c->params, key);
    int64_t out = 0;
    if (p && p->type == SN_T_DURATION)
        sn_parse_duration_ms(v, &out);
    else if (p && p->type == SN_T_SIZE)
        sn_parse_size(v, &out);
    else
        out = strtoll(v, NULL, 10);
    return out;
}

double sn_cfg_double(const sn_cfg_t *c, const char *key)
{
    const char *v = sn_cfg_str(c, key);
    return v ? strtod(v, NULL) : 0.0;
}

int sn_cfg_bool(const sn_cfg_t *c, const char *key)
{
    const char *v = sn_cfg_str(c, key);
    int b = 0;
    if (v)
        sn_parse_bool(v, &b);
    return b;
}

const char *const *sn_cfg_list(const sn_cfg_t *c, const char *key)
{
    int i = cfg_index(c, key);
    if (i < 0)
        return NULL;
    if (c->lists[i])
        return (const char *const *)c->lists[i];
    size_t n = 1;
    for (const char *p = c->vals[i]; *p; p++)
        n += *p == ',';
    char **l = calloc(n + 1, sizeof(*l));
    if (!l)
        return NULL;
    size_t k = 0;
    char *dup = strdup(c->vals[i]), *save = NULL;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        size_t tl = strlen(tok);
        while (tl && isspace((unsigned char)tok[tl - 1]))
            tok[--tl] = '\0';
        if (tl)
            l[k++] = strdup(tok);
    }
    free(dup);
    ((sn_cfg_t *)c)->lists[i] = l;
    return (const char *const *)l;
}
