/* The node's HTTP endpoint (libmicrohttpd, its own thread): GET /metrics (Prometheus text
 * format), /healthz and /readyz. It never runs on the owner thread: metrics are atomics read at
 * scrape time, readiness is computed from thread-safe accessors. */
#include "metrics/http_endpoint.h"

#include <microhttpd.h>
#include <nodehost/nodehost.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct nh_http_endpoint {
    struct MHD_Daemon *daemon;
    int fd;
    nh_http_ready_fn ready;
    void *ready_arg;
    char bound[80];
};

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *type,
                               char *body, size_t len, bool owned) {
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!r) {
        if (owned) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **state) {
    (void)version;
    (void)upload_data;
    nh_http_endpoint *ep = cls;
    if (!*state) { /* first call for this request: headers only */
        *state = ep;
        return MHD_YES;
    }
    if (*upload_size) { /* a body: ignored */
        *upload_size = 0;
        return MHD_YES;
    }
    static const char text[] = "text/plain; charset=utf-8";
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char msg[] = "only GET and HEAD\n";
        struct MHD_Response *r =
            MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Content-Type", text);
        MHD_add_response_header(r, "Allow", "GET, HEAD");
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
        MHD_destroy_response(r);
        return ok;
    }
    if (!strcmp(url, "/metrics")) {
        char *body = NULL;
        size_t len = nh_metrics_render(&body);
        if (!body) {
            static const char msg[] = "out of memory\n";
            return respond(c, MHD_HTTP_INTERNAL_SERVER_ERROR, text, (char *)msg, sizeof msg - 1,
                           false);
        }
        return respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len, true);
    }
    if (!strcmp(url, "/healthz")) {
        static const char msg[] = "ok\n";
        return respond(c, MHD_HTTP_OK, text, (char *)msg, sizeof msg - 1, false);
    }
    if (!strcmp(url, "/readyz")) {
        char why[300] = "";
        bool ready = !ep->ready || ep->ready(ep->ready_arg, why, sizeof why);
        char body[400];
        int n = snprintf(body, sizeof body, "%s%s%s\n", ready ? "ready" : "not ready",
                         *why ? ": " : "", why);
        return respond(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text, body,
                       (size_t)n < sizeof body ? (size_t)n : sizeof body - 1, false);
    }
    static const char msg[] = "not found: /metrics, /healthz and /readyz are served here\n";
    return respond(c, MHD_HTTP_NOT_FOUND, text, (char *)msg, sizeof msg - 1, false);
}

/* A listening socket on "host:port" (port 0 picks one). -1 with why set. */
static int listen_on(const char *addr, char *bound, size_t bound_size, char *why, size_t why_size) {
    char host[256];
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : 0;
    if (!colon || !colon[1] || hl >= sizeof host) {
        snprintf(why, why_size, "not a host:port address");
        return -1;
    }
    memcpy(host, addr, hl);
    host[hl] = '\0';
    char *h = host;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        h = host + 1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &res);
    if (gai != 0) {
        snprintf(why, why_size, "cannot resolve it (%s)", gai_strerror(gai));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(why, why_size, "%s", err == EADDRINUSE ? "address already in use" : strerror(err));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char hs[64] = "?", ps[16] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, hs, sizeof hs, ps, sizeof ps,
                    NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(bound, bound_size, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", hs, ps);
    return fd;
}

nh_http_endpoint *nh_http_endpoint_start(const char *listen, nh_http_ready_fn ready,
                                         void *ready_arg, nh_error *err) {
    nh_http_endpoint *ep = calloc(1, sizeof *ep);
    if (!ep) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return NULL;
    }
    ep->ready = ready;
    ep->ready_arg = ready_arg;
    char why[200];
    ep->fd = listen_on(listen, ep->bound, sizeof ep->bound, why, sizeof why);
    if (ep->fd < 0) {
        nh_error_set(err, NH_UNAVAILABLE, NH_ERR_LOCAL, 0, "cannot serve metrics on %s: %s", listen,
                     why);
        free(ep);
        return NULL;
    }
    ep->daemon =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL, on_request,
                         ep, MHD_OPTION_LISTEN_SOCKET, ep->fd, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!ep->daemon) {
        nh_error_set(err, NH_UNAVAILABLE, NH_ERR_LOCAL, 0,
                     "cannot serve metrics on %s: libmicrohttpd did not start", listen);
        close(ep->fd);
        free(ep);
        return NULL;
    }
    return ep;
}

const char *nh_http_endpoint_address(const nh_http_endpoint *ep) {
    return ep->bound;
}

void nh_http_endpoint_stop(nh_http_endpoint *ep) {
    if (!ep) return;
    MHD_stop_daemon(ep->daemon);
    close(ep->fd);
    free(ep);
}
