/* Test plugin bad_magic: the descriptor's magic is wrong. */
#include "plugtest.h"

static const nh_plugin_method methods[] = {
    PLUGTEST_METHOD("plugtest.Echo.Echo"),
};

static const nh_plugin_descriptor desc = {
    .magic = 0x12345678 /* the bad field */,
    .size = sizeof(nh_plugin_descriptor),
    .abi_version = NH_PLUGIN_ABI_VERSION,
    .flags = 0,
    .name = "bad_magic",
    .version = "1.0.0",
    .methods = methods,
    .method_count = sizeof methods / sizeof methods[0],
};

NH_PLUGIN_DEFINE(desc)
