/* The runtime's own metrics: series created on first use, updated with atomics from the owner
 * thread (requests, streams) and wherever calls end. */
#include "metrics/metrics_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NCODES 17 /* gRPC codes 0..16 */

int nh_metrics_on;

struct nh_method_stats {
    struct nh_method_stats *next;
    char *method;
    nh_metric *by_code[NCODES]; /* atomic pointers, created on first use */
    nh_metric *duration;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static nh_method_stats *g_methods;
static nh_metric *g_inflight;
static nh_metric *g_msgs[2], *g_bytes[2];
static nh_metric *g_calls[5][NCODES];

void nh_metrics_enable(bool on) {
    __atomic_store_n(&nh_metrics_on, on ? 1 : 0, __ATOMIC_RELAXED);
}

bool nh_metrics_enabled(void) {
    return nh_metrics_counting();
}

static const char *code_label(int code) {
    return code >= 0 && code < NCODES ? nh_code_name((nh_code)code) : "UNKNOWN";
}

nh_method_stats *nh_metrics_method(const char *method) {
    pthread_mutex_lock(&g_mu);
    nh_method_stats *s = g_methods;
    while (s && strcmp(s->method, method) != 0)
        s = s->next;
    if (!s && (s = calloc(1, sizeof *s)) != NULL) {
        if (!(s->method = strdup(method))) {
            free(s);
            s = NULL;
        } else {
            nh_metric_label l = {"method", method};
            /* Unknown methods are refused before any handler: counted, never timed. */
            if (strcmp(method, "(unknown)") != 0)
                s->duration = nh_metric_histogram(
                    "nodehost_request_duration_seconds",
                    "Time from a request's handler start to the end of its call, by method.", &l, 1,
                    NULL, 0, NULL);
            s->next = g_methods;
            g_methods = s;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return s;
}

nh_method_stats *nh_metrics_unknown_method(void) {
    static nh_method_stats *unknown;
    nh_method_stats *s = __atomic_load_n(&unknown, __ATOMIC_ACQUIRE);
    if (!s) {
        s = nh_metrics_method("(unknown)");
        __atomic_store_n(&unknown, s, __ATOMIC_RELEASE);
    }
    return s;
}

/* The series of (method, code), created on first use. */
static nh_metric *code_series(nh_method_stats *s, int code) {
    if (code < 0 || code >= NCODES) code = 2; /* UNKNOWN */
    nh_metric *m = __atomic_load_n(&s->by_code[code], __ATOMIC_ACQUIRE);
    if (!m) {
        nh_metric_label l[2] = {{"method", s->method}, {"code", code_label(code)}};
        m = nh_metric_counter("nodehost_requests_total",
                              "Requests answered (or ended without an answer), by method and "
                              "gRPC status code.",
                              l, 2, NULL);
        __atomic_store_n(&s->by_code[code], m, __ATOMIC_RELEASE);
    }
    return m;
}

static nh_metric *inflight(void) {
    nh_metric *m = __atomic_load_n(&g_inflight, __ATOMIC_ACQUIRE);
    if (!m) {
        m = nh_metric_gauge("nodehost_requests_in_flight",
                            "Requests whose handler started and whose call has not ended.", NULL, 0,
                            NULL);
        __atomic_store_n(&g_inflight, m, __ATOMIC_RELEASE);
    }
    return m;
}

void nh_metrics_request_start(void) {
    if (!nh_metrics_counting()) return;
    nh_metric_add(inflight(), 1);
}

void nh_metrics_request_end(nh_method_stats *s, int code, int64_t ns) {
    if (!nh_metrics_counting()) return;
    nh_metric_add(inflight(), -1);
    if (!s) return;
    nh_metric_add(code_series(s, code), 1);
    nh_metric_observe(s->duration, (double)ns / 1e9);
}

void nh_metrics_request_refused(nh_method_stats *s, int code) {
    if (!nh_metrics_counting() || !s) return;
    nh_metric_add(code_series(s, code), 1);
}

void nh_metrics_stream_message(bool out, size_t bytes) {
    if (!nh_metrics_counting()) return;
    int d = out ? 1 : 0;
    nh_metric *msgs = __atomic_load_n(&g_msgs[d], __ATOMIC_ACQUIRE);
    nh_metric *b = __atomic_load_n(&g_bytes[d], __ATOMIC_ACQUIRE);
    if (!msgs || !b) {
        nh_metric_label l = {"direction", out ? "sent" : "received"};
        msgs = nh_metric_counter("nodehost_stream_messages_total",
                                 "NodeStream messages, by direction.", &l, 1, NULL);
        b = nh_metric_counter("nodehost_stream_bytes_total",
                              "Bytes of NodeStream messages (serialized envelopes), by direction.",
                              &l, 1, NULL);
        __atomic_store_n(&g_msgs[d], msgs, __ATOMIC_RELEASE);
        __atomic_store_n(&g_bytes[d], b, __ATOMIC_RELEASE);
    }
    nh_metric_add(msgs, 1);
    nh_metric_add(b, (double)bytes);
}

void nh_metrics_server_call(const char *type, int code) {
    if (!nh_metrics_counting()) return;
    static const char *const types[5] = {"quorum", "multicast", "correctable", "rpc", "unicast"};
    int t = 0;
    while (t < 5 && strcmp(types[t], type) != 0)
        t++;
    if (t == 5) return;
    if (code < 0 || code >= NCODES) code = 2;
    nh_metric *m = __atomic_load_n(&g_calls[t][code], __ATOMIC_ACQUIRE);
    if (!m) {
        nh_metric_label l[2] = {{"type", types[t]}, {"code", code_label(code)}};
        m = nh_metric_counter("nodehost_server_calls_total",
                              "Server-initiated calls (over Config, ClientConfig or the "
                              "membership) that ended, by type and gRPC status code.",
                              l, 2, NULL);
        __atomic_store_n(&g_calls[t][code], m, __ATOMIC_RELEASE);
    }
    nh_metric_add(m, 1);
}
