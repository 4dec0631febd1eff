/* nodehost: serving the Gorums protocol: handlers, the server context, ordering and release. */
#ifndef NODEHOST_SERVER_H
#define NODEHOST_SERVER_H

#include <nodehost/config.h>
#include <nodehost/runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A gRPC server accepting `/stream.Gorums/NodeStream` streams on a runtime. */
typedef struct nh_server nh_server;

/**
 * The context of one request being served. It is valid from the handler's start until the
 * call ends:
 * - when the handler returns, unless it called nh_ctx_defer();
 * - for a deferred call, at nh_ctx_reply(), nh_ctx_reply_error() or nh_ctx_finish().
 *
 * Per-stream ordering (Gorums' rule): the next request on the same stream is not handed to a
 * handler until this one returns (not deferred), replies, or calls nh_ctx_release().
 *
 * A deferred call that is still open when its runtime is freed is released with it: using the
 * context after nh_runtime_free() is invalid. A reply to a call whose stream has gone is dropped.
 */
typedef struct nh_server_ctx nh_server_ctx;

/** A request handler. Runs on the owner thread; must not block. */
typedef void (*nh_handler_fn)(nh_server_ctx *ctx, void *user);

/** Who sent a request (nh_ctx_peer_kind()). */
typedef enum nh_peer_kind {
    NH_PEER_REGULAR = 0, /**< a client without a gorums-node-id header, or with an unknown ID:
                              served, not tracked, cannot be called back */
    NH_PEER_KNOWN = 1,   /**< a known peer (its ID is in the server's peer list): in Config */
    NH_PEER_CLIENT = 2,  /**< a client peer (header value 0): in ClientConfig, ID >= 2^20 */
    NH_PEER_SELF = 3,    /**< this node itself, dispatched in process */
    NH_PEER_SERVER = 4,  /**< a node this runtime dialed, calling back over that stream
                              (a server-initiated request on a client back-channel) */
} nh_peer_kind;

/** Called on the owner thread after Config or ClientConfig changed, with the new snapshot
 * (borrowed: take nh_config_ref() to keep it). Never called under a lock. Changes are
 * coalesced: it is called once per configuration for all the changes since its last call, with
 * the snapshot of that moment: right after a change when the node was quiet, then at most once
 * per millisecond, and further apart when the calls are costly (with thousands of peers),
 * keeping them to about 5% of the owner thread and at most 100 ms apart. So many peers
 * arriving at once make a few calls, and a peer that came and went in between may show in
 * none. Waiters (nh_server_wait_config()) look again after it returned. */
typedef void (*nh_config_change_fn)(nh_config *cfg, bool client_config, void *user);

/** A condition on a configuration, for nh_server_wait_config(). Must not block. */
typedef bool (*nh_config_cond_fn)(const nh_config *cfg, void *user);

/** Default of nh_server_opts.max_queued_reply_bytes: 16 MiB per stream. */
#define NH_DEFAULT_MAX_QUEUED_REPLY ((size_t)16 << 20)
/** Default of nh_server_opts.slow_reader_timeout_ms: 30 s. */
#define NH_DEFAULT_SLOW_READER_MS 30000u
/** Default of nh_server_opts.max_clients_per_connection: 1000 (a tenth of the default
 * max_clients). */
#define NH_DEFAULT_MAX_CLIENTS_PER_CONNECTION 1000u

/** Options for nh_server_new(). Zero-initialise and set what you need. */
typedef struct nh_server_opts {
    const char *listen; /**< "host:port" to listen on ("127.0.0.1:0" picks a port) */
    size_t max_inbox;   /**< requests buffered per stream while a handler holds the
                             stream's order; past it the stream stops reading
                             (backpressure). 0 means 1024 */
    /** Reply bytes an accepted stream may have waiting to be sent (the peer does not read, so
     * HTTP/2 flow control holds them); past it the stream dispatches and reads no more requests
     * until the backlog drained below half of it. Other streams are unaffected. 0 means
     * NH_DEFAULT_MAX_QUEUED_REPLY (16 MiB). */
    size_t max_queued_reply_bytes;
    /** A stream that stays over max_queued_reply_bytes this long is ended with
     * RESOURCE_EXHAUSTED "the peer does not read its replies". 0 means
     * NH_DEFAULT_SLOW_READER_MS (30 s). */
    uint32_t slow_reader_timeout_ms;
    /* The symmetric configuration (all optional): */
    uint32_t node_id;          /**< this node's ID (1 to 2^20-1); 0: no Config tracking */
    const nh_node_addr *peers; /**< the known peers (may include this node itself) */
    size_t peer_count;         /**< number of peers */
    bool dial_peers;           /**< dial every known peer (announcing node_id) and keep those
                                    streams up, so this node appears in their Config */
    bool refuse_clients;       /**< refuse client peers (header value 0) instead of tracking */
    size_t max_clients;        /**< most client peers at once; 0 means 10000 */
    uint32_t backoff_base_ms;  /**< reconnect backoff of dialed peers (see nh_node_opts) */
    uint32_t backoff_max_ms;   /**< largest reconnect delay of dialed peers */
    /** HTTP/2 keepalive of the connections this server accepts (it pings them) and of the
     * peers it dials (see nh_node_opts); 0 means 1000 ms. The server accepts clients'
     * keepalive pings down to every 50 ms, also without calls or data. */
    uint32_t keepalive_time_ms;
    /** A ping not acknowledged within this ends the connection's streams: a known peer leaves
     * Config and the calls pending on it fail; 0 means 2000 ms. */
    uint32_t keepalive_timeout_ms;
    nh_config_change_fn on_config_change; /**< optional change notification */
    void *change_user;                    /**< passed to on_config_change */
    /** TLS (a reference is taken; NULL: plaintext). The server needs a certificate; it
     * accepts streams per tls's `clients` setting and verifies client certificates itself
     * (a failing one: UNAUTHENTICATED with the reason). With TLS, a stream claiming a known
     * peer's ID must prove that peer's identity (peers[i].identity, default
     * `nodehost://node/<id>`), and a certificate proving node N may only claim N: otherwise
     * UNAUTHENTICATED naming the claimed and the proven identity. The peers it dials
     * (dial_peers) use the same credentials. */
    struct nh_tls *tls;
    /** Most client-peer streams (header value 0) one connection may hold at once, so that one
     * connection cannot take every one of max_clients. A connection is the peer address gRPC
     * reports ("ipv4:10.0.0.7:41234": one TCP connection; connections over a Unix socket share
     * one address). A stream past it is refused with RESOURCE_EXHAUSTED "too many client-peer
     * streams on connection <address>: at most <N> per connection"; other connections still
     * get in. A client program holds one stream per connection (each node of it has its own
     * connection), so only multiplexing proxies need more. 0 means
     * NH_DEFAULT_MAX_CLIENTS_PER_CONNECTION (1000). */
    size_t max_clients_per_connection;
} nh_server_opts;

/**
 * Creates a server on rt and starts listening. On success *out is the server and, when
 * bound_port is not NULL, *bound_port the port bound. Returns 0, or -1 with err naming the
 * address and cause. Handlers may be registered before or after; requests for a method with no
 * handler get status 12 (UNIMPLEMENTED) "no handler registered for method <m>".
 */
NH_API int nh_server_new(nh_runtime *rt, const nh_server_opts *opts, nh_server **out,
                         int *bound_port, nh_error *err);

/**
 * Registers the handler of a full method name (`pkg.Service.Method`). Registering a method
 * again replaces its handler for requests that arrive from then on. Any thread. Returns 0, or -1
 * with err set (empty name).
 */
NH_API int nh_server_handle(nh_server *srv, const char *method, nh_handler_fn fn, void *user,
                            nh_error *err);

/**
 * Stops the server: no new streams, live streams cancelled (clients see UNAVAILABLE), deferred
 * calls' later replies dropped. Any thread except the owner; also done by nh_runtime_free().
 * Accepts NULL.
 */
NH_API void nh_server_free(nh_server *srv);

/** This server's Config: itself (when node_id is among the peers) and the known peers
 * connected right now, sorted by ID. A new reference (nh_config_unref()); an immutable
 * snapshot, also valid after later changes. Calls over it are server-initiated (bit 63).
 * Empty without node_id. Any thread. */
NH_API nh_config *nh_server_config(nh_server *srv);

/**
 * This server's membership: itself and every known peer (node_id and peers of its options),
 * connected or not, sorted by ID. It does not change while the server runs. Use it for quorums
 * that protect data: a majority of the membership is a majority of the cluster, whereas a
 * majority of Config is a majority of whoever is connected (a partitioned node would count only
 * itself). Calls over it are server-initiated (bit 63), like calls over Config; a member that
 * is not connected fails at once as a leg with NH_UNAVAILABLE, and a quorum that the reachable
 * members cannot meet fails at once (see nh_config_is_membership()). A new reference; empty
 * without node_id. Any thread.
 */
NH_API nh_config *nh_server_members(nh_server *srv);

/** This server's ClientConfig: the client peers connected right now, sorted by ID. As
 * nh_server_config(). */
NH_API nh_config *nh_server_client_config(nh_server *srv);

/** The configuration of the peers this server dials (dial_peers), or NULL. New reference. */
NH_API nh_config *nh_server_outbound_config(nh_server *srv);

/**
 * Waits until cond(Config) (client false) or cond(ClientConfig) (client true) holds, checking
 * at once and after every change notification (see nh_config_change_fn), on the snapshot of
 * that moment, outside any lock. Not on the owner thread. Returns 0 when it holds, -1 with err
 * DEADLINE_EXCEEDED after timeout_ms (0: no timeout), or UNAVAILABLE when the server stops.
 */
NH_API int nh_server_wait_config(nh_server *srv, bool client, nh_config_cond_fn cond, void *user,
                                 uint32_t timeout_ms, nh_error *err);

/**
 * Registers a back-channel handler on a runtime: it serves server-initiated requests that
 * arrive over streams this runtime dialed (a client program that announced gorums-node-id 0
 * and is called back through ClientConfig). A runtime with a server also serves them with its
 * server's handlers. Same ordering and release rules as server handlers. Any thread.
 */
NH_API int nh_runtime_handle(nh_runtime *rt, const char *method, nh_handler_fn fn, void *user,
                             nh_error *err);

/** The full method name of the request. */
NH_API const char *nh_ctx_method(const nh_server_ctx *ctx);

/** The request's `message_seq_no`. */
NH_API uint64_t nh_ctx_seq(const nh_server_ctx *ctx);

/** The request payload (serialized application message); *len receives its size. */
NH_API const uint8_t *nh_ctx_payload(const nh_server_ctx *ctx, size_t *len);

/**
 * The first value of a metadata key, searching the stream-level headers first, then the
 * per-message entries; NULL when absent.
 */
NH_API const char *nh_ctx_metadata(const nh_server_ctx *ctx, const char *key);

/** Number of metadata pairs (stream-level headers first, then per-message entries). */
NH_API size_t nh_ctx_metadata_count(const nh_server_ctx *ctx);

/** The i-th metadata pair, in the order of nh_ctx_metadata_count(). */
NH_API nh_metadata nh_ctx_metadata_at(const nh_server_ctx *ctx, size_t i);

/** The caller's address as gRPC reports it ("ipv4:127.0.0.1:5555"). */
NH_API const char *nh_ctx_peer(const nh_server_ctx *ctx);

/**
 * Sends the successful response (payload copied). Ends the call. Any thread: from another
 * thread the reply is handed to the owner thread, and ctx must not be used afterwards.
 * Returns 0, or -1 when the call already ended (nothing sent).
 */
NH_API int nh_ctx_reply(nh_server_ctx *ctx, const void *payload, size_t len);

/**
 * Sends an error response with a status code and message (printf-style). Ends the call. Any
 * thread, as nh_ctx_reply(). Returns 0, or -1 when the call already ended.
 */
NH_API int nh_ctx_reply_error(nh_server_ctx *ctx, nh_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Sends one response without ending the call, for correctable (streaming) calls: each send
 * reaches the caller as one more reply with the request's seq. End the call afterwards with
 * nh_ctx_finish() (or let the handler return, if it did not defer). Any thread. Returns 0, or
 * -1 when the call already ended.
 */
NH_API int nh_ctx_send(nh_server_ctx *ctx, const void *payload, size_t len);

/** Ends a deferred call without a response (one-way calls). Any thread. */
NH_API void nh_ctx_finish(nh_server_ctx *ctx);

/**
 * Lets the next request on this stream start before this one ends (Gorums' Release).
 * Idempotent. Owner thread only (handlers run there).
 */
NH_API void nh_ctx_release(nh_server_ctx *ctx);

/**
 * Keeps the call open after the handler returns: it ends later with nh_ctx_reply(),
 * nh_ctx_reply_error() or nh_ctx_finish(), from any thread. Until then, or until
 * nh_ctx_release(), the stream's next request waits. Owner thread only, inside the handler.
 */
NH_API void nh_ctx_defer(nh_server_ctx *ctx);

/** Who sent the request. */
NH_API nh_peer_kind nh_ctx_peer_kind(const nh_server_ctx *ctx);

/**
 * The caller's identity as its TLS certificate proved it (nodehost/tls.h): `nodehost://node/N`
 * for a node's certificate, otherwise the client certificate's name. NULL when the caller
 * presented no certificate or the stream is plaintext. For NH_PEER_SELF: this node's own
 * certificate identity (NULL without TLS); for NH_PEER_SERVER: the dialed node's.
 * Valid while the context is.
 */
NH_API const char *nh_ctx_caller_identity(const nh_server_ctx *ctx);

/** True when the caller's certificate carries name (one of its URI or DNS SANs, or
 * `CN=<common name>`); false without a certificate. For per-method authorisation. */
NH_API bool nh_ctx_caller_has_identity(const nh_server_ctx *ctx, const char *name);

/** True when the caller is a loopback connection (127.0.0.0/8, ::1, a Unix socket) or this
 * node itself. */
NH_API bool nh_ctx_caller_is_local(const nh_server_ctx *ctx);

/** The sender's node ID: a known peer's or client peer's ID, this node's for NH_PEER_SELF, the
 * dialed node's for NH_PEER_SERVER, 0 for a regular client. */
NH_API uint32_t nh_ctx_peer_id(const nh_server_ctx *ctx);

/** The serving node's Config (see nh_server_config()); a new reference. Empty for a
 * back-channel request of a client program. */
NH_API nh_config *nh_ctx_config(const nh_server_ctx *ctx);

/** The serving node's ClientConfig; a new reference. */
NH_API nh_config *nh_ctx_client_config(const nh_server_ctx *ctx);

/** The serving node's membership (see nh_server_members()); a new reference. Empty for a
 * back-channel request of a client program. */
NH_API nh_config *nh_ctx_members(const nh_server_ctx *ctx);

/** The runtime serving this call (for posting work or making calls from the handler). */
NH_API nh_runtime *nh_ctx_runtime(const nh_server_ctx *ctx);

/** True once the call was answered or handed on: it ended (reply, error, finish) or was
 * deferred. A host can check this after a handler returned to catch a handler that did
 * neither. Owner thread. */
NH_API bool nh_ctx_answered(const nh_server_ctx *ctx);

/** A function run when a call ends (nh_ctx_on_end()). */
typedef void (*nh_ctx_end_fn)(nh_server_ctx *ctx, void *arg);

/**
 * Registers fn(ctx, arg) to run once when the call ends, whichever way: reply, error, finish,
 * a handler returning without deferring, or the runtime being freed with the call still open
 * (then on the thread calling nh_runtime_free()). Otherwise it runs on the owner thread; ctx is
 * still readable inside fn. (A call whose stream has gone still ends by one of these ways; its
 * reply is dropped.) One function per call: a second registration replaces the first. Owner
 * thread only.
 */
NH_API void nh_ctx_on_end(nh_server_ctx *ctx, nh_ctx_end_fn fn, void *arg);

/** Blocking work for nh_ctx_offload(). Runs on a worker thread; may block, make blocking
 * calls (nh_rpc(), nh_quorum_call()) and must end the call (nh_ctx_reply() and friends). */
typedef void (*nh_blocking_fn)(nh_server_ctx *ctx, void *arg);

/**
 * Defers the call and runs fn(ctx, arg) on one of the runtime's worker threads (see
 * nh_runtime_opts.workers), which replies from there. Inside a handler only. Releases the
 * stream's order first when `release` is true (as Gorums handlers that block usually do).
 * Returns 0, or -1 when the work could not be queued (the call is then still the handler's to
 * answer).
 */
NH_API int nh_ctx_offload(nh_server_ctx *ctx, bool release, nh_blocking_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif
