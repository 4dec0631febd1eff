/* Integration: blocking work on a runtime's worker threads (nh_ctx_offload,
 * nh_runtime_run_blocking) and the end-of-call hook (nh_ctx_on_end), over real gRPC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nh_test_util.h"

#include <nodehost/nodehost.h>

#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_ended;          /* atomic: on_end calls */
static int g_ended_on_owner; /* atomic: of those, on the owner thread */
static nh_runtime *g_srt;    /* the server runtime */
static pthread_t g_owner;    /* the server's owner thread, seen by a handler */

static void count_end(nh_server_ctx *ctx, void *arg) {
    (void)arg;
    if (nh_runtime_on_owner(nh_ctx_runtime(ctx))) __atomic_add_fetch(&g_ended_on_owner, 1, 0);
    __atomic_add_fetch(&g_ended, 1, 0);
}

/* Sleeps on a worker (blocking is allowed there), then replies from the worker thread. */
static void slow_work(nh_server_ctx *ctx, void *arg) {
    (void)arg;
    assert_false(nh_runtime_on_owner(nh_ctx_runtime(ctx)));
    usleep(20 * 1000);
    char out[64];
    size_t len;
    const uint8_t *p = nh_ctx_payload(ctx, &len);
    int n = snprintf(out, sizeof out, "slow: %.*s", (int)len, (const char *)p);
    nh_ctx_reply(ctx, out, (size_t)n);
}

static void handle_slow(nh_server_ctx *ctx, void *user) {
    (void)user;
    g_owner = pthread_self();
    nh_ctx_on_end(ctx, count_end, NULL);
    if (nh_ctx_offload(ctx, true, slow_work, NULL) != 0)
        nh_ctx_reply_error(ctx, NH_INTERNAL, "offload refused");
}

static void handle_fast(nh_server_ctx *ctx, void *user) {
    (void)user;
    nh_ctx_on_end(ctx, count_end, NULL);
    nh_ctx_reply(ctx, "fast", 4);
}

/* Returns without reply or defer: the call ends with nothing sent (one-way). */
static void handle_oneway(nh_server_ctx *ctx, void *user) {
    (void)user;
    nh_ctx_on_end(ctx, count_end, NULL);
}

/* Defers and never answers: the call stays open until the runtime is freed. */
static void handle_never(nh_server_ctx *ctx, void *user) {
    (void)user;
    nh_ctx_on_end(ctx, count_end, NULL);
    nh_ctx_defer(ctx);
}

typedef struct fixture {
    nh_runtime *crt;
    nh_server *srv;
    nh_node *node;
    char addr[64];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    nh_error err;
    nh_runtime_opts so = {.name = "server", .workers = 2};
    assert_int_equal(nh_runtime_new(&so, &g_srt, &err), 0);
    nh_server_opts sopts = {.listen = "127.0.0.1:0"};
    int port;
    assert_int_equal(nh_server_new(g_srt, &sopts, &f->srv, &port, &err), 0);
    assert_int_equal(nh_server_handle(f->srv, "t.S.Slow", handle_slow, NULL, &err), 0);
    assert_int_equal(nh_server_handle(f->srv, "t.S.Fast", handle_fast, NULL, &err), 0);
    assert_int_equal(nh_server_handle(f->srv, "t.S.Oneway", handle_oneway, NULL, &err), 0);
    assert_int_equal(nh_server_handle(f->srv, "t.S.Never", handle_never, NULL, &err), 0);
    nh_runtime_opts co = {.name = "client"};
    assert_int_equal(nh_runtime_new(&co, &f->crt, &err), 0);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", port);
    nh_node_opts no = {.id = 1, .address = f->addr};
    assert_int_equal(nh_node_open(f->crt, &no, &f->node, &err), 0);
    __atomic_store_n(&g_ended, 0, 0);
    __atomic_store_n(&g_ended_on_owner, 0, 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    nh_node_close(f->node);
    nh_runtime_free(f->crt);
    if (g_srt) nh_runtime_free(g_srt);
    g_srt = NULL;
    free(f);
    return 0;
}

static void wait_ended(int want) {
    for (int i = 0; i < 2000 && __atomic_load_n(&g_ended, 0) < want; i++)
        usleep(5000);
    assert_int_equal(__atomic_load_n(&g_ended, 0), want);
}

typedef struct rpc_arg {
    nh_node *node;
    const char *method;
    char req[32];
    int rc;
    nh_buf resp;
} rpc_arg;

static void *rpc_thread(void *p) {
    rpc_arg *a = p;
    nh_error err;
    nh_call_opts o = {.timeout_ms = 10000};
    a->rc = nh_rpc(a->node, a->method, a->req, strlen(a->req), &o, &a->resp, &err);
    return NULL;
}

static void test_offloaded_calls_reply_from_workers_and_do_not_hold_the_stream(void **state) {
    fixture *f = *state;
    /* 8 slow calls at once on one stream: each releases, so they overlap on the 2 workers,
     * and a fast call issued meanwhile is answered. */
    enum { N = 8 };
    rpc_arg args[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        args[i] = (rpc_arg){.node = f->node, .method = "t.S.Slow"};
        snprintf(args[i].req, sizeof args[i].req, "r%d", i);
        pthread_create(&th[i], NULL, rpc_thread, &args[i]);
    }
    rpc_arg fast = {.node = f->node, .method = "t.S.Fast", .req = "x"};
    rpc_thread(&fast);
    assert_int_equal(fast.rc, 0);
    assert_int_equal(fast.resp.len, 4);
    nh_buf_free(&fast.resp);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].rc, 0);
        char want[40];
        snprintf(want, sizeof want, "slow: r%d", i);
        assert_int_equal(args[i].resp.len, strlen(want));
        assert_memory_equal(args[i].resp.data, want, strlen(want));
        nh_buf_free(&args[i].resp);
    }
    /* Every call ended once, on the owner thread (worker replies are handed to it). */
    wait_ended(N + 1);
    assert_int_equal(__atomic_load_n(&g_ended_on_owner, 0), N + 1);
}

static void test_on_end_runs_for_one_way_calls_and_for_calls_open_at_runtime_free(void **state) {
    fixture *f = *state;
    nh_error err;
    assert_int_equal(nh_unicast(f->node, "t.S.Oneway", "a", 1, NULL, &err), 0);
    wait_ended(1);
    nh_call_opts o = {.timeout_ms = 10000};
    nh_reply_fn none = NULL;
    assert_int_equal(nh_unicast_async(f->node, "t.S.Never", "b", 1, &o, none, NULL, &err), 0);
    /* The never-answered call is open on the server; freeing the server runtime ends it. */
    for (int i = 0; i < 2000 && __atomic_load_n(&g_ended, 0) < 1; i++)
        usleep(1000);
    usleep(100 * 1000);
    assert_int_equal(__atomic_load_n(&g_ended, 0), 1);
    nh_runtime_free(g_srt);
    g_srt = NULL;
    assert_int_equal(__atomic_load_n(&g_ended, 0), 2);
}

static sem_t g_ran;
static void blocking_task(void *arg) {
    *(int *)arg = 42;
    sem_post(&g_ran);
}

static void test_run_blocking_runs_tasks_and_queued_work_runs_before_free(void **state) {
    (void)state;
    sem_init(&g_ran, 0, 0);
    nh_runtime *rt;
    nh_error err;
    nh_runtime_opts o = {.name = "pool", .workers = 1};
    assert_int_equal(nh_runtime_new(&o, &rt, &err), 0);
    int vals[50] = {0};
    for (int i = 0; i < 50; i++)
        assert_int_equal(nh_runtime_run_blocking(rt, blocking_task, &vals[i]), 0);
    nh_runtime_free(rt); /* runs what is still queued */
    for (int i = 0; i < 50; i++)
        assert_int_equal(vals[i], 42);
    sem_destroy(&g_ran);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_offloaded_calls_reply_from_workers_and_do_not_hold_the_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_on_end_runs_for_one_way_calls_and_for_calls_open_at_runtime_free, setup, teardown),
        cmocka_unit_test(test_run_blocking_runs_tasks_and_queued_work_runs_before_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
