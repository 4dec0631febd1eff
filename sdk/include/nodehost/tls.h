/* nodehost: TLS credentials and proven identities.
 *
 * One nh_tls object holds a node's (or a client program's) certificate chain, private key and
 * the CA bundle peers are checked against. A server (nh_server_opts.tls) and the nodes a
 * runtime dials (nh_node_opts.tls, nh_config_opts.tls) use it for every new connection;
 * nh_tls_update() replaces its contents at once for the connections made from then on, while
 * established streams keep running (certificate rotation).
 *
 * Identity. A certificate proves node ID N when it carries the URI subject alternative name
 * `nodehost://node/N` (nh_tls_node_uri()). Other certificates (client programs) are known by
 * their name: their first URI SAN, else their first DNS SAN, else `CN=<common name>`. A
 * configured identity string matches a certificate when it equals one of the certificate's URI
 * or DNS SANs or its `CN=<common name>`.
 *
 * Checks. Certificates are verified by nodehost itself with OpenSSL against the CA bundle
 * (chain, validity dates, key usage for TLS client/server when the certificate restricts it),
 * so both sides of a refused connection get the reason: a server answers a stream whose client
 * certificate fails with UNAUTHENTICATED naming the cause, and a client's dial fails with
 * UNAVAILABLE naming it.
 */
#ifndef NODEHOST_TLS_H
#define NODEHOST_TLS_H

#include <nodehost/status.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Whether a server asks clients for a certificate (YAML `tls.clients`). */
typedef enum nh_tls_clients {
    NH_TLS_CLIENTS_REQUIRE = 0,  /**< every stream must present a valid certificate (default) */
    NH_TLS_CLIENTS_OPTIONAL = 1, /**< a certificate is asked for; a stream without one is an
                                      anonymous client (it cannot claim a known peer's ID) */
    NH_TLS_CLIENTS_NONE = 2,     /**< no certificate is asked for: every client is anonymous,
                                      so no known peer can prove its ID */
} nh_tls_clients;

/** What nh_tls_new() and nh_tls_update() read. Zero-initialise and set what you need. */
typedef struct nh_tls_opts {
    const char *cert_file;  /**< this side's certificate chain (PEM), leaf first; NULL: none
                                 (a client program without a certificate) */
    const char *key_file;   /**< the private key of cert_file (PEM); required with cert_file */
    const char *ca_file;    /**< the CA bundle (PEM) the other side is checked against;
                                 required */
    nh_tls_clients clients; /**< servers: whether clients must present a certificate */
    /** When not 0, the certificate must prove this node ID (carry `nodehost://node/<id>`, or
     * `expect_identity` when set). */
    uint32_t node_id;
    /** With node_id: the identity the certificate must carry instead of the node URI. */
    const char *expect_identity;
} nh_tls_opts;

/** Which setting a failed nh_tls_new() / nh_tls_update() is about (for error positions). */
typedef enum nh_tls_field {
    NH_TLS_FIELD_NONE = 0,
    NH_TLS_FIELD_CERT = 1, /**< cert_file: unreadable, not PEM, expired, not yet valid, not
                                signed by the CA, without the expected identity */
    NH_TLS_FIELD_KEY = 2,  /**< key_file: unreadable, not a key, or not the certificate's key */
    NH_TLS_FIELD_CA = 3,   /**< ca_file: unreadable or without a certificate */
} nh_tls_field;

/** TLS credentials shared by servers and channels; reference counted, any thread. */
typedef struct nh_tls nh_tls;

/**
 * Loads and checks the files of opts: each file readable and PEM; the key matches the
 * certificate; with opts->node_id (a node's own certificate) also: valid now, signed by the CA,
 * and proving that node's identity. (A client program's certificate is checked by the servers
 * it dials, which may trust another authority than the CA it checks them with.)
 * Returns 0 with *out set (one reference), or -1 with err (INVALID_ARGUMENT, the file and the
 * cause) and, when which is not NULL, *which naming the setting at fault.
 */
NH_API int nh_tls_new(const nh_tls_opts *opts, nh_tls **out, nh_tls_field *which, nh_error *err);

/**
 * Replaces the credentials with those of opts (same checks as nh_tls_new()): handshakes from
 * now on use them; established connections are not touched. On failure nothing changes.
 * `clients` is not changed by an update (it is fixed when a server starts). Returns 0 or -1.
 */
NH_API int nh_tls_update(nh_tls *tls, const nh_tls_opts *opts, nh_tls_field *which, nh_error *err);

/** Takes one more reference. */
NH_API nh_tls *nh_tls_ref(nh_tls *tls);

/** Drops a reference (servers and channels using it keep their own). Accepts NULL. */
NH_API void nh_tls_unref(nh_tls *tls);

/** How many times the credentials were replaced (0 after nh_tls_new()). */
NH_API uint64_t nh_tls_generation(const nh_tls *tls);

/** Copies the identity of this side's own certificate (see the file comment; "" without
 * one) into buf (truncated to size - 1 characters); returns its full length. */
NH_API size_t nh_tls_own_identity(nh_tls *tls, char *buf, size_t size);

/** Writes `nodehost://node/<id>` into buf (size >= 32 holds every ID); returns buf. */
NH_API char *nh_tls_node_uri(uint32_t id, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
