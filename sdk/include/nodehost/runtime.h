/* nodehost: the runtime, one owner thread that runs a node's transport and event loop. */
#ifndef NODEHOST_RUNTIME_H
#define NODEHOST_RUNTIME_H

#include <nodehost/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A runtime owns one thread (the owner thread) that runs the gRPC completion queue and a libuv
 * loop together. Every server, node and call created on a runtime belongs to that thread:
 *
 * - handlers, reply callbacks and completion callbacks run on the owner thread and must not
 *   block;
 * - public functions may be called from any thread; from another thread they hand the work to
 *   the owner thread (and, where they return a result, wait for it);
 * - blocking calls (nh_rpc(), nh_unicast()) are refused on the owner thread with
 *   NH_FAILED_PRECONDITION: use the asynchronous forms there.
 */
typedef struct nh_runtime nh_runtime;

/** Default and largest accepted message size, as in gRPC and Gorums: 4 MiB. */
#define NH_DEFAULT_MAX_MESSAGE_SIZE (4u * 1024u * 1024u)

/** Options for nh_runtime_new(). Zero-initialise and set what you need. */
typedef struct nh_runtime_opts {
    const char *name;        /**< label used in logs and thread names (default "nodehost") */
    size_t max_message_size; /**< largest message sent or received; 0 means 4 MiB */
    unsigned workers;        /**< worker threads for blocking work (nh_runtime_run_blocking(),
                                  nh_ctx_offload()), started on first use; 0 means 4 */
} nh_runtime_opts;

/** Creates a runtime and starts its owner thread. Returns 0, or -1 with err set. */
NH_API int nh_runtime_new(const nh_runtime_opts *opts, nh_runtime **out, nh_error *err);

/**
 * Stops a runtime: its servers stop accepting and cancel their streams, its nodes close and
 * fail their pending calls with "node closed", then the owner thread exits and every resource
 * is freed. Must not be called on the owner thread. Accepts NULL.
 */
NH_API void nh_runtime_free(nh_runtime *rt);

/** The function type run by nh_runtime_post(). */
typedef void (*nh_task_fn)(void *arg);

/**
 * Runs fn(arg) on the owner thread, soon, in the order posted. Safe from any thread, including
 * the owner thread (then it runs after the current event). Returns 0, or -1 once the runtime is
 * stopping (fn is then not run).
 */
NH_API int nh_runtime_post(nh_runtime *rt, nh_task_fn fn, void *arg);

/**
 * Runs fn(arg) on one of the runtime's worker threads, in FIFO order across the pool. fn may
 * block and make blocking calls. Work still queued when the runtime is freed runs before
 * nh_runtime_free() returns. Any thread. Returns 0, or -1 once the runtime is stopping.
 */
NH_API int nh_runtime_run_blocking(nh_runtime *rt, nh_task_fn fn, void *arg);

/** True when the calling thread is the runtime's owner thread. */
NH_API bool nh_runtime_on_owner(const nh_runtime *rt);

/** The largest message size this runtime sends or accepts. */
NH_API size_t nh_runtime_max_message_size(const nh_runtime *rt);

#ifdef __cplusplus
}
#endif
#endif
