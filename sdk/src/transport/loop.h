/* The owner-thread engine: one gRPC completion queue and one libuv loop driven by one thread
 * (docs/architecture.md, "Threads and ownership"). Other threads hand it work with
 * nh_tp_loop_post(), which wakes the thread at once. */
#ifndef NH_TRANSPORT_LOOP_H
#define NH_TRANSPORT_LOOP_H

#include <nodehost/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct nh_tp_loop nh_tp_loop;

/** Mutual exclusion around a tag's function, for state that another thread also touches
 * (a relayed stream's back, transport/relay.c): enter before fn runs, leave after it returned.
 * The guard must outlive the tag (fn may free the tag's memory). */
typedef struct nh_tp_guard {
    void (*enter)(struct nh_tp_guard *g);
    void (*leave)(struct nh_tp_guard *g);
} nh_tp_guard;

/** A completion-queue tag: every gRPC operation the transport starts carries one. fn runs on
 * the owner thread when the operation completes; ok is the completion's success flag. guard,
 * when not NULL, is entered around fn. */
typedef struct nh_tp_tag {
    void (*fn)(struct nh_tp_tag *tag, bool ok);
    nh_tp_guard *guard;
} nh_tp_tag;

/** Creates the loop (completion queue, libuv loop, wake-up machinery). Calls grpc_init(). The
 * loop runs only inside nh_tp_loop_run(). NULL with err set on failure.
 * polls false: the completion queue does not poll (GRPC_CQ_NON_POLLING): the thread running the
 * loop waits on a condition variable and never runs gRPC's network I/O; other, polling loops
 * must exist (an owner loop with transport loops, see nh_tp_loop_set_io()). */
nh_tp_loop *nh_tp_loop_new(size_t max_message_size, bool polls, nh_error *err);

/** Runs the loop on the calling thread (which becomes the owner) until nh_tp_loop_quit() was
 * called and every started operation has completed. */
void nh_tp_loop_run(nh_tp_loop *l);

/** Asks nh_tp_loop_run() to return once no operation is outstanding. Owner thread only. */
void nh_tp_loop_quit(nh_tp_loop *l);

/** Frees the loop after nh_tp_loop_run() returned (or if it never ran). Calls grpc_shutdown(). */
void nh_tp_loop_free(nh_tp_loop *l);

/** Queues fn(arg) to run on the owner thread, in order, and wakes it. Any thread. Returns -1
 * when the loop no longer accepts work (after nh_tp_loop_close_posts()). */
int nh_tp_loop_post(nh_tp_loop *l, void (*fn)(void *), void *arg);

/** nh_tp_loop_post() that also works after nh_tp_loop_close_posts(): for a transport loop's
 * stream events, which the owner loop must receive until its last relayed stream ended (it
 * keeps running until then, see nh_tp_loop_front_begin()). Any thread. */
int nh_tp_loop_post_always(nh_tp_loop *l, void (*fn)(void *), void *arg);

/** Gives the owner loop home n transport loops (the array stays the caller's and must outlive
 * home's streams): from now on nh_tp_loop_pick() spreads new streams over them. Called once,
 * before any stream exists. */
void nh_tp_loop_set_io(nh_tp_loop *home, nh_tp_loop **io, size_t n);

/** The loop a new stream of home runs on: home itself when it has no transport loops, else the
 * next transport loop, round robin. Owner thread of home. */
nh_tp_loop *nh_tp_loop_pick(nh_tp_loop *home);

/** A relayed stream's front (transport/relay.c) begins / ends on the owner loop l: run() does
 * not return while one is open. Owner thread. */
void nh_tp_loop_front_begin(nh_tp_loop *l);
void nh_tp_loop_front_end(nh_tp_loop *l);

/** False once posts are refused (nh_tp_loop_close_posts()). A hint: a post may still be refused
 * right after it said true. Any thread. */
bool nh_tp_loop_accepting(const nh_tp_loop *l);

/** Refuses posts from now on. Returns after the already-queued tasks are taken (they still
 * run). Any thread. */
void nh_tp_loop_close_posts(nh_tp_loop *l);

/** True on the owner thread. */
bool nh_tp_loop_on_owner(const nh_tp_loop *l);

/** Sends a relayed stream's front may start itself in one iteration of the owner loop (one
 * event or one batch of posts); the rest are handed to the stream's transport loop. */
#define NH_TP_DIRECT_SENDS 16

/** True while fewer than NH_TP_DIRECT_SENDS sends were started directly by the owner thread in
 * the loop's current iteration, and counts this one (transport/relay.c). Owner thread. */
bool nh_tp_loop_take_direct_send(nh_tp_loop *l);

/** The shortest turn of the owner loop, in ms: turn-end hooks run at most this often. */
#define NH_TP_TURN_MS 1

/**
 * A function run once at the end of the owner loop's current turn (nh_tp_loop_at_turn_end), to
 * do once what many events of one turn asked for (coalesced notifications). Embed it in the
 * owner's structure, zero-initialised, and set fn; recover the structure from the pointer.
 */
typedef struct nh_tp_turn_hook {
    void (*fn)(struct nh_tp_turn_hook *h);
    struct nh_tp_turn_hook *next; /* the loop's list (owner thread) */
    bool scheduled;
} nh_tp_turn_hook;

/**
 * Runs h->fn(h) once at the end of the current turn. Turns last NH_TP_TURN_MS (1 ms): the
 * hooks scheduled meanwhile run together after the event being handled when the previous run
 * is at least that long ago, so at once when the loop was quiet, and then at most once per
 * millisecond however many events arrive (an idle loop wakes up for them). Scheduling a hook
 * that is already scheduled does nothing; a hook scheduled from inside a hook runs at the end
 * of the next turn. Hooks still scheduled when the loop ends never run. Owner thread only.
 */
void nh_tp_loop_at_turn_end(nh_tp_loop *l, nh_tp_turn_hook *h);

/** Unschedules h (nothing when it is not scheduled). Owner thread only. */
void nh_tp_loop_cancel_turn_end(nh_tp_loop *l, nh_tp_turn_hook *h);

/** The libuv loop (owner thread only). */
uv_loop_t *nh_tp_loop_uv(nh_tp_loop *l);

/** Largest message size sent or received. */
size_t nh_tp_loop_max_message(const nh_tp_loop *l);

/* For transport files: count an operation started / completed (keeps run() alive). */
void nh_tp_loop_op_begin(nh_tp_loop *l);
void nh_tp_loop_op_end(nh_tp_loop *l);

/** Operations started on the completion queue and not completed yet, those of l's transport
 * loops included. Any thread (tests and diagnostics: every pending operation costs each
 * completion of its queue a scan in Debian's libgrpc). */
long nh_tp_loop_pending_ops(const nh_tp_loop *l);

/* For transport files: the completion queue (a grpc_completion_queue*). */
void *nh_tp_loop_cq(nh_tp_loop *l);

/* For transport/server.c: registers home's completion queue with a gRPC server (a
 * grpc_server*, before it starts), and those of its transport loops when home's does not poll:
 * a non-polling owner queue needs polling queues behind the server's listeners. */
void nh_tp_loop_register_server(nh_tp_loop *home, void *server);

#endif
