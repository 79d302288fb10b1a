/**
 * @file reload.c
 * SIGHUP: the new configuration is built and validated beside the running one (as nginx does);
 * when anything fails the running graph stays. A valid configuration is applied live at the
 * next moment no incident step is in flight:
 *  - instances whose plugin type and validated settings are unchanged carry over untouched
 *    (their state, connections, breaker and rate-limit budgets stay);
 *  - changed or new instances are created and checked before anything is touched, so a
 *    plugin that refuses its settings refuses the whole reload;
 *  - removed or replaced instances are stopped, their /hooks routes dropped at once, and
 *    destroyed when their stop completes; a replaced executor inherits the old one's rate-limit
 *    tokens and breaker history, so a reload never buys an extra budget of actions;
 *  - the graph, safety settings, API keys and max_body switch with the model; incident
 *    cursors and loop budgets are kept by node name.
 * Stores, detectors and the settings that shape sockets and worker threads (listen,
 * plugin_dir, state, vector, workers, queue_points, max_series, series_eviction,
 * instance_id) are only read at
 * start: a reload that changes them is refused with the reason, and the operator restarts.
 */
#include "auth.h"
#include "engine-internal.h"

#include <stdlib.h>
#include <string.h>

/* A model kept alive until every instance it created has finished stopping: a plugin may read
 * its settings while it drains. */
typedef struct retire {
    struct retire *next;
    sn_engine_t *e;
    sn_model_t *model;
    sn_live_t **lives;
    size_t nlives;
    int pending;
} retire_t;

typedef struct retire_one {
    retire_t *r;
    sn_live_t *lv;
} retire_one_t;

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int carried(const sn_instance_t *a, const sn_instance_t *b)
{
    return a->kind == b->kind && strcmp(a->name, b->name) == 0 && strcmp(a->type, b->type) == 0 &&
           strcmp(a->digest, b->digest) == 0;
}

/* Why @p m cannot be applied to the running engine, or 0 when it can. */
static int needs_restart(const sn_engine_t *e, const sn_model_t *m, char *why, size_t cap)
{
    const sn_settings_t *o = &e->model->set, *n = &m->set;
    struct {
        const char *key;
        int same;
    } keys[] = {
        {"listen", e->opts.listen || same_str(o->listen, n->listen)},
        {"plugin_dir", e->opts.plugin_dir || same_str(o->plugin_dir, n->plugin_dir)},
        {"state", same_str(o->state, n->state)},
        {"vector", same_str(o->vector, n->vector)},
        {"instance_id", same_str(o->instance_id, n->instance_id)},
        {"workers", o->workers == n->workers},
        {"queue_points", o->queue_points == n->queue_points},
        {"max_series", o->max_series == n->max_series},
        {"series_eviction", same_str(o->series_eviction, n->series_eviction)},
        {"telemetry", same_str(o->telemetry, n->telemetry)},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (!keys[i].same) {
            snprintf(why, cap, "[sentinel] %s changed", keys[i].key);
            return 1;
        }
    }
    /* Stores and detectors: same set, same settings, same place in the graph. */
    for (int pass = 0; pass < 2; pass++) {
        const sn_model_t *a = pass ? m : e->model, *b = pass ? e->model : m;
        for (size_t i = 0; i < a->ninst; i++) {
            const sn_instance_t *in = &a->inst[i];
            if (in->kind != SN_STORE && in->kind != SN_DETECTOR)
                continue;
            const sn_instance_t *other = sn_model_find(b, in->name);
            if (!other || !carried(in, other) ||
                (in->kind == SN_DETECTOR &&
                 sn_model_in_graph(a, in->name) != sn_model_in_graph(b, in->name))) {
                snprintf(why, cap, "[%s] %s", in->label,
                         !other ? (pass ? "added" : "removed") : "changed");
                return 1;
            }
        }
    }
    return 0;
}

static void retire_done(sn_engine_t *e, retire_t *r)
{
    for (retire_t **p = &e->retiring; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    for (size_t i = 0; i < r->nlives; i++)
        sn_engine_live_free(r->lives[i]);
    free(r->lives);
    sn_model_free(r->model);
    free(r);
}

static void retire_stopped(void *arg, int status, json_t *result)
{
    (void)status;
    (void)result;
    retire_one_t *one = arg;
    retire_t *r = one->r;
    free(one);
    if (--r->pending == 0)
        retire_done(r->e, r);
}

/* Stop every instance of @p r; the model and instances go when the last stop completes. */
static void retire_start(sn_engine_t *e, retire_t *r)
{
    r->next = e->retiring;
    e->retiring = r;
    r->pending = 1;
    for (size_t i = 0; i < r->nlives; i++) {
        sn_live_t *lv = r->lives[i];
        sn_api_routes_drop(e->api, lv->in->label);
        const sn_plugin_t *p = lv->in->mod->plugin;
        if (!lv->started || !p->stop)
            continue;
        lv->started = 0;
        retire_one_t *one = malloc(sizeof(*one));
        if (!one) {
            p->stop(lv->self, NULL, NULL);
            continue;
        }
        one->r = r;
        one->lv = lv;
        r->pending++;
        p->stop(lv->self, retire_stopped, one);
    }
    if (--r->pending == 0)
        retire_done(e, r);
}

void sn_reload_free_retiring(sn_engine_t *e)
{
    while (e->retiring)
        retire_done(e, e->retiring);
}

/* A replacement executor keeps what its predecessor spent: tokens (capped at the new
 * capacity) and the breaker's recent outcomes and open state. */
static void inherit_safety(sn_live_t *to, const sn_live_t *from)
{
    to->per_minute.tokens = from->per_minute.tokens < to->per_minute.capacity
                                ? from->per_minute.tokens
                                : to->per_minute.capacity;
    to->per_minute.last_ms = from->per_minute.last_ms;
    to->per_hour.tokens = from->per_hour.tokens < to->per_hour.capacity ? from->per_hour.tokens
                                                                        : to->per_hour.capacity;
    to->per_hour.last_ms = from->per_hour.last_ms;
    sn_breaker_t b = to->breaker;
    memcpy(b.ts, from->breaker.ts, sizeof(b.ts));
    memcpy(b.fail, from->breaker.fail, sizeof(b.fail));
    b.head = from->breaker.head;
    b.count = from->breaker.count;
    b.opened_at = from->breaker.opened_at;
    to->breaker = b;
}

static void audit_result(sn_engine_t *e, const char *result, json_t *extra)
{
    json_t *det = extra ? extra : json_object();
    json_object_set_new(det, "result", json_string(result));
    sn_auditlog_append(e, "sentinel", "config_reload", NULL, det);
    json_decref(det);
}

static void refuse(sn_engine_t *e, sn_diag_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        sn_log(SN_LOG_ERROR, NULL, NULL, NULL, "reload: %s", d->msgs[i]);
    json_t *errs = json_array();
    for (size_t i = 0; i < d->n; i++)
        json_array_append_new(errs, json_string(d->msgs[i]));
    audit_result(e, "refused", json_pack("{s:o}", "errors", errs));
    sn_log(SN_LOG_WARN, NULL, NULL, NULL, "reload refused: the running configuration stays");
    sn_metric(e->rt, SN_METRIC_COUNTER, "config_reloads_total", "Configuration reloads",
              "result=\"refused\"", 1);
}

/* Apply @p m (ownership taken). No incident step is in flight. */
static void apply(sn_engine_t *e, sn_model_t *m)
{
    sn_model_t *old = e->model;
    const char *file = m->conf->file;
    sn_diag_t d;
    sn_diag_init(&d);
    int *cursor = calloc(e->nincidents + 1, sizeof(*cursor));
    sn_live_t **next = calloc(m->ninst + 1, sizeof(*next));
    int *from = calloc(m->ninst + 1, sizeof(*from));
    char *kept = calloc(e->nlive + 1, 1);
    sn_auth_t *auth = NULL;
    if (!cursor || !next || !from || !kept) {
        sn_diag_add(&d, file, 0, "out of memory");
        goto refused;
    }

    /* Every open incident must find its node in the new graph. */
    size_t k = 0;
    for (sn_incident_t *inc = e->incidents; inc; inc = inc->next, k++) {
        cursor[k] = -1;
        if (inc->node < 0)
            continue;
        const char *name = old->graph->nodes[inc->node].name;
        cursor[k] = sn_graph_node(m->graph, name);
        if (cursor[k] < 0)
            sn_diag_add(&d, file, 0,
                        "incident %s is at node '%s', which the new [pipeline] removes; "
                        "reload again once it has moved on",
                        inc->id, name);
    }
    if (e->api)
        auth = sn_api_auth_for(e->api, m, &d);
    if (d.n)
        goto refused;

    /* Create and check what is new before touching anything. */
    for (size_t j = 0; j < m->ninst; j++) {
        from[j] = -1;
        for (size_t i = 0; i < e->nlive; i++) {
            if (!kept[i] && carried(e->live[i]->in, &m->inst[j])) {
                from[j] = (int)i;
                kept[i] = 1;
                break;
            }
        }
        if (from[j] >= 0)
            continue;
        next[j] = sn_engine_live_new(e, &m->inst[j], file, &d);
        const sn_plugin_t *p = m->inst[j].mod->plugin;
        sn_err_t err = {{0}};
        if (next[j] && p->check && p->check(next[j]->self, &err) != 0)
            sn_diag_add(&d, file, m->inst[j].line, "[%s]: %s", m->inst[j].label,
                        err.msg[0] ? err.msg : "check failed");
    }
    if (d.n) {
        for (size_t j = 0; j < m->ninst; j++)
            if (from[j] < 0)
                sn_engine_live_free(next[j]);
        goto refused;
    }

    /* Commit. Carried instances move into the new model: the instance records swap so the
     * plugin keeps the settings it was created with (identical by digest). */
    json_t *added = json_array(), *removed = json_array(), *replaced = json_array();
    for (size_t j = 0; j < m->ninst; j++) {
        if (from[j] < 0) {
            sn_live_t *prev = NULL;
            for (size_t i = 0; i < e->nlive; i++)
                if (!kept[i] && strcmp(e->live[i]->in->name, m->inst[j].name) == 0)
                    prev = e->live[i];
            if (prev && prev->in->kind == SN_EXECUTOR && m->inst[j].kind == SN_EXECUTOR)
                inherit_safety(next[j], prev);
            json_array_append_new(prev ? replaced : added, json_string(m->inst[j].label));
            continue;
        }
        sn_live_t *lv = e->live[from[j]];
        sn_instance_t *was = lv->in, tmp = m->inst[j];
        int line = tmp.line;
        m->inst[j] = *was;
        m->inst[j].line = line;
        *was = tmp;
        lv->in = &m->inst[j];
        next[j] = lv;
    }
    retire_t *r = calloc(1, sizeof(*r));
    sn_live_t **gone = calloc(e->nlive + 1, sizeof(*gone));
    size_t ngone = 0;
    for (size_t i = 0; i < e->nlive; i++) {
        if (kept[i])
            continue;
        gone[ngone++] = e->live[i];
        int again = sn_model_find(m, e->live[i]->in->name) != NULL;
        if (!again)
            json_array_append_new(removed, json_string(e->live[i]->in->label));
    }
    free(e->live);
    e->live = next;
    next = NULL;
    e->nlive = m->ninst;
    e->model = m;
    k = 0;
    for (sn_incident_t *inc = e->incidents; inc; inc = inc->next, k++)
        inc->node = cursor[k];
    e->correlate_node = sn_graph_node(m->graph, "correlate");
    e->state = m->set.state ? sn_engine_live(e, m->set.state) : NULL;
    e->vector = m->set.vector ? sn_engine_live(e, m->set.vector) : NULL;
    e->embedder = m->set.embedder ? sn_engine_live(e, m->set.embedder) : NULL;
    e->telemetry = m->set.telemetry ? sn_engine_live(e, m->set.telemetry) : NULL;
    if (e->api)
        sn_api_reconfigure(e->api, auth, m->set.max_body);
    auth = NULL;
    sn_engine_apply_log_level(m->set.log_level);

    /* Old instances stop before their replacements start, so a route or a file they hold is
     * free again. */
    if (r && gone) {
        r->e = e;
        r->model = old;
        r->lives = gone;
        r->nlives = ngone;
        retire_start(e, r);
    } else {
        /* Out of memory: stopping cannot be tracked; keep the old model (a leak, not a
         * dangling pointer) and destroy nothing. */
        free(r);
        free(gone);
        sn_log(SN_LOG_ERROR, NULL, NULL, NULL, "reload: out of memory retiring old instances");
    }
    json_t *failed = json_array();
    for (size_t o = 0; o < SN_START_KINDS; o++) {
        for (size_t j = 0; j < e->nlive; j++) {
            sn_live_t *lv = e->live[j];
            if (lv->in->kind != sn_engine_start_order[o] || lv->started)
                continue;
            if (sn_engine_live_start(lv) != 0)
                json_array_append_new(failed, json_string(lv->in->label));
        }
    }
    size_t nkept = 0;
    for (size_t j = 0; j < m->ninst; j++)
        nkept += from[j] >= 0;
    sn_log(SN_LOG_INFO, NULL, NULL, NULL,
           "reload applied: %zu kept, %zu added, %zu replaced, %zu removed, %zu failed to start",
           nkept, json_array_size(added), json_array_size(replaced), json_array_size(removed),
           json_array_size(failed));
    audit_result(e, json_array_size(failed) ? "applied with errors" : "applied",
                 json_pack("{s:I,s:o,s:o,s:o,s:o}", "kept", (json_int_t)nkept, "added", added,
                           "replaced", replaced, "removed", removed, "start_failed", failed));
    sn_metric(e->rt, SN_METRIC_COUNTER, "config_reloads_total", "Configuration reloads",
              "result=\"applied\"", 1);
    goto out;
refused:
    refuse(e, &d);
    sn_model_free(m);
out:
    sn_auth_free(auth);
    free(cursor);
    free(next);
    free(from);
    free(kept);
    sn_diag_free(&d);
}

void sn_reload_tick(sn_engine_t *e)
{
    if (!e->reload_pending || e->shutting_down)
        return;
    int busy = sn_engine_busy_incidents(e);
    if (busy) {
        int64_t waited = sn_mono_ms() - e->reload_since;
        if (waited >= 5000 && waited < 5250)
            sn_log(SN_LOG_WARN, NULL, NULL, NULL,
                   "reload waits for %d incident step(s) in flight to finish", busy);
        return;
    }
    sn_model_t *m = e->reload_pending;
    e->reload_pending = NULL;
    apply(e, m);
}

int sn_engine_reload(sn_engine_t *e)
{
    sn_diag_t d;
    sn_diag_init(&d);
    sn_conf_t *conf = sn_conf_load_file(e->config_path, &d);
    sn_model_t *m = conf ? sn_model_build(conf, e->loader, &d) : NULL;
    int rc = 0;
    char why[256];
    if (!m) {
        refuse(e, &d);
        rc = SN_EINVAL;
    } else if (needs_restart(e, m, why, sizeof(why))) {
        sn_log(SN_LOG_WARN, NULL, NULL, NULL,
               "reload: %s; this needs a restart, the running configuration stays", why);
        audit_result(e, "restart needed", json_pack("{s:s}", "reason", why));
        sn_metric(e->rt, SN_METRIC_COUNTER, "config_reloads_total", "Configuration reloads",
                  "result=\"restart_needed\"", 1);
        sn_model_free(m);
        rc = SN_ENOTSUP;
    } else {
        if (e->reload_pending)
            sn_model_free(e->reload_pending);
        e->reload_pending = m;
        e->reload_since = sn_mono_ms();
        sn_reload_tick(e);
    }
    sn_diag_free(&d);
    return rc;
}
