/* The owner loop. The owner thread blocks in grpc_completion_queue_next() with a deadline
 * taken from libuv's next timer, and runs uv_run(UV_RUN_NOWAIT) after a timeout, after a
 * wake-up, and at least every millisecond while busy. Work coalesced over many events (turn-end
 * hooks) runs once per turn of at least NH_TP_TURN_MS. Two wake-up paths reach a thread that is
 * blocked in the completion queue:
 *
 * - posts from other threads: the poster itself starts a connectivity watch on a never-used
 *   channel with "last seen = SHUTDOWN"; the state differs, so the watch completes at once and
 *   cq_next returns (the C core has no public alarm or kick; this uses public calls only);
 * - other libuv events (signals, uv_async, fs events, thread-pool completions): a bridge thread
 *   epoll-waits on libuv's backend fd and kicks the same way, then waits until the owner ran
 *   libuv, so it does not spin on a level-triggered fd.
 *
 * An owner loop with transport loops (created with polls = false) runs the other way round
 * (run_quiet): its thread waits for libuv (posts wake it through a uv_async), never inside
 * gRPC, so gRPC's network I/O, which any thread waiting in a polling queue may end up doing,
 * stays on the transport loops. Its queue does not poll (GRPC_CQ_NON_POLLING) and carries only
 * the rare owner operations (accepted calls, a server's shutdown); a queue thread waits on it
 * and posts each completion to the owner. */
#include "transport/loop.h"

#include "util/log.h"
#include "util/tsan.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct post_task {
    void (*fn)(void *);
    void *arg;
} post_task;

struct nh_tp_loop {
    grpc_completion_queue *cq;
    grpc_channel *kick_channel; /* never connects; only watched */
    uv_loop_t uv;
    size_t max_message;
    pthread_t owner;
    bool owner_set;
    bool quitting;
    long ops;              /* atomic: outstanding operations (changed on the owner thread) */
    long fronts;           /* relayed streams whose end was not delivered yet (owner thread) */
    unsigned direct_sends; /* started by relay fronts in this iteration (owner thread) */

    /* transport loops (docs/architecture.md, "More cores"): set once before any stream */
    nh_tp_loop **io;
    size_t io_count;
    size_t io_next; /* round robin (owner thread) */

    /* posts (any thread) */
    pthread_mutex_t mu;
    post_task *posts;
    size_t posts_len, posts_cap;
    bool posts_closed; /* written under mu; also read without it (nh_tp_loop_accepting) */
    int kick_pending;  /* atomic: a post kick is in flight */
    int posted;        /* atomic: posts_len != 0 hint for the owner */
    int sleeping;      /* atomic: the owner is in (or entering) a blocking cq_next */

    /* bridge thread for libuv events */
    pthread_t bridge;
    bool bridge_started;
    int bridge_epfd;
    int bridge_stopfd;
    sem_t uv_ran;
    int uv_kick_pending; /* atomic: the bridge kicked and waits for uv_ran */

    nh_tp_tag post_tag;
    nh_tp_tag uv_tag;

    /* an owner loop with transport loops (polls false, see run_quiet) */
    bool quiet;
    uv_async_t wake; /* posts wake the owner waiting for libuv (under mu) */
    bool wake_open;  /* under mu */
    pthread_t cq_thread;
    bool cq_thread_started;
    int cq_closing; /* atomic: the queue thread drops what it still takes */
    bool cq_shut;

    /* turn-end hooks (owner thread): scheduled for this turn, and the batch being run */
    nh_tp_turn_hook *hooks, *running;
};

static void kick(nh_tp_loop *l, nh_tp_tag *tag) {
    grpc_channel_watch_connectivity_state(l->kick_channel, GRPC_CHANNEL_SHUTDOWN,
                                          gpr_inf_future(GPR_CLOCK_MONOTONIC), l->cq, tag);
}

static void on_post_kick(nh_tp_tag *tag, bool ok) {
    (void)tag;
    (void)ok; /* posts are drained every iteration; the kick only ends the wait */
}

static void on_uv_kick(nh_tp_tag *tag, bool ok) {
    (void)tag;
    (void)ok; /* handled in the run loop: it runs libuv, then releases the bridge */
}

static void *bridge_main(void *arg) {
    nh_tp_loop *l = arg;
    struct epoll_event ev;
    for (;;) {
        int n = epoll_wait(l->bridge_epfd, &ev, 1, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (n == 0) continue;
        if (ev.data.fd == l->bridge_stopfd) break;
        __atomic_store_n(&l->uv_kick_pending, 1, __ATOMIC_RELEASE);
        kick(l, &l->uv_tag);
        while (sem_wait(&l->uv_ran) != 0 && errno == EINTR) {
        }
    }
    return NULL;
}

/* gRPC's own log lines go through nodehost's logger: same format, and rate-limited per gRPC
 * source line (a peer retrying a failing TLS handshake would otherwise print a line each
 * time). gRPC's errors are mostly about a peer (handshakes, resets): logged as warnings. */
static void grpc_log_route(gpr_log_func_args *a) {
    nh_log_level level = a->severity == GPR_LOG_SEVERITY_ERROR ? NH_LOG_WARN : NH_LOG_DEBUG;
    const char *file = a->file ? a->file : "?";
    const char *base = strrchr(file, '/');
    uintptr_t site = (uintptr_t)a->file ^ ((uintptr_t)a->line << 40);
    nh_log_site(level, "grpc", (const void *)site, "%s:%d: %s", base ? base + 1 : file, a->line,
                a->message ? a->message : "");
}

static void route_grpc_logs(void) {
    gpr_set_log_function(grpc_log_route);
}

static void *cq_main(void *arg);
static void on_wake(uv_async_t *a);

nh_tp_loop *nh_tp_loop_new(size_t max_message_size, bool polls, nh_error *err) {
    static pthread_once_t routed = PTHREAD_ONCE_INIT;
    pthread_once(&routed, route_grpc_logs);
    nh_tp_loop *l = calloc(1, sizeof *l);
    if (!l) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return NULL;
    }
    grpc_init();
    l->max_message = max_message_size;
    l->bridge_epfd = l->bridge_stopfd = -1;
    l->post_tag.fn = on_post_kick;
    l->uv_tag.fn = on_uv_kick;
    pthread_mutex_init(&l->mu, NULL);
    sem_init(&l->uv_ran, 0, 0);
    if (uv_loop_init(&l->uv) != 0) {
        nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0, "uv_loop_init failed");
        goto fail_uv;
    }
    if (polls) {
        l->cq = grpc_completion_queue_create_for_next(NULL);
    } else {
        grpc_completion_queue_attributes attr = {GRPC_CQ_CURRENT_VERSION, GRPC_CQ_NEXT,
                                                 GRPC_CQ_NON_POLLING, NULL};
        l->cq =
            grpc_completion_queue_create(grpc_completion_queue_factory_lookup(&attr), &attr, NULL);
    }
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    /* A channel that is only watched, never used for a call: it stays IDLE and never dials. */
    l->kick_channel = grpc_channel_create("127.0.0.1:1", creds, NULL);
    grpc_channel_credentials_release(creds);

    if (!polls) { /* run_quiet: waits for libuv itself (no bridge); a queue thread instead */
        l->quiet = true;
        l->wake_open = uv_async_init(&l->uv, &l->wake, on_wake) == 0;
        if (!l->wake_open || pthread_create(&l->cq_thread, NULL, cq_main, l) != 0) {
            nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0,
                         "cannot start the owner loop's queue thread: %s", strerror(errno));
            nh_tp_loop_free(l);
            return NULL;
        }
        l->cq_thread_started = true;
        return l;
    }
    l->bridge_epfd = epoll_create1(EPOLL_CLOEXEC);
    l->bridge_stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.fd = uv_backend_fd(&l->uv);
    int rc1 = epoll_ctl(l->bridge_epfd, EPOLL_CTL_ADD, ev.data.fd, &ev);
    ev.data.fd = l->bridge_stopfd;
    int rc2 = epoll_ctl(l->bridge_epfd, EPOLL_CTL_ADD, ev.data.fd, &ev);
    if (l->bridge_epfd < 0 || l->bridge_stopfd < 0 || rc1 || rc2 ||
        pthread_create(&l->bridge, NULL, bridge_main, l) != 0) {
        nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0, "cannot start the wake-up thread: %s",
                     strerror(errno));
        nh_tp_loop_free(l);
        return NULL;
    }
    l->bridge_started = true;
    return l;
fail_uv:
    pthread_mutex_destroy(&l->mu);
    sem_destroy(&l->uv_ran);
    free(l);
    grpc_shutdown();
    return NULL;
}

static void drain_posts(nh_tp_loop *l) {
    /* Allow the next poster to kick again before we take the batch, so no post is missed. On
     * every iteration, not only when there are posts: a poster that saw the loop asleep and
     * set the flag after the loop had already taken its post would otherwise leave it set,
     * and later posters would not wake a sleeping loop. */
    __atomic_store_n(&l->kick_pending, 0, __ATOMIC_RELEASE);
    if (!__atomic_load_n(&l->posted, __ATOMIC_ACQUIRE)) return;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        post_task *batch = l->posts;
        size_t n = l->posts_len;
        l->posts = NULL;
        l->posts_len = l->posts_cap = 0;
        __atomic_store_n(&l->posted, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&l->mu);
        if (n == 0) {
            free(batch);
            return;
        }
        for (size_t i = 0; i < n; i++)
            batch[i].fn(batch[i].arg);
        free(batch);
    }
}

static void run_uv(nh_tp_loop *l) {
    uv_run(&l->uv, UV_RUN_NOWAIT);
    if (__atomic_exchange_n(&l->uv_kick_pending, 0, __ATOMIC_ACQ_REL)) sem_post(&l->uv_ran);
}

/* Runs the hooks scheduled so far, in the order they were scheduled. Hooks scheduled meanwhile
 * wait for the next turn; a hook cancelled meanwhile is taken out of the batch. */
static void run_turn_hooks(nh_tp_loop *l) {
    nh_tp_turn_hook *batch = NULL;
    while (l->hooks) { /* the list is newest first: reverse it */
        nh_tp_turn_hook *h = l->hooks;
        l->hooks = h->next;
        h->next = batch;
        batch = h;
    }
    l->running = batch;
    while (l->running) {
        nh_tp_turn_hook *h = l->running;
        l->running = h->next;
        h->next = NULL;
        h->scheduled = false;
        h->fn(h);
    }
}

void nh_tp_loop_at_turn_end(nh_tp_loop *l, nh_tp_turn_hook *h) {
    if (h->scheduled) return;
    h->scheduled = true;
    h->next = l->hooks;
    l->hooks = h;
}

/* Unlinks h from the list at *head; true when it was there. */
static bool unlink_hook(nh_tp_turn_hook **head, nh_tp_turn_hook *h) {
    for (nh_tp_turn_hook **p = head; *p; p = &(*p)->next) {
        if (*p == h) {
            *p = h->next;
            return true;
        }
    }
    return false;
}

void nh_tp_loop_cancel_turn_end(nh_tp_loop *l, nh_tp_turn_hook *h) {
    if (!h->scheduled) return;
    if (!unlink_hook(&l->hooks, h)) unlink_hook(&l->running, h);
    h->next = NULL;
    h->scheduled = false;
}

static int64_t ns_between(gpr_timespec a, gpr_timespec b) {
    gpr_timespec d = gpr_time_sub(b, a);
    return (int64_t)d.tv_sec * 1000000000LL + d.tv_nsec;
}

/* Runs a completion's tag function, inside the tag's guard if it has one. */
static void run_tag(nh_tp_tag *tag, bool ok) {
    nh_tsan_acquire(tag);        /* see nh_tp_stream_start */
    nh_tp_guard *g = tag->guard; /* fn may free the tag */
    if (g) g->enter(g);
    tag->fn(tag, ok);
    if (g) g->leave(g);
}

static bool idle(const nh_tp_loop *l) {
    return l->ops == 0 && l->fronts == 0 && !__atomic_load_n(&l->posted, __ATOMIC_ACQUIRE);
}

/* True once the loop was asked to quit and nothing is left: no operation, relayed stream or
 * post. Runs libuv's close callbacks of handles closed during shutdown first (they may release
 * the memory that holds them, and post more work). */
static bool finished(nh_tp_loop *l) {
    if (!l->quitting || !idle(l)) return false;
    uv_run(&l->uv, UV_RUN_NOWAIT);
    return idle(l);
}

static void run_quiet(nh_tp_loop *l);

void nh_tp_loop_run(nh_tp_loop *l) {
    l->owner = pthread_self();
    __atomic_store_n(&l->owner_set, true, __ATOMIC_RELEASE);
    if (l->quiet) {
        run_quiet(l);
        return;
    }
    const int64_t busy_uv_ns = 1000000; /* run libuv at least every 1 ms while busy */
    const int64_t turn_ns = NH_TP_TURN_MS * 1000000LL;
    gpr_timespec last_uv = gpr_now(GPR_CLOCK_MONOTONIC);
    gpr_timespec last_hooks = gpr_time_sub(last_uv, gpr_time_from_seconds(1, GPR_TIMESPAN));
    for (;;) {
        l->direct_sends = 0;
        drain_posts(l);
        if (finished(l)) break;
        uv_update_time(&l->uv);
        int wait_ms = uv_backend_timeout(&l->uv);
        /* 0 also means "libuv has nothing at all" (no active handle or request): then there is
         * nothing of libuv's to wait for either. */
        if (wait_ms == 0 && !uv_loop_alive(&l->uv)) wait_ms = 100;
        if (wait_ms < 0 || wait_ms > 100) wait_ms = 100;
        if (__atomic_load_n(&l->posted, __ATOMIC_ACQUIRE)) wait_ms = 0;
        gpr_timespec start = gpr_now(GPR_CLOCK_MONOTONIC);
        gpr_timespec deadline = gpr_time_add(start, gpr_time_from_millis(wait_ms, GPR_TIMESPAN));
        if (l->hooks) { /* wake up when the turn is over */
            int64_t left = turn_ns - ns_between(last_hooks, start);
            gpr_timespec due =
                gpr_time_add(start, gpr_time_from_nanos(left > 0 ? left : 0, GPR_TIMESPAN));
            if (gpr_time_cmp(due, deadline) < 0) deadline = due;
        }
        /* Posters kick only a loop that may block (nh_tp_loop_post): say so, then look at the
         * posts once more. With both sides sequentially consistent, either this sees their
         * post or they see this flag. */
        bool block = wait_ms > 0 && gpr_time_cmp(deadline, start) > 0;
        if (block) {
            __atomic_store_n(&l->sleeping, 1, __ATOMIC_SEQ_CST);
            if (__atomic_load_n(&l->posted, __ATOMIC_SEQ_CST)) block = false;
        }
        /* A poll that must not wait: gRPC rounds deadlines up to its millisecond clock, so
         * "now" could still wait up to a millisecond; the infinite past does not wait. */
        if (!block) deadline = gpr_inf_past(GPR_CLOCK_MONOTONIC);
        grpc_event ev = grpc_completion_queue_next(l->cq, deadline, NULL);
        __atomic_store_n(&l->sleeping, 0, __ATOMIC_RELAXED);
        bool run_libuv = false;
        if (ev.type == GRPC_OP_COMPLETE) {
            nh_tp_tag *tag = ev.tag;
            if (tag == &l->uv_tag) run_libuv = true;
            run_tag(tag, ev.success != 0);
        } else if (ev.type == GRPC_QUEUE_TIMEOUT) {
            run_libuv = true;
        } else {
            break; /* GRPC_QUEUE_SHUTDOWN: cannot happen before free */
        }
        gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
        if (!run_libuv) run_libuv = ns_between(last_uv, now) >= busy_uv_ns;
        if (run_libuv) {
            run_uv(l);
            last_uv = now;
        }
        if (l->hooks && ns_between(last_hooks, now) >= turn_ns) {
            last_hooks = now;
            run_turn_hooks(l);
        }
    }
}

bool nh_tp_loop_take_direct_send(nh_tp_loop *l) {
    if (l->direct_sends >= NH_TP_DIRECT_SENDS) return false;
    l->direct_sends++;
    return true;
}

/* ---- an owner loop with transport loops (see the top of this file) ---- */

typedef struct cq_event {
    nh_tp_tag *tag;
    bool ok;
} cq_event;

static void run_cq_event(void *p) {
    cq_event *e = p;
    nh_tp_tag *tag = e->tag;
    bool ok = e->ok;
    free(e);
    run_tag(tag, ok);
}

/* The queue thread: every completion of the owner's queue goes to the owner as a post. None
 * may be lost (each ends an operation the owner counts), so memory is waited for. */
static void *cq_main(void *arg) {
    nh_tp_loop *l = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(l->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE || __atomic_load_n(&l->cq_closing, __ATOMIC_ACQUIRE))
            continue;
        cq_event *e;
        while (!(e = malloc(sizeof *e)))
            usleep(1000);
        e->tag = ev.tag;
        e->ok = ev.success != 0;
        while (nh_tp_loop_post_always(l, run_cq_event, e) != 0)
            usleep(1000);
    }
    return NULL;
}

static void on_wake(uv_async_t *a) {
    (void)a; /* posts are drained every iteration; the wake only ends the wait */
}

static void run_quiet(nh_tp_loop *l) {
    const int64_t turn_ns = NH_TP_TURN_MS * 1000000LL;
    gpr_timespec last_hooks =
        gpr_time_sub(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(1, GPR_TIMESPAN));
    struct pollfd pfd = {.fd = uv_backend_fd(&l->uv), .events = POLLIN};
    for (;;) {
        l->direct_sends = 0;
        drain_posts(l);
        if (finished(l)) break;
        /* libuv runs without waiting before every wait: it adds the watchers started since
         * (libuv 1.44 registers them with epoll only inside uv_run, so a wait on its backend fd
         * would not see them), and whatever its callbacks schedule (hooks, posts to this loop)
         * is seen before the wait. */
        uv_run(&l->uv, UV_RUN_NOWAIT);
        gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
        if (l->hooks && ns_between(last_hooks, now) >= turn_ns) {
            last_hooks = now;
            run_turn_hooks(l);
        }
        /* Wait for libuv's next timer or event (a post's wake-up is one), at most until the
         * turn-end hooks are due. The wake-up handle keeps the libuv loop alive, so its
         * timeout is -1 when idle. */
        uv_update_time(&l->uv);
        int wait_ms = uv_backend_timeout(&l->uv);
        if (wait_ms < 0 || wait_ms > 1000) wait_ms = 1000;
        if (l->hooks) {
            int64_t left = turn_ns - ns_between(last_hooks, gpr_now(GPR_CLOCK_MONOTONIC));
            int hook_ms = left > 0 ? (int)((left + 999999) / 1000000) : 0;
            if (hook_ms < wait_ms) wait_ms = hook_ms;
        }
        /* As nh_tp_loop_run: say that the loop may block, then look at the posts once more. */
        if (wait_ms > 0) {
            __atomic_store_n(&l->sleeping, 1, __ATOMIC_SEQ_CST);
            if (!__atomic_load_n(&l->posted, __ATOMIC_SEQ_CST)) {
                int n = poll(&pfd, 1, wait_ms);
                (void)n; /* EINTR or a timeout: the next iteration looks at everything */
            }
            __atomic_store_n(&l->sleeping, 0, __ATOMIC_RELAXED);
        }
    }
    pthread_mutex_lock(&l->mu); /* posters send the wake-up under mu */
    l->wake_open = false;
    pthread_mutex_unlock(&l->mu);
    uv_close((uv_handle_t *)&l->wake, NULL);
    uv_run(&l->uv, UV_RUN_NOWAIT);
}

/* Stops the queue thread of an owner loop with transport loops (nothing is pending any more). */
static void stop_cq_thread(nh_tp_loop *l) {
    if (!l->cq_thread_started) return;
    __atomic_store_n(&l->cq_closing, 1, __ATOMIC_RELEASE);
    grpc_completion_queue_shutdown(l->cq);
    l->cq_shut = true;
    pthread_join(l->cq_thread, NULL);
    l->cq_thread_started = false;
}

void nh_tp_loop_quit(nh_tp_loop *l) {
    l->quitting = true;
}

static int post(nh_tp_loop *l, void (*fn)(void *), void *arg, bool always) {
    pthread_mutex_lock(&l->mu);
    if (l->posts_closed && !always) {
        pthread_mutex_unlock(&l->mu);
        return -1;
    }
    if (l->posts_len == l->posts_cap) {
        size_t cap = l->posts_cap ? l->posts_cap * 2 : 16;
        post_task *p = realloc(l->posts, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&l->mu);
            return -1;
        }
        l->posts = p;
        l->posts_cap = cap;
    }
    l->posts[l->posts_len++] = (post_task){fn, arg};
    __atomic_store_n(&l->posted, 1, __ATOMIC_SEQ_CST);
    /* The owner drains posts before it waits, so it needs no kick for its own posts, nor while
     * it runs (it looks at the posts again before it blocks, see nh_tp_loop_run): a busy loop
     * fed by other loops is not kicked for every post. The kick is started under the lock so
     * that nh_tp_loop_close_posts() also means "no kick will be started any more" (the kick
     * channel is destroyed after that). */
    if (!nh_tp_loop_on_owner(l) && __atomic_load_n(&l->sleeping, __ATOMIC_SEQ_CST) &&
        !__atomic_exchange_n(&l->kick_pending, 1, __ATOMIC_ACQ_REL)) {
        if (!l->quiet)
            kick(l, &l->post_tag);
        else if (l->wake_open)
            uv_async_send(&l->wake);
    }
    pthread_mutex_unlock(&l->mu);
    return 0;
}

int nh_tp_loop_post(nh_tp_loop *l, void (*fn)(void *), void *arg) {
    return post(l, fn, arg, false);
}

int nh_tp_loop_post_always(nh_tp_loop *l, void (*fn)(void *), void *arg) {
    return post(l, fn, arg, true);
}

void nh_tp_loop_set_io(nh_tp_loop *home, nh_tp_loop **io, size_t n) {
    home->io = io;
    home->io_count = n;
}

void nh_tp_loop_register_server(nh_tp_loop *home, void *server) {
    grpc_server_register_completion_queue(server, home->cq, NULL);
    if (!home->quiet) return; /* the owner's queue polls: as with one loop */
    for (size_t i = 0; i < home->io_count; i++)
        grpc_server_register_completion_queue(server, home->io[i]->cq, NULL);
}

nh_tp_loop *nh_tp_loop_pick(nh_tp_loop *home) {
    if (home->io_count == 0) return home;
    nh_tp_loop *l = home->io[home->io_next];
    home->io_next = (home->io_next + 1) % home->io_count;
    return l;
}

void nh_tp_loop_front_begin(nh_tp_loop *l) {
    l->fronts++;
}

void nh_tp_loop_front_end(nh_tp_loop *l) {
    l->fronts--;
}

void nh_tp_loop_close_posts(nh_tp_loop *l) {
    pthread_mutex_lock(&l->mu);
    __atomic_store_n(&l->posts_closed, true, __ATOMIC_RELEASE); /* read unlocked: accepting */
    pthread_mutex_unlock(&l->mu);
}

bool nh_tp_loop_accepting(const nh_tp_loop *l) {
    return !__atomic_load_n(&l->posts_closed, __ATOMIC_ACQUIRE);
}

bool nh_tp_loop_on_owner(const nh_tp_loop *l) {
    return __atomic_load_n(&l->owner_set, __ATOMIC_ACQUIRE) &&
           pthread_equal(pthread_self(), l->owner);
}

uv_loop_t *nh_tp_loop_uv(nh_tp_loop *l) {
    return &l->uv;
}

size_t nh_tp_loop_max_message(const nh_tp_loop *l) {
    return l->max_message;
}

void nh_tp_loop_op_begin(nh_tp_loop *l) {
    __atomic_add_fetch(&l->ops, 1, __ATOMIC_RELAXED);
}

void nh_tp_loop_op_end(nh_tp_loop *l) {
    __atomic_sub_fetch(&l->ops, 1, __ATOMIC_RELAXED);
}

long nh_tp_loop_pending_ops(const nh_tp_loop *l) {
    long n = __atomic_load_n(&l->ops, __ATOMIC_RELAXED);
    for (size_t i = 0; i < l->io_count; i++)
        n += __atomic_load_n(&l->io[i]->ops, __ATOMIC_RELAXED);
    return n;
}

void *nh_tp_loop_cq(nh_tp_loop *l) {
    return l->cq;
}

static void close_walk(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void nh_tp_loop_free(nh_tp_loop *l) {
    if (!l) return;
    stop_cq_thread(l);
    pthread_mutex_lock(&l->mu); /* a loop that never ran still has its wake-up handle open */
    l->wake_open = false;
    pthread_mutex_unlock(&l->mu);
    if (l->bridge_started) {
        uint64_t one = 1;
        ssize_t w = write(l->bridge_stopfd, &one, sizeof one);
        (void)w;
        sem_post(&l->uv_ran); /* in case the bridge waits for a uv run that will not come */
        pthread_join(l->bridge, NULL);
    }
    if (l->bridge_epfd >= 0) close(l->bridge_epfd);
    if (l->bridge_stopfd >= 0) close(l->bridge_stopfd);
    /* Handles still open belong to nobody now (their owners closed first); close them so the
     * loop can be closed. Their memory is owned elsewhere and already released or static. */
    uv_walk(&l->uv, close_walk, NULL);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    if (uv_loop_close(&l->uv) != 0) nh_log(NH_LOG_WARN, "loop", "libuv loop still busy at exit");
    grpc_channel_destroy(l->kick_channel);
    if (!l->cq_shut) grpc_completion_queue_shutdown(l->cq);
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(l->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    }
    grpc_completion_queue_destroy(l->cq);
    pthread_mutex_destroy(&l->mu);
    sem_destroy(&l->uv_ran);
    free(l->posts);
    free(l);
    grpc_shutdown();
}
