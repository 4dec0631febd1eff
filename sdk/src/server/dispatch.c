/* Dispatch endpoints and the server context.
 *
 * An endpoint orders the requests of one stream and hands them to handlers (spec 3.5): a
 * request runs only when the previous one no longer holds the stream's order (it returned
 * without deferring, ended, or released). The receive stays armed meanwhile; requests that
 * arrive wait in the endpoint's inbox, which is bounded (max_inbox): past it the stream stops
 * reading and HTTP/2 flow control pushes back. The replies are bounded too: past the server's
 * max_queued_reply_bytes unsent on an accepted stream (a peer that does not read its replies),
 * the endpoint dispatches nothing more and stops reading until the transport drained below half
 * of it; a stream that stays over the bound for slow_reader_timeout_ms is ended by the
 * transport with RESOURCE_EXHAUSTED. Replies to calls this node made over the same
 * stream (bit 63 set on a tracked peer's stream) never wait in the inbox: they go straight to
 * the peer node's router, so a handler that calls back its own caller cannot deadlock.
 *
 * Endpoints serve accepted streams, the back-channel of dialed streams, and the self node. */
#include "server/server_impl.h"

#include "core/scope.h"
#include "node/node_impl.h"
#include "metrics/metrics_impl.h"
#include "security/tls_impl.h"
#include "util/clock.h"
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pump(nh_server_stream *st);

/* ---- endpoints ---------------------------------------------------------------------------- */

static char *dup_n(const char *p, size_t n) {
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static void stream_unref(nh_server_stream *st) {
    if (--st->refs > 0) return;
    for (size_t i = 0; i < st->md_count; i++) {
        free((char *)st->md[i].key);
        free((char *)st->md[i].value);
    }
    free(st->md);
    free(st->peer_addr);
    free(st->self_identity);
    nh_identity_unref(st->caller);
    free(st->inbox);
    if (st->peer) nh_node_unref(st->peer);
    free(st);
}

nh_server_stream *nh_endpoint_new(nh_runtime *rt, nh_server *srv, bool backchannel,
                                  nh_tp_stream *tp, struct nh_node *local_node, nh_peer_kind kind,
                                  uint32_t peer_id, const nh_metadata *md, size_t n,
                                  const char *peer_addr) {
    nh_server_stream *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->rt = rt;
    st->srv = srv;
    st->backchannel = backchannel;
    st->tp = tp;
    st->local_node = local_node;
    st->peer_kind = kind;
    st->peer_id = peer_id;
    st->refs = 1;
    st->max_inbox = srv && srv->max_inbox ? srv->max_inbox : 1024;
    st->peer_addr = strdup(peer_addr ? peer_addr : "");
    st->caller = nh_identity_ref((nh_identity *)(tp ? nh_tp_stream_identity(tp) : NULL));
    if (kind == NH_PEER_SELF && srv && srv->tls) {
        char own[512];
        nh_tls_own_identity(srv->tls, own, sizeof own);
        st->self_identity = strdup(own);
    }
    st->md = n ? calloc(n, sizeof *st->md) : NULL;
    for (size_t i = 0; st->md && i < n; i++) {
        st->md[i].key = strdup(md[i].key);
        st->md[i].value = strdup(md[i].value);
        st->md_count++;
    }
    return st;
}

void nh_endpoint_close(nh_server_stream *st) {
    st->tp = NULL;
    st->local_node = NULL;
    while (st->inbox_len) {
        nh_wire_msg_free(st->inbox[st->inbox_head]);
        st->inbox_head = (st->inbox_head + 1) % st->inbox_cap;
        st->inbox_len--;
    }
    stream_unref(st);
}

static const nh_method *find_method(const nh_server_stream *st, const char *name) {
    if (st->backchannel) {
        /* A client program's own back-channel handlers, else the handlers of this runtime's
         * server (a node serves its peers' calls the same way whichever stream they use). */
        const nh_method *m = nh_methods_find(&st->rt->bc_methods, name);
        if (!m && st->rt->servers) m = nh_methods_find(&st->rt->servers->methods, name);
        return m;
    }
    return st->srv ? nh_methods_find(&st->srv->methods, name) : NULL;
}

/* ---- sending responses -------------------------------------------------------------------- */

typedef struct local_delivery {
    struct nh_node *node;
    nh_bytes *msg;
} local_delivery;

static void run_local_delivery(void *p) {
    local_delivery *d = p;
    nh_wire_msg *m = nh_wire_decode(d->msg->data, d->msg->len, NULL);
    if (m) {
        nh_node_deliver(d->node, m);
        nh_wire_msg_free(m);
    }
    nh_bytes_unref(d->msg);
    nh_node_unref(d->node);
    free(d);
}

/* Sends an encoded reply where this endpoint's replies go (takes the reference). */
static void endpoint_send(nh_server_stream *st, nh_bytes *b) {
    if (st->tp) {
        nh_tp_stream_send(st->tp, b, NULL);
    } else if (st->local_node) {
        /* The self node: delivered to its router from the task queue, never inside the
         * handler that replied (no re-entrancy). */
        local_delivery *d = malloc(sizeof *d);
        if (d) {
            nh_node_ref(st->local_node);
            *d = (local_delivery){st->local_node, b};
            if (nh_runtime_post_internal(st->rt, run_local_delivery, d) == 0) return;
            nh_node_unref(d->node);
            free(d);
        }
        nh_bytes_unref(b);
    } else {
        nh_bytes_unref(b); /* the stream is gone: the reply is dropped */
    }
}

static void send_status(nh_server_stream *st, uint64_t seq, const char *method, nh_code code,
                        const char *text) {
    nh_wire_out out = {.seq = seq,
                       .method = method,
                       .has_status = true,
                       .status_code = (int32_t)code,
                       .status_message = text};
    nh_bytes *b = nh_wire_encode(&out);
    if (b) endpoint_send(st, b);
}

static void send_payload(nh_server_stream *st, uint64_t seq, const char *method,
                         const void *payload, size_t len) {
    if (!st->tp && !st->local_node) return; /* the stream is gone: the reply is dropped */
    nh_wire_out out = {.seq = seq, .method = method, .payload = payload, .payload_len = len};
    nh_bytes *b = nh_wire_encode(&out);
    if (!b) {
        send_status(st, seq, method, NH_RESOURCE_EXHAUSTED, "out of memory encoding the response");
        return;
    }
    size_t max = st->rt->max_message;
    if (b->len > max) {
        char text[160];
        snprintf(text, sizeof text,
                 "response of %zu bytes exceeds the maximum message size of %zu bytes", b->len,
                 max);
        nh_bytes_unref(b);
        nh_log(NH_LOG_WARN, "server", "%s: %s", method, text);
        send_status(st, seq, method, NH_RESOURCE_EXHAUSTED, text);
        return;
    }
    endpoint_send(st, b);
}

/* ---- contexts ----------------------------------------------------------------------------- */

static void ctx_free(nh_server_ctx *ctx) {
    nh_server_stream *st = ctx->st;
    nh_runtime *rt = st->rt;
    if (ctx->prev)
        ctx->prev->next = ctx->next;
    else
        rt->open_ctx = ctx->next;
    if (ctx->next) ctx->next->prev = ctx->prev;
    if (ctx->on_end) ctx->on_end(ctx, ctx->on_end_arg);
    nh_wire_msg_free(ctx->msg);
    free(ctx);
    stream_unref(st);
}

void nh_server_free_remaining(nh_runtime *rt) {
    while (rt->open_ctx)
        ctx_free(rt->open_ctx);
}

static void ctx_release(nh_server_ctx *ctx) {
    ctx->released = true;
    if (ctx->st->holder == ctx) ctx->st->holder = NULL;
}

/* Ends a context: releases the order, frees it unless its handler is still running, and lets
 * the stream go on. */
static const char *kind_name(nh_peer_kind k) {
    static const char *const names[] = {"regular", "known", "client", "self", "server"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

/* One access-log line for a sampled call. */
static void access_line(const nh_server_ctx *ctx, int64_t took_ns) {
    const nh_server_stream *st = ctx->st;
    const char *who = nh_ctx_caller_identity(ctx);
    nh_log_access(ctx->msg->method, who ? who : st->peer_addr, kind_name(st->peer_kind),
                  st->peer_id, nh_code_name(ctx->end_code), (double)took_ns / 1e6);
}

static void ctx_end(nh_server_ctx *ctx) {
    nh_server_stream *st = ctx->st;
    ctx->ended = true;
    if (ctx->stats || ctx->access) {
        int64_t took = nh_now_ns() - ctx->start_ns;
        if (ctx->stats) nh_metrics_request_end(ctx->stats, (int)ctx->end_code, took);
        if (ctx->access) access_line(ctx, took);
    }
    ctx_release(ctx);
    st->open_ctx--;
    st->refs++; /* keep st alive across ctx_free and pump */
    if (!ctx->in_handler) ctx_free(ctx);
    pump(st);
    stream_unref(st);
}

static void dispatch(nh_server_stream *st, nh_wire_msg *m) {
    const nh_method *meth = find_method(st, m->method);
    if (!meth) {
        char text[NH_ERROR_MESSAGE_MAX];
        snprintf(text, sizeof text, "no handler registered for method %s", m->method);
        nh_metrics_request_refused(nh_metrics_unknown_method(), NH_UNIMPLEMENTED);
        send_status(st, m->seq, m->method, NH_UNIMPLEMENTED, text);
        nh_wire_msg_free(m);
        return;
    }
    nh_server_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        send_status(st, m->seq, m->method, NH_RESOURCE_EXHAUSTED, "out of memory");
        nh_wire_msg_free(m);
        return;
    }
    ctx->st = st;
    ctx->msg = m;
    ctx->next = st->rt->open_ctx;
    if (ctx->next) ctx->next->prev = ctx;
    st->rt->open_ctx = ctx;
    st->refs++;
    st->open_ctx++;
    st->holder = ctx;
    if (nh_metrics_counting() && meth->stats) {
        ctx->stats = meth->stats;
        nh_metrics_request_start();
    }
    ctx->access = nh_log_access_pick();
    if (ctx->stats || ctx->access) ctx->start_ns = nh_now_ns();
    ctx->in_handler = true;
    const char *outer = nh_log_set_method(m->method);
    meth->fn(ctx, meth->user);
    nh_log_set_method(outer);
    ctx->in_handler = false;
    if (ctx->ended)
        ctx_free(ctx);
    else if (!ctx->deferred)
        ctx_end(ctx); /* returned without a reply: nothing is sent */
}

static void maybe_finish(nh_server_stream *st) {
    /* The client half-closed and everything it sent was answered: end with OK, as a Gorums
     * server does when Recv returns EOF. */
    if (st->tp && st->recv_ended && st->inbox_len == 0 && st->open_ctx == 0 && !st->backchannel)
        nh_tp_stream_finish(st->tp, NH_OK, "");
}

static bool live(const nh_server_stream *st) {
    return st->tp || st->local_node;
}

static void pump(nh_server_stream *st) {
    if (st->pumping) return;
    st->pumping = true;
    st->refs++;
    while (live(st) && !st->holder && !st->reply_blocked && st->inbox_len) {
        nh_wire_msg *m = st->inbox[st->inbox_head];
        st->inbox_head = (st->inbox_head + 1) % st->inbox_cap;
        st->inbox_len--;
        dispatch(st, m);
    }
    st->pumping = false;
    if (st->tp && st->paused && !st->reply_blocked && st->inbox_len < st->max_inbox / 2) {
        st->paused = false;
        nh_tp_stream_pause_recv(st->tp, false);
    }
    maybe_finish(st);
    stream_unref(st);
}

static int inbox_push(nh_server_stream *st, nh_wire_msg *m) {
    if (st->inbox_len == st->inbox_cap) {
        size_t cap = st->inbox_cap ? st->inbox_cap * 2 : 8;
        nh_wire_msg **q = malloc(cap * sizeof *q);
        if (!q) return -1;
        for (size_t i = 0; i < st->inbox_len; i++)
            q[i] = st->inbox[(st->inbox_head + i) % st->inbox_cap];
        free(st->inbox);
        st->inbox = q;
        st->inbox_cap = cap;
        st->inbox_head = 0;
    }
    st->inbox[(st->inbox_head + st->inbox_len) % st->inbox_cap] = m;
    st->inbox_len++;
    return 0;
}

void nh_endpoint_message(nh_server_stream *st, nh_wire_msg *m) {
    if (!live(st)) {
        nh_wire_msg_free(m);
        return;
    }
    if (inbox_push(st, m) != 0) {
        send_status(st, m->seq, m->method, NH_RESOURCE_EXHAUSTED, "out of memory");
        nh_wire_msg_free(m);
        return;
    }
    if (st->tp && st->inbox_len >= st->max_inbox && !st->paused) {
        st->paused = true;
        nh_tp_stream_pause_recv(st->tp, true);
    }
    pump(st);
}

/* ---- accepted streams --------------------------------------------------------------------- */

static void on_message(void *user, const uint8_t *data, size_t len) {
    nh_server_stream *st = user;
    nh_error err;
    nh_wire_msg *m = nh_wire_decode(data, len, &err);
    if (!m) {
        nh_log(NH_LOG_WARN, "server", "stream from %s: %s; answered with an error, stream kept",
               st->peer_addr, err.message);
        char text[NH_ERROR_MESSAGE_MAX + 64];
        snprintf(text, sizeof text, "could not decode the message envelope: %s", err.message);
        send_status(st, 0, "", NH_INVALID_ARGUMENT, text);
        return;
    }
    /* Spec 1.5: on a tracked peer's stream, bit 63 marks the reply to a call this node made;
     * an untracked client's messages are all requests. */
    if (st->peer && (m->seq & NH_SEQ_SERVER_BIT)) {
        nh_node_deliver(st->peer, m);
        nh_wire_msg_free(m);
        return;
    }
    nh_endpoint_message(st, m);
}

static void on_recv_end(void *user) {
    nh_server_stream *st = user;
    st->recv_ended = true;
    maybe_finish(st);
}

static void on_sent(void *user, void *tag, bool ok) {
    nh_server_stream *st = user;
    nh_pending *p = tag; /* a confirmed send of a call to the tracked peer */
    if (st->peer) p->ops->on_sent(p, st->peer, ok);
}

/* The stream's unsent replies went over the bound (stop reading and dispatching) or drained
 * below half of it (go on: pump resumes reading once the inbox allows it too). */
static void on_backlog(void *user, bool over) {
    nh_server_stream *st = user;
    st->reply_blocked = over;
    if (over) {
        nh_log(NH_LOG_DEBUG, "server", "stream from %s: replies not read; reading paused",
               st->peer_addr);
        if (st->tp && !st->paused) {
            st->paused = true;
            nh_tp_stream_pause_recv(st->tp, true);
        }
    } else {
        nh_log(NH_LOG_DEBUG, "server", "stream from %s: replies drained; reading resumed",
               st->peer_addr);
        pump(st);
    }
}

static void on_closed(void *user, nh_code code, const char *details) {
    nh_server_stream *st = user;
    nh_log(NH_LOG_DEBUG, "server", "stream from %s closed (%s %s)", st->peer_addr,
           nh_code_name(code), details);
    nh_tp_stream *tp = st->tp;
    if (st->srv) {
        if (st->prev)
            st->prev->next = st->next;
        else if (st->srv->streams == st)
            st->srv->streams = st->next;
        if (st->next) st->next->prev = st->prev;
        if (st->peer && st->srv->inbound)
            nh_inbound_closed(st->srv->inbound, st->peer, st->peer_kind, tp);
    } else if (st->peer) {
        nh_node_detach(st->peer, tp);
    }
    st->next = st->prev = NULL;
    nh_endpoint_close(st);
}

static const nh_tp_stream_events server_stream_events = {
    .on_message = on_message,
    .on_recv_end = on_recv_end,
    .on_sent = on_sent,
    .on_ready = NULL,
    .on_backlog = on_backlog,
    .on_closed = on_closed,
};

void nh_server_accept(void *user, nh_tp_stream *s, const nh_md_view *md, size_t n) {
    nh_server *srv = user;
    if (srv->stopped) {
        nh_tp_stream_cancel(s, NH_UNAVAILABLE, "server stopping");
        return;
    }
    struct nh_node *peer = NULL;
    nh_peer_kind kind = NH_PEER_REGULAR;
    uint32_t id = 0;
    if (srv->inbound) {
        nh_code code;
        char why[512];
        if (nh_inbound_accept(srv->inbound, s, md, n, &peer, &kind, &id, &code, why, sizeof why) !=
            0) {
            nh_log(NH_LOG_WARN, "server", "refusing a stream from %s: %s", nh_tp_stream_peer(s),
                   why);
            nh_tp_stream_cancel(s, code, why);
            return;
        }
    }
    nh_metadata stack[16];
    nh_metadata *copy = n <= 16 ? stack : calloc(n, sizeof *copy);
    size_t k = copy ? n : 0;
    for (size_t i = 0; i < k; i++) {
        copy[i].key = dup_n(md[i].key, md[i].key_len);
        copy[i].value = dup_n(md[i].value, md[i].value_len);
    }
    nh_server_stream *st =
        nh_endpoint_new(srv->rt, srv, false, s, NULL, kind, id, copy, k, nh_tp_stream_peer(s));
    for (size_t i = 0; i < k; i++) {
        free((char *)copy[i].key);
        free((char *)copy[i].value);
    }
    if (copy != stack) free(copy);
    if (!st) {
        if (peer) {
            nh_inbound_closed(srv->inbound, peer, kind, s);
            nh_node_unref(peer);
        }
        nh_tp_stream_cancel(s, NH_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    st->peer = peer; /* the reference from nh_inbound_accept */
    st->next = srv->streams;
    if (srv->streams) srv->streams->prev = st;
    srv->streams = st;
    nh_tp_stream_set_events(s, &server_stream_events, st);
    nh_tp_stream_set_send_limit(s, srv->max_queued_reply_bytes, srv->slow_reader_timeout_ms);
    nh_log(NH_LOG_DEBUG, "server", "stream from %s accepted (peer kind %d, id %u)", st->peer_addr,
           (int)kind, id);
}

/* ---- the public context API --------------------------------------------------------------- */

const char *nh_ctx_method(const nh_server_ctx *ctx) {
    return ctx->msg->method;
}

uint64_t nh_ctx_seq(const nh_server_ctx *ctx) {
    return ctx->msg->seq;
}

const uint8_t *nh_ctx_payload(const nh_server_ctx *ctx, size_t *len) {
    if (len) *len = ctx->msg->payload_len;
    return ctx->msg->payload;
}

size_t nh_ctx_metadata_count(const nh_server_ctx *ctx) {
    return ctx->st->md_count + ctx->msg->entry_count;
}

nh_metadata nh_ctx_metadata_at(const nh_server_ctx *ctx, size_t i) {
    if (i < ctx->st->md_count) return ctx->st->md[i];
    i -= ctx->st->md_count;
    if (i < ctx->msg->entry_count) return ctx->msg->entries[i];
    return (nh_metadata){NULL, NULL};
}

const char *nh_ctx_metadata(const nh_server_ctx *ctx, const char *key) {
    size_t n = nh_ctx_metadata_count(ctx);
    for (size_t i = 0; i < n; i++) {
        nh_metadata m = nh_ctx_metadata_at(ctx, i);
        if (m.key && !strcmp(m.key, key)) return m.value;
    }
    return NULL;
}

const char *nh_ctx_peer(const nh_server_ctx *ctx) {
    return ctx->st->peer_addr;
}

nh_peer_kind nh_ctx_peer_kind(const nh_server_ctx *ctx) {
    return ctx->st->peer_kind;
}

uint32_t nh_ctx_peer_id(const nh_server_ctx *ctx) {
    return ctx->st->peer_id;
}

nh_runtime *nh_ctx_runtime(const nh_server_ctx *ctx) {
    return ctx->st->rt;
}

static nh_server *serving_server(const nh_server_ctx *ctx) {
    if (ctx->st->srv) return ctx->st->srv;
    return ctx->st->rt->servers; /* a back-channel request of a node: its server */
}

nh_config *nh_ctx_config(const nh_server_ctx *ctx) {
    return nh_server_config(serving_server(ctx));
}

nh_config *nh_ctx_client_config(const nh_server_ctx *ctx) {
    return nh_server_client_config(serving_server(ctx));
}

nh_config *nh_ctx_members(const nh_server_ctx *ctx) {
    return nh_server_members(serving_server(ctx));
}

typedef struct reply_task {
    nh_server_ctx *ctx;
    bool is_error;
    bool finish_only;
    bool keep_open; /* nh_ctx_send: a reply that does not end the call */
    nh_code code;
    char *text;
    size_t len;
    uint8_t payload[];
} reply_task;

static void do_reply(nh_server_ctx *ctx, const reply_task *t) {
    if (ctx->ended) return;
    nh_server_stream *st = ctx->st;
    if (t->keep_open) {
        send_payload(st, ctx->msg->seq, ctx->msg->method, t->payload, t->len);
        return;
    }
    if (t->finish_only) {
        /* nothing to send */
    } else if (t->is_error) {
        ctx->end_code = t->code;
        send_status(st, ctx->msg->seq, ctx->msg->method, t->code, t->text ? t->text : "");
    } else {
        send_payload(st, ctx->msg->seq, ctx->msg->method, t->payload, t->len);
    }
    ctx_end(ctx);
}

static void run_reply_task(void *p) {
    reply_task *t = p;
    do_reply(t->ctx, t);
    free(t->text);
    free(t);
}

/* Replies on the owner thread directly; from another thread, copies and posts. */
static int reply(nh_server_ctx *ctx, const reply_task *proto, const void *payload, size_t len) {
    nh_runtime *rt = ctx->st->rt;
    if (nh_runtime_on_owner(rt)) {
        if (ctx->ended) return -1;
        if (proto->keep_open) {
            send_payload(ctx->st, ctx->msg->seq, ctx->msg->method, payload, len);
        } else if (!proto->is_error && !proto->finish_only) {
            send_payload(ctx->st, ctx->msg->seq, ctx->msg->method, payload, len);
            reply_task t = {.ctx = ctx, .finish_only = true};
            do_reply(ctx, &t);
        } else {
            do_reply(ctx, proto);
        }
        return 0;
    }
    reply_task *t = malloc(sizeof *t + len);
    if (!t) return -1;
    *t = *proto;
    t->ctx = ctx;
    t->len = len;
    if (len) memcpy(t->payload, payload, len);
    t->text = proto->text ? strdup(proto->text) : NULL;
    if (nh_runtime_post_internal(rt, run_reply_task, t) != 0) {
        free(t->text);
        free(t);
        return -1;
    }
    return 0;
}

int nh_ctx_reply(nh_server_ctx *ctx, const void *payload, size_t len) {
    if (!ctx || (!payload && len)) return -1;
    reply_task proto = {0};
    return reply(ctx, &proto, payload, len);
}

int nh_ctx_reply_error(nh_server_ctx *ctx, nh_code code, const char *fmt, ...) {
    if (!ctx) return -1;
    char text[NH_ERROR_MESSAGE_MAX] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
    }
    reply_task proto = {.is_error = true, .code = code, .text = text};
    return reply(ctx, &proto, NULL, 0);
}

int nh_ctx_send(nh_server_ctx *ctx, const void *payload, size_t len) {
    if (!ctx || (!payload && len)) return -1;
    reply_task proto = {.keep_open = true};
    return reply(ctx, &proto, payload, len);
}

void nh_ctx_finish(nh_server_ctx *ctx) {
    if (!ctx) return;
    reply_task proto = {.finish_only = true};
    reply(ctx, &proto, NULL, 0);
}

void nh_ctx_release(nh_server_ctx *ctx) {
    if (!ctx || ctx->ended || ctx->released) return;
    nh_server_stream *st = ctx->st;
    ctx_release(ctx);
    if (!ctx->in_handler) pump(st);
}

void nh_ctx_defer(nh_server_ctx *ctx) {
    if (ctx && ctx->in_handler) ctx->deferred = true;
}

bool nh_ctx_answered(const nh_server_ctx *ctx) {
    return ctx && (ctx->ended || ctx->deferred);
}

void nh_ctx_on_end(nh_server_ctx *ctx, nh_ctx_end_fn fn, void *arg) {
    if (!ctx) return;
    ctx->on_end = fn;
    ctx->on_end_arg = arg;
}

typedef struct offload_task {
    nh_server_ctx *ctx;
    nh_blocking_fn fn;
    void *arg;
} offload_task;

static void run_offload(void *p) {
    offload_task t = *(offload_task *)p;
    free(p);
    t.fn(t.ctx, t.arg);
}

int nh_ctx_offload(nh_server_ctx *ctx, bool release, nh_blocking_fn fn, void *arg) {
    if (!ctx || !fn || !ctx->in_handler || ctx->ended) return -1;
    offload_task *t = malloc(sizeof *t);
    if (!t) return -1;
    *t = (offload_task){.ctx = ctx, .fn = fn, .arg = arg};
    /* Deferred before queueing: a worker's reply is posted to this (owner) thread and so runs
     * after the handler returns. */
    bool was_deferred = ctx->deferred;
    ctx->deferred = true;
    /* fn runs with the caller's scope (the host's, in a plugin's handler) held and current. */
    if (nh_workers_submit(&ctx->st->rt->workers, run_offload, t, nh_scope_capture()) != 0) {
        ctx->deferred = was_deferred;
        free(t);
        return -1;
    }
    if (release) nh_ctx_release(ctx);
    return 0;
}
