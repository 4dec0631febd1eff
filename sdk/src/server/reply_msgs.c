/* Decoded replies of a quorum call, each decoded once (nodehost/plugin.h, nh_reply_msgs). */
#include <nodehost/plugin.h>

#include <stdlib.h>

/* The marker of a reply that was looked at and does not decode (or is an error). */
static const char undecodable;
#define UNDECODABLE ((ProtobufCMessage *)(void *)&undecodable)

struct nh_reply_msgs {
    const ProtobufCMessageDescriptor *type;
    ProtobufCMessage **msgs; /* NULL: not decoded yet; UNDECODABLE: looked at, nothing */
    size_t cap, decoded;
};

nh_reply_msgs *nh_reply_msgs_new(const ProtobufCMessageDescriptor *type) {
    if (!type) return NULL;
    nh_reply_msgs *m = calloc(1, sizeof *m);
    if (m) m->type = type;
    return m;
}

const ProtobufCMessage *nh_reply_msgs_get(nh_reply_msgs *m, const nh_node_reply *replies, size_t n,
                                          size_t i) {
    if (!m || !replies || i >= n) return NULL;
    if (i >= m->cap) {
        size_t cap = m->cap ? m->cap : 8;
        while (cap <= i)
            cap *= 2;
        ProtobufCMessage **p = realloc(m->msgs, cap * sizeof *p);
        if (!p) return NULL;
        for (size_t k = m->cap; k < cap; k++)
            p[k] = NULL;
        m->msgs = p;
        m->cap = cap;
    }
    if (!m->msgs[i]) {
        ProtobufCMessage *msg = NULL;
        if (replies[i].err.code == NH_OK)
            msg = protobuf_c_message_unpack(m->type, NULL, replies[i].len, replies[i].payload);
        if (msg) m->decoded++;
        m->msgs[i] = msg ? msg : UNDECODABLE;
    }
    return m->msgs[i] == UNDECODABLE ? NULL : m->msgs[i];
}

size_t nh_reply_msgs_decoded(const nh_reply_msgs *m) {
    return m ? m->decoded : 0;
}

void nh_reply_msgs_free(nh_reply_msgs *m) {
    if (!m) return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->msgs[i] && m->msgs[i] != UNDECODABLE)
            protobuf_c_message_free_unpacked(m->msgs[i], NULL);
    free(m->msgs);
    free(m);
}
