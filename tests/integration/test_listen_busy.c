/* Integration: a listen address is one server's. A second nh_server on the port of a running one
 * (same runtime or another) fails with an error naming the address, and the first keeps serving
 * every new connection (gRPC's default SO_REUSEPORT used to let both bind and split them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nh_echo.h"

#include <nodehost/nodehost.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture {
    nh_runtime *rt; /* the first server's */
    nh_server *srv;
    int port;
    char addr[64];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    nh_error err;
    nh_runtime_opts ro = {.name = "first"};
    assert_int_equal(nh_runtime_new(&ro, &f->rt, &err), 0);
    nh_server_opts so = {.listen = "127.0.0.1:0"};
    assert_int_equal(nh_server_new(f->rt, &so, &f->srv, &f->port, &err), 0);
    assert_int_equal(nh_echo_register(f->srv), 0);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", f->port);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    nh_echo_finish_held();
    nh_runtime_free(f->rt);
    free(f);
    return 0;
}

/* A second server on addr in rt fails naming the address and the reason. */
static void expect_busy(nh_runtime *rt, const char *addr) {
    nh_server_opts so = {.listen = addr};
    nh_server *srv = NULL;
    int port = -1;
    nh_error err;
    memset(&err, 0, sizeof err);
    if (nh_server_new(rt, &so, &srv, &port, &err) == 0)
        fail_msg("a second server could listen on %s (port %d) too", addr, port);
    assert_null(srv);
    char want[128];
    snprintf(want, sizeof want, "cannot listen on %s: address already in use", addr);
    if (!strstr(err.message, want)) fail_msg("error \"%s\", expected \"%s\"", err.message, want);
}

/* A new connection from a new runtime reaches the first server's echo handler. */
static void expect_first_serves(const fixture *f, int round) {
    nh_runtime *crt;
    nh_error err;
    nh_runtime_opts ro = {.name = "client"};
    assert_int_equal(nh_runtime_new(&ro, &crt, &err), 0);
    nh_node *node;
    nh_node_opts no = {.id = 1, .address = f->addr};
    assert_int_equal(nh_node_open(crt, &no, &node, &err), 0);
    char req[32], want[48];
    snprintf(req, sizeof req, "round %d", round);
    snprintf(want, sizeof want, "echo: %s", req);
    nh_buf resp;
    nh_call_opts o = {.timeout_ms = 10000};
    if (nh_rpc(node, "test.Echo.Echo", req, strlen(req), &o, &resp, &err) != 0)
        fail_msg("round %d: %s", round, err.message);
    assert_int_equal(resp.len, strlen(want));
    assert_memory_equal(resp.data, want, resp.len);
    nh_buf_free(&resp);
    nh_node_close(node);
    nh_runtime_free(crt);
}

static void test_second_server_in_the_same_runtime_fails_naming_the_address(void **state) {
    fixture *f = *state;
    expect_busy(f->rt, f->addr);
    for (int i = 0; i < 4; i++)
        expect_first_serves(f, i);
}

static void test_second_server_in_another_runtime_fails_naming_the_address(void **state) {
    fixture *f = *state;
    nh_runtime *rt;
    nh_error err;
    nh_runtime_opts ro = {.name = "second"};
    assert_int_equal(nh_runtime_new(&ro, &rt, &err), 0);
    expect_busy(rt, f->addr);
    nh_runtime_free(rt);
    for (int i = 0; i < 4; i++)
        expect_first_serves(f, i);
}

static void test_bad_address_fails_naming_it(void **state) {
    fixture *f = *state;
    nh_server_opts so = {.listen = "no-port-here"};
    nh_server *srv = NULL;
    int port;
    nh_error err;
    assert_int_not_equal(nh_server_new(f->rt, &so, &srv, &port, &err), 0);
    assert_null(srv);
    if (strncmp(err.message, "cannot listen on no-port-here: ", 31) != 0)
        fail_msg("error \"%s\" does not name the address", err.message);
    expect_first_serves(f, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_second_server_in_the_same_runtime_fails_naming_the_address, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_second_server_in_another_runtime_fails_naming_the_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_address_fails_naming_it, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
