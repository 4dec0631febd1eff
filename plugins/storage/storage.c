/* storage: a replicated key-value store in the style of Gorums' examples/storage, with the same
 * wire format (storage.proto, package `proto`).
 *
 * Methods (proto.Storage):
 *   ReadRPC         RPC         ReadRequest  -> ReadResponse   read one node's copy
 *   WriteRPC        RPC         WriteRequest -> WriteResponse  write one node's copy
 *   ReadQC          QUORUMCALL  ReadRequest  -> ReadResponse   as ReadRPC (the caller combines)
 *   WriteQC         QUORUMCALL  WriteRequest -> WriteResponse  as WriteRPC
 *   WriteMulticast  MULTICAST   WriteRequest -> (nothing)      as WriteRPC, no reply
 *   nodehost extensions:
 *   ReadNestedQC    QUORUMCALL  ReadRequest  -> ReadResponse   the node reads with ReadQC over
 *                               its Config (majority of it), answers the newest value
 *   NotifyClients   RPC         WriteRequest -> NotifyResponse the node calls
 *                               proto.StorageClient.Notify on every client peer (ClientConfig)
 *
 * Writes: a write replaces the stored value only when its timestamp is strictly newer than the
 * stored one (a missing Time is the zero time); the reply says New = true then. Gorums' example
 * also replaces on an equal timestamp; here a repeated write reports New = false. A read of an
 * unknown key answers OK = false.
 *
 * ReadNestedQC releases the stream's order, then makes the quorum call asynchronously on the
 * owner thread (nothing blocks) and answers when a majority of the node's Config answered, or
 * with the call's error (FAILED_PRECONDITION when the node has no Config).
 *
 * NotifyClients forwards the WriteRequest to every client peer connected right now and waits for
 * all of them (up to notify_timeout_ms); it answers NotifyResponse{Acked, ClientIDs} with the
 * clients that answered without error, ascending. No clients: Acked = 0, success. The write is
 * not stored: it is a notification only.
 *
 * State: a hash map key -> (value, timestamp) owned by the plugin instance, used on the owner
 * thread only (every handler runs there; the asynchronous completions too). export_state and
 * import_state (reload) touch it as well: the host calls them where no handler of the same
 * generation can run at the same time (on the owner thread). The hand-over format is the
 * Snapshot message of storage.proto.
 *
 * Configuration:
 *   max_keys: 1 to 1e9 (suffixes k, M, Ki, Mi... accepted), default 100000: distinct keys
 *             kept; a write of a new key beyond it fails with RESOURCE_EXHAUSTED (WriteMulticast
 *             drops it); a reload whose handed-over state has more keys fails
 *   nested_timeout_ms: 1 to 3600000, default 5000: timeout of ReadNestedQC's quorum call
 *   notify_timeout_ms: 1 to 3600000, default 5000: how long NotifyClients waits for clients */
#include <nodehost/plugin.h>
#include <nodehost/quorum.h>

#include "storage.pb-c.h"
#include "storage_newest.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char *key; /* NULL: an empty slot */
    char *value;
    int64_t seconds;
    int32_t nanos;
} entry;

/* The version string; builds for reload tests set their own. */
#ifndef NH_STORAGE_VERSION
#define NH_STORAGE_VERSION "1.0.0"
#endif

typedef struct storage {
    /* Immutable after init. */
    uint64_t generation;
    size_t max_keys;
    uint32_t nested_timeout_ms, notify_timeout_ms;
    /* The store (owner thread only): open addressing, linear probing, no deletion. */
    entry *slots;
    size_t cap, count;
} storage;

typedef struct storage_conf {
    int64_t max_keys, nested_timeout_ms, notify_timeout_ms;
} storage_conf;

static const char *const storage_config_keys[] = {"max_keys", "nested_timeout_ms",
                                                  "notify_timeout_ms", NULL};

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
    return 0;
}

static int storage_check_config(const nh_conf_node *config, nh_error *err) {
    storage_conf c;
    return storage_read_config(config, &c, err);
}

static int storage_init(const nh_plugin_env *env, void **state, nh_error *err) {
    storage_conf c;
    if (storage_read_config(env->config, &c, err) != 0) return -1;
    storage *s = calloc(1, sizeof *s);
    if (!s) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    s->generation = env->generation;
    s->max_keys = (size_t)c.max_keys;
    s->nested_timeout_ms = (uint32_t)c.nested_timeout_ms;
    s->notify_timeout_ms = (uint32_t)c.notify_timeout_ms;
    *state = s;
    return 0;
}

static void storage_fini(void *state) {
    storage *s = state;
    for (size_t i = 0; i < s->cap; i++) {
        free(s->slots[i].key);
        free(s->slots[i].value);
    }
    free(s->slots);
    free(s);
}

/* ---- the map ------------------------------------------------------------------------------ */

static uint64_t hash_key(const char *k) {
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (; *k; k++)
        h = (h ^ (uint8_t)*k) * 1099511628211u;
    return h;
}

/* The slot holding key, or the empty slot where it would go (cap > 0, never full). */
static entry *slot_for(entry *slots, size_t cap, const char *key) {
    size_t i = (size_t)hash_key(key) & (cap - 1);
    while (slots[i].key && strcmp(slots[i].key, key) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static entry *store_find(const storage *s, const char *key) {
    if (!s->cap) return NULL;
    entry *e = slot_for(s->slots, s->cap, key);
    return e->key ? e : NULL;
}

/* Doubles the table (load kept under 70%). Returns 0 or -1 when out of memory. */
static int store_grow(storage *s) {
    size_t cap = s->cap ? s->cap * 2 : 16;
    entry *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i].key) *slot_for(slots, cap, s->slots[i].key) = s->slots[i];
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return 0;
}

typedef enum write_result {
    WRITE_OLD = 0,  /* not newer than the stored value: unchanged */
    WRITE_NEW = 1,  /* stored */
    WRITE_FULL = 2, /* a new key beyond max_keys */
    WRITE_OOM = 3,  /* out of memory */
} write_result;

static write_result store_write(storage *s, const Proto__WriteRequest *w) {
    int64_t sec = w->time ? w->time->seconds : 0;
    int32_t nsec = w->time ? w->time->nanos : 0;
    entry *e = store_find(s, w->key);
    if (e) {
        Google__Protobuf__Timestamp old = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        old.seconds = e->seconds;
        old.nanos = e->nanos;
        if (storage_ts_cmp(w->time, &old) <= 0) return WRITE_OLD;
        char *v = strdup(w->value);
        if (!v) return WRITE_OOM;
        free(e->value);
        e->value = v;
        e->seconds = sec;
        e->nanos = nsec;
        return WRITE_NEW;
    }
    if (s->count >= s->max_keys) return WRITE_FULL;
    if ((s->count + 1) * 10 > s->cap * 7 && store_grow(s) != 0) return WRITE_OOM;
    char *k = strdup(w->key), *v = strdup(w->value);
    if (!k || !v) {
        free(k);
        free(v);
        return WRITE_OOM;
    }
    e = slot_for(s->slots, s->cap, k);
    *e = (entry){.key = k, .value = v, .seconds = sec, .nanos = nsec};
    s->count++;
    return WRITE_NEW;
}

/* ---- handlers ----------------------------------------------------------------------------- */

static void reply_or_fail(nh_server_ctx *ctx, const ProtobufCMessage *msg) {
    if (nh_ctx_reply_msg(ctx, msg) != 0)
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
}

/* ReadRPC, ReadQC. */
static void h_read(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    const Proto__ReadRequest *req = (const Proto__ReadRequest *)request;
    const entry *e = store_find(state, req->key);
    Proto__ReadResponse resp = PROTO__READ_RESPONSE__INIT;
    Google__Protobuf__Timestamp t = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    if (e) {
        resp.ok = true;
        resp.value = e->value;
        t.seconds = e->seconds;
        t.nanos = e->nanos;
        resp.time = &t;
    }
    reply_or_fail(ctx, &resp.base);
}

/* WriteRPC, WriteQC. */
static void h_write(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    storage *s = state;
    Proto__WriteResponse resp = PROTO__WRITE_RESPONSE__INIT;
    switch (store_write(s, (const Proto__WriteRequest *)request)) {
        case WRITE_OLD:
            break;
        case WRITE_NEW:
            resp.new_ = true;
            break;
        case WRITE_FULL:
            nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "storage is full (max_keys %zu)",
                               s->max_keys);
            return;
        case WRITE_OOM:
            nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
            return;
    }
    reply_or_fail(ctx, &resp.base);
}

/* WriteMulticast: one-way, nothing is sent back (a write beyond max_keys is dropped). */
static void h_write_multicast(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    store_write(state, (const Proto__WriteRequest *)request);
    nh_ctx_finish(ctx); /* ended without a response: nothing goes back */
}

/* ReadNestedQC: ReadQC over this node's Config, answered asynchronously with the newest value. */
static void nested_done(const nh_qc_result *r, void *user) {
    nh_server_ctx *ctx = user;
    if (r->err.code == NH_OK)
        nh_ctx_reply(ctx, r->value, r->value_len);
    else
        nh_ctx_reply_error(ctx, r->err.code, "nested ReadQC: %s", r->err.message);
}

static void h_read_nested(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    const storage *s = state;
    nh_config *cfg = nh_ctx_config(ctx);
    if (nh_config_size(cfg) == 0) {
        nh_config_unref(cfg);
        nh_ctx_reply_error(ctx, NH_FAILED_PRECONDITION,
                           "ReadNestedQC needs the node's peer configuration (Config is empty)");
        return;
    }
    /* Release first (Gorums' rule before a nested call), then keep the call open. The request's
     * bytes are forwarded as they came: the call encodes them before returning. */
    nh_ctx_release(ctx);
    nh_ctx_defer(ctx);
    size_t len;
    const uint8_t *payload = nh_ctx_payload(ctx, &len);
    nh_qc_opts o = {.call = {.timeout_ms = s->nested_timeout_ms},
                    .quorum = {.kind = NH_QUORUM_CUSTOM, .fn = storage_newest_qf}};
    nh_error err;
    if (nh_quorum_call_async(cfg, "proto.Storage.ReadQC", payload, len, &o, nested_done, ctx,
                             &err) != 0)
        nh_ctx_reply_error(ctx, err.code, "nested ReadQC: %s", err.message);
    nh_config_unref(cfg); /* the call holds its own reference */
}

/* NotifyClients: Notify to every client peer; reports who acknowledged. */
static nh_qf_verdict all_replied(const nh_node_reply *replies, size_t n, size_t config_size,
                                 void *user, const uint8_t **result, size_t *result_len) {
    if (n < config_size) return NH_QF_MORE;
    *result = (const uint8_t *)"";
    *result_len = 0;
    return NH_QF_DONE;
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
    reply_or_fail(ctx, &resp.base);
    free(ids);
}

/* Whatever the outcome (all answered, timeout), the replies say who acknowledged. */
static void notify_done(const nh_qc_result *r, void *user) {
    reply_acks(user, r->replies, r->n_replies);
}

static void h_notify_clients(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    const storage *s = state;
    nh_config *cc = nh_ctx_client_config(ctx);
    if (nh_config_size(cc) == 0) {
        nh_config_unref(cc);
        reply_acks(ctx, NULL, 0);
        return;
    }
    nh_ctx_release(ctx);
    nh_ctx_defer(ctx);
    size_t len;
    const uint8_t *payload = nh_ctx_payload(ctx, &len);
    nh_qc_opts o = {.call = {.timeout_ms = s->notify_timeout_ms},
                    .quorum = {.kind = NH_QUORUM_CUSTOM, .fn = all_replied}};
    nh_error err;
    if (nh_quorum_call_async(cc, "proto.StorageClient.Notify", payload, len, &o, notify_done, ctx,
                             &err) != 0)
        nh_ctx_reply_error(ctx, err.code, "Notify: %s", err.message);
    nh_config_unref(cc);
}

/* ---- reload hand-over --------------------------------------------------------------------- */

static int storage_export(void *state, nh_buf *out, nh_error *err) {
    storage *s = state;
    Proto__WriteRequest *msgs = s->count ? calloc(s->count, sizeof *msgs) : NULL;
    Proto__WriteRequest **ptrs = s->count ? calloc(s->count, sizeof *ptrs) : NULL;
    Google__Protobuf__Timestamp *times = s->count ? calloc(s->count, sizeof *times) : NULL;
    int rc = -1;
    if (s->count && (!msgs || !ptrs || !times)) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < s->cap; i++) {
        const entry *e = &s->slots[i];
        if (!e->key) continue;
        proto__write_request__init(&msgs[k]);
        google__protobuf__timestamp__init(&times[k]);
        msgs[k].key = e->key;
        msgs[k].value = e->value;
        times[k].seconds = e->seconds;
        times[k].nanos = e->nanos;
        msgs[k].time = &times[k];
        ptrs[k] = &msgs[k];
        k++;
    }
    Proto__Snapshot snap = PROTO__SNAPSHOT__INIT;
    snap.n_entries = k;
    snap.entries = ptrs;
    if (nh_msg_pack(&snap.base, out) != 0) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        goto done;
    }
    rc = 0;
done:
    free(msgs);
    free(ptrs);
    free(times);
    return rc;
}

static int storage_import(void *state, const uint8_t *data, size_t len, nh_error *err) {
    storage *s = state;
    Proto__Snapshot *snap = proto__snapshot__unpack(NULL, len, data);
    if (!snap)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "storage: the state handed over does not decode (%zu bytes)", len);
    int rc = 0;
    if (snap->n_entries > s->max_keys) {
        rc = nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0,
                          "storage: the state handed over has %zu keys, more than max_keys %zu",
                          snap->n_entries, s->max_keys);
    }
    for (size_t i = 0; rc == 0 && i < snap->n_entries; i++) {
        write_result w = store_write(s, snap->entries[i]);
        if (w == WRITE_FULL || w == WRITE_OOM)
            rc = nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0,
                              "storage: cannot take key %zu of %zu: %s", i + 1, snap->n_entries,
                              w == WRITE_FULL ? "max_keys reached" : "out of memory");
    }
    proto__snapshot__free_unpacked(snap, NULL);
    return rc;
}

/* ---- Info ------------------------------------------------------------------------------- */

static void h_info(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    (void)request;
    const storage *s = state;
    Proto__InfoResponse r = PROTO__INFO_RESPONSE__INIT;
    r.version = (char *)NH_STORAGE_VERSION;
    r.generation = s->generation;
    r.keys = s->count;
    reply_or_fail(ctx, &r.base);
}

/* ---- descriptor --------------------------------------------------------------------------- */

#define MSG(t) &proto__##t##__descriptor
static const nh_plugin_method storage_methods[] = {
    {"proto.Storage.ReadRPC", NH_CALL_RPC, MSG(read_request), MSG(read_response), h_read},
    {"proto.Storage.WriteRPC", NH_CALL_RPC, MSG(write_request), MSG(write_response), h_write},
    {"proto.Storage.ReadQC", NH_CALL_QUORUMCALL, MSG(read_request), MSG(read_response), h_read},
    {"proto.Storage.WriteQC", NH_CALL_QUORUMCALL, MSG(write_request), MSG(write_response), h_write},
    {"proto.Storage.WriteMulticast", NH_CALL_MULTICAST, MSG(write_request), NULL,
     h_write_multicast},
    {"proto.Storage.ReadNestedQC", NH_CALL_QUORUMCALL, MSG(read_request), MSG(read_response),
     h_read_nested},
    {"proto.Storage.NotifyClients", NH_CALL_RPC, MSG(write_request), MSG(notify_response),
     h_notify_clients},
    {"proto.Storage.Info", NH_CALL_RPC, &google__protobuf__empty__descriptor, MSG(info_response),
     h_info},
};
#undef MSG

static const nh_plugin_descriptor storage_descriptor = {
    .magic = NH_PLUGIN_MAGIC,
    .size = sizeof(nh_plugin_descriptor),
    .abi_version = NH_PLUGIN_ABI_VERSION,
    .name = "storage",
    .version = NH_STORAGE_VERSION,
    .description = "replicated key-value store (proto.Storage, Gorums' storage example)",
    .methods = storage_methods,
    .method_count = sizeof storage_methods / sizeof storage_methods[0],
    .check_config = storage_check_config,
    .init = storage_init,
    .fini = storage_fini,
    .export_state = storage_export,
    .import_state = storage_import,
};

NH_PLUGIN_DEFINE(storage_descriptor)
