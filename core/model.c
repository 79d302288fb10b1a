/**
 * @file model.c
 * Configuration -> validated model. Collects every error with file:line instead of stopping at
 * the first, so an operator fixes a config in one pass.
 */
#include "model.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const sn_param_t sn_core_params[] = {
    {"listen", SN_T_STRING, "127.0.0.1:8080", 0, "HTTP API address host:port"},
    {"plugin_dir", SN_T_STRING, NULL, 0, "where plugin modules live"},
    {"state", SN_T_STRING, NULL, 0, "store instance that holds workflows and audit"},
    {"vector", SN_T_STRING, NULL, 0, "store instance that remembers incidents (VECTOR)"},
    {"embedder", SN_T_STRING, NULL, 0, "embedder instance for incident similarity"},
    {"instance_id", SN_T_STRING, NULL, 0, "name of this sentineld (default: hostname)"},
    {"dry_run", SN_T_BOOL, "false", 0, "global dry-run: executors describe, change nothing"},
    {"auto_approve_max_downtime", SN_T_DURATION, "60", 0,
     "low-risk actions with estimated downtime up to this run without a human"},
    {"workers", SN_T_INT, "2", 0, "telemetry worker threads (series sharded by hash)"},
    {"max_body", SN_T_SIZE, "8m", 0, "largest accepted HTTP request body"},
    {"max_series", SN_T_INT, "1000000", 0, "active series cap across all workers"},
    {"lease_ttl", SN_T_DURATION, "30", 0,
     "instances sharing a state store own open incidents through leases this long (renewed "
     "every third of it); a killed instance's incidents move to another after it; 0 = off"},
    {"notify_retries", SN_T_INT, "8", 0,
     "deliveries of one notification tried before it is dead (kept, listed, counted)"},
    {"notify_backoff", SN_T_DURATION, "5", 0,
     "base of the outbox's full-jitter exponential backoff between tries (capped at 10 min)"},
    {"telemetry", SN_T_STRING, NULL, 0,
     "store instance (TELEMETRY capability) that keeps every point and primes the detectors of "
     "a new series from its history; unset: no history, new series start cold"},
    {"warmup_window", SN_T_DURATION, "8d", 0, "how far back a new series' history is read"},
    {"warmup_points", SN_T_INT, "10000", 0, "most points read to prime one series"},
    {"series_eviction", SN_T_STRING, "lru", 0,
     "at max_series: lru evicts the least recently seen series (its detector state restarts "
     "if it returns), refuse drops points of new series; both are counted in /metrics"},
    {"queue_points", SN_T_INT, "1000000", 0, "points queued for workers before ingest says 503"},
    {"min_votes", SN_T_DOUBLE, "1", 0,
     "sum of detector weights that must flag one series within vote_window before the anomaly "
     "counts; 1 = any detector (weights default to 1)"},
    {"vote_window", SN_T_DURATION, "60", 0,
     "event time within which verdicts of different detectors on one series are counted together"},
    {"flap_threshold", SN_T_INT, "4", 0,
     "anomalies of one series within flap_window that mark it flapping: later ones are "
     "suppressed (counted) until it is quiet for a flap_window; 0 disables"},
    {"flap_window", SN_T_DURATION, "3600", 0, "event-time window of flap detection"},
    {"dedup_similarity", SN_T_DOUBLE, "0.9", 0,
     "a new incident whose embedding is at least this similar to an open incident's folds into "
     "it (needs embedder and vector); 0 disables"},
    {"correlate_window", SN_T_DURATION, "300", 0,
     "anomalies within this event-time window of an open incident join it"},
    {"group_wait", SN_T_DURATION, "60", 0,
     "event time an incident gathers anomalies before analysis"},
    {"group_wait_wall", SN_T_DURATION, "5", 0,
     "wall-clock bound on gathering, for when telemetry stops"},
    {"drain_timeout", SN_T_DURATION, "10", 0, "SIGTERM: time to drain and checkpoint"},
    {"max_incidents", SN_T_INT, "10000", 0, "incidents kept in memory (open ones always)"},
    {"log_level", SN_T_STRING, "info", 0, "debug, info, warn or error"},
    {"api_key", SN_T_STRING, NULL, SN_PARAM_MULTI,
     "NAME:ROLE:sha256:HEX (role ingest|viewer|operator|admin); repeat for more keys"},
    {NULL, 0, NULL, 0, NULL},
};

static const sn_param_t common_params[] = {
    {"plugin", SN_T_STRING, NULL, SN_PARAM_REQUIRED, "plugin module (type) of this instance"},
    {NULL, 0, NULL, 0, NULL},
};

static const sn_param_t executor_params[] = {
    {"plugin", SN_T_STRING, NULL, SN_PARAM_REQUIRED, "plugin module (type) of this instance"},
    {"allow", SN_T_LIST, NULL, SN_PARAM_REQUIRED,
     "whitelist of target patterns (kind/namespace/name, '*' within a segment); nothing else is "
     "touched"},
    {"dry_run", SN_T_BOOL, "false", 0, "describe actions, change nothing"},
    {"max_per_minute", SN_T_INT, "2", 0, "rate limit: executions per minute"},
    {"max_per_hour", SN_T_INT, "6", 0, "rate limit: executions per hour"},
    {"failure_threshold", SN_T_DOUBLE, "0.10", 0, "failure rate that opens the circuit breaker"},
    {"breaker_min_calls", SN_T_INT, "5", 0, "calls in the window before the breaker can open"},
    {"breaker_cooldown", SN_T_DURATION, "600", 0, "open breaker -> half-open after this"},
    {"rollback_on_failure", SN_T_BOOL, "true", 0,
     "when an action of a plan fails, roll back the actions of that attempt that ran, in "
     "reverse order, before the incident moves on"},
    {NULL, 0, NULL, 0, NULL},
};

static const sn_param_t detector_params[] = {
    {"plugin", SN_T_STRING, NULL, SN_PARAM_REQUIRED, "plugin module (type) of this instance"},
    {"metrics", SN_T_LIST, "*", 0, "metric names (or prefix*) this detector observes"},
    {"weight", SN_T_DOUBLE, "1", 0, "this detector's vote towards [sentinel] min_votes"},
    {NULL, 0, NULL, 0, NULL},
};

static const sn_param_t notifier_params[] = {
    {"plugin", SN_T_STRING, NULL, SN_PARAM_REQUIRED, "plugin module (type) of this instance"},
    {"events", SN_T_LIST, "*", 0,
     "events sent: opened, approval_needed, executing, rolled_back, escalated, resolved"},
    {NULL, 0, NULL, 0, NULL},
};

const sn_param_t *sn_model_kind_params(sn_kind_t k)
{
    switch (k) {
    case SN_EXECUTOR:
        return executor_params;
    case SN_DETECTOR:
        return detector_params;
    case SN_NOTIFIER:
        return notifier_params;
    default:
        return common_params;
    }
}

const char *sn_model_default_plugin_dir(void)
{
    /* A binary run from the build tree finds the freshly built plugins first. */
    if (access(SN_PLUGIN_DIR_BUILD, R_OK) == 0)
        return SN_PLUGIN_DIR_BUILD;
    return SN_PLUGIN_DIR_INSTALL;
}

/* Over the plugin type and the validated, expanded values: a reload carries an instance over
 * only when nothing it was created from changed, a secret read from a file included. */
static char *instance_digest(const char *type, const sn_cfg_t *cfg)
{
    json_t *kv = json_pack("[s]", type);
    for (size_t i = 0; cfg && i < cfg->n; i++)
        json_array_append_new(kv, json_pack("[ss?]", cfg->keys[i], cfg->vals[i]));
    char *text = sn_json_canonical(kv);
    json_decref(kv);
    char hex[65];
    sn_sha256_hex(text ? text : "", text ? strlen(text) : 0, hex);
    free(text);
    return strdup(hex);
}

struct lookup_ctx {
    sn_model_t *m;
};

static int graph_lookup(void *arg, const char *name, sn_kind_t *kind)
{
    struct lookup_ctx *lc = arg;
    sn_instance_t *in = sn_model_find(lc->m, name);
    if (!in)
        return -1;
    *kind = in->kind;
    return 0;
}

static void settings_read(sn_model_t *m)
{
    const sn_cfg_t *c = m->core_cfg;
    sn_settings_t *s = &m->set;
    s->listen = sn_cfg_str(c, "listen");
    s->plugin_dir = sn_cfg_str(c, "plugin_dir");
    s->state = sn_cfg_str(c, "state");
    s->vector = sn_cfg_str(c, "vector");
    s->embedder = sn_cfg_str(c, "embedder");
    s->instance_id = sn_cfg_str(c, "instance_id");
    s->dry_run = sn_cfg_bool(c, "dry_run");
    s->auto_approve_max_downtime_s = sn_cfg_int(c, "auto_approve_max_downtime") / 1000;
    s->workers = sn_cfg_int(c, "workers");
    s->max_body = sn_cfg_int(c, "max_body");
    s->max_series = sn_cfg_int(c, "max_series");
    s->queue_points = sn_cfg_int(c, "queue_points");
    s->series_eviction = sn_cfg_str(c, "series_eviction");
    s->telemetry = sn_cfg_str(c, "telemetry");
    s->notify_retries = sn_cfg_int(c, "notify_retries");
    s->lease_ttl_ms = sn_cfg_int(c, "lease_ttl");
    s->notify_backoff_ms = sn_cfg_int(c, "notify_backoff");
    s->warmup_window_ms = sn_cfg_int(c, "warmup_window");
    s->warmup_points = sn_cfg_int(c, "warmup_points");
    s->min_votes = sn_cfg_double(c, "min_votes");
    s->vote_window_ms = sn_cfg_int(c, "vote_window");
    s->flap_threshold = sn_cfg_int(c, "flap_threshold");
    s->flap_window_ms = sn_cfg_int(c, "flap_window");
    s->dedup_similarity = sn_cfg_double(c, "dedup_similarity");
    s->correlate_window_ms = sn_cfg_int(c, "correlate_window");
    s->group_wait_ms = sn_cfg_int(c, "group_wait");
    s->group_wait_wall_ms = sn_cfg_int(c, "group_wait_wall");
    s->drain_timeout_ms = sn_cfg_int(c, "drain_timeout");
    s->max_incidents = sn_cfg_int(c, "max_incidents");
    s->log_level = sn_cfg_str(c, "log_level");
    s->api_keys = sn_cfg_list(c, "api_key");
}

static void check_settings(sn_model_t *m, const sn_conf_section_t *sec, sn_diag_t *d)
{
    const char *file = m->conf->file;
    sn_settings_t *s = &m->set;
#define SN_KEYLINE(k) (sn_conf_get(sec, k) ? sn_conf_get(sec, k)->line : (sec ? sec->line : 0))
    if (s->workers < 1 || s->workers > 256)
        sn_diag_add(d, file, SN_KEYLINE("workers"), "key 'workers': must be 1..256");
    if (s->max_body < 1024)
        sn_diag_add(d, file, SN_KEYLINE("max_body"), "key 'max_body': must be at least 1k");
    if (s->max_series < 1)
        sn_diag_add(d, file, SN_KEYLINE("max_series"), "key 'max_series': must be positive");
    if (s->queue_points < 1024)
        sn_diag_add(d, file, SN_KEYLINE("queue_points"), "key 'queue_points': at least 1024");
    if (s->series_eviction && strcmp(s->series_eviction, "lru") != 0 &&
        strcmp(s->series_eviction, "refuse") != 0)
        sn_diag_add(d, file, SN_KEYLINE("series_eviction"),
                    "key 'series_eviction': '%s' is not lru or refuse", s->series_eviction);
    if (!(s->min_votes > 0) || s->min_votes > 1000)
        sn_diag_add(d, file, SN_KEYLINE("min_votes"), "key 'min_votes': must be in (0, 1000]");
    if (s->vote_window_ms < 0)
        sn_diag_add(d, file, SN_KEYLINE("vote_window"), "key 'vote_window': must not be negative");
    if (s->flap_threshold < 0 || s->flap_threshold > 16)
        sn_diag_add(d, file, SN_KEYLINE("flap_threshold"), "key 'flap_threshold': must be 0..16");
    if (s->flap_window_ms < 1000)
        sn_diag_add(d, file, SN_KEYLINE("flap_window"), "key 'flap_window': at least 1s");
    if (s->dedup_similarity < 0 || s->dedup_similarity > 1)
        sn_diag_add(d, file, SN_KEYLINE("dedup_similarity"),
                    "key 'dedup_similarity': must be between 0 and 1");
    if (s->log_level && strcmp(s->log_level, "debug") && strcmp(s->log_level, "info") &&
        strcmp(s->log_level, "warn") && strcmp(s->log_level, "error"))
        sn_diag_add(d, file, SN_KEYLINE("log_level"),
                    "key 'log_level': '%s' is not debug, info, warn or error", s->log_level);
    if (s->lease_ttl_ms != 0 && s->lease_ttl_ms < 1000)
        sn_diag_add(d, file, SN_KEYLINE("lease_ttl"), "key 'lease_ttl': 0 or at least 1s");
    if (s->notify_retries < 1 || s->notify_retries > 100)
        sn_diag_add(d, file, SN_KEYLINE("notify_retries"), "key 'notify_retries': must be 1..100");
    if (s->notify_backoff_ms < 10)
        sn_diag_add(d, file, SN_KEYLINE("notify_backoff"), "key 'notify_backoff': at least 10ms");
    if (s->warmup_points < 0 || s->warmup_points > 100000)
        sn_diag_add(d, file, SN_KEYLINE("warmup_points"), "key 'warmup_points': must be 0..100000");
    const char *refs[] = {"state", "vector", "embedder", "telemetry"};
    const char *vals[] = {s->state, s->vector, s->embedder, s->telemetry};
    const sn_kind_t kinds[] = {SN_STORE, SN_STORE, SN_EMBEDDER, SN_STORE};
    for (int i = 0; i < 4; i++) {
        if (!vals[i])
            continue;
        sn_instance_t *in = sn_model_find(m, vals[i]);
        if (!in)
            sn_diag_add(d, file, SN_KEYLINE(refs[i]), "key '%s': no instance named '%s'", refs[i],
                        vals[i]);
        else if (in->kind != kinds[i])
            sn_diag_add(d, file, SN_KEYLINE(refs[i]), "key '%s': '%s' is a %s, not a %s", refs[i],
                        vals[i], sn_kind_name(in->kind), sn_kind_name(kinds[i]));
    }
    if (s->telemetry) {
        sn_instance_t *in = sn_model_find(m, s->telemetry);
        if (in && in->kind == SN_STORE && in->mod &&
            !(((const sn_store_ops_t *)in->mod->plugin->ops)->caps & SN_STORE_TELEMETRY))
            sn_diag_add(d, file, SN_KEYLINE("telemetry"),
                        "key 'telemetry': store '%s' (%s) offers no TELEMETRY", s->telemetry,
                        in->type);
    }
    if (s->state) {
        sn_instance_t *in = sn_model_find(m, s->state);
        if (in && in->kind == SN_STORE && in->mod) {
            const sn_store_ops_t *ops = in->mod->plugin->ops;
            unsigned need = SN_STORE_STATE | SN_STORE_AUDIT;
            if ((ops->caps & need) != need)
                sn_diag_add(d, file, SN_KEYLINE("state"),
                            "key 'state': store '%s' (%s) offers no STATE and AUDIT", s->state,
                            in->type);
        }
    }
#undef SN_KEYLINE
}

static void check_executor(sn_model_t *m, sn_instance_t *in, const sn_conf_section_t *sec,
                           sn_diag_t *d)
{
    sn_exec_policy_t *p = &in->policy;
    p->allow = sn_cfg_list(in->cfg, "allow");
    p->dry_run = sn_cfg_bool(in->cfg, "dry_run");
    p->max_per_minute = sn_cfg_int(in->cfg, "max_per_minute");
    p->max_per_hour = sn_cfg_int(in->cfg, "max_per_hour");
    p->failure_threshold = sn_cfg_double(in->cfg, "failure_threshold");
    p->breaker_min_calls = sn_cfg_int(in->cfg, "breaker_min_calls");
    p->breaker_cooldown_ms = sn_cfg_int(in->cfg, "breaker_cooldown");
    p->rollback_on_failure = sn_cfg_bool(in->cfg, "rollback_on_failure");
    const sn_conf_kv_t *allow = sn_conf_get(sec, "allow");
    int line = allow ? allow->line : sec->line;
    for (size_t i = 0; p->allow && p->allow[i]; i++) {
        /* A pattern is a target whose segments may hold '*': canonicalise with the stars
         * replaced so the same rules (no "..", no encoding, no empty segment) apply. */
        char tmp[600], canon[600], why[128];
        snprintf(tmp, sizeof(tmp), "%s", p->allow[i]);
        for (char *c = tmp; *c; c++)
            if (*c == '*')
                *c = 'x';
        if (sn_target_canon(tmp, canon, sizeof(canon), why, sizeof(why)) != 0)
            sn_diag_add(d, m->conf->file, line, "[executor:%s] allow pattern '%s': %s", in->name,
                        p->allow[i], why);
    }
    if (p->max_per_minute < 0 || p->max_per_hour < 0)
        sn_diag_add(d, m->conf->file, sec->line, "[executor:%s] rate limits must be >= 0",
                    in->name);
    if (p->failure_threshold <= 0 || p->failure_threshold > 1)
        sn_diag_add(d, m->conf->file, sec->line, "[executor:%s] failure_threshold must be in (0,1]",
                    in->name);
}

sn_model_t *sn_model_build(sn_conf_t *conf, sn_loader_t *loader, sn_diag_t *d)
{
    size_t before = d->n;
    sn_model_t *m = calloc(1, sizeof(*m));
    if (!m) {
        sn_conf_free(conf);
        return NULL;
    }
    m->conf = conf;
    m->inst = calloc(conf->nsec ? conf->nsec : 1, sizeof(*m->inst));
    if (!m->inst)
        goto fail;

    const sn_conf_section_t *core = sn_conf_find(conf, "sentinel", NULL);
    static sn_conf_section_t empty = {0};
    if (!core) {
        empty.header = "sentinel";
        empty.kind = "sentinel";
        core = &empty;
    }
    m->core_cfg = sn_cfg_build(conf, core, sn_core_params, NULL, d);

    for (size_t i = 0; i < conf->nsec; i++) {
        const sn_conf_section_t *s = &conf->sections[i];
        sn_kind_t kind;
        if (!s->name || sn_kind_parse(s->kind, &kind) != 0)
            continue; /* [sentinel], [pipeline]; config.c already refused unknown kinds */
        const sn_conf_kv_t *pk = sn_conf_get(s, "plugin");
        if (!pk) {
            sn_diag_add(d, conf->file, s->line, "[%s]: missing required key 'plugin'", s->header);
            continue;
        }
        for (size_t j = 0; j < m->ninst; j++)
            if (strcmp(m->inst[j].name, s->name) == 0)
                sn_diag_add(d, conf->file, s->line,
                            "instance name '%s' is already used by [%s] on line %d", s->name,
                            m->inst[j].label, m->inst[j].line);
        char why[256] = "";
        const sn_loaded_t *mod = sn_loader_get(loader, kind, pk->value, why, sizeof(why));
        if (!mod) {
            sn_diag_add(d, conf->file, pk->line, "[%s]: plugin '%s': %s", s->header, pk->value,
                        why);
            continue;
        }
        sn_instance_t *in = &m->inst[m->ninst++];
        in->kind = kind;
        in->name = strdup(s->name);
        in->type = strdup(pk->value);
        in->label = strdup(s->header);
        in->line = s->line;
        in->mod = mod;
        in->cfg = sn_cfg_build(conf, s, mod->plugin->params, sn_model_kind_params(kind), d);
        if (!in->cfg)
            continue;
        in->digest = instance_digest(in->type, in->cfg);
        if (kind == SN_EXECUTOR)
            check_executor(m, in, s, d);
        if (kind == SN_DETECTOR) {
            in->metrics = sn_cfg_list(in->cfg, "metrics");
            in->weight = sn_cfg_double(in->cfg, "weight");
            if (!(in->weight >= 0) || in->weight > 1000)
                sn_diag_add(d, conf->file, s->line, "[%s]: key 'weight': must be 0..1000",
                            in->label);
        }
        if (kind == SN_NOTIFIER)
            in->events = sn_cfg_list(in->cfg, "events");
    }

    if (m->core_cfg) {
        settings_read(m);
        check_settings(m, sn_conf_find(conf, "sentinel", NULL), d);
    }

    const sn_conf_section_t *pipe = sn_conf_find(conf, "pipeline", NULL);
    if (!pipe) {
        sn_diag_add(d, conf->file, 0, "no [pipeline] section: nothing would run");
    } else {
        struct lookup_ctx lc = {m};
        m->graph = sn_graph_build(conf, pipe, graph_lookup, &lc, d);
        for (size_t i = 0; m->graph && i < m->graph->nnodes; i++) {
            sn_node_t *n = &m->graph->nodes[i];
            sn_instance_t *in = n->type == SN_NODE_INSTANCE ? sn_model_find(m, n->name) : NULL;
            n->inst = in ? (int)(in - m->inst) : -1;
        }
    }
    if (d->n > before)
        goto fail;
    return m;
fail:
    sn_model_free(m);
    return NULL;
}

void sn_model_free(sn_model_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->ninst; i++) {
        free(m->inst[i].name);
        free(m->inst[i].type);
        free(m->inst[i].label);
        free(m->inst[i].digest);
        sn_cfg_free(m->inst[i].cfg);
    }
    free(m->inst);
    sn_cfg_free(m->core_cfg);
    sn_graph_free(m->graph);
    sn_conf_free(m->conf);
    free(m);
}

sn_instance_t *sn_model_find(const sn_model_t *m, const char *name)
{
    for (size_t i = 0; i < m->ninst; i++)
        if (strcmp(m->inst[i].name, name) == 0)
            return &m->inst[i];
    return NULL;
}

sn_instance_t *sn_model_first(const sn_model_t *m, sn_kind_t kind)
{
    for (size_t i = 0; i < m->ninst; i++)
        if (m->inst[i].kind == kind)
            return &m->inst[i];
    return NULL;
}

int sn_model_in_graph(const sn_model_t *m, const char *name)
{
    return m->graph && sn_graph_node(m->graph, name) >= 0;
}
