/* Shared benchmark client code: arguments, the measurement window and the result line. */
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>

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

bool nhb_parse_num(const char *s, double *out) {
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
        if (i + 1 >= argc || !nhb_parse_num(argv[i + 1], &v)) {
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

double nhb_pct_us(const int64_t *sorted, size_t n, double p) {
    return (double)nhb_pct(sorted, n, p) / 1000.0;
}

double nhb_rec_close(nhb_rec *r) {
    nhb_sort_ns(r->samples, r->count);
    int64_t end = r->t_done ? r->t_done : nhb_now_ns();
    if (end > r->t_end) end = r->t_end; /* completions after the window are not counted */
    double secs = (double)(end - r->t_measure) / 1e9;
    return secs > 0 ? (double)r->count / secs : 0;
}

void nhb_rec_report(nhb_rec *r, size_t extra_errors) {
    double rate = nhb_rec_close(r);
    printf("msgs_per_s=%.1f p50_us=%.1f p99_us=%.1f count=%zu errors=%zu\n", rate,
           nhb_pct_us(r->samples, r->count, 50), nhb_pct_us(r->samples, r->count, 99), r->count,
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

/* ---- protobuf fields, samples, lists, processes ------------------------------------------ */

int nhb_pb_next(const uint8_t **p, const uint8_t *end, nhb_pb_field *f) {
    if (*p == end) return 0;
    uint64_t key;
    if (!nhb_get_varint(p, end, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX) return -1;
    *f = (nhb_pb_field){.number = (uint32_t)(key >> 3), .wire = (unsigned)(key & 7)};
    switch (f->wire) {
        case 0:
            return nhb_get_varint(p, end, &f->v) ? 1 : -1;
        case 1:
        case 5: {
            size_t n = f->wire == 1 ? 8 : 4;
            if ((size_t)(end - *p) < n) return -1;
            for (size_t i = 0; i < n; i++) /* little-endian */
                f->v |= (uint64_t)(*p)[i] << (8 * i);
            *p += n;
            return 1;
        }
        case 2: {
            uint64_t n;
            if (!nhb_get_varint(p, end, &n) || n > (uint64_t)(end - *p)) return -1;
            f->data = *p;
            f->len = (size_t)n;
            *p += n;
            return 1;
        }
        default:
            return -1;
    }
}

void nhb_sort_ns(int64_t *s, size_t n) {
    if (n > 1) qsort(s, n, sizeof *s, cmp_i64);
}

int64_t nhb_pct(const int64_t *sorted, size_t n, double p) {
    if (n == 0) return 0;
    size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return sorted[k - 1];
}

int nhb_split_list(char *s, const char **out, size_t max) {
    size_t n = 0;
    for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == max) return -1;
        out[n++] = tok;
    }
    return (int)n;
}

int nhb_parse_pids(char *s, pid_t *out, size_t max) {
    size_t n = 0;
    for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == max) return -1;
        out[n++] = (pid_t)atoi(tok);
    }
    return (int)n;
}

double nhb_proc_cpu_s(int pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may contain spaces */
    if (!p || p[1] == '\0') return -1;
    unsigned long long utime, stime;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt, then
     * utime (field 14) and stime (15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(utime + stime) / (double)(hz > 0 ? hz : 100);
}
