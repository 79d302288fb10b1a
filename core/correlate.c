/**
 * @file correlate.c
 * The built-in `correlate` node: admits detector verdicts and folds anomalies into incidents.
 *
 * Admission, per series (cseries.c keeps the memory):
 *  - votes: verdicts of different detectors on one series within vote_window of event time
 *    count together; the anomaly goes on once their weights reach min_votes (1 = any
 *    detector), and later verdicts in the same window are the same anomaly, not new ones;
 *  - flapping: a series with flap_threshold anomalies within flap_window is flapping; its
 *    anomalies are suppressed until it has been quiet for a flap_window.
 * Every suppressed verdict is counted in anomalies_suppressed_total{reason}.
 *
 * Grouping runs on event time so a recorded day replays with the same incidents. An anomaly
 * joins an open incident when it falls within correlate_window of the incident's last anomaly
 * and either the incident is still gathering (the first group_wait of event time: a cascade
 * across services is one incident) or it shares a service/host/deployment label with it (a
 * later symptom of the same trouble). Otherwise it opens a new incident. Gathering ends after
 * group_wait of event time, or group_wait_wall of wall time when telemetry stops.
 *
 * When gathering ends the incident is scored (confidence, priority) and checked against the
 * open incidents: the same fingerprint (services x metrics), or an embedding at least
 * dedup_similarity close to an open incident's (embedder + vector store), folds it into that
 * incident instead of opening a new one. Nothing is dropped: its anomalies move over.
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
    size_t nsvc_before = json_array_size(json_object_get(doc, "services"));
    add_service(json_object_get(doc, "services"), svc ? svc : "unknown");
    /* Only kept anomalies make the fingerprint and the maximum score: one past the cap
     * changes neither (nor the severity, unless it brought a new service). */
    int kept = json_array_size(anoms) < SN_MAX_ANOMALIES_KEPT;
    if (kept) {
        char series[17];
        snprintf(series, sizeof(series), "%016llx", (unsigned long long)a->series);
        json_array_append_new(anoms,
                              json_pack("{s:s,s:s,s:O,s:I,s:f,s:f,s:f,s:f,s:s,s:s*}", "series",
                                        series, "metric", a->metric, "labels", a->labels, "ts",
                                        (json_int_t)a->ts_ms, "value", a->value, "expected",
                                        isfinite(a->expected) ? a->expected : 0.0, "score",
                                        a->score, "confidence", a->confidence, "detector",
                                        a->detector, "fingerprint", a->fingerprint));
    }
    size_t nsvc = json_array_size(json_object_get(doc, "services"));
    if (inc->gathering && (kept || nsvc != nsvc_before)) {
        double max_score = 0;
        size_t i;
        json_t *x;
        json_array_foreach(anoms, i, x)
        {
            double s = json_number_value(json_object_get(x, "score"));
            if (s > max_score)
                max_score = s;
        }
        json_object_set_new(doc, "severity", json_string(severity_of(nsvc, max_score)));
    }
    if (inc->gathering && count == 1) {
        char title[256];
        snprintf(title, sizeof(title), "%s anomaly on %s%s", a->metric, svc ? svc : "unknown",
                 nsvc > 1 ? " and others" : "");
        json_object_set_new(doc, "title", json_string(title));
    }
    if (inc->gathering && kept)
        fingerprint(inc);
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

/* ---- scoring ---- */

/* Independent evidence: each series' strongest anomaly (score x confidence) combined as
 * 1 - prod(1 - s_i), so more series and stronger verdicts raise it; at most 0.99. Priority
 * crosses it with severity: P1 is high severity with confidence >= 0.8. */
static void score_incident(sn_incident_t *inc)
{
    json_t *best = json_object();
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(inc->doc, "anomalies"), i, a)
    {
        const char *series = json_string_value(json_object_get(a, "series"));
        double v = json_number_value(json_object_get(a, "score")) *
                   json_number_value(json_object_get(a, "confidence"));
        if (series && v > json_number_value(json_object_get(best, series)))
            json_object_set_new(best, series, json_real(v));
    }
    double miss = 1;
    const char *k;
    json_t *v;
    json_object_foreach(best, k, v)
    {
        double x = json_number_value(v);
        miss *= 1 - (x > 0.99 ? 0.99 : x < 0 ? 0 : x);
    }
    json_decref(best);
    double conf = 1 - miss > 0.99 ? 0.99 : 1 - miss;
    conf = round(conf * 1000) / 1000;
    const char *sev = json_string_value(json_object_get(inc->doc, "severity"));
    int high = sev && strcmp(sev, "high") == 0, medium = sev && strcmp(sev, "medium") == 0;
    const char *prio = high && conf >= 0.8               ? "P1"
                       : high || (medium && conf >= 0.6) ? "P2"
                       : medium || conf >= 0.5           ? "P3"
                                                         : "P4";
    json_object_set_new(inc->doc, "confidence", json_real(conf));
    json_object_set_new(inc->doc, "priority", json_string(prio));
}

/* ---- deduplication ---- */

static void open_incident(sn_engine_t *e, sn_incident_t *inc);

/* Move @p from's anomalies into the open incident @p into and forget @p from (never
 * checkpointed: it was still gathering). */
static void fold(sn_engine_t *e, sn_incident_t *from, sn_incident_t *into, const char *why)
{
    json_t *dst = json_object_get(into->doc, "anomalies");
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(from->doc, "anomalies"), i, a)
    {
        if (json_array_size(dst) < SN_MAX_ANOMALIES_KEPT)
            json_array_append(dst, a);
        const char *svc =
            json_string_value(json_object_get(json_object_get(a, "labels"), "service"));
        add_service(json_object_get(into->doc, "services"), svc ? svc : "unknown");
    }
    json_int_t n = json_integer_value(json_object_get(from->doc, "anomaly_count"));
    json_object_set_new(
        into->doc, "anomaly_count",
        json_integer(json_integer_value(json_object_get(into->doc, "anomaly_count")) + n));
    if (from->last_ts > into->last_ts)
        into->last_ts = from->last_ts;
    sn_incident_event(into, "correlate", "duplicate",
                      "folded %lld anomalies of a new incident with the same %s", (long long)n,
                      why);
    char labels[48];
    snprintf(labels, sizeof(labels), "by=\"%s\"", why);
    sn_metric(e->rt, SN_METRIC_COUNTER, "incidents_deduplicated_total",
              "New incidents folded into an open one", labels, 1);
    sn_incident_remove(e, from);
    if (!into->busy)
        sn_workflow_checkpoint(into, NULL, 0);
}

static sn_incident_t *same_fingerprint(sn_engine_t *e, const sn_incident_t *inc)
{
    const char *fp = json_string_value(json_object_get(inc->doc, "fingerprint"));
    for (sn_incident_t *o = e->incidents; fp && o; o = o->next) {
        if (o == inc || !o->open || o->gathering)
            continue;
        const char *ofp = json_string_value(json_object_get(o->doc, "fingerprint"));
        if (ofp && strcmp(ofp, fp) == 0)
            return o;
    }
    return NULL;
}

typedef struct dedup_ctx {
    sn_engine_t *e;
    char id[37];
    float *v;
    size_t dim;
} dedup_ctx_t;

static void dedup_free(dedup_ctx_t *c)
{
    free(c->v);
    free(c);
}

static void dedup_stored(void *arg, int status, json_t *result)
{
    (void)result;
    if (status != 0)
        sn_log(SN_LOG_WARN, "correlate", (const char *)arg, NULL,
               "could not index the open incident for similarity (%d)", status);
    free(arg);
}

static void recalled(void *arg, int status, json_t *result)
{
    dedup_ctx_t *c = arg;
    sn_engine_t *e = c->e;
    sn_incident_t *inc = sn_incident_find(e, c->id);
    dedup_free(c);
    if (!inc)
        return;
    inc->busy = 0;
    json_t *similar = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(status == 0 ? json_object_get(result, "matches") : NULL, i, m)
    {
        json_t *p = json_object_get(m, "payload");
        const char *id = json_string_value(json_object_get(m, "id"));
        if (!id || strcmp(id, inc->id) == 0)
            continue;
        json_array_append_new(similar, json_pack("{s:s,s:f,s:O?,s:O?,s:O?,s:O?}", "id", id, "score",
                                                 json_number_value(json_object_get(m, "score")),
                                                 "title", json_object_get(p, "title"), "services",
                                                 json_object_get(p, "services"), "plan",
                                                 json_object_get(p, "plan"), "outcome",
                                                 json_object_get(p, "outcome")));
    }
    if (json_array_size(similar)) {
        sn_incident_event(inc, "correlate", "similar",
                          "%zu similar past incident(s), closest %.2f: %s",
                          json_array_size(similar),
                          json_number_value(json_object_get(json_array_get(similar, 0), "score")),
                          json_string_value(json_object_get(json_array_get(similar, 0), "title")));
        json_object_set_new(inc->doc, "similar_incidents", similar);
    } else {
        json_decref(similar);
    }
    open_incident(e, inc);
}

static void dedup_searched(void *arg, int status, json_t *result)
{
    dedup_ctx_t *c = arg;
    sn_incident_t *inc = sn_incident_find(c->e, c->id);
    if (!inc) {
        dedup_free(c);
        return;
    }
    inc->busy = 0;
    size_t i;
    json_t *m;
    json_array_foreach(status == 0 ? json_object_get(result, "matches") : NULL, i, m)
    {
        const char *id = json_string_value(json_object_get(m, "id"));
        sn_incident_t *o = id ? sn_incident_find(c->e, id) : NULL;
        if (o && o != inc && o->open && !o->gathering) {
            fold(c->e, inc, o, "embedding");
            dedup_free(c);
            return;
        }
    }
    const sn_store_ops_t *ops = c->e->vector->in->mod->plugin->ops;
    json_t *payload = json_pack("{s:s}", "id", inc->id);
    char *tag = strdup(inc->id);
    if (tag)
        ops->vector_upsert(c->e->vector->self, "open_incidents", inc->id, c->v, c->dim, payload,
                           dedup_stored, tag);
    json_decref(payload);
    /* Memory: the closest resolved incidents, with what was done, go into the document for
     * the analyzers, the planner and the people looking at it. */
    inc->busy = 1;
    ops->vector_search(c->e->vector->self, "incidents", c->v, c->dim, 3, 0.5, recalled, c);
}

static void dedup_embedded(void *arg, int status, json_t *result)
{
    dedup_ctx_t *c = arg;
    sn_incident_t *inc = sn_incident_find(c->e, c->id);
    json_t *vec = json_object_get(result, "vector");
    if (!inc || !c->e->vector) {
        dedup_free(c);
        return;
    }
    c->dim = json_array_size(vec);
    c->v = status == 0 && c->dim ? calloc(c->dim, sizeof(float)) : NULL;
    if (!c->v) {
        inc->busy = 0;
        sn_log(SN_LOG_WARN, "correlate", inc->id, NULL,
               "no embedding for similarity deduplication (%d): opened as new", status);
        sn_engine_t *e = c->e;
        dedup_free(c);
        open_incident(e, inc);
        return;
    }
    for (size_t i = 0; i < c->dim; i++)
        c->v[i] = (float)json_number_value(json_array_get(vec, i));
    const sn_store_ops_t *ops = c->e->vector->in->mod->plugin->ops;
    ops->vector_search(c->e->vector->self, "open_incidents", c->v, c->dim, 5,
                       c->e->model->set.dedup_similarity, dedup_searched, c);
}

/* Append @p s to the growing text, metric-like names split into words ("disk_full" ->
 * "disk full") so an embedding model reads them as language, not as one opaque token. */
static void add_words(json_t *parts, const char *s)
{
    if (!s || !*s)
        return;
    char buf[512];
    size_t n = 0;
    for (; *s && n + 1 < sizeof(buf); s++)
        buf[n++] = (*s == '_' || *s == '.' || *s == ':') ? ' ' : *s;
    buf[n] = '\0';
    json_array_append_new(parts, json_string(buf));
}

/* What the incident is about, as plain text for the embedder: one "<metric words> on
 * <services>" per metric, then the alerts' summaries and descriptions. Plain words, no JSON
 * keys: a template shared by every incident would dominate the embedding. */
char *sn_correlate_describe(const sn_incident_t *inc)
{
    json_t *seen = json_object(), *parts = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(inc->doc, "anomalies"), i, a)
    {
        const char *metric = json_string_value(json_object_get(a, "metric"));
        const char *svc =
            json_string_value(json_object_get(json_object_get(a, "labels"), "service"));
        char key[600];
        snprintf(key, sizeof(key), "%s|%s", metric ? metric : "", svc ? svc : "");
        if (json_object_get(seen, key))
            continue;
        json_object_set_new(seen, key, json_true());
        char line[600];
        snprintf(line, sizeof(line), "%s on %s", metric ? metric : "anomaly",
                 svc ? svc : "unknown service");
        add_words(parts, line);
        json_t *ann = json_object_get(a, "annotations");
        add_words(parts, json_string_value(json_object_get(ann, "summary")));
        add_words(parts, json_string_value(json_object_get(ann, "description")));
    }
    json_decref(seen);
    size_t len = 0;
    json_t *p;
    json_array_foreach(parts, i, p) len += json_string_length(p) + 2;
    char *text = malloc(len + 1);
    if (text) {
        text[0] = '\0';
        size_t at = 0;
        json_array_foreach(parts, i, p)
        {
            at += (size_t)snprintf(text + at, len + 1 - at, "%s%s", at ? ". " : "",
                                   json_string_value(p));
        }
    }
    json_decref(parts);
    return text;
}

/* Start the similarity check; 0 when it does not apply. */
static int dedup_by_similarity(sn_engine_t *e, sn_incident_t *inc)
{
    if (!(e->model->set.dedup_similarity > 0) || !e->embedder || !e->vector)
        return 0;
    const sn_store_ops_t *sops = e->vector->in->mod->plugin->ops;
    if (!(sops->caps & SN_STORE_VECTOR))
        return 0;
    dedup_ctx_t *c = calloc(1, sizeof(*c));
    char *text = sn_correlate_describe(inc);
    if (!c || !text) {
        free(c);
        free(text);
        return 0;
    }
    c->e = e;
    snprintf(c->id, sizeof(c->id), "%s", inc->id);
    inc->busy = 1;
    const sn_embedder_ops_t *eops = e->embedder->in->mod->plugin->ops;
    eops->embed(e->embedder->self, text, dedup_embedded, c);
    free(text);
    return 1;
}

static void release(sn_engine_t *e, sn_incident_t *inc)
{
    inc->gathering = 0;
    score_incident(inc);
    sn_incident_t *dup = same_fingerprint(e, inc);
    if (dup) {
        fold(e, inc, dup, "fingerprint");
        return;
    }
    if (dedup_by_similarity(e, inc))
        return;
    open_incident(e, inc);
}

static void open_incident(sn_engine_t *e, sn_incident_t *inc)
{
    sn_correlate_attach_changes(e, inc);
    const char *sil = sn_silence_match(e, inc);
    if (sil) {
        json_object_set_new(inc->doc, "silenced_by", json_string(sil));
        sn_incident_event(inc, "correlate", "silenced",
                          "silence %s matches: recorded, no notification, no auto-remediation",
                          sil);
    }
    sn_incident_set_state(inc, "analyzing");
    sn_incident_event(inc, "correlate", "opened", "%lld anomalies on %zu services",
                      (long long)json_integer_value(json_object_get(inc->doc, "anomaly_count")),
                      json_array_size(json_object_get(inc->doc, "services")));
    sn_metric(e->rt, SN_METRIC_COUNTER, "incidents_opened_total", "Incidents opened", NULL, 1);
    sn_workflow_notify(inc, "opened");
    sn_workflow_advance(inc, e->correlate_node, "ok");
}

/* ---- admission ---- */

static double detector_weight(const sn_engine_t *e, const char *name, int *index)
{
    const sn_model_t *m = e->model;
    int k = 0;
    for (size_t i = 0; i < m->ninst; i++) {
        if (m->inst[i].kind != SN_DETECTOR)
            continue;
        if (strcmp(m->inst[i].name, name) == 0) {
            *index = k;
            return m->inst[i].weight;
        }
        k++;
    }
    *index = -1;
    return 1;
}

static void suppressed(sn_engine_t *e, const char *reason)
{
    char labels[48];
    snprintf(labels, sizeof(labels), "reason=\"%s\"", reason);
    sn_metric(e->rt, SN_METRIC_COUNTER, "anomalies_suppressed_total",
              "Detector verdicts that did not become anomalies", labels, 1);
}

/* 1 when the verdict goes on to the incidents. */
static int admit(sn_engine_t *e, const sn_anomaly_t *a)
{
    const sn_settings_t *s = &e->model->set;
    sn_cseries_t *c = sn_cseries_get(e, a->series, a->ts_ms);
    if (!c)
        return 1; /* no memory to vote or detect flapping with: fail open, lose nothing */
    int di;
    double w = detector_weight(e, a->detector, &di);
    uint32_t bit = di >= 0 && di < 32 ? 1u << di : 0;
    int64_t since = a->ts_ms - c->vote_start;
    if (!c->vote_start || since > s->vote_window_ms || since < -s->vote_window_ms) {
        if (c->vote_start && !c->passed && c->votes > 0)
            suppressed(e, "unconfirmed");
        c->vote_start = a->ts_ms ? a->ts_ms : 1;
        c->votes = 0;
        c->voters = 0;
        c->passed = 0;
    }
    if (c->passed) {
        suppressed(e, "same_anomaly");
        return 0;
    }
    if (!bit || !(c->voters & bit)) {
        c->voters |= bit;
        c->votes += w;
    }
    if (c->votes + 1e-9 < s->min_votes)
        return 0; /* held: counted as unconfirmed if the window closes short of the votes */
    c->passed = 1;
    if (s->flap_threshold <= 0)
        return 1;
    if (c->flapping_until > a->ts_ms) {
        c->flapping_until = a->ts_ms + s->flap_window_ms;
        suppressed(e, "flapping");
        return 0;
    }
    c->flap_ts[c->flap_head] = a->ts_ms;
    c->flap_head = (c->flap_head + 1) % SN_FLAP_MAX;
    if (c->flap_n < SN_FLAP_MAX)
        c->flap_n++;
    int64_t recent = 0;
    for (unsigned i = 0; i < c->flap_n; i++)
        recent += a->ts_ms - c->flap_ts[i] < s->flap_window_ms;
    if (recent < s->flap_threshold)
        return 1;
    c->flapping_until = a->ts_ms + s->flap_window_ms;
    char *labels = json_dumps(a->labels, JSON_COMPACT | JSON_SORT_KEYS);
    sn_log(SN_LOG_WARN, "correlate", NULL, NULL,
           "%s%s is flapping (%lld anomalies within flap_window): its anomalies are suppressed "
           "until it is quiet for %llds",
           a->metric, labels ? labels : "", (long long)recent,
           (long long)(s->flap_window_ms / 1000));
    free(labels);
    sn_metric(e->rt, SN_METRIC_COUNTER, "series_flapping_total", "Series found flapping", NULL, 1);
    suppressed(e, "flapping");
    return 0;
}

static void correlate_one(sn_engine_t *e, const sn_anomaly_t *a)
{
    sn_metric(e->rt, SN_METRIC_COUNTER, "anomalies_total", "Anomalies from detectors", NULL, 1);
    if (!admit(e, a))
        return;
    sn_incident_t *inc = match(e, a);
    if (!inc) {
        inc = sn_incident_new(e, a->ts_ms);
        if (!inc) {
            sn_log(SN_LOG_ERROR, "correlate", NULL, NULL, "out of memory: anomaly lost");
            return;
        }
    } else if (!inc->gathering) {
        sn_incident_event(inc, "correlate", "anomaly", "%s on %s: %.4g (expected %.4g)",
                          a->detector, a->metric, a->value, a->expected);
    }
    attach(e, inc, a);
}

void sn_correlate_anomalies(void *eng, const sn_anomaly_t *a, size_t n)
{
    sn_engine_t *e = eng;
    if (e->shutting_down)
        return; /* they are re-detected from replayed telemetry; the state store is consistent */
    e->anomalies_delivered += n;
    for (size_t i = 0; i < n; i++)
        correlate_one(e, &a[i]);
    sn_correlate_tick(e);
    sn_incident_trim(e);
}

/* ---- alerts judged elsewhere ---- */

/* The open incident holding alert @p fp, and its anomaly record. */
static json_t *find_alert(sn_engine_t *e, const char *fp, sn_incident_t **holder)
{
    for (sn_incident_t *inc = e->incidents; inc; inc = inc->next) {
        if (!inc->open)
            continue;
        size_t i;
        json_t *a;
        json_array_foreach(json_object_get(inc->doc, "anomalies"), i, a)
        {
            const char *afp = json_string_value(json_object_get(a, "fingerprint"));
            if (afp && strcmp(afp, fp) == 0) {
                *holder = inc;
                return a;
            }
        }
    }
    return NULL;
}

/* Every anomaly of the incident is an alert, and every one is resolved. */
static int alerts_all_resolved(const sn_incident_t *inc)
{
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(inc->doc, "anomalies"), i, a)
    {
        if (!json_object_get(a, "fingerprint") || !json_is_true(json_object_get(a, "resolved")))
            return 0;
    }
    return json_array_size(json_object_get(inc->doc, "anomalies")) > 0;
}

void sn_correlate_alert(sn_engine_t *e, json_t *ev)
{
    if (e->shutting_down)
        return; /* the sender repeats it (Alertmanager does, every repeat_interval) */
    const char *fp = json_string_value(json_object_get(ev, "fingerprint"));
    const char *name = json_string_value(json_object_get(ev, "alert"));
    const char *status = json_string_value(json_object_get(ev, "status"));
    sn_metric(e->rt, SN_METRIC_COUNTER, "alerts_received_total", "Alerts from other systems",
              strcmp(status, "firing") == 0 ? "status=\"firing\"" : "status=\"resolved\"", 1);
    sn_incident_t *inc = NULL;
    json_t *known = find_alert(e, fp, &inc);
    if (strcmp(status, "firing") == 0) {
        if (known && json_is_true(json_object_get(known, "resolved"))) {
            json_object_del(known, "resolved");
            sn_incident_event(inc, "correlate", "alert_refired", "%s (%s) fires again", name, fp);
        } else if (known) {
            suppressed(e, "repeat"); /* a repeat, or another Alertmanager of an HA pair */
        } else {
            sn_anomaly_t a = {.series = sn_series_hash(fp, NULL, 0),
                              .ts_ms = json_integer_value(json_object_get(ev, "ts")),
                              .value = 1,
                              .expected = 0,
                              .score = 1,
                              .confidence = 1,
                              .detector = "alert",
                              .metric = name,
                              .labels = json_object_get(ev, "labels"),
                              .fingerprint = fp};
            correlate_one(e, &a);
            json_t *rec = find_alert(e, fp, &inc);
            json_t *ann = json_object_get(ev, "annotations");
            if (rec && ann)
                json_object_set(rec, "annotations", ann);
            sn_correlate_tick(e);
            sn_incident_trim(e);
        }
        return;
    }
    if (!known) {
        suppressed(e, "resolved_unknown");
        return;
    }
    json_object_set_new(known, "resolved", json_true());
    sn_incident_event(inc, "correlate", "alert_resolved", "%s (%s) resolved at the source", name,
                      fp);
    if (!alerts_all_resolved(inc))
        return;
    /* A step in flight finishes first; the workflow closes the incident before the next one. */
    json_object_set_new(inc->doc, "alerts_resolved", json_true());
    if (!inc->busy) {
        inc->gathering = 0;
        sn_workflow_close(inc, "resolved", "resolved",
                          "every alert of the incident resolved at the source");
    }
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
    /* release() may fold an incident away: take the next one first. */
    for (sn_incident_t *inc = e->incidents, *next; inc; inc = next) {
        next = inc->next;
        if (inc->open && !inc->gathering && !inc->busy && !inc->lost &&
            json_is_true(json_object_get(inc->doc, "alerts_resolved"))) {
            /* Its alerts resolved while a step or a checkpoint was in flight. */
            sn_workflow_close(inc, "resolved", "resolved",
                              "every alert of the incident resolved at the source");
            continue;
        }
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
