/* Private to the transport files (the only ones that include gRPC headers): the channel
 * arguments that client channels and servers share (keepalive, filter stack). */
#ifndef NH_TRANSPORT_CHANNEL_ARGS_H
#define NH_TRANSPORT_CHANNEL_ARGS_H

#include <grpc/grpc.h>

#include <stdint.h>

/** The number of arguments nh_tp_keepalive_args() writes. */
#define NH_TP_KEEPALIVE_ARGS 4

/** Writes the keepalive arguments (resolved values, see nh_tp_keepalive_resolve()) into out:
 * a ping every time_ms, also while no call or data flows (gRPC would stop after 2 pings
 * without data), a connection whose ping is not acknowledged within timeout_ms is closed. */
static inline void nh_tp_keepalive_args(grpc_arg *out, uint32_t time_ms, uint32_t timeout_ms) {
    out[0] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                        .key = (char *)GRPC_ARG_KEEPALIVE_TIME_MS,
                        .value.integer = (int)time_ms};
    out[1] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                        .key = (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                        .value.integer = (int)timeout_ms};
    out[2] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                        .key = (char *)GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                        .value.integer = 1};
    out[3] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                        .key = (char *)GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA,
                        .value.integer = 0};
}

/** gRPC's minimal filter stack (GRPC_ARG_MINIMAL_STACK), for servers only (with
 * GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION = 1 beside it): accepted calls get no message
 * compression, deadline or message size filter. Each accepted call's arena is what a server
 * pays per client peer (gRPC 1.51: heap per client peer 13.2 -> 12.5 kB, of which the arena is
 * ~10.9 kB). What those filters did:
 * - the receive size limit: stream.c checks every message against the loop's maximum and ends
 *   the stream RESOURCE_EXHAUSTED, as the filter did (GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH has
 *   no effect without it); sends are checked before they are queued (server/dispatch.c,
 *   call/);
 * - compression: the decompression filter is asked for explicitly (1.51's byte buffer reader
 *   does not inflate); nodehost never compresses what it sends;
 * - deadlines: a peer's grpc-timeout is not enforced on an accepted stream (Gorums streams
 *   carry none; the peer's own deadline still ends its call on its side).
 * Channels keep the full stack: there the minimal stack would also turn off gRPC's
 * transparent retries of a stream refused during a GOAWAY, and they hold few calls. */
static inline grpc_arg nh_tp_minimal_stack_arg(void) {
    return (grpc_arg){
        .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MINIMAL_STACK, .value.integer = 1};
}

#endif
