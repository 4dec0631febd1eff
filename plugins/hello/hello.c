/* hello: the smallest useful nodehost plugin, and the template to copy for a new one.
 *
 * A plugin is a shared object with one exported function, nh_plugin_entry (NH_PLUGIN_DEFINE at
 * the end), returning a constant descriptor: the plugin's name, its methods and its lifecycle
 * hooks. The host decodes each request with the method's request descriptor and calls the
 * handler with it on the node's owner thread.
 *
 * Service (hello.proto, package hello):
 *   hello.Greeter.SayHello    RPC         HelloRequest -> HelloReply
 *   hello.Greeter.SayHelloQC  QUORUMCALL  HelloRequest -> HelloReply
 * Both answer "<greeting>, <name>! (from node <id>)".
 *
 * Configuration (the plugin's `config:` map in the nodehost file):
 *   greeting: text, not empty (default "Hello")
 *
 * To start a plugin of your own: copy this directory, rename the package, the messages and the
 * methods, keep the shape (state struct, check_config, init, fini, handlers, descriptor). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <nodehost/plugin.h>

#include "hello.pb-c.h" /* generated from hello.proto by nh_add_plugin() */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Everything the plugin keeps lives in the struct init returns: no global mutable state, so
 * that a reload (a second copy of the plugin next to the first) cannot mix them up. */
typedef struct hello {
    char *greeting;   /* config `greeting` (copied: the config tree belongs to the host) */
    uint32_t node_id; /* this node's ID, from the host */
} hello;

/* The config keys this plugin accepts; anything else is an error (with its file position). */
static const char *const hello_config_keys[] = {"greeting", NULL};

/* Reads and checks the config; used by check_config and init so both agree. */
static int hello_read_config(const nh_conf_node *config, const char **greeting, nh_error *err) {
    if (nh_conf_check_keys(config, hello_config_keys, err) != 0) return -1;
    if (nh_conf_string(config, "greeting", "Hello", greeting, err) != 0) return -1;
    if ((*greeting)[0] == '\0')
        return nh_conf_error(nh_conf_get(config, "greeting"), err, "must not be empty");
    return 0;
}

/* check_config: validate without starting anything (nodehost --check-config, and before init). */
static int hello_check_config(const nh_conf_node *config, nh_error *err) {
    const char *greeting;
    return hello_read_config(config, &greeting, err);
}

/* init: build the state. Returning -1 (with err) stops the host from starting this plugin. */
static int hello_init(const nh_plugin_env *env, void **state, nh_error *err) {
    const char *greeting;
    if (hello_read_config(env->config, &greeting, err) != 0) return -1;
    hello *h = calloc(1, sizeof *h);
    if (!h || !(h->greeting = strdup(greeting))) {
        free(h);
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    }
    h->node_id = env->node_id;
    *state = h;
    return 0;
}

/* fini: the host calls it once none of the plugin's calls is in flight. */
static void hello_fini(void *state) {
    hello *h = state;
    free(h->greeting);
    free(h);
}

/* The handler of both methods. It runs on the owner thread and must not block. The request is
 * the decoded HelloRequest, owned by the host. Returning after a reply ends the call; a handler
 * that needs to answer later calls nh_ctx_defer() (or nh_ctx_offload() for blocking work). */
static void hello_say_hello(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    const Hello__HelloRequest *req = (const Hello__HelloRequest *)request;
    const hello *h = state;
    char *text;
    if (asprintf(&text, "%s, %s! (from node %u)", h->greeting, req->name, h->node_id) < 0) {
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    Hello__HelloReply reply = HELLO__HELLO_REPLY__INIT;
    reply.message = text;
    if (nh_ctx_reply_msg(ctx, &reply.base) != 0)
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
    free(text);
}

/* The methods: full name "package.Service.Method", how clients call it, the message types (the
 * host decodes requests with them) and the handler. One handler may serve several methods. */
static const nh_plugin_method hello_methods[] = {
    {"hello.Greeter.SayHello", NH_CALL_RPC, &hello__hello_request__descriptor,
     &hello__hello_reply__descriptor, hello_say_hello},
    {"hello.Greeter.SayHelloQC", NH_CALL_QUORUMCALL, &hello__hello_request__descriptor,
     &hello__hello_reply__descriptor, hello_say_hello},
};

static const nh_plugin_descriptor hello_descriptor = {
    .magic = NH_PLUGIN_MAGIC,
    .size = sizeof(nh_plugin_descriptor),
    .abi_version = NH_PLUGIN_ABI_VERSION,
    .name = "hello",
    .version = "1.0.0",
    .description = "greets callers: hello.Greeter.SayHello (RPC) and SayHelloQC (quorum call)",
    .methods = hello_methods,
    .method_count = sizeof hello_methods / sizeof hello_methods[0],
    .check_config = hello_check_config,
    .init = hello_init,
    .fini = hello_fini,
    /* export_state/import_state (reload hand-over) and config_changed are optional. */
};

NH_PLUGIN_DEFINE(hello_descriptor)
