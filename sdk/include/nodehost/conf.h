/* nodehost: a read-only configuration tree (a plugin's YAML subtree) and typed getters that
 * report errors as `file:line:col: path: message`.
 *
 * Conventions shared by every function here:
 *   - Messages are `file:line:col: path: message` with 1-based positions and the path as
 *     nh_conf_path() writes it; when the path is empty (the root) the form is
 *     `file:line:col: message`. Errors are NH_INVALID_ARGUMENT, kind NH_ERR_LOCAL.
 *   - A scalar written as nothing, `~` or `null` (unquoted) is a "null": value "" and quoted
 *     false. The getters treat a null member like an absent one (the default applies).
 *   - Numbers and booleans may be written quoted (`id: "${ID}"`); `quoted` only matters to
 *     code that wants to tell "null" the word from a null. */
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
 * NH_ERR_LOCAL); for the root, `file:line:col: <message>`. With n NULL, only the message.
 * Returns -1.
 */
NH_API int nh_conf_error(const nh_conf_node *n, nh_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Checks that map is a map (or NULL: nothing to check) whose keys are all in the
 * NULL-terminated list `allowed` and appear once. Unknown key, at the key's position with the
 * map's path: `file:line:col: <path>: unknown key 'k' (expected one of: a, b)` (with one allowed
 * key:
 * `(expected: a)`). Not a map:
 * `<path>: must be a map, got a list` (or `got "text"`). Returns 0 or -1 with err.
 */
NH_API int nh_conf_check_keys(const nh_conf_node *map, const char *const *allowed, nh_error *err);

/**
 * Reads map[key] as an integer in [min, max] (optional sign, decimal or 0x hex; with `sizes`
 * one suffix of k, M, G (x1000) or Ki, Mi, Gi (x1024)). Absent or null: *out = def. Returns 0
 * or -1 with err: `<path>: must be an integer, got "abc"` (with sizes: `must be a size (...)`),
 * `<path>: must be between 1 and 1048575, got 0` (with sizes the bounds read 1Ki, 64Mi).
 */
NH_API int nh_conf_int(const nh_conf_node *map, const char *key, int64_t def, int64_t min,
                       int64_t max, bool sizes, int64_t *out, nh_error *err);

/** Reads map[key] as a boolean (true/false, yes/no, on/off, any case). Absent or null:
 * *out = def. Else `<path>: must be a boolean (true or false), got "maybe"`. */
NH_API int nh_conf_bool(const nh_conf_node *map, const char *key, bool def, bool *out,
                        nh_error *err);

/** Reads map[key] as a string scalar (borrowed from the tree). Absent or null: *out = def. A map
 * or a list where a string is expected is an error (`<path>: must be a string, got a map`). */
NH_API int nh_conf_string(const nh_conf_node *map, const char *key, const char *def,
                          const char **out, nh_error *err);

#ifdef __cplusplus
}
#endif
#endif
