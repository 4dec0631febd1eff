/* The process's metric registry (nodehost/metrics.h): families of series, atomic updates, the
 * Prometheus text format. Families and series are never freed: pointers to them stay valid for
 * the life of the process (plugin generations come and go; their series stay). */
#include "metrics/metrics_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BOUNDS 32
#define MAX_LABELS 8

typedef enum mtype { T_COUNTER, T_GAUGE, T_HISTOGRAM } mtype;

typedef struct family family;

struct nh_metric {
    family *fam;
    struct nh_metric *next;
    char *labels;      /* rendered `a="x",b="y"` (escaped), "" without labels */
    uint64_t bits;     /* counter / gauge: the value's double bits (atomic) */
    uint64_t *buckets; /* histogram: per-bucket counts (not cumulative), nb + 1 (atomic) */
    uint64_t count;    /* histogram: observations (atomic) */
    uint64_t sum_bits; /* histogram: sum's double bits (atomic) */
};

struct family {
    family *next;
    char *name;
    char *help;
    mtype type;
    char *label_names[MAX_LABELS];
    size_t nlabels;
    double bounds[MAX_BOUNDS];
    size_t nb;
    nh_metric *series, **tail;
};

typedef struct collector {
    struct collector *next;
    unsigned long id;
    nh_metrics_collect_fn fn;
    void *arg;
} collector;

static pthread_mutex_t g_mu;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
/* Collectors run under this one, not under g_mu: a collector may wait for another thread (the
 * owner thread) that registers a series meanwhile (g_mu). It also serializes renderings. */
static pthread_mutex_t g_collect_mu = PTHREAD_MUTEX_INITIALIZER;
static family *g_families, **g_ftail = &g_families;
static collector *g_collectors;
static unsigned long g_next_collector = 1;

static const double default_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                        0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                        0.5,     1,      2.5,     5,      10};

static void init_mutex(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&g_mu, &a);
    pthread_mutexattr_destroy(&a);
}

static void lock(void) {
    pthread_once(&g_once, init_mutex);
    pthread_mutex_lock(&g_mu);
}

static void unlock(void) {
    pthread_mutex_unlock(&g_mu);
}

/* ---- atomics on doubles ------------------------------------------------------------------- */

static double from_bits(uint64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint64_t to_bits(double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static void atomic_add_double(uint64_t *p, double v) {
    uint64_t old = __atomic_load_n(p, __ATOMIC_RELAXED), nw;
    do {
        nw = to_bits(from_bits(old) + v);
    } while (!__atomic_compare_exchange_n(p, &old, nw, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}

/* ---- names and labels --------------------------------------------------------------------- */

static bool valid_name(const char *s, bool metric) {
    if (!s || !*s) return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (metric && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return metric || strncmp(s, "__", 2) != 0;
}

/* Appends text with the escapes of label values (\\, \", \n) or of help (\\, \n). */
static size_t escape(char *out, const char *s, bool quote) {
    size_t n = 0;
    for (; *s; s++) {
        const char *rep = NULL;
        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (quote && *s == '"')
            rep = "\\\"";
        if (rep) {
            if (out) memcpy(out + n, rep, 2);
            n += 2;
        } else {
            if (out) out[n] = *s;
            n++;
        }
    }
    return n;
}

static char *render_labels(const nh_metric_label *labels, size_t n) {
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(labels[i].name) + 4 + escape(NULL, labels[i].value, true);
    char *s = malloc(len), *p = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) {
        p += sprintf(p, "%s%s=\"", i ? "," : "", labels[i].name);
        p += escape(p, labels[i].value, true);
        *p++ = '"';
    }
    *p = '\0';
    return s;
}

/* ---- registration ------------------------------------------------------------------------- */

static family *find_family(const char *name) {
    for (family *f = g_families; f; f = f->next)
        if (!strcmp(f->name, name)) return f;
    return NULL;
}

static const char *type_name(mtype t) {
    return t == T_COUNTER ? "counter" : t == T_GAUGE ? "gauge" : "histogram";
}

static nh_metric *get_series(mtype type, const char *name, const char *help,
                             const nh_metric_label *labels, size_t nl, const double *bounds,
                             size_t nb, nh_error *err) {
    if (!valid_name(name, true)) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "bad metric name \"%s\"",
                     name ? name : "");
        return NULL;
    }
    if (nl > MAX_LABELS || (nl && !labels)) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: at most %d labels", name,
                     MAX_LABELS);
        return NULL;
    }
    for (size_t i = 0; i < nl; i++) {
        if (!valid_name(labels[i].name, false) || !labels[i].value ||
            !strcmp(labels[i].name, "le")) {
            nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "%s: bad label \"%s\"", name,
                         labels[i].name ? labels[i].name : "");
            return NULL;
        }
    }
    if (type == T_HISTOGRAM) {
        if (!bounds) {
            bounds = default_bounds;
            nb = sizeof default_bounds / sizeof default_bounds[0];
        }
        bool ascending = nb >= 1 && nb <= MAX_BOUNDS;
        for (size_t i = 1; ascending && i < nb; i++)
            ascending = bounds[i] > bounds[i - 1];
        if (!ascending) {
            nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                         "%s: 1 to %d ascending bucket bounds", name, MAX_BOUNDS);
            return NULL;
        }
    }
    char *ls = render_labels(labels, nl);
    if (!ls) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return NULL;
    }
    lock();
    nh_metric *m = NULL;
    family *f = find_family(name);
    if (f) {
        bool same = f->type == type && f->nlabels == nl;
        for (size_t i = 0; same && i < nl; i++)
            same = !strcmp(f->label_names[i], labels[i].name);
        if (!same) {
            unlock();
            free(ls);
            nh_error_set(err, NH_ALREADY_EXISTS, NH_ERR_LOCAL, 0,
                         "metric %s exists as a %s with other labels or another type", name,
                         type_name(f->type));
            return NULL;
        }
        for (m = f->series; m; m = m->next)
            if (!strcmp(m->labels, ls)) break;
    } else {
        f = calloc(1, sizeof *f);
        bool ok = f && (f->name = strdup(name)) && (f->help = strdup(help ? help : ""));
        for (size_t i = 0; ok && i < nl; i++)
            ok = (f->label_names[i] = strdup(labels[i].name)) != NULL;
        if (!ok) {
            unlock();
            free(ls);
            nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
            return NULL; /* the partial family leaks: out of memory only */
        }
        f->type = type;
        f->nlabels = nl;
        if (type == T_HISTOGRAM) {
            memcpy(f->bounds, bounds, nb * sizeof *bounds);
            f->nb = nb;
        }
        f->tail = &f->series;
        *g_ftail = f;
        g_ftail = &f->next;
    }
    if (m) {
        free(ls);
    } else {
        m = calloc(1, sizeof *m);
        if (m && type == T_HISTOGRAM) m->buckets = calloc(f->nb + 1, sizeof *m->buckets);
        if (!m || (type == T_HISTOGRAM && !m->buckets)) {
            if (m) free(m);
            free(ls);
            unlock();
            nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
            return NULL;
        }
        m->fam = f;
        m->labels = ls;
        *f->tail = m;
        f->tail = &m->next;
    }
    unlock();
    return m;
}

nh_metric *nh_metric_counter(const char *name, const char *help, const nh_metric_label *labels,
                             size_t n, nh_error *err) {
    return get_series(T_COUNTER, name, help, labels, n, NULL, 0, err);
}

nh_metric *nh_metric_gauge(const char *name, const char *help, const nh_metric_label *labels,
                           size_t n, nh_error *err) {
    return get_series(T_GAUGE, name, help, labels, n, NULL, 0, err);
}

nh_metric *nh_metric_histogram(const char *name, const char *help, const nh_metric_label *labels,
                               size_t n, const double *bounds, size_t nb, nh_error *err) {
    return get_series(T_HISTOGRAM, name, help, labels, n, bounds, nb, err);
}

/* ---- updates ------------------------------------------------------------------------------ */

void nh_metric_add(nh_metric *m, double v) {
    if (!m || m->fam->type == T_HISTOGRAM) return;
    if (m->fam->type == T_COUNTER && !(v >= 0)) return; /* counters only go up (and not NaN) */
    atomic_add_double(&m->bits, v);
}

void nh_metric_set(nh_metric *m, double v) {
    if (!m || m->fam->type != T_GAUGE) return;
    __atomic_store_n(&m->bits, to_bits(v), __ATOMIC_RELAXED);
}

void nh_metric_observe(nh_metric *m, double v) {
    if (!m || m->fam->type != T_HISTOGRAM || isnan(v)) return;
    const family *f = m->fam;
    size_t i = 0;
    while (i < f->nb && v > f->bounds[i])
        i++;
    __atomic_add_fetch(&m->buckets[i], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&m->count, 1, __ATOMIC_RELAXED);
    atomic_add_double(&m->sum_bits, v);
}

/* ---- collectors --------------------------------------------------------------------------- */

unsigned long nh_metrics_add_collector(nh_metrics_collect_fn fn, void *arg) {
    if (!fn) return 0;
    collector *c = calloc(1, sizeof *c);
    if (!c) return 0;
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_lock(&g_collect_mu);
    c->id = g_next_collector++;
    c->next = g_collectors;
    g_collectors = c;
    pthread_mutex_unlock(&g_collect_mu);
    return c->id;
}

void nh_metrics_remove_collector(unsigned long id) {
    pthread_mutex_lock(&g_collect_mu);
    for (collector **p = &g_collectors; *p; p = &(*p)->next) {
        if ((*p)->id == id) {
            collector *c = *p;
            *p = c->next;
            free(c);
            break;
        }
    }
    pthread_mutex_unlock(&g_collect_mu);
}

/* ---- rendering ---------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
    free(big);
}

/* A sample value in the text format. */
static const char *num(double v, char *buf, size_t size) {
    if (isnan(v)) return "NaN";
    if (isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    if (v == (double)(int64_t)v && fabs(v) < 1e15)
        snprintf(buf, size, "%lld", (long long)v);
    else /* the shortest form that reads back as the same double */
        for (int prec = 15; prec <= 17; prec++)
            if (snprintf(buf, size, "%.*g", prec, v) > 0 && strtod(buf, NULL) == v) break;
    return buf;
}

static void render_family(sbuf *b, const family *f) {
    sb_printf(b, "# HELP %s ", f->name);
    size_t hl = escape(NULL, f->help, false);
    char *h = malloc(hl + 1);
    if (h) {
        escape(h, f->help, false);
        sb_put(b, h, hl);
        free(h);
    }
    sb_printf(b, "\n# TYPE %s %s\n", f->name, type_name(f->type));
    char v[64], le[64];
    for (const nh_metric *m = f->series; m; m = m->next) {
        const char *open = m->labels[0] ? "{" : "", *close = m->labels[0] ? "}" : "";
        if (f->type != T_HISTOGRAM) {
            sb_printf(b, "%s%s%s%s %s\n", f->name, open, m->labels, close,
                      num(from_bits(__atomic_load_n(&m->bits, __ATOMIC_RELAXED)), v, sizeof v));
            continue;
        }
        /* Cumulative buckets from the per-bucket counts; _count is printed as the +Inf bucket
         * (the sum read), so the two always agree even while observations arrive. */
        uint64_t cum = 0;
        const char *sep = m->labels[0] ? "," : "";
        for (size_t i = 0; i < f->nb; i++) {
            cum += __atomic_load_n(&m->buckets[i], __ATOMIC_RELAXED);
            sb_printf(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, m->labels, sep,
                      num(f->bounds[i], le, sizeof le), (unsigned long long)cum);
        }
        cum += __atomic_load_n(&m->buckets[f->nb], __ATOMIC_RELAXED);
        sb_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", f->name, m->labels, sep,
                  (unsigned long long)cum);
        sb_printf(b, "%s_sum%s%s%s %s\n", f->name, open, m->labels, close,
                  num(from_bits(__atomic_load_n(&m->sum_bits, __ATOMIC_RELAXED)), v, sizeof v));
        sb_printf(b, "%s_count%s%s%s %llu\n", f->name, open, m->labels, close,
                  (unsigned long long)cum);
    }
}

size_t nh_metrics_render(char **out) {
    *out = NULL;
    sbuf b = {0};
    pthread_mutex_lock(&g_collect_mu);
    for (collector *c = g_collectors; c; c = c->next)
        c->fn(c->arg);
    lock();
    for (const family *f = g_families; f; f = f->next)
        render_family(&b, f);
    unlock();
    pthread_mutex_unlock(&g_collect_mu);
    if (!b.p) sb_put(&b, "", 0);
    if (b.oom) {
        free(b.p);
        return 0;
    }
    *out = b.p;
    return b.len;
}
