/* Stream-level metadata rules of Gorums (spec section 1.6): parsing gorums-node-id and
 * classifying the peer that opened a stream. Pure logic. */
#ifndef NH_WIRE_METADATA_H
#define NH_WIRE_METADATA_H

#include <nodehost/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The header key a peer announces its node ID with. */
#define NH_NODE_ID_KEY "gorums-node-id"

/** First ID handed to client peers (2^20). */
#define NH_FIRST_CLIENT_ID (1u << 20)

/**
 * Parses a gorums-node-id value as Gorums does: decimal digits only (leading zeros allowed),
 * no sign, spaces, underscores or hex, value within uint32. Returns the ID, or 0 when the
 * value is empty, "0", or invalid (then it names no node).
 */
uint32_t nh_md_parse_node_id(const char *value, size_t len);

/** How a new stream's peer is classified by its headers (spec 1.6 table, HEAD). */
typedef enum nh_peer_class {
    NH_MD_REGULAR = 0, /* no gorums-node-id header: served, untracked */
    NH_MD_CLIENT = 1,  /* header present, value 0 or invalid: a client peer */
    NH_MD_ID = 2,      /* header with a valid non-zero ID: a known peer if the ID is known,
                            otherwise served as a regular client */
} nh_peer_class;

/** One header as received: key and value are not NUL-terminated. */
typedef struct nh_md_view {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
} nh_md_view;

/**
 * Classifies a stream by its headers. Only the first gorums-node-id value counts (keys compared
 * exactly; gRPC delivers them lower-case). *id receives the parsed ID (0 unless NH_MD_ID).
 */
nh_peer_class nh_md_classify(const nh_md_view *md, size_t count, uint32_t *id);

/** True when key is a valid gRPC metadata key for us: non-empty, [0-9a-z_.-] only. */
bool nh_md_key_valid(const char *key);

#endif
