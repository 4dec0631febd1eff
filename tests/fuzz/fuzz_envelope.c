/* Fuzz target: the Gorums envelope (stream.Message) decoder, sdk/src/wire/codec.c.
 *
 * Each input is the bytes of one gRPC message. nh_wire_decode() either rejects it (with an
 * error set) or returns a message; an accepted message is checked for the promises of codec.h
 * (non-NULL strings, no NUL inside method and entries, payload owned), re-encoded with
 * nh_wire_encode() and decoded again, and the second decoding must equal the first (a
 * round-trip oracle: what the decoder accepts, the encoder must reproduce). The canonical
 * encoding must also be stable: encoding the second decoding gives the same bytes.
 */
#include "wire/codec.h"

#include <nodehost/status.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_msg(const nh_wire_msg *m) {
    if (m->method == NULL || m->status_message == NULL) abort();
    (void)strlen(m->method);
    (void)strlen(m->status_message);
    if (m->entry_count > 0 && m->entries == NULL) abort();
    for (size_t i = 0; i < m->entry_count; i++) {
        if (m->entries[i].key == NULL || m->entries[i].value == NULL) abort();
        (void)strlen(m->entries[i].key);
        (void)strlen(m->entries[i].value);
    }
    if (m->payload_len > 0 && m->payload == NULL) abort();
    /* Touch every payload byte so that ASan sees any out-of-block payload. */
    uint8_t x = 0;
    for (size_t i = 0; i < m->payload_len; i++)
        x ^= m->payload[i];
    (void)x;
}

static void same(const nh_wire_msg *a, const nh_wire_msg *b) {
    if (a->seq != b->seq) abort();
    if (strcmp(a->method, b->method) != 0) abort();
    if (a->has_status != b->has_status) abort();
    if (a->has_status && a->status_code != b->status_code) abort();
    if (a->has_status && strcmp(a->status_message, b->status_message) != 0) abort();
    if (a->entry_count != b->entry_count) abort();
    for (size_t i = 0; i < a->entry_count; i++) {
        if (strcmp(a->entries[i].key, b->entries[i].key) != 0) abort();
        if (strcmp(a->entries[i].value, b->entries[i].value) != 0) abort();
    }
    if (a->payload_len != b->payload_len) abort();
    if (a->payload_len > 0 && memcmp(a->payload, b->payload, a->payload_len) != 0) abort();
}

static nh_bytes *encode(const nh_wire_msg *m) {
    nh_wire_out out = {
        .seq = m->seq,
        .method = m->method,
        .has_status = m->has_status,
        .status_code = m->status_code,
        .status_message = m->status_message,
        .entries = m->entries,
        .entry_count = m->entry_count,
        .payload = m->payload,
        .payload_len = m->payload_len,
    };
    nh_bytes *b = nh_wire_encode(&out);
    if (b == NULL) abort(); /* out of memory only: inputs are small */
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nh_error err;
    memset(&err, 0, sizeof err);
    nh_wire_msg *m = nh_wire_decode(data, size, &err);
    if (m == NULL) {
        if (err.code != NH_INVALID_ARGUMENT) abort();
        if (memchr(err.message, '\0', sizeof err.message) == NULL) abort();
        /* The same input without an error pointer must fail the same way. */
        if (nh_wire_decode(data, size, NULL) != NULL) abort();
        return 0;
    }
    check_msg(m);

    nh_bytes *enc = encode(m);
    memset(&err, 0, sizeof err);
    nh_wire_msg *m2 = nh_wire_decode(enc->data, enc->len, &err);
    if (m2 == NULL) abort(); /* the decoder refused the encoder's own output */
    check_msg(m2);
    same(m, m2);

    nh_bytes *enc2 = encode(m2);
    if (enc->len != enc2->len) abort();
    if (memcmp(enc->data, enc2->data, enc->len) != 0) abort();

    nh_bytes_unref(enc2);
    nh_bytes_unref(enc);
    nh_wire_msg_free(m2);
    nh_wire_msg_free(m);
    return 0;
}
