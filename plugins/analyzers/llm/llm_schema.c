/**
 * @file llm_schema.c
 * The contract of a model's reply: the JSON Schema sent with every request (built per incident,
 * so its enums hold only services of the incident and actions that exist), and its validation
 * in C. A provider's structured-output mode is a help, never trusted: every reply is parsed and
 * validated here, and a reply that names a service, executor, verb or target outside the enums
 * is refused.
 *
 * The validator covers the JSON Schema subset the reply schema uses: type (one or a list),
 * enum, required, properties, additionalProperties (false or a schema), items, minItems,
 * maxItems, minLength, maxLength (in code points), minimum, maximum, maxProperties.
 */
#include "llm-internal.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- building ------------------------------------------------------------------------------ */

/* Distinct string values of @p key in @p allowed, in order of first appearance. */
static json_t *llm_distinct(const json_t *allowed, const char *key)
{
    json_t *out = json_array();
    size_t i, j;
    const json_t *a, *v;
    json_array_foreach(allowed, i, a)
    {
        const json_t *s = json_object_get(a, key);
        if (!json_is_string(s))
            continue;
        int seen = 0;
        json_array_foreach(out, j, v)
        {
            if (json_equal(v, s))
                seen = 1;
        }
        if (!seen)
            json_array_append(out, (json_t *)s);
    }
    return out;
}

json_t *llm_schema_build(const json_t *services, const json_t *allowed)
{
    json_t *service =
        json_array_size(services) > 0
            ? json_pack("{s:s,s:O}", "type", "string", "enum", services)
            : json_pack("{s:s,s:i,s:i}", "type", "string", "minLength", 1, "maxLength", 128);
    json_t *hyp = json_pack(
        "{s:s,s:b,s:[s,s,s,s],s:{s:o,s:{s:s,s:i,s:i},s:{s:s,s:i,s:i},s:{s:s,s:i,s:{s:s,s:i}}}}",
        "type", "object", "additionalProperties", 0, "required", "service", "cause", "confidence",
        "evidence", "properties", "service", service, "cause", "type", "string", "minLength", 1,
        "maxLength", LLM_CAUSE_MAX, "confidence", "type", "number", "minimum", 0, "maximum", 1,
        "evidence", "type", "array", "maxItems", LLM_MAX_EVIDENCE, "items", "type", "string",
        "maxLength", LLM_EVIDENCE_MAX);
    json_t *plan;
    if (json_array_size(allowed) == 0) {
        plan = json_pack("{s:s,s:i}", "type", "array", "maxItems", 0);
    } else {
        json_t *step =
            json_pack("{s:s,s:b,s:[s,s,s,s],s:{s:{s:s,s:o},s:{s:s,s:o},s:{s:s,s:o},"
                      "s:{s:s,s:i,s:{s:[s,s,s,s],s:i}},s:{s:s,s:i}}}",
                      "type", "object", "additionalProperties", 0, "required", "executor", "verb",
                      "target", "params", "properties", "executor", "type", "string", "enum",
                      llm_distinct(allowed, "executor"), "verb", "type", "string", "enum",
                      llm_distinct(allowed, "verb"), "target", "type", "string", "enum",
                      llm_distinct(allowed, "target"), "params", "type", "object", "maxProperties",
                      LLM_MAX_PARAMS, "additionalProperties", "type", "string", "integer", "number",
                      "boolean", "maxLength", LLM_PARAM_VALUE_MAX, "reason", "type", "string",
                      "maxLength", LLM_CAUSE_MAX);
        plan = json_pack("{s:s,s:i,s:o}", "type", "array", "maxItems", LLM_MAX_PLAN, "items", step);
    }
    return json_pack("{s:s,s:b,s:[s,s],s:{s:{s:s,s:i,s:o},s:o}}", "type", "object",
                     "additionalProperties", 0, "required", "hypotheses", "plan", "properties",
                     "hypotheses", "type", "array", "maxItems", LLM_MAX_HYPOTHESES, "items", hyp,
                     "plan", plan);
}

/* ---- validation ---------------------------------------------------------------------------- */

typedef struct llm_vctx {
    char *err;
    size_t len;
    char path[256];
} llm_vctx_t;

static int llm_fail(llm_vctx_t *c, const char *fmt, ...) SN_PRINTF(2, 3);
static int llm_fail(llm_vctx_t *c, const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->len, "%s: %s", c->path, msg);
    return SN_EINVAL;
}

static const char *llm_type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

static int llm_type_is(const json_t *v, const char *t)
{
    if (strcmp(t, "number") == 0)
        return json_is_number(v);
    if (strcmp(t, "integer") == 0)
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    return strcmp(t, llm_type_of(v)) == 0;
}

/* A short text of a value for messages: strings quoted and cut, others compact JSON. */
static void llm_show(const json_t *v, char *out, size_t len)
{
    if (json_is_string(v)) {
        snprintf(out, len, "'%.60s%s'", json_string_value(v),
                 json_string_length(v) > 60 ? "..." : "");
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(out, len, "%.60s", s ? s : "?");
        free(s);
    }
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
}

static size_t llm_codepoints(const char *s, size_t n)
{
    size_t cp = 0;
    for (size_t i = 0; i < n; i++)
        cp += ((unsigned char)s[i] & 0xC0) != 0x80;
    return cp;
}

static int llm_validate(llm_vctx_t *c, const json_t *s, const json_t *v);

/* Validate @p v as the child @p fmt of the current path. */
static int llm_child(llm_vctx_t *c, const json_t *s, const json_t *v, const char *key, size_t idx)
{
    size_t mark = strlen(c->path);
    if (key)
        snprintf(c->path + mark, sizeof(c->path) - mark, ".%s", key);
    else
        snprintf(c->path + mark, sizeof(c->path) - mark, "[%zu]", idx);
    int rc = llm_validate(c, s, v);
    c->path[mark] = '\0';
    return rc;
}

static int llm_validate(llm_vctx_t *c, const json_t *s, const json_t *v)
{
    if (!json_is_object(s))
        return 0;
    char shown[96];
    const json_t *t = json_object_get(s, "type");
    if (json_is_string(t) && !llm_type_is(v, json_string_value(t)))
        return llm_fail(c, "expected %s, got %s", json_string_value(t), llm_type_of(v));
    if (json_is_array(t)) {
        size_t i;
        const json_t *x;
        int ok = 0;
        json_array_foreach(t, i, x)
        {
            if (json_is_string(x) && llm_type_is(v, json_string_value(x)))
                ok = 1;
        }
        if (!ok)
            return llm_fail(c, "%s is not an allowed type", llm_type_of(v));
    }
    const json_t *en = json_object_get(s, "enum");
    if (json_is_array(en)) {
        size_t i;
        const json_t *x;
        int ok = 0;
        json_array_foreach(en, i, x)
        {
            if (json_equal(x, v))
                ok = 1;
        }
        if (!ok) {
            char list[200] = "";
            size_t o = 0;
            json_array_foreach(en, i, x)
            {
                const char *xs = json_is_string(x) ? json_string_value(x) : "?";
                if (o + strlen(xs) + 8 >= sizeof(list)) {
                    snprintf(list + o, sizeof(list) - o, ", ...");
                    break;
                }
                o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", xs);
            }
            llm_show(v, shown, sizeof(shown));
            return llm_fail(c, "%s is not one of %s", shown, list);
        }
    }
    if (json_is_object(v)) {
        const json_t *req = json_object_get(s, "required"),
                     *props = json_object_get(s, "properties");
        const json_t *addl = json_object_get(s, "additionalProperties");
        size_t i;
        const json_t *x;
        json_array_foreach(req, i, x)
        {
            if (json_is_string(x) && !json_object_get(v, json_string_value(x)))
                return llm_fail(c, "missing required property '%s'", json_string_value(x));
        }
        const json_t *mp = json_object_get(s, "maxProperties");
        if (json_is_integer(mp) && json_object_size(v) > (size_t)json_integer_value(mp))
            return llm_fail(c, "more than %lld properties", (long long)json_integer_value(mp));
        const char *k;
        json_t *val;
        json_object_foreach((json_t *)v, k, val)
        {
            const json_t *ps = json_object_get(props, k);
            if (ps) {
                if (llm_child(c, ps, val, k, 0))
                    return SN_EINVAL;
            } else if (json_is_false(addl)) {
                return llm_fail(c, "unexpected property '%.40s'", k);
            } else if (json_is_object(addl)) {
                if (llm_child(c, addl, val, k, 0))
                    return SN_EINVAL;
            }
        }
    }
    if (json_is_array(v)) {
        const json_t *mx = json_object_get(s, "maxItems"), *mn = json_object_get(s, "minItems");
        if (json_is_integer(mx) && json_array_size(v) > (size_t)json_integer_value(mx))
            return llm_fail(c, "%zu items, at most %lld allowed", json_array_size(v),
                            (long long)json_integer_value(mx));
        if (json_is_integer(mn) && json_array_size(v) < (size_t)json_integer_value(mn))
            return llm_fail(c, "%zu items, at least %lld needed", json_array_size(v),
                            (long long)json_integer_value(mn));
        const json_t *items = json_object_get(s, "items");
        size_t i;
        const json_t *x;
        if (json_is_object(items)) {
            json_array_foreach(v, i, x)
            {
                if (llm_child(c, items, x, NULL, i))
                    return SN_EINVAL;
            }
        }
    }
    if (json_is_string(v)) {
        size_t cp = llm_codepoints(json_string_value(v), json_string_length(v));
        const json_t *mx = json_object_get(s, "maxLength"), *mn = json_object_get(s, "minLength");
        if (json_is_integer(mx) && cp > (size_t)json_integer_value(mx))
            return llm_fail(c, "text of %zu characters, at most %lld allowed", cp,
                            (long long)json_integer_value(mx));
        if (json_is_integer(mn) && cp < (size_t)json_integer_value(mn))
            return llm_fail(c, "text of %zu characters, at least %lld needed", cp,
                            (long long)json_integer_value(mn));
    }
    if (json_is_number(v)) {
        double x = json_number_value(v);
        const json_t *mx = json_object_get(s, "maximum"), *mn = json_object_get(s, "minimum");
        if (!isfinite(x))
            return llm_fail(c, "not a finite number");
        if (json_is_number(mx) && x > json_number_value(mx))
            return llm_fail(c, "%g is above the maximum %g", x, json_number_value(mx));
        if (json_is_number(mn) && x < json_number_value(mn))
            return llm_fail(c, "%g is below the minimum %g", x, json_number_value(mn));
    }
    return 0;
}

int llm_schema_validate(const json_t *schema, const json_t *doc, char *err, size_t errlen)
{
    llm_vctx_t c = {.err = err, .len = errlen, .path = "$"};
    err[0] = '\0';
    if (!doc) {
        snprintf(err, errlen, "$: no JSON value");
        return SN_EINVAL;
    }
    return llm_validate(&c, schema, doc);
}

/* ---- semantic checks ----------------------------------------------------------------------- */

static int llm_param_name_ok(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 32)
        return 0;
    for (; *k; k++)
        if (!isalnum((unsigned char)*k) && *k != '_')
            return 0;
    return 1;
}

int llm_reply_check(const json_t *reply, const json_t *allowed, char *err, size_t errlen)
{
    size_t i, j;
    const json_t *step, *a;
    json_array_foreach(json_object_get(reply, "plan"), i, step)
    {
        const char *ex = json_string_value(json_object_get(step, "executor"));
        const char *verb = json_string_value(json_object_get(step, "verb"));
        const char *target = json_string_value(json_object_get(step, "target"));
        int ok = 0;
        json_array_foreach(allowed, j, a)
        {
            if (ex && verb && target &&
                strcmp(ex, json_string_value(json_object_get(a, "executor"))) == 0 &&
                strcmp(verb, json_string_value(json_object_get(a, "verb"))) == 0 &&
                strcmp(target, json_string_value(json_object_get(a, "target"))) == 0)
                ok = 1;
        }
        if (!ok) {
            snprintf(err, errlen,
                     "$.plan[%zu]: %.40s:%.40s on %.80s is not one of the allowed actions", i,
                     ex ? ex : "?", verb ? verb : "?", target ? target : "?");
            return SN_EINVAL;
        }
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)json_object_get(step, "params"), k, v)
        {
            if (!llm_param_name_ok(k)) {
                snprintf(err, errlen, "$.plan[%zu].params: '%.40s' is not a parameter name", i, k);
                return SN_EINVAL;
            }
            if (json_is_string(v)) {
                for (const char *p = json_string_value(v); *p; p++) {
                    if ((unsigned char)*p < 0x20) {
                        snprintf(err, errlen,
                                 "$.plan[%zu].params.%s: control character in the value", i, k);
                        return SN_EINVAL;
                    }
                }
            }
        }
    }
    return 0;
}

/* ---- extracting the JSON ------------------------------------------------------------------- */

json_t *llm_reply_json(const char *text, char *err, size_t errlen)
{
    if (!text) {
        snprintf(err, errlen, "the reply has no text");
        return NULL;
    }
    const char *s = text;
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    /* A fenced block: ```json ... ``` */
    if (strncmp(s, "```", 3) == 0) {
        const char *nl = strchr(s, '\n');
        if (nl) {
            const char *end = strstr(nl + 1, "```");
            s = nl + 1;
            n = end ? (size_t)(end - s) : strlen(s);
        }
    }
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    json_error_t je;
    json_t *v = json_loadb(s, n, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        /* Prose around one object: take the outermost braces. */
        const char *a = memchr(s, '{', n);
        const char *b = NULL;
        for (size_t i = n; i > 0; i--)
            if (s[i - 1] == '}') {
                b = s + i - 1;
                break;
            }
        json_error_t je2;
        if (a && b && b > a)
            v = json_loadb(a, (size_t)(b - a) + 1, JSON_REJECT_DUPLICATES, &je2);
    }
    if (!v) {
        snprintf(err, errlen, "the reply is not JSON: %.100s (line %d, column %d)", je.text,
                 je.line, je.column);
        return NULL;
    }
    if (!json_is_object(v)) {
        snprintf(err, errlen, "the reply is JSON but not an object");
        json_decref(v);
        return NULL;
    }
    return v;
}
