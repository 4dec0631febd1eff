/* Reference-counted immutable byte buffers: one encoded message shared by several streams. */
#ifndef NH_UTIL_BYTES_H
#define NH_UTIL_BYTES_H

#include <stddef.h>
#include <stdint.h>

/** A reference-counted byte buffer. Thread-safe reference counting; contents are immutable
 * once shared. Create with nh_bytes_new() (refcount 1). */
typedef struct nh_bytes {
    size_t len;     /* number of bytes in data */
    int refs;       /* atomic reference count */
    uint8_t data[]; /* the bytes */
} nh_bytes;

/** Allocates a buffer of len bytes (uninitialised), refcount 1. NULL when out of memory. */
nh_bytes *nh_bytes_new(size_t len);

/** Allocates a buffer holding a copy of data[0..len). NULL when out of memory. */
nh_bytes *nh_bytes_copy(const void *data, size_t len);

/** Takes a reference; returns b. */
nh_bytes *nh_bytes_ref(nh_bytes *b);

/** Drops a reference; frees at zero. Accepts NULL. */
void nh_bytes_unref(nh_bytes *b);

#endif
