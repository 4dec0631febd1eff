/* The plugins of a running node. Each configured plugin is a slot with a current generation (see
 * generation.h). Requests reach a plugin through one trampoline per method: it binds the call to
 * the slot's current generation, decodes the request with the method's message type, and runs
 * the handler inside the generation's scope.
 *
 * A reload stages new generations off the owner thread (load, check, init), then switches on the
 * owner thread in one step: state hand-over, new current generations, method routes. Generations
 * that stop being current are retired: they stay loaded while anything of them is alive (open
 * calls, pending SDK work) and are finished and unloaded on the owner thread when the last of it
 * ends. Everything that changes slots or routes runs on the owner thread, like the trampoline, so
 * neither needs a lock; the list of retired generations has one because any thread may retire. */
#include "plugin/plugin_host.h"

#include "plugin/generation.h"
#include "plugin/sha256.h"
#include "plugin/wire_check.h"

#include <nodehost/log.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slot {
    nh_plugin_host *ph;
    char *name;
    nh_generation *current; /* NULL once the plugin was removed from the configuration */
    uint64_t calls;
    struct slot *next_all;
} slot;

/* One registered method: the trampoline's user data. */
typedef struct route {
    struct route *next;
    slot *slot; /* the plugin serving it now, NULL when none does */
    char *method;
    const nh_generation *cached_gen; /* the generation cached_m belongs to (reset at switches) */
    const nh_plugin_method *cached_m;
} route;

struct nh_plugin_host {
    nh_runtime *rt;
    nh_server *srv;
    uint32_t node_id;
    char *state_dir;
    nh_conf_hold *conf; /* the configuration serving now */
    slot **slots;       /* the configured plugins, in file order (owner thread) */
    size_t slot_count;
    slot *all_slots; /* every slot ever made, freed at the end */
    route *routes;
    size_t inflight; /* atomic */
    int draining;    /* atomic */
    int closing;     /* atomic: nh_plugin_host_free() frees what remains */
    pthread_mutex_t retired_mu;
    nh_generation *retired; /* generations no longer current, not freed yet (retired_mu) */
};

typedef struct open_call {
    nh_generation *gen;
    slot *slot;
    ProtobufCMessage *req;
} open_call;

/* ---- retiring generations ----------------------------------------------------------------- */

static void retired_remove(nh_plugin_host *ph, nh_generation *g) {
    pthread_mutex_lock(&ph->retired_mu);
    for (nh_generation **p = &ph->retired; *p; p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            break;
        }
    pthread_mutex_unlock(&ph->retired_mu);
}

static void free_on_owner(void *arg) {
    nh_generation *g = arg;
    if (!g->finished) {
        /* fini first, inside the generation's scope: work it starts keeps the object loaded,
         * and the count dropping to 0 again brings us back here to unload. */
        nh_gen_ref(g);
        const nh_scope *prev = nh_scope_enter(&g->scope);
        nh_gen_finish(g);
        nh_scope_enter(prev);
        nh_gen_unref(g);
        return;
    }
    retired_remove(g->idle_arg, g);
    if (g->tag) /* it served (a staged generation that failed never did) */
        nh_logf(NH_LOG_INFO, "plugins",
                "plugin '%s' version %s generation %llu finished and unloaded", g->conf->name,
                g->lp.desc->version, (unsigned long long)g->number);
    else
        nh_logf(NH_LOG_DEBUG, "plugins", "plugin '%s': staged version %s discarded", g->conf->name,
                g->lp.desc->version);
    nh_gen_free(g);
}

/* Nothing of a retired generation is alive any more. Called on the thread that dropped the
 * last reference, possibly deep in SDK code: the free runs later, on the owner thread. */
static void gen_idle(nh_generation *g, void *arg) {
    nh_plugin_host *ph = arg;
    if (__atomic_load_n(&ph->closing, __ATOMIC_ACQUIRE)) return;
    if (!ph->rt || nh_runtime_post(ph->rt, free_on_owner, g) != 0) {
        /* The runtime is stopping: nh_plugin_host_free() frees it from the retired list. */
    }
}

/* Tells a generation that stops being current (owner thread) so it can stop periodic work. */
static void gen_call_retire(nh_generation *g) {
    const nh_plugin_descriptor *d = g->lp.desc;
    if (!g->inited || !NH_PLUGIN_HAS(d, retire)) return;
    const nh_scope *prev = nh_scope_enter(&g->scope);
    d->retire(g->state);
    nh_scope_enter(prev);
}

/* g stops being current (or never became current): it is freed once nothing of it is alive. */
static void gen_retire(nh_plugin_host *ph, nh_generation *g) {
    pthread_mutex_lock(&ph->retired_mu);
    g->next = ph->retired;
    ph->retired = g;
    pthread_mutex_unlock(&ph->retired_mu);
    nh_gen_unref(g);
}

/* A staged generation that will not serve (the reload failed). */
static void discard_on_owner(void *arg) {
    nh_generation *g = arg;
    gen_call_retire(g);
    gen_retire(g->idle_arg, g);
}

/* ---- the trampoline ----------------------------------------------------------------------- */

static const nh_plugin_method *route_method(route *r, const nh_generation *g) {
    if (r->cached_gen != g) {
        r->cached_gen = g;
        r->cached_m = nh_gen_method(g, r->method);
    }
    return r->cached_m;
}

static void call_end(nh_server_ctx *ctx, void *arg) {
    (void)ctx;
    open_call *c = arg;
    nh_plugin_host *ph = c->slot->ph;
    nh_generation *g = c->gen;
    protobuf_c_message_free_unpacked(c->req, NULL);
    free(c);
    __atomic_sub_fetch(&g->calls, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&ph->inflight, 1, __ATOMIC_RELEASE);
    nh_gen_unref(g);
}

/* The plugin's allow list in the configuration serving now, or NULL (owner thread). */
static const nh_host_allow *slot_allow(const slot *s) {
    const nh_host_config *cfg = nh_plugin_host_config(s->ph);
    for (size_t i = 0; cfg && i < cfg->plugin_count; i++)
        if (cfg->plugins[i].allow.set && !strcmp(cfg->plugins[i].name, s->name))
            return &cfg->plugins[i].allow;
    return NULL;
}

static void trampoline(nh_server_ctx *ctx, void *user) {
    route *r = user;
    slot *s = r->slot;
    if (s && __atomic_load_n(&s->ph->draining, __ATOMIC_ACQUIRE)) {
        nh_ctx_reply_error(ctx, NH_UNAVAILABLE, "node is shutting down");
        return;
    }
    nh_generation *g = s ? s->current : NULL;
    const nh_plugin_method *m = g ? route_method(r, g) : NULL;
    if (!m) {
        nh_ctx_reply_error(ctx, NH_UNIMPLEMENTED, "no handler registered for method %s", r->method);
        return;
    }
    const nh_host_allow *allow = slot_allow(s);
    if (allow && !nh_host_plugin_allowed(allow, ctx)) {
        const char *who = nh_ctx_caller_identity(ctx);
        nh_ctx_reply_error(ctx, NH_PERMISSION_DENIED,
                           "%s: caller %s is not in plugin '%s''s allow list", r->method,
                           who ? who : "without a certificate", s->name);
        return;
    }
    size_t len;
    const uint8_t *payload = nh_ctx_payload(ctx, &len);
    /* The wire bytes first: protobuf-c hands strings over as C strings (a NUL would cut them
     * short, so "k\0x" would alias "k") and does not check UTF-8, which Go's decoder does. */
    nh_wire_fault fault;
    nh_wire_status ws = nh_wire_check(m->request, payload, len, &fault);
    if (ws == NH_WIRE_INVALID_UTF8 || ws == NH_WIRE_NUL_IN_STRING) {
        char why[256];
        nh_ctx_reply_error(ctx, NH_INVALID_ARGUMENT, "%s",
                           nh_wire_describe(ws, &fault, why, sizeof why));
        return;
    }
    ProtobufCMessage *req =
        ws == NH_WIRE_OK ? protobuf_c_message_unpack(m->request, NULL, len, payload) : NULL;
    if (!req) {
        /* Gorums answers an undecodable request with Unknown and this prefix. */
        char why[256];
        if (ws == NH_WIRE_TOO_DEEP)
            nh_wire_describe(ws, &fault, why, sizeof why);
        else
            snprintf(why, sizeof why, "not a valid %s", m->request->name);
        nh_ctx_reply_error(ctx, NH_UNKNOWN, "gorums: could not unmarshal request: %s", why);
        return;
    }
    open_call *c = malloc(sizeof *c);
    if (!c) {
        protobuf_c_message_free_unpacked(req, NULL);
        nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    nh_plugin_host *ph = s->ph;
    c->gen = g;
    c->slot = s;
    c->req = req;
    nh_gen_ref(g);
    __atomic_add_fetch(&g->calls, 1, __ATOMIC_RELAXED);
    s->calls++;
    __atomic_add_fetch(&ph->inflight, 1, __ATOMIC_RELAXED);
    nh_ctx_on_end(ctx, call_end, c);
    /* Work the handler starts belongs to g: it keeps g loaded until it is done. */
    const nh_scope *prev = nh_scope_enter(&g->scope);
    const char *outer = nh_log_set_plugin(s->name);
    m->handler(ctx, req, g->state);
    nh_log_set_plugin(outer);
    nh_scope_enter(prev);
    /* An RPC or quorum call whose handler neither answered nor deferred would leave its caller
     * waiting: answer for the plugin. (Correctable handlers may send and return.) The current
     * generation cannot have been freed meanwhile: switches and frees run on this thread. */
    if ((m->call_type == NH_CALL_RPC || m->call_type == NH_CALL_QUORUMCALL) &&
        !nh_ctx_answered(ctx)) {
        nh_logf(NH_LOG_ERROR, s->name, "handler of %s returned without replying", r->method);
        nh_ctx_reply_error(ctx, NH_INTERNAL, "handler of %s returned without replying (plugin %s)",
                           r->method, s->name);
    }
}

/* ---- slots and routes --------------------------------------------------------------------- */

static slot *slot_new(nh_plugin_host *ph, const char *name) {
    slot *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->name = strdup(name);
    if (!s->name) {
        free(s);
        return NULL;
    }
    s->ph = ph;
    s->next_all = ph->all_slots;
    ph->all_slots = s;
    return s;
}

static slot *slot_find(nh_plugin_host *ph, const char *name) {
    for (size_t i = 0; i < ph->slot_count; i++)
        if (!strcmp(ph->slots[i]->name, name)) return ph->slots[i];
    return NULL;
}

static route *route_find(nh_plugin_host *ph, const char *method) {
    for (route *r = ph->routes; r; r = r->next)
        if (!strcmp(r->method, method)) return r;
    return NULL;
}

/* Makes sure every method of gens has a route registered with the server (new methods are
 * registered; the route serves nothing until routes_point()). Fallible; changes nothing that
 * serves. */
static int routes_prepare(nh_plugin_host *ph, nh_generation *const *gens, size_t n, nh_error *err) {
    for (size_t i = 0; i < n; i++) {
        const nh_plugin_descriptor *d = gens[i]->lp.desc;
        for (size_t j = 0; j < d->method_count; j++) {
            if (route_find(ph, d->methods[j].name)) continue;
            route *r = calloc(1, sizeof *r);
            if (r) r->method = strdup(d->methods[j].name);
            if (!r || !r->method) {
                free(r);
                return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
            }
            /* Set before the server can call it: at start the serving slot (a generation's tag
             * is its slot once it serves); at a switch NULL until routes_point(). */
            r->slot = gens[i]->tag;
            r->next = ph->routes;
            ph->routes = r;
            if (nh_server_handle(ph->srv, r->method, trampoline, r, err) != 0) return -1;
        }
    }
    return 0;
}

/* Points every method at the plugin serving it now (owner thread, at a switch). */
static void routes_point(nh_plugin_host *ph) {
    for (route *r = ph->routes; r; r = r->next) {
        r->slot = NULL;
        r->cached_gen = NULL;
        r->cached_m = NULL;
    }
    for (size_t i = 0; i < ph->slot_count; i++) {
        slot *s = ph->slots[i];
        const nh_plugin_descriptor *d = s->current->lp.desc;
        for (size_t j = 0; j < d->method_count; j++)
            route_find(ph, d->methods[j].name)->slot = s;
    }
}

/* ---- method conflicts --------------------------------------------------------------------- */

/* A method declared by two plugins, at the second one's entry: the text names the first one
 * and its entry's line. */
#define CLASH_FORMAT                                                                               \
    "method '%s' is declared by plugin '%s' (%s) and by plugin '%s' (%s); plugin '%s' is "         \
    "plugins[%zu], line %" PRIu32

/* The plugins of one method-conflict check, in the order of the configuration checked, with
 * their entries there (for positions: at a reload the new file's, not the ones an unchanged
 * generation was loaded with). Every conflict goes to errs when it is set; else the one whose
 * second plugin comes first in the file goes to err. */
typedef struct clashes {
    const nh_loaded_plugin *const *lps;
    const nh_host_plugin *const *confs;
    nh_error_list *errs;
    nh_error *err;
    size_t err_second; /* the second plugin of the conflict in err, SIZE_MAX: none yet */
} clashes;

static int on_clash(void *arg, const char *method, size_t first, size_t second) {
    clashes *c = arg;
    const nh_loaded_plugin *a = c->lps[first], *b = c->lps[second];
    const nh_conf_node *a_at = c->confs[first]->where, *b_at = c->confs[second]->where;
    if (c->errs) {
        nh_error_list_add_at(c->errs, b_at, CLASH_FORMAT, method, a->name, a->source_path, b->name,
                             b->source_path, a->name, a_at->index, a_at->line);
    } else if (second < c->err_second) {
        c->err_second = second;
        nh_conf_error(b_at, c->err, CLASH_FORMAT, method, a->name, a->source_path, b->name,
                      b->source_path, a->name, a_at->index, a_at->line);
        c->err->code = NH_ALREADY_EXISTS;
    }
    return 0;
}

/* Checks n loaded plugins and their entries for methods declared twice (see clashes). Returns 0
 * when there is none, else -1. */
static int find_clashes(const nh_loaded_plugin *const *lps, const nh_host_plugin *const *confs,
                        size_t n, nh_error_list *errs, nh_error *err) {
    clashes c = {.lps = lps, .confs = confs, .errs = errs, .err = err, .err_second = SIZE_MAX};
    nh_error e;
    long found = nh_plugin_each_conflict(lps, n, on_clash, &c, &e);
    if (found < 0) {
        if (errs) nh_error_list_add(errs, &e);
        if (err) *err = e;
    }
    return found == 0 ? 0 : -1;
}

/* The method-conflict check of generations serving the plugins confs[0..n) (start, reload). */
static int check_conflicts(nh_generation *const *gens, const nh_host_plugin *const *confs, size_t n,
                           nh_error *err) {
    const nh_loaded_plugin **lps = calloc(n ? n : 1, sizeof *lps);
    if (!lps) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    for (size_t i = 0; i < n; i++)
        lps[i] = &gens[i]->lp;
    int rc = find_clashes(lps, confs, n, NULL, err);
    free(lps);
    return rc;
}

/* ---- load, start, check ------------------------------------------------------------------- */

static void host_free_all(nh_plugin_host *ph) {
    __atomic_store_n(&ph->closing, 1, __ATOMIC_RELEASE);
    for (slot *s = ph->all_slots; s;) {
        slot *next = s->next_all;
        nh_gen_free(s->current);
        free(s->name);
        free(s);
        s = next;
    }
    for (nh_generation *g = ph->retired; g;) {
        nh_generation *next = g->next;
        nh_gen_free(g);
        g = next;
    }
    for (route *r = ph->routes; r;) {
        route *next = r->next;
        free(r->method);
        free(r);
        r = next;
    }
    nh_conf_hold_unref(ph->conf);
    pthread_mutex_destroy(&ph->retired_mu);
    free(ph->slots);
    free(ph->state_dir);
    free(ph);
}

int nh_plugin_host_load(const nh_host_config *cfg, const char *state_dir, nh_plugin_host **out,
                        nh_error *err) {
    *out = NULL;
    nh_plugin_host *ph = calloc(1, sizeof *ph);
    if (!ph) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    pthread_mutex_init(&ph->retired_mu, NULL);
    ph->state_dir = strdup(state_dir);
    /* The caller keeps cfg: the hold never frees it. */
    ph->conf = nh_conf_hold_new((nh_host_config *)cfg, false);
    ph->slots = calloc(cfg->plugin_count ? cfg->plugin_count : 1, sizeof *ph->slots);
    if (!ph->state_dir || !ph->conf || !ph->slots) {
        host_free_all(ph);
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    }
    for (size_t i = 0; i < cfg->plugin_count; i++) {
        const nh_host_plugin *p = &cfg->plugins[i];
        slot *s = slot_new(ph, p->name);
        nh_error e;
        if (!s) {
            host_free_all(ph);
            return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        }
        ph->slots[ph->slot_count++] = s;
        s->current = nh_gen_load(p, ph->conf, state_dir, 1, &e);
        if (!s->current) {
            host_free_all(ph);
            return nh_conf_error(p->where, err, "%s", e.message);
        }
        nh_gen_set_idle(s->current, gen_idle, ph);
        s->current->tag = s;
    }
    nh_generation **gens = calloc(ph->slot_count ? ph->slot_count : 1, sizeof *gens);
    const nh_host_plugin **confs = calloc(ph->slot_count ? ph->slot_count : 1, sizeof *confs);
    int rc = gens && confs
                 ? 0
                 : nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    for (size_t i = 0; rc == 0 && i < ph->slot_count; i++) {
        gens[i] = ph->slots[i]->current;
        confs[i] = &cfg->plugins[i];
    }
    if (rc == 0) rc = check_conflicts(gens, confs, ph->slot_count, err);
    free(gens);
    free(confs);
    if (rc != 0) {
        host_free_all(ph);
        return -1;
    }
    *out = ph;
    return 0;
}

int nh_plugin_host_check(const nh_host_config *cfg, const char *state_dir, nh_error_list *errs) {
    size_t before = nh_error_list_total(errs), n = cfg->plugin_count, loaded = 0;
    /* The caller keeps cfg: the hold never frees it. */
    nh_conf_hold *hold = nh_conf_hold_new((nh_host_config *)cfg, false);
    nh_generation **gens = calloc(n ? n : 1, sizeof *gens);
    const nh_loaded_plugin **lps = calloc(n ? n : 1, sizeof *lps);
    const nh_host_plugin **confs = calloc(n ? n : 1, sizeof *confs);
    if (!hold || !gens || !lps || !confs) {
        nh_error_list_addf(errs, NH_RESOURCE_EXHAUSTED, "out of memory");
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        const nh_host_plugin *p = &cfg->plugins[i];
        nh_error e;
        nh_generation *g = nh_gen_load(p, hold, state_dir, 1, &e);
        if (!g) {
            /* One plugin failing says nothing about the next. */
            nh_error_list_add_at(errs, p->where, "%s", e.message);
            continue;
        }
        gens[loaded] = g;
        lps[loaded] = &g->lp;
        confs[loaded++] = p;
    }
    find_clashes(lps, confs, loaded, errs, NULL);
    for (size_t i = 0; i < loaded; i++)
        nh_gen_free(gens[i]); /* nothing was started: unload only */
    free(gens);
    free(lps);
    free(confs);
    nh_conf_hold_unref(hold);
    return nh_error_list_total(errs) == before ? 0 : -1;
}

static void log_serving(const slot *s, const char *how) {
    const nh_generation *g = s->current;
    nh_logf(NH_LOG_INFO, "plugins", "plugin '%s' version %s generation %llu %s from %s", s->name,
            g->lp.desc->version, (unsigned long long)g->number, how, g->conf->path);
    nh_logf(NH_LOG_DEBUG, "plugins", "plugin '%s': descriptor name '%s', sha256 %s, copy %s",
            s->name, g->lp.desc->name, g->lp.sha256, g->lp.loaded_path);
}

int nh_plugin_host_start(nh_plugin_host *ph, nh_runtime *rt, nh_server *srv, uint32_t node_id,
                         nh_error *err) {
    ph->rt = rt;
    ph->srv = srv;
    ph->node_id = node_id;
    for (size_t i = 0; i < ph->slot_count; i++) {
        slot *s = ph->slots[i];
        if (nh_gen_init(s->current, rt, srv, node_id, err) != 0) {
            nh_error e = *err;
            nh_conf_error(s->current->conf->where, err, "%s", e.message);
            err->code = e.code;
            return -1;
        }
        log_serving(s, "loaded");
    }
    nh_generation **gens = calloc(ph->slot_count ? ph->slot_count : 1, sizeof *gens);
    if (!gens) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    for (size_t i = 0; i < ph->slot_count; i++)
        gens[i] = ph->slots[i]->current;
    /* Not on the owner thread while the server already listens: every route is complete
     * before it is registered, and is not written afterwards (routes_point is for switches). */
    int rc = routes_prepare(ph, gens, ph->slot_count, err);
    free(gens);
    return rc;
}

/* ---- reload ------------------------------------------------------------------------------- */

/* Deep equality of two YAML subtrees (values and structure, not positions). */
static bool conf_equal(const nh_conf_node *a, const nh_conf_node *b) {
    if (!a || !b) return a == b;
    if (a->kind != b->kind || a->count != b->count || a->quoted != b->quoted) return false;
    if ((a->key == NULL) != (b->key == NULL) || (a->key && strcmp(a->key, b->key))) return false;
    if ((a->value == NULL) != (b->value == NULL) || (a->value && strcmp(a->value, b->value)))
        return false;
    for (size_t i = 0; i < a->count; i++)
        if (!conf_equal(&a->items[i], &b->items[i])) return false;
    return true;
}

/* One plugin of the new configuration: its slot (NULL when new) and its new generation (NULL
 * when unchanged). */
typedef struct staged {
    const nh_host_plugin *conf;
    slot *slot;
    nh_generation *gen;
} staged;

typedef struct switch_task {
    nh_plugin_host *ph;
    nh_conf_hold *hold;
    staged *st;
    nh_generation **gens; /* the generation serving each plugin after the switch */
    size_t n;
    nh_reload_result *out;
    int rc;
    sem_t done;
} switch_task;

/* A new generation learns the configurations as they are at the switch (changes between its
 * init and the switch reached only the old generation). */
static void gen_config_changed(nh_generation *g, nh_server *srv) {
    if (!g->inited || !g->lp.desc->config_changed || !srv) return;
    const nh_scope *prev = nh_scope_enter(&g->scope);
    for (int client = 0; client < 2; client++) {
        nh_config *cfg = client ? nh_server_client_config(srv) : nh_server_config(srv);
        g->lp.desc->config_changed(g->state, cfg, client);
        nh_config_unref(cfg);
    }
    nh_scope_enter(prev);
}

/* Hands the old generation's state to the new one (both on the owner thread). */
static int hand_over(slot *s, nh_generation *ng, nh_error *err) {
    nh_generation *og = s->current;
    const nh_plugin_descriptor *od = og->lp.desc, *nd = ng->lp.desc;
    if (!od->export_state || !nd->import_state) {
        if (od->export_state || nd->import_state)
            nh_logf(NH_LOG_WARN, "plugins",
                    "plugin '%s': state not handed over (%s generation has no %s hook)", s->name,
                    od->export_state ? "new" : "old", od->export_state ? "import" : "export");
        return 0;
    }
    nh_buf blob = {0};
    nh_error e = {0};
    const nh_scope *prev = nh_scope_enter(&og->scope);
    int rc = od->export_state(og->state, &blob, &e);
    nh_scope_enter(prev);
    if (rc != 0) {
        nh_buf_free(&blob);
        return nh_error_set(err, e.code ? e.code : NH_INTERNAL, NH_ERR_LOCAL, 0,
                            "plugin '%s' (%s): export_state failed: %s", s->name, od->version,
                            e.message[0] ? e.message : "(no reason given)");
    }
    prev = nh_scope_enter(&ng->scope);
    rc = nd->import_state(ng->state, blob.data, blob.len, &e);
    nh_scope_enter(prev);
    size_t len = blob.len;
    nh_buf_free(&blob);
    if (rc != 0)
        return nh_error_set(err, e.code ? e.code : NH_INTERNAL, NH_ERR_LOCAL, 0,
                            "plugin '%s' (%s): import_state of %zu bytes failed: %s", s->name,
                            nd->version, len, e.message[0] ? e.message : "(no reason given)");
    nh_logf(NH_LOG_DEBUG, "plugins", "plugin '%s': %zu bytes of state handed over", s->name, len);
    return 0;
}

static void appendf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void appendf(char *buf, size_t size, const char *fmt, ...) {
    size_t off = strlen(buf);
    if (off + 1 >= size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + off, size - off, fmt, ap);
    va_end(ap);
}

/* The switch, on the owner thread: no request runs meanwhile, so the new generations take over
 * exactly where the old ones stopped. All or nothing. */
static void switch_on_owner(void *arg) {
    switch_task *t = arg;
    nh_plugin_host *ph = t->ph;
    nh_reload_result *out = t->out;
    t->rc = -1;
    if (routes_prepare(ph, t->gens, t->n, &out->err) != 0) goto done;
    for (size_t i = 0; i < t->n; i++)
        if (t->st[i].gen && t->st[i].slot && hand_over(t->st[i].slot, t->st[i].gen, &out->err))
            goto done;
    slot **slots = calloc(t->n ? t->n : 1, sizeof *slots);
    for (size_t i = 0; slots && i < t->n; i++)
        if (!t->st[i].slot && !(t->st[i].slot = slot_new(ph, t->st[i].conf->name))) {
            free(slots);
            slots = NULL;
        }
    if (!slots) {
        nh_error_set(&out->err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        goto done;
    }
    /* From here on nothing fails. */
    for (size_t i = 0; i < ph->slot_count; i++) {
        slot *s = ph->slots[i];
        bool kept = false;
        for (size_t j = 0; j < t->n; j++)
            kept |= t->st[j].slot == s;
        if (!kept) {
            appendf(out->summary, sizeof out->summary, "%s%s removed", out->summary[0] ? "; " : "",
                    s->name);
            nh_logf(NH_LOG_INFO, "plugins", "plugin '%s' removed (%zu call(s) still open on it)",
                    s->name, __atomic_load_n(&s->current->calls, __ATOMIC_RELAXED));
            nh_generation *old = s->current;
            s->current = NULL;
            gen_call_retire(old);
            gen_retire(ph, old);
            out->changed++;
        }
    }
    for (size_t i = 0; i < t->n; i++) {
        slot *s = t->st[i].slot;
        slots[i] = s;
        nh_generation *ng = t->st[i].gen, *og = s->current;
        if (!ng) continue;
        ng->tag = s;
        s->current = ng;
        out->changed++;
        gen_config_changed(ng, ph->srv);
        if (og) {
            appendf(out->summary, sizeof out->summary, "%s%s %s -> %s (gen %llu)",
                    out->summary[0] ? "; " : "", s->name, og->lp.desc->version,
                    ng->lp.desc->version, (unsigned long long)ng->number);
            nh_logf(NH_LOG_INFO, "plugins",
                    "plugin '%s' version %s generation %llu serving (was version %s generation "
                    "%llu, %zu call(s) still open on it)",
                    s->name, ng->lp.desc->version, (unsigned long long)ng->number,
                    og->lp.desc->version, (unsigned long long)og->number,
                    __atomic_load_n(&og->calls, __ATOMIC_RELAXED));
            gen_call_retire(og);
            gen_retire(ph, og);
        } else {
            appendf(out->summary, sizeof out->summary, "%s%s %s added (gen %llu)",
                    out->summary[0] ? "; " : "", s->name, ng->lp.desc->version,
                    (unsigned long long)ng->number);
            log_serving(s, "added");
        }
        t->st[i].gen = NULL; /* taken */
    }
    free(ph->slots);
    ph->slots = slots;
    ph->slot_count = t->n;
    nh_conf_hold *old_conf = ph->conf;
    ph->conf = t->hold;
    t->hold = NULL;
    nh_conf_hold_unref(old_conf);
    routes_point(ph);
    t->rc = 0;
done:
    sem_post(&t->done);
}

/* Runs fn on the owner thread and waits for it. Returns 0, -1 when the runtime stops. */
static int run_on_owner(nh_runtime *rt, void (*fn)(void *), void *arg, sem_t *done) {
    if (nh_runtime_post(rt, fn, arg) != 0) return -1;
    while (sem_wait(done) != 0 && errno == EINTR) {
    }
    return 0;
}

/* A new configuration file that changes no plugin, made the one serving on the owner thread. */
typedef struct conf_swap {
    nh_plugin_host *ph;
    nh_conf_hold *hold;
    sem_t done;
} conf_swap;

static void swap_conf_on_owner(void *arg) {
    conf_swap *t = arg;
    nh_conf_hold *old_conf = t->ph->conf;
    t->ph->conf = t->hold;
    nh_conf_hold_unref(old_conf);
    sem_post(&t->done);
}

/* Decides whether plugin p differs from what slot s serves. */
static int plugin_changed(const slot *s, const nh_host_plugin *p, bool *changed, nh_error *err) {
    const nh_generation *g = s->current;
    *changed = true;
    if (strcmp(g->conf->path, p->path) != 0 || !conf_equal(g->conf->config, p->config)) return 0;
    char hex[65];
    nh_error e;
    if (nh_sha256_file(p->path, hex, &e) != 0)
        return nh_conf_error(p->where, err, "plugin '%s': %s", p->name, e.message);
    *changed = strcmp(hex, g->lp.sha256) != 0;
    return 0;
}

int nh_plugin_host_reload(nh_plugin_host *ph, nh_host_config *cfg, nh_reload_result *out) {
    nh_error *err = &out->err;
    if (__atomic_load_n(&ph->draining, __ATOMIC_ACQUIRE)) {
        nh_host_config_free(cfg);
        return nh_error_set(err, NH_UNAVAILABLE, NH_ERR_LOCAL, 0, "node is stopping");
    }
    size_t n = cfg->plugin_count;
    nh_conf_hold *hold = nh_conf_hold_new(cfg, true);
    staged *st = calloc(n ? n : 1, sizeof *st);
    nh_generation **gens = calloc(n ? n : 1, sizeof *gens);
    int rc = -1;
    if (!hold || !st || !gens) {
        if (!hold) nh_host_config_free(cfg);
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        goto out;
    }
    /* Stage: load and check every changed plugin. */
    size_t staged_count = 0;
    for (size_t i = 0; i < n; i++) {
        const nh_host_plugin *p = &cfg->plugins[i];
        st[i].conf = p;
        st[i].slot = slot_find(ph, p->name);
        bool changed = true;
        if (st[i].slot && plugin_changed(st[i].slot, p, &changed, err) != 0) goto out;
        if (changed) {
            nh_error e;
            uint64_t number = st[i].slot ? st[i].slot->current->number + 1 : 1;
            st[i].gen = nh_gen_load(p, hold, ph->state_dir, number, &e);
            if (st[i].gen) nh_gen_set_idle(st[i].gen, gen_idle, ph);
            if (!st[i].gen) {
                nh_conf_error(p->where, err, "%s", e.message);
                err->code = e.code;
                goto out;
            }
            staged_count++;
        }
        gens[i] = st[i].gen ? st[i].gen : st[i].slot->current;
    }
    bool removed = false;
    for (size_t i = 0; i < ph->slot_count; i++) {
        bool kept = false;
        for (size_t j = 0; j < n; j++)
            kept |= st[j].slot == ph->slots[i];
        removed |= !kept;
    }
    if (staged_count == 0 && !removed) {
        /* Nothing to switch. The new file becomes the configuration serving (the plugins keep
         * the subtrees of the one they started with, which are equal). */
        nh_conf_hold_ref(hold);
        conf_swap t = {.ph = ph, .hold = hold};
        sem_init(&t.done, 0, 0);
        /* On the owner thread: handlers read ph->conf there (a stopping node keeps the old). */
        if (!ph->rt || run_on_owner(ph->rt, swap_conf_on_owner, &t, &t.done) != 0)
            nh_conf_hold_unref(t.hold);
        sem_destroy(&t.done);
        rc = 0;
        goto out;
    }
    {
        /* Positions from the new file, also for the plugins that did not change. */
        const nh_host_plugin **confs = calloc(n ? n : 1, sizeof *confs);
        int clash = -1;
        if (!confs) {
            nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        } else {
            for (size_t i = 0; i < n; i++)
                confs[i] = st[i].conf;
            clash = check_conflicts(gens, confs, n, err);
        }
        free(confs);
        if (clash != 0) goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (!st[i].gen) continue;
        if (nh_gen_init(st[i].gen, ph->rt, ph->srv, ph->node_id, err) != 0) {
            nh_error e = *err;
            nh_conf_error(st[i].conf->where, err, "%s", e.message);
            err->code = e.code;
            goto out;
        }
    }
    /* Switch on the owner thread. */
    switch_task t = {.ph = ph, .hold = hold, .st = st, .gens = gens, .n = n, .out = out};
    sem_init(&t.done, 0, 0);
    nh_conf_hold_ref(hold); /* the task's, taken when it runs */
    if (run_on_owner(ph->rt, switch_on_owner, &t, &t.done) != 0) {
        nh_conf_hold_unref(hold);
        nh_error_set(err, NH_UNAVAILABLE, NH_ERR_LOCAL, 0, "node is stopping");
    } else {
        rc = t.rc;
        if (t.hold) nh_conf_hold_unref(t.hold); /* the switch did not take it */
    }
    sem_destroy(&t.done);
out:
    /* Generations staged but not switched: retired (init ran: fini on the owner thread). */
    for (size_t i = 0; st && i < n; i++)
        if (st[i].gen) {
            /* An initialised generation may have started work: it gets its retire hook on the
             * owner thread like any generation that stops. */
            if (!st[i].gen->inited || nh_runtime_post(ph->rt, discard_on_owner, st[i].gen) != 0)
                gen_retire(ph, st[i].gen);
        }
    nh_conf_hold_unref(hold);
    free(st);
    free(gens);
    out->ok = rc == 0;
    return rc;
}

const nh_host_config *nh_plugin_host_config(const nh_plugin_host *ph) {
    return ph->conf->cfg;
}

/* ---- serving ------------------------------------------------------------------------------ */

void nh_plugin_host_config_changed(nh_plugin_host *ph, nh_config *cfg, bool client_config) {
    if (!ph) return;
    for (size_t i = 0; i < ph->slot_count; i++) {
        nh_generation *g = ph->slots[i]->current;
        if (g && g->inited && g->lp.desc->config_changed) {
            const nh_scope *prev = nh_scope_enter(&g->scope);
            g->lp.desc->config_changed(g->state, cfg, client_config);
            nh_scope_enter(prev);
        }
    }
}

static void announce_on_owner(void *arg) {
    nh_plugin_host *ph = arg;
    for (size_t i = 0; i < ph->slot_count; i++)
        if (ph->slots[i]->current) gen_config_changed(ph->slots[i]->current, ph->srv);
}

void nh_plugin_host_announce_configs(nh_plugin_host *ph) {
    if (ph && ph->rt && nh_runtime_post(ph->rt, announce_on_owner, ph) != 0)
        nh_logf(NH_LOG_WARN, "plugins", "cannot tell the plugins their configurations: stopping");
}

static void retire_all_on_owner(void *arg) {
    nh_plugin_host *ph = arg;
    for (size_t i = 0; i < ph->slot_count; i++)
        if (ph->slots[i]->current) gen_call_retire(ph->slots[i]->current);
}

void nh_plugin_host_drain(nh_plugin_host *ph) {
    if (!ph || __atomic_exchange_n(&ph->draining, 1, __ATOMIC_ACQ_REL)) return;
    /* The current generations stop periodic work too, so that what they started can end. */
    if (ph->rt) nh_runtime_post(ph->rt, retire_all_on_owner, ph);
}

size_t nh_plugin_host_pending(nh_plugin_host *ph) {
    if (!ph) return 0;
    size_t n = 0;
    for (size_t i = 0; i < ph->slot_count; i++) {
        const nh_generation *g = ph->slots[i]->current;
        if (g) n += __atomic_load_n(&g->refs, __ATOMIC_ACQUIRE) - 1;
    }
    pthread_mutex_lock(&ph->retired_mu);
    for (const nh_generation *g = ph->retired; g; g = g->next)
        n += __atomic_load_n(&g->refs, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&ph->retired_mu);
    return n;
}

size_t nh_plugin_host_inflight(const nh_plugin_host *ph) {
    return ph ? __atomic_load_n(&ph->inflight, __ATOMIC_ACQUIRE) : 0;
}

size_t nh_plugin_host_count(const nh_plugin_host *ph) {
    return ph ? ph->slot_count : 0;
}

void nh_plugin_host_status(const nh_plugin_host *ph, size_t i, nh_plugin_status *out) {
    const slot *s = ph->slots[i];
    const nh_generation *g = s->current;
    *out = (nh_plugin_status){
        .name = s->name,
        .version = g->lp.desc->version,
        .path = g->conf->path,
        .generation = g->number,
        .loaded_at_unix_ns = g->loaded_at_ns,
        .method_count = g->lp.desc->method_count,
        .methods = g->method_names,
        .calls = s->calls,
        .sha256 = g->lp.sha256,
    };
    nh_plugin_host *mph = (nh_plugin_host *)ph;
    pthread_mutex_lock(&mph->retired_mu);
    for (const nh_generation *o = ph->retired; o; o = o->next)
        if (o->tag == s) {
            out->old_generations++;
            out->old_calls += __atomic_load_n(&o->calls, __ATOMIC_RELAXED);
        }
    pthread_mutex_unlock(&mph->retired_mu);
}

typedef struct stop_task {
    nh_plugin_host *ph;
    sem_t done;
} stop_task;

static void stop_on_owner(void *arg) {
    stop_task *t = arg;
    nh_plugin_host *ph = t->ph;
    for (size_t i = 0; i < ph->slot_count; i++)
        if (ph->slots[i]->current) nh_gen_finish(ph->slots[i]->current);
    /* Retired generations whose calls ended but whose SDK work is still pending finish now too,
     * while the runtime their env points at still runs. */
    pthread_mutex_lock(&ph->retired_mu);
    for (nh_generation *g = ph->retired; g; g = g->next)
        nh_gen_finish(g);
    pthread_mutex_unlock(&ph->retired_mu);
    sem_post(&t->done);
}

void nh_plugin_host_stop(nh_plugin_host *ph) {
    if (!ph) return;
    nh_plugin_host_drain(ph);
    /* fini must not run under work still pending (the program's drain waited already; this
     * covers other callers), within reason: 10 s. */
    for (int i = 0; i < 5000 && ph->rt && nh_plugin_host_pending(ph) > 0; i++) {
        struct timespec ts = {0, 2 * 1000000};
        nanosleep(&ts, NULL);
    }
    /* fini runs on the owner thread, like the handlers that share the plugin's state. */
    stop_task t = {.ph = ph};
    sem_init(&t.done, 0, 0);
    if (!ph->rt || run_on_owner(ph->rt, stop_on_owner, &t, &t.done) != 0) stop_on_owner(&t);
    sem_destroy(&t.done);
}

void nh_plugin_host_free(nh_plugin_host *ph) {
    if (!ph) return;
    /* The runtime is gone (or never ran): no call can still end and no SDK work is pending, so
     * every generation, current or retired, is freed here. */
    host_free_all(ph);
}
