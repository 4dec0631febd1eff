/* storage: the newest-value quorum function shared by the plugin (ReadNestedQC) and
 * nh-storage-client (read): a majority of the configuration answered ReadQC, and the value is the
 * reply with the newest timestamp among those that found the key. */
#ifndef NH_STORAGE_NEWEST_H
#define NH_STORAGE_NEWEST_H

#include <nodehost/plugin.h>
#include <nodehost/quorum.h>

#include "storage.pb-c.h"

#include <stdint.h>

/* Compares two timestamps (NULL is the zero time, as Go's AsTime of nil): <0, 0, >0. */
static inline int storage_ts_cmp(const Google__Protobuf__Timestamp *a,
                                 const Google__Protobuf__Timestamp *b) {
    int64_t as = a ? a->seconds : 0, bs = b ? b->seconds : 0;
    int32_t an = a ? a->nanos : 0, bn = b ? b->nanos : 0;
    if (as != bs) return as < bs ? -1 : 1;
    if (an != bn) return an < bn ? -1 : 1;
    return 0;
}

/* True when candidate is a better read than best: it found the key and best did not, or both
 * found it and candidate's timestamp is newer. */
static inline bool storage_read_newer(const Proto__ReadResponse *candidate,
                                      const Proto__ReadResponse *best) {
    if (candidate->ok != best->ok) return candidate->ok;
    return candidate->ok && storage_ts_cmp(candidate->time, best->time) > 0;
}

/* What storage_newest_qf() keeps between its calls: the replies decoded so far (each reply is
 * decoded once, nh_reply_msgs) and the ID of the node whose reply won. */
typedef struct storage_newest {
    nh_reply_msgs *msgs; /* nh_reply_msgs_new(&proto__read_response__descriptor) */
    uint32_t winner;
} storage_newest;

/*
 * Quorum function (nh_quorum_fn) for ReadQC: waits for a majority of config_size successful
 * replies that decode as ReadResponse, then decides on the newest of them (first reply on
 * ties). user: a storage_newest whose msgs the caller created and frees after the call.
 */
static inline nh_qf_verdict storage_newest_qf(const nh_node_reply *replies, size_t n,
                                              size_t config_size, void *user,
                                              const uint8_t **result, size_t *result_len) {
    storage_newest *sn = user;
    size_t decoded = 0, best = 0;
    const Proto__ReadResponse *best_msg = NULL;
    for (size_t i = 0; i < n; i++) {
        const Proto__ReadResponse *m =
            (const Proto__ReadResponse *)nh_reply_msgs_get(sn->msgs, replies, n, i);
        if (!m) continue;
        decoded++;
        if (!best_msg || storage_read_newer(m, best_msg)) {
            best_msg = m;
            best = i;
        }
    }
    if (decoded < config_size / 2 + 1) return NH_QF_MORE;
    sn->winner = replies[best].node_id;
    *result = replies[best].payload;
    *result_len = replies[best].len;
    return NH_QF_DONE;
}

#endif
