/* Private to the transport files (the only ones that include gRPC headers): the channel
 * arguments that client channels and servers share (keepalive). */
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

#endif
