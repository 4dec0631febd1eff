/* Calls to one node: the call object's life (start, timeout, cancel, completion), the public
 * RPC and unicast entry points, their blocking forms, and cancellation tokens. */
#include "metrics/metrics_impl.h"
#include "call/call.h"

#include "core/scope.h"
#include "node/node_impl.h"
#include "util/log.h"
#include "wire/codec.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- cancellation tokens ------------------------------------------------------------------ */

typedef struct cancel_reg {
    nh_runtime *rt;
    uint64_t seq;
} cancel_reg;

struct nh_cancel {
    pthread_mutex_t mu;
    bool fired;
    cancel_reg *regs;
    size_t len, cap;
};

nh_cancel *nh_cancel_new(void) {
    nh_cancel *c = calloc(1, sizeof *c);
    if (c) pthread_mutex_init(&c->mu, NULL);
    return c;
}

typedef struct cancel_task {
    nh_runtime *rt;
    uint64_t seq;
} cancel_task;

static void run_cancel(void *p) {
    cancel_task *t = p;
    nh_call_cancel_seq(t->rt, t->seq);
    free(t);
}

void nh_cancel_fire(nh_cancel *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->fired = true;
    cancel_reg *regs = c->regs;
    size_t n = c->len;
    c->regs = NULL;
    c->len = c->cap = 0;
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        cancel_task *t = malloc(sizeof *t);
        if (!t) continue;
        *t = (cancel_task){regs[i].rt, regs[i].seq};
        if (nh_runtime_post_internal(regs[i].rt, run_cancel, t) != 0) free(t);
    }
    free(regs);
}

bool nh_cancel_fired(const nh_cancel *c) {
    if (!c) return false;
    pthread_mutex_lock((pthread_mutex_t *)&c->mu);
    bool f = c->fired;
    pthread_mutex_unlock((pthread_mutex_t *)&c->mu);
    return f;
}

void nh_cancel_free(nh_cancel *c) {
    if (!c) return;
    pthread_mutex_destroy(&c->mu);
    free(c->regs);
    free(c);
}

bool nh_cancel_register(nh_cancel *c, nh_runtime *rt, uint64_t seq) {
    pthread_mutex_lock(&c->mu);
    bool ok = !c->fired;
    if (ok && c->len == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4;
        cancel_reg *r = realloc(c->regs, cap * sizeof *r);
        if (r) {
            c->regs = r;
            c->cap = cap;
        } else {
            ok = false;
        }
    }
    if (ok) c->regs[c->len++] = (cancel_reg){rt, seq};
    pthread_mutex_unlock(&c->mu);
    return ok;
}

void nh_cancel_unregister(nh_cancel *c, nh_runtime *rt, uint64_t seq) {
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->len; i++) {
        if (c->regs[i].rt == rt && c->regs[i].seq == seq) {
            c->regs[i] = c->regs[--c->len];
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

/* ---- the call object ---------------------------------------------------------------------- */

static void leg_on_reply(nh_pending *p, struct nh_node *n, const nh_wire_msg *m);
static void leg_on_fail(nh_pending *p, struct nh_node *n, nh_code code, nh_err_kind kind,
                        const char *text);
static void leg_on_sent(nh_pending *p, struct nh_node *n, bool ok);
static void run_cancel_call(nh_running *r);

static const nh_pending_ops call_leg_ops = {leg_on_reply, leg_on_fail, leg_on_sent};

nh_call *nh_call_new(nh_runtime *rt, struct nh_node *node, nh_call_kind kind, uint64_t seq,
                     nh_bytes *msg, const nh_call_opts *opts, nh_reply_fn done, void *user) {
    nh_call *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->leg.ops = &call_leg_ops;
    c->leg.seq = seq;
    c->run.cancel = run_cancel_call;
    c->rt = rt;
    c->node = node;
    c->kind = kind;
    c->seq = seq;
    c->msg = msg;
    c->done = done;
    c->user = user;
    c->refs = 1;
    if (opts) {
        c->cancel = opts->cancel;
        c->timeout_ms = opts->timeout_ms;
    }
    return c;
}

void nh_call_ref(nh_call *c) {
    c->refs++;
}

void nh_call_unref(nh_call *c) {
    if (--c->refs > 0) return;
    const nh_scope *scope = c->scope; /* set only if done never ran: the call was dropped */
    nh_bytes_unref(c->msg);
    nh_node_unref(c->node);
    free(c);
    nh_scope_release(scope);
}

static void on_timer_closed(uv_handle_t *h) {
    nh_call *c = h->data;
    nh_call_unref(c);
}

static void on_timeout(uv_timer_t *t) {
    nh_call *c = t->data;
    nh_call_fail(c, NH_DEADLINE_EXCEEDED, NH_ERR_TIMEOUT, "timeout after %u ms", c->timeout_ms);
}

typedef struct deferred_done {
    nh_reply_fn fn;
    void *user;
    const nh_scope *scope;
    nh_reply reply;
} deferred_done;

/* Runs done with its scope current, then releases the scope. */
static void run_done(nh_reply_fn fn, const nh_reply *r, void *user, const nh_scope *scope) {
    const nh_scope *prev = nh_scope_swap(scope);
    fn(r, user);
    nh_scope_restore(prev);
    nh_scope_release(scope);
}

static void run_deferred_done(void *p) {
    deferred_done *d = p;
    run_done(d->fn, &d->reply, d->user, d->scope);
    free(d);
}

void nh_call_complete(nh_call *c, const nh_reply *r) {
    if (c->completed) return;
    c->completed = true;
    if (c->node->kind != NH_NODE_OUTBOUND) /* a peer or client that dialed us: server-initiated */
        nh_metrics_server_call(c->kind == NH_CALL_RPC ? "rpc" : "unicast", (int)r->err.code);
    if (c->timer_open) {
        c->timer_open = false;
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    }
    if (c->cancel) {
        nh_running_remove(c->rt, c->seq);
        nh_cancel_unregister(c->cancel, c->rt, c->seq);
    }
    c->refs -= (int)nh_node_forget(c->node, &c->leg); /* queued sends that will not report */
    const nh_scope *scope = c->scope; /* the done callback's, released once it returned */
    c->scope = NULL;
    if (c->done && c->starting) {
        /* Completed while it was being started on the owner thread (refused, node down): the
         * callback runs from the task queue, never inside nh_rpc_async(), so a callback that
         * re-issues a failing call cannot recurse. Such completions carry no payload. */
        deferred_done *d = malloc(sizeof *d);
        if (d) {
            *d = (deferred_done){c->done, c->user, scope, *r};
            d->reply.payload = NULL;
            d->reply.len = 0;
            if (nh_runtime_post_internal(c->rt, run_deferred_done, d) != 0)
                run_deferred_done(d); /* the runtime is stopping: no later turn */
        } else {
            nh_scope_release(scope); /* out of memory: done is dropped */
        }
    } else if (c->done) {
        run_done(c->done, r, c->user, scope);
    }
    nh_call_unref(c);
}

void nh_call_fail(nh_call *c, nh_code code, nh_err_kind kind, const char *fmt, ...) {
    if (c->completed) return;
    nh_reply r = {.node_id = nh_node_id(c->node), .seq = c->seq};
    char label[160], msg[NH_ERROR_MESSAGE_MAX];
    nh_node_label(c->node, label, sizeof label);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nh_error_set(&r.err, code, kind, r.node_id, "%s: %s", label, msg);
    nh_call_complete(c, &r);
}

int nh_running_add(nh_runtime *rt, uint64_t seq, nh_running *r) {
    return nh_u64map_put(&rt->calls, seq, r);
}

void nh_running_remove(nh_runtime *rt, uint64_t seq) {
    nh_u64map_del(&rt->calls, seq);
}

void nh_call_start(nh_call *c) {
    if (c->rt->stopping) {
        nh_call_fail(c, NH_UNAVAILABLE, NH_ERR_CLOSED, "runtime stopped");
        return;
    }
    if (c->cancel && !nh_cancel_register(c->cancel, c->rt, c->seq)) {
        c->cancel = NULL;
        nh_call_fail(c, NH_CANCELLED, NH_ERR_CANCELLED, "call cancelled before it started");
        return;
    }
    /* Only a cancellation token looks calls up by seq. */
    if (c->cancel && nh_running_add(c->rt, c->seq, &c->run) != 0) {
        nh_call_fail(c, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, "out of memory");
        return;
    }
    if (c->timeout_ms) {
        uv_timer_init(nh_tp_loop_uv(c->rt->loop), &c->timer);
        c->timer.data = c;
        c->timer_open = true;
        c->refs++;
        uv_timer_start(&c->timer, on_timeout, c->timeout_ms, 0);
    }
    /* RPCs wait for a reply; unicasts with a callback wait for the send confirmation;
     * fire-and-forget unicasts end once written. */
    unsigned flags = c->kind == NH_CALL_RPC ? NH_SEND_EXPECT_REPLY : c->done ? NH_SEND_CONFIRM : 0;
    if (flags & NH_SEND_CONFIRM) c->refs++; /* held by the stream until on_sent */
    nh_bytes *msg = c->msg;
    c->msg = NULL;
    nh_error why;
    if (nh_node_send(c->node, msg, &c->leg, flags, &why) != 0) {
        if (flags & NH_SEND_CONFIRM) c->refs--;
        nh_call_fail(c, why.code, why.kind, "%s", why.message);
        return;
    }
    if (c->kind == NH_CALL_UNICAST && !c->done) {
        nh_reply r = {.node_id = nh_node_id(c->node), .seq = c->seq};
        nh_call_complete(c, &r);
    }
}

static void run_cancel_call(nh_running *r) {
    nh_call *c = (nh_call *)((char *)r - offsetof(nh_call, run));
    nh_call_fail(c, NH_CANCELLED, NH_ERR_CANCELLED, "call cancelled");
}

void nh_call_cancel_seq(nh_runtime *rt, uint64_t seq) {
    nh_running *r = nh_u64map_get(&rt->calls, seq);
    if (r) r->cancel(r);
}

static void leg_on_reply(nh_pending *p, struct nh_node *n, const nh_wire_msg *m) {
    (void)n;
    nh_call *c = (nh_call *)p;
    if (m->has_status && m->status_code != 0) {
        nh_call_fail(c, nh_code_from_wire(m->status_code), NH_ERR_STATUS, "%s", m->status_message);
        return;
    }
    nh_reply r = {.node_id = nh_node_id(c->node),
                  .seq = m->seq,
                  .payload = m->payload,
                  .len = m->payload_len};
    nh_call_complete(c, &r);
}

static void leg_on_fail(nh_pending *p, struct nh_node *n, nh_code code, nh_err_kind kind,
                        const char *text) {
    (void)n;
    nh_call_fail((nh_call *)p, code, kind, "%s", text);
}

static void leg_on_sent(nh_pending *p, struct nh_node *n, bool ok) {
    nh_call *c = (nh_call *)p;
    if (ok) {
        nh_reply r = {.node_id = nh_node_id(n), .seq = c->seq};
        nh_call_complete(c, &r);
    } else {
        bool closed = nh_node_closing(n);
        nh_call_fail(c, NH_UNAVAILABLE, closed ? NH_ERR_CLOSED : NH_ERR_TRANSPORT, "%s",
                     closed ? "node closed" : "send failed: stream broken");
    }
    nh_call_unref(c);
}

/* ---- public entry points ------------------------------------------------------------------ */

static void start_task(void *p) {
    nh_call_start(p);
}

/* Starts a call. scoped: done is the caller's, so it is held in the caller's scope (the
 * blocking forms pass the SDK's own waiter and hold nothing). */
static int start_call(nh_node *node, nh_call_kind kind, const char *method, const void *req,
                      size_t len, const nh_call_opts *opts, nh_reply_fn done, void *user,
                      bool scoped, nh_error *err) {
    if (!node) return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "node is NULL");
    uint32_t id = node->id;
    if (!method || !*method)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, id, "method name is empty");
    if (!req && len)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, id,
                            "request is NULL but its length is %zu", len);
    if (opts && opts->metadata_count && !opts->metadata)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, id, "metadata is NULL");
    nh_runtime *rt = node->rt;
    bool on_owner = nh_runtime_on_owner(rt);
    const nh_scope *scope = scoped && done ? nh_scope_capture() : NULL;
    if (scope && !on_owner && !nh_runtime_accepting(rt))
        return nh_error_set(err, NH_UNAVAILABLE, NH_ERR_CLOSED, id, "runtime stopped");
    /* Calls to a peer that dialed us, or to ourselves, are server-initiated (spec 1.5). */
    uint64_t seq =
        node->kind == NH_NODE_OUTBOUND ? nh_runtime_next_seq(rt) : nh_runtime_next_server_seq(rt);
    nh_wire_out out = {.seq = seq, .method = method, .payload = req, .payload_len = len};
    if (opts) {
        out.entries = opts->metadata;
        out.entry_count = opts->metadata_count;
    }
    nh_bytes *msg = nh_wire_encode(&out);
    if (!msg) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, id, "out of memory");
    if (msg->len > rt->max_message) {
        size_t n = msg->len;
        nh_bytes_unref(msg);
        char label[160];
        nh_node_label(node, label, sizeof label);
        return nh_error_set(
            err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, id,
            "%s: request of %zu bytes exceeds the maximum message size of %zu bytes", label, n,
            rt->max_message);
    }
    nh_node_ref(node);
    nh_call *c = nh_call_new(rt, node, kind, seq, msg, opts, done, user);
    if (!c) {
        nh_bytes_unref(msg);
        nh_node_unref(node);
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, id, "out of memory");
    }
    /* Held before the call can complete (on the owner thread, possibly at once). */
    c->scope = scope;
    nh_scope_hold(scope);
    if (on_owner) {
        /* Started at once (the request goes out in this turn of the loop); a completion during
         * the start is reported from the task queue (see nh_call_complete). */
        c->starting = true;
        nh_call_ref(c);
        nh_call_start(c);
        c->starting = false;
        nh_call_unref(c);
        return 0;
    }
    /* From another thread: through the owner's task queue, in the order issued. */
    if (nh_runtime_post_internal(rt, start_task, c) != 0) {
        c->node = NULL;
        nh_bytes_unref(c->msg);
        free(c);
        nh_node_unref(node);
        nh_scope_release(scope); /* refused after all: nothing stays held */
        return nh_error_set(err, NH_UNAVAILABLE, NH_ERR_CLOSED, id, "runtime stopped");
    }
    return 0;
}

int nh_rpc_async(nh_node *node, const char *method, const void *req, size_t len,
                 const nh_call_opts *opts, nh_reply_fn done, void *user, nh_error *err) {
    if (!done) return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "done is NULL");
    return start_call(node, NH_CALL_RPC, method, req, len, opts, done, user, true, err);
}

int nh_unicast_async(nh_node *node, const char *method, const void *req, size_t len,
                     const nh_call_opts *opts, nh_reply_fn done, void *user, nh_error *err) {
    return start_call(node, NH_CALL_UNICAST, method, req, len, opts, done, user, true, err);
}

/* A waiter for the blocking forms. */
typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    nh_error err;
    nh_buf resp;
} waiter;

static void waiter_done(const nh_reply *r, void *user) {
    waiter *w = user;
    nh_buf resp = {0};
    nh_error err = r->err;
    if (r->err.code == NH_OK && r->len) {
        resp.data = malloc(r->len);
        if (resp.data) {
            memcpy(resp.data, r->payload, r->len);
            resp.len = r->len;
        } else {
            nh_error_set(&err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, r->node_id, "out of memory");
        }
    }
    pthread_mutex_lock(&w->mu);
    w->err = err;
    w->resp = resp;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int blocking(nh_node *node, nh_call_kind kind, const char *method, const void *req,
                    size_t len, const nh_call_opts *opts, nh_buf *resp, nh_error *err) {
    if (node && nh_runtime_on_owner(node->rt))
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, node->id,
                            "blocking call on the owner thread would deadlock; use the "
                            "asynchronous form (nh_%s_async) in handlers and callbacks",
                            kind == NH_CALL_RPC ? "rpc" : "unicast");
    waiter w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    int rc = start_call(node, kind, method, req, len, opts, waiter_done, &w, false, err);
    if (rc == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        if (w.err.code != NH_OK) {
            if (err) *err = w.err;
            rc = -1;
        } else {
            nh_error_clear(err);
        }
        if (resp)
            *resp = w.resp;
        else
            nh_buf_free(&w.resp);
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return rc;
}

int nh_rpc(nh_node *node, const char *method, const void *req, size_t len, const nh_call_opts *opts,
           nh_buf *resp, nh_error *err) {
    if (resp) *resp = (nh_buf){0};
    return blocking(node, NH_CALL_RPC, method, req, len, opts, resp, err);
}

int nh_unicast(nh_node *node, const char *method, const void *req, size_t len,
               const nh_call_opts *opts, nh_error *err) {
    return blocking(node, NH_CALL_UNICAST, method, req, len, opts, NULL, err);
}
