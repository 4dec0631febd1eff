/* Fuzz target: the stream-level metadata rules, sdk/src/wire/metadata.c (gorums-node-id
 * parsing, peer classification, metadata key validation).
 *
 * Input format: headers separated by '\n'; in each, the key runs up to the first ':' and the
 * value is the rest (no ':' means an empty value). Every key and value is copied into its own
 * heap block of exactly its length (not NUL-terminated), so AddressSanitizer catches any read
 * past the end. The results are compared with independent reference implementations written
 * from the rules in metadata.h (a differential oracle), not only checked for crashes.
 */
#include "wire/metadata.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HEADERS 64

/* Decimal digits only (leading zeros allowed), at most UINT32_MAX; 0 when invalid or empty. */
static uint32_t ref_parse(const char *s, size_t len) {
    if (len == 0) return 0;
    size_t i = 0;
    while (i < len && s[i] == '0')
        i++;
    size_t digits = len - i;
    for (size_t j = i; j < len; j++) {
        if (s[j] < '0' || s[j] > '9') return 0;
    }
    if (digits > 10) return 0;
    if (digits == 10 && memcmp(s + i, "4294967295", 10) > 0) return 0;
    uint32_t v = 0;
    for (size_t j = i; j < len; j++)
        v = v * 10u + (uint32_t)(s[j] - '0');
    return v;
}

static nh_peer_class ref_classify(const nh_md_view *md, size_t n, uint32_t *id) {
    *id = 0;
    for (size_t i = 0; i < n; i++) {
        if (md[i].key_len == strlen(NH_NODE_ID_KEY) &&
            memcmp(md[i].key, NH_NODE_ID_KEY, md[i].key_len) == 0) {
            uint32_t v = ref_parse(md[i].value, md[i].value_len);
            if (v == 0) return NH_MD_CLIENT;
            *id = v;
            return NH_MD_ID;
        }
    }
    return NH_MD_REGULAR;
}

static bool ref_key_valid(const char *k, size_t len) {
    if (len == 0) return false;
    for (size_t i = 0; i < len; i++) {
        char c = k[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '_' || c == '.' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

/* An exact-size heap copy (a 1-byte block for empty strings, never read). */
static char *dup_exact(const uint8_t *p, size_t len) {
    char *c = malloc(len > 0 ? len : 1);
    if (c == NULL) abort();
    if (len > 0) memcpy(c, p, len);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nh_md_view md[MAX_HEADERS];
    size_t n = 0;
    size_t pos = 0;
    while (pos <= size && n < MAX_HEADERS) {
        const uint8_t *line = data + pos;
        const uint8_t *nl = memchr(line, '\n', size - pos);
        size_t line_len = nl != NULL ? (size_t)(nl - line) : size - pos;
        const uint8_t *colon = memchr(line, ':', line_len);
        size_t key_len = colon != NULL ? (size_t)(colon - line) : line_len;
        size_t value_len = colon != NULL ? line_len - key_len - 1 : 0;
        md[n].key = dup_exact(line, key_len);
        md[n].key_len = key_len;
        md[n].value = dup_exact(colon != NULL ? colon + 1 : line, value_len);
        md[n].value_len = value_len;
        n++;
        if (nl == NULL) break;
        pos += line_len + 1;
    }

    for (size_t i = 0; i < n; i++) {
        if (nh_md_parse_node_id(md[i].value, md[i].value_len) !=
            ref_parse(md[i].value, md[i].value_len)) {
            abort();
        }
        if (nh_md_parse_node_id(md[i].key, md[i].key_len) != ref_parse(md[i].key, md[i].key_len)) {
            abort();
        }
        /* nh_md_key_valid() takes a C string: give it the key up to its first NUL. */
        size_t klen = strnlen(md[i].key, md[i].key_len);
        char *key = malloc(klen + 1);
        if (key == NULL) abort();
        memcpy(key, md[i].key, klen);
        key[klen] = '\0';
        if (nh_md_key_valid(key) != ref_key_valid(key, klen)) abort();
        free(key);
    }

    uint32_t id = 12345, ref_id = 0;
    nh_peer_class got = nh_md_classify(md, n, &id);
    nh_peer_class want = ref_classify(md, n, &ref_id);
    if (got != want || id != ref_id) abort();
    if (got == NH_MD_ID && id == 0) abort();
    if (nh_md_classify(md, n, NULL) != want) abort();
    if (nh_md_classify(NULL, n, &id) != NH_MD_REGULAR || id != 0) abort();

    for (size_t i = 0; i < n; i++) {
        free((void *)md[i].key);
        free((void *)md[i].value);
    }
    return 0;
}
