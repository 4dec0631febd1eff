/* nodehost: the runtime of typed stubs. protoc-gen-nodehost generates, per .proto file,
 * `<name>.nh.h` / `<name>.nh.c` with typed functions for each method (hello_greeter_say_hello(),
 * hello_greeter_say_hello_async(), ...); those functions are thin wrappers over the calls below,
 * which take protobuf-c messages and descriptors instead of bytes. Write against the generated
 * functions; call these directly only when no generated stub fits (docs/user-guide.md).
 *
 * Typed callbacks reach the user through trampolines: the generated code passes the user's
 * typed function as an nh_stub_fn together with a generated trampoline that casts it back to
 * its real type and the messages to theirs, so no function is ever called through a pointer of
 * another type. Every callback runs on the owner thread, as the untyped call's would. */
#ifndef NODEHOST_STUBS_H
#define NODEHOST_STUBS_H

#include <protobuf-c/protobuf-c.h>
#include <nodehost/call.h>
#include <nodehost/config.h>
#include <nodehost/message.h>
#include <nodehost/quorum.h>
#include <nodehost/runtime.h>
#include <nodehost/server.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Any function, as stored by the stubs; cast back to its own type before it is called. */
typedef void (*nh_stub_fn)(void);

/** Completion of a typed RPC: resp is the decoded response (NULL on error; r->err says why, a
 * response that does not decode is NH_INTERNAL "response does not decode as <type>"). resp is
 * freed after the trampoline returns. */
typedef void (*nh_stub_rpc_tramp)(nh_stub_fn fn, const ProtobufCMessage *resp, const nh_reply *r,
                                  void *user);

/** Completion of a typed quorum call: value is the decoded quorum value (NULL on error);
 * replies[i] is r->replies[i] decoded (NULL for a node's error or a reply that does not
 * decode), r->n_replies of them; replies is NULL only when decoding ran out of memory (r->err
 * then says so). Everything is freed after the trampoline returns. */
typedef void (*nh_stub_qc_tramp)(nh_stub_fn fn, const ProtobufCMessage *value,
                                 const ProtobufCMessage *const *replies, const nh_qc_result *r,
                                 void *user);

/**
 * A typed quorum function: replies[i] is the decoded reply i of raw[i] (NULL for a node's error,
 * a skipped node, or a reply that does not decode), n of them in arrival order; each reply is
 * decoded once and keeps its index and message from call to call. Called as the untyped one
 * (nh_quorum_fn): once after the request was sent (n may then be 0) and after every reply. To
 * decide, set *result to a message of the response type that stays valid until the function
 * returns (one of replies[]: its bytes are used as they arrived; or one of the user's: it is
 * packed) and return NH_QF_DONE (*result NULL: an empty value); or return nh_qf_fail(...) or
 * NH_QF_MORE.
 */
typedef nh_qf_verdict (*nh_stub_qf_tramp)(nh_stub_fn fn, const ProtobufCMessage *const *replies,
                                          const nh_node_reply *raw, size_t n, size_t config_size,
                                          void *user, const ProtobufCMessage **result);

/**
 * A typed per-node request mapping: req is the decoded request. Return NH_MAP_KEEP, NH_MAP_SKIP,
 * or nh_map_replace(out, &other_request) to send another message to this node.
 */
typedef nh_map_verdict (*nh_stub_map_tramp)(nh_stub_fn fn, uint32_t node_id,
                                            const ProtobufCMessage *req, void *user, nh_buf *out);

/** A typed correctable level: value is the decoded current value (NULL when none or on error). */
typedef void (*nh_stub_level_tramp)(nh_stub_fn fn, int level, const ProtobufCMessage *value,
                                    bool done, const nh_error *err, void *user);

/** A typed handler of a method served with nh_stub_serve(): req is the decoded request, valid
 * until the call ends. */
typedef void (*nh_stub_handler_tramp)(nh_stub_fn fn, nh_server_ctx *ctx,
                                      const ProtobufCMessage *req, void *user);

/**
 * One typed call: the method, its message types and the options of calls over a configuration.
 * The generated functions fill it from their typed options; zero-initialise the rest.
 */
typedef struct nh_stub_call {
    const char *method;                         /**< "pkg.Service.Method" */
    const ProtobufCMessageDescriptor *request;  /**< the request's type */
    const ProtobufCMessageDescriptor *response; /**< the response's type (NULL: one-way) */
    const nh_call_opts *call;                   /**< timeout, cancellation, metadata; may be NULL */
    nh_quorum quorum;            /**< built-in quorum rule (kind CUSTOM is set by qf) */
    nh_stub_qf_tramp qf_tramp;   /**< typed quorum function's trampoline, with qf */
    nh_stub_fn qf;               /**< typed quorum function; NULL: quorum's built-in rule */
    void *qf_user;               /**< passed to qf */
    nh_stub_map_tramp map_tramp; /**< typed request mapping's trampoline, with map */
    nh_stub_fn map;              /**< typed per-node request mapping; NULL: none */
    void *map_user;              /**< passed to map */
} nh_stub_call;

/**
 * Packs msg for a mapped node and returns NH_MAP_REPLACE (NH_MAP_SKIP when out of memory, with
 * a warning logged): `return nh_map_replace(out, &changed.base);` inside a request mapping.
 */
NH_API nh_map_verdict nh_map_replace(nh_buf *out, const ProtobufCMessage *msg);

/** Typed nh_rpc_async(): done (through tramp) runs once on the owner thread. Returns 0 when
 * started, -1 with err set when refused (done is then not called). */
NH_API int nh_stub_rpc_async(nh_node *node, const nh_stub_call *c, const ProtobufCMessage *req,
                             nh_stub_rpc_tramp tramp, nh_stub_fn done, void *user, nh_error *err);

/** Typed nh_rpc(): waits for the response (not on the owner thread) and decodes it into *resp
 * (free with protobuf_c_message_free_unpacked(*resp, NULL)). Returns 0, or -1 with err set. */
NH_API int nh_stub_rpc(nh_node *node, const nh_stub_call *c, const ProtobufCMessage *req,
                       ProtobufCMessage **resp, nh_error *err);

/** Typed nh_unicast_async() (done may be NULL: fire and forget). */
NH_API int nh_stub_unicast_async(nh_node *node, const nh_stub_call *c, const ProtobufCMessage *req,
                                 nh_reply_fn done, void *user, nh_error *err);

/** Typed nh_unicast(): waits until the request was handed to the transport. */
NH_API int nh_stub_unicast(nh_node *node, const nh_stub_call *c, const ProtobufCMessage *req,
                           nh_error *err);

/** Typed nh_multicast_async(), with c's request mapping (done may be NULL: fire and forget;
 * with a mapping the call then still waits for its sends internally, to free the mapping's
 * state). */
NH_API int nh_stub_multicast_async(nh_config *cfg, const nh_stub_call *c,
                                   const ProtobufCMessage *req, nh_mc_done_fn done, void *user,
                                   nh_error *err);

/** Typed nh_multicast(): waits for the send confirmations. Not on the owner thread. */
NH_API int nh_stub_multicast(nh_config *cfg, const nh_stub_call *c, const ProtobufCMessage *req,
                             nh_error *err);

/** Typed nh_quorum_call_async(): c's quorum rule or typed quorum function decides; done
 * (through tramp) gets the decoded value. Returns 0 when started, -1 with err when refused. */
NH_API int nh_stub_quorum_call_async(nh_config *cfg, const nh_stub_call *c,
                                     const ProtobufCMessage *req, nh_stub_qc_tramp tramp,
                                     nh_stub_fn done, void *user, nh_error *err);

/**
 * Typed nh_quorum_call() (not on the owner thread). On success returns 0 with *value decoded
 * (when value is not NULL; free with protobuf_c_message_free_unpacked()) and *out filled (when
 * out is not NULL). On failure -1 with err set, *value NULL, *out filled with what arrived.
 */
NH_API int nh_stub_quorum_call(nh_config *cfg, const nh_stub_call *c, const ProtobufCMessage *req,
                               ProtobufCMessage **value, nh_qc_outcome *out, nh_error *err);

/** Typed nh_correctable_start() (streaming as the method declares): on_level (through tramp)
 * may be NULL. Returns 0 with *out (may be NULL if not wanted), or -1 with err. */
NH_API int nh_stub_correctable_start(nh_config *cfg, const nh_stub_call *c,
                                     const ProtobufCMessage *req, bool streaming,
                                     nh_stub_level_tramp tramp, nh_stub_fn on_level, void *user,
                                     nh_correctable **out, nh_error *err);

/**
 * Blocking correctable call (not on the owner thread): waits until it ended, then decodes the
 * last value into *value (NULL when none) and the level reached into *level (both optional).
 * Returns 0 when the call reached its threshold, -1 with err set otherwise (*value and *level
 * are still set to what was reached).
 */
NH_API int nh_stub_correctable(nh_config *cfg, const nh_stub_call *c, const ProtobufCMessage *req,
                               bool streaming, ProtobufCMessage **value, int *level, nh_error *err);

/**
 * Serves method `c->method` on rt's back-channel (nh_runtime_handle()) with a typed handler:
 * each request is decoded with c->request (a request that does not decode is answered
 * INVALID_ARGUMENT "request does not decode as <type>" without calling the handler) and freed
 * when the call ends. The stub uses the call's nh_ctx_on_end() hook itself: handlers must not
 * set it. rt keeps the registration (tramp, handler, user; user itself stays the caller's)
 * until the method is registered again on rt (typed or not) or rt is freed. Any thread.
 * Returns 0, or -1 with err set.
 */
NH_API int nh_stub_serve(nh_runtime *rt, const nh_stub_call *c, nh_stub_handler_tramp tramp,
                         nh_stub_fn handler, void *user, nh_error *err);

#ifdef __cplusplus
}
#endif
#endif
