/* Who the caller of a request is: its verified certificate identity and whether it is local.
 * The identity is fixed when the stream is accepted (transport/server.c verifies the
 * certificate; server/inbound.c matches it against the claimed node ID). */
#include "security/tls_impl.h"
#include "server/server_impl.h"

#include <string.h>

const char *nh_ctx_caller_identity(const nh_server_ctx *ctx) {
    const nh_server_stream *st = ctx->st;
    if (st->peer_kind == NH_PEER_SELF) return st->self_identity;
    return st->caller ? st->caller->name : NULL;
}

bool nh_ctx_caller_has_identity(const nh_server_ctx *ctx, const char *name) {
    const nh_server_stream *st = ctx->st;
    if (!name) return false;
    if (st->peer_kind == NH_PEER_SELF) return st->self_identity && !strcmp(st->self_identity, name);
    return nh_identity_has(st->caller, name);
}

bool nh_ctx_caller_is_local(const nh_server_ctx *ctx) {
    const nh_server_stream *st = ctx->st;
    if (st->peer_kind == NH_PEER_SELF) return true;
    const char *p = st->peer_addr ? st->peer_addr : "";
    /* gRPC's peer strings: "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555", "unix:/path". */
    return !strncmp(p, "ipv4:127.", 9) || !strncmp(p, "ipv6:[::1]:", 11) ||
           !strncmp(p, "ipv6:%5B::1%5D:", 15) || !strncmp(p, "unix:", 5) ||
           !strncmp(p, "ipv6:[::ffff:127.", 17);
}
