/**
 * @file check_engine.c
 * The whole engine driven as a library (engine.c with correlate.c, workflow.c, incident.c and
 * auditlog.c behind it): a real configuration in a temp dir loads the real plugins from the
 * build tree (sqlite store, zscore detector, stats + runbook analyzers, mock executor, log
 * notifier), the test feeds JSON lines through sn_engine_ingest, runs the loop in short slices
 * and asserts on the incident documents and on the mock executor's journal.
 */

#include "engine-internal.h"
#include "engine.h"
#include "ingest.h"

#include <check.h>
#include <event2/event.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T0_MS 1795600800000LL /* 2026-11-25T10:00:00Z: the scenarios' deploy */
#define STEP_MS 10000LL
#define WAIT_MS 8000 /* per condition; every test stays well under Check's timeout */

/* ---- a growing text buffer ---------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) SN_PRINTF(2, 3);
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(need, 0);
    if (b->n + (size_t)need + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + (size_t)need + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        ck_assert_ptr_nonnull(b->p);
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

/* ---- synthetic telemetry ------------------------------------------------------------------ */

/* Deterministic noise in [-1, 1]: the same input every run. */
static double noise(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (double)(*s >> 8) / 8388608.0 - 1.0;
}

static void point(sbuf_t *b, int64_t ts, const char *metric, const char *svc, double v)
{
    sb_printf(b,
              "{\"ts\":%lld,\"metric\":\"%s\",\"value\":%.3f,\"labels\":{\"service\":\"%s\","
              "\"env\":\"prod\"}}\n",
              (long long)ts, metric, v, svc);
}

/*
 * A deploy of checkout at T0; checkout's latency jumps five-fold a minute later, frontend's at
 * +90 s and cart's at +120 s (a cascade from one cause); search stays normal throughout. An hour
 * of history comes first so the detector has a baseline. With @p late_spike, billing (normal
 * until then) spikes two hours later: an unrelated trouble far outside the correlation window.
 */
static void gen_cascade(sbuf_t *b, int late_spike)
{
    static const char *const svcs[] = {"checkout", "frontend", "cart", "search"};
    static const int64_t onset[] = {60000, 90000, 120000, -1};
    uint32_t seed = 20261125;
    for (int64_t t = T0_MS - 3600000; t < T0_MS + 600000; t += STEP_MS) {
        if (t == T0_MS)
            sb_printf(b,
                      "{\"ts\":%lld,\"change\":\"deploy\",\"labels\":{\"service\":\"checkout\","
                      "\"version\":\"v2.3.1\"}}\n",
                      (long long)t);
        for (int i = 0; i < 4; i++) {
            double v = 100.0 + 2.0 * noise(&seed);
            if (onset[i] >= 0 && t >= T0_MS + onset[i] && t < T0_MS + 480000)
                v *= 5;
            point(b, t, "http_p99_latency_ms", svcs[i], v);
        }
    }
    if (!late_spike)
        return;
    int64_t spike = T0_MS + 2 * 3600000;
    for (int64_t t = spike - 900000; t < spike + 120000; t += STEP_MS) {
        double v = 50.0 + 1.0 * noise(&seed);
        if (t >= spike && t < spike + 60000)
            v *= 8;
        point(b, t, "http_p99_latency_ms", "billing", v);
    }
}

/* Resident memory of @p svc grows steadily from @p onset on, after 30 minutes of normal. */
static void gen_memory(sbuf_t *b, const char *svc, int64_t onset)
{
    uint32_t seed = 7;
    for (int64_t t = onset - 1800000; t < onset + 600000; t += STEP_MS) {
        double mem = 512e6 + 2e6 * noise(&seed);
        if (t >= onset)
            mem += (double)(t - onset) / 1000.0 * 0.9e6;
        point(b, t, "process_resident_memory_bytes", svc, mem);
    }
}

static void load_scenario(sbuf_t *b, const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/etc/scenarios/%s.jsonl", SN_SOURCE_DIR, name);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        sb_printf(b, "%.*s", (int)n, chunk);
    fclose(f);
}

/* ---- the engine under test ---------------------------------------------------------------- */

typedef struct conf_opts {
    const char *extra_core;  /* more [sentinel] keys */
    const char *extra_mock;  /* more [executor:mock] keys */
    const char *deploy_dest; /* where the deploy rule points (default deployment/shop) */
    int reject_edge;         /* add "approve -> escalate [on=rejected]" */
    int verify_max;          /* max= of the verify -> rca loop-back (default 2) */
} conf_opts_t;

typedef struct world {
    char dir[256];
    char conf[512];
    char journal[512];
    sn_engine_t *e;
    int stopped;
} world_t;

static void write_conf(world_t *w, const conf_opts_t *o)
{
    FILE *f = fopen(w->conf, "w");
    ck_assert_ptr_nonnull(f);
    /* No vector store or embedder: similarity deduplication would make which incidents exist
     * depend on the order the stores answer in. */
    fprintf(f,
            "[sentinel]\n"
            "state = local\n"
            "group_wait = 60\n"
            "group_wait_wall = 2\n"
            "drain_timeout = 5\n"
            "log_level = error\n"
            "%s\n"
            "\n"
            "[store:local]\n"
            "plugin = sqlite\n"
            "path = %s/sentinel.db\n"
            "\n"
            "[input:events]\n"
            "plugin = http\n"
            "\n"
            "[detector:latency]\n"
            "plugin = zscore\n"
            "threshold = 4\n"
            "\n"
            "[analyzer:rca]\n"
            "plugin = stats\n"
            "\n"
            "[analyzer:runbook]\n"
            "plugin = runbook\n"
            "rule = cause~deploy -> mock:rollout_restart %s/{service}\n"
            "rule = cause~memory -> mock:scale_deployment deployment/shop/{service} replicas=6\n"
            "\n"
            "[executor:mock]\n"
            "plugin = mock\n"
            "allow = deployment/shop/*, pod/shop/*\n"
            "journal = %s\n"
            "max_per_hour = 60\n"
            "max_per_minute = 60\n"
            "%s\n"
            "\n"
            "[notifier:log]\n"
            "plugin = log\n"
            "\n"
            "[pipeline]\n"
            "edge = events -> latency\n"
            "edge = latency -> correlate\n"
            "edge = correlate -> rca -> runbook -> approve -> mock -> verify\n"
            "%s"
            "edge = verify -> rca [on=failed max=%d]\n"
            "edge = verify -> resolve [on=ok]\n",
            o->extra_core ? o->extra_core : "", w->dir,
            o->deploy_dest ? o->deploy_dest : "deployment/shop", w->journal,
            o->extra_mock ? o->extra_mock : "",
            o->reject_edge ? "edge = approve -> escalate [on=rejected]\n" : "",
            o->verify_max ? o->verify_max : 2);
    ck_assert_int_eq(fclose(f), 0);
}

/* A temp dir with the configuration, no engine yet. */
static void world_prepare(world_t *w, const conf_opts_t *o)
{
    static const conf_opts_t defaults = {.reject_edge = 1};
    memset(w, 0, sizeof(*w));
    snprintf(w->dir, sizeof(w->dir), "/tmp/sn-check-engine-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(w->dir));
    snprintf(w->conf, sizeof(w->conf), "%s/sentinel.conf", w->dir);
    snprintf(w->journal, sizeof(w->journal), "%s/journal.jsonl", w->dir);
    write_conf(w, o ? o : &defaults);
}

static sn_engine_t *engine_new(world_t *w, sn_diag_t *d)
{
    sn_engine_opts_t opts = {
        .config_path = w->conf, .plugin_dir = SN_PLUGIN_DIR_BUILD, .no_http = 1};
    return sn_engine_new(&opts, d);
}

static void world_start(world_t *w, const conf_opts_t *o)
{
    world_prepare(w, o);
    sn_diag_t d;
    sn_diag_init(&d);
    w->e = engine_new(w, &d);
    ck_assert_msg(w->e != NULL && d.n == 0, "sn_engine_new: %s", d.n ? d.msgs[0] : "(no message)");
    ck_assert_msg(sn_engine_check(w->e, &d) == 0 && d.n == 0, "sn_engine_check: %s",
                  d.n ? d.msgs[0] : "(no message)");
    sn_diag_free(&d);
    ck_assert_int_eq(sn_engine_start(w->e), 0);
}

static struct event_base *base_of(world_t *w)
{
    return sn_runtime_base(sn_engine_runtime(w->e));
}

static void run_ms(world_t *w, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base_of(w), &tv);
    event_base_dispatch(base_of(w));
}

static void ingest(world_t *w, const sbuf_t *b)
{
    sn_ingest_stats_t st;
    sn_diag_t errs;
    sn_diag_init(&errs);
    ck_assert_int_eq(sn_engine_ingest(w->e, b->p, b->n, "check_engine", &st, &errs), 0);
    ck_assert_msg(st.rejected == 0, "%zu lines refused: %s", st.rejected,
                  errs.n ? errs.msgs[0] : "");
    ck_assert_uint_gt(st.accepted, 0);
    sn_diag_free(&errs);
}

static int is_closed(const char *state)
{
    return state && (strcmp(state, "resolved") == 0 || strcmp(state, "escalated") == 0 ||
                     strcmp(state, "rejected") == 0 || strcmp(state, "closed") == 0);
}

static int has_string(const json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i,
                       v) if (json_is_string(v) && strcmp(json_string_value(v), s) == 0) return 1;
    return 0;
}

/* The full document of the first incident touching @p svc whose state is @p state (or, with
 * state "closed*", any closed state; NULL: any). Ownership: caller decrefs. */
static json_t *incident_of(world_t *w, const char *svc, const char *state)
{
    json_t *list = sn_engine_incidents(w->e, NULL);
    json_t *found = NULL;
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(list, "incidents"), i, s)
    {
        const char *st = json_string_value(json_object_get(s, "state"));
        if (svc && !has_string(json_object_get(s, "services"), svc))
            continue;
        if (state && strcmp(state, "closed*") == 0 ? !is_closed(st)
                                                   : state && strcmp(state, st) != 0)
            continue;
        found = sn_engine_incident(w->e, json_string_value(json_object_get(s, "id")));
        break;
    }
    json_decref(list);
    return found;
}

/* Run the loop until an incident of @p svc is in @p state (see incident_of) or WAIT_MS pass. */
static json_t *wait_incident(world_t *w, const char *svc, const char *state)
{
    int64_t deadline = sn_mono_ms() + WAIT_MS;
    for (;;) {
        json_t *doc = incident_of(w, svc, state);
        if (doc)
            return doc;
        if (sn_mono_ms() > deadline)
            break;
        run_ms(w, 20);
    }
    json_t *any = sn_engine_incidents(w->e, NULL);
    char *text = json_dumps(any, JSON_COMPACT);
    ck_abort_msg("no incident of %s in state %s after %d ms; incidents: %s (dir %s)", svc,
                 state ? state : "any", WAIT_MS, text, w->dir);
    free(text);
    json_decref(any);
    return NULL;
}

static size_t incident_count(world_t *w)
{
    json_t *list = sn_engine_incidents(w->e, NULL);
    size_t n = json_array_size(json_object_get(list, "incidents"));
    json_decref(list);
    return n;
}

/* Drain: shutdown, run the loop until it leaves, so the journal and the store are flushed. */
static void world_stop(world_t *w)
{
    if (w->stopped)
        return;
    sn_engine_shutdown(w->e);
    ck_assert_int_eq(sn_engine_run(w->e), 0);
    w->stopped = 1;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void world_free(world_t *w)
{
    if (w->e) {
        world_stop(w);
        sn_engine_free(w->e);
        w->e = NULL;
    }
    nftw(w->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* The journal as an array of objects ([] when the executor was never called). */
static json_t *journal_of(world_t *w)
{
    ck_assert_msg(w->stopped, "read the journal after the drain");
    json_t *out = json_array();
    FILE *f = fopen(w->journal, "r");
    if (!f)
        return out;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        ck_assert_msg(j != NULL, "journal line is not JSON: %s", line);
        json_array_append_new(out, j);
    }
    free(line);
    fclose(f);
    return out;
}

/* Journal records with op @p op (and, when dry >= 0, that dry_run flag). */
static size_t journal_count(const json_t *j, const char *op, int dry)
{
    size_t n = 0, i;
    json_t *r;
    json_array_foreach(j, i, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "op")), op) != 0)
            continue;
        if (dry >= 0 && json_is_true(json_object_get(r, "dry_run")) != (dry != 0))
            continue;
        n++;
    }
    return n;
}

/* Timeline events named @p event; with @p detail, only those whose detail contains it. */
static size_t events_named(const json_t *doc, const char *event, const char *detail)
{
    size_t n = 0, i;
    json_t *t;
    json_array_foreach(json_object_get(doc, "timeline"), i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "event")), event) != 0)
            continue;
        if (detail && !strstr(json_string_value(json_object_get(t, "detail")), detail))
            continue;
        n++;
    }
    return n;
}

static const char *str_at(const json_t *doc, const char *k)
{
    return json_string_value(json_object_get(doc, k));
}

static char *timeline_text(const json_t *doc)
{
    return json_dumps(json_object_get(doc, "timeline"), JSON_COMPACT);
}

#define ASSERT_EVENT(doc, ev, det)                                                                 \
    do {                                                                                           \
        if (events_named((doc), (ev), (det)) == 0) {                                               \
            char *tl_ = timeline_text(doc);                                                        \
            ck_abort_msg("timeline has no '%s'%s%s: %s", (ev), (det) ? " with " : "",              \
                         (det) ? (const char *)(det) : "", tl_);                                   \
            free(tl_);                                                                             \
        }                                                                                          \
    } while (0)

/* ---- (a) correlation ---------------------------------------------------------------------- */

START_TEST(cascade_folds_into_one_incident)
{
    world_t w;
    world_start(&w, NULL);
    sbuf_t b = {0};
    gen_cascade(&b, 1);
    ingest(&w, &b);
    free(b.p);

    json_t *doc = wait_incident(&w, "checkout", "closed*");
    json_t *svcs = json_object_get(doc, "services");
    ck_assert_msg(json_array_size(svcs) == 3 && has_string(svcs, "checkout") &&
                      has_string(svcs, "frontend") && has_string(svcs, "cart"),
                  "services: %s", json_dumps(svcs, JSON_COMPACT));
    /* The normal series is in no incident, not even as an anomaly. */
    ck_assert(!has_string(svcs, "search"));
    ck_assert(!has_string(svcs, "billing"));
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(doc, "anomalies"), i, a)
    {
        const char *svc =
            json_string_value(json_object_get(json_object_get(a, "labels"), "service"));
        ck_assert_str_ne(svc, "search");
        ck_assert_str_eq(str_at(a, "metric"), "http_p99_latency_ms");
        ck_assert_str_eq(str_at(a, "detector"), "latency");
    }
    ck_assert_int_ge(json_integer_value(json_object_get(doc, "anomaly_count")), 3);
    ck_assert_str_eq(str_at(doc, "severity"), "high"); /* three services */
    /* The deploy is the candidate cause and the top hypothesis. */
    json_t *changes = json_object_get(doc, "changes");
    ck_assert_uint_eq(json_array_size(changes), 1);
    ck_assert_str_eq(str_at(json_array_get(changes, 0), "change"), "deploy");
    json_t *top = json_array_get(json_object_get(doc, "hypotheses"), 0);
    ck_assert_str_eq(str_at(top, "service"), "checkout");
    ck_assert_ptr_nonnull(strstr(str_at(top, "cause"), "deploy"));
    ck_assert_uint_eq(events_named(doc, "opened", NULL), 1);
    ASSERT_EVENT(doc, "opened", "on 3 services");
    json_decref(doc);

    /* The unrelated spike two hours later is an incident of its own, billing only. */
    json_t *late = wait_incident(&w, "billing", NULL);
    json_t *lsvcs = json_object_get(late, "services");
    ck_assert_uint_eq(json_array_size(lsvcs), 1);
    json_decref(late);
    ck_assert_ptr_null(incident_of(&w, "search", NULL));
    ck_assert_uint_eq(incident_count(&w), 2);
    world_free(&w);
}
END_TEST

/* ---- (b) the bundled checkout scenario ---------------------------------------------------- */

START_TEST(checkout_scenario_resolves_with_one_execution)
{
    world_t w;
    world_start(&w, NULL);
    sbuf_t b = {0};
    load_scenario(&b, "checkout-deploy");
    ingest(&w, &b);
    free(b.p);

    json_t *doc = wait_incident(&w, "checkout", "closed*");
    char *tl = timeline_text(doc);
    ck_assert_msg(strcmp(str_at(doc, "state"), "resolved") == 0, "state %s, timeline %s",
                  str_at(doc, "state"), tl);
    free(tl);
    json_t *svcs = json_object_get(doc, "services");
    ck_assert(has_string(svcs, "checkout") && has_string(svcs, "frontend") &&
              has_string(svcs, "cart"));
    ck_assert(!has_string(svcs, "search") && !has_string(svcs, "payments"));
    json_t *plan = json_object_get(doc, "plan");
    ck_assert_uint_eq(json_array_size(plan), 1);
    json_t *act = json_array_get(plan, 0);
    ck_assert_str_eq(str_at(act, "verb"), "rollout_restart");
    ck_assert_str_eq(str_at(act, "target"), "deployment/shop/checkout");
    ck_assert_str_eq(str_at(act, "risk"), "low");
    ck_assert_str_eq(str_at(act, "approved_by"), "policy");
    ck_assert_str_eq(str_at(json_array_get(json_object_get(doc, "approvals"), 0), "actor"),
                     "policy");
    json_t *ex = json_object_get(doc, "executions");
    ck_assert_uint_eq(json_array_size(ex), 1);
    json_t *x = json_array_get(ex, 0);
    ck_assert_str_eq(str_at(x, "state"), "done");
    ck_assert(json_is_true(json_object_get(x, "verified")));
    ck_assert_int_eq(json_integer_value(json_object_get(x, "attempt")), 0);
    char key[128];
    snprintf(key, sizeof(key), "%s:0:0", str_at(doc, "id"));
    ck_assert_str_eq(str_at(x, "key"), key);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "loop_count")), 0);
    const char *order[] = {"opened",   "analyzed", "planned", "approved",
                           "executed", "verified", "resolved"};
    size_t at = 0, i;
    json_t *t;
    json_array_foreach(json_object_get(doc, "timeline"), i, t)
    {
        if (at < 7 && strcmp(str_at(t, "event"), order[at]) == 0)
            at++;
    }
    tl = timeline_text(doc);
    ck_assert_msg(at == 7, "timeline out of order at '%s': %s", at < 7 ? order[at] : "", tl);
    free(tl);
    /* Closed: no cursor left to resume from. */
    ck_assert(json_is_null(json_object_get(doc, "cursor")));
    char id[64];
    snprintf(id, sizeof(id), "%s", str_at(doc, "id"));
    json_decref(doc);

    world_stop(&w);
    json_t *j = journal_of(&w);
    ck_assert_uint_eq(journal_count(j, "execute", 0), 1);
    ck_assert_uint_eq(journal_count(j, "execute", 1), 0);
    ck_assert_uint_eq(journal_count(j, "rollback", -1), 0);
    size_t k;
    json_t *r;
    json_array_foreach(j, k, r)
    {
        if (strcmp(str_at(r, "op"), "execute") != 0)
            continue;
        ck_assert_str_eq(str_at(r, "incident"), id);
        ck_assert_str_eq(str_at(r, "target"), "deployment/shop/checkout");
        ck_assert_str_eq(str_at(r, "key"), key);
        ck_assert(json_is_true(json_object_get(r, "mutated")));
        ck_assert_int_eq(json_integer_value(json_object_get(r, "status")), 0);
    }
    json_decref(j);
    world_free(&w);
}
END_TEST

/* ---- (c) human approval ------------------------------------------------------------------- */

START_TEST(medium_risk_waits_for_a_human)
{
    world_t w;
    conf_opts_t o = {.reject_edge = 0}; /* a rejection then ends as "rejected" */
    world_start(&w, &o);
    sbuf_t b = {0};
    load_scenario(&b, "payments-memory");
    /* A second, unrelated memory leak eight hours later, for the rejection. */
    gen_memory(&b, "inventory", T0_MS + 8 * 3600000LL);
    ingest(&w, &b);
    free(b.p);

    json_t *pay = wait_incident(&w, "payments", "awaiting_approval");
    json_t *inv = wait_incident(&w, "inventory", "awaiting_approval");
    ck_assert_str_ne(str_at(pay, "id"), str_at(inv, "id"));
    json_t *act = json_array_get(json_object_get(pay, "plan"), 0);
    ck_assert_str_eq(str_at(act, "verb"), "scale_deployment");
    ck_assert_str_eq(str_at(act, "target"), "deployment/shop/payments");
    ck_assert_str_eq(str_at(act, "risk"), "medium");
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(act, "params"), "replicas")), 6);
    ck_assert_ptr_null(json_object_get(act, "approved_by"));
    ck_assert_uint_eq(json_array_size(json_object_get(pay, "executions")), 0);
    ASSERT_EVENT(pay, "approval_needed", NULL);
    /* The state filter of the incident list sees both. */
    json_t *waiting = sn_engine_incidents(w.e, "awaiting_approval");
    ck_assert_uint_eq(json_array_size(json_object_get(waiting, "incidents")), 2);
    json_decref(waiting);
    char pid[64], iid[64];
    snprintf(pid, sizeof(pid), "%s", str_at(pay, "id"));
    snprintf(iid, sizeof(iid), "%s", str_at(inv, "id"));
    json_decref(pay);
    json_decref(inv);

    /* Waiting stays waiting: nothing moves without a decision. */
    run_ms(&w, 300);
    pay = sn_engine_incident(w.e, pid);
    ck_assert_str_eq(str_at(pay, "state"), "awaiting_approval");
    json_decref(pay);

    ck_assert_int_eq(sn_engine_decide(w.e, "no-such-incident", 1, "test:alice", "x"), SN_ENOTFOUND);
    ck_assert_int_eq(sn_engine_decide(w.e, pid, 1, "test:alice", "reviewed"), 0);
    ck_assert_int_eq(sn_engine_decide(w.e, pid, 1, "test:alice", "again"), SN_EINVAL);
    ck_assert_int_eq(sn_engine_decide(w.e, pid, 0, "test:bob", "too late"), SN_EINVAL);
    ck_assert_int_eq(sn_engine_decide(w.e, iid, 0, "test:bob", "not during the sale"), 0);
    ck_assert_int_eq(sn_engine_decide(w.e, iid, 1, "test:alice", "changed my mind"), SN_EINVAL);

    pay = wait_incident(&w, "payments", "closed*");
    ck_assert_str_eq(str_at(pay, "state"), "resolved");
    json_t *apr = json_object_get(pay, "approvals");
    ck_assert_uint_eq(json_array_size(apr), 1);
    ck_assert_str_eq(str_at(json_array_get(apr, 0), "actor"), "test:alice");
    ck_assert_str_eq(str_at(json_array_get(apr, 0), "decision"), "approved");
    ck_assert_str_eq(str_at(json_array_get(apr, 0), "reason"), "reviewed");
    act = json_array_get(json_object_get(pay, "plan"), 0);
    ck_assert_str_eq(str_at(act, "approved_by"), "test:alice");
    json_t *ex = json_object_get(pay, "executions");
    ck_assert_uint_eq(json_array_size(ex), 1);
    ck_assert_str_eq(str_at(json_array_get(ex, 0), "state"), "done");
    ASSERT_EVENT(pay, "approved", "by test:alice: reviewed");
    ASSERT_EVENT(pay, "resolved", NULL);
    json_decref(pay);

    inv = sn_engine_incident(w.e, iid);
    ck_assert_str_eq(str_at(inv, "state"), "rejected");
    apr = json_object_get(inv, "approvals");
    ck_assert_uint_eq(json_array_size(apr), 1);
    ck_assert_str_eq(str_at(json_array_get(apr, 0), "decision"), "rejected");
    ck_assert_str_eq(str_at(json_array_get(apr, 0), "actor"), "test:bob");
    ck_assert_uint_eq(json_array_size(json_object_get(inv, "executions")), 0);
    ASSERT_EVENT(inv, "rejected", "not during the sale");
    ck_assert_uint_eq(events_named(inv, "executed", NULL), 0);
    json_decref(inv);

    world_stop(&w);
    json_t *j = journal_of(&w);
    ck_assert_uint_eq(journal_count(j, "execute", 0), 1);
    size_t i;
    json_t *r;
    /* Only the read-only live assessment ever touched the rejected target. */
    json_array_foreach(j, i, r)
    {
        if (strcmp(str_at(r, "op") ? str_at(r, "op") : "", "assess") != 0)
            ck_assert_str_ne(str_at(r, "target") ? str_at(r, "target") : "",
                             "deployment/shop/inventory");
    }
    json_decref(j);
    world_free(&w);
}
END_TEST

/* An approval that arrives while the approval_needed checkpoint is still being written (an
 * operator quick on the button, a test) must not make a second save of the same version, which
 * the store refuses and which read as "another instance took the incident over". */
START_TEST(decision_during_a_checkpoint_in_flight)
{
    world_t w;
    conf_opts_t o = {0};
    world_start(&w, &o);
    sbuf_t b = {0};
    load_scenario(&b, "payments-memory");
    ingest(&w, &b);
    free(b.p);
    json_t *pay = wait_incident(&w, "payments", "awaiting_approval");
    char pid[64];
    snprintf(pid, sizeof(pid), "%s", str_at(pay, "id"));
    json_decref(pay);
    run_ms(&w, 100); /* its checkpoint is written */

    /* Both in one turn of the loop: a checkpoint in flight, then the decision's own. */
    sn_incident_t *inc = sn_incident_find(w.e, pid);
    ck_assert_ptr_nonnull(inc);
    int64_t before = inc->version;
    sn_workflow_checkpoint(inc, NULL, 0);
    ck_assert_int_eq(inc->saving, 1);
    ck_assert_int_eq(sn_engine_decide(w.e, pid, 1, "test:alice", "quick"), 0);

    pay = wait_incident(&w, "payments", "closed*");
    ck_assert_str_eq(str_at(pay, "state"), "resolved");
    ck_assert_uint_eq(json_array_size(json_object_get(pay, "executions")), 1);
    json_decref(pay);
    inc = sn_incident_find(w.e, pid);
    ck_assert_ptr_nonnull(inc);
    ck_assert_int_eq(inc->lost, 0);
    ck_assert_int_gt(inc->version, before + 2); /* every checkpoint landed, in turn */
    ck_assert(sn_metric_value(sn_engine_runtime(w.e), "incident_leases_lost_total", NULL) == 0);
    ck_assert(sn_metric_value(sn_engine_runtime(w.e), "checkpoint_failures_total", NULL) == 0);
    world_stop(&w);
    world_free(&w);
}
END_TEST

/* ---- (d) bounded loop-back ---------------------------------------------------------------- */

START_TEST(fix_that_never_holds_escalates_after_max_loops)
{
    world_t w;
    /* worsen: every execute leaves the target unhealthy, so every verify fails. */
    conf_opts_t o = {.reject_edge = 1, .extra_mock = "worsen = true", .verify_max = 2};
    world_start(&w, &o);
    sbuf_t b = {0};
    gen_cascade(&b, 0);
    ingest(&w, &b);
    free(b.p);

    json_t *doc = wait_incident(&w, "checkout", "closed*");
    char *tl = timeline_text(doc);
    ck_assert_msg(strcmp(str_at(doc, "state"), "escalated") == 0, "state %s: %s",
                  str_at(doc, "state"), tl);
    free(tl);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "loop_count")), 2);
    ck_assert_uint_eq(events_named(doc, "loop", NULL), 2);
    ASSERT_EVENT(doc, "loop", "verify -> rca (1 of 2)");
    ASSERT_EVENT(doc, "loop", "verify -> rca (2 of 2)");
    ck_assert_uint_eq(events_named(doc, "executed", NULL), 3);
    ck_assert_uint_eq(events_named(doc, "verification_failed", NULL), 3);
    ck_assert_uint_eq(events_named(doc, "rolled_back", NULL), 3);
    ck_assert_uint_eq(events_named(doc, "escalated", "loop bound reached"), 1);
    ck_assert_uint_eq(events_named(doc, "resolved", NULL), 0);
    /* The last event is the escalation. */
    json_t *tlv = json_object_get(doc, "timeline");
    ck_assert_str_eq(str_at(json_array_get(tlv, json_array_size(tlv) - 1), "event"), "escalated");
    /* One execution per attempt, each with its own key, each rolled back. */
    json_t *ex = json_object_get(doc, "executions");
    ck_assert_uint_eq(json_array_size(ex), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_array_get(ex, i);
        ck_assert_int_eq(json_integer_value(json_object_get(x, "attempt")), (json_int_t)i);
        ck_assert_str_eq(str_at(x, "state"), "rolled_back");
        ck_assert(json_is_false(json_object_get(x, "verified")));
        char key[128];
        snprintf(key, sizeof(key), "%s:0:%zu", str_at(doc, "id"), i);
        ck_assert_str_eq(str_at(x, "key"), key);
    }
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(doc, "edge_counts"), "verify->rca")), 2);
    json_decref(doc);

    world_stop(&w);
    json_t *j = journal_of(&w);
    ck_assert_uint_eq(journal_count(j, "execute", 0), 3);
    ck_assert_uint_eq(journal_count(j, "rollback", 0), 3);
    ck_assert_uint_eq(journal_count(j, "verify", -1), 3);
    json_decref(j);
    world_free(&w);
}
END_TEST

/* ---- (e) global dry run ------------------------------------------------------------------- */

START_TEST(global_dry_run_changes_nothing)
{
    world_t w;
    conf_opts_t o = {.reject_edge = 1, .extra_core = "dry_run = true"};
    world_start(&w, &o);
    sbuf_t b = {0};
    gen_cascade(&b, 0);
    ingest(&w, &b);
    free(b.p);

    json_t *doc = wait_incident(&w, "checkout", "closed*");
    ASSERT_EVENT(doc, "dry_run", "would rollout_restart deployment/shop/checkout");
    ck_assert_uint_eq(events_named(doc, "executed", NULL), 0);
    ck_assert_uint_eq(events_named(doc, "verified", NULL), 0); /* nothing ran: no "holds" */
    ck_assert_uint_eq(events_named(doc, "dry_run_only", NULL), 1);
    ck_assert_str_eq(str_at(doc, "state"), "closed");
    json_t *ex = json_object_get(doc, "executions");
    ck_assert_uint_eq(json_array_size(ex), 1);
    ck_assert_str_eq(str_at(json_array_get(ex, 0), "state"), "dry_run");
    json_decref(doc);

    world_stop(&w);
    json_t *j = journal_of(&w);
    ck_assert_uint_eq(journal_count(j, "execute", 0), 0);
    ck_assert_uint_eq(journal_count(j, "rollback", 0), 0);
    size_t i;
    json_t *r;
    json_array_foreach(j, i, r) ck_assert(!json_is_true(json_object_get(r, "mutated")));
    json_decref(j);
    world_free(&w);
}
END_TEST

/* ---- (f) whitelist ------------------------------------------------------------------------ */

START_TEST(target_outside_allow_is_denied)
{
    world_t w;
    /* The runbook points at a namespace the executor's allow list does not cover. */
    conf_opts_t o = {.reject_edge = 1, .deploy_dest = "deployment/payments"};
    world_start(&w, &o);
    sbuf_t b = {0};
    gen_cascade(&b, 0);
    ingest(&w, &b);
    free(b.p);

    json_t *doc = wait_incident(&w, "checkout", "closed*");
    json_t *act = json_array_get(json_object_get(doc, "plan"), 0);
    ck_assert_ptr_nonnull(act);
    ck_assert_str_eq(str_at(act, "target"), "deployment/payments/checkout");
    ck_assert(json_is_false(json_object_get(act, "allowed")));
    ck_assert_str_eq(str_at(act, "denied_reason"), "target not in the executor's allow list");
    ck_assert_ptr_null(json_object_get(act, "approved_by"));
    ASSERT_EVENT(doc, "planned", "denied: target not in the executor's allow list");
    ASSERT_EVENT(doc, "nothing_to_approve", NULL);
    ck_assert_uint_eq(json_array_size(json_object_get(doc, "executions")), 0);
    ck_assert_uint_eq(events_named(doc, "executed", NULL), 0);
    ck_assert_str_eq(str_at(doc, "state"), "escalated");
    json_decref(doc);

    world_stop(&w);
    json_t *j = journal_of(&w);
    ck_assert_uint_eq(journal_count(j, "execute", -1), 0);
    ck_assert_uint_eq(journal_count(j, "snapshot", -1), 0);
    json_decref(j);
    world_free(&w);
}
END_TEST

/* ---- lifecycle ---------------------------------------------------------------------------- */

START_TEST(ingest_before_start_is_refused)
{
    world_t w;
    world_prepare(&w, NULL);
    sn_diag_t d;
    sn_diag_init(&d);
    sn_engine_t *e = engine_new(&w, &d);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(sn_engine_check(e, &d), 0);
    ck_assert_uint_eq(d.n, 0);
    /* No telemetry plane yet: nothing is taken, and the caller is told to come back. */
    const char *line = "{\"ts\":1,\"metric\":\"m\",\"value\":1}\n";
    sn_ingest_stats_t st;
    ck_assert_int_eq(sn_engine_ingest(e, line, strlen(line), "early", &st, NULL), SN_EAGAIN);
    json_t *list = sn_engine_incidents(e, NULL);
    ck_assert_uint_eq(json_array_size(json_object_get(list, "incidents")), 0);
    json_decref(list);
    ck_assert_ptr_null(sn_engine_incident(e, "nope"));
    ck_assert_int_eq(sn_engine_decide(e, "nope", 1, "test", NULL), SN_ENOTFOUND);
    /* An engine that never started frees cleanly. */
    sn_engine_free(e);
    sn_diag_free(&d);
    world_free(&w);
}
END_TEST

START_TEST(bad_config_is_refused_with_file_line)
{
    world_t w;
    conf_opts_t o = {.reject_edge = 1, .extra_mock = "worsen = maybe"};
    world_prepare(&w, &o);
    /* Where the bad line is in the file written. */
    FILE *f = fopen(w.conf, "r");
    ck_assert_ptr_nonnull(f);
    char buf[512];
    int line = 0, bad_line = 0;
    while (fgets(buf, sizeof(buf), f)) {
        line++;
        if (strncmp(buf, "worsen = maybe", 14) == 0)
            bad_line = line;
    }
    fclose(f);
    ck_assert_int_gt(bad_line, 0);
    sn_diag_t d;
    sn_diag_init(&d);
    ck_assert_ptr_null(engine_new(&w, &d));
    ck_assert_uint_ge(d.n, 1);
    char want[700];
    snprintf(want, sizeof(want), "%s:%d: ", w.conf, bad_line);
    ck_assert_msg(strncmp(d.msgs[0], want, strlen(want)) == 0 && strstr(d.msgs[0], "worsen"),
                  "expected '%s...worsen...', got '%s'", want, d.msgs[0]);
    sn_diag_free(&d);
    world_free(&w);
}
END_TEST

/* ---- acknowledged ingest ------------------------------------------------------------------
 */

typedef struct ack_rec {
    int calls, status;
} ack_rec_t;

static void ack_done(void *arg, int status, json_t *result)
{
    (void)result;
    ack_rec_t *a = arg;
    a->calls++;
    a->status = status;
}

/* Ingest 200 points with an acknowledgement and wait for it. */
static ack_rec_t acked_ingest(world_t *w)
{
    sbuf_t b = {0};
    for (int i = 0; i < 200; i++)
        sb_printf(&b, "{\"ts\":%lld,\"metric\":\"acked\",\"value\":%d}\n",
                  (long long)(T0_MS + i * 10000LL), 100 + i % 3);
    ack_rec_t a = {0, -1};
    sn_ingest_stats_t st;
    sn_diag_t errs;
    sn_diag_init(&errs);
    ck_assert_int_eq(sn_engine_ingest_acked(w->e, b.p, b.n, "ack", &st, &errs, ack_done, &a), 0);
    ck_assert_uint_eq(st.accepted, 200);
    ck_assert_int_eq(a.calls, 0); /* never re-entrantly: on the loop, later */
    int64_t deadline = sn_mono_ms() + WAIT_MS;
    while (a.calls == 0 && sn_mono_ms() < deadline)
        run_ms(w, 10);
    sn_diag_free(&errs);
    free(b.p);
    return a;
}

START_TEST(acked_ingest_confirms_once_the_store_kept_the_points)
{
    world_t w;
    conf_opts_t o = {.extra_core = "telemetry = local"};
    world_start(&w, &o);
    ack_rec_t a = acked_ingest(&w);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(a.status, 0);
    world_stop(&w);
    /* Confirmed means written: the points are in the store's file. */
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "sqlite3 %s/sentinel.db 'SELECT count(*) FROM points'", w.dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    long n = 0;
    ck_assert_int_eq(fscanf(p, "%ld", &n), 1);
    pclose(p);
    ck_assert_int_eq(n, 200);
    world_free(&w);
}
END_TEST

START_TEST(acked_ingest_without_a_store_confirms_at_once)
{
    world_t w;
    conf_opts_t o = {0};
    world_start(&w, &o);
    ack_rec_t a = acked_ingest(&w);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(a.status, 0);
    world_stop(&w);
    world_free(&w);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("engine");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, cascade_folds_into_one_incident);
    tcase_add_test(tc, checkout_scenario_resolves_with_one_execution);
    tcase_add_test(tc, medium_risk_waits_for_a_human);
    tcase_add_test(tc, decision_during_a_checkpoint_in_flight);
    tcase_add_test(tc, fix_that_never_holds_escalates_after_max_loops);
    tcase_add_test(tc, global_dry_run_changes_nothing);
    tcase_add_test(tc, target_outside_allow_is_denied);
    tcase_add_test(tc, ingest_before_start_is_refused);
    tcase_add_test(tc, bad_config_is_refused_with_file_line);
    tcase_add_test(tc, acked_ingest_confirms_once_the_store_kept_the_points);
    tcase_add_test(tc, acked_ingest_without_a_store_confirms_at_once);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
