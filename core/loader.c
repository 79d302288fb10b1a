/**
 * @file loader.c
 * Loads plugin modules with libltdl (local symbols, extension-less names) and checks the
 * descriptor before calling anything in it: the ABI major, the descriptor's size, the kind and
 * the type, the mandatory callbacks, and that no other module already claimed the same name.
 */
#include "sentinel-internal.h"

#include <ltdl.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {NULL,       "input",    "detector", "store",
                                         "analyzer", "executor", "notifier", "embedder"};

const char *sn_kind_name(sn_kind_t k)
{
    return k >= SN_INPUT && k <= SN_KIND_MAX ? kind_names[k] : "unknown";
}

int sn_kind_parse(const char *s, sn_kind_t *out)
{
    for (int k = SN_INPUT; k <= SN_KIND_MAX; k++)
        if (s && strcmp(s, kind_names[k]) == 0) {
            *out = (sn_kind_t)k;
            return 0;
        }
    return SN_EINVAL;
}

struct sn_loader {
    char *dir;
    const sn_host_t *host;
    sn_loaded_t *mods;
    size_t n, cap;
};

static int ltdl_refs;

sn_loader_t *sn_loader_new(const char *plugin_dir, const sn_host_t *loader_host)
{
    if (ltdl_refs++ == 0 && lt_dlinit() != 0) {
        ltdl_refs--;
        return NULL;
    }
    sn_loader_t *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->dir = strdup(plugin_dir);
    l->host = loader_host;
    return l;
}

void sn_loader_free(sn_loader_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        lt_dlclose((lt_dlhandle)l->mods[i].handle);
        free(l->mods[i].path);
    }
    free(l->mods);
    free(l->dir);
    free(l);
    if (--ltdl_refs == 0)
        lt_dlexit();
}

static size_t ops_size(sn_kind_t k)
{
    switch (k) {
    case SN_INPUT:
        return sizeof(sn_input_ops_t);
    case SN_DETECTOR:
        return sizeof(sn_detector_ops_t);
    case SN_STORE:
        return sizeof(sn_store_ops_t);
    case SN_ANALYZER:
        return sizeof(sn_analyzer_ops_t);
    case SN_EXECUTOR:
        return sizeof(sn_executor_ops_t);
    case SN_NOTIFIER:
        return sizeof(sn_notifier_ops_t);
    case SN_EMBEDDER:
        return sizeof(sn_embedder_ops_t);
    }
    return 0;
}

/* Checks that need nothing but the descriptor. @p want_kind 0 = any. */
static int check_descriptor(const sn_plugin_t *p, const char *path, sn_kind_t want_kind,
                            const char *want_type, char *why, size_t whylen)
{
    if (!p) {
        snprintf(why, whylen, "%s: sn_plugin_entry returned no descriptor", path);
        return SN_EINVAL;
    }
    if (p->abi_major != SN_ABI_MAJOR) {
        snprintf(why, whylen, "%s: built for ABI %u.x, this sentineld speaks %d.x", path,
                 p->abi_major, SN_ABI_MAJOR);
        return SN_EINVAL;
    }
    if (p->struct_size < sizeof(sn_plugin_t)) {
        snprintf(why, whylen, "%s: descriptor too short: %u bytes, need %zu", path, p->struct_size,
                 sizeof(sn_plugin_t));
        return SN_EINVAL;
    }
    if (p->kind < SN_INPUT || p->kind > SN_KIND_MAX) {
        snprintf(why, whylen, "%s: unknown plugin kind %d", path, (int)p->kind);
        return SN_EINVAL;
    }
    if (want_kind && p->kind != want_kind) {
        const char *w = sn_kind_name(want_kind);
        snprintf(why, whylen, "%s: is a %s plugin, not %s %s", path, sn_kind_name(p->kind),
                 strchr("aeiou", w[0]) ? "an" : "a", w);
        return SN_EINVAL;
    }
    if (!p->type || (want_type && strcmp(p->type, want_type) != 0)) {
        snprintf(why, whylen, "%s: declares type '%s', expected '%s'", path,
                 p->type ? p->type : "(none)", want_type ? want_type : "?");
        return SN_EINVAL;
    }
    if (!p->create || !p->destroy || !p->ops) {
        snprintf(why, whylen, "%s: descriptor lacks create, destroy or ops", path);
        return SN_EINVAL;
    }
    uint32_t osz = *(const uint32_t *)p->ops;
    if (osz < ops_size(p->kind)) {
        snprintf(why, whylen, "%s: %s table too short: %u bytes, need %zu", path,
                 sn_kind_name(p->kind), osz, ops_size(p->kind));
        return SN_EINVAL;
    }
    return 0;
}

static const sn_loaded_t *open_path(sn_loader_t *l, const char *path, sn_kind_t kind,
                                    const char *type, char *why, size_t whylen)
{
    lt_dladvise adv;
    lt_dladvise_init(&adv);
    lt_dladvise_ext(&adv);
    lt_dladvise_local(&adv);
    lt_dlhandle h = lt_dlopenadvise(path, adv);
    lt_dladvise_destroy(&adv);
    if (!h) {
        const char *e = lt_dlerror();
        snprintf(why, whylen, "cannot load %s: %s", path, e ? e : "unknown error");
        return NULL;
    }
    typedef const sn_plugin_t *(*entry_fn)(const sn_host_t *);
    void *sym = lt_dlsym(h, "sn_plugin_entry");
    if (!sym) {
        snprintf(why, whylen, "%s is not a Sentinel plugin: no sn_plugin_entry", path);
        lt_dlclose(h);
        return NULL;
    }
    entry_fn entry;
    memcpy(&entry, &sym, sizeof(entry));
    const sn_plugin_t *p = entry(l->host);
    if (check_descriptor(p, path, kind, type, why, whylen) != 0) {
        lt_dlclose(h);
        return NULL;
    }
    for (size_t i = 0; i < l->n; i++) {
        const sn_plugin_t *q = l->mods[i].plugin;
        if (q == p) { /* the same module reached by another path */
            lt_dlclose(h);
            return &l->mods[i];
        }
        if (q->kind == p->kind && strcmp(q->type, p->type) == 0) {
            snprintf(why, whylen, "%s: %s/%s is already loaded from %s", path,
                     sn_kind_name(p->kind), p->type, l->mods[i].path);
            lt_dlclose(h);
            return NULL;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        sn_loaded_t *nm = realloc(l->mods, cap * sizeof(*nm));
        if (!nm) {
            lt_dlclose(h);
            snprintf(why, whylen, "out of memory");
            return NULL;
        }
        l->mods = nm;
        l->cap = cap;
    }
    sn_loaded_t *m = &l->mods[l->n++];
    m->plugin = p;
    m->path = strdup(path);
    m->handle = h;
    return m;
}

const sn_loaded_t *sn_loader_get(sn_loader_t *l, sn_kind_t kind, const char *type, char *why,
                                 size_t whylen)
{
    for (size_t i = 0; i < l->n; i++) {
        const sn_plugin_t *p = l->mods[i].plugin;
        if (p->kind == kind && strcmp(p->type, type) == 0)
            return &l->mods[i];
    }
    for (const char *c = type; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) {
            snprintf(why, whylen, "'%s' is not a plugin name (a-z, 0-9, _)", type);
            return NULL;
        }
    char path[4096];
    snprintf(path, sizeof(path), "%s/sn_%s_%s", l->dir, sn_kind_name(kind), type);
    char full[4200];
    snprintf(full, sizeof(full), "%s.so", path);
    FILE *f = fopen(full, "rb");
    if (!f) {
        snprintf(why, whylen, "no %s plugin '%s' in %s", sn_kind_name(kind), type, l->dir);
        return NULL;
    }
    fclose(f);
    return open_path(l, path, kind, type, why, whylen);
}

const sn_loaded_t *sn_loader_open(sn_loader_t *l, const char *path, char *why, size_t whylen)
{
    return open_path(l, path, 0, NULL, why, whylen);
}
