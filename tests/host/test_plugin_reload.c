/* Hot reload of plugins (host/plugin/plugin_host.c, host/reload/reloader.c) in-process: real
 * YAML files, real plugin files replaced with rename() as a deployment does, real dlopen, a real
 * server on loopback gRPC and an SDK client node calling it.
 *
 * The test thread is the reload thread (nh_plugin_host_reload() waits on the owner thread), or
 * an nh_reloader runs the reloads with a do_reload like the program's. Status is read on the
 * owner thread (nh_plugin_host_status() is an owner-thread function). Nothing asserts on timing:
 * what must happen later is waited for with a generous timeout; the slow call is held open by a
 * gate file, not by a sleep. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/host_config.h"
#include "nh_test_util.h"
#include "plugin/loader.h"
#include "plugin/plugin_host.h"
#include "plugtest.pb-c.h"
#include "reload/reloader.h"

#include <nodehost/nodehost.h>

#define WAIT_MS 30000 /* generous: sanitizer builds and loaded machines are slow */

#ifndef NH_TEST_PLUGIN_DIR
#define NH_TEST_PLUGIN_DIR "tests/plugins"
#endif

/* ---- files ---------------------------------------------------------------------------------- */

static void strf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void strf(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size) fail_msg("string too long: %s", fmt);
}

static void write_file(const char *path, const void *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail_msg("open %s: %s", path, strerror(errno));
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) fail_msg("write %s: %s", path, strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    assert_int_equal(close(fd), 0);
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (!in) fail_msg("open %s: %s (build the test plugins first)", from, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t r = fread(buf + len, 1, cap - len, in);
        if (r == 0) break;
        len += r;
    }
    fclose(in);
    write_file(to, buf, len);
    free(buf);
}

/* Installs bytes at path as a deployment does: written to a new file, renamed over the old. */
static void install_bytes(const char *path, const void *data, size_t len) {
    char tmp[600];
    strf(tmp, sizeof tmp, "%s.new", path);
    write_file(tmp, data, len);
    assert_int_equal(rename(tmp, path), 0);
}

static void install_plugin(const char *path, const char *plugin) {
    char src[600], tmp[600];
    strf(src, sizeof src, "%s/%s.so", NH_TEST_PLUGIN_DIR, plugin);
    strf(tmp, sizeof tmp, "%s.new", path);
    copy_file(src, tmp);
    assert_int_equal(rename(tmp, path), 0);
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[600];
        strf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static size_t dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* Open file descriptors of this process (the directory's own descriptor counts, every time). */
static size_t count_fds(void) {
    return dir_entries("/proc/self/fd");
}

/* Lines of /proc/self/maps that map a file of dir. */
static size_t count_maps(const char *dir) {
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0, n = 0;
    while (getline(&line, &cap, f) > 0)
        if (strstr(line, dir)) n++;
    free(line);
    fclose(f);
    return n;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the node under test --------------------------------------------------------------------- */

typedef struct fixture {
    char dir[256];   /* temporary directory: the YAML file, plugin files, gate files */
    char state[300]; /* the loader's state directory (copies of the plugins) */
    char yaml[300];
    char echo_so[300];  /* where the YAML's plugin `echo` points */
    char other_so[300]; /* where the YAML's plugin `other` points */
    char gate[300];     /* the slow calls end once this file exists */
    char listen[64];
    nh_host_config *cfg; /* the configuration given to nh_plugin_host_load (ours to free) */
    nh_plugin_host *ph;
    nh_runtime *rt; /* the node's */
    nh_server *srv;
    nh_runtime *crt; /* the client's */
    nh_node *node;
} fixture;

/* Writes the YAML file (rename over): plugin echo with an optional config, plugin other when
 * other_path is not NULL (placed after echo). */
static void write_yaml(fixture *f, const char *echo_config, const char *other_path) {
    char text[2048];
    strf(text, sizeof text,
         "version: 1\n"
         "node: { id: 1, listen: \"%s\" }\n"
         "plugins:\n"
         "  - name: echo\n"
         "    path: echo.so\n"
         "%s%s%s"
         "%s%s%s"
         "limits: { shutdown_grace_ms: 0 }\n"
         "log: { level: warn }\n",
         f->listen, echo_config ? "    config: " : "", echo_config ? echo_config : "",
         echo_config ? "\n" : "", other_path ? "  - name: other\n    path: " : "",
         other_path ? other_path : "", other_path ? "\n" : "");
    install_bytes(f->yaml, text, strlen(text));
}

static nh_host_config *load_yaml(const fixture *f) {
    nh_host_config *c = NULL;
    nh_error err = {0};
    if (nh_host_config_load(f->yaml, 0, &c, &err) != 0) fail_msg("%s", err.message);
    return c;
}

static int setup(void **st) {
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strf(f->dir, sizeof f->dir, "/tmp/nh-reload-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    strf(f->state, sizeof f->state, "%s/state", f->dir);
    strf(f->yaml, sizeof f->yaml, "%s/node.yaml", f->dir);
    strf(f->echo_so, sizeof f->echo_so, "%s/echo.so", f->dir);
    strf(f->other_so, sizeof f->other_so, "%s/other.so", f->dir);
    strf(f->gate, sizeof f->gate, "%s/gate", f->dir);
    strf(f->listen, sizeof f->listen, "127.0.0.1:%d", nh_test_free_port());
    nh_error err = {0};
    if (nh_plugin_state_dir_prepare(f->state, &err) != 0) fail_msg("%s", err.message);
    *st = f;
    return 0;
}

/* Starts the node serving the YAML file as it is now, and the client. */
static void start_node(fixture *f) {
    nh_error err = {0};
    f->cfg = load_yaml(f);
    if (nh_plugin_host_load(f->cfg, f->state, &f->ph, &err) != 0) fail_msg("%s", err.message);
    nh_runtime_opts ro = {.name = "node1"};
    if (nh_runtime_new(&ro, &f->rt, &err) != 0) fail_msg("%s", err.message);
    nh_server_opts so = {.listen = f->listen, .node_id = 1};
    if (nh_server_new(f->rt, &so, &f->srv, NULL, &err) != 0) fail_msg("%s", err.message);
    if (nh_plugin_host_start(f->ph, f->rt, f->srv, 1, &err) != 0) fail_msg("%s", err.message);
    if (nh_runtime_new(NULL, &f->crt, &err) != 0) fail_msg("%s", err.message);
    nh_node_opts no = {.id = 1, .address = f->listen, .backoff_base_ms = 20, .backoff_max_ms = 200};
    if (nh_node_open(f->crt, &no, &f->node, &err) != 0) fail_msg("%s", err.message);
}

static int teardown(void **st) {
    fixture *f = *st;
    if (f->gate[0]) write_file(f->gate, "", 0); /* let slow calls still running end */
    nh_runtime_free(f->crt);                    /* closes the client node */
    nh_plugin_host_stop(f->ph);
    nh_runtime_free(f->rt);
    nh_plugin_host_free(f->ph);
    nh_host_config_free(f->cfg);
    remove_tree(f->dir);
    free(f);
    return 0;
}

/* Sets the plugin file and the YAML file and starts the node. */
static fixture *start_with(void **st, const char *echo_plugin) {
    fixture *f = *st;
    install_plugin(f->echo_so, echo_plugin);
    write_yaml(f, NULL, NULL);
    start_node(f);
    return f;
}

/* ---- calls ------------------------------------------------------------------------------------
 */

typedef struct answer {
    nh_code code;
    char text[256];
    char err[NH_ERROR_MESSAGE_MAX];
    uint64_t n;
} answer;

static nh_buf echo_msg(const char *text, uint64_t n) {
    Plugtest__EchoMsg m = PLUGTEST__ECHO_MSG__INIT;
    m.text = (char *)(text ? text : "");
    m.n = n;
    nh_buf b = {0};
    b.len = plugtest__echo_msg__get_packed_size(&m);
    b.data = malloc(b.len ? b.len : 1);
    assert_non_null(b.data);
    plugtest__echo_msg__pack(&m, b.data);
    return b;
}

/* Fills a from a response (or an error). No cmocka assertion: may run on the owner thread. */
static void decode(answer *a, const uint8_t *p, size_t len, const nh_error *err) {
    memset(a, 0, sizeof *a);
    a->code = err ? err->code : NH_OK;
    if (err && err->code != NH_OK) {
        snprintf(a->err, sizeof a->err, "%s", err->message);
        return;
    }
    Plugtest__EchoMsg *m = plugtest__echo_msg__unpack(NULL, len, p);
    if (!m) {
        a->code = NH_INTERNAL;
        snprintf(a->err, sizeof a->err, "response does not decode as plugtest.EchoMsg");
        return;
    }
    snprintf(a->text, sizeof a->text, "%s", m->text ? m->text : "");
    a->n = m->n;
    plugtest__echo_msg__free_unpacked(m, NULL);
}

static answer call(fixture *f, const char *method, const char *text, uint64_t n) {
    nh_buf req = echo_msg(text, n), resp = {0};
    nh_call_opts o = {.timeout_ms = WAIT_MS};
    nh_error err = {0};
    answer a;
    if (nh_rpc(f->node, method, req.data, req.len, &o, &resp, &err) == 0)
        decode(&a, resp.data, resp.len, NULL);
    else
        decode(&a, NULL, 0, &err);
    nh_buf_free(&req);
    nh_buf_free(&resp);
    return a;
}

/* A call that must succeed. */
static answer call_ok(fixture *f, const char *method, const char *text, uint64_t n) {
    answer a = call(f, method, text, n);
    if (a.code != NH_OK) fail_msg("%s: code %d: %s", method, (int)a.code, a.err);
    return a;
}

static void expect_version(fixture *f, const char *version) {
    answer a = call_ok(f, "plugtest.Echo.Version", NULL, 0);
    assert_string_equal(a.text, version);
}

/* An asynchronous call whose answer the test waits for. */
typedef struct pending {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    answer a;
} pending;

static void pending_done(const nh_reply *r, void *user) {
    pending *p = user;
    answer a;
    decode(&a, r->payload, r->len, &r->err);
    pthread_mutex_lock(&p->mu);
    p->a = a;
    p->done = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void call_async(fixture *f, pending *p, const char *method, const char *text, uint64_t n) {
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->done = false;
    nh_buf req = echo_msg(text, n);
    nh_call_opts o = {.timeout_ms = 2 * WAIT_MS};
    nh_error err = {0};
    int rc = nh_rpc_async(f->node, method, req.data, req.len, &o, pending_done, p, &err);
    nh_buf_free(&req);
    if (rc != 0) fail_msg("%s: %s", method, err.message);
}

static bool pending_is_done(pending *p) {
    pthread_mutex_lock(&p->mu);
    bool d = p->done;
    pthread_mutex_unlock(&p->mu);
    return d;
}

static answer pending_wait(pending *p) {
    int64_t deadline = mono_ms() + 2 * WAIT_MS;
    pthread_mutex_lock(&p->mu);
    while (!p->done && mono_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    bool done = p->done;
    answer a = p->a;
    pthread_mutex_unlock(&p->mu);
    if (!done) fail_msg("the asynchronous call did not end");
    return a;
}

static void pending_destroy(pending *p) {
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

/* ---- status, read on the owner thread -------------------------------------------------------- */

typedef struct status {
    bool found;
    char version[32];
    char path[300];
    uint64_t generation;
    size_t method_count;
    size_t old_generations, old_calls;
    size_t plugins; /* nh_plugin_host_count() */
} status;

typedef struct status_task {
    nh_plugin_host *ph;
    const char *name;
    status *out;
    sem_t done;
} status_task;

static void status_on_owner(void *arg) {
    status_task *t = arg;
    memset(t->out, 0, sizeof *t->out);
    t->out->plugins = nh_plugin_host_count(t->ph);
    for (size_t i = 0; i < t->out->plugins; i++) {
        nh_plugin_status s;
        nh_plugin_host_status(t->ph, i, &s);
        if (strcmp(s.name, t->name) != 0) continue;
        t->out->found = true;
        snprintf(t->out->version, sizeof t->out->version, "%s", s.version);
        snprintf(t->out->path, sizeof t->out->path, "%s", s.path);
        t->out->generation = s.generation;
        t->out->method_count = s.method_count;
        t->out->old_generations = s.old_generations;
        t->out->old_calls = s.old_calls;
    }
    sem_post(&t->done);
}

static status get_status(fixture *f, const char *name) {
    status s;
    status_task t = {.ph = f->ph, .name = name, .out = &s};
    sem_init(&t.done, 0, 0);
    assert_int_equal(nh_runtime_post(f->rt, status_on_owner, &t), 0);
    while (sem_wait(&t.done) != 0) {
    }
    sem_destroy(&t.done);
    return s;
}

/* Waits until plugin name has exactly `gens` old generations with `calls` open calls. */
static status wait_old(fixture *f, const char *name, size_t gens, size_t calls) {
    int64_t deadline = mono_ms() + WAIT_MS;
    status s;
    for (;;) {
        s = get_status(f, name);
        if (s.found && s.old_generations == gens && s.old_calls == calls) return s;
        if (mono_ms() > deadline) break;
        nh_test_sleep_ms(5);
    }
    fail_msg("plugin %s: %zu old generation(s) with %zu call(s), want %zu with %zu", name,
             s.old_generations, s.old_calls, gens, calls);
    return s;
}

/* Waits until the state directory holds n copies (retired generations are unloaded, and their
 * copies removed, on the owner thread some time after their last call). */
static void wait_state_entries(fixture *f, size_t n) {
    int64_t deadline = mono_ms() + WAIT_MS;
    size_t got;
    while ((got = dir_entries(f->state)) != n && mono_ms() < deadline)
        nh_test_sleep_ms(5);
    if (got != n) fail_msg("state directory %s: %zu entries, want %zu", f->state, got, n);
}

/* ---- reloads -----------------------------------------------------------------------------------
 */

/* Re-reads the YAML file and reloads from the test thread. Returns nh_plugin_host_reload()'s. */
static int reload(fixture *f, nh_reload_result *res) {
    memset(res, 0, sizeof *res);
    return nh_plugin_host_reload(f->ph, load_yaml(f), res);
}

static nh_reload_result reload_ok(fixture *f) {
    nh_reload_result res;
    if (reload(f, &res) != 0) fail_msg("reload failed: %s", res.err.message);
    assert_true(res.ok);
    return res;
}

/* A reload that must fail with a message containing every one of the NULL-terminated strings. */
static void reload_fails(fixture *f, ...) {
    nh_reload_result res;
    int rc = reload(f, &res);
    if (rc == 0) fail_msg("reload succeeded: %s", res.summary);
    assert_int_equal(rc, -1);
    assert_false(res.ok);
    assert_int_not_equal(res.err.code, NH_OK);
    va_list ap;
    va_start(ap, f);
    const char *want;
    while ((want = va_arg(ap, const char *)))
        if (!strstr(res.err.message, want)) {
            va_end(ap);
            fail_msg("reload error \"%s\" does not contain \"%s\"", res.err.message, want);
        }
    va_end(ap);
    print_message("      rejected: %s\n", res.err.message);
}

/* ---- 1. a new version --------------------------------------------------------------------- */

static void test_reload_to_v2_hands_over_state_and_retires_v1(void **st) {
    fixture *f = start_with(st, "good_echo_v1");
    status s = get_status(f, "echo");
    assert_true(s.found);
    assert_int_equal(s.generation, 1);
    assert_string_equal(s.version, "1.0.0");
    assert_int_equal(s.method_count, 5);
    expect_version(f, "1.0.0");
    for (int i = 0; i < 3; i++)
        assert_string_equal(call_ok(f, "plugtest.Echo.Echo", "hi", (uint64_t)i).text, "hi");
    assert_int_equal(call_ok(f, "plugtest.Echo.Count", NULL, 0).n, 3);

    install_plugin(f->echo_so, "good_echo_v2");
    nh_reload_result res = reload_ok(f);
    assert_int_equal(res.changed, 1);
    if (!strstr(res.summary, "echo 1.0.0 -> 2.0.0 (gen 2)")) fail_msg("summary: %s", res.summary);

    /* New calls reach the new generation at once, with the old one's state. */
    expect_version(f, "2.0.0");
    answer c = call_ok(f, "plugtest.Echo.Count", NULL, 0);
    assert_string_equal(c.text, "2.0.0");
    assert_int_equal(c.n, 3);
    assert_string_equal(call_ok(f, "plugtest.Echo.Echo", "again", 0).text, "again");
    assert_int_equal(call_ok(f, "plugtest.Echo.Count", NULL, 0).n, 4);
    s = get_status(f, "echo");
    assert_int_equal(s.generation, 2);
    assert_string_equal(s.version, "2.0.0");
    assert_string_equal(s.path, f->echo_so);

    /* The old generation had nothing open: it is finished and unloaded, its copy removed. */
    wait_old(f, "echo", 0, 0);
    wait_state_entries(f, 1);
    assert_int_equal(nh_plugin_host_count(f->ph), 1);
    assert_int_equal(nh_plugin_host_inflight(f->ph), 0);

    /* And once more, to v3: generation 3, state still there. */
    install_plugin(f->echo_so, "good_echo_v3");
    res = reload_ok(f);
    assert_int_equal(res.changed, 1);
    expect_version(f, "3.0.0");
    assert_int_equal(call_ok(f, "plugtest.Echo.Count", NULL, 0).n, 4);
    assert_int_equal(get_status(f, "echo").generation, 3);
    wait_old(f, "echo", 0, 0);
    wait_state_entries(f, 1);
}

/* ---- 2. nothing changed ------------------------------------------------------------------- */

static void test_unchanged_reload_changes_nothing(void **st) {
    fixture *f = start_with(st, "good_echo_v1");
    call_ok(f, "plugtest.Echo.Echo", "x", 0);

    /* The same files. */
    nh_reload_result res = reload_ok(f);
    assert_int_equal(res.changed, 0);
    assert_int_equal(get_status(f, "echo").generation, 1);

    /* The same bytes deployed again (a new inode) and the YAML file rewritten as it was. */
    install_plugin(f->echo_so, "good_echo_v1");
    write_yaml(f, NULL, NULL);
    res = reload_ok(f);
    assert_int_equal(res.changed, 0);
    status s = get_status(f, "echo");
    assert_int_equal(s.generation, 1);
    assert_int_equal(s.old_generations, 0);
    expect_version(f, "1.0.0");
    assert_int_equal(call_ok(f, "plugtest.Echo.Count", NULL, 0).n, 1);
    wait_state_entries(f, 1);

    /* An equal config subtree written differently (flow vs block style) is equal too. */
    write_yaml(f, "{ a: 1, b: [x, y] }", NULL);
    res = reload_ok(f); /* a config was added: a change */
    assert_int_equal(res.changed, 1);
    assert_int_equal(get_status(f, "echo").generation, 2);
    write_yaml(f, "\n      a: 1\n      b:\n        - x\n        - y", NULL);
    res = reload_ok(f);
    assert_int_equal(res.changed, 0);
    assert_int_equal(get_status(f, "echo").generation, 2);
    wait_old(f, "echo", 0, 0);
}

/* ---- 3. failures keep the old generation -------------------------------------------------- */

static void expect_still_v1(fixture *f) {
    expect_version(f, "1.0.0");
    status s = get_status(f, "echo");
    assert_int_equal(s.generation, 1);
    assert_string_equal(s.version, "1.0.0");
    assert_int_equal(s.plugins, 1);
    assert_int_equal(call_ok(f, "plugtest.Echo.Count", NULL, 0).n, 1);
}

static void test_failed_reloads_keep_the_old_generation(void **st) {
    fixture *f = start_with(st, "good_echo_v1");
    call_ok(f, "plugtest.Echo.Echo", "x", 0);

    /* Not a shared object at all. */
    static const char junk[] = "#!/bin/sh\necho this is not a plugin\n";
    install_bytes(f->echo_so, junk, sizeof junk - 1);
    reload_fails(f, "plugin 'echo'", f->echo_so, NULL);
    expect_still_v1(f);

    /* A shared object with a bad descriptor. */
    install_plugin(f->echo_so, "bad_magic");
    reload_fails(f, "plugin 'echo'", "magic", NULL);
    expect_still_v1(f);
    install_plugin(f->echo_so, "bad_no_entry");
    reload_fails(f, "plugin 'echo'", "nh_plugin_entry", NULL);
    expect_still_v1(f);

    /* A valid plugin whose check_config refuses the new config. */
    install_plugin(f->echo_so, "good_echo_v2");
    write_yaml(f, "{ reject: true }", NULL);
    reload_fails(f, "plugin 'echo'", "config", "good_echo 2.0.0 refuses `reject: true`", NULL);
    expect_still_v1(f);

    /* A valid plugin whose init fails. */
    write_yaml(f, NULL, NULL);
    install_plugin(f->echo_so, "bad_init");
    reload_fails(f, "plugin 'echo'", "init failed", "cannot open database /nonexistent", NULL);
    expect_still_v1(f);

    /* A valid plugin that refuses the old generation's state: the switch on the owner thread
     * fails as a whole (after the new generation's init ran). */
    install_plugin(f->echo_so, "good_echo_refuse");
    nh_reload_result res;
    assert_int_equal(reload(f, &res), -1);
    assert_false(res.ok);
    assert_int_equal(res.err.code, NH_DATA_LOSS);
    if (!strstr(res.err.message, "plugin 'echo' (2.0.0-refuse): import_state of 8 bytes failed") ||
        !strstr(res.err.message, "good_echo 2.0.0-refuse refuses every state (8 bytes)"))
        fail_msg("reload error: %s", res.err.message);
    print_message("      rejected: %s\n", res.err.message);
    expect_still_v1(f);

    /* A file that goes missing between reading the YAML file and loading it. */
    install_plugin(f->echo_so, "good_echo_v2");
    nh_host_config *nw = load_yaml(f);
    assert_int_equal(unlink(f->echo_so), 0);
    memset(&res, 0, sizeof res);
    assert_int_equal(nh_plugin_host_reload(f->ph, nw, &res), -1);
    assert_false(res.ok);
    if (!strstr(res.err.message, "plugin 'echo'") || !strstr(res.err.message, f->echo_so))
        fail_msg("reload error: %s", res.err.message);
    print_message("      rejected: %s\n", res.err.message);
    expect_still_v1(f);

    /* None of the staged generations stays loaded; the original file again is no change. */
    wait_state_entries(f, 1);
    wait_old(f, "echo", 0, 0);
    install_plugin(f->echo_so, "good_echo_v1");
    res = reload_ok(f);
    assert_int_equal(res.changed, 0);
    expect_still_v1(f);

    /* And a good reload after all that works. */
    install_plugin(f->echo_so, "good_echo_v2");
    res = reload_ok(f);
    assert_int_equal(res.changed, 1);
    expect_version(f, "2.0.0");
    assert_int_equal(get_status(f, "echo").generation, 2);
    assert_int_equal(call_ok(f, "plugtest.Echo.Count", NULL, 0).n, 1);
    wait_old(f, "echo", 0, 0);
    wait_state_entries(f, 1);
}

/* ---- 4. a call open across the switch ----------------------------------------------------- */

static void wait_inflight(fixture *f, size_t n) {
    int64_t deadline = mono_ms() + WAIT_MS;
    size_t got;
    while ((got = nh_plugin_host_inflight(f->ph)) != n && mono_ms() < deadline)
        nh_test_sleep_ms(2);
    if (got != n) fail_msg("%zu call(s) in flight, want %zu", got, n);
}

static void test_call_open_across_reload_ends_on_the_old_generation(void **st) {
    fixture *f = start_with(st, "good_echo_v1");
    expect_version(f, "1.0.0");

    /* A slow call, held open by the gate, on generation 1. */
    static pending slow, fast; /* static: a failed test must not leave callbacks a dead frame */
    call_async(f, &slow, "plugtest.Echo.Slow", f->gate, 7);
    wait_inflight(f, 1);

    install_plugin(f->echo_so, "good_echo_v2");
    nh_reload_result res = reload_ok(f);
    assert_int_equal(res.changed, 1);

    /* New calls go to v2 while the slow call is still open on v1 (the gate is closed). */
    expect_version(f, "2.0.0");
    assert_string_equal(call_ok(f, "plugtest.Echo.Echo", "during", 0).text, "during");
    status s = get_status(f, "echo");
    assert_int_equal(s.generation, 2);
    assert_int_equal(s.old_generations, 1);
    assert_int_equal(s.old_calls, 1);
    assert_false(pending_is_done(&slow));
    assert_int_equal(nh_plugin_host_inflight(f->ph), 1);
    assert_int_equal(dir_entries(f->state), 2); /* both copies are loaded */

    /* Another reload meanwhile: v2 (nothing open) goes, v1 stays for its call. */
    install_plugin(f->echo_so, "good_echo_v3");
    res = reload_ok(f);
    assert_int_equal(res.changed, 1);
    expect_version(f, "3.0.0");
    wait_old(f, "echo", 1, 1);
    wait_state_entries(f, 2);
    assert_false(pending_is_done(&slow));

    /* A new slow call goes to v3 and ends there. */
    call_async(f, &fast, "plugtest.Echo.Slow", NULL, 1);
    answer a = pending_wait(&fast);
    assert_int_equal(a.code, NH_OK);
    assert_string_equal(a.text, "3.0.0");
    pending_destroy(&fast);

    /* Open the gate: the old call ends with the old code's answer, then v1 is unloaded. */
    write_file(f->gate, "", 0);
    a = pending_wait(&slow);
    if (a.code != NH_OK) fail_msg("slow call: %s", a.err);
    assert_string_equal(a.text, "1.0.0");
    assert_int_equal(a.n, 7);
    pending_destroy(&slow);
    wait_old(f, "echo", 0, 0);
    wait_inflight(f, 0);
    wait_state_entries(f, 1);
    expect_version(f, "3.0.0");
    assert_int_equal(get_status(f, "echo").generation, 3);
}

/* A timed slow call (no gate) across a reload: the same, without the test holding it. */
static void test_timed_slow_call_across_reload(void **st) {
    fixture *f = start_with(st, "good_echo_v1");
    static pending slow;
    call_async(f, &slow, "plugtest.Echo.Slow", NULL, 800);
    wait_inflight(f, 1);
    install_plugin(f->echo_so, "good_echo_v2");
    reload_ok(f);
    expect_version(f, "2.0.0");
    answer a = pending_wait(&slow);
    if (a.code != NH_OK) fail_msg("slow call: %s", a.err);
    assert_string_equal(a.text, "1.0.0");
    assert_int_equal(a.n, 800);
    pending_destroy(&slow);
    wait_old(f, "echo", 0, 0);
    wait_state_entries(f, 1);
}

/* ---- 5. no leaks across many reloads ------------------------------------------------------ */

#define MANY_RELOADS 100

static void test_many_reloads_leak_no_fds_or_mappings(void **st) {
    fixture *f = start_with(st, "good_echo_v1");
    call_ok(f, "plugtest.Echo.Echo", "x", 0);
    install_plugin(f->echo_so, "good_echo_v2");
    reload_ok(f);
    expect_version(f, "2.0.0");
    wait_old(f, "echo", 0, 0);
    wait_state_entries(f, 1);
    size_t fds0 = count_fds(), maps0 = count_maps(f->state);

    for (int i = 1; i <= MANY_RELOADS; i++) {
        const char *v = i % 2 ? "3.0.0" : "2.0.0";
        install_plugin(f->echo_so, i % 2 ? "good_echo_v3" : "good_echo_v2");
        nh_reload_result res = reload_ok(f);
        assert_int_equal(res.changed, 1);
        if (i % 10 == 0) expect_version(f, v);
    }
    expect_version(f, "2.0.0");
    assert_int_equal(call_ok(f, "plugtest.Echo.Count", NULL, 0).n, 1);
    assert_int_equal(get_status(f, "echo").generation, 2 + MANY_RELOADS);
    wait_old(f, "echo", 0, 0);
    wait_state_entries(f, 1);

    size_t fds1 = count_fds(), maps1 = count_maps(f->state);
    print_message("      after the first reload: %zu fds, %zu mappings of the state dir; after %d "
                  "more: %zu fds, %zu mappings\n",
                  fds0, maps0, MANY_RELOADS, fds1, maps1);
    /* A leaked descriptor per reload would show as +100; allow the runtime a few of its own. */
    if (fds1 > fds0 + 4) fail_msg("fds grew from %zu to %zu", fds0, fds1);
#ifdef NH_SANITIZE_BUILD
    /* Sanitizer builds never dlclose (see nh_plugin_unload()): the mappings stay. */
    print_message("      (sanitizer build: mappings not checked)\n");
#else
    assert_true(maps0 > 0);
    if (maps1 > maps0) fail_msg("mappings of the state dir grew from %zu to %zu", maps0, maps1);
#endif
}

/* ---- 6. a storm of reload requests -------------------------------------------------------- */

#define STORM 100

typedef struct storm {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int answers[STORM];
    int ok[STORM];
    uint64_t number[STORM];
    int total;
} storm;

typedef struct storm_req {
    storm *s;
    int i;
} storm_req;

static void storm_done(const nh_reload_result *r, void *arg) {
    storm_req *q = arg;
    pthread_mutex_lock(&q->s->mu);
    q->s->answers[q->i]++;
    if (r->ok) q->s->ok[q->i]++;
    q->s->number[q->i] = r->number;
    q->s->total++;
    pthread_cond_broadcast(&q->s->cv);
    pthread_mutex_unlock(&q->s->mu);
}

/* Like the program's do_reload: re-read the file, reload the plugins. */
static void do_reload(void *arg, nh_reload_result *out) {
    fixture *f = arg;
    nh_host_config *nw = NULL;
    out->ok = false;
    if (nh_host_config_load(f->yaml, 0, &nw, &out->err) != 0) return;
    nh_plugin_host_reload(f->ph, nw, out);
}

static void test_reload_storm_is_coalesced(void **st) {
    fixture *f = start_with(st, "good_echo_v1");
    call_ok(f, "plugtest.Echo.Echo", "x", 0);
    nh_reloader *rl = NULL;
    nh_error err = {0};
    if (nh_reloader_new(do_reload, f, &rl, &err) != 0) fail_msg("%s", err.message);

    static storm s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    storm_req reqs[STORM];
    install_plugin(f->echo_so, "good_echo_v2");
    for (int i = 0; i < STORM; i++) {
        reqs[i] = (storm_req){&s, i};
        assert_int_equal(nh_reloader_request(rl, "test", storm_done, &reqs[i]), 0);
    }
    int64_t deadline = mono_ms() + WAIT_MS;
    pthread_mutex_lock(&s.mu);
    while (s.total < STORM && mono_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&s.cv, &s.mu, &ts);
    }
    int total = s.total;
    pthread_mutex_unlock(&s.mu);
    nh_reload_stats stats;
    nh_reloader_stats(rl, &stats);
    nh_reloader_free(rl); /* joins the thread: nothing writes s any more */

    assert_int_equal(total, STORM);
    uint64_t last = 0;
    for (int i = 0; i < STORM; i++) {
        assert_int_equal(s.answers[i], 1);
        assert_int_equal(s.ok[i], 1);
        assert_true(s.number[i] >= last); /* answered in order, by reloads that started later */
        last = s.number[i];
    }
    print_message("      %d requests, %llu reload(s) run, %llu failed\n", STORM,
                  (unsigned long long)stats.reloads, (unsigned long long)stats.failures);
    assert_int_equal(stats.requests, STORM);
    assert_true(stats.reloads >= 1);
    assert_true(stats.reloads < STORM);
    assert_int_equal(stats.failures, 0);
    assert_true(stats.last.ok);
    assert_int_equal(last, stats.reloads);

    /* One switch happened (the file changed once); the node serves v2 with the state. */
    expect_version(f, "2.0.0");
    status st2 = get_status(f, "echo");
    assert_int_equal(st2.generation, 2);
    assert_int_equal(st2.plugins, 1);
    assert_int_equal(call_ok(f, "plugtest.Echo.Count", NULL, 0).n, 1);
    wait_old(f, "echo", 0, 0);
    wait_state_entries(f, 1);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
}

/* ---- 7. plugins added and removed --------------------------------------------------------- */

static void test_plugin_added_and_removed(void **st) {
    fixture *f = start_with(st, "good_echo_v1");
    answer a = call(f, "plugtest.Other.Ping", "ping", 0);
    assert_int_equal(a.code, NH_UNIMPLEMENTED);

    install_plugin(f->other_so, "good_other_solo");
    write_yaml(f, NULL, "other.so");
    nh_reload_result res = reload_ok(f);
    assert_int_equal(res.changed, 1);
    if (!strstr(res.summary, "other 2.0.0 added (gen 1)")) fail_msg("summary: %s", res.summary);
    a = call_ok(f, "plugtest.Other.Ping", "ping", 5);
    assert_string_equal(a.text, "ping");
    assert_int_equal(a.n, 5);
    status s = get_status(f, "other");
    assert_true(s.found);
    assert_int_equal(s.generation, 1);
    assert_int_equal(s.plugins, 2);
    assert_int_equal(get_status(f, "echo").generation, 1); /* untouched */
    expect_version(f, "1.0.0");
    wait_state_entries(f, 2);

    /* Removed again: its methods answer UNIMPLEMENTED, echo keeps serving. */
    write_yaml(f, NULL, NULL);
    res = reload_ok(f);
    assert_int_equal(res.changed, 1);
    if (!strstr(res.summary, "other removed")) fail_msg("summary: %s", res.summary);
    a = call(f, "plugtest.Other.Ping", "ping", 0);
    assert_int_equal(a.code, NH_UNIMPLEMENTED);
    assert_non_null(strstr(a.err, "plugtest.Other.Ping"));
    s = get_status(f, "other");
    assert_false(s.found);
    assert_int_equal(s.plugins, 1);
    expect_version(f, "1.0.0");
    assert_int_equal(get_status(f, "echo").generation, 1);
    wait_state_entries(f, 1);

    /* And back: a new slot, generation 1 again. */
    write_yaml(f, NULL, "other.so");
    res = reload_ok(f);
    assert_int_equal(res.changed, 1);
    assert_string_equal(call_ok(f, "plugtest.Other.Ping", "again", 0).text, "again");
    assert_int_equal(get_status(f, "other").generation, 1);
    wait_state_entries(f, 2);
}

/* ---- 8. a conflict introduced by a reload ------------------------------------------------- */

static void test_method_conflict_from_reload_is_rejected(void **st) {
    fixture *f = start_with(st, "good_echo_v1");
    call_ok(f, "plugtest.Echo.Echo", "x", 0);
    install_plugin(f->other_so, "good_other"); /* declares plugtest.Echo.Echo too */
    write_yaml(f, NULL, "other.so");
    reload_fails(f, "method 'plugtest.Echo.Echo' is declared by plugin 'echo'", "plugin 'other'",
                 NULL);
    nh_reload_result res;
    assert_int_equal(reload(f, &res), -1);
    assert_int_equal(res.err.code, NH_ALREADY_EXISTS);
    /* At the new plugin's entry in the file, naming the other one's line. */
    char at[400];
    strf(at, sizeof at, "%s:6:5: plugins[1]: method 'plugtest.Echo.Echo'", f->yaml);
    if (strncmp(res.err.message, at, strlen(at)) != 0)
        fail_msg("\"%s\" does not start with \"%s\"", res.err.message, at);
    assert_non_null(strstr(res.err.message, "; plugin 'echo' is plugins[0], line 4"));
    expect_still_v1(f);
    assert_int_equal(call(f, "plugtest.Other.Ping", "p", 0).code, NH_UNIMPLEMENTED);
    assert_false(get_status(f, "other").found);
    wait_state_entries(f, 1);

    /* The same plugin while echo is changed in the same reload: still all or nothing. */
    install_plugin(f->echo_so, "good_echo_v2");
    reload_fails(f, "declared by plugin", NULL);
    expect_still_v1(f);
    wait_state_entries(f, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reload_to_v2_hands_over_state_and_retires_v1, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unchanged_reload_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_reloads_keep_the_old_generation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_call_open_across_reload_ends_on_the_old_generation,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_timed_slow_call_across_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_reloads_leak_no_fds_or_mappings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_storm_is_coalesced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_added_and_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_conflict_from_reload_is_rejected, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
