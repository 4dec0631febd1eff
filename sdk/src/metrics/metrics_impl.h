/* Private: the metric registry (registry.c) and the runtime's own metrics (builtin.c): requests
 * by method and code, their durations, calls in flight, stream traffic, server-initiated calls.
 * The hooks below cost one relaxed load when counting is off. */
#ifndef NH_METRICS_METRICS_IMPL_H
#define NH_METRICS_METRICS_IMPL_H

#include <nodehost/metrics.h>

#include <stdbool.h>
#include <stdint.h>

/** nh_metrics_enabled() without the call: the flag itself (atomic, relaxed reads). */
extern int nh_metrics_on;

static inline bool nh_metrics_counting(void) {
    return __atomic_load_n(&nh_metrics_on, __ATOMIC_RELAXED) != 0;
}

/** Per-method request series of one method name (found or created; never freed). */
typedef struct nh_method_stats nh_method_stats;

/** The stats of a registered method (NULL when out of memory). Any thread. */
nh_method_stats *nh_metrics_method(const char *method);

/** The stats that requests for unregistered methods are counted under (method="(unknown)":
 * peers choose the names, so they must not create series). */
nh_method_stats *nh_metrics_unknown_method(void);

/** A request of s was started (in flight +1). */
void nh_metrics_request_start(void);

/** A request of s ended with code after ns nanoseconds (in flight -1). s may be NULL. */
void nh_metrics_request_end(nh_method_stats *s, int code, int64_t ns);

/** A request refused before any handler ran (unknown method): counted, not timed. */
void nh_metrics_request_refused(nh_method_stats *s, int code);

/** A NodeStream message of bytes went out (out true) or came in. */
void nh_metrics_stream_message(bool out, size_t bytes);

/** A server-initiated call (type: "quorum", "multicast", "correctable", "rpc", "unicast")
 * ended with code. */
void nh_metrics_server_call(const char *type, int code);

#endif
