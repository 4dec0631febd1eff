/* Test plugin bad_no_entry: a shared object without nh_plugin_entry. */
#include "plugtest.h"

__attribute__((visibility("default"))) int plugtest_not_a_plugin(void);
int plugtest_not_a_plugin(void) {
    return 42;
}
