/* The benchmark plugin (plugins/benchmark, Gorums' benchmark service) on three in-process nodes
 * over loopback gRPC, served by a test trampoline in place of the nodehost program. */
#include "test_plugins_harness.h"

#include <time.h>

static ph_cluster g;

#define ECHO_METHOD "benchmark.Benchmark.QuorumCall"

static const ProtobufCMessageDescriptor *desc_req(const char *method) {
    return ph_method(&g.plugin, method)->request;
}
static const ProtobufCMessageDescriptor *desc_resp(const char *method) {
    return ph_method(&g.plugin, method)->response;
}

static nh_buf echo_req(const char *payload) {
    ProtobufCMessage *m = ph_msg_new(desc_req(ECHO_METHOD));
    ph_set_bytes(m, "payload", payload, strlen(payload));
    nh_buf b = ph_pack(m);
    ph_msg_free(m);
    return b;
}

/* The Echo payload of a reply, as a new string. */
static char *echo_payload(const uint8_t *p, size_t len) {
    ProtobufCMessage *m = ph_unpack(desc_resp(ECHO_METHOD), p, len);
    ProtobufCBinaryData b = ph_get_bytes(m, "payload");
    char *s = strndup((const char *)b.data, b.len);
    ph_unpacked_free(m);
    return s;
}

/* An empty request of a method's type, packed. */
static nh_buf empty_req(const char *method) {
    ProtobufCMessage *m = ph_msg_new(desc_req(method));
    nh_buf b = ph_pack(m);
    ph_msg_free(m);
    return b;
}

static nh_qc_outcome qc_all(nh_config *cfg, const char *method, nh_buf req) {
    nh_qc_opts o = {.call = {.timeout_ms = PH_TIMEOUT_MS}, .quorum = {.kind = NH_QUORUM_ALL}};
    nh_qc_outcome out = {0};
    nh_error err;
    int rc = nh_quorum_call(cfg, method, req.data, req.len, &o, &out, &err);
    nh_buf_free(&req);
    if (rc != 0) fail_msg("%s: %s", method, err.message);
    assert_int_equal(out.n_replies, PH_NODES);
    return out;
}

static int setup(void **state) {
    (void)state;
    ph_cluster_start(&g, "benchmark", NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ph_cluster_stop(&g);
    return 0;
}

static void test_quorum_call_echoes_on_every_node(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, &g, NULL, 0, NULL);
    nh_buf req = echo_req("hello benchmark");
    nh_buf copy = {malloc(req.len), req.len};
    memcpy(copy.data, req.data, req.len);
    nh_qc_outcome out = qc_all(all, ECHO_METHOD, req);
    for (size_t i = 0; i < out.n_replies; i++) {
        /* byte for byte the request */
        assert_int_equal(out.replies[i].len, copy.len);
        assert_memory_equal(out.replies[i].payload, copy.data, copy.len);
    }
    nh_qc_outcome_free(&out);
    nh_buf_free(&copy);
    /* An empty Echo too. */
    out = qc_all(all, ECHO_METHOD, echo_req(""));
    for (size_t i = 0; i < out.n_replies; i++)
        assert_int_equal(out.replies[i].len, 0);
    nh_qc_outcome_free(&out);
    nh_config_unref(all);
    nh_runtime_free(rt);
}

/* Completion order of asynchronous calls (callbacks run on the client's owner thread). */
#define SLOW 20
typedef struct order {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int finished;
    int quorum_call_rank; /* 1-based position of the QuorumCall among all completions */
    int slow_ok, failures;
    char failure[NH_ERROR_MESSAGE_MAX + 64];
} order;

typedef struct slow_call {
    order *o;
    int index; /* -1: the QuorumCall */
} slow_call;

static void on_done(const nh_qc_result *r, void *user) {
    slow_call *c = user;
    order *o = c->o;
    char want[32] = "quick";
    if (c->index >= 0) snprintf(want, sizeof want, "slow %d", c->index);
    char *got = r->err.code == NH_OK ? echo_payload(r->value, r->value_len) : NULL;
    pthread_mutex_lock(&o->mu);
    o->finished++;
    if (c->index < 0) o->quorum_call_rank = o->finished;
    if (got && !strcmp(got, want)) {
        if (c->index >= 0) o->slow_ok++;
    } else {
        o->failures++;
        snprintf(o->failure, sizeof o->failure, "%s: %s", want, got ? got : r->err.message);
    }
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    free(got);
}

static void test_slow_server_releases_and_does_not_block_the_node(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, &g, NULL, 0, NULL);
    static order o;
    o = (order){.finished = 0};
    pthread_mutex_init(&o.mu, NULL);
    pthread_cond_init(&o.cv, NULL);
    static slow_call calls[SLOW + 1];
    nh_qc_opts opts = {.call = {.timeout_ms = PH_TIMEOUT_MS}, .quorum = {.kind = NH_QUORUM_ALL}};
    nh_error err;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* SLOW SlowServer calls, then one QuorumCall, all on the same streams, in this order. */
    for (int i = 0; i <= SLOW; i++) {
        calls[i] = (slow_call){&o, i < SLOW ? i : -1};
        char text[32] = "quick";
        if (i < SLOW) snprintf(text, sizeof text, "slow %d", i);
        nh_buf req = echo_req(text);
        const char *method = i < SLOW ? "benchmark.Benchmark.SlowServer" : ECHO_METHOD;
        if (nh_quorum_call_async(all, method, req.data, req.len, &opts, on_done, &calls[i], &err) !=
            0)
            fail_msg("%s: %s", method, err.message);
        nh_buf_free(&req);
    }
    pthread_mutex_lock(&o.mu);
    while (o.finished < SLOW + 1)
        pthread_cond_wait(&o.cv, &o.mu);
    int rank = o.quorum_call_rank, slow_ok = o.slow_ok, failures = o.failures;
    char failure[sizeof o.failure];
    memcpy(failure, o.failure, sizeof failure);
    pthread_mutex_unlock(&o.mu);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (failures) fail_msg("%d failed calls, last %s", failures, failure);
    assert_int_equal(slow_ok, SLOW);
    /* Each SlowServer released its stream: the QuorumCall behind them was answered at once,
     * while most SlowServers were still sleeping (a node serving them one by one would have
     * answered it last, after 20 x 10 ms). */
    if (rank > SLOW / 2) fail_msg("the QuorumCall finished as call %d of %d", rank, SLOW + 1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_true(ms >= 10.0); /* each slept 10 ms */
    pthread_cond_destroy(&o.cv);
    pthread_mutex_destroy(&o.mu);
    nh_config_unref(all);
    nh_runtime_free(rt);
}

static int64_t realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void test_multicast_is_recorded_in_the_server_statistics(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, &g, NULL, 0, NULL);
    nh_qc_outcome out = qc_all(all, "benchmark.Benchmark.StartServerBenchmark",
                               empty_req("benchmark.Benchmark.StartServerBenchmark"));
    nh_qc_outcome_free(&out);
    const int K = 25;
    nh_qc_opts o = {.call = {.timeout_ms = PH_TIMEOUT_MS}};
    nh_error err;
    const ProtobufCMessageDescriptor *timed = desc_req("benchmark.Benchmark.Multicast");
    assert_null(ph_method(&g.plugin, "benchmark.Benchmark.Multicast")->response);
    assert_int_equal(ph_method(&g.plugin, "benchmark.Benchmark.Multicast")->call_type,
                     NH_CALL_MULTICAST);
    for (int i = 0; i < K; i++) {
        ProtobufCMessage *m = ph_msg_new(timed);
        ph_set_i64(m, "send_time", realtime_ns());
        ph_set_bytes(m, "payload", "x", 1);
        nh_buf b = ph_pack(m);
        ph_msg_free(m);
        if (nh_multicast(all, "benchmark.Benchmark.Multicast", b.data, b.len, &o, &err) != 0)
            fail_msg("multicast: %s", err.message);
        nh_buf_free(&b);
    }
    /* The stop follows the multicasts on each node's stream: every one was recorded. */
    out = qc_all(all, "benchmark.Benchmark.StopServerBenchmark",
                 empty_req("benchmark.Benchmark.StopServerBenchmark"));
    for (size_t i = 0; i < out.n_replies; i++) {
        ProtobufCMessage *r = ph_unpack(desc_resp("benchmark.Benchmark.StopServerBenchmark"),
                                        out.replies[i].payload, out.replies[i].len);
        uint64_t ops = ph_get_u64(r, "total_ops");
        int64_t total = ph_get_i64(r, "total_time");
        double tput = ph_get_double(r, "throughput"), avg = ph_get_double(r, "latency_avg"),
               var = ph_get_double(r, "latency_var");
        ph_unpacked_free(r);
        if (ops != (uint64_t)K)
            fail_msg("node %u: total_ops %llu", out.replies[i].node_id, (unsigned long long)ops);
        assert_true(total > 0);
        assert_true(tput > 0);
        assert_true(avg > 0 && avg < 60e9); /* nanoseconds: positive, well under a minute */
        assert_true(var >= 0);
    }
    nh_qc_outcome_free(&out);
    /* No reply was sent for the multicasts: nothing is pending. */
    for (size_t i = 0; i < nh_config_size(all); i++)
        assert_int_equal(nh_node_pending(nh_config_node(all, i)), 0);

    /* A new start resets the statistics. */
    out = qc_all(all, "benchmark.Benchmark.StartServerBenchmark",
                 empty_req("benchmark.Benchmark.StartServerBenchmark"));
    nh_qc_outcome_free(&out);
    out = qc_all(all, "benchmark.Benchmark.StopServerBenchmark",
                 empty_req("benchmark.Benchmark.StopServerBenchmark"));
    for (size_t i = 0; i < out.n_replies; i++) {
        ProtobufCMessage *r = ph_unpack(desc_resp("benchmark.Benchmark.StopServerBenchmark"),
                                        out.replies[i].payload, out.replies[i].len);
        assert_int_equal(ph_get_u64(r, "total_ops"), 0);
        assert_true(ph_get_double(r, "latency_avg") == 0);
        ph_unpacked_free(r);
    }
    nh_qc_outcome_free(&out);

    /* StartBenchmark / StopBenchmark: a MemoryStat per node (allocs unknown to glibc: 0). */
    out = qc_all(all, "benchmark.Benchmark.StartBenchmark",
                 empty_req("benchmark.Benchmark.StartBenchmark"));
    nh_qc_outcome_free(&out);
    out = qc_all(all, "benchmark.Benchmark.StopBenchmark",
                 empty_req("benchmark.Benchmark.StopBenchmark"));
    for (size_t i = 0; i < out.n_replies; i++) {
        ProtobufCMessage *r = ph_unpack(desc_resp("benchmark.Benchmark.StopBenchmark"),
                                        out.replies[i].payload, out.replies[i].len);
        assert_int_equal(ph_get_u64(r, "allocs"), 0);
        ph_unpacked_free(r);
    }
    nh_qc_outcome_free(&out);
    nh_config_unref(all);
    nh_runtime_free(rt);
}

static void test_check_config(void **state) {
    (void)state;
    const nh_plugin_descriptor *d = g.plugin.d;
    ph_conf c;
    nh_error err;
    assert_int_equal(d->check_config(NULL, &err), 0);
    assert_int_equal(d->check_config(ph_conf_map(&c, "slow_server_ms", "25", NULL), &err), 0);
    assert_int_equal(d->check_config(ph_conf_map(&c, "slow_server_ms", "-1", NULL), &err), -1);
    assert_non_null(strstr(err.message, "slow_server_ms"));
    assert_int_equal(d->check_config(ph_conf_map(&c, "fast", "1", NULL), &err), -1);
    assert_non_null(strstr(err.message, "fast"));
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_quorum_call_echoes_on_every_node),
        T(test_slow_server_releases_and_does_not_block_the_node),
        T(test_multicast_is_recorded_in_the_server_statistics),
        T(test_check_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
