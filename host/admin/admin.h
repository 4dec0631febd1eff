/* The built-in admin service of a node ("nodehost.Admin.*" on the node's own Gorums stream) and
 * the client side used by `nodehost status` and `nodehost reload`. */
#ifndef NH_HOST_ADMIN_H
#define NH_HOST_ADMIN_H

#include "plugin/plugin_host.h"
#include "reload/reloader.h"

#include <nodehost/admin.h>

#include <stdio.h>

/** The method names of the admin service (defined once, in <nodehost/admin.h>). */
#define NH_ADMIN_STATUS NH_ADMIN_STATUS_METHOD
#define NH_ADMIN_RELOAD NH_ADMIN_RELOAD_METHOD

/** The reason Reload gives (UNAVAILABLE) until the node has set nh_admin_source.reloader. */
#define NH_ADMIN_RELOAD_NOT_READY "reload not available yet"

/** What the admin service reads from the running node. */
typedef struct nh_admin_source {
    nh_server *srv;
    nh_runtime *rt; /* the node's runtime */
    const nh_host_config *cfg; /* the configuration at start (who may call: admin.allow, tls);
                                  once the plugins run, the plugin host's current one */
    uint32_t node_id;
    const char *listen;
    const uint32_t *peer_ids;
    size_t peer_count;
    nh_plugin_host *plugins; /* atomic; may be NULL until the plugins are started */
    int64_t started_ns;      /* CLOCK_MONOTONIC */
    nh_reloader *reloader;   /* atomic (store with __ATOMIC_RELEASE); NULL until reloads are
                                possible: Reload then answers UNAVAILABLE. Must be freed
                                (nh_reloader_free()) before the runtime: its done callbacks
                                reply to deferred calls and post to the owner thread. */
} nh_admin_source;

/** Registers the admin methods (Status, Reload) on the source's server. src must outlive the
 * server. */
int nh_admin_register(nh_admin_source *src, nh_error *err);

/** Asks the node at address for its status and prints it to out (text, or one JSON object).
 * tls: connect with these credentials (the node's certificate must be signed by their CA);
 * NULL: plaintext. Returns 0, or -1 with err. */
int nh_admin_print_status(const char *address, uint32_t timeout_ms, bool json, nh_tls *tls,
                          FILE *out, nh_error *err);

/** Asks the node at address for a reload, waits up to timeout_ms for its outcome and prints it
 * to out (the reload line, then the plugins; or one JSON object). Returns 0 when the reload
 * succeeded, or -1 with err: the node's reason when it answered with an error (err->kind
 * NH_ERR_STATUS), otherwise why it could not be asked. */
int nh_admin_print_reload(const char *address, uint32_t timeout_ms, bool json, nh_tls *tls,
                          FILE *out, nh_error *err);

#endif
