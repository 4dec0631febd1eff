/* Private: the runtime object shared by the SDK's internal modules. */
#ifndef NH_CORE_RUNTIME_IMPL_H
#define NH_CORE_RUNTIME_IMPL_H

#include "core/workers.h"
#include "server/methods.h"
#include "transport/loop.h"
#include "util/u64map.h"

#include <nodehost/runtime.h>

#include <pthread.h>

struct nh_node;
struct nh_server;
struct nh_call;
struct nh_server_ctx;
struct nh_timer;

struct nh_runtime {
    nh_tp_loop *loop; /* the owner loop */
    pthread_t thread;
    bool thread_started;
    nh_tp_loop **io;      /* transport loops (threads - 1 of them; docs/architecture.md) */
    pthread_t *io_thread; /* their threads */
    size_t io_count;
    char *name;
    size_t max_message;
    uint64_t next_seq;          /* atomic; client-initiated message_seq_no, first is 1 */
    uint64_t next_server_seq;   /* atomic; server-initiated: bit 63 | n, first n is 1 */
    nh_method_table bc_methods; /* back-channel handlers (nh_runtime_handle), owner thread */
    nh_u64map calls;       /* seq -> nh_running* of running calls that have a cancellation token */
    struct nh_node *nodes; /* open nodes (owner thread), linked through node->next */
    struct nh_server *servers;      /* running servers (owner thread), linked via server->next */
    struct nh_server_ctx *open_ctx; /* server contexts not yet freed (owner thread) */
    struct nh_timer *timers;        /* armed timers (owner thread) */
    bool stopping;                  /* owner thread */
    nh_workers workers;             /* blocking work (nh_runtime_run_blocking) */
};

/** Runs fn(arg) on the owner thread and waits for it (directly when already there). Returns 0,
 * or -1 when the runtime no longer accepts work. */
int nh_runtime_sync(nh_runtime *rt, void (*fn)(void *), void *arg);

/** nh_runtime_post() for the SDK's own tasks: never captures the caller's scope (work that
 * carries a user callback holds its scope itself). Any thread. Returns 0, or -1 once stopping. */
int nh_runtime_post_internal(nh_runtime *rt, nh_task_fn fn, void *arg);

/** False once the runtime refuses posts (a hint, see nh_tp_loop_accepting()). Any thread. */
bool nh_runtime_accepting(const nh_runtime *rt);

/** nh_runtime_handle() whose user data the runtime owns: user_free(user) runs when the method
 * is registered again on rt or rt is freed (nh_methods_put()). On -1 user is still the
 * caller's. Any thread. */
int nh_runtime_handle_owned(nh_runtime *rt, const char *method, nh_handler_fn fn, void *user,
                            void (*user_free)(void *user), nh_error *err);

/** A fresh client-initiated sequence number. Any thread. */
uint64_t nh_runtime_next_seq(nh_runtime *rt);

/** A fresh server-initiated sequence number (bit 63 set, spec 1.5). Any thread. */
uint64_t nh_runtime_next_server_seq(nh_runtime *rt);

/** Stops every armed timer of rt (runtime stop, owner thread). */
void nh_timers_stop_all(nh_runtime *rt);

/* Lists kept for shutdown (owner thread). */
void nh_runtime_add_node(nh_runtime *rt, struct nh_node *n);
void nh_runtime_remove_node(nh_runtime *rt, struct nh_node *n);
void nh_runtime_add_server(nh_runtime *rt, struct nh_server *s);
void nh_runtime_remove_server(nh_runtime *rt, struct nh_server *s);

#endif
