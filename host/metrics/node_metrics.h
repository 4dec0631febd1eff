/* The node's own metrics, gathered when /metrics is scraped (a collector), and its readiness.
 *
 *   nodehost_build_info{version,node}        1
 *   nodehost_ready                           1 when ready (nh_node_ready())
 *   nodehost_config_nodes, nodehost_client_config_nodes, nodehost_members,
 *   nodehost_members_reachable               sizes of Config, ClientConfig, the membership
 *   nodehost_peer_connected{peer}            1 while this node's stream to the peer is up
 *   nodehost_peer_latency_seconds{peer}      moving average of call round trips
 *   nodehost_peer_reconnects_total{peer}     connected streams that broke
 *   nodehost_peer_last_error{peer,code}      1 for the code of the last transport error
 *   nodehost_reloads_total{outcome}          ok / failed
 *   nodehost_plugin_generations{plugin}      generations alive (serving + finishing)
 *   nodehost_process_*                       CPU, memory, descriptors, threads, start time
 * (the SDK adds the request, stream and call series: nodehost/metrics.h). */
#ifndef NH_HOST_NODE_METRICS_H
#define NH_HOST_NODE_METRICS_H

#include "admin/admin.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct nh_node_metrics nh_node_metrics;

/** Ready: the plugins serve (src->plugins set) and a majority of the membership is reachable
 * (always, for a node without peers). Otherwise false with why. Any thread. */
bool nh_node_ready(const nh_admin_source *src, char *why, size_t why_size);

/** Registers the collector of src's node (src must outlive it). NULL when out of memory. */
nh_node_metrics *nh_node_metrics_start(nh_admin_source *src);

/** Unregisters it (waits for a scrape in progress) and frees it. Accepts NULL. */
void nh_node_metrics_stop(nh_node_metrics *nm);

#endif
