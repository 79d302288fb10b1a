/**
 * @file k8s_auth.c
 * How the kubernetes executor finds and authenticates to the API server: a kubeconfig subset
 * (parsed with libyaml) or the in-cluster service-account files. Everything here is blocking
 * file I/O and runs from create() (load time) or on the host's offload pool, never on the loop.
 * Secrets (tokens, private keys) are never put into error phrases.
 */
#include "k8s-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define K8S_FILE_MAX (1 << 20) /* kubeconfig, certificates, token */

static void wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = 0;
    free(s);
}

void k8s_conn_free(k8s_conn_t *c)
{
    free(c->server);
    wipe_free(c->token);
    free(c->token_file);
    free(c->ca_file);
    free(c->ca_pem);
    free(c->cert_pem);
    wipe_free(c->key_pem);
    free(c->namespace);
    free(c->source);
    memset(c, 0, sizeof(*c));
}

int k8s_read_file(const char *path, size_t max, char **out, size_t *len)
{
    *out = NULL;
    if (len)
        *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    int rc = 0;
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max) {
                rc = -EFBIG;
                goto out;
            }
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                rc = -ENOMEM;
                goto out;
            }
            buf = nb;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = 0;
    *out = buf;
    buf = NULL;
    if (len)
        *len = n;
out:
    if (buf) {
        memset(buf, 0, cap);
        free(buf);
    }
    close(fd);
    return rc;
}

static int b64_val(int ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

int k8s_b64_decode(const char *in, char **out, size_t *len)
{
    size_t n = strlen(in);
    char *buf = malloc(n / 4 * 3 + 4);
    if (!buf)
        return SN_ENOMEM;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    size_t o = 0;
    for (const char *p = in; *p; p++) {
        if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
            continue;
        if (*p == '=') {
            pad++;
            continue;
        }
        int v = b64_val((unsigned char)*p);
        if (v < 0 || pad) {
            free(buf);
            return SN_EINVAL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (pad > 2) {
        free(buf);
        return SN_EINVAL;
    }
    buf[o] = 0;
    *out = buf;
    if (len)
        *len = o;
    return 0;
}

/* Trim trailing whitespace in place (token files end with a newline). */
static void rtrim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
}

/* ---- kubeconfig -------------------------------------------------------------------------- */

static yaml_node_t *ynode(yaml_document_t *d, int idx)
{
    return idx ? yaml_document_get_node(d, idx) : NULL;
}

/* The value of @p key in mapping @p m, or NULL. */
static yaml_node_t *yget(yaml_document_t *d, yaml_node_t *m, const char *key)
{
    if (!m || m->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = ynode(d, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strlen(key) == k->data.scalar.length &&
            memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0)
            return ynode(d, p->value);
    }
    return NULL;
}

/* A scalar's text (borrowed from the document; libyaml NUL-terminates scalars), or NULL. */
static const char *ystr(yaml_node_t *n)
{
    if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.length == 0)
        return NULL;
    return (const char *)n->data.scalar.value;
}

/* The `inner` mapping of the entry named @p name in sequence @p seq (clusters, users,
 * contexts: [{name: x, cluster: {...}}]). */
static yaml_node_t *ynamed(yaml_document_t *d, yaml_node_t *seq, const char *name,
                           const char *inner)
{
    if (!seq || seq->type != YAML_SEQUENCE_NODE || !name)
        return NULL;
    for (yaml_node_item_t *i = seq->data.sequence.items.start; i < seq->data.sequence.items.top;
         i++) {
        yaml_node_t *e = ynode(d, *i);
        const char *n = ystr(yget(d, e, "name"));
        if (n && strcmp(n, name) == 0)
            return yget(d, e, inner);
    }
    return NULL;
}

/* @p rel relative to the kubeconfig's directory unless absolute. Ownership: caller frees. */
static char *kc_path(const char *kubeconfig, const char *rel)
{
    if (rel[0] == '/')
        return strdup(rel);
    const char *slash = strrchr(kubeconfig, '/');
    if (!slash)
        return strdup(rel);
    size_t dl = (size_t)(slash - kubeconfig);
    char *p = malloc(dl + strlen(rel) + 2);
    if (p)
        sprintf(p, "%.*s/%s", (int)dl, kubeconfig, rel);
    return p;
}

/* PEM from "<field>-data" (base64) or "<field>" (a file). 0 when neither is set. */
static int kc_pem(const char *kubeconfig, yaml_document_t *d, yaml_node_t *m, const char *field,
                  char **out, char *err, size_t errlen)
{
    char key[64];
    snprintf(key, sizeof(key), "%s-data", field);
    const char *data = ystr(yget(d, m, key));
    const char *file = ystr(yget(d, m, field));
    *out = NULL;
    if (data) {
        if (k8s_b64_decode(data, out, NULL) != 0) {
            snprintf(err, errlen, "kubeconfig %s: %s is not valid base64", kubeconfig, key);
            return SN_EINVAL;
        }
        return 0;
    }
    if (!file)
        return 0;
    char *path = kc_path(kubeconfig, file);
    int rc = path ? k8s_read_file(path, K8S_FILE_MAX, out, NULL) : -ENOMEM;
    if (rc != 0)
        snprintf(err, errlen, "kubeconfig %s: cannot read %s %s: %s", kubeconfig, field,
                 path ? path : file, strerror(-rc));
    free(path);
    return rc ? SN_EINVAL : 0;
}

int k8s_conn_kubeconfig(k8s_conn_t *c, const char *path, const char *context, char *err,
                        size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    yaml_parser_t parser;
    yaml_document_t doc;
    int have_doc = 0, rc = SN_EINVAL;
    int r = k8s_read_file(path, K8S_FILE_MAX, &text, &len);
    if (r != 0) {
        snprintf(err, errlen, "cannot read kubeconfig %s: %s", path, strerror(-r));
        return SN_EINVAL;
    }
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "out of memory");
        goto out_text;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        /* The parser's problem and position; never the text, which may hold secrets. */
        snprintf(err, errlen, "kubeconfig %s: YAML error at line %lu: %s", path,
                 (unsigned long)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "unreadable");
        goto out_parser;
    }
    have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        snprintf(err, errlen, "kubeconfig %s: not a kubeconfig (no top-level mapping)", path);
        goto out_parser;
    }
    const char *ctx_name =
        context && context[0] ? context : ystr(yget(&doc, root, "current-context"));
    if (!ctx_name) {
        snprintf(err, errlen, "kubeconfig %s: no current-context and no context set", path);
        goto out_parser;
    }
    yaml_node_t *ctx = ynamed(&doc, yget(&doc, root, "contexts"), ctx_name, "context");
    if (!ctx) {
        snprintf(err, errlen, "kubeconfig %s: context \"%s\" not found", path, ctx_name);
        goto out_parser;
    }
    const char *cl_name = ystr(yget(&doc, ctx, "cluster"));
    const char *us_name = ystr(yget(&doc, ctx, "user"));
    const char *ns = ystr(yget(&doc, ctx, "namespace"));
    yaml_node_t *cl = ynamed(&doc, yget(&doc, root, "clusters"), cl_name, "cluster");
    if (!cl) {
        snprintf(err, errlen, "kubeconfig %s: cluster \"%s\" of context \"%s\" not found", path,
                 cl_name ? cl_name : "", ctx_name);
        goto out_parser;
    }
    const char *server = ystr(yget(&doc, cl, "server"));
    if (!server || (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)) {
        snprintf(err, errlen, "kubeconfig %s: cluster \"%s\" has no http(s) server", path, cl_name);
        goto out_parser;
    }
    yaml_node_t *us = us_name ? ynamed(&doc, yget(&doc, root, "users"), us_name, "user") : NULL;
    if (us_name && !us) {
        snprintf(err, errlen, "kubeconfig %s: user \"%s\" of context \"%s\" not found", path,
                 us_name, ctx_name);
        goto out_parser;
    }
    if (yget(&doc, us, "exec") || yget(&doc, us, "auth-provider")) {
        snprintf(err, errlen,
                 "kubeconfig %s: user \"%s\" uses an exec/auth-provider plugin, which this "
                 "executor does not run; use a token or a client certificate",
                 path, us_name);
        goto out_parser;
    }
    c->server = strdup(server);
    size_t sl = c->server ? strlen(c->server) : 0;
    while (sl && c->server[sl - 1] == '/')
        c->server[--sl] = 0;
    c->namespace = ns ? strdup(ns) : NULL;
    const char *ins = ystr(yget(&doc, cl, "insecure-skip-tls-verify"));
    c->insecure = ins && strcmp(ins, "true") == 0;
    if (kc_pem(path, &doc, cl, "certificate-authority", &c->ca_pem, err, errlen) != 0 ||
        kc_pem(path, &doc, us, "client-certificate", &c->cert_pem, err, errlen) != 0 ||
        kc_pem(path, &doc, us, "client-key", &c->key_pem, err, errlen) != 0)
        goto out_parser;
    if (!c->cert_pem != !c->key_pem) {
        snprintf(err, errlen,
                 "kubeconfig %s: user \"%s\" has a client certificate without its "
                 "key (or a key without its certificate)",
                 path, us_name);
        goto out_parser;
    }
    const char *tok = ystr(yget(&doc, us, "token"));
    const char *tok_file = ystr(yget(&doc, us, "tokenFile"));
    if (tok) {
        c->token = strdup(tok);
    } else if (tok_file) {
        c->token_file = kc_path(path, tok_file);
        r = c->token_file ? k8s_read_file(c->token_file, K8S_FILE_MAX, &c->token, NULL) : -ENOMEM;
        if (r != 0) {
            snprintf(err, errlen, "kubeconfig %s: cannot read tokenFile %s: %s", path,
                     c->token_file ? c->token_file : tok_file, strerror(-r));
            goto out_parser;
        }
        rtrim(c->token);
    }
    if (!c->token && !c->cert_pem) {
        snprintf(err, errlen,
                 "kubeconfig %s: user \"%s\" has neither a token nor a client "
                 "certificate",
                 path, us_name ? us_name : "");
        goto out_parser;
    }
    char src[512];
    snprintf(src, sizeof(src), "kubeconfig %s (context %s)", path, ctx_name);
    c->source = strdup(src);
    rc = c->server && c->source ? 0 : SN_ENOMEM;
    if (rc)
        snprintf(err, errlen, "out of memory");
out_parser:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
out_text:
    memset(text, 0, len);
    free(text);
    if (rc != 0)
        k8s_conn_free(c);
    return rc;
}

/* ---- in-cluster ---------------------------------------------------------------------------- */

int k8s_conn_in_cluster(k8s_conn_t *c, const char *server, const char *token_file,
                        const char *ca_file, char *err, size_t errlen)
{
    char url[320];
    if (server && server[0]) {
        snprintf(url, sizeof(url), "%s", server);
    } else {
        const char *host = getenv("KUBERNETES_SERVICE_HOST");
        const char *port = getenv("KUBERNETES_SERVICE_PORT");
        if (!host || !host[0] || !port || !port[0]) {
            snprintf(err, errlen,
                     "not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are "
                     "not both set (set kubeconfig, or server for tests)");
            return SN_EINVAL;
        }
        if (strspn(port, "0123456789") != strlen(port) || strlen(port) > 5) {
            snprintf(err, errlen, "KUBERNETES_SERVICE_PORT is not a port number");
            return SN_EINVAL;
        }
        /* An IPv6 literal needs brackets in a URL. */
        int v6 = strchr(host, ':') != NULL && host[0] != '[';
        snprintf(url, sizeof(url), "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
    }
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/')
        url[--ul] = 0;
    int r = k8s_read_file(token_file, K8S_FILE_MAX, &c->token, NULL);
    if (r != 0) {
        snprintf(err, errlen, "cannot read service-account token %s: %s", token_file, strerror(-r));
        goto fail;
    }
    rtrim(c->token);
    if (!c->token[0]) {
        snprintf(err, errlen, "service-account token %s is empty", token_file);
        goto fail;
    }
    c->server = strdup(url);
    c->token_file = strdup(token_file);
    c->source = strdup("in-cluster service account");
    if (strncmp(url, "https://", 8) == 0) {
        if (access(ca_file, R_OK) != 0) {
            snprintf(err, errlen, "cannot read the cluster CA %s: %s", ca_file, strerror(errno));
            goto fail;
        }
        c->ca_file = strdup(ca_file);
        if (!c->ca_file)
            goto nomem;
    }
    if (!c->server || !c->token_file || !c->source)
        goto nomem;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    k8s_conn_free(c);
    return SN_EINVAL;
}
