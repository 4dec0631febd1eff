/* Test plugin bad_null_handler: a method without a handler. */
#include "plugtest.h"

static const nh_plugin_method methods[] = {
    PLUGTEST_METHOD("plugtest.Echo.Echo"),
    {"plugtest.Echo.Nothing", NH_CALL_RPC, &plugtest__echo_msg__descriptor,
     &plugtest__echo_msg__descriptor, NULL},
};

static const nh_plugin_descriptor desc = {
    PLUGTEST_HEADER,
    .name = "bad_null_handler",
    .version = "1.0.0",
    .methods = methods,
    .method_count = sizeof methods / sizeof methods[0],

};

NH_PLUGIN_DEFINE(desc)
