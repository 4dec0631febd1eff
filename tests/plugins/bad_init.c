/* Test plugin bad_init: a valid descriptor whose init fails with
 * "cannot open database /nonexistent" (for the host's start and reload tests). */
#include "plugtest.h"

static int init(const nh_plugin_env *env, void **state, nh_error *err) {
    (void)env;
    *state = NULL;
    return nh_error_set(err, NH_UNAVAILABLE, NH_ERR_LOCAL, 0, "cannot open database /nonexistent");
}

static const nh_plugin_method methods[] = {
    PLUGTEST_METHOD("plugtest.Init.Echo"),
};

static const nh_plugin_descriptor desc = {
    PLUGTEST_HEADER,
    .name = "bad_init",
    .version = "1.0.0",
    .methods = methods,
    .method_count = sizeof methods / sizeof methods[0],
    .init = init,
};

NH_PLUGIN_DEFINE(desc)
