/**
 * @file ch_spool.h
 * The clickhouse store's on-disk spool: append-only segment files of framed RowBinary batches.
 * Plugin-internal. Every function here blocks on file I/O: call them on the host's offload pool
 * only (the plugin runs one spool job at a time, so no two of them touch a file at once).
 *
 * A segment is `<dir>/<seq, 20 digits>.chspool`; it holds frames of a 16-byte header
 * ("SNC1", payload length, point count, CRC-32 of the payload; little endian) and the payload,
 * written and fsync'ed whole before the batch counts as durable. A torn tail (a crash in the
 * middle of an append) fails its length or CRC check and is cut off by chs_scan.
 */
#ifndef SN_CH_SPOOL_H
#define SN_CH_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define CHS_HEADER 16u                    /**< bytes of a frame header */
#define CHS_MAX_FRAME ((uint32_t)1 << 30) /**< payload bound, sanity only */

/** One segment as the plugin accounts for it. */
typedef struct chs_seg {
    uint64_t seq;
    uint64_t bytes;  /**< file size (headers included) */
    uint64_t points; /**< points in its frames */
} chs_seg_t;

/** Create @p dir if missing and take an exclusive non-blocking lock on `<dir>/.lock`.
 * Returns the lock fd (keep it open while spooling) or -1 with @p why. Thread: any. */
int chs_lock(const char *dir, char *why, size_t cap);

/** List the segments in seq order, cutting torn or corrupt tails off (counted in *cut_bytes)
 * and removing segments left empty. *rejected counts `.rejected` files (kept aside).
 * Ownership: *segs is malloc'ed (may be NULL when *n is 0), the caller frees it.
 * Returns 0 or -1 with @p why. Thread: offload. */
int chs_scan(const char *dir, chs_seg_t **segs, size_t *n, uint64_t *cut_bytes, size_t *rejected,
             char *why, size_t cap);

/** Append one frame to segment @p seq (created when missing; the directory is fsync'ed then)
 * and fsync it. On failure the file is cut back to its previous size. *size gets the new
 * file size. Returns 0 or -1 with @p why. Thread: offload. */
int chs_append(const char *dir, uint64_t seq, const void *payload, size_t len, uint32_t npoints,
               uint64_t *size, char *why, size_t cap);

/** Read segment @p seq: its payloads concatenated (one RowBinary stream). Stops at the first
 * bad frame. Ownership: *buf is malloc'ed, the caller frees it.
 * Returns 0 or -1 with @p why. Thread: offload. */
int chs_read(const char *dir, uint64_t seq, char **buf, size_t *len, uint64_t *points, char *why,
             size_t cap);

/** Delete segment @p seq, or (@p reject) rename it to `<name>.rejected` for an operator to look
 * at. Returns 0 or -1 with @p why. Thread: offload. */
int chs_drop(const char *dir, uint64_t seq, int reject, char *why, size_t cap);

#endif /* SN_CH_SPOOL_H */
