/* nodehost-demo: two nodes in one process (two runtimes, each with its own owner thread, server
 * and a node dialing the other), making calls to each other and printing what happens. It uses
 * only the public SDK (libnodehost). Later the local-cluster demo replaces it. */
#include <nodehost/nodehost.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct demo_node {
    uint32_t id;
    nh_runtime *rt;
    nh_server *srv;
    int port;
    nh_node *peer; /* the other node, as seen from this one */
    int unicasts;  /* owner thread only */
} demo_node;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* demo.Greeter.Hello: "hello <name>, from node <id>" */
static void hello(nh_server_ctx *ctx, void *user) {
    demo_node *n = user;
    size_t len;
    const uint8_t *p = nh_ctx_payload(ctx, &len);
    char buf[256];
    int k = snprintf(buf, sizeof buf, "hello %.*s, from node %u", (int)len, (const char *)p, n->id);
    nh_ctx_reply(ctx, buf, (size_t)k);
}

/* demo.Greeter.Note: one-way; counts */
static void note(nh_server_ctx *ctx, void *user) {
    (void)ctx;
    demo_node *n = user;
    n->unicasts++;
}

/* demo.Greeter.Refuse: always an error status */
static void refuse(nh_server_ctx *ctx, void *user) {
    (void)user;
    nh_ctx_reply_error(ctx, NH_PERMISSION_DENIED, "node refuses %s", nh_ctx_method(ctx));
}

/* demo.Greeter.Stall: never answers */
static void stall(nh_server_ctx *ctx, void *user) {
    (void)user;
    nh_ctx_defer(ctx);
    nh_ctx_release(ctx);
}

static int start_server(demo_node *n, int port) {
    nh_error err;
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    nh_server_opts so = {.listen = listen};
    if (nh_server_new(n->rt, &so, &n->srv, &n->port, &err) != 0) {
        say("node %u: cannot start its server: %s", n->id, err.message);
        return -1;
    }
    nh_server_handle(n->srv, "demo.Greeter.Hello", hello, n, NULL);
    nh_server_handle(n->srv, "demo.Greeter.Note", note, n, NULL);
    nh_server_handle(n->srv, "demo.Greeter.Refuse", refuse, n, NULL);
    nh_server_handle(n->srv, "demo.Greeter.Stall", stall, n, NULL);
    return 0;
}

static int start_node(demo_node *n, uint32_t id) {
    nh_error err;
    char name[16];
    snprintf(name, sizeof name, "node%u", id);
    nh_runtime_opts ro = {.name = name};
    n->id = id;
    if (nh_runtime_new(&ro, &n->rt, &err) != 0) {
        say("node %u: %s", id, err.message);
        return -1;
    }
    if (start_server(n, 0) != 0) return -1;
    say("node %u: serving the Gorums NodeStream on 127.0.0.1:%d", id, n->port);
    return 0;
}

static int dial(demo_node *from, const demo_node *to) {
    nh_error err;
    char addr[64], idbuf[16];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", to->port);
    snprintf(idbuf, sizeof idbuf, "%u", from->id);
    nh_metadata md[] = {{"gorums-node-id", idbuf}};
    nh_node_opts no = {.id = to->id,
                       .address = addr,
                       .metadata = md,
                       .metadata_count = 1,
                       .backoff_base_ms = 100,
                       .backoff_max_ms = 1000};
    if (nh_node_open(from->rt, &no, &from->peer, &err) != 0) {
        say("node %u: cannot open node %u: %s", from->id, to->id, err.message);
        return -1;
    }
    say("node %u: dialing node %u at %s, announcing gorums-node-id %u", from->id, to->id, addr,
        from->id);
    return 0;
}

static bool call(demo_node *from, const char *method, const char *arg, uint32_t timeout_ms) {
    nh_buf resp;
    nh_error err;
    nh_call_opts o = {.timeout_ms = timeout_ms};
    say("node %u -> node %u: %s(\"%s\")", from->id, nh_node_id(from->peer), method, arg);
    if (nh_rpc(from->peer, method, arg, strlen(arg), &o, &resp, &err) != 0) {
        say("    error %s (%s): %s", nh_code_name(err.code), nh_err_kind_name(err.kind),
            err.message);
        return false;
    }
    say("    reply: \"%.*s\"", (int)resp.len, (const char *)resp.data);
    nh_buf_free(&resp);
    return true;
}

static bool wait_connected(nh_node *node, int ms) {
    for (int waited = 0; waited < ms; waited += 20) {
        if (nh_node_connected(node)) return true;
        sleep_ms(20);
    }
    return nh_node_connected(node);
}

typedef struct count_probe {
    demo_node *n;
    int value;
    int done; /* atomic */
} count_probe;

static void read_count(void *p) {
    count_probe *c = p;
    c->value = c->n->unicasts; /* runs on the node's owner thread, which owns the counter */
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
}

int main(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: %s\n\nStarts two nodehost nodes on 127.0.0.1 (ports chosen by the system),\n"
               "makes calls between them and prints what happens; exits 0 when every step\n"
               "behaved as expected.\n",
               argv[0]);
        return 0;
    }
    say("nodehost %s demo: two nodes calling each other over the Gorums protocol", nh_version());
    demo_node a = {0}, b = {0};
    if (start_node(&a, 1) || start_node(&b, 2) || dial(&a, &b) || dial(&b, &a)) return 1;
    bool ok = wait_connected(a.peer, 5000) && wait_connected(b.peer, 5000);
    say("both nodes connected: %s", ok ? "yes" : "no");

    say("\n-- RPC both ways");
    ok &= call(&a, "demo.Greeter.Hello", "alice", 2000);
    ok &= call(&b, "demo.Greeter.Hello", "bob", 2000);

    say("\n-- unicast: five one-way notes from node 1 to node 2");
    nh_error err;
    for (int i = 0; i < 5; i++)
        ok &= nh_unicast(a.peer, "demo.Greeter.Note", "n", 1, NULL, &err) == 0;
    ok &= call(&a, "demo.Greeter.Hello", "sync", 2000); /* same stream: after the notes */
    count_probe cp = {&b, 0, 0};
    int rc = nh_runtime_post(b.rt, read_count, &cp);
    for (int i = 0; rc == 0 && i < 500 && !__atomic_load_n(&cp.done, __ATOMIC_ACQUIRE); i++)
        sleep_ms(10);
    say("node 2 received %d notes", rc == 0 ? cp.value : -1);
    ok &= cp.value == 5;

    say("\n-- errors are reported with the node and the cause");
    ok &= !call(&a, "demo.Greeter.Missing", "x", 2000);
    ok &= !call(&a, "demo.Greeter.Refuse", "x", 2000);
    ok &= !call(&a, "demo.Greeter.Stall", "x", 200);

    say("\n-- node 2's server goes away");
    int port_b = b.port;
    nh_server_free(b.srv);
    b.srv = NULL;
    sleep_ms(200);
    ok &= !call(&a, "demo.Greeter.Hello", "anyone?", 1000);
    say("node 1 sees node 2 connected: %s", nh_node_connected(a.peer) ? "yes" : "no");

    say("\n-- node 2's server comes back on port %d; node 1 reconnects by itself", port_b);
    if (start_server(&b, port_b) != 0) return 1;
    bool back = wait_connected(a.peer, 10000);
    say("node 1 sees node 2 connected again: %s", back ? "yes" : "no");
    ok &= back && call(&a, "demo.Greeter.Hello", "again", 2000);
    say("node 1 -> node 2 latency (moving average): %.1f us",
        (double)nh_node_latency_ns(a.peer) / 1000.0);

    say("\n-- shutting down");
    nh_node_close(a.peer);
    nh_node_close(b.peer);
    nh_runtime_free(a.rt);
    nh_runtime_free(b.rt);
    say("demo %s", ok ? "finished: every step behaved as expected" : "FAILED: see above");
    return ok ? 0 : 1;
}
