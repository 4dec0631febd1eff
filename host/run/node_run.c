/* One node's life: start, serve, drain on a signal, stop. The main thread only waits for
 * signals; everything that serves runs on the runtime's owner thread. */
#include "run/node_run.h"

#include "metrics/http_endpoint.h"
#include "metrics/node_metrics.h"

#include "admin/admin.h"
#include "plugin/plugin_host.h"
#include "reload/reloader.h"
#include "reload/watch.h"
#include "run/sd_notify.h"

#include <nodehost/nodehost.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static nh_plugin_host *g_plugins; /* atomic: set once the plugins started */
static bool g_stopping;           /* atomic: a stop signal arrived (no READY=1 after STOPPING=1) */

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
    /* nh_config_ids returns the size, not the count copied: clamp to the array. */
    size_t shown = nh_config_ids(cfg, ids, 16);
    if (shown > 16) shown = 16;
    char list[160] = "";
    size_t off = 0;
    for (size_t i = 0; i < shown && off < sizeof list - 12; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%u", i ? " " : "", ids[i]);
    nh_logf(NH_LOG_INFO, "host", "%s is now [%s%s] (%zu)",
            client_config ? "ClientConfig" : "Config", list, n > shown ? " ..." : "", n);
    nh_plugin_host_config_changed(__atomic_load_n(&g_plugins, __ATOMIC_ACQUIRE), cfg,
                                  client_config);
}

/* ---- reload ------------------------------------------------------------------------------- */

typedef struct node_reload {
    nh_plugin_host *ph;
    nh_tls *tls;          /* the node's credentials, rotated by reloads (NULL: plaintext) */
    const char *file;     /* the configuration file, re-read at each reload */
    uint32_t id_override; /* --id, 0 when not given */
    nh_reloader *reloader;
    nh_plugin_watch *watch; /* NULL unless reload.watch */
} node_reload;

/* The plugin files of cfg, for the watch (pointers into cfg; malloc'ed array). */
static const char **plugin_paths(const nh_host_config *cfg) {
    const char **paths = calloc(cfg->plugin_count ? cfg->plugin_count : 1, sizeof *paths);
    for (size_t i = 0; paths && i < cfg->plugin_count; i++)
        paths[i] = cfg->plugins[i].path;
    return paths;
}

/* The watch saw a plugin file's bytes change. */
static void on_plugin_file_changed(void *arg, const char *path) {
    node_reload *nr = arg;
    nh_logf(NH_LOG_INFO, "reload", "%s changed", path);
    if (nh_reloader_request(nr->reloader, "watch", NULL, NULL) != 0)
        nh_logf(NH_LOG_WARN, "reload", "cannot queue a reload for %s", path);
}

static int watch_start(node_reload *nr, const nh_host_config *cfg, nh_error *err) {
    if (!cfg->reload_watch) return 0;
    const char **paths = plugin_paths(cfg);
    if (!paths) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    int rc = nh_plugin_watch_start(paths, cfg->plugin_count, cfg->reload_debounce_ms,
                                   on_plugin_file_changed, nr, &nr->watch, err);
    free(paths);
    if (rc == 0)
        nh_logf(NH_LOG_INFO, "reload", "watching %zu plugin file(s) (debounce %u ms)",
                cfg->plugin_count, cfg->reload_debounce_ms);
    return rc;
}

/* After a reload: the watch follows the plugin list. */
static void watch_update(node_reload *nr) {
    if (!nr->watch) return;
    const nh_host_config *cfg = nh_plugin_host_config(nr->ph);
    const char **paths = plugin_paths(cfg);
    nh_error err = {0};
    if (!paths || nh_plugin_watch_set(nr->watch, paths, cfg->plugin_count, &err) != 0)
        nh_logf(NH_LOG_WARN, "reload", "the plugin watch keeps its old files: %s",
                paths ? err.message : "out of memory");
    free(paths);
}

static const nh_host_peer *find_peer(const nh_host_config *c, uint32_t id) {
    for (size_t i = 0; i < c->peer_count; i++)
        if (c->peers[i].id == id) return &c->peers[i];
    return NULL;
}

/* What a reload cannot change yet: the node's address, its peers, client and transport limits.
 * Returns 0 when equal, else -1 with err naming the first difference. */
static int fixed_settings_equal(const nh_host_config *cur, const nh_host_config *nw,
                                nh_error *err) {
    static const char restart[] = "cannot be changed by a reload; restart the node";
    if (cur->node_id != nw->node_id)
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                            "%s: node.id changed (%u -> %u): %s", nw->file, cur->node_id,
                            nw->node_id, restart);
    if (strcmp(cur->listen, nw->listen) != 0)
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                            "%s: node.listen changed (%s -> %s): %s", nw->file, cur->listen,
                            nw->listen, restart);
    for (size_t i = 0; i < nw->peer_count; i++) {
        const nh_host_peer *p = &nw->peers[i], *o = find_peer(cur, p->id);
        if (!o)
            nh_conf_error(p->where, err, "peer %u added: peer membership %s", p->id, restart);
        else if (strcmp(o->address, p->address) != 0)
            nh_conf_error(p->where, err, "peer %u moved (%s -> %s): peer membership %s", p->id,
                          o->address, p->address, restart);
        else if ((o->identity == NULL) != (p->identity == NULL) ||
                 (o->identity && strcmp(o->identity, p->identity) != 0))
            nh_conf_error(p->where, err, "peer %u: identity changed: %s", p->id, restart);
        else
            continue;
        err->code = NH_FAILED_PRECONDITION;
        return -1;
    }
    for (size_t i = 0; i < cur->peer_count; i++)
        if (!find_peer(nw, cur->peers[i].id))
            return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                                "%s: peers: peer %u removed: peer membership %s", nw->file,
                                cur->peers[i].id, restart);
    if (cur->clients_accept != nw->clients_accept || cur->clients_max != nw->clients_max ||
        cur->clients_max_per_connection != nw->clients_max_per_connection)
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0, "%s: clients: %s",
                            nw->file, restart);
    if (cur->max_message_size != nw->max_message_size || cur->max_inbox != nw->max_inbox)
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                            "%s: limits.max_message_size and limits.max_inbox %s", nw->file,
                            restart);
    if (cur->max_queued_reply_bytes != nw->max_queued_reply_bytes ||
        cur->slow_reader_timeout_ms != nw->slow_reader_timeout_ms)
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                            "%s: limits.max_queued_reply_bytes and "
                            "limits.slow_reader_timeout_ms %s",
                            nw->file, restart);
    if (cur->keepalive_time_ms != nw->keepalive_time_ms ||
        cur->keepalive_timeout_ms != nw->keepalive_timeout_ms)
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                            "%s: keepalive.time_ms and keepalive.timeout_ms %s", nw->file, restart);
    if ((cur->metrics_listen == NULL) != (nw->metrics_listen == NULL) ||
        (cur->metrics_listen && strcmp(cur->metrics_listen, nw->metrics_listen) != 0))
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0, "%s: metrics.listen %s",
                            nw->file, restart);
    if (cur->tls.on != nw->tls.on)
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0, "%s: tls turned %s: %s",
                            nw->file, nw->tls.on ? "on" : "off", restart);
    if (cur->tls.on && cur->tls.clients != nw->tls.clients)
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0, "%s: tls.clients %s",
                            nw->file, restart);
    return 0;
}

/* One reload (on the reloader's thread): re-read the file, refuse what needs a restart, apply
 * log settings that changed in the file, reload the plugins. */
static void reload_apply(node_reload *nr, nh_reload_result *out) {
    nh_host_config *nw = NULL;
    out->ok = false;
    if (nh_host_config_load(nr->file, nr->id_override, &nw, &out->err) != 0) return;
    const nh_host_config *cur = nh_plugin_host_config(nr->ph);
    if (fixed_settings_equal(cur, nw, &out->err) != 0) {
        nh_host_config_free(nw);
        return;
    }
    /* Settings applied by the node itself, read before nw goes to the plugin host. */
    int level = nw->log_level, old_level = cur->log_level;
    double access = nw->log_access;
    nh_host_log_format format = nw->log_format, old_format = cur->log_format;
    if (nw->reload_watch != cur->reload_watch || nw->reload_debounce_ms != cur->reload_debounce_ms)
        nh_logf(NH_LOG_WARN, "reload", "%s: reload.watch and reload.debounce_ms apply at restart",
                nw->file);
    /* New certificate, key and CA: checked before anything changes, applied after the plugins
     * reloaded (new handshakes use them; established streams keep theirs). */
    nh_tls *check = NULL;
    if (nr->tls) {
        if (nh_host_tls_load(nw, NULL, &check, &out->err) != 0) {
            nh_host_config_free(nw);
            return;
        }
        nh_tls_unref(check);
    }
    nh_tls *rotate = nr->tls;
    char *cert = rotate ? strdup(nw->tls.cert) : NULL; /* nw goes to the plugin host */
    if (nh_plugin_host_reload(nr->ph, nw, out) != 0) {
        free(cert);
        return;
    }
    if (rotate) {
        /* nw now belongs to the plugin host and is the configuration serving. */
        const nh_host_config *now = nh_plugin_host_config(nr->ph);
        nh_error e;
        if (nh_host_tls_load(now, rotate, NULL, &e) != 0) {
            out->ok = false;
            out->err = e;
        } else {
            nh_logf(NH_LOG_INFO, "reload", "TLS credentials reloaded from %s (generation %llu)",
                    cert ? cert : "?", (unsigned long long)nh_tls_generation(rotate));
        }
    }
    free(cert);
    if (!out->ok) return;
    /* Log settings the file changed (a --log-level given at start holds until then). */
    if (level != old_level) nh_log_set_level((nh_log_level)level);
    nh_log_set_access_sample(access);
    if (format != old_format)
        nh_log_set_format(format == NH_LOGFMT_JSON ? NH_LOG_JSON : NH_LOG_TEXT);
    watch_update(nr);
}

/* A reload, announced to systemd (RELOADING=1, then READY=1 whether it worked or not). */
static void do_reload(void *arg, nh_reload_result *out) {
    node_reload *nr = arg;
    nh_sd_reloading();
    reload_apply(nr, out);
    if (__atomic_load_n(&g_stopping, __ATOMIC_ACQUIRE)) return;
    const nh_host_config *now = nh_plugin_host_config(nr->ph);
    if (out->ok)
        nh_sd_ready("node %u serving on %s, %zu plugin(s); reloaded", now->node_id, now->listen,
                    now->plugin_count);
    else
        nh_sd_ready("node %u serving on %s; reload failed: %s", now->node_id, now->listen,
                    out->err.message);
}

/* Waits for SIGTERM/SIGINT; SIGHUP asks for a reload (when rl is not NULL). Returns the
 * signal. */
static int wait_stop_signal(nh_reloader *rl) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            if (nh_reloader_request(rl, "SIGHUP", NULL, NULL) != 0)
                nh_logf(NH_LOG_WARN, "host", "SIGHUP: cannot queue a reload");
            continue;
        }
        return sig;
    }
}

/* Lets calls in flight and the plugins' pending work (tasks, offloaded work, asynchronous calls)
 * finish, up to grace_ms; a second SIGTERM/SIGINT cuts it short. Returns what is still open
 * (calls and tasks; 0 when all ended). */
static size_t drain(nh_plugin_host *ph, uint32_t grace_ms) {
    nh_plugin_host_drain(ph);
    int64_t deadline = mono_ns() + (int64_t)grace_ms * 1000000;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    size_t left;
    while ((left = nh_plugin_host_pending(ph)) > 0) {
        size_t calls = nh_plugin_host_inflight(ph);
        int64_t now = mono_ns();
        if (now >= deadline) {
            nh_logf(NH_LOG_WARN, "host",
                    "%zu call(s) still open after %u ms; stopping anyway (%zu plugin task(s) "
                    "pending)",
                    calls, grace_ms, left - calls);
            return left;
        }
        struct timespec ts = {0, 10 * 1000000};
        if (sigtimedwait(&set, NULL, &ts) > 0) {
            nh_logf(NH_LOG_WARN, "host",
                    "second stop signal: not waiting for %zu call(s) (%zu plugin task(s) "
                    "pending)",
                    calls, left - calls);
            return left;
        }
    }
    return 0;
}

static bool endpoint_ready(void *arg, char *why, size_t why_size) {
    return nh_node_ready(arg, why, why_size);
}

int nh_run_node(const nh_host_config *cfg, const char *state_dir) {
    nh_http_endpoint *endpoint = NULL;
    nh_node_metrics *node_metrics = NULL;
    nh_log_set_node(cfg->node_id);
    nh_log_set_access_sample(cfg->log_access);
    nh_error err = {0};
    int64_t started = mono_ns();
    /* Plugins are loaded and checked before anything listens or dials: a bad plugin stops the
     * start before peers see this node. */
    nh_tls *tls = NULL;
    if (cfg->tls.on && nh_host_tls_load(cfg, NULL, &tls, &err) != 0) {
        nh_logf(NH_LOG_ERROR, "host", "%s", err.message);
        return 1;
    }
    if (!tls && !nh_host_listen_is_loopback(cfg->listen))
        nh_logf(NH_LOG_WARN, "host",
                "listening on %s without TLS: anyone who reaches it can claim any node ID and read "
                "every message (set tls: cert, key, ca)",
                cfg->listen);
    nh_plugin_host *ph = NULL;
    if (nh_plugin_host_load(cfg, state_dir, &ph, &err) != 0) {
        nh_logf(NH_LOG_ERROR, "host", "%s", err.message);
        nh_tls_unref(tls);
        return 1;
    }
    char rtname[24];
    snprintf(rtname, sizeof rtname, "node%u", cfg->node_id);
    nh_runtime_opts ro = {
        .name = rtname, .max_message_size = cfg->max_message_size, .threads = nh_host_threads(cfg)};
    nh_runtime *rt = NULL;
    if (nh_runtime_new(&ro, &rt, &err) != 0) {
        nh_logf(NH_LOG_ERROR, "host", "cannot start the runtime: %s", err.message);
        nh_plugin_host_free(ph);
        nh_tls_unref(tls);
        return 1;
    }
    nh_node_addr *peers = calloc(cfg->peer_count ? cfg->peer_count : 1, sizeof *peers);
    uint32_t *peer_ids = calloc(cfg->peer_count ? cfg->peer_count : 1, sizeof *peer_ids);
    for (size_t i = 0; peers && peer_ids && i < cfg->peer_count; i++) {
        peers[i] = (nh_node_addr){.id = cfg->peers[i].id,
                                  .address = cfg->peers[i].address,
                                  .identity = cfg->peers[i].identity};
        peer_ids[i] = cfg->peers[i].id;
    }
    nh_server_opts so = {
        .listen = cfg->listen,
        .max_inbox = cfg->max_inbox,
        .max_queued_reply_bytes = cfg->max_queued_reply_bytes,
        .slow_reader_timeout_ms = cfg->slow_reader_timeout_ms,
        .node_id = cfg->node_id,
        .peers = peers,
        .peer_count = cfg->peer_count,
        .dial_peers = cfg->peer_count > 0,
        .refuse_clients = !cfg->clients_accept,
        .max_clients = cfg->clients_max,
        .keepalive_time_ms = cfg->keepalive_time_ms,
        .keepalive_timeout_ms = cfg->keepalive_timeout_ms,
        .on_config_change = on_config_change,
        .tls = tls,
        .max_clients_per_connection = cfg->clients_max_per_connection,
    };
    nh_server *srv = NULL;
    nh_reloader *reloader = NULL;
    node_reload nr = {.file = cfg->file, .id_override = cfg->id_override, .tls = tls};
    int port = 0, rc = 1;
    nh_admin_source admin = {.cfg = cfg,
                             .node_id = cfg->node_id,
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
    admin.rt = rt;
    /* Metrics and health: the runtime counts from now on; the endpoint serves from its own
     * thread (/readyz says "starting" until the plugins serve). */
    if (cfg->metrics_listen) {
        nh_metrics_enable(true);
        node_metrics = nh_node_metrics_start(&admin);
        endpoint = nh_http_endpoint_start(cfg->metrics_listen, endpoint_ready, &admin, &err);
        if (!endpoint) {
            nh_logf(NH_LOG_ERROR, "host", "%s", err.message);
            goto out;
        }
        nh_logf(NH_LOG_INFO, "host", "metrics and health on http://%s/metrics, /healthz, /readyz",
                nh_http_endpoint_address(endpoint));
    }
    if (nh_admin_register(&admin, &err) != 0 ||
        nh_plugin_host_start(ph, rt, srv, cfg->node_id, &err) != 0) {
        nh_logf(NH_LOG_ERROR, "host", "%s", err.message);
        goto out;
    }
    __atomic_store_n(&admin.plugins, ph, __ATOMIC_RELEASE);
    __atomic_store_n(&g_plugins, ph, __ATOMIC_RELEASE);
    /* Config changes before this point reached no plugin (peers may connect as soon as the
     * server listens): tell them the configurations as they are now. */
    nh_plugin_host_announce_configs(ph);
    nr.ph = ph;
    if (nh_reloader_new(do_reload, &nr, &reloader, &err) != 0) {
        nh_logf(NH_LOG_ERROR, "host", "%s", err.message);
        goto out;
    }
    nr.reloader = reloader;
    if (watch_start(&nr, cfg, &err) != 0) {
        nh_logf(NH_LOG_ERROR, "host", "%s", err.message);
        goto out;
    }
    __atomic_store_n(&admin.reloader, reloader, __ATOMIC_RELEASE);
    nh_logf(NH_LOG_INFO, "host",
            "node %u serving on %s (port %d), %zu known peer(s), %zu plugin(s), %u thread(s)",
            cfg->node_id, cfg->listen, port, cfg->peer_count, cfg->plugin_count,
            nh_runtime_threads(rt));
    nh_sd_ready("node %u serving on %s, %zu plugin(s)", cfg->node_id, cfg->listen,
                cfg->plugin_count);
    int sig = wait_stop_signal(reloader);
    __atomic_store_n(&g_stopping, true, __ATOMIC_RELEASE);
    nh_sd_stopping("stopping (%s): draining the calls in flight", strsignal(sig));
    /* A reload running now finishes first; requests still queued, and later ones, are
     * answered "node is stopping". Then the watch (a reload may still update it). */
    nh_reload_stats rs;
    nh_reloader_stats(reloader, &rs);
    if (rs.running)
        nh_logf(NH_LOG_INFO, "host", "%s: waiting for reload %llu to finish", strsignal(sig),
                (unsigned long long)rs.reloads);
    nh_reloader_stop(reloader);
    nh_plugin_watch_stop(nr.watch);
    nr.watch = NULL;
    uint32_t grace_ms = nh_plugin_host_config(ph)->shutdown_grace_ms;
    nh_logf(NH_LOG_INFO, "host", "%s: draining (%zu call(s) open, grace %u ms)", strsignal(sig),
            nh_plugin_host_inflight(ph), grace_ms);
    size_t abandoned = drain(ph, grace_ms);
    if (abandoned > 0) {
        /* Open calls may still be running plugin code (worker threads, deferred replies): no
         * fini, no unload, no waiting for them. Their streams die with the process. */
        nh_logf(NH_LOG_WARN, "host", "node %u stopped (%zu call(s) abandoned)", cfg->node_id,
                nh_plugin_host_inflight(ph));
        fflush(stderr);
        fflush(stdout);
        _exit(0);
    }
    rc = 0;
out:
    nh_reloader_stop(reloader);
    nh_plugin_watch_stop(nr.watch);
    /* The endpoint first: a scrape reads the server, the reloader and the plugin host. */
    nh_http_endpoint_stop(endpoint);
    nh_node_metrics_stop(node_metrics);
    __atomic_store_n(&g_plugins, NULL, __ATOMIC_RELEASE);
    nh_plugin_host_stop(ph);
    nh_runtime_free(rt);
    nh_reloader_free(reloader); /* after the runtime: the admin service may still use it */
    nh_plugin_host_free(ph);
    free(peers);
    free(peer_ids);
    nh_tls_unref(tls);
    if (rc == 0) nh_logf(NH_LOG_INFO, "host", "node %u stopped", cfg->node_id);
    return rc;
}
