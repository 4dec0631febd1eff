/* A small harness for the bundled plugins' tests (tests/host/test_plugins_*.c), without the
 * nodehost program: it dlopen()s a built plugin (NH_BINARY_DIR/plugins/<name>.so), runs three
 * in-process nodes (one runtime and one symmetric server each, on free loopback ports), starts a
 * plugin instance per node and serves every method through a thin trampoline (decode with the
 * method's request descriptor, call the handler, free the request when the call ends).
 *
 * The tests build and read messages through the plugin's own descriptors (protobuf-c
 * reflection), so they need none of the plugin's generated code.
 *
 * Header-only (static inline functions): include it once per test program. */
#ifndef TEST_PLUGINS_HARNESS_H
#define TEST_PLUGINS_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nh_test_util.h"

#include <nodehost/nodehost.h>
#include <nodehost/plugin.h>

#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PH_NODES      3
#define PH_TIMEOUT_MS 20000 /* generous: sanitizer builds are slow */

/* ---- loading ------------------------------------------------------------------------------ */

typedef struct ph_plugin {
    void *dl;
    const nh_plugin_descriptor *d;
} ph_plugin;

static inline void ph_load(ph_plugin *p, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/plugins/%s.so", nh_test_binary_dir(), name);
    p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl) fail_msg("dlopen %s: %s (build the `%s` target first)", path, dlerror(), name);
    nh_plugin_entry_fn entry = (nh_plugin_entry_fn)dlsym(p->dl, NH_PLUGIN_ENTRY_SYMBOL);
    if (!entry) fail_msg("%s: no %s", path, NH_PLUGIN_ENTRY_SYMBOL);
    p->d = entry();
    assert_non_null(p->d);
    assert_int_equal(p->d->magic, NH_PLUGIN_MAGIC);
    assert_int_equal(p->d->abi_version, NH_PLUGIN_ABI_VERSION);
    assert_int_equal(p->d->size, sizeof(nh_plugin_descriptor));
    assert_string_equal(p->d->name, name);
    assert_true(p->d->method_count > 0);
}

static inline void ph_unload(ph_plugin *p) {
    if (p->dl) dlclose(p->dl);
    p->dl = NULL;
    p->d = NULL;
}

static inline const nh_plugin_method *ph_method(const ph_plugin *p, const char *name) {
    for (size_t i = 0; i < p->d->method_count; i++)
        if (!strcmp(p->d->methods[i].name, name)) return &p->d->methods[i];
    fail_msg("plugin %s has no method %s", p->d->name, name);
    return NULL;
}

/* ---- a plugin's config subtree (what the host would read from YAML) ---------------------- */

typedef struct ph_conf {
    nh_conf_node root;
    nh_conf_node items[8];
} ph_conf;

/* Fills c as the map { k1: v1, k2: v2, ... } (NULL-terminated pairs) and returns its root.
 * Values are plain scalars; an empty one is the quoted "". */
static inline const nh_conf_node *ph_conf_map(ph_conf *c, ...) {
    memset(c, 0, sizeof *c);
    c->root = (nh_conf_node){.kind = NH_CONF_MAP,
                             .key = "config",
                             .items = c->items,
                             .file = "test.yaml",
                             .line = 1,
                             .col = 9,
                             .key_line = 1,
                             .key_col = 1};
    va_list ap;
    va_start(ap, c);
    const char *k;
    while ((k = va_arg(ap, const char *)) && c->root.count < 8) {
        nh_conf_node *n = &c->items[c->root.count];
        *n = (nh_conf_node){.kind = NH_CONF_SCALAR,
                            .key = k,
                            .value = va_arg(ap, const char *),
                            .parent = &c->root,
                            .index = c->root.count,
                            .file = "test.yaml",
                            .line = (uint32_t)c->root.count + 2,
                            .col = 5 + (uint32_t)strlen(k),
                            .key_line = (uint32_t)c->root.count + 2,
                            .key_col = 3};
        n->quoted = n->value[0] == '\0'; /* written `k: ""`, not `k:` (null) */
        c->root.count++;
    }
    va_end(ap);
    return &c->root;
}

/* ---- nodes -------------------------------------------------------------------------------- */

typedef struct ph_binding {
    const nh_plugin_method *m;
    void *state;
} ph_binding;

typedef struct ph_node {
    uint32_t id;
    char addr[32];
    nh_runtime *rt;
    nh_server *srv;
    void *state;                   /* the plugin instance */
    ph_binding *bindings;          /* one per method */
    const nh_plugin_descriptor *d; /* for config_changed */
    void *live;                    /* atomic: the instance config_changed goes to */
} ph_node;

typedef struct ph_cluster {
    ph_plugin plugin;
    ph_node n[PH_NODES];
    nh_node_addr peers[PH_NODES];
} ph_cluster;

static inline void ph_free_request(nh_server_ctx *ctx, void *arg) {
    (void)ctx;
    protobuf_c_message_free_unpacked(arg, NULL);
}

/* The trampoline the host program will have: decode, call, free the request at the call's end. */
static inline void ph_trampoline(nh_server_ctx *ctx, void *user) {
    const ph_binding *b = user;
    size_t len;
    const uint8_t *p = nh_ctx_payload(ctx, &len);
    ProtobufCMessage *req = protobuf_c_message_unpack(b->m->request, NULL, len, p);
    if (!req) {
        nh_ctx_reply_error(ctx, NH_INVALID_ARGUMENT, "request does not decode as %s",
                           b->m->request->name);
        return;
    }
    nh_ctx_on_end(ctx, ph_free_request, req);
    b->m->handler(ctx, req, b->state);
}

/* Serves every method of the plugin on node with `state` (replacing earlier registrations). */
/* Config and ClientConfig changes reach the bound instance's config_changed, as in nodehost
 * (owner thread). */
static inline void ph_on_config(nh_config *cfg, bool client, void *user) {
    ph_node *node = user;
    void *st = __atomic_load_n(&node->live, __ATOMIC_ACQUIRE);
    if (st && node->d && node->d->config_changed) node->d->config_changed(st, cfg, client);
}

/* Tells a newly bound instance the configurations as they are (owner thread). */
static inline void ph_announce(void *arg) {
    ph_node *node = arg;
    for (int client = 0; client < 2; client++) {
        nh_config *cfg = client ? nh_server_client_config(node->srv) : nh_server_config(node->srv);
        ph_on_config(cfg, client, node);
        nh_config_unref(cfg);
    }
}

static inline void ph_bind(const ph_plugin *p, ph_node *node, void *state) {
    ph_binding *b = calloc(p->d->method_count, sizeof *b);
    assert_non_null(b);
    nh_error err;
    for (size_t i = 0; i < p->d->method_count; i++) {
        b[i] = (ph_binding){&p->d->methods[i], state};
        if (nh_server_handle(node->srv, b[i].m->name, ph_trampoline, &b[i], &err) != 0)
            fail_msg("%s: %s", b[i].m->name, err.message);
    }
    free(node->bindings); /* nothing uses the old ones once nh_server_handle returned */
    node->bindings = b;
    node->state = state;
    node->d = p->d;
    __atomic_store_n(&node->live, state, __ATOMIC_RELEASE);
    if (node->rt) nh_runtime_post(node->rt, ph_announce, node);
}

/* Creates a plugin instance for node (check_config, then init). */
static inline void *ph_instance(const ph_plugin *p, ph_node *node, const nh_conf_node *conf,
                                uint64_t generation) {
    nh_error err;
    if (p->d->check_config && p->d->check_config(conf, &err) != 0)
        fail_msg("check_config: %s", err.message);
    nh_plugin_env env = {.size = sizeof env,
                         .runtime = node->rt,
                         .server = node->srv,
                         .node_id = node->id,
                         .name = p->d->name,
                         .config = conf,
                         .generation = generation};
    void *state = NULL;
    if (p->d->init(&env, &state, &err) != 0) fail_msg("init: %s", err.message);
    return state;
}

/* Starts node i: runtime, server (symmetric: all peers, dialing them), plugin instance. With
 * peers NULL the node is alone (no Config tracking). */
static inline void ph_start_node(ph_cluster *c, int i, const nh_conf_node *conf, bool alone) {
    ph_node *node = &c->n[i];
    nh_error err;
    char name[16];
    snprintf(name, sizeof name, "n%u", node->id);
    nh_runtime_opts ro = {.name = name};
    if (nh_runtime_new(&ro, &node->rt, &err) != 0) fail_msg("%s", err.message);
    nh_server_opts so = {.listen = node->addr,
                         .node_id = alone ? 0 : node->id,
                         .peers = alone ? NULL : c->peers,
                         .peer_count = alone ? 0 : PH_NODES,
                         .dial_peers = !alone,
                         .backoff_base_ms = 50,
                         .backoff_max_ms = 300,
                         .on_config_change = ph_on_config,
                         .change_user = node};
    __atomic_store_n(&node->live, NULL, __ATOMIC_RELEASE);
    if (nh_server_new(node->rt, &so, &node->srv, NULL, &err) != 0)
        fail_msg("node %u: %s", node->id, err.message);
    ph_bind(&c->plugin, node, ph_instance(&c->plugin, node, conf, 1));
}

static inline void ph_stop_node(ph_cluster *c, int i) {
    ph_node *node = &c->n[i];
    if (!node->rt) return;
    nh_runtime_free(node->rt); /* no handler runs after this */
    node->rt = NULL;
    node->srv = NULL;
    __atomic_store_n(&node->live, NULL, __ATOMIC_RELEASE);
    if (node->state && c->plugin.d->fini) c->plugin.d->fini(node->state);
    node->state = NULL;
    free(node->bindings);
    node->bindings = NULL;
}

static inline bool ph_size_is(const nh_config *cfg, void *user) {
    return nh_config_size(cfg) == (size_t)(uintptr_t)user;
}

static inline void ph_wait_size(const ph_node *node, bool client, size_t size) {
    nh_error err;
    if (nh_server_wait_config(node->srv, client, ph_size_is, (void *)(uintptr_t)size, PH_TIMEOUT_MS,
                              &err) != 0)
        fail_msg("node %u: %s did not reach size %zu: %s", node->id,
                 client ? "ClientConfig" : "Config", size, err.message);
}

/* Loads the plugin and starts PH_NODES nodes that know each other; waits until every Config
 * holds all of them. */
static inline void ph_cluster_start(ph_cluster *c, const char *plugin, const nh_conf_node *conf) {
    memset(c, 0, sizeof *c);
    ph_load(&c->plugin, plugin);
    int ports[PH_NODES];
    for (int i = 0; i < PH_NODES; i++) {
        bool again;
        do { /* a port picked a moment ago can come back: keep them distinct */
            ports[i] = nh_test_free_port();
            again = false;
            for (int j = 0; j < i; j++)
                again |= ports[j] == ports[i];
        } while (again);
        c->n[i].id = (uint32_t)i + 1;
        snprintf(c->n[i].addr, sizeof c->n[i].addr, "127.0.0.1:%d", ports[i]);
        c->peers[i] = (nh_node_addr){.id = c->n[i].id, .address = c->n[i].addr};
    }
    for (int i = 0; i < PH_NODES; i++)
        ph_start_node(c, i, conf, false);
    for (int i = 0; i < PH_NODES; i++)
        ph_wait_size(&c->n[i], false, PH_NODES);
}

static inline void ph_cluster_stop(ph_cluster *c) {
    for (int i = 0; i < PH_NODES; i++)
        ph_stop_node(c, i);
    ph_unload(&c->plugin);
}

/* Runs fn(arg) on node's owner thread and waits for it. */
typedef struct ph_owner_task {
    void (*fn)(void *);
    void *arg;
    sem_t done;
} ph_owner_task;

static inline void ph_owner_run(void *p) {
    ph_owner_task *t = p;
    t->fn(t->arg);
    sem_post(&t->done);
}

static inline void ph_on_owner(const ph_node *node, void (*fn)(void *), void *arg) {
    ph_owner_task t = {.fn = fn, .arg = arg};
    sem_init(&t.done, 0, 0);
    assert_int_equal(nh_runtime_post(node->rt, ph_owner_run, &t), 0);
    while (sem_wait(&t.done) != 0) {
    }
    sem_destroy(&t.done);
}

/* ---- the client side ---------------------------------------------------------------------- */

/* A configuration on rt of the cluster's nodes idx[0..n) (all when idx is NULL), announcing
 * `announce` as gorums-node-id when not NULL. */
static inline nh_config *ph_client_config(nh_runtime *rt, const ph_cluster *c, const int *idx,
                                          size_t n, const char *announce) {
    nh_node_addr nodes[PH_NODES];
    if (!idx) n = PH_NODES;
    for (size_t i = 0; i < n; i++)
        nodes[i] = c->peers[idx ? idx[i] : (int)i];
    nh_metadata md[] = {{"gorums-node-id", announce}};
    nh_config_opts o = {.nodes = nodes,
                        .count = n,
                        .metadata = md,
                        .metadata_count = announce ? 1 : 0,
                        .backoff_base_ms = 50,
                        .backoff_max_ms = 300};
    nh_config *cfg;
    nh_error err;
    if (nh_config_new(rt, &o, &cfg, &err) != 0) fail_msg("%s", err.message);
    return cfg;
}

static inline nh_runtime *ph_client_runtime(void) {
    nh_runtime *rt;
    nh_error err;
    if (nh_runtime_new(NULL, &rt, &err) != 0) fail_msg("%s", err.message);
    return rt;
}

/* ---- messages through the plugin's descriptors -------------------------------------------- */

static inline const ProtobufCFieldDescriptor *ph_field(const ProtobufCMessageDescriptor *d,
                                                       const char *name) {
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, name);
    if (!f) fail_msg("%s has no field %s", d->name, name);
    return f;
}

#define PH_AT(m, f, T) ((T *)((char *)(m) + (f)->offset))

static inline ProtobufCMessage *ph_msg_new(const ProtobufCMessageDescriptor *d) {
    ProtobufCMessage *m = calloc(1, d->sizeof_message);
    assert_non_null(m);
    protobuf_c_message_init(d, m);
    return m;
}

/* Frees a message built with ph_msg_new and the ph_set_* setters (strings are borrowed). */
static inline void ph_msg_free(ProtobufCMessage *m) {
    if (!m) return;
    for (unsigned i = 0; i < m->descriptor->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &m->descriptor->fields[i];
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && f->label != PROTOBUF_C_LABEL_REPEATED)
            ph_msg_free(*PH_AT(m, f, ProtobufCMessage *));
    }
    free(m);
}

static inline void ph_set_str(ProtobufCMessage *m, const char *name, const char *v) {
    *PH_AT(m, ph_field(m->descriptor, name), const char *) = v;
}

static inline void ph_set_bool(ProtobufCMessage *m, const char *name, bool v) {
    *PH_AT(m, ph_field(m->descriptor, name), protobuf_c_boolean) = v;
}

static inline void ph_set_i64(ProtobufCMessage *m, const char *name, int64_t v) {
    *PH_AT(m, ph_field(m->descriptor, name), int64_t) = v;
}

static inline void ph_set_bytes(ProtobufCMessage *m, const char *name, const void *p, size_t len) {
    *PH_AT(m, ph_field(m->descriptor, name), ProtobufCBinaryData) =
        (ProtobufCBinaryData){.len = len, .data = (uint8_t *)p};
}

/* Sets a google.protobuf.Timestamp field. */
static inline void ph_set_ts(ProtobufCMessage *m, const char *name, int64_t seconds,
                             int32_t nanos) {
    const ProtobufCFieldDescriptor *f = ph_field(m->descriptor, name);
    ProtobufCMessage *t = ph_msg_new(f->descriptor);
    *PH_AT(t, ph_field(t->descriptor, "seconds"), int64_t) = seconds;
    *PH_AT(t, ph_field(t->descriptor, "nanos"), int32_t) = nanos;
    ph_msg_free(*PH_AT(m, f, ProtobufCMessage *));
    *PH_AT(m, f, ProtobufCMessage *) = t;
}

static inline nh_buf ph_pack(const ProtobufCMessage *m) {
    nh_buf b = {0};
    b.len = protobuf_c_message_get_packed_size(m);
    b.data = malloc(b.len ? b.len : 1);
    assert_non_null(b.data);
    protobuf_c_message_pack(m, b.data);
    return b;
}

static inline ProtobufCMessage *ph_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *p,
                                          size_t len) {
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, p);
    if (!m) fail_msg("%zu bytes do not decode as %s", len, d->name);
    return m;
}

static inline void ph_unpacked_free(ProtobufCMessage *m) {
    protobuf_c_message_free_unpacked(m, NULL);
}

static inline const char *ph_get_str(const ProtobufCMessage *m, const char *name) {
    return *PH_AT(m, ph_field(m->descriptor, name), const char *);
}

static inline bool ph_get_bool(const ProtobufCMessage *m, const char *name) {
    return *PH_AT(m, ph_field(m->descriptor, name), const protobuf_c_boolean) != 0;
}

static inline uint32_t ph_get_u32(const ProtobufCMessage *m, const char *name) {
    return *PH_AT(m, ph_field(m->descriptor, name), const uint32_t);
}

static inline uint64_t ph_get_u64(const ProtobufCMessage *m, const char *name) {
    return *PH_AT(m, ph_field(m->descriptor, name), const uint64_t);
}

static inline int64_t ph_get_i64(const ProtobufCMessage *m, const char *name) {
    return *PH_AT(m, ph_field(m->descriptor, name), const int64_t);
}

static inline double ph_get_double(const ProtobufCMessage *m, const char *name) {
    return *PH_AT(m, ph_field(m->descriptor, name), const double);
}

static inline ProtobufCBinaryData ph_get_bytes(const ProtobufCMessage *m, const char *name) {
    return *PH_AT(m, ph_field(m->descriptor, name), const ProtobufCBinaryData);
}

/* The seconds of a Timestamp field; -1 when the field is absent. */
static inline int64_t ph_get_ts_seconds(const ProtobufCMessage *m, const char *name) {
    const ProtobufCMessage *t = *PH_AT(m, ph_field(m->descriptor, name), ProtobufCMessage *const);
    return t ? *PH_AT(t, ph_field(t->descriptor, "seconds"), const int64_t) : -1;
}

/* A repeated uint32 field: its element count in *n, its array returned. */
static inline const uint32_t *ph_get_u32s(const ProtobufCMessage *m, const char *name, size_t *n) {
    const ProtobufCFieldDescriptor *f = ph_field(m->descriptor, name);
    *n = *(const size_t *)((const char *)m + f->quantifier_offset);
    return *PH_AT(m, f, const uint32_t *const);
}

#endif
