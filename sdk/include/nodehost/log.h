/* nodehost: logging shared by the SDK, the nodehost program and plugins: one line per event on
 * stderr, as text or as JSON lines. */
#ifndef NODEHOST_LOG_H
#define NODEHOST_LOG_H

#include <nodehost/status.h>

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Log levels, most severe first. */
typedef enum nh_log_level {
    NH_LOG_ERROR = 0, /**< something failed */
    NH_LOG_WARN = 1,  /**< something is wrong but handled */
    NH_LOG_INFO = 2,  /**< life-cycle events (start, stop, plugin loaded) */
    NH_LOG_DEBUG = 3, /**< details */
} nh_log_level;

/** Line formats. */
typedef enum nh_log_format {
    NH_LOG_TEXT = 0, /**< `2026-11-26T10:00:00.123Z info host: message` */
    NH_LOG_JSON = 1, /**< `{"ts":"...","level":"info","component":"host","msg":"message"}` */
} nh_log_format;

/** Sets the most detailed level printed (default: the NH_LOG environment variable,
 * error|warn|info|debug, else warn). Any thread. */
NH_API void nh_log_set_level(nh_log_level level);

/** Sets the line format (default text). Any thread. */
NH_API void nh_log_set_format(nh_log_format format);

/** Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
NH_API int nh_log_level_parse(const char *name);

/** Logs one line when level is enabled; component names the source ("host", "storage").
 * Repeated lines are rate-limited per (level, component, fmt pointer, i.e. call site): at most
 * NH_LOG_BURST lines (default 10; 0 = unlimited) per key per second; lines beyond that are
 * dropped and counted, and the next line of that key printed in a later window is preceded by
 * "suppressed N similar message(s) in the last X s: <last dropped message>" at the same level
 * and component (JSON lines also carry `"suppressed":N`). Any thread; never allocates. */
NH_API void nh_logf(nh_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** JSON lines carry `"node":<id>` from now on (0: no field). The nodehost program sets its
 * node ID. Any thread. */
NH_API void nh_log_set_node(uint32_t node_id);

/** Sets the plugin name JSON lines logged by this thread carry (`"plugin":"<name>"`; NULL:
 * none) and returns the previous one, to be restored. The nodehost program sets it around
 * every plugin call. (Lines logged inside a handler also carry `"method"`.) */
NH_API const char *nh_log_set_plugin(const char *plugin);

/**
 * The access log: one line (component "access", level info) for this fraction of the calls
 * served, 0 (off, the default) to 1 (every call): method, caller (certificate identity, else
 * address), peer kind and ID, status code and duration; JSON lines carry them as fields
 * (`method`, `caller`, `peer_kind`, `peer_id`, `code`, `duration_ms`). Sampled calls are chosen
 * at random; access lines are not rate-limited. Any thread.
 */
NH_API void nh_log_set_access_sample(double fraction);

#ifdef __cplusplus
}
#endif
#endif
