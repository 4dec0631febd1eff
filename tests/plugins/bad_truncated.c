/* Test plugin bad_truncated: the descriptor claims a size of 16 bytes. */
#include "plugtest.h"

static const nh_plugin_method methods[] = {
    PLUGTEST_METHOD("plugtest.Echo.Echo"),
};

static const nh_plugin_descriptor desc = {
    .magic = NH_PLUGIN_MAGIC,
    .size = 16 /* the bad field */,
    .abi_version = NH_PLUGIN_ABI_VERSION,
    .flags = 0,
    .name = "bad_truncated",
    .version = "1.0.0",
    .methods = methods,
    .method_count = sizeof methods / sizeof methods[0],
};

NH_PLUGIN_DEFINE(desc)
