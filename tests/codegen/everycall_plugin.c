/* Serves every method of everycall.proto through the generated method tables (tests/codegen):
 * compiled as a shared object with -z defs, it proves that the generated header declares a
 * handler per method, that NH_PLUGIN accepts the tables and that everything links. */
#include "everycall.nh.h"

void golden_v1_register_get_handler(nh_server_ctx *ctx, const Golden__V1__Key *req, void *state) {
    Golden__V1__Value v = GOLDEN__V1__VALUE__INIT;
    v.key = req->key;
    golden_v1_register_get_reply(ctx, &v);
}

void golden_v1_register_read_handler(nh_server_ctx *ctx, const Golden__V1__Key *req, void *state) {
    golden_v1_register_get_handler(ctx, req, state);
}

void golden_v1_register_spread_handler(nh_server_ctx *ctx, const Golden__V1__Value *req,
                                       void *state) {}

void golden_v1_register_tell_handler(nh_server_ctx *ctx, const Golden__V1__Value *req,
                                     void *state) {}

void golden_v1_register_watch_handler(nh_server_ctx *ctx, const Golden__V1__Key *req, void *state) {
    Golden__V1__Value v = GOLDEN__V1__VALUE__INIT;
    golden_v1_register_watch_send(ctx, &v);
    nh_ctx_finish(ctx);
}

void golden_v1_register_get_http_status_handler(nh_server_ctx *ctx, const Golden__V1__Key *req,
                                                void *state) {
    golden_v1_register_get_handler(ctx, req, state);
}

void golden_v1_listener_changed_handler(nh_server_ctx *ctx, const Golden__V1__Value *req,
                                        void *state) {}

NH_PLUGIN(EVERYCALL_PROTO_NH_METHODS, .name = "everycall", .version = "1");
