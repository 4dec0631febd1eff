/* The nodehost side's server for the echo benchmark: a runtime and a server with one handler,
 * test.Echo.Raw, which replies the payload unchanged (as tests/support/nh_echo.c does), written
 * with the public API only so the benchmarks build without the test suite.
 *
 *   nh_bench_server HOST:PORT
 *
 * Prints "listening <port>" once it serves; exits on SIGTERM or SIGINT. */
#include <nodehost/nodehost.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>

static void h_raw(nh_server_ctx *ctx, void *user) {
    (void)user;
    size_t n;
    const uint8_t *p = nh_ctx_payload(ctx, &n);
    nh_ctx_reply(ctx, p, n);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
        return 2;
    }
    /* Block the stop signals before any thread starts, then wait for them here. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    nh_error err;
    nh_runtime *rt;
    nh_runtime_opts ro = {.name = "bench-srv"};
    if (nh_runtime_new(&ro, &rt, &err) != 0) {
        fprintf(stderr, "nh_bench_server: %s\n", err.message);
        return 1;
    }
    nh_server *srv;
    int port = 0;
    nh_server_opts so = {.listen = argv[1]};
    if (nh_server_new(rt, &so, &srv, &port, &err) != 0 ||
        nh_server_handle(srv, "test.Echo.Raw", h_raw, NULL, &err) != 0) {
        fprintf(stderr, "nh_bench_server: %s\n", err.message);
        nh_runtime_free(rt);
        return 1;
    }
    printf("listening %d\n", port);
    fflush(stdout);
    int sig;
    sigwait(&stop, &sig);
    nh_runtime_free(rt);
    return 0;
}
