/* Test plugin good_other: valid on its own, but declares plugtest.Echo.Echo like good_echo (the
 * cross-plugin conflict), plus plugtest.Other.Ping. Built a second time with OTHER_SOLO defined
 * as good_other_solo, which declares plugtest.Other.Ping only (a plugin that can sit next to
 * good_echo, for the reload tests). */
#include "plugtest.h"

static const nh_plugin_method methods[] = {
    PLUGTEST_METHOD("plugtest.Other.Ping"),
#ifndef OTHER_SOLO
    PLUGTEST_METHOD("plugtest.Echo.Echo"),
#endif
};

static const nh_plugin_descriptor desc = {
    PLUGTEST_HEADER,
    .name = "good_other",
    .version = "2.0.0",
    .methods = methods,
    .method_count = sizeof methods / sizeof methods[0],
};

NH_PLUGIN_DEFINE(desc)
