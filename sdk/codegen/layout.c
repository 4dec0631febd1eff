/* Line layout of generated C (layout.h). */
#include "layout.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { WIDTH = 100, MAX_ALIGN = 48 };

static bool is_comment(const char *line) {
    while (*line == ' ')
        line++;
    return strncmp(line, "/*", 2) == 0 || strncmp(line, "* ", 2) == 0 || strcmp(line, "*") == 0 ||
           strncmp(line, "*/", 2) == 0 || strncmp(line, "//", 2) == 0;
}

/* A line that ends inside an open parenthesis (an argument or parameter list going on). */
static bool ends_open(const char *line, size_t n) {
    if (n == 0 || (line[n - 1] != ',' && line[n - 1] != '(') || is_comment(line)) return false;
    int depth = 0;
    for (size_t i = 0; i < n; i++)
        depth += line[i] == '(' ? 1 : line[i] == ')' ? -1 : 0;
    return depth > 0;
}

/* Writes a comment line longer than WIDTH as several, broken at spaces: continuation lines
 * start with the comment's own marker (" * " inside a block, "// " for line comments). */
static void wrap_comment(const char *line, size_t n, strbuf *out) {
    size_t indent = 0;
    while (indent < n && line[indent] == ' ')
        indent++;
    const char *marker = strncmp(line + indent, "//", 2) == 0 ? "// " : " * ";
    size_t start = 0;
    bool first = true;
    while (start < n) {
        size_t lead = first ? 0 : indent + strlen(marker);
        size_t end = n;
        if (n - start + lead > WIDTH) {
            end = start;
            for (size_t i = start; i < n && i - start + lead <= WIDTH; i++)
                if (line[i] == ' ' && i > start) end = i;
            if (end == start) /* one long word: keep it whole */
                while (end < n && line[end] != ' ')
                    end++;
        }
        if (!first) {
            for (size_t k = 0; k < indent; k++)
                sb_puts(out, " ");
            sb_puts(out, marker);
        }
        sb_printf(out, "%.*s\n", (int)(end - start), line + start);
        start = end;
        while (start < n && line[start] == ' ')
            start++;
        first = false;
    }
}

/* Writes one (joined) line, wrapped. */
static void emit_line(const char *line, size_t n, strbuf *out) {
    if (n > WIDTH && is_comment(line)) {
        wrap_comment(line, n, out);
        return;
    }
    if (n <= WIDTH || line[0] == '#' || line[n - 1] == '\\') { /* macro lines stay whole */
        char *s = strndup(line, n);
        sb_puts(out, s);
        sb_puts(out, "\n");
        free(s);
        return;
    }
    size_t indent = 0;
    while (indent < n && line[indent] == ' ')
        indent++;
    /* The bracket that opens the argument list: the last one before the first ", ". */
    const char *first_comma = NULL;
    for (size_t i = 0; i + 1 < n; i++)
        if (line[i] == ',' && line[i + 1] == ' ') {
            first_comma = line + i;
            break;
        }
    size_t open = 0;
    for (size_t i = 0; first_comma && line + i < first_comma; i++)
        if (line[i] == '(' || line[i] == '{') open = i + 1;
    size_t cont = open && open <= MAX_ALIGN ? open : indent + 8;
    size_t start = 0, col = 0;
    bool first = true;
    while (start < n) {
        /* Take pieces up to ", " while they fit. */
        size_t avail = WIDTH - (first ? 0 : cont);
        size_t end = start, best = 0;
        for (size_t i = start; i < n; i++) {
            if (i - start >= avail) break;
            if (line[i] == ',' && i + 1 < n && line[i + 1] == ' ') best = i + 1;
            end = i + 1;
        }
        if (end == n) {
            best = n;
        } else if (best == 0) {
            /* Nothing fits: break at the next argument boundary anyway. */
            best = n;
            for (size_t i = end; i + 1 < n; i++)
                if (line[i] == ',' && line[i + 1] == ' ') {
                    best = i + 1;
                    break;
                }
        }
        if (!first)
            for (size_t k = 0; k < cont; k++)
                sb_puts(out, " ");
        char *s = strndup(line + start, best - start);
        sb_puts(out, s);
        sb_puts(out, "\n");
        free(s);
        start = best;
        while (start < n && line[start] == ' ')
            start++;
        first = false;
        col = cont;
    }
    (void)col;
}

void layout_c(const char *in, strbuf *out) {
    strbuf joined = {0};
    const char *p = in;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        sb_printf(&joined, "%.*s", (int)n, p);
        p += n;
        if (*p == '\n') p++;
        /* Join continuation lines of an open argument list. */
        while (ends_open(sb_str(&joined), joined.len) && *p) {
            const char *q = p;
            while (*q == ' ')
                q++;
            const char *nl2 = strchr(q, '\n');
            size_t m = nl2 ? (size_t)(nl2 - q) : strlen(q);
            if (joined.data[joined.len - 1] == ',') sb_puts(&joined, " ");
            sb_printf(&joined, "%.*s", (int)m, q);
            p = q + m;
            if (*p == '\n') p++;
        }
        emit_line(sb_str(&joined), joined.len, out);
        joined.len = 0;
        if (joined.data) joined.data[0] = '\0';
    }
    sb_free(&joined);
}
