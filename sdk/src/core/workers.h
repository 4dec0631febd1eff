/* Private: a runtime's pool of worker threads for blocking work. */
#ifndef NH_CORE_WORKERS_H
#define NH_CORE_WORKERS_H

#include <nodehost/runtime.h>

#include <pthread.h>

typedef struct nh_work_item nh_work_item;

/** A FIFO of blocking tasks served by up to `max` threads, started on first use. */
typedef struct nh_workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    nh_work_item *head, *tail;
    pthread_t *threads;
    unsigned max, started, idle;
    bool stopping;    /* written under mu; also read without it as a hint */
    const char *name; /* the runtime's name, for thread names */
} nh_workers;

/** Initialises an empty pool of at most max threads (0 means 4). */
void nh_workers_init(nh_workers *w, unsigned max, const char *name);

/** Queues fn(arg); starts a thread when none is idle and the pool is below its size. Returns 0,
 * or -1 once stopping or when no thread could be started and none runs. When scope is not NULL
 * it is held while the work is queued, current while fn runs, and released after fn returned;
 * on -1 nothing stays held (see nh_scope). */
int nh_workers_submit(nh_workers *w, nh_task_fn fn, void *arg, const nh_scope *scope);

/** Runs what is still queued, then joins every thread and frees the pool. */
void nh_workers_stop(nh_workers *w);

#endif
