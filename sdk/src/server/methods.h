/* Private: a table of handlers by full method name. Used by servers and by a runtime's client
 * back-channel. Owner thread only. */
#ifndef NH_SERVER_METHODS_H
#define NH_SERVER_METHODS_H

#include <nodehost/server.h>

#include <stddef.h>

/** One registered method. */
struct nh_method_stats;

typedef struct nh_method {
    char *name;
    nh_handler_fn fn;
    void *user;
    void (*user_free)(void *user); /* frees user when replaced or at the table's end; NULL:
                                      user belongs to the caller */
    struct nh_method_stats *stats; /* its request metrics (metrics/metrics_impl.h) */
} nh_method;

/** An open-addressing hash table keyed by method name. Zero-initialise before use. */
typedef struct nh_method_table {
    nh_method *slots;
    size_t cap, len;
} nh_method_table;

/** The registration of a method, or NULL. */
const nh_method *nh_methods_find(const nh_method_table *t, const char *name);

/** Registers or replaces a method's handler. With user_free, the table owns user: it calls
 * user_free(user) when the method is registered again (at once) or the table is freed. Dispatch
 * and registration both run on the owner thread, so no handler reads a replaced user any more,
 * except a handler that registers its own method again: it must not use its user data after
 * that. Returns 0, or -1 when out of memory (user is then still the caller's). */
int nh_methods_put(nh_method_table *t, const char *name, nh_handler_fn fn, void *user,
                   void (*user_free)(void *user));

struct nh_runtime;

/** Validates and registers a handler in t on rt's owner thread (waiting for it when called
 * from another thread): the body of nh_server_handle() and nh_runtime_handle(). */
int nh_methods_register(nh_runtime *rt, nh_method_table *t, const char *method, nh_handler_fn fn,
                        void *user, nh_error *err);

/** nh_methods_register() handing user to the table (see nh_methods_put()). On -1 user is still
 * the caller's. */
int nh_methods_register_owned(nh_runtime *rt, nh_method_table *t, const char *method,
                              nh_handler_fn fn, void *user, void (*user_free)(void *user),
                              nh_error *err);

/** Frees the table's storage and the user data it owns. */
void nh_methods_free(nh_method_table *t);

#endif
