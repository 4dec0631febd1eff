/* A node's router: the calls waiting for a response from that node, keyed by message_seq_no
 * (spec section 1.5). Single-threaded (owner thread). */
#ifndef NH_NODE_ROUTER_H
#define NH_NODE_ROUTER_H

#include "util/u64map.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The router. Values are opaque pointers to the caller's pending-call records. */
typedef struct nh_router {
    nh_u64map map;       /* seq -> entry */
    nh_u64map streaming; /* seq -> (void*)1 for entries that stay after a delivery */
} nh_router;

/** Initialises an empty router. */
void nh_router_init(nh_router *r);

/** Frees the router's storage (entries are the caller's). */
void nh_router_free(nh_router *r);

/** Registers seq → entry. streaming entries stay after delivery (correctable calls).
 * Returns 0, -1 when seq is already registered or out of memory. */
int nh_router_add(nh_router *r, uint64_t seq, void *entry, bool streaming);

/**
 * Looks up the entry a response with seq belongs to. A non-streaming entry is removed (it is
 * delivered once); a streaming one stays. NULL when unknown (the response is then dropped).
 */
void *nh_router_deliver(nh_router *r, uint64_t seq);

/** Removes seq without delivering (timeout, cancel). Returns the entry or NULL. */
void *nh_router_remove(nh_router *r, uint64_t seq);

/** Number of pending entries. */
size_t nh_router_len(const nh_router *r);

/**
 * Removes every entry, calling fn(entry, streaming, arg) for each (in no particular order).
 * fn must not touch the router. Returns the number removed.
 */
size_t nh_router_drain(nh_router *r, void (*fn)(void *entry, bool streaming, void *arg), void *arg);

#endif
