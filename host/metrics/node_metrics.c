/* The node's metrics gathered at scrape time (a collector of the SDK's registry) and its
 * readiness. Everything here runs on the HTTP thread: configurations and nodes are read through
 * their thread-safe accessors; the plugin host (owner thread only) is read by a task posted to
 * the owner thread, waited for up to a second. */
#include "metrics/node_metrics.h"

#include <nodehost/nodehost.h>

#include <math.h>

#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#define MAX_PEER_SERIES 64 /* peers whose series are kept (the membership is small) */

typedef struct peer_series {
    uint32_t id;
    nh_metric *connected, *latency, *breaks;
    double breaks_seen;
    nh_metric *error_by_code[17];
    int last_code; /* the code whose series is 1, -1 none */
} peer_series;

struct nh_node_metrics {
    nh_admin_source *src;
    unsigned long collector;
    nh_metric *config, *client_config, *members, *reachable, *ready, *info;
    nh_metric *reloads_ok, *reloads_failed;
    double reloads_ok_seen, reloads_failed_seen;
    nh_metric *cpu, *rss, *vsize, *fds, *max_fds, *start, *threads;
    double cpu_seen;
    peer_series peers[MAX_PEER_SERIES];
    size_t npeers;
    nh_metric *gens[64];
    char *gen_names[64];
    size_t ngens;
};

static nh_metric *gauge(const char *name, const char *help) {
    return nh_metric_gauge(name, help, NULL, 0, NULL);
}

bool nh_node_ready(const nh_admin_source *src, char *why, size_t why_size) {
    if (!__atomic_load_n(&src->plugins, __ATOMIC_ACQUIRE)) {
        snprintf(why, why_size, "starting (plugins not serving yet)");
        return false;
    }
    nh_config *m = nh_server_members(src->srv);
    size_t n = nh_config_size(m), up = nh_config_reachable(m);
    nh_config_unref(m);
    size_t need = n / 2 + 1;
    if (n && up < need) {
        snprintf(why, why_size, "%zu of %zu members reachable, a majority needs %zu", up, n, need);
        return false;
    }
    why[0] = '\0';
    return true;
}

/* ---- peers -------------------------------------------------------------------------------- */

static peer_series *peer_of(nh_node_metrics *nm, uint32_t id) {
    for (size_t i = 0; i < nm->npeers; i++)
        if (nm->peers[i].id == id) return &nm->peers[i];
    if (nm->npeers == MAX_PEER_SERIES) return NULL;
    peer_series *p = &nm->peers[nm->npeers++];
    memset(p, 0, sizeof *p);
    p->id = id;
    p->last_code = -1;
    char idbuf[16];
    snprintf(idbuf, sizeof idbuf, "%u", id);
    nh_metric_label l = {"peer", idbuf};
    p->connected = nh_metric_gauge("nodehost_peer_connected",
                                   "1 while the peer is connected both ways (its stream to this "
                                   "node and this node's to it).",
                                   &l, 1, NULL);
    p->latency = nh_metric_gauge("nodehost_peer_latency_seconds",
                                 "Moving average of call round trips to the peer (NaN before "
                                 "the first).",
                                 &l, 1, NULL);
    p->breaks = nh_metric_counter("nodehost_peer_reconnects_total",
                                  "Times this node's connected stream to the peer broke (it then "
                                  "reconnects).",
                                  &l, 1, NULL);
    return p;
}

/* Per known peer: connected and latency from the peer as a member (its stream to this node:
 * server-initiated calls go there), else from the stream this node dials; reconnects and the
 * last error from the stream this node dials (where connects happen). */
static void collect_peers(nh_node_metrics *nm) {
    nh_config *out = nh_server_outbound_config(nm->src->srv);
    nh_config *members = nh_server_members(nm->src->srv);
    size_t n = nh_config_size(out);
    for (size_t i = 0; i < n; i++) {
        nh_node *node = nh_config_node(out, i);
        nh_node *member = nh_config_find(members, nh_node_id(node));
        peer_series *p = peer_of(nm, nh_node_id(node));
        if (!p) break;
        bool up = nh_node_connected(node) && (!member || nh_node_connected(member));
        nh_metric_set(p->connected, up ? 1 : 0);
        int64_t lat = member ? nh_node_latency_ns(member) : -1;
        if (lat < 0) lat = nh_node_latency_ns(node);
        nh_metric_set(p->latency, lat < 0 ? (double)NAN : (double)lat / 1e9);
        double b = (double)nh_node_breaks(node);
        if (b > p->breaks_seen) nh_metric_add(p->breaks, b - p->breaks_seen);
        p->breaks_seen = b;
        /* The last transport error, as an info series by code: 1 for the current one. */
        nh_error e;
        int code = nh_node_last_error(node, &e) ? (int)e.code : -1;
        if (code >= 17) code = 2;
        if (code != p->last_code) {
            if (p->last_code >= 0) nh_metric_set(p->error_by_code[p->last_code], 0);
            if (code >= 0) {
                if (!p->error_by_code[code]) {
                    char idbuf[16];
                    snprintf(idbuf, sizeof idbuf, "%u", p->id);
                    nh_metric_label l[2] = {{"peer", idbuf}, {"code", nh_code_name((nh_code)code)}};
                    p->error_by_code[code] = nh_metric_gauge(
                        "nodehost_peer_last_error",
                        "1 for the gRPC code of the last transport error seen with the peer "
                        "(0 for earlier codes).",
                        l, 2, NULL);
                }
                nh_metric_set(p->error_by_code[code], 1);
            }
            p->last_code = code;
        }
    }
    nh_config_unref(members);
    nh_config_unref(out);
}

/* ---- plugins, on the owner thread ---------------------------------------------------------- */

typedef struct plugin_probe {
    int refs; /* atomic: the waiter and the task */
    sem_t done;
    const nh_plugin_host *ph;
    size_t n;
    char names[64][64];
    double gens[64];
} plugin_probe;

static void probe_unref(plugin_probe *p) {
    if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        sem_destroy(&p->done);
        free(p);
    }
}

static void probe_on_owner(void *arg) {
    plugin_probe *p = arg;
    size_t n = nh_plugin_host_count(p->ph);
    for (size_t i = 0; i < n && p->n < 64; i++) {
        nh_plugin_status st;
        nh_plugin_host_status(p->ph, i, &st);
        snprintf(p->names[p->n], sizeof p->names[0], "%s", st.name);
        p->gens[p->n++] = 1.0 + (double)st.old_generations;
    }
    sem_post(&p->done);
    probe_unref(p);
}

static void collect_plugins(nh_node_metrics *nm) {
    const nh_plugin_host *ph = __atomic_load_n(&nm->src->plugins, __ATOMIC_ACQUIRE);
    if (!ph) return;
    plugin_probe *p = calloc(1, sizeof *p);
    if (!p) return;
    p->refs = 2;
    p->ph = ph;
    sem_init(&p->done, 0, 0);
    if (nh_runtime_post(nm->src->rt, probe_on_owner, p) != 0) {
        p->refs = 1;
        probe_unref(p);
        return;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    int w;
    while ((w = sem_timedwait(&p->done, &until)) != 0 && errno == EINTR) {
    }
    if (w == 0) {
        for (size_t i = 0; i < p->n; i++) {
            size_t k = 0;
            while (k < nm->ngens && strcmp(nm->gen_names[k], p->names[i]) != 0)
                k++;
            if (k == nm->ngens && k < 64) {
                nh_metric_label l = {"plugin", p->names[i]};
                nm->gens[k] = nh_metric_gauge("nodehost_plugin_generations",
                                              "Generations of a plugin alive: the serving one "
                                              "plus old ones still finishing their calls.",
                                              &l, 1, NULL);
                nm->gen_names[k] = strdup(p->names[i]);
                if (nm->gen_names[k]) nm->ngens++;
            }
            if (k < nm->ngens) nh_metric_set(nm->gens[k], p->gens[i]);
        }
    }
    probe_unref(p);
}

/* ---- the process ---------------------------------------------------------------------------- */

static void collect_process(nh_node_metrics *nm) {
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return;
    /* Fields after the name, numbered from 3 (state): utime 14, stime 15, num_threads 20,
     * starttime 22, vsize 23, rss 24. */
    unsigned long long v[25] = {0};
    int field = 3;
    for (const char *s = p + 2; *s && field <= 24; field++) {
        char *end;
        v[field] = strtoull(s, &end, 10);
        if (end == s) end = (char *)s + 1; /* the state letter */
        s = end;
        while (*s == ' ')
            s++;
    }
    double tick = (double)sysconf(_SC_CLK_TCK);
    double cpu = (double)(v[14] + v[15]) / tick;
    if (cpu > nm->cpu_seen) nh_metric_add(nm->cpu, cpu - nm->cpu_seen);
    nm->cpu_seen = cpu;
    nh_metric_set(nm->threads, (double)v[20]);
    nh_metric_set(nm->vsize, (double)v[23]);
    nh_metric_set(nm->rss, (double)v[24] * (double)sysconf(_SC_PAGESIZE));
    /* Start time: boot time + starttime ticks. */
    FILE *st = fopen("/proc/stat", "r");
    if (st) {
        char line[256];
        while (fgets(line, sizeof line, st))
            if (!strncmp(line, "btime ", 6)) {
                nh_metric_set(nm->start,
                              (double)strtoull(line + 6, NULL, 10) + (double)v[22] / tick);
                break;
            }
        fclose(st);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        double fds = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.') fds++;
        closedir(d);
        nh_metric_set(nm->fds, fds - 1); /* the directory's own descriptor */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) nh_metric_set(nm->max_fds, (double)rl.rlim_cur);
}

/* ---- the collector -------------------------------------------------------------------------- */

static void collect(void *arg) {
    nh_node_metrics *nm = arg;
    nh_admin_source *src = nm->src;
    nh_config *c = nh_server_config(src->srv);
    nh_metric_set(nm->config, (double)nh_config_size(c));
    nh_config_unref(c);
    c = nh_server_client_config(src->srv);
    nh_metric_set(nm->client_config, (double)nh_config_size(c));
    nh_config_unref(c);
    c = nh_server_members(src->srv);
    nh_metric_set(nm->members, (double)nh_config_size(c));
    nh_metric_set(nm->reachable, (double)nh_config_reachable(c));
    nh_config_unref(c);
    char why[200];
    nh_metric_set(nm->ready, nh_node_ready(src, why, sizeof why) ? 1 : 0);
    nh_reloader *rl = __atomic_load_n(&src->reloader, __ATOMIC_ACQUIRE);
    if (rl) {
        nh_reload_stats rs;
        nh_reloader_stats(rl, &rs);
        double ok = (double)(rs.reloads - rs.failures), failed = (double)rs.failures;
        if (ok > nm->reloads_ok_seen) nh_metric_add(nm->reloads_ok, ok - nm->reloads_ok_seen);
        if (failed > nm->reloads_failed_seen)
            nh_metric_add(nm->reloads_failed, failed - nm->reloads_failed_seen);
        nm->reloads_ok_seen = ok;
        nm->reloads_failed_seen = failed;
    }
    collect_peers(nm);
    collect_plugins(nm);
    collect_process(nm);
}

nh_node_metrics *nh_node_metrics_start(nh_admin_source *src) {
    nh_node_metrics *nm = calloc(1, sizeof *nm);
    if (!nm) return NULL;
    nm->src = src;
    nm->config = gauge("nodehost_config_nodes", "Nodes in this node's Config (itself and the "
                                                "connected known peers).");
    nm->client_config =
        gauge("nodehost_client_config_nodes", "Client peers in this node's ClientConfig.");
    nm->members = gauge("nodehost_members", "Members of the cluster (this node and every known "
                                            "peer, connected or not).");
    nm->reachable = gauge("nodehost_members_reachable",
                          "Members reachable now (this node and the connected known peers).");
    nm->ready = gauge("nodehost_ready", "1 when the node is ready (see /readyz).");
    char id[16];
    snprintf(id, sizeof id, "%u", src->node_id);
    nh_metric_label info[2] = {{"version", nh_version()}, {"node", id}};
    nm->info = nh_metric_gauge("nodehost_build_info", "The node's ID and nodehost version.", info,
                               2, NULL);
    nh_metric_set(nm->info, 1);
    nh_metric_label ok = {"outcome", "ok"}, bad = {"outcome", "failed"};
    nm->reloads_ok =
        nh_metric_counter("nodehost_reloads_total", "Reloads, by outcome.", &ok, 1, NULL);
    nm->reloads_failed =
        nh_metric_counter("nodehost_reloads_total", "Reloads, by outcome.", &bad, 1, NULL);
    nm->cpu = nh_metric_counter("nodehost_process_cpu_seconds_total",
                                "User and system CPU time of the process.", NULL, 0, NULL);
    nm->rss = gauge("nodehost_process_resident_memory_bytes", "Resident memory of the process.");
    nm->vsize = gauge("nodehost_process_virtual_memory_bytes", "Virtual memory of the process.");
    nm->fds = gauge("nodehost_process_open_fds", "Open file descriptors.");
    nm->max_fds = gauge("nodehost_process_max_fds", "The limit of open file descriptors.");
    nm->start = gauge("nodehost_process_start_time_seconds",
                      "Start time of the process since the Unix epoch.");
    nm->threads = gauge("nodehost_process_threads", "Threads of the process.");
    nm->collector = nh_metrics_add_collector(collect, nm);
    if (!nm->collector) {
        free(nm);
        return NULL;
    }
    return nm;
}

void nh_node_metrics_stop(nh_node_metrics *nm) {
    if (!nm) return;
    nh_metrics_remove_collector(nm->collector);
    for (size_t i = 0; i < nm->ngens; i++)
        free(nm->gen_names[i]);
    free(nm);
}
