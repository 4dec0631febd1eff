/* The plugins of a running node. Each configured plugin is a slot; a slot has a current
 * generation (one loaded copy of the plugin, its state and its hooks). Requests reach a plugin
 * through one trampoline per method: it counts the call against the current generation, decodes
 * the request with the method's message type, and calls the handler. A generation lives while it
 * is current or any of its calls is open; only then is it finished and unloaded, which is what
 * reloading (a new current generation) will build on. */
#include "plugin/plugin_host.h"

#include "plugin/loader.h"

#include <nodehost/log.h>

#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slot slot;

typedef struct generation {
    slot *slot;
    nh_loaded_plugin lp;
    void *state;
    bool inited, finished;
    uint64_t number;
    int64_t loaded_at_ns;
    size_t refs; /* open calls + 1 while current (owner thread, or single-threaded at the end) */
    const char **method_names;
} generation;

struct slot {
    nh_plugin_host *ph;
    const nh_host_plugin *conf;
    generation *current;
    uint64_t calls;
};

/* One registered method: the trampoline's user data. */
typedef struct route {
    slot *slot;
    char *method;
    const generation *cached_gen; /* the generation cached_m belongs to */
    const nh_plugin_method *cached_m;
} route;

struct nh_plugin_host {
    nh_runtime *rt;
    nh_server *srv;
    slot *slots;
    size_t slot_count;
    route *routes;
    size_t route_count;
    size_t inflight; /* atomic */
    int draining;    /* atomic */
};

typedef struct open_call {
    generation *gen;
    ProtobufCMessage *req;
} open_call;

static int64_t now_unix_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- generations -------------------------------------------------------------------------- */

static void gen_finish(generation *g) {
    if (g->finished) return;
    g->finished = true;
    if (g->inited && g->lp.desc->fini) g->lp.desc->fini(g->state);
    g->inited = false;
}

static void gen_free(generation *g) {
    if (!g) return;
    gen_finish(g);
    nh_plugin_unload(&g->lp);
    free(g->method_names);
    free(g);
}

/* Loads a new generation of slot s (not initialised). */
static generation *gen_load(slot *s, const char *state_dir, uint64_t number, nh_error *err) {
    generation *g = calloc(1, sizeof *g);
    if (!g) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return NULL;
    }
    g->slot = s;
    g->number = number;
    if (nh_plugin_load(s->conf->name, s->conf->path, state_dir, &g->lp, err) != 0) {
        free(g);
        return NULL;
    }
    g->loaded_at_ns = now_unix_ns();
    const nh_plugin_descriptor *d = g->lp.desc;
    g->method_names = calloc(d->method_count, sizeof *g->method_names);
    if (!g->method_names) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        gen_free(g);
        return NULL;
    }
    for (size_t i = 0; i < d->method_count; i++)
        g->method_names[i] = d->methods[i].name;
    return g;
}

/* Runs the plugin's own check of its config subtree. */
static int gen_check_config(generation *g, nh_error *err) {
    const nh_plugin_descriptor *d = g->lp.desc;
    if (!d->check_config) return 0;
    nh_error e = {0};
    if (d->check_config(g->slot->conf->config, &e) == 0) return 0;
    if (e.code == NH_OK) e.code = NH_INVALID_ARGUMENT;
    return nh_error_set(err, e.code, NH_ERR_LOCAL, 0, "plugin '%s': config: %s",
                        g->slot->conf->name,
                        e.message[0] ? e.message : "rejected (no reason given)");
}

static int gen_init(generation *g, nh_plugin_host *ph, uint32_t node_id, nh_error *err) {
    const nh_plugin_descriptor *d = g->lp.desc;
    if (!d->init) {
        g->inited = true;
        return 0;
    }
    nh_plugin_env env = {
        .size = sizeof env,
        .runtime = ph->rt,
        .server = ph->srv,
        .node_id = node_id,
        .name = g->slot->conf->name,
        .config = g->slot->conf->config,
        .generation = g->number,
    };
    nh_error e = {0};
    if (d->init(&env, &g->state, &e) != 0) {
        if (e.code == NH_OK) e.code = NH_FAILED_PRECONDITION;
        return nh_error_set(err, e.code, NH_ERR_LOCAL, 0, "plugin '%s' (%s): init failed: %s",
                            g->slot->conf->name, d->version,
                            e.message[0] ? e.message : "(no reason given)");
    }
    g->inited = true;
    return 0;
}

static void gen_unref(generation *g) {
    if (--g->refs == 0) gen_free(g);
}

/* ---- the trampoline ----------------------------------------------------------------------- */

static const nh_plugin_method *route_method(route *r, const generation *g) {
    if (r->cached_gen != g) {
        r->cached_gen = g;
        r->cached_m = NULL;
        const nh_plugin_descriptor *d = g->lp.desc;
        for (size_t i = 0; i < d->method_count; i++)
            if (!strcmp(d->methods[i].name, r->method)) r->cached_m = &d->methods[i];
    }
    return r->cached_m;
}

static void call_end(nh_server_ctx *ctx, void *arg) {
    (void)ctx;
    open_call *c = arg;
    nh_plugin_host *ph = c->gen->slot->ph;
    protobuf_c_message_free_unpacked(c->req, NULL);
    gen_unref(c->gen);
    free(c);
    __atomic_sub_fetch(&ph->inflight, 1, __ATOMIC_RELEASE);
}

static void trampoline(nh_server_ctx *ctx, void *user) {
    route *r = user;
    slot *s = r->slot;
    nh_plugin_host *ph = s->ph;
    if (__atomic_load_n(&ph->draining, __ATOMIC_ACQUIRE)) {
        nh_ctx_reply_error(ctx, NH_UNAVAILABLE, "node is shutting down");
        return;
    }
    generation *g = s->current;
    const nh_plugin_method *m = g ? route_method(r, g) : NULL;
    if (!m) {
        nh_ctx_reply_error(ctx, NH_UNIMPLEMENTED, "no handler registered for method %s", r->method);
        return;
    }
    size_t len;
    const uint8_t *payload = nh_ctx_payload(ctx, &len);
    ProtobufCMessage *req = protobuf_c_message_unpack(m->request, NULL, len, payload);
    if (!req) {
        /* Gorums answers an undecodable request with Unknown and this prefix. */
        nh_ctx_reply_error(ctx, NH_UNKNOWN, "gorums: could not unmarshal request: not a valid %s",
                           m->request->name);
        return;
    }
    open_call *c = malloc(sizeof *c);
    if (!c) {
        protobuf_c_message_free_unpacked(req, NULL);
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    c->gen = g;
    c->req = req;
    g->refs++;
    s->calls++;
    __atomic_add_fetch(&ph->inflight, 1, __ATOMIC_RELAXED);
    nh_ctx_on_end(ctx, call_end, c);
    m->handler(ctx, req, g->state);
    /* An RPC or quorum call whose handler neither answered nor deferred would leave its caller
     * waiting: answer for the plugin. (Correctable handlers may send and return.) */
    if ((m->call_type == NH_CALL_RPC || m->call_type == NH_CALL_QUORUMCALL) &&
        !nh_ctx_answered(ctx)) {
        nh_logf(NH_LOG_ERROR, s->conf->name, "handler of %s returned without replying", r->method);
        nh_ctx_reply_error(ctx, NH_INTERNAL, "handler of %s returned without replying (plugin %s)",
                           r->method, s->conf->name);
    }
}

/* ---- start, check, stop ------------------------------------------------------------------- */

/* Loads every plugin of cfg into new slots (no init). */
static int load_all(nh_plugin_host *ph, const nh_host_config *cfg, const char *state_dir,
                    nh_error *err) {
    ph->slot_count = cfg->plugin_count;
    ph->slots = calloc(cfg->plugin_count ? cfg->plugin_count : 1, sizeof *ph->slots);
    if (!ph->slots)
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    for (size_t i = 0; i < cfg->plugin_count; i++) {
        slot *s = &ph->slots[i];
        s->ph = ph;
        s->conf = &cfg->plugins[i];
        nh_error e;
        s->current = gen_load(s, state_dir, 1, &e);
        if (!s->current || gen_check_config(s->current, &e) != 0)
            return nh_conf_error(s->conf->where, err, "%s", e.message);
        s->current->refs = 1;
        const nh_plugin_descriptor *d = s->current->lp.desc;
        for (size_t j = 0; j < d->method_count; j++)
            if (!strncmp(d->methods[j].name, NH_HOST_RESERVED_PREFIX,
                         strlen(NH_HOST_RESERVED_PREFIX)))
                return nh_conf_error(s->conf->where, err,
                                     "plugin '%s': method '%s' is reserved for the host (names "
                                     "starting with '%s')",
                                     s->conf->name, d->methods[j].name, NH_HOST_RESERVED_PREFIX);
    }
    /* Two plugins may not serve the same method. */
    const nh_loaded_plugin **all = calloc(ph->slot_count ? ph->slot_count : 1, sizeof *all);
    if (!all) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    for (size_t i = 0; i < ph->slot_count; i++)
        all[i] = &ph->slots[i].current->lp;
    int rc = nh_plugin_check_conflicts(all, ph->slot_count, err);
    free(all);
    return rc;
}

static void host_free_slots(nh_plugin_host *ph) {
    for (size_t i = 0; i < ph->slot_count; i++) {
        gen_free(ph->slots[i].current);
        ph->slots[i].current = NULL;
    }
    free(ph->slots);
    for (size_t i = 0; i < ph->route_count; i++)
        free(ph->routes[i].method);
    free(ph->routes);
    free(ph);
}

int nh_plugin_host_load(const nh_host_config *cfg, const char *state_dir, nh_plugin_host **out,
                        nh_error *err) {
    *out = NULL;
    nh_plugin_host *ph = calloc(1, sizeof *ph);
    if (!ph) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    if (load_all(ph, cfg, state_dir, err) != 0) {
        host_free_slots(ph);
        return -1;
    }
    *out = ph;
    return 0;
}

int nh_plugin_host_check(const nh_host_config *cfg, const char *state_dir, nh_error *err) {
    nh_plugin_host *ph = NULL;
    if (nh_plugin_host_load(cfg, state_dir, &ph, err) != 0) return -1;
    nh_plugin_host_free(ph); /* nothing was started: unload only */
    return 0;
}

int nh_plugin_host_start(nh_plugin_host *ph, nh_runtime *rt, nh_server *srv, uint32_t node_id,
                         nh_error *err) {
    ph->rt = rt;
    ph->srv = srv;
    size_t methods = 0;
    for (size_t i = 0; i < ph->slot_count; i++) {
        slot *s = &ph->slots[i];
        if (gen_init(s->current, ph, node_id, err) != 0) {
            nh_error e = *err;
            return nh_conf_error(s->conf->where, err, "%s", e.message);
        }
        nh_logf(NH_LOG_INFO, "plugins", "plugin '%s' version %s generation %llu loaded from %s",
                s->conf->name, s->current->lp.desc->version, (unsigned long long)s->current->number,
                s->conf->path);
        nh_logf(NH_LOG_DEBUG, "plugins", "plugin '%s': descriptor name '%s', sha256 %s, copy %s",
                s->conf->name, s->current->lp.desc->name, s->current->lp.sha256,
                s->current->lp.loaded_path);
        methods += s->current->lp.desc->method_count;
    }
    ph->routes = calloc(methods ? methods : 1, sizeof *ph->routes);
    if (!ph->routes)
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    for (size_t i = 0; i < ph->slot_count; i++) {
        const nh_plugin_descriptor *d = ph->slots[i].current->lp.desc;
        for (size_t j = 0; j < d->method_count; j++) {
            route *r = &ph->routes[ph->route_count++];
            r->slot = &ph->slots[i];
            r->method = strdup(d->methods[j].name);
            if (!r->method)
                return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
            if (nh_server_handle(srv, r->method, trampoline, r, err) != 0) return -1;
        }
    }
    return 0;
}

void nh_plugin_host_config_changed(nh_plugin_host *ph, nh_config *cfg, bool client_config) {
    if (!ph) return;
    for (size_t i = 0; i < ph->slot_count; i++) {
        generation *g = ph->slots[i].current;
        if (g && g->inited && g->lp.desc->config_changed)
            g->lp.desc->config_changed(g->state, cfg, client_config);
    }
}

void nh_plugin_host_drain(nh_plugin_host *ph) {
    if (ph) __atomic_store_n(&ph->draining, 1, __ATOMIC_RELEASE);
}

size_t nh_plugin_host_inflight(const nh_plugin_host *ph) {
    return ph ? __atomic_load_n(&ph->inflight, __ATOMIC_ACQUIRE) : 0;
}

size_t nh_plugin_host_count(const nh_plugin_host *ph) {
    return ph ? ph->slot_count : 0;
}

void nh_plugin_host_status(const nh_plugin_host *ph, size_t i, nh_plugin_status *out) {
    const slot *s = &ph->slots[i];
    const generation *g = s->current;
    *out = (nh_plugin_status){
        .name = s->conf->name,
        .version = g->lp.desc->version,
        .path = s->conf->path,
        .generation = g->number,
        .loaded_at_unix_ns = g->loaded_at_ns,
        .method_count = g->lp.desc->method_count,
        .methods = g->method_names,
        .calls = s->calls,
    };
}

typedef struct stop_task {
    nh_plugin_host *ph;
    sem_t done;
} stop_task;

static void stop_on_owner(void *arg) {
    stop_task *t = arg;
    for (size_t i = 0; i < t->ph->slot_count; i++)
        if (t->ph->slots[i].current) gen_finish(t->ph->slots[i].current);
    sem_post(&t->done);
}

void nh_plugin_host_stop(nh_plugin_host *ph) {
    if (!ph) return;
    nh_plugin_host_drain(ph);
    /* fini runs on the owner thread, like the handlers that share the plugin's state. */
    stop_task t = {.ph = ph};
    sem_init(&t.done, 0, 0);
    if (nh_runtime_post(ph->rt, stop_on_owner, &t) == 0) {
        while (sem_wait(&t.done) != 0 && errno == EINTR) {
        }
    } else {
        stop_on_owner(&t);
    }
    sem_destroy(&t.done);
}

void nh_plugin_host_free(nh_plugin_host *ph) {
    if (!ph) return;
    /* Calls still open when the runtime was freed have ended by now (their generations' refs
     * were dropped); what remains is the current generation of each slot. */
    for (size_t i = 0; i < ph->slot_count; i++) {
        generation *g = ph->slots[i].current;
        ph->slots[i].current = NULL;
        if (g) gen_unref(g);
    }
    host_free_slots(ph);
}
