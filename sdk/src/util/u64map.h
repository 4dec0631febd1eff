/* An open-addressing hash map from uint64 keys to non-NULL pointers (single-threaded). */
#ifndef NH_UTIL_U64MAP_H
#define NH_UTIL_U64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The map. Zero-initialise (or nh_u64map_init) before use; free with nh_u64map_free. */
typedef struct nh_u64map {
    uint64_t *keys;
    void **vals; /* NULL marks an empty slot; a tombstone marks a deleted one */
    size_t cap;  /* slots, a power of two (0 before the first insert) */
    size_t len;  /* live entries */
    size_t used; /* live entries + tombstones */
} nh_u64map;

/** Initialises an empty map. */
void nh_u64map_init(nh_u64map *m);

/** Frees the map's storage (not the values). */
void nh_u64map_free(nh_u64map *m);

/** Inserts or replaces key → val (val not NULL). Returns 0, or -1 when out of memory. */
int nh_u64map_put(nh_u64map *m, uint64_t key, void *val);

/** The value of key, or NULL. */
void *nh_u64map_get(const nh_u64map *m, uint64_t key);

/** Removes key; returns its value, or NULL when absent. */
void *nh_u64map_del(nh_u64map *m, uint64_t key);

/** Number of entries. */
size_t nh_u64map_len(const nh_u64map *m);

/**
 * Iteration: start with *pos = 0; each call returns true with the next key/value (either out
 * pointer may be NULL) or false at the end. The map must not change during iteration, except
 * through nh_u64map_del() of the entry just returned.
 */
bool nh_u64map_next(const nh_u64map *m, size_t *pos, uint64_t *key, void **val);

#endif
