/* Unit tests for node/router: pending calls keyed by message_seq_no (spec 1.5). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "node/router.h"

#define HIGH_BIT (UINT64_C(1) << 63)

static void test_register_and_deliver_once(void **state) {
    (void)state;
    nh_router r;
    nh_router_init(&r);
    int call;
    assert_int_equal(nh_router_add(&r, 1, &call, false), 0);
    assert_int_equal(nh_router_len(&r), 1);
    assert_ptr_equal(nh_router_deliver(&r, 1), &call);
    assert_int_equal(nh_router_len(&r), 0);
    assert_null(nh_router_deliver(&r, 1)); /* second delivery finds nothing */
    nh_router_free(&r);
}

static void test_deliver_unknown_seq_returns_null(void **state) {
    (void)state;
    nh_router r;
    nh_router_init(&r);
    assert_null(nh_router_deliver(&r, 5));
    assert_null(nh_router_deliver(&r, HIGH_BIT | 5));
    int a, b;
    assert_int_equal(nh_router_add(&r, 5, &a, false), 0);
    assert_int_equal(nh_router_add(&r, HIGH_BIT | 6, &b, false), 0);
    /* the other half of the partition is a different ID */
    assert_null(nh_router_deliver(&r, HIGH_BIT | 5));
    assert_null(nh_router_deliver(&r, 6));
    assert_null(nh_router_deliver(&r, 7));
    assert_null(nh_router_deliver(&r, HIGH_BIT | 7));
    assert_int_equal(nh_router_len(&r), 2);
    assert_ptr_equal(nh_router_deliver(&r, HIGH_BIT | 6), &b);
    assert_ptr_equal(nh_router_deliver(&r, 5), &a);
    nh_router_free(&r);
}

static void test_streaming_entry_stays_after_three_deliveries(void **state) {
    (void)state;
    nh_router r;
    nh_router_init(&r);
    int call;
    assert_int_equal(nh_router_add(&r, HIGH_BIT | 3, &call, true), 0);
    for (int i = 0; i < 3; i++) {
        assert_ptr_equal(nh_router_deliver(&r, HIGH_BIT | 3), &call);
        assert_int_equal(nh_router_len(&r), 1);
    }
    assert_ptr_equal(nh_router_remove(&r, HIGH_BIT | 3), &call);
    assert_null(nh_router_deliver(&r, HIGH_BIT | 3));
    assert_int_equal(nh_router_len(&r), 0);
    /* the seq is free again, and a non-streaming re-registration is delivered once */
    assert_int_equal(nh_router_add(&r, HIGH_BIT | 3, &call, false), 0);
    assert_ptr_equal(nh_router_deliver(&r, HIGH_BIT | 3), &call);
    assert_null(nh_router_deliver(&r, HIGH_BIT | 3));
    nh_router_free(&r);
}

static void test_remove_without_delivering(void **state) {
    (void)state;
    nh_router r;
    nh_router_init(&r);
    int a, b;
    assert_int_equal(nh_router_add(&r, 10, &a, false), 0);
    assert_int_equal(nh_router_add(&r, 11, &b, false), 0);
    assert_ptr_equal(nh_router_remove(&r, 10), &a);
    assert_null(nh_router_remove(&r, 10));
    assert_null(nh_router_deliver(&r, 10));
    assert_int_equal(nh_router_len(&r), 1);
    assert_ptr_equal(nh_router_deliver(&r, 11), &b);
    nh_router_free(&r);
}

static void test_duplicate_add_returns_minus_one(void **state) {
    (void)state;
    nh_router r;
    nh_router_init(&r);
    int a, b;
    assert_int_equal(nh_router_add(&r, 9, &a, false), 0);
    assert_int_equal(nh_router_add(&r, 9, &b, false), -1);
    assert_int_equal(nh_router_add(&r, 9, &b, true), -1);
    assert_int_equal(nh_router_len(&r), 1);
    /* the original registration is untouched (still non-streaming) */
    assert_ptr_equal(nh_router_deliver(&r, 9), &a);
    assert_null(nh_router_deliver(&r, 9));
    nh_router_free(&r);
}

typedef struct drain_log {
    int hits[5];
    size_t streaming;
    size_t calls;
} drain_log;

static void record(void *entry, bool streaming, void *arg) {
    drain_log *log = arg;
    int *e = entry;
    log->hits[*e]++;
    /* entries 3 and 4 were registered as streaming */
    assert_int_equal(streaming, *e >= 3);
    if (streaming) log->streaming++;
    log->calls++;
}

static void test_drain_returns_count_and_reports_streaming(void **state) {
    (void)state;
    nh_router r;
    nh_router_init(&r);
    int ids[5] = {0, 1, 2, 3, 4};
    for (int i = 0; i < 5; i++)
        assert_int_equal(nh_router_add(&r, HIGH_BIT | (uint64_t)(i + 1), &ids[i], i >= 3), 0);
    drain_log log = {{0}, 0, 0};
    assert_int_equal(nh_router_drain(&r, record, &log), 5);
    assert_int_equal(log.calls, 5);
    assert_int_equal(log.streaming, 2);
    for (int i = 0; i < 5; i++)
        assert_int_equal(log.hits[i], 1);
    assert_int_equal(nh_router_len(&r), 0);
    for (int i = 0; i < 5; i++)
        assert_null(nh_router_deliver(&r, HIGH_BIT | (uint64_t)(i + 1)));
    assert_int_equal(nh_router_drain(&r, record, &log), 0);
    assert_int_equal(log.calls, 5);

    /* reusable: a seq drained as streaming comes back as non-streaming */
    assert_int_equal(nh_router_add(&r, HIGH_BIT | 4, &ids[1], false), 0);
    assert_ptr_equal(nh_router_deliver(&r, HIGH_BIT | 4), &ids[1]);
    assert_null(nh_router_deliver(&r, HIGH_BIT | 4));
    nh_router_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_deliver_once),
        cmocka_unit_test(test_deliver_unknown_seq_returns_null),
        cmocka_unit_test(test_streaming_entry_stays_after_three_deliveries),
        cmocka_unit_test(test_remove_without_delivering),
        cmocka_unit_test(test_duplicate_add_returns_minus_one),
        cmocka_unit_test(test_drain_returns_count_and_reports_streaming),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
