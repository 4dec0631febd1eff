/* Shared by the test plugins in tests/plugins: the echo handler and a valid method table entry.
 * Each plugin includes this once (the definitions are static, one copy per plugin). */
#ifndef NH_PLUGTEST_H
#define NH_PLUGTEST_H

#include <nodehost/plugin.h>

#include "plugtest.pb-c.h"

/** Replies with the request itself. */
static inline void plugtest_echo(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    (void)state;
    nh_ctx_reply_msg(ctx, request);
}

/** A valid RPC method entry named `name` with the echo handler. */
#define PLUGTEST_METHOD(name)                                                                      \
    {                                                                                              \
        name, NH_CALL_RPC, &plugtest__echo_msg__descriptor, &plugtest__echo_msg__descriptor,       \
            plugtest_echo                                                                          \
    }

/** The fields every descriptor starts with (magic, size, ABI, flags). */
#define PLUGTEST_HEADER                                                                            \
    .magic = NH_PLUGIN_MAGIC, .size = sizeof(nh_plugin_descriptor),                                \
    .abi_version = NH_PLUGIN_ABI_VERSION, .flags = 0

#endif
