/* Private: what the typed stubs (nodehost/stubs.h) share: packing a request, checking a call's
 * description, the error of a message that does not decode, and the per-call state of calls
 * over a configuration with its typed quorum function and typed request mapping. */
#ifndef NH_STUBS_STUBS_IMPL_H
#define NH_STUBS_STUBS_IMPL_H

#include <nodehost/stubs.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Requests up to this size are packed on the caller's stack. */
#define NH_STUB_STACK_PACK 512

/** A packed request: in stack when it fits, else on the heap. Not copyable (data may point
 * into stack). */
typedef struct nh_stub_packed {
    uint8_t *data; /* the bytes: stack or a heap buffer */
    size_t len;
    uint8_t stack[NH_STUB_STACK_PACK];
} nh_stub_packed;

/** Packs msg into p. Returns 0, or -1 with err set (out of memory). */
int nh_stub_pack(const ProtobufCMessage *msg, nh_stub_packed *p, nh_error *err);

/** Releases what nh_stub_pack() allocated. */
void nh_stub_packed_free(nh_stub_packed *p);

/** Checks a call's description and its request: c, c->request and req set, req of the type
 * c->request, the response type set when need_response, and a trampoline for each typed
 * function given. Returns 0, or -1 with err set (NH_INVALID_ARGUMENT). */
int nh_stub_check(const nh_stub_call *c, const ProtobufCMessage *req, bool need_response,
                  nh_error *err);

/** True when a and b are the same message type (the same descriptor, or one with the same full
 * name: a plugin keeps its own copy of the generated code). */
bool nh_stub_same_type(const ProtobufCMessageDescriptor *a, const ProtobufCMessageDescriptor *b);

/** Sets err to NH_INTERNAL "response does not decode as <type>" (node_id: who sent it, or 0). */
void nh_stub_undecodable(nh_error *err, uint32_t node_id, const ProtobufCMessageDescriptor *type);

/**
 * The state of one typed call over a configuration (and of an async RPC, which uses only the
 * completion part). Async calls allocate it and free it when their completion ran (or at once
 * when the start is refused); blocking calls keep it on their stack for the call's length.
 * Owner thread, except where the blocking caller sets it up and tears it down.
 */
typedef struct nh_stub_state {
    /* the completion */
    nh_stub_rpc_tramp rpc_tramp;
    nh_stub_qc_tramp qc_tramp;
    nh_stub_level_tramp level_tramp;
    nh_stub_fn done; /* the user's typed function the trampoline calls */
    nh_mc_done_fn mc_done;
    void *user;
    const ProtobufCMessageDescriptor *response;

    /* a typed quorum function (stub_qf.c) */
    nh_stub_qf_tramp qf_tramp;
    nh_stub_fn qf;
    void *qf_user;
    nh_reply_msgs *replies;           /* every reply decoded once */
    const ProtobufCMessage **msgs;    /* replies[] as the typed function sees them */
    size_t n_msgs, cap_msgs;          /* filled / allocated entries of msgs */
    const ProtobufCMessage *qf_value; /* the decided value when it is one of msgs */
    nh_buf result;                    /* a result of the user's own, packed */

    /* a typed request mapping (map_replace.c) */
    nh_stub_map_tramp map_tramp;
    nh_stub_fn map;
    void *map_user;
    const ProtobufCMessageDescriptor *request;
    const ProtobufCMessage *req_view; /* the request the mapping sees (borrowed or req_own) */
    ProtobufCMessage *req_own;        /* decoded from the call's copy of the request, lazily */
    bool req_failed;                  /* the copy did not decode (out of memory) */
} nh_stub_state;

/** Fills the typed-function parts of st from c (the quorum function only when with_qf). */
void nh_stub_state_init(nh_stub_state *st, const nh_stub_call *c, bool with_qf);

/** Releases what st holds (not st itself). */
void nh_stub_state_clear(nh_stub_state *st);

/** Frees an allocated state (nh_stub_state_clear() + free). Accepts NULL. */
void nh_stub_state_free(nh_stub_state *st);

/** The untyped request mapping of a typed one: user is the nh_stub_state. */
nh_map_verdict nh_stub_map_adapter(uint32_t node_id, const uint8_t *req, size_t len, void *user,
                                   nh_buf *out);

/** The untyped quorum function of a typed one: user is the nh_stub_state (with replies set). */
/** Makes st->msgs[0..n) the decoded replies[0..n) (each decoded once, kept by index; NULL for
 * an error or a reply that does not decode). Returns 0, or -1 when out of memory. */
int nh_stub_decode_replies(nh_stub_state *st, const nh_node_reply *replies, size_t n);

nh_qf_verdict nh_stub_qf_adapter(const nh_node_reply *replies, size_t n, size_t config_size,
                                 void *user, const uint8_t **result, size_t *result_len);

/** The untyped options of c over a configuration, with st's adapters in place of c's typed
 * functions. quorum: whether c's quorum rule applies (quorum and correctable calls). */
nh_qc_opts nh_stub_qc_opts(const nh_stub_call *c, nh_stub_state *st, bool quorum);

#endif
