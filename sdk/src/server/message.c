/* protobuf-c conveniences for handlers (nodehost/plugin.h): serialize a message and reply. */
#include <nodehost/plugin.h>

#include <stdlib.h>

/* Messages up to this size are packed on the stack. */
#define NH_PACK_STACK 1024

int nh_msg_pack(const ProtobufCMessage *msg, nh_buf *out) {
    if (!msg || !out) return -1;
    size_t n = protobuf_c_message_get_packed_size(msg);
    out->data = malloc(n ? n : 1);
    if (!out->data) {
        out->len = 0;
        return -1;
    }
    out->len = protobuf_c_message_pack(msg, out->data);
    return 0;
}

static int reply_packed(nh_server_ctx *ctx, const ProtobufCMessage *msg, bool keep_open) {
    if (!ctx || !msg) return -1;
    uint8_t stack[NH_PACK_STACK];
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = n <= sizeof stack ? stack : malloc(n);
    if (!buf) return -1;
    size_t len = protobuf_c_message_pack(msg, buf);
    int rc = keep_open ? nh_ctx_send(ctx, buf, len) : nh_ctx_reply(ctx, buf, len);
    if (buf != stack) free(buf);
    return rc;
}

int nh_ctx_reply_msg(nh_server_ctx *ctx, const ProtobufCMessage *msg) {
    return reply_packed(ctx, msg, false);
}

int nh_ctx_send_msg(nh_server_ctx *ctx, const ProtobufCMessage *msg) {
    return reply_packed(ctx, msg, true);
}
