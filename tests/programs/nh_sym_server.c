/* A nodehost node with the symmetric configuration, for tests in separate processes:
 *   nh_sym_server --id N [--peer ID=HOST:PORT]... [--dial] HOST:PORT
 * Prints "listening <port>" once it serves; exits 0 on SIGTERM or SIGINT. Methods:
 *   sys.Id           reply this node's ID
 *   sys.Ids          reply "<Config IDs>|<ClientConfig IDs>", comma-separated
 *   sys.CallClients  payload = a method name; quorum call (All) over ClientConfig with an empty
 *                    request; reply "<id>=<reply>,..." sorted by ID, or an error status
 *   sys.CallConfig   payload = a method name; the same over Config
 * It also answers test.Echo.* (tests/support/nh_echo.h). */
#include "nh_echo.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;
static uint32_t g_id;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void h_id(nh_server_ctx *ctx, void *user) {
    (void)user;
    char buf[16];
    int k = snprintf(buf, sizeof buf, "%u", g_id);
    nh_ctx_reply(ctx, buf, (size_t)k);
}

static size_t print_ids(char *buf, size_t size, nh_config *c) {
    uint32_t ids[1024];
    size_t n = nh_config_ids(c, ids, 1024), off = 0; /* n is the size: may exceed 1024 */
    if (n > 1024) n = 1024;
    for (size_t i = 0; i < n && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, i ? ",%u" : "%u", ids[i]);
    nh_config_unref(c);
    return off < size ? off : size;
}

static void h_ids(nh_server_ctx *ctx, void *user) {
    (void)user;
    static char buf[16384];
    size_t off = print_ids(buf, sizeof buf, nh_ctx_config(ctx));
    if (off < sizeof buf) buf[off++] = '|';
    off += print_ids(buf + off, sizeof buf - off, nh_ctx_client_config(ctx));
    nh_ctx_reply(ctx, buf, off);
}

static int by_node(const void *a, const void *b) {
    uint32_t x = ((const nh_node_reply *)a)->node_id, y = ((const nh_node_reply *)b)->node_id;
    return x < y ? -1 : x > y;
}

static void call_done(const nh_qc_result *r, void *user) {
    nh_server_ctx *ctx = user;
    if (r->err.code != NH_OK) {
        nh_ctx_reply_error(ctx, r->err.code, "%s", r->err.message);
        return;
    }
    nh_node_reply *sorted = malloc((r->n_replies ? r->n_replies : 1) * sizeof *sorted);
    memcpy(sorted, r->replies, r->n_replies * sizeof *sorted);
    qsort(sorted, r->n_replies, sizeof *sorted, by_node);
    char buf[8192];
    size_t off = 0;
    for (size_t i = 0; i < r->n_replies && off < sizeof buf; i++)
        off += (size_t)snprintf(buf + off, sizeof buf - off, "%s%u=%.*s", i ? "," : "",
                                sorted[i].node_id, (int)sorted[i].len,
                                (const char *)sorted[i].payload);
    free(sorted);
    nh_ctx_reply(ctx, buf, off < sizeof buf ? off : sizeof buf);
}

static void call_over(nh_server_ctx *ctx, nh_config *cfg) {
    size_t n;
    const uint8_t *p = nh_ctx_payload(ctx, &n);
    char method[256];
    snprintf(method, sizeof method, "%.*s", (int)n, (const char *)p);
    nh_ctx_defer(ctx);
    nh_ctx_release(ctx);
    nh_qc_opts o = {.call = {.timeout_ms = 5000}, .quorum = {.kind = NH_QUORUM_ALL}};
    nh_error err;
    if (nh_quorum_call_async(cfg, method, "", 0, &o, call_done, ctx, &err) != 0)
        nh_ctx_reply_error(ctx, err.code, "%s", err.message);
    nh_config_unref(cfg);
}

static void h_call_clients(nh_server_ctx *ctx, void *user) {
    (void)user;
    call_over(ctx, nh_ctx_client_config(ctx));
}

static void h_call_config(nh_server_ctx *ctx, void *user) {
    (void)user;
    call_over(ctx, nh_ctx_config(ctx));
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s --id N [--peer ID=HOST:PORT]... [--dial] HOST:PORT\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    nh_node_addr peers[64];
    size_t npeers = 0;
    bool dial = false;
    const char *listen = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--id") && i + 1 < argc) {
            g_id = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--peer") && i + 1 < argc && npeers < 64) {
            char *spec = argv[++i], *eq = strchr(spec, '=');
            if (!eq) return usage(argv[0]);
            *eq = '\0';
            peers[npeers++] =
                (nh_node_addr){.id = (uint32_t)strtoul(spec, NULL, 10), .address = eq + 1};
        } else if (!strcmp(argv[i], "--dial")) {
            dial = true;
        } else if (argv[i][0] != '-' && !listen) {
            listen = argv[i];
        } else {
            return usage(argv[0]);
        }
    }
    if (!listen || !g_id) return usage(argv[0]);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    nh_error err;
    nh_runtime *rt;
    if (nh_runtime_new(NULL, &rt, &err) != 0) {
        fprintf(stderr, "nh_sym_server: %s\n", err.message);
        return 1;
    }
    nh_server_opts so = {.listen = listen,
                         .node_id = g_id,
                         .peers = peers,
                         .peer_count = npeers,
                         .dial_peers = dial,
                         .backoff_base_ms = 50,
                         .backoff_max_ms = 500};
    nh_server *srv;
    int port = 0;
    if (nh_server_new(rt, &so, &srv, &port, &err) != 0) {
        fprintf(stderr, "nh_sym_server: %s\n", err.message);
        nh_runtime_free(rt);
        return 1;
    }
    nh_echo_register(srv);
    nh_server_handle(srv, "sys.Id", h_id, NULL, NULL);
    nh_server_handle(srv, "sys.Ids", h_ids, NULL, NULL);
    nh_server_handle(srv, "sys.CallClients", h_call_clients, NULL, NULL);
    nh_server_handle(srv, "sys.CallConfig", h_call_config, NULL, NULL);
    printf("listening %d\n", port);
    fflush(stdout);
    while (!g_stop)
        usleep(20000);
    nh_runtime_free(rt);
    return 0;
}
