/* The server: listening, the method table, stopping. Dispatch lives in dispatch.c. */
#include "server/server_impl.h"

#include "util/log.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

const nh_method *nh_server_find(const nh_server *srv, const char *name) {
    if (!srv->methods_cap) return NULL;
    size_t mask = srv->methods_cap - 1;
    for (size_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
        const nh_method *m = &srv->methods[i];
        if (!m->name) return NULL;
        if (!strcmp(m->name, name)) return m;
    }
}

static int table_put(nh_server *srv, const char *name, nh_handler_fn fn, void *user) {
    if ((srv->methods_len + 1) * 2 > srv->methods_cap) {
        size_t cap = srv->methods_cap ? srv->methods_cap * 2 : 16;
        nh_method *t = calloc(cap, sizeof *t);
        if (!t) return -1;
        for (size_t j = 0; j < srv->methods_cap; j++) {
            nh_method *m = &srv->methods[j];
            if (!m->name) continue;
            size_t i = hash_name(m->name) & (cap - 1);
            while (t[i].name)
                i = (i + 1) & (cap - 1);
            t[i] = *m;
        }
        free(srv->methods);
        srv->methods = t;
        srv->methods_cap = cap;
    }
    size_t mask = srv->methods_cap - 1;
    size_t i = hash_name(name) & mask;
    while (srv->methods[i].name && strcmp(srv->methods[i].name, name))
        i = (i + 1) & mask;
    nh_method *m = &srv->methods[i];
    if (!m->name) {
        m->name = strdup(name);
        if (!m->name) return -1;
        srv->methods_len++;
    }
    m->fn = fn;
    m->user = user;
    return 0;
}

typedef struct new_args {
    nh_runtime *rt;
    const nh_server_opts *opts;
    nh_server *srv;
    int port;
    nh_error *err;
    int rc;
} new_args;

static void new_on_owner(void *p) {
    new_args *a = p;
    if (a->rt->stopping) {
        a->rc = nh_error_set(a->err, NH_UNAVAILABLE, NH_ERR_CLOSED, 0, "runtime stopped");
        return;
    }
    a->srv->tp =
        nh_tp_server_new(a->rt->loop, a->opts->listen, &a->port, nh_server_accept, a->srv, a->err);
    if (!a->srv->tp) {
        a->rc = -1;
        return;
    }
    nh_runtime_add_server(a->rt, a->srv);
    nh_log(NH_LOG_INFO, "server", "listening on %s (port %d)", a->opts->listen, a->port);
    a->rc = 0;
}

int nh_server_new(nh_runtime *rt, const nh_server_opts *opts, nh_server **out, int *bound_port,
                  nh_error *err) {
    if (!rt || !opts || !out)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "NULL argument");
    *out = NULL;
    if (!opts->listen || !*opts->listen)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "listen address is empty");
    nh_server *srv = calloc(1, sizeof *srv);
    if (!srv) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    srv->rt = rt;
    srv->max_inbox = opts->max_inbox ? opts->max_inbox : 1024;
    new_args a = {.rt = rt, .opts = opts, .srv = srv, .err = err, .rc = -1};
    if (nh_runtime_sync(rt, new_on_owner, &a) != 0)
        a.rc = nh_error_set(err, NH_UNAVAILABLE, NH_ERR_CLOSED, 0, "runtime stopped");
    if (a.rc != 0) {
        free(srv);
        return -1;
    }
    if (bound_port) *bound_port = a.port;
    *out = srv;
    return 0;
}

typedef struct handle_args {
    nh_server *srv;
    const char *method;
    nh_handler_fn fn;
    void *user;
    int rc;
} handle_args;

static void handle_on_owner(void *p) {
    handle_args *a = p;
    a->rc = table_put(a->srv, a->method, a->fn, a->user);
}

int nh_server_handle(nh_server *srv, const char *method, nh_handler_fn fn, void *user,
                     nh_error *err) {
    if (!srv || !fn)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "NULL argument");
    if (!method || !*method)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "method name is empty");
    handle_args a = {srv, method, fn, user, -1};
    if (nh_runtime_sync(srv->rt, handle_on_owner, &a) != 0)
        return nh_error_set(err, NH_UNAVAILABLE, NH_ERR_CLOSED, 0, "runtime stopped");
    if (a.rc != 0)
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    return 0;
}

static void free_server(void *p) {
    nh_server *srv = p;
    for (size_t i = 0; i < srv->methods_cap; i++)
        free(srv->methods[i].name);
    free(srv->methods);
    free(srv);
}

void nh_server_stop_internal(nh_server *srv) {
    if (srv->stopped) return;
    srv->stopped = true;
    nh_runtime_remove_server(srv->rt, srv);
    /* The transport cancels every live stream; each reports on_closed, which releases it. The
     * method table is freed once gRPC confirmed the shutdown. Streams outlive the server only as
     * closed shells held by deferred contexts, which never look at srv again. */
    for (nh_server_stream *st = srv->streams; st; st = st->next)
        st->srv = NULL;
    srv->streams = NULL;
    nh_tp_server_shutdown(srv->tp, free_server, srv);
}

static void stop_on_owner(void *p) {
    nh_server_stop_internal(p);
}

void nh_server_free(nh_server *srv) {
    if (!srv) return;
    if (nh_runtime_sync(srv->rt, stop_on_owner, srv) != 0)
        nh_log(NH_LOG_DEBUG, "server", "runtime already stopping; it stops the server");
}
