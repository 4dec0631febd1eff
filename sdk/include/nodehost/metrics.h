/* nodehost: metrics in the Prometheus text format.
 *
 * One registry per process. A metric family has a name (`[a-zA-Z_:][a-zA-Z0-9_:]*`; the
 * Prometheus conventions: counters end in `_total`, durations are `_seconds`), a help text and a
 * type; each series of a family has its own label values. Series are created on first use and
 * live as long as the process, so a pointer to one stays valid across plugin reloads (a new
 * generation that registers the same series gets the same pointer and its counts go on).
 *
 * Updates are lock-free atomics and cheap enough for every request; any thread. Rendering
 * (nh_metrics_render()) takes the registry's lock and runs the collectors first.
 *
 * The runtime's own counting (below) is off until nh_metrics_enable(true) (the nodehost program
 * turns it on with a `metrics` section); series a program or plugin updates itself always
 * count.
 *
 * The runtime itself counts (see docs/operations.md for the whole list):
 *   nodehost_requests_total{method,code}            requests answered, by gRPC code name
 *   nodehost_request_duration_seconds{method}       handler start to the end of the call
 *   nodehost_requests_in_flight                     calls being handled now
 *   nodehost_server_calls_total{type,code}          server-initiated calls by outcome
 *   nodehost_stream_messages_total{direction}       NodeStream messages sent / received
 *   nodehost_stream_bytes_total{direction}          their bytes
 */
#ifndef NODEHOST_METRICS_H
#define NODEHOST_METRICS_H

#include <nodehost/status.h>

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** One series of a metric family. */
typedef struct nh_metric nh_metric;

/** A label pair of a series. */
typedef struct nh_metric_label {
    const char *name;  /**< `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` */
    const char *value; /**< any UTF-8 text (escaped when rendered) */
} nh_metric_label;

/**
 * The counter series name{labels}: found, or created with help (the family's help is the first
 * one given). NULL (with err) when the name or a label name is invalid, or the family exists
 * with another type or other label names. Any thread.
 */
NH_API nh_metric *nh_metric_counter(const char *name, const char *help,
                                    const nh_metric_label *labels, size_t label_count,
                                    nh_error *err);

/** A gauge series, as nh_metric_counter(). */
NH_API nh_metric *nh_metric_gauge(const char *name, const char *help, const nh_metric_label *labels,
                                  size_t label_count, nh_error *err);

/**
 * A histogram series, as nh_metric_counter(), with the upper bounds of its buckets (ascending,
 * at most 32; +Inf is implied). NULL bounds: the default latency buckets, 50 us to 10 s. The
 * bounds of the first series of a family apply to every series of it.
 */
NH_API nh_metric *nh_metric_histogram(const char *name, const char *help,
                                      const nh_metric_label *labels, size_t label_count,
                                      const double *bounds, size_t bound_count, nh_error *err);

/** Adds v (>= 0 for counters) to a counter or gauge. NULL is ignored. */
NH_API void nh_metric_add(nh_metric *m, double v);

/** Sets a gauge. NULL is ignored. */
NH_API void nh_metric_set(nh_metric *m, double v);

/** Records one observation in a histogram. NULL is ignored. */
NH_API void nh_metric_observe(nh_metric *m, double v);

/** A collector: runs at the start of every rendering (to set gauges from current state). */
typedef void (*nh_metrics_collect_fn)(void *arg);

/** Adds a collector; returns a handle for nh_metrics_remove_collector(), 0 when out of
 * memory. Collectors run one rendering at a time, outside the registry's lock: they may set
 * and register series, and may wait briefly for another thread. */
NH_API unsigned long nh_metrics_add_collector(nh_metrics_collect_fn fn, void *arg);

/** Removes a collector (waits for a rendering in progress). */
NH_API void nh_metrics_remove_collector(unsigned long handle);

/** Turns the runtime's own request, stream and call counting on or off (default off). Any
 * thread. */
NH_API void nh_metrics_enable(bool on);

/** Whether the runtime's own counting is on. */
NH_API bool nh_metrics_enabled(void);

/** Renders every family in the Prometheus text format (version 0.0.4) into *out (malloc'ed,
 * NUL-terminated; free() it); returns its length, or 0 with *out NULL when out of memory. */
NH_API size_t nh_metrics_render(char **out);

#ifdef __cplusplus
}
#endif
#endif
