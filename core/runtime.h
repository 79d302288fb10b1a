/**
 * @file runtime.h
 * The process runtime behind every sn_host_t: the libevent base, the offload pool, the post
 * queue, the shared libcurl multi handle, the metrics registry and JSON logging. The engine
 * supplies the calls that need pipeline knowledge (emit, audit, routes, decisions) as hooks.
 * Core-internal; not installed.
 */
#ifndef SENTINEL_RUNTIME_H
#define SENTINEL_RUNTIME_H

#include "sentinel-internal.h"

struct event_base;

typedef struct sn_runtime sn_runtime_t;

/** Calls the host table forwards to the engine. Any may be NULL (the host then answers
 * SN_ENOTSUP). Thread: loop, except emit_lines (any). */
typedef struct sn_engine_hooks {
    int (*emit_lines)(void *eng, const char *instance, const char *buf, size_t len,
                      const char *origin);
    int (*audit)(void *eng, const char *actor, const char *action, const char *incident,
                 const json_t *detail);
    int (*route_add)(void *eng, const char *instance, const char *method, const char *path,
                     sn_route_fn fn, void *self);
    const char *(*req_body)(sn_route_req_t *r, size_t *len);
    const char *(*req_header)(sn_route_req_t *r, const char *name);
    void (*req_reply)(sn_route_req_t *r, int status, const char *content_type, const char *body,
                      size_t len);
    int (*decide)(void *eng, const char *incident, int approve, const char *actor,
                  const char *reason);
    int (*emit_lines_acked)(void *eng, const char *instance, const char *buf, size_t len,
                            const char *origin, sn_done_fn done, void *arg);
    uint32_t (*check_lines)(void *eng, const char *buf, size_t len, char *why, size_t wl);
} sn_engine_hooks_t;

/** Ownership: caller frees with sn_runtime_free. @p offload_threads 0 = 2. */
sn_runtime_t *sn_runtime_new(int offload_threads);
/** Stops the offload pool (joins threads) and frees everything. In-flight HTTP requests complete
 * with status 0 "shutting down"; queued offload work, its completions and posts still run. */
void sn_runtime_free(sn_runtime_t *rt);
struct event_base *sn_runtime_base(sn_runtime_t *rt);
void sn_runtime_set_hooks(sn_runtime_t *rt, const sn_engine_hooks_t *hooks, void *eng);

/** Fill @p h as the host table of @p instance ("kind:name", copied; NULL for the loader).
 * Ownership: the runtime keeps the copy of the name until sn_runtime_free.
 * Host calls find the runtime through h->instance (the runtime's copy), so an instance's table
 * may be copied or moved; the loader's table (instance NULL) is recognised by its address, so
 * keep it where it was filled. Timer handles are ids: a one-shot timer frees itself once it
 * fired and a later timer_del on it does nothing. */
void sn_host_fill(sn_runtime_t *rt, sn_host_t *h, const char *instance);

/** The same services for core code. */
int sn_runtime_offload(sn_runtime_t *rt, void (*work)(void *), void (*done)(void *), void *arg);
/** Thread: any. */
int sn_runtime_post(sn_runtime_t *rt, void (*fn)(void *), void *arg);
/** @p done runs exactly once, on the loop and never before this returns, also for immediate
 * failures (status 0 and an error phrase). Returns SN_EINVAL only when @p done is NULL. */
int sn_runtime_http(sn_runtime_t *rt, const sn_http_request_t *req, sn_http_done_fn done,
                    void *arg);
/** Requests in flight through the shared HTTP client. */
size_t sn_runtime_http_inflight(sn_runtime_t *rt);
/** The request id outgoing HTTP calls carry as X-Request-ID while set (NULL clears).
 * Thread: loop only. */
void sn_runtime_set_request_id(sn_runtime_t *rt, const char *rid);
/** The current request id, or NULL. */
const char *sn_runtime_request_id(const sn_runtime_t *rt);

/* ---- metrics (Prometheus text format 0.0.4) ---- */
/** Counter adds, gauge sets. @p name without the "sentinel_" prefix; @p labels is a rendered
 * label set such as `instance="detector:latency",reason="json"` or NULL. Thread: any. */
void sn_metric(sn_runtime_t *rt, sn_metric_kind_t kind, const char *name, const char *help,
               const char *labels, double v);
/** Current value or 0. Thread: any. */
double sn_metric_value(sn_runtime_t *rt, const char *name, const char *labels);
/** Ownership: caller frees. */
char *sn_metrics_render(sn_runtime_t *rt);
/** Escape @p value for use between the quotes of a label (backslash, quote, newline), so a
 * caller can render a label set from untrusted text. @p out is always NUL-terminated; the
 * result is truncated (never mid-escape) to fit @p cap. Returns the length written. */
size_t sn_metric_escape(char *out, size_t cap, const char *value);

/* ---- logs: one JSON object a line on stderr ---- */
void sn_log_set_level(sn_log_level_t min);
/** Thread: any. Any of plugin, incident, request_id may be NULL. */
void sn_log(sn_log_level_t lvl, const char *plugin, const char *incident, const char *request_id,
            const char *fmt, ...) SN_PRINTF(5, 6);
void sn_logv(sn_log_level_t lvl, const char *plugin, const char *incident, const char *request_id,
             const char *fmt, va_list ap);

#endif /* SENTINEL_RUNTIME_H */
