/* Private: TLS credentials (nh_tls, tls.c) and identities proven by certificates (identity.c).
 * OpenSSL only; the gRPC side is transport/tls_creds.c. */
#ifndef NH_SECURITY_TLS_IMPL_H
#define NH_SECURITY_TLS_IMPL_H

#include <nodehost/tls.h>

#include <openssl/x509.h>

#include <stdbool.h>

/* One immutable set of credentials: what nh_tls_new()/nh_tls_update() loaded. Reference
 * counted; handshakes and verifications hold one while they use it. */
typedef struct nh_tls_snap {
    int refs;       /* atomic */
    uint64_t gen;   /* nh_tls generation it was loaded as */
    char *cert_pem; /* NULL without a certificate */
    char *key_pem;
    char *ca_pem;
    X509_STORE *store; /* the CA bundle */
    char *identity;    /* this side's own identity ("" without a certificate) */
} nh_tls_snap;

/* A proven identity: the names a verified certificate carries. Immutable, reference counted. */
typedef struct nh_identity {
    int refs;         /* atomic */
    uint32_t node_id; /* from `nodehost://node/N`; 0 when the certificate proves no node */
    char *name;       /* the identity (see nodehost/tls.h) */
    char **names;     /* every matchable name: URI SANs, DNS SANs, "CN=<cn>" */
    size_t name_count;
} nh_identity;

/** The current credentials (a new reference). */
nh_tls_snap *nh_tls_snapshot(nh_tls *tls);
void nh_tls_snap_unref(nh_tls_snap *s);

/** The server setting fixed at nh_tls_new(). */
nh_tls_clients nh_tls_client_mode(const nh_tls *tls);

/**
 * Verifies a peer's certificate (PEM leaf, optional PEM chain of intermediates; lengths may
 * be 0 for NUL-terminated text) against the current CA: chain, dates, and the TLS purpose
 * (peer_is_server: the peer is a server we dialed). Returns the identity (new reference), or
 * NULL with why set ("certificate has expired (notAfter ...)", "not signed by the cluster CA
 * (unable to get local issuer certificate)", ...).
 */
nh_identity *nh_tls_verify_peer(nh_tls *tls, const char *leaf_pem, size_t leaf_len,
                                const char *chain_pem, size_t chain_len, bool peer_is_server,
                                char *why, size_t why_size);

/** The identity a certificate carries, without verification (NULL: not a certificate). */
nh_identity *nh_identity_from_x509(X509 *cert);

nh_identity *nh_identity_ref(nh_identity *id);
void nh_identity_unref(nh_identity *id);

/** True when id carries `name` (one of its URI/DNS SANs or "CN=<cn>"). NULL id: false. */
bool nh_identity_has(const nh_identity *id, const char *name);

/** Parses `nodehost://node/N` (N decimal, 1..2^32-1, no sign or leading zeros); 0 if not. */
uint32_t nh_identity_parse_node_uri(const char *uri);

/** A certificate time as OpenSSL prints it ("Jan  2 00:00:00 2020 GMT"); "" on failure. */
void nh_tls_time_text(const ASN1_TIME *t, char *buf, size_t size);

/** An OpenSSL error queue's newest reason ("" when empty); clears the queue. */
const char *nh_tls_ssl_reason(char *buf, size_t size);

#endif
