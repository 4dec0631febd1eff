/* The node registry shared by a family of configurations (Gorums' manager): address
 * normalization, ID and address conflict rules (spec 5.1), opening nodes, closing them when the
 * last configuration goes.
 *
 * Concurrency: validation and reservation happen under the registry mutex; nodes are opened
 * outside it (nh_node_open waits for the owner thread). A new ID is reserved (an entry with
 * node NULL) before its node is opened, so two concurrent extends never open the same ID twice:
 * the second waits for the first (condition variable) and then reuses its node, or, if the
 * first failed and dropped its reservation, validates again and opens the node itself. */
#include "config/config_impl.h"
#include "node/node_impl.h"
#include "wire/metadata.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- address normalization ---------------------------------------------------------------- */

/* A host name's form (RFC 1123, plus '_'): labels of 1 to 63 letters, digits, '-' and '_', not
 * starting or ending with '-', 253 characters at most; one trailing dot (a fully qualified
 * name) is allowed. NULL when the name is well formed, else why not. */
static const char *host_name_problem(const char *h, size_t len) {
    if (len > 0 && h[len - 1] == '.') len--;
    if (len == 0 || len > 253) return "invalid host name: 1 to 253 characters expected";
    bool all_digits = true;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? h[i] : '.';
        if (c == '.') {
            if (label == 0) return "invalid host name: empty label";
            if (h[i - 1] == '-') return "invalid host name: a label ends with '-'";
            label = 0;
            continue;
        }
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-' && c != '_')
            return "invalid host name: letters, digits, '-', '_' and '.' expected";
        if (c == '-' && label == 0) return "invalid host name: a label starts with '-'";
        if (++label > 63) return "invalid host name: a label is longer than 63 characters";
        if (c < '0' || c > '9') all_digits = false;
    }
    if (all_digits) return "invalid IPv4 address";
    return NULL;
}

/* "localhost" (any case, with or without the trailing dot): the loopback host. */
static bool is_localhost(const char *h, size_t len) {
    if (len > 0 && h[len - 1] == '.') len--;
    return len == 9 && strncasecmp(h, "localhost", 9) == 0;
}

/* An IP literal (IPv4 in any inet_aton form, IPv6 with an optional %zone) written canonically
 * as "a.b.c.d:port" or "[v6]:port". No name lookup. False when host is not a literal. */
static bool ip_literal(const char *host, long port, char out[NH_ADDR_NORM_MAX]) {
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return false;
    bool ok = false;
    char ip[INET6_ADDRSTRLEN];
    if (res->ai_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)res->ai_addr;
        ok = inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip) != NULL;
        if (ok) snprintf(out, NH_ADDR_NORM_MAX, "%s:%ld", ip, port);
    } else if (res->ai_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)res->ai_addr;
        ok = inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip) != NULL;
        if (ok && sin6->sin6_scope_id) {
            char ifname[IF_NAMESIZE];
            if (if_indextoname(sin6->sin6_scope_id, ifname))
                snprintf(out, NH_ADDR_NORM_MAX, "[%s%%%s]:%ld", ip, ifname, port);
            else
                snprintf(out, NH_ADDR_NORM_MAX, "[%s%%%u]:%ld", ip, (unsigned)sin6->sin6_scope_id,
                         port);
        } else if (ok) {
            snprintf(out, NH_ADDR_NORM_MAX, "[%s]:%ld", ip, port);
        }
    }
    freeaddrinfo(res);
    return ok;
}

bool nh_address_normalize(const char *addr, nh_addr_norm *out, char *why, size_t why_len) {
    if (!addr || !*addr) {
        snprintf(why, why_len, "missing address");
        return false;
    }
    const char *colon = strrchr(addr, ':');
    if (!colon) {
        snprintf(why, why_len, "missing port in address");
        return false;
    }
    const char *hs = addr, *he = colon;
    bool bracketed = *hs == '[';
    if (bracketed) {
        if (he - hs < 2 || he[-1] != ']') {
            snprintf(why, why_len, "missing ']' in address");
            return false;
        }
        hs++;
        he--;
    } else if (memchr(hs, ':', (size_t)(he - hs))) {
        snprintf(why, why_len, "too many colons in address");
        return false;
    }
    if (he == hs) {
        snprintf(why, why_len, "missing host in address");
        return false;
    }
    const char *port_s = colon + 1;
    size_t plen = strlen(port_s);
    long port = 0;
    bool port_ok = plen > 0 && plen <= 5;
    for (size_t i = 0; port_ok && i < plen; i++) {
        if (port_s[i] < '0' || port_s[i] > '9')
            port_ok = false;
        else
            port = port * 10 + (port_s[i] - '0');
    }
    if (!port_ok || port < 1 || port > 65535) {
        snprintf(why, why_len, "invalid port \"%s\": expected 1 to 65535", port_s);
        return false;
    }
    char host[NH_ADDR_NORM_MAX - 8]; /* room left for ":port" */
    size_t hlen = (size_t)(he - hs);
    if (hlen >= sizeof host) {
        snprintf(why, why_len, "invalid host name: 1 to 253 characters expected");
        return false;
    }
    memcpy(host, hs, hlen);
    host[hlen] = '\0';
    if (ip_literal(host, port, out->dial)) {
        memcpy(out->key, out->dial, sizeof out->key);
        return true;
    }
    if (bracketed) {
        snprintf(why, why_len, "invalid IPv6 address");
        return false;
    }
    const char *problem = host_name_problem(host, hlen);
    if (problem) {
        snprintf(why, why_len, "%s", problem);
        return false;
    }
    /* localhost is the loopback address, like a literal: dialed and compared as 127.0.0.1
     * (gRPC would try ::1 first, and c-ares 1.18 leaks on that lookup). */
    if (is_localhost(host, hlen)) {
        snprintf(out->dial, sizeof out->dial, "127.0.0.1:%ld", port);
        memcpy(out->key, out->dial, sizeof out->key);
        return true;
    }
    /* A host name: dialed as written (gRPC resolves it at every connect); compared by its
     * lower-case form without the trailing dot. */
    snprintf(out->dial, sizeof out->dial, "%s", addr);
    if (host[hlen - 1] == '.') host[--hlen] = '\0';
    for (size_t i = 0; i < hlen; i++)
        if (host[i] >= 'A' && host[i] <= 'Z') host[i] = (char)(host[i] - 'A' + 'a');
    snprintf(out->key, sizeof out->key, "%s:%ld", host, port);
    return true;
}

/* ---- registry life cycle ------------------------------------------------------------------ */

static void free_md(nh_metadata *md, size_t count) {
    for (size_t i = 0; md && i < count; i++) {
        free((char *)md[i].key);
        free((char *)md[i].value);
    }
    free(md);
}

nh_registry *nh_registry_new(nh_runtime *rt, const nh_config_opts *opts, nh_error *err) {
    for (size_t i = 0; i < opts->metadata_count; i++) {
        const nh_metadata *m = &opts->metadata[i];
        if (!m->key || !nh_md_key_valid(m->key) || !m->value) {
            nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                         "invalid metadata key \"%s\": keys are lower-case letters, digits, "
                         "'-', '_' and '.'",
                         m->key ? m->key : "");
            return NULL;
        }
    }
    nh_registry *r = calloc(1, sizeof *r);
    if (!r) goto oom;
    r->refs = 1;
    r->rt = rt;
    r->backoff_base_ms = opts->backoff_base_ms;
    r->backoff_max_ms = opts->backoff_max_ms;
    r->keepalive_time_ms = opts->keepalive_time_ms;
    r->keepalive_timeout_ms = opts->keepalive_timeout_ms;
    r->tls = nh_tls_ref(opts->tls);
    if (opts->metadata_count) {
        r->md = calloc(opts->metadata_count, sizeof *r->md);
        if (!r->md) goto oom;
        r->md_count = opts->metadata_count;
        for (size_t i = 0; i < opts->metadata_count; i++) {
            r->md[i].key = strdup(opts->metadata[i].key);
            r->md[i].value = strdup(opts->metadata[i].value);
            if (!r->md[i].key || !r->md[i].value) goto oom;
        }
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    return r;
oom:
    if (r) {
        free_md(r->md, r->md_count);
        nh_tls_unref(r->tls);
    }
    free(r);
    nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    return NULL;
}

void nh_registry_ref(nh_registry *r) {
    if (r) __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
}

void nh_registry_unref(nh_registry *r) {
    if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    /* No configuration is left, so no acquire is running: every entry holds an open node. The
     * registry owns the user handles; nh_node_close releases them. */
    for (size_t i = 0; i < r->n; i++) {
        nh_node_close(r->entries[i].node);
        free(r->entries[i].addr);
        free(r->entries[i].key);
    }
    free(r->entries);
    free_md(r->md, r->md_count);
    nh_tls_unref(r->tls);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* ---- lookups (mutex held) ----------------------------------------------------------------- */

/* Index of id, or of where it would be inserted (*found false). */
static size_t entry_search(const nh_registry *r, uint32_t id, bool *found) {
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->entries[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < r->n && r->entries[lo].id == id;
    return lo;
}

static const nh_reg_entry *entry_by_key(const nh_registry *r, const char *key) {
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->entries[i].key, key) == 0) return &r->entries[i];
    return NULL;
}

static int entry_insert(nh_registry *r, uint32_t id, const nh_addr_norm *a) {
    bool found;
    size_t at = entry_search(r, id, &found);
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        nh_reg_entry *e = realloc(r->entries, cap * sizeof *e);
        if (!e) return -1;
        r->entries = e;
        r->cap = cap;
    }
    char *copy = strdup(a->dial), *key = strdup(a->key);
    if (!copy || !key) {
        free(copy);
        free(key);
        return -1;
    }
    memmove(&r->entries[at + 1], &r->entries[at], (r->n - at) * sizeof *r->entries);
    r->entries[at] = (nh_reg_entry){.id = id, .addr = copy, .key = key, .node = NULL};
    r->n++;
    return 0;
}

static void entry_remove(nh_registry *r, uint32_t id) {
    bool found;
    size_t at = entry_search(r, id, &found);
    if (!found) return;
    free(r->entries[at].addr);
    free(r->entries[at].key);
    memmove(&r->entries[at], &r->entries[at + 1], (r->n - at - 1) * sizeof *r->entries);
    r->n--;
}

struct nh_node *nh_registry_find(nh_registry *r, uint32_t id) {
    if (!r) return NULL; /* a node's Config/ClientConfig: no registry to add from */
    pthread_mutex_lock(&r->mu);
    bool found;
    size_t at = entry_search(r, id, &found);
    struct nh_node *node = found ? r->entries[at].node : NULL;
    pthread_mutex_unlock(&r->mu);
    return node;
}

/* ---- acquire ------------------------------------------------------------------------------ */

/* One node the caller asked for. */
typedef struct want {
    uint32_t id;
    const char *given;    /* the address as given */
    const char *identity; /* what its certificate must prove (nh_node_opts.server_identity) */
    bool bad;             /* the address does not normalize; why says why */
    nh_addr_norm addr;
    char why[160];
    bool dup;   /* same ID and address as an earlier want: skipped */
    bool fresh; /* reserved by this acquire, to be opened */
    struct nh_node *node;
} want;

/* Stable sort by ID (insertion sort: stable, and inputs are short). */
static void sort_wants(want *w, size_t n) {
    for (size_t i = 1; i < n; i++) {
        want tmp = w[i];
        size_t j = i;
        while (j > 0 && w[j - 1].id > tmp.id) {
            w[j] = w[j - 1];
            j--;
        }
        w[j] = tmp;
    }
}

static int check_opts(const nh_config_opts *opts, nh_error *err) {
    if (opts->nodes && opts->addresses)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "both a node map and node addresses given; set one");
    if (opts->nodes && opts->count == 0)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "missing required node map");
    if (!opts->nodes && (!opts->addresses || opts->count == 0))
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "missing required node addresses");
    return 0;
}

/*
 * The validation pass, mutex held. Checks each want in order (ascending ID; list order for an
 * address list) against the registry plus the earlier wants, as Gorums processes nodes one by
 * one. Returns 0 when everything is valid, -1 with err set, or 1 when a node it needs is still
 * being opened by another acquire (the caller waits and validates again).
 */
static int validate_locked(nh_registry *r, want *w, size_t n, bool list, bool on_owner,
                           nh_error *err) {
    if (list) {
        uint32_t max = r->n ? r->entries[r->n - 1].id : 0;
        if ((uint64_t)max + n > UINT32_MAX)
            return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                                "no node IDs left after %u", max);
        for (size_t i = 0; i < n; i++)
            w[i].id = max + 1 + (uint32_t)i;
    }
    for (size_t k = 0; k < n; k++) {
        want *x = &w[k];
        x->dup = false;
        if (x->id == 0)
            return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "node 0 is reserved");
        if (x->bad)
            return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, x->id,
                                "invalid address \"%s\": %s", x->given ? x->given : "", x->why);
        /* the ID: given earlier in this request (then validated already), or registered */
        const nh_addr_norm *id_addr = NULL;
        for (size_t j = 0; !id_addr && j < k; j++)
            if (!w[j].dup && w[j].id == x->id) id_addr = &w[j].addr;
        if (id_addr) {
            if (strcmp(id_addr->key, x->addr.key) != 0)
                return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, x->id,
                                    "node %u already in use by \"%s\"", x->id, id_addr->dial);
            x->dup = true;
            continue;
        }
        bool found;
        size_t at = entry_search(r, x->id, &found);
        if (found) {
            if (strcmp(r->entries[at].key, x->addr.key) != 0)
                return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, x->id,
                                    "node %u already in use by \"%s\"", x->id, r->entries[at].addr);
            if (!r->entries[at].node) {
                /* reserved by a concurrent acquire that is opening it */
                if (!on_owner) return 1;
                /* waiting here would block the owner thread that the other acquire needs */
                return nh_error_set(err, NH_ALREADY_EXISTS, NH_ERR_LOCAL, x->id,
                                    "node %u already exists", x->id);
            }
            continue; /* the same node: reused */
        }
        /* a new ID: its address must be free */
        const nh_reg_entry *e = entry_by_key(r, x->addr.key);
        uint32_t owner_id = e ? e->id : 0;
        for (size_t j = 0; !owner_id && j < k; j++)
            if (!w[j].dup && strcmp(w[j].addr.key, x->addr.key) == 0) owner_id = w[j].id;
        if (owner_id)
            return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, x->id,
                                "address \"%s\" already in use by node %u", x->addr.key, owner_id);
    }
    return 0;
}

int nh_registry_acquire(nh_registry *r, const nh_config_opts *opts, struct nh_node ***nodes,
                        size_t *n_out, nh_error *err) {
    *nodes = NULL;
    *n_out = 0;
    if (check_opts(opts, err) != 0) return -1;
    size_t n = opts->count;
    bool list = opts->nodes == NULL;
    want *w = calloc(n, sizeof *w);
    struct nh_node **out = calloc(n, sizeof *out);
    if (!w || !out) {
        free(w);
        free(out);
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        w[i].id = list ? 0 : opts->nodes[i].id;
        w[i].given = list ? opts->addresses[i] : opts->nodes[i].address;
        w[i].identity = list ? "*" : opts->nodes[i].identity;
    }
    if (!list) sort_wants(w, n);
    /* Check the addresses' form (names are not looked up: gRPC resolves them when it dials);
     * errors are reported in order below. */
    for (size_t i = 0; i < n; i++) {
        if (!list && w[i].id == 0) continue; /* reported first: ID 0 sorts first */
        w[i].bad = !nh_address_normalize(w[i].given, &w[i].addr, w[i].why, sizeof w[i].why);
    }

    bool on_owner = nh_runtime_on_owner(r->rt);
    int rc;
    pthread_mutex_lock(&r->mu);
    while ((rc = validate_locked(r, w, n, list, on_owner, err)) == 1)
        pthread_cond_wait(&r->cv, &r->mu);
    if (rc == 0) {
        /* Reserve the new IDs and take references to the registered nodes. */
        for (size_t k = 0; k < n && rc == 0; k++) {
            want *x = &w[k];
            if (x->dup) continue;
            bool found;
            size_t at = entry_search(r, x->id, &found);
            if (found) {
                x->node = r->entries[at].node;
                nh_node_ref(x->node);
            } else if (entry_insert(r, x->id, &x->addr) == 0) {
                x->fresh = true;
            } else {
                rc = nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
            }
        }
    }
    pthread_mutex_unlock(&r->mu);

    /* Open the reserved nodes: an IP literal in its canonical form, a host name as written
     * (resolved at every connect). */
    for (size_t k = 0; k < n && rc == 0; k++) {
        want *x = &w[k];
        if (!x->fresh) continue;
        nh_node_opts no = {.id = x->id,
                           .address = x->addr.dial,
                           .metadata = r->md,
                           .metadata_count = r->md_count,
                           .backoff_base_ms = r->backoff_base_ms,
                           .backoff_max_ms = r->backoff_max_ms,
                           .keepalive_time_ms = r->keepalive_time_ms,
                           .keepalive_timeout_ms = r->keepalive_timeout_ms,
                           .tls = r->tls,
                           .server_identity = x->identity};
        rc = nh_node_open(r->rt, &no, &x->node, err);
    }

    pthread_mutex_lock(&r->mu);
    for (size_t k = 0; k < n; k++) {
        want *x = &w[k];
        if (!x->fresh) continue;
        bool found;
        size_t at = entry_search(r, x->id, &found);
        if (rc == 0) {
            r->entries[at].node = x->node; /* the registry keeps the user handle */
            nh_node_ref(x->node);          /* and the caller gets its own reference */
        } else {
            entry_remove(r, x->id);
        }
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);

    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        want *x = &w[k];
        if (rc == 0) {
            if (!x->dup) out[m++] = x->node;
        } else if (x->fresh) {
            nh_node_close(x->node); /* opened before a later open failed (accepts NULL) */
        } else if (x->node) {
            nh_node_unref(x->node);
        }
    }
    free(w);
    if (rc != 0) {
        free(out);
        return -1;
    }
    *nodes = out;
    *n_out = m;
    return 0;
}
