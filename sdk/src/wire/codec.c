/* The Gorums envelope (stream.Message) on the wire: a hand-written encoder and decoder.
 *
 * stream.Message has five fields (spec 1.2), so a table-driven protobuf library buys nothing
 * here and costs a lot per message (about 8 allocations and a generic field walk). Instead:
 *
 * Encoding computes the exact size first (proto3: zero and empty fields are omitted, fields in
 * number order, status emitted whenever has_status is set, int32 codes sign-extended to 64 bits
 * as protobuf does, so a negative code takes 10 bytes), allocates one nh_bytes and writes the
 * fields straight into it. The output is byte-identical to protobuf-c and Python protobuf.
 *
 * Decoding makes two passes over the input and exactly one allocation:
 *   1. scan: walk every field, validate it, and remember where the surviving values are
 *      (the last occurrence of seq, method and payload; the status merged over all of its
 *      occurrences; the number and total size of the entries);
 *   2. copy: allocate one block holding the nh_wire_msg, the entries array, the payload and
 *      NUL-terminated copies of every string, and fill it. Entries are found again by walking
 *      the already validated input a second time.
 * nh_wire_msg_free() is therefore a single free().
 *
 * What is accepted and rejected is what protobuf-c 1.4.1 (the previous implementation) plus the
 * UTF-8 check accepted and rejected, with three deliberate differences:
 *   - a string field (method, status.message, entry key or value) must be valid UTF-8 in every
 *     occurrence and over all of its bytes, as Go checks (the old code checked only the final
 *     value, up to its first NUL);
 *   - an embedded NUL in method, entry key or entry value rejects the message: a C string cannot
 *     carry it, and truncating a method name or key would silently change its meaning. An
 *     embedded NUL in status.message only truncates it there (it is text for humans, and
 *     dropping an error response over it would be worse);
 *   - field number 0 is rejected in any encoding (protobuf-c rejects only the 1-byte form
 *     and keeps e.g. 80 00 as an unknown field; Go rejects both).
 * The rest follows protobuf-c: tags of at most 5 bytes, length prefixes of at most 5 bytes,
 * varints of at most 10 bytes (bits beyond 64 are dropped), a known field with the wrong wire
 * type is an error, groups (wire types 3 and 4) and wire types 6 and 7 are errors, and unknown
 * fields of wire types 0, 1, 2 and 5 are skipped wherever they appear (top level, status, entry,
 * status.details). The status.details Any messages are validated the way protobuf-c parsed them
 * (type_url and value must be length-delimited) but not exposed.
 *
 * Repeated occurrences follow protobuf (Go, Python): the last seq, method and payload win; a
 * repeated entry field appends; a repeated status is merged, each field present in a later
 * occurrence overriding the earlier value (protobuf-c instead resets code to 0 when a later
 * occurrence lacks it).
 */
#include "wire/codec.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- encoding ------------------------------------------------------------------------------ */

enum {
    WT_VARINT = 0,
    WT_I64 = 1,
    WT_LEN = 2,
    WT_I32 = 5,
};

static inline size_t varint_size(uint64_t v) {
#if defined(__GNUC__) || defined(__clang__)
    /* 1 + floor(bit length - 1) / 7, with v | 1 so that 0 takes one byte */
    return (size_t)(((63 - __builtin_clzll(v | 1)) * 9 + 73) / 64);
#else
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
#endif
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Size of a length-delimited field with a 1-byte tag and n bytes of content. */
static inline size_t len_field_size(size_t n) {
    return 1 + varint_size(n) + n;
}

/* Writes a length-delimited field (tag, length, bytes). */
static inline uint8_t *put_bytes(uint8_t *p, uint8_t tag, const void *data, size_t n) {
    *p++ = tag;
    p = put_varint(p, n);
    if (n > 0) memcpy(p, data, n);
    return p + n;
}

/* protobuf encodes int32 as the varint of its 64-bit sign extension. */
static inline uint64_t int32_wire(int32_t v) {
    return (uint64_t)(int64_t)v;
}

static inline size_t str_len(const char *s) {
    return s != NULL ? strlen(s) : 0;
}

/* Content size of a MetadataEntry (key 1, value 2; empty strings omitted). */
static inline size_t entry_size(size_t klen, size_t vlen) {
    return (klen > 0 ? len_field_size(klen) : 0) + (vlen > 0 ? len_field_size(vlen) : 0);
}

nh_bytes *nh_wire_encode(const nh_wire_out *m) {
    if (m == NULL) return NULL;
    size_t method_len = str_len(m->method);
    size_t smsg_len = 0, status_size = 0;
    size_t size = 0;

    if (m->seq != 0) size += 1 + varint_size(m->seq);
    if (method_len > 0) size += len_field_size(method_len);
    if (m->has_status) {
        smsg_len = str_len(m->status_message);
        if (m->status_code != 0) status_size += 1 + varint_size(int32_wire(m->status_code));
        if (smsg_len > 0) status_size += len_field_size(smsg_len);
        size += len_field_size(status_size);
    }
    for (size_t i = 0; i < m->entry_count; i++) {
        size +=
            len_field_size(entry_size(str_len(m->entries[i].key), str_len(m->entries[i].value)));
    }
    if (m->payload_len > 0) size += len_field_size(m->payload_len);

    nh_bytes *out = nh_bytes_new(size);
    if (out == NULL) return NULL;
    uint8_t *p = out->data;

    if (m->seq != 0) {
        *p++ = 0x08;
        p = put_varint(p, m->seq);
    }
    if (method_len > 0) p = put_bytes(p, 0x12, m->method, method_len);
    if (m->has_status) {
        *p++ = 0x1A;
        p = put_varint(p, status_size);
        if (m->status_code != 0) {
            *p++ = 0x08;
            p = put_varint(p, int32_wire(m->status_code));
        }
        if (smsg_len > 0) p = put_bytes(p, 0x12, m->status_message, smsg_len);
    }
    for (size_t i = 0; i < m->entry_count; i++) {
        size_t klen = str_len(m->entries[i].key), vlen = str_len(m->entries[i].value);
        *p++ = 0x22;
        p = put_varint(p, entry_size(klen, vlen));
        if (klen > 0) p = put_bytes(p, 0x0A, m->entries[i].key, klen);
        if (vlen > 0) p = put_bytes(p, 0x12, m->entries[i].value, vlen);
    }
    if (m->payload_len > 0) p = put_bytes(p, 0x2A, m->payload, m->payload_len);

    if ((size_t)(p - out->data) != size) {
        /* Cannot happen: the size computation and the writer disagree. Never hand it out. */
        nh_bytes_unref(out);
        return NULL;
    }
    return out;
}

/* ---- decoding: primitives ------------------------------------------------------------------ */

/* A view of input bytes. */
typedef struct span {
    const uint8_t *p;
    size_t n;
} span;

/* One field read by next_field(): its number, wire type, and value (varint) or bytes (LEN). */
typedef struct field {
    uint32_t num;
    int wt;
    uint64_t v;
    span s;
} field;

/* Why a message was rejected: a reason for the error message, and for string errors the field
 * and whether it was bad UTF-8 or an embedded NUL. */
typedef struct dec_error {
    const char *reason;
    const char *str_field; /* non-NULL for a string error */
    bool nul;              /* the string error is an embedded NUL (else bad UTF-8) */
} dec_error;

#if defined(__GNUC__) || defined(__clang__)
#define NH_ALWAYS_INLINE inline __attribute__((always_inline))
#define NH_NOINLINE      __attribute__((noinline))
#else
#define NH_ALWAYS_INLINE inline
#define NH_NOINLINE
#endif

/* The general case of get_varint(). */
static NH_NOINLINE bool get_varint_slow(const uint8_t **pp, const uint8_t *end, size_t max,
                                        uint64_t *out) {
    const uint8_t *p = *pp;
    size_t avail = (size_t)(end - p);
    if (max > avail) max = avail;
    uint64_t v = 0;
    for (size_t i = 0; i < max; i++) {
        uint8_t b = p[i];
        v |= (uint64_t)(b & 0x7F) << (7 * i); /* max <= 10: bits beyond 64 are dropped */
        if (b < 0x80) {
            *out = v;
            *pp = p + i + 1;
            return true;
        }
    }
    return false;
}

/* Reads a varint of at most max bytes from [*pp, end). False when it does not end in time. */
static NH_ALWAYS_INLINE bool get_varint(const uint8_t **pp, const uint8_t *end, size_t max,
                                        uint64_t *out) {
    const uint8_t *p = *pp;
    if (p < end && *p < 0x80) { /* the common 1-byte case */
        *out = *p;
        *pp = p + 1;
        return true;
    }
    return get_varint_slow(pp, end, max, out);
}

/* Reads the next field at *pp. Wire types 0, 1, 2 and 5 are read (fixed-width values are only
 * skipped: no field of stream.Message uses them); anything else is an error. */
static NH_ALWAYS_INLINE bool next_field(const uint8_t **pp, const uint8_t *end, field *f,
                                        dec_error *e) {
    uint64_t tag;
    if (!get_varint(pp, end, 5, &tag)) {
        e->reason = "bad or truncated tag";
        return false;
    }
    f->num = (uint32_t)(tag >> 3); /* at most 35 bits in 5 bytes: the number fits in 32 */
    f->wt = (int)(tag & 7);
    if (f->num == 0) {
        e->reason = "field number 0";
        return false;
    }
    const uint8_t *p = *pp;
    size_t rem = (size_t)(end - p);
    switch (f->wt) {
        case WT_VARINT:
            if (!get_varint(pp, end, 10, &f->v)) {
                e->reason = "bad or truncated varint";
                return false;
            }
            return true;
        case WT_I64:
            if (rem < 8) goto truncated;
            *pp = p + 8;
            return true;
        case WT_I32:
            if (rem < 4) goto truncated;
            *pp = p + 4;
            return true;
        case WT_LEN: {
            uint64_t n;
            if (!get_varint(pp, end, 5, &n)) {
                e->reason = "bad or truncated length";
                return false;
            }
            p = *pp;
            if (n > (uint64_t)(end - p) || n > INT_MAX) {
                e->reason = "length beyond the end";
                return false;
            }
            f->s.p = p;
            f->s.n = (size_t)n;
            *pp = p + n;
            return true;
        }
        default:
            e->reason = "unsupported wire type (group or 6/7)";
            return false;
    }
truncated:
    e->reason = "truncated fixed-width field";
    return false;
}

static inline bool want_wt(const field *f, int wt, dec_error *e) {
    if (f->wt == wt) return true;
    e->reason = "known field with the wrong wire type";
    return false;
}

/* True when n >= 8 bytes at p are all ASCII and none is NUL: a word at a time, the last word
 * overlapping the one before. */
static inline bool plain_ascii(const uint8_t *p, size_t n) {
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    uint64_t w, bad = 0;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        bad |= (w & highs) | ((w - ones) & ~w & highs);
    }
    memcpy(&w, p + n - 8, 8);
    bad |= (w & highs) | ((w - ones) & ~w & highs);
    return bad == 0;
}

/* Checks that s is well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF) and,
 * unless allow_nul, has no NUL byte. */
static bool check_string(span s, bool allow_nul, const char *name, dec_error *e) {
    if (s.n >= 8 && plain_ascii(s.p, s.n)) return true;
    const uint8_t *p = s.p, *end = s.p + s.n;
    while (p < end) {
        uint8_t c = *p;
        if (c < 0x80) {
            if (c == 0 && !allow_nul) {
                e->str_field = name;
                e->nul = true;
                return false;
            }
            p++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            goto bad;
        }
        if ((size_t)(end - p) <= n) goto bad;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80) goto bad;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto bad;
        p += n + 1;
    }
    return true;
bad:
    e->str_field = name;
    e->nul = false;
    return false;
}

/* int32 from a varint: the low 32 bits, as protobuf truncates. */
static inline int32_t to_int32(uint64_t v) {
    uint32_t u = (uint32_t)v;
    return u <= INT32_MAX ? (int32_t)u : (int32_t)(u - 0x80000000u) + INT32_MIN;
}

/* ---- decoding: the messages ---------------------------------------------------------------- */

/* google.protobuf.Any inside status.details: validated, not kept. */
static bool scan_any(span s, dec_error *e) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    field f;
    while (p < end) {
        if (!next_field(&p, end, &f, e)) return false;
        if ((f.num == 1 || f.num == 2) && !want_wt(&f, WT_LEN, e)) return false;
    }
    return true;
}

/* google.rpc.Status, merged into *code and *msg (fields present here override). */
static bool scan_status(span s, int32_t *code, span *msg, dec_error *e) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    field f;
    while (p < end) {
        if (!next_field(&p, end, &f, e)) return false;
        switch (f.num) {
            case 1:
                if (!want_wt(&f, WT_VARINT, e)) return false;
                *code = to_int32(f.v);
                break;
            case 2:
                if (!want_wt(&f, WT_LEN, e)) return false;
                if (!check_string(f.s, true, "status.message", e)) return false;
                *msg = f.s;
                break;
            case 3:
                if (!want_wt(&f, WT_LEN, e)) return false;
                if (!scan_any(f.s, e)) return false;
                break;
            default:
                break;
        }
    }
    return true;
}

/* stream.MetadataEntry: the last key and value. */
static bool scan_entry(span s, span *key, span *value, dec_error *e) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    field f;
    *key = *value = (span){NULL, 0};
    while (p < end) {
        if (!next_field(&p, end, &f, e)) return false;
        if (f.num == 1 || f.num == 2) {
            if (!want_wt(&f, WT_LEN, e)) return false;
            if (!check_string(f.s, false, f.num == 1 ? "entry.key" : "entry.value", e))
                return false;
            *(f.num == 1 ? key : value) = f.s;
        }
    }
    return true;
}

/* What pass 1 learned about a stream.Message. */
typedef struct scan {
    uint64_t seq;
    span method;
    bool has_status;
    int32_t status_code;
    span status_msg;
    span payload;
    size_t entry_count;
    size_t entry_bytes;         /* keys and values, each with its NUL */
    const uint8_t *first_entry; /* where pass 2 starts looking for entries */
} scan;

static bool scan_message(const uint8_t *p, const uint8_t *end, scan *sc, dec_error *e) {
    field f;
    while (p < end) {
        const uint8_t *at = p;
        if (!next_field(&p, end, &f, e)) return false;
        switch (f.num) {
            case 1:
                if (!want_wt(&f, WT_VARINT, e)) return false;
                sc->seq = f.v;
                break;
            case 2:
                if (!want_wt(&f, WT_LEN, e)) return false;
                if (!check_string(f.s, false, "method", e)) return false;
                sc->method = f.s;
                break;
            case 3:
                if (!want_wt(&f, WT_LEN, e)) return false;
                if (!scan_status(f.s, &sc->status_code, &sc->status_msg, e)) return false;
                sc->has_status = true;
                break;
            case 4: {
                if (!want_wt(&f, WT_LEN, e)) return false;
                span k, v;
                if (!scan_entry(f.s, &k, &v, e)) return false;
                if (sc->entry_count++ == 0) sc->first_entry = at;
                sc->entry_bytes += k.n + v.n + 2;
                break;
            }
            case 5:
                if (!want_wt(&f, WT_LEN, e)) return false;
                sc->payload = f.s;
                break;
            default:
                break;
        }
    }
    return true;
}

/* Copies s into *out as a NUL-terminated string and returns it. */
static inline char *put_string(char **out, const uint8_t *s, size_t n) {
    char *str = *out;
    if (n > 0) memcpy(str, s, n);
    str[n] = '\0';
    *out = str + n + 1;
    return str;
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

    /* Pass 1: validate and measure. */
    scan sc = {0};
    dec_error e = {0};
    if (!scan_message(data, data + len, &sc, &e)) {
        if (e.str_field != NULL) {
            nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                         "malformed message: field %s %s", e.str_field,
                         e.nul ? "contains a NUL byte" : "is not valid UTF-8");
        } else {
            nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                         "malformed message: stream.Message of %zu bytes does not parse (%s)", len,
                         e.reason);
        }
        return NULL;
    }
    /* status.message keeps the part before an embedded NUL */
    const uint8_t *nul = sc.status_msg.n > 0 ? memchr(sc.status_msg.p, 0, sc.status_msg.n) : NULL;
    if (nul != NULL) sc.status_msg.n = (size_t)(nul - sc.status_msg.p);

    /* Pass 2: one block for everything. Each part is bounded by len, so this cannot overflow. */
    size_t size = sizeof(nh_wire_msg) + sc.entry_count * sizeof(nh_metadata) + sc.payload.n +
                  sc.method.n + 1 + sc.status_msg.n + 1 + sc.entry_bytes;
    nh_wire_msg *m = malloc(size);
    if (m == NULL) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0,
                     "out of memory decoding a message of %zu bytes", len);
        return NULL;
    }
    nh_metadata *entries = (nh_metadata *)(m + 1);
    uint8_t *payload = (uint8_t *)(entries + sc.entry_count);
    char *strings = (char *)(payload + sc.payload.n);

    m->seq = sc.seq;
    m->method = put_string(&strings, sc.method.p, sc.method.n);
    m->has_status = sc.has_status;
    m->status_code = sc.status_code;
    m->status_message = put_string(&strings, sc.status_msg.p, sc.status_msg.n);
    m->entries = sc.entry_count > 0 ? entries : NULL;
    m->entry_count = sc.entry_count;
    if (sc.payload.n > 0) memcpy(payload, sc.payload.p, sc.payload.n);
    m->payload = sc.payload.n > 0 ? payload : NULL;
    m->payload_len = sc.payload.n;

    /* The input is valid now: walk it again for the entries, in order. */
    const uint8_t *p = sc.first_entry, *end = data + len;
    field f;
    for (size_t i = 0; i < sc.entry_count;) {
        (void)next_field(&p, end, &f, &e);
        if (f.num != 4) continue;
        span k, v;
        (void)scan_entry(f.s, &k, &v, &e);
        entries[i].key = put_string(&strings, k.p, k.n);
        entries[i].value = put_string(&strings, v.p, v.n);
        i++;
    }
    return m;
}

void nh_wire_msg_free(nh_wire_msg *m) {
    free(m);
}
