/* The per-stream send FIFO: gRPC allows one SEND_MESSAGE in flight per call, so every message
 * waits here until the previous one completed. Single-threaded (owner thread). */
#ifndef NH_UTIL_SEND_QUEUE_H
#define NH_UTIL_SEND_QUEUE_H

#include "util/bytes.h"

#include <stdbool.h>
#include <stddef.h>

/** One queued message: the encoded bytes (one reference owned by the queue) and an opaque tag
 * the owner uses to learn which send completed (NULL when nobody waits for it). */
typedef struct nh_send_item {
    nh_bytes *msg;
    void *tag;
} nh_send_item;

/** A growable ring buffer of items, with a running byte count. Zero-initialise before use. */
typedef struct nh_send_queue {
    nh_send_item *items;
    size_t cap;   /* slots (power of two, 0 before first push) */
    size_t head;  /* index of the oldest item */
    size_t len;   /* items queued */
    size_t bytes; /* sum of msg->len over queued items */
} nh_send_queue;

/** Appends an item; the queue takes over the caller's reference to msg. Returns 0, or -1 when
 * out of memory (the reference then stays the caller's). */
int nh_send_queue_push(nh_send_queue *q, nh_bytes *msg, void *tag);

/** Removes the oldest item into *out (the caller now owns its reference). False when empty. */
bool nh_send_queue_pop(nh_send_queue *q, nh_send_item *out);

/** The oldest item without removing it, or NULL when empty. */
const nh_send_item *nh_send_queue_peek(const nh_send_queue *q);

/** Number of queued items. */
size_t nh_send_queue_len(const nh_send_queue *q);

/** Total bytes of the queued messages. */
size_t nh_send_queue_bytes(const nh_send_queue *q);

/** Removes every item whose tag equals tag (order of the rest kept); drops their references.
 * Returns how many were removed. */
size_t nh_send_queue_remove_tag(nh_send_queue *q, const void *tag);

/** Drops every item's reference and frees the storage; the queue is empty and reusable. */
void nh_send_queue_clear(nh_send_queue *q);

#endif
