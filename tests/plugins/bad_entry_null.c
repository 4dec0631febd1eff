/* Test plugin bad_entry_null: the entry function returns NULL. */
#include "plugtest.h"

__attribute__((visibility("default"))) const nh_plugin_descriptor *nh_plugin_entry(void);
const nh_plugin_descriptor *nh_plugin_entry(void) {
    return NULL;
}
