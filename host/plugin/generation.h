/* One generation of a plugin: one loaded copy of its file, the configuration it was started
 * with, its state, and a count of everything of it that is still alive.
 *
 * The count (refs) is 1 while the generation is current, plus 1 per open call dispatched to it,
 * plus 1 per piece of SDK work its code started and that is still pending (posted tasks, offloaded
 * work, asynchronous calls with callbacks: the SDK holds the generation's scope for those, see
 * nh_scope in nodehost/runtime.h). When it drops to 0 nothing can run the generation's code any
 * more; the owner's idle function is called (on whatever thread dropped it), which must not free
 * the generation there but schedule that (the thread may be returning through SDK code). */
#ifndef NH_HOST_GENERATION_H
#define NH_HOST_GENERATION_H

#include "config/host_config.h"
#include "plugin/loader.h"

#include <nodehost/nodehost.h>
#include <nodehost/plugin.h>

/** A reference-counted configuration: generations keep the one their plugin config points into. */
typedef struct nh_conf_hold {
    nh_host_config *cfg;
    size_t refs; /* atomic */
    bool owned;  /* freed with the last reference (false: the caller's) */
} nh_conf_hold;

/** Wraps cfg with one reference. owned: free cfg with the last reference. NULL when out of
 * memory (cfg is then not taken). */
nh_conf_hold *nh_conf_hold_new(nh_host_config *cfg, bool owned);
/** One more reference. Any thread. */
void nh_conf_hold_ref(nh_conf_hold *h);
/** One reference less; frees at 0. Any thread. Accepts NULL. */
void nh_conf_hold_unref(nh_conf_hold *h);

typedef struct nh_generation nh_generation;

/** Called when a generation's count reaches 0 (any thread; must only schedule the free). */
typedef void (*nh_gen_idle_fn)(nh_generation *g, void *arg);

struct nh_generation {
    const nh_host_plugin *conf; /* the plugin's entry in hold->cfg */
    nh_conf_hold *hold;
    nh_loaded_plugin lp;
    void *state;
    bool inited, finished;
    uint64_t number;      /* 1 for the first load of a plugin, +1 per reload that changed it */
    int64_t loaded_at_ns; /* CLOCK_REALTIME */
    size_t refs;          /* atomic, see above */
    size_t calls;         /* atomic: open calls (for status) */
    nh_scope scope;       /* entered while its code runs; the SDK holds it for pending work */
    const char **method_names;
    nh_gen_idle_fn on_idle;
    void *idle_arg;
    void *tag;           /* the owner's (the plugin host's slot), NULL when none */
    nh_generation *next; /* the owner's list of retired generations */
};

/**
 * Loads a new generation of the plugin conf (an entry of hold->cfg; hold gets a reference):
 * unique copy in state_dir, descriptor checked, the plugin's check_config hook run, reserved
 * method names refused. Not initialised, count 1. NULL with err (`plugin 'x' ...`) on failure.
 */
nh_generation *nh_gen_load(const nh_host_plugin *conf, nh_conf_hold *hold, const char *state_dir,
                           uint64_t number, nh_error *err);

/** Runs the plugin's init. Returns 0, or -1 with err naming the plugin, its version and the
 * plugin's reason. */
int nh_gen_init(nh_generation *g, nh_runtime *rt, nh_server *srv, uint32_t node_id, nh_error *err);

/** Sets the function called when the count reaches 0. */
void nh_gen_set_idle(nh_generation *g, nh_gen_idle_fn fn, void *arg);

/** Count +1 / -1 (any thread). */
void nh_gen_ref(nh_generation *g);
void nh_gen_unref(nh_generation *g);

/** Runs fini once (if init ran). */
void nh_gen_finish(nh_generation *g);

/** Finishes, unloads (the object is closed: nothing of it may run any more) and frees. Accepts
 * NULL. */
void nh_gen_free(nh_generation *g);

/** The method of this generation with that name, or NULL. */
const nh_plugin_method *nh_gen_method(const nh_generation *g, const char *name);

#endif
