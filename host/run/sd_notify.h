/* The systemd notification protocol (sd_notify(3)) for a node run as a Type=notify service:
 * READY=1 once it serves, RELOADING=1 ... READY=1 around every reload, STOPPING=1 when it
 * drains. Every function is a no-op when NOTIFY_SOCKET is unset (not started by systemd), may be
 * called from any thread and never fails the caller (a lost notification is logged at debug). */
#ifndef NH_HOST_SD_NOTIFY_H
#define NH_HOST_SD_NOTIFY_H

/** Sends READY=1 and STATUS=<printf fmt>. */
void nh_sd_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Sends RELOADING=1, MONOTONIC_USEC=<now> (systemd 253+ matches it to the reload it asked
 * for) and STATUS=reloading. */
void nh_sd_reloading(void);

/** Sends STOPPING=1 and STATUS=<printf fmt>. */
void nh_sd_stopping(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
