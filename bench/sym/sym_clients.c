/* Client peers for the ClientConfig benchmark (docs/benchmarks-symmetric.md).
 *
 *   sym_clients HOST:PORT --streams K
 *
 * One runtime that serves bench.Echo (replies with its payload) and bench.Cpu ("<pid> <cpu
 * ns>", see sym_node.c) through nh_runtime_handle, and K configurations of the one node at
 * HOST:PORT, each made with nh_config_new and the header gorums-node-id=0: each opens its own
 * stream, so the node counts K client peers in its ClientConfig and calls them back over those
 * streams. Prints "opened <K>" and runs until SIGTERM or SIGINT. */
#include <nodehost/nodehost.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void h_echo(nh_server_ctx *ctx, void *user) {
    (void)user;
    size_t n;
    const uint8_t *p = nh_ctx_payload(ctx, &n);
    nh_ctx_reply(ctx, p, n);
}

static void h_cpu(nh_server_ctx *ctx, void *user) {
    (void)user;
    struct rusage ru;
    long long ns = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        ns = ((long long)ru.ru_utime.tv_sec + (long long)ru.ru_stime.tv_sec) * 1000000000LL +
             ((long long)ru.ru_utime.tv_usec + (long long)ru.ru_stime.tv_usec) * 1000LL;
    char buf[64];
    int k = snprintf(buf, sizeof buf, "%ld %lld", (long)getpid(), ns);
    nh_ctx_reply(ctx, buf, (size_t)k);
}

int main(int argc, char **argv) {
    if (argc != 4 || strcmp(argv[2], "--streams") != 0) {
        fprintf(stderr, "usage: %s HOST:PORT --streams K\n", argv[0]);
        return 2;
    }
    const char *addr = argv[1];
    size_t k = strtoul(argv[3], NULL, 10);
    if (k == 0) return 2;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    nh_config **cfgs = calloc(k, sizeof *cfgs);
    if (!cfgs) return 1;
    nh_error err;
    nh_runtime *rt;
    nh_runtime_opts ro = {.name = "sym_clients"};
    if (nh_runtime_new(&ro, &rt, &err) != 0) {
        fprintf(stderr, "sym_clients: %s\n", err.message);
        return 1;
    }
    nh_runtime_handle(rt, "bench.Echo", h_echo, NULL, NULL);
    nh_runtime_handle(rt, "bench.Cpu", h_cpu, NULL, NULL);
    const char *addrs[] = {addr};
    nh_metadata md[] = {{"gorums-node-id", "0"}};
    nh_config_opts co = {.addresses = addrs,
                         .count = 1,
                         .metadata = md,
                         .metadata_count = 1,
                         .backoff_base_ms = 50,
                         .backoff_max_ms = 500};
    int status = 0;
    size_t opened = 0;
    for (; opened < k && !g_stop; opened++) {
        if (nh_config_new(rt, &co, &cfgs[opened], &err) != 0) {
            fprintf(stderr, "sym_clients: stream %zu: %s\n", opened, err.message);
            status = 1;
            break;
        }
    }
    if (status == 0) {
        printf("opened %zu\n", opened);
        fflush(stdout);
        while (!g_stop)
            usleep(20000);
    }
    for (size_t i = 0; i < opened; i++)
        nh_config_unref(cfgs[i]);
    nh_runtime_free(rt);
    free(cfgs);
    return status;
}
