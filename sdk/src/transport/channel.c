/* Client side: a channel per node, and NodeStreams opened on it with the node's headers. The
 * stream is optimistic: messages are queued at once; gRPC holds them until the connection is up
 * or fails the call (status 14) if it cannot connect. */
#include "transport/channel.h"

#include "transport/channel_args.h"

#include "transport/relay.h"
#include "transport/server.h"
#include "transport/stream_impl.h"
#include "transport/tls_creds.h"
#include "util/log.h"

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct nh_tp_channel {
    nh_tp_loop *loop;
    grpc_channel *channel;
    nh_tls *tls; /* NULL: plaintext */
};

void nh_tp_keepalive_resolve(uint32_t *time_ms, uint32_t *timeout_ms) {
    if (*time_ms == 0) *time_ms = NH_KEEPALIVE_TIME_MS_DEFAULT;
    if (*timeout_ms == 0) *timeout_ms = NH_KEEPALIVE_TIMEOUT_MS_DEFAULT;
    if (*time_ms < NH_KEEPALIVE_MIN_MS) *time_ms = NH_KEEPALIVE_MIN_MS;
    if (*timeout_ms < NH_KEEPALIVE_MIN_MS) *timeout_ms = NH_KEEPALIVE_MIN_MS;
    if (*time_ms > INT_MAX) *time_ms = INT_MAX;
    if (*timeout_ms > INT_MAX) *timeout_ms = INT_MAX;
}

nh_tp_channel *nh_tp_channel_new(nh_tp_loop *loop, const char *addr, uint32_t backoff_base_ms,
                                 uint32_t backoff_max_ms, uint32_t keepalive_time_ms,
                                 uint32_t keepalive_timeout_ms, nh_tls *tls, const char *expect,
                                 nh_error *err) {
    nh_tp_channel *ch = calloc(1, sizeof *ch);
    if (!ch) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return NULL;
    }
    ch->loop = loop;
    bool keepalive = keepalive_time_ms != 0; /* 0: no pings (gRPC's default) */
    if (keepalive) nh_tp_keepalive_resolve(&keepalive_time_ms, &keepalive_timeout_ms);
    /* gRPC's own reconnect backoff follows ours. GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is left at
     * its default (20 s) on purpose: gRPC uses it as the minimum connect timeout, and a small
     * value makes every slow handshake fail.
     * Keepalive: a ping every keepalive_time_ms, also while the stream carries no data (gRPC
     * allows only 2 pings without data by default, then stops pinging: 0 lifts that); a ping
     * not acknowledged within keepalive_timeout_ms closes the connection, and the stream
     * fails with UNAVAILABLE. Servers accept this rate (see transport/server.c); other
     * servers may not (grpc-go answers pings more often than every 5 minutes with GOAWAY
     * too_many_pings), which is why channels ping only when asked to. */
    grpc_arg args[4 + NH_TP_KEEPALIVE_ARGS] = {
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = (int)nh_tp_loop_max_message(loop)},
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
         .value.integer = (int)backoff_base_ms},
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
         .value.integer = (int)backoff_max_ms},
        /* TLS: every channel its own connection. gRPC may otherwise share a connection
         * between channels to one address whose arguments compare equal, and a TLS channel
         * must only ever speak with its own certificate (and see its own server's). Plaintext
         * channels to one address share a connection (gRPC's global subchannel pool): a
         * program holding thousands of client-peer streams to a node uses one connection, not
         * thousands (about 19 kB less per stream on both sides, and one socket). */
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
         .value.integer = 1},
    };
    size_t nargs = tls ? 4 : 3;
    if (keepalive) nh_tp_keepalive_args(&args[nargs], keepalive_time_ms, keepalive_timeout_ms);
    grpc_channel_args cargs = {.num_args = nargs + (keepalive ? NH_TP_KEEPALIVE_ARGS : 0),
                               .args = args};
    grpc_channel_credentials *creds =
        tls ? nh_tp_tls_channel_creds(tls, expect) : grpc_insecure_credentials_create();
    ch->channel = creds ? grpc_channel_create(addr, creds, &cargs) : NULL;
    if (creds) grpc_channel_credentials_release(creds);
    if (!ch->channel) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "cannot create a channel to \"%s\"",
                     addr);
        free(ch);
        return NULL;
    }
    ch->tls = nh_tls_ref(tls);
    return ch;
}

static void on_client_status(nh_tp_tag *tag, bool ok) {
    (void)ok;
    nh_tp_stream *s = (nh_tp_stream *)((char *)tag - offsetof(nh_tp_stream, close_tag));
    char details[512];
    size_t n = GRPC_SLICE_LENGTH(s->status_details);
    if (n >= sizeof details) n = sizeof details - 1;
    memcpy(details, GRPC_SLICE_START_PTR(s->status_details), n);
    details[n] = '\0';
    /* gRPC wraps our certificate verifier's reason in three layers of context; keep the
     * reason ("TLS: server certificate refused: ..."). */
    static const char mark[] = "Custom verification check failed with error: UNAUTHENTICATED: ";
    const char *why = strstr(details, mark);
    if (why) {
        char clean[sizeof details];
        snprintf(clean, sizeof clean, "TLS: %s", why + sizeof mark - 1);
        memcpy(details, clean, sizeof details);
    }
    nh_tp_stream_report_closed(s, (nh_code)s->status, details);
    nh_tp_stream_op_done(s);
}

static void on_client_start(nh_tp_tag *tag, bool ok) {
    nh_tp_stream *s = (nh_tp_stream *)((char *)tag - offsetof(nh_tp_stream, start_tag));
    /* Headers from the server (ours send them at once) on a channel that is READY prove the
     * connection; a failed connect also completes this batch, but leaves the channel in
     * TRANSIENT_FAILURE. */
    if (ok && !s->ready && !s->closed && s->ev && s->ev->on_ready &&
        grpc_channel_check_connectivity_state(s->channel, 0) == GRPC_CHANNEL_READY) {
        nh_tp_stream_report_ready(s);
    }
    nh_tp_stream_op_done(s);
}

/* The headers of a client stream being started (grpc slices: they may be released on any
 * thread). */
typedef struct client_headers {
    grpc_metadata *md;
    size_t n;
} client_headers;

static void client_headers_free(void *arg) {
    client_headers *h = arg;
    for (size_t i = 0; i < h->n; i++) {
        grpc_slice_unref(h->md[i].key);
        grpc_slice_unref(h->md[i].value);
    }
    free(h->md);
    free(h);
}

static client_headers *client_headers_new(const nh_metadata *md, size_t n) {
    client_headers *h = calloc(1, sizeof *h);
    grpc_metadata *gmd = n ? calloc(n, sizeof *gmd) : NULL;
    if (!h || (n && !gmd)) {
        free(h);
        free(gmd);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        gmd[i].key = grpc_slice_from_copied_string(md[i].key);
        gmd[i].value = grpc_slice_from_copied_string(md[i].value);
    }
    h->md = gmd;
    h->n = n;
    return h;
}

/* What starting a client stream came to. */
typedef enum client_start_result {
    CLIENT_STARTED,
    CLIENT_NOT_STARTED,  /* nothing is running: the caller frees the stream */
    CLIENT_START_FAILED, /* the status batch runs and reports the (cancelled) end */
} client_start_result;

static client_start_result client_start(nh_tp_stream *s, const client_headers *h) {
    grpc_op start[2] = {{.op = GRPC_OP_SEND_INITIAL_METADATA},
                        {.op = GRPC_OP_RECV_INITIAL_METADATA}};
    start[0].data.send_initial_metadata.count = h->n;
    start[0].data.send_initial_metadata.metadata = h->n ? h->md : NULL;
    start[1].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
    /* Client streams watch for their status from the start, unlike server streams: a start
     * batch (RECV_INITIAL_METADATA) of a call cancelled before RECV_STATUS_ON_CLIENT was
     * started can stay pending forever (seen with gRPC 1.51 when a node closes at once). */
    nh_tp_stream_watch_end(s);
    if (!s->close_armed) return CLIENT_NOT_STARTED;
    if (!nh_tp_stream_start(s, start, 2, &s->start_tag)) {
        grpc_call_cancel_with_status(s->call, GRPC_STATUS_INTERNAL, "cannot start the stream",
                                     NULL);
        return CLIENT_START_FAILED;
    }
    nh_tp_stream_arm_recv(s);
    return CLIENT_STARTED;
}

/* The start of a relayed client stream, on its transport loop. */
static bool client_start_relayed(nh_tp_stream *s, void *arg) {
    return client_start(s, arg) != CLIENT_NOT_STARTED;
}

nh_tp_stream *nh_tp_channel_open(nh_tp_channel *ch, const nh_metadata *md, size_t n,
                                 const nh_tp_stream_events *ev, void *user) {
    nh_tp_loop *loop = nh_tp_loop_pick(ch->loop);
    grpc_completion_queue *cq = nh_tp_loop_cq(loop);
    grpc_slice path = grpc_slice_from_static_string(NH_NODESTREAM_PATH);
    grpc_call *call = grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, path,
                                               NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (!call) return NULL;
    nh_tp_stream *s = nh_tp_stream_new(loop, call, true);
    client_headers *h = s ? client_headers_new(md, n) : NULL;
    if (!h) {
        if (!s) {
            grpc_call_unref(call);
            return NULL;
        }
        s->closed = true;
        nh_tp_stream_free_closed(s); /* unrefs the call */
        return NULL;
    }
    s->channel = ch->channel;
    s->tls = nh_tls_ref(ch->tls);
    s->start_tag.fn = on_client_start;
    s->close_tag.fn = on_client_status;
    if (loop != ch->loop) {
        nh_tp_stream *front =
            nh_tp_relay_new(ch->loop, s, client_start_relayed, h, client_headers_free);
        if (!front) {
            client_headers_free(h);
            s->closed = true;
            nh_tp_stream_free_closed(s);
            return NULL;
        }
        nh_tp_stream_set_events(front, ev, user);
        return front;
    }
    nh_tp_stream_set_events(s, ev, user);
    client_start_result r = client_start(s, h);
    client_headers_free(h);
    if (r == CLIENT_NOT_STARTED) {
        s->closed = true;
        nh_tp_stream_free_closed(s);
        return NULL;
    }
    if (r == CLIENT_START_FAILED) {
        /* The status batch is running: let it free the stream, silently. */
        nh_tp_stream_set_events(s, NULL, NULL);
        return NULL;
    }
    return s;
}

void nh_tp_channel_reset_backoff(nh_tp_channel *ch) {
    grpc_channel_reset_connect_backoff(ch->channel);
}

void nh_tp_channel_free(nh_tp_channel *ch) {
    if (!ch) return;
    grpc_channel_destroy(ch->channel);
    nh_tls_unref(ch->tls);
    free(ch);
}
