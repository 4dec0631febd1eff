/* Private to the transport: a stream whose gRPC call reports to a transport loop while its user
 * lives on the owner loop (docs/architecture.md, "More cores"). The user holds the front, an
 * nh_tp_stream with relay set; every nh_tp_stream_* call on it acts on the back (a plain
 * nh_tp_stream) under the relay's mutex, which the back's completions also take; the back's
 * events come to the owner loop as posts, in order. */
#ifndef NH_TRANSPORT_RELAY_H
#define NH_TRANSPORT_RELAY_H

#include "transport/stream_impl.h"

/** Wraps back (a stream whose call reports to a transport loop, not started yet) for the owner
 * loop home and returns the front. start(back, arg) runs at once, under the relay's mutex: it
 * starts the back's first batches (on failure it leaves the back without operations and
 * returns false; the front then reports on_closed INTERNAL). free_arg(arg), when not NULL,
 * runs afterwards. NULL when out of memory (back is then still the caller's, and start did not
 * run). Owner thread of home. */
nh_tp_stream *nh_tp_relay_new(nh_tp_loop *home, nh_tp_stream *back,
                              bool (*start)(nh_tp_stream *back, void *arg), void *arg,
                              void (*free_arg)(void *arg));

/** Has back's slow-reader timer synced on its transport loop (nh_tp_stream_sync_slow_timer),
 * for a change of its backlog made from another thread. back's relay mutex is held. */
void nh_tp_relay_sync_timer(nh_tp_stream *back);

/** True while back read as many messages ahead of its front as it may: its receive waits for
 * the front to take one. back's relay mutex is held. */
bool nh_tp_relay_recv_held(const nh_tp_stream *back);

/** The back of r was freed: drops its reference (stream_free). */
void nh_tp_relay_back_freed(struct nh_tp_relay *r);

/* The nh_tp_stream_* functions on a front (s->relay != NULL). Owner thread of home. */
int nh_tp_relay_send(nh_tp_stream *front, nh_bytes *msg, void *tag);
size_t nh_tp_relay_unqueue(nh_tp_stream *front, void *tag);
void nh_tp_relay_set_send_limit(nh_tp_stream *front, size_t max_bytes, uint32_t timeout_ms);
void nh_tp_relay_pause_recv(nh_tp_stream *front, bool paused);
void nh_tp_relay_finish(nh_tp_stream *front, nh_code code, const char *details);
void nh_tp_relay_cancel(nh_tp_stream *front, nh_code code, const char *details);

#endif
