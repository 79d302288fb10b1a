/**
 * @file sigv4.h
 * AWS Signature Version 4 (AWS4-HMAC-SHA256) with OpenSSL, and the credential chain of the
 * `aws` executor. No AWS SDK.
 *
 * The signer (sigv4.c) is pure: no I/O, no clock, no allocation beyond its result, so the unit
 * suite includes sigv4.c directly and checks it against the official AWS SigV4 test suite and
 * against botocore. The credential chain (aws_creds.c) talks to the container credentials
 * endpoint and the instance metadata service through the host's asynchronous HTTP client.
 *
 * Secrets (secret access keys, session tokens, derived keys) are wiped from memory this code
 * owns before it is freed, and never appear in an error phrase.
 */
#ifndef SENTINEL_AWS_SIGV4_H
#define SENTINEL_AWS_SIGV4_H

#include <sentinel/plugin.h>

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------------
 * Signer (sigv4.c)
 * ------------------------------------------------------------------------------------------- */

/** One request header; every header handed to sv4_sign is signed. */
typedef struct sv4_header {
    const char *name;
    const char *value;
} sv4_header_t;

/** The request to sign, as it goes on the wire. */
typedef struct sv4_request {
    const char *method;          /**< "GET", "POST", ... */
    const char *path;            /**< path as sent, without the query; NULL or "" is "/" */
    const char *query;           /**< query string without '?', or NULL */
    const sv4_header_t *headers; /**< must hold Host; all of them are signed */
    size_t nheaders;
    const void *body; /**< payload, may be NULL */
    size_t body_len;
} sv4_request_t;

/** Credentials; session_token is NULL or "" for long-term keys. Borrowed by sv4_sign. */
typedef struct sv4_creds {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;
} sv4_creds_t;

/** S3 rules: the path is neither normalised nor encoded a second time. */
#define SV4_S3_PATH 0x1u

/**
 * A signed request. The caller sends its own headers plus:
 *  - `X-Amz-Date: amz_date` when add_date is set (the request did not carry one),
 *  - `X-Amz-Security-Token: <token>` when add_token is set,
 *  - `Authorization: authorization`.
 * Ownership: the strings belong to the struct; sv4_signed_clear frees them.
 */
typedef struct sv4_signed {
    char amz_date[17];       /**< YYYYMMDDTHHMMSSZ */
    char scope[160];         /**< YYYYMMDD/region/service/aws4_request */
    char signature[65];      /**< lowercase hex */
    char payload_hash[65];   /**< lowercase hex SHA-256 of the body */
    char *canonical_request; /**< step 1 */
    char *string_to_sign;    /**< step 2 */
    char *signed_headers;    /**< "host;x-amz-date" */
    char *authorization;     /**< the Authorization header value */
    int add_date, add_token;
} sv4_signed_t;

/**
 * Sign @p req for @p region / @p service at @p epoch_s (seconds since the epoch, UTC). An
 * X-Amz-Date header already in the request wins over @p epoch_s (the test suite carries one).
 * With a session token and no X-Amz-Security-Token header the token is added and signed (as
 * botocore does). Returns 0, SN_EINVAL (no Host header, bad date, bad region/service; a short
 * phrase in @p err) or SN_ENOMEM. Ownership: borrows everything; fills @p out (clear it with
 * sv4_signed_clear, also after a failure). Thread: any.
 */
int sv4_sign(const sv4_request_t *req, const sv4_creds_t *creds, const char *region,
             const char *service, int64_t epoch_s, unsigned flags, sv4_signed_t *out, char *err,
             size_t errlen);

/** Free and wipe what sv4_sign put into @p s. */
void sv4_signed_clear(sv4_signed_t *s);

/** Lowercase hex SHA-256 of @p len bytes. */
void sv4_sha256_hex(const void *data, size_t len, char out[65]);

/**
 * The SigV4 signing key: HMAC chain over "AWS4"+secret, @p date8 (YYYYMMDD), region, service,
 * "aws4_request". Returns 0 or SN_EINVAL. The caller wipes @p out after use.
 */
int sv4_signing_key(const char *secret, const char *date8, const char *region, const char *service,
                    unsigned char out[32]);

/**
 * RFC 3986 percent-encoding (keep A-Z a-z 0-9 - _ . ~, plus '/' when @p keep_slash) of @p len
 * bytes, appended to *@p buf (a growing NUL-terminated buffer of *@p cap bytes holding *@p n).
 * Returns 0 or SN_ENOMEM.
 */
int sv4_uri_encode(const char *in, size_t len, int keep_slash, char **buf, size_t *n, size_t *cap);

/* ---------------------------------------------------------------------------------------------
 * Credential chain (aws_creds.c)
 * ------------------------------------------------------------------------------------------- */

typedef struct awc awc_t;

/** Where credentials come from. AWC_CHAIN tries env, file, container, then IMDS. */
typedef enum { AWC_CHAIN = 0, AWC_ENV, AWC_FILE, AWC_CONTAINER, AWC_IMDS } awc_source_t;

/** Options; strings are borrowed for awc_new only (copied). NULL means the documented default. */
typedef struct awc_opts {
    awc_source_t source;
    const char *profile;          /**< NULL: $AWS_PROFILE, else "default" */
    const char *credentials_file; /**< NULL: $AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials */
    const char *container_host;   /**< base URL for a RELATIVE_URI; NULL: http://169.254.170.2 */
    const char *imds_endpoint;    /**< NULL: $AWS_EC2_METADATA_SERVICE_ENDPOINT, else
                                       http://169.254.169.254 */
    int imds_disabled;            /**< also $AWS_EC2_METADATA_DISABLED=true */
    long timeout_ms;              /**< per metadata request; 0: 1000 */
} awc_opts_t;

/** Resolved credentials. Ownership: borrowed for the callback only. */
typedef struct awc_creds {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /**< NULL for long-term keys */
    int64_t expires_ms;        /**< 0: does not expire */
    const char *source;        /**< "env", "file:PROFILE", "container", "imds:ROLE" */
} awc_creds_t;

/** @p creds is NULL when status != 0; @p error is a phrase without secrets. Thread: loop. */
typedef void (*awc_done_fn)(void *arg, int status, const awc_creds_t *creds, const char *error);

/** Ownership: caller frees with awc_free. Returns 0 or SN_EINVAL/SN_ENOMEM with @p err. */
int awc_new(const sn_host_t *host, const awc_opts_t *opts, awc_t **out, char *err, size_t errlen);

/**
 * Current credentials: from the cache while valid (more than five minutes before expiry),
 * otherwise resolved anew. @p done runs exactly once, possibly before awc_get returns.
 * Thread: loop.
 */
void awc_get(awc_t *c, awc_done_fn done, void *arg);

/** Forget cached credentials (AWS said they expired or are invalid). Thread: loop. */
void awc_invalidate(awc_t *c);

/** Non-zero while a resolution has requests or file reads in flight. */
int awc_busy(const awc_t *c);

/**
 * Free the chain. Waiters still queued are dropped without a callback (their owner is going
 * away too); requests in flight finish on their own and only free themselves.
 */
void awc_free(awc_t *c);

#endif /* SENTINEL_AWS_SIGV4_H */
