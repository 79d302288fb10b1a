/**
 * @file sentinel-detect.c
 * Offline detector runner: scores one time series read as CSV with the same detector plugins,
 * loader and configuration checks sentineld uses, for benchmarks (NAB) and for trying a
 * detector configuration on recorded data.
 *
 * Input (stdin): a header line, then `timestamp,value` rows. Timestamps are
 * `YYYY-MM-DD hh:mm:ss[.fff]` (UTC; a 'T' separator and RFC 3339 zones are accepted too) or
 * epoch numbers: seconds below 1e11, milliseconds from 1e11 on. CRLF line ends are tolerated.
 * Output (stdout): `timestamp,value,anomaly_score`, one row per input row, timestamp and value
 * echoed as written, the score in [0,1].
 *
 * Rows whose value or timestamp cannot be read (or whose value is NaN/Inf) score 0, are not
 * shown to the detectors and earn a warning on stderr naming the line. Blank lines are skipped
 * (they are not rows); columns after the second are dropped. Rows whose timestamp
 * is not newer than the last one are handed to the detectors, which ignore them as they do in
 * sentineld (the project's detectors answer 0 for them).
 *
 * Configuration: `-c FILE` or, without it, the embedded recommended configuration (the text of
 * etc/detect.conf, compiled in; `-E` prints it). [detector:NAME] sections are validated like
 * sentinel.conf (plugin keys against the plugin's table, every error with file:line) and accept
 * two keys of this tool:
 *   weight = W        (>= 0, default 1) the detector's weight in the combination;
 *   emit   = score    the detector's per-point score (default);
 *   emit   = onset    its score only on the points it reports anomalous (the first point of an
 *                     episode), 0 elsewhere: one alarm per episode, as the pipeline sees it;
 *   emit   = peak     its score where it exceeds every score since the detector's last onset
 *                     (the onset included), 0 elsewhere and before the first onset.
 * An optional [pipeline] section holds `combine = max` (the default: the largest weighted
 * score, max_i w_i s_i) or `combine = mean` (the weighted mean sum_i w_i s_i / sum_i w_i); the
 * result is clamped to [0,1]. Other sections ([sentinel], stores, inputs, ...) and [pipeline]
 * `edge` lines are ignored, so a sentinel.conf can be given as is; the `metrics` key of a
 * detector is accepted and ignored (there is one series, named "value").
 *
 * Detectors are created (create + check) through the real loader from `-p DIR`, by default the
 * directory sentineld would use (the build tree's plugins when they exist, else the installed
 * ones); they are never started, as observe() needs no loop.
 *
 * The output is deterministic: the same input and configuration give the same bytes.
 * Exit codes: 0 success, 1 I/O failure, 2 usage or invalid configuration.
 */
#include "model.h"
#include "runtime.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "detect-conf.h" /* generated: SN_DETECT_CONF, the text of etc/detect.conf */

#define SD_MAX_DETECTORS 32

enum { SD_COMBINE_MAX = 0, SD_COMBINE_MEAN };
enum { SD_EMIT_SCORE = 0, SD_EMIT_ONSET, SD_EMIT_PEAK };

/* Keys of a [detector:NAME] section the tool handles itself (the core's keys plus two). */
static const sn_param_t sd_detector_params[] = {
    {"plugin", SN_T_STRING, NULL, SN_PARAM_REQUIRED, "plugin module (type) of this instance"},
    {"metrics", SN_T_LIST, "*", 0, "accepted for compatibility with sentinel.conf; ignored"},
    {"weight", SN_T_DOUBLE, "1", 0, "weight of this detector's score in the combination (>= 0)"},
    {"emit", SN_T_STRING, "score", 0,
     "score: the per-point score; onset: the score only where the detector reports an "
     "anomaly (first point of an episode), 0 elsewhere; peak: the score where it exceeds every "
     "score since the last onset, 0 elsewhere"},
    {NULL, 0, NULL, 0, NULL},
};

/* Keys of the optional [pipeline] section. */
static const sn_param_t sd_pipeline_params[] = {
    {"combine", SN_T_STRING, "max", 0,
     "max: largest weighted score; mean: weighted mean of the scores"},
    {"edge", SN_T_STRING, NULL, SN_PARAM_MULTI, "sentinel.conf pipeline edges; ignored"},
    {NULL, 0, NULL, 0, NULL},
};

typedef struct sd_det {
    const char *name; /* borrowed from the conf */
    const sn_plugin_t *plugin;
    const sn_detector_ops_t *ops;
    sn_host_t host;
    sn_cfg_t *cfg;
    void *self;
    void *state;
    double weight;
    int emit;    /* SD_EMIT_* */
    double peak; /* emit = peak: the largest score since the last onset */
} sd_det_t;

typedef struct sd {
    sn_runtime_t *rt;
    sn_host_t loader_host; /* stays here: the runtime recognises it by address */
    sn_loader_t *loader;
    sn_conf_t *conf;
    sn_cfg_t *pipe_cfg;
    int combine;
    sd_det_t det[SD_MAX_DETECTORS];
    size_t ndet;
} sd_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sentinel-detect [-c FILE] [-p PLUGIN_DIR] [-t] < in.csv > out.csv\n"
            "       sentinel-detect -E\n"
            "  -c FILE  detector configuration ([detector:NAME] sections, optional [pipeline]\n"
            "           combine = max|mean); default: the embedded configuration (-E)\n"
            "  -p DIR   load plugins from DIR (default %s)\n"
            "  -t       validate the configuration and exit (0 valid, 2 invalid)\n"
            "  -E       print the embedded configuration and exit\n"
            "Reads `timestamp,value` CSV (header line first) on stdin, writes\n"
            "`timestamp,value,anomaly_score` with scores in [0,1] on stdout.\n",
            sn_model_default_plugin_dir());
}

/* ---- configuration ---- */

static int sd_add_detector(sd_t *sd, const sn_conf_section_t *s, sn_diag_t *d)
{
    const char *file = sd->conf->file;
    const sn_conf_kv_t *pk = sn_conf_get(s, "plugin");
    if (!pk) {
        sn_diag_add(d, file, s->line, "[%s]: missing required key 'plugin'", s->header);
        return 0;
    }
    if (sd->ndet == SD_MAX_DETECTORS) {
        sn_diag_add(d, file, s->line, "[%s]: more than %d detectors", s->header, SD_MAX_DETECTORS);
        return 0;
    }
    char why[256] = "";
    const sn_loaded_t *mod = sn_loader_get(sd->loader, SN_DETECTOR, pk->value, why, sizeof(why));
    if (!mod) {
        sn_diag_add(d, file, pk->line, "[%s]: plugin '%s': %s", s->header, pk->value, why);
        return 0;
    }
    sd_det_t *dt = &sd->det[sd->ndet];
    dt->cfg = sn_cfg_build(sd->conf, s, mod->plugin->params, sd_detector_params, d);
    if (!dt->cfg)
        return 0;
    sd->ndet++;
    dt->name = s->name;
    dt->plugin = mod->plugin;
    dt->ops = mod->plugin->ops;
    dt->weight = sn_cfg_double(dt->cfg, "weight");
    dt->peak = HUGE_VAL; /* nothing to exceed before the first onset */
    const char *emit = sn_cfg_str(dt->cfg, "emit");
    const sn_conf_kv_t *kv;
    if (!(dt->weight >= 0)) {
        kv = sn_conf_get(s, "weight");
        sn_diag_add(d, file, kv ? kv->line : s->line, "key 'weight': must be >= 0");
    }
    if (strcmp(emit, "score") == 0) {
        dt->emit = SD_EMIT_SCORE;
    } else if (strcmp(emit, "onset") == 0) {
        dt->emit = SD_EMIT_ONSET;
    } else if (strcmp(emit, "peak") == 0) {
        dt->emit = SD_EMIT_PEAK;
    } else {
        kv = sn_conf_get(s, "emit");
        sn_diag_add(d, file, kv ? kv->line : s->line,
                    "key 'emit': '%s' is not score, onset or peak", emit);
    }
    if (!dt->ops || !dt->ops->observe) {
        sn_diag_add(d, file, pk->line, "[%s]: plugin '%s' has no observe()", s->header, pk->value);
        return 0;
    }
    sn_host_fill(sd->rt, &dt->host, s->header);
    sn_err_t err = {{0}};
    if (dt->plugin->create(&dt->host, dt->cfg, &dt->self, &err) != 0) {
        dt->self = NULL;
        sn_diag_add(d, file, s->line, "[%s]: %s", s->header,
                    err.msg[0] ? err.msg : "create failed");
        return 0;
    }
    if (dt->plugin->check && dt->plugin->check(dt->self, &err) != 0) {
        sn_diag_add(d, file, s->line, "[%s]: %s", s->header, err.msg[0] ? err.msg : "check failed");
        return 0;
    }
    dt->state = calloc(1, dt->ops->state_size ? dt->ops->state_size : 1);
    if (!dt->state)
        return SN_ENOMEM;
    return 0;
}

static int sd_configure(sd_t *sd, sn_diag_t *d)
{
    const char *file = sd->conf->file;
    for (size_t i = 0; i < sd->conf->nsec; i++) {
        const sn_conf_section_t *s = &sd->conf->sections[i];
        if (strcmp(s->kind, "detector") == 0) {
            if (sd_add_detector(sd, s, d) != 0)
                return SN_ENOMEM;
        } else if (strcmp(s->kind, "pipeline") == 0) {
            sd->pipe_cfg = sn_cfg_build(sd->conf, s, NULL, sd_pipeline_params, d);
            if (!sd->pipe_cfg)
                continue;
            const char *c = sn_cfg_str(sd->pipe_cfg, "combine");
            if (strcmp(c, "max") == 0) {
                sd->combine = SD_COMBINE_MAX;
            } else if (strcmp(c, "mean") == 0) {
                sd->combine = SD_COMBINE_MEAN;
            } else {
                const sn_conf_kv_t *kv = sn_conf_get(s, "combine");
                sn_diag_add(d, file, kv ? kv->line : s->line,
                            "key 'combine': '%s' is not max or mean", c);
            }
        }
    }
    if (sd->ndet == 0 && d->n == 0)
        sn_diag_add(d, file, 0, "no [detector:NAME] section: nothing to run");
    if (sd->combine == SD_COMBINE_MEAN && d->n == 0) {
        double sum = 0;
        for (size_t i = 0; i < sd->ndet; i++)
            sum += sd->det[i].weight;
        if (!(sum > 0))
            sn_diag_add(d, file, 0, "combine = mean needs a detector with weight > 0");
    }
    return 0;
}

static void sd_free(sd_t *sd)
{
    for (size_t i = 0; i < sd->ndet; i++) {
        sd_det_t *dt = &sd->det[i];
        if (dt->self && dt->plugin->destroy)
            dt->plugin->destroy(dt->self);
        sn_cfg_free(dt->cfg);
        free(dt->state);
    }
    sn_cfg_free(sd->pipe_cfg);
    sn_conf_free(sd->conf);
    /* The runtime runs leftover callbacks while the plugin code is still loaded. */
    if (sd->rt)
        sn_runtime_free(sd->rt);
    if (sd->loader)
        sn_loader_free(sd->loader);
}

/* ---- input ---- */

/* A field without surrounding blanks and one pair of double quotes, copied into @p buf (a field
 * too long for it comes back empty: no timestamp or number is that long). */
static const char *sd_field(const char *s, char *buf, size_t cap)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    if (n >= cap)
        n = 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return buf;
}

/* A timestamp as milliseconds since the epoch. Returns 0 or SN_EINVAL. */
static int sd_parse_ts(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end != s && *end == '\0' && errno == 0 && isfinite(v)) {
        /* An epoch number: below 1e11 it can only be seconds (1e11 ms is 1973). */
        double ms = fabs(v) < 1e11 ? v * 1000.0 : v;
        if (fabs(ms) > 9e15)
            return SN_EINVAL;
        *out = (int64_t)llround(ms);
        return 0;
    }
    if (sn_parse_time_ms(s, out) == 0)
        return 0;
    /* NAB's "YYYY-MM-DD hh:mm:ss[.ffffff]" has no zone: it is UTC. */
    char buf[64];
    size_t n = strlen(s);
    if (n == 0 || n + 2 > sizeof(buf))
        return SN_EINVAL;
    memcpy(buf, s, n);
    buf[n] = 'Z';
    buf[n + 1] = '\0';
    return sn_parse_time_ms(buf, out);
}

static int sd_parse_value(const char *s, double *out)
{
    char *end;
    if (!*s)
        return SN_EINVAL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v))
        return SN_EINVAL;
    *out = v;
    return 0;
}

/* ---- scoring ---- */

static double sd_clamp01(double x)
{
    if (!(x > 0)) /* also NaN */
        return 0;
    return x > 1 ? 1 : x;
}

static double sd_observe(sd_t *sd, const sn_point_t *pt)
{
    double best = 0, sum = 0, wsum = 0;
    for (size_t i = 0; i < sd->ndet; i++) {
        sd_det_t *dt = &sd->det[i];
        sn_verdict_t v = {0};
        if (dt->ops->observe(dt->self, dt->state, pt, &v) != 0)
            memset(&v, 0, sizeof(v));
        double s = sd_clamp01(v.score);
        if (dt->emit == SD_EMIT_ONSET && !v.anomalous) {
            s = 0;
        } else if (dt->emit == SD_EMIT_PEAK) {
            if (v.anomalous || s > dt->peak)
                dt->peak = s;
            else
                s = 0;
        }
        double ws = dt->weight * s;
        if (ws > best)
            best = ws;
        sum += ws;
        wsum += dt->weight;
    }
    if (sd->combine == SD_COMBINE_MEAN)
        return sd_clamp01(wsum > 0 ? sum / wsum : 0);
    return sd_clamp01(best);
}

static int sd_run(sd_t *sd, FILE *in, FILE *out)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int rc = 0, header_seen = 0;
    uint64_t series = sn_series_hash("value", NULL, 0);
    while ((len = getline(&line, &cap, in)) != -1) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0)
            memmove(line, line + 3, (size_t)(len -= 3) + 1);
        if (!header_seen) {
            header_seen = 1;
            fprintf(out, "timestamp,value,anomaly_score\n");
            continue;
        }
        if (len == 0)
            continue; /* blank line: no row */
        /* The first two fields are echoed as written; further columns are dropped. */
        char *comma = strchr(line, ',');
        char *ts_raw = line, *val_raw = comma ? comma + 1 : NULL;
        if (comma)
            *comma = '\0';
        if (val_raw) {
            char *more = strchr(val_raw, ',');
            if (more)
                *more = '\0';
        }
        char ts_buf[128], val_buf[128];
        const char *ts_text = sd_field(ts_raw, ts_buf, sizeof(ts_buf));
        const char *val_text = val_raw ? sd_field(val_raw, val_buf, sizeof(val_buf)) : NULL;
        int64_t ts;
        double v;
        double score = 0;
        if (!val_text) {
            fprintf(stderr, "sentinel-detect: line %ld: no value column; scored 0\n", lineno);
        } else if (sd_parse_ts(ts_text, &ts) != 0) {
            fprintf(stderr, "sentinel-detect: line %ld: unreadable timestamp '%.40s'; scored 0\n",
                    lineno, ts_raw);
        } else if (sd_parse_value(val_text, &v) != 0) {
            fprintf(stderr, "sentinel-detect: line %ld: bad value '%.40s'; scored 0\n", lineno,
                    val_raw);
        } else {
            sn_point_t pt = {.ts_ms = ts, .value = v, .series = series, .metric = "value"};
            score = sd_observe(sd, &pt);
        }
        if (fprintf(out, "%s,%s,%.8f\n", ts_raw, val_raw ? val_raw : "", score) < 0) {
            rc = SN_EIO;
            break;
        }
    }
    if (ferror(in)) {
        fprintf(stderr, "sentinel-detect: reading stdin: %s\n", strerror(errno));
        rc = SN_EIO;
    }
    free(line);
    return rc;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *plugin_dir = NULL;
    int test_only = 0, opt;
    while ((opt = getopt(argc, argv, "c:p:tEh")) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 'p':
            plugin_dir = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'E':
            fputs(SN_DETECT_CONF, stdout);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    int status = 2;
    sd_t sd;
    memset(&sd, 0, sizeof(sd));
    sn_diag_t d;
    sn_diag_init(&d);
    sd.rt = sn_runtime_new(1);
    if (!sd.rt) {
        fprintf(stderr, "sentinel-detect: cannot create the runtime\n");
        goto out;
    }
    sn_host_fill(sd.rt, &sd.loader_host, NULL);
    sd.loader =
        sn_loader_new(plugin_dir ? plugin_dir : sn_model_default_plugin_dir(), &sd.loader_host);
    if (!sd.loader) {
        fprintf(stderr, "sentinel-detect: cannot initialise the plugin loader\n");
        goto out;
    }
    sd.conf = config ? sn_conf_load_file(config, &d)
                     : sn_conf_load_string("<embedded detect.conf>", SN_DETECT_CONF, &d);
    if (!sd.conf || sd_configure(&sd, &d) != 0 || d.n > 0) {
        sn_diag_print(&d, stderr);
        if (d.n == 0)
            fprintf(stderr, "sentinel-detect: out of memory\n");
        goto out;
    }
    if (test_only) {
        printf("configuration ok: %zu detector(s), combine = %s\n", sd.ndet,
               sd.combine == SD_COMBINE_MEAN ? "mean" : "max");
        status = 0;
        goto out;
    }
    status = sd_run(&sd, stdin, stdout) == 0 ? 0 : 1;
    if (fflush(stdout) != 0 && status == 0) {
        fprintf(stderr, "sentinel-detect: writing stdout: %s\n", strerror(errno));
        status = 1;
    }
out:
    sd_free(&sd);
    sn_diag_free(&d);
    return status;
}
