/**
 * @file k8s-internal.h
 * Shared between the files of the `kubernetes` executor: the connection settings (k8s_auth.c),
 * the instance and the asynchronous operation machinery (kubernetes.c) and the verbs'
 * state machines (k8s_verbs.c). Nothing here crosses the plugin boundary.
 */
#ifndef SN_K8S_INTERNAL_H
#define SN_K8S_INTERNAL_H

#include <sentinel/plugin.h>

#include <stddef.h>
#include <stdint.h>

#define K8S_ANN_RESTARTED "kubectl.kubernetes.io/restartedAt"
#define K8S_ANN_KEY "sentinel.dev/idempotency-key"
#define K8S_REPLICAS_MAX 10000
#define K8S_KEYS_MAX 10000 /* idempotency keys remembered in memory */

/* ---- connection (k8s_auth.c) ---------------------------------------------------------------- */

/** Where and how to reach the API server. Every string is owned (freed by k8s_conn_free). */
typedef struct k8s_conn {
    char *server;     /**< base URL, no trailing slash */
    char *token;      /**< bearer token (secret), or NULL */
    char *token_file; /**< file the token is (re-)read from, or NULL */
    char *ca_file;    /**< PEM bundle verifying the server, or NULL */
    char *ca_pem;     /**< the same in memory (certificate-authority-data), or NULL */
    char *cert_pem;   /**< client certificate (mutual TLS), or NULL */
    char *key_pem;    /**< its private key (secret), or NULL */
    char *namespace;  /**< kubeconfig context namespace, or NULL */
    char *source;     /**< "in-cluster" or "kubeconfig FILE (context C)", for messages */
    int insecure;     /**< skip server verification (explicitly configured) */
} k8s_conn_t;

/** Read a whole small file (blocking; create() and the offload pool only). Ownership: *out is
 * the caller's, NUL-terminated. Returns 0 or -errno. */
int k8s_read_file(const char *path, size_t max, char **out, size_t *len);

/** Decode standard base64 (whitespace ignored). Ownership: *out is the caller's, NUL-terminated.
 * Returns 0 or SN_EINVAL. */
int k8s_b64_decode(const char *in, char **out, size_t *len);

/**
 * Fill @p c from kubeconfig @p path (libyaml), using @p context or the file's current-context.
 * Supported: clusters[].cluster.{server, certificate-authority, certificate-authority-data,
 * insecure-skip-tls-verify}, users[].user.{token, tokenFile, client-certificate(-data),
 * client-key(-data)}, contexts[].context.{cluster, user, namespace}. Relative paths are taken
 * from the kubeconfig's directory. `exec` and `auth-provider` users are refused.
 * Blocking: call from create() only. Returns 0 or SN_EINVAL with a phrase in @p err (no secret).
 */
int k8s_conn_kubeconfig(k8s_conn_t *c, const char *path, const char *context, char *err,
                        size_t errlen);

/**
 * Fill @p c for a pod: server https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT (or
 * @p server when set), bearer token from @p token_file, CA @p ca_file.
 * Blocking: create() only. Returns 0 or SN_EINVAL with a phrase in @p err.
 */
int k8s_conn_in_cluster(k8s_conn_t *c, const char *server, const char *token_file,
                        const char *ca_file, char *err, size_t errlen);

/** Free everything @p c holds (secrets are wiped first) and zero it. */
void k8s_conn_free(k8s_conn_t *c);

/* ---- instance and operations (kubernetes.c) ------------------------------------------------- */

typedef enum { K8S_RESTART_POD = 0, K8S_ROLLOUT_RESTART, K8S_SCALE } k8s_verb_t;
typedef enum { K8S_ASSESS = 0, K8S_SNAPSHOT, K8S_EXECUTE, K8S_VERIFY, K8S_ROLLBACK } k8s_opkind_t;

typedef struct k8s k8s_t;
typedef struct k8s_op k8s_op_t;

/** A response handed to a step: status 0 = transport failure (error says why). */
typedef struct k8s_resp {
    long status;
    json_t *json;      /**< parsed body or NULL; borrowed for the step */
    const char *error; /**< transport phrase when status == 0 */
    long retry_after_s;
} k8s_resp_t;

typedef void (*k8s_step_fn)(k8s_op_t *op, const k8s_resp_t *r);

struct k8s {
    const sn_host_t *host;
    k8s_conn_t conn;
    int tls_ok; /**< the host can apply this connection's TLS settings */
    const char *const *namespaces;
    int64_t verify_timeout_ms, poll_ms, request_timeout_ms, token_refresh_ms, pod_start_s;
    int64_t grace_period_s; /**< -1: server default */
    int retries;
    json_t *keys; /**< idempotency key -> what execute did (bounded, oldest dropped) */
    k8s_op_t *ops;
    size_t nops;
    sn_timer_t *token_timer;
    int token_reading;       /**< an offloaded token read is running */
    struct k8s_tok *tok_job; /**< that read, detached at destroy */
    k8s_op_t *token_waiters; /**< ops waiting for the token re-read after a 401 */
    unsigned long calls, mutations, failures;
    int stopping;
    sn_done_fn stop_done;
    void *stop_arg;
};

struct k8s_op {
    k8s_op_t *next, *prev;
    k8s_op_t *wait_next; /**< in k->token_waiters */
    k8s_t *k;            /**< NULL when the instance was destroyed under an HTTP call */
    k8s_opkind_t kind;
    k8s_verb_t verb;
    char *verb_name, *target, *ns, *name, *key, *incident;
    int target_is_pod;
    json_t *params; /**< copy of the action's params */
    json_t *snap;   /**< rollback: copy of the snapshot */
    int dry_run;
    sn_done_fn done;
    void *arg;
    int inflight;
    sn_timer_t *timer;
    k8s_step_fn step, after_timer;
    /* the request in flight, kept to re-send it after a token re-read */
    char *method, *path, *body, *ctype;
    int auth_retried;
    int attempt;
    int64_t started_mono, deadline_mono, poll_ms;
    int64_t replicas; /**< scale: the wanted replicas */
    json_t *work;     /**< scratch: objects read so far */
    char wait_reason[256];
};

/** The instance's in-memory record of executed keys. Ownership: borrowed. */
json_t *k8s_key_get(k8s_t *k, const char *key);
void k8s_key_put(k8s_t *k, const char *key, json_t *rec);

/** Send a request for @p op; @p step gets the response. @p path starts with '/'; @p body and
 * @p ctype may be NULL. The strings are copied. */
void k8s_call(k8s_op_t *op, const char *method, const char *path, const char *ctype,
              const char *body, k8s_step_fn step);

/** Run @p fn for @p op after @p ms (polling, back-off). */
void k8s_after(k8s_op_t *op, int64_t ms, k8s_step_fn fn);

/** Complete @p op: done(arg, rc, result) once, then free. Ownership: @p result is borrowed. */
void k8s_finish(k8s_op_t *op, int rc, json_t *result);

/** Complete @p op with an error: "<verb> <target>: <phrase>" in result.error, plus code and
 * reason when given. */
void k8s_fail(k8s_op_t *op, int rc, long code, const char *reason, const char *fmt, ...)
    SN_PRINTF(5, 6);

/** Complete @p op from a failed API response: the Status' code, reason and message are named;
 * @p what says which call ("GET deployment"). Maps 404 -> SN_ENOTFOUND, 409 -> SN_ECONFLICT,
 * 400/422 -> SN_EINVAL, 401/403 -> SN_EDENIED, 429/5xx -> SN_EAGAIN, transport -> SN_EIO. */
void k8s_fail_resp(k8s_op_t *op, const char *what, const k8s_resp_t *r);

/** Retryable: transport failure, 429, 500, 502, 503, 504. */
int k8s_retryable(const k8s_resp_t *r);

/** Back off and run @p restart again if the op has attempts left (returns 1), else 0. */
int k8s_retry(k8s_op_t *op, const k8s_resp_t *r, k8s_step_fn restart);

/** "%s" of the Status message in @p r, or a short phrase. Borrowed from r or static. */
const char *k8s_status_message(const k8s_resp_t *r, char *buf, size_t len);

/** RFC 3339 UTC seconds ("2024-05-01T10:00:00Z") of @p ms. */
void k8s_rfc3339(int64_t ms, char out[32]);

/** Parse a duration param (number = seconds, or with ms/s/m/h); -1 when unusable. */
int64_t k8s_param_duration(const json_t *params, const char *key, int64_t def_ms);

/* ---- verbs (k8s_verbs.c) -------------------------------------------------------------------- */

/** First step of each operation. The op is validated (target kind, namespace, params). */
void k8s_verbs_start(k8s_op_t *op);

#endif /* SN_K8S_INTERNAL_H */
