/* Logging: one line per event on stderr, text or JSON lines, level from NH_LOG or the program. */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_level = -1;
static int g_format = NH_LOG_TEXT;

static const char *const g_names[] = {"error", "warn", "info", "debug"};

int nh_log_level_parse(const char *name) {
    for (int i = 0; name && i < 4; i++)
        if (!strcmp(name, g_names[i])) return i;
    return -1;
}

static int level_from_env(void) {
    int l = nh_log_level_parse(getenv("NH_LOG"));
    return l < 0 ? NH_LOG_WARN : l;
}

void nh_log_set_level(nh_log_level level) {
    __atomic_store_n(&g_level, (int)level, __ATOMIC_RELAXED);
}

void nh_log_set_format(nh_log_format format) {
    __atomic_store_n(&g_format, (int)format, __ATOMIC_RELAXED);
}

int nh_log_enabled(nh_log_level level) {
    int cur = __atomic_load_n(&g_level, __ATOMIC_RELAXED);
    if (cur < 0) {
        cur = level_from_env();
        __atomic_store_n(&g_level, cur, __ATOMIC_RELAXED);
    }
    return (int)level <= cur;
}

/* Appends s to out as the inside of a JSON string. */
static size_t json_escape(char *out, size_t cap, const char *s) {
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

void nh_logf(nh_log_level level, const char *component, const char *fmt, ...) {
    if ((int)level < 0 || (int)level > NH_LOG_DEBUG || !nh_log_enabled(level)) return;
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
    if (!component) component = "-";
    if (__atomic_load_n(&g_format, __ATOMIC_RELAXED) == NH_LOG_JSON) {
        char emsg[2 * sizeof msg], ecomp[128];
        json_escape(emsg, sizeof emsg, msg);
        json_escape(ecomp, sizeof ecomp, component);
        fprintf(stderr,
                "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"component\":\"%s\",\"msg\":\"%s\"}\n",
                when, ts.tv_nsec / 1000000L, g_names[level], ecomp, emsg);
    } else {
        fprintf(stderr, "%s.%03ldZ %s %s: %s\n", when, ts.tv_nsec / 1000000L, g_names[level],
                component, msg);
    }
}
