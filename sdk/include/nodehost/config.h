/* nodehost: configurations: immutable, sorted sets of nodes that quorum calls go to. */
#ifndef NODEHOST_CONFIG_H
#define NODEHOST_CONFIG_H

#include <nodehost/node.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A configuration: an immutable set of nodes sorted by ID, reference counted. Configurations
 * derived from one another (nh_config_extend(), the set operations) share one node registry:
 * the same ID is the same node (one stream, one router, one latency average).
 *
 * Every function may be called from any thread. A configuration that is released while calls
 * still use it stays valid until they finish (calls hold their own reference).
 *
 * Operations that return a configuration return a new reference (release it with
 * nh_config_unref()), possibly to an empty configuration; NULL only when out of memory (or
 * when the configuration argument is NULL). Accessors treat a NULL configuration as empty.
 *
 * Release every configuration of a runtime before nh_runtime_free(): the last release closes
 * the nodes through their runtime.
 */
typedef struct nh_config nh_config;

/** One node to add: its ID and "host:port" address. */
typedef struct nh_node_addr {
    uint32_t id;         /**< node ID, not 0 */
    const char *address; /**< "host:port"; host names are resolved (IPv4 preferred) */
    /** With TLS: the identity the node's certificate must carry (nodehost/tls.h); NULL means
     * `nodehost://node/<id>`. A server's known peer must prove it to take that ID. */
    const char *identity;
} nh_node_addr;

/** How to build a configuration. Zero-initialise and set what you need. */
typedef struct nh_config_opts {
    const nh_node_addr *nodes;    /**< nodes by ID (processed in ascending ID order), or */
    const char *const *addresses; /**< an address list: IDs follow the registry's largest ID
                                       (1..n for a new configuration), in list order */
    size_t count;                 /**< entries in nodes or addresses */
    const nh_metadata *metadata;  /**< stream headers every node sends (e.g. gorums-node-id) */
    size_t metadata_count;        /**< number of headers */
    uint32_t backoff_base_ms;     /**< reconnect backoff of the nodes (see nh_node_opts) */
    uint32_t backoff_max_ms;      /**< largest reconnect delay */
    /** Keepalive ping interval of the nodes (see nh_node_opts); 0 means no pings. */
    uint32_t keepalive_time_ms;
    /** Keepalive ping timeout of the nodes (see nh_node_opts); 0 means 2000 ms. */
    uint32_t keepalive_timeout_ms;
    /** TLS for every node of the registry (see nh_node_opts.tls); NULL: plaintext. Each node's
     * certificate must carry its nodes[i].identity (default `nodehost://node/<id>`); nodes
     * given as an address list are only checked against the CA (their IDs are assigned). */
    struct nh_tls *tls;
} nh_config_opts;

/**
 * Creates a configuration with a new node registry on rt and opens its nodes (they connect in
 * the background). Validation, with these messages:
 * - no nodes: "missing required node addresses" / "missing required node map";
 * - ID 0: "node 0 is reserved";
 * - an address that is not host:port with a port from 1 to 65535, an IPv6 address outside
 *   brackets, a host that is neither an IP address nor a well-formed host name (labels of 1 to
 *   63 letters, digits, '-' and '_', not starting or ending with '-'; 253 characters at most):
 *   "invalid address \"<a>\": <cause>";
 * - two nodes on one address: "address \"<a>\" already in use by node <id>", where <a> is the
 *   address compared (see below);
 * - one ID with two addresses: "node <id> already in use by \"<a>\"".
 * Set exactly one of opts->nodes and opts->addresses. The same ID with the same address given
 * twice is one node. Everything is validated before the first node is opened.
 *
 * Host names are not looked up here. A node addressed by name dials the name, and gRPC
 * resolves it at every connect: after a stream ends, the node's next attempt resolves the
 * name afresh, so a peer that came back at another IP address (a rescheduled pod) is found
 * again. A name that does not resolve (yet) is no error: its node stays unreachable
 * ("not connected, reconnecting (last: ...DNS resolution failed...)") and keeps retrying with
 * backoff. IP literals are dialed in canonical form ("127.000.000.001:80" dials
 * "127.0.0.1:80"), and "localhost" is the loopback address 127.0.0.1 ("localhost:9081" dials
 * "127.0.0.1:9081"). Addresses are compared for duplicates in that form, host names without
 * case and trailing dot ("localhost:9081" and "127.0.0.1:9081" are one address; other names
 * are never compared with IP addresses).
 * Returns 0, or -1 with err set (code NH_INVALID_ARGUMENT, kind NH_ERR_LOCAL; nothing is
 * created then). The result is sorted by ID.
 */
NH_API int nh_config_new(nh_runtime *rt, const nh_config_opts *opts, nh_config **out,
                         nh_error *err);

/**
 * A configuration with the nodes of cfg plus the nodes described by opts, in cfg's registry
 * (an ID already in the registry with the same address is that node; with another address it is
 * an error). opts' metadata and backoff are ignored (the registry's apply). The result is
 * sorted by ID; opts NULL gives a copy of cfg. An address list's IDs follow the registry's
 * largest ID. Same messages as nh_config_new(); on error the registry is unchanged. Concurrent
 * extends are safe: an ID that another thread is opening is waited for and then shared (on
 * the owner thread, where waiting could deadlock, that case fails with NH_ALREADY_EXISTS
 * "node <id> already exists"). Returns 0 or -1.
 */
NH_API int nh_config_extend(const nh_config *cfg, const nh_config_opts *opts, nh_config **out,
                            nh_error *err);

/** Takes a reference; returns cfg. */
NH_API nh_config *nh_config_ref(nh_config *cfg);

/** Drops a reference. When the last configuration of a registry goes and no call uses it, its
 * nodes are closed. Accepts NULL. */
NH_API void nh_config_unref(nh_config *cfg);

/** Number of nodes. */
NH_API size_t nh_config_size(const nh_config *cfg);

/** The i-th node (0 <= i < size), in the configuration's order. Borrowed: valid while cfg is. */
NH_API nh_node *nh_config_node(const nh_config *cfg, size_t i);

/** The node with this ID, or NULL. Borrowed. */
NH_API nh_node *nh_config_find(const nh_config *cfg, uint32_t id);

/** True when the configuration has a node with this ID. */
NH_API bool nh_config_contains(const nh_config *cfg, uint32_t id);

/** Copies up to max node IDs, in order, into ids, and returns the configuration's SIZE, which
 * may be GREATER than max: only min(size, max) entries of ids are written. Loop over
 * min(returned, max), never over the returned value alone (reading ids past max over-reads the
 * caller's array). ids may be NULL (max ignored) to ask for the size only. */
NH_API size_t nh_config_ids(const nh_config *cfg, uint32_t *ids, size_t max);

/** How many nodes of cfg a call can reach right now: this node itself and the connected ones
 * (a snapshot: connections come and go). */
NH_API size_t nh_config_reachable(const nh_config *cfg);

/** Waits until every node of cfg is reachable (nh_config_reachable()) or timeout_ms passed,
 * looking every 10 ms, and returns how many are reachable then: a client program can let its
 * nodes connect before it times its calls. On the owner thread, where connections progress, it
 * does not wait. Any thread. */
NH_API size_t nh_config_wait_reachable(const nh_config *cfg, uint32_t timeout_ms);

/**
 * True when cfg is a node's membership (nh_server_members(), nh_ctx_members()) or a reordered
 * copy of it (the nh_config_sort_* functions keep the mark; set operations drop it). Quorum
 * calls over a membership count their quorum against every member, connected or not: a member
 * that is not connected is a failed leg at once, and a call whose quorum (majority, threshold,
 * all, first) cannot be met by the members reachable when it starts fails at once with
 * NH_UNAVAILABLE, "1 of 3 members reachable, majority needs 2", without sending anything.
 */
NH_API bool nh_config_is_membership(const nh_config *cfg);

/** True when both have the same node IDs in the same order (order-sensitive, as Gorums). */
NH_API bool nh_config_equal(const nh_config *a, const nh_config *b);

/** cfg plus the registry's nodes with these IDs (unknown IDs and duplicates ignored), sorted by
 * ID. */
NH_API nh_config *nh_config_add(const nh_config *cfg, const uint32_t *ids, size_t n);

/** cfg without the nodes with these IDs (order kept). */
NH_API nh_config *nh_config_remove(const nh_config *cfg, const uint32_t *ids, size_t n);

/** The nodes of a or b, sorted by ID. Both must share a registry, or the result is a's copy
 * plus b's nodes that a's registry knows. */
NH_API nh_config *nh_config_union(const nh_config *a, const nh_config *b);

/** The nodes of a that are not in b (a's order kept). */
NH_API nh_config *nh_config_difference(const nh_config *a, const nh_config *b);

/** A copy sorted by latency, fastest first, unmeasured nodes last (stable). */
NH_API nh_config *nh_config_sort_by_latency(const nh_config *cfg);

/** A copy with nodes without a last error first (stable). */
NH_API nh_config *nh_config_sort_by_last_error(const nh_config *cfg);

/** A copy sorted by ID. */
NH_API nh_config *nh_config_sort_by_id(const nh_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
