/**
 * @file check_graph.c
 * The [pipeline] graph: the DESIGN §3 example validates and routes as written; every kind of
 * error (syntax, unknown node, kind mismatch, store node, unreachable node, unbounded cycle,
 * unknown outcome) is reported with its exact file:line message.
 */
#include "sentinel-internal.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* The instances a model would know, with their kinds. */
static const struct {
    const char *name;
    sn_kind_t kind;
} instances[] = {
    {"telemetry", SN_INPUT}, {"latency", SN_DETECTOR}, {"latency_iqr", SN_DETECTOR},
    {"daily", SN_DETECTOR},  {"rca", SN_ANALYZER},     {"runbook", SN_ANALYZER},
    {"k8s", SN_EXECUTOR},    {"aws", SN_EXECUTOR},     {"slack", SN_NOTIFIER},
    {"local", SN_STORE},     {"hashing", SN_EMBEDDER}, {"events", SN_INPUT},
};

static int lookups;

static int lookup(void *arg, const char *name, sn_kind_t *kind)
{
    ck_assert_ptr_eq(arg, (void *)instances); /* the caller's argument is passed through */
    lookups++;
    for (size_t i = 0; i < sizeof(instances) / sizeof(instances[0]); i++)
        if (strcmp(instances[i].name, name) == 0) {
            *kind = instances[i].kind;
            return 0;
        }
    return -1;
}

static sn_diag_t D;
static sn_conf_t *C;

static void setup(void)
{
    sn_diag_init(&D);
    C = NULL;
}

static void teardown(void)
{
    sn_conf_free(C);
    sn_diag_free(&D);
}

/* Build the graph of a [pipeline] section whose first line is line 1 of "g.conf". */
static sn_graph_t *build(const char *edges)
{
    size_t n = strlen(edges) + 16;
    char *text = malloc(n);
    snprintf(text, n, "[pipeline]\n%s", edges);
    sn_conf_free(C);
    C = sn_conf_load_string("g.conf", text, &D);
    free(text);
    ck_assert_msg(C != NULL, "config did not parse: %s", D.n ? D.msgs[0] : "?");
    const sn_conf_section_t *p = sn_conf_find(C, "pipeline", NULL);
    ck_assert_ptr_nonnull(p);
    return sn_graph_build(C, p, lookup, (void *)instances, &D);
}

/* Build and expect failure with exactly @p want (NULL-terminated) messages, in order. */
static void expect_errors(const char *edges, const char *const *want)
{
    size_t before = D.n;
    sn_graph_t *g = build(edges);
    size_t nwant = 0;
    while (want[nwant])
        nwant++;
    bool same = D.n - before == nwant;
    for (size_t i = 0; same && i < nwant; i++)
        same = strcmp(D.msgs[before + i], want[i]) == 0;
    for (size_t i = before; !same && i < D.n; i++)
        fprintf(stderr, "  got: %s\n", D.msgs[i]);
    ck_assert_ptr_null(g);
    ck_assert_int_eq(D.n - before, nwant);
    for (size_t i = 0; i < nwant; i++)
        ck_assert_str_eq(D.msgs[before + i], want[i]);
}

static void expect_error(const char *edges, const char *want)
{
    const char *const w[] = {want, NULL};
    expect_errors(edges, w);
}

static const char *to_name(const sn_graph_t *g, int edge)
{
    return g->nodes[g->edges[edge].to].name;
}

static const char design_example[] =
    "edge = telemetry -> latency, latency_iqr, daily\n"
    "edge = latency, latency_iqr, daily -> correlate\n"
    "edge = correlate -> rca -> runbook -> approve -> k8s -> verify\n"
    "edge = verify -> rca        [on=failed max=3]   # loop-back: re-analyse, at most 3 times\n"
    "edge = verify -> resolve    [on=ok]\n";

START_TEST(design_example_validates_and_routes)
{
    sn_graph_t *g = build(design_example);
    ck_assert_msg(g != NULL, "%s", D.n ? D.msgs[0] : "?");
    ck_assert_int_eq(D.n, 0);
    ck_assert_int_eq(g->nedges, 3 + 3 + 5 + 1 + 1);
    ck_assert_int_eq(g->nnodes, 1 + 3 + 1 + 2 + 1 + 1 + 1 + 1);

    int tel = sn_graph_node(g, "telemetry"), e[16];
    ck_assert_int_eq(g->nodes[tel].type, SN_NODE_INSTANCE);
    ck_assert_int_eq(g->nodes[tel].kind, SN_INPUT);
    ck_assert_int_eq(g->nodes[tel].inst, -1);
    ck_assert_int_eq(g->nodes[sn_graph_node(g, "approve")].type, SN_NODE_APPROVE);
    ck_assert_int_eq(g->nodes[sn_graph_node(g, "resolve")].type, SN_NODE_RESOLVE);
    ck_assert_int_eq(sn_graph_node(g, "escalate"), -1); /* not mentioned, not a node */
    ck_assert_int_eq(sn_graph_node(g, "nope"), -1);

    /* Fan-out in declaration order. */
    size_t n = sn_graph_next(g, tel, "ok", e, 16);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(to_name(g, e[0]), "latency");
    ck_assert_str_eq(to_name(g, e[1]), "latency_iqr");
    ck_assert_str_eq(to_name(g, e[2]), "daily");
    ck_assert_int_eq(g->edges[e[0]].line, 2);
    ck_assert_ptr_null(g->edges[e[0]].on);
    ck_assert_int_eq(g->edges[e[0]].max, 0);
    /* Fan-in: each detector feeds correlate. */
    int cor = sn_graph_node(g, "correlate");
    for (size_t i = 0; i < 3; i++) {
        int det = g->edges[e[i]].to;
        int out[4];
        ck_assert_int_eq(sn_graph_next(g, det, "ok", out, 4), 1);
        ck_assert_int_eq(g->edges[out[0]].to, cor);
        ck_assert_int_eq(g->edges[out[0]].line, 3);
    }
    /* The cap is respected. */
    ck_assert_int_eq(sn_graph_next(g, tel, "ok", e, 2), 2);

    /* Conditions: verify has only conditioned edges. */
    int ver = sn_graph_node(g, "verify");
    n = sn_graph_next(g, ver, "failed", e, 16);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(to_name(g, e[0]), "rca");
    ck_assert_str_eq(g->edges[e[0]].on, "failed");
    ck_assert_int_eq(g->edges[e[0]].max, 3);
    ck_assert_int_eq(g->edges[e[0]].line, 5);
    n = sn_graph_next(g, ver, "ok", e, 16);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(to_name(g, e[0]), "resolve");
    ck_assert_int_eq(sn_graph_next(g, ver, "timeout", e, 16), 0);
    ck_assert_int_eq(sn_graph_next(g, ver, NULL, e, 16), 0);
    ck_assert_int_eq(sn_graph_next(g, -1, "ok", e, 16), 0);
    ck_assert_int_eq(sn_graph_next(g, (int)g->nnodes, "ok", e, 16), 0);

    /* An edge without on= matches any outcome. */
    int rca = sn_graph_node(g, "rca");
    ck_assert_int_eq(sn_graph_next(g, rca, "failed", e, 16), 1);
    ck_assert_str_eq(to_name(g, e[0]), "runbook");
    ck_assert_int_eq(sn_graph_next(g, rca, NULL, e, 16), 1);
    sn_graph_free(g);
}
END_TEST

START_TEST(unconditioned_and_conditioned_edges_keep_declaration_order)
{
    sn_graph_t *g = build("edge = telemetry -> latency -> correlate -> rca\n"
                          "edge = rca -> slack [on=failed]\n"
                          "edge = rca -> approve\n"
                          "edge = rca -> escalate [on=timeout]\n"
                          "edge = approve -> k8s -> resolve\n");
    ck_assert_ptr_nonnull(g);
    int rca = sn_graph_node(g, "rca"), e[8];
    size_t n = sn_graph_next(g, rca, "failed", e, 8);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(to_name(g, e[0]), "slack");
    ck_assert_str_eq(to_name(g, e[1]), "approve");
    n = sn_graph_next(g, rca, "timeout", e, 8);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(to_name(g, e[0]), "approve");
    ck_assert_str_eq(to_name(g, e[1]), "escalate");
    sn_graph_free(g);
}
END_TEST

START_TEST(whitespace_is_flexible)
{
    sn_graph_t *g = build("edge=telemetry->latency,latency_iqr ,  daily\n"
                          "edge =\tlatency ,latency_iqr,daily->correlate->rca -> k8s->verify\n"
                          "edge = verify->rca[ on = failed ,max = 2 ]\n"
                          "edge = verify -> resolve [on=ok]\n");
    ck_assert_msg(g != NULL, "%s", D.n ? D.msgs[0] : "?");
    int ver = sn_graph_node(g, "verify"), e[4];
    ck_assert_int_eq(sn_graph_next(g, ver, "failed", e, 4), 1);
    ck_assert_str_eq(g->edges[e[0]].on, "failed");
    ck_assert_int_eq(g->edges[e[0]].max, 2);
    ck_assert_int_eq(sn_graph_next(g, sn_graph_node(g, "telemetry"), "ok", e, 4), 3);
    ck_assert_str_eq(to_name(g, e[2]), "daily");
    sn_graph_free(g);
}
END_TEST

START_TEST(print_lists_one_edge_a_line)
{
    sn_graph_t *g = build(design_example);
    ck_assert_ptr_nonnull(g);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sn_graph_print(g, f);
    fclose(f);
    size_t lines = 0;
    for (char *p = buf; *p; p++)
        lines += *p == '\n';
    ck_assert_int_eq(lines, g->nedges);
    ck_assert_msg(strncmp(buf, "telemetry -> latency ", 21) == 0, "%s", buf);
    char *loop = strstr(buf, "verify -> rca ");
    ck_assert_ptr_nonnull(loop);
    char *eol = strchr(loop, '\n');
    *eol = '\0';
    ck_assert_ptr_nonnull(strstr(loop, "[on=failed max=3]"));
    ck_assert_ptr_nonnull(strstr(loop, "line 5"));
    *eol = '\n';
    ck_assert_ptr_nonnull(strstr(buf, "[on=ok]"));
    free(buf);
    sn_graph_free(g);
}
END_TEST

START_TEST(syntax_errors_name_the_line)
{
    expect_error("edge = telemetry\n", "g.conf:2: an edge needs at least 'A -> B'");
    expect_error("edge = telemetry -> latency ->\n",
                 "g.conf:2: edge has an empty node name (stray ',' or '->')");
    expect_error("edge = telemetry -> -> latency\n",
                 "g.conf:2: edge has an empty node name (stray ',' or '->')");
    expect_error("edge = telemetry -> latency,,daily\n",
                 "g.conf:2: edge has an empty node name (stray ',' or '->')");
    expect_error("edge = telemetry -> latency daily\n",
                 "g.conf:2: 'latency daily': missing ',' or '->' between node names");
    expect_error("edge = telemetry => latency\n",
                 "g.conf:2: 'telemetry => latency': missing ',' or '->' between node names");
    expect_error("edge = telemetry -> lat$ency\n",
                 "g.conf:2: bad node name 'lat$ency' (letters, digits, '_', '.' and '-')");
    expect_error("edge = telemetry -> latency [on=ok] -> correlate\n",
                 "g.conf:2: edge options must end the line in [ ]");
    expect_error("edge = telemetry -> latency [on=ok\n", "g.conf:2: edge options: missing ']'");
    expect_error("edge = telemetry -> latency on=ok]\n", "g.conf:2: ']' without '[' in edge");
    expect_error("edge = telemetry -> latency []\n", "g.conf:2: empty edge options '[ ]'");
    expect_error("edge = telemetry -> latency [when=ok]\n",
                 "g.conf:2: unknown edge option 'when' (on=, max=)");
    expect_error("edge = telemetry -> latency [failed]\n",
                 "g.conf:2: bad edge option 'failed' (on=WORD, max=N)");
    expect_error("edge = telemetry -> latency [max=0]\n",
                 "g.conf:2: 'max=0': max must be a whole number 1..1000");
    expect_error("edge = telemetry -> latency [max=three]\n",
                 "g.conf:2: 'max=three': max must be a whole number 1..1000");
    expect_error("edge = telemetry -> latency [max=-1]\n",
                 "g.conf:2: 'max=-1': max must be a whole number 1..1000");
    expect_error("edge = telemetry -> latency [on=ok on=failed]\n",
                 "g.conf:2: edge option 'on' given twice");
    expect_error("edges = telemetry -> latency\n",
                 "g.conf:2: unknown key 'edges' in [pipeline] (only 'edge')");
    expect_error("", "g.conf:1: [pipeline] has no edge");
}
END_TEST

START_TEST(unknown_outcome_suggests)
{
    expect_error("edge = telemetry -> latency -> correlate -> rca -> k8s -> verify\n"
                 "edge = verify -> rca [on=faild max=2]\n",
                 "g.conf:3: unknown outcome 'on=faild' (did you mean 'failed'?)");
    expect_error("edge = telemetry -> latency -> correlate -> rca -> k8s -> verify\n"
                 "edge = verify -> resolve [on=success]\n",
                 "g.conf:3: unknown outcome 'on=success' (ok, failed, approved, rejected, "
                 "escalated, timeout)");
    /* Every listed word is accepted. */
    sn_graph_t *g = build("edge = telemetry -> latency -> correlate -> rca -> approve\n"
                          "edge = k8s -> verify [on=ok]\n"
                          "edge = k8s -> escalate [on=failed]\n"
                          "edge = approve -> k8s [on=approved]\n"
                          "edge = approve -> resolve [on=rejected]\n"
                          "edge = approve -> slack [on=timeout]\n"
                          "edge = verify -> resolve [on=escalated]\n");
    ck_assert_msg(g != NULL, "%s", D.n ? D.msgs[0] : "?");
    sn_graph_free(g);
}
END_TEST

START_TEST(unknown_nodes_suggest_builtins_and_pipeline_names)
{
    /* 'latency' is only mentioned on a later line: still suggested. */
    expect_error("edge = telemetry -> latncy\n"
                 "edge = telemetry -> latency -> correlate\n",
                 "g.conf:2: unknown node 'latncy' (did you mean 'latency'?)");
    expect_error("edge = telemetry -> latency -> correlate -> rca -> aprove -> k8s\n",
                 "g.conf:2: unknown node 'aprove' (did you mean 'approve'?)");
    expect_error("edge = telemetry -> latency -> correlate -> rca -> Resolve\n",
                 "g.conf:2: unknown node 'Resolve' (did you mean 'resolve'?)");
    expect_error("edge = telemetry -> zzz\n",
                 "g.conf:2: unknown node 'zzz': no such instance or built-in");
    /* Each line is reported, and errors come in line order. */
    const char *const want[] = {"g.conf:2: unknown node 'rca2' (did you mean 'rca'?)",
                                "g.conf:3: unknown node 'rca2' (did you mean 'rca'?)", NULL};
    expect_errors("edge = telemetry -> latency -> correlate -> rca -> rca2\n"
                  "edge = rca2 -> resolve\n",
                  want);
}
END_TEST

START_TEST(lookup_is_asked_only_about_instances)
{
    lookups = 0;
    sn_graph_t *g = build("edge = telemetry -> latency -> correlate -> approve -> resolve\n");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_gt(lookups, 0);
    /* Built-ins never reach the lookup; telemetry and latency are asked at most once a pass. */
    ck_assert_int_le(lookups, 4);
    sn_graph_free(g);
    /* Without a lookup only built-ins are known. */
    sn_conf_free(C);
    C = sn_conf_load_string("g.conf", "[pipeline]\nedge = telemetry -> correlate\n", &D);
    g = sn_graph_build(C, &C->sections[0], NULL, NULL, &D);
    ck_assert_ptr_null(g);
    ck_assert_int_eq(D.n, 1);
    ck_assert_str_eq(D.msgs[0], "g.conf:2: unknown node 'telemetry': no such instance or built-in");
}
END_TEST

START_TEST(stores_and_embedders_are_not_nodes)
{
    expect_error("edge = telemetry -> latency -> correlate -> rca -> local\n",
                 "g.conf:2: 'local' is a store; stores are not pipeline nodes");
    expect_error("edge = telemetry -> latency -> correlate -> hashing -> rca\n",
                 "g.conf:2: 'hashing' is an embedder; embedders are not pipeline nodes");
    /* Named once per line even when several edges touch it. */
    expect_error("edge = telemetry -> latency, daily -> local\n",
                 "g.conf:2: 'local' is a store; stores are not pipeline nodes");
}
END_TEST

/* The compatibility table, written out independently of the implementation: one node of each
 * class, and the classes each may lead to. */
START_TEST(kind_compatibility_table)
{
    static const struct {
        const char *node, *cls, *to;
    } rows[] = {
        {"telemetry", "input", "detector correlate"},
        {"latency", "detector", "correlate"},
        {"correlate", "correlate", "analyzer approve notifier executor"},
        {"rca", "analyzer", "analyzer approve executor notifier resolve escalate"},
        {"approve", "approve", "executor escalate notifier resolve"},
        {"k8s", "executor", "verify executor resolve escalate notifier"},
        {"verify", "verify", "analyzer resolve escalate executor approve notifier"},
        {"slack", "notifier", "analyzer approve executor verify notifier resolve escalate"},
        {"resolve", "resolve", ""},
        {"escalate", "escalate", ""},
    };
    const size_t nrows = sizeof(rows) / sizeof(rows[0]);
    /* Second nodes of the classes that can lead to themselves, so no edge is a self-loop. */
    static const char *const second[] = {"events", "daily", NULL, "runbook", NULL,
                                         "aws",    NULL,    NULL, NULL,      NULL};
    size_t checked = 0;
    for (size_t a = 0; a < nrows; a++)
        for (size_t z = 0; z < nrows; z++) {
            const char *from = rows[a].node;
            const char *to = a == z && second[z] ? second[z] : rows[z].node;
            char edge[128];
            snprintf(edge, sizeof(edge), "edge = %s -> %s\n", from, to);
            size_t before = D.n;
            sn_graph_t *g = build(edge);
            sn_graph_free(g);
            bool refused = false;
            for (size_t i = before; i < D.n; i++)
                refused |= strstr(D.msgs[i], "cannot lead to") != NULL ||
                           strstr(D.msgs[i], "ends the workflow") != NULL;
            char padded[96];
            snprintf(padded, sizeof(padded), " %s ", rows[a].to);
            char word[32];
            snprintf(word, sizeof(word), " %s ", rows[z].cls);
            bool want = strstr(padded, word) != NULL;
            ck_assert_msg(refused == !want, "%s -> %s (%s -> %s): %s", from, to, rows[a].cls,
                          rows[z].cls, want ? "refused" : "accepted");
            checked++;
        }
    ck_assert_int_eq(checked, nrows * nrows);
}
END_TEST

START_TEST(kind_errors_have_exact_messages)
{
    expect_error("edge = telemetry -> rca\n",
                 "g.conf:2: edge telemetry -> rca: an input cannot lead to an analyzer");
    expect_error("edge = telemetry -> latency -> rca\n",
                 "g.conf:2: edge latency -> rca: a detector cannot lead to an analyzer");
    expect_error("edge = telemetry -> latency -> correlate -> rca -> telemetry\n",
                 "g.conf:2: edge rca -> telemetry: an analyzer cannot lead to an input");
    expect_error("edge = telemetry -> latency -> correlate -> rca -> resolve -> slack\n",
                 "g.conf:2: edge resolve -> slack: resolve ends the workflow; nothing may follow "
                 "it");
    /* Several in one build, in edge order, after the syntax errors of every line. */
    const char *const want[] = {
        "g.conf:4: unknown outcome 'on=sucess' (ok, failed, approved, rejected, escalated, "
        "timeout)",
        "g.conf:2: edge telemetry -> k8s: an input cannot lead to an executor",
        "g.conf:3: edge approve -> verify: an approve cannot lead to a verify", NULL};
    expect_errors("edge = telemetry -> k8s\n"
                  "edge = approve -> verify\n"
                  "edge = rca -> approve [on=sucess]\n",
                  want);
}
END_TEST

START_TEST(duplicate_edges_are_refused)
{
    expect_error("edge = telemetry -> latency -> correlate\n"
                 "edge = telemetry -> latency\n",
                 "g.conf:3: duplicate edge telemetry -> latency (first on line 2)");
    /* The same pair under different conditions is not a duplicate. */
    sn_graph_t *g = build("edge = telemetry -> latency -> correlate -> rca -> k8s\n"
                          "edge = k8s -> escalate [on=failed]\n"
                          "edge = k8s -> escalate [on=timeout]\n");
    ck_assert_msg(g != NULL, "%s", D.n ? D.msgs[0] : "?");
    sn_graph_free(g);
}
END_TEST

START_TEST(unreachable_nodes_are_named_with_their_first_line)
{
    const char *const want[] = {"g.conf:3: node 'runbook' is unreachable from any input",
                                "g.conf:3: node 'approve' is unreachable from any input", NULL};
    expect_errors("edge = telemetry -> latency -> correlate -> rca\n"
                  "edge = runbook -> approve\n"
                  "edge = approve -> k8s\n"
                  "edge = k8s -> resolve\n"
                  "edge = rca -> k8s\n",
                  want);
    expect_error("edge = correlate -> rca -> resolve\n",
                 "g.conf:1: [pipeline] has no input: every path must start at an input");
    /* Reachable through any input. */
    sn_graph_t *g = build("edge = telemetry -> latency -> correlate\n"
                          "edge = events -> daily -> correlate -> rca -> resolve\n");
    ck_assert_msg(g != NULL, "%s", D.n ? D.msgs[0] : "?");
    sn_graph_free(g);
}
END_TEST

START_TEST(unbounded_cycles_are_reported_with_their_path)
{
    expect_error("edge = telemetry -> latency -> correlate -> rca -> runbook -> k8s -> verify\n"
                 "edge = verify -> rca [on=failed]\n"
                 "edge = verify -> resolve [on=ok]\n",
                 "g.conf:3: unbounded cycle rca -> runbook -> k8s -> verify -> rca: give one "
                 "edge a max=");
    /* The same loop bounded on any one of its edges is fine. */
    sn_graph_t *g = build("edge = telemetry -> latency -> correlate -> rca -> runbook\n"
                          "edge = runbook -> k8s [max=4]\n"
                          "edge = k8s -> verify\n"
                          "edge = verify -> rca [on=failed]\n"
                          "edge = verify -> resolve [on=ok]\n");
    ck_assert_msg(g != NULL, "%s", D.n ? D.msgs[0] : "?");
    sn_graph_free(g);
    /* A self-loop. */
    expect_error("edge = telemetry -> latency -> correlate -> rca -> k8s -> resolve\n"
                 "edge = k8s -> k8s [on=failed]\n",
                 "g.conf:3: unbounded cycle k8s -> k8s: give one edge a max=");
    /* Two separate loops: both reported, each once. */
    const char *const want[] = {
        "g.conf:3: unbounded cycle rca -> runbook -> rca: give one edge a max=",
        "g.conf:5: unbounded cycle k8s -> verify -> k8s: give one edge a max=", NULL};
    expect_errors("edge = telemetry -> latency -> correlate -> rca -> runbook -> approve\n"
                  "edge = runbook -> rca [on=failed]\n"
                  "edge = approve -> k8s -> verify -> resolve\n"
                  "edge = verify -> k8s [on=failed]\n",
                  want);
    /* A bounded outer loop around an unbounded inner one still fails on the inner one. */
    expect_error("edge = telemetry -> latency -> correlate -> rca -> k8s -> verify -> resolve\n"
                 "edge = verify -> rca [on=failed max=3]\n"
                 "edge = verify -> k8s [on=timeout]\n",
                 "g.conf:4: unbounded cycle k8s -> verify -> k8s: give one edge a max=");
}
END_TEST

START_TEST(missing_pipeline_section)
{
    sn_conf_free(C);
    C = sn_conf_load_string("g.conf", "[sentinel]\n", &D);
    ck_assert_ptr_nonnull(C);
    ck_assert_ptr_null(sn_graph_build(C, NULL, lookup, (void *)instances, &D));
    ck_assert_int_eq(D.n, 1);
    ck_assert_str_eq(D.msgs[0], "g.conf: no [pipeline] section: nothing would run");
    sn_graph_free(NULL);
    ck_assert_int_eq(sn_graph_node(NULL, "x"), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("graph");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, design_example_validates_and_routes);
    tcase_add_test(tc, unconditioned_and_conditioned_edges_keep_declaration_order);
    tcase_add_test(tc, whitespace_is_flexible);
    tcase_add_test(tc, print_lists_one_edge_a_line);
    tcase_add_test(tc, syntax_errors_name_the_line);
    tcase_add_test(tc, unknown_outcome_suggests);
    tcase_add_test(tc, unknown_nodes_suggest_builtins_and_pipeline_names);
    tcase_add_test(tc, lookup_is_asked_only_about_instances);
    tcase_add_test(tc, stores_and_embedders_are_not_nodes);
    tcase_add_test(tc, kind_compatibility_table);
    tcase_add_test(tc, kind_errors_have_exact_messages);
    tcase_add_test(tc, duplicate_edges_are_refused);
    tcase_add_test(tc, unreachable_nodes_are_named_with_their_first_line);
    tcase_add_test(tc, unbounded_cycles_are_reported_with_their_path);
    tcase_add_test(tc, missing_pipeline_section);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
