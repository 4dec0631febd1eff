/* The errors of one configuration file (see error_list.h). */
#include "config/error_list.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void nh_error_list_init(nh_error_list *l, const char *file) {
    memset(l, 0, sizeof *l);
    if (file != NULL && (l->file = strdup(file)) == NULL) l->exhausted = true;
}

/* "LINE:COL: " right after the list's "FILE:" at the start of msg. */
static void parse_position(const nh_error_list *l, const char *msg, uint32_t *line, uint32_t *col) {
    *line = *col = 0;
    if (l->file == NULL) return;
    size_t n = strlen(l->file);
    if (strncmp(msg, l->file, n) != 0 || msg[n] != ':') return;
    const char *p = msg + n + 1;
    uint32_t v[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        if (*p < '0' || *p > '9') return;
        uint64_t x = 0;
        while (*p >= '0' && *p <= '9') {
            if (x <= UINT32_MAX) x = x * 10 + (uint64_t)(*p - '0');
            p++;
        }
        if (*p++ != ':') return;
        v[i] = x > UINT32_MAX ? UINT32_MAX : (uint32_t)x;
    }
    if (*p != ' ') return;
    *line = v[0];
    *col = v[1];
}

/* Takes msg (malloc'ed, may be NULL when it could not be made). */
static int keep(nh_error_list *l, nh_code code, char *msg) {
    if (code == NH_RESOURCE_EXHAUSTED) l->exhausted = true;
    if (msg == NULL || l->count >= NH_ERROR_LIST_KEEP) {
        if (msg == NULL) l->exhausted = l->lost = true;
        free(msg);
        l->dropped++;
        return -1;
    }
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        nh_error_entry *items = realloc(l->items, cap * sizeof *items);
        if (items == NULL) {
            free(msg);
            l->exhausted = l->lost = true;
            l->dropped++;
            return -1;
        }
        l->items = items;
        l->cap = cap;
    }
    nh_error_entry *e = &l->items[l->count++];
    e->message = msg;
    e->code = code;
    parse_position(l, msg, &e->line, &e->col);
    return -1;
}

static char *vformat(const char *fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (s != NULL) vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

int nh_error_list_add(nh_error_list *l, const nh_error *err) {
    return keep(l, err->code, strdup(err->message));
}

int nh_error_list_addf(nh_error_list *l, nh_code code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    return keep(l, code, msg);
}

int nh_error_list_add_at(nh_error_list *l, const nh_conf_node *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *body = vformat(fmt, ap);
    va_end(ap);
    if (body == NULL || n == NULL) return keep(l, NH_INVALID_ARGUMENT, body);
    char path[256];
    nh_conf_path(n, path, sizeof path);
    char *msg = NULL;
    const char *file = n->file != NULL ? n->file : "<config>";
    if (path[0] == '\0') {
        msg = malloc(strlen(file) + strlen(body) + 32);
        if (msg != NULL)
            sprintf(msg, "%s:%" PRIu32 ":%" PRIu32 ": %s", file, n->line, n->col, body);
    } else {
        msg = malloc(strlen(file) + strlen(path) + strlen(body) + 34);
        if (msg != NULL)
            sprintf(msg, "%s:%" PRIu32 ":%" PRIu32 ": %s: %s", file, n->line, n->col, path, body);
    }
    free(body);
    return keep(l, NH_INVALID_ARGUMENT, msg);
}

size_t nh_error_list_total(const nh_error_list *l) {
    return l->count + l->dropped;
}

bool nh_error_list_exhausted(const nh_error_list *l) {
    return l->exhausted;
}

void nh_error_list_sort(nh_error_list *l) {
    /* Insertion sort: stable, and lists are short. */
    for (size_t i = 1; i < l->count; i++) {
        nh_error_entry e = l->items[i];
        uint64_t key = e.line == 0 ? UINT64_MAX : ((uint64_t)e.line << 32 | e.col);
        size_t j = i;
        while (j > 0) {
            const nh_error_entry *p = &l->items[j - 1];
            uint64_t pk = p->line == 0 ? UINT64_MAX : ((uint64_t)p->line << 32 | p->col);
            if (pk <= key) break;
            l->items[j] = *p;
            j--;
        }
        l->items[j] = e;
    }
}

int nh_error_list_first(const nh_error_list *l, nh_error *err) {
    if (l->count > 0) {
        return nh_error_set(err, l->items[0].code, NH_ERR_LOCAL, 0, "%s", l->items[0].message);
    }
    if (l->dropped > 0) {
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "%s: out of memory",
                            l->file != NULL ? l->file : "configuration");
    }
    return 0;
}

void nh_error_list_print(const nh_error_list *l, size_t shown, FILE *out) {
    size_t total = nh_error_list_total(l);
    size_t printed = 0;
    for (; printed < l->count && printed < shown; printed++)
        fprintf(out, "%s\n", l->items[printed].message);
    const char *file = l->file != NULL ? l->file : "configuration";
    if (l->lost) fprintf(out, "%s: out of memory (not every error could be kept)\n", file);
    if (printed < total) {
        fprintf(out, "%s: ... and %zu more error%s (%zu in all)\n", file, total - printed,
                total - printed == 1 ? "" : "s", total);
    } else if (total > 1) {
        fprintf(out, "%s: %zu errors\n", file, total);
    }
}

void nh_error_list_free(nh_error_list *l) {
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i].message);
    free(l->items);
    free(l->file);
    memset(l, 0, sizeof *l);
}
