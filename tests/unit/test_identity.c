/* Unit: node identities in certificate names (security/identity.c): which URIs prove a node ID
 * (nodehost://node/N, N decimal 1..2^32-1, no sign, no leading zero, nothing after it), and the
 * URI written for an ID. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "security/tls_impl.h"

static void test_node_uris_that_prove_an_id(void **state) {
    (void)state;
    assert_int_equal(nh_identity_parse_node_uri("nodehost://node/1"), 1);
    assert_int_equal(nh_identity_parse_node_uri("nodehost://node/1048575"), 1048575);
    assert_int_equal(nh_identity_parse_node_uri("nodehost://node/4294967295"), 4294967295u);
}

static void test_uris_that_prove_nothing(void **state) {
    (void)state;
    const char *bad[] = {
        "nodehost://node/0",
        "nodehost://node/01",
        "nodehost://node/",
        "nodehost://node/+2",
        "nodehost://node/-2",
        "nodehost://node/2/",
        "nodehost://node/2 ",
        "nodehost://node/ 2",
        "nodehost://node/2x",
        "nodehost://node/4294967296",
        "nodehost://node/99999999999999999999",
        "NODEHOST://node/2",
        "nodehost://Node/2",
        "nodehost:/node/2",
        "xnodehost://node/2",
        "spiffe://node/2",
        "",
        NULL,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (nh_identity_parse_node_uri(bad[i]) != 0) fail_msg("\"%s\" proved an ID", bad[i]);
    }
}

static void test_uri_of_an_id_round_trips(void **state) {
    (void)state;
    char buf[40];
    assert_string_equal(nh_tls_node_uri(7, buf, sizeof buf), "nodehost://node/7");
    for (uint32_t id = 1; id < 3000000; id += 99991)
        assert_int_equal(nh_identity_parse_node_uri(nh_tls_node_uri(id, buf, sizeof buf)), id);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_uris_that_prove_an_id),
        cmocka_unit_test(test_uris_that_prove_nothing),
        cmocka_unit_test(test_uri_of_an_id_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
