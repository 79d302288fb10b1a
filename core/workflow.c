/**
 * @file workflow.c
 * Runs an incident through the pipeline graph, one node at a time, checkpointing the incident
 * and its cursor after every node.
 *
 * Safety lives here, not in executors: whitelist on canonical targets, global and per-executor
 * dry-run, the approval policy, the circuit breaker, per-minute and per-hour rate limits,
 * rollback from snapshots when verification fails or the signal got worse, and bounded
 * loop-back edges. An execution is written as intent before the executor is called and as
 * outcome after; on resume an intent without outcome is verified, never re-run.
 */
#include "engine-internal.h"

#include <stdlib.h>
#include <string.h>

#define SN_SAVE_RETRIES 5

static sn_graph_t *graph(sn_incident_t *inc)
{
    return inc->eng->model->graph;
}

static const char *node_name(sn_incident_t *inc, int node)
{
    return node >= 0 ? graph(inc)->nodes[node].name : "";
}

static sn_live_t *node_live(sn_incident_t *inc, int node)
{
    const sn_node_t *n = &graph(inc)->nodes[node];
    return n->type == SN_NODE_INSTANCE ? sn_engine_live_at(inc->eng, n->inst) : NULL;
}

/* Outgoing calls a plugin makes for an incident carry X-Request-ID: the id of the API request
 * that last acted on the incident (an approval, say), else the incident id. */
static sn_runtime_t *rid_enter(sn_incident_t *inc)
{
    const char *rid = json_string_value(json_object_get(inc->doc, "request_id"));
    sn_runtime_set_request_id(inc->eng->rt, rid ? rid : inc->id);
    return inc->eng->rt;
}

/* Takes the runtime, not the incident: the call may have completed and freed its context. */
static void rid_leave(sn_runtime_t *rt)
{
    sn_runtime_set_request_id(rt, NULL);
}

static int64_t attempt_of(sn_incident_t *inc)
{
    return json_integer_value(json_object_get(inc->doc, "loop_count"));
}

static int is_closed_state(const char *s)
{
    return strcmp(s, "resolved") == 0 || strcmp(s, "escalated") == 0 ||
           strcmp(s, "rejected") == 0 || strcmp(s, "closed") == 0;
}

/* ---- checkpoints ---- */

/* One checkpoint at a time per incident: each saves version + 1, so a second one sent while
 * the first is in flight would conflict with it (and read as "another instance took over").
 * One asked for meanwhile (say, an approval arriving while the approval_needed checkpoint is
 * being written) waits in inc->save_queue and is sent with the document as it is then. */
typedef struct save_ctx {
    sn_incident_t *inc;
    void (*then)(sn_incident_t *);
    int retry;
    struct save_ctx *next;
} save_ctx_t;

static void save_retry(void *arg);
static void save_now(save_ctx_t *sc);

void sn_workflow_forget_saves(sn_incident_t *inc)
{
    while (inc->save_queue) {
        save_ctx_t *q = inc->save_queue;
        inc->save_queue = q->next;
        free(q);
    }
}

/* The checkpoint in flight is over: send the next one waiting, then continue. */
static void save_finish(save_ctx_t *sc)
{
    sn_incident_t *inc = sc->inc;
    void (*then)(sn_incident_t *) = sc->then;
    free(sc);
    save_ctx_t *next = inc->save_queue;
    if (next) {
        inc->save_queue = next->next;
        inc->busy = 1;
        save_now(next);
    } else {
        inc->saving = 0;
        inc->busy = 0;
    }
    if (then)
        then(inc);
}

static void save_done(void *arg, int status, json_t *result)
{
    (void)result;
    save_ctx_t *sc = arg;
    sn_incident_t *inc = sc->inc;
    sn_engine_t *e = inc->eng;
    if (status == 0) {
        inc->version++;
        inc->saves_failed = 0;
        if (inc->version == 1)
            sn_lease_claim(inc); /* a new incident is ours from its first checkpoint */
        save_finish(sc);
        return;
    }
    sn_metric(e->rt, SN_METRIC_COUNTER, "checkpoint_failures_total",
              "Checkpoints the state store refused", NULL, 1);
    if (status == SN_ECONFLICT) {
        /* A newer checkpoint exists: another instance took the incident over. */
        free(sc);
        sn_workflow_forget_saves(inc);
        inc->saving = 0;
        inc->busy = 0;
        sn_lease_lost(inc, "newer checkpoint in the store");
        return;
    }
    if (sc->retry < SN_SAVE_RETRIES && !e->shutting_down) {
        sc->retry++;
        sn_log(SN_LOG_WARN, "workflow", inc->id, NULL, "checkpoint failed (%d), retry %d", status,
               sc->retry);
        const sn_host_t *h = &e->state->host;
        if (h->timer_add(h, 200LL << sc->retry, 0, save_retry, sc))
            return;
    }
    sn_log(SN_LOG_ERROR, "workflow", inc->id, NULL,
           "checkpoint failed (%d): incident continues in memory only", status);
    save_finish(sc);
}

static void save_now(save_ctx_t *sc)
{
    sn_incident_t *inc = sc->inc;
    sn_live_t *st = inc->eng->state;
    const sn_store_ops_t *ops = st->in->mod->plugin->ops;
    /* The store may serialise on another thread: hand it a copy the loop will not touch. */
    json_t *copy = json_deep_copy(inc->doc);
    ops->state_save(st->self, inc->id, inc->version + 1, inc->open, copy, save_done, sc);
    json_decref(copy);
}

static void save_retry(void *arg)
{
    save_now(arg);
}

void sn_workflow_checkpoint(sn_incident_t *inc, void (*then)(sn_incident_t *), int retry)
{
    (void)retry;
    json_object_set_new(inc->doc, "cursor",
                        inc->node >= 0 ? json_string(node_name(inc, inc->node)) : json_null());
    if (!inc->eng->state) {
        if (then)
            then(inc);
        return;
    }
    save_ctx_t *sc = calloc(1, sizeof(*sc));
    if (!sc) {
        if (then)
            then(inc);
        return;
    }
    sc->inc = inc;
    sc->then = then;
    inc->busy = 1;
    if (inc->saving) {
        save_ctx_t **tail = (save_ctx_t **)&inc->save_queue;
        while (*tail)
            tail = &(*tail)->next;
        *tail = sc;
        return;
    }
    inc->saving = 1;
    save_now(sc);
}

/* ---- notifications ---- */

static int event_wanted(const char *const *events, const char *event)
{
    if (!events || !events[0])
        return 1;
    for (size_t i = 0; events[i]; i++)
        if (strcmp(events[i], "*") == 0 || strcmp(events[i], event) == 0)
            return 1;
    return 0;
}

/* A silence in force now, or the one that held when the incident opened. */
static const char *silenced(sn_incident_t *inc)
{
    const char *now = sn_silence_match(inc->eng, inc);
    return now ? now : json_string_value(json_object_get(inc->doc, "silenced_by"));
}

void sn_workflow_notify(sn_incident_t *inc, const char *event)
{
    sn_engine_t *e = inc->eng;
    const char *sil = silenced(inc);
    if (sil) {
        sn_metric(e->rt, SN_METRIC_COUNTER, "notifications_silenced_total",
                  "Notifications not sent because a silence matched", NULL, 1);
        sn_incident_event(inc, "notify", "silenced", "'%s' not sent: silence %s", event, sil);
        return;
    }
    for (size_t i = 0; i < e->nlive; i++) {
        sn_live_t *lv = e->live[i];
        if (lv->in->kind != SN_NOTIFIER || !lv->started || !event_wanted(lv->in->events, event))
            continue;
        sn_outbox_add(e, inc, lv->in->name, event);
    }
}

/* ---- closing ---- */

static void closed_saved(sn_incident_t *inc)
{
    sn_incident_trim(inc->eng);
}

static void close_incident(sn_incident_t *inc, const char *state, const char *event,
                           const char *why)
{
    inc->open = 0;
    inc->waiting = 0;
    sn_incident_set_state(inc, state);
    sn_incident_event(inc, state, event, "%s", why);
    char name[64];
    snprintf(name, sizeof(name), "incidents_%s_total", state);
    sn_metric(inc->eng->rt, SN_METRIC_COUNTER, name, "Incidents closed in this state", NULL, 1);
    sn_workflow_notify(inc, event);
    inc->node = -1;
    sn_workflow_checkpoint(inc, closed_saved, 0);
}

void sn_workflow_close(sn_incident_t *inc, const char *state, const char *event, const char *why)
{
    if (inc->open)
        close_incident(inc, state, event, why);
}

static void remember(sn_incident_t *inc);

/* ---- edges ---- */

static int failure_outcome(const char *o)
{
    return strcmp(o, "failed") == 0 || strcmp(o, "timeout") == 0 || strcmp(o, "escalated") == 0;
}

static void run_after_save(sn_incident_t *inc)
{
    sn_workflow_run(inc);
}

void sn_workflow_advance(sn_incident_t *inc, int from, const char *outcome)
{
    sn_graph_t *g = graph(inc);
    int edges[32];
    size_t n = sn_graph_next(g, from, outcome, edges, 32);
    json_t *counts = json_object_get(inc->doc, "edge_counts");
    int chosen = -1, bounded_out = 0;
    /* An edge without on= carries success only; failures and rejections take an edge that
     * names them, or end the workflow in escalation. */
    int success = strcmp(outcome, "ok") == 0 || strcmp(outcome, "approved") == 0;
    for (size_t i = 0; i < n; i++) {
        const sn_edge_t *ed = &g->edges[edges[i]];
        if (!ed->on && !success)
            continue;
        if (ed->max > 0) {
            /* Counted by node names, not edge index, so a reload that reorders the
             * [pipeline] keeps every incident's loop budget. */
            char key[160];
            snprintf(key, sizeof(key), "%s->%s", node_name(inc, from), node_name(inc, ed->to));
            json_int_t c = json_integer_value(json_object_get(counts, key));
            if (c >= ed->max) {
                bounded_out = 1;
                continue;
            }
            json_object_set_new(counts, key, json_integer(c + 1));
            json_object_set_new(inc->doc, "loop_count", json_integer(attempt_of(inc) + 1));
            sn_incident_event(inc, node_name(inc, from), "loop", "%s -> %s (%lld of %d)",
                              node_name(inc, from), node_name(inc, ed->to), (long long)c + 1,
                              ed->max);
        }
        chosen = ed->to;
        break;
    }
    if (chosen < 0) {
        if (bounded_out) {
            close_incident(inc, "escalated", "escalated",
                           "loop bound reached: automation gave up, a human must act");
        } else if (strcmp(outcome, "rejected") == 0) {
            close_incident(inc, "rejected", "rejected", "plan rejected by a human");
        } else if (failure_outcome(outcome)) {
            char why[160];
            snprintf(why, sizeof(why), "'%s' from %s and no edge handles it", outcome,
                     node_name(inc, from));
            close_incident(inc, "escalated", "escalated", why);
        } else {
            char why[160];
            snprintf(why, sizeof(why), "pipeline ended at %s", node_name(inc, from));
            close_incident(inc, "closed", "closed", why);
        }
        return;
    }
    inc->node = chosen;
    sn_workflow_checkpoint(inc, run_after_save, 0);
}

/* ---- analyzers ---- */

typedef struct step_ctx {
    sn_incident_t *inc;
    int node;
    sn_live_t *lv;
} step_ctx_t;

static step_ctx_t *step_new(sn_incident_t *inc, int node, sn_live_t *lv)
{
    step_ctx_t *sc = calloc(1, sizeof(*sc));
    if (sc) {
        sc->inc = inc;
        sc->node = node;
        sc->lv = lv;
        inc->busy = 1;
    }
    return sc;
}

static void step_finish(step_ctx_t *sc, const char *outcome)
{
    sn_incident_t *inc = sc->inc;
    int node = sc->node;
    free(sc);
    inc->busy = 0;
    sn_workflow_advance(inc, node, outcome);
}

static int cmp_confidence(const void *a, const void *b)
{
    double ca = json_number_value(json_object_get(*(json_t *const *)a, "confidence"));
    double cb = json_number_value(json_object_get(*(json_t *const *)b, "confidence"));
    return ca < cb ? 1 : ca > cb ? -1 : 0;
}

static void merge_hypotheses(sn_incident_t *inc, const char *analyzer, json_t *hyps)
{
    json_t *cur = json_object_get(inc->doc, "hypotheses");
    json_t *keep = json_array();
    size_t i;
    json_t *h;
    json_array_foreach(cur, i, h)
    {
        const char *by = json_string_value(json_object_get(h, "analyzer"));
        if (!by || strcmp(by, analyzer) != 0)
            json_array_append(keep, h);
    }
    json_array_foreach(hyps, i, h)
    {
        if (!json_is_object(h))
            continue;
        json_t *c = json_deep_copy(h);
        json_object_set_new(c, "analyzer", json_string(analyzer));
        json_array_append_new(keep, c);
    }
    size_t n = json_array_size(keep);
    json_t **v = calloc(n ? n : 1, sizeof(*v));
    for (i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(keep, i));
    qsort(v, n, sizeof(*v), cmp_confidence);
    json_t *sorted = json_array();
    for (i = 0; i < n; i++)
        json_array_append_new(sorted, v[i]);
    free(v);
    json_decref(keep);
    json_object_set_new(inc->doc, "hypotheses", sorted);
    json_t *top = json_array_get(sorted, 0);
    if (top) {
        const char *cause = json_string_value(json_object_get(top, "cause"));
        if (cause)
            json_object_set_new(inc->doc, "title", json_string(cause));
    }
}

/* Validate and enrich planned actions: executor and verb exist, the target is canonical and
 * whitelisted; risk and downtime come from the verb table. */
static json_t *enrich_plan(sn_incident_t *inc, json_t *plan)
{
    sn_engine_t *e = inc->eng;
    json_t *out = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(plan, i, a)
    {
        const char *ex = json_string_value(json_object_get(a, "executor"));
        const char *verb = json_string_value(json_object_get(a, "verb"));
        const char *target = json_string_value(json_object_get(a, "target"));
        json_t *params = json_object_get(a, "params");
        json_t *r =
            json_pack("{s:s,s:s,s:s,s:O,s:s,s:i,s:s,s:b,s:n}", "executor", ex ? ex : "", "verb",
                      verb ? verb : "", "target", target ? target : "", "params",
                      json_is_object(params) ? params : json_object(), "risk", "high", "downtime_s",
                      0, "blast_radius", target ? target : "", "allowed", 0, "denied_reason");
        if (json_is_object(params) == 0)
            json_decref(json_object_get(r, "params")); /* json_object() above was O-packed */
        json_t *reason = json_object_get(a, "reason");
        if (reason)
            json_object_set(r, "reason", reason);
        const char *deny = NULL;
        sn_live_t *lv = ex ? sn_engine_live(e, ex) : NULL;
        char canon[600], why[160];
        if (!lv || lv->in->kind != SN_EXECUTOR) {
            deny = "no such executor";
        } else if (!target || sn_target_canon(target, canon, sizeof(canon), why, sizeof(why))) {
            deny = target ? why : "no target";
        } else {
            json_object_set_new(r, "target", json_string(canon));
            const sn_executor_ops_t *ops = lv->in->mod->plugin->ops;
            const sn_verb_t *v = NULL;
            for (const sn_verb_t *x = ops->verbs; x && x->name; x++)
                if (verb && strcmp(x->name, verb) == 0)
                    v = x;
            if (!v) {
                deny = "executor offers no such verb";
            } else {
                json_object_set_new(r, "risk", json_string(sn_risk_name(v->risk)));
                json_object_set_new(r, "downtime_s", json_integer(v->downtime_s));
                if (!sn_whitelist_match(lv->in->policy.allow, canon))
                    deny = "target not in the executor's allow list";
            }
        }
        if (deny) {
            json_object_set_new(r, "denied_reason", json_string(deny));
            sn_auditlog_append(e, "sentinel", "action_denied", inc->id, r);
        } else {
            json_object_set_new(r, "allowed", json_true());
        }
        json_array_append_new(out, r);
    }
    return out;
}

/* ---- live assessment: the executor grades each allowed action from live state ---- */

typedef struct assess_ctx {
    step_ctx_t *sc;
    size_t idx;
    json_t *reason; /* the planner's note when it proposed nothing */
} assess_ctx_t;

static void plan_logged(step_ctx_t *sc, json_t *reason);
static void assess_next(assess_ctx_t *ac);
static void action_of(json_t *a, json_t *exrec, sn_incident_t *inc, int dry, sn_action_t *out);

static int risk_rank(const char *r)
{
    return r && strcmp(r, "low") == 0 ? 1 : r && strcmp(r, "medium") == 0 ? 2 : 3;
}

/* The live grading replaces the verb's default, but never makes an action look safer than
 * the default says: the higher risk, the longer downtime. */
static void assessed(void *arg, int status, json_t *result)
{
    assess_ctx_t *ac = arg;
    sn_incident_t *inc = ac->sc->inc;
    json_t *a = json_array_get(json_object_get(inc->doc, "plan"), ac->idx);
    if (status != 0 || !json_is_object(result)) {
        sn_incident_event(inc, node_name(inc, ac->sc->node), "assess_failed",
                          "%s %s: the executor could not grade it (%d): default risk kept",
                          json_string_value(json_object_get(a, "verb")),
                          json_string_value(json_object_get(a, "target")), status);
    } else {
        const char *risk = json_string_value(json_object_get(result, "risk"));
        if (risk && risk_rank(risk) > risk_rank(json_string_value(json_object_get(a, "risk"))))
            json_object_set_new(a, "risk", json_string(risk));
        json_t *dt = json_object_get(result, "downtime_s");
        if (json_is_integer(dt) &&
            json_integer_value(dt) > json_integer_value(json_object_get(a, "downtime_s")))
            json_object_set(a, "downtime_s", dt);
        json_t *br = json_object_get(result, "blast_radius");
        if (br)
            json_object_set(a, "blast_radius", br);
        json_object_set_new(a, "assessed", json_true());
    }
    ac->idx++;
    assess_next(ac);
}

static void assess_next(assess_ctx_t *ac)
{
    sn_incident_t *inc = ac->sc->inc;
    json_t *plan = json_object_get(inc->doc, "plan");
    for (; ac->idx < json_array_size(plan); ac->idx++) {
        json_t *a = json_array_get(plan, ac->idx);
        if (!json_is_true(json_object_get(a, "allowed")))
            continue;
        sn_live_t *lv = sn_engine_live(inc->eng, json_string_value(json_object_get(a, "executor")));
        const sn_executor_ops_t *ops = lv ? lv->in->mod->plugin->ops : NULL;
        if (!ops || !ops->assess || !lv->started)
            continue;
        sn_action_t act;
        action_of(a, NULL, inc, 1, &act);
        sn_runtime_t *rid_rt = rid_enter(inc);
        ops->assess(lv->self, &act, assessed, ac);
        rid_leave(rid_rt);
        return;
    }
    step_ctx_t *sc = ac->sc;
    json_t *reason = ac->reason;
    free(ac);
    plan_logged(sc, reason);
    json_decref(reason);
}

static void planned(void *arg, int status, json_t *result)
{
    step_ctx_t *sc = arg;
    sn_incident_t *inc = sc->inc;
    if (status != 0 || !json_is_array(json_object_get(result, "plan"))) {
        sn_incident_event(inc, node_name(inc, sc->node), "plan_failed", "planner answered %d",
                          status);
        step_finish(sc, "failed");
        return;
    }
    json_t *plan = enrich_plan(inc, json_object_get(result, "plan"));
    json_object_set_new(inc->doc, "plan", plan);
    assess_ctx_t *ac = calloc(1, sizeof(*ac));
    if (!ac) {
        plan_logged(sc, json_object_get(result, "reason"));
        return;
    }
    ac->sc = sc;
    ac->reason = json_incref(json_object_get(result, "reason"));
    assess_next(ac);
}

static void plan_logged(step_ctx_t *sc, json_t *reason)
{
    sn_incident_t *inc = sc->inc;
    json_t *plan = json_object_get(inc->doc, "plan");
    size_t i;
    json_t *a;
    json_array_foreach(plan, i, a)
    {
        sn_incident_event(inc, node_name(inc, sc->node), "planned",
                          "%s:%s %s (risk %s, downtime %llds)%s%s",
                          json_string_value(json_object_get(a, "executor")),
                          json_string_value(json_object_get(a, "verb")),
                          json_string_value(json_object_get(a, "target")),
                          json_string_value(json_object_get(a, "risk")),
                          (long long)json_integer_value(json_object_get(a, "downtime_s")),
                          json_is_true(json_object_get(a, "allowed")) ? "" : ": denied: ",
                          json_is_true(json_object_get(a, "allowed"))
                              ? ""
                              : json_string_value(json_object_get(a, "denied_reason")));
    }
    if (json_array_size(plan) == 0)
        sn_incident_event(inc, node_name(inc, sc->node), "planned", "no action: %s",
                          json_string_value(reason) ? json_string_value(reason)
                                                    : "planner proposed nothing");
    step_finish(sc, "ok");
}

static void do_plan(step_ctx_t *sc)
{
    const sn_analyzer_ops_t *ops = sc->lv->in->mod->plugin->ops;
    if (!ops->plan) {
        step_finish(sc, "ok");
        return;
    }
    json_t *copy = json_deep_copy(sc->inc->doc);
    sn_runtime_t *rid_rt = rid_enter(sc->inc);
    ops->plan(sc->lv->self, copy, planned, sc);
    rid_leave(rid_rt);
    json_decref(copy);
}

static void analyzed(void *arg, int status, json_t *result)
{
    step_ctx_t *sc = arg;
    sn_incident_t *inc = sc->inc;
    if (status != 0) {
        sn_incident_event(inc, node_name(inc, sc->node), "analysis_failed", "analyzer answered %d",
                          status);
        step_finish(sc, "failed");
        return;
    }
    merge_hypotheses(inc, sc->lv->in->name, json_object_get(result, "hypotheses"));
    /* An analyzer may tell what it did (tool calls, fallbacks): at most 32 notes. */
    size_t k;
    json_t *t;
    json_array_foreach(json_object_get(result, "timeline"), k, t)
    {
        const char *ev = json_string_value(json_object_get(t, "event"));
        const char *det = json_string_value(json_object_get(t, "detail"));
        if (k >= 32)
            break;
        if (ev && det)
            sn_incident_event(inc, node_name(inc, sc->node), ev, "%.300s", det);
    }
    json_t *top = json_array_get(json_object_get(inc->doc, "hypotheses"), 0);
    if (top)
        sn_incident_event(inc, node_name(inc, sc->node), "analyzed",
                          "top cause: %s (confidence %.2f)",
                          json_string_value(json_object_get(top, "cause")),
                          json_number_value(json_object_get(top, "confidence")));
    else
        sn_incident_event(inc, node_name(inc, sc->node), "analyzed", "no hypothesis");
    do_plan(sc);
}

static void run_analyzer(sn_incident_t *inc, int node, sn_live_t *lv)
{
    sn_incident_set_state(inc, "analyzing");
    /* A change event may have arrived after the incident opened (ingest and detection race). */
    sn_correlate_attach_changes(inc->eng, inc);
    step_ctx_t *sc = step_new(inc, node, lv);
    if (!sc)
        return;
    const sn_analyzer_ops_t *ops = lv->in->mod->plugin->ops;
    if (!ops->analyze) {
        do_plan(sc);
        return;
    }
    json_t *copy = json_deep_copy(inc->doc);
    sn_runtime_t *rid_rt = rid_enter(sc->inc);
    ops->analyze(lv->self, copy, analyzed, sc);
    rid_leave(rid_rt);
    json_decref(copy);
}

/* ---- approval ---- */

static int action_runnable(json_t *a)
{
    return json_is_true(json_object_get(a, "allowed"));
}

int sn_workflow_decide(sn_incident_t *inc, int approve, const char *actor, const char *reason)
{
    if (!inc->waiting)
        return SN_EINVAL;
    inc->waiting = 0;
    char ts[32];
    sn_format_time_ms(sn_now_ms(), ts);
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:I}", "ts", ts, "actor", actor, "decision",
                            approve ? "approved" : "rejected", "reason", reason ? reason : "",
                            "attempt", (json_int_t)attempt_of(inc));
    const char *rid = sn_runtime_request_id(inc->eng->rt);
    if (rid) {
        json_object_set_new(rec, "request_id", json_string(rid));
        json_object_set_new(inc->doc, "request_id", json_string(rid));
    }
    json_array_append(json_object_get(inc->doc, "approvals"), rec);
    sn_auditlog_append(inc->eng, actor, approve ? "approve" : "reject", inc->id, rec);
    json_decref(rec);
    if (approve) {
        size_t i;
        json_t *a;
        json_array_foreach(json_object_get(inc->doc, "plan"), i, a) if (action_runnable(a))
            json_object_set_new(a, "approved_by", json_string(actor));
    }
    sn_incident_event(inc, "approve", approve ? "approved" : "rejected", "by %s%s%s", actor,
                      reason && *reason ? ": " : "", reason ? reason : "");
    sn_workflow_advance(inc, inc->node, approve ? "approved" : "rejected");
    return 0;
}

static void run_approve(sn_incident_t *inc, int node)
{
    sn_engine_t *e = inc->eng;
    json_t *plan = json_object_get(inc->doc, "plan");
    size_t i, runnable = 0, need_human = 0;
    json_t *a;
    json_array_foreach(plan, i, a)
    {
        if (!action_runnable(a))
            continue;
        runnable++;
        sn_risk_t risk = SN_RISK_HIGH;
        sn_risk_parse(json_string_value(json_object_get(a, "risk")), &risk);
        int downtime = (int)json_integer_value(json_object_get(a, "downtime_s"));
        sn_live_t *lv = sn_engine_live(e, json_string_value(json_object_get(a, "executor")));
        int closed = lv && sn_breaker_closed(&lv->breaker, sn_mono_ms());
        if (!sn_policy_auto_approve(risk, downtime, (int)e->model->set.auto_approve_max_downtime_s,
                                    closed))
            need_human++;
    }
    if (runnable == 0) {
        sn_incident_event(inc, "approve", "nothing_to_approve", "no runnable action in the plan");
        sn_workflow_advance(inc, node, "failed");
        return;
    }
    const char *sil = silenced(inc);
    if (sil && need_human == 0) {
        /* A silence (maintenance window) means no remediation without a human. */
        need_human = runnable;
        sn_incident_event(inc, "approve", "silenced", "silence %s: no auto-approval", sil);
    }
    if (need_human == 0) {
        json_array_foreach(plan, i, a) if (action_runnable(a))
            json_object_set_new(a, "approved_by", json_string("policy"));
        char ts[32];
        sn_format_time_ms(sn_now_ms(), ts);
        json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:I}", "ts", ts, "actor", "policy", "decision",
                                "approved", "reason", "low risk, downtime within the limit",
                                "attempt", (json_int_t)attempt_of(inc));
        const char *rid = sn_runtime_request_id(inc->eng->rt);
        if (rid) {
            json_object_set_new(rec, "request_id", json_string(rid));
            json_object_set_new(inc->doc, "request_id", json_string(rid));
        }
        json_array_append(json_object_get(inc->doc, "approvals"), rec);
        sn_auditlog_append(e, "policy", "approve", inc->id, rec);
        json_decref(rec);
        sn_incident_event(inc, "approve", "approved", "auto: %zu low-risk action%s", runnable,
                          runnable == 1 ? "" : "s");
        sn_workflow_advance(inc, node, "approved");
        return;
    }
    inc->waiting = 1;
    sn_incident_set_state(inc, "awaiting_approval");
    sn_incident_event(inc, "approve", "approval_needed",
                      "%zu action%s need a human (risk, downtime or open circuit)", need_human,
                      need_human == 1 ? "" : "s");
    sn_metric(e->rt, SN_METRIC_COUNTER, "approvals_requested_total", "Approvals requested", NULL,
              1);
    sn_workflow_notify(inc, "approval_needed");
    sn_workflow_checkpoint(inc, NULL, 0);
}

/* ---- execution ---- */

typedef struct exec_ctx {
    sn_incident_t *inc;
    int node;
    sn_live_t *lv;
    size_t idx;    /* plan index */
    json_t *exrec; /* the execution record being written (borrowed from the doc) */
    int failed;
    int rollback_pos; /* verify/rollback: position in the list below */
    json_t *list;     /* executions to verify or roll back */
    int verify_failed;
} exec_ctx_t;

static void exec_next(exec_ctx_t *x);

static json_t *find_execution(sn_incident_t *inc, const char *key)
{
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(inc->doc, "executions"), i, r)
    {
        const char *k = json_string_value(json_object_get(r, "key"));
        if (k && strcmp(k, key) == 0)
            return r;
    }
    return NULL;
}

static void action_of(json_t *a, json_t *exrec, sn_incident_t *inc, int dry, sn_action_t *out)
{
    memset(out, 0, sizeof(*out));
    out->struct_size = sizeof(*out);
    out->incident = inc->id;
    out->verb = json_string_value(json_object_get(a, "verb"));
    out->target = json_string_value(json_object_get(a, "target"));
    out->params = json_object_get(a, "params");
    out->idempotency_key = json_string_value(json_object_get(exrec, "key"));
    out->dry_run = dry;
}

static void exec_record(exec_ctx_t *x, const char *state, json_t *result)
{
    char ts[32];
    sn_format_time_ms(sn_now_ms(), ts);
    json_object_set_new(x->exrec, "state", json_string(state));
    json_object_set_new(x->exrec, "finished_at", json_string(ts));
    if (result)
        json_object_set(x->exrec, "result", result);
}

static void exec_step_saved(sn_incident_t *inc);

static void exec_outcome(void *arg, int status, json_t *result)
{
    exec_ctx_t *x = arg;
    sn_incident_t *inc = x->inc;
    sn_engine_t *e = inc->eng;
    const char *state = status == 0 ? "done" : "failed";
    exec_record(x, state, result);
    sn_breaker_record(&x->lv->breaker, status != 0, sn_mono_ms());
    json_t *detail = json_deep_copy(x->exrec);
    json_object_set_new(detail, "status", json_integer(status));
    sn_auditlog_append(e, "sentinel", "execution", inc->id, detail);
    json_decref(detail);
    sn_incident_event(inc, x->lv->in->name, status == 0 ? "executed" : "execution_failed",
                      "%s %s (%s)", json_string_value(json_object_get(x->exrec, "verb")),
                      json_string_value(json_object_get(x->exrec, "target")),
                      json_string_value(json_object_get(x->exrec, "key")));
    sn_metric(e->rt, SN_METRIC_COUNTER,
              status == 0 ? "executions_total" : "execution_failures_total",
              "Executor actions by outcome", NULL, 1);
    if (status != 0)
        x->failed = 1;
    x->idx++;
    /* The outcome is durable before the next action starts. */
    sn_workflow_checkpoint(inc, exec_step_saved, 0);
}

/* Checkpoint callbacks carry only the incident; the step context rides on it. */
static exec_ctx_t *pending_exec(sn_incident_t *inc, exec_ctx_t *set, int clear)
{
    if (clear)
        inc->step_ctx = NULL;
    else if (set)
        inc->step_ctx = set;
    return inc->step_ctx;
}

static void exec_step_saved(sn_incident_t *inc)
{
    exec_ctx_t *x = pending_exec(inc, NULL, 0);
    if (x)
        exec_next(x);
}

static void execute_leased(sn_incident_t *inc, int ok);

/* The intent is recorded; make sure this instance still owns the incident, then act. */
static void intent_saved(sn_incident_t *inc)
{
    inc->busy = 1;
    sn_lease_before_acting(inc, execute_leased);
}

static void execute_leased(sn_incident_t *inc, int ok)
{
    (void)ok; /* a store hiccup does not stop us; only a lease held elsewhere does */
    if (inc->lost) {
        exec_ctx_t *x = pending_exec(inc, NULL, 0);
        pending_exec(inc, NULL, 1);
        inc->busy = 0;
        if (x) {
            json_decref(x->list);
            free(x);
        }
        return; /* the owner resumes from the intent and verifies instead of re-running */
    }
    exec_ctx_t *x = pending_exec(inc, NULL, 0);
    if (!x)
        return;
    json_t *a = json_array_get(json_object_get(inc->doc, "plan"), x->idx);
    sn_action_t act;
    action_of(a, x->exrec, inc, 0, &act);
    const sn_executor_ops_t *ops = x->lv->in->mod->plugin->ops;
    inc->busy = 1;
    sn_runtime_t *rid_rt = rid_enter(x->inc);
    ops->execute(x->lv->self, &act, exec_outcome, x);
    rid_leave(rid_rt);
}

static void snapshot_done(void *arg, int status, json_t *result)
{
    exec_ctx_t *x = arg;
    sn_incident_t *inc = x->inc;
    if (status != 0) {
        /* Without a snapshot there is no rollback: do not act. The executor's failure counts
         * towards its breaker (bad credentials fail here, before any execute). */
        sn_breaker_record(&x->lv->breaker, true, sn_mono_ms());
        exec_record(x, "failed", result);
        const char *why = json_string_value(json_object_get(result, "error"));
        char msg[300];
        snprintf(msg, sizeof(msg), "snapshot failed (%d)%s%s", status, why ? ": " : "",
                 why ? why : "");
        json_object_set_new(x->exrec, "error", json_string(msg));
        x->failed = 1;
        x->idx++;
        sn_workflow_checkpoint(inc, exec_step_saved, 0);
        return;
    }
    json_object_set(x->exrec, "snapshot", result ? result : json_null());
    sn_auditlog_append(inc->eng, "sentinel", "execution_intent", inc->id, x->exrec);
    sn_workflow_checkpoint(inc, intent_saved, 0);
}

/* After a crash between intent and outcome: if verify says the change holds, record it as
 * done; if not, the change never landed, so run it now with the same idempotency key, which
 * lets the executor recognise a call it did receive. Nothing is ever run without this check. */
static void resume_verified(void *arg, int status, json_t *result)
{
    exec_ctx_t *x = arg;
    sn_incident_t *inc = x->inc;
    const char *key = json_string_value(json_object_get(x->exrec, "key"));
    if (status == 0) {
        exec_record(x, "done", result);
        json_object_set_new(x->exrec, "resumed", json_string("verified after restart"));
        sn_auditlog_append(inc->eng, "sentinel", "execution_resumed", inc->id, x->exrec);
        sn_incident_event(inc, x->lv->in->name, "resumed",
                          "intent without outcome for %s: verified, not re-run", key);
        x->idx++;
        sn_workflow_checkpoint(inc, exec_step_saved, 0);
        return;
    }
    json_object_set_new(x->exrec, "resumed",
                        json_string("not applied before restart: executed with the same key"));
    sn_auditlog_append(inc->eng, "sentinel", "execution_resumed", inc->id, x->exrec);
    sn_incident_event(inc, x->lv->in->name, "resumed",
                      "intent without outcome for %s: change not found, executing it once with "
                      "the same idempotency key",
                      key);
    intent_saved(inc);
}

static void exec_finish(exec_ctx_t *x);

static void exec_next(exec_ctx_t *x)
{
    sn_incident_t *inc = x->inc;
    sn_engine_t *e = inc->eng;
    json_t *plan = json_object_get(inc->doc, "plan");
    const sn_executor_ops_t *ops = x->lv->in->mod->plugin->ops;
    for (; x->idx < json_array_size(plan) && !x->failed; x->idx++) {
        json_t *a = json_array_get(plan, x->idx);
        const char *ex = json_string_value(json_object_get(a, "executor"));
        if (!ex || strcmp(ex, x->lv->in->name) != 0 || !action_runnable(a))
            continue;
        char key[128];
        snprintf(key, sizeof(key), "%s:%zu:%lld", inc->id, x->idx, (long long)attempt_of(inc));
        json_t *prior = find_execution(inc, key);
        if (prior) {
            const char *st = json_string_value(json_object_get(prior, "state"));
            if (strcmp(st, "intent") == 0) {
                /* Crash between intent and outcome: find out, never repeat blindly. */
                x->exrec = prior;
                sn_action_t act;
                action_of(a, prior, inc, 0, &act);
                pending_exec(inc, x, 0);
                sn_runtime_t *rid_rt = rid_enter(x->inc);
                ops->verify(x->lv->self, &act, resume_verified, x);
                rid_leave(rid_rt);
                return;
            }
            if (strcmp(st, "failed") == 0)
                x->failed = 1;
            continue; /* already done in this attempt */
        }
        char ts[32];
        sn_format_time_ms(sn_now_ms(), ts);
        json_t *rec =
            json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:s}", "key", key, "executor", ex, "verb",
                      json_string_value(json_object_get(a, "verb")), "target",
                      json_string_value(json_object_get(a, "target")), "step", (json_int_t)x->idx,
                      "attempt", (json_int_t)attempt_of(inc), "state", "pending", "started_at", ts);
        json_array_append_new(json_object_get(inc->doc, "executions"), rec);
        x->exrec = rec;
        char canon[600], why[160];
        const char *target = json_string_value(json_object_get(a, "target"));
        /* Safety gates, in the core so no executor can skip them. */
        const char *deny = NULL;
        if (sn_target_canon(target, canon, sizeof(canon), why, sizeof(why)) != 0 ||
            !sn_whitelist_match(x->lv->in->policy.allow, canon))
            deny = "target not in the allow list";
        else if (!json_object_get(a, "approved_by"))
            deny = "not approved";
        else if (strcmp(json_string_value(json_object_get(a, "approved_by")), "policy") == 0 &&
                 !sn_breaker_admit(&x->lv->breaker, sn_mono_ms()))
            deny = "circuit breaker open: a human must approve";
        if (deny) {
            exec_record(x, "denied", NULL);
            json_object_set_new(rec, "error", json_string(deny));
            sn_auditlog_append(e, "sentinel", "execution_denied", inc->id, rec);
            sn_incident_event(inc, x->lv->in->name, "denied", "%s: %s", target, deny);
            x->failed = 1;
            break;
        }
        if (e->model->set.dry_run || x->lv->in->policy.dry_run) {
            exec_record(x, "dry_run", NULL);
            json_object_set_new(
                rec, "would",
                json_sprintf("%s %s", json_string_value(json_object_get(a, "verb")), target));
            sn_auditlog_append(e, "sentinel", "execution_dry_run", inc->id, rec);
            sn_incident_event(inc, x->lv->in->name, "dry_run", "would %s %s",
                              json_string_value(json_object_get(a, "verb")), target);
            continue;
        }
        int64_t now = sn_mono_ms();
        if (!sn_bucket_take(&x->lv->per_minute, now) || !sn_bucket_take(&x->lv->per_hour, now)) {
            exec_record(x, "denied", NULL);
            json_object_set_new(rec, "error", json_string("rate limit reached"));
            sn_auditlog_append(e, "sentinel", "execution_denied", inc->id, rec);
            sn_incident_event(inc, x->lv->in->name, "denied", "%s: rate limit reached", target);
            sn_metric(e->rt, SN_METRIC_COUNTER, "executions_rate_limited_total",
                      "Executions refused by rate limits", NULL, 1);
            x->failed = 1;
            break;
        }
        sn_incident_set_state(inc, "executing");
        sn_workflow_notify(inc, "executing");
        json_object_set_new(rec, "state", json_string("intent"));
        sn_action_t act;
        action_of(a, rec, inc, 0, &act);
        pending_exec(inc, x, 0);
        if (ops->snapshot) {
            sn_runtime_t *rid_rt = rid_enter(x->inc);
            ops->snapshot(x->lv->self, &act, snapshot_done, x);
            rid_leave(rid_rt);
        } else {
            snapshot_done(x, 0, NULL);
        }
        return;
    }
    exec_finish(x);
}

static void start_rollback(exec_ctx_t *x, const char *why);

static void exec_finish(exec_ctx_t *x)
{
    sn_incident_t *inc = x->inc;
    if (x->failed && !x->list && x->lv->in->policy.rollback_on_failure) {
        /* A plan stops at its first failure; what already ran of this attempt is undone, last
         * first, so the system is left as it was found. */
        json_t *list = json_array();
        int64_t attempt = attempt_of(inc);
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(inc->doc, "executions"), i, r)
        {
            if (json_integer_value(json_object_get(r, "attempt")) == attempt &&
                strcmp(json_string_value(json_object_get(r, "state")), "done") == 0)
                json_array_append(list, r);
        }
        if (json_array_size(list) > 0) {
            x->list = list;
            start_rollback(x, "an action of the plan failed");
            return;
        }
        json_decref(list);
    }
    int node = x->node;
    int failed = x->failed;
    pending_exec(inc, NULL, 1);
    free(x);
    inc->busy = 0;
    if (!failed)
        inc->executed_watermark = atomic_load(&inc->eng->watermark);
    sn_workflow_advance(inc, node, failed ? "failed" : "ok");
}

static void run_executor(sn_incident_t *inc, int node, sn_live_t *lv)
{
    exec_ctx_t *x = calloc(1, sizeof(*x));
    if (!x)
        return;
    x->inc = inc;
    x->node = node;
    x->lv = lv;
    inc->busy = 1;
    exec_next(x);
}

/* ---- verification and rollback ---- */

static void rollback_next(exec_ctx_t *x);

static void verify_finish(exec_ctx_t *x, const char *outcome)
{
    sn_incident_t *inc = x->inc;
    int node = x->node;
    json_decref(x->list);
    pending_exec(inc, NULL, 1);
    free(x);
    inc->busy = 0;
    sn_workflow_advance(inc, node, outcome);
}

static void rollback_saved(sn_incident_t *inc)
{
    exec_ctx_t *x = pending_exec(inc, NULL, 0);
    if (x)
        rollback_next(x);
}

static void rolled_back(void *arg, int status, json_t *result)
{
    exec_ctx_t *x = arg;
    sn_incident_t *inc = x->inc;
    json_t *rec = json_array_get(x->list, (size_t)x->rollback_pos);
    char ts[32];
    sn_format_time_ms(sn_now_ms(), ts);
    json_object_set_new(rec, "state", json_string(status == 0 ? "rolled_back" : "rollback_failed"));
    json_object_set_new(rec, "rolled_back_at", json_string(ts));
    if (result)
        json_object_set(rec, "rollback_result", result);
    sn_auditlog_append(inc->eng, "sentinel", status == 0 ? "rollback" : "rollback_failed", inc->id,
                       rec);
    sn_incident_event(inc, "verify", status == 0 ? "rolled_back" : "rollback_failed",
                      "%s %s restored from snapshot",
                      json_string_value(json_object_get(rec, "verb")),
                      json_string_value(json_object_get(rec, "target")));
    sn_metric(inc->eng->rt, SN_METRIC_COUNTER, "rollbacks_total", "Rollbacks by the core", NULL, 1);
    x->rollback_pos--;
    sn_workflow_checkpoint(inc, rollback_saved, 0);
}

/* Undo, newest first, everything this attempt changed. */
static void rollback_next(exec_ctx_t *x)
{
    sn_incident_t *inc = x->inc;
    while (x->rollback_pos >= 0) {
        json_t *rec = json_array_get(x->list, (size_t)x->rollback_pos);
        if (strcmp(json_string_value(json_object_get(rec, "state")), "done") != 0) {
            x->rollback_pos--;
            continue;
        }
        sn_live_t *lv =
            sn_engine_live(inc->eng, json_string_value(json_object_get(rec, "executor")));
        const sn_executor_ops_t *ops = lv ? lv->in->mod->plugin->ops : NULL;
        if (!ops || !ops->rollback) {
            json_object_set_new(rec, "state", json_string("rollback_unsupported"));
            x->rollback_pos--;
            continue;
        }
        json_t *a = json_array_get(json_object_get(inc->doc, "plan"),
                                   (size_t)json_integer_value(json_object_get(rec, "step")));
        sn_action_t act;
        action_of(a, rec, inc, 0, &act);
        x->lv = lv;
        sn_runtime_t *rid_rt = rid_enter(x->inc);
        ops->rollback(lv->self, &act, json_object_get(rec, "snapshot"), rolled_back, x);
        rid_leave(rid_rt);
        return;
    }
    sn_workflow_notify(inc, "rolled_back");
    verify_finish(x, "failed");
}

static void start_rollback(exec_ctx_t *x, const char *why)
{
    sn_incident_t *inc = x->inc;
    sn_incident_set_state(inc, "rolling_back");
    sn_incident_event(inc, node_name(inc, x->node),
                      strstr(why, "failed") ? "rolling_back" : "verification_failed",
                      "%s: rolling back", why);
    x->rollback_pos = (int)json_array_size(x->list) - 1;
    rollback_next(x);
}

static void verify_next(exec_ctx_t *x);

static void verified(void *arg, int status, json_t *result)
{
    exec_ctx_t *x = arg;
    json_t *rec = json_array_get(x->list, x->idx);
    json_object_set_new(rec, "verified", json_boolean(status == 0));
    if (result)
        json_object_set(rec, "verify_result", result);
    if (status != 0)
        x->verify_failed = 1;
    x->idx++;
    verify_next(x);
}

static void verify_next(exec_ctx_t *x)
{
    sn_incident_t *inc = x->inc;
    while (x->idx < json_array_size(x->list)) {
        json_t *rec = json_array_get(x->list, x->idx);
        sn_live_t *lv =
            sn_engine_live(inc->eng, json_string_value(json_object_get(rec, "executor")));
        const sn_executor_ops_t *ops = lv ? lv->in->mod->plugin->ops : NULL;
        if (!ops || !ops->verify ||
            strcmp(json_string_value(json_object_get(rec, "state")), "done")) {
            x->idx++;
            continue;
        }
        json_t *a = json_array_get(json_object_get(inc->doc, "plan"),
                                   (size_t)json_integer_value(json_object_get(rec, "step")));
        sn_action_t act;
        action_of(a, rec, inc, 0, &act);
        sn_runtime_t *rid_rt = rid_enter(x->inc);
        ops->verify(lv->self, &act, verified, x);
        rid_leave(rid_rt);
        return;
    }
    if (x->verify_failed) {
        start_rollback(x, "an action did not converge");
        return;
    }
    if (inc->escalated_signal) {
        inc->escalated_signal = 0;
        start_rollback(x, "the signal got worse after the action (escalation)");
        return;
    }
    sn_incident_event(inc, "verify", "verified", "every action of attempt %lld holds",
                      (long long)attempt_of(inc));
    verify_finish(x, "ok");
}

static void run_verify(sn_incident_t *inc, int node)
{
    sn_incident_set_state(inc, "verifying");
    exec_ctx_t *x = calloc(1, sizeof(*x));
    if (!x)
        return;
    x->inc = inc;
    x->node = node;
    x->list = json_array();
    int64_t attempt = attempt_of(inc);
    size_t i;
    json_t *r;
    int any = 0, done = 0;
    json_array_foreach(json_object_get(inc->doc, "executions"), i, r)
    {
        if (json_integer_value(json_object_get(r, "attempt")) != attempt)
            continue;
        json_array_append(x->list, r);
        const char *st = json_string_value(json_object_get(r, "state"));
        done |= strcmp(st, "done") == 0;
        if (strcmp(st, "done") == 0 || strcmp(st, "dry_run") == 0)
            any = 1;
    }
    if (any && !done) {
        /* Nothing ran, so nothing can be verified: "resolved" would be a lie. */
        json_decref(x->list);
        free(x);
        sn_incident_event(inc, "verify", "dry_run_only",
                          "attempt %lld was a dry run: nothing executed, nothing to verify",
                          (long long)attempt);
        close_incident(inc, "closed", "closed",
                       "dry run: the plan is described above and nothing was executed; a human "
                       "must act");
        return;
    }
    inc->busy = 1;
    pending_exec(inc, x, 0);
    if (!any) {
        sn_incident_event(inc, "verify", "nothing_to_verify", "no action ran in attempt %lld",
                          (long long)attempt);
        verify_finish(x, "failed");
        return;
    }
    verify_next(x);
}

/* ---- terminal nodes and notifiers ---- */

typedef struct mem_ctx {
    sn_engine_t *e;
    char id[37];
    json_t *payload;
} mem_ctx_t;

static void mem_stored(void *arg, int status, json_t *result)
{
    (void)result;
    mem_ctx_t *m = arg;
    if (status != 0)
        sn_log(SN_LOG_WARN, "resolve", m->id, NULL, "could not remember incident (%d)", status);
    json_decref(m->payload);
    free(m);
}

static void mem_embedded(void *arg, int status, json_t *result)
{
    mem_ctx_t *m = arg;
    json_t *vec = json_object_get(result, "vector");
    sn_live_t *st = m->e->vector;
    if (status != 0 || !json_is_array(vec) || !st) {
        mem_stored(m, status ? status : SN_EINVAL, NULL);
        return;
    }
    size_t dim = json_array_size(vec);
    float *v = calloc(dim ? dim : 1, sizeof(float));
    for (size_t i = 0; i < dim; i++)
        v[i] = (float)json_number_value(json_array_get(vec, i));
    const sn_store_ops_t *ops = st->in->mod->plugin->ops;
    ops->vector_upsert(st->self, "incidents", m->id, v, dim, m->payload, mem_stored, m);
    free(v);
}

/* Resolved incidents are remembered with what fixed them, for similarity later. */
static void remember(sn_incident_t *inc)
{
    sn_engine_t *e = inc->eng;
    if (!e->vector || !e->embedder)
        return;
    const sn_store_ops_t *sops = e->vector->in->mod->plugin->ops;
    if (!(sops->caps & SN_STORE_VECTOR))
        return;
    mem_ctx_t *m = calloc(1, sizeof(*m));
    if (!m)
        return;
    m->e = e;
    snprintf(m->id, sizeof(m->id), "%s", inc->id);
    m->payload = json_pack("{s:O,s:O,s:O,s:O,s:s,s:I}", "title", json_object_get(inc->doc, "title"),
                           "services", json_object_get(inc->doc, "services"), "plan",
                           json_object_get(inc->doc, "plan"), "fingerprint",
                           json_object_get(inc->doc, "fingerprint"), "outcome", "resolved", "loops",
                           json_integer_value(json_object_get(inc->doc, "loop_count")));
    const sn_embedder_ops_t *eops = e->embedder->in->mod->plugin->ops;
    /* The same text correlate embeds, so remembered and open incidents compare. */
    char *text = sn_correlate_describe(inc);
    eops->embed(e->embedder->self, text ? text : "", mem_embedded, m);
    free(text);
}

void sn_workflow_run(sn_incident_t *inc)
{
    if (inc->node < 0 || !inc->open || inc->waiting || inc->lost)
        return;
    if (json_is_true(json_object_get(inc->doc, "alerts_resolved"))) {
        /* Its alerts resolved at the source while a step was in flight. */
        close_incident(inc, "resolved", "resolved",
                       "every alert of the incident resolved at the source");
        return;
    }
    const sn_node_t *n = &graph(inc)->nodes[inc->node];
    int node = inc->node;
    switch (n->type) {
    case SN_NODE_CORRELATE:
        sn_workflow_advance(inc, node, "ok");
        return;
    case SN_NODE_APPROVE:
        run_approve(inc, node);
        return;
    case SN_NODE_VERIFY:
        run_verify(inc, node);
        return;
    case SN_NODE_RESOLVE:
        remember(inc);
        close_incident(inc, "resolved", "resolved", "remediation verified");
        return;
    case SN_NODE_ESCALATE:
        close_incident(inc, "escalated", "escalated", "handed to humans");
        return;
    case SN_NODE_INSTANCE:
        break;
    }
    sn_live_t *lv = node_live(inc, node);
    if (!lv || !lv->started) {
        sn_incident_event(inc, n->name, "node_unavailable", "instance not running");
        sn_workflow_advance(inc, node, "failed");
        return;
    }
    switch (lv->in->kind) {
    case SN_ANALYZER:
        run_analyzer(inc, node, lv);
        return;
    case SN_EXECUTOR:
        run_executor(inc, node, lv);
        return;
    case SN_NOTIFIER:
        /* Through the outbox: recorded before it is sent, retried until it is; the incident
         * does not wait for a receiver that may be down. */
        if (silenced(inc)) {
            sn_incident_event(inc, n->name, "silenced", "not sent: silence %s", silenced(inc));
        } else {
            sn_outbox_add(inc->eng, inc, lv->in->name, sn_incident_state(inc));
            sn_incident_event(inc, n->name, "notified", "%s queued", sn_incident_state(inc));
        }
        sn_workflow_advance(inc, node, "ok");
        return;
    default:
        sn_workflow_advance(inc, node, "ok");
        return;
    }
}

/* ---- resume after a restart ---- */

static void resume_loaded(void *arg, int status, json_t *result)
{
    if (status == 0)
        sn_workflow_adopt(arg, result);
}

sn_incident_t *sn_workflow_adopt(sn_engine_t *e, json_t *result)
{
    json_t *doc = json_object_get(result, "doc");
    if (!json_is_object(doc))
        return NULL;
    const char *id = json_string_value(json_object_get(doc, "id"));
    if (!id || sn_incident_find(e, id))
        return NULL;
    sn_incident_t *inc = sn_incident_new(e, 0);
    if (!inc)
        return NULL;
    snprintf(inc->id, sizeof(inc->id), "%s", id);
    json_decref(inc->doc);
    inc->doc = json_deep_copy(doc);
    inc->version = json_integer_value(json_object_get(result, "version"));
    const char *state = sn_incident_state(inc);
    const char *cursor = json_string_value(json_object_get(doc, "cursor"));
    inc->node = cursor ? sn_graph_node(e->model->graph, cursor) : -1;
    inc->gathering = 0;
    inc->open = state && !is_closed_state(state);
    size_t i;
    json_t *a;
    inc->first_ts = INT64_MAX;
    inc->last_ts = 0;
    json_array_foreach(json_object_get(doc, "anomalies"), i, a)
    {
        int64_t ts = json_integer_value(json_object_get(a, "ts"));
        if (ts < inc->first_ts)
            inc->first_ts = ts;
        if (ts > inc->last_ts)
            inc->last_ts = ts;
    }
    if (inc->first_ts == INT64_MAX)
        inc->first_ts = 0;
    sn_incident_event(inc, cursor ? cursor : "", "resumed", "restart: continuing at %s",
                      cursor ? cursor : "(none)");
    sn_metric(e->rt, SN_METRIC_COUNTER, "incidents_resumed_total",
              "Incidents resumed at start or taken over from another instance", NULL, 1);
    if (!inc->open || inc->node < 0)
        return inc;
    if (state && strcmp(state, "awaiting_approval") == 0) {
        inc->waiting = 1;
        return inc;
    }
    sn_workflow_run(inc);
    return inc;
}

static void resume_listed(void *arg, int status, json_t *result)
{
    sn_engine_t *e = arg;
    if (status != 0) {
        sn_log(SN_LOG_ERROR, "workflow", NULL, NULL, "cannot list open incidents (%d)", status);
        return;
    }
    const sn_store_ops_t *ops = e->state->in->mod->plugin->ops;
    size_t i;
    json_t *id;
    json_array_foreach(json_object_get(result, "ids"), i, id)
    {
        const char *sid = json_string_value(id);
        if (sn_outbox_is(sid))
            sn_outbox_resume(e, sid);
        else if (sn_silence_is(sid))
            sn_silence_resume(e, sid);
        else if (sn_lease_enabled(e))
            sn_lease_take(e, sid); /* another instance may own it */
        else
            ops->state_load(e->state->self, sid, resume_loaded, e);
    }
}

void sn_workflow_resume_all(sn_engine_t *e)
{
    if (!e->state)
        return;
    const sn_store_ops_t *ops = e->state->in->mod->plugin->ops;
    ops->state_list_open(e->state->self, resume_listed, e);
}
