#include "nh_echo.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static long g_count;
static long g_order[100000];
static size_t g_order_len;
static nh_server_ctx *g_held[1024];
static size_t g_held_len;

static long payload_long(nh_server_ctx *ctx) {
    size_t n;
    const uint8_t *p = nh_ctx_payload(ctx, &n);
    char buf[32];
    if (n >= sizeof buf) n = sizeof buf - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

static void h_echo(nh_server_ctx *ctx, void *u) {
    (void)u;
    size_t n;
    const uint8_t *p = nh_ctx_payload(ctx, &n);
    char *buf = malloc(n + 6);
    memcpy(buf, "echo: ", 6);
    if (n) memcpy(buf + 6, p, n);
    nh_ctx_reply(ctx, buf, n + 6);
    free(buf);
}

static void h_raw(nh_server_ctx *ctx, void *u) {
    (void)u;
    size_t n;
    const uint8_t *p = nh_ctx_payload(ctx, &n);
    nh_ctx_reply(ctx, p, n);
}

static void h_fail(nh_server_ctx *ctx, void *u) {
    (void)u;
    size_t n;
    const uint8_t *p = nh_ctx_payload(ctx, &n);
    nh_ctx_reply_error(ctx, NH_NOT_FOUND, "not found: %.*s", (int)n, (const char *)p);
}

typedef struct slow_job {
    nh_server_ctx *ctx;
    long ms;
} slow_job;

static void *slow_main(void *arg) {
    slow_job *j = arg;
    struct timespec ts = {j->ms / 1000, (j->ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    char buf[64];
    int k = snprintf(buf, sizeof buf, "slept %ld", j->ms);
    nh_ctx_reply(j->ctx, buf, (size_t)k); /* from a non-owner thread */
    free(j);
    return NULL;
}

static void start_slow(nh_server_ctx *ctx, bool release) {
    slow_job *j = malloc(sizeof *j);
    j->ctx = ctx;
    j->ms = payload_long(ctx);
    nh_ctx_defer(ctx);
    if (release) nh_ctx_release(ctx);
    pthread_t t;
    pthread_create(&t, NULL, slow_main, j);
    pthread_detach(t);
}

static void h_slow(nh_server_ctx *ctx, void *u) {
    (void)u;
    start_slow(ctx, false);
}

static void h_slow_release(nh_server_ctx *ctx, void *u) {
    (void)u;
    start_slow(ctx, true);
}

static void h_hold(nh_server_ctx *ctx, void *u) {
    (void)u;
    nh_ctx_defer(ctx);
    nh_ctx_release(ctx);
    pthread_mutex_lock(&g_mu);
    if (g_held_len < sizeof g_held / sizeof g_held[0])
        g_held[g_held_len++] = ctx;
    else
        nh_ctx_finish(ctx);
    pthread_mutex_unlock(&g_mu);
}

static void h_count(nh_server_ctx *ctx, void *u) {
    (void)ctx;
    (void)u;
    pthread_mutex_lock(&g_mu);
    g_count++;
    pthread_mutex_unlock(&g_mu);
}

static void h_order(nh_server_ctx *ctx, void *u) {
    (void)u;
    long v = payload_long(ctx);
    pthread_mutex_lock(&g_mu);
    if (g_order_len < sizeof g_order / sizeof g_order[0]) g_order[g_order_len++] = v;
    pthread_mutex_unlock(&g_mu);
    size_t n;
    const uint8_t *p = nh_ctx_payload(ctx, &n);
    nh_ctx_reply(ctx, p, n);
}

static void h_big(nh_server_ctx *ctx, void *u) {
    (void)u;
    long n = payload_long(ctx);
    if (n < 0) n = 0;
    char *buf = malloc((size_t)n + 1);
    memset(buf, 'x', (size_t)n);
    nh_ctx_reply(ctx, buf, (size_t)n);
    free(buf);
}

static void h_whoami(nh_server_ctx *ctx, void *u) {
    (void)u;
    char buf[600];
    const char *who = nh_ctx_caller_identity(ctx);
    int n = snprintf(buf, sizeof buf, "%s kind=%d id=%u local=%d", who ? who : "-",
                     (int)nh_ctx_peer_kind(ctx), nh_ctx_peer_id(ctx), nh_ctx_caller_is_local(ctx));
    nh_ctx_reply(ctx, buf, (size_t)n);
}

static void h_meta(nh_server_ctx *ctx, void *u) {
    (void)u;
    char buf[4096];
    size_t off = 0;
    size_t n = nh_ctx_metadata_count(ctx);
    for (size_t i = 0; i < n && off < sizeof buf; i++) {
        nh_metadata m = nh_ctx_metadata_at(ctx, i);
        if (!strcmp(m.key, "user-agent")) continue;
        off += (size_t)snprintf(buf + off, sizeof buf - off, "%s=%s;", m.key, m.value);
    }
    if (off > sizeof buf) off = sizeof buf;
    nh_ctx_reply(ctx, buf, off);
}

int nh_echo_register(nh_server *srv) {
    static const struct {
        const char *name;
        nh_handler_fn fn;
    } methods[] = {
        {"test.Echo.Echo", h_echo},
        {"test.Echo.Raw", h_raw},
        {"test.Echo.Fail", h_fail},
        {"test.Echo.Slow", h_slow},
        {"test.Echo.SlowRelease", h_slow_release},
        {"test.Echo.Hold", h_hold},
        {"test.Echo.Count", h_count},
        {"test.Echo.Order", h_order},
        {"test.Echo.Big", h_big},
        {"test.Echo.Meta", h_meta},
        {"test.Echo.Whoami", h_whoami},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (nh_server_handle(srv, methods[i].name, methods[i].fn, NULL, NULL) != 0) return -1;
    }
    return 0;
}

long nh_echo_count(void) {
    pthread_mutex_lock(&g_mu);
    long c = g_count;
    pthread_mutex_unlock(&g_mu);
    return c;
}

size_t nh_echo_order(long *out, size_t max) {
    pthread_mutex_lock(&g_mu);
    size_t n = g_order_len < max ? g_order_len : max;
    memcpy(out, g_order, n * sizeof *out);
    pthread_mutex_unlock(&g_mu);
    return n;
}

void nh_echo_reset(void) {
    pthread_mutex_lock(&g_mu);
    g_count = 0;
    g_order_len = 0;
    g_held_len = 0;
    pthread_mutex_unlock(&g_mu);
}

size_t nh_echo_finish_held(void) {
    pthread_mutex_lock(&g_mu);
    size_t n = g_held_len;
    for (size_t i = 0; i < n; i++)
        nh_ctx_finish(g_held[i]);
    g_held_len = 0;
    pthread_mutex_unlock(&g_mu);
    return n;
}
