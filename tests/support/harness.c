/**
 * @file harness.c
 * Plugin test harness (see harness.h): drives real .so plugins through the real loader,
 * config validation and runtime, standing in for the engine with hooks that record what the
 * plugins hand to the pipeline.
 */
#include "harness.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifndef SN_PLUGIN_DIR_BUILD
#error "SN_PLUGIN_DIR_BUILD must be defined by the build"
#endif

/** How long sn_harness_free waits for one instance's stop(). */
#define HARNESS_STOP_MS 5000

typedef struct hinst {
    struct hinst *next; /**< newest first */
    sn_host_t host;
    const sn_plugin_t *plugin;
    void *self;
    sn_cfg_t *cfg;
    int started;
} hinst_t;

struct sn_harness {
    sn_runtime_t *rt;
    sn_loader_t *loader;
    sn_host_t loader_host; /**< stays here: the runtime recognises it by address */
    pthread_t loop_thread;
    struct event *wake;
    json_t *emitted, *audits, *decisions;
    hinst_t *insts;
};

typedef struct emit_rec {
    sn_harness_t *h;
    json_t *rec;
} emit_rec_t;

static void emit_on_loop(void *arg)
{
    emit_rec_t *e = arg;
    json_array_append_new(e->h->emitted, e->rec);
    free(e);
}

static int hook_emit_lines(void *eng, const char *instance, const char *buf, size_t len,
                           const char *origin)
{
    sn_harness_t *h = eng;
    int records = 0;
    for (size_t i = 0, start = 0; i <= len; i++) {
        if (i == len || buf[i] == '\n') {
            for (size_t k = start; k < i; k++)
                if (buf[k] != ' ' && buf[k] != '\t' && buf[k] != '\r') {
                    records++;
                    break;
                }
            start = i + 1;
        }
    }
    json_t *rec = json_pack("{s:s?,s:s?,s:s%}", "instance", instance, "origin", origin, "body",
                            buf ? buf : "", buf ? len : 0);
    if (!rec)
        return SN_EINVAL;
    if (pthread_equal(pthread_self(), h->loop_thread)) {
        json_array_append_new(h->emitted, rec);
        return records;
    }
    /* The arrays are read on the loop thread; hand the record over instead of locking. */
    emit_rec_t *e = malloc(sizeof(*e));
    if (!e) {
        json_decref(rec);
        return SN_ENOMEM;
    }
    e->h = h;
    e->rec = rec;
    int rc = sn_runtime_post(h->rt, emit_on_loop, e);
    if (rc != 0) {
        json_decref(rec);
        free(e);
        return rc;
    }
    return records;
}

static int hook_audit(void *eng, const char *actor, const char *action, const char *incident,
                      const json_t *detail)
{
    sn_harness_t *h = eng;
    json_t *rec = json_pack("{s:s?,s:s?,s:s?,s:o}", "actor", actor, "action", action, "incident",
                            incident, "detail", detail ? json_deep_copy(detail) : json_null());
    if (!rec)
        return SN_EINVAL;
    json_array_append_new(h->audits, rec);
    return 0;
}

static int hook_decide(void *eng, const char *incident, int approve, const char *actor,
                       const char *reason)
{
    sn_harness_t *h = eng;
    json_t *rec = json_pack("{s:s?,s:b,s:s?,s:s?}", "incident", incident, "approve", approve,
                            "actor", actor, "reason", reason);
    if (!rec)
        return SN_EINVAL;
    json_array_append_new(h->decisions, rec);
    return 0;
}

/* Routes are accepted (so notifiers start) but not served: there is no HTTP API here. */
static int hook_route_add(void *eng, const char *instance, const char *method, const char *path,
                          sn_route_fn fn, void *self)
{
    (void)eng;
    (void)instance;
    (void)fn;
    (void)self;
    return method && path ? 0 : SN_EINVAL;
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

sn_harness_t *sn_harness_new(void)
{
    sn_harness_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->loop_thread = pthread_self();
    h->emitted = json_array();
    h->audits = json_array();
    h->decisions = json_array();
    h->rt = sn_runtime_new(2);
    if (!h->rt || !h->emitted || !h->audits || !h->decisions)
        goto fail;
    h->wake = evtimer_new(sn_runtime_base(h->rt), wake_cb, h);
    if (!h->wake)
        goto fail;
    sn_engine_hooks_t hooks = {
        .emit_lines = hook_emit_lines,
        .audit = hook_audit,
        .route_add = hook_route_add,
        .decide = hook_decide,
    };
    sn_runtime_set_hooks(h->rt, &hooks, h);
    sn_host_fill(h->rt, &h->loader_host, NULL);
    h->loader = sn_loader_new(SN_PLUGIN_DIR_BUILD, &h->loader_host);
    if (!h->loader)
        goto fail;
    return h;
fail:
    sn_harness_free(h);
    return NULL;
}

void sn_result_done(void *arg, int status, json_t *result)
{
    sn_result_t *r = arg;
    if (r->result)
        json_decref(r->result);
    r->done = 1;
    r->status = status;
    r->result = result ? json_incref(result) : NULL;
}

void sn_result_clear(sn_result_t *r)
{
    if (r->result)
        json_decref(r->result);
    memset(r, 0, sizeof(*r));
}

/** One loop round that waits at most @p ms. */
static void run_once(sn_harness_t *h, int64_t ms)
{
    if (ms < 1)
        ms = 1;
    if (ms > 50)
        ms = 50;
    struct timeval tv = {0, (suseconds_t)(ms * 1000)};
    evtimer_add(h->wake, &tv);
    event_base_loop(sn_runtime_base(h->rt), EVLOOP_ONCE);
    evtimer_del(h->wake);
}

int sn_harness_wait(sn_harness_t *h, sn_result_t *r, int64_t timeout_ms)
{
    int64_t deadline = sn_mono_ms() + timeout_ms;
    while (!r->done) {
        int64_t left = deadline - sn_mono_ms();
        if (left <= 0)
            return SN_ETIMEDOUT;
        run_once(h, left);
    }
    return 0;
}

void sn_harness_run_ms(sn_harness_t *h, int64_t ms)
{
    int64_t deadline = sn_mono_ms() + ms;
    for (int64_t left = ms; left > 0; left = deadline - sn_mono_ms())
        run_once(h, left);
}

sn_runtime_t *sn_harness_runtime(sn_harness_t *h)
{
    return h->rt;
}

json_t *sn_harness_emitted(sn_harness_t *h)
{
    return h->emitted;
}

json_t *sn_harness_audits(sn_harness_t *h)
{
    return h->audits;
}

json_t *sn_harness_decisions(sn_harness_t *h)
{
    return h->decisions;
}

/** Join the diagnostics into one phrase for err->msg. */
static void diag_to_err(const sn_diag_t *d, sn_err_t *err, const char *fallback)
{
    size_t off = 0;
    err->msg[0] = '\0';
    for (size_t i = 0; i < d->n && off + 1 < sizeof(err->msg); i++) {
        int w = snprintf(err->msg + off, sizeof(err->msg) - off, "%s%s", i ? "; " : "", d->msgs[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    if (!err->msg[0])
        snprintf(err->msg, sizeof(err->msg), "%s", fallback);
}

void *sn_harness_create(sn_harness_t *h, sn_kind_t kind, const char *type, const char *settings,
                        const sn_plugin_t **plugin, sn_err_t *err)
{
    sn_err_t local;
    sn_diag_t d;
    char why[256] = "";
    char name[160], instance[200];
    char *text = NULL;
    sn_conf_t *conf = NULL;
    hinst_t *in = NULL;
    void *result = NULL;
    if (!err)
        err = &local;
    err->msg[0] = '\0';
    sn_diag_init(&d);
    if (plugin)
        *plugin = NULL;

    const sn_loaded_t *ld = sn_loader_get(h->loader, kind, type, why, sizeof(why));
    if (!ld) {
        snprintf(err->msg, sizeof(err->msg), "%s", why[0] ? why : "cannot load plugin");
        goto out;
    }
    const char *kname = sn_kind_name(kind);
    snprintf(name, sizeof(name), "%s", type);
    for (int n = 2;; n++) {
        int taken = 0;
        snprintf(instance, sizeof(instance), "%s:%s", kname, name);
        for (hinst_t *p = h->insts; p; p = p->next)
            taken |= strcmp(p->host.instance ? p->host.instance : "", instance) == 0;
        if (!taken)
            break;
        snprintf(name, sizeof(name), "%s_%d", type, n);
    }

    size_t tlen = strlen(instance) + (settings ? strlen(settings) : 0) + 8;
    text = malloc(tlen);
    if (!text) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        goto out;
    }
    snprintf(text, tlen, "[%s]\n%s\n", instance, settings ? settings : "");
    conf = sn_conf_load_string("<test>", text, &d);
    if (!conf || conf->nsec < 1) {
        diag_to_err(&d, err, "cannot parse settings");
        goto out;
    }
    in = calloc(1, sizeof(*in));
    if (!in) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        goto out;
    }
    in->plugin = ld->plugin;
    in->cfg = sn_cfg_build(conf, &conf->sections[0], ld->plugin->params, NULL, &d);
    if (!in->cfg) {
        diag_to_err(&d, err, "invalid settings");
        goto out;
    }
    sn_host_fill(h->rt, &in->host, instance);
    int rc = ld->plugin->create(&in->host, in->cfg, &in->self, err);
    if (rc != 0) {
        if (!err->msg[0])
            snprintf(err->msg, sizeof(err->msg), "create failed (%d)", rc);
        in->self = NULL;
        goto out;
    }
    if (ld->plugin->check && (rc = ld->plugin->check(in->self, err)) != 0) {
        if (!err->msg[0])
            snprintf(err->msg, sizeof(err->msg), "check failed (%d)", rc);
        goto out;
    }
    if (ld->plugin->start && (rc = ld->plugin->start(in->self)) != 0) {
        snprintf(err->msg, sizeof(err->msg), "start failed (%d)", rc);
        goto out;
    }
    in->started = 1;
    in->next = h->insts;
    h->insts = in;
    if (plugin)
        *plugin = ld->plugin;
    result = in->self;
    in = NULL;
out:
    if (in) {
        if (in->self && in->plugin->destroy)
            in->plugin->destroy(in->self);
        if (in->cfg)
            sn_cfg_free(in->cfg);
        free(in);
    }
    if (conf)
        sn_conf_free(conf);
    free(text);
    sn_diag_free(&d);
    return result;
}

static void stop_instance(sn_harness_t *h, hinst_t *in)
{
    if (in->started && in->plugin->stop) {
        /* On the heap: a stop that never completes must not write into a dead frame. */
        sn_result_t *r = calloc(1, sizeof(*r));
        if (r) {
            in->plugin->stop(in->self, sn_result_done, r);
            if (sn_harness_wait(h, r, HARNESS_STOP_MS) != 0) {
                fprintf(stderr, "harness: %s did not finish stopping within %d ms\n",
                        in->host.instance ? in->host.instance : "?", HARNESS_STOP_MS);
            } else {
                sn_result_clear(r);
                free(r);
            }
        }
    }
    if (in->plugin->destroy)
        in->plugin->destroy(in->self);
    if (in->cfg)
        sn_cfg_free(in->cfg);
}

void sn_harness_free(sn_harness_t *h)
{
    if (!h)
        return;
    while (h->insts) {
        hinst_t *in = h->insts;
        h->insts = in->next;
        stop_instance(h, in);
        free(in);
    }
    if (h->wake)
        event_free(h->wake);
    /* The runtime runs leftover callbacks while the plugin code is still loaded. */
    sn_runtime_free(h->rt);
    if (h->loader)
        sn_loader_free(h->loader);
    json_decref(h->emitted);
    json_decref(h->audits);
    json_decref(h->decisions);
    free(h);
}
