/* Private: an outbound node, its stream life cycle and its router. Owner thread only, except
 * the atomics read by the public accessors. */
#ifndef NH_NODE_NODE_IMPL_H
#define NH_NODE_NODE_IMPL_H

#include "call/call.h"
#include "core/runtime_impl.h"
#include "node/backoff.h"
#include "node/router.h"
#include "transport/channel.h"

#include <nodehost/node.h>

#include <pthread.h>
#include <uv.h>

struct nh_node {
    nh_runtime *rt;
    uint32_t id;
    char *address;
    nh_metadata *md; /* owned copies of the stream headers */
    size_t md_count;
    nh_tp_channel *channel;
    nh_tp_stream *stream; /* NULL while waiting to reconnect */
    bool stream_ready;    /* the current stream proved the connection */
    nh_router router;
    nh_backoff backoff;
    uv_timer_t retry_timer;
    bool retry_open;
    bool closing;
    bool user_ref;               /* the handle returned by nh_node_open is still owned */
    int refs;                    /* atomic: user handle + running calls + stream + timer handle */
    struct nh_node *next, *prev; /* the runtime's list */

    /* read from any thread */
    int64_t latency_ns; /* atomic; -1 until measured */
    int connected;      /* atomic */
    size_t pending;     /* atomic mirror of the router size */
    pthread_mutex_t err_mu;
    nh_error last_err;
    bool has_err;
};

/** Hands a started call to the node: written to the stream, or failed at once when the node is
 * closed or down. */
void nh_node_submit(struct nh_node *n, nh_call *c);

/** A call of this node completed or timed out: forget it (router, send queue). */
void nh_node_forget(struct nh_node *n, nh_call *c);

/** Reference counting of nodes by calls. */
void nh_node_ref(struct nh_node *n);
void nh_node_unref(struct nh_node *n);

/** Closes the node on the owner thread; drop_user also releases the user's handle. */
void nh_node_close_internal(struct nh_node *n, bool drop_user);

/** "node <id> (<address>)", for error messages. */
void nh_node_label(const struct nh_node *n, char *buf, size_t len);

#endif
