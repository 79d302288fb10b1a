/**
 * @file check_aws_executor.c
 * The `aws` executor loaded as a .so through the harness, against moto's server with signature
 * verification on (tests/support/motoserver.py: INITIAL_NO_AUTH_ACTION_COUNT=0, a recording
 * proxy in front that counts calls and injects faults) and against a test double of the
 * container credentials endpoint and IMDSv2 (tests/support/aws_metadata_double.py).
 *
 * Covered: configuration and action refusals without any call; EC2 stop/start/reboot and ECS
 * scale/redeploy with assess, snapshot, dry run (DryRun=true / Describe only: zero mutating
 * calls), verify, rollback; idempotency by memory and, in a re-created instance, by the
 * idempotency tag on the resource; the resume path's fast "not applied"; verify riding out 5xx
 * until its deadline; retries of throttling and 5xx; wrong credentials (403 / 401, clear error,
 * no secret); the credential chain (env, shared file + profile, container endpoint with its
 * authorization token, IMDSv2 token flow, nothing found).
 */
#include "harness.h"

#include <check.h>
#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MOTOSERVER SN_SOURCE_DIR "/tests/support/motoserver.py"
#define DOUBLE SN_SOURCE_DIR "/tests/support/aws_metadata_double.py"
#define LABELS "instance=\"executor:aws\""
#define DOUBLE_AUTH "double-auth-7f3a"

static char g_dir[64];
static char g_proxy[128];
static char g_double[128];
static json_t *g_boot; /* keys, instance ids, service ARNs */

/* ---- shelling out to the Python support ---------------------------------------------------- */

/* The whole output of @p p, parsed as JSON (NULL when it is not). */
static json_t *read_json(FILE *p, json_error_t *je)
{
    size_t n = 0, cap = 8192;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
    }
    json_t *out = buf ? json_loadb(buf, n, 0, je) : NULL;
    free(buf);
    return out;
}

static size_t on_data(char *d, size_t size, size_t n, void *arg)
{
    size_t len = size * n;
    char **buf = arg;
    size_t have = *buf ? strlen(*buf) : 0;
    char *nb = realloc(*buf, have + len + 1);
    if (!nb)
        return 0;
    memcpy(nb + have, d, len);
    nb[have + len] = '\0';
    *buf = nb;
    return len;
}

/* GET (body NULL) or POST @p url; the answer as JSON. */
static json_t *http_json(const char *url, const char *body)
{
    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    char *buf = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    ck_assert_msg(rc == CURLE_OK && status == 200, "%s: curl %d, HTTP %ld: %s", url, (int)rc,
                  status, buf ? buf : "");
    json_t *out = json_loads(buf ? buf : "", 0, NULL);
    ck_assert_msg(out != NULL, "%s: not JSON: %s", url, buf ? buf : "");
    free(buf);
    return out;
}

/* The moto controller in the motoserver process: {"cmd", "args"} -> JSON. */
static json_t *ctl_cmd(const char *cmd, const char *a1, const char *a2)
{
    json_t *req = json_pack("{s:s,s:[]}", "cmd", cmd, "args");
    if (a1)
        json_array_append_new(json_object_get(req, "args"), json_string(a1));
    if (a2)
        json_array_append_new(json_object_get(req, "args"), json_string(a2));
    char *body = json_dumps(req, JSON_COMPACT);
    char url[256];
    snprintf(url, sizeof(url), "%s/_proxy/ctl", g_proxy);
    json_t *out = http_json(url, body);
    free(body);
    json_decref(req);
    return out;
}

static json_t *ctl(const char *what)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/_proxy/%s", g_proxy, what);
    return http_json(url, strcmp(what, "calls") == 0 ? NULL : "");
}

static const char *boot_str(const char *a, const char *b)
{
    json_t *v = json_object_get(g_boot, a);
    if (b)
        v = json_object_get(v, b);
    ck_assert_msg(json_is_string(v), "bootstrap has no %s/%s", a, b ? b : "");
    return json_string_value(v);
}

static const char *key_of(const char *who, const char *field)
{
    const char *v = json_string_value(
        json_object_get(json_object_get(json_object_get(g_boot, "keys"), who), field));
    ck_assert_ptr_nonnull(v);
    return v;
}

static json_t *instance_state(const char *id)
{
    return ctl_cmd("instance", id, NULL);
}

static json_t *service_state(const char *service)
{
    return ctl_cmd("service", "prod", service);
}

static json_int_t desired(const char *service)
{
    json_t *s = service_state(service);
    json_int_t d = json_integer_value(json_object_get(s, "desiredCount"));
    json_decref(s);
    return d;
}

static const char *tag_of(json_t *state)
{
    return json_string_value(
        json_object_get(json_object_get(state, "tags"), "sentinel:idempotency-key"));
}

static void reset_calls(void)
{
    json_decref(ctl("reset"));
}

static void configure(const char *json)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/_proxy/configure", g_proxy);
    json_decref(http_json(url, json));
}

/* Calls the proxy saw since the last reset: of @p action (NULL: all), mutating ones only. */
static int count_calls(const char *action, int mutating_only)
{
    json_t *calls = ctl("calls");
    size_t i;
    json_t *c;
    int n = 0;
    json_array_foreach(calls, i, c)
    {
        const char *act = json_string_value(json_object_get(c, "action"));
        if (action && (!act || strcmp(act, action) != 0))
            continue;
        if (mutating_only && !json_is_true(json_object_get(c, "mutating")))
            continue;
        n++;
    }
    json_decref(calls);
    return n;
}

/* ---- harness fixture --------------------------------------------------------------------------
 */

typedef struct fx {
    sn_harness_t *h;
    const sn_executor_ops_t *ops;
    void *self;
} fx_t;

static void fx_open(fx_t *f, const char *extra)
{
    char settings[2048], ep[200];
    snprintf(ep, sizeof(ep), "endpoint_url = %s", g_proxy);
    const char *base[] = {ep, "imds_disabled = true", "verify_interval = 100ms",
                          "verify_timeout = 5s", "retry_base = 20ms"};
    settings[0] = '\0';
    for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++) {
        char key[40];
        snprintf(key, sizeof(key), "%.*s ", (int)strcspn(base[i], " "), base[i]);
        if (extra && strstr(extra, key))
            continue; /* the test sets it */
        strcat(settings, base[i]);
        strcat(settings, "\n");
    }
    strcat(settings, extra ? extra : "");
    const sn_plugin_t *p = NULL;
    sn_err_t err = {{0}};
    f->h = sn_harness_new();
    ck_assert_ptr_nonnull(f->h);
    f->self = sn_harness_create(f->h, SN_EXECUTOR, "aws", settings, &p, &err);
    ck_assert_msg(f->self != NULL, "create failed: %s", err.msg);
    f->ops = p->ops;
}

static void fx_close(fx_t *f)
{
    sn_harness_free(f->h);
}

static double metric(fx_t *f, const char *name)
{
    return sn_metric_value(sn_harness_runtime(f->h), name, LABELS);
}

static sn_action_t act(const char *verb, const char *target, const char *key, const json_t *params,
                       int dry_run)
{
    sn_action_t a = {
        .struct_size = sizeof(sn_action_t),
        .incident = "0190a0b0-0000-7000-8000-0000000000aa",
        .verb = verb,
        .target = target,
        .params = params,
        .idempotency_key = key,
        .dry_run = dry_run,
    };
    return a;
}

enum { ASSESS, SNAPSHOT, EXECUTE, VERIFY, ROLLBACK };

/* Run one executor call to completion. Ownership: r->result is the caller's (clear it). */
static int call(fx_t *f, int what, const sn_action_t *a, const json_t *snap, sn_result_t *r)
{
    memset(r, 0, sizeof(*r));
    switch (what) {
    case ASSESS:
        f->ops->assess(f->self, a, sn_result_done, r);
        break;
    case SNAPSHOT:
        f->ops->snapshot(f->self, a, sn_result_done, r);
        break;
    case EXECUTE:
        f->ops->execute(f->self, a, sn_result_done, r);
        break;
    case VERIFY:
        f->ops->verify(f->self, a, sn_result_done, r);
        break;
    default:
        f->ops->rollback(f->self, a, snap, sn_result_done, r);
    }
    ck_assert_int_eq(sn_harness_wait(f->h, r, 20000), 0);
    return r->status;
}

static const char *rstr(const sn_result_t *r, const char *k)
{
    return json_string_value(json_object_get(r->result, k));
}

static void clean_env(void)
{
    const char *vars[] = {"AWS_ACCESS_KEY_ID",
                          "AWS_SECRET_ACCESS_KEY",
                          "AWS_SESSION_TOKEN",
                          "AWS_PROFILE",
                          "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                          "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                          "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                          "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                          "AWS_EC2_METADATA_SERVICE_ENDPOINT"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/sentinel-test/credentials", 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

static void use_env(const char *who)
{
    clean_env();
    setenv("AWS_ACCESS_KEY_ID", key_of(who, "access_key"), 1);
    setenv("AWS_SECRET_ACCESS_KEY", key_of(who, "secret_key"), 1);
}

/* ---- tests ------------------------------------------------------------------------------------
 */

START_TEST(config_refused)
{
    clean_env();
    const char *bad[][2] = {
        {"credentials = vault\n", "credentials must be"},
        {"endpoint_url = ftp://x\n", "endpoint_url"},
        {"endpoint_url = http://user:pw@host/\n", "endpoint_url"},
        {"region = US East\n", "not a region"},
        {"verify_hold = 10s\nverify_timeout = 5s\n", "verify_hold"},
        {"idempotency_tag = aws:owned\n", "idempotency_tag"},
        {"max_retries = 50\n", "max_retries"},
        {"imds_endpoint = 169.254.169.254\n", "imds_endpoint"},
        {"profile = a b\n", "profile"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sn_harness_t *h = sn_harness_new();
        sn_err_t err = {{0}};
        ck_assert_ptr_null(sn_harness_create(h, SN_EXECUTOR, "aws", bad[i][0], NULL, &err));
        ck_assert_msg(strstr(err.msg, bad[i][1]) != NULL, "%s -> %s", bad[i][0], err.msg);
        ck_assert_msg(strstr(err.msg, "pw@") == NULL, "%s", err.msg);
        sn_harness_free(h);
    }
    /* The verb table. */
    fx_t f;
    fx_open(&f, NULL);
    int n = 0;
    for (const sn_verb_t *v = f.ops->verbs; v->name; v++, n++) {
        if (strcmp(v->name, "reboot_instance") == 0)
            ck_assert_int_eq(v->risk, SN_RISK_HIGH);
        if (strcmp(v->name, "scale_service") == 0)
            ck_assert_int_eq(v->risk, SN_RISK_MEDIUM);
        if (strcmp(v->name, "redeploy_service") == 0)
            ck_assert_int_eq(v->risk, SN_RISK_LOW);
    }
    ck_assert_int_eq(n, 5);
    fx_close(&f);
}
END_TEST

START_TEST(actions_refused_without_calls)
{
    use_env("executor");
    fx_t f;
    fx_open(&f, "region = us-east-1\n");
    reset_calls();
    json_t *p5 = json_pack("{s:i}", "desiredCount", 5);
    json_t *pbad = json_pack("{s:s}", "desiredCount", "five");
    struct {
        const char *verb, *target;
        json_t *params;
        int rc;
        const char *why;
    } cases[] = {
        {"reboot_instance", "ec2-instance/us-east-1", NULL, SN_EINVAL, "target must be"},
        {"reboot_instance", "vm/us-east-1/i-0123456789abcdef0", NULL, SN_EINVAL, "unknown target"},
        {"reboot_instance", "ec2-instance/us-east-1/i-xyz", NULL, SN_EINVAL, "instance id"},
        {"reboot_instance", "ec2-instance/us-east-1/i-0123456789abcdef0/x", NULL, SN_EINVAL,
         "target must be"},
        {"scale_service", "ec2-instance/us-east-1/i-0123456789abcdef0", p5, SN_EINVAL,
         "needs an ecs-service target"},
        {"reboot_instance", "ecs-service/us-east-1/prod:payments", NULL, SN_EINVAL,
         "needs an ec2-instance target"},
        {"scale_service", "ecs-service/us-east-1/prod:payments", NULL, SN_EINVAL, "desiredCount"},
        {"scale_service", "ecs-service/us-east-1/prod:payments", pbad, SN_EINVAL, "desiredCount"},
        {"scale_service", "ecs-service/us-east-1/payments", p5, SN_EINVAL, "CLUSTER:SERVICE"},
        {"scale_service", "ecs-service/eu-west-1/prod:payments", p5, SN_EDENIED, "region"},
        {"format_disk", "ec2-instance/us-east-1/i-0123456789abcdef0", NULL, SN_ENOTSUP, "verb"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sn_action_t a = act(cases[i].verb, cases[i].target, "k:0:1", cases[i].params, 0);
        sn_result_t r;
        ck_assert_int_eq(call(&f, EXECUTE, &a, NULL, &r), cases[i].rc);
        ck_assert_msg(strstr(rstr(&r, "error"), cases[i].why) != NULL, "%s: %s", cases[i].target,
                      rstr(&r, "error"));
        sn_result_clear(&r);
    }
    ck_assert_int_eq(count_calls(NULL, 0), 0);
    json_decref(p5);
    json_decref(pbad);
    fx_close(&f);
}
END_TEST

START_TEST(ec2_stop_start_reboot)
{
    use_env("executor");
    const char *id = boot_str("instance", NULL);
    char t[96];
    snprintf(t, sizeof(t), "ec2-instance/us-east-1/%s", id);
    fx_t f;
    fx_open(&f, NULL);
    sn_result_t r;
    sn_action_t stop = act("stop_instance", t, "inc-ec2:0:1", NULL, 0);

    ck_assert_int_eq(call(&f, ASSESS, &stop, NULL, &r), 0);
    ck_assert_str_eq(rstr(&r, "risk"), "high");
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "blast_radius")), 1);
    ck_assert_ptr_nonnull(strstr(rstr(&r, "detail"), "running"));
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, SNAPSHOT, &stop, NULL, &r), 0);
    json_t *snap = json_incref(r.result);
    sn_result_clear(&r);
    ck_assert_str_eq(json_string_value(json_object_get(snap, "state")), "running");
    ck_assert_str_eq(json_string_value(json_object_get(snap, "kind")), "ec2-instance");

    /* Dry run: DescribeInstances and StopInstances with DryRun=true, nothing changes. */
    reset_calls();
    sn_action_t dry = act("stop_instance", t, "inc-ec2:0:1", NULL, 1);
    ck_assert_int_eq(call(&f, EXECUTE, &dry, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "dry_run")));
    ck_assert(json_is_true(json_object_get(r.result, "permitted")));
    ck_assert_msg(strstr(rstr(&r, "would"), "running -> stopped") != NULL, "%s", rstr(&r, "would"));
    sn_result_clear(&r);
    ck_assert_int_eq(count_calls("StopInstances", 0), 1);
    ck_assert_int_eq(count_calls(NULL, 1), 0);
    json_t *st = instance_state(id);
    ck_assert_str_eq(json_string_value(json_object_get(st, "state")), "running");
    ck_assert_ptr_null(tag_of(st));
    json_decref(st);
    ck_assert(metric(&f, "executor_aws_mutations_total") == 0.0);

    /* The real stop: tag first, then StopInstances, once. */
    reset_calls();
    ck_assert_int_eq(call(&f, EXECUTE, &stop, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "changed")));
    ck_assert_str_eq(rstr(&r, "action"), "StopInstances");
    sn_result_clear(&r);
    st = instance_state(id);
    ck_assert_str_eq(json_string_value(json_object_get(st, "state")), "stopped");
    ck_assert_str_eq(tag_of(st), "inc-ec2:0:1");
    json_decref(st);
    ck_assert_int_eq(count_calls(NULL, 1), 2);
    ck_assert_int_eq(count_calls("CreateTags", 1), 1);
    ck_assert_int_eq(count_calls("StopInstances", 1), 1);
    ck_assert_int_eq(call(&f, VERIFY, &stop, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "converged")));
    sn_result_clear(&r);

    /* The same key again: from memory; in a new instance: from the tag. No second stop. */
    ck_assert_int_eq(call(&f, EXECUTE, &stop, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "deduplicated")));
    sn_result_clear(&r);
    fx_close(&f);
    fx_open(&f, NULL);
    ck_assert_int_eq(call(&f, EXECUTE, &stop, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "deduplicated")));
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, VERIFY, &stop, NULL, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(count_calls("StopInstances", 1), 1);
    ck_assert(metric(&f, "executor_aws_deduplicated_total") == 1.0);

    /* Rollback starts it again. */
    ck_assert_int_eq(call(&f, ROLLBACK, &stop, snap, &r), 0);
    ck_assert_str_eq(rstr(&r, "action"), "StartInstances");
    sn_result_clear(&r);
    st = instance_state(id);
    ck_assert_str_eq(json_string_value(json_object_get(st, "state")), "running");
    json_decref(st);
    /* A snapshot of something else is refused. */
    json_t *junk = json_pack("{s:s,s:s,s:s}", "target", "ec2-instance/us-east-1/i-00000000", "kind",
                             "ec2-instance", "state", "running");
    ck_assert_int_eq(call(&f, ROLLBACK, &stop, junk, &r), SN_EINVAL);
    sn_result_clear(&r);
    json_decref(junk);
    json_decref(snap);

    /* Reboot: mutates once; a re-created instance recognises the key by the tag. */
    reset_calls();
    sn_action_t reboot = act("reboot_instance", t, "inc-ec2:1:1", NULL, 0);
    ck_assert_int_eq(call(&f, EXECUTE, &reboot, NULL, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, VERIFY, &reboot, NULL, &r), 0);
    sn_result_clear(&r);
    fx_close(&f);
    fx_open(&f, NULL);
    ck_assert_int_eq(call(&f, EXECUTE, &reboot, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "deduplicated")));
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, VERIFY, &reboot, NULL, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(count_calls("RebootInstances", 1), 1);
    ck_assert(metric(&f, "executor_aws_mutations_total") == 0.0);

    /* A stopped instance: nothing to reboot; start it, roll back to stopped. */
    const char *sid = boot_str("stopped_instance", NULL);
    char ts[96];
    snprintf(ts, sizeof(ts), "ec2-instance/us-east-1/%s", sid);
    sn_action_t rb2 = act("reboot_instance", ts, "inc-ec2:2:1", NULL, 0);
    ck_assert_int_eq(call(&f, EXECUTE, &rb2, NULL, &r), SN_EINVAL);
    ck_assert_ptr_nonnull(strstr(rstr(&r, "error"), "not running"));
    sn_result_clear(&r);
    sn_action_t start = act("start_instance", ts, "inc-ec2:3:1", NULL, 0);
    ck_assert_int_eq(call(&f, SNAPSHOT, &start, NULL, &r), 0);
    snap = json_incref(r.result);
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, EXECUTE, &start, NULL, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, VERIFY, &start, NULL, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, ROLLBACK, &start, snap, &r), 0);
    ck_assert_str_eq(rstr(&r, "action"), "StopInstances");
    sn_result_clear(&r);
    st = instance_state(sid);
    ck_assert_str_eq(json_string_value(json_object_get(st, "state")), "stopped");
    json_decref(st);
    json_decref(snap);
    fx_close(&f);
}
END_TEST

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    fclose(fp);
}

START_TEST(ecs_scale_redeploy_with_profile)
{
    /* Environment keys are read-only ones: an explicit profile skips them. */
    use_env("readonly");
    char path[128], text[1024], extra[512];
    snprintf(path, sizeof(path), "%s/credentials", g_dir);
    snprintf(text, sizeof(text),
             "[default]\naws_access_key_id = AKIADEFAULTDEFAULT00\naws_secret_access_key = x\n\n"
             "# the executor's keys\n[profile sentinel]\naws_access_key_id = %s\n"
             "aws_secret_access_key = %s\n",
             key_of("executor", "access_key"), key_of("executor", "secret_key"));
    write_file(path, text);
    snprintf(extra, sizeof(extra), "credentials_file = %s\nprofile = sentinel\n", path);
    fx_t f;
    fx_open(&f, extra);
    const char *t = "ecs-service/us-east-1/prod:payments";
    json_t *p5 = json_pack("{s:i}", "desiredCount", 5);
    sn_action_t scale = act("scale_service", t, "inc-ecs:0:1", p5, 0);
    sn_result_t r;

    ck_assert_int_eq(call(&f, SNAPSHOT, &scale, NULL, &r), 0);
    json_t *snap = json_incref(r.result);
    sn_result_clear(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(snap, "desiredCount")), 2);
    ck_assert_int_eq(call(&f, ASSESS, &scale, NULL, &r), 0);
    ck_assert_str_eq(rstr(&r, "risk"), "low");
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "blast_radius")), 3);
    sn_result_clear(&r);

    reset_calls();
    sn_action_t dry = act("scale_service", t, "inc-ecs:0:1", p5, 1);
    ck_assert_int_eq(call(&f, EXECUTE, &dry, NULL, &r), 0);
    ck_assert_msg(strstr(rstr(&r, "would"), "desiredCount 2 -> 5") != NULL, "%s",
                  rstr(&r, "would"));
    sn_result_clear(&r);
    ck_assert_int_eq(count_calls(NULL, 0), 1); /* DescribeServices only */
    ck_assert_int_eq(desired("payments"), 2);

    ck_assert_int_eq(call(&f, EXECUTE, &scale, NULL, &r), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(r.result, "desiredCount")), 5);
    sn_result_clear(&r);
    ck_assert_int_eq(desired("payments"), 5);
    ck_assert_int_eq(count_calls("TagResource", 1), 1);
    ck_assert_int_eq(count_calls("UpdateService", 1), 1);
    ck_assert_int_eq(call(&f, VERIFY, &scale, NULL, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, ROLLBACK, &scale, snap, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "changed")));
    sn_result_clear(&r);
    ck_assert_int_eq(desired("payments"), 2);
    /* Rolling back twice changes nothing more. */
    ck_assert_int_eq(call(&f, ROLLBACK, &scale, snap, &r), 0);
    ck_assert(json_is_false(json_object_get(r.result, "changed")));
    sn_result_clear(&r);
    json_decref(snap);

    /* Redeploy checkout: a new primary deployment, once. */
    json_t *before = service_state("checkout");
    sn_action_t re =
        act("redeploy_service", "ecs-service/us-east-1/prod:checkout", "inc-ecs:1:1", NULL, 0);
    reset_calls();
    ck_assert_int_eq(call(&f, EXECUTE, &re, NULL, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, VERIFY, &re, NULL, &r), 0);
    sn_result_clear(&r);
    json_t *after = service_state("checkout");
    ck_assert_str_ne(json_string_value(json_object_get(before, "primary")),
                     json_string_value(json_object_get(after, "primary")));
    ck_assert_str_eq(tag_of(after), "inc-ecs:1:1");
    fx_close(&f);
    fx_open(&f, extra);
    ck_assert_int_eq(call(&f, EXECUTE, &re, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "deduplicated")));
    sn_result_clear(&r);
    ck_assert_int_eq(count_calls("UpdateService", 1), 1);
    json_decref(before);
    json_decref(after);
    json_decref(p5);
    fx_close(&f);
}
END_TEST

START_TEST(resume_verify_fails_fast_when_not_applied)
{
    use_env("executor");
    fx_t f;
    fx_open(&f, "verify_timeout = 30s\n");
    json_t *p7 = json_pack("{s:i}", "desiredCount", 7);
    sn_action_t a = act("scale_service", "ecs-service/us-east-1/prod:payments", "inc-r:0:1", p7, 0);
    sn_result_t r;
    int64_t t0 = sn_mono_ms();
    ck_assert_int_eq(call(&f, VERIFY, &a, NULL, &r), SN_EIO);
    ck_assert_int_lt(sn_mono_ms() - t0, 3000);
    ck_assert(json_is_false(json_object_get(r.result, "applied")));
    sn_result_clear(&r);

    /* A crash between the tag and UpdateService leaves the tag: still "not applied", and the
     * re-execution with the same key mutates once (the tag is not written again). */
    json_t *req =
        json_pack("{s:s,s:[s,s,s]}", "cmd", "tag-service", "args", "prod", "payments", "inc-r:0:1");
    char *body = json_dumps(req, JSON_COMPACT), url[256];
    snprintf(url, sizeof(url), "%s/_proxy/ctl", g_proxy);
    json_decref(http_json(url, body));
    free(body);
    json_decref(req);
    ck_assert_int_eq(call(&f, VERIFY, &a, NULL, &r), SN_EIO);
    ck_assert(json_is_false(json_object_get(r.result, "applied")));
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, SNAPSHOT, &a, NULL, &r), 0);
    json_t *snap = json_incref(r.result);
    sn_result_clear(&r);
    reset_calls();
    ck_assert_int_eq(call(&f, EXECUTE, &a, NULL, &r), 0);
    ck_assert(json_is_true(json_object_get(r.result, "changed")));
    sn_result_clear(&r);
    ck_assert_int_eq(count_calls("TagResource", 0), 0);
    ck_assert_int_eq(count_calls("UpdateService", 1), 1);
    ck_assert_int_eq(desired("payments"), 7);
    ck_assert_int_eq(call(&f, VERIFY, &a, NULL, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, ROLLBACK, &a, snap, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(desired("payments"), 2);
    json_decref(snap);
    json_decref(p7);
    fx_close(&f);
}
END_TEST

START_TEST(verify_rides_out_errors_until_deadline)
{
    use_env("executor");
    fx_t f;
    fx_open(&f, "verify_timeout = 1200ms\nmax_retries = 1\n");
    json_t *p3 = json_pack("{s:i}", "desiredCount", 3);
    sn_action_t a = act("scale_service", "ecs-service/us-east-1/prod:payments", "inc-v:0:1", p3, 0);
    sn_result_t r;
    ck_assert_int_eq(call(&f, SNAPSHOT, &a, NULL, &r), 0);
    json_t *snap = json_incref(r.result);
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, EXECUTE, &a, NULL, &r), 0);
    sn_result_clear(&r);
    char fail[2048] = "{\"fail\": {\"DescribeServices\": [";
    for (int i = 0; i < 60; i++)
        strcat(fail, i ? ",503" : "503");
    strcat(fail, "]}}");
    configure(fail);
    int64_t t0 = sn_mono_ms();
    ck_assert_int_eq(call(&f, VERIFY, &a, NULL, &r), SN_ETIMEDOUT);
    ck_assert_int_ge(sn_mono_ms() - t0, 1000);
    ck_assert_msg(strstr(rstr(&r, "reason"), "ServiceUnavailable") != NULL, "%s",
                  rstr(&r, "reason"));
    sn_result_clear(&r);
    configure("{}");
    ck_assert_int_eq(call(&f, VERIFY, &a, NULL, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, ROLLBACK, &a, snap, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(desired("payments"), 2);
    json_decref(snap);
    json_decref(p3);
    fx_close(&f);
}
END_TEST

START_TEST(throttling_and_5xx_are_retried)
{
    use_env("executor");
    fx_t f;
    fx_open(&f, NULL);
    json_t *p4 = json_pack("{s:i}", "desiredCount", 4);
    sn_action_t a = act("scale_service", "ecs-service/us-east-1/prod:checkout", "inc-t:0:1", p4, 0);
    reset_calls();
    configure("{\"fail\": {\"UpdateService\": [{\"status\": 400, \"code\": "
              "\"ThrottlingException\"}, 503]}}");
    sn_result_t r;
    ck_assert_int_eq(call(&f, EXECUTE, &a, NULL, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(count_calls("UpdateService", 0), 3);
    ck_assert(metric(&f, "executor_aws_retries_total") == 2.0);
    ck_assert_int_eq(desired("checkout"), 4);

    /* The retry budget (3) runs out: the fourth 503 is final. */
    configure("{\"fail\": {\"DescribeServices\": [503, 503, 503, 503, 503]}}");
    ck_assert_int_eq(call(&f, SNAPSHOT, &a, NULL, &r), SN_EIO);
    ck_assert_msg(strstr(rstr(&r, "error"), "HTTP 503") != NULL, "%s", rstr(&r, "error"));
    sn_result_clear(&r);
    configure("{}");
    json_decref(p4);
    fx_close(&f);
}
END_TEST

START_TEST(wrong_credentials_are_a_clear_error)
{
    clean_env();
    setenv("AWS_ACCESS_KEY_ID", key_of("executor", "access_key"), 1);
    setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-kHbq2", 1);
    fx_t f;
    fx_open(&f, NULL);
    sn_result_t r;
    sn_action_t a =
        act("redeploy_service", "ecs-service/us-east-1/prod:payments", "inc-w:0:1", NULL, 0);
    ck_assert_int_eq(call(&f, SNAPSHOT, &a, NULL, &r), SN_EDENIED);
    const char *e = rstr(&r, "error");
    ck_assert_msg(strstr(e, "HTTP 403") && strstr(e, "SignatureDoesNotMatch") &&
                      strstr(e, "credentials from env"),
                  "%s", e);
    ck_assert_ptr_null(strstr(e, "not-the-secret"));
    sn_result_clear(&r);
    char t[96];
    snprintf(t, sizeof(t), "ec2-instance/us-east-1/%s", boot_str("instance", NULL));
    sn_action_t b = act("reboot_instance", t, "inc-w:1:1", NULL, 0);
    ck_assert_int_eq(call(&f, EXECUTE, &b, NULL, &r), SN_EDENIED);
    ck_assert_msg(strstr(rstr(&r, "error"), "AuthFailure") && strstr(rstr(&r, "error"), "401"),
                  "%s", rstr(&r, "error"));
    sn_result_clear(&r);
    fx_close(&f);

    /* Valid keys without the permission: AccessDenied, nothing changed. */
    use_env("readonly");
    fx_open(&f, NULL);
    reset_calls();
    ck_assert_int_eq(call(&f, EXECUTE, &a, NULL, &r), SN_EDENIED);
    ck_assert_msg(strstr(rstr(&r, "error"), "AccessDenied"), "%s", rstr(&r, "error"));
    sn_result_clear(&r);
    ck_assert_int_eq(count_calls("UpdateService", 0), 0); /* TagResource was refused first */
    ck_assert_int_eq(count_calls("TagResource", 0), 1);
    ck_assert_int_eq(desired("payments"), 2);
    fx_close(&f);
}
END_TEST

static json_t *double_requests(void)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/_double/requests", g_double);
    return http_json(url, NULL);
}

static void double_reset(void)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/_double/reset", g_double);
    json_decref(http_json(url, ""));
}

START_TEST(credential_chain_container_and_imds)
{
    clean_env();
    char t[96];
    snprintf(t, sizeof(t), "ec2-instance/us-east-1/%s", boot_str("instance", NULL));
    sn_action_t a = act("reboot_instance", t, NULL, NULL, 0);
    sn_result_t r;
    char uri[256];
    snprintf(uri, sizeof(uri), "%s/v2/credentials/3e7b", g_double);

    /* Container endpoint with its authorization token: STS credentials, session token signed. */
    double_reset();
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", DOUBLE_AUTH, 1);
    fx_t f;
    fx_open(&f, NULL);
    ck_assert_int_eq(call(&f, SNAPSHOT, &a, NULL, &r), 0);
    sn_result_clear(&r);
    ck_assert_int_eq(call(&f, ASSESS, &a, NULL, &r), 0); /* from the cache */
    sn_result_clear(&r);
    fx_close(&f);
    json_t *reqs = double_requests();
    ck_assert_uint_eq(json_array_size(reqs), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(reqs, 0), "path")),
                     "/v2/credentials/3e7b");
    ck_assert(json_is_true(json_object_get(json_array_get(reqs, 0), "authorized")));
    json_decref(reqs);

    /* A wrong token: 401, said clearly, the token not repeated. */
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong-token-Zq9", 1);
    fx_open(&f, NULL);
    ck_assert_int_eq(call(&f, SNAPSHOT, &a, NULL, &r), SN_EDENIED);
    const char *e = rstr(&r, "error");
    ck_assert_msg(strstr(e, "container") && strstr(e, "HTTP 401"), "%s", e);
    ck_assert_ptr_null(strstr(e, "wrong-token"));
    sn_result_clear(&r);
    fx_close(&f);
    /* Plain http to a remote host is refused. */
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://198.51.100.7/creds", 1);
    fx_open(&f, NULL);
    ck_assert_int_eq(call(&f, SNAPSHOT, &a, NULL, &r), SN_EDENIED);
    ck_assert_ptr_nonnull(strstr(rstr(&r, "error"), "must be https"));
    sn_result_clear(&r);
    fx_close(&f);

    /* IMDSv2: token PUT, then the role and the keys with the token. */
    clean_env();
    unsetenv("AWS_EC2_METADATA_DISABLED");
    double_reset();
    char extra[256];
    snprintf(extra, sizeof(extra),
             "credentials = imds\nimds_endpoint = %s\nimds_disabled = false\n", g_double);
    fx_open(&f, extra);
    ck_assert_int_eq(call(&f, SNAPSHOT, &a, NULL, &r), 0);
    sn_result_clear(&r);
    fx_close(&f);
    reqs = double_requests();
    ck_assert_uint_eq(json_array_size(reqs), 3);
    json_t *r0 = json_array_get(reqs, 0), *r1 = json_array_get(reqs, 1),
           *r2 = json_array_get(reqs, 2);
    ck_assert_str_eq(json_string_value(json_object_get(r0, "method")), "PUT");
    ck_assert_str_eq(json_string_value(json_object_get(r0, "path")), "/latest/api/token");
    ck_assert_str_eq(json_string_value(json_object_get(r0, "ttl")), "21600");
    ck_assert_str_eq(json_string_value(json_object_get(r1, "path")),
                     "/latest/meta-data/iam/security-credentials/");
    ck_assert(json_is_true(json_object_get(r1, "has_token")));
    ck_assert_str_eq(json_string_value(json_object_get(r2, "path")),
                     "/latest/meta-data/iam/security-credentials/sentinel-executor");
    ck_assert(json_is_true(json_object_get(r2, "has_token")));
    json_decref(reqs);

    /* The whole chain, nothing anywhere: one error naming every source. */
    snprintf(extra, sizeof(extra),
             "imds_endpoint = http://127.0.0.1:1\nimds_disabled = false\nmetadata_timeout = "
             "300ms\n");
    fx_open(&f, extra);
    ck_assert_int_eq(call(&f, SNAPSHOT, &a, NULL, &r), SN_EDENIED);
    e = rstr(&r, "error");
    ck_assert_msg(strstr(e, "no AWS credentials") && strstr(e, "env:") && strstr(e, "file ") &&
                      strstr(e, "container:") && strstr(e, "imds:"),
                  "%s", e);
    sn_result_clear(&r);
    fx_close(&f);
}
END_TEST

/* ---- main --------------------------------------------------------------------------------------
 */

static Suite *aws_suite(void)
{
    Suite *s = suite_create("aws_executor");
    TCase *tc = tcase_create("moto");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, config_refused);
    tcase_add_test(tc, actions_refused_without_calls);
    tcase_add_test(tc, ec2_stop_start_reboot);
    tcase_add_test(tc, ecs_scale_redeploy_with_profile);
    tcase_add_test(tc, resume_verify_fails_fast_when_not_applied);
    tcase_add_test(tc, verify_rides_out_errors_until_deadline);
    tcase_add_test(tc, throttling_and_5xx_are_retried);
    tcase_add_test(tc, wrong_credentials_are_a_clear_error);
    tcase_add_test(tc, credential_chain_container_and_imds);
    suite_add_tcase(s, tc);
    return s;
}

static void cleanup(void)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "python3 %s stop %s; python3 %s stop %s; rm -rf %s", DOUBLE, g_dir,
             MOTOSERVER, g_dir, g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", g_dir);
}

/* Start moto (+ proxy), bootstrap it, start the metadata double. Returns 0 or -1. */
static int setup(void)
{
    char cmd[512], line[512] = "";
    snprintf(cmd, sizeof(cmd), "python3 %s start %s", MOTOSERVER, g_dir);
    FILE *p = popen(cmd, "r");
    if (!p || !fgets(line, sizeof(line), p) || pclose(p) != 0) {
        fprintf(stderr, "cannot start moto: %s\n", line);
        return -1;
    }
    json_t *info = json_loads(line, 0, NULL);
    snprintf(g_proxy, sizeof(g_proxy), "%s", json_string_value(json_object_get(info, "proxy_url")));
    json_decref(info);
    snprintf(cmd, sizeof(cmd), "python3 %s ctl %s bootstrap", MOTOSERVER, g_dir);
    p = popen(cmd, "r");
    g_boot = p ? read_json(p, NULL) : NULL;
    if (!p || pclose(p) != 0 || !g_boot) {
        fprintf(stderr, "moto bootstrap failed\n");
        return -1;
    }
    /* The double hands out the role's STS credentials. */
    char path[128];
    snprintf(path, sizeof(path), "%s/creds.json", g_dir);
    if (json_dump_file(json_object_get(json_object_get(g_boot, "keys"), "role"), path, 0) != 0)
        return -1;
    snprintf(cmd, sizeof(cmd), "python3 %s start %s %s", DOUBLE, g_dir, DOUBLE_AUTH);
    p = popen(cmd, "r");
    line[0] = '\0';
    if (!p || !fgets(line, sizeof(line), p) || pclose(p) != 0) {
        fprintf(stderr, "cannot start the metadata double\n");
        return -1;
    }
    info = json_loads(line, 0, NULL);
    snprintf(g_double, sizeof(g_double), "%s", json_string_value(json_object_get(info, "url")));
    json_decref(info);
    return 0;
}

int main(void)
{
    if (system("python3 -c 'import moto, boto3' >/dev/null 2>&1") != 0) {
        printf("SKIP: the moto Python package is not installed\n");
        return 0;
    }
    snprintf(g_dir, sizeof(g_dir), "/tmp/sn-aws-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    if (setup() != 0) {
        cleanup();
        return 1;
    }
    SRunner *sr = srunner_create(aws_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cleanup();
    json_decref(g_boot);
    return failed == 0 ? 0 : 1;
}
