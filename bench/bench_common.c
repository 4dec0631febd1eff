/* Shared benchmark client code: arguments, the measurement window and the result line. */
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>

void nhb_usage(const char *prog, const char *mode) {
    fprintf(stderr,
            "usage: %s %s HOST:PORT [--inflight N] [--seconds S] [--payload B] [--warmup S]"
            " [--messages M]\n"
            "  --inflight N   messages kept in flight (default 1)\n"
            "  --seconds S    measurement length in seconds (default 5)\n"
            "  --payload B    payload bytes (default 64)\n"
            "  --warmup S     seconds run before measuring (default 1)\n"
            "  --messages M   measure exactly M messages instead of a duration\n",
            prog, mode);
}

static bool parse_num(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || v < 0) return false;
    *out = v;
    return true;
}

int nhb_parse_args(int argc, char **argv, int first, nhb_args *a) {
    *a = (nhb_args){.inflight = 1, .seconds = 5, .warmup = 1, .payload = 64};
    for (int i = first; i < argc; i++) {
        const char *opt = argv[i];
        if (opt[0] != '-') {
            if (a->target) {
                fprintf(stderr, "unexpected argument \"%s\"\n", opt);
                return -1;
            }
            a->target = opt;
            continue;
        }
        double v;
        if (i + 1 >= argc || !parse_num(argv[i + 1], &v)) {
            fprintf(stderr, "option %s needs a non-negative number\n", opt);
            return -1;
        }
        i++;
        if (!strcmp(opt, "--inflight"))
            a->inflight = (size_t)v;
        else if (!strcmp(opt, "--seconds"))
            a->seconds = v;
        else if (!strcmp(opt, "--payload"))
            a->payload = (size_t)v;
        else if (!strcmp(opt, "--warmup"))
            a->warmup = v;
        else if (!strcmp(opt, "--messages"))
            a->messages = (size_t)v;
        else {
            fprintf(stderr, "unknown option %s\n", opt);
            return -1;
        }
    }
    if (!a->target) {
        fprintf(stderr, "missing HOST:PORT\n");
        return -1;
    }
    if (a->inflight == 0 || (a->seconds <= 0 && a->messages == 0)) {
        fprintf(stderr, "--inflight must be at least 1 and --seconds above 0\n");
        return -1;
    }
    return 0;
}

int64_t nhb_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int nhb_rec_start(nhb_rec *r, const nhb_args *a) {
    int64_t now = nhb_now_ns();
    *r = (nhb_rec){0};
    r->t_measure = now + (int64_t)(a->warmup * 1e9);
    r->t_end = a->messages ? INT64_MAX : r->t_measure + (int64_t)(a->seconds * 1e9);
    r->target = a->messages;
    r->max_errors = 1000;
    r->cap = a->messages ? a->messages : 1u << 16;
    r->samples = malloc(r->cap * sizeof *r->samples);
    return r->samples ? 0 : -1;
}

static bool over(nhb_rec *r, int64_t now) {
    if (r->t_done) return true;
    bool done =
        r->errors >= r->max_errors || now >= r->t_end || (r->target && r->count >= r->target);
    if (done) r->t_done = now;
    return done;
}

bool nhb_rec_over(nhb_rec *r) {
    return over(r, nhb_now_ns());
}

bool nhb_rec_complete(nhb_rec *r, int64_t issue_ns, bool ok) {
    int64_t now = nhb_now_ns();
    if (!ok) {
        r->errors++;
    } else if (!r->t_done && now >= r->t_measure && now < r->t_end) {
        if (r->count == r->cap) {
            size_t cap = r->cap * 2;
            int64_t *s = realloc(r->samples, cap * sizeof *s);
            if (!s) {
                r->errors++;
                return !over(r, now);
            }
            r->samples = s;
            r->cap = cap;
        }
        r->samples[r->count++] = now - issue_ns;
    }
    return !over(r, now);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples, in microseconds. */
static double pct_us(const int64_t *s, size_t n, double p) {
    if (n == 0) return 0;
    size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return (double)s[k - 1] / 1000.0;
}

void nhb_rec_report(nhb_rec *r, size_t extra_errors) {
    qsort(r->samples, r->count, sizeof *r->samples, cmp_i64);
    int64_t end = r->t_done ? r->t_done : nhb_now_ns();
    if (end > r->t_end) end = r->t_end; /* completions after the window are not counted */
    double secs = (double)(end - r->t_measure) / 1e9;
    double rate = secs > 0 ? (double)r->count / secs : 0;
    printf("msgs_per_s=%.1f p50_us=%.1f p99_us=%.1f count=%zu errors=%zu\n", rate,
           pct_us(r->samples, r->count, 50), pct_us(r->samples, r->count, 99), r->count,
           r->errors + extra_errors);
    fflush(stdout);
    free(r->samples);
    r->samples = NULL;
}

size_t nhb_put_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

bool nhb_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

void nhb_wait_done(sem_t *done, void (*tick)(void *), void *arg) {
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (sem_timedwait(done, &ts) == 0) return;
        if (errno == ETIMEDOUT) tick(arg);
    }
}
