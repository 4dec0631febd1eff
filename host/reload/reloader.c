/* Reload requests, coalesced. One thread runs reloads one at a time. Requests wait in a list;
 * when a reload starts it takes every request waiting at that moment (they are all covered by
 * it: it reads the files after they arrived), and answers them when it ends. Requests that
 * arrive while it runs stay in the list and start exactly one more reload. */
#include "reload/reloader.h"

#include <nodehost/log.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct request {
    struct request *next;
    nh_reload_done_fn done;
    void *arg;
    int64_t at_ns;
    char trigger[16];
} request;

struct nh_reloader {
    nh_reload_fn fn;
    void *arg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    request *head, **tail; /* waiting requests, oldest first (mu) */
    bool stopping;         /* mu */
    bool joined;           /* mu: the thread was (being) joined */
    nh_reload_stats stats; /* mu */
};

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Answers and frees a list of requests. */
static void answer(request *list, const nh_reload_result *r) {
    while (list) {
        request *next = list->next;
        if (list->done) list->done(r, list->arg);
        free(list);
        list = next;
    }
}

static void *reload_thread(void *arg) {
    nh_reloader *rl = arg;
    pthread_mutex_lock(&rl->mu);
    for (;;) {
        while (!rl->head && !rl->stopping)
            pthread_cond_wait(&rl->cv, &rl->mu);
        if (rl->stopping) break;
        /* Every request waiting now is covered by this reload. */
        request *batch = rl->head;
        rl->head = NULL;
        rl->tail = &rl->head;
        uint64_t number = ++rl->stats.reloads;
        rl->stats.running = true;
        pthread_mutex_unlock(&rl->mu);

        size_t covered = 0;
        char triggers[64] = "";
        size_t off = 0;
        for (request *q = batch; q; q = q->next) {
            covered++;
            if (!strstr(triggers, q->trigger) && off < sizeof triggers - 20)
                off += (size_t)snprintf(triggers + off, sizeof triggers - off, "%s%s",
                                        off ? "," : "", q->trigger);
        }
        nh_logf(NH_LOG_INFO, "reload", "reload %llu started (%s, %zu request(s))",
                (unsigned long long)number, triggers, covered);
        nh_reload_result res;
        memset(&res, 0, sizeof res);
        rl->fn(rl->arg, &res);
        res.number = number;
        res.took_ns = mono_ns() - batch->at_ns;
        if (res.ok)
            nh_logf(NH_LOG_INFO, "reload", "reload %llu done in %.1f ms: %s",
                    (unsigned long long)number, (double)res.took_ns / 1e6,
                    res.changed ? res.summary : "no plugin changed");
        else
            nh_logf(NH_LOG_ERROR, "reload", "reload %llu failed (old plugins keep serving): %s",
                    (unsigned long long)number, res.err.message);

        pthread_mutex_lock(&rl->mu);
        rl->stats.running = false;
        rl->stats.last = res;
        if (!res.ok) rl->stats.failures++;
        pthread_mutex_unlock(&rl->mu);
        answer(batch, &res);
        pthread_mutex_lock(&rl->mu);
    }
    pthread_mutex_unlock(&rl->mu);
    return NULL;
}

int nh_reloader_new(nh_reload_fn fn, void *arg, nh_reloader **out, nh_error *err) {
    *out = NULL;
    nh_reloader *rl = calloc(1, sizeof *rl);
    if (!rl) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    rl->fn = fn;
    rl->arg = arg;
    rl->tail = &rl->head;
    pthread_mutex_init(&rl->mu, NULL);
    pthread_cond_init(&rl->cv, NULL);
    int rc = pthread_create(&rl->thread, NULL, reload_thread, rl);
    if (rc != 0) {
        pthread_cond_destroy(&rl->cv);
        pthread_mutex_destroy(&rl->mu);
        free(rl);
        return nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0, "cannot start the reload thread: %s",
                            strerror(rc));
    }
    *out = rl;
    return 0;
}

int nh_reloader_request(nh_reloader *rl, const char *trigger, nh_reload_done_fn done, void *arg) {
    request *q = calloc(1, sizeof *q);
    if (!q) return -1;
    q->done = done;
    q->arg = arg;
    q->at_ns = mono_ns();
    snprintf(q->trigger, sizeof q->trigger, "%s", trigger ? trigger : "?");
    pthread_mutex_lock(&rl->mu);
    if (rl->stopping) {
        pthread_mutex_unlock(&rl->mu);
        free(q);
        return -1;
    }
    rl->stats.requests++;
    *rl->tail = q;
    rl->tail = &q->next;
    pthread_cond_signal(&rl->cv);
    pthread_mutex_unlock(&rl->mu);
    return 0;
}

void nh_reloader_stats(nh_reloader *rl, nh_reload_stats *out) {
    pthread_mutex_lock(&rl->mu);
    *out = rl->stats;
    pthread_mutex_unlock(&rl->mu);
}

void nh_reloader_stop(nh_reloader *rl) {
    if (!rl) return;
    pthread_mutex_lock(&rl->mu);
    bool joined = rl->joined;
    rl->stopping = true;
    rl->joined = true;
    pthread_cond_signal(&rl->cv);
    pthread_mutex_unlock(&rl->mu);
    if (joined) return;
    pthread_join(rl->thread, NULL);
    /* Requests that arrived during the last reload or after it: not done. */
    nh_reload_result res;
    memset(&res, 0, sizeof res);
    nh_error_set(&res.err, NH_UNAVAILABLE, NH_ERR_LOCAL, 0, "node is stopping");
    pthread_mutex_lock(&rl->mu);
    request *left = rl->head;
    rl->head = NULL;
    rl->tail = &rl->head;
    pthread_mutex_unlock(&rl->mu);
    answer(left, &res);
}

void nh_reloader_free(nh_reloader *rl) {
    if (!rl) return;
    nh_reloader_stop(rl);
    pthread_cond_destroy(&rl->cv);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}
