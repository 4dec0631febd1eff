/* Integration: the typed-stub runtime (nodehost/stubs.h) over real gRPC on loopback. Three
 * servers, each in its own runtime, decode and encode the test's protobuf-c messages
 * (tests/proto/stubtest.proto) in raw handlers; the client calls them through the typed calls
 * with hand-written trampolines, as protoc-gen-nodehost's code would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nh_test_util.h"
#include "stubtest.pb-c.h"

#include <nodehost/nodehost.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NSERVERS 3

typedef struct server {
    uint32_t id;
    nh_runtime *rt;
    nh_server *srv;
    int port;
    char addr[32];
    pthread_mutex_t mu; /* guards what the handlers observed */
    int notes;          /* stubtest.Svc.Note calls */
    char last_note[64]; /* text of the last one */
    long last_note_n;   /* its n */
} server;

typedef struct fixture {
    server s[NSERVERS];
    nh_runtime *crt;
    nh_config *cfg; /* servers 1..3 */
} fixture;

/* ---- what protoc-gen-nodehost would generate: typed functions and their trampolines ------- */

typedef void (*resp_done_fn)(const Stubtest__Response *resp, const nh_reply *r, void *user);
static void resp_tramp(nh_stub_fn fn, const ProtobufCMessage *resp, const nh_reply *r, void *user) {
    ((resp_done_fn)fn)((const Stubtest__Response *)resp, r, user);
}

typedef void (*value_done_fn)(const Stubtest__Response *v, const Stubtest__Response *const *replies,
                              const nh_qc_result *r, void *user);
static void value_tramp(nh_stub_fn fn, const ProtobufCMessage *v,
                        const ProtobufCMessage *const *replies, const nh_qc_result *r, void *user) {
    ((value_done_fn)fn)((const Stubtest__Response *)v, (const Stubtest__Response *const *)replies,
                        r, user);
}

typedef nh_qf_verdict (*resp_qf_fn)(const Stubtest__Response *const *replies,
                                    const nh_node_reply *raw, size_t n, size_t size, void *user,
                                    const Stubtest__Response **result);
static nh_qf_verdict qf_tramp(nh_stub_fn fn, const ProtobufCMessage *const *replies,
                              const nh_node_reply *raw, size_t n, size_t size, void *user,
                              const ProtobufCMessage **result) {
    const Stubtest__Response *res = NULL;
    nh_qf_verdict v =
        ((resp_qf_fn)fn)((const Stubtest__Response *const *)replies, raw, n, size, user, &res);
    *result = res ? &res->base : NULL;
    return v;
}

typedef nh_map_verdict (*req_map_fn)(uint32_t node_id, const Stubtest__Request *req, void *user,
                                     nh_buf *out);
static nh_map_verdict map_tramp(nh_stub_fn fn, uint32_t node_id, const ProtobufCMessage *req,
                                void *user, nh_buf *out) {
    return ((req_map_fn)fn)(node_id, (const Stubtest__Request *)req, user, out);
}

typedef void (*level_fn)(int level, const Stubtest__Response *v, bool done, const nh_error *err,
                         void *user);
static void level_tramp(nh_stub_fn fn, int level, const ProtobufCMessage *v, bool done,
                        const nh_error *err, void *user) {
    ((level_fn)fn)(level, (const Stubtest__Response *)v, done, err, user);
}

typedef void (*req_handler_fn)(nh_server_ctx *ctx, const Stubtest__Request *req, void *user);
static void handler_tramp(nh_stub_fn fn, nh_server_ctx *ctx, const ProtobufCMessage *req,
                          void *user) {
    ((req_handler_fn)fn)(ctx, (const Stubtest__Request *)req, user);
}

/* A call description as the generated code fills it. */
static nh_stub_call call_of(const char *method, const nh_call_opts *opts) {
    nh_stub_call c;
    memset(&c, 0, sizeof c);
    c.method = method;
    c.request = &stubtest__request__descriptor;
    c.response = &stubtest__response__descriptor;
    c.call = opts;
    return c;
}

static const nh_call_opts opts5s = {.timeout_ms = 5000};

/* ---- the servers: raw handlers that decode and encode with protobuf-c --------------------- */

static Stubtest__Request *decode_req(nh_server_ctx *ctx) {
    size_t n;
    const uint8_t *p = nh_ctx_payload(ctx, &n);
    return stubtest__request__unpack(NULL, n, p);
}

/* stubtest.Svc.Get: value = id * 10 + n, text = "<id>:<text>". */
static void h_get(nh_server_ctx *ctx, void *user) {
    server *s = user;
    Stubtest__Request *req = decode_req(ctx);
    if (!req) {
        nh_ctx_reply_error(ctx, NH_INVALID_ARGUMENT, "server %u: bad request", s->id);
        return;
    }
    size_t size = strlen(req->text) + 16;
    char *text = malloc(size);
    snprintf(text, size, "%u:%s", s->id, req->text);
    Stubtest__Response r = STUBTEST__RESPONSE__INIT;
    r.value = (int64_t)s->id * 10 + req->n;
    r.text = text;
    nh_ctx_reply_msg(ctx, &r.base);
    free(text);
    stubtest__request__free_unpacked(req, NULL);
}

/* stubtest.Svc.Note: one-way; records what arrived. */
static void h_note(nh_server_ctx *ctx, void *user) {
    server *s = user;
    Stubtest__Request *req = decode_req(ctx);
    pthread_mutex_lock(&s->mu);
    s->notes++;
    snprintf(s->last_note, sizeof s->last_note, "%s", req ? req->text : "(undecodable)");
    s->last_note_n = req ? (long)req->n : -1;
    pthread_mutex_unlock(&s->mu);
    if (req) stubtest__request__free_unpacked(req, NULL);
}

/* stubtest.Svc.Bad: replies bytes that are no Response (a truncated varint). */
static void h_bad(nh_server_ctx *ctx, void *user) {
    (void)user;
    static const uint8_t junk[] = {0x08, 0xff};
    nh_ctx_reply(ctx, junk, sizeof junk);
}

/* stubtest.Svc.Stream: correctable; sends n replies, value = id * 100 + k for k = 1..n. */
static void h_stream(nh_server_ctx *ctx, void *user) {
    server *s = user;
    Stubtest__Request *req = decode_req(ctx);
    long n = req ? (long)req->n : 0;
    for (long k = 1; k <= n; k++) {
        Stubtest__Response r = STUBTEST__RESPONSE__INIT;
        r.value = (int64_t)s->id * 100 + k;
        r.text = "stream";
        nh_ctx_send_msg(ctx, &r.base);
    }
    if (req) stubtest__request__free_unpacked(req, NULL);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    nh_error err;
    const char *addrs[NSERVERS];
    for (int i = 0; i < NSERVERS; i++) {
        server *s = &f->s[i];
        s->id = (uint32_t)i + 1;
        pthread_mutex_init(&s->mu, NULL);
        char name[16];
        snprintf(name, sizeof name, "srv%d", i + 1);
        nh_runtime_opts ro = {.name = name};
        assert_int_equal(nh_runtime_new(&ro, &s->rt, &err), 0);
        nh_server_opts so = {.listen = "127.0.0.1:0"};
        assert_int_equal(nh_server_new(s->rt, &so, &s->srv, &s->port, &err), 0);
        assert_int_equal(nh_server_handle(s->srv, "stubtest.Svc.Get", h_get, s, &err), 0);
        assert_int_equal(nh_server_handle(s->srv, "stubtest.Svc.Note", h_note, s, &err), 0);
        assert_int_equal(nh_server_handle(s->srv, "stubtest.Svc.Bad", h_bad, s, &err), 0);
        assert_int_equal(nh_server_handle(s->srv, "stubtest.Svc.Stream", h_stream, s, &err), 0);
        snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", s->port);
        addrs[i] = s->addr;
    }
    nh_runtime_opts co = {.name = "client"};
    assert_int_equal(nh_runtime_new(&co, &f->crt, &err), 0);
    nh_config_opts o = {
        .addresses = addrs, .count = NSERVERS, .backoff_base_ms = 50, .backoff_max_ms = 300};
    assert_int_equal(nh_config_new(f->crt, &o, &f->cfg, &err), 0);
    assert_true(nh_test_all_connected(f->cfg, 5000));
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    nh_config_unref(f->cfg);
    nh_runtime_free(f->crt);
    for (int i = 0; i < NSERVERS; i++) {
        nh_runtime_free(f->s[i].rt);
        pthread_mutex_destroy(&f->s[i].mu);
    }
    free(f);
    return 0;
}

/* A snapshot of what server i observed (never assert while holding a lock). */
static server observed(fixture *f, int i) {
    server c;
    pthread_mutex_lock(&f->s[i].mu);
    c = f->s[i];
    pthread_mutex_unlock(&f->s[i].mu);
    return c;
}

/* Waits until server i has seen `notes` Note calls; false after 5 s. */
static bool wait_notes(fixture *f, int i, int notes) {
    for (int waited = 0; waited <= 5000; waited += 5) {
        if (observed(f, i).notes >= notes) return true;
        nh_test_sleep_ms(5);
    }
    return false;
}

/* ---- completions: a box the owner thread fills and the test thread waits for -------------- */

typedef struct box {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    bool has_value;
    long value;
    char text[96];
    const void *ptr; /* the value's address */
    nh_error err;
    size_t n_replies;
} box;

static void box_init(box *b) {
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
}

static void box_destroy(box *b) {
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
}

/* A copy of the box once it was filled (calls >= 1), or with calls 0 after 10 s. */
static box box_wait(box *b) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&b->mu);
    while (b->calls == 0)
        if (pthread_cond_timedwait(&b->cv, &b->mu, &until) != 0) break;
    box c = *b;
    pthread_mutex_unlock(&b->mu);
    return c;
}

static void box_fill(box *b, const Stubtest__Response *v, const nh_error *err, size_t n) {
    pthread_mutex_lock(&b->mu);
    b->calls++;
    b->has_value = v != NULL;
    b->value = v ? (long)v->value : 0;
    snprintf(b->text, sizeof b->text, "%s", v && v->text ? v->text : "");
    b->ptr = v;
    b->err = *err;
    b->n_replies = n;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void on_resp(const Stubtest__Response *resp, const nh_reply *r, void *user) {
    box_fill(user, resp, &r->err, 1);
}

/* The last completion's decoded replies whose value did not match their node's (servers answer
 * node_id * 10 + 1), and how many decoded (written before box_fill wakes the test). */
static int g_replies_wrong, g_replies_decoded;

static void on_value(const Stubtest__Response *v, const Stubtest__Response *const *replies,
                     const nh_qc_result *r, void *user) {
    int wrong = 0, decoded = 0;
    for (size_t i = 0; replies && i < r->n_replies; i++) {
        if (!replies[i]) continue;
        decoded++;
        if (replies[i]->value != (int64_t)r->replies[i].node_id * 10 + 1) wrong++;
    }
    __atomic_store_n(&g_replies_wrong, wrong, __ATOMIC_SEQ_CST);
    __atomic_store_n(&g_replies_decoded, decoded, __ATOMIC_SEQ_CST);
    box_fill(user, v, &r->err, r->n_replies);
}

static void on_sent(const nh_reply *r, void *user) {
    box_fill(user, NULL, &r->err, 0);
}

static void on_mc(const nh_error *err, void *user) {
    box_fill(user, NULL, err, 0);
}

/* ---- RPC and unicast ---------------------------------------------------------------------- */

static void test_rpc_async_and_blocking_decode_the_response(void **state) {
    fixture *f = *state;
    nh_stub_call c = call_of("stubtest.Svc.Get", &opts5s);
    Stubtest__Request req = STUBTEST__REQUEST__INIT;
    req.n = 7;
    req.text = "hi";
    nh_error err;
    box b;
    box_init(&b);
    assert_int_equal(nh_stub_rpc_async(nh_config_node(f->cfg, 1), &c, &req.base, resp_tramp,
                                       (nh_stub_fn)on_resp, &b, &err),
                     0);
    box got = box_wait(&b);
    assert_int_equal(got.calls, 1);
    assert_int_equal(got.err.code, NH_OK);
    assert_true(got.has_value);
    assert_int_equal(got.value, 27);
    assert_string_equal(got.text, "2:hi");
    box_destroy(&b);

    ProtobufCMessage *resp = NULL;
    assert_int_equal(nh_stub_rpc(nh_config_node(f->cfg, 2), &c, &req.base, &resp, &err), 0);
    assert_non_null(resp);
    Stubtest__Response *r = (Stubtest__Response *)resp;
    assert_int_equal(r->value, 37);
    assert_string_equal(r->text, "3:hi");
    protobuf_c_message_free_unpacked(resp, NULL);

    /* A request bigger than the stack buffer of the packing is packed on the heap. */
    char big[4000];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = 0;
    req.text = big;
    assert_int_equal(nh_stub_rpc(nh_config_node(f->cfg, 0), &c, &req.base, &resp, &err), 0);
    r = (Stubtest__Response *)resp;
    assert_int_equal(strlen(r->text), 2 + strlen(big));
    protobuf_c_message_free_unpacked(resp, NULL);
}

static void test_undecodable_response_is_internal_with_the_type_name(void **state) {
    fixture *f = *state;
    nh_stub_call c = call_of("stubtest.Svc.Bad", &opts5s);
    Stubtest__Request req = STUBTEST__REQUEST__INIT;
    nh_error err;
    box b;
    box_init(&b);
    assert_int_equal(nh_stub_rpc_async(nh_config_node(f->cfg, 0), &c, &req.base, resp_tramp,
                                       (nh_stub_fn)on_resp, &b, &err),
                     0);
    box got = box_wait(&b);
    assert_int_equal(got.calls, 1);
    assert_false(got.has_value);
    assert_int_equal(got.err.code, NH_INTERNAL);
    assert_int_equal(got.err.node_id, 1);
    assert_string_equal(got.err.message, "response does not decode as stubtest.Response");
    box_destroy(&b);

    ProtobufCMessage *resp = (ProtobufCMessage *)&b; /* overwritten with NULL */
    assert_int_equal(nh_stub_rpc(nh_config_node(f->cfg, 1), &c, &req.base, &resp, &err), -1);
    assert_null(resp);
    assert_int_equal(err.code, NH_INTERNAL);
    assert_string_equal(err.message, "response does not decode as stubtest.Response");

    /* The same in a quorum call: the built-in rule's value does not decode. */
    box_init(&b);
    assert_int_equal(nh_stub_quorum_call_async(f->cfg, &c, &req.base, value_tramp,
                                               (nh_stub_fn)on_value, &b, &err),
                     0);
    got = box_wait(&b);
    assert_int_equal(got.calls, 1);
    assert_false(got.has_value);
    assert_int_equal(got.err.code, NH_INTERNAL);
    assert_string_equal(got.err.message, "response does not decode as stubtest.Response");
    assert_true(got.n_replies >= 2); /* the rest of the result is the engine's */
    box_destroy(&b);
    nh_qc_outcome out;
    assert_int_equal(nh_stub_quorum_call(f->cfg, &c, &req.base, &resp, &out, &err), -1);
    assert_null(resp);
    assert_int_equal(err.code, NH_INTERNAL);
    assert_true(out.n_replies >= 2);
    assert_int_equal(out.value.len, 2);
    nh_qc_outcome_free(&out);
}

static void test_unicast_async_and_blocking_reach_the_server(void **state) {
    fixture *f = *state;
    nh_stub_call c = call_of("stubtest.Svc.Note", &opts5s);
    c.response = NULL; /* one-way */
    Stubtest__Request req = STUBTEST__REQUEST__INIT;
    req.n = 1;
    req.text = "uni-block";
    nh_error err;
    assert_int_equal(nh_stub_unicast(nh_config_node(f->cfg, 0), &c, &req.base, &err), 0);
    assert_true(wait_notes(f, 0, 1));
    assert_string_equal(observed(f, 0).last_note, "uni-block");

    box b;
    box_init(&b);
    req.n = 2;
    req.text = "uni-async";
    assert_int_equal(
        nh_stub_unicast_async(nh_config_node(f->cfg, 0), &c, &req.base, on_sent, &b, &err), 0);
    box got = box_wait(&b);
    assert_int_equal(got.calls, 1);
    assert_int_equal(got.err.code, NH_OK);
    box_destroy(&b);
    assert_true(wait_notes(f, 0, 2));
    assert_string_equal(observed(f, 0).last_note, "uni-async");

    /* Fire and forget. */
    req.text = "uni-ff";
    assert_int_equal(
        nh_stub_unicast_async(nh_config_node(f->cfg, 1), &c, &req.base, NULL, NULL, &err), 0);
    assert_true(wait_notes(f, 1, 1));
    assert_string_equal(observed(f, 1).last_note, "uni-ff");
}

/* ---- multicast with a typed request mapping ------------------------------------------------ */

typedef struct map_log {
    pthread_mutex_t mu;
    int calls;
    char seen[96]; /* the request text the mapping saw */
} map_log;

/* Node 2 gets nothing; node 3 gets "changed" with n + 1; node 1 the request unchanged. */
static nh_map_verdict skip2_change3(uint32_t node_id, const Stubtest__Request *req, void *user,
                                    nh_buf *out) {
    map_log *l = user;
    pthread_mutex_lock(&l->mu);
    l->calls++;
    snprintf(l->seen, sizeof l->seen, "%s", req->text);
    pthread_mutex_unlock(&l->mu);
    if (node_id == 2) return NH_MAP_SKIP;
    if (node_id == 3) {
        Stubtest__Request r = *req;
        r.text = "changed";
        r.n = req->n + 1;
        return nh_map_replace(out, &r.base);
    }
    return NH_MAP_KEEP;
}

static map_log map_snap(map_log *l) {
    map_log c;
    pthread_mutex_lock(&l->mu);
    c = *l;
    pthread_mutex_unlock(&l->mu);
    return c;
}

static void check_mapped(fixture *f, int round, const char *text, long n) {
    assert_true(wait_notes(f, 0, round));
    assert_true(wait_notes(f, 2, round));
    server s1 = observed(f, 0), s2 = observed(f, 1), s3 = observed(f, 2);
    assert_int_equal(s1.notes, round);
    assert_string_equal(s1.last_note, text);
    assert_int_equal(s1.last_note_n, n);
    assert_int_equal(s2.notes, 0); /* skipped every time */
    assert_int_equal(s3.notes, round);
    assert_string_equal(s3.last_note, "changed");
    assert_int_equal(s3.last_note_n, n + 1);
}

static void test_multicast_with_a_typed_map_skips_and_replaces(void **state) {
    fixture *f = *state;
    map_log log = {.calls = 0};
    pthread_mutex_init(&log.mu, NULL);
    nh_stub_call c = call_of("stubtest.Svc.Note", &opts5s);
    c.response = NULL;
    c.map_tramp = map_tramp;
    c.map = (nh_stub_fn)skip2_change3;
    c.map_user = &log;
    Stubtest__Request req = STUBTEST__REQUEST__INIT;
    nh_error err;

    /* Blocking: the mapping sees the caller's request. */
    req.n = 10;
    req.text = "mc-block";
    assert_int_equal(nh_stub_multicast(f->cfg, &c, &req.base, &err), 0);
    check_mapped(f, 1, "mc-block", 10);
    map_log seen = map_snap(&log);
    assert_int_equal(seen.calls, 3);
    assert_string_equal(seen.seen, "mc-block");

    /* Async with done: the mapping sees the request decoded from the call's copy (the caller's
     * message is gone by then). */
    box b;
    box_init(&b);
    Stubtest__Request *tmp = malloc(sizeof *tmp);
    stubtest__request__init(tmp);
    tmp->n = 20;
    tmp->text = "mc-async";
    assert_int_equal(nh_stub_multicast_async(f->cfg, &c, &tmp->base, on_mc, &b, &err), 0);
    memset(tmp, 0, sizeof *tmp);
    free(tmp);
    box got = box_wait(&b);
    assert_int_equal(got.calls, 1);
    assert_int_equal(got.err.code, NH_OK); /* a skip is no send failure */
    box_destroy(&b);
    check_mapped(f, 2, "mc-async", 20);
    seen = map_snap(&log);
    assert_int_equal(seen.calls, 6);
    assert_string_equal(seen.seen, "mc-async");

    /* Fire and forget with a mapping (its state still goes: ASan checks). */
    req.n = 30;
    req.text = "mc-ff";
    assert_int_equal(nh_stub_multicast_async(f->cfg, &c, &req.base, NULL, NULL, &err), 0);
    check_mapped(f, 3, "mc-ff", 30);

    /* Without a mapping every node gets the request. */
    c.map = NULL;
    c.map_tramp = NULL;
    req.text = "mc-all";
    assert_int_equal(nh_stub_multicast(f->cfg, &c, &req.base, &err), 0);
    assert_true(wait_notes(f, 1, 1));
    assert_string_equal(observed(f, 1).last_note, "mc-all");
    pthread_mutex_destroy(&log.mu);
}

/* ---- quorum calls ------------------------------------------------------------------------- */

static void test_quorum_call_with_the_built_in_majority(void **state) {
    fixture *f = *state;
    nh_stub_call c = call_of("stubtest.Svc.Get", &opts5s);
    Stubtest__Request req = STUBTEST__REQUEST__INIT;
    req.n = 1;
    req.text = "q";
    nh_error err;
    ProtobufCMessage *v = NULL;
    nh_qc_outcome out;
    assert_int_equal(nh_stub_quorum_call(f->cfg, &c, &req.base, &v, &out, &err), 0);
    Stubtest__Response *r = (Stubtest__Response *)v;
    assert_true(r->value == 11 || r->value == 21 || r->value == 31);
    assert_true(out.n_replies >= 2);
    protobuf_c_message_free_unpacked(v, NULL);
    nh_qc_outcome_free(&out);
    /* value and out are optional. */
    assert_int_equal(nh_stub_quorum_call(f->cfg, &c, &req.base, NULL, NULL, &err), 0);

    box b;
    box_init(&b);
    c.quorum.kind = NH_QUORUM_ALL;
    assert_int_equal(nh_stub_quorum_call_async(f->cfg, &c, &req.base, value_tramp,
                                               (nh_stub_fn)on_value, &b, &err),
                     0);
    box got = box_wait(&b);
    assert_int_equal(got.calls, 1);
    assert_int_equal(got.err.code, NH_OK);
    assert_true(got.has_value);
    assert_int_equal(got.n_replies, 3);
    assert_true(got.value == 11 || got.value == 21 || got.value == 31);
    /* Every reply reaches the completion decoded, at its node's index. */
    assert_int_equal(__atomic_load_n(&g_replies_decoded, __ATOMIC_SEQ_CST), 3);
    assert_int_equal(__atomic_load_n(&g_replies_wrong, __ATOMIC_SEQ_CST), 0);
    box_destroy(&b);
}

typedef struct qf_state {
    int calls;
    size_t max_n;
    const Stubtest__Response *first; /* replies[0] as first seen: must stay the same */
    bool moved;                      /* replies[0] changed between calls */
    const Stubtest__Response *picked;
    Stubtest__Response own; /* a result of the function's own */
    char texts[NSERVERS][96];
} qf_state;

static void qf_track(qf_state *s, const Stubtest__Response *const *replies, size_t n) {
    s->calls++;
    if (n > s->max_n) s->max_n = n;
    if (n == 0) return; /* called once after sending, before any reply */
    if (!s->first)
        s->first = replies[0];
    else if (replies[0] != s->first)
        s->moved = true;
}

/* Sums every decoded value once all answered; returns a message of its own. */
static nh_qf_verdict sum_all(const Stubtest__Response *const *replies, const nh_node_reply *raw,
                             size_t n, size_t size, void *user, const Stubtest__Response **result) {
    qf_state *s = user;
    qf_track(s, replies, n);
    if (n < size) return NH_QF_MORE;
    long sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (!replies[i]) return nh_qf_fail(NH_INTERNAL, "reply %zu missing", i);
        sum += (long)replies[i]->value;
        snprintf(s->texts[raw[i].node_id - 1], sizeof s->texts[0], "%s", replies[i]->text);
    }
    stubtest__response__init(&s->own);
    s->own.value = sum;
    s->own.text = "sum";
    *result = &s->own;
    return NH_QF_DONE;
}

/* Picks the largest reply once all answered: one of replies[]. */
static nh_qf_verdict max_all(const Stubtest__Response *const *replies, const nh_node_reply *raw,
                             size_t n, size_t size, void *user, const Stubtest__Response **result) {
    (void)raw;
    qf_state *s = user;
    qf_track(s, replies, n);
    if (n < size) return NH_QF_MORE;
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (replies[i]->value > replies[best]->value) best = i;
    s->picked = replies[best];
    *result = replies[best];
    return NH_QF_DONE;
}

/* Decides at once with an empty value. */
static nh_qf_verdict empty_at_once(const Stubtest__Response *const *replies,
                                   const nh_node_reply *raw, size_t n, size_t size, void *user,
                                   const Stubtest__Response **result) {
    (void)replies, (void)raw, (void)n, (void)size, (void)user;
    *result = NULL;
    return NH_QF_DONE;
}

/* Fails the call at the first reply. */
static nh_qf_verdict disagree(const Stubtest__Response *const *replies, const nh_node_reply *raw,
                              size_t n, size_t size, void *user,
                              const Stubtest__Response **result) {
    (void)replies, (void)raw, (void)size, (void)user, (void)result;
    if (n == 0) return NH_QF_MORE;
    return nh_qf_fail(NH_FAILED_PRECONDITION, "replicas disagree after %zu", n);
}

/* Node 3 gets "changed" and n + 100; the others the request unchanged. */
static nh_map_verdict change3(uint32_t node_id, const Stubtest__Request *req, void *user,
                              nh_buf *out) {
    (void)user;
    if (node_id != 3) return NH_MAP_KEEP;
    Stubtest__Request r = *req;
    r.text = "changed";
    r.n = req->n + 100;
    return nh_map_replace(out, &r.base);
}

static nh_stub_call qf_call(resp_qf_fn fn, qf_state *s) {
    nh_stub_call c = call_of("stubtest.Svc.Get", &opts5s);
    c.qf_tramp = qf_tramp;
    c.qf = (nh_stub_fn)fn;
    c.qf_user = s;
    return c;
}

static void test_typed_quorum_function_sums_decoded_replies(void **state) {
    fixture *f = *state;
    Stubtest__Request req = STUBTEST__REQUEST__INIT;
    req.n = 2;
    req.text = "s";
    nh_error err;
    qf_state s = {.calls = 0};
    nh_stub_call c = qf_call(sum_all, &s);
    ProtobufCMessage *v = NULL;
    assert_int_equal(nh_stub_quorum_call(f->cfg, &c, &req.base, &v, NULL, &err), 0);
    Stubtest__Response *r = (Stubtest__Response *)v;
    assert_int_equal(r->value, 12 + 22 + 32);
    assert_string_equal(r->text, "sum");
    protobuf_c_message_free_unpacked(v, NULL);
    assert_int_equal(s.calls, 4); /* once after sending, then once per reply */
    assert_int_equal(s.max_n, 3);
    assert_false(s.moved); /* reply 0 kept its decoded message */

    /* Async, with a typed mapping as well: node 3 gets "changed" and n + 100. */
    memset(&s, 0, sizeof s);
    c.map_tramp = map_tramp;
    c.map = (nh_stub_fn)change3;
    box b;
    box_init(&b);
    assert_int_equal(nh_stub_quorum_call_async(f->cfg, &c, &req.base, value_tramp,
                                               (nh_stub_fn)on_value, &b, &err),
                     0);
    box got = box_wait(&b);
    assert_int_equal(got.calls, 1);
    assert_int_equal(got.err.code, NH_OK);
    assert_int_equal(got.value, 12 + 22 + 132);
    assert_string_equal(got.text, "sum");
    assert_int_equal(got.n_replies, 3);
    assert_string_equal(s.texts[0], "1:s");
    assert_string_equal(s.texts[1], "2:s");
    assert_string_equal(s.texts[2], "3:changed");
    assert_false(s.moved);
    box_destroy(&b);

    /* A node the mapping skips is a NULL reply for the typed function (its raw entry is the
     * "skip node" error); sum_all fails the call there. */
    memset(&s, 0, sizeof s);
    map_log log = {.calls = 0};
    pthread_mutex_init(&log.mu, NULL);
    c.map = (nh_stub_fn)skip2_change3;
    c.map_user = &log;
    box_init(&b);
    assert_int_equal(nh_stub_quorum_call_async(f->cfg, &c, &req.base, value_tramp,
                                               (nh_stub_fn)on_value, &b, &err),
                     0);
    got = box_wait(&b);
    assert_int_equal(got.calls, 1);
    assert_false(got.has_value);
    assert_int_equal(got.err.code, NH_INTERNAL);
    assert_string_equal(got.err.message, "reply 0 missing"); /* the skip is recorded first */
    box_destroy(&b);
    assert_int_equal(map_snap(&log).calls, 3);
    pthread_mutex_destroy(&log.mu);
}

static void test_typed_quorum_function_returning_a_reply_and_a_mapping(void **state) {
    fixture *f = *state;
    Stubtest__Request req = STUBTEST__REQUEST__INIT;
    req.n = 2;
    req.text = "m";
    nh_error err;
    qf_state s = {.calls = 0};
    nh_stub_call c = qf_call(max_all, &s);
    /* Blocking: the value is the largest reply, node 3's (32). */
    ProtobufCMessage *v = NULL;
    nh_qc_outcome out;
    assert_int_equal(nh_stub_quorum_call(f->cfg, &c, &req.base, &v, &out, &err), 0);
    Stubtest__Response *r = (Stubtest__Response *)v;
    assert_int_equal(r->value, 32);
    assert_string_equal(r->text, "3:m");
    assert_int_equal(out.n_replies, 3);
    assert_int_equal(out.value.len, protobuf_c_message_get_packed_size(v));
    protobuf_c_message_free_unpacked(v, NULL);
    nh_qc_outcome_free(&out);

    /* Async with a typed mapping: node 3's request changed; the completion gets the very
     * message the function picked (no second decode). */
    memset(&s, 0, sizeof s);
    Stubtest__Request *tmp = malloc(sizeof *tmp);
    stubtest__request__init(tmp);
    tmp->n = 2;
    tmp->text = "m";
    c.map_tramp = map_tramp;
    c.map = (nh_stub_fn)change3;
    box b;
    box_init(&b);
    assert_int_equal(nh_stub_quorum_call_async(f->cfg, &c, &tmp->base, value_tramp,
                                               (nh_stub_fn)on_value, &b, &err),
                     0);
    memset(tmp, 0, sizeof *tmp);
    free(tmp);
    box got = box_wait(&b);
    assert_int_equal(got.calls, 1);
    assert_int_equal(got.err.code, NH_OK);
    assert_int_equal(got.value, 30 + 102);
    assert_string_equal(got.text, "3:changed");
    assert_ptr_equal(got.ptr, s.picked);
    assert_false(s.moved);
    box_destroy(&b);

    /* A function that decides with *result NULL: an empty value (every field its default). */
    c.map = NULL;
    c.map_tramp = NULL;
    c.qf = (nh_stub_fn)empty_at_once;
    assert_int_equal(nh_stub_quorum_call(f->cfg, &c, &req.base, &v, &out, &err), 0);
    r = (Stubtest__Response *)v;
    assert_int_equal(r->value, 0);
    assert_string_equal(r->text, "");
    assert_int_equal(out.value.len, 0);
    protobuf_c_message_free_unpacked(v, NULL);
    nh_qc_outcome_free(&out);
}

static void test_typed_quorum_function_fails_the_call(void **state) {
    fixture *f = *state;
    Stubtest__Request req = STUBTEST__REQUEST__INIT;
    nh_error err;
    nh_stub_call c = qf_call(disagree, NULL);
    ProtobufCMessage *v = (ProtobufCMessage *)&err;
    nh_qc_outcome out;
    assert_int_equal(nh_stub_quorum_call(f->cfg, &c, &req.base, &v, &out, &err), -1);
    assert_null(v);
    assert_int_equal(err.code, NH_FAILED_PRECONDITION);
    assert_int_equal(err.kind, NH_ERR_INCOMPLETE);
    assert_string_equal(err.message, "replicas disagree after 1");
    assert_int_equal(out.n_replies, 1);
    nh_qc_outcome_free(&out);

    box b;
    box_init(&b);
    assert_int_equal(nh_stub_quorum_call_async(f->cfg, &c, &req.base, value_tramp,
                                               (nh_stub_fn)on_value, &b, &err),
                     0);
    box got = box_wait(&b);
    assert_int_equal(got.calls, 1);
    assert_false(got.has_value);
    assert_int_equal(got.err.code, NH_FAILED_PRECONDITION);
    assert_string_equal(got.err.message, "replicas disagree after 1");
    box_destroy(&b);
}

/* ---- refused starts ----------------------------------------------------------------------- */

static int g_never_calls;

static void never_resp(const Stubtest__Response *resp, const nh_reply *r, void *user) {
    (void)resp, (void)r, (void)user;
    __atomic_add_fetch(&g_never_calls, 1, __ATOMIC_RELAXED);
}

static void never_value(const Stubtest__Response *v, const Stubtest__Response *const *replies,
                        const nh_qc_result *r, void *user) {
    (void)v, (void)replies, (void)r, (void)user;
    __atomic_add_fetch(&g_never_calls, 1, __ATOMIC_RELAXED);
}

static void never_level(int level, const Stubtest__Response *v, bool done, const nh_error *err,
                        void *user) {
    (void)level, (void)v, (void)done, (void)err, (void)user;
    __atomic_add_fetch(&g_never_calls, 1, __ATOMIC_RELAXED);
}

static void never_mc(const nh_error *err, void *user) {
    (void)err, (void)user;
    __atomic_add_fetch(&g_never_calls, 1, __ATOMIC_RELAXED);
}

static void never_handler(nh_server_ctx *ctx, const Stubtest__Request *req, void *user) {
    (void)ctx, (void)req, (void)user;
}

static void test_refused_starts_call_nothing_and_leak_nothing(void **state) {
    fixture *f = *state;
    __atomic_store_n(&g_never_calls, 0, __ATOMIC_RELAXED);
    uint32_t all[] = {1, 2, 3};
    nh_config *empty = nh_config_remove(f->cfg, all, 3);
    assert_int_equal(nh_config_size(empty), 0);
    Stubtest__Request req = STUBTEST__REQUEST__INIT;
    req.text = "refused";
    qf_state s = {.calls = 0};
    map_log log = {.calls = 0};
    pthread_mutex_init(&log.mu, NULL);
    nh_stub_call c = qf_call(sum_all, &s);
    c.map_tramp = map_tramp;
    c.map = (nh_stub_fn)skip2_change3;
    c.map_user = &log;
    nh_error err;

    /* An empty configuration: every form refuses, with the state freed. */
    assert_int_equal(nh_stub_quorum_call_async(empty, &c, &req.base, value_tramp,
                                               (nh_stub_fn)never_value, NULL, &err),
                     -1);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "empty configuration"));
    assert_int_equal(nh_stub_quorum_call(empty, &c, &req.base, NULL, NULL, &err), -1);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_int_equal(nh_stub_multicast_async(empty, &c, &req.base, never_mc, NULL, &err), -1);
    assert_int_equal(nh_stub_multicast_async(empty, &c, &req.base, NULL, NULL, &err), -1);
    assert_int_equal(nh_stub_multicast(empty, &c, &req.base, &err), -1);
    nh_correctable *h = (nh_correctable *)&err;
    assert_int_equal(nh_stub_correctable_start(empty, &c, &req.base, false, level_tramp,
                                               (nh_stub_fn)never_level, NULL, &h, &err),
                     -1);
    assert_null(h);
    ProtobufCMessage *v = (ProtobufCMessage *)&err;
    int level = 5;
    assert_int_equal(nh_stub_correctable(empty, &c, &req.base, false, &v, &level, &err), -1);
    assert_null(v);
    assert_int_equal(level, -1);

    /* Bad arguments. */
    assert_int_equal(
        nh_stub_rpc_async(NULL, &c, &req.base, resp_tramp, (nh_stub_fn)never_resp, NULL, &err), -1);
    assert_string_equal(err.message, "node is NULL");
    assert_int_equal(
        nh_stub_rpc_async(nh_config_node(f->cfg, 0), &c, &req.base, resp_tramp, NULL, NULL, &err),
        -1);
    assert_int_equal(nh_stub_rpc_async(nh_config_node(f->cfg, 0), &c, NULL, resp_tramp,
                                       (nh_stub_fn)never_resp, NULL, &err),
                     -1);
    assert_string_equal(err.message, "stubtest.Svc.Get: request is NULL");
    Stubtest__Response wrong = STUBTEST__RESPONSE__INIT;
    assert_int_equal(nh_stub_quorum_call_async(f->cfg, &c, &wrong.base, value_tramp,
                                               (nh_stub_fn)never_value, NULL, &err),
                     -1);
    assert_string_equal(err.message, "stubtest.Svc.Get: request is a stubtest.Response, the "
                                     "method takes a stubtest.Request");
    nh_stub_call no_tramp = c;
    no_tramp.qf_tramp = NULL;
    assert_int_equal(nh_stub_quorum_call_async(f->cfg, &no_tramp, &req.base, value_tramp,
                                               (nh_stub_fn)never_value, NULL, &err),
                     -1);
    assert_non_null(strstr(err.message, "quorum function without its trampoline"));
    nh_stub_call no_resp = c;
    no_resp.response = NULL;
    assert_int_equal(nh_stub_quorum_call(f->cfg, &no_resp, &req.base, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.message, "response type is NULL"));
    nh_stub_call no_method = c;
    no_method.method = "";
    assert_int_equal(nh_stub_quorum_call_async(f->cfg, &no_method, &req.base, value_tramp,
                                               (nh_stub_fn)never_value, NULL, &err),
                     -1);
    assert_string_equal(err.message, "method name is empty");
    assert_int_equal(nh_stub_rpc_async(nh_config_node(f->cfg, 0), &no_method, &req.base, resp_tramp,
                                       (nh_stub_fn)never_resp, NULL, &err),
                     -1);
    assert_int_equal(nh_stub_serve(f->crt, &no_resp, NULL, (nh_stub_fn)never_handler, NULL, &err),
                     -1);
    no_resp.request = NULL;
    assert_int_equal(
        nh_stub_serve(f->crt, &no_resp, handler_tramp, (nh_stub_fn)never_handler, NULL, &err), -1);
    assert_int_equal(
        nh_stub_serve(f->crt, &no_method, handler_tramp, (nh_stub_fn)never_handler, NULL, &err),
        -1);
    assert_string_equal(err.message, "method name is empty");

    /* nh_map_replace without a message skips the node. */
    nh_buf out = {(uint8_t *)&err, 3};
    assert_int_equal(nh_map_replace(&out, NULL), NH_MAP_SKIP);
    assert_null(out.data);

    /* A round trip through the client's owner thread: nothing was queued for it. */
    nh_stub_call get = call_of("stubtest.Svc.Get", &opts5s);
    assert_int_equal(nh_stub_rpc(nh_config_node(f->cfg, 0), &get, &req.base, NULL, &err), 0);
    nh_test_sleep_ms(50);
    assert_int_equal(__atomic_load_n(&g_never_calls, __ATOMIC_RELAXED), 0);
    assert_int_equal(s.calls, 0);
    assert_int_equal(log.calls, 0);
    nh_config_unref(empty);
    pthread_mutex_destroy(&log.mu);
}

/* ---- correctable calls -------------------------------------------------------------------- */

typedef struct level_log {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
    int levels[32];
    long values[32];
    bool done;
    nh_error err;
} level_log;

static void log_level(int level, const Stubtest__Response *v, bool done, const nh_error *err,
                      void *user) {
    level_log *l = user;
    pthread_mutex_lock(&l->mu);
    if (l->n < 32) {
        l->levels[l->n] = level;
        l->values[l->n] = v ? (long)v->value : -1;
        l->n++;
    }
    if (done) {
        l->done = true;
        l->err = *err;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
}

static level_log level_wait(level_log *l) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&l->mu);
    while (!l->done)
        if (pthread_cond_timedwait(&l->cv, &l->mu, &until) != 0) break;
    level_log c = *l;
    pthread_mutex_unlock(&l->mu);
    return c;
}

static bool stream_value(long v) {
    long id = v / 100, k = v % 100;
    return id >= 1 && id <= 3 && k >= 1 && k <= 3;
}

static void test_correctable_streaming_levels_and_blocking_form(void **state) {
    fixture *f = *state;
    Stubtest__Request req = STUBTEST__REQUEST__INIT;
    req.n = 3; /* each server sends three replies */
    nh_error err;
    nh_stub_call c = call_of("stubtest.Svc.Stream", &opts5s);
    c.quorum.threshold = 6;

    level_log l;
    memset(&l, 0, sizeof l);
    pthread_mutex_init(&l.mu, NULL);
    pthread_cond_init(&l.cv, NULL);
    nh_correctable *h = NULL;
    assert_int_equal(nh_stub_correctable_start(f->cfg, &c, &req.base, true, level_tramp,
                                               (nh_stub_fn)log_level, &l, &h, &err),
                     0);
    assert_non_null(h);
    level_log got = level_wait(&l);
    assert_true(got.done);
    assert_int_equal(got.err.code, NH_OK);
    assert_int_equal(got.n, 6); /* levels 1..5, then the end at 6 */
    for (int i = 0; i < got.n; i++) {
        assert_int_equal(got.levels[i], i + 1);
        assert_true(stream_value(got.values[i]));
    }
    assert_int_equal(nh_correctable_watch(h, 6), 6);
    nh_correctable_free(h);
    pthread_cond_destroy(&l.cv);
    pthread_mutex_destroy(&l.mu);

    /* Blocking: the level reached and the last value, decoded. */
    ProtobufCMessage *v = NULL;
    int level = 0;
    assert_int_equal(nh_stub_correctable(f->cfg, &c, &req.base, true, &v, &level, &err), 0);
    assert_int_equal(level, 6);
    assert_non_null(v);
    assert_true(stream_value((long)((Stubtest__Response *)v)->value));
    protobuf_c_message_free_unpacked(v, NULL);

    /* A threshold out of reach: the timeout ends it; what was reached is still reported. */
    nh_call_opts quick = {.timeout_ms = 1000};
    c.call = &quick;
    c.quorum.threshold = 12;
    assert_int_equal(nh_stub_correctable(f->cfg, &c, &req.base, true, &v, &level, &err), -1);
    assert_int_equal(err.code, NH_DEADLINE_EXCEEDED);
    assert_int_equal(level, 9);
    assert_non_null(v);
    assert_true(stream_value((long)((Stubtest__Response *)v)->value));
    protobuf_c_message_free_unpacked(v, NULL);

    /* Non-streaming, threshold 0 = the configuration's size: one reply per node, no handle
     * wanted, and a typed mapping (its state goes with the call's end). */
    c.call = &opts5s;
    c.quorum.threshold = 0;
    map_log log = {.calls = 0};
    pthread_mutex_init(&log.mu, NULL);
    c.map_tramp = map_tramp;
    c.map = (nh_stub_fn)change3;
    c.map_user = &log;
    memset(&l, 0, sizeof l);
    pthread_mutex_init(&l.mu, NULL);
    pthread_cond_init(&l.cv, NULL);
    assert_int_equal(nh_stub_correctable_start(f->cfg, &c, &req.base, false, level_tramp,
                                               (nh_stub_fn)log_level, &l, NULL, &err),
                     0);
    got = level_wait(&l);
    assert_true(got.done);
    assert_int_equal(got.err.code, NH_OK);
    assert_int_equal(got.levels[got.n - 1], 3);
    pthread_cond_destroy(&l.cv);
    pthread_mutex_destroy(&l.mu);
    /* ... and with a mapping but no level function (the state still goes: ASan checks). */
    assert_int_equal(
        nh_stub_correctable_start(f->cfg, &c, &req.base, false, NULL, NULL, NULL, &h, &err), 0);
    assert_int_equal(nh_correctable_watch(h, 3), 3);
    nh_correctable_free(h);
    pthread_mutex_destroy(&log.mu);
}

/* ---- nh_stub_serve on a client's back-channel ---------------------------------------------- */

/* stubtest.Cli.Hello: value = n + 1, text = "<prefix> <text>". */
static void cli_hello(nh_server_ctx *ctx, const Stubtest__Request *req, void *user) {
    char text[128];
    snprintf(text, sizeof text, "%s %s", (const char *)user, req->text);
    Stubtest__Response r = STUBTEST__RESPONSE__INIT;
    r.value = req->n + 1;
    r.text = text;
    nh_ctx_reply_msg(ctx, &r.base);
}

typedef struct later {
    nh_server_ctx *ctx;
    const Stubtest__Request *req;
} later;

static void answer_later(void *p) {
    later *l = p;
    Stubtest__Response r = STUBTEST__RESPONSE__INIT;
    r.value = l->req->n * 2;
    r.text = l->req->text; /* the request is still valid: the call has not ended */
    nh_ctx_reply_msg(l->ctx, &r.base);
    free(l);
}

/* stubtest.Cli.Later: defers and answers from a posted task. */
static void cli_later(nh_server_ctx *ctx, const Stubtest__Request *req, void *user) {
    (void)user;
    later *l = malloc(sizeof *l);
    *l = (later){ctx, req};
    nh_ctx_defer(ctx);
    if (nh_runtime_post(nh_ctx_runtime(ctx), answer_later, l) != 0) {
        free(l);
        nh_ctx_reply_error(ctx, NH_UNAVAILABLE, "stopping");
    }
}

/* An untyped handler: replies "plain". */
static void plain_handler(nh_server_ctx *ctx, void *user) {
    (void)user;
    nh_ctx_reply(ctx, "plain", 5);
}

static void test_serve_typed_handlers_on_a_client_back_channel(void **state) {
    (void)state;
    nh_error err;
    nh_runtime *srt, *crt;
    assert_int_equal(nh_runtime_new(NULL, &srt, &err), 0);
    assert_int_equal(nh_runtime_new(NULL, &crt, &err), 0);
    nh_server *srv;
    int port;
    nh_server_opts so = {.listen = "127.0.0.1:0", .node_id = 9};
    assert_int_equal(nh_server_new(srt, &so, &srv, &port, &err), 0);

    nh_stub_call hello = call_of("stubtest.Cli.Hello", NULL);
    nh_stub_call later_c = call_of("stubtest.Cli.Later", NULL);
    /* Registered twice: the second replaces the first (whose registration is freed). */
    assert_int_equal(
        nh_stub_serve(crt, &hello, handler_tramp, (nh_stub_fn)cli_hello, "first", &err), 0);
    assert_int_equal(
        nh_stub_serve(crt, &hello, handler_tramp, (nh_stub_fn)cli_hello, "hello", &err), 0);
    assert_int_equal(nh_stub_serve(crt, &later_c, handler_tramp, (nh_stub_fn)cli_later, NULL, &err),
                     0);

    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    const char *addrs[] = {addr};
    nh_metadata md[] = {{"gorums-node-id", "0"}};
    nh_config_opts co = {.addresses = addrs, .count = 1, .metadata = md, .metadata_count = 1};
    nh_config *out;
    assert_int_equal(nh_config_new(crt, &co, &out, &err), 0);
    assert_int_equal(
        nh_server_wait_config(srv, true, nh_test_size_is, (void *)(uintptr_t)1, 10000, &err), 0);
    nh_config *cc = nh_server_client_config(srv);
    nh_node *client = nh_config_node(cc, 0);

    /* The server calls the client back with typed calls. */
    Stubtest__Request req = STUBTEST__REQUEST__INIT;
    req.n = 41;
    req.text = "world";
    ProtobufCMessage *resp = NULL;
    nh_stub_call hello_call = call_of("stubtest.Cli.Hello", &opts5s);
    assert_int_equal(nh_stub_rpc(client, &hello_call, &req.base, &resp, &err), 0);
    Stubtest__Response *r = (Stubtest__Response *)resp;
    assert_int_equal(r->value, 42);
    assert_string_equal(r->text, "hello world");
    protobuf_c_message_free_unpacked(resp, NULL);

    /* A deferred handler: the request lives until the call ends. */
    nh_stub_call later_call = call_of("stubtest.Cli.Later", &opts5s);
    for (int i = 0; i < 20; i++) {
        req.n = i;
        assert_int_equal(nh_stub_rpc(client, &later_call, &req.base, &resp, &err), 0);
        r = (Stubtest__Response *)resp;
        assert_int_equal(r->value, 2 * i);
        assert_string_equal(r->text, "world");
        protobuf_c_message_free_unpacked(resp, NULL);
    }

    /* A request that does not decode: INVALID_ARGUMENT, the handler is not called. */
    static const uint8_t junk[] = {0x08, 0xff};
    nh_call_opts o = {.timeout_ms = 5000};
    assert_int_equal(nh_rpc(client, "stubtest.Cli.Hello", junk, sizeof junk, &o, NULL, &err), -1);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "request does not decode as stubtest.Request"));

    /* Registering a method again replaces the typed handler and frees its registration, be it
     * with another typed handler or a plain one. */
    assert_int_equal(
        nh_stub_serve(crt, &later_c, handler_tramp, (nh_stub_fn)cli_hello, "again", &err), 0);
    req.text = "x";
    assert_int_equal(nh_stub_rpc(client, &later_call, &req.base, &resp, &err), 0);
    assert_string_equal(((Stubtest__Response *)resp)->text, "again x");
    protobuf_c_message_free_unpacked(resp, NULL);
    assert_int_equal(nh_runtime_handle(crt, "stubtest.Cli.Later", plain_handler, NULL, &err), 0);
    nh_buf raw;
    assert_int_equal(nh_rpc(client, "stubtest.Cli.Later", "", 0, &o, &raw, &err), 0);
    assert_int_equal(raw.len, 5);
    assert_memory_equal(raw.data, "plain", 5);
    nh_buf_free(&raw);

    nh_config_unref(cc);
    nh_config_unref(out);
    /* The registrations still in the table go with the runtime (ASan checks). */
    nh_runtime_free(crt);
    nh_runtime_free(srt);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_rpc_async_and_blocking_decode_the_response),
        T(test_undecodable_response_is_internal_with_the_type_name),
        T(test_unicast_async_and_blocking_reach_the_server),
        T(test_multicast_with_a_typed_map_skips_and_replaces),
        T(test_quorum_call_with_the_built_in_majority),
        T(test_typed_quorum_function_sums_decoded_replies),
        T(test_typed_quorum_function_returning_a_reply_and_a_mapping),
        T(test_typed_quorum_function_fails_the_call),
        T(test_refused_starts_call_nothing_and_leak_nothing),
        T(test_correctable_streaming_levels_and_blocking_form),
        cmocka_unit_test(test_serve_typed_handlers_on_a_client_back_channel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
