/**
 * @file check_kubernetes.c
 * Tests of the kubernetes executor loaded as a .so through the harness, against the TEST DOUBLE
 * of the Kubernetes API server (tests/e2e/k8s_double.py) started as a subprocess per test and
 * driven over its admin routes: each verb's requests (method, path, body, headers), dry runs
 * without mutation, idempotency across a re-created instance, verify converging / timing out /
 * stuck, rollback, assess from live state with PodDisruptionBudgets, kubeconfig and in-cluster
 * credentials (token rotation on 401), namespace scoping, and API errors (404/409/422/403)
 * named with verb, target and the Status message. The double limits every call to the Role in
 * packaging/kubernetes/rbac-executor.yaml, so the shipped RBAC is proven sufficient.
 */
#include "harness.h"

#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DOUBLE SN_SOURCE_DIR "/tests/e2e/k8s_double.py"
/* The double enforces the shipped Role: every test also proves it is enough. */
#define ROLE SN_SOURCE_DIR "/packaging/kubernetes/rbac-executor.yaml"
#define TOKEN "test-token-0123456789"
#define K8S_LABELS "instance=\"executor:kubernetes\""
#define RESTARTED "kubectl.kubernetes.io/restartedAt"
#define KEYANN "sentinel.dev/idempotency-key"

typedef enum { OP_ASSESS, OP_SNAPSHOT, OP_EXECUTE, OP_VERIFY, OP_ROLLBACK } op_t;

typedef struct kx {
    sn_harness_t *h;
    pid_t pid;
    int port;
    int tls; /* the double serves https with a test CA (dir/ca.crt, dir/srv.*) */
    char dir[64];
    const sn_executor_ops_t *ops;
    void *self;
} kx_t;

/* ---- the double ------------------------------------------------------------------------- */

#ifdef SN_HTTP_TLS_MINOR
/* A test CA, a server certificate for 127.0.0.1, a client certificate (CN sentinel-client) and
 * an unrelated CA, made with the openssl command line in @p dir. */
static void make_pki(const char *dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "(cd %s && printf 'subjectAltName=IP:127.0.0.1\n' > san.ext && "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 "
             "-subj /CN=test-ca && "
             "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=srv && "
             "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-out srv.crt -days 2 -extfile san.ext && "
             "openssl req -newkey rsa:2048 -nodes -keyout cli.key -out cli.csr "
             "-subj /CN=sentinel-client && "
             "openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-out cli.crt -days 2 && "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt "
             "-days 2 -subj /CN=other-ca && "
             "openssl base64 -A -in other.crt -out other.b64 && "
             "openssl base64 -A -in ca.crt -out ca.b64) >/dev/null 2>&1",
             dir);
    ck_assert_msg(system(cmd) == 0, "openssl could not make the test PKI");
}
#endif

static void dbl_start_opt(kx_t *f, const char *progress_deadline, int tls)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sn-k8s-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    char port_file[128], cert[128], key[128], ca[128];
    snprintf(port_file, sizeof(port_file), "%s/port", f->dir);
    snprintf(cert, sizeof(cert), "%s/srv.crt", f->dir);
    snprintf(key, sizeof(key), "%s/srv.key", f->dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", f->dir);
    f->tls = tls;
#ifdef SN_HTTP_TLS_MINOR
    if (tls)
        make_pki(f->dir);
#endif
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive a failed test */
        const char *pd = progress_deadline ? progress_deadline : "600";
        if (tls)
            execlp("python3", "python3", DOUBLE, "--port", "0", "--port-file", port_file, "--token",
                   TOKEN, "--pod-ready", "0.2", "--grace", "0.1", "--progress-deadline", pd,
                   "--tls-cert", cert, "--tls-key", key, "--client-ca", ca, "--rbac", ROLE,
                   (char *)NULL);
        else
            execlp("python3", "python3", DOUBLE, "--port", "0", "--port-file", port_file, "--token",
                   TOKEN, "--pod-ready", "0.2", "--grace", "0.1", "--progress-deadline", pd,
                   "--rbac", ROLE, (char *)NULL);
        _exit(127);
    }
    f->pid = pid;
    for (int i = 0; i < 200; i++) {
        FILE *pf = fopen(port_file, "r");
        if (pf) {
            int ok = fscanf(pf, "%d", &f->port) == 1;
            fclose(pf);
            if (ok)
                break;
        }
        usleep(25000);
    }
    ck_assert_msg(f->port > 0, "the k8s double did not start");
}

static void dbl_start(kx_t *f, const char *progress_deadline)
{
    dbl_start_opt(f, progress_deadline, 0);
}

typedef struct buf {
    char *p;
    size_t n;
} buf_t;

static size_t on_data(char *d, size_t sz, size_t nm, void *arg)
{
    buf_t *b = arg;
    char *np = realloc(b->p, b->n + sz * nm + 1);
    if (!np)
        return 0;
    b->p = np;
    memcpy(b->p + b->n, d, sz * nm);
    b->n += sz * nm;
    b->p[b->n] = 0;
    return sz * nm;
}

/* A call to the double's admin routes (blocking; the double is another process).
 * Ownership: caller decrefs. */
static json_t *admin(kx_t *f, const char *method, const char *path, const char *fmt, ...)
{
    char body[4096] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(body, sizeof(body), fmt, ap);
        va_end(ap);
    }
    char url[256];
    snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", f->tls ? "https" : "http", f->port, path);
    CURL *c = curl_easy_init();
    buf_t b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (f->tls) {
        char ca[128];
        snprintf(ca, sizeof(ca), "%s/ca.crt", f->dir);
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (fmt)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    ck_assert_msg(rc == CURLE_OK && code == 200, "admin %s %s: curl %d, HTTP %ld: %s", method, path,
                  (int)rc, code, b.p ? b.p : "");
    json_t *j = json_loads(b.p ? b.p : "null", JSON_DECODE_ANY, NULL);
    free(b.p);
    return j;
}

static json_t *requests(kx_t *f)
{
    json_t *r = admin(f, "GET", "/_double/requests", NULL);
    json_t *a = json_incref(json_object_get(r, "requests"));
    json_decref(r);
    return a;
}

/* Requests with @p method (NULL: every non-GET). */
static int count_method(kx_t *f, const char *method)
{
    json_t *rs = requests(f);
    size_t i;
    json_t *r;
    int n = 0;
    json_array_foreach(rs, i, r)
    {
        const char *m = json_string_value(json_object_get(r, "method"));
        n += method ? strcmp(m, method) == 0 : strcmp(m, "GET") != 0;
    }
    json_decref(rs);
    return n;
}

/* The last request with @p method. Ownership: caller decrefs. */
static json_t *last_request(kx_t *f, const char *method)
{
    json_t *rs = requests(f), *out = NULL;
    size_t i;
    json_t *r;
    json_array_foreach(rs, i, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "method")), method) == 0)
            out = r;
    }
    json_incref(out);
    json_decref(rs);
    ck_assert_msg(out != NULL, "no %s request reached the double", method);
    return out;
}

static void add_deployment(kx_t *f, const char *ns, const char *name, int replicas)
{
    json_decref(admin(f, "POST", "/_double/deployments",
                      "{\"namespace\":\"%s\",\"name\":\"%s\",\"replicas\":%d}", ns, name,
                      replicas));
}

static json_t *deployment(kx_t *f, const char *ns, const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "/_double/deployments/%s/%s", ns, name);
    return admin(f, "GET", path, NULL);
}

static json_t *pods(kx_t *f, const char *ns)
{
    char path[128];
    snprintf(path, sizeof(path), "/_double/pods/%s", ns);
    json_t *r = admin(f, "GET", path, NULL);
    json_t *items = json_incref(json_object_get(r, "items"));
    json_decref(r);
    return items;
}

/* ---- the plugin ------------------------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    fclose(fp);
}

/* A kubeconfig for the double; @p user_block replaces the default token user. */
static void write_kubeconfig(kx_t *f, const char *name, const char *ns, const char *user_block)
{
    char path[128], text[4096];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    snprintf(text, sizeof(text),
             "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
             "clusters:\n- name: double\n  cluster:\n    server: http://127.0.0.1:%d/\n"
             "contexts:\n- name: test\n  context:\n    cluster: double\n    user: sentinel\n%s%s%s"
             "users:\n- name: sentinel\n  user:\n%s",
             f->port, ns ? "    namespace: " : "", ns ? ns : "", ns ? "\n" : "",
             user_block ? user_block : "    token: " TOKEN "\n");
    write_file(path, text);
}

static void *create_with(kx_t *f, const char *settings, sn_err_t *err)
{
    const sn_plugin_t *p = NULL;
    if (!f->h)
        f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    void *self = sn_harness_create(f->h, SN_EXECUTOR, "kubernetes", settings, &p, err);
    if (self)
        f->ops = p->ops;
    return self;
}

/* Open the executor on a kubeconfig for the double, plus @p extra settings. */
static void kx_open(kx_t *f, const char *extra)
{
    write_kubeconfig(f, "kubeconfig", NULL, NULL);
    char settings[1024];
    snprintf(settings, sizeof(settings),
             "kubeconfig = %s/kubeconfig\npoll_interval = 100ms\nverify_timeout = 20s\n%s", f->dir,
             extra ? extra : "");
    sn_err_t err = {{0}};
    f->self = create_with(f, settings, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
}

static void kx_close(kx_t *f)
{
    if (f->h)
        sn_harness_free(f->h);
    if (f->pid > 0) {
        kill(f->pid, SIGTERM);
        waitpid(f->pid, NULL, 0);
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    ck_assert_int_eq(system(cmd), 0);
}

static sn_action_t act(const char *verb, const char *target, const char *key, const json_t *params,
                       int dry_run)
{
    sn_action_t a = {
        .struct_size = sizeof(sn_action_t),
        .incident = "0190a0b0-0000-7000-8000-000000000001",
        .verb = verb,
        .target = target,
        .params = params,
        .idempotency_key = key,
        .dry_run = dry_run,
    };
    return a;
}

/* Run one executor call on @p self to completion. r->result must be cleared by the caller. */
static int run_on(kx_t *f, void *self, op_t op, const sn_action_t *a, const json_t *snap,
                  sn_result_t *r)
{
    memset(r, 0, sizeof(*r));
    switch (op) {
    case OP_ASSESS:
        f->ops->assess(self, a, sn_result_done, r);
        break;
    case OP_SNAPSHOT:
        f->ops->snapshot(self, a, sn_result_done, r);
        break;
    case OP_EXECUTE:
        f->ops->execute(self, a, sn_result_done, r);
        break;
    case OP_VERIFY:
        f->ops->verify(self, a, sn_result_done, r);
        break;
    case OP_ROLLBACK:
        f->ops->rollback(self, a, snap, sn_result_done, r);
        break;
    }
    ck_assert_int_eq(sn_harness_wait(f->h, r, 60000), 0);
    return r->status;
}

static int run(kx_t *f, op_t op, const sn_action_t *a, const json_t *snap, sn_result_t *r)
{
    return run_on(f, f->self, op, a, snap, r);
}

static const char *rstr(const sn_result_t *r, const char *key)
{
    const char *s = json_string_value(json_object_get(r->result, key));
    return s ? s : "";
}

static json_int_t ival(const json_t *o, const char *a, const char *b)
{
    const json_t *v = json_object_get(o, a);
    if (b)
        v = json_object_get(v, b);
    return json_integer_value(v);
}

static void wait_converged(kx_t *f, const char *ns, const char *name, int replicas)
{
    for (int i = 0; i < 200; i++) {
        json_t *d = deployment(f, ns, name);
        int ok = ival(d, "status", "observedGeneration") >= ival(d, "metadata", "generation") &&
                 ival(d, "spec", "replicas") == replicas &&
                 ival(d, "status", "updatedReplicas") == replicas &&
                 ival(d, "status", "replicas") == replicas &&
                 ival(d, "status", "readyReplicas") == replicas;
        json_decref(d);
        if (ok)
            return;
        usleep(50000);
    }
    ck_abort_msg("deployment %s/%s did not converge to %d replicas", ns, name, replicas);
}

/* spec.template.metadata.annotations[key] of a deployment, or NULL. Borrowed. */
static json_t *template_annotation(const json_t *d, const char *key)
{
    json_t *tm =
        json_object_get(json_object_get(json_object_get(d, "spec"), "template"), "metadata");
    return json_object_get(json_object_get(tm, "annotations"), key);
}

static void reset_double(kx_t *f)
{
    json_decref(admin(f, "POST", "/_double/reset", "{}"));
}

static void assert_rfc3339(const char *s)
{
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq((int)strlen(s), 20);
    ck_assert(s[4] == '-' && s[10] == 'T' && s[13] == ':' && s[19] == 'Z');
}

/* ---- tests ------------------------------------------------------------------------------ */

START_TEST(rollout_restart_patches_and_verifies)
{
    kx_t f;
    dbl_start(&f, NULL);
    add_deployment(&f, "shop", "checkout", 3);
    kx_open(&f, NULL);
    const char *t = "deployment/shop/checkout";
    sn_action_t a = act("rollout_restart", t, "inc1:0:0", NULL, 0);
    sn_result_t r;

    ck_assert_int_eq(run(&f, OP_ASSESS, &a, NULL, &r), 0);
    ck_assert_str_eq(rstr(&r, "risk"), "low");
    ck_assert_int_eq(ival(r.result, "downtime_s", NULL), 0);
    ck_assert_int_eq(ival(r.result, "blast_radius", NULL), 3);
    ck_assert_int_eq(ival(r.result, "live", "ready"), 3);
    sn_result_clear(&r);

    ck_assert_int_eq(run(&f, OP_SNAPSHOT, &a, NULL, &r), 0);
    json_t *snap = json_incref(r.result);
    sn_result_clear(&r);
    ck_assert_int_eq(ival(snap, "replicas", NULL), 3);
    ck_assert(json_is_null(json_object_get(snap, "restartedAt")));
    ck_assert_int_eq(ival(snap, "generation", NULL), 1);

    json_t *before = deployment(&f, "shop", "checkout");
    ck_assert_int_eq(run(&f, OP_EXECUTE, &a, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "changed")));
    ck_assert_int_eq(ival(r.result, "generation", NULL), 2);
    sn_result_clear(&r);

    /* Exactly one PATCH, as kubectl rollout restart sends it, plus the key. */
    ck_assert_int_eq(count_method(&f, NULL), 1);
    json_t *p = last_request(&f, "PATCH");
    ck_assert_str_eq(json_string_value(json_object_get(p, "path")),
                     "/apis/apps/v1/namespaces/shop/deployments/checkout");
    ck_assert_str_eq(json_string_value(json_object_get(p, "content_type")),
                     "application/strategic-merge-patch+json");
    ck_assert_str_eq(json_string_value(json_object_get(p, "accept")), "application/json");
    ck_assert_str_eq(json_string_value(json_object_get(p, "token")), TOKEN);
    json_t *body = json_object_get(p, "body");
    json_t *tann = json_object_get(
        json_object_get(json_object_get(json_object_get(body, "spec"), "template"), "metadata"),
        "annotations");
    assert_rfc3339(json_string_value(json_object_get(tann, RESTARTED)));
    json_t *mann = json_object_get(json_object_get(body, "metadata"), "annotations");
    ck_assert_str_eq(json_string_value(json_object_get(mann, KEYANN)), "inc1:0:0");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(body, "metadata"), "resourceVersion")),
        json_string_value(json_object_get(json_object_get(before, "metadata"), "resourceVersion")));
    json_decref(p);
    json_decref(before);

    /* verify waits for the rollout the way kubectl rollout status does. */
    int64_t t0 = sn_mono_ms();
    ck_assert_int_eq(run(&f, OP_VERIFY, &a, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "converged")));
    ck_assert_int_eq(ival(r.result, "observedGeneration", NULL), 2);
    ck_assert_int_eq(ival(r.result, "updatedReplicas", NULL), 3);
    ck_assert_int_eq(ival(r.result, "availableReplicas", NULL), 3);
    ck_assert_int_gt(sn_mono_ms() - t0, 300); /* it really waited for new pods */
    sn_result_clear(&r);
    ck_assert_int_gt(count_method(&f, "GET"), 3);

    /* The same key again: nothing is sent that changes anything. */
    ck_assert_int_eq(run(&f, OP_EXECUTE, &a, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "deduplicated")));
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, NULL), 1);

    /* A re-created instance (a restarted daemon) finds the key on the deployment. */
    sn_err_t err = {{0}};
    char settings[256];
    snprintf(settings, sizeof(settings), "kubeconfig = %s/kubeconfig\npoll_interval = 100ms\n",
             f.dir);
    void *fresh = create_with(&f, settings, &err);
    ck_assert_msg(fresh != NULL, "%s", err.msg);
    ck_assert_int_eq(run_on(&f, fresh, OP_EXECUTE, &a, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "deduplicated")));
    ck_assert(strstr(rstr(&r, "reason"), "already carries") != NULL);
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, NULL), 1);
    ck_assert_int_eq(run_on(&f, fresh, OP_VERIFY, &a, NULL, &r), 0);
    sn_result_clear(&r);

    /* A key that never ran: verify says so at once, which lets the core execute it once. */
    sn_action_t other = act("rollout_restart", t, "inc1:0:1", NULL, 0);
    t0 = sn_mono_ms();
    ck_assert_int_eq(run_on(&f, fresh, OP_VERIFY, &other, NULL, &r), SN_ENOTFOUND);
    ck_assert(strstr(rstr(&r, "error"), "change not applied") != NULL);
    ck_assert_int_lt(sn_mono_ms() - t0, 3000);
    sn_result_clear(&r);

    /* Rollback restores the previous template annotation (none: removed). */
    ck_assert_int_eq(run(&f, OP_ROLLBACK, &a, snap, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "restored")));
    sn_result_clear(&r);
    p = last_request(&f, "PATCH");
    tann = json_object_get(
        json_object_get(
            json_object_get(json_object_get(json_object_get(p, "body"), "spec"), "template"),
            "metadata"),
        "annotations");
    ck_assert(json_is_null(json_object_get(tann, RESTARTED)));
    json_decref(p);
    wait_converged(&f, "shop", "checkout", 3);
    json_t *d = deployment(&f, "shop", "checkout");
    ck_assert_ptr_null(template_annotation(d, RESTARTED));
    json_decref(d);
    json_decref(snap);
    ck_assert_double_eq(sn_metric_value(sn_harness_runtime(f.h),
                                        "executor_kubernetes_mutating_requests_total", K8S_LABELS),
                        2);
    kx_close(&f);
}
END_TEST

START_TEST(scale_then_rollback_restores_replicas)
{
    kx_t f;
    dbl_start(&f, NULL);
    add_deployment(&f, "shop", "payments", 3);
    kx_open(&f, NULL);
    json_t *params = json_pack("{s:i}", "replicas", 5);
    sn_action_t a = act("scale_deployment", "deployment/shop/payments", "inc2:0:0", params, 0);
    sn_result_t r;
    ck_assert_int_eq(run(&f, OP_SNAPSHOT, &a, NULL, &r), 0);
    json_t *snap = json_incref(r.result);
    sn_result_clear(&r);

    ck_assert_int_eq(run(&f, OP_EXECUTE, &a, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "changed")));
    ck_assert_int_eq(ival(r.result, "replicas_before", NULL), 3);
    sn_result_clear(&r);
    /* The scale subresource, then the key on the deployment. */
    json_t *rs = requests(&f);
    json_t *scale = NULL, *mark = NULL;
    size_t i;
    json_t *q;
    json_array_foreach(rs, i, q)
    {
        const char *path = json_string_value(json_object_get(q, "path"));
        if (strcmp(json_string_value(json_object_get(q, "method")), "PATCH") != 0)
            continue;
        if (strstr(path, "/scale"))
            scale = q;
        else
            mark = q;
    }
    ck_assert_ptr_nonnull(scale);
    ck_assert_ptr_nonnull(mark);
    ck_assert_str_eq(json_string_value(json_object_get(scale, "path")),
                     "/apis/apps/v1/namespaces/shop/deployments/payments/scale");
    ck_assert_str_eq(json_string_value(json_object_get(scale, "content_type")),
                     "application/merge-patch+json");
    ck_assert_int_eq(ival(json_object_get(scale, "body"), "spec", "replicas"), 5);
    ck_assert_int_lt(ival(scale, "seq", NULL), ival(mark, "seq", NULL));
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(json_object_get(mark, "body"), "metadata"),
                                         "annotations"),
                         KEYANN)),
                     "inc2:0:0");
    json_decref(rs);

    ck_assert_int_eq(run(&f, OP_VERIFY, &a, NULL, &r), 0);
    ck_assert_int_eq(ival(r.result, "readyReplicas", NULL), 5);
    sn_result_clear(&r);

    /* Resumed with the same key: no second scale. */
    ck_assert_int_eq(run(&f, OP_EXECUTE, &a, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "deduplicated")));
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, "PATCH"), 2);

    ck_assert_int_eq(run(&f, OP_ROLLBACK, &a, snap, &r), 0);
    ck_assert_int_eq(ival(r.result, "replicas", NULL), 3);
    sn_result_clear(&r);
    json_t *p = last_request(&f, "PATCH");
    ck_assert(strstr(json_string_value(json_object_get(p, "path")), "/scale") != NULL);
    ck_assert_int_eq(ival(json_object_get(p, "body"), "spec", "replicas"), 3);
    json_decref(p);
    wait_converged(&f, "shop", "payments", 3);

    /* Scale to what it already is: only the key is written. */
    json_t *same = json_pack("{s:s}", "replicas", "3");
    sn_action_t b = act("scale_deployment", "deployment/shop/payments", "inc2:0:1", same, 0);
    ck_assert_int_eq(run(&f, OP_EXECUTE, &b, NULL, &r), 0);
    ck_assert(json_is_false(json_object_get(r.result, "changed")));
    sn_result_clear(&r);
    p = last_request(&f, "PATCH");
    ck_assert(strstr(json_string_value(json_object_get(p, "path")), "/scale") == NULL);
    json_decref(p);

    /* Bad replicas are refused before any request. */
    json_t *bad = json_pack("{s:i}", "replicas", -2);
    sn_action_t c = act("scale_deployment", "deployment/shop/payments", "inc2:0:2", bad, 0);
    int before = count_method(&f, "GET");
    ck_assert_int_eq(run(&f, OP_EXECUTE, &c, NULL, &r), SN_EINVAL);
    ck_assert(strstr(rstr(&r, "error"), "params.replicas") != NULL);
    sn_result_clear(&r);
    sn_action_t d = act("scale_deployment", "deployment/shop/payments", "inc2:0:3", NULL, 0);
    ck_assert_int_eq(run(&f, OP_EXECUTE, &d, NULL, &r), SN_EINVAL);
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, "GET"), before);
    json_decref(bad);
    json_decref(same);
    json_decref(params);
    json_decref(snap);
    kx_close(&f);
}
END_TEST

START_TEST(restart_pod_deletes_one_pod)
{
    kx_t f;
    dbl_start(&f, NULL);
    add_deployment(&f, "shop", "cart", 3);
    kx_open(&f, NULL);
    json_t *list = pods(&f, "shop");
    ck_assert_int_eq((int)json_array_size(list), 3);
    json_t *victim = json_array_get(list, 0);
    char name[128], uid[64], target[192];
    snprintf(name, sizeof(name), "%s",
             json_string_value(json_object_get(json_object_get(victim, "metadata"), "name")));
    snprintf(uid, sizeof(uid), "%s",
             json_string_value(json_object_get(json_object_get(victim, "metadata"), "uid")));
    json_decref(list);
    snprintf(target, sizeof(target), "pod/shop/%s", name);
    sn_action_t a = act("restart_pod", target, "inc3:0:0", NULL, 0);
    sn_result_t r;

    ck_assert_int_eq(run(&f, OP_ASSESS, &a, NULL, &r), 0);
    ck_assert_str_eq(rstr(&r, "risk"), "low");
    ck_assert_int_eq(ival(r.result, "downtime_s", NULL), 0);
    ck_assert_int_eq(ival(r.result, "blast_radius", NULL), 1);
    sn_result_clear(&r);

    ck_assert_int_eq(run(&f, OP_SNAPSHOT, &a, NULL, &r), 0);
    ck_assert_str_eq(rstr(&r, "uid"), uid);
    json_t *snap = json_incref(r.result);
    sn_result_clear(&r);

    ck_assert_int_eq(run(&f, OP_EXECUTE, &a, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "changed")));
    ck_assert_str_eq(rstr(&r, "deleted_uid"), uid);
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, NULL), 1);
    json_t *del = last_request(&f, "DELETE");
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/namespaces/shop/pods/%s", name);
    ck_assert_str_eq(json_string_value(json_object_get(del, "path")), path);
    json_t *body = json_object_get(del, "body");
    ck_assert_str_eq(json_string_value(json_object_get(body, "kind")), "DeleteOptions");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(body, "preconditions"), "uid")), uid);
    ck_assert_str_eq(json_string_value(json_object_get(del, "token")), TOKEN);
    json_decref(del);

    ck_assert_int_eq(run(&f, OP_VERIFY, &a, NULL, &r), 0);
    sn_result_clear(&r);
    /* The pod is gone and a replacement serves. */
    list = pods(&f, "shop");
    int ready = 0;
    size_t i;
    json_t *pd;
    json_array_foreach(list, i, pd)
    {
        ck_assert_str_ne(
            json_string_value(json_object_get(json_object_get(pd, "metadata"), "name")), name);
        json_t *c = json_array_get(json_object_get(json_object_get(pd, "status"), "conditions"), 0);
        ready += strcmp(json_string_value(json_object_get(c, "status")), "True") == 0;
    }
    ck_assert_int_eq(ready, 3);
    json_decref(list);

    /* Same key again: no second DELETE; rollback has nothing to undo. */
    ck_assert_int_eq(run(&f, OP_EXECUTE, &a, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "deduplicated")));
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, "DELETE"), 1);
    ck_assert_int_eq(run(&f, OP_ROLLBACK, &a, snap, &r), 0);
    ck_assert(json_is_false(json_object_get(r.result, "restored")));
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, NULL), 1);

    /* A re-created instance with the same key: the pod is gone, so the goal is met. */
    sn_err_t err = {{0}};
    char settings[256];
    snprintf(settings, sizeof(settings), "kubeconfig = %s/kubeconfig\n", f.dir);
    void *fresh = create_with(&f, settings, &err);
    ck_assert_ptr_nonnull(fresh);
    ck_assert_int_eq(run_on(&f, fresh, OP_VERIFY, &a, NULL, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(run_on(&f, fresh, OP_EXECUTE, &a, NULL, &r), 0);
    ck_assert(json_is_false(json_object_get(r.result, "changed")));
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, "DELETE"), 1);

    /* After a restart, a pod that has run since before the incident was not restarted. */
    list = pods(&f, "shop");
    snprintf(target, sizeof(target), "pod/shop/%s",
             json_string_value(
                 json_object_get(json_object_get(json_array_get(list, 0), "metadata"), "name")));
    json_decref(list);
    char incident[64];
    int64_t later = sn_now_ms() + 60000;
    snprintf(incident, sizeof(incident), "%08llx-%04llx-7000-8000-000000000002",
             (unsigned long long)(later >> 16), (unsigned long long)(later & 0xffff));
    sn_action_t b = act("restart_pod", target, "inc3:0:1", NULL, 0);
    b.incident = incident;
    ck_assert_int_eq(run_on(&f, fresh, OP_VERIFY, &b, NULL, &r), SN_ENOTFOUND);
    ck_assert(strstr(rstr(&r, "error"), "change not applied") != NULL);
    sn_result_clear(&r);
    json_decref(snap);
    kx_close(&f);
}
END_TEST

START_TEST(dry_run_sends_no_mutation)
{
    kx_t f;
    dbl_start(&f, NULL);
    add_deployment(&f, "shop", "checkout", 2);
    kx_open(&f, NULL);
    json_t *list = pods(&f, "shop");
    char target[192];
    snprintf(target, sizeof(target), "pod/shop/%s",
             json_string_value(
                 json_object_get(json_object_get(json_array_get(list, 0), "metadata"), "name")));
    json_decref(list);
    json_t *params = json_pack("{s:i}", "replicas", 4);
    sn_action_t acts[] = {
        act("rollout_restart", "deployment/shop/checkout", "inc4:0:0", NULL, 1),
        act("scale_deployment", "deployment/shop/checkout", "inc4:1:0", params, 1),
        act("restart_pod", target, "inc4:2:0", NULL, 1),
    };
    const char *want[] = {"PATCH /apis/apps/v1/namespaces/shop/deployments/checkout ",
                          "spec.replicas 2 -> 4", "DELETE /api/v1/namespaces/shop/pods/"};
    sn_result_t r;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(run(&f, OP_EXECUTE, &acts[i], NULL, &r), 0);
        ck_assert(json_is_true(json_object_get(r.result, "dry_run")));
        ck_assert_msg(strstr(rstr(&r, "would"), want[i]) != NULL, "would: %s", rstr(&r, "would"));
        sn_result_clear(&r);
    }
    json_t *snap = json_pack("{s:s,s:s,s:i,s:n}", "kind", "deployment", "target",
                             "deployment/shop/checkout", "replicas", 2, "restartedAt");
    ck_assert_int_eq(run(&f, OP_ROLLBACK, &acts[1], snap, &r), 0);
    ck_assert(strstr(rstr(&r, "would"), "back to 2") != NULL);
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, NULL), 0);
    ck_assert_int_ge(count_method(&f, "GET"), 3);
    /* Dry runs remember nothing: the real execute still runs. */
    acts[0].dry_run = 0;
    ck_assert_int_eq(run(&f, OP_EXECUTE, &acts[0], NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "changed")));
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, NULL), 1);
    json_decref(snap);
    json_decref(params);
    kx_close(&f);
}
END_TEST

START_TEST(stuck_rollout_fails_and_rollback_converges)
{
    kx_t f;
    dbl_start(&f, "1");
    add_deployment(&f, "shop", "checkout", 3);
    json_decref(
        admin(&f, "POST", "/_double/stuck", "{\"namespace\":\"shop\",\"name\":\"checkout\"}"));
    kx_open(&f, NULL);
    sn_action_t a = act("rollout_restart", "deployment/shop/checkout", "inc5:0:0", NULL, 0);
    sn_result_t r;
    ck_assert_int_eq(run(&f, OP_SNAPSHOT, &a, NULL, &r), 0);
    json_t *snap = json_incref(r.result);
    sn_result_clear(&r);
    ck_assert_int_eq(run(&f, OP_EXECUTE, &a, NULL, &r), 0);
    sn_result_clear(&r);
    int64_t t0 = sn_mono_ms();
    ck_assert_int_eq(run(&f, OP_VERIFY, &a, NULL, &r), SN_EIO);
    ck_assert_msg(strstr(rstr(&r, "error"), "ProgressDeadlineExceeded") != NULL, "%s",
                  rstr(&r, "error"));
    ck_assert(strstr(rstr(&r, "error"), "rollout_restart deployment/shop/checkout") != NULL);
    ck_assert(json_is_false(json_object_get(r.result, "converged")));
    ck_assert_int_lt(sn_mono_ms() - t0, 10000); /* failed fast, well before verify_timeout */
    sn_result_clear(&r);
    /* Old pods kept serving (maxUnavailable 0); the rollback returns to their template. */
    ck_assert_int_eq(run(&f, OP_ROLLBACK, &a, snap, &r), 0);
    sn_result_clear(&r);
    wait_converged(&f, "shop", "checkout", 3);
    json_t *d = deployment(&f, "shop", "checkout");
    ck_assert_ptr_null(template_annotation(d, RESTARTED));
    json_decref(d);
    json_decref(snap);
    kx_close(&f);
}
END_TEST

START_TEST(verify_times_out_with_the_last_reason)
{
    kx_t f;
    dbl_start(&f, NULL);
    add_deployment(&f, "shop", "checkout", 3);
    json_decref(
        admin(&f, "POST", "/_double/stuck", "{\"namespace\":\"shop\",\"name\":\"checkout\"}"));
    kx_open(&f, NULL);
    json_t *params = json_pack("{s:s,s:s}", "verify_timeout", "1s", "poll_interval", "100ms");
    sn_action_t a = act("rollout_restart", "deployment/shop/checkout", "inc6:0:0", params, 0);
    sn_result_t r;
    ck_assert_int_eq(run(&f, OP_EXECUTE, &a, NULL, &r), 0);
    sn_result_clear(&r);
    int before = count_method(&f, "GET");
    int64_t t0 = sn_mono_ms();
    ck_assert_int_eq(run(&f, OP_VERIFY, &a, NULL, &r), SN_ETIMEDOUT);
    int64_t took = sn_mono_ms() - t0;
    ck_assert_int_ge(took, 950);
    ck_assert_int_lt(took, 5000);
    ck_assert_msg(strstr(rstr(&r, "error"), "did not converge within 1.0 s") != NULL, "%s",
                  rstr(&r, "error"));
    ck_assert_msg(strstr(rstr(&r, "reason"), "available") != NULL ||
                      strstr(rstr(&r, "reason"), "updated") != NULL,
                  "%s", rstr(&r, "reason"));
    ck_assert_int_gt(ival(r.result, "status", "replicas"), 0);
    sn_result_clear(&r);
    ck_assert_int_ge(count_method(&f, "GET") - before, 5); /* polled about every 100 ms */
    json_decref(params);
    kx_close(&f);
}
END_TEST

START_TEST(assess_reads_replicas_readiness_and_pdbs)
{
    kx_t f;
    dbl_start(&f, NULL);
    add_deployment(&f, "shop", "solo", 1);
    add_deployment(&f, "shop", "web", 3);
    json_decref(admin(&f, "POST", "/_double/pdbs",
                      "{\"namespace\":\"shop\",\"name\":\"solo-pdb\",\"match_labels\":"
                      "{\"app\":\"solo\"},\"min_available\":1}"));
    json_decref(admin(&f, "POST", "/_double/pdbs",
                      "{\"namespace\":\"shop\",\"name\":\"web-pdb\",\"match_labels\":"
                      "{\"app\":\"web\"},\"max_unavailable\":1}"));
    kx_open(&f, "pod_start_estimate = 45s\n");
    json_t *list = pods(&f, "shop");
    char solo[192] = "", web[192] = "";
    size_t i;
    json_t *pd;
    json_array_foreach(list, i, pd)
    {
        const char *n = json_string_value(json_object_get(json_object_get(pd, "metadata"), "name"));
        if (strncmp(n, "solo-", 5) == 0)
            snprintf(solo, sizeof(solo), "pod/shop/%s", n);
        else
            snprintf(web, sizeof(web), "pod/shop/%s", n);
    }
    json_decref(list);
    sn_result_t r;
    /* The only ready replica, and its PDB allows no disruption: high risk, downtime. */
    sn_action_t a = act("restart_pod", solo, NULL, NULL, 0);
    ck_assert_int_eq(run(&f, OP_ASSESS, &a, NULL, &r), 0);
    ck_assert_str_eq(rstr(&r, "risk"), "high");
    ck_assert_int_eq(ival(r.result, "downtime_s", NULL), 45);
    ck_assert_int_eq(ival(json_object_get(r.result, "live"), "pdb", "disruptionsAllowed"), 0);
    char *reasons = json_dumps(json_object_get(r.result, "reasons"), 0);
    ck_assert_msg(strstr(reasons, "only ready replica") && strstr(reasons, "solo-pdb"), "%s",
                  reasons);
    free(reasons);
    sn_result_clear(&r);
    /* Three ready, PDB headroom 1: low. */
    sn_action_t b = act("restart_pod", web, NULL, NULL, 0);
    ck_assert_int_eq(run(&f, OP_ASSESS, &b, NULL, &r), 0);
    ck_assert_str_eq(rstr(&r, "risk"), "low");
    ck_assert_int_eq(ival(r.result, "downtime_s", NULL), 0);
    ck_assert_int_eq(ival(json_object_get(r.result, "live"), "pdb", "disruptionsAllowed"), 1);
    ck_assert(strstr(rstr(&r, "blast_detail"), "1 pod of 3") != NULL);
    sn_result_clear(&r);
    /* Once web is degraded, its PDB has no headroom left: high. */
    json_decref(
        admin(&f, "POST", "/_double/unhealthy", "{\"namespace\":\"shop\",\"name\":\"web\"}"));
    ck_assert_int_eq(run(&f, OP_ASSESS, &b, NULL, &r), 0);
    ck_assert_str_eq(rstr(&r, "risk"), "low"); /* the pod itself is not ready: no capacity lost */
    sn_result_clear(&r);
    json_decref(admin(&f, "POST", "/_double/unhealthy",
                      "{\"namespace\":\"shop\",\"name\":\"web\",\"unhealthy\":false}"));
    /* Scaling: to zero is high, below the PDB is high, up is low. */
    struct {
        int n;
        const char *risk;
        int blast;
    } sc[] = {{0, "high", 3}, {1, "high", 2}, {5, "low", 2}, {3, "low", 0}};
    for (size_t k = 0; k < sizeof(sc) / sizeof(sc[0]); k++) {
        json_t *params = json_pack("{s:i}", "replicas", sc[k].n);
        sn_action_t s = act("scale_deployment", "deployment/shop/web", NULL, params, 0);
        ck_assert_int_eq(run(&f, OP_ASSESS, &s, NULL, &r), 0);
        ck_assert_msg(strcmp(rstr(&r, "risk"), sc[k].risk) == 0, "scale to %d: %s", sc[k].n,
                      rstr(&r, "risk"));
        ck_assert_int_eq(ival(r.result, "blast_radius", NULL), sc[k].blast);
        sn_result_clear(&r);
        json_decref(params);
    }
    /* A rolling restart of a single replica keeps it serving (maxSurge 1): low. */
    sn_action_t c = act("rollout_restart", "deployment/shop/solo", NULL, NULL, 0);
    ck_assert_int_eq(run(&f, OP_ASSESS, &c, NULL, &r), 0);
    ck_assert_str_eq(rstr(&r, "risk"), "low");
    ck_assert_int_eq(ival(r.result, "blast_radius", NULL), 1);
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, NULL), 0);
    kx_close(&f);
}
END_TEST

START_TEST(api_errors_name_verb_target_and_status)
{
    kx_t f;
    dbl_start(&f, NULL);
    add_deployment(&f, "shop", "checkout", 2);
    kx_open(&f, "retries = 2\n");
    sn_result_t r;
    /* 404 */
    sn_action_t a = act("rollout_restart", "deployment/shop/nope", "inc7:0:0", NULL, 0);
    ck_assert_int_eq(run(&f, OP_EXECUTE, &a, NULL, &r), SN_ENOTFOUND);
    ck_assert_msg(strstr(rstr(&r, "error"), "rollout_restart deployment/shop/nope") &&
                      strstr(rstr(&r, "error"), "deployments.apps \"nope\" not found") &&
                      strstr(rstr(&r, "error"), "NotFound"),
                  "%s", rstr(&r, "error"));
    ck_assert_int_eq(ival(r.result, "code", NULL), 404);
    sn_result_clear(&r);
    ck_assert_int_eq(run(&f, OP_SNAPSHOT, &a, NULL, &r), SN_ENOTFOUND);
    sn_result_clear(&r);

    /* One 409: read again, patch again, done. */
    json_decref(admin(&f, "POST", "/_double/fault",
                      "{\"method\":\"PATCH\",\"path\":\"/deployments/checkout\",\"code\":409,"
                      "\"reason\":\"Conflict\",\"message\":\"the object has been modified\"}"));
    sn_action_t b = act("rollout_restart", "deployment/shop/checkout", "inc7:1:0", NULL, 0);
    ck_assert_int_eq(run(&f, OP_EXECUTE, &b, NULL, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, "PATCH"), 2);
    /* 409 every time: the conflict is surfaced after the retries. */
    json_decref(admin(&f, "POST", "/_double/fault",
                      "{\"method\":\"PATCH\",\"path\":\"/deployments/checkout\",\"code\":409,"
                      "\"reason\":\"Conflict\",\"message\":\"the object has been modified\","
                      "\"times\":10}"));
    sn_action_t c = act("rollout_restart", "deployment/shop/checkout", "inc7:2:0", NULL, 0);
    ck_assert_int_eq(run(&f, OP_EXECUTE, &c, NULL, &r), SN_ECONFLICT);
    ck_assert_msg(strstr(rstr(&r, "error"), "HTTP 409 Conflict: the object has been modified"),
                  "%s", rstr(&r, "error"));
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, "PATCH"), 5); /* 2 + 1 + 2 retries */
    reset_double(&f);                               /* clears the request log and the faults left */

    /* 422 with its causes. */
    json_decref(admin(&f, "POST", "/_double/fault",
                      "{\"method\":\"PATCH\",\"path\":\"/scale\",\"code\":422,\"reason\":"
                      "\"Invalid\",\"message\":\"Scale.autoscaling \\\"checkout\\\" is invalid\","
                      "\"causes\":[{\"reason\":\"FieldValueInvalid\",\"field\":"
                      "\"spec.replicas\",\"message\":\"too many\"}]}"));
    json_t *params = json_pack("{s:i}", "replicas", 7);
    sn_action_t d = act("scale_deployment", "deployment/shop/checkout", "inc7:3:0", params, 0);
    ck_assert_int_eq(run(&f, OP_EXECUTE, &d, NULL, &r), SN_EINVAL);
    ck_assert_msg(strstr(rstr(&r, "error"), "scale_deployment deployment/shop/checkout") &&
                      strstr(rstr(&r, "error"), "HTTP 422 Invalid") &&
                      strstr(rstr(&r, "error"), "spec.replicas"),
                  "%s", rstr(&r, "error"));
    sn_result_clear(&r);
    ck_assert_int_eq(count_method(&f, "PATCH"), 1); /* not retried */

    /* 403 from RBAC: named, not retried. */
    json_decref(admin(&f, "POST", "/_double/tokens",
                      "{\"replace\":true,\"tokens\":[{\"token\":\"%s\",\"readonly\":true}]}",
                      TOKEN));
    sn_action_t e = act("rollout_restart", "deployment/shop/checkout", "inc7:4:0", NULL, 0);
    ck_assert_int_eq(run(&f, OP_EXECUTE, &e, NULL, &r), SN_EDENIED);
    ck_assert_msg(strstr(rstr(&r, "error"), "Forbidden") &&
                      strstr(rstr(&r, "error"), "cannot patch resource \"deployments\""),
                  "%s", rstr(&r, "error"));
    ck_assert(strstr(rstr(&r, "error"), TOKEN) == NULL);
    sn_result_clear(&r);
    json_decref(params);
    kx_close(&f);
}
END_TEST

START_TEST(namespaces_scope_refuses_other_targets)
{
    kx_t f;
    dbl_start(&f, NULL);
    add_deployment(&f, "shop", "checkout", 1);
    add_deployment(&f, "other", "x", 1);
    kx_open(&f, "namespaces = shop, web\n");
    sn_result_t r;
    sn_action_t a = act("rollout_restart", "deployment/other/x", "inc8:0:0", NULL, 0);
    ck_assert_int_eq(run(&f, OP_EXECUTE, &a, NULL, &r), SN_EDENIED);
    ck_assert(strstr(rstr(&r, "error"), "namespace other is outside") != NULL);
    sn_result_clear(&r);
    ck_assert_int_eq(run(&f, OP_ASSESS, &a, NULL, &r), SN_EDENIED);
    sn_result_clear(&r);
    /* Wrong kinds for a verb are refused too. */
    sn_action_t b = act("restart_pod", "deployment/shop/checkout", "inc8:0:1", NULL, 0);
    ck_assert_int_eq(run(&f, OP_EXECUTE, &b, NULL, &r), SN_EINVAL);
    ck_assert(strstr(rstr(&r, "error"), "pod/NAMESPACE/NAME") != NULL);
    sn_result_clear(&r);
    json_t *none = requests(&f);
    ck_assert_int_eq((int)json_array_size(none), 0);
    json_decref(none);

    /* A kubeconfig context pinned to a namespace scopes the executor when namespaces is unset. */
    write_kubeconfig(&f, "pinned", "shop", NULL);
    char settings[256];
    snprintf(settings, sizeof(settings), "kubeconfig = %s/pinned\n", f.dir);
    sn_err_t err = {{0}};
    void *pinned = create_with(&f, settings, &err);
    ck_assert_msg(pinned != NULL, "%s", err.msg);
    ck_assert_int_eq(run_on(&f, pinned, OP_SNAPSHOT, &a, NULL, &r), SN_EDENIED);
    sn_result_clear(&r);
    sn_action_t c = act("rollout_restart", "deployment/shop/checkout", "inc8:0:2", NULL, 0);
    ck_assert_int_eq(run_on(&f, pinned, OP_SNAPSHOT, &c, NULL, &r), 0);
    sn_result_clear(&r);
    kx_close(&f);
}
END_TEST

START_TEST(kubeconfig_variants)
{
    kx_t f;
    dbl_start(&f, NULL);
    add_deployment(&f, "shop", "checkout", 1);
    sn_err_t err = {{0}};
    char settings[512];
    sn_result_t r;
    sn_action_t a = act("rollout_restart", "deployment/shop/checkout", "k:0:0", NULL, 0);

    /* tokenFile relative to the kubeconfig. */
    char tok[128];
    snprintf(tok, sizeof(tok), "%s/tok", f.dir);
    write_file(tok, TOKEN "\n");
    write_kubeconfig(&f, "kc-file", NULL, "    tokenFile: tok\n");
    snprintf(settings, sizeof(settings), "kubeconfig = %s/kc-file\n", f.dir);
    void *s1 = create_with(&f, settings, &err);
    ck_assert_msg(s1 != NULL, "%s", err.msg);
    ck_assert_int_eq(run_on(&f, s1, OP_SNAPSHOT, &a, NULL, &r), 0);
    sn_result_clear(&r);
    json_t *g = last_request(&f, "GET");
    ck_assert_str_eq(json_string_value(json_object_get(g, "token")), TOKEN);
    json_decref(g);

    /* A wrong token is a 401, named as such. */
    write_kubeconfig(&f, "kc-bad", NULL, "    token: not-the-token\n");
    snprintf(settings, sizeof(settings), "kubeconfig = %s/kc-bad\n", f.dir);
    void *s2 = create_with(&f, settings, &err);
    ck_assert_ptr_nonnull(s2);
    ck_assert_int_eq(run_on(&f, s2, OP_SNAPSHOT, &a, NULL, &r), SN_EDENIED);
    ck_assert(strstr(rstr(&r, "error"), "HTTP 401 Unauthorized") != NULL);
    ck_assert(strstr(rstr(&r, "error"), "not-the-token") == NULL);
    sn_result_clear(&r);

    /* Refused at create, each with a reason that carries no secret. */
    struct {
        const char *user;
        const char *want;
    } bad[] = {
        {"    exec:\n      command: aws\n", "exec/auth-provider"},
        {"    client-certificate-data: Zm9v\n", "without its key"},
        {"    username: bob\n", "neither a token nor a client certificate"},
        {"    client-certificate-data: '!!notbase64!!'\n    client-key-data: Zm9v\n",
         "not valid base64"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_kubeconfig(&f, "kc-x", NULL, bad[i].user);
        snprintf(settings, sizeof(settings), "kubeconfig = %s/kc-x\n", f.dir);
        memset(&err, 0, sizeof(err));
        ck_assert_ptr_null(create_with(&f, settings, &err));
        ck_assert_msg(strstr(err.msg, bad[i].want) != NULL, "case %zu: %s", i, err.msg);
    }
    snprintf(settings, sizeof(settings), "kubeconfig = %s/kubeconfig-missing\n", f.dir);
    ck_assert_ptr_null(create_with(&f, settings, &err));
    ck_assert(strstr(err.msg, "cannot read kubeconfig") != NULL);
    write_kubeconfig(&f, "kc-ctx", NULL, NULL);
    snprintf(settings, sizeof(settings), "kubeconfig = %s/kc-ctx\ncontext = prod\n", f.dir);
    ck_assert_ptr_null(create_with(&f, settings, &err));
    ck_assert(strstr(err.msg, "context \"prod\" not found") != NULL);
    char path[128];
    snprintf(path, sizeof(path), "%s/kc-yaml", f.dir);
    write_file(path, "clusters: [\n  - {name: a\n");
    snprintf(settings, sizeof(settings), "kubeconfig = %s\n", path);
    ck_assert_ptr_null(create_with(&f, settings, &err));
    ck_assert(strstr(err.msg, "YAML error at line") != NULL);

    /* An https server with a cluster CA: verification is on, so the host must be able to
     * apply the CA. */
    snprintf(path, sizeof(path), "%s/kc-tls", f.dir);
    write_file(path, "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n"
                     "  cluster:\n    server: https://127.0.0.1:6443\n"
                     "    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==\n"
                     "contexts:\n- name: c\n  context: {cluster: k, user: u}\n"
                     "users:\n- name: u\n  user: {token: secret-token-value}\n");
    snprintf(settings, sizeof(settings), "kubeconfig = %s\n", path);
    memset(&err, 0, sizeof(err));
    void *tls = create_with(&f, settings, &err);
#ifdef SN_HTTP_TLS_MINOR
    ck_assert_msg(tls != NULL, "%s", err.msg);
#else
    ck_assert_ptr_null(tls);
    ck_assert_msg(strstr(err.msg, "https://127.0.0.1:6443 needs TLS settings"), "%s", err.msg);
    ck_assert(strstr(err.msg, "secret-token-value") == NULL);
#endif
    kx_close(&f);
}
END_TEST

START_TEST(in_cluster_token_file_and_rotation)
{
    kx_t f;
    dbl_start(&f, NULL);
    add_deployment(&f, "shop", "checkout", 1);
    json_decref(admin(&f, "POST", "/_double/tokens",
                      "{\"replace\":true,\"tokens\":[{\"token\":\"old-token\"}]}"));
    char tok[128], settings[512];
    snprintf(tok, sizeof(tok), "%s/token", f.dir);
    write_file(tok, "old-token\n");
    snprintf(settings, sizeof(settings),
             "server = http://127.0.0.1:%d\ntoken_file = %s\nca_file = %s/none.crt\n", f.port, tok,
             f.dir);
    sn_err_t err = {{0}};
    f.self = create_with(&f, settings, &err);
    ck_assert_msg(f.self != NULL, "%s", err.msg);
    sn_action_t a = act("rollout_restart", "deployment/shop/checkout", "ic:0:0", NULL, 0);
    sn_result_t r;
    ck_assert_int_eq(run(&f, OP_SNAPSHOT, &a, NULL, &r), 0);
    sn_result_clear(&r);
    json_t *g = last_request(&f, "GET");
    ck_assert_str_eq(json_string_value(json_object_get(g, "token")), "old-token");
    json_decref(g);

    /* The kubelet rotates the token: the API refuses the old one, the file has the new one. */
    json_decref(admin(&f, "POST", "/_double/tokens",
                      "{\"replace\":true,\"tokens\":[{\"token\":\"new-token\"}]}"));
    write_file(tok, "new-token\n");
    reset_double(&f);
    ck_assert_int_eq(run(&f, OP_SNAPSHOT, &a, NULL, &r), 0);
    sn_result_clear(&r);
    json_t *rs = requests(&f);
    ck_assert_int_eq((int)json_array_size(rs), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rs, 0), "token")),
                     "old-token");
    ck_assert_int_eq(ival(json_array_get(rs, 0), "status", NULL), 401);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rs, 1), "token")),
                     "new-token");
    ck_assert_int_eq(ival(json_array_get(rs, 1), "status", NULL), 200);
    json_decref(rs);
    ck_assert_double_eq(sn_metric_value(sn_harness_runtime(f.h),
                                        "executor_kubernetes_token_reloads_total", K8S_LABELS),
                        1);

    /* Outside a cluster, without server: refused. */
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    snprintf(settings, sizeof(settings), "token_file = %s\n", tok);
    ck_assert_ptr_null(create_with(&f, settings, &err));
    ck_assert(strstr(err.msg, "not in a cluster") != NULL);
    /* Missing token file: refused, naming the file. */
    snprintf(settings, sizeof(settings), "server = http://127.0.0.1:1\ntoken_file = %s/nope\n",
             f.dir);
    ck_assert_ptr_null(create_with(&f, settings, &err));
    ck_assert(strstr(err.msg, "cannot read service-account token") != NULL);

    /* In a cluster: https://host:port (IPv6 bracketed) verified with the CA file. */
    char ca[128];
    snprintf(ca, sizeof(ca), "%s/ca.crt", f.dir);
    write_file(ca, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    snprintf(settings, sizeof(settings), "token_file = %s\nca_file = %s\n", tok, ca);
    memset(&err, 0, sizeof(err));
    void *incl = create_with(&f, settings, &err);
#ifdef SN_HTTP_TLS_MINOR
    ck_assert_msg(incl != NULL, "%s", err.msg);
#else
    ck_assert_ptr_null(incl);
    ck_assert_msg(strstr(err.msg, "https://[fd00::1]:443 needs TLS settings") != NULL, "%s",
                  err.msg);
#endif
    snprintf(settings, sizeof(settings), "token_file = %s\nca_file = %s/none.crt\n", tok, f.dir);
    ck_assert_ptr_null(create_with(&f, settings, &err));
    ck_assert(strstr(err.msg, "cannot read the cluster CA") != NULL);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    kx_close(&f);
}
END_TEST

#ifdef SN_HTTP_TLS_MINOR
/* kubeconfig for the https double: @p cluster_extra and @p user lines are inserted. */
static void write_tls_kubeconfig(kx_t *f, const char *name, const char *cluster_extra,
                                 const char *user)
{
    char path[128], text[16384];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    int n = snprintf(text, sizeof(text),
                     "apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: d\n"
                     "  cluster:\n    server: https://127.0.0.1:%d\n%s"
                     "contexts:\n- name: t\n  context: {cluster: d, user: u}\n"
                     "users:\n- name: u\n  user:\n%s",
                     f->port, cluster_extra, user);
    ck_assert(n > 0 && (size_t)n < sizeof(text));
    write_file(path, text);
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    ck_assert_ptr_nonnull(fp);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = 0;
    fclose(fp);
    return buf;
}

START_TEST(tls_verifies_the_api_server)
{
    kx_t f;
    dbl_start_opt(&f, NULL, 1);
    add_deployment(&f, "shop", "checkout", 1);
    sn_action_t a = act("rollout_restart", "deployment/shop/checkout", "t:0:0", NULL, 0);
    sn_result_t r;
    sn_err_t err = {{0}};
    char settings[512], cluster[8192 + 64], path[128];

    /* The cluster CA from a file next to the kubeconfig: verified, authenticated. */
    write_tls_kubeconfig(&f, "kc-ca", "    certificate-authority: ca.crt\n",
                         "    token: " TOKEN "\n");
    snprintf(settings, sizeof(settings), "kubeconfig = %s/kc-ca\n", f.dir);
    void *s1 = create_with(&f, settings, &err);
    ck_assert_msg(s1 != NULL, "%s", err.msg);
    ck_assert_int_eq(run_on(&f, s1, OP_SNAPSHOT, &a, NULL, &r), 0);
    sn_result_clear(&r);

    /* Another CA: the handshake fails; verification is on by default. */
    snprintf(path, sizeof(path), "%s/other.b64", f.dir);
    snprintf(cluster, sizeof(cluster), "    certificate-authority-data: %s\n", slurp(path));
    write_tls_kubeconfig(&f, "kc-other", cluster, "    token: " TOKEN "\n");
    snprintf(settings, sizeof(settings), "kubeconfig = %s/kc-other\nretries = 0\n", f.dir);
    void *s2 = create_with(&f, settings, &err);
    ck_assert_msg(s2 != NULL, "%s", err.msg);
    ck_assert_int_eq(run_on(&f, s2, OP_SNAPSHOT, &a, NULL, &r), SN_EIO);
    ck_assert_msg(strstr(rstr(&r, "error"), "GET deployment failed") != NULL, "%s",
                  rstr(&r, "error"));
    sn_result_clear(&r);
    /* ... unless verification is explicitly switched off. */
    snprintf(settings, sizeof(settings),
             "kubeconfig = %s/kc-other\ninsecure_skip_tls_verify = true\n", f.dir);
    void *s3 = create_with(&f, settings, &err);
    ck_assert_ptr_nonnull(s3);
    ck_assert_int_eq(run_on(&f, s3, OP_SNAPSHOT, &a, NULL, &r), 0);
    sn_result_clear(&r);

    /* Mutual TLS with client-certificate-data / client-key files, no token. */
    snprintf(path, sizeof(path), "%s/ca.b64", f.dir);
    snprintf(cluster, sizeof(cluster), "    certificate-authority-data: %s\n", slurp(path));
    write_tls_kubeconfig(&f, "kc-mtls", cluster,
                         "    client-certificate: cli.crt\n    client-key: cli.key\n");
    snprintf(settings, sizeof(settings), "kubeconfig = %s/kc-mtls\n", f.dir);
    void *s4 = create_with(&f, settings, &err);
    ck_assert_msg(s4 != NULL, "%s", err.msg);
    json_decref(admin(&f, "POST", "/_double/reset", "{}"));
    ck_assert_int_eq(run_on(&f, s4, OP_SNAPSHOT, &a, NULL, &r), 0);
    sn_result_clear(&r);
    json_t *g = last_request(&f, "GET");
    ck_assert_str_eq(json_string_value(json_object_get(g, "client_cn")), "sentinel-client");
    ck_assert(json_is_null(json_object_get(g, "token")));
    json_decref(g);

    /* In-cluster: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT with ca.crt. */
    char port[16], tok[128];
    snprintf(port, sizeof(port), "%d", f.port);
    snprintf(tok, sizeof(tok), "%s/token", f.dir);
    write_file(tok, TOKEN);
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", port, 1);
    snprintf(settings, sizeof(settings), "token_file = %s\nca_file = %s/ca.crt\n", tok, f.dir);
    void *s5 = create_with(&f, settings, &err);
    ck_assert_msg(s5 != NULL, "%s", err.msg);
    ck_assert_int_eq(run_on(&f, s5, OP_SNAPSHOT, &a, NULL, &r), 0);
    sn_result_clear(&r);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    kx_close(&f);
}
END_TEST
#endif

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("kubernetes");
    TCase *tc = tcase_create("executor");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, rollout_restart_patches_and_verifies);
    tcase_add_test(tc, scale_then_rollback_restores_replicas);
    tcase_add_test(tc, restart_pod_deletes_one_pod);
    tcase_add_test(tc, dry_run_sends_no_mutation);
    tcase_add_test(tc, stuck_rollout_fails_and_rollback_converges);
    tcase_add_test(tc, verify_times_out_with_the_last_reason);
    tcase_add_test(tc, assess_reads_replicas_readiness_and_pdbs);
    tcase_add_test(tc, api_errors_name_verb_target_and_status);
    tcase_add_test(tc, namespaces_scope_refuses_other_targets);
    tcase_add_test(tc, kubeconfig_variants);
    tcase_add_test(tc, in_cluster_token_file_and_rotation);
#ifdef SN_HTTP_TLS_MINOR
    tcase_add_test(tc, tls_verifies_the_api_server);
#endif
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
