/* storage: the disk store, LMDB (Debian's liblmdb) in one directory.
 *
 * Why LMDB: one small, well-kept C library from Debian; a copy-on-write B+tree whose committed
 * state survives a crash at any point (no recovery step, no log to replay); readers never block
 * and never see uncommitted data; keys in order (catch-up pages by key).
 *
 * Writes go through one writer thread per store: it takes the writes waiting in its queue, applies
 * them in one transaction (sync batch: all that wait, up to WRITER_BATCH; sync always: one write
 * per transaction) and commits. For always and batch the environment commits synchronously
 * (LMDB's own ordered fsyncs of data and meta pages), so a write is on disk before its done
 * function runs and before any reader can see it; for none it commits with MDB_NOSYNC (what is
 * committed survives the process being killed, a machine crash may take back the last
 * transactions). The owner thread only reads (read-only transactions) and never waits for the
 * disk.
 *
 * Entries: key -> [int64 seconds][int32 nanos] (little-endian) + value bytes. Keys are limited
 * to LMDB's maximum key size (511 bytes by default). */
#include "store.h"

#include <nodehost/log.h>

#include <lmdb.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HEADER       12
#define WRITER_BATCH 1024

/* The environment: plain data, so that it can outlive the generation that opened it. */
struct st_env {
    MDB_env *env;
    MDB_dbi dbi;
    char *path;
    int refs; /* atomic */
};

typedef struct wr_item {
    char *key, *value;
    size_t value_len;
    int64_t sec;
    int32_t nsec;
    st_done_fn done;
    void *arg;
    struct wr_item *next;
} wr_item;

typedef struct lmdb_store {
    st_store base;
    st_env *env;
    st_sync sync;
    int max_key;
    char *scratch; /* the value of the last read (owner thread), NUL-terminated */
    size_t scratch_cap;
    /* the writer */
    pthread_t writer;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wr_item *head, **tail;
    bool stopping;
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

static void log_mdb(const st_env *e, const char *what, int rc) {
    nh_logf(NH_LOG_ERROR, "storage", "%s: %s: %s", e->path, what, mdb_strerror(rc));
}

/* Decodes a stored record into *out (value pointing into the record). false when damaged. */
static bool decode(const MDB_val *v, st_entry *out, const char *key) {
    if (v->mv_size < HEADER) return false;
    const uint8_t *p = v->mv_data;
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

/* ---- reads (owner thread) ------------------------------------------------------------------ */

static int lm_get(st_store *s, const char *key, st_entry *out) {
    lmdb_store *l = (lmdb_store *)s;
    size_t klen = strlen(key);
    if (!klen || klen > (size_t)l->max_key) return 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->env->env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        log_mdb(l->env, "read", rc);
        return -1;
    }
    MDB_val k = {klen, (void *)key}, v;
    rc = mdb_get(txn, l->env->dbi, &k, &v);
    int found = 0;
    if (rc == 0) {
        found = decode(&v, out, key) && keep_value(l, out) == 0 ? 1 : -1;
    } else if (rc != MDB_NOTFOUND) {
        log_mdb(l->env, "read", rc);
        found = -1;
    }
    mdb_txn_abort(txn);
    return found;
}

static size_t lm_count(st_store *s) {
    lmdb_store *l = (lmdb_store *)s;
    MDB_stat st;
    MDB_txn *txn;
    if (mdb_txn_begin(l->env->env, NULL, MDB_RDONLY, &txn)) return 0;
    size_t n = mdb_stat(txn, l->env->dbi, &st) == 0 ? st.ms_entries : 0;
    mdb_txn_abort(txn);
    return n;
}

static size_t lm_scan(st_store *s, const char *after, size_t limit, size_t max_bytes,
                      void (*fn)(void *user, const st_entry *e), void *user, bool *more) {
    lmdb_store *l = (lmdb_store *)s;
    *more = false;
    MDB_txn *txn;
    MDB_cursor *cur;
    if (mdb_txn_begin(l->env->env, NULL, MDB_RDONLY, &txn)) return 0;
    if (mdb_cursor_open(txn, l->env->dbi, &cur)) {
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
        size_t size = k.mv_size + (v.mv_size >= HEADER ? v.mv_size - HEADER : 0);
        if (given == limit || (given && bytes + size > max_bytes)) {
            *more = true;
            break;
        }
        st_entry e;
        if (k.mv_size < sizeof keybuf) {
            memcpy(keybuf, k.mv_data, k.mv_size);
            keybuf[k.mv_size] = 0;
            if (decode(&v, &e, keybuf) && keep_value(l, &e) == 0) {
                fn(user, &e);
                given++;
                bytes += size;
            }
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return given;
}

/* ---- writes (the writer thread) -------------------------------------------------------------- */

/* Applies one write inside txn. On an LMDB error the transaction is spoiled: *spoiled is set. */
static st_put_result apply(lmdb_store *l, MDB_txn *txn, const wr_item *w, int *spoiled) {
    size_t klen = strlen(w->key);
    if (!klen || klen > (size_t)l->max_key) return ST_INVALID;
    MDB_val k = {klen, w->key}, v;
    int rc = mdb_get(txn, l->env->dbi, &k, &v);
    if (rc == 0) {
        st_entry old;
        if (decode(&v, &old, w->key) &&
            st_version_cmp(w->sec, w->nsec, w->value, w->value_len, old.sec, old.nsec, old.value,
                           old.value_len) <= 0)
            return ST_OLD;
    } else if (rc == MDB_NOTFOUND) {
        MDB_stat st;
        if (mdb_stat(txn, l->env->dbi, &st) == 0 && st.ms_entries >= l->base.max_keys)
            return ST_FULL;
    } else {
        *spoiled = rc;
        return ST_FAILED;
    }
    MDB_val nv = {HEADER + w->value_len, NULL};
    rc = mdb_put(txn, l->env->dbi, &k, &nv, MDB_RESERVE);
    if (rc) {
        *spoiled = rc;
        return rc == MDB_MAP_FULL ? ST_FULL : ST_FAILED;
    }
    uint8_t *p = nv.mv_data;
    put_le(p, (uint64_t)w->sec, 8);
    put_le(p + 8, (uint32_t)w->nsec, 4);
    memcpy(p + HEADER, w->value, w->value_len);
    return ST_NEW;
}

/* Applies writes [first, end) in one transaction; results into r. Returns false when the
 * transaction was spoiled by an LMDB error before commit (nothing of it is stored). */
static bool commit_batch(lmdb_store *l, wr_item *first, wr_item *end, st_put_result *r) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->env->env, NULL, 0, &txn), spoiled = 0;
    if (rc) {
        log_mdb(l->env, "write", rc);
        for (wr_item *w = first; w != end; w = w->next)
            *r++ = ST_FAILED;
        return true;
    }
    size_t i = 0;
    for (wr_item *w = first; w != end && !spoiled; w = w->next)
        r[i++] = apply(l, txn, w, &spoiled);
    if (spoiled) {
        mdb_txn_abort(txn);
        return false;
    }
    rc = mdb_txn_commit(txn);
    if (rc) {
        log_mdb(l->env, "commit", rc);
        for (size_t k = 0; k < i; k++)
            r[k] = rc == MDB_MAP_FULL ? ST_FULL : ST_FAILED;
    }
    return true;
}

static void *writer_main(void *arg) {
    lmdb_store *l = arg;
    st_put_result *r = malloc(WRITER_BATCH * sizeof *r);
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (!l->head && !l->stopping)
            pthread_cond_wait(&l->cv, &l->mu);
        wr_item *first = l->head;
        if (!first) {
            pthread_mutex_unlock(&l->mu);
            break;
        }
        /* Take a batch: one write for sync always, else what waits (bounded). */
        size_t n = 1, max = l->sync == ST_SYNC_ALWAYS || !r ? 1 : WRITER_BATCH;
        wr_item *end = first->next;
        while (end && n < max) {
            end = end->next;
            n++;
        }
        l->head = end;
        if (!end) l->tail = &l->head;
        pthread_mutex_unlock(&l->mu);
        st_put_result one;
        st_put_result *res = r ? r : &one;
        if (!commit_batch(l, first, end, res)) {
            /* A write failed inside the transaction (map full, I/O): redo them one by one so
             * that each gets its own result. */
            for (wr_item *w = first; w != end; w = w->next) {
                st_put_result x;
                if (!commit_batch(l, w, w->next, &x)) x = ST_FAILED;
                res[0] = x;
                if (w->done) w->done(w->arg, x);
                w->done = NULL;
            }
        }
        size_t i = 0;
        for (wr_item *w = first, *next; w != end; w = next) {
            next = w->next;
            if (w->done) w->done(w->arg, res[i]);
            i++;
            free(w->key);
            free(w->value);
            free(w);
        }
    }
    free(r);
    return NULL;
}

static void lm_write(st_store *s, const st_entry *e, st_done_fn done, void *arg) {
    lmdb_store *l = (lmdb_store *)s;
    wr_item *w = calloc(1, sizeof *w);
    if (w) {
        w->key = strdup(e->key);
        w->value = malloc(e->value_len + 1);
    }
    if (!w || !w->key || !w->value) {
        if (w) {
            free(w->key);
            free(w->value);
        }
        free(w);
        if (done) done(arg, ST_FAILED);
        return;
    }
    memcpy(w->value, e->value, e->value_len);
    w->value[e->value_len] = 0;
    w->value_len = e->value_len;
    w->sec = e->sec;
    w->nsec = e->nsec;
    w->done = done;
    w->arg = arg;
    pthread_mutex_lock(&l->mu);
    *l->tail = w;
    l->tail = &w->next;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static void lm_close(st_store *s) {
    lmdb_store *l = (lmdb_store *)s;
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->writer, NULL); /* it finishes the queue first */
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    st_env_unref(l->env);
    free(l->scratch);
    free(l);
}

static const st_ops lmdb_ops = {lm_get, lm_write, lm_count, lm_scan, lm_close};

st_store *st_open_lmdb(st_env *env, size_t max_keys, st_sync sync, nh_error *err) {
    lmdb_store *l = calloc(1, sizeof *l);
    if (!l) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return NULL;
    }
    l->base.ops = &lmdb_ops;
    l->base.max_keys = max_keys;
    l->env = env;
    l->sync = sync;
    l->max_key = mdb_env_get_maxkeysize(env->env);
    l->tail = &l->head;
    /* Synchronous commits unless sync is none (the flag is the environment's: a reload that
     * changes sync changes it for both generations, which is what was asked for). */
    mdb_env_set_flags(env->env, MDB_NOSYNC, sync == ST_SYNC_NONE);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->writer, NULL, writer_main, l) != 0) {
        nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0, "storage: cannot start the writer: %s",
                     strerror(errno));
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
        free(l);
        return NULL;
    }
    st_env_ref(env);
    return &l->base;
}

st_env *st_store_env(st_store *s) {
    return s && s->ops == &lmdb_ops ? ((lmdb_store *)s)->env : NULL;
}

/* ---- the environment ------------------------------------------------------------------------ */

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

st_env *st_env_open(const char *dir, size_t map_size, nh_error *err) {
    int rc = make_dirs(dir);
    if (rc) {
        nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                     "storage: cannot create data directory %s: %s", dir, strerror(rc));
        return NULL;
    }
    st_env *e = calloc(1, sizeof *e);
    char *path = strdup(dir);
    if (!e || !path) {
        free(e);
        free(path);
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return NULL;
    }
    MDB_txn *txn = NULL;
    const char *step = "mdb_env_create";
    rc = mdb_env_create(&e->env);
    if (!rc) {
        step = "mdb_env_set_mapsize";
        rc = mdb_env_set_mapsize(e->env, map_size);
    }
    if (!rc) {
        step = "mdb_env_open";
        rc = mdb_env_open(e->env, dir, MDB_NOTLS, 0600);
    }
    if (!rc) {
        step = "mdb_txn_begin";
        rc = mdb_txn_begin(e->env, NULL, 0, &txn);
    }
    if (!rc) {
        step = "mdb_dbi_open";
        rc = mdb_dbi_open(txn, NULL, 0, &e->dbi);
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
        if (e->env) mdb_env_close(e->env);
        free(e);
        free(path);
        return NULL;
    }
    e->path = path;
    e->refs = 1;
    return e;
}

const char *st_env_path(const st_env *env) {
    return env->path;
}

void st_env_ref(st_env *env) {
    __atomic_add_fetch(&env->refs, 1, __ATOMIC_ACQ_REL);
}

void st_env_unref(st_env *env) {
    if (!env || __atomic_sub_fetch(&env->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    mdb_env_sync(env->env, 1); /* what sync: none left in the page cache */
    mdb_env_close(env->env);
    free(env->path);
    free(env);
}
