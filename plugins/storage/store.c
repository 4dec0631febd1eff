/* storage: what both store back ends share (the version order). */
#include "store.h"

#include <string.h>

int st_version_cmp(int64_t asec, int32_t ansec, const char *aval, size_t alen, int64_t bsec,
                   int32_t bnsec, const char *bval, size_t blen) {
    if (asec != bsec) return asec < bsec ? -1 : 1;
    if (ansec != bnsec) return ansec < bnsec ? -1 : 1;
    if (!aval || !bval) return (aval != NULL) - (bval != NULL);
    size_t n = alen < blen ? alen : blen;
    int c = memcmp(aval, bval, n);
    if (c) return c < 0 ? -1 : 1;
    return alen == blen ? 0 : (alen < blen ? -1 : 1);
}
