#include "metrics/metrics_impl.h"
#include "server/methods.h"

#include "core/runtime_impl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

const nh_method *nh_methods_find(const nh_method_table *t, const char *name) {
    if (!t || !t->cap) return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
        const nh_method *m = &t->slots[i];
        if (!m->name) return NULL;
        if (!strcmp(m->name, name)) return m;
    }
}

static int grow(nh_method_table *t) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    nh_method *s = calloc(cap, sizeof *s);
    if (!s) return -1;
    for (size_t j = 0; j < t->cap; j++) {
        if (!t->slots[j].name) continue;
        size_t i = hash_name(t->slots[j].name) & (cap - 1);
        while (s[i].name)
            i = (i + 1) & (cap - 1);
        s[i] = t->slots[j];
    }
    free(t->slots);
    t->slots = s;
    t->cap = cap;
    return 0;
}

int nh_methods_put(nh_method_table *t, const char *name, nh_handler_fn fn, void *user,
                   void (*user_free)(void *user)) {
    if ((t->len + 1) * 2 > t->cap && grow(t) != 0) return -1;
    size_t mask = t->cap - 1;
    size_t i = hash_name(name) & mask;
    while (t->slots[i].name && strcmp(t->slots[i].name, name))
        i = (i + 1) & mask;
    nh_method *m = &t->slots[i];
    if (!m->name) {
        m->name = strdup(name);
        if (!m->name) return -1;
        m->stats = nh_metrics_method(name);
        t->len++;
    }
    void (*old_free)(void *) = m->user_free;
    void *old_user = m->user;
    m->fn = fn;
    m->user = user;
    m->user_free = user_free;
    if (old_free) old_free(old_user);
    return 0;
}

void nh_methods_free(nh_method_table *t) {
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].user_free) t->slots[i].user_free(t->slots[i].user);
        free(t->slots[i].name);
    }
    free(t->slots);
    memset(t, 0, sizeof *t);
}

typedef struct register_args {
    nh_method_table *t;
    const char *method;
    nh_handler_fn fn;
    void *user;
    void (*user_free)(void *user);
    int rc;
} register_args;

static void register_on_owner(void *p) {
    register_args *a = p;
    a->rc = nh_methods_put(a->t, a->method, a->fn, a->user, a->user_free);
}

int nh_methods_register(nh_runtime *rt, nh_method_table *t, const char *method, nh_handler_fn fn,
                        void *user, nh_error *err) {
    return nh_methods_register_owned(rt, t, method, fn, user, NULL, err);
}

int nh_methods_register_owned(nh_runtime *rt, nh_method_table *t, const char *method,
                              nh_handler_fn fn, void *user, void (*user_free)(void *user),
                              nh_error *err) {
    if (!fn) return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "handler is NULL");
    if (!method || !*method)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "method name is empty");
    register_args a = {t, method, fn, user, user_free, -1};
    if (nh_runtime_sync(rt, register_on_owner, &a) != 0)
        return nh_error_set(err, NH_UNAVAILABLE, NH_ERR_CLOSED, 0, "runtime stopped");
    if (a.rc != 0)
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "out of memory");
    return 0;
}
