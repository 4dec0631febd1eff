/* Counts per string key (see strcount.h): linear probing with backward-shift deletion (no
 * tombstones), resized at 3/4 load and shrunk when mostly empty. */
#include "util/strcount.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void nh_strcount_init(nh_strcount *m) {
    memset(m, 0, sizeof *m);
}

void nh_strcount_free(nh_strcount *m) {
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    nh_strcount_init(m);
}

/* FNV-1a, 64 bits. */
static uint64_t hash_of(const char *s) {
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

/* The slot holding key, or the empty slot where it would go. cap must be > 0. */
static size_t find(const nh_strcount *m, const char *key, uint64_t h) {
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    while (m->slots[i].key && (m->slots[i].hash != h || strcmp(m->slots[i].key, key) != 0))
        i = (i + 1) & mask;
    return i;
}

/* Moves every key into a table of cap slots (a power of two, larger than len). */
static bool rehash(nh_strcount *m, size_t cap) {
    nh_strcount_slot *slots = calloc(cap, sizeof *slots);
    if (!slots) return false;
    nh_strcount old = *m;
    m->slots = slots;
    m->cap = cap;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].key) m->slots[find(m, old.slots[i].key, old.slots[i].hash)] = old.slots[i];
    free(old.slots);
    return true;
}

size_t nh_strcount_get(const nh_strcount *m, const char *key) {
    if (m->cap == 0) return 0;
    const nh_strcount_slot *s = &m->slots[find(m, key, hash_of(key))];
    return s->key ? s->count : 0; /* an empty slot's count is stale */
}

size_t nh_strcount_inc(nh_strcount *m, const char *key) {
    uint64_t h = hash_of(key);
    if ((m->len + 1) * 4 > m->cap * 3 && !rehash(m, m->cap ? m->cap * 2 : 16)) return 0;
    size_t i = find(m, key, h);
    nh_strcount_slot *s = &m->slots[i];
    if (!s->key) {
        s->key = strdup(key);
        if (!s->key) return 0;
        s->hash = h;
        s->count = 0;
        m->len++;
    }
    return ++s->count;
}

size_t nh_strcount_dec(nh_strcount *m, const char *key) {
    if (m->cap == 0) return 0;
    size_t mask = m->cap - 1, i = find(m, key, hash_of(key));
    if (!m->slots[i].key) return 0;
    if (--m->slots[i].count > 0) return m->slots[i].count;
    free(m->slots[i].key);
    m->slots[i].key = NULL;
    m->len--;
    /* Backward shift: pull later entries of the probe run into the hole when their home slot
     * does not lie cyclically in (hole, j]. */
    for (size_t hole = i, j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = (size_t)m->slots[j].hash & mask;
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays) continue;
        m->slots[hole] = m->slots[j];
        m->slots[j].key = NULL;
        hole = j;
    }
    if (m->cap > 64 && m->len * 8 < m->cap) rehash(m, m->cap / 2); /* a failure keeps it */
    return 0;
}

size_t nh_strcount_len(const nh_strcount *m) {
    return m->len;
}
