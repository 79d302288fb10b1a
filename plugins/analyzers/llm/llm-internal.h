/**
 * @file llm-internal.h
 * Shared declarations of the `llm` analyzer's source files: provider chain (llm_providers.c),
 * reply schema and validation (llm_schema.c), redaction (llm_redact.c), prompt data and tools
 * (llm_tools.c). Nothing here crosses the plugin boundary; all of it is hidden in the .so.
 */
#ifndef SENTINEL_LLM_INTERNAL_H
#define SENTINEL_LLM_INTERNAL_H

#include <sentinel/plugin.h>

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#define LLM_MAX_PROVIDERS 8
#define LLM_NAME_MAX 32
#define LLM_MAX_HYPOTHESES 5     /* hypotheses the schema admits */
#define LLM_MAX_PLAN 3           /* plan steps the schema admits */
#define LLM_MAX_EVIDENCE 6       /* evidence strings per hypothesis */
#define LLM_CAUSE_MAX 240        /* maxLength of a cause */
#define LLM_EVIDENCE_MAX 300     /* maxLength of one evidence string */
#define LLM_MAX_PARAMS 8         /* parameters of one planned action */
#define LLM_PARAM_VALUE_MAX 128  /* maxLength of a string parameter */
#define LLM_TOOL_RESULT_MAX 4096 /* bytes of one tool result handed to the model */
#define LLM_ENUM_MAX 256         /* values of one enum (services, targets) */

/* ---- providers (llm_providers.c) ---------------------------------------------------------- */

typedef enum { LLM_OPENAI = 1, LLM_ANTHROPIC } llm_kind_t;

/** How structured output is asked for: response_format json_schema, json_object, or only the
 * instructions (Anthropic always uses instructions; every reply is validated anyway). */
typedef enum { LLM_FMT_SCHEMA = 1, LLM_FMT_OBJECT, LLM_FMT_NONE } llm_format_t;

typedef struct llm_provider {
    char name[LLM_NAME_MAX + 1];
    llm_kind_t kind;
    char *url;   /* base URL without trailing '/', e.g. https://api.openai.com/v1 */
    char *model; /* model name sent in the request */
    char *key;   /* API key (secret, wiped on free), may be NULL for local servers */
    int64_t timeout_ms;
    int retries;                /* retries of one call on 408/409/429/5xx/transport errors */
    double price_in, price_out; /* USD per million input / output tokens */
    llm_format_t format;
    int max_tokens_field; /* OpenAI: 0 max_completion_tokens, 1 max_tokens */
    /* circuit breaker */
    int fails;          /* consecutive failed calls */
    int64_t open_until; /* monotonic ms; skipped while now < open_until */
    /* totals since start */
    unsigned long calls, failed;
    int64_t tokens_in, tokens_out;
    double cost;
} llm_provider_t;

/** Parse the `provider` lines: "NAME key=value ..." (several lines may name the same provider;
 * later options add to or override earlier ones; the chain keeps first-appearance order).
 * Errors name the line and the option, never a value. Ownership: *out is the caller's
 * (llm_providers_free). */
int llm_providers_parse(const char *const *lines, llm_provider_t **out, size_t *n, char *err,
                        size_t errlen);
void llm_providers_free(llm_provider_t *p, size_t n);

/** One parsed model reply, whatever the provider's wire format. */
typedef struct llm_reply {
    char *text;         /* concatenated text content, or NULL */
    json_t *tool_calls; /* [{"id","name","args": object|null,"raw": text}] or NULL */
    int64_t tokens_in, tokens_out;
    int has_usage;
    int truncated;     /* finish_reason length / stop_reason max_tokens */
    char refusal[200]; /* non-empty when the model refused */
} llm_reply_t;

void llm_reply_clear(llm_reply_t *r);

/**
 * The request body for @p p: system prompt, the neutral conversation @p conv (see llm.c),
 * the reply @p schema, tool definitions @p tools ([{"name","description","parameters"}] or
 * NULL), whether tools may still be called, and the output token limit.
 * Ownership: caller frees the string.
 */
char *llm_request_body(const llm_provider_t *p, const char *system, const json_t *conv,
                       const json_t *schema, const json_t *tools, int tools_open,
                       int64_t max_tokens, double temperature);

/** The request URL (base + /chat/completions or /messages). Ownership: caller frees. */
char *llm_request_url(const llm_provider_t *p);

/** Fill @p hdr (at least 6 slots) with the provider's headers; @p auth receives the
 * authentication header text (wiped by the caller after the request). NULL-terminated. */
void llm_request_headers(const llm_provider_t *p, const char **hdr, char *auth, size_t authlen);

/** Parse a 2xx response body. Returns 0, or SN_EIO with @p err filled when the body is not a
 * reply of the provider's shape (a garbage envelope, retried like a server error). */
int llm_response_parse(const llm_provider_t *p, const char *body, llm_reply_t *out, char *err,
                       size_t errlen);

/** Short description of an error body: the provider's message and code, sanitised. Sets
 * *no_retry when the error says retrying cannot help (insufficient_quota, x-should-retry). */
void llm_error_summary(const char *body, char *out, size_t len, int *no_retry);

/* ---- schema (llm_schema.c) ---------------------------------------------------------------- */

/**
 * The JSON Schema of the reply: hypotheses with `service` from @p services, a plan whose
 * executor, verb and target come from @p allowed ([{"executor","verb","target"}]); an empty
 * @p allowed makes the plan an empty array. Ownership: new reference.
 */
json_t *llm_schema_build(const json_t *services, const json_t *allowed);

/**
 * Validate @p doc against @p schema (the subset the reply schema uses: type, enum, required,
 * properties, additionalProperties, items, minItems, maxItems, minLength, maxLength, minimum,
 * maximum, maxProperties). Returns 0 or SN_EINVAL with the first problem in @p err, e.g.
 * "$.plan[0].verb: 'nuke' is not one of rollout_restart, scale_deployment".
 */
int llm_schema_validate(const json_t *schema, const json_t *doc, char *err, size_t errlen);

/** Beyond the schema: every planned (executor, verb, target) is one allowed combination and
 * parameters are plain values. Returns 0 or SN_EINVAL with @p err filled. */
int llm_reply_check(const json_t *reply, const json_t *allowed, char *err, size_t errlen);

/** The JSON object in a model's text (bare, or in a ``` fence). NULL with @p err filled when
 * there is none. Ownership: new reference. */
json_t *llm_reply_json(const char *text, char *err, size_t errlen);

/* ---- redaction (llm_redact.c) -------------------------------------------------------------- */

typedef struct llm_rule {
    regex_t re;
    int group;     /* 0: the whole match; n: only subexpression n */
    int ip;        /* IPv4 rule: needs a boundary on both sides */
    char name[32]; /* "bearer", "aws_key", ..., "pattern N" */
} llm_rule_t;

typedef struct llm_redactor {
    llm_rule_t *rules;
    size_t n;
} llm_redactor_t;

/** Built-ins (bearer tokens, AWS keys, JWTs, key=value credentials, e-mail addresses, IPv4
 * when @p ips) plus the configured POSIX extended @p patterns (whole match replaced) and the
 * patterns of @p file (one a line, '#' comments). Returns 0 or SN_EINVAL naming the pattern by
 * position. */
int llm_redact_init(llm_redactor_t *r, const char *const *patterns, const char *file, int ips,
                    int emails, char *err, size_t errlen);
void llm_redact_free(llm_redactor_t *r);

/** A copy of @p s with every match replaced by "[REDACTED]"; *hits counts replacements.
 * Ownership: caller frees. NULL when out of memory. */
char *llm_redact_str(const llm_redactor_t *r, const char *s, size_t *hits);

/** A deep copy of @p v with every string value (not object keys) redacted. */
json_t *llm_redact_tree(const llm_redactor_t *r, const json_t *v, size_t *hits);

/* ---- prompt data and tools (llm_tools.c) ---------------------------------------------------- */

/** Services the reply may name: the incident's services, then those of its anomalies and
 * changes; at most LLM_ENUM_MAX. Ownership: new reference. */
json_t *llm_incident_services(const json_t *inc);

/**
 * The data block of the prompt, built from the (already redacted) incident: id, title,
 * severity, services, the strongest anomalies, changes, logs, other analyzers' hypotheses and
 * similar incidents when present. @p self is this instance's name (its own earlier hypotheses
 * are left out). Ownership: new reference.
 */
json_t *llm_incident_data(const sn_host_t *h, const json_t *inc, const char *self,
                          size_t max_anomalies, size_t max_logs);

/** Tool definitions for @p inc ([{"name","description","parameters"}]): history and
 * recent_changes always, logs and similar_incidents when the document has them. */
json_t *llm_tool_defs(const json_t *inc);

/** Run tool @p name with @p args on the redacted incident. Returns the result as JSON text of
 * at most LLM_TOOL_RESULT_MAX bytes; an unknown tool or bad arguments give {"error": ...}.
 * Ownership: caller frees. */
char *llm_tool_run(const sn_host_t *h, const json_t *inc, const char *name, const json_t *args);

/** Epoch ms of a JSON number or time text; -1 when neither. */
int64_t llm_time(const sn_host_t *h, const json_t *v);
/** RFC 3339 text of @p ms into @p out (at least 32 bytes). */
void llm_format_time(int64_t ms, char *out);

#endif /* SENTINEL_LLM_INTERNAL_H */
