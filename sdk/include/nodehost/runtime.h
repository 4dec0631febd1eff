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
    unsigned threads;        /**< event loops (each a thread with its own completion queue):
                                  1 runs everything on the owner thread; N > 1 adds N - 1
                                  transport loops that run the gRPC side of the streams
                                  (spread round robin) while handlers, callbacks and calls stay
                                  on the owner thread. 0 means the environment variable
                                  NH_THREADS when set, else 1. At most NH_MAX_THREADS. */
} nh_runtime_opts;

/** The largest nh_runtime_opts.threads. */
#define NH_MAX_THREADS 64

/** Creates a runtime and starts its owner thread. Returns 0, or -1 with err set. */
NH_API int nh_runtime_new(const nh_runtime_opts *opts, nh_runtime **out, nh_error *err);

/**
 * Stops a runtime: its servers stop accepting and cancel their streams, its nodes close and
 * fail their pending calls with "node closed", then the owner thread exits and every resource
 * is freed. Must not be called on the owner thread. Accepts NULL.
 */
NH_API void nh_runtime_free(nh_runtime *rt);

/** The runtime's event loops: the owner loop plus its transport loops (nh_runtime_opts.threads
 * as resolved). Any thread. */
NH_API unsigned nh_runtime_threads(const nh_runtime *rt);

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

/**
 * The owner of code that callbacks run (for hosts that unload code: nodehost's plugin
 * generations). hold and release are called from any thread, without any SDK lock held; they
 * must not block.
 *
 * A host marks the thread that runs unloadable code with nh_scope_enter(). The SDK then tracks
 * every piece of work that keeps a function pointer of that code for later:
 *
 * - Capture: each SDK entry point that keeps a caller's function pointer beyond the call reads
 *   nh_scope_current() at the moment it is called, on whichever thread. These are
 *   nh_runtime_post() and nh_runtime_run_blocking() (fn), nh_ctx_offload() (fn),
 *   nh_rpc_async() (done), nh_unicast_async() (done, when not NULL), nh_quorum_call_async()
 *   (done, request and response mappings, custom quorum function), nh_quorum_call_start() and
 *   the blocking nh_quorum_call() / nh_multicast() (mappings and custom quorum function, when
 *   present: a future alone holds nothing), nh_multicast_async() (done when not NULL,
 *   mappings) and nh_correctable_start() (on_level, mappings). Work without any such function
 *   pointer (a fire-and-forget unicast, a future without mappings) captures nothing.
 * - Hold: hold(arg) is called once when the work is accepted. When the call refuses with -1,
 *   nothing stays held: either hold was not called, or (when the runtime began stopping while
 *   the work was being handed over) release was called before the function returned.
 * - Run: each callback of that work runs with the captured scope current (a callback of work
 *   that captured no scope runs with none), and the previous scope is restored afterwards.
 * - Release: release(arg) is called exactly once per hold, after the work's last callback
 *   returned, or when the work ends without running its callbacks (runtime stopping, call
 *   cancelled, node closed, out of memory). It runs on the owner thread, a worker thread, or
 *   the thread calling nh_runtime_free() for work dropped at shutdown; never with the released
 *   scope current (it may itself post work, for example with nh_runtime_post()).
 *
 * Not tracked: handlers (nh_server_handle(), nh_runtime_handle(); a host enters its own scope
 * in its handler), nh_ctx_on_end(), on_config_change, and nh_server_wait_config()'s condition
 * (run on the caller's thread, during the call).
 *
 * The SDK stores only the pointer: the nh_scope must stay valid until its last release.
 */
typedef struct nh_scope {
    void (*hold)(void *arg);    /**< one more piece of work of this scope is pending */
    void (*release)(void *arg); /**< one piece of work ended: its last callback returned */
    void *arg;                  /**< passed to both */
} nh_scope;

/** Makes s the calling thread's current scope (NULL: none) and returns the previous one, to be
 * restored with another nh_scope_enter(). */
NH_API const nh_scope *nh_scope_enter(const nh_scope *s);

/** The calling thread's current scope, or NULL. */
NH_API const nh_scope *nh_scope_current(void);

#ifdef __cplusplus
}
#endif
#endif
