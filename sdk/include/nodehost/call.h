/* nodehost: calls to one node: RPC (request/response) and unicast (one-way). */
#ifndef NODEHOST_CALL_H
#define NODEHOST_CALL_H

#include <nodehost/node.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A cancellation token. Attach it to any number of calls (nh_call_opts.cancel); firing it, from
 * any thread, ends every call still running with NH_CANCELLED. It must outlive those calls.
 */
typedef struct nh_cancel nh_cancel;

/** Creates a token (not fired). Returns NULL when out of memory. */
NH_API nh_cancel *nh_cancel_new(void);

/** Fires the token: its running calls end with NH_CANCELLED, later calls at once. Any thread. */
NH_API void nh_cancel_fire(nh_cancel *c);

/** True once the token has fired. */
NH_API bool nh_cancel_fired(const nh_cancel *c);

/** Frees a token. No call may still use it. Accepts NULL. */
NH_API void nh_cancel_free(nh_cancel *c);

/** Per-call options. Zero-initialise; NULL means all defaults. */
typedef struct nh_call_opts {
    uint32_t timeout_ms;         /**< end the call with NH_DEADLINE_EXCEEDED after this; 0 = none */
    nh_cancel *cancel;           /**< optional cancellation token */
    const nh_metadata *metadata; /**< per-message metadata (the envelope's `entry` field) */
    size_t metadata_count;       /**< number of metadata pairs */
} nh_call_opts;

/**
 * The outcome of a call, valid only during the callback that receives it. On success err.code
 * is NH_OK and payload/len hold the response; otherwise err says which node failed and why.
 */
typedef struct nh_reply {
    uint32_t node_id;       /**< the node that answered or failed */
    uint64_t seq;           /**< the call's message_seq_no */
    const uint8_t *payload; /**< response bytes (RPC only) */
    size_t len;             /**< response size */
    nh_error err;           /**< NH_OK, or the failure */
} nh_reply;

/** Completion callback of an asynchronous call. Runs once, on the owner thread. */
typedef void (*nh_reply_fn)(const nh_reply *reply, void *user);

/**
 * Starts an RPC: sends `method` with the request bytes to the node and calls done once with the
 * response or the error. Any thread. Returns 0 when started (done will run, possibly with an
 * error), or -1 with err set when refused at once (bad argument, runtime stopping); done is then
 * not called.
 */
NH_API int nh_rpc_async(nh_node *node, const char *method, const void *req, size_t len,
                        const nh_call_opts *opts, nh_reply_fn done, void *user, nh_error *err);

/**
 * Blocking RPC: waits for the response (written to *resp, to be released with nh_buf_free())
 * or the error. Not on the owner thread: there it returns -1 with NH_FAILED_PRECONDITION.
 * Returns 0 on success, -1 with err set.
 */
NH_API int nh_rpc(nh_node *node, const char *method, const void *req, size_t len,
                  const nh_call_opts *opts, nh_buf *resp, nh_error *err);

/**
 * Starts a unicast (one-way, no response). done, when not NULL, runs once the request was
 * handed to the transport (err NH_OK) or failed; with done NULL the call is fire-and-forget and
 * leaves nothing pending. Any thread. Returns 0 when started, -1 with err set when refused.
 */
NH_API int nh_unicast_async(nh_node *node, const char *method, const void *req, size_t len,
                            const nh_call_opts *opts, nh_reply_fn done, void *user, nh_error *err);

/**
 * Blocking unicast: waits until the request was handed to the transport. Not on the owner
 * thread. Returns 0, or -1 with err set.
 */
NH_API int nh_unicast(nh_node *node, const char *method, const void *req, size_t len,
                      const nh_call_opts *opts, nh_error *err);

#ifdef __cplusplus
}
#endif
#endif
