/* Test plugin bad_dup_method: declares plugtest.Echo.Echo twice. */
#include "plugtest.h"

static const nh_plugin_method methods[] = {
    PLUGTEST_METHOD("plugtest.Echo.Echo"),
    PLUGTEST_METHOD("plugtest.Echo.Other"),
    PLUGTEST_METHOD("plugtest.Echo.Echo"),
};

static const nh_plugin_descriptor desc = {
    PLUGTEST_HEADER,
    .name = "bad_dup_method",
    .version = "1.0.0",
    .methods = methods,
    .method_count = sizeof methods / sizeof methods[0],

};

NH_PLUGIN_DEFINE(desc)
