/* The client side of the transport: a gRPC channel to one address, on which NodeStreams are
 * opened. Owner thread only. */
#ifndef NH_TRANSPORT_CHANNEL_H
#define NH_TRANSPORT_CHANNEL_H

#include "transport/stream.h"

typedef struct nh_tp_channel nh_tp_channel;

/** Keepalive defaults (used for 0): a ping after this long without one, and the time its
 * acknowledgement may take before the connection is declared dead and every stream on it
 * fails. A dead or stalled peer is noticed within about time + timeout. */
#define NH_KEEPALIVE_TIME_MS_DEFAULT    1000u
#define NH_KEEPALIVE_TIMEOUT_MS_DEFAULT 2000u
/** Smallest keepalive time and timeout (smaller values are raised to it). Servers accept
 * client pings down to half of it, so any peer's keepalive is within their ping policy. */
#define NH_KEEPALIVE_MIN_MS 100u

/** Applies the keepalive defaults (0) and the minimum to *time_ms and *timeout_ms. */
void nh_tp_keepalive_resolve(uint32_t *time_ms, uint32_t *timeout_ms);

/** Creates a channel to addr ("host:port"); it connects lazily. backoff_*_ms configure gRPC's
 * own reconnect backoff so it never waits longer than ours. keepalive_*_ms: HTTP/2 keepalive
 * pings on the connection (0: the defaults above), also while no call is active and without
 * data in between. tls (a reference is taken; NULL: plaintext): connect with TLS, presenting
 * tls's certificate when it has one; the server's certificate must verify against tls's CA
 * and, when expect is not NULL, carry that identity (else the connect fails, UNAVAILABLE, with
 * the reason). NULL with err set on failure. */
nh_tp_channel *nh_tp_channel_new(nh_tp_loop *loop, const char *addr, uint32_t backoff_base_ms,
                                 uint32_t backoff_max_ms, uint32_t keepalive_time_ms,
                                 uint32_t keepalive_timeout_ms, nh_tls *tls, const char *expect,
                                 nh_error *err);

/** Resets gRPC's connect backoff of the channel: a connection attempt waiting for its backoff
 * is made now, and the next stream opened does not fail fast on an old connect failure. */
void nh_tp_channel_reset_backoff(nh_tp_channel *ch);

/** Opens a NodeStream with the given headers (keys lower-case). The stream starts at once; it
 * fails with on_closed if the server cannot be reached. NULL when gRPC refused to start it. */
nh_tp_stream *nh_tp_channel_open(nh_tp_channel *ch, const nh_metadata *md, size_t n,
                                 const nh_tp_stream_events *ev, void *user);

/** Destroys the channel. Streams opened on it keep working until they close. */
void nh_tp_channel_free(nh_tp_channel *ch);

#endif
