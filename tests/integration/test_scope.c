/* Integration: work scopes (nh_scope). Every entry point that keeps a caller's function pointer
 * captures the caller's scope, holds it while the work is pending, runs the callbacks with it
 * current and releases it exactly once after the last callback, also when the work fails or is
 * dropped at nh_runtime_free(); refused work holds nothing. Over real gRPC on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nh_echo.h"
#include "nh_test_util.h"

#include <nodehost/nodehost.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a counting scope --------------------------------------------------------------------- */

typedef struct tscope {
    nh_scope s;
    int holds;    /* atomic */
    int releases; /* atomic */
    int bad;      /* atomic: a release beyond the holds, or a release with this scope current */
} tscope;

/* Holds minus releases made on the calling thread: a refused call may hold and release before
 * it returns (the runtime began stopping during the hand-over), which leaves this unchanged,
 * while the owner thread's concurrent releases of other work do not touch it. */
static _Thread_local int tl_net_holds;
/* Holds made on the calling thread (a refused call's transient hold counts here). */
static _Thread_local int tl_holds;

static void ts_hold(void *arg) {
    tscope *t = arg;
    __atomic_add_fetch(&t->holds, 1, __ATOMIC_SEQ_CST);
    tl_net_holds++;
    tl_holds++;
}

static void ts_release(void *arg) {
    tscope *t = arg;
    int r = __atomic_add_fetch(&t->releases, 1, __ATOMIC_SEQ_CST);
    tl_net_holds--;
    if (r > __atomic_load_n(&t->holds, __ATOMIC_SEQ_CST)) __atomic_add_fetch(&t->bad, 1, 0);
    if (nh_scope_current() == &t->s) __atomic_add_fetch(&t->bad, 1, 0);
}

static tscope g_ts;  /* the scope under test */
static tscope g_ts2; /* a second scope (nesting, the offload handler's own) */

static void ts_init(tscope *t) {
    memset(t, 0, sizeof *t);
    t->s = (nh_scope){.hold = ts_hold, .release = ts_release, .arg = t};
}

static int holds(const tscope *t) {
    return __atomic_load_n(&t->holds, __ATOMIC_SEQ_CST);
}

static int releases(const tscope *t) {
    return __atomic_load_n(&t->releases, __ATOMIC_SEQ_CST);
}

/* Callbacks check the current scope; mismatches are counted (cmocka asserts only on the test's
 * own thread). */
static int g_cb_ok;  /* atomic: callbacks that saw the scope they expected */
static int g_cb_bad; /* atomic: callbacks that saw another scope */

static void check_scope(const nh_scope *want) {
    if (nh_scope_current() == want)
        __atomic_add_fetch(&g_cb_ok, 1, __ATOMIC_SEQ_CST);
    else
        __atomic_add_fetch(&g_cb_bad, 1, __ATOMIC_SEQ_CST);
}

static int cb_ok(void) {
    return __atomic_load_n(&g_cb_ok, __ATOMIC_SEQ_CST);
}

static bool wait_int(const int *p, int want, int ms) {
    for (int waited = 0; waited <= ms; waited += 2) {
        if (__atomic_load_n(p, __ATOMIC_SEQ_CST) >= want) return true;
        usleep(2000);
    }
    return false;
}

/* Waits until every hold of t was released, then checks the counts. */
static void assert_balanced(tscope *t, int want_holds) {
    assert_true(wait_int(&t->releases, want_holds, 5000));
    nh_test_sleep_ms(20); /* a late extra release would show now */
    assert_int_equal(holds(t), want_holds);
    assert_int_equal(releases(t), want_holds);
    assert_int_equal(__atomic_load_n(&t->bad, 0), 0);
}

/* ---- fixture: three servers, a client runtime with a configuration of them ---------------- */

#define NSERVERS 3

typedef struct server {
    nh_runtime *rt;
    nh_server *srv;
    int port;
    char addr[32];
} server;

typedef struct fixture {
    server s[NSERVERS];
    nh_runtime *crt;
    nh_config *cfg;
    nh_node *node; /* the first node of cfg (borrowed) */
} fixture;

/* t.S.Offload: the handler enters the offload scope (as a host's trampoline does) and offloads;
 * the worker checks the scope and replies from its thread. */
static void offload_work(nh_server_ctx *ctx, void *arg) {
    check_scope(arg);
    nh_ctx_reply(ctx, "offloaded", 9);
}

static void h_offload(nh_server_ctx *ctx, void *user) {
    (void)user;
    const nh_scope *prev = nh_scope_enter(&g_ts2.s);
    int rc = nh_ctx_offload(ctx, true, offload_work, &g_ts2.s);
    nh_scope_enter(prev);
    if (rc != 0) nh_ctx_reply_error(ctx, NH_INTERNAL, "offload refused");
}

/* t.S.Stream: three replies per request (correctable, streaming). */
static void h_stream(nh_server_ctx *ctx, void *user) {
    (void)user;
    for (int k = 1; k <= 3; k++) {
        char buf[8];
        int n = snprintf(buf, sizeof buf, "v%d", k);
        nh_ctx_send(ctx, buf, (size_t)n);
    }
}

static nh_config *make_config(nh_runtime *rt, fixture *f) {
    const char *addrs[NSERVERS];
    for (int i = 0; i < NSERVERS; i++)
        addrs[i] = f->s[i].addr;
    nh_config_opts o = {
        .addresses = addrs, .count = NSERVERS, .backoff_base_ms = 50, .backoff_max_ms = 300};
    nh_config *cfg = NULL;
    nh_error err;
    assert_int_equal(nh_config_new(rt, &o, &cfg, &err), 0);
    assert_true(nh_test_all_connected(cfg, 5000));
    return cfg;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    /* Before the runtimes start: their threads read the scopes (a write after would reach
     * them only through the network, which ThreadSanitizer cannot see). */
    ts_init(&g_ts);
    ts_init(&g_ts2);
    nh_error err;
    for (int i = 0; i < NSERVERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "srv%d", i + 1);
        nh_runtime_opts ro = {.name = name, .workers = 2};
        assert_int_equal(nh_runtime_new(&ro, &f->s[i].rt, &err), 0);
        nh_server_opts so = {.listen = "127.0.0.1:0"};
        assert_int_equal(nh_server_new(f->s[i].rt, &so, &f->s[i].srv, &f->s[i].port, &err), 0);
        assert_int_equal(nh_echo_register(f->s[i].srv), 0);
        assert_int_equal(nh_server_handle(f->s[i].srv, "t.S.Offload", h_offload, NULL, &err), 0);
        assert_int_equal(nh_server_handle(f->s[i].srv, "t.S.Stream", h_stream, NULL, &err), 0);
        snprintf(f->s[i].addr, sizeof f->s[i].addr, "127.0.0.1:%d", f->s[i].port);
    }
    nh_runtime_opts co = {.name = "client", .workers = 2};
    assert_int_equal(nh_runtime_new(&co, &f->crt, &err), 0);
    f->cfg = make_config(f->crt, f);
    f->node = nh_config_node(f->cfg, 0);
    __atomic_store_n(&g_cb_ok, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&g_cb_bad, 0, __ATOMIC_SEQ_CST);
    nh_echo_reset();
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    nh_echo_finish_held();
    nh_config_unref(f->cfg);
    nh_runtime_free(f->crt);
    for (int i = 0; i < NSERVERS; i++)
        nh_runtime_free(f->s[i].rt);
    free(f);
    /* Every test ends with every hold released, no callback in a wrong scope, and this thread
     * outside any scope. */
    assert_int_equal(holds(&g_ts), releases(&g_ts));
    assert_int_equal(holds(&g_ts2), releases(&g_ts2));
    assert_int_equal(__atomic_load_n(&g_ts.bad, 0), 0);
    assert_int_equal(__atomic_load_n(&g_ts2.bad, 0), 0);
    assert_int_equal(__atomic_load_n(&g_cb_bad, 0), 0);
    assert_null(nh_scope_current());
    return 0;
}

/* Runs the statements with scope s entered on the calling thread, then restores the previous
 * scope (checking that s was still current). */
#define IN_SCOPE(s, ...)                                                                           \
    do {                                                                                           \
        const nh_scope *prev_ = nh_scope_enter(s);                                                 \
        __VA_ARGS__;                                                                               \
        assert_ptr_equal(nh_scope_enter(prev_), (s));                                              \
    } while (0)

/* ---- the current scope itself ------------------------------------------------------------- */

static void test_enter_returns_the_previous_scope_and_nests(void **state) {
    (void)state;
    assert_null(nh_scope_current());
    const nh_scope *p0 = nh_scope_enter(&g_ts.s);
    assert_null(p0);
    assert_ptr_equal(nh_scope_current(), &g_ts.s);
    const nh_scope *p1 = nh_scope_enter(&g_ts2.s);
    assert_ptr_equal(p1, &g_ts.s);
    assert_ptr_equal(nh_scope_current(), &g_ts2.s);
    assert_ptr_equal(nh_scope_enter(p1), &g_ts2.s);
    assert_ptr_equal(nh_scope_current(), &g_ts.s);
    nh_scope_enter(p0);
    assert_null(nh_scope_current());
    assert_int_equal(holds(&g_ts), 0); /* entering holds nothing */
}

/* ---- post and run_blocking ---------------------------------------------------------------- */

typedef struct expect {
    const nh_scope *want;
    int ran; /* atomic */
} expect;

static void task_check(void *arg) {
    expect *e = arg;
    check_scope(e->want);
    __atomic_add_fetch(&e->ran, 1, __ATOMIC_SEQ_CST);
}

/* On the owner thread: posts more work from inside a scoped task (captured again there). */
typedef struct repost {
    nh_runtime *rt;
    expect inner;
    int rc;
} repost;

static void task_repost(void *arg) {
    repost *r = arg;
    check_scope(&g_ts.s);
    /* Inside the task the scope is current, so this post captures it too. */
    r->rc = nh_runtime_post(r->rt, task_check, &r->inner);
}

static void test_post_holds_until_the_task_ran(void **state) {
    fixture *f = *state;
    enum { N = 20 };
    expect e = {.want = &g_ts.s};
    IN_SCOPE(&g_ts.s, for (int i = 0; i < N; i++)
                          assert_int_equal(nh_runtime_post(f->crt, task_check, &e), 0));
    assert_true(wait_int(&e.ran, N, 5000));
    assert_balanced(&g_ts, N);

    /* From the owner thread, inside a scoped task. */
    repost r = {.rt = f->crt, .inner = {.want = &g_ts.s}, .rc = -2};
    IN_SCOPE(&g_ts.s, assert_int_equal(nh_runtime_post(f->crt, task_repost, &r), 0));
    assert_true(wait_int(&r.inner.ran, 1, 5000));
    assert_int_equal(r.rc, 0);
    assert_balanced(&g_ts, N + 2);

    /* Without a scope nothing is held and the task runs in none. */
    expect none = {.want = NULL};
    assert_int_equal(nh_runtime_post(f->crt, task_check, &none), 0);
    assert_true(wait_int(&none.ran, 1, 5000));
    assert_int_equal(holds(&g_ts), N + 2);
    assert_int_equal(cb_ok(), N + 3);
}

static void test_run_blocking_holds_until_the_task_ran(void **state) {
    fixture *f = *state;
    enum { N = 10 };
    expect e = {.want = &g_ts.s};
    IN_SCOPE(&g_ts.s, for (int i = 0; i < N; i++)
                          assert_int_equal(nh_runtime_run_blocking(f->crt, task_check, &e), 0));
    assert_true(wait_int(&e.ran, N, 5000));
    assert_balanced(&g_ts, N);
    expect none = {.want = NULL};
    assert_int_equal(nh_runtime_run_blocking(f->crt, task_check, &none), 0);
    assert_true(wait_int(&none.ran, 1, 5000));
    assert_int_equal(holds(&g_ts), N);
    assert_int_equal(cb_ok(), N + 1);
}

/* ---- offload -------------------------------------------------------------------------------- */

static void test_offload_holds_the_handlers_scope_until_the_worker_returned(void **state) {
    fixture *f = *state;
    nh_call_opts o = {.timeout_ms = 5000};
    for (int i = 0; i < 3; i++) {
        nh_buf resp;
        nh_error err;
        assert_int_equal(nh_rpc(f->node, "t.S.Offload", "x", 1, &o, &resp, &err), 0);
        assert_int_equal(resp.len, 9);
        nh_buf_free(&resp);
    }
    assert_balanced(&g_ts2, 3);
    assert_int_equal(cb_ok(), 3);
    assert_int_equal(holds(&g_ts), 0); /* the blocking rpc itself holds nothing */
}

/* ---- rpc_async and unicast_async ---------------------------------------------------------- */

typedef struct reply_rec {
    const nh_scope *want;
    int calls; /* atomic */
    nh_code code;
} reply_rec;

static void reply_done(const nh_reply *r, void *user) {
    reply_rec *rec = user;
    check_scope(rec->want);
    rec->code = r->err.code;
    __atomic_add_fetch(&rec->calls, 1, __ATOMIC_SEQ_CST);
}

/* From the owner thread: an rpc_async started inside a scoped task. */
typedef struct owner_rpc {
    nh_node *node;
    const nh_call_opts *opts;
    reply_rec rec;
    int rc;
    int started; /* atomic */
} owner_rpc;

static void task_owner_rpc(void *arg) {
    owner_rpc *o = arg;
    const nh_scope *prev = nh_scope_enter(&g_ts.s);
    nh_error err;
    o->rc = nh_rpc_async(o->node, "test.Echo.Echo", "o", 1, o->opts, reply_done, &o->rec, &err);
    nh_scope_enter(prev);
    __atomic_store_n(&o->started, 1, __ATOMIC_SEQ_CST);
}

static void test_rpc_async_done_runs_in_the_scope_and_releases_once(void **state) {
    fixture *f = *state;
    nh_error err;
    nh_call_opts o = {.timeout_ms = 5000};
    reply_rec rec = {.want = &g_ts.s, .code = NH_UNKNOWN};
    IN_SCOPE(&g_ts.s,
             assert_int_equal(
                 nh_rpc_async(f->node, "test.Echo.Echo", "a", 1, &o, reply_done, &rec, &err), 0));
    assert_true(wait_int(&rec.calls, 1, 5000));
    assert_int_equal(rec.code, NH_OK);
    assert_balanced(&g_ts, 1);

    /* Started on the owner thread. */
    owner_rpc orpc = {.node = f->node, .opts = &o, .rec = {.want = &g_ts.s}, .rc = -2};
    assert_int_equal(nh_runtime_post(f->crt, task_owner_rpc, &orpc), 0);
    assert_true(wait_int(&orpc.rec.calls, 1, 5000));
    assert_int_equal(orpc.rc, 0);
    assert_int_equal(orpc.rec.code, NH_OK);
    assert_balanced(&g_ts, 2);

    /* Completed during its start on the owner thread (token already fired): done is deferred to
     * the task queue and still runs in the scope. */
    nh_cancel *c = nh_cancel_new();
    nh_cancel_fire(c);
    nh_call_opts oc = {.cancel = c};
    owner_rpc ocan = {.node = f->node, .opts = &oc, .rec = {.want = &g_ts.s}, .rc = -2};
    assert_int_equal(nh_runtime_post(f->crt, task_owner_rpc, &ocan), 0);
    assert_true(wait_int(&ocan.rec.calls, 1, 5000));
    assert_int_equal(ocan.rc, 0);
    assert_int_equal(ocan.rec.code, NH_CANCELLED);
    assert_balanced(&g_ts, 3);
    nh_cancel_free(c);
    assert_int_equal(cb_ok(), 3);
}

static void test_unicast_async_holds_only_with_a_callback(void **state) {
    fixture *f = *state;
    nh_error err;
    reply_rec rec = {.want = &g_ts.s, .code = NH_UNKNOWN};
    IN_SCOPE(&g_ts.s, assert_int_equal(nh_unicast_async(f->node, "test.Echo.Count", "u", 1, NULL,
                                                        reply_done, &rec, &err),
                                       0));
    assert_true(wait_int(&rec.calls, 1, 5000));
    assert_int_equal(rec.code, NH_OK);
    assert_balanced(&g_ts, 1);
    /* Fire-and-forget: no function pointer kept, nothing held. */
    IN_SCOPE(&g_ts.s,
             assert_int_equal(
                 nh_unicast_async(f->node, "test.Echo.Count", "u", 1, NULL, NULL, NULL, &err), 0));
    for (int i = 0; i < 500 && nh_echo_count() < 2; i++)
        nh_test_sleep_ms(5);
    assert_int_equal(nh_echo_count(), 2);
    assert_balanced(&g_ts, 1);
}

/* ---- quorum calls ------------------------------------------------------------------------- */

static nh_map_verdict map_req(uint32_t id, const uint8_t *req, size_t len, void *user,
                              nh_buf *out) {
    (void)id;
    (void)req;
    (void)len;
    (void)out;
    check_scope(user);
    return NH_MAP_KEEP;
}

static nh_map_verdict map_resp(uint32_t id, const uint8_t *resp, size_t len, void *user,
                               nh_buf *out) {
    (void)id;
    (void)resp;
    (void)len;
    (void)out;
    check_scope(user);
    return NH_MAP_KEEP;
}

static nh_qf_verdict qf_all(const nh_node_reply *r, size_t n, size_t size, void *user,
                            const uint8_t **res, size_t *res_len) {
    check_scope(user);
    if (n < size) return NH_QF_MORE;
    *res = r[0].payload;
    *res_len = r[0].len;
    return NH_QF_DONE;
}

typedef struct qc_rec {
    const nh_scope *want;
    int calls; /* atomic */
    nh_code code;
} qc_rec;

static void qc_done(const nh_qc_result *r, void *user) {
    qc_rec *rec = user;
    check_scope(rec->want);
    rec->code = r->err.code;
    __atomic_add_fetch(&rec->calls, 1, __ATOMIC_SEQ_CST);
}

static void test_quorum_call_async_runs_every_function_in_the_scope(void **state) {
    fixture *f = *state;
    nh_error err;
    nh_qc_opts o = {.call = {.timeout_ms = 5000},
                    .quorum = {.kind = NH_QUORUM_CUSTOM, .fn = qf_all, .fn_user = &g_ts.s},
                    .map_request = map_req,
                    .map_request_user = &g_ts.s,
                    .map_response = map_resp,
                    .map_response_user = &g_ts.s};
    qc_rec rec = {.want = &g_ts.s, .code = NH_UNKNOWN};
    IN_SCOPE(&g_ts.s, assert_int_equal(nh_quorum_call_async(f->cfg, "test.Echo.Echo", "q", 1, &o,
                                                            qc_done, &rec, &err),
                                       0));
    assert_true(wait_int(&rec.calls, 1, 5000));
    assert_int_equal(rec.code, NH_OK);
    assert_balanced(&g_ts, 1);
    /* 3 request maps, 3 response maps, at least 3 quorum function runs, 1 done. */
    assert_true(cb_ok() >= 10);

    /* A plain majority call with only done. */
    nh_qc_opts plain = {.call = {.timeout_ms = 5000}};
    qc_rec rec2 = {.want = &g_ts.s, .code = NH_UNKNOWN};
    IN_SCOPE(&g_ts.s, assert_int_equal(nh_quorum_call_async(f->cfg, "test.Echo.Echo", "q", 1,
                                                            &plain, qc_done, &rec2, &err),
                                       0));
    assert_true(wait_int(&rec2.calls, 1, 5000));
    assert_int_equal(rec2.code, NH_OK);
    assert_balanced(&g_ts, 2);
}

static void test_futures_hold_only_for_mappings(void **state) {
    fixture *f = *state;
    nh_error err;
    /* No mapping: the future holds nothing. */
    nh_qc_future *fut = NULL;
    IN_SCOPE(&g_ts.s,
             assert_int_equal(
                 nh_quorum_call_start(f->cfg, "test.Echo.Echo", "f", 1, NULL, &fut, &err), 0));
    assert_int_equal(nh_qc_future_wait(fut, NULL, &err), 0);
    nh_qc_future_free(fut);
    assert_int_equal(holds(&g_ts), 0);

    /* With a request mapping: held until the call completed. */
    nh_qc_opts o = {
        .call = {.timeout_ms = 5000}, .map_request = map_req, .map_request_user = &g_ts.s};
    IN_SCOPE(&g_ts.s,
             assert_int_equal(
                 nh_quorum_call_start(f->cfg, "test.Echo.Echo", "f", 1, &o, &fut, &err), 0));
    assert_int_equal(nh_qc_future_wait(fut, NULL, &err), 0);
    nh_qc_future_free(fut);
    assert_balanced(&g_ts, 1);

    /* The blocking form with a response mapping, inside a scope. */
    nh_qc_opts o2 = {
        .call = {.timeout_ms = 5000}, .map_response = map_resp, .map_response_user = &g_ts.s};
    nh_qc_outcome out;
    IN_SCOPE(&g_ts.s, assert_int_equal(
                          nh_quorum_call(f->cfg, "test.Echo.Echo", "b", 1, &o2, &out, &err), 0));
    nh_qc_outcome_free(&out);
    assert_balanced(&g_ts, 2);
    assert_true(cb_ok() >= 3 + 2);
}

/* ---- multicast ---------------------------------------------------------------------------- */

typedef struct mc_rec {
    const nh_scope *want;
    int calls; /* atomic */
    nh_code code;
} mc_rec;

static void mc_done(const nh_error *err, void *user) {
    mc_rec *rec = user;
    check_scope(rec->want);
    rec->code = err->code;
    __atomic_add_fetch(&rec->calls, 1, __ATOMIC_SEQ_CST);
}

static void wait_count(long want) {
    for (int i = 0; i < 1000 && nh_echo_count() < want; i++)
        nh_test_sleep_ms(5);
    assert_int_equal(nh_echo_count(), want);
}

static void test_multicast_holds_for_done_or_mappings_only(void **state) {
    fixture *f = *state;
    nh_error err;
    mc_rec rec = {.want = &g_ts.s, .code = NH_UNKNOWN};
    IN_SCOPE(&g_ts.s, assert_int_equal(nh_multicast_async(f->cfg, "test.Echo.Count", "m", 1, NULL,
                                                          mc_done, &rec, &err),
                                       0));
    assert_true(wait_int(&rec.calls, 1, 5000));
    assert_int_equal(rec.code, NH_OK);
    assert_balanced(&g_ts, 1);
    wait_count(3);

    /* Fire-and-forget without mappings: nothing held. */
    IN_SCOPE(&g_ts.s,
             assert_int_equal(
                 nh_multicast_async(f->cfg, "test.Echo.Count", "m", 1, NULL, NULL, NULL, &err), 0));
    wait_count(6);
    assert_int_equal(holds(&g_ts), 1);

    /* Fire-and-forget with a request mapping: held until every request was mapped. */
    nh_qc_opts o = {.map_request = map_req, .map_request_user = &g_ts.s};
    IN_SCOPE(&g_ts.s,
             assert_int_equal(
                 nh_multicast_async(f->cfg, "test.Echo.Count", "m", 1, &o, NULL, NULL, &err), 0));
    wait_count(9);
    assert_balanced(&g_ts, 2);
    assert_int_equal(cb_ok(), 1 + 3);
}

/* ---- correctable -------------------------------------------------------------------------- */

typedef struct level_rec {
    const nh_scope *want;
    int calls; /* atomic */
    int done;  /* atomic */
} level_rec;

static void on_level(int level, const uint8_t *value, size_t len, bool done, const nh_error *err,
                     void *user) {
    (void)level;
    (void)value;
    (void)len;
    (void)err;
    level_rec *rec = user;
    check_scope(rec->want);
    __atomic_add_fetch(&rec->calls, 1, __ATOMIC_SEQ_CST);
    if (done) __atomic_store_n(&rec->done, 1, __ATOMIC_SEQ_CST);
}

static void test_correctable_on_level_runs_in_the_scope(void **state) {
    fixture *f = *state;
    nh_error err;
    nh_qc_opts o = {.call = {.timeout_ms = 5000}};
    level_rec rec = {.want = &g_ts.s};
    nh_correctable *c = NULL;
    IN_SCOPE(&g_ts.s, assert_int_equal(nh_correctable_start(f->cfg, "test.Echo.Echo", "c", 1, &o,
                                                            false, on_level, &rec, &c, &err),
                                       0));
    assert_true(wait_int(&rec.done, 1, 5000));
    assert_balanced(&g_ts, 1);
    assert_true(__atomic_load_n(&rec.calls, 0) >= 2); /* levels below 3, then the end */
    nh_correctable_free(c);

    /* Streaming: 3 servers x 3 replies, threshold 9. No handle wanted. */
    nh_qc_opts so = {.call = {.timeout_ms = 5000}, .quorum = {.threshold = 9}};
    level_rec rec2 = {.want = &g_ts.s};
    IN_SCOPE(&g_ts.s, assert_int_equal(nh_correctable_start(f->cfg, "t.S.Stream", "s", 1, &so, true,
                                                            on_level, &rec2, NULL, &err),
                                       0));
    assert_true(wait_int(&rec2.done, 1, 5000));
    assert_balanced(&g_ts, 2);
    assert_int_equal(__atomic_load_n(&rec2.calls, 0), 9); /* levels 1..8, then the end at 9 */
}

/* ---- failures ----------------------------------------------------------------------------- */

static void test_failed_calls_release_exactly_once(void **state) {
    fixture *f = *state;
    nh_error err;
    int want = 0;

    /* A node nobody listens on: the call fails (not connected / timeout). */
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", nh_test_free_port());
    nh_node *dead = NULL;
    nh_node_opts no = {.id = 99, .address = addr, .backoff_base_ms = 50, .backoff_max_ms = 100};
    assert_int_equal(nh_node_open(f->crt, &no, &dead, &err), 0);
    nh_call_opts to = {.timeout_ms = 200};
    reply_rec r1 = {.want = &g_ts.s, .code = NH_OK};
    IN_SCOPE(&g_ts.s,
             assert_int_equal(
                 nh_rpc_async(dead, "test.Echo.Echo", "d", 1, &to, reply_done, &r1, &err), 0));
    want++;
    assert_true(wait_int(&r1.calls, 1, 5000));
    assert_int_not_equal(r1.code, NH_OK);
    assert_balanced(&g_ts, want);

    /* A timeout on a server that never answers. */
    reply_rec r2 = {.want = &g_ts.s, .code = NH_OK};
    IN_SCOPE(&g_ts.s,
             assert_int_equal(
                 nh_rpc_async(f->node, "test.Echo.Hold", "h", 1, &to, reply_done, &r2, &err), 0));
    want++;
    assert_true(wait_int(&r2.calls, 1, 5000));
    assert_int_equal(r2.code, NH_DEADLINE_EXCEEDED);
    assert_balanced(&g_ts, want);

    /* Cancelled while pending. */
    nh_cancel *c = nh_cancel_new();
    nh_call_opts co = {.cancel = c};
    reply_rec r3 = {.want = &g_ts.s, .code = NH_OK};
    qc_rec q3 = {.want = &g_ts.s, .code = NH_OK};
    nh_qc_opts qco = {.call = {.cancel = c}};
    IN_SCOPE(&g_ts.s, {
        assert_int_equal(
            nh_rpc_async(f->node, "test.Echo.Hold", "h", 1, &co, reply_done, &r3, &err), 0);
        assert_int_equal(
            nh_quorum_call_async(f->cfg, "test.Echo.Hold", "h", 1, &qco, qc_done, &q3, &err), 0);
    });
    want += 2;
    nh_test_sleep_ms(50);
    assert_int_equal(releases(&g_ts), want - 2); /* still pending: held */
    nh_cancel_fire(c);
    assert_true(wait_int(&r3.calls, 1, 5000));
    assert_true(wait_int(&q3.calls, 1, 5000));
    assert_int_equal(r3.code, NH_CANCELLED);
    assert_int_equal(q3.code, NH_CANCELLED);
    assert_balanced(&g_ts, want);
    nh_cancel_free(c);

    /* A quorum call that times out, with a multicast to the dead node alongside. */
    qc_rec q4 = {.want = &g_ts.s, .code = NH_OK};
    nh_qc_opts qto = {.call = {.timeout_ms = 200}};
    IN_SCOPE(&g_ts.s, assert_int_equal(nh_quorum_call_async(f->cfg, "test.Echo.Hold", "h", 1, &qto,
                                                            qc_done, &q4, &err),
                                       0));
    want++;
    assert_true(wait_int(&q4.calls, 1, 5000));
    assert_int_equal(q4.code, NH_DEADLINE_EXCEEDED);
    assert_balanced(&g_ts, want);

    /* The node closed under a pending call: done runs with the error, released once. */
    reply_rec r5 = {.want = &g_ts.s, .code = NH_OK};
    IN_SCOPE(&g_ts.s,
             assert_int_equal(
                 nh_rpc_async(dead, "test.Echo.Echo", "d", 1, NULL, reply_done, &r5, &err), 0));
    want++;
    nh_node_close(dead);
    assert_true(wait_int(&r5.calls, 1, 5000));
    assert_int_equal(r5.code, NH_UNAVAILABLE);
    assert_balanced(&g_ts, want);
    assert_int_equal(cb_ok(), want);
}

static void test_refused_work_holds_nothing(void **state) {
    fixture *f = *state;
    nh_error err;
    reply_rec rec = {.want = &g_ts.s};
    qc_rec q = {.want = &g_ts.s};
    mc_rec m = {.want = &g_ts.s};
    level_rec l = {.want = &g_ts.s};
    nh_qc_opts bad_custom = {.quorum = {.kind = NH_QUORUM_CUSTOM}}; /* no function */
    nh_qc_opts map = {.map_request = map_req, .map_request_user = &g_ts.s};
    nh_qc_future *fut = NULL;
    IN_SCOPE(&g_ts.s, {
        assert_int_equal(nh_runtime_post(f->crt, NULL, NULL), -1);
        assert_int_equal(nh_runtime_post(NULL, task_check, NULL), -1);
        assert_int_equal(nh_runtime_run_blocking(f->crt, NULL, NULL), -1);
        assert_int_equal(nh_rpc_async(f->node, "", "x", 1, NULL, reply_done, &rec, &err), -1);
        assert_int_equal(nh_rpc_async(f->node, "a.B.C", NULL, 5, NULL, reply_done, &rec, &err), -1);
        assert_int_equal(nh_rpc_async(NULL, "a.B.C", "x", 1, NULL, reply_done, &rec, &err), -1);
        assert_int_equal(nh_unicast_async(f->node, "", "x", 1, NULL, reply_done, &rec, &err), -1);
        assert_int_equal(nh_quorum_call_async(f->cfg, "a.B.C", "x", 1, NULL, NULL, NULL, &err), -1);
        assert_int_equal(
            nh_quorum_call_async(f->cfg, "a.B.C", "x", 1, &bad_custom, qc_done, &q, &err), -1);
        assert_int_equal(nh_quorum_call_async(NULL, "a.B.C", "x", 1, NULL, qc_done, &q, &err), -1);
        assert_int_equal(nh_quorum_call_start(f->cfg, "", "x", 1, &map, &fut, &err), -1);
        assert_int_equal(nh_multicast_async(f->cfg, "", "x", 1, &map, mc_done, &m, &err), -1);
        assert_int_equal(
            nh_correctable_start(f->cfg, "", "x", 1, &map, false, on_level, &l, NULL, &err), -1);
    });
    assert_int_equal(holds(&g_ts), 0);
    assert_int_equal(releases(&g_ts), 0);
    assert_int_equal(cb_ok(), 0);
}

/* ---- work dropped or refused while a runtime is freed ------------------------------------- */

typedef struct stopper {
    nh_runtime *rt;
    nh_node *node;
    nh_config *cfg;
    int posts_ok;     /* posts accepted before the stop (each must run and release) */
    int refused_ok;   /* refusals seen after the stop (each must hold nothing) */
    int refused_held; /* refusals that changed the hold count (must stay 0) */
    int transient;    /* holds taken and released again inside refused calls (a race) */
    int posted_ran;   /* atomic: accepted posts that ran */
} stopper;

static void count_ran(void *arg) {
    stopper *s = arg;
    check_scope(&g_ts.s);
    __atomic_add_fetch(&s->posted_ran, 1, __ATOMIC_SEQ_CST);
}

/* Runs on a worker of the runtime being freed, inside g_ts (captured at run_blocking): posts
 * until the runtime refuses, then checks that refused work holds nothing (this thread's net
 * holds are unchanged around each refused call). */
static void stop_worker(void *arg) {
    stopper *s = arg;
    check_scope(&g_ts.s);
    for (int i = 0; i < 5000; i++) {
        int h0 = tl_net_holds, t0 = tl_holds;
        if (nh_runtime_post(s->rt, count_ran, s) != 0) {
            if (tl_net_holds != h0) s->refused_held++;
            s->transient += tl_holds - t0;
            break;
        }
        s->posts_ok++;
        usleep(1000);
    }
    nh_error err;
    reply_rec rec = {.want = &g_ts.s};
    qc_rec q = {.want = &g_ts.s};
    nh_qc_opts map = {.map_request = map_req, .map_request_user = &g_ts.s};
    nh_qc_future *fut = NULL;
    int h0 = tl_net_holds, t0 = tl_holds;
    s->refused_ok += nh_runtime_post(s->rt, count_ran, s) == -1;
    s->refused_ok +=
        nh_rpc_async(s->node, "test.Echo.Echo", "x", 1, NULL, reply_done, &rec, &err) == -1;
    s->refused_ok +=
        nh_quorum_call_async(s->cfg, "test.Echo.Echo", "x", 1, NULL, qc_done, &q, &err) == -1;
    s->refused_ok += nh_quorum_call_start(s->cfg, "test.Echo.Echo", "x", 1, &map, &fut, &err) == -1;
    if (tl_net_holds != h0) s->refused_held++;
    s->transient += tl_holds - t0;
    nh_config_unref(s->cfg); /* the worker's own reference */
}

static void test_work_dropped_or_refused_at_runtime_free(void **state) {
    fixture *f = *state;
    nh_error err;
    nh_runtime_opts ro = {.name = "doomed", .workers = 1};
    stopper s = {0};
    assert_int_equal(nh_runtime_new(&ro, &s.rt, &err), 0);
    nh_config *cfg = make_config(s.rt, f);
    s.cfg = nh_config_ref(cfg); /* for the worker, which uses it while the runtime stops */
    s.node = nh_config_node(cfg, 0);

    /* Pending calls that only the runtime's end can finish (no timeout, never answered). */
    reply_rec r = {.want = &g_ts.s, .code = NH_OK};
    qc_rec q = {.want = &g_ts.s, .code = NH_OK};
    level_rec l = {.want = &g_ts.s};
    nh_qc_opts map = {.map_request = map_req, .map_request_user = &g_ts.s};
    nh_qc_future *fut = NULL;
    IN_SCOPE(&g_ts.s, {
        assert_int_equal(nh_rpc_async(s.node, "test.Echo.Hold", "h", 1, NULL, reply_done, &r, &err),
                         0);
        assert_int_equal(
            nh_quorum_call_async(s.cfg, "test.Echo.Hold", "h", 1, NULL, qc_done, &q, &err), 0);
        assert_int_equal(nh_correctable_start(s.cfg, "test.Echo.Hold", "h", 1, NULL, false,
                                              on_level, &l, NULL, &err),
                         0);
        assert_int_equal(nh_quorum_call_start(s.cfg, "test.Echo.Hold", "h", 1, &map, &fut, &err),
                         0);
        assert_int_equal(nh_runtime_run_blocking(s.rt, stop_worker, &s), 0);
    });
    nh_test_sleep_ms(50);
    assert_int_equal(__atomic_load_n(&r.calls, 0), 0); /* still pending, still held */
    assert_int_equal(__atomic_load_n(&q.calls, 0), 0);
    assert_true(holds(&g_ts) >= 5);

    nh_config_unref(cfg);
    nh_runtime_free(s.rt);

    /* Every pending call ended with an error, each hold was released once, and every refused
     * call after the stop held nothing. */
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.code, NH_UNAVAILABLE);
    assert_int_equal(q.calls, 1);
    assert_int_not_equal(q.code, NH_OK);
    assert_int_equal(l.done, 1);
    assert_int_not_equal(nh_qc_future_wait(fut, NULL, &err), 0);
    nh_qc_future_free(fut);
    assert_int_equal(s.refused_held, 0);
    assert_int_equal(s.refused_ok, 4);
    assert_int_equal(s.posted_ran, s.posts_ok);
    /* A post that passed the accepting check just before the stop holds and releases inside
     * the refused call; those transient holds are balanced and counted apart. */
    assert_int_equal(holds(&g_ts), 5 + s.posts_ok + s.transient);
    assert_int_equal(releases(&g_ts), 5 + s.posts_ok + s.transient);
    assert_int_equal(__atomic_load_n(&g_ts.bad, 0), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_enter_returns_the_previous_scope_and_nests, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_post_holds_until_the_task_ran, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_blocking_holds_until_the_task_ran, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_offload_holds_the_handlers_scope_until_the_worker_returned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc_async_done_runs_in_the_scope_and_releases_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_unicast_async_holds_only_with_a_callback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_quorum_call_async_runs_every_function_in_the_scope,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_futures_hold_only_for_mappings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multicast_holds_for_done_or_mappings_only, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_correctable_on_level_runs_in_the_scope, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_calls_release_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_work_holds_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_work_dropped_or_refused_at_runtime_free, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
