/* A stream split over two threads. The front is the user's nh_tp_stream on the owner loop; the
 * back is a plain stream whose gRPC call reports to a transport loop's completion queue. The
 * back's state is guarded by the relay's mutex: its completions take it on the transport loop
 * (a guard on its tags, see nh_tp_tag), and the front's calls (send, unqueue, pause, finish,
 * cancel, send limit) take it on the owner loop and act on the back directly: starting a gRPC
 * batch is allowed from any thread, and its completion still arrives on the transport loop. So
 * the owner loop never waits for the transport loop, and wakes it only for a slow-reader timer
 * (a libuv handle of the transport loop, armed there by a post) and for a fan-out: past
 * NH_TP_DIRECT_SENDS sends in one iteration, the front queues the message on the back and the
 * transport loop starts the send (run_flush). The back's events go to the
 * owner loop as posts, in the order the back produced them; on_closed is the last one.
 * The relay is freed when the front, the back and every event or post in flight let go of it
 * (an atomic count); a completion holds a reference while it runs, so the mutex outlives it. */
#include "transport/relay.h"

#include "util/log.h"

#include <grpc/grpc.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct nh_tp_relay {
    int refs;           /* atomic: front, back, each event and post in flight, a completion */
    nh_tp_guard guard;  /* on the back's tags: a reference and the mutex around a completion */
    pthread_mutex_t mu; /* the back's state */
    nh_tp_loop *home, *io;
    nh_tp_stream *front; /* home: NULL once its end was delivered */
    nh_tp_stream *back;  /* under mu: NULL once it reported its end */
    size_t unread;       /* under mu: messages posted to the front and not delivered yet */
    bool flush_posted;   /* under mu: a run_flush for the back's queue is on its way */
    /* home */
    size_t tagged_out; /* tagged sends posted whose on_sent did not come back yet */
    bool end_seen;
    nh_code end_code;
    char *end_details;
} nh_tp_relay;

typedef enum ev_kind {
    EV_MESSAGE,
    EV_RECV_END,
    EV_SENT,
    EV_READY,
    EV_BACKLOG,
    EV_CLOSED,
} ev_kind;

typedef struct relay_ev {
    nh_tp_relay *r;
    ev_kind kind;
    void *tag;             /* SENT */
    bool ok;               /* SENT */
    bool over;             /* BACKLOG */
    nh_identity *identity; /* READY (a reference) */
    nh_code code;          /* CLOSED */
    size_t len;            /* MESSAGE: data; CLOSED: details (NUL-terminated) */
    uint8_t data[];
} relay_ev;

static void relay_ref(nh_tp_relay *r) {
    __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
}

static void relay_unref(nh_tp_relay *r) {
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    pthread_mutex_destroy(&r->mu);
    free(r->end_details);
    free(r);
}

/* The back, locked (NULL once it reported its end); unlock with pthread_mutex_unlock. */
static nh_tp_stream *lock_back(nh_tp_relay *r) {
    pthread_mutex_lock(&r->mu);
    return r->back;
}

static void guard_enter(nh_tp_guard *g) {
    nh_tp_relay *r = (nh_tp_relay *)((char *)g - offsetof(nh_tp_relay, guard));
    relay_ref(r);
    pthread_mutex_lock(&r->mu);
}

static void guard_leave(nh_tp_guard *g) {
    nh_tp_relay *r = (nh_tp_relay *)((char *)g - offsetof(nh_tp_relay, guard));
    pthread_mutex_unlock(&r->mu);
    relay_unref(r);
}

/* ---- the back's side (transport loop) ---- */

static void on_event(void *p);

static void post_event(nh_tp_relay *r, relay_ev *e) {
    e->r = r;
    relay_ref(r);
    if (nh_tp_loop_post_always(r->home, on_event, e) != 0) {
        nh_log(NH_LOG_ERROR, "transport", "out of memory: a stream event was lost");
        if (e->kind == EV_MESSAGE) r->unread--;
        nh_identity_unref(e->identity);
        free(e);
        relay_unref(r);
    }
}

static relay_ev *event_new(ev_kind kind, size_t extra) {
    relay_ev *e = calloc(1, sizeof *e + extra);
    if (e) e->kind = kind;
    return e;
}

/* Messages the back reads ahead of the front: past this the back's receive is not armed again
 * until the front took one (nh_tp_relay_recv_held), so a stream that the owner loop paused (a
 * full inbox, replies not read) stops reading within this many messages, as gRPC's flow
 * control then pushes back on the peer. */
#define READ_AHEAD 8

bool nh_tp_relay_recv_held(const nh_tp_stream *back) {
    return back->back_of->unread >= READ_AHEAD;
}

static void back_on_message(void *user, const uint8_t *data, size_t len) {
    nh_tp_relay *r = user;
    relay_ev *e = event_new(EV_MESSAGE, len);
    if (e) r->unread++; /* post_event takes it back if the post fails */
    if (!e) {
        nh_log(NH_LOG_ERROR, "transport", "out of memory: a received message was dropped");
        return;
    }
    memcpy(e->data, data, len);
    e->len = len;
    post_event(user, e);
}

static void back_on_recv_end(void *user) {
    relay_ev *e = event_new(EV_RECV_END, 0);
    if (e) post_event(user, e);
}

static void post_sent(nh_tp_relay *r, void *tag, bool ok) {
    relay_ev *e = event_new(EV_SENT, 0);
    if (!e) {
        nh_log(NH_LOG_ERROR, "transport", "out of memory: a send confirmation was lost");
        return;
    }
    e->tag = tag;
    e->ok = ok;
    post_event(r, e);
}

static void back_on_sent(void *user, void *tag, bool ok) {
    post_sent(user, tag, ok);
}

static void back_on_ready(void *user) {
    nh_tp_relay *r = user;
    relay_ev *e = event_new(EV_READY, 0);
    if (!e) return;
    e->identity = nh_identity_ref(r->back ? r->back->identity : NULL);
    post_event(r, e);
}

static void back_on_backlog(void *user, bool over) {
    relay_ev *e = event_new(EV_BACKLOG, 0);
    if (!e) return;
    e->over = over;
    post_event(user, e);
}

static void back_on_closed(void *user, nh_code code, const char *details) {
    nh_tp_relay *r = user;
    size_t len = strlen(details);
    relay_ev *e = event_new(EV_CLOSED, len + 1);
    r->back = NULL; /* the back frees itself once its operations completed */
    if (e) {
        memcpy(e->data, details, len + 1);
        e->len = len;
        e->code = code;
        post_event(r, e);
    } else {
        nh_log(NH_LOG_ERROR, "transport", "out of memory: a stream's end was lost");
    }
    /* The back's reference goes when the back is freed (nh_tp_relay_back_freed): its last
     * completions still enter the relay's guard. */
}

void nh_tp_relay_back_freed(struct nh_tp_relay *r) {
    relay_unref(r);
}

static const nh_tp_stream_events back_events = {
    .on_message = back_on_message,
    .on_recv_end = back_on_recv_end,
    .on_sent = back_on_sent,
    .on_ready = back_on_ready,
    .on_backlog = back_on_backlog,
    .on_closed = back_on_closed,
};

/* The back's slow-reader timer, armed or stopped on the transport loop (libuv is not
 * thread-safe) after the front's call changed the back's backlog. */
static void run_timer_sync(void *p) {
    nh_tp_relay *r = p;
    pthread_mutex_lock(&r->mu);
    if (r->back) nh_tp_stream_sync_slow_timer(r->back);
    pthread_mutex_unlock(&r->mu);
    relay_unref(r);
}

void nh_tp_relay_sync_timer(nh_tp_stream *back) {
    nh_tp_relay *r = back->back_of;
    relay_ref(r);
    if (nh_tp_loop_post(r->io, run_timer_sync, r) != 0) relay_unref(r);
}

/* Starts the back's queued sends on the transport loop (a front's sends past the owner
 * loop's direct budget, see nh_tp_relay_send). */
static void run_flush(void *p) {
    nh_tp_relay *r = p;
    pthread_mutex_lock(&r->mu);
    r->flush_posted = false;
    if (r->back) nh_tp_stream_send_queued(r->back);
    pthread_mutex_unlock(&r->mu);
    relay_unref(r);
}

/* ---- the front's side (owner loop) ---- */

static void front_free(nh_tp_stream *f) {
    free(f->peer);
    nh_identity_unref(f->identity);
    free(f);
}

/* The back's end and every answer to a tagged send are in: on_closed, then the front goes. */
static void deliver_end(nh_tp_relay *r) {
    nh_tp_stream *f = r->front;
    r->front = NULL;
    f->closed = true;
    if (f->ev && f->ev->on_closed)
        f->ev->on_closed(f->user, r->end_code, r->end_details ? r->end_details : "");
    nh_tp_loop_front_end(r->home);
    front_free(f);
    relay_unref(r); /* the front's reference */
}

static void on_event(void *p) {
    relay_ev *e = p;
    nh_tp_relay *r = e->r;
    nh_tp_stream *f = r->front;
    const nh_tp_stream_events *ev = f ? f->ev : NULL;
    switch (e->kind) {
        case EV_MESSAGE: {
            if (ev && ev->on_message) ev->on_message(f->user, e->data, e->len);
            nh_tp_stream *b = lock_back(r);
            if (r->unread-- == READ_AHEAD && b) nh_tp_stream_arm_recv(b); /* it was held */
            pthread_mutex_unlock(&r->mu);
            break;
        }
        case EV_RECV_END:
            if (ev && ev->on_recv_end) ev->on_recv_end(f->user);
            break;
        case EV_SENT:
            r->tagged_out--;
            if (ev && ev->on_sent) ev->on_sent(f->user, e->tag, e->ok);
            if (r->front && r->end_seen && r->tagged_out == 0) deliver_end(r);
            break;
        case EV_READY:
            if (!f) break;
            if (!f->identity) f->identity = nh_identity_ref(e->identity);
            f->ready = true;
            if (ev && ev->on_ready) ev->on_ready(f->user);
            break;
        case EV_BACKLOG:
            if (ev && ev->on_backlog) ev->on_backlog(f->user, e->over);
            break;
        case EV_CLOSED:
            if (!f) break;
            r->end_seen = true;
            r->end_code = e->code;
            r->end_details = strdup((const char *)e->data);
            if (r->tagged_out == 0) deliver_end(r);
            break;
    }
    nh_identity_unref(e->identity);
    free(e);
    relay_unref(r);
}

nh_tp_stream *nh_tp_relay_new(nh_tp_loop *home, nh_tp_stream *back,
                              bool (*start)(nh_tp_stream *back, void *arg), void *arg,
                              void (*free_arg)(void *arg)) {
    nh_tp_relay *r = calloc(1, sizeof *r);
    nh_tp_stream *f = calloc(1, sizeof *f);
    char *peer = strdup(back->peer);
    if (!r || !f || !peer) {
        free(r);
        free(f);
        free(peer);
        return NULL;
    }
    r->refs = 2; /* front and back */
    r->guard = (nh_tp_guard){guard_enter, guard_leave};
    pthread_mutex_init(&r->mu, NULL);
    r->home = home;
    r->io = back->loop;
    r->front = f;
    r->back = back;
    f->relay = r;
    f->loop = home;
    f->client = back->client;
    f->peer = peer;
    f->identity = nh_identity_ref(back->identity);
    nh_tp_loop_front_begin(home);
    back->back_of = r;
    nh_tp_stream_set_events(back, &back_events, r);
    nh_tp_tag *tags[] = {&back->recv_tag, &back->send_tag, &back->start_tag, &back->close_tag,
                         &back->status_tag};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        tags[i]->guard = &r->guard;
    pthread_mutex_lock(&r->mu);
    if (!start(back, arg)) {
        /* Nothing started: report the end (a CLOSED event for the front) and free the back. */
        grpc_call_cancel_with_status(back->call, GRPC_STATUS_INTERNAL, "cannot start the stream",
                                     NULL);
        nh_tp_stream_report_closed(back, NH_INTERNAL, "cannot start the stream");
        nh_tp_stream_free_closed(back);
    }
    pthread_mutex_unlock(&r->mu);
    if (free_arg) free_arg(arg);
    return f;
}

int nh_tp_relay_send(nh_tp_stream *f, nh_bytes *msg, void *tag) {
    if (f->closed || f->finishing) {
        nh_bytes_unref(msg);
        return -1;
    }
    nh_tp_relay *r = f->relay;
    nh_tp_stream *b = lock_back(r);
    int rc = 0;
    if (b && !b->closed && nh_tp_loop_take_direct_send(r->home)) {
        rc = nh_tp_stream_send(b, msg, tag);
    } else if (b && !b->closed) {
        /* A fan-out (one call to thousands of client peers): past the first few sends of this
         * iteration the owner thread only queues, and the transport loop starts the gRPC
         * batches (its thread then does the writes, and the completion queue's bookkeeping). */
        rc = nh_tp_stream_enqueue(b, msg, tag);
        if (rc == 0 && !b->send_busy && !r->flush_posted) {
            relay_ref(r);
            if (nh_tp_loop_post(r->io, run_flush, r) == 0) {
                r->flush_posted = true;
            } else { /* the transport loop is stopping: start it here */
                relay_unref(r);
                nh_tp_stream_send_queued(b);
            }
        }
    } else {
        /* The back ended and its end is on the way to the front: as with one loop, where the
         * end would be known already, the send is taken and fails (on_sent(false), then
         * on_closed with the stream's own reason). */
        nh_bytes_unref(msg);
        if (tag) post_sent(r, tag, false);
    }
    pthread_mutex_unlock(&r->mu);
    if (rc == 0 && tag) r->tagged_out++;
    return rc;
}

size_t nh_tp_relay_unqueue(nh_tp_stream *f, void *tag) {
    nh_tp_relay *r = f->relay;
    nh_tp_stream *b = lock_back(r);
    size_t n = b ? nh_tp_stream_unqueue(b, tag) : 0;
    pthread_mutex_unlock(&r->mu);
    r->tagged_out -= n;
    return n;
}

void nh_tp_relay_set_send_limit(nh_tp_stream *f, size_t max_bytes, uint32_t timeout_ms) {
    nh_tp_relay *r = f->relay;
    nh_tp_stream *b = lock_back(r);
    if (b) nh_tp_stream_set_send_limit(b, max_bytes, timeout_ms);
    pthread_mutex_unlock(&r->mu);
}

void nh_tp_relay_pause_recv(nh_tp_stream *f, bool paused) {
    nh_tp_relay *r = f->relay;
    nh_tp_stream *b = lock_back(r);
    if (b) nh_tp_stream_pause_recv(b, paused);
    pthread_mutex_unlock(&r->mu);
}

void nh_tp_relay_finish(nh_tp_stream *f, nh_code code, const char *details) {
    if (f->closed || f->finishing) return;
    if (f->client) {
        nh_tp_relay_cancel(f, code, details);
        return;
    }
    f->finishing = true;
    nh_tp_relay *r = f->relay;
    nh_tp_stream *b = lock_back(r);
    if (b) nh_tp_stream_finish(b, code, details);
    pthread_mutex_unlock(&r->mu);
}

void nh_tp_relay_cancel(nh_tp_stream *f, nh_code code, const char *details) {
    if (f->closed) return;
    f->finishing = true;
    nh_tp_relay *r = f->relay;
    nh_tp_stream *b = lock_back(r);
    if (b) nh_tp_stream_cancel(b, code, details);
    pthread_mutex_unlock(&r->mu);
}
