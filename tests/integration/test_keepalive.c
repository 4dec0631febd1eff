/* Integration: keepalive finds a peer process that stalls (SIGSTOP) without closing its
 * connection: the node's stream breaks, a call waiting on the stalled peer fails with
 * UNAVAILABLE instead of hanging, and after SIGCONT the node reconnects by itself. With the
 * keepalive 1000 ms with the default timeout and with a faster one from nh_node_opts (a node
 * opened without keepalive_time_ms does not ping: see nh_node_opts). The measured times
 * are printed; the bounds are generous (shared 2-core machine, sanitizer builds). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nh_test_util.h"

#include <nodehost/nodehost.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define DETECT_BOUND_MS 15000 /* SIGSTOP -> the waiting call failed */
#define RETURN_BOUND_MS 15000 /* SIGCONT -> connected again */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct outcome {
    int done; /* atomic */
    int64_t at_ms;
    nh_code code;
    char message[NH_ERROR_MESSAGE_MAX];
} outcome;

static void on_reply(const nh_reply *r, void *user) {
    outcome *o = user;
    o->code = r->err.code;
    snprintf(o->message, sizeof o->message, "%s", r->err.message);
    o->at_ms = now_ms();
    __atomic_store_n(&o->done, 1, __ATOMIC_RELEASE);
}

static bool wait_connected(nh_node *n, bool want, int ms) {
    for (int waited = 0; waited <= ms; waited += 10) {
        if (nh_node_connected(n) == want) return true;
        nh_test_sleep_ms(10);
    }
    return false;
}

/* One round: a server process, a node to it with the given keepalive, a call held by the
 * server, SIGSTOP, the call fails; SIGCONT, the node reconnects and serves again. */
static void stall_round(uint32_t time_ms, uint32_t timeout_ms, const char *label) {
    int port = nh_test_free_port();
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    char bin[512];
    snprintf(bin, sizeof bin, "%s/tests/nh_echo_server", nh_test_binary_dir());
    char *argv[] = {bin, addr, NULL};
    pid_t pid = nh_test_spawn(argv);
    assert_true(pid > 0);
    assert_true(nh_test_wait_port(port, 10000));

    nh_error err;
    nh_runtime *rt;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    nh_node_opts no = {.id = 1,
                       .address = addr,
                       .backoff_base_ms = 50,
                       .backoff_max_ms = 500,
                       .keepalive_time_ms = time_ms,
                       .keepalive_timeout_ms = timeout_ms};
    nh_node *n;
    assert_int_equal(nh_node_open(rt, &no, &n, &err), 0);
    assert_true(wait_connected(n, true, 10000));
    nh_buf resp;
    nh_call_opts co = {.timeout_ms = 10000};
    assert_int_equal(nh_rpc(n, "test.Echo.Echo", "x", 1, &co, &resp, &err), 0);
    nh_buf_free(&resp);

    /* A call the server holds (never answers), with a timeout far beyond the keepalive's. */
    outcome o = {0};
    nh_call_opts hold = {.timeout_ms = 120000};
    assert_int_equal(nh_rpc_async(n, "test.Echo.Hold", "h", 1, &hold, on_reply, &o, &err), 0);
    nh_test_sleep_ms(200);
    assert_int_equal(__atomic_load_n(&o.done, __ATOMIC_ACQUIRE), 0);

    int64_t t0 = now_ms();
    assert_int_equal(kill(pid, SIGSTOP), 0);
    while (!__atomic_load_n(&o.done, __ATOMIC_ACQUIRE) && now_ms() - t0 < DETECT_BOUND_MS)
        nh_test_sleep_ms(10);
    bool failed = __atomic_load_n(&o.done, __ATOMIC_ACQUIRE) != 0;
    int64_t detect = failed ? o.at_ms - t0 : -1;
    bool down = wait_connected(n, false, 1000);
    fprintf(stderr,
            "[keepalive] %s: SIGSTOP -> the held call failed after %lld ms (%s: %s); node "
            "connected: %s (bound %d ms)\n",
            label, (long long)detect, failed ? nh_code_name(o.code) : "-",
            failed ? o.message : "still waiting", down ? "no" : "yes", DETECT_BOUND_MS);
    if (!failed) kill(pid, SIGCONT); /* let the cleanup below work before failing */
    assert_true(failed);
    assert_int_equal(o.code, NH_UNAVAILABLE);
    assert_non_null(strstr(o.message, "stream broken"));
    assert_true(down);

    int64_t t1 = now_ms();
    assert_int_equal(kill(pid, SIGCONT), 0);
    bool up = wait_connected(n, true, RETURN_BOUND_MS);
    fprintf(stderr, "[keepalive] %s: SIGCONT -> connected again after %lld ms\n", label,
            (long long)(now_ms() - t1));
    assert_true(up);
    assert_int_equal(nh_rpc(n, "test.Echo.Echo", "y", 1, &co, &resp, &err), 0);
    assert_true(resp.len > 0);
    nh_buf_free(&resp);

    nh_node_close(n);
    nh_runtime_free(rt);
    int st = nh_test_kill_wait(pid, SIGTERM);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_default_keepalive_fails_calls_to_a_stalled_peer(void **state) {
    (void)state;
    stall_round(1000, 0, "keepalive 1000 ms, default timeout (2000 ms)");
}

static void test_keepalive_from_the_node_options(void **state) {
    (void)state;
    stall_round(200, 400, "keepalive 200/400 ms");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_keepalive_fails_calls_to_a_stalled_peer),
        cmocka_unit_test(test_keepalive_from_the_node_options),
    };
    return cmocka_run_group_tests_name("keepalive", tests, NULL, NULL);
}
