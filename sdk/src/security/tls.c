/* TLS credentials: loading and checking the PEM files (certificate chain, key, CA bundle) and
 * swapping them atomically on update. Handshakes read the current snapshot; a snapshot in use
 * stays valid until its last user lets go. */
#include "security/tls_impl.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PEM_FILE (4u << 20) /* a PEM file larger than this is not a certificate bundle */

struct nh_tls {
    int refs; /* atomic */
    pthread_mutex_t mu;
    nh_tls_snap *cur; /* under mu */
    uint64_t gen;     /* atomic */
    nh_tls_clients clients;
};

void nh_tls_snap_unref(nh_tls_snap *s) {
    if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    free(s->cert_pem);
    if (s->key_pem) {
        OPENSSL_cleanse(s->key_pem, strlen(s->key_pem));
        free(s->key_pem);
    }
    free(s->ca_pem);
    X509_STORE_free(s->store);
    free(s->identity);
    free(s);
}

nh_tls_snap *nh_tls_snapshot(nh_tls *tls) {
    pthread_mutex_lock(&tls->mu);
    nh_tls_snap *s = tls->cur;
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&tls->mu);
    return s;
}

nh_tls_clients nh_tls_client_mode(const nh_tls *tls) {
    return tls->clients;
}

/* Reads a whole file as a NUL-terminated string. NULL with why set on failure. */
static char *read_pem(const char *path, const char *what, char *why, size_t why_size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, why_size, "cannot read %s \"%s\": %s", what, path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_PEM_FILE + 1);
    size_t n = buf ? fread(buf, 1, MAX_PEM_FILE + 1, f) : 0;
    bool err = ferror(f);
    fclose(f);
    if (!buf || err || n > MAX_PEM_FILE) {
        snprintf(why, why_size, "cannot read %s \"%s\": %s", what, path,
                 !buf  ? "out of memory"
                 : err ? "read error"
                       : "larger than 4 MiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    char *fit = realloc(buf, n + 1);
    return fit ? fit : buf;
}

static int fail(nh_error *err, nh_tls_field *which, nh_tls_field f, const char *why) {
    if (which) *which = f;
    return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s", why);
}

/* Loads and checks opts into a new snapshot. */
static nh_tls_snap *load(const nh_tls_opts *o, nh_tls_field *which, nh_error *err) {
    char why[600];
    if (which) *which = NH_TLS_FIELD_NONE;
    if (!o->ca_file || !*o->ca_file) {
        fail(err, which, NH_TLS_FIELD_CA, "a CA bundle (ca) is required");
        return NULL;
    }
    if ((o->cert_file && *o->cert_file) != (o->key_file && *o->key_file)) {
        fail(err, which, o->cert_file && *o->cert_file ? NH_TLS_FIELD_KEY : NH_TLS_FIELD_CERT,
             "cert and key go together: give both or neither");
        return NULL;
    }
    nh_tls_snap *s = calloc(1, sizeof *s);
    if (!s) {
        fail(err, which, NH_TLS_FIELD_NONE, "out of memory");
        return NULL;
    }
    s->refs = 1;
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *chain = NULL;
    BIO *bio = NULL;
    nh_tls_field bad = NH_TLS_FIELD_NONE;
    why[0] = '\0';

    /* The CA bundle. */
    s->ca_pem = read_pem(o->ca_file, "the CA bundle", why, sizeof why);
    if (!s->ca_pem) {
        bad = NH_TLS_FIELD_CA;
        goto out;
    }
    s->store = X509_STORE_new();
    bio = BIO_new_mem_buf(s->ca_pem, -1);
    int cas = 0;
    X509 *x;
    while (s->store && bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(s->store, x)) cas++;
        X509_free(x);
    }
    ERR_clear_error();
    BIO_free(bio);
    bio = NULL;
    if (cas == 0) {
        snprintf(why, sizeof why, "the CA bundle \"%s\" holds no PEM certificate", o->ca_file);
        bad = NH_TLS_FIELD_CA;
        goto out;
    }

    if (!o->cert_file || !*o->cert_file) {
        s->identity = strdup("");
        goto out;
    }
    /* The certificate chain: leaf first, then intermediates. */
    s->cert_pem = read_pem(o->cert_file, "the certificate", why, sizeof why);
    if (!s->cert_pem) {
        bad = NH_TLS_FIELD_CERT;
        goto out;
    }
    chain = sk_X509_new_null();
    bio = BIO_new_mem_buf(s->cert_pem, -1);
    while (chain && bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (!leaf)
            leaf = x;
        else if (!sk_X509_push(chain, x))
            X509_free(x);
    }
    ERR_clear_error();
    BIO_free(bio);
    bio = NULL;
    if (!leaf) {
        snprintf(why, sizeof why, "the certificate file \"%s\" holds no PEM certificate",
                 o->cert_file);
        bad = NH_TLS_FIELD_CERT;
        goto out;
    }
    /* The key. */
    s->key_pem = read_pem(o->key_file, "the private key", why, sizeof why);
    if (!s->key_pem) {
        bad = NH_TLS_FIELD_KEY;
        goto out;
    }
    bio = BIO_new_mem_buf(s->key_pem, -1);
    key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"") : NULL;
    BIO_free(bio);
    bio = NULL;
    if (!key) {
        char r[200];
        nh_tls_ssl_reason(r, sizeof r);
        snprintf(why, sizeof why,
                 "the key file \"%s\" holds no usable PEM private key (%s; encrypted keys are "
                 "not supported)",
                 o->key_file, *r ? r : "no key found");
        bad = NH_TLS_FIELD_KEY;
        goto out;
    }
    if (X509_check_private_key(leaf, key) != 1) {
        ERR_clear_error();
        snprintf(why, sizeof why, "the key in \"%s\" does not match the certificate in \"%s\"",
                 o->key_file, o->cert_file);
        bad = NH_TLS_FIELD_KEY;
        goto out;
    }
    /* A node's certificate: dates, then the chain to the CA (a client program's certificate may
     * come from another authority than the servers' CA; the server it dials checks it). */
    char t[64];
    if (!o->node_id) goto identity;
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
        nh_tls_time_text(X509_get0_notAfter(leaf), t, sizeof t);
        snprintf(why, sizeof why, "the certificate \"%s\" has expired (notAfter %s)", o->cert_file,
                 t);
        bad = NH_TLS_FIELD_CERT;
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(leaf)) >= 0) {
        nh_tls_time_text(X509_get0_notBefore(leaf), t, sizeof t);
        snprintf(why, sizeof why, "the certificate \"%s\" is not valid yet (notBefore %s)",
                 o->cert_file, t);
        bad = NH_TLS_FIELD_CERT;
        goto out;
    }
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = ctx && X509_STORE_CTX_init(ctx, s->store, leaf, chain) && X509_verify_cert(ctx) == 1;
    if (!ok) {
        int e = ctx ? X509_STORE_CTX_get_error(ctx) : X509_V_ERR_OUT_OF_MEM;
        snprintf(why, sizeof why, "the certificate \"%s\" is not signed by the CA in \"%s\" (%s)",
                 o->cert_file, o->ca_file, X509_verify_cert_error_string(e));
        bad = NH_TLS_FIELD_CERT;
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    if (!ok) goto out;
identity:;
    nh_identity *id = nh_identity_from_x509(leaf);
    if (!id) {
        snprintf(why, sizeof why, "cannot read the names of the certificate \"%s\"", o->cert_file);
        bad = NH_TLS_FIELD_CERT;
        goto out;
    }
    s->identity = strdup(id->name);
    if (o->node_id) {
        char want[40];
        const char *expect = o->expect_identity && *o->expect_identity
                                 ? o->expect_identity
                                 : nh_tls_node_uri(o->node_id, want, sizeof want);
        if (!nh_identity_has(id, expect)) {
            snprintf(why, sizeof why,
                     "the certificate \"%s\" does not carry this node's identity \"%s\" (it "
                     "proves \"%s\"; a node certificate carries the URI SAN "
                     "nodehost://node/<id>)",
                     o->cert_file, expect, id->name);
            bad = NH_TLS_FIELD_CERT;
        }
    }
    nh_identity_unref(id);

out:
    ERR_clear_error();
    X509_free(leaf);
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    if (bad == NH_TLS_FIELD_NONE && s->identity) return s;
    if (bad == NH_TLS_FIELD_NONE) snprintf(why, sizeof why, "out of memory");
    fail(err, which, bad, why);
    nh_tls_snap_unref(s);
    return NULL;
}

int nh_tls_new(const nh_tls_opts *opts, nh_tls **out, nh_tls_field *which, nh_error *err) {
    if (!opts || !out) return fail(err, which, NH_TLS_FIELD_NONE, "NULL argument");
    *out = NULL;
    if (opts->clients != NH_TLS_CLIENTS_REQUIRE && opts->clients != NH_TLS_CLIENTS_OPTIONAL &&
        opts->clients != NH_TLS_CLIENTS_NONE)
        return fail(err, which, NH_TLS_FIELD_NONE, "clients must be require, optional or none");
    nh_tls_snap *s = load(opts, which, err);
    if (!s) return -1;
    nh_tls *t = calloc(1, sizeof *t);
    if (!t) {
        nh_tls_snap_unref(s);
        return fail(err, which, NH_TLS_FIELD_NONE, "out of memory");
    }
    t->refs = 1;
    pthread_mutex_init(&t->mu, NULL);
    t->cur = s;
    t->clients = opts->clients;
    *out = t;
    return 0;
}

int nh_tls_update(nh_tls *tls, const nh_tls_opts *opts, nh_tls_field *which, nh_error *err) {
    if (!tls || !opts) return fail(err, which, NH_TLS_FIELD_NONE, "NULL argument");
    nh_tls_snap *s = load(opts, which, err);
    if (!s) return -1;
    pthread_mutex_lock(&tls->mu);
    nh_tls_snap *old = tls->cur;
    s->gen = old->gen + 1;
    tls->cur = s;
    __atomic_store_n(&tls->gen, s->gen, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&tls->mu);
    nh_tls_snap_unref(old);
    return 0;
}

nh_tls *nh_tls_ref(nh_tls *tls) {
    if (tls) __atomic_add_fetch(&tls->refs, 1, __ATOMIC_RELAXED);
    return tls;
}

void nh_tls_unref(nh_tls *tls) {
    if (!tls || __atomic_sub_fetch(&tls->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    nh_tls_snap_unref(tls->cur);
    pthread_mutex_destroy(&tls->mu);
    free(tls);
}

uint64_t nh_tls_generation(const nh_tls *tls) {
    return tls ? __atomic_load_n(&tls->gen, __ATOMIC_ACQUIRE) : 0;
}

size_t nh_tls_own_identity(nh_tls *tls, char *buf, size_t size) {
    if (!tls) {
        if (size) buf[0] = '\0';
        return 0;
    }
    nh_tls_snap *s = nh_tls_snapshot(tls);
    size_t n = strlen(s->identity);
    if (size) snprintf(buf, size, "%s", s->identity);
    nh_tls_snap_unref(s);
    return n;
}
