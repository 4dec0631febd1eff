/* storage: a replicated key-value store in the style of Gorums' examples/storage, with the same
 * wire format (storage.proto, package `proto`), made durable and linearizable; the design is in
 * docs/architecture.md, the configuration keys in docs/man/nodehost.yaml.5. This file: the
 * configuration, the replica methods (each on the node's own copy), NotifyClients, Info, Pull's
 * server side and the reload hand-over (coordinate.c: ReadNestedQC, WriteNestedQC; catchup.c:
 * the pulls). An entry is replaced only by a newer version (store.h), so replicas stay identical
 * whatever order they see writes in (Gorums' example also replaces on an equal timestamp). A disk
 * write is answered once committed (and synced, unless sync is none); readers see a write only
 * once it is committed, so with sync always or batch nothing read can be lost. */
#include "storage_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The version string; builds for reload tests set their own. */
#ifndef NH_STORAGE_VERSION
#define NH_STORAGE_VERSION "1.0.0"
#endif

static const char *const sync_names[] = {"always", "batch", "none"}; /* by st_sync */

/* Reads the configuration into c (its settings) and *data_dir. */
static int storage_read_config(const nh_conf_node *config, storage *c, const char **data_dir,
                               nh_error *err) {
    static const char *const keys[] = {
        "max_keys", "nested_timeout_ms", "notify_timeout_ms", "data_dir",
        "sync",     "map_size",          "pull_page",         NULL};
    const char *sync;
    if (nh_conf_check_keys(config, keys, err) != 0 ||
        nh_conf_int(config, "max_keys", 100000, 1, 1000000000, true, &c->max_keys, err) != 0 ||
        nh_conf_int(config, "nested_timeout_ms", 5000, 1, 3600000, false, &c->nested_timeout_ms,
                    err) != 0 ||
        nh_conf_int(config, "notify_timeout_ms", 5000, 1, 3600000, false, &c->notify_timeout_ms,
                    err) != 0 ||
        nh_conf_int(config, "map_size", 1LL << 30, 64LL << 20, 1LL << 40, true, &c->map_size,
                    err) != 0 ||
        nh_conf_int(config, "pull_page", 500, 1, 10000, false, &c->pull_page, err) != 0 ||
        nh_conf_string(config, "data_dir", NULL, data_dir, err) != 0)
        return -1;
    if (*data_dir && !**data_dir)
        return nh_conf_error(nh_conf_get(config, "data_dir"), err,
                             "must be a directory path, got an empty string");
    if (nh_conf_string(config, "sync", "batch", &sync, err) != 0) return -1;
    for (c->sync = ST_SYNC_ALWAYS; c->sync <= ST_SYNC_NONE; c->sync++)
        if (!strcmp(sync, sync_names[c->sync])) return 0;
    return nh_conf_error(nh_conf_get(config, "sync"), err,
                         "must be always, batch or none, got \"%s\"", sync);
}

static int storage_check_config(const nh_conf_node *config, nh_error *err) {
    const char *data_dir;
    return storage_read_config(config, &(storage){0}, &data_dir, err);
}

static int oom(nh_error *err) {
    return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
}

/* A disk store on env, or (env NULL) the store of the configuration: memory, or disk opened
 * from data_dir. */
static st_store *open_store(storage *s, st_env *env, nh_error *err) {
    if (!s->data_dir) {
        st_store *m = st_open_memory(s->max_keys);
        if (!m) oom(err);
        return m;
    }
    st_env *own = env ? NULL : st_env_open(s->data_dir, s->map_size, err);
    if (!env && !own) return NULL;
    st_store *d = st_open_lmdb(env ? env : own, s->max_keys, s->sync, err);
    st_env_unref(own); /* the store holds its own reference */
    if (d)
        nh_logf(NH_LOG_INFO, "storage", "store %s %s: %zu keys (sync: %s)", s->data_dir,
                env ? "taken over from the previous generation" : "open", st_count(d),
                sync_names[s->sync]);
    return d;
}

/* The store, opened on first use if needed; NULL (with an error answered on ctx, when given) when
 * it cannot be opened. */
static st_store *storage_store(storage *s, nh_server_ctx *ctx) {
    if (s->store) return s->store;
    nh_error err;
    s->store = open_store(s, NULL, &err);
    if (!s->store) {
        nh_logf(NH_LOG_ERROR, "storage", "%s", err.message);
        if (ctx) nh_ctx_reply_error(ctx, NH_UNAVAILABLE, "%s", err.message);
    }
    return s->store;
}

static void storage_retire(void *state) {
    ((storage *)state)->retired = true;
}

static void storage_fini(void *state) {
    storage *s = state;
    storage_catchup_free(s);
    st_close(s->store); /* the disk store's writer finishes what is queued */
    free(s->data_dir);
    free(s);
}

static int storage_init(const nh_plugin_env *env, void **state, nh_error *err) {
    storage *s = calloc(1, sizeof *s);
    const char *data_dir;
    if (!s) return oom(err);
    s->generation = env->generation;
    s->node_id = env->node_id;
    s->rt = env->runtime;
    s->srv = env->server;
    int rc = storage_read_config(env->config, s, &data_dir, err);
    if (rc == 0 && data_dir && asprintf(&s->data_dir, "%s/node-%u", data_dir, env->node_id) < 0) {
        s->data_dir = NULL; /* undefined after a failure */
        rc = oom(err);
    }
    /* The first generation opens the store now, so that a bad data_dir stops the start. A
     * reload's generation gets the open store from the old one (LMDB must not be opened twice
     * in one process), or opens it at first use. */
    if (rc == 0 && env->generation == 1 && !(s->store = open_store(s, NULL, err))) rc = -1;
    if (rc != 0) {
        storage_fini(s);
        return -1;
    }
    nh_config *members = nh_server_members(env->server);
    s->n_members = nh_config_size(members);
    nh_config_unref(members);
    /* The plugin's own metrics: a series lives as long as the process, so every generation
     * gets the same ones and the counts go on across reloads. */
    static const char *const results[3] = {"new", "old", "failed"};
    for (int i = 0; i < 3; i++)
        s->writes[i] = nh_metric_counter(
            "nodehost_storage_writes_total",
            "Writes the storage plugin handled: new (stored), old (an equal or newer version was "
            "kept) or failed.",
            &(nh_metric_label){"result", results[i]}, 1, NULL);
    /* A memory store that starts has lost what it acknowledged before: reads wait until it
     * caught up (catchup.c). A reload's generation inherits the state (import). */
    s->recovering = env->generation == 1 && !data_dir && s->n_members > 1;
    *state = s;
    return 0;
}

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
    storage *s = state;
    st_store *st = NULL;
    if (s->recovering) /* a memory store that started and has not caught up yet (catchup.c) */
        nh_ctx_reply_error(ctx, NH_UNAVAILABLE,
                           "storage: node %u restarted without data_dir and has caught up from "
                           "%zu of the %zu peers it needs before it answers reads",
                           s->node_id, s->n_caught_up, storage_recovery_needed(s));
    if (s->recovering || !(st = storage_store(s, ctx))) return;
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
    proto_storage_read_rpc_reply(ctx, &resp);
}

void proto_storage_read_qc_handler(nh_server_ctx *ctx, const Proto__ReadRequest *req, void *state) {
    proto_storage_read_rpc_handler(ctx, req, state);
}

/* A write waiting for its store's result (write_done). */
typedef struct pending_write {
    storage *s;
    nh_server_ctx *ctx;
    bool oneway;
} pending_write;

/* Answers the write (any thread). */
static void write_done(void *arg, st_put_result r) {
    pending_write *pw = arg;
    const storage *s = pw->s;
    nh_metric_add(s->writes[r == ST_NEW ? 0 : r == ST_OLD ? 1 : 2], 1);
    if (pw->oneway) {
        nh_ctx_finish(pw->ctx); /* a multicast: nothing is sent back, a failure is dropped */
    } else if (r == ST_OLD || r == ST_NEW) {
        Proto__WriteResponse resp = PROTO__WRITE_RESPONSE__INIT;
        resp.new_ = r == ST_NEW;
        proto_storage_write_rpc_reply(pw->ctx, &resp); /* or WriteQC */
    } else if (r == ST_FULL) {
        nh_ctx_reply_error(pw->ctx, NH_RESOURCE_EXHAUSTED, "storage is full (max_keys %zu%s)",
                           (size_t)s->max_keys, s->data_dir ? " or map_size" : "");
    } else if (r == ST_INVALID) {
        nh_ctx_reply_error(pw->ctx, NH_INVALID_ARGUMENT,
                           "storage: the key must be 1 to %s bytes long",
                           s->data_dir ? "511" : "any number of");
    } else {
        nh_ctx_reply_error(pw->ctx, NH_INTERNAL, "storage: write failed (see the node's log)");
    }
    free(pw);
}

static void write_request(nh_server_ctx *ctx, const Proto__WriteRequest *req, storage *s,
                          bool oneway) {
    st_store *st = storage_store(s, ctx);
    if (!st) return;
    pending_write *pw = malloc(sizeof *pw);
    if (!pw) { /* a multicast ends when this returns: nothing is sent back */
        if (!oneway) nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
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
    write_request(ctx, req, state, false);
}

void proto_storage_write_multicast_handler(nh_server_ctx *ctx, const Proto__WriteRequest *req,
                                           void *state) {
    write_request(ctx, req, state, true);
}

/* ---- NotifyClients ------------------------------------------------------------------------ */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Whatever the outcome (all answered, timeout), the replies say who acknowledged. */
static void notify_done(const Proto__WriteResponse *value,
                        const Proto__WriteResponse *const *replies, const nh_qc_result *r,
                        void *ctx) {
    uint32_t *ids = malloc((r->n_replies + 1) * sizeof *ids);
    if (!ids) {
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < r->n_replies; i++)
        if (r->replies[i].err.code == NH_OK) ids[k++] = r->replies[i].node_id;
    qsort(ids, k, sizeof *ids, cmp_u32);
    Proto__NotifyResponse resp = PROTO__NOTIFY_RESPONSE__INIT;
    resp.acked = (uint32_t)k;
    resp.n_clientids = k;
    resp.clientids = ids;
    proto_storage_notify_clients_reply(ctx, &resp);
    free(ids);
}

void proto_storage_notify_clients_handler(nh_server_ctx *ctx, const Proto__WriteRequest *req,
                                          void *state) {
    const storage *s = state;
    nh_config *cc = nh_ctx_client_config(ctx);
    nh_ctx_release(ctx);
    nh_ctx_defer(ctx);
    /* Every client: the rule waits for each one's answer or error (or the timeout). */
    proto_storage_client_notify_opts o = {.call = {.timeout_ms = s->notify_timeout_ms},
                                          .quorum = {.kind = NH_QUORUM_ALL}};
    nh_error err;
    if (nh_config_size(cc) == 0) /* no client: none acknowledged */
        notify_done(NULL, NULL, &(nh_qc_result){0}, ctx);
    else if (proto_storage_client_notify_async(cc, req, &o, notify_done, ctx, &err) != 0)
        nh_ctx_reply_error(ctx, err.code, "Notify: %s", err.message);
    nh_config_unref(cc);
}

/* ---- Pull and reload hand-over: entries as WriteRequest messages ---------------------------- */

/* An entry's message with its timestamp, key and value, in one allocation (e is borrowed). */
typedef struct listed {
    Proto__WriteRequest msg;
    Google__Protobuf__Timestamp time;
    char text[];
} listed;

static void add_entry(void *user, const st_entry *e) {
    Proto__PullResponse *page = user;
    size_t klen = strlen(e->key) + 1;
    listed *x = malloc(sizeof *x + klen + e->value_len + 1);
    page->entries[page->n_entries++] = x ? &x->msg : NULL; /* NULL: out of memory */
    if (!x) return;
    *x = (listed){PROTO__WRITE_REQUEST__INIT, GOOGLE__PROTOBUF__TIMESTAMP__INIT};
    x->time.seconds = e->sec;
    x->time.nanos = e->nsec;
    x->msg.time = &x->time;
    x->msg.key = memcpy(x->text, e->key, klen);
    x->msg.value = memcpy(x->text + klen, e->value, e->value_len);
    x->msg.value[e->value_len] = '\0';
}

/* Fills page with up to limit entries of the store after `after` (st_scan()); 0, or -1 when out
 * of memory (entries_free() it either way). */
static int entries_fill(Proto__PullResponse *page, st_store *st, const char *after, size_t limit,
                        size_t max_bytes) {
    bool more = false;
    if (!(page->entries = calloc(limit + 1, sizeof *page->entries))) return -1;
    if (limit) st_scan(st, after, limit, max_bytes, add_entry, page, &more);
    page->more = more;
    for (size_t i = 0; i < page->n_entries; i++)
        if (!page->entries[i]) return -1;
    return 0;
}

static void entries_free(Proto__PullResponse *page) {
    for (size_t i = 0; i < page->n_entries; i++)
        free(page->entries[i]); /* its listed */
    free(page->entries);
}

/* One page of catch-up (catchup.c pulls them). */
void proto_storage_pull_handler(nh_server_ctx *ctx, const Proto__PullRequest *req, void *state) {
    st_store *st = storage_store(state, ctx);
    if (!st) return;
    size_t limit = req->limit ? req->limit : 500;
    if (limit > 10000) limit = 10000;
    Proto__PullResponse page = PROTO__PULL_RESPONSE__INIT;
    /* ~1 MiB of keys and values a page: far below the 4 MiB message limit. */
    if (entries_fill(&page, st, req->after, limit, 1u << 20) == 0)
        proto_storage_pull_reply(ctx, &page);
    else
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
    entries_free(&page);
}

/* The state goes to the next generation as a Snapshot: a disk store as its open environment
 * (the same process: LMDB must not be opened twice; the old generation keeps its reference until
 * its fini, the new one takes one of its own), a memory store as every entry; and the catch-up
 * state either way. DISK_MARK marks a hand-over that carries an open disk store. */
#define DISK_MARK "NHSTORE2"

static int storage_export(void *state, nh_buf *out, nh_error *err) {
    storage *s = state;
    st_store *st = storage_store(s, NULL);
    Proto__Snapshot snap = PROTO__SNAPSHOT__INIT;
    snap.store = (uintptr_t)st_store_env(st);
    snap.process = getpid();
    snap.configcaughtup = storage_caught_up_config(s, &snap.n_configcaughtup);
    snap.recovering = s->recovering;
    snap.n_caughtupfrom = s->n_caught_up;
    snap.caughtupfrom = s->caught_up;
    Proto__PullResponse all = PROTO__PULL_RESPONSE__INIT;
    int rc = st && snap.configcaughtup ? 0 : -1;
    if (rc == 0 && !snap.store) rc = entries_fill(&all, st, "", st_count(st), SIZE_MAX);
    snap.n_entries = all.n_entries;
    snap.entries = all.entries;
    /* A disk store's hand-over starts with DISK_MARK, which no Snapshot decoder accepts: an
     * older build refuses it rather than open the store a second time in this process. */
    size_t mark = snap.store ? 8 : 0;
    uint8_t *buf = rc == 0 ? malloc(mark + protobuf_c_message_get_packed_size(&snap.base)) : NULL;
    if (buf) {
        memcpy(buf, DISK_MARK, mark);
        *out = (nh_buf){buf, mark + protobuf_c_message_pack(&snap.base, buf + mark)};
    }
    entries_free(&all);
    free(snap.configcaughtup);
    return buf ? 0 : oom(err);
}

static void import_done(void *arg, st_put_result r) {
    *(st_put_result *)arg = r;
}

/* A local error "storage: ..." in err; returns -1. */
#define ERR(code, ...) nh_error_set(err, code, NH_ERR_LOCAL, 0, "storage: " __VA_ARGS__)

static int storage_import(void *state, const uint8_t *data, size_t len, nh_error *err) {
    storage *s = state;
    bool disk = len >= 8 && memcmp(data, DISK_MARK, 8) == 0;
    if (len >= 8 && memcmp(data, "NHSTORE1", 8) == 0)
        return ERR(NH_FAILED_PRECONDITION, "the store was handed over by an older storage "
                                           "plugin; restart the node to load this one");
    Proto__Snapshot *snap = proto__snapshot__unpack(NULL, disk ? len - 8 : len, data + disk * 8);
    if (!snap)
        return ERR(NH_INVALID_ARGUMENT, "the state handed over does not decode (%zu bytes)", len);
    st_env *env = disk ? (st_env *)(uintptr_t)snap->store : NULL;
    int rc = 0;
    if (env && snap->process != getpid())
        rc = ERR(NH_INVALID_ARGUMENT, "the store handed over is not this process's");
    else if (env && (!s->data_dir || strcmp(s->data_dir, st_env_path(env)) != 0))
        rc = ERR(NH_FAILED_PRECONDITION,
                 "data_dir cannot be changed by a reload (the store is in %s); restart the node",
                 st_env_path(env));
    else if (env && s->store) /* opened at first use meanwhile: never two handles on one store */
        rc = ERR(NH_INTERNAL, "the new generation already opened its store");
    else if (env)
        rc = (s->store = open_store(s, env, err)) ? 0 : -1;
    else if (snap->n_entries > (size_t)s->max_keys)
        rc =
            ERR(NH_RESOURCE_EXHAUSTED, "the state handed over has %zu keys, more than max_keys %zu",
                snap->n_entries, (size_t)s->max_keys);
    else if (!storage_store(s, NULL))
        rc = ERR(NH_UNAVAILABLE, "cannot open the store");
    /* A memory store takes every entry at once (and says which failed); a disk store (data_dir
     * added by this reload) queues them to its writer. */
    st_put_result w = ST_NEW;
    for (size_t i = 0; rc == 0 && i < snap->n_entries; i++) {
        storage_apply(s, snap->entries[i], st_store_env(s->store) ? NULL : import_done, &w);
        if (w == ST_FULL || w == ST_FAILED || w == ST_INVALID)
            rc = ERR(NH_RESOURCE_EXHAUSTED, "cannot take key %zu of %zu: %s", i + 1,
                     snap->n_entries, w == ST_FULL ? "max_keys reached" : "write failed");
    }
    if (rc == 0) { /* the ID lists move to s (the Snapshot is freed without them) */
        free(s->config_ids);
        s->config_ids = snap->configcaughtup;
        s->n_config_ids = snap->n_configcaughtup;
        snap->configcaughtup = NULL;
    }
    if (rc == 0 && snap->recovering) {
        s->recovering = true;
        free(s->caught_up);
        s->caught_up = snap->caughtupfrom;
        s->n_caught_up = snap->n_caughtupfrom;
        snap->caughtupfrom = NULL;
    }
    proto__snapshot__free_unpacked(snap, NULL);
    return rc;
}

void proto_storage_info_handler(nh_server_ctx *ctx, const Google__Protobuf__Empty *req,
                                void *state) {
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
