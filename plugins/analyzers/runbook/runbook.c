/**
 * @file runbook.c
 * Analyzer `runbook`: turns the incident's top hypothesis into remediation actions by rules
 * written in the config. It only plans (analyze is NULL); the core's approval gate, whitelist
 * and rate limits decide whether anything runs.
 *
 * Rule syntax, one per `rule = ...` line, tried in order:
 *
 *     <matcher> -> <executor>:<verb> <target-template> [key=value ...]
 *
 *   matcher   cause~TEXT    the hypothesis' cause contains TEXT (case-insensitive)
 *             service=NAME  the hypothesis' service is NAME
 *             *             anything
 *   executor  the executor instance name, verb one of its verbs
 *   target    a template: {service}, {version}, {namespace} or any other {name} is filled from
 *             the top hypothesis (its fields, then its "labels"); {namespace} falls back to the
 *             `namespace` parameter. A value put into a target must be one path segment (no '/',
 *             no blanks, not "." or ".."), so a label cannot steer an action elsewhere.
 *   key=value parameters for the verb, templates allowed; a literal integer becomes a JSON
 *             number and true/false a JSON boolean, everything else a string.
 *
 * The first matching rule whose placeholders can all be filled wins; with all_matches = true
 * every such rule adds an action. Result: {"plan": [{"executor", "verb", "target", "params",
 * "reason"}]}, or {"plan": [], "reason": "no runbook rule matched", "detail": ...}.
 * Bad rule syntax fails create() with "rule N: <problem>". A rule cannot contain a comma: the
 * core joins repeated keys into one comma-separated list.
 */
#include <sentinel/plugin.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RB_MAX_RULES 256
#define RB_MAX_PARAMS 16
#define RB_EXPAND_MAX 512

typedef enum { RB_ANY = 0, RB_CAUSE, RB_SERVICE } rb_match_t;

typedef struct rb_kv {
    char *key;
    char *val;
} rb_kv_t;

typedef struct rb_rule {
    int index; /* 1-based, as operators count config lines of one key */
    rb_match_t match;
    char *mval;
    char *matcher; /* as written, for reasons */
    char *executor, *verb, *target;
    rb_kv_t params[RB_MAX_PARAMS];
    size_t nparams;
} rb_rule_t;

typedef struct rb {
    const sn_host_t *host;
    rb_rule_t *rules;
    size_t n;
    char *ns;
    int all;
    double reuse; /* similarity at which a resolved past incident's plan is reused; 0 = off */
} rb_t;

static const sn_param_t rb_params[] = {
    {"rule", SN_T_STRING, NULL, SN_PARAM_MULTI,
     "'<matcher> -> <executor>:<verb> <target> [key=value ...]', matcher "
     "cause~TEXT, service=NAME or *; target and values may use {service}, {version}, "
     "{namespace} or any hypothesis label as {name}; e.g. "
     "'cause~deploy -> k8s:rollout_restart deployment/{namespace}/{service}'; no commas"},
    {"namespace", SN_T_STRING, "default", 0,
     "value of {namespace} when the hypothesis carries no namespace label"},
    {"all_matches", SN_T_BOOL, "false", 0,
     "plan an action for every matching rule instead of the first one only"},
    {"reuse_similar", SN_T_DOUBLE, "0.9", 0,
     "when no rule matches, reuse the plan that resolved a past incident at least this "
     "similar (the core's similar_incidents); the core's safety gates still apply; 0 = off"},
    {NULL, 0, NULL, 0, NULL},
};

static void rb_rule_free(rb_rule_t *r)
{
    free(r->mval);
    free(r->matcher);
    free(r->executor);
    free(r->verb);
    free(r->target);
    for (size_t i = 0; i < r->nparams; i++) {
        free(r->params[i].key);
        free(r->params[i].val);
    }
}

static void rb_destroy(void *self)
{
    rb_t *rb = self;
    if (!rb)
        return;
    for (size_t i = 0; i < rb->n; i++)
        rb_rule_free(&rb->rules[i]);
    free(rb->rules);
    free(rb->ns);
    free(rb);
}

/* ---- parsing ---------------------------------------------------------------------------- */

static char *rb_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int rb_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

static int rb_ident(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!rb_name_char(s[i]))
            return 0;
    return 1;
}

/* Check {placeholder} syntax; on error write the problem to why. */
static int rb_check_template(const char *t, char *why, size_t len)
{
    for (const char *p = t; *p; p++) {
        if (*p == '}') {
            snprintf(why, len, "stray '}'");
            return SN_EINVAL;
        }
        if (*p != '{')
            continue;
        const char *end = strchr(p + 1, '}');
        if (!end) {
            snprintf(why, len, "unclosed '{'");
            return SN_EINVAL;
        }
        for (const char *q = p + 1; q < end; q++) {
            if (!isalnum((unsigned char)*q) && *q != '_') {
                snprintf(why, len, "placeholder '{%.*s}' is not a {name}", (int)(end - p - 1),
                         p + 1);
                return SN_EINVAL;
            }
        }
        if (end == p + 1) {
            snprintf(why, len, "empty placeholder '{}'");
            return SN_EINVAL;
        }
        p = end;
    }
    return 0;
}

static const char *rb_skip_ws(const char *p)
{
    while (*p && isspace((unsigned char)*p))
        p++;
    return p;
}

static size_t rb_token(const char *p)
{
    size_t n = 0;
    while (p[n] && !isspace((unsigned char)p[n]))
        n++;
    return n;
}

/* Parse one rule line into @p r. Errors are "rule N: problem" in @p err. */
static int rb_parse(const char *line, int index, rb_rule_t *r, sn_err_t *err)
{
    char why[160];
    memset(r, 0, sizeof(*r));
    r->index = index;
    const char *arrow = strstr(line, "->");
    if (!arrow) {
        /* The core joins repeated keys into a comma-separated list, so a comma inside a
         * rule shows up here as a fragment without an arrow. */
        snprintf(why, sizeof(why), "missing '->' between matcher and action (a comma ends a rule)");
        goto bad;
    }
    /* matcher: everything before the arrow, trimmed */
    const char *m = rb_skip_ws(line);
    size_t mn = (size_t)(arrow - m);
    while (mn > 0 && isspace((unsigned char)m[mn - 1]))
        mn--;
    if (mn == 0) {
        snprintf(why, sizeof(why), "no matcher before '->' (use cause~TEXT, service=NAME or *)");
        goto bad;
    }
    if (mn == 1 && m[0] == '*') {
        r->match = RB_ANY;
    } else if (mn > 6 && strncmp(m, "cause~", 6) == 0) {
        r->match = RB_CAUSE;
        r->mval = rb_strndup(m + 6, mn - 6);
    } else if (mn > 8 && strncmp(m, "service=", 8) == 0) {
        r->match = RB_SERVICE;
        r->mval = rb_strndup(m + 8, mn - 8);
    } else {
        snprintf(why, sizeof(why), "matcher '%.*s' is not cause~TEXT, service=NAME or *",
                 (int)(mn > 40 ? 40 : mn), m);
        goto bad;
    }
    r->matcher = rb_strndup(m, mn);
    if ((r->match != RB_ANY && !r->mval) || !r->matcher)
        goto nomem;

    /* executor:verb */
    const char *p = rb_skip_ws(arrow + 2);
    size_t n = rb_token(p);
    if (n == 0) {
        snprintf(why, sizeof(why), "nothing after '->' (want EXECUTOR:VERB TARGET)");
        goto bad;
    }
    const char *colon = memchr(p, ':', n);
    if (!colon || !rb_ident(p, (size_t)(colon - p)) ||
        !rb_ident(colon + 1, n - (size_t)(colon - p) - 1)) {
        snprintf(why, sizeof(why), "expected EXECUTOR:VERB after '->', got '%.*s'",
                 (int)(n > 40 ? 40 : n), p);
        goto bad;
    }
    r->executor = rb_strndup(p, (size_t)(colon - p));
    r->verb = rb_strndup(colon + 1, n - (size_t)(colon - p) - 1);
    if (!r->executor || !r->verb)
        goto nomem;

    /* target template */
    p = rb_skip_ws(p + n);
    n = rb_token(p);
    if (n == 0) {
        snprintf(why, sizeof(why), "no target after '%s:%s'", r->executor, r->verb);
        goto bad;
    }
    r->target = rb_strndup(p, n);
    if (!r->target)
        goto nomem;
    char twhy[100];
    if (rb_check_template(r->target, twhy, sizeof(twhy)) != 0) {
        snprintf(why, sizeof(why), "%s in target '%.40s'", twhy, r->target);
        goto bad;
    }

    /* key=value ... */
    for (p = rb_skip_ws(p + n); *p; p = rb_skip_ws(p + n)) {
        n = rb_token(p);
        const char *eq = memchr(p, '=', n);
        if (!eq || !rb_ident(p, (size_t)(eq - p)) || eq + 1 == p + n) {
            snprintf(why, sizeof(why), "'%.*s' is not key=value", (int)(n > 40 ? 40 : n), p);
            goto bad;
        }
        size_t kn = (size_t)(eq - p);
        for (size_t i = 0; i < r->nparams; i++) {
            if (strlen(r->params[i].key) == kn && strncmp(r->params[i].key, p, kn) == 0) {
                snprintf(why, sizeof(why), "duplicate parameter '%.*s'", (int)kn, p);
                goto bad;
            }
        }
        if (r->nparams == RB_MAX_PARAMS) {
            snprintf(why, sizeof(why), "more than %d parameters", RB_MAX_PARAMS);
            goto bad;
        }
        rb_kv_t *kv = &r->params[r->nparams++];
        kv->key = rb_strndup(p, kn);
        kv->val = rb_strndup(eq + 1, n - kn - 1);
        if (!kv->key || !kv->val)
            goto nomem;
        if (rb_check_template(kv->val, twhy, sizeof(twhy)) != 0) {
            snprintf(why, sizeof(why), "%s in parameter '%s'", twhy, kv->key);
            goto bad;
        }
    }
    return 0;
nomem:
    rb_rule_free(r);
    snprintf(err->msg, sizeof(err->msg), "rule %d: out of memory", index);
    return SN_ENOMEM;
bad:
    rb_rule_free(r);
    memset(r, 0, sizeof(*r));
    snprintf(err->msg, sizeof(err->msg), "rule %d: %s", index, why);
    return SN_EINVAL;
}

static int rb_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    int rc = SN_ENOMEM;
    rb_t *rb = calloc(1, sizeof(*rb));
    if (!rb) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    rb->host = host;
    const char *ns = host->cfg_str(cfg, "namespace");
    rb->ns = strdup(ns ? ns : "default");
    rb->all = host->cfg_bool(cfg, "all_matches");
    rb->reuse = host->cfg_double(cfg, "reuse_similar");
    if (!rb->ns) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        goto out;
    }
    const char *const *lines = host->cfg_list(cfg, "rule");
    size_t n = 0;
    while (lines && lines[n])
        n++;
    if (n > RB_MAX_RULES) {
        snprintf(err->msg, sizeof(err->msg), "more than %d rules", RB_MAX_RULES);
        rc = SN_EINVAL;
        goto out;
    }
    if (n > 0) {
        rb->rules = calloc(n, sizeof(*rb->rules));
        if (!rb->rules) {
            snprintf(err->msg, sizeof(err->msg), "out of memory");
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        rc = rb_parse(lines[i], (int)i + 1, &rb->rules[i], err);
        if (rc != 0)
            goto out;
        rb->n++;
    }
    if (n == 0)
        host->log(host, SN_LOG_WARN, "no rule configured: every plan will be empty");
    *self = rb;
    rb = NULL;
    rc = 0;
out:
    rb_destroy(rb);
    return rc;
}

/* ---- planning --------------------------------------------------------------------------- */

static const char *rb_hyp_str(const json_t *h, const char *key)
{
    const json_t *v = json_object_get(h, key);
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

/* Value of a placeholder: the hypothesis' own field, then its labels; {namespace} falls back to
 * the instance parameter. NULL when unknown. */
static const char *rb_lookup(const rb_t *rb, const json_t *hyp, const char *name)
{
    const char *v = rb_hyp_str(hyp, name);
    if (!v)
        v = rb_hyp_str(json_object_get(hyp, "labels"), name);
    if (!v && strcmp(name, "namespace") == 0)
        v = rb->ns;
    return v;
}

/* One path segment, printable, not a relative step. */
static int rb_segment_safe(const char *v)
{
    if (strcmp(v, ".") == 0 || strcmp(v, "..") == 0 || strlen(v) > 253)
        return 0;
    for (const char *p = v; *p; p++)
        if (*p == '/' || *p == '\\' || isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return 0;
    return 1;
}

static int rb_text_safe(const char *v)
{
    for (const char *p = v; *p; p++)
        if (iscntrl((unsigned char)*p))
            return 0;
    return 1;
}

/* Fill the templates of @p t into out; on failure describe why. @p segment: values must be one
 * path segment (targets). */
static int rb_expand(const rb_t *rb, const json_t *hyp, const char *t, int segment, char *out,
                     size_t len, char *why, size_t wlen)
{
    size_t o = 0;
    for (const char *p = t; *p; p++) {
        const char *v;
        char one[2] = {0, 0};
        if (*p == '{') {
            const char *end = strchr(p, '}'); /* syntax checked at create */
            char name[64];
            snprintf(name, sizeof(name), "%.*s", (int)(end - p - 1), p + 1);
            v = rb_lookup(rb, hyp, name);
            if (!v) {
                snprintf(why, wlen, "{%s} is unknown for the top hypothesis", name);
                return SN_ENOTFOUND;
            }
            if (segment ? !rb_segment_safe(v) : !rb_text_safe(v)) {
                snprintf(why, wlen, "the value of {%s} is not safe to put in a %s", name,
                         segment ? "target" : "parameter");
                return SN_EINVAL;
            }
            p = end;
        } else {
            one[0] = *p;
            v = one;
        }
        size_t vn = strlen(v);
        if (o + vn >= len) {
            snprintf(why, wlen, "expanded text longer than %zu bytes", len - 1);
            return SN_ENOMEM;
        }
        memcpy(out + o, v, vn);
        o += vn;
    }
    out[o] = '\0';
    return 0;
}

static int rb_matches(const rb_rule_t *r, const json_t *hyp)
{
    switch (r->match) {
    case RB_ANY:
        return 1;
    case RB_CAUSE: {
        const char *cause = rb_hyp_str(hyp, "cause");
        return cause && strcasestr(cause, r->mval) != NULL;
    }
    case RB_SERVICE: {
        const char *svc = rb_hyp_str(hyp, "service");
        return svc && strcasecmp(svc, r->mval) == 0;
    }
    }
    return 0;
}

static int rb_is_int(const char *s)
{
    const char *p = s + (*s == '-');
    if (!*p)
        return 0;
    for (; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return strlen(s) < 19;
}

/* Build the action for @p r, or NULL with why filled (placeholders) or on allocation failure. */
static json_t *rb_action(const rb_t *rb, const rb_rule_t *r, const json_t *hyp, char *why,
                         size_t wlen)
{
    char target[RB_EXPAND_MAX], val[RB_EXPAND_MAX], reason[512];
    json_t *a = NULL, *params = json_object();
    if (!params)
        goto fail;
    if (rb_expand(rb, hyp, r->target, 1, target, sizeof(target), why, wlen) != 0)
        goto fail;
    for (size_t i = 0; i < r->nparams; i++) {
        const char *lit = r->params[i].val;
        json_t *jv;
        if (!strchr(lit, '{') && rb_is_int(lit))
            jv = json_integer(strtoll(lit, NULL, 10));
        else if (strcmp(lit, "true") == 0)
            jv = json_true();
        else if (strcmp(lit, "false") == 0)
            jv = json_false();
        else {
            if (rb_expand(rb, hyp, lit, 0, val, sizeof(val), why, wlen) != 0)
                goto fail;
            jv = json_string(val);
        }
        if (json_object_set_new(params, r->params[i].key, jv) != 0)
            goto fail;
    }
    const char *cause = rb_hyp_str(hyp, "cause");
    const char *svc = rb_hyp_str(hyp, "service");
    snprintf(reason, sizeof(reason), "rule %d (%s) matched the top hypothesis: %s%s%s", r->index,
             r->matcher, cause ? cause : "(no cause)", svc ? " on " : "", svc ? svc : "");
    a = json_pack("{s:s, s:s, s:s, s:O, s:s}", "executor", r->executor, "verb", r->verb, "target",
                  target, "params", params, "reason", reason);
fail:
    json_decref(params);
    return a;
}

/* The hypothesis with the highest confidence; the first one on ties (the core sorts them). */
static const json_t *rb_top(const json_t *incident)
{
    const json_t *hyps = json_object_get(incident, "hypotheses"), *best = NULL, *h;
    double bc = 0;
    size_t i;
    json_array_foreach(hyps, i, h)
    {
        if (!json_is_object(h))
            continue;
        const json_t *c = json_object_get(h, "confidence");
        double conf = json_is_number(c) ? json_number_value(c) : 0;
        if (!best || conf > bc) {
            best = h;
            bc = conf;
        }
    }
    return best;
}

/**
 * Plan actions for @p incident's top hypothesis; done runs before this returns.
 * Ownership: @p incident is borrowed; the result is borrowed by done for the call.
 * Thread: loop.
 */
static void rb_plan(void *self, const json_t *incident, sn_done_fn done, void *arg)
{
    const rb_t *rb = self;
    json_t *res = NULL, *plan = json_array();
    int rc = SN_ENOMEM;
    char detail[256] = "";
    if (!plan)
        goto out;
    const json_t *hyp = rb_top(incident);
    if (!hyp) {
        snprintf(detail, sizeof(detail), "the incident has no hypothesis");
    } else {
        for (size_t i = 0; i < rb->n; i++) {
            const rb_rule_t *r = &rb->rules[i];
            if (!rb_matches(r, hyp))
                continue;
            char why[200] = "";
            json_t *a = rb_action(rb, r, hyp, why, sizeof(why));
            if (!a) {
                if (!why[0])
                    goto out;
                /* Keep the first reason a matching rule was skipped: it is the useful one. */
                if (!detail[0])
                    snprintf(detail, sizeof(detail), "rule %d matched but was skipped: %s",
                             r->index, why);
                rb->host->log(rb->host, SN_LOG_INFO, "rule %d skipped: %s", r->index, why);
                continue;
            }
            if (json_array_append_new(plan, a) != 0)
                goto out;
            if (!rb->all)
                break;
        }
        if (!detail[0] && json_array_size(plan) == 0)
            snprintf(detail, sizeof(detail), "no rule matches cause '%.100s' on %.60s",
                     rb_hyp_str(hyp, "cause") ? rb_hyp_str(hyp, "cause") : "",
                     rb_hyp_str(hyp, "service") ? rb_hyp_str(hyp, "service") : "(no service)");
    }
    if (json_array_size(plan) == 0 && rb->reuse > 0) {
        /* Memory: what worked last time for something this close. */
        const json_t *sim = json_array_get(json_object_get(incident, "similar_incidents"), 0);
        const char *outcome = json_string_value(json_object_get(sim, "outcome"));
        if (sim && json_number_value(json_object_get(sim, "score")) >= rb->reuse && outcome &&
            strcmp(outcome, "resolved") == 0) {
            size_t i;
            json_t *a;
            json_array_foreach(json_object_get(sim, "plan"), i, a)
            {
                if (!json_is_true(json_object_get(a, "allowed")))
                    continue;
                char reason[160];
                snprintf(reason, sizeof(reason), "resolved similar incident %.40s (%.2f)",
                         json_string_value(json_object_get(sim, "id")),
                         json_number_value(json_object_get(sim, "score")));
                json_t *copy = json_pack(
                    "{s:O,s:O,s:O,s:O?,s:s}", "executor", json_object_get(a, "executor"), "verb",
                    json_object_get(a, "verb"), "target", json_object_get(a, "target"), "params",
                    json_object_get(a, "params"), "reason", reason);
                if (copy)
                    json_array_append_new(plan, copy);
            }
        }
    }
    if (json_array_size(plan) == 0)
        res = json_pack("{s:O, s:s, s:s}", "plan", plan, "reason", "no runbook rule matched",
                        "detail", detail);
    else
        res = json_pack("{s:O}", "plan", plan);
    if (!res)
        goto out;
    rc = 0;
out:
    json_decref(plan);
    done(arg, rc, rc == 0 ? res : NULL);
    json_decref(res);
}

static int rb_health(void *self, sn_health_t *out)
{
    const rb_t *rb = self;
    out->ok = 1;
    snprintf(out->detail, sizeof(out->detail), "%zu rule%s", rb->n, rb->n == 1 ? "" : "s");
    return 0;
}

static const sn_analyzer_ops_t rb_ops = {
    .struct_size = sizeof(sn_analyzer_ops_t),
    .analyze = NULL, /* plan only */
    .plan = rb_plan,
};

static const sn_plugin_t rb_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_ANALYZER,
    .type = "runbook",
    .version = "1.0.0",
    .summary = "maps the top hypothesis to executor actions by configured rules",
    .params = rb_params,
    .create = rb_create,
    .destroy = rb_destroy,
    .health = rb_health,
    .ops = &rb_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &rb_plugin;
}
