/* storage: catch-up (anti-entropy). When a peer joins this node's Config (this node started,
 * the peer restarted, or a partition between them healed), this node pulls every entry the peer
 * holds, page by page in key order (proto.Storage.Pull), and keeps the newer versions. A node
 * that was down or cut off thus gets every write it missed from each peer it reconnects to,
 * without anyone keeping a log. Pulls run on the owner thread, one per peer at a time; a page
 * that fails is retried after a pause while the peer is still in Config. Reads never depend on
 * it: a node catching up is one replica of a majority, never the only source. */
#include "storage_impl.h"

#include <stdlib.h>
#include <string.h>

#define RETRY_MS 500

static void page(pull *p);

static void pull_end(pull *p) {
    storage *s = p->s;
    for (pull **pp = &s->pulls; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    free(p->after);
    free(p);
}

static bool in_config(const storage *s, uint32_t id) {
    for (size_t i = 0; i < s->n_config_ids; i++)
        if (s->config_ids[i] == id) return true;
    return false;
}

static void retry(void *arg) {
    pull *p = arg;
    if (p->s->retired || !in_config(p->s, p->peer)) {
        nh_logf(NH_LOG_INFO, "storage", "catch-up from node %u stopped after %zu entries (%s)",
                p->peer, p->entries, p->s->retired ? "plugin retired" : "peer left Config");
        pull_end(p);
        return;
    }
    page(p);
}

static void page_done(const nh_reply *r, void *user) {
    pull *p = user;
    storage *s = p->s;
    Proto__PullResponse *resp =
        r->err.code == NH_OK ? proto__pull_response__unpack(NULL, r->len, r->payload) : NULL;
    if (!resp) {
        nh_logf(NH_LOG_WARN, "storage", "catch-up from node %u: page %zu failed: %s", p->peer,
                p->pages + 1, r->err.code == NH_OK ? "the reply does not decode" : r->err.message);
        nh_error err;
        if (nh_timer_start(s->rt, RETRY_MS, 0, retry, p, NULL, &err) != 0) pull_end(p);
        return;
    }
    p->pages++;
    for (size_t i = 0; i < resp->n_entries; i++) {
        p->entries++;
        if (storage_apply(s, resp->entries[i]) == ST_NEW) p->newer++;
    }
    bool more = resp->more && resp->n_entries > 0;
    if (more) {
        char *after = strdup(resp->entries[resp->n_entries - 1]->key);
        if (after) {
            free(p->after);
            p->after = after;
        } else {
            more = false;
        }
    }
    proto__pull_response__free_unpacked(resp, NULL);
    if (more && !s->retired) {
        page(p);
        return;
    }
    if (p->newer && s->store) st_sync(s->store); /* not acknowledged to anyone: one sync */
    nh_logf(NH_LOG_INFO, "storage",
            "caught up from node %u: %zu entries in %zu page(s), %zu newer here, %.1f ms", p->peer,
            p->entries, p->pages, p->newer, (double)(storage_mono_ns() - p->started_ns) / 1e6);
    pull_end(p);
}

static void page(pull *p) {
    storage *s = p->s;
    nh_config *cfg = nh_server_config(s->srv);
    nh_node *node = nh_config_find(cfg, p->peer);
    Proto__PullRequest req = PROTO__PULL_REQUEST__INIT;
    req.after = p->after;
    req.limit = s->pull_page;
    nh_buf bytes;
    nh_error err;
    int rc = -1;
    if (node && nh_msg_pack(&req.base, &bytes) == 0) {
        nh_call_opts o = {.timeout_ms = s->nested_timeout_ms};
        rc =
            nh_rpc_async(node, "proto.Storage.Pull", bytes.data, bytes.len, &o, page_done, p, &err);
        nh_buf_free(&bytes);
    }
    nh_config_unref(cfg);
    if (rc != 0) {
        nh_logf(NH_LOG_INFO, "storage", "catch-up from node %u stopped: %s", p->peer,
                node ? err.message : "the peer is not in Config");
        pull_end(p);
    }
}

static void start_pull(storage *s, uint32_t peer) {
    for (pull *p = s->pulls; p; p = p->next)
        if (p->peer == peer) return; /* one at a time per peer */
    pull *p = calloc(1, sizeof *p);
    if (!p || !(p->after = strdup(""))) {
        free(p);
        nh_logf(NH_LOG_ERROR, "storage", "catch-up from node %u: out of memory", peer);
        return;
    }
    p->s = s;
    p->peer = peer;
    p->started_ns = storage_mono_ns();
    p->next = s->pulls;
    s->pulls = p;
    page(p);
}

void storage_config_changed(void *state, nh_config *cfg, bool client_config) {
    storage *s = state;
    if (client_config || s->retired) return;
    size_t n = nh_config_size(cfg);
    uint32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) return;
    size_t got = nh_config_ids(cfg, ids, n);
    if (got > n) got = n;
    /* A reload's first view is the Config the old generation already caught up with. */
    bool pull_new = s->config_seen || s->generation == 1;
    uint32_t *old = s->config_ids;
    size_t n_old = s->n_config_ids;
    s->config_ids = ids;
    s->n_config_ids = got;
    s->config_seen = true;
    for (size_t i = 0; pull_new && i < got; i++) {
        bool was = false;
        for (size_t j = 0; j < n_old; j++)
            if (old[j] == ids[i]) was = true;
        if (ids[i] != s->node_id && !was) start_pull(s, ids[i]);
    }
    free(old);
}

void storage_catchup_retire(storage *s) {
    s->retired = true;
}

void storage_catchup_free(storage *s) {
    while (s->pulls)
        pull_end(s->pulls);
    free(s->config_ids);
}

/* ---- the server side: one page ------------------------------------------------------------ */

void storage_h_pull(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    const Proto__PullRequest *req = (const Proto__PullRequest *)request;
    st_store *st = storage_store(state, ctx);
    if (!st) return;
    size_t limit = req->limit ? req->limit : 500;
    if (limit > 10000) limit = 10000;
    entry_list l;
    bool more = false;
    /* ~1 MiB of keys and values a page: far below the 4 MiB message limit. */
    if (entry_list_fill(&l, st, req->after, limit, 1u << 20, &more) == 0) {
        Proto__PullResponse resp = PROTO__PULL_RESPONSE__INIT;
        resp.n_entries = l.n;
        resp.entries = l.ptrs;
        resp.more = more;
        if (nh_ctx_reply_msg(ctx, &resp.base) != 0)
            nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
    }
    entry_list_free(&l);
}
