/* The nodehost configuration file: schema, defaults and checks.
 *
 * ```yaml
 * version: 1                                   # required, must be 1
 * node: { id: 1, listen: 127.0.0.1:7001 }      # id 1..1048575; --id N selects/overrides it
 * peers:                                       # known peers (Config); IDs and addresses unique
 *   - { id: 1, address: 127.0.0.1:7001 }
 *   - { id: 2, address: "[::1]:7002" }
 * clients: { accept: true, max: 10000 }        # client peers (ClientConfig); max 1..1000000
 * plugins:
 *   - name: storage                            # [a-z0-9_-]{1,63}, unique
 *     path: storage.so                         # relative to this file's directory; must exist
 *     config: { }                              # any YAML, handed to the plugin untouched
 * reload:                                      # hot reload (SIGHUP and the admin RPC work
 *                                              # without this section)
 *   watch: false                               # watch the plugin files and reload when their
 *                                              # content changes (SHA-256); default false
 *   debounce_ms: 200                           # quiet time after the last change before
 *                                              # reloading, 10..60000; default 200
 * limits: { max_message_size: 4Mi, max_inbox: 1024, shutdown_grace_ms: 5000,
 *           max_queued_reply_bytes: 16Mi, slow_reader_timeout_ms: 30000 }
 * keepalive: { time_ms: 1000, timeout_ms: 2000 }  # peer liveness pings: 100..3600000 and
 *                                              # 100..600000; a dead peer leaves Config
 *                                              # after about time_ms + timeout_ms
 * log: { level: info, format: text, access: off }  # error|warn|info|debug, text|json,
 *                                              # access log: off, all or a fraction 0..1
 * tls: { cert: .., key: .., ca: .., clients: require }   # see security_config.h, with
 * admin: { allow: [..], allow_plaintext_from: [..] }    # peers[i].identity, plugins[i].allow
 * metrics: { listen: 127.0.0.1:9101 }          # HTTP: /metrics, /healthz, /readyz
 * ```
 *
 * Every error is `FILE:LINE:COL: PATH: message` (see nodehost/conf.h and yaml_tree.h). Unknown
 * keys are errors everywhere except inside plugins[i].config. A key written with no value (or
 * `~`, `null`) counts as absent where the key is optional and is an error (`has no value`)
 * where it is required. Numbers and booleans may be quoted (`id: "${ID}"`).
 *
 * Where errors without a natural position point:
 *   - `missing required key 'k'` is at the enclosing map's value position (for the root, where
 *     the top-level map starts: the first key), with the map's path;
 *   - the empty file: `FILE:1:1: the file is empty (expected a map with 'version')`;
 *   - no node ID at all: `node.id: missing (set node.id or pass --id N)` at the `node` map when
 *     there is one, else at the top-level map;
 *   - node.listen needed (no peers, no listen): `node.listen: missing (required when there are
 *     no peers)`, same position rule;
 *   - the node is not among the peers: with node.id from the file at node.id's value
 *     (`node.id: node 4 is not among the peers (IDs 1, 2, 3)`); with --id at the `peers` key
 *     (`--id 4: node 4 is not among the peers (IDs 1, 2, 3)`);
 *   - a duplicate peer ID/address or plugin name: at the second one, naming the first and its
 *     line.
 * Checks run in this order, so a file with several mistakes reports the first: version, the
 * top-level keys, node, peers, clients, plugins, reload, limits, keepalive, log, tls, admin,
 * metrics, then the node against the peers and node.listen, then tls.clients against the peers. The
 * TLS files themselves are read by nh_host_tls_load() (start, --check-config, reload). */
#ifndef NH_HOST_CONFIG_H
#define NH_HOST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nodehost/conf.h>

#include "config/security_config.h"
#include "config/yaml_tree.h"

/** The largest node ID (IDs are 1..NH_HOST_MAX_NODE_ID). */
#define NH_HOST_MAX_NODE_ID 1048575u

/** keepalive.time_ms and keepalive.timeout_ms when absent. */
#define NH_HOST_KEEPALIVE_TIME_MS    1000
#define NH_HOST_KEEPALIVE_TIMEOUT_MS 2000

/** One entry of `peers`. */
typedef struct nh_host_peer {
    uint32_t id;               /**< 1..NH_HOST_MAX_NODE_ID, unique */
    char *address;             /**< "host:port" as written (after ${VAR} expansion), unique */
    const nh_conf_node *where; /**< the peer's map in the tree (for later messages) */
    char *identity; /**< peers[i].identity: what its certificate must carry; NULL: default */
} nh_host_peer;

/** One entry of `plugins`. */
typedef struct nh_host_plugin {
    char *name;                 /**< [a-z0-9_-]{1,63}, unique */
    char *path;                 /**< absolute: the file's directory joined with a relative path
                                     (symbolic links are not resolved); an existing regular file */
    const nh_conf_node *config; /**< the plugin's `config` subtree, NULL when absent or null */
    const nh_conf_node *where;  /**< the plugin's map in the tree */
    nh_host_allow allow;        /**< plugins[i].allow: client identities that may call it */
} nh_host_plugin;

/** log.format */
typedef enum nh_host_log_format { NH_LOGFMT_TEXT = 0, NH_LOGFMT_JSON = 1 } nh_host_log_format;

/** A checked configuration. Every field is filled (defaults applied). */
typedef struct nh_host_config {
    char *file;       /**< the path as given */
    char *dir;        /**< absolute directory of the file (the directory holding the name given;
                           a symbolic link to the file itself is not followed) */
    nh_conf_doc *doc; /**< owns the tree (plugin configs and `where` point into it) */

    uint32_t node_id;     /**< --id when given, else node.id */
    uint32_t id_override; /**< the --id given to the load (0: none), for reloading the file */
    char *listen;         /**< node.listen, else the address of the peer with node_id */

    nh_host_peer *peers; /**< in file order */
    size_t peer_count;

    bool clients_accept; /**< clients.accept, default true */
    size_t clients_max;  /**< clients.max, 1..1000000, default 10000 */

    nh_host_plugin *plugins; /**< in file order */
    size_t plugin_count;

    bool reload_watch;           /**< reload.watch, default false */
    uint32_t reload_debounce_ms; /**< reload.debounce_ms, 10..60000, default 200 */

    size_t max_message_size;    /**< limits.max_message_size, 1Ki..64Mi, default 4Mi */
    size_t max_inbox;           /**< limits.max_inbox, 1..1000000, default 1024 */
    uint32_t shutdown_grace_ms; /**< limits.shutdown_grace_ms, 0..600000, default 5000 */
    /** limits.max_queued_reply_bytes, 64Ki..1Gi, default 16Mi: unsent reply bytes per accepted
     * stream before the stream stops reading requests */
    size_t max_queued_reply_bytes;
    /** limits.slow_reader_timeout_ms, 100..3600000, default 30000: how long a stream may stay
     * over max_queued_reply_bytes before it is ended */
    uint32_t slow_reader_timeout_ms;

    uint32_t keepalive_time_ms;    /**< keepalive.time_ms, 100..3600000, default 1000 */
    uint32_t keepalive_timeout_ms; /**< keepalive.timeout_ms, 100..600000, default 2000 */

    nh_host_tls tls;           /**< the tls section (tls.on false: plaintext) */
    char *metrics_listen;      /**< metrics.listen: the HTTP endpoint (NULL: none) */
    nh_host_allow admin_allow; /**< admin.allow */
    nh_host_cidr *admin_nets;  /**< admin.allow_plaintext_from */
    size_t admin_net_count;

    int log_level;                 /**< 0 error, 1 warn, 2 info (default), 3 debug */
    nh_host_log_format log_format; /**< default text */
    double log_access;             /**< log.access: fraction of calls in the access log, 0..1
                                        (off: 0, the default; all: 1) */
} nh_host_config;

/** dir joined with rel (rel as is when absolute); malloc'ed, NULL when out of memory. Relative
 * paths of the file (plugins, TLS files) are resolved with it. */
char *nh_host_join_path(const char *dir, const char *rel);

/**
 * Reads and checks the configuration file at path. id_override: 0 uses node.id from the file;
 * otherwise it selects the node (--id N), winning over node.id; it must be 1..1048575.
 * Returns 0 with *out set, or -1 with err (`FILE:LINE:COL: ...`) and *out NULL.
 */
int nh_host_config_load(const char *path, uint32_t id_override, nh_host_config **out,
                        nh_error *err);

/**
 * Same from text in memory (tests, fuzzing): file_label names the file in messages, dir is the
 * directory relative plugin paths are resolved against (used as given).
 */
int nh_host_config_parse(const char *file_label, const char *dir, const char *text, size_t len,
                         uint32_t id_override, nh_host_config **out, nh_error *err);

/** Frees a configuration and its document. Accepts NULL. */
void nh_host_config_free(nh_host_config *c);

#endif
