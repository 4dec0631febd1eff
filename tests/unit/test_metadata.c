/* Unit tests for wire/metadata: gorums-node-id parsing and peer classification (spec 1.6,
 * interop cases 6.1.1-3). Header values are not NUL-terminated: every value below sits in a
 * larger buffer followed by extra digits, so a parser that ignores the length fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "wire/metadata.h"

#include <string.h>

/* Parses value as if it were followed by trailing junk digits in the same buffer. */
static uint32_t parse_embedded(const char *value) {
    char buf[64];
    size_t len = strlen(value);
    assert_true(len + 4 < sizeof(buf));
    memcpy(buf, value, len);
    memcpy(buf + len, "9999", 4); /* not NUL-terminated after the value */
    return nh_md_parse_node_id(buf, len);
}

static void test_parse_valid_decimal_values(void **state) {
    (void)state;
    assert_int_equal(parse_embedded("1"), 1);
    assert_int_equal(parse_embedded("7"), 7);
    assert_int_equal(parse_embedded("42"), 42);
    assert_int_equal(parse_embedded("1048576"), 1048576);
    assert_int_equal(parse_embedded("4294967295"), UINT32_MAX);
}

static void test_parse_leading_zeros_allowed(void **state) {
    (void)state;
    assert_int_equal(parse_embedded("007"), 7);
    assert_int_equal(parse_embedded("0000000000000000000042"), 42);
    assert_int_equal(parse_embedded("04294967295"), UINT32_MAX);
}

static void test_parse_invalid_values_give_zero(void **state) {
    (void)state;
    const char *bad[] = {
        "",    "0",  "-1",  "+7",  " 7", "7 ",         "0x7",         "7_0",
        "abc", "7a", "1.5", "\t7", "-0", "4294967296", "99999999999", "18446744073709551617"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        print_message("value \"%s\"\n", bad[i]);
        assert_int_equal(parse_embedded(bad[i]), 0);
    }
    assert_int_equal(nh_md_parse_node_id(NULL, 0), 0);
    assert_int_equal(nh_md_parse_node_id("00", 2), 0);
}

static void test_parse_respects_length_not_nul(void **state) {
    (void)state;
    const char buf[] = "12345";
    assert_int_equal(nh_md_parse_node_id(buf, 0), 0);
    assert_int_equal(nh_md_parse_node_id(buf, 1), 1);
    assert_int_equal(nh_md_parse_node_id(buf, 3), 123);
    assert_int_equal(nh_md_parse_node_id(buf, 5), 12345);
    /* "4294967296" is out of range but its first nine digits are fine */
    const char big[] = "4294967296";
    assert_int_equal(nh_md_parse_node_id(big, 9), 429496729);
    assert_int_equal(nh_md_parse_node_id(big, 10), 0);
}

/* Storage for headers built in one shared buffer (keys and values back to back). */
typedef struct md_set {
    char buf[512];
    size_t used;
    nh_md_view md[8];
    size_t count;
} md_set;

/* Appends a header; its key and value are copied into the shared buffer without NULs and
 * followed by digits and letters so a NUL-terminated read would run into them. */
static void add_md(md_set *s, const char *key, const char *value) {
    size_t kl = strlen(key), vl = strlen(value);
    assert_true(s->count < 8 && s->used + kl + vl + 8 < sizeof(s->buf));
    char *k = s->buf + s->used;
    memcpy(k, key, kl);
    memcpy(k + kl, "x1", 2);
    char *v = k + kl + 2;
    memcpy(v, value, vl);
    memcpy(v + vl, "123", 3);
    s->used += kl + vl + 5;
    s->md[s->count++] = (nh_md_view){k, kl, v, vl};
}

static nh_peer_class classify(const md_set *s, uint32_t *id) {
    *id = 0xdeadbeef; /* must be overwritten */
    return nh_md_classify(s->md, s->count, id);
}

static void test_absent_header_is_regular_client(void **state) {
    (void)state;
    md_set s = {0};
    uint32_t id;
    assert_int_equal(classify(&s, &id), NH_MD_REGULAR);
    assert_int_equal(id, 0);
    add_md(&s, "user-agent", "grpc-go/1.70");
    add_md(&s, "gorums-node-idx", "2"); /* a longer key is a different key */
    add_md(&s, "gorums-node-i", "2");   /* and so is a prefix */
    add_md(&s, "Gorums-Node-Id", "2");  /* keys are compared exactly */
    assert_int_equal(classify(&s, &id), NH_MD_REGULAR);
    assert_int_equal(id, 0);
    assert_int_equal(nh_md_classify(NULL, 0, &id), NH_MD_REGULAR);
    assert_int_equal(id, 0);
}

static void test_zero_value_is_client_peer(void **state) {
    (void)state;
    md_set s = {0};
    uint32_t id;
    add_md(&s, "user-agent", "x");
    add_md(&s, NH_NODE_ID_KEY, "0");
    assert_int_equal(classify(&s, &id), NH_MD_CLIENT);
    assert_int_equal(id, 0);
}

static void test_invalid_value_is_client_peer(void **state) {
    (void)state;
    const char *bad[] = {"abc", "-1", "", "4294967296", "+7", " 7", "0x7", "7_0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        print_message("value \"%s\"\n", bad[i]);
        md_set s = {0};
        uint32_t id;
        add_md(&s, NH_NODE_ID_KEY, bad[i]);
        assert_int_equal(classify(&s, &id), NH_MD_CLIENT);
        assert_int_equal(id, 0);
    }
}

static void test_valid_value_gives_id(void **state) {
    (void)state;
    const struct {
        const char *value;
        uint32_t id;
    } cases[] = {{"2", 2}, {"7", 7}, {"007", 7}, {"1048576", 1048576}, {"4294967295", UINT32_MAX}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        md_set s = {0};
        uint32_t id;
        add_md(&s, "content-type", "application/grpc");
        add_md(&s, NH_NODE_ID_KEY, cases[i].value);
        assert_int_equal(classify(&s, &id), NH_MD_ID);
        assert_int_equal(id, cases[i].id);
    }
}

static void test_first_node_id_value_wins(void **state) {
    (void)state;
    uint32_t id;
    md_set a = {0};
    add_md(&a, NH_NODE_ID_KEY, "2");
    add_md(&a, "other", "v");
    add_md(&a, NH_NODE_ID_KEY, "0");
    assert_int_equal(classify(&a, &id), NH_MD_ID);
    assert_int_equal(id, 2);

    md_set b = {0};
    add_md(&b, NH_NODE_ID_KEY, "0");
    add_md(&b, NH_NODE_ID_KEY, "2");
    assert_int_equal(classify(&b, &id), NH_MD_CLIENT);
    assert_int_equal(id, 0);

    md_set c = {0};
    add_md(&c, NH_NODE_ID_KEY, "abc");
    add_md(&c, NH_NODE_ID_KEY, "5");
    assert_int_equal(classify(&c, &id), NH_MD_CLIENT);
    assert_int_equal(id, 0);
}

static void test_classify_accepts_null_id(void **state) {
    (void)state;
    md_set s = {0};
    add_md(&s, NH_NODE_ID_KEY, "3");
    assert_int_equal(nh_md_classify(s.md, s.count, NULL), NH_MD_ID);
}

static void test_metadata_key_validity(void **state) {
    (void)state;
    assert_true(nh_md_key_valid("gorums-node-id"));
    assert_true(nh_md_key_valid("a"));
    assert_true(nh_md_key_valid("x.y_z-0123456789"));
    assert_true(nh_md_key_valid("abcdefghijklmnopqrstuvwxyz"));
    assert_true(nh_md_key_valid("-._"));
    assert_false(nh_md_key_valid(""));
    assert_false(nh_md_key_valid(NULL));
    assert_false(nh_md_key_valid("Gorums"));
    assert_false(nh_md_key_valid("a b"));
    assert_false(nh_md_key_valid(":path"));
    assert_false(nh_md_key_valid("k/v"));
    assert_false(nh_md_key_valid("key\t"));
    assert_false(nh_md_key_valid("caf\xc3\xa9"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid_decimal_values),
        cmocka_unit_test(test_parse_leading_zeros_allowed),
        cmocka_unit_test(test_parse_invalid_values_give_zero),
        cmocka_unit_test(test_parse_respects_length_not_nul),
        cmocka_unit_test(test_absent_header_is_regular_client),
        cmocka_unit_test(test_zero_value_is_client_peer),
        cmocka_unit_test(test_invalid_value_is_client_peer),
        cmocka_unit_test(test_valid_value_gives_id),
        cmocka_unit_test(test_first_node_id_value_wins),
        cmocka_unit_test(test_classify_accepts_null_id),
        cmocka_unit_test(test_metadata_key_validity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
