/* Every generated call type end to end: the everycall plugin (tests/codegen/everycall_register.c,
 * golden.v1.Register served through its generated handlers) on three in-process nodes, driven by
 * the generated client calls of everycall.proto: typed RPCs, a quorum call with a typed quorum
 * function (and one that fails the call), a multicast with a typed request map (skip one node,
 * replace another's request), a unicast whose handler calls the client back (served with the
 * generated _serve()), and a correctable call, async and blocking. */
#include "test_plugins_harness.h"

#include "everycall.nh.h"

static ph_cluster g;

static int setup(void **state) {
    (void)state;
    ph_cluster_start(&g, "everycall", NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ph_cluster_stop(&g);
    return 0;
}

static const nh_call_opts g_call = {.timeout_ms = PH_TIMEOUT_MS};

static Golden__V1__Value *get(nh_config *cfg, uint32_t id) {
    Golden__V1__Key key = GOLDEN__V1__KEY__INIT;
    key.key = "k";
    Golden__V1__Value *v = NULL;
    nh_error err;
    if (golden_v1_register_get(nh_config_find(cfg, id), &key, &g_call, &v, &err) != 0)
        fail_msg("Get from node %u: %s", id, err.message);
    return v;
}

static int64_t version_at(nh_config *cfg, uint32_t id) {
    Golden__V1__Value *v = get(cfg, id);
    int64_t version = v->version;
    assert_int_equal(v->meta->writer, id);
    golden__v1__value__free_unpacked(v, NULL);
    return version;
}

/* Multicast map: nothing to node 1, version + 100 to node 3, unchanged to node 2. */
static nh_map_verdict spread_map(uint32_t node_id, const Golden__V1__Value *req, void *user,
                                 nh_buf *out) {
    ++*(int *)user;
    if (node_id == 1) return NH_MAP_SKIP;
    if (node_id == 2) return NH_MAP_KEEP;
    Golden__V1__Value changed = *req;
    changed.version += 100;
    return nh_map_replace(out, &changed.base);
}

/* What a quorum function saw (it runs on the owner thread: checked afterwards). */
typedef struct qf_seen {
    size_t n;  /* replies at the last call */
    int wrong; /* replies that did not decode or name another writer than their node */
} qf_seen;

/* Quorum function: once every node answered, the newest value. */
static nh_qf_verdict newest(const Golden__V1__Value *const *replies, const nh_node_reply *raw,
                            size_t n, size_t config_size, void *user,
                            const Golden__V1__Value **result) {
    qf_seen *seen = user;
    seen->n = n;
    if (n < config_size) return NH_QF_MORE;
    for (size_t i = 0; i < n; i++) {
        if (!replies[i] || !replies[i]->meta || replies[i]->meta->writer != raw[i].node_id) {
            seen->wrong++;
            continue;
        }
        if (!*result || replies[i]->version > (*result)->version) *result = replies[i];
    }
    return NH_QF_DONE;
}

static nh_qf_verdict refuse(const Golden__V1__Value *const *replies, const nh_node_reply *raw,
                            size_t n, size_t config_size, void *user,
                            const Golden__V1__Value **result) {
    return n == 0 ? NH_QF_MORE
                  : nh_qf_fail(NH_FAILED_PRECONDITION, "node %u disagrees", raw[0].node_id);
}

static void test_rpc_multicast_map_and_quorum_function(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, &g, NULL, 0, NULL);
    nh_error err;
    for (uint32_t id = 1; id <= PH_NODES; id++)
        assert_int_equal(version_at(all, id), 0);

    /* Multicast with a typed map, then read each node back with the typed RPC. */
    Golden__V1__Value v = GOLDEN__V1__VALUE__INIT;
    v.key = "k";
    v.value = (ProtobufCBinaryData){3, (uint8_t *)"abc"};
    v.version = 5;
    int mapped = 0;
    golden_v1_register_spread_opts mo = {.call = g_call, .map = spread_map, .map_user = &mapped};
    if (golden_v1_register_spread(all, &v, &mo, &err) != 0) fail_msg("Spread: %s", err.message);
    assert_int_equal(mapped, PH_NODES);
    int64_t want[PH_NODES + 1] = {0, 0, 5, 105};
    for (uint32_t id = 1; id <= PH_NODES; id++) {
        int64_t got = 0;
        for (int i = 0; i < 200 && (got = version_at(all, id)) != want[id]; i++)
            nh_test_sleep_ms(10); /* a multicast returns once sent, not once handled */
        assert_int_equal(got, want[id]);
    }

    /* Quorum call: a typed quorum function picks the newest decoded reply. */
    Golden__V1__Key key = GOLDEN__V1__KEY__INIT;
    qf_seen seen = {0};
    golden_v1_register_read_opts qo = {.call = g_call, .qf = newest, .qf_user = &seen};
    Golden__V1__Value *value = NULL;
    nh_qc_outcome out;
    if (golden_v1_register_read(all, &key, &qo, &value, &out, &err) != 0)
        fail_msg("Read: %s", err.message);
    assert_int_equal(seen.n, PH_NODES);
    assert_int_equal(seen.wrong, 0);
    assert_int_equal(value->version, 105);
    assert_int_equal(value->meta->writer, 3);
    assert_int_equal(value->value.len, 3);
    assert_memory_equal(value->value.data, "abc", 3);
    assert_int_equal(out.n_replies, PH_NODES);
    golden__v1__value__free_unpacked(value, NULL);
    nh_qc_outcome_free(&out);

    /* The built-in rule (all) through the same typed call; and a quorum function that fails. */
    golden_v1_register_read_opts all_o = {.call = g_call, .quorum = {.kind = NH_QUORUM_ALL}};
    if (golden_v1_register_read(all, &key, &all_o, &value, NULL, &err) != 0)
        fail_msg("Read (all): %s", err.message);
    golden__v1__value__free_unpacked(value, NULL);
    golden_v1_register_read_opts bad = {.call = g_call, .qf = refuse};
    assert_int_equal(golden_v1_register_read(all, &key, &bad, &value, NULL, &err), -1);
    assert_null(value);
    assert_int_equal(err.code, NH_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "disagrees"));

    /* An explicit (gorums.rpc) method. */
    Golden__V1__Value *status = NULL;
    if (golden_v1_register_get_http_status(nh_config_find(all, 1), &key, &g_call, &status, &err))
        fail_msg("GetHTTPStatus: %s", err.message);
    assert_string_equal(status->key, "200");
    golden__v1__value__free_unpacked(status, NULL);

    nh_config_unref(all);
    nh_runtime_free(rt);
}

typedef struct async_read {
    sem_t done;
    int64_t version;
    nh_code code;
    size_t decoded; /* replies the completion got decoded */
} async_read;

static void read_done(const Golden__V1__Value *value, const Golden__V1__Value *const *replies,
                      const nh_qc_result *r, void *user) {
    async_read *a = user;
    a->code = r->err.code;
    a->version = value ? value->version : -1;
    for (size_t i = 0; replies && i < r->n_replies; i++)
        if (replies[i]) a->decoded++;
    sem_post(&a->done);
}

static void test_async_quorum_call(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, &g, NULL, 0, NULL);
    Golden__V1__Key key = GOLDEN__V1__KEY__INIT;
    async_read a = {.version = -2};
    sem_init(&a.done, 0, 0);
    qf_seen seen = {0};
    golden_v1_register_read_opts qo = {.call = g_call, .qf = newest, .qf_user = &seen};
    nh_error err;
    if (golden_v1_register_read_async(all, &key, &qo, read_done, &a, &err) != 0)
        fail_msg("Read async: %s", err.message);
    sem_wait(&a.done);
    assert_int_equal(a.code, NH_OK);
    assert_int_equal(seen.wrong, 0);
    assert_true(a.version >= 0);
    sem_destroy(&a.done);
    nh_config_unref(all);
    nh_runtime_free(rt);
}

/* The client side of golden.v1.Listener.Changed, served on the client's back-channel. */
typedef struct listener {
    int calls; /* atomic */
    int64_t version;
} listener;

static void on_changed(nh_server_ctx *ctx, const Golden__V1__Value *req, void *user) {
    listener *l = user;
    __atomic_store_n(&l->version, req->version, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&l->calls, 1, __ATOMIC_SEQ_CST);
    Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
    nh_ctx_reply_msg(ctx, &empty.base);
}

static void test_unicast_calls_the_client_back(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    listener l = {0};
    nh_error err;
    if (golden_v1_listener_changed_serve(rt, on_changed, &l, &err) != 0)
        fail_msg("%s", err.message);
    /* Announcing gorums-node-id 0 makes this program a client peer of every node. */
    nh_config *all = ph_client_config(rt, &g, NULL, 0, "0");
    ph_wait_size(&g.n[0], true, 1);
    Golden__V1__Value v = GOLDEN__V1__VALUE__INIT;
    v.key = "k";
    v.version = 1000;
    if (golden_v1_register_tell(nh_config_find(all, 1), &v, &g_call, &err) != 0)
        fail_msg("Tell: %s", err.message);
    for (int i = 0; i < 500 && __atomic_load_n(&l.calls, __ATOMIC_SEQ_CST) < 1; i++)
        nh_test_sleep_ms(10);
    assert_int_equal(__atomic_load_n(&l.calls, __ATOMIC_SEQ_CST), 1);
    assert_int_equal(__atomic_load_n(&l.version, __ATOMIC_SEQ_CST), 1000);
    assert_int_equal(version_at(all, 1), 1000);
    nh_config_unref(all);
    nh_runtime_free(rt);
}

typedef struct levels {
    int calls, last_level, done, undecoded; /* owner thread, read after done */
    sem_t end;
} levels;

static void on_level(int level, const Golden__V1__Value *value, bool done, const nh_error *err,
                     void *user) {
    levels *l = user;
    l->calls++;
    l->last_level = level;
    if (!done && !value) l->undecoded++; /* every rise carries the decoded newest reply */
    if (done) {
        l->done = err->code == NH_OK ? 1 : -1;
        sem_post(&l->end);
    }
}

static void test_correctable_levels(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, &g, NULL, 0, NULL);
    Golden__V1__Key key = GOLDEN__V1__KEY__INIT;
    nh_error err;
    /* Blocking: every node streams three values; the threshold is all nine. */
    golden_v1_register_watch_opts wo = {.call = g_call, .threshold = 3 * PH_NODES};
    Golden__V1__Value *value = NULL;
    int level = 0;
    if (golden_v1_register_watch(all, &key, &wo, &value, &level, &err) != 0)
        fail_msg("Watch: %s", err.message);
    assert_int_equal(level, 3 * PH_NODES);
    assert_non_null(value);
    golden__v1__value__free_unpacked(value, NULL);

    /* Async: the level rises to the threshold, then the call ends. */
    levels l = {0};
    sem_init(&l.end, 0, 0);
    golden_v1_register_watch_opts ao = {.call = g_call, .threshold = 4};
    nh_correctable *c = NULL;
    if (golden_v1_register_watch_start(all, &key, &ao, on_level, &l, &c, &err) != 0)
        fail_msg("Watch start: %s", err.message);
    sem_wait(&l.end);
    assert_int_equal(l.done, 1);
    assert_true(l.last_level >= 4);
    assert_true(l.calls >= 2);
    assert_int_equal(l.undecoded, 0);
    nh_correctable_free(c);
    sem_destroy(&l.end);
    nh_config_unref(all);
    nh_runtime_free(rt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rpc_multicast_map_and_quorum_function, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_async_quorum_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unicast_calls_the_client_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_correctable_levels, setup, teardown),
    };
    return cmocka_run_group_tests_name("everycall", tests, NULL, NULL);
}
