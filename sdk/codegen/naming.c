/* C names of messages (protoc-c's rules) and of stubs (naming.h). */
#include "naming.h"

#include "strbuf.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* protoc-c's ToCamel: drops '_' and upper-cases the letter after it (and the first). */
static void to_camel(strbuf *b, const char *s, size_t n) {
    int next_upper = 1;
    for (size_t i = 0; i < n; i++) {
        char c[2] = {s[i], 0};
        if (s[i] == '_') {
            next_upper = 1;
            continue;
        }
        if (next_upper) c[0] = (char)toupper((unsigned char)s[i]);
        next_upper = 0;
        sb_puts(b, c);
    }
}

/* protoc-c's CamelToLower: '_' before an upper-case letter that follows a non-upper one. */
static void camel_to_lower(strbuf *b, const char *s, size_t n) {
    int was_upper = 1;
    for (size_t i = 0; i < n; i++) {
        int is_upper = isupper((unsigned char)s[i]) != 0;
        if (is_upper && !was_upper) sb_puts(b, "_");
        char c[2] = {(char)tolower((unsigned char)s[i]), 0};
        sb_puts(b, c);
        was_upper = is_upper;
    }
}

/* Calls piece() on each dot-separated piece of a full name, joining them with "__". */
static char *map_pieces(const char *full, void (*piece)(strbuf *, const char *, size_t)) {
    strbuf b = {0};
    const char *p = full;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n > 0) {
            if (b.len) sb_puts(&b, "__");
            piece(&b, p, n);
        }
        p += n;
        if (*p == '.') p++;
    }
    char *out = xstrdup(sb_str(&b));
    sb_free(&b);
    return out;
}

char *pbc_type_name(const char *full_name) {
    return map_pieces(full_name, to_camel);
}

char *pbc_descriptor_name(const char *full_name) {
    char *lower = map_pieces(full_name, camel_to_lower);
    char *out = join3(lower, "__", "descriptor");
    free(lower);
    return out;
}

char *proto_path_stem(const char *proto_path) {
    size_t n = strlen(proto_path);
    if (n > 6 && strcmp(proto_path + n - 6, ".proto") == 0) n -= 6;
    char *out = xmalloc(n + 1);
    memcpy(out, proto_path, n);
    out[n] = '\0';
    return out;
}

char *pbc_header_name(const char *proto_path) {
    char *stem = proto_path_stem(proto_path);
    char *out = join3(stem, "", ".pb-c.h");
    free(stem);
    return out;
}

char *proto_stem(const char *proto_path) {
    const char *slash = strrchr(proto_path, '/');
    return proto_path_stem(slash ? slash + 1 : proto_path);
}

char *snake_name(const char *ident) {
    strbuf b = {0};
    size_t n = strlen(ident);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)ident[i];
        if (c == '.') {
            sb_puts(&b, "_");
            continue;
        }
        if (isupper(c) && i > 0 && ident[i - 1] != '.' && ident[i - 1] != '_') {
            unsigned char prev = (unsigned char)ident[i - 1];
            unsigned char next = i + 1 < n ? (unsigned char)ident[i + 1] : 0;
            /* "sayHello" -> say_hello, "HTTPServer" -> http_server, "Get2Go" -> get2_go */
            if (islower(prev) || isdigit(prev) || (isupper(prev) && islower(next)))
                sb_puts(&b, "_");
        }
        char s[2] = {(char)tolower(c), 0};
        sb_puts(&b, s);
    }
    char *out = xstrdup(sb_str(&b));
    sb_free(&b);
    return out;
}

char *upper_name(const char *s) {
    char *out = xstrdup(s);
    for (char *p = out; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    return out;
}

char *path_macro_name(const char *path) {
    char *out = xstrdup(path);
    for (char *p = out; *p; p++)
        *p = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
    return out;
}

char *join3(const char *a, const char *sep, const char *b) {
    size_t na = strlen(a), ns = strlen(sep), nb = strlen(b);
    char *out = xmalloc(na + ns + nb + 1);
    memcpy(out, a, na);
    memcpy(out + na, sep, ns);
    memcpy(out + na + ns, b, nb + 1);
    return out;
}
