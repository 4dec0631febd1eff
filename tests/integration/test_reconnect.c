/* Integration: a node against a server in a separate process that is killed and restarted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nh_test_util.h"

#include <nodehost/nodehost.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static pid_t start_server(int port) {
    char bin[512], addr[64];
    snprintf(bin, sizeof bin, "%s/tests/nh_echo_server", nh_test_binary_dir());
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    char *argv[] = {bin, addr, NULL};
    pid_t pid = nh_test_spawn(argv);
    assert_true(pid > 0);
    assert_true(nh_test_wait_port(port, 10000));
    return pid;
}

typedef struct result {
    int done;
    nh_error err;
} result;

static void on_done(const nh_reply *r, void *user) {
    result *res = user;
    res->err = r->err;
    __atomic_store_n(&res->done, 1, __ATOMIC_RELEASE);
}

static bool wait_done(result *r, int ms) {
    for (int i = 0; i < ms / 10; i++) {
        if (__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) return true;
        nh_test_sleep_ms(10);
    }
    return __atomic_load_n(&r->done, __ATOMIC_ACQUIRE);
}

static int rpc_echo(nh_node *node, nh_error *err) {
    nh_call_opts o = {.timeout_ms = 2000};
    nh_buf resp;
    int rc = nh_rpc(node, "test.Echo.Echo", "ping", 4, &o, &resp, err);
    if (rc == 0) {
        rc = (resp.len == 10 && memcmp(resp.data, "echo: ping", 10) == 0) ? 0 : -2;
        nh_buf_free(&resp);
    }
    return rc;
}

static void test_server_killed_mid_call_fails_the_call_and_reconnects_later(void **state) {
    (void)state;
    int port = nh_test_free_port();
    pid_t pid = start_server(port);
    nh_error err;
    nh_runtime *rt;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    nh_node *node;
    nh_node_opts no = {.id = 1, .address = addr, .backoff_base_ms = 50, .backoff_max_ms = 500};
    assert_int_equal(nh_node_open(rt, &no, &node, &err), 0);
    assert_int_equal(rpc_echo(node, &err), 0);

    /* A call the server holds; the server dies under it. */
    result r = {0};
    nh_call_opts o = {.timeout_ms = 20000};
    assert_int_equal(nh_rpc_async(node, "test.Echo.Hold", "", 0, &o, on_done, &r, &err), 0);
    for (int i = 0; i < 500 && nh_node_pending(node) == 0; i++)
        nh_test_sleep_ms(10);
    nh_test_sleep_ms(50);
    int st = nh_test_kill_wait(pid, SIGKILL);
    assert_true(WIFSIGNALED(st));
    /* Fails long before its 20 s timeout, with a transport error naming the node. */
    assert_true(wait_done(&r, 5000));
    assert_int_equal(r.err.code, NH_UNAVAILABLE);
    assert_int_equal(r.err.kind, NH_ERR_TRANSPORT);
    assert_int_equal(r.err.node_id, 1);
    assert_non_null(strstr(r.err.message, "node 1 (127.0.0.1:"));
    assert_non_null(strstr(r.err.message, "stream broken"));
    assert_int_equal(nh_node_pending(node), 0);

    /* While the server is down, calls fail fast with the connect error. */
    for (int i = 0; i < 100 && nh_node_connected(node); i++)
        nh_test_sleep_ms(10);
    assert_false(nh_node_connected(node));
    assert_int_not_equal(rpc_echo(node, &err), 0);
    assert_int_equal(err.code, NH_UNAVAILABLE);
    nh_error last;
    assert_true(nh_node_last_error(node, &last));
    assert_non_null(strstr(last.message, "node 1"));

    /* Restart on the same port: the node reconnects in the background, without any call. */
    pid = start_server(port);
    bool connected = false;
    for (int i = 0; i < 1000 && !connected; i++) {
        connected = nh_node_connected(node);
        if (!connected) nh_test_sleep_ms(10);
    }
    assert_true(connected);
    assert_int_equal(rpc_echo(node, &err), 0);

    nh_node_close(node);
    nh_runtime_free(rt);
    st = nh_test_kill_wait(pid, SIGTERM);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_node_started_before_its_server_connects_when_it_appears(void **state) {
    (void)state;
    int port = nh_test_free_port();
    nh_error err;
    nh_runtime *rt;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    nh_node *node;
    nh_node_opts no = {.id = 2, .address = addr, .backoff_base_ms = 50, .backoff_max_ms = 300};
    assert_int_equal(nh_node_open(rt, &no, &node, &err), 0);
    /* Nothing listens: the first call fails with a connect error, quickly. */
    int rc = rpc_echo(node, &err);
    assert_int_not_equal(rc, 0);
    assert_int_equal(err.code, NH_UNAVAILABLE);
    assert_non_null(strstr(err.message, "node 2"));
    pid_t pid = start_server(port);
    bool ok = false;
    for (int i = 0; i < 500 && !ok; i++) {
        ok = nh_node_connected(node);
        if (!ok) nh_test_sleep_ms(10);
    }
    assert_true(ok);
    assert_int_equal(rpc_echo(node, &err), 0);
    nh_node_close(node);
    nh_runtime_free(rt);
    nh_test_kill_wait(pid, SIGTERM);
}

static void test_server_with_small_limit_rejects_oversized_request(void **state) {
    (void)state;
    int port = nh_test_free_port();
    char bin[512], addr[64];
    snprintf(bin, sizeof bin, "%s/tests/nh_echo_server", nh_test_binary_dir());
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    char *argv[] = {bin, "--max-message", "1024", addr, NULL};
    pid_t pid = nh_test_spawn(argv);
    assert_true(nh_test_wait_port(port, 10000));
    nh_error err;
    nh_runtime *rt;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    nh_node *node;
    nh_node_opts no = {.id = 3, .address = addr, .backoff_base_ms = 50, .backoff_max_ms = 300};
    assert_int_equal(nh_node_open(rt, &no, &node, &err), 0);
    assert_int_equal(rpc_echo(node, &err), 0);
    char big[4096];
    memset(big, 'b', sizeof big);
    nh_call_opts o = {.timeout_ms = 5000};
    assert_int_equal(nh_rpc(node, "test.Echo.Raw", big, sizeof big, &o, NULL, &err), -1);
    assert_int_equal(err.code, NH_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err.message, "node 3"));
    /* The node recovers: a new stream serves normal calls. */
    int rc = -1;
    for (int i = 0; i < 100 && rc != 0; i++) {
        rc = rpc_echo(node, &err);
        if (rc != 0) nh_test_sleep_ms(20);
    }
    assert_int_equal(rc, 0);
    nh_node_close(node);
    nh_runtime_free(rt);
    nh_test_kill_wait(pid, SIGTERM);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_killed_mid_call_fails_the_call_and_reconnects_later),
        cmocka_unit_test(test_node_started_before_its_server_connects_when_it_appears),
        cmocka_unit_test(test_server_with_small_limit_rejects_oversized_request),
    };
    return cmocka_run_group_tests_name("reconnect", tests, NULL, NULL);
}
