/* Server side: one request_call always outstanding; each accepted NodeStream becomes an
 * nh_tp_stream with initial metadata sent at once (so clients learn the stream is up) and a
 * receive armed; RECV_CLOSE_ON_SERVER watches for the end once the receive cannot
 * (nh_tp_stream_watch_end). */
#include "transport/server.h"

#include "transport/channel_args.h"

#include "transport/channel.h"
#include "transport/relay.h"
#include "transport/stream_impl.h"
#include "transport/tls_creds.h"
#include "util/log.h"
#include "util/tsan.h"

#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct accept_slot {
    nh_tp_tag tag;
    nh_tp_loop *bound; /* the loop whose queue the accepted call reports to */
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
} accept_slot;

/* A call on a path we do not serve: answered UNIMPLEMENTED, then dropped. */
typedef struct reject_call {
    nh_tp_tag tag;
    nh_tp_loop *loop; /* the loop the call is bound to */
    grpc_call *call;
    int cancelled;
} reject_call;

struct nh_tp_server {
    nh_tp_loop *loop;
    grpc_server *server;
    nh_tp_accept_fn accept_fn;
    void *user;
    accept_slot slot;
    bool slot_armed;
    bool shutting_down;
    bool shut_down; /* gRPC confirmed; freed once the accept slot completed too */
    nh_tp_tag shutdown_tag;
    void (*done)(void *);
    void *done_arg;
    nh_tls *tls;            /* NULL: plaintext */
    nh_tp_tls_fetch *fetch; /* the server credentials' certificate fetch */
};

static void on_accept(nh_tp_tag *tag, bool ok);

static void server_destroy(nh_tp_server *srv) {
    grpc_server_destroy(srv->server);
    nh_tp_tls_fetch_free(srv->fetch);
    nh_tls_unref(srv->tls);
    void (*done)(void *) = srv->done;
    void *arg = srv->done_arg;
    free(srv);
    if (done) done(arg);
}

static void arm_accept(nh_tp_server *srv) {
    accept_slot *a = &srv->slot;
    a->call = NULL;
    grpc_call_details_init(&a->details);
    grpc_metadata_array_init(&a->md);
    /* The accept is reported on our queue; the call itself is bound to the loop it will run on
     * (with transport loops, the next one round robin: gRPC needs only the notification queue
     * to be registered with the server). */
    a->bound = nh_tp_loop_pick(srv->loop);
    grpc_completion_queue *cq = nh_tp_loop_cq(srv->loop);
    grpc_call_error e = grpc_server_request_call(srv->server, &a->call, &a->details, &a->md,
                                                 nh_tp_loop_cq(a->bound), cq, &a->tag);
    if (e != GRPC_CALL_OK) {
        nh_log(NH_LOG_ERROR, "server", "grpc_server_request_call failed (%d)", (int)e);
        grpc_call_details_destroy(&a->details);
        grpc_metadata_array_destroy(&a->md);
        return;
    }
    srv->slot_armed = true;
    nh_tp_loop_op_begin(srv->loop);
}

static void on_reject_done(nh_tp_tag *tag, bool ok) {
    (void)ok;
    reject_call *r = (reject_call *)tag;
    grpc_call_unref(r->call);
    nh_tp_loop_op_end(r->loop);
    free(r);
}

/* Answers call with a status and drops it. The batch starts here; its completion comes on the
 * loop the call is bound to, which counts it (util/tsan.h: the edge gRPC provides). */
static void reject(nh_tp_loop *loop, grpc_call *call, grpc_status_code code, const char *msg) {
    reject_call *r = calloc(1, sizeof *r);
    if (!r) {
        grpc_call_cancel(call, NULL);
        grpc_call_unref(call);
        return;
    }
    r->tag.fn = on_reject_done;
    r->loop = loop;
    r->call = call;
    grpc_slice details = grpc_slice_from_copied_string(msg);
    grpc_op ops[3] = {{.op = GRPC_OP_SEND_INITIAL_METADATA},
                      {.op = GRPC_OP_SEND_STATUS_FROM_SERVER},
                      {.op = GRPC_OP_RECV_CLOSE_ON_SERVER}};
    ops[1].data.send_status_from_server.status = code;
    ops[1].data.send_status_from_server.status_details = &details;
    ops[2].data.recv_close_on_server.cancelled = &r->cancelled;
    nh_tp_loop_op_begin(loop);
    nh_tsan_release(&r->tag);
    if (grpc_call_start_batch(call, ops, 3, &r->tag, NULL) != GRPC_CALL_OK) {
        nh_tp_loop_op_end(loop);
        grpc_call_unref(call);
        free(r);
    }
    grpc_slice_unref(details);
}

static void on_server_close(nh_tp_tag *tag, bool ok) {
    (void)ok;
    nh_tp_stream *s = (nh_tp_stream *)((char *)tag - offsetof(nh_tp_stream, close_tag));
    nh_code code = s->cancelled ? NH_CANCELLED : (s->status_started ? s->finish_code : NH_OK);
    nh_tp_stream_report_closed(s, code, s->cancelled ? "stream cancelled by the peer" : "");
    nh_tp_stream_op_done(s);
}

static void on_start_done(nh_tp_tag *tag, bool ok) {
    (void)ok;
    nh_tp_stream *s = (nh_tp_stream *)((char *)tag - offsetof(nh_tp_stream, start_tag));
    nh_tp_stream_op_done(s);
}

/* Sends an accepted stream's initial metadata at once (so the client learns the stream is up).
 * False when it could not be started. */
static bool send_headers(nh_tp_stream *s) {
    grpc_op start = {.op = GRPC_OP_SEND_INITIAL_METADATA};
    return nh_tp_stream_start(s, &start, 1, &s->start_tag);
}

/* The start of a relayed accepted stream, on its transport loop: headers, then the receive. */
static bool start_relayed(nh_tp_stream *s, void *arg) {
    (void)arg;
    if (!send_headers(s)) return false;
    nh_tp_stream_arm_recv(s);
    return true;
}

static void accept_stream(nh_tp_server *srv, nh_tp_loop *bound, grpc_call *call,
                          grpc_metadata_array *md) {
    nh_identity *id = NULL;
    if (srv->tls) {
        /* The client's certificate, verified here rather than in the handshake so that both
         * sides learn why a stream is refused. */
        char why[512], msg[700];
        bool presented;
        id = nh_tp_call_identity(srv->tls, call, false, &presented, why, sizeof why);
        if (!id && (presented || nh_tls_client_mode(srv->tls) == NH_TLS_CLIENTS_REQUIRE)) {
            char *peer = grpc_call_get_peer(call);
            if (presented)
                snprintf(msg, sizeof msg, "client certificate refused: %s", why);
            else
                snprintf(msg, sizeof msg,
                         "this node requires a client certificate (tls.clients: require) and "
                         "none was presented");
            nh_log(NH_LOG_WARN, "server", "refused a stream from %s: %s", peer ? peer : "?", msg);
            gpr_free(peer);
            reject(bound, call, GRPC_STATUS_UNAUTHENTICATED, msg);
            return;
        }
    }
    nh_tp_stream *s = nh_tp_stream_new(bound, call, false);
    if (!s) {
        nh_identity_unref(id);
        grpc_call_cancel_with_status(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
        grpc_call_unref(call);
        return;
    }
    s->identity = id;
    s->start_tag.fn = on_start_done;
    s->close_tag.fn = on_server_close;
    bool relayed = bound != srv->loop;
    nh_tp_stream *user_side = relayed ? nh_tp_relay_new(srv->loop, s, start_relayed, NULL, NULL)
                                      : (send_headers(s) ? s : NULL);
    if (!user_side) {
        grpc_call_cancel(call, NULL);
        s->closed = true;
        nh_tp_stream_free_closed(s); /* unrefs the call */
        return;
    }

    nh_md_view stack_views[16];
    nh_md_view *views = md->count <= 16 ? stack_views : calloc(md->count, sizeof *views);
    size_t n = views ? md->count : 0;
    for (size_t i = 0; i < n; i++) {
        views[i].key = (const char *)GRPC_SLICE_START_PTR(md->metadata[i].key);
        views[i].key_len = GRPC_SLICE_LENGTH(md->metadata[i].key);
        views[i].value = (const char *)GRPC_SLICE_START_PTR(md->metadata[i].value);
        views[i].value_len = GRPC_SLICE_LENGTH(md->metadata[i].value);
    }
    srv->accept_fn(srv->user, user_side, views, n);
    if (views != stack_views) free(views);
    if (!relayed) nh_tp_stream_arm_recv(s); /* after the user could pause it */
}

static void on_accept(nh_tp_tag *tag, bool ok) {
    nh_tp_server *srv = (nh_tp_server *)((char *)tag - offsetof(nh_tp_server, slot));
    accept_slot *a = &srv->slot;
    srv->slot_armed = false;
    nh_tp_loop_op_end(srv->loop);
    if (ok && a->call && srv->shutting_down) {
        /* A call that raced with the shutdown: refuse it, never hand it to the user. */
        grpc_call_cancel_with_status(a->call, GRPC_STATUS_UNAVAILABLE, "server stopping", NULL);
        grpc_call_unref(a->call);
    } else if (ok && a->call) {
        const grpc_slice m = a->details.method;
        size_t plen = strlen(NH_NODESTREAM_PATH);
        if (GRPC_SLICE_LENGTH(m) == plen &&
            memcmp(GRPC_SLICE_START_PTR(m), NH_NODESTREAM_PATH, plen) == 0) {
            accept_stream(srv, a->bound, a->call, &a->md);
        } else {
            char *path = grpc_slice_to_c_string(m);
            nh_log(NH_LOG_INFO, "server", "rejecting a call to unknown path %s", path);
            char msg[300];
            snprintf(msg, sizeof msg, "unknown service path %s: this server serves %s only", path,
                     NH_NODESTREAM_PATH);
            reject(a->bound, a->call, GRPC_STATUS_UNIMPLEMENTED, msg);
            gpr_free(path);
        }
    }
    grpc_call_details_destroy(&a->details);
    grpc_metadata_array_destroy(&a->md);
    if (ok && !srv->shutting_down) arm_accept(srv);
    if (srv->shut_down && !srv->slot_armed) server_destroy(srv);
}

/* Why gRPC could not bind addr: gRPC only says that it failed, so this resolves the address
 * and tries to bind it as gRPC does (SO_REUSEADDR, no SO_REUSEPORT) to name the reason, e.g.
 * "address already in use". Writes into buf and returns it. */
static const char *bind_failure(const char *addr, char *buf, size_t size) {
    if (!strncmp(addr, "unix:", 5) || !strncmp(addr, "unix-abstract:", 14)) {
        snprintf(buf, size, "cannot bind the socket (in use, or a bad path)");
        return buf;
    }
    char host[256];
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : 0;
    if (!colon || !colon[1] || hl >= sizeof host) {
        snprintf(buf, size, "not a valid address (expected host:port)");
        return buf;
    }
    memcpy(host, addr, hl);
    host[hl] = '\0';
    const char *h = host;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { /* [v6]:port */
        host[hl - 1] = '\0';
        h = host + 1;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &res);
    if (gai != 0) {
        snprintf(buf, size, "cannot resolve it (%s)", gai_strerror(gai));
        return buf;
    }
    int err = 0;
    for (struct addrinfo *ai = res; ai && !err; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) err = errno;
        close(fd);
    }
    freeaddrinfo(res);
    if (err == EADDRINUSE)
        snprintf(buf, size, "address already in use");
    else if (err)
        snprintf(buf, size, "%s", strerror(err));
    else
        snprintf(buf, size, "gRPC could not bind it");
    return buf;
}

nh_tp_server *nh_tp_server_new(nh_tp_loop *loop, const char *addr, int *port, nh_tp_accept_fn fn,
                               void *user, uint32_t keepalive_time_ms,
                               uint32_t keepalive_timeout_ms, nh_tls *tls, nh_error *err) {
    nh_tp_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return NULL;
    }
    srv->loop = loop;
    srv->accept_fn = fn;
    srv->user = user;
    srv->slot.tag.fn = on_accept;
    int max = (int)nh_tp_loop_max_message(loop);
    nh_tp_keepalive_resolve(&keepalive_time_ms, &keepalive_timeout_ms);
    /* Keepalive both ways: this server pings every accepted connection (so the stream of a dead
     * or stalled peer ends, and the peer leaves Config), and accepts the clients' keepalive
     * pings (channel.c), also without calls or data, down to half the smallest keepalive time
     * any peer may use (faster pings count as strikes; 2 strikes close the connection). */
    grpc_arg args[3 + NH_TP_KEEPALIVE_ARGS] = {
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = max},
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
         .value.integer = (int)(NH_KEEPALIVE_MIN_MS / 2)},
        /* No SO_REUSEPORT (gRPC sets it by default): a second node on a busy address must fail
         * to bind, not share the port with the first one and get half of its connections. */
        {.type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0},
    };
    nh_tp_keepalive_args(&args[3], keepalive_time_ms, keepalive_timeout_ms);
    grpc_channel_args cargs = {.num_args = sizeof args / sizeof args[0], .args = args};
    srv->server = grpc_server_create(&cargs, NULL);
    nh_tp_loop_register_server(loop, srv->server);
    grpc_server_credentials *creds = NULL;
    if (tls) {
        srv->tls = nh_tls_ref(tls);
        creds = nh_tp_tls_server_creds(tls, &srv->fetch);
    } else {
        creds = grpc_insecure_server_credentials_create();
    }
    int p = creds ? grpc_server_add_http2_port(srv->server, addr, creds) : 0;
    if (creds) grpc_server_credentials_release(creds);
    if (p == 0) {
        char why[128];
        nh_error_set(err, NH_UNAVAILABLE, NH_ERR_LOCAL, 0, "cannot listen on %s: %s", addr,
                     bind_failure(addr, why, sizeof why));
        grpc_server_destroy(srv->server);
        nh_tp_tls_fetch_free(srv->fetch);
        nh_tls_unref(srv->tls);
        free(srv);
        return NULL;
    }
    if (port) *port = p;
    grpc_server_start(srv->server);
    arm_accept(srv);
    return srv;
}

static void on_shutdown(nh_tp_tag *tag, bool ok) {
    (void)ok;
    nh_tp_server *srv = (nh_tp_server *)((char *)tag - offsetof(nh_tp_server, shutdown_tag));
    nh_tp_loop_op_end(srv->loop);
    srv->shut_down = true;
    if (!srv->slot_armed) server_destroy(srv);
}

void nh_tp_server_shutdown(nh_tp_server *srv, void (*done)(void *), void *arg) {
    if (srv->shutting_down) return;
    srv->shutting_down = true;
    srv->done = done;
    srv->done_arg = arg;
    srv->shutdown_tag.fn = on_shutdown;
    nh_tp_loop_op_begin(srv->loop);
    grpc_server_shutdown_and_notify(srv->server, nh_tp_loop_cq(srv->loop), &srv->shutdown_tag);
    grpc_server_cancel_all_calls(srv->server);
}
