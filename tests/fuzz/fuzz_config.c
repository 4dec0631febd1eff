/* Fuzz target: the YAML configuration loader of the nodehost program.
 *
 * Each input is a YAML document in memory. It goes through nh_conf_doc_parse() (libyaml events ->
 * the nh_conf_node tree with positions and ${VAR} expansion), the whole tree is walked (every
 * string read, every path rendered, parent links checked), then through nh_host_config_parse()
 * (the program's schema) and, when that accepts it, through the accessors of the result.
 *
 * Plugin paths are resolved against a private temporary directory that holds empty files with
 * the names the example configurations use (dummy.so, hello.so, ...), so a valid seed gets
 * past the plugin checks into the rest of the schema.
 */
#include "config/host_config.h"
#include "config/yaml_tree.h"

#include <nodehost/conf.h>
#include <nodehost/status.h>

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_root[64];
static bool g_verbose; /* NH_FUZZ_VERBOSE=1: print why each input was refused */
static char g_conf_dir[96];

static void touch(const char *dir, const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
}

static void cleanup(void) {
    static const char *const files[] = {"conf/dummy.so",     "conf/hello.so", "conf/storage.so",
                                        "conf/benchmark.so", "good/dummy.so", NULL};
    char path[256];
    for (size_t i = 0; files[i] != NULL; i++) {
        snprintf(path, sizeof path, "%s/%s", g_root, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/conf", g_root);
    rmdir(path);
    snprintf(path, sizeof path, "%s/good", g_root);
    rmdir(path);
    rmdir(g_root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_root, sizeof g_root, "%s/nh-fuzz-config-XXXXXX",
             tmp != NULL && strlen(tmp) < 32 ? tmp : "/tmp");
    if (mkdtemp(g_root) == NULL) {
        perror("mkdtemp");
        abort();
    }
    snprintf(g_conf_dir, sizeof g_conf_dir, "%s/conf", g_root);
    char good[96];
    snprintf(good, sizeof good, "%s/good", g_root);
    if (mkdir(g_conf_dir, 0755) != 0 || mkdir(good, 0755) != 0) {
        perror("mkdir");
        abort();
    }
    touch(g_conf_dir, "dummy.so");
    touch(g_conf_dir, "hello.so");
    touch(g_conf_dir, "storage.so");
    touch(g_conf_dir, "benchmark.so");
    touch(good, "dummy.so");
    setenv("NH_PLUGIN_DIR", g_conf_dir, 1);
    setenv("NH_TEST_PLUGIN_DIR", g_conf_dir, 1);
    setenv("NH_FUZZ_VAR", "7001", 1);
    setenv("NH_TEST_ID", "1", 1);
    setenv("NH_TEST_HOST", "127.0.0.1", 1);
    g_verbose = getenv("NH_FUZZ_VERBOSE") != NULL;
    atexit(cleanup);
    return 0;
}

/* Reads every field of every node; returns the number of nodes. */
static size_t walk(const nh_conf_node *n, const nh_conf_node *parent, size_t index,
                   unsigned depth) {
    char buf[256];
    if (n->parent != parent || n->index != index) abort();
    if (n->file == NULL || strlen(n->file) == 0) abort();
    if (parent != NULL && parent->kind == NH_CONF_MAP && n->key == NULL) abort();
    if (n->key != NULL) (void)strlen(n->key);
    nh_conf_path(n, buf, sizeof buf);
    if (strlen(buf) >= sizeof buf) abort();
    size_t total = 1;
    switch (n->kind) {
        case NH_CONF_SCALAR:
            if (n->value == NULL || n->count != 0) abort();
            (void)strlen(n->value);
            break;
        case NH_CONF_MAP:
        case NH_CONF_LIST:
            if (n->value != NULL) abort();
            if (n->count > 0 && n->items == NULL) abort();
            for (size_t i = 0; i < n->count; i++) {
                total += walk(&n->items[i], n, i, depth + 1);
                if (n->kind == NH_CONF_MAP && nh_conf_get(n, n->items[i].key) == NULL) abort();
            }
            break;
        default:
            abort();
    }
    return total;
}

static int parse_config(const char *text, size_t size, uint32_t id_override);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Not NUL-terminated on purpose: the parsers take a length. */
    const char *text = (const char *)data;
    nh_error err;
    memset(&err, 0, sizeof err);

    nh_conf_doc *doc = NULL;
    if (nh_conf_doc_parse("fuzz.yaml", text, size, &doc, &err) == 0) {
        if (doc == NULL) abort();
        const nh_conf_node *root = nh_conf_doc_root(doc);
        if (root != NULL) walk(root, NULL, 0, 0);
        if (strcmp(nh_conf_doc_file(doc), "fuzz.yaml") != 0) abort();
        nh_conf_doc_free(doc);
    } else {
        if (doc != NULL || err.code == NH_OK) abort();
        if (memchr(err.message, '\0', sizeof err.message) == NULL) abort();
    }

    /* As `nodehost --config F`, then, if refused, as `nodehost --config F --id 2` (the cluster
     * files name no node.id). */
    for (uint32_t id = 0; id <= 2; id += 2) {
        if (parse_config(text, size, id) == 0) break;
    }
    return 0;
}

static int parse_config(const char *text, size_t size, uint32_t id_override) {
    nh_error err;
    memset(&err, 0, sizeof err);
    nh_host_config *cfg = NULL;
    if (nh_host_config_parse("fuzz.yaml", g_conf_dir, text, size, id_override, &cfg, &err) == 0) {
        if (cfg == NULL || cfg->listen == NULL || cfg->node_id == 0) abort();
        if (id_override != 0 && cfg->node_id != id_override) abort();
        for (size_t i = 0; i < cfg->peer_count; i++) {
            if (cfg->peers[i].address == NULL || cfg->peers[i].id == 0) abort();
            (void)strlen(cfg->peers[i].address);
        }
        for (size_t i = 0; i < cfg->plugin_count; i++) {
            const nh_host_plugin *p = &cfg->plugins[i];
            if (p->name == NULL || p->path == NULL) abort();
            (void)strlen(p->name);
            (void)strlen(p->path);
        }
        nh_host_config_free(cfg);
    } else {
        if (cfg != NULL || err.code == NH_OK) abort();
        if (memchr(err.message, '\0', sizeof err.message) == NULL) abort();
        if (g_verbose) fprintf(stderr, "config (--id %u): %s\n", id_override, err.message);
        return -1;
    }
    return 0;
}
