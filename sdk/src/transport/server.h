/* The gRPC server side of the transport: accepts `/stream.Gorums/NodeStream` streams and
 * answers UNIMPLEMENTED for any other path. Owner thread only. */
#ifndef NH_TRANSPORT_SERVER_H
#define NH_TRANSPORT_SERVER_H

#include "transport/stream.h"

typedef struct nh_tp_server nh_tp_server;

/** Called for each accepted stream with its request headers (views valid during the call).
 * It must call nh_tp_stream_set_events() before returning, or cancel the stream. */
typedef void (*nh_tp_accept_fn)(void *user, nh_tp_stream *s, const nh_md_view *md, size_t n);

/** The gRPC path of the only service. */
#define NH_NODESTREAM_PATH "/stream.Gorums/NodeStream"

/** Binds addr and starts serving. *port receives the bound port. keepalive_*_ms: this server's
 * pings on accepted connections (0: the defaults of transport/channel.h). tls (a reference is
 * taken; NULL: plaintext): TLS with tls's certificate; a stream whose client certificate fails
 * verification, or that has none while tls requires one, is answered UNAUTHENTICATED with the
 * reason and never reaches fn; an accepted stream's verified identity is
 * nh_tp_stream_identity(). NULL with err naming the address on failure. */
nh_tp_server *nh_tp_server_new(nh_tp_loop *loop, const char *addr, int *port, nh_tp_accept_fn fn,
                               void *user, uint32_t keepalive_time_ms,
                               uint32_t keepalive_timeout_ms, nh_tls *tls, nh_error *err);

/** Stops accepting, cancels every live stream (each reports on_closed), and frees the server
 * once gRPC confirmed the shutdown; then calls done(arg) if not NULL. */
void nh_tp_server_shutdown(nh_tp_server *srv, void (*done)(void *), void *arg);

#endif
