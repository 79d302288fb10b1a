/**
 * @file interact.c
 * The `slack` notifier's interactivity route, POST /hooks/<instance>/interact, registered when
 * `signing_secret` is set (Slack app setting "Interactivity & Shortcuts -> Request URL").
 *
 * Slack POSTs application/x-www-form-urlencoded `payload=<url-encoded JSON>`. In order:
 *  1. Signature, before anything is parsed: X-Slack-Signature must equal "v0=" + lowercase hex
 *     HMAC-SHA256(signing_secret, "v0:" + X-Slack-Request-Timestamp + ":" + raw body), compared
 *     in constant time (CRYPTO_memcmp), and the timestamp must be within 300 s of now either
 *     way. Otherwise 401, nothing else happens.
 *  2. Replays: a request whose signature (or trigger_id) was accepted before within the window
 *     is refused with 409. The set is bounded; when it is full of live entries new requests get
 *     503 rather than evicting one that could then be replayed.
 *  3. Only block_actions with action_id sentinel_approve / sentinel_reject are acted on (value =
 *     incident id); anything else signed by Slack gets an empty 200.
 *  4. The user must be in `approvers` (SLACK_USER_ID=name). A stranger gets an ephemeral "not
 *     allowed" (in the 200 body and through response_url) and the refusal is audited (actor
 *     slack:<user id>, action approval_refused).
 *  5. Otherwise host->decide(incident, approve, "slack:<name>", reason) and an empty 200; then
 *     the original message is replaced through response_url: same blocks, buttons removed,
 *     "Approved by <name>" / "Rejected by <name>", or "already decided" when the incident was
 *     no longer waiting (decide() said SN_EINVAL). If response_url fails and a bot token is
 *     set, chat.update edits the message instead.
 */
#include "slack.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLK_SEEN_MAX 4096 /* accepted requests remembered for the replay window */
#define SLK_SIG_LEN 67    /* "v0=" + 64 hex digits */

/* ---- signing ------------------------------------------------------------------------------ */

int slk_verify(const char *secret, const char *ts_hdr, const char *sig_hdr, const char *body,
               size_t len, int64_t now_s, const char **why)
{
    static const char hex[] = "0123456789abcdef";
    if (!secret || !ts_hdr || !sig_hdr) {
        *why = "missing X-Slack-Request-Timestamp or X-Slack-Signature";
        return SN_EINVAL;
    }
    size_t tl = strlen(ts_hdr);
    int64_t ts = 0;
    if (tl == 0 || tl > 12) {
        *why = "malformed timestamp";
        return SN_EINVAL;
    }
    for (size_t i = 0; i < tl; i++) {
        if (!isdigit((unsigned char)ts_hdr[i])) {
            *why = "malformed timestamp";
            return SN_EINVAL;
        }
        ts = ts * 10 + (ts_hdr[i] - '0');
    }
    if (ts > now_s + SLK_WINDOW_S || ts < now_s - SLK_WINDOW_S) {
        *why = "timestamp outside the 5-minute window";
        return SN_EDENIED;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    size_t blen = 3 + tl + 1 + len;
    unsigned char *base = malloc(blen ? blen : 1);
    if (!base) {
        *why = "out of memory";
        return SN_ENOMEM;
    }
    memcpy(base, "v0:", 3);
    memcpy(base + 3, ts_hdr, tl);
    base[3 + tl] = ':';
    if (len)
        memcpy(base + 4 + tl, body, len);
    unsigned char *ok = HMAC(EVP_sha256(), secret, (int)strlen(secret), base, blen, mac, &maclen);
    free(base);
    if (!ok || maclen != 32) {
        *why = "cannot compute the signature";
        return SN_EIO;
    }
    char want[SLK_SIG_LEN + 1] = "v0=";
    for (unsigned int i = 0; i < maclen; i++) {
        want[3 + 2 * i] = hex[mac[i] >> 4];
        want[4 + 2 * i] = hex[mac[i] & 15];
    }
    want[SLK_SIG_LEN] = '\0';
    OPENSSL_cleanse(mac, sizeof(mac));
    /* The length is no secret; the contents are compared in constant time. */
    int same = strlen(sig_hdr) == SLK_SIG_LEN && CRYPTO_memcmp(want, sig_hdr, SLK_SIG_LEN) == 0;
    OPENSSL_cleanse(want, sizeof(want));
    if (!same) {
        *why = "signature mismatch";
        return SN_EDENIED;
    }
    *why = NULL;
    return 0;
}

/* ---- replay set ---------------------------------------------------------------------------- */

/* 1 when @p key was seen and is still live; expired entries are dropped on the way. */
static int seen_has(slk_t *s, const char *key, int64_t now_s)
{
    int hit = 0;
    for (size_t i = 0; i < s->nseen;) {
        if (s->seen[i].until_s < now_s) {
            s->seen[i] = s->seen[--s->nseen];
            continue;
        }
        if (strcmp(s->seen[i].key, key) == 0)
            hit = 1;
        i++;
    }
    return hit;
}

/* Returns 0, or SN_ENOMEM when the set is full of live entries. */
static int seen_add(slk_t *s, const char *key, int64_t until_s)
{
    if (s->nseen == s->seen_cap) {
        if (s->seen_cap >= SLK_SEEN_MAX)
            return SN_ENOMEM;
        size_t cap = s->seen_cap ? s->seen_cap * 2 : 64;
        slk_seen_t *n = realloc(s->seen, cap * sizeof(*n));
        if (!n)
            return SN_ENOMEM;
        s->seen = n;
        s->seen_cap = cap;
    }
    snprintf(s->seen[s->nseen].key, sizeof(s->seen[0].key), "%s", key);
    s->seen[s->nseen].until_s = until_s;
    s->nseen++;
    return 0;
}

/* ---- approvers ----------------------------------------------------------------------------- */

static int slk_user_ok(const char *u)
{
    size_t n = 0;
    for (; u[n]; n++)
        if (!isalnum((unsigned char)u[n]))
            return 0;
    return n > 0 && n < SLK_USER_MAX;
}

int slk_approvers_parse(slk_t *s, const char *const *list, sn_err_t *err)
{
    size_t n = 0;
    for (const char *const *e = list; e && *e; e++)
        n++;
    if (!n)
        return 0;
    s->approvers = calloc(n, sizeof(*s->approvers));
    if (!s->approvers) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const char *e = list[i];
        const char *eq = strchr(e, '=');
        size_t ul = eq ? (size_t)(eq - e) : 0;
        if (!eq || ul == 0 || ul >= SLK_USER_MAX || !eq[1] || strlen(eq + 1) >= SLK_NAME_MAX) {
            snprintf(err->msg, sizeof(err->msg),
                     "approvers entry %zu must be SLACK_USER_ID=name (e.g. U0123ABC=alice)", i + 1);
            return SN_EINVAL;
        }
        slk_approver_t *a = &s->approvers[i];
        memcpy(a->user, e, ul);
        a->user[ul] = '\0';
        snprintf(a->name, sizeof(a->name), "%s", eq + 1);
        if (!slk_user_ok(a->user)) {
            snprintf(err->msg, sizeof(err->msg),
                     "approvers entry %zu: a Slack user ID is letters and digits", i + 1);
            return SN_EINVAL;
        }
        for (const char *p = a->name; *p; p++)
            if (!isalnum((unsigned char)*p) && !strchr("._@-", *p)) {
                snprintf(err->msg, sizeof(err->msg),
                         "approvers entry %zu: a name is letters, digits and . _ @ -", i + 1);
                return SN_EINVAL;
            }
        for (size_t k = 0; k < i; k++)
            if (strcmp(s->approvers[k].user, a->user) == 0) {
                snprintf(err->msg, sizeof(err->msg), "approvers entry %zu repeats user %s", i + 1,
                         a->user);
                return SN_EINVAL;
            }
        s->napprovers++;
    }
    return 0;
}

static const slk_approver_t *slk_approver(const slk_t *s, const char *user)
{
    for (size_t i = 0; i < s->napprovers; i++)
        if (strcmp(s->approvers[i].user, user) == 0)
            return &s->approvers[i];
    return NULL;
}

/* ---- the route ----------------------------------------------------------------------------- */

static void reply(slk_t *s, sn_route_req_t *r, int status, const char *ctype, const char *body)
{
    s->host->req_reply(r, status, ctype, body, body ? strlen(body) : 0);
}

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The decoded value of form field "payload", or NULL. Ownership: caller frees. */
static char *form_payload(const char *body, size_t len)
{
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *fe = amp ? amp : end;
        if ((size_t)(fe - p) >= 8 && memcmp(p, "payload=", 8) == 0) {
            const char *v = p + 8;
            char *out = malloc((size_t)(fe - v) + 1), *o = out;
            if (!out)
                return NULL;
            for (; v < fe; v++) {
                if (*v == '+') {
                    *o++ = ' ';
                } else if (*v == '%') {
                    int hi = fe - v >= 3 ? hexval(v[1]) : -1;
                    int lo = fe - v >= 3 ? hexval(v[2]) : -1;
                    if (hi < 0 || lo < 0) {
                        free(out);
                        return NULL;
                    }
                    *o++ = (char)(hi * 16 + lo);
                    v += 2;
                } else {
                    *o++ = *v;
                }
            }
            *o = '\0';
            return out;
        }
        p = fe + 1;
    }
    return NULL;
}

static int slk_id_ok(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++)
        if (!isalnum((unsigned char)id[n]) && id[n] != '-' && id[n] != '_')
            return 0;
    return n > 0 && n < SLK_ID_MAX;
}

/* Tell the clicker through response_url (an ephemeral message, or the replaced original). */
static void respond(slk_t *s, const char *url, json_t *msg, const json_t *payload)
{
    if (!url || strncmp(url, s->response_prefix, strlen(s->response_prefix)) != 0) {
        if (url)
            s->host->log(s->host, SN_LOG_WARN,
                         "response_url does not start with response_url_prefix: not used");
        json_decref(msg);
        return;
    }
    const json_t *c = json_object_get(payload, "container");
    const char *ch = json_string_value(json_object_get(c, "channel_id"));
    const char *ts = json_string_value(json_object_get(c, "message_ts"));
    if (!ch)
        ch = json_string_value(json_object_get(json_object_get(payload, "channel"), "id"));
    if (slk_respond(s, url, msg, ch, ts) != 0)
        s->host->log(s->host, SN_LOG_WARN, "cannot queue the message update (max_pending)");
}

void slk_interact(void *self, sn_route_req_t *r)
{
    slk_t *s = self;
    const sn_host_t *h = s->host;
    size_t len = 0;
    const char *body = h->req_body(r, &len);
    const char *why = NULL;
    int64_t now_s = h->now_ms(h) / 1000;
    const char *sig = h->req_header(r, "X-Slack-Signature");
    int rc = slk_verify(s->signing_secret, h->req_header(r, "X-Slack-Request-Timestamp"), sig,
                        body ? body : "", body ? len : 0, now_s, &why);
    if (rc != 0) {
        s->forged++;
        slk_count(s, "notifier_slack_bad_signatures_total",
                  "Interactivity requests refused for a missing, stale or wrong signature");
        h->log(h, SN_LOG_WARN, "interactivity request refused: %s", why ? why : "invalid");
        reply(s, r, 401, "text/plain", "invalid signature\n");
        return;
    }
    char key[96];
    snprintf(key, sizeof(key), "s:%s", sig);
    if (seen_has(s, key, now_s)) {
        slk_count(s, "notifier_slack_replays_total", "Interactivity requests refused as replays");
        h->log(h, SN_LOG_WARN, "interactivity request refused: replayed");
        reply(s, r, 409, "text/plain", "request already processed\n");
        return;
    }
    /* Remembered as long as its timestamp would pass the window check (+1 s for rounding). */
    if (seen_add(s, key, now_s + 2 * SLK_WINDOW_S + 1) != 0) {
        h->log(h, SN_LOG_WARN, "interactivity request refused: too many in the replay window");
        reply(s, r, 503, "text/plain", "busy\n");
        return;
    }
    char *text = form_payload(body ? body : "", len);
    json_t *p = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (!json_is_object(p)) {
        json_decref(p);
        reply(s, r, 400, "text/plain", "expected a form field payload holding JSON\n");
        return;
    }
    const json_t *act = json_array_get(json_object_get(p, "actions"), 0);
    const char *type = json_string_value(json_object_get(p, "type"));
    const char *aid = json_string_value(json_object_get(act, "action_id"));
    const char *id = json_string_value(json_object_get(act, "value"));
    const char *user = json_string_value(json_object_get(json_object_get(p, "user"), "id"));
    const char *uname = json_string_value(json_object_get(json_object_get(p, "user"), "username"));
    const char *trigger = json_string_value(json_object_get(p, "trigger_id"));
    const char *rurl = json_string_value(json_object_get(p, "response_url"));
    int approve = aid && strcmp(aid, "sentinel_approve") == 0;
    if (!type || strcmp(type, "block_actions") != 0 || !aid ||
        (!approve && strcmp(aid, "sentinel_reject") != 0)) {
        json_decref(p);
        reply(s, r, 200, NULL, NULL); /* not ours: acknowledged, ignored */
        return;
    }
    if (!id || !slk_id_ok(id) || !user || !slk_user_ok(user)) {
        json_decref(p);
        reply(s, r, 400, "text/plain", "malformed action\n");
        return;
    }
    if (trigger) {
        snprintf(key, sizeof(key), "t:%.90s", trigger);
        if (seen_has(s, key, now_s)) {
            json_decref(p);
            reply(s, r, 409, "text/plain", "request already processed\n");
            return;
        }
        seen_add(s, key, now_s + 2 * SLK_WINDOW_S + 1);
    }
    const char *verb = approve ? "approve" : "reject";
    char actor[SLK_USER_MAX + SLK_NAME_MAX + 8];
    const slk_approver_t *a = slk_approver(s, user);
    if (!a) {
        s->refused++;
        slk_count(s, "notifier_slack_refused_total",
                  "Slack decisions refused because the user is not an approver");
        snprintf(actor, sizeof(actor), "slack:%s", user);
        json_t *det = json_pack("{s:s,s:s?,s:s,s:s}", "user_id", user, "username", uname, "action",
                                verb, "reason", "not in approvers");
        h->audit(h, actor, "approval_refused", id, det);
        json_decref(det);
        h->log(h, SN_LOG_WARN, "Slack user %s may not %s incident %s: not in approvers", user, verb,
               id);
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "Sorry <@%s>, you are not allowed to approve or reject Sentinel incidents.", user);
        json_t *eph = json_pack("{s:s,s:b,s:s}", "response_type", "ephemeral", "replace_original",
                                0, "text", msg);
        char *out = eph ? json_dumps(eph, JSON_COMPACT) : NULL;
        reply(s, r, 200, "application/json", out ? out : "{}");
        free(out);
        respond(s, rurl, eph, p);
        json_decref(p);
        return;
    }
    snprintf(actor, sizeof(actor), "slack:%s", a->name);
    char reason[128];
    snprintf(reason, sizeof(reason), "Slack button, user %s", user);
    rc = h->decide(h, id, approve, actor, reason);
    reply(s, r, 200, NULL, NULL);
    char line[160], detail[320];
    json_t *upd = NULL;
    if (rc == 0) {
        s->decided++;
        slk_count(s, "notifier_slack_decisions_total", "Decisions taken with the Slack buttons");
        h->log(h, SN_LOG_INFO, "incident %s %s by %s in Slack", id,
               approve ? "approved" : "rejected", actor);
        snprintf(line, sizeof(line), "%s by %s", approve ? "Approved" : "Rejected", a->name);
        time_t t = (time_t)now_s;
        struct tm tm;
        char when[32] = "";
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
        snprintf(detail, sizeof(detail),
                 ":bust_in_silhouette: <@%s> (%s) in Slack, <!date^%lld^{date_short_pretty} at "
                 "{time}|%s>",
                 user, actor, (long long)now_s, when);
        upd = slk_render_decided(json_object_get(p, "message"), line, detail);
    } else if (rc == SN_EINVAL || rc == SN_ENOTFOUND) {
        snprintf(line, sizeof(line), "%s",
                 rc == SN_EINVAL ? "Already decided: the incident is no longer waiting for approval"
                                 : "Unknown or closed incident: nothing to decide");
        snprintf(detail, sizeof(detail), "%s clicked %s; nothing was changed", a->name,
                 approve ? "Approve" : "Reject");
        upd = slk_render_decided(json_object_get(p, "message"), line, detail);
    } else {
        h->log(h, SN_LOG_WARN, "decision on incident %s by %s failed (%d)", id, actor, rc);
        upd = json_pack("{s:s,s:b,s:s}", "response_type", "ephemeral", "replace_original", 0,
                        "text", "Sentinel could not record the decision; use the console.");
    }
    respond(s, rurl, upd, p);
    json_decref(p);
}
