/* Integration: configurations and their node registry (spec 5.1-5.3, Gorums' config_test.go)
 * on a real runtime. Nodes dial 127.0.0.1 ports where nothing listens; no call is needed except
 * to observe whether a node was closed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nh_test_util.h"
#include "node/node_impl.h"
#include "util/clock.h"

#include <nodehost/nodehost.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NADDR 12
#define SLOW  60000 /* backoff: a node that failed to connect stays quiet during a test */
#define NCONC 5

typedef struct fixture {
    nh_runtime *rt;
    int port[NADDR];
    char addr[NADDR][32]; /* "127.0.0.1:<port>", distinct */
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    nh_error err;
    nh_runtime_opts ro = {.name = "config"};
    assert_int_equal(nh_runtime_new(&ro, &f->rt, &err), 0);
    for (int i = 0; i < NADDR; i++) {
        int p;
        bool fresh;
        do {
            p = nh_test_free_port();
            assert_true(p > 0);
            fresh = true;
            for (int j = 0; j < i; j++)
                if (f->port[j] == p) fresh = false;
        } while (!fresh);
        f->port[i] = p;
        snprintf(f->addr[i], sizeof f->addr[i], "127.0.0.1:%d", p);
    }
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    nh_runtime_free(f->rt);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static nh_config_opts list_opts(const char **addrs, size_t n) {
    return (nh_config_opts){
        .addresses = addrs, .count = n, .backoff_base_ms = SLOW, .backoff_max_ms = SLOW};
}

static nh_config_opts map_opts(const nh_node_addr *nodes, size_t n) {
    return (nh_config_opts){
        .nodes = nodes, .count = n, .backoff_base_ms = SLOW, .backoff_max_ms = SLOW};
}

/* A configuration of the first n fixture addresses (IDs 1..n). */
static nh_config *new_list(fixture *f, size_t n) {
    const char *a[NADDR];
    for (size_t i = 0; i < n; i++)
        a[i] = f->addr[i];
    nh_config_opts o = list_opts(a, n);
    nh_config *c = NULL;
    nh_error err;
    if (nh_config_new(f->rt, &o, &c, &err) != 0) fail_msg("nh_config_new: %s", err.message);
    return c;
}

static nh_config *extend_map(const nh_config *cfg, const nh_node_addr *nodes, size_t n) {
    nh_config_opts o = map_opts(nodes, n);
    nh_config *c = NULL;
    nh_error err;
    if (nh_config_extend(cfg, &o, &c, &err) != 0) fail_msg("nh_config_extend: %s", err.message);
    return c;
}

static void expect_ids(const nh_config *c, const uint32_t *want, size_t n) {
    assert_non_null(c);
    uint32_t got[32];
    size_t size = nh_config_ids(c, got, 32);
    assert_int_equal(size, n);
    assert_int_equal(nh_config_size(c), n);
    for (size_t i = 0; i < n; i++) {
        if (got[i] != want[i]) fail_msg("position %zu: node %u, want %u", i, got[i], want[i]);
        assert_int_equal(nh_node_id(nh_config_node(c, i)), want[i]);
    }
}

#define EXPECT_IDS(c, ...)                                                                         \
    do {                                                                                           \
        const uint32_t want_[] = {__VA_ARGS__};                                                    \
        expect_ids((c), want_, sizeof want_ / sizeof want_[0]);                                    \
    } while (0)

static void expect_new_error(fixture *f, const nh_config_opts *o, const char *msg) {
    nh_config *c = (nh_config *)0x1;
    nh_error err;
    assert_int_equal(nh_config_new(f->rt, o, &c, &err), -1);
    assert_null(c);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_int_equal(err.kind, NH_ERR_LOCAL);
    assert_string_equal(err.message, msg);
}

static void expect_extend_error(const nh_config *cfg, const nh_config_opts *o, const char *msg) {
    nh_config *c = (nh_config *)0x1;
    nh_error err;
    assert_int_equal(nh_config_extend(cfg, o, &c, &err), -1);
    assert_null(c);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_int_equal(err.kind, NH_ERR_LOCAL);
    assert_string_equal(err.message, msg);
}

static void set_latency(nh_node *n, int64_t ns) {
    __atomic_store_n(&n->latency_ns, ns, __ATOMIC_RELAXED);
}

/* ---- construction ------------------------------------------------------------------------- */

static void test_new_from_address_list_numbers_nodes_from_one(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 3);
    EXPECT_IDS(c, 1, 2, 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(nh_node_address(nh_config_node(c, i)), f->addr[i]);
    assert_true(nh_config_contains(c, 2));
    assert_false(nh_config_contains(c, 4));
    assert_ptr_equal(nh_config_find(c, 3), nh_config_node(c, 2));
    assert_null(nh_config_find(c, 0));
    assert_null(nh_config_node(c, 3));
    nh_config_unref(c);
}

static void test_new_from_node_map_sorts_by_id(void **state) {
    fixture *f = *state;
    nh_node_addr nodes[] = {{.id = 9, .address = f->addr[0]},
                            {.id = 2, .address = f->addr[1]},
                            {.id = 5, .address = f->addr[2]}};
    nh_config_opts o = map_opts(nodes, 3);
    nh_config *c;
    nh_error err;
    assert_int_equal(nh_config_new(f->rt, &o, &c, &err), 0);
    EXPECT_IDS(c, 2, 5, 9);
    assert_string_equal(nh_node_address(nh_config_find(c, 9)), f->addr[0]);
    assert_string_equal(nh_node_address(nh_config_find(c, 2)), f->addr[1]);
    nh_config_unref(c);
}

static void test_new_keeps_host_names_and_dials_them(void **state) {
    fixture *f = *state;
    char local[32], v6[32], v4[32], name[64];
    snprintf(local, sizeof local, "localhost:%d", f->port[0]);
    snprintf(v6, sizeof v6, "[::1]:%d", f->port[1]);
    snprintf(v4, sizeof v4, "127.000.000.001:%d", f->port[2]);
    snprintf(name, sizeof name, "Node-4.Example.test.:%d", f->port[3]);
    const char *a[] = {local, v6, v4, name};
    nh_config_opts o = list_opts(a, 4);
    nh_config *c;
    nh_error err;
    assert_int_equal(nh_config_new(f->rt, &o, &c, &err), 0);
    /* Names are dialed as written (gRPC resolves them at every connect); IP literals in their
     * canonical form, and localhost as 127.0.0.1. */
    assert_string_equal(nh_node_address(nh_config_find(c, 1)), f->addr[0]);
    assert_string_equal(nh_node_address(nh_config_find(c, 2)), v6);
    assert_string_equal(nh_node_address(nh_config_find(c, 3)), f->addr[2]);
    assert_string_equal(nh_node_address(nh_config_find(c, 4)), name);
    nh_config_unref(c);
}

static void test_new_accepts_a_name_that_does_not_resolve(void **state) {
    fixture *f = *state;
    /* The peer may not exist yet (a pod not scheduled): its node is created, not connected,
     * and keeps trying. */
    const char *a[] = {f->addr[0], "nonexistent.invalid:9000"};
    nh_config_opts o = list_opts(a, 2);
    nh_config *c;
    nh_error err;
    assert_int_equal(nh_config_new(f->rt, &o, &c, &err), 0);
    nh_node *n = nh_config_find(c, 2);
    assert_string_equal(nh_node_address(n), "nonexistent.invalid:9000");
    assert_false(nh_node_connected(n));
    nh_buf resp;
    nh_call_opts co = {.timeout_ms = 200};
    assert_int_equal(nh_rpc(n, "test.Echo.Echo", "x", 1, &co, &resp, &err), -1);
    assert_true(err.code == NH_UNAVAILABLE || err.code == NH_DEADLINE_EXCEEDED);
    nh_config_unref(c);
}

static void test_new_compares_host_names_without_case_or_trailing_dot(void **state) {
    fixture *f = *state;
    nh_node_addr same[] = {{.id = 4, .address = "db.example.test:9000"},
                           {.id = 4, .address = "DB.Example.Test.:9000"}};
    nh_config_opts o = map_opts(same, 2);
    nh_config *c;
    nh_error err;
    assert_int_equal(nh_config_new(f->rt, &o, &c, &err), 0);
    EXPECT_IDS(c, 4);
    assert_string_equal(nh_node_address(nh_config_find(c, 4)), "db.example.test:9000");
    nh_config_unref(c);
    nh_node_addr two[] = {{.id = 1, .address = "db.example.test:9000"},
                          {.id = 2, .address = "DB.EXAMPLE.TEST:9000"}};
    o = map_opts(two, 2);
    expect_new_error(f, &o, "address \"db.example.test:9000\" already in use by node 1");
    nh_node_addr moved[] = {{.id = 1, .address = "db.example.test:9000"},
                            {.id = 1, .address = "db.example.test:9001"}};
    o = map_opts(moved, 2);
    expect_new_error(f, &o, "node 1 already in use by \"db.example.test:9000\"");
}

static void test_new_rejects_missing_nodes_with_exact_messages(void **state) {
    fixture *f = *state;
    const char *a[] = {f->addr[0]};
    nh_node_addr nodes[] = {{.id = 1, .address = f->addr[0]}};
    nh_config_opts o = list_opts(a, 0);
    expect_new_error(f, &o, "missing required node addresses");
    o = map_opts(nodes, 0);
    expect_new_error(f, &o, "missing required node map");
    o = (nh_config_opts){0};
    expect_new_error(f, &o, "missing required node addresses");
    o = (nh_config_opts){.nodes = nodes, .addresses = a, .count = 1};
    nh_config *c;
    nh_error err;
    assert_int_equal(nh_config_new(f->rt, &o, &c, &err), -1);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "node map"));
    assert_non_null(strstr(err.message, "node addresses"));
}

static void test_new_rejects_node_zero(void **state) {
    fixture *f = *state;
    nh_node_addr nodes[] = {{.id = 1, .address = f->addr[0]}, {.id = 0, .address = f->addr[1]}};
    nh_config_opts o = map_opts(nodes, 2);
    expect_new_error(f, &o, "node 0 is reserved");
}

static void test_new_rejects_a_duplicate_address(void **state) {
    fixture *f = *state;
    char msg[128];
    snprintf(msg, sizeof msg, "address \"%s\" already in use by node 1", f->addr[0]);
    const char *a[] = {f->addr[0], f->addr[0]};
    nh_config_opts o = list_opts(a, 2);
    expect_new_error(f, &o, msg);
    nh_node_addr nodes[] = {{.id = 2, .address = f->addr[0]}, {.id = 1, .address = f->addr[0]}};
    o = map_opts(nodes, 2);
    snprintf(msg, sizeof msg, "address \"%s\" already in use by node 1", f->addr[0]);
    expect_new_error(f, &o, msg);
}

static void test_new_rejects_a_duplicate_address_after_normalization(void **state) {
    fixture *f = *state;
    char local[32], msg[128];
    snprintf(local, sizeof local, "localhost:%d", f->port[0]);
    snprintf(msg, sizeof msg, "address \"%s\" already in use by node 1", f->addr[0]);
    const char *a[] = {local, f->addr[0]};
    nh_config_opts o = list_opts(a, 2);
    expect_new_error(f, &o, msg);
}

static void test_new_rejects_one_id_with_two_addresses(void **state) {
    fixture *f = *state;
    char msg[128];
    snprintf(msg, sizeof msg, "node 2 already in use by \"%s\"", f->addr[0]);
    nh_node_addr nodes[] = {{.id = 2, .address = f->addr[0]}, {.id = 2, .address = f->addr[1]}};
    nh_config_opts o = map_opts(nodes, 2);
    expect_new_error(f, &o, msg);
}

static void test_new_treats_a_repeated_id_and_address_as_one_node(void **state) {
    fixture *f = *state;
    char local[32];
    snprintf(local, sizeof local, "localhost:%d", f->port[0]);
    nh_node_addr nodes[] = {{.id = 4, .address = f->addr[0]},
                            {.id = 3, .address = f->addr[1]},
                            {.id = 4, .address = local}};
    nh_config_opts o = map_opts(nodes, 3);
    nh_config *c;
    nh_error err;
    assert_int_equal(nh_config_new(f->rt, &o, &c, &err), 0);
    EXPECT_IDS(c, 3, 4);
    nh_config_unref(c);
}

static void test_new_rejects_invalid_addresses(void **state) {
    fixture *f = *state;
    const char *bad[] = {
        "bad host:9000",
        "-dash.example:9000",
        "dash-.example:9000",
        "a..b:9000",
        "under$core:9000",
        "[not-v6]:9000",
        "1.2.3.4.5:9000",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example:9000",
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:http",
        ":9000",
        "[::1:9000",
        "::1:9000",
        ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *a[] = {f->addr[0], bad[i]};
        nh_config_opts o = list_opts(a, 2);
        nh_config *c = (nh_config *)0x1;
        nh_error err;
        assert_int_equal(nh_config_new(f->rt, &o, &c, &err), -1);
        assert_null(c);
        assert_int_equal(err.code, NH_INVALID_ARGUMENT);
        assert_int_equal(err.kind, NH_ERR_LOCAL);
        char prefix[160];
        snprintf(prefix, sizeof prefix, "invalid address \"%s\": ", bad[i]);
        if (strncmp(err.message, prefix, strlen(prefix)) != 0 ||
            strlen(err.message) == strlen(prefix))
            fail_msg("%s: got \"%s\"", bad[i], err.message);
    }
}

static void test_new_rejects_an_invalid_metadata_key(void **state) {
    fixture *f = *state;
    const char *a[] = {f->addr[0]};
    nh_metadata md[] = {{"Gorums-Node-ID", "1"}};
    nh_config_opts o = list_opts(a, 1);
    o.metadata = md;
    o.metadata_count = 1;
    nh_config *c;
    nh_error err;
    assert_int_equal(nh_config_new(f->rt, &o, &c, &err), -1);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "Gorums-Node-ID"));
}

/* ---- empty configurations ----------------------------------------------------------------- */

static void test_empty_configuration_behaves_as_an_empty_set(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 2);
    const uint32_t all[] = {1, 2};
    nh_config *e = nh_config_remove(c, all, 2);
    nh_config *e2 = nh_config_difference(c, c);
    assert_non_null(e);
    assert_int_equal(nh_config_size(e), 0);
    uint32_t ids[4] = {77, 77, 77, 77};
    assert_int_equal(nh_config_ids(e, ids, 4), 0);
    assert_int_equal(ids[0], 77);
    assert_false(nh_config_contains(e, 1));
    assert_null(nh_config_node(e, 0));
    assert_null(nh_config_find(e, 1));
    assert_true(nh_config_equal(e, e2));
    assert_false(nh_config_equal(e, c));

    /* derived from an empty configuration: empty, never NULL */
    nh_config *d[] = {nh_config_remove(e, all, 1),       nh_config_difference(e, c),
                      nh_config_sort_by_id(e),           nh_config_sort_by_latency(e),
                      nh_config_sort_by_last_error(e),   nh_config_union(e, e2),
                      nh_config_without_errors(e, NULL), nh_config_add(e, NULL, 0)};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        assert_non_null(d[i]);
        assert_int_equal(nh_config_size(d[i]), 0);
        nh_config_unref(d[i]);
    }
    /* union with a non-empty configuration: a copy of it, not an alias */
    nh_config *u = nh_config_union(e, c);
    assert_ptr_not_equal(u, c);
    assert_true(nh_config_equal(u, c));
    nh_config *u2 = nh_config_union(c, e);
    assert_ptr_not_equal(u2, c);
    assert_true(nh_config_equal(u2, c));
    /* the registry survives: an empty configuration can still add and extend */
    nh_config *a = nh_config_add(e, all, 1);
    EXPECT_IDS(a, 1);
    nh_node_addr more[] = {{.id = 3, .address = f->addr[2]}};
    nh_config *x = extend_map(e, more, 1);
    EXPECT_IDS(x, 3);
    nh_config_unref(x);
    nh_config_unref(a);
    nh_config_unref(u2);
    nh_config_unref(u);
    nh_config_unref(e2);
    nh_config_unref(e);
    nh_config_unref(c);
}

static void test_null_configurations_read_as_empty(void **state) {
    (void)state;
    assert_int_equal(nh_config_size(NULL), 0);
    assert_int_equal(nh_config_ids(NULL, NULL, 0), 0);
    assert_false(nh_config_contains(NULL, 1));
    assert_true(nh_config_equal(NULL, NULL));
    assert_null(nh_config_ref(NULL));
    nh_config_unref(NULL);
}

/* ---- extend ------------------------------------------------------------------------------- */

static void test_extend_numbers_new_nodes_after_the_largest_id(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 3);
    const char *a[] = {f->addr[3], f->addr[4]};
    nh_config_opts o = list_opts(a, 2);
    nh_config *x;
    nh_error err;
    assert_int_equal(nh_config_extend(c, &o, &x, &err), 0);
    EXPECT_IDS(x, 1, 2, 3, 4, 5);
    assert_string_equal(nh_node_address(nh_config_find(x, 5)), f->addr[4]);
    /* the same node objects as the source (one registry) */
    for (uint32_t id = 1; id <= 3; id++)
        assert_ptr_equal(nh_config_find(x, id), nh_config_find(c, id));
    /* a map extend, then a list extend from the smaller source: IDs follow the registry */
    nh_node_addr m[] = {{.id = 10, .address = f->addr[5]}};
    nh_config *y = extend_map(c, m, 1);
    EXPECT_IDS(y, 1, 2, 3, 10);
    const char *b[] = {f->addr[6]};
    o = list_opts(b, 1);
    nh_config *z;
    assert_int_equal(nh_config_extend(c, &o, &z, &err), 0);
    EXPECT_IDS(z, 1, 2, 3, 11);
    nh_config_unref(z);
    nh_config_unref(y);
    nh_config_unref(x);
    nh_config_unref(c);
}

static void test_extend_reuses_a_node_with_the_same_id_and_address(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 2);
    nh_config *small = nh_config_remove(c, (const uint32_t[]){2}, 1);
    char local[32];
    snprintf(local, sizeof local, "localhost:%d", f->port[1]);
    nh_node_addr m[] = {{.id = 2, .address = local}, {.id = 3, .address = f->addr[2]}};
    nh_config *x = extend_map(small, m, 2);
    EXPECT_IDS(x, 1, 2, 3);
    assert_ptr_equal(nh_config_find(x, 2), nh_config_find(c, 2));
    nh_config_unref(x);
    nh_config_unref(small);
    nh_config_unref(c);
}

static void test_extend_with_null_options_returns_a_copy(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 2);
    nh_config *x;
    nh_error err;
    assert_int_equal(nh_config_extend(c, NULL, &x, &err), 0);
    assert_ptr_not_equal(x, c);
    assert_true(nh_config_equal(x, c));
    nh_config_unref(x);
    nh_config_unref(c);
}

static void test_extend_rejects_conflicts_and_changes_nothing(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 2); /* 1: addr0, 2: addr1 */
    char msg[160], local[32];

    nh_node_addr idc[] = {{.id = 2, .address = f->addr[2]}};
    nh_config_opts o = map_opts(idc, 1);
    snprintf(msg, sizeof msg, "node 2 already in use by \"%s\"", f->addr[1]);
    expect_extend_error(c, &o, msg);

    nh_node_addr adc[] = {{.id = 3, .address = f->addr[0]}};
    o = map_opts(adc, 1);
    snprintf(msg, sizeof msg, "address \"%s\" already in use by node 1", f->addr[0]);
    expect_extend_error(c, &o, msg);

    snprintf(local, sizeof local, "localhost:%d", f->port[1]);
    nh_node_addr ndc[] = {{.id = 3, .address = local}};
    o = map_opts(ndc, 1);
    snprintf(msg, sizeof msg, "address \"%s\" already in use by node 2", f->addr[1]);
    expect_extend_error(c, &o, msg);

    const char *la[] = {f->addr[3], f->addr[0]};
    o = list_opts(la, 2);
    snprintf(msg, sizeof msg, "address \"%s\" already in use by node 1", f->addr[0]);
    expect_extend_error(c, &o, msg);

    nh_node_addr zero[] = {{.id = 0, .address = f->addr[3]}};
    o = map_opts(zero, 1);
    expect_extend_error(c, &o, "node 0 is reserved");

    /* a valid node before a conflicting one is not created either */
    nh_node_addr part[] = {{.id = 3, .address = f->addr[3]}, {.id = 4, .address = f->addr[1]}};
    o = map_opts(part, 2);
    snprintf(msg, sizeof msg, "address \"%s\" already in use by node 2", f->addr[1]);
    expect_extend_error(c, &o, msg);

    /* nothing was registered: ID 3 takes another address, and a list continues after 2 */
    nh_node_addr ok3[] = {{.id = 3, .address = f->addr[4]}};
    nh_config *x = extend_map(c, ok3, 1);
    EXPECT_IDS(x, 1, 2, 3);
    assert_string_equal(nh_node_address(nh_config_find(x, 3)), f->addr[4]);
    nh_config *small = nh_config_remove(x, (const uint32_t[]){3}, 1);
    nh_config *y;
    nh_error err;
    const char *lb[] = {f->addr[3]};
    o = list_opts(lb, 1);
    assert_int_equal(nh_config_extend(small, &o, &y, &err), 0);
    EXPECT_IDS(y, 1, 2, 4);
    EXPECT_IDS(c, 1, 2);
    nh_config_unref(y);
    nh_config_unref(small);
    nh_config_unref(x);
    nh_config_unref(c);
}

typedef struct conc_arg {
    const nh_config *base;
    nh_node_addr node;
    const char *address; /* list form when set */
    nh_config *out;
    int rc;
    char why[NH_ERROR_MESSAGE_MAX];
} conc_arg;

static void *conc_extend(void *p) {
    conc_arg *a = p;
    nh_config_opts o = a->address ? list_opts(&a->address, 1) : map_opts(&a->node, 1);
    nh_error err;
    a->rc = nh_config_extend(a->base, &o, &a->out, &err);
    if (a->rc != 0) snprintf(a->why, sizeof a->why, "%s", err.message);
    return NULL;
}

static void run_concurrently(conc_arg *args) {
    pthread_t t[NCONC];
    for (int i = 0; i < NCONC; i++)
        assert_int_equal(pthread_create(&t[i], NULL, conc_extend, &args[i]), 0);
    for (int i = 0; i < NCONC; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < NCONC; i++)
        if (args[i].rc != 0) fail_msg("extend %d: %s", i, args[i].why);
}

static void test_concurrent_extends_with_distinct_ids_each_add_their_node(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 1);
    conc_arg args[NCONC];
    for (int i = 0; i < NCONC; i++)
        args[i] = (conc_arg){.base = c, .node = {(uint32_t)(10 + i), f->addr[1 + i]}};
    run_concurrently(args);
    nh_config *all = nh_config_ref(c);
    for (int i = 0; i < NCONC; i++) {
        EXPECT_IDS(args[i].out, 1, (uint32_t)(10 + i));
        nh_config *u = nh_config_union(all, args[i].out);
        nh_config_unref(all);
        all = u;
        nh_config_unref(args[i].out);
    }
    EXPECT_IDS(all, 1, 10, 11, 12, 13, 14);
    nh_config_unref(all);
    nh_config_unref(c);
}

static void test_concurrent_extends_with_one_new_id_open_it_once(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 1);
    conc_arg args[NCONC];
    for (int i = 0; i < NCONC; i++)
        args[i] = (conc_arg){.base = c, .node = {50, f->addr[1]}};
    run_concurrently(args);
    for (int i = 0; i < NCONC; i++) {
        EXPECT_IDS(args[i].out, 1, 50);
        assert_ptr_equal(nh_config_find(args[i].out, 50), nh_config_find(args[0].out, 50));
    }
    for (int i = 0; i < NCONC; i++)
        nh_config_unref(args[i].out);
    nh_config_unref(c);
}

static void test_concurrent_list_extends_get_distinct_ids(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 1);
    conc_arg args[NCONC];
    for (int i = 0; i < NCONC; i++)
        args[i] = (conc_arg){.base = c, .address = f->addr[1 + i]};
    run_concurrently(args);
    bool seen[NCONC + 2] = {false};
    for (int i = 0; i < NCONC; i++) {
        assert_int_equal(nh_config_size(args[i].out), 2);
        uint32_t id = nh_node_id(nh_config_node(args[i].out, 1));
        assert_in_range(id, 2, NCONC + 1);
        assert_false(seen[id]);
        seen[id] = true;
        assert_string_equal(nh_node_address(nh_config_node(args[i].out, 1)), f->addr[1 + i]);
        nh_config_unref(args[i].out);
    }
    nh_config_unref(c);
}

typedef struct owner_arg {
    const nh_config *base;
    const char *addr;
    nh_config *out;
    int rc;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} owner_arg;

static void extend_on_owner(void *p) {
    owner_arg *a = p;
    nh_node_addr m[] = {{.id = 7, .address = a->addr}};
    nh_config_opts o = map_opts(m, 1);
    nh_error err;
    a->rc = nh_config_extend(a->base, &o, &a->out, &err);
    pthread_mutex_lock(&a->mu);
    a->done = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void test_extend_works_on_the_owner_thread(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 1);
    owner_arg a = {.base = c, .addr = f->addr[1]};
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    assert_int_equal(nh_runtime_post(f->rt, extend_on_owner, &a), 0);
    pthread_mutex_lock(&a.mu);
    while (!a.done)
        pthread_cond_wait(&a.cv, &a.mu);
    pthread_mutex_unlock(&a.mu);
    assert_int_equal(a.rc, 0);
    EXPECT_IDS(a.out, 1, 7);
    nh_config_unref(a.out);
    nh_config_unref(c);
    pthread_cond_destroy(&a.cv);
    pthread_mutex_destroy(&a.mu);
}

/* ---- set operations ----------------------------------------------------------------------- */

static void test_add_existing_ids_leaves_the_configuration_equal(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 3);
    nh_config *a = nh_config_add(c, (const uint32_t[]){1, 2, 3}, 3);
    assert_true(nh_config_equal(a, c));
    assert_ptr_not_equal(a, c);
    nh_config_unref(a);
    nh_config_unref(c);
}

static void test_add_ignores_unknown_ids(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 3);
    nh_config *a = nh_config_add(c, (const uint32_t[]){999}, 1);
    assert_true(nh_config_equal(a, c));
    nh_config_unref(a);
    nh_config_unref(c);
}

static void test_add_duplicate_ids_adds_once_sorted_by_id(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 4);
    nh_config *small = nh_config_remove(c, (const uint32_t[]){1, 3}, 2);
    EXPECT_IDS(small, 2, 4);
    nh_config *a = nh_config_add(small, (const uint32_t[]){3, 3, 3}, 3);
    EXPECT_IDS(a, 2, 3, 4);
    nh_config *b = nh_config_add(small, (const uint32_t[]){3, 1, 999, 1}, 4);
    EXPECT_IDS(b, 1, 2, 3, 4);
    nh_config_unref(b);
    nh_config_unref(a);
    nh_config_unref(small);
    nh_config_unref(c);
}

static void test_union_with_a_subset_is_equal(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 3);
    nh_config *sub = nh_config_remove(c, (const uint32_t[]){2}, 1);
    nh_config *u = nh_config_union(c, sub);
    assert_true(nh_config_equal(u, c));
    nh_config *u2 = nh_config_union(sub, c);
    assert_true(nh_config_equal(u2, c));
    nh_config_unref(u2);
    nh_config_unref(u);
    nh_config_unref(sub);
    nh_config_unref(c);
}

static void test_union_with_an_extended_configuration_has_all_nodes(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 3);
    nh_node_addr m[] = {{.id = 4, .address = f->addr[3]}, {.id = 5, .address = f->addr[4]}};
    nh_config *x = extend_map(c, m, 2);
    nh_config *u = nh_config_union(c, x);
    EXPECT_IDS(u, 1, 2, 3, 4, 5);
    nh_config_unref(u);
    nh_config_unref(x);
    nh_config_unref(c);
}

static void test_union_does_not_duplicate_nodes(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 3);
    nh_config *one = nh_config_remove(c, (const uint32_t[]){2, 3}, 2);
    nh_config *u = nh_config_union(one, one);
    EXPECT_IDS(u, 1);
    nh_config *a = nh_config_remove(c, (const uint32_t[]){3}, 1);
    nh_config *b = nh_config_remove(c, (const uint32_t[]){1}, 1);
    nh_config *ab = nh_config_union(a, b);
    EXPECT_IDS(ab, 1, 2, 3);
    nh_config_unref(ab);
    nh_config_unref(b);
    nh_config_unref(a);
    nh_config_unref(u);
    nh_config_unref(one);
    nh_config_unref(c);
}

static void test_remove_drops_the_nodes_and_keeps_the_order(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 4);
    nh_config *r = nh_config_remove(c, (const uint32_t[]){2}, 1);
    EXPECT_IDS(r, 1, 3, 4);
    /* an order other than by ID is kept */
    set_latency(nh_config_find(c, 1), 400);
    set_latency(nh_config_find(c, 2), 300);
    set_latency(nh_config_find(c, 3), 200);
    set_latency(nh_config_find(c, 4), 100);
    nh_config *s = nh_config_sort_by_latency(c);
    EXPECT_IDS(s, 4, 3, 2, 1);
    nh_config *r2 = nh_config_remove(s, (const uint32_t[]){3, 999}, 2);
    EXPECT_IDS(r2, 4, 2, 1);
    nh_config_unref(r2);
    nh_config_unref(s);
    nh_config_unref(r);
    nh_config_unref(c);
}

static void test_difference_of_extended_and_base_is_the_new_nodes(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 3);
    const char *a[] = {f->addr[3], f->addr[4]};
    nh_config_opts o = list_opts(a, 2);
    nh_config *x;
    nh_error err;
    assert_int_equal(nh_config_extend(c, &o, &x, &err), 0);
    nh_config *d = nh_config_difference(x, c);
    EXPECT_IDS(d, 4, 5);
    nh_config *d0 = nh_config_difference(c, x);
    assert_int_equal(nh_config_size(d0), 0);
    nh_config_unref(d0);
    nh_config_unref(d);
    nh_config_unref(x);
    nh_config_unref(c);
}

static void test_deriving_never_changes_the_source(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 3);
    nh_config *sub = nh_config_remove(c, (const uint32_t[]){1}, 1);
    nh_node_addr m[] = {{.id = 9, .address = f->addr[5]}};
    nh_config *d[] = {
        nh_config_add(sub, (const uint32_t[]){1}, 1),
        nh_config_remove(sub, (const uint32_t[]){2}, 1),
        nh_config_union(sub, c),
        nh_config_difference(sub, c),
        nh_config_sort_by_id(sub),
        nh_config_sort_by_latency(sub),
        nh_config_sort_by_last_error(sub),
        nh_config_without_errors(sub, NULL),
        extend_map(sub, m, 1),
    };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        assert_non_null(d[i]);
        assert_ptr_not_equal(d[i], sub);
        assert_ptr_not_equal(d[i], c);
    }
    EXPECT_IDS(sub, 2, 3);
    EXPECT_IDS(c, 1, 2, 3);
    EXPECT_IDS(d[8], 2, 3, 9);
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        nh_config_unref(d[i]);
    EXPECT_IDS(sub, 2, 3);
    nh_config_unref(sub);
    nh_config_unref(c);
}

/* ---- sorting ------------------------------------------------------------------------------ */

static void test_sort_by_id_restores_id_order(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 4);
    set_latency(nh_config_find(c, 1), 40);
    set_latency(nh_config_find(c, 2), 10);
    set_latency(nh_config_find(c, 3), 30);
    set_latency(nh_config_find(c, 4), 20);
    nh_config *s = nh_config_sort_by_latency(c);
    EXPECT_IDS(s, 2, 4, 3, 1);
    nh_config *i = nh_config_sort_by_id(s);
    EXPECT_IDS(i, 1, 2, 3, 4);
    EXPECT_IDS(s, 2, 4, 3, 1);
    nh_config_unref(i);
    nh_config_unref(s);
    nh_config_unref(c);
}

static void test_sort_by_latency_puts_unmeasured_last_and_is_stable(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 6);
    /* all unmeasured: order unchanged */
    nh_config *s0 = nh_config_sort_by_latency(c);
    EXPECT_IDS(s0, 1, 2, 3, 4, 5, 6);
    int64_t lat[] = {-1, 300, -1, 100, 300, 200};
    for (uint32_t id = 1; id <= 6; id++)
        set_latency(nh_config_find(c, id), lat[id - 1]);
    nh_config *s = nh_config_sort_by_latency(c);
    EXPECT_IDS(s, 4, 6, 2, 5, 1, 3);
    /* stable on an input that is not sorted by ID: 4 stays before 2 when they tie */
    set_latency(nh_config_find(c, 2), 100);
    nh_config *s2 = nh_config_sort_by_latency(s);
    EXPECT_IDS(s2, 4, 2, 6, 5, 1, 3);
    nh_config_unref(s2);
    nh_config_unref(s);
    nh_config_unref(s0);
    nh_config_unref(c);
}

/* Waits until every node of c reported a connect failure (nothing listens on their ports). */
static void wait_all_errored(const nh_config *c) {
    for (int t = 0; t < 1000; t++) {
        bool all = true;
        for (size_t i = 0; i < nh_config_size(c); i++)
            if (!nh_node_last_error(nh_config_node(c, i), NULL)) all = false;
        if (all) return;
        nh_test_sleep_ms(10);
    }
    fail_msg("the nodes did not report their connect errors");
}

static void clear_last_error(nh_node *n) {
    pthread_mutex_lock(&n->err_mu);
    n->has_err = false;
    pthread_mutex_unlock(&n->err_mu);
}

static void test_sort_by_last_error_puts_nodes_without_errors_first_stably(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 5);
    wait_all_errored(c);
    /* all with errors: order unchanged */
    nh_config *s0 = nh_config_sort_by_last_error(c);
    EXPECT_IDS(s0, 1, 2, 3, 4, 5);
    /* the long backoff keeps the nodes from retrying while the errors are cleared */
    clear_last_error(nh_config_find(c, 2));
    clear_last_error(nh_config_find(c, 4));
    nh_config *s = nh_config_sort_by_last_error(c);
    EXPECT_IDS(s, 2, 4, 1, 3, 5);
    nh_error e;
    assert_false(nh_node_last_error(nh_config_find(c, 2), &e));
    nh_config_unref(s);
    nh_config_unref(s0);
    nh_config_unref(c);
}

/* ---- without errors ----------------------------------------------------------------------- */

static nh_node_reply ok_reply(uint32_t id) {
    nh_node_reply r = {.node_id = id};
    nh_error_clear(&r.err);
    return r;
}

static nh_node_reply err_reply(uint32_t id, nh_code code, nh_err_kind kind, const char *msg) {
    nh_node_reply r = {.node_id = id};
    nh_error_set(&r.err, code, kind, id, "node %u (x): %s", id, msg);
    return r;
}

static void test_without_errors_removes_failed_nodes_but_not_skipped_ones(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 5);
    nh_node_reply replies[] = {
        ok_reply(1),
        err_reply(2, NH_UNAVAILABLE, NH_ERR_TRANSPORT, "stream broken"),
        err_reply(3, NH_UNAVAILABLE, NH_ERR_LOCAL, "skip node"),
        err_reply(4, NH_DEADLINE_EXCEEDED, NH_ERR_TIMEOUT, "timeout after 10 ms"),
        ok_reply(5),
    };
    nh_qc_outcome o = {.replies = replies, .n_replies = 5, .n_node_errors = 2};
    nh_config *w = nh_config_without_errors(c, &o);
    EXPECT_IDS(w, 1, 3, 5);
    nh_config_unref(w);

    /* one specific failed node */
    o.replies = &replies[3];
    o.n_replies = 1;
    w = nh_config_without_errors(c, &o);
    EXPECT_IDS(w, 1, 2, 3, 5);
    nh_config_unref(w);

    /* a status error from the handler counts too */
    nh_node_reply st = err_reply(1, NH_NOT_FOUND, NH_ERR_STATUS, "no such key");
    o.replies = &st;
    w = nh_config_without_errors(c, &o);
    EXPECT_IDS(w, 2, 3, 4, 5);
    nh_config_unref(w);
    nh_config_unref(c);
}

static void test_without_errors_of_all_nodes_is_empty(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 3);
    nh_node_reply replies[3];
    for (uint32_t i = 0; i < 3; i++)
        replies[i] = err_reply(i + 1, NH_UNAVAILABLE, NH_ERR_TRANSPORT, "down");
    nh_qc_outcome o = {.replies = replies, .n_replies = 3, .n_node_errors = 3};
    nh_config *w = nh_config_without_errors(c, &o);
    assert_non_null(w);
    assert_int_equal(nh_config_size(w), 0);
    nh_config_unref(w);
    nh_config_unref(c);
}

static void test_without_errors_and_no_errors_is_a_copy(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 3);
    nh_node_reply replies[] = {ok_reply(1), ok_reply(3)};
    nh_qc_outcome o = {.replies = replies, .n_replies = 2};
    nh_config *w = nh_config_without_errors(c, &o);
    assert_ptr_not_equal(w, c);
    assert_true(nh_config_equal(w, c));
    nh_config_unref(w);
    nh_qc_outcome none = {0};
    w = nh_config_without_errors(c, &none);
    assert_true(nh_config_equal(w, c));
    nh_config_unref(w);
    w = nh_config_without_errors(c, NULL);
    assert_true(nh_config_equal(w, c));
    nh_config_unref(w);
    nh_config_unref(c);
}

/* ---- life cycle --------------------------------------------------------------------------- */

/* The kind of error an RPC on n fails with (nothing listens, so it always fails). */
static nh_err_kind rpc_error_kind(nh_node *n) {
    nh_call_opts o = {.timeout_ms = 200};
    nh_buf resp = {0};
    nh_error err;
    assert_int_equal(nh_rpc(n, "test.Echo.Echo", "x", 1, &o, &resp, &err), -1);
    nh_buf_free(&resp);
    return err.kind;
}

static void test_released_configuration_keeps_derived_ones_working(void **state) {
    fixture *f = *state;
    nh_config *c = new_list(f, 3);
    nh_config *d = nh_config_remove(c, (const uint32_t[]){1}, 1);
    nh_node_addr m[] = {{.id = 4, .address = f->addr[3]}};
    nh_config *x = extend_map(d, m, 1);
    nh_node *n2 = nh_config_find(d, 2);
    nh_node_ref(n2); /* to look at the node after every configuration is gone */

    nh_config_unref(c);
    EXPECT_IDS(d, 2, 3);
    EXPECT_IDS(x, 2, 3, 4);
    assert_string_equal(nh_node_address(nh_config_find(d, 3)), f->addr[2]);
    assert_int_not_equal(rpc_error_kind(n2), NH_ERR_CLOSED);
    nh_config_unref(d);
    assert_int_equal(nh_node_id(nh_config_find(x, 2)), 2);
    assert_int_not_equal(rpc_error_kind(n2), NH_ERR_CLOSED);

    /* the last configuration closes the registry's nodes */
    nh_config_unref(x);
    assert_int_equal(rpc_error_kind(n2), NH_ERR_CLOSED);
    nh_node_unref(n2);
}

/* ---- waiting for the nodes ---------------------------------------------------------------- */

static void count_on_owner(void *p) {
    owner_arg *a = p;
    a->rc = (int)nh_config_wait_reachable(a->base, 60000); /* does not wait there */
    pthread_mutex_lock(&a->mu);
    a->done = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void test_wait_reachable_waits_for_every_node_or_the_timeout(void **state) {
    fixture *f = *state;
    nh_error err;
    nh_server *srv;
    nh_server_opts so = {.listen = f->addr[0]};
    assert_int_equal(nh_server_new(f->rt, &so, &srv, NULL, &err), 0);
    nh_config *up = new_list(f, 1), *both = new_list(f, 2); /* addr[1]: nothing listens */
    assert_int_equal(nh_config_wait_reachable(up, 5000), 1);
    int64_t start = nh_now_ns();
    assert_int_equal(nh_config_wait_reachable(both, 200), 1);
    assert_true(nh_now_ns() - start >= 200 * 1000000LL);
    assert_int_equal(nh_config_wait_reachable(NULL, 5000), 0);
    owner_arg a = {.base = both};
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    assert_int_equal(nh_runtime_post(f->rt, count_on_owner, &a), 0);
    pthread_mutex_lock(&a.mu);
    while (!a.done)
        pthread_cond_wait(&a.cv, &a.mu);
    pthread_mutex_unlock(&a.mu);
    assert_int_equal(a.rc, 1);
    pthread_cond_destroy(&a.cv);
    pthread_mutex_destroy(&a.mu);
    nh_config_unref(up);
    nh_config_unref(both);
    nh_server_free(srv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_new_from_address_list_numbers_nodes_from_one),
        T(test_new_from_node_map_sorts_by_id),
        T(test_new_keeps_host_names_and_dials_them),
        T(test_new_accepts_a_name_that_does_not_resolve),
        T(test_new_compares_host_names_without_case_or_trailing_dot),
        T(test_new_rejects_missing_nodes_with_exact_messages),
        T(test_new_rejects_node_zero),
        T(test_new_rejects_a_duplicate_address),
        T(test_new_rejects_a_duplicate_address_after_normalization),
        T(test_new_rejects_one_id_with_two_addresses),
        T(test_new_treats_a_repeated_id_and_address_as_one_node),
        T(test_new_rejects_invalid_addresses),
        T(test_new_rejects_an_invalid_metadata_key),
        T(test_empty_configuration_behaves_as_an_empty_set),
        T(test_null_configurations_read_as_empty),
        T(test_extend_numbers_new_nodes_after_the_largest_id),
        T(test_extend_reuses_a_node_with_the_same_id_and_address),
        T(test_extend_with_null_options_returns_a_copy),
        T(test_extend_rejects_conflicts_and_changes_nothing),
        T(test_concurrent_extends_with_distinct_ids_each_add_their_node),
        T(test_concurrent_extends_with_one_new_id_open_it_once),
        T(test_concurrent_list_extends_get_distinct_ids),
        T(test_extend_works_on_the_owner_thread),
        T(test_add_existing_ids_leaves_the_configuration_equal),
        T(test_add_ignores_unknown_ids),
        T(test_add_duplicate_ids_adds_once_sorted_by_id),
        T(test_union_with_a_subset_is_equal),
        T(test_union_with_an_extended_configuration_has_all_nodes),
        T(test_union_does_not_duplicate_nodes),
        T(test_remove_drops_the_nodes_and_keeps_the_order),
        T(test_difference_of_extended_and_base_is_the_new_nodes),
        T(test_deriving_never_changes_the_source),
        T(test_sort_by_id_restores_id_order),
        T(test_sort_by_latency_puts_unmeasured_last_and_is_stable),
        T(test_sort_by_last_error_puts_nodes_without_errors_first_stably),
        T(test_without_errors_removes_failed_nodes_but_not_skipped_ones),
        T(test_without_errors_of_all_nodes_is_empty),
        T(test_without_errors_and_no_errors_is_a_copy),
        T(test_released_configuration_keeps_derived_ones_working),
        T(test_wait_reachable_waits_for_every_node_or_the_timeout),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
