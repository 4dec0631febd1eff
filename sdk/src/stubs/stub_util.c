/* What the typed stubs share: packing, checking a call's description, decode errors, and the
 * per-call state's set-up and release. */
#include "stubs/stubs_impl.h"

#include <stdlib.h>
#include <string.h>

int nh_stub_pack(const ProtobufCMessage *msg, nh_stub_packed *p, nh_error *err) {
    size_t n = protobuf_c_message_get_packed_size(msg);
    p->data = n <= sizeof p->stack ? p->stack : malloc(n);
    p->len = 0;
    if (!p->data)
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0,
                            "out of memory packing a request of %zu bytes", n);
    p->len = protobuf_c_message_pack(msg, p->data);
    return 0;
}

void nh_stub_packed_free(nh_stub_packed *p) {
    if (p->data != p->stack) free(p->data);
    p->data = NULL;
    p->len = 0;
}

bool nh_stub_same_type(const ProtobufCMessageDescriptor *a, const ProtobufCMessageDescriptor *b) {
    return a == b || (a && b && a->name && b->name && !strcmp(a->name, b->name));
}

int nh_stub_check(const nh_stub_call *c, const ProtobufCMessage *req, bool need_response,
                  nh_error *err) {
    if (!c) return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "stub call is NULL");
    const char *m = c->method && *c->method ? c->method : "(no method)";
    if (!c->request)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: request type is NULL",
                            m);
    if (!req)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: request is NULL", m);
    if (!nh_stub_same_type(req->descriptor, c->request))
        return nh_error_set(
            err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: request is a %s, the method takes a %s",
            m, req->descriptor && req->descriptor->name ? req->descriptor->name : "(no type)",
            c->request->name);
    if (need_response && !c->response)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: response type is NULL",
                            m);
    if (c->qf && !c->qf_tramp)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "%s: typed quorum function without its trampoline", m);
    if (c->map && !c->map_tramp)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "%s: typed request mapping without its trampoline", m);
    return 0;
}

void nh_stub_undecodable(nh_error *err, uint32_t node_id, const ProtobufCMessageDescriptor *type) {
    nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, node_id, "response does not decode as %s",
                 type && type->name ? type->name : "(no type)");
}

void nh_stub_state_init(nh_stub_state *st, const nh_stub_call *c, bool with_qf) {
    memset(st, 0, sizeof *st);
    st->response = c->response;
    st->request = c->request;
    if (c->map) {
        st->map_tramp = c->map_tramp;
        st->map = c->map;
        st->map_user = c->map_user;
    }
    if (with_qf && c->qf) {
        st->qf_tramp = c->qf_tramp;
        st->qf = c->qf;
        st->qf_user = c->qf_user;
    }
}

void nh_stub_state_clear(nh_stub_state *st) {
    nh_reply_msgs_free(st->replies);
    st->replies = NULL;
    free(st->msgs);
    st->msgs = NULL;
    st->n_msgs = st->cap_msgs = 0;
    st->qf_value = NULL;
    nh_buf_free(&st->result);
    if (st->req_own) protobuf_c_message_free_unpacked(st->req_own, NULL);
    st->req_own = NULL;
    st->req_view = NULL;
}

void nh_stub_state_free(nh_stub_state *st) {
    if (!st) return;
    nh_stub_state_clear(st);
    free(st);
}

nh_qc_opts nh_stub_qc_opts(const nh_stub_call *c, nh_stub_state *st, bool quorum) {
    nh_qc_opts o;
    memset(&o, 0, sizeof o);
    if (c->call) o.call = *c->call;
    if (quorum) o.quorum = c->quorum;
    if (st && st->qf) {
        o.quorum.kind = NH_QUORUM_CUSTOM;
        o.quorum.fn = nh_stub_qf_adapter;
        o.quorum.fn_user = st;
    }
    if (st && st->map) {
        o.map_request = nh_stub_map_adapter;
        o.map_request_user = st;
    }
    return o;
}
