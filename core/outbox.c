/**
 * @file outbox.c
 * The durable outbox: every notification is written to the state store before a notifier sees
 * it and marked after, so none is lost to a crash, a restart, a reload or a receiver that is
 * down for an hour.
 *
 * An entry is a state-store document "outbox/<uuid>" (open while it waits, closed once sent or
 * dead) holding the notifier instance, the event, the incident as it was when the event
 * happened, the attempts so far and when the next one is due. A failed delivery (after the
 * notifier's own quick retries) is tried again after a full-jitter exponential backoff
 * (uniform in [0, min(10 min, notify_backoff x 2^attempts)]) up to notify_retries times, then it
 * is dead:
 * kept, listed by GET /v1/notifications?state=dead, counted in /metrics, logged. Pending entries
 * come back on start. A notifier answering SN_EINVAL (the receiver refused the content) is not
 * retried. Entries of one incident for one notifier go out in order. Instances sharing a store
 * send each entry once: the sender takes the
 * entry's lease, reloads it and sends only if it is still open.
 *
 * Without a state store the outbox lives in memory only (still retried, lost on a crash).
 */
#include "engine-internal.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define SN_OUTBOX_MAX 10000 /* entries in memory; more go dead at once, loudly */
#define SN_OUTBOX_DEAD_KEPT 1000
#define SN_OUTBOX_LEASE_MS 120000
#define SN_OUTBOX_CAP_MS 600000

typedef enum { OB_PENDING, OB_SENT, OB_DEAD } ob_state_t;

struct sn_outmsg {
    struct sn_outmsg *next;
    sn_engine_t *e;
    char id[64]; /* "outbox/<uuid>" */
    char incident[40];
    char notifier[128]; /* instance name */
    char event[32];
    json_t *doc; /* the incident when the event happened */
    char rid[80];
    int attempts;
    int64_t next_at; /* wall ms */
    int64_t created;
    int64_t version; /* last version saved, 0 = never */
    int busy;        /* a save, lease, load or send is in flight */
    ob_state_t state;
    char error[160];
};

static const char *state_name(ob_state_t s)
{
    return s == OB_SENT ? "sent" : s == OB_DEAD ? "dead" : "pending";
}

static const sn_store_ops_t *store(sn_engine_t *e)
{
    return e->state ? e->state->in->mod->plugin->ops : NULL;
}

static json_t *record(const sn_outmsg_t *m)
{
    char created[32], next[32];
    sn_format_time_ms(m->created, created);
    sn_format_time_ms(m->next_at, next);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:I,s:s,s:O}", "id", m->id, "incident",
                     m->incident, "notifier", m->notifier, "event", m->event, "state",
                     state_name(m->state), "attempts", m->attempts, "created_at", created,
                     "next_at", next, "error", m->error, "next_at_ms", (json_int_t)m->next_at,
                     "request_id", m->rid, "doc", m->doc ? m->doc : json_null());
}

static void unlink_msg(sn_engine_t *e, sn_outmsg_t *m)
{
    for (sn_outmsg_t **pp = &e->outbox; *pp; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            e->noutbox--;
            return;
        }
    }
}

static void free_msg(sn_outmsg_t *m)
{
    json_decref(m->doc);
    free(m);
}

/* Dead entries stay listed (the newest SN_OUTBOX_DEAD_KEPT) without the incident copy. */
static void trim_dead(sn_engine_t *e)
{
    size_t dead = 0;
    for (sn_outmsg_t **pp = &e->outbox; *pp;) {
        sn_outmsg_t *m = *pp;
        if (m->state == OB_DEAD && !m->busy && ++dead > SN_OUTBOX_DEAD_KEPT) {
            *pp = m->next;
            e->noutbox--;
            free_msg(m);
            continue;
        }
        pp = &m->next;
    }
}

/* ---- persistence ---- */

static void saved(void *arg, int status, json_t *result)
{
    (void)result;
    sn_outmsg_t *m = arg;
    sn_engine_t *e = m->e;
    m->busy = 0;
    if (status == 0) {
        m->version++;
    } else {
        sn_log(SN_LOG_ERROR, "outbox", m->incident, NULL,
               "could not record notification %s (%d): it is kept in memory and retried", m->id,
               status);
        if (m->state == OB_PENDING && m->next_at < sn_now_ms() + e->model->set.notify_backoff_ms)
            m->next_at = sn_now_ms() + e->model->set.notify_backoff_ms;
    }
    if (m->state == OB_SENT && status == 0) {
        unlink_msg(e, m);
        free_msg(m);
        return;
    }
    if (m->state == OB_DEAD) {
        json_decref(m->doc);
        m->doc = NULL;
        trim_dead(e);
    }
}

static void save(sn_outmsg_t *m)
{
    sn_engine_t *e = m->e;
    const sn_store_ops_t *ops = store(e);
    if (!ops) {
        saved(m, 0, NULL);
        return;
    }
    json_t *doc = record(m);
    m->busy = 1;
    ops->state_save(e->state->self, m->id, m->version + 1, m->state == OB_PENDING, doc, saved, m);
    json_decref(doc);
}

/* ---- delivery ---- */

static int tries(const sn_engine_t *e)
{
    return (int)e->model->set.notify_retries;
}

static int64_t backoff_ms(const sn_engine_t *e, int attempts)
{
    int64_t cap = e->model->set.notify_backoff_ms;
    for (int i = 0; i < attempts && cap < SN_OUTBOX_CAP_MS; i++)
        cap *= 2;
    if (cap > SN_OUTBOX_CAP_MS)
        cap = SN_OUTBOX_CAP_MS;
    uint64_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (uint64_t)sn_mono_ms() * 2654435761u; /* jitter only: any spread will do */
    return cap / 10 + (int64_t)(r % (uint64_t)cap);
}

static void delivered(void *arg, int status, json_t *result)
{
    (void)result;
    sn_outmsg_t *m = arg;
    sn_engine_t *e = m->e;
    m->attempts++;
    if (status == 0) {
        m->state = OB_SENT;
        sn_metric(e->rt, SN_METRIC_COUNTER, "notifications_total", "Notifications delivered", NULL,
                  1);
    } else if (m->attempts >= tries(e) || status == SN_EINVAL) {
        m->state = OB_DEAD;
        if (status == SN_EINVAL)
            snprintf(m->error, sizeof(m->error),
                     "refused by the receiver as invalid: not retried (attempt %d)", m->attempts);
        else
            snprintf(m->error, sizeof(m->error), "gave up after %d attempts (last status %d)",
                     m->attempts, status);
        sn_log(SN_LOG_ERROR, "outbox", m->incident, m->rid,
               "notification '%s' through %s is dead: %s; see GET /v1/notifications?state=dead",
               m->event, m->notifier, m->error);
        sn_metric(e->rt, SN_METRIC_COUNTER, "notifications_dead_total",
                  "Notifications given up after every retry", NULL, 1);
    } else {
        snprintf(m->error, sizeof(m->error), "attempt %d failed (status %d)", m->attempts, status);
        m->next_at = sn_now_ms() + backoff_ms(e, m->attempts);
        sn_log(SN_LOG_WARN, "outbox", m->incident, m->rid,
               "notification '%s' through %s failed (%d): retry %d of %d later", m->event,
               m->notifier, status, m->attempts, tries(e) - 1);
        sn_metric(e->rt, SN_METRIC_COUNTER, "notifications_failed_total",
                  "Notification attempts that failed (retried or dead)", NULL, 1);
    }
    save(m);
}

static void send_now(sn_outmsg_t *m)
{
    sn_engine_t *e = m->e;
    sn_live_t *lv = sn_engine_live(e, m->notifier);
    if (!lv || lv->in->kind != SN_NOTIFIER || !lv->started) {
        m->attempts = tries(e) - 1; /* the next failure is final */
        snprintf(m->error, sizeof(m->error), "notifier '%s' is not running", m->notifier);
        delivered(m, SN_ENOTFOUND, NULL);
        return;
    }
    const sn_notifier_ops_t *ops = lv->in->mod->plugin->ops;
    m->busy = 1;
    sn_runtime_set_request_id(e->rt, m->rid[0] ? m->rid : m->incident);
    ops->notify(lv->self, m->doc, m->event, delivered, m);
    sn_runtime_set_request_id(e->rt, NULL);
}

/* Another instance may share the store: send only under the entry's lease, and only if it is
 * still open there. */
static void reloaded(void *arg, int status, json_t *result)
{
    sn_outmsg_t *m = arg;
    json_t *doc = json_object_get(result, "doc");
    const char *st = json_string_value(json_object_get(doc, "state"));
    if (status == 0 && st && strcmp(st, "pending") != 0) {
        /* Sent or given up elsewhere. */
        m->busy = 0;
        unlink_msg(m->e, m);
        free_msg(m);
        return;
    }
    if (status == 0)
        m->version = json_integer_value(json_object_get(result, "version"));
    send_now(m);
}

static void leased(void *arg, int status, json_t *result)
{
    (void)result;
    sn_outmsg_t *m = arg;
    if (status == SN_ECONFLICT) {
        m->busy = 0; /* another instance is sending it; look again after its lease */
        m->next_at = sn_now_ms() + SN_OUTBOX_LEASE_MS;
        return;
    }
    if (status != 0) {
        send_now(m); /* no lease to be had (a store without leases): send */
        return;
    }
    store(m->e)->state_load(m->e->state->self, m->id, reloaded, m);
}

static void start(sn_outmsg_t *m)
{
    sn_engine_t *e = m->e;
    const sn_store_ops_t *ops = store(e);
    m->busy = 1;
    if (!ops || !ops->state_lease || m->version == 0) {
        send_now(m);
        return;
    }
    ops->state_lease(e->state->self, m->id, e->instance_id, SN_OUTBOX_LEASE_MS, leased, m);
}

/* An older entry of the same incident for the same notifier still waits or is on its way:
 * events reach a receiver in the order they happened (a trigger never lands after its
 * resolve). The list is newest first, so older entries follow @p m. */
static int held_back(const sn_outmsg_t *m)
{
    for (const sn_outmsg_t *o = m->next; o; o = o->next)
        if (o->state == OB_PENDING && strcmp(o->incident, m->incident) == 0 &&
            strcmp(o->notifier, m->notifier) == 0)
            return 1;
    return 0;
}

/* The first save is in: send at once. */
static void first_saved(void *arg, int status, json_t *result)
{
    sn_outmsg_t *m = arg;
    /* Only a pending entry goes on; saved() may free one that is not (sent or dead). */
    int go = m->state == OB_PENDING && status == 0;
    saved(m, status, result);
    if (go && !m->busy && !held_back(m))
        start(m);
}

/* ---- entry points ---- */

void sn_outbox_add(sn_engine_t *e, sn_incident_t *inc, const char *notifier, const char *event)
{
    sn_outmsg_t *m = calloc(1, sizeof(*m));
    if (!m) {
        sn_log(SN_LOG_ERROR, "outbox", inc->id, NULL, "out of memory: notification '%s' lost",
               event);
        return;
    }
    char uuid[37];
    sn_uuid7(uuid);
    m->e = e;
    snprintf(m->id, sizeof(m->id), "outbox/%s", uuid);
    snprintf(m->incident, sizeof(m->incident), "%s", inc->id);
    snprintf(m->notifier, sizeof(m->notifier), "%s", notifier);
    snprintf(m->event, sizeof(m->event), "%s", event);
    const char *rid = json_string_value(json_object_get(inc->doc, "request_id"));
    snprintf(m->rid, sizeof(m->rid), "%s", rid ? rid : "");
    m->doc = json_deep_copy(inc->doc);
    m->created = m->next_at = sn_now_ms();
    m->next = e->outbox;
    e->outbox = m;
    e->noutbox++;
    if (e->noutbox > SN_OUTBOX_MAX) {
        m->state = OB_DEAD;
        snprintf(m->error, sizeof(m->error), "outbox full (%d entries)", SN_OUTBOX_MAX);
        sn_log(SN_LOG_ERROR, "outbox", inc->id, NULL,
               "notification '%s' through %s is dead at once: the outbox is full", event, notifier);
        sn_metric(e->rt, SN_METRIC_COUNTER, "notifications_dead_total",
                  "Notifications given up after every retry", NULL, 1);
        save(m);
        return;
    }
    const sn_store_ops_t *ops = store(e);
    if (!ops) {
        start(m);
        return;
    }
    json_t *doc = record(m);
    m->busy = 1;
    ops->state_save(e->state->self, m->id, 1, 1, doc, first_saved, m);
    json_decref(doc);
}

void sn_outbox_tick(sn_engine_t *e)
{
    int64_t now = sn_now_ms();
    for (sn_outmsg_t *m = e->outbox, *next; m; m = next) {
        next = m->next;
        if (m->state == OB_PENDING && !m->busy && m->next_at <= now && !held_back(m))
            start(m);
    }
}

int sn_outbox_is(const char *state_id)
{
    return strncmp(state_id, "outbox/", 7) == 0;
}

static const char *str_of(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

static void resumed(void *arg, int status, json_t *result)
{
    sn_engine_t *e = arg;
    json_t *doc = json_object_get(result, "doc");
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *st = json_string_value(json_object_get(doc, "state"));
    if (status != 0 || !id || !st || strcmp(st, "pending") != 0)
        return;
    for (sn_outmsg_t *m = e->outbox; m; m = m->next)
        if (strcmp(m->id, id) == 0)
            return;
    sn_outmsg_t *m = calloc(1, sizeof(*m));
    if (!m)
        return;
    m->e = e;
    snprintf(m->id, sizeof(m->id), "%s", id);
    snprintf(m->incident, sizeof(m->incident), "%s", str_of(doc, "incident"));
    snprintf(m->notifier, sizeof(m->notifier), "%s", str_of(doc, "notifier"));
    snprintf(m->event, sizeof(m->event), "%s", str_of(doc, "event"));
    snprintf(m->rid, sizeof(m->rid), "%s", str_of(doc, "request_id"));
    snprintf(m->error, sizeof(m->error), "%s", str_of(doc, "error"));
    m->attempts = (int)json_integer_value(json_object_get(doc, "attempts"));
    /* A restart is a good moment to try again (the receiver may be back too): at most one
     * base backoff from now, whatever the stored schedule says; the attempt count stays. */
    int64_t soon = sn_now_ms() + e->model->set.notify_backoff_ms;
    m->next_at = json_integer_value(json_object_get(doc, "next_at_ms"));
    if (m->next_at > soon)
        m->next_at = soon;
    m->created = sn_now_ms();
    m->version = json_integer_value(json_object_get(result, "version"));
    m->doc = json_incref(json_object_get(doc, "doc"));
    m->next = e->outbox;
    e->outbox = m;
    e->noutbox++;
    sn_log(SN_LOG_INFO, "outbox", m->incident, NULL,
           "notification '%s' through %s resumed after %d attempt(s)", m->event, m->notifier,
           m->attempts);
}

void sn_outbox_resume(sn_engine_t *e, const char *id)
{
    const sn_store_ops_t *ops = store(e);
    if (ops)
        ops->state_load(e->state->self, id, resumed, e);
}

json_t *sn_outbox_list(sn_engine_t *e, const char *state)
{
    json_t *arr = json_array();
    for (sn_outmsg_t *m = e->outbox; m; m = m->next) {
        if (state && strcmp(state, state_name(m->state)) != 0)
            continue;
        json_t *r = record(m);
        json_object_del(r, "doc");
        json_object_del(r, "next_at_ms");
        json_array_append_new(arr, r);
    }
    return json_pack("{s:o}", "notifications", arr);
}

void sn_outbox_counts(sn_engine_t *e, size_t *pending, size_t *dead)
{
    *pending = *dead = 0;
    for (sn_outmsg_t *m = e->outbox; m; m = m->next) {
        *pending += m->state == OB_PENDING;
        *dead += m->state == OB_DEAD;
    }
}

int sn_outbox_idle(sn_engine_t *e)
{
    for (sn_outmsg_t *m = e->outbox; m; m = m->next)
        if (m->busy)
            return 0;
    return 1;
}

void sn_outbox_free(sn_engine_t *e)
{
    while (e->outbox) {
        sn_outmsg_t *m = e->outbox;
        e->outbox = m->next;
        free_msg(m);
    }
    e->noutbox = 0;
}
