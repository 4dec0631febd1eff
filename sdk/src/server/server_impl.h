/* Private: the server, its method table, its streams and the server context. */
#ifndef NH_SERVER_SERVER_IMPL_H
#define NH_SERVER_SERVER_IMPL_H

#include "core/runtime_impl.h"
#include "transport/server.h"
#include "wire/codec.h"

#include <nodehost/server.h>

/* One registered method. */
typedef struct nh_method {
    char *name;
    nh_handler_fn fn;
    void *user;
} nh_method;

struct nh_server {
    nh_runtime *rt;
    nh_tp_server *tp;
    nh_method *methods; /* open-addressing table keyed by name */
    size_t methods_cap, methods_len;
    size_t max_inbox;
    bool stopped;
    struct nh_server_stream *streams; /* live streams (for stop) */
    struct nh_server *next, *prev;    /* the runtime's list */
};

/* One accepted stream with its ordering state. Reference counted: the transport stream (until
 * on_closed) and every open server context hold a reference. */
typedef struct nh_server_stream {
    nh_server *srv; /* NULL once the server stopped */
    nh_runtime *rt;
    nh_tp_stream *tp; /* NULL once closed */
    int refs;
    nh_metadata *md; /* owned copies of the stream headers */
    size_t md_count;
    char *peer;
    nh_wire_msg **inbox; /* requests waiting for the stream's order (ring) */
    size_t inbox_head, inbox_len, inbox_cap;
    struct nh_server_ctx *holder; /* the context holding the order, if any */
    int open_ctx;                 /* contexts not yet ended */
    size_t srv_max_inbox_half;    /* resume reading below this inbox length */
    bool pumping, recv_ended, paused;
    struct nh_server_stream *next, *prev;
} nh_server_stream;

struct nh_server_ctx {
    struct nh_server_ctx *next, *prev; /* the runtime's list of open contexts */
    nh_server_stream *st;
    nh_wire_msg *msg;
    bool in_handler, deferred, ended, released;
};

/** Looks up a method's registration (owner thread). NULL when not registered. */
const nh_method *nh_server_find(const nh_server *srv, const char *name);

/** Accept callback for the transport: sets up ordering and dispatch for a new stream. */
void nh_server_accept(void *user, nh_tp_stream *s, const nh_md_view *md, size_t n);

/** After the owner loop ended: frees contexts that were never ended (deferred calls whose
 * handler never answered). */
void nh_server_free_remaining(nh_runtime *rt);

/** Stops the server (owner thread) and removes it from the runtime. */
void nh_server_stop_internal(nh_server *srv);

#endif
