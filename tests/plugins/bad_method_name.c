/* Test plugin bad_method_name: a method name that is not pkg.Service.Method. */
#include "plugtest.h"

static const nh_plugin_method methods[] = {
    PLUGTEST_METHOD("NoDots"),
};

static const nh_plugin_descriptor desc = {
    PLUGTEST_HEADER,
    .name = "bad_method_name",
    .version = "1.0.0",
    .methods = methods,
    .method_count = sizeof methods / sizeof methods[0],

};

NH_PLUGIN_DEFINE(desc)
