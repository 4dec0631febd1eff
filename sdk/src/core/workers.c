/* A runtime's worker threads: blocking work (nh_runtime_run_blocking, nh_ctx_offload) runs here,
 * never on the owner thread. Threads start on demand up to the pool size and stay until the
 * runtime is freed. */
#include "core/workers.h"

#include "core/scope.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>

struct nh_work_item {
    nh_work_item *next;
    nh_task_fn fn;
    void *arg;
    const nh_scope *scope; /* held while queued and running, or NULL */
};

void nh_workers_init(nh_workers *w, unsigned max, const char *name) {
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->head = w->tail = NULL;
    w->threads = NULL;
    w->max = max ? max : 4;
    w->started = w->idle = 0;
    w->stopping = false;
    w->name = name;
}

static void *worker_main(void *arg) {
    nh_workers *w = arg;
    char tname[16];
    snprintf(tname, sizeof tname, "nhw-%s", w->name);
    pthread_setname_np(pthread_self(), tname);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stopping) {
            w->idle++;
            pthread_cond_wait(&w->cv, &w->mu);
            w->idle--;
        }
        nh_work_item *it = w->head;
        if (!it) break; /* stopping and nothing left */
        w->head = it->next;
        if (!w->head) w->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        const nh_scope *scope = it->scope;
        const nh_scope *prev = nh_scope_swap(scope);
        it->fn(it->arg);
        nh_scope_restore(prev);
        free(it);
        nh_scope_release(scope);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Undoes a hold taken for work that was refused after all (called without the lock). */
static int refuse(nh_work_item *it) {
    const nh_scope *scope = it->scope;
    free(it);
    nh_scope_release(scope);
    return -1;
}

int nh_workers_submit(nh_workers *w, nh_task_fn fn, void *arg, const nh_scope *scope) {
    /* A pool already stopping refuses before anything is held. */
    if (scope && __atomic_load_n(&w->stopping, __ATOMIC_ACQUIRE)) return -1;
    nh_work_item *it = malloc(sizeof *it);
    if (!it) return -1;
    it->next = NULL;
    it->fn = fn;
    it->arg = arg;
    it->scope = scope;
    /* Held before the item is visible to a worker, so release never comes first. */
    nh_scope_hold(scope);
    pthread_mutex_lock(&w->mu);
    if (w->stopping) {
        pthread_mutex_unlock(&w->mu);
        return refuse(it);
    }
    if (w->idle == 0 && w->started < w->max) {
        if (!w->threads) w->threads = calloc(w->max, sizeof *w->threads);
        if (w->threads && pthread_create(&w->threads[w->started], NULL, worker_main, w) == 0)
            w->started++;
        else
            nh_log(NH_LOG_WARN, "workers", "cannot start a worker thread (%u running)", w->started);
    }
    if (w->started == 0) {
        pthread_mutex_unlock(&w->mu);
        return refuse(it);
    }
    if (w->tail)
        w->tail->next = it;
    else
        w->head = it;
    w->tail = it;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void nh_workers_stop(nh_workers *w) {
    pthread_mutex_lock(&w->mu);
    __atomic_store_n(&w->stopping, true, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&w->cv);
    unsigned n = w->started;
    pthread_mutex_unlock(&w->mu);
    for (unsigned i = 0; i < n; i++)
        pthread_join(w->threads[i], NULL);
    free(w->threads);
    w->threads = NULL;
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}
