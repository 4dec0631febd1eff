/* The wire check of requests (see wire_check.h): one recursive pass over the protobuf wire
 * format, looking fields up in the message descriptors; string fields get a UTF-8 and NUL check,
 * message fields a recursive check with their own descriptor. */
#include "plugin/wire_check.h"

#include <stdio.h>

/* Wire types (the low 3 bits of a tag). */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* The largest field number protobuf allows. */
#define MAX_FIELD_NUMBER ((1u << 29) - 1)

/* Reads a varint of at most 10 bytes (the 10th may only carry bit 63, as Go requires) at *p,
 * before end; advances *p. False when truncated or too long. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    uint64_t v = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (*p == end) return false;
        uint8_t b = *(*p)++;
        if (i == 9 && b > 1) return false;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* The length of the UTF-8 sequence starting at s[0..n) (n >= 1), or 0 when it is not a valid
 * one (Go's rules: shortest form only, no surrogates, at most U+10FFFF). */
static size_t utf8_seq(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    uint8_t lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
    size_t len;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0; /* overlong below U+0800 */
        if (c == 0xed) hi = 0x9f; /* surrogates U+D800..U+DFFF */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90; /* overlong below U+10000 */
        if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0; /* a continuation byte, an overlong 2-byte lead (C0, C1), or F5..FF */
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return len;
}

bool nh_wire_utf8_valid(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_seq(s + i, len - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

/* A string field's bytes: NUL first (a NUL is valid UTF-8), then UTF-8. */
static nh_wire_status check_string(const uint8_t *s, size_t len) {
    size_t i = 0;
    nh_wire_status st = NH_WIRE_OK;
    while (i < len) {
        if (s[i] == 0) return NH_WIRE_NUL_IN_STRING;
        size_t k = utf8_seq(s + i, len - i);
        if (!k) {
            st = NH_WIRE_INVALID_UTF8; /* keep looking for a NUL, the more specific reason */
            k = 1;
        }
        i += k;
    }
    return st;
}

static nh_wire_status fail(nh_wire_status st, nh_wire_fault *fault,
                           const ProtobufCMessageDescriptor *desc,
                           const ProtobufCFieldDescriptor *field, size_t offset) {
    if (fault) {
        fault->message = desc;
        fault->field = field;
        fault->offset = offset;
    }
    return st;
}

/* Checks the message desc encoded in [p, end) at nesting depth depth; base is the start of the
 * whole buffer (for offsets). */
static nh_wire_status check_message(const ProtobufCMessageDescriptor *desc, const uint8_t *p,
                                    const uint8_t *end, unsigned depth, const uint8_t *base,
                                    nh_wire_fault *fault) {
    while (p < end) {
        const uint8_t *start = p;
        uint64_t tag;
        if (!read_varint(&p, end, &tag) || tag > UINT32_MAX)
            return fail(NH_WIRE_MALFORMED, fault, desc, NULL, (size_t)(start - base));
        uint32_t number = (uint32_t)(tag >> 3);
        unsigned wt = (unsigned)(tag & 7);
        if (number == 0 || number > MAX_FIELD_NUMBER)
            return fail(NH_WIRE_MALFORMED, fault, desc, NULL, (size_t)(start - base));
        const ProtobufCFieldDescriptor *f =
            desc ? protobuf_c_message_descriptor_get_field(desc, (unsigned)number) : NULL;
        bool checked =
            f && (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE);
        /* protobuf-c refuses a string or message field with another wire type: so do we. */
        if (checked && wt != WT_LEN)
            return fail(NH_WIRE_MALFORMED, fault, desc, f, (size_t)(start - base));
        uint64_t v;
        switch (wt) {
            case WT_VARINT:
                if (!read_varint(&p, end, &v))
                    return fail(NH_WIRE_MALFORMED, fault, desc, f, (size_t)(start - base));
                break;
            case WT_I64:
            case WT_I32: {
                size_t size = wt == WT_I64 ? 8 : 4;
                if ((size_t)(end - p) < size)
                    return fail(NH_WIRE_MALFORMED, fault, desc, f, (size_t)(start - base));
                p += size;
                break;
            }
            case WT_LEN: {
                if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p))
                    return fail(NH_WIRE_MALFORMED, fault, desc, f, (size_t)(start - base));
                const uint8_t *value = p;
                p += v;
                if (!checked) break;
                if (f->type == PROTOBUF_C_TYPE_STRING) {
                    nh_wire_status st = check_string(value, (size_t)v);
                    if (st != NH_WIRE_OK) return fail(st, fault, desc, f, (size_t)(start - base));
                } else if (f->descriptor) {
                    if (depth >= NH_WIRE_MAX_DEPTH)
                        return fail(NH_WIRE_TOO_DEEP, fault, desc, f, (size_t)(start - base));
                    nh_wire_status st =
                        check_message(f->descriptor, value, p, depth + 1, base, fault);
                    if (st != NH_WIRE_OK) return st;
                }
                break;
            }
            default: /* groups (3, 4; protobuf-c has none) and the unused 6, 7 */
                return fail(NH_WIRE_MALFORMED, fault, desc, f, (size_t)(start - base));
        }
    }
    return NH_WIRE_OK;
}

nh_wire_status nh_wire_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                             size_t len, nh_wire_fault *fault) {
    if (!data) {
        if (len) return fail(NH_WIRE_MALFORMED, fault, desc, NULL, 0);
        return NH_WIRE_OK;
    }
    return check_message(desc, data, data + len, 0, data, fault);
}

const char *nh_wire_describe(nh_wire_status st, const nh_wire_fault *fault, char *buf,
                             size_t size) {
    if (!size) return buf;
    const char *msg = fault && fault->message ? fault->message->name : "message";
    const char *field = fault && fault->field ? fault->field->name : "?";
    switch (st) {
        case NH_WIRE_OK:
            snprintf(buf, size, "ok");
            break;
        case NH_WIRE_MALFORMED:
            snprintf(buf, size, "not a valid %s", msg);
            break;
        case NH_WIRE_TOO_DEEP:
            snprintf(buf, size, "%s.%s: messages nested deeper than %d", msg, field,
                     NH_WIRE_MAX_DEPTH);
            break;
        case NH_WIRE_INVALID_UTF8:
            snprintf(buf, size, "%s.%s: string field is not valid UTF-8", msg, field);
            break;
        case NH_WIRE_NUL_IN_STRING:
            snprintf(buf, size, "%s.%s: string field contains a NUL byte (not supported)", msg,
                     field);
            break;
        default:
            snprintf(buf, size, "unknown wire check result %d", (int)st);
            break;
    }
    return buf;
}
