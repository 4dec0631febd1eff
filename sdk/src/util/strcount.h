/* Counts per string key: an open-addressing hash map from strings (copied) to positive counts
 * (single-threaded). A key whose count drops to 0 is removed. Used to count client-peer streams
 * per connection (the key is the connection's peer address). Every operation is O(1) expected
 * plus the key's length. */
#ifndef NH_UTIL_STRCOUNT_H
#define NH_UTIL_STRCOUNT_H

#include <stddef.h>
#include <stdint.h>

/** One slot: key NULL when empty. */
typedef struct nh_strcount_slot {
    char *key; /* owned copy */
    uint64_t hash;
    size_t count; /* > 0 for a used slot */
} nh_strcount_slot;

/** The map. Zero-initialise (or nh_strcount_init) before use; free with nh_strcount_free. */
typedef struct nh_strcount {
    nh_strcount_slot *slots;
    size_t cap; /* a power of two (0 before the first add) */
    size_t len; /* keys present */
} nh_strcount;

/** Initialises an empty map. */
void nh_strcount_init(nh_strcount *m);

/** Frees the map and its key copies. */
void nh_strcount_free(nh_strcount *m);

/** The count of key (0 when absent). */
size_t nh_strcount_get(const nh_strcount *m, const char *key);

/** Adds one to key's count (copying the key when new). Returns the new count, or 0 when out of
 * memory (nothing changed). */
size_t nh_strcount_inc(nh_strcount *m, const char *key);

/** Takes one from key's count, removing the key at 0. Returns the new count (0 also when the
 * key was absent). */
size_t nh_strcount_dec(nh_strcount *m, const char *key);

/** Number of keys present. */
size_t nh_strcount_len(const nh_strcount *m);

#endif
