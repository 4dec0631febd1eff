/* Unit tests for util/u64map: the open-addressing uint64 → pointer map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/u64map.h"

#include <stdlib.h>

/* A distinct non-NULL value per key, without allocating. */
static void *val_for(uint64_t k) {
    return (void *)(uintptr_t)((k * 2654435761u) | 1u);
}

static void test_empty_map_has_nothing(void **state) {
    (void)state;
    nh_u64map m;
    nh_u64map_init(&m);
    assert_int_equal(nh_u64map_len(&m), 0);
    assert_null(nh_u64map_get(&m, 0));
    assert_null(nh_u64map_get(&m, 42));
    assert_null(nh_u64map_del(&m, 42));
    size_t pos = 0;
    assert_false(nh_u64map_next(&m, &pos, NULL, NULL));
    nh_u64map_free(&m);

    nh_u64map z = {0}; /* zero-initialised works too */
    assert_int_equal(nh_u64map_put(&z, 5, val_for(5)), 0);
    assert_ptr_equal(nh_u64map_get(&z, 5), val_for(5));
    nh_u64map_free(&z);
}

static void test_put_get_replace_delete(void **state) {
    (void)state;
    nh_u64map m;
    nh_u64map_init(&m);
    int a, b, c;
    assert_int_equal(nh_u64map_put(&m, 7, &a), 0);
    assert_int_equal(nh_u64map_put(&m, 8, &b), 0);
    assert_int_equal(nh_u64map_len(&m), 2);
    assert_ptr_equal(nh_u64map_get(&m, 7), &a);
    assert_ptr_equal(nh_u64map_get(&m, 8), &b);
    assert_null(nh_u64map_get(&m, 9));

    assert_int_equal(nh_u64map_put(&m, 7, &c), 0); /* replace */
    assert_int_equal(nh_u64map_len(&m), 2);
    assert_ptr_equal(nh_u64map_get(&m, 7), &c);

    assert_ptr_equal(nh_u64map_del(&m, 7), &c);
    assert_null(nh_u64map_get(&m, 7));
    assert_null(nh_u64map_del(&m, 7));
    assert_int_equal(nh_u64map_len(&m), 1);
    assert_ptr_equal(nh_u64map_get(&m, 8), &b);
    nh_u64map_free(&m);
}

static void test_put_null_value_is_rejected(void **state) {
    (void)state;
    nh_u64map m;
    nh_u64map_init(&m);
    assert_int_equal(nh_u64map_put(&m, 1, NULL), -1);
    assert_int_equal(nh_u64map_len(&m), 0);
    nh_u64map_free(&m);
}

static void test_extreme_keys_zero_and_max_and_bit63(void **state) {
    (void)state;
    nh_u64map m;
    nh_u64map_init(&m);
    const uint64_t keys[] = {
        0, UINT64_MAX, UINT64_C(1) << 63, (UINT64_C(1) << 63) | 1, (UINT64_C(1) << 63) | 2, 1, 2};
    const size_t n = sizeof(keys) / sizeof(keys[0]);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(nh_u64map_put(&m, keys[i], val_for(i)), 0);
    assert_int_equal(nh_u64map_len(&m), n);
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(nh_u64map_get(&m, keys[i]), val_for(i));
    /* bit 63 set and clear are different keys */
    assert_ptr_not_equal(nh_u64map_get(&m, 1), nh_u64map_get(&m, (UINT64_C(1) << 63) | 1));
    assert_ptr_equal(nh_u64map_del(&m, 0), val_for(0));
    assert_null(nh_u64map_get(&m, 0));
    assert_ptr_equal(nh_u64map_get(&m, UINT64_MAX), val_for(1));
    assert_ptr_equal(nh_u64map_del(&m, UINT64_MAX), val_for(1));
    assert_null(nh_u64map_get(&m, UINT64_MAX));
    assert_int_equal(nh_u64map_len(&m), n - 2);
    nh_u64map_free(&m);
}

#define MANY 100000u

/* Keys of 100k entries: low integers, then both extremes, then ids with bit 63 set. */
static uint64_t many_key(size_t i) {
    if (i == 0) return 0;
    if (i == 1) return UINT64_MAX;
    if (i % 2 == 0) return (uint64_t)i;
    return (UINT64_C(1) << 63) | (uint64_t)i;
}

static void test_grow_to_100k_keys_keeps_all_entries(void **state) {
    (void)state;
    nh_u64map m;
    nh_u64map_init(&m);
    for (size_t i = 0; i < MANY; i++) {
        assert_int_equal(nh_u64map_put(&m, many_key(i), val_for(i)), 0);
        assert_int_equal(nh_u64map_len(&m), i + 1);
    }
    /* power-of-two capacity, load at most 70% */
    assert_int_equal(m.cap & (m.cap - 1), 0);
    assert_true(m.used * 10 <= m.cap * 7);
    assert_true(m.cap >= MANY);
    for (size_t i = 0; i < MANY; i++)
        assert_ptr_equal(nh_u64map_get(&m, many_key(i)), val_for(i));
    assert_null(nh_u64map_get(&m, MANY + 2));          /* even, never inserted */
    assert_null(nh_u64map_get(&m, UINT64_C(1) << 63)); /* i = 0 maps to key 0 */

    /* delete every third entry, check the rest survive */
    for (size_t i = 0; i < MANY; i += 3)
        assert_ptr_equal(nh_u64map_del(&m, many_key(i)), val_for(i));
    size_t expect = MANY - (MANY + 2) / 3;
    assert_int_equal(nh_u64map_len(&m), expect);
    for (size_t i = 0; i < MANY; i++) {
        if (i % 3 == 0) {
            assert_null(nh_u64map_get(&m, many_key(i)));
        } else {
            assert_ptr_equal(nh_u64map_get(&m, many_key(i)), val_for(i));
        }
    }

    /* iteration sees exactly the live entries, each once */
    size_t pos = 0, seen = 0;
    uint64_t k;
    void *v;
    while (nh_u64map_next(&m, &pos, &k, &v)) {
        assert_ptr_equal(nh_u64map_get(&m, k), v);
        seen++;
    }
    assert_int_equal(seen, expect);
    nh_u64map_free(&m);
    assert_int_equal(m.cap, 0);
    assert_int_equal(m.len, 0);
}

static void test_delete_during_iteration_removes_all(void **state) {
    (void)state;
    nh_u64map m;
    nh_u64map_init(&m);
    const size_t n = 1000;
    char *seen = calloc(n, 1);
    assert_non_null(seen);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(nh_u64map_put(&m, i, val_for(i)), 0);

    size_t pos = 0, visited = 0;
    uint64_t k;
    void *v;
    while (nh_u64map_next(&m, &pos, &k, &v)) {
        assert_true(k < n);
        assert_int_equal(seen[k], 0);
        seen[k] = 1;
        assert_ptr_equal(v, val_for(k));
        if (k % 2 == 0) assert_ptr_equal(nh_u64map_del(&m, k), v);
        visited++;
    }
    assert_int_equal(visited, n);
    assert_int_equal(nh_u64map_len(&m), n / 2);
    for (size_t i = 0; i < n; i++) {
        if (i % 2 == 0) {
            assert_null(nh_u64map_get(&m, i));
        } else {
            assert_ptr_equal(nh_u64map_get(&m, i), val_for(i));
        }
    }

    /* delete everything while iterating */
    pos = 0;
    visited = 0;
    while (nh_u64map_next(&m, &pos, &k, NULL)) {
        assert_non_null(nh_u64map_del(&m, k));
        visited++;
    }
    assert_int_equal(visited, n / 2);
    assert_int_equal(nh_u64map_len(&m), 0);
    pos = 0;
    assert_false(nh_u64map_next(&m, &pos, NULL, NULL));
    free(seen);
    nh_u64map_free(&m);
}

static void test_tombstone_is_reused_by_same_key(void **state) {
    (void)state;
    nh_u64map m;
    nh_u64map_init(&m);
    int a;
    assert_int_equal(nh_u64map_put(&m, 99, &a), 0);
    size_t used = m.used;
    size_t cap = m.cap;
    assert_ptr_equal(nh_u64map_del(&m, 99), &a);
    assert_int_equal(m.used, used); /* a tombstone stays */
    assert_int_equal(nh_u64map_put(&m, 99, &a), 0);
    assert_int_equal(m.used, used); /* and is reused, not a new slot */
    assert_int_equal(m.cap, cap);
    assert_ptr_equal(nh_u64map_get(&m, 99), &a);
    nh_u64map_free(&m);
}

static void test_churn_does_not_grow_capacity(void **state) {
    (void)state;
    nh_u64map m;
    nh_u64map_init(&m);
    int a;
    /* ten live keys, then a million insert/delete pairs of fresh keys */
    for (uint64_t k = 0; k < 10; k++)
        assert_int_equal(nh_u64map_put(&m, k, &a), 0);
    size_t cap = m.cap;
    for (uint64_t k = 1000; k < 1001000; k++) {
        assert_int_equal(nh_u64map_put(&m, k, &a), 0);
        assert_ptr_equal(nh_u64map_del(&m, k), &a);
        assert_true(m.used < m.cap);
    }
    assert_int_equal(nh_u64map_len(&m), 10);
    assert_int_equal(m.cap, cap); /* tombstones were dropped by rehashes, not by growth */
    for (uint64_t k = 0; k < 10; k++)
        assert_ptr_equal(nh_u64map_get(&m, k), &a);
    nh_u64map_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_map_has_nothing),
        cmocka_unit_test(test_put_get_replace_delete),
        cmocka_unit_test(test_put_null_value_is_rejected),
        cmocka_unit_test(test_extreme_keys_zero_and_max_and_bit63),
        cmocka_unit_test(test_grow_to_100k_keys_keeps_all_entries),
        cmocka_unit_test(test_delete_during_iteration_removes_all),
        cmocka_unit_test(test_tombstone_is_reused_by_same_key),
        cmocka_unit_test(test_churn_does_not_grow_capacity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
