/**
 * @file config.c
 * INI parsing with inih. Lines are counted in the reader handed to ini_parse_stream, so every
 * key and section keeps its exact line for error messages; section headers are recorded as the
 * reader passes them, which also catches duplicate and empty sections that inih would merge.
 */
#include "sentinel-internal.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>

#define SN_CONF_MAX_BYTES (4u << 20)
#define SN_EXPAND_FILE_MAX (64u << 10)

static const char *const section_kinds[] = {"sentinel", "pipeline", "input",    "detector", "store",
                                            "analyzer", "executor", "notifier", "embedder", NULL};

typedef struct parse_ctx {
    sn_conf_t *c;
    sn_diag_t *d;
    const char *text;
    size_t pos, len;
    int line;
    sn_conf_section_t *cur;
    int errors;
} parse_ctx_t;

size_t sn_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t *row = calloc(lb + 1, sizeof(*row));
    if (!row)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t tmp = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = prev + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = tmp;
        }
    }
    size_t r = row[lb];
    free(row);
    return r;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_.-", *s))
            return 0;
    return 1;
}

static void section_open(parse_ctx_t *p, const char *raw)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", raw);
    char *close = strchr(buf, ']');
    if (close)
        *close = '\0';
    char *hdr = trim(buf + 1);
    sn_conf_t *c = p->c;
    for (size_t i = 0; i < c->nsec; i++)
        if (strcmp(c->sections[i].header, hdr) == 0) {
            sn_diag_add(p->d, c->file, p->line, "section [%s] is duplicate (first on line %d)", hdr,
                        c->sections[i].line);
            p->errors++;
        }
    if (c->nsec == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        sn_conf_section_t *ns = realloc(c->sections, cap * sizeof(*ns));
        if (!ns)
            return;
        c->sections = ns;
        c->cap = cap;
    }
    sn_conf_section_t *s = &c->sections[c->nsec++];
    memset(s, 0, sizeof(*s));
    s->header = strdup(hdr);
    s->line = p->line;
    char *colon = strchr(hdr, ':');
    if (colon) {
        *colon = '\0';
        s->kind = strdup(trim(hdr));
        s->name = strdup(trim(colon + 1));
    } else {
        s->kind = strdup(hdr);
    }
    p->cur = s;
    int known = 0;
    for (size_t k = 0; section_kinds[k]; k++)
        if (strcmp(section_kinds[k], s->kind) == 0)
            known = 1;
    int bare = strcmp(s->kind, "sentinel") == 0 || strcmp(s->kind, "pipeline") == 0;
    if (!known) {
        const char *best = NULL;
        size_t bd = 3;
        for (size_t k = 0; section_kinds[k]; k++) {
            size_t dd = sn_edit_distance(s->kind, section_kinds[k]);
            if (dd < bd) {
                bd = dd;
                best = section_kinds[k];
            }
        }
        if (best)
            sn_diag_add(p->d, c->file, p->line, "unknown section kind '%s' (did you mean '%s'?)",
                        s->kind, best);
        else
            sn_diag_add(p->d, c->file, p->line, "unknown section kind '%s'", s->kind);
        p->errors++;
    } else if (bare && s->name) {
        sn_diag_add(p->d, c->file, p->line, "section [%s] takes no instance name", s->kind);
        p->errors++;
    } else if (!bare && !s->name) {
        sn_diag_add(p->d, c->file, p->line, "section [%s] needs a name: [%s:NAME]", s->kind,
                    s->kind);
        p->errors++;
    } else if (!bare && !valid_name(s->name)) {
        sn_diag_add(p->d, c->file, p->line,
                    "instance name '%s' may hold only letters, digits, '_', '.' and '-'", s->name);
        p->errors++;
    }
}

/* The reader inih pulls lines through: counts them and records section headers. */
static char *reader(char *str, int num, void *stream)
{
    parse_ctx_t *p = stream;
    if (p->pos >= p->len)
        return NULL;
    size_t i = 0;
    while (p->pos < p->len && i + 1 < (size_t)num) {
        char ch = p->text[p->pos++];
        str[i++] = ch;
        if (ch == '\n')
            break;
    }
    str[i] = '\0';
    p->line++;
    const char *s = str;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '[')
        section_open(p, s);
    return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    (void)section;
    parse_ctx_t *p = user;
    if (!name)
        return 1;
    if (!p->cur) {
        sn_diag_add(p->d, p->c->file, p->line, "key '%s' appears before any [section]", name);
        p->errors++;
        return 1;
    }
    sn_conf_section_t *s = p->cur;
    if (s->nkv == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        sn_conf_kv_t *nk = realloc(s->kvs, cap * sizeof(*nk));
        if (!nk)
            return 0;
        s->kvs = nk;
        s->cap = cap;
    }
    /* Inline comments need whitespace before '#' or ';' so values such as URLs with '#' live. */
    char *v = strdup(value ? value : "");
    for (char *q = v; q && *q; q++)
        if ((*q == '#' || *q == ';') && q > v && isspace((unsigned char)q[-1])) {
            *q = '\0';
            break;
        }
    char *tv = trim(v);
    sn_conf_kv_t *kv = &s->kvs[s->nkv++];
    kv->key = strdup(name);
    kv->value = strdup(tv);
    kv->line = p->line;
    free(v);
    return 1;
}

sn_conf_t *sn_conf_load_string(const char *name, const char *text, sn_diag_t *d)
{
    sn_conf_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->file = strdup(name);
    parse_ctx_t p = {.c = c, .d = d, .text = text, .len = strlen(text)};
    int rc = ini_parse_stream(reader, &p, handler, &p);
    if (rc > 0) {
        sn_diag_add(d, c->file, rc, "syntax error: expected [section] or key = value");
        p.errors++;
    } else if (rc < 0) {
        sn_diag_add(d, c->file, 0, "cannot parse: out of memory");
        p.errors++;
    }
    if (p.errors) {
        sn_conf_free(c);
        return NULL;
    }
    return c;
}

sn_conf_t *sn_conf_load_file(const char *path, sn_diag_t *d)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        sn_diag_add(d, path, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    char *buf = malloc(SN_CONF_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, SN_CONF_MAX_BYTES + 1, f) : 0;
    fclose(f);
    if (!buf) {
        sn_diag_add(d, path, 0, "out of memory");
        return NULL;
    }
    if (n > SN_CONF_MAX_BYTES) {
        free(buf);
        sn_diag_add(d, path, 0, "larger than %u bytes", SN_CONF_MAX_BYTES);
        return NULL;
    }
    buf[n] = '\0';
    sn_conf_t *c = sn_conf_load_string(path, buf, d);
    free(buf);
    return c;
}

void sn_conf_free(sn_conf_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nsec; i++) {
        sn_conf_section_t *s = &c->sections[i];
        for (size_t j = 0; j < s->nkv; j++) {
            free(s->kvs[j].key);
            free(s->kvs[j].value);
        }
        free(s->kvs);
        free(s->header);
        free(s->kind);
        free(s->name);
    }
    free(c->sections);
    free(c->file);
    free(c);
}

const sn_conf_section_t *sn_conf_find(const sn_conf_t *c, const char *kind, const char *name)
{
    for (size_t i = 0; i < c->nsec; i++) {
        const sn_conf_section_t *s = &c->sections[i];
        if (strcmp(s->kind, kind) != 0)
            continue;
        if ((!name && !s->name) || (name && s->name && strcmp(name, s->name) == 0))
            return s;
    }
    return NULL;
}

const sn_conf_kv_t *sn_conf_get(const sn_conf_section_t *s, const char *key)
{
    if (!s)
        return NULL;
    for (size_t i = 0; i < s->nkv; i++)
        if (strcmp(s->kvs[i].key, key) == 0)
            return &s->kvs[i];
    return NULL;
}

static int append(char **out, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = (*len + n + 1) * 2;
        char *no = realloc(*out, nc);
        if (!no)
            return -1;
        *out = no;
        *cap = nc;
    }
    memcpy(*out + *len, s, n);
    *len += n;
    (*out)[*len] = '\0';
    return 0;
}

char *sn_expand(const char *in, char *why, size_t whylen)
{
    size_t len = 0, cap = strlen(in) + 1;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    out[0] = '\0';
    const char *p = in;
    while (*p) {
        const char *start = strstr(p, "${");
        if (!start) {
            append(&out, &len, &cap, p, strlen(p));
            break;
        }
        append(&out, &len, &cap, p, (size_t)(start - p));
        const char *end = strchr(start, '}');
        if (!end) {
            snprintf(why, whylen, "unterminated '${'");
            free(out);
            return NULL;
        }
        char ref[512];
        size_t rl = (size_t)(end - start - 2);
        if (rl >= sizeof(ref)) {
            snprintf(why, whylen, "reference too long");
            free(out);
            return NULL;
        }
        memcpy(ref, start + 2, rl);
        ref[rl] = '\0';
        if (strncmp(ref, "env:", 4) == 0) {
            const char *v = getenv(ref + 4);
            if (!v) {
                snprintf(why, whylen, "${%s}: environment variable not set", ref);
                free(out);
                return NULL;
            }
            append(&out, &len, &cap, v, strlen(v));
        } else if (strncmp(ref, "file:", 5) == 0) {
            FILE *f = fopen(ref + 5, "rb");
            if (!f) {
                snprintf(why, whylen, "${%s}: %s", ref, strerror(errno));
                free(out);
                return NULL;
            }
            char *buf = malloc(SN_EXPAND_FILE_MAX + 1);
            size_t n = buf ? fread(buf, 1, SN_EXPAND_FILE_MAX + 1, f) : 0;
            fclose(f);
            if (!buf || n > SN_EXPAND_FILE_MAX) {
                snprintf(why, whylen, "${%s}: larger than 64 KiB", ref);
                free(buf);
                free(out);
                return NULL;
            }
            while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                n--;
            append(&out, &len, &cap, buf, n);
            free(buf);
        } else {
            snprintf(why, whylen, "${%s}: only ${env:NAME} and ${file:/path} expand", ref);
            free(out);
            return NULL;
        }
        p = end + 1;
    }
    return out;
}
