/**
 * @file llm_providers.c
 * The provider side of the `llm` analyzer: parsing the `provider` lines, and the two wire
 * formats it speaks — OpenAI-compatible Chat Completions (OpenAI, Groq, vLLM, llama.cpp
 * server, Ollama: POST {url}/chat/completions) and Anthropic Messages (POST {url}/messages).
 *
 * The analyzer keeps its conversation in a neutral form (llm.c) and renders it here for the
 * provider at hand, so a failover to another provider starts from the same messages:
 *   {"role":"user","text":...}
 *   {"role":"assistant","text":...,"tool_calls":[{"id","name","args","raw"}]}
 *   {"role":"tool_results","results":[{"id","name","content"}]}
 *
 * Keys are never logged or put into an error: provider lines are a secret parameter and
 * errors name the line number and the option only.
 */
#include "llm-internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LLM_DEFAULT_TIMEOUT_MS 20000
#define LLM_DEFAULT_RETRIES 2
#define LLM_SCHEMA_NAME "sentinel_analysis"

static void llm_wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = '\0';
    free(s);
}

void llm_providers_free(llm_provider_t *p, size_t n)
{
    if (!p)
        return;
    for (size_t i = 0; i < n; i++) {
        free(p[i].url);
        free(p[i].model);
        llm_wipe_free(p[i].key);
    }
    free(p);
}

/* "20s", "500ms", "2m", bare number = seconds. -1 when malformed. */
static int64_t llm_duration(const char *v)
{
    char *end = NULL;
    double x = strtod(v, &end);
    if (end == v || !isfinite(x) || x < 0)
        return -1;
    double mult = 1000;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else
        return -1;
    double ms = x * mult;
    return ms > 86400000.0 ? -1 : (int64_t)ms;
}

static int llm_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > LLM_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return 0;
    return 1;
}

static char *llm_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Replace *slot with a copy of v[0..n). */
static int llm_set(char **slot, const char *v, size_t n, int secret)
{
    char *c = llm_strndup(v, n);
    if (!c)
        return SN_ENOMEM;
    if (secret)
        llm_wipe_free(*slot);
    else
        free(*slot);
    *slot = c;
    return 0;
}

/* Apply one "key=value" option to @p p. Returns 0, or a phrase naming the problem. */
static const char *llm_option(llm_provider_t *p, const char *k, size_t kn, const char *v, size_t vn)
{
    char val[64];
#define KEY(s) (kn == strlen(s) && strncmp(k, s, kn) == 0)
    if (KEY("key"))
        return llm_set(&p->key, v, vn, 1) ? "out of memory" : NULL;
    if (KEY("url")) {
        if (!((vn > 7 && strncasecmp(v, "http://", 7) == 0) ||
              (vn > 8 && strncasecmp(v, "https://", 8) == 0)))
            return "url must start with http:// or https://";
        while (vn > 0 && v[vn - 1] == '/')
            vn--;
        return llm_set(&p->url, v, vn, 0) ? "out of memory" : NULL;
    }
    if (KEY("model")) {
        for (size_t i = 0; i < vn; i++)
            if (iscntrl((unsigned char)v[i]) || v[i] == '"')
                return "model holds a control character or a quote";
        return llm_set(&p->model, v, vn, 0) ? "out of memory" : NULL;
    }
    if (vn >= sizeof(val))
        return "value too long";
    memcpy(val, v, vn);
    val[vn] = '\0';
    if (KEY("kind")) {
        if (strcmp(val, "openai") == 0)
            p->kind = LLM_OPENAI;
        else if (strcmp(val, "anthropic") == 0)
            p->kind = LLM_ANTHROPIC;
        else
            return "kind must be openai or anthropic";
        return NULL;
    }
    if (KEY("timeout")) {
        int64_t ms = llm_duration(val);
        if (ms < 1)
            return "timeout must be a positive duration (20s, 500ms, 1m)";
        p->timeout_ms = ms;
        return NULL;
    }
    if (KEY("retries")) {
        char *end = NULL;
        long r = strtol(val, &end, 10);
        if (end == val || *end || r < 0 || r > 10)
            return "retries must be an integer from 0 to 10";
        p->retries = (int)r;
        return NULL;
    }
    if (KEY("price_in") || KEY("price_out")) {
        char *end = NULL;
        double x = strtod(val, &end);
        if (end == val || *end || !isfinite(x) || x < 0 || x > 10000)
            return "prices are USD per million tokens, from 0 to 10000";
        if (KEY("price_in"))
            p->price_in = x;
        else
            p->price_out = x;
        return NULL;
    }
    if (KEY("format")) {
        if (strcmp(val, "json_schema") == 0)
            p->format = LLM_FMT_SCHEMA;
        else if (strcmp(val, "json_object") == 0)
            p->format = LLM_FMT_OBJECT;
        else if (strcmp(val, "none") == 0)
            p->format = LLM_FMT_NONE;
        else
            return "format must be json_schema, json_object or none";
        return NULL;
    }
    if (KEY("tokens_field")) {
        if (strcmp(val, "max_completion_tokens") == 0)
            p->max_tokens_field = 0;
        else if (strcmp(val, "max_tokens") == 0)
            p->max_tokens_field = 1;
        else
            return "tokens_field must be max_completion_tokens or max_tokens";
        return NULL;
    }
#undef KEY
    return "unknown option (kind, url, model, key, timeout, retries, price_in, price_out, "
           "format, tokens_field)";
}

int llm_providers_parse(const char *const *lines, llm_provider_t **out, size_t *n, char *err,
                        size_t errlen)
{
    llm_provider_t *v = calloc(LLM_MAX_PROVIDERS, sizeof(*v));
    size_t np = 0;
    int rc = SN_EINVAL;
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return SN_ENOMEM;
    }
    for (size_t li = 0; lines && lines[li]; li++) {
        const char *s = lines[li];
        while (isspace((unsigned char)*s))
            s++;
        size_t nn = strcspn(s, " \t");
        if (!llm_name_ok(s, nn)) {
            snprintf(err, errlen,
                     "provider line %zu: starts with a name of 1 to %d letters, digits or '_' "
                     "(a comma ends a line)",
                     li + 1, LLM_NAME_MAX);
            goto out;
        }
        llm_provider_t *p = NULL;
        for (size_t i = 0; i < np; i++)
            if (strlen(v[i].name) == nn && strncmp(v[i].name, s, nn) == 0)
                p = &v[i];
        if (!p) {
            if (np == LLM_MAX_PROVIDERS) {
                snprintf(err, errlen, "at most %d providers", LLM_MAX_PROVIDERS);
                goto out;
            }
            p = &v[np++];
            memcpy(p->name, s, nn);
            p->name[nn] = '\0';
            p->kind = 0;
            p->timeout_ms = LLM_DEFAULT_TIMEOUT_MS;
            p->retries = LLM_DEFAULT_RETRIES;
        }
        for (s += nn; *s;) {
            while (isspace((unsigned char)*s))
                s++;
            if (!*s)
                break;
            size_t tn = strcspn(s, " \t");
            const char *eq = memchr(s, '=', tn);
            if (!eq || eq == s || eq + 1 == s + tn) {
                snprintf(err, errlen, "provider line %zu (%s): options are key=value", li + 1,
                         p->name);
                goto out;
            }
            const char *why = llm_option(p, s, (size_t)(eq - s), eq + 1, tn - (size_t)(eq - s) - 1);
            if (why) {
                snprintf(err, errlen, "provider line %zu (%s): option '%.*s': %s", li + 1, p->name,
                         (int)(eq - s > 24 ? 24 : eq - s), s, why);
                rc = strcmp(why, "out of memory") == 0 ? SN_ENOMEM : SN_EINVAL;
                goto out;
            }
            s += tn;
        }
    }
    if (np == 0) {
        snprintf(err, errlen, "no provider configured (provider = NAME kind=openai model=...)");
        goto out;
    }
    for (size_t i = 0; i < np; i++) {
        llm_provider_t *p = &v[i];
        if (!p->kind)
            p->kind = LLM_OPENAI;
        if (!p->format)
            p->format = p->kind == LLM_OPENAI ? LLM_FMT_SCHEMA : LLM_FMT_NONE;
        if (!p->model || !p->model[0]) {
            snprintf(err, errlen, "provider %s: model=... is required", p->name);
            goto out;
        }
        if (!p->url) {
            const char *def = p->kind == LLM_OPENAI ? "https://api.openai.com/v1"
                                                    : "https://api.anthropic.com/v1";
            if (llm_set(&p->url, def, strlen(def), 0)) {
                snprintf(err, errlen, "out of memory");
                rc = SN_ENOMEM;
                goto out;
            }
        }
        if (p->key && !p->key[0]) {
            llm_wipe_free(p->key);
            p->key = NULL;
        }
    }
    *out = v;
    *n = np;
    v = NULL;
    rc = 0;
out:
    llm_providers_free(v, np);
    return rc;
}

/* ---- requests -------------------------------------------------------------------------------- */

char *llm_request_url(const llm_provider_t *p)
{
    char *u = NULL;
    if (asprintf(&u, "%s%s", p->url, p->kind == LLM_OPENAI ? "/chat/completions" : "/messages") < 0)
        return NULL;
    return u;
}

void llm_request_headers(const llm_provider_t *p, const char **hdr, char *auth, size_t authlen)
{
    size_t n = 0;
    hdr[n++] = "Content-Type: application/json";
    hdr[n++] = "User-Agent: sentinel-llm/1.0";
    auth[0] = '\0';
    if (p->kind == LLM_OPENAI) {
        if (p->key) {
            snprintf(auth, authlen, "Authorization: Bearer %s", p->key);
            hdr[n++] = auth;
        }
    } else {
        hdr[n++] = "anthropic-version: 2023-06-01";
        if (p->key) {
            snprintf(auth, authlen, "x-api-key: %s", p->key);
            hdr[n++] = auth;
        }
    }
    hdr[n] = NULL;
}

static const char *llm_jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* Tool-call arguments as JSON text: the raw text when the model gave one, else the object. */
static json_t *llm_args_text(const json_t *call)
{
    const char *raw = llm_jstr(call, "raw");
    if (raw)
        return json_string(raw);
    const json_t *args = json_object_get(call, "args");
    char *s = json_is_object(args) ? json_dumps(args, JSON_COMPACT) : NULL;
    json_t *out = json_string(s ? s : "{}");
    free(s);
    return out;
}

static json_t *llm_openai_messages(const char *system, const json_t *conv)
{
    json_t *msgs = json_array();
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", system));
    size_t i, j;
    const json_t *m, *c;
    json_array_foreach(conv, i, m)
    {
        const char *role = llm_jstr(m, "role");
        const char *text = llm_jstr(m, "text");
        if (!role)
            continue;
        if (strcmp(role, "user") == 0) {
            json_array_append_new(
                msgs, json_pack("{s:s,s:s}", "role", "user", "content", text ? text : ""));
        } else if (strcmp(role, "assistant") == 0) {
            json_t *a = json_pack("{s:s,s:o}", "role", "assistant", "content",
                                  text ? json_string(text) : json_null());
            const json_t *calls = json_object_get(m, "tool_calls");
            if (json_array_size(calls) > 0) {
                json_t *tc = json_array();
                json_array_foreach(calls, j, c)
                {
                    json_array_append_new(tc, json_pack("{s:s,s:s,s:{s:s,s:o}}", "id",
                                                        llm_jstr(c, "id"), "type", "function",
                                                        "function", "name", llm_jstr(c, "name"),
                                                        "arguments", llm_args_text(c)));
                }
                json_object_set_new(a, "tool_calls", tc);
            }
            json_array_append_new(msgs, a);
        } else if (strcmp(role, "tool_results") == 0) {
            json_array_foreach(json_object_get(m, "results"), j, c)
            {
                json_array_append_new(msgs, json_pack("{s:s,s:s,s:s}", "role", "tool",
                                                      "tool_call_id", llm_jstr(c, "id"), "content",
                                                      llm_jstr(c, "content")));
            }
        }
    }
    return msgs;
}

static json_t *llm_anthropic_messages(const json_t *conv)
{
    json_t *msgs = json_array();
    size_t i, j;
    const json_t *m, *c;
    json_array_foreach(conv, i, m)
    {
        const char *role = llm_jstr(m, "role");
        const char *text = llm_jstr(m, "text");
        if (!role)
            continue;
        if (strcmp(role, "user") == 0) {
            json_array_append_new(
                msgs, json_pack("{s:s,s:s}", "role", "user", "content", text ? text : ""));
        } else if (strcmp(role, "assistant") == 0) {
            json_t *blocks = json_array();
            if (text && text[0])
                json_array_append_new(blocks, json_pack("{s:s,s:s}", "type", "text", "text", text));
            json_array_foreach(json_object_get(m, "tool_calls"), j, c)
            {
                const json_t *args = json_object_get(c, "args");
                json_array_append_new(
                    blocks, json_pack("{s:s,s:s,s:s,s:o}", "type", "tool_use", "id",
                                      llm_jstr(c, "id"), "name", llm_jstr(c, "name"), "input",
                                      json_is_object(args) ? json_deep_copy(args) : json_object()));
            }
            if (json_array_size(blocks) == 0)
                json_array_append_new(blocks,
                                      json_pack("{s:s,s:s}", "type", "text", "text", "(empty)"));
            json_array_append_new(msgs,
                                  json_pack("{s:s,s:o}", "role", "assistant", "content", blocks));
        } else if (strcmp(role, "tool_results") == 0) {
            json_t *blocks = json_array();
            json_array_foreach(json_object_get(m, "results"), j, c)
            {
                json_array_append_new(blocks, json_pack("{s:s,s:s,s:s,s:b}", "type", "tool_result",
                                                        "tool_use_id", llm_jstr(c, "id"), "content",
                                                        llm_jstr(c, "content"), "is_error", 0));
            }
            json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", "user", "content", blocks));
        }
    }
    return msgs;
}

char *llm_request_body(const llm_provider_t *p, const char *system, const json_t *conv,
                       const json_t *schema, const json_t *tools, int tools_open,
                       int64_t max_tokens, double temperature)
{
    char *out = NULL, *sys = NULL, *schema_text = NULL;
    json_t *body = NULL;
    /* Without a server-side schema the schema goes into the instructions. */
    if (p->kind == LLM_ANTHROPIC || p->format != LLM_FMT_SCHEMA) {
        schema_text = json_dumps(schema, JSON_COMPACT);
        if (!schema_text ||
            asprintf(&sys,
                     "%s\n\nReply with one JSON object and nothing else. It must be valid "
                     "against this JSON Schema:\n%s",
                     system, schema_text) < 0) {
            sys = NULL;
            goto out;
        }
    } else {
        sys = strdup(system);
        if (!sys)
            goto out;
    }
    size_t i;
    const json_t *t;
    int with_tools = json_array_size(tools) > 0;
    if (p->kind == LLM_OPENAI) {
        body = json_pack("{s:s,s:f,s:I,s:o}", "model", p->model, "temperature", temperature,
                         p->max_tokens_field ? "max_tokens" : "max_completion_tokens",
                         (json_int_t)max_tokens, "messages", llm_openai_messages(sys, conv));
        if (!body)
            goto out;
        if (p->format == LLM_FMT_SCHEMA)
            json_object_set_new(body, "response_format",
                                json_pack("{s:s,s:{s:s,s:b,s:O}}", "type", "json_schema",
                                          "json_schema", "name", LLM_SCHEMA_NAME, "strict", 0,
                                          "schema", schema));
        else if (p->format == LLM_FMT_OBJECT)
            json_object_set_new(body, "response_format", json_pack("{s:s}", "type", "json_object"));
        if (with_tools) {
            json_t *tl = json_array();
            json_array_foreach(tools, i, t)
            {
                json_array_append_new(tl,
                                      json_pack("{s:s,s:{s:O,s:O,s:O}}", "type", "function",
                                                "function", "name", json_object_get(t, "name"),
                                                "description", json_object_get(t, "description"),
                                                "parameters", json_object_get(t, "parameters")));
            }
            json_object_set_new(body, "tools", tl);
            json_object_set_new(body, "tool_choice", json_string(tools_open ? "auto" : "none"));
        }
    } else {
        double temp = temperature > 1 ? 1 : temperature;
        body = json_pack("{s:s,s:I,s:f,s:s,s:o}", "model", p->model, "max_tokens",
                         (json_int_t)max_tokens, "temperature", temp, "system", sys, "messages",
                         llm_anthropic_messages(conv));
        if (!body)
            goto out;
        if (with_tools) {
            json_t *tl = json_array();
            json_array_foreach(tools, i, t)
            {
                json_array_append_new(tl,
                                      json_pack("{s:O,s:O,s:O}", "name", json_object_get(t, "name"),
                                                "description", json_object_get(t, "description"),
                                                "input_schema", json_object_get(t, "parameters")));
            }
            json_object_set_new(body, "tools", tl);
            json_object_set_new(body, "tool_choice",
                                json_pack("{s:s}", "type", tools_open ? "auto" : "none"));
        }
    }
    out = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(6));
out:
    json_decref(body);
    free(sys);
    free(schema_text);
    return out;
}

/* ---- responses --------------------------------------------------------------------------------
 */

void llm_reply_clear(llm_reply_t *r)
{
    free(r->text);
    json_decref(r->tool_calls);
    memset(r, 0, sizeof(*r));
}

/* Append @p s to the text of @p r. */
static int llm_text_add(llm_reply_t *r, const char *s)
{
    size_t old = r->text ? strlen(r->text) : 0, n = strlen(s);
    char *t = realloc(r->text, old + n + 1);
    if (!t)
        return SN_ENOMEM;
    memcpy(t + old, s, n + 1);
    r->text = t;
    return 0;
}

static int64_t llm_int(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
}

static void llm_sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            *s = ' ';
}

int llm_response_parse(const llm_provider_t *p, const char *body, llm_reply_t *out, char *err,
                       size_t errlen)
{
    memset(out, 0, sizeof(*out));
    json_error_t je;
    json_t *doc = json_loads(body ? body : "", 0, &je);
    int rc = SN_EIO;
    if (!json_is_object(doc)) {
        snprintf(err, errlen, "response body is not a JSON object");
        goto out;
    }
    out->tool_calls = json_array();
    if (!out->tool_calls) {
        rc = SN_ENOMEM;
        goto out;
    }
    size_t i;
    const json_t *c;
    if (p->kind == LLM_OPENAI) {
        const json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
        const json_t *msg = json_object_get(choice, "message");
        if (!json_is_object(msg)) {
            snprintf(err, errlen, "response has no choices[0].message");
            goto out;
        }
        const char *content = llm_jstr(msg, "content");
        if (content && llm_text_add(out, content)) {
            rc = SN_ENOMEM;
            goto out;
        }
        const char *refusal = llm_jstr(msg, "refusal");
        if (refusal) {
            snprintf(out->refusal, sizeof(out->refusal), "%s", refusal);
            llm_sanitize(out->refusal);
        }
        json_array_foreach(json_object_get(msg, "tool_calls"), i, c)
        {
            const json_t *fn = json_object_get(c, "function");
            const char *id = llm_jstr(c, "id"), *name = llm_jstr(fn, "name");
            const char *raw = llm_jstr(fn, "arguments");
            if (!id || !name)
                continue;
            json_t *args = raw ? json_loads(raw, 0, NULL) : NULL;
            if (args && !json_is_object(args)) {
                json_decref(args);
                args = NULL;
            }
            json_array_append_new(out->tool_calls,
                                  json_pack("{s:s,s:s,s:o,s:s}", "id", id, "name", name, "args",
                                            args ? args : json_null(), "raw", raw ? raw : ""));
        }
        const char *finish = llm_jstr(choice, "finish_reason");
        out->truncated = finish && strcmp(finish, "length") == 0;
        const json_t *usage = json_object_get(doc, "usage");
        if (json_is_object(usage)) {
            out->has_usage = 1;
            out->tokens_in = llm_int(usage, "prompt_tokens");
            out->tokens_out = llm_int(usage, "completion_tokens");
        }
    } else {
        const json_t *content = json_object_get(doc, "content");
        if (!json_is_array(content)) {
            snprintf(err, errlen, "response has no content blocks");
            goto out;
        }
        json_array_foreach(content, i, c)
        {
            const char *type = llm_jstr(c, "type");
            if (!type)
                continue;
            if (strcmp(type, "text") == 0 && llm_jstr(c, "text")) {
                if (llm_text_add(out, llm_jstr(c, "text"))) {
                    rc = SN_ENOMEM;
                    goto out;
                }
            } else if (strcmp(type, "tool_use") == 0 && llm_jstr(c, "id") && llm_jstr(c, "name")) {
                const json_t *input = json_object_get(c, "input");
                char *raw = json_is_object(input) ? json_dumps(input, JSON_COMPACT) : NULL;
                json_array_append_new(out->tool_calls,
                                      json_pack("{s:s,s:s,s:O,s:s}", "id", llm_jstr(c, "id"),
                                                "name", llm_jstr(c, "name"), "args",
                                                json_is_object(input) ? input : json_null(), "raw",
                                                raw ? raw : "{}"));
                free(raw);
            }
        }
        const char *stop = llm_jstr(doc, "stop_reason");
        out->truncated = stop && strcmp(stop, "max_tokens") == 0;
        if (stop && strcmp(stop, "refusal") == 0)
            snprintf(out->refusal, sizeof(out->refusal), "stop_reason refusal");
        const json_t *usage = json_object_get(doc, "usage");
        if (json_is_object(usage)) {
            out->has_usage = 1;
            out->tokens_in = llm_int(usage, "input_tokens") +
                             llm_int(usage, "cache_creation_input_tokens") +
                             llm_int(usage, "cache_read_input_tokens");
            out->tokens_out = llm_int(usage, "output_tokens");
        }
    }
    rc = 0;
out:
    if (rc != 0) {
        json_decref(out->tool_calls);
        free(out->text);
        out->tool_calls = NULL;
        out->text = NULL;
    }
    json_decref(doc);
    return rc;
}

void llm_error_summary(const char *body, char *out, size_t len, int *no_retry)
{
    out[0] = '\0';
    json_t *doc = json_loads(body ? body : "", 0, NULL);
    const json_t *e = json_object_get(doc, "error");
    const char *msg = json_is_object(e) ? llm_jstr(e, "message") : json_string_value(e);
    const char *code = json_is_object(e) ? llm_jstr(e, "code") : NULL;
    const char *type = json_is_object(e) ? llm_jstr(e, "type") : NULL;
    if ((code && strcmp(code, "insufficient_quota") == 0) ||
        (type && (strcmp(type, "insufficient_quota") == 0 || strcmp(type, "billing_error") == 0)))
        *no_retry = 1;
    if (code || type || msg)
        snprintf(out, len, "%s%s%.120s", code ? code : (type ? type : ""),
                 (code || type) && msg ? ": " : "", msg ? msg : "");
    llm_sanitize(out);
    json_decref(doc);
}
