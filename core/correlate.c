/**
 * @file correlate.c
 * The built-in `correlate` node: folds anomalies into incidents.
 *
 * All grouping runs on event time so a recorded day replays with the same incidents. An
 * anomaly joins an open incident when it falls within correlate_window of the incident's last
 * anomaly and either the incident is still gathering (the first group_wait of event time: a
 * cascade across services is one incident) or it shares a service/host/deployment label with
 * it (a later symptom of the same trouble). Otherwise it opens a new incident. Gathering ends
 * after group_wait of event time, or group_wait_wall of wall time when telemetry stops.
 */
#include "engine-internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SN_MAX_ANOMALIES_KEPT 200
#define SN_MAX_CHANGES 512

static const char *const grouping_labels[] = {"service", "host", "deployment", NULL};

static int shares_label(const sn_incident_t *inc, const json_t *labels)
{
    json_t *anoms = json_object_get(inc->doc, "anomalies");
    size_t i;
    json_t *a;
    json_array_foreach(anoms, i, a)
    {
        json_t *al = json_object_get(a, "labels");
        for (int k = 0; grouping_labels[k]; k++) {
            const char *x = json_string_value(json_object_get(al, grouping_labels[k]));
            const char *y = json_string_value(json_object_get(labels, grouping_labels[k]));
            if (x && y && strcmp(x, y) == 0)
                return 1;
        }
    }
    return 0;
}

static sn_incident_t *match(sn_engine_t *e, const sn_anomaly_t *a)
{
    int64_t win = e->model->set.correlate_window_ms;
    for (sn_incident_t *inc = e->incidents; inc; inc = inc->next) {
        if (!inc->open)
            continue;
        if (a->ts_ms < inc->first_ts - win || a->ts_ms > inc->last_ts + win)
            continue;
        if (inc->gathering || shares_label(inc, a->labels))
            return inc;
    }
    return NULL;
}

static void add_service(json_t *services, const char *svc)
{
    size_t i;
    json_t *s;
    json_array_foreach(services, i, s) if (strcmp(json_string_value(s), svc) == 0) return;
    json_array_append_new(services, json_string(svc));
}

static const char *severity_of(size_t nservices, double max_score)
{
    if (nservices >= 3 || max_score >= 0.95)
        return "high";
    if (nservices >= 2 || max_score >= 0.7)
        return "medium";
    return "low";
}

static void fingerprint(sn_incident_t *inc)
{
    /* Services and metrics, sorted: the same trouble in the same place has the same print. */
    json_t *keys = json_object();
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(inc->doc, "anomalies"), i, a)
    {
        const char *svc =
            json_string_value(json_object_get(json_object_get(a, "labels"), "service"));
        char k[512];
        snprintf(k, sizeof(k), "%s|%s", svc ? svc : "",
                 json_string_value(json_object_get(a, "metric")));
        json_object_set_new(keys, k, json_true());
    }
    char *text = sn_json_canonical(keys);
    char hex[65];
    sn_sha256_hex(text, strlen(text), hex);
    hex[16] = '\0';
    json_object_set_new(inc->doc, "fingerprint", json_string(hex));
    free(text);
    json_decref(keys);
}

static void attach(sn_engine_t *e, sn_incident_t *inc, const sn_anomaly_t *a)
{
    json_t *doc = inc->doc;
    json_t *anoms = json_object_get(doc, "anomalies");
    json_int_t count = json_integer_value(json_object_get(doc, "anomaly_count")) + 1;
    json_object_set_new(doc, "anomaly_count", json_integer(count));
    if (a->ts_ms < inc->first_ts)
        inc->first_ts = a->ts_ms;
    if (a->ts_ms > inc->last_ts)
        inc->last_ts = a->ts_ms;
    if (inc->executed_watermark && a->ts_ms > inc->executed_watermark &&
        a->score > inc->max_score_before)
        inc->escalated_signal = 1;
    if (!inc->executed_watermark && a->score > inc->max_score_before)
        inc->max_score_before = a->score;
    const char *svc = json_string_value(json_object_get(a->labels, "service"));
    add_service(json_object_get(doc, "services"), svc ? svc : "unknown");
    if (json_array_size(anoms) < SN_MAX_ANOMALIES_KEPT) {
        char series[17];
        snprintf(series, sizeof(series), "%016llx", (unsigned long long)a->series);
        json_array_append_new(
            anoms,
            json_pack("{s:s,s:s,s:O,s:I,s:f,s:f,s:f,s:f,s:s}", "series", series, "metric",
                      a->metric, "labels", a->labels, "ts", (json_int_t)a->ts_ms, "value", a->value,
                      "expected", isfinite(a->expected) ? a->expected : 0.0, "score", a->score,
                      "confidence", a->confidence, "detector", a->detector));
    }
    double max_score = 0;
    size_t i;
    json_t *x;
    json_array_foreach(anoms, i, x)
    {
        double s = json_number_value(json_object_get(x, "score"));
        if (s > max_score)
            max_score = s;
    }
    size_t nsvc = json_array_size(json_object_get(doc, "services"));
    if (inc->gathering) {
        json_object_set_new(doc, "severity", json_string(severity_of(nsvc, max_score)));
        char title[256];
        snprintf(title, sizeof(title), "%s anomaly on %s%s", a->metric, svc ? svc : "unknown",
                 nsvc > 1 ? " and others" : "");
        if (count == 1)
            json_object_set_new(doc, "title", json_string(title));
        fingerprint(inc);
    }
    (void)e;
}

void sn_correlate_attach_changes(sn_engine_t *e, sn_incident_t *inc)
{
    /* Changes in the hour before onset up to now are the candidate causes. */
    json_t *out = json_object_get(inc->doc, "changes");
    json_array_clear(out);
    size_t i;
    json_t *c;
    json_array_foreach(e->changes, i, c)
    {
        json_int_t ts = json_integer_value(json_object_get(c, "ts"));
        if (ts >= inc->first_ts - 3600 * 1000 && ts <= inc->last_ts)
            json_array_append(out, c);
    }
}

static void release(sn_engine_t *e, sn_incident_t *inc)
{
    inc->gathering = 0;
    sn_correlate_attach_changes(e, inc);
    sn_incident_set_state(inc, "analyzing");
    sn_incident_event(inc, "correlate", "opened", "%lld anomalies on %zu services",
                      (long long)json_integer_value(json_object_get(inc->doc, "anomaly_count")),
                      json_array_size(json_object_get(inc->doc, "services")));
    sn_metric(e->rt, SN_METRIC_COUNTER, "incidents_opened_total", "Incidents opened", NULL, 1);
    sn_workflow_notify(inc, "opened");
    sn_workflow_advance(inc, e->correlate_node, "ok");
}

void sn_correlate_anomalies(void *eng, const sn_anomaly_t *a, size_t n)
{
    sn_engine_t *e = eng;
    if (e->shutting_down)
        return; /* they are re-detected from replayed telemetry; the state store is consistent */
    e->anomalies_delivered += n;
    for (size_t i = 0; i < n; i++) {
        sn_metric(e->rt, SN_METRIC_COUNTER, "anomalies_total", "Anomalies from detectors", NULL, 1);
        sn_incident_t *inc = match(e, &a[i]);
        if (!inc) {
            inc = sn_incident_new(e, a[i].ts_ms);
            if (!inc) {
                sn_log(SN_LOG_ERROR, "correlate", NULL, NULL, "out of memory: anomaly lost");
                continue;
            }
        } else if (!inc->gathering) {
            sn_incident_event(inc, "correlate", "anomaly", "%s on %s: %.4g (expected %.4g)",
                              a[i].detector, a[i].metric, a[i].value, a[i].expected);
        }
        attach(e, inc, &a[i]);
    }
    sn_correlate_tick(e);
    sn_incident_trim(e);
}

void sn_correlate_tick(sn_engine_t *e)
{
    int64_t wm = atomic_load(&e->watermark);
    int64_t now = sn_mono_ms();
    /* Event time counts only once the detectors caught up with it: a replay ingested in one
     * go must not release an incident before the anomalies of that replay reached it. */
    sn_telemetry_stats_t ts = {0};
    if (e->tel)
        sn_telemetry_stats(e->tel, &ts);
    int caught_up = ts.queued == 0 && ts.anomalies == e->anomalies_delivered;
    for (sn_incident_t *inc = e->incidents; inc; inc = inc->next) {
        if (!inc->gathering || !inc->open)
            continue;
        if ((caught_up && wm - inc->first_ts >= e->model->set.group_wait_ms) ||
            now - inc->opened_mono >= e->model->set.group_wait_wall_ms)
            release(e, inc);
    }
}

void sn_correlate_change(sn_engine_t *e, json_t *change)
{
    if (json_array_size(e->changes) >= SN_MAX_CHANGES)
        json_array_remove(e->changes, 0);
    json_array_append(e->changes, change);
}
