/* A growable text buffer for the generator's output. Out of memory ends the program: the
 * generator is a short-lived tool whose only output is the text. */
#ifndef NH_CODEGEN_STRBUF_H
#define NH_CODEGEN_STRBUF_H

#include <stddef.h>

/** Text being built; zero-initialise. */
typedef struct strbuf {
    char *data; /* NUL-terminated once anything was added */
    size_t len, cap;
} strbuf;

/** Appends printf-style text. */
void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Appends s as is. */
void sb_puts(strbuf *b, const char *s);

/** Appends text as C comment lines, each prefixed by `prefix` (e.g. " * "), with any "*" "/"
 * broken up so the comment cannot end early; trailing blank lines are dropped. */
void sb_comment_lines(strbuf *b, const char *prefix, const char *text);

/** The text (never NULL; "" when empty); the buffer keeps owning it. */
const char *sb_str(const strbuf *b);

/** Frees the text. */
void sb_free(strbuf *b);

/** malloc() that ends the program when out of memory. */
void *xmalloc(size_t n);

/** strdup() that ends the program when out of memory. */
char *xstrdup(const char *s);

#endif
