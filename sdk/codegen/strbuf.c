/* The generator's text buffer (strbuf.h). */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die_oom(void) {
    fputs("protoc-gen-nodehost: out of memory\n", stderr);
    exit(1);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die_oom();
    return p;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

static void reserve(strbuf *b, size_t more) {
    if (b->len + more + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) die_oom();
    b->data = p;
    b->cap = cap;
}

void sb_printf(strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

void sb_puts(strbuf *b, const char *s) {
    size_t n = strlen(s);
    reserve(b, n);
    memcpy(b->data + b->len, s, n + 1);
    b->len += n;
}

void sb_comment_lines(strbuf *b, const char *prefix, const char *text) {
    /* Drop trailing blank lines and whitespace. */
    size_t end = strlen(text);
    while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == ' ' || text[end - 1] == '\t'))
        end--;
    size_t i = 0;
    while (i < end) {
        size_t j = i;
        while (j < end && text[j] != '\n')
            j++;
        /* protoc keeps the space after "//": drop one leading space. */
        size_t s = i;
        if (s < j && text[s] == ' ') s++;
        sb_puts(b, prefix);
        for (size_t k = s; k < j; k++) {
            char c = text[k];
            if (c == '\r') continue;
            if (c == '/' && k > s && text[k - 1] == '*') sb_puts(b, " ");
            char one[2] = {c, 0};
            sb_puts(b, one);
        }
        /* No trailing whitespace after an empty comment line. */
        while (b->len > 0 && b->data[b->len - 1] == ' ')
            b->data[--b->len] = '\0';
        sb_puts(b, "\n");
        i = j + 1;
    }
}

const char *sb_str(const strbuf *b) {
    return b->data ? b->data : "";
}

void sb_free(strbuf *b) {
    free(b->data);
    *b = (strbuf){0};
}
