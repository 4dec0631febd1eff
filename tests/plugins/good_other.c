/* Test plugin good_other: valid on its own, but declares plugtest.Echo.Echo like good_echo (the
 * cross-plugin conflict), plus plugtest.Other.Ping. Built a second time with OTHER_SOLO defined
 * as good_other_solo, which declares plugtest.Other.Ping only (a plugin that can sit next to
 * good_echo, for the reload tests), and with OTHER_SOLO and OTHER_RESERVED as bad_reserved, which
 * declares plugtest.Other.Ping and nodehost.Admin.Status (a method name the host reserves). */
#include "plugtest.h"

static const nh_plugin_method methods[] = {
    PLUGTEST_METHOD("plugtest.Other.Ping"),
#ifndef OTHER_SOLO
    PLUGTEST_METHOD("plugtest.Echo.Echo"),
#endif
#ifdef OTHER_RESERVED
    PLUGTEST_METHOD("nodehost.Admin.Status"),
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
