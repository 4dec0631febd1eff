/* Plugin generations: load, check, init, count, finish, free. See generation.h. */
#include "plugin/generation.h"

#include "plugin/plugin_host.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

nh_conf_hold *nh_conf_hold_new(nh_host_config *cfg, bool owned) {
    nh_conf_hold *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->cfg = cfg;
    h->refs = 1;
    h->owned = owned;
    return h;
}

void nh_conf_hold_ref(nh_conf_hold *h) {
    __atomic_add_fetch(&h->refs, 1, __ATOMIC_RELAXED);
}

void nh_conf_hold_unref(nh_conf_hold *h) {
    if (!h || __atomic_sub_fetch(&h->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    if (h->owned) nh_host_config_free(h->cfg);
    free(h);
}

static int64_t now_unix_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void scope_hold(void *arg) {
    nh_gen_ref(arg);
}

static void scope_release(void *arg) {
    nh_gen_unref(arg);
}

/* Runs the plugin's own check of its config subtree. */
static int gen_check_config(nh_generation *g, nh_error *err) {
    const nh_plugin_descriptor *d = g->lp.desc;
    if (!d->check_config) return 0;
    nh_error e = {0};
    if (d->check_config(g->conf->config, &e) == 0) return 0;
    if (e.code == NH_OK) e.code = NH_INVALID_ARGUMENT;
    return nh_error_set(err, e.code, NH_ERR_LOCAL, 0, "plugin '%s': config: %s", g->conf->name,
                        e.message[0] ? e.message : "rejected (no reason given)");
}

static int gen_check_names(nh_generation *g, nh_error *err) {
    const nh_plugin_descriptor *d = g->lp.desc;
    for (size_t j = 0; j < d->method_count; j++)
        if (!strncmp(d->methods[j].name, NH_HOST_RESERVED_PREFIX, strlen(NH_HOST_RESERVED_PREFIX)))
            return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                                "plugin '%s': method '%s' is reserved for the host (names "
                                "starting with '%s')",
                                g->conf->name, d->methods[j].name, NH_HOST_RESERVED_PREFIX);
    return 0;
}

nh_generation *nh_gen_load(const nh_host_plugin *conf, nh_conf_hold *hold, const char *state_dir,
                           uint64_t number, nh_error *err) {
    nh_generation *g = calloc(1, sizeof *g);
    if (!g) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        return NULL;
    }
    g->conf = conf;
    g->hold = hold;
    nh_conf_hold_ref(hold);
    g->number = number;
    g->refs = 1;
    g->scope = (nh_scope){.hold = scope_hold, .release = scope_release, .arg = g};
    if (nh_plugin_load(conf->name, conf->path, state_dir, &g->lp, err) != 0) {
        nh_gen_free(g);
        return NULL;
    }
    g->loaded_at_ns = now_unix_ns();
    const nh_plugin_descriptor *d = g->lp.desc;
    g->method_names = calloc(d->method_count, sizeof *g->method_names);
    if (!g->method_names) {
        nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
        nh_gen_free(g);
        return NULL;
    }
    for (size_t i = 0; i < d->method_count; i++)
        g->method_names[i] = d->methods[i].name;
    if (gen_check_config(g, err) != 0 || gen_check_names(g, err) != 0) {
        nh_gen_free(g);
        return NULL;
    }
    return g;
}

int nh_gen_init(nh_generation *g, nh_runtime *rt, nh_server *srv, uint32_t node_id, nh_error *err) {
    const nh_plugin_descriptor *d = g->lp.desc;
    if (!d->init) {
        g->inited = true;
        return 0;
    }
    nh_plugin_env env = {
        .size = sizeof env,
        .runtime = rt,
        .server = srv,
        .node_id = node_id,
        .name = g->conf->name,
        .config = g->conf->config,
        .generation = g->number,
    };
    nh_error e = {0};
    /* Work init starts (posted tasks, calls) belongs to this generation. */
    const nh_scope *prev = nh_scope_enter(&g->scope);
    int rc = d->init(&env, &g->state, &e);
    nh_scope_enter(prev);
    if (rc != 0) {
        if (e.code == NH_OK) e.code = NH_FAILED_PRECONDITION;
        return nh_error_set(err, e.code, NH_ERR_LOCAL, 0, "plugin '%s' (%s): init failed: %s",
                            g->conf->name, d->version,
                            e.message[0] ? e.message : "(no reason given)");
    }
    g->inited = true;
    return 0;
}

void nh_gen_set_idle(nh_generation *g, nh_gen_idle_fn fn, void *arg) {
    g->on_idle = fn;
    g->idle_arg = arg;
}

void nh_gen_ref(nh_generation *g) {
    __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
}

void nh_gen_unref(nh_generation *g) {
    if (__atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) == 0 && g->on_idle)
        g->on_idle(g, g->idle_arg);
}

void nh_gen_finish(nh_generation *g) {
    if (g->finished) return;
    g->finished = true;
    /* No scope here: work fini started would outlive the object (a plugin bug). */
    if (g->inited && g->lp.desc->fini) g->lp.desc->fini(g->state);
    g->inited = false;
}

void nh_gen_free(nh_generation *g) {
    if (!g) return;
    nh_gen_finish(g);
    nh_plugin_unload(&g->lp);
    free(g->method_names);
    nh_conf_hold_unref(g->hold);
    free(g);
}

const nh_plugin_method *nh_gen_method(const nh_generation *g, const char *name) {
    const nh_plugin_descriptor *d = g->lp.desc;
    for (size_t i = 0; i < d->method_count; i++)
        if (!strcmp(d->methods[i].name, name)) return &d->methods[i];
    return NULL;
}
