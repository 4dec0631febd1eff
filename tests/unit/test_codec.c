/* Unit tests for wire/codec: stream.Message encoding and decoding, checked against vectors
 * from an independent encoder (tests/interop/codec_vectors.py, Debian's Python protobuf) and
 * differentially against protobuf-c's decoder (the previous implementation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "wire/codec.h"

#include "stream.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "google/protobuf/any.pb-c.h"

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

/* protobuf-c's reading of the same bytes (the previous decoder, and the reference): checks
 * that it agrees with the decoded message field by field and, when repack is set (canonical
 * bytes, unknown fields last), that it packs back to exactly these bytes, as protobuf-c keeps
 * unknown fields and status details. Caller frees. */
static Stream__Message *assert_protobuf_c_agrees(const nh_wire_msg *d, const uint8_t *want,
                                                 size_t want_len, bool repack) {
    Stream__Message *pb = stream__message__unpack(NULL, want_len, want);
    assert_non_null(pb);
    assert_true(d->seq == pb->message_seq_no);
    assert_string_equal(d->method, pb->method);
    assert_int_equal(d->has_status, pb->status != NULL);
    if (pb->status != NULL) {
        assert_int_equal(d->status_code, pb->status->code);
        assert_string_equal(d->status_message, pb->status->message);
    }
    assert_int_equal(d->entry_count, pb->n_entry);
    for (size_t i = 0; i < pb->n_entry; i++) {
        assert_string_equal(d->entries[i].key, pb->entry[i]->key);
        assert_string_equal(d->entries[i].value, pb->entry[i]->value);
    }
    assert_int_equal(d->payload_len, pb->payload.len);
    if (pb->payload.len > 0) assert_memory_equal(d->payload, pb->payload.data, pb->payload.len);

    if (!repack) return pb;
    size_t size = protobuf_c_message_get_packed_size(&pb->base);
    assert_int_equal(size, want_len);
    uint8_t *buf = malloc(size > 0 ? size : 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(&pb->base, buf), size);
    if (size > 0) assert_memory_equal(buf, want, size);
    free(buf);
    return pb;
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

    Stream__Message *pb = assert_protobuf_c_agrees(d, v->data, v->len, true);
    assert_non_null(pb->status);
    assert_int_equal(pb->status->n_details, 1);
    assert_string_equal(pb->status->details[0]->type_url, DETAIL_TYPE_URL);
    assert_int_equal(pb->status->details[0]->value.len, sizeof(detail_value));
    assert_memory_equal(pb->status->details[0]->value.data, detail_value, sizeof(detail_value));
    stream__message__free_unpacked(pb, NULL);
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
        stream__message__free_unpacked(assert_protobuf_c_agrees(d, v->data, v->len, true), NULL);
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

/* Counts around 16, where the protobuf-c based encoder switched from stack to heap arrays. */
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

/* ---- hand-written decoder specifics ---------------------------------------------------------- */

static nh_wire_msg *decode_ok(const uint8_t *bytes, size_t n) {
    nh_error err = {0};
    nh_wire_msg *d = nh_wire_decode(bytes, n, &err);
    if (d == NULL) print_error("unexpected reject: %s\n", err.message);
    assert_non_null(d);
    return d;
}

static void expect_rejected(const uint8_t *bytes, size_t n, const char *what) {
    nh_error err = {0};
    nh_wire_msg *d = nh_wire_decode(bytes, n, &err);
    if (d != NULL) print_error("accepted: %s\n", what);
    assert_null(d);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "malformed message"));
}

/* protobuf merges a repeated embedded message: each field present in a later occurrence
 * overrides, absent ones keep the earlier value (as Go and Python do). */
static void test_repeated_status_is_merged(void **state) {
    (void)state;
    /* status{code 5, message "a"} status{message "b"} */
    static const uint8_t code_kept[] = {0x1A, 0x05, 0x08, 0x05, 0x12, 0x01,
                                        'a',  0x1A, 0x03, 0x12, 0x01, 'b'};
    nh_wire_msg *d = decode_ok(code_kept, sizeof(code_kept));
    assert_true(d->has_status);
    assert_int_equal(d->status_code, 5);
    assert_string_equal(d->status_message, "b");
    nh_wire_msg_free(d);

    /* status{message "x"} status{} seq=1 status{code 9}: message and code both kept */
    static const uint8_t spread[] = {0x1A, 0x03, 0x12, 0x01, 'x',  0x1A, 0x00,
                                     0x08, 0x01, 0x1A, 0x02, 0x08, 0x09};
    d = decode_ok(spread, sizeof(spread));
    assert_true(d->seq == 1);
    assert_int_equal(d->status_code, 9);
    assert_string_equal(d->status_message, "x");
    nh_wire_msg_free(d);

    /* A field present with its zero value (non-canonical but legal) still overrides. */
    static const uint8_t explicit_zero[] = {0x1A, 0x05, 0x08, 0x05, 0x12, 0x01, 'a',
                                            0x1A, 0x04, 0x08, 0x00, 0x12, 0x00};
    d = decode_ok(explicit_zero, sizeof(explicit_zero));
    assert_int_equal(d->status_code, 0);
    assert_string_equal(d->status_message, "");
    nh_wire_msg_free(d);

    /* Every occurrence is validated: a bad earlier one rejects the message. */
    static const uint8_t bad_first[] = {0x1A, 0x02, 0x08, 0x80, 0x1A, 0x02, 0x08, 0x01};
    expect_rejected(bad_first, sizeof(bad_first), "truncated earlier status");
    static const uint8_t bad_utf8_first[] = {0x1A, 0x03, 0x12, 0x01, 0xFF,
                                             0x1A, 0x03, 0x12, 0x01, 'o'};
    expect_rejected(bad_utf8_first, sizeof(bad_utf8_first), "bad UTF-8 in earlier status");

    /* Last value wins for the scalar and string fields. */
    static const uint8_t last_wins[] = {0x08, 0x01, 0x12, 0x01, 'a', 0x2A, 0x01, 'p',
                                        0x08, 0x02, 0x12, 0x01, 'b', 0x2A, 0x01, 'q'};
    d = decode_ok(last_wins, sizeof(last_wins));
    assert_true(d->seq == 2);
    assert_string_equal(d->method, "b");
    assert_int_equal(d->payload_len, 1);
    assert_int_equal(d->payload[0], 'q');
    nh_wire_msg_free(d);
}

static void test_negative_status_code_round_trip(void **state) {
    (void)state;
    static const int32_t codes[] = {-3, -1, INT32_MIN, INT32_MAX, 1, 127, 128, 16};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        nh_wire_out m = {.seq = 4, .has_status = true, .status_code = codes[i]};
        nh_bytes *b = nh_wire_encode(&m);
        assert_non_null(b);
        /* byte-identical to protobuf-c */
        Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
        st.code = codes[i];
        Stream__Message pm = STREAM__MESSAGE__INIT;
        pm.message_seq_no = 4;
        pm.status = &st;
        uint8_t ref[64];
        assert_true(stream__message__get_packed_size(&pm) <= sizeof(ref));
        size_t n = stream__message__pack(&pm, ref);
        assert_bytes_equal(b, ref, n);
        nh_error err = {0};
        nh_wire_msg *d = nh_wire_decode(b->data, b->len, &err);
        assert_non_null(d);
        assert_int_equal(d->status_code, codes[i]);
        nh_wire_msg_free(d);
        nh_bytes_unref(b);
    }
    /* -3 is the 10-byte varint of its 64-bit sign extension */
    nh_wire_out m = {.has_status = true, .status_code = -3};
    nh_bytes *b = nh_wire_encode(&m);
    static const uint8_t want[] = {0x1A, 0x0B, 0x08, 0xFD, 0xFF, 0xFF, 0xFF,
                                   0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    assert_bytes_equal(b, want, sizeof(want));
    nh_bytes_unref(b);

    /* Decoding truncates to the low 32 bits as protobuf does: a 5-byte 0xFFFFFFFF is -1 ... */
    static const uint8_t five[] = {0x1A, 0x06, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F};
    nh_wire_msg *d = decode_ok(five, sizeof(five));
    assert_int_equal(d->status_code, -1);
    nh_wire_msg_free(d);
    /* ... and 2^32 + 7 is 7 */
    static const uint8_t wide[] = {0x1A, 0x06, 0x08, 0x87, 0x80, 0x80, 0x80, 0x10};
    d = decode_ok(wide, sizeof(wide));
    assert_int_equal(d->status_code, 7);
    nh_wire_msg_free(d);
}

static void expect_nul_rejected(const uint8_t *bytes, size_t n, const char *field) {
    nh_error err = {0};
    assert_null(nh_wire_decode(bytes, n, &err));
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, field));
    assert_non_null(strstr(err.message, "NUL"));
}

/* A C string cannot carry a NUL: method, key and value reject it; status.message is cut. */
static void test_embedded_nul_is_rejected(void **state) {
    (void)state;
    static const uint8_t method[] = {0x12, 0x03, 'a', 0x00, 'b'};
    expect_nul_rejected(method, sizeof(method), "method");
    static const uint8_t method_trailing[] = {0x12, 0x02, 'a', 0x00};
    expect_nul_rejected(method_trailing, sizeof(method_trailing), "method");
    /* even in an occurrence that a later one overrides */
    static const uint8_t method_earlier[] = {0x12, 0x01, 0x00, 0x12, 0x01, 'a'};
    expect_nul_rejected(method_earlier, sizeof(method_earlier), "method");
    static const uint8_t key[] = {0x22, 0x05, 0x0A, 0x03, 'k', 0x00, 'k'};
    expect_nul_rejected(key, sizeof(key), "entry.key");
    static const uint8_t value[] = {0x22, 0x06, 0x0A, 0x01, 'k', 0x12, 0x01, 0x00};
    expect_nul_rejected(value, sizeof(value), "entry.value");

    static const uint8_t status[] = {0x1A, 0x07, 0x08, 0x02, 0x12, 0x03, 'a', 0x00, 'b'};
    nh_wire_msg *d = decode_ok(status, sizeof(status));
    assert_int_equal(d->status_code, 2);
    assert_string_equal(d->status_message, "a");
    nh_wire_msg_free(d);
    /* bytes after the NUL must still be UTF-8 */
    static const uint8_t status_bad[] = {0x1A, 0x05, 0x12, 0x03, 'a', 0x00, 0xFF};
    expect_utf8_rejected(status_bad, sizeof(status_bad), "status.message");

    /* payload bytes are not a string: NULs are fine */
    static const uint8_t payload[] = {0x2A, 0x03, 0x00, 0x00, 0x01};
    d = decode_ok(payload, sizeof(payload));
    assert_int_equal(d->payload_len, 3);
    nh_wire_msg_free(d);
}

static void test_varint_and_header_limits(void **state) {
    (void)state;
    /* 10-byte varints are accepted; bits beyond 64 are dropped as protobuf-c does */
    static const uint8_t ten[] = {0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    nh_wire_msg *d = decode_ok(ten, sizeof(ten));
    assert_true(d->seq == UINT64_MAX);
    nh_wire_msg_free(d);
    static const uint8_t padded[] = {0x08, 0x81, 0x80, 0x80, 0x80, 0x80,
                                     0x80, 0x80, 0x80, 0x80, 0x00};
    d = decode_ok(padded, sizeof(padded));
    assert_true(d->seq == 1);
    nh_wire_msg_free(d);
    /* 11 bytes are not, at the top level, in status and as an unknown field */
    static const uint8_t eleven[] = {0x08, 0x81, 0x80, 0x80, 0x80, 0x80,
                                     0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    expect_rejected(eleven, sizeof(eleven), "11-byte seq");
    static const uint8_t eleven_status[] = {0x1A, 0x0C, 0x08, 0x81, 0x80, 0x80, 0x80,
                                            0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    expect_rejected(eleven_status, sizeof(eleven_status), "11-byte status code");
    static const uint8_t eleven_unknown[] = {0x30, 0x81, 0x80, 0x80, 0x80, 0x80,
                                             0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    expect_rejected(eleven_unknown, sizeof(eleven_unknown), "11-byte unknown varint");

    /* tags and length prefixes: at most 5 bytes (protobuf-c's limits) */
    static const uint8_t tag5[] = {0x88, 0x80, 0x80, 0x80, 0x00, 0x07};
    d = decode_ok(tag5, sizeof(tag5));
    assert_true(d->seq == 7);
    nh_wire_msg_free(d);
    static const uint8_t tag6[] = {0x88, 0x80, 0x80, 0x80, 0x80, 0x00, 0x07};
    expect_rejected(tag6, sizeof(tag6), "6-byte tag");
    static const uint8_t len5[] = {0x2A, 0x81, 0x80, 0x80, 0x80, 0x00, 'z'};
    d = decode_ok(len5, sizeof(len5));
    assert_int_equal(d->payload_len, 1);
    nh_wire_msg_free(d);
    static const uint8_t len6[] = {0x2A, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 'z'};
    expect_rejected(len6, sizeof(len6), "6-byte length");
    /* a length whose high bits would wrap a 32-bit computation */
    static const uint8_t len_wrap[] = {0x2A, 0x81, 0x80, 0x80, 0x80, 0x10, 'z'};
    expect_rejected(len_wrap, sizeof(len_wrap), "2^32 + 1 length");
    /* a huge field number is just an unknown field */
    static const uint8_t big_field[] = {0xF8, 0xFF, 0xFF, 0xFF, 0x7F, 0x05, 0x08, 0x03};
    d = decode_ok(big_field, sizeof(big_field));
    assert_true(d->seq == 3);
    nh_wire_msg_free(d);
}

/* Go rejects field number 0 however it is encoded; protobuf-c only its 1-byte form. */
static void test_field_number_0_is_rejected_in_any_encoding(void **state) {
    (void)state;
    static const uint8_t one[] = {0x00, 0x00};
    expect_rejected(one, sizeof(one), "field 0");
    static const uint8_t two[] = {0x80, 0x00, 0x00};
    expect_rejected(two, sizeof(two), "field 0 in two bytes");
    static const uint8_t in_entry[] = {0x22, 0x03, 0x82, 0x00, 0x00};
    expect_rejected(in_entry, sizeof(in_entry), "field 0 in an entry");
}

static void test_unknown_fields_inside_status_and_entry_are_skipped(void **state) {
    (void)state;
    /* Unknowns of wire types 0, 1, 2 and 5 before, between and after the known fields. */
#define UNK 0x30, 0x96, 0x01, 0x39, 1, 2, 3, 4, 5, 6, 7, 8, 0x42, 0x02, 'x', 'y', 0x4D, 1, 2, 3, 4
    static const uint8_t bytes[] = {0x1A, 2 + 21 * 3 + 5 + 6, /* status */
                                    UNK, 0x08, 0x05, UNK, 0x12, 0x03, 'e', 'r', 'r', UNK,
                                    /* a details Any with unknown fields of its own */
                                    0x1A, 0x04, 0x0A, 0x00, 0x18, 0x01, 0x22,
                                    21 * 3 + 3 + 3, /* entry */
                                    UNK, 0x0A, 0x01, 'k', UNK, 0x12, 0x01, 'v', UNK, 0x22, 21,
                                    UNK, /* an entry with only unknown fields */
                                    0x2A, 0x01, 'P'};
#undef UNK
    nh_wire_msg *d = decode_ok(bytes, sizeof(bytes));
    assert_true(d->has_status);
    assert_int_equal(d->status_code, 5);
    assert_string_equal(d->status_message, "err");
    assert_int_equal(d->entry_count, 2);
    assert_string_equal(d->entries[0].key, "k");
    assert_string_equal(d->entries[0].value, "v");
    assert_string_equal(d->entries[1].key, "");
    assert_string_equal(d->entries[1].value, "");
    assert_int_equal(d->payload_len, 1);
    /* protobuf-c reads it the same way */
    stream__message__free_unpacked(assert_protobuf_c_agrees(d, bytes, sizeof(bytes), false), NULL);
    nh_wire_msg_free(d);

    /* but groups and wire types 6/7 are rejected inside too, as are known fields with the
     * wrong wire type, in status, entry and Any */
    static const uint8_t group_in_status[] = {0x1A, 0x02, 0x33, 0x34};
    expect_rejected(group_in_status, sizeof(group_in_status), "group in status");
    static const uint8_t group_in_entry[] = {0x22, 0x02, 0x1B, 0x1C};
    expect_rejected(group_in_entry, sizeof(group_in_entry), "group in entry");
    static const uint8_t code_as_len[] = {0x1A, 0x02, 0x0A, 0x00};
    expect_rejected(code_as_len, sizeof(code_as_len), "status.code as bytes");
    static const uint8_t key_as_varint[] = {0x22, 0x02, 0x08, 0x01};
    expect_rejected(key_as_varint, sizeof(key_as_varint), "entry.key as varint");
    static const uint8_t any_url_as_varint[] = {0x1A, 0x04, 0x1A, 0x02, 0x08, 0x01};
    expect_rejected(any_url_as_varint, sizeof(any_url_as_varint), "Any.type_url as varint");
    static const uint8_t any_truncated[] = {0x1A, 0x04, 0x1A, 0x02, 0x12, 0x05};
    expect_rejected(any_truncated, sizeof(any_truncated), "truncated Any.value");
    static const uint8_t details_as_varint[] = {0x1A, 0x02, 0x18, 0x01};
    expect_rejected(details_as_varint, sizeof(details_as_varint), "status.details as varint");
}

/* ---- differential test against protobuf-c ---------------------------------------------------
 *
 * The reference is protobuf-c's own unpacker run over descriptors that mirror stream.Message
 * field for field (same numbers, same wire types, so the same accept/reject), except that
 * (a) every string is read as repeated bytes, which shows every occurrence with all its bytes
 * (a NUL included), and (b) seq and status.code are proto2-optional and status is repeated,
 * which shows which fields were present in which status occurrence. From that the test derives
 * what a protobuf decoder yields (last value wins, status merged) and applies nodehost's
 * documented extra rules: strings must be UTF-8, method/key/value must not contain NUL, field
 * number 0 is invalid in any encoding (protobuf-c keeps a multi-byte 0 as an unknown field).
 * Every buffer also goes through the stock stream__message__unpack, which must accept exactly
 * what the reference accepts and agree with nodehost on every field (except status.code after a
 * repeated status, where protobuf-c's merge resets the code to 0). */

typedef struct ref_entry {
    ProtobufCMessage base;
    size_t n_key;
    ProtobufCBinaryData *key;
    size_t n_value;
    ProtobufCBinaryData *value;
} ref_entry;

typedef struct ref_status {
    ProtobufCMessage base;
    protobuf_c_boolean has_code;
    int32_t code;
    size_t n_message;
    ProtobufCBinaryData *message;
    size_t n_details;
    Google__Protobuf__Any **details;
} ref_status;

typedef struct ref_msg {
    ProtobufCMessage base;
    protobuf_c_boolean has_seq;
    uint64_t seq;
    size_t n_method;
    ProtobufCBinaryData *method;
    size_t n_status;
    ref_status **status;
    size_t n_entry;
    ref_entry **entry;
    size_t n_payload;
    ProtobufCBinaryData *payload;
} ref_msg;

#define REF_FIELD(name, id, label, type, T, qmember, member, desc)                                 \
    {                                                                                              \
        name, id, label, type, offsetof(T, qmember), offsetof(T, member), desc, NULL, 0, 0, NULL,  \
            NULL                                                                                   \
    }

static const ProtobufCFieldDescriptor ref_entry_fields[] = {
    REF_FIELD("key", 1, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_BYTES, ref_entry, n_key, key,
              NULL),
    REF_FIELD("value", 2, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_BYTES, ref_entry, n_value,
              value, NULL),
};
static const unsigned ref_entry_by_name[] = {0, 1};
static const ProtobufCIntRange ref_entry_ranges[] = {{1, 0}, {0, 2}};
static const ProtobufCMessageDescriptor ref_entry_desc = {PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                                                          "ref.Entry",
                                                          "Entry",
                                                          "ref_entry",
                                                          "ref",
                                                          sizeof(ref_entry),
                                                          2,
                                                          ref_entry_fields,
                                                          ref_entry_by_name,
                                                          1,
                                                          ref_entry_ranges,
                                                          NULL,
                                                          NULL,
                                                          NULL,
                                                          NULL};

static const ProtobufCFieldDescriptor ref_status_fields[] = {
    REF_FIELD("code", 1, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_INT32, ref_status, has_code,
              code, NULL),
    REF_FIELD("message", 2, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_BYTES, ref_status, n_message,
              message, NULL),
    REF_FIELD("details", 3, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_MESSAGE, ref_status,
              n_details, details, &google__protobuf__any__descriptor),
};
static const unsigned ref_status_by_name[] = {0, 2, 1};
static const ProtobufCIntRange ref_status_ranges[] = {{1, 0}, {0, 3}};
static const ProtobufCMessageDescriptor ref_status_desc = {PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                                                           "ref.Status",
                                                           "Status",
                                                           "ref_status",
                                                           "ref",
                                                           sizeof(ref_status),
                                                           3,
                                                           ref_status_fields,
                                                           ref_status_by_name,
                                                           1,
                                                           ref_status_ranges,
                                                           NULL,
                                                           NULL,
                                                           NULL,
                                                           NULL};

static const ProtobufCFieldDescriptor ref_msg_fields[] = {
    REF_FIELD("seq", 1, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_UINT64, ref_msg, has_seq, seq,
              NULL),
    REF_FIELD("method", 2, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_BYTES, ref_msg, n_method,
              method, NULL),
    REF_FIELD("status", 3, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_MESSAGE, ref_msg, n_status,
              status, &ref_status_desc),
    REF_FIELD("entry", 4, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_MESSAGE, ref_msg, n_entry,
              entry, &ref_entry_desc),
    REF_FIELD("payload", 5, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_BYTES, ref_msg, n_payload,
              payload, NULL),
};
static const unsigned ref_msg_by_name[] = {3, 1, 4, 0, 2};
static const ProtobufCIntRange ref_msg_ranges[] = {{1, 0}, {0, 5}};
static const ProtobufCMessageDescriptor ref_msg_desc = {PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                                                        "ref.Message",
                                                        "Message",
                                                        "ref_msg",
                                                        "ref",
                                                        sizeof(ref_msg),
                                                        5,
                                                        ref_msg_fields,
                                                        ref_msg_by_name,
                                                        1,
                                                        ref_msg_ranges,
                                                        NULL,
                                                        NULL,
                                                        NULL,
                                                        NULL};

/* An independent UTF-8 check, by the well-formed byte sequences of Unicode table 3-7. */
static bool ref_utf8(const ProtobufCBinaryData *b) {
    const uint8_t *s = b->data;
    size_t n = b->len, i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c <= 0x7F) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return false;
        }
        if (n - i <= k) return false;
        if (s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t j = 2; j <= k; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xBF) return false;
        i += k + 1;
    }
    return true;
}

static bool ref_has_nul(const ProtobufCBinaryData *b) {
    return b->len > 0 && memchr(b->data, 0, b->len) != NULL;
}

static bool ref_has_field0(const ProtobufCMessage *m) {
    for (size_t i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0) return true;
    return false;
}

/* Why nodehost must reject what protobuf-c accepts, or NULL when it must accept. */
static const char *ref_extra_reject(const ref_msg *r) {
    if (ref_has_field0(&r->base)) return "field 0";
    for (size_t i = 0; i < r->n_method; i++) {
        if (!ref_utf8(&r->method[i])) return "method UTF-8";
        if (ref_has_nul(&r->method[i])) return "method NUL";
    }
    for (size_t s = 0; s < r->n_status; s++) {
        const ref_status *st = r->status[s];
        if (ref_has_field0(&st->base)) return "field 0";
        for (size_t i = 0; i < st->n_details; i++)
            if (ref_has_field0(&st->details[i]->base)) return "field 0";
        for (size_t i = 0; i < st->n_message; i++)
            if (!ref_utf8(&st->message[i])) return "status.message UTF-8";
    }
    for (size_t e = 0; e < r->n_entry; e++) {
        const ref_entry *en = r->entry[e];
        if (ref_has_field0(&en->base)) return "field 0";
        for (size_t i = 0; i < en->n_key; i++) {
            if (!ref_utf8(&en->key[i])) return "key UTF-8";
            if (ref_has_nul(&en->key[i])) return "key NUL";
        }
        for (size_t i = 0; i < en->n_value; i++) {
            if (!ref_utf8(&en->value[i])) return "value UTF-8";
            if (ref_has_nul(&en->value[i])) return "value NUL";
        }
    }
    return NULL;
}

static void assert_str_is_last(const char *got, const ProtobufCBinaryData *occ, size_t n,
                               bool cut_at_nul) {
    size_t len = n > 0 ? occ[n - 1].len : 0;
    const uint8_t *data = n > 0 ? occ[n - 1].data : NULL;
    if (cut_at_nul && len > 0) {
        const uint8_t *nul = memchr(data, 0, len);
        if (nul != NULL) len = (size_t)(nul - data);
    }
    assert_int_equal(strlen(got), len);
    if (len > 0) assert_memory_equal(got, data, len);
}

/* Checks every field of an accepted message against the reference. */
static void assert_matches_reference(const nh_wire_msg *d, const ref_msg *r) {
    assert_true(d->seq == (r->has_seq ? r->seq : 0));
    assert_str_is_last(d->method, r->method, r->n_method, false);
    assert_int_equal(d->has_status, r->n_status > 0);
    int32_t code = 0;
    const ProtobufCBinaryData *msg = NULL;
    for (size_t s = 0; s < r->n_status; s++) {
        if (r->status[s]->has_code) code = r->status[s]->code;
        if (r->status[s]->n_message > 0) msg = &r->status[s]->message[r->status[s]->n_message - 1];
    }
    assert_int_equal(d->status_code, code);
    assert_str_is_last(d->status_message, msg, msg != NULL ? 1 : 0, true);
    assert_int_equal(d->entry_count, r->n_entry);
    for (size_t e = 0; e < r->n_entry; e++) {
        assert_str_is_last(d->entries[e].key, r->entry[e]->key, r->entry[e]->n_key, false);
        assert_str_is_last(d->entries[e].value, r->entry[e]->value, r->entry[e]->n_value, false);
    }
    const ProtobufCBinaryData *pl = r->n_payload > 0 ? &r->payload[r->n_payload - 1] : NULL;
    assert_int_equal(d->payload_len, pl != NULL ? pl->len : 0);
    if (d->payload_len > 0) assert_memory_equal(d->payload, pl->data, pl->len);
    if (d->payload_len == 0) assert_null(d->payload);
    if (d->entry_count == 0) assert_null(d->entries);
}

/* Checks an accepted message against stock protobuf-c (NUL-free strings here, so they agree). */
static void assert_matches_stock(const nh_wire_msg *d, const Stream__Message *pb, bool merged) {
    assert_true(d->seq == pb->message_seq_no);
    assert_string_equal(d->method, pb->method);
    assert_int_equal(d->has_status, pb->status != NULL);
    if (pb->status != NULL) {
        if (!merged) assert_int_equal(d->status_code, pb->status->code);
        assert_string_equal(d->status_message, pb->status->message);
    }
    assert_int_equal(d->entry_count, pb->n_entry);
    for (size_t i = 0; i < pb->n_entry; i++) {
        assert_string_equal(d->entries[i].key, pb->entry[i]->key);
        assert_string_equal(d->entries[i].value, pb->entry[i]->value);
    }
    assert_int_equal(d->payload_len, pb->payload.len);
    if (pb->payload.len > 0) assert_memory_equal(d->payload, pb->payload.data, pb->payload.len);
}

/* ---- a generator of plausible, nearly valid and broken stream.Message bytes ---- */

typedef struct gen_buf {
    uint8_t *p;
    size_t n, cap;
} gen_buf;

static void gb_put(gen_buf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n > 0) memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void gb_byte(gen_buf *b, uint8_t c) {
    gb_put(b, &c, 1);
}

static void gb_varint(gen_buf *b, uint64_t v) {
    while (v >= 0x80) {
        gb_byte(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    gb_byte(b, (uint8_t)v);
}

/* A random varint value: small, large, negative int32 or any 64 bits. */
static uint64_t gen_value(void) {
    switch (rng_next() % 5) {
        case 0:
            return rng_next() % 128;
        case 1:
            return rng_next() % 100000;
        case 2:
            return (uint64_t)(int64_t)(int32_t)(uint32_t)rng_next();
        case 3:
            return rng_next();
        default:
            return 0;
    }
}

/* A tag, sometimes non-canonically padded (up to 7 bytes); occasionally the wrong wire type. */
static void gen_tag(gen_buf *b, uint32_t num, int wt) {
    if (rng_next() % 25 == 0) wt = (int)(rng_next() % 8);
    uint64_t tag = (uint64_t)num << 3 | (uint64_t)wt;
    uint8_t tmp[16];
    size_t n = 0;
    while (tag >= 0x80) {
        tmp[n++] = (uint8_t)(tag | 0x80);
        tag >>= 7;
    }
    tmp[n++] = (uint8_t)tag;
    if (rng_next() % 30 == 0) {
        size_t pad = 1 + (size_t)(rng_next() % 3);
        tmp[n - 1] |= 0x80;
        for (size_t i = 1; i < pad; i++)
            tmp[n++] = 0x80;
        tmp[n++] = 0x00;
    }
    gb_put(b, tmp, n);
}

/* String contents: ASCII mostly, with valid multi-byte characters, NULs and stray bytes. */
static void gen_string(gen_buf *b) {
    size_t n = (size_t)(rng_next() % 12);
    for (size_t i = 0; i < n; i++) {
        unsigned r = (unsigned)(rng_next() % 100);
        if (r < 80) {
            gb_byte(b, (uint8_t)('a' + rng_next() % 26));
        } else if (r < 86) {
            static const uint8_t utf8[][4] = {
                {0xC3, 0xA9}, {0xE2, 0x9C, 0x93}, {0xF0, 0x9F, 0x98, 0x80}};
            static const size_t lens[] = {2, 3, 4};
            size_t k = (size_t)(rng_next() % 3);
            gb_put(b, utf8[k], lens[k]);
        } else if (r < 90) {
            gb_byte(b, 0x00);
        } else {
            gb_byte(b, (uint8_t)(0x80 + rng_next() % 0x80));
        }
    }
}

/* A length-delimited field whose content is produced by fill. */
static void gen_len_field(gen_buf *b, uint32_t num, void (*fill)(gen_buf *)) {
    gen_buf inner = {0};
    fill(&inner);
    gen_tag(b, num, 2);
    size_t n = inner.n;
    if (rng_next() % 40 == 0) n += (size_t)(rng_next() % 3); /* a length that lies */
    gb_varint(b, n);
    gb_put(b, inner.p, inner.n);
    free(inner.p);
}

static void gen_unknown(gen_buf *b) {
    uint32_t num = 6 + (uint32_t)(rng_next() % 40);
    if (rng_next() % 20 == 0) num = (uint32_t)(rng_next() % (1u << 29)) + 1;
    if (rng_next() % 50 == 0) { /* field number 0, in one byte or padded to two */
        bool len = rng_next() % 2;
        uint8_t zero[] = {len ? 0x02 : 0x00, 0x00};
        if (rng_next() % 2) zero[0] |= 0x80;
        gb_put(b, zero, zero[0] & 0x80 ? 2 : 1);
        gb_byte(b, 0x01);         /* the varint 1, or a length of 1 ... */
        if (len) gb_byte(b, 'x'); /* ... and its byte */
        return;
    }
    switch (rng_next() % 5) {
        case 0:
            gen_tag(b, num, 0);
            gb_varint(b, gen_value());
            break;
        case 1:
            gen_tag(b, num, 1);
            for (int i = 0; i < 8; i++)
                gb_byte(b, (uint8_t)rng_next());
            break;
        case 2:
            gen_len_field(b, num, gen_string);
            break;
        case 3:
            gen_tag(b, num, 5);
            for (int i = 0; i < 4; i++)
                gb_byte(b, (uint8_t)rng_next());
            break;
        default: {
            static const int invalid[] = {3, 4, 6, 7};
            gen_tag(b, num, invalid[rng_next() % 4]);
            break;
        }
    }
}

static void gen_any(gen_buf *b) {
    int n = (int)(rng_next() % 4);
    for (int i = 0; i < n; i++) {
        unsigned r = (unsigned)(rng_next() % 10);
        if (r < 4)
            gen_len_field(b, 1, gen_string);
        else if (r < 8)
            gen_len_field(b, 2, gen_string);
        else
            gen_unknown(b);
    }
}

static void gen_status(gen_buf *b) {
    int n = (int)(rng_next() % 5);
    for (int i = 0; i < n; i++) {
        unsigned r = (unsigned)(rng_next() % 10);
        if (r < 3) {
            gen_tag(b, 1, 0);
            gb_varint(b, gen_value());
        } else if (r < 6) {
            gen_len_field(b, 2, gen_string);
        } else if (r < 8) {
            gen_len_field(b, 3, gen_any);
        } else {
            gen_unknown(b);
        }
    }
}

static void gen_entry(gen_buf *b) {
    int n = (int)(rng_next() % 4);
    for (int i = 0; i < n; i++) {
        unsigned r = (unsigned)(rng_next() % 10);
        if (r < 4)
            gen_len_field(b, 1, gen_string);
        else if (r < 8)
            gen_len_field(b, 2, gen_string);
        else
            gen_unknown(b);
    }
}

static void gen_message(gen_buf *b) {
    int n = (int)(rng_next() % 9);
    for (int i = 0; i < n; i++) {
        unsigned r = (unsigned)(rng_next() % 20);
        if (r < 3) {
            gen_tag(b, 1, 0);
            gb_varint(b, gen_value());
        } else if (r < 6) {
            gen_len_field(b, 2, gen_string);
        } else if (r < 9) {
            gen_len_field(b, 3, gen_status);
        } else if (r < 13) {
            gen_len_field(b, 4, gen_entry);
        } else if (r < 16) {
            gen_len_field(b, 5, gen_string);
        } else if (r < 19) {
            gen_unknown(b);
        } else {
            gb_byte(b, (uint8_t)rng_next()); /* a stray byte */
        }
    }
}

static void mutate(gen_buf *b) {
    int k = (int)(rng_next() % 3);
    for (int i = 0; i < k && b->n > 0; i++) {
        size_t at = (size_t)(rng_next() % b->n);
        switch (rng_next() % 4) {
            case 0:
                b->p[at] ^= (uint8_t)(1u << (rng_next() % 8));
                break;
            case 1:
                b->p[at] = (uint8_t)rng_next();
                break;
            case 2:
                b->n = at; /* truncate */
                break;
            default:
                memmove(b->p + at, b->p + at + 1, b->n - at - 1);
                b->n--;
                break;
        }
    }
}

static void hex_dump(const char *what, const uint8_t *p, size_t n) {
    print_error("%s (%zu bytes):", what, n);
    for (size_t i = 0; i < n; i++)
        print_error(" %02x", p[i]);
    print_error("\n");
}

static void test_differential_against_protobuf_c(void **state) {
    (void)state;
    enum { ITERATIONS = 20000 };
    size_t both_accept = 0, both_reject = 0, extra_reject = 0, merged = 0, with_entries = 0;
    size_t with_status = 0;
    for (int iter = 0; iter < ITERATIONS; iter++) {
        gen_buf b = {0};
        unsigned kind = (unsigned)(iter % 10);
        if (kind == 0) { /* random bytes */
            size_t n = (size_t)(rng_next() % 64);
            for (size_t i = 0; i < n; i++)
                gb_byte(&b, (uint8_t)rng_next());
        } else {
            gen_message(&b);
            if (kind >= 7) mutate(&b);
        }
        /* exactly b.n bytes on the heap, so that ASan sees any over-read */
        uint8_t *data = malloc(b.n > 0 ? b.n : 1);
        assert_non_null(data);
        if (b.n > 0) memcpy(data, b.p, b.n);
        free(b.p);

        ref_msg *r = (ref_msg *)protobuf_c_message_unpack(&ref_msg_desc, NULL, b.n, data);
        Stream__Message *pb = stream__message__unpack(NULL, b.n, data);
        if ((r != NULL) != (pb != NULL))
            hex_dump("reference and stock protobuf-c differ", data, b.n);
        assert_int_equal(r != NULL, pb != NULL);
        const char *extra = r != NULL ? ref_extra_reject(r) : NULL;
        bool want = r != NULL && extra == NULL;

        nh_error err = {0};
        nh_wire_msg *d = nh_wire_decode(data, b.n, &err);
        if ((d != NULL) != want) {
            hex_dump("nodehost and protobuf-c disagree", data, b.n);
            print_error("protobuf-c %s%s%s; nodehost %s%s\n", r ? "accepts" : "rejects",
                        extra ? ", nodehost rule: " : "", extra ? extra : "",
                        d ? "accepts" : "rejects: ", d ? "" : err.message);
        }
        assert_int_equal(d != NULL, want);
        if (d != NULL) {
            assert_matches_reference(d, r);
            assert_matches_stock(d, pb, r->n_status > 1);
            touch_message(d);
            both_accept++;
            if (r->n_status > 1) merged++;
            if (r->n_status > 0) with_status++;
            if (r->n_entry > 0) with_entries++;
            nh_wire_msg_free(d);
        } else {
            assert_int_equal(err.code, NH_INVALID_ARGUMENT);
            assert_non_null(strstr(err.message, "malformed message"));
            if (extra != NULL)
                extra_reject++;
            else
                both_reject++;
        }
        if (r != NULL) protobuf_c_message_free_unpacked(&r->base, NULL);
        if (pb != NULL) stream__message__free_unpacked(pb, NULL);
        free(data);
    }
    print_message("differential: %zu accepted (%zu with status, %zu merged statuses, %zu with "
                  "entries), %zu rejected by both, %zu rejected by nodehost's extra rules\n",
                  both_accept, with_status, merged, with_entries, both_reject, extra_reject);
    /* the generator reaches every outcome */
    assert_true(both_accept > ITERATIONS / 10);
    assert_true(both_reject > ITERATIONS / 10);
    assert_true(extra_reject > ITERATIONS / 50);
    assert_true(merged > 100);
    assert_true(with_entries > 500);
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
        cmocka_unit_test(test_repeated_status_is_merged),
        cmocka_unit_test(test_negative_status_code_round_trip),
        cmocka_unit_test(test_embedded_nul_is_rejected),
        cmocka_unit_test(test_varint_and_header_limits),
        cmocka_unit_test(test_field_number_0_is_rejected_in_any_encoding),
        cmocka_unit_test(test_unknown_fields_inside_status_and_entry_are_skipped),
        cmocka_unit_test(test_differential_against_protobuf_c),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_vectors);
}
