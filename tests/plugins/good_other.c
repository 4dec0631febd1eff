/* Test plugin good_other: valid on its own, but declares plugtest.Echo.Echo like good_echo (the
 * cross-plugin conflict), plus plugtest.Other.Ping. */
#include "plugtest.h"

static const nh_plugin_method methods[] = {
    PLUGTEST_METHOD("plugtest.Other.Ping"),
    PLUGTEST_METHOD("plugtest.Echo.Echo"),
};

static const nh_plugin_descriptor desc = {
    PLUGTEST_HEADER,
    .name = "good_other",
    .version = "2.0.0",
    .methods = methods,
    .method_count = sizeof methods / sizeof methods[0],
};

NH_PLUGIN_DEFINE(desc)
