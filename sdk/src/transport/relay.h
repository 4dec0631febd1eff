/* Private to the transport: a stream whose gRPC call runs on a transport loop while its user
 * lives on the owner loop (docs/architecture.md, "More cores"). The user holds the front, an
 * nh_tp_stream with relay set; every nh_tp_stream_* call on it becomes a command posted to the
 * transport loop, where the back (a plain nh_tp_stream) carries it out; the back's events come
 * back as posts to the owner loop, in order. */
#ifndef NH_TRANSPORT_RELAY_H
#define NH_TRANSPORT_RELAY_H

#include "transport/stream_impl.h"

/** Wraps back (a stream on transport loop io, created around its call and not started yet)
 * for the owner loop home and returns the front. start(back, arg) then runs on io's thread: it
 * starts the back's first batches (on failure it leaves the back without operations and
 * returns false; the front then reports on_closed INTERNAL). free_arg(arg) runs afterwards on
 * io's thread (or on home's if the post failed); it may be NULL. NULL when out of memory (back
 * is then still the caller's). Owner thread of home. */
nh_tp_stream *nh_tp_relay_new(nh_tp_loop *home, nh_tp_stream *back,
                              bool (*start)(nh_tp_stream *back, void *arg), void *arg,
                              void (*free_arg)(void *arg));

/* The nh_tp_stream_* functions on a front (s->relay != NULL). Owner thread of home. */
int nh_tp_relay_send(nh_tp_stream *front, nh_bytes *msg, void *tag);
size_t nh_tp_relay_unqueue(nh_tp_stream *front, void *tag);
void nh_tp_relay_set_send_limit(nh_tp_stream *front, size_t max_bytes, uint32_t timeout_ms);
void nh_tp_relay_pause_recv(nh_tp_stream *front, bool paused);
void nh_tp_relay_finish(nh_tp_stream *front, nh_code code, const char *details);
void nh_tp_relay_cancel(nh_tp_stream *front, nh_code code, const char *details);

#endif
