/* nodehost program: a check of a request's protobuf wire bytes against the method's message
 * descriptor, before protobuf-c decodes them for a plugin.
 *
 * protobuf-c hands `string` fields to plugins as NUL-terminated C strings: their length is lost,
 * so "acct\0evil" (valid proto3) would reach a handler as "acct". And protobuf-c does not check
 * UTF-8, which Go's protobuf decoder requires of proto3 strings. nh_wire_check() walks the wire
 * format once (varint, 64-bit, length-delimited and 32-bit values; anything else or a truncated
 * value is malformed), checks every field whose descriptor type is PROTOBUF_C_TYPE_STRING (valid
 * UTF-8 as Go defines it, no NUL byte) and recurses into PROTOBUF_C_TYPE_MESSAGE fields with
 * their own descriptor, at most NH_WIRE_MAX_DEPTH levels deep. Unknown field numbers are skipped
 * (only their framing is checked). It allocates nothing.
 *
 * Thread safety: no shared state.
 */
#ifndef NH_HOST_PLUGIN_WIRE_CHECK_H
#define NH_HOST_PLUGIN_WIRE_CHECK_H

#include <protobuf-c/protobuf-c.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** How deep messages may nest (the top-level message is depth 0), as protobuf's own limit. */
#define NH_WIRE_MAX_DEPTH 100

/** The outcome of nh_wire_check(). */
typedef enum nh_wire_status {
    NH_WIRE_OK = 0,        /**< well formed, every string field valid */
    NH_WIRE_MALFORMED,     /**< not a protobuf encoding (bad framing, truncation, wire type) */
    NH_WIRE_TOO_DEEP,      /**< messages nest deeper than NH_WIRE_MAX_DEPTH */
    NH_WIRE_INVALID_UTF8,  /**< a string field is not valid UTF-8 */
    NH_WIRE_NUL_IN_STRING, /**< a string field contains a NUL byte */
} nh_wire_status;

/** Where nh_wire_check() found a problem. */
typedef struct nh_wire_fault {
    /** The message being read (the innermost one for nested messages). */
    const ProtobufCMessageDescriptor *message;
    /** The field at fault, or NULL when the framing itself is bad. */
    const ProtobufCFieldDescriptor *field;
    /** Byte offset in the checked buffer where the bad value (or tag) starts. */
    size_t offset;
} nh_wire_fault;

/** Checks len bytes at data as an encoding of the message desc (see the file comment). Returns
 * NH_WIRE_OK, or the first problem found with *fault (may be NULL) saying where. data may be
 * NULL when len is 0. */
nh_wire_status nh_wire_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                             size_t len, nh_wire_fault *fault);

/** True when s[0..len) is valid UTF-8 as Go's utf8.Valid defines it: no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequences. NUL bytes are
 * valid UTF-8 (nh_wire_check() refuses them separately). */
bool nh_wire_utf8_valid(const uint8_t *s, size_t len);

/** Describes a problem for a client, e.g. "proto.WriteRequest.Key: string field is not valid
 * UTF-8", into buf (always NUL-terminated when size > 0). Returns buf. */
const char *nh_wire_describe(nh_wire_status st, const nh_wire_fault *fault, char *buf, size_t size);

#endif
