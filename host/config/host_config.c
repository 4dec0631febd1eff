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

#define MAX_PLUGIN_NAME 63

static const char *const root_keys[] = {"version", "node",    "peers",     "clients", "plugins",
                                        "reload",  "limits",  "keepalive", "log",     "tls",
                                        "admin",   "metrics", NULL};
static const char *const node_keys[] = {"id", "listen", NULL};
static const char *const peer_keys[] = {"id", "address", "identity", NULL};
static const char *const clients_keys[] = {"accept", "max", NULL};
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

/* A required member: absent is `missing required key` at the map, null is `has no value`. */
static int required(const nh_conf_node *map, const char *key, const nh_conf_node **out,
                    nh_error *err) {
    const nh_conf_node *n = nh_conf_get(map, key);
    if (n == NULL) return nh_conf_error(map, err, "missing required key '%s'", key);
    if (is_null(n)) return nh_conf_error(n, err, "has no value");
    *out = n;
    return 0;
}

/* An optional map section: *out NULL when absent or null; its keys are checked. */
static int section_map(const nh_conf_node *map, const char *key, const char *const *allowed,
                       const nh_conf_node **out, nh_error *err) {
    *out = member(map, key);
    return nh_conf_check_keys(*out, allowed, err);
}

/* An optional list section: *out NULL when absent or null. */
static int section_list(const nh_conf_node *map, const char *key, const nh_conf_node **out,
                        nh_error *err) {
    *out = member(map, key);
    if (*out != NULL && (*out)->kind != NH_CONF_LIST) {
        char got[80];
        return nh_conf_error(*out, err, "must be a list, got %s", describe(*out, got, sizeof got));
    }
    return 0;
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

char *nh_host_join_path(const char *dir, const char *rel) {
    if (rel[0] == '/') return strdup(rel);
    size_t dl = strlen(dir);
    bool slash = dl > 0 && dir[dl - 1] == '/';
    size_t n = dl + (slash ? 0 : 1) + strlen(rel) + 1;
    char *p = malloc(n);
    if (p != NULL) snprintf(p, n, "%s%s%s", dir, slash ? "" : "/", rel);
    return p;
}

/* ---- sections ------------------------------------------------------------------------------- */

static int read_peers(nh_host_config *c, const nh_conf_node *peers, nh_error *err) {
    if (peers == NULL || peers->count == 0) return 0;
    c->peers = calloc(peers->count, sizeof *c->peers);
    if (c->peers == NULL) return oom(err);
    for (size_t i = 0; i < peers->count; i++) {
        const nh_conf_node *p = &peers->items[i];
        const nh_conf_node *id_node = NULL, *addr_node = NULL;
        int64_t id;
        if (nh_conf_check_keys(p, peer_keys, err) != 0) return -1;
        if (required(p, "id", &id_node, err) != 0) return -1;
        if (nh_conf_int(p, "id", 0, 1, NH_HOST_MAX_NODE_ID, false, &id, err) != 0) return -1;
        if (required(p, "address", &addr_node, err) != 0) return -1;
        if (addr_node->kind != NH_CONF_SCALAR) {
            const char *unused;
            return nh_conf_string(p, "address", NULL, &unused, err);
        }
        if (check_address(addr_node, err) != 0) return -1;
        for (size_t j = 0; j < i; j++) {
            const nh_host_peer *q = &c->peers[j];
            if (q->id == (uint32_t)id) {
                return nh_conf_error(id_node, err,
                                     "duplicate peer ID %" PRId64 " (also peers[%zu], line %" PRIu32
                                     ")",
                                     id, j, nh_conf_get(q->where, "id")->line);
            }
            if (strcmp(q->address, addr_node->value) == 0) {
                return nh_conf_error(addr_node, err,
                                     "duplicate peer address \"%s\" (also peers[%zu], line %" PRIu32
                                     ")",
                                     addr_node->value, j, nh_conf_get(q->where, "address")->line);
            }
        }
        const char *identity;
        if (nh_conf_string(p, "identity", NULL, &identity, err) != 0) return -1;
        if (identity != NULL && identity[0] == '\0')
            return nh_conf_error(nh_conf_get(p, "identity"), err, "must not be empty");
        nh_host_peer *peer = &c->peers[c->peer_count];
        peer->address = strdup(addr_node->value);
        if (peer->address == NULL) return oom(err);
        if (identity != NULL && (peer->identity = strdup(identity)) == NULL) return oom(err);
        peer->id = (uint32_t)id;
        peer->where = p;
        c->peer_count++;
    }
    return 0;
}

static int read_plugins(nh_host_config *c, const nh_conf_node *plugins, nh_error *err) {
    if (plugins == NULL || plugins->count == 0) return 0;
    c->plugins = calloc(plugins->count, sizeof *c->plugins);
    if (c->plugins == NULL) return oom(err);
    for (size_t i = 0; i < plugins->count; i++) {
        const nh_conf_node *p = &plugins->items[i];
        const nh_conf_node *name_node = NULL, *path_node = NULL;
        const char *name, *rel;
        if (nh_conf_check_keys(p, plugin_keys, err) != 0) return -1;
        if (required(p, "name", &name_node, err) != 0) return -1;
        if (nh_conf_string(p, "name", NULL, &name, err) != 0) return -1;
        if (!plugin_name_ok(name)) {
            return nh_conf_error(name_node, err,
                                 "bad plugin name '%.80s' (expected 1 to 63 characters from a-z, "
                                 "0-9, '_' and '-')",
                                 name);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->plugins[j].name, name) == 0) {
                return nh_conf_error(name_node, err,
                                     "duplicate plugin name '%s' (also plugins[%zu], line %" PRIu32
                                     ")",
                                     name, j, nh_conf_get(c->plugins[j].where, "name")->line);
            }
        }
        if (required(p, "path", &path_node, err) != 0) return -1;
        if (nh_conf_string(p, "path", NULL, &rel, err) != 0) return -1;
        if (rel[0] == '\0') return nh_conf_error(path_node, err, "must not be empty");

        nh_host_plugin *pl = &c->plugins[c->plugin_count];
        pl->where = p;
        pl->config = member(p, "config");
        pl->name = strdup(name);
        pl->path = nh_host_join_path(c->dir, rel);
        c->plugin_count++;
        if (pl->name == NULL || pl->path == NULL) return oom(err);
        if (nh_host_read_allow(p, "allow", &pl->allow, err) != 0) return -1;
        struct stat st;
        if (stat(pl->path, &st) != 0) {
            if (errno == ENOENT || errno == ENOTDIR) {
                return nh_conf_error(path_node, err, "plugin file '%s' not found (looked at %s)",
                                     rel, pl->path);
            }
            return nh_conf_error(path_node, err, "cannot access plugin file '%s' (%s): %s", rel,
                                 pl->path, strerror(errno));
        }
        if (!S_ISREG(st.st_mode)) {
            return nh_conf_error(path_node, err, "plugin file '%s' is not a regular file (%s)", rel,
                                 pl->path);
        }
    }
    return 0;
}

/* The node's ID and listen address, checked against the peers. */
static int resolve_node(nh_host_config *c, const nh_conf_node *root, const nh_conf_node *node,
                        uint32_t file_id, uint32_t id_override, nh_error *err) {
    c->node_id = id_override != 0 ? id_override : file_id;
    c->id_override = id_override;
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
            return at(nh_conf_get(root, "peers"), true, err,
                      "--id %" PRIu32 ": node %" PRIu32 " is not among the peers (IDs %s)",
                      c->node_id, c->node_id, ids);
        }
        return nh_conf_error(nh_conf_get(node, "id"), err,
                             "node %" PRIu32 " is not among the peers (IDs %s)", c->node_id, ids);
    }
    const nh_conf_node *listen = member(node, "listen"); /* checked by read_config */
    if (listen != NULL) {
        c->listen = strdup(listen->value);
    } else if (self != NULL) {
        c->listen = strdup(self->address);
    } else {
        return at(node != NULL ? node : root, false, err,
                  "node.listen: missing (required when there are no peers)");
    }
    return c->listen != NULL ? 0 : oom(err);
}

static int read_config(nh_host_config *c, uint32_t id_override, nh_error *err) {
    const nh_conf_node *root = nh_conf_doc_root(c->doc);
    if (root == NULL) {
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "%s:1:1: the file is empty (expected a map with 'version')", c->file);
    }
    if (root->kind != NH_CONF_MAP) {
        char got[80];
        return at(root, false, err, "the top level must be a map, got %s",
                  describe(root, got, sizeof got));
    }

    const nh_conf_node *version = NULL;
    int64_t v = 0;
    if (required(root, "version", &version, err) != 0) return -1;
    if (nh_conf_int(root, "version", 0, INT64_MIN, INT64_MAX, false, &v, err) != 0) return -1;
    if (v != 1) return nh_conf_error(version, err, "must be 1, got %s", version->value);
    if (nh_conf_check_keys(root, root_keys, err) != 0) return -1;

    /* node */
    const nh_conf_node *node = NULL;
    uint32_t file_id;
    if (section_map(root, "node", node_keys, &node, err) != 0) return -1;
    if (get_u32(node, "id", 0, 1, NH_HOST_MAX_NODE_ID, &file_id, err) != 0) return -1;
    if (id_override == 0 && file_id == 0) {
        return at(node != NULL ? node : root, false, err,
                  "node.id: missing (set node.id or pass --id N)");
    }
    const nh_conf_node *listen = member(node, "listen");
    if (listen != NULL) {
        const char *unused;
        if (nh_conf_string(node, "listen", NULL, &unused, err) != 0) return -1;
        if (check_address(listen, err) != 0) return -1;
    }

    /* peers */
    const nh_conf_node *peers;
    if (section_list(root, "peers", &peers, err) != 0) return -1;
    if (read_peers(c, peers, err) != 0) return -1;

    /* clients */
    const nh_conf_node *clients;
    if (section_map(root, "clients", clients_keys, &clients, err) != 0) return -1;
    if (nh_conf_bool(clients, "accept", true, &c->clients_accept, err) != 0) return -1;
    if (get_size(clients, "max", 10000, 1, 1000000, false, &c->clients_max, err) != 0) return -1;

    /* plugins */
    const nh_conf_node *plugins;
    if (section_list(root, "plugins", &plugins, err) != 0) return -1;
    if (read_plugins(c, plugins, err) != 0) return -1;

    /* reload */
    const nh_conf_node *reload;
    if (section_map(root, "reload", reload_keys, &reload, err) != 0) return -1;
    if (nh_conf_bool(reload, "watch", false, &c->reload_watch, err) != 0) return -1;
    if (get_u32(reload, "debounce_ms", 200, 10, 60000, &c->reload_debounce_ms, err) != 0) return -1;

    /* limits */
    const nh_conf_node *limits;
    if (section_map(root, "limits", limits_keys, &limits, err) != 0) return -1;
    if (get_size(limits, "max_message_size", 4 << 20, 1 << 10, 64 << 20, true, &c->max_message_size,
                 err) != 0) {
        return -1;
    }
    if (get_size(limits, "max_inbox", 1024, 1, 1000000, false, &c->max_inbox, err) != 0) return -1;
    if (get_u32(limits, "shutdown_grace_ms", 5000, 0, 600000, &c->shutdown_grace_ms, err) != 0) {
        return -1;
    }
    if (get_size(limits, "max_queued_reply_bytes", 16 << 20, 64 << 10, 1 << 30, true,
                 &c->max_queued_reply_bytes, err) != 0) {
        return -1;
    }
    if (get_u32(limits, "slow_reader_timeout_ms", 30000, 100, 3600000, &c->slow_reader_timeout_ms,
                err) != 0) {
        return -1;
    }

    /* keepalive */
    const nh_conf_node *keepalive;
    if (section_map(root, "keepalive", keepalive_keys, &keepalive, err) != 0) return -1;
    if (get_u32(keepalive, "time_ms", NH_HOST_KEEPALIVE_TIME_MS, 100, 3600000,
                &c->keepalive_time_ms, err) != 0) {
        return -1;
    }
    if (get_u32(keepalive, "timeout_ms", NH_HOST_KEEPALIVE_TIMEOUT_MS, 100, 600000,
                &c->keepalive_timeout_ms, err) != 0) {
        return -1;
    }

    /* log */
    const nh_conf_node *log;
    int level, format;
    if (section_map(root, "log", log_keys, &log, err) != 0) return -1;
    if (get_enum(log, "level", log_levels, 2, &level, err) != 0) return -1;
    if (get_enum(log, "format", log_formats, 0, &format, err) != 0) return -1;
    c->log_level = level;
    c->log_format = format == 1 ? NH_LOGFMT_JSON : NH_LOGFMT_TEXT;
    const char *access;
    if (nh_conf_string(log, "access", NULL, &access, err) != 0) return -1;
    c->log_access = 0;
    if (access != NULL) {
        char *end;
        double frac = strtod(access, &end);
        if (!strcmp(access, "off")) {
            frac = 0;
        } else if (!strcmp(access, "all")) {
            frac = 1;
        } else if (end == access || *end || !(frac >= 0 && frac <= 1)) {
            return nh_conf_error(nh_conf_get(log, "access"), err,
                                 "must be off, all or a fraction of the calls from 0 to 1 (0.01 "
                                 "logs one call in a hundred), got \"%.60s\"",
                                 access);
        }
        c->log_access = frac;
    }

    /* tls, admin */
    if (nh_host_read_tls(c, root, err) != 0) return -1;
    if (nh_host_read_admin(c, root, err) != 0) return -1;

    /* metrics */
    const nh_conf_node *metrics;
    if (section_map(root, "metrics", metrics_keys, &metrics, err) != 0) return -1;
    if (metrics != NULL) {
        const nh_conf_node *ml = NULL;
        if (required(metrics, "listen", &ml, err) != 0) return -1;
        const char *unused;
        if (nh_conf_string(metrics, "listen", NULL, &unused, err) != 0) return -1;
        if (check_address(ml, err) != 0) return -1;
        if ((c->metrics_listen = strdup(ml->value)) == NULL) return oom(err);
    }

    if (resolve_node(c, root, node, file_id, id_override, err) != 0) return -1;
    if (c->metrics_listen != NULL && strcmp(c->metrics_listen, c->listen) == 0) {
        return nh_conf_error(nh_conf_get(nh_conf_get(root, "metrics"), "listen"), err,
                             "%s is the node's own listen address (use another port)",
                             c->metrics_listen);
    }
    if (c->tls.on && c->tls.clients == NH_TLS_CLIENTS_NONE) {
        for (size_t i = 0; i < c->peer_count; i++) {
            if (c->peers[i].id != c->node_id) {
                return nh_conf_error(nh_conf_get(nh_conf_get(root, "tls"), "clients"), err,
                                     "none leaves the known peers unable to prove their IDs "
                                     "(use require or optional)");
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

/* Takes the document (freed on failure). */
static int finish(nh_host_config *c, uint32_t id_override, nh_host_config **out, nh_error *err) {
    if (id_override > NH_HOST_MAX_NODE_ID) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                     "--id %" PRIu32 ": must be between 1 and %u", id_override,
                     NH_HOST_MAX_NODE_ID);
        nh_host_config_free(c);
        return -1;
    }
    if (read_config(c, id_override, err) != 0) {
        nh_host_config_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

int nh_host_config_parse(const char *file_label, const char *dir, const char *text, size_t len,
                         uint32_t id_override, nh_host_config **out, nh_error *err) {
    *out = NULL;
    nh_host_config *c = calloc(1, sizeof *c);
    if (c == NULL) return oom(err);
    c->file = strdup(file_label != NULL ? file_label : "<config>");
    c->dir = strdup(dir != NULL ? dir : ".");
    if (c->file == NULL || c->dir == NULL) {
        nh_host_config_free(c);
        return oom(err);
    }
    if (nh_conf_doc_parse(c->file, text, len, &c->doc, err) != 0) {
        nh_host_config_free(c);
        return -1;
    }
    return finish(c, id_override, out, err);
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

int nh_host_config_load(const char *path, uint32_t id_override, nh_host_config **out,
                        nh_error *err) {
    *out = NULL;
    nh_host_config *c = calloc(1, sizeof *c);
    if (c == NULL) return oom(err);
    c->file = strdup(path);
    if (c->file == NULL) {
        nh_host_config_free(c);
        return oom(err);
    }
    if (nh_conf_doc_load(path, &c->doc, err) != 0) {
        nh_host_config_free(c);
        return -1;
    }
    c->dir = file_dir(path, err);
    if (c->dir == NULL) {
        nh_host_config_free(c);
        return -1;
    }
    return finish(c, id_override, out, err);
}
