/* Typed quorum functions: the untyped quorum function the engine calls after every reply. It
 * decodes each reply once (nh_reply_msgs), keeps the typed replies[] array growing with the
 * replies (reply i keeps index i), calls the typed function through its trampoline, and turns
 * its *result back into bytes: a decoded reply's own payload, or the user's message packed. */
#include "stubs/stubs_impl.h"

#include <stdlib.h>

int nh_stub_decode_replies(nh_stub_state *st, const nh_node_reply *replies, size_t n) {
    if (!st->replies && !(st->replies = nh_reply_msgs_new(st->response))) return -1;
    if (n > st->cap_msgs) {
        size_t cap = st->cap_msgs ? st->cap_msgs : 4;
        while (cap < n)
            cap *= 2;
        const ProtobufCMessage **m = realloc(st->msgs, cap * sizeof *m);
        if (!m) return -1;
        st->msgs = m;
        st->cap_msgs = cap;
    }
    for (size_t i = st->n_msgs; i < n; i++)
        st->msgs[i] = nh_reply_msgs_get(st->replies, replies, n, i);
    st->n_msgs = n;
    return 0;
}

nh_qf_verdict nh_stub_qf_adapter(const nh_node_reply *replies, size_t n, size_t config_size,
                                 void *user, const uint8_t **result, size_t *result_len) {
    nh_stub_state *st = user;
    if (nh_stub_decode_replies(st, replies, n) != 0)
        return nh_qf_fail(NH_RESOURCE_EXHAUSTED, "out of memory decoding the replies as %s",
                          st->response->name);
    const ProtobufCMessage *res = NULL;
    nh_qf_verdict v = st->qf_tramp(st->qf, st->msgs, replies, n, config_size, st->qf_user, &res);
    if (v != NH_QF_DONE) return v;
    *result = NULL;
    *result_len = 0;
    if (!res) return NH_QF_DONE; /* an empty value */
    for (size_t i = 0; i < n; i++) {
        if (st->msgs[i] == res) {
            /* One of the replies: its bytes as they arrived, and its decoded message for the
             * completion (no second decode). */
            *result = replies[i].payload;
            *result_len = replies[i].len;
            st->qf_value = res;
            return NH_QF_DONE;
        }
    }
    if (!nh_stub_same_type(res->descriptor, st->response))
        return nh_qf_fail(NH_INTERNAL, "the quorum function's result is a %s, not a %s",
                          res->descriptor && res->descriptor->name ? res->descriptor->name
                                                                   : "(no type)",
                          st->response->name);
    nh_buf_free(&st->result);
    if (nh_msg_pack(res, &st->result) != 0)
        return nh_qf_fail(NH_RESOURCE_EXHAUSTED, "out of memory packing the quorum value");
    *result = st->result.data;
    *result_len = st->result.len;
    return NH_QF_DONE;
}
