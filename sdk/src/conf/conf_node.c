/* The configuration tree's accessors and typed getters (nodehost/conf.h). The tree itself is
 * built by the host (host/config/yaml_tree.c); this file only reads it.
 *
 * Every error has the form `file:line:col: path: message` (1-based positions, the path as
 * nh_conf_path writes it). For the root the path is empty and the form is
 * `file:line:col: message`. */
#include <nodehost/conf.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* A null scalar (written as nothing, `~` or `null`, unquoted): the getters treat it as absent. */
static bool is_null(const nh_conf_node *n) {
    return n->kind == NH_CONF_SCALAR && !n->quoted && (n->value == NULL || n->value[0] == '\0');
}

/* What a node is, for "got ..." in messages: `a map`, `a list`, `an empty value` or "text". */
static const char *describe(const nh_conf_node *n, char *buf, size_t size) {
    if (n->kind == NH_CONF_MAP) return "a map";
    if (n->kind == NH_CONF_LIST) return "a list";
    if (is_null(n)) return "an empty value";
    const char *v = n->value != NULL ? n->value : "";
    snprintf(buf, size, "\"%.60s%s\"", v, strlen(v) > 60 ? "..." : "");
    return buf;
}

const nh_conf_node *nh_conf_get(const nh_conf_node *map, const char *key) {
    if (map == NULL || key == NULL || map->kind != NH_CONF_MAP) return NULL;
    for (size_t i = 0; i < map->count; i++) {
        if (map->items[i].key != NULL && strcmp(map->items[i].key, key) == 0) return &map->items[i];
    }
    return NULL;
}

/* Appends printf output at buf[pos], never past size - 1. Returns the new length (clamped). */
static size_t append(char *buf, size_t size, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t append(char *buf, size_t size, size_t pos, const char *fmt, ...) {
    if (pos + 1 >= size) return pos;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + pos, size - pos, fmt, ap);
    va_end(ap);
    if (n < 0) return pos;
    pos += (size_t)n;
    return pos < size ? pos : size - 1;
}

static size_t path_into(const nh_conf_node *n, char *buf, size_t size, size_t pos) {
    if (n == NULL || n->parent == NULL) return pos;
    pos = path_into(n->parent, buf, size, pos);
    if (n->parent->kind == NH_CONF_LIST) return append(buf, size, pos, "[%zu]", n->index);
    const char *key = n->key != NULL ? n->key : "?";
    return append(buf, size, pos, n->parent->parent == NULL ? "%s" : ".%s", key);
}

char *nh_conf_path(const nh_conf_node *n, char *buf, size_t size) {
    if (buf == NULL || size == 0) return buf;
    buf[0] = '\0';
    path_into(n, buf, size, 0);
    return buf;
}

/* The one error formatter: position (line, col) in n's file, the path of `path_of`. */
static int verror_at(const nh_conf_node *n, uint32_t line, uint32_t col,
                     const nh_conf_node *path_of, nh_error *err, const char *fmt, va_list ap) {
    char msg[NH_ERROR_MESSAGE_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (n == NULL) {
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s", msg);
    }
    char path[256];
    nh_conf_path(path_of, path, sizeof path);
    const char *file = n->file != NULL ? n->file : "<config>";
    if (path[0] == '\0') {
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "%s:%" PRIu32 ":%" PRIu32 ": %s", file, line, col, msg);
    }
    return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                        "%s:%" PRIu32 ":%" PRIu32 ": %s: %s", file, line, col, path, msg);
}

static int error_at(const nh_conf_node *n, uint32_t line, uint32_t col, const nh_conf_node *path_of,
                    nh_error *err, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int error_at(const nh_conf_node *n, uint32_t line, uint32_t col, const nh_conf_node *path_of,
                    nh_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror_at(n, line, col, path_of, err, fmt, ap);
    va_end(ap);
    return -1;
}

int nh_conf_error(const nh_conf_node *n, nh_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (n == NULL) {
        verror_at(NULL, 0, 0, NULL, err, fmt, ap);
    } else {
        verror_at(n, n->line, n->col, n, err, fmt, ap);
    }
    va_end(ap);
    return -1;
}

int nh_conf_check_keys(const nh_conf_node *map, const char *const *allowed, nh_error *err) {
    if (map == NULL) return 0;
    if (map->kind != NH_CONF_MAP) {
        char got[80];
        return nh_conf_error(map, err, "must be a map, got %s", describe(map, got, sizeof got));
    }
    for (size_t i = 0; i < map->count; i++) {
        const nh_conf_node *m = &map->items[i];
        const char *key = m->key != NULL ? m->key : "";
        bool known = false;
        for (size_t k = 0; allowed != NULL && allowed[k] != NULL; k++) {
            if (strcmp(allowed[k], key) == 0) {
                known = true;
                break;
            }
        }
        if (!known) {
            char list[200];
            size_t pos = 0, n = 0;
            list[0] = '\0';
            for (size_t k = 0; allowed != NULL && allowed[k] != NULL; k++, n++) {
                pos = append(list, sizeof list, pos, "%s%s", k > 0 ? ", " : "", allowed[k]);
            }
            if (n == 0) {
                return error_at(m, m->key_line, m->key_col, map, err,
                                "unknown key '%s' (no keys are allowed here)", key);
            }
            return error_at(m, m->key_line, m->key_col, map, err,
                            "unknown key '%s' (expected%s: %s)", key, n > 1 ? " one of" : "", list);
        }
        for (size_t j = 0; j < i; j++) {
            const nh_conf_node *first = &map->items[j];
            if (first->key != NULL && strcmp(first->key, key) == 0) {
                return error_at(m, m->key_line, m->key_col, map, err,
                                "duplicate key '%s' (first at line %" PRIu32 ")", key,
                                first->key_line);
            }
        }
    }
    return 0;
}

/* Parses an integer: optional sign, decimal or 0x hex, and with `sizes` one suffix of k, M, G
 * (powers of 1000) or Ki, Mi, Gi (powers of 1024). Returns 0, -1 for bad syntax, -2 when the
 * value does not fit in int64_t. */
static int parse_int(const char *s, bool sizes, int64_t *out) {
    bool neg = false;
    if (*s == '+' || *s == '-') neg = *s++ == '-';
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    uint64_t v = 0;
    bool overflow = false;
    size_t digits = 0;
    for (;; s++, digits++) {
        unsigned d;
        if (*s >= '0' && *s <= '9') {
            d = (unsigned)(*s - '0');
        } else if (base == 16 && *s >= 'a' && *s <= 'f') {
            d = (unsigned)(*s - 'a' + 10);
        } else if (base == 16 && *s >= 'A' && *s <= 'F') {
            d = (unsigned)(*s - 'A' + 10);
        } else {
            break;
        }
        if (v > (UINT64_MAX - d) / base) overflow = true;
        v = v * base + d;
    }
    if (digits == 0) return -1;
    if (sizes && *s != '\0') {
        static const struct {
            const char *suffix;
            uint64_t mult;
        } suffixes[] = {{"k", 1000},      {"M", 1000000},   {"G", 1000000000},
                        {"Ki", 1u << 10}, {"Mi", 1u << 20}, {"Gi", 1u << 30}};
        bool found = false;
        for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
            if (strcmp(s, suffixes[i].suffix) == 0) {
                if (v > UINT64_MAX / suffixes[i].mult) overflow = true;
                v *= suffixes[i].mult;
                s += strlen(suffixes[i].suffix);
                found = true;
                break;
            }
        }
        if (!found) return -1;
    }
    if (*s != '\0') return -1;
    if (overflow || v > (uint64_t)INT64_MAX + (neg ? 1u : 0u)) return -2;
    if (neg) {
        *out = v == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)v;
    } else {
        *out = (int64_t)v;
    }
    return 0;
}

/* Writes a bound for a range message: with sizes, 4194304 reads 4Mi. */
static const char *format_bound(int64_t v, bool sizes, char *buf, size_t size) {
    static const struct {
        const char *suffix;
        int64_t mult;
    } units[] = {{"Gi", INT64_C(1) << 30}, {"Mi", INT64_C(1) << 20}, {"Ki", INT64_C(1) << 10}};
    if (sizes && v > 0) {
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            if (v >= units[i].mult && v % units[i].mult == 0) {
                snprintf(buf, size, "%" PRId64 "%s", v / units[i].mult, units[i].suffix);
                return buf;
            }
        }
    }
    snprintf(buf, size, "%" PRId64, v);
    return buf;
}

/* The member, or NULL when it is absent or null (the getters treat both as absent). */
static const nh_conf_node *present(const nh_conf_node *map, const char *key) {
    const nh_conf_node *n = nh_conf_get(map, key);
    return n != NULL && !is_null(n) ? n : NULL;
}

int nh_conf_int(const nh_conf_node *map, const char *key, int64_t def, int64_t min, int64_t max,
                bool sizes, int64_t *out, nh_error *err) {
    const nh_conf_node *n = present(map, key);
    if (n == NULL) {
        *out = def;
        return 0;
    }
    char got[80];
    const char *what =
        sizes ? "a size (an integer with an optional suffix k, M, G, Ki, Mi or Gi)" : "an integer";
    if (n->kind != NH_CONF_SCALAR) {
        return nh_conf_error(n, err, "must be %s, got %s", what, describe(n, got, sizeof got));
    }
    int64_t v = 0;
    int rc = parse_int(n->value, sizes, &v);
    if (rc == -1) {
        return nh_conf_error(n, err, "must be %s, got %s", what, describe(n, got, sizeof got));
    }
    if (rc == -2 || v < min || v > max) {
        char lo[32], hi[32];
        return nh_conf_error(n, err, "must be between %s and %s, got %s",
                             format_bound(min, sizes, lo, sizeof lo),
                             format_bound(max, sizes, hi, sizeof hi), n->value);
    }
    *out = v;
    return 0;
}

int nh_conf_bool(const nh_conf_node *map, const char *key, bool def, bool *out, nh_error *err) {
    const nh_conf_node *n = present(map, key);
    if (n == NULL) {
        *out = def;
        return 0;
    }
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    if (n->kind == NH_CONF_SCALAR) {
        for (size_t i = 0; i < 3; i++) {
            if (strcasecmp(n->value, yes[i]) == 0) {
                *out = true;
                return 0;
            }
            if (strcasecmp(n->value, no[i]) == 0) {
                *out = false;
                return 0;
            }
        }
    }
    char got[80];
    return nh_conf_error(n, err, "must be a boolean (true or false), got %s",
                         describe(n, got, sizeof got));
}

int nh_conf_string(const nh_conf_node *map, const char *key, const char *def, const char **out,
                   nh_error *err) {
    const nh_conf_node *n = present(map, key);
    if (n == NULL) {
        *out = def;
        return 0;
    }
    if (n->kind != NH_CONF_SCALAR) {
        char got[80];
        return nh_conf_error(n, err, "must be a string, got %s", describe(n, got, sizeof got));
    }
    *out = n->value;
    return 0;
}
