/* storage: the coordinated methods, ABD over the node's membership (every known peer, connected
 * or not; nh_ctx_members()).
 *
 * ReadNestedQC: ReadQC to a majority of the members; the newest version among the replies is the
 * answer. When the replies of that majority do not all carry it, it is first written back to a
 * majority (WriteQC), so that no later read can return an older version: reads are linearizable
 * per key.
 *
 * WriteNestedQC: without a Time in the request, ReadQC to a majority first (the newest
 * timestamp any of them holds), then WriteQC of the value with a later timestamp to a majority.
 * A write that starts after another ended therefore gets a later timestamp than it, whichever
 * node coordinates either. The timestamp is the wall clock when that is later (so that values
 * keep a meaningful time), else the newest seen + 1 ns; a coordinator never reuses one of its
 * own. With a Time in the request, that timestamp is written as given (one phase).
 *
 * Both release the stream's order and answer asynchronously; a node that cannot reach a
 * majority of its members answers UNAVAILABLE at once ("1 of 3 members reachable, majority
 * needs 2"). */
#include "storage_impl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct op {
    storage *s;
    nh_server_ctx *ctx;
    nh_config *members;
    bool is_read;
    Proto__ReadResponse *best; /* the newest reply (read), owned */
    char *key, *value;         /* the write's key and value */
    Google__Protobuf__Timestamp ts;
} op;

static void op_free(op *o) {
    if (o->best) proto__read_response__free_unpacked(o->best, NULL);
    nh_config_unref(o->members);
    free(o->key);
    free(o->value);
    free(o);
}

static void fail(op *o, const char *phase, const nh_error *err) {
    nh_ctx_reply_error(o->ctx, err->code, "%s (%s over %zu members): %s",
                       o->is_read ? "ReadNestedQC" : "WriteNestedQC", phase,
                       nh_config_size(o->members), err->message);
    op_free(o);
}

/* The membership of the serving node, or NULL after answering FAILED_PRECONDITION. */
static nh_config *members_or_fail(nh_server_ctx *ctx, const char *method) {
    nh_config *m = nh_ctx_members(ctx);
    if (nh_config_size(m) > 0) return m;
    nh_config_unref(m);
    nh_ctx_reply_error(ctx, NH_FAILED_PRECONDITION,
                       "%s needs the node's membership (a node ID and its peers)", method);
    return NULL;
}

/* Starts a quorum call of the op; on refusal answers the error and frees the op. */
static void call(op *o, const char *method, const ProtobufCMessage *req, nh_qc_done_fn done,
                 const char *phase) {
    nh_buf bytes;
    nh_error err;
    if (nh_msg_pack(req, &bytes) != 0) {
        nh_error_set(&err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        fail(o, phase, &err);
        return;
    }
    nh_qc_opts qo = {.call = {.timeout_ms = o->s->nested_timeout_ms},
                     .quorum = {.kind = NH_QUORUM_MAJORITY}};
    int rc = nh_quorum_call_async(o->members, method, bytes.data, bytes.len, &qo, done, o, &err);
    nh_buf_free(&bytes);
    if (rc != 0) fail(o, phase, &err);
}

static int version_cmp(const Proto__ReadResponse *a, const Proto__ReadResponse *b) {
    if (a->ok != b->ok) return a->ok ? 1 : -1;
    if (!a->ok) return 0;
    return st_version_cmp(a->time ? a->time->seconds : 0, a->time ? a->time->nanos : 0, a->value,
                          strlen(a->value), b->time ? b->time->seconds : 0,
                          b->time ? b->time->nanos : 0, b->value, strlen(b->value));
}

/* The newest of the successful ReadQC replies (decoded once each) into o->best; returns
 * whether every reply carried that same version. */
static bool pick_newest(op *o, const nh_qc_result *r) {
    Proto__ReadResponse **msgs = calloc(r->n_replies + 1, sizeof *msgs);
    size_t n = 0;
    for (size_t i = 0; msgs && i < r->n_replies; i++) {
        if (r->replies[i].err.code != NH_OK) continue;
        Proto__ReadResponse *m =
            proto__read_response__unpack(NULL, r->replies[i].len, r->replies[i].payload);
        if (m) msgs[n++] = m;
    }
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (version_cmp(msgs[i], msgs[best]) > 0) best = i;
    bool agree = n > 0;
    for (size_t i = 0; i < n; i++)
        if (version_cmp(msgs[i], msgs[best]) != 0) agree = false;
    for (size_t i = 0; i < n; i++)
        if (i == best)
            o->best = msgs[i];
        else
            proto__read_response__free_unpacked(msgs[i], NULL);
    free(msgs);
    return agree;
}

/* ---- read --------------------------------------------------------------------------------- */

static void answer_read(op *o) {
    Proto__ReadResponse empty = PROTO__READ_RESPONSE__INIT;
    const Proto__ReadResponse *r = o->best ? o->best : &empty;
    if (nh_ctx_reply_msg(o->ctx, &r->base) != 0)
        nh_ctx_reply_error(o->ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
    op_free(o);
}

static void read_written_back(const nh_qc_result *r, void *user) {
    op *o = user;
    if (r->err.code != NH_OK) {
        fail(o, "write-back", &r->err);
        return;
    }
    answer_read(o);
}

static void read_collected(const nh_qc_result *r, void *user) {
    op *o = user;
    if (r->err.code != NH_OK) {
        fail(o, "read", &r->err);
        return;
    }
    bool agree = pick_newest(o, r);
    if (!o->best) {
        nh_error e;
        nh_error_set(&e, NH_INTERNAL, NH_ERR_LOCAL, 0, "no reply decodes as ReadResponse");
        fail(o, "read", &e);
        return;
    }
    if (agree || !o->best->ok) {
        answer_read(o);
        return;
    }
    /* The majority disagrees: make the newest version a majority's before answering it. */
    Proto__WriteRequest w = PROTO__WRITE_REQUEST__INIT;
    w.key = o->key;
    w.value = o->best->value;
    w.time = o->best->time;
    call(o, "proto.Storage.WriteQC", &w.base, read_written_back, "write-back");
}

void storage_h_read_nested(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    const Proto__ReadRequest *req = (const Proto__ReadRequest *)request;
    nh_config *members = members_or_fail(ctx, "ReadNestedQC");
    if (!members) return;
    op *o = calloc(1, sizeof *o);
    if (o) o->key = strdup(req->key);
    if (!o || !o->key) {
        free(o);
        nh_config_unref(members);
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    o->s = state;
    o->ctx = ctx;
    o->is_read = true;
    o->members = members;
    /* Gorums' rule before a nested call: release the stream's order; the call stays open. */
    nh_ctx_release(ctx);
    nh_ctx_defer(ctx);
    Proto__ReadRequest rr = PROTO__READ_REQUEST__INIT;
    rr.key = o->key;
    call(o, "proto.Storage.ReadQC", &rr.base, read_collected, "read");
}

/* ---- write -------------------------------------------------------------------------------- */

static void write_done(const nh_qc_result *r, void *user) {
    op *o = user;
    if (r->err.code != NH_OK) {
        fail(o, "write", &r->err);
        return;
    }
    Proto__WriteResponse resp = PROTO__WRITE_RESPONSE__INIT;
    for (size_t i = 0; i < r->n_replies; i++) {
        if (r->replies[i].err.code != NH_OK) continue;
        Proto__WriteResponse *m =
            proto__write_response__unpack(NULL, r->replies[i].len, r->replies[i].payload);
        if (m && m->new_) resp.new_ = true;
        if (m) proto__write_response__free_unpacked(m, NULL);
    }
    if (nh_ctx_reply_msg(o->ctx, &resp.base) != 0)
        nh_ctx_reply_error(o->ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
    op_free(o);
}

static void write_phase(op *o) {
    Proto__WriteRequest w = PROTO__WRITE_REQUEST__INIT;
    w.key = o->key;
    w.value = o->value;
    w.time = &o->ts;
    call(o, "proto.Storage.WriteQC", &w.base, write_done, "write");
}

/* A timestamp later than (sec, nsec), than the wall clock if possible, and than the last one
 * this coordinator picked. */
static void pick_timestamp(storage *s, int64_t sec, int32_t nsec, Google__Protobuf__Timestamp *t) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t cs = now.tv_sec;
    int32_t cn = (int32_t)now.tv_nsec;
    if (cs < s->last_sec || (cs == s->last_sec && cn < s->last_nsec)) {
        cs = s->last_sec;
        cn = s->last_nsec;
    }
    if (cs < sec || (cs == sec && cn < nsec)) {
        cs = sec;
        cn = nsec;
    }
    /* +1 ns past the newest of the three (strictly later than anything seen or picked). */
    if (++cn >= 1000000000) {
        cn = 0;
        cs++;
    }
    t->seconds = s->last_sec = cs;
    t->nanos = s->last_nsec = cn;
}

static void write_queried(const nh_qc_result *r, void *user) {
    op *o = user;
    if (r->err.code != NH_OK) {
        fail(o, "query", &r->err);
        return;
    }
    pick_newest(o, r);
    if (!o->best) { /* nothing usable: a timestamp from the clock alone might be too old */
        nh_error e;
        nh_error_set(&e, NH_INTERNAL, NH_ERR_LOCAL, 0,
                     "no reply decodes as ReadResponse (or out of memory)");
        fail(o, "query", &e);
        return;
    }
    int64_t sec = 0;
    int32_t nsec = 0;
    if (o->best->ok && o->best->time) {
        sec = o->best->time->seconds;
        nsec = o->best->time->nanos;
    }
    pick_timestamp(o->s, sec, nsec, &o->ts);
    write_phase(o);
}

void storage_h_write_nested(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    const Proto__WriteRequest *req = (const Proto__WriteRequest *)request;
    nh_config *members = members_or_fail(ctx, "WriteNestedQC");
    if (!members) return;
    op *o = calloc(1, sizeof *o);
    if (o) {
        o->members = members;
        o->key = strdup(req->key);
        o->value = strdup(req->value);
    }
    if (!o || !o->key || !o->value) {
        if (o)
            op_free(o);
        else
            nh_config_unref(members);
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    o->s = state;
    o->ctx = ctx;
    google__protobuf__timestamp__init(&o->ts);
    nh_ctx_release(ctx);
    nh_ctx_defer(ctx);
    if (req->time) {
        o->ts.seconds = req->time->seconds;
        o->ts.nanos = req->time->nanos;
        write_phase(o);
        return;
    }
    Proto__ReadRequest rr = PROTO__READ_REQUEST__INIT;
    rr.key = o->key;
    call(o, "proto.Storage.ReadQC", &rr.base, write_queried, "query");
}
