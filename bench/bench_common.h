/* Shared by the benchmark clients: arguments, the measurement window, round-trip samples and
 * the result line. Not part of the SDK. */
#ifndef NH_BENCH_COMMON_H
#define NH_BENCH_COMMON_H

#include <semaphore.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/** The method every benchmark call uses (the test echo service's Raw method). */
#define NHB_METHOD "test.Echo.Raw"

/** Client options, shared by baseline_echo client and rpc_bench. */
typedef struct nhb_args {
    const char *target; /* "host:port" */
    size_t inflight;    /* messages kept in flight */
    double seconds;     /* measurement length (when messages is 0) */
    double warmup;      /* seconds run before measuring */
    size_t payload;     /* payload bytes */
    size_t messages;    /* measure exactly this many messages instead of a duration; 0 = off */
} nhb_args;

/** Parses "--inflight N --seconds S --payload B --warmup S --messages M" after the target.
 * Returns 0, or -1 after printing a message to stderr. */
int nhb_parse_args(int argc, char **argv, int first, nhb_args *a);

/** Parses a non-negative number (the whole string). Returns false when it is not one. */
bool nhb_parse_num(const char *s, double *out);

/** Prints the client options' usage to stderr. */
void nhb_usage(const char *prog, const char *mode);

/** Monotonic clock in nanoseconds. */
int64_t nhb_now_ns(void);

/**
 * The measurement: warm-up, then either a duration or a message count. Completions are
 * reported with their issue time; the recorder says whether the caller should issue another
 * message. Single-threaded: the thread that completes messages owns it.
 */
typedef struct nhb_rec {
    int64_t t_measure; /* measurement starts (end of warm-up) */
    int64_t t_end;     /* measurement ends (duration mode) */
    int64_t t_done;    /* when the measurement ended; 0 while running */
    size_t target;     /* messages mode: how many to record */
    int64_t *samples;  /* round trips in ns, of the messages completed in the window */
    size_t count, cap;
    size_t errors;
    size_t max_errors; /* stop once this many errors were seen */
} nhb_rec;

/** Starts the clock: the warm-up runs from now. Returns 0, or -1 when out of memory. */
int nhb_rec_start(nhb_rec *r, const nhb_args *a);

/** Reports one completed message (issued at issue_ns, ok or failed). Returns true when the
 * caller should issue a replacement, false once the measurement is over. */
bool nhb_rec_complete(nhb_rec *r, int64_t issue_ns, bool ok);

/** Checks the clock without a completion (for a stalled run); returns true once over. */
bool nhb_rec_over(nhb_rec *r);

/** Ends the measurement: sorts the samples (ascending) and returns the messages per second
 * over the window (completions after it are not counted). The samples stay for the caller. */
double nhb_rec_close(nhb_rec *r);

/** Prints the result line ("msgs_per_s=... p50_us=... p99_us=... count=... errors=...") to
 * stdout, adding extra_errors to the error count, and frees the samples. */
void nhb_rec_report(nhb_rec *r, size_t extra_errors);

/** Writes a protobuf varint; returns the bytes written (at most 10). */
size_t nhb_put_varint(uint8_t *p, uint64_t v);

/** Reads a protobuf varint from [*p, end); returns false when truncated. */
bool nhb_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v);

/** Waits until done is posted, calling tick(arg) every 100 ms meanwhile (the clients use it to
 * ask their owner thread whether a run stalled). */
void nhb_wait_done(sem_t *done, void (*tick)(void *), void *arg);

/* ---- protobuf fields, samples, lists, processes ------------------------------------------ */

/** One field of a protobuf message: its number, wire type, and value (varint and fixed64/32 in
 * v, length-delimited as a view in data/len). */
typedef struct nhb_pb_field {
    uint32_t number;
    unsigned wire;
    uint64_t v;
    const uint8_t *data;
    size_t len;
} nhb_pb_field;

/** Reads the next field of [*p, end). Returns 1 with *f, 0 at the end, -1 when malformed or of
 * a wire type the benchmarks' messages never use (groups). */
int nhb_pb_next(const uint8_t **p, const uint8_t *end, nhb_pb_field *f);

/** Sorts nanosecond samples in place, ascending. */
void nhb_sort_ns(int64_t *s, size_t n);

/** Nearest-rank percentile (0 < p <= 100) of sorted nanosecond samples, in the samples' unit
 * (0 when n is 0). */
int64_t nhb_pct(const int64_t *sorted, size_t n, double p);

/** The same percentile in microseconds, as the result lines print it. */
double nhb_pct_us(const int64_t *sorted, size_t n, double p);

/** CPU time (user + system, all threads) of a process from /proc/<pid>/stat, in seconds; -1
 * when unreadable. */
double nhb_proc_cpu_s(int pid);

/** Splits a comma-separated list in place (s is modified). Returns the count, or -1 when there
 * are more than max items. */
int nhb_split_list(char *s, const char **out, size_t max);

/** Parses a comma-separated list of process IDs in place (s is modified). Returns the count, or
 * -1 when there are more than max. */
int nhb_parse_pids(char *s, pid_t *out, size_t max);

#endif
