/* Calls over a configuration: quorum calls, multicast and correctable calls.
 *
 * One qcall object per call, with one leg per node (the leg is what the node's router holds).
 * The request gets one message_seq_no shared by every node and is encoded once (per node only
 * when a request mapping changes it). Replies are recorded as they arrive; after each one the
 * quorum rule decides: done, need more, or impossible. Completion is single-shot: quorum
 * reached, quorum impossible, timeout, cancellation or runtime stop; legs still pending are then
 * removed from their routers, so late replies are dropped and nothing leaks. Owner thread only,
 * except the public entry points and the future/correctable handles. */
#include "metrics/metrics_impl.h"
#include "call/call.h"
#include "config/config_impl.h"
#include "core/scope.h"
#include "node/node_impl.h"
#include "util/log.h"

#include <nodehost/quorum.h>

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum qc_kind { QC_QUORUM, QC_MULTICAST, QC_CORRECTABLE } qc_kind;

struct nh_qcall;

typedef struct qc_leg {
    nh_pending p; /* first: the router entry / send tag */
    struct nh_qcall *qc;
    bool finished; /* this node's outcome is known (no more replies expected) */
    bool tagged;   /* a confirmed send is outstanding */
} qc_leg;

typedef struct nh_qcall {
    nh_running run;
    nh_runtime *rt;
    nh_config *cfg;
    qc_kind kind;
    bool streaming;
    uint64_t seq;
    char *method;
    uint8_t *req;
    size_t req_len;
    nh_metadata *md;
    size_t md_count;
    nh_bytes *msg; /* the request encoded once */
    nh_qc_opts opts;
    uv_timer_t timer;
    bool timer_open;
    bool sending;       /* inside the send loop: decide after it */
    bool starting;      /* inside qc_start() called directly on the owner thread */
    nh_error final_err; /* the outcome, kept for a deferred notification */
    bool completed;
    int refs; /* 1 until completed, +1 timer handle, +1 per outstanding tagged send */

    nh_qc_done_fn done;
    nh_mc_done_fn mc_done;
    nh_level_fn on_level;
    void *user;
    const nh_scope *scope; /* held while a user function (callback, mapping, quorum function)
                              may still run: released after the notification, or when the
                              call is dropped (qc_unref) */
    struct nh_qc_future *future;
    struct nh_correctable *corr;

    nh_node_reply *replies; /* payloads owned */
    size_t n_replies, cap_replies;
    size_t n_success, n_errors, n_skips, n_finished;
    bool has_value;
    uint8_t *value;
    size_t value_len;
    size_t n;
    qc_leg legs[];
} nh_qcall;

/* ---- the future and correctable handles (shared with other threads) ---------------------- */

struct nh_qc_future {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs; /* under mu: the engine and the user */
    bool done;
    nh_error err;
    nh_qc_outcome outcome;
};

struct nh_correctable {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs; /* under mu */
    int level;
    nh_buf value;
    bool done;
    nh_error err;
};

static void future_unref(struct nh_qc_future *f) {
    pthread_mutex_lock(&f->mu);
    int left = --f->refs;
    pthread_mutex_unlock(&f->mu);
    if (left) return;
    nh_qc_outcome_free(&f->outcome);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static void corr_unref(struct nh_correctable *c) {
    pthread_mutex_lock(&c->mu);
    int left = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (left) return;
    nh_buf_free(&c->value);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static uint8_t *dup_bytes(const void *p, size_t n) {
    uint8_t *d = malloc(n ? n : 1);
    if (d && n) memcpy(d, p, n);
    return d;
}

void nh_qc_outcome_free(nh_qc_outcome *o) {
    if (!o) return;
    nh_buf_free(&o->value);
    for (size_t i = 0; i < o->n_replies; i++)
        free((void *)o->replies[i].payload);
    free(o->replies);
    memset(o, 0, sizeof *o);
}

static int outcome_copy(nh_qc_outcome *dst, const nh_qc_outcome *src) {
    memset(dst, 0, sizeof *dst);
    dst->seq = src->seq;
    dst->n_node_errors = src->n_node_errors;
    if (src->value.len) {
        dst->value.data = dup_bytes(src->value.data, src->value.len);
        if (!dst->value.data) return -1;
        dst->value.len = src->value.len;
    }
    if (src->n_replies) {
        dst->replies = calloc(src->n_replies, sizeof *dst->replies);
        if (!dst->replies) return -1;
        for (size_t i = 0; i < src->n_replies; i++) {
            dst->replies[i] = src->replies[i];
            dst->replies[i].payload = NULL;
            if (src->replies[i].len) {
                dst->replies[i].payload = dup_bytes(src->replies[i].payload, src->replies[i].len);
                if (!dst->replies[i].payload) return -1;
            }
            dst->n_replies = i + 1;
        }
    }
    return 0;
}

static int outcome_from_result(nh_qc_outcome *dst, const nh_qc_result *r) {
    nh_qc_outcome view = {.seq = r->seq,
                          .value = {(uint8_t *)r->value, r->value_len},
                          .replies = (nh_node_reply *)r->replies,
                          .n_replies = r->n_replies,
                          .n_node_errors = r->n_node_errors};
    return outcome_copy(dst, &view);
}

/* ---- recording and deciding --------------------------------------------------------------- */

static void qc_complete(nh_qcall *qc, nh_code code, nh_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void qc_unref(nh_qcall *qc) {
    if (--qc->refs > 0) return;
    const nh_scope *scope = qc->scope; /* still set only if the call never notified */
    for (size_t i = 0; i < qc->n_replies; i++)
        free((void *)qc->replies[i].payload);
    free(qc->replies);
    free(qc->value);
    nh_bytes_unref(qc->msg);
    for (size_t i = 0; i < qc->md_count; i++) {
        free((char *)qc->md[i].key);
        free((char *)qc->md[i].value);
    }
    free(qc->md);
    free(qc->req);
    free(qc->method);
    nh_config_unref(qc->cfg);
    free(qc);
    nh_scope_release(scope);
}

static size_t quorum_size(const nh_qcall *qc) {
    switch (qc->opts.quorum.kind) {
        case NH_QUORUM_FIRST:
            return 1;
        case NH_QUORUM_ALL:
            return qc->n;
        case NH_QUORUM_THRESHOLD:
            return qc->opts.quorum.threshold ? qc->opts.quorum.threshold : 1;
        case NH_QUORUM_MAJORITY:
        default:
            return qc->n / 2 + 1;
    }
}

static const char *quorum_name(const nh_qcall *qc) {
    switch (qc->opts.quorum.kind) {
        case NH_QUORUM_FIRST:
            return "first";
        case NH_QUORUM_ALL:
            return "all";
        case NH_QUORUM_THRESHOLD:
            return "threshold";
        case NH_QUORUM_CUSTOM:
            return "the quorum function";
        case NH_QUORUM_MAJORITY:
        default:
            return "majority";
    }
}

/* For a call over a membership: "1 of 3 members reachable, majority needs 2". */
static void members_reach(const nh_qcall *qc, char *buf, size_t size) {
    size_t reach = nh_config_reachable(qc->cfg);
    if (qc->kind == QC_QUORUM && qc->opts.quorum.kind != NH_QUORUM_CUSTOM)
        snprintf(buf, size, "%zu of %zu members reachable, %s needs %zu", reach, qc->n,
                 quorum_name(qc), quorum_size(qc));
    else
        snprintf(buf, size, "%zu of %zu members reachable", reach, qc->n);
}

static size_t correctable_threshold(const nh_qcall *qc) {
    return qc->opts.quorum.threshold ? qc->opts.quorum.threshold : qc->n;
}

static nh_node_reply *add_reply(nh_qcall *qc) {
    if (qc->n_replies == qc->cap_replies) {
        size_t cap = qc->cap_replies ? qc->cap_replies * 2 : (qc->n ? qc->n : 4);
        nh_node_reply *r = realloc(qc->replies, cap * sizeof *r);
        if (!r) return NULL;
        qc->replies = r;
        qc->cap_replies = cap;
    }
    nh_node_reply *r = &qc->replies[qc->n_replies++];
    memset(r, 0, sizeof *r);
    return r;
}

static void set_value(nh_qcall *qc, const uint8_t *p, size_t len) {
    free(qc->value);
    qc->value = dup_bytes(p, len);
    qc->value_len = qc->value ? len : 0;
    qc->has_value = true;
}

/* The user's level callback runs first, then waiters are woken: a waiter that returns may free
 * what the callback uses. */
static void report_level(nh_qcall *qc, bool done, const nh_error *err) {
    int level = qc->n_success ? (int)qc->n_success : -1;
    if (qc->on_level) {
        const nh_scope *prev = nh_scope_swap(qc->scope);
        qc->on_level(level, qc->value, qc->value_len, done, err, qc->user);
        nh_scope_restore(prev);
    }
    if (qc->corr) {
        struct nh_correctable *c = qc->corr;
        pthread_mutex_lock(&c->mu);
        c->level = level;
        if (qc->has_value) {
            nh_buf_free(&c->value);
            c->value.data = dup_bytes(qc->value, qc->value_len);
            c->value.len = c->value.data ? qc->value_len : 0;
        }
        if (done) {
            c->done = true;
            c->err = *err;
        }
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
}

/* A call error's message: "<what> (errors: N): node 1 UNAVAILABLE, node 3 DEADLINE_EXCEEDED;
 * first: <the first failure in full>". Every failed node is named even when the full texts
 * would not fit; each one's full error is in the result's replies. */
static void summarize(nh_qcall *qc, char *msg, size_t size, const char *what) {
    size_t off = (size_t)snprintf(msg, size, "%s (errors: %zu)", what, qc->n_errors);
    const nh_node_reply *first = NULL;
    const char *sep = ": ";
    for (size_t i = 0; i < qc->n_replies && off < size; i++) {
        const nh_node_reply *r = &qc->replies[i];
        if (r->err.code == NH_OK || r->err.kind == NH_ERR_LOCAL) continue;
        if (!first) first = r;
        off += (size_t)snprintf(msg + off, size - off, "%snode %u %s", sep, r->node_id,
                                nh_code_name(r->err.code));
        sep = ", ";
    }
    if (first && off < size)
        snprintf(msg + off, size - off, "; first: %.*s", (int)(size - off), first->err.message);
}

static void incomplete(nh_qcall *qc, nh_code code, const char *why) {
    char what[192], msg[NH_ERROR_MESSAGE_MAX], reach[96] = "";
    if (qc->cfg->membership) members_reach(qc, reach, sizeof reach);
    snprintf(what, sizeof what, "incomplete call%s%s%s%s", why ? ": " : "", why ? why : "",
             *reach ? (why ? "; " : ": ") : "", reach);
    summarize(qc, msg, sizeof msg, what);
    qc_complete(qc, code, NH_ERR_INCOMPLETE, "%s", msg);
}

static void decide(nh_qcall *qc) {
    if (qc->completed || qc->sending) return;
    bool all_finished = qc->n_finished == qc->n;
    switch (qc->kind) {
        case QC_MULTICAST:
            if (!all_finished) return;
            if (qc->n_errors == 0) {
                qc_complete(qc, NH_OK, NH_ERR_NONE, "%s", "");
            } else {
                char msg[NH_ERROR_MESSAGE_MAX];
                summarize(qc, msg, sizeof msg, "send failure");
                qc_complete(qc, NH_UNAVAILABLE, NH_ERR_SEND_FAILURE, "%s", msg);
            }
            return;
        case QC_CORRECTABLE: {
            size_t k = correctable_threshold(qc);
            if (qc->n_success >= k) {
                qc_complete(qc, NH_OK, NH_ERR_NONE, "%s", "");
            } else if (all_finished) {
                incomplete(qc, NH_UNAVAILABLE, NULL);
            }
            return;
        }
        case QC_QUORUM:
            break;
    }
    if (qc->opts.quorum.kind == NH_QUORUM_CUSTOM) {
        if (all_finished) incomplete(qc, NH_UNAVAILABLE, NULL);
        return; /* the quorum function already ran for each reply */
    }
    /* Gorums' Threshold(k): a skipped node counts toward the quorum, an error does not. */
    size_t k = quorum_size(qc);
    size_t counted = qc->n_success + qc->n_skips;
    /* When the quorum can no longer be reached the call still waits for the remaining nodes
     * (bounded by its timeout), as Gorums does, so that the error lists every failed node. */
    if (counted >= k) {
        qc_complete(qc, NH_OK, NH_ERR_NONE, "%s", "");
    } else if (all_finished) {
        incomplete(qc, NH_UNAVAILABLE, NULL);
    }
}

/* The status a quorum function chose with nh_qf_fail(), on the thread running it. */
static _Thread_local struct {
    bool set;
    nh_code code;
    char message[NH_ERROR_MESSAGE_MAX];
} qf_failure;

nh_qf_verdict nh_qf_fail(nh_code code, const char *fmt, ...) {
    qf_failure.set = true;
    qf_failure.code = code == NH_OK ? NH_UNKNOWN : code;
    qf_failure.message[0] = 0;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(qf_failure.message, sizeof qf_failure.message, fmt, ap);
        va_end(ap);
    }
    return NH_QF_FAIL;
}

static void run_custom(nh_qcall *qc) {
    if (qc->completed || qc->kind != QC_QUORUM || qc->opts.quorum.kind != NH_QUORUM_CUSTOM ||
        !qc->opts.quorum.fn)
        return;
    const uint8_t *res = NULL;
    size_t res_len = 0;
    const nh_scope *prev = nh_scope_swap(qc->scope);
    qf_failure.set = false;
    nh_qf_verdict v = qc->opts.quorum.fn(qc->replies, qc->n_replies, qc->n, qc->opts.quorum.fn_user,
                                         &res, &res_len);
    nh_scope_restore(prev);
    if (v == NH_QF_DONE) {
        set_value(qc, res, res ? res_len : 0);
        qc_complete(qc, NH_OK, NH_ERR_NONE, "%s", "");
    } else if (v == NH_QF_FAIL) {
        if (qf_failure.set)
            qc_complete(qc, qf_failure.code, NH_ERR_INCOMPLETE, "%s", qf_failure.message);
        else
            qc_complete(qc, NH_UNKNOWN, NH_ERR_INCOMPLETE, "the quorum function failed the call");
        qf_failure.set = false;
    }
}

static void leg_finish(nh_qcall *qc, qc_leg *leg) {
    if (!leg->finished) {
        leg->finished = true;
        qc->n_finished++;
    }
}

static void record_error(nh_qcall *qc, qc_leg *leg, nh_node *n, nh_code code, nh_err_kind kind,
                         const char *text) {
    nh_node_reply *r = add_reply(qc);
    if (r) {
        r->node_id = nh_node_id(n);
        char label[160];
        nh_node_label(n, label, sizeof label);
        nh_error_set(&r->err, code, kind, r->node_id, "%s: %s", label, text);
    }
    qc->n_errors++;
    leg_finish(qc, leg);
}

/* A node that a request mapping skipped: Gorums' ErrSkipNode, reported as a local error. */
static void record_skip(nh_qcall *qc, qc_leg *leg, nh_node *n) {
    nh_node_reply *r = add_reply(qc);
    if (r) {
        r->node_id = nh_node_id(n);
        nh_error_set(&r->err, NH_ABORTED, NH_ERR_LOCAL, r->node_id, "node %u: skip node",
                     r->node_id);
    }
    if (qc->kind == QC_CORRECTABLE)
        qc->n_errors++; /* as Gorums: an error for Correctable */
    else
        qc->n_skips++;
    if (qc->kind == QC_QUORUM && !qc->has_value && qc->n_success == 0 &&
        qc->opts.quorum.kind != NH_QUORUM_CUSTOM)
        set_value(qc, NULL, 0); /* a skip counted first gives the zero value (as Gorums) */
    leg_finish(qc, leg);
}

static void record_success(nh_qcall *qc, qc_leg *leg, nh_node *n, const uint8_t *p, size_t len) {
    nh_buf mapped = {0};
    if (qc->opts.map_response) {
        const nh_scope *prev = nh_scope_swap(qc->scope);
        nh_map_verdict v =
            qc->opts.map_response(nh_node_id(n), p, len, qc->opts.map_response_user, &mapped);
        nh_scope_restore(prev);
        if (v == NH_MAP_REPLACE) {
            p = mapped.data;
            len = mapped.len;
        }
    }
    nh_node_reply *r = add_reply(qc);
    if (r) {
        r->node_id = nh_node_id(n);
        r->payload = len ? dup_bytes(p, len) : NULL;
        r->len = r->payload ? len : 0;
    }
    qc->n_success++;
    if (!qc->streaming) leg_finish(qc, leg);
    if (qc->kind == QC_CORRECTABLE) {
        set_value(qc, p, len); /* the latest value */
        nh_buf_free(&mapped);
        if (qc->n_success < correctable_threshold(qc)) {
            nh_error ok = {.code = NH_OK};
            report_level(qc, false, &ok);
        }
        return;
    }
    if (!qc->has_value && qc->opts.quorum.kind != NH_QUORUM_CUSTOM) set_value(qc, p, len);
    nh_buf_free(&mapped);
}

static void leg_on_reply(nh_pending *p, nh_node *n, const nh_wire_msg *m) {
    qc_leg *leg = (qc_leg *)p;
    nh_qcall *qc = leg->qc;
    if (qc->completed) return;
    if (m->has_status && m->status_code != 0)
        record_error(qc, leg, n, nh_code_from_wire(m->status_code), NH_ERR_STATUS,
                     m->status_message);
    else
        record_success(qc, leg, n, m->payload, m->payload_len);
    run_custom(qc);
    decide(qc);
}

static void leg_on_fail(nh_pending *p, nh_node *n, nh_code code, nh_err_kind kind,
                        const char *text) {
    qc_leg *leg = (qc_leg *)p;
    nh_qcall *qc = leg->qc;
    if (qc->completed || leg->finished) return;
    record_error(qc, leg, n, code, kind, text);
    run_custom(qc);
    decide(qc);
}

static void leg_on_sent(nh_pending *p, nh_node *n, bool ok) {
    qc_leg *leg = (qc_leg *)p;
    nh_qcall *qc = leg->qc;
    leg->tagged = false;
    if (!qc->completed && !leg->finished) {
        if (ok) {
            leg_finish(qc, leg);
        } else {
            record_error(qc, leg, n, NH_UNAVAILABLE,
                         nh_node_closing(n) ? NH_ERR_CLOSED : NH_ERR_TRANSPORT,
                         nh_node_closing(n) ? "node closed" : "send failed: stream broken");
        }
        decide(qc);
    }
    qc_unref(qc);
}

static const nh_pending_ops qc_leg_ops = {leg_on_reply, leg_on_fail, leg_on_sent};

/* ---- completion --------------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h) {
    qc_unref(h->data);
}

/* Tells the caller: the callback, the future or the correctable handle. */
static void qc_notify(nh_qcall *qc, const nh_error *errp) {
    nh_error err = *errp;
    nh_qc_result r = {.seq = qc->seq,
                      .err = err,
                      .value = qc->value,
                      .value_len = qc->value_len,
                      .replies = qc->replies,
                      .n_replies = qc->n_replies,
                      .n_node_errors = qc->n_errors};
    const nh_scope *prev = nh_scope_swap(qc->scope);
    switch (qc->kind) {
        case QC_QUORUM:
            if (qc->done) qc->done(&r, qc->user);
            break;
        case QC_MULTICAST:
            if (qc->mc_done) qc->mc_done(&err, qc->user);
            break;
        case QC_CORRECTABLE:
            report_level(qc, true, &err);
            break;
    }
    nh_scope_restore(prev);
    if (qc->future) {
        struct nh_qc_future *f = qc->future;
        pthread_mutex_lock(&f->mu);
        f->err = err;
        if (outcome_from_result(&f->outcome, &r) != 0 && err.code == NH_OK)
            nh_error_set(&f->err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        f->done = true;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
        future_unref(f);
        qc->future = NULL;
    }
    if (qc->corr) {
        corr_unref(qc->corr);
        qc->corr = NULL;
    }
    /* No user function of this call runs any more (it completed): its scope is released. */
    const nh_scope *scope = qc->scope;
    qc->scope = NULL;
    nh_scope_release(scope);
}

static void run_notify(void *arg) {
    nh_qcall *qc = arg;
    qc_notify(qc, &qc->final_err);
    qc_unref(qc);
}

static void qc_complete(nh_qcall *qc, nh_code code, nh_err_kind kind, const char *fmt, ...) {
    if (qc->completed) return;
    qc->completed = true;
    if (qc->cfg->server_initiated)
        nh_metrics_server_call(qc->kind == QC_QUORUM      ? "quorum"
                               : qc->kind == QC_MULTICAST ? "multicast"
                                                          : "correctable",
                               (int)code);
    nh_error err;
    nh_error_clear(&err);
    if (code != NH_OK) {
        char msg[NH_ERROR_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        nh_error_set(&err, code, kind, 0, "%s", msg);
    }
    if (qc->timer_open) {
        qc->timer_open = false;
        uv_timer_stop(&qc->timer);
        uv_close((uv_handle_t *)&qc->timer, on_timer_closed);
    }
    if (qc->opts.call.cancel) {
        nh_running_remove(qc->rt, qc->seq);
        nh_cancel_unregister(qc->opts.call.cancel, qc->rt, qc->seq);
    }
    /* Pending legs leave their routers (late replies are dropped); queued confirmed sends are
     * withdrawn (their on_sent will not come). */
    for (size_t i = 0; i < qc->n; i++) {
        qc_leg *leg = &qc->legs[i];
        size_t removed = nh_node_forget(qc->cfg->nodes[i], &leg->p);
        if (removed && leg->tagged) {
            leg->tagged = false;
            qc->refs -= (int)removed;
        }
    }
    if (qc->starting) {
        /* Completed while being started on the owner thread: report from the task queue, never
         * inside the function that started the call. */
        qc->final_err = err;
        qc->refs++;
        if (nh_runtime_post_internal(qc->rt, run_notify, qc) == 0) {
            qc_unref(qc);
            return;
        }
        qc->refs--;
    }
    qc_notify(qc, &err);
    qc_unref(qc);
}

/* Better than Gorums, which lists only errors already delivered: at a timeout or cancellation
 * every node that has not answered gets an error of its own, so the caller sees who was slow. */
static void fail_unfinished(nh_qcall *qc, nh_code code, nh_err_kind kind, const char *text) {
    for (size_t i = 0; i < qc->n; i++)
        if (!qc->legs[i].finished)
            record_error(qc, &qc->legs[i], qc->cfg->nodes[i], code, kind, text);
}

static void on_timeout(uv_timer_t *t) {
    nh_qcall *qc = t->data;
    char why[64];
    snprintf(why, sizeof why, "timeout after %u ms", qc->opts.call.timeout_ms);
    fail_unfinished(qc, NH_DEADLINE_EXCEEDED, NH_ERR_TIMEOUT,
                    qc->kind == QC_MULTICAST ? "not sent before the timeout"
                                             : "no reply before the timeout");
    if (qc->kind == QC_MULTICAST)
        qc_complete(qc, NH_DEADLINE_EXCEEDED, NH_ERR_TIMEOUT, "send failure: %s", why);
    else
        incomplete(qc, NH_DEADLINE_EXCEEDED, why);
}

static void run_cancel_qc(nh_running *r) {
    nh_qcall *qc = (nh_qcall *)r;
    fail_unfinished(qc, NH_CANCELLED, NH_ERR_CANCELLED, "call cancelled before a reply");
    if (qc->kind == QC_MULTICAST)
        qc_complete(qc, NH_CANCELLED, NH_ERR_CANCELLED, "call cancelled");
    else
        incomplete(qc, NH_CANCELLED, "call cancelled");
}

/* ---- start -------------------------------------------------------------------------------- */

static nh_bytes *encode_for(nh_qcall *qc, const uint8_t *req, size_t len) {
    nh_wire_out out = {.seq = qc->seq,
                       .method = qc->method,
                       .entries = qc->md,
                       .entry_count = qc->md_count,
                       .payload = req,
                       .payload_len = len};
    return nh_wire_encode(&out);
}

static void qc_start(void *arg) {
    nh_qcall *qc = arg;
    if (qc->rt->stopping) {
        qc_complete(qc, NH_UNAVAILABLE, NH_ERR_CLOSED, "runtime stopped");
        return;
    }
    nh_cancel *cancel = qc->opts.call.cancel;
    if (cancel && !nh_cancel_register(cancel, qc->rt, qc->seq)) {
        qc->opts.call.cancel = NULL;
        qc_complete(qc, NH_CANCELLED, NH_ERR_CANCELLED, "call cancelled before it started");
        return;
    }
    if (cancel && nh_running_add(qc->rt, qc->seq, &qc->run) != 0) {
        qc_complete(qc, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, "out of memory");
        return;
    }
    /* Over a membership, a built-in quorum that the members reachable now cannot meet fails
     * at once, before anything is sent (a partitioned node must not act alone). */
    if (qc->cfg->membership && qc->kind == QC_QUORUM && qc->opts.quorum.kind != NH_QUORUM_CUSTOM &&
        nh_config_reachable(qc->cfg) < quorum_size(qc)) {
        char reach[96];
        members_reach(qc, reach, sizeof reach);
        qc_complete(qc, NH_UNAVAILABLE, NH_ERR_INCOMPLETE, "%s", reach);
        return;
    }
    if (qc->opts.call.timeout_ms) {
        uv_timer_init(nh_tp_loop_uv(qc->rt->loop), &qc->timer);
        qc->timer.data = qc;
        qc->timer_open = true;
        qc->refs++;
        uv_timer_start(&qc->timer, on_timeout, qc->opts.call.timeout_ms, 0);
    }
    bool fire_and_forget = qc->kind == QC_MULTICAST && !qc->mc_done && !qc->future;
    unsigned flags =
        qc->kind == QC_MULTICAST ? (fire_and_forget ? 0u : NH_SEND_CONFIRM) : NH_SEND_EXPECT_REPLY;
    size_t max = qc->rt->max_message;
    qc->sending = true;
    for (size_t i = 0; i < qc->n && !qc->completed; i++) {
        qc_leg *leg = &qc->legs[i];
        nh_node *node = qc->cfg->nodes[i];
        nh_bytes *msg = NULL;
        if (qc->opts.map_request) {
            nh_buf out = {0};
            const nh_scope *prev = nh_scope_swap(qc->scope);
            nh_map_verdict v = qc->opts.map_request(nh_node_id(node), qc->req, qc->req_len,
                                                    qc->opts.map_request_user, &out);
            nh_scope_restore(prev);
            if (v == NH_MAP_SKIP) {
                nh_buf_free(&out);
                record_skip(qc, leg, node);
                continue;
            }
            if (v == NH_MAP_REPLACE) {
                msg = encode_for(qc, out.data, out.len);
                nh_buf_free(&out);
                if (msg && msg->len > max) {
                    char text[128];
                    snprintf(text, sizeof text,
                             "request of %zu bytes exceeds the maximum message size of %zu bytes",
                             msg->len, max);
                    nh_bytes_unref(msg);
                    record_error(qc, leg, node, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, text);
                    continue;
                }
            }
        }
        if (!msg) msg = nh_bytes_ref(qc->msg);
        if (!msg) {
            record_error(qc, leg, node, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, "out of memory");
            continue;
        }
        if (flags & NH_SEND_CONFIRM) {
            leg->tagged = true;
            qc->refs++;
        }
        nh_error why;
        if (nh_node_send(node, msg, &leg->p, flags, &why) != 0) {
            if (flags & NH_SEND_CONFIRM) {
                leg->tagged = false;
                qc->refs--;
            }
            record_error(qc, leg, node, why.code, why.kind, why.message);
            continue;
        }
        if (fire_and_forget) leg_finish(qc, leg);
    }
    qc->sending = false;
    run_custom(qc);
    decide(qc);
}

static int copy_request(nh_qcall *qc, const char *method, const void *req, size_t len,
                        const nh_qc_opts *opts) {
    qc->method = strdup(method);
    qc->req = dup_bytes(req, len);
    qc->req_len = len;
    if (!qc->method || !qc->req) return -1;
    if (opts) qc->opts = *opts;
    size_t n = qc->opts.call.metadata_count;
    if (n) {
        qc->md = calloc(n, sizeof *qc->md);
        if (!qc->md) return -1;
        for (size_t i = 0; i < n; i++) {
            qc->md[i].key = strdup(opts->call.metadata[i].key);
            qc->md[i].value = strdup(opts->call.metadata[i].value);
            qc->md_count = i + 1;
            if (!qc->md[i].key || !qc->md[i].value) return -1;
        }
    }
    qc->opts.call.metadata = NULL;
    qc->opts.call.metadata_count = 0;
    return 0;
}

/* Validates, builds and encodes a call on the caller's thread. NULL with err set on refusal. */
static nh_qcall *qc_new(qc_kind kind, nh_config *cfg, const char *method, const void *req,
                        size_t len, const nh_qc_opts *opts, nh_error *err) {
    if (!cfg) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "configuration is NULL");
        return NULL;
    }
    if (cfg->n == 0) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                     "empty configuration: a call needs at least one node");
        return NULL;
    }
    if (!method || !*method) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "method name is empty");
        return NULL;
    }
    if (!req && len) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                     "request is NULL but its length is %zu", len);
        return NULL;
    }
    if (opts && opts->call.metadata_count && !opts->call.metadata) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "metadata is NULL");
        return NULL;
    }
    if (opts && kind == QC_QUORUM && opts->quorum.kind == NH_QUORUM_CUSTOM && !opts->quorum.fn) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                     "NH_QUORUM_CUSTOM needs a quorum function");
        return NULL;
    }
    if (opts && kind == QC_QUORUM && opts->quorum.kind > NH_QUORUM_CUSTOM) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "unknown quorum kind %d",
                     (int)opts->quorum.kind);
        return NULL;
    }
    nh_qcall *qc = calloc(1, sizeof *qc + cfg->n * sizeof(qc_leg));
    if (!qc) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return NULL;
    }
    qc->run.cancel = run_cancel_qc;
    qc->rt = cfg->rt;
    qc->cfg = nh_config_ref(cfg);
    qc->kind = kind;
    qc->n = cfg->n;
    qc->refs = 1;
    qc->seq =
        cfg->server_initiated ? nh_runtime_next_server_seq(cfg->rt) : nh_runtime_next_seq(cfg->rt);
    for (size_t i = 0; i < qc->n; i++) {
        qc->legs[i].p.ops = &qc_leg_ops;
        qc->legs[i].p.seq = qc->seq;
        qc->legs[i].qc = qc;
    }
    if (copy_request(qc, method, req, len, opts) != 0 ||
        !(qc->msg = encode_for(qc, qc->req, qc->req_len))) {
        qc_unref(qc);
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return NULL;
    }
    if (qc->msg->len > qc->rt->max_message && !qc->opts.map_request) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0,
                     "request of %zu bytes exceeds the maximum message size of %zu bytes",
                     qc->msg->len, qc->rt->max_message);
        qc_unref(qc);
        return NULL;
    }
    return qc;
}

/* True when the call keeps a function pointer of its caller: a callback, a mapping or a custom
 * quorum function. Only such calls hold the caller's scope. */
static bool qc_has_user_fn(const nh_qcall *qc) {
    return qc->done || qc->mc_done || qc->on_level || qc->opts.map_request ||
           qc->opts.map_response ||
           (qc->kind == QC_QUORUM && qc->opts.quorum.kind == NH_QUORUM_CUSTOM &&
            qc->opts.quorum.fn);
}

/* Starts the call: at once on the owner thread, through its task queue from other threads
 * (calls started in a row from one thread go out in that order). On -1 the call is freed. */
static int qc_launch(nh_qcall *qc, nh_error *err) {
    bool on_owner = nh_runtime_on_owner(qc->rt);
    const nh_scope *scope = qc_has_user_fn(qc) ? nh_scope_capture() : NULL;
    if (scope && !on_owner && !nh_runtime_accepting(qc->rt)) {
        qc->future = NULL;
        qc->corr = NULL;
        qc_unref(qc);
        return nh_error_set(err, NH_UNAVAILABLE, NH_ERR_CLOSED, 0, "runtime stopped");
    }
    /* Held before the call can run; released by qc_notify(), or by qc_unref() when the call is
     * refused below. */
    qc->scope = scope;
    nh_scope_hold(scope);
    if (on_owner) {
        /* Started at once; a completion during the start is reported from the task queue. */
        qc->starting = true;
        qc->refs++;
        qc_start(qc);
        qc->starting = false;
        qc_unref(qc);
        return 0;
    }
    if (nh_runtime_post_internal(qc->rt, qc_start, qc) != 0) {
        qc->future = NULL;
        qc->corr = NULL;
        qc_unref(qc);
        return nh_error_set(err, NH_UNAVAILABLE, NH_ERR_CLOSED, 0, "runtime stopped");
    }
    return 0;
}

/* ---- public entry points ------------------------------------------------------------------ */

int nh_quorum_call_async(nh_config *cfg, const char *method, const void *req, size_t len,
                         const nh_qc_opts *opts, nh_qc_done_fn done, void *user, nh_error *err) {
    if (!done) return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "done is NULL");
    nh_qcall *qc = qc_new(QC_QUORUM, cfg, method, req, len, opts, err);
    if (!qc) return -1;
    qc->done = done;
    qc->user = user;
    return qc_launch(qc, err);
}

static struct nh_qc_future *future_new(void) {
    struct nh_qc_future *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->refs = 2; /* the engine's and the caller's */
    return f;
}

static int start_with_future(qc_kind kind, nh_config *cfg, const char *method, const void *req,
                             size_t len, const nh_qc_opts *opts, nh_qc_future **out,
                             nh_error *err) {
    nh_qcall *qc = qc_new(kind, cfg, method, req, len, opts, err);
    if (!qc) return -1;
    struct nh_qc_future *f = future_new();
    if (!f) {
        qc_unref(qc);
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    }
    qc->future = f;
    if (qc_launch(qc, err) != 0) {
        future_unref(f);
        future_unref(f);
        return -1;
    }
    *out = f;
    return 0;
}

int nh_quorum_call_start(nh_config *cfg, const char *method, const void *req, size_t len,
                         const nh_qc_opts *opts, nh_qc_future **out, nh_error *err) {
    if (!out) return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "out is NULL");
    *out = NULL;
    return start_with_future(QC_QUORUM, cfg, method, req, len, opts, out, err);
}

bool nh_qc_future_done(nh_qc_future *f) {
    pthread_mutex_lock(&f->mu);
    bool d = f->done;
    pthread_mutex_unlock(&f->mu);
    return d;
}

static bool refuse_on_owner(nh_runtime *rt, const char *what, nh_error *err) {
    if (!nh_runtime_on_owner(rt)) return false;
    nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                 "blocking %s on the owner thread would deadlock; use the asynchronous form in "
                 "handlers and callbacks",
                 what);
    return true;
}

int nh_qc_future_wait(nh_qc_future *f, nh_qc_outcome *out, nh_error *err) {
    if (out) memset(out, 0, sizeof *out);
    pthread_mutex_lock(&f->mu);
    while (!f->done)
        pthread_cond_wait(&f->cv, &f->mu);
    int rc = f->err.code == NH_OK ? 0 : -1;
    if (err) *err = f->err;
    if (out && outcome_copy(out, &f->outcome) != 0) {
        nh_qc_outcome_free(out);
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        rc = -1;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

void nh_qc_future_free(nh_qc_future *f) {
    if (f) future_unref(f);
}

int nh_quorum_call(nh_config *cfg, const char *method, const void *req, size_t len,
                   const nh_qc_opts *opts, nh_qc_outcome *out, nh_error *err) {
    if (out) memset(out, 0, sizeof *out);
    if (cfg && refuse_on_owner(cfg->rt, "quorum call", err)) return -1;
    nh_qc_future *f;
    if (start_with_future(QC_QUORUM, cfg, method, req, len, opts, &f, err) != 0) return -1;
    int rc = nh_qc_future_wait(f, out, err);
    nh_qc_future_free(f);
    return rc;
}

int nh_multicast_async(nh_config *cfg, const char *method, const void *req, size_t len,
                       const nh_qc_opts *opts, nh_mc_done_fn done, void *user, nh_error *err) {
    nh_qcall *qc = qc_new(QC_MULTICAST, cfg, method, req, len, opts, err);
    if (!qc) return -1;
    qc->mc_done = done;
    qc->user = user;
    return qc_launch(qc, err);
}

int nh_multicast(nh_config *cfg, const char *method, const void *req, size_t len,
                 const nh_qc_opts *opts, nh_error *err) {
    if (cfg && refuse_on_owner(cfg->rt, "multicast", err)) return -1;
    nh_qc_future *f;
    if (start_with_future(QC_MULTICAST, cfg, method, req, len, opts, &f, err) != 0) return -1;
    int rc = nh_qc_future_wait(f, NULL, err);
    nh_qc_future_free(f);
    return rc;
}

int nh_correctable_start(nh_config *cfg, const char *method, const void *req, size_t len,
                         const nh_qc_opts *opts, bool streaming, nh_level_fn on_level, void *user,
                         nh_correctable **out, nh_error *err) {
    if (out) *out = NULL;
    nh_qcall *qc = qc_new(QC_CORRECTABLE, cfg, method, req, len, opts, err);
    if (!qc) return -1;
    qc->streaming = streaming;
    for (size_t i = 0; i < qc->n; i++)
        qc->legs[i].p.streaming = streaming;
    qc->on_level = on_level;
    qc->user = user;
    struct nh_correctable *c = NULL;
    if (out) {
        c = calloc(1, sizeof *c);
        if (!c) {
            qc_unref(qc);
            return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        }
        pthread_mutex_init(&c->mu, NULL);
        pthread_cond_init(&c->cv, NULL);
        c->refs = 2;
        c->level = -1;
        qc->corr = c;
    }
    if (qc_launch(qc, err) != 0) {
        if (c) {
            corr_unref(c);
            corr_unref(c);
        }
        return -1;
    }
    if (out) *out = c;
    return 0;
}

int nh_correctable_get(nh_correctable *c, nh_buf *value, bool *done, nh_error *err) {
    pthread_mutex_lock(&c->mu);
    int level = c->level;
    if (value) {
        *value = (nh_buf){0};
        if (c->value.len) {
            value->data = dup_bytes(c->value.data, c->value.len);
            value->len = value->data ? c->value.len : 0;
        }
    }
    if (done) *done = c->done;
    if (err) {
        if (c->done)
            *err = c->err;
        else
            nh_error_clear(err);
    }
    pthread_mutex_unlock(&c->mu);
    return level;
}

int nh_correctable_watch(nh_correctable *c, int level) {
    pthread_mutex_lock(&c->mu);
    while (!c->done && c->level < level)
        pthread_cond_wait(&c->cv, &c->mu);
    int reached = c->level;
    pthread_mutex_unlock(&c->mu);
    return reached;
}

void nh_correctable_free(nh_correctable *c) {
    if (c) corr_unref(c);
}
