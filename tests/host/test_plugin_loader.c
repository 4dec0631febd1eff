/* Tests of the plugin loader (host/plugin/loader.c) with real shared objects from tests/plugins:
 * a valid plugin, one bad plugin per descriptor error, a missing file, a non-ELF file, reloading
 * a replaced file while the old one is loaded, cross-plugin conflicts, descriptor checks field by
 * field, the state directory, and no fd or mapping leak over 100 load/unload cycles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plugin/loader.h"

#ifndef NH_TEST_PLUGIN_DIR
#error "NH_TEST_PLUGIN_DIR must be defined (tests/plugins/CMakeLists.txt)"
#endif

/* ---- helpers ----------------------------------------------------------------------------- */

/* snprintf for test strings (paths and expected messages; truncation is the caller's concern). */
static void strf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void strf(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

typedef struct fixture {
    char dir[64];    /* a private temporary directory */
    char state[128]; /* <dir>/state: the loader's state directory */
} fixture;

static int fixture_setup(void **st) {
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL) return -1;
    strcpy(f->dir, "/tmp/nh-loader-test-XXXXXX");
    if (mkdtemp(f->dir) == NULL) return -1;
    strf(f->state, sizeof f->state, "%s/state", f->dir);
    nh_error err;
    if (nh_plugin_state_dir_prepare(f->state, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    *st = f;
    return 0;
}

static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char sub[512];
            strf(sub, sizeof sub, "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int fixture_teardown(void **st) {
    fixture *f = *st;
    remove_tree(f->dir);
    free(f);
    return 0;
}

static void plugin_path(char *buf, size_t size, const char *plugin) {
    strf(buf, size, "%s/%s.so", NH_TEST_PLUGIN_DIR, plugin);
}

/* Number of entries in a directory (without . and ..). */
static int dir_entries(const char *path) {
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

static int open_fds(void) {
    return dir_entries("/proc/self/fd");
}

/* Lines of /proc/self/maps that mention text. */
static int maps_lines(const char *text) {
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (strstr(line, text) != NULL) n++;
    fclose(f);
    return n;
}

static void copy_file(const char *from, const char *to) {
    int in = open(from, O_RDONLY);
    assert_true(in >= 0);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(out >= 0);
    char buf[65536];
    ssize_t r;
    while ((r = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)r), r);
    assert_int_equal(r, 0);
    close(in);
    assert_int_equal(close(out), 0);
}

/* Installs from over to as a deployment should: write a new file, then rename over. */
static void replace_file(const char *from, const char *to) {
    char tmp[512];
    strf(tmp, sizeof tmp, "%s.new", to);
    copy_file(from, tmp);
    assert_int_equal(rename(tmp, to), 0);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

typedef void (*counts_fn)(int *inits, int *finis);

static counts_fn echo_counts(const nh_loaded_plugin *p) {
    counts_fn fn = (counts_fn)dlsym(p->handle, "good_echo_counts");
    assert_non_null(fn);
    return fn;
}

/* Runs the old/new generation's init and fini once (they only count and allocate). */
static void run_init_fini(const nh_loaded_plugin *p) {
    nh_plugin_env env = {.size = sizeof env, .name = p->name, .generation = 1};
    void *state = NULL;
    nh_error err;
    assert_int_equal(p->desc->init(&env, &state, &err), 0);
    assert_non_null(state);
    p->desc->fini(state);
}

/* ---- the valid plugin -------------------------------------------------------------------- */

static void test_good_echo(void **st) {
    fixture *f = *st;
    char src[512];
    plugin_path(src, sizeof src, "good_echo");
    nh_loaded_plugin p;
    nh_error err = {0};
    int rc = nh_plugin_load("echo", src, f->state, &p, &err);
    if (rc != 0) fail_msg("%s", err.message);

    assert_string_equal(p.name, "echo");
    assert_string_equal(p.source_path, src);
    assert_non_null(p.handle);
    const nh_plugin_descriptor *d = p.desc;
    assert_non_null(d);
    assert_string_equal(d->name, "good_echo"); /* the plugin's own name, != configured name */
    assert_string_equal(d->version, "1.0.0");
    assert_int_equal(d->method_count, 2);
    assert_string_equal(d->methods[0].name, "plugtest.Echo.Echo");
    assert_int_equal(d->methods[0].call_type, NH_CALL_RPC);
    assert_string_equal(d->methods[0].request->name, "plugtest.EchoMsg");
    assert_string_equal(d->methods[1].name, "plugtest.Echo.Fail");
    assert_non_null(d->init);
    assert_non_null(d->fini);

    /* The copy: in the state dir, named <name>-<hash16>-<pid>-<n>.so, read-only, mapped. */
    assert_non_null(p.loaded_path);
    assert_string_not_equal(p.loaded_path, src);
    char prefix[256];
    strf(prefix, sizeof prefix, "%s/echo-%.16s-%ld-", f->state, p.sha256, (long)getpid());
    assert_int_equal(strncmp(p.loaded_path, prefix, strlen(prefix)), 0);
    struct stat st_copy, st_src;
    assert_int_equal(stat(p.loaded_path, &st_copy), 0);
    assert_int_equal(stat(src, &st_src), 0);
    assert_int_equal(st_copy.st_mode & 0777, 0500);
    assert_int_equal(st_copy.st_size, st_src.st_size);
    assert_int_equal(p.file_size, (uint64_t)st_src.st_size);
    assert_true(st_copy.st_ino != st_src.st_ino);
    assert_true(maps_lines(p.loaded_path) > 0);
    assert_int_equal(maps_lines(src), 0);

    /* The hash is the file's SHA-256, as sha256sum prints it. */
    char cmd[600];
    strf(cmd, sizeof cmd, "sha256sum '%s'", src);
    FILE *ps = popen(cmd, "r");
    assert_non_null(ps);
    char want[65] = {0};
    assert_int_equal(fread(want, 1, 64, ps), 64);
    pclose(ps);
    assert_string_equal(p.sha256, want);

    /* The plugin's code runs. */
    int inits, finis;
    echo_counts (&p)(&inits, &finis);
    assert_int_equal(inits, 0);
    run_init_fini(&p);
    echo_counts (&p)(&inits, &finis);
    assert_int_equal(inits, 1);
    assert_int_equal(finis, 1);

    char copy[512];
    strf(copy, sizeof copy, "%s", p.loaded_path);
    nh_plugin_unload(&p);
    assert_false(exists(copy));
    assert_null(p.handle);
    assert_null(p.loaded_path);
    assert_int_equal(dir_entries(f->state), 0);
#ifndef NH_SANITIZE_BUILD
    assert_int_equal(maps_lines(copy), 0);
#endif
    nh_plugin_unload(&p); /* a zeroed value is accepted */
    nh_plugin_unload(NULL);
}

/* bad_init's descriptor is valid: the loader does not call init. */
static void test_bad_init_passes_loader(void **st) {
    fixture *f = *st;
    char src[512];
    plugin_path(src, sizeof src, "bad_init");
    nh_loaded_plugin p;
    nh_error err = {0};
    int rc = nh_plugin_load("bad_init", src, f->state, &p, &err);
    if (rc != 0) fail_msg("%s", err.message);
    void *state = NULL;
    nh_plugin_env env = {.size = sizeof env, .name = "bad_init", .generation = 1};
    assert_int_equal(p.desc->init(&env, &state, &err), -1);
    assert_string_equal(err.message, "cannot open database /nonexistent");
    nh_plugin_unload(&p);
}

/* ---- bad plugins ------------------------------------------------------------------------- */

static void expect_load_error(fixture *f, const char *plugin, nh_code code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Loads plugin (configured under its own name) and expects the message
 * "plugin '<plugin>' (<path>): <fmt...>", nothing left in the state directory. */
static void expect_load_error(fixture *f, const char *plugin, nh_code code, const char *fmt, ...) {
    char src[512], what[NH_ERROR_MESSAGE_MAX], want[NH_ERROR_MESSAGE_MAX];
    plugin_path(src, sizeof src, plugin);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    strf(want, sizeof want, "plugin '%s' (%s): %s", plugin, src, what);

    nh_loaded_plugin p;
    memset(&p, 0xab, sizeof p);
    nh_error err = {0};
    assert_int_equal(nh_plugin_load(plugin, src, f->state, &p, &err), -1);
    assert_string_equal(err.message, want);
    assert_int_equal(err.code, code);
    assert_int_equal(err.kind, NH_ERR_LOCAL);
    assert_null(p.handle);
    assert_null(p.desc);
    assert_null(p.loaded_path);
    assert_int_equal(dir_entries(f->state), 0);
}

static void test_bad_plugins(void **st) {
    fixture *f = *st;
    expect_load_error(f, "bad_no_entry", NH_INVALID_ARGUMENT,
                      "missing entry symbol 'nh_plugin_entry' (is NH_PLUGIN_DEFINE used?)");
    expect_load_error(f, "bad_entry_null", NH_INVALID_ARGUMENT,
                      "entry function 'nh_plugin_entry' returned NULL (no descriptor)");
    expect_load_error(f, "bad_magic", NH_INVALID_ARGUMENT,
                      "descriptor magic is 0x12345678, expected 0x4c50484e (not a nodehost "
                      "plugin descriptor)");
    expect_load_error(f, "bad_abi", NH_INVALID_ARGUMENT,
                      "plugin ABI version is 99, this host's is 1 (rebuild the plugin with this "
                      "host's SDK)");
    expect_load_error(f, "bad_truncated", NH_INVALID_ARGUMENT,
                      "truncated descriptor: size 16, expected at least %zu",
                      (size_t)NH_PLUGIN_DESCRIPTOR_MIN_SIZE);
    expect_load_error(f, "bad_dup_method", NH_INVALID_ARGUMENT,
                      "method 'plugtest.Echo.Echo' is declared twice (methods 0 and 2)");
    expect_load_error(f, "bad_null_handler", NH_INVALID_ARGUMENT,
                      "method 1 'plugtest.Echo.Nothing': handler is NULL");
    expect_load_error(f, "bad_method_name", NH_INVALID_ARGUMENT,
                      "method 0: name 'NoDots' is not of the form pkg.Service.Method (at least "
                      "two dots, no empty part, printable ASCII without spaces)");
    expect_load_error(f, "bad_request_desc", NH_INVALID_ARGUMENT,
                      "method 0 'plugtest.Echo.Echo': request descriptor is NULL");
    expect_load_error(f, "bad_state_hooks", NH_INVALID_ARGUMENT,
                      "descriptor has export_state but no import_state (state hand-over needs "
                      "both or neither)");
}

static void test_missing_file(void **st) {
    fixture *f = *st;
    nh_loaded_plugin p;
    nh_error err = {0};
    assert_int_equal(nh_plugin_load("ghost", "/nonexistent/ghost.so", f->state, &p, &err), -1);
    assert_string_equal(err.message,
                        "plugin 'ghost': cannot open /nonexistent/ghost.so: No such file or "
                        "directory");
    assert_int_equal(err.code, NH_NOT_FOUND);

    /* A directory is not a plugin file either. */
    assert_int_equal(nh_plugin_load("dir", f->dir, f->state, &p, &err), -1);
    char want[256];
    strf(want, sizeof want, "plugin 'dir': %s is not a regular file", f->dir);
    assert_string_equal(err.message, want);

    /* Unreadable (unless we are root, who reads anything). */
    if (geteuid() != 0) {
        char path[256];
        strf(path, sizeof path, "%s/unreadable.so", f->dir);
        int fd = open(path, O_WRONLY | O_CREAT, 0200);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(nh_plugin_load("unreadable", path, f->state, &p, &err), -1);
        strf(want, sizeof want, "plugin 'unreadable': cannot open %s: Permission denied", path);
        assert_string_equal(err.message, want);
        assert_int_equal(err.code, NH_PERMISSION_DENIED);
    }

    /* Bad arguments. */
    assert_int_equal(nh_plugin_load("", "/x.so", f->state, &p, &err), -1);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_int_equal(dir_entries(f->state), 0);
}

static void test_garbage_file(void **st) {
    fixture *f = *st;
    char path[256], want[512];
    strf(path, sizeof path, "%s/garbage.so", f->dir);
    FILE *g = fopen(path, "w");
    assert_non_null(g);
    for (int i = 0; i < 20; i++)
        fputs("this is not a shared object, just text\n", g);
    fclose(g);

    nh_loaded_plugin p;
    nh_error err = {0};
    assert_int_equal(nh_plugin_load("garbage", path, f->state, &p, &err), -1);
    strf(want, sizeof want, "plugin 'garbage': cannot load %s: invalid ELF header", path);
    assert_string_equal(err.message, want);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_int_equal(dir_entries(f->state), 0);

    /* Shorter than an ELF header; empty. */
    g = fopen(path, "w");
    fputs("#!/bin/sh\n", g);
    fclose(g);
    assert_int_equal(nh_plugin_load("garbage", path, f->state, &p, &err), -1);
    strf(want, sizeof want, "plugin 'garbage': cannot load %s: file too short", path);
    assert_string_equal(err.message, want);
    g = fopen(path, "w");
    fclose(g);
    assert_int_equal(nh_plugin_load("garbage", path, f->state, &p, &err), -1);
    assert_string_equal(err.message, want);
    assert_int_equal(dir_entries(f->state), 0);
}

/* ---- reload: the same path twice, and a replaced file ------------------------------------- */

static void test_same_source_twice(void **st) {
    fixture *f = *st;
    char src[512];
    plugin_path(src, sizeof src, "good_echo");
    nh_loaded_plugin a, b;
    nh_error err = {0};
    assert_int_equal(nh_plugin_load("echo", src, f->state, &a, &err), 0);
    assert_int_equal(nh_plugin_load("echo", src, f->state, &b, &err), 0);
    assert_ptr_not_equal(a.handle, b.handle);
    assert_ptr_not_equal(a.desc, b.desc);
    assert_string_not_equal(a.loaded_path, b.loaded_path);
    assert_string_equal(a.sha256, b.sha256);
    assert_int_equal(dir_entries(f->state), 2);

    /* Two objects, two sets of globals. */
    run_init_fini(&a);
    int ia, fa, ib, fb;
    echo_counts (&a)(&ia, &fa);
    echo_counts (&b)(&ib, &fb);
    assert_int_equal(ia, 1);
    assert_int_equal(ib, 0);

    nh_plugin_unload(&a);
    /* b still works after a is gone. */
    run_init_fini(&b);
    echo_counts (&b)(&ib, &fb);
    assert_int_equal(ib, 1);
    nh_plugin_unload(&b);
    assert_int_equal(dir_entries(f->state), 0);
}

static void test_replaced_source(void **st) {
    fixture *f = *st;
    char echo_so[512], other_so[512], src[256];
    plugin_path(echo_so, sizeof echo_so, "good_echo");
    plugin_path(other_so, sizeof other_so, "good_other");
    strf(src, sizeof src, "%s/mine.so", f->dir);
    copy_file(echo_so, src);

    nh_loaded_plugin old, neu;
    nh_error err = {0};
    assert_int_equal(nh_plugin_load("mine", src, f->state, &old, &err), 0);
    assert_string_equal(old.desc->name, "good_echo");

    /* A new build is deployed at the same path (rename over it), the old one still loaded. */
    replace_file(other_so, src);
    assert_int_equal(nh_plugin_load("mine", src, f->state, &neu, &err), 0);
    assert_string_equal(neu.desc->name, "good_other"); /* the new code, not the cached object */
    assert_string_equal(neu.desc->version, "2.0.0");
    assert_ptr_not_equal(old.handle, neu.handle);
    assert_string_not_equal(old.sha256, neu.sha256);
    assert_null(dlsym(neu.handle, "good_echo_counts"));

    /* The old generation is intact and runs. */
    assert_string_equal(old.desc->name, "good_echo");
    assert_string_equal(old.desc->methods[1].name, "plugtest.Echo.Fail");
    run_init_fini(&old);
    int inits, finis;
    echo_counts (&old)(&inits, &finis);
    assert_int_equal(inits, 1);
    assert_int_equal(finis, 1);

    /* Swap: unload the old one; the new one keeps working. */
    nh_plugin_unload(&old);
    assert_string_equal(neu.desc->methods[0].name, "plugtest.Other.Ping");
    nh_plugin_unload(&neu);
    assert_int_equal(dir_entries(f->state), 0);

    /* Rewriting the source in place while loaded does not touch the loaded copy. */
    assert_int_equal(nh_plugin_load("mine", src, f->state, &neu, &err), 0);
    copy_file(echo_so, src); /* O_TRUNC rewrite of the configured file */
    assert_string_equal(neu.desc->name, "good_other");
    nh_plugin_unload(&neu);
}

/* ---- across plugins ---------------------------------------------------------------------- */

/* The conflicts nh_plugin_each_conflict() reported, as "method first second". */
typedef struct seen_clashes {
    char list[8][96];
    size_t count;
    bool stop; /* stop after the first */
} seen_clashes;

static int note_clash(void *arg, const char *method, size_t first, size_t second) {
    seen_clashes *s = arg;
    if (s->count < 8)
        strf(s->list[s->count], sizeof s->list[0], "%s %zu %zu", method, first, second);
    s->count++;
    return s->stop ? 1 : 0;
}

static void test_conflicts(void **st) {
    fixture *f = *st;
    char echo_so[512], other_so[512], init_so[512], want[NH_ERROR_MESSAGE_MAX];
    plugin_path(echo_so, sizeof echo_so, "good_echo");
    plugin_path(other_so, sizeof other_so, "good_other");
    plugin_path(init_so, sizeof init_so, "bad_init");
    nh_loaded_plugin a, b, c;
    nh_error err = {0};
    assert_int_equal(nh_plugin_load("echo", echo_so, f->state, &a, &err), 0);
    assert_int_equal(nh_plugin_load("other", other_so, f->state, &b, &err), 0);
    assert_int_equal(nh_plugin_load("db", init_so, f->state, &c, &err), 0);

    const nh_loaded_plugin *ok[] = {&a, &c};
    assert_int_equal(nh_plugin_check_conflicts(ok, 2, &err), 0);
    const nh_loaded_plugin *one[] = {&b};
    assert_int_equal(nh_plugin_check_conflicts(one, 1, &err), 0);
    assert_int_equal(nh_plugin_check_conflicts(NULL, 0, &err), 0);

    const nh_loaded_plugin *clash[] = {&a, &c, &b};
    assert_int_equal(nh_plugin_check_conflicts(clash, 3, &err), -1);
    strf(want, sizeof want,
         "method 'plugtest.Echo.Echo' is declared by plugin 'echo' (%s) and by plugin "
         "'other' (%s)",
         echo_so, other_so);
    assert_string_equal(err.message, want);
    assert_int_equal(err.code, NH_ALREADY_EXISTS);

    /* Every conflict, each with the first plugin declaring the method: a second copy of other
     * clashes with echo (Echo.Echo) and with other (Other.Ping, Echo.Echo after echo). */
    nh_loaded_plugin b2;
    assert_int_equal(nh_plugin_load("other2", other_so, f->state, &b2, &err), 0);
    const nh_loaded_plugin *all[] = {&a, &b, &c, &b2};
    seen_clashes seen = {0};
    assert_int_equal(nh_plugin_each_conflict(all, 4, note_clash, &seen, &err), 3);
    assert_int_equal(seen.count, 3);
    /* In the order of the methods' names. */
    assert_string_equal(seen.list[0], "plugtest.Echo.Echo 0 1");
    assert_string_equal(seen.list[1], "plugtest.Echo.Echo 0 3");
    assert_string_equal(seen.list[2], "plugtest.Other.Ping 1 3");
    /* Stopping at the first. */
    seen.count = 0;
    seen.stop = true;
    assert_int_equal(nh_plugin_each_conflict(all, 4, note_clash, &seen, &err), 1);
    assert_int_equal(nh_plugin_each_conflict(ok, 2, note_clash, &seen, &err), 0);
    nh_plugin_unload(&b2);

    nh_plugin_unload(&a);
    nh_plugin_unload(&b);
    nh_plugin_unload(&c);
}

/* ---- descriptor checks, field by field --------------------------------------------------- */

static const ProtobufCMessageDescriptor msg_desc = {
    .magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    .name = "t.Msg",
};
static const ProtobufCMessageDescriptor not_msg_desc = {.magic = 0x11223344};

static void handler(nh_server_ctx *ctx, const ProtobufCMessage *request, void *state) {
    (void)ctx;
    (void)request;
    (void)state;
}

static int export_fn(void *state, nh_buf *out, nh_error *err) {
    (void)state;
    (void)out;
    (void)err;
    return 0;
}

static int import_fn(void *state, const uint8_t *data, size_t len, nh_error *err) {
    (void)state;
    (void)data;
    (void)len;
    (void)err;
    return 0;
}

typedef struct desc_case {
    nh_plugin_descriptor d;
    nh_plugin_method m[2];
} desc_case;

static void valid_case(desc_case *c) {
    memset(c, 0, sizeof *c);
    c->m[0] = (nh_plugin_method){"t.Svc.A", NH_CALL_RPC, &msg_desc, &msg_desc, handler};
    c->m[1] = (nh_plugin_method){"t.Svc.B", NH_CALL_MULTICAST, &msg_desc, NULL, handler};
    c->d = (nh_plugin_descriptor){.magic = NH_PLUGIN_MAGIC,
                                  .size = sizeof(nh_plugin_descriptor),
                                  .abi_version = NH_PLUGIN_ABI_VERSION,
                                  .name = "t",
                                  .version = "1",
                                  .methods = c->m,
                                  .method_count = 2};
}

/* Checks c's descriptor: want NULL means valid, else the text after "plugin 'p' (/p.so): ". */
static void check_case(desc_case *c, const char *want) {
    nh_error err = {0};
    int rc = nh_plugin_check_descriptor("p", "/p.so", &c->d, &err);
    if (want == NULL) {
        if (rc != 0) fail_msg("unexpected: %s", err.message);
        return;
    }
    assert_int_equal(rc, -1);
    char full[NH_ERROR_MESSAGE_MAX];
    strf(full, sizeof full, "plugin 'p' (/p.so): %s", want);
    assert_string_equal(err.message, full);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
}

static void test_check_descriptor(void **st) {
    (void)st;
    desc_case c;
    nh_error err;
    assert_int_equal(nh_plugin_check_descriptor("p", "/p.so", NULL, &err), -1);
    assert_string_equal(err.message,
                        "plugin 'p' (/p.so): entry function 'nh_plugin_entry' returned NULL (no "
                        "descriptor)");

    valid_case(&c);
    check_case(&c, NULL);
    valid_case(&c);
    c.d.size += 64; /* a later minor version's larger descriptor */
    check_case(&c, NULL);
    valid_case(&c);
    c.d.export_state = export_fn;
    c.d.import_state = import_fn;
    check_case(&c, NULL);
    valid_case(&c);
    c.m[1].response = &msg_desc; /* one-way with a (valid) response type */
    check_case(&c, NULL);
    valid_case(&c);
    char long_name[80];
    for (int i = 0; i < 64; i++)
        long_name[i] = "abcdefghijklmnopqrstuvwxyz0123456789_-"[i % 38];
    long_name[63] = '\0';
    c.d.name = long_name; /* 63 characters */
    check_case(&c, NULL);
    valid_case(&c);
    c.m[0].name = "a.b.c.d.Svc.M_1";
    check_case(&c, NULL);

    valid_case(&c);
    c.d.size = 16;
    char trunc[128];
    strf(trunc, sizeof trunc, "truncated descriptor: size 16, expected at least %zu",
         (size_t)NH_PLUGIN_DESCRIPTOR_MIN_SIZE);
    check_case(&c, trunc);
    valid_case(&c);
    c.d.abi_version = 2;
    check_case(&c, "plugin ABI version is 2, this host's is 1 (rebuild the plugin with this "
                   "host's SDK)");
    valid_case(&c);
    c.d.flags = 4;
    check_case(&c, "descriptor flags are 0x4, expected 0 (reserved)");
    valid_case(&c);
    c.d.name = NULL;
    check_case(&c, "descriptor name is NULL");
    valid_case(&c);
    c.d.name = "";
    check_case(&c, "descriptor name '' is invalid: expected 1 to 63 characters of [a-z0-9_-]");
    valid_case(&c);
    c.d.name = "Echo";
    check_case(&c, "descriptor name 'Echo' is invalid: expected 1 to 63 characters of [a-z0-9_-]");
    valid_case(&c);
    c.d.name = "bad\nname";
    check_case(&c,
               "descriptor name 'bad?name' is invalid: expected 1 to 63 characters of [a-z0-9_-]");
    valid_case(&c);
    long_name[63] = 'x';
    long_name[64] = '\0';
    c.d.name = long_name; /* 64 characters */
    char want_long[256];
    strf(want_long, sizeof want_long,
         "descriptor name '%s' is invalid: expected 1 to 63 characters of [a-z0-9_-]", long_name);
    check_case(&c, want_long);
    long_name[64] = 'y';
    long_name[65] = '\0';
    c.d.name = long_name; /* 65 characters: shown cut after 64 */
    strf(want_long, sizeof want_long,
         "descriptor name '%.64s...' is invalid: expected 1 to 63 characters of [a-z0-9_-]",
         long_name);
    check_case(&c, want_long);
    valid_case(&c);
    c.d.version = NULL;
    check_case(&c, "descriptor version is NULL");
    valid_case(&c);
    c.d.version = "";
    check_case(&c, "descriptor version is empty");
    valid_case(&c);
    c.d.methods = NULL;
    check_case(&c, "descriptor methods is NULL");
    valid_case(&c);
    c.d.method_count = 0;
    check_case(&c, "descriptor method_count is 0, expected 1 to 4096");
    valid_case(&c);
    c.d.method_count = 4097;
    check_case(&c, "descriptor method_count is 4097, expected 1 to 4096");

    static const char *const bad_names[] = {"Svc.M",   ".a.b", "a.b.", "a..b",     "a.b c.d",
                                            "a.b.\tc", "",     "...",  "a.b.c\x7f"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        valid_case(&c);
        c.m[1].name = bad_names[i];
        char want[256], shown[64];
        size_t k = 0;
        for (const char *s = bad_names[i]; *s != '\0'; s++)
            shown[k++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
        shown[k] = '\0';
        strf(want, sizeof want,
             "method 1: name '%s' is not of the form pkg.Service.Method (at least two dots, "
             "no empty part, printable ASCII without spaces)",
             shown);
        check_case(&c, want);
    }
    char *huge = malloc(1100);
    assert_non_null(huge);
    memset(huge, 'a', 1099);
    huge[1] = huge[3] = '.';
    huge[1099] = '\0';
    valid_case(&c);
    c.m[0].name = huge;
    strf(want_long, sizeof want_long, "method 0: name '%.64s...' is longer than 1023 characters",
         huge);
    check_case(&c, want_long);
    huge[1023] = '\0';
    check_case(&c, NULL);
    free(huge);
    valid_case(&c);
    c.m[0].name = NULL;
    check_case(&c, "method 0: name is NULL");
    valid_case(&c);
    c.m[0].call_type = (nh_call_type)0;
    check_case(&c, "method 0 't.Svc.A': call_type is 0, expected 1 to 5 (nh_call_type)");
    valid_case(&c);
    c.m[1].call_type = (nh_call_type)6;
    check_case(&c, "method 1 't.Svc.B': call_type is 6, expected 1 to 5 (nh_call_type)");
    valid_case(&c);
    c.m[0].request = NULL;
    check_case(&c, "method 0 't.Svc.A': request descriptor is NULL");
    valid_case(&c);
    c.m[0].request = &not_msg_desc;
    check_case(&c, "method 0 't.Svc.A': request descriptor magic is 0x11223344, expected "
                   "0x28aaeef9 (not a protobuf-c message descriptor)");
    valid_case(&c);
    c.m[0].response = NULL;
    check_case(&c, "method 0 't.Svc.A': response descriptor is NULL (required for RPC methods)");
    valid_case(&c);
    c.m[0].call_type = NH_CALL_QUORUMCALL;
    c.m[0].response = NULL;
    check_case(&c,
               "method 0 't.Svc.A': response descriptor is NULL (required for QUORUMCALL methods)");
    valid_case(&c);
    c.m[0].call_type = NH_CALL_CORRECTABLE;
    c.m[0].response = NULL;
    check_case(&c, "method 0 't.Svc.A': response descriptor is NULL (required for CORRECTABLE "
                   "methods)");
    valid_case(&c);
    c.m[1].response = &not_msg_desc; /* one-way: NULL or valid */
    check_case(&c, "method 1 't.Svc.B': response descriptor magic is 0x11223344, expected "
                   "0x28aaeef9 (not a protobuf-c message descriptor)");
    valid_case(&c);
    c.m[1].handler = NULL;
    check_case(&c, "method 1 't.Svc.B': handler is NULL");
    valid_case(&c);
    c.m[1].name = "t.Svc.A";
    check_case(&c, "method 't.Svc.A' is declared twice (methods 0 and 1)");
    valid_case(&c);
    c.d.import_state = import_fn;
    check_case(&c, "descriptor has import_state but no export_state (state hand-over needs both "
                   "or neither)");

    /* Magic is checked first, before anything else is read. */
    valid_case(&c);
    c.d.magic = 0;
    c.d.size = 0;
    check_case(&c, "descriptor magic is 0x00000000, expected 0x4c50484e (not a nodehost plugin "
                   "descriptor)");
}

/* ---- no leaks over many cycles ----------------------------------------------------------- */

static void test_load_unload_cycles(void **st) {
    fixture *f = *st;
    char src[512];
    plugin_path(src, sizeof src, "good_echo");
    nh_loaded_plugin p;
    nh_error err = {0};
    /* Warm up: the first load may open libraries for good. */
    assert_int_equal(nh_plugin_load("echo", src, f->state, &p, &err), 0);
    nh_plugin_unload(&p);

    int fds = open_fds();
    int maps = maps_lines(f->state);
    for (int i = 0; i < 100; i++) {
        if (nh_plugin_load("echo", src, f->state, &p, &err) != 0) fail_msg("%s", err.message);
        run_init_fini(&p);
        nh_plugin_unload(&p);
        /* Bad ones too. */
        char bad[512];
        plugin_path(bad, sizeof bad, "bad_magic");
        assert_int_equal(nh_plugin_load("bad", bad, f->state, &p, &err), -1);
    }
    assert_int_equal(open_fds(), fds);
    assert_int_equal(dir_entries(f->state), 0);
#ifndef NH_SANITIZE_BUILD
    assert_int_equal(maps_lines(f->state), maps);
    assert_int_equal(maps, 0);
#else
    (void)maps; /* dlclose is skipped under the sanitizers: the mappings stay, deleted files */
#endif
}

/* ---- the state directory ----------------------------------------------------------------- */

static pid_t dead_pid(void) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return pid;
}

static void touch(const char *dir, const char *name) {
    char path[512];
    strf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
}

static void test_state_dir(void **st) {
    fixture *f = *st;
    nh_error err = {0};
    char dir[256], name[128], want[512];

    /* Created with mode 0700. */
    strf(dir, sizeof dir, "%s/new", f->dir);
    assert_int_equal(nh_plugin_state_dir_prepare(dir, &err), 0);
    struct stat s;
    assert_int_equal(lstat(dir, &s), 0);
    assert_true(S_ISDIR(s.st_mode));
    assert_int_equal(s.st_mode & 0777, 0700);

    /* Stale copies of dead processes go; others' files, live processes' copies stay. */
    long dead = (long)dead_pid(), live = (long)getppid();
    const char *keep[] = {"notes.txt", "x.so", "a-0123456789abcdef-x-1.so",
                          "a-0123456789abcdeg-1-1.so", ".tmp-1"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        touch(dir, keep[i]);
    strf(name, sizeof name, "echo-0123456789abcdef-%ld-7.so", live);
    touch(dir, name);
    strf(name, sizeof name, "echo-0123456789abcdef-%ld-7.so", (long)getpid());
    touch(dir, name);
    strf(name, sizeof name, "echo-0123456789abcdef-%ld-7.so", dead);
    touch(dir, name);
    strf(name, sizeof name, "my-plugin-0123456789abcdef-%ld-12.so", dead);
    touch(dir, name);
    strf(name, sizeof name, ".tmp-%ld-3", dead);
    touch(dir, name);
    assert_int_equal(dir_entries(dir), 10);
    assert_int_equal(nh_plugin_state_dir_prepare(dir, &err), 0);
    assert_int_equal(dir_entries(dir), 7);
    strf(name, sizeof name, "%s/echo-0123456789abcdef-%ld-7.so", dir, dead);
    assert_false(exists(name));
    strf(name, sizeof name, "%s/echo-0123456789abcdef-%ld-7.so", dir, live);
    assert_true(exists(name));

    /* Refused: writable by others, a symbolic link, a file, a missing parent. */
    assert_int_equal(chmod(dir, 0777), 0);
    assert_int_equal(nh_plugin_state_dir_prepare(dir, &err), -1);
    strf(want, sizeof want,
         "plugin state directory %s is writable by group or others (expected mode 0700)", dir);
    assert_string_equal(err.message, want);
    assert_int_equal(err.code, NH_FAILED_PRECONDITION);
    assert_int_equal(chmod(dir, 0700), 0);

    char link[256];
    strf(link, sizeof link, "%s/link", f->dir);
    assert_int_equal(symlink(dir, link), 0);
    assert_int_equal(nh_plugin_state_dir_prepare(link, &err), -1);
    strf(want, sizeof want, "plugin state directory %s is a symbolic link", link);
    assert_string_equal(err.message, want);

    strf(name, sizeof name, "%s/file", f->dir);
    touch(f->dir, "file");
    assert_int_equal(nh_plugin_state_dir_prepare(name, &err), -1);
    strf(want, sizeof want, "plugin state directory %s is not a directory", name);
    assert_string_equal(err.message, want);

    strf(name, sizeof name, "%s/no/such", f->dir);
    assert_int_equal(nh_plugin_state_dir_prepare(name, &err), -1);
    strf(want, sizeof want, "plugin state directory %s: cannot create: No such file or directory",
         name);
    assert_string_equal(err.message, want);
    assert_int_equal(err.code, NH_NOT_FOUND);

    /* The default. */
    char buf[256];
    const char *saved = getenv("XDG_RUNTIME_DIR");
    char *saved_copy = saved != NULL ? strdup(saved) : NULL;
    setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
    assert_int_equal(nh_plugin_state_dir_default(buf, sizeof buf), 0);
    assert_string_equal(buf, "/run/user/4242/nodehost");
    setenv("XDG_RUNTIME_DIR", "relative", 1);
    assert_int_equal(nh_plugin_state_dir_default(buf, sizeof buf), 0);
    strf(want, sizeof want, "/tmp/nodehost-%lu", (unsigned long)geteuid());
    assert_string_equal(buf, want);
    unsetenv("XDG_RUNTIME_DIR");
    assert_int_equal(nh_plugin_state_dir_default(buf, sizeof buf), 0);
    assert_string_equal(buf, want);
    assert_int_equal(nh_plugin_state_dir_default(buf, 4), -1);
    if (saved_copy != NULL) setenv("XDG_RUNTIME_DIR", saved_copy, 1);
    free(saved_copy);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_echo, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_bad_init_passes_loader, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_bad_plugins, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_garbage_file, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_same_source_twice, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_replaced_source, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_conflicts, fixture_setup, fixture_teardown),
        cmocka_unit_test(test_check_descriptor),
        cmocka_unit_test_setup_teardown(test_load_unload_cycles, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_state_dir, fixture_setup, fixture_teardown),
    };
    return cmocka_run_group_tests_name("plugin_loader", tests, NULL, NULL);
}
