/* The security settings of the nodehost configuration file: TLS, who may call the admin
 * methods and each plugin's methods.
 *
 * ```yaml
 * tls:                          # absent: plaintext (loopback and tests)
 *   cert: certs/node1.pem       # this node's certificate chain (PEM), relative to the file
 *   key: certs/node1.key        # its private key (PEM, unencrypted)
 *   ca: certs/ca.pem            # the CA bundle peers and clients are checked against
 *   clients: require            # require (default) | optional | none
 * peers:
 *   - { id: 2, address: ..., identity: "spiffe://example.org/db/2" }  # optional: what node 2's
 *                               # certificate must carry instead of nodehost://node/2
 * admin:
 *   allow: [ "CN=ops", "urn:example:ops" ]   # identities that may call Status and Reload
 *   allow_plaintext_from: [ "10.77.0.0/16" ] # without tls only: addresses that may call them
 * plugins:
 *   - { name: storage, path: storage.so, allow: [ "urn:example:app" ] }
 *                               # optional: the client identities that may call this plugin
 * ```
 *
 * Who may call the admin methods (nodehost.Admin.Status, nodehost.Admin.Reload): this node
 * itself; with tls, a caller whose certificate proves a member node (this node or a known peer)
 * or carries one of admin.allow; without tls, a loopback connection or one from
 * admin.allow_plaintext_from. Everyone else: PERMISSION_DENIED.
 *
 * A plugin with `allow` serves its methods to known peers and this node, and to clients whose
 * certificate carries one of the listed identities; other clients (also every client without a
 * certificate) get PERMISSION_DENIED. */
#ifndef NH_HOST_SECURITY_CONFIG_H
#define NH_HOST_SECURITY_CONFIG_H

#include "config/error_list.h"

#include <nodehost/conf.h>
#include <nodehost/server.h>
#include <nodehost/tls.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nh_host_config;

/** The `tls` section. */
typedef struct nh_host_tls {
    bool on;               /**< the section is present */
    char *cert, *key, *ca; /**< absolute paths (the file's directory joined with relative ones) */
    nh_tls_clients clients;
    const nh_conf_node *cert_node, *key_node, *ca_node; /**< positions for later messages */
} nh_host_tls;

/** A list of identities (admin.allow, plugins[i].allow). */
typedef struct nh_host_allow {
    bool set;     /**< the list is present (an empty list allows no client) */
    char **names; /**< identities as written */
    size_t count;
} nh_host_allow;

/** An address prefix of admin.allow_plaintext_from. */
typedef struct nh_host_cidr {
    int family; /**< AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
} nh_host_cidr;

/* The readers record every error they find in errs and go on where that is safe (see
 * host_config.h); they return 0, or -1 only when memory ran out (recorded too). */

/** Reads `tls` (keys, required files, clients) into c->tls. */
int nh_host_read_tls(struct nh_host_config *c, const nh_conf_node *root, nh_error_list *errs);

/** Reads `admin` into c->admin_allow and c->admin_nets (after `tls`). */
int nh_host_read_admin(struct nh_host_config *c, const nh_conf_node *root, nh_error_list *errs);

/** Reads a list of identities at map[key] (absent: out->set false) into out, which gets the
 * good entries also when others are wrong; free with nh_host_allow_free(). */
int nh_host_read_allow(const nh_conf_node *map, const char *key, nh_host_allow *out,
                       nh_error_list *errs);

/** Frees the names of a list of identities and zeroes it. */
void nh_host_allow_free(nh_host_allow *a);

/** Frees what the readers above allocated in c. */
void nh_host_security_free(struct nh_host_config *c);

/**
 * Loads the TLS files of c (which has tls.on) and checks them as this node's own: readable,
 * PEM, the key matching, valid now, signed by the CA and proving this node's identity (its
 * peers[] identity, default nodehost://node/<id>). With target NULL, *out receives new
 * credentials; otherwise target is updated in place (rotation; unchanged on failure). Errors
 * are `FILE:LINE:COL: tls.cert: ...` at the setting at fault. Returns 0 or -1.
 */
int nh_host_tls_load(const struct nh_host_config *c, nh_tls *target, nh_tls **out, nh_error *err);

/** Whether a call's caller may use the admin methods (see the file comment). On false, why
 * names the caller for the PERMISSION_DENIED message. */
bool nh_host_admin_allowed(const struct nh_host_config *c, const nh_server_ctx *ctx, char *why,
                           size_t why_size);

/** Whether a caller may call a plugin with this allow list (see the file comment). */
bool nh_host_plugin_allowed(const nh_host_allow *allow, const nh_server_ctx *ctx);

/** True when a "host:port" listen address is a loopback one (127.0.0.0/8, ::1, localhost). */
bool nh_host_listen_is_loopback(const char *listen);

#endif
