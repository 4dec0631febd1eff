/* nodehost: the plugin ABI. A plugin is a shared object exporting one function, nh_plugin_entry,
 * that returns a constant descriptor: who it is, its methods and its lifecycle hooks. */
#ifndef NODEHOST_PLUGIN_H
#define NODEHOST_PLUGIN_H

#include <protobuf-c/protobuf-c.h>

#include <stddef.h>

#include <nodehost/conf.h>
#include <nodehost/message.h>
#include <nodehost/config.h>
#include <nodehost/quorum.h>
#include <nodehost/runtime.h>
#include <nodehost/server.h>

#ifdef __cplusplus
extern "C" {
#endif

/** First field of every descriptor: the bytes "NHPL" read as a little-endian integer. */
#define NH_PLUGIN_MAGIC 0x4c50484eu

/** The ABI version this header describes. The host loads plugins built for this version only. */
#define NH_PLUGIN_ABI_VERSION 1u

/** The name of the one symbol a plugin exports (an nh_plugin_entry_fn). */
#define NH_PLUGIN_ENTRY_SYMBOL "nh_plugin_entry"

/** How a method is called (Gorums' call types, as seen by the server). */
typedef enum nh_call_type {
    NH_CALL_RPC = 1,         /**< one request, one response, one node */
    NH_CALL_UNICAST = 2,     /**< one-way to one node: no response */
    NH_CALL_MULTICAST = 3,   /**< one-way to a configuration: no response */
    NH_CALL_QUORUMCALL = 4,  /**< one response per node, combined by a quorum function */
    NH_CALL_CORRECTABLE = 5, /**< one or more responses per node (nh_ctx_send) */
} nh_call_type;

/** What a plugin's init receives. Valid during init; runtime and server for the generation's
 * whole life; config while the generation lives. */
typedef struct nh_plugin_env {
    uint32_t size;              /**< sizeof(nh_plugin_env) as the host built it */
    nh_runtime *runtime;        /**< the node's runtime (post work, make calls) */
    nh_server *server;          /**< the node's server (Config, ClientConfig) */
    uint32_t node_id;           /**< this node's ID */
    const char *name;           /**< the plugin's name in the configuration file */
    const nh_conf_node *config; /**< the plugin's `config` subtree, NULL when absent */
    uint64_t generation;        /**< 1 for the first load, +1 per reload of this plugin */
} nh_plugin_env;

/**
 * A method handler. request is the decoded request (the method's request type), owned by the
 * host and valid until the call ends (also after a deferred handler returns). state is what
 * init stored. The host uses the call's nh_ctx_on_end() hook itself: plugins must not set it. Runs
 * on the owner thread and must not block: defer and reply later, or use nh_ctx_offload() for
 * blocking work.
 */
typedef void (*nh_plugin_handler_fn)(nh_server_ctx *ctx, const ProtobufCMessage *request,
                                     void *state);

/** One method of a plugin. */
typedef struct nh_plugin_method {
    const char *name;                           /**< full name: "pkg.Service.Method" */
    nh_call_type call_type;                     /**< how it is called */
    const ProtobufCMessageDescriptor *request;  /**< request message type */
    const ProtobufCMessageDescriptor *response; /**< response type; NULL for one-way types */
    nh_plugin_handler_fn handler;               /**< the handler */
} nh_plugin_method;

/**
 * The descriptor a plugin returns. The host checks every field before calling anything and
 * names the wrong one. Hooks are optional unless said otherwise.
 */
typedef struct nh_plugin_descriptor {
    uint32_t magic;                  /**< NH_PLUGIN_MAGIC */
    uint32_t size;                   /**< sizeof(nh_plugin_descriptor) as the plugin was built */
    uint32_t abi_version;            /**< NH_PLUGIN_ABI_VERSION */
    uint32_t flags;                  /**< reserved, 0 */
    const char *name;                /**< [a-z0-9_-], 1 to 63 characters */
    const char *version;             /**< the plugin's own version, free text, non-empty */
    const char *description;         /**< one line, may be NULL */
    const nh_plugin_method *methods; /**< at least one method */
    size_t method_count;             /**< number of methods */
    /** Checks the plugin's YAML config without starting anything (--check-config and before
     * init). Returns 0, or -1 with err (use nh_conf_error() for positions). */
    int (*check_config)(const nh_conf_node *config, nh_error *err);
    /** Starts the plugin; *state is passed to handlers and hooks. Returns 0, or -1 with err:
     * the host then does not start (or keeps the old generation on reload). */
    int (*init)(const nh_plugin_env *env, void **state, nh_error *err);
    /** Stops the plugin once none of its calls is in flight. */
    void (*fini)(void *state);
    /** Reload hand-over (both or neither): the old generation writes its state into *out
     * (malloc'ed bytes, the host frees them), then the new one, after init, reads it. */
    int (*export_state)(void *state, nh_buf *out, nh_error *err);
    int (*import_state)(void *state, const uint8_t *data, size_t len,
                        nh_error *err); /**< see export_state */
    /** Called on the owner thread after Config or ClientConfig changed (cfg borrowed). */
    void (*config_changed)(void *state, nh_config *cfg, bool client_config);
    /** Optional. Called on the owner thread when this generation stops taking new calls (a
     * reload replaced it or removed the plugin); its open calls and pending work still finish
     * on it. Stop periodic work here (a task that re-posts itself keeps the generation loaded):
     * fini follows once nothing of the generation is left. Descriptors built before this field
     * existed end before it (their size says so); the host then treats it as absent. */
    void (*retire)(void *state);
} nh_plugin_descriptor;

/** The smallest descriptor size the host accepts: descriptors built before optional trailing
 * fields (retire) were added. */
#define NH_PLUGIN_DESCRIPTOR_MIN_SIZE offsetof(nh_plugin_descriptor, retire)

/** True when descriptor d (size checked) carries trailing field f. */
#define NH_PLUGIN_HAS(d, f)                                                                        \
    ((d)->size >= offsetof(nh_plugin_descriptor, f) + sizeof((d)->f) && (d)->f != NULL)

/** The type of the exported entry function. */
typedef const nh_plugin_descriptor *(*nh_plugin_entry_fn)(void);

/** Exports the entry function of a plugin returning &desc. Use once per plugin. */
#define NH_PLUGIN_DEFINE(desc)                                                                     \
    __attribute__((visibility("default"))) const nh_plugin_descriptor *nh_plugin_entry(void);      \
    const nh_plugin_descriptor *nh_plugin_entry(void) {                                            \
        return &(desc);                                                                            \
    }

/**
 * Defines and exports a plugin's descriptor from a method table of generated stubs and
 * designated initialisers of the other fields (name, version and the hooks):
 *
 *     NH_PLUGIN(HELLO_GREETER_NH_METHODS, .name = "hello", .version = "1.0.0",
 *               .init = hello_init, .fini = hello_fini);
 *
 * method_table is a `<SERVICE>_NH_METHODS` or `<FILE>_PROTO_NH_METHODS` macro of a `<name>.nh.h`
 * that protoc-gen-nodehost generated (or a list of nh_plugin_method initialisers). Use once per
 * plugin, at file scope.
 */
#define NH_PLUGIN(method_table, ...)                                                               \
    static const nh_plugin_method nh_plugin_methods_[] = {method_table};                           \
    static const nh_plugin_descriptor nh_plugin_descriptor_ = {                                    \
        .magic = NH_PLUGIN_MAGIC,                                                                  \
        .size = sizeof(nh_plugin_descriptor),                                                      \
        .abi_version = NH_PLUGIN_ABI_VERSION,                                                      \
        .methods = nh_plugin_methods_,                                                             \
        .method_count = sizeof nh_plugin_methods_ / sizeof nh_plugin_methods_[0],                  \
        __VA_ARGS__};                                                                              \
    NH_PLUGIN_DEFINE(nh_plugin_descriptor_)                                                        \
    struct nh_plugin_defined_ /* takes the semicolon after NH_PLUGIN(...) */

#ifdef __cplusplus
}
#endif
#endif
