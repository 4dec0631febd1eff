/* The common machinery of a NodeStream call: the armed receive, the send FIFO with one send in
 * flight, and the end of the stream. Completion handlers follow one pattern: do the work, then
 * nh_tp_stream_op_done(), which frees the stream once it is closed and no batch is left. */
#include "transport/stream_impl.h"
#include "metrics/metrics_impl.h"
#include "transport/relay.h"
#include "transport/tls_creds.h"

#include "util/log.h"
#include "util/tsan.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_recv(nh_tp_tag *tag, bool ok);
static void on_send(nh_tp_tag *tag, bool ok);
static void on_status_sent(nh_tp_tag *tag, bool ok);

nh_tp_stream *nh_tp_stream_new(nh_tp_loop *loop, grpc_call *call, bool client) {
    nh_tp_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->loop = loop;
    s->call = call;
    s->client = client;
    s->recv_tag.fn = on_recv;
    s->send_tag.fn = on_send;
    s->status_tag.fn = on_status_sent;
    char *p = grpc_call_get_peer(call);
    s->peer = strdup(p ? p : "");
    if (p) gpr_free(p);
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->status_details = grpc_empty_slice();
    return s;
}

void nh_tp_stream_set_events(nh_tp_stream *s, const nh_tp_stream_events *ev, void *user) {
    s->ev = ev;
    s->user = user;
}

bool nh_tp_stream_start(nh_tp_stream *s, const grpc_op *ops, size_t n, nh_tp_tag *tag) {
    /* A relayed stream's back may start a batch on the owner loop; its completion comes on the
     * transport loop, which acquires the tag (util/tsan.h). */
    nh_tsan_release(tag);
    grpc_call_error e = grpc_call_start_batch(s->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        nh_log(NH_LOG_ERROR, "transport", "grpc_call_start_batch failed (%d) on stream %s", (int)e,
               s->peer);
        return false;
    }
    s->ops++;
    nh_tp_loop_op_begin(s->loop);
    return true;
}

static void on_slow_timer_closed(uv_handle_t *h) {
    free(h);
}

/* Stops and releases the slow-reader timer (its memory goes when libuv closed it). */
static void slow_timer_close(nh_tp_stream *s) {
    if (!s->slow_timer) return;
    uv_timer_stop(s->slow_timer);
    s->slow_timer->data = NULL;
    uv_close((uv_handle_t *)s->slow_timer, on_slow_timer_closed);
    s->slow_timer = NULL;
}

/* Frees what gRPC filled in for the call (headers, trailers, status details), possibly on another
 * thread than ours: its own synchronisation orders that (tests/tsan.supp names this function). */
__attribute__((noinline)) static void release_grpc_buffers(nh_tp_stream *s) {
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_slice_unref(s->status_details);
}

static void stream_free(nh_tp_stream *s) {
    slow_timer_close(s);
    nh_send_queue_clear(&s->queue);
    release_grpc_buffers(s);
    grpc_call_unref(s->call);
    free(s->finish_details);
    free(s->peer);
    nh_identity_unref(s->identity);
    nh_tls_unref(s->tls);
    struct nh_tp_relay *r = s->back_of;
    free(s);
    if (r) nh_tp_relay_back_freed(r);
}

void nh_tp_stream_free_closed(nh_tp_stream *s) {
    if (s->closed && s->ops == 0) stream_free(s);
}

void nh_tp_stream_op_done(nh_tp_stream *s) {
    s->ops--;
    nh_tp_loop_op_end(s->loop);
    if (s->closed && s->ops == 0) stream_free(s);
}

void nh_tp_stream_arm_recv(nh_tp_stream *s) {
    if (s->recv_armed || s->closed) return;
    if (s->recv_paused || s->recv_done || (s->back_of && nh_tp_relay_recv_held(s))) {
        nh_tp_stream_watch_end(s);
        return;
    }
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
    op.data.recv_message.recv_message = &s->recv_bb;
    if (nh_tp_stream_start(s, &op, 1, &s->recv_tag))
        s->recv_armed = true;
    else
        nh_tp_stream_watch_end(s);
}

void nh_tp_stream_watch_end(nh_tp_stream *s) {
    if (s->close_armed || s->closed) return;
    grpc_op op;
    memset(&op, 0, sizeof op);
    if (s->client) {
        op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        op.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
        op.data.recv_status_on_client.status = &s->status;
        op.data.recv_status_on_client.status_details = &s->status_details;
    } else {
        op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        op.data.recv_close_on_server.cancelled = &s->cancelled;
    }
    if (nh_tp_stream_start(s, &op, 1, &s->close_tag)) {
        s->close_armed = true;
        return;
    }
    /* Nothing would ever report the end: end the call so that its pending batches complete. */
    grpc_call_cancel_with_status(s->call, GRPC_STATUS_INTERNAL, "cannot watch the stream's end",
                                 NULL);
}

static void report_ready(nh_tp_stream *s) {
    nh_tp_stream_report_ready(s);
}

void nh_tp_stream_report_ready(nh_tp_stream *s) {
    if (s->client && !s->ready && !s->closed) {
        if (s->tls && !s->identity) {
            /* The server's certificate passed the channel's verifier; keep its identity. */
            char why[256];
            bool presented;
            s->identity = nh_tp_call_identity(s->tls, s->call, true, &presented, why, sizeof why);
        }
        s->ready = true;
        if (s->ev && s->ev->on_ready) s->ev->on_ready(s->user);
    }
}

/* The receive size limit, also checked here (gRPC's message size filter checks it first; this
 * holds even where a channel stack lacks that filter): a message over it ends the stream
 * RESOURCE_EXHAUSTED and is not delivered; nothing more is received on the stream. */
static bool over_limit(nh_tp_stream *s, size_t len) {
    size_t max = nh_tp_loop_max_message(s->loop);
    if (len <= max) return false;
    char why[160];
    snprintf(why, sizeof why,
             "received message of %zu bytes exceeds the maximum message size of %zu bytes", len,
             max);
    nh_log(NH_LOG_WARN, "transport", "stream from %s: %s; ending the stream", s->peer, why);
    s->recv_done = true;
    nh_tp_stream_cancel(s, NH_RESOURCE_EXHAUSTED, why);
    return true;
}

static void on_recv(nh_tp_tag *tag, bool ok) {
    nh_tp_stream *s = (nh_tp_stream *)((char *)tag - offsetof(nh_tp_stream, recv_tag));
    s->recv_armed = false;
    grpc_byte_buffer *bb = s->recv_bb;
    s->recv_bb = NULL;
    if (!ok) {
        s->recv_done = true; /* the call failed; its status follows */
        nh_tp_stream_watch_end(s);
    } else if (!bb) {
        s->recv_done = true; /* half-close */
        nh_tp_stream_watch_end(s);
        if (!s->closed && s->ev && s->ev->on_recv_end) s->ev->on_recv_end(s->user);
    } else if (over_limit(s, grpc_byte_buffer_length(bb))) {
        grpc_byte_buffer_destroy(bb);
    } else {
        grpc_byte_buffer_reader r;
        if (grpc_byte_buffer_reader_init(&r, bb)) {
            grpc_slice all = grpc_byte_buffer_reader_readall(&r);
            grpc_byte_buffer_reader_destroy(&r);
            if (over_limit(s, GRPC_SLICE_LENGTH(all))) { /* inflated past the limit */
                grpc_slice_unref(all);
                grpc_byte_buffer_destroy(bb);
                nh_tp_stream_op_done(s);
                return;
            }
            nh_metrics_stream_message(false, GRPC_SLICE_LENGTH(all));
            report_ready(s);
            if (!s->closed && s->ev && s->ev->on_message)
                s->ev->on_message(s->user, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
            grpc_slice_unref(all);
        } else {
            nh_log(NH_LOG_WARN, "transport", "unreadable message from %s dropped", s->peer);
        }
        grpc_byte_buffer_destroy(bb);
        nh_tp_stream_arm_recv(s);
    }
    nh_tp_stream_op_done(s);
}

static void on_slow_timeout(uv_timer_t *t) {
    nh_tp_stream *s = t->data;
    if (!s) return;
    nh_tp_guard *g = s->recv_tag.guard; /* a relayed stream's back: its relay's mutex */
    if (g) g->enter(g);
    if (!s->closed && s->backlogged) {
        nh_log(NH_LOG_WARN, "transport",
               "stream from %s: %zu reply bytes unsent for %u ms (limit %zu); ending the stream",
               s->peer, nh_tp_stream_queued_bytes(s), (unsigned)s->slow_timeout_ms, s->send_limit);
        nh_tp_stream_cancel(s, NH_RESOURCE_EXHAUSTED, "the peer does not read its replies");
    }
    if (g) g->leave(g);
}

void nh_tp_stream_sync_slow_timer(nh_tp_stream *s) {
    if (s->closed) return;
    if (s->backlogged && s->slow_timeout_ms) {
        if (!s->slow_timer) {
            s->slow_timer = malloc(sizeof *s->slow_timer);
            if (s->slow_timer) uv_timer_init(nh_tp_loop_uv(s->loop), s->slow_timer);
        }
        if (s->slow_timer) {
            s->slow_timer->data = s;
            uv_timer_start(s->slow_timer, on_slow_timeout, s->slow_timeout_ms, 0);
        }
    } else if (s->slow_timer) {
        uv_timer_stop(s->slow_timer);
    }
}

/* The timer is a libuv handle of the stream's loop: a back changed from the owner loop has
 * it synced there. */
static void slow_timer_sync(nh_tp_stream *s) {
    if (s->back_of && !nh_tp_loop_on_owner(s->loop))
        nh_tp_relay_sync_timer(s);
    else
        nh_tp_stream_sync_slow_timer(s);
}

/* Compares the unsent bytes with the limit: reports crossing it and drains below half of it,
 * and runs the slow-reader deadline while over. */
static void check_backlog(nh_tp_stream *s) {
    if (!s->send_limit || s->closed) return;
    size_t bytes = nh_tp_stream_queued_bytes(s);
    if (!s->backlogged && bytes > s->send_limit) {
        s->backlogged = true;
        slow_timer_sync(s);
        if (s->ev && s->ev->on_backlog) s->ev->on_backlog(s->user, true);
    } else if (s->backlogged && bytes < s->send_limit / 2) {
        s->backlogged = false;
        slow_timer_sync(s);
        if (s->ev && s->ev->on_backlog) s->ev->on_backlog(s->user, false);
    }
}

void nh_tp_stream_set_send_limit(nh_tp_stream *s, size_t max_bytes, uint32_t timeout_ms) {
    if (s->relay) {
        nh_tp_relay_set_send_limit(s, max_bytes, timeout_ms);
        return;
    }
    s->send_limit = max_bytes;
    s->slow_timeout_ms = timeout_ms;
    check_backlog(s);
}

size_t nh_tp_stream_queued_bytes(const nh_tp_stream *s) {
    return nh_send_queue_bytes(&s->queue) + s->send_inflight_len;
}

/* gRPC releases a sent message's slice on whichever thread finished with it: the edge from
 * the thread that handed it over (send_next) goes through gRPC, which TSan cannot see. */
static void bytes_unref_cb(void *p) {
    nh_tsan_acquire(p);
    nh_bytes_unref(p);
}

static void start_status(nh_tp_stream *s);

static void send_next(nh_tp_stream *s) {
    if (s->send_busy || s->closed) return;
    nh_send_item it;
    if (!nh_send_queue_pop(&s->queue, &it)) {
        /* Only a server stream ends with a status it sends; a client stream that is finishing
         * was cancelled (nh_tp_stream_cancel) and has nothing more to send. */
        if (s->finishing && !s->status_started && !s->client) start_status(s);
        return;
    }
    grpc_slice sl =
        grpc_slice_new_with_user_data(it.msg->data, it.msg->len, bytes_unref_cb, it.msg);
    s->send_bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    s->send_user_tag = it.tag;
    s->send_inflight_len = it.msg->len;
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    op.data.send_message.send_message = s->send_bb;
    /* More messages wait behind this one: gRPC may hold it and write them together (fewer
     * writes, and fewer TLS records); the last one of a burst goes without the hint and flushes
     * them all. A hinted send still completes at once (gRPC buffers up to its write buffer). */
    if (nh_send_queue_len(&s->queue) > 0) op.flags = GRPC_WRITE_BUFFER_HINT;
    nh_tsan_release(it.msg); /* after this thread's last read of it: see bytes_unref_cb */
    if (!nh_tp_stream_start(s, &op, 1, &s->send_tag)) {
        grpc_byte_buffer_destroy(s->send_bb);
        s->send_bb = NULL;
        s->send_inflight_len = 0;
        if (it.tag && s->ev && s->ev->on_sent) s->ev->on_sent(s->user, it.tag, false);
        s->send_user_tag = NULL;
        return;
    }
    s->send_busy = true;
}

static void on_send(nh_tp_tag *tag, bool ok) {
    nh_tp_stream *s = (nh_tp_stream *)((char *)tag - offsetof(nh_tp_stream, send_tag));
    s->send_busy = false;
    if (ok) nh_metrics_stream_message(true, s->send_inflight_len);
    s->send_inflight_len = 0;
    grpc_byte_buffer_destroy(s->send_bb);
    s->send_bb = NULL;
    void *t = s->send_user_tag;
    s->send_user_tag = NULL;
    if (ok) report_ready(s);
    if (!s->closed) {
        if (t && s->ev && s->ev->on_sent) s->ev->on_sent(s->user, t, ok);
        if (ok) send_next(s);
        check_backlog(s);
    }
    nh_tp_stream_op_done(s);
}

int nh_tp_stream_enqueue(nh_tp_stream *s, nh_bytes *msg, void *tag) {
    if (s->closed || s->finishing || nh_send_queue_push(&s->queue, msg, tag) != 0) {
        nh_bytes_unref(msg);
        return -1;
    }
    check_backlog(s);
    return 0;
}

void nh_tp_stream_send_queued(nh_tp_stream *s) {
    send_next(s);
}

int nh_tp_stream_send(nh_tp_stream *s, nh_bytes *msg, void *tag) {
    if (s->relay) return nh_tp_relay_send(s, msg, tag);
    if (nh_tp_stream_enqueue(s, msg, tag) != 0) return -1;
    send_next(s);
    return 0;
}

size_t nh_tp_stream_unqueue(nh_tp_stream *s, void *tag) {
    if (s->relay) return nh_tp_relay_unqueue(s, tag);
    return nh_send_queue_remove_tag(&s->queue, tag);
}

void nh_tp_stream_pause_recv(nh_tp_stream *s, bool paused) {
    if (s->relay) {
        nh_tp_relay_pause_recv(s, paused);
        return;
    }
    s->recv_paused = paused;
    if (paused && !s->recv_armed) nh_tp_stream_watch_end(s);
    if (!paused) nh_tp_stream_arm_recv(s);
}

static void start_status(nh_tp_stream *s) {
    s->status_started = true;
    nh_tp_stream_watch_end(s);
    grpc_slice details = grpc_slice_from_copied_string(s->finish_details ? s->finish_details : "");
    grpc_op op = {.op = GRPC_OP_SEND_STATUS_FROM_SERVER};
    op.data.send_status_from_server.status = (grpc_status_code)s->finish_code;
    op.data.send_status_from_server.status_details = &details;
    if (!nh_tp_stream_start(s, &op, 1, &s->status_tag))
        grpc_call_cancel_with_status(s->call, GRPC_STATUS_INTERNAL, "cannot send status", NULL);
    grpc_slice_unref(details);
}

static void on_status_sent(nh_tp_tag *tag, bool ok) {
    (void)ok;
    nh_tp_stream *s = (nh_tp_stream *)((char *)tag - offsetof(nh_tp_stream, status_tag));
    nh_tp_stream_op_done(s);
}

void nh_tp_stream_finish(nh_tp_stream *s, nh_code code, const char *details) {
    if (s->relay) {
        nh_tp_relay_finish(s, code, details);
        return;
    }
    if (s->closed || s->finishing) return;
    if (s->client) {
        nh_tp_stream_cancel(s, code, details);
        return;
    }
    s->finishing = true;
    s->finish_code = code;
    s->finish_details = strdup(details ? details : "");
    send_next(s);
}

void nh_tp_stream_cancel(nh_tp_stream *s, nh_code code, const char *details) {
    if (s->relay) {
        nh_tp_relay_cancel(s, code, details);
        return;
    }
    if (s->closed) return;
    s->finishing = true;
    grpc_call_cancel_with_status(s->call, (grpc_status_code)code, details ? details : "", NULL);
    nh_tp_stream_watch_end(s);
}

void nh_tp_stream_report_closed(nh_tp_stream *s, nh_code code, const char *details) {
    if (s->closed) return;
    s->closed = true;
    slow_timer_close(s);
    const nh_tp_stream_events *ev = s->ev;
    void *user = s->user;
    /* Tagged sends that will never complete successfully: tell their owners now. */
    void *inflight = s->send_user_tag;
    s->send_user_tag = NULL;
    if (inflight && ev && ev->on_sent) ev->on_sent(user, inflight, false);
    nh_send_item it;
    while (nh_send_queue_pop(&s->queue, &it)) {
        if (it.tag && ev && ev->on_sent) ev->on_sent(user, it.tag, false);
        nh_bytes_unref(it.msg);
    }
    if (ev && ev->on_closed) ev->on_closed(user, code, details ? details : "");
}

const struct nh_identity *nh_tp_stream_identity(const nh_tp_stream *s) {
    return s->identity;
}

const char *nh_tp_stream_peer(const nh_tp_stream *s) {
    return s->peer;
}

size_t nh_tp_stream_queued(const nh_tp_stream *s) {
    return nh_send_queue_len(&s->queue);
}
