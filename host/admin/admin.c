/* The admin service: Status answers with the node's identity, its Config and ClientConfig, its
 * known peers and its plugins. It is served like any method, on the node's own protocol, so
 * every Gorums client can ask. */
#include "admin/admin.h"

#include "nodehost/admin.pb-c.h"

#include <nodehost/nodehost.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The IDs of a configuration (malloc'ed, *n set). */
static uint32_t *config_ids(nh_config *cfg, size_t *n) {
    *n = nh_config_size(cfg);
    uint32_t *ids = calloc(*n ? *n : 1, sizeof *ids);
    if (ids) nh_config_ids(cfg, ids, *n);
    nh_config_unref(cfg);
    return ids;
}

static void handle_status(nh_server_ctx *ctx, void *user) {
    nh_admin_source *src = user;
    Nodehost__StatusResponse resp = NODEHOST__STATUS_RESPONSE__INIT;
    resp.node_id = src->node_id;
    resp.listen = (char *)src->listen;
    resp.version = (char *)nh_version();
    resp.uptime_ms = (mono_ns() - src->started_ns) / 1000000;
    uint32_t *cfg = config_ids(nh_server_config(src->srv), &resp.n_config_ids);
    uint32_t *ccfg = config_ids(nh_server_client_config(src->srv), &resp.n_client_config_ids);
    resp.config_ids = cfg;
    resp.client_config_ids = ccfg;
    resp.peer_ids = (uint32_t *)src->peer_ids;
    resp.n_peer_ids = src->peer_count;
    nh_plugin_host *plugins = __atomic_load_n(&src->plugins, __ATOMIC_ACQUIRE);
    size_t np = nh_plugin_host_count(plugins);
    Nodehost__PluginStatus *ps = calloc(np ? np : 1, sizeof *ps);
    Nodehost__PluginStatus **pp = calloc(np ? np : 1, sizeof *pp);
    if (!cfg || !ccfg || !ps || !pp) {
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < np; i++) {
        nh_plugin_status st;
        nh_plugin_host_status(plugins, i, &st);
        nodehost__plugin_status__init(&ps[i]);
        ps[i].name = (char *)st.name;
        ps[i].version = (char *)st.version;
        ps[i].path = (char *)st.path;
        ps[i].generation = st.generation;
        ps[i].loaded_at_unix_ns = st.loaded_at_unix_ns;
        ps[i].methods = (char **)st.methods;
        ps[i].n_methods = st.method_count;
        pp[i] = &ps[i];
    }
    resp.plugins = pp;
    resp.n_plugins = np;
    nh_ctx_reply_msg(ctx, &resp.base);
out:
    free(cfg);
    free(ccfg);
    free(ps);
    free(pp);
}

int nh_admin_register(nh_admin_source *src, nh_error *err) {
    return nh_server_handle(src->srv, NH_ADMIN_STATUS, handle_status, src, err);
}

/* ---- client ------------------------------------------------------------------------------- */

/* Prints s as a JSON string (quotes included). */
static void json_str(FILE *out, const char *s) {
    fputc('"', out);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static void print_ids(FILE *out, const char *label, const uint32_t *ids, size_t n, bool json) {
    if (json) {
        fprintf(out, "\"%s\":[", label);
        for (size_t i = 0; i < n; i++)
            fprintf(out, "%s%" PRIu32, i ? "," : "", ids[i]);
        fprintf(out, "]");
        return;
    }
    fprintf(out, "%-14s", label);
    if (n == 0) fprintf(out, "(none)");
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s%" PRIu32, i ? " " : "", ids[i]);
    fprintf(out, "\n");
}

static void print_time(char *buf, size_t size, int64_t unix_ns) {
    time_t t = (time_t)(unix_ns / 1000000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void print_status(FILE *out, const Nodehost__StatusResponse *r, bool json) {
    char when[40];
    if (json) {
        fprintf(out, "{\"node_id\":%" PRIu32 ",\"listen\":", r->node_id);
        json_str(out, r->listen);
        fprintf(out, ",\"version\":");
        json_str(out, r->version);
        fprintf(out, ",");
        fprintf(out, "\"uptime_ms\":%" PRId64 ",", r->uptime_ms);
        print_ids(out, "config", r->config_ids, r->n_config_ids, true);
        fprintf(out, ",");
        print_ids(out, "client_config", r->client_config_ids, r->n_client_config_ids, true);
        fprintf(out, ",");
        print_ids(out, "peers", r->peer_ids, r->n_peer_ids, true);
        fprintf(out, ",\"plugins\":[");
        for (size_t i = 0; i < r->n_plugins; i++) {
            const Nodehost__PluginStatus *p = r->plugins[i];
            print_time(when, sizeof when, p->loaded_at_unix_ns);
            fprintf(out, "%s{\"name\":", i ? "," : "");
            json_str(out, p->name);
            fprintf(out, ",\"version\":");
            json_str(out, p->version);
            fprintf(out,
                    ",\"generation\":%" PRIu64 ",\"loaded_at\":\"%s\",\"path\":", p->generation,
                    when);
            json_str(out, p->path);
            fprintf(out, ",\"methods\":%zu}", p->n_methods);
        }
        fprintf(out, "]}\n");
        return;
    }
    fprintf(out, "node %" PRIu32 " listening on %s (nodehost %s, up %.1f s)\n", r->node_id,
            r->listen, r->version, (double)r->uptime_ms / 1000.0);
    print_ids(out, "Config:", r->config_ids, r->n_config_ids, false);
    print_ids(out, "ClientConfig:", r->client_config_ids, r->n_client_config_ids, false);
    print_ids(out, "known peers:", r->peer_ids, r->n_peer_ids, false);
    fprintf(out, "plugins:%s\n", r->n_plugins ? "" : "      (none)");
    for (size_t i = 0; i < r->n_plugins; i++) {
        const Nodehost__PluginStatus *p = r->plugins[i];
        print_time(when, sizeof when, p->loaded_at_unix_ns);
        fprintf(out, "  %s %s, generation %" PRIu64 ", loaded %s from %s\n", p->name, p->version,
                p->generation, when, p->path);
        for (size_t j = 0; j < p->n_methods; j++)
            fprintf(out, "    %s\n", p->methods[j]);
    }
}

int nh_admin_print_status(const char *address, uint32_t timeout_ms, bool json, FILE *out,
                          nh_error *err) {
    nh_runtime *rt = NULL;
    nh_runtime_opts ro = {.name = "status", .workers = 1};
    if (nh_runtime_new(&ro, &rt, err) != 0) return -1;
    nh_node *node = NULL;
    nh_node_opts no = {.id = 1, .address = address, .backoff_max_ms = 200};
    int rc = -1;
    if (nh_node_open(rt, &no, &node, err) != 0) goto done;
    Nodehost__StatusRequest req = NODEHOST__STATUS_REQUEST__INIT;
    uint8_t buf[16];
    size_t len = nodehost__status_request__pack(&req, buf);
    nh_call_opts co = {.timeout_ms = timeout_ms};
    nh_buf resp = {0};
    /* The first call may find the stream still connecting; retry until the deadline. */
    int64_t deadline = mono_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        rc = nh_rpc(node, NH_ADMIN_STATUS, buf, len, &co, &resp, err);
        if (rc == 0 || err->code != NH_UNAVAILABLE || mono_ns() >= deadline) break;
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    if (rc != 0) goto done;
    Nodehost__StatusResponse *r = nodehost__status_response__unpack(NULL, resp.len, resp.data);
    nh_buf_free(&resp);
    if (!r) {
        rc = nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0,
                          "%s: the status response could not be decoded", address);
        goto done;
    }
    print_status(out, r, json);
    nodehost__status_response__free_unpacked(r, NULL);
done:
    nh_node_close(node);
    nh_runtime_free(rt);
    return rc;
}
