/* nh-storage-client: a client of the storage plugin (proto.Storage), for demos and tests.
 *
 *   nh-storage-client --nodes 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 write KEY VALUE
 *
 * One readable line per operation on stdout, with the node IDs involved and the time taken;
 * errors on stderr. Exit status 0 on success, 1 on any failure. See usage() for the commands. */
#include "storage.nh.h" /* generated from storage.proto */

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_NODES 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: nh-storage-client [--nodes LIST] [--timeout-ms N] COMMAND [ARGS]\n"
            "\n"
            "A client of the nodehost storage plugin (proto.Storage).\n"
            "\n"
            "options:\n"
            "  --nodes LIST      the storage nodes: ADDR,ADDR,... (IDs 1, 2, ... in order) or\n"
            "                    ID=ADDR,ID=ADDR,... (the IDs of the nodes' configuration)\n"
            "  --timeout-ms N    timeout of each call (default 5000)\n"
            "  --for-ms N        listen: stop after N ms (default 0: until interrupted)\n"
            "  --tls-ca FILE     connect with TLS: the nodes' certificates must be signed by\n"
            "                    this CA bundle and prove their IDs (nodehost://node/N)\n"
            "  --tls-cert FILE   present this client certificate (PEM) ...\n"
            "  --tls-key FILE    ... with this key (nodes with tls.clients: require need one)\n"
            "  -h, --help        this text\n"
            "\n"
            "commands:\n"
            "  write KEY VALUE           WriteQC on --nodes (majority), timestamped now\n"
            "  read KEY                  ReadQC on --nodes (majority), prints the newest value\n"
            "  multicast KEY VALUE       WriteMulticast to --nodes (one-way), timestamped now\n"
            "  nested NODE KEY           ReadNestedQC on one node: it reads from its own peers\n"
            "  notify NODE KEY VALUE     NotifyClients on one node: it calls every listening\n"
            "                            client and reports who acknowledged\n"
            "  listen                    connects to --nodes as a client peer (gorums-node-id 0)\n"
            "                            and prints every proto.StorageClient.Notify it gets\n"
            "  info                      Info on each --nodes node: the storage plugin's version,\n"
            "                            generation (1, +1 per reload that changed it) and keys\n"
            "\n"
            "NODE is an address (host:port) or the ID of a node in --nodes.\n");
}

/* ---- small helpers ------------------------------------------------------------------------ */

static int64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double ms_since(int64_t start) {
    return (double)(now_ns(CLOCK_MONOTONIC) - start) / 1e6;
}

/* "2024-05-01T12:00:00.123456789Z", or "-" for no timestamp. */
static const char *fmt_time(const Google__Protobuf__Timestamp *t, char *buf, size_t size) {
    if (!t) return "-";
    time_t secs = (time_t)t->seconds;
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        snprintf(buf, size, "%llds", (long long)t->seconds);
        return buf;
    }
    char date[40];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%09dZ", date, (int)t->nanos);
    return buf;
}

/* Appends the IDs as "1,2,3" ("none" when empty). */
static const char *fmt_ids(const uint32_t *ids, size_t n, char *buf, size_t size) {
    size_t off = 0;
    buf[0] = '\0';
    if (!n) snprintf(buf, size, "none");
    for (size_t i = 0; i < n && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, i ? ",%u" : "%u", ids[i]);
    return buf;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nh-storage-client: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* ---- nodes -------------------------------------------------------------------------------- */

typedef struct client {
    nh_node_addr nodes[MAX_NODES];
    char *addrs[MAX_NODES];
    size_t n;
    uint32_t timeout_ms;
    uint32_t for_ms;
    nh_runtime *rt;
    const char *tls_ca, *tls_cert, *tls_key; /* --tls-ca/--tls-cert/--tls-key */
    nh_tls *tls;                             /* NULL: plaintext */
} client;

static bool all_digits(const char *s, size_t n) {
    if (!n) return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return false;
    return true;
}

/* Parses --nodes: "ADDR,ADDR" or "ID=ADDR,ID=ADDR". */
static int parse_nodes(client *c, const char *list) {
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (c->n == MAX_NODES) {
            fail("--nodes: more than %d nodes", MAX_NODES);
            return -1;
        }
        if (len) {
            const char *eq = memchr(p, '=', len);
            uint32_t id = (uint32_t)c->n + 1;
            const char *addr = p;
            size_t alen = len;
            if (eq) {
                if (!all_digits(p, (size_t)(eq - p))) {
                    fail("--nodes: bad node ID in \"%.*s\"", (int)len, p);
                    return -1;
                }
                id = (uint32_t)strtoul(p, NULL, 10);
                addr = eq + 1;
                alen = len - (size_t)(eq - p) - 1;
            }
            c->addrs[c->n] = strndup(addr, alen);
            c->nodes[c->n] = (nh_node_addr){.id = id, .address = c->addrs[c->n]};
            c->n++;
        }
        p += len + (end ? 1 : 0);
    }
    if (!c->n) {
        fail("--nodes: no nodes given");
        return -1;
    }
    return 0;
}

/* A configuration of every --nodes node, announcing `announce` as gorums-node-id (or nothing). */
static nh_config *open_all(client *c, const char *announce) {
    if (!c->n) {
        fail("--nodes is required for this command");
        return NULL;
    }
    nh_metadata md[] = {{"gorums-node-id", announce}};
    nh_config_opts o = {.nodes = c->nodes,
                        .count = c->n,
                        .metadata = md,
                        .metadata_count = announce ? 1 : 0,
                        .backoff_base_ms = 100,
                        .backoff_max_ms = 1000,
                        .tls = c->tls};
    nh_config *cfg;
    nh_error err;
    if (nh_config_new(c->rt, &o, &cfg, &err) != 0) {
        fail("%s", err.message);
        return NULL;
    }
    return cfg;
}

/* A configuration of one node: NODE is an ID of --nodes or an address (ID from --nodes when it is
 * listed there, else 1). */
static nh_config *open_one(client *c, const char *node) {
    nh_node_addr one = {.id = 1, .address = node};
    bool found = false;
    for (size_t i = 0; i < c->n && !found; i++) {
        if (all_digits(node, strlen(node)) && c->nodes[i].id == strtoul(node, NULL, 10))
            found = true;
        if (!strcmp(node, c->nodes[i].address)) found = true;
        if (found) one = c->nodes[i];
    }
    if (!found && all_digits(node, strlen(node))) {
        fail("node %s is not in --nodes", node);
        return NULL;
    }
    if (!found) one.identity = "*"; /* an address alone: any certificate of the CA */
    nh_config_opts o = {.nodes = &one, .count = 1, .tls = c->tls};
    nh_config *cfg;
    nh_error err;
    if (nh_config_new(c->rt, &o, &cfg, &err) != 0) {
        fail("%s", err.message);
        return NULL;
    }
    return cfg;
}

/* Waits until every node of cfg is connected (or the timeout); returns how many are. */
static size_t wait_connected(const nh_config *cfg, uint32_t timeout_ms) {
    int64_t start = now_ns(CLOCK_MONOTONIC);
    for (;;) {
        size_t up = 0;
        for (size_t i = 0; i < nh_config_size(cfg); i++)
            if (nh_node_connected(nh_config_node(cfg, i))) up++;
        if (up == nh_config_size(cfg) || ms_since(start) >= timeout_ms) return up;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static Google__Protobuf__Timestamp now_timestamp(void) {
    Google__Protobuf__Timestamp t = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    int64_t ns = now_ns(CLOCK_REALTIME);
    t.seconds = ns / 1000000000;
    t.nanos = (int32_t)(ns % 1000000000);
    return t;
}

/* A write of key=value stamped with *t (borrowed). */
static Proto__WriteRequest write_request(const char *key, const char *value,
                                         Google__Protobuf__Timestamp *t) {
    Proto__WriteRequest req = PROTO__WRITE_REQUEST__INIT;
    req.key = (char *)key;
    req.value = (char *)value;
    req.time = t;
    return req;
}

/* ---- commands ----------------------------------------------------------------------------- */

static int cmd_write(client *c, const char *key, const char *value) {
    nh_config *cfg = open_all(c, NULL);
    if (!cfg) return 1;
    wait_connected(cfg, c->timeout_ms);
    Google__Protobuf__Timestamp t = now_timestamp();
    Proto__WriteRequest req = write_request(key, value, &t);
    proto_storage_write_qc_opts o = {.call = {.timeout_ms = c->timeout_ms}};
    nh_qc_outcome out = {0};
    nh_error err;
    int64_t start = now_ns(CLOCK_MONOTONIC);
    int rc = proto_storage_write_qc(cfg, &req, &o, NULL, &out, &err);
    double ms = ms_since(start);
    uint32_t fresh[MAX_NODES], old[MAX_NODES];
    size_t nf = 0, no = 0;
    for (size_t i = 0; i < out.n_replies && nf + no < MAX_NODES; i++) {
        if (out.replies[i].err.code != NH_OK) continue;
        Proto__WriteResponse *w =
            proto__write_response__unpack(NULL, out.replies[i].len, out.replies[i].payload);
        if (!w) continue;
        if (w->new_)
            fresh[nf++] = out.replies[i].node_id;
        else
            old[no++] = out.replies[i].node_id;
        proto__write_response__free_unpacked(w, NULL);
    }
    char a[256], d[300] = "";
    if (no) {
        char list[256];
        snprintf(d, sizeof d, ", not newer on nodes %s", fmt_ids(old, no, list, sizeof list));
    }
    if (rc == 0)
        printf("write %s=%s: ok (majority of %zu), new on nodes %s%s, %.2f ms\n", key, value,
               nh_config_size(cfg), fmt_ids(fresh, nf, a, sizeof a), d, ms);
    else
        fail("write %s=%s: %s (%.2f ms)", key, value, err.message, ms);
    nh_qc_outcome_free(&out);
    nh_config_unref(cfg);
    return rc == 0 ? 0 : 1;
}

static void print_read(const char *what, const char *key, const Proto__ReadResponse *r,
                       const char *detail, double ms) {
    char tb[64];
    if (r->ok)
        printf("%s %s: \"%s\" (time %s, %s), %.2f ms\n", what, key, r->value,
               fmt_time(r->time, tb, sizeof tb), detail, ms);
    else
        printf("%s %s: not found (%s), %.2f ms\n", what, key, detail, ms);
}

/* True when a is a better read than b: it found the key and b did not, or both found it and a's
 * timestamp is newer (a missing one is the zero time, as Go's AsTime of nil). */
static bool newer(const Proto__ReadResponse *a, const Proto__ReadResponse *b) {
    if (a->ok != b->ok) return a->ok;
    int64_t as = a->time ? a->time->seconds : 0, bs = b->time ? b->time->seconds : 0;
    int32_t an = a->time ? a->time->nanos : 0, bn = b->time ? b->time->nanos : 0;
    return a->ok && (as != bs ? as > bs : an > bn);
}

/* ReadQC's quorum function: waits for a majority of the configuration to answer with a
 * ReadResponse, then decides on the newest of them (the first on ties). user: the winner's
 * node ID goes there. */
static nh_qf_verdict newest(const Proto__ReadResponse *const *replies, const nh_node_reply *raw,
                            size_t n, size_t config_size, void *user,
                            const Proto__ReadResponse **result) {
    size_t decoded = 0, best = 0;
    for (size_t i = 0; i < n; i++) {
        if (!replies[i]) continue; /* an error, or a reply that does not decode */
        if (decoded++ == 0 || newer(replies[i], replies[best])) best = i;
    }
    if (decoded < config_size / 2 + 1) return NH_QF_MORE;
    *(uint32_t *)user = raw[best].node_id;
    *result = replies[best];
    return NH_QF_DONE;
}

static int cmd_read(client *c, const char *key) {
    nh_config *cfg = open_all(c, NULL);
    if (!cfg) return 1;
    wait_connected(cfg, c->timeout_ms);
    Proto__ReadRequest req = PROTO__READ_REQUEST__INIT;
    req.key = (char *)key;
    uint32_t winner = 0;
    proto_storage_read_qc_opts o = {
        .call = {.timeout_ms = c->timeout_ms}, .qf = newest, .qf_user = &winner};
    Proto__ReadResponse *r;
    nh_qc_outcome out = {0};
    nh_error err;
    int64_t start = now_ns(CLOCK_MONOTONIC);
    int rc = proto_storage_read_qc(cfg, &req, &o, &r, &out, &err);
    double ms = ms_since(start);
    if (rc == 0) {
        uint32_t ids[MAX_NODES];
        size_t k = 0;
        for (size_t i = 0; i < out.n_replies && k < MAX_NODES; i++)
            if (out.replies[i].err.code == NH_OK) ids[k++] = out.replies[i].node_id;
        char list[256], detail[320];
        fmt_ids(ids, k, list, sizeof list);
        if (r->ok)
            snprintf(detail, sizeof detail, "newest from node %u; replies from nodes %s", winner,
                     list);
        else
            snprintf(detail, sizeof detail, "replies from nodes %s", list);
        print_read("read", key, r, detail, ms);
        proto__read_response__free_unpacked(r, NULL);
    } else {
        fail("read %s: %s (%.2f ms)", key, err.message, ms);
    }
    nh_qc_outcome_free(&out);
    nh_config_unref(cfg);
    return rc == 0 ? 0 : 1;
}

static int cmd_multicast(client *c, const char *key, const char *value) {
    nh_config *cfg = open_all(c, NULL);
    if (!cfg) return 1;
    wait_connected(cfg, c->timeout_ms);
    Google__Protobuf__Timestamp t = now_timestamp();
    Proto__WriteRequest req = write_request(key, value, &t);
    proto_storage_write_multicast_opts o = {.call = {.timeout_ms = c->timeout_ms}};
    nh_error err;
    int64_t start = now_ns(CLOCK_MONOTONIC);
    int rc = proto_storage_write_multicast(cfg, &req, &o, &err);
    double ms = ms_since(start);
    uint32_t ids[MAX_NODES];
    size_t n = nh_config_ids(cfg, ids, MAX_NODES); /* the size: may exceed MAX_NODES */
    char list[256];
    if (rc == 0)
        printf("multicast %s=%s: sent to nodes %s, %.2f ms\n", key, value,
               fmt_ids(ids, n < MAX_NODES ? n : MAX_NODES, list, sizeof list), ms);
    else
        fail("multicast %s=%s: %s (%.2f ms)", key, value, err.message, ms);
    nh_config_unref(cfg);
    return rc == 0 ? 0 : 1;
}

/* nested: ReadNestedQC on one node (a quorum call over a configuration of that node). */
static int cmd_nested(client *c, const char *node, const char *key) {
    nh_config *cfg = open_one(c, node);
    if (!cfg) return 1;
    uint32_t id = nh_node_id(nh_config_node(cfg, 0));
    wait_connected(cfg, c->timeout_ms);
    Proto__ReadRequest req = PROTO__READ_REQUEST__INIT;
    req.key = (char *)key;
    proto_storage_read_nested_qc_opts o = {.call = {.timeout_ms = c->timeout_ms}};
    Proto__ReadResponse *r;
    nh_error err;
    int64_t start = now_ns(CLOCK_MONOTONIC);
    int rc = proto_storage_read_nested_qc(cfg, &req, &o, &r, NULL, &err);
    double ms = ms_since(start);
    if (rc == 0) {
        char detail[64];
        snprintf(detail, sizeof detail, "read by node %u from its peers", id);
        print_read("nested", key, r, detail, ms);
        proto__read_response__free_unpacked(r, NULL);
    } else {
        fail("nested %s via node %u: %s (%.2f ms)", key, id, err.message, ms);
    }
    nh_config_unref(cfg);
    return rc == 0 ? 0 : 1;
}

static int cmd_notify(client *c, const char *node, const char *key, const char *value) {
    nh_config *cfg = open_one(c, node);
    if (!cfg) return 1;
    uint32_t id = nh_node_id(nh_config_node(cfg, 0));
    wait_connected(cfg, c->timeout_ms);
    Google__Protobuf__Timestamp t = now_timestamp();
    Proto__WriteRequest req = write_request(key, value, &t);
    nh_call_opts o = {.timeout_ms = c->timeout_ms};
    Proto__NotifyResponse *r;
    nh_error err;
    int64_t start = now_ns(CLOCK_MONOTONIC);
    int rc = proto_storage_notify_clients(nh_config_node(cfg, 0), &req, &o, &r, &err);
    double ms = ms_since(start);
    if (rc == 0) {
        char list[512];
        printf("notify %s=%s via node %u: acked by %u client%s (%s), %.2f ms\n", key, value, id,
               r->acked, r->acked == 1 ? "" : "s",
               fmt_ids(r->clientids, r->n_clientids, list, sizeof list), ms);
        proto__notify_response__free_unpacked(r, NULL);
    } else {
        fail("notify %s=%s via node %u: %s (%.2f ms)", key, value, id, err.message, ms);
    }
    nh_config_unref(cfg);
    return rc == 0 ? 0 : 1;
}

/* info: proto.Storage.Info on every --nodes node, one line each ("node N: storage VERSION
 * generation G, K keys"); a node that fails gets a line on stderr and makes the exit status 1. */
static int cmd_info(client *c) {
    if (!c->n) {
        fail("--nodes is required for this command");
        return 1;
    }
    int status = 0;
    for (size_t i = 0; i < c->n; i++) {
        nh_config_opts co = {.nodes = &c->nodes[i], .count = 1};
        nh_config *cfg;
        nh_error err;
        if (nh_config_new(c->rt, &co, &cfg, &err) != 0) {
            fail("info: node %u (%s): %s", c->nodes[i].id, c->nodes[i].address, err.message);
            status = 1;
            continue;
        }
        wait_connected(cfg, c->timeout_ms);
        Google__Protobuf__Empty req = GOOGLE__PROTOBUF__EMPTY__INIT;
        nh_call_opts o = {.timeout_ms = c->timeout_ms};
        Proto__InfoResponse *r;
        int64_t start = now_ns(CLOCK_MONOTONIC);
        if (proto_storage_info(nh_config_node(cfg, 0), &req, &o, &r, &err) == 0) {
            printf("node %u: storage %s generation %llu, %llu keys\n", c->nodes[i].id, r->version,
                   (unsigned long long)r->generation, (unsigned long long)r->keys);
            proto__info_response__free_unpacked(r, NULL);
        } else {
            if (strstr(err.message, c->nodes[i].address)) /* the error names the node */
                fail("info: %s (%.2f ms)", err.message, ms_since(start));
            else
                fail("info: node %u (%s): %s (%.2f ms)", c->nodes[i].id, c->nodes[i].address,
                     err.message, ms_since(start));
            status = 1;
        }
        nh_config_unref(cfg);
    }
    return status;
}

/* listen: the back-channel handler of proto.StorageClient.Notify (runs on the owner thread). */
static atomic_uint g_notifications;

static void on_notify(nh_server_ctx *ctx, const Proto__WriteRequest *w, void *user) {
    (void)user;
    char tb[64];
    printf("notification from node %u: %s=%s (time %s)\n", nh_ctx_peer_id(ctx), w->key, w->value,
           fmt_time(w->time, tb, sizeof tb));
    fflush(stdout);
    atomic_fetch_add(&g_notifications, 1);
    Proto__WriteResponse resp = PROTO__WRITE_RESPONSE__INIT;
    resp.new_ = true;
    proto_storage_client_notify_reply(ctx, &resp);
}

static int cmd_listen(client *c, const sigset_t *stop_signals) {
    nh_error err;
    if (proto_storage_client_notify_serve(c->rt, on_notify, NULL, &err) != 0) {
        fail("%s", err.message);
        return 1;
    }
    nh_config *cfg = open_all(c, "0");
    if (!cfg) return 1;
    int64_t start = now_ns(CLOCK_MONOTONIC);
    size_t up = wait_connected(cfg, c->timeout_ms);
    uint32_t ids[MAX_NODES];
    size_t n = nh_config_ids(cfg, ids, MAX_NODES); /* the size: may exceed MAX_NODES */
    char list[256];
    printf("listen: client peer of nodes %s, %zu of %zu connected, %.2f ms\n",
           fmt_ids(ids, n < MAX_NODES ? n : MAX_NODES, list, sizeof list), up, n, ms_since(start));
    fflush(stdout);
    for (;;) {
        struct timespec ts = {1, 0};
        if (c->for_ms) {
            double left = (double)c->for_ms - ms_since(start);
            if (left <= 0) break;
            if (left < 1000) ts = (struct timespec){0, (long)(left * 1e6)};
        }
        int sig = sigtimedwait(stop_signals, NULL, &ts);
        if (sig > 0) break;
    }
    printf("listen: %u notification%s in %.0f ms\n", atomic_load(&g_notifications),
           atomic_load(&g_notifications) == 1 ? "" : "s", ms_since(start));
    fflush(stdout);
    nh_config_unref(cfg);
    return 0;
}

/* ---- main --------------------------------------------------------------------------------- */

static bool parse_u32(const char *s, uint32_t *out) {
    if (!all_digits(s, strlen(s)) || strlen(s) > 9) return false;
    *out = (uint32_t)strtoul(s, NULL, 10);
    return true;
}

int main(int argc, char **argv) {
    client c = {.timeout_ms = 5000};
    static const struct option opts[] = {
        {"nodes", required_argument, NULL, 'n'},    {"timeout-ms", required_argument, NULL, 't'},
        {"for-ms", required_argument, NULL, 'f'},   {"tls-ca", required_argument, NULL, 'A'},
        {"tls-cert", required_argument, NULL, 'C'}, {"tls-key", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    int status = 1;
    int o;
    while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (o) {
            case 'n':
                if (parse_nodes(&c, optarg) != 0) goto out;
                break;
            case 't':
                if (!parse_u32(optarg, &c.timeout_ms) || !c.timeout_ms) {
                    fail("--timeout-ms: a positive number of milliseconds, not \"%s\"", optarg);
                    goto out;
                }
                break;
            case 'f':
                if (!parse_u32(optarg, &c.for_ms)) {
                    fail("--for-ms: a number of milliseconds, not \"%s\"", optarg);
                    goto out;
                }
                break;
            case 'A':
                c.tls_ca = optarg;
                break;
            case 'C':
                c.tls_cert = optarg;
                break;
            case 'K':
                c.tls_key = optarg;
                break;
            case 'h':
                usage(stdout);
                status = 0;
                goto out;
            default:
                usage(stderr);
                goto out;
        }
    }
    argc -= optind;
    argv += optind;
    /* listen accepts --for-ms after the command too */
    if (argc >= 1 && !strcmp(argv[0], "listen") && argc == 3 && !strcmp(argv[1], "--for-ms")) {
        if (!parse_u32(argv[2], &c.for_ms)) {
            fail("--for-ms: a number of milliseconds, not \"%s\"", argv[2]);
            goto out;
        }
        argc = 1;
    }
    static const struct {
        const char *name;
        int args;
    } cmds[] = {{"write", 2},  {"read", 1},   {"multicast", 2}, {"nested", 2},
                {"notify", 3}, {"listen", 0}, {"info", 0}};
    int cmd = -1;
    for (size_t i = 0; argc >= 1 && i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[0], cmds[i].name)) cmd = (int)i;
    if (cmd < 0 || argc - 1 != cmds[cmd].args) {
        if (argc < 1)
            fail("no command given (see --help)");
        else if (cmd < 0)
            fail("unknown command \"%s\" (see --help)", argv[0]);
        else
            fail("%s takes %d argument%s (see --help)", argv[0], cmds[cmd].args,
                 cmds[cmd].args == 1 ? "" : "s");
        goto out;
    }

    /* Signals that stop `listen`, blocked in every thread (the runtime's threads inherit it). */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    nh_error err;
    if (c.tls_ca || c.tls_cert || c.tls_key) {
        if (!c.tls_ca) {
            fail("--tls-cert and --tls-key need --tls-ca");
            goto out;
        }
        nh_tls_opts to = {.ca_file = c.tls_ca, .cert_file = c.tls_cert, .key_file = c.tls_key};
        if (nh_tls_new(&to, &c.tls, NULL, &err) != 0) {
            fail("%s", err.message);
            goto out;
        }
    }
    nh_runtime_opts ro = {.name = "storage-client"};
    if (nh_runtime_new(&ro, &c.rt, &err) != 0) {
        fail("%s", err.message);
        goto out;
    }
    char **a = argv + 1;
    switch (cmd) {
        case 0:
            status = cmd_write(&c, a[0], a[1]);
            break;
        case 1:
            status = cmd_read(&c, a[0]);
            break;
        case 2:
            status = cmd_multicast(&c, a[0], a[1]);
            break;
        case 3:
            status = cmd_nested(&c, a[0], a[1]);
            break;
        case 4:
            status = cmd_notify(&c, a[0], a[1], a[2]);
            break;
        case 5:
            status = cmd_listen(&c, &stop);
            break;
        default:
            status = cmd_info(&c);
            break;
    }
    fflush(stdout);
    nh_runtime_free(c.rt);
out:
    for (size_t i = 0; i < c.n; i++)
        free(c.addrs[i]);
    nh_tls_unref(c.tls);
    return status;
}
