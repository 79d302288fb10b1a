/**
 * @file lease.c
 * Ownership of open incidents among sentineld instances sharing one state store (scale-out).
 *
 * An instance works on an incident only while it holds the incident's lease in the store
 * (state_lease on its checkpoint, owner = instance_id, lease_ttl long). It renews every lease
 * it holds every lease_ttl / 3, renews once more right before an execution (so a paused
 * instance that lost the lease never acts), and every lease_ttl scans the store for open
 * incidents nobody holds — those of a killed instance, once their leases expire — and takes
 * them over at their last checkpoint. A lost lease (another owner, or a newer checkpoint
 * elsewhere) drops the incident from this instance at once.
 *
 * Without a store offering leases, or with lease_ttl = 0, one instance owns everything it
 * loads (the single-instance behaviour).
 */
#include "engine-internal.h"

#include <stdlib.h>
#include <string.h>

static const sn_store_ops_t *ops_of(sn_engine_t *e)
{
    return e->state ? e->state->in->mod->plugin->ops : NULL;
}

int sn_lease_enabled(sn_engine_t *e)
{
    const sn_store_ops_t *ops = ops_of(e);
    return ops && (ops->caps & SN_STORE_STATE) && ops->state_lease &&
           e->model->set.lease_ttl_ms > 0;
}

void sn_lease_lost(sn_incident_t *inc, const char *why)
{
    if (inc->lost)
        return;
    inc->lost = 1;
    inc->open = 0;
    inc->waiting = 0;
    sn_log(SN_LOG_WARN, "lease", inc->id, NULL,
           "%s: another instance owns this incident now; dropped here", why);
    sn_metric(inc->eng->rt, SN_METRIC_COUNTER, "incident_leases_lost_total",
              "Incidents another instance took over", NULL, 1);
}

/* ---- renewal ---- */

typedef struct renew_ctx {
    sn_engine_t *e;
    char id[40];
    void (*then)(sn_incident_t *, int ok);
} renew_ctx_t;

static void renewed(void *arg, int status, json_t *result)
{
    (void)result;
    renew_ctx_t *r = arg;
    sn_incident_t *inc = sn_incident_find(r->e, r->id);
    void (*then)(sn_incident_t *, int) = r->then;
    free(r);
    if (!inc)
        return;
    inc->lease_busy = 0;
    int64_t ttl = inc->eng->model->set.lease_ttl_ms;
    if (status == 0) {
        inc->lease_until = sn_mono_ms() + ttl;
        inc->lease_renew_at = sn_mono_ms() + ttl / 3;
    } else if (status == SN_ECONFLICT) {
        sn_lease_lost(inc, "lease held by another instance");
    } else {
        /* Not saved yet (SN_ENOTFOUND) or the store hiccuped: try again soon. */
        inc->lease_renew_at = sn_mono_ms() + 1000;
    }
    if (then)
        then(inc, status == 0);
}

static void renew(sn_incident_t *inc, void (*then)(sn_incident_t *, int ok))
{
    sn_engine_t *e = inc->eng;
    renew_ctx_t *r = malloc(sizeof(*r));
    if (!r) {
        if (then)
            then(inc, 0);
        return;
    }
    r->e = e;
    r->then = then;
    snprintf(r->id, sizeof(r->id), "%s", inc->id);
    inc->lease_busy = 1;
    ops_of(e)->state_lease(e->state->self, inc->id, e->instance_id, e->model->set.lease_ttl_ms,
                           renewed, r);
}

void sn_lease_claim(sn_incident_t *inc)
{
    if (sn_lease_enabled(inc->eng) && !inc->lease_busy && inc->open)
        renew(inc, NULL);
}

void sn_lease_before_acting(sn_incident_t *inc, void (*then)(sn_incident_t *, int ok))
{
    if (!sn_lease_enabled(inc->eng) || inc->version == 0) {
        then(inc, 1);
        return;
    }
    renew(inc, then);
}

/* ---- takeover ---- */

static void taken_loaded(void *arg, int status, json_t *result)
{
    sn_engine_t *e = arg;
    if (status != 0)
        return;
    sn_incident_t *inc = sn_workflow_adopt(e, result);
    if (inc) {
        inc->lease_until = sn_mono_ms() + e->model->set.lease_ttl_ms;
        inc->lease_renew_at = sn_mono_ms() + e->model->set.lease_ttl_ms / 3;
    }
}

typedef struct take_ctx {
    sn_engine_t *e;
    char id[64];
} take_ctx_t;

static void taken(void *arg, int status, json_t *result)
{
    (void)result;
    take_ctx_t *t = arg;
    sn_engine_t *e = t->e;
    if (status == 0 && !sn_incident_find(e, t->id))
        ops_of(e)->state_load(e->state->self, t->id, taken_loaded, e);
    free(t);
}

void sn_lease_take(sn_engine_t *e, const char *id)
{
    take_ctx_t *t = malloc(sizeof(*t));
    if (!t)
        return;
    t->e = e;
    snprintf(t->id, sizeof(t->id), "%s", id);
    ops_of(e)->state_lease(e->state->self, id, e->instance_id, e->model->set.lease_ttl_ms, taken,
                           t);
}

static void listed(void *arg, int status, json_t *result)
{
    sn_engine_t *e = arg;
    e->lease_scanning = 0;
    if (status != 0 || e->shutting_down)
        return;
    size_t i;
    json_t *id;
    json_array_foreach(json_object_get(result, "ids"), i, id)
    {
        const char *sid = json_string_value(id);
        if (sid && !sn_outbox_is(sid) && !sn_silence_is(sid) && !sn_incident_find(e, sid))
            sn_lease_take(e, sid);
    }
}

void sn_lease_scan(sn_engine_t *e)
{
    if (e->lease_scanning)
        return;
    e->lease_scanning = 1;
    ops_of(e)->state_list_open(e->state->self, listed, e);
}

void sn_lease_tick(sn_engine_t *e)
{
    if (!sn_lease_enabled(e))
        return;
    int64_t now = sn_mono_ms();
    for (sn_incident_t *inc = e->incidents; inc; inc = inc->next) {
        if (inc->open && !inc->lost && !inc->gathering && inc->version > 0 && !inc->lease_busy &&
            inc->lease_renew_at <= now)
            renew(inc, NULL);
    }
    if (now >= e->lease_next_scan) {
        e->lease_next_scan = now + e->model->set.lease_ttl_ms;
        sn_lease_scan(e);
    }
}
