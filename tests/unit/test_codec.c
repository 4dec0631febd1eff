/* Unit tests for wire/codec: stream.Message encoding and decoding, checked against vectors
 * from an independent encoder (tests/interop/codec_vectors.py, Debian's Python protobuf). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "wire/codec.h"

#include "stream.pb-c.h"
#include "google/rpc/status.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* ---- the vectors printed by codec_vectors.py ----------------------------------------------- */

typedef struct vector {
    char *name;
    uint8_t *data;
    size_t len;
} vector;

static vector *g_vectors;
static size_t g_vector_count;
static bool g_vectors_loaded;
static char g_vector_error[512];

static int hex_nibble(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parses "<name> <hex>" (or "<name> -") into v. Returns false on a malformed line. */
static bool parse_vector_line(char *line, vector *v) {
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    char *sp = strchr(line, ' ');
    if (sp == NULL || sp == line) return false;
    *sp = '\0';
    const char *hex = sp + 1;
    size_t hex_len = strlen(hex);
    v->name = strdup(line);
    v->len = 0;
    v->data = NULL;
    if (v->name == NULL) return false;
    if (strcmp(hex, "-") == 0) return true;
    if (hex_len == 0 || hex_len % 2 != 0) return false;
    v->data = malloc(hex_len / 2);
    if (v->data == NULL) return false;
    for (size_t i = 0; i < hex_len / 2; i++) {
        int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        v->data[i] = (uint8_t)(hi << 4 | lo);
    }
    v->len = hex_len / 2;
    return true;
}

/* The source tree: NH_SOURCE_DIR (set by ctest), else derived from this file's path. */
static void source_dir(char *out, size_t cap) {
    const char *env = getenv("NH_SOURCE_DIR");
    if (env != NULL && env[0] != '\0') {
        snprintf(out, cap, "%s", env);
        return;
    }
    snprintf(out, cap, "%s", __FILE__);
    char *cut = strstr(out, "/tests/unit/test_codec.c");
    if (cut != NULL)
        *cut = '\0';
    else
        snprintf(out, cap, ".");
}

/* Runs the vector script once. On failure g_vector_error says why and no vector is kept. */
static void load_vectors(void) {
    if (g_vectors_loaded) return;
    g_vectors_loaded = true;

    const char *python = getenv("NH_PYTHON");
    if (python == NULL || python[0] == '\0') python = "/usr/bin/python3";
    char src[4096];
    source_dir(src, sizeof(src));
    char cmd[8400];
    snprintf(cmd, sizeof(cmd), "'%s' '%s/tests/interop/codec_vectors.py'", python, src);

    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        snprintf(g_vector_error, sizeof(g_vector_error), "popen failed: %.400s", cmd);
        return;
    }
    size_t cap = 0;
    char *line = NULL;
    size_t line_cap = 0;
    bool bad = false;
    while (getline(&line, &line_cap, p) != -1) {
        if (g_vector_count == cap) {
            cap = cap ? cap * 2 : 32;
            vector *grown = realloc(g_vectors, cap * sizeof(*g_vectors));
            assert_non_null(grown);
            g_vectors = grown;
        }
        vector *v = &g_vectors[g_vector_count];
        memset(v, 0, sizeof(*v));
        g_vector_count++;
        if (!parse_vector_line(line, v)) {
            snprintf(g_vector_error, sizeof(g_vector_error), "malformed vector line: %.80s", line);
            bad = true;
            break;
        }
    }
    free(line);
    int status = pclose(p);
    if (!bad && (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
        snprintf(g_vector_error, sizeof(g_vector_error), "%.400s failed (wait status %d)", cmd,
                 status);
        bad = true;
    }
    if (!bad && g_vector_count == 0) {
        snprintf(g_vector_error, sizeof(g_vector_error), "%.400s printed no vectors", cmd);
        bad = true;
    }
    if (bad) {
        for (size_t i = 0; i < g_vector_count; i++) {
            free(g_vectors[i].name);
            free(g_vectors[i].data);
        }
        free(g_vectors);
        g_vectors = NULL;
        g_vector_count = 0;
    }
}

/* Fails the calling test (never skips) when the script did not deliver. */
static void require_vectors(void) {
    load_vectors();
    if (g_vector_count == 0) fail_msg("codec vectors unavailable: %s", g_vector_error);
}

static const vector *find_vector(const char *name) {
    require_vectors();
    for (size_t i = 0; i < g_vector_count; i++) {
        if (strcmp(g_vectors[i].name, name) == 0) return &g_vectors[i];
    }
    fail_msg("codec_vectors.py printed no vector named %s", name);
    return NULL;
}

static bool has_prefix(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- the logical messages (same values as codec_vectors.py) --------------------------------- */

#define FULL_SEQ            300
#define FULL_METHOD         "pkg.Svc.Method"
#define FULL_STATUS_CODE    5
#define FULL_STATUS_MESSAGE "not found"
#define DETAIL_TYPE_URL     "type.googleapis.com/google.protobuf.StringValue"
#define BIT63_SEQ           UINT64_C(0x8000000000000005)
#define LARGE_SEQ           7
#define LARGE_METHOD        "pkg.Svc.Large"
#define LARGE_LEN           (100 * 1024)
#define UTF8_SEQ            42
/* "pkg.Sérvice.Méthod✓日本" */
#define UTF8_METHOD                                                                                \
    "pkg.S\xc3\xa9"                                                                                \
    "rvice.M\xc3\xa9"                                                                              \
    "thod\xe2\x9c\x93\xe6\x97\xa5\xe6\x9c\xac"
#define MANY_SEQ    9
#define MANY_METHOD "pkg.Svc.Many"
#define MANY_COUNT  50

static const nh_metadata full_entries[] = {{"trace-id", "abc123"}, {"empty-value", ""}};
static const uint8_t full_payload[] = {0x0A, 0x05, 'h', 'e', 'l', 'l', 'o', 0x00, 0xFF, 0x80};
static const uint8_t detail_value[] = {0x0A, 0x03, 'w', 'h', 'y'};

static uint8_t large_payload[LARGE_LEN];
static char many_keys[MANY_COUNT][16];
static char many_values[MANY_COUNT][MANY_COUNT];
static nh_metadata many_entries[MANY_COUNT];

static void init_logical_data(void) {
    for (size_t i = 0; i < LARGE_LEN; i++)
        large_payload[i] = (uint8_t)((i * 7 + 3) & 0xFF);
    for (int i = 0; i < MANY_COUNT; i++) {
        snprintf(many_keys[i], sizeof(many_keys[i]), "key-%02d", i);
        memset(many_values[i], 'v', (size_t)i);
        many_values[i][i] = '\0';
        many_entries[i].key = many_keys[i];
        many_entries[i].value = many_values[i];
    }
}

/* The logical message behind a vector name, or false when the vector has none. */
static bool logical_message(const char *name, nh_wire_out *m) {
    memset(m, 0, sizeof(*m));
    if (strcmp(name, "full") == 0) {
        m->seq = FULL_SEQ;
        m->method = FULL_METHOD;
        m->has_status = true;
        m->status_code = FULL_STATUS_CODE;
        m->status_message = FULL_STATUS_MESSAGE;
        m->entries = full_entries;
        m->entry_count = 2;
        m->payload = full_payload;
        m->payload_len = sizeof(full_payload);
    } else if (strcmp(name, "empty") == 0) {
        /* all zero */
    } else if (strcmp(name, "seq_bit63") == 0) {
        m->seq = BIT63_SEQ;
    } else if (strcmp(name, "status_code0") == 0) {
        m->has_status = true;
    } else if (strcmp(name, "large_payload") == 0) {
        m->seq = LARGE_SEQ;
        m->method = LARGE_METHOD;
        m->payload = large_payload;
        m->payload_len = LARGE_LEN;
    } else if (strcmp(name, "utf8_method") == 0) {
        m->seq = UTF8_SEQ;
        m->method = UTF8_METHOD;
    } else if (strcmp(name, "many_entries") == 0) {
        m->seq = MANY_SEQ;
        m->method = MANY_METHOD;
        m->entries = many_entries;
        m->entry_count = MANY_COUNT;
    } else {
        return false;
    }
    return true;
}

static const char *const logical_names[] = {
    "full", "empty", "seq_bit63", "status_code0", "large_payload", "utf8_method", "many_entries",
};
#define LOGICAL_COUNT (sizeof(logical_names) / sizeof(logical_names[0]))

/* Checks that a decoded message carries exactly the fields of the logical message. */
static void assert_decoded_equals(const nh_wire_msg *d, const nh_wire_out *want) {
    assert_non_null(d);
    assert_true(d->seq == want->seq);
    assert_non_null(d->method);
    assert_string_equal(d->method, want->method != NULL ? want->method : "");
    assert_int_equal(d->has_status, want->has_status);
    assert_int_equal(d->status_code, want->has_status ? want->status_code : 0);
    assert_non_null(d->status_message);
    assert_string_equal(d->status_message,
                        want->status_message != NULL ? want->status_message : "");
    assert_int_equal(d->entry_count, want->entry_count);
    for (size_t i = 0; i < want->entry_count; i++) {
        assert_string_equal(d->entries[i].key, want->entries[i].key);
        assert_string_equal(d->entries[i].value, want->entries[i].value);
    }
    assert_int_equal(d->payload_len, want->payload_len);
    if (want->payload_len > 0) assert_memory_equal(d->payload, want->payload, want->payload_len);
}

static void assert_bytes_equal(const nh_bytes *got, const uint8_t *want, size_t want_len) {
    assert_non_null(got);
    assert_int_equal(got->len, want_len);
    if (want_len > 0) assert_memory_equal(got->data, want, want_len);
}

/* Packs the protobuf-c object behind a decoded message again. */
static void assert_repacks_to(const nh_wire_msg *d, const uint8_t *want, size_t want_len) {
    const ProtobufCMessage *pb = d->impl_;
    assert_non_null(pb);
    size_t size = protobuf_c_message_get_packed_size(pb);
    assert_int_equal(size, want_len);
    uint8_t *buf = malloc(size > 0 ? size : 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(pb, buf), size);
    if (size > 0) assert_memory_equal(buf, want, size);
    free(buf);
}

/* ---- tests against the Python vectors ------------------------------------------------------- */

static void test_vector_script_prints_every_expected_vector(void **state) {
    (void)state;
    for (size_t i = 0; i < LOGICAL_COUNT; i++)
        find_vector(logical_names[i]);
    find_vector("status_with_details");
    size_t unknown = 0, garbage = 0;
    for (size_t i = 0; i < g_vector_count; i++) {
        if (has_prefix(g_vectors[i].name, "unknown_")) unknown++;
        if (has_prefix(g_vectors[i].name, "garbage_")) garbage++;
    }
    assert_true(unknown >= 4);
    assert_true(garbage >= 8);
}

static void test_encoding_matches_python_bytes_exactly(void **state) {
    (void)state;
    for (size_t i = 0; i < LOGICAL_COUNT; i++) {
        const vector *v = find_vector(logical_names[i]);
        nh_wire_out m;
        assert_true(logical_message(v->name, &m));
        nh_bytes *b = nh_wire_encode(&m);
        if (b == NULL || b->len != v->len || (v->len > 0 && memcmp(b->data, v->data, v->len)))
            print_error("encoding of %s differs from Python's %zu bytes\n", v->name, v->len);
        assert_bytes_equal(b, v->data, v->len);
        nh_bytes_unref(b);
    }
}

static void test_decoding_python_bytes_gives_the_logical_message(void **state) {
    (void)state;
    for (size_t i = 0; i < LOGICAL_COUNT; i++) {
        const vector *v = find_vector(logical_names[i]);
        nh_wire_out want;
        assert_true(logical_message(v->name, &want));
        nh_error err = {0};
        nh_wire_msg *d = nh_wire_decode(v->data, v->len, &err);
        if (d == NULL) print_error("%s: %s\n", v->name, err.message);
        assert_decoded_equals(d, &want);
        nh_wire_msg_free(d);
    }
}

static void test_status_details_decode_and_survive_repacking(void **state) {
    (void)state;
    const vector *v = find_vector("status_with_details");
    nh_wire_out want;
    logical_message("full", &want);
    nh_error err = {0};
    nh_wire_msg *d = nh_wire_decode(v->data, v->len, &err);
    assert_decoded_equals(d, &want);

    const Stream__Message *pb = d->impl_;
    assert_non_null(pb->status);
    assert_int_equal(pb->status->n_details, 1);
    assert_string_equal(pb->status->details[0]->type_url, DETAIL_TYPE_URL);
    assert_int_equal(pb->status->details[0]->value.len, sizeof(detail_value));
    assert_memory_equal(pb->status->details[0]->value.data, detail_value, sizeof(detail_value));
    assert_repacks_to(d, v->data, v->len);
    nh_wire_msg_free(d);
}

static void test_unknown_fields_are_ignored_by_decode_and_kept_by_protobuf_c(void **state) {
    (void)state;
    require_vectors();
    nh_wire_out want;
    logical_message("full", &want);
    const vector *full = find_vector("full");
    size_t seen = 0;
    for (size_t i = 0; i < g_vector_count; i++) {
        const vector *v = &g_vectors[i];
        if (!has_prefix(v->name, "unknown_")) continue;
        seen++;
        assert_true(v->len > full->len);
        assert_memory_equal(v->data, full->data, full->len);
        nh_error err = {0};
        nh_wire_msg *d = nh_wire_decode(v->data, v->len, &err);
        if (d == NULL) print_error("%s: %s\n", v->name, err.message);
        assert_decoded_equals(d, &want);
        assert_repacks_to(d, v->data, v->len);
        nh_wire_msg_free(d);
    }
    assert_true(seen >= 4);
}

static void test_garbage_python_rejects_is_rejected_with_invalid_argument(void **state) {
    (void)state;
    require_vectors();
    size_t seen = 0;
    for (size_t i = 0; i < g_vector_count; i++) {
        const vector *v = &g_vectors[i];
        if (!has_prefix(v->name, "garbage_")) continue;
        seen++;
        nh_error err = {0};
        nh_wire_msg *d = nh_wire_decode(v->data, v->len, &err);
        if (d != NULL) print_error("%s was accepted\n", v->name);
        assert_null(d);
        assert_int_equal(err.code, NH_INVALID_ARGUMENT);
        assert_non_null(strstr(err.message, "malformed message"));
    }
    assert_true(seen >= 8);
}

/* ---- pure C tests --------------------------------------------------------------------------- */

static nh_wire_msg *encode_decode(const nh_wire_out *m) {
    nh_bytes *b = nh_wire_encode(m);
    assert_non_null(b);
    nh_error err = {0};
    nh_wire_msg *d = nh_wire_decode(b->data, b->len, &err);
    nh_bytes_unref(b);
    assert_non_null(d);
    return d;
}

static void test_round_trip_preserves_every_field(void **state) {
    (void)state;
    static const nh_metadata entries[] = {{"a", "1"}, {"b", ""}, {"", "no key"}};
    static const uint8_t payload[] = {0, 1, 2, 0xFE, 0xFF};
    nh_wire_out m = {.seq = UINT64_C(0x0123456789ABCDEF),
                     .method = "x.Y.Z",
                     .has_status = true,
                     .status_code = -3,
                     .status_message = "negative codes travel as 10-byte varints",
                     .entries = entries,
                     .entry_count = 3,
                     .payload = payload,
                     .payload_len = sizeof(payload)};
    nh_wire_msg *d = encode_decode(&m);
    assert_decoded_equals(d, &m);
    nh_wire_msg_free(d);
}

static void test_empty_message_encodes_to_zero_bytes(void **state) {
    (void)state;
    nh_wire_out m = {0};
    nh_bytes *b = nh_wire_encode(&m);
    assert_non_null(b);
    assert_int_equal(b->len, 0);
    nh_bytes_unref(b);

    /* Zero-valued fields are omitted even when given explicitly. */
    nh_wire_out z = {.method = "",
                     .status_message = "ignored without has_status",
                     .status_code = 9,
                     .payload = full_payload,
                     .payload_len = 0};
    b = nh_wire_encode(&z);
    assert_non_null(b);
    assert_int_equal(b->len, 0);
    nh_bytes_unref(b);

    nh_error err = {0};
    nh_wire_msg *d = nh_wire_decode(NULL, 0, &err);
    assert_decoded_equals(d, &m);
    assert_null(d->entries);
    nh_wire_msg_free(d);
}

static void test_seq_with_bit63_set_round_trips(void **state) {
    (void)state;
    nh_wire_out m = {.seq = NH_SEQ_SERVER_BIT | 5};
    nh_bytes *b = nh_wire_encode(&m);
    static const uint8_t want[] = {0x08, 0x85, 0x80, 0x80, 0x80, 0x80,
                                   0x80, 0x80, 0x80, 0x80, 0x01};
    assert_bytes_equal(b, want, sizeof(want));
    nh_error err = {0};
    nh_wire_msg *d = nh_wire_decode(b->data, b->len, &err);
    assert_non_null(d);
    assert_true(d->seq == (NH_SEQ_SERVER_BIT | 5));
    assert_true((d->seq & NH_SEQ_SERVER_BIT) != 0);
    nh_wire_msg_free(d);
    nh_bytes_unref(b);

    nh_wire_out max = {.seq = UINT64_MAX};
    d = encode_decode(&max);
    assert_true(d->seq == UINT64_MAX);
    nh_wire_msg_free(d);
}

static void test_status_with_code_0_is_still_emitted(void **state) {
    (void)state;
    nh_wire_out m = {.has_status = true, .status_code = 0, .status_message = NULL};
    nh_bytes *b = nh_wire_encode(&m);
    static const uint8_t want[] = {0x1A, 0x00};
    assert_bytes_equal(b, want, sizeof(want));
    nh_error err = {0};
    nh_wire_msg *d = nh_wire_decode(b->data, b->len, &err);
    assert_non_null(d);
    assert_true(d->has_status);
    assert_int_equal(d->status_code, 0);
    assert_string_equal(d->status_message, "");
    nh_wire_msg_free(d);
    nh_bytes_unref(b);
}

static void test_absent_status_decodes_as_no_status(void **state) {
    (void)state;
    nh_wire_out m = {.seq = 1, .method = "a.B.C"};
    nh_wire_msg *d = encode_decode(&m);
    assert_false(d->has_status);
    assert_int_equal(d->status_code, 0);
    assert_non_null(d->status_message);
    assert_string_equal(d->status_message, "");
    nh_wire_msg_free(d);
}

static void test_null_strings_encode_like_empty_strings(void **state) {
    (void)state;
    static const nh_metadata null_entries[] = {{NULL, NULL}, {"k", NULL}};
    static const nh_metadata empty_entries[] = {{"", ""}, {"k", ""}};
    nh_wire_out a = {.seq = 3,
                     .method = NULL,
                     .has_status = true,
                     .status_code = 2,
                     .status_message = NULL,
                     .entries = null_entries,
                     .entry_count = 2};
    nh_wire_out b = {.seq = 3,
                     .method = "",
                     .has_status = true,
                     .status_code = 2,
                     .status_message = "",
                     .entries = empty_entries,
                     .entry_count = 2};
    nh_bytes *ea = nh_wire_encode(&a);
    nh_bytes *eb = nh_wire_encode(&b);
    assert_non_null(ea);
    assert_bytes_equal(eb, ea->data, ea->len);
    nh_error err = {0};
    nh_wire_msg *d = nh_wire_decode(ea->data, ea->len, &err);
    assert_decoded_equals(d, &b);
    nh_wire_msg_free(d);
    nh_bytes_unref(ea);
    nh_bytes_unref(eb);
}

/* Both below and above the encoder's stack array of entries. */
static void test_entries_keep_their_order(void **state) {
    (void)state;
    static const size_t counts[] = {1, 3, 16, 17, 40};
    for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
        size_t n = counts[c];
        nh_metadata *e = calloc(n, sizeof(*e));
        char(*keys)[24] = calloc(n, sizeof(*keys));
        char(*vals)[24] = calloc(n, sizeof(*vals));
        assert_non_null(e);
        assert_non_null(keys);
        assert_non_null(vals);
        for (size_t i = 0; i < n; i++) {
            /* descending keys and a repeated key: order must not be sorted or merged */
            snprintf(keys[i], sizeof(keys[i]), "k%03zu", i % 5 == 4 ? (size_t)0 : n - i);
            snprintf(vals[i], sizeof(vals[i]), "v%zu", i);
            e[i].key = keys[i];
            e[i].value = vals[i];
        }
        nh_wire_out m = {.seq = n, .method = "o.R.Der", .entries = e, .entry_count = n};
        nh_wire_msg *d = encode_decode(&m);
        assert_decoded_equals(d, &m);
        nh_wire_msg_free(d);
        free(e);
        free(keys);
        free(vals);
    }
}

static void test_null_payload_with_zero_length_is_omitted(void **state) {
    (void)state;
    nh_wire_out m = {.seq = 1, .payload = NULL, .payload_len = 0};
    nh_bytes *b = nh_wire_encode(&m);
    static const uint8_t want[] = {0x08, 0x01};
    assert_bytes_equal(b, want, sizeof(want));
    nh_bytes_unref(b);
}

static void test_decode_error_names_the_length(void **state) {
    (void)state;
    static const uint8_t bad[] = {0x12, 0x05, 'a', 'b'};
    nh_error err = {0};
    assert_null(nh_wire_decode(bad, sizeof(bad), &err));
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "malformed message"));
    assert_non_null(strstr(err.message, "4 bytes"));
    /* A NULL err is allowed. */
    assert_null(nh_wire_decode(bad, sizeof(bad), NULL));
    assert_null(nh_wire_decode(NULL, 3, &err));
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
}

/* Python (and Go) keep a known field with the wrong wire type as an unknown field;
 * protobuf-c refuses the message. Pinned here so that a change of behaviour is noticed. */
static void test_known_field_with_wrong_wire_type_is_rejected(void **state) {
    (void)state;
    static const uint8_t method_as_varint[] = {0x10, 0x05};
    static const uint8_t seq_as_bytes[] = {0x0A, 0x01, 0x05};
    nh_error err = {0};
    assert_null(nh_wire_decode(method_as_varint, sizeof(method_as_varint), &err));
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_null(nh_wire_decode(seq_as_bytes, sizeof(seq_as_bytes), &err));
}

static void test_free_accepts_null(void **state) {
    (void)state;
    nh_wire_msg_free(NULL);
}

static uint64_t rng_state = UINT64_C(0x9E3779B97F4A7C15);

static uint64_t rng_next(void) {
    uint64_t x = rng_state; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* Touches every field of a decoded message so that ASan sees any bad pointer. */
static size_t touch_message(const nh_wire_msg *d) {
    size_t sum = strlen(d->method) + strlen(d->status_message);
    for (size_t i = 0; i < d->entry_count; i++)
        sum += strlen(d->entries[i].key) + strlen(d->entries[i].value);
    for (size_t i = 0; i < d->payload_len; i++)
        sum += d->payload[i];
    return sum;
}

static void test_random_garbage_never_crashes_decode(void **state) {
    (void)state;
    /* A valid seed message to mutate, next to purely random buffers. */
    nh_wire_out seed;
    logical_message("full", &seed);
    nh_bytes *valid = nh_wire_encode(&seed);
    assert_non_null(valid);

    uint8_t buf[256];
    size_t accepted = 0, rejected = 0, sink = 0;
    for (int iter = 0; iter < 10000; iter++) {
        size_t len;
        if (iter % 2 == 0) {
            len = (size_t)(rng_next() % sizeof(buf));
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)rng_next();
        } else {
            len = valid->len - (size_t)(rng_next() % 4 == 0 ? rng_next() % valid->len : 0);
            memcpy(buf, valid->data, len);
            int flips = 1 + (int)(rng_next() % 4);
            for (int f = 0; f < flips && len > 0; f++)
                buf[rng_next() % len] ^= (uint8_t)(1u << (rng_next() % 8));
        }
        /* Exactly len bytes on the heap, so that ASan catches any over-read. */
        uint8_t *heap = malloc(len > 0 ? len : 1);
        assert_non_null(heap);
        memcpy(heap, buf, len);
        nh_error err = {0};
        nh_wire_msg *d = nh_wire_decode(heap, len, &err);
        if (d == NULL) {
            assert_int_equal(err.code, NH_INVALID_ARGUMENT);
            rejected++;
        } else {
            sink += touch_message(d);
            nh_wire_msg_free(d);
            accepted++;
        }
        free(heap);
    }
    nh_bytes_unref(valid);
    assert_int_equal(accepted + rejected, 10000);
    assert_true(accepted > 0);
    assert_true(rejected > 0);
    (void)sink;
}

static int teardown_vectors(void **state) {
    (void)state;
    for (size_t i = 0; i < g_vector_count; i++) {
        free(g_vectors[i].name);
        free(g_vectors[i].data);
    }
    free(g_vectors);
    g_vectors = NULL;
    g_vector_count = 0;
    return 0;
}

static void expect_utf8_rejected(const uint8_t *bytes, size_t n, const char *field) {
    nh_error err;
    nh_wire_msg *m = nh_wire_decode(bytes, n, &err);
    assert_null(m);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, field));
}

static void test_invalid_utf8_in_strings_is_rejected_like_go(void **state) {
    (void)state;
    /* method = C3 28 (bad continuation) */
    const uint8_t bad_method[] = {0x12, 0x02, 0xC3, 0x28};
    expect_utf8_rejected(bad_method, sizeof bad_method, "method");
    /* method = C0 AF (overlong '/') */
    const uint8_t overlong[] = {0x12, 0x02, 0xC0, 0xAF};
    expect_utf8_rejected(overlong, sizeof overlong, "method");
    /* method = ED A0 80 (a UTF-16 surrogate) */
    const uint8_t surrogate[] = {0x12, 0x03, 0xED, 0xA0, 0x80};
    expect_utf8_rejected(surrogate, sizeof surrogate, "method");
    /* entry { key: "k", value: FF } */
    const uint8_t bad_entry[] = {0x22, 0x06, 0x0A, 0x01, 'k', 0x12, 0x01, 0xFF};
    expect_utf8_rejected(bad_entry, sizeof bad_entry, "entry.value");
    /* status { message: 80 } */
    const uint8_t bad_status[] = {0x1A, 0x03, 0x12, 0x01, 0x80};
    expect_utf8_rejected(bad_status, sizeof bad_status, "status.message");
    /* valid multi-byte UTF-8 (e, a 3-byte and a 4-byte character) is accepted */
    const uint8_t good[] = {0x12, 0x09, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80};
    nh_wire_msg *m = nh_wire_decode(good, sizeof good, NULL);
    assert_non_null(m);
    assert_int_equal(strlen(m->method), 9);
    nh_wire_msg_free(m);
}

int main(void) {
    init_logical_data();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_script_prints_every_expected_vector),
        cmocka_unit_test(test_encoding_matches_python_bytes_exactly),
        cmocka_unit_test(test_decoding_python_bytes_gives_the_logical_message),
        cmocka_unit_test(test_status_details_decode_and_survive_repacking),
        cmocka_unit_test(test_unknown_fields_are_ignored_by_decode_and_kept_by_protobuf_c),
        cmocka_unit_test(test_garbage_python_rejects_is_rejected_with_invalid_argument),
        cmocka_unit_test(test_round_trip_preserves_every_field),
        cmocka_unit_test(test_empty_message_encodes_to_zero_bytes),
        cmocka_unit_test(test_seq_with_bit63_set_round_trips),
        cmocka_unit_test(test_status_with_code_0_is_still_emitted),
        cmocka_unit_test(test_absent_status_decodes_as_no_status),
        cmocka_unit_test(test_null_strings_encode_like_empty_strings),
        cmocka_unit_test(test_entries_keep_their_order),
        cmocka_unit_test(test_null_payload_with_zero_length_is_omitted),
        cmocka_unit_test(test_decode_error_names_the_length),
        cmocka_unit_test(test_known_field_with_wrong_wire_type_is_rejected),
        cmocka_unit_test(test_free_accepts_null),
        cmocka_unit_test(test_random_garbage_never_crashes_decode),
        cmocka_unit_test(test_invalid_utf8_in_strings_is_rejected_like_go),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_vectors);
}
