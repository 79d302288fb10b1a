/**
 * @file file.c
 * Input `file`: feeds the pipeline from a file of JSON lines, either replaying a recording
 * (mode = replay: read to the end, then stop) or following a live file (mode = tail: after the
 * end, poll for growth, and start over when the file is rotated or truncated).
 *
 * Reading is blocking I/O, so it runs on the host's offload pool, one chunk of up to `batch`
 * lines (and at most FI_CHUNK_BYTES) at a time; the chunk is handed to host->emit_lines on the
 * loop with origin "file:<path>:<line number of its first record>", and only then is the next
 * chunk read. That single chunk in flight is the input's bound and its backpressure: when the
 * pipeline's queues are full (emit_lines says SN_EAGAIN) the same lines are offered again shortly
 * and nothing more is read meanwhile.
 *
 * Pacing: with speed = 0 chunks go out as fast as the pipeline takes them. With speed > 0 each
 * record is due at start + (ts - first ts) / speed, where ts is the record's "ts" (epoch
 * milliseconds or RFC 3339), parsed on the worker; records due together go out as one batch and a
 * host timer waits for the next one. Records without a usable ts go out with the record before.
 * Detection runs on event time, so pacing only matters for demos and live-like load.
 *
 * Lines longer than FI_LINE_MAX are skipped with a log line naming path:line and a metric; blank
 * lines are skipped silently; line numbers count every line of the file.
 */
#include <sentinel/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FI_LINE_MAX (1 << 20)    /* longest accepted line, bytes without the newline */
#define FI_CHUNK_BYTES (4 << 20) /* a chunk stops growing past this many bytes */
#define FI_RBUF 65536            /* read(2) size */
#define FI_REJECT_NOTES 16       /* rejected line numbers logged one by one per chunk */
#define FI_RETRY_MS 100          /* offload pool or pipeline full: try again after this */
#define FI_BATCH_MAX 100000

typedef struct fi fi_t;

typedef struct fi_line {
    size_t off, len; /* in the chunk buffer; len without the newline */
    uint64_t lineno;
    int64_t ts;
    int has_ts;
} fi_line_t;

/*
 * The reader: everything the worker touches. One offload job at a time owns it; the loop reads
 * the chunk only after the job completed, so no lock is needed.
 */
typedef struct fi_reader {
    fi_t *owner; /* NULL once the instance was destroyed while a job was in flight */
    char *path;
    const sn_host_t *host; /* for parse_time, safe from any thread */
    int tail, parse_ts;
    size_t batch;
    int fd;
    dev_t dev;
    ino_t ino;
    off_t pos; /* bytes read from fd */
    char *rbuf;
    size_t rpos, rlen;
    char *line; /* the line being assembled */
    size_t llen, lcap;
    int skipping; /* the current line is over FI_LINE_MAX: drop bytes to its newline */
    uint64_t lineno;
    /* the chunk */
    char *out;
    size_t olen, ocap;
    fi_line_t *lines;
    size_t nlines;
    uint64_t rejected[FI_REJECT_NOTES];
    size_t nrejected;
    int eof, err, restarted; /* restarted: 1 rotated, 2 truncated */
} fi_reader_t;

struct fi {
    const sn_host_t *host;
    const char *path; /* host-owned */
    int tail;
    double speed;
    int64_t start_delay_ms, poll_ms;
    fi_reader_t *r;
    int busy;          /* a read job is in flight */
    int have_chunk;    /* r holds lines not all emitted yet */
    size_t next;       /* next line of the chunk to emit */
    sn_timer_t *timer; /* start delay, pacing, poll or retry: one at a time */
    int anchored;
    int64_t base_ts, base_mono, last_due;
    uint64_t emitted, rejected, dropped;
    int finished, failed, stopping;
    char error[200];
    sn_done_fn stop_done;
    void *stop_arg;
};

static const sn_param_t fi_params[] = {
    {"path", SN_T_STRING, NULL, SN_PARAM_REQUIRED, "file of JSON lines"},
    {"mode", SN_T_STRING, "replay", 0,
     "replay (read to the end once) or tail (follow growth, rotation and truncation)"},
    {"speed", SN_T_DOUBLE, "0", 0,
     "0 = as fast as possible; 1 = the recorded pace from the records' ts; 60 = sixty times "
     "faster"},
    {"batch", SN_T_INT, "500", 0, "lines read and handed over at a time"},
    {"start_delay", SN_T_DURATION, "0", 0, "wait this long after start before reading"},
    {"poll", SN_T_DURATION, "1s", 0, "tail mode: how often to look for growth at the end"},
    {NULL, 0, NULL, 0, NULL},
};

/* Only "ts" matters; jansson parses the line, which is cheap next to the pipeline's own parse. */
static int fi_line_ts(const sn_host_t *h, const char *line, size_t len, int64_t *ts)
{
    json_t *doc = json_loadb(line, len, 0, NULL);
    json_t *v = json_object_get(doc, "ts");
    int ok = 0;
    if (json_is_integer(v)) {
        *ts = (int64_t)json_integer_value(v);
        ok = 1;
    } else if (json_is_real(v) && isfinite(json_real_value(v))) {
        *ts = (int64_t)json_real_value(v);
        ok = 1;
    } else if (json_is_string(v)) {
        ok = h->parse_time(h, json_string_value(v), ts) == 0;
    }
    json_decref(doc);
    return ok;
}

/* ---- the reader (offload pool) ----------------------------------------------------------- */

static void fi_reader_free(fi_reader_t *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free(r->path);
    free(r->rbuf);
    free(r->line);
    free(r->out);
    free(r->lines);
    free(r);
}

/* Finish the line being assembled: into the chunk, or counted as rejected. */
static int fi_end_line(fi_reader_t *r)
{
    uint64_t lineno = r->lineno++;
    if (r->skipping) {
        r->skipping = 0;
        r->llen = 0;
        if (r->nrejected < FI_REJECT_NOTES)
            r->rejected[r->nrejected] = lineno;
        r->nrejected++;
        return 0;
    }
    size_t len = r->llen;
    r->llen = 0;
    if (len && r->line[len - 1] == '\r')
        len--;
    size_t i = 0;
    while (i < len && (r->line[i] == ' ' || r->line[i] == '\t'))
        i++;
    if (i == len)
        return 0; /* blank */
    if (r->olen + len + 1 > r->ocap) {
        size_t cap = r->ocap ? r->ocap : 65536;
        while (cap < r->olen + len + 1)
            cap *= 2;
        char *nb = realloc(r->out, cap);
        if (!nb)
            return ENOMEM;
        r->out = nb;
        r->ocap = cap;
    }
    fi_line_t *l = &r->lines[r->nlines++];
    l->off = r->olen;
    l->len = len;
    l->lineno = lineno;
    l->has_ts = r->parse_ts && fi_line_ts(r->host, r->line, len, &l->ts);
    memcpy(r->out + r->olen, r->line, len);
    r->out[r->olen + len] = '\n';
    r->olen += len + 1;
    return 0;
}

static int fi_append(fi_reader_t *r, const char *p, size_t n)
{
    if (r->skipping || n == 0)
        return 0;
    if (r->llen + n > FI_LINE_MAX) {
        r->skipping = 1;
        r->llen = 0;
        return 0;
    }
    if (r->llen + n > r->lcap) {
        size_t cap = r->lcap ? r->lcap : 4096;
        while (cap < r->llen + n)
            cap *= 2;
        char *nb = realloc(r->line, cap);
        if (!nb)
            return ENOMEM;
        r->line = nb;
        r->lcap = cap;
    }
    memcpy(r->line + r->llen, p, n);
    r->llen += n;
    return 0;
}

static int fi_open(fi_reader_t *r)
{
    struct stat st;
    int fd = open(r->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return e;
    }
    if (r->fd >= 0)
        close(r->fd);
    r->fd = fd;
    r->dev = st.st_dev;
    r->ino = st.st_ino;
    r->pos = 0;
    r->rpos = r->rlen = 0;
    r->llen = 0;
    r->skipping = 0;
    r->lineno = 1;
    return 0;
}

/*
 * Tail mode at the end of the file: a different file at the path (rotation) is opened from its
 * start, after the old file's unterminated last line was taken; a file shorter than what was
 * read (truncation) is read again from the start. Returns 1 when reading should go on.
 */
static int fi_restart_if_replaced(fi_reader_t *r)
{
    struct stat st, fst;
    if (stat(r->path, &st) != 0)
        return 0; /* gone for now (mid-rotation): keep the old file */
    if (st.st_ino != r->ino || st.st_dev != r->dev) {
        if (r->llen || r->skipping)
            fi_end_line(r);
        if (fi_open(r) != 0)
            return 0;
        r->restarted = 1;
        return 1;
    }
    if (fstat(r->fd, &fst) == 0 && fst.st_size < r->pos) {
        if (lseek(r->fd, 0, SEEK_SET) != 0)
            return 0;
        r->pos = 0;
        r->rpos = r->rlen = 0;
        r->llen = 0;
        r->skipping = 0;
        r->lineno = 1;
        r->restarted = 2;
        return 1;
    }
    return 0;
}

/* Read one chunk. Thread: offload pool. */
static void fi_read_work(void *arg)
{
    fi_reader_t *r = arg;
    r->olen = 0;
    r->nlines = 0;
    r->nrejected = 0;
    r->eof = r->err = r->restarted = 0;
    if (r->fd < 0 && (r->err = fi_open(r)) != 0)
        return;
    while (r->nlines < r->batch && r->olen < FI_CHUNK_BYTES) {
        if (r->rpos == r->rlen) {
            ssize_t n = read(r->fd, r->rbuf, FI_RBUF);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                r->err = errno;
                return;
            }
            if (n == 0) {
                if (r->tail) {
                    /* An unterminated last line may still be being written: keep it. */
                    if (fi_restart_if_replaced(r))
                        continue;
                } else if ((r->llen || r->skipping) && (r->err = fi_end_line(r)) != 0) {
                    return;
                }
                r->eof = 1;
                return;
            }
            r->rpos = 0;
            r->rlen = (size_t)n;
            r->pos += n;
        }
        const char *start = r->rbuf + r->rpos;
        const char *nl = memchr(start, '\n', r->rlen - r->rpos);
        size_t seg = nl ? (size_t)(nl - start) : r->rlen - r->rpos;
        if ((r->err = fi_append(r, start, seg)) != 0)
            return;
        r->rpos += seg;
        if (nl) {
            r->rpos++;
            if ((r->err = fi_end_line(r)) != 0)
                return;
        }
    }
}

/* ---- the loop side ----------------------------------------------------------------------- */

static void fi_read_next(fi_t *f);
static void fi_pump(fi_t *f);

static void fi_maybe_stopped(fi_t *f)
{
    if (!f->stopping || !f->stop_done || f->busy || f->have_chunk)
        return;
    sn_done_fn done = f->stop_done;
    f->stop_done = NULL;
    done(f->stop_arg, 0, NULL);
}

static void fi_finish(fi_t *f)
{
    f->finished = 1;
    f->host->log(f->host, SN_LOG_INFO, "replay finished: %llu lines",
                 (unsigned long long)f->emitted);
    f->host->metric(f->host, SN_METRIC_GAUGE, "input_file_done",
                    "1 once a replay has read its whole file", 1);
}

static void fi_timer_cb(void *arg)
{
    fi_t *f = arg;
    f->timer = NULL;
    if (f->have_chunk)
        fi_pump(f);
    else
        fi_read_next(f);
}

static void fi_later(fi_t *f, int64_t ms)
{
    f->timer = f->host->timer_add(f->host, ms < 0 ? 0 : ms, 0, fi_timer_cb, f);
    if (!f->timer) {
        f->failed = 1;
        snprintf(f->error, sizeof(f->error), "cannot add a timer");
        f->host->log(f->host, SN_LOG_ERROR, "cannot add a timer: %s stops reading", f->path);
    }
}

/* Thread: loop. */
static void fi_read_done(void *arg)
{
    fi_reader_t *r = arg;
    fi_t *f = r->owner;
    if (!f) {
        fi_reader_free(r);
        return;
    }
    const sn_host_t *host = f->host;
    f->busy = 0;
    if (r->restarted)
        host->log(host, SN_LOG_INFO, "%s was %s: reading it from the start", f->path,
                  r->restarted == 1 ? "rotated" : "truncated");
    for (size_t i = 0; i < r->nrejected && i < FI_REJECT_NOTES; i++)
        host->log(host, SN_LOG_WARN, "%s:%llu: line longer than %d bytes skipped", f->path,
                  (unsigned long long)r->rejected[i], FI_LINE_MAX);
    if (r->nrejected > FI_REJECT_NOTES)
        host->log(host, SN_LOG_WARN, "%s: %zu more over-long lines skipped in this chunk", f->path,
                  r->nrejected - FI_REJECT_NOTES);
    if (r->nrejected) {
        f->rejected += r->nrejected;
        host->metric(host, SN_METRIC_COUNTER, "input_file_rejected_total",
                     "Lines skipped for being longer than 1 MiB", (double)r->nrejected);
    }
    if (r->err) {
        char msg[sizeof(f->error)];
        snprintf(msg, sizeof(msg), "%s: %s", f->path, strerror(r->err));
        /* Tail mode polls a missing file every `poll`: say it once, not every second. */
        if (strcmp(msg, f->error) != 0)
            host->log(host, SN_LOG_ERROR, "cannot read %s", msg);
        memcpy(f->error, msg, sizeof(msg));
        host->metric(host, SN_METRIC_COUNTER, "input_file_errors_total",
                     "Failures to open or read the file", 1);
        /* Lines read before the error still go out. */
    } else if (f->error[0]) {
        f->error[0] = '\0';
    }
    f->have_chunk = 1;
    f->next = 0;
    fi_pump(f);
}

static void fi_read_next(fi_t *f)
{
    if (f->stopping || f->finished) {
        fi_maybe_stopped(f);
        return;
    }
    f->busy = 1;
    if (f->host->offload(f->host, fi_read_work, fi_read_done, f->r) != 0) {
        f->busy = 0;
        f->host->metric(f->host, SN_METRIC_COUNTER, "input_file_offload_busy_total",
                        "Reads postponed because the offload pool was full", 1);
        fi_later(f, FI_RETRY_MS);
    }
}

/* When the line is due, on the loop's monotonic clock. */
static int64_t fi_due(fi_t *f, const fi_line_t *l, int64_t now)
{
    if (f->speed <= 0)
        return now;
    if (!l->has_ts)
        return f->anchored ? f->last_due : now;
    if (!f->anchored) {
        f->anchored = 1;
        f->base_ts = l->ts;
        f->base_mono = now;
    }
    int64_t gap = l->ts - f->base_ts;
    int64_t due = f->base_mono + (gap > 0 ? (int64_t)((double)gap / f->speed) : 0);
    /* A record older than the one before goes out right after it, never before. */
    return due < f->last_due ? f->last_due : due;
}

/* Emit the due lines of the chunk; then wait, read on, or finish. Thread: loop. */
static void fi_pump(fi_t *f)
{
    fi_reader_t *r = f->r;
    const sn_host_t *host = f->host;
    while (f->next < r->nlines) {
        int64_t now = host->mono_ms(host);
        size_t end = f->next;
        while (end < r->nlines) {
            int64_t due = fi_due(f, &r->lines[end], now);
            if (due > now && !f->stopping)
                break;
            f->last_due = due;
            end++;
        }
        if (end == f->next) {
            fi_later(f, fi_due(f, &r->lines[end], now) - now);
            if (f->timer)
                return;
            end = r->nlines; /* no timer: do not stall, send the rest now */
        }
        const fi_line_t *first = &r->lines[f->next], *last = &r->lines[end - 1];
        char origin[512];
        snprintf(origin, sizeof(origin), "file:%s:%llu", f->path,
                 (unsigned long long)first->lineno);
        size_t len = last->off + last->len + 1 - first->off;
        int rc = host->emit_lines(host, r->out + first->off, len, origin);
        if (rc == SN_EAGAIN && !f->stopping) {
            host->metric(host, SN_METRIC_COUNTER, "input_file_backpressure_total",
                         "Batches offered again because the pipeline was full", 1);
            fi_later(f, FI_RETRY_MS);
            if (f->timer)
                return;
        }
        size_t n = end - f->next;
        if (rc < 0) {
            f->dropped += n;
            host->metric(host, SN_METRIC_COUNTER, "input_file_dropped_total",
                         "Lines the pipeline refused", (double)n);
            host->log(host, SN_LOG_WARN, "%s:%llu: %zu lines not taken by the pipeline (%d)",
                      f->path, (unsigned long long)first->lineno, n, rc);
        } else {
            f->emitted += n;
            host->metric(host, SN_METRIC_COUNTER, "input_file_lines_total",
                         "Lines handed to the pipeline", (double)n);
        }
        f->next = end;
    }
    f->have_chunk = 0;
    if (f->stopping) {
        fi_maybe_stopped(f);
        return;
    }
    if (r->err) {
        if (!f->tail) {
            f->failed = 1;
            return;
        }
        fi_later(f, f->poll_ms); /* tail: the file may appear or come back */
        return;
    }
    if (!r->eof) {
        fi_read_next(f);
        return;
    }
    if (f->tail)
        fi_later(f, f->poll_ms);
    else
        fi_finish(f);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static int fi_create(const sn_host_t *host, const sn_cfg_t *cfg, void **self, sn_err_t *err)
{
    if (!SN_HOST_HAS(host, parse_time)) {
        snprintf(err->msg, sizeof(err->msg), "needs a host of ABI 1.1 or later (parse_time)");
        return SN_ENOTSUP;
    }
    int rc = SN_EINVAL;
    fi_t *f = calloc(1, sizeof(*f));
    fi_reader_t *r = calloc(1, sizeof(*r));
    if (!f || !r) {
        rc = SN_ENOMEM;
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        goto out;
    }
    f->host = host;
    f->r = r;
    r->fd = -1;
    r->owner = f;
    f->path = host->cfg_str(cfg, "path");
    const char *mode = host->cfg_str(cfg, "mode");
    f->speed = host->cfg_double(cfg, "speed");
    int64_t batch = host->cfg_int(cfg, "batch");
    f->start_delay_ms = host->cfg_int(cfg, "start_delay");
    f->poll_ms = host->cfg_int(cfg, "poll");
    if (!f->path || !f->path[0]) {
        snprintf(err->msg, sizeof(err->msg), "path is required");
        goto out;
    }
    if (!mode || strcmp(mode, "replay") == 0) {
        f->tail = 0;
    } else if (strcmp(mode, "tail") == 0) {
        f->tail = 1;
    } else {
        snprintf(err->msg, sizeof(err->msg), "mode must be replay or tail (got '%.32s')", mode);
        goto out;
    }
    if (!isfinite(f->speed) || f->speed < 0) {
        snprintf(err->msg, sizeof(err->msg), "speed must be 0 or a positive factor");
        goto out;
    }
    if (batch < 1 || batch > FI_BATCH_MAX) {
        snprintf(err->msg, sizeof(err->msg), "batch must be between 1 and %d", FI_BATCH_MAX);
        goto out;
    }
    if (f->start_delay_ms < 0) {
        snprintf(err->msg, sizeof(err->msg), "start_delay must not be negative");
        goto out;
    }
    if (f->poll_ms < 10) {
        snprintf(err->msg, sizeof(err->msg), "poll must be at least 10ms");
        goto out;
    }
    r->host = f->host;
    r->tail = f->tail;
    r->parse_ts = f->speed > 0;
    r->batch = (size_t)batch;
    r->path = strdup(f->path);
    r->rbuf = malloc(FI_RBUF);
    r->lines = calloc((size_t)batch, sizeof(*r->lines));
    if (!r->path || !r->rbuf || !r->lines) {
        rc = SN_ENOMEM;
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        goto out;
    }
    rc = 0;
    *self = f;
out:
    if (rc != 0) {
        fi_reader_free(r);
        free(f);
    }
    return rc;
}

/** Begin reading (after start_delay). The file is opened by the first read, on the pool. */
static int fi_start(void *self)
{
    fi_t *f = self;
    f->host->metric(f->host, SN_METRIC_GAUGE, "input_file_done",
                    "1 once a replay has read its whole file", 0);
    if (f->start_delay_ms > 0) {
        fi_later(f, f->start_delay_ms);
        return f->timer ? 0 : SN_ENOMEM;
    }
    fi_read_next(f);
    return 0;
}

/**
 * Drain: a chunk being read is finished and its lines are emitted without pacing; nothing
 * further is read. done may run before this returns.
 */
static void fi_stop(void *self, sn_done_fn done, void *arg)
{
    fi_t *f = self;
    f->stopping = 1;
    f->stop_done = done;
    f->stop_arg = arg;
    if (f->timer) {
        f->host->timer_del(f->timer);
        f->timer = NULL;
    }
    if (f->have_chunk && !f->busy)
        fi_pump(f);
    fi_maybe_stopped(f);
}

/** A read still in flight completes on its own and frees the reader then. */
static void fi_destroy(void *self)
{
    fi_t *f = self;
    if (f->timer)
        f->host->timer_del(f->timer);
    if (f->busy)
        f->r->owner = NULL;
    else
        fi_reader_free(f->r);
    free(f);
}

static int fi_health(void *self, sn_health_t *out)
{
    fi_t *f = self;
    out->ok = !f->failed && !f->error[0];
    if (f->error[0])
        snprintf(out->detail, sizeof(out->detail), "%s", f->error);
    else
        snprintf(out->detail, sizeof(out->detail), "%llu lines, %llu too long, %llu refused%s",
                 (unsigned long long)f->emitted, (unsigned long long)f->rejected,
                 (unsigned long long)f->dropped, f->finished ? ", replay finished" : "");
    return 0;
}

static const sn_input_ops_t fi_ops = {.struct_size = sizeof(sn_input_ops_t)};

static const sn_plugin_t fi_plugin = {
    SN_PLUGIN_ABI,
    .kind = SN_INPUT,
    .type = "file",
    .version = "1.0.0",
    .summary = "JSON lines from a file: replay a recording (optionally paced by ts) or tail it",
    .params = fi_params,
    .create = fi_create,
    .start = fi_start,
    .stop = fi_stop,
    .destroy = fi_destroy,
    .health = fi_health,
    .ops = &fi_ops,
};

/** The one exported symbol. Ownership: the descriptor is static and never freed. */
SN_EXPORT const sn_plugin_t *sn_plugin_entry(const sn_host_t *host)
{
    (void)host;
    return &fi_plugin;
}
