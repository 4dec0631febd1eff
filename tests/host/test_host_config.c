/* The nodehost configuration reader: the YAML tree (host/config/yaml_tree.c), the getters of
 * nodehost/conf.h, and the schema (host/config/host_config.c).
 *
 * The bad cases are files under tests/conf/bad/ (format: tests/conf/README.md); every one must
 * fail with exactly the message its first line announces, and with that one alone when every
 * error of a file is listed. Files with several errors: every one is listed, in file order. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/error_list.h"
#include "config/host_config.h"
#include "config/yaml_tree.h"
#include "plugin/loader.h"
#include "plugin/plugin_host.h"
#include "nh_test_util.h"

/* snprintf that must not truncate (and keeps -Wformat-truncation quiet). */
static void fmt(char *out, size_t size, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *out, size_t size, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(out, size, f, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < size);
}

/* ---- paths ---------------------------------------------------------------------------------- */

/* The source tree: NH_SOURCE_DIR (set by ctest), else derived from this file's path. */
static const char *source_dir(void) {
    static char dir[PATH_MAX];
    if (dir[0] != '\0') return dir;
    const char *env = getenv("NH_SOURCE_DIR");
    if (env != NULL && env[0] != '\0') {
        fmt(dir, sizeof dir, "%s", env);
    } else {
        fmt(dir, sizeof dir, "%s", __FILE__);
        char *p = strstr(dir, "/tests/host/");
        if (p != NULL) *p = '\0';
    }
    return dir;
}

/* The absolute, resolved path of tests/conf/<sub> (the test's own copy of ${DIR}). */
static void conf_dir(const char *sub, char *out, size_t size) {
    char p[PATH_MAX];
    fmt(p, sizeof p, "%s/tests/conf/%s", source_dir(), sub);
    char *r = realpath(p, NULL);
    assert_non_null(r);
    fmt(out, size, "%s", r);
    free(r);
}

static void conf_file(const char *sub, const char *name, char *out, size_t size) {
    char dir[PATH_MAX];
    conf_dir(sub, dir, sizeof dir);
    fmt(out, size, "%s/%s", dir, name);
}

/* Loads tests/conf/good/<name>; fails the test with the error when it does not load. */
static nh_host_config *load_good(const char *name, uint32_t id) {
    char path[PATH_MAX];
    conf_file("good", name, path, sizeof path);
    nh_host_config *c = NULL;
    nh_error err;
    nh_error_clear(&err);
    if (nh_host_config_load(path, id, &c, &err) != 0) {
        print_error("%s: %s\n", name, err.message);
        fail();
    }
    assert_non_null(c);
    return c;
}

/* ---- environment changes, undone after each case --------------------------------------------- */

typedef struct saved_env {
    char name[64];
    char *old; /* NULL: was unset */
} saved_env;

static void env_change(saved_env *s, const char *name, const char *value) {
    fmt(s->name, sizeof s->name, "%s", name);
    const char *old = getenv(name);
    s->old = old != NULL ? strdup(old) : NULL;
    if (value != NULL) {
        setenv(name, value, 1);
    } else {
        unsetenv(name);
    }
}

static void env_restore(saved_env *s) {
    if (s->old != NULL) {
        setenv(s->name, s->old, 1);
    } else {
        unsetenv(s->name);
    }
    free(s->old);
    s->old = NULL;
}

/* ---- the bad-case table --------------------------------------------------------------------- */

static int yaml_only(const struct dirent *e) {
    size_t n = strlen(e->d_name);
    return n > 5 && strcmp(e->d_name + n - 5, ".yaml") == 0;
}

/* The test plugins (tests/plugins in the build tree), for `${NH_TEST_PLUGIN_DIR}`. */
static const char *test_plugin_dir(void) {
#ifdef NH_TEST_PLUGIN_DIR
    return NH_TEST_PLUGIN_DIR;
#else
    return "/nonexistent/tests/plugins";
#endif
}

/* Replaces every ${DIR} in text by dir and every ${NH_TEST_PLUGIN_DIR} by test_plugin_dir(). */
static void substitute_dir(const char *text, const char *dir, char *out, size_t size) {
    static const char plugins_var[] = "${NH_TEST_PLUGIN_DIR}";
    size_t pos = 0;
    out[0] = '\0';
    while (*text != '\0' && pos + 1 < size) {
        if (strncmp(text, "${DIR}", 6) == 0) {
            pos += (size_t)snprintf(out + pos, size - pos, "%s", dir);
            text += 6;
        } else if (strncmp(text, plugins_var, sizeof plugins_var - 1) == 0) {
            pos += (size_t)snprintf(out + pos, size - pos, "%s", test_plugin_dir());
            text += sizeof plugins_var - 1;
        } else {
            out[pos++] = *text++;
            out[pos] = '\0';
        }
        if (pos >= size) pos = size - 1;
    }
}

static void strip_newline(char *s) {
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

/* The state directory the `stage: plugins` cases load their plugins from (made on first use). */
static char bad_state_dir[64];

static const char *state_dir(void) {
    if (bad_state_dir[0] == '\0') {
        fmt(bad_state_dir, sizeof bad_state_dir, "/tmp/nh-test-conf-XXXXXX");
        assert_non_null(mkdtemp(bad_state_dir));
        nh_error err;
        assert_int_equal(nh_plugin_state_dir_prepare(bad_state_dir, &err), 0);
    }
    return bad_state_dir;
}

/* Whether errs holds exactly the one error `expected` (whole). */
static bool only_error(const char *name, const char *how, const nh_error_list *errs,
                       const char *expected) {
    if (nh_error_list_total(errs) == 1 && errs->count == 1 &&
        strcmp(errs->items[0].message, expected) == 0)
        return true;
    print_error("%s: %s: expected the one error\n  %s\ngot %zu:\n", name, how, expected,
                nh_error_list_total(errs));
    for (size_t i = 0; i < errs->count; i++)
        print_error("  %s\n", errs->items[i].message);
    return false;
}

/* Runs one bad case; returns true when it failed with the announced message, and with that one
 * alone when every error is listed (nh_host_config_read(), nh_plugin_host_check()). */
static bool run_bad_case(const char *dir, const char *name) {
    char path[PATH_MAX];
    fmt(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        print_error("%s: cannot open\n", name);
        return false;
    }
    char line[1024], expect[1024] = "";
    saved_env envs[9];
    size_t env_count = 0;
    uint32_t id = 0;
    bool ok = true, stage_plugins = false;
    env_change(&envs[env_count++], "NH_TEST_PLUGIN_DIR", test_plugin_dir());
    for (int i = 0; fgets(line, sizeof line, f) != NULL; i++) {
        strip_newline(line);
        if (i == 0) {
            if (strncmp(line, "# expect: ", 10) != 0) {
                print_error("%s: the first line must be '# expect: LINE:COL: message'\n", name);
                ok = false;
                break;
            }
            fmt(expect, sizeof expect, "%s", line + 10);
        } else if (strncmp(line, "# env: ", 7) == 0 && env_count < 9) {
            char *eq = strchr(line + 7, '=');
            if (eq == NULL) {
                print_error("%s: '# env: NAME=value' expected\n", name);
                ok = false;
                break;
            }
            *eq = '\0';
            env_change(&envs[env_count++], line + 7, eq + 1);
        } else if (strncmp(line, "# unset: ", 9) == 0 && env_count < 9) {
            env_change(&envs[env_count++], line + 9, NULL);
        } else if (strncmp(line, "# id: ", 6) == 0) {
            id = (uint32_t)strtoul(line + 6, NULL, 10);
        } else if (strcmp(line, "# stage: plugins") == 0) {
            stage_plugins = true;
        } else {
            break;
        }
    }
    fclose(f);

    if (ok) {
        char message[1024], expected[2048], whole[2048];
        substitute_dir(expect, dir, message, sizeof message);
        fmt(whole, sizeof whole, "%s:%s", path, message);
        /* nh_error keeps NH_ERROR_MESSAGE_MAX - 1 characters: compare what fits. */
        fmt(expected, sizeof expected, "%s", whole);
        expected[NH_ERROR_MESSAGE_MAX - 1] = '\0';

        nh_host_config *c = NULL;
        nh_error err;
        nh_error_clear(&err);
        int rc = nh_host_config_load(path, id, &c, &err);
        if (stage_plugins) {
            /* The file is fine; its plugins are not. */
            if (rc != 0) {
                print_error("%s: does not load: %s\n", name, err.message);
                ok = false;
            } else {
                nh_error_list errs;
                nh_error_list_init(&errs, path);
                rc = nh_plugin_host_check(c, state_dir(), &errs);
                ok = rc == -1 && only_error(name, "nh_plugin_host_check", &errs, whole);
                nh_error_list_free(&errs);
            }
        } else if (rc != -1 || c != NULL) {
            print_error("%s: loaded, expected\n  %s\n", name, expected);
            ok = false;
        } else if (strcmp(err.message, expected) != 0) {
            print_error("%s:\n  expected: %s\n  got:      %s\n", name, expected, err.message);
            ok = false;
        } else if (err.code != NH_INVALID_ARGUMENT || err.kind != NH_ERR_LOCAL) {
            print_error("%s: code %d kind %d\n", name, (int)err.code, (int)err.kind);
            ok = false;
        } else {
            /* Every bad file has one mistake: listing every error finds that one alone. */
            nh_error_list errs;
            nh_error_list_init(&errs, path);
            nh_host_config *partial = NULL;
            ok = nh_host_config_read(path, id, &partial, &errs) == -1 &&
                 only_error(name, "nh_host_config_read", &errs, whole);
            nh_host_config_free(partial);
            nh_error_list_free(&errs);
        }
        nh_host_config_free(c);
    }
    while (env_count > 0)
        env_restore(&envs[--env_count]);
    return ok;
}

static void test_bad_configs(void **state) {
    (void)state;
    char dir[PATH_MAX];
    conf_dir("bad", dir, sizeof dir);
    struct dirent **list = NULL;
    int n = scandir(dir, &list, yaml_only, alphasort);
    assert_true(n >= 30);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (!run_bad_case(dir, list[i]->d_name)) failed++;
        free(list[i]);
    }
    free(list);
    if (bad_state_dir[0] != '\0') assert_int_equal(rmdir(bad_state_dir), 0);
    if (failed > 0) print_error("%d of %d bad cases did not fail as announced\n", failed, n);
    assert_int_equal(failed, 0);
}

/* ---- every error of a file ------------------------------------------------------------------ */

/* Reads text as m.yaml (plugins relative to tests/conf/good) and checks that exactly the errors
 * want (NULL-terminated, each without the "m.yaml:" prefix) are listed, in that order. Returns
 * the partial configuration (the caller frees it). */
static nh_host_config *expect_errors(const char *text, uint32_t id, const char *const *want) {
    char dir[PATH_MAX];
    conf_dir("good", dir, sizeof dir);
    nh_error_list errs;
    nh_error_list_init(&errs, "m.yaml");
    nh_host_config *c = NULL;
    int rc = nh_host_config_read_text("m.yaml", dir, text, strlen(text), id, &c, &errs);
    size_t n = 0;
    while (want[n] != NULL)
        n++;
    bool ok = (rc == -1) == (n > 0) && errs.count == n && nh_error_list_total(&errs) == n;
    for (size_t i = 0; ok && i < n; i++) {
        char full[1024];
        fmt(full, sizeof full, "m.yaml:%s", want[i]);
        ok = strcmp(errs.items[i].message, full) == 0;
    }
    if (!ok) {
        print_error("rc %d, %zu error(s):\n", rc, nh_error_list_total(&errs));
        for (size_t i = 0; i < errs.count; i++)
            print_error("  got:  %s\n", errs.items[i].message);
        for (size_t i = 0; i < n; i++)
            print_error("  want: m.yaml:%s\n", want[i]);
        fail();
    }
    nh_error_list_free(&errs);
    return c;
}

static void test_every_error_is_listed_in_file_order(void **state) {
    (void)state;
    static const char text[] = "version: 1\n"                                       /* 1 */
                               "log: { level: loud }\n"                             /* 2 */
                               "node: { id: 1, listen: 127.0.0.1:7001 }\n"          /* 3 */
                               "peer: 2\n"                                          /* 4 */
                               "peers:\n"                                           /* 5 */
                               "  - { id: 1, address: 127.0.0.1:7001 }\n"           /* 6 */
                               "  - { id: 2, address: 127.0.0.1 }\n"                /* 7 */
                               "  - { id: x, address: 127.0.0.1:7003 }\n"           /* 8 */
                               "  - { id: 1, address: 127.0.0.1:7004 }\n"           /* 9 */
                               "clients: { max: 0, accept: maybe }\n"               /* 10 */
                               "plugins:\n"                                         /* 11 */
                               "  - { name: a, path: dummy.so, config: { } }\n"     /* 12 */
                               "limits: { max_inbox: 0, max_message_size: 4MB }\n"  /* 13 */
                               "tls: { cert: a.pem, ca: ca.pem, clients: never }\n" /* 14 */
                               "metrics: { listen: nope }\n";                       /* 15 */
    static const char *const want[] = {
        "2:15: log.level: must be one of error, warn, info, debug, got \"loud\"",
        "4:1: unknown key 'peer' (expected one of: version, node, peers, clients, plugins, "
        "reload, limits, keepalive, log, tls, admin, metrics, threads)",
        "7:23: peers[1].address: bad address \"127.0.0.1\" (expected host:port)",
        "8:11: peers[2].id: must be an integer, got \"x\"",
        "9:11: peers[3].id: duplicate peer ID 1 (also peers[0], line 6)",
        "10:17: clients.max: must be between 1 and 1000000, got 0",
        "10:28: clients.accept: must be a boolean (true or false), got \"maybe\"",
        "13:22: limits.max_inbox: must be between 1 and 1000000, got 0",
        "13:43: limits.max_message_size: must be a size (an integer with an optional suffix k, M, "
        "G, Ki, Mi or Gi), got \"4MB\"",
        "14:6: tls: missing required key 'key'",
        "14:42: tls.clients: must be one of require, optional, none, got \"never\"",
        "15:20: metrics.listen: bad address \"nope\" (expected host:port)",
        NULL,
    };
    nh_host_config *c = expect_errors(text, 0, want);
    /* The partial configuration: what read cleanly is there, plugins can be checked. */
    assert_non_null(c);
    assert_int_equal(c->peer_count, 1);
    assert_int_equal(c->peers[0].id, 1);
    assert_int_equal(c->plugin_count, 1);
    assert_true(c->plugins_clean);
    assert_non_null(c->plugins[0].config);
    nh_host_config_free(c);

    /* The one-error forms report the first of them in the file. */
    nh_error err;
    assert_int_equal(nh_host_config_parse("m.yaml", "/", text, strlen(text), 0, &c, &err), -1);
    assert_null(c);
    assert_string_equal(err.message,
                        "m.yaml:2:15: log.level: must be one of error, warn, info, debug, got "
                        "\"loud\"");
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
}

static void test_what_stops_or_hides_errors(void **state) {
    (void)state;
    /* Another version: nothing more is read (nor returned). */
    static const char *const v2[] = {"1:10: version: must be 1, got 2", NULL};
    assert_null(expect_errors("version: 2\nnode: { id: x }\nbogus: 1\n", 0, v2));
    /* A missing version is reported, the rest read as version 1. */
    static const char *const nov[] = {"1:1: missing required key 'version'",
                                      "1:13: node.id: must be between 1 and 1048575, got 0", NULL};
    nh_host_config_free(expect_errors("node: { id: 0, listen: h:1 }\n", 0, nov));
    /* YAML errors: the first one only. */
    static const char *const yaml[] = {"3:2: node: duplicate key 'id' (first at line 2)", NULL};
    assert_null(expect_errors("node:\n id: 1\n id: 2\n", 0, yaml));
    /* An unknown key hides `missing required key` in its map (it is likely the missing one),
     * and an unknown top-level key the checks across sections (node.listen needed here). */
    static const char *const typo[] = {
        "2:19: peers[0]: unknown key 'adress' (expected one of: id, address, identity)",
        "3:1: unknown key 'lisen' (expected one of: version, node, peers, clients, plugins, "
        "reload, limits, keepalive, log, tls, admin, metrics, threads)",
        "5:7: plugins[0]: unknown key 'nmae' (expected one of: name, path, config, allow)", NULL};
    nh_host_config *c = expect_errors("version: 1\npeers: [ { id: 1, adress: h:1 } ]\n"
                                      "lisen: h:1\nplugins:\n  - { nmae: x, path: dummy.so }\n",
                                      1, typo);
    assert_false(c->plugins_clean);
    nh_host_config_free(c);
    /* Sections that are not maps are reported and skipped; the cross checks still run when
     * node and peers are fine. */
    static const char *const shapes[] = {"2:13: node.id: node 4 is not among the peers (IDs 1)",
                                         "4:10: clients: must be a map, got \"yes\"",
                                         "5:9: reload: must be a map, got a list", NULL};
    nh_host_config_free(expect_errors("version: 1\nnode: { id: 4 }\npeers: [ { id: 1, "
                                      "address: h:1 } ]\nclients: yes\nreload: [ ]\n",
                                      0, shapes));
    /* Clean after all: no error, a configuration. */
    static const char *const none[] = {NULL};
    c = expect_errors("version: 1\nnode: { id: 1, listen: h:1 }\n", 0, none);
    assert_non_null(c);
    nh_host_config_free(c);
}

/* What nh_error_list_print() writes for a list (shown errors at most). */
static char *printed(const nh_error_list *l, size_t shown) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    nh_error_list_print(l, shown, f);
    fclose(f);
    return buf;
}

static void test_error_list(void **state) {
    (void)state;
    nh_error_list l;
    nh_error_list_init(&l, "f.yaml");
    char *out = printed(&l, 20);
    assert_string_equal(out, "");
    free(out);
    nh_error err;
    assert_int_equal(nh_error_list_first(&l, &err), 0);

    /* Out of order, one without a position, one for another file: sorted stably by position,
     * those without one (for this file) last. */
    nh_error_list_addf(&l, NH_INVALID_ARGUMENT, "f.yaml:10:2: c");
    nh_error_list_addf(&l, NH_INVALID_ARGUMENT, "no position");
    nh_error_list_addf(&l, NH_INVALID_ARGUMENT, "f.yaml:3:7: a");
    nh_error_list_addf(&l, NH_INVALID_ARGUMENT, "g.yaml:1:1: other file");
    nh_error_list_addf(&l, NH_INVALID_ARGUMENT, "f.yaml:10:2: d");
    nh_error_list_addf(&l, NH_INVALID_ARGUMENT, "f.yaml:3:12: b");
    nh_error_list_sort(&l);
    out = printed(&l, 20);
    assert_string_equal(out, "f.yaml:3:7: a\nf.yaml:3:12: b\nf.yaml:10:2: c\nf.yaml:10:2: d\n"
                             "no position\ng.yaml:1:1: other file\nf.yaml: 6 errors\n");
    free(out);
    assert_int_equal(nh_error_list_first(&l, &err), -1);
    assert_string_equal(err.message, "f.yaml:3:7: a");
    assert_int_equal(l.items[0].line, 3);
    assert_int_equal(l.items[0].col, 7);
    nh_error_list_free(&l);

    /* More than shown: the first ones, then how many more. One alone: no summary. */
    nh_error_list_init(&l, "f.yaml");
    nh_error_list_addf(&l, NH_INVALID_ARGUMENT, "f.yaml:1:1: only");
    out = printed(&l, 20);
    assert_string_equal(out, "f.yaml:1:1: only\n");
    free(out);
    for (int i = 2; i <= 25; i++)
        nh_error_list_addf(&l, NH_INVALID_ARGUMENT, "f.yaml:%d:1: e%d", i, i);
    out = printed(&l, 3);
    assert_string_equal(out, "f.yaml:1:1: only\nf.yaml:2:1: e2\nf.yaml:3:1: e3\n"
                             "f.yaml: ... and 22 more errors (25 in all)\n");
    free(out);
    nh_error_list_free(&l);

    /* Beyond NH_ERROR_LIST_KEEP errors are counted, not kept. */
    nh_error_list_init(&l, NULL);
    for (int i = 0; i < NH_ERROR_LIST_KEEP + 5; i++)
        nh_error_list_addf(&l, NH_INVALID_ARGUMENT, "e%d", i);
    assert_int_equal(l.count, NH_ERROR_LIST_KEEP);
    assert_int_equal(nh_error_list_total(&l), NH_ERROR_LIST_KEEP + 5);
    assert_false(nh_error_list_exhausted(&l));
    nh_error_list_free(&l);

    /* Positions by node, without nh_conf_error()'s length limit. */
    nh_conf_doc *d = NULL;
    assert_int_equal(nh_conf_doc_parse("t.yaml", "a:\n  b: 1\n", 10, &d, &err), 0);
    nh_error_list_init(&l, "t.yaml");
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    nh_error_list_add_at(&l, nh_conf_get(nh_conf_get(nh_conf_doc_root(d), "a"), "b"), "%s", big);
    assert_int_equal(strlen(l.items[0].message), strlen("t.yaml:2:6: a.b: ") + sizeof big - 1);
    assert_int_equal(strncmp(l.items[0].message, "t.yaml:2:6: a.b: xxx", 20), 0);
    assert_int_equal(l.items[0].line, 2);
    nh_error_list_free(&l);
    nh_conf_doc_free(d);
}

/* ---- good configurations -------------------------------------------------------------------- */

static void test_full_file(void **state) {
    (void)state;
    nh_host_config *c = load_good("full.yaml", 0);
    char dir[PATH_MAX], plugin[PATH_MAX + 16];
    conf_dir("good", dir, sizeof dir);
    assert_string_equal(c->dir, dir);
    assert_int_equal(c->node_id, 2);
    assert_string_equal(c->listen, "0.0.0.0:7002");
    assert_int_equal(c->peer_count, 3);
    assert_int_equal(c->peers[0].id, 1);
    assert_string_equal(c->peers[0].address, "127.0.0.1:7001");
    assert_int_equal(c->peers[2].id, 3);
    assert_string_equal(c->peers[2].address, "[::1]:7003");
    assert_int_equal(c->peers[1].where->line, 8);
    assert_false(c->clients_accept);
    assert_int_equal(c->clients_max, 250);
    assert_int_equal(c->plugin_count, 2);
    assert_string_equal(c->plugins[0].name, "storage");
    fmt(plugin, sizeof plugin, "%s/dummy.so", dir);
    assert_string_equal(c->plugins[0].path, plugin);
    assert_non_null(c->plugins[0].config);
    assert_string_equal(c->plugins[1].name, "echo-2");
    fmt(plugin, sizeof plugin, "%s/./dummy.so", dir);
    assert_string_equal(c->plugins[1].path, plugin);
    assert_null(c->plugins[1].config);
    assert_true(c->reload_watch);
    assert_int_equal(c->reload_debounce_ms, 50);
    assert_int_equal(c->max_message_size, 1 << 20);
    assert_int_equal(c->max_inbox, 64);
    assert_int_equal(c->shutdown_grace_ms, 0);
    assert_int_equal(c->max_queued_reply_bytes, 2 << 20);
    assert_int_equal(c->slow_reader_timeout_ms, 1500);
    assert_int_equal(c->log_level, 3);
    assert_int_equal(c->log_format, NH_LOGFMT_JSON);
    assert_int_equal(c->threads, 3);
    assert_int_equal(nh_host_threads(c), 3);
    nh_host_config_free(c);
}

static void test_defaults(void **state) {
    (void)state;
    static const char text[] = "version: 1\nnode: { id: 7, listen: 'localhost:9000' }\n";
    nh_host_config *c = NULL;
    nh_error err;
    assert_int_equal(nh_host_config_parse("inline.yaml", "/", text, strlen(text), 0, &c, &err), 0);
    assert_string_equal(c->file, "inline.yaml");
    assert_int_equal(c->node_id, 7);
    assert_string_equal(c->listen, "localhost:9000");
    assert_int_equal(c->peer_count, 0);
    assert_null(c->peers);
    assert_true(c->clients_accept);
    assert_int_equal(c->clients_max, 10000);
    assert_int_equal(c->plugin_count, 0);
    assert_false(c->reload_watch);
    assert_int_equal(c->reload_debounce_ms, 200);
    assert_int_equal(c->max_message_size, 4 << 20);
    assert_int_equal(c->max_inbox, 1024);
    assert_int_equal(c->shutdown_grace_ms, 5000);
    assert_int_equal(c->max_queued_reply_bytes, 16 << 20);
    assert_int_equal(c->slow_reader_timeout_ms, 30000);
    assert_int_equal(c->log_level, 2);
    assert_int_equal(c->log_format, NH_LOGFMT_TEXT);
    /* threads: not set; the node uses the number of cores, or lets NH_THREADS decide */
    assert_int_equal(c->threads, 0);
    const char *env = getenv("NH_THREADS");
    char *saved = env ? strdup(env) : NULL;
    unsetenv("NH_THREADS");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(nh_host_threads(c), cores < 1 ? 1 : cores > 64 ? 64 : cores);
    setenv("NH_THREADS", "3", 1);
    assert_int_equal(nh_host_threads(c), 0);
    if (saved)
        setenv("NH_THREADS", saved, 1);
    else
        unsetenv("NH_THREADS");
    free(saved);
    nh_host_config_free(c);

    /* Optional keys written with no value are absent (defaults apply). */
    static const char nulls[] = "version: 1\nnode: { id: 7, listen: 'h:1' }\npeers:\nclients:\n"
                                "  max: ~\nreload:\nlimits: { max_inbox: null }\nlog:\n";
    assert_int_equal(nh_host_config_parse("nulls.yaml", "/", nulls, strlen(nulls), 0, &c, &err), 0);
    assert_int_equal(c->clients_max, 10000);
    assert_false(c->reload_watch);
    assert_int_equal(c->reload_debounce_ms, 200);
    assert_int_equal(c->max_inbox, 1024);
    nh_host_config_free(c);
}

/* reload: the bounds of debounce_ms are accepted, values may be quoted. */
static void test_reload_keys(void **state) {
    (void)state;
    static const struct {
        const char *section;
        bool watch;
        uint32_t debounce_ms;
    } cases[] = {
        {"reload: { watch: true, debounce_ms: 10 }", true, 10},
        {"reload: { watch: false, debounce_ms: 60000 }", false, 60000},
        {"reload: { watch: \"true\", debounce_ms: \"1000\" }", true, 1000},
        {"reload: { debounce_ms: 300 }", false, 300},
        {"reload: { watch: true }", true, 200},
        {"reload: {}", false, 200},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256];
        fmt(text, sizeof text, "version: 1\nnode: { id: 7, listen: 'h:1' }\n%s\n",
            cases[i].section);
        nh_host_config *c = NULL;
        nh_error err;
        if (nh_host_config_parse("reload.yaml", "/", text, strlen(text), 0, &c, &err) != 0)
            fail_msg("%s: %s", cases[i].section, err.message);
        assert_int_equal(c->reload_watch, cases[i].watch);
        assert_int_equal(c->reload_debounce_ms, cases[i].debounce_ms);
        nh_host_config_free(c);
    }
}

static void test_env_expansion(void **state) {
    (void)state;
    saved_env s[5];
    env_change(&s[0], "NH_TEST_ID", "2");
    env_change(&s[1], "NH_TEST_HOST", "127.0.0.1");
    env_change(&s[2], "NH_TEST_MISSING", NULL);
    env_change(&s[3], "NH_TEST_EMPTY", "");
    env_change(&s[4], "NH_TEST_PLUGIN_DIR", NULL);
    nh_host_config *c = load_good("env.yaml", 0);
    assert_int_equal(c->node_id, 2);
    assert_string_equal(c->peers[0].address, "127.0.0.1:7001");
    assert_string_equal(c->peers[1].address, "localhost:7002");
    assert_string_equal(c->listen, "localhost:7002");
    char dir[PATH_MAX], plugin[PATH_MAX + 16];
    conf_dir("good", dir, sizeof dir);
    fmt(plugin, sizeof plugin, "%s/./dummy.so", dir);
    assert_string_equal(c->plugins[0].path, plugin);

    const nh_conf_node *cfg = c->plugins[0].config;
    const char *v;
    assert_int_equal(nh_conf_string(cfg, "price", NULL, &v, NULL), 0);
    assert_string_equal(v, "$5 and $HOME stay as written");
    assert_int_equal(nh_conf_string(cfg, "literal", NULL, &v, NULL), 0);
    assert_string_equal(v, "${NOT_EXPANDED}");
    /* ${VAR:-} with VAR unset: empty, so the key counts as absent. */
    assert_int_equal(nh_conf_string(cfg, "empty_default", "def", &v, NULL), 0);
    assert_string_equal(v, "def");
    assert_non_null(nh_conf_get(cfg, "key_${NH_TEST_ID}"));
    /* Single-quoted scalars are expanded too. */
    assert_int_equal(nh_conf_string(cfg, "single", NULL, &v, NULL), 0);
    assert_string_equal(v, "127.0.0.1");
    assert_true(nh_conf_get(cfg, "single")->quoted);
    nh_host_config_free(c);

    /* ${VAR:-default} takes the variable when it is set and not empty. */
    env_change(&s[2], "NH_TEST_MISSING", "example.org");
    c = load_good("env.yaml", 0);
    assert_string_equal(c->peers[1].address, "example.org:7002");
    nh_host_config_free(c);
    for (int i = 4; i >= 0; i--)
        env_restore(&s[i]);
}

static void test_cluster_file_with_id(void **state) {
    (void)state;
    for (uint32_t id = 1; id <= 3; id++) {
        nh_host_config *c = load_good("cluster.yaml", id);
        char want[32];
        fmt(want, sizeof want, "127.0.0.1:710%u", (unsigned)id);
        assert_int_equal(c->node_id, id);
        assert_string_equal(c->listen, want);
        assert_int_equal(c->peer_count, 3);
        nh_host_config_free(c);
    }
    /* Without --id the shared file names no node. */
    char path[PATH_MAX], want[PATH_MAX + 96];
    conf_file("good", "cluster.yaml", path, sizeof path);
    nh_host_config *c = NULL;
    nh_error err;
    assert_int_equal(nh_host_config_load(path, 0, &c, &err), -1);
    assert_null(c);
    fmt(want, sizeof want, "%s:2:1: node.id: missing (set node.id or pass --id N)", path);
    assert_string_equal(err.message, want);

    /* --id wins over node.id; out-of-range --id is refused. */
    c = load_good("full.yaml", 3);
    assert_int_equal(c->node_id, 3);
    assert_string_equal(c->listen, "0.0.0.0:7002");
    nh_host_config_free(c);
    assert_int_equal(nh_host_config_load(path, 1048576, &c, &err), -1);
    assert_string_equal(err.message, "--id 1048576: must be between 1 and 1048575");
}

static void test_plugin_path_relative_to_file(void **state) {
    (void)state;
    char dir[PATH_MAX], plugin[PATH_MAX + 16], conf[PATH_MAX], cwd[PATH_MAX];
    conf_dir("good", dir, sizeof dir);
    conf_dir("", conf, sizeof conf);
    fmt(plugin, sizeof plugin, "%s/dummy.so", dir);
    assert_non_null(getcwd(cwd, sizeof cwd));

    /* Loaded by a relative name from tests/conf: the directory is still absolute. */
    assert_int_equal(chdir(conf), 0);
    nh_host_config *c = NULL;
    nh_error err;
    int rc = nh_host_config_load("good/cluster.yaml", 2, &c, &err);
    if (rc != 0) print_error("%s\n", err.message);
    assert_int_equal(rc, 0);
    assert_string_equal(c->file, "good/cluster.yaml");
    assert_string_equal(c->dir, dir);
    assert_string_equal(c->plugins[0].path, plugin);
    nh_host_config_free(c);

    /* From elsewhere (the working directory plays no part). */
    assert_int_equal(chdir("/"), 0);
    c = load_good("cluster.yaml", 2);
    assert_string_equal(c->plugins[0].path, plugin);
    nh_host_config_free(c);
    assert_int_equal(chdir(cwd), 0);
}

static void test_plugin_config_subtree(void **state) {
    (void)state;
    nh_host_config *c = load_good("plugin-config.yaml", 0);
    assert_int_equal(c->plugin_count, 3);
    const nh_conf_node *cfg = c->plugins[0].config;
    assert_non_null(cfg);
    assert_int_equal(cfg->kind, NH_CONF_MAP);
    assert_int_equal(cfg->count, 3);
    assert_int_equal(cfg->line, 7);
    assert_int_equal(cfg->col, 7);
    assert_int_equal(cfg->key_line, 6);
    assert_int_equal(cfg->key_col, 5);
    char path[128];
    assert_string_equal(nh_conf_path(cfg, path, sizeof path), "plugins[0].config");

    int64_t replicas;
    assert_int_equal(nh_conf_int(cfg, "replicas", 1, 1, 9, false, &replicas, NULL), 0);
    assert_int_equal(replicas, 3);
    const nh_conf_node *r = nh_conf_get(cfg, "replicas");
    assert_string_equal(nh_conf_path(r, path, sizeof path), "plugins[0].config.replicas");
    assert_int_equal(r->line, 7);
    assert_int_equal(r->col, 17);

    const nh_conf_node *shards = nh_conf_get(cfg, "shards");
    assert_int_equal(shards->kind, NH_CONF_LIST);
    assert_int_equal(shards->count, 2);
    const nh_conf_node *b = &shards->items[1];
    assert_ptr_equal(b->parent, shards);
    assert_int_equal(b->index, 1);
    assert_null(b->key);
    assert_int_equal(b->line, 11);
    assert_int_equal(b->col, 11);
    const nh_conf_node *size = nh_conf_get(b, "size");
    assert_string_equal(nh_conf_path(size, path, sizeof path), "plugins[0].config.shards[1].size");
    assert_int_equal(size->line, 12);
    assert_int_equal(size->col, 17);
    assert_int_equal(size->key_col, 11);

    /* A plugin's own check reports with the same file:line:col: path: prefix. */
    char file[PATH_MAX], want[PATH_MAX + 128];
    conf_file("good", "plugin-config.yaml", file, sizeof file);
    nh_error err;
    int64_t v;
    assert_int_equal(nh_conf_int(b, "size", 0, 0, 64 << 20, true, &v, &err), -1);
    fmt(want, sizeof want,
        "%s:12:17: plugins[0].config.shards[1].size: must be between 0 and 64Mi, got 1Gi", file);
    assert_string_equal(err.message, want);
    assert_int_equal(nh_conf_int(&shards->items[0], "size", 0, 0, 64 << 20, true, &v, &err), 0);
    assert_int_equal(v, 16 << 20);
    static const char *const allowed[] = {"replicas", "shards", NULL};
    assert_int_equal(nh_conf_check_keys(cfg, allowed, &err), -1);
    fmt(want, sizeof want,
        "%s:8:7: plugins[0].config: unknown key 'anything' (expected one of: replicas, "
        "shards)",
        file);
    assert_string_equal(err.message, want);

    /* No config, and `config:` with no value: both NULL. */
    assert_null(c->plugins[1].config);
    assert_null(c->plugins[2].config);
    assert_ptr_equal(c->plugins[2].where,
                     &nh_conf_get(nh_conf_doc_root(c->doc), "plugins")->items[2]);
    nh_host_config_free(c);
}

static void test_size_suffixes(void **state) {
    (void)state;
    static const struct {
        const char *text;
        size_t want;
    } cases[] = {{"4Mi", 4u << 20}, {"4194304", 4u << 20},  {"1Ki", 1024},    {"64Mi", 64u << 20},
                 {"2M", 2000000},   {"0x100000", 1u << 20}, {"100k", 100000}, {"\"8Ki\"", 8192}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256];
        fmt(text, sizeof text,
            "version: 1\nnode: { id: 1, listen: 'h:1' }\nlimits: { max_message_size: %s }\n",
            cases[i].text);
        nh_host_config *c = NULL;
        nh_error err;
        int rc = nh_host_config_parse("s.yaml", "/", text, strlen(text), 0, &c, &err);
        if (rc != 0) print_error("%s: %s\n", cases[i].text, err.message);
        assert_int_equal(rc, 0);
        assert_int_equal(c->max_message_size, cases[i].want);
        nh_host_config_free(c);
    }
    static const char small[] =
        "version: 1\nnode: { id: 1, listen: 'h:1' }\nlimits: { max_message_size: 1023 }\n";
    nh_host_config *c = NULL;
    nh_error err;
    assert_int_equal(nh_host_config_parse("s.yaml", "/", small, strlen(small), 0, &c, &err), -1);
    assert_string_equal(err.message,
                        "s.yaml:3:29: limits.max_message_size: must be between 1Ki and 64Mi, "
                        "got 1023");
}

/* ---- the generic tree and getters ----------------------------------------------------------- */

static nh_conf_doc *parse(const char *text) {
    nh_conf_doc *d = NULL;
    nh_error err;
    if (nh_conf_doc_parse("t.yaml", text, strlen(text), &d, &err) != 0) {
        print_error("%s\n", err.message);
        fail();
    }
    return d;
}

static void expect_parse_error(const char *text, const char *want) {
    nh_conf_doc *d = (nh_conf_doc *)1;
    nh_error err;
    assert_int_equal(nh_conf_doc_parse("t.yaml", text, strlen(text), &d, &err), -1);
    assert_null(d);
    assert_string_equal(err.message, want);
}

static void test_tree_shape(void **state) {
    (void)state;
    nh_conf_doc *d = parse("a: 1\nb:\n  - x\n  - 'y'\n  - \"\"\n  - ~\n  -\nc: !!str 5\n"
                           "d: |\n  two\n  lines\ne: null\nf: NULL\ng: 'null'\n");
    const nh_conf_node *root = nh_conf_doc_root(d);
    assert_string_equal(nh_conf_doc_file(d), "t.yaml");
    assert_int_equal(root->kind, NH_CONF_MAP);
    assert_null(root->parent);
    assert_null(root->key);
    assert_string_equal(root->file, "t.yaml");
    char path[64];
    assert_string_equal(nh_conf_path(root, path, sizeof path), "");
    const nh_conf_node *b = nh_conf_get(root, "b");
    assert_int_equal(b->kind, NH_CONF_LIST);
    assert_int_equal(b->count, 5);
    assert_int_equal(b->key_line, 2);
    assert_int_equal(b->key_col, 1);
    assert_int_equal(b->line, 3);
    assert_int_equal(b->col, 3);
    assert_string_equal(b->items[0].value, "x");
    assert_false(b->items[0].quoted);
    assert_true(b->items[1].quoted);
    assert_string_equal(b->items[2].value, "");
    assert_true(b->items[2].quoted); /* "" is an empty string, not null */
    assert_string_equal(b->items[3].value, "");
    assert_false(b->items[3].quoted); /* ~ is null */
    assert_false(b->items[4].quoted); /* nothing is null */
    assert_string_equal(nh_conf_path(&b->items[3], path, sizeof path), "b[3]");
    const nh_conf_node *c = nh_conf_get(root, "c");
    assert_true(c->quoted);
    assert_string_equal(c->value, "5");
    assert_string_equal(nh_conf_get(root, "d")->value, "two\nlines\n");
    assert_true(nh_conf_get(root, "d")->quoted);
    const char *s;
    assert_int_equal(nh_conf_string(root, "e", "absent", &s, NULL), 0);
    assert_string_equal(s, "absent");
    assert_int_equal(nh_conf_string(root, "f", "absent", &s, NULL), 0);
    assert_string_equal(s, "absent");
    assert_int_equal(nh_conf_string(root, "g", "absent", &s, NULL), 0);
    assert_string_equal(s, "null");
    assert_null(nh_conf_get(root, "zzz"));
    assert_null(nh_conf_get(b, "x"));
    assert_null(nh_conf_get(NULL, "x"));
    nh_conf_doc_free(d);

    /* Empty documents have no root. */
    static const char *const empties[] = {"", "# only a comment\n", "---\n", "~\n", "--- null\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        d = parse(empties[i]);
        assert_null(nh_conf_doc_root(d));
        nh_conf_doc_free(d);
    }
    /* One explicit document is fine. */
    d = parse("---\na: 1\n...\n");
    assert_non_null(nh_conf_doc_root(d));
    nh_conf_doc_free(d);
    /* A root list: paths start with the index. */
    d = parse("- {a: [1, 2]}\n");
    const nh_conf_node *two = &nh_conf_get(&nh_conf_doc_root(d)->items[0], "a")->items[1];
    assert_string_equal(nh_conf_path(two, path, sizeof path), "[0].a[1]");
    /* A small buffer truncates, always terminated. */
    assert_string_equal(nh_conf_path(two, path, 4), "[0]");
    nh_conf_doc_free(d);
}

/* prefix, then `levels` nested flow lists: [[...]]. */
static void nested(char *buf, size_t size, const char *prefix, size_t levels) {
    size_t pos = strlen(prefix);
    fmt(buf, size, "%s", prefix);
    assert_true(pos + 2 * levels + 2 <= size);
    memset(buf + pos, '[', levels);
    memset(buf + pos + levels, ']', levels);
    buf[pos + 2 * levels] = '\n';
    buf[pos + 2 * levels + 1] = '\0';
}

static void test_tree_errors(void **state) {
    (void)state;
    expect_parse_error("a: 1\n---\nb: 2\n",
                       "t.yaml:2:1: more than one YAML document (only one is allowed)");
    expect_parse_error("a:\n  b: &x 1\n", "t.yaml:2:6: YAML aliases and anchors are not supported");
    expect_parse_error("a: *x\n", "t.yaml:1:4: YAML aliases and anchors are not supported");
    expect_parse_error("a:\n  b: 1\n  c: [1, {d: 1, d: 2}]\n",
                       "t.yaml:3:17: a.c[1]: duplicate key 'd' (first at line 3)");
    expect_parse_error("? [a]\n: 1\n", "t.yaml:1:3: a map key must be a scalar, got a list");
    expect_parse_error("{a: {}, {b: 1}: 2}\n", "t.yaml:1:9: a map key must be a scalar, got a map");
    expect_parse_error("a: 1\n? \n: 2\n", "t.yaml:2:2: empty map key");
    expect_parse_error("a: 1\n\"\": 2\n", "t.yaml:2:1: empty map key");
    expect_parse_error("a: {~: 2}\n", "t.yaml:1:5: a: empty map key");
    expect_parse_error("a: \"x\\0y\"\n", "t.yaml:1:4: a: the value contains a NUL character");
    expect_parse_error("a: !custom 1\n", "t.yaml:1:4: YAML tags are not supported ('!custom')");
    expect_parse_error("a: [b, \"${B C}\"]\n",
                       "t.yaml:1:8: a[1]: bad environment variable name 'B C' in \"${B C}\"");
    expect_parse_error("x: ${}\n", "t.yaml:1:4: x: bad environment variable name '' in \"${}\"");
    expect_parse_error("- ${A:B}\n",
                       "t.yaml:1:3: [0]: bad environment variable name 'A:B' in \"${A:B}\"");
    expect_parse_error("${X\n", "t.yaml:1:1: unterminated '${' in \"${X\"");
    expect_parse_error("a: \xff\n", "t.yaml:1:4: YAML syntax error: invalid leading UTF-8 octet");
    expect_parse_error("a: \"\xc3\xa9\xff\"\n",
                       "t.yaml:1:6: YAML syntax error: invalid leading UTF-8 octet");

    /* Depth: 64 nested containers are fine, 65 are not. */
    char deep[256];
    nested(deep, sizeof deep, "", 64);
    nh_conf_doc *d = parse(deep);
    nh_conf_doc_free(d);
    nested(deep, sizeof deep, "a: ", 64);
    expect_parse_error(deep, "t.yaml:1:67: nesting deeper than 64 levels");

    /* Files. */
    nh_conf_doc *out = (nh_conf_doc *)1;
    nh_error err;
    assert_int_equal(nh_conf_doc_load("/nonexistent/nodehost.yaml", &out, &err), -1);
    assert_null(out);
    assert_string_equal(err.message,
                        "/nonexistent/nodehost.yaml: cannot open: No such file or directory");
    char dir[PATH_MAX], want[PATH_MAX + 64];
    conf_dir("good", dir, sizeof dir);
    assert_int_equal(nh_conf_doc_load(dir, &out, &err), -1);
    fmt(want, sizeof want, "%s: cannot read: Is a directory", dir);
    assert_string_equal(err.message, want);
    nh_host_config *c = (nh_host_config *)1;
    assert_int_equal(nh_host_config_load("/nonexistent/nodehost.yaml", 0, &c, &err), -1);
    assert_null(c);
    assert_string_equal(err.message,
                        "/nonexistent/nodehost.yaml: cannot open: No such file or directory");
}

static void test_getters(void **state) {
    (void)state;
    nh_conf_doc *d = parse("n: 42\nneg: -7\nhex: 0x1F\nbig: 99999999999999999999\nq: \"12\"\n"
                           "k: 3k\ng: 2Gi\nbad: 12abc\nt1: yes\nt2: On\nt3: TRUE\nf1: off\n"
                           "f2: No\nnb: maybe\nlist: [1]\nmap: {a: 1}\nempty: \"\"\nnil:\n");
    const nh_conf_node *r = nh_conf_doc_root(d);
    nh_error err;
    int64_t v;
    bool b;
    const char *s;
    assert_int_equal(nh_conf_int(r, "n", 0, 0, 100, false, &v, &err), 0);
    assert_int_equal(v, 42);
    assert_int_equal(nh_conf_int(r, "neg", 0, -10, 10, false, &v, &err), 0);
    assert_int_equal(v, -7);
    assert_int_equal(nh_conf_int(r, "hex", 0, 0, 100, false, &v, &err), 0);
    assert_int_equal(v, 31);
    assert_int_equal(nh_conf_int(r, "q", 0, 0, 100, false, &v, &err), 0); /* quoted is fine */
    assert_int_equal(v, 12);
    assert_int_equal(nh_conf_int(r, "absent", 5, 0, 100, false, &v, &err), 0);
    assert_int_equal(v, 5);
    assert_int_equal(nh_conf_int(r, "nil", 6, 0, 100, false, &v, &err), 0);
    assert_int_equal(v, 6);
    assert_int_equal(nh_conf_int(r, "k", 0, 0, INT64_MAX, true, &v, &err), 0);
    assert_int_equal(v, 3000);
    assert_int_equal(nh_conf_int(r, "g", 0, 0, INT64_MAX, true, &v, &err), 0);
    assert_int_equal(v, INT64_C(2) << 30);
    assert_int_equal(nh_conf_int(r, "k", 0, 0, INT64_MAX, false, &v, &err), -1);
    assert_string_equal(err.message, "t.yaml:6:4: k: must be an integer, got \"3k\"");
    assert_int_equal(nh_conf_int(r, "big", 0, 0, 100, false, &v, &err), -1);
    assert_string_equal(err.message,
                        "t.yaml:4:6: big: must be between 0 and 100, got 99999999999999999999");
    assert_int_equal(nh_conf_int(r, "bad", 0, 0, 100, false, &v, &err), -1);
    assert_string_equal(err.message, "t.yaml:8:6: bad: must be an integer, got \"12abc\"");
    assert_int_equal(nh_conf_int(r, "list", 0, 0, 100, false, &v, &err), -1);
    assert_string_equal(err.message, "t.yaml:15:7: list: must be an integer, got a list");
    assert_int_equal(nh_conf_int(r, "empty", 0, 0, 100, false, &v, &err), -1);
    assert_string_equal(err.message, "t.yaml:17:8: empty: must be an integer, got \"\"");
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_int_equal(err.kind, NH_ERR_LOCAL);

    static const char *const yes[] = {"t1", "t2", "t3"}, *const no[] = {"f1", "f2"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(nh_conf_bool(r, yes[i], false, &b, &err), 0);
        assert_true(b);
    }
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(nh_conf_bool(r, no[i], true, &b, &err), 0);
        assert_false(b);
    }
    assert_int_equal(nh_conf_bool(r, "nil", true, &b, &err), 0);
    assert_true(b);
    assert_int_equal(nh_conf_bool(r, "nb", true, &b, &err), -1);
    assert_string_equal(err.message,
                        "t.yaml:14:5: nb: must be a boolean (true or false), got \"maybe\"");
    assert_int_equal(nh_conf_bool(r, "map", true, &b, &err), -1);
    assert_string_equal(err.message,
                        "t.yaml:16:6: map: must be a boolean (true or false), got a map");

    assert_int_equal(nh_conf_string(r, "n", NULL, &s, &err), 0);
    assert_string_equal(s, "42");
    assert_int_equal(nh_conf_string(r, "empty", "d", &s, &err), 0);
    assert_string_equal(s, "");
    assert_int_equal(nh_conf_string(r, "map", NULL, &s, &err), -1);
    assert_string_equal(err.message, "t.yaml:16:6: map: must be a string, got a map");

    static const char *const one[] = {"n", NULL}, *const none[] = {NULL};
    const nh_conf_node *map = nh_conf_get(r, "map");
    assert_int_equal(nh_conf_check_keys(map, one, &err), -1);
    assert_string_equal(err.message, "t.yaml:16:7: map: unknown key 'a' (expected: n)");
    assert_int_equal(nh_conf_check_keys(map, none, &err), -1);
    assert_string_equal(err.message,
                        "t.yaml:16:7: map: unknown key 'a' (no keys are allowed here)");
    assert_int_equal(nh_conf_check_keys(nh_conf_get(r, "list"), one, &err), -1);
    assert_string_equal(err.message, "t.yaml:15:7: list: must be a map, got a list");
    assert_int_equal(nh_conf_check_keys(NULL, one, &err), 0);

    assert_int_equal(nh_conf_error(NULL, &err, "plain %d", 1), -1);
    assert_string_equal(err.message, "plain 1");
    assert_int_equal(nh_conf_error(r, &err, "at the root"), -1);
    assert_string_equal(err.message, "t.yaml:1:1: at the root");
    nh_conf_doc_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_every_error_is_listed_in_file_order),
        cmocka_unit_test(test_what_stops_or_hides_errors),
        cmocka_unit_test(test_error_list),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_reload_keys),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_cluster_file_with_id),
        cmocka_unit_test(test_plugin_path_relative_to_file),
        cmocka_unit_test(test_plugin_config_subtree),
        cmocka_unit_test(test_size_suffixes),
        cmocka_unit_test(test_tree_shape),
        cmocka_unit_test(test_tree_errors),
        cmocka_unit_test(test_getters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
