/**
 * @file check_ingest.c
 * Unit tests for ingest.c: the JSON-lines record format (points, logs, change events), the
 * series hash, every bad-line reason with its description, limits, line handling (CRLF, a last
 * line without newline, blank lines, empty body) and that no accepted line is lost around bad
 * ones.
 */
#include "ingest.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define T0_MS 1795600800000LL /* 2026-11-25T10:00:00Z */
#define MAX_RECS 64

/* A copy of one delivered record: the parser's pointers are borrowed for the callback only. */
typedef struct got_rec {
    sn_rec_type_t type;
    int64_t ts_ms;
    char metric[256];
    double value;
    char text[256];
    char level[32];
    int has_level;
    size_t nlabels;
    char names[8][64];
    char values[8][300];
    uint64_t series;
    size_t line;
} got_rec_t;

typedef struct got {
    got_rec_t r[MAX_RECS];
    size_t n;
} got_t;

static void collect(void *arg, const sn_record_t *rec)
{
    got_t *g = arg;
    ck_assert_uint_lt(g->n, MAX_RECS);
    got_rec_t *o = &g->r[g->n++];
    memset(o, 0, sizeof(*o));
    o->type = rec->type;
    o->ts_ms = rec->ts_ms;
    o->value = rec->value;
    o->series = rec->series;
    o->line = rec->line;
    if (rec->metric)
        snprintf(o->metric, sizeof(o->metric), "%s", rec->metric);
    if (rec->text)
        snprintf(o->text, sizeof(o->text), "%s", rec->text);
    if (rec->level) {
        o->has_level = 1;
        snprintf(o->level, sizeof(o->level), "%s", rec->level);
    }
    o->nlabels = rec->nlabels;
    for (size_t i = 0; i < rec->nlabels && i < 8; i++) {
        snprintf(o->names[i], sizeof(o->names[i]), "%s", rec->labels[i].name);
        snprintf(o->values[i], sizeof(o->values[i]), "%s", rec->labels[i].value);
    }
}

/* Parse @p text with the default limits, up to 20 descriptions. */
static void parse(const char *text, got_t *g, sn_ingest_stats_t *st, sn_diag_t *errs)
{
    memset(g, 0, sizeof(*g));
    memset(st, 0, sizeof(*st));
    sn_diag_init(errs);
    ck_assert_int_eq(
        sn_ingest_parse(text, strlen(text), "test.jsonl", NULL, collect, g, st, errs, 20), 0);
    ck_assert_uint_eq(st->accepted, g->n);
}

/* Parse one line expected to be rejected for @p reason; returns the (only) description. */
static void expect_bad(const char *line, int reason, const char *needle)
{
    got_t g;
    sn_ingest_stats_t st;
    sn_diag_t errs;
    parse(line, &g, &st, &errs);
    ck_assert_msg(st.rejected == 1 && st.by_reason[reason] == 1,
                  "%s: expected reason %s, got rejected=%zu json=%zu utf8=%zu type=%zu "
                  "missing=%zu nonfinite=%zu time=%zu name=%zu labels=%zu too_long=%zu",
                  line, sn_ingest_reason_name(reason), st.rejected, st.by_reason[SN_IR_JSON],
                  st.by_reason[SN_IR_UTF8], st.by_reason[SN_IR_TYPE], st.by_reason[SN_IR_MISSING],
                  st.by_reason[SN_IR_NONFINITE], st.by_reason[SN_IR_TIME], st.by_reason[SN_IR_NAME],
                  st.by_reason[SN_IR_LABELS], st.by_reason[SN_IR_TOO_LONG]);
    ck_assert_uint_eq(st.accepted, 0);
    ck_assert_uint_eq(g.n, 0);
    ck_assert_uint_eq(errs.n, 1);
    ck_assert_msg(strncmp(errs.msgs[0], "test.jsonl: line 1: ", 20) == 0, "bad prefix: %s",
                  errs.msgs[0]);
    if (needle)
        ck_assert_msg(strstr(errs.msgs[0], needle) != NULL, "'%s' not in '%s'", needle,
                      errs.msgs[0]);
    sn_diag_free(&errs);
}

/* ---- valid records ------------------------------------------------------------------------ */

START_TEST(integer_beyond_int64_is_a_number)
{
    got_t g;
    sn_ingest_stats_t st;
    sn_diag_t errs;
    parse("{\"ts\":1795600800000,\"metric\":\"bytes\",\"value\":100000000000000000000}\n", &g, &st,
          &errs);
    ck_assert_uint_eq(st.accepted, 1);
    ck_assert(g.r[0].value == 1e20);
    ck_assert_int_eq(g.r[0].ts_ms, T0_MS); /* epoch ms stay exact */
    sn_diag_free(&errs);
}
END_TEST

START_TEST(point_log_change_parsed)
{
    const char *text =
        "{\"ts\":1795600800000,\"metric\":\"http_p99_latency_ms\",\"value\":120.5,"
        "\"labels\":{\"service\":\"checkout\",\"env\":\"prod\"}}\n"
        "{\"ts\":\"2026-11-25T10:00:01Z\",\"log\":\"connection refused\",\"level\":\"error\","
        "\"labels\":{\"service\":\"cart\"}}\n"
        "{\"ts\":\"2026-11-25T11:00:02.5+01:00\",\"change\":\"deploy\","
        "\"labels\":{\"version\":\"v2.3.1\",\"service\":\"checkout\"}}\n"
        "{\"ts\":1795600803000.9,\"log\":\"no level, no labels\"}\n"
        "{\"ts\":\"1795600804000\",\"metric\":\"up\",\"value\":1}\n";
    got_t g;
    sn_ingest_stats_t st;
    sn_diag_t errs;
    parse(text, &g, &st, &errs);
    ck_assert_uint_eq(st.accepted, 5);
    ck_assert_uint_eq(st.rejected, 0);
    ck_assert_uint_eq(errs.n, 0);

    ck_assert_int_eq(g.r[0].type, SN_REC_POINT);
    ck_assert_int_eq(g.r[0].ts_ms, T0_MS);
    ck_assert_str_eq(g.r[0].metric, "http_p99_latency_ms");
    ck_assert_double_eq(g.r[0].value, 120.5);
    ck_assert_uint_eq(g.r[0].line, 1);
    /* Labels arrive sorted by name, whatever the input order. */
    ck_assert_uint_eq(g.r[0].nlabels, 2);
    ck_assert_str_eq(g.r[0].names[0], "env");
    ck_assert_str_eq(g.r[0].values[0], "prod");
    ck_assert_str_eq(g.r[0].names[1], "service");
    ck_assert_str_eq(g.r[0].values[1], "checkout");
    ck_assert_uint_ne(g.r[0].series, 0);

    ck_assert_int_eq(g.r[1].type, SN_REC_LOG);
    ck_assert_int_eq(g.r[1].ts_ms, T0_MS + 1000);
    ck_assert_str_eq(g.r[1].text, "connection refused");
    ck_assert(g.r[1].has_level);
    ck_assert_str_eq(g.r[1].level, "error");
    ck_assert_uint_eq(g.r[1].nlabels, 1);
    ck_assert_str_eq(g.r[1].names[0], "service");
    ck_assert_str_eq(g.r[1].values[0], "cart");
    ck_assert_uint_eq(g.r[1].line, 2);

    /* RFC3339 with a fraction and an offset: 11:00:02.5+01:00 is 10:00:02.500Z. */
    ck_assert_int_eq(g.r[2].type, SN_REC_CHANGE);
    ck_assert_int_eq(g.r[2].ts_ms, T0_MS + 2500);
    ck_assert_str_eq(g.r[2].text, "deploy");
    ck_assert_uint_eq(g.r[2].nlabels, 2);
    ck_assert_str_eq(g.r[2].names[0], "service");
    ck_assert_str_eq(g.r[2].names[1], "version");
    ck_assert_str_eq(g.r[2].values[1], "v2.3.1");

    /* A real epoch is truncated to whole milliseconds; level and labels are optional. */
    ck_assert_int_eq(g.r[3].type, SN_REC_LOG);
    ck_assert_int_eq(g.r[3].ts_ms, T0_MS + 3000);
    ck_assert(!g.r[3].has_level);
    ck_assert_uint_eq(g.r[3].nlabels, 0);

    /* Epoch milliseconds as text; an integer value. */
    ck_assert_int_eq(g.r[4].type, SN_REC_POINT);
    ck_assert_int_eq(g.r[4].ts_ms, T0_MS + 4000);
    ck_assert_double_eq(g.r[4].value, 1.0);
    ck_assert_uint_eq(g.r[4].nlabels, 0);
    sn_diag_free(&errs);
}
END_TEST

START_TEST(metric_names_accepted)
{
    char longest[260];
    memset(longest, 'm', 200);
    longest[200] = '\0';
    char line[400];
    const char *names[] = {"a", "_x", ":recorded:rule", "http.requests.total", "A9_b:c.d", longest};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(line, sizeof(line), "{\"ts\":1,\"metric\":\"%s\",\"value\":0}", names[i]);
        got_t g;
        sn_ingest_stats_t st;
        sn_diag_t errs;
        parse(line, &g, &st, &errs);
        ck_assert_msg(st.accepted == 1, "metric name '%s' refused", names[i]);
        ck_assert_str_eq(g.r[0].metric, names[i]);
        sn_diag_free(&errs);
    }
}
END_TEST

START_TEST(series_hash_stable_and_distinct)
{
    const char *text =
        /* 1, 2: same labels in another order -> same series */
        "{\"ts\":1,\"metric\":\"lat\",\"value\":1,\"labels\":{\"a\":\"1\",\"b\":\"2\",\"c\":"
        "\"3\"}}\n"
        "{\"labels\":{\"c\":\"3\",\"a\":\"1\",\"b\":\"2\"},\"value\":2,\"metric\":\"lat\","
        "\"ts\":2}\n"
        /* 3: another label value */
        "{\"ts\":3,\"metric\":\"lat\",\"value\":1,\"labels\":{\"a\":\"1\",\"b\":\"2\",\"c\":"
        "\"4\"}}\n"
        /* 4: another metric, same labels */
        "{\"ts\":4,\"metric\":\"err\",\"value\":1,\"labels\":{\"a\":\"1\",\"b\":\"2\",\"c\":"
        "\"3\"}}\n"
        /* 5: one label fewer */
        "{\"ts\":5,\"metric\":\"lat\",\"value\":1,\"labels\":{\"a\":\"1\",\"b\":\"2\"}}\n"
        /* 6, 7: the boundary between name and value moves */
        "{\"ts\":6,\"metric\":\"lat\",\"value\":1,\"labels\":{\"a\":\"bc\"}}\n"
        "{\"ts\":7,\"metric\":\"lat\",\"value\":1,\"labels\":{\"ab\":\"c\"}}\n"
        /* 8: no labels; 9: the same with an empty labels object */
        "{\"ts\":8,\"metric\":\"lat\",\"value\":1}\n"
        "{\"ts\":9,\"metric\":\"lat\",\"value\":1,\"labels\":{}}\n"
        /* 10: a label name swapped with its value */
        "{\"ts\":10,\"metric\":\"lat\",\"value\":1,\"labels\":{\"x\":\"y\"}}\n"
        "{\"ts\":11,\"metric\":\"lat\",\"value\":1,\"labels\":{\"y\":\"x\"}}\n";
    got_t g;
    sn_ingest_stats_t st;
    sn_diag_t errs;
    parse(text, &g, &st, &errs);
    ck_assert_uint_eq(st.accepted, 11);
    ck_assert_uint_eq(g.r[0].series, g.r[1].series);
    ck_assert_uint_ne(g.r[0].series, g.r[2].series);
    ck_assert_uint_ne(g.r[0].series, g.r[3].series);
    ck_assert_uint_ne(g.r[0].series, g.r[4].series);
    ck_assert_uint_ne(g.r[5].series, g.r[6].series);
    ck_assert_uint_eq(g.r[7].series, g.r[8].series);
    ck_assert_uint_ne(g.r[7].series, g.r[5].series);
    ck_assert_uint_ne(g.r[9].series, g.r[10].series);
    /* The hash is the one the core computes for metric + sorted labels. */
    sn_label_t l[3] = {{"a", "1"}, {"b", "2"}, {"c", "3"}};
    ck_assert_uint_eq(g.r[0].series, sn_series_hash("lat", l, 3));
    /* Logs and changes are not series. */
    parse("{\"ts\":1,\"log\":\"x\",\"labels\":{\"a\":\"1\"}}\n"
          "{\"ts\":1,\"change\":\"deploy\",\"labels\":{\"a\":\"1\"}}\n",
          &g, &st, &errs);
    ck_assert_uint_eq(st.accepted, 2);
    ck_assert_uint_eq(g.r[0].series, 0);
    ck_assert_uint_eq(g.r[1].series, 0);
    sn_diag_free(&errs);
}
END_TEST

/* ---- bad lines, one reason each ----------------------------------------------------------- */

START_TEST(bad_json)
{
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":", SN_IR_JSON, "not JSON");
    expect_bad("not json at all", SN_IR_JSON, "not JSON");
    expect_bad("[1,2,3]", SN_IR_JSON, "not a JSON object");
    expect_bad("\"just a string\"", SN_IR_JSON, NULL);
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":1}{\"ts\":2}", SN_IR_JSON, "not JSON");
    /* Duplicate keys are refused rather than silently taking one of them. */
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":1,\"value\":2}", SN_IR_JSON, "not JSON");
    /* NaN is not JSON. */
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":NaN}", SN_IR_JSON, "not JSON");
}
END_TEST

START_TEST(bad_utf8)
{
    /* A stray continuation byte, a truncated sequence, an overlong '/', a UTF-16 surrogate,
     * a code point beyond U+10FFFF and a 0xff byte: each anywhere in the line. */
    const char *lines[] = {
        "{\"ts\":1,\"log\":\"a\x80z\"}",
        "{\"ts\":1,\"log\":\"a\xc3\"}",
        "{\"ts\":1,\"log\":\"\xc0\xaf\"}",
        "{\"ts\":1,\"log\":\"\xed\xa0\x80\"}",
        "{\"ts\":1,\"log\":\"\xf4\x90\x80\x80\"}",
        "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"a\":\"\xff\"}}",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        expect_bad(lines[i], SN_IR_UTF8, "invalid UTF-8");
    /* Valid multi-byte text passes: 2, 3 and 4 byte sequences. */
    got_t g;
    sn_ingest_stats_t st;
    sn_diag_t errs;
    parse("{\"ts\":1,\"log\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}", &g, &st, &errs);
    ck_assert_uint_eq(st.accepted, 1);
    ck_assert_str_eq(g.r[0].text, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    sn_diag_free(&errs);
}
END_TEST

START_TEST(bad_types)
{
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"log\":\"x\",\"value\":1}", SN_IR_TYPE,
               "exactly one of 'metric', 'log', 'change', 'alert'");
    expect_bad("{\"ts\":1,\"log\":\"x\",\"change\":\"deploy\"}", SN_IR_TYPE, "exactly one");
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":\"12\"}", SN_IR_TYPE,
               "field 'value': not a number");
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":true}", SN_IR_TYPE, "field 'value'");
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":null}", SN_IR_TYPE, "field 'value'");
    expect_bad("{\"ts\":1,\"log\":42}", SN_IR_TYPE, "field 'log': not a string");
    expect_bad("{\"ts\":1,\"log\":\"x\",\"level\":3}", SN_IR_TYPE, "field 'level': not a string");
    expect_bad("{\"ts\":1,\"change\":\"\"}", SN_IR_TYPE, "field 'change'");
    expect_bad("{\"ts\":1,\"change\":{\"kind\":\"deploy\"}}", SN_IR_TYPE, "field 'change'");
}
END_TEST

START_TEST(bad_missing)
{
    expect_bad("{\"metric\":\"m\",\"value\":1}", SN_IR_MISSING, "field 'ts': missing");
    expect_bad("{\"log\":\"x\"}", SN_IR_MISSING, "field 'ts': missing");
    expect_bad("{\"ts\":1,\"metric\":\"m\"}", SN_IR_MISSING, "field 'value': missing");
    expect_bad("{\"ts\":1,\"value\":1}", SN_IR_MISSING,
               "field 'metric', 'log', 'change' or 'alert': missing");
    expect_bad("{}", SN_IR_MISSING, "missing");
}
END_TEST

START_TEST(bad_nonfinite)
{
    /* JSON has no NaN or Inf; a number that overflows a double is the way to send one. */
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":1e999}", SN_IR_NONFINITE,
               "field 'value': not a finite number");
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":-1e400}", SN_IR_NONFINITE,
               "field 'value': not a finite number");
    /* The largest finite double is fine. */
    got_t g;
    sn_ingest_stats_t st;
    sn_diag_t errs;
    parse("{\"ts\":1,\"metric\":\"m\",\"value\":1.7976931348623157e308}", &g, &st, &errs);
    ck_assert_uint_eq(st.accepted, 1);
    sn_diag_free(&errs);
}
END_TEST

START_TEST(bad_timestamps)
{
    const char *lines[] = {
        "{\"ts\":-1,\"metric\":\"m\",\"value\":1}",
        "{\"ts\":-0.5e3,\"metric\":\"m\",\"value\":1}",
        "{\"ts\":1e300,\"metric\":\"m\",\"value\":1}",
        "{\"ts\":\"yesterday\",\"metric\":\"m\",\"value\":1}",
        "{\"ts\":\"\",\"log\":\"x\"}",
        "{\"ts\":\"-5\",\"log\":\"x\"}",
        "{\"ts\":\"2026-13-01T00:00:00Z\",\"log\":\"x\"}",
        "{\"ts\":\"2026-11-25T10:00:00\",\"log\":\"x\"}",
        "{\"ts\":\"2026-11-25T10:00:00Zjunk\",\"change\":\"deploy\"}",
        "{\"ts\":\"2026-11-25T25:00:00Z\",\"change\":\"deploy\"}",
        "{\"ts\":true,\"change\":\"deploy\"}",
        "{\"ts\":null,\"change\":\"deploy\"}",
        "{\"ts\":[1],\"change\":\"deploy\"}",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        expect_bad(lines[i], SN_IR_TIME, "field 'ts'");
}
END_TEST

START_TEST(bad_metric_names)
{
    char toolong[260];
    memset(toolong, 'm', 201);
    toolong[201] = '\0';
    char line[400];
    const char *names[] = {"",     "9lives", "has space", "dash-ed", ".dot", "\xc3\xa9t\xc3\xa9",
                           toolong};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(line, sizeof(line), "{\"ts\":1,\"metric\":\"%s\",\"value\":1}", names[i]);
        expect_bad(line, SN_IR_NAME, "field 'metric': not a metric name");
    }
    expect_bad("{\"ts\":1,\"metric\":7,\"value\":1}", SN_IR_NAME, "field 'metric'");
}
END_TEST

START_TEST(bad_labels)
{
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":[\"a\"]}", SN_IR_LABELS,
               "field 'labels': not an object");
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"1a\":\"x\"}}", SN_IR_LABELS,
               "field 'labels.1a': bad label name");
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"a-b\":\"x\"}}", SN_IR_LABELS,
               "field 'labels.a-b': bad label name");
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"\":\"x\"}}", SN_IR_LABELS,
               "bad label name");
    expect_bad("{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"a\":5}}", SN_IR_LABELS,
               "field 'labels.a': value must be a string");
    expect_bad("{\"ts\":1,\"log\":\"x\",\"labels\":{\"a\":null}}", SN_IR_LABELS,
               "value must be a string");

    /* Too many labels: the default limit is 32. */
    char line[2048];
    size_t off = (size_t)snprintf(line, sizeof(line),
                                  "{\"ts\":1,\"metric\":\"m\",\"value\":1,"
                                  "\"labels\":{");
    for (int i = 0; i < 33; i++)
        off += (size_t)snprintf(line + off, sizeof(line) - off, "%s\"l%d\":\"v\"", i ? "," : "", i);
    snprintf(line + off, sizeof(line) - off, "}}");
    expect_bad(line, SN_IR_LABELS, "field 'labels': more than 32 labels");

    /* Too long a value: the default limit is 256 bytes. */
    char val[300];
    memset(val, 'v', 257);
    val[257] = '\0';
    snprintf(line, sizeof(line),
             "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"a\":\"%s\"}}", val);
    expect_bad(line, SN_IR_LABELS, "field 'labels.a': value too long");

    /* Exactly at both limits is fine. */
    val[256] = '\0';
    off = (size_t)snprintf(line, sizeof(line),
                           "{\"ts\":1,\"metric\":\"m\",\"value\":1,"
                           "\"labels\":{\"a\":\"%s\"",
                           val);
    for (int i = 1; i < 32; i++)
        off += (size_t)snprintf(line + off, sizeof(line) - off, ",\"l%d\":\"v\"", i);
    snprintf(line + off, sizeof(line) - off, "}}");
    got_t g;
    sn_ingest_stats_t st;
    sn_diag_t errs;
    parse(line, &g, &st, &errs);
    ck_assert_uint_eq(st.accepted, 1);
    ck_assert_uint_eq(g.r[0].nlabels, 32);
    ck_assert_str_eq(g.r[0].values[0], val);
    sn_diag_free(&errs);
}
END_TEST

START_TEST(limits_are_honoured)
{
    sn_ingest_limits_t lim = {.max_line = 60, .max_labels = 2, .max_label_len = 4};
    /* 1: exactly 60 bytes -> ok; 2: 61 bytes -> too long; 3: 3 labels; 4: a 5-byte value;
     * 5: 2 labels of 4 bytes -> ok. */
    char l1[128], l2[128];
    const char *head = "{\"ts\":1,\"log\":\"";
    size_t pad = 60 - strlen(head) - 2;
    snprintf(l1, sizeof(l1), "%s%*s\"}", head, (int)pad, "x");
    snprintf(l2, sizeof(l2), "%s%*s\"}", head, (int)pad + 1, "x");
    ck_assert_uint_eq(strlen(l1), 60);
    ck_assert_uint_eq(strlen(l2), 61);
    char text[1024];
    snprintf(text, sizeof(text),
             "%s\r\n%s\n"
             "{\"ts\":1,\"log\":\"x\",\"labels\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"}}\n"
             "{\"ts\":1,\"log\":\"x\",\"labels\":{\"a\":\"12345\"}}\n"
             "{\"ts\":1,\"log\":\"y\",\"labels\":{\"a\":\"1234\",\"b\":\"5\"}}\n",
             l1, l2);
    got_t g = {0};
    sn_ingest_stats_t st = {0};
    sn_diag_t errs;
    sn_diag_init(&errs);
    sn_ingest_parse(text, strlen(text), "lim", &lim, collect, &g, &st, &errs, 10);
    /* The CR of line 1 does not count towards its length. */
    ck_assert_uint_eq(st.accepted, 2);
    ck_assert_uint_eq(st.rejected, 3);
    ck_assert_uint_eq(st.by_reason[SN_IR_TOO_LONG], 1);
    ck_assert_uint_eq(st.by_reason[SN_IR_LABELS], 2);
    ck_assert_uint_eq(g.r[0].line, 1);
    ck_assert_uint_eq(g.r[1].line, 5);
    ck_assert_uint_eq(errs.n, 3);
    ck_assert_str_eq(errs.msgs[0], "lim: line 2: line longer than 60 bytes");
    ck_assert_str_eq(errs.msgs[1], "lim: line 3: field 'labels': more than 2 labels");
    ck_assert_str_eq(errs.msgs[2], "lim: line 4: field 'labels.a': value too long");
    sn_diag_free(&errs);
}
END_TEST

START_TEST(over_long_line_default_limit)
{
    /* Default max_line is 64 KiB; the over-long line is refused whole, the next one is taken. */
    size_t big = 70000;
    char *text = malloc(big + 200);
    ck_assert_ptr_nonnull(text);
    size_t off = (size_t)sprintf(text, "{\"ts\":1,\"log\":\"");
    memset(text + off, 'x', big);
    off += big;
    off += (size_t)sprintf(text + off, "\"}\n{\"ts\":2,\"log\":\"short\"}\n");
    got_t g = {0};
    sn_ingest_stats_t st = {0};
    sn_diag_t errs;
    sn_diag_init(&errs);
    sn_ingest_parse(text, off, "big", NULL, collect, &g, &st, &errs, 5);
    ck_assert_uint_eq(st.rejected, 1);
    ck_assert_uint_eq(st.by_reason[SN_IR_TOO_LONG], 1);
    ck_assert_uint_eq(st.accepted, 1);
    ck_assert_str_eq(g.r[0].text, "short");
    ck_assert_uint_eq(g.r[0].line, 2);
    ck_assert_uint_eq(errs.n, 1);
    ck_assert_str_eq(errs.msgs[0], "big: line 1: line longer than 65536 bytes");
    sn_diag_free(&errs);
    free(text);
}
END_TEST

/* ---- streams of lines --------------------------------------------------------------------- */

START_TEST(good_lines_around_bad_ones_all_delivered)
{
    const char *text = "{\"ts\":1,\"metric\":\"m\",\"value\":1}\n"  /* 1 ok */
                       "{\"ts\":1,\"metric\":\"m\",\"value\":}\n"   /* 2 json */
                       "{\"ts\":2,\"log\":\"a\"}\n"                 /* 3 ok */
                       "{\"ts\":\"x\",\"log\":\"a\"}\n"             /* 4 time */
                       "{\"ts\":\"x\",\"log\":\"a\"}\n"             /* 5 time */
                       "{\"ts\":3,\"change\":\"deploy\"}\n"         /* 6 ok */
                       "\n"                                         /* 7 blank */
                       "   \t  \n"                                  /* 8 blank */
                       "{\"ts\":4,\"metric\":\"9m\",\"value\":1}\n" /* 9 name */
                       "{\"ts\":5,\"metric\":\"m\",\"value\":5}\n"  /* 10 ok */
                       "{\"ts\":6,\"log\":\"\xff\"}\n"              /* 11 utf8 */
                       "  {\"ts\":7,\"log\":\"indented\"}\n";       /* 12 ok */
    got_t g;
    sn_ingest_stats_t st;
    sn_diag_t errs;
    parse(text, &g, &st, &errs);
    ck_assert_uint_eq(st.accepted, 5);
    ck_assert_uint_eq(st.rejected, 5);
    ck_assert_uint_eq(st.by_reason[SN_IR_JSON], 1);
    ck_assert_uint_eq(st.by_reason[SN_IR_TIME], 2);
    ck_assert_uint_eq(st.by_reason[SN_IR_NAME], 1);
    ck_assert_uint_eq(st.by_reason[SN_IR_UTF8], 1);
    /* Order kept, nothing lost; line numbers count blank lines too. */
    const size_t want_lines[] = {1, 3, 6, 10, 12};
    const int64_t want_ts[] = {1, 2, 3, 5, 7};
    ck_assert_uint_eq(g.n, 5);
    for (size_t i = 0; i < 5; i++) {
        ck_assert_uint_eq(g.r[i].line, want_lines[i]);
        ck_assert_int_eq(g.r[i].ts_ms, want_ts[i]);
    }
    ck_assert_double_eq(g.r[3].value, 5);
    ck_assert_str_eq(g.r[4].text, "indented");
    ck_assert_uint_eq(errs.n, 5);
    ck_assert(strncmp(errs.msgs[0], "test.jsonl: line 2: not JSON", 28) == 0);
    ck_assert_str_eq(errs.msgs[1],
                     "test.jsonl: line 4: field 'ts': not RFC3339 or epoch milliseconds");
    ck_assert_str_eq(errs.msgs[2],
                     "test.jsonl: line 5: field 'ts': not RFC3339 or epoch milliseconds");
    ck_assert_str_eq(errs.msgs[3], "test.jsonl: line 9: field 'metric': not a metric name");
    ck_assert_str_eq(errs.msgs[4], "test.jsonl: line 11: invalid UTF-8");
    sn_diag_free(&errs);
}
END_TEST

START_TEST(max_errors_bounds_descriptions_not_counts)
{
    char text[4096];
    size_t off = 0;
    for (int i = 0; i < 10; i++)
        off += (size_t)snprintf(text + off, sizeof(text) - off,
                                "{\"ts\":%d,\"log\":\"ok\"}\n{\"ts\":%d}\n", i, i);
    got_t g = {0};
    sn_ingest_stats_t st = {0};
    sn_diag_t errs;
    sn_diag_init(&errs);
    sn_ingest_parse(text, off, "bulk", NULL, collect, &g, &st, &errs, 3);
    ck_assert_uint_eq(st.accepted, 10);
    ck_assert_uint_eq(st.rejected, 10);
    ck_assert_uint_eq(st.by_reason[SN_IR_MISSING], 10);
    ck_assert_uint_eq(errs.n, 3);
    ck_assert_str_eq(errs.msgs[0],
                     "bulk: line 2: field 'metric', 'log', 'change' or 'alert': missing");
    ck_assert_str_eq(errs.msgs[2],
                     "bulk: line 6: field 'metric', 'log', 'change' or 'alert': missing");
    sn_diag_free(&errs);

    /* max_errors = 0 describes nothing; NULL errs is allowed; the count stays right. */
    memset(&g, 0, sizeof(g));
    memset(&st, 0, sizeof(st));
    sn_diag_init(&errs);
    sn_ingest_parse(text, off, "bulk", NULL, collect, &g, &st, &errs, 0);
    ck_assert_uint_eq(st.rejected, 10);
    ck_assert_uint_eq(errs.n, 0);
    memset(&g, 0, sizeof(g));
    memset(&st, 0, sizeof(st));
    sn_ingest_parse(text, off, "bulk", NULL, collect, &g, &st, NULL, 5);
    ck_assert_uint_eq(st.rejected, 10);
    ck_assert_uint_eq(st.accepted, 10);

    /* Descriptions are capped at 20 whatever the caller asks for. */
    char *many = malloc(64 * 30);
    ck_assert_ptr_nonnull(many);
    off = 0;
    for (int i = 0; i < 30; i++)
        off += (size_t)sprintf(many + off, "bad %d\n", i);
    memset(&st, 0, sizeof(st));
    sn_diag_init(&errs);
    sn_ingest_parse(many, off, NULL, NULL, collect, &g, &st, &errs, 1000);
    ck_assert_uint_eq(st.rejected, 30);
    ck_assert_uint_eq(st.by_reason[SN_IR_JSON], 30);
    ck_assert_uint_eq(errs.n, 20);
    /* Without an origin the messages say "input". */
    ck_assert(strncmp(errs.msgs[0], "input: line 1: ", 15) == 0);
    sn_diag_free(&errs);
    free(many);
}
END_TEST

START_TEST(crlf_and_last_line_without_newline)
{
    const char *text = "{\"ts\":1,\"log\":\"a\"}\r\n"
                       "{\"ts\":2,\"log\":\"b\"}\r\n"
                       "\r\n"
                       "{\"ts\":3,\"log\":\"c\"}";
    got_t g;
    sn_ingest_stats_t st;
    sn_diag_t errs;
    parse(text, &g, &st, &errs);
    ck_assert_uint_eq(st.accepted, 3);
    ck_assert_uint_eq(st.rejected, 0);
    ck_assert_str_eq(g.r[0].text, "a");
    ck_assert_str_eq(g.r[1].text, "b");
    ck_assert_str_eq(g.r[2].text, "c");
    ck_assert_uint_eq(g.r[2].line, 4);
    sn_diag_free(&errs);

    /* A last line cut in the middle is one bad line, not a lost good one. */
    parse("{\"ts\":1,\"log\":\"a\"}\n{\"ts\":2,\"lo", &g, &st, &errs);
    ck_assert_uint_eq(st.accepted, 1);
    ck_assert_uint_eq(st.rejected, 1);
    ck_assert_uint_eq(st.by_reason[SN_IR_JSON], 1);
    ck_assert(strncmp(errs.msgs[0], "test.jsonl: line 2: not JSON", 28) == 0);
    sn_diag_free(&errs);

    /* Only the buffer's length counts: bytes past len are never read. */
    const char *two = "{\"ts\":1,\"log\":\"a\"}\n{\"ts\":2,\"log\":\"b\"}\n";
    memset(&g, 0, sizeof(g));
    memset(&st, 0, sizeof(st));
    sn_ingest_parse(two, strlen("{\"ts\":1,\"log\":\"a\"}\n"), "x", NULL, collect, &g, &st, NULL,
                    0);
    ck_assert_uint_eq(st.accepted, 1);
    ck_assert_uint_eq(st.rejected, 0);
}
END_TEST

START_TEST(empty_body)
{
    got_t g = {0};
    sn_ingest_stats_t st = {0};
    sn_diag_t errs;
    sn_diag_init(&errs);
    ck_assert_int_eq(sn_ingest_parse("", 0, "empty", NULL, collect, &g, &st, &errs, 20), 0);
    ck_assert_uint_eq(st.accepted, 0);
    ck_assert_uint_eq(st.rejected, 0);
    ck_assert_uint_eq(g.n, 0);
    ck_assert_uint_eq(errs.n, 0);
    /* Only blank lines: nothing counted either way. */
    parse("\n\r\n  \n\t\n", &g, &st, &errs);
    ck_assert_uint_eq(st.accepted, 0);
    ck_assert_uint_eq(st.rejected, 0);
    ck_assert_uint_eq(errs.n, 0);
    sn_diag_free(&errs);
}
END_TEST

START_TEST(reason_names)
{
    const char *want[SN_INGEST_REASONS] = {"json", "utf8", "type",   "missing", "nonfinite",
                                           "time", "name", "labels", "too_long"};
    for (int r = 0; r < SN_INGEST_REASONS; r++)
        ck_assert_str_eq(sn_ingest_reason_name(r), want[r]);
    ck_assert_str_eq(sn_ingest_reason_name(-1), "unknown");
    ck_assert_str_eq(sn_ingest_reason_name(SN_INGEST_REASONS), "unknown");
}
END_TEST

/* ---- the fast path against the jansson path ------------------------------------------------ */

/* Parse @p line both ways (fast path allowed, jansson only) and require the same outcome: the
 * same counts by reason and, for an accepted line, the same record, value bits included. */
static void same_both_ways(const char *line, size_t n, const sn_ingest_limits_t *base)
{
    static got_t fast, slow;
    sn_ingest_stats_t sf = {0}, ss = {0};
    sn_ingest_limits_t lf = base ? *base : (sn_ingest_limits_t){0};
    sn_ingest_limits_t ls = lf;
    lf.jansson_only = 0;
    ls.jansson_only = 1;
    memset(&fast, 0, sizeof(fast));
    memset(&slow, 0, sizeof(slow));
    sn_ingest_parse(line, n, "t", &lf, collect, &fast, &sf, NULL, 0);
    sn_ingest_parse(line, n, "t", &ls, collect, &slow, &ss, NULL, 0);
    ck_assert_msg(sf.accepted == ss.accepted && sf.rejected == ss.rejected &&
                      memcmp(sf.by_reason, ss.by_reason, sizeof(sf.by_reason)) == 0,
                  "outcome differs for [%.*s]: fast %zu/%zu, jansson %zu/%zu", (int)n, line,
                  sf.accepted, sf.rejected, ss.accepted, ss.rejected);
    ck_assert_uint_eq(fast.n, slow.n);
    for (size_t i = 0; i < fast.n; i++) {
        const got_rec_t *a = &fast.r[i], *b = &slow.r[i];
        ck_assert_msg(a->type == b->type && a->ts_ms == b->ts_ms &&
                          memcmp(&a->value, &b->value, sizeof(double)) == 0 &&
                          strcmp(a->metric, b->metric) == 0 && a->series == b->series &&
                          a->nlabels == b->nlabels && a->line == b->line,
                      "record differs for [%.*s]: ts %lld/%lld value %.17g/%.17g metric %s/%s",
                      (int)n, line, (long long)a->ts_ms, (long long)b->ts_ms, a->value, b->value,
                      a->metric, b->metric);
        for (size_t k = 0; k < a->nlabels && k < 8; k++) {
            ck_assert_str_eq(a->names[k], b->names[k]);
            ck_assert_str_eq(a->values[k], b->values[k]);
        }
    }
}

static const char *const edge_lines[] = {
    "{\"ts\":1795600800000,\"metric\":\"m\",\"value\":1}",
    "  { \"value\" : -0 , \"labels\" : { } , \"metric\" : \"a:b.c_9\" , \"ts\" : 0 }  ",
    "{\"metric\":\"m\",\"ts\":1795600800000,\"value\":12.5,\"labels\":{\"z\":\"1\",\"a\":\"2\","
    "\"m\":\"\"}}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":0.1}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":3.14159265358979323846}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":123.456e-7}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1E22}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1e23}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1.7976931348623157e308}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":4.9e-324}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":2.5e-400}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1e400}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":-1e400}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":123456789012345678901234567890}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":0.000000000000000000000000001}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":999999999999999}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":9999999999999999}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":01}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1.}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":.5}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1e}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":+1}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":\"1\"}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":null}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":NaN}",
    "{\"ts\":-1,\"metric\":\"m\",\"value\":1}",
    "{\"ts\":9007199254740993,\"metric\":\"m\",\"value\":1}",
    "{\"ts\":99999999999999999999,\"metric\":\"m\",\"value\":1}",
    "{\"ts\":1.5e12,\"metric\":\"m\",\"value\":1}",
    "{\"ts\":\"2026-11-25T10:00:00.250Z\",\"metric\":\"m\",\"value\":1}",
    "{\"ts\":\"yesterday\",\"metric\":\"m\",\"value\":1}",
    "{\"metric\":\"m\",\"value\":1}",
    "{\"ts\":1,\"value\":1}",
    "{\"ts\":1,\"metric\":\"m\"}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"ts\":2}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"a\":\"1\",\"a\":\"2\"}}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"a\":1}}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"1a\":\"x\"}}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"a\":\"caf\\u00e9\"}}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"a\":\"caf\xc3\xa9\"}}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"a\":\"q\\\"uote\"}}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":[]}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"a\":\"x\",}}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1} x",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1}}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"extra\":true}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"log\":\"x\"}",
    "{\"ts\":1,\"metric\":\"9m\",\"value\":1}",
    "{\"ts\":1,\"metric\":\"\",\"value\":1}",
    "{\"ts\":1,\"metric\":\"m-x\",\"value\":1}",
    "{\"ts\":1,\"metric\":7,\"value\":1}",
    "{\"ts\":1,\"log\":\"disk full\",\"level\":\"error\"}",
    "{\"ts\":1,\"change\":\"deploy\",\"labels\":{\"service\":\"api\"}}",
    "[1,2,3]",
    "{",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"a\":\"12345\"}}",
    "{\"ts\":1,\"metric\":\"m\",\"value\":1,\"labels\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"}}",
};

START_TEST(fast_path_agrees_on_edge_lines)
{
    sn_ingest_limits_t tight = {.max_line = 4096, .max_labels = 2, .max_label_len = 4};
    for (size_t i = 0; i < sizeof(edge_lines) / sizeof(*edge_lines); i++) {
        same_both_ways(edge_lines[i], strlen(edge_lines[i]), NULL);
        same_both_ways(edge_lines[i], strlen(edge_lines[i]), &tight);
    }
}
END_TEST

/* Random edits of valid lines: whatever the fast path accepts, jansson accepts identically. */
START_TEST(fast_path_agrees_on_mutated_lines)
{
    static const char alphabet[] = "{}[]:,\"\\ -+.eE0123456789abcmtsvlu\t\x01\xc3\xa9";
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    size_t fast_accepted = 0;
    for (int iter = 0; iter < 40000; iter++) {
        const char *base = edge_lines[iter % 3];
        char line[512];
        size_t n = strlen(base);
        memcpy(line, base, n);
        int edits = 1 + (int)(iter % 3);
        for (int e = 0; e < edits; e++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t at = (size_t)(seed >> 33) % n;
            char ch = alphabet[(seed >> 20) % (sizeof(alphabet) - 1)];
            switch ((seed >> 12) % 3) {
            case 0: /* replace */
                line[at] = ch;
                break;
            case 1: /* insert */
                if (n + 1 < sizeof(line)) {
                    memmove(line + at + 1, line + at, n - at);
                    line[at] = ch;
                    n++;
                }
                break;
            default: /* delete */
                if (n > 1) {
                    memmove(line + at, line + at + 1, n - at - 1);
                    n--;
                }
            }
        }
        same_both_ways(line, n, NULL);
        sn_record_t rec;
        sn_label_t labels[64];
        sn_ingest_limits_t lim = {65536, 32, 256, 0};
        char copy[512];
        memcpy(copy, line, n);
        fast_accepted += (size_t)sn_ingest_fast_point(copy, n, &lim, &rec, labels);
    }
    /* The edits leave many lines valid: the comparison covered the fast path, not only
     * declines. */
    ck_assert_uint_gt(fast_accepted, 1000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ingest");
    TCase *tc = tcase_create("records");
    tcase_add_test(tc, point_log_change_parsed);
    tcase_add_test(tc, integer_beyond_int64_is_a_number);
    tcase_add_test(tc, metric_names_accepted);
    tcase_add_test(tc, series_hash_stable_and_distinct);
    suite_add_tcase(s, tc);
    tc = tcase_create("bad_lines");
    tcase_add_test(tc, bad_json);
    tcase_add_test(tc, bad_utf8);
    tcase_add_test(tc, bad_types);
    tcase_add_test(tc, bad_missing);
    tcase_add_test(tc, bad_nonfinite);
    tcase_add_test(tc, bad_timestamps);
    tcase_add_test(tc, bad_metric_names);
    tcase_add_test(tc, bad_labels);
    tcase_add_test(tc, limits_are_honoured);
    tcase_add_test(tc, over_long_line_default_limit);
    tcase_add_test(tc, reason_names);
    suite_add_tcase(s, tc);
    tc = tcase_create("streams");
    tcase_add_test(tc, good_lines_around_bad_ones_all_delivered);
    tcase_add_test(tc, max_errors_bounds_descriptions_not_counts);
    tcase_add_test(tc, crlf_and_last_line_without_newline);
    tcase_add_test(tc, empty_body);
    suite_add_tcase(s, tc);
    tc = tcase_create("fast_path");
    tcase_add_test(tc, fast_path_agrees_on_edge_lines);
    tcase_add_test(tc, fast_path_agrees_on_mutated_lines);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
