/* The baseline: a bare gRPC C core echo over /stream.Gorums/NodeStream, with no nodehost code.
 *
 *   baseline_echo server HOST:PORT
 *       Accepts NodeStreams and sends every received message back unchanged (the received
 *       byte buffer itself) on the same stream. One thread in grpc_completion_queue_next; a
 *       send FIFO per stream since only one SEND_MESSAGE may be in flight. Prints
 *       "listening <port>"; exits on SIGTERM or SIGINT.
 *
 *   baseline_echo client HOST:PORT [--inflight N] [--seconds S] [--payload B] [--warmup S]
 *                                  [--messages M]
 *       One stream; keeps N stream.Message envelopes (seq, method test.Echo.Raw, B payload
 *       bytes) in flight, matches each answer to its send time by seq and prints
 *       "msgs_per_s=<f> p50_us=<f> p99_us=<f> count=<n> errors=<n>".
 *
 * Envelopes are encoded by hand (the constant method and payload fields are encoded once);
 * the encoder is checked against protobuf-c's at start-up. */
#include "bench_common.h"

#include "stream.pb-c.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODESTREAM_PATH "/stream.Gorums/NodeStream"

static gpr_timespec deadline_ms(int ms) {
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* A FIFO of byte buffers waiting for the stream's single send slot. */
typedef struct bb_fifo {
    grpc_byte_buffer **items;
    size_t head, len, cap; /* cap is a power of two */
} bb_fifo;

static int fifo_push(bb_fifo *f, grpc_byte_buffer *bb) {
    if (f->len == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        grpc_byte_buffer **items = malloc(cap * sizeof *items);
        if (!items) return -1;
        for (size_t i = 0; i < f->len; i++)
            items[i] = f->items[(f->head + i) & (f->cap - 1)];
        free(f->items);
        f->items = items;
        f->cap = cap;
        f->head = 0;
    }
    f->items[(f->head + f->len) & (f->cap - 1)] = bb;
    f->len++;
    return 0;
}

static grpc_byte_buffer *fifo_pop(bb_fifo *f) {
    if (f->len == 0) return NULL;
    grpc_byte_buffer *bb = f->items[f->head];
    f->head = (f->head + 1) & (f->cap - 1);
    f->len--;
    return bb;
}

static void fifo_free(bb_fifo *f) {
    grpc_byte_buffer *bb;
    while ((bb = fifo_pop(f)) != NULL)
        grpc_byte_buffer_destroy(bb);
    free(f->items);
    *f = (bb_fifo){0};
}

/* ---- server ------------------------------------------------------------------------------- */

typedef enum tag_kind {
    T_ACCEPT,
    T_SHUTDOWN,
    T_START,
    T_RECV,
    T_SEND,
    T_CLOSE,
    T_STATUS,
    /* client */
    T_CSTATUS,
    T_CLOSE_SEND,
} tag_kind;

struct conn;

typedef struct tag {
    tag_kind kind;
    struct conn *c;
} tag;

typedef struct conn {
    grpc_call *call;
    int pending; /* batches started and not completed */
    bool closed; /* RECV_CLOSE_ON_SERVER fired */
    bool half_closed, status_sent, send_busy, failed;
    grpc_byte_buffer *recv_bb;
    grpc_byte_buffer *send_bb;
    bb_fifo fifo;
    int cancelled;
    tag t_start, t_recv, t_send, t_close, t_status;
    struct conn *next, *prev;
} conn;

typedef struct server {
    grpc_server *srv;
    grpc_completion_queue *cq;
    grpc_call *new_call;
    grpc_call_details details;
    grpc_metadata_array md;
    bool accept_armed, shutting_down, shut_down;
    tag t_accept, t_shutdown;
    conn *conns;
} server;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static bool conn_start(conn *c, const grpc_op *ops, size_t n, tag *t) {
    if (grpc_call_start_batch(c->call, ops, n, t, NULL) != GRPC_CALL_OK) return false;
    c->pending++;
    return true;
}

static void conn_arm_recv(conn *c) {
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
    op.data.recv_message.recv_message = &c->recv_bb;
    if (!conn_start(c, &op, 1, &c->t_recv)) c->failed = true;
}

static void conn_send_status(conn *c) {
    grpc_op op = {.op = GRPC_OP_SEND_STATUS_FROM_SERVER};
    grpc_slice details = grpc_empty_slice();
    op.data.send_status_from_server.status = GRPC_STATUS_OK;
    op.data.send_status_from_server.status_details = &details;
    c->status_sent = true;
    if (!conn_start(c, &op, 1, &c->t_status)) c->failed = true;
}

static void conn_pump(conn *c) {
    if (c->send_busy || c->failed) return;
    grpc_byte_buffer *bb = fifo_pop(&c->fifo);
    if (!bb) {
        if (c->half_closed && !c->status_sent) conn_send_status(c);
        return;
    }
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    op.data.send_message.send_message = bb;
    if (!conn_start(c, &op, 1, &c->t_send)) {
        grpc_byte_buffer_destroy(bb);
        c->failed = true;
        return;
    }
    c->send_bb = bb;
    c->send_busy = true;
}

static void conn_maybe_free(server *s, conn *c) {
    if (!c->closed || c->pending > 0) return;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    fifo_free(&c->fifo);
    grpc_call_unref(c->call);
    free(c);
}

static void server_arm_accept(server *s) {
    s->new_call = NULL;
    grpc_call_details_init(&s->details);
    grpc_metadata_array_init(&s->md);
    if (grpc_server_request_call(s->srv, &s->new_call, &s->details, &s->md, s->cq, s->cq,
                                 &s->t_accept) == GRPC_CALL_OK)
        s->accept_armed = true;
}

static void server_accept(server *s, grpc_call *call) {
    const grpc_slice m = s->details.method;
    size_t plen = strlen(NODESTREAM_PATH);
    conn *c = calloc(1, sizeof *c);
    if (!c || GRPC_SLICE_LENGTH(m) != plen ||
        memcmp(GRPC_SLICE_START_PTR(m), NODESTREAM_PATH, plen)) {
        grpc_call_cancel_with_status(call, GRPC_STATUS_UNIMPLEMENTED, "unknown path", NULL);
        grpc_call_unref(call);
        free(c);
        return;
    }
    c->call = call;
    c->t_start = (tag){T_START, c};
    c->t_recv = (tag){T_RECV, c};
    c->t_send = (tag){T_SEND, c};
    c->t_close = (tag){T_CLOSE, c};
    c->t_status = (tag){T_STATUS, c};
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    grpc_op close = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};
    close.data.recv_close_on_server.cancelled = &c->cancelled;
    if (!conn_start(c, &close, 1, &c->t_close)) {
        /* Cannot watch the end: drop it (nothing else was started). */
        c->closed = true;
        grpc_call_cancel(call, NULL);
        conn_maybe_free(s, c);
        return;
    }
    grpc_op start[2] = {{.op = GRPC_OP_SEND_INITIAL_METADATA}, {.op = GRPC_OP_RECV_MESSAGE}};
    start[1].data.recv_message.recv_message = &c->recv_bb;
    if (!conn_start(c, start, 2, &c->t_recv)) {
        c->failed = true;
        grpc_call_cancel(call, NULL);
    }
}

static void server_event(server *s, tag *t, bool ok) {
    conn *c = t->c;
    switch (t->kind) {
        case T_ACCEPT:
            s->accept_armed = false;
            if (ok && s->new_call) server_accept(s, s->new_call);
            grpc_call_details_destroy(&s->details);
            grpc_metadata_array_destroy(&s->md);
            if (ok && !s->shutting_down) server_arm_accept(s);
            return;
        case T_SHUTDOWN:
            s->shut_down = true;
            return;
        case T_START:
        case T_STATUS:
            break;
        case T_RECV: {
            grpc_byte_buffer *bb = c->recv_bb;
            c->recv_bb = NULL;
            if (ok && bb) {
                /* Echo: the received buffer goes back out as it is. */
                if (fifo_push(&c->fifo, bb) != 0) {
                    grpc_byte_buffer_destroy(bb);
                    c->failed = true;
                    grpc_call_cancel(c->call, NULL);
                } else {
                    conn_pump(c);
                    conn_arm_recv(c);
                }
            } else if (ok) {
                c->half_closed = true; /* the client is done sending */
                conn_pump(c);
            }
            break;
        }
        case T_SEND:
            c->send_busy = false;
            grpc_byte_buffer_destroy(c->send_bb);
            c->send_bb = NULL;
            if (ok)
                conn_pump(c);
            else
                c->failed = true;
            break;
        case T_CLOSE:
            c->closed = true;
            break;
        default:
            break;
    }
    c->pending--;
    conn_maybe_free(s, c);
}

static int run_server(const char *addr) {
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    grpc_init();
    server s = {.t_accept = {T_ACCEPT, NULL}, .t_shutdown = {T_SHUTDOWN, NULL}};
    grpc_arg arg = {.type = GRPC_ARG_INTEGER,
                    .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                    .value.integer = 4 * 1024 * 1024};
    grpc_channel_args args = {.num_args = 1, .args = &arg};
    s.srv = grpc_server_create(&args, NULL);
    s.cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s.srv, s.cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(s.srv, addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        fprintf(stderr, "baseline_echo: cannot listen on %s\n", addr);
        grpc_server_destroy(s.srv);
        grpc_completion_queue_destroy(s.cq);
        grpc_shutdown();
        return 1;
    }
    grpc_server_start(s.srv);
    server_arm_accept(&s);
    printf("listening %d\n", port);
    fflush(stdout);

    for (;;) {
        if (g_stop && !s.shutting_down) {
            s.shutting_down = true;
            grpc_server_shutdown_and_notify(s.srv, s.cq, &s.t_shutdown);
            grpc_server_cancel_all_calls(s.srv);
        }
        if (s.shut_down && !s.accept_armed && !s.conns) break;
        grpc_event ev = grpc_completion_queue_next(s.cq, deadline_ms(200), NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            server_event(&s, ev.tag, ev.success != 0);
        else if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
    }
    grpc_server_destroy(s.srv);
    grpc_completion_queue_shutdown(s.cq);
    while (grpc_completion_queue_next(s.cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(s.cq);
    grpc_shutdown();
    return 0;
}

/* ---- envelopes ---------------------------------------------------------------------------- */

/* The encoded fields after message_seq_no: method (2) and payload (5). */
typedef struct envelope_tail {
    uint8_t *bytes;
    size_t len;
} envelope_tail;

static int tail_init(envelope_tail *t, size_t payload_len) {
    size_t mlen = strlen(NHB_METHOD);
    t->bytes = malloc(1 + 10 + mlen + 1 + 10 + payload_len);
    if (!t->bytes) return -1;
    uint8_t *p = t->bytes;
    *p++ = (2 << 3) | 2;
    p += nhb_put_varint(p, mlen);
    memcpy(p, NHB_METHOD, mlen);
    p += mlen;
    if (payload_len) {
        *p++ = (5 << 3) | 2;
        p += nhb_put_varint(p, payload_len);
        for (size_t i = 0; i < payload_len; i++)
            p[i] = (uint8_t)('a' + i % 26);
        p += payload_len;
    }
    t->len = (size_t)(p - t->bytes);
    return 0;
}

/* Encodes the envelope of seq into a new byte buffer. */
static grpc_byte_buffer *envelope_new(const envelope_tail *t, uint64_t seq) {
    uint8_t head[11];
    size_t hlen = 0;
    if (seq) {
        head[0] = (1 << 3) | 0;
        hlen = 1 + nhb_put_varint(head + 1, seq);
    }
    grpc_slice s = grpc_slice_malloc(hlen + t->len);
    uint8_t *p = GRPC_SLICE_START_PTR(s);
    memcpy(p, head, hlen);
    memcpy(p + hlen, t->bytes, t->len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* Checks the hand encoder against protobuf-c (byte for byte). */
static bool envelope_check(const envelope_tail *t, size_t payload_len) {
    uint64_t seq = 300;
    grpc_byte_buffer *bb = envelope_new(t, seq);
    grpc_byte_buffer_reader r;
    grpc_byte_buffer_reader_init(&r, bb);
    grpc_slice got = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    grpc_byte_buffer_destroy(bb);

    Stream__Message msg = STREAM__MESSAGE__INIT;
    msg.message_seq_no = seq;
    msg.method = (char *)NHB_METHOD;
    msg.payload.len = payload_len;
    msg.payload.data = t->bytes + t->len - payload_len;
    size_t n = stream__message__get_packed_size(&msg);
    uint8_t *want = malloc(n ? n : 1);
    bool same = false;
    if (want) {
        stream__message__pack(&msg, want);
        same = n == GRPC_SLICE_LENGTH(got) && memcmp(want, GRPC_SLICE_START_PTR(got), n) == 0;
    }
    free(want);
    grpc_slice_unref(got);
    return same;
}

/* Reads a response: its seq, and whether it is a plain reply of payload_len bytes. */
static bool envelope_parse(const uint8_t *p, size_t len, size_t payload_len, uint64_t *seq) {
    const uint8_t *end = p + len;
    uint64_t got_payload = 0;
    bool status = false;
    *seq = 0;
    while (p < end) {
        uint64_t key, v;
        if (!nhb_get_varint(&p, end, &key)) return false;
        switch (key & 7) {
            case 0:
                if (!nhb_get_varint(&p, end, &v)) return false;
                if ((key >> 3) == 1) *seq = v;
                break;
            case 2:
                if (!nhb_get_varint(&p, end, &v) || v > (uint64_t)(end - p)) return false;
                if ((key >> 3) == 3) status = true;
                if ((key >> 3) == 5) got_payload = v;
                p += v;
                break;
            default:
                return false;
        }
    }
    return !status && got_payload == payload_len;
}

/* ---- client ------------------------------------------------------------------------------- */

typedef struct client {
    nhb_args a;
    grpc_completion_queue *cq;
    grpc_channel *ch;
    grpc_call *call;
    envelope_tail tail;
    nhb_rec rec;
    uint64_t next_seq;
    int64_t *issued; /* send time by seq & mask */
    uint8_t *live;   /* 1 while that seq is in flight */
    size_t mask;
    size_t outstanding; /* messages issued and not answered */
    size_t extra_errors;
    bb_fifo fifo;
    grpc_byte_buffer *send_bb, *recv_bb;
    bool send_busy, recv_armed, closing, close_sent, ended, cancelled;
    int pending;
    grpc_status_code status;
    grpc_slice status_details;
    grpc_metadata_array initial_md, trailing_md;
    tag t_start, t_recv, t_send, t_status, t_close_send;
} client;

static bool client_start(client *c, const grpc_op *ops, size_t n, tag *t) {
    if (grpc_call_start_batch(c->call, ops, n, t, NULL) != GRPC_CALL_OK) {
        fprintf(stderr, "baseline_echo: grpc_call_start_batch failed\n");
        c->extra_errors++;
        return false;
    }
    c->pending++;
    return true;
}

static void client_pump(client *c) {
    if (c->send_busy || c->ended) return;
    grpc_byte_buffer *bb = fifo_pop(&c->fifo);
    if (!bb) return;
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    op.data.send_message.send_message = bb;
    if (!client_start(c, &op, 1, &c->t_send)) {
        grpc_byte_buffer_destroy(bb);
        c->ended = true;
        return;
    }
    c->send_bb = bb;
    c->send_busy = true;
}

static void client_issue(client *c) {
    uint64_t seq = c->next_seq++;
    size_t slot = (size_t)seq & c->mask;
    c->issued[slot] = nhb_now_ns();
    c->live[slot] = 1;
    c->outstanding++;
    if (fifo_push(&c->fifo, envelope_new(&c->tail, seq)) != 0) {
        c->extra_errors++;
        c->ended = true;
        return;
    }
    client_pump(c);
}

static void client_arm_recv(client *c) {
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
    op.data.recv_message.recv_message = &c->recv_bb;
    c->recv_armed = client_start(c, &op, 1, &c->t_recv);
    if (!c->recv_armed) c->ended = true;
}

static void client_maybe_close(client *c) {
    if (c->close_sent || c->ended || !c->closing) return;
    if (c->outstanding || c->send_busy || c->fifo.len) return;
    grpc_op op = {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT};
    c->close_sent = client_start(c, &op, 1, &c->t_close_send);
}

static void client_on_message(client *c, grpc_byte_buffer *bb) {
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) {
        c->extra_errors++;
        return;
    }
    grpc_slice all = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    uint64_t seq;
    bool ok = envelope_parse(GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), c->a.payload, &seq);
    grpc_slice_unref(all);
    size_t slot = (size_t)seq & c->mask;
    if (seq == 0 || seq >= c->next_seq || !c->live[slot]) {
        c->extra_errors++; /* an answer to nothing we sent */
        return;
    }
    c->live[slot] = 0;
    c->outstanding--;
    if (nhb_rec_complete(&c->rec, c->issued[slot], ok))
        client_issue(c);
    else
        c->closing = true;
}

static void client_event(client *c, tag *t, bool ok) {
    switch (t->kind) {
        case T_RECV: {
            c->recv_armed = false;
            grpc_byte_buffer *bb = c->recv_bb;
            c->recv_bb = NULL;
            if (ok && bb) {
                client_on_message(c, bb);
                grpc_byte_buffer_destroy(bb);
                client_arm_recv(c);
            } else {
                c->ended = true; /* the server ended the stream; the status follows */
            }
            break;
        }
        case T_SEND:
            c->send_busy = false;
            grpc_byte_buffer_destroy(c->send_bb);
            c->send_bb = NULL;
            if (ok)
                client_pump(c);
            else
                c->ended = true;
            break;
        case T_CSTATUS:
            c->ended = true;
            break;
        default:
            break;
    }
    c->pending--;
    client_maybe_close(c);
}

static int run_client(const nhb_args *a) {
    signal(SIGPIPE, SIG_IGN);
    grpc_init();
    client c = {.a = *a, .next_seq = 1};
    c.t_start = (tag){T_START, NULL};
    c.t_recv = (tag){T_RECV, NULL};
    c.t_send = (tag){T_SEND, NULL};
    c.t_status = (tag){T_CSTATUS, NULL};
    c.t_close_send = (tag){T_CLOSE_SEND, NULL};
    size_t slots = 1;
    while (slots < 2 * a->inflight)
        slots <<= 1;
    c.mask = slots - 1;
    c.issued = calloc(slots, sizeof *c.issued);
    c.live = calloc(slots, 1);
    if (!c.issued || !c.live || tail_init(&c.tail, a->payload) != 0) {
        fprintf(stderr, "baseline_echo: out of memory\n");
        return 1;
    }
    if (!envelope_check(&c.tail, a->payload)) {
        fprintf(stderr, "baseline_echo: hand-encoded envelope differs from protobuf-c's\n");
        return 1;
    }
    grpc_metadata_array_init(&c.initial_md);
    grpc_metadata_array_init(&c.trailing_md);
    c.status_details = grpc_empty_slice();
    c.cq = grpc_completion_queue_create_for_next(NULL);
    grpc_arg arg = {.type = GRPC_ARG_INTEGER,
                    .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                    .value.integer = 4 * 1024 * 1024};
    grpc_channel_args args = {.num_args = 1, .args = &arg};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c.ch = grpc_channel_create(a->target, creds, &args);
    grpc_channel_credentials_release(creds);
    c.call = grpc_channel_create_call(c.ch, NULL, GRPC_PROPAGATE_DEFAULTS, c.cq,
                                      grpc_slice_from_static_string(NODESTREAM_PATH), NULL,
                                      gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

    grpc_op status = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT};
    status.data.recv_status_on_client.trailing_metadata = &c.trailing_md;
    status.data.recv_status_on_client.status = &c.status;
    status.data.recv_status_on_client.status_details = &c.status_details;
    grpc_op start[2] = {{.op = GRPC_OP_SEND_INITIAL_METADATA},
                        {.op = GRPC_OP_RECV_INITIAL_METADATA}};
    start[1].data.recv_initial_metadata.recv_initial_metadata = &c.initial_md;
    int rc = 0;
    if (!client_start(&c, &status, 1, &c.t_status) || !client_start(&c, start, 2, &c.t_start)) {
        rc = 1;
        goto out;
    }
    client_arm_recv(&c);
    if (nhb_rec_start(&c.rec, a) != 0) {
        fprintf(stderr, "baseline_echo: out of memory\n");
        rc = 1;
        goto out;
    }
    for (size_t i = 0; i < a->inflight; i++)
        client_issue(&c);

    int64_t drain_limit = 0;
    while (c.pending > 0) {
        grpc_event ev = grpc_completion_queue_next(c.cq, deadline_ms(100), NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            client_event(&c, ev.tag, ev.success != 0);
        else if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (!c.closing && nhb_rec_over(&c.rec)) c.closing = true;
        if (c.closing) {
            client_maybe_close(&c);
            if (!drain_limit) drain_limit = nhb_now_ns() + 5000000000LL;
            if (nhb_now_ns() > drain_limit && !c.ended) {
                /* Answers did not come back: give up on them. */
                c.extra_errors += c.outstanding;
                c.outstanding = 0;
                c.ended = true;
                grpc_call_cancel(c.call, NULL);
            }
        }
        if (c.ended && c.pending > 0 && !c.close_sent && !c.cancelled) {
            c.cancelled = true; /* a broken stream: make every batch complete */
            grpc_call_cancel(c.call, NULL);
        }
    }
    if (c.status != GRPC_STATUS_OK) {
        char *d = grpc_slice_to_c_string(c.status_details);
        fprintf(stderr, "baseline_echo: stream ended with status %d: %s\n", (int)c.status, d);
        gpr_free(d);
        c.extra_errors += c.outstanding + 1;
        rc = 1;
    }
    nhb_rec_report(&c.rec, c.extra_errors);
out:
    fifo_free(&c.fifo);
    if (c.call) grpc_call_unref(c.call);
    grpc_slice_unref(c.status_details);
    grpc_metadata_array_destroy(&c.initial_md);
    grpc_metadata_array_destroy(&c.trailing_md);
    grpc_channel_destroy(c.ch);
    grpc_completion_queue_shutdown(c.cq);
    while (grpc_completion_queue_next(c.cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(c.cq);
    grpc_shutdown();
    free(c.tail.bytes);
    free(c.issued);
    free(c.live);
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "server")) {
        if (argc != 3) {
            fprintf(stderr, "usage: %s server HOST:PORT\n", argv[0]);
            return 2;
        }
        return run_server(argv[2]);
    }
    if (argc >= 2 && !strcmp(argv[1], "client")) {
        nhb_args a;
        if (nhb_parse_args(argc, argv, 2, &a) != 0) {
            nhb_usage(argv[0], "client");
            return 2;
        }
        return run_client(&a);
    }
    fprintf(stderr, "usage: %s server HOST:PORT\n", argv[0]);
    nhb_usage(argv[0], "client");
    return 2;
}
