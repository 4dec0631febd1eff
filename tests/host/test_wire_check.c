/* Tests of the request wire check (host/plugin/wire_check.c): UTF-8 validity as Go defines it
 * (overlongs, surrogates, > U+10FFFF, truncation), NUL bytes in strings, bytes fields left alone,
 * repeated strings, nested messages, packed and unknown fields skipped, malformed framing
 * (truncation, bad wire types, bad field numbers, over-long varints), the depth bound, and the
 * real generated descriptors of host/proto/nodehost/admin.proto against protobuf-c's own
 * encoder and decoder (the NUL case shows why: protobuf-c decodes "ab\0d" as "ab"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodehost/admin.pb-c.h"
#include "plugin/wire_check.h"

/* ---- a hand-made descriptor: message t.Leaf, which nests itself --------------------------- */

extern const ProtobufCMessageDescriptor leaf_desc;

#define FIELD(n, i, lab, t, d)                                                                     \
    { .name = (n), .id = (i), .label = (lab), .type = (t), .descriptor = (d) }

static const ProtobufCFieldDescriptor leaf_fields[] = {
    FIELD("name", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, NULL),
    FIELD("tags", 2, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_STRING, NULL),
    FIELD("blob", 3, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_BYTES, NULL),
    FIELD("n", 4, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_UINT32, NULL),
    FIELD("nums", 5, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_UINT32, NULL),
    FIELD("child", 6, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_MESSAGE, &leaf_desc),
    FIELD("f64", 7, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_FIXED64, NULL),
    FIELD("f32", 8, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_FLOAT, NULL),
    FIELD("kids", 10, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_MESSAGE, &leaf_desc),
};

/* Ids 1..8 at indexes 0..7, id 10 at index 8; the last entry closes the ranges. */
static const ProtobufCIntRange leaf_ranges[] = {{1, 0}, {10, 8}, {0, 9}};

const ProtobufCMessageDescriptor leaf_desc = {
    .magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    .name = "t.Leaf",
    .short_name = "Leaf",
    .c_name = "T__Leaf",
    .package_name = "t",
    .n_fields = 9,
    .fields = leaf_fields,
    .n_field_ranges = 2,
    .field_ranges = leaf_ranges,
};

/* ---- encoding helpers --------------------------------------------------------------------- */

typedef struct enc {
    uint8_t b[4096];
    size_t n;
} enc;

static void put_varint(enc *e, uint64_t v) {
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        e->b[e->n++] = byte | (v ? 0x80 : 0);
    } while (v);
}

static void put_raw(enc *e, const void *p, size_t n) {
    memcpy(e->b + e->n, p, n);
    e->n += n;
}

static void put_tag(enc *e, uint32_t number, unsigned wt) {
    put_varint(e, ((uint64_t)number << 3) | wt);
}

/* A length-delimited field with n bytes of p. */
static void put_len(enc *e, uint32_t number, const void *p, size_t n) {
    put_tag(e, number, 2);
    put_varint(e, n);
    put_raw(e, p, n);
}

/* A length-delimited field holding a string literal's bytes (embedded NULs included). */
#define PUT_LIT(e, number, lit) put_len((e), (number), (lit), sizeof(lit) - 1)

static nh_wire_status check(const enc *e, nh_wire_fault *f) {
    return nh_wire_check(&leaf_desc, e->b, e->n, f);
}

static const char *describe(nh_wire_status st, const nh_wire_fault *f) {
    static char buf[256];
    return nh_wire_describe(st, f, buf, sizeof buf);
}

/* ---- UTF-8 -------------------------------------------------------------------------------- */

#define U(s) ((const uint8_t *)(s)), (sizeof(s) - 1)

static void test_utf8_valid_sequences(void **state) {
    (void)state;
    assert_true(nh_wire_utf8_valid(U("")));
    assert_true(nh_wire_utf8_valid(U("plain ascii ~\x7f")));
    assert_true(nh_wire_utf8_valid(U("h\xc3\xa9llo")));          /* U+00E9 */
    assert_true(nh_wire_utf8_valid(U("\xc2\x80")));              /* U+0080, smallest 2-byte */
    assert_true(nh_wire_utf8_valid(U("\xdf\xbf")));              /* U+07FF */
    assert_true(nh_wire_utf8_valid(U("\xe0\xa0\x80")));          /* U+0800, smallest 3-byte */
    assert_true(nh_wire_utf8_valid(U("\xe2\x82\xac")));          /* EURO SIGN */
    assert_true(nh_wire_utf8_valid(U("\xed\x9f\xbf")));          /* U+D7FF, below surrogates */
    assert_true(nh_wire_utf8_valid(U("\xee\x80\x80")));          /* U+E000, above surrogates */
    assert_true(nh_wire_utf8_valid(U("\xef\xbf\xbf")));          /* U+FFFF */
    assert_true(nh_wire_utf8_valid(U("\xf0\x90\x80\x80")));      /* U+10000, smallest 4-byte */
    assert_true(nh_wire_utf8_valid(U("\xf0\x9f\x98\x80")));      /* an emoji */
    assert_true(nh_wire_utf8_valid(U("\xf4\x8f\xbf\xbf")));      /* U+10FFFF, the largest */
    assert_true(nh_wire_utf8_valid((const uint8_t *)"a\0b", 3)); /* NUL is UTF-8 */
}

static void test_utf8_invalid_sequences(void **state) {
    (void)state;
    assert_false(nh_wire_utf8_valid(U("\x80")));             /* lone continuation */
    assert_false(nh_wire_utf8_valid(U("ab\xbf")));           /* lone continuation */
    assert_false(nh_wire_utf8_valid(U("\xc0\x80")));         /* overlong NUL */
    assert_false(nh_wire_utf8_valid(U("\xc1\xbf")));         /* overlong U+007F */
    assert_false(nh_wire_utf8_valid(U("\xe0\x80\x80")));     /* overlong 3-byte */
    assert_false(nh_wire_utf8_valid(U("\xe0\x9f\xbf")));     /* overlong U+07FF */
    assert_false(nh_wire_utf8_valid(U("\xed\xa0\x80")));     /* U+D800, a surrogate */
    assert_false(nh_wire_utf8_valid(U("\xed\xbf\xbf")));     /* U+DFFF, a surrogate */
    assert_false(nh_wire_utf8_valid(U("\xf0\x80\x80\x80"))); /* overlong 4-byte */
    assert_false(nh_wire_utf8_valid(U("\xf0\x8f\xbf\xbf"))); /* overlong U+FFFF */
    assert_false(nh_wire_utf8_valid(U("\xf4\x90\x80\x80"))); /* U+110000 */
    assert_false(nh_wire_utf8_valid(U("\xf5\x80\x80\x80"))); /* lead byte F5 */
    assert_false(nh_wire_utf8_valid(U("\xf8\x88\x80\x80\x80")));
    assert_false(nh_wire_utf8_valid(U("\xff")));
    assert_false(nh_wire_utf8_valid(U("\xfe")));
    assert_false(nh_wire_utf8_valid(U("\xe2\x82")));             /* truncated at the end */
    assert_false(nh_wire_utf8_valid(U("\xf0\x9f\x98")));         /* truncated at the end */
    assert_false(nh_wire_utf8_valid(U("\xe2\x28\xa1")));         /* bad continuation */
    assert_false(nh_wire_utf8_valid(U("\xc3(")));                /* bad continuation */
    assert_false(nh_wire_utf8_valid(U("\xf0\x9f\x98\x28")));     /* bad last continuation */
    assert_false(nh_wire_utf8_valid(U("ok\xc3\xa9 then \xc3"))); /* truncated after valid */
}

/* ---- strings in messages ------------------------------------------------------------------ */

static void test_valid_message_with_every_wire_type(void **state) {
    (void)state;
    enc e = {.n = 0};
    PUT_LIT(&e, 1, "h\xc3\xa9llo \xf0\x9f\x98\x80");
    put_len(&e, 2, "a", 1);
    put_len(&e, 2, "", 0);
    PUT_LIT(&e, 3, "\x00\xff\xc0\x80 bytes are not checked");
    put_tag(&e, 4, 0);
    put_varint(&e, UINT64_MAX); /* 10 bytes */
    uint8_t packed[] = {0x01, 0x96, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f};
    put_len(&e, 5, packed, sizeof packed); /* packed repeated uint32 */
    put_tag(&e, 5, 0);                     /* and one unpacked */
    put_varint(&e, 7);
    put_tag(&e, 7, 1);
    put_raw(&e, "\x00\x01\x02\x03\x04\x05\x06\x07", 8);
    put_tag(&e, 8, 5);
    put_raw(&e, "\x00\x00\x80\x3f", 4);
    nh_wire_fault f = {0};
    assert_int_equal(check(&e, &f), NH_WIRE_OK);
    /* Empty input and no input. */
    assert_int_equal(nh_wire_check(&leaf_desc, e.b, 0, &f), NH_WIRE_OK);
    assert_int_equal(nh_wire_check(&leaf_desc, NULL, 0, &f), NH_WIRE_OK);
    assert_int_equal(nh_wire_check(&leaf_desc, NULL, 0, NULL), NH_WIRE_OK);
}

static void test_nul_in_string_is_refused_naming_the_field(void **state) {
    (void)state;
    enc e = {.n = 0};
    put_tag(&e, 4, 0);
    put_varint(&e, 1);
    size_t at = e.n;
    put_len(&e, 1, "acct\0evil", 9);
    nh_wire_fault f = {0};
    assert_int_equal(check(&e, &f), NH_WIRE_NUL_IN_STRING);
    assert_ptr_equal(f.message, &leaf_desc);
    assert_non_null(f.field);
    assert_string_equal(f.field->name, "name");
    assert_int_equal(f.offset, at);
    assert_string_equal(describe(NH_WIRE_NUL_IN_STRING, &f),
                        "t.Leaf.name: string field contains a NUL byte (not supported)");
    /* A lone NUL, a trailing NUL, and a NUL after invalid UTF-8 (NUL is named first). */
    const char *cases[] = {"\0", "acct\0", "\xff\0"};
    size_t lens[] = {1, 5, 2};
    for (size_t i = 0; i < 3; i++) {
        e.n = 0;
        put_len(&e, 1, cases[i], lens[i]);
        assert_int_equal(check(&e, NULL), NH_WIRE_NUL_IN_STRING);
    }
}

static void test_invalid_utf8_in_string_is_refused_naming_the_field(void **state) {
    (void)state;
    const char *bad[] = {"\xff", "acct\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ab\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        enc e = {.n = 0};
        put_len(&e, 1, bad[i], strlen(bad[i]));
        nh_wire_fault f = {0};
        assert_int_equal(check(&e, &f), NH_WIRE_INVALID_UTF8);
        assert_string_equal(f.field->name, "name");
        assert_int_equal(f.offset, 0);
        assert_string_equal(describe(NH_WIRE_INVALID_UTF8, &f),
                            "t.Leaf.name: string field is not valid UTF-8");
    }
}

static void test_repeated_strings_are_each_checked(void **state) {
    (void)state;
    enc e = {.n = 0};
    put_len(&e, 2, "good", 4);
    put_len(&e, 2, "\xc3\xa9", 2);
    nh_wire_fault f = {0};
    assert_int_equal(check(&e, &f), NH_WIRE_OK);
    size_t at = e.n;
    put_len(&e, 2, "b\xffz", 3);
    put_len(&e, 2, "after", 5);
    assert_int_equal(check(&e, &f), NH_WIRE_INVALID_UTF8);
    assert_string_equal(f.field->name, "tags");
    assert_int_equal(f.offset, at);
}

static void test_nested_messages_are_checked_with_their_descriptor(void **state) {
    (void)state;
    /* child { child { name: <bad> } } and kids[1] { name: <NUL> } */
    enc inner = {.n = 0}, mid = {.n = 0}, e = {.n = 0};
    put_len(&inner, 1, "deep\x80", 5);
    put_len(&mid, 6, inner.b, inner.n);
    put_len(&e, 1, "top", 3);
    put_len(&e, 6, mid.b, mid.n);
    nh_wire_fault f = {0};
    assert_int_equal(check(&e, &f), NH_WIRE_INVALID_UTF8);
    assert_string_equal(f.field->name, "name");
    assert_ptr_equal(f.message, &leaf_desc);
    assert_int_equal(f.offset, 5 + 2 + 2); /* "top" field, then two child headers */

    enc kid0 = {.n = 0}, kid1 = {.n = 0};
    put_len(&kid0, 1, "fine", 4);
    put_len(&kid1, 2, "x\0y", 3);
    e.n = 0;
    put_len(&e, 10, kid0.b, kid0.n);
    assert_int_equal(check(&e, &f), NH_WIRE_OK);
    put_len(&e, 10, kid1.b, kid1.n);
    assert_int_equal(check(&e, &f), NH_WIRE_NUL_IN_STRING);
    assert_string_equal(f.field->name, "tags");

    /* A nested message that is itself malformed (claims more than it holds). */
    enc broken = {.n = 0};
    put_tag(&broken, 1, 2);
    put_varint(&broken, 50);
    put_raw(&broken, "short", 5);
    e.n = 0;
    put_len(&e, 6, broken.b, broken.n);
    assert_int_equal(check(&e, &f), NH_WIRE_MALFORMED);
    assert_string_equal(describe(NH_WIRE_MALFORMED, &f), "not a valid t.Leaf");
}

static void test_unknown_fields_are_skipped_without_checks(void **state) {
    (void)state;
    enc e = {.n = 0};
    PUT_LIT(&e, 9, "\xff\x00 not a string we know"); /* unknown LEN: no UTF-8 check */
    put_len(&e, 99, "\xc0\x80", 2);
    put_tag(&e, 1000, 0);
    put_varint(&e, 300);
    put_tag(&e, 12345, 1);
    put_raw(&e, "12345678", 8);
    put_tag(&e, 77, 5);
    put_raw(&e, "1234", 4);
    put_tag(&e, (1u << 29) - 1, 0); /* the largest field number */
    put_varint(&e, 1);
    put_len(&e, 1, "known", 5);
    assert_int_equal(check(&e, NULL), NH_WIRE_OK);
    /* With no descriptor at all everything is unknown: only the framing counts. */
    assert_int_equal(nh_wire_check(NULL, e.b, e.n, NULL), NH_WIRE_OK);
}

/* ---- malformed framing -------------------------------------------------------------------- */

static void expect_malformed(const void *p, size_t n, const char *what) {
    nh_wire_fault f = {0};
    nh_wire_status st = nh_wire_check(&leaf_desc, p, n, &f);
    if (st != NH_WIRE_MALFORMED) fail_msg("%s: status %d, expected malformed", what, (int)st);
}

static void test_malformed_input_is_refused(void **state) {
    (void)state;
    expect_malformed("\x80", 1, "truncated tag");
    expect_malformed("\x20", 1, "varint value missing");
    expect_malformed("\x20\x96", 2, "truncated varint value");
    expect_malformed("\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, "11-byte varint");
    expect_malformed("\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11, "10th byte above 1");
    expect_malformed("\x0a\x05"
                     "ab",
                     4, "length beyond the end");
    expect_malformed("\x0a", 1, "length missing");
    expect_malformed("\x0a\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10, "huge length");
    expect_malformed("\x39\x01\x02\x03", 4, "truncated fixed64");
    expect_malformed("\x45\x01\x02", 3, "truncated fixed32");
    expect_malformed("\x4b", 1, "start group (wire type 3)");
    expect_malformed("\x4c", 1, "end group (wire type 4)");
    expect_malformed("\x4e\x00", 2, "wire type 6");
    expect_malformed("\x4f\x00", 2, "wire type 7");
    expect_malformed("\x00\x00", 2, "field number 0");
    expect_malformed("\x80\x80\x80\x80\x10\x00", 6, "field number 2^29 (tag 2^32)");
    expect_malformed("\x08\x01", 2, "string field as a varint");
    expect_malformed("\x35\x01\x02\x03\x04", 5, "message field as fixed32");
    expect_malformed("ok", 2, "text");
    /* And a valid prefix followed by junk. */
    enc e = {.n = 0};
    put_len(&e, 1, "fine", 4);
    put_raw(&e, "\xff", 1);
    nh_wire_fault f = {0};
    assert_int_equal(check(&e, &f), NH_WIRE_MALFORMED);
    assert_int_equal(f.offset, 6);
    assert_null(f.field);
    expect_malformed("x", 1, "a varint field without its value");
    assert_int_equal(nh_wire_check(&leaf_desc, NULL, 3, NULL), NH_WIRE_MALFORMED);
}

/* ---- depth -------------------------------------------------------------------------------- */

/* levels nested child messages (level 0: no child), built from the inside out at the end of
 * buf; returns the start. The innermost message holds a string field. */
static const uint8_t *nest(uint8_t *buf, size_t size, int levels, size_t *len) {
    uint8_t *end = buf + size, *p = end;
    static const char leaf[] = "\x0a\x04"
                               "leaf";
    p -= sizeof leaf - 1;
    memcpy(p, leaf, sizeof leaf - 1);
    for (int i = 0; i < levels; i++) {
        size_t n = (size_t)(end - p);
        uint8_t v[10];
        size_t k = 0;
        do {
            v[k++] = (uint8_t)((n & 0x7f) | (n >> 7 ? 0x80 : 0));
            n >>= 7;
        } while (n);
        p -= k;
        memcpy(p, v, k);
        *--p = 0x32; /* field 6 (child), wire type 2 */
    }
    *len = (size_t)(end - p);
    return p;
}

static void test_depth_is_bounded(void **state) {
    (void)state;
    static uint8_t buf[8192];
    size_t len;
    const uint8_t *p = nest(buf, sizeof buf, NH_WIRE_MAX_DEPTH, &len);
    nh_wire_fault f = {0};
    assert_int_equal(nh_wire_check(&leaf_desc, p, len, &f), NH_WIRE_OK);
    p = nest(buf, sizeof buf, NH_WIRE_MAX_DEPTH + 1, &len);
    assert_int_equal(nh_wire_check(&leaf_desc, p, len, &f), NH_WIRE_TOO_DEEP);
    assert_string_equal(f.field->name, "child");
    char text[128];
    snprintf(text, sizeof text, "t.Leaf.child: messages nested deeper than %d", NH_WIRE_MAX_DEPTH);
    assert_string_equal(describe(NH_WIRE_TOO_DEEP, &f), text);
    /* Far deeper (a hostile request): still refused, without running out of stack. */
    p = nest(buf, sizeof buf, 2000, &len);
    assert_int_equal(nh_wire_check(&leaf_desc, p, len, &f), NH_WIRE_TOO_DEEP);
    /* Unknown fields are never descended into, however deep their bytes nest. */
    p = nest(buf, sizeof buf, 2000, &len);
    assert_int_equal(nh_wire_check(NULL, p, len, NULL), NH_WIRE_OK);
}

/* ---- real generated descriptors against protobuf-c ---------------------------------------- */

static void test_generated_descriptors_agree_with_protobuf_c(void **state) {
    (void)state;
    Nodehost__PluginStatus ps[2];
    Nodehost__PluginStatus *pp[2] = {&ps[0], &ps[1]};
    char *methods[] = {"a.B.C", "a.B.D\xc3\xa9"};
    for (int i = 0; i < 2; i++) {
        nodehost__plugin_status__init(&ps[i]);
        ps[i].name = i ? "abXd" : "storage";
        ps[i].version = "1.0.0";
        ps[i].path = "/p/x.so";
        ps[i].generation = 3;
        ps[i].methods = methods;
        ps[i].n_methods = 2;
    }
    uint32_t ids[] = {1, 2, 300, 1u << 20};
    Nodehost__StatusResponse r = NODEHOST__STATUS_RESPONSE__INIT;
    r.node_id = 7;
    r.listen = "127.0.0.1:1";
    r.config_ids = ids; /* packed repeated uint32 */
    r.n_config_ids = 4;
    r.plugins = pp;
    r.n_plugins = 2;
    size_t n = nodehost__status_response__get_packed_size(&r);
    uint8_t *b = malloc(n);
    assert_non_null(b);
    assert_int_equal(nodehost__status_response__pack(&r, b), n);
    nh_wire_fault f = {0};
    assert_int_equal(nh_wire_check(&nodehost__status_response__descriptor, b, n, &f), NH_WIRE_OK);

    /* Every proper prefix that protobuf-c refuses, the check refuses as malformed too (and it
     * never reads past the prefix: ASan builds check that). */
    for (size_t k = 0; k < n; k++) {
        uint8_t *cut = malloc(k ? k : 1);
        memcpy(cut, b, k);
        ProtobufCMessage *m =
            protobuf_c_message_unpack(&nodehost__status_response__descriptor, NULL, k, cut);
        nh_wire_status st = nh_wire_check(&nodehost__status_response__descriptor, cut, k, NULL);
        if (!m && st != NH_WIRE_MALFORMED)
            fail_msg("prefix of %zu bytes: protobuf-c refuses it, the check says %d", k, (int)st);
        if (m) protobuf_c_message_free_unpacked(m, NULL);
        free(cut);
    }

    /* The second plugin's name "abXd" becomes "ab\0d": protobuf-c decodes it as "ab", the
     * check refuses it naming nodehost.PluginStatus.name. */
    uint8_t *x = memmem(b, n, "abXd", 4);
    assert_non_null(x);
    x += 2;
    *x = 0;
    Nodehost__StatusResponse *u = nodehost__status_response__unpack(NULL, n, b);
    assert_non_null(u);
    assert_string_equal(u->plugins[1]->name, "ab"); /* the aliasing the check prevents */
    nodehost__status_response__free_unpacked(u, NULL);
    assert_int_equal(nh_wire_check(&nodehost__status_response__descriptor, b, n, &f),
                     NH_WIRE_NUL_IN_STRING);
    assert_ptr_equal(f.message, &nodehost__plugin_status__descriptor);
    assert_string_equal(describe(NH_WIRE_NUL_IN_STRING, &f),
                        "nodehost.PluginStatus.name: string field contains a NUL byte "
                        "(not supported)");
    /* Invalid UTF-8 in a repeated string of a nested message: protobuf-c takes it. */
    *x = 0xff;
    u = nodehost__status_response__unpack(NULL, n, b);
    assert_non_null(u);
    nodehost__status_response__free_unpacked(u, NULL);
    assert_int_equal(nh_wire_check(&nodehost__status_response__descriptor, b, n, &f),
                     NH_WIRE_INVALID_UTF8);
    assert_string_equal(describe(NH_WIRE_INVALID_UTF8, &f),
                        "nodehost.PluginStatus.name: string field is not valid UTF-8");
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid_sequences),
        cmocka_unit_test(test_utf8_invalid_sequences),
        cmocka_unit_test(test_valid_message_with_every_wire_type),
        cmocka_unit_test(test_nul_in_string_is_refused_naming_the_field),
        cmocka_unit_test(test_invalid_utf8_in_string_is_refused_naming_the_field),
        cmocka_unit_test(test_repeated_strings_are_each_checked),
        cmocka_unit_test(test_nested_messages_are_checked_with_their_descriptor),
        cmocka_unit_test(test_unknown_fields_are_skipped_without_checks),
        cmocka_unit_test(test_malformed_input_is_refused),
        cmocka_unit_test(test_depth_is_bounded),
        cmocka_unit_test(test_generated_descriptors_agree_with_protobuf_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
