/* Integration: one-way calls (unicast and multicast to 1, 3 and 9 nodes, waiting for sends or
 * fire-and-forget), per-node multicast mapping, and a server whose handler never answers. */
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

#define NS 9

typedef struct srv {
    uint32_t id;
    nh_runtime *rt;
    nh_server *server;
    char addr[32];
    pthread_mutex_t mu;
    long got[256];
    int n;
} srv;

static srv g_srv[NS];
static nh_runtime *g_crt;
static nh_config *g_all;

/* test.One.Record: one-way; records the payload (a decimal number) per server. */
static void h_record(nh_server_ctx *ctx, void *user) {
    srv *s = user;
    size_t n;
    const uint8_t *p = nh_ctx_payload(ctx, &n);
    char buf[32];
    if (n >= sizeof buf) n = sizeof buf - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    pthread_mutex_lock(&s->mu);
    if (s->n < 256) s->got[s->n++] = strtol(buf, NULL, 10);
    pthread_mutex_unlock(&s->mu);
}

/* test.One.Ping: replies "pong" (used to know earlier one-way messages were handled). */
static void h_ping(nh_server_ctx *ctx, void *user) {
    (void)user;
    nh_ctx_reply(ctx, "pong", 4);
}

/* test.One.Stuck: never returns the order nor replies (defers without releasing). */
static void h_stuck(nh_server_ctx *ctx, void *user) {
    (void)user;
    nh_ctx_defer(ctx);
}

static int setup_group(void **state) {
    (void)state;
    nh_error err;
    const char *addrs[NS];
    for (int i = 0; i < NS; i++) {
        srv *s = &g_srv[i];
        s->id = (uint32_t)i + 1;
        pthread_mutex_init(&s->mu, NULL);
        assert_int_equal(nh_runtime_new(NULL, &s->rt, &err), 0);
        nh_server_opts so = {.listen = "127.0.0.1:0"};
        int port;
        assert_int_equal(nh_server_new(s->rt, &so, &s->server, &port, &err), 0);
        nh_server_handle(s->server, "test.One.Record", h_record, s, &err);
        nh_server_handle(s->server, "test.One.Ping", h_ping, s, &err);
        nh_server_handle(s->server, "test.One.Stuck", h_stuck, s, &err);
        snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", port);
        addrs[i] = s->addr;
    }
    assert_int_equal(nh_runtime_new(NULL, &g_crt, &err), 0);
    nh_config_opts co = {.addresses = addrs, .count = NS};
    assert_int_equal(nh_config_new(g_crt, &co, &g_all, &err), 0);
    return 0;
}

static int teardown_group(void **state) {
    (void)state;
    nh_config_unref(g_all);
    nh_runtime_free(g_crt);
    for (int i = 0; i < NS; i++) {
        nh_runtime_free(g_srv[i].rt);
        pthread_mutex_destroy(&g_srv[i].mu);
    }
    return 0;
}

static void reset_records(void) {
    for (int i = 0; i < NS; i++) {
        pthread_mutex_lock(&g_srv[i].mu);
        g_srv[i].n = 0;
        pthread_mutex_unlock(&g_srv[i].mu);
    }
}

/* The first k nodes of the 9. */
static nh_config *first(size_t k) {
    uint32_t ids[NS];
    size_t n = 0;
    for (uint32_t id = (uint32_t)k + 1; id <= NS; id++)
        ids[n++] = id;
    return nh_config_remove(g_all, ids, n);
}

/* Pings every node of cfg, so all one-way messages sent before were handled (one stream per
 * node keeps order). */
static void sync_nodes(nh_config *cfg) {
    nh_error err;
    nh_qc_opts o = {.call = {.timeout_ms = 20000}, .quorum = {.kind = NH_QUORUM_ALL}};
    assert_int_equal(nh_quorum_call(cfg, "test.One.Ping", "", 0, &o, NULL, &err), 0);
}

static void expect_sequence(size_t nodes, int count) {
    for (size_t i = 0; i < nodes; i++) {
        srv *s = &g_srv[i];
        pthread_mutex_lock(&s->mu);
        assert_int_equal(s->n, count);
        for (int k = 0; k < count; k++)
            assert_int_equal(s->got[k], k + 1);
        pthread_mutex_unlock(&s->mu);
    }
    for (size_t i = nodes; i < NS; i++) {
        pthread_mutex_lock(&g_srv[i].mu);
        assert_int_equal(g_srv[i].n, 0);
        pthread_mutex_unlock(&g_srv[i].mu);
    }
}

static void test_oneway_calls_arrive_in_order_on_every_node(void **state) {
    (void)state;
    /* As Gorums' TestOnewayCalls: 50 calls x {unicast; multicast to 1, 3, 9} x {wait, forget}:
     * every server receives 1..50 in order. */
    size_t sizes[] = {1, 1, 3, 9};
    for (int variant = 0; variant < 4; variant++) {
        for (int wait = 0; wait <= 1; wait++) {
            reset_records();
            nh_config *cfg = first(sizes[variant]);
            nh_error err;
            for (int k = 1; k <= 50; k++) {
                char req[8];
                int len = snprintf(req, sizeof req, "%d", k);
                if (variant == 0) {
                    nh_node *n = nh_config_node(cfg, 0);
                    if (wait)
                        assert_int_equal(
                            nh_unicast(n, "test.One.Record", req, (size_t)len, NULL, &err), 0);
                    else
                        assert_int_equal(nh_unicast_async(n, "test.One.Record", req, (size_t)len,
                                                          NULL, NULL, NULL, &err),
                                         0);
                } else if (wait) {
                    assert_int_equal(
                        nh_multicast(cfg, "test.One.Record", req, (size_t)len, NULL, &err), 0);
                } else {
                    assert_int_equal(nh_multicast_async(cfg, "test.One.Record", req, (size_t)len,
                                                        NULL, NULL, NULL, &err),
                                     0);
                }
            }
            sync_nodes(cfg);
            expect_sequence(sizes[variant], 50);
            for (size_t i = 0; i < sizes[variant]; i++)
                assert_int_equal(nh_node_pending(nh_config_node(cfg, i)), 0);
            nh_config_unref(cfg);
        }
    }
}

static nh_map_verdict tag_or_skip(uint32_t id, const uint8_t *req, size_t len, void *user,
                                  nh_buf *out) {
    const uint32_t *skip = user;
    if (id == *skip) return NH_MAP_SKIP;
    out->data = malloc(32);
    out->len = (size_t)snprintf((char *)out->data, 32, "%.*s%u", (int)len, (const char *)req, id);
    return NH_MAP_REPLACE;
}

static void test_multicast_per_node_mapping_tags_and_skips_nodes(void **state) {
    (void)state;
    /* As Gorums' TestMulticastPerNode: the mapping adds the node ID; a skipped node gets
     * nothing; with and without waiting. */
    for (int wait = 0; wait <= 1; wait++) {
        reset_records();
        nh_config *cfg = first(3);
        uint32_t skip = 2;
        nh_qc_opts o = {.map_request = tag_or_skip, .map_request_user = &skip};
        nh_error err;
        if (wait)
            assert_int_equal(nh_multicast(cfg, "test.One.Record", "10", 2, &o, &err), 0);
        else
            assert_int_equal(
                nh_multicast_async(cfg, "test.One.Record", "10", 2, &o, NULL, NULL, &err), 0);
        sync_nodes(cfg);
        long want[3] = {101, -1, 103};
        for (int i = 0; i < 3; i++) {
            pthread_mutex_lock(&g_srv[i].mu);
            if (want[i] < 0) {
                assert_int_equal(g_srv[i].n, 0);
            } else {
                assert_int_equal(g_srv[i].n, 1);
                assert_int_equal(g_srv[i].got[0], want[i]);
            }
            pthread_mutex_unlock(&g_srv[i].mu);
        }
        nh_config_unref(cfg);
    }
}

static void test_unresponsive_handler_never_blocks_the_client(void **state) {
    (void)state;
    /* As Gorums' TestUnresponsiveServer: the handler never answers nor releases; 100 RPCs
     * with 10 ms timeouts all return, each with a timeout error. */
    nh_node *n = nh_config_node(g_all, NS - 1);
    nh_error err;
    for (int i = 0; i < 100; i++) {
        nh_call_opts o = {.timeout_ms = 10};
        assert_int_equal(nh_rpc(n, "test.One.Stuck", "", 0, &o, NULL, &err), -1);
        assert_int_equal(err.code, NH_DEADLINE_EXCEEDED);
    }
    assert_int_equal(nh_node_pending(n), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oneway_calls_arrive_in_order_on_every_node),
        cmocka_unit_test(test_multicast_per_node_mapping_tags_and_skips_nodes),
        cmocka_unit_test(test_unresponsive_handler_never_blocks_the_client),
    };
    return cmocka_run_group_tests_name("oneway", tests, setup_group, teardown_group);
}
