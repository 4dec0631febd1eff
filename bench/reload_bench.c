/* The plugin reload benchmark: hot reloads of the storage plugin on a running nodehost cluster,
 * driven through the public SDK. See bench/run_reload.sh and docs/benchmarks.md, "Plugin reload".
 *
 * Two builds of the storage plugin that differ only in their version string (proto.Storage.Info
 * answers it) are installed alternately over the configured plugin path: the build is copied
 * next to the path and renamed over it, so a node never sees a half-written file.
 *
 *   reload_bench trigger --servers A,B,C --plugin PATH --builds X.so,Y.so --versions VX,VY
 *                [--via admin|sighup] [--pids P,P,P] [--rounds K] [--poll yes|no]
 *
 *     K rounds; each installs the other build and reloads every node in turn. Per node: the
 *     trigger (--via admin: nh_admin_reload() on a helper thread; --via sighup: kill(pid, SIGHUP)
 *     with --pids in --servers order), then Info RPCs back to back on the same node until one
 *     answers the new version (and generation + 1). Measured per reload:
 *       serving  trigger sent -> the first Info answer with the new version received
 *       reply    (admin) trigger sent -> nh_admin_reload() returned
 *       took     the node's own took_ns (nodehost.Admin.Status last_reload_took_ns, read after
 *                the reload: from the request reaching the reloader to the new generation
 *                serving)
 *     --poll no (with --via admin): no Info until nh_admin_reload() returned, then one Info to
 *     check the version (reply and took only: the reload without the polling's competition).
 *     One line per reload on stderr ("sample ..."), then one line on stdout:
 *       trigger=<via> count=<n> serving_p50_ms= serving_p99_ms= serving_max_ms= reply_p50_ms=
 *       reply_p99_ms= reply_max_ms= took_p50_ms= took_p99_ms= took_max_ms= polls_p50=
 *       errors=<n>
 *
 *   reload_bench load --servers A,B,C --plugin PATH --builds X.so,Y.so --versions VX,VY
 *                [--concurrent C] [--seconds S] [--warmup W] [--reload-ms R] [--quorum Q]
 *                [--keys N] [--payload B] [--pids P,P,P]
 *
 *     A closed loop of C proto.Storage.WriteQC quorum calls (threshold Q, default a majority)
 *     over the servers, each issued from the previous one's completion. Key k<i % N>, a value of
 *     B bytes, Time = {seconds: a counter}, so that every write is newer than the last. After W
 *     seconds of warm-up, three phases of S seconds: A1 steady state, B the same load while a
 *     thread installs the other build and sends nodehost.Admin.Reload to every node at once
 *     every R ms (the next round starts when the previous one ended if that took longer), A2
 *     steady state again. A call belongs to the phase it was issued in. Prints on stdout:
 *       phase=<A1|B|A2> ops_per_s= p50_us= p99_us= max_us= count= errors= srv_cpu_pct=
 *         srv_cpu_us_per_op=
 *       reloads rounds=<n> replies=<n> failed=<n> unchanged=<n> took_p50_ms= took_p99_ms=
 *         took_max_ms=
 *       node addr=<a> version=<v> generation=<g> keys=<k>
 *     srv_cpu: the --pids processes' CPU time in the phase (/proc/<pid>/stat, clock ticks), as %
 *     of one core and per call (-1 without --pids). Failed calls are printed on stderr (the first
 * 20, with phase and time).
 *
 * Exit status 0 when nothing failed (no failed call, reload, Info or Status), 1 otherwise. */
#include "bench_common.h"

#include <nodehost/admin.h>
#include <nodehost/nodehost.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_NODES          16
#define M_INFO             "proto.Storage.Info"
#define M_WRITEQC          "proto.Storage.WriteQC"
#define MAX_PRINTED_ERRORS 20

typedef struct rb_opts {
    bool load; /* mode: load, else trigger */
    const char *servers[MAX_NODES];
    size_t n;
    pid_t pids[MAX_NODES];
    size_t n_pids;
    const char *plugin;
    const char *builds[2];
    const char *versions[2];
    bool sighup;
    bool no_poll;
    size_t rounds;
    size_t concurrent;
    double seconds, warmup, reload_ms;
    size_t quorum, keys, payload;
} rb_opts;

static rb_opts o;
static nh_runtime *rt;
static nh_config *cfg;

static void sleep_ns(int64_t ns) {
    if (ns <= 0) return;
    struct timespec ts = {ns / 1000000000, ns % 1000000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static double ms(int64_t ns) {
    return (double)ns / 1e6;
}

/* ---- the plugin file ------------------------------------------------------------------------ */

/* Installs build b over the configured path: a copy next to it, renamed over it. */
static int install_build(int b) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", o.plugin, (long)getpid());
    int in = open(o.builds[b], O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        fprintf(stderr, "reload_bench: %s: %s\n", o.builds[b], strerror(errno));
        return -1;
    }
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (out < 0) {
        fprintf(stderr, "reload_bench: %s: %s\n", tmp, strerror(errno));
        close(in);
        return -1;
    }
    char buf[65536];
    ssize_t r;
    int rc = 0;
    while ((r = read(in, buf, sizeof buf)) != 0) {
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = -1;
            break;
        }
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                rc = -1;
                break;
            }
            off += w;
        }
        if (rc != 0) break;
    }
    close(in);
    if (close(out) != 0) rc = -1;
    if (rc == 0 && rename(tmp, o.plugin) != 0) rc = -1;
    if (rc != 0) {
        fprintf(stderr, "reload_bench: cannot install %s as %s: %s\n", o.builds[b], o.plugin,
                strerror(errno));
        unlink(tmp);
    }
    return rc;
}

/* ---- Info and Status (blocking, any thread but the owner) ----------------------------------- */

typedef struct info {
    char version[64];
    uint64_t generation, keys;
} info;

/* proto.Storage.Info on one node. Returns 0, or -1 with err. */
static int get_info(nh_node *node, info *out, nh_error *err) {
    nh_call_opts co = {.timeout_ms = 5000};
    nh_buf resp = {0};
    if (nh_rpc(node, M_INFO, NULL, 0, &co, &resp, err) != 0) return -1;
    *out = (info){0};
    const uint8_t *p = resp.data, *end = resp.data + resp.len;
    nhb_pb_field f;
    int rc;
    while ((rc = nhb_pb_next(&p, end, &f)) == 1) {
        if (f.number == 1 && f.wire == 2) {
            size_t n = f.len < sizeof out->version - 1 ? f.len : sizeof out->version - 1;
            memcpy(out->version, f.data, n);
            out->version[n] = '\0';
        } else if (f.number == 2 && f.wire == 0) {
            out->generation = f.v;
        } else if (f.number == 3 && f.wire == 0) {
            out->keys = f.v;
        }
    }
    nh_buf_free(&resp);
    if (rc != 0) {
        nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0, "Info: the reply does not decode");
        return -1;
    }
    return 0;
}

/* nodehost.Admin.Status: the reload counter and the last reload's took_ns. */
static int get_reload_status(nh_node *node, uint64_t *reloads, int64_t *took_ns, nh_error *err) {
    nh_call_opts co = {.timeout_ms = 5000};
    nh_buf resp = {0};
    if (nh_rpc(node, NH_ADMIN_STATUS_METHOD, NULL, 0, &co, &resp, err) != 0) return -1;
    *reloads = 0;
    *took_ns = 0;
    const uint8_t *p = resp.data, *end = resp.data + resp.len;
    nhb_pb_field f;
    int rc;
    while ((rc = nhb_pb_next(&p, end, &f)) == 1) {
        if (f.number == 9 && f.wire == 0) *reloads = f.v;
        if (f.number == 12 && f.wire == 0) *took_ns = (int64_t)f.v;
    }
    nh_buf_free(&resp);
    if (rc != 0) {
        nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0, "Status: the reply does not decode");
        return -1;
    }
    return 0;
}

static int version_index(const char *v) {
    for (int b = 0; b < 2; b++)
        if (!strcmp(v, o.versions[b])) return b;
    return -1;
}

/* The build every node serves now (they must agree), or -1 after printing why. */
static int current_build(void) {
    int cur = -1;
    for (size_t i = 0; i < o.n; i++) {
        info in;
        nh_error err;
        int rc = -1;
        for (int attempt = 0; attempt < 50 && rc != 0; attempt++) {
            rc = get_info(nh_config_node(cfg, i), &in, &err);
            if (rc != 0) sleep_ns(100000000);
        }
        if (rc != 0) {
            fprintf(stderr, "reload_bench: %s: Info: %s\n", o.servers[i], err.message);
            return -1;
        }
        int b = version_index(in.version);
        if (b < 0 || (cur >= 0 && b != cur)) {
            fprintf(stderr,
                    "reload_bench: %s serves version \"%s\" (expected one of %s, %s, "
                    "the same on every node)\n",
                    o.servers[i], in.version, o.versions[0], o.versions[1]);
            return -1;
        }
        cur = b;
    }
    return cur;
}

/* ---- trigger mode --------------------------------------------------------------------------- */

/* The helper thread that makes the blocking nh_admin_reload() call while the main thread
 * polls Info. */
typedef struct admin_worker {
    pthread_t thread;
    sem_t go, done;
    nh_node *node; /* NULL: exit */
    _Atomic int64_t t0;
    int64_t t_reply;
    int rc;
    nh_error err;
} admin_worker;

static void *admin_thread(void *arg) {
    admin_worker *w = arg;
    for (;;) {
        while (sem_wait(&w->go) != 0) {
        }
        if (!w->node) return NULL;
        atomic_store(&w->t0, nhb_now_ns());
        w->rc = nh_admin_reload(w->node, 20000, &w->err);
        w->t_reply = nhb_now_ns();
        sem_post(&w->done);
    }
}

typedef struct samples {
    int64_t *v;
    size_t n;
} samples;

static void add_sample(samples *s, int64_t v) {
    int64_t *nv = realloc(s->v, (s->n + 1) * sizeof *nv);
    if (!nv) return;
    nv[s->n++] = v;
    s->v = nv;
}

/* "name_p50_ms=.. name_p99_ms=.. name_max_ms=.." of a sample set, appended to stdout. */
static void print_ms_stats(const char *name, samples *s) {
    nhb_sort_ns(s->v, s->n);
    printf(" %s_p50_ms=%.3f %s_p99_ms=%.3f %s_max_ms=%.3f", name, ms(nhb_pct(s->v, s->n, 50)), name,
           ms(nhb_pct(s->v, s->n, 99)), name, ms(s->n ? s->v[s->n - 1] : 0));
}

static int run_trigger(void) {
    int cur = current_build();
    if (cur < 0) return 1;
    admin_worker w = {.rc = 0};
    sem_init(&w.go, 0, 0);
    sem_init(&w.done, 0, 0);
    if (!o.sighup && pthread_create(&w.thread, NULL, admin_thread, &w) != 0) {
        fprintf(stderr, "reload_bench: cannot start a thread\n");
        return 1;
    }
    samples serving = {0}, reply = {0}, took = {0}, polls = {0};
    size_t errors = 0;
    for (size_t round = 0; round < o.rounds; round++) {
        int nb = 1 - cur;
        if (install_build(nb) != 0) {
            errors++;
            break;
        }
        for (size_t i = 0; i < o.n; i++) {
            nh_node *node = nh_config_node(cfg, i);
            nh_error err;
            info before, in;
            uint64_t reloads0, reloads1;
            int64_t took0, took1;
            if (get_info(node, &before, &err) != 0 ||
                get_reload_status(node, &reloads0, &took0, &err) != 0) {
                fprintf(stderr, "reload_bench: %s: %s\n", o.servers[i], err.message);
                errors++;
                continue;
            }
            int64_t t0;
            if (o.sighup) {
                t0 = nhb_now_ns();
                if (kill(o.pids[i], SIGHUP) != 0) {
                    fprintf(stderr, "reload_bench: kill %d: %s\n", (int)o.pids[i], strerror(errno));
                    errors++;
                    continue;
                }
            } else {
                atomic_store(&w.t0, 0);
                w.node = node;
                sem_post(&w.go);
                while ((t0 = atomic_load(&w.t0)) == 0) {
                }
            }
            /* Info back to back until the new build answers (--no-poll: once, after the
             * reload). */
            int64_t t_new = 0;
            size_t n_polls = 0;
            if (o.no_poll) {
                while (sem_wait(&w.done) != 0) {
                }
                sem_post(&w.done); /* taken again below */
            }
            for (;;) {
                n_polls++;
                if (get_info(node, &in, &err) != 0) {
                    fprintf(stderr, "reload_bench: %s: Info during the reload: %s\n", o.servers[i],
                            err.message);
                    errors++;
                } else if (!strcmp(in.version, o.versions[nb])) {
                    t_new = nhb_now_ns();
                    break;
                }
                if (o.no_poll || nhb_now_ns() - t0 > 20000000000LL) break;
            }
            if (!o.sighup) {
                while (sem_wait(&w.done) != 0) {
                }
                if (w.rc != 0) {
                    fprintf(stderr, "reload_bench: %s: nh_admin_reload: %s\n", o.servers[i],
                            w.err.message);
                    errors++;
                }
            }
            if (!t_new) {
                fprintf(stderr, "reload_bench: %s: the new build never answered\n", o.servers[i]);
                errors++;
                continue;
            }
            if (in.generation != before.generation + 1) {
                fprintf(stderr, "reload_bench: %s: generation %llu -> %llu (expected +1)\n",
                        o.servers[i], (unsigned long long)before.generation,
                        (unsigned long long)in.generation);
                errors++;
            }
            /* The node's own figure: the reload has ended once its took_ns changed (SIGHUP)
             * or once nh_admin_reload returned. */
            int rc = -1;
            int64_t deadline = nhb_now_ns() + 5000000000LL;
            do {
                rc = get_reload_status(node, &reloads1, &took1, &err);
                if (rc != 0 || took1 != took0) break;
                sleep_ns(200000);
            } while (nhb_now_ns() < deadline);
            if (rc != 0 || took1 == took0) {
                fprintf(stderr, "reload_bench: %s: Status after the reload: %s\n", o.servers[i],
                        rc != 0 ? err.message : "took_ns unchanged");
                errors++;
                took1 = 0;
            }
            if (!o.no_poll) add_sample(&serving, t_new - t0);
            if (!o.sighup) add_sample(&reply, w.t_reply - t0);
            if (took1) add_sample(&took, took1);
            add_sample(&polls, (int64_t)n_polls);
            fprintf(stderr,
                    "sample trigger=%s round=%zu node=%s version=%s generation=%llu "
                    "serving_us=%.1f reply_us=%.1f took_us=%.1f polls=%zu reloads=%llu\n",
                    o.sighup    ? "sighup"
                    : o.no_poll ? "admin-nopoll"
                                : "admin",
                    round + 1, o.servers[i], in.version, (unsigned long long)in.generation,
                    (double)(t_new - t0) / 1e3, o.sighup ? 0.0 : (double)(w.t_reply - t0) / 1e3,
                    (double)took1 / 1e3, n_polls, (unsigned long long)reloads1);
        }
        cur = nb;
    }
    if (!o.sighup) {
        w.node = NULL;
        sem_post(&w.go);
        pthread_join(w.thread, NULL);
    }
    sem_destroy(&w.go);
    sem_destroy(&w.done);
    printf("trigger=%s count=%zu",
           o.sighup    ? "sighup"
           : o.no_poll ? "admin-nopoll"
                       : "admin",
           reply.n > serving.n ? reply.n : serving.n);
    print_ms_stats("serving", &serving);
    print_ms_stats("reply", &reply);
    print_ms_stats("took", &took);
    nhb_sort_ns(polls.v, polls.n);
    printf(" polls_p50=%lld errors=%zu\n", (long long)nhb_pct(polls.v, polls.n, 50), errors);
    fflush(stdout);
    free(serving.v);
    free(reply.v);
    free(took.v);
    free(polls.v);
    return errors ? 1 : 0;
}

/* ---- load mode ------------------------------------------------------------------------------ */

enum { PH_WARMUP = -1, PH_A1 = 0, PH_B = 1, PH_A2 = 2, N_PHASES = 3 };
static const char *const phase_names[N_PHASES] = {"A1", "B", "A2"};

typedef struct phase_rec {
    int64_t *lat; /* round trips (ns) of the calls issued in the phase that succeeded */
    size_t count, cap;
    size_t errors;
} phase_rec;

/* Owner-thread state of the closed loop. */
typedef struct load {
    nh_qc_opts qc;
    int64_t t_start, t_end; /* A1 starts, A2 ends */
    int64_t phase_ns;
    phase_rec ph[N_PHASES];
    int64_t *issued; /* per slot */
    uint64_t seq;    /* writes issued (the Time of the next one) */
    size_t outstanding;
    size_t printed;
    size_t issue_errors;
    bool finished;
    int64_t drain_deadline;
    uint8_t *req;
    char *value;
    sem_t done;
} load;

static load L;

/* Which phase a time is in (-1 before A1 or after A2's end). */
static int phase_of(int64_t t) {
    if (t < L.t_start || t >= L.t_end) return PH_WARMUP;
    int p = (int)((t - L.t_start) / L.phase_ns);
    return p < N_PHASES ? p : N_PHASES - 1;
}

static void phase_add(phase_rec *r, int64_t v) {
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4096;
        int64_t *nv = realloc(r->lat, cap * sizeof *nv);
        if (!nv) {
            r->errors++;
            return;
        }
        r->lat = nv;
        r->cap = cap;
    }
    r->lat[r->count++] = v;
}

/* proto.WriteRequest{Key, Value, Time{seconds}}. */
static size_t encode_write(uint8_t *out, uint64_t seq) {
    char key[32];
    int kl = snprintf(key, sizeof key, "k%zu", (size_t)(seq % o.keys));
    size_t n = 0;
    out[n++] = 0x0a; /* Key: field 1, length-delimited */
    n += nhb_put_varint(out + n, (uint64_t)kl);
    memcpy(out + n, key, (size_t)kl);
    n += (size_t)kl;
    if (o.payload) {
        out[n++] = 0x12; /* Value: field 2 */
        n += nhb_put_varint(out + n, o.payload);
        memcpy(out + n, L.value, o.payload);
        n += o.payload;
    }
    uint8_t ts[16];
    size_t tl = 0;
    ts[tl++] = 0x08; /* Timestamp.seconds: field 1, varint */
    tl += nhb_put_varint(ts + tl, seq + 1);
    out[n++] = 0x1a; /* Time: field 3 */
    n += nhb_put_varint(out + n, tl);
    memcpy(out + n, ts, tl);
    return n + tl;
}

/* A WriteResponse: only field 1 (bool New), or nothing. */
static bool write_reply_ok(const uint8_t *p, size_t n) {
    const uint8_t *end = p + n;
    nhb_pb_field f;
    int rc;
    while ((rc = nhb_pb_next(&p, end, &f)) == 1)
        if (f.number == 1 && f.wire != 0) return false;
    return rc == 0;
}

static void load_finish(void) {
    if (L.finished) return;
    L.finished = true;
    sem_post(&L.done);
}

static void issue(size_t slot);

static void on_write(const nh_qc_result *r, void *user) {
    size_t slot = (size_t)(uintptr_t)user;
    int64_t now = nhb_now_ns(), at = L.issued[slot];
    L.outstanding--;
    int p = phase_of(at);
    bool ok = r->err.code == NH_OK && write_reply_ok(r->value, r->value_len);
    if (!ok) {
        if (p >= 0) L.ph[p].errors++;
        if (L.printed++ < MAX_PRINTED_ERRORS)
            fprintf(stderr,
                    "reload_bench: failed call (phase %s, issued at +%.3f s, after %.3f ms): %s\n",
                    p >= 0 ? phase_names[p] : "warm-up", (double)(at - L.t_start) / 1e9,
                    ms(now - at),
                    r->err.code == NH_OK ? "the reply does not decode" : r->err.message);
    } else if (p >= 0) {
        phase_add(&L.ph[p], now - at);
    }
    if (!L.finished && now < L.t_end)
        issue(slot);
    else if (L.outstanding == 0)
        load_finish();
}

static void issue(size_t slot) {
    nh_error err;
    size_t len = encode_write(L.req, L.seq++);
    L.issued[slot] = nhb_now_ns();
    L.outstanding++;
    if (nh_quorum_call_async(cfg, M_WRITEQC, L.req, len, &L.qc, on_write, (void *)(uintptr_t)slot,
                             &err) != 0) {
        L.outstanding--;
        L.issue_errors++;
        if (L.printed++ < MAX_PRINTED_ERRORS)
            fprintf(stderr, "reload_bench: call refused: %s\n", err.message);
    }
}

static void start_task(void *arg) {
    (void)arg;
    for (size_t i = 0; i < o.concurrent; i++)
        issue(i);
    if (L.outstanding == 0) load_finish();
}

/* Ends a run whose calls stopped completing (posted every 100 ms). */
static void check_task(void *arg) {
    (void)arg;
    int64_t now = nhb_now_ns();
    if (L.finished || now < L.t_end) return;
    if (!L.drain_deadline) L.drain_deadline = now + 10000000000LL;
    if (now > L.drain_deadline) {
        fprintf(stderr, "reload_bench: %zu call(s) never completed\n", L.outstanding);
        L.issue_errors += L.outstanding;
        load_finish();
    }
}

static void post_check(void *arg) {
    nh_runtime_post(arg, check_task, NULL);
}

/* The reloading thread of phase B. */
typedef struct reloads {
    pthread_t thread;
    sem_t replies;
    size_t rounds, sent, unchanged;
    _Atomic size_t failed; /* the reload thread and the owner thread */
    samples took;
    char first_error[NH_ERROR_MESSAGE_MAX];
} reloads;

static reloads R;

/* Owner thread: one node's ReloadResponse{reload = 1, changed = 2, took_ns = 3, ...}. */
static void on_reload(const nh_reply *r, void *user) {
    (void)user;
    if (r->err.code != NH_OK) {
        if (!R.failed++) snprintf(R.first_error, sizeof R.first_error, "%s", r->err.message);
    } else {
        const uint8_t *p = r->payload, *end = r->payload + r->len;
        nhb_pb_field f;
        uint64_t changed = 0;
        int64_t took = 0;
        while (nhb_pb_next(&p, end, &f) == 1) {
            if (f.number == 2 && f.wire == 0) changed = f.v;
            if (f.number == 3 && f.wire == 0) took = (int64_t)f.v;
        }
        if (changed != 1) R.unchanged++;
        add_sample(&R.took, took);
    }
    sem_post(&R.replies);
}

static void *reload_thread(void *arg) {
    int cur = *(int *)arg;
    int64_t b_start = L.t_start + L.phase_ns, b_end = b_start + L.phase_ns;
    int64_t period = (int64_t)(o.reload_ms * 1e6);
    int64_t next = b_start;
    sleep_ns(next - nhb_now_ns());
    while (nhb_now_ns() < b_end) {
        int nb = 1 - cur;
        if (install_build(nb) != 0) {
            R.failed++;
            break;
        }
        size_t started = 0;
        for (size_t i = 0; i < o.n; i++) {
            nh_error err;
            nh_call_opts co = {.timeout_ms = 20000};
            if (nh_rpc_async(nh_config_node(cfg, i), NH_ADMIN_RELOAD_METHOD, NULL, 0, &co,
                             on_reload, NULL, &err) == 0)
                started++;
            else if (!R.failed++)
                snprintf(R.first_error, sizeof R.first_error, "%s", err.message);
        }
        R.sent += started;
        for (size_t i = 0; i < started; i++)
            while (sem_wait(&R.replies) != 0) {
            }
        R.rounds++;
        cur = nb;
        next += period;
        int64_t now = nhb_now_ns();
        if (next < now) next = now;
        if (next >= b_end) break;
        sleep_ns(next - now);
    }
    return NULL;
}

/* Servers' CPU time (--pids) at the phase boundaries: cpu[k] at the start of phase k, cpu[3]
 * at the end of A2. */
static double srv_cpu[N_PHASES + 1];

static double servers_cpu_s(void) {
    double sum = 0;
    for (size_t i = 0; i < o.n_pids; i++) {
        double c = nhb_proc_cpu_s((int)o.pids[i]);
        if (c < 0) return -1;
        sum += c;
    }
    return sum;
}

static void *cpu_thread(void *arg) {
    (void)arg;
    for (int k = 0; k <= N_PHASES; k++) {
        sleep_ns(L.t_start + k * L.phase_ns - nhb_now_ns());
        srv_cpu[k] = servers_cpu_s();
    }
    return NULL;
}

static void print_phase(int p) {
    phase_rec *r = &L.ph[p];
    nhb_sort_ns(r->lat, r->count);
    double secs = (double)L.phase_ns / 1e9;
    double cpu =
        o.n_pids && srv_cpu[p] >= 0 && srv_cpu[p + 1] >= 0 ? srv_cpu[p + 1] - srv_cpu[p] : -1;
    printf("phase=%s ops_per_s=%.1f p50_us=%.1f p99_us=%.1f max_us=%.1f count=%zu errors=%zu "
           "srv_cpu_pct=%.1f srv_cpu_us_per_op=%.1f\n",
           phase_names[p], (double)r->count / secs, (double)nhb_pct(r->lat, r->count, 50) / 1e3,
           (double)nhb_pct(r->lat, r->count, 99) / 1e3,
           r->count ? (double)r->lat[r->count - 1] / 1e3 : 0.0, r->count, r->errors,
           cpu >= 0 ? 100 * cpu / secs : -1,
           cpu >= 0 && r->count ? cpu * 1e6 / (double)r->count : -1);
}

static int run_load(void) {
    int cur = current_build();
    if (cur < 0) return 1;
    L.req = malloc(o.payload + 64);
    L.value = malloc(o.payload ? o.payload : 1);
    L.issued = calloc(o.concurrent, sizeof *L.issued);
    if (!L.req || !L.value || !L.issued) return 1;
    memset(L.value, 'v', o.payload);
    L.qc.quorum.kind = NH_QUORUM_THRESHOLD;
    L.qc.quorum.threshold = o.quorum;
    L.qc.call.timeout_ms = 10000;
    sem_init(&L.done, 0, 0);
    sem_init(&R.replies, 0, 0);
    L.phase_ns = (int64_t)(o.seconds * 1e9);
    L.t_start = nhb_now_ns() + (int64_t)(o.warmup * 1e9);
    L.t_end = L.t_start + N_PHASES * L.phase_ns;
    pthread_t cpu_tid;
    if (pthread_create(&cpu_tid, NULL, cpu_thread, NULL) != 0 ||
        pthread_create(&R.thread, NULL, reload_thread, &cur) != 0 ||
        nh_runtime_post(rt, start_task, NULL) != 0) {
        fprintf(stderr, "reload_bench: cannot start\n");
        return 1;
    }
    nhb_wait_done(&L.done, post_check, rt);
    pthread_join(R.thread, NULL);
    pthread_join(cpu_tid, NULL);
    size_t errors = L.issue_errors + R.failed + R.unchanged;
    for (int p = 0; p < N_PHASES; p++) {
        print_phase(p);
        errors += L.ph[p].errors;
    }
    nhb_sort_ns(R.took.v, R.took.n);
    printf("reloads rounds=%zu replies=%zu failed=%zu unchanged=%zu", R.rounds, R.took.n, R.failed,
           R.unchanged);
    print_ms_stats("took", &R.took);
    printf("\n");
    if (R.failed) fprintf(stderr, "reload_bench: a reload failed: %s\n", R.first_error);
    /* The state must have followed the generations: every node still holds every key. */
    for (size_t i = 0; i < o.n; i++) {
        info in;
        nh_error err;
        if (get_info(nh_config_node(cfg, i), &in, &err) != 0) {
            fprintf(stderr, "reload_bench: %s: Info: %s\n", o.servers[i], err.message);
            errors++;
            continue;
        }
        printf("node addr=%s version=%s generation=%llu keys=%llu\n", o.servers[i], in.version,
               (unsigned long long)in.generation, (unsigned long long)in.keys);
        uint64_t want = L.seq < o.keys ? L.seq : o.keys;
        if (in.keys != want) {
            fprintf(stderr, "reload_bench: %s holds %llu keys, expected %llu\n", o.servers[i],
                    (unsigned long long)in.keys, (unsigned long long)want);
            errors++;
        }
    }
    fflush(stdout);
    for (int p = 0; p < N_PHASES; p++)
        free(L.ph[p].lat);
    free(R.took.v);
    free(L.req);
    free(L.value);
    free(L.issued);
    sem_destroy(&L.done);
    sem_destroy(&R.replies);
    return errors ? 1 : 0;
}

/* ---- arguments and main --------------------------------------------------------------------- */

static void usage(const char *prog) {
    fprintf(stderr,
            "usage: %s trigger --servers A,B,.. --plugin PATH --builds X.so,Y.so --versions VX,VY\n"
            "          [--via admin|sighup] [--pids P,P,..] [--rounds K] [--poll yes|no]\n"
            "       %s load --servers A,B,.. --plugin PATH --builds X.so,Y.so --versions VX,VY\n"
            "          [--concurrent C] [--seconds S] [--warmup W] [--reload-ms R] [--quorum Q]\n"
            "          [--keys N] [--payload B] [--pids P,P,..]\n",
            prog, prog);
}

static int parse_pair(char *val, const char **out, const char *opt) {
    if (nhb_split_list(val, out, 2) != 2) {
        fprintf(stderr, "%s needs two comma-separated values\n", opt);
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv) {
    o = (rb_opts){.rounds = 30,
                  .concurrent = 1,
                  .seconds = 5,
                  .warmup = 1,
                  .reload_ms = 200,
                  .keys = 64,
                  .payload = 16};
    if (argc < 2 || (strcmp(argv[1], "trigger") && strcmp(argv[1], "load"))) return -1;
    o.load = !strcmp(argv[1], "load");
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "option %s needs a value\n", opt);
            return -1;
        }
        char *val = argv[++i];
        if (!strcmp(opt, "--servers")) {
            int n = nhb_split_list(val, o.servers, MAX_NODES);
            if (n <= 0) return -1;
            o.n = (size_t)n;
        } else if (!strcmp(opt, "--pids")) {
            int n = nhb_parse_pids(val, o.pids, MAX_NODES);
            if (n <= 0) return -1;
            o.n_pids = (size_t)n;
        } else if (!strcmp(opt, "--plugin")) {
            o.plugin = val;
        } else if (!strcmp(opt, "--builds")) {
            if (parse_pair(val, o.builds, opt) != 0) return -1;
        } else if (!strcmp(opt, "--versions")) {
            if (parse_pair(val, o.versions, opt) != 0) return -1;
        } else if (!strcmp(opt, "--via")) {
            if (strcmp(val, "admin") && strcmp(val, "sighup")) {
                fprintf(stderr, "--via must be admin or sighup\n");
                return -1;
            }
            o.sighup = !strcmp(val, "sighup");
        } else if (!strcmp(opt, "--poll")) {
            if (strcmp(val, "yes") && strcmp(val, "no")) {
                fprintf(stderr, "--poll must be yes or no\n");
                return -1;
            }
            o.no_poll = !strcmp(val, "no");
        } else {
            double v;
            if (!nhb_parse_num(val, &v)) {
                fprintf(stderr, "option %s needs a non-negative number\n", opt);
                return -1;
            }
            if (!strcmp(opt, "--rounds"))
                o.rounds = (size_t)v;
            else if (!strcmp(opt, "--concurrent"))
                o.concurrent = (size_t)v;
            else if (!strcmp(opt, "--seconds"))
                o.seconds = v;
            else if (!strcmp(opt, "--warmup"))
                o.warmup = v;
            else if (!strcmp(opt, "--reload-ms"))
                o.reload_ms = v;
            else if (!strcmp(opt, "--quorum"))
                o.quorum = (size_t)v;
            else if (!strcmp(opt, "--keys"))
                o.keys = (size_t)v;
            else if (!strcmp(opt, "--payload"))
                o.payload = (size_t)v;
            else {
                fprintf(stderr, "unknown option %s\n", opt);
                return -1;
            }
        }
    }
    if (!o.n || !o.plugin || !o.builds[0] || !o.versions[0]) {
        fprintf(stderr, "--servers, --plugin, --builds and --versions are required\n");
        return -1;
    }
    if (o.no_poll && o.sighup) {
        fprintf(stderr, "--poll no needs --via admin\n");
        return -1;
    }
    if (o.sighup && o.n_pids != o.n) {
        fprintf(stderr, "--via sighup needs --pids, one per server\n");
        return -1;
    }
    if (o.concurrent == 0 || o.seconds <= 0 || o.keys == 0 || o.payload > 65536) {
        fprintf(stderr, "--concurrent, --seconds and --keys must be above 0, --payload at most "
                        "65536\n");
        return -1;
    }
    if (o.quorum == 0 || o.quorum > o.n) o.quorum = o.n / 2 + 1;
    return 0;
}

int main(int argc, char **argv) {
    if (parse_args(argc, argv) != 0) {
        usage(argv[0]);
        return 2;
    }
    nh_error err;
    nh_runtime_opts ro = {.name = "reload-bench"};
    if (nh_runtime_new(&ro, &rt, &err) != 0) {
        fprintf(stderr, "reload_bench: %s\n", err.message);
        return 1;
    }
    nh_config_opts co = {.addresses = o.servers, .count = o.n};
    if (nh_config_new(rt, &co, &cfg, &err) != 0) {
        fprintf(stderr, "reload_bench: %s\n", err.message);
        nh_runtime_free(rt);
        return 1;
    }
    int rc = o.load ? run_load() : run_trigger();
    nh_config_unref(cfg);
    nh_runtime_free(rt);
    return rc;
}
