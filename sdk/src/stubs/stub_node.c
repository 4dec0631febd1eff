/* Typed calls to one node: RPC (the response decoded with the method's response type) and
 * unicast, over the untyped calls of nodehost/call.h (which copy the request bytes, so the
 * packed request lives on the caller's stack). */
#include "stubs/stubs_impl.h"

#include <stdlib.h>

/* An async RPC's completion: decode, call the typed function, free the state. */
static void rpc_done(const nh_reply *r, void *user) {
    nh_stub_state *st = user;
    ProtobufCMessage *resp = NULL;
    if (r->err.code == NH_OK) {
        resp = protobuf_c_message_unpack(st->response, NULL, r->len, r->payload);
        if (!resp) {
            nh_reply bad = *r;
            bad.payload = NULL;
            bad.len = 0;
            nh_stub_undecodable(&bad.err, r->node_id, st->response);
            st->rpc_tramp(st->done, NULL, &bad, st->user);
            nh_stub_state_free(st);
            return;
        }
    }
    st->rpc_tramp(st->done, resp, r, st->user);
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    nh_stub_state_free(st);
}

int nh_stub_rpc_async(nh_node *node, const nh_stub_call *c, const ProtobufCMessage *req,
                      nh_stub_rpc_tramp tramp, nh_stub_fn done, void *user, nh_error *err) {
    if (nh_stub_check(c, req, true, err) != 0) return -1;
    if (!tramp || !done)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: done is NULL",
                            c->method ? c->method : "(no method)");
    nh_stub_state *st = calloc(1, sizeof *st);
    if (!st) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    st->rpc_tramp = tramp;
    st->done = done;
    st->user = user;
    st->response = c->response;
    nh_stub_packed p;
    if (nh_stub_pack(req, &p, err) != 0) {
        free(st);
        return -1;
    }
    int rc = nh_rpc_async(node, c->method, p.data, p.len, c->call, rpc_done, st, err);
    nh_stub_packed_free(&p);
    if (rc != 0) free(st); /* refused: rpc_done will not run */
    return rc;
}

int nh_stub_rpc(nh_node *node, const nh_stub_call *c, const ProtobufCMessage *req,
                ProtobufCMessage **resp, nh_error *err) {
    if (resp) *resp = NULL;
    if (nh_stub_check(c, req, true, err) != 0) return -1;
    nh_stub_packed p;
    if (nh_stub_pack(req, &p, err) != 0) return -1;
    nh_buf raw = {0};
    int rc = nh_rpc(node, c->method, p.data, p.len, c->call, &raw, err);
    nh_stub_packed_free(&p);
    if (rc != 0) return -1;
    ProtobufCMessage *m = protobuf_c_message_unpack(c->response, NULL, raw.len, raw.data);
    nh_buf_free(&raw);
    if (!m) {
        nh_stub_undecodable(err, nh_node_id(node), c->response);
        return -1;
    }
    if (resp)
        *resp = m;
    else
        protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

int nh_stub_unicast_async(nh_node *node, const nh_stub_call *c, const ProtobufCMessage *req,
                          nh_reply_fn done, void *user, nh_error *err) {
    if (nh_stub_check(c, req, false, err) != 0) return -1;
    nh_stub_packed p;
    if (nh_stub_pack(req, &p, err) != 0) return -1;
    int rc = nh_unicast_async(node, c->method, p.data, p.len, c->call, done, user, err);
    nh_stub_packed_free(&p);
    return rc;
}

int nh_stub_unicast(nh_node *node, const nh_stub_call *c, const ProtobufCMessage *req,
                    nh_error *err) {
    if (nh_stub_check(c, req, false, err) != 0) return -1;
    nh_stub_packed p;
    if (nh_stub_pack(req, &p, err) != 0) return -1;
    int rc = nh_unicast(node, c->method, p.data, p.len, c->call, err);
    nh_stub_packed_free(&p);
    return rc;
}
