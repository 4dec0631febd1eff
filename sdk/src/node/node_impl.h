/* Private: an outbound node, its stream life cycle and its router. Owner thread only, except
 * the atomics read by the public accessors. */
#ifndef NH_NODE_NODE_IMPL_H
#define NH_NODE_NODE_IMPL_H

#include "call/pending.h"
#include "core/runtime_impl.h"
#include "node/backoff.h"
#include "node/router.h"
#include "transport/channel.h"

#include <nodehost/node.h>

#include <pthread.h>
#include <uv.h>

/* What a node is to this runtime. */
typedef enum nh_node_kind {
    NH_NODE_OUTBOUND = 0, /* a peer we dial: our stream, reconnected in the background */
    NH_NODE_INBOUND = 1,  /* a peer that dialed us: its accepted stream, when connected */
    NH_NODE_LOCAL = 2,    /* this node itself: dispatched in process */
} nh_node_kind;

struct nh_server;
struct nh_server_stream;

struct nh_node {
    nh_runtime *rt;
    nh_node_kind kind;
    struct nh_server_stream *backchannel; /* OUTBOUND: serves server-initiated requests */
    struct nh_server_stream *local;       /* LOCAL: the in-process endpoint */
    uint32_t id;
    char *address;
    nh_metadata *md; /* owned copies of the stream headers */
    size_t md_count;
    nh_tp_channel *channel;
    struct nh_tls *tls;   /* OUTBOUND: TLS credentials (a reference), NULL: plaintext */
    char *expect;         /* OUTBOUND with tls: the identity the server must prove (NULL: any) */
    uint64_t channel_gen; /* the tls generation the channel was made with */
    bool by_name;         /* OUTBOUND: the address's host is a name, not an IP literal */
    bool stale_channel;   /* OUTBOUND by name: the next stream gets a new channel (a fresh
                             resolution: the peer may have moved to another address) */
    bool redialing;       /* OUTBOUND by name: the current attempt was cancelled to dial again
                             at once (nh_node_reconnect_now) */
    int64_t attempt_ns;   /* OUTBOUND: when the current stream was opened (nh_now_ns) */
    char *identity;       /* nh_node_identity(): set once (atomic pointer), then immutable */
    nh_tp_stream *stream; /* NULL while waiting to reconnect */
    bool stream_ready;    /* the current stream proved the connection */
    nh_router router;
    nh_backoff backoff;
    uint32_t keepalive_time_ms, keepalive_timeout_ms; /* OUTBOUND: as opened */
    uv_timer_t retry_timer;
    bool retry_open;
    bool closing;
    bool user_ref;               /* the handle returned by nh_node_open is still owned */
    bool listed;                 /* in the runtime list of nodes not yet freed */
    int refs;                    /* atomic: user handle + running calls + stream + timer handle */
    struct nh_node *next, *prev; /* the runtime's list */

    /* read from any thread */
    int64_t latency_ns; /* atomic; -1 until measured */
    int connected;      /* atomic */
    uint64_t breaks;    /* atomic: connected streams that broke (nh_node_breaks) */
    size_t pending;     /* atomic mirror of the router size */
    pthread_mutex_t err_mu;
    nh_error last_err;
    bool has_err;
};

/** Sets the node's identity once (later calls are ignored). Any thread. */
void nh_node_set_identity(struct nh_node *n, const char *identity);

/** nh_node_send() flags. */
#define NH_SEND_EXPECT_REPLY 1u /* register the leg in the router under p->seq */
#define NH_SEND_CONFIRM      2u /* tag the send: p->ops->on_sent follows */

/**
 * Writes msg (the node takes over the reference) to the node's current stream for leg p. With
 * NH_SEND_EXPECT_REPLY the leg is registered in the router first. Returns 0, or -1 when the node
 * is closed or not connected: then nothing is registered, and *why says why (code, kind and a
 * message without the node label).
 */
int nh_node_send(struct nh_node *n, nh_bytes *msg, nh_pending *p, unsigned flags, nh_error *why);

/** The leg ended for another reason (timeout, cancel, quorum reached): removes it from the
 * router and its not-yet-started tagged sends from the queue. Returns how many tagged sends were
 * removed (their on_sent will not come). */
size_t nh_node_forget(struct nh_node *n, nh_pending *p);

/** True once the node is closing (its calls end with "node closed"). */
bool nh_node_closing(const struct nh_node *n);

/** Reference counting of nodes by calls. */
void nh_node_ref(struct nh_node *n);
void nh_node_unref(struct nh_node *n);

/** Closes the node on the owner thread; drop_user also releases the user's handle. */
void nh_node_close_internal(struct nh_node *n, bool drop_user);

/** Delivers a response (bit 63 clear on our outbound stream, or set on a tracked peer's
 * stream) to the pending leg with its seq; unknown seqs are dropped. Owner thread. */
void nh_node_deliver(struct nh_node *n, const nh_wire_msg *m);

/** A tracked peer (pre-created, or a client peer) that is reached over its accepted stream. */
struct nh_node *nh_node_new_inbound(nh_runtime *rt, uint32_t id, const char *address);

/** The self node of a server: calls to it are dispatched in process to srv's handlers. */
struct nh_node *nh_node_new_local(nh_runtime *rt, uint32_t id, const char *address,
                                  struct nh_server *srv);

/** Binds a tracked peer to its (new) accepted stream; an old stream's pending calls fail. */
void nh_node_attach(struct nh_node *n, nh_tp_stream *tp);

/** The accepted stream tp ended: if it is still the peer's stream, the peer is detached and its
 * pending calls fail. Returns whether it was (a replaced stream's end changes nothing). */
bool nh_node_detach(struct nh_node *n, nh_tp_stream *tp);

/** An outbound node that is not connected dials again at once: its retry timer is cancelled,
 * its backoff (and gRPC's connect backoff) reset and a stream opened now; an attempt under way
 * goes on without backoff. For a peer known to be up again (its own stream just arrived).
 * Connected, closing or other kinds of nodes: nothing. Owner thread. */
void nh_node_reconnect_now(struct nh_node *n);

/** After the owner loop ended: frees the nodes whose handles were never released. */
void nh_node_free_remaining(nh_runtime *rt);

/** "node <id> (<address>)", for error messages. */
void nh_node_label(const struct nh_node *n, char *buf, size_t len);

#endif
