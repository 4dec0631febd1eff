/* The client side of the transport: a gRPC channel to one address, on which NodeStreams are
 * opened. Owner thread only. */
#ifndef NH_TRANSPORT_CHANNEL_H
#define NH_TRANSPORT_CHANNEL_H

#include "transport/stream.h"

typedef struct nh_tp_channel nh_tp_channel;

/** Creates a channel to addr ("host:port"); it connects lazily. backoff_*_ms configure gRPC's
 * own reconnect backoff so it never waits longer than ours. NULL with err set on failure. */
nh_tp_channel *nh_tp_channel_new(nh_tp_loop *loop, const char *addr, uint32_t backoff_base_ms,
                                 uint32_t backoff_max_ms, nh_error *err);

/** Opens a NodeStream with the given headers (keys lower-case). The stream starts at once; it
 * fails with on_closed if the server cannot be reached. NULL when gRPC refused to start it. */
nh_tp_stream *nh_tp_channel_open(nh_tp_channel *ch, const nh_metadata *md, size_t n,
                                 const nh_tp_stream_events *ev, void *user);

/** Destroys the channel. Streams opened on it keep working until they close. */
void nh_tp_channel_free(nh_tp_channel *ch);

#endif
