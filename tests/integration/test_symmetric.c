/* Integration: the symmetric configuration. Nodes that know each other dial each other and see
 * each other in their Config; handlers make nested calls over Config and calls back to client
 * programs over ClientConfig; nodes leave and come back. Real gRPC on loopback, each node in its
 * own runtime (own owner thread). */
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

#define N 3

typedef struct sysnode {
    uint32_t id;
    int port;
    char addr[32];
    nh_runtime *rt;
    nh_server *srv;
    pthread_mutex_t mu;
    int config_changes, client_changes;
    uint64_t last_seq;
    nh_peer_kind last_kind;
    uint32_t last_peer;
} sysnode;

static sysnode g[N];
static nh_node_addr g_peers[N];

/* sys.Id: replies the node's ID; records how the request arrived. */
static void h_id(nh_server_ctx *ctx, void *user) {
    sysnode *s = user;
    pthread_mutex_lock(&s->mu);
    s->last_seq = nh_ctx_seq(ctx);
    s->last_kind = nh_ctx_peer_kind(ctx);
    s->last_peer = nh_ctx_peer_id(ctx);
    pthread_mutex_unlock(&s->mu);
    char buf[16];
    int k = snprintf(buf, sizeof buf, "%u", s->id);
    nh_ctx_reply(ctx, buf, (size_t)k);
}

/* A nested quorum call from a handler: the outer call's context waits for the inner result. */
static nh_qf_verdict join_ids(const nh_node_reply *r, size_t n, size_t size, void *user,
                              const uint8_t **res, size_t *res_len) {
    char *out = user;
    if (n < size) return NH_QF_MORE;
    uint32_t ids[64];
    size_t k = 0;
    for (size_t i = 0; i < n && k < 64; i++)
        if (r[i].err.code == NH_OK)
            ids[k++] = (uint32_t)strtoul(strndupa((const char *)r[i].payload, r[i].len), NULL, 10);
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            uint32_t t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    size_t off = 0;
    for (size_t i = 0; i < k; i++)
        off += (size_t)snprintf(out + off, 256 - off, i ? ",%u" : "%u", ids[i]);
    *res = (const uint8_t *)out;
    *res_len = off;
    return NH_QF_DONE;
}

typedef struct nested {
    nh_server_ctx *ctx;
    char buf[256];
} nested;

static void nested_done(const nh_qc_result *r, void *user) {
    nested *n = user;
    if (r->err.code == NH_OK)
        nh_ctx_reply(n->ctx, r->value, r->value_len);
    else
        nh_ctx_reply_error(n->ctx, r->err.code, "nested call failed: %s", r->err.message);
    free(n);
}

static void start_nested(nh_server_ctx *ctx, nh_config *cfg) {
    nested *n = calloc(1, sizeof *n);
    n->ctx = ctx;
    nh_ctx_defer(ctx);
    nh_qc_opts o = {.call = {.timeout_ms = 5000},
                    .quorum = {.kind = NH_QUORUM_CUSTOM, .fn = join_ids, .fn_user = n->buf}};
    nh_error err;
    if (nh_quorum_call_async(cfg, "sys.Id", "", 0, &o, nested_done, n, &err) != 0) {
        nh_ctx_reply_error(ctx, err.code, "%s", err.message);
        free(n);
    }
    nh_config_unref(cfg);
}

/* sys.Nested: a quorum call over this node's Config, answering the joined IDs. */
static void h_nested(nh_server_ctx *ctx, void *user) {
    (void)user;
    start_nested(ctx, nh_ctx_config(ctx));
}

/* sys.AskClients: a quorum call over this node's ClientConfig (calls back to clients). */
static void h_ask_clients(nh_server_ctx *ctx, void *user) {
    (void)user;
    start_nested(ctx, nh_ctx_client_config(ctx));
}

static void on_change(nh_config *cfg, bool client, void *user) {
    (void)cfg;
    sysnode *s = user;
    pthread_mutex_lock(&s->mu);
    if (client)
        s->client_changes++;
    else
        s->config_changes++;
    pthread_mutex_unlock(&s->mu);
}

static void start_node(int i) {
    sysnode *s = &g[i];
    nh_error err;
    char name[16];
    snprintf(name, sizeof name, "n%u", s->id);
    nh_runtime_opts ro = {.name = name};
    assert_int_equal(nh_runtime_new(&ro, &s->rt, &err), 0);
    nh_server_opts so = {.listen = s->addr,
                         .node_id = s->id,
                         .peers = g_peers,
                         .peer_count = N,
                         .dial_peers = true,
                         .backoff_base_ms = 50,
                         .backoff_max_ms = 300,
                         .on_config_change = on_change,
                         .change_user = s};
    int port;
    if (nh_server_new(s->rt, &so, &s->srv, &port, &err) != 0)
        fail_msg("node %u: %s", s->id, err.message);
    nh_server_handle(s->srv, "sys.Id", h_id, s, &err);
    nh_server_handle(s->srv, "sys.Nested", h_nested, s, &err);
    nh_server_handle(s->srv, "sys.AskClients", h_ask_clients, s, &err);
}

/* A copy of a node's counters (never assert while holding a lock: a failed assertion jumps
 * out of the test with the lock held). */
static sysnode snap(int i) {
    sysnode c;
    pthread_mutex_lock(&g[i].mu);
    c = g[i];
    pthread_mutex_unlock(&g[i].mu);
    return c;
}

static void stop_node(int i) {
    nh_runtime_free(g[i].rt);
    g[i].rt = NULL;
    g[i].srv = NULL;
}

static void wait_size(int i, bool client, size_t size) {
    nh_error err;
    if (nh_server_wait_config(g[i].srv, client, nh_test_size_is, (void *)(uintptr_t)size, 10000,
                              &err) != 0)
        fail_msg("node %u: %s did not reach size %zu: %s", g[i].id,
                 client ? "ClientConfig" : "Config", size, err.message);
}

static int setup(void **state) {
    (void)state;
    for (int i = 0; i < N; i++) {
        g[i].id = (uint32_t)i + 1;
        g[i].port = nh_test_free_port();
        snprintf(g[i].addr, sizeof g[i].addr, "127.0.0.1:%d", g[i].port);
        g_peers[i] = (nh_node_addr){.id = g[i].id, .address = g[i].addr};
        pthread_mutex_lock(&g[i].mu);
        g[i].config_changes = g[i].client_changes = 0;
        pthread_mutex_unlock(&g[i].mu);
    }
    /* Start order does not matter: 3, then 1, then 2, with pauses. */
    start_node(2);
    nh_test_sleep_ms(100);
    start_node(0);
    nh_test_sleep_ms(100);
    start_node(1);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < N; i++)
        if (g[i].rt) stop_node(i);
    return 0;
}

/* A client program's view of one node (an outbound configuration of one node). */
static nh_config *client_to(nh_runtime *rt, int i, const char *announce) {
    nh_error err;
    nh_node_addr one = {.id = g[i].id, .address = g[i].addr};
    nh_metadata md[] = {{"gorums-node-id", announce}};
    nh_config_opts co = {
        .nodes = &one, .count = 1, .metadata = md, .metadata_count = announce ? 1 : 0};
    nh_config *cfg;
    if (nh_config_new(rt, &co, &cfg, &err) != 0) fail_msg("%s", err.message);
    return cfg;
}

static void expect_rpc(nh_config *cfg, const char *method, const char *want) {
    nh_buf resp;
    nh_error err;
    nh_call_opts o = {.timeout_ms = 10000};
    if (nh_rpc(nh_config_node(cfg, 0), method, "", 0, &o, &resp, &err) != 0)
        fail_msg("%s: %s", method, err.message);
    char *got = strndup((const char *)resp.data, resp.len);
    if (strcmp(got, want) != 0) fail_msg("%s: got \"%s\", want \"%s\"", method, got, want);
    free(got);
    nh_buf_free(&resp);
}

static void test_every_config_reaches_all_nodes_in_any_start_order(void **state) {
    (void)state;
    for (int i = 0; i < N; i++)
        wait_size(i, false, N);
    nh_config *c = nh_server_config(g[0].srv);
    uint32_t ids[N];
    assert_int_equal(nh_config_ids(c, ids, N), N);
    for (int i = 0; i < N; i++)
        assert_int_equal(ids[i], i + 1); /* sorted by ID, self included */
    nh_config_unref(c);
    nh_config *cc = nh_server_client_config(g[0].srv);
    assert_int_equal(nh_config_size(cc), 0);
    nh_config_unref(cc);
    assert_true(snap(0).config_changes >= 3); /* [1], [1,x], [1,2,3] */
}

static void test_handler_makes_a_nested_quorum_call_over_its_config(void **state) {
    (void)state;
    for (int i = 0; i < N; i++)
        wait_size(i, false, N);
    nh_error err;
    nh_runtime *crt;
    assert_int_equal(nh_runtime_new(NULL, &crt, &err), 0);
    nh_config *c1 = client_to(crt, 0, NULL);
    expect_rpc(c1, "sys.Nested", "1,2,3");
    /* The inner call reached node 2 over node 2's own stream to node 1 (a back-channel
     * request), with a server-initiated seq (bit 63). */
    sysnode n2 = snap(1);
    assert_true(n2.last_seq & (UINT64_C(1) << 63));
    assert_int_equal(n2.last_kind, NH_PEER_SERVER);
    assert_int_equal(n2.last_peer, 1);
    uint64_t seq2 = n2.last_seq;
    /* Node 1 served itself in process, with the same seq (one seq per quorum call). */
    sysnode n1 = snap(0), n3 = snap(2);
    assert_int_equal(n1.last_kind, NH_PEER_SELF);
    assert_true(n1.last_seq == seq2);
    assert_true(n3.last_seq == seq2);
    nh_config_unref(c1);
    nh_runtime_free(crt);
}

static void test_killed_node_leaves_every_config_and_comes_back(void **state) {
    (void)state;
    for (int i = 0; i < N; i++)
        wait_size(i, false, N);
    nh_config *before = nh_server_config(g[0].srv); /* a snapshot taken before the change */
    stop_node(2);
    wait_size(0, false, 2);
    wait_size(1, false, 2);
    nh_error err;
    nh_runtime *crt;
    assert_int_equal(nh_runtime_new(NULL, &crt, &err), 0);
    nh_config *c1 = client_to(crt, 0, NULL);
    expect_rpc(c1, "sys.Nested", "1,2"); /* the nested call goes to the current Config */
    /* The old snapshot is still valid; a call to the gone node fails at once, named. */
    assert_int_equal(nh_config_size(before), 3);
    nh_qc_outcome out;
    nh_qc_opts all = {.call = {.timeout_ms = 5000}, .quorum = {.kind = NH_QUORUM_ALL}};
    nh_qc_future *f;
    /* (server-initiated calls cannot block the owner: issue from here, a non-owner thread) */
    assert_int_equal(nh_quorum_call_start(before, "sys.Id", "", 0, &all, &f, &err), 0);
    assert_int_equal(nh_qc_future_wait(f, &out, &err), -1);
    assert_int_equal(err.kind, NH_ERR_INCOMPLETE);
    assert_int_equal(err.code, NH_UNAVAILABLE); /* not a timeout: it failed at once */
    assert_non_null(strstr(err.message, "node 3 UNAVAILABLE"));
    nh_qc_outcome_free(&out);
    nh_qc_future_free(f);
    nh_config_unref(before);
    /* Restart node 3: everyone sees it again, without anyone acting. */
    start_node(2);
    for (int i = 0; i < N; i++)
        wait_size(i, false, N);
    expect_rpc(c1, "sys.Nested", "1,2,3");
    nh_config_unref(c1);
    nh_runtime_free(crt);
}

/* cli.Hello on a client program: replies "hello from client <n>". */
static void h_client_hello(nh_server_ctx *ctx, void *user) {
    const char *name = user;
    char buf[64];
    int k = snprintf(buf, sizeof buf, "%s", name);
    nh_ctx_reply(ctx, buf, (size_t)k);
}

static void test_node_calls_back_connected_clients_through_client_config(void **state) {
    (void)state;
    nh_error err;
    nh_runtime *a, *b;
    assert_int_equal(nh_runtime_new(NULL, &a, &err), 0);
    assert_int_equal(nh_runtime_new(NULL, &b, &err), 0);
    /* The back-channel handler answers sys.Id, the method the node's nested call uses. */
    assert_int_equal(nh_runtime_handle(a, "sys.Id", h_client_hello, "1048576", &err), 0);
    assert_int_equal(nh_runtime_handle(b, "sys.Id", h_client_hello, "1048577", &err), 0);
    nh_config *ca = client_to(a, 0, "0");
    wait_size(0, true, 1);
    nh_config *cb = client_to(b, 0, "0");
    wait_size(0, true, 2);
    nh_config *cc = nh_server_client_config(g[0].srv);
    uint32_t ids[2];
    assert_int_equal(nh_config_ids(cc, ids, 2), 2);
    assert_int_equal(ids[0], 1048576);
    assert_int_equal(ids[1], 1048577);
    nh_config_unref(cc);
    /* A handler on node 1 makes a quorum call to both clients; both answer. */
    expect_rpc(ca, "sys.AskClients", "1048576,1048577");
    /* One client leaves: it leaves ClientConfig; reconnecting gets a new ID. */
    nh_config_unref(cb);
    wait_size(0, true, 1);
    nh_config *cb2 = client_to(b, 0, "0");
    wait_size(0, true, 2);
    cc = nh_server_client_config(g[0].srv);
    assert_int_equal(nh_config_ids(cc, ids, 2), 2);
    assert_int_equal(ids[0], 1048576);
    assert_int_equal(ids[1], 1048578); /* IDs are never reused */
    nh_config_unref(cc);
    int changes = snap(0).client_changes;
    if (changes < 4) fail_msg("%d ClientConfig notifications, want at least 4", changes);
    nh_config_unref(ca);
    nh_config_unref(cb2);
    nh_runtime_free(a);
    nh_runtime_free(b);
    wait_size(0, true, 0);
}

static void test_stream_claiming_this_nodes_id_is_refused(void **state) {
    (void)state;
    nh_error err;
    nh_runtime *rt;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    nh_config *imp = client_to(rt, 0, "1"); /* node 1's own ID */
    nh_call_opts o = {.timeout_ms = 5000};
    int rc = -1;
    for (int k = 0; k < 50 && rc != 0; k++) {
        rc = nh_rpc(nh_config_node(imp, 0), "sys.Id", "", 0, &o, NULL, &err);
        if (rc != 0 && err.code == NH_PERMISSION_DENIED) break;
        nh_test_sleep_ms(20);
    }
    assert_int_equal(rc, -1);
    assert_int_equal(err.code, NH_PERMISSION_DENIED);
    assert_non_null(strstr(err.message, "own ID"));
    nh_config *c = nh_server_config(g[0].srv);
    assert_true(nh_config_contains(c, 1));
    nh_config_unref(c);
    nh_config_unref(imp);
    nh_runtime_free(rt);
}

static void test_unknown_id_is_served_but_not_tracked(void **state) {
    (void)state;
    for (int i = 0; i < N; i++)
        wait_size(i, false, N);
    nh_error err;
    nh_runtime *rt;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    nh_config *c99 = client_to(rt, 0, "99");
    expect_rpc(c99, "sys.Id", "1");
    assert_int_equal(snap(0).last_kind, NH_PEER_REGULAR);
    nh_config *c = nh_server_config(g[0].srv);
    assert_int_equal(nh_config_size(c), N);
    assert_false(nh_config_contains(c, 99));
    nh_config_unref(c);
    nh_config *cc = nh_server_client_config(g[0].srv);
    assert_int_equal(nh_config_size(cc), 0);
    nh_config_unref(cc);
    nh_config_unref(c99);
    nh_runtime_free(rt);
}

static void test_known_peer_reconnecting_replaces_its_stream(void **state) {
    (void)state;
    for (int i = 0; i < N; i++)
        wait_size(i, false, N);
    /* A second stream announcing ID 2 replaces node 2's stream at node 1: Config unchanged.
     * When the impostor goes, node 2 leaves node 1's Config until its own node reconnects. */
    nh_error err;
    nh_runtime *rt;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    nh_config *dup = client_to(rt, 0, "2");
    expect_rpc(dup, "sys.Id", "1");
    nh_config *c = nh_server_config(g[0].srv);
    assert_int_equal(nh_config_size(c), N);
    nh_config_unref(c);
    nh_config_unref(dup);
    nh_runtime_free(rt);
    /* node 2's own outbound stream was the replaced one; its node keeps running and, after its
     * stream is replaced back or reconnects, node 2 is in Config again */
    wait_size(0, false, N);
}

static void test_bad_peer_lists_are_refused(void **state) {
    (void)state;
    nh_error err;
    nh_runtime *rt;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    nh_server *srv = NULL;
    nh_node_addr big[] = {{.id = 1, .address = "127.0.0.1:7001"},
                          {.id = 1048576, .address = "127.0.0.1:7002"}};
    nh_server_opts so = {.listen = "127.0.0.1:0", .node_id = 1, .peers = big, .peer_count = 2};
    assert_int_equal(nh_server_new(rt, &so, &srv, NULL, &err), -1);
    assert_non_null(strstr(err.message, "reserved for client peers"));
    nh_server_opts so2 = {.listen = "127.0.0.1:0", .node_id = 2000000};
    assert_int_equal(nh_server_new(rt, &so2, &srv, NULL, &err), -1);
    assert_non_null(strstr(err.message, "client peer ID range"));
    nh_node_addr dupaddr[] = {{.id = 1, .address = "127.0.0.1:7001"},
                              {.id = 2, .address = "localhost:7001"}};
    nh_server_opts so3 = {.listen = "127.0.0.1:0", .node_id = 1, .peers = dupaddr, .peer_count = 2};
    assert_int_equal(nh_server_new(rt, &so3, &srv, NULL, &err), -1);
    assert_string_equal(err.message, "address \"127.0.0.1:7001\" already in use by node 1");
    nh_node_addr zero[] = {{.id = 0, .address = "127.0.0.1:7001"}};
    nh_server_opts so4 = {.listen = "127.0.0.1:0", .node_id = 1, .peers = zero, .peer_count = 1};
    assert_int_equal(nh_server_new(rt, &so4, &srv, NULL, &err), -1);
    assert_string_equal(err.message, "node 0 is reserved");
    assert_null(srv);
    nh_runtime_free(rt);
}

static void test_too_many_clients_are_refused_with_a_reason(void **state) {
    (void)state;
    nh_error err;
    nh_runtime *srt, *crt;
    assert_int_equal(nh_runtime_new(NULL, &srt, &err), 0);
    assert_int_equal(nh_runtime_new(NULL, &crt, &err), 0);
    nh_server *srv;
    int port;
    nh_server_opts so = {.listen = "127.0.0.1:0", .node_id = 7, .max_clients = 1};
    assert_int_equal(nh_server_new(srt, &so, &srv, &port, &err), 0);
    static sysnode solo = {.id = 7, .mu = PTHREAD_MUTEX_INITIALIZER};
    nh_server_handle(srv, "sys.Id", h_id, &solo, &err);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    const char *addrs[] = {addr};
    nh_metadata md[] = {{"gorums-node-id", "0"}};
    nh_config_opts co = {.addresses = addrs, .count = 1, .metadata = md, .metadata_count = 1};
    nh_config *c1, *c2;
    assert_int_equal(nh_config_new(crt, &co, &c1, &err), 0);
    assert_int_equal(
        nh_server_wait_config(srv, true, nh_test_size_is, (void *)(uintptr_t)1, 10000, &err), 0);
    assert_int_equal(nh_config_new(crt, &co, &c2, &err), 0); /* same address: the same node */
    nh_config_unref(c2);
    /* A second client runtime is a second client peer: refused. */
    nh_runtime *crt2;
    assert_int_equal(nh_runtime_new(NULL, &crt2, &err), 0);
    nh_config *c3;
    assert_int_equal(nh_config_new(crt2, &co, &c3, &err), 0);
    nh_call_opts o = {.timeout_ms = 5000};
    int rc = -1;
    for (int k = 0; k < 50; k++) {
        rc = nh_rpc(nh_config_node(c3, 0), "sys.Id", "", 0, &o, NULL, &err);
        if (rc != 0 && err.code == NH_RESOURCE_EXHAUSTED) break;
        nh_test_sleep_ms(20);
    }
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.message, "too many client peers"));
    nh_config_unref(c3);
    nh_runtime_free(crt2);
    nh_config_unref(c1);
    nh_runtime_free(crt);
    nh_runtime_free(srt);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    for (int i = 0; i < N; i++)
        pthread_mutex_init(&g[i].mu, NULL);
    const struct CMUnitTest tests[] = {
        T(test_every_config_reaches_all_nodes_in_any_start_order),
        T(test_handler_makes_a_nested_quorum_call_over_its_config),
        T(test_killed_node_leaves_every_config_and_comes_back),
        T(test_node_calls_back_connected_clients_through_client_config),
        T(test_stream_claiming_this_nodes_id_is_refused),
        T(test_unknown_id_is_served_but_not_tracked),
        T(test_known_peer_reconnecting_replaces_its_stream),
        cmocka_unit_test(test_bad_peer_lists_are_refused),
        cmocka_unit_test(test_too_many_clients_are_refused_with_a_reason),
    };
    return cmocka_run_group_tests_name("symmetric", tests, NULL, NULL);
}
