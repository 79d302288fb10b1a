/**
 * @file incident.c
 * Incident documents: creation, timeline, state, summaries, and the bound on how many closed
 * incidents stay in memory (open ones always stay; closed ones live on in the state store).
 */
#include "engine-internal.h"
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

static void stamp_updated(sn_incident_t *inc)
{
    char ts[32];
    sn_format_time_ms(sn_now_ms(), ts);
    json_object_set_new(inc->doc, "updated_at", json_string(ts));
}

sn_incident_t *sn_incident_new(sn_engine_t *e, int64_t ts)
{
    sn_incident_t *inc = calloc(1, sizeof(*inc));
    if (!inc)
        return NULL;
    sn_uuid7(inc->id);
    char now[32], onset[32];
    sn_format_time_ms(sn_now_ms(), now);
    sn_format_time_ms(ts, onset);
    inc->doc = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:[],s:[],s:[],s:[],s:[],s:[],s:[],s:[],"
                         "s:i,s:i,s:{},s:n,s:s}",
                         "id", inc->id, "state", "gathering", "severity", "low", "title", "anomaly",
                         "opened_at", now, "updated_at", now, "onset", onset, "anomalies",
                         "services", "changes", "hypotheses", "plan", "approvals", "executions",
                         "timeline", "loop_count", 0, "anomaly_count", 0, "edge_counts", "cursor",
                         "instance", e->instance_id);
    if (!inc->doc) {
        free(inc);
        return NULL;
    }
    inc->eng = e;
    inc->node = -1;
    inc->open = 1;
    inc->gathering = 1;
    inc->first_ts = inc->last_ts = ts;
    inc->opened_mono = sn_mono_ms();
    inc->next = e->incidents;
    e->incidents = inc;
    e->nincidents++;
    return inc;
}

sn_incident_t *sn_incident_find(sn_engine_t *e, const char *id)
{
    for (sn_incident_t *i = e->incidents; i; i = i->next)
        if (strcmp(i->id, id) == 0)
            return i;
    return NULL;
}

void sn_incident_event(sn_incident_t *inc, const char *node, const char *event, const char *fmt,
                       ...)
{
    char detail[1024] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
    }
    /* Byte bounds ("%.300s", the buffer) can cut a character in half, and plugins quote text
     * from outside; jansson refuses invalid UTF-8, which would drop the entry silently. */
    snp_utf8_scrub(detail);
    char ts[32];
    sn_format_time_ms(sn_now_ms(), ts);
    json_t *tl = json_object_get(inc->doc, "timeline");
    json_array_append_new(tl, json_pack("{s:s,s:s,s:s,s:s}", "ts", ts, "node", node ? node : "",
                                        "event", event, "detail", detail));
    stamp_updated(inc);
    sn_log(SN_LOG_INFO, node, inc->id, NULL, "%s: %s", event, detail);
}

void sn_incident_set_state(sn_incident_t *inc, const char *state)
{
    json_object_set_new(inc->doc, "state", json_string(state));
    stamp_updated(inc);
}

const char *sn_incident_state(const sn_incident_t *inc)
{
    return json_string_value(json_object_get(inc->doc, "state"));
}

json_t *sn_incident_summary(const sn_incident_t *inc)
{
    json_t *d = inc->doc;
    json_t *sum = json_pack(
        "{s:s,s:O,s:O,s:O,s:O,s:O,s:O}", "id", inc->id, "state", json_object_get(d, "state"),
        "severity", json_object_get(d, "severity"), "title", json_object_get(d, "title"),
        "services", json_object_get(d, "services"), "opened_at", json_object_get(d, "opened_at"),
        "updated_at", json_object_get(d, "updated_at"));
    static const char *const optional[] = {"priority", "confidence", "fingerprint"};
    for (size_t i = 0; sum && i < sizeof(optional) / sizeof(optional[0]); i++) {
        json_t *v = json_object_get(d, optional[i]);
        if (v && !json_is_null(v))
            json_object_set(sum, optional[i], v);
    }
    return sum;
}

static void incident_free(sn_incident_t *inc)
{
    sn_workflow_forget_saves(inc);
    json_decref(inc->doc);
    free(inc);
}

void sn_incident_remove(sn_engine_t *e, sn_incident_t *inc)
{
    for (sn_incident_t **pp = &e->incidents; *pp; pp = &(*pp)->next) {
        if (*pp == inc) {
            *pp = inc->next;
            incident_free(inc);
            e->nincidents--;
            return;
        }
    }
}

void sn_incident_trim(sn_engine_t *e)
{
    /* The list is newest first: drop closed incidents past the bound from the tail end. */
    size_t limit = (size_t)e->model->set.max_incidents;
    int lost = 0;
    for (sn_incident_t *i = e->incidents; i && !lost; i = i->next)
        lost = i->lost;
    if (e->nincidents <= limit && !lost)
        return;
    size_t seen = 0;
    for (sn_incident_t **pp = &e->incidents; *pp;) {
        sn_incident_t *inc = *pp;
        seen++;
        if ((seen > limit || inc->lost) && !inc->open && !inc->busy && !inc->lease_busy) {
            *pp = inc->next;
            incident_free(inc);
            e->nincidents--;
            continue;
        }
        pp = &inc->next;
    }
}

void sn_incidents_free(sn_engine_t *e)
{
    while (e->incidents) {
        sn_incident_t *inc = e->incidents;
        e->incidents = inc->next;
        incident_free(inc);
    }
    e->nincidents = 0;
}
