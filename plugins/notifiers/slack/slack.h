/**
 * @file slack.h
 * Private to the `slack` notifier: the instance, its deliveries and the calls between
 * slack.c (lifecycle, delivery, threads), blocks.c (Block Kit rendering) and interact.c (the
 * interactivity route: request signing, replay window, approvers, decisions).
 */
#ifndef SENTINEL_SLACK_H
#define SENTINEL_SLACK_H

#include <sentinel/plugin.h>

#include <stddef.h>
#include <stdint.h>

#define SLK_ID_MAX 80      /* incident ids (UUIDv7 is 36) */
#define SLK_TS_MAX 40      /* Slack message ts ("1503435956.000247") */
#define SLK_CHANNEL_MAX 40 /* Slack channel id */
#define SLK_USER_MAX 40    /* Slack user id ("U123ABC") */
#define SLK_NAME_MAX 64    /* approver name */
#define SLK_WINDOW_S 300   /* replay window: |now - X-Slack-Request-Timestamp| */

typedef struct slk slk_t;

typedef enum {
    SLK_POST = 1, /* chat.postMessage (bot token) */
    SLK_WEBHOOK,  /* incoming webhook */
    SLK_RESPONSE, /* response_url of an interaction */
    SLK_UPDATE,   /* chat.update (fallback when response_url fails) */
} slk_kind_t;

/* One message being delivered. */
typedef struct slk_delivery {
    struct slk_delivery *next, *prev; /* arrival order */
    slk_t *s; /* NULL once the instance was destroyed while a request was in flight */
    slk_kind_t kind;
    json_t *inc; /* SLK_POST/SLK_WEBHOOK: slim copy of the incident, rendered at first send */
    json_t *msg; /* the message object; for SLK_POST without channel/thread_ts */
    char *body;  /* serialised at first send, the same for every retry */
    char *url;   /* SLK_RESPONSE: the response_url (a capability: never logged) */
    char incident[SLK_ID_MAX]; /* serialisation key; "" for none */
    char event[32];
    int threaded;  /* SLK_POST: sent as a reply in the incident's thread */
    int queued;    /* waiting behind an earlier delivery of the same incident */
    int attempts;  /* requests sent so far */
    int in_flight; /* a request is out; its completion frees an orphan */
    sn_timer_t *timer;
    long last_status;
    char last_error[128];
    char ts[SLK_TS_MAX];              /* ts Slack answered with */
    char fb_channel[SLK_CHANNEL_MAX]; /* SLK_RESPONSE: where chat.update can reach the message */
    char fb_ts[SLK_TS_MAX];
    sn_done_fn done; /* NULL for SLK_RESPONSE / SLK_UPDATE */
    void *arg;
} slk_delivery_t;

/* incident id -> the ts of its first message, bounded, oldest dropped. */
typedef struct slk_thread {
    struct slk_thread *hnext;         /* bucket chain */
    struct slk_thread *older, *newer; /* insertion order */
    char id[SLK_ID_MAX];
    char ts[SLK_TS_MAX];
    char channel[SLK_CHANNEL_MAX];
} slk_thread_t;

typedef struct slk_approver {
    char user[SLK_USER_MAX];
    char name[SLK_NAME_MAX];
} slk_approver_t;

/* A signature or trigger id accepted recently, remembered until the window has passed. */
typedef struct slk_seen {
    char key[96];
    int64_t until_s;
} slk_seen_t;

struct slk {
    const sn_host_t *host;
    char *token, *webhook_url, *signing_secret; /* owned, wiped on destroy; may be NULL */
    const char *channel;                        /* host-owned */
    char post_url[512], update_url[512];
    char console[512];           /* console base without trailing '/', or "" */
    const char *response_prefix; /* response_url must start with it */
    slk_approver_t *approvers;
    size_t napprovers;
    int64_t retry_base_ms, retry_max_ms, timeout_ms, max_retries, max_pending, max_threads;
    uint64_t rng;
    slk_delivery_t *head, *tail;
    size_t npending;
    slk_thread_t **buckets;
    size_t nbuckets, nthreads;
    slk_thread_t *oldest, *newest;
    slk_seen_t *seen;
    size_t nseen, seen_cap;
    unsigned long sent, failed, dropped, decided, refused, forged;
    int stopping;
    sn_done_fn stop_done;
    void *stop_arg;
};

/* ---- slack.c ---- */
/** Queue a POST of @p msg (stolen) to a response_url; on final failure, and with a bot token,
 * chat.update at @p channel / @p ts (may be NULL) instead. Returns 0 or SN_ENOMEM. Thread: loop. */
int slk_respond(slk_t *s, const char *url, json_t *msg, const char *channel, const char *ts);
void slk_count(slk_t *s, const char *name, const char *help);

/* ---- blocks.c ---- */
/** {"text", "blocks"} for @p event of @p inc; @p threaded: a reply under the first message.
 * approval_needed gets Approve/Reject when a signing secret is set. Ownership: caller
 * decrefs. */
json_t *slk_render(const slk_t *s, const json_t *inc, const char *event, int threaded);
/** The top three hypotheses of @p hyps by confidence (stable among equals). New reference. */
json_t *slk_top_hypotheses(const json_t *hyps);
/** A response_url body replacing @p original (the payload's "message", may be NULL) with its
 * blocks minus the buttons, a closing line @p line (escaped; also the fallback text) and
 * @p detail (mrkdwn used as given: the caller builds it from checked values; may be NULL). */
json_t *slk_render_decided(const json_t *original, const char *line, const char *detail);
/** Copy at most @p cap - 1 bytes of @p src into @p dst, never cutting a UTF-8 sequence. */
void slk_copy_utf8(char *dst, size_t cap, const char *src);

/* ---- interact.c ---- */
/** The POST /hooks/<instance>/interact handler. */
void slk_interact(void *self, sn_route_req_t *req);
/** Check a request's signature: 0 when valid, SN_EDENIED (mismatch or stale), SN_EINVAL
 * (headers missing or malformed). @p why gets a phrase without any secret. */
int slk_verify(const char *secret, const char *ts_hdr, const char *sig_hdr, const char *body,
               size_t len, int64_t now_s, const char **why);
/** Parse "U123=alice" entries; returns 0 or SN_EINVAL with a phrase in @p err. */
int slk_approvers_parse(slk_t *s, const char *const *list, sn_err_t *err);

#endif /* SENTINEL_SLACK_H */
