/* storage: the memory store: open addressing with linear probing, no deletion. A scan (for
 * catch-up pages) walks the whole table once per page, keeping the `limit` smallest keys after
 * the cursor in a bounded max-heap: O(n log limit) per page, no extra index to maintain. */
#include "store.h"

#include <stdlib.h>
#include <string.h>

typedef struct mem_entry {
    char *key; /* NULL: an empty slot */
    char *value;
    size_t value_len;
    int64_t sec;
    int32_t nsec;
} mem_entry;

typedef struct mem_store {
    st_store base;
    mem_entry *slots;
    size_t cap, count;
} mem_store;

static uint64_t hash_key(const char *k) {
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (; *k; k++)
        h = (h ^ (uint8_t)*k) * 1099511628211u;
    return h;
}

/* The slot holding key, or the empty slot where it would go (cap > 0, never full). */
static mem_entry *slot_for(mem_entry *slots, size_t cap, const char *key) {
    size_t i = (size_t)hash_key(key) & (cap - 1);
    while (slots[i].key && strcmp(slots[i].key, key) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static mem_entry *find(mem_store *m, const char *key) {
    if (!m->cap) return NULL;
    mem_entry *e = slot_for(m->slots, m->cap, key);
    return e->key ? e : NULL;
}

static int grow(mem_store *m) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    mem_entry *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key) *slot_for(slots, cap, m->slots[i].key) = m->slots[i];
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

static void view(const mem_entry *e, st_entry *out) {
    *out = (st_entry){e->key, e->value, e->value_len, e->sec, e->nsec};
}

static int mem_get(st_store *s, const char *key, st_entry *out) {
    mem_entry *e = find((mem_store *)s, key);
    if (!e) return 0;
    view(e, out);
    return 1;
}

static char *dup_n(const char *p, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = 0;
    }
    return d;
}

static st_put_result mem_put(mem_store *m, const st_entry *w) {
    st_store *s = &m->base;
    if (!*w->key) return ST_INVALID;
    mem_entry *e = find(m, w->key);
    if (e) {
        if (st_version_cmp(w->sec, w->nsec, w->value, w->value_len, e->sec, e->nsec, e->value,
                           e->value_len) <= 0)
            return ST_OLD;
        char *v = dup_n(w->value, w->value_len);
        if (!v) return ST_FAILED;
        free(e->value);
        e->value = v;
        e->value_len = w->value_len;
        e->sec = w->sec;
        e->nsec = w->nsec;
        return ST_NEW;
    }
    if (m->count >= s->max_keys) return ST_FULL;
    if ((m->count + 1) * 10 > m->cap * 7 && grow(m) != 0) return ST_FAILED;
    char *k = strdup(w->key), *v = dup_n(w->value, w->value_len);
    if (!k || !v) {
        free(k);
        free(v);
        return ST_FAILED;
    }
    e = slot_for(m->slots, m->cap, k);
    *e = (mem_entry){k, v, w->value_len, w->sec, w->nsec};
    m->count++;
    return ST_NEW;
}

static void mem_write(st_store *s, const st_entry *e, st_done_fn done, void *arg) {
    st_put_result r = mem_put((mem_store *)s, e);
    if (done) done(arg, r);
}

static size_t mem_count(st_store *s) {
    return ((mem_store *)s)->count;
}

/* Max-heap of entries by key (the largest of the kept ones on top). */
static void heap_down(mem_entry **h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, big = i;
        if (l < n && strcmp(h[l]->key, h[big]->key) > 0) big = l;
        if (r < n && strcmp(h[r]->key, h[big]->key) > 0) big = r;
        if (big == i) return;
        mem_entry *t = h[i];
        h[i] = h[big];
        h[big] = t;
        i = big;
    }
}

static void heap_up(mem_entry **h, size_t i) {
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (strcmp(h[p]->key, h[i]->key) >= 0) return;
        mem_entry *t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

static int by_key(const void *a, const void *b) {
    return strcmp((*(mem_entry *const *)a)->key, (*(mem_entry *const *)b)->key);
}

static size_t mem_scan(st_store *s, const char *after, size_t limit, size_t max_bytes,
                       void (*fn)(void *user, const st_entry *e), void *user, bool *more) {
    mem_store *m = (mem_store *)s;
    *more = false;
    if (!limit || !m->count) return 0;
    if (limit > m->count) limit = m->count;
    mem_entry **h = malloc(limit * sizeof *h);
    if (!h) return 0;
    size_t n = 0, beyond = 0;
    for (size_t i = 0; i < m->cap; i++) {
        mem_entry *e = &m->slots[i];
        if (!e->key || strcmp(e->key, after) <= 0) continue;
        if (n < limit) {
            h[n] = e;
            heap_up(h, n++);
        } else {
            beyond++;
            if (strcmp(e->key, h[0]->key) < 0) {
                h[0] = e;
                heap_down(h, n, 0);
            }
        }
    }
    qsort(h, n, sizeof *h, by_key);
    size_t given = 0, bytes = 0;
    for (; given < n; given++) {
        size_t size = strlen(h[given]->key) + h[given]->value_len;
        if (given && bytes + size > max_bytes) break;
        st_entry v;
        view(h[given], &v);
        fn(user, &v);
        bytes += size;
    }
    *more = beyond > 0 || given < n;
    free(h);
    return given;
}

static void mem_close(st_store *s) {
    mem_store *m = (mem_store *)s;
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i].key);
        free(m->slots[i].value);
    }
    free(m->slots);
    free(m);
}

static const st_ops mem_ops = {mem_get, mem_write, mem_count, mem_scan, mem_close};

st_store *st_open_memory(size_t max_keys) {
    mem_store *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->base.ops = &mem_ops;
    m->base.max_keys = max_keys;
    return &m->base;
}
