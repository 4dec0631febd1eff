/* Integration (issue 15): client peers are admitted and removed at the cost of what changed.
 * Over real gRPC on loopback:
 * - a randomized history of connects and disconnects: every ClientConfig snapshot (asked for,
 *   notified, or waited on) is sorted by ID and exactly the model's set, and a snapshot held
 *   across later changes stays as it was;
 * - change notifications are coalesced: a burst of arrivals (and of departures) makes a few
 *   notifications, not one each, and the last one is the whole set;
 * - fair admission: one connection cannot hold more than max_clients_per_connection client-peer
 *   streams (RESOURCE_EXHAUSTED naming the cap and the connection's address), while another
 *   connection still gets in. Several streams on one connection are opened with the transport
 *   directly (an SDK node has one stream per connection). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/runtime_impl.h"
#include "nh_test_util.h"
#include "transport/channel.h"

#include <nodehost/nodehost.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FIRST_CLIENT 1048576u
#define BURST_MAX    200 /* streams one test connection opens */

/* ---- the server: node 1, recording every ClientConfig it is told about ---------------------- */

typedef struct recorder {
    pthread_mutex_t mu;
    long notified;      /* ClientConfig notifications */
    bool unsorted;      /* a notified snapshot was not strictly increasing */
    uint32_t last[512]; /* the IDs of the last notified ClientConfig */
    size_t last_n;
} recorder;

static recorder g_rec;
static nh_runtime *g_srt, *g_crt;
static nh_server *g_srv;
static char g_addr[32];

static void record(nh_config *cfg, bool client, void *user) {
    recorder *r = user;
    if (!client) return;
    size_t n = nh_config_size(cfg);
    pthread_mutex_lock(&r->mu);
    r->notified++;
    r->last_n = n < 512 ? n : 512;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = nh_node_id(nh_config_node(cfg, i));
        if (i > 0 && id <= nh_node_id(nh_config_node(cfg, i - 1))) r->unsorted = true;
        if (i < 512) r->last[i] = id;
    }
    pthread_mutex_unlock(&r->mu);
}

static long notified(void) {
    pthread_mutex_lock(&g_rec.mu);
    long n = g_rec.notified;
    pthread_mutex_unlock(&g_rec.mu);
    return n;
}

/* t.WhoAmI: the caller's client-peer ID, in decimal. */
static void h_who(nh_server_ctx *ctx, void *user) {
    (void)user;
    char buf[16];
    int k = snprintf(buf, sizeof buf, "%u", nh_ctx_peer_id(ctx));
    nh_ctx_reply(ctx, buf, (size_t)k);
}

/* ---- raw streams: several client-peer streams on one connection ----------------------------- */

typedef struct raw {
    nh_tp_stream *s;
    bool opened; /* set on the client's owner while opening, before the test thread looks */
    int closed;  /* atomic: on_closed ran */
    nh_code code;
    char details[256];
} raw;

static void raw_closed(void *user, nh_code code, const char *details) {
    raw *r = user;
    r->code = code;
    snprintf(r->details, sizeof r->details, "%s", details);
    r->s = NULL;
    __atomic_store_n(&r->closed, 1, __ATOMIC_RELEASE);
}

static const nh_tp_stream_events raw_events = {.on_closed = raw_closed};

/* One connection (a transport channel) and streams opened on it, on the client's owner. */
typedef struct conn {
    nh_tp_channel *ch;
    raw streams[BURST_MAX];
    int open_from, open_to; /* open_task opens streams[open_from..open_to) */
    int cancel;             /* cancel_task cancels streams[cancel] (-1: all still open) */
} conn;

static void open_task(void *arg) {
    conn *c = arg;
    nh_error err;
    /* Its own connection: plaintext channels whose arguments compare equal share one (gRPC's
     * subchannel pool), and client() uses backoff 20..100 ms. */
    if (!c->ch) c->ch = nh_tp_channel_new(g_crt->loop, g_addr, 25, 100, 0, 0, NULL, NULL, &err);
    nh_metadata md[] = {{"gorums-node-id", "0"}};
    for (int i = c->open_from; c->ch && i < c->open_to; i++) {
        c->streams[i].s = nh_tp_channel_open(c->ch, md, 1, &raw_events, &c->streams[i]);
        c->streams[i].opened = c->streams[i].s != NULL;
    }
}

static void cancel_task(void *arg) {
    conn *c = arg;
    for (int i = 0; i < BURST_MAX; i++)
        if ((c->cancel < 0 || c->cancel == i) && c->streams[i].s && !c->streams[i].closed)
            nh_tp_stream_cancel(c->streams[i].s, NH_CANCELLED, "test done");
}

static void free_channel_task(void *arg) {
    conn *c = arg;
    nh_tp_channel_free(c->ch);
    c->ch = NULL;
}

/* The test connections: whatever a failed test left open is ended before the runtimes go (a
 * runtime waits for every gRPC operation it started). */
static conn g_c1, g_burst;

static void end_conn(conn *c) {
    c->cancel = -1;
    if (nh_runtime_sync(g_crt, cancel_task, c) != 0) return;
    for (int tries = 0; tries < 2000; tries++) {
        bool open = false;
        for (int i = 0; i < BURST_MAX; i++)
            if (c->streams[i].opened && !__atomic_load_n(&c->streams[i].closed, __ATOMIC_ACQUIRE))
                open = true;
        if (!open) break;
        nh_test_sleep_ms(5);
    }
    nh_runtime_sync(g_crt, free_channel_task, c);
}

static void start_server(size_t per_connection) {
    nh_error err;
    memset(&g_rec, 0, sizeof g_rec);
    pthread_mutex_init(&g_rec.mu, NULL);
    assert_int_equal(nh_runtime_new(NULL, &g_srt, &err), 0);
    assert_int_equal(nh_runtime_new(NULL, &g_crt, &err), 0);
    int port;
    nh_server_opts so = {.listen = "127.0.0.1:0",
                         .node_id = 1,
                         .max_clients = 2000,
                         .on_config_change = record,
                         .change_user = &g_rec,
                         .max_clients_per_connection = per_connection};
    assert_int_equal(nh_server_new(g_srt, &so, &g_srv, &port, &err), 0);
    assert_int_equal(nh_server_handle(g_srv, "t.WhoAmI", h_who, NULL, &err), 0);
    snprintf(g_addr, sizeof g_addr, "127.0.0.1:%d", port);
}

static int setup(void **state) {
    (void)state;
    start_server(0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    end_conn(&g_c1);
    end_conn(&g_burst);
    nh_runtime_free(g_crt);
    nh_runtime_free(g_srt);
    pthread_mutex_destroy(&g_rec.mu);
    return 0;
}

/* A client program's configuration of node 1 as a client peer (plaintext: every one of them
 * shares the program's one connection to node 1). */
static nh_config *client(void) {
    nh_error err;
    const char *addrs[] = {g_addr};
    nh_metadata md[] = {{"gorums-node-id", "0"}};
    nh_config_opts co = {.addresses = addrs,
                         .count = 1,
                         .metadata = md,
                         .metadata_count = 1,
                         .backoff_base_ms = 20,
                         .backoff_max_ms = 100};
    nh_config *c;
    if (nh_config_new(g_crt, &co, &c, &err) != 0) fail_msg("%s", err.message);
    return c;
}

/* The client peer ID node 1 gave this client (asked over its stream once it is up). */
static uint32_t who_am_i(nh_config *c) {
    nh_node *n = nh_config_node(c, 0);
    nh_call_opts o = {.timeout_ms = 5000};
    nh_error err = {0};
    for (int tries = 0; tries < 2000; tries++) {
        nh_buf resp = {0};
        if (nh_rpc(n, "t.WhoAmI", "", 0, &o, &resp, &err) == 0) {
            char buf[16] = "";
            memcpy(buf, resp.data, resp.len < 15 ? resp.len : 15);
            nh_buf_free(&resp);
            return (uint32_t)strtoul(buf, NULL, 10);
        }
        nh_test_sleep_ms(5); /* not connected yet */
    }
    fail_msg("t.WhoAmI never answered: %s", err.message);
    return 0;
}

/* ---- the model ----------------------------------------------------------------------------- */

typedef struct model {
    uint32_t ids[512]; /* sorted */
    size_t n;
} model;

static void model_add(model *m, uint32_t id) {
    size_t i = m->n;
    while (i > 0 && m->ids[i - 1] > id) {
        m->ids[i] = m->ids[i - 1];
        i--;
    }
    m->ids[i] = id;
    m->n++;
}

static void model_del(model *m, uint32_t id) {
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++)
        if (m->ids[i] != id) m->ids[k++] = m->ids[i];
    m->n = k;
}

/* True when cfg holds exactly the model's IDs, in the same (increasing) order. */
static bool equals_model(const nh_config *cfg, void *user) {
    const model *m = user;
    if (nh_config_size(cfg) != m->n) return false;
    for (size_t i = 0; i < m->n; i++)
        if (nh_node_id(nh_config_node(cfg, i)) != m->ids[i]) return false;
    return true;
}

static void expect_client_config(const model *m) {
    nh_error err;
    if (nh_server_wait_config(g_srv, true, equals_model, (void *)m, 20000, &err) != 0)
        fail_msg("ClientConfig never became the model's %zu clients: %s", m->n, err.message);
    /* The waiter woke after the change callback: the last notification is this state. */
    pthread_mutex_lock(&g_rec.mu);
    bool same = g_rec.last_n == m->n && !memcmp(g_rec.last, m->ids, m->n * sizeof m->ids[0]);
    pthread_mutex_unlock(&g_rec.mu);
    assert_true(same);
    /* Asked for directly (a snapshot built on this thread): the same, sorted and exact. */
    nh_config *cc = nh_server_client_config(g_srv);
    assert_true(equals_model(cc, (void *)m));
    nh_config_unref(cc);
}

/* ---- a randomized history ------------------------------------------------------------------ */

static void test_random_history_keeps_snapshots_sorted_and_exact(void **state) {
    (void)state;
    enum { STEPS = 60, MAXC = 400 };
    static nh_config *cfgs[MAXC];
    static uint32_t ids[MAXC];
    size_t made = 0;
    model m = {.n = 0};
    uint32_t highest = 0;
    nh_config *held = NULL;
    model held_ids;
    srand(1515);
    for (int step = 0; step < STEPS; step++) {
        int closes = rand() % 5, opens = rand() % 5;
        /* Disconnect some at random (all at once), connect some (all at once). */
        for (int k = 0; k < closes && m.n > 0; k++) {
            size_t pick = (size_t)rand() % made;
            while (!cfgs[pick])
                pick = (pick + 1) % made;
            nh_config_unref(cfgs[pick]);
            cfgs[pick] = NULL;
            model_del(&m, ids[pick]);
        }
        size_t first_new = made;
        for (int k = 0; k < opens && made < MAXC; k++)
            cfgs[made++] = client();
        for (size_t i = first_new; i < made; i++) {
            ids[i] = who_am_i(cfgs[i]);
            assert_true(ids[i] >= FIRST_CLIENT);
            assert_true(ids[i] > highest); /* never reused */
            model_add(&m, ids[i]);
        }
        for (size_t i = first_new; i < made; i++)
            if (ids[i] > highest) highest = ids[i];
        expect_client_config(&m);
        if (step == STEPS / 3) { /* kept across every later change */
            held = nh_server_client_config(g_srv);
            held_ids = m;
        }
    }
    assert_non_null(held);
    assert_true(equals_model(held, &held_ids));
    nh_config_unref(held);
    pthread_mutex_lock(&g_rec.mu);
    bool unsorted = g_rec.unsorted;
    pthread_mutex_unlock(&g_rec.mu);
    assert_false(unsorted);
    for (size_t i = 0; i < made; i++)
        if (cfgs[i]) nh_config_unref(cfgs[i]);
    m.n = 0;
    expect_client_config(&m);
}

/* ---- the per-connection cap ---------------------------------------------------------------- */

static int closed_count(conn *c, int from, int to) {
    int k = 0;
    for (int i = from; i < to; i++)
        k += __atomic_load_n(&c->streams[i].closed, __ATOMIC_ACQUIRE);
    return k;
}

/* Waits (at most 5 s) until at least want of streams [from, to) of c ended. */
static void wait_closed(conn *c, int from, int to, int want) {
    for (int tries = 0; tries < 1000 && closed_count(c, from, to) < want; tries++)
        nh_test_sleep_ms(5);
}

static void wait_size(size_t n) {
    nh_error err;
    if (nh_server_wait_config(g_srv, true, nh_test_size_is, (void *)(uintptr_t)n, 10000, &err) != 0)
        fail_msg("ClientConfig never had %zu clients: %s", n, err.message);
}

static int setup_cap(void **state) {
    (void)state;
    start_server(3);
    return 0;
}

static void test_one_connection_cannot_take_every_slot(void **state) {
    (void)state;
    conn *c = &g_c1;
    memset(c, 0, sizeof *c);
    /* Five client-peer streams on one connection: three get in, two are refused. */
    c->open_from = 0;
    c->open_to = 5;
    assert_int_equal(nh_runtime_sync(g_crt, open_task, c), 0);
    assert_non_null(c->ch);
    wait_size(3);
    wait_closed(c, 0, 5, 2);
    nh_test_sleep_ms(50); /* nothing more is refused */
    assert_int_equal(closed_count(c, 0, 5), 2);
    nh_config *cc = nh_server_client_config(g_srv);
    assert_int_equal(nh_config_size(cc), 3);
    const char *conn_addr = nh_node_address(nh_config_node(cc, 0));
    assert_true(!strncmp(conn_addr, "ipv4:127.0.0.1:", 15));
    char want[200];
    snprintf(want, sizeof want,
             "too many client-peer streams on connection %s: at most 3 per connection", conn_addr);
    for (int i = 0; i < 5; i++) {
        if (!c->streams[i].closed) continue;
        assert_int_equal(c->streams[i].code, NH_RESOURCE_EXHAUSTED);
        assert_string_equal(c->streams[i].details, want);
    }
    for (size_t i = 0; i < 3; i++) { /* the refusals took no ID */
        assert_string_equal(nh_node_address(nh_config_node(cc, i)), conn_addr);
        assert_int_equal(nh_node_id(nh_config_node(cc, i)), FIRST_CLIENT + i);
    }
    nh_config_unref(cc);

    /* Another connection still gets in. */
    nh_config *other = client();
    wait_size(4);
    assert_int_equal(who_am_i(other), FIRST_CLIENT + 3);

    /* One of the first connection's streams ends: that connection may open one more. */
    int accepted = -1;
    for (int i = 0; i < 5 && accepted < 0; i++)
        if (!c->streams[i].closed) accepted = i;
    c->cancel = accepted;
    assert_int_equal(nh_runtime_sync(g_crt, cancel_task, c), 0);
    wait_size(3);
    c->open_from = 5;
    c->open_to = 7; /* two more: one in, one refused */
    assert_int_equal(nh_runtime_sync(g_crt, open_task, c), 0);
    wait_size(4);
    wait_closed(c, 5, 7, 1);
    nh_test_sleep_ms(50);
    assert_int_equal(closed_count(c, 5, 7), 1);
    for (int i = 5; i < 7; i++)
        if (c->streams[i].closed) assert_int_equal(c->streams[i].code, NH_RESOURCE_EXHAUSTED);

    /* Clean up: every raw stream ends before the runtimes go. */
    c->cancel = -1;
    assert_int_equal(nh_runtime_sync(g_crt, cancel_task, c), 0);
    wait_closed(c, 0, 7, 7);
    assert_int_equal(closed_count(c, 0, 7), 7);
    assert_int_equal(nh_runtime_sync(g_crt, free_channel_task, c), 0);
    nh_config_unref(other);
    wait_size(0);
}

/* ---- what an idle client peer costs node 1 --------------------------------------------------- */

typedef struct ops_probe {
    long ops;
} ops_probe;

static void read_ops(void *arg) {
    ((ops_probe *)arg)->ops = nh_tp_loop_pending_ops(g_srt->loop);
}

static long server_ops(void) {
    ops_probe p = {0};
    assert_int_equal(nh_runtime_sync(g_srt, read_ops, &p), 0);
    return p.ops;
}

/* Waits until node 1's loop has want operations pending; returns the last count seen. */
static long wait_ops(long want) {
    long ops = server_ops();
    for (int tries = 0; tries < 1000 && ops != want; tries++) {
        nh_test_sleep_ms(5);
        ops = server_ops();
    }
    return ops;
}

static void test_idle_client_peers_share_a_connection_and_keep_one_operation_pending(void **state) {
    (void)state;
    enum { K = 20 };
    long base = server_ops(); /* the accept slot */
    nh_config *cfgs[K];
    for (int i = 0; i < K; i++)
        cfgs[i] = client();
    wait_size(K);
    /* Each idle accepted stream has its receive armed and nothing else: no RECV_CLOSE_ON_SERVER
     * beside it (libgrpc scans the pending operations on every completion). */
    assert_int_equal(wait_ops(base + K), base + K);
    /* Plaintext configurations of one program to one node share one connection. */
    nh_config *cc = nh_server_client_config(g_srv);
    for (size_t i = 1; i < nh_config_size(cc); i++)
        assert_string_equal(nh_node_address(nh_config_node(cc, i)),
                            nh_node_address(nh_config_node(cc, 0)));
    nh_config_unref(cc);
    /* Calls still work both ways, and every stream's end is still noticed. */
    for (int i = 0; i < K; i += 7)
        assert_true(who_am_i(cfgs[i]) >= FIRST_CLIENT);
    for (int i = 0; i < K; i++)
        nh_config_unref(cfgs[i]);
    wait_size(0);
    assert_int_equal(wait_ops(base), base);
}

/* ---- coalesced notifications --------------------------------------------------------------- */

/* Keeps node 1's owner thread busy until released (at most 20 s). */
static sem_t g_release;

static void hold_owner(void *arg) {
    (void)arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    while (sem_timedwait(&g_release, &until) != 0 && errno == EINTR) {
    }
}

/* Runs act(arg) on the client's owner thread while node 1's owner thread is held, and releases
 * it 300 ms after (at *released): what act started (streams opening, streams ending) is then
 * waiting for node 1, which takes it in back to back. */
static void while_held(void (*act)(void *), void *arg, struct timespec *released) {
    sem_init(&g_release, 0, 0);
    assert_int_equal(nh_runtime_post(g_srt, hold_owner, NULL), 0);
    assert_int_equal(nh_runtime_sync(g_crt, act, arg), 0);
    nh_test_sleep_ms(300);
    clock_gettime(CLOCK_MONOTONIC, released);
    sem_post(&g_release);
}

static double ms_between(const struct timespec *a, const struct timespec *b) {
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

enum { BURST = BURST_MAX };

static void test_a_burst_of_arrivals_is_notified_a_few_times(void **state) {
    (void)state;
    /* Many client-peer streams on one connection, opened at once while node 1's owner thread
     * is busy: their headers wait in the socket and node 1 takes them in back to back. At most
     * one notification per turn (NH_TP_TURN_MS, 1 ms), so a burst that node 1 takes in within a
     * few milliseconds makes a few notifications, however many arrivals it holds (in a build
     * without sanitizers: 199 arrivals in about 10 ms). */
    conn *c = &g_burst;
    memset(c, 0, sizeof *c);
    c->cancel = -1;
    c->open_to = 1; /* first the connection itself, with one stream */
    assert_int_equal(nh_runtime_sync(g_crt, open_task, c), 0);
    wait_size(1);
    model all = {.n = 0}, none = {.n = 0};
    for (uint32_t i = 0; i < BURST; i++)
        model_add(&all, FIRST_CLIENT + i);
    long before = notified();
    c->open_from = 1;
    c->open_to = BURST;
    struct timespec t0, t1;
    while_held(open_task, c, &t0);
    expect_client_config(&all); /* the last notification is all of them, sorted */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long arrivals = notified() - before;
    double ms = ms_between(&t0, &t1);
    fprintf(stderr, "%d arrivals: %ld ClientConfig notifications in %.1f ms\n", BURST - 1, arrivals,
            ms);
    assert_true(arrivals >= 1);
    assert_true(arrivals <= (long)(ms / NH_TP_TURN_MS) + 2);
    assert_true(arrivals < BURST - 1 || ms >= (BURST - 1) * NH_TP_TURN_MS);
    /* The same for departures: every stream ends at once. */
    before = notified();
    while_held(cancel_task, c, &t0);
    expect_client_config(&none);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long departures = notified() - before;
    ms = ms_between(&t0, &t1);
    fprintf(stderr, "%d departures: %ld ClientConfig notifications in %.1f ms\n", BURST, departures,
            ms);
    assert_true(departures >= 1);
    assert_true(departures <= (long)(ms / NH_TP_TURN_MS) + 2);
    wait_closed(c, 0, BURST, BURST);
    assert_int_equal(closed_count(c, 0, BURST), BURST);
    assert_int_equal(nh_runtime_sync(g_crt, free_channel_task, c), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_random_history_keeps_snapshots_sorted_and_exact, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_burst_of_arrivals_is_notified_a_few_times, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_idle_client_peers_share_a_connection_and_keep_one_operation_pending, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_one_connection_cannot_take_every_slot, setup_cap,
                                        teardown),
    };
    return cmocka_run_group_tests_name("client_admission", tests, NULL, NULL);
}
