/**
 * @file auditlog.c
 * The engine's side of the audit chain: records are queued in order and chained when they are
 * written, one at a time, so seq and prev_hash always follow what the store holds. A conflict
 * (another instance appended first) reloads the tail and chains again; nothing is dropped
 * unless the bounded queue overflows, which is logged and counted.
 */
#include "engine-internal.h"

#include <stdlib.h>
#include <string.h>

#define SN_AUDIT_QUEUE_MAX 100000
#define SN_AUDIT_PAGE 5000

static void pump(sn_engine_t *e);

static const sn_store_ops_t *audit_ops(sn_engine_t *e)
{
    if (!e->state)
        return NULL;
    const sn_store_ops_t *ops = e->state->in->mod->plugin->ops;
    return (ops->caps & SN_STORE_AUDIT) ? ops : NULL;
}

static void tail_page(sn_engine_t *e);

static void tail_loaded(void *arg, int status, json_t *result)
{
    sn_engine_t *e = arg;
    if (status != 0) {
        sn_log(SN_LOG_ERROR, "audit", NULL, NULL, "cannot read the audit tail (%d); retrying",
               status);
        e->audit.inflight = 0;
        /* Keep records queued; the next append retries the tail. */
        return;
    }
    json_t *recs = json_object_get(result, "records");
    size_t n = json_array_size(recs);
    if (n > 0) {
        json_t *last = json_array_get(recs, n - 1);
        e->audit.seq = json_integer_value(json_object_get(last, "seq"));
        snprintf(e->audit.prev, sizeof(e->audit.prev), "%s",
                 json_string_value(json_object_get(last, "hash")));
    }
    if (n == SN_AUDIT_PAGE) {
        tail_page(e);
        return;
    }
    e->audit.inflight = 0;
    e->audit.ready = 1;
    pump(e);
}

static void tail_page(sn_engine_t *e)
{
    json_t *f =
        json_pack("{s:I,s:i}", "after_seq", (json_int_t)e->audit.seq, "limit", SN_AUDIT_PAGE);
    e->audit.inflight = 1;
    audit_ops(e)->audit_query(e->state->self, f, tail_loaded, e);
    json_decref(f);
}

void sn_auditlog_init(sn_engine_t *e)
{
    e->audit.pending = json_array();
    e->audit.seq = 0;
    snprintf(e->audit.prev, sizeof(e->audit.prev), "%s", SN_AUDIT_GENESIS);
    if (!audit_ops(e)) {
        e->audit.ready = 1; /* records go to the log only; the engine warned at start */
        return;
    }
    tail_page(e);
}

void sn_auditlog_free(sn_engine_t *e)
{
    json_decref(e->audit.pending);
    e->audit.pending = NULL;
}

int sn_auditlog_idle(sn_engine_t *e)
{
    return !e->audit.inflight && json_array_size(e->audit.pending) == 0;
}

static void appended(void *arg, int status, json_t *result)
{
    (void)result;
    sn_engine_t *e = arg;
    e->audit.inflight = 0;
    json_t *head = json_array_get(e->audit.pending, 0);
    if (status == 0) {
        json_t *rec = json_object_get(head, "record");
        e->audit.seq = json_integer_value(json_object_get(rec, "seq"));
        snprintf(e->audit.prev, sizeof(e->audit.prev), "%s",
                 json_string_value(json_object_get(rec, "hash")));
        json_array_remove(e->audit.pending, 0);
        sn_metric(e->rt, SN_METRIC_COUNTER, "audit_records_total", "Audit records written", NULL,
                  1);
        pump(e);
        return;
    }
    json_object_del(head, "record");
    if (status == SN_ECONFLICT) {
        /* Someone else extended the chain: follow it, then chain ours after. */
        e->audit.ready = 0;
        tail_page(e);
        return;
    }
    sn_metric(e->rt, SN_METRIC_COUNTER, "audit_write_failures_total",
              "Audit appends the store refused", NULL, 1);
    sn_log(SN_LOG_ERROR, "audit", NULL, NULL, "audit append failed (%d); will retry", status);
}

static void pump(sn_engine_t *e)
{
    const sn_store_ops_t *ops = audit_ops(e);
    if (!ops || !e->audit.ready || e->audit.inflight)
        return;
    json_t *head = json_array_get(e->audit.pending, 0);
    if (!head)
        return;
    json_t *rec = sn_audit_record(
        e->audit.seq + 1, e->audit.prev, json_integer_value(json_object_get(head, "ts")),
        json_string_value(json_object_get(head, "actor")),
        json_string_value(json_object_get(head, "action")),
        json_string_value(json_object_get(head, "incident")), json_object_get(head, "detail"));
    json_object_set_new(head, "record", rec);
    e->audit.inflight = 1;
    ops->audit_append(e->state->self, rec, appended, e);
}

int sn_auditlog_append(sn_engine_t *e, const char *actor, const char *action, const char *incident,
                       const json_t *detail)
{
    json_t *d = detail ? json_deep_copy(detail) : json_object();
    if (!audit_ops(e)) {
        char *text = sn_json_canonical(d);
        sn_log(SN_LOG_INFO, "audit", incident, NULL, "audit %s by %s: %s", action, actor,
               text ? text : "{}");
        free(text);
        json_decref(d);
        return 0;
    }
    if (json_array_size(e->audit.pending) >= SN_AUDIT_QUEUE_MAX) {
        sn_metric(e->rt, SN_METRIC_COUNTER, "audit_dropped_total",
                  "Audit records refused because the queue was full", NULL, 1);
        sn_log(SN_LOG_ERROR, "audit", incident, NULL, "audit queue full: '%s' by %s refused",
               action, actor);
        json_decref(d);
        return SN_ENOMEM;
    }
    json_t *item = json_pack("{s:s,s:s,s:s?,s:o,s:I}", "actor", actor, "action", action, "incident",
                             incident, "detail", d, "ts", (json_int_t)sn_now_ms());
    json_array_append_new(e->audit.pending, item);
    if (!e->audit.ready && !e->audit.inflight)
        tail_page(e);
    else
        pump(e);
    return 0;
}
