/* Reference-counted immutable byte buffers. */
#include "util/bytes.h"

#include <stdlib.h>
#include <string.h>

nh_bytes *nh_bytes_new(size_t len) {
    if (len > SIZE_MAX - sizeof(nh_bytes)) return NULL;
    nh_bytes *b = malloc(sizeof(nh_bytes) + len);
    if (b == NULL) return NULL;
    b->len = len;
    __atomic_store_n(&b->refs, 1, __ATOMIC_RELEASE);
    return b;
}

nh_bytes *nh_bytes_copy(const void *data, size_t len) {
    nh_bytes *b = nh_bytes_new(len);
    if (b == NULL) return NULL;
    if (len > 0) memcpy(b->data, data, len);
    return b;
}

nh_bytes *nh_bytes_ref(nh_bytes *b) {
    if (b != NULL) __atomic_fetch_add(&b->refs, 1, __ATOMIC_ACQ_REL);
    return b;
}

void nh_bytes_unref(nh_bytes *b) {
    if (b == NULL) return;
    if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) free(b);
}
