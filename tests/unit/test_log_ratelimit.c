/* Unit tests for util/log: rate limiting of repeated log lines (issue 12). The clock and the
 * output are injected through nh_log_set_clock() and nh_log_set_sink(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/log.h"

#define SEC  1000000000LL
#define KEEP 64

static int64_t g_now;
static int g_lines;
static char g_text[KEEP][2048];
static unsigned long long g_suppressed_total;

static int64_t fake_clock(void) {
    return g_now;
}

static void capture(void *ctx, const char *line, size_t len) {
    (void)ctx;
    if (g_lines < KEEP) {
        size_t n = len < sizeof g_text[0] - 1 ? len : sizeof g_text[0] - 1;
        memcpy(g_text[g_lines], line, n);
        g_text[g_lines][n] = '\0';
    }
    char buf[2048];
    size_t n = len < sizeof buf - 1 ? len : sizeof buf - 1;
    memcpy(buf, line, n);
    buf[n] = '\0';
    const char *p = strstr(buf, "suppressed ");
    unsigned long long c;
    if (p && sscanf(p, "suppressed %llu similar", &c) == 1) g_suppressed_total += c;
    g_lines++;
}

static int setup(void **state) {
    (void)state;
    g_now = 0;
    g_lines = 0;
    g_suppressed_total = 0;
    memset(g_text, 0, sizeof g_text);
    nh_log_set_level(NH_LOG_DEBUG);
    nh_log_set_format(NH_LOG_TEXT);
    nh_log_set_clock(fake_clock);
    nh_log_set_sink(capture, NULL);
    nh_log_set_burst(10);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    nh_log_set_sink(NULL, NULL);
    nh_log_set_clock(NULL);
    nh_log_set_format(NH_LOG_TEXT);
    nh_log_set_burst(-1);
    unsetenv("NH_LOG_BURST");
    return 0;
}

/* Call site A. */
static void site_a(int i) {
    nh_logf(NH_LOG_WARN, "envelope", "bad envelope %d", i);
}

/* Call site B, same component and level as A (a different text: the compiler may merge
 * identical literals into one pointer, which would make them one call site). */
static void site_b(int i) {
    nh_logf(NH_LOG_WARN, "envelope", "bad envelope (b) %d", i);
}

/* One call site with variable level and component. */
static void site_any(nh_log_level level, const char *comp, int i) {
    nh_logf(level, comp, "peer event %d", i);
}

static void test_burst_then_summary(void **state) {
    (void)state;
    for (int i = 0; i < 1000; i++)
        site_a(i);
    assert_int_equal(g_lines, 10);
    assert_non_null(strstr(g_text[9], " warn envelope: bad envelope 9\n"));
    g_now = SEC / 2; /* same window: still suppressed */
    site_a(1000);
    assert_int_equal(g_lines, 10);
    g_now = 3 * SEC / 2;
    site_a(1001);
    assert_int_equal(g_lines, 12);
    assert_non_null(strstr(g_text[10], " warn envelope: suppressed 991 similar message(s) in the "
                                       "last 1.5 s: bad envelope 1000\n"));
    assert_non_null(strstr(g_text[11], " warn envelope: bad envelope 1001\n"));
    assert_null(strstr(g_text[11], "suppressed"));
}

static void test_count_990_in_next_window(void **state) {
    (void)state;
    for (int i = 0; i < 1000; i++)
        site_a(i);
    assert_int_equal(g_lines, 10);
    g_now = SEC;
    site_a(1000);
    assert_int_equal(g_lines, 12);
    assert_non_null(strstr(g_text[10], "envelope: suppressed 990 similar message(s) in the last "
                                       "1.0 s: bad envelope 999\n"));
    assert_non_null(strstr(g_text[11], "envelope: bad envelope 1000\n"));
    /* The new window has a fresh burst: 9 more lines, then suppression again. */
    for (int i = 0; i < 20; i++)
        site_a(2000 + i);
    assert_int_equal(g_lines, 21);
    assert_int_equal(g_suppressed_total, 990);
}

static void test_window_edge_and_duration(void **state) {
    (void)state;
    for (int i = 0; i < 10; i++)
        site_a(i);
    g_now = SEC / 5;
    for (int i = 0; i < 5; i++)
        site_a(100 + i);
    assert_int_equal(g_lines, 10);
    g_now = SEC - 1; /* window not over yet */
    site_a(200);
    assert_int_equal(g_lines, 10);
    g_now = SEC;
    site_a(300);
    assert_int_equal(g_lines, 12);
    assert_non_null(strstr(g_text[10], "suppressed 6 similar message(s) in the last 0.8 s: "
                                       "bad envelope 200\n"));
}

static void test_call_sites_independent(void **state) {
    (void)state;
    for (int i = 0; i < 100; i++) {
        site_a(i);
        site_b(i);
    }
    assert_int_equal(g_lines, 20);
    /* Same call site, different level or component: separate keys. */
    for (int i = 0; i < 100; i++) {
        site_any(NH_LOG_WARN, "peer", i);
        site_any(NH_LOG_INFO, "peer", i);
        site_any(NH_LOG_WARN, "client", i);
        site_any(NH_LOG_DEBUG, "peer", i);
        site_any(NH_LOG_ERROR, "peer", i);
    }
    assert_int_equal(g_lines, 70);
}

static void test_component_text_not_pointer(void **state) {
    (void)state;
    char comp[32];
    for (int i = 0; i < 100; i++) {
        snprintf(comp, sizeof comp, "plugin%d", i % 2);
        site_any(NH_LOG_ERROR, comp, i);
    }
    assert_int_equal(g_lines, 20);
}

static void test_burst_zero_unlimited(void **state) {
    (void)state;
    nh_log_set_burst(0);
    for (int i = 0; i < 1000; i++)
        site_a(i);
    assert_int_equal(g_lines, 1000);
    assert_int_equal(g_suppressed_total, 0);
}

static void test_env_burst(void **state) {
    (void)state;
    setenv("NH_LOG_BURST", "0", 1);
    nh_log_set_burst(-1);
    for (int i = 0; i < 1000; i++)
        site_a(i);
    assert_int_equal(g_lines, 1000);

    g_lines = 0;
    setenv("NH_LOG_BURST", "3", 1);
    nh_log_set_burst(-1);
    for (int i = 0; i < 1000; i++)
        site_a(i);
    assert_int_equal(g_lines, 3);
    g_now = 2 * SEC;
    site_a(1000);
    assert_int_equal(g_lines, 5);
    assert_int_equal(g_suppressed_total, 997);

    g_lines = 0;
    setenv("NH_LOG_BURST", "junk", 1); /* invalid: default 10 */
    nh_log_set_burst(-1);
    for (int i = 0; i < 1000; i++)
        site_a(i);
    assert_int_equal(g_lines, 10);
}

static void test_eviction_keeps_counts(void **state) {
    (void)state;
    /* 200 keys in a 64-slot table: evicted keys report their pending count when evicted. */
    char comp[32];
    for (int k = 0; k < 200; k++) {
        snprintf(comp, sizeof comp, "c%d", k);
        for (int i = 0; i < 12; i++)
            site_any(NH_LOG_WARN, comp, i);
    }
    g_now = 2 * SEC;
    for (int k = 0; k < 200; k++) {
        snprintf(comp, sizeof comp, "c%d", k);
        site_any(NH_LOG_WARN, comp, 99);
    }
    assert_int_equal(g_suppressed_total, 400);
    assert_int_equal(g_lines, 200 * 10 + 200 + 200);
}

/* One JSON line: starts with {, ends with }, a single newline at the end. */
static int check_json_line(const char *s) {
    size_t n = strlen(s);
    return n >= 3 && s[0] == '{' && s[n - 2] == '}' && strchr(s, '\n') == s + n - 1;
}

/* Call site with characters JSON must escape. */
static void json_site(int i) {
    nh_logf(NH_LOG_WARN, "rpc", "bad \"frame\"\n%d\\", i);
}

static void test_json_lines(void **state) {
    (void)state;
    nh_log_set_format(NH_LOG_JSON);
    for (int i = 0; i < 15; i++)
        json_site(i);
    assert_int_equal(g_lines, 10);
    g_now = SEC;
    nh_logf(NH_LOG_WARN, "rpc", "other site %d", 1);
    for (int i = 0; i < 2; i++)
        json_site(100 + i);
    assert_int_equal(g_lines, 14);
    for (int i = 0; i < 14; i++)
        assert_true(check_json_line(g_text[i]));
    assert_non_null(strstr(g_text[0], "\"level\":\"warn\",\"component\":\"rpc\","
                                      "\"msg\":\"bad \\\"frame\\\"\\u000a0\\\\\"}"));
    assert_non_null(strstr(g_text[10], "\"msg\":\"other site 1\"}"));
    assert_non_null(strstr(g_text[11], "\"component\":\"rpc\",\"msg\":\"suppressed 5 similar "
                                       "message(s) in the last 1.0 s: bad \\\"frame\\\"\\u000a14"
                                       "\\\\\",\"suppressed\":5}\n"));
    assert_non_null(strstr(g_text[12], "\\u000a100\\\\\"}\n"));
    assert_null(strstr(g_text[12], "\"suppressed\""));
    assert_non_null(strstr(g_text[13], "\\u000a101\\\\\"}\n"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_burst_then_summary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_count_990_in_next_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_edge_and_duration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_sites_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_component_text_not_pointer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst_zero_unlimited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_keeps_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_lines, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
