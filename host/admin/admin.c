/* The admin service: Status answers with the node's identity, its Config and ClientConfig, its
 * known peers, its plugins and its reload counters; Reload asks the reloader for a reload and
 * answers with its outcome. It is served like any method, on the node's own protocol, so every
 * Gorums client can ask. */
#include "admin/admin.h"

#include "metrics/node_metrics.h"

#include "nodehost/admin.pb-c.h"

#include <nodehost/nodehost.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Who may call (security_config.h): answers PERMISSION_DENIED and returns false otherwise. Owner
 * thread (the plugin host's configuration is read there). */
static bool admin_gate(nh_admin_source *src, nh_server_ctx *ctx) {
    const nh_plugin_host *ph = __atomic_load_n(&src->plugins, __ATOMIC_ACQUIRE);
    const nh_host_config *cfg = ph ? nh_plugin_host_config(ph) : src->cfg;
    char why[400];
    if (!cfg || nh_host_admin_allowed(cfg, ctx, why, sizeof why)) return true;
    nh_logf(NH_LOG_WARN, "admin", "%s refused: %s", nh_ctx_method(ctx), why);
    nh_ctx_reply_error(ctx, NH_PERMISSION_DENIED, "%s: %s", nh_ctx_method(ctx), why);
    return false;
}

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

/* The plugins' status messages (strings borrowed from the plugin host: use them before the
 * owner thread moves on). */
typedef struct plugin_list {
    Nodehost__PluginStatus *ps;
    Nodehost__PluginStatus **pp;
    size_t n;
} plugin_list;

/* Fills l from the plugin host (owner thread; plugins may be NULL). Returns 0, or -1 when out
 * of memory. */
static int plugin_list_fill(plugin_list *l, const nh_plugin_host *plugins) {
    size_t np = nh_plugin_host_count(plugins);
    l->n = 0;
    l->ps = calloc(np ? np : 1, sizeof *l->ps);
    l->pp = calloc(np ? np : 1, sizeof *l->pp);
    if (!l->ps || !l->pp) return -1;
    for (size_t i = 0; i < np; i++) {
        nh_plugin_status st;
        nh_plugin_host_status(plugins, i, &st);
        Nodehost__PluginStatus *p = &l->ps[i];
        nodehost__plugin_status__init(p);
        p->name = (char *)st.name;
        p->version = (char *)st.version;
        p->path = (char *)st.path;
        p->generation = st.generation;
        p->loaded_at_unix_ns = st.loaded_at_unix_ns;
        p->methods = (char **)st.methods;
        p->n_methods = st.method_count;
        p->sha256 = (char *)(st.sha256 ? st.sha256 : "");
        p->old_generations = (uint32_t)st.old_generations;
        p->old_calls = st.old_calls;
        l->pp[i] = p;
    }
    l->n = np;
    return 0;
}

static void plugin_list_free(plugin_list *l) {
    free(l->ps);
    free(l->pp);
}

static void handle_status(nh_server_ctx *ctx, void *user) {
    nh_admin_source *src = user;
    if (!admin_gate(src, ctx)) return;
    Nodehost__StatusResponse resp = NODEHOST__STATUS_RESPONSE__INIT;
    resp.node_id = src->node_id;
    resp.listen = (char *)src->listen;
    resp.version = (char *)nh_version();
    resp.uptime_ms = (mono_ns() - src->started_ns) / 1000000;
    uint32_t *cfg = config_ids(nh_server_config(src->srv), &resp.n_config_ids);
    uint32_t *ccfg = config_ids(nh_server_client_config(src->srv), &resp.n_client_config_ids);
    nh_config *members = nh_server_members(src->srv);
    resp.members_reachable = (uint32_t)nh_config_reachable(members);
    char why[200];
    resp.ready = nh_node_ready(src, why, sizeof why);
    resp.not_ready_reason = why;
    uint32_t *mids = config_ids(members, &resp.n_member_ids);
    resp.member_ids = mids;
    resp.config_ids = cfg;
    resp.client_config_ids = ccfg;
    resp.peer_ids = (uint32_t *)src->peer_ids;
    resp.n_peer_ids = src->peer_count;
    nh_reloader *reloader = __atomic_load_n(&src->reloader, __ATOMIC_ACQUIRE);
    nh_reload_stats rs = {0};
    if (reloader) nh_reloader_stats(reloader, &rs);
    resp.reloads = rs.reloads;
    resp.reload_failures = rs.failures;
    resp.last_reload_error = (char *)(rs.last.number > 0 && !rs.last.ok ? rs.last.err.message : "");
    resp.last_reload_took_ns = rs.last.number > 0 ? rs.last.took_ns : 0;
    plugin_list pl = {0};
    if (!cfg || !ccfg || !mids ||
        plugin_list_fill(&pl, __atomic_load_n(&src->plugins, __ATOMIC_ACQUIRE))) {
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    resp.plugins = pl.pp;
    resp.n_plugins = pl.n;
    nh_ctx_reply_msg(ctx, &resp.base);
out:
    free(cfg);
    free(ccfg);
    free(mids);
    plugin_list_free(&pl);
}

/* One Reload call between the handler (owner thread), the reloader's done callback (reloader
 * thread) and the reply (owner thread). */
typedef struct reload_call {
    nh_server_ctx *ctx;
    nh_runtime *rt;
    nh_admin_source *src;
    nh_reload_result res; /* a copy: the reloader's is only valid during done */
} reload_call;

/* Owner thread: the successful reload's response, with the plugins as they are now. */
static void reload_reply(void *arg) {
    reload_call *c = arg;
    Nodehost__ReloadResponse resp = NODEHOST__RELOAD_RESPONSE__INIT;
    resp.reload = c->res.number;
    resp.changed = (uint32_t)c->res.changed;
    resp.took_ns = c->res.took_ns;
    resp.summary = c->res.summary;
    plugin_list pl = {0};
    if (plugin_list_fill(&pl, __atomic_load_n(&c->src->plugins, __ATOMIC_ACQUIRE)) != 0) {
        nh_ctx_reply_error(c->ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        resp.plugins = pl.pp;
        resp.n_plugins = pl.n;
        nh_ctx_reply_msg(c->ctx, &resp.base);
    }
    plugin_list_free(&pl);
    free(c);
}

/* Reloader thread: the result of the reload covering the request. */
static void reload_done(const nh_reload_result *r, void *arg) {
    reload_call *c = arg;
    if (!r->ok) {
        nh_code code = r->err.code != NH_OK ? r->err.code : NH_FAILED_PRECONDITION;
        nh_ctx_reply_error(c->ctx, code, "%s",
                           r->err.message[0] ? r->err.message : "reload failed");
        free(c);
        return;
    }
    c->res = *r;
    c->res.summary[sizeof c->res.summary - 1] = '\0';
    /* The plugin host is read on the owner thread only. */
    if (nh_runtime_post(c->rt, reload_reply, c) != 0) {
        nh_ctx_reply_error(c->ctx, NH_UNAVAILABLE, "node is stopping");
        free(c);
    }
}

static void handle_reload(nh_server_ctx *ctx, void *user) {
    nh_admin_source *src = user;
    if (!admin_gate(src, ctx)) return;
    nh_reloader *reloader = __atomic_load_n(&src->reloader, __ATOMIC_ACQUIRE);
    if (!reloader) {
        nh_ctx_reply_error(ctx, NH_UNAVAILABLE, NH_ADMIN_RELOAD_NOT_READY);
        return;
    }
    reload_call *c = calloc(1, sizeof *c);
    if (!c) {
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    c->ctx = ctx;
    c->rt = nh_ctx_runtime(ctx);
    c->src = src;
    /* A reload takes a while (plugin init): answer later, and let the stream's next requests
     * (a Status, say) go on meanwhile. */
    nh_ctx_defer(ctx);
    nh_ctx_release(ctx);
    if (nh_reloader_request(reloader, "admin", reload_done, c) != 0) {
        free(c);
        nh_ctx_reply_error(ctx, NH_UNAVAILABLE, "node is stopping");
    }
    /* Otherwise c belongs to reload_done (which may already be running). */
}

int nh_admin_register(nh_admin_source *src, nh_error *err) {
    if (nh_server_handle(src->srv, NH_ADMIN_STATUS, handle_status, src, err) != 0) return -1;
    return nh_server_handle(src->srv, NH_ADMIN_RELOAD, handle_reload, src, err);
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

/* The plugins: a JSON array ("plugins":[...]) or the indented text list. */
static void print_plugins(FILE *out, Nodehost__PluginStatus *const *plugins, size_t n, bool json) {
    char when[40];
    if (json) {
        fprintf(out, "\"plugins\":[");
        for (size_t i = 0; i < n; i++) {
            const Nodehost__PluginStatus *p = plugins[i];
            print_time(when, sizeof when, p->loaded_at_unix_ns);
            fprintf(out, "%s{\"name\":", i ? "," : "");
            json_str(out, p->name);
            fprintf(out, ",\"version\":");
            json_str(out, p->version);
            fprintf(out,
                    ",\"generation\":%" PRIu64 ",\"loaded_at\":\"%s\",\"path\":", p->generation,
                    when);
            json_str(out, p->path);
            fprintf(out, ",\"methods\":%zu,\"sha256\":", p->n_methods);
            json_str(out, p->sha256);
            fprintf(out, ",\"old_generations\":%" PRIu32 ",\"old_calls\":%" PRIu64 "}",
                    p->old_generations, p->old_calls);
        }
        fprintf(out, "]");
        return;
    }
    fprintf(out, "plugins:%s\n", n ? "" : "      (none)");
    for (size_t i = 0; i < n; i++) {
        const Nodehost__PluginStatus *p = plugins[i];
        print_time(when, sizeof when, p->loaded_at_unix_ns);
        fprintf(out, "  %s %s, generation %" PRIu64, p->name, p->version, p->generation);
        if (p->sha256 && *p->sha256) fprintf(out, ", sha256 %.16s", p->sha256);
        fprintf(out, ", loaded %s from %s\n", when, p->path);
        if (p->old_generations > 0)
            fprintf(out, "    old generations: %" PRIu32 " (%" PRIu64 " calls open)\n",
                    p->old_generations, p->old_calls);
        for (size_t j = 0; j < p->n_methods; j++)
            fprintf(out, "    %s\n", p->methods[j]);
    }
}

static void print_status(FILE *out, const Nodehost__StatusResponse *r, bool json) {
    if (json) {
        fprintf(out, "{\"node_id\":%" PRIu32 ",\"listen\":", r->node_id);
        json_str(out, r->listen);
        fprintf(out, ",\"version\":");
        json_str(out, r->version);
        fprintf(out, ",");
        fprintf(out, "\"uptime_ms\":%" PRId64 ",", r->uptime_ms);
        print_ids(out, "config", r->config_ids, r->n_config_ids, true);
        fprintf(out, ",");
        print_ids(out, "members", r->member_ids, r->n_member_ids, true);
        fprintf(out, ",\"members_reachable\":%" PRIu32 ",\"ready\":%s,\"not_ready_reason\":",
                r->members_reachable, r->ready ? "true" : "false");
        json_str(out, r->not_ready_reason);
        fprintf(out, ",");
        print_ids(out, "client_config", r->client_config_ids, r->n_client_config_ids, true);
        fprintf(out, ",");
        print_ids(out, "peers", r->peer_ids, r->n_peer_ids, true);
        fprintf(out, ",");
        print_plugins(out, r->plugins, r->n_plugins, true);
        fprintf(out,
                ",\"reloads\":%" PRIu64 ",\"reload_failures\":%" PRIu64
                ",\"last_reload_took_ns\":%" PRId64 ",\"last_reload_error\":",
                r->reloads, r->reload_failures, r->last_reload_took_ns);
        json_str(out, r->last_reload_error);
        fprintf(out, "}\n");
        return;
    }
    fprintf(out, "node %" PRIu32 " listening on %s (nodehost %s, up %.1f s)\n", r->node_id,
            r->listen, r->version, (double)r->uptime_ms / 1000.0);
    print_ids(out, "Config:", r->config_ids, r->n_config_ids, false);
    print_ids(out, "members:", r->member_ids, r->n_member_ids, false);
    fprintf(out, "%-14s%" PRIu32 " of %zu members (a majority is %zu)\n",
            "reachable:", r->members_reachable, r->n_member_ids, r->n_member_ids / 2 + 1);
    fprintf(out, "%-14s%s%s%s\n", "ready:", r->ready ? "yes" : "no", r->ready ? "" : " - ",
            r->ready ? "" : r->not_ready_reason);
    print_ids(out, "ClientConfig:", r->client_config_ids, r->n_client_config_ids, false);
    print_ids(out, "known peers:", r->peer_ids, r->n_peer_ids, false);
    print_plugins(out, r->plugins, r->n_plugins, false);
    fprintf(out, "reloads: %" PRIu64 " (%" PRIu64 " failed)", r->reloads, r->reload_failures);
    if (r->reloads > 0) fprintf(out, ", last took %.1f ms", (double)r->last_reload_took_ns / 1e6);
    if (r->last_reload_error && *r->last_reload_error)
        fprintf(out, ", last error: %s", r->last_reload_error);
    fprintf(out, "\n");
}

static void print_reload(FILE *out, const Nodehost__ReloadResponse *r, bool json) {
    if (json) {
        fprintf(out,
                "{\"reload\":%" PRIu64 ",\"changed\":%" PRIu32 ",\"took_ns\":%" PRId64
                ",\"summary\":",
                r->reload, r->changed, r->took_ns);
        json_str(out, r->summary);
        fprintf(out, ",");
        print_plugins(out, r->plugins, r->n_plugins, true);
        fprintf(out, "}\n");
        return;
    }
    fprintf(out, "reload %" PRIu64 ": %" PRIu32 " plugin(s) changed in %.1f ms", r->reload,
            r->changed, (double)r->took_ns / 1e6);
    if (r->summary && *r->summary) fprintf(out, ": %s", r->summary);
    fprintf(out, "\n");
    print_plugins(out, r->plugins, r->n_plugins, false);
}

/* One admin call for the command line: a runtime and a node of their own, retried while the
 * node does not answer (stream still connecting) or answers UNAVAILABLE
 * NH_ADMIN_RELOAD_NOT_READY (still starting), for up to retry_ms; the whole call takes at most
 * timeout_ms. */
typedef struct admin_call {
    const char *address;
    const char *method;
    const uint8_t *req;
    size_t len;
    uint32_t timeout_ms;
    uint32_t retry_ms;
    nh_tls *tls; /* NULL: plaintext */
} admin_call;

static bool worth_retrying(const nh_error *err) {
    if (err->code != NH_UNAVAILABLE) return false;
    /* A refused certificate or identity will not get better by asking again. */
    if (strstr(err->message, "TLS: ") || strstr(err->message, "UNAUTHENTICATED")) return false;
    if (err->kind != NH_ERR_STATUS) return true; /* no answer */
    size_t n = strlen(err->message), k = strlen(NH_ADMIN_RELOAD_NOT_READY);
    return n >= k && !strcmp(err->message + n - k, NH_ADMIN_RELOAD_NOT_READY);
}

/* Drops the "node N (ADDRESS): " the SDK puts before a reason: the command line names the
 * address already. */
static void strip_node_label(nh_error *err) {
    if (strncmp(err->message, "node ", 5) != 0) return;
    const char *sep = strstr(err->message, "): ");
    if (!sep) return;
    memmove(err->message, sep + 3, strlen(sep + 3) + 1);
}

static int admin_rpc(const admin_call *a, nh_buf *resp, nh_error *err) {
    nh_runtime *rt = NULL;
    nh_runtime_opts ro = {.name = "admin", .workers = 1};
    if (nh_runtime_new(&ro, &rt, err) != 0) return -1;
    nh_node *node = NULL;
    /* The node's ID is not known here: with TLS, any certificate the CA signed is the node. */
    nh_node_opts no = {.id = 1,
                       .address = a->address,
                       .backoff_max_ms = 200,
                       .tls = a->tls,
                       .server_identity = "*"};
    int rc = -1;
    if (nh_node_open(rt, &no, &node, err) == 0) {
        int64_t start = mono_ns();
        int64_t deadline = start + (int64_t)a->timeout_ms * 1000000;
        int64_t retry_end = start + (int64_t)a->retry_ms * 1000000;
        for (;;) {
            int64_t left_ms = (deadline - mono_ns()) / 1000000;
            nh_call_opts co = {.timeout_ms = left_ms > 0 ? (uint32_t)left_ms : 1};
            rc = nh_rpc(node, a->method, a->req, a->len, &co, resp, err);
            if (rc == 0 || !worth_retrying(err) || mono_ns() >= retry_end) break;
            struct timespec ts = {0, 50 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    nh_node_close(node);
    nh_runtime_free(rt);
    if (rc != 0) strip_node_label(err);
    return rc;
}

int nh_admin_print_status(const char *address, uint32_t timeout_ms, bool json, nh_tls *tls,
                          FILE *out, nh_error *err) {
    Nodehost__StatusRequest req = NODEHOST__STATUS_REQUEST__INIT;
    uint8_t buf[16];
    admin_call a = {.address = address,
                    .method = NH_ADMIN_STATUS,
                    .req = buf,
                    .len = nodehost__status_request__pack(&req, buf),
                    .timeout_ms = timeout_ms,
                    .retry_ms = timeout_ms,
                    .tls = tls};
    nh_buf resp = {0};
    if (admin_rpc(&a, &resp, err) != 0) return -1;
    Nodehost__StatusResponse *r = nodehost__status_response__unpack(NULL, resp.len, resp.data);
    nh_buf_free(&resp);
    if (!r)
        return nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0,
                            "the status response could not be decoded");
    print_status(out, r, json);
    nodehost__status_response__free_unpacked(r, NULL);
    return 0;
}

int nh_admin_print_reload(const char *address, uint32_t timeout_ms, bool json, nh_tls *tls,
                          FILE *out, nh_error *err) {
    Nodehost__ReloadRequest req = NODEHOST__RELOAD_REQUEST__INIT;
    uint8_t buf[16];
    /* Waiting for a node to come up is status's business: reload gives up on an unreachable
     * address after a few seconds even with a long timeout (for a slow reload). */
    admin_call a = {.address = address,
                    .method = NH_ADMIN_RELOAD,
                    .req = buf,
                    .len = nodehost__reload_request__pack(&req, buf),
                    .timeout_ms = timeout_ms,
                    .retry_ms = timeout_ms < 5000 ? timeout_ms : 5000,
                    .tls = tls};
    nh_buf resp = {0};
    if (admin_rpc(&a, &resp, err) != 0) return -1;
    Nodehost__ReloadResponse *r = nodehost__reload_response__unpack(NULL, resp.len, resp.data);
    nh_buf_free(&resp);
    if (!r)
        return nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0,
                            "the reload response could not be decoded");
    print_reload(out, r, json);
    nodehost__reload_response__free_unpacked(r, NULL);
    return 0;
}
