/* A nodehost node serving the test.Echo service, for tests that need a separate process:
 *   nh_echo_server [--max-message BYTES] HOST:PORT
 * Prints "listening <port>" on stdout once it serves, and exits 0 on SIGTERM or SIGINT. */
#include "nh_echo.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

int main(int argc, char **argv) {
    size_t max_message = 0;
    const char *listen = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--max-message") && i + 1 < argc) {
            max_message = (size_t)strtoull(argv[++i], NULL, 10);
        } else if (argv[i][0] != '-' && !listen) {
            listen = argv[i];
        } else {
            fprintf(stderr, "usage: %s [--max-message BYTES] HOST:PORT\n", argv[0]);
            return 2;
        }
    }
    if (!listen) {
        fprintf(stderr, "usage: %s [--max-message BYTES] HOST:PORT\n", argv[0]);
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    nh_error err;
    nh_runtime *rt;
    nh_runtime_opts ro = {.name = "echo", .max_message_size = max_message};
    if (nh_runtime_new(&ro, &rt, &err) != 0) {
        fprintf(stderr, "nh_echo_server: %s\n", err.message);
        return 1;
    }
    nh_server *srv;
    int port = 0;
    nh_server_opts so = {.listen = listen};
    if (nh_server_new(rt, &so, &srv, &port, &err) != 0 || nh_echo_register(srv) != 0) {
        fprintf(stderr, "nh_echo_server: %s\n", err.message);
        nh_runtime_free(rt);
        return 1;
    }
    printf("listening %d\n", port);
    fflush(stdout);
    while (!g_stop)
        usleep(20000);
    nh_runtime_free(rt);
    return 0;
}
