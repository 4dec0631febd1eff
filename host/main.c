/* nodehost: runs one node of a Gorums cluster from a YAML file, with handler plugins.
 *
 *   nodehost --config FILE [--id N] [options]     run a node
 *   nodehost --config FILE --id-from-hostname     the same, node ID = host name's ordinal + 1
 *   nodehost --config FILE --check-config         validate the file and its plugins, start nothing
 *   nodehost status ADDRESS [--json]              ask a running node for its status
 *   nodehost reload ADDRESS [--json]              make a running node reload its plugins
 */
#include "admin/admin.h"
#include "config/host_config.h"
#include "plugin/loader.h"
#include "plugin/plugin_host.h"
#include "run/node_run.h"

#include <nodehost/nodehost.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out) {
    fprintf(out,
            "Usage:\n"
            "  nodehost --config FILE [--id N | --id-from-hostname] [options]\n"
            "                                               run a node\n"
            "  nodehost --config FILE [--id N | --id-from-hostname] --check-config\n"
            "                                               validate the file and every plugin it\n"
            "                                               names (load and descriptor check, no "
            "init)\n"
            "  nodehost status ADDRESS [--json] [--timeout-ms N] [TLS options]\n"
            "                                               print a running node's ID, Config,\n"
            "                                               ClientConfig, plugins and reloads\n"
            "                                               (--timeout-ms default 3000)\n"
            "  nodehost reload ADDRESS [--json] [--timeout-ms N] [TLS options]\n"
            "                                               make a running node reload its\n"
            "                                               configuration's plugins and print\n"
            "                                               the outcome (waits up to 5 s for\n"
            "                                               the connection; --timeout-ms\n"
            "                                               default 30000; exit 1 with the\n"
            "                                               reason when the reload failed)\n"
            "\n"
            "TLS options of status and reload (for a node with a tls section):\n"
            "      --tls-ca FILE       connect with TLS; the node's certificate must be signed\n"
            "                          by this CA bundle (PEM)\n"
            "      --tls-cert FILE     present this certificate (PEM): a node's own certificate,\n"
            "      --tls-key FILE      or one listed in the node's admin.allow\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE       the YAML configuration (see conf/reference.yaml)\n"
            "  -i, --id N              which node of a shared cluster file to run (overrides "
            "node.id)\n"
            "      --id-from-hostname  the same, with N taken from the host name's trailing\n"
            "                          ordinal plus one, as a StatefulSet names its pods:\n"
            "                          nodehost-0 runs node 1, nodehost-2 node 3 ($HOSTNAME,\n"
            "                          else gethostname(); only its first label counts;\n"
            "                          not with --id)\n"
            "      --check-config      validate and exit: 0 when valid, 1 with the errors\n"
            "      --log-level L       error, warn, info or debug (overrides log.level)\n"
            "      --log-format F      text or json (overrides log.format)\n"
            "      --state-dir DIR     where plugin copies are loaded from (default\n"
            "                          $NH_STATE_DIR, else $XDG_RUNTIME_DIR/nodehost, else\n"
            "                          /tmp/nodehost-UID)\n"
            "  -h, --help              this text\n"
            "  -V, --version           the version\n"
            "\n"
            "Signals: SIGTERM or SIGINT stop the node after the calls in flight finish (within\n"
            "limits.shutdown_grace_ms; a second signal stops at once).\n"
            "SIGHUP reloads the configuration's plugins (see nodehost reload).\n"
            "Exit status: 0 success, 1 error (configuration, plugins, start; for status and\n"
            "reload: no answer, or the reload failed), 2 bad usage.\n");
}

/* The directory plugin copies are loaded from: made ready (created 0700, checked, cleaned of
 * copies left by dead processes). */
static int state_dir_path(const char *given, char *buf, size_t size) {
    const char *env = getenv("NH_STATE_DIR");
    if (given)
        snprintf(buf, size, "%s", given);
    else if (env && *env)
        snprintf(buf, size, "%s", env);
    else if (nh_plugin_state_dir_default(buf, size) != 0)
        return -1;
    nh_error err = {0};
    if (nh_plugin_state_dir_prepare(buf, &err) != 0) {
        fprintf(stderr, "nodehost: %s\n", err.message);
        return -1;
    }
    return 0;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > max || s[0] == '-') return -1;
    *out = (uint32_t)v;
    return 0;
}

/* --id-from-hostname: the node ID from a StatefulSet-style host name, "<name>-<ordinal>" ->
 * ordinal + 1 (IDs start at 1). The host name is $HOSTNAME when set (Kubernetes sets it to the
 * pod name), else gethostname(); only its first label counts ("nodehost-1.nodehost.ns.svc"
 * is "nodehost-1"). Returns 0, or 2 (bad usage) after printing why. */
static int id_from_hostname(uint32_t *id, char *host, size_t host_size) {
    const char *env = getenv("HOSTNAME");
    if (env && *env) {
        snprintf(host, host_size, "%s", env);
    } else if (gethostname(host, host_size) != 0) {
        fprintf(stderr, "nodehost: --id-from-hostname: cannot read the host name: %s\n",
                strerror(errno));
        return 2;
    } else {
        host[host_size - 1] = '\0';
    }
    char *dot = strchr(host, '.');
    if (dot) *dot = '\0';
    size_t len = strlen(host), digits = 0;
    while (digits < len && host[len - 1 - digits] >= '0' && host[len - 1 - digits] <= '9')
        digits++;
    if (digits == 0 || digits + 1 >= len || host[len - 1 - digits] != '-') {
        fprintf(stderr,
                "nodehost: --id-from-hostname: host name '%s' does not end in -<ordinal> (a "
                "StatefulSet pod name like nodehost-0)\n",
                host);
        return 2;
    }
    const char *ord = host + len - digits;
    uint64_t v = 0;
    for (const char *p = ord; *p && v <= NH_HOST_MAX_NODE_ID; p++)
        v = v * 10 + (uint64_t)(*p - '0');
    if (v + 1 > NH_HOST_MAX_NODE_ID) {
        fprintf(stderr,
                "nodehost: --id-from-hostname: host name '%s': ordinal %s is too big (node IDs "
                "go up to %u, so ordinals up to %u)\n",
                host, ord, NH_HOST_MAX_NODE_ID, NH_HOST_MAX_NODE_ID - 1);
        return 2;
    }
    *id = (uint32_t)v + 1;
    return 0;
}

/* `nodehost status|reload ADDRESS [--json] [--timeout-ms N]`: both ask the node's admin
 * service, print what it answers and take the same arguments. */
typedef int (*admin_print_fn)(const char *address, uint32_t timeout_ms, bool json, nh_tls *tls,
                              FILE *out, nh_error *err);

static int cmd_admin(int argc, char **argv, uint32_t timeout_ms, admin_print_fn print) {
    const char *cmd = argv[1], *address = NULL;
    const char *ca = NULL, *cert = NULL, *key = NULL;
    bool json = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--tls-ca") && i + 1 < argc) {
            ca = argv[++i];
        } else if (!strcmp(argv[i], "--tls-cert") && i + 1 < argc) {
            cert = argv[++i];
        } else if (!strcmp(argv[i], "--tls-key") && i + 1 < argc) {
            key = argv[++i];
        } else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc) {
            if (parse_u32(argv[++i], 600000, &timeout_ms) != 0) {
                fprintf(stderr, "nodehost %s: --timeout-ms must be 1 to 600000\n", cmd);
                return 2;
            }
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] != '-' && !address) {
            address = argv[i];
        } else {
            fprintf(stderr, "nodehost %s: unexpected argument '%s'\n", cmd, argv[i]);
            return 2;
        }
    }
    if (!address) {
        fprintf(stderr, "nodehost %s: missing ADDRESS (host:port of a running node)\n", cmd);
        return 2;
    }
    nh_error err = {0};
    nh_tls *tls = NULL;
    if (ca || cert || key) {
        if (!ca) {
            fprintf(stderr, "nodehost %s: --tls-cert and --tls-key need --tls-ca\n", cmd);
            return 2;
        }
        nh_tls_opts to = {.ca_file = ca, .cert_file = cert, .key_file = key};
        if (nh_tls_new(&to, &tls, NULL, &err) != 0) {
            fprintf(stderr, "nodehost %s: %s\n", cmd, err.message);
            return 2;
        }
    }
    int rc = 0;
    if (print(address, timeout_ms, json, tls, stdout, &err) != 0) {
        /* A plaintext client to a TLS node sees only a closed socket. */
        bool hint = !tls && strstr(err.message, "Socket closed");
        fprintf(stderr, "nodehost %s: %s: %s%s\n", cmd, address, err.message,
                hint ? " (does the node use TLS? then pass --tls-ca, --tls-cert and --tls-key)"
                     : "");
        rc = 1;
    }
    nh_tls_unref(tls);
    return rc;
}

/* --check-config: the errors of the file (errs, from nh_host_config_read(); cfg the partial
 * configuration, or NULL), then those of its TLS files (when the file read without error) and of
 * its plugins (when its plugin list did), all in file order. Prints them (or "FILE: OK ...") and
 * returns the exit status. */
static int check_config(const char *file, nh_host_config *cfg, const char *state_dir, char *dir,
                        size_t dir_size, nh_error_list *errs) {
    bool clean = nh_error_list_total(errs) == 0;
    nh_error err = {0};
    if (cfg && clean && cfg->tls.on) {
        nh_tls *tls = NULL;
        if (nh_host_tls_load(cfg, NULL, &tls, &err) != 0) nh_error_list_add(errs, &err);
        nh_tls_unref(tls);
    }
    if (cfg && cfg->plugins_clean && (clean || cfg->plugin_count > 0)) {
        if (state_dir_path(state_dir, dir, dir_size) != 0) {
            nh_error_list_print(errs, NH_ERROR_LIST_SHOWN, stderr);
            return 1;
        }
        nh_plugin_host_check(cfg, dir, errs);
    }
    if (nh_error_list_total(errs) > 0) {
        nh_error_list_sort(errs);
        nh_error_list_print(errs, NH_ERROR_LIST_SHOWN, stderr);
        return 1;
    }
    printf("%s: OK (node %u, %zu peer(s), %zu plugin(s))\n", file, cfg->node_id, cfg->peer_count,
           cfg->plugin_count);
    return 0;
}

int main(int argc, char **argv) {
    nh_run_block_signals();
    if (argc > 1 && !strcmp(argv[1], "status"))
        return cmd_admin(argc, argv, 3000, nh_admin_print_status);
    /* A reload runs the init of every changed plugin: allow it time. */
    if (argc > 1 && !strcmp(argv[1], "reload"))
        return cmd_admin(argc, argv, 30000, nh_admin_print_reload);

    enum { OPT_CHECK = 256, OPT_LOG_LEVEL, OPT_LOG_FORMAT, OPT_STATE_DIR, OPT_ID_FROM_HOSTNAME };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"id", required_argument, NULL, 'i'},
        {"id-from-hostname", no_argument, NULL, OPT_ID_FROM_HOSTNAME},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *state_dir = NULL;
    uint32_t id = 0;
    bool check = false, id_given = false, id_from_host = false;
    int log_level = -1, log_format = -1;
    int c;
    while ((c = getopt_long(argc, argv, "c:i:hV", opts, NULL)) != -1) {
        switch (c) {
            case 'c':
                config = optarg;
                break;
            case 'i':
                if (parse_u32(optarg, (1u << 20) - 1, &id) != 0) {
                    fprintf(stderr,
                            "nodehost: --id must be a node ID from 1 to 1048575, got '%s'\n",
                            optarg);
                    return 2;
                }
                id_given = true;
                break;
            case OPT_ID_FROM_HOSTNAME:
                id_from_host = true;
                break;
            case OPT_CHECK:
                check = true;
                break;
            case OPT_LOG_LEVEL:
                if ((log_level = nh_log_level_parse(optarg)) < 0) {
                    fprintf(stderr, "nodehost: --log-level must be error, warn, info or debug\n");
                    return 2;
                }
                break;
            case OPT_LOG_FORMAT:
                if (!strcmp(optarg, "text"))
                    log_format = NH_LOG_TEXT;
                else if (!strcmp(optarg, "json"))
                    log_format = NH_LOG_JSON;
                else {
                    fprintf(stderr, "nodehost: --log-format must be text or json\n");
                    return 2;
                }
                break;
            case OPT_STATE_DIR:
                state_dir = optarg;
                break;
            case 'h':
                usage(stdout);
                return 0;
            case 'V':
                printf("nodehost %s\n", nh_version());
                return 0;
            default:
                usage(stderr);
                return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "nodehost: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (!config) {
        fprintf(stderr, "nodehost: missing --config FILE (see --help)\n");
        return 2;
    }
    char host[256] = "";
    if (id_from_host) {
        if (id_given) {
            fprintf(stderr, "nodehost: --id and --id-from-hostname exclude each other\n");
            return 2;
        }
        int rc = id_from_hostname(&id, host, sizeof host);
        if (rc != 0) return rc;
    }
    /* From here on, --id-from-hostname is exactly --id N. */
    nh_error_list errs;
    nh_error_list_init(&errs, config);
    nh_host_config *cfg = NULL;
    int rc = 1;
    bool read_ok = nh_host_config_read(config, id, &cfg, &errs) == 0;
    if (cfg) {
        nh_log_set_level(log_level >= 0 ? (nh_log_level)log_level : (nh_log_level)cfg->log_level);
        nh_log_set_format(log_format >= 0
                              ? (nh_log_format)log_format
                              : (cfg->log_format == NH_LOGFMT_JSON ? NH_LOG_JSON : NH_LOG_TEXT));
    }
    char dir[4096];
    if (check) {
        rc = check_config(config, cfg, state_dir, dir, sizeof dir, &errs);
    } else if (!read_ok) {
        nh_error_list_print(&errs, NH_ERROR_LIST_SHOWN, stderr);
    } else if (state_dir_path(state_dir, dir, sizeof dir) == 0) {
        rc = nh_run_node(cfg, dir);
    }
    if (!read_ok && id_from_host)
        fprintf(stderr, "nodehost: (--id %u came from --id-from-hostname: host name '%s')\n", id,
                host);
    nh_error_list_free(&errs);
    nh_host_config_free(cfg);
    return rc;
}
