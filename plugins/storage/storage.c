/* storage: a replicated key-value store in the style of Gorums' examples/storage, with the same
 * wire format (storage.proto, package `proto`), made durable and linearizable.
 *
 * Replica methods (proto.Storage), each on the node's own copy:
 *   ReadRPC         RPC         ReadRequest  -> ReadResponse   read this node's copy
 *   WriteRPC        RPC         WriteRequest -> WriteResponse  write this node's copy
 *   ReadQC          QUORUMCALL  ReadRequest  -> ReadResponse   as ReadRPC (the caller combines)
 *   WriteQC         QUORUMCALL  WriteRequest -> WriteResponse  as WriteRPC
 *   WriteMulticast  MULTICAST   WriteRequest -> (nothing)      as WriteRPC, no reply
 * Coordinated methods (coordinate.c): the node runs the quorum protocol over its membership:
 *   ReadNestedQC    QUORUMCALL  ReadRequest  -> ReadResponse   ABD read (majority, write-back)
 *   WriteNestedQC   QUORUMCALL  WriteRequest -> WriteResponse  ABD write (majority)
 * Others:
 *   NotifyClients   RPC         WriteRequest -> NotifyResponse Notify to every client peer
 *   Info            RPC         Empty        -> InfoResponse   version, generation, keys
 *   Pull            RPC         PullRequest  -> PullResponse   a page of entries (catchup.c)
 *
 * Writes: an entry is replaced only by a newer version: a later timestamp, or the same
 * timestamp and a greater value (store.h); the reply says New = true then. A missing Time is the
 * zero time. Gorums' example also replaces on an equal timestamp; here replicas stay identical
 * whatever order they see writes in.
 *
 * Durability (data_dir set): entries live in LMDB under data_dir/node-<ID>/, written by the
 * store's writer thread (store_lmdb.c); a write's reply goes once its transaction committed:
 * `always` one synced transaction per write, `batch` (the default) one synced transaction for
 * every write waiting (group commit), `none` committed without fsync (survives the process being
 * killed; a machine crash may take back the last writes). Readers see a write only once it is
 * committed, so with always and batch nothing read can be lost. The stream's order is released
 * before a write waits, so later requests are not held behind the disk. Without data_dir the
 * store is in memory and a restarted node comes back empty (catch-up then refills it from its
 * peers, and it does not answer reads until it has caught up from enough of them).
 *
 * Reload: an open disk environment is handed to the new generation, which builds its own store
 * (its own code and writer thread) around it; both use it until the old generation finishes. A
 * memory store is copied through the Snapshot message.
 *
 * Configuration (`config:` of the plugin):
 *   max_keys: 1 to 1e9 (suffixes k, M, Ki, Mi...), default 100000: distinct keys kept; a write of
 *             a new key beyond it fails with RESOURCE_EXHAUSTED
 *   data_dir: directory of the disk store (created if missing); absent: in memory
 *   sync: always | batch | none, default batch (data_dir only)
 *   map_size: largest size of the disk store, default 1Gi (64Mi to 1Ti)
 *   nested_timeout_ms: 1 to 3600000, default 5000: timeout of each quorum phase of the
 *             coordinated methods
 *   notify_timeout_ms: 1 to 3600000, default 5000: how long NotifyClients waits
 *   pull_page: 1 to 10000, default 500: entries per catch-up page */
#include "storage_impl.h"

#include <nodehost/metrics.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The version string; builds for reload tests set their own. */
#ifndef NH_STORAGE_VERSION
#define NH_STORAGE_VERSION "1.0.0"
#endif

typedef struct storage_conf {
    int64_t max_keys, nested_timeout_ms, notify_timeout_ms, map_size, pull_page;
    const char *data_dir;
    st_sync sync;
} storage_conf;

static const char *const storage_config_keys[] = {
    "max_keys", "nested_timeout_ms", "notify_timeout_ms", "data_dir",
    "sync",     "map_size",          "pull_page",         NULL};

static int storage_read_config(const nh_conf_node *config, storage_conf *c, nh_error *err) {
    if (nh_conf_check_keys(config, storage_config_keys, err) != 0) return -1;
    if (nh_conf_int(config, "max_keys", 100000, 1, 1000000000, true, &c->max_keys, err) != 0)
        return -1;
    if (nh_conf_int(config, "nested_timeout_ms", 5000, 1, 3600000, false, &c->nested_timeout_ms,
                    err) != 0)
        return -1;
    if (nh_conf_int(config, "notify_timeout_ms", 5000, 1, 3600000, false, &c->notify_timeout_ms,
                    err) != 0)
        return -1;
    if (nh_conf_int(config, "map_size", 1LL << 30, 64LL << 20, 1LL << 40, true, &c->map_size,
                    err) != 0)
        return -1;
    if (nh_conf_int(config, "pull_page", 500, 1, 10000, false, &c->pull_page, err) != 0) return -1;
    if (nh_conf_string(config, "data_dir", NULL, &c->data_dir, err) != 0) return -1;
    if (c->data_dir && !*c->data_dir)
        return nh_conf_error(nh_conf_get(config, "data_dir"), err,
                             "must be a directory path, got an empty string");
    const char *sync = NULL;
    if (nh_conf_string(config, "sync", "batch", &sync, err) != 0) return -1;
    if (!strcmp(sync, "always"))
        c->sync = ST_SYNC_ALWAYS;
    else if (!strcmp(sync, "batch"))
        c->sync = ST_SYNC_BATCH;
    else if (!strcmp(sync, "none"))
        c->sync = ST_SYNC_NONE;
    else
        return nh_conf_error(nh_conf_get(config, "sync"), err,
                             "must be always, batch or none, got \"%s\"", sync);
    return 0;
}

static int storage_check_config(const nh_conf_node *config, nh_error *err) {
    storage_conf c;
    return storage_read_config(config, &c, err);
}

int64_t storage_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *sync_name(st_sync m) {
    return m == ST_SYNC_ALWAYS ? "always" : m == ST_SYNC_BATCH ? "batch" : "none";
}

/* A disk store on env, or (env NULL) the store of the configuration: memory, or disk opened
 * from data_dir. */
static st_store *open_store(storage *s, st_env *env, nh_error *err) {
    if (!s->data_dir) {
        st_store *m = st_open_memory(s->max_keys);
        if (!m) nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return m;
    }
    st_env *own = env ? NULL : st_env_open(s->data_dir, s->map_size, err);
    if (!env && !own) return NULL;
    st_store *d = st_open_lmdb(env ? env : own, s->max_keys, s->sync, err);
    st_env_unref(own); /* the store holds its own reference */
    if (d)
        nh_logf(NH_LOG_INFO, "storage", "store %s %s: %zu keys (sync: %s)", s->data_dir,
                env ? "taken over from the previous generation" : "open", st_count(d),
                sync_name(s->sync));
    return d;
}

st_store *storage_store(storage *s, nh_server_ctx *ctx) {
    if (s->store) return s->store;
    nh_error err;
    s->store = open_store(s, NULL, &err);
    if (!s->store) {
        nh_logf(NH_LOG_ERROR, "storage", "%s", err.message);
        if (ctx) nh_ctx_reply_error(ctx, NH_UNAVAILABLE, "%s", err.message);
    }
    return s->store;
}

static int storage_init(const nh_plugin_env *env, void **state, nh_error *err) {
    storage_conf c;
    if (storage_read_config(env->config, &c, err) != 0) return -1;
    storage *s = calloc(1, sizeof *s);
    if (!s) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    s->generation = env->generation;
    s->node_id = env->node_id;
    s->rt = env->runtime;
    s->srv = env->server;
    s->max_keys = (size_t)c.max_keys;
    s->nested_timeout_ms = (uint32_t)c.nested_timeout_ms;
    s->notify_timeout_ms = (uint32_t)c.notify_timeout_ms;
    s->map_size = (size_t)c.map_size;
    s->pull_page = (uint32_t)c.pull_page;
    s->sync = c.sync;
    nh_config *members = nh_server_members(env->server);
    s->n_members = nh_config_size(members);
    nh_config_unref(members);
    /* A memory store that starts has lost what it acknowledged before: reads wait until it
     * caught up (catchup.c). A reload's generation inherits the state (import). */
    s->recovering = env->generation == 1 && !c.data_dir && s->n_members > 1;
    if (c.data_dir) {
        size_t n = strlen(c.data_dir) + 32;
        s->data_dir = malloc(n);
        if (!s->data_dir) {
            free(s);
            return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        }
        snprintf(s->data_dir, n, "%s/node-%u", c.data_dir, env->node_id);
    }
    /* The first generation opens the store now, so that a bad data_dir stops the start. A
     * reload's generation gets the open store from the old one (LMDB must not be opened twice
     * in one process), or opens it at first use. */
    if (env->generation == 1 && !(s->store = open_store(s, NULL, err))) {
        free(s->data_dir);
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void storage_retire(void *state) {
    storage_catchup_retire(state);
}

static void storage_fini(void *state) {
    storage *s = state;
    storage_catchup_free(s);
    st_close(s->store); /* the disk store's writer finishes what is queued */
    free(s->data_dir);
    free(s);
}

/* ---- writes ------------------------------------------------------------------------------- */

void storage_apply(storage *s, const Proto__WriteRequest *w, st_done_fn done, void *arg) {
    st_store *st = storage_store(s, NULL);
    if (!st) {
        if (done) done(arg, ST_FAILED);
        return;
    }
    st_entry e = {.key = w->key,
                  .value = w->value,
                  .value_len = strlen(w->value),
                  .sec = w->time ? w->time->seconds : 0,
                  .nsec = w->time ? w->time->nanos : 0};
    st_write(st, &e, done, arg);
}

/* ---- replica handlers --------------------------------------------------------------------- */

/* ReadRPC; ReadQC answers the same (its caller combines the replies). */
void proto_storage_read_rpc_handler(nh_server_ctx *ctx, const Proto__ReadRequest *req,
                                    void *state) {
    char why[256];
    if (storage_recovery_status(state, why, sizeof why)) {
        nh_ctx_reply_error(ctx, NH_UNAVAILABLE, "%s", why);
        return;
    }
    st_store *st = storage_store(state, ctx);
    if (!st) return;
    st_entry e;
    int found = st_get(st, req->key, &e);
    if (found < 0) {
        nh_ctx_reply_error(ctx, NH_INTERNAL, "storage: read failed (see the node's log)");
        return;
    }
    Proto__ReadResponse resp = PROTO__READ_RESPONSE__INIT;
    Google__Protobuf__Timestamp t = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    if (found) {
        resp.ok = true;
        resp.value = (char *)e.value;
        t.seconds = e.sec;
        t.nanos = e.nsec;
        resp.time = &t;
    }
    proto_storage_read_rpc_reply(ctx, &resp); /* ReadQC's is the same */
}

void proto_storage_read_qc_handler(nh_server_ctx *ctx, const Proto__ReadRequest *req, void *state) {
    proto_storage_read_rpc_handler(ctx, req, state);
}

/* Answers a failed write; false when the write succeeded (old or new). Any thread. */
static bool write_failed(nh_server_ctx *ctx, const storage *s, st_put_result r) {
    switch (r) {
        case ST_OLD:
        case ST_NEW:
            return false;
        case ST_FULL:
            nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "storage is full (max_keys %zu%s)",
                               s->max_keys, s->data_dir ? " or map_size" : "");
            return true;
        case ST_INVALID:
            nh_ctx_reply_error(ctx, NH_INVALID_ARGUMENT,
                               "storage: the key must be 1 to %s bytes long",
                               s->data_dir ? "511" : "any number of");
            return true;
        case ST_FAILED:
        default:
            nh_ctx_reply_error(ctx, NH_INTERNAL, "storage: write failed (see the node's log)");
            return true;
    }
}

/* A write request waiting for its store: the memory store answers at once, the disk store from
 * its writer thread once the write is committed (and synced, unless sync is none). */
typedef struct pending_write {
    storage *s;
    nh_server_ctx *ctx;
    bool oneway;
} pending_write;

/* The plugin's own metrics (nodehost/metrics.h): series live as long as the process, so every
 * generation finds the same ones and the counts go on across reloads. */
static nh_metric *write_series(st_put_result r) {
    static nh_metric *series[3];
    int i = r == ST_NEW ? 0 : r == ST_OLD ? 1 : 2;
    nh_metric *m = __atomic_load_n(&series[i], __ATOMIC_ACQUIRE);
    if (!m) {
        static const char *const results[3] = {"new", "old", "failed"};
        nh_metric_label l = {"result", results[i]};
        m = nh_metric_counter("nodehost_storage_writes_total",
                              "Writes the storage plugin handled: new (stored), old (an equal or "
                              "newer version was kept) or failed.",
                              &l, 1, NULL);
        __atomic_store_n(&series[i], m, __ATOMIC_RELEASE);
    }
    return m;
}

static void write_done(void *arg, st_put_result r) {
    pending_write *pw = arg;
    nh_metric_add(write_series(r), 1);
    if (pw->oneway) {
        nh_ctx_finish(pw->ctx); /* a multicast: nothing is sent back, a failure is dropped */
    } else if (!write_failed(pw->ctx, pw->s, r)) {
        Proto__WriteResponse resp = PROTO__WRITE_RESPONSE__INIT;
        resp.new_ = r == ST_NEW;
        proto_storage_write_rpc_reply(pw->ctx, &resp); /* or WriteQC */
    }
    free(pw);
}

static void write_request(nh_server_ctx *ctx, const Proto__WriteRequest *req, storage *s,
                          bool oneway) {
    st_store *st = storage_store(s, ctx);
    if (!st) return;
    pending_write *pw = malloc(sizeof *pw);
    if (!pw) {
        if (oneway)
            nh_ctx_finish(ctx);
        else
            nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    *pw = (pending_write){s, ctx, oneway};
    /* A disk write is answered from the writer thread: the call stays open, and the stream's
     * order is released (the write is queued in order; only its answer waits for the disk). */
    if (st_store_env(st)) {
        nh_ctx_release(ctx);
        nh_ctx_defer(ctx);
    }
    storage_apply(s, req, write_done, pw);
}

/* WriteRPC; WriteQC answers the same. */
void proto_storage_write_rpc_handler(nh_server_ctx *ctx, const Proto__WriteRequest *req,
                                     void *state) {
    write_request(ctx, req, state, false);
}

void proto_storage_write_qc_handler(nh_server_ctx *ctx, const Proto__WriteRequest *req,
                                    void *state) {
    proto_storage_write_rpc_handler(ctx, req, state);
}

/* One-way, nothing is sent back (a write that fails is dropped). */
void proto_storage_write_multicast_handler(nh_server_ctx *ctx, const Proto__WriteRequest *req,
                                           void *state) {
    write_request(ctx, req, state, true);
}

/* ---- NotifyClients ------------------------------------------------------------------------ */

/* Notify's quorum function: done once every client answered (an empty value: the replies say
 * who acknowledged). */
static nh_qf_verdict all_replied(const Proto__WriteResponse *const *replies,
                                 const nh_node_reply *raw, size_t n, size_t config_size, void *user,
                                 const Proto__WriteResponse **result) {
    (void)replies, (void)raw, (void)user;
    *result = NULL;
    return n < config_size ? NH_QF_MORE : NH_QF_DONE;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void reply_acks(nh_server_ctx *ctx, const nh_node_reply *replies, size_t n) {
    uint32_t *ids = n ? malloc(n * sizeof *ids) : NULL;
    if (n && !ids) {
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (replies[i].err.code == NH_OK) ids[k++] = replies[i].node_id;
    if (k > 1) qsort(ids, k, sizeof *ids, cmp_u32);
    Proto__NotifyResponse resp = PROTO__NOTIFY_RESPONSE__INIT;
    resp.acked = (uint32_t)k;
    resp.n_clientids = k;
    resp.clientids = ids;
    proto_storage_notify_clients_reply(ctx, &resp);
    free(ids);
}

/* Whatever the outcome (all answered, timeout), the replies say who acknowledged. */
static void notify_done(const Proto__WriteResponse *value,
                        const Proto__WriteResponse *const *replies, const nh_qc_result *r,
                        void *user) {
    reply_acks(user, r->replies, r->n_replies);
}

void proto_storage_notify_clients_handler(nh_server_ctx *ctx, const Proto__WriteRequest *req,
                                          void *state) {
    const storage *s = state;
    nh_config *cc = nh_ctx_client_config(ctx);
    if (nh_config_size(cc) == 0) {
        nh_config_unref(cc);
        reply_acks(ctx, NULL, 0);
        return;
    }
    nh_ctx_release(ctx);
    nh_ctx_defer(ctx);
    proto_storage_client_notify_opts o = {.call = {.timeout_ms = s->notify_timeout_ms},
                                          .qf = all_replied};
    nh_error err;
    if (proto_storage_client_notify_async(cc, req, &o, notify_done, ctx, &err) != 0)
        nh_ctx_reply_error(ctx, err.code, "Notify: %s", err.message);
    nh_config_unref(cc);
}

/* ---- reload hand-over --------------------------------------------------------------------- */

/* An open disk store is handed over as a pointer (same process), marked so that nothing else
 * is mistaken for one; a memory store as a Snapshot of every entry. */
#define HANDOVER_MAGIC "NHSTORE1"

#define HANDOVER_MAX_PENDING 64

typedef struct handover {
    char magic[8];
    pid_t pid;
    st_env *env;
    uint32_t n_pending; /* unfinished pulls (more than the array holds: every peer) */
    uint32_t pending[HANDOVER_MAX_PENDING];
} handover;

/* The peers whose pulls the new generation must restart (s->pending). */
static int take_pending(storage *s, const uint32_t *ids, size_t n) {
    free(s->pending);
    s->pending = n ? malloc(n * sizeof *ids) : NULL;
    if (n && !s->pending) return -1;
    if (n) memcpy(s->pending, ids, n * sizeof *ids);
    s->n_pending = n;
    return 0;
}

static void add_entry(void *user, const st_entry *e) {
    entry_list *l = user;
    size_t k = l->n++;
    proto__write_request__init(&l->msgs[k]);
    google__protobuf__timestamp__init(&l->times[k]);
    l->copies[2 * k] = strdup(e->key);
    l->copies[2 * k + 1] = strndup(e->value, e->value_len);
    l->msgs[k].key = l->copies[2 * k];
    l->msgs[k].value = l->copies[2 * k + 1];
    l->times[k].seconds = e->sec;
    l->times[k].nanos = e->nsec;
    l->msgs[k].time = &l->times[k];
    l->ptrs[k] = &l->msgs[k];
}

int entry_list_fill(entry_list *l, st_store *st, const char *after, size_t limit, size_t max_bytes,
                    bool *more) {
    memset(l, 0, sizeof *l);
    *more = false;
    l->msgs = calloc(limit + 1, sizeof *l->msgs);
    l->ptrs = calloc(limit + 1, sizeof *l->ptrs);
    l->times = calloc(limit + 1, sizeof *l->times);
    l->copies = calloc(2 * limit + 1, sizeof *l->copies);
    if (!l->msgs || !l->ptrs || !l->times || !l->copies) return -1;
    if (limit) st_scan(st, after, limit, max_bytes, add_entry, l, more);
    for (size_t i = 0; i < 2 * l->n; i++)
        if (!l->copies[i]) return -1;
    return 0;
}

void entry_list_free(entry_list *l) {
    for (size_t i = 0; l->copies && i < 2 * l->n; i++)
        free(l->copies[i]);
    free(l->copies);
    free(l->msgs);
    free(l->ptrs);
    free(l->times);
    memset(l, 0, sizeof *l);
}

static int storage_export(void *state, nh_buf *out, nh_error *err) {
    storage *s = state;
    st_env *env = st_store_env(s->store);
    if (env) {
        /* The old generation keeps its store (and reference) until its fini; the new one takes
         * a reference of its own in import. */
        handover h = {.pid = getpid(), .env = env};
        h.n_pending = (uint32_t)storage_catchup_pending(s, h.pending, HANDOVER_MAX_PENDING);
        memcpy(h.magic, HANDOVER_MAGIC, 8);
        out->data = malloc(sizeof h);
        if (!out->data) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "OOM");
        memcpy(out->data, &h, sizeof h);
        out->len = sizeof h;
        return 0;
    }
    st_store *st = storage_store(s, NULL);
    entry_list l;
    bool more;
    int rc = st ? entry_list_fill(&l, st, "", st_count(st), SIZE_MAX, &more) : -1;
    uint32_t pending[HANDOVER_MAX_PENDING];
    if (rc == 0) {
        Proto__Snapshot snap = PROTO__SNAPSHOT__INIT;
        snap.n_entries = l.n;
        snap.entries = l.ptrs;
        snap.n_pendingpulls = storage_catchup_pending(s, pending, HANDOVER_MAX_PENDING);
        snap.pendingpulls = pending;
        snap.recovering = s->recovering;
        snap.n_caughtupfrom = s->n_caught_up;
        snap.caughtupfrom = s->caught_up;
        rc = nh_msg_pack(&snap.base, out);
    }
    if (st) entry_list_free(&l);
    if (rc != 0) nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    return rc;
}

static void import_done(void *arg, st_put_result r) {
    *(st_put_result *)arg = r;
}

static int storage_import(void *state, const uint8_t *data, size_t len, nh_error *err) {
    storage *s = state;
    if (len == sizeof(handover) && memcmp(data, HANDOVER_MAGIC, 8) == 0) {
        handover h;
        memcpy(&h, data, sizeof h);
        if (h.pid != getpid() || !h.env)
            return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                                "storage: the store handed over is not this process's");
        if (!s->data_dir || strcmp(s->data_dir, st_env_path(h.env)) != 0)
            return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                                "storage: data_dir cannot be changed by a reload (the store is "
                                "in %s); restart the node",
                                st_env_path(h.env));
        if (s->store) /* opened at first use meanwhile: never two handles on one store */
            return nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0,
                                "storage: the new generation already opened its store");
        if (!(s->store = open_store(s, h.env, err))) return -1;
        if (take_pending(s, h.pending, h.n_pending) != 0)
            return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        s->config_seen = false;
        return 0;
    }
    Proto__Snapshot *snap = proto__snapshot__unpack(NULL, len, data);
    if (!snap)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "storage: the state handed over does not decode (%zu bytes)", len);
    int rc = 0;
    if (snap->n_entries > s->max_keys)
        rc = nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0,
                          "storage: the state handed over has %zu keys, more than max_keys %zu",
                          snap->n_entries, s->max_keys);
    if (rc == 0 && !storage_store(s, NULL))
        rc = nh_error_set(err, NH_UNAVAILABLE, NH_ERR_LOCAL, 0, "storage: cannot open the store");
    /* A memory store takes every entry at once (and says which failed); a disk store (data_dir
     * added by this reload) queues them to its writer. */
    st_put_result w = ST_NEW;
    for (size_t i = 0; rc == 0 && i < snap->n_entries; i++) {
        storage_apply(s, snap->entries[i], st_store_env(s->store) ? NULL : import_done, &w);
        if (w == ST_FULL || w == ST_FAILED || w == ST_INVALID)
            rc = nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0,
                              "storage: cannot take key %zu of %zu: %s", i + 1, snap->n_entries,
                              w == ST_FULL ? "max_keys reached" : "write failed");
    }
    if (rc == 0 && take_pending(s, snap->pendingpulls, snap->n_pendingpulls) != 0)
        rc = nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    if (rc == 0 && snap->recovering) {
        s->recovering = true;
        s->caught_up =
            snap->n_caughtupfrom ? malloc(snap->n_caughtupfrom * sizeof(uint32_t)) : NULL;
        if (s->caught_up) {
            memcpy(s->caught_up, snap->caughtupfrom, snap->n_caughtupfrom * sizeof(uint32_t));
            s->n_caught_up = snap->n_caughtupfrom;
        }
    }
    proto__snapshot__free_unpacked(snap, NULL);
    return rc;
}

/* ---- Info --------------------------------------------------------------------------------- */

void proto_storage_info_handler(nh_server_ctx *ctx, const Google__Protobuf__Empty *req,
                                void *state) {
    (void)req;
    storage *s = state;
    st_store *st = storage_store(s, ctx);
    if (!st) return;
    Proto__InfoResponse r = PROTO__INFO_RESPONSE__INIT;
    r.version = (char *)NH_STORAGE_VERSION;
    r.generation = s->generation;
    r.keys = st_count(st);
    proto_storage_info_reply(ctx, &r);
}

/* proto.Storage only: StorageClient is served by client programs (nh-storage-client listen). */
NH_PLUGIN(
    PROTO_STORAGE_NH_METHODS, .name = "storage", .version = NH_STORAGE_VERSION,
    .description = "replicated, durable key-value store (proto.Storage, Gorums' storage example)",
    .check_config = storage_check_config, .init = storage_init, .fini = storage_fini,
    .export_state = storage_export, .import_state = storage_import,
    .config_changed = storage_config_changed, .retire = storage_retire);
