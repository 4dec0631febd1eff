/* Integration: membership (every known peer, connected or not) next to Config, quorum calls
 * counted against it, quorum functions that fail a call with their own status, and timers on
 * the owner thread. Real gRPC on loopback, each node in its own runtime. */
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

#define N 3

typedef struct mnode {
    uint32_t id;
    char addr[32];
    nh_runtime *rt;
    nh_server *srv;
    int served; /* atomic: sys.Id requests served */
} mnode;

static mnode g[N];
static nh_node_addr g_peers[N];

static void h_id(nh_server_ctx *ctx, void *user) {
    mnode *m = user;
    __atomic_add_fetch(&m->served, 1, __ATOMIC_RELAXED);
    char buf[16];
    int k = snprintf(buf, sizeof buf, "%u", m->id);
    nh_ctx_reply(ctx, buf, (size_t)k);
}

static void nested_done(const nh_qc_result *r, void *user) {
    nh_server_ctx *ctx = user;
    if (r->err.code == NH_OK)
        nh_ctx_reply(ctx, r->value, r->value_len);
    else
        nh_ctx_reply_error(ctx, r->err.code, "%s", r->err.message);
}

/* sys.MajorityOfMembers: a majority quorum call over the node's membership. */
static void h_members_majority(nh_server_ctx *ctx, void *user) {
    (void)user;
    nh_config *m = nh_ctx_members(ctx);
    nh_ctx_defer(ctx);
    nh_qc_opts o = {.call = {.timeout_ms = 5000}, .quorum = {.kind = NH_QUORUM_MAJORITY}};
    nh_error err;
    if (nh_quorum_call_async(m, "sys.Id", "", 0, &o, nested_done, ctx, &err) != 0)
        nh_ctx_reply_error(ctx, err.code, "%s", err.message);
    nh_config_unref(m);
}

/* sys.MajorityOfConfig: the same over Config (Gorums' definition: whoever is connected). */
static void h_config_majority(nh_server_ctx *ctx, void *user) {
    (void)user;
    nh_config *c = nh_ctx_config(ctx);
    nh_ctx_defer(ctx);
    nh_qc_opts o = {.call = {.timeout_ms = 5000}, .quorum = {.kind = NH_QUORUM_MAJORITY}};
    nh_error err;
    if (nh_quorum_call_async(c, "sys.Id", "", 0, &o, nested_done, ctx, &err) != 0)
        nh_ctx_reply_error(ctx, err.code, "%s", err.message);
    nh_config_unref(c);
}

static void start_node(int i) {
    mnode *m = &g[i];
    nh_error err;
    nh_runtime_opts ro = {.name = "m"};
    assert_int_equal(nh_runtime_new(&ro, &m->rt, &err), 0);
    nh_server_opts so = {.listen = m->addr,
                         .node_id = m->id,
                         .peers = g_peers,
                         .peer_count = N,
                         .dial_peers = true,
                         .backoff_base_ms = 50,
                         .backoff_max_ms = 200};
    int port;
    if (nh_server_new(m->rt, &so, &m->srv, &port, &err) != 0)
        fail_msg("node %u: %s", m->id, err.message);
    nh_server_handle(m->srv, "sys.Id", h_id, m, &err);
    nh_server_handle(m->srv, "sys.MajorityOfMembers", h_members_majority, m, &err);
    nh_server_handle(m->srv, "sys.MajorityOfConfig", h_config_majority, m, &err);
}

static void stop_node(int i) {
    nh_runtime_free(g[i].rt);
    g[i].rt = NULL;
    g[i].srv = NULL;
}

static void wait_config_size(int i, size_t size) {
    nh_error err;
    if (nh_server_wait_config(g[i].srv, false, nh_test_size_is, (void *)(uintptr_t)size, 10000,
                              &err) != 0)
        fail_msg("node %u: Config did not reach size %zu: %s", g[i].id, size, err.message);
}

static int setup(void **state) {
    (void)state;
    for (int i = 0; i < N; i++) {
        g[i].id = (uint32_t)i + 1;
        g[i].served = 0;
        snprintf(g[i].addr, sizeof g[i].addr, "127.0.0.1:%d", nh_test_free_port());
        g_peers[i] = (nh_node_addr){.id = g[i].id, .address = g[i].addr};
    }
    start_node(0); /* only node 1: the others are down until a test starts them */
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < N; i++)
        if (g[i].rt) stop_node(i);
    return 0;
}

/* Calls method on node i as a regular client. Returns 0 with the reply, or -1 with err. */
static int call_node(nh_runtime *rt, int i, const char *method, char *out, size_t out_len,
                     nh_error *err) {
    nh_node_opts no = {.id = g[i].id, .address = g[i].addr};
    nh_node *node;
    if (nh_node_open(rt, &no, &node, err) != 0) return -1;
    nh_buf resp;
    nh_call_opts o = {.timeout_ms = 10000};
    int rc = nh_rpc(node, method, "", 0, &o, &resp, err);
    if (rc == 0) {
        snprintf(out, out_len, "%.*s", (int)resp.len, (const char *)resp.data);
        nh_buf_free(&resp);
    }
    nh_node_close(node);
    return rc;
}

static void test_membership_lists_every_known_peer_connected_or_not(void **state) {
    (void)state;
    nh_config *m = nh_server_members(g[0].srv);
    uint32_t ids[N];
    assert_int_equal(nh_config_ids(m, ids, N), N);
    for (int i = 0; i < N; i++)
        assert_int_equal(ids[i], i + 1);
    assert_true(nh_config_is_membership(m));
    assert_int_equal(nh_config_reachable(m), 1); /* only itself */
    nh_config *sorted = nh_config_sort_by_latency(m);
    assert_true(nh_config_is_membership(sorted)); /* same nodes: still the membership */
    uint32_t two = 2;
    nh_config *sub = nh_config_remove(m, &two, 1);
    assert_false(nh_config_is_membership(sub)); /* a subset is not */
    nh_config_unref(sub);
    nh_config_unref(sorted);
    nh_config *c = nh_server_config(g[0].srv);
    assert_int_equal(nh_config_size(c), 1); /* Config is unchanged: self + connected */
    assert_false(nh_config_is_membership(c));
    nh_config_unref(c);
    nh_config_unref(m);
}

static void test_lone_node_refuses_majority_of_members_without_sending(void **state) {
    (void)state;
    nh_runtime *rt;
    nh_error err;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    char out[64];
    int served_before = __atomic_load_n(&g[0].served, __ATOMIC_RELAXED);
    assert_int_equal(call_node(rt, 0, "sys.MajorityOfMembers", out, sizeof out, &err), -1);
    assert_int_equal(err.code, NH_UNAVAILABLE);
    if (!strstr(err.message, "1 of 3 members reachable, majority needs 2"))
        fail_msg("unexpected message: %s", err.message);
    /* Refused before sending: not even the node itself served the inner call. */
    assert_int_equal(__atomic_load_n(&g[0].served, __ATOMIC_RELAXED), served_before);
    /* Over Config (Gorums' definition) the lone node is a majority of itself. */
    assert_int_equal(call_node(rt, 0, "sys.MajorityOfConfig", out, sizeof out, &err), 0);
    assert_string_equal(out, "1");
    nh_runtime_free(rt);
}

static void test_two_of_three_members_make_a_majority(void **state) {
    (void)state;
    start_node(1);
    wait_config_size(0, 2);
    nh_runtime *rt;
    nh_error err;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    char out[64];
    if (call_node(rt, 0, "sys.MajorityOfMembers", out, sizeof out, &err) != 0)
        fail_msg("%s", err.message);
    nh_config *m = nh_server_members(g[0].srv);
    assert_int_equal(nh_config_size(m), 3);
    assert_int_equal(nh_config_reachable(m), 2);
    nh_config_unref(m);
    /* Node 2 goes away again: back to a refusal that names the reachable count. */
    stop_node(1);
    wait_config_size(0, 1);
    assert_int_equal(call_node(rt, 0, "sys.MajorityOfMembers", out, sizeof out, &err), -1);
    if (!strstr(err.message, "1 of 3 members reachable"))
        fail_msg("unexpected message: %s", err.message);
    nh_runtime_free(rt);
}

/* A member that is not connected is a failed leg, never silence: ALL over the membership with
 * one member down fails at once, and a threshold of 2 names it too. */
static void test_disconnected_member_is_a_failed_leg(void **state) {
    (void)state;
    start_node(2);
    wait_config_size(0, 2);
    nh_config *m = nh_server_members(g[0].srv);
    nh_qc_opts o = {.call = {.timeout_ms = 5000}, .quorum = {.kind = NH_QUORUM_FIRST}};
    nh_qc_outcome out;
    nh_error err;
    /* FIRST needs one reachable member: it succeeds, and node 2's leg is an UNAVAILABLE error
     * if it was recorded before the quorum. */
    assert_int_equal(nh_quorum_call(m, "sys.Id", "", 0, &o, &out, &err), 0);
    nh_qc_outcome_free(&out);
    o.quorum.kind = NH_QUORUM_ALL;
    assert_int_equal(nh_quorum_call(m, "sys.Id", "", 0, &o, &out, &err), -1);
    assert_int_equal(err.code, NH_UNAVAILABLE);
    if (!strstr(err.message, "2 of 3 members reachable, all needs 3"))
        fail_msg("unexpected message: %s", err.message);
    nh_qc_outcome_free(&out);
    nh_config_unref(m);
}

/* ---- quorum functions that fail the call --------------------------------------------------- */

static nh_qf_verdict fail_on_first(const nh_node_reply *r, size_t n, size_t size, void *user,
                                   const uint8_t **res, size_t *res_len) {
    (void)r, (void)size, (void)res, (void)res_len;
    int *calls = user;
    (*calls)++;
    if (n == 0) return NH_QF_MORE;
    return nh_qf_fail(NH_FAILED_PRECONDITION, "replica %u disagrees", r[0].node_id);
}

static nh_qf_verdict fail_without_status(const nh_node_reply *r, size_t n, size_t size, void *user,
                                         const uint8_t **res, size_t *res_len) {
    (void)r, (void)n, (void)size, (void)user, (void)res, (void)res_len;
    return NH_QF_FAIL;
}

static void test_quorum_function_fails_the_call_with_its_status(void **state) {
    (void)state;
    nh_error err;
    nh_node_addr one = {.id = g[0].id, .address = g[0].addr};
    nh_config_opts co = {.nodes = &one, .count = 1};
    nh_runtime *rt;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    nh_config *cfg;
    assert_int_equal(nh_config_new(rt, &co, &cfg, &err), 0);
    int calls = 0;
    nh_qc_opts o = {.call = {.timeout_ms = 5000},
                    .quorum = {.kind = NH_QUORUM_CUSTOM, .fn = fail_on_first, .fn_user = &calls}};
    nh_qc_outcome out;
    assert_int_equal(nh_quorum_call(cfg, "sys.Id", "", 0, &o, &out, &err), -1);
    assert_int_equal(err.code, NH_FAILED_PRECONDITION);
    assert_int_equal(err.kind, NH_ERR_INCOMPLETE);
    assert_string_equal(err.message, "replica 1 disagrees");
    assert_int_equal(out.n_replies, 1);
    nh_qc_outcome_free(&out);
    o.quorum.fn = fail_without_status;
    assert_int_equal(nh_quorum_call(cfg, "sys.Id", "", 0, &o, &out, &err), -1);
    assert_int_equal(err.code, NH_UNKNOWN);
    assert_string_equal(err.message, "the quorum function failed the call");
    nh_qc_outcome_free(&out);
    nh_config_unref(cfg);
    nh_runtime_free(rt);
}

/* ---- timers ----------------------------------------------------------------------------- */

typedef struct tcount {
    int fired, holds, releases; /* atomics */
    nh_runtime *rt;
    bool on_owner;
    nh_timer *self; /* stop itself after `stop_after` firings */
    int stop_after;
} tcount;

static void on_tick(void *arg) {
    tcount *t = arg;
    int n = __atomic_add_fetch(&t->fired, 1, __ATOMIC_SEQ_CST);
    if (!nh_runtime_on_owner(t->rt)) t->on_owner = false;
    if (t->self && n == t->stop_after) {
        nh_timer_stop(t->self); /* on the owner thread: no further firing */
        t->self = NULL;
    }
}

static void hold(void *arg) {
    __atomic_add_fetch(&((tcount *)arg)->holds, 1, __ATOMIC_SEQ_CST);
}

static void release(void *arg) {
    __atomic_add_fetch(&((tcount *)arg)->releases, 1, __ATOMIC_SEQ_CST);
}

static bool wait_value(int *p, int want, int ms) {
    for (int i = 0; i < ms / 5; i++) {
        if (__atomic_load_n(p, __ATOMIC_SEQ_CST) == want) return true;
        nh_test_sleep_ms(5);
    }
    return __atomic_load_n(p, __ATOMIC_SEQ_CST) == want;
}

static void test_one_shot_timer_fires_once_and_releases_its_scope(void **state) {
    (void)state;
    tcount t = {.on_owner = true};
    nh_error err;
    assert_int_equal(nh_runtime_new(NULL, &t.rt, &err), 0);
    nh_scope scope = {hold, release, &t};
    const nh_scope *prev = nh_scope_enter(&scope);
    assert_int_equal(nh_timer_start(t.rt, 10, 0, on_tick, &t, NULL, &err), 0);
    nh_scope_enter(prev);
    assert_int_equal(__atomic_load_n(&t.holds, __ATOMIC_SEQ_CST), 1);
    assert_true(wait_value(&t.releases, 1, 5000));
    assert_int_equal(t.fired, 1);
    nh_test_sleep_ms(50);
    assert_int_equal(t.fired, 1);
    assert_true(t.on_owner);
    /* A periodic timer needs a handle. */
    assert_int_equal(nh_timer_start(t.rt, 10, 10, on_tick, &t, NULL, &err), -1);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    nh_runtime_free(t.rt);
}

static void test_periodic_timer_holds_its_scope_until_stopped(void **state) {
    (void)state;
    tcount t = {.on_owner = true};
    nh_error err;
    assert_int_equal(nh_runtime_new(NULL, &t.rt, &err), 0);
    nh_scope scope = {hold, release, &t};
    nh_timer *timer;
    const nh_scope *prev = nh_scope_enter(&scope);
    assert_int_equal(nh_timer_start(t.rt, 1, 2, on_tick, &t, &timer, &err), 0);
    nh_scope_enter(prev);
    assert_true(wait_value(&t.fired, 5, 5000) || __atomic_load_n(&t.fired, __ATOMIC_SEQ_CST) > 5);
    assert_int_equal(__atomic_load_n(&t.releases, __ATOMIC_SEQ_CST),
                     0); /* still pending: a reload would wait for it */
    nh_timer_stop(timer);
    assert_true(wait_value(&t.releases, 1, 5000));
    nh_test_sleep_ms(20);
    int fired = __atomic_load_n(&t.fired, __ATOMIC_SEQ_CST);
    nh_test_sleep_ms(50);
    assert_int_equal(__atomic_load_n(&t.fired, __ATOMIC_SEQ_CST), fired); /* no more ticks */
    assert_int_equal(__atomic_load_n(&t.holds, __ATOMIC_SEQ_CST), 1);
    nh_runtime_free(t.rt);
}

/* Started on the owner thread: t.self is set before the loop can fire it. */
typedef struct start_on_owner {
    tcount *c;
    sem_t done;
    int rc;
} start_on_owner;

static void start_self_stopping(void *arg) {
    start_on_owner *so = arg;
    nh_error err;
    so->rc = nh_timer_start(so->c->rt, 1, 1, on_tick, so->c, &so->c->self, &err);
    sem_post(&so->done);
}

static void test_timer_stopped_from_its_function_fires_exactly_n_times(void **state) {
    (void)state;
    tcount t = {.on_owner = true, .stop_after = 3};
    nh_error err;
    assert_int_equal(nh_runtime_new(NULL, &t.rt, &err), 0);
    start_on_owner so = {.c = &t, .rc = -1};
    sem_init(&so.done, 0, 0);
    assert_int_equal(nh_runtime_post(t.rt, start_self_stopping, &so), 0);
    sem_wait(&so.done);
    sem_destroy(&so.done);
    assert_int_equal(so.rc, 0);
    assert_true(wait_value(&t.fired, 3, 5000));
    nh_test_sleep_ms(50);
    assert_int_equal(__atomic_load_n(&t.fired, __ATOMIC_SEQ_CST), 3);
    nh_runtime_free(t.rt);
}

static void test_runtime_stop_ends_running_timers(void **state) {
    (void)state;
    tcount t = {.on_owner = true};
    nh_error err;
    assert_int_equal(nh_runtime_new(NULL, &t.rt, &err), 0);
    nh_scope scope = {hold, release, &t};
    nh_timer *timer;
    const nh_scope *prev = nh_scope_enter(&scope);
    assert_int_equal(nh_timer_start(t.rt, 1, 1, on_tick, &t, &timer, &err), 0);
    assert_int_equal(nh_timer_start(t.rt, 100000, 0, on_tick, &t, NULL, &err), 0);
    nh_scope_enter(prev);
    assert_int_equal(__atomic_load_n(&t.holds, __ATOMIC_SEQ_CST), 2);
    nh_runtime_free(t.rt); /* both stop with the runtime: their scopes are released */
    assert_int_equal(__atomic_load_n(&t.releases, __ATOMIC_SEQ_CST), 2);
    nh_timer_stop(timer); /* the handle is still the caller's to release */
}

/* A timer started from another thread and stopped on the owner thread before its start reached
 * the owner thread: nothing fires, nothing is used after it was freed (ASan/valgrind). */
typedef struct stop_first {
    sem_t go, done;
    nh_timer *t;
    tcount c;
} stop_first;

static void stop_when_told(void *arg) {
    stop_first *sf = arg;
    sem_wait(&sf->go); /* holds the owner thread until the timer's start is queued behind us */
    nh_timer_stop(sf->t);
    sem_post(&sf->done);
}

static void test_timer_stopped_before_it_was_armed(void **state) {
    (void)state;
    stop_first sf = {.c = {.on_owner = true}};
    sem_init(&sf.go, 0, 0);
    sem_init(&sf.done, 0, 0);
    nh_error err;
    assert_int_equal(nh_runtime_new(NULL, &sf.c.rt, &err), 0);
    assert_int_equal(nh_runtime_post(sf.c.rt, stop_when_told, &sf), 0);
    assert_int_equal(nh_timer_start(sf.c.rt, 1, 1, on_tick, &sf.c, &sf.t, &err), 0);
    sem_post(&sf.go);
    sem_wait(&sf.done);
    nh_test_sleep_ms(50);
    assert_int_equal(__atomic_load_n(&sf.c.fired, __ATOMIC_SEQ_CST), 0);
    nh_runtime_free(sf.c.rt);
    sem_destroy(&sf.go);
    sem_destroy(&sf.done);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_membership_lists_every_known_peer_connected_or_not,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_lone_node_refuses_majority_of_members_without_sending,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_of_three_members_make_a_majority, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnected_member_is_a_failed_leg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quorum_function_fails_the_call_with_its_status, setup,
                                        teardown),
        cmocka_unit_test(test_one_shot_timer_fires_once_and_releases_its_scope),
        cmocka_unit_test(test_periodic_timer_holds_its_scope_until_stopped),
        cmocka_unit_test(test_timer_stopped_from_its_function_fires_exactly_n_times),
        cmocka_unit_test(test_runtime_stop_ends_running_timers),
        cmocka_unit_test(test_timer_stopped_before_it_was_armed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
