/* Stream-level metadata rules of Gorums (spec section 1.6). */
#include "wire/metadata.h"

#include <string.h>

uint32_t nh_md_parse_node_id(const char *value, size_t len) {
    if (value == NULL || len == 0) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        char c = value[i];
        if (c < '0' || c > '9') return 0;
        v = v * 10 + (uint64_t)(c - '0');
        if (v > UINT32_MAX) return 0;
    }
    return (uint32_t)v;
}

nh_peer_class nh_md_classify(const nh_md_view *md, size_t count, uint32_t *id) {
    static const size_t key_len = sizeof(NH_NODE_ID_KEY) - 1;
    if (id != NULL) *id = 0;
    for (size_t i = 0; md != NULL && i < count; i++) {
        if (md[i].key_len != key_len || md[i].key == NULL) continue;
        if (memcmp(md[i].key, NH_NODE_ID_KEY, key_len) != 0) continue;
        /* Only the first value of the key counts. */
        uint32_t parsed = nh_md_parse_node_id(md[i].value, md[i].value_len);
        if (parsed == 0) return NH_MD_CLIENT;
        if (id != NULL) *id = parsed;
        return NH_MD_ID;
    }
    return NH_MD_REGULAR;
}

bool nh_md_key_valid(const char *key) {
    if (key == NULL || *key == '\0') return false;
    for (const char *p = key; *p != '\0'; p++) {
        char c = *p;
        bool ok =
            (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '_' || c == '.' || c == '-';
        if (!ok) return false;
    }
    return true;
}
