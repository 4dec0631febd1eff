/* Reads a YAML file into an nh_conf_node tree (nodehost/conf.h) with 1-based positions.
 *
 * What the reader accepts: one document of maps, lists and scalars. Errors, all
 * `FILE:LINE:COL: message` (or `FILE: message` when there is no position):
 *   - syntax:            `YAML syntax error: <libyaml's problem> (<context> at line L, column C)`
 *   - more than one document, aliases and anchors, tags other than !!str, map keys that are not
 *     scalars, empty (null) map keys, NUL characters in a scalar;
 *   - duplicate keys:    `PATH: duplicate key 'id' (first at line N)` at the second key;
 *   - nesting deeper than NH_CONF_MAX_DEPTH maps/lists: `nesting deeper than 64 levels`;
 *   - files:             `FILE: cannot open: <strerror>`, `FILE: cannot read: <strerror>`.
 * (libyaml 0.2.5, Debian 12's, has no yaml_set_max_nest_level(): the depth limit is ours, and
 * libyaml's parser keeps its own stacks, so deep input cannot overflow the C stack.)
 *
 * Scalars:
 *   - quoted scalars ('...', "...", block scalars | and >, and !!str) have quoted = true;
 *   - a plain null (nothing, `~`, `null`, `Null`, `NULL`) is a scalar with value "" and
 *     quoted = false; the getters of conf.h treat it as absent;
 *   - environment expansion in scalar VALUES (never keys, never structure: the result is text):
 *     `${VAR}`, `${VAR:-default}` (default when VAR is unset or empty; the default is literal
 *     text up to the first `}`), `$$` is a literal `$`; any other `$` is literal. Errors at the
 *     scalar's position: `PATH: environment variable 'VAR' is not set (write ${VAR:-default}
 *     for a default)`, `PATH: unterminated '${' in "<value>"`,
 *     `PATH: bad environment variable name '1X' in "${1X}"` (names: [A-Za-z_][A-Za-z0-9_]*).
 *     A plain scalar that expands to "" counts as null (so `${X:-}` can leave an optional key
 *     unset).
 *
 * Positions: for a map member, key_line/key_col is where the key starts and line/col where its
 * value starts (for a null value written as nothing, libyaml's position of the missing value).
 * For list elements and the root, key_line/key_col = line/col. */
#ifndef NH_HOST_YAML_TREE_H
#define NH_HOST_YAML_TREE_H

#include <stddef.h>

#include <nodehost/conf.h>

/** Maps and lists nested deeper than this are refused. */
#define NH_CONF_MAX_DEPTH 64

/** A parsed document: owns the tree, its strings and the file label. */
typedef struct nh_conf_doc nh_conf_doc;

/**
 * Reads and parses the file at path; nodes' `file` is path as given. Returns 0 with *out set,
 * or -1 with err (NH_INVALID_ARGUMENT, NH_ERR_LOCAL) and *out NULL.
 */
int nh_conf_doc_load(const char *path, nh_conf_doc **out, nh_error *err);

/**
 * Parses len bytes of YAML text. file_label is used in positions and messages as the file name.
 * Returns 0 with *out set, or -1 with err and *out NULL.
 */
int nh_conf_doc_parse(const char *file_label, const char *text, size_t len, nh_conf_doc **out,
                      nh_error *err);

/**
 * The root node, or NULL when the document is empty (no document, only comments, or a null
 * scalar such as `---` alone or `~`). The tree lives as long as the document.
 */
const nh_conf_node *nh_conf_doc_root(const nh_conf_doc *d);

/** The file label given to load or parse (owned by the document). */
const char *nh_conf_doc_file(const nh_conf_doc *d);

/** Frees the document and its whole tree. Accepts NULL. */
void nh_conf_doc_free(nh_conf_doc *d);

#endif
