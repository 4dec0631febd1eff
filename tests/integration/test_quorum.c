/* Integration: quorum calls, multicast, async and correctable calls over a configuration of
 * real servers (each in its own runtime, so its own owner thread) on loopback gRPC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nh_echo.h"
#include "nh_test_util.h"

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSERVERS 5

typedef struct server {
    uint32_t id;
    nh_runtime *rt;
    nh_server *srv;
    int port;
    char addr[32];
} server;

typedef struct fixture {
    server s[NSERVERS];
    nh_runtime *crt;
    nh_config *cfg3; /* servers 1..3 */
    nh_config *cfg5; /* servers 1..5 */
} fixture;

/* test.Q.Value: replies the server's ID times 10, as decimal text. */
static void h_value(nh_server_ctx *ctx, void *user) {
    server *s = user;
    char buf[16];
    int k = snprintf(buf, sizeof buf, "%u", s->id * 10);
    nh_ctx_reply(ctx, buf, (size_t)k);
}

/* test.Q.Stream: payload = count; sends that many replies "<id>-<k>" (correctable). */
static void h_stream(nh_server_ctx *ctx, void *user) {
    server *s = user;
    size_t n;
    const uint8_t *p = nh_ctx_payload(ctx, &n);
    int count = atoi(n ? (const char *)p : "0");
    char buf[32];
    for (int k = 1; k <= count; k++) {
        int len = snprintf(buf, sizeof buf, "%u-%d", s->id, k);
        nh_ctx_send(ctx, buf, (size_t)len);
    }
}

/* test.Q.NodeEcho: replies "<id>:<payload>" (to check per-node request mapping). */
static void h_node_echo(nh_server_ctx *ctx, void *user) {
    server *s = user;
    size_t n;
    const uint8_t *p = nh_ctx_payload(ctx, &n);
    char buf[256];
    int k = snprintf(buf, sizeof buf, "%u:%.*s", s->id, (int)n, (const char *)p);
    nh_ctx_reply(ctx, buf, (size_t)k);
}

static void start_server(server *s, int port) {
    nh_error err;
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    nh_server_opts so = {.listen = listen};
    assert_int_equal(nh_server_new(s->rt, &so, &s->srv, &s->port, &err), 0);
    assert_int_equal(nh_echo_register(s->srv), 0);
    assert_int_equal(nh_server_handle(s->srv, "test.Q.Value", h_value, s, &err), 0);
    assert_int_equal(nh_server_handle(s->srv, "test.Q.Stream", h_stream, s, &err), 0);
    assert_int_equal(nh_server_handle(s->srv, "test.Q.NodeEcho", h_node_echo, s, &err), 0);
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", s->port);
}

static void stop_server(server *s) {
    nh_server_free(s->srv);
    s->srv = NULL;
}

static bool node_down(nh_node *n, int ms) {
    for (int waited = 0; waited <= ms; waited += 10) {
        if (!nh_node_connected(n)) return true;
        nh_test_sleep_ms(10);
    }
    return false;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    nh_error err;
    for (int i = 0; i < NSERVERS; i++) {
        f->s[i].id = (uint32_t)i + 1;
        char name[16];
        snprintf(name, sizeof name, "srv%d", i + 1);
        nh_runtime_opts ro = {.name = name};
        assert_int_equal(nh_runtime_new(&ro, &f->s[i].rt, &err), 0);
        start_server(&f->s[i], 0);
    }
    nh_runtime_opts co = {.name = "client"};
    assert_int_equal(nh_runtime_new(&co, &f->crt, &err), 0);
    const char *addrs[NSERVERS];
    for (int i = 0; i < NSERVERS; i++)
        addrs[i] = f->s[i].addr;
    nh_config_opts o = {
        .addresses = addrs, .count = NSERVERS, .backoff_base_ms = 50, .backoff_max_ms = 300};
    assert_int_equal(nh_config_new(f->crt, &o, &f->cfg5, &err), 0);
    uint32_t rm[] = {4, 5};
    f->cfg3 = nh_config_remove(f->cfg5, rm, 2);
    assert_int_equal(nh_config_size(f->cfg3), 3);
    assert_true(nh_test_all_connected(f->cfg5, 5000));
    nh_echo_reset();
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    nh_echo_finish_held();
    nh_config_unref(f->cfg3);
    nh_config_unref(f->cfg5);
    nh_runtime_free(f->crt);
    for (int i = 0; i < NSERVERS; i++)
        nh_runtime_free(f->s[i].rt);
    free(f);
    return 0;
}

static int qc(nh_config *cfg, const char *method, const char *req, nh_quorum_kind kind,
              size_t threshold, uint32_t timeout_ms, nh_qc_outcome *out, nh_error *err) {
    nh_qc_opts o = {.call = {.timeout_ms = timeout_ms},
                    .quorum = {.kind = kind, .threshold = threshold}};
    return nh_quorum_call(cfg, method, req, strlen(req), &o, out, err);
}

static void assert_value(const nh_qc_outcome *o, const char *want) {
    assert_int_equal(o->value.len, strlen(want));
    assert_memory_equal(o->value.data, want, o->value.len);
}

static void test_majority_first_and_all_return_the_echo(void **state) {
    fixture *f = *state;
    nh_quorum_kind kinds[] = {NH_QUORUM_MAJORITY, NH_QUORUM_FIRST, NH_QUORUM_ALL};
    size_t want_min[] = {2, 1, 3};
    for (int i = 0; i < 3; i++) {
        nh_qc_outcome o;
        nh_error err;
        assert_int_equal(qc(f->cfg3, "test.Echo.Echo", "q", kinds[i], 0, 5000, &o, &err), 0);
        assert_value(&o, "echo: q");
        assert_true(o.n_replies >= want_min[i]);
        assert_int_equal(o.n_node_errors, 0);
        assert_true(o.seq > 0);
        nh_qc_outcome_free(&o);
    }
}

static void test_all_nodes_share_one_sequence_number(void **state) {
    fixture *f = *state;
    /* Each server records the payload; the quorum outcome says one seq; every server saw the
     * call (All), so three replies came back for one seq. */
    nh_qc_outcome o;
    nh_error err;
    assert_int_equal(qc(f->cfg3, "test.Echo.Order", "7", NH_QUORUM_ALL, 0, 5000, &o, &err), 0);
    assert_int_equal(o.n_replies, 3);
    long got[8];
    assert_int_equal(nh_echo_order(got, 8), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(got[i], 7);
    nh_qc_outcome_free(&o);
}

static nh_qf_verdict sum_when_all(const nh_node_reply *r, size_t n, size_t size, void *user,
                                  const uint8_t **res, size_t *res_len) {
    char *buf = user;
    if (n < size) return NH_QF_MORE;
    long sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].err.code != NH_OK) return NH_QF_MORE;
        sum += strtol(strndupa((const char *)r[i].payload, r[i].len), NULL, 10);
    }
    int k = snprintf(buf, 32, "%ld", sum);
    *res = (const uint8_t *)buf;
    *res_len = (size_t)k;
    return NH_QF_DONE;
}

static void test_custom_quorum_function_aggregates_every_reply(void **state) {
    fixture *f = *state;
    char buf[32];
    nh_qc_opts o = {.call = {.timeout_ms = 5000},
                    .quorum = {.kind = NH_QUORUM_CUSTOM, .fn = sum_when_all, .fn_user = buf}};
    nh_qc_outcome out;
    nh_error err;
    assert_int_equal(nh_quorum_call(f->cfg3, "test.Q.Value", "", 0, &o, &out, &err), 0);
    assert_value(&out, "60"); /* 10 + 20 + 30 */
    nh_qc_outcome_free(&out);
}

static void test_custom_quorum_that_never_decides_ends_incomplete(void **state) {
    fixture *f = *state;
    nh_qc_opts o = {.call = {.timeout_ms = 5000},
                    .quorum = {.kind = NH_QUORUM_CUSTOM, .fn = sum_when_all, .fn_user = NULL}};
    nh_error err;
    /* Fail returns a status from every node: the function keeps saying "more". */
    assert_int_equal(nh_quorum_call(f->cfg3, "test.Echo.Fail", "k", 1, &o, NULL, &err), -1);
    assert_int_equal(err.kind, NH_ERR_INCOMPLETE);
    assert_non_null(strstr(err.message, "incomplete call (errors: 3)"));
}

static void test_partial_failures_follow_each_quorum_rule(void **state) {
    fixture *f = *state;
    /* For 0..3 of 3 servers stopped: majority tolerates 1, first 2, all 0. */
    for (int stopped = 0; stopped <= 3; stopped++) {
        if (stopped > 0) {
            stop_server(&f->s[stopped - 1]);
            assert_true(node_down(nh_config_node(f->cfg3, (size_t)stopped - 1), 5000));
        }
        struct {
            nh_quorum_kind kind;
            int tolerates;
        } rules[] = {{NH_QUORUM_MAJORITY, 1}, {NH_QUORUM_FIRST, 2}, {NH_QUORUM_ALL, 0}};
        for (int r = 0; r < 3; r++) {
            nh_qc_outcome o;
            nh_error err;
            int rc = qc(f->cfg3, "test.Echo.Echo", "p", rules[r].kind, 0, 5000, &o, &err);
            if (stopped <= rules[r].tolerates) {
                if (rc != 0) fail_msg("stopped=%d rule=%d: %s", stopped, r, err.message);
                assert_value(&o, "echo: p");
            } else {
                assert_int_equal(rc, -1);
                assert_int_equal(err.kind, NH_ERR_INCOMPLETE);
                assert_int_equal(o.n_node_errors, (size_t)stopped);
                for (int d = 1; d <= stopped; d++) {
                    char needle[32];
                    snprintf(needle, sizeof needle, "node %d UNAVAILABLE", d);
                    assert_non_null(strstr(err.message, needle));
                }
            }
            nh_qc_outcome_free(&o);
        }
        /* Multicast waiting for sends fails when any node is down, naming each. */
        nh_error err;
        nh_qc_opts mo = {.call = {.timeout_ms = 5000}};
        int rc = nh_multicast(f->cfg3, "test.Echo.Count", "", 0, &mo, &err);
        if (stopped == 0) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, -1);
            assert_int_equal(err.kind, NH_ERR_SEND_FAILURE);
            char needle[32];
            snprintf(needle, sizeof needle, "send failure (errors: %d)", stopped);
            assert_non_null(strstr(err.message, needle));
        }
        /* Fire-and-forget multicast never reports an error. */
        assert_int_equal(
            nh_multicast_async(f->cfg3, "test.Echo.Count", "", 0, NULL, NULL, NULL, &err), 0);
    }
}

static void test_node_that_never_answers_ends_the_call_at_its_timeout_named(void **state) {
    fixture *f = *state;
    /* test.Echo.Hold never answers; All needs every node: incomplete at the timeout, and each
     * node that did not answer is named. */
    nh_qc_outcome o;
    nh_error err;
    assert_int_equal(qc(f->cfg3, "test.Echo.Hold", "", NH_QUORUM_ALL, 0, 150, &o, &err), -1);
    assert_int_equal(err.code, NH_DEADLINE_EXCEEDED);
    assert_int_equal(err.kind, NH_ERR_INCOMPLETE);
    assert_non_null(strstr(err.message, "timeout after 150 ms"));
    assert_non_null(strstr(err.message, "node 3 DEADLINE_EXCEEDED"));
    assert_non_null(strstr(err.message, "first: node 1 ("));
    assert_int_equal(o.n_node_errors, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(nh_node_pending(nh_config_node(f->cfg3, i)), 0);
        assert_int_equal(o.replies[i].err.kind, NH_ERR_TIMEOUT);
    }
    nh_qc_outcome_free(&o);
}

static void test_late_replies_after_completion_are_dropped(void **state) {
    fixture *f = *state;
    for (int i = 0; i < 50; i++) {
        nh_qc_outcome o;
        nh_error err;
        assert_int_equal(qc(f->cfg5, "test.Echo.Echo", "x", NH_QUORUM_FIRST, 0, 5000, &o, &err), 0);
        nh_qc_outcome_free(&o);
    }
    /* The other replies of each call arrive after it finished; none stays pending. */
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(nh_node_pending(nh_config_node(f->cfg5, i)), 0);
}

static void test_fire_and_forget_multicasts_leave_nothing_pending_or_growing(void **state) {
    fixture *f = *state;
    nh_error err;
    /* Warm-up as long as the measured run: gRPC's buffers (a burst of sends is buffered and
     * written together) reach their high-water mark here, not in the measurement. */
    for (int i = 0; i < 10000; i++)
        assert_int_equal(
            nh_multicast_async(f->cfg3, "test.Echo.Count", "", 0, NULL, NULL, NULL, &err), 0);
    nh_qc_outcome o;
    /* generous timeouts: these are safety nets, and sanitizer builds are slow */
    assert_int_equal(qc(f->cfg3, "test.Echo.Echo", "sync", NH_QUORUM_ALL, 0, 120000, &o, &err), 0);
    nh_qc_outcome_free(&o);
    malloc_trim(0);
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < 10000; i++)
        assert_int_equal(
            nh_multicast_async(f->cfg3, "test.Echo.Count", "", 0, NULL, NULL, NULL, &err), 0);
    assert_int_equal(qc(f->cfg3, "test.Echo.Echo", "sync", NH_QUORUM_ALL, 0, 120000, &o, &err), 0);
    nh_qc_outcome_free(&o);
    malloc_trim(0);
    struct mallinfo2 after = mallinfo2();
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(nh_node_pending(nh_config_node(f->cfg3, i)), 0);
    assert_int_equal(nh_echo_count(), 3 * 20000);
    long grew = (long)after.uordblks - (long)before.uordblks;
    if (grew > 1024 * 1024) fail_msg("heap grew by %ld bytes over 10000 multicasts", grew);
}

static void test_async_calls_issued_in_a_row_are_sent_in_order(void **state) {
    fixture *f = *state;
    nh_qc_future *fut[100];
    nh_error err;
    nh_qc_opts o = {.call = {.timeout_ms = 10000}, .quorum = {.kind = NH_QUORUM_ALL}};
    for (int i = 0; i < 100; i++) {
        char req[8];
        int k = snprintf(req, sizeof req, "%d", i);
        assert_int_equal(
            nh_quorum_call_start(f->cfg3, "test.Echo.Order", req, (size_t)k, &o, &fut[i], &err), 0);
    }
    for (int i = 0; i < 100; i++) {
        nh_qc_outcome out;
        assert_int_equal(nh_qc_future_wait(fut[i], &out, &err), 0);
        char want[8];
        snprintf(want, sizeof want, "%d", i);
        assert_value(&out, want);
        assert_true(nh_qc_future_done(fut[i]));
        nh_qc_outcome_free(&out);
        nh_qc_future_free(fut[i]);
    }
    /* Every server received 0..99 in order (the order log interleaves the three servers, so
     * check each value's occurrences are non-decreasing per position). */
    long got[300];
    size_t n = nh_echo_order(got, 300);
    assert_int_equal(n, 300);
    long last_seen[3] = {-1, -1, -1};
    for (size_t i = 0; i < n; i++) {
        /* a value v may appear only after v-1 appeared for the same server slot */
        int slot = 0;
        while (slot < 3 && last_seen[slot] != got[i] - 1)
            slot++;
        assert_true(slot < 3);
        last_seen[slot] = got[i];
    }
}

typedef struct level_log {
    pthread_mutex_t mu;
    int levels[64];
    int n;
    bool done;
    nh_error err;
} level_log;

static void log_level(int level, const uint8_t *v, size_t len, bool done, const nh_error *err,
                      void *user) {
    (void)v;
    (void)len;
    level_log *l = user;
    pthread_mutex_lock(&l->mu);
    if (l->n < 64) l->levels[l->n++] = level;
    if (done) {
        l->done = true;
        l->err = *err;
    }
    pthread_mutex_unlock(&l->mu);
}

static void test_correctable_reaches_the_size_of_the_configuration(void **state) {
    fixture *f = *state;
    level_log log = {.n = 0};
    pthread_mutex_init(&log.mu, NULL);
    nh_correctable *c;
    nh_error err;
    nh_qc_opts o = {.call = {.timeout_ms = 5000}};
    uint32_t ids[] = {5};
    nh_config *cfg4 = nh_config_remove(f->cfg5, ids, 1);
    assert_int_equal(
        nh_correctable_start(cfg4, "test.Echo.Echo", "c", 1, &o, false, log_level, &log, &c, &err),
        0);
    assert_int_equal(nh_correctable_watch(c, 4), 4);
    bool done = false;
    nh_buf v;
    assert_int_equal(nh_correctable_get(c, &v, &done, &err), 4);
    assert_true(done);
    assert_int_equal(err.code, NH_OK);
    assert_int_equal(v.len, 7);
    assert_memory_equal(v.data, "echo: c", 7);
    nh_buf_free(&v);
    pthread_mutex_lock(&log.mu);
    assert_true(log.done);
    assert_int_equal(log.levels[log.n - 1], 4);
    for (int i = 1; i < log.n; i++)
        assert_true(log.levels[i] > log.levels[i - 1]);
    pthread_mutex_unlock(&log.mu);
    nh_correctable_free(c);
    nh_config_unref(cfg4);
    pthread_mutex_destroy(&log.mu);
}

static void test_streaming_correctable_completes_at_the_fourth_success(void **state) {
    fixture *f = *state;
    /* Spec 6.1 case 19: 2 nodes, each sends 5 replies; threshold 4 completes at level 4. */
    uint32_t ids[] = {3, 4, 5};
    nh_config *cfg2 = nh_config_remove(f->cfg5, ids, 3);
    assert_int_equal(nh_config_size(cfg2), 2);
    nh_correctable *c;
    nh_error err;
    nh_qc_opts o = {.call = {.timeout_ms = 5000}, .quorum = {.threshold = 4}};
    assert_int_equal(
        nh_correctable_start(cfg2, "test.Q.Stream", "5", 1, &o, true, NULL, NULL, &c, &err), 0);
    assert_int_equal(nh_correctable_watch(c, 100), 4);
    bool done;
    assert_int_equal(nh_correctable_get(c, NULL, &done, &err), 4);
    assert_true(done);
    assert_int_equal(err.code, NH_OK);
    nh_correctable_free(c);
    /* The streaming entries leave the routers at completion (Gorums keeps them). */
    nh_test_sleep_ms(100);
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(nh_node_pending(nh_config_node(cfg2, i)), 0);
    nh_config_unref(cfg2);
}

static nh_map_verdict skip_all_but_first(uint32_t id, const uint8_t *req, size_t len, void *user,
                                         nh_buf *out) {
    (void)req;
    (void)len;
    (void)user;
    (void)out;
    return id == 1 ? NH_MAP_KEEP : NH_MAP_SKIP;
}

static void test_skipped_nodes_count_for_threshold_but_not_for_correctable(void **state) {
    fixture *f = *state;
    /* Spec 6.1 case 18: skip 2 of 3; Threshold(3) succeeds (skips count, as Gorums);
     * Correctable(3) is incomplete (skips are errors there). */
    nh_qc_opts o = {.call = {.timeout_ms = 5000},
                    .quorum = {.kind = NH_QUORUM_THRESHOLD, .threshold = 3},
                    .map_request = skip_all_but_first};
    nh_qc_outcome out;
    nh_error err;
    assert_int_equal(nh_quorum_call(f->cfg3, "test.Echo.Echo", "s", 1, &o, &out, &err), 0);
    size_t skips = 0;
    for (size_t i = 0; i < out.n_replies; i++)
        if (out.replies[i].err.code != NH_OK && strstr(out.replies[i].err.message, "skip node"))
            skips++;
    assert_int_equal(skips, 2);
    nh_qc_outcome_free(&out);

    nh_correctable *c;
    nh_qc_opts co = {.call = {.timeout_ms = 5000},
                     .quorum = {.threshold = 3},
                     .map_request = skip_all_but_first};
    assert_int_equal(
        nh_correctable_start(f->cfg3, "test.Echo.Echo", "s", 1, &co, false, NULL, NULL, &c, &err),
        0);
    nh_correctable_watch(c, 3);
    bool done;
    assert_int_equal(nh_correctable_get(c, NULL, &done, &err), 1);
    assert_true(done);
    assert_int_equal(err.kind, NH_ERR_INCOMPLETE);
    nh_correctable_free(c);
}

static nh_map_verdict add_node_id(uint32_t id, const uint8_t *req, size_t len, void *user,
                                  nh_buf *out) {
    (void)user;
    out->data = malloc(len + 16);
    out->len = (size_t)sprintf((char *)out->data, "%.*s#%u", (int)len, (const char *)req, id);
    return NH_MAP_REPLACE;
}

static nh_map_verdict upper_case(uint32_t id, const uint8_t *resp, size_t len, void *user,
                                 nh_buf *out) {
    (void)id;
    (void)user;
    out->data = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        out->data[i] = (uint8_t)((resp[i] >= 'a' && resp[i] <= 'z') ? resp[i] - 32 : resp[i]);
    out->len = len;
    return NH_MAP_REPLACE;
}

static void test_per_node_request_and_response_mapping(void **state) {
    fixture *f = *state;
    nh_qc_opts o = {.call = {.timeout_ms = 5000},
                    .quorum = {.kind = NH_QUORUM_ALL},
                    .map_request = add_node_id,
                    .map_response = upper_case};
    nh_qc_outcome out;
    nh_error err;
    assert_int_equal(nh_quorum_call(f->cfg3, "test.Q.NodeEcho", "req", 3, &o, &out, &err), 0);
    assert_int_equal(out.n_replies, 3);
    for (size_t i = 0; i < 3; i++) {
        char want[32];
        uint32_t id = out.replies[i].node_id;
        snprintf(want, sizeof want, "%u:REQ#%u", id, id);
        assert_int_equal(out.replies[i].len, strlen(want));
        assert_memory_equal(out.replies[i].payload, want, out.replies[i].len);
    }
    nh_qc_outcome_free(&out);
}

static void test_per_message_metadata_reaches_every_handler(void **state) {
    fixture *f = *state;
    nh_metadata md[] = {{"k", "a"}, {"k", "b"}};
    nh_qc_opts o = {.call = {.timeout_ms = 5000, .metadata = md, .metadata_count = 2},
                    .quorum = {.kind = NH_QUORUM_ALL}};
    nh_qc_outcome out;
    nh_error err;
    assert_int_equal(nh_quorum_call(f->cfg3, "test.Echo.Meta", "", 0, &o, &out, &err), 0);
    for (size_t i = 0; i < out.n_replies; i++)
        assert_non_null(
            strstr(strndupa((const char *)out.replies[i].payload, out.replies[i].len), "k=a;k=b;"));
    nh_qc_outcome_free(&out);
}

static void test_cancelled_call_ends_incomplete_and_leaves_nothing_pending(void **state) {
    fixture *f = *state;
    nh_cancel *c = nh_cancel_new();
    nh_qc_future *fut;
    nh_error err;
    nh_qc_opts o = {.call = {.timeout_ms = 10000, .cancel = c}};
    assert_int_equal(nh_quorum_call_start(f->cfg3, "test.Echo.Hold", "", 0, &o, &fut, &err), 0);
    nh_test_sleep_ms(50);
    nh_cancel_fire(c);
    assert_int_equal(nh_qc_future_wait(fut, NULL, &err), -1);
    assert_int_equal(err.code, NH_CANCELLED);
    assert_int_equal(err.kind, NH_ERR_INCOMPLETE);
    nh_qc_future_free(fut);
    /* Gorums leaves the entries until the late reply; nodehost removes them at once. */
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(nh_node_pending(nh_config_node(f->cfg3, i)), 0);
    nh_cancel_free(c);
}

static void test_empty_configuration_and_bad_arguments_are_refused(void **state) {
    fixture *f = *state;
    uint32_t ids[] = {1, 2, 3, 4, 5};
    nh_config *empty = nh_config_remove(f->cfg5, ids, 5);
    assert_int_equal(nh_config_size(empty), 0);
    nh_error err;
    assert_int_equal(nh_quorum_call(empty, "test.Echo.Echo", "", 0, NULL, NULL, &err), -1);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "empty configuration"));
    nh_config_unref(empty);
    nh_qc_opts o = {.quorum = {.kind = NH_QUORUM_CUSTOM}};
    assert_int_equal(nh_quorum_call(f->cfg3, "test.Echo.Echo", "", 0, &o, NULL, &err), -1);
    assert_non_null(strstr(err.message, "quorum function"));
    assert_int_equal(nh_quorum_call(f->cfg3, "", "", 0, NULL, NULL, &err), -1);
}

typedef struct owner_qc {
    nh_config *cfg;
    int rc;
    nh_error err;
    int done; /* atomic */
    int async_rc;
} owner_qc;

static void owner_qc_done(const nh_qc_result *r, void *user) {
    owner_qc *o = user;
    o->err = r->err;
    __atomic_store_n(&o->done, 1, __ATOMIC_RELEASE);
}

static void owner_task(void *p) {
    owner_qc *o = p;
    nh_error e;
    o->rc = nh_quorum_call(o->cfg, "test.Echo.Echo", "", 0, NULL, NULL, &e);
    o->err = e;
    o->async_rc = nh_quorum_call_async(o->cfg, "test.Echo.Echo", "", 0, NULL, owner_qc_done, o, &e);
}

static void test_blocking_quorum_call_on_owner_thread_is_refused_async_works(void **state) {
    fixture *f = *state;
    owner_qc o = {.cfg = f->cfg3};
    assert_int_equal(nh_runtime_post(f->crt, owner_task, &o), 0);
    for (int i = 0; i < 500 && !__atomic_load_n(&o.done, __ATOMIC_ACQUIRE); i++)
        nh_test_sleep_ms(10);
    assert_int_equal(o.rc, -1);
    assert_int_equal(o.async_rc, 0);
    assert_int_equal(__atomic_load_n(&o.done, __ATOMIC_ACQUIRE), 1);
    assert_int_equal(o.err.code, NH_OK);
}

static void test_server_restarted_on_same_port_serves_later_calls(void **state) {
    fixture *f = *state;
    int port = f->s[0].port;
    stop_server(&f->s[0]);
    assert_true(node_down(nh_config_node(f->cfg3, 0), 5000));
    nh_error err;
    nh_qc_outcome o;
    assert_int_equal(qc(f->cfg3, "test.Echo.Echo", "m", NH_QUORUM_MAJORITY, 0, 5000, &o, &err), 0);
    nh_qc_outcome_free(&o);
    nh_error last;
    assert_true(nh_node_last_error(nh_config_node(f->cfg3, 0), &last));
    assert_non_null(strstr(last.message, "node 1 ("));
    start_server(&f->s[0], port);
    assert_true(nh_test_all_connected(f->cfg3, 10000));
    assert_int_equal(qc(f->cfg3, "test.Echo.Echo", "m", NH_QUORUM_ALL, 0, 5000, &o, &err), 0);
    nh_qc_outcome_free(&o);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_majority_first_and_all_return_the_echo),
        T(test_all_nodes_share_one_sequence_number),
        T(test_custom_quorum_function_aggregates_every_reply),
        T(test_custom_quorum_that_never_decides_ends_incomplete),
        T(test_partial_failures_follow_each_quorum_rule),
        T(test_node_that_never_answers_ends_the_call_at_its_timeout_named),
        T(test_late_replies_after_completion_are_dropped),
        T(test_fire_and_forget_multicasts_leave_nothing_pending_or_growing),
        T(test_async_calls_issued_in_a_row_are_sent_in_order),
        T(test_correctable_reaches_the_size_of_the_configuration),
        T(test_streaming_correctable_completes_at_the_fourth_success),
        T(test_skipped_nodes_count_for_threshold_but_not_for_correctable),
        T(test_per_node_request_and_response_mapping),
        T(test_per_message_metadata_reaches_every_handler),
        T(test_cancelled_call_ends_incomplete_and_leaves_nothing_pending),
        T(test_empty_configuration_and_bad_arguments_are_refused),
        T(test_blocking_quorum_call_on_owner_thread_is_refused_async_works),
        T(test_server_restarted_on_same_port_serves_later_calls),
    };
    return cmocka_run_group_tests_name("quorum", tests, NULL, NULL);
}
