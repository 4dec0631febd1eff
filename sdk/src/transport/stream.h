/* One Gorums NodeStream: a gRPC bidirectional call, accepted by a server or opened on a
 * channel. The transport keeps one receive always armed (unless paused) and one send in flight
 * with a FIFO behind it. Owner thread only. With transport loops (nh_tp_loop_set_io()), the
 * stream a user holds may be a relayed stream's front (transport/relay.h): same functions, same
 * events in the same order, while its gRPC call reports to a transport loop. */
#ifndef NH_TRANSPORT_STREAM_H
#define NH_TRANSPORT_STREAM_H

#include "transport/loop.h"
#include "util/bytes.h"
#include "wire/metadata.h"

#include <nodehost/status.h>
#include <nodehost/tls.h>

#include <stdbool.h>
#include <stddef.h>

typedef struct nh_tp_stream nh_tp_stream;

/** What a stream tells its user. All run on the owner thread. */
typedef struct nh_tp_stream_events {
    /** A message arrived (data valid during the call only). */
    void (*on_message)(void *user, const uint8_t *data, size_t len);
    /** The peer half-closed: no more messages will arrive (the stream can still send). */
    void (*on_recv_end)(void *user);
    /** A send with a non-NULL tag completed (ok: handed to the transport). */
    void (*on_sent)(void *user, void *tag, bool ok);
    /** Client streams: the server answered (headers, a message, or a completed send), so the
     * connection is proven. Called once. */
    void (*on_ready)(void *user);
    /** The queued send bytes went over the limit (over true), or drained below half of it
     * (false) after having gone over (nh_tp_stream_set_send_limit). Optional. */
    void (*on_backlog)(void *user, bool over);
    /** The stream ended with a status. The last event: afterwards the stream pointer is invalid
     * and every queued send was dropped (on_sent(tag, false) was called for tagged ones). */
    void (*on_closed)(void *user, nh_code code, const char *details);
} nh_tp_stream_events;

/** Sets the receiver of a stream's events (server side: inside the accept callback). */
void nh_tp_stream_set_events(nh_tp_stream *s, const nh_tp_stream_events *ev, void *user);

/** Queues msg (the stream takes over one reference). tag, when not NULL, comes back in
 * on_sent. Returns 0, or -1 when the stream is closed or closing (the reference is dropped
 * and on_sent is not called). */
int nh_tp_stream_send(nh_tp_stream *s, nh_bytes *msg, void *tag);

/** Removes not-yet-started sends carrying tag; returns how many (no on_sent for them). */
size_t nh_tp_stream_unqueue(nh_tp_stream *s, void *tag);

/** Bounds the bytes waiting to be sent (queued plus the one in flight): past max_bytes the
 * stream reports on_backlog(true), below max_bytes / 2 on_backlog(false). When it stays over
 * the bound for timeout_ms, the stream is cancelled with RESOURCE_EXHAUSTED "the peer does not
 * read its replies". max_bytes 0 removes the bound. */
void nh_tp_stream_set_send_limit(nh_tp_stream *s, size_t max_bytes, uint32_t timeout_ms);

/** Bytes waiting to be sent: the queued messages plus the one in flight (0 on a relayed
 * stream's front: they are counted on its back, which applies the send limit itself). */
size_t nh_tp_stream_queued_bytes(const nh_tp_stream *s);

/** Stops (true) or resumes (false) reading: backpressure through HTTP/2 flow control. */
void nh_tp_stream_pause_recv(nh_tp_stream *s, bool paused);

/** Server streams: ends the stream with a status once the queued sends went out. Client
 * streams: ends it at once (cancel). on_closed follows. */
void nh_tp_stream_finish(nh_tp_stream *s, nh_code code, const char *details);

/** Ends the stream at once, dropping queued sends. on_closed follows. */
void nh_tp_stream_cancel(nh_tp_stream *s, nh_code code, const char *details);

/** The peer's address as gRPC reports it ("ipv4:127.0.0.1:1234"); "" when unknown. */
const char *nh_tp_stream_peer(const nh_tp_stream *s);

struct nh_identity;

/** The peer's verified certificate identity (security/tls_impl.h): server streams from the
 * accept on, client streams once ready; NULL on plaintext or without a certificate. Borrowed:
 * valid while the stream is. */
const struct nh_identity *nh_tp_stream_identity(const nh_tp_stream *s);

/** Messages queued (not yet handed to gRPC), the one in flight excluded (0 on a relayed
 * stream's front). */
size_t nh_tp_stream_queued(const nh_tp_stream *s);

#endif
