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
    Proto__ReadResponse *best; /* the newest ReadQC reply (a copy), NULL before */
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

/* A new op over the serving node's membership (key and value copied; value may be NULL), or
 * NULL after answering the error. */
static op *op_new(nh_server_ctx *ctx, storage *s, const char *key, const char *value) {
    bool is_read = !value;
    nh_config *m = nh_ctx_members(ctx);
    if (nh_config_size(m) == 0) {
        nh_config_unref(m);
        nh_ctx_reply_error(ctx, NH_FAILED_PRECONDITION,
                           "%s needs the node's membership (a node ID and its peers)",
                           is_read ? "ReadNestedQC" : "WriteNestedQC");
        return NULL;
    }
    op *o = calloc(1, sizeof *o);
    if (o) *o = (op){.s = s, .ctx = ctx, .members = m, .is_read = is_read, .key = strdup(key)};
    if (o && value) o->value = strdup(value);
    if (!o || !o->key || (value && !o->value)) {
        if (o)
            op_free(o);
        else
            nh_config_unref(m);
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    google__protobuf__timestamp__init(&o->ts);
    /* Gorums' rule before a nested call: release the stream's order; the call stays open. */
    nh_ctx_release(ctx);
    nh_ctx_defer(ctx);
    return o;
}

/* ReadQC of the op's key to a majority of the members; on refusal answers the error. */
static void read_phase(op *o, proto_storage_read_qc_done_fn done, const char *phase) {
    Proto__ReadRequest rr = PROTO__READ_REQUEST__INIT;
    rr.key = o->key;
    proto_storage_read_qc_opts qo = {.call = {.timeout_ms = o->s->nested_timeout_ms}};
    nh_error err;
    if (proto_storage_read_qc_async(o->members, &rr, &qo, done, o, &err) != 0) fail(o, phase, &err);
}

/* WriteQC of the op's key with value and time to a majority of the members. */
static void write_phase(op *o, char *value, Google__Protobuf__Timestamp *time,
                        proto_storage_write_qc_done_fn done, const char *phase) {
    Proto__WriteRequest w = PROTO__WRITE_REQUEST__INIT;
    w.key = o->key;
    w.value = value;
    w.time = time;
    proto_storage_write_qc_opts qo = {.call = {.timeout_ms = o->s->nested_timeout_ms}};
    nh_error err;
    if (proto_storage_write_qc_async(o->members, &w, &qo, done, o, &err) != 0) fail(o, phase, &err);
}

static int version_cmp(const Proto__ReadResponse *a, const Proto__ReadResponse *b) {
    if (a->ok != b->ok) return a->ok ? 1 : -1;
    if (!a->ok) return 0;
    return st_version_cmp(a->time ? a->time->seconds : 0, a->time ? a->time->nanos : 0, a->value,
                          strlen(a->value), b->time ? b->time->seconds : 0,
                          b->time ? b->time->nanos : 0, b->value, strlen(b->value));
}

/* The newest of the decoded ReadQC replies (NULL when none decodes); *agree says whether every
 * one carried that same version. */
static const Proto__ReadResponse *newest(const Proto__ReadResponse *const *replies, size_t n,
                                         bool *agree) {
    const Proto__ReadResponse *best = NULL;
    *agree = true;
    for (size_t i = 0; replies && i < n; i++) {
        if (!replies[i]) continue;
        if (best && version_cmp(replies[i], best) != 0) *agree = false;
        if (!best || version_cmp(replies[i], best) > 0) best = replies[i];
    }
    return best;
}

/* ---- read --------------------------------------------------------------------------------- */

static void answer_read(op *o) {
    proto_storage_read_nested_qc_reply(o->ctx, o->best);
    op_free(o);
}

static void read_written_back(const Proto__WriteResponse *value,
                              const Proto__WriteResponse *const *replies, const nh_qc_result *r,
                              void *user) {
    op *o = user;
    if (r->err.code != NH_OK) {
        fail(o, "write-back", &r->err);
        return;
    }
    answer_read(o);
}

static void read_collected(const Proto__ReadResponse *value,
                           const Proto__ReadResponse *const *replies, const nh_qc_result *r,
                           void *user) {
    op *o = user;
    if (r->err.code != NH_OK) {
        fail(o, "read", &r->err);
        return;
    }
    bool agree;
    const Proto__ReadResponse *best = newest(replies, r->n_replies, &agree);
    /* The replies go when this returns; the answer (and a write-back) needs a copy. */
    nh_buf copy = {0};
    if (best && nh_msg_pack(&best->base, &copy) == 0)
        o->best = proto__read_response__unpack(NULL, copy.len, copy.data);
    nh_buf_free(&copy);
    if (!o->best) {
        nh_error e;
        nh_error_set(&e, NH_INTERNAL, NH_ERR_LOCAL, 0,
                     "no reply decodes as ReadResponse (or out of memory)");
        fail(o, "read", &e);
        return;
    }
    if (agree || !o->best->ok) {
        answer_read(o);
        return;
    }
    /* The majority disagrees: make the newest version a majority's before answering it. */
    write_phase(o, o->best->value, o->best->time, read_written_back, "write-back");
}

void proto_storage_read_nested_qc_handler(nh_server_ctx *ctx, const Proto__ReadRequest *req,
                                          void *state) {
    op *o = op_new(ctx, state, req->key, NULL);
    if (o) read_phase(o, read_collected, "read");
}

/* ---- write -------------------------------------------------------------------------------- */

static void write_done(const Proto__WriteResponse *value,
                       const Proto__WriteResponse *const *replies, const nh_qc_result *r,
                       void *user) {
    op *o = user;
    if (r->err.code != NH_OK) {
        fail(o, "write", &r->err);
        return;
    }
    Proto__WriteResponse resp = PROTO__WRITE_RESPONSE__INIT;
    for (size_t i = 0; i < r->n_replies; i++)
        resp.new_ |= replies[i] && replies[i]->new_;
    proto_storage_write_nested_qc_reply(o->ctx, &resp);
    op_free(o);
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

static void write_queried(const Proto__ReadResponse *value,
                          const Proto__ReadResponse *const *replies, const nh_qc_result *r,
                          void *user) {
    op *o = user;
    if (r->err.code != NH_OK) {
        fail(o, "query", &r->err);
        return;
    }
    bool agree;
    const Proto__ReadResponse *best = newest(replies, r->n_replies, &agree);
    if (!best) { /* nothing usable: a timestamp from the clock alone might be too old */
        nh_error e;
        nh_error_set(&e, NH_INTERNAL, NH_ERR_LOCAL, 0,
                     "no reply decodes as ReadResponse (or out of memory)");
        fail(o, "query", &e);
        return;
    }
    bool timed = best->ok && best->time;
    pick_timestamp(o->s, timed ? best->time->seconds : 0, timed ? best->time->nanos : 0, &o->ts);
    write_phase(o, o->value, &o->ts, write_done, "write");
}

void proto_storage_write_nested_qc_handler(nh_server_ctx *ctx, const Proto__WriteRequest *req,
                                           void *state) {
    op *o = op_new(ctx, state, req->key, req->value);
    if (!o) return;
    if (!req->time) {
        read_phase(o, write_queried, "query");
        return;
    }
    o->ts.seconds = req->time->seconds;
    o->ts.nanos = req->time->nanos;
    write_phase(o, o->value, &o->ts, write_done, "write");
}
