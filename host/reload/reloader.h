/* Reload requests: coalescing triggers (SIGHUP, the admin service, the plugin-directory watch)
 * into reloads run one at a time on a dedicated thread.
 *
 * A request that arrives while no reload runs starts one. Requests that arrive while a reload
 * runs are coalesced into exactly one more reload, which starts when the running one ends; each
 * request is answered with the result of the first reload that *started after it arrived*, so a
 * request is never reported done by a reload that may have missed its change. */
#ifndef NH_HOST_RELOADER_H
#define NH_HOST_RELOADER_H

#include <nodehost/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nh_reloader nh_reloader;

/** The outcome of one reload. */
typedef struct nh_reload_result {
    uint64_t number;   /**< which reload (1, 2, ...); 0 when none ran (stopping) */
    bool ok;           /**< the new configuration and plugins are serving */
    size_t changed;    /**< plugins switched to a new generation (0: nothing changed) */
    int64_t took_ns;   /**< from the first request it covers to the new generations
                            serving (or to the failure) */
    nh_error err;      /**< when !ok: why (the old generations keep serving) */
    char summary[512]; /**< when ok: what changed, e.g. "storage 1.0.0 -> 1.0.1 (gen 3)" */
} nh_reload_result;

/** Does one reload (on the reloader's thread): fills *out (number and took_ns are set by the
 * reloader afterwards). */
typedef void (*nh_reload_fn)(void *arg, nh_reload_result *out);

/** Called once per request with the result that covers it, on the reloader's thread (or on the
 * thread calling nh_reloader_free() with ok false, err UNAVAILABLE "node is stopping"). Must not
 * block for long; may call nh_reloader_request(). */
typedef void (*nh_reload_done_fn)(const nh_reload_result *r, void *arg);

/** Counters and the last result. */
typedef struct nh_reload_stats {
    uint64_t requests;     /**< requests received */
    uint64_t reloads;      /**< reloads run */
    uint64_t failures;     /**< reloads that failed */
    bool running;          /**< a reload is running now */
    nh_reload_result last; /**< the last reload's result (number 0 before the first) */
} nh_reload_stats;

/** Starts the reloader thread. fn(arg) does a reload. Returns 0, or -1 with err. */
int nh_reloader_new(nh_reload_fn fn, void *arg, nh_reloader **out, nh_error *err);

/**
 * Asks for a reload. trigger names the source for the log ("SIGHUP", "admin", "watch").
 * done (may be NULL) runs once with the covering result. Any thread; never blocks on a running
 * reload. Returns 0, or -1 when the reloader is stopping (done is then not called).
 */
int nh_reloader_request(nh_reloader *r, const char *trigger, nh_reload_done_fn done, void *arg);

/** A copy of the counters and the last result. Any thread. */
void nh_reloader_stats(nh_reloader *r, nh_reload_stats *out);

/** Waits for the running reload, answers requests still queued with "node is stopping" and
 * joins the thread; later requests are refused (-1). Idempotent; accepts NULL. Not from a done
 * function. */
void nh_reloader_stop(nh_reloader *r);

/** Stops (see nh_reloader_stop()) and frees. Accepts NULL. */
void nh_reloader_free(nh_reloader *r);

#endif
