/* nodehost: calls over a configuration: multicast, quorum calls (blocking, async, callback),
 * correctable calls, per-node request and response mapping. */
#ifndef NODEHOST_QUORUM_H
#define NODEHOST_QUORUM_H

#include <nodehost/call.h>
#include <nodehost/config.h>

#ifdef __cplusplus
extern "C" {
#endif

/** One node's answer: a response, or that node's error. Pointers valid during the callback. */
typedef struct nh_node_reply {
    uint32_t node_id;       /**< the node */
    const uint8_t *payload; /**< response bytes when err.code is NH_OK */
    size_t len;             /**< response size */
    nh_error err;           /**< NH_OK, or why this node failed (or was skipped) */
} nh_node_reply;

/** A custom quorum function's verdict. */
typedef enum nh_qf_verdict {
    NH_QF_MORE = 0, /**< not decided: wait for more replies */
    NH_QF_DONE = 1, /**< decided: the call succeeds with *result */
    NH_QF_FAIL = 2, /**< decided: the call fails with the status given to nh_qf_fail() */
} nh_qf_verdict;

/**
 * Inside a custom quorum function: ends the call with this error status and message
 * (printf-style) instead of waiting for more replies, and returns NH_QF_FAIL for the function
 * to return: `return nh_qf_fail(NH_FAILED_PRECONDITION, "replicas disagree on %s", key);`.
 * The caller sees err.code = code, err.kind = NH_ERR_INCOMPLETE and the message, with the
 * replies so far. A quorum function that returns NH_QF_FAIL without calling this fails the
 * call with NH_UNKNOWN "the quorum function failed the call". Owner thread (where quorum
 * functions run); elsewhere it has no effect but the return value.
 */
NH_API nh_qf_verdict nh_qf_fail(nh_code code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/**
 * A custom quorum function (Gorums' classic style). Called on the owner thread after every
 * reply with all replies so far, in arrival order (successes and node errors), and the
 * configuration size. To decide, set *result / *result_len (bytes that stay valid until the
 * function returns, for example one reply's payload; they are copied) and return NH_QF_DONE.
 * When every node answered and it still returns NH_QF_MORE, the call ends "incomplete".
 */
typedef nh_qf_verdict (*nh_quorum_fn)(const nh_node_reply *replies, size_t n, size_t config_size,
                                      void *user, const uint8_t **result, size_t *result_len);

/** Built-in quorum rules. */
typedef enum nh_quorum_kind {
    NH_QUORUM_MAJORITY = 0,  /**< size/2 + 1 successes (the default) */
    NH_QUORUM_FIRST = 1,     /**< 1 success */
    NH_QUORUM_ALL = 2,       /**< every node */
    NH_QUORUM_THRESHOLD = 3, /**< `threshold` successes */
    NH_QUORUM_CUSTOM = 4,    /**< the quorum function decides */
} nh_quorum_kind;

/** A quorum rule. The value of a built-in rule is the first successful reply. */
typedef struct nh_quorum {
    nh_quorum_kind kind; /**< which rule */
    size_t threshold;    /**< for NH_QUORUM_THRESHOLD (and the level of correctable calls) */
    nh_quorum_fn fn;     /**< for NH_QUORUM_CUSTOM */
    void *fn_user;       /**< passed to fn */
} nh_quorum;

/** A request mapping's verdict for one node. */
typedef enum nh_map_verdict {
    NH_MAP_KEEP = 0,    /**< send the request unchanged */
    NH_MAP_REPLACE = 1, /**< send *out instead (the engine frees it with nh_buf_free) */
    NH_MAP_SKIP = 2,    /**< send nothing to this node; its reply slot says "skip node" */
} nh_map_verdict;

/** Per-node request transform, called on the owner thread before sending to each node. */
typedef nh_map_verdict (*nh_map_request_fn)(uint32_t node_id, const uint8_t *req, size_t len,
                                            void *user, nh_buf *out);

/** Per-node response transform, applied to successful replies only: NH_MAP_KEEP or
 * NH_MAP_REPLACE (with *out). */
typedef nh_map_verdict (*nh_map_response_fn)(uint32_t node_id, const uint8_t *resp, size_t len,
                                             void *user, nh_buf *out);

/** Options of a call over a configuration. Zero-initialise; NULL means all defaults. */
typedef struct nh_qc_opts {
    nh_call_opts call;               /**< timeout, cancellation, per-message metadata */
    nh_quorum quorum;                /**< the quorum rule (default majority) */
    nh_map_request_fn map_request;   /**< optional per-node request transform */
    void *map_request_user;          /**< passed to map_request */
    nh_map_response_fn map_response; /**< optional per-node response transform */
    void *map_response_user;         /**< passed to map_response */
} nh_qc_opts;

/**
 * The outcome of a quorum call, valid during the callback that receives it.
 * err: NH_OK, or kind NH_ERR_INCOMPLETE ("incomplete call", with the failed nodes listed in its
 * message and in replies), or a local refusal. replies: everything that arrived, in order.
 */
typedef struct nh_qc_result {
    uint64_t seq;                 /**< the call's message_seq_no (shared by all nodes) */
    nh_error err;                 /**< NH_OK or why the call failed */
    const uint8_t *value;         /**< the quorum's value (first counted reply, or custom) */
    size_t value_len;             /**< its size */
    const nh_node_reply *replies; /**< replies received (successes and errors) */
    size_t n_replies;             /**< number of replies */
    size_t n_node_errors;         /**< replies that are errors (skips excluded) */
} nh_qc_result;

/** Completion callback of a quorum call; runs once on the owner thread. */
typedef void (*nh_qc_done_fn)(const nh_qc_result *r, void *user);

/**
 * Starts a quorum call: the request goes to every node of cfg at once, with one shared
 * message_seq_no, in configuration order; done runs when the quorum rule decides, when every
 * node answered without it deciding (a rule that can no longer be met still waits for the other
 * nodes, as Gorums does, so that the error lists every failed node), at the timeout, or at
 * cancellation. Replies that arrive after that are dropped.
 * Any thread. Returns 0 when started, -1 with err set when refused (empty configuration, bad
 * argument, oversized request).
 */
NH_API int nh_quorum_call_async(nh_config *cfg, const char *method, const void *req, size_t len,
                                const nh_qc_opts *opts, nh_qc_done_fn done, void *user,
                                nh_error *err);

/** An owned copy of a quorum call's outcome. Release with nh_qc_outcome_free(). */
typedef struct nh_qc_outcome {
    uint64_t seq;           /**< the call's message_seq_no */
    nh_buf value;           /**< the quorum's value */
    nh_node_reply *replies; /**< owned copies (payloads owned too) */
    size_t n_replies;       /**< number of replies */
    size_t n_node_errors;   /**< replies that are errors */
} nh_qc_outcome;

/** Frees an outcome's copies. Accepts NULL. */
NH_API void nh_qc_outcome_free(nh_qc_outcome *o);

/**
 * Blocking quorum call (not on the owner thread: NH_FAILED_PRECONDITION there). On success
 * returns 0 with *out filled (when out is not NULL); on failure -1 with err set and *out still
 * filled with what arrived (so the failed nodes can be inspected).
 */
NH_API int nh_quorum_call(nh_config *cfg, const char *method, const void *req, size_t len,
                          const nh_qc_opts *opts, nh_qc_outcome *out, nh_error *err);

/** A running quorum call that other threads can wait for (Gorums' Async). */
typedef struct nh_qc_future nh_qc_future;

/**
 * Starts a quorum call and returns a future. The request is handed to the owner thread before
 * this returns, so calls started in a row from one thread are sent in that order. Any thread.
 */
NH_API int nh_quorum_call_start(nh_config *cfg, const char *method, const void *req, size_t len,
                                const nh_qc_opts *opts, nh_qc_future **out, nh_error *err);

/** True once the call finished. Any thread. */
NH_API bool nh_qc_future_done(nh_qc_future *f);

/**
 * Waits for the call (not on the owner thread), then copies its outcome into *out (if not NULL)
 * and its error into *err. Returns 0 on success, -1 on failure. May be called more than once.
 */
NH_API int nh_qc_future_wait(nh_qc_future *f, nh_qc_outcome *out, nh_error *err);

/** Releases a future. The call itself runs to its end. Accepts NULL. */
NH_API void nh_qc_future_free(nh_qc_future *f);

/**
 * A configuration without the nodes that failed in a quorum call's outcome (all failed nodes,
 * skipped ones excluded). An outcome without errors removes nothing.
 */
NH_API nh_config *nh_config_without_errors(const nh_config *cfg, const nh_qc_outcome *o);

/** Completion of a multicast: err is NH_OK, or NH_ERR_SEND_FAILURE listing the nodes the
 * request could not be handed to. Runs once on the owner thread. */
typedef void (*nh_mc_done_fn)(const nh_error *err, void *user);

/**
 * Multicast: a one-way request to every node of cfg with one shared message_seq_no (per-node
 * mapping applies; skipped nodes get nothing). With done, it runs when every send was confirmed
 * or failed; with done NULL it is fire-and-forget and leaves nothing pending. Any thread.
 */
NH_API int nh_multicast_async(nh_config *cfg, const char *method, const void *req, size_t len,
                              const nh_qc_opts *opts, nh_mc_done_fn done, void *user,
                              nh_error *err);

/** Blocking multicast: waits for the send confirmations. Not on the owner thread. */
NH_API int nh_multicast(nh_config *cfg, const char *method, const void *req, size_t len,
                        const nh_qc_opts *opts, nh_error *err);

/** A correctable call (Gorums' Correctable): a level that rises with each successful reply. */
typedef struct nh_correctable nh_correctable;

/** Called on the owner thread each time the level rises and once at the end (done true). */
typedef void (*nh_level_fn)(int level, const uint8_t *value, size_t len, bool done,
                            const nh_error *err, void *user);

/**
 * Starts a correctable call: every successful reply, from any node, raises the level by one
 * (the level is the total number of successes) and becomes the current value. The call ends
 * when the level reaches opts->quorum.threshold (default: the configuration size), at its
 * timeout or cancellation (then "incomplete" unless the threshold was reached), or, for a
 * non-streaming call, when every node answered. streaming: servers may send several replies per
 * request (nh_ctx_send()). on_level may be NULL. Returns 0 with *out (may be NULL if not wanted),
 * or -1 with err.
 */
NH_API int nh_correctable_start(nh_config *cfg, const char *method, const void *req, size_t len,
                                const nh_qc_opts *opts, bool streaming, nh_level_fn on_level,
                                void *user, nh_correctable **out, nh_error *err);

/** The current level (-1 before any reply), a copy of the current value (if value not NULL),
 * and whether the call is done; the call's error goes to *err when done. Any thread. */
NH_API int nh_correctable_get(nh_correctable *c, nh_buf *value, bool *done, nh_error *err);

/** Waits until the level is at least `level` or the call ended (not on the owner thread).
 * Returns the level reached. */
NH_API int nh_correctable_watch(nh_correctable *c, int level);

/** Releases the handle; the call itself runs to its end. Accepts NULL. */
NH_API void nh_correctable_free(nh_correctable *c);

#ifdef __cplusplus
}
#endif
#endif
