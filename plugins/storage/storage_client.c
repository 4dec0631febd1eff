/* nh-storage-client: a client of the storage plugin (proto.Storage), for demos and tests: one
 * readable line per operation on stdout, with the node IDs involved and the time taken; errors on
 * stderr. Exit status 0 on success, 1 on any failure. See usage() for the commands. */
#include "storage.nh.h" /* generated from storage.proto */

#include <err.h>
#include <getopt.h>
#include <signal.h>
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
    size_t n = gmtime_r(&secs, &tm) ? strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm) : 0;
    if (n)
        snprintf(buf + n, size - n, ".%09dZ", (int)t->nanos);
    else
        snprintf(buf, size, "%llds", (long long)t->seconds);
    return buf;
}

/* The IDs as "1,2,3" ("none" when empty). */
static const char *fmt_ids(const uint32_t *ids, size_t n, char *buf, size_t size) {
    size_t off = 0;
    snprintf(buf, size, "none");
    for (size_t i = 0; i < n && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, i ? ",%u" : "%u", ids[i]);
    return buf;
}

/* The IDs of cfg as "1,2,3". */
static const char *fmt_config(const nh_config *cfg, char *buf, size_t size) {
    uint32_t ids[MAX_NODES];
    size_t n = nh_config_ids(cfg, ids, MAX_NODES); /* the size: may exceed MAX_NODES */
    return fmt_ids(ids, n < MAX_NODES ? n : MAX_NODES, buf, size);
}

/* Whether n > 0 and the first n characters of s are all digits. */
static bool all_digits(const char *s, size_t n) {
    return n && strspn(s, "0123456789") >= n;
}

/* --timeout-ms, --for-ms: a number of milliseconds (not 0 when positive is set). */
static bool parse_ms(const char *s, const char *opt, bool positive, uint32_t *out) {
    bool ok = all_digits(s, strlen(s)) && strlen(s) <= 9;
    if (ok) *out = (uint32_t)strtoul(s, NULL, 10);
    if (!ok || (positive && !*out))
        warnx("%s: a %snumber of milliseconds, not \"%s\"", opt, positive ? "positive " : "", s);
    return ok && (*out || !positive);
}

typedef struct client {
    nh_node_addr nodes[MAX_NODES]; /* --nodes (addresses owned) */
    size_t n;
    uint32_t timeout_ms, for_ms;
    nh_runtime *rt;
    nh_tls *tls;   /* NULL: plaintext */
    sigset_t stop; /* the signals that stop listen */
    int64_t start; /* when the command's call started (after its nodes connected) */
} client;

/* Parses --nodes: "ADDR,ADDR" or "ID=ADDR,ID=ADDR". */
static int parse_nodes(client *c, const char *list) {
    for (const char *next = list; *next;) {
        const char *p = next, *eq = memchr(p, '=', strcspn(p, ","));
        size_t len = strcspn(p, ",");
        next += len + (p[len] == ',');
        if (!len) continue;
        if (c->n == MAX_NODES) {
            warnx("--nodes: more than %d nodes", MAX_NODES);
            return -1;
        }
        if (eq && !all_digits(p, (size_t)(eq - p))) {
            warnx("--nodes: bad node ID in \"%.*s\"", (int)len, p);
            return -1;
        }
        c->nodes[c->n] = (nh_node_addr){
            .id = eq ? (uint32_t)strtoul(p, NULL, 10) : (uint32_t)c->n + 1,
            .address = eq ? strndup(eq + 1, len - (size_t)(eq - p) - 1) : strndup(p, len)};
        c->n++;
    }
    if (!c->n) warnx("--nodes: no nodes given");
    return c->n ? 0 : -1;
}

/* A configuration of nodes, announcing `announce` as gorums-node-id (or nothing); NULL after
 * saying why. */
static nh_config *open_nodes(client *c, const nh_node_addr *nodes, size_t n, const char *announce) {
    nh_metadata md = {"gorums-node-id", announce};
    nh_config_opts o = {.nodes = nodes, .count = n, .metadata = &md, .tls = c->tls};
    o.metadata_count = announce ? 1 : 0;
    o.backoff_base_ms = 100; /* reconnect soon: a command waits for its nodes */
    o.backoff_max_ms = 1000;
    nh_config *cfg;
    nh_error err;
    if (nh_config_new(c->rt, &o, &cfg, &err) == 0) return cfg;
    warnx("%s", err.message);
    return NULL;
}

/* A configuration of one node: NODE is an ID of --nodes or an address (ID from --nodes when it is
 * listed there, else 1). */
static nh_config *open_one(client *c, const char *node) {
    bool is_id = all_digits(node, strlen(node));
    for (size_t i = 0; i < c->n; i++)
        if (is_id ? c->nodes[i].id == strtoul(node, NULL, 10) : !strcmp(node, c->nodes[i].address))
            return open_nodes(c, &c->nodes[i], 1, NULL);
    if (is_id) {
        warnx("node %s is not in --nodes", node);
        return NULL;
    }
    nh_node_addr one = {.id = 1, .address = node, .identity = "*"}; /* any certificate of the CA */
    return open_nodes(c, &one, 1, NULL);
}

/* ---- commands: each gets the configuration its call goes to (NULL: it opens its own) ------- */

/* A write of key=value timestamped now (in *t). */
static Proto__WriteRequest stamped(const char *key, const char *value,
                                   Google__Protobuf__Timestamp *t) {
    int64_t ns = now_ns(CLOCK_REALTIME);
    google__protobuf__timestamp__init(t);
    t->seconds = ns / 1000000000;
    t->nanos = (int32_t)(ns % 1000000000);
    Proto__WriteRequest req = PROTO__WRITE_REQUEST__INIT;
    req.key = (char *)key;
    req.value = (char *)value;
    req.time = t;
    return req;
}

static int cmd_write(client *c, nh_config *cfg, char **a) {
    Google__Protobuf__Timestamp t;
    Proto__WriteRequest req = stamped(a[0], a[1], &t);
    proto_storage_write_qc_opts o = {.call = {.timeout_ms = c->timeout_ms}};
    nh_qc_outcome out = {0};
    nh_error err;
    int rc = proto_storage_write_qc(cfg, &req, &o, NULL, &out, &err);
    double ms = ms_since(c->start);
    uint32_t ids[2][MAX_NODES]; /* by New: [0] not newer, [1] new */
    size_t n[2] = {0, 0};
    for (size_t i = 0; i < out.n_replies && n[0] + n[1] < MAX_NODES; i++) {
        const nh_node_reply *r = &out.replies[i];
        Proto__WriteResponse *w =
            r->err.code ? NULL : proto__write_response__unpack(NULL, r->len, r->payload);
        if (!w) continue;
        ids[!!w->new_][n[!!w->new_]++] = r->node_id;
        proto__write_response__free_unpacked(w, NULL);
    }
    char fresh[256], old[256];
    if (rc == 0)
        printf("write %s=%s: ok (majority of %zu), new on nodes %s%s%s, %.2f ms\n", a[0], a[1],
               nh_config_size(cfg), fmt_ids(ids[1], n[1], fresh, sizeof fresh),
               n[0] ? ", not newer on nodes " : "",
               n[0] ? fmt_ids(ids[0], n[0], old, sizeof old) : "", ms);
    else
        warnx("write %s=%s: %s (%.2f ms)", a[0], a[1], err.message, ms);
    nh_qc_outcome_free(&out);
    return rc != 0;
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

static int cmd_read(client *c, nh_config *cfg, char **a) {
    Proto__ReadRequest req = PROTO__READ_REQUEST__INIT;
    req.key = a[0];
    uint32_t winner = 0;
    proto_storage_read_qc_opts o = {
        .call = {.timeout_ms = c->timeout_ms}, .qf = newest, .qf_user = &winner};
    Proto__ReadResponse *r;
    nh_qc_outcome out = {0};
    nh_error err;
    int rc = proto_storage_read_qc(cfg, &req, &o, &r, &out, &err);
    double ms = ms_since(c->start);
    if (rc == 0) {
        uint32_t ids[MAX_NODES];
        size_t k = 0;
        for (size_t i = 0; i < out.n_replies && k < MAX_NODES; i++)
            if (out.replies[i].err.code == NH_OK) ids[k++] = out.replies[i].node_id;
        char list[256], detail[320];
        int off = r->ok ? snprintf(detail, sizeof detail, "newest from node %u; ", winner) : 0;
        snprintf(detail + off, sizeof detail - (size_t)off, "replies from nodes %s",
                 fmt_ids(ids, k, list, sizeof list));
        print_read("read", a[0], r, detail, ms);
        proto__read_response__free_unpacked(r, NULL);
    } else {
        warnx("read %s: %s (%.2f ms)", a[0], err.message, ms);
    }
    nh_qc_outcome_free(&out);
    return rc != 0;
}

static int cmd_multicast(client *c, nh_config *cfg, char **a) {
    Google__Protobuf__Timestamp t;
    Proto__WriteRequest req = stamped(a[0], a[1], &t);
    proto_storage_write_multicast_opts o = {.call = {.timeout_ms = c->timeout_ms}};
    nh_error err;
    int rc = proto_storage_write_multicast(cfg, &req, &o, &err);
    double ms = ms_since(c->start);
    char list[256];
    if (rc == 0)
        printf("multicast %s=%s: sent to nodes %s, %.2f ms\n", a[0], a[1],
               fmt_config(cfg, list, sizeof list), ms);
    else
        warnx("multicast %s=%s: %s (%.2f ms)", a[0], a[1], err.message, ms);
    return rc != 0;
}

/* nested NODE KEY: ReadNestedQC on one node (a quorum call over a configuration of that node). */
static int cmd_nested(client *c, nh_config *cfg, char **a) {
    uint32_t id = nh_node_id(nh_config_node(cfg, 0));
    Proto__ReadRequest req = PROTO__READ_REQUEST__INIT;
    req.key = a[1];
    proto_storage_read_nested_qc_opts o = {.call = {.timeout_ms = c->timeout_ms}};
    Proto__ReadResponse *r;
    nh_error err;
    int rc = proto_storage_read_nested_qc(cfg, &req, &o, &r, NULL, &err);
    double ms = ms_since(c->start);
    if (rc != 0) {
        warnx("nested %s via node %u: %s (%.2f ms)", a[1], id, err.message, ms);
        return 1;
    }
    char detail[64];
    snprintf(detail, sizeof detail, "read by node %u from its peers", id);
    print_read("nested", a[1], r, detail, ms);
    proto__read_response__free_unpacked(r, NULL);
    return 0;
}

/* notify NODE KEY VALUE */
static int cmd_notify(client *c, nh_config *cfg, char **a) {
    uint32_t id = nh_node_id(nh_config_node(cfg, 0));
    Google__Protobuf__Timestamp t;
    Proto__WriteRequest req = stamped(a[1], a[2], &t);
    nh_call_opts o = {.timeout_ms = c->timeout_ms};
    Proto__NotifyResponse *r;
    nh_error err;
    int rc = proto_storage_notify_clients(nh_config_node(cfg, 0), &req, &o, &r, &err);
    double ms = ms_since(c->start);
    if (rc != 0) {
        warnx("notify %s=%s via node %u: %s (%.2f ms)", a[1], a[2], id, err.message, ms);
        return 1;
    }
    char list[512];
    printf("notify %s=%s via node %u: acked by %u client%s (%s), %.2f ms\n", a[1], a[2], id,
           r->acked, r->acked == 1 ? "" : "s",
           fmt_ids(r->clientids, r->n_clientids, list, sizeof list), ms);
    proto__notify_response__free_unpacked(r, NULL);
    return 0;
}

/* info: proto.Storage.Info on every --nodes node, one line each ("node N: storage VERSION
 * generation G, K keys"); a node that fails gets a line on stderr and makes the exit status 1. */
static int cmd_info(client *c, nh_config *cfg, char **a) {
    int status = 0;
    for (const nh_node_addr *n = c->nodes; n < c->nodes + c->n; n++) {
        Google__Protobuf__Empty req = GOOGLE__PROTOBUF__EMPTY__INIT;
        nh_call_opts o = {.timeout_ms = c->timeout_ms};
        Proto__InfoResponse *r;
        nh_error err;
        int64_t start = now_ns(CLOCK_MONOTONIC);
        if (proto_storage_info(nh_config_find(cfg, n->id), &req, &o, &r, &err) == 0) {
            printf("node %u: storage %s generation %llu, %llu keys\n", n->id, r->version,
                   (unsigned long long)r->generation, (unsigned long long)r->keys);
            proto__info_response__free_unpacked(r, NULL);
            continue;
        }
        char who[512] = ""; /* unless the error names the node already */
        if (!strstr(err.message, n->address))
            snprintf(who, sizeof who, "node %u (%s): ", n->id, n->address);
        warnx("info: %s%s (%.2f ms)", who, err.message, ms_since(start));
        status = 1;
    }
    return status;
}

/* listen: the back-channel handler of proto.StorageClient.Notify (runs on the owner thread). */
static atomic_uint g_notifications;

static void on_notify(nh_server_ctx *ctx, const Proto__WriteRequest *w, void *user) {
    char tb[64];
    printf("notification from node %u: %s=%s (time %s)\n", nh_ctx_peer_id(ctx), w->key, w->value,
           fmt_time(w->time, tb, sizeof tb));
    fflush(stdout);
    atomic_fetch_add(&g_notifications, 1);
    Proto__WriteResponse resp = PROTO__WRITE_RESPONSE__INIT;
    resp.new_ = true;
    proto_storage_client_notify_reply(ctx, &resp);
}

static int cmd_listen(client *c, nh_config *cfg, char **a) {
    nh_error err;
    if (proto_storage_client_notify_serve(c->rt, on_notify, NULL, &err) != 0) {
        warnx("%s", err.message);
        return 1;
    }
    if (!(cfg = open_nodes(c, c->nodes, c->n, "0"))) return 1; /* a client peer: node ID 0 */
    int64_t start = now_ns(CLOCK_MONOTONIC);
    size_t up = nh_config_wait_reachable(cfg, c->timeout_ms);
    char list[256];
    printf("listen: client peer of nodes %s, %zu of %zu connected, %.2f ms\n",
           fmt_config(cfg, list, sizeof list), up, nh_config_size(cfg), ms_since(start));
    fflush(stdout);
    for (;;) {
        struct timespec ts = {1, 0};
        double left = (double)c->for_ms - ms_since(start);
        if (c->for_ms && left <= 0) break;
        if (c->for_ms && left < 1000) ts = (struct timespec){0, (long)(left * 1e6)};
        if (sigtimedwait(&c->stop, NULL, &ts) > 0) break;
    }
    printf("listen: %u notification%s in %.0f ms\n", atomic_load(&g_notifications),
           atomic_load(&g_notifications) == 1 ? "" : "s", ms_since(start));
    nh_config_unref(cfg);
    return 0;
}

/* A command's call goes to every --nodes node, to NODE (its first argument), or it opens its own
 * configuration. */
enum target { ALL, ONE, OWN };

static const struct command {
    const char *name;
    int args;
    enum target target;
    int (*run)(client *c, nh_config *cfg, char **a);
} commands[] = {{"write", 2, ALL, cmd_write},
                {"read", 1, ALL, cmd_read},
                {"multicast", 2, ALL, cmd_multicast},
                {"nested", 2, ONE, cmd_nested},
                {"notify", 3, ONE, cmd_notify},
                {"listen", 0, OWN, cmd_listen},
                {"info", 0, ALL, cmd_info}};

int main(int argc, char **argv) {
    client c = {.timeout_ms = 5000};
    nh_tls_opts to = {0};
    static const struct option opts[] = {
        {"nodes", required_argument, NULL, 'n'},    {"timeout-ms", required_argument, NULL, 't'},
        {"for-ms", required_argument, NULL, 'f'},   {"tls-ca", required_argument, NULL, 'A'},
        {"tls-cert", required_argument, NULL, 'C'}, {"tls-key", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    int status = 1, o;
    while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if ((o == 'n' && parse_nodes(&c, optarg) != 0) ||
            (o == 't' && !parse_ms(optarg, "--timeout-ms", true, &c.timeout_ms)) ||
            (o == 'f' && !parse_ms(optarg, "--for-ms", false, &c.for_ms)))
            goto out;
        if (o == 'A' || o == 'C' || o == 'K')
            *(o == 'A' ? &to.ca_file : o == 'C' ? &to.cert_file : &to.key_file) = optarg;
        if (o == 'h' || o == '?') {
            usage(o == 'h' ? stdout : stderr);
            status = o == '?';
            goto out;
        }
    }
    argc -= optind;
    argv += optind;
    /* listen accepts --for-ms after the command too */
    if (argc == 3 && !strcmp(argv[0], "listen") && !strcmp(argv[1], "--for-ms")) {
        if (!parse_ms(argv[2], "--for-ms", false, &c.for_ms)) goto out;
        argc = 1;
    }
    const struct command *cmd = NULL;
    for (size_t i = 0; argc >= 1 && i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[0], commands[i].name)) cmd = &commands[i];

    /* Signals that stop `listen`, blocked in every thread (the runtime's threads inherit it). */
    sigemptyset(&c.stop);
    sigaddset(&c.stop, SIGINT);
    sigaddset(&c.stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &c.stop, NULL);

    nh_error err;
    nh_config *cfg = NULL;
    char **a = argv + 1;
    if (argc < 1)
        warnx("no command given (see --help)");
    else if (!cmd)
        warnx("unknown command \"%s\" (see --help)", argv[0]);
    else if (argc - 1 != cmd->args)
        warnx("%s takes %d argument%s (see --help)", argv[0], cmd->args, cmd->args == 1 ? "" : "s");
    else if ((to.cert_file || to.key_file) && !to.ca_file)
        warnx("--tls-cert and --tls-key need --tls-ca");
    else if (cmd->target != ONE && !c.n)
        warnx("--nodes is required for this command");
    else if ((to.ca_file && nh_tls_new(&to, &c.tls, NULL, &err) != 0) ||
             nh_runtime_new(&(nh_runtime_opts){.name = "storage-client"}, &c.rt, &err) != 0)
        warnx("%s", err.message);
    else if (cmd->target == OWN ||
             (cfg = cmd->target == ONE ? open_one(&c, a[0]) : open_nodes(&c, c.nodes, c.n, NULL))) {
        if (cfg) nh_config_wait_reachable(cfg, c.timeout_ms);
        c.start = now_ns(CLOCK_MONOTONIC);
        status = cmd->run(&c, cfg, a);
    }
    nh_config_unref(cfg);
    fflush(stdout);
    nh_runtime_free(c.rt);
out:
    for (size_t i = 0; i < c.n; i++)
        free((char *)c.nodes[i].address);
    nh_tls_unref(c.tls);
    return status;
}
