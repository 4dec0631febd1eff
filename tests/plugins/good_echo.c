/* Test plugin good_echo: a valid plugin. plugtest.Echo.Echo echoes its request,
 * plugtest.Echo.Fail answers FAILED_PRECONDITION. init and fini count their calls (read them with
 * good_echo_counts()); the state (number of echoes served) survives a reload through
 * export_state / import_state. */
#include <stdlib.h>
#include <string.h>

#include "plugtest.h"

typedef struct echo_state {
    uint64_t echoes; /* requests echoed by this generation and the ones before it */
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

static int init(const nh_plugin_env *env, void **state, nh_error *err) {
    (void)env;
    echo_state *s = calloc(1, sizeof *s);
    if (s == NULL) return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "no memory");
    g_inits++;
    *state = s;
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
    if (len != sizeof s->echoes)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "good_echo: state of %zu bytes, expected %zu", len, sizeof s->echoes);
    memcpy(&s->echoes, data, len);
    return 0;
}

static const nh_plugin_method methods[] = {
    {"plugtest.Echo.Echo", NH_CALL_RPC, &plugtest__echo_msg__descriptor,
     &plugtest__echo_msg__descriptor, echo},
    {"plugtest.Echo.Fail", NH_CALL_RPC, &plugtest__echo_msg__descriptor,
     &plugtest__echo_msg__descriptor, fail},
};

static const nh_plugin_descriptor desc = {
    PLUGTEST_HEADER,
    .name = "good_echo",
    .version = "1.0.0",
    .description = "echoes plugtest.EchoMsg (test plugin)",
    .methods = methods,
    .method_count = sizeof methods / sizeof methods[0],
    .init = init,
    .fini = fini,
    .export_state = export_state,
    .import_state = import_state,
};

NH_PLUGIN_DEFINE(desc)
