/* Unit tests for the owner loop's turn-end hooks (transport/loop.h): what the inbound manager
 * coalesces its change notifications with (issue 15). Run on a real runtime's owner thread,
 * both kinds of owner loop: one that waits in gRPC's queue (threads 1) and one that waits for
 * libuv and never polls (threads 3, two transport loops). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/runtime_impl.h"
#include "nh_test_util.h"

#include <nodehost/nodehost.h>

#include <stdlib.h>
#include <string.h>

typedef struct probe {
    nh_tp_turn_hook hook; /* first: the hook is the probe */
    nh_tp_loop *loop;
    int runs;                /* atomic */
    int again;               /* times to reschedule itself from inside */
    struct probe *cancel;    /* a hook to cancel from inside */
    struct probe *order_log; /* where to record the run order */
    char order[16];
    size_t order_len;
    char name;
} probe;

static void on_hook(nh_tp_turn_hook *h) {
    probe *p = (probe *)h;
    __atomic_add_fetch(&p->runs, 1, __ATOMIC_RELEASE);
    if (p->order_log && p->order_log->order_len < sizeof p->order_log->order - 1)
        p->order_log->order[p->order_log->order_len++] = p->name;
    if (p->cancel) nh_tp_loop_cancel_turn_end(p->loop, &p->cancel->hook);
    if (p->again > 0) {
        p->again--;
        nh_tp_loop_at_turn_end(p->loop, &p->hook); /* runs next turn, not now again */
    }
}

static nh_runtime *g_rt;

static int setup_threads(unsigned threads) {
    nh_error err;
    nh_runtime_opts o = {.name = "hooks", .threads = threads};
    assert_int_equal(nh_runtime_new(&o, &g_rt, &err), 0);
    return 0;
}

static int setup(void **state) {
    (void)state;
    return setup_threads(1);
}

static int setup_quiet(void **state) {
    (void)state;
    setenv("NH_QUIET_OWNER", "1", 1); /* the non-polling owner is opt-in */
    int rc = setup_threads(3);
    unsetenv("NH_QUIET_OWNER");
    return rc;
}

static int teardown(void **state) {
    (void)state;
    nh_runtime_free(g_rt);
    return 0;
}

static void init_probe(probe *p, char name) {
    memset(p, 0, sizeof *p);
    p->hook.fn = on_hook;
    p->loop = g_rt->loop;
    p->name = name;
}

/* Waits until the owner loop went through a few more turns (posted tasks run every turn). */
static void noop(void *arg) {
    (void)arg;
}

static void settle(void) {
    for (int i = 0; i < 5; i++) {
        assert_int_equal(nh_runtime_sync(g_rt, noop, NULL), 0);
        nh_test_sleep_ms(2);
    }
}

static void schedule_many(void *arg) {
    probe *p = arg;
    for (int i = 0; i < 1000; i++)
        nh_tp_loop_at_turn_end(p->loop, &p->hook);
}

static void test_many_schedules_in_one_turn_run_once(void **state) {
    (void)state;
    probe p;
    init_probe(&p, 'a');
    assert_int_equal(nh_runtime_sync(g_rt, schedule_many, &p), 0);
    settle();
    assert_int_equal(__atomic_load_n(&p.runs, __ATOMIC_ACQUIRE), 1);
    /* The loop was idle: the hook did not wait for a timeout (the loop's wait is up to 100 ms). */
    assert_int_equal(nh_runtime_sync(g_rt, schedule_many, &p), 0);
    for (int i = 0; i < 20 && __atomic_load_n(&p.runs, __ATOMIC_ACQUIRE) < 2; i++)
        nh_test_sleep_ms(1);
    assert_int_equal(__atomic_load_n(&p.runs, __ATOMIC_ACQUIRE), 2);
}

typedef struct pair {
    probe *a, *b;
} pair;

static void schedule_pair(void *arg) {
    pair *pr = arg;
    nh_tp_loop_at_turn_end(pr->a->loop, &pr->a->hook);
    nh_tp_loop_at_turn_end(pr->b->loop, &pr->b->hook);
}

static void schedule_then_cancel(void *arg) {
    probe *p = arg;
    nh_tp_loop_at_turn_end(p->loop, &p->hook);
    nh_tp_loop_cancel_turn_end(p->loop, &p->hook);
    nh_tp_loop_cancel_turn_end(p->loop, &p->hook); /* twice: nothing */
}

static void test_order_cancel_and_rescheduling(void **state) {
    (void)state;
    probe a, b, log;
    init_probe(&a, 'a');
    init_probe(&b, 'b');
    init_probe(&log, '-');
    a.order_log = b.order_log = &log;
    /* In the order scheduled. */
    pair pr = {&a, &b};
    assert_int_equal(nh_runtime_sync(g_rt, schedule_pair, &pr), 0);
    settle();
    assert_string_equal(log.order, "ab");
    /* Cancelled before the turn ended: never runs. */
    assert_int_equal(nh_runtime_sync(g_rt, schedule_then_cancel, &a), 0);
    settle();
    assert_int_equal(a.runs, 1);
    /* A cancels B, which is in the same batch: B does not run. */
    a.cancel = &b;
    assert_int_equal(nh_runtime_sync(g_rt, schedule_pair, &pr), 0);
    settle();
    assert_string_equal(log.order, "aba");
    assert_int_equal(b.runs, 1);
    /* Rescheduled from inside: runs again in later turns (three times in all), never loops. */
    a.cancel = NULL;
    a.again = 2;
    assert_int_equal(nh_runtime_sync(g_rt, schedule_pair, &pr), 0);
    settle();
    assert_int_equal(a.runs, 5);
    assert_int_equal(b.runs, 2);
    assert_string_equal(log.order, "abaabaa");
}

/* From a timer's callback (libuv runs it inside the owner loop's wait): a turn-end hook and a
 * post to the loop itself still run without any other event to wake the loop. (A first
 * version of the non-polling owner waited in uv_run(UV_RUN_ONCE), whose poll after the due
 * timers ran waits forever.) */
typedef struct from_timer {
    probe *p;
    int posted_ran; /* atomic */
} from_timer;

static void self_posted(void *arg) {
    from_timer *ft = arg;
    __atomic_store_n(&ft->posted_ran, 1, __ATOMIC_RELEASE);
}

static void on_timer(void *arg) {
    from_timer *ft = arg;
    nh_tp_loop_at_turn_end(ft->p->loop, &ft->p->hook);
    assert_int_equal(nh_runtime_post(g_rt, self_posted, ft), 0);
}

static void test_hook_and_post_from_a_timer_run_without_another_event(void **state) {
    (void)state;
    for (int round = 0; round < 20; round++) {
        probe p;
        init_probe(&p, 't');
        from_timer ft = {.p = &p};
        nh_error err;
        assert_int_equal(nh_timer_start(g_rt, 1, 0, on_timer, &ft, NULL, &err), 0);
        int waited = 0;
        while ((__atomic_load_n(&p.runs, __ATOMIC_ACQUIRE) < 1 ||
                !__atomic_load_n(&ft.posted_ran, __ATOMIC_ACQUIRE)) &&
               waited < 5000) {
            nh_test_sleep_ms(1);
            waited++;
        }
        assert_int_equal(__atomic_load_n(&p.runs, __ATOMIC_ACQUIRE), 1);
        assert_int_equal(__atomic_load_n(&ft.posted_ran, __ATOMIC_ACQUIRE), 1);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_many_schedules_in_one_turn_run_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_cancel_and_rescheduling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_and_post_from_a_timer_run_without_another_event,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_schedules_in_one_turn_run_once, setup_quiet,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_order_cancel_and_rescheduling, setup_quiet, teardown),
        cmocka_unit_test_setup_teardown(test_hook_and_post_from_a_timer_run_without_another_event,
                                        setup_quiet, teardown),
    };
    return cmocka_run_group_tests_name("loop_turn_hook", tests, NULL, NULL);
}
