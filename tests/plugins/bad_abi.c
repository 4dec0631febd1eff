/* Test plugin bad_abi: built for ABI version 99. */
#include "plugtest.h"

static const nh_plugin_method methods[] = {
    PLUGTEST_METHOD("plugtest.Echo.Echo"),
};

static const nh_plugin_descriptor desc = {
    .magic = NH_PLUGIN_MAGIC,
    .size = sizeof(nh_plugin_descriptor),
    .abi_version = 99 /* the bad field */,
    .flags = 0,
    .name = "bad_abi",
    .version = "1.0.0",
    .methods = methods,
    .method_count = sizeof methods / sizeof methods[0],
};

NH_PLUGIN_DEFINE(desc)
