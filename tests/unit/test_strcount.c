/* Unit tests for util/strcount: counts per string key (client-peer streams per connection). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/strcount.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_counts_go_up_and_down_and_keys_leave_at_zero(void **state) {
    (void)state;
    nh_strcount m;
    nh_strcount_init(&m);
    assert_int_equal(nh_strcount_get(&m, "ipv4:127.0.0.1:5555"), 0);
    assert_int_equal(nh_strcount_dec(&m, "ipv4:127.0.0.1:5555"), 0); /* absent: nothing */
    assert_int_equal(nh_strcount_inc(&m, "ipv4:127.0.0.1:5555"), 1);
    assert_int_equal(nh_strcount_inc(&m, "ipv4:127.0.0.1:5555"), 2);
    assert_int_equal(nh_strcount_inc(&m, "ipv4:127.0.0.1:5556"), 1);
    assert_int_equal(nh_strcount_inc(&m, ""), 1); /* an unknown address is a key too */
    assert_int_equal(nh_strcount_len(&m), 3);
    assert_int_equal(nh_strcount_get(&m, "ipv4:127.0.0.1:5555"), 2);
    assert_int_equal(nh_strcount_dec(&m, "ipv4:127.0.0.1:5555"), 1);
    assert_int_equal(nh_strcount_dec(&m, "ipv4:127.0.0.1:5555"), 0);
    assert_int_equal(nh_strcount_get(&m, "ipv4:127.0.0.1:5555"), 0);
    assert_int_equal(nh_strcount_len(&m), 2);
    assert_int_equal(nh_strcount_get(&m, "ipv4:127.0.0.1:5556"), 1);
    nh_strcount_free(&m);
    nh_strcount z = {0}; /* zero-initialised works too */
    assert_int_equal(nh_strcount_inc(&z, "a"), 1);
    nh_strcount_free(&z);
}

/* Many keys, random increments and decrements (deletions shift probe runs back): always what a
 * plain array of counts says; emptied, the table shrinks. */
static void test_random_history_matches_a_model(void **state) {
    (void)state;
    enum { K = 3000 };
    static size_t model[K];
    memset(model, 0, sizeof model);
    nh_strcount m = {0};
    srand(7);
    char key[48];
    for (int step = 0; step < 300000; step++) {
        int k = rand() % K;
        snprintf(key, sizeof key, "ipv4:10.0.%d.%d:%d", k / 256, k % 256, 40000 + k);
        if (rand() % 100 < 52) {
            assert_int_equal(nh_strcount_inc(&m, key), ++model[k]);
        } else {
            if (model[k]) model[k]--;
            assert_int_equal(nh_strcount_dec(&m, key), model[k]);
        }
        if (step % 10007 == 0) {
            size_t keys = 0;
            for (int i = 0; i < K; i++) {
                snprintf(key, sizeof key, "ipv4:10.0.%d.%d:%d", i / 256, i % 256, 40000 + i);
                assert_int_equal(nh_strcount_get(&m, key), model[i]);
                keys += model[i] > 0;
            }
            assert_int_equal(nh_strcount_len(&m), keys);
        }
    }
    for (int i = 0; i < K; i++) {
        snprintf(key, sizeof key, "ipv4:10.0.%d.%d:%d", i / 256, i % 256, 40000 + i);
        while (model[i]) {
            model[i]--;
            assert_int_equal(nh_strcount_dec(&m, key), model[i]);
        }
    }
    assert_int_equal(nh_strcount_len(&m), 0);
    assert_true(m.cap <= 64);
    nh_strcount_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_go_up_and_down_and_keys_leave_at_zero),
        cmocka_unit_test(test_random_history_matches_a_model),
    };
    return cmocka_run_group_tests_name("strcount", tests, NULL, NULL);
}
