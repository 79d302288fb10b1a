/**
 * @file diag.c
 * Collected configuration errors, each carrying its file:line, so `sentineld -t` can report
 * every problem in one pass instead of stopping at the first.
 */
#include "sentinel-internal.h"

#include <stdlib.h>
#include <string.h>

void sn_diag_init(sn_diag_t *d)
{
    memset(d, 0, sizeof(*d));
}

void sn_diag_free(sn_diag_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->msgs[i]);
    free(d->msgs);
    memset(d, 0, sizeof(*d));
}

void sn_diag_add(sn_diag_t *d, const char *file, int line, const char *fmt, ...)
{
    char phrase[768], full[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(phrase, sizeof(phrase), fmt, ap);
    va_end(ap);
    if (file && line > 0)
        snprintf(full, sizeof(full), "%s:%d: %s", file, line, phrase);
    else if (file)
        snprintf(full, sizeof(full), "%s: %s", file, phrase);
    else
        snprintf(full, sizeof(full), "%s", phrase);
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        char **m = realloc(d->msgs, cap * sizeof(*m));
        if (!m)
            return; /* out of memory: the count already says something failed */
        d->msgs = m;
        d->cap = cap;
    }
    char *copy = strdup(full);
    if (copy)
        d->msgs[d->n++] = copy;
}

void sn_diag_print(const sn_diag_t *d, FILE *out)
{
    for (size_t i = 0; i < d->n; i++)
        fprintf(out, "%s\n", d->msgs[i]);
}
