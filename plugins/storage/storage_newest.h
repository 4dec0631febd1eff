/* storage: the newest-value quorum function shared by the plugin (ReadNestedQC) and
 * nh-storage-client (read): a majority of the configuration answered ReadQC, and the value is the
 * reply with the newest timestamp among those that found the key. */
#ifndef NH_STORAGE_NEWEST_H
#define NH_STORAGE_NEWEST_H

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

/*
 * Quorum function (nh_quorum_fn) for ReadQC: waits for a majority of config_size successful
 * replies, then decides on the newest of them (first reply on ties). Replies that do not decode
 * as ReadResponse are not counted. user: NULL, or a uint32_t that receives the ID of the node
 * whose reply won.
 */
static inline nh_qf_verdict storage_newest_qf(const nh_node_reply *replies, size_t n,
                                              size_t config_size, void *user,
                                              const uint8_t **result, size_t *result_len) {
    size_t ok = 0;
    for (size_t i = 0; i < n; i++)
        if (replies[i].err.code == NH_OK) ok++;
    if (ok < config_size / 2 + 1) return NH_QF_MORE;
    const nh_node_reply *best = NULL;
    Proto__ReadResponse *best_msg = NULL;
    size_t decoded = 0;
    for (size_t i = 0; i < n; i++) {
        if (replies[i].err.code != NH_OK) continue;
        Proto__ReadResponse *m =
            proto__read_response__unpack(NULL, replies[i].len, replies[i].payload);
        if (!m) continue;
        decoded++;
        if (!best_msg || storage_read_newer(m, best_msg)) {
            if (best_msg) proto__read_response__free_unpacked(best_msg, NULL);
            best = &replies[i];
            best_msg = m;
        } else {
            proto__read_response__free_unpacked(m, NULL);
        }
    }
    if (best_msg) proto__read_response__free_unpacked(best_msg, NULL);
    if (decoded < config_size / 2 + 1) return NH_QF_MORE;
    if (user) *(uint32_t *)user = best->node_id;
    *result = best->payload;
    *result_len = best->len;
    return NH_QF_DONE;
}

#endif
