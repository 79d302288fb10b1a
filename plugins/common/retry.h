/**
 * @file retry.h
 * Retry arithmetic shared by the plugins that call remote services (notifiers, the openai
 * embedder, the llm analyzer, qdrant): a small non-cryptographic generator for jitter,
 * exponential backoff ceilings with full jitter, and the Retry-After header. Linked statically
 * into each plugin (sn_plugin_common); not part of the public plugin ABI.
 */
#ifndef SENTINEL_PLUGIN_RETRY_H
#define SENTINEL_PLUGIN_RETRY_H

#include <sentinel/plugin.h>

#include <stdint.h>

/** xorshift64*: jitter only, nothing secret depends on it. @p state must not be 0. */
uint64_t snr_rand(uint64_t *state);

/** min(max_ms, base_ms * 2^(attempts-1)): the backoff ceiling of the attempts-th retry. */
int64_t snr_ceiling(int64_t base_ms, int64_t max_ms, int attempts);

/** Uniform in [lo, hi] (full jitter); lo when hi <= lo. */
int64_t snr_jitter(uint64_t *state, int64_t lo, int64_t hi);

/** Full jitter below the ceiling: uniform in [0, snr_ceiling(base, max, attempts)]. */
int64_t snr_backoff(uint64_t *state, int64_t base_ms, int64_t max_ms, int attempts);

/** A header value of decimal digits (blanks around allowed), stopping the count at @p cap.
 * Returns 1 with *out set, or 0 when it is not such a number (an HTTP-date, say). */
int snr_digits(const char *v, int64_t cap, int64_t *out);

/** Retry-After as delay-seconds, in ms (at most a day); 0 when absent or an HTTP-date (the
 * caller then uses its backoff). */
int snr_retry_after(const sn_http_response_t *resp, int64_t *ms);

#endif
