/* Integration: TLS and identities bound to certificates, over real gRPC on loopback, with
 * certificates generated at test time by tests/tls/make_certs.sh (the openssl command).
 *
 * A server is node 1 of {1, 2, 3} with node 1's certificate and `clients: require`. Clients
 * dial it presenting various certificates and gorums-node-id headers:
 * - node 2's certificate claiming 2: a known peer, in Config, the handler sees its identity;
 * - node 3's certificate claiming 2: UNAUTHENTICATED naming both identities, and node 2's real
 *   stream stays in Config and keeps serving;
 * - no certificate, an expired one, one from another CA: refused with the reason;
 * - a client certificate announcing 0: a client peer whose ClientConfig entry carries its
 *   identity, called back over ClientConfig through TLS;
 * - a client expecting another node's identity: its connect fails naming the identity proven;
 * - rotation: nh_tls_update() to a certificate and CA of another authority: the stream opened
 *   before keeps serving; new connections see the new certificate and CA. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nh_echo.h"
#include "nh_test_util.h"

#include <nodehost/nodehost.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[256];
static char g_addr[64];
static nh_runtime *g_srv_rt;
static nh_server *g_srv;
static nh_tls *g_srv_tls;
static nh_runtime *g_cli_rt;

static const char *path_of(const char *name, const char *ext, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s.%s", g_dir, name, ext);
    return buf;
}

/* Credentials: cert NULL for none; ca "ca" or "other-ca". */
static nh_tls *creds(const char *cert, const char *ca, nh_tls_clients clients) {
    char c[300], k[300], a[300];
    nh_tls_opts o = {.cert_file = cert ? path_of(cert, "pem", c, sizeof c) : NULL,
                     .key_file = cert ? path_of(cert, "key", k, sizeof k) : NULL,
                     .ca_file = path_of(ca, "pem", a, sizeof a),
                     .clients = clients};
    nh_tls *t = NULL;
    nh_error err;
    nh_tls_field which;
    if (nh_tls_new(&o, &t, &which, &err) != 0) fail_msg("nh_tls_new(%s): %s", cert, err.message);
    return t;
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/nh_tls_test.XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    char cmd[800];
    const char *src = getenv("NH_SOURCE_DIR");
    snprintf(cmd, sizeof cmd, "bash %s/tests/tls/make_certs.sh %s", src ? src : ".", g_dir);
    if (system(cmd) != 0) return -1;
    nh_error err;
    if (nh_runtime_new(NULL, &g_srv_rt, &err) != 0) return -1;
    if (nh_runtime_new(NULL, &g_cli_rt, &err) != 0) return -1;
    g_srv_tls = creds("node1", "ca", NH_TLS_CLIENTS_REQUIRE);
    int port = nh_test_free_port();
    snprintf(g_addr, sizeof g_addr, "127.0.0.1:%d", port);
    nh_node_addr peers[] = {{.id = 1, .address = g_addr},
                            {.id = 2, .address = "127.0.0.1:1"},
                            {.id = 3, .address = "127.0.0.1:2"}};
    nh_server_opts so = {
        .listen = g_addr, .node_id = 1, .peers = peers, .peer_count = 3, .tls = g_srv_tls};
    if (nh_server_new(g_srv_rt, &so, &g_srv, NULL, &err) != 0) {
        fprintf(stderr, "nh_server_new: %s\n", err.message);
        return -1;
    }
    return nh_echo_register(g_srv);
}

static int teardown(void **state) {
    (void)state;
    nh_server_free(g_srv);
    nh_runtime_free(g_cli_rt);
    nh_runtime_free(g_srv_rt);
    nh_tls_unref(g_srv_tls);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Opens a node to the server announcing id (NULL: no header) with tls. */
static nh_node *dial(nh_tls *tls, const char *announce, const char *expect) {
    nh_metadata md[] = {{"gorums-node-id", announce}};
    nh_node_opts no = {.id = 1,
                       .address = g_addr,
                       .metadata = announce ? md : NULL,
                       .metadata_count = announce ? 1 : 0,
                       .backoff_base_ms = 50,
                       .backoff_max_ms = 200,
                       .tls = tls,
                       .server_identity = expect};
    nh_node *n = NULL;
    nh_error err;
    assert_int_equal(nh_node_open(g_cli_rt, &no, &n, &err), 0);
    return n;
}

/* Whoami over node n; 0 with the answer in out, or -1 with err. */
static int whoami(nh_node *n, char *out, size_t size, nh_error *err) {
    nh_call_opts co = {.timeout_ms = 5000};
    nh_buf resp = {0};
    /* A first call may race the connect; the node fails fast while it is down. */
    int rc = -1;
    for (int i = 0; i < 50 && rc != 0; i++) {
        rc = nh_rpc(n, "test.Echo.Whoami", "", 0, &co, &resp, err);
        if (rc != 0 && err->code != NH_UNAVAILABLE) break;
        if (rc != 0) nh_test_sleep_ms(50);
    }
    if (rc == 0) {
        snprintf(out, size, "%.*s", (int)resp.len, (const char *)resp.data);
        nh_buf_free(&resp);
    }
    return rc;
}

/* The error a refused dial ends with: calls keep failing; returns the last message. */
static void expect_refused(nh_node *n, const char *needle) {
    char out[600];
    nh_error err;
    int rc = whoami(n, out, sizeof out, &err);
    assert_int_not_equal(rc, 0);
    print_message("refused as expected: %s\n", err.message);
    if (!strstr(err.message, needle)) fail_msg("expected \"%s\" in \"%s\"", needle, err.message);
}

static bool has_size(const nh_config *cfg, void *user) {
    return nh_config_size(cfg) == (size_t)(uintptr_t)user;
}

static bool config_has(uint32_t id) {
    nh_config *c = nh_server_config(g_srv);
    bool found = nh_config_find(c, id) != NULL;
    nh_config_unref(c);
    return found;
}

static void test_peer_proves_its_id_and_a_spoof_is_refused(void **state) {
    (void)state;
    nh_tls *t2 = creds("node2", "ca", NH_TLS_CLIENTS_REQUIRE);
    nh_node *real = dial(t2, "2", NULL);
    char out[600];
    nh_error err;
    assert_int_equal(whoami(real, out, sizeof out, &err), 0);
    assert_string_equal(out, "nodehost://node/2 kind=1 id=2 local=1");
    assert_int_equal(nh_server_wait_config(g_srv, false, has_size, (void *)2, 10000, &err), 0);
    assert_string_equal(nh_node_identity(real), "nodehost://node/1");

    /* Node 3's certificate claiming node 2. */
    nh_tls *t3 = creds("node3", "ca", NH_TLS_CLIENTS_REQUIRE);
    nh_node *spoof = dial(t3, "2", NULL);
    expect_refused(spoof, "gorums-node-id claims node 2 but the certificate proves "
                          "nodehost://node/3");
    /* No certificate claiming 2; an expired node 2 certificate; another CA's node 2. */
    nh_tls *none = creds(NULL, "ca", NH_TLS_CLIENTS_REQUIRE);
    nh_node *anon = dial(none, "2", NULL);
    expect_refused(anon, "requires a client certificate");
    nh_tls *old = creds("expired", "ca", NH_TLS_CLIENTS_REQUIRE);
    nh_node *ex = dial(old, "2", NULL);
    expect_refused(ex, "client certificate refused: the certificate has expired (notAfter Jan  2");
    /* A certificate naming nodes 2 and 3 proves neither. */
    nh_tls *two = creds("twonodes", "ca", NH_TLS_CLIENTS_REQUIRE);
    nh_node *tw = dial(two, "2", NULL);
    expect_refused(tw, "claims known peer 2, whose certificate must prove \"nodehost://node/2\"");
    nh_node_close(tw);
    nh_tls_unref(two);
    nh_tls *rogue = creds("rogue2", "ca", NH_TLS_CLIENTS_REQUIRE);
    nh_node *rg = dial(rogue, "2", NULL);
    expect_refused(rg, "not signed by this cluster's CA");

    /* Through all of it, node 2's real stream stayed in Config and serves. */
    assert_true(config_has(2));
    assert_int_equal(whoami(real, out, sizeof out, &err), 0);
    assert_string_equal(out, "nodehost://node/2 kind=1 id=2 local=1");
    nh_node_close(spoof);
    nh_node_close(anon);
    nh_node_close(rg);
    nh_node_close(ex);
    nh_tls_unref(old);
    nh_node_close(real);
    assert_int_equal(nh_server_wait_config(g_srv, false, has_size, (void *)1, 10000, &err), 0);
    nh_tls_unref(t2);
    nh_tls_unref(t3);
    nh_tls_unref(none);
    nh_tls_unref(rogue);
}

/* A back-channel handler of the client program: answers with the caller's identity. */
static void bc_whoami(nh_server_ctx *ctx, void *u) {
    (void)u;
    const char *who = nh_ctx_caller_identity(ctx);
    char buf[300];
    int n = snprintf(buf, sizeof buf, "client sees %s", who ? who : "-");
    nh_ctx_reply(ctx, buf, (size_t)n);
}

static void test_client_peer_identity_and_call_back(void **state) {
    (void)state;
    nh_error err;
    assert_int_equal(nh_runtime_handle(g_cli_rt, "test.Back.Whoami", bc_whoami, NULL, &err), 0);
    nh_tls *tc = creds("client", "ca", NH_TLS_CLIENTS_REQUIRE);
    nh_node *n = dial(tc, "0", NULL);
    char out[600];
    assert_int_equal(whoami(n, out, sizeof out, &err), 0);
    assert_non_null(strstr(out, "urn:nodehost:client:alice kind=2"));
    assert_int_equal(nh_server_wait_config(g_srv, true, has_size, (void *)1, 10000, &err), 0);
    nh_config *cc = nh_server_client_config(g_srv);
    uint32_t id;
    assert_int_equal(nh_config_ids(cc, &id, 1), 1);
    nh_node *entry = nh_config_find(cc, id);
    assert_non_null(entry);
    assert_string_equal(nh_node_identity(entry), "urn:nodehost:client:alice");
    /* The server calls the client back over ClientConfig, through the TLS stream. */
    nh_buf resp = {0};
    nh_call_opts co = {.timeout_ms = 5000};
    assert_int_equal(nh_rpc(entry, "test.Back.Whoami", "", 0, &co, &resp, &err), 0);
    assert_int_equal(resp.len, strlen("client sees nodehost://node/1"));
    assert_memory_equal(resp.data, "client sees nodehost://node/1", resp.len);
    nh_buf_free(&resp);
    nh_config_unref(cc);
    nh_node_close(n);
    nh_tls_unref(tc);
}

static void test_client_checks_the_server_identity(void **state) {
    (void)state;
    nh_tls *tc = creds("client", "ca", NH_TLS_CLIENTS_REQUIRE);
    nh_node *n = dial(tc, NULL, "nodehost://node/2"); /* we think node 2 is there */
    expect_refused(n, "it proves \"nodehost://node/1\", but this node is \"nodehost://node/2\"");
    nh_node_close(n);
    /* "*": any certificate of the CA will do. */
    nh_node *any = dial(tc, NULL, "*");
    char out[600];
    nh_error err;
    assert_int_equal(whoami(any, out, sizeof out, &err), 0);
    assert_string_equal(out, "urn:nodehost:client:alice kind=0 id=0 local=1");
    nh_node_close(any);
    /* A client trusting another CA refuses the server. */
    nh_tls *other = creds(NULL, "other-ca", NH_TLS_CLIENTS_REQUIRE);
    nh_node *o = dial(other, NULL, "*");
    expect_refused(o, "not signed by this cluster's CA");
    nh_node_close(o);
    nh_tls_unref(other);
    nh_tls_unref(tc);
}

static void test_rotation_keeps_streams_and_applies_to_new_connections(void **state) {
    (void)state;
    nh_tls *t2 = creds("node2", "ca", NH_TLS_CLIENTS_REQUIRE);
    nh_node *before = dial(t2, "2", NULL);
    char out[600];
    nh_error err;
    assert_int_equal(whoami(before, out, sizeof out, &err), 0);

    /* A bad update changes nothing. */
    char c[300], k[300], a[300];
    nh_tls_opts bad = {.cert_file = path_of("rotated1", "pem", c, sizeof c),
                       .key_file = path_of("node1", "key", k, sizeof k), /* not its key */
                       .ca_file = path_of("other-ca", "pem", a, sizeof a),
                       .node_id = 1};
    nh_tls_field which;
    assert_int_equal(nh_tls_update(g_srv_tls, &bad, &which, &err), -1);
    assert_int_equal(which, NH_TLS_FIELD_KEY);
    assert_non_null(strstr(err.message, "does not match the certificate"));
    assert_int_equal(nh_tls_generation(g_srv_tls), 0);

    /* Rotate to the other authority's node 1 certificate and CA. */
    nh_tls_opts next = bad;
    next.key_file = path_of("rotated1", "key", k, sizeof k);
    assert_int_equal(nh_tls_update(g_srv_tls, &next, &which, &err), 0);
    assert_int_equal(nh_tls_generation(g_srv_tls), 1);

    /* The stream opened before keeps serving. */
    assert_int_equal(whoami(before, out, sizeof out, &err), 0);
    assert_string_equal(out, "nodehost://node/2 kind=1 id=2 local=1");
    /* New connections: a client of the old CA refuses the new certificate... */
    nh_tls *old_ca = creds("client", "ca", NH_TLS_CLIENTS_REQUIRE);
    nh_node *o = dial(old_ca, NULL, "*");
    expect_refused(o, "not signed by this cluster's CA");
    nh_node_close(o);
    /* ...and one of the new CA with the new CA's node 2 certificate is accepted as node 2. */
    nh_tls *new2 = creds("rogue2", "other-ca", NH_TLS_CLIENTS_REQUIRE);
    nh_node *after = dial(new2, NULL, NULL);
    assert_int_equal(whoami(after, out, sizeof out, &err), 0);
    assert_string_equal(out, "nodehost://node/2 kind=0 id=0 local=1");
    nh_node_close(after);
    nh_node_close(before);
    nh_tls_unref(new2);
    nh_tls_unref(old_ca);
    nh_tls_unref(t2);
}

static void test_load_errors_name_the_file(void **state) {
    (void)state;
    char c[300], k[300], a[300];
    nh_error err;
    nh_tls_field which;
    nh_tls *t = NULL;
    nh_tls_opts o = {.cert_file = path_of("node1", "pem", c, sizeof c),
                     .key_file = path_of("node2", "key", k, sizeof k),
                     .ca_file = path_of("ca", "pem", a, sizeof a)};
    assert_int_equal(nh_tls_new(&o, &t, &which, &err), -1);
    assert_int_equal(which, NH_TLS_FIELD_KEY);
    o.key_file = path_of("node1", "key", k, sizeof k);
    o.node_id = 2;
    assert_int_equal(nh_tls_new(&o, &t, &which, &err), -1);
    assert_int_equal(which, NH_TLS_FIELD_CERT);
    assert_non_null(strstr(err.message, "does not carry this node's identity"));
    /* As a node's own certificate, an expired one is refused at load. */
    char c2[300], k2[300], a2[300];
    nh_tls_opts eo = {.cert_file = path_of("expired", "pem", c2, sizeof c2),
                      .key_file = path_of("expired", "key", k2, sizeof k2),
                      .ca_file = path_of("ca", "pem", a2, sizeof a2),
                      .node_id = 2};
    assert_int_equal(nh_tls_new(&eo, &t, &which, &err), -1);
    assert_int_equal(which, NH_TLS_FIELD_CERT);
    assert_non_null(strstr(err.message, "has expired (notAfter Jan  2 00:00:00 2020 GMT)"));
    o.node_id = 1;
    o.ca_file = path_of("missing", "pem", a, sizeof a);
    assert_int_equal(nh_tls_new(&o, &t, &which, &err), -1);
    assert_int_equal(which, NH_TLS_FIELD_CA);
    assert_non_null(strstr(err.message, "No such file"));
    o.ca_file = path_of("other-ca", "pem", a, sizeof a);
    assert_int_equal(nh_tls_new(&o, &t, &which, &err), -1);
    assert_int_equal(which, NH_TLS_FIELD_CERT);
    if (!strstr(err.message, "is not signed by the CA")) fail_msg("%s", err.message);
    o.cert_file = path_of("future", "pem", c, sizeof c);
    o.key_file = path_of("future", "key", k, sizeof k);
    o.ca_file = path_of("ca", "pem", a, sizeof a);
    o.node_id = 2;
    assert_int_equal(nh_tls_new(&o, &t, &which, &err), -1);
    assert_non_null(strstr(err.message, "is not valid yet"));
    o.cert_file = path_of("ca", "key", c, sizeof c); /* a key where a certificate goes */
    assert_int_equal(nh_tls_new(&o, &t, &which, &err), -1);
    assert_int_equal(which, NH_TLS_FIELD_CERT);
    assert_non_null(strstr(err.message, "holds no PEM certificate"));
    o.cert_file = path_of("node2", "pem", c, sizeof c);
    o.key_file = path_of("node2", "key", k, sizeof k);
    assert_int_equal(nh_tls_new(&o, &t, &which, &err), 0);
    char own[100];
    assert_int_equal(nh_tls_own_identity(t, own, sizeof own), strlen("nodehost://node/2"));
    assert_string_equal(own, "nodehost://node/2");
    nh_tls_unref(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_errors_name_the_file),
        cmocka_unit_test(test_peer_proves_its_id_and_a_spoof_is_refused),
        cmocka_unit_test(test_client_peer_identity_and_call_back),
        cmocka_unit_test(test_client_checks_the_server_identity),
        cmocka_unit_test(test_rotation_keeps_streams_and_applies_to_new_connections),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
