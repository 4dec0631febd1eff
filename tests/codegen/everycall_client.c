/* A client program of everycall.proto (tests/codegen): it includes the generated header and
 * calls through the typed stubs without defining any handler, so it must link without them
 * (the method table's entry points are static inline and never emitted here). It only builds
 * the calls; nothing runs (run_codegen_tests.sh links it). */
#include "everycall.nh.h"

#include <stdio.h>

static nh_map_verdict map(uint32_t node_id, const Golden__V1__Value *req, void *user, nh_buf *out) {
    Golden__V1__Value copy = *req;
    copy.version = node_id;
    return node_id == 1 ? NH_MAP_SKIP : nh_map_replace(out, &copy.base);
}

static nh_qf_verdict newest(const Golden__V1__Value *const *replies, const nh_node_reply *raw,
                            size_t n, size_t config_size, void *user,
                            const Golden__V1__Value **result) {
    for (size_t i = 0; i < n; i++)
        if (replies[i] && (!*result || replies[i]->version > (*result)->version))
            *result = replies[i];
    return n > config_size / 2 ? NH_QF_DONE : NH_QF_MORE;
}

int main(int argc, char **argv) {
    if (argc < 2) return 0; /* linked, not run */
    nh_error err;
    Golden__V1__Key key = GOLDEN__V1__KEY__INIT;
    Golden__V1__Value value = GOLDEN__V1__VALUE__INIT, *got = NULL;
    golden_v1_register_spread_opts mo = {.map = map};
    golden_v1_register_read_opts qo = {.qf = newest, .call.timeout_ms = 1000};
    nh_config *cfg = NULL;
    nh_node *node = NULL;
    if (golden_v1_register_get(node, &key, NULL, &got, &err) == 0 ||
        golden_v1_register_read(cfg, &key, &qo, &got, NULL, &err) == 0 ||
        golden_v1_register_spread(cfg, &value, &mo, &err) == 0 ||
        golden_v1_register_tell(node, &value, NULL, &err) == 0 ||
        golden_v1_register_watch(cfg, &key, NULL, &got, NULL, &err) == 0)
        puts("unexpected success");
    return 0;
}
