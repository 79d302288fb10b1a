/**
 * @file audit.c
 * The audit hash chain: hash = SHA-256(prev_hash || canonical JSON of the record without its
 * "hash"), so altering, removing or reordering any record breaks every later link.
 */
#include "sentinel-internal.h"

#include <stdlib.h>
#include <string.h>

static void chain_hash(const json_t *rec_without_hash, const char *prev, char out[65])
{
    char *canon = sn_json_canonical(rec_without_hash);
    size_t pl = strlen(prev), cl = canon ? strlen(canon) : 0;
    char *buf = malloc(pl + cl + 1);
    if (buf) {
        memcpy(buf, prev, pl);
        if (canon)
            memcpy(buf + pl, canon, cl);
        sn_sha256_hex(buf, pl + cl, out);
    } else {
        out[0] = '\0';
    }
    free(buf);
    free(canon);
}

json_t *sn_audit_record(int64_t seq, const char *prev_hash, int64_t ts_ms, const char *actor,
                        const char *action, const char *incident, const json_t *detail)
{
    char ts[32], hash[65];
    sn_format_time_ms(ts_ms, ts);
    json_t *rec =
        json_pack("{s:I,s:s,s:s,s:s,s:s?,s:O,s:s}", "seq", (json_int_t)seq, "ts", ts, "actor",
                  actor ? actor : "", "action", action, "incident", incident, "detail",
                  detail ? (json_t *)detail : json_object(), "prev_hash", prev_hash);
    if (!rec)
        return NULL;
    if (!detail)
        json_decref(json_object_get(rec, "detail")); /* json_object() above was O-packed */
    if (!json_object_get(rec, "incident"))
        json_object_set_new(rec, "incident", json_null());
    chain_hash(rec, prev_hash, hash);
    json_object_set_new(rec, "hash", json_string(hash));
    return rec;
}

int sn_audit_check(const json_t *rec, const char *prev_hash, int64_t prev_seq, char *why,
                   size_t whylen)
{
    int64_t seq = json_integer_value(json_object_get(rec, "seq"));
    const char *ph = json_string_value(json_object_get(rec, "prev_hash"));
    const char *h = json_string_value(json_object_get(rec, "hash"));
    if (!ph || !h) {
        snprintf(why, whylen, "record %lld: missing hash fields", (long long)seq);
        return SN_EINVAL;
    }
    if (seq != prev_seq + 1) {
        snprintf(why, whylen, "record %lld: seq gap after %lld (record removed)", (long long)seq,
                 (long long)prev_seq);
        return SN_EINVAL;
    }
    if (strcmp(ph, prev_hash) != 0) {
        snprintf(why, whylen,
                 "record %lld: prev_hash does not match record %lld (record removed or "
                 "reordered)",
                 (long long)seq, (long long)prev_seq);
        return SN_EINVAL;
    }
    json_t *copy = json_deep_copy(rec);
    json_object_del(copy, "hash");
    char want[65];
    chain_hash(copy, prev_hash, want);
    json_decref(copy);
    if (strcmp(want, h) != 0) {
        snprintf(why, whylen, "record %lld: hash mismatch (record altered)", (long long)seq);
        return SN_EINVAL;
    }
    return 0;
}
