/** @file check_runtime.c Unit tests for runtime.c, offload.c and log.c: the host table, the
 * offload pool, the post queue, timers, fd watches and JSON log lines. */
#include "harness.h"
#include "runtime.h"

#include <check.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Run the loop until *flag or the deadline; returns the flag. */
static int run_until(sn_runtime_t *rt, atomic_int *flag, int want, int64_t ms)
{
    int64_t deadline = sn_mono_ms() + ms;
    struct timeval tv = {0, 5000};
    while (atomic_load(flag) < want && sn_mono_ms() < deadline) {
        event_base_loopexit(sn_runtime_base(rt), &tv);
        event_base_dispatch(sn_runtime_base(rt));
    }
    return atomic_load(flag);
}

static void run_ms(sn_runtime_t *rt, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_base_loopexit(sn_runtime_base(rt), &tv);
    event_base_dispatch(sn_runtime_base(rt));
}

/* ---- host table -------------------------------------------------------------------------- */

START_TEST(host_fill_sets_every_field)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    ck_assert_ptr_nonnull(rt);
    sn_host_t h;
    char name[] = "detector:latency";
    sn_host_fill(rt, &h, name);
    name[0] = 'X'; /* the runtime keeps its own copy */
    ck_assert_uint_eq(h.abi_major, SN_ABI_MAJOR);
    ck_assert_uint_eq(h.abi_minor, SN_ABI_MINOR);
    ck_assert_uint_eq(h.struct_size, sizeof(sn_host_t));
    ck_assert_str_eq(h.instance, "detector:latency");
    ck_assert(SN_HOST_HAS(&h, log));
    ck_assert(SN_HOST_HAS(&h, metric));
    ck_assert(SN_HOST_HAS(&h, cfg_str));
    ck_assert(SN_HOST_HAS(&h, cfg_int));
    ck_assert(SN_HOST_HAS(&h, cfg_double));
    ck_assert(SN_HOST_HAS(&h, cfg_bool));
    ck_assert(SN_HOST_HAS(&h, cfg_list));
    ck_assert(SN_HOST_HAS(&h, timer_add));
    ck_assert(SN_HOST_HAS(&h, timer_del));
    ck_assert(SN_HOST_HAS(&h, fd_watch));
    ck_assert(SN_HOST_HAS(&h, fd_unwatch));
    ck_assert(SN_HOST_HAS(&h, offload));
    ck_assert(SN_HOST_HAS(&h, post));
    ck_assert(SN_HOST_HAS(&h, http));
    ck_assert(SN_HOST_HAS(&h, secret));
    ck_assert(SN_HOST_HAS(&h, emit_lines));
    ck_assert(SN_HOST_HAS(&h, audit));
    ck_assert(SN_HOST_HAS(&h, now_ms));
    ck_assert(SN_HOST_HAS(&h, mono_ms));
    ck_assert(SN_HOST_HAS(&h, route_add));
    ck_assert(SN_HOST_HAS(&h, req_body));
    ck_assert(SN_HOST_HAS(&h, req_header));
    ck_assert(SN_HOST_HAS(&h, req_reply));
    ck_assert(SN_HOST_HAS(&h, decide));
    ck_assert(SN_HOST_HAS(&h, parse_time));
    ck_assert(SN_HOST_HAS(&h, emit_lines_acked));
    ck_assert(SN_HOST_HAS(&h, metric_labels));
    int64_t now = h.now_ms(&h);
    ck_assert_int_gt(now, 1700000000000LL);
    ck_assert_int_ge(h.mono_ms(&h), 0);
    sn_runtime_free(rt);
}
END_TEST

START_TEST(host_without_hooks_answers_enotsup)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    sn_host_t h;
    sn_host_fill(rt, &h, "input:x");
    ck_assert_int_eq(h.emit_lines(&h, "{}\n", 3, "test"), SN_ENOTSUP);
    ck_assert_int_eq(h.audit(&h, "a", "b", NULL, NULL), SN_ENOTSUP);
    ck_assert_int_eq(h.decide(&h, "i", 1, "a", "r"), SN_ENOTSUP);
    ck_assert_int_eq(h.route_add(&h, "POST", "/x", NULL, NULL), SN_ENOTSUP);
    size_t len = 99;
    ck_assert_ptr_null(h.req_body(NULL, &len));
    ck_assert_uint_eq(len, 0);
    sn_runtime_free(rt);
}
END_TEST

typedef struct hook_log {
    char instance[64];
    char origin[64];
    size_t len;
    int audits, decides;
    char decided[64];
} hook_log_t;

static int t_emit(void *eng, const char *instance, const char *buf, size_t len, const char *origin)
{
    hook_log_t *l = eng;
    (void)buf;
    snprintf(l->instance, sizeof(l->instance), "%s", instance);
    snprintf(l->origin, sizeof(l->origin), "%s", origin);
    l->len = len;
    return 7;
}

static int t_audit(void *eng, const char *actor, const char *action, const char *incident,
                   const json_t *detail)
{
    hook_log_t *l = eng;
    (void)actor;
    (void)incident;
    ck_assert_str_eq(action, "exec");
    ck_assert_int_eq(json_integer_value(json_object_get(detail, "n")), 3);
    l->audits++;
    return 0;
}

static int t_decide(void *eng, const char *incident, int approve, const char *actor,
                    const char *reason)
{
    hook_log_t *l = eng;
    (void)actor;
    (void)reason;
    snprintf(l->decided, sizeof(l->decided), "%s:%d", incident, approve);
    l->decides++;
    return 0;
}

START_TEST(host_forwards_to_hooks_with_instance)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    hook_log_t l = {0};
    sn_engine_hooks_t hooks = {.emit_lines = t_emit, .audit = t_audit, .decide = t_decide};
    sn_runtime_set_hooks(rt, &hooks, &l);
    sn_host_t h;
    sn_host_fill(rt, &h, "input:http");
    sn_host_t copy = h; /* tables may be copied: the runtime is found through the instance */
    ck_assert_int_eq(copy.emit_lines(&copy, "{}\n{}\n", 6, "peer"), 7);
    ck_assert_str_eq(l.instance, "input:http");
    ck_assert_str_eq(l.origin, "peer");
    ck_assert_uint_eq(l.len, 6);
    json_t *d = json_pack("{s:i}", "n", 3);
    ck_assert_int_eq(h.audit(&h, "bot", "exec", "inc1", d), 0);
    json_decref(d);
    ck_assert_int_eq(l.audits, 1);
    ck_assert_int_eq(h.decide(&h, "inc2", 1, "alice", "ok"), 0);
    ck_assert_str_eq(l.decided, "inc2:1");
    ck_assert_int_eq(h.route_add(&h, "GET", "/x", NULL, NULL), SN_ENOTSUP);
    sn_runtime_free(rt);
}
END_TEST

START_TEST(host_metric_adds_instance_label)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    sn_host_t h, lh;
    sn_host_fill(rt, &h, "detector:we\"ird");
    sn_host_fill(rt, &lh, NULL);
    ck_assert_ptr_null(lh.instance);
    h.metric(&h, SN_METRIC_COUNTER, "points_total", "Points seen.", 2);
    h.metric(&h, SN_METRIC_COUNTER, "points_total", "Points seen.", 3);
    lh.metric(&lh, SN_METRIC_GAUGE, "loader_things", "Things.", 4);
    ck_assert(sn_metric_value(rt, "points_total", "instance=\"detector:we\\\"ird\"") == 5);
    ck_assert(sn_metric_value(rt, "loader_things", NULL) == 4);
    char *text = sn_metrics_render(rt);
    ck_assert_ptr_nonnull(
        strstr(text, "sentinel_points_total{instance=\"detector:we\\\"ird\"} 5\n"));
    free(text);
    sn_runtime_free(rt);
}
END_TEST

START_TEST(host_metric_labels_add_pairs_after_instance)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    sn_host_t h, lh;
    sn_host_fill(rt, &h, "input:kafka");
    sn_host_fill(rt, &lh, NULL);
    const char *p3[] = {"topic", "orders", "partition", "3", NULL};
    const char *p4[] = {"topic", "orders", "partition", "4", NULL};
    const char *quoted[] = {"provider", "a\"b\\c\nd", NULL};
    h.metric_labels(&h, SN_METRIC_GAUGE, "kafka_consumer_lag", "Lag.", p3, 10);
    h.metric_labels(&h, SN_METRIC_GAUGE, "kafka_consumer_lag", "Lag.", p4, 20);
    h.metric_labels(&h, SN_METRIC_GAUGE, "kafka_consumer_lag", "Lag.", p3, 7);
    h.metric_labels(&h, SN_METRIC_COUNTER, "llm_tokens_total", "Tokens.", quoted, 5);
    lh.metric_labels(&lh, SN_METRIC_COUNTER, "loader_loads_total", "Loads.", p3, 1);
    h.metric_labels(&h, SN_METRIC_COUNTER, "no_labels_total", "None.", NULL, 2);
    ck_assert(sn_metric_value(rt, "kafka_consumer_lag",
                              "instance=\"input:kafka\",topic=\"orders\",partition=\"3\"") == 7);
    ck_assert(sn_metric_value(rt, "kafka_consumer_lag",
                              "instance=\"input:kafka\",topic=\"orders\",partition=\"4\"") == 20);
    ck_assert(sn_metric_value(rt, "loader_loads_total", "topic=\"orders\",partition=\"3\"") == 1);
    ck_assert(sn_metric_value(rt, "no_labels_total", "instance=\"input:kafka\"") == 2);
    char *text = sn_metrics_render(rt);
    ck_assert_ptr_nonnull(strstr(
        text,
        "sentinel_llm_tokens_total{instance=\"input:kafka\",provider=\"a\\\"b\\\\c\\nd\"} 5\n"));
    free(text);

    /* Refused: the reserved instance label, a missing value, a bad name, too many pairs. */
    const char *reserved[] = {"instance", "x", NULL};
    const char *odd[] = {"topic", NULL};
    const char *badname[] = {"9topic", "x", NULL};
    const char *many[2 * SN_METRIC_MAX_LABELS + 3];
    for (size_t i = 0; i < SN_METRIC_MAX_LABELS + 1; i++) {
        many[2 * i] = "l";
        many[2 * i + 1] = "v";
    }
    many[2 * SN_METRIC_MAX_LABELS + 2] = NULL;
    double before = sn_metric_value(rt, "metrics_invalid_total", NULL);
    h.metric_labels(&h, SN_METRIC_COUNTER, "refused_total", "R.", reserved, 1);
    h.metric_labels(&h, SN_METRIC_COUNTER, "refused_total", "R.", odd, 1);
    h.metric_labels(&h, SN_METRIC_COUNTER, "refused_total", "R.", badname, 1);
    h.metric_labels(&h, SN_METRIC_COUNTER, "refused_total", "R.", many, 1);
    ck_assert(sn_metric_value(rt, "metrics_invalid_total", NULL) == before + 4);
    text = sn_metrics_render(rt);
    ck_assert_ptr_null(strstr(text, "sentinel_refused_total"));
    free(text);
    sn_runtime_free(rt);
}
END_TEST

START_TEST(host_secret_expands_env)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    sn_host_t h;
    sn_host_fill(rt, &h, "notifier:x");
    setenv("SN_RT_TEST_SECRET", "s3cr3t", 1);
    char *v = h.secret(&h, "${env:SN_RT_TEST_SECRET}");
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "s3cr3t");
    free(v);
    unsetenv("SN_RT_TEST_SECRET_MISSING");
    ck_assert_ptr_null(h.secret(&h, "${env:SN_RT_TEST_SECRET_MISSING}"));
    sn_runtime_free(rt);
}
END_TEST

/* ---- offload ----------------------------------------------------------------------------- */

typedef struct off_job {
    pthread_t loop;
    int work_off_loop;
    int done_on_loop;
    atomic_int *finished;
} off_job_t;

static void off_work(void *arg)
{
    off_job_t *j = arg;
    j->work_off_loop = !pthread_equal(pthread_self(), j->loop);
    usleep(1000);
}

static void off_done(void *arg)
{
    off_job_t *j = arg;
    j->done_on_loop = pthread_equal(pthread_self(), j->loop);
    atomic_fetch_add(j->finished, 1);
}

START_TEST(offload_runs_off_loop_and_completes_on_loop)
{
    sn_runtime_t *rt = sn_runtime_new(3);
    sn_host_t h;
    sn_host_fill(rt, &h, "store:x");
    atomic_int finished = 0;
    off_job_t jobs[50];
    for (int i = 0; i < 50; i++) {
        jobs[i] = (off_job_t){.loop = pthread_self(), .finished = &finished};
        ck_assert_int_eq(h.offload(&h, off_work, off_done, &jobs[i]), 0);
    }
    ck_assert_int_eq(run_until(rt, &finished, 50, 5000), 50);
    for (int i = 0; i < 50; i++) {
        ck_assert(jobs[i].work_off_loop);
        ck_assert(jobs[i].done_on_loop);
    }
    sn_runtime_free(rt);
}
END_TEST

static pthread_mutex_t block_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t block_cv = PTHREAD_COND_INITIALIZER;
static int block_open;

static void blocked_work(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&block_mu);
    while (!block_open)
        pthread_cond_wait(&block_cv, &block_mu);
    pthread_mutex_unlock(&block_mu);
}

static void count_done(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

START_TEST(offload_queue_is_bounded)
{
    sn_runtime_t *rt = sn_runtime_new(2);
    atomic_int finished = 0;
    block_open = 0;
    int accepted = 0, rc = 0;
    for (int i = 0; i < 5000; i++) {
        rc = sn_runtime_offload(rt, blocked_work, count_done, &finished);
        if (rc != 0)
            break;
        accepted++;
    }
    ck_assert_int_eq(rc, SN_EAGAIN);
    ck_assert_int_eq(accepted, 4096);
    ck_assert(sn_metric_value(rt, "offload_rejected_total", NULL) == 1);
    pthread_mutex_lock(&block_mu);
    block_open = 1;
    pthread_cond_broadcast(&block_cv);
    pthread_mutex_unlock(&block_mu);
    ck_assert_int_eq(run_until(rt, &finished, 4096, 10000), 4096);
    /* Room again once completions ran. */
    ck_assert_int_eq(sn_runtime_offload(rt, blocked_work, count_done, &finished), 0);
    sn_runtime_free(rt); /* joins and completes the last job */
    ck_assert_int_eq(atomic_load(&finished), 4097);
}
END_TEST

/* ---- post -------------------------------------------------------------------------------- */

typedef struct post_ctx {
    sn_runtime_t *rt;
    pthread_t loop;
    atomic_int ran;
    atomic_int off_loop;
} post_ctx_t;

static void posted(void *arg)
{
    post_ctx_t *c = arg;
    if (!pthread_equal(pthread_self(), c->loop))
        atomic_fetch_add(&c->off_loop, 1);
    atomic_fetch_add(&c->ran, 1);
}

static void *poster(void *arg)
{
    post_ctx_t *c = arg;
    for (int i = 0; i < 1000; i++)
        while (sn_runtime_post(c->rt, posted, c) != 0)
            usleep(100);
    return NULL;
}

START_TEST(post_from_threads_runs_on_loop)
{
    post_ctx_t c = {.rt = sn_runtime_new(1), .loop = pthread_self()};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, poster, &c);
    ck_assert_int_eq(run_until(c.rt, &c.ran, 4000, 10000), 4000);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&c.off_loop), 0);
    sn_runtime_free(c.rt);
}
END_TEST

START_TEST(post_queue_is_bounded_and_drained_at_free)
{
    post_ctx_t c = {.rt = sn_runtime_new(1), .loop = pthread_self()};
    int rc = 0, accepted = 0;
    for (int i = 0; i < 70000; i++) {
        rc = sn_runtime_post(c.rt, posted, &c);
        if (rc != 0)
            break;
        accepted++;
    }
    ck_assert_int_eq(rc, SN_EAGAIN);
    ck_assert_int_eq(accepted, 65536);
    ck_assert(sn_metric_value(c.rt, "post_rejected_total", NULL) == 1);
    ck_assert_int_eq(sn_runtime_post(c.rt, NULL, NULL), SN_EINVAL);
    sn_runtime_free(c.rt); /* runs what was queued so owners can free their arguments */
    ck_assert_int_eq(atomic_load(&c.ran), 65536);
}
END_TEST

/* ---- timers and watches ------------------------------------------------------------------ */

typedef struct tctx {
    const sn_host_t *h;
    atomic_int fired;
    sn_timer_t *self_timer;
    int64_t first_at;
} tctx_t;

static void tick(void *arg)
{
    tctx_t *c = arg;
    if (atomic_fetch_add(&c->fired, 1) == 0)
        c->first_at = sn_mono_ms();
}

static void tick_and_cancel(void *arg)
{
    tctx_t *c = arg;
    if (atomic_fetch_add(&c->fired, 1) == 2)
        c->h->timer_del(c->self_timer); /* deleting a repeating timer from its own callback */
}

START_TEST(timers_one_shot_repeat_and_delete)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    sn_host_t h;
    sn_host_fill(rt, &h, "input:t");
    tctx_t once = {.h = &h}, rep = {.h = &h}, del = {.h = &h}, self = {.h = &h};
    int64_t start = sn_mono_ms();
    sn_timer_t *t1 = h.timer_add(&h, 30, 0, tick, &once);
    sn_timer_t *t2 = h.timer_add(&h, 10, 1, tick, &rep);
    sn_timer_t *t3 = h.timer_add(&h, 20, 0, tick, &del);
    self.self_timer = h.timer_add(&h, 5, 1, tick_and_cancel, &self);
    ck_assert_ptr_nonnull(t1);
    ck_assert_ptr_nonnull(t2);
    ck_assert_ptr_nonnull(t3);
    ck_assert_ptr_nonnull(self.self_timer);
    h.timer_del(t3);
    run_ms(rt, 150);
    ck_assert_int_eq(atomic_load(&once.fired), 1);
    ck_assert_int_ge(once.first_at - start, 29);
    ck_assert_int_ge(atomic_load(&rep.fired), 5);
    ck_assert_int_eq(atomic_load(&del.fired), 0);
    ck_assert_int_eq(atomic_load(&self.fired), 3);
    h.timer_del(t1); /* fired one-shot: a harmless no-op */
    h.timer_del(t2);
    int n = atomic_load(&rep.fired);
    run_ms(rt, 40);
    ck_assert_int_eq(atomic_load(&rep.fired), n);
    ck_assert_ptr_null(h.timer_add(&h, -1, 0, tick, &once));
    h.timer_add(&h, 100000, 1, tick, &rep); /* left registered: freed with the runtime */
    sn_runtime_free(rt);
}
END_TEST

typedef struct wctx {
    atomic_int reads;
    int last_events;
    char got[16];
} wctx_t;

static void on_readable(int fd, int events, void *arg)
{
    wctx_t *w = arg;
    w->last_events = events;
    ssize_t n = read(fd, w->got, sizeof(w->got) - 1);
    if (n > 0)
        w->got[n] = '\0';
    atomic_fetch_add(&w->reads, 1);
}

START_TEST(fd_watch_reports_readable)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    sn_host_t h;
    sn_host_fill(rt, &h, "input:fd");
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    wctx_t w = {0};
    sn_watch_t *wt = h.fd_watch(&h, p[0], 1, on_readable, &w);
    ck_assert_ptr_nonnull(wt);
    ck_assert_int_eq(write(p[1], "ping", 4), 4);
    ck_assert_int_eq(run_until(rt, &w.reads, 1, 2000), 1);
    ck_assert_str_eq(w.got, "ping");
    ck_assert_int_eq(w.last_events, 1);
    h.fd_unwatch(wt);
    ck_assert_int_eq(write(p[1], "pong", 4), 4);
    run_ms(rt, 30);
    ck_assert_int_eq(atomic_load(&w.reads), 1);
    ck_assert_ptr_null(h.fd_watch(&h, p[0], 0, on_readable, &w));
    close(p[0]);
    close(p[1]);
    sn_runtime_free(rt);
}
END_TEST

/* ---- logs -------------------------------------------------------------------------------- */

/* Capture what sn_log writes to stderr. */
static char *capture_log(void (*fn)(void))
{
    char path[] = "/tmp/sn_logtest_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)len + 1);
    ck_assert_int_eq(pread(fd, buf, (size_t)len, 0), len);
    close(fd);
    return buf;
}

static void log_two_lines(void)
{
    sn_log_set_level(SN_LOG_INFO);
    sn_log(SN_LOG_WARN, "detector:lat", "0190-inc", NULL, "value \"%s\"\nnext %d", "q", 42);
    sn_log(SN_LOG_DEBUG, NULL, NULL, NULL, "hidden");
    sn_log(SN_LOG_ERROR, NULL, NULL, "req-1", "bad \xff byte");
}

START_TEST(log_lines_are_json_objects)
{
    char *out = capture_log(log_two_lines);
    char *nl = strchr(out, '\n');
    ck_assert_ptr_nonnull(nl);
    *nl = '\0';
    json_error_t e;
    json_t *a = json_loads(out, 0, &e);
    ck_assert_msg(a != NULL, "not JSON: %s", out);
    ck_assert_str_eq(json_string_value(json_object_get(a, "level")), "warn");
    ck_assert_str_eq(json_string_value(json_object_get(a, "msg")), "value \"q\"\nnext 42");
    ck_assert_str_eq(json_string_value(json_object_get(a, "plugin")), "detector:lat");
    ck_assert_str_eq(json_string_value(json_object_get(a, "incident")), "0190-inc");
    ck_assert_ptr_null(json_object_get(a, "request_id"));
    int64_t ts;
    ck_assert_int_eq(sn_parse_time_ms(json_string_value(json_object_get(a, "ts")), &ts), 0);
    ck_assert_int_lt(llabs(ts - sn_now_ms()), 60000);
    json_t *b = json_loads(nl + 1, 0, &e);
    ck_assert_msg(b != NULL, "not JSON: %s", nl + 1);
    ck_assert_str_eq(json_string_value(json_object_get(b, "level")), "error");
    ck_assert_str_eq(json_string_value(json_object_get(b, "request_id")), "req-1");
    ck_assert_str_eq(json_string_value(json_object_get(b, "msg")), "bad ? byte");
    ck_assert_ptr_null(json_object_get(b, "plugin"));
    ck_assert_ptr_null(strstr(out, "hidden"));
    ck_assert_ptr_null(strstr(nl + 1, "hidden"));
    json_decref(a);
    json_decref(b);
    free(out);
}
END_TEST

static void log_through_host(void)
{
    sn_runtime_t *rt = sn_runtime_new(1);
    sn_host_t h;
    sn_host_fill(rt, &h, "executor:k8s");
    h.log(&h, SN_LOG_INFO, "scaled %s to %d", "web", 3);
    sn_runtime_free(rt);
}

START_TEST(host_log_carries_instance)
{
    char *out = capture_log(log_through_host);
    json_error_t e;
    json_t *a = json_loads(out, JSON_DISABLE_EOF_CHECK, &e);
    ck_assert_msg(a != NULL, "not JSON: %s", out);
    ck_assert_str_eq(json_string_value(json_object_get(a, "plugin")), "executor:k8s");
    ck_assert_str_eq(json_string_value(json_object_get(a, "msg")), "scaled web to 3");
    ck_assert_str_eq(json_string_value(json_object_get(a, "level")), "info");
    json_decref(a);
    free(out);
}
END_TEST

/* ---- the plugin test harness ------------------------------------------------------------- */

typedef struct emit_thread {
    const sn_host_t *h;
    int rc;
} emit_thread_t;

static void *emit_from_thread(void *arg)
{
    emit_thread_t *e = arg;
    const char *body = "{\"a\":1}\n\n{\"b\":2}\n";
    e->rc = e->h->emit_lines(e->h, body, strlen(body), "thread");
    return NULL;
}

START_TEST(harness_captures_emit_audit_decide)
{
    sn_harness_t *hs = sn_harness_new();
    ck_assert_ptr_nonnull(hs);
    sn_host_t h;
    sn_host_fill(sn_harness_runtime(hs), &h, "input:fake");
    ck_assert_int_eq(h.emit_lines(&h, "{}\n", 3, "loop"), 1);
    emit_thread_t e = {.h = &h};
    pthread_t t;
    pthread_create(&t, NULL, emit_from_thread, &e);
    pthread_join(t, NULL);
    ck_assert_int_eq(e.rc, 2);
    sn_harness_run_ms(hs, 20); /* emits from other threads land on the loop */
    json_t *em = sn_harness_emitted(hs);
    ck_assert_uint_eq(json_array_size(em), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(em, 0), "origin")), "loop");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(em, 1), "instance")),
                     "input:fake");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(em, 1), "body")),
                     "{\"a\":1}\n\n{\"b\":2}\n");
    json_t *d = json_pack("{s:s}", "verb", "restart");
    ck_assert_int_eq(h.audit(&h, "sentinel", "execute", "inc-1", d), 0);
    json_decref(d);
    json_t *a = json_array_get(sn_harness_audits(hs), 0);
    ck_assert_str_eq(json_string_value(json_object_get(a, "action")), "execute");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(a, "detail"), "verb")),
                     "restart");
    ck_assert_int_eq(h.decide(&h, "inc-1", 0, "bob", "too risky"), 0);
    json_t *dec = json_array_get(sn_harness_decisions(hs), 0);
    ck_assert(json_is_false(json_object_get(dec, "approve")));
    ck_assert_str_eq(json_string_value(json_object_get(dec, "actor")), "bob");
    ck_assert_str_eq(json_string_value(json_object_get(dec, "reason")), "too risky");
    ck_assert_int_eq(h.route_add(&h, "POST", "/cb", NULL, NULL), 0);
    sn_harness_free(hs);
}
END_TEST

static void finish_later(void *arg)
{
    sn_result_done(arg, SN_EIO, NULL);
}

START_TEST(harness_wait_and_unknown_plugin)
{
    sn_harness_t *hs = sn_harness_new();
    sn_result_t r = {0};
    int64_t t0 = sn_mono_ms();
    ck_assert_int_eq(sn_harness_wait(hs, &r, 50), SN_ETIMEDOUT);
    ck_assert_int_ge(sn_mono_ms() - t0, 45);
    ck_assert_int_eq(sn_runtime_post(sn_harness_runtime(hs), finish_later, &r), 0);
    ck_assert_int_eq(sn_harness_wait(hs, &r, 2000), 0);
    ck_assert_int_eq(r.status, SN_EIO);
    json_t *j = json_object();
    sn_result_done(&r, 0, j);
    json_decref(j);
    ck_assert_int_eq(json_typeof(r.result), JSON_OBJECT); /* the harness holds a reference */
    sn_result_clear(&r);
    ck_assert_int_eq(r.done, 0);
    ck_assert_ptr_null(r.result);
    sn_err_t err = {{0}};
    const sn_plugin_t *p = (const sn_plugin_t *)&err;
    ck_assert_ptr_null(sn_harness_create(hs, SN_DETECTOR, "no_such_plugin", "", &p, &err));
    ck_assert_ptr_null(p);
    ck_assert_int_gt(strlen(err.msg), 0);
    sn_harness_free(hs);
}
END_TEST

static Suite *runtime_suite(void)
{
    Suite *s = suite_create("runtime");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, host_fill_sets_every_field);
    tcase_add_test(tc, host_metric_labels_add_pairs_after_instance);
    tcase_add_test(tc, host_without_hooks_answers_enotsup);
    tcase_add_test(tc, host_forwards_to_hooks_with_instance);
    tcase_add_test(tc, host_metric_adds_instance_label);
    tcase_add_test(tc, host_secret_expands_env);
    tcase_add_test(tc, offload_runs_off_loop_and_completes_on_loop);
    tcase_add_test(tc, offload_queue_is_bounded);
    tcase_add_test(tc, post_from_threads_runs_on_loop);
    tcase_add_test(tc, post_queue_is_bounded_and_drained_at_free);
    tcase_add_test(tc, timers_one_shot_repeat_and_delete);
    tcase_add_test(tc, fd_watch_reports_readable);
    tcase_add_test(tc, log_lines_are_json_objects);
    tcase_add_test(tc, host_log_carries_instance);
    suite_add_tcase(s, tc);
    TCase *th = tcase_create("harness");
    tcase_add_test(th, harness_captures_emit_audit_decide);
    tcase_add_test(th, harness_wait_and_unknown_plugin);
    suite_add_tcase(s, th);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(runtime_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
