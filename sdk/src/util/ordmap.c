/* The ordered ID map (see ordmap.h): a sorted array with tombstones. */
#include "util/ordmap.h"

#include <stdlib.h>
#include <string.h>

/* Tombstones tolerated beyond the live entries before a compaction. */
#define SLACK 16

void nh_ordmap_init(nh_ordmap *m) {
    memset(m, 0, sizeof *m);
}

void nh_ordmap_free(nh_ordmap *m) {
    free(m->e);
    nh_ordmap_init(m);
}

/* The first slot whose id is >= id (len when none). */
static size_t lower_bound(const nh_ordmap *m, uint32_t id) {
    size_t lo = 0, hi = m->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->e[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int reserve(nh_ordmap *m, size_t need) {
    if (need <= m->cap) return 0;
    size_t cap = m->cap ? m->cap : 8;
    while (cap < need)
        cap *= 2;
    nh_ordmap_entry *e = realloc(m->e, cap * sizeof *e);
    if (!e) return -1;
    m->e = e;
    m->cap = cap;
    return 0;
}

/* Drops every tombstone, keeping the order; shrinks the storage when it is mostly unused. */
static void compact(nh_ordmap *m) {
    size_t k = 0;
    for (size_t i = 0; i < m->len; i++)
        if (m->e[i].val) m->e[k++] = m->e[i];
    m->len = k;
    if (m->cap > 64 && m->len < m->cap / 4) {
        size_t cap = m->cap / 2;
        while (cap > 64 && m->len < cap / 4)
            cap /= 2;
        nh_ordmap_entry *e = realloc(m->e, cap * sizeof *e);
        if (e) { /* a failed shrink keeps the larger array */
            m->e = e;
            m->cap = cap;
        }
    }
    if (m->len == 0 && m->cap > 64) {
        free(m->e);
        m->e = NULL;
        m->cap = 0;
    }
}

int nh_ordmap_put(nh_ordmap *m, uint32_t id, void *val) {
    if (!val) return -1;
    /* The common case: a new largest ID. */
    if (m->len == 0 || m->e[m->len - 1].id < id) {
        if (reserve(m, m->len + 1) != 0) return -1;
        m->e[m->len++] = (nh_ordmap_entry){id, val};
        m->live++;
        return 0;
    }
    size_t i = lower_bound(m, id);
    if (m->e[i].id == id) { /* present, or a tombstone to revive */
        if (!m->e[i].val) m->live++;
        m->e[i].val = val;
        return 0;
    }
    /* Between two slots: reuse a tombstone next to the gap when there is one (the order stays
     * strict: e[i-1].id < id < e[i].id), else move the tail up by one. */
    if (i > 0 && !m->e[i - 1].val) {
        m->e[i - 1] = (nh_ordmap_entry){id, val};
    } else if (!m->e[i].val) {
        m->e[i] = (nh_ordmap_entry){id, val};
    } else {
        if (reserve(m, m->len + 1) != 0) return -1;
        memmove(&m->e[i + 1], &m->e[i], (m->len - i) * sizeof *m->e);
        m->e[i] = (nh_ordmap_entry){id, val};
        m->len++;
    }
    m->live++;
    return 0;
}

void *nh_ordmap_get(const nh_ordmap *m, uint32_t id) {
    size_t i = lower_bound(m, id);
    return i < m->len && m->e[i].id == id ? m->e[i].val : NULL;
}

void *nh_ordmap_del(nh_ordmap *m, uint32_t id) {
    size_t i = lower_bound(m, id);
    if (i >= m->len || m->e[i].id != id || !m->e[i].val) return NULL;
    void *val = m->e[i].val;
    m->e[i].val = NULL;
    m->live--;
    /* Tombstones at the end are simply cut off (each once: amortised O(1)). */
    while (m->len > 0 && !m->e[m->len - 1].val)
        m->len--;
    /* Compact when tombstones outnumber live entries (O(len) after at least len/2 removals),
     * or when the storage is mostly unused (after the array lost three quarters). */
    if (m->len - m->live > m->live + SLACK || (m->cap > 64 && m->len < m->cap / 4)) compact(m);
    return val;
}

size_t nh_ordmap_len(const nh_ordmap *m) {
    return m->live;
}

bool nh_ordmap_next(const nh_ordmap *m, size_t *pos, uint32_t *id, void **val) {
    while (*pos < m->len) {
        const nh_ordmap_entry *e = &m->e[(*pos)++];
        if (!e->val) continue;
        if (id) *id = e->id;
        if (val) *val = e->val;
        return true;
    }
    return false;
}
