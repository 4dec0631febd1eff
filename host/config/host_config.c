/* The nodehost configuration file: schema, defaults and checks (see host_config.h). */
#include "config/host_config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PLUGIN_NAME 63

static const char *const root_keys[] = {"version", "node",    "peers",     "clients", "plugins",
                                        "reload",  "limits",  "keepalive", "log",     "tls",
                                        "admin",   "metrics", "threads",   NULL};
static const char *const node_keys[] = {"id", "listen", NULL};
static const char *const peer_keys[] = {"id", "address", "identity", NULL};
static const char *const clients_keys[] = {"accept", "max", "max_per_connection", NULL};
static const char *const plugin_keys[] = {"name", "path", "config", "allow", NULL};
static const char *const limits_keys[] = {"max_message_size",       "max_inbox",
                                          "shutdown_grace_ms",      "max_queued_reply_bytes",
                                          "slow_reader_timeout_ms", NULL};
static const char *const reload_keys[] = {"watch", "debounce_ms", NULL};
static const char *const keepalive_keys[] = {"time_ms", "timeout_ms", NULL};
static const char *const log_keys[] = {"level", "format", "access", NULL};
static const char *const metrics_keys[] = {"listen", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"text", "json", NULL};

/* ---- helpers -------------------------------------------------------------------------------- */

static bool is_null(const nh_conf_node *n) {
    return n->kind == NH_CONF_SCALAR && !n->quoted && n->value[0] == '\0';
}

/* The member, or NULL when absent or null. */
static const nh_conf_node *member(const nh_conf_node *map, const char *key) {
    const nh_conf_node *n = nh_conf_get(map, key);
    return n != NULL && !is_null(n) ? n : NULL;
}

static const char *describe(const nh_conf_node *n, char *buf, size_t size) {
    if (n->kind == NH_CONF_MAP) return "a map";
    if (n->kind == NH_CONF_LIST) return "a list";
    if (is_null(n)) return "an empty value";
    snprintf(buf, size, "\"%.60s%s\"", n->value, strlen(n->value) > 60 ? "..." : "");
    return buf;
}

/* `FILE:LINE:COL: message` at n's value position (or its key position), without a path. */
static int at(const nh_conf_node *n, bool key_pos, nh_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int at(const nh_conf_node *n, bool key_pos, nh_error *err, const char *fmt, ...) {
    char msg[NH_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s:%" PRIu32 ":%" PRIu32 ": %s",
                        n->file, key_pos ? n->key_line : n->line, key_pos ? n->key_col : n->col,
                        msg);
}

static int oom(nh_error *err) {
    return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
}

static int get_u32(const nh_conf_node *map, const char *key, int64_t def, int64_t min, int64_t max,
                   uint32_t *out, nh_error *err) {
    int64_t v;
    if (nh_conf_int(map, key, def, min, max, false, &v, err) != 0) return -1;
    *out = (uint32_t)v;
    return 0;
}

static int get_size(const nh_conf_node *map, const char *key, int64_t def, int64_t min, int64_t max,
                    bool sizes, size_t *out, nh_error *err) {
    int64_t v;
    if (nh_conf_int(map, key, def, min, max, sizes, &v, err) != 0) return -1;
    *out = (size_t)v;
    return 0;
}

/* One of a NULL-terminated list of words: *out is its index, def when absent. */
static int get_enum(const nh_conf_node *map, const char *key, const char *const *words, int def,
                    int *out, nh_error *err) {
    const char *s;
    if (nh_conf_string(map, key, NULL, &s, err) != 0) return -1;
    if (s == NULL) {
        *out = def;
        return 0;
    }
    char list[160];
    size_t pos = 0;
    list[0] = '\0';
    for (int i = 0; words[i] != NULL; i++) {
        if (strcmp(words[i], s) == 0) {
            *out = i;
            return 0;
        }
        int n = snprintf(list + pos, sizeof list - pos, "%s%s", i > 0 ? ", " : "", words[i]);
        if (n > 0 && (size_t)n < sizeof list - pos) pos += (size_t)n;
    }
    return nh_conf_error(nh_conf_get(map, key), err, "must be one of %s, got \"%.60s\"", list, s);
}

/* Why "host:port" is not a usable address, or NULL when it is. host: any non-empty text without
 * ':' (IPv6 in brackets); port: 1..65535. */
static const char *address_problem(const char *a, char *buf, size_t size) {
    const char *host, *port;
    size_t host_len;
    if (a[0] == '[') {
        const char *close = strchr(a, ']');
        if (close == NULL || close[1] != ':') return "expected [IPv6 address]:port";
        host = a + 1;
        host_len = (size_t)(close - host);
        port = close + 2;
    } else {
        const char *colon = strrchr(a, ':');
        if (colon == NULL) return "expected host:port";
        host = a;
        host_len = (size_t)(colon - a);
        port = colon + 1;
        if (memchr(host, ':', host_len) != NULL) {
            return "write an IPv6 address in brackets, as in [::1]:7001";
        }
    }
    if (host_len == 0) return "the host is empty";
    if (port[0] == '\0') return "the port is empty";
    unsigned long v = 0;
    for (const char *p = port; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            snprintf(buf, size, "the port must be a number, got \"%.20s\"", port);
            return buf;
        }
        if (v < 1000000) v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v < 1 || v > 65535) {
        snprintf(buf, size, "port must be between 1 and 65535, got %.20s", port);
        return buf;
    }
    return NULL;
}

static int check_address(const nh_conf_node *n, nh_error *err) {
    char buf[96];
    const char *why = address_problem(n->value, buf, sizeof buf);
    if (why == NULL) return 0;
    return nh_conf_error(n, err, "bad address \"%.100s\" (%s)", n->value, why);
}

static bool plugin_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > MAX_PLUGIN_NAME) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

unsigned nh_host_threads(const nh_host_config *c) {
    if (c->threads) return c->threads;
    const char *env = getenv("NH_THREADS");
    if (env && *env) return 0;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    return cores > NH_MAX_THREADS ? NH_MAX_THREADS : (unsigned)cores;
}

char *nh_host_join_path(const char *dir, const char *rel) {
    if (rel[0] == '/') return strdup(rel);
    size_t dl = strlen(dir);
    bool slash = dl > 0 && dir[dl - 1] == '/';
    size_t n = dl + (slash ? 0 : 1) + strlen(rel) + 1;
    char *p = malloc(n);
    if (p != NULL) snprintf(p, n, "%s%s%s", dir, slash ? "" : "/", rel);
    return p;
}

/* ---- the reader ----------------------------------------------------------------------------- */

/* The configuration being filled and the list its errors go to. The checks above keep the
 * one-error form (nh_error *, -1); the section readers below record each failed check with rec()
 * and go on with the checks that do not depend on it. A section reader returns -1 only when
 * memory ran out (recorded too): then nothing more is read. */
typedef struct reader {
    nh_host_config *c;
    nh_error_list *errs;
    nh_error e; /* the error of the check that just failed */
} reader;

/* Records r->e when rc says the check failed. Returns rc. */
static int rec(reader *r, int rc) {
    if (rc != 0) nh_error_list_add(r->errs, &r->e);
    return rc;
}

/* Errors recorded so far (to tell whether a section read cleanly). */
static size_t errors(const reader *r) {
    return nh_error_list_total(r->errs);
}

/* Checks the keys of map (NULL: nothing to check) one by one, so that every unknown key is
 * reported: each member is checked by nh_conf_check_keys() as a map of its own with the same
 * parent, hence the same path and message. Returns the number of unknown keys, or -1 when map
 * is not a map (recorded: `must be a map, got ...`). */
static int check_keys(reader *r, const nh_conf_node *map, const char *const *allowed) {
    if (map == NULL) return 0;
    if (map->kind != NH_CONF_MAP) return rec(r, nh_conf_check_keys(map, allowed, &r->e));
    int unknown = 0;
    for (size_t i = 0; i < map->count; i++) {
        nh_conf_node one = *map;
        one.items = &map->items[i];
        one.count = 1;
        if (rec(r, nh_conf_check_keys(&one, allowed, &r->e)) != 0) unknown++;
    }
    return unknown;
}

/* An optional map section: NULL when absent, null or not a map (recorded). *unknown: whether it
 * has unknown keys (recorded); its `missing required key` checks are then skipped, as the
 * unknown key is most likely the missing one misspelt. */
static const nh_conf_node *section_map(reader *r, const nh_conf_node *map, const char *key,
                                       const char *const *allowed, bool *unknown) {
    const nh_conf_node *n = member(map, key);
    int u = check_keys(r, n, allowed);
    if (unknown != NULL) *unknown = u != 0;
    return u < 0 ? NULL : n;
}

/* An optional list section: NULL when absent, null or not a list (recorded). */
static const nh_conf_node *section_list(reader *r, const nh_conf_node *map, const char *key) {
    const nh_conf_node *n = member(map, key);
    if (n != NULL && n->kind != NH_CONF_LIST) {
        char got[80];
        rec(r, nh_conf_error(n, &r->e, "must be a list, got %s", describe(n, got, sizeof got)));
        return NULL;
    }
    return n;
}

/* A required member of map: NULL when absent (recorded unless `quiet`: the map has unknown
 * keys) or null (recorded: `has no value`). */
static const nh_conf_node *require(reader *r, const nh_conf_node *map, const char *key,
                                   bool quiet) {
    const nh_conf_node *n = nh_conf_get(map, key);
    if (n == NULL) {
        if (!quiet) rec(r, nh_conf_error(map, &r->e, "missing required key '%s'", key));
        return NULL;
    }
    if (is_null(n)) {
        rec(r, nh_conf_error(n, &r->e, "has no value"));
        return NULL;
    }
    return n;
}

static int read_peers(reader *r, const nh_conf_node *peers) {
    nh_host_config *c = r->c;
    if (peers == NULL || peers->count == 0) return 0;
    c->peers = calloc(peers->count, sizeof *c->peers);
    if (c->peers == NULL) return rec(r, oom(&r->e));
    for (size_t i = 0; i < peers->count; i++) {
        const nh_conf_node *p = &peers->items[i];
        int unknown = check_keys(r, p, peer_keys);
        if (unknown < 0) continue; /* not a map */
        bool ok = true;
        int64_t id = 0;
        const nh_conf_node *id_node = require(r, p, "id", unknown > 0);
        if (id_node == NULL ||
            rec(r, nh_conf_int(p, "id", 0, 1, NH_HOST_MAX_NODE_ID, false, &id, &r->e)) != 0) {
            ok = false;
            id_node = NULL;
        }
        const nh_conf_node *addr_node = require(r, p, "address", unknown > 0);
        if (addr_node != NULL && addr_node->kind != NH_CONF_SCALAR) {
            const char *unused;
            rec(r, nh_conf_string(p, "address", NULL, &unused, &r->e));
            addr_node = NULL;
        } else if (addr_node != NULL && rec(r, check_address(addr_node, &r->e)) != 0) {
            addr_node = NULL;
        }
        if (addr_node == NULL) ok = false;
        for (size_t j = 0; j < c->peer_count; j++) {
            const nh_host_peer *q = &c->peers[j];
            if (id_node != NULL && q->id == (uint32_t)id) {
                rec(r, nh_conf_error(id_node, &r->e,
                                     "duplicate peer ID %" PRId64 " (also peers[%zu], line %" PRIu32
                                     ")",
                                     id, q->where->index, nh_conf_get(q->where, "id")->line));
                ok = false;
            }
            if (addr_node != NULL && strcmp(q->address, addr_node->value) == 0) {
                rec(r, nh_conf_error(addr_node, &r->e,
                                     "duplicate peer address \"%s\" (also peers[%zu], line %" PRIu32
                                     ")",
                                     addr_node->value, q->where->index,
                                     nh_conf_get(q->where, "address")->line));
                ok = false;
            }
        }
        const char *identity = NULL;
        if (rec(r, nh_conf_string(p, "identity", NULL, &identity, &r->e)) != 0) {
            ok = false;
        } else if (identity != NULL && identity[0] == '\0') {
            rec(r, nh_conf_error(nh_conf_get(p, "identity"), &r->e, "must not be empty"));
            ok = false;
        }
        if (!ok) continue;
        /* Only peers without an error join the list (later duplicates are checked against
         * them). */
        nh_host_peer *peer = &c->peers[c->peer_count];
        peer->address = strdup(addr_node->value);
        if (peer->address == NULL) return rec(r, oom(&r->e));
        if (identity != NULL && (peer->identity = strdup(identity)) == NULL) {
            free(peer->address);
            peer->address = NULL;
            return rec(r, oom(&r->e));
        }
        peer->id = (uint32_t)id;
        peer->where = p;
        c->peer_count++;
    }
    return 0;
}

static int read_plugins(reader *r, const nh_conf_node *plugins) {
    nh_host_config *c = r->c;
    if (plugins == NULL || plugins->count == 0) return 0;
    c->plugins = calloc(plugins->count, sizeof *c->plugins);
    if (c->plugins == NULL) return rec(r, oom(&r->e));
    for (size_t i = 0; i < plugins->count; i++) {
        const nh_conf_node *p = &plugins->items[i];
        int unknown = check_keys(r, p, plugin_keys);
        if (unknown < 0) continue; /* not a map */
        const char *name = NULL, *rel = NULL;
        const nh_conf_node *name_node = require(r, p, "name", unknown > 0);
        if (name_node != NULL && rec(r, nh_conf_string(p, "name", NULL, &name, &r->e)) != 0) {
            name = NULL;
        } else if (name != NULL && !plugin_name_ok(name)) {
            rec(r, nh_conf_error(name_node, &r->e,
                                 "bad plugin name '%.80s' (expected 1 to 63 characters from a-z, "
                                 "0-9, '_' and '-')",
                                 name));
            name = NULL;
        }
        for (size_t j = 0; name != NULL && j < c->plugin_count; j++) {
            if (strcmp(c->plugins[j].name, name) == 0) {
                rec(r, nh_conf_error(name_node, &r->e,
                                     "duplicate plugin name '%s' (also plugins[%zu], line %" PRIu32
                                     ")",
                                     name, c->plugins[j].where->index,
                                     nh_conf_get(c->plugins[j].where, "name")->line));
                name = NULL;
            }
        }
        const nh_conf_node *path_node = require(r, p, "path", unknown > 0);
        if (path_node != NULL && rec(r, nh_conf_string(p, "path", NULL, &rel, &r->e)) != 0) {
            rel = NULL;
        } else if (rel != NULL && rel[0] == '\0') {
            rec(r, nh_conf_error(path_node, &r->e, "must not be empty"));
            rel = NULL;
        }
        nh_host_allow allow;
        if (nh_host_read_allow(p, "allow", &allow, r->errs) != 0) {
            nh_host_allow_free(&allow);
            return -1;
        }
        if (name == NULL || rel == NULL) {
            nh_host_allow_free(&allow);
            continue;
        }
        /* Entries with a usable name and path join the list (a later duplicate name is checked
         * against them); the file must exist, but the entry stays for the checks that follow. */
        nh_host_plugin *pl = &c->plugins[c->plugin_count++];
        pl->where = p;
        pl->config = member(p, "config");
        pl->allow = allow;
        pl->name = strdup(name);
        pl->path = nh_host_join_path(c->dir, rel);
        if (pl->name == NULL || pl->path == NULL) return rec(r, oom(&r->e));
        struct stat st;
        if (stat(pl->path, &st) != 0) {
            if (errno == ENOENT || errno == ENOTDIR) {
                rec(r, nh_conf_error(path_node, &r->e, "plugin file '%s' not found (looked at %s)",
                                     rel, pl->path));
            } else {
                rec(r, nh_conf_error(path_node, &r->e, "cannot access plugin file '%s' (%s): %s",
                                     rel, pl->path, strerror(errno)));
            }
        } else if (!S_ISREG(st.st_mode)) {
            rec(r, nh_conf_error(path_node, &r->e, "plugin file '%s' is not a regular file (%s)",
                                 rel, pl->path));
        }
    }
    return 0;
}

/* The node's ID and listen address, checked against the peers. Runs only when node, peers and
 * the top-level keys read cleanly (otherwise its verdicts would follow from those errors). */
static int resolve_node(reader *r, const nh_conf_node *root, const nh_conf_node *node,
                        uint32_t file_id, uint32_t id_override) {
    nh_host_config *c = r->c;
    c->node_id = id_override != 0 ? id_override : file_id;
    const nh_host_peer *self = NULL;
    for (size_t i = 0; i < c->peer_count; i++) {
        if (c->peers[i].id == c->node_id) self = &c->peers[i];
    }
    if (c->peer_count > 0 && self == NULL) {
        char ids[160];
        size_t pos = 0;
        ids[0] = '\0';
        for (size_t i = 0; i < c->peer_count; i++) {
            if (i == 16) {
                snprintf(ids + pos, sizeof ids - pos, ", ...");
                break;
            }
            int n = snprintf(ids + pos, sizeof ids - pos, "%s%" PRIu32, i > 0 ? ", " : "",
                             c->peers[i].id);
            if (n < 0 || (size_t)n >= sizeof ids - pos) break;
            pos += (size_t)n;
        }
        if (id_override != 0) {
            return rec(r, at(nh_conf_get(root, "peers"), true, &r->e,
                             "--id %" PRIu32 ": node %" PRIu32 " is not among the peers (IDs %s)",
                             c->node_id, c->node_id, ids));
        }
        return rec(r, nh_conf_error(nh_conf_get(node, "id"), &r->e,
                                    "node %" PRIu32 " is not among the peers (IDs %s)", c->node_id,
                                    ids));
    }
    const nh_conf_node *listen = member(node, "listen"); /* checked by read_config */
    if (listen != NULL) {
        c->listen = strdup(listen->value);
    } else if (self != NULL) {
        c->listen = strdup(self->address);
    } else {
        return rec(r, at(node != NULL ? node : root, false, &r->e,
                         "node.listen: missing (required when there are no peers)"));
    }
    return c->listen != NULL ? 0 : rec(r, oom(&r->e));
}

/* Reads the whole file into r->c, recording every error in r->errs. Returns -1 when the rest
 * of the file cannot be read meaningfully (empty, not a map, another version, out of memory),
 * else 0 (also with errors recorded). */
static int read_config(reader *r, uint32_t id_override) {
    nh_host_config *c = r->c;
    c->id_override = id_override;
    const nh_conf_node *root = nh_conf_doc_root(c->doc);
    if (root == NULL) {
        return rec(r, nh_error_set(&r->e, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                                   "%s:1:1: the file is empty (expected a map with 'version')",
                                   c->file));
    }
    if (root->kind != NH_CONF_MAP) {
        char got[80];
        return rec(r, at(root, false, &r->e, "the top level must be a map, got %s",
                         describe(root, got, sizeof got)));
    }

    /* version: a missing one is reported and the file read as version 1; any other version
     * is another schema, so nothing more is checked. */
    const nh_conf_node *version = nh_conf_get(root, "version");
    if (version == NULL) {
        rec(r, nh_conf_error(root, &r->e, "missing required key 'version'"));
    } else if (is_null(version)) {
        rec(r, nh_conf_error(version, &r->e, "has no value"));
    } else {
        int64_t v = 0;
        if (rec(r, nh_conf_int(root, "version", 0, INT64_MIN, INT64_MAX, false, &v, &r->e)) != 0)
            return -1;
        if (v != 1)
            return rec(r, nh_conf_error(version, &r->e, "must be 1, got %s", version->value));
    }
    /* An unknown top-level key may be a misspelt section: the checks across sections that it
     * could be part of are skipped. */
    bool root_clean = check_keys(r, root, root_keys) == 0;

    /* node */
    size_t before = errors(r);
    bool unknown;
    uint32_t file_id = 0;
    const nh_conf_node *node = section_map(r, root, "node", node_keys, &unknown);
    if (rec(r, get_u32(node, "id", 0, 1, NH_HOST_MAX_NODE_ID, &file_id, &r->e)) != 0) {
        file_id = 0;
    } else if (id_override == 0 && file_id == 0 && !unknown && root_clean) {
        rec(r, at(node != NULL ? node : root, false, &r->e,
                  "node.id: missing (set node.id or pass --id N)"));
    }
    const nh_conf_node *listen = member(node, "listen");
    if (listen != NULL) {
        const char *unused;
        if (rec(r, nh_conf_string(node, "listen", NULL, &unused, &r->e)) == 0)
            rec(r, check_address(listen, &r->e));
    }
    bool node_clean = errors(r) == before && (file_id != 0 || id_override != 0);

    /* peers */
    before = errors(r);
    if (read_peers(r, section_list(r, root, "peers")) != 0) return -1;
    bool peers_clean = errors(r) == before;

    /* threads (0: not set; the node then uses the number of cores) */
    rec(r, get_u32(root, "threads", 0, 1, NH_MAX_THREADS, &c->threads, &r->e));

    /* clients */
    const nh_conf_node *clients = section_map(r, root, "clients", clients_keys, NULL);
    rec(r, nh_conf_bool(clients, "accept", true, &c->clients_accept, &r->e));
    rec(r, get_size(clients, "max", 10000, 1, 1000000, false, &c->clients_max, &r->e));
    rec(r, get_size(clients, "max_per_connection", 1000, 1, 1000000, false,
                    &c->clients_max_per_connection, &r->e));

    /* plugins */
    before = errors(r);
    if (read_plugins(r, section_list(r, root, "plugins")) != 0) return -1;
    c->plugins_clean = errors(r) == before;

    /* reload */
    const nh_conf_node *reload = section_map(r, root, "reload", reload_keys, NULL);
    rec(r, nh_conf_bool(reload, "watch", false, &c->reload_watch, &r->e));
    rec(r, get_u32(reload, "debounce_ms", 200, 10, 60000, &c->reload_debounce_ms, &r->e));

    /* limits */
    const nh_conf_node *limits = section_map(r, root, "limits", limits_keys, NULL);
    rec(r, get_size(limits, "max_message_size", 4 << 20, 1 << 10, 64 << 20, true,
                    &c->max_message_size, &r->e));
    rec(r, get_size(limits, "max_inbox", 1024, 1, 1000000, false, &c->max_inbox, &r->e));
    rec(r, get_u32(limits, "shutdown_grace_ms", 5000, 0, 600000, &c->shutdown_grace_ms, &r->e));
    rec(r, get_size(limits, "max_queued_reply_bytes", 16 << 20, 64 << 10, 1 << 30, true,
                    &c->max_queued_reply_bytes, &r->e));
    rec(r, get_u32(limits, "slow_reader_timeout_ms", 30000, 100, 3600000,
                   &c->slow_reader_timeout_ms, &r->e));

    /* keepalive */
    const nh_conf_node *keepalive = section_map(r, root, "keepalive", keepalive_keys, NULL);
    rec(r, get_u32(keepalive, "time_ms", NH_HOST_KEEPALIVE_TIME_MS, 100, 3600000,
                   &c->keepalive_time_ms, &r->e));
    rec(r, get_u32(keepalive, "timeout_ms", NH_HOST_KEEPALIVE_TIMEOUT_MS, 100, 600000,
                   &c->keepalive_timeout_ms, &r->e));

    /* log */
    const nh_conf_node *log = section_map(r, root, "log", log_keys, NULL);
    int level = 2, format = 0;
    rec(r, get_enum(log, "level", log_levels, 2, &level, &r->e));
    rec(r, get_enum(log, "format", log_formats, 0, &format, &r->e));
    c->log_level = level;
    c->log_format = format == 1 ? NH_LOGFMT_JSON : NH_LOGFMT_TEXT;
    const char *access = NULL;
    rec(r, nh_conf_string(log, "access", NULL, &access, &r->e));
    c->log_access = 0;
    if (access != NULL) {
        char *end;
        double frac = strtod(access, &end);
        if (!strcmp(access, "off")) {
            frac = 0;
        } else if (!strcmp(access, "all")) {
            frac = 1;
        } else if (end == access || *end || !(frac >= 0 && frac <= 1)) {
            rec(r, nh_conf_error(nh_conf_get(log, "access"), &r->e,
                                 "must be off, all or a fraction of the calls from 0 to 1 (0.01 "
                                 "logs one call in a hundred), got \"%.60s\"",
                                 access));
            frac = 0;
        }
        c->log_access = frac;
    }

    /* tls, admin */
    before = errors(r);
    if (nh_host_read_tls(c, root, r->errs) != 0) return -1;
    bool tls_clean = errors(r) == before;
    if (nh_host_read_admin(c, root, r->errs) != 0) return -1;

    /* metrics */
    const nh_conf_node *metrics = section_map(r, root, "metrics", metrics_keys, &unknown);
    const nh_conf_node *ml = metrics != NULL ? require(r, metrics, "listen", unknown) : NULL;
    if (ml != NULL) {
        const char *unused;
        if (rec(r, nh_conf_string(metrics, "listen", NULL, &unused, &r->e)) == 0 &&
            rec(r, check_address(ml, &r->e)) == 0 &&
            (c->metrics_listen = strdup(ml->value)) == NULL)
            return rec(r, oom(&r->e));
    }

    /* Across sections, on what read cleanly. */
    if (!root_clean || !node_clean || !peers_clean) return 0;
    if (resolve_node(r, root, node, file_id, id_override) != 0) {
        return nh_error_list_exhausted(r->errs) ? -1 : 0;
    }
    if (c->metrics_listen != NULL && strcmp(c->metrics_listen, c->listen) == 0) {
        rec(r, nh_conf_error(nh_conf_get(nh_conf_get(root, "metrics"), "listen"), &r->e,
                             "%s is the node's own listen address (use another port)",
                             c->metrics_listen));
    }
    if (tls_clean && c->tls.on && c->tls.clients == NH_TLS_CLIENTS_NONE) {
        for (size_t i = 0; i < c->peer_count; i++) {
            if (c->peers[i].id != c->node_id) {
                rec(r, nh_conf_error(nh_conf_get(nh_conf_get(root, "tls"), "clients"), &r->e,
                                     "none leaves the known peers unable to prove their IDs "
                                     "(use require or optional)"));
                break;
            }
        }
    }
    return 0;
}

/* ---- entry points --------------------------------------------------------------------------- */

void nh_host_config_free(nh_host_config *c) {
    if (c == NULL) return;
    nh_host_security_free(c);
    for (size_t i = 0; i < c->peer_count; i++)
        free(c->peers[i].address);
    free(c->peers);
    for (size_t i = 0; i < c->plugin_count; i++) {
        free(c->plugins[i].name);
        free(c->plugins[i].path);
    }
    free(c->plugins);
    free(c->listen);
    free(c->metrics_listen);
    nh_conf_doc_free(c->doc);
    free(c->dir);
    free(c->file);
    free(c);
}

/* Reads c (its document parsed); takes c. Returns 0 with *out = c, or -1 with the errors in
 * errs and *out the partial configuration (NULL when nothing more can be checked). */
static int finish(nh_host_config *c, uint32_t id_override, nh_host_config **out,
                  nh_error_list *errs) {
    if (id_override > NH_HOST_MAX_NODE_ID) {
        nh_error_list_addf(errs, NH_INVALID_ARGUMENT, "--id %" PRIu32 ": must be between 1 and %u",
                           id_override, NH_HOST_MAX_NODE_ID);
        nh_host_config_free(c);
        return -1;
    }
    reader r = {.c = c, .errs = errs};
    size_t before = nh_error_list_total(errs);
    int rc = read_config(&r, id_override);
    nh_error_list_sort(errs);
    if (rc != 0 || nh_error_list_exhausted(errs)) {
        nh_host_config_free(c);
        return -1;
    }
    *out = c;
    return nh_error_list_total(errs) == before ? 0 : -1;
}

/* A new configuration for file_label (and dir when not NULL). NULL when out of memory. */
static nh_host_config *config_new(const char *file_label, const char *dir) {
    nh_host_config *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->file = strdup(file_label);
    if (dir != NULL) c->dir = strdup(dir);
    if (c->file == NULL || (dir != NULL && c->dir == NULL)) {
        nh_host_config_free(c);
        return NULL;
    }
    return c;
}

int nh_host_config_read_text(const char *file_label, const char *dir, const char *text, size_t len,
                             uint32_t id_override, nh_host_config **out, nh_error_list *errs) {
    *out = NULL;
    nh_host_config *c =
        config_new(file_label != NULL ? file_label : "<config>", dir != NULL ? dir : ".");
    if (c == NULL) return nh_error_list_addf(errs, NH_RESOURCE_EXHAUSTED, "out of memory");
    nh_error err;
    if (nh_conf_doc_parse(c->file, text, len, &c->doc, &err) != 0) {
        nh_host_config_free(c);
        return nh_error_list_add(errs, &err);
    }
    return finish(c, id_override, out, errs);
}

/* The absolute directory holding the name `path` (its last component is not resolved). */
static char *file_dir(const char *path, nh_error *err) {
    const char *slash = strrchr(path, '/');
    char *part;
    if (slash == NULL) {
        part = strdup(".");
    } else if (slash == path) {
        part = strdup("/");
    } else {
        part = strndup(path, (size_t)(slash - path));
    }
    if (part == NULL) {
        oom(err);
        return NULL;
    }
    char *dir = realpath(part, NULL);
    if (dir == NULL) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: cannot resolve '%s': %s", path,
                     part, strerror(errno));
    }
    free(part);
    return dir;
}

int nh_host_config_read(const char *path, uint32_t id_override, nh_host_config **out,
                        nh_error_list *errs) {
    *out = NULL;
    nh_host_config *c = config_new(path, NULL);
    if (c == NULL) return nh_error_list_addf(errs, NH_RESOURCE_EXHAUSTED, "out of memory");
    nh_error err;
    if (nh_conf_doc_load(path, &c->doc, &err) != 0 || (c->dir = file_dir(path, &err)) == NULL) {
        nh_host_config_free(c);
        return nh_error_list_add(errs, &err);
    }
    return finish(c, id_override, out, errs);
}

/* The one-error form of a read: the first error in file order goes to err. */
static int first_error(int rc, nh_error_list *errs, nh_host_config **out, nh_error *err) {
    if (rc != 0) {
        nh_host_config_free(*out);
        *out = NULL;
        nh_error_list_first(errs, err);
    }
    nh_error_list_free(errs);
    return rc;
}

int nh_host_config_parse(const char *file_label, const char *dir, const char *text, size_t len,
                         uint32_t id_override, nh_host_config **out, nh_error *err) {
    nh_error_list errs;
    nh_error_list_init(&errs, file_label != NULL ? file_label : "<config>");
    int rc = nh_host_config_read_text(file_label, dir, text, len, id_override, out, &errs);
    return first_error(rc, &errs, out, err);
}

int nh_host_config_load(const char *path, uint32_t id_override, nh_host_config **out,
                        nh_error *err) {
    nh_error_list errs;
    nh_error_list_init(&errs, path);
    int rc = nh_host_config_read(path, id_override, out, &errs);
    return first_error(rc, &errs, out, err);
}
