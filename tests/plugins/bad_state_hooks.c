/* Test plugin bad_state_hooks: export_state without import_state. */
#include "plugtest.h"

static int export_state(void *state, nh_buf *out, nh_error *err) {
    (void)state;
    (void)err;
    out->data = NULL;
    out->len = 0;
    return 0;
}

static const nh_plugin_method methods[] = {
    PLUGTEST_METHOD("plugtest.Echo.Echo"),
};

static const nh_plugin_descriptor desc = {
    PLUGTEST_HEADER,
    .name = "bad_state_hooks",
    .version = "1.0.0",
    .methods = methods,
    .method_count = sizeof methods / sizeof methods[0],
    .export_state = export_state,
};

NH_PLUGIN_DEFINE(desc)
