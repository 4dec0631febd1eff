/* Identities proven by certificates: the names a certificate carries (URI and DNS subject
 * alternative names, the common name), the node ID of a `nodehost://node/N` URI, and the
 * verification of a peer's certificate against the CA bundle. */
#include "security/tls_impl.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODE_URI_PREFIX "nodehost://node/"

uint32_t nh_identity_parse_node_uri(const char *uri) {
    size_t pl = sizeof NODE_URI_PREFIX - 1;
    if (!uri || strncmp(uri, NODE_URI_PREFIX, pl) != 0) return 0;
    const char *p = uri + pl;
    if (*p < '1' || *p > '9') return 0; /* no sign, no leading zero, not empty */
    uint64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX) return 0;
    }
    return (uint32_t)v;
}

char *nh_tls_node_uri(uint32_t id, char *buf, size_t size) {
    if (buf && size) snprintf(buf, size, NODE_URI_PREFIX "%u", id);
    return buf;
}

nh_identity *nh_identity_ref(nh_identity *id) {
    if (id) __atomic_add_fetch(&id->refs, 1, __ATOMIC_RELAXED);
    return id;
}

void nh_identity_unref(nh_identity *id) {
    if (!id || __atomic_sub_fetch(&id->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    for (size_t i = 0; i < id->name_count; i++)
        free(id->names[i]);
    free(id->names);
    free(id->name);
    free(id);
}

bool nh_identity_has(const nh_identity *id, const char *name) {
    if (!id || !name) return false;
    for (size_t i = 0; i < id->name_count; i++)
        if (!strcmp(id->names[i], name)) return true;
    return false;
}

/* An ASN.1 string as a C string, refusing embedded NULs (a name must not hide a shorter
 * one). prefix is prepended. NULL when not representable. */
static char *asn1_text(const ASN1_STRING *s, const char *prefix) {
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    if (n < 0) return NULL;
    if (memchr(utf8, '\0', (size_t)n)) {
        OPENSSL_free(utf8);
        return NULL;
    }
    size_t pl = strlen(prefix);
    char *out = malloc(pl + (size_t)n + 1);
    if (out) {
        memcpy(out, prefix, pl);
        memcpy(out + pl, utf8, (size_t)n);
        out[pl + (size_t)n] = '\0';
    }
    OPENSSL_free(utf8);
    return out;
}

static bool add_name(nh_identity *id, char *name) {
    if (!name) return true; /* not representable: skipped */
    char **grown = realloc(id->names, (id->name_count + 1) * sizeof *grown);
    if (!grown) {
        free(name);
        return false;
    }
    id->names = grown;
    id->names[id->name_count++] = name;
    return true;
}

nh_identity *nh_identity_from_x509(X509 *cert) {
    if (!cert) return NULL;
    nh_identity *id = calloc(1, sizeof *id);
    if (!id) return NULL;
    id->refs = 1;
    bool ok = true;
    const char *first_uri = NULL, *first_dns = NULL;
    size_t node_uris = 0;
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; ok && sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_URI) {
            char *u = asn1_text(g->d.uniformResourceIdentifier, "");
            uint32_t node = nh_identity_parse_node_uri(u);
            if (node && node != id->node_id) {
                node_uris++;
                id->node_id = node;
            }
            ok = add_name(id, u);
        } else if (g->type == GEN_DNS) {
            ok = add_name(id, asn1_text(g->d.dNSName, ""));
        }
    }
    GENERAL_NAMES_free(sans);
    /* A certificate naming two different nodes proves neither: its node URIs match nothing. */
    if (node_uris > 1) {
        id->node_id = 0;
        size_t kept = 0;
        for (size_t i = 0; i < id->name_count; i++) {
            if (nh_identity_parse_node_uri(id->names[i]))
                free(id->names[i]);
            else
                id->names[kept++] = id->names[i];
        }
        id->name_count = kept;
    }
    X509_NAME *subj = X509_get_subject_name(cert);
    int cn = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
    if (ok && cn >= 0)
        ok =
            add_name(id, asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, cn)), "CN="));
    for (size_t i = 0; i < id->name_count; i++) {
        const char *n = id->names[i];
        if (!first_uri && strstr(n, "://")) first_uri = n;
        if (!first_dns && strncmp(n, "CN=", 3) && !strstr(n, "://")) first_dns = n;
    }
    char node_uri[40];
    const char *name = id->node_id      ? nh_tls_node_uri(id->node_id, node_uri, sizeof node_uri)
                       : first_uri      ? first_uri
                       : first_dns      ? first_dns
                       : id->name_count ? id->names[id->name_count - 1]
                                        : NULL;
    char oneline[256];
    if (!name && subj) name = X509_NAME_oneline(subj, oneline, sizeof oneline);
    id->name = strdup(name ? name : "(a certificate without a name)");
    if (!ok || !id->name) {
        nh_identity_unref(id);
        return NULL;
    }
    return id;
}

const char *nh_tls_ssl_reason(char *buf, size_t size) {
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e;
    const char *r = last ? ERR_reason_error_string(last) : NULL;
    snprintf(buf, size, "%s", r ? r : "");
    return buf;
}

/* Certificates from PEM text (len 0: NUL-terminated). */
static STACK_OF(X509) * pem_certs(const char *pem, size_t len) {
    STACK_OF(X509) *sk = sk_X509_new_null();
    if (!sk || !pem) return sk;
    BIO *bio = BIO_new_mem_buf(pem, len ? (int)len : -1);
    X509 *x;
    while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        if (!sk_X509_push(sk, x)) X509_free(x);
    ERR_clear_error(); /* the end of the text reads as an error */
    BIO_free(bio);
    return sk;
}

void nh_tls_time_text(const ASN1_TIME *t, char *buf, size_t size) {
    buf[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (b && ASN1_TIME_print(b, t)) {
        int n = BIO_read(b, buf, (int)size - 1);
        buf[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
}

nh_identity *nh_tls_verify_peer(nh_tls *tls, const char *leaf_pem, size_t leaf_len,
                                const char *chain_pem, size_t chain_len, bool peer_is_server,
                                char *why, size_t why_size) {
    STACK_OF(X509) *leafs = pem_certs(leaf_pem, leaf_len);
    STACK_OF(X509) *chain = pem_certs(chain_pem, chain_len);
    X509 *leaf = leafs && sk_X509_num(leafs) > 0 ? sk_X509_value(leafs, 0) : NULL;
    nh_identity *id = NULL;
    nh_tls_snap *snap = nh_tls_snapshot(tls);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!leaf) {
        snprintf(why, why_size, "no certificate was presented");
    } else if (!ctx || !X509_STORE_CTX_init(ctx, snap->store, leaf, chain)) {
        snprintf(why, why_size, "cannot check the certificate (out of memory)");
    } else {
        X509_STORE_CTX_set_purpose(ctx, peer_is_server ? X509_PURPOSE_SSL_SERVER
                                                       : X509_PURPOSE_SSL_CLIENT);
        if (X509_verify_cert(ctx) == 1) {
            id = nh_identity_from_x509(leaf);
            if (!id) snprintf(why, why_size, "cannot read the certificate's names");
        } else {
            int e = X509_STORE_CTX_get_error(ctx);
            char t[64];
            if (e == X509_V_ERR_CERT_HAS_EXPIRED) {
                nh_tls_time_text(X509_get0_notAfter(leaf), t, sizeof t);
                snprintf(why, why_size, "the certificate has expired (notAfter %s)", t);
            } else if (e == X509_V_ERR_CERT_NOT_YET_VALID) {
                nh_tls_time_text(X509_get0_notBefore(leaf), t, sizeof t);
                snprintf(why, why_size, "the certificate is not valid yet (notBefore %s)", t);
            } else if (e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                       e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
                       e == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
                       e == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                       e == X509_V_ERR_CERT_SIGNATURE_FAILURE) {
                snprintf(why, why_size, "the certificate is not signed by this cluster's CA (%s)",
                         X509_verify_cert_error_string(e));
            } else {
                snprintf(why, why_size, "the certificate was refused: %s",
                         X509_verify_cert_error_string(e));
            }
        }
    }
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    nh_tls_snap_unref(snap);
    sk_X509_pop_free(leafs, X509_free);
    sk_X509_pop_free(chain, X509_free);
    return id;
}
