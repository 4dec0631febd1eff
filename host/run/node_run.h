/* Running one node from its configuration until SIGTERM or SIGINT. */
#ifndef NH_HOST_NODE_RUN_H
#define NH_HOST_NODE_RUN_H

#include "config/host_config.h"

/** Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and so in every thread started
 * later); call first thing in main(). */
void nh_run_block_signals(void);

/**
 * Starts the node of cfg (runtime, server, admin service, plugins), serves until SIGTERM or
 * SIGINT, then drains: new calls are refused, calls in flight get up to
 * cfg->shutdown_grace_ms to finish, plugins are stopped, everything is freed. Returns 0 after a
 * clean stop, 1 when the node could not start (the error is logged).
 */
int nh_run_node(const nh_host_config *cfg, const char *state_dir);

#endif
