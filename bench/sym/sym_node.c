/* A symmetric node for the server-initiated call benchmarks (docs/benchmarks-symmetric.md).
 *
 *   sym_node --id N [--peer ID=HOST:PORT]... [--dial] [--listen HOST:PORT]
 *            [--drive config|clients --size K [--runs LIST] [--seconds S] [--warmup S]
 *             [--payload B] [--settle S] [--calls M]] [--keepalive TIME_MS,TIMEOUT_MS]
 *   sym_node --free-ports N
 *
 * Every node serves two methods:
 *   bench.Echo  replies with its payload
 *   bench.Cpu   replies "<pid> <cpu ns>": this process's CPU time (getrusage, user + system,
 *               all threads), so that the driver can measure every process of a run
 *
 * Prints "listening <port> rss_kb=<VmRSS> heap_kb=<malloc heap in use>" once it serves (read
 * before any peer or client could connect) and runs until SIGTERM or SIGINT, unless it drives.
 *
 * Driver (--drive): waits until its Config (config) or ClientConfig (clients) has K members
 * (nh_server_wait_config), waits --settle seconds (default 1), prints
 *
 *   ready ids=<n> self_in_config=<0|1> rss_kb=<VmRSS> heap_kb=<kB> admit_ms=<f>
 *     admit_cpu_ms=<f> stall_max_ms=<f> stall_probes=<n> notifications=<n>
 *
 * admit_ms is the time from the first change of the driven configuration (on_config_change:
 * the first peer in) until it had K members, admit_cpu_ms this process's CPU time (all threads)
 * over the same span, stall_max_ms the longest the owner thread took to run a task posted to it
 * while the peers were arriving (a probe thread posts one, waits for it, sleeps 1 ms, again), and
 * notifications the change notifications of that configuration until then.
 *
 * then runs each entry of LIST ("all:1,majority:16,multicast:1,...": quorum rule, or a one-way
 * multicast to every node done when every send completed, and calls in flight;
 * default "majority:1,all:1,majority:16,all:16") over that snapshot from its owner thread: the
 * start task issues C quorum calls of `bench.Echo` with a B-byte payload (default 64), and each
 * completion callback records the round trip and issues the next call, for S seconds (default
 * 5) after W seconds of warm-up (default 1; a separate phase, not recorded). --calls M measures
 * exactly M calls per entry instead (for profiling). Around the measured phase it samples the
 * CPU time of every process with a bench.Cpu quorum call (All) over the same configuration, plus
 * its own. One line per entry:
 *
 *   result target=<config|clients> size=<K> quorum=<all|majority|multicast> conc=<C> ops_per_s=<f>
 *     p50_us=<f> p99_us=<f> count=<n> errors=<n> cpu_self_us_per_op=<f>
 *     cpu_all_us_per_op=<f> procs=<n> self_in_config=<0|1> heap_kb=<kB>
 *
 * cpu_all_us_per_op sums the distinct processes that answered bench.Cpu (and this one), procs
 * is their number; heap_kb is the malloc heap in use (mallinfo2) once the entry's samples were
 * freed. Last comes "rss_after_kb=<VmRSS> heap_kb=<kB>" (after malloc_trim); the exit status
 * is 0, or 1 when a call failed or the run stalled.
 *
 * --keepalive sets the server's HTTP/2 keepalive (nh_server_opts.keepalive_time_ms and
 * keepalive_timeout_ms; default 1000,2000): with thousands of client connections arriving at
 * once, the owner thread can be busy for longer than the default timeout.
 *
 * --free-ports N prints N distinct free loopback TCP ports (bound at once, then released). */
#include "bench_common.h"

#include <nodehost/nodehost.h>

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <netinet/in.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PEERS 64
#define MAX_RUNS  16
#define MAX_PROCS 256

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

/* ---- process measurements ------------------------------------------------------------------ */

static int64_t cpu_ns(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return ((int64_t)ru.ru_utime.tv_sec + (int64_t)ru.ru_stime.tv_sec) * 1000000000LL +
           ((int64_t)ru.ru_utime.tv_usec + (int64_t)ru.ru_stime.tv_usec) * 1000LL;
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* Bytes in use on the malloc heap (all arenas), in kB, after the samples were freed. */
static size_t heap_kb(void) {
    return mallinfo2().uordblks / 1024;
}

/* ---- handlers ------------------------------------------------------------------------------ */

static void h_echo(nh_server_ctx *ctx, void *user) {
    (void)user;
    size_t n;
    const uint8_t *p = nh_ctx_payload(ctx, &n);
    nh_ctx_reply(ctx, p, n);
}

static void h_cpu(nh_server_ctx *ctx, void *user) {
    (void)user;
    char buf[64];
    int k = snprintf(buf, sizeof buf, "%ld %lld", (long)getpid(), (long long)cpu_ns());
    nh_ctx_reply(ctx, buf, (size_t)k);
}

/* ---- admission ------------------------------------------------------------------------------ */

/* Set by the first change of the driven configuration (owner thread), read by the driver. */
static int64_t g_first_ns, g_first_cpu_ns; /* atomics */
static uint64_t g_notifications;           /* atomic: changes of the driven configuration */
static bool g_drive_clients;               /* which configuration is driven (set before start) */

static void on_change(nh_config *cfg, bool client_config, void *user) {
    (void)user;
    if (client_config != g_drive_clients) return;
    if (!client_config && nh_config_size(cfg) <= 1) return; /* itself alone: no peer yet */
    __atomic_add_fetch(&g_notifications, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&g_first_ns, __ATOMIC_ACQUIRE)) return;
    __atomic_store_n(&g_first_cpu_ns, cpu_ns(), __ATOMIC_RELAXED);
    __atomic_store_n(&g_first_ns, nhb_now_ns(), __ATOMIC_RELEASE);
}

/* The probe: how long the owner thread takes to run a task posted to it. */
typedef struct probe {
    nh_runtime *rt;
    sem_t ran;
    int stop;        /* atomic */
    int64_t max_ns;  /* longest wait seen (probe thread) */
    uint64_t probes; /* probes that ran */
    pthread_t thread;
} probe;

static void probe_task(void *arg) {
    sem_post(&((probe *)arg)->ran);
}

static void *probe_main(void *arg) {
    probe *p = arg;
    while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
        int64_t t0 = nhb_now_ns();
        if (nh_runtime_post(p->rt, probe_task, p) != 0) break;
        while (sem_wait(&p->ran) != 0 && errno == EINTR) {
        }
        int64_t d = nhb_now_ns() - t0;
        if (d > p->max_ns) p->max_ns = d;
        p->probes++;
        usleep(1000);
    }
    return NULL;
}

/* ---- the driver ---------------------------------------------------------------------------- */

typedef struct run_spec {
    nh_quorum_kind quorum;
    bool multicast; /* a one-way multicast to every node, done when every send completed */
    size_t conc;
} run_spec;

/* One phase (warm-up or measurement). Owner-thread state after the start task was posted. */
typedef struct phase {
    nh_config *cfg;
    nh_qc_opts opts;
    const uint8_t *payload;
    size_t payload_len;
    size_t conc;
    bool multicast;
    nhb_rec rec;
    int64_t issued[64];
    size_t outstanding;
    size_t extra_errors;
    bool starting, finished;
    int64_t drain_deadline;
    char first_error[NH_ERROR_MESSAGE_MAX];
    sem_t done;
} phase;

static phase g;

static void phase_finish(void) {
    if (g.finished) return;
    g.finished = true;
    sem_post(&g.done);
}

static void issue(size_t slot);

static void slot_done(size_t slot, bool ok) {
    g.outstanding--;
    if (g.finished) return;
    /* A failed slot is not re-issued (as bench/rpc_bench.c). */
    if (nhb_rec_complete(&g.rec, g.issued[slot], ok) && ok) issue(slot);
    if (g.outstanding == 0 && !g.starting) phase_finish();
}

static void on_done(const nh_qc_result *r, void *user) {
    bool ok = r->err.code == NH_OK && r->value_len == g.payload_len;
    if (!ok && !g.first_error[0] && !g.finished) {
        if (r->err.code != NH_OK)
            snprintf(g.first_error, sizeof g.first_error, "%s", r->err.message);
        else
            snprintf(g.first_error, sizeof g.first_error, "value of %zu bytes", r->value_len);
    }
    slot_done((size_t)(uintptr_t)user, ok);
}

static void on_mc_done(const nh_error *err, void *user) {
    if (err->code != NH_OK && !g.first_error[0] && !g.finished)
        snprintf(g.first_error, sizeof g.first_error, "%s", err->message);
    slot_done((size_t)(uintptr_t)user, err->code == NH_OK);
}

static void issue(size_t slot) {
    g.issued[slot] = nhb_now_ns();
    g.outstanding++;
    nh_error err;
    void *user = (void *)(uintptr_t)slot;
    int rc = g.multicast ? nh_multicast_async(g.cfg, "bench.Echo", g.payload, g.payload_len,
                                              &g.opts, on_mc_done, user, &err)
                         : nh_quorum_call_async(g.cfg, "bench.Echo", g.payload, g.payload_len,
                                                &g.opts, on_done, user, &err);
    if (rc != 0) {
        g.outstanding--;
        g.extra_errors++;
        if (!g.first_error[0]) snprintf(g.first_error, sizeof g.first_error, "%s", err.message);
    }
}

static void start_task(void *arg) {
    (void)arg;
    g.starting = true;
    for (size_t i = 0; i < g.conc; i++)
        issue(i);
    g.starting = false;
    if (g.outstanding == 0) phase_finish();
}

/* Posted periodically: ends a phase whose answers stopped coming. */
static void check_task(void *arg) {
    (void)arg;
    if (g.finished || !nhb_rec_over(&g.rec)) return;
    int64_t now = nhb_now_ns();
    if (!g.drain_deadline) g.drain_deadline = now + 15000000000LL;
    if (g.outstanding == 0 || now > g.drain_deadline) {
        if (g.outstanding && !g.first_error[0])
            snprintf(g.first_error, sizeof g.first_error,
                     "stalled: %zu calls still outstanding 15 s after the phase ended",
                     g.outstanding);
        g.extra_errors += g.outstanding;
        phase_finish();
    }
}

/* nhb_wait_done's tick: asks the owner thread to check for a stalled run. */
static void post_check(void *rt) {
    nh_runtime_post(rt, check_task, NULL);
}

/* Runs one phase to its end (drained). Returns false when it stalled: calls are then still
 * outstanding and the phase state must not be reused. */
static bool run_phase(nh_runtime *rt, double seconds, size_t calls) {
    nhb_args a = {.inflight = g.conc,
                  .seconds = seconds,
                  .warmup = 0,
                  .payload = g.payload_len,
                  .messages = calls};
    g.outstanding = 0;
    g.extra_errors = 0;
    g.finished = false;
    g.drain_deadline = 0;
    g.first_error[0] = '\0';
    if (nhb_rec_start(&g.rec, &a) != 0 || nh_runtime_post(rt, start_task, NULL) != 0) return false;
    nhb_wait_done(&g.done, post_check, rt);
    return g.outstanding == 0;
}

/* CPU time of every distinct process of the run: this one plus those answering bench.Cpu. */
typedef struct cpu_sample {
    long pid[MAX_PROCS];
    int64_t ns[MAX_PROCS];
    size_t n;
    int64_t self_ns;
} cpu_sample;

static int sample_cpu(nh_config *cfg, cpu_sample *s) {
    s->n = 1;
    s->pid[0] = (long)getpid();
    s->self_ns = s->ns[0] = cpu_ns();
    nh_qc_opts o = {.call = {.timeout_ms = 30000}, .quorum = {.kind = NH_QUORUM_ALL}};
    nh_qc_outcome out;
    nh_error err;
    int rc = nh_quorum_call(cfg, "bench.Cpu", "", 0, &o, &out, &err);
    if (rc != 0) fprintf(stderr, "sym_node: bench.Cpu: %s\n", err.message);
    for (size_t i = 0; rc == 0 && i < out.n_replies; i++) {
        char buf[64];
        size_t len = out.replies[i].len < sizeof buf - 1 ? out.replies[i].len : sizeof buf - 1;
        memcpy(buf, out.replies[i].payload, len);
        buf[len] = '\0';
        long pid;
        long long ns;
        if (sscanf(buf, "%ld %lld", &pid, &ns) != 2) continue;
        size_t j = 0;
        while (j < s->n && s->pid[j] != pid)
            j++;
        if (j == s->n && s->n < MAX_PROCS) {
            s->pid[s->n] = pid;
            s->ns[s->n++] = ns;
        }
    }
    nh_qc_outcome_free(&out);
    return rc;
}

/* Sum of CPU time spent between two samples by the processes present in both. */
static int64_t cpu_delta(const cpu_sample *a, const cpu_sample *b, size_t *procs) {
    int64_t sum = 0;
    *procs = 0;
    for (size_t i = 0; i < b->n; i++)
        for (size_t j = 0; j < a->n; j++)
            if (a->pid[j] == b->pid[i]) {
                sum += b->ns[i] - a->ns[j];
                (*procs)++;
                break;
            }
    return sum;
}

typedef struct drive_args {
    bool clients;
    size_t size;
    run_spec runs[MAX_RUNS];
    size_t n_runs;
    double seconds, warmup, settle;
    size_t payload;
    size_t calls; /* measure exactly this many calls instead of a duration; 0 = off */
} drive_args;

static bool size_at_least(const nh_config *cfg, void *user) {
    return nh_config_size(cfg) >= (size_t)(uintptr_t)user;
}

static int drive(nh_runtime *rt, nh_server *srv, uint32_t id, const drive_args *d) {
    nh_error err;
    probe pr = {.rt = rt};
    sem_init(&pr.ran, 0, 0);
    bool probing = pthread_create(&pr.thread, NULL, probe_main, &pr) == 0;
    int wrc = nh_server_wait_config(srv, d->clients, size_at_least, (void *)(uintptr_t)d->size,
                                    300000, &err);
    int64_t done_ns = nhb_now_ns(), done_cpu = cpu_ns();
    uint64_t notifications = __atomic_load_n(&g_notifications, __ATOMIC_RELAXED);
    __atomic_store_n(&pr.stop, 1, __ATOMIC_RELEASE);
    if (probing) pthread_join(pr.thread, NULL);
    sem_destroy(&pr.ran);
    if (wrc != 0) {
        fprintf(stderr, "sym_node: waiting for %s of %zu: %s\n",
                d->clients ? "ClientConfig" : "Config", d->size, err.message);
        return 1;
    }
    int64_t first_ns = __atomic_load_n(&g_first_ns, __ATOMIC_ACQUIRE);
    int64_t first_cpu = __atomic_load_n(&g_first_cpu_ns, __ATOMIC_RELAXED);
    nh_config *cfg = d->clients ? nh_server_client_config(srv) : nh_server_config(srv);
    bool self_in = nh_config_contains(cfg, id);
    if (d->settle > 0) usleep((useconds_t)(d->settle * 1e6));
    printf("ready ids=%zu self_in_config=%d rss_kb=%ld heap_kb=%zu admit_ms=%.1f "
           "admit_cpu_ms=%.1f stall_max_ms=%.2f stall_probes=%llu notifications=%llu\n",
           nh_config_size(cfg), self_in ? 1 : 0, rss_kb(), heap_kb(),
           first_ns ? (double)(done_ns - first_ns) / 1e6 : 0.0,
           first_ns ? (double)(done_cpu - first_cpu) / 1e6 : 0.0, (double)pr.max_ns / 1e6,
           (unsigned long long)pr.probes, (unsigned long long)notifications);
    fflush(stdout);

    uint8_t *payload = malloc(d->payload ? d->payload : 1);
    if (!payload) return 1;
    for (size_t i = 0; i < d->payload; i++)
        payload[i] = (uint8_t)('a' + i % 26);
    g.cfg = cfg;
    g.payload = payload;
    g.payload_len = d->payload;
    sem_init(&g.done, 0, 0);
    int status = 0;
    bool stalled = false;
    for (size_t r = 0; r < d->n_runs && !g_stop; r++) {
        const run_spec *rs = &d->runs[r];
        const char *qname = rs->multicast                 ? "multicast"
                            : rs->quorum == NH_QUORUM_ALL ? "all"
                                                          : "majority";
        g.multicast = rs->multicast;
        g.opts = (nh_qc_opts){.call = {.timeout_ms = 10000}, .quorum = {.kind = rs->quorum}};
        g.conc = rs->conc;
        cpu_sample c0, c1;
        bool ok = true;
        if (d->warmup > 0) {
            ok = run_phase(rt, d->warmup, 0);
            free(g.rec.samples);
            g.rec.samples = NULL;
            if (ok && g.rec.errors + g.extra_errors)
                fprintf(stderr, "sym_node: warm-up %s:%zu: %s\n", qname, rs->conc, g.first_error);
        }
        ok = ok && sample_cpu(cfg, &c0) == 0;
        ok = ok && run_phase(rt, d->seconds, d->calls);
        stalled = !ok && g.outstanding > 0;
        ok = ok && sample_cpu(cfg, &c1) == 0;
        if (!ok) {
            fprintf(stderr, "sym_node: %s:%zu: %s\n", qname, rs->conc,
                    g.first_error[0] ? g.first_error : "failed");
            status = 1;
            break;
        }
        nhb_rec *rec = &g.rec;
        double rate = nhb_rec_close(rec);
        size_t errors = rec->errors + g.extra_errors, procs;
        int64_t all = cpu_delta(&c0, &c1, &procs);
        double per = rec->count ? 1.0 / (double)rec->count / 1000.0 : 0;
        if (errors) {
            fprintf(stderr, "sym_node: %s:%zu: first error: %s\n", qname, rs->conc, g.first_error);
            status = 1;
        }
        double p50 = nhb_pct_us(rec->samples, rec->count, 50);
        double p99 = nhb_pct_us(rec->samples, rec->count, 99);
        free(rec->samples);
        printf("result target=%s size=%zu quorum=%s conc=%zu ops_per_s=%.1f p50_us=%.1f "
               "p99_us=%.1f count=%zu errors=%zu cpu_self_us_per_op=%.1f cpu_all_us_per_op=%.1f "
               "procs=%zu self_in_config=%d heap_kb=%zu\n",
               d->clients ? "clients" : "config", nh_config_size(cfg), qname, rs->conc, rate, p50,
               p99, rec->count, errors, (double)(c1.self_ns - c0.self_ns) * per, (double)all * per,
               procs, self_in ? 1 : 0, heap_kb());
        fflush(stdout);
        rec->samples = NULL;
    }
    malloc_trim(0);
    printf("rss_after_kb=%ld heap_kb=%zu\n", rss_kb(), heap_kb());
    fflush(stdout);
    if (stalled) return 2; /* calls still use the phase state: the caller exits at once */
    nh_config_unref(cfg);
    sem_destroy(&g.done);
    free(payload);
    return status;
}

/* ---- arguments ----------------------------------------------------------------------------- */

static int parse_runs(const char *list, drive_args *d) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    d->n_runs = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        if (!colon || d->n_runs == MAX_RUNS) return -1;
        *colon = '\0';
        run_spec *rs = &d->runs[d->n_runs++];
        rs->multicast = !strcmp(tok, "multicast");
        if (!strcmp(tok, "all") || rs->multicast)
            rs->quorum = NH_QUORUM_ALL;
        else if (!strcmp(tok, "majority"))
            rs->quorum = NH_QUORUM_MAJORITY;
        else
            return -1;
        rs->conc = strtoul(colon + 1, NULL, 10);
        if (rs->conc < 1 || rs->conc > 64) return -1;
    }
    return d->n_runs ? 0 : -1;
}

static int free_ports(int n) {
    int fds[MAX_PEERS];
    if (n < 1 || n > MAX_PEERS) return 2;
    for (int i = 0; i < n; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof sa;
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&sa, sizeof sa) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&sa, &len) != 0) {
            perror("sym_node: free port");
            return 1;
        }
        printf("%s%u", i ? " " : "", (unsigned)ntohs(sa.sin_port));
    }
    printf("\n");
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return 0;
}

static int usage(const char *argv0) {
    fprintf(
        stderr,
        "usage: %s --id N [--peer ID=HOST:PORT]... [--dial] [--listen HOST:PORT]\n"
        "          [--drive config|clients --size K [--runs all:1,majority:16,multicast:1,...]\n"
        "           [--seconds S] [--warmup S] [--payload B] [--settle S] [--calls M]]\n"
        "          [--keepalive TIME_MS,TIMEOUT_MS]\n"
        "       %s --free-ports N\n",
        argv0, argv0);
    return 2;
}

int main(int argc, char **argv) {
    nh_node_addr peers[MAX_PEERS];
    size_t npeers = 0;
    bool dial = false, driving = false;
    const char *listen = "127.0.0.1:0";
    uint32_t id = 0, ka_time = 0, ka_timeout = 0;
    drive_args d = {.seconds = 5, .warmup = 1, .settle = 1, .payload = 64};
    parse_runs("majority:1,all:1,majority:16,all:16", &d);
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(opt, "--free-ports") && has) {
            return free_ports(atoi(argv[i + 1]));
        } else if (!strcmp(opt, "--id") && has) {
            id = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(opt, "--peer") && has && npeers < MAX_PEERS) {
            char *spec = argv[++i], *eq = strchr(spec, '=');
            if (!eq) return usage(argv[0]);
            *eq = '\0';
            peers[npeers++] =
                (nh_node_addr){.id = (uint32_t)strtoul(spec, NULL, 10), .address = eq + 1};
        } else if (!strcmp(opt, "--dial")) {
            dial = true;
        } else if (!strcmp(opt, "--listen") && has) {
            listen = argv[++i];
        } else if (!strcmp(opt, "--drive") && has) {
            driving = true;
            const char *t = argv[++i];
            if (strcmp(t, "config") && strcmp(t, "clients")) return usage(argv[0]);
            d.clients = !strcmp(t, "clients");
        } else if (!strcmp(opt, "--size") && has) {
            d.size = strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(opt, "--runs") && has) {
            if (parse_runs(argv[++i], &d) != 0) return usage(argv[0]);
        } else if (!strcmp(opt, "--seconds") && has) {
            d.seconds = atof(argv[++i]);
        } else if (!strcmp(opt, "--warmup") && has) {
            d.warmup = atof(argv[++i]);
        } else if (!strcmp(opt, "--settle") && has) {
            d.settle = atof(argv[++i]);
        } else if (!strcmp(opt, "--calls") && has) {
            d.calls = strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(opt, "--keepalive") && has) {
            if (sscanf(argv[++i], "%u,%u", &ka_time, &ka_timeout) != 2) return usage(argv[0]);
        } else if (!strcmp(opt, "--payload") && has) {
            d.payload = strtoul(argv[++i], NULL, 10);
        } else {
            return usage(argv[0]);
        }
    }
    if (!id || (driving && (d.size == 0 || d.seconds <= 0))) return usage(argv[0]);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    nh_error err;
    nh_runtime *rt;
    nh_runtime_opts ro = {.name = "sym_node"};
    if (nh_runtime_new(&ro, &rt, &err) != 0) {
        fprintf(stderr, "sym_node: %s\n", err.message);
        return 1;
    }
    g_drive_clients = d.clients;
    nh_server_opts so = {.listen = listen,
                         .node_id = id,
                         .peers = peers,
                         .peer_count = npeers,
                         .dial_peers = dial,
                         .backoff_base_ms = 50,
                         .backoff_max_ms = 500,
                         .keepalive_time_ms = ka_time,
                         .keepalive_timeout_ms = ka_timeout,
                         /* the one-connection layout holds every client on one connection */
                         .max_clients_per_connection = d.clients && d.size > 1000 ? d.size : 0,
                         .on_config_change = on_change};
    nh_server *srv;
    int port = 0;
    if (nh_server_new(rt, &so, &srv, &port, &err) != 0) {
        fprintf(stderr, "sym_node: %s\n", err.message);
        nh_runtime_free(rt);
        return 1;
    }
    nh_server_handle(srv, "bench.Echo", h_echo, NULL, NULL);
    nh_server_handle(srv, "bench.Cpu", h_cpu, NULL, NULL);
    printf("listening %d rss_kb=%ld heap_kb=%zu\n", port, rss_kb(), heap_kb());
    fflush(stdout);
    int status = 0;
    if (driving) {
        status = drive(rt, srv, id, &d);
        if (status == 2) _exit(1); /* a stalled phase's calls are still outstanding */
    } else {
        while (!g_stop)
            usleep(20000);
    }
    nh_runtime_free(rt);
    return status;
}
