/* Private: configurations and their shared node registry. */
#ifndef NH_CONFIG_CONFIG_IMPL_H
#define NH_CONFIG_CONFIG_IMPL_H

#include "core/runtime_impl.h"

#include <nodehost/config.h>

#include <pthread.h>

/* The nodes shared by a family of configurations (Gorums' manager): ID -> node, one node per
 * ID and per address. Reference counted by its configurations; when the last one goes, its
 * nodes are closed. Thread-safe (a mutex). */
typedef struct nh_registry nh_registry;

struct nh_config {
    int refs; /* atomic */
    nh_runtime *rt;
    nh_registry *reg;      /* holds a registry reference; NULL for a node's Config/ClientConfig */
    bool server_initiated; /* calls over it are server-initiated (bit 63 in their seq) */
    bool membership;       /* a node's membership (or a reordered copy of it): quorum calls
                              that cannot reach their quorum of connected members fail at
                              once, saying how many members are reachable */
    size_t n;
    struct nh_node *nodes[]; /* in configuration order; each holds a node reference */
};

/* ---- the registry (registry.c) ------------------------------------------------------------ */

/* One registered node. node is NULL while the ID is reserved by an nh_registry_acquire() that
 * is opening it (other threads wait on the registry's condition variable for it). */
typedef struct nh_reg_entry {
    uint32_t id;
    char *addr;           /* what the node dials (nh_addr_norm.dial) */
    char *key;            /* what its address is compared by (nh_addr_norm.key) */
    struct nh_node *node; /* the user handle (closed with nh_node_close when the registry goes) */
} nh_reg_entry;

struct nh_registry {
    int refs; /* atomic: one per configuration */
    nh_runtime *rt;
    pthread_mutex_t mu;    /* guards entries, n, cap */
    pthread_cond_t cv;     /* signalled when reservations are resolved or dropped */
    nh_reg_entry *entries; /* sorted by ID */
    size_t n, cap;
    /* how nodes are opened (copied from nh_config_new; immutable) */
    nh_metadata *md;
    size_t md_count;
    uint32_t backoff_base_ms, backoff_max_ms;
    uint32_t keepalive_time_ms, keepalive_timeout_ms;
    struct nh_tls *tls; /* a reference; NULL: plaintext */
};

/** Largest normalized address, including the NUL (a 253-character host name and a port). */
#define NH_ADDR_NORM_MAX 264

/** An address after validation (spec 5.1, with host names kept as names). */
typedef struct nh_addr_norm {
    /** What the node dials and shows: an IP literal written canonically ("a.b.c.d:port",
     * "[v6]:port", "[v6%zone]:port"; localhost counts as 127.0.0.1), or a host name as
     * written ("db-1.example:7001"), which gRPC resolves at every connect (so a peer that
     * moved to another IP is found again). */
    char dial[NH_ADDR_NORM_MAX];
    /** What two addresses are compared by (duplicates, the same node given twice): dial for
     * an IP literal; for a host name its lower-case form without a trailing dot. No name is
     * looked up. */
    char key[NH_ADDR_NORM_MAX];
} nh_addr_norm;

/** Checks "host:port" (spec 5.1) and normalizes it into *out without looking names up: the
 * host is an IP literal (IPv6 in brackets) or a well-formed host name (RFC 1123 labels; '_'
 * allowed), the port 1 to 65535. Returns false with the reason in why. */
bool nh_address_normalize(const char *addr, nh_addr_norm *out, char *why, size_t why_len);

/** A new registry on rt with opts' metadata and backoff (copied), one reference. NULL with err
 * set on a bad metadata key or out of memory. */
nh_registry *nh_registry_new(nh_runtime *rt, const nh_config_opts *opts, nh_error *err);

/** Reference counting (atomic); the last unref closes every node of the registry. */
void nh_registry_ref(nh_registry *r);
void nh_registry_unref(nh_registry *r);

/** The registered (fully opened) node with this ID, or NULL. Borrowed: valid while the caller
 * holds a reference to the registry. */
struct nh_node *nh_registry_find(nh_registry *r, uint32_t id);

/**
 * Validates opts (spec 5.1 rules, the exact messages of config.h) against the registry, opens
 * the new nodes and returns in *nodes (malloc'd, *n entries, sorted by ID, no duplicates) every
 * node opts describes, each with one node reference for the caller. On error nothing changed.
 */
int nh_registry_acquire(nh_registry *r, const nh_config_opts *opts, struct nh_node ***nodes,
                        size_t *n, nh_error *err);

/** A configuration of these nodes (sorted as given) without a registry: a node's Config or
 * ClientConfig snapshot. Each node gets a reference. NULL when out of memory. */
nh_config *nh_config_from_nodes(nh_runtime *rt, struct nh_node *const *nodes, size_t n,
                                bool server_initiated);

/** A configuration of n slots without a registry, for the caller to fill: nodes[0..n) must each
 * be set to a node the configuration holds a reference to, in configuration order, before the
 * configuration is used or released. For building a node's Config or ClientConfig snapshot
 * straight from a live set. NULL when out of memory. */
nh_config *nh_config_alloc(nh_runtime *rt, size_t n, bool server_initiated);

#endif
