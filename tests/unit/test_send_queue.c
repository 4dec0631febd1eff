/* Unit tests for util/send_queue: the per-stream send FIFO. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/bytes.h"
#include "util/send_queue.h"

#include <string.h>

static int refs_of(const nh_bytes *b) {
    return __atomic_load_n(&b->refs, __ATOMIC_ACQUIRE);
}

/* A message of len bytes whose first byte is tagged with seq (len >= 1). */
static nh_bytes *msg(size_t len, uint8_t seq) {
    nh_bytes *b = nh_bytes_new(len);
    assert_non_null(b);
    memset(b->data, 0, len);
    b->data[0] = seq;
    return b;
}

static void *tag_of(uintptr_t n) {
    return (void *)n;
}

/* Pushes a 3-byte message tagged with the next sequence number (*next_in, then incremented). */
static void push_seq(nh_send_queue *q, size_t *next_in) {
    nh_bytes *m = msg(3, (uint8_t)*next_in);
    *next_in += 1;
    assert_int_equal(nh_send_queue_push(q, m, tag_of(*next_in)), 0);
}

static void test_bytes_copy_and_refcount(void **state) {
    (void)state;
    char src[] = "xxhelloxx";
    nh_bytes *b = nh_bytes_copy(src + 2, 5);
    assert_non_null(b);
    assert_int_equal(b->len, 5);
    assert_memory_equal(b->data, "hello", 5);
    assert_int_equal(refs_of(b), 1);
    assert_ptr_equal(nh_bytes_ref(b), b);
    assert_int_equal(refs_of(b), 2);
    nh_bytes_unref(b);
    assert_int_equal(refs_of(b), 1);
    nh_bytes_unref(b);
    nh_bytes_unref(NULL);

    nh_bytes *e = nh_bytes_copy(NULL, 0);
    assert_non_null(e);
    assert_int_equal(e->len, 0);
    nh_bytes_unref(e);
}

static void test_empty_queue_pop_and_peek(void **state) {
    (void)state;
    nh_send_queue q = {0};
    nh_send_item it;
    assert_false(nh_send_queue_pop(&q, &it));
    assert_null(nh_send_queue_peek(&q));
    assert_int_equal(nh_send_queue_len(&q), 0);
    assert_int_equal(nh_send_queue_bytes(&q), 0);
    assert_int_equal(nh_send_queue_remove_tag(&q, NULL), 0);
    nh_send_queue_clear(&q);
}

static void test_fifo_order_across_growth(void **state) {
    (void)state;
    nh_send_queue q = {0};
    const size_t n = 1000;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = 1 + i % 17;
        assert_int_equal(nh_send_queue_push(&q, msg(len, (uint8_t)i), tag_of(i + 1)), 0);
        total += len;
        assert_int_equal(nh_send_queue_len(&q), i + 1);
        assert_int_equal(nh_send_queue_bytes(&q), total);
    }
    assert_int_equal(q.cap & (q.cap - 1), 0);
    assert_ptr_equal(nh_send_queue_peek(&q)->tag, tag_of(1));
    for (size_t i = 0; i < n; i++) {
        nh_send_item it;
        assert_true(nh_send_queue_pop(&q, &it));
        assert_ptr_equal(it.tag, tag_of(i + 1));
        assert_int_equal(it.msg->len, 1 + i % 17);
        assert_int_equal(it.msg->data[0], (uint8_t)i);
        total -= it.msg->len;
        assert_int_equal(nh_send_queue_bytes(&q), total);
        nh_bytes_unref(it.msg);
    }
    assert_int_equal(nh_send_queue_len(&q), 0);
    assert_int_equal(nh_send_queue_bytes(&q), 0);
    nh_send_queue_clear(&q);
}

static void test_fifo_order_across_wraparound_and_growth(void **state) {
    (void)state;
    nh_send_queue q = {0};
    size_t next_in = 0, next_out = 0;
    /* keep a few items in the queue and cycle many times so head wraps around, then grow
     * while head is in the middle of the array */
    for (int round = 0; round < 5; round++) {
        for (int k = 0; k < 5; k++)
            push_seq(&q, &next_in);
        for (int k = 0; k < 4; k++) {
            nh_send_item it;
            assert_true(nh_send_queue_pop(&q, &it));
            assert_ptr_equal(it.tag, tag_of(++next_out));
            nh_bytes_unref(it.msg);
        }
    }
    size_t cap_before = q.cap;
    assert_true(q.head != 0); /* wrapped state, not reset */
    while (q.cap == cap_before)
        push_seq(&q, &next_in);
    assert_true(q.cap > cap_before);
    assert_int_equal(nh_send_queue_len(&q), next_in - next_out);
    assert_int_equal(nh_send_queue_bytes(&q), 3 * (next_in - next_out));
    while (nh_send_queue_len(&q) > 0) {
        nh_send_item it;
        assert_ptr_equal(nh_send_queue_peek(&q)->tag, tag_of(next_out + 1));
        assert_true(nh_send_queue_pop(&q, &it));
        assert_ptr_equal(it.tag, tag_of(++next_out));
        assert_int_equal(it.msg->data[0], (uint8_t)(next_out - 1));
        nh_bytes_unref(it.msg);
    }
    assert_int_equal(next_out, next_in);
    nh_send_queue_clear(&q);
}

static void test_pop_transfers_the_reference(void **state) {
    (void)state;
    nh_send_queue q = {0};
    nh_bytes *b = msg(10, 1);
    nh_bytes_ref(b); /* our extra reference */
    assert_int_equal(nh_send_queue_push(&q, b, NULL), 0);
    assert_int_equal(refs_of(b), 2);
    nh_send_item it;
    assert_true(nh_send_queue_pop(&q, &it));
    assert_ptr_equal(it.msg, b);
    assert_null(it.tag);
    assert_int_equal(refs_of(b), 2); /* popping does not drop it */
    nh_bytes_unref(it.msg);
    assert_int_equal(refs_of(b), 1);
    nh_bytes_unref(b);
    nh_send_queue_clear(&q);
}

static void test_remove_tag_keeps_order_of_rest(void **state) {
    (void)state;
    nh_send_queue q = {0};
    void *victim = tag_of(1000);
    nh_bytes *watched = msg(7, 0xee);
    nh_bytes_ref(watched);
    /* wrap the ring first so the removal spans the array end */
    for (int k = 0; k < 6; k++)
        assert_int_equal(nh_send_queue_push(&q, msg(1, 0), NULL), 0);
    for (int k = 0; k < 6; k++) {
        nh_send_item it;
        assert_true(nh_send_queue_pop(&q, &it));
        nh_bytes_unref(it.msg);
    }
    assert_int_equal(q.cap, 8);
    assert_int_equal(q.head, 6);
    size_t expect_bytes = 0;
    for (uintptr_t i = 1; i <= 8; i++) {
        if (i % 3 == 0) {
            nh_bytes *m = i == 6 ? watched : msg(7, 0xee);
            assert_int_equal(nh_send_queue_push(&q, m, victim), 0);
        } else {
            assert_int_equal(nh_send_queue_push(&q, msg(i, (uint8_t)i), tag_of(i)), 0);
            expect_bytes += i;
        }
    }
    assert_int_equal(q.cap, 8); /* still the wrapped ring, no growth */
    assert_int_equal(refs_of(watched), 2);
    assert_int_equal(nh_send_queue_remove_tag(&q, victim), 2);
    assert_int_equal(refs_of(watched), 1); /* its queue reference was dropped */
    assert_int_equal(nh_send_queue_len(&q), 6);
    assert_int_equal(nh_send_queue_bytes(&q), expect_bytes);
    assert_int_equal(nh_send_queue_remove_tag(&q, victim), 0);
    for (uintptr_t i = 1; i <= 8; i++) {
        if (i % 3 == 0) continue;
        nh_send_item it;
        assert_true(nh_send_queue_pop(&q, &it));
        assert_ptr_equal(it.tag, tag_of(i));
        assert_int_equal(it.msg->len, i);
        nh_bytes_unref(it.msg);
    }
    assert_false(nh_send_queue_pop(&q, NULL));
    nh_bytes_unref(watched);
    nh_send_queue_clear(&q);
}

static void test_clear_drops_references_and_queue_is_reusable(void **state) {
    (void)state;
    nh_send_queue q = {0};
    nh_bytes *watched[20];
    for (int i = 0; i < 20; i++) {
        watched[i] = msg(5, (uint8_t)i);
        nh_bytes_ref(watched[i]);
        assert_int_equal(nh_send_queue_push(&q, watched[i], tag_of((uintptr_t)i)), 0);
        assert_int_equal(refs_of(watched[i]), 2);
    }
    nh_send_queue_clear(&q);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(refs_of(watched[i]), 1);
        nh_bytes_unref(watched[i]);
    }
    assert_int_equal(nh_send_queue_len(&q), 0);
    assert_int_equal(nh_send_queue_bytes(&q), 0);
    assert_null(nh_send_queue_peek(&q));

    assert_int_equal(nh_send_queue_push(&q, msg(9, 42), tag_of(7)), 0);
    assert_int_equal(nh_send_queue_bytes(&q), 9);
    assert_ptr_equal(nh_send_queue_peek(&q)->tag, tag_of(7));
    nh_send_queue_clear(&q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_copy_and_refcount),
        cmocka_unit_test(test_empty_queue_pop_and_peek),
        cmocka_unit_test(test_fifo_order_across_growth),
        cmocka_unit_test(test_fifo_order_across_wraparound_and_growth),
        cmocka_unit_test(test_pop_transfers_the_reference),
        cmocka_unit_test(test_remove_tag_keeps_order_of_rest),
        cmocka_unit_test(test_clear_drops_references_and_queue_is_reusable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
