/* nodehost: protobuf-c messages in calls: replying and sending messages from handlers, packing
 * them, and decoding the replies of a quorum call once each. Plugins and client programs. */
#ifndef NODEHOST_MESSAGE_H
#define NODEHOST_MESSAGE_H

#include <protobuf-c/protobuf-c.h>
#include <nodehost/quorum.h>
#include <nodehost/server.h>
#include <nodehost/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- helpers for handlers ----------------------------------------------------------------- */

/** Sends msg, serialized, as the successful response and ends the call (see nh_ctx_reply()).
 * Returns 0, or -1 when the call already ended or out of memory. */
NH_API int nh_ctx_reply_msg(nh_server_ctx *ctx, const ProtobufCMessage *msg);

/** Sends msg as one more response of a correctable call (see nh_ctx_send()). */
NH_API int nh_ctx_send_msg(nh_server_ctx *ctx, const ProtobufCMessage *msg);

/** Serializes msg into a new buffer (release with nh_buf_free()). Returns 0, -1 when out of
 * memory. */
NH_API int nh_msg_pack(const ProtobufCMessage *msg, nh_buf *out);

/* ---- helpers for custom quorum functions --------------------------------------------------- */

/**
 * The replies of one quorum call, decoded once each. A custom quorum function is called after
 * every reply with all replies so far; decoding each of them at every call costs O(n^2)
 * decodes. Keep one nh_reply_msgs per call (in the function's user data) and ask it for reply
 * i: the first request decodes it, later ones return the same message. Replies keep their
 * index between calls (they are appended in arrival order), which is what makes this valid.
 * Owner thread (where quorum functions run). Free it after the call completed.
 */
typedef struct nh_reply_msgs nh_reply_msgs;

/** A cache for replies of type `type` (the method's response descriptor). NULL when out of
 * memory. */
NH_API nh_reply_msgs *nh_reply_msgs_new(const ProtobufCMessageDescriptor *type);

/** Reply i (i < n) of replies, decoded: NULL when that reply is a node's error or does not
 * decode as the type. Borrowed: valid until nh_reply_msgs_free(). */
NH_API const ProtobufCMessage *nh_reply_msgs_get(nh_reply_msgs *m, const nh_node_reply *replies,
                                                 size_t n, size_t i);

/** How many replies were decoded so far (each at most once). */
NH_API size_t nh_reply_msgs_decoded(const nh_reply_msgs *m);

/** Frees the cache and every message it decoded. Accepts NULL. */
NH_API void nh_reply_msgs_free(nh_reply_msgs *m);

#ifdef __cplusplus
}
#endif
#endif
