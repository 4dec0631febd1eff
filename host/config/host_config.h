/* The nodehost configuration file: schema, defaults and checks.
 *
 * ```yaml
 * version: 1                                   # required, must be 1
 * node: { id: 1, listen: 127.0.0.1:7001 }      # id 1..1048575; --id N selects/overrides it
 * peers:                                       # known peers (Config); IDs and addresses unique
 *   - { id: 1, address: 127.0.0.1:7001 }
 *   - { id: 2, address: "[::1]:7002" }
 * threads: 2                                   # event loops, 1..64; default: the number of
 *                                              # cores (NH_THREADS when set); see
 *                                              # nh_runtime_opts.threads
 * clients: { accept: true, max: 10000 }        # client peers (ClientConfig); max 1..1000000
 *                                              # max_per_connection: 1..1000000, default 1000
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
 * Every error of a file is found, not only the first (nh_host_config_read() lists them all, in
 * file order; nh_host_config_load() reports the first of them). Reading goes on after an error
 * wherever the rest still means something:
 *   - it stops at once when the file is not YAML (syntax, aliases, duplicate keys...: the first
 *     such error only), is empty, its top level is not a map, or `version` is there but not 1
 *     (another schema; a missing `version` is reported and the file read as version 1);
 *   - every unknown key is reported; in a map with an unknown key, `missing required key`
 *     errors are not (the unknown key is most likely the missing one misspelt);
 *   - a section that is not a map (or list) is reported and skipped; each key of a section is
 *     checked on its own; each peer and each plugin entry is checked on its own, and only
 *     those without errors count for the duplicate checks of later ones;
 *   - the checks across sections (the node against the peers, node.listen needed, metrics.listen
 *     against the node's, tls.clients against the peers) run only when the top-level keys, node
 *     and peers (and tls) read without error, as their verdicts would otherwise follow from
 *     those errors.
 * The TLS files themselves are read by nh_host_tls_load() (start, --check-config, reload). */
#ifndef NH_HOST_CONFIG_H
#define NH_HOST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nodehost/conf.h>
#include <nodehost/runtime.h>

#include "config/error_list.h"
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
    /** clients.max_per_connection: client-peer streams one connection may hold, 1..1000000,
     * default 1000 */
    size_t clients_max_per_connection;

    nh_host_plugin *plugins; /**< in file order */
    size_t plugin_count;
    /** The `plugins` list read without error, so every entry is in plugins[] and the plugins can
     * be loaded and checked; always true in a configuration that loaded (it matters only in the
     * partial configuration nh_host_config_read() returns with errors). */
    bool plugins_clean;

    bool reload_watch;           /**< reload.watch, default false */
    uint32_t reload_debounce_ms; /**< reload.debounce_ms, 10..60000, default 200 */

    /** threads, 1..64: the node's event loops (nh_runtime_opts.threads); 0 when the file does
     * not set it (nh_host_threads() then picks) */
    uint32_t threads;

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

/** The event loops a node of c runs: c->threads when set, else NH_THREADS when set (its
 * checks are nh_runtime_new()'s), else the number of online cores, at most NH_MAX_THREADS. 0
 * means "let nh_runtime_new() read NH_THREADS". */
unsigned nh_host_threads(const nh_host_config *c);

/** dir joined with rel (rel as is when absolute); malloc'ed, NULL when out of memory. Relative
 * paths of the file (plugins, TLS files) are resolved with it. */
char *nh_host_join_path(const char *dir, const char *rel);

/**
 * Reads and checks the configuration file at path. id_override: 0 uses node.id from the file;
 * otherwise it selects the node (--id N), winning over node.id; it must be 1..1048575.
 * Returns 0 with *out set, or -1 with err (`FILE:LINE:COL: ...`, the first error of the file)
 * and *out NULL.
 */
int nh_host_config_load(const char *path, uint32_t id_override, nh_host_config **out,
                        nh_error *err);

/**
 * Same from text in memory (tests, fuzzing): file_label names the file in messages, dir is the
 * directory relative plugin paths are resolved against (used as given).
 */
int nh_host_config_parse(const char *file_label, const char *dir, const char *text, size_t len,
                         uint32_t id_override, nh_host_config **out, nh_error *err);

/**
 * Reads and checks the configuration file at path like nh_host_config_load(), but records every
 * error in errs (in file order, see the top of this file) instead of the first one only.
 * Returns 0 with *out set when there is none. Otherwise returns -1 with *out either NULL (nothing
 * more can be checked: the file does not read, is empty or not a map, has another version, or
 * memory ran out) or a partial configuration for further checks only, never to run: what read
 * without error is filled in, defaults elsewhere; plugins_clean says whether its plugins can be
 * checked. Free it with nh_host_config_free().
 */
int nh_host_config_read(const char *path, uint32_t id_override, nh_host_config **out,
                        nh_error_list *errs);

/** nh_host_config_read() from text in memory (see nh_host_config_parse()). */
int nh_host_config_read_text(const char *file_label, const char *dir, const char *text, size_t len,
                             uint32_t id_override, nh_host_config **out, nh_error_list *errs);

/** Frees a configuration and its document. Accepts NULL. */
void nh_host_config_free(nh_host_config *c);

#endif
