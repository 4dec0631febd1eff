/* storage: catch-up (anti-entropy). When a peer joins this node's Config (this node started, the
 * peer restarted, or a partition between them healed), this node pulls every entry the peer
 * holds, page by page in key order (proto.Storage.Pull), and keeps the newer versions: a node that
 * was down or cut off gets every write it missed, without anyone keeping a log. One pull per peer
 * at a time; a peer that leaves and comes back meanwhile gets it restarted from the first key
 * (entries before the cursor may have changed). A failed page is retried after a growing pause
 * while the peer is in Config, unless the error is permanent().
 *
 * Recovery (memory store only): a node without data_dir that starts has lost what it acknowledged
 * before, so its empty answers must not count in read quorums. Until it caught up from
 * min(n-1, n/2+1) of its n-1 peers (so that they meet every majority), it refuses ReadRPC/ReadQC
 * with UNAVAILABLE; it takes writes and serves Pull meanwhile. A disk store keeps what it
 * acknowledged and serves at once: it is one stale replica of a majority, never the only source.
 * A reload hands the peers of Config caught up with and the recovery state to the new generation
 * (storage.c), which pulls from every other peer of its Config (unfinished pulls start over). */
#include "storage_impl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_MIN_MS 500
#define RETRY_MAX_MS 8000

/* One anti-entropy pull from a peer. */
typedef struct pull {
    storage *s;
    uint32_t peer;
    char *after; /* the last key pulled */
    size_t pages, entries;
    uint32_t retry_ms; /* pause before the next try of a failed page (0: none failed) */
    bool restart;      /* the peer left and came back: start again from the first key */
    int64_t started_ns;
    struct pull *next;
} pull;

static void page(void *arg);

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void pull_end(pull *p) {
    pull **pp = &p->s->pulls;
    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
    free(p->after);
    free(p);
}

static bool has_id(const uint32_t *ids, size_t n, uint32_t id) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

size_t storage_recovery_needed(const storage *s) {
    size_t others = s->n_members > 0 ? s->n_members - 1 : 0;
    size_t majority = s->n_members / 2 + 1;
    return others < majority ? others : majority;
}

static void caught_up(storage *s, uint32_t peer) {
    if (!s->recovering || has_id(s->caught_up, s->n_caught_up, peer)) return;
    uint32_t *ids = realloc(s->caught_up, (s->n_caught_up + 1) * sizeof *ids);
    if (!ids) return;
    s->caught_up = ids;
    ids[s->n_caught_up++] = peer;
    size_t need = storage_recovery_needed(s);
    if (s->n_caught_up >= need) {
        s->recovering = false;
        nh_logf(NH_LOG_INFO, "storage",
                "recovered: caught up from %zu of %zu peers since the start; reads are served",
                s->n_caught_up, s->n_members - 1);
    } else {
        nh_logf(NH_LOG_INFO, "storage",
                "recovering: caught up from %zu of the %zu peers needed before reads are served",
                s->n_caught_up, need);
    }
}

/* Errors after which asking again cannot help: the peer refused the request, or its reply does
 * not decode (the stubs' local INTERNAL). (UNIMPLEMENTED is not one: a peer that is starting
 * answers it until its plugins registered their methods; the pause grows to 8 s.) */
static bool permanent(const nh_error *e) {
    nh_code c = e->code;
    return c == NH_INVALID_ARGUMENT || c == NH_PERMISSION_DENIED || c == NH_UNAUTHENTICATED ||
           c == NH_FAILED_PRECONDITION || (c == NH_INTERNAL && e->kind == NH_ERR_LOCAL);
}

static void page_failed(pull *p, const nh_error *e) {
    if (permanent(e)) {
        nh_logf(NH_LOG_WARN, "storage", "catch-up from node %u given up: %s", p->peer, e->message);
        pull_end(p);
        return;
    }
    p->retry_ms = p->retry_ms ? p->retry_ms * 2 : RETRY_MIN_MS;
    if (p->retry_ms > RETRY_MAX_MS) p->retry_ms = RETRY_MAX_MS;
    nh_logf(NH_LOG_INFO, "storage", "catch-up from node %u: page %zu failed (%s); again in %u ms",
            p->peer, p->pages + 1, e->message, p->retry_ms);
    if (nh_timer_start(p->s->rt, p->retry_ms, 0, page, p, NULL, NULL) != 0) pull_end(p);
}

static void page_done(const Proto__PullResponse *resp, const nh_reply *r, void *user) {
    pull *p = user;
    storage *s = p->s;
    if (!resp) {
        page_failed(p, &r->err);
        return;
    }
    p->pages++;
    p->retry_ms = 0;
    for (size_t i = 0; i < resp->n_entries; i++)
        storage_apply(s, resp->entries[i], NULL, NULL); /* older versions are ignored */
    p->entries += resp->n_entries;
    /* After this page's last key, or from the first key again (the peer left and came back). */
    const char *next = p->restart                          ? ""
                       : resp->more && resp->n_entries > 0 ? resp->entries[resp->n_entries - 1]->key
                                                           : NULL;
    if (!next) {
        nh_logf(NH_LOG_INFO, "storage",
                "caught up from node %u: %zu entries in %zu page(s), %.1f ms", p->peer, p->entries,
                p->pages, (double)(mono_ns() - p->started_ns) / 1e6);
        caught_up(s, p->peer);
        pull_end(p);
        return;
    }
    char *after = strdup(next);
    if (!after) {
        page_failed(p, &(nh_error){.code = NH_RESOURCE_EXHAUSTED, .message = "out of memory"});
        return;
    }
    p->restart = false;
    free(p->after);
    p->after = after;
    page(p);
}

/* Asks the peer for the page after p->after; ends the pull when the plugin retired (the new
 * generation restarts it) or the peer left Config. Also the retry timer's function. */
static void page(void *arg) {
    pull *p = arg;
    storage *s = p->s;
    nh_config *cfg = nh_server_config(s->srv);
    nh_node *node = s->retired ? NULL : nh_config_find(cfg, p->peer);
    Proto__PullRequest req = PROTO__PULL_REQUEST__INIT;
    req.after = p->after;
    req.limit = s->pull_page;
    nh_call_opts o = {.timeout_ms = s->nested_timeout_ms};
    nh_error err;
    int rc = node ? proto_storage_pull_async(node, &req, &o, page_done, p, &err) : -1;
    nh_config_unref(cfg);
    if (rc == 0) return;
    const char *why = s->retired ? "plugin retired" : node ? err.message : "peer left Config";
    nh_logf(NH_LOG_INFO, "storage", "catch-up from node %u stopped after %zu entries (%s)", p->peer,
            p->entries, why);
    pull_end(p);
}

static void start_pull(storage *s, uint32_t peer) {
    for (pull *p = s->pulls; p; p = p->next)
        if (p->peer == peer) {
            p->restart = true; /* it came back while its pull runs: start over */
            return;
        }
    pull *p = malloc(sizeof *p); /* its first page: after NULL, from the first key */
    if (!p) {
        nh_logf(NH_LOG_ERROR, "storage", "catch-up from node %u: out of memory", peer);
        return;
    }
    *p = (pull){.s = s, .peer = peer, .started_ns = mono_ns(), .next = s->pulls};
    s->pulls = p;
    page(p);
}

void storage_config_changed(void *state, nh_config *cfg, bool client_config) {
    storage *s = state;
    if (client_config || s->retired) return;
    size_t n = nh_config_size(cfg);
    uint32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) return;
    nh_config_ids(cfg, ids, n);
    for (size_t i = 0; i < n; i++)
        if (ids[i] != s->node_id && !has_id(s->config_ids, s->n_config_ids, ids[i]))
            start_pull(s, ids[i]);
    free(s->config_ids);
    s->config_ids = ids;
    s->n_config_ids = n;
}

uint32_t *storage_caught_up_config(const storage *s, size_t *n) {
    uint32_t *ids = malloc((s->n_config_ids + 1) * sizeof *ids);
    *n = 0;
    for (size_t i = 0; ids && i < s->n_config_ids; i++) {
        const pull *p = s->pulls;
        while (p && p->peer != s->config_ids[i])
            p = p->next;
        if (!p) ids[(*n)++] = s->config_ids[i];
    }
    return ids;
}

void storage_catchup_free(storage *s) {
    while (s->pulls)
        pull_end(s->pulls);
    free(s->config_ids);
    free(s->caught_up);
}
