/* Test plugin good_echo: a valid plugin. plugtest.Echo.Echo echoes its request,
 * plugtest.Echo.Fail answers FAILED_PRECONDITION. init and fini count their calls (read them with
 * good_echo_counts()); the state (number of echoes served) survives a reload through
 * export_state / import_state. check_config refuses a config with `reject: true`.
 *
 * Built several times from this source (tests/plugins/CMakeLists.txt): good_echo (version
 * 1.0.0, the two methods above, as the loader's test expects), and the reload variants
 * good_echo_v1 / _v2 / _v3 (versions 1.0.0, 2.0.0, 3.0.0, ECHO_RELOAD_METHODS defined), which
 * add:
 *   plugtest.Echo.Version  answers text = the version of the generation that served it;
 *   plugtest.Echo.Count    answers n = the echoes counted (handed over across reloads);
 *   plugtest.Echo.Slow     releases the stream's order and offloads to a worker, which waits
 *                          (request text non-empty: until the file named by text exists, at most
 *                          120 s; else n milliseconds) and answers text = the version of the
 *                          generation that served it, n = the request's n.
 * The reload variants also run a background ticker from init: a worker job that sleeps 5 ms
 * and posts a task that queues the next job, so the generation always has work pending; only
 * the retire hook stops it. A host that never called retire would never see such a generation
 * drain (tests check that old generations do).
 * good_echo_refuse (version 2.0.0-refuse, ECHO_REFUSE_STATE) fails every import_state. */
#ifndef ECHO_VERSION
#define ECHO_VERSION "1.0.0"
#endif

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nodehost/conf.h>

#include "plugtest.h"

typedef struct echo_state {
    uint64_t echoes; /* requests echoed by this generation and the ones before it */
    nh_runtime *rt;
    bool retired; /* owner thread: the ticker stops */
} echo_state;

static int g_inits, g_finis;

/** Calls of init and fini so far (exported for the tests). */
__attribute__((visibility("default"))) void good_echo_counts(int *inits, int *finis);
void good_echo_counts(int *inits, int *finis) {
    *inits = g_inits;
    *finis = g_finis;
}

static void echo(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    echo_state *s = state;
    if (s != NULL) s->echoes++;
    nh_ctx_reply_msg(ctx, request);
}

static void fail(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    (void)request;
    (void)state;
    nh_ctx_reply_error(ctx, NH_FAILED_PRECONDITION, "good_echo: Fail always fails");
}

#ifdef ECHO_RELOAD_METHODS
static void version(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    (void)request;
    (void)state;
    Plugtest__EchoMsg out = PLUGTEST__ECHO_MSG__INIT;
    out.text = (char *)ECHO_VERSION;
    nh_ctx_reply_msg(ctx, &out.base);
}

static void count(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    (void)request;
    const echo_state *s = state;
    Plugtest__EchoMsg out = PLUGTEST__ECHO_MSG__INIT;
    out.text = (char *)ECHO_VERSION;
    out.n = s != NULL ? s->echoes : 0;
    nh_ctx_reply_msg(ctx, &out.base);
}

static void sleep_ms(uint64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* On a worker thread: the request stays valid until the call ends (the reply below). */
static void slow_work(nh_server_ctx *ctx, void *arg) {
    const Plugtest__EchoMsg *req = arg;
    if (req->text != NULL && req->text[0] != '\0') {
        for (int i = 0; i < 60000 && access(req->text, F_OK) != 0; i++)
            sleep_ms(2);
    } else {
        sleep_ms(req->n);
    }
    Plugtest__EchoMsg out = PLUGTEST__ECHO_MSG__INIT;
    out.text = (char *)ECHO_VERSION;
    out.n = req->n;
    nh_ctx_reply_msg(ctx, &out.base);
}

static void slow(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    (void)state;
    if (nh_ctx_offload(ctx, true, slow_work, (void *)request) != 0)
        nh_ctx_reply_error(ctx, NH_UNAVAILABLE, "good_echo: cannot offload");
}
#endif

#ifdef ECHO_RELOAD_METHODS
static void tick_sleep(void *arg);

/* Owner thread: one more round unless the generation was retired. */
static void tick(void *arg) {
    echo_state *s = arg;
    if (!s->retired) nh_runtime_run_blocking(s->rt, tick_sleep, s);
}

static void tick_sleep(void *arg) {
    echo_state *s = arg;
    sleep_ms(5);
    nh_runtime_post(s->rt, tick, s);
}

static void retire(void *state) {
    ((echo_state *)state)->retired = true;
}
#endif

static int check_config(const nh_conf_node *config, nh_error *err) {
    const nh_conf_node *r = nh_conf_get(config, "reject");
    if (r != NULL && r->value != NULL && strcmp(r->value, "true") == 0)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "good_echo %s refuses `reject: true`", ECHO_VERSION);
    return 0;
}

static int init(const nh_plugin_env *env, void **state, nh_error *err) {
    echo_state *s = calloc(1, sizeof *s);
    if (s == NULL) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "no memory");
    g_inits++;
    s->rt = env->runtime;
    *state = s;
#ifdef ECHO_RELOAD_METHODS
    nh_runtime_post(s->rt, tick, s);
#endif
    return 0;
}

static void fini(void *state) {
    g_finis++;
    free(state);
}

static int export_state(void *state, nh_buf *out, nh_error *err) {
    const echo_state *s = state;
    out->data = malloc(sizeof s->echoes);
    if (out->data == NULL)
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "no memory");
    memcpy(out->data, &s->echoes, sizeof s->echoes);
    out->len = sizeof s->echoes;
    return 0;
}

static int import_state(void *state, const uint8_t *data, size_t len, nh_error *err) {
    echo_state *s = state;
#ifdef ECHO_REFUSE_STATE
    (void)s;
    (void)data;
    return nh_error_set(err, NH_DATA_LOSS, NH_ERR_LOCAL, 0,
                        "good_echo %s refuses every state (%zu bytes)", ECHO_VERSION, len);
#else
    if (len != sizeof s->echoes)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "good_echo: state of %zu bytes, expected %zu", len, sizeof s->echoes);
    memcpy(&s->echoes, data, len);
    return 0;
#endif
}

static const nh_plugin_method methods[] = {
    {"plugtest.Echo.Echo", NH_CALL_RPC, &plugtest__echo_msg__descriptor,
     &plugtest__echo_msg__descriptor, echo},
    {"plugtest.Echo.Fail", NH_CALL_RPC, &plugtest__echo_msg__descriptor,
     &plugtest__echo_msg__descriptor, fail},
#ifdef ECHO_RELOAD_METHODS
    {"plugtest.Echo.Version", NH_CALL_RPC, &plugtest__echo_msg__descriptor,
     &plugtest__echo_msg__descriptor, version},
    {"plugtest.Echo.Count", NH_CALL_RPC, &plugtest__echo_msg__descriptor,
     &plugtest__echo_msg__descriptor, count},
    {"plugtest.Echo.Slow", NH_CALL_RPC, &plugtest__echo_msg__descriptor,
     &plugtest__echo_msg__descriptor, slow},
#endif
};

static const nh_plugin_descriptor desc = {
    PLUGTEST_HEADER,
    .name = "good_echo",
    .version = ECHO_VERSION,
    .description = "echoes plugtest.EchoMsg (test plugin)",
    .methods = methods,
    .method_count = sizeof methods / sizeof methods[0],
    .check_config = check_config,
    .init = init,
    .fini = fini,
    .export_state = export_state,
    .import_state = import_state,
#ifdef ECHO_RELOAD_METHODS
    .retire = retire,
#endif
};

NH_PLUGIN_DEFINE(desc)
