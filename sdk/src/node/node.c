/* An outbound node. It keeps one NodeStream open in the background:
 *
 *   open stream --(server answers)--> ready --(break)--> fail written calls, reopen at once
 *        \--(fails before ready)--> down: new calls fail fast; retry after backoff
 *                                                  (or at once: nh_node_reconnect_now)
 *
 * A peer that dies or stalls without closing the connection is found by keepalive pings (the
 * channel's; nh_node_opts): the stream breaks like any other.
 * Calls are written to the current stream at once (gRPC holds them until the connection is
 * up). A response is matched to its call by message_seq_no through the node's router. */
#include "node/node_impl.h"
#include "security/tls_impl.h"

#include "server/server_impl.h"
#include "util/clock.h"
#include "util/log.h"
#include "wire/codec.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void open_stream(nh_node *n);
static void on_message(void *user, const uint8_t *data, size_t len);
static void on_sent(void *user, void *tag, bool ok);
static void on_ready(void *user);
static void on_closed(void *user, nh_code code, const char *details);

static const nh_tp_stream_events node_stream_events = {
    .on_message = on_message,
    .on_recv_end = NULL,
    .on_sent = on_sent,
    .on_ready = on_ready,
    .on_closed = on_closed,
};

void nh_node_label(const nh_node *n, char *buf, size_t len) {
    if (n)
        snprintf(buf, len, "node %u (%s)", n->id, n->address);
    else
        snprintf(buf, len, "node ?");
}

static void set_last_error(nh_node *n, nh_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_last_error(nh_node *n, nh_code code, const char *fmt, ...) {
    char msg[NH_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char label[160];
    nh_node_label(n, label, sizeof label);
    pthread_mutex_lock(&n->err_mu);
    nh_error_set(&n->last_err, code, NH_ERR_TRANSPORT, n->id, "%s: %s", label, msg);
    n->has_err = true;
    pthread_mutex_unlock(&n->err_mu);
}

static void update_pending(nh_node *n) {
    __atomic_store_n(&n->pending, nh_router_len(&n->router), __ATOMIC_RELAXED);
}

/* Calls take a node reference on the caller's thread, before they reach the owner thread, so
 * node references are atomic. */
void nh_node_ref(nh_node *n) {
    __atomic_add_fetch(&n->refs, 1, __ATOMIC_RELAXED);
}

static void node_free(nh_node *n) {
    if (n->listed) nh_runtime_remove_node(n->rt, n);
    nh_tp_channel_free(n->channel);
    nh_router_free(&n->router);
    for (size_t i = 0; i < n->md_count; i++) {
        free((char *)n->md[i].key);
        free((char *)n->md[i].value);
    }
    free(n->md);
    free(n->address);
    free(n->expect);
    free(n->identity);
    nh_tls_unref(n->tls);
    pthread_mutex_destroy(&n->err_mu);
    free(n);
}

static void free_task(void *p) {
    node_free(p);
}

void nh_node_unref(nh_node *n) {
    if (!n || __atomic_sub_fetch(&n->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    /* The last reference may go on any thread (a configuration snapshot released by a user
     * thread, after the peer left), but the free touches owner-thread state (the runtime's list
     * of nodes, the channel): off the owner it is posted there. A runtime that no longer takes
     * posts is stopping and frees its listed nodes itself once its loop ended
     * (nh_node_free_remaining). */
    if (n->listed && !nh_runtime_on_owner(n->rt)) {
        if (nh_runtime_post_internal(n->rt, free_task, n) != 0)
            nh_log(NH_LOG_DEBUG, "node", "node %u: runtime stopping; it frees the node", n->id);
        return;
    }
    node_free(n);
}

/* ---- the stream life cycle ---------------------------------------------------------------- */

static void on_retry(uv_timer_t *t) {
    nh_node *n = t->data;
    if (n->closing || n->stream) return;
    /* Our backoff is the one that counts: gRPC's own connect backoff (its jitter differs) must
     * not make the new stream fail fast on the previous attempt's failure. */
    nh_tp_channel_reset_backoff(n->channel);
    open_stream(n);
}

static void schedule_retry(nh_node *n, uint32_t delay_ms) {
    if (n->closing) return;
    uv_timer_start(&n->retry_timer, on_retry, delay_ms, 0);
}

/* A channel with the current credentials: after a certificate rotation (nh_tls_update) the
 * next connection is made with the new ones. A node addressed by host name also gets a new
 * channel after every stream that ended (stale_channel): a new channel resolves the name
 * again, so a peer that came back elsewhere (a rescheduled pod with a new IP) is found at
 * once. gRPC 1.51 alone re-resolves only 30 s after its previous resolution (its minimum
 * time between resolutions; resetting the connect backoff does not shorten it) and dials the
 * old addresses meanwhile. Streams on the old channel were already gone. */
static void refresh_channel(nh_node *n) {
    bool rotated = n->tls && nh_tls_generation(n->tls) != n->channel_gen;
    if (!rotated && !n->stale_channel) return;
    n->stale_channel = false;
    uint64_t gen = nh_tls_generation(n->tls);
    nh_error err;
    nh_tp_channel *ch =
        nh_tp_channel_new(n->rt->loop, n->address, n->backoff.base_ms, n->backoff.max_ms,
                          n->keepalive_time_ms, n->keepalive_timeout_ms, n->tls, n->expect, &err);
    if (!ch) return; /* keep the old channel */
    nh_tp_channel_free(n->channel);
    n->channel = ch;
    n->channel_gen = gen;
}

static void open_stream(nh_node *n) {
    refresh_channel(n);
    n->stream_ready = false;
    n->attempt_ns = nh_now_ns();
    n->stream = nh_tp_channel_open(n->channel, n->md, n->md_count, &node_stream_events, n);
    if (!n->stream) {
        set_last_error(n, NH_INTERNAL, "cannot start a stream");
        schedule_retry(n, nh_backoff_next(&n->backoff));
        return;
    }
    nh_node_ref(n); /* the stream's reference, dropped in on_closed */
}

static void on_ready(void *user) {
    nh_node *n = user;
    n->stream_ready = true;
    if (n->tls && n->stream) {
        const nh_identity *id = nh_tp_stream_identity(n->stream);
        if (id) nh_node_set_identity(n, id->name);
    }
    nh_backoff_reset(&n->backoff);
    __atomic_store_n(&n->connected, 1, __ATOMIC_RELAXED);
    nh_log(NH_LOG_INFO, "node", "node %u (%s): connected", n->id, n->address);
}

typedef struct fail_ctx {
    nh_node *node;
    nh_code code;
    nh_err_kind kind;
    const char *text;
} fail_ctx;

static void fail_entry(void *entry, bool streaming, void *arg) {
    (void)streaming;
    nh_pending *p = entry;
    fail_ctx *f = arg;
    p->in_router = false;
    p->ops->on_fail(p, f->node, f->code, f->kind, f->text);
}

static void fail_router(nh_node *n, nh_code code, nh_err_kind kind, const char *text) {
    fail_ctx f = {n, code, kind, text};
    nh_node_ref(n); /* legs may drop the last call reference to the node */
    nh_router_drain(&n->router, fail_entry, &f);
    update_pending(n);
    nh_node_unref(n);
}

static void on_closed(void *user, nh_code code, const char *details) {
    nh_node *n = user;
    bool was_ready = n->stream_ready;
    bool redialing = n->redialing;
    n->redialing = false;
    if (was_ready) __atomic_add_fetch(&n->breaks, 1, __ATOMIC_RELAXED);
    n->stream = NULL;
    if (n->by_name) n->stale_channel = true;
    if (n->backchannel) {
        nh_endpoint_close(n->backchannel);
        n->backchannel = NULL;
    }
    n->stream_ready = false;
    __atomic_store_n(&n->connected, 0, __ATOMIC_RELAXED);
    char text[NH_ERROR_MESSAGE_MAX];
    if (n->closing) {
        fail_router(n, NH_UNAVAILABLE, NH_ERR_CLOSED, "node closed");
    } else if (redialing) {
        /* nh_node_reconnect_now cancelled a connect attempt that had not succeeded: dial
         * again at once with a fresh resolution (nothing was sent on it). */
        fail_router(n, NH_UNAVAILABLE, NH_ERR_TRANSPORT, "not connected yet, redialing");
        schedule_retry(n, 0);
    } else {
        if (was_ready)
            snprintf(text, sizeof text, "stream broken (%s: %s)", nh_code_name(code), details);
        else
            snprintf(text, sizeof text, "cannot connect (%s: %s)", nh_code_name(code), details);
        set_last_error(n, code == NH_OK ? NH_UNAVAILABLE : code, "%s", text);
        nh_log(NH_LOG_INFO, "node", "node %u (%s): %s", n->id, n->address, text);
        /* Calls written to a broken stream fail (at-most-once): the server may have run them.
         * They carry the stream's status code as gRPC reported it (UNAVAILABLE for a lost
         * connection, RESOURCE_EXHAUSTED for a message over the server's limit, ...). */
        nh_code call_code = (code == NH_OK || code == NH_CANCELLED) ? NH_UNAVAILABLE : code;
        fail_router(n, call_code, NH_ERR_TRANSPORT, text);
        /* A stream that worked is reopened at once; a failed connect waits for the backoff. */
        schedule_retry(n, was_ready ? 0 : nh_backoff_next(&n->backoff));
    }
    nh_node_unref(n);
}

/* See nh_node_reconnect_now. */
#define REDIAL_AFTER_MS INT64_C(1000)

void nh_node_reconnect_now(nh_node *n) {
    if (n->kind != NH_NODE_OUTBOUND || n->closing || !n->channel) return;
    if (n->stream && n->stream_ready) return; /* connected */
    nh_backoff_reset(&n->backoff);
    nh_tp_channel_reset_backoff(n->channel); /* a connect waiting for gRPC's backoff goes now */
    if (n->stream) {
        /* An attempt is under way. By IP it connects without waiting; by name, one older than
         * REDIAL_AFTER_MS may be dialing where the peer used to be (an address that no longer
         * answers: a connect that hangs for the keepalive timeout, or gRPC's 20 s connect
         * timeout without keepalive): dial again, resolving the name afresh.
         * A younger one resolved the name a moment ago (a new channel) and is left alone. */
        if (n->by_name && !n->redialing &&
            nh_now_ns() - n->attempt_ns > REDIAL_AFTER_MS * 1000000) {
            n->redialing = true;
            nh_log(NH_LOG_INFO, "node", "node %u (%s): the peer is back; dialing it again", n->id,
                   n->address);
            nh_tp_stream_cancel(n->stream, NH_CANCELLED, "redialing");
        }
        return;
    }
    if (n->retry_open) uv_timer_stop(&n->retry_timer);
    nh_log(NH_LOG_INFO, "node", "node %u (%s): the peer is back; reconnecting now", n->id,
           n->address);
    open_stream(n);
}

/* ---- calls -------------------------------------------------------------------------------- */

typedef struct local_send {
    nh_node *node;
    nh_bytes *msg;
    nh_pending *confirm; /* leg waiting for its send confirmation, or NULL */
} local_send;

/* The self node: the request is handed to the in-process endpoint from the task queue, never
 * inside the call that sent it. */
static void run_local_send(void *arg) {
    local_send *t = arg;
    nh_node *n = t->node;
    if (t->confirm) t->confirm->ops->on_sent(t->confirm, n, !n->closing);
    nh_wire_msg *m = nh_wire_decode(t->msg->data, t->msg->len, NULL);
    if (m && n->local && !n->closing)
        nh_endpoint_message(n->local, m);
    else
        nh_wire_msg_free(m);
    nh_bytes_unref(t->msg);
    nh_node_unref(n);
    free(t);
}

/* Registers a leg that expects a reply in the router, and stamps its send time. */
static int leg_register(nh_node *n, nh_pending *p, unsigned flags, nh_error *why) {
    if (flags & NH_SEND_EXPECT_REPLY) {
        if (nh_router_add(&n->router, p->seq, p, p->streaming) != 0)
            return nh_error_set(why, NH_INTERNAL, NH_ERR_LOCAL, n->id,
                                "sequence number %llu already pending", (unsigned long long)p->seq);
        p->in_router = true;
        update_pending(n);
    }
    if (p) p->sent_ns = nh_now_ns();
    return 0;
}

static void leg_unregister(nh_node *n, nh_pending *p) {
    if (p && p->in_router) {
        nh_router_remove(&n->router, p->seq);
        p->in_router = false;
        update_pending(n);
    }
}

/* Hands a registered leg's request to the in-process endpoint through the task queue. */
static int send_local(nh_node *n, nh_bytes *msg, nh_pending *p, unsigned flags) {
    local_send *t = malloc(sizeof *t);
    if (!t) return -1;
    nh_node_ref(n);
    *t = (local_send){n, msg, (flags & NH_SEND_CONFIRM) ? p : NULL};
    if (nh_runtime_post_internal(n->rt, run_local_send, t) != 0) {
        nh_node_unref(n);
        free(t);
        return -1;
    }
    return 0;
}

int nh_node_send(nh_node *n, nh_bytes *msg, nh_pending *p, unsigned flags, nh_error *why) {
    if (n->closing) {
        nh_bytes_unref(msg);
        return nh_error_set(why, NH_UNAVAILABLE, NH_ERR_CLOSED, n->id, "node closed");
    }
    if (n->kind != NH_NODE_LOCAL && !n->stream) {
        nh_bytes_unref(msg);
        if (n->kind == NH_NODE_INBOUND) /* Gorums drops such a request silently */
            return nh_error_set(why, NH_UNAVAILABLE, NH_ERR_TRANSPORT, n->id,
                                "stream is down: the peer is not connected");
        nh_error e;
        nh_node_last_error(n, &e);
        /* The last error starts with the "node N (addr): " label; callers add their own. */
        char label[160];
        nh_node_label(n, label, sizeof label);
        size_t skip = strlen(label);
        const char *cause = e.message;
        if (!strncmp(cause, label, skip) && cause[skip] == ':') cause += skip + 2;
        return nh_error_set(why, NH_UNAVAILABLE, NH_ERR_TRANSPORT, n->id,
                            "not connected, reconnecting (last: %s)",
                            e.code != NH_OK ? cause : "no attempt finished yet");
    }
    if (leg_register(n, p, flags, why) != 0) {
        nh_bytes_unref(msg);
        return -1;
    }
    if (n->kind == NH_NODE_LOCAL) {
        if (send_local(n, msg, p, flags) == 0) return 0;
        nh_bytes_unref(msg);
        leg_unregister(n, p);
        return nh_error_set(why, NH_UNAVAILABLE, NH_ERR_CLOSED, n->id, "runtime stopped");
    }
    if (nh_tp_stream_send(n->stream, msg, (flags & NH_SEND_CONFIRM) ? p : NULL) != 0) {
        leg_unregister(n, p); /* the stream dropped the message */
        return nh_error_set(why, NH_UNAVAILABLE, NH_ERR_TRANSPORT, n->id, "stream closing");
    }
    return 0;
}

size_t nh_node_forget(nh_node *n, nh_pending *p) {
    leg_unregister(n, p);
    return n->stream ? nh_tp_stream_unqueue(n->stream, p) : 0; /* local sends cannot be */
}

static void on_sent(void *user, void *tag, bool ok) {
    nh_node *n = user;
    nh_pending *p = tag;
    p->ops->on_sent(p, n, ok);
}

void nh_node_deliver(nh_node *n, const nh_wire_msg *m) {
    nh_pending *p = nh_router_deliver(&n->router, m->seq);
    if (!p) return; /* late reply of a call that ended, or unknown: dropped */
    if (!p->streaming) {
        p->in_router = false;
        update_pending(n);
    }
    if ((!m->has_status || m->status_code == 0) && n->kind != NH_NODE_LOCAL) {
        int64_t rtt = nh_now_ns() - p->sent_ns;
        int64_t old = __atomic_load_n(&n->latency_ns, __ATOMIC_RELAXED);
        int64_t avg = old < 0 ? rtt : (int64_t)(0.8 * (double)old + 0.2 * (double)rtt);
        __atomic_store_n(&n->latency_ns, avg, __ATOMIC_RELAXED);
    }
    nh_node_ref(n);
    p->ops->on_reply(p, n, m);
    nh_node_unref(n);
}

static void on_message(void *user, const uint8_t *data, size_t len) {
    nh_node *n = user;
    nh_error derr;
    nh_wire_msg *m = nh_wire_decode(data, len, &derr);
    if (!m) {
        nh_log(NH_LOG_WARN, "node", "node %u (%s): dropping an undecodable message (%s)", n->id,
               n->address, derr.message);
        return;
    }
    if (m->seq & NH_SEQ_SERVER_BIT) {
        /* A server-initiated request over the stream we dialed: the back-channel serves it
         * with this runtime's handlers (or answers UNIMPLEMENTED if it has none). */
        if (!n->backchannel && n->stream)
            n->backchannel = nh_endpoint_new(n->rt, NULL, true, n->stream, NULL, NH_PEER_SERVER,
                                             n->id, n->md, n->md_count, n->address);
        if (n->backchannel)
            nh_endpoint_message(n->backchannel, m);
        else
            nh_wire_msg_free(m);
        return;
    }
    nh_node_deliver(n, m);
    nh_wire_msg_free(m);
}

/* ---- tracked peers (inbound) and the self node --------------------------------------------- */

static nh_node *node_alloc(nh_runtime *rt, uint32_t id, const char *address, nh_node_kind kind) {
    nh_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->rt = rt;
    n->id = id;
    n->kind = kind;
    n->address = strdup(address ? address : "");
    n->latency_ns = -1;
    n->refs = 1;
    n->user_ref = true; /* the owner's handle (the inbound manager) */
    pthread_mutex_init(&n->err_mu, NULL);
    nh_router_init(&n->router);
    nh_backoff_init(&n->backoff, 0, 0, id);
    nh_runtime_add_node(rt, n);
    n->listed = true;
    return n;
}

nh_node *nh_node_new_inbound(nh_runtime *rt, uint32_t id, const char *address) {
    return node_alloc(rt, id, address, NH_NODE_INBOUND);
}

nh_node *nh_node_new_local(nh_runtime *rt, uint32_t id, const char *address,
                           struct nh_server *srv) {
    nh_node *n = node_alloc(rt, id, address, NH_NODE_LOCAL);
    if (!n) return NULL;
    char idbuf[16];
    snprintf(idbuf, sizeof idbuf, "%u", id);
    nh_metadata md[] = {{NH_NODE_ID_KEY, idbuf}};
    n->local = nh_endpoint_new(rt, srv, false, NULL, n, NH_PEER_SELF, id, md, 1, "self");
    if (!n->local) {
        nh_node_unref(n);
        return NULL;
    }
    __atomic_store_n(&n->connected, 1, __ATOMIC_RELAXED);
    return n;
}

void nh_node_set_identity(nh_node *n, const char *identity) {
    if (!identity || __atomic_load_n(&n->identity, __ATOMIC_ACQUIRE)) return;
    char *copy = strdup(identity);
    char *expected = NULL;
    if (copy && !__atomic_compare_exchange_n(&n->identity, &expected, copy, false, __ATOMIC_ACQ_REL,
                                             __ATOMIC_ACQUIRE))
        free(copy);
}

uint64_t nh_node_breaks(const nh_node *n) {
    return n ? __atomic_load_n(&n->breaks, __ATOMIC_RELAXED) : 0;
}

const char *nh_node_identity(const nh_node *n) {
    return n ? __atomic_load_n(&n->identity, __ATOMIC_ACQUIRE) : NULL;
}

void nh_node_attach(nh_node *n, nh_tp_stream *tp) {
    if (n->stream && n->stream != tp) {
        /* Reconnect always replaces (spec 4.5); calls pending on the old stream fail. */
        fail_router(n, NH_UNAVAILABLE, NH_ERR_TRANSPORT,
                    "the peer reconnected; its old stream was replaced");
    }
    n->stream = tp;
    n->stream_ready = true;
    __atomic_store_n(&n->connected, 1, __ATOMIC_RELAXED);
}

bool nh_node_detach(nh_node *n, nh_tp_stream *tp) {
    if (n->stream != tp || !tp) return false; /* a replaced stream's late end: no effect */
    n->stream = NULL;
    n->stream_ready = false;
    __atomic_store_n(&n->connected, 0, __ATOMIC_RELAXED);
    set_last_error(n, NH_UNAVAILABLE, "peer disconnected");
    fail_router(n, NH_UNAVAILABLE, NH_ERR_TRANSPORT, "peer disconnected");
    return true;
}

/* ---- open and close ----------------------------------------------------------------------- */

typedef struct open_args {
    nh_runtime *rt;
    const nh_node_opts *opts;
    nh_node *node;
    nh_error *err;
    int rc;
} open_args;

static void on_retry_timer_closed(uv_handle_t *h) {
    nh_node_unref(h->data);
}

static void open_on_owner(void *p) {
    open_args *a = p;
    nh_node *n = a->node;
    if (a->rt->stopping) {
        a->rc = nh_error_set(a->err, NH_UNAVAILABLE, NH_ERR_CLOSED, n->id, "runtime stopped");
        return;
    }
    n->keepalive_time_ms = a->opts->keepalive_time_ms;
    n->keepalive_timeout_ms = a->opts->keepalive_timeout_ms;
    n->channel_gen = nh_tls_generation(n->tls);
    n->channel =
        nh_tp_channel_new(a->rt->loop, n->address, n->backoff.base_ms, n->backoff.max_ms,
                          n->keepalive_time_ms, n->keepalive_timeout_ms, n->tls, n->expect, a->err);
    if (!n->channel) {
        a->rc = -1;
        return;
    }
    uv_timer_init(nh_tp_loop_uv(a->rt->loop), &n->retry_timer);
    n->retry_timer.data = n;
    n->retry_open = true;
    nh_node_ref(n); /* the timer handle's reference */
    nh_runtime_add_node(a->rt, n);
    n->listed = true;
    open_stream(n);
    a->rc = 0;
}

/* True when the host of "host:port" is a name rather than an IP literal ("[v6]:port" or an
 * IPv4 address). */
static bool host_is_name(const char *a) {
    const char *colon = strrchr(a, ':');
    if (a[0] == '[' || !colon) return false;
    char host[INET_ADDRSTRLEN];
    size_t len = (size_t)(colon - a);
    if (len >= sizeof host) return true;
    memcpy(host, a, len);
    host[len] = '\0';
    struct in_addr v4;
    return inet_pton(AF_INET, host, &v4) != 1;
}

static bool valid_address(const char *a) {
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a || !colon[1]) return false;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9') return false;
    long port = strtol(colon + 1, NULL, 10);
    return port > 0 && port <= 65535;
}

int nh_node_open(nh_runtime *rt, const nh_node_opts *opts, nh_node **out, nh_error *err) {
    if (!rt || !opts || !out)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "NULL argument");
    *out = NULL;
    if (opts->id == 0)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "node 0 is reserved");
    if (!opts->address || !valid_address(opts->address))
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, opts->id,
                            "node %u: invalid address \"%s\": expected host:port with a port "
                            "from 1 to 65535",
                            opts->id, opts->address ? opts->address : "");
    for (size_t i = 0; i < opts->metadata_count; i++) {
        if (!opts->metadata[i].key || !nh_md_key_valid(opts->metadata[i].key) ||
            !opts->metadata[i].value)
            return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, opts->id,
                                "node %u: invalid metadata key \"%s\": keys are lower-case "
                                "letters, digits, '-', '_' and '.'",
                                opts->id, opts->metadata[i].key ? opts->metadata[i].key : "");
    }
    nh_node *n = calloc(1, sizeof *n);
    if (!n)
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, opts->id, "out of memory");
    n->rt = rt;
    n->id = opts->id;
    n->address = strdup(opts->address);
    n->by_name = host_is_name(opts->address);
    if (opts->tls) {
        n->tls = nh_tls_ref(opts->tls);
        char uri[40];
        const char *want = opts->server_identity ? opts->server_identity
                                                 : nh_tls_node_uri(opts->id, uri, sizeof uri);
        if (strcmp(want, "*") != 0) n->expect = strdup(want);
    }
    n->latency_ns = -1;
    n->refs = 1;
    n->user_ref = true;
    pthread_mutex_init(&n->err_mu, NULL);
    nh_router_init(&n->router);
    nh_backoff_init(&n->backoff, opts->backoff_base_ms, opts->backoff_max_ms,
                    (uint64_t)(uintptr_t)n ^ opts->id);
    if (opts->metadata_count) {
        n->md = calloc(opts->metadata_count, sizeof *n->md);
        for (size_t i = 0; n->md && i < opts->metadata_count; i++) {
            n->md[i].key = strdup(opts->metadata[i].key);
            n->md[i].value = strdup(opts->metadata[i].value);
        }
        n->md_count = n->md ? opts->metadata_count : 0;
    }
    open_args a = {.rt = rt, .opts = opts, .node = n, .err = err, .rc = -1};
    if (nh_runtime_sync(rt, open_on_owner, &a) != 0)
        a.rc = nh_error_set(err, NH_UNAVAILABLE, NH_ERR_CLOSED, n->id, "runtime stopped");
    if (a.rc != 0) {
        node_free(n);
        return -1;
    }
    *out = n;
    return 0;
}

void nh_node_close_internal(nh_node *n, bool drop_user) {
    if (!n->closing) {
        n->closing = true;
        if (n->retry_open) {
            n->retry_open = false;
            uv_timer_stop(&n->retry_timer);
            uv_close((uv_handle_t *)&n->retry_timer, on_retry_timer_closed);
        }
        fail_router(n, NH_UNAVAILABLE, NH_ERR_CLOSED, "node closed");
        if (n->kind == NH_NODE_OUTBOUND && n->stream)
            nh_tp_stream_cancel(n->stream, NH_CANCELLED, "node closed");
        if (n->kind != NH_NODE_OUTBOUND) {
            n->stream = NULL; /* an accepted stream belongs to the server, which ends it */
            __atomic_store_n(&n->connected, 0, __ATOMIC_RELAXED);
        }
        if (n->local) {
            nh_endpoint_close(n->local);
            n->local = NULL;
        }
    }
    if (drop_user && n->user_ref) {
        n->user_ref = false;
        nh_node_unref(n);
    }
}

static void close_task(void *p) {
    nh_node_close_internal(p, true);
}

void nh_node_close(nh_node *n) {
    if (!n) return;
    if (nh_runtime_on_owner(n->rt)) {
        nh_node_close_internal(n, true);
        return;
    }
    /* If the runtime is stopping it has closed the node already and frees it at the end. */
    if (nh_runtime_post_internal(n->rt, close_task, n) != 0)
        nh_log(NH_LOG_DEBUG, "node", "node %u: runtime stopping; it frees the node", n->id);
}

void nh_node_free_remaining(nh_runtime *rt) {
    while (rt->nodes) {
        nh_node *n = rt->nodes;
        nh_runtime_remove_node(rt, n);
        n->listed = false;
        node_free(n);
    }
}

bool nh_node_closing(const nh_node *n) {
    return n->closing;
}

uint32_t nh_node_id(const nh_node *n) {
    return n ? n->id : 0;
}

const char *nh_node_address(const nh_node *n) {
    return n ? n->address : "";
}

int64_t nh_node_latency_ns(const nh_node *n) {
    return __atomic_load_n(&n->latency_ns, __ATOMIC_RELAXED);
}

bool nh_node_last_error(const nh_node *n, nh_error *out) {
    nh_node *m = (nh_node *)n;
    pthread_mutex_lock(&m->err_mu);
    bool has = m->has_err;
    if (out) {
        if (has)
            *out = m->last_err;
        else
            nh_error_clear(out);
    }
    pthread_mutex_unlock(&m->err_mu);
    return has;
}

bool nh_node_connected(const nh_node *n) {
    return __atomic_load_n(&n->connected, __ATOMIC_RELAXED) != 0;
}

size_t nh_node_pending(const nh_node *n) {
    return __atomic_load_n(&n->pending, __ATOMIC_RELAXED);
}
