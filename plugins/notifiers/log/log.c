/**
 * @file log.c
 * Notifier `log`: writes one line per notification to the daemon's log (host->log), for setups
 * without chat or paging, and as the always-available notifier in demos and tests. The line
 * names the event, the incident id, its title and severity and the top hypothesis (the one with
 * the highest confidence), so `grep incident=<id>` over the log tells the story.
 */
#include <sentinel/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct lg {
    const sn_host_t *host;
    sn_log_level_t level;
    unsigned long sent;
} lg_t;

static const sn_param_t lg_params[] = {
    {"level", SN_T_STRING, "info", 0, "log level of the notification lines: info or warn"},
    {NULL, 0, NULL, 0, NULL},
};

static int lg_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    const char *level = host->cfg_str(cfg, "level");
    sn_log_level_t lvl;
    if (!level || strcmp(level, "info") == 0) {
        lvl = SN_LOG_INFO;
    } else if (strcmp(level, "warn") == 0) {
        lvl = SN_LOG_WARN;
    } else {
        snprintf(err->msg, sizeof(err->msg), "level must be info or warn (got '%.32s')", level);
        return SN_EINVAL;
    }
    lg_t *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    l->host = host;
    l->level = lvl;
    *self = l;
    return 0;
}

static void lg_destroy(void *self)
{
    free(self);
}

/* The hypothesis with the highest confidence (the list is usually ordered, but do not rely on
 * it), or NULL. */
static const json_t *lg_top(const json_t *incident)
{
    const json_t *hyps = json_object_get(incident, "hypotheses");
    const json_t *best = NULL;
    double best_c = -1;
    size_t i;
    const json_t *h;
    json_array_foreach(hyps, i, h)
    {
        double c = json_number_value(json_object_get(h, "confidence"));
        if (json_is_object(h) && c > best_c) {
            best = h;
            best_c = c;
        }
    }
    return best;
}

static const char *lg_s(const json_t *o, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : def;
}

/**
 * Log one line and complete synchronously with status 0 (before returning).
 * Ownership: @p incident and @p event are borrowed. Thread: loop.
 */
static void lg_notify(void *self, const json_t *incident, const char *event, sn_done_fn done,
                      void *arg)
{
    lg_t *l = self;
    if (!json_is_object(incident)) {
        done(arg, SN_EINVAL, NULL);
        return;
    }
    const json_t *top = lg_top(incident);
    char hyp[320] = "none";
    if (top)
        snprintf(hyp, sizeof(hyp), "%.200s (service %.64s, confidence %.2f)",
                 lg_s(top, "cause", "?"), lg_s(top, "service", "?"),
                 json_number_value(json_object_get(top, "confidence")));
    l->host->log(l->host, l->level,
                 "notification %.32s: incident %.64s \"%.200s\" severity %.16s, state %.32s; top "
                 "hypothesis: %s",
                 event ? event : "?", lg_s(incident, "id", "?"), lg_s(incident, "title", ""),
                 lg_s(incident, "severity", "?"), lg_s(incident, "state", "?"), hyp);
    l->sent++;
    l->host->metric(l->host, SN_METRIC_COUNTER, "notifier_log_sent_total",
                    "Notifications written to the log", 1);
    done(arg, 0, NULL);
}

static int lg_health(void *self, sn_health_t *out)
{
    lg_t *l = self;
    out->ok = 1;
    snprintf(out->detail, sizeof(out->detail), "%lu notifications logged", l->sent);
    return 0;
}

static const sn_notifier_ops_t lg_ops = {
    .struct_size = sizeof(sn_notifier_ops_t),
    .notify = lg_notify,
};

static const sn_plugin_t lg_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_NOTIFIER,
    .type = "log",
    .version = "1.0.0",
    .summary = "one log line per notification: event, incident, severity, top hypothesis",
    .params = lg_params,
    .create = lg_create,
    .destroy = lg_destroy,
    .health = lg_health,
    .ops = &lg_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &lg_plugin;
}
