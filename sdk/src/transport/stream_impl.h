/* Private to the transport: the stream object shared by server.c, channel.c and stream.c. */
#ifndef NH_TRANSPORT_STREAM_IMPL_H
#define NH_TRANSPORT_STREAM_IMPL_H

#include "security/tls_impl.h"
#include "transport/stream.h"
#include "util/send_queue.h"

#include <grpc/grpc.h>

struct nh_tp_relay;

struct nh_tp_stream {
    nh_tp_loop *loop;
    struct nh_tp_relay *relay;   /* a relayed stream's front (transport/relay.h): only loop, ev,
                                    user, peer, identity, client, closed, ready and finishing
                                    are used here; the call runs on the back */
    struct nh_tp_relay *back_of; /* a relayed stream's back: its relay (whose mutex guards it) */
    grpc_call *call;
    bool client;
    grpc_channel *channel; /* client streams: the channel they run on */
    const nh_tp_stream_events *ev;
    void *user;
    char *peer;
    nh_identity *identity; /* verified certificate identity of the peer (NULL: none) */
    struct nh_tls *tls;    /* client streams on a TLS channel (a reference) */
    int ops;               /* batches started and not completed */
    bool closed;           /* on_closed delivered; no more events */
    bool ready;            /* on_ready delivered (client) */

    /* receive */
    nh_tp_tag recv_tag;
    grpc_byte_buffer *recv_bb;
    bool recv_armed, recv_paused, recv_done;

    /* send */
    nh_tp_tag send_tag;
    grpc_byte_buffer *send_bb;
    void *send_user_tag;
    bool send_busy;
    size_t send_inflight_len; /* bytes of the message in flight (0 when none) */
    nh_send_queue queue;

    /* slow reader bound (nh_tp_stream_set_send_limit); 0: unbounded */
    size_t send_limit;
    uint32_t slow_timeout_ms;
    bool backlogged;        /* over the limit, not yet drained below half of it */
    uv_timer_t *slow_timer; /* runs while backlogged; allocated on first use */

    /* end of stream */
    nh_tp_tag start_tag;       /* initial metadata batch */
    nh_tp_tag close_tag;       /* server: RECV_CLOSE_ON_SERVER; client: RECV_STATUS_ON_CLIENT */
    bool close_armed;          /* the close_tag batch is started (nh_tp_stream_watch_end) */
    nh_tp_tag status_tag;      /* server: SEND_STATUS_FROM_SERVER */
    int cancelled;             /* server: RECV_CLOSE_ON_SERVER result */
    grpc_status_code status;   /* client: final status */
    grpc_slice status_details; /* client */
    grpc_metadata_array initial_md;  /* client: received headers */
    grpc_metadata_array trailing_md; /* client */
    bool finishing;                  /* server: send status once the queue is empty */
    bool status_started;
    nh_code finish_code;
    char *finish_details;
};

/* Allocates a stream around call (takes ownership of the call reference). */
nh_tp_stream *nh_tp_stream_new(nh_tp_loop *loop, grpc_call *call, bool client);

/* Starts a batch on the stream's call, counting it; logs and returns false on failure. */
bool nh_tp_stream_start(nh_tp_stream *s, const grpc_op *ops, size_t n, nh_tp_tag *tag);

/* Queues msg (with tag, see nh_tp_stream_send) without starting a send: a relay's front hands
 * the start to the transport loop (nh_tp_stream_send_queued there). Returns -1 (msg released)
 * when the stream is closed or finishing, or out of memory. */
int nh_tp_stream_enqueue(nh_tp_stream *s, nh_bytes *msg, void *tag);

/* Starts sending the queue if no send is in flight (then each completion sends the next). */
void nh_tp_stream_send_queued(nh_tp_stream *s);

/* Arms the receive if allowed; when it cannot be armed, watches for the end instead. */
void nh_tp_stream_arm_recv(nh_tp_stream *s);

/* Starts the batch that reports the stream's end (close_tag: RECV_CLOSE_ON_SERVER or
 * RECV_STATUS_ON_CLIENT), once. Client streams start it when they open. Server streams start it
 * only when no receive is armed to notice the end: when the receive ended, is paused or could
 * not be armed, and when the stream finishes or is cancelled. An idle accepted stream therefore
 * keeps one operation pending on the completion queue, not two: Debian's libgrpc checks every
 * completion against the queue's list of pending operations (cq_check_tag, a linear scan), so
 * each one pending costs every completion of the loop, and a node serving 10,000 client peers
 * holds 10,000 accepted streams. */
void nh_tp_stream_watch_end(nh_tp_stream *s);

/* Client streams: the connection is proven; records the server's identity (TLS) and delivers
 * on_ready once. */
void nh_tp_stream_report_ready(nh_tp_stream *s);

/* Delivers on_closed once (drops queued sends first). */
void nh_tp_stream_report_closed(nh_tp_stream *s, nh_code code, const char *details);

/* Called at the end of every completion: frees the stream once closed and idle. */
void nh_tp_stream_op_done(nh_tp_stream *s);

/* Arms or stops the slow-reader timer after the backlog changed. Owner thread of s->loop. */
void nh_tp_stream_sync_slow_timer(nh_tp_stream *s);

/* Frees a stream that reported its end and has no operation left (one never started). */
void nh_tp_stream_free_closed(nh_tp_stream *s);

#endif
