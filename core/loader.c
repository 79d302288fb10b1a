/**
 * @file loader.c
 * Loads plugin modules with libltdl (local symbols, platform extension added by advise_ext) and
 * checks the descriptor before calling anything in it: the ABI major, the descriptor's size,
 * the kind and the type, the mandatory callbacks, the kind table's size, and that no other
 * module already claimed the same kind/type. Loaded modules are cached and stay mapped until
 * sn_loader_free(), so a reload never unmaps code a running instance still uses.
 *
 * Refusal phrases (PATH is the file libltdl opened, e.g. DIR/sn_input_x.so):
 *   no KIND plugin 'TYPE' in DIR
 *   'TYPE' is not a plugin name (a-z, 0-9, _)
 *   cannot load PATH: <dlopen or libltdl error>   (also unresolved symbols: bound at load)
 *   PATH is not a Sentinel plugin: no sn_plugin_entry
 *   PATH: sn_plugin_entry returned no descriptor
 *   PATH: built for ABI 2.x, this sentineld speaks 1.x
 *   PATH: descriptor too short: N bytes, need M
 *   PATH: unknown plugin kind N
 *   PATH: is a detector plugin, not an input plugin
 *   PATH: declares no type  |  PATH: declares type 'X', expected 'Y'
 *   PATH: descriptor has no create callback  (also destroy; "has no ops table")
 *   PATH: input ops table too short: N bytes, need M
 *   PATH: duplicate plugin name input/good (already loaded from OTHER)
 */
#include "sentinel-internal.h"

#include <dlfcn.h>
#include <ltdl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const kind_names[] = {NULL,       "input",    "detector", "store",
                                         "analyzer", "executor", "notifier", "embedder"};

/** The kind's name in configs and file names; "unknown" outside the enum. Thread: any. */
const char *sn_kind_name(sn_kind_t k)
{
    return k >= SN_INPUT && k <= SN_KIND_MAX ? kind_names[k] : "unknown";
}

/** Parse a kind name. Returns 0 or SN_EINVAL (and leaves *out alone). Thread: any. */
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

/**
 * Ownership: @p loader_host is borrowed and must outlive the loader; @p plugin_dir is copied.
 * Thread: loop, before worker threads start (libltdl keeps global state).
 */
sn_loader_t *sn_loader_new(const char *plugin_dir, const sn_host_t *loader_host)
{
    if (!plugin_dir || lt_dlinit() != 0) /* lt_dlinit counts its callers itself */
        return NULL;
    sn_loader_t *l = calloc(1, sizeof(*l));
    if (l)
        l->dir = strdup(plugin_dir);
    if (!l || !l->dir) {
        free(l);
        lt_dlexit();
        return NULL;
    }
    l->host = loader_host;
    return l;
}

/** Ownership: unloads every module; no descriptor or callback may be used afterwards. */
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

/* Checks that need nothing but the descriptor, in the order that keeps every read inside what
 * the plugin declared. @p want_kind 0 = any, @p want_type NULL = any. */
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
        snprintf(why, whylen, "%s: is a%s %s plugin, not a%s %s plugin", path,
                 strchr("aeiou", sn_kind_name(p->kind)[0]) ? "n" : "", sn_kind_name(p->kind),
                 strchr("aeiou", w[0]) ? "n" : "", w);
        return SN_EINVAL;
    }
    if (!p->type || !*p->type) {
        snprintf(why, whylen, "%s: declares no type", path);
        return SN_EINVAL;
    }
    if (want_type && strcmp(p->type, want_type) != 0) {
        snprintf(why, whylen, "%s: declares type '%s', expected '%s'", path, p->type, want_type);
        return SN_EINVAL;
    }
    const char *missing = !p->create    ? "has no create callback"
                          : !p->destroy ? "has no destroy callback"
                          : !p->ops     ? "has no ops table"
                                        : NULL;
    if (missing) {
        snprintf(why, whylen, "%s: descriptor %s", path, missing);
        return SN_EINVAL;
    }
    /* Every kind table starts with its uint32_t struct_size. */
    uint32_t osz = *(const uint32_t *)p->ops;
    if (osz < ops_size(p->kind)) {
        snprintf(why, whylen, "%s: %s ops table too short: %u bytes, need %zu", path,
                 sn_kind_name(p->kind), osz, ops_size(p->kind));
        return SN_EINVAL;
    }
    return 0;
}

/* libltdl binds lazily, so a module with an unresolved symbol would load and then kill the
 * process at its first call. Opening the shared object first with RTLD_NOW resolves everything
 * up front (libltdl then gets the same, already bound, object) and turns that into a refusal.
 * Returns the extra reference to drop once libltdl holds its own, or NULL when there is no
 * .so file to check (libltdl then decides) or on refusal (*failed set). */
static void *bind_now(const char *path, int *failed, char *why, size_t whylen)
{
    char so[4200];
    const char *base = strrchr(path, '/');
    const char *ext = strrchr(base ? base : path, '.');
    *failed = 0;
    if (ext && strcmp(ext, ".so") == 0)
        snprintf(so, sizeof(so), "%s", path);
    else
        snprintf(so, sizeof(so), "%s.so", path);
    if (access(so, F_OK) != 0)
        return NULL;
    void *pre = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!pre) {
        const char *e = dlerror();
        snprintf(why, whylen, "cannot load %s: %s", so, e ? e : "unknown error");
        *failed = 1;
    }
    return pre;
}

static const sn_loaded_t *open_path(sn_loader_t *l, const char *path, sn_kind_t kind,
                                    const char *type, char *why, size_t whylen)
{
    typedef const sn_plugin_t *(*entry_fn)(const sn_host_t *);
    const sn_loaded_t *ret = NULL;
    lt_dladvise adv;
    lt_dlhandle h = NULL;
    int failed;
    void *pre = bind_now(path, &failed, why, whylen);
    if (failed)
        return NULL;
    if (lt_dladvise_init(&adv) != 0) {
        snprintf(why, whylen, "cannot load %s: libltdl failed", path);
        goto out;
    }
    lt_dladvise_ext(&adv);
    lt_dladvise_local(&adv);
    h = lt_dlopenadvise(path, adv);
    lt_dladvise_destroy(&adv);
    if (!h) {
        const char *e = lt_dlerror();
        snprintf(why, whylen, "cannot load %s: %s", path, e ? e : "unknown error");
        goto out;
    }
    const lt_dlinfo *info = lt_dlgetinfo(h);
    const char *file = info && info->filename ? info->filename : path;
    void *sym = lt_dlsym(h, "sn_plugin_entry");
    if (!sym) {
        snprintf(why, whylen, "%s is not a Sentinel plugin: no sn_plugin_entry", file);
        goto out;
    }
    entry_fn entry;
    memcpy(&entry, &sym, sizeof(entry)); /* object -> function pointer without a cast warning */
    const sn_plugin_t *p = entry(l->host);
    if (check_descriptor(p, file, kind, type, why, whylen) != 0)
        goto out;
    for (size_t i = 0; i < l->n; i++) {
        const sn_plugin_t *q = l->mods[i].plugin;
        if (q == p) { /* the same module reached again: libltdl counted a second reference */
            ret = &l->mods[i];
            goto out;
        }
        if (q->kind == p->kind && strcmp(q->type, p->type) == 0) {
            snprintf(why, whylen, "%s: duplicate plugin name %s/%s (already loaded from %s)", file,
                     sn_kind_name(p->kind), p->type, l->mods[i].path);
            goto out;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        sn_loaded_t *nm = realloc(l->mods, cap * sizeof(*nm));
        if (!nm) {
            snprintf(why, whylen, "%s: out of memory", file);
            goto out;
        }
        l->mods = nm;
        l->cap = cap;
    }
    char *copy = strdup(file);
    if (!copy) {
        snprintf(why, whylen, "%s: out of memory", file);
        goto out;
    }
    sn_loaded_t *m = &l->mods[l->n++];
    m->plugin = p;
    m->path = copy;
    m->handle = h;
    h = NULL; /* kept */
    ret = m;
out:
    if (h)
        lt_dlclose(h);
    if (pre)
        dlclose(pre);
    return ret;
}

/**
 * Ownership: the result belongs to the loader and lives until sn_loader_free().
 * Thread: loop, before worker threads start.
 */
const sn_loaded_t *sn_loader_get(sn_loader_t *l, sn_kind_t kind, const char *type, char *why,
                                 size_t whylen)
{
    if (!type || !*type) {
        snprintf(why, whylen, "no plugin type given");
        return NULL;
    }
    for (size_t i = 0; i < l->n; i++) {
        const sn_plugin_t *p = l->mods[i].plugin;
        if (p->kind == kind && strcmp(p->type, type) == 0)
            return &l->mods[i];
    }
    if (kind < SN_INPUT || kind > SN_KIND_MAX) {
        snprintf(why, whylen, "unknown plugin kind %d", (int)kind);
        return NULL;
    }
    /* The type becomes part of a file name: nothing that could leave plugin_dir. */
    for (const char *c = type; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) {
            snprintf(why, whylen, "'%s' is not a plugin name (a-z, 0-9, _)", type);
            return NULL;
        }
    char path[4096], probe[4200];
    snprintf(path, sizeof(path), "%s/sn_%s_%s", l->dir, sn_kind_name(kind), type);
    /* libltdl reports a missing file and a broken one alike; look first so the common typo
     * gets a plain answer. */
    snprintf(probe, sizeof(probe), "%s.so", path);
    int present = access(probe, F_OK) == 0;
    snprintf(probe, sizeof(probe), "%s.la", path);
    present = present || access(probe, F_OK) == 0;
    if (!present) {
        snprintf(why, whylen, "no %s plugin '%s' in %s", sn_kind_name(kind), type, l->dir);
        return NULL;
    }
    return open_path(l, path, kind, type, why, whylen);
}

/**
 * Load one explicit file (with or without its extension) of any kind and type.
 * Ownership: as sn_loader_get. Thread: loop, before worker threads start.
 */
const sn_loaded_t *sn_loader_open(sn_loader_t *l, const char *path, char *why, size_t whylen)
{
    return open_path(l, path, 0, NULL, why, whylen);
}
