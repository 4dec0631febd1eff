/* The plugins of a running node: loading them at start, their generations, and the trampoline
 * that hands each request to the current generation's handler. */
#ifndef NH_HOST_PLUGIN_HOST_H
#define NH_HOST_PLUGIN_HOST_H

#include "config/host_config.h"
#include "reload/reloader.h"

#include <nodehost/plugin.h>

typedef struct nh_plugin_host nh_plugin_host;

/** Methods whose names start with this belong to the host (the admin service). */
#define NH_HOST_RESERVED_PREFIX "nodehost."

/** What the admin service reports about one plugin. Strings borrowed from the host. */
typedef struct nh_plugin_status {
    const char *name, *version, *path;
    uint64_t generation;
    int64_t loaded_at_unix_ns;
    size_t method_count;
    const char *const *methods; /* method_count names */
    uint64_t calls;             /* calls dispatched to this plugin since start */
    const char *sha256;         /* SHA-256 of the file the current generation was loaded from */
    size_t old_generations;     /* earlier generations still finishing calls (not unloaded) */
    size_t old_calls;           /* calls still open on those earlier generations */
} nh_plugin_status;

/** Loads every plugin of cfg (unique copies in state_dir), checks descriptors, their configs
 * (check_config hooks), method conflicts and reserved names; runs no init. On failure nothing
 * stays loaded and err says which plugin and why, at its entry in the file (for a method two
 * plugins declare: at the later one's entry, naming the earlier one and its line). */
int nh_plugin_host_load(const nh_host_config *cfg, const char *state_dir, nh_plugin_host **out,
                        nh_error *err);

/** Runs each plugin's init (in file order) and registers the methods on srv. On failure err
 * says which plugin and why; the caller then stops and frees ph as usual (plugins already
 * started get their fini). Not on the owner thread. */
int nh_plugin_host_start(nh_plugin_host *ph, nh_runtime *rt, nh_server *srv, uint32_t node_id,
                         nh_error *err);

/** --check-config: loads each plugin of cfg, checks its descriptor, its config (check_config
 * hook) and reserved names, then the method conflicts between those that passed, without
 * running init; unloads. Records every error in errs, each at its plugin's entry in the file
 * (`FILE:LINE:COL: plugins[i]: ...`; a conflict at the later plugin's, naming the earlier one and
 * its line), and goes on with the next plugin. Returns 0 when none was found, else -1. */
int nh_plugin_host_check(const nh_host_config *cfg, const char *state_dir, nh_error_list *errs);

/**
 * Reloads the plugins from cfg (a newly read configuration; taken, freed when no longer used).
 * Runs on the reload thread (not the owner thread, which it waits for), after
 * nh_plugin_host_start(). A plugin is staged when it is new or its file's bytes, its path or its
 * config subtree changed: loaded from a fresh unique copy, checked, its check_config and init
 * run; the method sets of all plugins must not clash. Then, on the owner thread and in one step,
 * each changed plugin's old generation exports its state and the new one imports it, new calls go
 * to the new generations, and removed plugins stop taking calls. Old generations finish the
 * calls and work they have and are finished and unloaded when nothing of them is left.
 * On any failure nothing changes (the old generations keep serving) and out->err says which
 * plugin failed and why. Fills out->changed and out->summary; returns 0 or -1.
 */
int nh_plugin_host_reload(nh_plugin_host *ph, nh_host_config *cfg, nh_reload_result *out);

/** The configuration the plugins serve now (the one given to nh_plugin_host_load(), or the last
 * reloaded one). Owner or reload thread. */
const nh_host_config *nh_plugin_host_config(const nh_plugin_host *ph);

/** Tells every current generation the Config and ClientConfig as they are now (owner thread,
 * posted): for the start, where changes that happened before the host was published were not
 * delivered. Any thread. */
void nh_plugin_host_announce_configs(nh_plugin_host *ph);

/** Forwards a Config/ClientConfig change to the plugins (owner thread). ph may be NULL. */
void nh_plugin_host_config_changed(nh_plugin_host *ph, nh_config *cfg, bool client_config);

/** From now on new calls are refused with UNAVAILABLE "node is shutting down", and the current
 * generations get their retire hook (stop periodic work). Any thread. */
void nh_plugin_host_drain(nh_plugin_host *ph);

/** Calls dispatched to plugins that have not ended yet. Any thread. */
size_t nh_plugin_host_inflight(const nh_plugin_host *ph);

/** Everything of every generation still alive: open calls plus pending SDK work (posted tasks,
 * offloaded work, asynchronous calls). 0 means stopping now runs no fini under running work.
 * Any thread while no reload runs. */
size_t nh_plugin_host_pending(nh_plugin_host *ph);

/** Number of plugins and the status of the i-th (owner thread, or while nothing changes). */
size_t nh_plugin_host_count(const nh_plugin_host *ph);
void nh_plugin_host_status(const nh_plugin_host *ph, size_t i, nh_plugin_status *out);

/** Drains (see nh_plugin_host_drain()), waits up to 10 s for pending work
 * (nh_plugin_host_pending()), then runs every generation's fini on the owner thread (any thread
 * except the owner; before nh_runtime_free()). */
void nh_plugin_host_stop(nh_plugin_host *ph);

/** Unloads and frees everything (after nh_runtime_free(): no call can still end). */
void nh_plugin_host_free(nh_plugin_host *ph);

#endif
