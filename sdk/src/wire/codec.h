/* The Gorums envelope (stream.Message) on the wire: a hand-written encoder and decoder. */
#ifndef NH_WIRE_CODEC_H
#define NH_WIRE_CODEC_H

#include "util/bytes.h"

#include <nodehost/status.h>

#include <stddef.h>
#include <stdint.h>

/** The high bit of message_seq_no: set on server-initiated calls (spec 1.5). */
#define NH_SEQ_SERVER_BIT (UINT64_C(1) << 63)

/** A message to encode. Pointers are borrowed for the duration of nh_wire_encode(). */
typedef struct nh_wire_out {
    uint64_t seq;
    const char *method; /* NULL or "" omits the field */
    bool has_status;    /* emit the status field (even with code 0) */
    int32_t status_code;
    const char *status_message; /* NULL means "" */
    const nh_metadata *entries; /* per-message metadata, in order */
    size_t entry_count;
    const uint8_t *payload; /* may be NULL when payload_len is 0 */
    size_t payload_len;
} nh_wire_out;

/** Encodes a message into a new buffer (refcount 1). NULL when out of memory. */
nh_bytes *nh_wire_encode(const nh_wire_out *m);

/** A decoded message. Strings are NUL-terminated and owned by the message: the struct, the
 * entries, the strings and the payload are one allocation. */
typedef struct nh_wire_msg {
    uint64_t seq;
    char *method; /* never NULL ("" when absent) */
    bool has_status;
    int32_t status_code;
    char *status_message; /* never NULL */
    nh_metadata *entries; /* entry_count pairs, owned */
    size_t entry_count;
    const uint8_t *payload; /* payload_len bytes, owned by the message (NULL when 0) */
    size_t payload_len;
} nh_wire_msg;

/**
 * Decodes data[0..len) into a new message. Returns NULL on malformed input (truncated, bad
 * wire types, field number 0, invalid UTF-8 in a string field, an embedded NUL in method or
 * in an entry key or value) and, when err is not NULL, sets it to NH_INVALID_ARGUMENT with a
 * short reason. Unknown fields are accepted and ignored; an embedded NUL in the status message
 * truncates it. The exact rules are at the top of codec.c.
 */
nh_wire_msg *nh_wire_decode(const uint8_t *data, size_t len, nh_error *err);

/** Frees a decoded message. Accepts NULL. */
void nh_wire_msg_free(nh_wire_msg *m);

#endif
