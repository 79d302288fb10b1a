/**
 * @file strbuf.c
 * See strbuf.h.
 */
#include "strbuf.h"

#include <stdlib.h>
#include <string.h>

void snp_buf_add(snp_buf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void snp_buf_puts(snp_buf_t *b, const char *s)
{
    snp_buf_add(b, s, strlen(s));
}
