/* Private: one running call to one node (RPC or unicast), from start to completion. Owner
 * thread only, except where noted. */
#ifndef NH_CALL_CALL_H
#define NH_CALL_CALL_H

#include "call/pending.h"
#include "core/runtime_impl.h"
#include "util/bytes.h"

#include <nodehost/call.h>

#include <uv.h>

typedef enum nh_call_kind {
    NH_CALL_RPC = 0,     /* request/response; registered in the node's router */
    NH_CALL_UNICAST = 1, /* one-way; done (if any) runs at the send confirmation */
} nh_call_kind;

typedef struct nh_call {
    nh_pending leg; /* this call's entry in the node's router / send queue */
    nh_running run; /* cancellation by seq */
    nh_runtime *rt;
    struct nh_node *node; /* holds a node reference */
    uint64_t seq;
    nh_call_kind kind;
    nh_bytes *msg; /* the encoded request, until handed to the stream */
    nh_reply_fn done;
    void *user;
    const nh_scope *scope; /* held for done until it returned (or the call is dropped) */
    nh_cancel *cancel;
    uint32_t timeout_ms;
    int64_t sent_ns; /* when the request was handed to the stream */
    uv_timer_t timer;
    bool timer_open;
    bool completed;
    bool starting; /* inside nh_call_start() on the owner thread */
    int refs;      /* 1 until completed, +1 per tagged send with the stream,
                      +1 while the timer handle is open */
} nh_call;

/** Creates a call (any thread). Takes over the caller's reference to msg. */
nh_call *nh_call_new(nh_runtime *rt, struct nh_node *node, nh_call_kind kind, uint64_t seq,
                     nh_bytes *msg, const nh_call_opts *opts, nh_reply_fn done, void *user);

/** Starts the call on the owner thread: registers it, arms its timeout and cancellation, and
 * hands it to its node. */
void nh_call_start(nh_call *c);

/** Completes the call with a reply (first completion wins; later ones are ignored). */
void nh_call_complete(nh_call *c, const nh_reply *r);

/** Completes the call with an error (printf-style message, prefixed with the node). */
void nh_call_fail(nh_call *c, nh_code code, nh_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** Takes / drops a reference (frees at zero). */
void nh_call_ref(nh_call *c);
void nh_call_unref(nh_call *c);

/** Cancels the running call with this seq, if any (owner thread). */
void nh_call_cancel_seq(nh_runtime *rt, uint64_t seq);

/** Reports a seq as running (rt->calls) so that nh_call_cancel_seq() finds it. */
int nh_running_add(nh_runtime *rt, uint64_t seq, nh_running *r);

/** Forgets a running seq. */
void nh_running_remove(nh_runtime *rt, uint64_t seq);

/** Cancellation-token bookkeeping (any thread; called by calls). */
bool nh_cancel_register(nh_cancel *c, nh_runtime *rt, uint64_t seq);
void nh_cancel_unregister(nh_cancel *c, nh_runtime *rt, uint64_t seq);

#endif
