/* nodehost: one-shot and periodic timers on the runtime's owner thread. */
#ifndef NODEHOST_TIMER_H
#define NODEHOST_TIMER_H

#include <nodehost/runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A timer of a runtime: fires its function on the owner thread. */
typedef struct nh_timer nh_timer;

/** A timer's function; runs on the owner thread and must not block. */
typedef void (*nh_timer_fn)(void *arg);

/**
 * Starts a timer on rt: fn(arg) runs on the owner thread after delay_ms, then every
 * repeat_ms when repeat_ms is not 0. Any thread.
 *
 * With out, the caller owns the timer and must release it with nh_timer_stop() (also after a
 * one-shot timer fired). With out NULL (one-shot timers only) the timer frees itself after it
 * fired or when the runtime stops.
 *
 * Work scopes (see nh_scope in runtime.h): the timer captures the calling thread's current
 * scope when started, runs fn inside it, and holds it while fn may still run: until a one-shot
 * timer fired, or until nh_timer_stop() for a periodic one. A plugin's periodic timer therefore
 * keeps its generation loaded until the plugin stops it (do that in its retire hook).
 *
 * A timer still running when the runtime stops is stopped then (fn does not run again).
 * Returns 0, or -1 with err set (NULL fn, out NULL with repeat_ms, runtime stopping, out of
 * memory).
 */
NH_API int nh_timer_start(nh_runtime *rt, uint64_t delay_ms, uint64_t repeat_ms, nh_timer_fn fn,
                          void *arg, nh_timer **out, nh_error *err);

/**
 * Stops the timer and releases it. On the owner thread fn does not run after this returns;
 * from another thread the stop is handed to the owner thread, so fn may run once more
 * meanwhile. A timer that already fired (one-shot) or ended with its runtime is only released,
 * also after nh_runtime_free(). Accepts NULL.
 */
NH_API void nh_timer_stop(nh_timer *t);

#ifdef __cplusplus
}
#endif
#endif
