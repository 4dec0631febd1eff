/* sd_notify(3) wrappers (see sd_notify.h). */
#include "run/sd_notify.h"

#include <nodehost/log.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

static void send_state(const char *state, const char *fmt, va_list ap) {
    const char *sock = getenv("NOTIFY_SOCKET");
    if (sock == NULL || sock[0] == '\0') return;
    char msg[512];
    int n = snprintf(msg, sizeof msg, "%s\nSTATUS=", state);
    if (n < 0 || (size_t)n >= sizeof msg) return;
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    /* STATUS= is one line: a newline in it would start a bogus assignment. */
    for (char *p = msg + n; *p; p++)
        if (*p == '\n') *p = ' ';
    int rc = sd_notify(0, msg);
    if (rc < 0)
        nh_logf(NH_LOG_DEBUG, "host", "sd_notify(%.*s) to %s: %s", (int)strcspn(state, "\n"), state,
                sock, strerror(-rc));
}

void nh_sd_ready(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    send_state("READY=1", fmt, ap);
    va_end(ap);
}

static void send_fmt(const char *state, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_fmt(const char *state, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    send_state(state, fmt, ap);
    va_end(ap);
}

void nh_sd_reloading(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char state[64];
    snprintf(state, sizeof state, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    send_fmt(state, "reloading");
}

void nh_sd_stopping(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    send_state("STOPPING=1", fmt, ap);
    va_end(ap);
}
