/**
 * @file audit.c
 * The audit hash chain: each record carries the previous record's hash and its own,
 * hash = SHA-256(prev_hash || canonical JSON of the record without its "hash"), so altering,
 * removing or reordering any record breaks the chain at that point. Storage is a store plugin's
 * business (auditlog.c feeds it); this file only builds and checks records.
 */
#include "sentinel-internal.h"

#include <stdlib.h>
#include <string.h>

static bool is_hash_hex(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* SHA-256 hex of prev || canonical(rec_without_hash). Returns 0 or SN_ENOMEM. */
static int chain_hash(const json_t *rec_without_hash, const char *prev, char out[65])
{
    int rc = SN_ENOMEM;
    char *buf = NULL;
    char *canon = sn_json_canonical(rec_without_hash);
    if (!canon)
        goto out;
    size_t pl = strlen(prev), cl = strlen(canon);
    buf = malloc(pl + cl + 1);
    if (!buf)
        goto out;
    memcpy(buf, prev, pl);
    memcpy(buf + pl, canon, cl);
    sn_sha256_hex(buf, pl + cl, out);
    rc = 0;
out:
    free(buf);
    free(canon);
    return rc;
}

/**
 * Build audit record number @p seq that follows the record whose hash is @p prev_hash
 * (SN_AUDIT_GENESIS for the first). @p actor NULL is recorded as "", @p incident NULL as null,
 * @p detail NULL as {}; a non-object detail is refused. Returns NULL on bad input or no memory.
 * Ownership: the caller owns the result; @p detail is copied, so later changes to it cannot
 * alter the hashed record.
 */
json_t *sn_audit_record(int64_t seq, const char *prev_hash, int64_t ts_ms, const char *actor,
                        const char *action, const char *incident, const json_t *detail)
{
    char ts[32], hash[65];
    json_t *rec = NULL, *det = NULL;
    if (!action || !is_hash_hex(prev_hash) || (detail && !json_is_object(detail)))
        return NULL;
    det = detail ? json_deep_copy(detail) : json_object();
    if (!det)
        return NULL;
    sn_format_time_ms(ts_ms, ts);
    rec = json_pack("{s:I,s:s,s:s,s:s,s:o,s:o,s:s}", "seq", (json_int_t)seq, "ts", ts, "actor",
                    actor ? actor : "", "action", action, "incident",
                    incident ? json_string(incident) : json_null(), "detail", det, "prev_hash",
                    prev_hash);
    det = NULL; /* json_pack's "o" took it, even on failure */
    if (!rec)
        return NULL;
    if (chain_hash(rec, prev_hash, hash) != 0 ||
        json_object_set_new(rec, "hash", json_string(hash)) != 0) {
        json_decref(rec);
        return NULL;
    }
    return rec;
}

/**
 * Check @p rec as the successor of the record with sequence @p prev_seq and hash @p prev_hash
 * (for the first record: 0 and SN_AUDIT_GENESIS, or a retention anchor). Checks, in order: the
 * sequence follows on, the record names its predecessor's hash, and its own hash recomputes.
 * Returns 0 or SN_EINVAL with a phrase such as "record 12: hash mismatch (record altered)".
 * Ownership: borrows everything.
 */
int sn_audit_check(const json_t *rec, const char *prev_hash, int64_t prev_seq, char *why,
                   size_t whylen)
{
    char want[65];
    const json_t *jseq = json_object_get(rec, "seq");
    if (!json_is_object(rec) || !json_is_integer(jseq)) {
        snprintf(why, whylen, "record after %lld: no seq (not an audit record)",
                 (long long)prev_seq);
        return SN_EINVAL;
    }
    long long seq = (long long)json_integer_value(jseq);
    const char *ph = json_string_value(json_object_get(rec, "prev_hash"));
    const char *h = json_string_value(json_object_get(rec, "hash"));
    if (!ph || !h) {
        snprintf(why, whylen, "record %lld: missing hash fields (record altered)", seq);
        return SN_EINVAL;
    }
    if (seq != prev_seq + 1) {
        if (seq > prev_seq)
            snprintf(why, whylen, "record %lld: seq gap after %lld (record removed)", seq,
                     (long long)prev_seq);
        else
            snprintf(why, whylen, "record %lld: out of order after %lld (records reordered)", seq,
                     (long long)prev_seq);
        return SN_EINVAL;
    }
    if (!prev_hash || strcmp(ph, prev_hash) != 0) {
        snprintf(why, whylen,
                 "record %lld: prev_hash does not match record %lld (record removed or "
                 "reordered)",
                 seq, (long long)prev_seq);
        return SN_EINVAL;
    }
    json_t *copy = json_deep_copy(rec);
    if (!copy || json_object_del(copy, "hash") != 0 || chain_hash(copy, prev_hash, want) != 0) {
        json_decref(copy);
        snprintf(why, whylen, "record %lld: out of memory checking the hash", seq);
        return SN_ENOMEM;
    }
    json_decref(copy);
    if (strcmp(want, h) != 0) {
        snprintf(why, whylen, "record %lld: hash mismatch (record altered)", seq);
        return SN_EINVAL;
    }
    return 0;
}
