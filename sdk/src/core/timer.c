/* Timers on the owner thread (nh_timer_start). A timer is a libuv timer handle owned by the
 * owner thread, plus up to two references: the user's handle (nh_timer_stop releases it) and
 * the loop's (released when the handle closed). The captured scope is held from start until
 * the timer can no longer fire. Runtimes keep a list of their timers so that stopping the
 * runtime closes them. */
#include "core/runtime_impl.h"
#include "core/scope.h"
#include "util/log.h"

#include <nodehost/timer.h>

#include <stdlib.h>

struct nh_timer {
    nh_runtime *rt;
    uv_timer_t handle;
    nh_timer_fn fn;
    void *arg;
    const nh_scope *scope; /* held while not NULL */
    uint64_t delay_ms, repeat_ms;
    bool armed;                   /* owner thread: the handle is initialised and not closing */
    bool stopped;                 /* owner thread: no more firing */
    bool detached;                /* atomic: disarmed, the runtime no longer needed to release */
    int refs;                     /* atomic: user handle + loop side */
    struct nh_timer *next, *prev; /* the runtime's list (owner thread) */
};

static void timer_unref(nh_timer *t) {
    if (__atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0) free(t);
}

/* Owner thread: the timer can no longer fire; its scope is released. */
static void release_scope(nh_timer *t) {
    const nh_scope *s = t->scope;
    t->scope = NULL;
    nh_scope_release(s);
}

static void unlist(nh_timer *t) {
    nh_runtime *rt = t->rt;
    if (t->prev)
        t->prev->next = t->next;
    else if (rt->timers == t)
        rt->timers = t->next;
    if (t->next) t->next->prev = t->prev;
    t->next = t->prev = NULL;
}

static void on_closed(uv_handle_t *h) {
    timer_unref(h->data);
}

/* Owner thread: stops firing, closes the handle (the loop's reference goes with it). */
static void disarm(nh_timer *t) {
    if (t->stopped) return;
    t->stopped = true;
    release_scope(t);
    /* Before the reference goes: a timer without a user handle is freed by the unref below. */
    __atomic_store_n(&t->detached, true, __ATOMIC_RELEASE);
    if (t->armed) {
        t->armed = false;
        unlist(t);
        uv_timer_stop(&t->handle);
        uv_close((uv_handle_t *)&t->handle, on_closed);
    } else {
        timer_unref(t); /* never armed: the loop side never took its reference into a handle */
    }
}

static void on_fire(uv_timer_t *h) {
    nh_timer *t = h->data;
    if (t->stopped) return;
    const nh_scope *prev = nh_scope_swap(t->scope);
    t->fn(t->arg);
    nh_scope_restore(prev);
    if (t->repeat_ms == 0 && !t->stopped) disarm(t); /* a one-shot fired: nothing more */
}

static void arm_now(nh_timer *t) {
    if (t->stopped) return; /* stopped before it was armed */
    if (t->rt->stopping) {
        disarm(t);
        return;
    }
    uv_timer_init(nh_tp_loop_uv(t->rt->loop), &t->handle);
    t->handle.data = t;
    t->armed = true;
    t->next = t->rt->timers;
    t->prev = NULL;
    if (t->rt->timers) t->rt->timers->prev = t;
    t->rt->timers = t;
    uv_timer_start(&t->handle, on_fire, t->delay_ms, t->repeat_ms);
}

/* The posted form: the post holds a reference of its own, so that a stop on the owner thread
 * before the post runs cannot free the timer under it. */
static void arm_posted(void *p) {
    arm_now(p);
    timer_unref(p);
}

int nh_timer_start(nh_runtime *rt, uint64_t delay_ms, uint64_t repeat_ms, nh_timer_fn fn, void *arg,
                   nh_timer **out, nh_error *err) {
    if (out) *out = NULL;
    if (!rt || !fn)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "NULL runtime or function");
    if (!out && repeat_ms)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "a periodic timer needs a handle to be stopped with");
    nh_timer *t = calloc(1, sizeof *t);
    if (!t) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    *t = (nh_timer){.rt = rt,
                    .fn = fn,
                    .arg = arg,
                    .delay_ms = delay_ms,
                    .repeat_ms = repeat_ms,
                    .refs = out ? 2 : 1};
    bool on_owner = nh_runtime_on_owner(rt);
    if (!on_owner) t->refs++; /* the post's (arm_posted) */
    t->scope = nh_scope_capture();
    nh_scope_hold(t->scope);
    if (on_owner) {
        arm_now(t);
    } else if (nh_runtime_post_internal(rt, arm_posted, t) != 0) {
        const nh_scope *s = t->scope;
        free(t);
        nh_scope_release(s);
        return nh_error_set(err, NH_UNAVAILABLE, NH_ERR_CLOSED, 0, "runtime stopped");
    }
    if (out) *out = t;
    return 0;
}

static void stop_task(void *p) {
    nh_timer *t = p;
    disarm(t);
    timer_unref(t); /* the user's reference */
}

void nh_timer_stop(nh_timer *t) {
    if (!t) return;
    if (__atomic_load_n(&t->detached, __ATOMIC_ACQUIRE)) {
        /* Fired (one-shot) or stopped with its runtime: only the handle is left, and the
         * runtime may already be gone. */
        timer_unref(t);
        return;
    }
    if (nh_runtime_on_owner(t->rt)) {
        stop_task(t);
        return;
    }
    /* Once the runtime stopped, its stop already disarmed every timer (or is about to, with
     * the loop drained): only the user's reference is left to drop. */
    if (nh_runtime_post_internal(t->rt, stop_task, t) != 0) timer_unref(t);
}

void nh_timers_stop_all(nh_runtime *rt) {
    while (rt->timers)
        disarm(rt->timers);
}
