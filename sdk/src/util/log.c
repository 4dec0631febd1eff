#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_level = -1;

static int level_from_env(void) {
    const char *v = getenv("NH_LOG");
    if (!v) return NH_LOG_WARN;
    if (!strcmp(v, "error")) return NH_LOG_ERROR;
    if (!strcmp(v, "info")) return NH_LOG_INFO;
    if (!strcmp(v, "debug")) return NH_LOG_DEBUG;
    return NH_LOG_WARN;
}

int nh_log_enabled(nh_log_level level) {
    int cur = __atomic_load_n(&g_level, __ATOMIC_RELAXED);
    if (cur < 0) {
        cur = level_from_env();
        __atomic_store_n(&g_level, cur, __ATOMIC_RELAXED);
    }
    return (int)level <= cur;
}

void nh_log(nh_log_level level, const char *component, const char *fmt, ...) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (!nh_log_enabled(level)) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %s %s: %s\n", when, ts.tv_nsec / 1000000L, names[level], component,
            msg);
}
