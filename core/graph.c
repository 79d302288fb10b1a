/**
 * @file graph.c
 * The [pipeline] section: `edge = A, B -> C -> D [on=failed max=3]` lines become a graph of
 * instance and built-in nodes, validated at load so that a bad pipeline never starts: every node
 * known, every edge syntactically whole, kinds compatible along each edge, every node reachable
 * from an input, and every cycle bounded by an edge with max=. Each error names file:line.
 */
#include "sentinel-internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Bounds: a pipeline is written by hand, so these are generous; they stop a fan-out typo from
 * multiplying into millions of edges. */
#define GRAPH_MAX_NODES 1024
#define GRAPH_MAX_EDGES 4096
#define GRAPH_MAX_BOUND 1000

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

/* Node classes for the compatibility table. */
enum {
    C_INPUT,
    C_DETECTOR,
    C_CORRELATE,
    C_ANALYZER,
    C_APPROVE,
    C_EXECUTOR,
    C_VERIFY,
    C_NOTIFIER,
    C_RESOLVE,
    C_ESCALATE,
    C_OTHER /* stores and embedders: never graph nodes */
};

#define B(x) (1u << (x))
/* Everything an incident can pass through once it exists. */
#define WORKFLOW                                                                                   \
    (B(C_ANALYZER) | B(C_APPROVE) | B(C_EXECUTOR) | B(C_VERIFY) | B(C_NOTIFIER) | B(C_RESOLVE) |   \
     B(C_ESCALATE))

/* allowed[from] is the set of classes an edge from @from may lead to. Telemetry flows input ->
 * detector -> correlate (an input of alerts, already judged elsewhere, may lead straight to
 * correlate); from there on an incident moves through the workflow. Notifiers are
 * sinks or pass-through, so anything of the workflow may lead to one and one may lead on to
 * anything of the workflow. Resolve and escalate end the workflow. */
static const unsigned allowed[C_OTHER] = {
    [C_INPUT] = B(C_DETECTOR) | B(C_CORRELATE), /* alerts from a monitoring system */
    [C_DETECTOR] = B(C_CORRELATE),
    [C_CORRELATE] = B(C_ANALYZER) | B(C_APPROVE) | B(C_NOTIFIER) | B(C_EXECUTOR),
    [C_ANALYZER] =
        B(C_ANALYZER) | B(C_APPROVE) | B(C_EXECUTOR) | B(C_NOTIFIER) | B(C_RESOLVE) | B(C_ESCALATE),
    [C_APPROVE] = B(C_EXECUTOR) | B(C_ESCALATE) | B(C_NOTIFIER) | B(C_RESOLVE),
    [C_EXECUTOR] = B(C_VERIFY) | B(C_EXECUTOR) | B(C_RESOLVE) | B(C_ESCALATE) | B(C_NOTIFIER),
    [C_VERIFY] =
        B(C_ANALYZER) | B(C_RESOLVE) | B(C_ESCALATE) | B(C_EXECUTOR) | B(C_APPROVE) | B(C_NOTIFIER),
    [C_NOTIFIER] = WORKFLOW,
    [C_RESOLVE] = 0,
    [C_ESCALATE] = 0,
};
#undef WORKFLOW
#undef B

static const char *const class_names[] = {"input",   "detector", "correlate", "analyzer",
                                          "approve", "executor", "verify",    "notifier",
                                          "resolve", "escalate", "other"};

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
        return C_RESOLVE;
    case SN_NODE_ESCALATE:
        return C_ESCALATE;
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

static const char *article(const char *word)
{
    return strchr("aeiou", word[0]) ? "an" : "a";
}

/* Build state shared by the passes over the section. */
typedef struct build {
    sn_graph_t *g;
    const char *file;
    sn_graph_lookup_fn lookup;
    void *arg;
    sn_diag_t *d;
    int errs;
    bool oom;
} build_t;

static int find_node(const sn_graph_t *g, const char *name)
{
    for (size_t i = 0; i < g->nnodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Resolve @p name to a built-in or an instance and append it. Returns the index, -1 when the
 * name is unknown, -2 when out of memory, -3 over the node bound. */
static int add_node(build_t *b, const char *name)
{
    sn_graph_t *g = b->g;
    int idx = find_node(g, name);
    if (idx >= 0)
        return idx;
    sn_node_t n = {.inst = -1};
    bool found = false;
    /* A built-in wins over an instance of the same name: built-in names are reserved. */
    for (size_t i = 0; i < NBUILTIN && !found; i++)
        if (strcmp(builtins[i].name, name) == 0) {
            n.type = builtins[i].type;
            found = true;
        }
    if (!found) {
        sn_kind_t k;
        if (!b->lookup || b->lookup(b->arg, name, &k) != 0)
            return -1;
        n.type = SN_NODE_INSTANCE;
        n.kind = k;
    }
    if (g->nnodes >= GRAPH_MAX_NODES)
        return -3;
    sn_node_t *nn = realloc(g->nodes, (g->nnodes + 1) * sizeof(*nn));
    if (!nn)
        return -2;
    g->nodes = nn;
    n.name = strdup(name);
    if (!n.name)
        return -2;
    g->nodes[g->nnodes] = n;
    return (int)g->nnodes++;
}

/* Returns 0, SN_ENOMEM (b->oom set) or SN_EINVAL over the edge bound (reported). */
static int add_edge(build_t *b, int from, int to, const char *on, int max, int line)
{
    sn_graph_t *g = b->g;
    if (g->nedges >= GRAPH_MAX_EDGES) {
        sn_diag_add(b->d, b->file, line, "too many edges in [pipeline] (at most %d)",
                    GRAPH_MAX_EDGES);
        b->errs++;
        return SN_EINVAL;
    }
    sn_edge_t *ne = realloc(g->edges, (g->nedges + 1) * sizeof(*ne));
    if (!ne)
        goto oom;
    g->edges = ne;
    char *oc = NULL;
    if (on && !(oc = strdup(on)))
        goto oom;
    g->edges[g->nedges++] = (sn_edge_t){from, to, oc, max, line};
    return 0;
oom:
    b->oom = true;
    return SN_ENOMEM;
}

/* Keep the closer of @p best and @p cand: within two edits and fewer edits than the word has
 * letters, so a short word does not "resemble" everything. */
static const char *nearest(const char *word, const char *best, size_t *bd, const char *cand)
{
    size_t dist = sn_edit_distance(word, cand);
    if (dist < *bd && dist < strlen(word)) {
        *bd = dist;
        return cand;
    }
    return best;
}

static const char *suggest_node(const sn_graph_t *g, const char *name)
{
    const char *best = NULL;
    size_t bd = 3;
    for (size_t i = 0; i < NBUILTIN; i++)
        best = nearest(name, best, &bd, builtins[i].name);
    for (size_t i = 0; i < g->nnodes; i++)
        best = nearest(name, best, &bd, g->nodes[i].name);
    return best;
}

static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

/* ------------------------------------------------------------------------------------------
 * One edge line, split into its chain of groups and its options.
 * ---------------------------------------------------------------------------------------- */
typedef struct chain {
    char **names; /* borrowed pointers into the line copy */
    int *group;   /* group number of each name */
    size_t n, cap;
    int ngroups;
} chain_t;

static int chain_push(chain_t *ch, char *name, int group)
{
    if (ch->n == ch->cap) {
        size_t cap = ch->cap ? ch->cap * 2 : 16;
        char **nn = realloc(ch->names, cap * sizeof(*nn));
        if (!nn)
            return SN_ENOMEM;
        ch->names = nn;
        int *ng = realloc(ch->group, cap * sizeof(*ng));
        if (!ng)
            return SN_ENOMEM;
        ch->group = ng;
        ch->cap = cap;
    }
    ch->names[ch->n] = name;
    ch->group[ch->n++] = group;
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

/* Split "A, B -> C -> D" (modified in place) into names and groups. Reports syntax errors only
 * when @p d is set; returns the number of errors (or SN_ENOMEM). */
static int parse_chain(char *text, chain_t *ch, const char *file, int line, sn_diag_t *d)
{
    int errs = 0, group = 0;
    char *rest = text;
    while (rest) {
        char *arrow = strstr(rest, "->");
        if (arrow)
            *arrow = '\0';
        char *p = rest;
        for (;;) {
            char *comma = strchr(p, ',');
            if (comma)
                *comma = '\0';
            char *name = trim(p);
            if (!*name) {
                if (d && !errs)
                    sn_diag_add(d, file, line, "edge has an empty node name (stray ',' or '->')");
                errs++;
            } else {
                size_t bad = 0;
                while (name[bad] && name_char(name[bad]))
                    bad++;
                if (name[bad]) {
                    if (d && isspace((unsigned char)name[bad]))
                        sn_diag_add(d, file, line, "'%s': missing ',' or '->' between node names",
                                    name);
                    else if (d)
                        sn_diag_add(d, file, line,
                                    "bad node name '%s' (letters, digits, '_', '.' and '-')", name);
                    errs++;
                } else if (chain_push(ch, name, group) != 0) {
                    return SN_ENOMEM;
                }
            }
            if (!comma)
                break;
            p = comma + 1;
        }
        group++;
        rest = arrow ? arrow + 2 : NULL;
    }
    ch->ngroups = group;
    if (group < 2 && !errs) {
        if (d)
            sn_diag_add(d, file, line, "an edge needs at least 'A -> B'");
        errs++;
    }
    return errs;
}

/* Parse "on=failed max=3" (the text between [ and ]). Whitespace and commas separate options,
 * and may surround '='. */
static int parse_options(char *opts, const char *file, int line, sn_diag_t *d, char **on, int *max)
{
    int errs = 0;
    bool seen_on = false, seen_max = false, any = false;
    char *p = opts;
    for (;;) {
        while (isspace((unsigned char)*p) || *p == ',')
            p++;
        if (!*p)
            break;
        any = true;
        char *key = p;
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
        size_t klen = (size_t)(p - key);
        while (isspace((unsigned char)*p))
            p++;
        if (klen == 0 || *p != '=') {
            char *end = key;
            while (*end && !isspace((unsigned char)*end) && *end != ',')
                end++;
            *end = '\0';
            sn_diag_add(d, file, line, "bad edge option '%s' (on=WORD, max=N)", key);
            return errs + 1;
        }
        key[klen] = '\0';
        p++;
        while (isspace((unsigned char)*p))
            p++;
        char *val = p;
        while (*p && !isspace((unsigned char)*p) && *p != ',')
            p++;
        char *next = *p ? p + 1 : p;
        *p = '\0';
        if (strcmp(key, "on") == 0) {
            if (seen_on) {
                sn_diag_add(d, file, line, "edge option 'on' given twice");
                errs++;
            }
            seen_on = true;
            bool ok = false;
            for (size_t i = 0; outcomes[i]; i++)
                ok |= strcmp(val, outcomes[i]) == 0;
            if (!ok) {
                const char *best = NULL;
                size_t bd = 3;
                for (size_t i = 0; outcomes[i]; i++)
                    best = nearest(val, best, &bd, outcomes[i]);
                if (best)
                    sn_diag_add(d, file, line, "unknown outcome 'on=%s' (did you mean '%s'?)", val,
                                best);
                else
                    sn_diag_add(d, file, line,
                                "unknown outcome 'on=%s' (ok, failed, approved, rejected, "
                                "escalated, timeout)",
                                val);
                errs++;
            }
            *on = val;
        } else if (strcmp(key, "max") == 0) {
            if (seen_max) {
                sn_diag_add(d, file, line, "edge option 'max' given twice");
                errs++;
            }
            seen_max = true;
            char *end;
            long v = strtol(val, &end, 10);
            if (!*val || *end || !isdigit((unsigned char)*val) || v < 1 || v > GRAPH_MAX_BOUND) {
                sn_diag_add(d, file, line, "'max=%s': max must be a whole number 1..%d", val,
                            GRAPH_MAX_BOUND);
                errs++;
            } else {
                *max = (int)v;
            }
        } else {
            sn_diag_add(d, file, line, "unknown edge option '%s' (on=, max=)", key);
            errs++;
        }
        p = next;
    }
    if (!any) {
        sn_diag_add(d, file, line, "empty edge options '[ ]'");
        errs++;
    }
    return errs;
}

/* Pass 0: note every known name of the pipeline as a node, quietly, so that "did you mean"
 * can suggest names that appear later in the section too. Node order is first mention. */
static void prescan(build_t *b, const sn_conf_section_t *pipeline)
{
    for (size_t i = 0; i < pipeline->nkv && !b->oom; i++) {
        const sn_conf_kv_t *kv = &pipeline->kvs[i];
        if (strcmp(kv->key, "edge") != 0 || !kv->value)
            continue;
        char *text = strdup(kv->value);
        chain_t ch = {0};
        if (!text) {
            b->oom = true;
            break;
        }
        char *br = strchr(text, '[');
        if (br)
            *br = '\0';
        if (parse_chain(text, &ch, b->file, kv->line, NULL) == SN_ENOMEM)
            b->oom = true;
        for (size_t k = 0; k < ch.n && !b->oom; k++)
            if (add_node(b, ch.names[k]) == -2)
                b->oom = true; /* over the bound (-3) is reported by pass 1 */
        free(ch.names);
        free(ch.group);
        free(text);
    }
}

/* Pass 1: one edge line, with every error it holds. */
static void parse_line(build_t *b, const sn_conf_kv_t *kv)
{
    const char *file = b->file;
    int line = kv->line, errs = 0;
    char *on = NULL;
    int max = 0;
    chain_t ch = {0};
    int *idx = NULL;
    char *text = strdup(kv->value ? kv->value : "");
    if (!text)
        goto oom;
    if (!*trim(text)) {
        sn_diag_add(b->d, file, line, "empty edge");
        errs++;
        goto done;
    }
    char *open = strchr(text, '['), *close = strchr(text, ']');
    if (close && (!open || close < open)) {
        sn_diag_add(b->d, file, line, "']' without '[' in edge");
        errs++;
        goto done;
    }
    if (open) {
        if (!close) {
            sn_diag_add(b->d, file, line, "edge options: missing ']'");
            errs++;
            goto done;
        }
        if (*trim(close + 1) || strchr(open + 1, '[')) {
            sn_diag_add(b->d, file, line, "edge options must end the line in [ ]");
            errs++;
            goto done;
        }
        *close = '\0';
        *open = '\0';
        errs += parse_options(open + 1, file, line, b->d, &on, &max);
    }
    int rc = parse_chain(text, &ch, file, line, b->d);
    if (rc == SN_ENOMEM)
        goto oom;
    errs += rc;
    idx = calloc(ch.n + 1, sizeof(*idx));
    if (!idx)
        goto oom;
    for (size_t k = 0; k < ch.n; k++) {
        idx[k] = add_node(b, ch.names[k]);
        if (idx[k] == -2)
            goto oom;
        if (idx[k] == -3) {
            sn_diag_add(b->d, file, line, "too many nodes in [pipeline] (at most %d)",
                        GRAPH_MAX_NODES);
            errs++;
            goto done;
        }
        if (idx[k] == -1) {
            const char *best = suggest_node(b->g, ch.names[k]);
            if (best)
                sn_diag_add(b->d, file, line, "unknown node '%s' (did you mean '%s'?)", ch.names[k],
                            best);
            else
                sn_diag_add(b->d, file, line, "unknown node '%s': no such instance or built-in",
                            ch.names[k]);
            errs++;
        }
    }
    /* Consecutive groups are fully connected; edges touching an unknown node are dropped (the
     * node is already reported) so the remaining checks still see the rest of the line. */
    if (ch.ngroups >= 2 && rc == 0) {
        for (size_t i = 0; i < ch.n; i++)
            for (size_t j = 0; j < ch.n; j++) {
                if (ch.group[j] != ch.group[i] + 1 || idx[i] < 0 || idx[j] < 0)
                    continue;
                int arc = add_edge(b, idx[i], idx[j], on, max, line);
                if (arc == SN_ENOMEM)
                    goto oom;
                if (arc != 0)
                    goto done;
            }
    }
done:
    b->errs += errs;
    goto out;
oom:
    b->oom = true;
out:
    free(idx);
    free(ch.names);
    free(ch.group);
    free(text);
}

/* Kinds along every edge; duplicates. */
static void check_kinds(build_t *b)
{
    sn_graph_t *g = b->g;
    int *reported = calloc(g->nnodes + 1, sizeof(*reported)); /* line of last "is a store" */
    if (!reported) {
        b->oom = true;
        return;
    }
    for (size_t e = 0; e < g->nedges; e++) {
        const sn_edge_t *ed = &g->edges[e];
        const sn_node_t *a = &g->nodes[ed->from], *z = &g->nodes[ed->to];
        int ca = node_class(a), cz = node_class(z);
        if (ca == C_OTHER || cz == C_OTHER) {
            int xi = ca == C_OTHER ? ed->from : ed->to;
            const sn_node_t *x = &g->nodes[xi];
            if (reported[xi] != ed->line) {
                const char *k = sn_kind_name(x->kind);
                sn_diag_add(b->d, b->file, ed->line, "'%s' is %s %s; %ss are not pipeline nodes",
                            x->name, article(k), k, k);
                reported[xi] = ed->line;
                b->errs++;
            }
            continue;
        }
        if (ca == C_RESOLVE || ca == C_ESCALATE) {
            sn_diag_add(b->d, b->file, ed->line,
                        "edge %s -> %s: %s ends the workflow; nothing may follow it", a->name,
                        z->name, a->name);
            b->errs++;
            continue;
        }
        if (!(allowed[ca] & (1u << cz))) {
            sn_diag_add(b->d, b->file, ed->line, "edge %s -> %s: %s %s cannot lead to %s %s",
                        a->name, z->name, article(class_names[ca]), class_names[ca],
                        article(class_names[cz]), class_names[cz]);
            b->errs++;
            continue;
        }
        /* The same edge twice with the same condition would make the next step ambiguous. */
        for (size_t f = 0; f < e; f++) {
            const sn_edge_t *o = &g->edges[f];
            if (o->from == ed->from && o->to == ed->to &&
                ((!o->on && !ed->on) || (o->on && ed->on && strcmp(o->on, ed->on) == 0))) {
                sn_diag_add(b->d, b->file, ed->line, "duplicate edge %s -> %s (first on line %d)",
                            a->name, z->name, o->line);
                b->errs++;
                break;
            }
        }
    }
    free(reported);
}

static int first_line(const sn_graph_t *g, int node)
{
    int line = 0;
    for (size_t e = 0; e < g->nedges; e++)
        if ((g->edges[e].from == node || g->edges[e].to == node) &&
            (!line || g->edges[e].line < line))
            line = g->edges[e].line;
    return line;
}

/* Every node reachable from some input (breadth-first from all inputs at once). */
static void check_reachable(build_t *b, const sn_conf_section_t *pipeline)
{
    sn_graph_t *g = b->g;
    char *seen = calloc(g->nnodes + 1, 1);
    int *queue = calloc(g->nnodes + 1, sizeof(*queue));
    size_t qh = 0, qt = 0;
    if (!seen || !queue) {
        b->oom = true;
        goto out;
    }
    for (size_t i = 0; i < g->nnodes; i++)
        if (node_class(&g->nodes[i]) == C_INPUT) {
            seen[i] = 1;
            queue[qt++] = (int)i;
        }
    if (qt == 0) {
        sn_diag_add(b->d, b->file, pipeline->line,
                    "[pipeline] has no input: every path must start at an input");
        b->errs++;
        goto out;
    }
    while (qh < qt) {
        int v = queue[qh++];
        for (size_t e = 0; e < g->nedges; e++)
            if (g->edges[e].from == v && !seen[g->edges[e].to]) {
                seen[g->edges[e].to] = 1;
                queue[qt++] = g->edges[e].to;
            }
    }
    for (size_t i = 0; i < g->nnodes; i++)
        if (!seen[i]) {
            sn_diag_add(b->d, b->file, first_line(g, (int)i),
                        "node '%s' is unreachable from any input", g->nodes[i].name);
            b->errs++;
        }
out:
    free(seen);
    free(queue);
}

/* Depth-first search over the unbounded edges only: a back edge closes a cycle no max= bounds.
 * One report per group of nodes: once a cycle is reported its nodes are marked, so further back
 * edges into them (the same loop seen again) stay quiet. Reports are emitted in line order. */
typedef struct cycle_report {
    int line;
    char *path;
} cycle_report_t;

typedef struct cyc {
    build_t *b;
    char *state; /* 0 new, 1 on the stack, 2 done */
    char *reported;
    int *stack;
    size_t depth;
    cycle_report_t *reports;
    size_t nreports;
} cyc_t;

static void note_cycle(cyc_t *cx, size_t from, int closing, int line)
{
    const sn_graph_t *g = cx->b->g;
    size_t len = strlen(g->nodes[closing].name) + 1;
    for (size_t i = from; i < cx->depth; i++)
        len += strlen(g->nodes[cx->stack[i]].name) + 4;
    char *path = malloc(len);
    if (!path) {
        cx->b->oom = true;
        return;
    }
    size_t off = 0;
    for (size_t i = from; i < cx->depth; i++) {
        cx->reported[cx->stack[i]] = 1;
        off += (size_t)snprintf(path + off, len - off, "%s -> ", g->nodes[cx->stack[i]].name);
    }
    snprintf(path + off, len - off, "%s", g->nodes[closing].name);
    /* At most one report per node, so nnodes slots always suffice. */
    cx->reports[cx->nreports++] = (cycle_report_t){line, path};
}

static void dfs(cyc_t *cx, int v)
{
    const sn_graph_t *g = cx->b->g;
    cx->state[v] = 1;
    cx->stack[cx->depth++] = v;
    for (size_t e = 0; e < g->nedges; e++) {
        const sn_edge_t *ed = &g->edges[e];
        if (ed->from != v || ed->max > 0)
            continue;
        if (cx->state[ed->to] == 1) {
            if (cx->reported[ed->to])
                continue;
            size_t at = 0;
            while (cx->stack[at] != ed->to)
                at++;
            note_cycle(cx, at, ed->to, ed->line);
        } else if (cx->state[ed->to] == 0) {
            dfs(cx, ed->to);
        }
    }
    cx->depth--;
    cx->state[v] = 2;
}

static void check_cycles(build_t *b)
{
    sn_graph_t *g = b->g;
    cyc_t cx = {.b = b};
    cx.state = calloc(g->nnodes + 1, 1);
    cx.reported = calloc(g->nnodes + 1, 1);
    cx.stack = calloc(g->nnodes + 1, sizeof(*cx.stack));
    cx.reports = calloc(g->nnodes + 1, sizeof(*cx.reports));
    if (!cx.state || !cx.reported || !cx.stack || !cx.reports) {
        b->oom = true;
        goto out;
    }
    /* Inputs first, so a cycle is named from the node where the data enters it. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < g->nnodes; i++)
            if (!cx.state[i] && (pass == 1 || node_class(&g->nodes[i]) == C_INPUT))
                dfs(&cx, (int)i);
    /* Stable insertion sort by line: a handful of reports at most. */
    for (size_t i = 1; i < cx.nreports; i++) {
        cycle_report_t r = cx.reports[i];
        size_t j = i;
        for (; j > 0 && cx.reports[j - 1].line > r.line; j--)
            cx.reports[j] = cx.reports[j - 1];
        cx.reports[j] = r;
    }
    for (size_t i = 0; i < cx.nreports; i++) {
        sn_diag_add(b->d, b->file, cx.reports[i].line,
                    "unbounded cycle %s: give one edge a max=", cx.reports[i].path);
        b->errs++;
    }
out:
    for (size_t i = 0; cx.reports && i < cx.nreports; i++)
        free(cx.reports[i].path);
    free(cx.reports);
    free(cx.state);
    free(cx.reported);
    free(cx.stack);
}

/**
 * Build the graph of @p pipeline and validate it; every error goes to @p d as "file:line: ...".
 * Returns NULL when anything is wrong. @p lookup (may be NULL: built-ins only) is asked about
 * names that are not built-ins. Ownership: the caller frees the result with sn_graph_free; node
 * names and conditions are copies, @p c and @p pipeline are only borrowed.
 */
sn_graph_t *sn_graph_build(const sn_conf_t *c, const sn_conf_section_t *pipeline,
                           sn_graph_lookup_fn lookup, void *arg, sn_diag_t *d)
{
    build_t b = {.file = c && c->file ? c->file : "<config>", .lookup = lookup, .arg = arg, .d = d};
    if (!pipeline) {
        sn_diag_add(d, b.file, 0, "no [pipeline] section: nothing would run");
        return NULL;
    }
    b.g = calloc(1, sizeof(*b.g));
    if (!b.g)
        goto oom;
    prescan(&b, pipeline);
    if (b.oom)
        goto oom;
    int lines = 0;
    for (size_t i = 0; i < pipeline->nkv && !b.oom; i++) {
        const sn_conf_kv_t *kv = &pipeline->kvs[i];
        if (strcmp(kv->key, "edge") != 0) {
            sn_diag_add(d, b.file, kv->line, "unknown key '%s' in [pipeline] (only 'edge')",
                        kv->key);
            b.errs++;
            continue;
        }
        lines++;
        parse_line(&b, kv);
    }
    if (b.oom)
        goto oom;
    if (!lines && !b.errs) {
        sn_diag_add(d, b.file, pipeline->line, "[pipeline] has no edge");
        b.errs++;
    }
    check_kinds(&b);
    /* Reachability and cycles only mean something once every edge is valid. */
    if (!b.errs && !b.oom)
        check_reachable(&b, pipeline);
    if (!b.errs && !b.oom)
        check_cycles(&b);
    if (b.oom)
        goto oom;
    if (b.errs) {
        sn_graph_free(b.g);
        return NULL;
    }
    return b.g;
oom:
    sn_diag_add(d, b.file, pipeline->line, "out of memory building the pipeline");
    sn_graph_free(b.g);
    return NULL;
}

/** Ownership: frees @p g and everything in it; NULL is fine. */
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

/** Index of the node called @p name, or -1. Ownership: borrows both. */
int sn_graph_node(const sn_graph_t *g, const char *name)
{
    if (!g || !name)
        return -1;
    return find_node(g, name);
}

/**
 * The edges leaving @p node that @p outcome takes, in declaration order: those with no on= and
 * those whose on= equals @p outcome (NULL matches only the former). Writes at most @p cap.
 * Ownership: borrows @p g; fills the caller's @p edges.
 */
size_t sn_graph_next(const sn_graph_t *g, int node, const char *outcome, int *edges, size_t cap)
{
    size_t n = 0;
    if (!g || node < 0 || (size_t)node >= g->nnodes)
        return 0;
    for (size_t e = 0; e < g->nedges && n < cap; e++) {
        const sn_edge_t *ed = &g->edges[e];
        if (ed->from != node)
            continue;
        if (!ed->on || (outcome && strcmp(ed->on, outcome) == 0))
            edges[n++] = (int)e;
    }
    return n;
}

/** One edge a line, with its condition, bound, kinds and line (sentineld -T).
 * Ownership: borrows both. */
void sn_graph_print(const sn_graph_t *g, FILE *out)
{
    if (!g)
        return;
    for (size_t e = 0; e < g->nedges; e++) {
        const sn_edge_t *ed = &g->edges[e];
        const sn_node_t *a = &g->nodes[ed->from], *z = &g->nodes[ed->to];
        char opts[64] = "";
        if (ed->on && ed->max)
            snprintf(opts, sizeof(opts), " [on=%s max=%d]", ed->on, ed->max);
        else if (ed->on)
            snprintf(opts, sizeof(opts), " [on=%s]", ed->on);
        else if (ed->max)
            snprintf(opts, sizeof(opts), " [max=%d]", ed->max);
        int w = fprintf(out, "%s -> %s%s", a->name, z->name, opts);
        fprintf(out, "%*s # %s -> %s, line %d\n", w < 44 ? 44 - w : 0, "",
                class_names[node_class(a)], class_names[node_class(z)], ed->line);
    }
}
