/* Helpers shared by the integration tests: ports, child processes, paths. */
#ifndef NH_TEST_UTIL_H
#define NH_TEST_UTIL_H

#include <stdbool.h>
#include <sys/types.h>

/** A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed). */
int nh_test_free_port(void);

/** True once something accepts TCP connections on 127.0.0.1:port, false after timeout_ms. */
bool nh_test_wait_port(int port, int timeout_ms);

/** The build directory (NH_BINARY_DIR, set by ctest), or "." when unset. */
const char *nh_test_binary_dir(void);

/** Starts argv[0] (a path) with argv as a child process; returns its pid or -1. */
pid_t nh_test_spawn(char *const argv[]);

/** Sends sig to the child and waits for it; returns its wait status, or -1. */
int nh_test_kill_wait(pid_t pid, int sig);

/** Sleeps for ms milliseconds. */
void nh_test_sleep_ms(int ms);

struct nh_config;

/** True once every node of cfg is connected, false after ms milliseconds. */
bool nh_test_all_connected(struct nh_config *cfg, int ms);

/** An nh_config_cond_fn for nh_server_wait_config(): the size is (size_t)(uintptr_t)user. */
bool nh_test_size_is(const struct nh_config *cfg, void *user);

#endif
