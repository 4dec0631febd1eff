/* The inbound manager (spec section 4): which known peers and which client peers are
 * connected right now, as two live configurations.
 *
 * - Known peers come from the server's peer list and are created up front, without a stream.
 *   A stream whose gorums-node-id names one attaches to it; a reconnect replaces the old stream
 *   (its pending calls fail); when the stream ends the peer stays known and leaves Config.
 * - This node itself is always in Config, as a local node dispatched in process.
 * - A stream announcing ID 0 (or an unparsable ID) is a client peer: it gets the next ID from
 *   2^20 up (never reused) and is removed when its stream ends. One connection (the peer
 *   address gRPC reports) holds at most max_clients_per_connection client-peer streams.
 *
 * Costs what changed (issue 15): the connected sets are kept as ID-sorted maps (util/ordmap:
 * client IDs only grow, so an arrival is an append, a departure a tombstone), and a change
 * costs O(log n) amortised. Config and ClientConfig are immutable, refcounted snapshots built
 * from those maps only when someone asks for one after a change (O(n), at most once per change
 * and request; a snapshot taken earlier stays valid and unchanged). Change notifications (the
 * on_config_change callback, then the waiters) are coalesced: once per configuration at the end
 * of the owner loop's turn in which it changed (nh_tp_loop_at_turn_end), with the snapshot of
 * that moment, and spaced so that they take at most about 5% of the owner thread. So a burst
 * of 10,000 arrivals with nobody asking costs O(n), and with a change callback one O(n)
 * snapshot per turn (1 ms) or per 20 times its cost, whichever is longer.
 *
 * Threads: the owner thread changes the live maps and the cached snapshots only under the
 * manager's mutex, and reads the maps without it. Other threads (nh_server_client_config is
 * "any thread", waits) read under the mutex and, when the cached snapshot is out of date, build
 * it there from the live map themselves (the mutex keeps the map and its nodes alive: a node
 * leaves the map under the mutex before the manager drops its reference). Building under the
 * mutex holds the owner off for the copy (tens of µs at 10,000 clients); posting the build to
 * the owner instead would make every reader wait for the owner's turn, and could not be done
 * from the owner itself. */
#include "config/config_impl.h"
#include "node/node_impl.h"
#include "security/tls_impl.h"
#include "server/server_impl.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/ordmap.h"
#include "util/strcount.h"
#include "util/u64map.h"
#include "wire/metadata.h"

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LAST_CLIENT_ID UINT32_C(0xFFFFFFFE) /* 0xFFFFFFFF is never handed out (Gorums) */

/* Notifications take at most about 1/NOTIFY_SPACING of the owner thread: after one that took t
 * (building the snapshots, the callback, waking the waiters), the next waits NOTIFY_SPACING * t,
 * at most NOTIFY_MAX_GAP_NS. With 10,000 client peers a notification costs a few hundred µs,
 * so a burst of arrivals is notified every few ms instead of every 1 ms turn. */
#define NOTIFY_SPACING    20
#define NOTIFY_MAX_GAP_NS (100 * 1000000LL)

/* The two live configurations, as indices of the arrays below. */
enum { CFG = 0, CLIENTS = 1 };

typedef struct nh_inbound {
    nh_server *srv;
    nh_runtime *rt;
    uint32_t my_id;
    nh_node *self;
    nh_u64map known; /* id -> nh_node*, known peers other than self (owner thread) */
    uint64_t next_client_id;
    size_t max_clients;
    size_t max_per_conn; /* client-peer streams one connection may hold */
    bool track_clients;
    bool tls; /* streams carry verified identities: known peers must prove theirs */
    nh_config_change_fn on_change;
    void *change_user;
    nh_strcount per_conn; /* peer address -> client-peer streams on it (owner thread) */
    nh_tp_turn_hook turn; /* the coalesced notification (owner thread) */
    bool notify[2];       /* changed since the last notification (owner thread) */
    int64_t quiet_until;  /* no notification before (nh_now_ns; owner thread) */

    pthread_mutex_t mu; /* guards the fields below (the owner reads `live` without it) */
    pthread_cond_t cv;
    int refs;     /* the server + threads waiting */
    int waiters;  /* threads in nh_inbound_wait */
    uint64_t gen; /* counts notifications: waiters look again when it moves */
    bool stopped;
    /* [CFG]: self + connected known peers; [CLIENTS]: connected client peers. Each node in it
     * is alive (held by the manager) while it is in the map. */
    nh_ordmap live[2];
    nh_config *snap[2]; /* the latest snapshot built of live[i]; never NULL after construction */
    bool dirty[2];      /* live[i] changed since snap[i] was built */
    /* What waiters check: the snapshot of the last notification, published after the change
     * callback saw it (so a wait that returns comes after the callback). NULL when no one
     * needed it at the last change (no callback, no waiter): a waiter then takes the current
     * one. */
    nh_config *pub[2];
    nh_config *members; /* immutable: self + every known peer, sorted by ID */
} nh_inbound;

static void ib_unref(nh_inbound *ib) {
    pthread_mutex_lock(&ib->mu);
    int left = --ib->refs;
    pthread_mutex_unlock(&ib->mu);
    if (left) return;
    for (int w = CFG; w <= CLIENTS; w++) {
        nh_config_unref(ib->snap[w]);
        nh_config_unref(ib->pub[w]);
    }
    nh_config_unref(ib->members);
    nh_ordmap_free(&ib->live[CFG]);
    nh_ordmap_free(&ib->live[CLIENTS]);
    pthread_cond_destroy(&ib->cv);
    pthread_mutex_destroy(&ib->mu);
    free(ib);
}

static int by_id(const void *a, const void *b) {
    uint32_t x = nh_node_id(*(nh_node *const *)a), y = nh_node_id(*(nh_node *const *)b);
    return x < y ? -1 : x > y;
}

/* With mu held: the current snapshot of live[w], built now when the map changed since the last
 * one (O(n): one reference per node). The snapshot it replaces goes to *stale, for the caller to
 * release after unlocking (it may hold the last reference to nodes that left). Out of memory:
 * the previous snapshot, logged. Any thread. */
static nh_config *current_locked(nh_inbound *ib, int w, nh_config **stale) {
    *stale = NULL;
    if (!ib->dirty[w]) return ib->snap[w];
    nh_ordmap *m = &ib->live[w];
    nh_config *c = nh_config_alloc(ib->rt, nh_ordmap_len(m), true);
    if (!c) {
        nh_log(NH_LOG_ERROR, "inbound", "out of memory building a configuration");
        return ib->snap[w];
    }
    size_t pos = 0, k = 0;
    void *v;
    while (nh_ordmap_next(m, &pos, NULL, &v)) {
        c->nodes[k++] = v;
        nh_node_ref(v);
    }
    *stale = ib->snap[w];
    ib->snap[w] = c;
    ib->dirty[w] = false;
    return c;
}

/* Owner thread, at the end of a turn in which a configuration changed: the change callback
 * once per changed configuration with its snapshot of now, then that snapshot is published to
 * the waiters and they look again. Nobody to tell (no callback, no waiter): nothing is built. */
static void on_turn_end(nh_tp_turn_hook *h) {
    nh_inbound *ib = (nh_inbound *)(void *)((char *)h - offsetof(nh_inbound, turn));
    int64_t start = nh_now_ns();
    if (start < ib->quiet_until) { /* the last one was recent and costly: a later turn */
        nh_tp_loop_at_turn_end(ib->rt->loop, &ib->turn);
        return;
    }
    nh_config *cur[2] = {NULL, NULL}, *garbage[4] = {NULL, NULL, NULL, NULL};
    bool changed[2] = {ib->notify[CFG], ib->notify[CLIENTS]};
    ib->notify[CFG] = ib->notify[CLIENTS] = false;
    pthread_mutex_lock(&ib->mu);
    for (int w = CFG; w <= CLIENTS; w++) {
        if (!changed[w]) continue;
        if (ib->on_change || ib->waiters)
            cur[w] = nh_config_ref(current_locked(ib, w, &garbage[w]));
    }
    pthread_mutex_unlock(&ib->mu);
    for (int w = CFG; w <= CLIENTS; w++) {
        nh_config_unref(garbage[w]);
        /* Outside the lock; a change the callback causes is notified next turn. */
        if (cur[w] && ib->on_change) ib->on_change(cur[w], w == CLIENTS, ib->change_user);
    }
    pthread_mutex_lock(&ib->mu);
    for (int w = CFG; w <= CLIENTS; w++) {
        if (!changed[w]) continue;
        garbage[2 + w] = ib->pub[w];
        ib->pub[w] = cur[w]; /* the reference moves over; NULL: stale, see pub */
    }
    ib->gen++;
    pthread_cond_broadcast(&ib->cv);
    pthread_mutex_unlock(&ib->mu);
    nh_config_unref(garbage[2]);
    nh_config_unref(garbage[3]);
    int64_t gap = (nh_now_ns() - start) * NOTIFY_SPACING;
    ib->quiet_until = start + (gap < NOTIFY_MAX_GAP_NS ? gap : NOTIFY_MAX_GAP_NS);
}

/* Owner thread: puts (node not NULL) or removes node id in live[w] and marks the change, to be
 * notified at the end of the turn. Returns 0, or -1 when out of memory (nothing changed). */
static int live_set(nh_inbound *ib, int w, uint32_t id, nh_node *node) {
    pthread_mutex_lock(&ib->mu);
    int rc = 0;
    if (node)
        rc = nh_ordmap_put(&ib->live[w], id, node);
    else
        nh_ordmap_del(&ib->live[w], id);
    if (rc == 0) ib->dirty[w] = true;
    pthread_mutex_unlock(&ib->mu);
    if (rc != 0) return -1;
    ib->notify[w] = true;
    nh_tp_loop_at_turn_end(ib->rt->loop, &ib->turn);
    return 0;
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
    ib->max_per_conn = opts->max_clients_per_connection ? opts->max_clients_per_connection
                                                        : NH_DEFAULT_MAX_CLIENTS_PER_CONNECTION;
    ib->track_clients = !opts->refuse_clients;
    ib->tls = opts->tls != NULL;
    ib->on_change = opts->on_config_change;
    ib->change_user = opts->change_user;
    ib->refs = 1;
    ib->turn.fn = on_turn_end;
    pthread_mutex_init(&ib->mu, NULL);
    pthread_cond_init(&ib->cv, NULL);
    nh_u64map_init(&ib->known);
    nh_strcount_init(&ib->per_conn);
    nh_ordmap_init(&ib->live[CFG]);
    nh_ordmap_init(&ib->live[CLIENTS]);
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
    /* The first snapshots: self alone, and no client. Config is notified (at the end of this
     * turn); an empty snapshot at construction is not, as in Gorums. */
    if (ib->self && nh_ordmap_put(&ib->live[CFG], my_id, ib->self) == 0) {
        ib->notify[CFG] = true;
        nh_tp_loop_at_turn_end(ib->rt->loop, &ib->turn);
    }
    for (int w = CFG; w <= CLIENTS; w++) {
        nh_config *stale;
        ib->dirty[w] = true;
        current_locked(ib, w, &stale); /* nobody else sees ib yet */
        if (!ib->snap[w]) ib->snap[w] = nh_config_from_nodes(ib->rt, NULL, 0, true);
        ib->pub[w] = nh_config_ref(ib->snap[w]);
    }
    return 0;
}

void nh_inbound_free(nh_inbound *ib) {
    if (!ib) return;
    nh_tp_loop_cancel_turn_end(ib->rt->loop, &ib->turn);
    /* The last snapshots are built now (waiters still look at them); then the live maps are
     * emptied, before their nodes are closed. */
    nh_config *stale[4];
    pthread_mutex_lock(&ib->mu);
    for (int w = CFG; w <= CLIENTS; w++) {
        nh_config *c = nh_config_ref(current_locked(ib, w, &stale[w]));
        stale[2 + w] = ib->pub[w];
        ib->pub[w] = c;
        ib->dirty[w] = false; /* even out of memory: the live maps go now */
    }
    nh_ordmap clients = ib->live[CLIENTS];
    nh_ordmap_init(&ib->live[CLIENTS]);
    nh_ordmap_free(&ib->live[CFG]);
    ib->stopped = true;
    pthread_cond_broadcast(&ib->cv);
    pthread_mutex_unlock(&ib->mu);
    for (int i = 0; i < 4; i++)
        nh_config_unref(stale[i]);
    size_t pos = 0;
    void *v;
    while (nh_u64map_next(&ib->known, &pos, NULL, &v))
        nh_node_close_internal(v, true);
    pos = 0;
    while (nh_ordmap_next(&clients, &pos, NULL, &v))
        nh_node_close_internal(v, true);
    if (ib->self) nh_node_close_internal(ib->self, true);
    nh_u64map_free(&ib->known);
    nh_ordmap_free(&clients);
    nh_strcount_free(&ib->per_conn);
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
        /* A replacement changes nothing in Config. */
        if (!was_connected && live_set(ib, CFG, pid, node) != 0)
            nh_log(NH_LOG_ERROR, "inbound", "out of memory: Config lacks peer %u", pid);
        nh_log(NH_LOG_INFO, "inbound", "known peer %u connected%s", pid,
               was_connected ? " again (its old stream is replaced)" : "");
        /* The peer is up: our stream to it, if down, redials now rather than after backoff. */
        nh_node *out = ib->srv->outbound ? nh_config_find(ib->srv->outbound, pid) : NULL;
        if (out) nh_node_reconnect_now(out);
        return 0;
    }
    if (cls != NH_MD_CLIENT || !ib->track_clients) return 0;
    /* Fair admission: one connection (a peer address) cannot take every client slot. */
    const char *conn = nh_tp_stream_peer(tp);
    if (nh_strcount_get(&ib->per_conn, conn) >= ib->max_per_conn) {
        *code = NH_RESOURCE_EXHAUSTED;
        snprintf(why, why_len,
                 "too many client-peer streams on connection %s: at most %zu per connection",
                 *conn ? conn : "(unknown address)", ib->max_per_conn);
        return -1;
    }
    if (nh_ordmap_len(&ib->live[CLIENTS]) >= ib->max_clients) {
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
    nh_node *node = nh_node_new_inbound(ib->rt, cid, conn);
    const nh_identity *proven = nh_tp_stream_identity(tp);
    if (node && proven) nh_node_set_identity(node, proven->name);
    bool counted = node && nh_strcount_inc(&ib->per_conn, conn) != 0;
    if (!counted || live_set(ib, CLIENTS, cid, node) != 0) {
        if (counted) nh_strcount_dec(&ib->per_conn, conn);
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
    nh_log(NH_LOG_INFO, "inbound", "client peer %u connected from %s%s%s", cid, conn,
           proven ? " as " : "", proven ? proven->name : "");
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
        /* Out of the live map (under the lock) before the manager's reference goes. */
        live_set(ib, CLIENTS, peer->id, NULL);
        nh_strcount_dec(&ib->per_conn, nh_node_address(peer));
        nh_log(NH_LOG_INFO, "inbound", "client peer %u left", peer->id);
        nh_node_close_internal(peer, true); /* the manager's reference */
    } else {
        nh_log(NH_LOG_INFO, "inbound", "known peer %u left", peer->id);
        live_set(ib, CFG, peer->id, NULL);
    }
}

nh_config *nh_inbound_snapshot(nh_inbound *ib, bool client) {
    nh_config *stale;
    pthread_mutex_lock(&ib->mu);
    nh_config *c = nh_config_ref(current_locked(ib, client ? CLIENTS : CFG, &stale));
    pthread_mutex_unlock(&ib->mu);
    nh_config_unref(stale);
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
    int which = client ? CLIENTS : CFG;
    pthread_mutex_lock(&ib->mu);
    ib->refs++;
    ib->waiters++;
    int rc;
    for (;;) {
        /* The condition is checked on the published snapshot (the last one notified), outside
         * the lock; a notification after gen was read makes the loop look again. */
        uint64_t gen = ib->gen;
        bool stopped = ib->stopped;
        nh_config *stale = NULL;
        if (!ib->pub[which]) /* nobody needed it at the last change: the current one */
            ib->pub[which] = nh_config_ref(current_locked(ib, which, &stale));
        nh_config *cur = nh_config_ref(ib->pub[which]);
        pthread_mutex_unlock(&ib->mu);
        nh_config_unref(stale);
        bool met = cond(cur, user);
        nh_config_unref(cur);
        pthread_mutex_lock(&ib->mu);
        if (met) {
            rc = 0;
            nh_error_clear(err);
            break;
        }
        if (stopped) {
            rc = nh_error_set(err, NH_UNAVAILABLE, NH_ERR_CLOSED, 0, "server stopped");
            break;
        }
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
    ib->waiters--;
    pthread_mutex_unlock(&ib->mu);
    ib_unref(ib);
    return rc;
}
