/* Work scopes: the calling thread's current scope (see core/scope.h and nh_scope). */
#include "core/scope.h"

_Thread_local const nh_scope *nh_scope_tls = NULL;

const nh_scope *nh_scope_enter(const nh_scope *s) {
    const nh_scope *prev = nh_scope_tls;
    nh_scope_tls = s;
    return prev;
}

const nh_scope *nh_scope_current(void) {
    return nh_scope_tls;
}
