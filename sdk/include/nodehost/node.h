/* nodehost: a node: a peer this runtime dials, with its stream, router, latency and errors. */
#ifndef NODEHOST_NODE_H
#define NODEHOST_NODE_H

#include <nodehost/runtime.h>
#include <nodehost/tls.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A node this runtime calls: an ID, an address and one long-lived outbound stream. The stream
 * is opened at once and kept up in the background: after a break or a failed connect it is
 * re-opened with exponential backoff, whether or not calls are waiting.
 *
 * On a break, calls whose request was already written to the stream fail with UNAVAILABLE
 * ("stream broken: ...") rather than being sent again (at-most-once; Gorums re-sends, which can
 * run a request twice). Calls not yet written wait for the next stream within their timeout.
 * While the node is down (its last connect attempt failed), new calls fail at once with the
 * connect error. On close, pending calls fail with UNAVAILABLE "node closed".
 */
typedef struct nh_node nh_node;

/** Options for nh_node_open(). Zero-initialise and set what you need. */
typedef struct nh_node_opts {
    uint32_t id;                 /**< node ID, not 0 */
    const char *address;         /**< "host:port" */
    const nh_metadata *metadata; /**< stream-level headers sent on every (re)opened stream;
                                      keys must be lower-case */
    size_t metadata_count;       /**< number of metadata pairs */
    uint32_t backoff_base_ms;    /**< first reconnect delay; 0 means 100 ms */
    uint32_t backoff_max_ms;     /**< largest reconnect delay; 0 means 5000 ms */
    /** HTTP/2 keepalive: ping the node after this long without a ping (also while idle);
     * at least 100. 0 means no pings (gRPC's default): servers other than nodehost may refuse
     * frequent pings (grpc-go's default policy allows one every 5 minutes and closes the
     * connection with GOAWAY too_many_pings otherwise). A nodehost server's own peer streams
     * always ping (nh_server_opts). */
    uint32_t keepalive_time_ms;
    /** A ping not acknowledged within this declares the connection dead: the stream breaks and
     * the calls written to it fail with UNAVAILABLE (a stalled or partitioned node is noticed
     * after about time + timeout, not when TCP gives up); 0 means 2000 ms when
     * keepalive_time_ms is set; at least 100. */
    uint32_t keepalive_timeout_ms;
    /** TLS credentials (a reference is taken; NULL: plaintext). The stream connects with TLS,
     * presenting tls's certificate when it has one (a client program may have none); the
     * node's certificate must verify against tls's CA and carry server_identity. A
     * nh_tls_update() applies from the next connection (a reconnect after a break). */
    struct nh_tls *tls;
    /** With tls: the identity the node's certificate must carry; NULL means
     * `nodehost://node/<id>`, "*" accepts any certificate the CA signed. */
    const char *server_identity;
} nh_node_opts;

/** Opens a node on rt and starts connecting. Returns 0, or -1 with err set (bad ID/address). */
NH_API int nh_node_open(nh_runtime *rt, const nh_node_opts *opts, nh_node **out, nh_error *err);

/**
 * Closes the node: pending and queued calls fail with UNAVAILABLE "node closed", the stream is
 * cancelled, and the node is freed. Any thread except the owner thread, where it is scheduled
 * instead (the pointer must not be used after the call either way). Accepts NULL.
 */
NH_API void nh_node_close(nh_node *node);

/** The node's ID. */
NH_API uint32_t nh_node_id(const nh_node *node);

/** The node's address as given. */
NH_API const char *nh_node_address(const nh_node *node);

/** Moving average of successful call round trips in nanoseconds (0.8 old + 0.2 new); -1 if
 * nothing was measured yet. */
NH_API int64_t nh_node_latency_ns(const nh_node *node);

/** Copies the node's last transport error into *out; returns false (and clears *out) if none. */
NH_API bool nh_node_last_error(const nh_node *node, nh_error *out);

/** True when the node's stream is open and has been seen working. */
NH_API bool nh_node_connected(const nh_node *node);

/** The identity this node proved with its TLS certificate: for a node this runtime dialed, the
 * identity checked at connect (NULL before the first TLS connection or on plaintext); for a
 * known peer or a client peer of a server's Config/ClientConfig, the identity its stream's
 * certificate proved when it connected (NULL without one). */
NH_API const char *nh_node_identity(const nh_node *node);

/** How many times a connected stream of this node broke (the node then reconnects); for a node
 * this runtime dials. Any thread. */
NH_API uint64_t nh_node_breaks(const nh_node *node);

/** Number of calls waiting for a response from this node (the router's size). */
NH_API size_t nh_node_pending(const nh_node *node);

#ifdef __cplusplus
}
#endif
#endif
