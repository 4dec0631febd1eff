/* storage: the plugin's state and the functions its files share (storage.c: configuration,
 * replica handlers, durability, reload; coordinate.c: ReadNestedQC and WriteNestedQC over the
 * membership; catchup.c: anti-entropy pulls from peers that join Config). The handlers of
 * proto.Storage are declared in the generated storage.nh.h. Owner thread. */
#ifndef NH_STORAGE_IMPL_H
#define NH_STORAGE_IMPL_H

#include "storage.nh.h" /* generated from storage.proto */
#include "store.h"

/* One anti-entropy pull from a peer. */
typedef struct pull {
    struct storage *s;
    uint32_t peer;
    char *after;
    size_t pages, entries;
    uint32_t retry_ms; /* pause before the next try of a failed page (0: none failed) */
    bool restart;      /* the peer left and came back: start again from the first key */
    int64_t started_ns;
    struct pull *next;
} pull;

typedef struct storage {
    /* Immutable after init. */
    uint64_t generation;
    uint32_t node_id;
    nh_runtime *rt;
    nh_server *srv;
    size_t max_keys;
    uint32_t nested_timeout_ms, notify_timeout_ms;
    char *data_dir; /* this node's store directory (data_dir/node-<id>), NULL in memory */
    st_sync sync;
    size_t map_size;
    uint32_t pull_page;
    /* The store: opened at init, adopted from the previous generation on reload, or opened at
     * first use when a reload did not hand one over. */
    st_store *store;
    /* Coordinator: the last timestamp it picked (strictly increasing). */
    int64_t last_sec;
    int32_t last_nsec;
    /* Catch-up. */
    uint32_t *config_ids; /* the Config seen last (sorted) */
    size_t n_config_ids;
    bool config_seen;
    pull *pulls;
    bool retired;
    uint32_t *pending; /* peers whose pulls the previous generation had not finished */
    size_t n_pending;
    /* Recovery of a memory store after a start (catchup.c). */
    size_t n_members;
    bool recovering;
    uint32_t *caught_up; /* peers caught up from since the start */
    size_t n_caught_up;
} storage;

/** The store, opened on first use if needed; NULL (with an error answered on ctx, when given)
 * when it cannot be opened. */
st_store *storage_store(storage *s, nh_server_ctx *ctx);

/** Applies a write (from a request, a pull or a hand-over) to the store; done (may be NULL)
 * gets the result: at once for the memory store, from the disk store's writer thread once the
 * write is committed. */
void storage_apply(storage *s, const Proto__WriteRequest *w, st_done_fn done, void *arg);

/** Entries of the store as WriteRequest messages (a catch-up page, a reload snapshot). */
typedef struct entry_list {
    Proto__WriteRequest *msgs, **ptrs;
    Google__Protobuf__Timestamp *times;
    char **copies; /* key and value of each entry */
    size_t n;
} entry_list;

/** Fills l with up to limit entries after `after` (st_scan()). 0, or -1 when out of memory
 * (l must still be freed). */
int entry_list_fill(entry_list *l, st_store *st, const char *after, size_t limit, size_t max_bytes,
                    bool *more);

/** Frees what entry_list_fill() allocated. */
void entry_list_free(entry_list *l);

/** Monotonic clock in ns (for logs). */
int64_t storage_mono_ns(void);

/* catchup.c */
void storage_config_changed(void *state, nh_config *cfg, bool client_config);
void storage_catchup_retire(storage *s);
/** While a memory store recovers after a start: 1 with the reason in buf (reads are refused);
 * else 0. */
int storage_recovery_status(const storage *s, char *buf, size_t len);
/** The peers with a pull in progress (up to max into ids); returns how many. */
size_t storage_catchup_pending(const storage *s, uint32_t *ids, size_t max);
void storage_catchup_free(storage *s);

#endif
