/* Unit: nh_reply_msgs, the decode-once cache for custom quorum functions. A quorum function is
 * called after every reply with all replies so far; through the cache each reply is decoded
 * exactly once however often the function runs, errors and garbage give NULL, and messages stay
 * valid until the cache is freed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "google/rpc/status.pb-c.h"

#include <nodehost/plugin.h>

#include <string.h>

static nh_node_reply ok_reply(uint32_t id, int32_t code, const char *msg, uint8_t *buf) {
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    st.code = code;
    st.message = (char *)msg;
    size_t n = google__rpc__status__pack(&st, buf);
    return (nh_node_reply){.node_id = id, .payload = buf, .len = n, .err = {.code = NH_OK}};
}

/* A quorum function in the classic style: sums the codes of the replies that decode, once a
 * majority decoded; it runs once per reply over everything so far. */
static nh_qf_verdict sum_codes(const nh_node_reply *r, size_t n, size_t size, void *user,
                               int *sum) {
    nh_reply_msgs *m = user;
    size_t ok = 0;
    *sum = 0;
    for (size_t i = 0; i < n; i++) {
        const Google__Rpc__Status *st = (const Google__Rpc__Status *)nh_reply_msgs_get(m, r, n, i);
        if (!st) continue;
        ok++;
        *sum += st->code;
    }
    return ok >= size / 2 + 1 ? NH_QF_DONE : NH_QF_MORE;
}

static void test_each_reply_is_decoded_once_across_invocations(void **state) {
    (void)state;
    uint8_t b[5][64];
    nh_node_reply r[5];
    r[0] = ok_reply(1, 3, "a", b[0]);
    r[1] = (nh_node_reply){.node_id = 2, .err = {.code = NH_UNAVAILABLE}}; /* a node error */
    r[2] = (nh_node_reply){.node_id = 3,
                           .payload = (const uint8_t *)"\xff\xff",
                           .len = 2,
                           .err = {.code = NH_OK}}; /* garbage */
    r[3] = ok_reply(4, 4, "d", b[3]);
    r[4] = ok_reply(5, 5, "e", b[4]);
    nh_reply_msgs *m = nh_reply_msgs_new(&google__rpc__status__descriptor);
    assert_non_null(m);
    int sum = 0;
    /* As the engine does: called with 1, 2, ... 5 replies. */
    for (size_t n = 1; n <= 5; n++) {
        nh_qf_verdict v = sum_codes(r, n, 5, m, &sum);
        assert_int_equal(v, n >= 5 ? NH_QF_DONE : NH_QF_MORE);
    }
    assert_int_equal(sum, 12);
    assert_int_equal(nh_reply_msgs_decoded(m), 3); /* 3 decodable replies, each decoded once */
    const Google__Rpc__Status *first = (const Google__Rpc__Status *)nh_reply_msgs_get(m, r, 5, 0);
    assert_string_equal(first->message, "a");
    assert_ptr_equal(first, nh_reply_msgs_get(m, r, 5, 0)); /* the same message, not a copy */
    assert_null(nh_reply_msgs_get(m, r, 5, 1));
    assert_null(nh_reply_msgs_get(m, r, 5, 2));
    assert_null(nh_reply_msgs_get(m, r, 5, 5)); /* out of range */
    assert_int_equal(nh_reply_msgs_decoded(m), 3);
    nh_reply_msgs_free(m);
    nh_reply_msgs_free(NULL);
}

static void test_many_replies_grow_the_cache(void **state) {
    (void)state;
    enum { N = 100 };
    static uint8_t b[N][64];
    nh_node_reply r[N];
    for (int i = 0; i < N; i++)
        r[i] = ok_reply((uint32_t)i + 1, i, "x", b[i]);
    nh_reply_msgs *m = nh_reply_msgs_new(&google__rpc__status__descriptor);
    for (int i = N - 1; i >= 0; i--) { /* any order */
        const Google__Rpc__Status *st =
            (const Google__Rpc__Status *)nh_reply_msgs_get(m, r, N, (size_t)i);
        assert_non_null(st);
        assert_int_equal(st->code, i);
    }
    assert_int_equal(nh_reply_msgs_decoded(m), N);
    nh_reply_msgs_free(m);
    assert_null(nh_reply_msgs_new(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_reply_is_decoded_once_across_invocations),
        cmocka_unit_test(test_many_replies_grow_the_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
