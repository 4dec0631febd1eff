/* An ordered map from uint32 IDs to non-NULL pointers, kept as one array sorted by ID
 * (single-threaded; a user that shares it guards it itself).
 *
 * Made for the inbound manager's live sets (connected peers and client peers), whose IDs mostly
 * arrive in increasing order and whose whole content is copied out in ID order now and then:
 *
 * - put: O(1) amortised when the ID is larger than every ID present (an append), O(log n) when
 *   it is present or was removed recently, O(n) otherwise (an insert in the middle);
 * - del: O(log n) amortised: the entry becomes a tombstone (value NULL, ID kept, so the array
 *   stays sorted for the binary search); the array is compacted once tombstones outnumber the
 *   live entries, so tombstones never exceed live entries + 16;
 * - get: O(log n);
 * - iteration in ID order: O(live entries) amortised (it skips the tombstones).
 *
 * Storage shrinks when the map empties out, so a burst of arrivals and departures leaves no
 * large array behind. */
#ifndef NH_UTIL_ORDMAP_H
#define NH_UTIL_ORDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** One slot: a live entry (val not NULL) or a tombstone (val NULL). */
typedef struct nh_ordmap_entry {
    uint32_t id;
    void *val;
} nh_ordmap_entry;

/** The map. Zero-initialise (or nh_ordmap_init) before use; free with nh_ordmap_free. */
typedef struct nh_ordmap {
    nh_ordmap_entry *e; /* e[0..len) sorted by id, strictly increasing */
    size_t len;         /* slots in use: live entries + tombstones */
    size_t cap;         /* slots allocated */
    size_t live;        /* live entries */
} nh_ordmap;

/** Initialises an empty map. */
void nh_ordmap_init(nh_ordmap *m);

/** Frees the map's storage (not the values). */
void nh_ordmap_free(nh_ordmap *m);

/** Inserts or replaces id → val (val not NULL). Returns 0, or -1 when out of memory (the map
 * is then unchanged). */
int nh_ordmap_put(nh_ordmap *m, uint32_t id, void *val);

/** The value of id, or NULL. */
void *nh_ordmap_get(const nh_ordmap *m, uint32_t id);

/** Removes id; returns its value, or NULL when absent. */
void *nh_ordmap_del(nh_ordmap *m, uint32_t id);

/** Number of entries. */
size_t nh_ordmap_len(const nh_ordmap *m);

/**
 * Iteration in increasing ID order: start with *pos = 0; each call returns true with the next
 * entry (either out pointer may be NULL) or false at the end. The map must not change during
 * iteration.
 */
bool nh_ordmap_next(const nh_ordmap *m, size_t *pos, uint32_t *id, void **val);

#endif
