/* storage: where a node keeps its replicas, behind one small interface with two back ends:
 * memory (store_mem.c: a hash map, lost at exit) and disk (store_lmdb.c: LMDB in data_dir,
 * kept across restarts and reloads).
 *
 * Every entry is a key with a version: (timestamp, value). A write replaces the stored entry
 * only when its version is newer: a later timestamp, or the same timestamp and a greater value
 * (bytewise). That total order makes replicas that saw the same writes in any order agree, even
 * when two coordinators picked the same timestamp. Keys and values are strings without NUL
 * bytes (the host refuses such requests before they reach the plugin).
 *
 * Owner thread only, except st_sync() (any thread: a worker runs it) and the reference count. */
#ifndef NH_STORAGE_STORE_H
#define NH_STORAGE_STORE_H

#include <nodehost/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** One entry; its pointers are borrowed (valid until the next call on the store). */
typedef struct st_entry {
    const char *key;
    const char *value;
    size_t value_len;
    int64_t sec;
    int32_t nsec;
} st_entry;

/** What a write did. */
typedef enum st_put_result {
    ST_OLD = 0,     /* the stored version is as new or newer: unchanged */
    ST_NEW = 1,     /* stored */
    ST_FULL = 2,    /* a new key beyond max_keys, or the disk store's map is full */
    ST_INVALID = 3, /* the key cannot be stored (empty, or too long for the disk store) */
    ST_FAILED = 4,  /* out of memory or an I/O error (logged) */
} st_put_result;

typedef struct st_store st_store;

/** Back-end operations (one table per back end). */
typedef struct st_ops {
    int (*get)(st_store *s, const char *key, st_entry *out);
    st_put_result (*put)(st_store *s, const st_entry *e);
    size_t (*count)(st_store *s);
    size_t (*scan)(st_store *s, const char *after, size_t limit, size_t max_bytes,
                   void (*fn)(void *user, const st_entry *e), void *user, bool *more);
    int (*sync)(st_store *s);
    void (*close)(st_store *s);
} st_ops;

struct st_store {
    const st_ops *ops;
    int refs;        /* generations using it (a reload hands the open store over) */
    char *path;      /* the disk store's directory, NULL in memory */
    size_t max_keys; /* distinct keys kept */
};

/** A memory store. NULL when out of memory. */
st_store *st_open_memory(size_t max_keys);

/** A disk store in dir (created, mode 0700, with its parents). map_size bounds the file.
 * NULL with err naming the directory and the cause. */
st_store *st_open_lmdb(const char *dir, size_t max_keys, size_t map_size, nh_error *err);

/** The entry of key: 1 found (*out filled), 0 not found, -1 on an I/O error (logged). */
static inline int st_get(st_store *s, const char *key, st_entry *out) {
    return s->ops->get(s, key, out);
}

/** Writes e when its version is newer than the stored one (e->key, e->value required). */
static inline st_put_result st_put(st_store *s, const st_entry *e) {
    return s->ops->put(s, e);
}

/** Number of keys. */
static inline size_t st_count(st_store *s) {
    return s->ops->count(s);
}

/** Calls fn for up to limit entries whose key sorts after `after` ("" for the first), in key
 * order, stopping early once max_bytes of keys and values were given; *more says whether
 * entries are left. Returns the number given. */
static inline size_t st_scan(st_store *s, const char *after, size_t limit, size_t max_bytes,
                             void (*fn)(void *user, const st_entry *e), void *user, bool *more) {
    return s->ops->scan(s, after, limit, max_bytes, fn, user, more);
}

/** Makes every write committed so far durable (fsync). Any thread. 0, or -1 (logged). */
static inline int st_sync(st_store *s) {
    return s->ops->sync(s);
}

/** One more user (a reload's new generation adopting the store). */
static inline void st_ref(st_store *s) {
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
}

/** Drops a user; the last one closes the store. Accepts NULL. */
void st_unref(st_store *s);

/** Compares versions: <0 when (asec, ansec, aval) is older than (bsec, ...), 0 equal, >0 newer.
 * A missing value (NULL) is older than any value of the same timestamp. */
int st_version_cmp(int64_t asec, int32_t ansec, const char *aval, size_t alen, int64_t bsec,
                   int32_t bnsec, const char *bval, size_t blen);

#endif
