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

/** gRPC's minimal filter stack (GRPC_ARG_MINIMAL_STACK): calls get no message compression,
 * decompression, deadline or message size filter, only what HTTP/2 needs. Measured on
 * Debian's gRPC 1.51 (massif, 400 accepted streams): a call's arena 11.5 -> 10.6 kB.
 * What those filters did is done elsewhere or not needed:
 * - the receive size limit: stream.c checks every message against the loop's maximum and
 *   ends the stream RESOURCE_EXHAUSTED, as the filter did (sends are checked before they are
 *   queued, server/dispatch.c and call/);
 * - compressed messages a peer sends are still read: the byte buffer reader inflates them;
 *   nodehost never compresses what it sends;
 * - Gorums streams carry no deadline (a client's own deadline still ends its call). */
static inline grpc_arg nh_tp_minimal_stack_arg(void) {
    return (grpc_arg){
        .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MINIMAL_STACK, .value.integer = 1};
}

#endif
