/* One node's life: start, serve, drain on a signal, stop. The main thread only waits for
 * signals; everything that serves runs on the runtime's owner thread. */
#include "run/node_run.h"

#include "admin/admin.h"
#include "plugin/plugin_host.h"

#include <nodehost/nodehost.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static nh_plugin_host *g_plugins; /* atomic: set once the plugins started */

void nh_run_block_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_config_change(nh_config *cfg, bool client_config, void *user) {
    (void)user;
    size_t n = nh_config_size(cfg);
    uint32_t ids[16];
    size_t shown = nh_config_ids(cfg, ids, 16);
    char list[160] = "";
    size_t off = 0;
    for (size_t i = 0; i < shown && off < sizeof list - 12; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%u", i ? " " : "", ids[i]);
    nh_logf(NH_LOG_INFO, "host", "%s is now [%s%s] (%zu)",
            client_config ? "ClientConfig" : "Config", list, n > shown ? " ..." : "", n);
    nh_plugin_host_config_changed(__atomic_load_n(&g_plugins, __ATOMIC_ACQUIRE), cfg,
                                  client_config);
}

/* Waits for SIGTERM/SIGINT (SIGHUP is reported, reloading is not there yet). Returns the
 * signal. */
static int wait_stop_signal(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            nh_logf(NH_LOG_WARN, "host", "SIGHUP: plugin reload is not available in this version");
            continue;
        }
        return sig;
    }
}

/* Lets calls in flight finish, up to grace_ms; a second SIGTERM/SIGINT cuts it short. Returns
 * the number of calls still open. */
static size_t drain(nh_plugin_host *ph, uint32_t grace_ms) {
    nh_plugin_host_drain(ph);
    int64_t deadline = mono_ns() + (int64_t)grace_ms * 1000000;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    size_t left;
    while ((left = nh_plugin_host_inflight(ph)) > 0) {
        int64_t now = mono_ns();
        if (now >= deadline) {
            nh_logf(NH_LOG_WARN, "host", "%zu call(s) still open after %u ms; stopping anyway",
                    left, grace_ms);
            return left;
        }
        struct timespec ts = {0, 10 * 1000000};
        if (sigtimedwait(&set, NULL, &ts) > 0) {
            nh_logf(NH_LOG_WARN, "host", "second stop signal: not waiting for %zu call(s)", left);
            return left;
        }
    }
    return 0;
}

int nh_run_node(const nh_host_config *cfg, const char *state_dir) {
    nh_error err = {0};
    int64_t started = mono_ns();
    /* Plugins are loaded and checked before anything listens or dials: a bad plugin stops the
     * start before peers see this node. */
    nh_plugin_host *ph = NULL;
    if (nh_plugin_host_load(cfg, state_dir, &ph, &err) != 0) {
        nh_logf(NH_LOG_ERROR, "host", "%s", err.message);
        return 1;
    }
    char rtname[24];
    snprintf(rtname, sizeof rtname, "node%u", cfg->node_id);
    nh_runtime_opts ro = {.name = rtname, .max_message_size = cfg->max_message_size};
    nh_runtime *rt = NULL;
    if (nh_runtime_new(&ro, &rt, &err) != 0) {
        nh_logf(NH_LOG_ERROR, "host", "cannot start the runtime: %s", err.message);
        nh_plugin_host_free(ph);
        return 1;
    }
    nh_node_addr *peers = calloc(cfg->peer_count ? cfg->peer_count : 1, sizeof *peers);
    uint32_t *peer_ids = calloc(cfg->peer_count ? cfg->peer_count : 1, sizeof *peer_ids);
    for (size_t i = 0; peers && peer_ids && i < cfg->peer_count; i++) {
        peers[i] = (nh_node_addr){.id = cfg->peers[i].id, .address = cfg->peers[i].address};
        peer_ids[i] = cfg->peers[i].id;
    }
    nh_server_opts so = {
        .listen = cfg->listen,
        .max_inbox = cfg->max_inbox,
        .node_id = cfg->node_id,
        .peers = peers,
        .peer_count = cfg->peer_count,
        .dial_peers = cfg->peer_count > 0,
        .refuse_clients = !cfg->clients_accept,
        .max_clients = cfg->clients_max,
        .on_config_change = on_config_change,
    };
    nh_server *srv = NULL;
    int port = 0, rc = 1;
    nh_admin_source admin = {.node_id = cfg->node_id,
                             .listen = cfg->listen,
                             .peer_ids = peer_ids,
                             .peer_count = cfg->peer_count,
                             .started_ns = started};
    if (!peers || !peer_ids) {
        nh_logf(NH_LOG_ERROR, "host", "out of memory");
        goto out;
    }
    if (nh_server_new(rt, &so, &srv, &port, &err) != 0) {
        nh_logf(NH_LOG_ERROR, "host", "cannot serve on %s: %s", cfg->listen, err.message);
        goto out;
    }
    admin.srv = srv;
    if (nh_admin_register(&admin, &err) != 0 ||
        nh_plugin_host_start(ph, rt, srv, cfg->node_id, &err) != 0) {
        nh_logf(NH_LOG_ERROR, "host", "%s", err.message);
        goto out;
    }
    __atomic_store_n(&admin.plugins, ph, __ATOMIC_RELEASE);
    __atomic_store_n(&g_plugins, ph, __ATOMIC_RELEASE);
    nh_logf(NH_LOG_INFO, "host",
            "node %u serving on %s (port %d), %zu known peer(s), %zu plugin(s)", cfg->node_id,
            cfg->listen, port, cfg->peer_count, cfg->plugin_count);
    int sig = wait_stop_signal();
    nh_logf(NH_LOG_INFO, "host", "%s: draining (%zu call(s) open, grace %u ms)", strsignal(sig),
            nh_plugin_host_inflight(ph), cfg->shutdown_grace_ms);
    size_t abandoned = drain(ph, cfg->shutdown_grace_ms);
    if (abandoned > 0) {
        /* Open calls may still be running plugin code (worker threads, deferred replies): no
         * fini, no unload, no waiting for them. Their streams die with the process. */
        nh_logf(NH_LOG_WARN, "host", "node %u stopped (%zu call(s) abandoned)", cfg->node_id,
                abandoned);
        fflush(stderr);
        fflush(stdout);
        _exit(0);
    }
    rc = 0;
out:
    __atomic_store_n(&g_plugins, NULL, __ATOMIC_RELEASE);
    nh_plugin_host_stop(ph);
    nh_runtime_free(rt);
    nh_plugin_host_free(ph);
    free(peers);
    free(peer_ids);
    if (rc == 0) nh_logf(NH_LOG_INFO, "host", "node %u stopped", cfg->node_id);
    return rc;
}
