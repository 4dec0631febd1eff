/* Happens-before edges that ThreadSanitizer cannot see by itself. Debian's libgrpc is not
 * instrumented, so its completion queue's own synchronisation is invisible: a batch started on
 * one thread (with a tag) and completed on another (a relayed stream's back, transport/relay.c)
 * would look racy. nh_tsan_release(tag) before the start and nh_tsan_acquire(tag) when the
 * completion is taken model the edge gRPC provides. Nothing without -fsanitize=thread. */
#ifndef NH_UTIL_TSAN_H
#define NH_UTIL_TSAN_H

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define nh_tsan_release(p) __tsan_release((void *)(p))
#define nh_tsan_acquire(p) __tsan_acquire((void *)(p))
#else
#define nh_tsan_release(p) ((void)(p))
#define nh_tsan_acquire(p) ((void)(p))
#endif

#endif
