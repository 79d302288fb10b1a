/**
 * @file httpclient.c
 * The shared asynchronous HTTP client: one libcurl multi handle driven by the runtime's
 * libevent loop (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION + curl_multi_socket_action). Every
 * request's done() runs exactly once on the loop: after the transfer, after an immediate
 * failure (delivered from the loop, never re-entrantly), or with "shutting down" when the
 * runtime is freed. Responses are bounded in size, redirects are never followed.
 */
#include "runtime-internal.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SN_HTTP_DEFAULT_TIMEOUT_MS 10000L
#define SN_HTTP_DEFAULT_MAX_RESPONSE ((size_t)4 << 20)
/** Response headers kept per request (bytes); more aborts the transfer. */
#define SN_HTTP_MAX_HEADER_BYTES (64 * 1024)

#define REQ_HAS(r, field)                                                                          \
    ((r)->struct_size >= offsetof(sn_http_request_t, field) + sizeof((r)->field))

typedef struct sn_hreq {
    struct sn_hreq *prev, *next;
    sn_httpc_t *c;
    CURL *easy;
    struct curl_slist *hdrs;
    char *body; /**< our copy of the request body */
    sn_http_done_fn done;
    void *arg;
    char *resp;
    size_t resp_len, resp_cap, max;
    long timeout_ms;
    char *rh; /**< response headers as "name\0value\0" pairs */
    size_t rh_len, rh_cap;
    int too_large, headers_too_large;
    const char *fail;   /**< immediate failure phrase */
    const char *reason; /**< outcome label of an immediate failure */
    char errbuf[CURL_ERROR_SIZE];
} sn_hreq_t;

typedef struct sn_hsock {
    struct sn_hsock *prev, *next;
    sn_httpc_t *c;
    curl_socket_t fd;
    struct event *ev;
} sn_hsock_t;

struct sn_httpc {
    sn_runtime_t *rt;
    CURLM *multi;
    struct event *timer;
    struct event *failed_ev;
    sn_hreq_t *active;      /**< transfers in the multi handle */
    sn_hreq_t *failed_head; /**< immediate failures waiting for delivery */
    sn_hreq_t *failed_tail;
    sn_hsock_t *socks;
    size_t inflight; /**< requests whose done() has not run yet */
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void count_outcome(sn_httpc_t *c, const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome);
    sn_metric(c->rt, SN_METRIC_COUNTER, "http_client_requests_total",
              "Outbound HTTP requests through the shared client, by outcome.", labels, 1);
}

static const char *resp_header(const sn_http_response_t *r, const char *name)
{
    const sn_hreq_t *q = r ? r->priv : NULL;
    if (!q || !name)
        return NULL;
    for (size_t off = 0; off < q->rh_len;) {
        const char *k = q->rh + off;
        const char *v = k + strlen(k) + 1;
        if (strcasecmp(k, name) == 0)
            return v;
        off = (size_t)(v - q->rh) + strlen(v) + 1;
    }
    return NULL;
}

static void req_free(sn_hreq_t *q)
{
    if (q->easy)
        curl_easy_cleanup(q->easy);
    curl_slist_free_all(q->hdrs);
    free(q->body);
    free(q->resp);
    free(q->rh);
    free(q);
}

/** Deliver the outcome and free the request. The request is already unlinked. */
static void req_finish(sn_httpc_t *c, sn_hreq_t *q, CURLcode code, const char *fail,
                       const char *reason)
{
    char err[CURL_ERROR_SIZE + 32];
    sn_http_response_t r = {0};
    const char *outcome;
    r.header = resp_header;
    r.priv = q;
    r.body = q->resp ? q->resp : "";
    r.body_len = q->resp ? q->resp_len : 0;
    if (fail) {
        r.error = fail;
        outcome = reason;
    } else if (q->too_large || code == CURLE_FILESIZE_EXCEEDED) {
        snprintf(err, sizeof(err), "response larger than %zu bytes", q->max);
        r.error = err;
        outcome = "too_large";
    } else if (q->headers_too_large) {
        snprintf(err, sizeof(err), "response headers larger than %d bytes",
                 SN_HTTP_MAX_HEADER_BYTES);
        r.error = err;
        outcome = "too_large";
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        snprintf(err, sizeof(err), "timed out after %ld ms", q->timeout_ms);
        r.error = err;
        outcome = "timeout";
    } else if (code != CURLE_OK) {
        snprintf(err, sizeof(err), "%s", q->errbuf[0] ? q->errbuf : curl_easy_strerror(code));
        r.error = err;
        outcome = "error";
    } else {
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &r.status);
        outcome = r.status >= 400 ? "http_error" : "ok";
        if (r.status == 0) {
            r.error = "no HTTP response";
            outcome = "error";
        }
    }
    if (r.error) {
        /* A transport failure has no status and no partial body. */
        r.status = 0;
        r.body = "";
        r.body_len = 0;
    }
    c->inflight--;
    count_outcome(c, outcome);
    q->done(q->arg, &r);
    req_free(q);
}

static void active_unlink(sn_httpc_t *c, sn_hreq_t *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        c->active = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

static void check_done(sn_httpc_t *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        sn_hreq_t *q = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&q);
        curl_multi_remove_handle(c->multi, easy);
        if (!q)
            continue;
        active_unlink(c, q);
        req_finish(c, q, code, NULL, NULL);
    }
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    sn_hsock_t *s = arg;
    sn_httpc_t *c = s->c; /* s may be freed inside socket_action */
    int running = 0;
    int action =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(c->multi, fd, action, &running);
    check_done(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sn_httpc_t *c = arg;
    int running = 0;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static void sock_free(sn_httpc_t *c, sn_hsock_t *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->ev)
        event_free(s->ev);
    free(s);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    sn_httpc_t *c = userp;
    sn_hsock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(c->multi, fd, NULL);
            sock_free(c, s);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        s->c = c;
        s->fd = fd;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        curl_multi_assign(c->multi, fd, s);
    }
    if (s->ev)
        event_free(s->ev);
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                 ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    s->ev = event_new(c->rt->base, fd, kind, on_socket_event, s);
    if (!s->ev || event_add(s->ev, NULL) != 0)
        return -1;
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    sn_httpc_t *c = userp;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    /* Never call socket_action from here: fire from the loop instead. */
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return evtimer_add(c->timer, &tv) == 0 ? 0 : -1;
}

/** Deliver immediate failures; runs on the loop. */
static void on_failed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sn_httpc_t *c = arg;
    sn_hreq_t *q = c->failed_head;
    c->failed_head = c->failed_tail = NULL;
    while (q) {
        sn_hreq_t *next = q->next;
        q->next = NULL;
        req_finish(c, q, CURLE_OK, q->fail, q->reason);
        q = next;
    }
}

static int fail_later(sn_httpc_t *c, sn_hreq_t *q, const char *phrase, const char *reason)
{
    q->fail = phrase;
    q->reason = reason;
    q->next = NULL;
    if (c->failed_tail)
        c->failed_tail->next = q;
    else
        c->failed_head = q;
    c->failed_tail = q;
    c->inflight++;
    event_active(c->failed_ev, EV_READ, 0);
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    sn_hreq_t *q = userp;
    size_t n = size * nmemb;
    if (n > q->max - q->resp_len) {
        q->too_large = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (q->resp_len + n + 1 > q->resp_cap) {
        size_t cap = q->resp_cap ? q->resp_cap : 4096;
        while (q->resp_len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(q->resp, cap);
        if (!p)
            return 0;
        q->resp = p;
        q->resp_cap = cap;
    }
    memcpy(q->resp + q->resp_len, data, n);
    q->resp_len += n;
    q->resp[q->resp_len] = '\0';
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    sn_hreq_t *q = userp;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        q->rh_len = 0; /* a new response (after 100 Continue): forget earlier headers */
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon)
        return n;
    size_t klen = (size_t)(colon - data);
    const char *v = colon + 1;
    const char *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    size_t need = q->rh_len + klen + vlen + 2;
    if (need > SN_HTTP_MAX_HEADER_BYTES) {
        q->headers_too_large = 1;
        return 0;
    }
    if (need > q->rh_cap) {
        size_t cap = q->rh_cap ? q->rh_cap * 2 : 1024;
        while (cap < need)
            cap *= 2;
        char *p = realloc(q->rh, cap);
        if (!p)
            return 0;
        q->rh = p;
        q->rh_cap = cap;
    }
    memcpy(q->rh + q->rh_len, data, klen);
    q->rh[q->rh_len + klen] = '\0';
    memcpy(q->rh + q->rh_len + klen + 1, v, vlen);
    q->rh[q->rh_len + klen + 1 + vlen] = '\0';
    q->rh_len = need;
    return n;
}

sn_httpc_t *sn_httpc_new(sn_runtime_t *rt)
{
    pthread_once(&g_curl_once, curl_init_once);
    sn_httpc_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->rt = rt;
    c->multi = curl_multi_init();
    c->timer = evtimer_new(rt->base, on_timer, c);
    c->failed_ev = event_new(rt->base, -1, 0, on_failed, c);
    if (!c->multi || !c->timer || !c->failed_ev) {
        sn_httpc_free(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return c;
}

void sn_httpc_free(sn_httpc_t *c)
{
    if (!c)
        return;
    /* Callbacks run here may issue new requests; they fail with "shutting down" (the runtime
     * is flagged), so a few rounds settle it. */
    for (int round = 0; round < 8 && (c->active || c->failed_head); round++) {
        while (c->active) {
            sn_hreq_t *q = c->active;
            active_unlink(c, q);
            curl_multi_remove_handle(c->multi, q->easy);
            req_finish(c, q, CURLE_OK, "shutting down", "shutdown");
        }
        if (c->failed_ev)
            on_failed(-1, 0, c);
    }
    if (c->multi)
        curl_multi_cleanup(c->multi);
    while (c->socks)
        sock_free(c, c->socks);
    if (c->timer)
        event_free(c->timer);
    if (c->failed_ev)
        event_free(c->failed_ev);
    free(c);
}

size_t sn_runtime_http_inflight(sn_runtime_t *rt)
{
    return rt && rt->http ? rt->http->inflight : 0;
}

static int is_method(const char *m, const char *want)
{
    return strcasecmp(m, want) == 0;
}

void sn_runtime_set_request_id(sn_runtime_t *rt, const char *rid)
{
    if (rt)
        snprintf(rt->request_id, sizeof(rt->request_id), "%s", rid ? rid : "");
}

const char *sn_runtime_request_id(const sn_runtime_t *rt)
{
    return rt && rt->request_id[0] ? rt->request_id : NULL;
}

static const char *setup(sn_hreq_t *q, const sn_http_request_t *req, const char *rid)
{
    CURL *e = q->easy;
    int have_expect = 0, have_rid = 0;
    if (req->headers) {
        for (const char *const *h = req->headers; *h; h++) {
            struct curl_slist *n = curl_slist_append(q->hdrs, *h);
            if (!n)
                return "out of memory";
            q->hdrs = n;
            if (strncasecmp(*h, "Expect:", 7) == 0)
                have_expect = 1;
            if (strncasecmp(*h, "X-Request-ID:", 13) == 0)
                have_rid = 1;
        }
    }
    if (rid && !have_rid) {
        char line[100];
        snprintf(line, sizeof(line), "X-Request-ID: %s", rid);
        struct curl_slist *n = curl_slist_append(q->hdrs, line);
        if (!n)
            return "out of memory";
        q->hdrs = n;
    }
    if (!have_expect) {
        /* No 100-continue round trip for bodies. */
        struct curl_slist *n = curl_slist_append(q->hdrs, "Expect:");
        if (!n)
            return "out of memory";
        q->hdrs = n;
    }
    const char *method = req->method ? req->method : "GET";
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, q->timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)q->max);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, q);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, q);
    if (REQ_HAS(req, insecure_skip_verify)) {
        if (req->ca_pem) {
            struct curl_blob b = {(void *)req->ca_pem, strlen(req->ca_pem), CURL_BLOB_COPY};
            curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
        } else if (req->ca_file) {
            curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
        }
        if (req->client_cert_pem) {
            struct curl_blob b = {(void *)req->client_cert_pem, strlen(req->client_cert_pem),
                                  CURL_BLOB_COPY};
            curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &b);
            curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        }
        if (req->client_key_pem) {
            struct curl_blob b = {(void *)req->client_key_pem, strlen(req->client_key_pem),
                                  CURL_BLOB_COPY};
            curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &b);
            curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
        }
        if (req->insecure_skip_verify) {
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
        }
    }
    if (is_method(method, "GET")) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (is_method(method, "HEAD")) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        size_t len = req->body ? req->body_len : 0;
        q->body = malloc(len + 1);
        if (!q->body)
            return "out of memory";
        if (len)
            memcpy(q->body, req->body, len);
        q->body[len] = '\0';
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body);
        if (!is_method(method, "POST"))
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    return NULL;
}

int sn_runtime_http(sn_runtime_t *rt, const sn_http_request_t *req, sn_http_done_fn done, void *arg)
{
    if (!rt || !rt->http || !done)
        return SN_EINVAL;
    sn_httpc_t *c = rt->http;
    sn_hreq_t *q = calloc(1, sizeof(*q));
    if (!q)
        return SN_ENOMEM;
    q->c = c;
    q->done = done;
    q->arg = arg;
    q->timeout_ms = SN_HTTP_DEFAULT_TIMEOUT_MS;
    q->max = SN_HTTP_DEFAULT_MAX_RESPONSE;
    if (!req || !REQ_HAS(req, url))
        return fail_later(c, q, "request struct_size not set", "error");
    if (!req->url || !req->url[0])
        return fail_later(c, q, "request has no url", "error");
    if (REQ_HAS(req, timeout_ms) && req->timeout_ms > 0)
        q->timeout_ms = req->timeout_ms;
    if (REQ_HAS(req, max_response) && req->max_response > 0)
        q->max = req->max_response;
    if (rt->freeing)
        return fail_later(c, q, "shutting down", "shutdown");
    if (c->inflight >= SN_HTTP_MAX_INFLIGHT)
        return fail_later(c, q, "too many requests in flight", "rejected");
    q->easy = curl_easy_init();
    if (!q->easy)
        return fail_later(c, q, "out of memory", "error");
    const char *why = setup(q, req, sn_runtime_request_id(rt));
    if (why)
        return fail_later(c, q, why, "error");
    if (curl_multi_add_handle(c->multi, q->easy) != CURLM_OK)
        return fail_later(c, q, "could not start the transfer", "error");
    q->next = c->active;
    if (c->active)
        c->active->prev = q;
    c->active = q;
    c->inflight++;
    return 0;
}
