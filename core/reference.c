/**
 * @file reference.c
 * The parameter reference of sentinel.conf(5), generated from the same tables the daemon
 * validates with (the core's [sentinel] keys, the keys every section kind takes, and each
 * plugin found in the plugin directory), so the manual cannot drift from the code.
 */
#include "model.h"
#include "runtime.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static const char *type_name(sn_type_t t)
{
    static const char *const names[] = {
        [SN_T_STRING] = "string", [SN_T_INT] = "integer",       [SN_T_DOUBLE] = "number",
        [SN_T_BOOL] = "boolean",  [SN_T_DURATION] = "duration", [SN_T_LIST] = "list",
        [SN_T_SIZE] = "size"};
    return (size_t)t < sizeof(names) / sizeof(names[0]) && names[t] ? names[t] : "value";
}

/* troff text: a backslash doubled, and a line may not start with '.' or '\''. */
static void roff(FILE *out, const char *s)
{
    if (s && (*s == '.' || *s == '\''))
        fputs("\\&", out);
    for (; s && *s; s++) {
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-')
            fputs("\\-", out);
        else
            fputc(*s, out);
    }
}

static void params(FILE *out, const sn_param_t *p)
{
    for (; p && p->key; p++) {
        fputs(".TP\n\\fB", out);
        roff(out, p->key);
        fprintf(out, "\\fR (%s", type_name(p->type));
        if (p->flags & SN_PARAM_REQUIRED)
            fputs(", required", out);
        else if (p->def) {
            fputs(", default ", out);
            roff(out, p->def);
        }
        if (p->flags & SN_PARAM_SECRET)
            fputs(", secret", out);
        if (p->flags & SN_PARAM_MULTI)
            fputs(", repeatable", out);
        fputs(")\n", out);
        roff(out, p->doc ? p->doc : "");
        fputc('\n', out);
    }
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int sn_reference_man(FILE *out, const char *plugin_dir)
{
    fputs(".SH \"CORE KEYS\"\nThe \\fB[sentinel]\\fR section.\n", out);
    params(out, sn_core_params);
    fputs(".SH \"KEYS OF EVERY SECTION KIND\"\n", out);
    for (int k = SN_INPUT; k <= SN_KIND_MAX; k++) {
        fprintf(out, ".SS \"[%s:NAME]\"\n", sn_kind_name((sn_kind_t)k));
        params(out, sn_model_kind_params((sn_kind_t)k));
    }
    DIR *d = opendir(plugin_dir);
    if (!d)
        return SN_EIO;
    char *names[512];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 512) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "sn_", 3) == 0 && l > 6 && strcmp(de->d_name + l - 3, ".so") == 0)
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp);
    sn_runtime_t *rt = sn_runtime_new(1);
    sn_host_t host;
    sn_host_fill(rt, &host, NULL);
    sn_loader_t *l = sn_loader_new(plugin_dir, &host);
    fputs(".SH PLUGINS\nEach plugin's own keys, next to the keys of its kind above.\n", out);
    for (size_t i = 0; i < n; i++) {
        char kind_s[32], type[128];
        const char *rest = names[i] + 3, *us = strchr(rest, '_');
        sn_kind_t kind;
        if (!us || (size_t)(us - rest) >= sizeof(kind_s))
            continue;
        memcpy(kind_s, rest, (size_t)(us - rest));
        kind_s[us - rest] = '\0';
        snprintf(type, sizeof(type), "%.*s", (int)(strlen(us + 1) - 3), us + 1);
        char why[256];
        const sn_loaded_t *m = sn_kind_parse(kind_s, &kind) == 0 && l
                                   ? sn_loader_get(l, kind, type, why, sizeof(why))
                                   : NULL;
        if (!m)
            continue;
        fprintf(out, ".SS \"%s/%s\"\n", kind_s, type);
        roff(out, m->plugin->summary ? m->plugin->summary : "");
        fputc('\n', out);
        params(out, m->plugin->params);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    sn_loader_free(l);
    sn_runtime_free(rt);
    return 0;
}
