/* A stream split over two threads. The front (the user's nh_tp_stream, on the owner loop)
 * turns each call into a command posted to the transport loop; the back (a plain stream on that
 * loop) runs the gRPC call and posts its events to the owner loop. Posts keep their order both
 * ways, so the user sees the events in the order the back produced them.
 *
 * The end: the back reports on_closed once (after on_sent(false) for its queued tagged sends).
 * Commands the front posted before it learned of the end may still reach the back after it;
 * a tagged send among them is answered on_sent(false) too. The front counts its tagged sends
 * not answered yet and delivers on_closed only when that count is zero, so on_closed stays the
 * last event. The relay is freed when the front, the back and every command and event in
 * flight let go of it (an atomic count). */
#include "transport/relay.h"

#include "util/log.h"

#include <grpc/grpc.h>

#include <stdlib.h>
#include <string.h>

typedef struct nh_tp_relay {
    int refs; /* atomic: front, back, each command and event in flight */
    nh_tp_loop *home, *io;
    nh_tp_stream *front; /* home: NULL once its end was delivered */
    nh_tp_stream *back;  /* io: NULL once it reported its end */
    /* home */
    size_t tagged_out; /* tagged sends posted whose on_sent did not come back yet */
    bool end_seen;
    nh_code end_code;
    char *end_details;
} nh_tp_relay;

typedef enum cmd_kind {
    CMD_START,
    CMD_SEND,
    CMD_UNQUEUE,
    CMD_LIMIT,
    CMD_PAUSE,
    CMD_FINISH,
    CMD_CANCEL,
} cmd_kind;

typedef struct relay_cmd {
    nh_tp_relay *r;
    cmd_kind kind;
    nh_bytes *msg; /* SEND */
    void *tag;     /* SEND, UNQUEUE */
    size_t limit;  /* LIMIT */
    uint32_t timeout_ms;
    bool paused;                                  /* PAUSE */
    nh_code code;                                 /* FINISH, CANCEL */
    char *details;                                /* FINISH, CANCEL */
    bool (*start)(nh_tp_stream *back, void *arg); /* START */
    void *arg;
    void (*free_arg)(void *arg);
} relay_cmd;

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
    size_t count;          /* SENT: how many sends of tag */
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
    free(r->end_details);
    free(r);
}

/* ---- the back's side (transport loop) ---- */

static void on_event(void *p);

static void post_event(nh_tp_relay *r, relay_ev *e) {
    e->r = r;
    relay_ref(r);
    if (nh_tp_loop_post_always(r->home, on_event, e) != 0) {
        nh_log(NH_LOG_ERROR, "transport", "out of memory: a stream event was lost");
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

static void back_on_message(void *user, const uint8_t *data, size_t len) {
    relay_ev *e = event_new(EV_MESSAGE, len);
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

static void post_sent(nh_tp_relay *r, void *tag, bool ok, size_t count) {
    relay_ev *e = event_new(EV_SENT, 0);
    if (!e) {
        nh_log(NH_LOG_ERROR, "transport", "out of memory: a send confirmation was lost");
        return;
    }
    e->tag = tag;
    e->ok = ok;
    e->count = count;
    post_event(r, e);
}

static void back_on_sent(void *user, void *tag, bool ok) {
    post_sent(user, tag, ok, 1);
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
    relay_unref(r); /* the back's reference */
}

static const nh_tp_stream_events back_events = {
    .on_message = back_on_message,
    .on_recv_end = back_on_recv_end,
    .on_sent = back_on_sent,
    .on_ready = back_on_ready,
    .on_backlog = back_on_backlog,
    .on_closed = back_on_closed,
};

static void run_command(void *p) {
    relay_cmd *c = p;
    nh_tp_relay *r = c->r;
    nh_tp_stream *b = r->back;
    switch (c->kind) {
        case CMD_START:
            if (!c->start(b, c->arg)) {
                /* Nothing started: report the end ourselves and free the back. */
                grpc_call_cancel_with_status(b->call, GRPC_STATUS_INTERNAL,
                                             "cannot start the stream", NULL);
                nh_tp_stream_report_closed(b, NH_INTERNAL, "cannot start the stream");
                nh_tp_stream_free_closed(b);
            }
            if (c->free_arg) c->free_arg(c->arg);
            break;
        case CMD_SEND:
            if (b) {
                if (nh_tp_stream_send(b, c->msg, c->tag) == 0) break; /* the reference is gone */
            } else {
                nh_bytes_unref(c->msg);
            }
            if (c->tag) post_sent(r, c->tag, false, 1);
            break;
        case CMD_UNQUEUE:
            if (b) {
                size_t n = nh_tp_stream_unqueue(b, c->tag);
                if (n) post_sent(r, c->tag, false, n);
            }
            break;
        case CMD_LIMIT:
            if (b) nh_tp_stream_set_send_limit(b, c->limit, c->timeout_ms);
            break;
        case CMD_PAUSE:
            if (b) nh_tp_stream_pause_recv(b, c->paused);
            break;
        case CMD_FINISH:
            if (b) nh_tp_stream_finish(b, c->code, c->details);
            break;
        case CMD_CANCEL:
            if (b) nh_tp_stream_cancel(b, c->code, c->details);
            break;
    }
    free(c->details);
    free(c);
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
        case EV_MESSAGE:
            if (ev && ev->on_message) ev->on_message(f->user, e->data, e->len);
            break;
        case EV_RECV_END:
            if (ev && ev->on_recv_end) ev->on_recv_end(f->user);
            break;
        case EV_SENT:
            r->tagged_out -= e->count;
            for (size_t i = 0; i < e->count && r->front; i++)
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

/* Posts c to the back; false (c freed, its message dropped) when the transport loop refused. */
static bool post_command(nh_tp_relay *r, relay_cmd *c) {
    c->r = r;
    relay_ref(r);
    if (nh_tp_loop_post(r->io, run_command, c) == 0) return true;
    nh_log(NH_LOG_ERROR, "transport", "a stream command could not be posted (out of memory)");
    if (c->msg) nh_bytes_unref(c->msg);
    free(c->details);
    free(c);
    relay_unref(r);
    return false;
}

static relay_cmd *command_new(cmd_kind kind) {
    relay_cmd *c = calloc(1, sizeof *c);
    if (c) c->kind = kind;
    return c;
}

nh_tp_stream *nh_tp_relay_new(nh_tp_loop *home, nh_tp_stream *back,
                              bool (*start)(nh_tp_stream *back, void *arg), void *arg,
                              void (*free_arg)(void *arg)) {
    nh_tp_relay *r = calloc(1, sizeof *r);
    nh_tp_stream *f = calloc(1, sizeof *f);
    relay_cmd *c = command_new(CMD_START);
    char *peer = strdup(back->peer);
    if (!r || !f || !c || !peer) {
        free(r);
        free(f);
        free(c);
        free(peer);
        return NULL;
    }
    r->refs = 2; /* front and back */
    r->home = home;
    r->io = back->loop;
    r->front = f;
    r->back = back;
    f->relay = r;
    f->loop = home;
    f->client = back->client;
    f->peer = peer;
    f->identity = nh_identity_ref(back->identity);
    nh_tp_stream_set_events(back, &back_events, r);
    c->start = start;
    c->arg = arg;
    c->free_arg = free_arg;
    if (!post_command(r, c)) {
        front_free(f);
        free(r);
        return NULL;
    }
    nh_tp_loop_front_begin(home);
    return f;
}

int nh_tp_relay_send(nh_tp_stream *f, nh_bytes *msg, void *tag) {
    relay_cmd *c = (f->closed || f->finishing) ? NULL : command_new(CMD_SEND);
    if (!c) {
        nh_bytes_unref(msg);
        return -1;
    }
    c->msg = msg;
    c->tag = tag;
    if (!post_command(f->relay, c)) return -1;
    if (tag) f->relay->tagged_out++;
    return 0;
}

size_t nh_tp_relay_unqueue(nh_tp_stream *f, void *tag) {
    relay_cmd *c = f->closed ? NULL : command_new(CMD_UNQUEUE);
    if (!c) return 0;
    c->tag = tag;
    post_command(f->relay, c); /* what it removes is answered on_sent(false) */
    return 0;
}

void nh_tp_relay_set_send_limit(nh_tp_stream *f, size_t max_bytes, uint32_t timeout_ms) {
    relay_cmd *c = f->closed ? NULL : command_new(CMD_LIMIT);
    if (!c) return;
    c->limit = max_bytes;
    c->timeout_ms = timeout_ms;
    post_command(f->relay, c);
}

void nh_tp_relay_pause_recv(nh_tp_stream *f, bool paused) {
    relay_cmd *c = f->closed ? NULL : command_new(CMD_PAUSE);
    if (!c) return;
    c->paused = paused;
    post_command(f->relay, c);
}

static void post_end(nh_tp_stream *f, cmd_kind kind, nh_code code, const char *details) {
    relay_cmd *c = command_new(kind);
    if (c) c->details = strdup(details ? details : "");
    if (!c || !c->details) {
        free(c);
        nh_log(NH_LOG_ERROR, "transport", "out of memory: stream %s could not be ended", f->peer);
        return;
    }
    c->code = code;
    post_command(f->relay, c);
}

void nh_tp_relay_finish(nh_tp_stream *f, nh_code code, const char *details) {
    if (f->closed || f->finishing) return;
    if (f->client) {
        nh_tp_relay_cancel(f, code, details);
        return;
    }
    f->finishing = true;
    post_end(f, CMD_FINISH, code, details);
}

void nh_tp_relay_cancel(nh_tp_stream *f, nh_code code, const char *details) {
    if (f->closed) return;
    f->finishing = true;
    post_end(f, CMD_CANCEL, code, details);
}
