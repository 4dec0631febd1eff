/* YAML text -> nh_conf_node tree, with libyaml's event parser. See yaml_tree.h for the rules.
 *
 * Building: each open map or list is a frame on a fixed stack (its depth is limited) that
 * collects its items in a growing malloc'd array; when it ends, the items are copied into the
 * document's arena and the finished container becomes an item of the frame below. Items move
 * while their parent grows, so parent pointers are set in one pass at the end. */
#include "config/yaml_tree.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* ---- arena ---------------------------------------------------------------------------------- */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(max_align_t) unsigned char data[];
} arena_chunk;

struct nh_conf_doc {
    arena_chunk *chunks;
    nh_conf_node *root;
    char *file;
};

static void *arena_alloc(nh_conf_doc *d, size_t n) {
    const size_t align = _Alignof(max_align_t);
    n = (n + align - 1) / align * align;
    if (n == 0) n = align;
    arena_chunk *c = d->chunks;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        c = malloc(sizeof *c + cap);
        if (c == NULL) return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = d->chunks;
        d->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static char *arena_strndup(nh_conf_doc *d, const char *s, size_t len) {
    char *p = arena_alloc(d, len + 1);
    if (p == NULL) return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void nh_conf_doc_free(nh_conf_doc *d) {
    if (d == NULL) return;
    arena_chunk *c = d->chunks;
    while (c != NULL) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(d);
}

const nh_conf_node *nh_conf_doc_root(const nh_conf_doc *d) {
    return d != NULL ? d->root : NULL;
}

const char *nh_conf_doc_file(const nh_conf_doc *d) {
    return d != NULL ? d->file : NULL;
}

/* ---- builder -------------------------------------------------------------------------------- */

typedef struct frame {
    nh_conf_node node;   /* the container: kind, key, index and positions */
    nh_conf_node *items; /* malloc'd while open */
    size_t count, cap;
    bool have_key; /* map: a key was read, its value comes next */
    const char *key;
    uint32_t key_line, key_col;
} frame;

typedef struct builder {
    nh_conf_doc *doc;
    nh_error *err;
    frame stack[NH_CONF_MAX_DEPTH];
    size_t depth;
    nh_conf_node *root;
    int documents;
} builder;

/* The dotted path of the innermost open container, plus with `leaf` the segment of the node
 * that would be added to it next (its pending key, or its next index). */
static void builder_path(const builder *b, bool leaf, char *buf, size_t size) {
    size_t pos = 0;
    buf[0] = '\0';
    for (size_t i = 1; i <= b->depth; i++) { /* the root (frame 0) has no segment */
        const frame *parent = &b->stack[i - 1];
        bool list = parent->node.kind == NH_CONF_LIST;
        const char *key;
        size_t index;
        if (i < b->depth) {
            key = b->stack[i].node.key;
            index = b->stack[i].node.index;
        } else if (leaf) {
            key = parent->key;
            index = parent->count;
        } else {
            break;
        }
        int n;
        if (list) {
            n = snprintf(buf + pos, size - pos, "[%zu]", index);
        } else {
            n = snprintf(buf + pos, size - pos, "%s%s", pos > 0 ? "." : "", key ? key : "?");
        }
        if (n < 0 || (size_t)n >= size - pos) return;
        pos += (size_t)n;
    }
}

static int berror(builder *b, yaml_mark_t mark, bool with_path, bool leaf, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int berror(builder *b, yaml_mark_t mark, bool with_path, bool leaf, const char *fmt, ...) {
    char msg[NH_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char path[256] = "";
    if (with_path) builder_path(b, leaf, path, sizeof path);
    unsigned long line = (unsigned long)mark.line + 1, col = (unsigned long)mark.column + 1;
    if (path[0] != '\0') {
        return nh_error_set(b->err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s:%lu:%lu: %s: %s",
                            b->doc->file, line, col, path, msg);
    }
    return nh_error_set(b->err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s:%lu:%lu: %s",
                        b->doc->file, line, col, msg);
}

static int oom(builder *b) {
    return nh_error_set(b->err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "%s: out of memory",
                        b->doc->file);
}

static uint32_t pos32(size_t v) {
    return v >= UINT32_MAX ? UINT32_MAX : (uint32_t)(v + 1);
}

/* Adds a finished node (scalar or closed container) to the open container, or makes it the
 * root. Sets its key, index and key position from the container. */
static int add_node(builder *b, nh_conf_node *n) {
    if (b->depth == 0) {
        b->root = arena_alloc(b->doc, sizeof *b->root);
        if (b->root == NULL) return oom(b);
        *b->root = *n;
        b->root->key = NULL;
        b->root->key_line = n->line;
        b->root->key_col = n->col;
        return 0;
    }
    frame *f = &b->stack[b->depth - 1];
    if (f->node.kind == NH_CONF_MAP) {
        n->key = f->key;
        n->key_line = f->key_line;
        n->key_col = f->key_col;
        f->have_key = false;
        f->key = NULL;
    } else {
        n->key = NULL;
        n->key_line = n->line;
        n->key_col = n->col;
    }
    n->index = f->count;
    if (f->count == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        nh_conf_node *items = realloc(f->items, cap * sizeof *items);
        if (items == NULL) return oom(b);
        f->items = items;
        f->cap = cap;
    }
    f->items[f->count++] = *n;
    return 0;
}

/* Anchors and tags on a node event: anchors are refused, the tag !!str marks a scalar quoted,
 * other tags are refused. */
static int check_properties(builder *b, const yaml_event_t *ev, const yaml_char_t *anchor,
                            const yaml_char_t *tag, bool *quoted) {
    if (anchor != NULL) {
        return berror(b, ev->start_mark, false, false,
                      "YAML aliases and anchors are not supported");
    }
    if (tag != NULL) {
        if (quoted != NULL && strcmp((const char *)tag, YAML_STR_TAG) == 0) {
            *quoted = true;
            return 0;
        }
        /* Show the tag as written: tag:yaml.org,2002:int was !!int. */
        const char *t = (const char *)tag, *std = "tag:yaml.org,2002:";
        bool is_std = strncmp(t, std, strlen(std)) == 0;
        return berror(b, ev->start_mark, false, false, "YAML tags are not supported ('%s%s')",
                      is_std ? "!!" : "", is_std ? t + strlen(std) : t);
    }
    return 0;
}

static bool name_start(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool name_char(char c) {
    return name_start(c) || (c >= '0' && c <= '9');
}

typedef struct strbuf {
    char *p;
    size_t len, cap;
} strbuf;

static bool sb_add(strbuf *s, const char *text, size_t n) {
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *p = realloc(s->p, cap);
        if (p == NULL) return false;
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->len, text, n);
    s->len += n;
    s->p[s->len] = '\0';
    return true;
}

/* Expands ${VAR}, ${VAR:-default} and $$ in raw (len bytes). On success *out is an arena copy. */
static int expand_env(builder *b, yaml_mark_t mark, const char *raw, size_t len, char **out,
                      size_t *out_len) {
    strbuf s = {0};
    if (!sb_add(&s, "", 0)) return oom(b);
    size_t i = 0;
    int rc = 0;
    while (i < len) {
        const char *dollar = memchr(raw + i, '$', len - i);
        size_t stop = dollar != NULL ? (size_t)(dollar - raw) : len;
        if (!sb_add(&s, raw + i, stop - i)) goto nomem;
        i = stop;
        if (i >= len) break;
        /* raw[i] == '$' */
        if (i + 1 < len && raw[i + 1] == '$') {
            if (!sb_add(&s, "$", 1)) goto nomem;
            i += 2;
            continue;
        }
        if (i + 1 >= len || raw[i + 1] != '{') {
            if (!sb_add(&s, "$", 1)) goto nomem;
            i += 1;
            continue;
        }
        const char *open = raw + i + 2;
        const char *close = memchr(open, '}', len - (i + 2));
        if (close == NULL) {
            rc = berror(b, mark, true, true, "unterminated '${' in \"%.*s\"", (int)len, raw);
            goto done;
        }
        size_t inner = (size_t)(close - open);
        size_t name_len = inner;
        const char *def = NULL;
        size_t def_len = 0;
        for (size_t k = 0; k + 1 < inner; k++) {
            if (open[k] == ':' && open[k + 1] == '-') {
                name_len = k;
                def = open + k + 2;
                def_len = inner - k - 2;
                break;
            }
        }
        bool ok = name_len > 0 && name_start(open[0]);
        for (size_t k = 1; ok && k < name_len; k++)
            ok = name_char(open[k]);
        if (!ok) {
            rc = berror(b, mark, true, true, "bad environment variable name '%.*s' in \"${%.*s}\"",
                        (int)name_len, open, (int)inner, open);
            goto done;
        }
        char name[256];
        if (name_len >= sizeof name) {
            rc = berror(b, mark, true, true, "environment variable name too long in \"${%.*s}\"",
                        (int)inner, open);
            goto done;
        }
        memcpy(name, open, name_len);
        name[name_len] = '\0';
        const char *val = getenv(name);
        if (def != NULL && (val == NULL || val[0] == '\0')) {
            if (!sb_add(&s, def, def_len)) goto nomem;
        } else if (val == NULL) {
            rc = berror(b, mark, true, true,
                        "environment variable '%s' is not set (write ${%s:-default} for a default)",
                        name, name);
            goto done;
        } else if (!sb_add(&s, val, strlen(val))) {
            goto nomem;
        }
        i = (size_t)(close - raw) + 1;
    }
    *out = arena_strndup(b->doc, s.p, s.len);
    *out_len = s.len;
    if (*out == NULL) rc = oom(b);
done:
    free(s.p);
    return rc;
nomem:
    free(s.p);
    return oom(b);
}

static bool is_null_text(const char *v, size_t len) {
    return len == 0 || (len == 1 && v[0] == '~') ||
           (len == 4 &&
            (memcmp(v, "null", 4) == 0 || memcmp(v, "Null", 4) == 0 || memcmp(v, "NULL", 4) == 0));
}

static int on_scalar(builder *b, const yaml_event_t *ev) {
    const char *raw = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    bool quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    if (check_properties(b, ev, ev->data.scalar.anchor, ev->data.scalar.tag, &quoted) != 0) {
        return -1;
    }
    frame *f = b->depth > 0 ? &b->stack[b->depth - 1] : NULL;
    bool is_key = f != NULL && f->node.kind == NH_CONF_MAP && !f->have_key;
    if (memchr(raw, '\0', len) != NULL) {
        return berror(b, ev->start_mark, true, !is_key, "%s contains a NUL character",
                      is_key ? "a key" : "the value");
    }
    if (is_key) {
        if (len == 0 || (!quoted && is_null_text(raw, len))) {
            return berror(b, ev->start_mark, true, false, "empty map key");
        }
        for (size_t i = 0; i < f->count; i++) {
            if (strlen(f->items[i].key) == len && memcmp(f->items[i].key, raw, len) == 0) {
                return berror(b, ev->start_mark, true, false,
                              "duplicate key '%.*s' (first at line %" PRIu32 ")", (int)len, raw,
                              f->items[i].key_line);
            }
        }
        f->key = arena_strndup(b->doc, raw, len);
        if (f->key == NULL) return oom(b);
        f->have_key = true;
        f->key_line = pos32(ev->start_mark.line);
        f->key_col = pos32(ev->start_mark.column);
        return 0;
    }
    nh_conf_node n = {.kind = NH_CONF_SCALAR, .quoted = quoted, .file = b->doc->file};
    n.line = pos32(ev->start_mark.line);
    n.col = pos32(ev->start_mark.column);
    char *value;
    size_t value_len = 0;
    if (!quoted && is_null_text(raw, len)) {
        value = arena_strndup(b->doc, "", 0);
        if (value == NULL) return oom(b);
    } else if (memchr(raw, '$', len) != NULL) {
        if (expand_env(b, ev->start_mark, raw, len, &value, &value_len) != 0) return -1;
    } else {
        value = arena_strndup(b->doc, raw, len);
        if (value == NULL) return oom(b);
    }
    n.value = value;
    return add_node(b, &n);
}

static int on_start(builder *b, const yaml_event_t *ev, nh_conf_kind kind) {
    const yaml_char_t *anchor =
        kind == NH_CONF_MAP ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    const yaml_char_t *tag =
        kind == NH_CONF_MAP ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
    if (check_properties(b, ev, anchor, tag, NULL) != 0) return -1;
    frame *parent = b->depth > 0 ? &b->stack[b->depth - 1] : NULL;
    if (parent != NULL && parent->node.kind == NH_CONF_MAP && !parent->have_key) {
        return berror(b, ev->start_mark, true, false, "a map key must be a scalar, got a %s",
                      kind == NH_CONF_MAP ? "map" : "list");
    }
    if (b->depth == NH_CONF_MAX_DEPTH) {
        return berror(b, ev->start_mark, false, false, "nesting deeper than %d levels",
                      NH_CONF_MAX_DEPTH);
    }
    frame *f = &b->stack[b->depth];
    memset(f, 0, sizeof *f);
    f->node.kind = kind;
    f->node.file = b->doc->file;
    f->node.line = pos32(ev->start_mark.line);
    f->node.col = pos32(ev->start_mark.column);
    if (parent != NULL) {
        /* Key and index now, for paths in messages; add_node sets them again. */
        f->node.key = parent->node.kind == NH_CONF_MAP ? parent->key : NULL;
        f->node.index = parent->count;
    }
    b->depth++;
    return 0;
}

static int on_end(builder *b) {
    frame *f = &b->stack[b->depth - 1];
    nh_conf_node n = f->node;
    n.count = f->count;
    n.items = NULL;
    if (f->count > 0) {
        nh_conf_node *items = arena_alloc(b->doc, f->count * sizeof *items);
        if (items == NULL) return oom(b);
        memcpy(items, f->items, f->count * sizeof *items);
        n.items = items;
    }
    free(f->items);
    f->items = NULL;
    b->depth--;
    return add_node(b, &n);
}

/* Sets parent and index of every item below n (items are in place by now). */
static void link_parents(nh_conf_node *n) {
    nh_conf_node *items = (nh_conf_node *)n->items;
    for (size_t i = 0; i < n->count; i++) {
        items[i].parent = n;
        items[i].index = i;
        link_parents(&items[i]);
    }
}

/* Line and column (1-based, in characters) of a byte offset, for reader errors. */
static void offset_position(const char *text, size_t len, size_t offset, unsigned long *line,
                            unsigned long *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

static int syntax_error(builder *b, const yaml_parser_t *p, const char *text, size_t len) {
    const char *file = b->doc->file;
    const char *problem = p->problem != NULL ? p->problem : "unknown problem";
    switch (p->error) {
        case YAML_MEMORY_ERROR:
            return oom(b);
        case YAML_READER_ERROR: {
            unsigned long line, col;
            offset_position(text, len, p->problem_offset, &line, &col);
            return nh_error_set(b->err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                                "%s:%lu:%lu: YAML syntax error: %s", file, line, col, problem);
        }
        default:
            break;
    }
    unsigned long line = (unsigned long)p->problem_mark.line + 1;
    unsigned long col = (unsigned long)p->problem_mark.column + 1;
    if (p->problem_mark.index < len && text[p->problem_mark.index] == '\t' &&
        strstr(problem, "tab") == NULL) {
        return nh_error_set(b->err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "%s:%lu:%lu: YAML syntax error: %s (a tab: indent YAML with spaces)",
                            file, line, col, problem);
    }
    bool same = p->context_mark.line == p->problem_mark.line &&
                p->context_mark.column == p->problem_mark.column;
    if (p->context != NULL && !same) {
        return nh_error_set(
            b->err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
            "%s:%lu:%lu: YAML syntax error: %s (%s started at line %lu, column %lu)", file, line,
            col, problem, p->context, (unsigned long)p->context_mark.line + 1,
            (unsigned long)p->context_mark.column + 1);
    }
    return nh_error_set(b->err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                        "%s:%lu:%lu: YAML syntax error: %s", file, line, col, problem);
}

int nh_conf_doc_parse(const char *file_label, const char *text, size_t len, nh_conf_doc **out,
                      nh_error *err) {
    *out = NULL;
    if (file_label == NULL) file_label = "<config>";
    nh_conf_doc *d = calloc(1, sizeof *d);
    if (d == NULL) {
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "%s: out of memory",
                            file_label);
    }
    d->file = arena_strndup(d, file_label, strlen(file_label));
    if (d->file == NULL) {
        free(d);
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "%s: out of memory",
                            file_label);
    }
    builder *b = calloc(1, sizeof *b);
    yaml_parser_t parser;
    if (b == NULL || !yaml_parser_initialize(&parser)) {
        free(b);
        nh_conf_doc_free(d);
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "%s: out of memory",
                            file_label);
    }
    b->doc = d;
    b->err = err;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);

    int rc = 0;
    for (bool done = false; !done && rc == 0;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = syntax_error(b, &parser, text, len);
            break;
        }
        switch (ev.type) {
            case YAML_STREAM_END_EVENT:
                done = true;
                break;
            case YAML_DOCUMENT_START_EVENT:
                if (++b->documents > 1) {
                    rc = berror(b, ev.start_mark, false, false,
                                "more than one YAML document (only one is allowed)");
                }
                break;
            case YAML_ALIAS_EVENT:
                rc = berror(b, ev.start_mark, false, false,
                            "YAML aliases and anchors are not supported");
                break;
            case YAML_SCALAR_EVENT:
                rc = on_scalar(b, &ev);
                break;
            case YAML_SEQUENCE_START_EVENT:
                rc = on_start(b, &ev, NH_CONF_LIST);
                break;
            case YAML_MAPPING_START_EVENT:
                rc = on_start(b, &ev, NH_CONF_MAP);
                break;
            case YAML_SEQUENCE_END_EVENT:
            case YAML_MAPPING_END_EVENT:
                rc = on_end(b);
                break;
            default: /* stream start, document end, no event */
                break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    for (size_t i = 0; i < b->depth; i++)
        free(b->stack[i].items);
    if (rc == 0) {
        d->root = b->root;
        if (d->root != NULL && d->root->kind == NH_CONF_SCALAR && !d->root->quoted &&
            d->root->value[0] == '\0') {
            d->root = NULL; /* a null document is an empty one */
        }
        if (d->root != NULL) {
            d->root->parent = NULL;
            d->root->index = 0;
            link_parents(d->root);
        }
    }
    free(b);
    if (rc != 0) {
        nh_conf_doc_free(d);
        return -1;
    }
    *out = d;
    return 0;
}

int nh_conf_doc_load(const char *path, nh_conf_doc **out, nh_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: cannot open: %s", path,
                            strerror(errno));
    }
    struct stat st;
    const char *why = NULL;
    if (fstat(fd, &st) != 0) {
        why = strerror(errno);
    } else if (S_ISDIR(st.st_mode)) {
        why = strerror(EISDIR);
    } /* pipes are fine: `--config <(envsubst < tmpl.yaml)` */
    if (why != NULL) {
        close(fd);
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: cannot read: %s", path,
                            why);
    }
    strbuf s = {0};
    for (;;) {
        char buf[65536];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            free(s.p);
            return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: cannot read: %s",
                                path, strerror(e));
        }
        if (n == 0) break;
        if (!sb_add(&s, buf, (size_t)n)) {
            close(fd);
            free(s.p);
            return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "%s: out of memory",
                                path);
        }
    }
    close(fd);
    int rc = nh_conf_doc_parse(path, s.p != NULL ? s.p : "", s.len, out, err);
    free(s.p);
    return rc;
}
