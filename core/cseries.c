/**
 * @file cseries.c
 * What the correlate node remembers per series between anomalies: the detector votes of the
 * current vote window and the recent anomaly times that reveal flapping. Loop thread only.
 *
 * Anomalies are rare next to points, so a chained hash table with one allocation per series
 * is enough. It is bounded: past SN_CSERIES_MAX entries, entries idle for longer than every
 * window (and not flapping) are dropped; if that frees too little, the idle half goes too.
 * Losing an entry only forgets votes and flap history, never an anomaly already passed on.
 */
#include "engine-internal.h"

#include <stdlib.h>
#include <string.h>

#define SN_CSERIES_MAX 262144
#define SN_CSERIES_BUCKETS 65536 /* power of two */

struct sn_cseries_map {
    sn_cseries_t *b[SN_CSERIES_BUCKETS];
    size_t n;
};

static size_t bucket(uint64_t key)
{
    return (size_t)(key ^ (key >> 29)) & (SN_CSERIES_BUCKETS - 1);
}

/* Drop entries last seen before @p before (flapping ones stay while they flap). */
static size_t prune(sn_cseries_map_t *m, int64_t before, int64_t now)
{
    size_t dropped = 0;
    for (size_t i = 0; i < SN_CSERIES_BUCKETS; i++) {
        for (sn_cseries_t **pp = &m->b[i]; *pp;) {
            sn_cseries_t *c = *pp;
            if (c->last_ts < before && c->flapping_until <= now) {
                *pp = c->next;
                free(c);
                m->n--;
                dropped++;
                continue;
            }
            pp = &c->next;
        }
    }
    return dropped;
}

sn_cseries_t *sn_cseries_get(sn_engine_t *e, uint64_t key, int64_t ts)
{
    if (!e->cmap) {
        e->cmap = calloc(1, sizeof(*e->cmap));
        if (!e->cmap)
            return NULL;
    }
    sn_cseries_map_t *m = e->cmap;
    for (sn_cseries_t *c = m->b[bucket(key)]; c; c = c->next) {
        if (c->key == key) {
            if (ts > c->last_ts)
                c->last_ts = ts;
            return c;
        }
    }
    if (m->n >= SN_CSERIES_MAX) {
        const sn_settings_t *s = &e->model->set;
        int64_t keep =
            s->vote_window_ms > s->flap_window_ms ? s->vote_window_ms : s->flap_window_ms;
        size_t dropped = prune(m, ts - keep, ts);
        if (m->n >= SN_CSERIES_MAX * 9 / 10)
            dropped += prune(m, ts - keep / 2, ts);
        sn_metric(e->rt, SN_METRIC_COUNTER, "correlate_series_forgotten_total",
                  "Per-series vote and flap memory dropped at the bound", NULL, (double)dropped);
        if (m->n >= SN_CSERIES_MAX)
            return NULL;
    }
    sn_cseries_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->key = key;
    c->last_ts = ts;
    size_t i = bucket(key);
    c->next = m->b[i];
    m->b[i] = c;
    m->n++;
    return c;
}

size_t sn_cseries_count(const sn_engine_t *e)
{
    return e->cmap ? e->cmap->n : 0;
}

void sn_cseries_free(sn_engine_t *e)
{
    if (!e->cmap)
        return;
    for (size_t i = 0; i < SN_CSERIES_BUCKETS; i++) {
        while (e->cmap->b[i]) {
            sn_cseries_t *c = e->cmap->b[i];
            e->cmap->b[i] = c->next;
            free(c);
        }
    }
    free(e->cmap);
    e->cmap = NULL;
}
