/* The built-in admin service of a node ("nodehost.Admin.*" on the node's own Gorums stream) and
 * the client side used by `nodehost status`. */
#ifndef NH_HOST_ADMIN_H
#define NH_HOST_ADMIN_H

#include "plugin/plugin_host.h"

#include <stdio.h>

/** The method names of the admin service. */
#define NH_ADMIN_STATUS "nodehost.Admin.Status"

/** What the admin service reads from the running node. */
typedef struct nh_admin_source {
    nh_server *srv;
    uint32_t node_id;
    const char *listen;
    const uint32_t *peer_ids;
    size_t peer_count;
    nh_plugin_host *plugins; /* may be NULL until the plugins are started */
    int64_t started_ns;      /* CLOCK_MONOTONIC */
} nh_admin_source;

/** Registers the admin methods on the source's server. src must outlive the server. */
int nh_admin_register(nh_admin_source *src, nh_error *err);

/** Asks the node at address for its status and prints it to out. Returns 0, or -1 with err. */
int nh_admin_print_status(const char *address, uint32_t timeout_ms, bool json, FILE *out,
                          nh_error *err);

#endif
