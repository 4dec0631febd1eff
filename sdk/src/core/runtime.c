/* The runtime: starts the owner thread, routes work to it, and stops everything in order. */
#include "core/runtime_impl.h"

#include "call/call.h"
#include "core/scope.h"
#include "node/node_impl.h"
#include "server/server_impl.h"
#include "util/log.h"

#include <nodehost/server.h>

#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t g_sigpipe_once = PTHREAD_ONCE_INIT;

static void ignore_sigpipe(void) {
    /* gRPC's sockets use MSG_NOSIGNAL, but libuv and user code may write to dead sockets. */
    signal(SIGPIPE, SIG_IGN);
}

static void *owner_main(void *arg) {
    nh_runtime *rt = arg;
    char name[16];
    snprintf(name, sizeof name, "nh-%s", rt->name);
    pthread_setname_np(pthread_self(), name);
    nh_tp_loop_run(rt->loop);
    return NULL;
}

typedef struct io_main_arg {
    nh_tp_loop *loop;
    char name[16];
} io_main_arg;

static void *io_main(void *arg) {
    io_main_arg a = *(io_main_arg *)arg;
    free(arg);
    pthread_setname_np(pthread_self(), a.name);
    nh_tp_loop_run(a.loop);
    return NULL;
}

static void quit_task(void *arg) {
    nh_tp_loop_quit(arg);
}

/* Stops the transport loops (after the owner loop ended: their streams are all closed) and
 * frees them. */
static void io_stop(nh_runtime *rt) {
    for (size_t i = 0; i < rt->io_count; i++) {
        if (nh_tp_loop_post(rt->io[i], quit_task, rt->io[i]) != 0)
            nh_log(NH_LOG_ERROR, "runtime", "cannot stop transport loop %zu", i + 1);
        pthread_join(rt->io_thread[i], NULL);
        nh_tp_loop_free(rt->io[i]);
    }
    free(rt->io);
    free(rt->io_thread);
    rt->io = NULL;
    rt->io_thread = NULL;
    rt->io_count = 0;
}

/* The number of loops asked for: opts, else NH_THREADS, else 1. */
static int threads_wanted(unsigned opt, unsigned *out, nh_error *err) {
    unsigned n = opt;
    if (n == 0) {
        const char *env = getenv("NH_THREADS");
        n = 1;
        if (env && *env) {
            char *end;
            errno = 0;
            unsigned long v = strtoul(env, &end, 10);
            if (errno || *end || v == 0 || v > NH_MAX_THREADS)
                return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                                    "NH_THREADS=\"%s\" is not a number from 1 to %d", env,
                                    NH_MAX_THREADS);
            n = (unsigned)v;
        }
    }
    if (n > NH_MAX_THREADS)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "threads %u is more than %d",
                            n, NH_MAX_THREADS);
    *out = n;
    return 0;
}

/* Creates and starts threads - 1 transport loops. */
static int io_start(nh_runtime *rt, unsigned threads, nh_error *err) {
    size_t n = threads - 1;
    if (n == 0) return 0;
    rt->io = calloc(n, sizeof *rt->io);
    rt->io_thread = calloc(n, sizeof *rt->io_thread);
    if (!rt->io || !rt->io_thread)
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    for (size_t i = 0; i < n; i++) {
        nh_tp_loop *l = nh_tp_loop_new(rt->max_message, true, err);
        io_main_arg *a = l ? calloc(1, sizeof *a) : NULL;
        if (a) {
            char name[64]; /* thread names are 15 characters at most */
            a->loop = l;
            snprintf(name, sizeof name, "nh-io%zu-%s", i + 1, rt->name);
            memcpy(a->name, name, sizeof a->name - 1);
        }
        if (!a || pthread_create(&rt->io_thread[i], NULL, io_main, a) != 0) {
            if (l && !a) nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
            if (a) {
                nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0,
                             "cannot start transport thread %zu: %s", i + 1, strerror(errno));
                free(a);
            }
            nh_tp_loop_free(l);
            return -1;
        }
        rt->io[i] = l;
        rt->io_count = i + 1;
    }
    nh_tp_loop_set_io(rt->loop, rt->io, rt->io_count);
    return 0;
}

int nh_runtime_new(const nh_runtime_opts *opts, nh_runtime **out, nh_error *err) {
    nh_runtime_opts def = {0};
    if (!opts) opts = &def;
    if (!out) return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "out is NULL");
    *out = NULL;
    size_t max = opts->max_message_size ? opts->max_message_size : NH_DEFAULT_MAX_MESSAGE_SIZE;
    if (max > (size_t)INT32_MAX)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "max_message_size %zu is larger than %d", max, INT32_MAX);
    unsigned threads = 1;
    if (threads_wanted(opts->threads, &threads, err) != 0) return -1;
    pthread_once(&g_sigpipe_once, ignore_sigpipe);
    nh_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    rt->name = strdup(opts->name && *opts->name ? opts->name : "nodehost");
    rt->max_message = max;
    rt->next_seq = 0;
    nh_u64map_init(&rt->calls);
    nh_workers_init(&rt->workers, opts->workers, rt->name);
    /* With two or more transport loops the owner thread can leave gRPC's network I/O to them
     * (its queue does not poll; docs/architecture.md, "More cores"). Off unless
     * NH_QUIET_OWNER=1: it needs the transport loops' queues registered with servers, and
     * with that registration an ASan run saw an accepted call's metadata freed with its
     * connection before the owner copied it (issue 15's note). */
    const char *quiet = getenv("NH_QUIET_OWNER");
    bool polls = threads < 3 || !quiet || strcmp(quiet, "1") != 0;
    rt->loop = nh_tp_loop_new(max, polls, err);
    if (!rt->loop) goto fail;
    if (io_start(rt, threads, err) != 0) goto fail;
    if (pthread_create(&rt->thread, NULL, owner_main, rt) != 0) {
        nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0, "cannot start the owner thread: %s",
                     strerror(errno));
        goto fail;
    }
    rt->thread_started = true;
    *out = rt;
    return 0;
fail:
    io_stop(rt);
    if (rt->loop) nh_tp_loop_free(rt->loop);
    nh_workers_stop(&rt->workers);
    free(rt->name);
    free(rt);
    return -1;
}

static void stop_on_owner(void *arg) {
    nh_runtime *rt = arg;
    rt->stopping = true;
    nh_tp_loop_close_posts(rt->loop);
    nh_timers_stop_all(rt);
    while (rt->servers)
        nh_server_stop_internal(rt->servers);
    /* Nodes are closed (their calls fail with "node closed") but their handles stay with their
     * owners (the user or a configuration registry), who may still release them while the loop
     * drains; what is left is freed once the loop ended. */
    for (nh_node *n = rt->nodes; n; n = n->next)
        nh_node_close_internal(n, false);
    nh_tp_loop_quit(rt->loop);
}

void nh_runtime_free(nh_runtime *rt) {
    if (!rt) return;
    if (nh_runtime_on_owner(rt)) {
        nh_log(NH_LOG_ERROR, "runtime", "nh_runtime_free called on the owner thread; ignored");
        return;
    }
    if (nh_tp_loop_post(rt->loop, stop_on_owner, rt) != 0)
        nh_log(NH_LOG_WARN, "runtime", "runtime %s was already stopping", rt->name);
    pthread_join(rt->thread, NULL);
    io_stop(rt); /* the owner loop ended after its last relayed stream did */
    /* Workers finish what is queued; their calls fail fast now (posts are closed) and their
     * replies are dropped, while the contexts they hold stay valid until just below. */
    nh_workers_stop(&rt->workers);
    nh_node_free_remaining(rt);
    nh_server_free_remaining(rt);
    nh_tp_loop_free(rt->loop);
    nh_u64map_free(&rt->calls);
    nh_methods_free(&rt->bc_methods);
    free(rt->name);
    free(rt);
}

/* A posted task of a scope: the scope is held until fn returned. */
typedef struct scoped_task {
    nh_task_fn fn;
    void *arg;
    const nh_scope *scope;
} scoped_task;

static void run_scoped_task(void *p) {
    scoped_task t = *(scoped_task *)p;
    free(p);
    const nh_scope *prev = nh_scope_swap(t.scope);
    t.fn(t.arg);
    nh_scope_restore(prev);
    nh_scope_release(t.scope);
}

int nh_runtime_post(nh_runtime *rt, nh_task_fn fn, void *arg) {
    if (!rt || !fn) return -1;
    const nh_scope *scope = nh_scope_capture();
    if (!scope) return nh_tp_loop_post(rt->loop, fn, arg);
    /* A stopping runtime refuses before anything is held. Queued posts always run (the loop
     * drains them before it ends), so the task's own run releases. */
    if (!nh_tp_loop_accepting(rt->loop)) return -1;
    scoped_task *t = malloc(sizeof *t);
    if (!t) return -1;
    *t = (scoped_task){fn, arg, scope};
    nh_scope_hold(scope); /* before the task is visible to the owner thread */
    if (nh_tp_loop_post(rt->loop, run_scoped_task, t) != 0) {
        free(t);
        nh_scope_release(scope);
        return -1;
    }
    return 0;
}

int nh_runtime_post_internal(nh_runtime *rt, nh_task_fn fn, void *arg) {
    return nh_tp_loop_post(rt->loop, fn, arg);
}

bool nh_runtime_accepting(const nh_runtime *rt) {
    return nh_tp_loop_accepting(rt->loop);
}

int nh_runtime_run_blocking(nh_runtime *rt, nh_task_fn fn, void *arg) {
    if (!rt || !fn) return -1;
    return nh_workers_submit(&rt->workers, fn, arg, nh_scope_capture());
}

bool nh_runtime_on_owner(const nh_runtime *rt) {
    return rt && nh_tp_loop_on_owner(rt->loop);
}

unsigned nh_runtime_threads(const nh_runtime *rt) {
    return rt ? (unsigned)rt->io_count + 1 : 0;
}

size_t nh_runtime_max_message_size(const nh_runtime *rt) {
    return rt->max_message;
}

uint64_t nh_runtime_next_seq(nh_runtime *rt) {
    return __atomic_add_fetch(&rt->next_seq, 1, __ATOMIC_RELAXED);
}

uint64_t nh_runtime_next_server_seq(nh_runtime *rt) {
    return (UINT64_C(1) << 63) | __atomic_add_fetch(&rt->next_server_seq, 1, __ATOMIC_RELAXED);
}

int nh_runtime_handle(nh_runtime *rt, const char *method, nh_handler_fn fn, void *user,
                      nh_error *err) {
    if (!rt) return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "runtime is NULL");
    return nh_methods_register(rt, &rt->bc_methods, method, fn, user, err);
}

int nh_runtime_handle_owned(nh_runtime *rt, const char *method, nh_handler_fn fn, void *user,
                            void (*user_free)(void *user), nh_error *err) {
    if (!rt) return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "runtime is NULL");
    return nh_methods_register_owned(rt, &rt->bc_methods, method, fn, user, user_free, err);
}

typedef struct sync_task {
    void (*fn)(void *);
    void *arg;
    sem_t done;
} sync_task;

static void run_sync(void *p) {
    sync_task *t = p;
    t->fn(t->arg);
    sem_post(&t->done);
}

int nh_runtime_sync(nh_runtime *rt, void (*fn)(void *), void *arg) {
    if (nh_runtime_on_owner(rt)) {
        fn(arg);
        return 0;
    }
    sync_task t = {.fn = fn, .arg = arg};
    sem_init(&t.done, 0, 0);
    if (nh_tp_loop_post(rt->loop, run_sync, &t) != 0) {
        sem_destroy(&t.done);
        return -1;
    }
    while (sem_wait(&t.done) != 0 && errno == EINTR) {
    }
    sem_destroy(&t.done);
    return 0;
}

void nh_runtime_add_node(nh_runtime *rt, struct nh_node *n) {
    n->next = rt->nodes;
    n->prev = NULL;
    if (rt->nodes) rt->nodes->prev = n;
    rt->nodes = n;
}

void nh_runtime_remove_node(nh_runtime *rt, struct nh_node *n) {
    if (n->prev)
        n->prev->next = n->next;
    else if (rt->nodes == n)
        rt->nodes = n->next;
    if (n->next) n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

void nh_runtime_add_server(nh_runtime *rt, struct nh_server *s) {
    s->next = rt->servers;
    s->prev = NULL;
    if (rt->servers) rt->servers->prev = s;
    rt->servers = s;
}

void nh_runtime_remove_server(nh_runtime *rt, struct nh_server *s) {
    if (s->prev)
        s->prev->next = s->next;
    else if (rt->servers == s)
        rt->servers = s->next;
    if (s->next) s->next->prev = s->prev;
    s->next = s->prev = NULL;
}
