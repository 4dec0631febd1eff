/* The per-stream send FIFO: a growable ring buffer. */
#include "util/send_queue.h"

#include <stdint.h>
#include <stdlib.h>

#define MIN_CAP 8u

static inline size_t slot(const nh_send_queue *q, size_t i) {
    return (q->head + i) & (q->cap - 1);
}

static inline size_t msg_len(const nh_bytes *b) {
    return b != NULL ? b->len : 0;
}

/* Doubles the capacity, moving the items to the front of the new array in FIFO order. */
static int grow(nh_send_queue *q) {
    size_t new_cap = q->cap == 0 ? MIN_CAP : q->cap * 2;
    if (new_cap < q->cap || new_cap > SIZE_MAX / sizeof(nh_send_item)) return -1;
    nh_send_item *items = malloc(new_cap * sizeof(*items));
    if (items == NULL) return -1;
    for (size_t i = 0; i < q->len; i++)
        items[i] = q->items[slot(q, i)];
    free(q->items);
    q->items = items;
    q->cap = new_cap;
    q->head = 0;
    return 0;
}

int nh_send_queue_push(nh_send_queue *q, nh_bytes *msg, void *tag) {
    if (q->len == q->cap && grow(q) != 0) return -1;
    nh_send_item *it = &q->items[slot(q, q->len)];
    it->msg = msg;
    it->tag = tag;
    q->len++;
    q->bytes += msg_len(msg);
    return 0;
}

bool nh_send_queue_pop(nh_send_queue *q, nh_send_item *out) {
    if (q->len == 0) return false;
    nh_send_item it = q->items[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->len--;
    q->bytes -= msg_len(it.msg);
    if (out != NULL) {
        *out = it;
    } else {
        nh_bytes_unref(it.msg);
    }
    return true;
}

const nh_send_item *nh_send_queue_peek(const nh_send_queue *q) {
    return q->len == 0 ? NULL : &q->items[q->head];
}

size_t nh_send_queue_len(const nh_send_queue *q) {
    return q->len;
}

size_t nh_send_queue_bytes(const nh_send_queue *q) {
    return q->bytes;
}

size_t nh_send_queue_remove_tag(nh_send_queue *q, const void *tag) {
    size_t kept = 0;
    size_t removed = 0;
    for (size_t i = 0; i < q->len; i++) {
        nh_send_item it = q->items[slot(q, i)];
        if (it.tag == tag) {
            q->bytes -= msg_len(it.msg);
            nh_bytes_unref(it.msg);
            removed++;
        } else {
            q->items[slot(q, kept)] = it;
            kept++;
        }
    }
    q->len = kept;
    return removed;
}

void nh_send_queue_clear(nh_send_queue *q) {
    for (size_t i = 0; i < q->len; i++)
        nh_bytes_unref(q->items[slot(q, i)].msg);
    free(q->items);
    q->items = NULL;
    q->cap = 0;
    q->head = 0;
    q->len = 0;
    q->bytes = 0;
}
