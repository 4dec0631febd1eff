/* hello: the smallest useful nodehost plugin, and the template to copy for a new one.
 *
 * hello.proto declares the service; protoc-gen-nodehost (run by nh_add_plugin) generates
 * hello.nh.h: per method a typed handler to define (hello_greeter_<method>_handler) and a typed
 * reply helper, and the method table HELLO_GREETER_NH_METHODS, which NH_PLUGIN exports with the
 * plugin's name and hooks. Handlers run on the node's owner thread and must not block.
 *
 * Configuration (the plugin's `config:` map in the nodehost file):
 *   greeting: text, not empty (default "Hello")
 * Both methods answer "<greeting>, <name>! (from node <id>)". */
#include "hello.nh.h" /* generated from hello.proto */

#include <stdio.h>
#include <stdlib.h>

/* The plugin's state (what init returns): no global mutable state, so that a reload (a second
 * copy of the plugin next to the first) cannot mix them up. The config tree lives as long as
 * the plugin's generation, so the greeting can point into it. */
typedef struct hello {
    const char *greeting;
    uint32_t node_id;
} hello;

/* check_config and init read the config the same way; unknown keys are errors with positions. */
static int read_config(const nh_conf_node *config, const char **greeting, nh_error *err) {
    if (nh_conf_check_keys(config, (const char *const[]){"greeting", NULL}, err) != 0 ||
        nh_conf_string(config, "greeting", "Hello", greeting, err) != 0)
        return -1;
    return **greeting ? 0
                      : nh_conf_error(nh_conf_get(config, "greeting"), err, "must not be empty");
}

static int check_config(const nh_conf_node *config, nh_error *err) {
    return read_config(config, &(const char *){NULL}, err);
}

/* The host runs check_config on the same config before init, so reading it cannot fail here. */
static int init(const nh_plugin_env *env, void **state, nh_error *err) {
    hello *h = *state = malloc(sizeof *h);
    if (!h) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    h->node_id = env->node_id;
    return read_config(env->config, &h->greeting, err);
}

void hello_greeter_say_hello_handler(nh_server_ctx *ctx, const Hello__HelloRequest *req,
                                     void *state) {
    const hello *h = state;
    Hello__HelloReply reply = HELLO__HELLO_REPLY__INIT;
    if (asprintf(&reply.message, "%s, %s! (from node %u)", h->greeting, req->name, h->node_id) < 0)
        return (void)nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
    hello_greeter_say_hello_reply(ctx, &reply);
    free(reply.message);
}

/* The quorum call answers the same. */
void hello_greeter_say_hello_qc_handler(nh_server_ctx *ctx, const Hello__HelloRequest *req,
                                        void *state) {
    hello_greeter_say_hello_handler(ctx, req, state);
}

NH_PLUGIN(
    HELLO_GREETER_NH_METHODS, .name = "hello", .version = "1.0.0",
    .description = "greets callers: hello.Greeter.SayHello (RPC) and SayHelloQC (quorum call)",
    .check_config = check_config, .init = init, .fini = free);
