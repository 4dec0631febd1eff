/* The Gorums envelope (stream.Message) on the wire: encoding and decoding with protobuf-c. */
#include "wire/codec.h"

#include "stream.pb-c.h"
#include "google/rpc/status.pb-c.h"

#include <protobuf-c/protobuf-c.h>

#include <stdbool.h>
#include <stdlib.h>

/* Entries up to this count are encoded from stack arrays, more from the heap. */
#define NH_WIRE_STACK_ENTRIES 16

/* protobuf-c never writes through the strings it packs; its fields are just not const. */
static char *nh_wire_str(const char *s) {
    return s != NULL ? (char *)s : (char *)protobuf_c_empty_string;
}

nh_bytes *nh_wire_encode(const nh_wire_out *m) {
    Stream__Message msg = STREAM__MESSAGE__INIT;
    Google__Rpc__Status status = GOOGLE__RPC__STATUS__INIT;
    Stream__MetadataEntry entry_stack[NH_WIRE_STACK_ENTRIES];
    Stream__MetadataEntry *entry_ptr_stack[NH_WIRE_STACK_ENTRIES];
    Stream__MetadataEntry *entries = entry_stack;
    Stream__MetadataEntry **entry_ptrs = entry_ptr_stack;
    nh_bytes *out = NULL;

    if (m == NULL) return NULL;
    if (m->entry_count > NH_WIRE_STACK_ENTRIES) {
        entries = calloc(m->entry_count, sizeof(*entries));
        entry_ptrs = calloc(m->entry_count, sizeof(*entry_ptrs));
        if (entries == NULL || entry_ptrs == NULL) goto done;
    }

    msg.message_seq_no = m->seq;
    msg.method = nh_wire_str(m->method);
    if (m->has_status) {
        status.code = m->status_code;
        status.message = nh_wire_str(m->status_message);
        msg.status = &status;
    }
    for (size_t i = 0; i < m->entry_count; i++) {
        stream__metadata_entry__init(&entries[i]);
        entries[i].key = nh_wire_str(m->entries[i].key);
        entries[i].value = nh_wire_str(m->entries[i].value);
        entry_ptrs[i] = &entries[i];
    }
    msg.n_entry = m->entry_count;
    msg.entry = m->entry_count > 0 ? entry_ptrs : NULL;
    if (m->payload_len > 0) {
        msg.payload.len = m->payload_len;
        msg.payload.data = (uint8_t *)m->payload;
    }

    size_t size = protobuf_c_message_get_packed_size(&msg.base);
    out = nh_bytes_new(size);
    if (out == NULL) goto done;
    size_t written = protobuf_c_message_pack(&msg.base, out->data);
    if (written != size) {
        /* Cannot happen with a consistent protobuf-c; never hand out a short buffer. */
        nh_bytes_unref(out);
        out = NULL;
    }

done:
    if (entries != entry_stack) free(entries);
    if (entry_ptrs != entry_ptr_stack) free(entry_ptrs);
    return out;
}

/* True when s is well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF). */
static bool utf8_valid(const char *str) {
    const uint8_t *s = (const uint8_t *)str;
    while (*s) {
        uint8_t c = *s;
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            s++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i <= n; i++) {
            if ((s[i] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i] & 0x3F);
        }
        static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        s += n + 1;
    }
    return true;
}

/* proto3 strings must be UTF-8; Go's protobuf rejects a message that breaks this, protobuf-c
 * does not check, so the decoder does. */
static const char *invalid_string_field(const Stream__Message *pb) {
    if (pb->method && !utf8_valid(pb->method)) return "method";
    if (pb->status && pb->status->message && !utf8_valid(pb->status->message))
        return "status.message";
    for (size_t i = 0; i < pb->n_entry; i++) {
        if (!utf8_valid(pb->entry[i]->key)) return "entry.key";
        if (!utf8_valid(pb->entry[i]->value)) return "entry.value";
    }
    return NULL;
}

nh_wire_msg *nh_wire_decode(const uint8_t *data, size_t len, nh_error *err) {
    static const uint8_t empty[1] = {0};
    if (data == NULL) {
        if (len > 0) {
            nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                         "malformed message: no data for %zu bytes", len);
            return NULL;
        }
        data = empty;
    }

    Stream__Message *pb =
        (Stream__Message *)protobuf_c_message_unpack(&stream__message__descriptor, NULL, len, data);
    if (pb == NULL) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                     "malformed message: stream.Message of %zu bytes does not parse", len);
        return NULL;
    }
    const char *bad = invalid_string_field(pb);
    if (bad) {
        protobuf_c_message_free_unpacked(&pb->base, NULL);
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                     "malformed message: field %s is not valid UTF-8", bad);
        return NULL;
    }

    nh_wire_msg *m = calloc(1, sizeof(*m));
    if (m == NULL) goto oom;
    if (pb->n_entry > 0) {
        m->entries = calloc(pb->n_entry, sizeof(*m->entries));
        if (m->entries == NULL) goto oom;
        for (size_t i = 0; i < pb->n_entry; i++) {
            m->entries[i].key = pb->entry[i]->key;
            m->entries[i].value = pb->entry[i]->value;
        }
    }
    m->entry_count = pb->n_entry;
    m->seq = pb->message_seq_no;
    m->method = pb->method != NULL ? pb->method : (char *)protobuf_c_empty_string;
    m->has_status = pb->status != NULL;
    if (pb->status != NULL) {
        m->status_code = pb->status->code;
        m->status_message = pb->status->message;
    }
    if (m->status_message == NULL) m->status_message = (char *)protobuf_c_empty_string;
    m->payload = pb->payload.len > 0 ? pb->payload.data : NULL;
    m->payload_len = pb->payload.len;
    m->impl_ = pb;
    return m;

oom:
    free(m);
    protobuf_c_message_free_unpacked(&pb->base, NULL);
    nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0,
                 "out of memory decoding a message of %zu bytes", len);
    return NULL;
}

void nh_wire_msg_free(nh_wire_msg *m) {
    if (m == NULL) return;
    if (m->impl_ != NULL) protobuf_c_message_free_unpacked((ProtobufCMessage *)m->impl_, NULL);
    free(m->entries);
    free(m);
}
