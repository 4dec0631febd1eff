/* Typed handlers on a runtime's back-channel (nh_stub_serve()): each request is decoded with
 * the method's request type, handed to the typed handler through its trampoline, and freed when
 * the call ends (the call's nh_ctx_on_end() hook).
 *
 * Lifetime of a registration: the runtime's method table owns it (nh_runtime_handle_owned()):
 * it is freed when the method is registered again on that runtime (by nh_stub_serve() or
 * nh_runtime_handle()) or when the runtime is freed. So at most one registration per method
 * lives at a time, and nothing is left after nh_runtime_free(). */
#include "stubs/stubs_impl.h"

#include "core/runtime_impl.h"

#include <stdlib.h>

typedef struct serve_reg {
    nh_stub_handler_tramp tramp;
    nh_stub_fn handler;
    void *user;
    const ProtobufCMessageDescriptor *request;
} serve_reg;

static void free_request(nh_server_ctx *ctx, void *arg) {
    (void)ctx;
    protobuf_c_message_free_unpacked(arg, NULL);
}

static void serve(nh_server_ctx *ctx, void *arg) {
    /* A copy: a handler that registers its own method again frees the registration. */
    serve_reg r = *(const serve_reg *)arg;
    size_t len = 0;
    const uint8_t *payload = nh_ctx_payload(ctx, &len);
    ProtobufCMessage *req = protobuf_c_message_unpack(r.request, NULL, len, payload);
    if (!req) {
        nh_ctx_reply_error(ctx, NH_INVALID_ARGUMENT, "request does not decode as %s",
                           r.request->name);
        return;
    }
    /* Before the handler: it may end the call at once (the context lives until it returns)
     * or defer it (the request then lives until the deferred call ends). */
    nh_ctx_on_end(ctx, free_request, req);
    r.tramp(r.handler, ctx, req, r.user);
}

static void free_reg(void *p) {
    free(p);
}

int nh_stub_serve(nh_runtime *rt, const nh_stub_call *c, nh_stub_handler_tramp tramp,
                  nh_stub_fn handler, void *user, nh_error *err) {
    if (!rt) return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "runtime is NULL");
    if (!c) return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "stub call is NULL");
    if (!c->request)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: request type is NULL",
                            c->method && *c->method ? c->method : "(no method)");
    if (!tramp || !handler)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: handler is NULL",
                            c->method && *c->method ? c->method : "(no method)");
    serve_reg *r = malloc(sizeof *r);
    if (!r) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    *r = (serve_reg){tramp, handler, user, c->request};
    if (nh_runtime_handle_owned(rt, c->method, serve, r, free_reg, err) != 0) {
        free(r); /* refused: still ours */
        return -1;
    }
    return 0;
}
