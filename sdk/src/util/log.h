/* Internal logging: the SDK's own messages go through the public logger (nodehost/log.h). */
#ifndef NH_UTIL_LOG_H
#define NH_UTIL_LOG_H

#include <nodehost/log.h>

#include <stddef.h>
#include <stdint.h>

/** True when messages of this level are printed. */
int nh_log_enabled(nh_log_level level);

/** Sets the rate limit of nh_logf(): at most burst lines per (level, component, call site) per
 * second, 0 = unlimited, negative = read NH_LOG_BURST again (default 10). Clears the rate-limit
 * table, dropping pending "suppressed" counts. Any thread; meant for tests and the program. */
void nh_log_set_burst(int burst);

/** A clock in nanoseconds (monotonic: only differences matter). */
typedef int64_t (*nh_log_clock_fn)(void);

/** Replaces the clock the rate limiter uses; NULL restores CLOCK_MONOTONIC. For tests. */
void nh_log_set_clock(nh_log_clock_fn now_ns);

/** Receives each complete log line (newline included, not NUL-terminated at len). */
typedef void (*nh_log_sink_fn)(void *ctx, const char *line, size_t len);

/** Sends log lines to sink instead of stderr; NULL restores stderr. For tests; set it while no
 * other thread logs. */
void nh_log_set_sink(nh_log_sink_fn sink, void *ctx);

/** As nh_logf(), with the rate limit keyed by site (any value that identifies the call site;
 * compared, never dereferenced) instead of the format. For messages forwarded from other
 * libraries. */
void nh_log_site(nh_log_level level, const char *component, const void *site, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** Sets this thread's current method (JSON lines carry `"method"`); returns the previous one.
 * The dispatcher sets it around handlers. */
const char *nh_log_set_method(const char *method);

/** True when this call should get an access line (sampling); cheap when the log is off. */
int nh_log_access_pick(void);

/** Writes one access line (see nh_log_set_access_sample()). */
void nh_log_access(const char *method, const char *caller, const char *peer_kind, uint32_t peer_id,
                   const char *code, double duration_ms);

/** Internal name of nh_logf(). */
#define nh_log nh_logf

#endif
