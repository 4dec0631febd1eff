/* Private: what a node's router holds, and what the runtime can cancel.
 *
 * A pending leg is one node's part of a call: an RPC has one, a quorum call one per node. The
 * node drives it: on_reply when a response with its seq arrives, on_fail when the node cannot
 * deliver one (stream broken, node closed, not connected), on_sent when a tagged send finished.
 * Owner thread only. */
#ifndef NH_CALL_PENDING_H
#define NH_CALL_PENDING_H

#include "wire/codec.h"

#include <nodehost/status.h>

#include <stdbool.h>
#include <stdint.h>

struct nh_node;
typedef struct nh_pending nh_pending;

/** The callbacks of a pending leg (owner thread). */
typedef struct nh_pending_ops {
    void (*on_reply)(nh_pending *p, struct nh_node *n, const nh_wire_msg *m);
    void (*on_fail)(nh_pending *p, struct nh_node *n, nh_code code, nh_err_kind kind,
                    const char *text);
    void (*on_sent)(nh_pending *p, struct nh_node *n, bool ok);
} nh_pending_ops;

/** One node's part of a call. Embedded in the call's own structure. */
struct nh_pending {
    const nh_pending_ops *ops;
    uint64_t seq;    /* the call's message_seq_no */
    int64_t sent_ns; /* set by the node when the request is written (latency) */
    bool in_router;  /* registered in the node's router */
    bool streaming;  /* stays in the router after a reply (correctable) */
};

/** A running call the runtime can end by seq (cancellation tokens). */
typedef struct nh_running {
    void (*cancel)(struct nh_running *r);
} nh_running;

#endif
