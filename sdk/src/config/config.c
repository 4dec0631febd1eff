/* Configurations: immutable node arrays over a shared registry (Gorums' Configuration), their
 * set operations and sorting. A configuration never changes after it is built, so reading it
 * needs no lock; its reference count and its nodes' reference counts are atomic. */
#include "config/config_impl.h"
#include "node/node_impl.h"
#include "util/clock.h"

#include <nodehost/quorum.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- building ----------------------------------------------------------------------------- */

/* A configuration of n slots on reg (takes a registry reference); the caller fills nodes[]
 * with referenced nodes. */
static nh_config *cfg_alloc_on(nh_runtime *rt, nh_registry *reg, bool server_initiated, size_t n) {
    nh_config *c = malloc(sizeof *c + n * sizeof c->nodes[0]);
    if (!c) return NULL;
    c->refs = 1;
    c->rt = rt;
    c->reg = reg;
    c->server_initiated = server_initiated;
    c->membership = false;
    c->n = n;
    if (reg) nh_registry_ref(reg);
    return c;
}

static nh_config *cfg_alloc(nh_registry *reg, size_t n) {
    return cfg_alloc_on(reg->rt, reg, false, n);
}

/* n slots of the same kind as cfg (same runtime, registry or none, call direction). */
static nh_config *cfg_like(const nh_config *cfg, size_t n) {
    return cfg_alloc_on(cfg->rt, cfg->reg, cfg->server_initiated, n);
}

/* A configuration like cfg with these nodes, in this order (each gets a reference). */
static nh_config *cfg_from(const nh_config *like, struct nh_node *const *nodes, size_t n) {
    nh_config *c = cfg_like(like, n);
    if (!c) return NULL;
    for (size_t i = 0; i < n; i++) {
        c->nodes[i] = nodes[i];
        nh_node_ref(nodes[i]);
    }
    return c;
}

nh_config *nh_config_alloc(nh_runtime *rt, size_t n, bool server_initiated) {
    return cfg_alloc_on(rt, NULL, server_initiated, n);
}

nh_config *nh_config_from_nodes(nh_runtime *rt, struct nh_node *const *nodes, size_t n,
                                bool server_initiated) {
    nh_config *c = cfg_alloc_on(rt, NULL, server_initiated, n);
    if (!c) return NULL;
    for (size_t i = 0; i < n; i++) {
        c->nodes[i] = nodes[i];
        nh_node_ref(nodes[i]);
    }
    return c;
}

/* ---- stable sorting by a 64-bit key ------------------------------------------------------- */

typedef struct keyed {
    int64_t key;
    struct nh_node *node;
} keyed;

/* Merge sort (stable): equal keys keep their order. */
static void merge_sort(keyed *a, keyed *tmp, size_t n) {
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(a, tmp, h);
    merge_sort(a + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = a[j].key < a[i].key ? a[j++] : a[i++];
    while (i < h)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

typedef enum sort_key { KEY_ID, KEY_LATENCY, KEY_LAST_ERROR } sort_key;

/* Each node's key is read once, before sorting, so that latencies and errors that change
 * meanwhile (other threads) cannot make the comparison inconsistent. */
static int64_t key_of(struct nh_node *n, sort_key k) {
    switch (k) {
        case KEY_ID:
            return nh_node_id(n);
        case KEY_LATENCY: {
            int64_t l = nh_node_latency_ns(n);
            return l < 0 ? INT64_MAX : l; /* unmeasured last, all equal */
        }
        case KEY_LAST_ERROR:
            return nh_node_last_error(n, NULL) ? 1 : 0;
    }
    return 0;
}

/* Sorts nodes[0..n) in place (stable). Returns -1 when out of memory. */
static int sort_nodes(struct nh_node **nodes, size_t n, sort_key k) {
    if (n < 2) return 0;
    keyed *a = malloc(2 * n * sizeof *a);
    if (!a) return -1;
    for (size_t i = 0; i < n; i++)
        a[i] = (keyed){key_of(nodes[i], k), nodes[i]};
    merge_sort(a, a + n, n);
    for (size_t i = 0; i < n; i++)
        nodes[i] = a[i].node;
    free(a);
    return 0;
}

static nh_config *sorted_copy(const nh_config *cfg, sort_key k) {
    if (!cfg) return NULL;
    nh_config *c = cfg_from(cfg, cfg->nodes, cfg->n);
    if (c) c->membership = cfg->membership; /* the same nodes in another order */
    if (c && sort_nodes(c->nodes, c->n, k) != 0) {
        nh_config_unref(c);
        return NULL;
    }
    return c;
}

/* ---- construction ------------------------------------------------------------------------- */

int nh_config_new(nh_runtime *rt, const nh_config_opts *opts, nh_config **out, nh_error *err) {
    if (out) *out = NULL;
    if (!rt || !opts || !out)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "NULL argument");
    nh_registry *reg = nh_registry_new(rt, opts, err);
    if (!reg) return -1;
    struct nh_node **nodes;
    size_t n;
    if (nh_registry_acquire(reg, opts, &nodes, &n, err) != 0) {
        nh_registry_unref(reg); /* empty: closes nothing */
        return -1;
    }
    nh_config *c = cfg_alloc(reg, n);
    if (c) {
        memcpy(c->nodes, nodes, n * sizeof *nodes); /* sorted by ID; references move over */
    } else {
        for (size_t i = 0; i < n; i++)
            nh_node_unref(nodes[i]);
    }
    free(nodes);
    nh_registry_unref(reg); /* the configuration holds it now (or nothing does: closed) */
    if (!c) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    *out = c;
    return 0;
}

int nh_config_extend(const nh_config *cfg, const nh_config_opts *opts, nh_config **out,
                     nh_error *err) {
    if (out) *out = NULL;
    if (!cfg || !out)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "NULL argument");
    if (!opts) { /* Gorums' Extend(nil): a copy */
        *out = cfg_from(cfg, cfg->nodes, cfg->n);
        if (!*out)
            return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return 0;
    }
    if (!cfg->reg)
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                            "this configuration has no node registry (a node's Config or "
                            "ClientConfig cannot be extended)");
    struct nh_node **nodes;
    size_t n;
    if (nh_registry_acquire(cfg->reg, opts, &nodes, &n, err) != 0) return -1;
    /* cfg's nodes plus the new ones it lacks, sorted by ID (Gorums: c.Union(new)). */
    nh_config *c = cfg_like(cfg, cfg->n + n);
    if (c) {
        size_t m = 0;
        for (size_t i = 0; i < cfg->n; i++) {
            c->nodes[m++] = cfg->nodes[i];
            nh_node_ref(cfg->nodes[i]);
        }
        for (size_t i = 0; i < n; i++) {
            if (nh_config_contains(cfg, nh_node_id(nodes[i])))
                nh_node_unref(nodes[i]);
            else
                c->nodes[m++] = nodes[i]; /* the reference moves over */
        }
        c->n = m;
        if (sort_nodes(c->nodes, c->n, KEY_ID) != 0) {
            nh_config_unref(c);
            c = NULL;
        }
    } else {
        for (size_t i = 0; i < n; i++)
            nh_node_unref(nodes[i]);
    }
    free(nodes);
    if (!c) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    *out = c;
    return 0;
}

nh_config *nh_config_ref(nh_config *cfg) {
    if (cfg) __atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
    return cfg;
}

void nh_config_unref(nh_config *cfg) {
    if (!cfg || __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    for (size_t i = 0; i < cfg->n; i++)
        nh_node_unref(cfg->nodes[i]);
    nh_registry_unref(cfg->reg); /* the last one closes the registry's nodes */
    free(cfg);
}

/* ---- accessors ---------------------------------------------------------------------------- */

size_t nh_config_size(const nh_config *cfg) {
    return cfg ? cfg->n : 0;
}

nh_node *nh_config_node(const nh_config *cfg, size_t i) {
    return cfg && i < cfg->n ? cfg->nodes[i] : NULL;
}

nh_node *nh_config_find(const nh_config *cfg, uint32_t id) {
    for (size_t i = 0; cfg && i < cfg->n; i++)
        if (nh_node_id(cfg->nodes[i]) == id) return cfg->nodes[i];
    return NULL;
}

bool nh_config_contains(const nh_config *cfg, uint32_t id) {
    return nh_config_find(cfg, id) != NULL;
}

size_t nh_config_ids(const nh_config *cfg, uint32_t *ids, size_t max) {
    size_t n = nh_config_size(cfg);
    for (size_t i = 0; ids && i < n && i < max; i++)
        ids[i] = nh_node_id(cfg->nodes[i]);
    return n;
}

size_t nh_config_reachable(const nh_config *cfg) {
    size_t k = 0;
    for (size_t i = 0; i < nh_config_size(cfg); i++)
        if (nh_node_connected(cfg->nodes[i])) k++;
    return k;
}

size_t nh_config_wait_reachable(const nh_config *cfg, uint32_t timeout_ms) {
    bool owner = cfg && nh_runtime_on_owner(cfg->rt);
    int64_t end = nh_now_ns() + (int64_t)timeout_ms * 1000000;
    size_t up;
    while ((up = nh_config_reachable(cfg)) < nh_config_size(cfg) && !owner && nh_now_ns() < end)
        nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
    return up;
}

bool nh_config_is_membership(const nh_config *cfg) {
    return cfg && cfg->membership;
}

bool nh_config_equal(const nh_config *a, const nh_config *b) {
    size_t n = nh_config_size(a);
    if (n != nh_config_size(b)) return false;
    for (size_t i = 0; i < n; i++)
        if (nh_node_id(a->nodes[i]) != nh_node_id(b->nodes[i])) return false;
    return true;
}

/* ---- set operations ----------------------------------------------------------------------- */

/* True when id is among ids[0..n). */
static bool id_in(uint32_t id, const uint32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

nh_config *nh_config_add(const nh_config *cfg, const uint32_t *ids, size_t n) {
    if (!cfg) return NULL;
    if (!ids) n = 0;
    nh_config *c = cfg_like(cfg, cfg->n + n);
    if (!c) return NULL;
    c->n = 0; /* counts the slots filled so far */
    for (size_t i = 0; i < cfg->n; i++) {
        c->nodes[c->n++] = cfg->nodes[i];
        nh_node_ref(cfg->nodes[i]);
    }
    for (size_t i = 0; i < n; i++) {
        if (nh_config_contains(c, ids[i])) continue; /* present, or a duplicate ID */
        struct nh_node *node = nh_registry_find(cfg->reg, ids[i]);
        if (!node) continue; /* unknown IDs are ignored */
        nh_node_ref(node);
        c->nodes[c->n++] = node;
    }
    if (sort_nodes(c->nodes, c->n, KEY_ID) != 0) {
        nh_config_unref(c);
        return NULL;
    }
    return c;
}

nh_config *nh_config_remove(const nh_config *cfg, const uint32_t *ids, size_t n) {
    if (!cfg) return NULL;
    if (!ids) n = 0;
    nh_config *c = cfg_like(cfg, cfg->n);
    if (!c) return NULL;
    size_t m = 0;
    for (size_t i = 0; i < cfg->n; i++) {
        if (id_in(nh_node_id(cfg->nodes[i]), ids, n)) continue;
        c->nodes[m++] = cfg->nodes[i];
        nh_node_ref(cfg->nodes[i]);
    }
    c->n = m;
    return c;
}

/* All IDs of cfg (malloc'd; *n set). NULL with *n 0 for an empty configuration. */
static uint32_t *ids_of(const nh_config *cfg, size_t *n, bool *oom) {
    *n = nh_config_size(cfg);
    *oom = false;
    if (*n == 0) return NULL;
    uint32_t *ids = malloc(*n * sizeof *ids);
    if (!ids) {
        *oom = true;
        return NULL;
    }
    nh_config_ids(cfg, ids, *n);
    return ids;
}

nh_config *nh_config_union(const nh_config *a, const nh_config *b) {
    if (!a) return b ? nh_config_sort_by_id(b) : NULL;
    size_t n;
    bool oom;
    uint32_t *ids = ids_of(b, &n, &oom);
    nh_config *c = oom ? NULL : nh_config_add(a, ids, n);
    free(ids);
    return c;
}

nh_config *nh_config_difference(const nh_config *a, const nh_config *b) {
    if (!a) return NULL;
    size_t n;
    bool oom;
    uint32_t *ids = ids_of(b, &n, &oom);
    nh_config *c = oom ? NULL : nh_config_remove(a, ids, n);
    free(ids);
    return c;
}

/* ---- sorting ------------------------------------------------------------------------------ */

nh_config *nh_config_sort_by_latency(const nh_config *cfg) {
    return sorted_copy(cfg, KEY_LATENCY);
}

nh_config *nh_config_sort_by_last_error(const nh_config *cfg) {
    return sorted_copy(cfg, KEY_LAST_ERROR);
}

nh_config *nh_config_sort_by_id(const nh_config *cfg) {
    return sorted_copy(cfg, KEY_ID);
}

/* ---- quorum call outcomes ----------------------------------------------------------------- */

/* The quorum engine fills the reply slot of a node that the request mapping skipped
 * (NH_MAP_SKIP) with an error of kind NH_ERR_LOCAL whose message contains "skip node"; such a
 * node did not fail, so it is not removed. */
static bool reply_skipped(const nh_node_reply *r) {
    return r->err.kind == NH_ERR_LOCAL && strstr(r->err.message, "skip node") != NULL;
}

nh_config *nh_config_without_errors(const nh_config *cfg, const nh_qc_outcome *o) {
    if (!cfg) return NULL;
    size_t n = o && o->replies ? o->n_replies : 0;
    uint32_t *failed = n ? malloc(n * sizeof *failed) : NULL;
    if (n && !failed) return NULL;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const nh_node_reply *r = &o->replies[i];
        if (r->err.code != NH_OK && !reply_skipped(r)) failed[m++] = r->node_id;
    }
    nh_config *c = nh_config_remove(cfg, failed, m);
    free(failed);
    return c;
}
