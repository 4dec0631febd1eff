/* The server: listening, handler registration, the symmetric configuration's options (the
 * inbound manager, dialing peers), stopping. Dispatch lives in dispatch.c, the inbound manager
 * in inbound.c. */
#include "server/server_impl.h"

#include "config/config_impl.h"
#include "transport/channel.h"
#include "util/log.h"
#include "wire/metadata.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct new_args {
    nh_runtime *rt;
    const nh_server_opts *opts;
    nh_server *srv;
    int port;
    nh_error *err;
    int rc;
} new_args;

/* Opens the outbound configuration to every known peer but this node, announcing its ID, so
 * that this node shows up in their Config; the nodes reconnect in the background. */
static int dial_peers(nh_server *srv, const nh_server_opts *opts, nh_error *err) {
    size_t n = 0;
    nh_node_addr *others = calloc(opts->peer_count ? opts->peer_count : 1, sizeof *others);
    if (!others) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    for (size_t i = 0; i < opts->peer_count; i++)
        if (opts->peers[i].id != opts->node_id) others[n++] = opts->peers[i];
    char idbuf[16];
    snprintf(idbuf, sizeof idbuf, "%u", opts->node_id);
    nh_metadata md[] = {{NH_NODE_ID_KEY, idbuf}};
    /* Peer streams always run keepalive (the server's values, or the defaults). */
    uint32_t ka_time = opts->keepalive_time_ms, ka_timeout = opts->keepalive_timeout_ms;
    nh_tp_keepalive_resolve(&ka_time, &ka_timeout);
    nh_config_opts co = {.nodes = others,
                         .count = n,
                         .metadata = md,
                         .metadata_count = 1,
                         .backoff_base_ms = opts->backoff_base_ms,
                         .backoff_max_ms = opts->backoff_max_ms,
                         .keepalive_time_ms = ka_time,
                         .keepalive_timeout_ms = ka_timeout,
                         .tls = opts->tls};
    int rc = 0;
    if (n) rc = nh_config_new(srv->rt, &co, &srv->outbound, err);
    free(others);
    return rc;
}

static void new_on_owner(void *p) {
    new_args *a = p;
    nh_server *srv = a->srv;
    const nh_server_opts *o = a->opts;
    if (a->rt->stopping) {
        a->rc = nh_error_set(a->err, NH_UNAVAILABLE, NH_ERR_CLOSED, 0, "runtime stopped");
        return;
    }
    if ((o->node_id || o->peer_count) && nh_inbound_new(srv, o, a->err) != 0) {
        a->rc = -1;
        return;
    }
    srv->tp = nh_tp_server_new(a->rt->loop, o->listen, &a->port, nh_server_accept, srv,
                               o->keepalive_time_ms, o->keepalive_timeout_ms, o->tls, a->err);
    if (!srv->tp) {
        nh_inbound_free(srv->inbound);
        a->rc = -1;
        return;
    }
    nh_runtime_add_server(a->rt, srv);
    if (o->dial_peers && o->node_id && dial_peers(srv, o, a->err) != 0) {
        nh_server_stop_internal(srv); /* frees srv once gRPC confirmed the shutdown */
        a->srv = NULL;
        a->rc = -1;
        return;
    }
    nh_log(NH_LOG_INFO, "server", "listening on %s (port %d)%s%s", o->listen, a->port,
           o->tls ? " with TLS" : "", srv->inbound ? "" : " without peer tracking");
    a->rc = 0;
}

int nh_server_new(nh_runtime *rt, const nh_server_opts *opts, nh_server **out, int *bound_port,
                  nh_error *err) {
    if (!rt || !opts || !out)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "NULL argument");
    *out = NULL;
    if (!opts->listen || !*opts->listen)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "listen address is empty");
    if (opts->peer_count && !opts->peers)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "peers is NULL");
    if (opts->dial_peers && !opts->node_id)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "dial_peers needs node_id (the ID announced to peers)");
    if (opts->tls && nh_tls_own_identity(opts->tls, NULL, 0) == 0)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "a TLS server needs a certificate and key (nh_tls_opts.cert_file)");
    nh_server *srv = calloc(1, sizeof *srv);
    if (!srv) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    srv->rt = rt;
    srv->tls = nh_tls_ref(opts->tls);
    srv->max_inbox = opts->max_inbox ? opts->max_inbox : 1024;
    srv->max_queued_reply_bytes =
        opts->max_queued_reply_bytes ? opts->max_queued_reply_bytes : NH_DEFAULT_MAX_QUEUED_REPLY;
    srv->slow_reader_timeout_ms =
        opts->slow_reader_timeout_ms ? opts->slow_reader_timeout_ms : NH_DEFAULT_SLOW_READER_MS;
    new_args a = {.rt = rt, .opts = opts, .srv = srv, .err = err, .rc = -1};
    if (nh_runtime_sync(rt, new_on_owner, &a) != 0)
        a.rc = nh_error_set(err, NH_UNAVAILABLE, NH_ERR_CLOSED, 0, "runtime stopped");
    if (a.rc != 0) {
        if (a.srv && !a.srv->tp) { /* never listened: nothing else holds it */
            nh_tls_unref(srv->tls);
            free(srv);
        }
        return -1;
    }
    if (bound_port) *bound_port = a.port;
    *out = srv;
    return 0;
}

int nh_server_handle(nh_server *srv, const char *method, nh_handler_fn fn, void *user,
                     nh_error *err) {
    if (!srv) return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "server is NULL");
    return nh_methods_register(srv->rt, &srv->methods, method, fn, user, err);
}

static void free_server(void *p) {
    nh_server *srv = p;
    nh_methods_free(&srv->methods);
    nh_tls_unref(srv->tls);
    free(srv);
}

void nh_server_stop_internal(nh_server *srv) {
    if (srv->stopped) return;
    srv->stopped = true;
    nh_runtime_remove_server(srv->rt, srv);
    /* Streams outlive the server only as closed shells held by deferred contexts, which never
     * look at srv again; the transport cancels every live stream, and each reports on_closed.
     * The method table is freed once gRPC confirmed the shutdown. */
    for (nh_server_stream *st = srv->streams; st; st = st->next)
        st->srv = NULL;
    srv->streams = NULL;
    nh_config_unref(srv->outbound);
    srv->outbound = NULL;
    nh_inbound_free(srv->inbound);
    nh_tp_server_shutdown(srv->tp, free_server, srv);
}

static void stop_on_owner(void *p) {
    nh_server_stop_internal(p);
}

void nh_server_free(nh_server *srv) {
    if (!srv) return;
    if (nh_runtime_sync(srv->rt, stop_on_owner, srv) != 0)
        nh_log(NH_LOG_DEBUG, "server", "runtime already stopping; it stops the server");
}

static nh_config *snapshot(nh_server *srv, bool client) {
    if (srv && srv->inbound) return nh_inbound_snapshot(srv->inbound, client);
    return srv ? nh_config_from_nodes(srv->rt, NULL, 0, true) : NULL;
}

nh_config *nh_server_config(nh_server *srv) {
    return snapshot(srv, false);
}

nh_config *nh_server_members(nh_server *srv) {
    if (srv && srv->inbound) return nh_inbound_members(srv->inbound);
    return srv ? nh_config_from_nodes(srv->rt, NULL, 0, true) : NULL;
}

nh_config *nh_server_client_config(nh_server *srv) {
    return snapshot(srv, true);
}

nh_config *nh_server_outbound_config(nh_server *srv) {
    return srv && srv->outbound ? nh_config_ref(srv->outbound) : NULL;
}

int nh_server_wait_config(nh_server *srv, bool client, nh_config_cond_fn cond, void *user,
                          uint32_t timeout_ms, nh_error *err) {
    if (!srv || !cond)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "NULL argument");
    if (nh_runtime_on_owner(srv->rt))
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                            "waiting for a configuration on the owner thread would deadlock; use "
                            "on_config_change");
    if (!srv->inbound) {
        nh_config *c = snapshot(srv, client);
        bool ok = c && cond(c, user);
        nh_config_unref(c);
        if (ok) return 0;
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                            "this server tracks no peers (no node_id): its configurations never "
                            "change");
    }
    return nh_inbound_wait(srv->inbound, client, cond, user, timeout_ms, err);
}
