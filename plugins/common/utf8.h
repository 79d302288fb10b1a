/**
 * @file utf8.h
 * UTF-8 well-formedness (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF),
 * the one rule the core's ingest, its incident timeline and the plugins that re-check or quote
 * text (kafka, llm) share. Linked statically (sn_plugin_common); not part of the plugin ABI.
 */
#ifndef SENTINEL_PLUGIN_UTF8_H
#define SENTINEL_PLUGIN_UTF8_H

#include <stddef.h>

/** 1 when the @p n bytes at @p s are well-formed UTF-8 (NUL bytes included), else 0. */
int snp_utf8_valid(const unsigned char *s, size_t n);

/** Replace, in place, every byte of the NUL-terminated @p s that starts no well-formed
 * sequence with '?' (a character cut in half by a byte bound such as "%.300s", stray
 * Latin-1), so that jansson accepts the text. Returns how many bytes were replaced. */
size_t snp_utf8_scrub(char *s);

#endif
