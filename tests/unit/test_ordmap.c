/* Unit tests for util/ordmap: the ID-sorted map with tombstones behind the inbound manager's
 * live sets (issue 15). Checked against a plain model over randomized histories. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/ordmap.h"

#include <stdlib.h>
#include <string.h>

/* A distinct non-NULL value per ID, without allocating. */
static void *val_for(uint32_t id) {
    return (void *)(uintptr_t)(((uintptr_t)id << 4) | 8u);
}

/* Iterates m and checks: strictly increasing IDs, the values, the count, and the bound on
 * tombstones (never more than the live entries plus 16). Returns the number seen. */
static size_t check_sorted(const nh_ordmap *m) {
    size_t pos = 0, n = 0;
    uint32_t id, prev = 0;
    void *v;
    while (nh_ordmap_next(m, &pos, &id, &v)) {
        if (n > 0) assert_true(id > prev);
        assert_ptr_equal(v, val_for(id));
        prev = id;
        n++;
    }
    assert_int_equal(n, nh_ordmap_len(m));
    assert_true(m->len - m->live <= m->live + 16);
    return n;
}

static void test_empty_map_has_nothing(void **state) {
    (void)state;
    nh_ordmap m;
    nh_ordmap_init(&m);
    assert_int_equal(nh_ordmap_len(&m), 0);
    assert_null(nh_ordmap_get(&m, 0));
    assert_null(nh_ordmap_get(&m, 7));
    assert_null(nh_ordmap_del(&m, 7));
    size_t pos = 0;
    assert_false(nh_ordmap_next(&m, &pos, NULL, NULL));
    assert_int_equal(nh_ordmap_put(&m, 1, NULL), -1); /* NULL values are refused */
    nh_ordmap_free(&m);

    nh_ordmap z = {0}; /* zero-initialised works too */
    assert_int_equal(nh_ordmap_put(&z, 5, val_for(5)), 0);
    assert_ptr_equal(nh_ordmap_get(&z, 5), val_for(5));
    nh_ordmap_free(&z);
}

static void test_appends_middle_inserts_replace_and_revive(void **state) {
    (void)state;
    nh_ordmap m = {0};
    for (uint32_t id = 10; id <= 50; id += 10) /* appends */
        assert_int_equal(nh_ordmap_put(&m, id, val_for(id)), 0);
    assert_int_equal(nh_ordmap_put(&m, 25, val_for(25)), 0); /* in the middle */
    assert_int_equal(nh_ordmap_put(&m, 1, val_for(1)), 0);   /* at the front */
    assert_int_equal(check_sorted(&m), 7);
    int x;
    assert_int_equal(nh_ordmap_put(&m, 30, &x), 0); /* replace */
    assert_ptr_equal(nh_ordmap_get(&m, 30), &x);
    assert_int_equal(nh_ordmap_len(&m), 7);
    assert_int_equal(nh_ordmap_put(&m, 30, val_for(30)), 0);
    assert_ptr_equal(nh_ordmap_del(&m, 20), val_for(20)); /* a tombstone */
    assert_null(nh_ordmap_get(&m, 20));
    assert_null(nh_ordmap_del(&m, 20));
    assert_int_equal(check_sorted(&m), 6);
    assert_int_equal(nh_ordmap_put(&m, 20, val_for(20)), 0); /* revived in place */
    assert_int_equal(check_sorted(&m), 7);
    assert_ptr_equal(nh_ordmap_del(&m, 20), val_for(20));
    assert_int_equal(nh_ordmap_put(&m, 22, val_for(22)), 0); /* takes the tombstone's slot */
    assert_int_equal(check_sorted(&m), 7);
    assert_ptr_equal(nh_ordmap_del(&m, 50), val_for(50)); /* the last one: cut off */
    assert_int_equal(m.len, m.live);
    assert_int_equal(check_sorted(&m), 6);
    nh_ordmap_free(&m);
}

/* Arrivals with increasing IDs (as client peers get them) and departures in any order: the
 * map always holds exactly the model's set, in order, with few tombstones; emptied, it frees
 * its storage. */
static void test_client_like_churn_matches_a_model(void **state) {
    (void)state;
    enum { N = 20000 };
    static bool in[N + 1];
    memset(in, 0, sizeof in);
    nh_ordmap m = {0};
    srand(15);
    uint32_t next = 1;
    size_t live = 0;
    for (int step = 0; step < 200000; step++) {
        bool arrive = next <= N && (live == 0 || rand() % 100 < 55);
        if (arrive) {
            assert_int_equal(nh_ordmap_put(&m, next, val_for(next)), 0);
            in[next++] = true;
            live++;
        } else if (live > 0) {
            uint32_t id;
            do
                id = 1 + (uint32_t)rand() % (next - 1);
            while (!in[id]);
            assert_ptr_equal(nh_ordmap_del(&m, id), val_for(id));
            in[id] = false;
            live--;
        }
        assert_int_equal(nh_ordmap_len(&m), live);
        assert_true(m.len - m.live <= m.live + 16);
        if (step % 5000 == 0) {
            assert_int_equal(check_sorted(&m), live);
            for (uint32_t id = 1; id < next; id++)
                assert_ptr_equal(nh_ordmap_get(&m, id), in[id] ? val_for(id) : NULL);
        }
    }
    /* Empty it: storage goes back. */
    for (uint32_t id = 1; id < next; id++)
        if (in[id]) nh_ordmap_del(&m, id);
    assert_int_equal(nh_ordmap_len(&m), 0);
    assert_true(m.cap <= 64);
    nh_ordmap_free(&m);
}

/* Any order of puts (known peers arrive in any order) and deletes, including of absent IDs. */
static void test_random_ids_match_a_model(void **state) {
    (void)state;
    enum { R = 512 };
    bool in[R] = {false};
    nh_ordmap m = {0};
    srand(2024);
    for (int step = 0; step < 100000; step++) {
        uint32_t id = (uint32_t)rand() % R;
        if (rand() % 2) {
            assert_int_equal(nh_ordmap_put(&m, id, val_for(id)), 0);
            in[id] = true;
        } else {
            assert_ptr_equal(nh_ordmap_del(&m, id), in[id] ? val_for(id) : NULL);
            in[id] = false;
        }
        if (step % 997 == 0) {
            size_t want = 0;
            for (uint32_t i = 0; i < R; i++) {
                want += in[i];
                assert_ptr_equal(nh_ordmap_get(&m, i), in[i] ? val_for(i) : NULL);
            }
            assert_int_equal(check_sorted(&m), want);
        }
    }
    nh_ordmap_free(&m);
}

/* A burst that leaves from the end keeps storage proportional to what is left. */
static void test_storage_shrinks_after_a_burst(void **state) {
    (void)state;
    nh_ordmap m = {0};
    for (uint32_t id = 1; id <= 100000; id++)
        assert_int_equal(nh_ordmap_put(&m, id, val_for(id)), 0);
    size_t big = m.cap;
    for (uint32_t id = 100000; id > 100; id--)
        nh_ordmap_del(&m, id);
    assert_int_equal(check_sorted(&m), 100);
    assert_true(m.cap < big / 100);
    nh_ordmap_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_map_has_nothing),
        cmocka_unit_test(test_appends_middle_inserts_replace_and_revive),
        cmocka_unit_test(test_client_like_churn_matches_a_model),
        cmocka_unit_test(test_random_ids_match_a_model),
        cmocka_unit_test(test_storage_shrinks_after_a_burst),
    };
    return cmocka_run_group_tests_name("ordmap", tests, NULL, NULL);
}
