/* The inbound manager (spec section 4): which known peers and which client peers are
 * connected right now, as two live configurations.
 *
 * - Known peers come from the server's peer list and are created up front, without a stream.
 *   A stream whose gorums-node-id names one attaches to it; a reconnect replaces the old stream
 *   (its pending calls fail); when the stream ends the peer stays known and leaves Config.
 * - This node itself is always in Config, as a local node dispatched in process.
 * - A stream announcing ID 0 (or an unparsable ID) is a client peer: it gets the next ID from
 *   2^20 up (never reused) and is removed when its stream ends.
 * - Config and ClientConfig are immutable snapshots, rebuilt and swapped on every change; a
 *   snapshot taken earlier stays valid. Change callbacks run after the swap, outside the lock.
 *
 * Owner thread, except the snapshot reads and waits (under the manager's mutex). */
#include "config/config_impl.h"
#include "node/node_impl.h"
#include "security/tls_impl.h"
#include "server/server_impl.h"
#include "util/log.h"
#include "util/u64map.h"
#include "wire/metadata.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LAST_CLIENT_ID UINT32_C(0xFFFFFFFE) /* 0xFFFFFFFF is never handed out (Gorums) */

typedef struct nh_inbound {
    nh_server *srv;
    nh_runtime *rt;
    uint32_t my_id;
    nh_node *self;
    nh_u64map known;   /* id -> nh_node*, known peers other than self */
    nh_u64map clients; /* id -> nh_node*, connected client peers */
    uint64_t next_client_id;
    size_t max_clients;
    bool track_clients;
    bool tls; /* streams carry verified identities: known peers must prove theirs */
    nh_config_change_fn on_change;
    void *change_user;

    pthread_mutex_t mu; /* guards the fields below */
    pthread_cond_t cv;
    int refs; /* the server + threads waiting */
    uint64_t gen;
    bool stopped;
    nh_config *config, *client_config;
    nh_config *members; /* immutable: self + every known peer, sorted by ID */
} nh_inbound;

static void ib_unref(nh_inbound *ib) {
    pthread_mutex_lock(&ib->mu);
    int left = --ib->refs;
    pthread_mutex_unlock(&ib->mu);
    if (left) return;
    nh_config_unref(ib->config);
    nh_config_unref(ib->client_config);
    nh_config_unref(ib->members);
    pthread_cond_destroy(&ib->cv);
    pthread_mutex_destroy(&ib->mu);
    free(ib);
}

static int by_id(const void *a, const void *b) {
    uint32_t x = nh_node_id(*(nh_node *const *)a), y = nh_node_id(*(nh_node *const *)b);
    return x < y ? -1 : x > y;
}

/* Rebuilds one snapshot from the current state, swaps it in, wakes waiters, notifies (an
 * empty snapshot at construction is not notified, as in Gorums). */
static void rebuild_as(nh_inbound *ib, bool client, bool initial);

static void rebuild(nh_inbound *ib, bool client) {
    rebuild_as(ib, client, false);
}

static void rebuild_as(nh_inbound *ib, bool client, bool initial) {
    nh_u64map *map = client ? &ib->clients : &ib->known;
    size_t cap = nh_u64map_len(map) + 1, n = 0;
    nh_node **nodes = malloc(cap * sizeof *nodes);
    if (!nodes) {
        nh_log(NH_LOG_ERROR, "inbound", "out of memory rebuilding a configuration");
        return;
    }
    if (!client && ib->self) nodes[n++] = ib->self;
    size_t pos = 0;
    void *v;
    while (nh_u64map_next(map, &pos, NULL, &v)) {
        nh_node *node = v;
        if (node->stream) nodes[n++] = node;
    }
    qsort(nodes, n, sizeof *nodes, by_id);
    nh_config *snap = nh_config_from_nodes(ib->rt, nodes, n, true);
    free(nodes);
    if (!snap) {
        nh_log(NH_LOG_ERROR, "inbound", "out of memory rebuilding a configuration");
        return;
    }
    pthread_mutex_lock(&ib->mu);
    nh_config *old = client ? ib->client_config : ib->config;
    if (client)
        ib->client_config = snap;
    else
        ib->config = snap;
    pthread_mutex_unlock(&ib->mu);
    nh_config_unref(old);
    /* The change callback runs before waiters wake, outside the lock. */
    if (ib->on_change && !(initial && nh_config_size(snap) == 0))
        ib->on_change(snap, client, ib->change_user);
    pthread_mutex_lock(&ib->mu);
    ib->gen++;
    pthread_cond_broadcast(&ib->cv);
    pthread_mutex_unlock(&ib->mu);
}

/* The membership: self and every known peer, whether connected or not. Built once. */
static void build_members(nh_inbound *ib) {
    size_t n = 0;
    nh_node **nodes = malloc((nh_u64map_len(&ib->known) + 1) * sizeof *nodes);
    if (nodes) {
        if (ib->self) nodes[n++] = ib->self;
        size_t pos = 0;
        void *v;
        while (nh_u64map_next(&ib->known, &pos, NULL, &v))
            nodes[n++] = v;
        qsort(nodes, n, sizeof *nodes, by_id);
        ib->members = nh_config_from_nodes(ib->rt, nodes, n, true);
        free(nodes);
    }
    if (ib->members)
        ib->members->membership = true;
    else
        nh_log(NH_LOG_ERROR, "inbound", "out of memory building the membership");
}

int nh_inbound_new(nh_server *srv, const nh_server_opts *opts, nh_error *err) {
    uint32_t my_id = opts->node_id;
    if (my_id == 0)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "peers given without node_id: a node needs its own ID to track its "
                            "peers");
    if (my_id >= NH_FIRST_CLIENT_ID)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, my_id,
                            "node_id %u is in the client peer ID range (%u and above)", my_id,
                            NH_FIRST_CLIENT_ID);
    /* Validate every peer before creating anything. */
    size_t n = opts->peer_count;
    /* Names are not looked up: a peer whose name does not resolve yet (its pod may not exist)
     * is known all the same and connects when it can. */
    nh_addr_norm *addrs = n ? calloc(n, sizeof *addrs) : NULL;
    if (n && !addrs)
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const nh_node_addr *p = &opts->peers[i];
        char why[160];
        if (p->id == 0) {
            rc = nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "node 0 is reserved");
        } else if (p->id >= NH_FIRST_CLIENT_ID) {
            rc = nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, p->id,
                              "peer %u: IDs from %u up are reserved for client peers", p->id,
                              NH_FIRST_CLIENT_ID);
        } else if (!p->address || !nh_address_normalize(p->address, &addrs[i], why, sizeof why)) {
            rc = nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, p->id,
                              "invalid address \"%s\": %s", p->address ? p->address : "", why);
        }
        for (size_t j = 0; j < i && rc == 0; j++) {
            if (opts->peers[j].id == p->id && strcmp(addrs[j].key, addrs[i].key) != 0)
                rc = nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, p->id,
                                  "node %u already in use by \"%s\"", p->id, addrs[j].dial);
            else if (opts->peers[j].id != p->id && !strcmp(addrs[j].key, addrs[i].key))
                rc = nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, p->id,
                                  "address \"%s\" already in use by node %u", addrs[i].key,
                                  opts->peers[j].id);
        }
    }
    nh_inbound *ib = rc == 0 ? calloc(1, sizeof *ib) : NULL;
    if (rc == 0 && !ib)
        rc = nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    if (rc != 0) {
        free(addrs);
        return rc;
    }
    ib->srv = srv;
    ib->rt = srv->rt;
    ib->my_id = my_id;
    ib->next_client_id = NH_FIRST_CLIENT_ID;
    ib->max_clients = opts->max_clients ? opts->max_clients : 10000;
    ib->track_clients = !opts->refuse_clients;
    ib->tls = opts->tls != NULL;
    ib->on_change = opts->on_config_change;
    ib->change_user = opts->change_user;
    ib->refs = 1;
    pthread_mutex_init(&ib->mu, NULL);
    pthread_cond_init(&ib->cv, NULL);
    nh_u64map_init(&ib->known);
    nh_u64map_init(&ib->clients);
    /* This node is always in its own Config (dispatched in process); its address is the one in
     * the peer list, or "self". */
    const char *self_addr = "self";
    for (size_t i = 0; i < n; i++)
        if (opts->peers[i].id == my_id) self_addr = addrs[i].dial;
    ib->self = nh_node_new_local(ib->rt, my_id, self_addr, srv);
    for (size_t i = 0; i < n; i++) {
        uint32_t id = opts->peers[i].id;
        if (id == my_id || nh_u64map_get(&ib->known, id)) continue;
        nh_node *node = nh_node_new_inbound(ib->rt, id, addrs[i].dial);
        if (node && ib->tls) {
            /* What this peer's certificate must prove to take its ID. */
            char uri[40];
            nh_node_set_identity(node, opts->peers[i].identity
                                           ? opts->peers[i].identity
                                           : nh_tls_node_uri(id, uri, sizeof uri));
        }
        if (node) nh_u64map_put(&ib->known, id, node);
    }
    free(addrs);
    build_members(ib);
    srv->inbound = ib;
    rebuild_as(ib, false, true);
    rebuild_as(ib, true, true);
    return 0;
}

void nh_inbound_free(nh_inbound *ib) {
    if (!ib) return;
    pthread_mutex_lock(&ib->mu);
    ib->stopped = true;
    pthread_cond_broadcast(&ib->cv);
    pthread_mutex_unlock(&ib->mu);
    size_t pos = 0;
    void *v;
    while (nh_u64map_next(&ib->known, &pos, NULL, &v))
        nh_node_close_internal(v, true);
    pos = 0;
    while (nh_u64map_next(&ib->clients, &pos, NULL, &v))
        nh_node_close_internal(v, true);
    if (ib->self) nh_node_close_internal(ib->self, true);
    nh_u64map_free(&ib->known);
    nh_u64map_free(&ib->clients);
    ib->self = NULL;
    ib->srv->inbound = NULL;
    ib_unref(ib);
}

/* With TLS: a stream claiming a known peer's ID must prove that peer's identity, and a
 * certificate that proves node N may only claim N (or no ID). True (with code and why) to
 * refuse; the real peer's stream is never touched. */
static bool refuse_unproven(nh_inbound *ib, nh_tp_stream *tp, nh_peer_class cls, uint32_t pid,
                            nh_code *code, char *why, size_t why_len) {
    const nh_identity *proven = nh_tp_stream_identity(tp);
    char claim[48] = "";
    if (cls == NH_MD_ID) snprintf(claim, sizeof claim, "node %u", pid);
    if (proven && proven->node_id && cls == NH_MD_ID && pid != proven->node_id) {
        snprintf(why, why_len, "gorums-node-id claims %s but the certificate proves %s: refused",
                 claim, proven->name);
    } else if (cls == NH_MD_ID && pid != ib->my_id && nh_u64map_get(&ib->known, pid)) {
        nh_node *known = nh_u64map_get(&ib->known, pid);
        const char *want = nh_node_identity(known);
        if (proven && nh_identity_has(proven, want)) return false;
        if (proven)
            snprintf(why, why_len,
                     "gorums-node-id claims known peer %u, whose certificate must prove \"%s\", "
                     "but the certificate proves \"%s\": refused",
                     pid, want, proven->name);
        else
            snprintf(why, why_len,
                     "gorums-node-id claims known peer %u without a certificate proving \"%s\": "
                     "refused",
                     pid, want);
    } else {
        return false;
    }
    *code = NH_UNAUTHENTICATED;
    return true; /* the caller logs why */
}

int nh_inbound_accept(nh_inbound *ib, nh_tp_stream *tp, const nh_md_view *md, size_t n,
                      nh_node **peer, nh_peer_kind *kind, uint32_t *id, nh_code *code, char *why,
                      size_t why_len) {
    uint32_t pid = 0;
    nh_peer_class cls = nh_md_classify(md, n, &pid);
    *peer = NULL;
    *kind = NH_PEER_REGULAR;
    *id = 0;
    if (ib->tls && refuse_unproven(ib, tp, cls, pid, code, why, why_len)) return -1;
    if (cls == NH_MD_ID) {
        if (pid == ib->my_id) {
            /* Gorums lets such a stream replace the self node; refuse it instead. */
            *code = NH_PERMISSION_DENIED;
            snprintf(why, why_len, "gorums-node-id %u is this node's own ID", pid);
            return -1;
        }
        nh_node *node = nh_u64map_get(&ib->known, pid);
        if (!node) return 0; /* an unknown ID: served as a regular client (spec 1.6) */
        bool was_connected = node->stream != NULL;
        nh_node_attach(node, tp);
        nh_node_ref(node);
        *peer = node;
        *kind = NH_PEER_KNOWN;
        *id = pid;
        if (!was_connected) rebuild(ib, false); /* a replacement changes nothing in Config */
        nh_log(NH_LOG_INFO, "inbound", "known peer %u connected%s", pid,
               was_connected ? " again (its old stream is replaced)" : "");
        /* The peer is up: our stream to it, if down, redials now rather than after backoff. */
        nh_node *out = ib->srv->outbound ? nh_config_find(ib->srv->outbound, pid) : NULL;
        if (out) nh_node_reconnect_now(out);
        return 0;
    }
    if (cls != NH_MD_CLIENT || !ib->track_clients) return 0;
    if (nh_u64map_len(&ib->clients) >= ib->max_clients) {
        *code = NH_RESOURCE_EXHAUSTED;
        snprintf(why, why_len, "too many client peers (%zu)", ib->max_clients);
        return -1;
    }
    if (ib->next_client_id > LAST_CLIENT_ID) {
        *code = NH_RESOURCE_EXHAUSTED;
        snprintf(why, why_len, "dynamic client ID space exhausted");
        return -1;
    }
    uint32_t cid = (uint32_t)ib->next_client_id++;
    nh_node *node = nh_node_new_inbound(ib->rt, cid, nh_tp_stream_peer(tp));
    const nh_identity *proven = nh_tp_stream_identity(tp);
    if (node && proven) nh_node_set_identity(node, proven->name);
    if (!node || nh_u64map_put(&ib->clients, cid, node) != 0) {
        if (node) nh_node_close_internal(node, true);
        *code = NH_RESOURCE_EXHAUSTED;
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    nh_node_attach(node, tp);
    nh_node_ref(node);
    *peer = node;
    *kind = NH_PEER_CLIENT;
    *id = cid;
    rebuild(ib, true);
    nh_log(NH_LOG_INFO, "inbound", "client peer %u connected from %s%s%s", cid,
           nh_tp_stream_peer(tp), proven ? " as " : "", proven ? proven->name : "");
    return 0;
}

void nh_inbound_closed(nh_inbound *ib, nh_node *peer, nh_peer_kind kind, nh_tp_stream *tp) {
    if (!nh_node_detach(peer, tp)) return; /* a replaced stream ended: nothing changes */
    if (kind == NH_PEER_KNOWN) {
        /* Better than Gorums: if an older stream of the same peer is still open (it was
         * replaced by the one that just ended), the peer falls back to it instead of leaving
         * Config until it happens to reconnect. The newest such stream is first in the list. */
        for (nh_server_stream *st = ib->srv->streams; st; st = st->next) {
            if (st->peer == peer && st->tp && st->tp != tp) {
                nh_node_attach(peer, st->tp);
                nh_log(NH_LOG_INFO, "inbound", "known peer %u: back on its earlier stream",
                       peer->id);
                return; /* Config did not change: no rebuild, no notification */
            }
        }
    }
    if (kind == NH_PEER_CLIENT) {
        nh_u64map_del(&ib->clients, peer->id);
        nh_log(NH_LOG_INFO, "inbound", "client peer %u left", peer->id);
        nh_node_close_internal(peer, true); /* the manager's reference */
        rebuild(ib, true);
    } else {
        nh_log(NH_LOG_INFO, "inbound", "known peer %u left", peer->id);
        rebuild(ib, false);
    }
}

nh_config *nh_inbound_snapshot(nh_inbound *ib, bool client) {
    pthread_mutex_lock(&ib->mu);
    nh_config *c = nh_config_ref(client ? ib->client_config : ib->config);
    pthread_mutex_unlock(&ib->mu);
    return c;
}

nh_config *nh_inbound_members(nh_inbound *ib) {
    /* Immutable once built, and released only with the manager. */
    return ib->members ? nh_config_ref(ib->members) : nh_config_from_nodes(ib->rt, NULL, 0, true);
}

int nh_inbound_wait(nh_inbound *ib, bool client, nh_config_cond_fn cond, void *user,
                    uint32_t timeout_ms, nh_error *err) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&ib->mu);
    ib->refs++;
    int rc;
    for (;;) {
        if (cond(client ? ib->client_config : ib->config, user)) {
            rc = 0;
            nh_error_clear(err);
            break;
        }
        if (ib->stopped) {
            rc = nh_error_set(err, NH_UNAVAILABLE, NH_ERR_CLOSED, 0, "server stopped");
            break;
        }
        uint64_t gen = ib->gen;
        int w = 0;
        while (gen == ib->gen && !ib->stopped && w == 0)
            w = timeout_ms ? pthread_cond_timedwait(&ib->cv, &ib->mu, &deadline)
                           : pthread_cond_wait(&ib->cv, &ib->mu);
        if (w == ETIMEDOUT && gen == ib->gen) {
            rc = nh_error_set(err, NH_DEADLINE_EXCEEDED, NH_ERR_TIMEOUT, 0,
                              "the %s did not meet the condition within %u ms",
                              client ? "ClientConfig" : "Config", timeout_ms);
            break;
        }
    }
    pthread_mutex_unlock(&ib->mu);
    ib_unref(ib);
    return rc;
}
