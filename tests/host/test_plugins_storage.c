/* The storage plugin (plugins/storage) on three in-process nodes over loopback gRPC, served by a
 * test trampoline in place of the nodehost program: quorum reads and writes, timestamps,
 * multicast, the nested quorum call, client notifications, the reload hand-over, config. */
#include "test_plugins_harness.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static ph_cluster g;
static ph_conf g_conf;

#define WRITE_RPC "proto.Storage.WriteRPC"
#define READ_RPC  "proto.Storage.ReadRPC"

static const ProtobufCMessageDescriptor *desc_req(const char *method) {
    return ph_method(&g.plugin, method)->request;
}
static const ProtobufCMessageDescriptor *desc_resp(const char *method) {
    return ph_method(&g.plugin, method)->response;
}

static nh_buf write_req(const char *key, const char *value, int64_t seconds) {
    ProtobufCMessage *m = ph_msg_new(desc_req(WRITE_RPC));
    ph_set_str(m, "Key", key);
    ph_set_str(m, "Value", value);
    if (seconds >= 0) ph_set_ts(m, "Time", seconds, 0);
    nh_buf b = ph_pack(m);
    ph_msg_free(m);
    return b;
}

static nh_buf read_req(const char *key) {
    ProtobufCMessage *m = ph_msg_new(desc_req(READ_RPC));
    ph_set_str(m, "Key", key);
    nh_buf b = ph_pack(m);
    ph_msg_free(m);
    return b;
}

static nh_qc_opts qc_opts(nh_quorum_kind kind) {
    return (nh_qc_opts){.call = {.timeout_ms = PH_TIMEOUT_MS}, .quorum = {.kind = kind}};
}

/* A quorum call that must succeed; returns its outcome. */
static nh_qc_outcome qc(nh_config *cfg, const char *method, nh_buf req, nh_quorum_kind kind) {
    nh_qc_opts o = qc_opts(kind);
    nh_qc_outcome out = {0};
    nh_error err;
    int rc = nh_quorum_call(cfg, method, req.data, req.len, &o, &out, &err);
    nh_buf_free(&req);
    if (rc != 0) fail_msg("%s: %s", method, err.message);
    return out;
}

/* An RPC to the node with this ID in cfg that must succeed; returns the decoded response. */
static ProtobufCMessage *rpc(nh_config *cfg, uint32_t id, const char *method, nh_buf req) {
    nh_call_opts o = {.timeout_ms = PH_TIMEOUT_MS};
    nh_buf resp = {0};
    nh_error err;
    int rc = nh_rpc(nh_config_find(cfg, id), method, req.data, req.len, &o, &resp, &err);
    nh_buf_free(&req);
    if (rc != 0) fail_msg("%s to node %u: %s", method, id, err.message);
    ProtobufCMessage *m = ph_unpack(desc_resp(method), resp.data, resp.len);
    nh_buf_free(&resp);
    return m;
}

/* Checks every reply of a ReadQC outcome: all found `value` written at `seconds`. */
static void expect_all_read(const nh_qc_outcome *out, size_t n, const char *value,
                            int64_t seconds) {
    assert_int_equal(out->n_replies, n);
    for (size_t i = 0; i < out->n_replies; i++) {
        const nh_node_reply *r = &out->replies[i];
        if (r->err.code != NH_OK) fail_msg("node %u: %s", r->node_id, r->err.message);
        ProtobufCMessage *m = ph_unpack(desc_resp(READ_RPC), r->payload, r->len);
        bool ok = ph_get_bool(m, "OK");
        char *got = strdup(ph_get_str(m, "Value"));
        int64_t t = ph_get_ts_seconds(m, "Time");
        ph_unpacked_free(m);
        if (!ok || strcmp(got, value) != 0 || t != seconds)
            fail_msg("node %u: OK %d \"%s\" at %lld, want \"%s\" at %lld", r->node_id, ok, got,
                     (long long)t, value, (long long)seconds);
        free(got);
    }
}

/* Counts the replies of a WriteQC outcome that say New. */
static size_t count_new(const nh_qc_outcome *out) {
    size_t k = 0;
    for (size_t i = 0; i < out->n_replies; i++) {
        assert_int_equal(out->replies[i].err.code, NH_OK);
        ProtobufCMessage *m =
            ph_unpack(desc_resp(WRITE_RPC), out->replies[i].payload, out->replies[i].len);
        if (ph_get_bool(m, "New")) k++;
        ph_unpacked_free(m);
    }
    return k;
}

/* True once ReadRPC on node id answers (not UNAVAILABLE: a memory store that started refuses
 * reads until it caught up from its peers). */
static bool serves_reads(nh_config *cfg, uint32_t id) {
    nh_call_opts o = {.timeout_ms = PH_TIMEOUT_MS};
    nh_buf req = read_req("probe"), resp = {0};
    nh_error err;
    int rc = nh_rpc(nh_config_find(cfg, id), READ_RPC, req.data, req.len, &o, &resp, &err);
    nh_buf_free(&req);
    nh_buf_free(&resp);
    if (rc != 0 && err.code != NH_UNAVAILABLE) fail_msg("node %u: %s", id, err.message);
    return rc == 0;
}

/* Waits until every node caught up (the fresh cluster's nodes pull from each other). */
static void wait_recovered(ph_cluster *c) {
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, c, NULL, 0, NULL);
    for (uint32_t id = 1; id <= PH_NODES; id++) {
        int i = 0;
        while (!serves_reads(all, id) && i++ < 500)
            nh_test_sleep_ms(10);
        if (i > 500) fail_msg("node %u never caught up", id);
    }
    nh_config_unref(all);
    nh_runtime_free(rt);
}

static int setup(void **state) {
    (void)state;
    ph_cluster_start(&g, "storage", ph_conf_map(&g_conf, "max_keys", "1000", NULL));
    wait_recovered(&g);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ph_cluster_stop(&g);
    return 0;
}

static void test_write_and_read_quorum_calls_keep_the_newest_timestamp(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, &g, NULL, 0, NULL);

    /* A majority write succeeds with New. */
    nh_qc_outcome out =
        qc(all, "proto.Storage.WriteQC", write_req("a", "v1", 100), NH_QUORUM_MAJORITY);
    ProtobufCMessage *w = ph_unpack(desc_resp(WRITE_RPC), out.value.data, out.value.len);
    assert_true(ph_get_bool(w, "New"));
    ph_unpacked_free(w);
    assert_true(out.n_replies >= 2);
    nh_qc_outcome_free(&out);

    /* Every node has it (the read follows the write on each node's stream). */
    out = qc(all, "proto.Storage.ReadQC", read_req("a"), NH_QUORUM_ALL);
    expect_all_read(&out, PH_NODES, "v1", 100);
    nh_qc_outcome_free(&out);

    /* An older write changes nothing and says so on every node; an equal one too. */
    out = qc(all, "proto.Storage.WriteQC", write_req("a", "v0", 50), NH_QUORUM_ALL);
    assert_int_equal(count_new(&out), 0);
    nh_qc_outcome_free(&out);
    out = qc(all, "proto.Storage.WriteQC", write_req("a", "same-time", 100), NH_QUORUM_ALL);
    assert_int_equal(count_new(&out), 0);
    nh_qc_outcome_free(&out);
    out = qc(all, "proto.Storage.ReadQC", read_req("a"), NH_QUORUM_ALL);
    expect_all_read(&out, PH_NODES, "v1", 100);
    nh_qc_outcome_free(&out);

    /* A newer one replaces it everywhere. */
    out = qc(all, "proto.Storage.WriteQC", write_req("a", "v2", 200), NH_QUORUM_ALL);
    assert_int_equal(count_new(&out), PH_NODES);
    nh_qc_outcome_free(&out);
    out = qc(all, "proto.Storage.ReadQC", read_req("a"), NH_QUORUM_ALL);
    expect_all_read(&out, PH_NODES, "v2", 200);
    nh_qc_outcome_free(&out);

    /* An unknown key: OK false, no value. */
    out = qc(all, "proto.Storage.ReadQC", read_req("nope"), NH_QUORUM_MAJORITY);
    ProtobufCMessage *r = ph_unpack(desc_resp(READ_RPC), out.value.data, out.value.len);
    assert_false(ph_get_bool(r, "OK"));
    assert_string_equal(ph_get_str(r, "Value"), "");
    assert_int_equal(ph_get_ts_seconds(r, "Time"), -1);
    ph_unpacked_free(r);
    nh_qc_outcome_free(&out);

    /* RPCs to one node: a write without a timestamp is the zero time, older than anything. */
    ProtobufCMessage *m = rpc(all, 2, WRITE_RPC, write_req("b", "first", -1));
    assert_true(ph_get_bool(m, "New"));
    ph_unpacked_free(m);
    /* The same timestamp: the greater value wins (replicas agree whatever the order). */
    m = rpc(all, 2, WRITE_RPC, write_req("b", "another", -1)); /* "another" < "first" */
    assert_false(ph_get_bool(m, "New"));
    ph_unpacked_free(m);
    m = rpc(all, 2, READ_RPC, read_req("b"));
    assert_true(ph_get_bool(m, "OK"));
    assert_string_equal(ph_get_str(m, "Value"), "first");
    ph_unpacked_free(m);
    m = rpc(all, 2, WRITE_RPC, write_req("b", "second", -1)); /* "second" > "first" */
    assert_true(ph_get_bool(m, "New"));
    ph_unpacked_free(m);
    m = rpc(all, 2, WRITE_RPC, write_req("b", "second", -1)); /* the same version again */
    assert_false(ph_get_bool(m, "New"));
    ph_unpacked_free(m);
    m = rpc(all, 1, READ_RPC, read_req("b")); /* node 1 never saw it */
    assert_false(ph_get_bool(m, "OK"));
    ph_unpacked_free(m);

    nh_config_unref(all);
    nh_runtime_free(rt);
}

static void test_write_multicast_reaches_every_node_without_a_reply(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, &g, NULL, 0, NULL);
    nh_buf req = write_req("m", "multi", 7);
    nh_qc_opts o = qc_opts(NH_QUORUM_MAJORITY);
    nh_error err;
    if (nh_multicast(all, "proto.Storage.WriteMulticast", req.data, req.len, &o, &err) != 0)
        fail_msg("multicast: %s", err.message);
    nh_buf_free(&req);
    /* Each node's stream is FIFO: the reads run after the multicast on every node. */
    nh_qc_outcome out = qc(all, "proto.Storage.ReadQC", read_req("m"), NH_QUORUM_ALL);
    expect_all_read(&out, PH_NODES, "multi", 7);
    nh_qc_outcome_free(&out);
    /* Nothing is left pending on any node (no reply was expected or sent). */
    for (size_t i = 0; i < nh_config_size(all); i++)
        assert_int_equal(nh_node_pending(nh_config_node(all, i)), 0);
    nh_config_unref(all);
    nh_runtime_free(rt);
}

static void test_read_nested_qc_answers_the_newest_value_of_a_majority(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, &g, NULL, 0, NULL);
    /* Nodes 1 and 2 (a majority) have the new value, node 3 an older one. */
    ProtobufCMessage *m;
    m = rpc(all, 1, WRITE_RPC, write_req("n", "new", 20));
    ph_unpacked_free(m);
    m = rpc(all, 2, WRITE_RPC, write_req("n", "new", 20));
    ph_unpacked_free(m);
    m = rpc(all, 3, WRITE_RPC, write_req("n", "old", 10));
    ph_unpacked_free(m);
    /* Asked on any node, node 3 included, the nested read answers the newest. */
    for (uint32_t id = 1; id <= PH_NODES; id++) {
        m = rpc(all, id, "proto.Storage.ReadNestedQC", read_req("n"));
        assert_true(ph_get_bool(m, "OK"));
        if (strcmp(ph_get_str(m, "Value"), "new") != 0)
            fail_msg("via node %u: \"%s\"", id, ph_get_str(m, "Value"));
        assert_int_equal(ph_get_ts_seconds(m, "Time"), 20);
        ph_unpacked_free(m);
    }
    /* The nested read asked through node 3 saw it disagree and wrote the newest value back (to
     * every member; a majority acknowledged before the answer): node 3 is repaired. */
    bool repaired = false;
    for (int i = 0; i < 200 && !repaired; i++) {
        m = rpc(all, 3, READ_RPC, read_req("n"));
        repaired = strcmp(ph_get_str(m, "Value"), "new") == 0;
        ph_unpacked_free(m);
        if (!repaired) nh_test_sleep_ms(10);
    }
    assert_true(repaired);
    /* A key nobody has: OK false. */
    m = rpc(all, 3, "proto.Storage.ReadNestedQC", read_req("none"));
    assert_false(ph_get_bool(m, "OK"));
    ph_unpacked_free(m);
    /* Several nested reads in flight at once on one stream (each releases the order). */
    nh_qc_future *f[8];
    nh_config *only3 = nh_config_remove(all, (uint32_t[]){1, 2}, 2);
    assert_int_equal(nh_config_size(only3), 1);
    nh_qc_opts o = qc_opts(NH_QUORUM_ALL);
    nh_error err;
    for (int i = 0; i < 8; i++) {
        nh_buf req = read_req("n");
        assert_int_equal(nh_quorum_call_start(only3, "proto.Storage.ReadNestedQC", req.data,
                                              req.len, &o, &f[i], &err),
                         0);
        nh_buf_free(&req);
    }
    for (int i = 0; i < 8; i++) {
        nh_qc_outcome out;
        if (nh_qc_future_wait(f[i], &out, &err) != 0) fail_msg("nested %d: %s", i, err.message);
        m = ph_unpack(desc_resp(READ_RPC), out.value.data, out.value.len);
        assert_string_equal(ph_get_str(m, "Value"), "new");
        ph_unpacked_free(m);
        nh_qc_outcome_free(&out);
        nh_qc_future_free(f[i]);
    }
    nh_config_unref(only3);
    nh_config_unref(all);
    nh_runtime_free(rt);
}

/* A client program: a runtime with a proto.StorageClient.Notify back-channel handler. */
typedef struct listener {
    nh_runtime *rt;
    nh_config *cfg;
    pthread_mutex_t mu;
    int count;
    char last[64];
} listener;

static void h_notify(nh_server_ctx *ctx, void *user) {
    listener *l = user;
    size_t len;
    const uint8_t *p = nh_ctx_payload(ctx, &len);
    ProtobufCMessage *w = protobuf_c_message_unpack(desc_req(WRITE_RPC), NULL, len, p);
    if (!w) {
        nh_ctx_reply_error(ctx, NH_INVALID_ARGUMENT, "bad Notify");
        return;
    }
    pthread_mutex_lock(&l->mu);
    l->count++;
    snprintf(l->last, sizeof l->last, "%s=%s", ph_get_str(w, "Key"), ph_get_str(w, "Value"));
    pthread_mutex_unlock(&l->mu);
    ph_unpacked_free(w);
    ProtobufCMessage *resp = ph_msg_new(desc_resp(WRITE_RPC));
    ph_set_bool(resp, "New", true);
    nh_buf b = ph_pack(resp);
    nh_ctx_reply(ctx, b.data, b.len);
    nh_buf_free(&b);
    ph_msg_free(resp);
}

static void listener_start(listener *l, bool handle) {
    l->rt = ph_client_runtime();
    pthread_mutex_init(&l->mu, NULL);
    nh_error err;
    if (handle)
        assert_int_equal(nh_runtime_handle(l->rt, "proto.StorageClient.Notify", h_notify, l, &err),
                         0);
    int first = 0;
    l->cfg = ph_client_config(l->rt, &g, &first, 1, "0");
}

static void listener_stop(listener *l) {
    nh_config_unref(l->cfg);
    nh_runtime_free(l->rt);
    pthread_mutex_destroy(&l->mu);
}

static ProtobufCMessage *notify(nh_config *cfg, const char *key, const char *value) {
    return rpc(cfg, 1, "proto.Storage.NotifyClients", write_req(key, value, 5));
}

static void test_notify_clients_reaches_every_connected_client(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    int first = 0;
    nh_config *n1 = ph_client_config(rt, &g, &first, 1, NULL); /* a regular client */

    /* No clients: Acked 0, a success. */
    ProtobufCMessage *m = notify(n1, "k", "v");
    assert_int_equal(ph_get_u32(m, "Acked"), 0);
    size_t n;
    ph_get_u32s(m, "ClientIDs", &n);
    assert_int_equal(n, 0);
    ph_unpacked_free(m);

    /* Two clients with the Notify handler and one without. */
    static listener a, b, c;
    listener_start(&a, true);
    ph_wait_size(&g.n[0], true, 1);
    listener_start(&b, true);
    ph_wait_size(&g.n[0], true, 2);
    listener_start(&c, false);
    ph_wait_size(&g.n[0], true, 3);
    m = notify(n1, "k", "v");
    assert_int_equal(ph_get_u32(m, "Acked"), 2);
    const uint32_t *ids = ph_get_u32s(m, "ClientIDs", &n);
    assert_int_equal(n, 2);
    uint32_t acked[2] = {ids[0], ids[1]};
    ph_unpacked_free(m);
    assert_true(acked[0] >= (1u << 20));
    assert_true(acked[1] > acked[0]); /* ascending */
    nh_config *cc = nh_server_client_config(g.n[0].srv);
    assert_int_equal(nh_config_size(cc), 3);
    assert_true(nh_config_contains(cc, acked[0]));
    assert_true(nh_config_contains(cc, acked[1]));
    nh_config_unref(cc);
    int count_a, count_b;
    char last_a[64], last_b[64];
    pthread_mutex_lock(&a.mu);
    count_a = a.count;
    snprintf(last_a, sizeof last_a, "%s", a.last);
    pthread_mutex_unlock(&a.mu);
    pthread_mutex_lock(&b.mu);
    count_b = b.count;
    snprintf(last_b, sizeof last_b, "%s", b.last);
    pthread_mutex_unlock(&b.mu);
    assert_int_equal(count_a, 1);
    assert_int_equal(count_b, 1);
    assert_string_equal(last_a, "k=v");
    assert_string_equal(last_b, "k=v");

    /* The write was a notification only: the node did not store it. */
    m = rpc(n1, 1, READ_RPC, read_req("k"));
    assert_false(ph_get_bool(m, "OK"));
    ph_unpacked_free(m);

    /* The clients leave: back to none. */
    listener_stop(&a);
    listener_stop(&b);
    listener_stop(&c);
    ph_wait_size(&g.n[0], true, 0);
    m = notify(n1, "k2", "v2");
    assert_int_equal(ph_get_u32(m, "Acked"), 0);
    ph_unpacked_free(m);

    nh_config_unref(n1);
    nh_runtime_free(rt);
}

/* Reload hand-over: export from the running instance, import into a new one, switch. */
typedef struct xfer {
    const ph_plugin *p;
    void *state;
    nh_buf buf;
    int rc;
    nh_error err;
} xfer;

static void do_export(void *arg) {
    xfer *x = arg;
    x->rc = x->p->d->export_state(x->state, &x->buf, &x->err);
}

static void do_import(void *arg) {
    xfer *x = arg;
    x->rc = x->p->d->import_state(x->state, x->buf.data, x->buf.len, &x->err);
}

static void test_export_import_keeps_the_data_across_a_reload(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, &g, NULL, 0, NULL);
    char key[32], value[32];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "key%d", i);
        snprintf(value, sizeof value, "value%d", i);
        ph_unpacked_free(rpc(all, 1, WRITE_RPC, write_req(key, value, 1000 + i)));
    }
    ph_node *n1 = &g.n[0];
    xfer x = {.p = &g.plugin, .state = n1->state};
    ph_on_owner(n1, do_export, &x);
    if (x.rc != 0) fail_msg("export: %s", x.err.message);
    assert_true(x.buf.len > 0);

    /* A new generation with too small a max_keys refuses the state (the old one would stay). */
    ph_conf small;
    void *tiny = ph_instance(&g.plugin, n1, ph_conf_map(&small, "max_keys", "10", NULL), 2);
    xfer y = {.p = &g.plugin, .state = tiny, .buf = x.buf};
    ph_on_owner(n1, do_import, &y);
    assert_int_equal(y.rc, -1);
    assert_int_equal(y.err.code, NH_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(y.err.message, "max_keys"));
    g.plugin.d->fini(tiny);

    /* Bytes that are no snapshot. */
    void *bad = ph_instance(&g.plugin, n1, &g_conf.root, 2);
    uint8_t junk[] = {0xff, 0xff, 0xff};
    xfer z = {.p = &g.plugin, .state = bad, .buf = {junk, sizeof junk}};
    ph_on_owner(n1, do_import, &z);
    assert_int_equal(z.rc, -1);
    assert_int_equal(z.err.code, NH_INVALID_ARGUMENT);
    /* A disk store handed over by an older build (its raw "NHSTORE1" record): refused with the
     * way out, never opened a second time. */
    uint8_t old_format[64] = "NHSTORE1";
    z.buf = (nh_buf){old_format, sizeof old_format};
    ph_on_owner(n1, do_import, &z);
    assert_int_equal(z.rc, -1);
    assert_int_equal(z.err.code, NH_FAILED_PRECONDITION);
    assert_non_null(strstr(z.err.message, "restart the node"));
    g.plugin.d->fini(bad);

    /* The real hand-over: new instance, import, switch the handlers, fini the old one. */
    void *next = ph_instance(&g.plugin, n1, &g_conf.root, 2);
    xfer w = {.p = &g.plugin, .state = next, .buf = x.buf};
    ph_on_owner(n1, do_import, &w);
    if (w.rc != 0) fail_msg("import: %s", w.err.message);
    void *old = n1->state;
    ph_bind(&g.plugin, n1, next);
    g.plugin.d->fini(old);
    nh_buf_free(&x.buf);

    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "key%d", i);
        snprintf(value, sizeof value, "value%d", i);
        ProtobufCMessage *m = rpc(all, 1, READ_RPC, read_req(key));
        assert_true(ph_get_bool(m, "OK"));
        assert_string_equal(ph_get_str(m, "Value"), value);
        assert_int_equal(ph_get_ts_seconds(m, "Time"), 1000 + i);
        ph_unpacked_free(m);
    }
    /* The timestamps came along: an older write is still refused. */
    ProtobufCMessage *m = rpc(all, 1, WRITE_RPC, write_req("key3", "stale", 1));
    assert_false(ph_get_bool(m, "New"));
    ph_unpacked_free(m);
    nh_config_unref(all);
    nh_runtime_free(rt);
}

static void test_max_keys_limits_new_keys_only(void **state) {
    (void)state;
    /* A separate node, alone, with room for two keys (the cluster is up too: its plugin
     * handle gives the message descriptors). */
    static ph_cluster solo;
    memset(&solo, 0, sizeof solo);
    ph_load(&solo.plugin, "storage");
    solo.n[0].id = 9;
    snprintf(solo.n[0].addr, sizeof solo.n[0].addr, "127.0.0.1:%d", nh_test_free_port());
    solo.peers[0] = (nh_node_addr){.id = 9, .address = solo.n[0].addr};
    ph_conf two;
    ph_start_node(&solo, 0, ph_conf_map(&two, "max_keys", "2", NULL), true);
    nh_runtime *rt = ph_client_runtime();
    int first = 0;
    nh_config *cfg = ph_client_config(rt, &solo, &first, 1, NULL);
    ph_unpacked_free(rpc(cfg, 9, WRITE_RPC, write_req("x", "1", 1)));
    ph_unpacked_free(rpc(cfg, 9, WRITE_RPC, write_req("y", "1", 1)));
    nh_buf req = write_req("z", "1", 1);
    nh_call_opts o = {.timeout_ms = PH_TIMEOUT_MS};
    nh_error err;
    assert_int_equal(nh_rpc(nh_config_node(cfg, 0), WRITE_RPC, req.data, req.len, &o, NULL, &err),
                     -1);
    nh_buf_free(&req);
    assert_int_equal(err.code, NH_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err.message, "max_keys 2"));
    ProtobufCMessage *m = rpc(cfg, 9, WRITE_RPC, write_req("x", "2", 2)); /* existing key */
    assert_true(ph_get_bool(m, "New"));
    ph_unpacked_free(m);
    /* A node without Config cannot make the nested read. */
    req = read_req("x");
    assert_int_equal(nh_rpc(nh_config_node(cfg, 0), "proto.Storage.ReadNestedQC", req.data, req.len,
                            &o, NULL, &err),
                     -1);
    nh_buf_free(&req);
    assert_int_equal(err.code, NH_FAILED_PRECONDITION);
    nh_config_unref(cfg);
    nh_runtime_free(rt);
    ph_stop_node(&solo, 0);
    ph_unload(&solo.plugin);
}

static void test_check_config_rejects_unknown_keys_and_bad_values(void **state) {
    (void)state;
    const nh_plugin_descriptor *d = g.plugin.d;
    ph_conf c;
    nh_error err;
    assert_int_equal(d->check_config(NULL, &err), 0); /* no config: defaults */
    assert_int_equal(d->check_config(ph_conf_map(&c, "max_keys", "5", "nested_timeout_ms", "100",
                                                 "notify_timeout_ms", "100", NULL),
                                     &err),
                     0);
    assert_int_equal(d->check_config(ph_conf_map(&c, "max_key", "5", NULL), &err), -1);
    assert_non_null(strstr(err.message, "max_key"));
    assert_int_equal(d->check_config(ph_conf_map(&c, "max_keys", "0", NULL), &err), -1);
    assert_non_null(strstr(err.message, "max_keys"));
    assert_int_equal(d->check_config(ph_conf_map(&c, "notify_timeout_ms", "soon", NULL), &err), -1);
    assert_non_null(strstr(err.message, "notify_timeout_ms"));
}

static void test_a_request_that_does_not_decode_is_refused(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, &g, NULL, 0, NULL);
    uint8_t junk[] = {0x0a, 0x05, 'a'}; /* a string field longer than the message */
    nh_call_opts o = {.timeout_ms = PH_TIMEOUT_MS};
    nh_error err;
    assert_int_equal(nh_rpc(nh_config_node(all, 0), READ_RPC, junk, sizeof junk, &o, NULL, &err),
                     -1);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    nh_config_unref(all);
    nh_runtime_free(rt);
}

/* ---- nh-storage-client against the three nodes -------------------------------------------- */

static char g_client[4096], g_nodes[256];

/* Runs the client with args through the shell; returns its exit status, stdout in out. */
static int run_client(const char *args, char *out, size_t size) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' --timeout-ms %d --nodes %s %s 2>&1", g_client, PH_TIMEOUT_MS,
             g_nodes, args);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, size - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void expect_client(const char *args, int status, const char *want) {
    char out[4096];
    int st = run_client(args, out, sizeof out);
    if (getenv("NH_TEST_VERBOSE")) fprintf(stderr, "nh-storage-client %s\n%s", args, out);
    if (st != status || !strstr(out, want))
        fail_msg("nh-storage-client %s: exit %d, output \"%s\"; want exit %d and \"%s\"", args, st,
                 out, status, want);
}

static void test_storage_client_program(void **state) {
    (void)state;
    snprintf(g_client, sizeof g_client, "%s/plugins/storage/nh-storage-client",
             nh_test_binary_dir());
    snprintf(g_nodes, sizeof g_nodes, "1=%s,2=%s,3=%s", g.n[0].addr, g.n[1].addr, g.n[2].addr);
    expect_client("--help", 0, "usage: nh-storage-client");
    expect_client("frobnicate", 1, "unknown command \"frobnicate\"");
    expect_client("write color blue", 0, "write color=blue: ok");
    expect_client("read color", 0, "read color: \"blue\"");
    expect_client("read nothing", 0, "read nothing: not found");
    expect_client("multicast shape round", 0, "sent to nodes 1,2,3");
    expect_client("read shape", 0, "\"round\"");
    expect_client("nested 3 color", 0, "read by node 3 from its peers");
    expect_client("nested 3 color", 0, "\"blue\"");
    expect_client("notify 1 alert fire", 0, "acked by 0 clients (none)");

    /* A listener (a client peer of all three nodes) gets the notification. */
    char path[] = "/tmp/nh-storage-listen-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "exec '%s' --nodes %s listen --for-ms 120000 > '%s'", g_client,
             g_nodes, path);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    pid_t pid = nh_test_spawn(argv);
    assert_true(pid > 0);
    for (int i = 0; i < PH_NODES; i++)
        ph_wait_size(&g.n[i], true, 1);
    expect_client("notify 2 alert fire", 0, "acked by 1 client (1048");
    int st = nh_test_kill_wait(pid, SIGTERM); /* the listener stops cleanly on SIGTERM */
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    fclose(f);
    unlink(path);
    if (!strstr(out, "notification from node 2: alert=fire") ||
        !strstr(out, "listen: 1 notification"))
        fail_msg("listener output: \"%s\"", out);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

/* A memory store that starts has lost what it acknowledged: it refuses reads until it caught up
 * from 2 of its 2 peers (they meet every majority), takes writes meanwhile, and then answers
 * with what it pulled. */
static void test_restarted_memory_node_refuses_reads_until_it_caught_up(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, &g, NULL, 0, NULL);
    ph_unpacked_free(rpc(all, 1, WRITE_RPC, write_req("r", "kept", 5)));
    ph_stop_node(&g, 1); /* node 2 down */
    ph_stop_node(&g, 2); /* node 3 restarts while node 2 is down */
    ph_start_node(&g, 2, ph_conf_map(&g_conf, "max_keys", "1000", NULL), false);
    ph_wait_size(&g.n[2], false, 2); /* node 3 sees node 1 */
    nh_call_opts o = {.timeout_ms = PH_TIMEOUT_MS};
    nh_error err;
    bool one_done = false;
    for (int i = 0; i < 500 && !one_done; i++) {
        nh_buf req = read_req("r");
        assert_int_equal(
            nh_rpc(nh_config_find(all, 3), READ_RPC, req.data, req.len, &o, NULL, &err), -1);
        nh_buf_free(&req);
        assert_int_equal(err.code, NH_UNAVAILABLE);
        one_done = strstr(err.message, "caught up from 1 of the 2 peers") != NULL;
        if (!one_done) nh_test_sleep_ms(10);
    }
    if (!one_done) fail_msg("node 3: %s", err.message);
    /* Writes are taken while it recovers. */
    ProtobufCMessage *m = rpc(all, 3, WRITE_RPC, write_req("w", "during", 6));
    assert_true(ph_get_bool(m, "New"));
    ph_unpacked_free(m);
    /* Node 2 comes back: node 3 pulls from it too and serves reads, with node 1's entry. */
    ph_start_node(&g, 1, ph_conf_map(&g_conf, "max_keys", "1000", NULL), false);
    int i = 0;
    while (!serves_reads(all, 3) && i++ < 500)
        nh_test_sleep_ms(10);
    m = rpc(all, 3, READ_RPC, read_req("r"));
    assert_true(ph_get_bool(m, "OK"));
    assert_string_equal(ph_get_str(m, "Value"), "kept");
    ph_unpacked_free(m);
    nh_config_unref(all);
    nh_runtime_free(rt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_write_and_read_quorum_calls_keep_the_newest_timestamp),
        T(test_write_multicast_reaches_every_node_without_a_reply),
        T(test_read_nested_qc_answers_the_newest_value_of_a_majority),
        T(test_notify_clients_reaches_every_connected_client),
        T(test_export_import_keeps_the_data_across_a_reload),
        T(test_check_config_rejects_unknown_keys_and_bad_values),
        T(test_a_request_that_does_not_decode_is_refused),
        T(test_max_keys_limits_new_keys_only),
        T(test_storage_client_program),
        T(test_restarted_memory_node_refuses_reads_until_it_caught_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
