/* Test plugin bad_request_desc: a method without a request descriptor. */
#include "plugtest.h"

static const nh_plugin_method methods[] = {
    {"plugtest.Echo.Echo", NH_CALL_RPC, NULL, &plugtest__echo_msg__descriptor, plugtest_echo},
};

static const nh_plugin_descriptor desc = {
    PLUGTEST_HEADER,
    .name = "bad_request_desc",
    .version = "1.0.0",
    .methods = methods,
    .method_count = sizeof methods / sizeof methods[0],

};

NH_PLUGIN_DEFINE(desc)
