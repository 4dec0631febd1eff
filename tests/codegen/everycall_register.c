/* The `everycall` test plugin: golden.v1.Register (tests/codegen/everycall.proto) served through
 * the generated stubs, one method per call type, so that tests/host/test_plugins_everycall.c
 * can drive every generated client call against real handlers:
 *   Get, GetHTTPStatus (RPC)   the node's value (meta.writer = this node; GetHTTPStatus: "200")
 *   Read (quorum call)         the same, from every node of a configuration
 *   Spread (multicast), Tell (unicast)   store the value if its version is newer; Tell also
 *                              calls golden.v1.Listener.Changed on every client peer
 *   Watch (correctable)        streams the value three times, versions v, v+1, v+2
 * One register per node (the key is stored, not used to look up). */
#include "everycall.nh.h"

#include <stdlib.h>
#include <string.h>

typedef struct reg {
    uint32_t node_id;
    char key[64];
    uint8_t value[64];
    size_t value_len;
    int64_t version;
} reg;

static int init(const nh_plugin_env *env, void **state, nh_error *err) {
    reg *r = calloc(1, sizeof *r);
    if (!r) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    r->node_id = env->node_id;
    *state = r;
    return 0;
}

/* The register as a Value; meta must outlive v's use. */
static void current(const reg *r, Golden__V1__Value *v, Golden__V1__Value__Meta *meta) {
    golden__v1__value__init(v);
    golden__v1__value__meta__init(meta);
    meta->writer = r->node_id;
    v->key = (char *)r->key;
    v->value.data = (uint8_t *)r->value;
    v->value.len = r->value_len;
    v->version = r->version;
    v->meta = meta;
}

static void store(reg *r, const Golden__V1__Value *v) {
    if (v->version <= r->version || strlen(v->key) >= sizeof r->key ||
        v->value.len > sizeof r->value)
        return;
    strcpy(r->key, v->key);
    if (v->value.len) memcpy(r->value, v->value.data, v->value.len);
    r->value_len = v->value.len;
    r->version = v->version;
}

void golden_v1_register_get_handler(nh_server_ctx *ctx, const Golden__V1__Key *req, void *state) {
    Golden__V1__Value v;
    Golden__V1__Value__Meta meta;
    current(state, &v, &meta);
    golden_v1_register_get_reply(ctx, &v);
}

void golden_v1_register_read_handler(nh_server_ctx *ctx, const Golden__V1__Key *req, void *state) {
    Golden__V1__Value v;
    Golden__V1__Value__Meta meta;
    current(state, &v, &meta);
    golden_v1_register_read_reply(ctx, &v);
}

void golden_v1_register_spread_handler(nh_server_ctx *ctx, const Golden__V1__Value *req,
                                       void *state) {
    store(state, req);
}

static void notified(const Google__Protobuf__Empty *reply, const nh_reply *r, void *user) {
    if (r->err.code != NH_OK)
        nh_logf(NH_LOG_WARN, "everycall", "client %u not notified: %s", r->node_id, r->err.message);
}

void golden_v1_register_tell_handler(nh_server_ctx *ctx, const Golden__V1__Value *req,
                                     void *state) {
    store(state, req);
    nh_config *clients = nh_ctx_client_config(ctx);
    for (size_t i = 0; i < nh_config_size(clients); i++) {
        nh_error err;
        nh_call_opts o = {.timeout_ms = 10000};
        if (golden_v1_listener_changed_async(nh_config_node(clients, i), req, &o, notified, NULL,
                                             &err) != 0)
            nh_logf(NH_LOG_WARN, "everycall", "notify refused: %s", err.message);
    }
    nh_config_unref(clients);
}

void golden_v1_register_watch_handler(nh_server_ctx *ctx, const Golden__V1__Key *req, void *state) {
    Golden__V1__Value v;
    Golden__V1__Value__Meta meta;
    current(state, &v, &meta);
    for (int i = 0; i < 3; i++, v.version++)
        golden_v1_register_watch_send(ctx, &v);
    nh_ctx_finish(ctx);
}

void golden_v1_register_get_http_status_handler(nh_server_ctx *ctx, const Golden__V1__Key *req,
                                                void *state) {
    Golden__V1__Value v = GOLDEN__V1__VALUE__INIT;
    v.key = "200";
    golden_v1_register_get_http_status_reply(ctx, &v);
}

NH_PLUGIN(GOLDEN_V1_REGISTER_NH_METHODS, .name = "everycall", .version = "1.0.0",
          .description = "tests: golden.v1.Register through generated stubs", .init = init,
          .fini = free);
