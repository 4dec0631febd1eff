/* The node's HTTP endpoint (`metrics: { listen: HOST:PORT }`):
 *   GET /metrics   every metric of the process, Prometheus text format 0.0.4
 *   GET /healthz   200 "ok" while the process serves HTTP at all (liveness)
 *   GET /readyz    200 "ready", or 503 "not ready: <why>" (readiness; see nh_node_ready())
 * Served by libmicrohttpd on its own thread; anything else is 404, methods other than GET and
 * HEAD are 405. */
#ifndef NH_HOST_HTTP_ENDPOINT_H
#define NH_HOST_HTTP_ENDPOINT_H

#include <nodehost/status.h>

#include <stdbool.h>
#include <stddef.h>

typedef struct nh_http_endpoint nh_http_endpoint;

/** Readiness: true when ready; otherwise false with why set. Called on the HTTP thread. */
typedef bool (*nh_http_ready_fn)(void *arg, char *why, size_t why_size);

/** Binds listen ("host:port"; port 0 picks one) and serves. NULL with err naming the address
 * and cause ("address already in use"). */
nh_http_endpoint *nh_http_endpoint_start(const char *listen, nh_http_ready_fn ready,
                                         void *ready_arg, nh_error *err);

/** The bound address ("127.0.0.1:9101"). */
const char *nh_http_endpoint_address(const nh_http_endpoint *ep);

/** Stops serving (waits for requests in progress) and frees ep. Accepts NULL. */
void nh_http_endpoint_stop(nh_http_endpoint *ep);

#endif
