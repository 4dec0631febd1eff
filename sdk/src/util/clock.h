/* Monotonic time in nanoseconds, for latency measurements. */
#ifndef NH_UTIL_CLOCK_H
#define NH_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/** Nanoseconds on the monotonic clock. */
static inline int64_t nh_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#endif
