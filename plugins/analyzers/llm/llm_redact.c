/**
 * @file llm_redact.c
 * Redaction of everything the `llm` analyzer sends out of the process. Built-in POSIX extended
 * regular expressions catch bearer tokens, AWS access keys and secret keys, JWTs, key=value
 * credentials (password=, token=, api_key=, ...), e-mail addresses and, when asked for, IPv4
 * addresses; configured patterns are added to them. A match is replaced by "[REDACTED]"
 * (for the credential rules only the secret part, so "password=[REDACTED]" keeps its meaning).
 *
 * The analyzer redacts a copy of the incident document once, before any prompt or tool result
 * is built from it, so no code path can send unredacted text.
 */
#include "llm-internal.h"
#include "strbuf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLM_MASK "[REDACTED]"
#define LLM_PATTERNS_MAX 64
#define LLM_PATTERN_LINE_MAX 1024

typedef struct llm_builtin {
    const char *name;
    const char *re;
    int flags;
    int group;
} llm_builtin_t;

static const llm_builtin_t llm_builtins[] = {
    {"bearer", "bearer[[:space:]]+([A-Za-z0-9._~+/=-]{8,})", REG_ICASE, 1},
    {"aws_access_key", "(AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}", 0, 0},
    {"aws_secret_key",
     "aws_?secret_?(access_?)?key[\"']?[[:space:]]*[:=][[:space:]]*[\"']?([A-Za-z0-9/+=]{40})",
     REG_ICASE, 2},
    {"jwt", "eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,}", 0, 0},
    {"credential",
     "(password|passwd|pwd|secret|token|api_?key|apikey|access_?key|auth)[\"']?[[:space:]]*[:=]"
     "[[:space:]]*[\"']?([^[:space:]\"',;&]{4,})",
     REG_ICASE, 2},
};

static const char *const llm_email_re = "[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}";
static const char *const llm_ipv4_re = "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}";

void llm_redact_free(llm_redactor_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        regfree(&r->rules[i].re);
    free(r->rules);
    r->rules = NULL;
    r->n = 0;
}

static int llm_rule_add(llm_redactor_t *r, size_t cap, const char *name, const char *re, int flags,
                        int group, int ip, char *err, size_t errlen)
{
    if (r->n >= cap) {
        snprintf(err, errlen, "more than %d redaction patterns", LLM_PATTERNS_MAX);
        return SN_EINVAL;
    }
    llm_rule_t *x = &r->rules[r->n];
    memset(x, 0, sizeof(*x));
    int rc = regcomp(&x->re, re, REG_EXTENDED | flags);
    if (rc != 0) {
        char why[120];
        regerror(rc, &x->re, why, sizeof(why));
        snprintf(err, errlen, "redaction %s does not compile: %s", name, why);
        return SN_EINVAL;
    }
    x->group = group;
    x->ip = ip;
    snprintf(x->name, sizeof(x->name), "%s", name);
    r->n++;
    return 0;
}

int llm_redact_init(llm_redactor_t *r, const char *const *patterns, const char *file, int ips,
                    int emails, char *err, size_t errlen)
{
    size_t cap = LLM_PATTERNS_MAX + sizeof(llm_builtins) / sizeof(llm_builtins[0]) + 2;
    memset(r, 0, sizeof(*r));
    r->rules = calloc(cap, sizeof(*r->rules));
    if (!r->rules) {
        snprintf(err, errlen, "out of memory");
        return SN_ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(llm_builtins) / sizeof(llm_builtins[0]); i++)
        rc = llm_rule_add(r, cap, llm_builtins[i].name, llm_builtins[i].re, llm_builtins[i].flags,
                          llm_builtins[i].group, 0, err, errlen);
    if (rc == 0 && emails)
        rc = llm_rule_add(r, cap, "email", llm_email_re, 0, 0, 0, err, errlen);
    if (rc == 0 && ips)
        rc = llm_rule_add(r, cap, "ipv4", llm_ipv4_re, 0, 0, 1, err, errlen);
    size_t k = 0;
    for (; rc == 0 && patterns && patterns[k]; k++) {
        char name[32];
        snprintf(name, sizeof(name), "pattern %zu", k + 1);
        rc = llm_rule_add(r, cap, name, patterns[k], 0, 0, 0, err, errlen);
    }
    if (rc == 0 && file && file[0]) {
        FILE *f = fopen(file, "r");
        if (!f) {
            snprintf(err, errlen, "redact_file: cannot open it (%s)", strerror(errno));
            rc = SN_EINVAL;
        }
        char line[LLM_PATTERN_LINE_MAX];
        for (size_t ln = 1; rc == 0 && f && fgets(line, sizeof(line), f); ln++) {
            size_t n = strlen(line);
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
            const char *p = line;
            while (isspace((unsigned char)*p))
                p++;
            if (!*p || *p == '#')
                continue;
            char name[32];
            snprintf(name, sizeof(name), "file line %zu", ln);
            rc = llm_rule_add(r, cap, name, p, 0, 0, 0, err, errlen);
        }
        if (f)
            fclose(f);
    }
    if (rc != 0)
        llm_redact_free(r);
    return rc;
}

static int llm_ip_boundary(char c)
{
    return !(isdigit((unsigned char)c) || c == '.');
}

/* One rule over @p s; returns a new string (or NULL when out of memory). */
static char *llm_apply(const llm_rule_t *x, const char *s, size_t *hits)
{
    snp_buf_t b = {0};
    const char *p = s;
    regmatch_t m[10];
    int eflags = 0;
    while (*p && regexec(&x->re, p, 10, m, eflags) == 0) {
        if (m[0].rm_eo <= m[0].rm_so) { /* empty match: step over one character */
            snp_buf_add(&b, p, 1);
            p++;
            eflags = REG_NOTBOL;
            continue;
        }
        regoff_t so = m[0].rm_so, eo = m[0].rm_eo;
        if (x->ip && ((p + so > s && !llm_ip_boundary(p[so - 1])) || !llm_ip_boundary(p[eo]))) {
            /* part of a longer dotted number: not an address */
            snp_buf_add(&b, p, (size_t)so + 1);
            p += so + 1;
            eflags = REG_NOTBOL;
            continue;
        }
        if (x->group > 0 && x->group < 10 && m[x->group].rm_so >= 0) {
            so = m[x->group].rm_so;
            eo = m[x->group].rm_eo;
        }
        snp_buf_add(&b, p, (size_t)so);
        snp_buf_add(&b, LLM_MASK, strlen(LLM_MASK));
        /* whatever followed the secret inside the match (a closing quote) is scanned again */
        p += eo;
        (*hits)++;
        eflags = REG_NOTBOL;
    }
    snp_buf_add(&b, p, strlen(p));
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p ? b.p : strdup("");
}

char *llm_redact_str(const llm_redactor_t *r, const char *s, size_t *hits)
{
    char *cur = strdup(s ? s : "");
    for (size_t i = 0; cur && i < r->n; i++) {
        char *next = llm_apply(&r->rules[i], cur, hits);
        free(cur);
        cur = next;
    }
    return cur;
}

json_t *llm_redact_tree(const llm_redactor_t *r, const json_t *v, size_t *hits)
{
    size_t i;
    const char *k;
    json_t *x, *out;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        out = json_object();
        json_object_foreach((json_t *)v, k, x)
        {
            if (!out || json_object_set_new(out, k, llm_redact_tree(r, x, hits)) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    case JSON_ARRAY:
        out = json_array();
        json_array_foreach(v, i, x)
        {
            if (!out || json_array_append_new(out, llm_redact_tree(r, x, hits)) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    case JSON_STRING: {
        char *s = llm_redact_str(r, json_string_value(v), hits);
        out = s ? json_string(s) : NULL;
        if (s && !out) /* not valid UTF-8 after all: keep nothing rather than the original */
            out = json_string(LLM_MASK);
        free(s);
        return out;
    }
    default:
        return json_deep_copy(v);
    }
}
