/* The quorum-call benchmark: Gorums' cmd/benchmark "QuorumCall" (an echo quorum call with
 * Threshold(q)) made through the public SDK. One runtime, one configuration of N servers
 * (nh_config_new), and C quorum calls kept in flight with nh_quorum_call_async: each completion
 * callback (owner thread) records the round trip and issues the next call.
 *
 *   qc_bench --servers HOST:PORT,HOST:PORT,... [--config-size N] [--quorum-size Q]
 *            [--payload B] [--concurrent C] [--seconds S] [--warmup S] [--calls M]
 *            [--server-pids PID,PID,...] [--service echo|benchmark] [--method M]
 *            [--call quorum|multicast] [--op write|read] [--keys K]
 *            [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]
 *
 *   --config-size N   servers used, the first N of --servers (default: all of them)
 *   --quorum-size Q   NH_QUORUM_THRESHOLD with Q successes; default N/2 with a minimum of 1,
 *                     as Gorums' benchmark (not a majority); clamped to N
 *   --payload B       request bytes, all zero (Gorums' Echo payload; default 64)
 *   --concurrent C    quorum calls kept in flight (default 1)
 *   --seconds S       measured seconds (default 5)
 *   --warmup S        seconds run before measuring (default 1)
 *   --calls M         measure exactly M calls instead of a duration (for profiling)
 *   --server-pids P   server processes whose CPU time (/proc/<pid>/stat) is read at the start
 *                     and the end of the measured window
 *   --service S       what the servers are:
 *                     echo (default): the test echo service; the request is the payload itself,
 *                       sent to test.Echo.Raw, and a reply counts when it has the payload's
 *                       length;
 *                     benchmark: Gorums' benchmark service (spec Appendix A); the request is
 *                       benchmark.Echo{bytes payload = 1} (encoded here: 0x0a, varint length,
 *                       bytes), sent to benchmark.Benchmark.QuorumCall, and a reply counts when
 *                       it decodes as an Echo whose payload equals the request's
 *                     storage: the storage plugin (plugins/storage, package proto); the
 *                       calls are proto.Storage.WriteQC (--op write, default) or ReadQC
 *                       (--op read). A write is WriteRequest{Key, Value, Time} (encoded here):
 *                       Key "k<i mod K>", Value --payload bytes of 'v', Time a Timestamp that
 *                       grows by 1 ns with every call (so every write is newer than the key's
 *                       last one and really stored); a reply counts when it decodes as a
 *                       WriteResponse{New}. Replies with New = false are counted and printed
 *                       on stderr (stale: nothing was stored). A read is ReadRequest{Key} over
 *                       the K keys in turn, which are written first (blocking WriteQC to all
 *                       nodes, before the clock starts); a reply counts when it decodes as a
 *                       ReadResponse with OK = true and a Value of --payload bytes
 *   --op write|read   (with --service storage) which quorum call
 *   --keys K          (with --service storage) distinct keys used (default 100)
 *   --tls-ca FILE     connect with TLS: every server's certificate must be signed by this CA
 *                     bundle (PEM); the servers are given as an address list, so any
 *                     certificate the CA signed is accepted (no node identity is checked)
 *   --tls-cert FILE   present this client certificate (PEM) and its key (servers with
 *   --tls-key FILE    `clients: require` need one); both need --tls-ca
 *   --method M        the method called instead of the service's (for example the benchmark
 *                     encoding sent to an echo server's test.Echo.Raw, which echoes it as is)
 *   --call multicast  (with --service benchmark) one-way benchmark.Benchmark.Multicast with
 *                     TimedMsg{int64 send_time = 1; bytes payload = 2} (send_time: Unix ns at
 *                     issue) instead of quorum calls. C multicasts are kept in flight; one
 *                     completes when its sends to all N nodes were confirmed by the transport
 *                     (nh_multicast_async's done), which is what p50/p99 measure. The servers'
 *                     statistics are reset with StartServerBenchmark at the start of the
 *                     window and read with StopServerBenchmark after it; each node's Result is
 *                     printed on its own line (see below).
 *
 * Prints one line:
 *   ops_per_s=<f> p50_us=<f> p99_us=<f> cpu_us_per_op=<f> srv_cpu_us_per_op=<f> count=<n>
 *   errors=<n> config_size=<n> quorum_size=<n> concurrent=<n>
 * cpu_us_per_op is this process's CPU time (getrusage, user + system, all threads) over the
 * measured window divided by the calls completed in it; srv_cpu_us_per_op is the same for the
 * sum of the --server-pids processes (-1 without them).
 * With --call multicast, then one line per node (its StopServerBenchmark Result):
 *   server node=<id> total_ops=<n> total_time_s=<f> throughput=<f> latency_avg_us=<f>
 *   latency_sd_us=<f>
 * (latency: the server's CLOCK_REALTIME at receipt minus send_time, i.e. one-way). */
#include "bench_common.h"

#include <nodehost/nodehost.h>

#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_SERVERS 64

#define BENCH_QUORUMCALL "benchmark.Benchmark.QuorumCall"
#define BENCH_MULTICAST  "benchmark.Benchmark.Multicast"
#define BENCH_START      "benchmark.Benchmark.StartServerBenchmark"
#define BENCH_STOP       "benchmark.Benchmark.StopServerBenchmark"
#define STORAGE_WRITEQC  "proto.Storage.WriteQC"
#define STORAGE_READQC   "proto.Storage.ReadQC"

typedef enum { SVC_ECHO, SVC_BENCHMARK, SVC_STORAGE } qb_service;

typedef struct qb_args {
    const char *servers[MAX_SERVERS];
    size_t n_servers;
    pid_t pids[MAX_SERVERS];
    size_t n_pids;
    size_t config_size; /* 0 = all servers */
    size_t quorum;      /* 0 = Gorums' default */
    qb_service service;
    const char *method; /* NULL = the service's */
    bool multicast;
    bool read;                               /* storage: ReadQC instead of WriteQC */
    size_t keys;                             /* storage: distinct keys */
    const char *tls_ca, *tls_cert, *tls_key; /* --tls-ca/--tls-cert/--tls-key (NULL: none) */
    nhb_args a;                              /* inflight = --concurrent, messages = --calls */
} qb_args;

/* Owner-thread state (written only there after the start task was posted). */
typedef struct bench {
    qb_args q;
    nh_config *cfg;
    nh_qc_opts opts;
    uint8_t *payload; /* --payload zero bytes */
    uint8_t *req;     /* the encoded request (quorum calls), or scratch for TimedMsg */
    size_t req_len;
    nhb_rec rec;
    int64_t *issued; /* issue time per in-flight slot */
    size_t outstanding;
    size_t extra_errors;
    bool starting, finished;
    int64_t drain_deadline;
    /* CPU over the measured window: sampled at the first completion inside it and at its end */
    bool cpu_started;
    double cpu0, srv0, cpu1, srv1;
    char first_error[NH_ERROR_MESSAGE_MAX];
    sem_t done;
    /* storage: calls issued (key index and timestamp offset), base time, stale write replies */
    uint64_t seq;
    int64_t time0;
    size_t stale, writes;
} bench;

static bench g;

/* ---- CPU time ----------------------------------------------------------------------------- */

static double self_cpu_s(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double servers_cpu_s(void) {
    double sum = 0;
    for (size_t i = 0; i < g.q.n_pids; i++) {
        double s = nhb_proc_cpu_s((int)g.q.pids[i]);
        if (s < 0) return -1;
        sum += s;
    }
    return sum;
}

static void cpu_mark_start(void) {
    g.cpu_started = true;
    g.cpu0 = self_cpu_s();
    g.srv0 = g.q.n_pids ? servers_cpu_s() : -1;
}

static void cpu_mark_end(void) {
    g.cpu1 = self_cpu_s();
    g.srv1 = g.q.n_pids ? servers_cpu_s() : -1;
}

/* ---- result ------------------------------------------------------------------------------- */

static void report(void) {
    nhb_rec *r = &g.rec;
    double rate = nhb_rec_close(r);
    double ops = (double)r->count;
    double cpu = g.cpu_started && ops > 0 ? (g.cpu1 - g.cpu0) * 1e6 / ops : 0;
    double srv =
        g.cpu_started && ops > 0 && g.srv0 >= 0 && g.srv1 >= 0 ? (g.srv1 - g.srv0) * 1e6 / ops : -1;
    printf("ops_per_s=%.1f p50_us=%.1f p99_us=%.1f cpu_us_per_op=%.2f srv_cpu_us_per_op=%.2f "
           "count=%zu errors=%zu config_size=%zu quorum_size=%zu concurrent=%zu\n",
           rate, nhb_pct_us(r->samples, r->count, 50), nhb_pct_us(r->samples, r->count, 99), cpu,
           srv, r->count, r->errors + g.extra_errors, g.q.config_size, g.q.quorum, g.q.a.inflight);
    fflush(stdout);
    free(r->samples);
    r->samples = NULL;
}

static void finish(void) {
    if (g.finished) return;
    g.finished = true;
    if (!g.cpu_started) cpu_mark_start(); /* nothing completed in the window: report 0 */
    cpu_mark_end();
    if (g.first_error[0]) fprintf(stderr, "qc_bench: first error: %s\n", g.first_error);
    report();
    sem_post(&g.done);
}

/* ---- the benchmark service's messages (protobuf, encoded by hand) -------------------------- */

/* benchmark.Echo{payload}: empty when the payload is (proto3 implicit presence). */
static size_t encode_echo(uint8_t *out, const uint8_t *payload, size_t len) {
    if (len == 0) return 0;
    size_t n = 0;
    out[n++] = 0x0a; /* field 1, length-delimited */
    n += nhb_put_varint(out + n, len);
    memcpy(out + n, payload, len);
    return n + len;
}

/* benchmark.TimedMsg{send_time, payload}. */
static size_t encode_timed(uint8_t *out, int64_t send_time, const uint8_t *payload, size_t len) {
    size_t n = 0;
    if (send_time != 0) {
        out[n++] = 0x08; /* field 1, varint (int64: two's complement as uint64) */
        n += nhb_put_varint(out + n, (uint64_t)send_time);
    }
    if (len > 0) {
        out[n++] = 0x12; /* field 2, length-delimited */
        n += nhb_put_varint(out + n, len);
        memcpy(out + n, payload, len);
        n += len;
    }
    return n;
}

/* Largest encoding of a message with a payload of len bytes (tags, varints, send_time). */
static size_t encoded_max(size_t len) {
    return len + 64;
}

/* ---- the storage plugin's messages (package proto) ---------------------------------------- */

static size_t put_key(uint8_t *out, uint64_t i) {
    char key[32];
    int kl = snprintf(key, sizeof key, "k%llu", (unsigned long long)i);
    size_t n = 0;
    out[n++] = 0x0a; /* field 1 Key, length-delimited */
    n += nhb_put_varint(out + n, (uint64_t)kl);
    memcpy(out + n, key, (size_t)kl);
    return n + (size_t)kl;
}

/* proto.WriteRequest{Key = "k<key>", Value = len bytes of 'v', Time = unix ns t}. */
static size_t encode_write(uint8_t *out, uint64_t key, size_t len, int64_t t) {
    size_t n = put_key(out, key);
    if (len > 0) {
        out[n++] = 0x12; /* field 2 Value */
        n += nhb_put_varint(out + n, len);
        memset(out + n, 'v', len);
        n += len;
    }
    /* field 3 Time: google.protobuf.Timestamp{1: seconds int64, 2: nanos int32} */
    uint8_t ts[24];
    size_t tn = 0;
    int64_t sec = t / 1000000000, nanos = t % 1000000000;
    if (sec) {
        ts[tn++] = 0x08;
        tn += nhb_put_varint(ts + tn, (uint64_t)sec);
    }
    if (nanos) {
        ts[tn++] = 0x10;
        tn += nhb_put_varint(ts + tn, (uint64_t)nanos);
    }
    out[n++] = 0x1a;
    n += nhb_put_varint(out + n, tn);
    memcpy(out + n, ts, tn);
    return n + tn;
}

/* The next storage request of the run, into g.req (g.req_len). */
static void next_storage_request(void) {
    uint64_t i = g.seq++;
    if (g.q.read)
        g.req_len = put_key(g.req, i % g.q.keys);
    else
        g.req_len = encode_write(g.req, i % g.q.keys, g.q.a.payload, g.time0 + (int64_t)i);
}

/* WriteResponse{1: New bool} or ReadResponse{1: OK bool, 2: Value string, 3: Time}. */
static bool storage_reply_ok(const uint8_t *p, size_t n) {
    const uint8_t *end = p + n;
    bool flag = false;
    size_t vlen = 0;
    nhb_pb_field f;
    int rc;
    while ((rc = nhb_pb_next(&p, end, &f)) == 1) {
        if (f.number == 1) {
            if (f.wire != 0) return false;
            flag = f.v != 0;
        } else if (f.number == 2 && g.q.read) {
            if (f.wire != 2) return false;
            vlen = f.len;
        }
    }
    if (rc != 0) return false;
    if (g.q.read) return flag && vlen == g.q.a.payload;
    g.writes++;
    if (!flag) g.stale++;
    return true;
}

/* True when a reply decodes as benchmark.Echo and its payload equals the request's. Unknown
 * fields are skipped; when the payload field appears more than once, the last one counts (as
 * any protobuf parser does for a singular field). */
static bool echo_reply_ok(const uint8_t *p, size_t n) {
    const uint8_t *end = p + n;
    const uint8_t *data = NULL;
    size_t len = 0;
    nhb_pb_field f;
    int rc;
    while ((rc = nhb_pb_next(&p, end, &f)) == 1) {
        if (f.number != 1) continue;
        if (f.wire != 2) return false;
        data = f.data;
        len = f.len;
    }
    return rc == 0 && len == g.q.a.payload && (len == 0 || memcmp(data, g.payload, len) == 0);
}

static bool reply_ok(const uint8_t *value, size_t len) {
    if (g.q.service == SVC_BENCHMARK) return echo_reply_ok(value, len);
    if (g.q.service == SVC_STORAGE) return storage_reply_ok(value, len);
    return len == g.q.a.payload;
}

static int64_t unix_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Square root by Newton's method (the benchmarks are not linked with libm). */
static double root(double x) {
    if (!(x > 0)) return 0;
    double r = x > 1 ? x : 1;
    for (int i = 0; i < 200; i++) {
        double next = 0.5 * (r + x / r);
        if (next >= r) break;
        r = next;
    }
    return r;
}

static double as_double(uint64_t bits) {
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* Prints one node's StopServerBenchmark reply (benchmark.Result). Returns 0, or -1 when it does
 * not decode. */
static int print_result(uint32_t node_id, const uint8_t *p, size_t n) {
    const uint8_t *end = p + n;
    uint64_t total_ops = 0;
    int64_t total_time = 0;
    double throughput = 0, lat_avg = 0, lat_var = 0;
    nhb_pb_field f;
    int rc;
    while ((rc = nhb_pb_next(&p, end, &f)) == 1) {
        if (f.number == 2 && f.wire == 0) total_ops = f.v;
        if (f.number == 3 && f.wire == 0) total_time = (int64_t)f.v;
        if (f.number == 4 && f.wire == 1) throughput = as_double(f.v);
        if (f.number == 5 && f.wire == 1) lat_avg = as_double(f.v);
        if (f.number == 6 && f.wire == 1) lat_var = as_double(f.v);
    }
    if (rc != 0) return -1;
    printf("server node=%u total_ops=%llu total_time_s=%.3f throughput=%.1f latency_avg_us=%.1f "
           "latency_sd_us=%.1f\n",
           node_id, (unsigned long long)total_ops, (double)total_time / 1e9, throughput,
           lat_avg / 1000.0, root(lat_var) / 1000.0);
    return 0;
}

/* A blocking call of method to every node (Start/StopServerBenchmark, whose requests are empty
 * messages). With print, each node's reply is printed as a Result. Returns 0 or -1. */
static int call_all(const char *method, bool print) {
    nh_qc_opts all = {.quorum = {.kind = NH_QUORUM_ALL}, .call = {.timeout_ms = 5000}};
    nh_qc_outcome out = {0};
    nh_error err;
    int rc = nh_quorum_call(g.cfg, method, NULL, 0, &all, &out, &err);
    if (rc != 0) fprintf(stderr, "qc_bench: %s: %s\n", method, err.message);
    for (size_t i = 0; rc == 0 && print && i < out.n_replies; i++) {
        const nh_node_reply *r = &out.replies[i];
        if (print_result(r->node_id, r->payload, r->len) != 0) {
            fprintf(stderr, "qc_bench: node %u: %s: the reply is not a benchmark.Result\n",
                    r->node_id, method);
            rc = -1;
        }
    }
    nh_qc_outcome_free(&out);
    return rc;
}

/* ---- the calls ---------------------------------------------------------------------------- */

static void issue(size_t slot);

static void note_error(const char *text) {
    if (!g.first_error[0]) snprintf(g.first_error, sizeof g.first_error, "%s", text);
}

/* Records one completion (quorum call or multicast) and issues the slot's next call. */
static void completed(size_t slot, bool ok) {
    /* The window's CPU clock starts with the first completion inside it. Read the time first:
     * nhb_rec_complete reads it again, so a completion at the boundary is never missed. */
    if (!g.cpu_started && nhb_now_ns() >= g.rec.t_measure) cpu_mark_start();
    bool more = nhb_rec_complete(&g.rec, g.issued[slot], ok);
    /* A failed slot is not re-issued: a failing configuration would otherwise loop on it. */
    if (more && ok) issue(slot);
    if (g.outstanding == 0 && !g.starting) finish();
}

static void on_done(const nh_qc_result *r, void *user) {
    size_t slot = (size_t)(uintptr_t)user;
    g.outstanding--;
    if (g.finished) return;
    bool ok = r->err.code == NH_OK && reply_ok(r->value, r->value_len);
    if (!ok && r->err.code != NH_OK) {
        note_error(r->err.message);
    } else if (!ok) {
        char text[80];
        snprintf(text, sizeof text, "value of %zu bytes%s", r->value_len,
                 g.q.service == SVC_BENCHMARK ? " is not the request's benchmark.Echo"
                 : g.q.service == SVC_STORAGE ? " is not the expected storage reply"
                                              : "");
        note_error(text);
    }
    completed(slot, ok);
}

static void on_mc_done(const nh_error *err, void *user) {
    size_t slot = (size_t)(uintptr_t)user;
    g.outstanding--;
    if (g.finished) return;
    bool ok = err->code == NH_OK;
    if (!ok) note_error(err->message);
    completed(slot, ok);
}

static void issue(size_t slot) {
    g.issued[slot] = nhb_now_ns();
    g.outstanding++;
    nh_error err;
    int rc;
    if (g.q.multicast) {
        /* send_time is taken per message, as Gorums' client does. */
        size_t n = encode_timed(g.req, unix_ns(), g.payload, g.q.a.payload);
        rc = nh_multicast_async(g.cfg, g.q.method, g.req, n, &g.opts, on_mc_done,
                                (void *)(uintptr_t)slot, &err);
    } else {
        if (g.q.service == SVC_STORAGE) next_storage_request();
        rc = nh_quorum_call_async(g.cfg, g.q.method, g.req, g.req_len, &g.opts, on_done,
                                  (void *)(uintptr_t)slot, &err);
    }
    if (rc != 0) {
        g.outstanding--;
        g.extra_errors++;
        note_error(err.message);
    }
}

static void start_task(void *arg) {
    (void)arg;
    g.starting = true;
    for (size_t i = 0; i < g.q.a.inflight; i++)
        issue(i);
    g.starting = false;
    if (g.outstanding == 0) finish();
}

/* Posted periodically: ends a run whose answers stopped coming, and ends the CPU window at
 * the end of the measurement even while calls are still draining. */
static void check_task(void *arg) {
    (void)arg;
    if (g.finished || !nhb_rec_over(&g.rec)) return;
    int64_t now = nhb_now_ns();
    if (!g.drain_deadline) g.drain_deadline = now + 5000000000LL;
    if (g.outstanding == 0 || now > g.drain_deadline) {
        g.extra_errors += g.outstanding; /* never answered */
        finish();
    }
}

/* nhb_wait_done's tick: asks the owner thread to check for a stalled run. */
static void post_check(void *rt) {
    nh_runtime_post(rt, check_task, NULL);
}

/* ---- arguments ---------------------------------------------------------------------------- */

static void usage(const char *prog) {
    fprintf(stderr,
            "usage: %s --servers HOST:PORT,... [--config-size N] [--quorum-size Q]"
            " [--payload B]\n"
            "       [--concurrent C] [--seconds S] [--warmup S] [--calls M]"
            " [--server-pids PID,...]\n"
            "       [--service echo|benchmark|storage] [--method M] [--call quorum|multicast]\n"
            "       [--op write|read] [--keys K]\n"
            "       [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]\n",
            prog);
}

static int parse_args(int argc, char **argv, qb_args *q) {
    *q = (qb_args){.a = {.inflight = 1, .seconds = 5, .warmup = 1, .payload = 64}};
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "option %s needs a value\n", opt);
            return -1;
        }
        char *val = argv[++i];
        if (!strcmp(opt, "--servers")) {
            int n = nhb_split_list(val, q->servers, MAX_SERVERS);
            if (n <= 0) {
                fprintf(stderr, "--servers needs 1 to %d addresses\n", MAX_SERVERS);
                return -1;
            }
            q->n_servers = (size_t)n;
            continue;
        }
        if (!strcmp(opt, "--server-pids")) {
            int n = nhb_parse_pids(val, q->pids, MAX_SERVERS);
            if (n <= 0) {
                fprintf(stderr, "--server-pids needs 1 to %d process IDs\n", MAX_SERVERS);
                return -1;
            }
            q->n_pids = (size_t)n;
            continue;
        }
        if (!strcmp(opt, "--service")) {
            if (!strcmp(val, "echo"))
                q->service = SVC_ECHO;
            else if (!strcmp(val, "benchmark"))
                q->service = SVC_BENCHMARK;
            else if (!strcmp(val, "storage"))
                q->service = SVC_STORAGE;
            else {
                fprintf(stderr, "--service must be echo, benchmark or storage\n");
                return -1;
            }
            continue;
        }
        if (!strcmp(opt, "--op")) {
            if (strcmp(val, "write") && strcmp(val, "read")) {
                fprintf(stderr, "--op must be write or read\n");
                return -1;
            }
            q->read = !strcmp(val, "read");
            continue;
        }
        if (!strcmp(opt, "--method")) {
            q->method = val;
            continue;
        }
        if (!strcmp(opt, "--tls-ca") || !strcmp(opt, "--tls-cert") || !strcmp(opt, "--tls-key")) {
            const char **to = !strcmp(opt, "--tls-ca")     ? &q->tls_ca
                              : !strcmp(opt, "--tls-cert") ? &q->tls_cert
                                                           : &q->tls_key;
            *to = val;
            continue;
        }
        if (!strcmp(opt, "--call")) {
            if (strcmp(val, "quorum") && strcmp(val, "multicast")) {
                fprintf(stderr, "--call must be quorum or multicast\n");
                return -1;
            }
            q->multicast = !strcmp(val, "multicast");
            continue;
        }
        double v;
        if (!nhb_parse_num(val, &v)) {
            fprintf(stderr, "option %s needs a non-negative number\n", opt);
            return -1;
        }
        if (!strcmp(opt, "--config-size"))
            q->config_size = (size_t)v;
        else if (!strcmp(opt, "--quorum-size"))
            q->quorum = (size_t)v;
        else if (!strcmp(opt, "--payload"))
            q->a.payload = (size_t)v;
        else if (!strcmp(opt, "--concurrent"))
            q->a.inflight = (size_t)v;
        else if (!strcmp(opt, "--seconds"))
            q->a.seconds = v;
        else if (!strcmp(opt, "--warmup"))
            q->a.warmup = v;
        else if (!strcmp(opt, "--calls"))
            q->a.messages = (size_t)v;
        else if (!strcmp(opt, "--keys"))
            q->keys = (size_t)v;
        else {
            fprintf(stderr, "unknown option %s\n", opt);
            return -1;
        }
    }
    if (q->n_servers == 0) {
        fprintf(stderr, "missing --servers\n");
        return -1;
    }
    if (q->config_size == 0 || q->config_size > q->n_servers) q->config_size = q->n_servers;
    /* Gorums' benchmark: NumNodes/2, at least 1, at most the configuration size. */
    if (q->quorum == 0) q->quorum = q->config_size / 2 ? q->config_size / 2 : 1;
    if (q->quorum > q->config_size) q->quorum = q->config_size;
    if (q->a.inflight == 0 || (q->a.seconds <= 0 && q->a.messages == 0)) {
        fprintf(stderr, "--concurrent must be at least 1 and --seconds above 0\n");
        return -1;
    }
    if (q->multicast && q->service != SVC_BENCHMARK) {
        fprintf(stderr, "--call multicast needs --service benchmark\n");
        return -1;
    }
    if (q->keys == 0) q->keys = 100;
    if ((q->tls_cert || q->tls_key) && !q->tls_ca) {
        fprintf(stderr, "--tls-cert and --tls-key need --tls-ca\n");
        return -1;
    }
    if (!q->tls_cert != !q->tls_key) {
        fprintf(stderr, "--tls-cert and --tls-key go together\n");
        return -1;
    }
    if (q->multicast && q->service == SVC_STORAGE) {
        fprintf(stderr, "--call multicast needs --service benchmark\n");
        return -1;
    }
    if (!q->method && q->service == SVC_STORAGE)
        q->method = q->read ? STORAGE_READQC : STORAGE_WRITEQC;
    if (!q->method)
        q->method = q->service == SVC_ECHO ? NHB_METHOD
                    : q->multicast         ? BENCH_MULTICAST
                                           : BENCH_QUORUMCALL;
    q->a.target = q->servers[0];
    return 0;
}

/* ---- main --------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    if (parse_args(argc, argv, &g.q) != 0) {
        usage(argv[0]);
        return 2;
    }
    g.payload = calloc(1, g.q.a.payload ? g.q.a.payload : 1); /* zeros, as Gorums' Echo */
    g.req = malloc(encoded_max(g.q.a.payload));
    g.issued = calloc(g.q.a.inflight, sizeof *g.issued);
    if (!g.payload || !g.req || !g.issued) return 1;
    g.time0 = unix_ns();
    if (g.q.service == SVC_BENCHMARK)
        g.req_len = encode_echo(g.req, g.payload, g.q.a.payload);
    else if (g.q.service == SVC_STORAGE)
        next_storage_request();
    else
        memcpy(g.req, g.payload, g.req_len = g.q.a.payload);
    sem_init(&g.done, 0, 0);
    g.opts.quorum.kind = NH_QUORUM_THRESHOLD;
    g.opts.quorum.threshold = g.q.quorum;

    nh_error err;
    nh_tls *tls = NULL;
    if (g.q.tls_ca) {
        nh_tls_opts to = {
            .ca_file = g.q.tls_ca, .cert_file = g.q.tls_cert, .key_file = g.q.tls_key};
        if (nh_tls_new(&to, &tls, NULL, &err) != 0) {
            fprintf(stderr, "qc_bench: %s\n", err.message);
            return 1;
        }
    }
    nh_runtime *rt;
    nh_runtime_opts ro = {.name = "qc-bench"};
    if (nh_runtime_new(&ro, &rt, &err) != 0) {
        fprintf(stderr, "qc_bench: %s\n", err.message);
        nh_tls_unref(tls);
        return 1;
    }
    nh_config_opts co = {.addresses = g.q.servers, .count = g.q.config_size, .tls = tls};
    int cfg_rc = nh_config_new(rt, &co, &g.cfg, &err);
    nh_tls_unref(tls); /* the configuration's node registry keeps its own reference */
    if (cfg_rc != 0) {
        fprintf(stderr, "qc_bench: %s\n", err.message);
        nh_runtime_free(rt);
        return 1;
    }
    /* One blocking call that every node must answer proves the connections before the clock
     * starts (for multicasts: StartServerBenchmark, whose request is empty). */
    nh_qc_opts all = {.quorum = {.kind = NH_QUORUM_ALL}, .call = {.timeout_ms = 2000}};
    const char *probe = g.q.multicast ? BENCH_START : g.q.method;
    size_t probe_len = g.q.multicast ? 0 : g.req_len;
    int rc = -1;
    for (int attempt = 0; attempt < 50 && rc != 0; attempt++) {
        rc = nh_quorum_call(g.cfg, probe, g.req, probe_len, &all, NULL, &err);
        if (rc != 0) usleep(100000);
    }
    /* Reads: every key is written first (to every node, before the clock starts). */
    if (rc == 0 && g.q.service == SVC_STORAGE && g.q.read) {
        for (size_t k = 0; k < g.q.keys && rc == 0; k++) {
            size_t n = encode_write(g.req, k, g.q.a.payload, g.time0 + (int64_t)k);
            rc = nh_quorum_call(g.cfg, STORAGE_WRITEQC, g.req, n, &all, NULL, &err);
        }
        if (rc != 0) fprintf(stderr, "qc_bench: writing the keys to read: %s\n", err.message);
        g.seq = 0;
        next_storage_request();
    } else if (g.q.service == SVC_STORAGE) {
        g.time0 += 1000000000; /* later than the probe's write */
    }
    if (rc != 0) {
        /* A plaintext client to a TLS node sees only a closed socket. */
        bool hint = !g.q.tls_ca && strstr(err.message, "Socket closed");
        fprintf(stderr, "qc_bench: cannot reach every server: %s%s\n", err.message,
                hint ? " (do the servers use TLS? then pass --tls-ca, --tls-cert and --tls-key)"
                     : "");
        nh_config_unref(g.cfg);
        nh_runtime_free(rt);
        return 1;
    }
    if (nhb_rec_start(&g.rec, &g.q.a) != 0 || nh_runtime_post(rt, start_task, NULL) != 0) {
        fprintf(stderr, "qc_bench: cannot start\n");
        nh_config_unref(g.cfg);
        nh_runtime_free(rt);
        return 1;
    }
    size_t errors = 0;
    if (g.q.multicast) {
        /* The servers' statistics cover the measured window: reset at its start (the request
         * follows the warm-up's multicasts on each stream), read after the run. */
        int64_t wait = g.rec.t_measure - nhb_now_ns();
        if (wait > 0) nanosleep(&(struct timespec){wait / 1000000000, wait % 1000000000}, NULL);
        if (call_all(BENCH_START, false) != 0) errors++;
    }
    nhb_wait_done(&g.done, post_check, rt);
    if (g.q.multicast && call_all(BENCH_STOP, true) != 0) errors++;
    if (g.q.service == SVC_STORAGE && !g.q.read && g.stale)
        fprintf(stderr, "qc_bench: %zu of %zu write replies had New = false (stale)\n", g.stale,
                g.writes);
    errors += g.rec.errors + g.extra_errors;
    nh_config_unref(g.cfg);
    nh_runtime_free(rt);
    sem_destroy(&g.done);
    free(g.payload);
    free(g.req);
    free(g.issued);
    return errors ? 1 : 0;
}
