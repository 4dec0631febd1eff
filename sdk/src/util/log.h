/* Internal logging: one line per event on stderr, with a level and a component. */
#ifndef NH_UTIL_LOG_H
#define NH_UTIL_LOG_H

/** Log levels, most severe first. */
typedef enum nh_log_level {
    NH_LOG_ERROR = 0,
    NH_LOG_WARN = 1,
    NH_LOG_INFO = 2,
    NH_LOG_DEBUG = 3,
} nh_log_level;

/** True when messages of this level are printed (NH_LOG=error|warn|info|debug, default warn). */
int nh_log_enabled(nh_log_level level);

/** Prints "<time> <level> <component>: <message>" to stderr when the level is enabled. */
void nh_log(nh_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
