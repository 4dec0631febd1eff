/* gRPC credentials over nh_tls. Servers use the SSL credentials with a certificate fetch (so a
 * rotation applies to the next handshake) and request client certificates without letting
 * gRPC verify them: nodehost verifies at accept and answers UNAUTHENTICATED with the reason.
 * Channels use the TLS credentials with an external verifier: the chain, dates and the expected
 * identity are checked by nodehost (security/identity.c), whose reason becomes the connect
 * error; gRPC's host name check is off (node certificates name nodes, not addresses). */
#include "transport/tls_creds.h"

#include <grpc/support/alloc.h>
#include <grpc/support/string_util.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nh_tp_tls_fetch {
    pthread_mutex_t mu;
    nh_tls *tls;
    uint64_t served; /* generation handed to gRPC */
    bool fetched;
};

static grpc_ssl_certificate_config_reload_status fetch(void *user,
                                                       grpc_ssl_server_certificate_config **cfg) {
    nh_tp_tls_fetch *f = user;
    nh_tls_snap *s = nh_tls_snapshot(f->tls);
    grpc_ssl_certificate_config_reload_status rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    pthread_mutex_lock(&f->mu);
    if ((!f->fetched || s->gen != f->served) && s->cert_pem && s->key_pem) {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = s->key_pem, .cert_chain = s->cert_pem};
        *cfg = grpc_ssl_server_certificate_config_create(s->ca_pem, &pair, 1);
        if (*cfg) {
            f->served = s->gen;
            f->fetched = true;
            rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
        } else {
            rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
        }
    }
    pthread_mutex_unlock(&f->mu);
    nh_tls_snap_unref(s);
    return rc;
}

grpc_server_credentials *nh_tp_tls_server_creds(nh_tls *tls, nh_tp_tls_fetch **state) {
    *state = NULL;
    nh_tp_tls_fetch *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    pthread_mutex_init(&f->mu, NULL);
    f->tls = nh_tls_ref(tls);
    grpc_ssl_client_certificate_request_type req =
        nh_tls_client_mode(tls) == NH_TLS_CLIENTS_NONE
            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY;
    grpc_ssl_server_credentials_options *o =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(req, fetch, f);
    grpc_server_credentials *creds = o ? grpc_ssl_server_credentials_create_with_options(o) : NULL;
    if (!creds) {
        nh_tp_tls_fetch_free(f);
        return NULL;
    }
    *state = f;
    return creds;
}

void nh_tp_tls_fetch_free(nh_tp_tls_fetch *f) {
    if (!f) return;
    nh_tls_unref(f->tls);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* ---- channels ---------------------------------------------------------------------------- */

typedef struct verifier {
    grpc_tls_certificate_verifier_external ext;
    nh_tls *tls;
    char *expect;
} verifier;

static int verify(void *user, grpc_tls_custom_verification_check_request *req,
                  grpc_tls_on_custom_verification_check_done_cb cb, void *cb_arg,
                  grpc_status_code *status, char **details) {
    (void)cb;
    (void)cb_arg;
    verifier *v = user;
    char why[512];
    nh_identity *id = NULL;
    if (!req->peer_info.peer_cert || !*req->peer_info.peer_cert) {
        snprintf(why, sizeof why, "no certificate was presented");
    } else {
        id = nh_tls_verify_peer(v->tls, req->peer_info.peer_cert, 0,
                                req->peer_info.peer_cert_full_chain, 0, true, why, sizeof why);
    }
    if (!id) {
        *status = GRPC_STATUS_UNAUTHENTICATED;
        char msg[600];
        snprintf(msg, sizeof msg, "server certificate refused: %s", why);
        *details = gpr_strdup(msg);
        return 1;
    }
    if (v->expect && !nh_identity_has(id, v->expect)) {
        char msg[600];
        snprintf(msg, sizeof msg,
                 "server certificate refused: it proves \"%s\", but this node is \"%s\"", id->name,
                 v->expect);
        *status = GRPC_STATUS_UNAUTHENTICATED;
        *details = gpr_strdup(msg);
    } else {
        *status = GRPC_STATUS_OK;
    }
    nh_identity_unref(id);
    return 1;
}

static void verify_cancel(void *user, grpc_tls_custom_verification_check_request *req) {
    (void)user;
    (void)req; /* verification is synchronous: nothing to cancel */
}

static void verifier_destruct(void *user) {
    verifier *v = user;
    nh_tls_unref(v->tls);
    free(v->expect);
    free(v);
}

grpc_channel_credentials *nh_tp_tls_channel_creds(nh_tls *tls, const char *expect) {
    verifier *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->tls = nh_tls_ref(tls);
    v->expect = expect ? strdup(expect) : NULL;
    v->ext.user_data = v;
    v->ext.verify = verify;
    v->ext.cancel = verify_cancel;
    v->ext.destruct = verifier_destruct;
    if (expect && !v->expect) {
        verifier_destruct(v);
        return NULL;
    }
    nh_tls_snap *s = nh_tls_snapshot(tls);
    grpc_tls_identity_pairs *pairs = NULL;
    if (s->cert_pem && s->key_pem) {
        pairs = grpc_tls_identity_pairs_create();
        grpc_tls_identity_pairs_add_pair(pairs, s->key_pem, s->cert_pem);
    }
    grpc_tls_certificate_provider *prov =
        grpc_tls_certificate_provider_static_data_create(s->ca_pem, pairs);
    nh_tls_snap_unref(s);
    grpc_tls_credentials_options *o = grpc_tls_credentials_options_create();
    grpc_tls_credentials_options_set_certificate_provider(o, prov);
    grpc_tls_credentials_options_watch_root_certs(o);
    if (pairs) grpc_tls_credentials_options_watch_identity_key_cert_pairs(o);
    grpc_tls_credentials_options_set_verify_server_cert(o, 0); /* verify() does it */
    grpc_tls_credentials_options_set_check_call_host(o, 0);
    grpc_tls_certificate_verifier *ver = grpc_tls_certificate_verifier_external_create(&v->ext);
    grpc_tls_credentials_options_set_certificate_verifier(o, ver);
    grpc_channel_credentials *creds = grpc_tls_credentials_create(o);
    grpc_tls_certificate_verifier_release(ver);
    grpc_tls_certificate_provider_release(prov);
    return creds;
}

/* ---- identities of calls ------------------------------------------------------------------ */

nh_identity *nh_tp_call_identity(nh_tls *tls, grpc_call *call, bool peer_is_server, bool *presented,
                                 char *why, size_t why_size) {
    *presented = false;
    why[0] = '\0';
    grpc_auth_context *ac = grpc_call_auth_context(call);
    if (!ac) return NULL;
    grpc_auth_property_iterator it =
        grpc_auth_context_find_properties_by_name(ac, GRPC_X509_PEM_CERT_PROPERTY_NAME);
    const grpc_auth_property *leaf = grpc_auth_property_iterator_next(&it);
    nh_identity *id = NULL;
    if (leaf && leaf->value_length > 0) {
        *presented = true;
        it = grpc_auth_context_find_properties_by_name(ac, GRPC_X509_PEM_CERT_CHAIN_PROPERTY_NAME);
        const grpc_auth_property *chain = grpc_auth_property_iterator_next(&it);
        id = nh_tls_verify_peer(tls, leaf->value, leaf->value_length, chain ? chain->value : NULL,
                                chain ? chain->value_length : 0, peer_is_server, why, why_size);
    }
    grpc_auth_context_release(ac);
    return id;
}
