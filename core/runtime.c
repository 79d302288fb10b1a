/**
 * @file runtime.c
 * Runtime lifecycle and the sn_host_t table every plugin instance receives: it forwards logs,
 * metrics, configuration, timers, fd watches, offload, post, HTTP and secrets to the runtime's
 * services, and emit/audit/routes/decisions to the engine's hooks.
 *
 * Finding the runtime from a host call: sn_host_fill points h->instance at a runtime-owned copy
 * of the name that is preceded by a back-pointer (sn_host_name_t), so the table may be copied
 * freely. The loader's table (instance == NULL) is recognised by its address instead.
 */
#include "runtime-internal.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <stdlib.h>
#include <string.h>

#define SN_HOST_MAGIC 0x534e484fu /* "SNHO" */

/* Every live runtime, so calls that carry no host (timer_del, req_*) find theirs. */
static pthread_mutex_t g_rt_mu = PTHREAD_MUTEX_INITIALIZER;
static sn_runtime_t **g_rts;
static size_t g_nrts;
static _Atomic uint64_t g_timer_ids = 1;
static pthread_once_t g_evthread_once = PTHREAD_ONCE_INIT;

/** A timer; the plugin sees only its id, so a stale handle can never dangle. */
struct sn_rtimer {
    sn_rtimer_t *prev, *next;
    sn_runtime_t *rt;
    uint64_t id;
    struct event *ev;
    void (*cb)(void *);
    void *arg;
    int repeat;
};

struct sn_watch {
    struct sn_watch *prev, *next;
    sn_runtime_t *rt;
    struct event *ev;
    void (*cb)(int fd, int events, void *);
    void *arg;
};

static void evthread_init(void)
{
    evthread_use_pthreads();
}

static void rt_register(sn_runtime_t *rt)
{
    pthread_mutex_lock(&g_rt_mu);
    sn_runtime_t **n = realloc(g_rts, (g_nrts + 1) * sizeof(*n));
    if (n) {
        g_rts = n;
        g_rts[g_nrts++] = rt;
    }
    pthread_mutex_unlock(&g_rt_mu);
}

static void rt_unregister(sn_runtime_t *rt)
{
    pthread_mutex_lock(&g_rt_mu);
    for (size_t i = 0; i < g_nrts; i++) {
        if (g_rts[i] == rt) {
            g_rts[i] = g_rts[--g_nrts];
            break;
        }
    }
    if (g_nrts == 0) {
        free(g_rts);
        g_rts = NULL;
    }
    pthread_mutex_unlock(&g_rt_mu);
}

static sn_runtime_t *host_rt(const sn_host_t *h)
{
    if (!h)
        return NULL;
    if (h->instance) {
        const sn_host_name_t *n =
            (const sn_host_name_t *)(const void *)(h->instance - offsetof(sn_host_name_t, name));
        return n->magic == SN_HOST_MAGIC ? n->rt : NULL;
    }
    sn_runtime_t *found = NULL;
    pthread_mutex_lock(&g_rt_mu);
    for (size_t i = 0; i < g_nrts && !found; i++)
        for (size_t j = 0; j < g_rts[i]->nloader_hosts; j++)
            if (g_rts[i]->loader_hosts[j] == h)
                found = g_rts[i];
    /* A copied loader table still works while the process has one runtime. */
    if (!found && g_nrts == 1)
        found = g_rts[0];
    pthread_mutex_unlock(&g_rt_mu);
    return found;
}

sn_runtime_t *sn_runtime_new(int offload_threads)
{
    sn_runtime_t *rt = calloc(1, sizeof(*rt));
    if (!rt)
        return NULL;
    pthread_once(&g_evthread_once, evthread_init);
    rt->base = event_base_new();
    rt->metrics = sn_metrics_new();
    if (!rt->base || !rt->metrics)
        goto fail;
    if (sn_postq_init(rt) != 0)
        goto fail;
    if (sn_pool_start(rt, offload_threads > 0 ? offload_threads : 2) != 0)
        goto fail;
    rt->http = sn_httpc_new(rt);
    if (!rt->http)
        goto fail;
    rt_register(rt);
    return rt;
fail:
    sn_runtime_free(rt);
    return NULL;
}

void sn_runtime_free(sn_runtime_t *rt)
{
    if (!rt)
        return;
    rt->freeing = 1;
    rt_unregister(rt);
    /* HTTP first: its done callbacks may still post or offload. */
    if (rt->http)
        sn_httpc_free(rt->http);
    rt->http = NULL;
    sn_pool_stop(rt);
    sn_postq_fini(rt);
    while (rt->timers) {
        sn_rtimer_t *t = rt->timers;
        rt->timers = t->next;
        event_free(t->ev);
        free(t);
    }
    while (rt->watches) {
        struct sn_watch *w = rt->watches;
        rt->watches = w->next;
        event_free(w->ev);
        free(w);
    }
    while (rt->names) {
        sn_host_name_t *n = rt->names;
        rt->names = n->next;
        n->magic = 0;
        free(n);
    }
    free(rt->loader_hosts);
    sn_metrics_free(rt->metrics);
    if (rt->base)
        event_base_free(rt->base);
    free(rt);
}

struct event_base *sn_runtime_base(sn_runtime_t *rt)
{
    return rt->base;
}

void sn_runtime_set_hooks(sn_runtime_t *rt, const sn_engine_hooks_t *hooks, void *eng)
{
    if (hooks)
        rt->hooks = *hooks;
    else
        memset(&rt->hooks, 0, sizeof(rt->hooks));
    rt->eng = eng;
}

/* ---- timers and watches ---------------------------------------------------------------- */

static void timer_unlink(sn_rtimer_t *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        t->rt->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

static void timer_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sn_rtimer_t *t = arg;
    void (*cb)(void *) = t->cb;
    void *cbarg = t->arg;
    if (!t->repeat) {
        /* One-shot timers release themselves; a later timer_del finds nothing. */
        pthread_mutex_lock(&g_rt_mu);
        timer_unlink(t);
        pthread_mutex_unlock(&g_rt_mu);
        event_free(t->ev);
        free(t);
    }
    cb(cbarg);
}

static sn_timer_t *h_timer_add(const sn_host_t *h, int64_t ms, int repeat, void (*cb)(void *),
                               void *arg)
{
    sn_runtime_t *rt = host_rt(h);
    if (!rt || !cb || ms < 0)
        return NULL;
    sn_rtimer_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->rt = rt;
    t->cb = cb;
    t->arg = arg;
    t->repeat = repeat;
    t->id = atomic_fetch_add(&g_timer_ids, 1);
    t->ev = event_new(rt->base, -1, repeat ? EV_PERSIST : 0, timer_fire, t);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    if (!t->ev || event_add(t->ev, &tv) != 0) {
        if (t->ev)
            event_free(t->ev);
        free(t);
        return NULL;
    }
    pthread_mutex_lock(&g_rt_mu); /* h_timer_del walks every runtime's list */
    t->next = rt->timers;
    if (rt->timers)
        rt->timers->prev = t;
    rt->timers = t;
    pthread_mutex_unlock(&g_rt_mu);
    return (sn_timer_t *)(uintptr_t)t->id;
}

static void h_timer_del(sn_timer_t *handle)
{
    uint64_t id = (uint64_t)(uintptr_t)handle;
    sn_rtimer_t *t = NULL;
    if (!id)
        return;
    pthread_mutex_lock(&g_rt_mu);
    for (size_t i = 0; i < g_nrts && !t; i++)
        for (sn_rtimer_t *p = g_rts[i]->timers; p; p = p->next)
            if (p->id == id) {
                t = p;
                break;
            }
    if (t)
        timer_unlink(t);
    pthread_mutex_unlock(&g_rt_mu);
    if (!t)
        return;
    event_free(t->ev);
    free(t);
}

static void watch_fire(evutil_socket_t fd, short what, void *arg)
{
    struct sn_watch *w = arg;
    int ev = ((what & EV_READ) ? 1 : 0) | ((what & EV_WRITE) ? 2 : 0);
    w->cb((int)fd, ev, w->arg);
}

static sn_watch_t *h_fd_watch(const sn_host_t *h, int fd, int events,
                              void (*cb)(int fd, int events, void *), void *arg)
{
    sn_runtime_t *rt = host_rt(h);
    short what = EV_PERSIST | ((events & 1) ? EV_READ : 0) | ((events & 2) ? EV_WRITE : 0);
    if (!rt || !cb || fd < 0 || !(events & 3))
        return NULL;
    struct sn_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->rt = rt;
    w->cb = cb;
    w->arg = arg;
    w->ev = event_new(rt->base, fd, what, watch_fire, w);
    if (!w->ev || event_add(w->ev, NULL) != 0) {
        if (w->ev)
            event_free(w->ev);
        free(w);
        return NULL;
    }
    w->next = rt->watches;
    if (rt->watches)
        rt->watches->prev = w;
    rt->watches = w;
    return w;
}

static void h_fd_unwatch(sn_watch_t *w)
{
    if (!w)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        w->rt->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    event_free(w->ev);
    free(w);
}

/* ---- the rest of the host table ------------------------------------------------------- */

static void h_log(const sn_host_t *h, sn_log_level_t lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sn_logv(lvl, h ? h->instance : NULL, NULL, NULL, fmt, ap);
    va_end(ap);
}

static void h_metric(const sn_host_t *h, sn_metric_kind_t kind, const char *name, const char *help,
                     double v)
{
    sn_runtime_t *rt = host_rt(h);
    if (!rt)
        return;
    if (!h->instance) {
        sn_metric(rt, kind, name, help, NULL, v);
        return;
    }
    char esc[512], labels[600];
    sn_metric_escape(esc, sizeof(esc), h->instance);
    snprintf(labels, sizeof(labels), "instance=\"%s\"", esc);
    sn_metric(rt, kind, name, help, labels, v);
}

/** Render the instance label and @p pairs as one label set; 0, or -1 when a pair is refused. */
static int render_labels(const char *instance, const char *const *pairs, char *out, size_t cap)
{
    size_t o = 0;
    char esc[512];
    out[0] = '\0';
    if (instance) {
        sn_metric_escape(esc, sizeof(esc), instance);
        o = (size_t)snprintf(out, cap, "instance=\"%s\"", esc);
    }
    for (size_t i = 0; pairs && pairs[i]; i += 2) {
        if (i / 2 >= SN_METRIC_MAX_LABELS || !pairs[i + 1] || strcmp(pairs[i], "instance") == 0)
            return -1;
        sn_metric_escape(esc, sizeof(esc), pairs[i + 1]);
        int n = snprintf(out + o, cap - o, "%s%s=\"%s\"", o ? "," : "", pairs[i], esc);
        if (n < 0 || (size_t)n >= cap - o)
            return -1;
        o += (size_t)n;
    }
    return 0;
}

static void h_metric_labels(const sn_host_t *h, sn_metric_kind_t kind, const char *name,
                            const char *help, const char *const *labels, double v)
{
    sn_runtime_t *rt = host_rt(h);
    if (!rt)
        return;
    char set[2048];
    /* A refused set still reaches sn_metric as a malformed one, so it is counted as invalid. */
    if (render_labels(h->instance, labels, set, sizeof(set)) != 0)
        snprintf(set, sizeof(set), "=");
    sn_metric(rt, kind, name, help, set, v);
}

static int h_offload(const sn_host_t *h, void (*work)(void *), void (*done)(void *), void *arg)
{
    sn_runtime_t *rt = host_rt(h);
    return rt ? sn_runtime_offload(rt, work, done, arg) : SN_EINVAL;
}

static int h_post(const sn_host_t *h, void (*fn)(void *), void *arg)
{
    sn_runtime_t *rt = host_rt(h);
    return rt ? sn_runtime_post(rt, fn, arg) : SN_EINVAL;
}

static int h_http(const sn_host_t *h, const sn_http_request_t *req, sn_http_done_fn done, void *arg)
{
    sn_runtime_t *rt = host_rt(h);
    return rt ? sn_runtime_http(rt, req, done, arg) : SN_EINVAL;
}

static char *h_secret(const sn_host_t *h, const char *ref)
{
    char why[256];
    (void)h;
    return ref ? sn_expand(ref, why, sizeof(why)) : NULL;
}

static int h_emit_lines(const sn_host_t *h, const char *buf, size_t len, const char *origin)
{
    sn_runtime_t *rt = host_rt(h);
    if (!rt || !rt->hooks.emit_lines)
        return SN_ENOTSUP;
    return rt->hooks.emit_lines(rt->eng, h->instance, buf, len, origin);
}

static int h_emit_lines_acked(const sn_host_t *h, const char *buf, size_t len, const char *origin,
                              sn_done_fn done, void *arg)
{
    sn_runtime_t *rt = host_rt(h);
    if (!rt || !rt->hooks.emit_lines_acked || !done)
        return rt && !done ? SN_EINVAL : SN_ENOTSUP;
    return rt->hooks.emit_lines_acked(rt->eng, h->instance, buf, len, origin, done, arg);
}

static uint32_t h_check_lines(const sn_host_t *h, const char *buf, size_t len, char *why, size_t wl)
{
    sn_runtime_t *rt = host_rt(h);
    if (wl)
        why[0] = '\0';
    if (!rt || !rt->hooks.check_lines)
        return 0;
    return rt->hooks.check_lines(rt->eng, buf, len, why, wl);
}

static int h_audit(const sn_host_t *h, const char *actor, const char *action, const char *incident,
                   const json_t *detail)
{
    sn_runtime_t *rt = host_rt(h);
    if (!rt || !rt->hooks.audit)
        return SN_ENOTSUP;
    return rt->hooks.audit(rt->eng, actor, action, incident, detail);
}

static int64_t h_now_ms(const sn_host_t *h)
{
    (void)h;
    return sn_now_ms();
}

static int64_t h_mono_ms(const sn_host_t *h)
{
    (void)h;
    return sn_mono_ms();
}

static int h_route_add(const sn_host_t *h, const char *method, const char *path, sn_route_fn fn,
                       void *self)
{
    sn_runtime_t *rt = host_rt(h);
    if (!rt || !rt->hooks.route_add)
        return SN_ENOTSUP;
    return rt->hooks.route_add(rt->eng, h->instance, method, path, fn, self);
}

/* Route requests carry no host: the runtime whose engine registered request hooks serves them
 * (one engine per process). */
static sn_engine_hooks_t req_hooks(void)
{
    sn_engine_hooks_t hk = {0};
    pthread_mutex_lock(&g_rt_mu);
    for (size_t i = 0; i < g_nrts; i++)
        if (g_rts[i]->hooks.req_body || g_rts[i]->hooks.req_header || g_rts[i]->hooks.req_reply) {
            hk = g_rts[i]->hooks;
            break;
        }
    pthread_mutex_unlock(&g_rt_mu);
    return hk;
}

static const char *h_req_body(sn_route_req_t *r, size_t *len)
{
    sn_engine_hooks_t hk = req_hooks();
    if (!hk.req_body) {
        if (len)
            *len = 0;
        return NULL;
    }
    return hk.req_body(r, len);
}

static const char *h_req_header(sn_route_req_t *r, const char *name)
{
    sn_engine_hooks_t hk = req_hooks();
    return hk.req_header ? hk.req_header(r, name) : NULL;
}

static void h_req_reply(sn_route_req_t *r, int status, const char *content_type, const char *body,
                        size_t len)
{
    sn_engine_hooks_t hk = req_hooks();
    if (hk.req_reply)
        hk.req_reply(r, status, content_type, body, len);
}

static int h_decide(const sn_host_t *h, const char *incident, int approve, const char *actor,
                    const char *reason)
{
    sn_runtime_t *rt = host_rt(h);
    if (!rt || !rt->hooks.decide)
        return SN_ENOTSUP;
    return rt->hooks.decide(rt->eng, incident, approve, actor, reason);
}

static int h_parse_time(const sn_host_t *h, const char *text, int64_t *out_ms)
{
    (void)h;
    return sn_parse_time_ms(text, out_ms);
}

void sn_host_fill(sn_runtime_t *rt, sn_host_t *h, const char *instance)
{
    memset(h, 0, sizeof(*h));
    h->abi_major = SN_ABI_MAJOR;
    h->abi_minor = SN_ABI_MINOR;
    h->struct_size = (uint32_t)sizeof(sn_host_t);
    if (instance) {
        size_t len = strlen(instance);
        sn_host_name_t *n = malloc(sizeof(*n) + len + 1);
        if (n) {
            n->rt = rt;
            n->magic = SN_HOST_MAGIC;
            memcpy(n->name, instance, len + 1);
            n->next = rt->names;
            rt->names = n;
            h->instance = n->name;
        }
    } else {
        const sn_host_t **lh =
            realloc(rt->loader_hosts, (rt->nloader_hosts + 1) * sizeof(*rt->loader_hosts));
        if (lh) {
            rt->loader_hosts = lh;
            rt->loader_hosts[rt->nloader_hosts++] = h;
        }
    }
    h->log = h_log;
    h->metric = h_metric;
    h->metric_labels = h_metric_labels;
    h->check_lines = h_check_lines;
    h->parse_time = h_parse_time;
    h->cfg_str = sn_cfg_str;
    h->cfg_int = sn_cfg_int;
    h->cfg_double = sn_cfg_double;
    h->cfg_bool = sn_cfg_bool;
    h->cfg_list = sn_cfg_list;
    h->timer_add = h_timer_add;
    h->timer_del = h_timer_del;
    h->fd_watch = h_fd_watch;
    h->fd_unwatch = h_fd_unwatch;
    h->offload = h_offload;
    h->post = h_post;
    h->http = h_http;
    h->secret = h_secret;
    h->emit_lines = h_emit_lines;
    h->emit_lines_acked = h_emit_lines_acked;
    h->audit = h_audit;
    h->now_ms = h_now_ms;
    h->mono_ms = h_mono_ms;
    h->route_add = h_route_add;
    h->req_body = h_req_body;
    h->req_header = h_req_header;
    h->req_reply = h_req_reply;
    h->decide = h_decide;
}
