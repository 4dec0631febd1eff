/* Fuzz target: the wire check of plugin requests, host/plugin/wire_check.c.
 *
 * Input: the first byte picks a message descriptor, the rest is the request's wire bytes. The
 * descriptors are admin.proto's (compiled into nh_host: StatusResponse has string, repeated
 * string and nested message fields) and a small self-recursive one defined here
 * (fuzz.Node { Node child = 1; string name = 2; repeated Node kids = 3; }) that reaches the
 * nesting limit. Oracles besides the sanitizers:
 *   - nh_wire_utf8_valid() agrees with a reference UTF-8 validator (Go's rules) on the bytes;
 *   - a fault lies inside the buffer, and nh_wire_describe() always NUL-terminates;
 *   - for admin.proto: when the check passes and protobuf-c unpacks the bytes, protobuf-c's own
 *     re-encoding of that message passes the check too.
 */
#include "plugin/wire_check.h"

#include "nodehost/admin.pb-c.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- fuzz.Node: a recursive descriptor (only what nh_wire_check() reads is meaningful) ---- */

extern const ProtobufCMessageDescriptor fuzz_node_descriptor;

static const ProtobufCFieldDescriptor fuzz_node_fields[3] = {
    {"child", 1, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_MESSAGE, 0, 0, &fuzz_node_descriptor,
     NULL, 0, 0, NULL, NULL},
    {"name", 2, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, 0, NULL, NULL, 0, 0, NULL, NULL},
    {"kids", 3, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_MESSAGE, 0, 0, &fuzz_node_descriptor,
     NULL, 0, 0, NULL, NULL},
};
static const unsigned fuzz_node_by_name[3] = {0, 2, 1};
static const ProtobufCIntRange fuzz_node_ranges[2] = {{1, 0}, {0, 3}};

const ProtobufCMessageDescriptor fuzz_node_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "fuzz.Node",
    "Node",
    "Fuzz__Node",
    "fuzz",
    sizeof(ProtobufCMessage),
    3,
    fuzz_node_fields,
    fuzz_node_by_name,
    1,
    fuzz_node_ranges,
    NULL,
    NULL,
    NULL,
    NULL,
};

static const ProtobufCMessageDescriptor *const descriptors[] = {
    &nodehost__status_response__descriptor,
    &nodehost__plugin_status__descriptor,
    &nodehost__reload_response__descriptor,
    &nodehost__status_request__descriptor,
    &fuzz_node_descriptor,
};
#define N_DESCRIPTORS   (sizeof descriptors / sizeof descriptors[0])
#define FUZZ_NODE_INDEX (N_DESCRIPTORS - 1)

/* UTF-8 as Go's utf8.Valid: decode each sequence to a code point and refuse overlong forms,
 * surrogates, values above U+10FFFF and truncated or malformed sequences. */
static bool ref_utf8_valid(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 2, cp = c & 0x1fu, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3, cp = c & 0x0fu, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4, cp = c & 0x07u, min = 0x10000;
        } else {
            return false;
        }
        if (len - i < n) return false;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += n;
    }
    return true;
}

static void check_describe(nh_wire_status st, const nh_wire_fault *fault) {
    static const size_t sizes[] = {1, 7, 40, 256};
    char buf[256];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memset(buf, 'x', sizeof buf);
        if (nh_wire_describe(st, fault, buf, sizes[i]) != buf) abort();
        if (memchr(buf, '\0', sizes[i]) == NULL) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    size_t which = data[0] % N_DESCRIPTORS;
    const ProtobufCMessageDescriptor *desc = descriptors[which];
    const uint8_t *body = data + 1;
    size_t len = size - 1;

    if (nh_wire_utf8_valid(body, len) != ref_utf8_valid(body, len)) abort();

    nh_wire_fault fault;
    memset(&fault, 0, sizeof fault);
    nh_wire_status st = nh_wire_check(desc, len > 0 ? body : NULL, len, &fault);
    if (st != nh_wire_check(desc, len > 0 ? body : NULL, len, NULL)) abort();
    check_describe(st, st == NH_WIRE_OK ? NULL : &fault);
    if (st != NH_WIRE_OK) {
        if (st > NH_WIRE_NUL_IN_STRING) abort();
        if (fault.message == NULL || fault.offset >= len) abort();
        if (st == NH_WIRE_INVALID_UTF8 || st == NH_WIRE_NUL_IN_STRING) {
            if (fault.field == NULL || fault.field->type != PROTOBUF_C_TYPE_STRING) abort();
        }
        if (st == NH_WIRE_TOO_DEEP && which != FUZZ_NODE_INDEX) abort(); /* admin.proto: depth 1 */
        return 0;
    }
    if (which == FUZZ_NODE_INDEX) return 0;

    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, body);
    if (m == NULL) return 0; /* e.g. a varint field sent as fixed64: protobuf-c's own call */
    size_t packed_len = protobuf_c_message_get_packed_size(m);
    uint8_t *packed = malloc(packed_len > 0 ? packed_len : 1);
    if (packed == NULL) abort();
    if (protobuf_c_message_pack(m, packed) != packed_len) abort();
    if (nh_wire_check(desc, packed, packed_len, &fault) != NH_WIRE_OK) abort();
    free(packed);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
