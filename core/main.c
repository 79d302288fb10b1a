/**
 * @file main.c
 * sentineld: parse flags, build the engine, run the loop. Everything else lives in
 * sentinel_core so tests and benchmarks drive the same code.
 */
#include "engine.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sentineld [-c FILE] [-t | -T] [-p PLUGIN_DIR] [--listen HOST:PORT]\n"
            "       sentineld --describe KIND/TYPE [-p PLUGIN_DIR]\n"
            "  -c FILE        configuration (default %s)\n"
            "  -t             validate the configuration and exit (0 valid, 2 invalid)\n"
            "  -T             like -t, then print the resolved instances and pipeline\n"
            "  -p DIR         load plugins from DIR\n"
            "  --listen ADDR  override [sentinel] listen\n"
            "  --describe K/T print a plugin's parameters (--describe sentinel: the core's)\n"
            "  -V             print the version\n",
            SN_CONF_INSTALL);
}

static const char *type_name(sn_type_t t)
{
    switch (t) {
    case SN_T_STRING:
        return "string";
    case SN_T_INT:
        return "int";
    case SN_T_DOUBLE:
        return "double";
    case SN_T_BOOL:
        return "bool";
    case SN_T_DURATION:
        return "duration";
    case SN_T_LIST:
        return "list";
    case SN_T_SIZE:
        return "size";
    }
    return "?";
}

static void print_params(const sn_param_t *p, FILE *out)
{
    for (; p && p->key; p++) {
        fprintf(out, "  %-26s %-8s", p->key, type_name(p->type));
        if (p->flags & SN_PARAM_REQUIRED)
            fprintf(out, " required");
        else if (p->def)
            fprintf(out, " default %s", p->def);
        if (p->flags & SN_PARAM_SECRET)
            fprintf(out, " secret");
        if (p->flags & SN_PARAM_MULTI)
            fprintf(out, " repeatable");
        fprintf(out, "\n      %s\n", p->doc ? p->doc : "");
    }
}

static int describe(const char *what, const char *plugin_dir)
{
    char kind_s[32];
    if (strcmp(what, "reference") == 0)
        return sn_reference_man(stdout, plugin_dir ? plugin_dir : sn_model_default_plugin_dir())
                   ? 1
                   : 0;
    if (strcmp(what, "sentinel") == 0) {
        printf("[sentinel] keys:\n");
        print_params(sn_core_params, stdout);
        return 0;
    }
    const char *slash = strchr(what, '/');
    if (!slash || (size_t)(slash - what) >= sizeof(kind_s)) {
        fprintf(stderr, "sentineld: --describe wants KIND/TYPE (e.g. detector/zscore) or "
                        "sentinel\n");
        return 2;
    }
    memcpy(kind_s, what, (size_t)(slash - what));
    kind_s[slash - what] = '\0';
    sn_kind_t kind;
    if (sn_kind_parse(kind_s, &kind) != 0) {
        fprintf(stderr, "sentineld: unknown kind '%s'\n", kind_s);
        return 2;
    }
    sn_runtime_t *rt = sn_runtime_new(1);
    sn_host_t host;
    sn_host_fill(rt, &host, NULL);
    sn_loader_t *l = sn_loader_new(plugin_dir ? plugin_dir : sn_model_default_plugin_dir(), &host);
    char why[256] = "";
    const sn_loaded_t *m = l ? sn_loader_get(l, kind, slash + 1, why, sizeof(why)) : NULL;
    int rc = 0;
    if (!m) {
        fprintf(stderr, "sentineld: %s: %s\n", what, why);
        rc = 2;
    } else {
        const sn_plugin_t *p = m->plugin;
        printf("%s/%s %s (ABI %u.%u) — %s\n", kind_s, p->type, p->version ? p->version : "",
               p->abi_major, p->abi_minor, p->summary ? p->summary : "");
        printf("core keys:\n");
        print_params(sn_model_kind_params(kind), stdout);
        printf("plugin keys:\n");
        print_params(p->params, stdout);
        if (kind == SN_EXECUTOR) {
            const sn_executor_ops_t *ops = p->ops;
            printf("verbs:\n");
            for (const sn_verb_t *v = ops->verbs; v && v->name; v++)
                printf("  %-20s risk %-6s downtime %ds  %s\n", v->name, sn_risk_name(v->risk),
                       v->downtime_s, v->doc ? v->doc : "");
        }
    }
    sn_loader_free(l);
    sn_runtime_free(rt);
    return rc;
}

static void print_model(const sn_model_t *m)
{
    printf("# instances\n");
    for (size_t i = 0; i < m->ninst; i++)
        printf("[%s] plugin=%s (line %d)\n", m->inst[i].label, m->inst[i].type, m->inst[i].line);
    printf("# pipeline\n");
    sn_graph_print(m->graph, stdout);
}

int main(int argc, char **argv)
{
    const char *conf = SN_CONF_INSTALL, *plugin_dir = NULL, *listen = NULL, *desc = NULL;
    int test = 0, dump = 0;
    static const struct option longopts[] = {{"describe", required_argument, NULL, 'D'},
                                             {"listen", required_argument, NULL, 'L'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:tTp:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            conf = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'T':
            test = dump = 1;
            break;
        case 'p':
            plugin_dir = optarg;
            break;
        case 'L':
            listen = optarg;
            break;
        case 'D':
            desc = optarg;
            break;
        case 'V':
            printf("sentineld %s (plugin ABI %d.%d)\n", SN_VERSION, SN_ABI_MAJOR, SN_ABI_MINOR);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (desc)
        return describe(desc, plugin_dir);

    signal(SIGPIPE, SIG_IGN);
    sn_diag_t d;
    sn_diag_init(&d);
    sn_engine_opts_t o = {.config_path = conf, .plugin_dir = plugin_dir, .listen = listen};
    sn_engine_t *e = sn_engine_new(&o, &d);
    if (e)
        sn_engine_check(e, &d);
    if (d.n) {
        sn_diag_print(&d, stderr);
        fprintf(stderr, "sentineld: configuration file %s test failed (%zu error%s)\n", conf, d.n,
                d.n == 1 ? "" : "s");
        sn_diag_free(&d);
        sn_engine_free(e);
        return 2;
    }
    if (test) {
        if (dump)
            print_model(sn_engine_model(e));
        fprintf(stderr, "sentineld: configuration file %s test is successful\n", conf);
        sn_engine_free(e);
        return 0;
    }
    int rc = sn_engine_start(e);
    if (rc == 0)
        rc = sn_engine_run(e);
    sn_engine_free(e);
    sn_diag_free(&d);
    return rc == 0 ? 0 : 1;
}
