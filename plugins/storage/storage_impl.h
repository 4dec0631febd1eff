/* storage: the plugin's state and what storage.c, coordinate.c and catchup.c share (the handlers
 * of proto.Storage are declared in the generated storage.nh.h). Owner thread. */
#ifndef NH_STORAGE_IMPL_H
#define NH_STORAGE_IMPL_H

#include "storage.nh.h" /* generated from storage.proto */
#include "store.h"

typedef struct storage {
    /* Immutable after init. */
    uint64_t generation;
    uint32_t node_id;
    nh_runtime *rt;
    nh_server *srv;
    int64_t max_keys, map_size, nested_timeout_ms, notify_timeout_ms, pull_page; /* config */
    st_sync sync;
    char *data_dir;       /* this node's store directory (data_dir/node-<id>), NULL in memory */
    nh_metric *writes[3]; /* nodehost_storage_writes_total: new, old, failed */
    /* The store: opened at init, adopted from the previous generation on reload, or opened at
     * first use when a reload did not hand one over. */
    st_store *store;
    /* Coordinator: the last timestamp it picked (strictly increasing). */
    int64_t last_sec;
    int32_t last_nsec;
    /* Catch-up. */
    uint32_t *config_ids; /* the Config seen last (after a reload: its peers caught up with) */
    size_t n_config_ids;
    bool retired;
    struct pull *pulls;
    /* Recovery of a memory store after a start. */
    size_t n_members;
    bool recovering;
    uint32_t *caught_up; /* peers caught up from since the start */
    size_t n_caught_up;
} storage;

/** Applies a write (a request, a pulled entry, a hand-over) to the store; done (may be NULL) gets
 * the result: at once in memory, from the disk store's writer thread once committed. */
void storage_apply(storage *s, const Proto__WriteRequest *w, st_done_fn done, void *arg);

/* catchup.c */
void storage_config_changed(void *state, nh_config *cfg, bool client_config);
/** The peers a recovering node must have caught up from before it serves reads. */
size_t storage_recovery_needed(const storage *s);
/** The peers of the Config seen last that no pull runs for, for the next generation: *n of them
 * in a malloc'ed array (NULL when out of memory). */
uint32_t *storage_caught_up_config(const storage *s, size_t *n);
void storage_catchup_free(storage *s);

#endif
