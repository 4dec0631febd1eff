/* The security settings of the configuration file (see security_config.h): reading and checking
 * `tls` and `admin`, loading the TLS files with positions in errors, and the allow checks. */
#include "config/security_config.h"

#include "config/host_config.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const char *const tls_keys[] = {"cert", "key", "ca", "clients", NULL};
static const char *const admin_keys[] = {"allow", "allow_plaintext_from", NULL};
static const char *const clients_words[] = {"require", "optional", "none", NULL};

/* Records "out of memory". Returns -1: reading stops. */
static int oom(nh_error_list *errs) {
    nh_error_list_addf(errs, NH_RESOURCE_EXHAUSTED, "out of memory");
    return -1;
}

static bool is_null(const nh_conf_node *n) {
    return n && n->kind == NH_CONF_SCALAR && !n->quoted && n->value[0] == '\0';
}

/* The readers below record every error in errs and go on; they return 0, or -1 only when memory
 * ran out. */

/* Checks the keys of map (a map) one by one, as host_config.c does, so that every unknown key is
 * recorded. Returns the number of unknown keys. */
static int check_keys(const nh_conf_node *map, const char *const *allowed, nh_error_list *errs) {
    int unknown = 0;
    nh_error e;
    for (size_t i = 0; i < map->count; i++) {
        nh_conf_node one = *map;
        one.items = &map->items[i];
        one.count = 1;
        if (nh_conf_check_keys(&one, allowed, &e) != 0) {
            nh_error_list_add(errs, &e);
            unknown++;
        }
    }
    return unknown;
}

/* A required non-empty string member of the tls map, as an absolute path. A missing member is
 * not reported when quiet (the map has unknown keys: one of them is likely it, misspelt). */
static int tls_file(const nh_host_config *c, const nh_conf_node *tls, const char *key, bool quiet,
                    char **out, const nh_conf_node **where, nh_error_list *errs) {
    nh_error e;
    const nh_conf_node *n = nh_conf_get(tls, key);
    const char *s;
    if (!n) {
        if (!quiet) nh_error_list_add_at(errs, tls, "missing required key '%s'", key);
    } else if (is_null(n)) {
        nh_error_list_add_at(errs, n, "has no value");
    } else if (nh_conf_string(tls, key, NULL, &s, &e) != 0) {
        nh_error_list_add(errs, &e);
    } else if (!*s) {
        nh_error_list_add_at(errs, n, "must not be empty");
    } else {
        *out = nh_host_join_path(c->dir, s);
        *where = n;
        if (!*out) return oom(errs);
    }
    return 0;
}

int nh_host_read_tls(nh_host_config *c, const nh_conf_node *root, nh_error_list *errs) {
    nh_error e;
    const nh_conf_node *tls = nh_conf_get(root, "tls");
    if (!tls || is_null(tls)) return 0;
    if (tls->kind != NH_CONF_MAP) {
        nh_error_list_add_at(errs, tls, "must be a map");
        return 0;
    }
    bool unknown = check_keys(tls, tls_keys, errs) > 0;
    c->tls.on = true;
    if (tls_file(c, tls, "cert", unknown, &c->tls.cert, &c->tls.cert_node, errs) != 0 ||
        tls_file(c, tls, "key", unknown, &c->tls.key, &c->tls.key_node, errs) != 0 ||
        tls_file(c, tls, "ca", unknown, &c->tls.ca, &c->tls.ca_node, errs) != 0)
        return -1;
    const char *word;
    c->tls.clients = NH_TLS_CLIENTS_REQUIRE;
    if (nh_conf_string(tls, "clients", NULL, &word, &e) != 0) {
        nh_error_list_add(errs, &e);
    } else if (word) {
        int i = 0;
        while (clients_words[i] && strcmp(clients_words[i], word) != 0)
            i++;
        if (clients_words[i])
            c->tls.clients = (nh_tls_clients)i;
        else
            nh_error_list_add_at(errs, nh_conf_get(tls, "clients"),
                                 "must be one of require, optional, none, got \"%.60s\"", word);
    }
    return 0;
}

int nh_host_read_allow(const nh_conf_node *map, const char *key, nh_host_allow *out,
                       nh_error_list *errs) {
    memset(out, 0, sizeof *out);
    const nh_conf_node *list = nh_conf_get(map, key);
    if (!list || is_null(list)) return 0;
    if (list->kind != NH_CONF_LIST) {
        nh_error_list_add_at(errs, list, "must be a list of identities (strings)");
        return 0;
    }
    out->set = true;
    out->names = calloc(list->count ? list->count : 1, sizeof *out->names);
    if (!out->names) return oom(errs);
    for (size_t i = 0; i < list->count; i++) {
        const nh_conf_node *it = &list->items[i];
        if (it->kind != NH_CONF_SCALAR || is_null(it) || !it->value[0]) {
            nh_error_list_add_at(errs, it, "must be an identity (a non-empty string)");
            continue;
        }
        out->names[out->count] = strdup(it->value);
        if (!out->names[out->count]) return oom(errs);
        out->count++;
    }
    return 0;
}

void nh_host_allow_free(nh_host_allow *a) {
    for (size_t i = 0; i < a->count; i++)
        free(a->names[i]);
    free(a->names);
    memset(a, 0, sizeof *a);
}

/* "10.0.0.0/8", "::1/128", or a single address. */
static bool parse_cidr(const char *s, nh_host_cidr *out) {
    char buf[64];
    if (strlen(s) >= sizeof buf) return false;
    strcpy(buf, s);
    char *slash = strchr(buf, '/');
    long prefix = -1;
    if (slash) {
        *slash = '\0';
        char *end;
        prefix = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || prefix < 0) return false;
    }
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        if (prefix > 32) return false;
        out->prefix = prefix < 0 ? 32 : (unsigned)prefix;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        if (prefix > 128) return false;
        out->prefix = prefix < 0 ? 128 : (unsigned)prefix;
    } else {
        return false;
    }
    return true;
}

int nh_host_read_admin(nh_host_config *c, const nh_conf_node *root, nh_error_list *errs) {
    const nh_conf_node *admin = nh_conf_get(root, "admin");
    if (!admin || is_null(admin)) return 0;
    if (admin->kind != NH_CONF_MAP) {
        nh_error_list_add_at(errs, admin, "must be a map");
        return 0;
    }
    check_keys(admin, admin_keys, errs);
    if (nh_host_read_allow(admin, "allow", &c->admin_allow, errs) != 0) return -1;
    const nh_conf_node *nets = nh_conf_get(admin, "allow_plaintext_from");
    if (!nets || is_null(nets)) return 0;
    if (nets->kind != NH_CONF_LIST) {
        nh_error_list_add_at(errs, nets,
                             "must be a list of addresses or prefixes (\"10.0.0.0/8\")");
        return 0;
    }
    if (c->tls.on) {
        nh_error_list_add_at(errs, nets,
                             "applies only without tls (with tls, list the callers' certificate "
                             "identities in admin.allow)");
        return 0;
    }
    c->admin_nets = calloc(nets->count ? nets->count : 1, sizeof *c->admin_nets);
    if (!c->admin_nets) return oom(errs);
    for (size_t i = 0; i < nets->count; i++) {
        const nh_conf_node *it = &nets->items[i];
        if (it->kind != NH_CONF_SCALAR ||
            !parse_cidr(it->value, &c->admin_nets[c->admin_net_count]))
            nh_error_list_add_at(errs, it,
                                 "must be an IP address or prefix such as \"10.0.0.0/8\" or "
                                 "\"fd00::/8\"");
        else
            c->admin_net_count++;
    }
    return 0;
}

void nh_host_security_free(nh_host_config *c) {
    free(c->tls.cert);
    free(c->tls.key);
    free(c->tls.ca);
    nh_host_allow_free(&c->admin_allow);
    free(c->admin_nets);
    for (size_t i = 0; i < c->plugin_count; i++)
        nh_host_allow_free(&c->plugins[i].allow);
    for (size_t i = 0; i < c->peer_count; i++)
        free(c->peers[i].identity);
}

int nh_host_tls_load(const nh_host_config *c, nh_tls *target, nh_tls **out, nh_error *err) {
    const char *expect = NULL;
    for (size_t i = 0; i < c->peer_count; i++)
        if (c->peers[i].id == c->node_id) expect = c->peers[i].identity;
    nh_tls_opts o = {.cert_file = c->tls.cert,
                     .key_file = c->tls.key,
                     .ca_file = c->tls.ca,
                     .clients = c->tls.clients,
                     .node_id = c->node_id,
                     .expect_identity = expect};
    nh_tls_field which = NH_TLS_FIELD_NONE;
    nh_error e;
    int rc = target ? nh_tls_update(target, &o, &which, &e) : nh_tls_new(&o, out, &which, &e);
    if (rc == 0) return 0;
    const nh_conf_node *at = which == NH_TLS_FIELD_KEY  ? c->tls.key_node
                             : which == NH_TLS_FIELD_CA ? c->tls.ca_node
                                                        : c->tls.cert_node;
    return nh_conf_error(at, err, "%s", e.message);
}

/* The address of a gRPC peer string ("ipv4:10.0.0.1:5555", "ipv6:[fd00::1]:5555"). */
static bool peer_address(const char *peer, nh_host_cidr *out) {
    char buf[64];
    const char *p;
    memset(out, 0, sizeof *out);
    if (!strncmp(peer, "ipv4:", 5)) {
        p = peer + 5;
        const char *colon = strrchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        if (n >= sizeof buf) return false;
        memcpy(buf, p, n);
        buf[n] = '\0';
        out->family = AF_INET;
        return inet_pton(AF_INET, buf, out->addr) == 1;
    }
    if (!strncmp(peer, "ipv6:", 5)) {
        p = peer + 5;
        if (*p == '[') p++;
        const char *end = strchr(p, ']');
        if (!end) end = strrchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n >= sizeof buf) return false;
        memcpy(buf, p, n);
        buf[n] = '\0';
        char *pct = strchr(buf, '%'); /* a zone */
        if (pct) *pct = '\0';
        out->family = AF_INET6;
        return inet_pton(AF_INET6, buf, out->addr) == 1;
    }
    return false;
}

static bool cidr_match(const nh_host_cidr *net, const nh_host_cidr *a) {
    if (net->family != a->family) return false;
    unsigned full = net->prefix / 8, rest = net->prefix % 8;
    if (memcmp(net->addr, a->addr, full) != 0) return false;
    if (!rest) return true;
    uint8_t mask = (uint8_t)(0xFF00u >> rest);
    return (net->addr[full] & mask) == (a->addr[full] & mask);
}

bool nh_host_admin_allowed(const nh_host_config *c, const nh_server_ctx *ctx, char *why,
                           size_t why_size) {
    if (nh_ctx_peer_kind(ctx) == NH_PEER_SELF) return true;
    const char *who = nh_ctx_caller_identity(ctx);
    if (c->tls.on) {
        char uri[40];
        for (size_t i = 0; i < c->peer_count; i++) {
            const char *member = c->peers[i].identity
                                     ? c->peers[i].identity
                                     : nh_tls_node_uri(c->peers[i].id, uri, sizeof uri);
            if (nh_ctx_caller_has_identity(ctx, member)) return true;
        }
        if (!c->peer_count &&
            nh_ctx_caller_has_identity(ctx, nh_tls_node_uri(c->node_id, uri, sizeof uri)))
            return true;
        for (size_t i = 0; i < c->admin_allow.count; i++)
            if (nh_ctx_caller_has_identity(ctx, c->admin_allow.names[i])) return true;
        snprintf(why, why_size,
                 "caller %s (%s) is not allowed to call the admin methods: list its certificate "
                 "identity in admin.allow",
                 who ? who : "without a certificate", nh_ctx_peer(ctx));
        return false;
    }
    if (nh_ctx_caller_is_local(ctx)) return true;
    nh_host_cidr a;
    if (peer_address(nh_ctx_peer(ctx), &a))
        for (size_t i = 0; i < c->admin_net_count; i++)
            if (cidr_match(&c->admin_nets[i], &a)) return true;
    snprintf(why, why_size,
             "caller %s is not allowed to call the admin methods: without tls only loopback "
             "and admin.allow_plaintext_from may",
             nh_ctx_peer(ctx));
    return false;
}

bool nh_host_plugin_allowed(const nh_host_allow *allow, const nh_server_ctx *ctx) {
    if (!allow || !allow->set) return true;
    nh_peer_kind k = nh_ctx_peer_kind(ctx);
    if (k == NH_PEER_SELF || k == NH_PEER_KNOWN || k == NH_PEER_SERVER) return true;
    for (size_t i = 0; i < allow->count; i++)
        if (nh_ctx_caller_has_identity(ctx, allow->names[i])) return true;
    return false;
}

bool nh_host_listen_is_loopback(const char *listen) {
    if (!strncmp(listen, "unix:", 5)) return true;
    char host[256];
    const char *colon = strrchr(listen, ':');
    size_t hl = colon ? (size_t)(colon - listen) : 0;
    if (!colon || hl == 0 || hl >= sizeof host) return false;
    memcpy(host, listen, hl);
    host[hl] = '\0';
    char *h = host;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        h = host + 1;
    }
    /* Every address the name resolves to must be a loopback one. */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(h, NULL, &hints, &res) != 0) return false;
    bool all = res != NULL;
    for (struct addrinfo *ai = res; ai && all; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            const uint8_t *a = (const uint8_t *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
            all = a[0] == 127;
        } else if (ai->ai_family == AF_INET6) {
            const struct in6_addr *a = &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
            all = IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
        } else {
            all = false;
        }
    }
    freeaddrinfo(res);
    return all;
}
