/**
 * @file engine.c
 * Engine lifecycle: load -> validate -> create -> check -> start -> run -> drain -> destroy,
 * the host hooks that need pipeline knowledge, ingest, and the loop's signals.
 */
#include "engine-internal.h"
#include "ingest.h"

#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SN_CHANGES_KEPT 512

sn_live_t *sn_engine_live(sn_engine_t *e, const char *name)
{
    for (size_t i = 0; i < e->nlive; i++)
        if (strcmp(e->live[i]->in->name, name) == 0)
            return e->live[i];
    return NULL;
}

sn_live_t *sn_engine_live_at(sn_engine_t *e, int inst_index)
{
    return inst_index >= 0 && (size_t)inst_index < e->nlive ? e->live[inst_index] : NULL;
}

sn_runtime_t *sn_engine_runtime(sn_engine_t *e)
{
    return e->rt;
}

const sn_model_t *sn_engine_model(sn_engine_t *e)
{
    return e->model;
}

int sn_engine_port(sn_engine_t *e)
{
    return e->api ? sn_api_port(e->api) : -1;
}

/* ---- ingest ---- */

typedef struct ingest_ctx {
    sn_engine_t *e;
    sn_tbuild_t *b;
    sn_hwrite_t *hw; /* the same points for the telemetry store, or NULL */
    json_t *events;  /* changes and logs for the loop */
    int64_t max_ts;
    int oom;
} ingest_ctx_t;

static void on_record(void *arg, const sn_record_t *r)
{
    ingest_ctx_t *c = arg;
    if (r->ts_ms > c->max_ts)
        c->max_ts = r->ts_ms;
    if (r->type == SN_REC_POINT) {
        if (sn_tbuild_add(c->b, r) != 0)
            c->oom = 1;
        if (c->hw && sn_history_add(c->hw, r) != 0)
            c->oom = 1;
        return;
    }
    json_t *labels = json_object();
    for (size_t i = 0; i < r->nlabels; i++)
        json_object_set_new(labels, r->labels[i].name, json_string(r->labels[i].value));
    json_t *ev = json_pack("{s:I,s:o}", "ts", (json_int_t)r->ts_ms, "labels", labels);
    if (r->type == SN_REC_ALERT) {
        json_object_set_new(ev, "alert", json_string(r->metric));
        json_object_set_new(ev, "status", json_string(r->level));
        json_object_set_new(ev, "fingerprint", json_string(r->text));
        if (r->annotations)
            json_object_set_new(ev, "annotations", json_deep_copy(r->annotations));
        if (r->ends_ms)
            json_object_set_new(ev, "ends", json_integer(r->ends_ms));
        if (r->group)
            json_object_set_new(ev, "group", json_string(r->group));
    } else if (r->type == SN_REC_CHANGE) {
        json_object_set_new(ev, "change", json_string(r->text));
    } else {
        json_object_set_new(ev, "log", json_string(r->text));
        if (r->level)
            json_object_set_new(ev, "level", json_string(r->level));
    }
    json_array_append_new(c->events, ev);
}

typedef struct events_post {
    sn_engine_t *e;
    json_t *events;
} events_post_t;

static void deliver_events(void *arg)
{
    events_post_t *p = arg;
    size_t i;
    json_t *ev;
    json_array_foreach(p->events, i, ev)
    {
        if (json_object_get(ev, "change")) {
            sn_correlate_change(p->e, ev);
        } else if (json_object_get(ev, "alert")) {
            sn_correlate_alert(p->e, ev);
        } else {
            if (json_array_size(p->e->logs) >= SN_CHANGES_KEPT)
                json_array_remove(p->e->logs, 0);
            json_array_append(p->e->logs, ev);
        }
    }
    json_decref(p->events);
    free(p);
}

int sn_engine_ingest(sn_engine_t *e, const char *buf, size_t len, const char *origin,
                     sn_ingest_stats_t *stats, sn_diag_t *errs)
{
    return sn_engine_ingest_acked(e, buf, len, origin, stats, errs, NULL, NULL);
}

int sn_engine_ingest_acked(sn_engine_t *e, const char *buf, size_t len, const char *origin,
                           sn_ingest_stats_t *stats, sn_diag_t *errs, sn_done_fn done, void *arg)
{
    if (!e->tel)
        return SN_EAGAIN;
    ingest_ctx_t c = {.e = e, .max_ts = INT64_MIN};
    c.b = sn_tbuild_new(e->tel);
    c.events = json_array();
    c.hw = sn_history_batch(e);
    if (!c.b || !c.events || (e->telemetry && !c.hw)) {
        sn_tbuild_free(c.b);
        json_decref(c.events);
        sn_history_batch_free(c.hw);
        return SN_ENOMEM;
    }
    sn_ingest_stats_t local;
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof(*stats));
    sn_ingest_parse(buf, len, origin, NULL, on_record, &c, stats, errs, 20);
    if (c.oom) {
        sn_tbuild_free(c.b);
        json_decref(c.events);
        sn_history_batch_free(c.hw);
        return SN_ENOMEM;
    }
    size_t npoints = sn_tbuild_count(c.b);
    int rc = sn_tbuild_commit(c.b);
    if (rc != 0) {
        sn_history_batch_free(c.hw);
        json_decref(c.events);
        sn_metric(e->rt, SN_METRIC_COUNTER, "ingest_rejected_total", "Records refused at ingest",
                  "reason=\"backpressure\"", (double)stats->accepted);
        return rc;
    }
    if (c.hw)
        sn_history_submit(c.hw, done, arg);
    else if (done)
        sn_history_ack(e, done, arg, 0); /* no store: queued for the detectors is durable enough */
    if (json_array_size(c.events) > 0) {
        events_post_t *p = malloc(sizeof(*p));
        if (p) {
            p->e = e;
            p->events = c.events;
            if (sn_runtime_post(e->rt, deliver_events, p) != 0) {
                json_decref(p->events);
                free(p);
            }
        } else {
            json_decref(c.events);
        }
    } else {
        json_decref(c.events);
    }
    int64_t cur = atomic_load(&e->watermark);
    while (c.max_ts > cur && !atomic_compare_exchange_weak(&e->watermark, &cur, c.max_ts))
        ;
    sn_metric(e->rt, SN_METRIC_COUNTER, "ingest_records_total", "Records accepted at ingest", NULL,
              (double)stats->accepted);
    sn_metric(e->rt, SN_METRIC_COUNTER, "ingest_points_total", "Points handed to detectors", NULL,
              (double)npoints);
    for (int r = 0; r < SN_INGEST_REASONS; r++) {
        if (!stats->by_reason[r])
            continue;
        char labels[64];
        snprintf(labels, sizeof(labels), "reason=\"%s\"", sn_ingest_reason_name(r));
        sn_metric(e->rt, SN_METRIC_COUNTER, "ingest_rejected_total", "Records refused at ingest",
                  labels, (double)stats->by_reason[r]);
    }
    return 0;
}

/* ---- hooks for sn_host_t ---- */

static int hook_emit(void *eng, const char *instance, const char *buf, size_t len,
                     const char *origin)
{
    sn_engine_t *e = eng;
    sn_ingest_stats_t st;
    sn_diag_t errs;
    sn_diag_init(&errs);
    int rc = sn_engine_ingest(e, buf, len, origin, &st, &errs);
    for (size_t i = 0; i < errs.n; i++)
        sn_log(SN_LOG_WARN, instance, NULL, NULL, "%s", errs.msgs[i]);
    sn_diag_free(&errs);
    return rc == 0 ? (int)st.accepted : rc;
}

static int hook_emit_acked(void *eng, const char *instance, const char *buf, size_t len,
                           const char *origin, sn_done_fn done, void *arg)
{
    sn_engine_t *e = eng;
    sn_ingest_stats_t st;
    sn_diag_t errs;
    sn_diag_init(&errs);
    int rc = sn_engine_ingest_acked(e, buf, len, origin, &st, &errs, done, arg);
    for (size_t i = 0; i < errs.n; i++)
        sn_log(SN_LOG_WARN, instance, NULL, NULL, "%s", errs.msgs[i]);
    sn_diag_free(&errs);
    return rc == 0 ? (int)st.accepted : rc;
}

static uint32_t hook_check_lines(void *eng, const char *buf, size_t len, char *why, size_t wl)
{
    (void)eng;
    return sn_ingest_check(buf, len, why, wl);
}

static int hook_audit(void *eng, const char *actor, const char *action, const char *incident,
                      const json_t *detail)
{
    return sn_auditlog_append(eng, actor, action, incident, detail);
}

static int hook_decide(void *eng, const char *incident, int approve, const char *actor,
                       const char *reason)
{
    return sn_engine_decide(eng, incident, approve, actor, reason);
}

static const sn_engine_hooks_t engine_hooks = {
    .emit_lines = hook_emit,
    .check_lines = hook_check_lines,
    .audit = hook_audit,
    .route_add = sn_api_route_add,
    .req_body = sn_api_req_body,
    .req_header = sn_api_req_header,
    .req_reply = sn_api_req_reply,
    .decide = hook_decide,
    .emit_lines_acked = hook_emit_acked,
};

/* ---- construction ---- */

static const char *conf_plugin_dir(const sn_conf_t *conf)
{
    const sn_conf_section_t *s = sn_conf_find(conf, "sentinel", NULL);
    const sn_conf_kv_t *kv = s ? sn_conf_get(s, "plugin_dir") : NULL;
    return kv ? kv->value : NULL;
}

sn_live_t *sn_engine_live_new(sn_engine_t *e, sn_instance_t *in, const char *file, sn_diag_t *d)
{
    sn_live_t *lv = calloc(1, sizeof(*lv));
    if (!lv) {
        sn_diag_add(d, file, in->line, "[%s]: out of memory", in->label);
        return NULL;
    }
    lv->in = in;
    sn_host_fill(e->rt, &lv->host, in->label);
    sn_err_t err = {{0}};
    const sn_plugin_t *p = in->mod->plugin;
    if (p->create(&lv->host, in->cfg, &lv->self, &err) != 0) {
        sn_diag_add(d, file, in->line, "[%s]: %s", in->label,
                    err.msg[0] ? err.msg : "create failed");
        free(lv);
        return NULL;
    }
    lv->created = 1;
    if (in->kind == SN_EXECUTOR) {
        int64_t now = sn_mono_ms();
        const sn_exec_policy_t *pol = &in->policy;
        sn_bucket_init(&lv->per_minute, (double)pol->max_per_minute, 60000, now);
        sn_bucket_init(&lv->per_hour, (double)pol->max_per_hour, 3600000, now);
        sn_breaker_init(&lv->breaker, pol->failure_threshold, (int)pol->breaker_min_calls, 3600000,
                        pol->breaker_cooldown_ms);
    }
    return lv;
}

void sn_engine_apply_log_level(const char *level)
{
    if (!level)
        return;
    sn_log_set_level(strcmp(level, "debug") == 0   ? SN_LOG_DEBUG
                     : strcmp(level, "warn") == 0  ? SN_LOG_WARN
                     : strcmp(level, "error") == 0 ? SN_LOG_ERROR
                                                   : SN_LOG_INFO);
}

int sn_engine_live_start(sn_live_t *lv)
{
    const sn_plugin_t *p = lv->in->mod->plugin;
    if (p->start && p->start(lv->self) != 0) {
        sn_log(SN_LOG_ERROR, lv->in->label, NULL, NULL, "start failed");
        return SN_EIO;
    }
    lv->started = 1;
    return 0;
}

void sn_engine_live_free(sn_live_t *lv)
{
    if (!lv)
        return;
    if (lv->created && lv->in->mod->plugin->destroy)
        lv->in->mod->plugin->destroy(lv->self);
    free(lv);
}

static int create_instances(sn_engine_t *e, sn_diag_t *d)
{
    sn_model_t *m = e->model;
    e->live = calloc(m->ninst ? m->ninst : 1, sizeof(*e->live));
    if (!e->live)
        return SN_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < m->ninst; i++) {
        e->live[e->nlive] = sn_engine_live_new(e, &m->inst[i], m->conf->file, d);
        if (!e->live[e->nlive])
            rc = SN_EINVAL;
        else
            e->nlive++;
    }
    return rc;
}

sn_engine_t *sn_engine_new(const sn_engine_opts_t *o, sn_diag_t *d)
{
    sn_engine_t *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->opts = *o;
    e->config_path = strdup(o->config_path);
    e->changes = json_array();
    e->logs = json_array();
    e->correlate_node = -1;
    e->rt = sn_runtime_new(0);
    if (!e->rt || !e->config_path)
        goto fail;
    sn_runtime_set_hooks(e->rt, &engine_hooks, e);
    sn_host_fill(e->rt, &e->loader_host, NULL);

    sn_conf_t *conf = sn_conf_load_file(o->config_path, d);
    if (!conf)
        goto fail;
    const char *dir = o->plugin_dir ? o->plugin_dir : conf_plugin_dir(conf);
    e->loader = sn_loader_new(dir ? dir : sn_model_default_plugin_dir(), &e->loader_host);
    if (!e->loader) {
        sn_conf_free(conf);
        sn_diag_add(d, o->config_path, 0, "cannot initialise the plugin loader");
        goto fail;
    }
    e->model = sn_model_build(conf, e->loader, d);
    if (!e->model)
        goto fail;
    const sn_settings_t *s = &e->model->set;
    /* Before any plugin is created, so their start-up lines obey it too. */
    sn_engine_apply_log_level(s->log_level);
    if (s->instance_id) {
        snprintf(e->instance_id, sizeof(e->instance_id), "%s", s->instance_id);
    } else if (gethostname(e->instance_id, sizeof(e->instance_id) - 1) != 0) {
        snprintf(e->instance_id, sizeof(e->instance_id), "sentineld");
    }
    e->correlate_node = sn_graph_node(e->model->graph, "correlate");
    if (create_instances(e, d) != 0)
        goto fail;
    e->state = s->state ? sn_engine_live(e, s->state) : NULL;
    e->vector = s->vector ? sn_engine_live(e, s->vector) : NULL;
    e->embedder = s->embedder ? sn_engine_live(e, s->embedder) : NULL;
    e->telemetry = s->telemetry ? sn_engine_live(e, s->telemetry) : NULL;
    return e;
fail:
    sn_engine_free(e);
    return NULL;
}

int sn_engine_check(sn_engine_t *e, sn_diag_t *d)
{
    int rc = 0;
    for (size_t i = 0; i < e->nlive; i++) {
        sn_live_t *lv = e->live[i];
        const sn_plugin_t *p = lv->in->mod->plugin;
        sn_err_t err = {{0}};
        if (lv->created && p->check && p->check(lv->self, &err) != 0) {
            sn_diag_add(d, e->model->conf->file, lv->in->line, "[%s]: %s", lv->in->label,
                        err.msg[0] ? err.msg : "check failed");
            rc = SN_EINVAL;
        }
    }
    if (e->correlate_node < 0 && sn_model_first(e->model, SN_DETECTOR))
        sn_diag_add(d, e->model->conf->file, 0,
                    "detectors are configured but [pipeline] has no 'correlate' node");
    return rc;
}

/* ---- start ---- */

const sn_kind_t sn_engine_start_order[SN_START_KINDS] = {
    SN_STORE, SN_EMBEDDER, SN_ANALYZER, SN_EXECUTOR, SN_NOTIFIER, SN_DETECTOR, SN_INPUT};
#define start_order sn_engine_start_order

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sn_engine_t *e = arg;
    if (!e->shutting_down) {
        sn_correlate_tick(e);
        sn_reload_tick(e);
        sn_outbox_tick(e);
        sn_lease_tick(e);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    sn_engine_t *e = arg;
    if (sig == SIGHUP) {
        sn_engine_reload(e);
        return;
    }
    sn_log(SN_LOG_INFO, NULL, NULL, NULL, "signal %d: draining", (int)sig);
    sn_engine_shutdown(e);
}

static int start_telemetry(sn_engine_t *e)
{
    sn_tdetector_t dets[32];
    size_t n = 0;
    for (size_t i = 0; i < e->nlive && n < 32; i++) {
        sn_live_t *lv = e->live[i];
        if (lv->in->kind != SN_DETECTOR || !sn_model_in_graph(e->model, lv->in->name))
            continue;
        dets[n].name = lv->in->name;
        dets[n].ops = lv->in->mod->plugin->ops;
        dets[n].self = lv->self;
        dets[n].metrics = lv->in->metrics;
        n++;
    }
    const sn_settings_t *s = &e->model->set;
    sn_telemetry_opts_t o = {.history = e->telemetry ? sn_history_request : NULL,
                             .history_arg = e,
                             .workers = (int)s->workers,
                             .queue_points = (size_t)s->queue_points,
                             .max_series = (size_t)s->max_series,
                             .evict =
                                 !s->series_eviction || strcmp(s->series_eviction, "lru") == 0};
    e->tel = sn_telemetry_new(e->rt, &o, dets, n, sn_correlate_anomalies, e);
    return e->tel ? 0 : SN_ENOMEM;
}

int sn_engine_start(sn_engine_t *e)
{
    const sn_settings_t *s = &e->model->set;
    if (!e->state)
        sn_log(SN_LOG_WARN, NULL, NULL, NULL,
               "no [sentinel] state store: incidents are not checkpointed and the audit chain "
               "goes to the log only");
    if (start_telemetry(e) != 0)
        return SN_ENOMEM;
    /* The API exists before plugins start so they can register their routes. */
    if (!e->opts.no_http) {
        sn_diag_t d;
        sn_diag_init(&d);
        e->api = sn_api_new(e, e->opts.listen ? e->opts.listen : s->listen, &d);
        for (size_t i = 0; i < d.n; i++)
            sn_log(SN_LOG_ERROR, "http", NULL, NULL, "%s", d.msgs[i]);
        int bad = d.n > 0 || !e->api;
        sn_diag_free(&d);
        if (bad)
            return SN_EINVAL;
    }
    for (size_t k = 0; k < sizeof(start_order) / sizeof(start_order[0]); k++) {
        for (size_t i = 0; i < e->nlive; i++) {
            sn_live_t *lv = e->live[i];
            if (lv->in->kind != start_order[k] || !lv->created)
                continue;
            if (sn_engine_live_start(lv) != 0)
                return SN_EIO;
        }
        if (start_order[k] == SN_STORE)
            sn_auditlog_init(e);
    }
    struct event_base *base = sn_runtime_base(e->rt);
    e->tick = event_new(base, -1, EV_PERSIST, on_tick, e);
    struct timeval tv = {0, 250000};
    event_add(e->tick, &tv);
    e->sig_hup = evsignal_new(base, SIGHUP, on_signal, e);
    e->sig_term = evsignal_new(base, SIGTERM, on_signal, e);
    e->sig_int = evsignal_new(base, SIGINT, on_signal, e);
    event_add(e->sig_hup, NULL);
    event_add(e->sig_term, NULL);
    event_add(e->sig_int, NULL);
    sn_auditlog_append(e, "sentinel", "start", NULL, NULL);
    sn_workflow_resume_all(e);
    sn_log(SN_LOG_INFO, NULL, NULL, NULL, "sentineld %s started as '%s' with %zu instances",
           SN_VERSION, e->instance_id, e->nlive);
    return 0;
}

int sn_engine_run(sn_engine_t *e)
{
    return event_base_dispatch(sn_runtime_base(e->rt)) < 0 ? SN_EIO : 0;
}

/* ---- drain ---- */

static void stopped_one(void *arg, int status, json_t *result)
{
    (void)status;
    (void)result;
    sn_engine_t *e = arg;
    if (--e->stops_pending == 0)
        event_base_loopexit(sn_runtime_base(e->rt), NULL);
}

static void stop_plugins(sn_engine_t *e)
{
    e->stops_pending = 1;
    /* Reverse start order: inputs first, stores last. */
    for (int k = (int)(sizeof(start_order) / sizeof(start_order[0])) - 1; k >= 0; k--) {
        for (size_t i = 0; i < e->nlive; i++) {
            sn_live_t *lv = e->live[i];
            if (lv->in->kind != start_order[k] || !lv->started)
                continue;
            const sn_plugin_t *p = lv->in->mod->plugin;
            lv->started = 0;
            if (p->stop) {
                e->stops_pending++;
                p->stop(lv->self, stopped_one, e);
            }
        }
    }
    stopped_one(e, 0, NULL);
}

int sn_engine_busy_incidents(const sn_engine_t *e)
{
    int n = 0;
    for (const sn_incident_t *i = e->incidents; i; i = i->next)
        n += i->busy;
    return n;
}

static void drain_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sn_engine_t *e = arg;
    static const struct timeval tv = {0, 50000};
    int64_t left = e->model->set.drain_timeout_ms - (sn_mono_ms() - e->drain_started);
    if ((sn_engine_busy_incidents(e) || !sn_auditlog_idle(e) || !sn_outbox_idle(e)) && left > 0) {
        event_add(e->drain_timer, &tv);
        return;
    }
    if (left <= 0)
        sn_log(SN_LOG_WARN, NULL, NULL, NULL,
               "drain deadline reached with %d incident step(s) in flight: they resume at "
               "their last checkpoint",
               sn_engine_busy_incidents(e));
    stop_plugins(e);
    struct timeval dl = {1, 0};
    event_base_loopexit(sn_runtime_base(e->rt), &dl); /* bound plugin stops too */
}

void sn_engine_shutdown(sn_engine_t *e)
{
    if (e->shutting_down)
        return;
    e->shutting_down = 1;
    e->drain_started = sn_mono_ms();
    sn_api_free(e->api);
    e->api = NULL;
    /* Inputs stop first so nothing new arrives while the rest drains. */
    for (size_t i = 0; i < e->nlive; i++) {
        sn_live_t *lv = e->live[i];
        if (lv->in->kind == SN_INPUT && lv->started && lv->in->mod->plugin->stop) {
            lv->started = 0;
            lv->in->mod->plugin->stop(lv->self, NULL, NULL);
        }
    }
    if (e->tick)
        event_del(e->tick);
    sn_auditlog_append(e, "sentinel", "stop", NULL, NULL);
    e->drain_timer = evtimer_new(sn_runtime_base(e->rt), drain_poll, e);
    static const struct timeval now = {0, 0};
    event_add(e->drain_timer, &now);
}

void sn_engine_free(sn_engine_t *e)
{
    if (!e)
        return;
    sn_api_free(e->api);
    if (e->tel)
        sn_telemetry_free(e->tel);
    for (size_t i = 0; i < e->nlive; i++)
        sn_engine_live_free(e->live[i]);
    free(e->live);
    sn_reload_free_retiring(e);
    if (e->reload_pending)
        sn_model_free(e->reload_pending);
    struct event *evs[] = {e->tick, e->sig_hup, e->sig_term, e->sig_int, e->drain_timer};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    sn_incidents_free(e);
    sn_outbox_free(e);
    sn_silences_free(e);
    sn_cseries_free(e);
    sn_auditlog_free(e);
    sn_model_free(e->model);
    sn_loader_free(e->loader);
    sn_runtime_free(e->rt);
    json_decref(e->changes);
    json_decref(e->logs);
    free(e->config_path);
    free(e);
}

/* ---- queries and decisions ---- */

json_t *sn_engine_incidents(sn_engine_t *e, const char *state)
{
    json_t *arr = json_array();
    for (sn_incident_t *i = e->incidents; i; i = i->next) {
        if (i->lost || (state && strcmp(state, sn_incident_state(i)) != 0))
            continue;
        json_array_append_new(arr, sn_incident_summary(i));
    }
    return json_pack("{s:o}", "incidents", arr);
}

json_t *sn_engine_incident(sn_engine_t *e, const char *id)
{
    sn_incident_t *i = sn_incident_find(e, id);
    return i && !i->lost ? json_deep_copy(i->doc) : NULL;
}

int sn_engine_decide(sn_engine_t *e, const char *id, int approve, const char *actor,
                     const char *reason)
{
    sn_incident_t *i = sn_incident_find(e, id);
    if (!i)
        return SN_ENOTFOUND;
    return sn_workflow_decide(i, approve, actor, reason);
}

int sn_engine_audit(sn_engine_t *e, const char *actor, const char *action, const char *incident,
                    const json_t *detail)
{
    return sn_auditlog_append(e, actor, action, incident, detail);
}

void sn_engine_audit_query(sn_engine_t *e, const json_t *filter, sn_done_fn done, void *arg)
{
    if (!e->state) {
        done(arg, SN_ENOTSUP, NULL);
        return;
    }
    const sn_store_ops_t *ops = e->state->in->mod->plugin->ops;
    if (!(ops->caps & SN_STORE_AUDIT)) {
        done(arg, SN_ENOTSUP, NULL);
        return;
    }
    ops->audit_query(e->state->self, filter, done, arg);
}

json_t *sn_engine_health(sn_engine_t *e)
{
    json_t *inst = json_object();
    int all_ok = 1;
    for (size_t i = 0; i < e->nlive; i++) {
        sn_live_t *lv = e->live[i];
        const sn_plugin_t *p = lv->in->mod->plugin;
        sn_health_t h = {.ok = lv->started};
        if (!lv->started)
            snprintf(h.detail, sizeof(h.detail), "not started");
        else if (p->health)
            p->health(lv->self, &h);
        all_ok &= h.ok != 0;
        json_object_set_new(
            inst, lv->in->label,
            json_pack("{s:b,s:s,s:s}", "ok", h.ok, "plugin", lv->in->type, "detail", h.detail));
    }
    sn_telemetry_stats_t ts = {0};
    if (e->tel)
        sn_telemetry_stats(e->tel, &ts);
    size_t open = 0;
    for (sn_incident_t *i = e->incidents; i; i = i->next)
        open += i->open;
    return json_pack("{s:s,s:s,s:o,s:{s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I},s:I}", "status",
                     all_ok ? "ok" : "degraded", "instance", e->instance_id, "instances", inst,
                     "telemetry", "points", (json_int_t)ts.points, "anomalies",
                     (json_int_t)ts.anomalies, "series", (json_int_t)ts.series, "series_dropped",
                     (json_int_t)ts.series_dropped, "queued", (json_int_t)ts.queued, "incidents",
                     "open", (json_int_t)open, "in_memory", (json_int_t)e->nincidents, "audit_seq",
                     (json_int_t)e->audit.seq);
}
