/* storage: the coordinated methods (their contract: storage.proto), ABD over the node's
 * membership (every known peer, connected or not; nh_ctx_members()); both release the stream's
 * order and answer asynchronously. ReadNestedQC answers the newest version among a majority's
 * ReadQC replies, after writing it back to a majority (WriteQC) when they do not all carry it, so
 * that no later read can return an older version. WriteNestedQC without a Time asks a majority
 * for the newest timestamp (ReadQC), then writes with a later one to a majority (WriteQC): a
 * write that starts after another ended supersedes it, whichever nodes coordinate them. */
#include "storage_impl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct op {
    storage *s;
    nh_server_ctx *ctx;
    nh_config *members;
    const char *name;      /* ReadNestedQC or WriteNestedQC */
    Proto__WriteRequest w; /* the write phase's request (time: &ts; value: the request's or copy) */
    Google__Protobuf__Timestamp ts;
    char *copy; /* a read's newest value, written back (the replies go) */
} op;

static void op_free(op *o) {
    nh_config_unref(o->members);
    free(o->copy);
    free(o);
}

static void fail(op *o, const char *phase, nh_code code, const char *why) {
    nh_ctx_reply_error(o->ctx, code, "%s (%s over %zu members): %s", o->name, phase,
                       nh_config_size(o->members), why);
    op_free(o);
}

/* Fails the op when its phase failed. */
static bool failed(op *o, const nh_qc_result *r, const char *phase) {
    if (r->err.code != NH_OK) fail(o, phase, r->err.code, r->err.message);
    return r->err.code != NH_OK;
}

/* A new op over the serving node's membership (key and value borrowed from the request, which
 * lives until the call ends; value NULL for a read), or NULL after answering the error. */
static op *op_new(nh_server_ctx *ctx, storage *s, const char *name, char *key, char *value) {
    op *o = malloc(sizeof *o);
    if (!o) {
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    *o = (op){.s = s, .ctx = ctx, .members = nh_ctx_members(ctx), .name = name};
    proto__write_request__init(&o->w);
    google__protobuf__timestamp__init(&o->ts);
    o->w.key = key;
    o->w.value = value;
    if (nh_config_size(o->members) == 0) {
        nh_ctx_reply_error(ctx, NH_FAILED_PRECONDITION,
                           "%s needs the node's membership (a node ID and its peers)", name);
        op_free(o);
        return NULL;
    }
    /* Gorums' rule before a nested call: release the stream's order; the call stays open. */
    nh_ctx_release(ctx);
    nh_ctx_defer(ctx);
    return o;
}

/* ReadQC of the op's key to a majority of the members; on refusal answers the error. */
static void read_phase(op *o, proto_storage_read_qc_done_fn done, const char *phase) {
    Proto__ReadRequest rr = PROTO__READ_REQUEST__INIT;
    rr.key = o->w.key;
    proto_storage_read_qc_opts qo = {.call = {.timeout_ms = o->s->nested_timeout_ms}};
    nh_error err;
    if (proto_storage_read_qc_async(o->members, &rr, &qo, done, o, &err) != 0)
        fail(o, phase, err.code, err.message);
}

/* WriteQC of o->w to a majority of the members. */
static void write_phase(op *o, proto_storage_write_qc_done_fn done, const char *phase) {
    proto_storage_write_qc_opts qo = {.call = {.timeout_ms = o->s->nested_timeout_ms}};
    nh_error err;
    if (proto_storage_write_qc_async(o->members, &o->w, &qo, done, o, &err) != 0)
        fail(o, phase, err.code, err.message);
}

static int version_cmp(const Proto__ReadResponse *a, const Proto__ReadResponse *b) {
    if (a->ok != b->ok) return a->ok ? 1 : -1;
    if (!a->ok) return 0;
    return st_version_cmp(a->time ? a->time->seconds : 0, a->time ? a->time->nanos : 0, a->value,
                          strlen(a->value), b->time ? b->time->seconds : 0,
                          b->time ? b->time->nanos : 0, b->value, strlen(b->value));
}

/* The newest of a read phase's decoded replies, *agree whether every one carried that same
 * version; NULL after failing the op (the phase failed, or no reply decodes). */
static const Proto__ReadResponse *newest(op *o, const Proto__ReadResponse *const *replies,
                                         const nh_qc_result *r, const char *phase, bool *agree) {
    if (failed(o, r, phase)) return NULL;
    const Proto__ReadResponse *best = NULL;
    *agree = true;
    for (size_t i = 0; replies && i < r->n_replies; i++) {
        if (!replies[i]) continue;
        if (best && version_cmp(replies[i], best) != 0) *agree = false;
        if (!best || version_cmp(replies[i], best) > 0) best = replies[i];
    }
    if (!best) fail(o, phase, NH_INTERNAL, "no reply decodes as ReadResponse (or out of memory)");
    return best;
}

static void read_written_back(const Proto__WriteResponse *value,
                              const Proto__WriteResponse *const *replies, const nh_qc_result *r,
                              void *user) {
    op *o = user;
    if (failed(o, r, "write-back")) return;
    Proto__ReadResponse resp = PROTO__READ_RESPONSE__INIT;
    resp.ok = true;
    resp.value = o->w.value;
    resp.time = o->w.time;
    proto_storage_read_nested_qc_reply(o->ctx, &resp);
    op_free(o);
}

static void read_collected(const Proto__ReadResponse *value,
                           const Proto__ReadResponse *const *replies, const nh_qc_result *r,
                           void *user) {
    op *o = user;
    bool agree;
    const Proto__ReadResponse *best = newest(o, replies, r, "read", &agree);
    if (!best) return;
    if (agree || !best->ok) {
        proto_storage_read_nested_qc_reply(o->ctx, best);
        op_free(o);
        return;
    }
    /* The majority disagrees: make the newest version a majority's before answering it. */
    if (!(o->w.value = o->copy = strdup(best->value))) {
        fail(o, "write-back", NH_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (best->time) {
        o->ts.seconds = best->time->seconds;
        o->ts.nanos = best->time->nanos;
        o->w.time = &o->ts;
    }
    write_phase(o, read_written_back, "write-back");
}

void proto_storage_read_nested_qc_handler(nh_server_ctx *ctx, const Proto__ReadRequest *req,
                                          void *state) {
    op *o = op_new(ctx, state, "ReadNestedQC", req->key, NULL);
    if (o) read_phase(o, read_collected, "read");
}

static void write_done(const Proto__WriteResponse *value,
                       const Proto__WriteResponse *const *replies, const nh_qc_result *r,
                       void *user) {
    op *o = user;
    if (failed(o, r, "write")) return;
    Proto__WriteResponse resp = PROTO__WRITE_RESPONSE__INIT;
    for (size_t i = 0; replies && i < r->n_replies; i++)
        resp.new_ |= replies[i] && replies[i]->new_;
    proto_storage_write_nested_qc_reply(o->ctx, &resp);
    op_free(o);
}

/* A timestamp later than (sec, nsec) and than the last one this coordinator picked (it never
 * reuses one); the wall clock when that is later, so that values keep a meaningful time. */
static void pick_timestamp(storage *s, int64_t sec, int32_t nsec, Google__Protobuf__Timestamp *t) {
    if (sec < s->last_sec || (sec == s->last_sec && nsec < s->last_nsec)) {
        sec = s->last_sec;
        nsec = s->last_nsec;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (sec < now.tv_sec || (sec == now.tv_sec && nsec < now.tv_nsec)) {
        sec = now.tv_sec;
        nsec = (int32_t)now.tv_nsec;
    }
    /* +1 ns past the newest of the three (strictly later than anything seen or picked). */
    if (++nsec >= 1000000000) {
        nsec = 0;
        sec++;
    }
    t->seconds = s->last_sec = sec;
    t->nanos = s->last_nsec = nsec;
}

static void write_queried(const Proto__ReadResponse *value,
                          const Proto__ReadResponse *const *replies, const nh_qc_result *r,
                          void *user) {
    op *o = user;
    bool agree;
    /* Nothing usable fails the write: a timestamp from the clock alone might be too old. */
    const Proto__ReadResponse *best = newest(o, replies, r, "query", &agree);
    if (!best) return;
    bool timed = best->ok && best->time;
    pick_timestamp(o->s, timed ? best->time->seconds : 0, timed ? best->time->nanos : 0, &o->ts);
    write_phase(o, write_done, "write");
}

void proto_storage_write_nested_qc_handler(nh_server_ctx *ctx, const Proto__WriteRequest *req,
                                           void *state) {
    op *o = op_new(ctx, state, "WriteNestedQC", req->key, req->value);
    if (!o) return;
    o->w.time = req->time ? req->time : &o->ts; /* the request's (borrowed), or picked */
    if (req->time)
        write_phase(o, write_done, "write");
    else
        read_phase(o, write_queried, "query");
}
