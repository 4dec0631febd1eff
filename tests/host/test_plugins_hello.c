/* The hello plugin (plugins/hello) on three in-process nodes over loopback gRPC, served by a
 * test trampoline in place of the nodehost program. */
#include "test_plugins_harness.h"

static ph_cluster g;
static ph_conf g_conf;

static nh_buf hello_req(const char *name) {
    ProtobufCMessage *m = ph_msg_new(ph_method(&g.plugin, "hello.Greeter.SayHello")->request);
    ph_set_str(m, "name", name);
    nh_buf b = ph_pack(m);
    ph_msg_free(m);
    return b;
}

static char *hello_message(const uint8_t *p, size_t len) {
    ProtobufCMessage *m =
        ph_unpack(ph_method(&g.plugin, "hello.Greeter.SayHello")->response, p, len);
    char *s = strdup(ph_get_str(m, "message"));
    ph_unpacked_free(m);
    return s;
}

static int setup(void **state) {
    (void)state;
    ph_cluster_start(&g, "hello", ph_conf_map(&g_conf, "greeting", "Hi", NULL));
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ph_cluster_stop(&g);
    return 0;
}

static void test_say_hello_as_rpc_and_quorum_call(void **state) {
    (void)state;
    nh_runtime *rt = ph_client_runtime();
    nh_config *all = ph_client_config(rt, &g, NULL, 0, NULL);
    nh_buf req = hello_req("Ada");
    nh_call_opts co = {.timeout_ms = PH_TIMEOUT_MS};
    nh_buf resp;
    nh_error err;
    if (nh_rpc(nh_config_find(all, 2), "hello.Greeter.SayHello", req.data, req.len, &co, &resp,
               &err) != 0)
        fail_msg("%s", err.message);
    char *msg = hello_message(resp.data, resp.len);
    assert_string_equal(msg, "Hi, Ada! (from node 2)");
    free(msg);
    nh_buf_free(&resp);

    nh_qc_opts qo = {.call = {.timeout_ms = PH_TIMEOUT_MS}, .quorum = {.kind = NH_QUORUM_ALL}};
    nh_qc_outcome out;
    if (nh_quorum_call(all, "hello.Greeter.SayHelloQC", req.data, req.len, &qo, &out, &err) != 0)
        fail_msg("%s", err.message);
    assert_int_equal(out.n_replies, PH_NODES);
    for (size_t i = 0; i < out.n_replies; i++) {
        char want[64];
        snprintf(want, sizeof want, "Hi, Ada! (from node %u)", out.replies[i].node_id);
        msg = hello_message(out.replies[i].payload, out.replies[i].len);
        assert_string_equal(msg, want);
        free(msg);
    }
    nh_qc_outcome_free(&out);
    nh_buf_free(&req);
    nh_config_unref(all);
    nh_runtime_free(rt);
}

static void test_check_config(void **state) {
    (void)state;
    const nh_plugin_descriptor *d = g.plugin.d;
    ph_conf c;
    nh_error err;
    assert_int_equal(d->check_config(NULL, &err), 0);
    assert_int_equal(d->check_config(ph_conf_map(&c, "greeting", "", NULL), &err), -1);
    assert_non_null(strstr(err.message, "greeting"));
    assert_int_equal(d->check_config(ph_conf_map(&c, "greetings", "Yo", NULL), &err), -1);
    assert_non_null(strstr(err.message, "greetings"));
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_say_hello_as_rpc_and_quorum_call),
        T(test_check_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
