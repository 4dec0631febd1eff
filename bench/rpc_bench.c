/* The nodehost side of the echo benchmark: the same measurement as `baseline_echo client`, made
 * through the public SDK. One runtime, one node (nh_node_open), and N test.Echo.Raw calls kept
 * in flight with nh_rpc_async: each completion callback (owner thread) records the round trip
 * and issues the next call.
 *
 *   rpc_bench HOST:PORT [--inflight N] [--seconds S] [--payload B] [--warmup S] [--messages M]
 *
 * Prints "msgs_per_s=<f> p50_us=<f> p99_us=<f> count=<n> errors=<n>". */
#include "bench_common.h"

#include <nodehost/nodehost.h>

#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Owner-thread state (written only there after the start task was posted). */
typedef struct bench {
    nhb_args a;
    nh_node *node;
    uint8_t *payload;
    nhb_rec rec;
    int64_t *issued; /* issue time per in-flight slot */
    size_t outstanding;
    size_t extra_errors;
    bool starting, finished;
    int64_t drain_deadline;
    char first_error[NH_ERROR_MESSAGE_MAX];
    sem_t done;
} bench;

static bench g;

static void finish(void) {
    if (g.finished) return;
    g.finished = true;
    if (g.first_error[0]) fprintf(stderr, "rpc_bench: first error: %s\n", g.first_error);
    nhb_rec_report(&g.rec, g.extra_errors);
    sem_post(&g.done);
}

static void issue(size_t slot);

static void on_reply(const nh_reply *r, void *user) {
    size_t slot = (size_t)(uintptr_t)user;
    g.outstanding--;
    if (g.finished) return;
    bool ok = r->err.code == NH_OK && r->len == g.a.payload;
    if (!ok && !g.first_error[0]) {
        if (r->err.code != NH_OK)
            snprintf(g.first_error, sizeof g.first_error, "%s", r->err.message);
        else
            snprintf(g.first_error, sizeof g.first_error, "reply of %zu bytes", r->len);
    }
    /* A failed slot is not re-issued: a failing node would otherwise loop on it. */
    if (nhb_rec_complete(&g.rec, g.issued[slot], ok) && ok) issue(slot);
    if (g.outstanding == 0 && !g.starting) finish();
}

static void issue(size_t slot) {
    g.issued[slot] = nhb_now_ns();
    g.outstanding++;
    nh_error err;
    if (nh_rpc_async(g.node, NHB_METHOD, g.payload, g.a.payload, NULL, on_reply,
                     (void *)(uintptr_t)slot, &err) != 0) {
        g.outstanding--;
        g.extra_errors++;
        if (!g.first_error[0]) snprintf(g.first_error, sizeof g.first_error, "%s", err.message);
    }
}

static void start_task(void *arg) {
    (void)arg;
    g.starting = true;
    for (size_t i = 0; i < g.a.inflight; i++)
        issue(i);
    g.starting = false;
    if (g.outstanding == 0) finish();
}

/* Posted periodically: ends a run whose answers stopped coming. */
static void check_task(void *arg) {
    (void)arg;
    if (g.finished || !nhb_rec_over(&g.rec)) return;
    int64_t now = nhb_now_ns();
    if (!g.drain_deadline) g.drain_deadline = now + 5000000000LL;
    if (g.outstanding == 0 || now > g.drain_deadline) {
        g.extra_errors += g.outstanding; /* never answered */
        finish();
    }
}

/* nhb_wait_done's tick: asks the owner thread to check for a stalled run. */
static void post_check(void *rt) {
    nh_runtime_post(rt, check_task, NULL);
}

int main(int argc, char **argv) {
    if (nhb_parse_args(argc, argv, 1, &g.a) != 0) {
        nhb_usage(argv[0], "");
        return 2;
    }
    g.payload = malloc(g.a.payload ? g.a.payload : 1);
    g.issued = calloc(g.a.inflight, sizeof *g.issued);
    if (!g.payload || !g.issued) return 1;
    for (size_t i = 0; i < g.a.payload; i++)
        g.payload[i] = (uint8_t)('a' + i % 26);
    sem_init(&g.done, 0, 0);

    nh_error err;
    nh_runtime *rt;
    nh_runtime_opts ro = {.name = "bench"};
    if (nh_runtime_new(&ro, &rt, &err) != 0) {
        fprintf(stderr, "rpc_bench: %s\n", err.message);
        return 1;
    }
    nh_node_opts no = {.id = 1, .address = g.a.target};
    if (nh_node_open(rt, &no, &g.node, &err) != 0) {
        fprintf(stderr, "rpc_bench: %s\n", err.message);
        nh_runtime_free(rt);
        return 1;
    }
    /* One blocking call proves the connection before the clock starts. */
    int rc = -1;
    for (int attempt = 0; attempt < 50 && rc != 0; attempt++) {
        nh_buf resp;
        rc = nh_rpc(g.node, NHB_METHOD, g.payload, g.a.payload, NULL, &resp, &err);
        nh_buf_free(&resp);
        if (rc != 0) usleep(100000);
    }
    if (rc != 0) {
        fprintf(stderr, "rpc_bench: cannot reach %s: %s\n", g.a.target, err.message);
        nh_node_close(g.node);
        nh_runtime_free(rt);
        return 1;
    }
    if (nhb_rec_start(&g.rec, &g.a) != 0 || nh_runtime_post(rt, start_task, NULL) != 0) {
        fprintf(stderr, "rpc_bench: cannot start\n");
        nh_node_close(g.node);
        nh_runtime_free(rt);
        return 1;
    }
    nhb_wait_done(&g.done, post_check, rt);
    size_t errors = g.rec.errors + g.extra_errors;
    nh_node_close(g.node);
    nh_runtime_free(rt);
    sem_destroy(&g.done);
    free(g.payload);
    free(g.issued);
    return errors ? 1 : 0;
}
