/* The gRPC side of TLS: server credentials whose certificate follows nh_tls_update() (a
 * per-handshake fetch), channel credentials that check the server's certificate with nodehost's
 * own verification and expected identity, and the identity of a call's peer. */
#ifndef NH_TRANSPORT_TLS_CREDS_H
#define NH_TRANSPORT_TLS_CREDS_H

#include "security/tls_impl.h"

#include <grpc/grpc_security.h>

/** The server-side state of a credentials fetch (freed after the server is destroyed). */
typedef struct nh_tp_tls_fetch nh_tp_tls_fetch;

/** Server credentials over tls (which must hold a certificate): each handshake uses the newest
 * certificate, key and CA. Client certificates are requested (unless tls's clients is NONE)
 * but verified by the caller at accept (nh_tp_call_identity()), so a refusal can say why.
 * *state must be freed with nh_tp_tls_fetch_free() once the server is destroyed. NULL when out
 * of memory. */
grpc_server_credentials *nh_tp_tls_server_creds(nh_tls *tls, nh_tp_tls_fetch **state);

/** Frees a fetch state (and its reference to the nh_tls). */
void nh_tp_tls_fetch_free(nh_tp_tls_fetch *state);

/** Channel credentials over the current certificate of tls (presented when it has one): the
 * server's certificate must verify against the CA and, when expect is not NULL, carry that
 * identity. NULL when out of memory. */
grpc_channel_credentials *nh_tp_tls_channel_creds(nh_tls *tls, const char *expect);

/**
 * The verified identity of a call's peer. *presented says whether the peer showed a
 * certificate at all. NULL without one (or on a plaintext call), or when it fails verification
 * (why says why). peer_is_server: the call is one we dialed.
 */
nh_identity *nh_tp_call_identity(nh_tls *tls, grpc_call *call, bool peer_is_server, bool *presented,
                                 char *why, size_t why_size);

#endif
