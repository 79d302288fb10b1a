/**
 * @file blocks.c
 * Block Kit rendering for the `slack` notifier.
 *
 * A top-level message (the incident's first, or any message sent through an incoming webhook)
 * carries: a header (event emoji + title), a section with the event and fields severity,
 * priority, state, confidence and services, the top three root-cause hypotheses with their
 * confidence, the plan with risk, estimated downtime and blast radius per action, the
 * Approve/Reject buttons for approval_needed and a context line with the incident id and a link
 * to the console. A reply in the incident's thread is shorter: the event, the plan where it
 * matters (approval_needed, executing, rolled_back), the last timeline detail, the buttons and
 * the context line.
 *
 * Every text taken from the incident is escaped for mrkdwn (&, <, >) and cut to Slack's limits
 * (header 150, section text 3000, field 2000 characters) without splitting a UTF-8 sequence.
 */
#include "slack.h"
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLK_HEADER_MAX 150
#define SLK_SECTION_MAX 3000
#define SLK_FIELD_MAX 2000
#define SLK_PLAN_SHOWN 10 /* actions listed; the rest are counted */
#define SLK_BLOCKS_MAX 50

/* ---- text ---------------------------------------------------------------------------------- */

static void bprintf(snp_buf_t *b, const char *fmt, ...) SN_PRINTF(2, 3);
static void bprintf(snp_buf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        snp_buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* mrkdwn: &, < and > must be escaped; a backtick would end a code span, so it becomes '. */
static void besc(snp_buf_t *b, const char *s, int code)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            snp_buf_puts(b, "&amp;");
            break;
        case '<':
            snp_buf_puts(b, "&lt;");
            break;
        case '>':
            snp_buf_puts(b, "&gt;");
            break;
        case '`':
            snp_buf_add(b, code ? "'" : "`", 1);
            break;
        case '\n':
        case '\r':
            snp_buf_add(b, code ? " " : s, 1);
            break;
        default:
            snp_buf_add(b, s, 1);
        }
    }
}

void slk_copy_utf8(char *dst, size_t cap, const char *src)
{
    if (!cap)
        return;
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

/* A JSON string of at most @p max bytes of @p s (cut with an ellipsis on a UTF-8 boundary). */
static json_t *jtext(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n <= max)
        return json_string(s ? s : "");
    char *cut = malloc(max + 1);
    if (!cut)
        return NULL;
    slk_copy_utf8(cut, max - 2, s); /* room for the 3-byte ellipsis */
    strcat(cut, "\xe2\x80\xa6");
    json_t *j = json_string(cut);
    free(cut);
    return j;
}

static const char *str(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v && *v ? v : NULL;
}

/* ---- blocks -------------------------------------------------------------------------------- */

static json_t *mrkdwn(const char *text, size_t max)
{
    return json_pack("{s:s,s:o}", "type", "mrkdwn", "text", jtext(text, max));
}

static json_t *plain(const char *text, size_t max)
{
    return json_pack("{s:s,s:o,s:b}", "type", "plain_text", "text", jtext(text, max), "emoji", 1);
}

static void add(json_t *blocks, json_t *b)
{
    if (b && json_array_size(blocks) < SLK_BLOCKS_MAX)
        json_array_append_new(blocks, b);
    else
        json_decref(b);
}

static void add_section(json_t *blocks, snp_buf_t *b)
{
    if (b->oom || !b->n)
        return;
    add(blocks, json_pack("{s:s,s:o}", "type", "section", "text", mrkdwn(b->p, SLK_SECTION_MAX)));
}

typedef struct slk_event_info {
    const char *event, *emoji, *phrase;
} slk_event_info_t;

static const slk_event_info_t slk_events[] = {
    {"opened", ":rotating_light:", "Incident opened"},
    {"approval_needed", ":raised_hand:", "Approval needed"},
    {"executing", ":gear:", "Executing the plan"},
    {"verified", ":white_check_mark:", "Remediation verified"},
    {"resolved", ":white_check_mark:", "Resolved: remediation verified"},
    {"rolled_back", ":leftwards_arrow_with_hook:", "Rolled back"},
    {"escalated", ":mega:", "Escalated to humans"},
    {"rejected", ":no_entry:", "Plan rejected"},
    {"closed", ":lock:", "Closed"},
    {NULL, ":information_source:", NULL},
};

static const slk_event_info_t *event_info(const char *event)
{
    const slk_event_info_t *e = slk_events;
    for (; e->event; e++)
        if (event && strcmp(e->event, event) == 0)
            break;
    return e;
}

static double conf_of(const json_t *h)
{
    return json_number_value(json_object_get(h, "confidence"));
}

json_t *slk_top_hypotheses(const json_t *hyps)
{
    const json_t *top[3];
    size_t k = 0;
    for (size_t i = 0; i < json_array_size(hyps); i++) {
        const json_t *h = json_array_get(hyps, i);
        size_t pos = k;
        while (pos > 0 && conf_of(top[pos - 1]) < conf_of(h))
            pos--;
        if (pos >= 3)
            continue;
        if (k < 3)
            k++;
        memmove(&top[pos + 1], &top[pos], (k - 1 - pos) * sizeof(top[0]));
        top[pos] = h;
    }
    json_t *out = json_array();
    for (size_t i = 0; out && i < k; i++)
        json_array_append_new(out, json_deep_copy(top[i]));
    return out;
}

static void percent(snp_buf_t *b, const json_t *v)
{
    if (json_is_number(v))
        bprintf(b, "%.0f%%", json_number_value(v) * 100.0);
    else
        snp_buf_puts(b, "n/a");
}

static json_t *field(const char *name, const char *value)
{
    snp_buf_t b = {0};
    bprintf(&b, "*%s*\n", name);
    besc(&b, value ? value : "n/a", 0);
    json_t *f = b.oom ? NULL : mrkdwn(b.p, SLK_FIELD_MAX);
    free(b.p);
    return f;
}

static void add_summary(json_t *blocks, const json_t *inc, const slk_event_info_t *ei,
                        const char *event)
{
    snp_buf_t b = {0};
    bprintf(&b, "%s *", ei->emoji);
    besc(&b, ei->phrase ? ei->phrase : event, 0);
    snp_buf_puts(&b, "*");
    json_t *fields = json_array();
    json_array_append_new(fields, field("Severity", str(inc, "severity")));
    json_array_append_new(fields, field("Priority", str(inc, "priority")));
    json_array_append_new(fields, field("State", str(inc, "state")));
    snp_buf_t c = {0};
    percent(&c, json_object_get(inc, "confidence"));
    json_array_append_new(fields, field("Confidence", c.p));
    free(c.p);
    snp_buf_t sv = {0};
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(inc, "services"), i, v)
    {
        if (!json_is_string(v))
            continue;
        if (sv.n)
            snp_buf_puts(&sv, ", ");
        snp_buf_add(&sv, json_string_value(v), json_string_length(v));
    }
    json_array_append_new(fields, field("Services", sv.n ? sv.p : NULL));
    free(sv.p);
    if (!b.oom)
        add(blocks, json_pack("{s:s,s:o,s:o}", "type", "section", "text",
                              mrkdwn(b.p, SLK_SECTION_MAX), "fields", fields));
    else
        json_decref(fields);
    free(b.p);
}

static void add_hypotheses(json_t *blocks, const json_t *inc)
{
    json_t *top = slk_top_hypotheses(json_object_get(inc, "hypotheses"));
    if (json_array_size(top) == 0) {
        json_decref(top);
        return;
    }
    snp_buf_t b = {0};
    snp_buf_puts(&b, "*Root-cause hypotheses*");
    size_t i;
    json_t *h;
    json_array_foreach(top, i, h)
    {
        bprintf(&b, "\n%zu. ", i + 1);
        besc(&b, str(h, "cause") ? str(h, "cause") : "unknown cause", 0);
        if (str(h, "service")) {
            snp_buf_puts(&b, " on `");
            besc(&b, str(h, "service"), 1);
            snp_buf_puts(&b, "`");
        }
        snp_buf_puts(&b, " \xe2\x80\x94 confidence ");
        percent(&b, json_object_get(h, "confidence"));
    }
    add_section(blocks, &b);
    free(b.p);
    json_decref(top);
}

static void add_plan(json_t *blocks, const json_t *inc)
{
    const json_t *plan = json_object_get(inc, "plan");
    size_t n = json_array_size(plan);
    if (n == 0)
        return;
    snp_buf_t b = {0};
    snp_buf_puts(&b, "*Plan*");
    for (size_t i = 0; i < n && i < SLK_PLAN_SHOWN; i++) {
        const json_t *a = json_array_get(plan, i);
        bprintf(&b, "\n%zu. `", i + 1);
        besc(&b, str(a, "verb") ? str(a, "verb") : "?", 1);
        snp_buf_puts(&b, "` on `");
        besc(&b, str(a, "target") ? str(a, "target") : "?", 1);
        snp_buf_puts(&b, "`");
        if (str(a, "executor")) {
            snp_buf_puts(&b, " via ");
            besc(&b, str(a, "executor"), 0);
        }
        snp_buf_puts(&b, " \xe2\x80\x94 risk *");
        besc(&b, str(a, "risk") ? str(a, "risk") : "unknown", 0);
        snp_buf_puts(&b, "*, downtime ");
        const json_t *dt = json_object_get(a, "downtime_s");
        if (json_is_number(dt))
            bprintf(&b, "~%.0f s", json_number_value(dt));
        else
            snp_buf_puts(&b, "unknown");
        snp_buf_puts(&b, ", blast radius ");
        const json_t *br = json_object_get(a, "blast_radius");
        if (json_is_number(br))
            bprintf(&b, "%g", json_number_value(br));
        else if (json_is_string(br) && json_string_length(br)) {
            snp_buf_puts(&b, "`");
            besc(&b, json_string_value(br), 1);
            snp_buf_puts(&b, "`");
        } else
            snp_buf_puts(&b, "unknown");
        if (json_is_false(json_object_get(a, "allowed")) ||
            json_is_string(json_object_get(a, "denied_reason"))) {
            snp_buf_puts(&b, " _(not allowed: ");
            besc(&b, str(a, "denied_reason") ? str(a, "denied_reason") : "policy", 0);
            snp_buf_puts(&b, ")_");
        }
    }
    if (n > SLK_PLAN_SHOWN)
        bprintf(&b, "\n\xe2\x80\xa6 and %zu more", n - SLK_PLAN_SHOWN);
    add_section(blocks, &b);
    free(b.p);
}

static void add_last_step(json_t *blocks, const json_t *inc)
{
    const json_t *tl = json_object_get(inc, "timeline");
    size_t n = json_array_size(tl);
    const char *detail = n ? str(json_array_get(tl, n - 1), "detail") : NULL;
    if (!detail)
        return;
    snp_buf_t b = {0};
    snp_buf_puts(&b, "Last step: ");
    besc(&b, detail, 0);
    if (!b.oom)
        add(blocks,
            json_pack("{s:s,s:[o]}", "type", "context", "elements", mrkdwn(b.p, SLK_FIELD_MAX)));
    free(b.p);
}

static void add_buttons(json_t *blocks, const json_t *inc, const char *id)
{
    /* block_id changes with every approval round, as Slack asks for every new version. */
    char block_id[160];
    snprintf(block_id, sizeof(block_id), "sentinel-approval-%s-%zu", id,
             json_array_size(json_object_get(inc, "approvals")));
    json_t *confirm =
        json_pack("{s:o,s:o,s:o,s:o,s:s}", "title", plain("Reject the plan?", 100), "text",
                  plain("The incident is handed back to humans and nothing is executed.", 300),
                  "confirm", plain("Reject", 30), "deny", plain("Back", 30), "style", "danger");
    add(blocks,
        json_pack("{s:s,s:s,s:[{s:s,s:s,s:s,s:s,s:o},{s:s,s:s,s:s,s:s,s:o,s:o}]}", "type",
                  "actions", "block_id", block_id, "elements", "type", "button", "action_id",
                  "sentinel_approve", "style", "primary", "value", id, "text", plain("Approve", 75),
                  "type", "button", "action_id", "sentinel_reject", "style", "danger", "value", id,
                  "text", plain("Reject", 75), "confirm", confirm));
}

static void add_context(json_t *blocks, const slk_t *s, const char *id, int approval, int buttons)
{
    snp_buf_t b = {0};
    snp_buf_puts(&b, "Incident `");
    besc(&b, id, 1);
    snp_buf_puts(&b, "`");
    if (s->console[0]) {
        snp_buf_puts(&b, " \xc2\xb7 <");
        snp_buf_puts(&b, s->console);
        snp_buf_puts(&b, "/ui/#/incidents/");
        besc(&b, id, 1);
        snp_buf_puts(&b, "|Open in the console>");
    }
    if (approval && !buttons)
        snp_buf_puts(&b, " \xc2\xb7 approve or reject in the console or through the API");
    if (!b.oom)
        add(blocks,
            json_pack("{s:s,s:[o]}", "type", "context", "elements", mrkdwn(b.p, SLK_FIELD_MAX)));
    free(b.p);
}

json_t *slk_render(const slk_t *s, const json_t *inc, const char *event, int threaded)
{
    const slk_event_info_t *ei = event_info(event);
    const char *id = str(inc, "id") ? str(inc, "id") : "?";
    const char *title = str(inc, "title") ? str(inc, "title") : id;
    int approval = event && strcmp(event, "approval_needed") == 0;
    int buttons = approval && s->signing_secret != NULL;
    json_t *blocks = json_array();
    if (!blocks)
        return NULL;

    snp_buf_t t = {0}; /* the fallback / notification text */
    snp_buf_puts(&t, "[");
    besc(&t, str(inc, "priority") ? str(inc, "priority") : "-", 0);
    snp_buf_puts(&t, "/");
    besc(&t, str(inc, "severity") ? str(inc, "severity") : "-", 0);
    snp_buf_puts(&t, "] ");
    besc(&t, title, 0);
    snp_buf_puts(&t, " \xe2\x80\x94 ");
    besc(&t, ei->phrase ? ei->phrase : event, 0);

    if (!threaded) {
        snp_buf_t h = {0};
        bprintf(&h, "%s ", ei->emoji);
        snp_buf_add(&h, title, strlen(title));
        if (!h.oom)
            add(blocks,
                json_pack("{s:s,s:o}", "type", "header", "text", plain(h.p, SLK_HEADER_MAX)));
        free(h.p);
        add_summary(blocks, inc, ei, event);
        add_hypotheses(blocks, inc);
        add_plan(blocks, inc);
        if (!approval && event && strcmp(event, "opened") != 0)
            add_last_step(blocks, inc);
    } else {
        snp_buf_t b = {0};
        bprintf(&b, "%s *", ei->emoji);
        besc(&b, ei->phrase ? ei->phrase : event, 0);
        snp_buf_puts(&b, "*");
        if (approval) {
            snp_buf_puts(&b, " for *");
            besc(&b, title, 0);
            snp_buf_puts(&b, "*");
        }
        if (str(inc, "state")) {
            snp_buf_puts(&b, " \xc2\xb7 state `");
            besc(&b, str(inc, "state"), 1);
            snp_buf_puts(&b, "`");
        }
        add_section(blocks, &b);
        free(b.p);
        if (approval || strcmp(event ? event : "", "escalated") == 0)
            add_hypotheses(blocks, inc);
        if (approval || strcmp(event ? event : "", "executing") == 0 ||
            strcmp(event ? event : "", "rolled_back") == 0)
            add_plan(blocks, inc);
        if (!approval)
            add_last_step(blocks, inc);
    }
    if (buttons)
        add_buttons(blocks, inc, id);
    add_context(blocks, s, id, approval, buttons);
    json_t *msg = t.oom ? NULL
                        : json_pack("{s:o,s:o}", "text", jtext(t.p, SLK_SECTION_MAX), "blocks",
                                    json_incref(blocks));
    free(t.p);
    json_decref(blocks);
    return msg;
}

json_t *slk_render_decided(const json_t *original, const char *line, const char *detail)
{
    json_t *blocks = json_array();
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(original, "blocks"), i, b)
    {
        const char *type = json_string_value(json_object_get(b, "type"));
        if (!type || strcmp(type, "actions") == 0)
            continue; /* the buttons go */
        if (json_array_size(blocks) + 2 >= SLK_BLOCKS_MAX)
            break;
        json_array_append_new(blocks, json_deep_copy(b));
    }
    snp_buf_t t = {0};
    snp_buf_puts(&t, "*");
    besc(&t, line, 0);
    snp_buf_puts(&t, "*");
    add_section(blocks, &t);
    free(t.p);
    if (detail && *detail) /* mrkdwn built by the plugin from checked values */
        add(blocks,
            json_pack("{s:s,s:[o]}", "type", "context", "elements", mrkdwn(detail, SLK_FIELD_MAX)));
    return json_pack("{s:b,s:o,s:o}", "replace_original", 1, "text", jtext(line, SLK_SECTION_MAX),
                     "blocks", blocks);
}
