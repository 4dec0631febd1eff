/* Unit: the metric registry (metrics/registry.c): names and labels checked, one series per
 * label set (the same pointer when asked again), a family keeps its type and label names,
 * counters only go up, histogram buckets are cumulative and end with +Inf == _count, label
 * values and help texts are escaped, and the output passes the text format's rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <nodehost/metrics.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *render(void) {
    char *out = NULL;
    assert_true(nh_metrics_render(&out) > 0);
    return out;
}

static void expect_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0')) return;
    fail_msg("line \"%s\" not in:\n%s", line, text);
}

static void test_series_are_found_again(void **state) {
    (void)state;
    nh_error err;
    nh_metric_label a = {"kind", "a"}, b = {"kind", "b"};
    nh_metric *m1 = nh_metric_counter("t_found_total", "help", &a, 1, &err);
    nh_metric *m2 = nh_metric_counter("t_found_total", "other help", &a, 1, &err);
    nh_metric *m3 = nh_metric_counter("t_found_total", "help", &b, 1, &err);
    assert_non_null(m1);
    assert_ptr_equal(m1, m2);
    assert_ptr_not_equal(m1, m3);
    nh_metric_add(m1, 2);
    nh_metric_add(m2, 3);
    nh_metric_add(m1, -1);  /* counters never go down */
    nh_metric_add(m1, NAN); /* nor become NaN */
    char *t = render();
    expect_line(t, "# HELP t_found_total help");
    expect_line(t, "# TYPE t_found_total counter");
    expect_line(t, "t_found_total{kind=\"a\"} 5");
    expect_line(t, "t_found_total{kind=\"b\"} 0");
    free(t);
}

static void test_bad_names_and_conflicts_are_refused(void **state) {
    (void)state;
    nh_error err;
    assert_null(nh_metric_counter("1abc", "h", NULL, 0, &err));
    assert_null(nh_metric_counter("a-b", "h", NULL, 0, &err));
    assert_null(nh_metric_counter("", "h", NULL, 0, &err));
    nh_metric_label bad = {"__x", "v"}, le = {"le", "1"}, dash = {"a-b", "v"};
    assert_null(nh_metric_counter("t_ok_total", "h", &bad, 1, &err));
    assert_null(nh_metric_histogram("t_h_seconds", "h", &le, 1, NULL, 0, &err));
    assert_null(nh_metric_counter("t_ok_total", "h", &dash, 1, &err));
    assert_non_null(nh_metric_counter("t_kind_total", "h", NULL, 0, &err));
    assert_null(nh_metric_gauge("t_kind_total", "h", NULL, 0, &err)); /* another type */
    assert_int_equal(err.code, NH_ALREADY_EXISTS);
    nh_metric_label x = {"x", "1"};
    assert_null(nh_metric_counter("t_kind_total", "h", &x, 1, &err)); /* other labels */
    double desc[] = {2, 1};
    assert_null(nh_metric_histogram("t_desc_seconds", "h", NULL, 0, desc, 2, &err));
}

static void test_histogram_buckets_are_cumulative(void **state) {
    (void)state;
    nh_error err;
    double bounds[] = {0.1, 1, 10};
    nh_metric_label l = {"m", "x"};
    nh_metric *h = nh_metric_histogram("t_lat_seconds", "latency", &l, 1, bounds, 3, &err);
    assert_non_null(h);
    double obs[] = {0.05, 0.1, 0.5, 5, 50, 50};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        nh_metric_observe(h, obs[i]);
    nh_metric_observe(h, NAN); /* ignored */
    char *t = render();
    expect_line(t, "# TYPE t_lat_seconds histogram");
    expect_line(t, "t_lat_seconds_bucket{m=\"x\",le=\"0.1\"} 2");
    expect_line(t, "t_lat_seconds_bucket{m=\"x\",le=\"1\"} 3");
    expect_line(t, "t_lat_seconds_bucket{m=\"x\",le=\"10\"} 4");
    expect_line(t, "t_lat_seconds_bucket{m=\"x\",le=\"+Inf\"} 6");
    expect_line(t, "t_lat_seconds_count{m=\"x\"} 6");
    expect_line(t, "t_lat_seconds_sum{m=\"x\"} 105.65");
    free(t);
}

static void test_values_and_help_are_escaped(void **state) {
    (void)state;
    nh_error err;
    nh_metric_label l = {"path", "a\"b\\c\nd"};
    nh_metric *g = nh_metric_gauge("t_escape", "line one\nback\\slash", &l, 1, &err);
    nh_metric_set(g, -2.5);
    char *t = render();
    expect_line(t, "# HELP t_escape line one\\nback\\\\slash");
    expect_line(t, "t_escape{path=\"a\\\"b\\\\c\\nd\"} -2.5");
    free(t);
}

static int collected;
static void collect(void *arg) {
    nh_metric_set(arg, ++collected);
}

static void test_collectors_run_at_each_render(void **state) {
    (void)state;
    nh_metric *g = nh_metric_gauge("t_collected", "h", NULL, 0, NULL);
    unsigned long id = nh_metrics_add_collector(collect, g);
    assert_true(id != 0);
    char *t = render();
    expect_line(t, "t_collected 1");
    free(t);
    t = render();
    expect_line(t, "t_collected 2");
    free(t);
    nh_metrics_remove_collector(id);
    t = render();
    expect_line(t, "t_collected 2");
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_series_are_found_again),
        cmocka_unit_test(test_bad_names_and_conflicts_are_refused),
        cmocka_unit_test(test_histogram_buckets_are_cumulative),
        cmocka_unit_test(test_values_and_help_are_escaped),
        cmocka_unit_test(test_collectors_run_at_each_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
