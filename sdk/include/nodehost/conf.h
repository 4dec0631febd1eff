/* nodehost: a read-only configuration tree (a plugin's YAML subtree) and typed getters that
 * report errors as `file:line:col: message`. */
#ifndef NODEHOST_CONF_H
#define NODEHOST_CONF_H

#include <nodehost/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The kind of a configuration node. */
typedef enum nh_conf_kind {
    NH_CONF_SCALAR = 1, /**< a scalar (text) */
    NH_CONF_MAP = 2,    /**< a mapping: items are its members, each with a key */
    NH_CONF_LIST = 3,   /**< a sequence: items are its elements */
} nh_conf_kind;

/**
 * One node of a configuration tree, as read from YAML by the host. Plain, immutable data owned by
 * the host: valid while the plugin generation that received it lives (copy what you keep).
 * Positions are 1-based; `file` is the configuration file's path.
 */
typedef struct nh_conf_node nh_conf_node;
struct nh_conf_node {
    nh_conf_kind kind;          /**< scalar, map or list */
    const char *key;            /**< this node's key in its parent map, or NULL */
    const char *value;          /**< scalar text after ${VAR} expansion; NULL otherwise */
    bool quoted;                /**< scalar was written quoted: always a string */
    const nh_conf_node *items;  /**< members (map, in file order) or elements (list) */
    size_t count;               /**< number of items */
    const nh_conf_node *parent; /**< the enclosing map or list, NULL for the root */
    size_t index;               /**< position among the parent's items */
    const char *file;           /**< the file this node was read from */
    uint32_t line, col;         /**< where the value starts (1-based) */
    uint32_t key_line, key_col; /**< where the key starts (map members), else = line, col */
};

/** The member of a map with this key, or NULL (also when map is NULL or not a map). */
NH_API const nh_conf_node *nh_conf_get(const nh_conf_node *map, const char *key);

/**
 * Writes the dotted path of a node into buf ("plugins[0].config.replicas"; the root is "").
 * Returns buf.
 */
NH_API char *nh_conf_path(const nh_conf_node *n, char *buf, size_t size);

/**
 * Sets err to `file:line:col: <path>: <message>` at node n's value position (NH_INVALID_ARGUMENT,
 * NH_ERR_LOCAL). With n NULL, only the message. Returns -1.
 */
NH_API int nh_conf_error(const nh_conf_node *n, nh_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Checks that map is a map (or NULL: nothing to check) whose keys are all in the
 * NULL-terminated list `allowed` and appear once. Unknown key:
 * `file:line:col: <path>: unknown key 'k' (expected one of: a, b)`. Returns 0 or -1 with err.
 */
NH_API int nh_conf_check_keys(const nh_conf_node *map, const char *const *allowed, nh_error *err);

/**
 * Reads map[key] as an integer in [min, max] (decimal, or 0x hex; suffixes k, M, G, Ki, Mi, Gi
 * accepted when `sizes` is true). Absent: *out = def. Returns 0 or -1 with err naming the
 * position, the key and what was expected.
 */
NH_API int nh_conf_int(const nh_conf_node *map, const char *key, int64_t def, int64_t min,
                       int64_t max, bool sizes, int64_t *out, nh_error *err);

/** Reads map[key] as a boolean (true/false, yes/no, on/off). Absent: *out = def. */
NH_API int nh_conf_bool(const nh_conf_node *map, const char *key, bool def, bool *out,
                        nh_error *err);

/** Reads map[key] as a string scalar (borrowed from the tree). Absent: *out = def. A map or a
 * list where a string is expected is an error. */
NH_API int nh_conf_string(const nh_conf_node *map, const char *key, const char *def,
                          const char **out, nh_error *err);

#ifdef __cplusplus
}
#endif
#endif
