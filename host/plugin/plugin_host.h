/* The plugins of a running node: loading them at start, their generations, and the trampoline
 * that hands each request to the current generation's handler. */
#ifndef NH_HOST_PLUGIN_HOST_H
#define NH_HOST_PLUGIN_HOST_H

#include "config/host_config.h"

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
} nh_plugin_status;

/** Loads every plugin of cfg (unique copies in state_dir), checks descriptors, their configs
 * (check_config hooks), method conflicts and reserved names; runs no init. On failure nothing
 * stays loaded and err says which plugin and why. */
int nh_plugin_host_load(const nh_host_config *cfg, const char *state_dir, nh_plugin_host **out,
                        nh_error *err);

/** Runs each plugin's init (in file order) and registers the methods on srv. On failure err
 * says which plugin and why; the caller then stops and frees ph as usual (plugins already
 * started get their fini). Not on the owner thread. */
int nh_plugin_host_start(nh_plugin_host *ph, nh_runtime *rt, nh_server *srv, uint32_t node_id,
                         nh_error *err);

/** --check-config: loads each plugin of cfg, checks its descriptor, its config
 * (check_config hook) and method conflicts, without running init; unloads. Returns 0, or -1
 * with the first error. */
int nh_plugin_host_check(const nh_host_config *cfg, const char *state_dir, nh_error *err);

/** Forwards a Config/ClientConfig change to the plugins (owner thread). ph may be NULL. */
void nh_plugin_host_config_changed(nh_plugin_host *ph, nh_config *cfg, bool client_config);

/** From now on new calls are refused with UNAVAILABLE "node is shutting down". Any thread. */
void nh_plugin_host_drain(nh_plugin_host *ph);

/** Calls dispatched to plugins that have not ended yet. Any thread. */
size_t nh_plugin_host_inflight(const nh_plugin_host *ph);

/** Number of plugins and the status of the i-th (owner thread, or while nothing changes). */
size_t nh_plugin_host_count(const nh_plugin_host *ph);
void nh_plugin_host_status(const nh_plugin_host *ph, size_t i, nh_plugin_status *out);

/** Runs every plugin's fini (any thread except the owner; before nh_runtime_free()). */
void nh_plugin_host_stop(nh_plugin_host *ph);

/** Unloads and frees everything (after nh_runtime_free(): no call can still end). */
void nh_plugin_host_free(nh_plugin_host *ph);

#endif
