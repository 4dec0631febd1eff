/* Open-addressing hash map (linear probing, power-of-two capacity, tombstones). */
#include "util/u64map.h"

#include <stdlib.h>

/* A deleted slot: never a caller's value, since it lives only here. */
static char tombstone_sentinel;
#define TOMBSTONE ((void *)&tombstone_sentinel)

#define MIN_CAP 8u

/* splitmix64 finaliser: every key bit affects the low bits used for the slot index. */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static inline bool is_live(const void *v) {
    return v != NULL && v != TOMBSTONE;
}

/* True when n occupied slots exceed 70% of cap. */
static inline bool over_load(size_t n, size_t cap) {
    return n * 10 > cap * 7;
}

void nh_u64map_init(nh_u64map *m) {
    m->keys = NULL;
    m->vals = NULL;
    m->cap = 0;
    m->len = 0;
    m->used = 0;
}

void nh_u64map_free(nh_u64map *m) {
    free(m->keys);
    free(m->vals);
    nh_u64map_init(m);
}

/* The slot holding key, or SIZE_MAX when absent. */
static size_t find_slot(const nh_u64map *m, uint64_t key) {
    if (m->cap == 0) return SIZE_MAX;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)mix64(key) & mask;; i = (i + 1) & mask) {
        void *v = m->vals[i];
        if (v == NULL) return SIZE_MAX;
        if (v != TOMBSTONE && m->keys[i] == key) return i;
    }
}

/* Rebuilds the table with new_cap slots, dropping tombstones. -1 when out of memory (the map
 * is then unchanged). */
static int rehash(nh_u64map *m, size_t new_cap) {
    uint64_t *keys = malloc(new_cap * sizeof(*keys));
    void **vals = calloc(new_cap, sizeof(*vals));
    if (keys == NULL || vals == NULL) {
        free(keys);
        free(vals);
        return -1;
    }
    size_t mask = new_cap - 1;
    for (size_t j = 0; j < m->cap; j++) {
        if (!is_live(m->vals[j])) continue;
        size_t i = (size_t)mix64(m->keys[j]) & mask;
        while (vals[i] != NULL)
            i = (i + 1) & mask;
        keys[i] = m->keys[j];
        vals[i] = m->vals[j];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = new_cap;
    m->used = m->len;
    return 0;
}

int nh_u64map_put(nh_u64map *m, uint64_t key, void *val) {
    if (val == NULL) return -1;
    size_t found = find_slot(m, key);
    if (found != SIZE_MAX) {
        m->vals[found] = val;
        return 0;
    }
    if (m->cap == 0 || over_load(m->used + 1, m->cap)) {
        /* Keep the capacity when dropping tombstones leaves enough room (at most 35% full
         * after the insert), otherwise double until it does. */
        size_t new_cap = m->cap < MIN_CAP ? MIN_CAP : m->cap;
        while (over_load((m->len + 1) * 2, new_cap)) {
            if (new_cap > SIZE_MAX / 2 / sizeof(void *)) return -1;
            new_cap *= 2;
        }
        if (rehash(m, new_cap) != 0) return -1;
    }
    size_t mask = m->cap - 1;
    size_t i = (size_t)mix64(key) & mask;
    while (is_live(m->vals[i]))
        i = (i + 1) & mask;
    if (m->vals[i] == NULL) m->used++; /* a reused tombstone is already counted */
    m->keys[i] = key;
    m->vals[i] = val;
    m->len++;
    return 0;
}

void *nh_u64map_get(const nh_u64map *m, uint64_t key) {
    size_t i = find_slot(m, key);
    return i == SIZE_MAX ? NULL : m->vals[i];
}

void *nh_u64map_del(nh_u64map *m, uint64_t key) {
    size_t i = find_slot(m, key);
    if (i == SIZE_MAX) return NULL;
    void *v = m->vals[i];
    m->vals[i] = TOMBSTONE;
    m->len--;
    return v;
}

size_t nh_u64map_len(const nh_u64map *m) {
    return m->len;
}

bool nh_u64map_next(const nh_u64map *m, size_t *pos, uint64_t *key, void **val) {
    for (size_t i = *pos; i < m->cap; i++) {
        if (!is_live(m->vals[i])) continue;
        if (key != NULL) *key = m->keys[i];
        if (val != NULL) *val = m->vals[i];
        *pos = i + 1;
        return true;
    }
    *pos = m->cap;
    return false;
}
