/**
 * @file hello.c
 * An out-of-tree executor, built only against the installed <sentinel/plugin.h> and
 * `pkg-config sentinel-plugin`. It "greets" a target: a template for real executors.
 *
 *   cc $(pkg-config --cflags sentinel-plugin) -shared -fPIC -o sn_executor_hello.so hello.c \
 *      $(pkg-config --libs jansson)
 */
#include <sentinel/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hello {
    const sn_host_t *host;
    const char *greeting;
    unsigned long greeted;
} hello_t;

static const sn_param_t hello_params[] = {
    {"greeting", SN_T_STRING, "hello", 0, "word said to each target"},
    {NULL, 0, NULL, 0, NULL},
};

static const sn_verb_t hello_verbs[] = {
    {"greet", SN_RISK_LOW, 0, "say the greeting to the target"},
    {NULL, 0, 0, NULL},
};

static int hello_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    hello_t *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return SN_ENOMEM;
    }
    h->host = host;
    h->greeting = host->cfg_str(cfg, "greeting");
    *self = h;
    return SN_OK;
}

static void hello_destroy(void *self)
{
    free(self);
}

static void hello_snapshot(void *self, const sn_action_t *a, sn_done_fn done, void *arg)
{
    hello_t *h = self;
    json_t *prior = json_pack("{s:s,s:i}", "target", a->target, "greeted", (int)h->greeted);
    done(arg, SN_OK, prior);
    json_decref(prior);
}

static void hello_execute(void *self, const sn_action_t *a, sn_done_fn done, void *arg)
{
    hello_t *h = self;
    h->greeted++;
    h->host->log(h->host, SN_LOG_INFO, "%s, %s (%s)", h->greeting, a->target, a->idempotency_key);
    json_t *r = json_pack("{s:s}", "said", h->greeting);
    done(arg, SN_OK, r);
    json_decref(r);
}

static void hello_verify(void *self, const sn_action_t *a, sn_done_fn done, void *arg)
{
    (void)self;
    (void)a;
    done(arg, SN_OK, NULL);
}

static void hello_rollback(void *self, const sn_action_t *a, const json_t *snap, sn_done_fn done,
                           void *arg)
{
    (void)snap;
    hello_t *h = self;
    h->host->log(h->host, SN_LOG_INFO, "taking back the greeting to %s", a->target);
    done(arg, SN_OK, NULL);
}

static const sn_executor_ops_t hello_ops = {
    .struct_size = sizeof(sn_executor_ops_t),
    .verbs = hello_verbs,
    .snapshot = hello_snapshot,
    .execute = hello_execute,
    .verify = hello_verify,
    .rollback = hello_rollback,
};

static const sn_plugin_t hello_plugin = {
    .abi_major = SN_ABI_MAJOR,
    .abi_minor = SN_ABI_MINOR,
    .struct_size = sizeof(sn_plugin_t),
    .kind = SN_EXECUTOR,
    .type = "hello",
    .version = "1.0.0",
    .summary = "example out-of-tree executor that greets its targets",
    .params = hello_params,
    .create = hello_create,
    .destroy = hello_destroy,
    .ops = &hello_ops,
};

SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &hello_plugin;
}
