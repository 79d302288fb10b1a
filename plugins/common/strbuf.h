/**
 * @file strbuf.h
 * A growing, always NUL-terminated text buffer for the plugins that build messages and prompts
 * (slack blocks, webhook templates, llm redaction). Out of memory is sticky (oom), so a caller
 * checks once at the end. Linked statically into each plugin (sn_plugin_common).
 */
#ifndef SENTINEL_PLUGIN_STRBUF_H
#define SENTINEL_PLUGIN_STRBUF_H

#include <stddef.h>

typedef struct snp_buf {
    char *p; /**< the text (NULL until something is added); the caller frees it */
    size_t n, cap;
    int oom; /**< an addition failed: the text is incomplete */
} snp_buf_t;

/** Append @p n bytes of @p s. */
void snp_buf_add(snp_buf_t *b, const char *s, size_t n);
/** Append the string @p s. */
void snp_buf_puts(snp_buf_t *b, const char *s);

#endif
