/**
 * @file graph.c
 * The [pipeline] section: `edge = A, B -> C -> D [on=failed max=3]` lines become a graph of
 * instance and built-in nodes, validated at load: every node known, kinds compatible along each
 * edge, every node reachable from an input, and every cycle bounded by an edge with max=.
 */
#include "sentinel-internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    sn_node_type_t type;
} builtins[] = {{"correlate", SN_NODE_CORRELATE},
                {"approve", SN_NODE_APPROVE},
                {"verify", SN_NODE_VERIFY},
                {"resolve", SN_NODE_RESOLVE},
                {"escalate", SN_NODE_ESCALATE}};
#define NBUILTIN (sizeof(builtins) / sizeof(builtins[0]))

static const char *const outcomes[] = {"ok",        "failed",  "approved", "rejected",
                                       "escalated", "timeout", NULL};

/* Node classes for compatibility checks. */
enum {
    C_INPUT,
    C_DETECTOR,
    C_CORRELATE,
    C_ANALYZER,
    C_APPROVE,
    C_EXECUTOR,
    C_VERIFY,
    C_NOTIFIER,
    C_TERMINAL,
    C_OTHER
};

static int node_class(const sn_node_t *n)
{
    switch (n->type) {
    case SN_NODE_CORRELATE:
        return C_CORRELATE;
    case SN_NODE_APPROVE:
        return C_APPROVE;
    case SN_NODE_VERIFY:
        return C_VERIFY;
    case SN_NODE_RESOLVE:
    case SN_NODE_ESCALATE:
        return C_TERMINAL;
    case SN_NODE_INSTANCE:
        break;
    }
    switch (n->kind) {
    case SN_INPUT:
        return C_INPUT;
    case SN_DETECTOR:
        return C_DETECTOR;
    case SN_ANALYZER:
        return C_ANALYZER;
    case SN_EXECUTOR:
        return C_EXECUTOR;
    case SN_NOTIFIER:
        return C_NOTIFIER;
    default:
        return C_OTHER;
    }
}

/* allowed[from] is a bitmask of classes an edge may lead to. */
static unsigned allowed_to(int from)
{
#define B(x) (1u << (x))
    unsigned workflow =
        B(C_ANALYZER) | B(C_APPROVE) | B(C_EXECUTOR) | B(C_VERIFY) | B(C_NOTIFIER) | B(C_TERMINAL);
    switch (from) {
    case C_INPUT:
        return B(C_DETECTOR);
    case C_DETECTOR:
        return B(C_CORRELATE);
    case C_CORRELATE:
        return B(C_ANALYZER) | B(C_APPROVE) | B(C_NOTIFIER) | B(C_EXECUTOR) | B(C_TERMINAL);
    case C_ANALYZER:
    case C_APPROVE:
    case C_EXECUTOR:
    case C_VERIFY:
    case C_NOTIFIER:
        return workflow;
    default:
        return 0;
    }
#undef B
}

static const char *class_name(int c)
{
    static const char *const n[] = {"input",    "detector", "correlate", "analyzer", "approve",
                                    "executor", "verify",   "notifier",  "terminal", "other"};
    return n[c];
}

static const char *article(const char *word)
{
    return strchr("aeiou", word[0]) ? "an" : "a";
}

static int add_node(sn_graph_t *g, const char *name, sn_graph_lookup_fn lookup, void *arg)
{
    for (size_t i = 0; i < g->nnodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return (int)i;
    sn_node_t n = {.inst = -1};
    int found = 0;
    for (size_t b = 0; b < NBUILTIN; b++)
        if (strcmp(builtins[b].name, name) == 0) {
            n.type = builtins[b].type;
            found = 1;
        }
    if (!found) {
        sn_kind_t k;
        if (lookup(arg, name, &k) != 0)
            return -1;
        n.type = SN_NODE_INSTANCE;
        n.kind = k;
    }
    sn_node_t *nn = realloc(g->nodes, (g->nnodes + 1) * sizeof(*nn));
    if (!nn)
        return -2;
    g->nodes = nn;
    n.name = strdup(name);
    g->nodes[g->nnodes] = n;
    return (int)g->nnodes++;
}

static int add_edge(sn_graph_t *g, int from, int to, const char *on, int max, int line)
{
    sn_edge_t *ne = realloc(g->edges, (g->nedges + 1) * sizeof(*ne));
    if (!ne)
        return SN_ENOMEM;
    g->edges = ne;
    g->edges[g->nedges++] = (sn_edge_t){from, to, on ? strdup(on) : NULL, max, line};
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static const char *suggest(const sn_graph_t *g, const char *name)
{
    const char *best = NULL;
    size_t bd = 3;
    for (size_t b = 0; b < NBUILTIN; b++) {
        size_t d = sn_edit_distance(name, builtins[b].name);
        if (d < bd) {
            bd = d;
            best = builtins[b].name;
        }
    }
    for (size_t i = 0; i < g->nnodes; i++) {
        size_t d = sn_edit_distance(name, g->nodes[i].name);
        if (d < bd) {
            bd = d;
            best = g->nodes[i].name;
        }
    }
    return best;
}

typedef struct names {
    char *v[64];
    size_t n;
} names_t;

/* Parse one edge line; returns 0 or an error count. */
static int parse_line(sn_graph_t *g, const sn_conf_kv_t *kv, const char *file,
                      sn_graph_lookup_fn lookup, void *arg, sn_diag_t *d)
{
    char *text = strdup(kv->value);
    char *opts = strchr(text, '[');
    char *on = NULL;
    int max = 0, errs = 0;
    if (opts) {
        char *close = strchr(opts, ']');
        if (!close || trim(close + 1)[0]) {
            sn_diag_add(d, file, kv->line, "edge options must end the line in [ ]");
            free(text);
            return 1;
        }
        *close = '\0';
        *opts++ = '\0';
        char *save = NULL;
        for (char *tok = strtok_r(opts, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
            if (strncmp(tok, "on=", 3) == 0) {
                on = tok + 3;
                int ok = 0;
                for (size_t i = 0; outcomes[i]; i++)
                    ok |= strcmp(on, outcomes[i]) == 0;
                if (!ok) {
                    const char *best = NULL;
                    size_t bd = 3;
                    for (size_t i = 0; outcomes[i]; i++)
                        if (sn_edit_distance(on, outcomes[i]) < bd) {
                            bd = sn_edit_distance(on, outcomes[i]);
                            best = outcomes[i];
                        }
                    if (best)
                        sn_diag_add(d, file, kv->line,
                                    "unknown outcome 'on=%s' (did you mean '%s'?)", on, best);
                    else
                        sn_diag_add(d, file, kv->line,
                                    "unknown outcome 'on=%s' (ok, failed, approved, rejected, "
                                    "escalated, timeout)",
                                    on);
                    errs++;
                }
            } else if (strncmp(tok, "max=", 4) == 0) {
                char *end;
                long v = strtol(tok + 4, &end, 10);
                if (*end || v < 1 || v > 100) {
                    sn_diag_add(d, file, kv->line, "'%s': max must be 1..100", tok);
                    errs++;
                }
                max = (int)v;
            } else {
                sn_diag_add(d, file, kv->line, "unknown edge option '%s' (on=, max=)", tok);
                errs++;
            }
        }
    }
    /* Groups separated by "->", names within a group by ','. */
    int prev[64], nprev = 0;
    char *rest = text;
    int groups = 0;
    while (rest) {
        char *arrow = strstr(rest, "->");
        if (arrow)
            *arrow = '\0';
        int cur[64], ncur = 0;
        char *save = NULL;
        for (char *tok = strtok_r(rest, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            char *name = trim(tok);
            if (!*name)
                continue;
            int idx = add_node(g, name, lookup, arg);
            if (idx == -1) {
                const char *best = suggest(g, name);
                if (best)
                    sn_diag_add(d, file, kv->line, "unknown node '%s' (did you mean '%s'?)", name,
                                best);
                else
                    sn_diag_add(d, file, kv->line,
                                "unknown node '%s': no such instance or built-in", name);
                errs++;
                continue;
            }
            if (idx >= 0 && ncur < 64)
                cur[ncur++] = idx;
        }
        if (ncur == 0 && !errs) {
            sn_diag_add(d, file, kv->line, "empty node list in edge");
            errs++;
        }
        for (int i = 0; i < nprev; i++)
            for (int j = 0; j < ncur; j++)
                add_edge(g, prev[i], cur[j], on, max, kv->line);
        memcpy(prev, cur, sizeof(int) * (size_t)ncur);
        nprev = ncur;
        groups++;
        rest = arrow ? arrow + 2 : NULL;
    }
    if (groups < 2 && !errs) {
        sn_diag_add(d, file, kv->line, "an edge needs at least 'A -> B'");
        errs++;
    }
    free(text);
    return errs;
}

/* DFS for cycles made only of unbounded edges. */
static int find_cycle(const sn_graph_t *g, int v, int *color, int *stack, int depth, sn_diag_t *d,
                      const char *file)
{
    color[v] = 1;
    stack[depth] = v;
    for (size_t e = 0; e < g->nedges; e++) {
        const sn_edge_t *ed = &g->edges[e];
        if (ed->from != v || ed->max > 0)
            continue;
        if (color[ed->to] == 1) {
            char path[1024] = "";
            int start = 0;
            for (int i = 0; i <= depth; i++)
                if (stack[i] == ed->to)
                    start = i;
            for (int i = start; i <= depth; i++) {
                size_t l = strlen(path);
                snprintf(path + l, sizeof(path) - l, "%s -> ", g->nodes[stack[i]].name);
            }
            size_t l = strlen(path);
            snprintf(path + l, sizeof(path) - l, "%s", g->nodes[ed->to].name);
            sn_diag_add(d, file, ed->line, "unbounded cycle %s: give one edge a max=", path);
            return 1;
        }
        if (color[ed->to] == 0 && find_cycle(g, ed->to, color, stack, depth + 1, d, file))
            return 1;
    }
    color[v] = 2;
    return 0;
}

sn_graph_t *sn_graph_build(const sn_conf_t *c, const sn_conf_section_t *pipeline,
                           sn_graph_lookup_fn lookup, void *arg, sn_diag_t *d)
{
    const char *file = c->file;
    sn_graph_t *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    int errs = 0, lines = 0;
    for (size_t i = 0; i < pipeline->nkv; i++) {
        const sn_conf_kv_t *kv = &pipeline->kvs[i];
        if (strcmp(kv->key, "edge") != 0) {
            sn_diag_add(d, file, kv->line, "unknown key '%s' in [pipeline] (only 'edge')", kv->key);
            errs++;
            continue;
        }
        lines++;
        errs += parse_line(g, kv, file, lookup, arg, d);
    }
    if (!lines && !errs) {
        sn_diag_add(d, file, pipeline->line, "[pipeline] has no edge");
        errs++;
    }
    /* Kinds along edges. */
    for (size_t e = 0; e < g->nedges; e++) {
        const sn_edge_t *ed = &g->edges[e];
        const sn_node_t *a = &g->nodes[ed->from], *b = &g->nodes[ed->to];
        int ca = node_class(a), cb = node_class(b);
        if (ca == C_OTHER || cb == C_OTHER) {
            const sn_node_t *x = ca == C_OTHER ? a : b;
            sn_diag_add(d, file, ed->line, "'%s' is a %s; %ss are not pipeline nodes", x->name,
                        sn_kind_name(x->kind), sn_kind_name(x->kind));
            errs++;
        } else if (!(allowed_to(ca) & (1u << cb))) {
            sn_diag_add(d, file, ed->line, "edge %s -> %s: %s %s cannot lead to %s %s", a->name,
                        b->name, article(class_name(ca)), class_name(ca), article(class_name(cb)),
                        class_name(cb));
            errs++;
        }
    }
    if (!errs) {
        /* Reachability from inputs. */
        int *seen = calloc(g->nnodes + 1, sizeof(int));
        int *queue = calloc(g->nnodes + 1, sizeof(int));
        size_t qh = 0, qt = 0;
        for (size_t i = 0; i < g->nnodes; i++)
            if (node_class(&g->nodes[i]) == C_INPUT) {
                seen[i] = 1;
                queue[qt++] = (int)i;
            }
        while (qh < qt) {
            int v = queue[qh++];
            for (size_t e = 0; e < g->nedges; e++)
                if (g->edges[e].from == v && !seen[g->edges[e].to]) {
                    seen[g->edges[e].to] = 1;
                    queue[qt++] = g->edges[e].to;
                }
        }
        for (size_t i = 0; i < g->nnodes; i++) {
            if (seen[i])
                continue;
            int line = 0;
            for (size_t e = 0; e < g->nedges && !line; e++)
                if (g->edges[e].from == (int)i || g->edges[e].to == (int)i)
                    line = g->edges[e].line;
            sn_diag_add(d, file, line, "node '%s' is unreachable from any input", g->nodes[i].name);
            errs++;
        }
        free(queue);
        /* Cycles must be bounded. */
        int *color = calloc(g->nnodes + 1, sizeof(int));
        int *stack = calloc(g->nnodes + 1, sizeof(int));
        for (size_t i = 0; i < g->nnodes && !errs; i++)
            if (!color[i] && find_cycle(g, (int)i, color, stack, 0, d, file))
                errs++;
        free(color);
        free(stack);
        free(seen);
    }
    if (errs) {
        sn_graph_free(g);
        return NULL;
    }
    return g;
}

void sn_graph_free(sn_graph_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nnodes; i++)
        free(g->nodes[i].name);
    for (size_t i = 0; i < g->nedges; i++)
        free(g->edges[i].on);
    free(g->nodes);
    free(g->edges);
    free(g);
}

int sn_graph_node(const sn_graph_t *g, const char *name)
{
    for (size_t i = 0; g && i < g->nnodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return (int)i;
    return -1;
}

size_t sn_graph_next(const sn_graph_t *g, int node, const char *outcome, int *edges, size_t cap)
{
    size_t n = 0;
    for (size_t e = 0; e < g->nedges && n < cap; e++) {
        const sn_edge_t *ed = &g->edges[e];
        if (ed->from == node && (!ed->on || strcmp(ed->on, outcome) == 0))
            edges[n++] = (int)e;
    }
    return n;
}

void sn_graph_print(const sn_graph_t *g, FILE *out)
{
    for (size_t e = 0; e < g->nedges; e++) {
        const sn_edge_t *ed = &g->edges[e];
        fprintf(out, "%s -> %s", g->nodes[ed->from].name, g->nodes[ed->to].name);
        if (ed->on || ed->max)
            fprintf(out, "  [%s%s%s%.0d]", ed->on ? "on=" : "", ed->on ? ed->on : "",
                    ed->max ? (ed->on ? " max=" : "max=") : "", ed->max);
        fprintf(out, "  (line %d)\n", ed->line);
    }
}
