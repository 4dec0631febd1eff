/* Private: the server, dispatch endpoints, server contexts and the inbound manager. */
#ifndef NH_SERVER_SERVER_IMPL_H
#define NH_SERVER_SERVER_IMPL_H

#include "core/runtime_impl.h"
#include "server/methods.h"
#include "transport/server.h"
#include "wire/codec.h"

#include <nodehost/config.h>
#include <nodehost/server.h>

struct nh_node;
struct nh_inbound;

struct nh_server {
    nh_runtime *rt;
    nh_tp_server *tp;
    nh_method_table methods;
    size_t max_inbox;
    size_t max_queued_reply_bytes;   /* per accepted stream (default applied) */
    uint32_t slow_reader_timeout_ms; /* over that bound for this long: the stream ends */
    bool stopped;
    struct nh_server_stream *streams; /* accepted streams (for stop) */
    struct nh_server *next, *prev;    /* the runtime's list */
    struct nh_inbound *inbound;       /* peers and clients (NULL without node_id/peers) */
    nh_config *outbound;              /* the peers this node dials (dial_peers) */
    struct nh_tls *tls;               /* a reference; NULL: plaintext */
};

/* A dispatch endpoint: where requests of one stream are ordered and handed to handlers, and
 * where their replies go. Three kinds: an accepted server stream (the transport's events come
 * here), the back-channel of an outbound stream (server-initiated requests that arrive at a
 * node we dialed), and the in-process endpoint of the self node. Reference counted: its
 * creator and every open context hold a reference. */
typedef struct nh_server_stream {
    nh_runtime *rt;
    nh_server *srv;             /* handlers of this server (NULL: the runtime's back-channel
                                   handlers, or none once the server stopped) */
    bool backchannel;           /* look handlers up as a back-channel */
    nh_tp_stream *tp;           /* where replies go; NULL once closed */
    struct nh_node *local_node; /* self endpoint: replies go to this node's router */
    struct nh_node *peer;       /* accepted stream of a tracked peer (a reference) */
    nh_peer_kind peer_kind;
    uint32_t peer_id;
    int refs;
    nh_metadata *md; /* owned copies of the stream headers */
    size_t md_count;
    char *peer_addr;
    struct nh_identity *caller; /* the peer's verified certificate identity (a reference) */
    char *self_identity;        /* NH_PEER_SELF with TLS: this node's own identity */
    nh_wire_msg **inbox;        /* requests waiting for the stream's order (ring) */
    size_t inbox_head, inbox_len, inbox_cap;
    size_t max_inbox;
    struct nh_server_ctx *holder; /* the context holding the order, if any */
    int open_ctx;                 /* contexts not yet ended */
    bool pumping, recv_ended, paused;
    bool reply_blocked; /* too many reply bytes unsent: dispatch and reading wait */
    struct nh_server_stream *next, *prev; /* the server's list (accepted streams) */
} nh_server_stream;

struct nh_server_ctx {
    struct nh_server_ctx *next, *prev; /* the runtime's list of open contexts */
    nh_server_stream *st;
    nh_wire_msg *msg;
    bool in_handler, deferred, ended, released;
    nh_ctx_end_fn on_end; /* nh_ctx_on_end(), run by ctx_free */
    void *on_end_arg;
    struct nh_method_stats *stats; /* request metrics of the method (NULL: not counted) */
    int64_t start_ns;              /* when the handler started (counted calls) */
    nh_code end_code;              /* the status the call ended with */
    bool access;                   /* sampled for the access log */
};

/** Accept callback for the transport: classifies the stream and sets up its endpoint. */
void nh_server_accept(void *user, nh_tp_stream *s, const nh_md_view *md, size_t n);

/** A new endpoint (owner thread), reference held by the caller. md is copied. */
nh_server_stream *nh_endpoint_new(nh_runtime *rt, nh_server *srv, bool backchannel,
                                  nh_tp_stream *tp, struct nh_node *local_node, nh_peer_kind kind,
                                  uint32_t peer_id, const nh_metadata *md, size_t n,
                                  const char *peer_addr);

/** A request for the endpoint (takes ownership of m): queued in order, then dispatched. */
void nh_endpoint_message(nh_server_stream *st, nh_wire_msg *m);

/** The endpoint's stream is gone: queued requests are dropped, replies from now on are dropped,
 * and the creator's reference is released. */
void nh_endpoint_close(nh_server_stream *st);

/** After the owner loop ended: frees contexts that were never ended (deferred calls whose
 * handler never answered). */
void nh_server_free_remaining(nh_runtime *rt);

/** Stops the server (owner thread) and removes it from the runtime. */
void nh_server_stop_internal(nh_server *srv);

/* ---- the inbound manager (inbound.c) ------------------------------------------------------ */

/** Builds the inbound manager of srv from its options: validates node_id and peers (IDs 1 to
 * 2^20-1, unique IDs and addresses), pre-creates the known peers and the self node. Owner
 * thread. Returns 0, -1 with err. */
int nh_inbound_new(nh_server *srv, const nh_server_opts *opts, nh_error *err);

/** Closes every tracked node and wakes waiters (owner thread). */
void nh_inbound_free(struct nh_inbound *ib);

/**
 * Classifies a new stream by its headers (spec 1.6). On success *peer is the tracked node (a
 * new reference; NULL for an untracked regular client), *kind and *id say who it is. Returns
 * -1 to refuse the stream, with *code and why set (own ID claimed, client IDs exhausted, too
 * many clients, too many client-peer streams on the stream's connection). O(log n) amortised
 * in the number of connected peers; the change is notified at the end of the loop's turn.
 */
int nh_inbound_accept(struct nh_inbound *ib, nh_tp_stream *tp, const nh_md_view *md, size_t n,
                      struct nh_node **peer, nh_peer_kind *kind, uint32_t *id, nh_code *code,
                      char *why, size_t why_len);

/** A tracked peer's stream ended (owner thread). O(log n) amortised, as nh_inbound_accept. */
void nh_inbound_closed(struct nh_inbound *ib, struct nh_node *peer, nh_peer_kind kind,
                       nh_tp_stream *tp);

/** The current Config (client false) or ClientConfig (true): a new reference, sorted by ID,
 * exactly the connected set of now. Any thread: when the set changed since the last snapshot,
 * the caller builds the new one under the manager's mutex (O(n)); otherwise O(1). */
nh_config *nh_inbound_snapshot(struct nh_inbound *ib, bool client);

/** The membership (self and every known peer, connected or not): a new reference. Any
 * thread. */
nh_config *nh_inbound_members(struct nh_inbound *ib);

/** Waits for cond on Config or ClientConfig (see nh_server_wait_config). */
int nh_inbound_wait(struct nh_inbound *ib, bool client, nh_config_cond_fn cond, void *user,
                    uint32_t timeout_ms, nh_error *err);

#endif
