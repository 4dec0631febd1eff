#include "nh_test_util.h"

#include <nodehost/nodehost.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int bind_loopback(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int nh_test_free_port(void) {
    int fd = bind_loopback(0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    socklen_t n = sizeof a;
    int port = -1;
    if (getsockname(fd, (struct sockaddr *)&a, &n) == 0) port = ntohs(a.sin_port);
    close(fd);
    return port;
}

bool nh_test_wait_port(int port, int timeout_ms) {
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return false;
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
        close(fd);
        if (rc == 0) return true;
        nh_test_sleep_ms(10);
    }
    return false;
}

const char *nh_test_binary_dir(void) {
    const char *d = getenv("NH_BINARY_DIR");
    return d && *d ? d : ".";
}

/* Children still running when the test program exits (a failed assertion skips the test's own
 * cleanup) are killed, so no server outlives its test. */
static pid_t g_children[64];
static int g_nchildren;

static void kill_children(void) {
    for (int i = 0; i < g_nchildren; i++) {
        if (g_children[i] > 0) {
            kill(g_children[i], SIGKILL);
            waitpid(g_children[i], NULL, 0);
        }
    }
    g_nchildren = 0;
}

pid_t nh_test_spawn(char *const argv[]) {
    static bool registered;
    if (!registered) {
        atexit(kill_children);
        registered = true;
    }
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    if (pid > 0 && g_nchildren < 64) g_children[g_nchildren++] = pid;
    return pid;
}

int nh_test_kill_wait(pid_t pid, int sig) {
    if (pid <= 0) return -1;
    for (int i = 0; i < g_nchildren; i++)
        if (g_children[i] == pid) g_children[i] = 0;
    kill(pid, sig);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return st;
}

void nh_test_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

bool nh_test_all_connected(nh_config *cfg, int ms) {
    for (int waited = 0; waited <= ms; waited += 10) {
        bool ok = true;
        for (size_t i = 0; i < nh_config_size(cfg); i++)
            ok = ok && nh_node_connected(nh_config_node(cfg, i));
        if (ok) return true;
        nh_test_sleep_ms(10);
    }
    return false;
}

bool nh_test_size_is(const nh_config *cfg, void *user) {
    return nh_config_size(cfg) == (size_t)(uintptr_t)user;
}
