/**
 * @file config.c
 * INI parsing with inih into sections that keep their line numbers, plus ${env:}/${file:}
 * expansion and the edit distance behind every "did you mean".
 *
 * inih is handed a reader that yields exactly one physical line per call, so the reader's line
 * counter is the line of whatever inih reports next. Debian's libinih 55 is built with inih's
 * defaults, which are compile-time: INI_ALLOW_MULTILINE=1 (an indented line continues the
 * previous key), INI_MAX_LINE=200 without realloc (a longer line would be split silently),
 * inline ';' comments, ':' as a second separator, and only the first error's line returned.
 * The reader therefore
 *  - strips leading blanks, so indentation never turns a line into a continuation and every
 *    key reaches the handler on its own (multi-line is effectively off);
 *  - refuses lines inih cannot hold, instead of letting it cut them in two;
 *  - records section headers itself (inih merges repeated sections and reports no empty ones)
 *    and reports every malformed line, not only the first, handing inih a blank line instead.
 *
 * Message formats (the location "file:line: " is added by sn_diag_add):
 *   syntax error: expected [section] or key = value
 *   syntax error: section header without ']'
 *   syntax error: text after ']'
 *   syntax error: empty key
 *   invalid key name 'K' (letters, digits, '_', '.', '-')
 *   line is longer than N characters
 *   key 'K' appears before any [section]
 *   empty section header []
 *   unknown section kind 'K' (did you mean 'detector'?)
 *   section [sentinel] takes no instance name
 *   section [detector] needs a name: [detector:NAME]
 *   instance name 'N' may hold only letters, digits, '_', '.' and '-'
 *   duplicate section [H] (first on line N)
 */
#include "sentinel-internal.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>

#define SN_CONF_MAX_BYTES (4u << 20)
#define SN_EXPAND_FILE_MAX (64u << 10)
#define SN_EXPAND_REF_MAX 512

static const char *const section_kinds[] = {"sentinel", "pipeline", "input",    "detector", "store",
                                            "analyzer", "executor", "notifier", "embedder", NULL};

typedef struct parse_ctx {
    sn_conf_t *c;
    sn_diag_t *d;
    size_t diag_before; /**< d->n when this parse started */
    const char *text;
    size_t pos, len;
    int line;
    sn_conf_section_t *cur; /**< section receiving keys; NULL before the first or after a bad one */
    int skip_keys;          /**< the last header was unusable: its keys are not reported */
    int errors;
    int oom;
    const char *line_buf; /**< the buffer the reader last filled (inih parses in place) */
    size_t line_len;
} parse_ctx_t;

size_t sn_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t *row = calloc(lb + 1, sizeof(*row));
    if (!row)
        return (size_t)-1; /* "infinitely far": no suggestion rather than a wrong one */
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] == b[j - 1] ? 0 : 1);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
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

static void perr(parse_ctx_t *p, const char *fmt, ...) SN_PRINTF(2, 3);
static void perr(parse_ctx_t *p, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sn_diag_add(p->d, p->c->file, p->line, "%s", msg);
    p->errors++;
}

/* True when this parse already reported something on @p line. */
static int reported_at(const parse_ctx_t *p, int line)
{
    char prefix[64];
    int n = snprintf(prefix, sizeof(prefix), ":%d: ", line);
    size_t flen = strlen(p->c->file);
    for (size_t i = p->diag_before; i < p->d->n; i++)
        if (strncmp(p->d->msgs[i], p->c->file, flen) == 0 &&
            strncmp(p->d->msgs[i] + flen, prefix, (size_t)n) == 0)
            return 1;
    return 0;
}

static const char *suggest_kind(const char *kind)
{
    const char *best = NULL;
    size_t bd = 3, klen = strlen(kind);
    for (size_t k = 0; section_kinds[k]; k++) {
        size_t d = sn_edit_distance(kind, section_kinds[k]);
        if (d < bd && d < klen) {
            bd = d;
            best = section_kinds[k];
        }
    }
    for (size_t k = 0; !best && klen >= 2 && section_kinds[k]; k++)
        if (strncmp(section_kinds[k], kind, klen) == 0)
            best = section_kinds[k];
    return best;
}

static sn_conf_section_t *section_new(parse_ctx_t *p)
{
    sn_conf_t *c = p->c;
    if (c->nsec == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        sn_conf_section_t *ns = realloc(c->sections, cap * sizeof(*ns));
        if (!ns)
            return NULL;
        c->sections = ns;
        c->cap = cap;
    }
    sn_conf_section_t *s = &c->sections[c->nsec++];
    memset(s, 0, sizeof(*s));
    s->line = p->line;
    return s;
}

/* Record the header on @p raw (starts with '['); reports every problem with it. */
static void section_open(parse_ctx_t *p, const char *raw)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", raw + 1);
    char *close = strchr(buf, ']');
    p->cur = NULL;
    p->skip_keys = 1;
    if (!close) {
        perr(p, "syntax error: section header without ']'");
        return;
    }
    *close = '\0';
    char *after = trim(close + 1);
    if (*after && *after != '#' && *after != ';') {
        perr(p, "syntax error: text after ']'");
        return;
    }
    char *kind = trim(buf), *name = NULL;
    if (!*kind) {
        perr(p, "empty section header []");
        return;
    }
    char *colon = strchr(kind, ':');
    if (colon) {
        *colon = '\0';
        name = trim(colon + 1);
        kind = trim(kind);
    }
    int known = 0;
    for (size_t k = 0; section_kinds[k]; k++)
        known |= strcmp(section_kinds[k], kind) == 0;
    int bare = strcmp(kind, "sentinel") == 0 || strcmp(kind, "pipeline") == 0;
    int bad = 1;
    if (!known) {
        const char *near = suggest_kind(kind);
        if (near)
            perr(p, "unknown section kind '%s' (did you mean '%s'?)", kind, near);
        else
            perr(p, "unknown section kind '%s'", kind);
    } else if (bare && name) {
        perr(p, "section [%s] takes no instance name", kind);
    } else if (!bare && (!name || !*name)) {
        perr(p, "section [%s] needs a name: [%s:NAME]", kind, kind);
    } else if (!bare && !valid_name(name)) {
        perr(p, "instance name '%s' may hold only letters, digits, '_', '.' and '-'", name);
    } else {
        bad = 0;
    }
    if (bad)
        return;
    char hdr[300];
    snprintf(hdr, sizeof(hdr), name ? "%s:%s" : "%s", kind, name ? name : "");
    for (size_t i = 0; i < p->c->nsec; i++)
        if (strcmp(p->c->sections[i].header, hdr) == 0) {
            perr(p, "duplicate section [%s] (first on line %d)", hdr, p->c->sections[i].line);
            return;
        }
    sn_conf_section_t *s = section_new(p);
    if (!s) {
        p->oom = 1;
        return;
    }
    s->header = strdup(hdr);
    s->kind = strdup(kind);
    s->name = name ? strdup(name) : NULL;
    if (!s->header || !s->kind || (name && !s->name)) {
        p->oom = 1;
        return;
    }
    p->cur = s;
    p->skip_keys = 0;
}

/* The reader inih pulls lines through: one physical line per call, counted, pre-checked. */
static char *reader(char *str, int num, void *stream)
{
    parse_ctx_t *p = stream;
    if (p->pos >= p->len)
        return NULL;
    const char *start = p->text + p->pos;
    const char *nl = memchr(start, '\n', p->len - p->pos);
    size_t n = nl ? (size_t)(nl - start) : p->len - p->pos;
    p->pos += n + (nl ? 1 : 0);
    p->line++;
    if (p->line == 1 && n >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0) {
        start += 3;
        n -= 3;
    }
    while (n && (*start == ' ' || *start == '\t')) { /* no indentation: no continuations */
        start++;
        n--;
    }
    while (n && (start[n - 1] == '\r' || start[n - 1] == ' ' || start[n - 1] == '\t'))
        n--;
    strcpy(str, "\n"); /* what inih sees for a line this reader rejects */
    if (num < 3 || n + 2 > (size_t)num) {
        perr(p, "line is longer than %d characters", num > 2 ? num - 2 : 0);
        return str;
    }
    memcpy(str, start, n);
    str[n] = '\n';
    str[n + 1] = '\0';
    p->line_buf = str;
    p->line_len = n + 1;
    if (n == 0 || str[0] == '#' || str[0] == ';')
        return str;
    if (str[0] == '[') {
        str[n] = '\0';
        section_open(p, str);
        strcpy(str, "\n");
        return str;
    }
    if (!memchr(str, '=', n) && !memchr(str, ':', n)) {
        perr(p, "syntax error: expected [section] or key = value");
        strcpy(str, "\n");
    }
    return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    (void)section; /* the reader tracks sections, with their lines */
    parse_ctx_t *p = user;
    if (!name || p->oom)
        return p->oom ? 0 : 1;
    if (!p->cur) {
        if (!p->skip_keys)
            perr(p, "key '%s' appears before any [section]", name);
        return 1;
    }
    if (!*name) {
        perr(p, "syntax error: empty key");
        return 1;
    }
    if (!valid_name(name)) {
        perr(p, "invalid key name '%s' (letters, digits, '_', '.', '-')", name);
        return 1;
    }
    sn_conf_section_t *s = p->cur;
    if (s->nkv == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        sn_conf_kv_t *nk = realloc(s->kvs, cap * sizeof(*nk));
        if (!nk)
            goto oom;
        s->kvs = nk;
        s->cap = cap;
    }
    char *v = strdup(value ? value : "");
    if (!v)
        goto oom;
    /* inih removed " ;" comments; " #" needs the same whitespace before it, so values such as
     * URLs with a fragment survive. inih hands the value without its leading blanks: whether
     * "key = # note" had one is read from the line buffer, when the value points into it. */
    int blank_before = value && value > p->line_buf && value < p->line_buf + p->line_len &&
                       isspace((unsigned char)value[-1]);
    if (blank_before && (v[0] == '#' || v[0] == ';'))
        v[0] = '\0';
    for (char *q = v + 1; *v && *q; q++)
        if ((*q == '#' || *q == ';') && isspace((unsigned char)q[-1])) {
            *q = '\0';
            break;
        }
    char *tv = trim(v);
    memmove(v, tv, strlen(tv) + 1);
    char *k = strdup(name);
    if (!k) {
        free(v);
        goto oom;
    }
    sn_conf_kv_t *kv = &s->kvs[s->nkv++];
    kv->key = k;
    kv->value = v;
    kv->line = p->line;
    return 1;
oom:
    p->oom = 1;
    return 0;
}

/**
 * Ownership: the result belongs to the caller (sn_conf_free); @p name and @p text are copied
 * or borrowed for the call. Errors are appended to @p d.
 */
sn_conf_t *sn_conf_load_string(const char *name, const char *text, sn_diag_t *d)
{
    sn_conf_t *c = calloc(1, sizeof(*c));
    if (c)
        c->file = strdup(name);
    if (!c || !c->file) {
        sn_diag_add(d, name, 0, "out of memory");
        free(c);
        return NULL;
    }
    parse_ctx_t p = {.c = c, .d = d, .diag_before = d->n, .text = text, .len = strlen(text)};
    int rc = ini_parse_stream(reader, &p, handler, &p);
    if (p.oom || rc < 0) {
        sn_diag_add(d, c->file, 0, "out of memory");
        p.errors++;
    } else if (rc > 0 && !reported_at(&p, rc)) {
        /* Something inih refused that the reader let through. */
        p.line = rc;
        perr(&p, "syntax error: expected [section] or key = value");
    }
    if (p.errors) {
        sn_conf_free(c);
        return NULL;
    }
    return c;
}

/** Ownership: as sn_conf_load_string. Reads the whole file (at most 4 MiB): startup only. */
sn_conf_t *sn_conf_load_file(const char *path, sn_diag_t *d)
{
    sn_conf_t *c = NULL;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        sn_diag_add(d, path, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    buf = malloc(SN_CONF_MAX_BYTES + 1);
    if (!buf) {
        sn_diag_add(d, path, 0, "out of memory");
        goto out;
    }
    size_t n = fread(buf, 1, SN_CONF_MAX_BYTES + 1, f);
    if (ferror(f)) {
        sn_diag_add(d, path, 0, "cannot read: %s", strerror(errno));
        goto out;
    }
    if (n > SN_CONF_MAX_BYTES) {
        sn_diag_add(d, path, 0, "larger than %u bytes", SN_CONF_MAX_BYTES);
        goto out;
    }
    if (memchr(buf, '\0', n)) {
        sn_diag_add(d, path, 0, "contains a NUL byte: not a text file");
        goto out;
    }
    buf[n] = '\0';
    c = sn_conf_load_string(path, buf, d);
out:
    free(buf);
    fclose(f);
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

/** The section [kind] (name NULL) or [kind:name]. Ownership: borrowed from @p c. */
const sn_conf_section_t *sn_conf_find(const sn_conf_t *c, const char *kind, const char *name)
{
    for (size_t i = 0; c && i < c->nsec; i++) {
        const sn_conf_section_t *s = &c->sections[i];
        if (strcmp(s->kind, kind) != 0)
            continue;
        if ((!name && !s->name) || (name && s->name && strcmp(name, s->name) == 0))
            return s;
    }
    return NULL;
}

/** The first occurrence of @p key in @p s. Ownership: borrowed from the section. */
const sn_conf_kv_t *sn_conf_get(const sn_conf_section_t *s, const char *key)
{
    if (!s)
        return NULL;
    for (size_t i = 0; i < s->nkv; i++)
        if (strcmp(s->kvs[i].key, key) == 0)
            return &s->kvs[i];
    return NULL;
}

typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = (b->len + n + 1) * 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_wipe(sbuf_t *b)
{
    if (b->s)
        explicit_bzero(b->s, b->cap);
    free(b->s);
    b->s = NULL;
}

static int env_name_ok(const char *s)
{
    if (!*s || isdigit((unsigned char)*s))
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_')
            return 0;
    return 1;
}

/* Append the content of ${file:path} (trailing newlines stripped). Returns 0 or -1 with @p why
 * naming the reference. */
static int expand_file(sbuf_t *b, const char *ref, const char *path, char *why, size_t whylen)
{
    int rc = -1;
    char *buf = NULL;
    if (path[0] != '/') {
        snprintf(why, whylen, "${%s}: path must be absolute", ref);
        return -1;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, whylen, "${%s}: cannot read: %s", ref, strerror(errno));
        return -1;
    }
    buf = malloc(SN_EXPAND_FILE_MAX + 1);
    if (!buf) {
        snprintf(why, whylen, "${%s}: out of memory", ref);
        goto out;
    }
    size_t n = fread(buf, 1, SN_EXPAND_FILE_MAX + 1, f);
    if (ferror(f)) {
        snprintf(why, whylen, "${%s}: cannot read: %s", ref, strerror(errno));
        goto out;
    }
    if (n > SN_EXPAND_FILE_MAX) {
        snprintf(why, whylen, "${%s}: larger than 64 KiB", ref);
        goto out;
    }
    if (memchr(buf, '\0', n)) {
        snprintf(why, whylen, "${%s}: contains a NUL byte", ref);
        goto out;
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    sb_add(b, buf, n);
    rc = 0;
out:
    if (buf) {
        explicit_bzero(buf, SN_EXPAND_FILE_MAX + 1);
        free(buf);
    }
    fclose(f);
    return rc;
}

/**
 * Expand every ${env:NAME} and ${file:/absolute/path} in @p in. Expanded text is not expanded
 * again. On failure @p why names the reference and the reason, never a value.
 * Ownership: caller frees the result (it may hold a secret: wipe it first).
 * Thread: any; reads files, so not on the event loop once it runs.
 */
char *sn_expand(const char *in, char *why, size_t whylen)
{
    sbuf_t b = {0};
    const char *p = in;
    if (why && whylen)
        why[0] = '\0';
    sb_add(&b, "", 0);
    while (*p && !b.oom) {
        const char *start = strstr(p, "${");
        if (!start) {
            sb_add(&b, p, strlen(p));
            break;
        }
        sb_add(&b, p, (size_t)(start - p));
        const char *end = strchr(start, '}');
        if (!end) {
            snprintf(why, whylen, "unterminated '${'");
            goto fail;
        }
        char ref[SN_EXPAND_REF_MAX];
        size_t rl = (size_t)(end - start - 2);
        if (rl >= sizeof(ref)) {
            snprintf(why, whylen, "reference longer than %d characters", SN_EXPAND_REF_MAX - 1);
            goto fail;
        }
        memcpy(ref, start + 2, rl);
        ref[rl] = '\0';
        if (strncmp(ref, "env:", 4) == 0) {
            if (!env_name_ok(ref + 4)) {
                snprintf(why, whylen, "${%s}: not a variable name", ref);
                goto fail;
            }
            const char *v = getenv(ref + 4);
            if (!v) {
                snprintf(why, whylen, "${%s}: environment variable not set", ref);
                goto fail;
            }
            sb_add(&b, v, strlen(v));
        } else if (strncmp(ref, "file:", 5) == 0) {
            if (expand_file(&b, ref, ref + 5, why, whylen) != 0)
                goto fail;
        } else {
            snprintf(why, whylen, "${%s}: only ${env:NAME} and ${file:/path} expand", ref);
            goto fail;
        }
        p = end + 1;
    }
    if (b.oom) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    return b.s;
fail:
    sb_wipe(&b);
    return NULL;
}
