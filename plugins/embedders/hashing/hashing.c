/**
 * @file hashing.c
 * Embedder `hashing`: turns text into a fixed-length vector by feature hashing, with no model,
 * no network and no state, so the same text gives the same vector on every host and version.
 *
 * Features (ASCII letters lower-cased; a word is a run of letters, digits and UTF-8 bytes, so
 * "http_error_ratio" gives http, error, ratio):
 *  - word unigrams, weight 1;
 *  - word bigrams, weight 0.7 (word order carries some meaning: "checkout calls payments");
 *  - character trigrams of each word with boundary marks ("^de", "dep", ..., "oy$"), weight 0.4,
 *    so inflections and ids that share stems ("timeout", "timeouts") still land close.
 * Each feature's 64-bit hash picks a bucket (modulo dim) and a sign (a separate bit), which keeps
 * collisions unbiased; the vector is L2-normalised, so cosine similarity is a dot product. Text
 * without a single word embeds to the zero vector.
 */
#include <sentinel/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HS_DIM_MAX 8192
#define HS_WORD_MAX 64 /* longer words are hashed by their first 64 bytes */

#define HS_W_UNIGRAM 1.0
#define HS_W_BIGRAM 0.7
#define HS_W_TRIGRAM 0.4

/* Domain seeds keep a word, a bigram and a trigram with equal bytes in different buckets. */
#define HS_SEED_UNIGRAM 0x9e3779b97f4a7c15ULL
#define HS_SEED_BIGRAM 0xc2b2ae3d27d4eb4fULL
#define HS_SEED_TRIGRAM 0x165667b19e3779f9ULL

typedef struct hs {
    const sn_host_t *host;
    size_t dim;
} hs_t;

static const sn_param_t hs_params[] = {
    {"dim", SN_T_INT, "256", 0,
     "vector length (buckets), 16 to 8192; every instance that shares a vector collection must "
     "use the same value"},
    {NULL, 0, NULL, 0, NULL},
};

static uint64_t hs_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* FNV-1a over the bytes, seeded, then finalised so low bits are well mixed for the modulo. */
static uint64_t hs_hash(uint64_t seed, const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return hs_mix(h);
}

static void hs_add(double *v, size_t dim, uint64_t h, double w)
{
    /* Bucket from the low bits, sign from the top bit: independent enough after hs_mix. */
    v[h % dim] += (h >> 63) ? -w : w;
}

static int hs_word_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

static void hs_word(double *v, size_t dim, const unsigned char *w, size_t n, uint64_t *prev,
                    int *have_prev)
{
    uint64_t hw = hs_hash(HS_SEED_UNIGRAM, w, n);
    hs_add(v, dim, hw, HS_W_UNIGRAM);
    if (*have_prev)
        hs_add(v, dim, hs_mix(*prev ^ HS_SEED_BIGRAM ^ (hw * 0x9e3779b97f4a7c15ULL)), HS_W_BIGRAM);
    *prev = hw;
    *have_prev = 1;

    unsigned char marked[HS_WORD_MAX + 2];
    marked[0] = '^';
    memcpy(marked + 1, w, n);
    marked[n + 1] = '$';
    for (size_t i = 0; i + 3 <= n + 2; i++)
        hs_add(v, dim, hs_hash(HS_SEED_TRIGRAM, marked + i, 3), HS_W_TRIGRAM);
}

/* Fill v[0..dim-1] (zeroed by the caller) with the normalised embedding of @p text. */
static void hs_embed_into(const char *text, double *v, size_t dim)
{
    unsigned char word[HS_WORD_MAX];
    size_t wn = 0;
    int in_word = 0, have_prev = 0;
    uint64_t prev = 0;
    for (const unsigned char *p = (const unsigned char *)text;; p++) {
        unsigned char c = *p;
        if (c && hs_word_char(c)) {
            in_word = 1;
            if (wn < HS_WORD_MAX)
                word[wn++] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
            continue;
        }
        if (in_word)
            hs_word(v, dim, word, wn, &prev, &have_prev);
        in_word = 0;
        wn = 0;
        if (!c)
            break;
    }
    double norm = 0;
    for (size_t i = 0; i < dim; i++)
        norm += v[i] * v[i];
    if (norm > 0) {
        norm = sqrt(norm);
        for (size_t i = 0; i < dim; i++)
            v[i] /= norm;
    }
}

static int hs_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    int64_t dim = host->cfg_int(cfg, "dim");
    if (dim < 16 || dim > HS_DIM_MAX) {
        snprintf(err->msg, sizeof(err->msg), "dim must be between 16 and %d (got %lld)", HS_DIM_MAX,
                 (long long)dim);
        return SN_EINVAL;
    }
    hs_t *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    h->host = host;
    h->dim = (size_t)dim;
    *self = h;
    return 0;
}

static void hs_destroy(void *self)
{
    free(self);
}

/**
 * Embed @p text; done runs before this returns with {"vector": [dim numbers]}.
 * Ownership: @p text is borrowed; the result is borrowed by done for the call.
 * Thread: loop (no shared mutable state, so any thread would do).
 */
static void hs_embed(void *self, const char *text, sn_done_fn done, void *arg)
{
    hs_t *h = self;
    json_t *res = NULL, *arr = NULL;
    int rc = SN_ENOMEM;
    if (!text) {
        rc = SN_EINVAL;
        goto out;
    }
    double *v = calloc(h->dim, sizeof(double));
    if (!v)
        goto out;
    hs_embed_into(text, v, h->dim);
    arr = json_array();
    for (size_t i = 0; arr && i < h->dim; i++) {
        if (json_array_append_new(arr, json_real(v[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(v);
    if (!arr)
        goto out;
    res = json_object();
    if (!res)
        goto out;
    /* set_new takes the reference whether or not it succeeds. */
    int set = json_object_set_new(res, "vector", arr);
    arr = NULL;
    if (set != 0)
        goto out;
    rc = 0;
out:
    json_decref(arr);
    done(arg, rc, rc == 0 ? res : NULL);
    json_decref(res);
}

static int hs_health(void *self, sn_health_t *out)
{
    hs_t *h = self;
    out->ok = 1;
    snprintf(out->detail, sizeof(out->detail), "dim %zu", h->dim);
    return 0;
}

/* dim here is the default; an instance configured with another `dim` returns vectors of that
 * length, which is what consumers must use. */
static const sn_embedder_ops_t hs_ops = {
    .struct_size = sizeof(sn_embedder_ops_t),
    .dim = 256,
    .embed = hs_embed,
};

static const sn_plugin_t hs_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_EMBEDDER,
    .type = "hashing",
    .version = "1.0.0",
    .summary = "feature hashing of words, word pairs and character trigrams; no network",
    .params = hs_params,
    .create = hs_create,
    .destroy = hs_destroy,
    .health = hs_health,
    .ops = &hs_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &hs_plugin;
}
