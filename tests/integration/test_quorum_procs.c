/* Integration: quorum calls to three server processes, killed with SIGKILL mid-call and
 * restarted: majority keeps working, failures name their nodes, restarted nodes come back
 * without anyone acting. */
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

typedef struct proc {
    int port;
    char addr[32];
    pid_t pid;
} proc;

static void start(proc *p) {
    char bin[512];
    snprintf(bin, sizeof bin, "%s/tests/nh_echo_server", nh_test_binary_dir());
    char *argv[] = {bin, p->addr, NULL};
    p->pid = nh_test_spawn(argv);
    assert_true(p->pid > 0);
    assert_true(nh_test_wait_port(p->port, 10000));
}

static bool wait_connected(nh_node *n, bool want, int ms) {
    for (int waited = 0; waited <= ms; waited += 10) {
        if (nh_node_connected(n) == want) return true;
        nh_test_sleep_ms(10);
    }
    return false;
}

static int call(nh_config *cfg, const char *method, const char *req, nh_quorum_kind kind,
                nh_qc_outcome *out, nh_error *err) {
    nh_qc_opts o = {.call = {.timeout_ms = 10000}, .quorum = {.kind = kind}};
    return nh_quorum_call(cfg, method, req, strlen(req), &o, out, err);
}

static bool names_node(const nh_error *err, uint32_t id) {
    char needle[32];
    snprintf(needle, sizeof needle, "node %u ", id);
    return strstr(err->message, needle) != NULL;
}

static void test_killed_nodes_fail_named_and_restarted_nodes_come_back(void **state) {
    (void)state;
    proc p[3];
    for (int i = 0; i < 3; i++) {
        p[i].port = nh_test_free_port();
        snprintf(p[i].addr, sizeof p[i].addr, "127.0.0.1:%d", p[i].port);
        start(&p[i]);
    }
    nh_error err;
    nh_runtime *rt;
    assert_int_equal(nh_runtime_new(NULL, &rt, &err), 0);
    const char *addrs[] = {p[0].addr, p[1].addr, p[2].addr};
    nh_config_opts co = {
        .addresses = addrs, .count = 3, .backoff_base_ms = 50, .backoff_max_ms = 300};
    nh_config *cfg;
    assert_int_equal(nh_config_new(rt, &co, &cfg, &err), 0);
    nh_qc_outcome o;
    assert_int_equal(call(cfg, "test.Echo.Echo", "a", NH_QUORUM_ALL, &o, &err), 0);
    nh_qc_outcome_free(&o);

    /* Node 3 is killed while an All call waits for its reply. */
    nh_qc_future *fut;
    nh_qc_opts slow = {.call = {.timeout_ms = 20000}, .quorum = {.kind = NH_QUORUM_ALL}};
    assert_int_equal(
        nh_quorum_call_start(cfg, "test.Echo.SlowRelease", "500", 3, &slow, &fut, &err), 0);
    nh_test_sleep_ms(100);
    nh_test_kill_wait(p[2].pid, SIGKILL);
    assert_int_equal(nh_qc_future_wait(fut, &o, &err), -1);
    assert_int_equal(err.kind, NH_ERR_INCOMPLETE);
    assert_int_equal(o.n_node_errors, 1);
    assert_true(names_node(&err, 3));
    assert_non_null(strstr(err.message, "stream broken"));
    nh_qc_outcome_free(&o);
    nh_qc_future_free(fut);

    /* One of three down: majority succeeds; the node's error can be read. */
    assert_true(wait_connected(nh_config_node(cfg, 2), false, 5000));
    assert_int_equal(call(cfg, "test.Echo.Echo", "b", NH_QUORUM_MAJORITY, &o, &err), 0);
    nh_qc_outcome_free(&o);
    nh_error last;
    assert_true(nh_node_last_error(nh_config_node(cfg, 2), &last));
    assert_int_equal(last.node_id, 3);

    /* Two of three down: incomplete, listing both. */
    nh_test_kill_wait(p[1].pid, SIGKILL);
    assert_true(wait_connected(nh_config_node(cfg, 1), false, 5000));
    assert_int_equal(call(cfg, "test.Echo.Echo", "c", NH_QUORUM_MAJORITY, &o, &err), -1);
    assert_int_equal(err.kind, NH_ERR_INCOMPLETE);
    assert_int_equal(o.n_node_errors, 2);
    assert_true(names_node(&err, 2));
    assert_true(names_node(&err, 3));
    nh_qc_outcome_free(&o);

    /* Restart both: they come back into service by themselves. */
    start(&p[1]);
    start(&p[2]);
    for (int i = 0; i < 3; i++)
        assert_true(wait_connected(nh_config_node(cfg, i), true, 10000));
    assert_int_equal(call(cfg, "test.Echo.Echo", "d", NH_QUORUM_ALL, &o, &err), 0);
    nh_qc_outcome_free(&o);

    nh_config_unref(cfg);
    nh_runtime_free(rt);
    for (int i = 0; i < 3; i++) {
        int st = nh_test_kill_wait(p[i].pid, SIGTERM);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_killed_nodes_fail_named_and_restarted_nodes_come_back),
    };
    return cmocka_run_group_tests_name("quorum_procs", tests, NULL, NULL);
}
