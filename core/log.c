/**
 * @file log.c
 * Structured logs: one JSON object a line on stderr with ts, level, msg and, when known,
 * plugin, incident and request_id. jansson does the escaping; each line leaves in a single
 * write() so lines from different threads never interleave.
 */
#include "runtime.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/** Longest message kept; longer ones are cut (the line stays valid JSON). */
#define SN_LOG_MSG_MAX 4096

static _Atomic int g_min_level = SN_LOG_INFO;
/* Lines longer than PIPE_BUF may be split by the kernel; the lock keeps them whole. */
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;

void sn_log_set_level(sn_log_level_t min)
{
    atomic_store(&g_min_level, (int)min);
}

static const char *level_name(sn_log_level_t l)
{
    switch (l) {
    case SN_LOG_DEBUG:
        return "debug";
    case SN_LOG_INFO:
        return "info";
    case SN_LOG_WARN:
        return "warn";
    case SN_LOG_ERROR:
        return "error";
    }
    return "info";
}

/** A JSON string even when @p s is not valid UTF-8 (bytes of a broken sequence become '?'). */
static json_t *safe_string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80           ? 1
                     : (c >> 5) == 0x6  ? 2
                     : (c >> 4) == 0xe  ? 3
                     : (c >> 3) == 0x1e ? 4
                                        : 0;
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
        if (ok) {
            memcpy(copy + i, s + i, len);
            i += len;
        } else {
            copy[i++] = '?';
        }
    }
    copy[n] = '\0';
    j = json_string(copy);
    if (!j) /* overlong forms or surrogates: keep ASCII only */
        for (i = 0; i < n; i++)
            if ((unsigned char)copy[i] >= 0x80)
                copy[i] = '?';
    if (!j)
        j = json_string(copy);
    free(copy);
    return j;
}

static void set_opt(json_t *o, const char *key, const char *v)
{
    if (v)
        json_object_set_new(o, key, safe_string(v));
}

void sn_logv(sn_log_level_t lvl, const char *plugin, const char *incident, const char *request_id,
             const char *fmt, va_list ap)
{
    if ((int)lvl < atomic_load(&g_min_level))
        return;
    char msg[SN_LOG_MSG_MAX];
    char ts[32];
    vsnprintf(msg, sizeof(msg), fmt ? fmt : "", ap);
    sn_format_time_ms(sn_now_ms(), ts);

    json_t *o = json_object();
    if (!o)
        return;
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(level_name(lvl)));
    set_opt(o, "msg", msg);
    set_opt(o, "plugin", plugin);
    set_opt(o, "incident", incident);
    set_opt(o, "request_id", request_id);
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!line)
        return;
    size_t len = strlen(line);
    char *buf = realloc(line, len + 2);
    if (!buf) {
        free(line);
        return;
    }
    buf[len] = '\n';
    buf[len + 1] = '\0';
    /* One write per line, under the lock; a short write is finished in place. */
    size_t off = 0;
    pthread_mutex_lock(&g_log_mu);
    while (off < len + 1) {
        ssize_t w = write(STDERR_FILENO, buf + off, len + 1 - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    pthread_mutex_unlock(&g_log_mu);
    free(buf);
}

void sn_log(sn_log_level_t lvl, const char *plugin, const char *incident, const char *request_id,
            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sn_logv(lvl, plugin, incident, request_id, fmt, ap);
    va_end(ap);
}
