/* A node's router: pending calls keyed by message_seq_no. */
#include "node/router.h"

#define STREAMING_MARK ((void *)1)

void nh_router_init(nh_router *r) {
    nh_u64map_init(&r->map);
    nh_u64map_init(&r->streaming);
}

void nh_router_free(nh_router *r) {
    nh_u64map_free(&r->map);
    nh_u64map_free(&r->streaming);
}

int nh_router_add(nh_router *r, uint64_t seq, void *entry, bool streaming) {
    if (entry == NULL || nh_u64map_get(&r->map, seq) != NULL) return -1;
    if (nh_u64map_put(&r->map, seq, entry) != 0) return -1;
    if (streaming && nh_u64map_put(&r->streaming, seq, STREAMING_MARK) != 0) {
        nh_u64map_del(&r->map, seq);
        return -1;
    }
    return 0;
}

void *nh_router_deliver(nh_router *r, uint64_t seq) {
    void *entry = nh_u64map_get(&r->map, seq);
    if (entry == NULL) return NULL;
    if (nh_u64map_get(&r->streaming, seq) == NULL) nh_u64map_del(&r->map, seq);
    return entry;
}

void *nh_router_remove(nh_router *r, uint64_t seq) {
    void *entry = nh_u64map_del(&r->map, seq);
    if (entry != NULL) nh_u64map_del(&r->streaming, seq);
    return entry;
}

size_t nh_router_len(const nh_router *r) {
    return nh_u64map_len(&r->map);
}

size_t nh_router_drain(nh_router *r, void (*fn)(void *entry, bool streaming, void *arg),
                       void *arg) {
    size_t n = 0;
    size_t pos = 0;
    uint64_t seq;
    void *entry;
    while (nh_u64map_next(&r->map, &pos, &seq, &entry)) {
        bool streaming = nh_u64map_del(&r->streaming, seq) != NULL;
        nh_u64map_del(&r->map, seq);
        n++;
        if (fn != NULL) fn(entry, streaming, arg);
    }
    return n;
}
