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
 * Reads are synchronous, on the owner thread. Writes are asynchronous: st_write() applies the
 * entry and then calls its done function with the result, at once for the memory store, from
 * the disk store's writer thread once the write is committed (and, unless sync is none, on
 * disk). A read sees a disk write only once it is committed, so it never returns a version
 * that a machine crash could still take back (with sync always or batch).
 *
 * A store object belongs to one plugin generation (its functions are that generation's code);
 * an open LMDB environment is handed from one generation to the next as an st_env (plain data,
 * reference counted), around which the new generation builds its own store. */
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

/** When a disk write counts as done. */
typedef enum st_sync {
    ST_SYNC_ALWAYS = 0, /* each write is its own transaction, synced to disk */
    ST_SYNC_BATCH = 1,  /* the writes waiting are one transaction, synced (group commit) */
    ST_SYNC_NONE = 2,   /* committed without fsync: survives the process, not the machine */
} st_sync;

/** A write's completion: the memory store calls it at once, the disk store on its writer
 * thread. Must not block. */
typedef void (*st_done_fn)(void *arg, st_put_result r);

typedef struct st_store st_store;

/** Back-end operations (one table per back end). */
typedef struct st_ops {
    int (*get)(st_store *s, const char *key, st_entry *out);
    void (*write)(st_store *s, const st_entry *e, st_done_fn done, void *arg);
    size_t (*count)(st_store *s);
    size_t (*scan)(st_store *s, const char *after, size_t limit, size_t max_bytes,
                   void (*fn)(void *user, const st_entry *e), void *user, bool *more);
    void (*close)(st_store *s);
} st_ops;

struct st_store {
    const st_ops *ops;
    size_t max_keys; /* distinct keys kept */
};

/** An open LMDB environment (data only: it outlives the plugin generation that opened it). */
typedef struct st_env st_env;

/** A memory store. NULL when out of memory. */
st_store *st_open_memory(size_t max_keys);

/** Opens (creating, mode 0700, with its parents) the disk store in dir. map_size bounds the
 * file. NULL with err naming the directory and the cause. */
st_env *st_env_open(const char *dir, size_t map_size, nh_error *err);

/** The directory of an environment. */
const char *st_env_path(const st_env *env);

/** One more user of env (the store built on it, a reload's new generation). */
void st_env_ref(st_env *env);

/** Drops a user; the last one closes the environment. Accepts NULL. */
void st_env_unref(st_env *env);

/** A disk store on env (takes its own reference) with its writer thread. NULL with err. */
st_store *st_open_lmdb(st_env *env, size_t max_keys, st_sync sync, nh_error *err);

/** The environment of a disk store (borrowed), NULL for a memory store. */
st_env *st_store_env(st_store *s);

/** The entry of key: 1 found (*out filled), 0 not found, -1 on an I/O error (logged). */
static inline int st_get(st_store *s, const char *key, st_entry *out) {
    return s->ops->get(s, key, out);
}

/** Writes e when its version is newer than the stored one (e->key, e->value required; copied);
 * done (may be NULL) gets the result. */
static inline void st_write(st_store *s, const st_entry *e, st_done_fn done, void *arg) {
    s->ops->write(s, e, done, arg);
}

/** Number of keys (committed). */
static inline size_t st_count(st_store *s) {
    return s->ops->count(s);
}

/** Calls fn for up to limit entries whose key sorts after `after` ("" for the first), in key
 * order; a page ends before the entry that would take it past max_bytes of keys and values
 * (but holds at least one entry); *more says whether entries are left. Returns the number
 * given. */
static inline size_t st_scan(st_store *s, const char *after, size_t limit, size_t max_bytes,
                             void (*fn)(void *user, const st_entry *e), void *user, bool *more) {
    return s->ops->scan(s, after, limit, max_bytes, fn, user, more);
}

/** Closes the store: the disk store's writer finishes the writes queued (their done functions
 * run), then stops. Accepts NULL. */
static inline void st_close(st_store *s) {
    if (s) s->ops->close(s);
}

/** Compares versions: <0 when (asec, ansec, aval) is older than (bsec, ...), 0 equal, >0 newer.
 * A missing value (NULL) is older than any value of the same timestamp. */
int st_version_cmp(int64_t asec, int32_t ansec, const char *aval, size_t alen, int64_t bsec,
                   int32_t bnsec, const char *bval, size_t blen);

#endif
