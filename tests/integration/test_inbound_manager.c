/* Integration: the inbound manager's spec §6 lists (inbound_manager_test.go, system_test.go):
 * change notifications in order, waits, handler multicast over Config, and in-process dispatch
 * under contention. Peers are client runtimes announcing IDs over real gRPC on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nh_test_util.h"

#include <nodehost/nodehost.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a node 1 with known peers 1, 2, 3, recording every Config it is told about ----------- */

typedef struct recorder {
    pthread_mutex_t mu;
    char log[64][32]; /* "C:1,2" for Config, "K:..." for ClientConfig */
    int n;
} recorder;

static recorder g_rec;
static nh_runtime *g_rt;
static nh_server *g_srv;
static char g_addr[32];
static long g_deliveries;

static void record(nh_config *cfg, bool client, void *user) {
    recorder *r = user;
    uint32_t ids[16];
    size_t n = nh_config_ids(cfg, ids, 16); /* the size: may exceed 16 */
    if (n > 16) n = 16;
    pthread_mutex_lock(&r->mu);
    if (r->n < 64) {
        size_t off = (size_t)snprintf(r->log[r->n], 32, "%c:", client ? 'K' : 'C');
        for (size_t i = 0; i < n && off < 32; i++)
            off += (size_t)snprintf(r->log[r->n] + off, 32 - off, i ? ",%u" : "%u", ids[i]);
        r->n++;
    }
    pthread_mutex_unlock(&r->mu);
}

static void h_count(nh_server_ctx *ctx, void *user) {
    (void)ctx;
    (void)user;
    __atomic_add_fetch(&g_deliveries, 1, __ATOMIC_RELAXED);
}

static void h_id(nh_server_ctx *ctx, void *user) {
    (void)user;
    nh_ctx_reply(ctx, "1", 1);
}

static int setup(void **state) {
    (void)state;
    nh_error err;
    memset(&g_rec, 0, sizeof g_rec);
    pthread_mutex_init(&g_rec.mu, NULL);
    int port = nh_test_free_port();
    snprintf(g_addr, sizeof g_addr, "127.0.0.1:%d", port);
    nh_node_addr peers[] = {{.id = 1, .address = g_addr},
                            {.id = 2, .address = "127.0.0.1:1"},
                            {.id = 3, .address = "127.0.0.1:2"}};
    assert_int_equal(nh_runtime_new(NULL, &g_rt, &err), 0);
    nh_server_opts so = {.listen = g_addr,
                         .node_id = 1,
                         .peers = peers,
                         .peer_count = 3,
                         .on_config_change = record,
                         .change_user = &g_rec};
    assert_int_equal(nh_server_new(g_rt, &so, &g_srv, NULL, &err), 0);
    nh_server_handle(g_srv, "im.Count", h_count, NULL, &err);
    nh_server_handle(g_srv, "sys.Id", h_id, NULL, &err);
    g_deliveries = 0;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    nh_runtime_free(g_rt);
    pthread_mutex_destroy(&g_rec.mu);
    return 0;
}

/* A peer announcing an ID: a client runtime's configuration of node 1. */
static nh_config *peer_as(nh_runtime *rt, const char *id) {
    nh_error err;
    const char *addrs[] = {g_addr};
    nh_metadata md[] = {{"gorums-node-id", id}};
    nh_config_opts co = {.addresses = addrs, .count = 1, .metadata = md, .metadata_count = 1};
    nh_config *c;
    if (nh_config_new(rt, &co, &c, &err) != 0) fail_msg("%s", err.message);
    return c;
}

static bool ids_are(const nh_config *cfg, void *user) {
    const char *want = user;
    uint32_t ids[16];
    size_t n = nh_config_ids(cfg, ids, 16); /* the size: may exceed 16 */
    if (n > 16) n = 16;
    char got[64];
    size_t off = 0;
    got[0] = '\0';
    for (size_t i = 0; i < n && off < sizeof got; i++)
        off += (size_t)snprintf(got + off, sizeof got - off, i ? ",%u" : "%u", ids[i]);
    return !strcmp(got, want);
}

static void wait_ids(const char *want) {
    nh_error err;
    if (nh_server_wait_config(g_srv, false, ids_are, (void *)want, 10000, &err) != 0)
        fail_msg("Config never became [%s]: %s", want, err.message);
}

static void expect_log(const char *const *want, int n) {
    for (int tries = 0; tries < 200; tries++) {
        pthread_mutex_lock(&g_rec.mu);
        int have = g_rec.n;
        pthread_mutex_unlock(&g_rec.mu);
        if (have >= n) break;
        nh_test_sleep_ms(10);
    }
    pthread_mutex_lock(&g_rec.mu);
    if (g_rec.n != n) {
        for (int i = 0; i < g_rec.n; i++)
            fprintf(stderr, "log[%d] = %s\n", i, g_rec.log[i]);
        pthread_mutex_unlock(&g_rec.mu);
        fail_msg("%d notifications, want %d", g_rec.n, n);
    }
    for (int i = 0; i < n; i++)
        assert_string_equal(g_rec.log[i], want[i]);
    pthread_mutex_unlock(&g_rec.mu);
}

static void test_construction_notifies_once_with_self(void **state) {
    (void)state;
    const char *want[] = {"C:1"};
    expect_log(want, 1);
}

static void test_peers_connecting_and_leaving_notify_each_change_in_order(void **state) {
    (void)state;
    /* As Gorums' TestOnConfigChangeCallbackMultiplePeers: connect 3, then 2, disconnect 3,
     * then 2 -> [1,3], [1,2,3], [1,2], [1]. */
    nh_error err;
    nh_runtime *rt;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    nh_config *p3 = peer_as(rt, "3");
    wait_ids("1,3");
    nh_config *p2 = peer_as(rt, "2");
    wait_ids("1,2,3");
    nh_config_unref(p3);
    wait_ids("1,2");
    nh_config_unref(p2);
    wait_ids("1");
    const char *want[] = {"C:1", "C:1,3", "C:1,2,3", "C:1,2", "C:1"};
    expect_log(want, 5);
    nh_runtime_free(rt);
}

static void test_client_config_changes_are_notified_too(void **state) {
    (void)state;
    nh_error err;
    nh_runtime *rt;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    nh_config *c = peer_as(rt, "0");
    assert_int_equal(nh_server_wait_config(g_srv, true, ids_are, "1048576", 10000, &err), 0);
    nh_config_unref(c);
    assert_int_equal(nh_server_wait_config(g_srv, true, ids_are, "", 10000, &err), 0);
    nh_runtime_free(rt);
    const char *want[] = {"C:1", "K:1048576", "K:"};
    expect_log(want, 3);
}

typedef struct waiter {
    int rc;
    nh_error err;
} waiter;

static void *wait_three(void *p) {
    waiter *w = p;
    w->rc = nh_server_wait_config(g_srv, false, ids_are, "1,2,3", 20000, &w->err);
    return NULL;
}

static void test_waits_meet_time_out_and_end_at_stop(void **state) {
    (void)state;
    nh_error err;
    /* Already met. */
    assert_int_equal(nh_server_wait_config(g_srv, false, ids_are, "1", 1000, &err), 0);
    /* Deadline. */
    assert_int_equal(nh_server_wait_config(g_srv, false, ids_are, "1,2", 100, &err), -1);
    assert_int_equal(err.code, NH_DEADLINE_EXCEEDED);
    /* Five concurrent waiters, met after connects. */
    pthread_t t[5];
    waiter w[5];
    for (int i = 0; i < 5; i++)
        pthread_create(&t[i], NULL, wait_three, &w[i]);
    nh_runtime *rt;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    nh_config *p2 = peer_as(rt, "2");
    nh_config *p3 = peer_as(rt, "3");
    for (int i = 0; i < 5; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].rc, 0);
    }
    /* WaitForClientConfig. */
    nh_config *cl = peer_as(rt, "0");
    assert_int_equal(nh_server_wait_config(g_srv, true, ids_are, "1048576", 10000, &err), 0);
    /* Stop: a waiter is released with UNAVAILABLE. */
    waiter late;
    pthread_t tl;
    nh_config_unref(p3);
    wait_ids("1,2");
    pthread_create(&tl, NULL, wait_three, &late);
    nh_test_sleep_ms(50);
    nh_server_free(g_srv);
    pthread_join(tl, NULL);
    assert_int_equal(late.rc, -1);
    assert_int_equal(late.err.code, NH_UNAVAILABLE);
    nh_config_unref(p2);
    nh_config_unref(cl);
    nh_runtime_free(rt);
}

/* ---- a three-node system ------------------------------------------------------------------- */

typedef struct node3 {
    nh_runtime *rt;
    nh_server *srv;
    char addr[32];
    long inner; /* atomic: deliveries of sys.Inner */
} node3;

static node3 g3[3];

static void h_inner(nh_server_ctx *ctx, void *user) {
    (void)ctx;
    node3 *n = user;
    __atomic_add_fetch(&n->inner, 1, __ATOMIC_RELAXED);
}

/* sys.Spread: multicasts sys.Inner over this node's Config. */
static void h_spread(nh_server_ctx *ctx, void *user) {
    (void)user;
    nh_config *cfg = nh_ctx_config(ctx);
    nh_multicast_async(cfg, "sys.Inner", "", 0, NULL, NULL, NULL, NULL);
    nh_config_unref(cfg);
}

static void h_node_id(nh_server_ctx *ctx, void *user) {
    node3 *n = user;
    char buf[8];
    int k = snprintf(buf, sizeof buf, "%d", (int)(n - g3) + 1);
    nh_ctx_reply(ctx, buf, (size_t)k);
}

typedef struct chain {
    nh_server_ctx *ctx;
} chain;

static void chain_done(const nh_qc_result *r, void *user) {
    nh_server_ctx *ctx = user;
    if (r->err.code == NH_OK)
        nh_ctx_reply(ctx, "ok", 2);
    else
        nh_ctx_reply_error(ctx, r->err.code, "%s", r->err.message);
}

/* sys.Chain: a nested All quorum call over Config (self included), without releasing. */
static void h_chain(nh_server_ctx *ctx, void *user) {
    (void)user;
    nh_config *cfg = nh_ctx_config(ctx);
    nh_ctx_defer(ctx);
    nh_qc_opts o = {.call = {.timeout_ms = 10000}, .quorum = {.kind = NH_QUORUM_ALL}};
    nh_error err;
    if (nh_quorum_call_async(cfg, "sys.Id", "", 0, &o, chain_done, ctx, &err) != 0)
        nh_ctx_reply_error(ctx, err.code, "%s", err.message);
    nh_config_unref(cfg);
}

static int setup3(void **state) {
    (void)state;
    nh_error err;
    nh_node_addr peers[3];
    for (int i = 0; i < 3; i++) {
        snprintf(g3[i].addr, sizeof g3[i].addr, "127.0.0.1:%d", nh_test_free_port());
        peers[i] = (nh_node_addr){.id = (uint32_t)i + 1, .address = g3[i].addr};
        g3[i].inner = 0;
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(nh_runtime_new(NULL, &g3[i].rt, &err), 0);
        nh_server_opts so = {.listen = g3[i].addr,
                             .node_id = (uint32_t)i + 1,
                             .peers = peers,
                             .peer_count = 3,
                             .dial_peers = true,
                             .backoff_base_ms = 50,
                             .backoff_max_ms = 300};
        assert_int_equal(nh_server_new(g3[i].rt, &so, &g3[i].srv, NULL, &err), 0);
        nh_server_handle(g3[i].srv, "sys.Inner", h_inner, &g3[i], &err);
        nh_server_handle(g3[i].srv, "sys.Spread", h_spread, &g3[i], &err);
        nh_server_handle(g3[i].srv, "sys.Id", h_node_id, &g3[i], &err);
        nh_server_handle(g3[i].srv, "sys.Chain", h_chain, &g3[i], &err);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(nh_server_wait_config(g3[i].srv, false, ids_are, "1,2,3", 10000, &err), 0);
    return 0;
}

static int teardown3(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++)
        nh_runtime_free(g3[i].rt);
    return 0;
}

static void test_handlers_multicast_over_config_reach_every_node(void **state) {
    (void)state;
    /* As Gorums' TestSystemHandlerCanMulticastViaConfig: a multicast to the three nodes, whose
     * handlers each multicast over their Config -> 9 inner deliveries (self included). */
    nh_config *out = nh_server_outbound_config(g3[0].srv); /* node 1's view of 2 and 3 */
    nh_config *cfg = nh_server_config(g3[0].srv);          /* 1 (local), 2, 3 */
    nh_error err;
    assert_int_equal(nh_multicast(cfg, "sys.Spread", "", 0, NULL, &err), 0);
    long total = 0;
    for (int tries = 0; tries < 500 && total < 9; tries++) {
        total = 0;
        for (int i = 0; i < 3; i++)
            total += __atomic_load_n(&g3[i].inner, __ATOMIC_RELAXED);
        if (total < 9) nh_test_sleep_ms(10);
    }
    assert_int_equal(total, 9);
    for (int i = 0; i < 3; i++)
        assert_int_equal(__atomic_load_n(&g3[i].inner, __ATOMIC_RELAXED), 3);
    nh_config_unref(cfg);
    nh_config_unref(out);
}

static void test_local_dispatch_under_contention_never_times_out(void **state) {
    (void)state;
    /* As Gorums' TestSystemLocalDispatchContention: 500 rounds of a call whose handler makes a
     * nested All call including the local node; none may time out. */
    nh_config *cfg = nh_server_config(g3[0].srv);
    nh_error err;
    nh_qc_opts o = {.call = {.timeout_ms = 20000}, .quorum = {.kind = NH_QUORUM_MAJORITY}};
    for (int i = 0; i < 500; i++) {
        if (nh_quorum_call(cfg, "sys.Chain", "", 0, &o, NULL, &err) != 0)
            fail_msg("round %d: %s", i, err.message);
    }
    nh_config_unref(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_construction_notifies_once_with_self, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_peers_connecting_and_leaving_notify_each_change_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_config_changes_are_notified_too, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_waits_meet_time_out_and_end_at_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handlers_multicast_over_config_reach_every_node,
                                        setup3, teardown3),
        cmocka_unit_test_setup_teardown(test_local_dispatch_under_contention_never_times_out,
                                        setup3, teardown3),
    };
    return cmocka_run_group_tests_name("inbound_manager", tests, NULL, NULL);
}
