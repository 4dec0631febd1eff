/* Typed calls over a configuration: multicast, quorum calls and correctable calls, over the
 * untyped calls of nodehost/quorum.h. An async call's state (nh_stub_state) carries the typed
 * functions, the decoded replies and request, and lives until the call's completion ran; a
 * blocking call keeps it on its stack (the engine runs mappings and quorum functions only
 * before it completes, and the blocking call returns after that). */
#include "stubs/stubs_impl.h"

#include "config/config_impl.h"

#include <limits.h>
#include <stdlib.h>

/* A new state for an async call, or NULL with err set. */
static nh_stub_state *state_new(const nh_stub_call *c, bool with_qf, nh_error *err) {
    nh_stub_state *st = malloc(sizeof *st);
    if (!st) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return NULL;
    }
    nh_stub_state_init(st, c, with_qf);
    return st;
}

static const char *method_of(const nh_stub_call *c) {
    return c->method && *c->method ? c->method : "(no method)";
}

/* ---- multicast ---------------------------------------------------------------------------- */

static void mc_done(const nh_error *err, void *user) {
    nh_stub_state *st = user;
    if (st->mc_done) st->mc_done(err, st->user);
    nh_stub_state_free(st);
}

int nh_stub_multicast_async(nh_config *cfg, const nh_stub_call *c, const ProtobufCMessage *req,
                            nh_mc_done_fn done, void *user, nh_error *err) {
    if (nh_stub_check(c, req, false, err) != 0) return -1;
    nh_stub_packed p;
    if (nh_stub_pack(req, &p, err) != 0) return -1;
    int rc;
    if (!c->map) {
        nh_qc_opts o = nh_stub_qc_opts(c, NULL, false);
        rc = nh_multicast_async(cfg, c->method, p.data, p.len, &o, done, user, err);
    } else {
        /* The mapping's state goes when the completion ran: with a mapping the call always has
         * one (a fire-and-forget call then waits for its send confirmations internally). */
        nh_stub_state *st = state_new(c, false, err);
        if (!st) {
            nh_stub_packed_free(&p);
            return -1;
        }
        st->mc_done = done;
        st->user = user;
        nh_qc_opts o = nh_stub_qc_opts(c, st, false);
        rc = nh_multicast_async(cfg, c->method, p.data, p.len, &o, mc_done, st, err);
        if (rc != 0) nh_stub_state_free(st);
    }
    nh_stub_packed_free(&p);
    return rc;
}

int nh_stub_multicast(nh_config *cfg, const nh_stub_call *c, const ProtobufCMessage *req,
                      nh_error *err) {
    if (nh_stub_check(c, req, false, err) != 0) return -1;
    nh_stub_packed p;
    if (nh_stub_pack(req, &p, err) != 0) return -1;
    nh_stub_state st;
    nh_stub_state_init(&st, c, false);
    st.req_view = req; /* the caller's request outlives the call */
    nh_qc_opts o = nh_stub_qc_opts(c, &st, false);
    int rc = nh_multicast(cfg, c->method, p.data, p.len, &o, err);
    nh_stub_packed_free(&p);
    nh_stub_state_clear(&st);
    return rc;
}

/* ---- quorum calls ------------------------------------------------------------------------- */

/* An async quorum call's completion: the value and every reply decoded (the quorum function's
 * decodings reused), the typed function, then the state goes. */
static void qc_done(const nh_qc_result *r, void *user) {
    nh_stub_state *st = user;
    if (nh_stub_decode_replies(st, r->replies, r->n_replies) != 0) {
        nh_qc_result bad = *r;
        bad.value = NULL;
        bad.value_len = 0;
        nh_error_set(&bad.err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0,
                     "out of memory decoding the replies as %s", st->response->name);
        st->qc_tramp(st->done, NULL, NULL, &bad, st->user);
    } else if (r->err.code != NH_OK) {
        st->qc_tramp(st->done, NULL, st->msgs, r, st->user);
    } else if (st->qf_value) {
        st->qc_tramp(st->done, st->qf_value, st->msgs, r, st->user);
    } else {
        ProtobufCMessage *v = protobuf_c_message_unpack(st->response, NULL, r->value_len, r->value);
        if (v) {
            st->qc_tramp(st->done, v, st->msgs, r, st->user);
            protobuf_c_message_free_unpacked(v, NULL);
        } else {
            nh_qc_result bad = *r;
            bad.value = NULL;
            bad.value_len = 0;
            nh_stub_undecodable(&bad.err, 0, st->response);
            st->qc_tramp(st->done, NULL, st->msgs, &bad, st->user);
        }
    }
    nh_stub_state_free(st);
}

int nh_stub_quorum_call_async(nh_config *cfg, const nh_stub_call *c, const ProtobufCMessage *req,
                              nh_stub_qc_tramp tramp, nh_stub_fn done, void *user, nh_error *err) {
    if (nh_stub_check(c, req, true, err) != 0) return -1;
    if (!tramp || !done)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: done is NULL",
                            method_of(c));
    nh_stub_packed p;
    if (nh_stub_pack(req, &p, err) != 0) return -1;
    nh_stub_state *st = state_new(c, true, err);
    if (!st) {
        nh_stub_packed_free(&p);
        return -1;
    }
    st->qc_tramp = tramp;
    st->done = done;
    st->user = user;
    nh_qc_opts o = nh_stub_qc_opts(c, st, true);
    int rc = nh_quorum_call_async(cfg, c->method, p.data, p.len, &o, qc_done, st, err);
    nh_stub_packed_free(&p);
    if (rc != 0) nh_stub_state_free(st); /* refused: qc_done will not run */
    return rc;
}

int nh_stub_quorum_call(nh_config *cfg, const nh_stub_call *c, const ProtobufCMessage *req,
                        ProtobufCMessage **value, nh_qc_outcome *out, nh_error *err) {
    if (value) *value = NULL;
    if (out) *out = (nh_qc_outcome){0};
    if (nh_stub_check(c, req, true, err) != 0) return -1;
    nh_stub_packed p;
    if (nh_stub_pack(req, &p, err) != 0) return -1;
    nh_stub_state st;
    nh_stub_state_init(&st, c, true);
    st.req_view = req; /* the caller's request outlives the call */
    nh_qc_opts o = nh_stub_qc_opts(c, &st, true);
    nh_qc_outcome got;
    int rc = nh_quorum_call(cfg, c->method, p.data, p.len, &o, &got, err);
    nh_stub_packed_free(&p);
    nh_stub_state_clear(&st);
    if (rc == 0) {
        ProtobufCMessage *v =
            protobuf_c_message_unpack(c->response, NULL, got.value.len, got.value.data);
        if (!v) {
            nh_stub_undecodable(err, 0, c->response);
            rc = -1;
        } else if (value) {
            *value = v;
        } else {
            protobuf_c_message_free_unpacked(v, NULL);
        }
    }
    if (out)
        *out = got;
    else
        nh_qc_outcome_free(&got);
    return rc;
}

/* ---- correctable calls -------------------------------------------------------------------- */

/* A correctable call's level: the current value decoded for the typed function; at the end
 * (done) the state goes. */
static void on_level(int level, const uint8_t *value, size_t len, bool done, const nh_error *err,
                     void *user) {
    nh_stub_state *st = user;
    if (st->level_tramp) {
        ProtobufCMessage *v = NULL;
        nh_error bad;
        if (level >= 0) {
            v = protobuf_c_message_unpack(st->response, NULL, len, value);
            if (!v && err->code == NH_OK) { /* a call's own error says more */
                nh_stub_undecodable(&bad, 0, st->response);
                err = &bad;
            }
        }
        st->level_tramp(st->done, level, v, done, err, st->user);
        if (v) protobuf_c_message_free_unpacked(v, NULL);
    }
    if (done) nh_stub_state_free(st);
}

int nh_stub_correctable_start(nh_config *cfg, const nh_stub_call *c, const ProtobufCMessage *req,
                              bool streaming, nh_stub_level_tramp tramp, nh_stub_fn on_level_fn,
                              void *user, nh_correctable **out, nh_error *err) {
    if (out) *out = NULL;
    if (nh_stub_check(c, req, true, err) != 0) return -1;
    if (on_level_fn && !tramp)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "%s: level function without its trampoline", method_of(c));
    nh_stub_packed p;
    if (nh_stub_pack(req, &p, err) != 0) return -1;
    nh_qc_opts o;
    int rc;
    if (!on_level_fn && !c->map) {
        o = nh_stub_qc_opts(c, NULL, true);
        rc = nh_correctable_start(cfg, c->method, p.data, p.len, &o, streaming, NULL, NULL, out,
                                  err);
    } else {
        /* The level function runs once more at the end (done): the state goes then. */
        nh_stub_state *st = state_new(c, false, err);
        if (!st) {
            nh_stub_packed_free(&p);
            return -1;
        }
        st->level_tramp = on_level_fn ? tramp : NULL;
        st->done = on_level_fn;
        st->user = user;
        o = nh_stub_qc_opts(c, st, true);
        rc = nh_correctable_start(cfg, c->method, p.data, p.len, &o, streaming, on_level, st, out,
                                  err);
        if (rc != 0) nh_stub_state_free(st); /* refused: on_level will not run */
    }
    nh_stub_packed_free(&p);
    return rc;
}

int nh_stub_correctable(nh_config *cfg, const nh_stub_call *c, const ProtobufCMessage *req,
                        bool streaming, ProtobufCMessage **value, int *level, nh_error *err) {
    if (value) *value = NULL;
    if (level) *level = -1;
    if (nh_stub_check(c, req, true, err) != 0) return -1;
    if (cfg && nh_runtime_on_owner(cfg->rt))
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                            "blocking correctable call on the owner thread would deadlock; use "
                            "nh_stub_correctable_start() in handlers and callbacks");
    nh_stub_packed p;
    if (nh_stub_pack(req, &p, err) != 0) return -1;
    nh_stub_state st;
    nh_stub_state_init(&st, c, false);
    st.req_view = req; /* the caller's request outlives the call */
    nh_qc_opts o = nh_stub_qc_opts(c, &st, true);
    nh_correctable *h = NULL;
    int rc =
        nh_correctable_start(cfg, c->method, p.data, p.len, &o, streaming, NULL, NULL, &h, err);
    nh_stub_packed_free(&p);
    if (rc != 0) {
        nh_stub_state_clear(&st);
        return -1;
    }
    nh_correctable_watch(h, INT_MAX); /* returns once the call ended */
    nh_buf raw = {0};
    bool done = false;
    nh_error cerr;
    int reached = nh_correctable_get(h, &raw, &done, &cerr);
    nh_correctable_free(h);
    nh_stub_state_clear(&st); /* the call ended: its mapping runs no more */
    rc = cerr.code == NH_OK ? 0 : -1;
    if (err) *err = cerr;
    if (level) *level = reached;
    if (reached >= 0) {
        ProtobufCMessage *v = protobuf_c_message_unpack(c->response, NULL, raw.len, raw.data);
        if (!v) {
            if (rc == 0) nh_stub_undecodable(err, 0, c->response); /* else: the call's error */
            rc = -1;
        } else if (value) {
            *value = v;
        } else {
            protobuf_c_message_free_unpacked(v, NULL);
        }
    }
    nh_buf_free(&raw);
    return rc;
}
