/* Logging: one line per event on stderr, text or JSON lines, level from NH_LOG or the program.
 *
 * Rate limiting: every line is keyed by (level, component text, format string pointer); the
 * format pointer identifies the call site. Per key, at most `burst` lines (NH_LOG_BURST, default
 * 10, 0 = unlimited) are printed per one-second window; further lines in that window are counted
 * and dropped. The next line of that key that is allowed again is preceded by one summary line of
 * the same level and component: "suppressed N similar message(s) in the last X s: <last dropped
 * message>" (in JSON also a numeric "suppressed" field). Keys live in a fixed table of
 * NH_LOG_RL_SLOTS slots guarded by one mutex; a key that finds no slot among a few probes evicts
 * the one with the oldest window, printing its pending summary first. Nothing is allocated. */
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    NH_LOG_MSG_MAX = 1024,     /* longest message text, bytes with the NUL */
    NH_LOG_COMP_MAX = 64,      /* longest component name kept in a slot */
    NH_LOG_RL_SLOTS = 64,      /* rate-limit table size (power of two) */
    NH_LOG_RL_PROBES = 4,      /* slots tried per key before evicting */
    NH_LOG_BURST_DEFAULT = 10, /* lines per key per window when NH_LOG_BURST is unset */
};

#define NH_LOG_WINDOW_NS 1000000000LL

static int g_level = -1;
static int g_format = NH_LOG_TEXT;
static uint32_t g_node;          /* atomic: "node" field of JSON lines, 0 none */
static uint64_t g_access_thresh; /* atomic: a call is logged when a random u64 < this */
static __thread const char *t_plugin, *t_method;
static __thread uint64_t t_rand;
static int g_burst = -1; /* -1: not read from NH_LOG_BURST yet */
static nh_log_clock_fn g_clock;
static nh_log_sink_fn g_sink;
static void *g_sink_ctx;

static const char *const g_names[] = {"error", "warn", "info", "debug"};

/* One rate-limited key and its current window. */
typedef struct rl_slot {
    int used;
    int level;
    const char *fmt;            /* call site */
    uint64_t comp_hash;         /* hash of the component text */
    char comp[NH_LOG_COMP_MAX]; /* component text, for the summary of an evicted slot */
    int64_t window_start;       /* ns, start of the current window */
    unsigned printed;           /* lines printed in the current window */
    uint64_t suppressed;        /* lines dropped since the last summary */
    int64_t suppressed_since;   /* ns, first dropped line since the last summary */
    char last[NH_LOG_MSG_MAX];  /* text of the last dropped line */
} rl_slot;

static pthread_mutex_t g_rl_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_slot g_rl[NH_LOG_RL_SLOTS];

/* A pending summary copied out of a slot, printed after the mutex is released. */
typedef struct rl_summary {
    uint64_t count;
    int level;
    double seconds;
    char comp[NH_LOG_COMP_MAX];
    char last[NH_LOG_MSG_MAX];
} rl_summary;

int nh_log_level_parse(const char *name) {
    for (int i = 0; name && i < 4; i++)
        if (!strcmp(name, g_names[i])) return i;
    return -1;
}

static int level_from_env(void) {
    int l = nh_log_level_parse(getenv("NH_LOG"));
    return l < 0 ? NH_LOG_WARN : l;
}

static int burst_from_env(void) {
    const char *s = getenv("NH_LOG_BURST");
    if (!s || !*s) return NH_LOG_BURST_DEFAULT;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0) return NH_LOG_BURST_DEFAULT;
    return v > 1000000 ? 1000000 : (int)v;
}

static int current_burst(void) {
    int b = __atomic_load_n(&g_burst, __ATOMIC_RELAXED);
    if (b < 0) {
        b = burst_from_env();
        __atomic_store_n(&g_burst, b, __ATOMIC_RELAXED);
    }
    return b;
}

void nh_log_set_level(nh_log_level level) {
    __atomic_store_n(&g_level, (int)level, __ATOMIC_RELAXED);
}

void nh_log_set_format(nh_log_format format) {
    __atomic_store_n(&g_format, (int)format, __ATOMIC_RELAXED);
}

void nh_log_set_burst(int burst) {
    pthread_mutex_lock(&g_rl_mu);
    memset(g_rl, 0, sizeof g_rl);
    __atomic_store_n(&g_burst, burst < 0 ? -1 : burst, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&g_rl_mu);
}

void nh_log_set_clock(nh_log_clock_fn now_ns) {
    __atomic_store_n(&g_clock, now_ns, __ATOMIC_RELAXED);
}

void nh_log_set_sink(nh_log_sink_fn sink, void *ctx) {
    __atomic_store_n(&g_sink_ctx, ctx, __ATOMIC_RELAXED);
    __atomic_store_n(&g_sink, sink, __ATOMIC_RELEASE);
}

int nh_log_enabled(nh_log_level level) {
    int cur = __atomic_load_n(&g_level, __ATOMIC_RELAXED);
    if (cur < 0) {
        cur = level_from_env();
        __atomic_store_n(&g_level, cur, __ATOMIC_RELAXED);
    }
    return (int)level <= cur;
}

static int64_t now_ns(void) {
    nh_log_clock_fn fn = __atomic_load_n(&g_clock, __ATOMIC_RELAXED);
    if (fn) return fn();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* FNV-1a over the component text. */
static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* Copies a slot's pending summary into out and clears it; returns 1 when there was one. */
static int take_summary(rl_slot *s, int64_t now, rl_summary *out) {
    if (!s->suppressed) return 0;
    out->count = s->suppressed;
    out->level = s->level;
    out->seconds = (double)(now - s->suppressed_since) / 1e9;
    if (out->seconds < 0) out->seconds = 0;
    memcpy(out->comp, s->comp, sizeof out->comp);
    memcpy(out->last, s->last, sizeof out->last);
    s->suppressed = 0;
    return 1;
}

/* Decides whether a line may be printed. Fills sums[0..*nsum) with summaries to print first
 * (one for an evicted key, one for this key). Returns 1 to print, 0 to drop. */
static int rl_admit(int level, const char *comp, const char *fmt, const char *msg, int burst,
                    rl_summary sums[2], int *nsum) {
    *nsum = 0;
    uint64_t ch = hash_str(comp);
    uint64_t key = ch ^ (uint64_t)(uintptr_t)fmt ^ ((uint64_t)level << 56);
    key = (key ^ (key >> 30)) * 0xbf58476d1ce4e5b9ULL; /* splitmix64 finalizer */
    key = (key ^ (key >> 27)) * 0x94d049bb133111ebULL;
    key ^= key >> 31;
    int64_t now = now_ns();
    pthread_mutex_lock(&g_rl_mu);
    rl_slot *s = NULL, *victim = NULL;
    for (unsigned i = 0; i < NH_LOG_RL_PROBES; i++) {
        rl_slot *c = &g_rl[(key + i) & (NH_LOG_RL_SLOTS - 1)];
        if (c->used && c->fmt == fmt && c->level == level && c->comp_hash == ch &&
            !strncmp(c->comp, comp, sizeof c->comp - 1)) {
            s = c;
            break;
        }
        if (!victim || (victim->used && (!c->used || c->window_start < victim->window_start)))
            victim = c;
    }
    if (!s) {
        s = victim;
        if (s->used && take_summary(s, now, &sums[*nsum])) (*nsum)++;
        memset(s, 0, offsetof(rl_slot, last));
        s->used = 1;
        s->level = level;
        s->fmt = fmt;
        s->comp_hash = ch;
        snprintf(s->comp, sizeof s->comp, "%s", comp);
        s->window_start = now;
    } else if (now - s->window_start >= NH_LOG_WINDOW_NS || now < s->window_start) {
        s->window_start = now;
        s->printed = 0;
    }
    int ok = s->printed < (unsigned)burst;
    if (ok) {
        s->printed++;
        if (take_summary(s, now, &sums[*nsum])) (*nsum)++;
    } else {
        if (!s->suppressed) s->suppressed_since = now;
        s->suppressed++;
        snprintf(s->last, sizeof s->last, "%s", msg);
    }
    pthread_mutex_unlock(&g_rl_mu);
    return ok;
}

/* Appends s to out as the inside of a JSON string. */
static size_t json_escape(char *out, size_t cap, const char *s) {
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

/* Formats and writes one line; suppressed > 0 marks a summary line (JSON gets the count). */
void nh_log_set_node(uint32_t node_id) {
    __atomic_store_n(&g_node, node_id, __ATOMIC_RELAXED);
}

const char *nh_log_set_plugin(const char *plugin) {
    const char *old = t_plugin;
    t_plugin = plugin;
    return old;
}

const char *nh_log_set_method(const char *method) {
    const char *old = t_method;
    t_method = method;
    return old;
}

void nh_log_set_access_sample(double fraction) {
    uint64_t t = fraction <= 0   ? 0
                 : fraction >= 1 ? UINT64_MAX
                                 : (uint64_t)(fraction * 18446744073709551615.0);
    __atomic_store_n(&g_access_thresh, t, __ATOMIC_RELAXED);
}

int nh_log_access_pick(void) {
    uint64_t t = __atomic_load_n(&g_access_thresh, __ATOMIC_RELAXED);
    if (t == 0) return 0;
    if (t == UINT64_MAX) return 1;
    if (!t_rand)
        t_rand = (uint64_t)(uintptr_t)&t_rand ^ (uint64_t)time(NULL) ^ 0x9E3779B97F4A7C15ULL;
    t_rand ^= t_rand << 13; /* xorshift64 */
    t_rand ^= t_rand >> 7;
    t_rand ^= t_rand << 17;
    return t_rand < t;
}

/* The context fields of a JSON line: ,"node":N,"plugin":"p","method":"m" (those set). */
static void context_fields(char *out, size_t size) {
    size_t n = 0;
    out[0] = '\0';
    uint32_t node = __atomic_load_n(&g_node, __ATOMIC_RELAXED);
    if (node) n += (size_t)snprintf(out + n, size - n, ",\"node\":%u", node);
    char esc[300];
    if (t_plugin && n < size) {
        json_escape(esc, sizeof esc, t_plugin);
        n += (size_t)snprintf(out + n, size - n, ",\"plugin\":\"%s\"", esc);
    }
    if (t_method && n < size) {
        json_escape(esc, sizeof esc, t_method);
        snprintf(out + n, size - n, ",\"method\":\"%s\"", esc);
    }
}

static void write_line(const char *line, size_t n) {
    nh_log_sink_fn sink = __atomic_load_n(&g_sink, __ATOMIC_ACQUIRE);
    if (sink)
        sink(__atomic_load_n(&g_sink_ctx, __ATOMIC_RELAXED), line, n);
    else
        fwrite(line, 1, n, stderr);
}

static void emit(int level, const char *component, const char *msg, uint64_t suppressed) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    char line[4 * NH_LOG_MSG_MAX];
    int n;
    if (__atomic_load_n(&g_format, __ATOMIC_RELAXED) == NH_LOG_JSON) {
        char emsg[2 * NH_LOG_MSG_MAX + 256], ecomp[128], extra[48] = "", ctx[700];
        json_escape(emsg, sizeof emsg, msg);
        json_escape(ecomp, sizeof ecomp, component);
        if (suppressed)
            snprintf(extra, sizeof extra, ",\"suppressed\":%llu", (unsigned long long)suppressed);
        context_fields(ctx, sizeof ctx);
        n = snprintf(
            line, sizeof line,
            "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"component\":\"%s\",\"msg\":\"%s\"%s%s}"
            "\n",
            when, ts.tv_nsec / 1000000L, g_names[level], ecomp, emsg, extra, ctx);
    } else {
        n = snprintf(line, sizeof line, "%s.%03ldZ %s %s: %s\n", when, ts.tv_nsec / 1000000L,
                     g_names[level], component, msg);
    }
    if (n < 0) return;
    if ((size_t)n >= sizeof line) { /* cannot happen with the sizes above; keep the newline */
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    write_line(line, (size_t)n);
}

void nh_log_access(const char *method, const char *caller, const char *peer_kind, uint32_t peer_id,
                   const char *code, double duration_ms) {
    if (!nh_log_enabled(NH_LOG_INFO)) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    char line[3 * NH_LOG_MSG_MAX];
    int n;
    if (__atomic_load_n(&g_format, __ATOMIC_RELAXED) == NH_LOG_JSON) {
        char em[600], ec[600], node[32] = "";
        json_escape(em, sizeof em, method);
        json_escape(ec, sizeof ec, caller);
        uint32_t id = __atomic_load_n(&g_node, __ATOMIC_RELAXED);
        if (id) snprintf(node, sizeof node, ",\"node\":%u", id);
        n = snprintf(line, sizeof line,
                     "{\"ts\":\"%s.%03ldZ\",\"level\":\"info\",\"component\":\"access\","
                     "\"msg\":\"%s %s\",\"method\":\"%s\",\"caller\":\"%s\",\"peer_kind\":\"%s\","
                     "\"peer_id\":%u,\"code\":\"%s\",\"duration_ms\":%.3f%s}\n",
                     when, ts.tv_nsec / 1000000L, em, code, em, ec, peer_kind, peer_id, code,
                     duration_ms, node);
    } else {
        n = snprintf(line, sizeof line,
                     "%s.%03ldZ info access: %s from %s (%s %u): %s in %.3f ms\n", when,
                     ts.tv_nsec / 1000000L, method, caller, peer_kind, peer_id, code, duration_ms);
    }
    if (n < 0) return;
    if ((size_t)n >= sizeof line) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    write_line(line, (size_t)n);
}

static void emit_summary(const rl_summary *s) {
    char msg[NH_LOG_MSG_MAX + 128];
    snprintf(msg, sizeof msg, "suppressed %llu similar message(s) in the last %.1f s: %s",
             (unsigned long long)s->count, s->seconds, s->last);
    emit(s->level, s->comp, msg, s->count);
}

static void log_keyed(nh_log_level level, const char *component, const char *key, const char *msg);

void nh_logf(nh_log_level level, const char *component, const char *fmt, ...) {
    if ((int)level < 0 || (int)level > NH_LOG_DEBUG || !nh_log_enabled(level)) return;
    char msg[NH_LOG_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_keyed(level, component, fmt, msg);
}

void nh_log_site(nh_log_level level, const char *component, const void *site, const char *fmt,
                 ...) {
    if ((int)level < 0 || (int)level > NH_LOG_DEBUG || !nh_log_enabled(level)) return;
    char msg[NH_LOG_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_keyed(level, component, (const char *)site, msg);
}

/* Rate limit (keyed by fmt, a call site identity), then print. */
static void log_keyed(nh_log_level level, const char *component, const char *fmt, const char *msg) {
    if (!component) component = "-";
    int burst = current_burst();
    if (burst > 0) {
        rl_summary sums[2];
        int nsum;
        if (!rl_admit((int)level, component, fmt, msg, burst, sums, &nsum)) return;
        for (int i = 0; i < nsum; i++)
            emit_summary(&sums[i]);
    }
    emit((int)level, component, msg, 0);
}
