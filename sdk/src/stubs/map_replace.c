/* Typed per-node request mappings: nh_map_replace(), and the untyped mapping the engine calls,
 * which hands the typed one the request decoded once per call. */
#include "stubs/stubs_impl.h"

#include "util/log.h"

nh_map_verdict nh_map_replace(nh_buf *out, const ProtobufCMessage *msg) {
    if (!out) {
        nh_log(NH_LOG_WARN, "stubs", "nh_map_replace: out is NULL; the node is skipped");
        return NH_MAP_SKIP;
    }
    *out = (nh_buf){0};
    if (!msg) {
        nh_log(NH_LOG_WARN, "stubs", "nh_map_replace: the message is NULL; the node is skipped");
        return NH_MAP_SKIP;
    }
    if (nh_msg_pack(msg, out) != 0) {
        nh_log(NH_LOG_WARN, "stubs",
               "nh_map_replace: out of memory packing a %s; the node is skipped",
               msg->descriptor && msg->descriptor->name ? msg->descriptor->name : "message");
        return NH_MAP_SKIP;
    }
    return NH_MAP_REPLACE;
}

/* The request as the typed mapping sees it: borrowed from a blocking caller, or decoded from
 * the call's own copy the first time a node is mapped and reused for the others. */
static const ProtobufCMessage *request_view(nh_stub_state *st, const uint8_t *req, size_t len) {
    if (st->req_view || st->req_failed) return st->req_view;
    st->req_own = protobuf_c_message_unpack(st->request, NULL, len, req);
    st->req_view = st->req_own;
    st->req_failed = !st->req_own;
    return st->req_view;
}

nh_map_verdict nh_stub_map_adapter(uint32_t node_id, const uint8_t *req, size_t len, void *user,
                                   nh_buf *out) {
    nh_stub_state *st = user;
    const ProtobufCMessage *msg = request_view(st, req, len);
    if (!msg) {
        /* It was packed from a message of this type: only memory can be missing. Sending the
         * request unmapped could go where the mapping would not send it: skip instead. */
        nh_log(NH_LOG_WARN, "stubs",
               "request mapping: cannot decode the request as %s (out of memory); node %u is "
               "skipped",
               st->request->name, node_id);
        return NH_MAP_SKIP;
    }
    return st->map_tramp(st->map, node_id, msg, st->map_user, out);
}
