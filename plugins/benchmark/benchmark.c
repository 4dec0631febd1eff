/* benchmark: Gorums' benchmark service (spec Appendix A) as a nodehost plugin, so that Gorums'
 * benchmark program (cmd/benchmark -remotes a,b,c) can drive nodehost nodes like Go servers.
 *
 * Methods (package benchmark, service Benchmark):
 *   StartServerBenchmark  QUORUMCALL  StartRequest -> StartResponse   reset stats, start the clock
 *   StopServerBenchmark   QUORUMCALL  StopRequest  -> Result          stop the clock, report
 *   StartBenchmark        QUORUMCALL  StartRequest -> StartResponse   as StartServerBenchmark
 *   StopBenchmark         QUORUMCALL  StopRequest  -> MemoryStat      heap use since the start
 *   QuorumCall            QUORUMCALL  Echo -> Echo                    echo (the request's bytes)
 *   SlowServer            QUORUMCALL  Echo -> Echo                    release, 10 ms, echo
 *   Multicast             MULTICAST   TimedMsg -> (nothing)           record now - send_time
 *
 * The call types are Gorums' options in benchmark.proto; protoc-gen-nodehost generates from it
 * benchmark.nh.h: the handlers to define here (benchmark_benchmark_<method>_handler), their
 * typed reply helpers and the method table BENCHMARK_BENCHMARK_NH_METHODS for NH_PLUGIN.
 * Multicast's proto declares google.protobuf.Empty as its response (as Gorums); the generated
 * table gives NULL, as for every one-way method: the handler ends the call with nh_ctx_finish()
 * and the server sends nothing back.
 *
 * Statistics, as Gorums' benchmark/stats.go: Start/Stop pairs share one set of statistics (a
 * Start of either pair resets it, as in Gorums). Latencies are nanoseconds (float), aggregated
 * with Welford's algorithm: latency_avg in ns, latency_var in ns^2 (the sample variance,
 * m2 / (n - 1); Gorums reports 0 for n <= 2, nodehost for n <= 1 only), total_time in ns on the
 * monotonic clock, throughput in operations per second. Multicast latency is CLOCK_REALTIME now
 * minus the sender's send_time (Unix ns), so it includes any clock offset between the machines.
 *
 * Memory: glibc counts no allocations, only bytes in use (mallinfo2(): uordblks + hblkhd, all
 * arenas). allocs and allocs_per_op are therefore always 0; memory and mem_per_op are the
 * growth of the heap in use between Start and Stop (0 when it shrank), not the total bytes
 * allocated as Go reports. Under AddressSanitizer the numbers are meaningless (0).
 *
 * Threads: the statistics are touched by handlers only, which run on the node's owner thread:
 * no lock. SlowServer's delay runs on a runtime worker (nh_ctx_offload), which touches nothing
 * but its own request and reply.
 *
 * Configuration: slow_server_ms (0 to 60000, default 10): SlowServer's delay. */
#include "benchmark.nh.h" /* generated from benchmark.proto */

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct bench {
    uint32_t slow_ms; /* SlowServer's delay (immutable after init; read by workers) */
    /* Statistics (owner thread only). */
    bool started;
    uint64_t count;
    double mean, m2;
    int64_t start_ns, end_ns;      /* CLOCK_MONOTONIC */
    uint64_t heap_start, heap_end; /* bytes in use (mallinfo2) */
} bench;

static const char *const bench_config_keys[] = {"slow_server_ms", NULL};

static int64_t clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t heap_in_use(void) {
    struct mallinfo2 mi = mallinfo2();
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

static int bench_read_config(const nh_conf_node *config, uint32_t *slow_ms, nh_error *err) {
    int64_t v;
    if (nh_conf_check_keys(config, bench_config_keys, err) != 0) return -1;
    if (nh_conf_int(config, "slow_server_ms", 10, 0, 60000, false, &v, err) != 0) return -1;
    *slow_ms = (uint32_t)v;
    return 0;
}

static int bench_check_config(const nh_conf_node *config, nh_error *err) {
    uint32_t slow_ms;
    return bench_read_config(config, &slow_ms, err);
}

static int bench_init(const nh_plugin_env *env, void **state, nh_error *err) {
    uint32_t slow_ms;
    if (bench_read_config(env->config, &slow_ms, err) != 0) return -1;
    bench *b = calloc(1, sizeof *b);
    if (!b) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    b->slow_ms = slow_ms;
    *state = b;
    return 0;
}

/* Gorums' Stats.Clear followed by Stats.Start. */
static void stats_start(bench *b) {
    b->count = 0;
    b->mean = b->m2 = 0;
    b->end_ns = 0;
    b->heap_end = 0;
    b->heap_start = heap_in_use();
    b->start_ns = clock_ns(CLOCK_MONOTONIC);
    b->started = true;
}

/* Gorums' Stats.End. */
static void stats_end(bench *b) {
    b->end_ns = clock_ns(CLOCK_MONOTONIC);
    b->heap_end = heap_in_use();
}

static uint64_t heap_growth(const bench *b) {
    return b->heap_end > b->heap_start ? b->heap_end - b->heap_start : 0;
}

/* A reply helper's -1 is out of memory (or a call that already ended: the error reply is then a
 * no-op): the call must still end, with an error. */
static void fail_if(int rc, nh_server_ctx *ctx) {
    if (rc != 0) nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
}

void benchmark_benchmark_start_server_benchmark_handler(nh_server_ctx *ctx,
                                                        const Benchmark__StartRequest *req,
                                                        void *state) {
    stats_start(state);
    Benchmark__StartResponse resp = BENCHMARK__START_RESPONSE__INIT;
    fail_if(benchmark_benchmark_start_server_benchmark_reply(ctx, &resp), ctx);
}

/* StartBenchmark resets the same statistics (Gorums: both pairs share them). */
void benchmark_benchmark_start_benchmark_handler(nh_server_ctx *ctx,
                                                 const Benchmark__StartRequest *req, void *state) {
    benchmark_benchmark_start_server_benchmark_handler(ctx, req, state);
}

void benchmark_benchmark_stop_server_benchmark_handler(nh_server_ctx *ctx,
                                                       const Benchmark__StopRequest *req,
                                                       void *state) {
    bench *b = state;
    stats_end(b);
    Benchmark__Result r = BENCHMARK__RESULT__INIT;
    r.total_ops = b->count;
    r.total_time = b->started && b->end_ns > b->start_ns ? b->end_ns - b->start_ns : 0;
    r.throughput = r.total_time > 0 ? (double)r.total_ops / ((double)r.total_time / 1e9) : 0;
    r.latency_avg = b->mean;
    r.latency_var = b->count > 1 ? b->m2 / (double)(b->count - 1) : 0;
    r.allocs_per_op = 0;
    r.mem_per_op = b->count ? heap_growth(b) / b->count : 0;
    fail_if(benchmark_benchmark_stop_server_benchmark_reply(ctx, &r), ctx);
}

void benchmark_benchmark_stop_benchmark_handler(nh_server_ctx *ctx,
                                                const Benchmark__StopRequest *req, void *state) {
    bench *b = state;
    stats_end(b);
    Benchmark__MemoryStat m = BENCHMARK__MEMORY_STAT__INIT;
    m.allocs = 0;
    m.memory = heap_growth(b);
    fail_if(benchmark_benchmark_stop_benchmark_reply(ctx, &m), ctx);
}

/* QuorumCall: the response is the request's own bytes (Go returns its input unchanged), not
 * req re-encoded: that would cost an encode per call and drop unknown fields. */
void benchmark_benchmark_quorum_call_handler(nh_server_ctx *ctx, const Benchmark__Echo *req,
                                             void *state) {
    size_t len;
    const uint8_t *payload = nh_ctx_payload(ctx, &len);
    nh_ctx_reply(ctx, payload, len);
}

typedef struct slow_work {
    const Benchmark__Echo *req; /* valid until the call ends, i.e. until our reply */
    uint32_t ms;
} slow_work;

/* On a worker thread: sleep, then echo. The reply is the last use of ctx and of the request. */
static void slow_run(nh_server_ctx *ctx, void *arg) {
    slow_work w = *(slow_work *)arg;
    free(arg);
    struct timespec ts = {.tv_sec = w.ms / 1000, .tv_nsec = (long)(w.ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    fail_if(benchmark_benchmark_slow_server_reply(ctx, w.req), ctx);
}

/* SlowServer: Release, then 10 ms on a worker (the owner thread keeps serving), then echo. */
void benchmark_benchmark_slow_server_handler(nh_server_ctx *ctx, const Benchmark__Echo *req,
                                             void *state) {
    const bench *b = state;
    slow_work *w = malloc(sizeof *w);
    if (!w) {
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    *w = (slow_work){.req = req, .ms = b->slow_ms};
    if (nh_ctx_offload(ctx, true, slow_run, w) != 0) {
        free(w);
        nh_ctx_reply_error(ctx, NH_UNAVAILABLE, "SlowServer: cannot queue the work");
    }
}

/* Multicast: one-way; adds now - send_time to the latency statistics (Welford). */
void benchmark_benchmark_multicast_handler(nh_server_ctx *ctx, const Benchmark__TimedMsg *req,
                                           void *state) {
    bench *b = state;
    double l = (double)(clock_ns(CLOCK_REALTIME) - req->send_time);
    b->count++;
    double delta = l - b->mean;
    b->mean += delta / (double)b->count;
    b->m2 += delta * (l - b->mean);
    nh_ctx_finish(ctx); /* ended without a response: nothing goes back */
}

NH_PLUGIN(
    BENCHMARK_BENCHMARK_NH_METHODS, .name = "benchmark", .version = "1.0.0",
    .description = "Gorums' benchmark service (benchmark.Benchmark), for Gorums' benchmark tool",
    .check_config = bench_check_config, .init = bench_init, .fini = free);
