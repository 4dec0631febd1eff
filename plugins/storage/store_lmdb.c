/* storage: the disk store, LMDB (Debian's liblmdb) in one directory.
 *
 * Why LMDB: one small, well-kept C library from Debian; copy-on-write B+tree whose committed
 * state survives a process crash at any point (no recovery step, no log to replay); readers never
 * block; keys in order (catch-up pages by key).
 *
 * Durability: the environment is opened with MDB_NOSYNC, so a commit writes the pages to the
 * file (the kernel's page cache: they survive the process being killed) without waiting for the
 * disk. st_sync() (mdb_env_sync, force) makes everything committed so far durable against a
 * machine crash too; the plugin decides when to call it (sync: always | batch | none).
 *
 * Entries: key -> [int64 seconds][int32 nanos] (little-endian) + value bytes. Keys are limited
 * to LMDB's maximum key size (511 bytes by default). */
#include "store.h"

#include <nodehost/log.h>

#include <lmdb.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HEADER 12

typedef struct lmdb_store {
    st_store base;
    MDB_env *env;
    MDB_dbi dbi;
    char *scratch; /* the value of the last get, NUL-terminated */
    size_t scratch_cap;
    int max_key;
} lmdb_store;

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void log_mdb(const lmdb_store *l, const char *what, int rc) {
    nh_logf(NH_LOG_ERROR, "storage", "%s: %s: %s", l->base.path, what, mdb_strerror(rc));
}

/* Decodes a stored record into *out (value pointing into the record). false when damaged. */
static bool decode(const MDB_val *k, const MDB_val *v, st_entry *out, const char *key) {
    if (v->mv_size < HEADER) return false;
    const uint8_t *p = v->mv_data;
    (void)k;
    *out = (st_entry){.key = key,
                      .value = (const char *)p + HEADER,
                      .value_len = v->mv_size - HEADER,
                      .sec = (int64_t)get_le(p, 8),
                      .nsec = (int32_t)get_le(p + 8, 4)};
    return true;
}

/* Copies the value into the scratch buffer (NUL-terminated) so that it outlives the txn. */
static int keep_value(lmdb_store *l, st_entry *e) {
    if (e->value_len + 1 > l->scratch_cap) {
        size_t cap = e->value_len + 1 < 256 ? 256 : e->value_len + 1;
        char *p = realloc(l->scratch, cap);
        if (!p) return -1;
        l->scratch = p;
        l->scratch_cap = cap;
    }
    memcpy(l->scratch, e->value, e->value_len);
    l->scratch[e->value_len] = 0;
    e->value = l->scratch;
    return 0;
}

static int lm_get(st_store *s, const char *key, st_entry *out) {
    lmdb_store *l = (lmdb_store *)s;
    size_t klen = strlen(key);
    if (!klen || klen > (size_t)l->max_key) return 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        log_mdb(l, "read", rc);
        return -1;
    }
    MDB_val k = {klen, (void *)key}, v;
    rc = mdb_get(txn, l->dbi, &k, &v);
    int found = 0;
    if (rc == 0) {
        found = decode(&k, &v, out, key) && keep_value(l, out) == 0 ? 1 : -1;
    } else if (rc != MDB_NOTFOUND) {
        log_mdb(l, "read", rc);
        found = -1;
    }
    mdb_txn_abort(txn);
    return found;
}

static st_put_result lm_put(st_store *s, const st_entry *w) {
    lmdb_store *l = (lmdb_store *)s;
    size_t klen = strlen(w->key);
    if (!klen || klen > (size_t)l->max_key) return ST_INVALID;
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
    if (rc) {
        log_mdb(l, "write", rc);
        return ST_FAILED;
    }
    MDB_val k = {klen, (void *)w->key}, v;
    rc = mdb_get(txn, l->dbi, &k, &v);
    if (rc == 0) {
        st_entry old;
        if (decode(&k, &v, &old, w->key) &&
            st_version_cmp(w->sec, w->nsec, w->value, w->value_len, old.sec, old.nsec, old.value,
                           old.value_len) <= 0) {
            mdb_txn_abort(txn);
            return ST_OLD;
        }
    } else if (rc == MDB_NOTFOUND) {
        MDB_stat st;
        if (mdb_stat(txn, l->dbi, &st) == 0 && st.ms_entries >= s->max_keys) {
            mdb_txn_abort(txn);
            return ST_FULL;
        }
    } else {
        log_mdb(l, "write", rc);
        mdb_txn_abort(txn);
        return ST_FAILED;
    }
    MDB_val nv = {HEADER + w->value_len, NULL};
    rc = mdb_put(txn, l->dbi, &k, &nv, MDB_RESERVE);
    if (rc == 0) {
        uint8_t *p = nv.mv_data;
        put_le(p, (uint64_t)w->sec, 8);
        put_le(p + 8, (uint32_t)w->nsec, 4);
        memcpy(p + HEADER, w->value, w->value_len);
        rc = mdb_txn_commit(txn);
    } else {
        mdb_txn_abort(txn);
    }
    if (rc == MDB_MAP_FULL) return ST_FULL;
    if (rc) {
        log_mdb(l, "write", rc);
        return ST_FAILED;
    }
    return ST_NEW;
}

static size_t lm_count(st_store *s) {
    lmdb_store *l = (lmdb_store *)s;
    MDB_stat st;
    MDB_txn *txn;
    if (mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn)) return 0;
    size_t n = mdb_stat(txn, l->dbi, &st) == 0 ? st.ms_entries : 0;
    mdb_txn_abort(txn);
    return n;
}

static size_t lm_scan(st_store *s, const char *after, size_t limit, size_t max_bytes,
                      void (*fn)(void *user, const st_entry *e), void *user, bool *more) {
    lmdb_store *l = (lmdb_store *)s;
    *more = false;
    MDB_txn *txn;
    MDB_cursor *cur;
    if (mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn)) return 0;
    if (mdb_cursor_open(txn, l->dbi, &cur)) {
        mdb_txn_abort(txn);
        return 0;
    }
    size_t alen = strlen(after);
    MDB_val k = {alen, (void *)after}, v;
    int rc =
        alen ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    if (rc == 0 && alen && k.mv_size == alen && memcmp(k.mv_data, after, alen) == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    size_t given = 0, bytes = 0;
    char keybuf[512];
    while (rc == 0) {
        if (given == limit || (given && bytes >= max_bytes)) {
            *more = true;
            break;
        }
        st_entry e;
        if (k.mv_size < sizeof keybuf) {
            memcpy(keybuf, k.mv_data, k.mv_size);
            keybuf[k.mv_size] = 0;
            if (decode(&k, &v, &e, keybuf) && keep_value(l, &e) == 0) {
                fn(user, &e);
                given++;
                bytes += k.mv_size + e.value_len;
            }
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return given;
}

static int lm_sync(st_store *s) {
    lmdb_store *l = (lmdb_store *)s;
    int rc = mdb_env_sync(l->env, 1);
    if (rc) log_mdb(l, "sync", rc);
    return rc ? -1 : 0;
}

static void lm_close(st_store *s) {
    lmdb_store *l = (lmdb_store *)s;
    mdb_env_sync(l->env, 1);
    mdb_env_close(l->env);
    free(l->scratch);
    free(s->path);
    free(l);
}

static const st_ops lmdb_ops = {lm_get, lm_put, lm_count, lm_scan, lm_sync, lm_close};

/* mkdir -p with mode 0700 for the directories it creates. */
static int make_dirs(const char *dir) {
    char *p = strdup(dir);
    if (!p) return ENOMEM;
    int rc = 0;
    for (char *q = p + 1; rc == 0; q++) {
        bool end = *q == 0;
        if (*q == '/' || end) {
            *q = 0;
            if (mkdir(p, 0700) != 0 && errno != EEXIST) rc = errno;
            if (end) break;
            *q = '/';
        }
    }
    free(p);
    return rc;
}

st_store *st_open_lmdb(const char *dir, size_t max_keys, size_t map_size, nh_error *err) {
    int rc = make_dirs(dir);
    if (rc) {
        nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                     "storage: cannot create data directory %s: %s", dir, strerror(rc));
        return NULL;
    }
    lmdb_store *l = calloc(1, sizeof *l);
    char *path = strdup(dir);
    if (!l || !path) {
        free(l);
        free(path);
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return NULL;
    }
    MDB_txn *txn = NULL;
    const char *step = "mdb_env_create";
    rc = mdb_env_create(&l->env);
    if (!rc) {
        step = "mdb_env_set_mapsize";
        rc = mdb_env_set_mapsize(l->env, map_size);
    }
    if (!rc) {
        step = "mdb_env_open";
        rc = mdb_env_open(l->env, dir, MDB_NOSYNC | MDB_NOTLS, 0600);
    }
    if (!rc) {
        step = "mdb_txn_begin";
        rc = mdb_txn_begin(l->env, NULL, 0, &txn);
    }
    if (!rc) {
        step = "mdb_dbi_open";
        rc = mdb_dbi_open(txn, NULL, 0, &l->dbi);
        if (!rc) {
            step = "mdb_txn_commit";
            rc = mdb_txn_commit(txn);
        } else {
            mdb_txn_abort(txn);
        }
    }
    if (rc) {
        nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                     "storage: cannot open the store in %s (%s: %s)", dir, step, mdb_strerror(rc));
        if (l->env) mdb_env_close(l->env);
        free(l);
        free(path);
        return NULL;
    }
    l->max_key = mdb_env_get_maxkeysize(l->env);
    l->base.ops = &lmdb_ops;
    l->base.refs = 1;
    l->base.path = path;
    l->base.max_keys = max_keys;
    return &l->base;
}
