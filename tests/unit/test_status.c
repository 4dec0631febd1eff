/* Unit tests for core/status: code names, error kinds, wire codes, nh_error, nh_buf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <nodehost/status.h>

#include <stdlib.h>
#include <string.h>

static void test_code_names_of_all_17_codes(void **state) {
    (void)state;
    const char *expect[17] = {"OK",
                              "CANCELLED",
                              "UNKNOWN",
                              "INVALID_ARGUMENT",
                              "DEADLINE_EXCEEDED",
                              "NOT_FOUND",
                              "ALREADY_EXISTS",
                              "PERMISSION_DENIED",
                              "RESOURCE_EXHAUSTED",
                              "FAILED_PRECONDITION",
                              "ABORTED",
                              "OUT_OF_RANGE",
                              "UNIMPLEMENTED",
                              "INTERNAL",
                              "UNAVAILABLE",
                              "DATA_LOSS",
                              "UNAUTHENTICATED"};
    for (int c = 0; c < 17; c++)
        assert_string_equal(nh_code_name((nh_code)c), expect[c]);
    assert_string_equal(nh_code_name(NH_UNAVAILABLE), "UNAVAILABLE");
    assert_string_equal(nh_code_name(NH_UNAUTHENTICATED), "UNAUTHENTICATED");
}

static void test_code_name_out_of_range_is_unknown_code(void **state) {
    (void)state;
    const char *a = nh_code_name((nh_code)17);
    assert_string_equal(a, "UNKNOWN_CODE");
    assert_string_equal(nh_code_name((nh_code)-1), "UNKNOWN_CODE");
    assert_string_equal(nh_code_name((nh_code)1000), "UNKNOWN_CODE");
    assert_ptr_equal(nh_code_name((nh_code)99), a); /* a fixed string, not a buffer */
}

static void test_err_kind_names(void **state) {
    (void)state;
    assert_string_equal(nh_err_kind_name(NH_ERR_NONE), "none");
    assert_string_equal(nh_err_kind_name(NH_ERR_STATUS), "status");
    assert_string_equal(nh_err_kind_name(NH_ERR_TRANSPORT), "transport");
    assert_string_equal(nh_err_kind_name(NH_ERR_TIMEOUT), "timeout");
    assert_string_equal(nh_err_kind_name(NH_ERR_CANCELLED), "cancelled");
    assert_string_equal(nh_err_kind_name(NH_ERR_CLOSED), "closed");
    assert_string_equal(nh_err_kind_name(NH_ERR_LOCAL), "local");
    assert_string_equal(nh_err_kind_name(NH_ERR_INCOMPLETE), "incomplete");
    assert_string_equal(nh_err_kind_name(NH_ERR_SEND_FAILURE), "send failure");
    assert_string_equal(nh_err_kind_name((nh_err_kind)9), "unknown");
    assert_non_null(nh_err_kind_name((nh_err_kind)-1));
}

static void test_code_from_wire_maps_range_and_rejects_rest(void **state) {
    (void)state;
    for (int64_t c = 0; c <= 16; c++)
        assert_int_equal(nh_code_from_wire(c), c);
    assert_int_equal(nh_code_from_wire(-1), NH_UNKNOWN);
    assert_int_equal(nh_code_from_wire(17), NH_UNKNOWN);
    assert_int_equal(nh_code_from_wire(INT64_C(1) << 40), NH_UNKNOWN);
    assert_int_equal(nh_code_from_wire((INT64_C(1) << 40) | 14), NH_UNKNOWN);
    assert_int_equal(nh_code_from_wire(INT64_MIN), NH_UNKNOWN);
    assert_int_equal(nh_code_from_wire(INT64_MAX), NH_UNKNOWN);
}

static void test_error_set_formats_message_and_fields(void **state) {
    (void)state;
    nh_error err;
    memset(&err, 0x5a, sizeof(err));
    int rc = nh_error_set(&err, NH_DEADLINE_EXCEEDED, NH_ERR_TIMEOUT, 2,
                          "node %u (%s): timeout after %d ms", 2u, "127.0.0.1:7002", 100);
    assert_int_equal(rc, -1);
    assert_int_equal(err.code, NH_DEADLINE_EXCEEDED);
    assert_int_equal(err.kind, NH_ERR_TIMEOUT);
    assert_int_equal(err.node_id, 2);
    assert_string_equal(err.message, "node 2 (127.0.0.1:7002): timeout after 100 ms");

    assert_int_equal(nh_error_set(&err, NH_UNAVAILABLE, NH_ERR_CLOSED, 0, "node closed"), -1);
    assert_string_equal(err.message, "node closed");
    assert_int_equal(err.node_id, 0);

    nh_error_clear(&err);
    assert_int_equal(err.code, NH_OK);
    assert_int_equal(err.kind, NH_ERR_NONE);
    assert_int_equal(err.node_id, 0);
    assert_string_equal(err.message, "");
}

static void test_error_set_truncates_long_message(void **state) {
    (void)state;
    char long_text[NH_ERROR_MESSAGE_MAX * 3];
    for (size_t i = 0; i < sizeof(long_text) - 1; i++)
        long_text[i] = (char)('a' + i % 26);
    long_text[sizeof(long_text) - 1] = '\0';

    /* surround err with sentinels to catch an overflow past message[] */
    struct {
        nh_error err;
        char guard[64];
    } box;
    memset(&box, 0x7e, sizeof(box));
    assert_int_equal(nh_error_set(&box.err, NH_INTERNAL, NH_ERR_LOCAL, 9, "x:%s", long_text), -1);
    assert_int_equal(strlen(box.err.message), NH_ERROR_MESSAGE_MAX - 1);
    assert_int_equal(box.err.message[NH_ERROR_MESSAGE_MAX - 1], '\0');
    assert_memory_equal(box.err.message, "x:", 2);
    assert_memory_equal(box.err.message + 2, long_text, NH_ERROR_MESSAGE_MAX - 3);
    for (size_t i = 0; i < sizeof(box.guard); i++)
        assert_int_equal(box.guard[i], 0x7e);
    assert_int_equal(box.err.code, NH_INTERNAL);
    assert_int_equal(box.err.node_id, 9);

    /* exactly the maximum that fits */
    long_text[NH_ERROR_MESSAGE_MAX - 1] = '\0';
    nh_error_set(&box.err, NH_INTERNAL, NH_ERR_LOCAL, 9, "%s", long_text);
    assert_string_equal(box.err.message, long_text);
}

static void test_error_functions_accept_null(void **state) {
    (void)state;
    assert_int_equal(nh_error_set(NULL, NH_INTERNAL, NH_ERR_LOCAL, 1, "ignored %d", 1), -1);
    nh_error_clear(NULL);
    nh_buf_free(NULL);
}

static void test_buf_free_resets_buffer(void **state) {
    (void)state;
    nh_buf b = {malloc(16), 16};
    assert_non_null(b.data);
    nh_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    nh_buf_free(&b); /* twice is fine */
    assert_null(b.data);
}

static void test_version_is_dotted_triple(void **state) {
    (void)state;
    const char *v = nh_version();
    assert_non_null(v);
    int dots = 0;
    assert_true(strlen(v) >= 5);
    for (const char *p = v; *p; p++) {
        if (*p == '.') {
            dots++;
        } else {
            assert_true(*p >= '0' && *p <= '9');
        }
    }
    assert_int_equal(dots, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_names_of_all_17_codes),
        cmocka_unit_test(test_code_name_out_of_range_is_unknown_code),
        cmocka_unit_test(test_err_kind_names),
        cmocka_unit_test(test_code_from_wire_maps_range_and_rejects_rest),
        cmocka_unit_test(test_error_set_formats_message_and_fields),
        cmocka_unit_test(test_error_set_truncates_long_message),
        cmocka_unit_test(test_error_functions_accept_null),
        cmocka_unit_test(test_buf_free_resets_buffer),
        cmocka_unit_test(test_version_is_dotted_triple),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
