/* Unit tests for node/backoff: exponential reconnect backoff with jitter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "node/backoff.h"

static void test_defaults_when_zero_passed(void **state) {
    (void)state;
    nh_backoff b;
    nh_backoff_init(&b, 0, 0, 0);
    assert_int_equal(b.base_ms, 100);
    assert_int_equal(b.max_ms, 5000);
    assert_true(b.factor == 1.6);
    assert_true(b.jitter == 0.2);
    assert_true(b.current_ms == 100.0);
    assert_int_equal(b.attempts, 0);
    assert_true(b.rng != 0);
    uint32_t d = nh_backoff_next(&b);
    assert_in_range(d, 80, 120);
}

static void test_max_raised_to_base_when_smaller(void **state) {
    (void)state;
    nh_backoff b;
    nh_backoff_init(&b, 300, 200, 1);
    assert_int_equal(b.base_ms, 300);
    assert_int_equal(b.max_ms, 300);
    for (int i = 0; i < 100; i++)
        assert_in_range(nh_backoff_next(&b), 240, 360);
}

static void test_first_delay_is_base_within_jitter(void **state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        nh_backoff b;
        nh_backoff_init(&b, 1000, 120000, seed);
        uint32_t d = nh_backoff_next(&b);
        assert_in_range(d, 800, 1200);
        assert_int_equal(b.attempts, 1);
    }
}

static void test_delays_grow_by_factor_and_cap_at_max(void **state) {
    (void)state;
    nh_backoff b;
    nh_backoff_init(&b, 100, 5000, 7);
    b.jitter = 0; /* exact, un-jittered sequence */
    const uint32_t expect[] = {100, 160, 256, 410, 655, 1049, 1678, 2684, 4295, 5000, 5000, 5000};
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        assert_int_equal(nh_backoff_next(&b), expect[i]);
        assert_int_equal(b.attempts, i + 1);
    }
    assert_true(b.current_ms == 5000.0);
}

static void test_jittered_delays_track_the_growth(void **state) {
    (void)state;
    nh_backoff b;
    nh_backoff_init(&b, 1000, 120000, 12345);
    double un = 1000;
    for (int i = 0; i < 20; i++) {
        double lo = un * 0.8, hi = un * 1.2;
        uint32_t d = nh_backoff_next(&b);
        assert_true(d >= (uint32_t)lo && d <= (uint32_t)hi + 1);
        un = un * 1.6 > 120000 ? 120000 : un * 1.6;
    }
    /* capped: every further delay within max +/- 20% */
    for (int i = 0; i < 100; i++)
        assert_in_range(nh_backoff_next(&b), 96000, 144000);
}

static void test_reset_returns_to_first_delay(void **state) {
    (void)state;
    nh_backoff b;
    nh_backoff_init(&b, 200, 10000, 99);
    for (int i = 0; i < 15; i++)
        nh_backoff_next(&b);
    assert_true(b.current_ms == 10000.0);
    assert_int_equal(b.attempts, 15);
    nh_backoff_reset(&b);
    assert_int_equal(b.attempts, 0);
    assert_true(b.current_ms == 200.0);
    assert_in_range(nh_backoff_next(&b), 160, 240);
    assert_in_range(nh_backoff_next(&b), 256, 384);
}

static void test_same_seed_gives_same_sequence(void **state) {
    (void)state;
    nh_backoff a, b, c;
    nh_backoff_init(&a, 100, 5000, 42);
    nh_backoff_init(&b, 100, 5000, 42);
    nh_backoff_init(&c, 100, 5000, 43);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t x = nh_backoff_next(&a);
        assert_int_equal(x, nh_backoff_next(&b));
        if (x != nh_backoff_next(&c)) differ++;
    }
    assert_true(differ > 100); /* a different seed gives a different sequence */
}

static void test_bounds_hold_over_10k_draws(void **state) {
    (void)state;
    nh_backoff b;
    nh_backoff_init(&b, 100, 5000, 2024);
    uint32_t min_seen = UINT32_MAX, max_seen = 0;
    for (int i = 0; i < 10000; i++) {
        if (i % 37 == 0) nh_backoff_reset(&b); /* mix first delays with capped ones */
        uint32_t d = nh_backoff_next(&b);
        assert_in_range(d, 80, 6000);
        if (d < min_seen) min_seen = d;
        if (d > max_seen) max_seen = d;
    }
    /* the jitter spreads over (nearly) the whole range on both ends */
    assert_in_range(min_seen, 80, 85);
    assert_in_range(max_seen, 5900, 6000);
}

static void test_delay_is_at_least_one_ms(void **state) {
    (void)state;
    nh_backoff b;
    nh_backoff_init(&b, 1, 1, 5);
    b.jitter = 0.9;
    for (int i = 0; i < 1000; i++)
        assert_in_range(nh_backoff_next(&b), 1, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_when_zero_passed),
        cmocka_unit_test(test_max_raised_to_base_when_smaller),
        cmocka_unit_test(test_first_delay_is_base_within_jitter),
        cmocka_unit_test(test_delays_grow_by_factor_and_cap_at_max),
        cmocka_unit_test(test_jittered_delays_track_the_growth),
        cmocka_unit_test(test_reset_returns_to_first_delay),
        cmocka_unit_test(test_same_seed_gives_same_sequence),
        cmocka_unit_test(test_bounds_hold_over_10k_draws),
        cmocka_unit_test(test_delay_is_at_least_one_ms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
