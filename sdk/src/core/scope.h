/* Private: work scopes (nh_scope). The calling thread's current scope lives in one thread-local
 * pointer; work that keeps a caller's function pointer captures it (nh_scope_capture), holds it
 * while pending (nh_scope_hold), runs its callbacks with it current (nh_scope_swap /
 * nh_scope_restore) and releases it once after its last callback (nh_scope_release). Without a
 * scope every helper is a TLS access and a NULL test. */
#ifndef NH_CORE_SCOPE_H
#define NH_CORE_SCOPE_H

#include <nodehost/runtime.h>

#include <stddef.h>

/* The calling thread's current scope (defined in scope.c). */
extern _Thread_local const nh_scope *nh_scope_tls __attribute__((visibility("hidden")));

/** The calling thread's current scope, to capture when work is accepted. */
static inline const nh_scope *nh_scope_capture(void) {
    return nh_scope_tls;
}

/** One more piece of work of s is pending. No SDK lock may be held. Accepts NULL. */
static inline void nh_scope_hold(const nh_scope *s) {
    if (s && s->hold) s->hold(s->arg);
}

/** One piece of work of s ended. No SDK lock may be held. s is never current during release
 * (the host's release may post work, which would capture s again): when the caller still is in
 * s (work refused after it was held, on the caller's thread) it steps out for the call. Accepts
 * NULL. */
static inline void nh_scope_release(const nh_scope *s) {
    if (!s || !s->release) return;
    if (nh_scope_tls != s) {
        s->release(s->arg);
        return;
    }
    nh_scope_tls = NULL;
    s->release(s->arg);
    nh_scope_tls = s;
}

/** Makes s current for a callback of its work; returns the previous scope for
 * nh_scope_restore(). */
static inline const nh_scope *nh_scope_swap(const nh_scope *s) {
    const nh_scope *prev = nh_scope_tls;
    if (prev != s) nh_scope_tls = s;
    return prev;
}

/** Restores the scope nh_scope_swap() returned. */
static inline void nh_scope_restore(const nh_scope *prev) {
    if (nh_scope_tls != prev) nh_scope_tls = prev;
}

#endif
