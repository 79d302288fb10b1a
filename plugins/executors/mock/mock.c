/**
 * @file mock.c
 * Executor `mock`: a stand-in for a real orchestrator, for demos, tests and dry rehearsals of a
 * pipeline. It keeps an in-memory "world" of resources (target -> {"replicas", "version",
 * "healthy", "generation"}), offers the verbs of a small Kubernetes-like executor, records every
 * call in a JSON-lines journal and in metrics, and can be told to fail or to make things worse
 * so the core's verify, loop-back, circuit breaker and rollback paths can be exercised.
 *
 * World: a target is created on first touch with `default_replicas` replicas, version "v1" and
 * healthy = false (it is the subject of an incident; a remediation is what heals it).
 * "generation" counts the mutations applied to the target, so a caller can see that a repeated
 * call changed nothing.
 *
 * Verbs and their effect when executed (params are the action's verb parameters):
 *   restart_pod, rollout_restart, reboot_instance   restart: no field changes
 *   scale_deployment   replicas = params.replicas (0..10000), default current + 1
 *   rollback_deploy    version = params.to, default the previous vN (or "previous")
 * then healthy = false when `worsen`, true when `heal` (default), unchanged otherwise.
 *
 * Journal: one JSON object a line, {"ts","op","incident","target","verb","key","dry_run",
 * "status","result"[, "state"]} (executes add "deduplicated" and "mutated"), appended through
 * host->offload (never on the loop) by one writer at a time, so lines keep call order. At create
 * the journal (when configured) is read back: successful executes restore the idempotency keys with
 * their first result, and executes and rollbacks restore the world, so a re-created instance
 * behaves like the one before it. Reading it there is blocking I/O, done once at load time before
 * the instance serves calls.
 *
 * Completion: with latency_ms = 0 every callback completes synchronously, before the call
 * returns (the ABI allows it; callers must not assume either order). With latency_ms > 0 an
 * execute completes from a host timer; stop() waits for those and for the journal writer.
 */
#include <sentinel/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MK_TARGETS_MAX 10000         /* resources in the world */
#define MK_KEYS_MAX 100000           /* remembered idempotency keys */
#define MK_PENDING_MAX 1024          /* executes waiting for latency_ms */
#define MK_JOURNAL_BUF_MAX (4 << 20) /* journal bytes waiting for the writer */
#define MK_RETRY_MS 100              /* writer retry when the offload pool is full */
#define MK_REPLICAS_MAX 10000

typedef struct mk mk_t;

/* An execute waiting for latency_ms; everything borrowed from the action is copied. */
typedef struct mk_pending {
    struct mk_pending *next, *prev;
    mk_t *m;
    sn_timer_t *timer;
    char *incident, *verb, *target, *key;
    json_t *params;
    sn_done_fn done;
    void *arg;
} mk_pending_t;

/* One journal write in flight. The worker touches only this struct. */
typedef struct mk_jjob {
    mk_t *m; /* NULL once the instance was destroyed: the completion then only frees */
    char *path;
    char *buf;
    size_t len;
    int err; /* errno of a failed write, 0 on success */
} mk_jjob_t;

struct mk {
    const sn_host_t *host;
    const char *journal; /* host-owned, NULL when not configured */
    int64_t default_replicas, latency_ms;
    double fail_rate;
    uint64_t rng;
    int worsen, heal;
    const char *const *fail_verbs;
    json_t *world; /* target -> state */
    json_t *keys;  /* idempotency key -> first result */
    char *jbuf;    /* journal lines waiting for the writer */
    size_t jlen, jcap;
    mk_jjob_t *jjob;
    sn_timer_t *jretry;
    mk_pending_t *pending;
    size_t npending;
    unsigned long calls, mutations, failures;
    int stopping;
    sn_done_fn stop_done;
    void *stop_arg;
};

static const sn_verb_t mk_verbs[] = {
    {"restart_pod", SN_RISK_LOW, 5, "delete one pod so its controller recreates it"},
    {"rollout_restart", SN_RISK_LOW, 30, "rolling restart of a deployment"},
    {"scale_deployment", SN_RISK_MEDIUM, 0, "set replicas (params: replicas, default +1)"},
    {"rollback_deploy", SN_RISK_MEDIUM, 60, "roll back to a version (params: to)"},
    {"reboot_instance", SN_RISK_HIGH, 120, "reboot a machine"},
    {NULL, 0, 0, NULL},
};

static const sn_param_t mk_params[] = {
    {"default_replicas", SN_T_INT, "3", 0, "replicas of a resource when it is first touched"},
    {"journal", SN_T_STRING, NULL, 0,
     "JSON-lines file recording every call; read back at start so idempotency keys survive a "
     "restart"},
    {"fail_verbs", SN_T_LIST, NULL, 0, "verbs whose execute fails with an I/O error"},
    {"fail_rate", SN_T_DOUBLE, "0", 0,
     "share of executes (0..1) that fail, drawn from a pseudo-random sequence seeded by seed"},
    {"seed", SN_T_INT, "1", 0, "seed of the fail_rate sequence (same seed, same failures)"},
    {"worsen", SN_T_BOOL, "false", 0, "execute makes the target unhealthy, so verify fails"},
    {"heal", SN_T_BOOL, "true", 0, "execute makes the target healthy, so verify succeeds"},
    {"latency_ms", SN_T_INT, "0", 0, "execute completes after this many milliseconds"},
    {NULL, 0, NULL, 0, NULL},
};

/* ---- helpers ----------------------------------------------------------------------------- */

static const sn_verb_t *mk_verb(const char *name)
{
    for (const sn_verb_t *v = mk_verbs; name && v->name; v++)
        if (strcmp(v->name, name) == 0)
            return v;
    return NULL;
}

static const char *mk_risk_name(sn_risk_t r)
{
    return r == SN_RISK_HIGH ? "high" : r == SN_RISK_MEDIUM ? "medium" : "low";
}

/* splitmix64: a small, well-mixed deterministic sequence. */
static double mk_draw(mk_t *m)
{
    uint64_t z = (m->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / (double)(1ULL << 53);
}

static void mk_count(mk_t *m, const char *name, const char *help)
{
    m->host->metric(m->host, SN_METRIC_COUNTER, name, help, 1);
}

static json_t *mk_default_state(const mk_t *m)
{
    return json_pack("{s:I,s:s,s:b,s:I}", "replicas", (json_int_t)m->default_replicas, "version",
                     "v1", "healthy", 0, "generation", (json_int_t)0);
}

/**
 * The state of @p target. With @p create the target is added to the world on first touch and
 * the world's reference is returned (borrowed); without it a missing target yields a new default
 * state the caller owns (*owned = 1). Returns NULL when out of memory or the world is full.
 */
static json_t *mk_state(mk_t *m, const char *target, int create, int *owned)
{
    *owned = 0;
    json_t *s = json_object_get(m->world, target);
    if (s)
        return s;
    s = mk_default_state(m);
    if (!s)
        return NULL;
    if (!create) {
        *owned = 1;
        return s;
    }
    if (json_object_size(m->world) >= MK_TARGETS_MAX) {
        m->host->log(m->host, SN_LOG_WARN, "world is full (%d targets): %s not added",
                     MK_TARGETS_MAX, target);
        mk_count(m, "executor_mock_world_full_total", "Targets refused because the world is full");
        json_decref(s);
        return NULL;
    }
    if (json_object_set_new(m->world, target, s) != 0)
        return NULL;
    return s;
}

static json_t *mk_view(const char *target, const json_t *state)
{
    json_t *v = json_deep_copy(state);
    if (v)
        json_object_set_new(v, "target", json_string(target));
    return v;
}

/**
 * Apply @p verb to @p state in place (a copy for a dry run). Returns 0 or SN_EINVAL with a
 * phrase in @p why.
 */
static int mk_transform(const mk_t *m, json_t *state, const char *verb, const json_t *params,
                        char *why, size_t whylen)
{
    json_int_t replicas = json_integer_value(json_object_get(state, "replicas"));
    if (strcmp(verb, "scale_deployment") == 0) {
        const json_t *want = params ? json_object_get(params, "replicas") : NULL;
        json_int_t n = replicas + 1;
        if (want) {
            if (!json_is_integer(want) || json_integer_value(want) < 0 ||
                json_integer_value(want) > MK_REPLICAS_MAX) {
                snprintf(why, whylen, "replicas must be an integer from 0 to %d", MK_REPLICAS_MAX);
                return SN_EINVAL;
            }
            n = json_integer_value(want);
        }
        json_object_set_new(state, "replicas", json_integer(n));
    } else if (strcmp(verb, "rollback_deploy") == 0) {
        const json_t *to = params ? json_object_get(params, "to") : NULL;
        char prev[64] = "previous";
        if (to && !json_is_string(to)) {
            snprintf(why, whylen, "to must be a version string");
            return SN_EINVAL;
        }
        const char *cur = json_string_value(json_object_get(state, "version"));
        long n = 0;
        if (!to && cur && cur[0] == 'v' && sscanf(cur + 1, "%ld", &n) == 1 && n > 1)
            snprintf(prev, sizeof(prev), "v%ld", n - 1);
        json_object_set_new(state, "version", json_string(to ? json_string_value(to) : prev));
    }
    if (m->worsen)
        json_object_set_new(state, "healthy", json_false());
    else if (m->heal)
        json_object_set_new(state, "healthy", json_true());
    json_object_set_new(state, "generation",
                        json_integer(json_integer_value(json_object_get(state, "generation")) + 1));
    return 0;
}

static int mk_has_key_pending(const mk_t *m, const char *key)
{
    for (const mk_pending_t *p = m->pending; p; p = p->next)
        if (p->key && strcmp(p->key, key) == 0)
            return 1;
    return 0;
}

/* ---- journal ------------------------------------------------------------------------------ */

static void mk_journal_kick(mk_t *m);
static void mk_maybe_stopped(mk_t *m);

/* Thread: offload pool. Touches only the job. */
static void mk_journal_work(void *arg)
{
    mk_jjob_t *j = arg;
    int fd = open(j->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        j->err = errno;
        return;
    }
    size_t off = 0;
    while (off < j->len) {
        ssize_t w = write(fd, j->buf + off, j->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            j->err = w < 0 ? errno : EIO;
            break;
        }
        off += (size_t)w;
    }
    if (close(fd) != 0 && !j->err)
        j->err = errno;
}

static void mk_jjob_free(mk_jjob_t *j)
{
    free(j->path);
    free(j->buf);
    free(j);
}

/* Thread: loop. */
static void mk_journal_done(void *arg)
{
    mk_jjob_t *j = arg;
    mk_t *m = j->m;
    if (!m) {
        mk_jjob_free(j);
        return;
    }
    m->jjob = NULL;
    if (j->err) {
        m->host->log(m->host, SN_LOG_WARN, "journal write to %s failed: %s", j->path,
                     strerror(j->err));
        mk_count(m, "executor_mock_journal_errors_total", "Journal writes that failed");
    }
    mk_jjob_free(j);
    mk_journal_kick(m);
    mk_maybe_stopped(m);
}

static void mk_journal_retry(void *arg)
{
    mk_t *m = arg;
    m->jretry = NULL;
    mk_journal_kick(m);
    mk_maybe_stopped(m);
}

/* Hand the waiting lines to the writer unless one is already busy. Thread: loop. */
static void mk_journal_kick(mk_t *m)
{
    if (m->jjob || m->jretry || m->jlen == 0 || !m->journal)
        return;
    mk_jjob_t *j = calloc(1, sizeof(*j));
    if (!j || !(j->path = strdup(m->journal))) {
        free(j);
        goto retry;
    }
    j->m = m;
    j->buf = m->jbuf;
    j->len = m->jlen;
    m->jbuf = NULL;
    m->jlen = m->jcap = 0;
    if (m->host->offload(m->host, mk_journal_work, mk_journal_done, j) != 0) {
        /* Put the lines back in front of anything recorded meanwhile (nothing can be, on the
         * loop, but keep it correct) and try again shortly. */
        m->jbuf = j->buf;
        m->jlen = m->jcap = j->len;
        j->buf = NULL;
        mk_jjob_free(j);
        goto retry;
    }
    m->jjob = j;
    return;
retry:
    m->jretry = m->host->timer_add(m->host, MK_RETRY_MS, 0, mk_journal_retry, m);
}

/* Queue one journal line (and count the call). Ownership: everything is borrowed. Thread: loop. */
static void mk_record(mk_t *m, const char *op, const char *incident, const char *target,
                      const char *verb, const char *key, int dry_run, int status, json_t *result,
                      const json_t *state)
{
    m->calls++;
    if (!m->journal)
        return;
    json_t *rec = json_pack("{s:I,s:s,s:s?,s:s?,s:s?,s:s?,s:b,s:i,s:O?}", "ts",
                            (json_int_t)m->host->now_ms(m->host), "op", op, "incident", incident,
                            "target", target, "verb", verb, "key", key, "dry_run", dry_run,
                            "status", status, "result", result);
    if (rec && state)
        json_object_set_new(rec, "state", json_deep_copy(state));
    /* Top-level flags so a reader can count real mutations without parsing results. */
    if (rec && strcmp(op, "execute") == 0) {
        json_object_set_new(rec, "deduplicated",
                            json_boolean(json_is_true(json_object_get(result, "deduplicated"))));
        json_object_set_new(rec, "mutated", json_boolean(state != NULL));
    }
    char *line = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    if (!line) {
        mk_count(m, "executor_mock_journal_errors_total", "Journal writes that failed");
        return;
    }
    size_t n = strlen(line);
    if (m->jlen + n + 1 > MK_JOURNAL_BUF_MAX) {
        m->host->log(m->host, SN_LOG_WARN, "journal backlog over %d bytes: %s record dropped",
                     MK_JOURNAL_BUF_MAX, op);
        mk_count(m, "executor_mock_journal_dropped_total",
                 "Journal records dropped because the writer fell behind");
        free(line);
        return;
    }
    if (m->jlen + n + 1 > m->jcap) {
        size_t cap = m->jcap ? m->jcap : 4096;
        while (cap < m->jlen + n + 1)
            cap *= 2;
        char *nb = realloc(m->jbuf, cap);
        if (!nb) {
            mk_count(m, "executor_mock_journal_errors_total", "Journal writes that failed");
            free(line);
            return;
        }
        m->jbuf = nb;
        m->jcap = cap;
    }
    memcpy(m->jbuf + m->jlen, line, n);
    m->jbuf[m->jlen + n] = '\n';
    m->jlen += n + 1;
    free(line);
    mk_journal_kick(m);
}

/* Rebuild keys and world from the journal. Blocking; runs once in create. */
static int mk_journal_load(mk_t *m, sn_err_t *err)
{
    FILE *f = fopen(m->journal, "re");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        snprintf(err->msg, sizeof(err->msg), "cannot read journal %s: %s", m->journal,
                 strerror(errno));
        return SN_EIO;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned long lineno = 0, bad = 0, keys = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        json_t *rec = json_loadb(line, (size_t)n, 0, NULL);
        const char *op = json_string_value(json_object_get(rec, "op"));
        const char *target = json_string_value(json_object_get(rec, "target"));
        const char *key = json_string_value(json_object_get(rec, "key"));
        json_t *state = json_object_get(rec, "state");
        json_t *result = json_object_get(rec, "result");
        int ok = json_integer_value(json_object_get(rec, "status")) == 0 &&
                 !json_is_true(json_object_get(rec, "dry_run"));
        if (!op) {
            bad++;
        } else if (ok && (strcmp(op, "execute") == 0 || strcmp(op, "rollback") == 0)) {
            int dedup = json_is_true(json_object_get(result, "deduplicated"));
            if (target && json_is_object(state) && !dedup &&
                (json_object_get(m->world, target) || json_object_size(m->world) < MK_TARGETS_MAX))
                json_object_set(m->world, target, state);
            if (strcmp(op, "execute") == 0 && key && result && !dedup &&
                !json_object_get(m->keys, key) && json_object_size(m->keys) < MK_KEYS_MAX) {
                json_object_set(m->keys, key, result);
                keys++;
            }
        }
        json_decref(rec);
    }
    free(line);
    fclose(f);
    if (bad)
        m->host->log(m->host, SN_LOG_WARN, "journal %s: %lu unreadable lines skipped", m->journal,
                     bad);
    m->host->log(m->host, SN_LOG_INFO, "journal %s: %lu records, %lu idempotency keys restored",
                 m->journal, lineno, keys);
    return 0;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static void mk_destroy(void *self);

static int mk_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    int rc = SN_ENOMEM;
    mk_t *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    m->host = host;
    m->journal = host->cfg_str(cfg, "journal");
    if (m->journal && !m->journal[0])
        m->journal = NULL;
    m->default_replicas = host->cfg_int(cfg, "default_replicas");
    m->latency_ms = host->cfg_int(cfg, "latency_ms");
    m->fail_rate = host->cfg_double(cfg, "fail_rate");
    m->rng = (uint64_t)host->cfg_int(cfg, "seed");
    m->worsen = host->cfg_bool(cfg, "worsen");
    m->heal = host->cfg_bool(cfg, "heal");
    m->fail_verbs = host->cfg_list(cfg, "fail_verbs");
    m->world = json_object();
    m->keys = json_object();
    if (!m->world || !m->keys) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        goto out;
    }
    rc = SN_EINVAL;
    if (m->default_replicas < 0 || m->default_replicas > MK_REPLICAS_MAX) {
        snprintf(err->msg, sizeof(err->msg), "default_replicas must be between 0 and %d",
                 MK_REPLICAS_MAX);
        goto out;
    }
    if (m->latency_ms < 0 || m->latency_ms > 3600000) {
        snprintf(err->msg, sizeof(err->msg), "latency_ms must be between 0 and 3600000");
        goto out;
    }
    if (!(m->fail_rate >= 0 && m->fail_rate <= 1)) {
        snprintf(err->msg, sizeof(err->msg), "fail_rate must be between 0 and 1");
        goto out;
    }
    for (const char *const *v = m->fail_verbs; v && *v; v++) {
        if (!mk_verb(*v)) {
            snprintf(err->msg, sizeof(err->msg), "fail_verbs: unknown verb '%.64s'", *v);
            goto out;
        }
    }
    if (m->journal && (rc = mk_journal_load(m, err)) != 0)
        goto out;
    rc = 0;
    *self = m;
out:
    if (rc != 0)
        mk_destroy(m);
    return rc;
}

static void mk_pending_free(mk_pending_t *p)
{
    free(p->incident);
    free(p->verb);
    free(p->target);
    free(p->key);
    json_decref(p->params);
    free(p);
}

static void mk_pending_unlink(mk_t *m, mk_pending_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        m->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    m->npending--;
}

/**
 * Frees the instance. Executes still waiting for latency_ms complete now with SN_EIO, so every
 * done runs once; a journal write in flight finishes on its own and only frees itself.
 */
static void mk_destroy(void *self)
{
    mk_t *m = self;
    if (!m)
        return;
    while (m->pending) {
        mk_pending_t *p = m->pending;
        mk_pending_unlink(m, p);
        m->host->timer_del(p->timer);
        p->done(p->arg, SN_EIO, NULL);
        mk_pending_free(p);
    }
    if (m->jretry)
        m->host->timer_del(m->jretry);
    if (m->jjob)
        m->jjob->m = NULL;
    free(m->jbuf);
    json_decref(m->world);
    json_decref(m->keys);
    free(m);
}

static void mk_maybe_stopped(mk_t *m)
{
    if (!m->stopping || !m->stop_done || m->pending || m->jjob || m->jretry ||
        (m->jlen && m->journal))
        return;
    sn_done_fn done = m->stop_done;
    m->stop_done = NULL;
    done(m->stop_arg, 0, NULL);
}

/** Drain: waits for delayed executes and the journal. May complete before it returns. */
static void mk_stop(void *self, sn_done_fn done, void *arg)
{
    mk_t *m = self;
    m->stopping = 1;
    m->stop_done = done;
    m->stop_arg = arg;
    mk_maybe_stopped(m);
}

static int mk_health(void *self, sn_health_t *out)
{
    mk_t *m = self;
    out->ok = 1;
    snprintf(out->detail, sizeof(out->detail),
             "%zu targets, %lu calls, %lu mutations, %lu failures", json_object_size(m->world),
             m->calls, m->mutations, m->failures);
    return 0;
}

/* ---- executor calls ----------------------------------------------------------------------- */

/* Common argument check; completes the call itself when the action is unusable. */
static int mk_usable(mk_t *m, const sn_action_t *a, const char *op, sn_done_fn done, void *arg)
{
    int rc = 0;
    const char *why = NULL;
    if (!a || !a->target || !a->target[0]) {
        rc = SN_EINVAL;
        why = "action has no target";
    } else if (!mk_verb(a->verb)) {
        rc = SN_ENOTSUP;
        why = "unknown verb";
    }
    if (rc == 0)
        return 0;
    json_t *res = json_pack("{s:s}", "error", why);
    mk_record(m, op, a ? a->incident : NULL, a ? a->target : NULL, a ? a->verb : NULL,
              a ? a->idempotency_key : NULL, a ? a->dry_run : 0, rc, res, NULL);
    done(arg, rc, res);
    json_decref(res);
    return rc;
}

/**
 * risk and downtime from the verb table, blast_radius = the target's replicas.
 * Ownership: @p a is borrowed. Thread: loop. Completes synchronously.
 */
static void mk_assess(void *self, const sn_action_t *a, sn_done_fn done, void *arg)
{
    mk_t *m = self;
    if (mk_usable(m, a, "assess", done, arg) != 0)
        return;
    mk_count(m, "executor_mock_assessments_total", "assess calls");
    const sn_verb_t *v = mk_verb(a->verb);
    int owned;
    json_t *st = mk_state(m, a->target, 1, &owned);
    int rc = st ? 0 : SN_ENOMEM;
    json_t *res = st ? json_pack("{s:s,s:i,s:O}", "risk", mk_risk_name(v->risk), "downtime_s",
                                 v->downtime_s, "blast_radius", json_object_get(st, "replicas"))
                     : NULL;
    if (st && !res)
        rc = SN_ENOMEM;
    mk_record(m, "assess", a->incident, a->target, a->verb, a->idempotency_key, a->dry_run, rc, res,
              NULL);
    done(arg, rc, res);
    json_decref(res);
}

/** result: the target's prior state, {"target","replicas","version","healthy","generation"}. */
static void mk_snapshot(void *self, const sn_action_t *a, sn_done_fn done, void *arg)
{
    mk_t *m = self;
    if (mk_usable(m, a, "snapshot", done, arg) != 0)
        return;
    mk_count(m, "executor_mock_snapshots_total", "snapshot calls");
    int owned;
    json_t *st = mk_state(m, a->target, 1, &owned);
    json_t *res = st ? mk_view(a->target, st) : NULL;
    int rc = res ? 0 : SN_ENOMEM;
    mk_record(m, "snapshot", a->incident, a->target, a->verb, a->idempotency_key, a->dry_run, rc,
              res, NULL);
    done(arg, rc, res);
    json_decref(res);
}

/* The mutation itself, immediately or when latency_ms has passed. Thread: loop. */
static void mk_apply(mk_t *m, const char *incident, const char *verb, const char *target,
                     const json_t *params, const char *key, sn_done_fn done, void *arg)
{
    json_t *res = NULL, *after = NULL;
    char why[160] = "";
    int rc = 0, owned = 0;
    for (const char *const *v = m->fail_verbs; v && *v; v++)
        if (strcmp(*v, verb) == 0) {
            rc = SN_EIO;
            snprintf(why, sizeof(why), "injected failure: %s is in fail_verbs", verb);
        }
    /* Draw on every real execute, so the failure sequence depends only on seed and call order. */
    if (m->fail_rate > 0 && mk_draw(m) < m->fail_rate && rc == 0) {
        rc = SN_EIO;
        snprintf(why, sizeof(why), "injected failure (fail_rate %.3g)", m->fail_rate);
    }
    json_t *st = rc == 0 ? mk_state(m, target, 1, &owned) : NULL;
    if (rc == 0 && !st) {
        rc = SN_ENOMEM;
        snprintf(why, sizeof(why), "world is full");
    }
    json_t *before = st ? mk_view(target, st) : NULL;
    if (rc == 0) {
        after = json_deep_copy(st);
        if (!before || !after) {
            rc = SN_ENOMEM;
            snprintf(why, sizeof(why), "out of memory");
        } else {
            rc = mk_transform(m, after, verb, params, why, sizeof(why));
        }
    }
    if (rc == 0 && key && json_object_size(m->keys) >= MK_KEYS_MAX) {
        rc = SN_ENOMEM;
        snprintf(why, sizeof(why), "idempotency key store is full (%d keys)", MK_KEYS_MAX);
        mk_count(m, "executor_mock_keys_full_total", "Executes refused: key store full");
    }
    if (rc != 0) {
        m->failures++;
        mk_count(m, "executor_mock_failures_total", "execute calls that failed");
        res = json_pack("{s:s,s:s,s:s}", "verb", verb, "target", target, "error", why);
        mk_record(m, "execute", incident, target, verb, key, 0, rc, res, NULL);
        goto out;
    }
    json_object_set(m->world, target, after);
    m->mutations++;
    mk_count(m, "executor_mock_mutations_total", "executes that changed the world");
    res = json_pack("{s:s,s:s,s:b,s:O,s:o}", "verb", verb, "target", target, "changed", 1, "before",
                    before, "after", mk_view(target, after));
    if (res && key)
        json_object_set_new(m->keys, key, json_deep_copy(res));
    mk_record(m, "execute", incident, target, verb, key, 0, 0, res, after);
out:
    json_decref(before);
    json_decref(after);
    done(arg, rc, res);
    json_decref(res);
}

static void mk_fire(void *arg)
{
    mk_pending_t *p = arg;
    mk_t *m = p->m;
    mk_pending_unlink(m, p);
    mk_apply(m, p->incident, p->verb, p->target, p->params, p->key, p->done, p->arg);
    mk_pending_free(p);
    mk_maybe_stopped(m);
}

static char *mk_strdup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

/**
 * Execute @p a. A dry run describes the change ({"dry_run":true,"would":...}) and changes
 * nothing; a key seen before returns the first result with "deduplicated": true.
 * Ownership: @p a is borrowed (copied when latency_ms delays completion). Thread: loop.
 */
static void mk_execute(void *self, const sn_action_t *a, sn_done_fn done, void *arg)
{
    mk_t *m = self;
    json_t *res = NULL;
    int rc = 0;
    if (mk_usable(m, a, "execute", done, arg) != 0)
        return;
    mk_count(m, "executor_mock_executes_total", "execute calls");
    const char *key = a->idempotency_key && a->idempotency_key[0] ? a->idempotency_key : NULL;
    if (a->dry_run) {
        mk_count(m, "executor_mock_dry_runs_total", "execute calls in dry-run mode");
        int owned;
        char why[160] = "";
        json_t *st = mk_state(m, a->target, 0, &owned);
        json_t *copy = st ? json_deep_copy(st) : NULL;
        if (!copy || (rc = mk_transform(m, copy, a->verb, a->params, why, sizeof(why))) != 0) {
            rc = rc ? rc : SN_ENOMEM;
            res = json_pack("{s:b,s:s}", "dry_run", 1, "error", why[0] ? why : "out of memory");
        } else {
            char would[512];
            snprintf(would, sizeof(would),
                     "%s %s: replicas %lld -> %lld, version %s -> %s, healthy %s -> %s", a->verb,
                     a->target, (long long)json_integer_value(json_object_get(st, "replicas")),
                     (long long)json_integer_value(json_object_get(copy, "replicas")),
                     json_string_value(json_object_get(st, "version")),
                     json_string_value(json_object_get(copy, "version")),
                     json_is_true(json_object_get(st, "healthy")) ? "true" : "false",
                     json_is_true(json_object_get(copy, "healthy")) ? "true" : "false");
            res = json_pack("{s:b,s:s,s:s,s:s}", "dry_run", 1, "would", would, "verb", a->verb,
                            "target", a->target);
        }
        json_decref(copy);
        if (owned)
            json_decref(st);
        mk_record(m, "execute", a->incident, a->target, a->verb, key, 1, rc, res, NULL);
        goto out;
    }
    json_t *first = key ? json_object_get(m->keys, key) : NULL;
    if (first) {
        mk_count(m, "executor_mock_deduplicated_total", "executes answered from an earlier key");
        res = json_deep_copy(first);
        if (res)
            json_object_set_new(res, "deduplicated", json_true());
        rc = res ? 0 : SN_ENOMEM;
        mk_record(m, "execute", a->incident, a->target, a->verb, key, 0, rc, res, NULL);
        goto out;
    }
    if (key && mk_has_key_pending(m, key)) {
        rc = SN_EAGAIN;
        res = json_pack("{s:s}", "error", "an execute with this idempotency key is in progress");
        mk_record(m, "execute", a->incident, a->target, a->verb, key, 0, rc, res, NULL);
        goto out;
    }
    if (m->latency_ms <= 0) {
        mk_apply(m, a->incident, a->verb, a->target, a->params, key, done, arg);
        return;
    }
    mk_pending_t *p = m->npending < MK_PENDING_MAX ? calloc(1, sizeof(*p)) : NULL;
    if (p) {
        p->m = m;
        p->done = done;
        p->arg = arg;
        p->incident = mk_strdup0(a->incident);
        p->verb = strdup(a->verb);
        p->target = strdup(a->target);
        p->key = mk_strdup0(key);
        p->params = a->params ? json_deep_copy(a->params) : NULL;
        if (!p->verb || !p->target || (key && !p->key) || (a->incident && !p->incident) ||
            (a->params && !p->params) ||
            !(p->timer = m->host->timer_add(m->host, m->latency_ms, 0, mk_fire, p))) {
            mk_pending_free(p);
            p = NULL;
        }
    }
    if (!p) {
        rc = SN_ENOMEM;
        res = json_pack("{s:s}", "error", "too many delayed executes");
        mk_count(m, "executor_mock_failures_total", "execute calls that failed");
        mk_record(m, "execute", a->incident, a->target, a->verb, key, 0, rc, res, NULL);
        goto out;
    }
    p->next = m->pending;
    if (m->pending)
        m->pending->prev = p;
    m->pending = p;
    m->npending++;
    return;
out:
    done(arg, rc, res);
    json_decref(res);
}

/** status 0 when the target is healthy, SN_EIO otherwise; result {"healthy", "state"}. */
static void mk_verify(void *self, const sn_action_t *a, sn_done_fn done, void *arg)
{
    mk_t *m = self;
    if (mk_usable(m, a, "verify", done, arg) != 0)
        return;
    mk_count(m, "executor_mock_verifies_total", "verify calls");
    int owned;
    json_t *st = mk_state(m, a->target, 1, &owned);
    int healthy = st && json_is_true(json_object_get(st, "healthy"));
    json_t *res =
        st ? json_pack("{s:b,s:o}", "healthy", healthy, "state", mk_view(a->target, st)) : NULL;
    int rc = !st ? SN_ENOMEM : healthy ? 0 : SN_EIO;
    mk_record(m, "verify", a->incident, a->target, a->verb, a->idempotency_key, a->dry_run, rc, res,
              NULL);
    done(arg, rc, res);
    json_decref(res);
}

/** Restore the state taken by snapshot. Ownership: @p snapshot is borrowed. */
static void mk_rollback(void *self, const sn_action_t *a, const json_t *snapshot, sn_done_fn done,
                        void *arg)
{
    mk_t *m = self;
    json_t *res = NULL, *restored = NULL;
    int rc = 0, owned;
    if (mk_usable(m, a, "rollback", done, arg) != 0)
        return;
    mk_count(m, "executor_mock_rollbacks_total", "rollback calls");
    const json_t *rep = json_object_get(snapshot, "replicas");
    const json_t *ver = json_object_get(snapshot, "version");
    const json_t *hea = json_object_get(snapshot, "healthy");
    const char *snap_target = json_string_value(json_object_get(snapshot, "target"));
    if (!json_is_integer(rep) || !json_is_string(ver) || !json_is_boolean(hea) ||
        (snap_target && strcmp(snap_target, a->target) != 0)) {
        rc = SN_EINVAL;
        res = json_pack("{s:s}", "error", "snapshot is not a mock state of this target");
        goto out;
    }
    if (a->dry_run) {
        res = json_pack("{s:b,s:s}", "dry_run", 1, "would", "restore the snapshot");
        goto out;
    }
    json_t *st = mk_state(m, a->target, 1, &owned);
    restored = st ? json_deep_copy(st) : NULL;
    if (!restored) {
        rc = SN_ENOMEM;
        goto out;
    }
    json_object_set(restored, "replicas", (json_t *)rep);
    json_object_set(restored, "version", (json_t *)ver);
    json_object_set(restored, "healthy", (json_t *)hea);
    json_object_set_new(
        restored, "generation",
        json_integer(json_integer_value(json_object_get(restored, "generation")) + 1));
    json_object_set(m->world, a->target, restored);
    m->mutations++;
    res = json_pack("{s:s,s:b,s:o}", "target", a->target, "restored", 1, "state",
                    mk_view(a->target, restored));
out:
    mk_record(m, "rollback", a->incident, a->target, a->verb, a->idempotency_key, a->dry_run, rc,
              res, rc == 0 && !a->dry_run ? restored : NULL);
    json_decref(restored);
    done(arg, rc, res);
    json_decref(res);
}

static const sn_executor_ops_t mk_ops = {
    .struct_size = sizeof(sn_executor_ops_t),
    .verbs = mk_verbs,
    .assess = mk_assess,
    .snapshot = mk_snapshot,
    .execute = mk_execute,
    .verify = mk_verify,
    .rollback = mk_rollback,
};

static const sn_plugin_t mk_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_EXECUTOR,
    .type = "mock",
    .version = "1.0.0",
    .summary = "in-memory world with a journal and failure injection, for demos and tests",
    .params = mk_params,
    .create = mk_create,
    .stop = mk_stop,
    .destroy = mk_destroy,
    .health = mk_health,
    .ops = &mk_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &mk_plugin;
}
