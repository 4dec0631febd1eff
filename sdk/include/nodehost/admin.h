/* nodehost: the admin service every nodehost node serves on its own Gorums stream
 * ("nodehost.Admin.*"), and a helper to ask a node for a reload of its plugins.
 *
 * The messages are in nodehost/admin.proto, installed with the SDK as
 * <prefix>/share/nodehost/proto/nodehost/admin.proto (host/proto/nodehost/admin.proto in the
 * source tree): generate code from it to decode the responses. */
#ifndef NODEHOST_ADMIN_H
#define NODEHOST_ADMIN_H

#include <nodehost/node.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The node's status: request nodehost.StatusRequest, response nodehost.StatusResponse (its
 * ID, Config, ClientConfig, known peers, plugins and reload counters). */
#define NH_ADMIN_STATUS_METHOD "nodehost.Admin.Status"

/** Reloads the node's configuration and plugins, as SIGHUP does: request
 * nodehost.ReloadRequest (no fields: zero bytes), response nodehost.ReloadResponse. The reply
 * comes once a reload that started after the request has ended; a failed reload is an error
 * status with the reason (the old plugin generations keep serving). */
#define NH_ADMIN_RELOAD_METHOD "nodehost.Admin.Reload"

/**
 * Asks the node to reload its configuration's plugins and waits for the outcome, up to
 * timeout_ms (0: no timeout; a reload runs the init of changed plugins, so allow seconds).
 * Sends the empty nodehost.ReloadRequest with nh_rpc() and does not decode the
 * nodehost.ReloadResponse (use nh_rpc() with NH_ADMIN_RELOAD_METHOD and admin.proto for its
 * details). Blocking: not on the owner thread (there it fails with NH_FAILED_PRECONDITION).
 *
 * Returns 0 when the node reports that the reload succeeded (also when nothing changed), or -1
 * with err set: the node's reason and code when it answered with an error (err->kind
 * NH_ERR_STATUS; e.g. a plugin whose init failed, UNAVAILABLE "node is stopping" or
 * "reload not available yet" while it starts), otherwise the transport error or timeout.
 */
NH_API int nh_admin_reload(nh_node *node, uint32_t timeout_ms, nh_error *err);

#ifdef __cplusplus
}
#endif
#endif
