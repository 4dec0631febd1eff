/* The plugin watch (host/reload/watch.c): inotify on the files' directories, debounce, SHA-256.
 *
 * No test asserts on timing. A callback that must come is waited for with a generous timeout; a
 * callback that must not come is checked against a sentinel: the sentinel file, always the last
 * path of the watched list, is changed after the file under test, so its quiet period ends
 * later and, in the same round, it is reported after the others; once its callback has run,
 * the file under test has been checked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nh_test_util.h"
#include "plugin/sha256.h"
#include "reload/watch.h"

#define DEBOUNCE_MS 100
#define WAIT_MS     20000 /* generous: sanitizer builds and loaded machines are slow */
#define MAX_FILES   8

/* ---- what the callback saw ------------------------------------------------------------------ */

typedef struct seen {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    char paths[MAX_FILES][PATH_MAX];
    int counts[MAX_FILES];
    int total;
    bool unknown; /* a path that is not registered */
} seen;

static seen g_seen = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void seen_reset(void) {
    pthread_mutex_lock(&g_seen.mu);
    memset(g_seen.paths, 0, sizeof g_seen.paths);
    memset(g_seen.counts, 0, sizeof g_seen.counts);
    g_seen.total = 0;
    g_seen.unknown = false;
    pthread_mutex_unlock(&g_seen.mu);
}

static void on_change(void *arg, const char *path) {
    pthread_mutex_lock(&g_seen.mu);
    if (arg != &g_seen) g_seen.unknown = true; /* no cmocka assertion off the test's thread */
    int i = 0;
    while (i < MAX_FILES && strcmp(g_seen.paths[i], path) != 0)
        i++;
    if (i < MAX_FILES)
        g_seen.counts[i]++;
    else
        g_seen.unknown = true;
    g_seen.total++;
    pthread_cond_broadcast(&g_seen.cond);
    pthread_mutex_unlock(&g_seen.mu);
}

static int count_of(const char *path) {
    pthread_mutex_lock(&g_seen.mu);
    int n = -1;
    for (int i = 0; i < MAX_FILES; i++)
        if (strcmp(g_seen.paths[i], path) == 0) n = g_seen.counts[i];
    pthread_mutex_unlock(&g_seen.mu);
    return n;
}

/* Waits until path has been reported at least want times; returns the count then. */
static int wait_count(const char *path, int want) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&g_seen.mu);
    int slot = -1;
    for (int i = 0; i < MAX_FILES; i++)
        if (strcmp(g_seen.paths[i], path) == 0) slot = i;
    assert_true(slot >= 0);
    while (g_seen.counts[slot] < want) {
        if (pthread_cond_timedwait(&g_seen.cond, &g_seen.mu, &deadline) == ETIMEDOUT) break;
    }
    int n = g_seen.counts[slot];
    pthread_mutex_unlock(&g_seen.mu);
    if (n < want)
        print_error("%s: %d callbacks after %d ms, expected %d\n", path, n, WAIT_MS, want);
    return n;
}

/* ---- files ------------------------------------------------------------------------------------
 */

typedef struct fixture {
    char dir[PATH_MAX];
    char a[PATH_MAX], b[PATH_MAX], sentinel[PATH_MAX];
    int sentinel_gen;
} fixture;

static void path_in(char *out, const char *dir, const char *name) {
    int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
    assert_true(n > 0 && n < PATH_MAX);
}

/* Registers path with the callback's table. */
static void track(const char *path) {
    pthread_mutex_lock(&g_seen.mu);
    int i = 0;
    while (i < MAX_FILES && g_seen.paths[i][0] != '\0' && strcmp(g_seen.paths[i], path) != 0)
        i++;
    assert_true(i < MAX_FILES);
    snprintf(g_seen.paths[i], PATH_MAX, "%s", path);
    pthread_mutex_unlock(&g_seen.mu);
}

static void write_file(const char *path, const char *content) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    assert_int_equal(close(fd), 0);
}

/* Writes content to a temporary name in the same directory, then renames it over path (what a
 * linker or `mv` does: a new inode under the old name). */
static void replace_file(const char *path, const char *content) {
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp~", path);
    write_file(tmp, content);
    assert_int_equal(rename(tmp, path), 0);
}

/* Changes the sentinel and waits for its callback: every earlier event has been checked. */
static void settle(fixture *f) {
    char content[64];
    f->sentinel_gen++;
    snprintf(content, sizeof content, "sentinel %d", f->sentinel_gen);
    int before = count_of(f->sentinel);
    replace_file(f->sentinel, content);
    assert_int_equal(wait_count(f->sentinel, before + 1), before + 1);
}

static int fixture_setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/nh-watch-XXXXXX",
             tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    path_in(f->a, f->dir, "a.so");
    path_in(f->b, f->dir, "b.so");
    path_in(f->sentinel, f->dir, "sentinel");
    write_file(f->a, "a version 1");
    write_file(f->b, "b version 1");
    write_file(f->sentinel, "sentinel 0");
    seen_reset();
    track(f->a);
    track(f->b);
    track(f->sentinel);
    *state = f;
    return 0;
}

/* Removes the temporary directory tree (two levels are enough here). */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char p[PATH_MAX];
        path_in(p, dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int fixture_teardown(void **state) {
    fixture *f = *state;
    remove_tree(f->dir);
    free(f);
    return 0;
}

static nh_plugin_watch *start(const char *const *paths, size_t n) {
    nh_plugin_watch *w = NULL;
    nh_error err;
    nh_error_clear(&err);
    if (nh_plugin_watch_start(paths, n, DEBOUNCE_MS, on_change, &g_seen, &w, &err) != 0)
        fail_msg("nh_plugin_watch_start: %s", err.message);
    assert_non_null(w);
    return w;
}

/* ---- descriptors ------------------------------------------------------------------------------
 */

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* The number of inotify watches held by this process (lines "inotify wd:" in the fdinfo of
 * every inotify descriptor). */
static int count_inotify_watches(void) {
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int watches = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char link[PATH_MAX], target[256];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n < 0) continue;
        target[n] = '\0';
        if (strcmp(target, "anon_inode:inotify") != 0) continue;
        snprintf(link, sizeof link, "/proc/self/fdinfo/%s", e->d_name);
        FILE *fi = fopen(link, "r");
        if (fi == NULL) continue;
        char line[512];
        while (fgets(line, sizeof line, fi) != NULL)
            if (strncmp(line, "inotify wd:", 11) == 0) watches++;
        fclose(fi);
    }
    closedir(d);
    return watches;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_sha256(void **state) {
    fixture *f = *state;
    static const struct {
        const char *in, *hex;
    } vectors[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        char hex[NH_SHA256_HEX_LEN + 1], fhex[NH_SHA256_HEX_LEN + 1];
        nh_sha256 s;
        nh_sha256_init(&s);
        /* byte by byte, to cross block boundaries in every way */
        for (const char *p = vectors[i].in; *p != '\0'; p++)
            nh_sha256_update(&s, p, 1);
        nh_sha256_final_hex(&s, hex);
        assert_string_equal(hex, vectors[i].hex);

        char path[PATH_MAX];
        path_in(path, f->dir, "vector");
        write_file(path, vectors[i].in);
        nh_error err;
        assert_int_equal(nh_sha256_file(path, fhex, &err), 0);
        assert_string_equal(fhex, vectors[i].hex);
    }
    /* a million 'a' (several read buffers) */
    char path[PATH_MAX];
    path_in(path, f->dir, "million");
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    for (int i = 0; i < 1000000; i++)
        fputc('a', out);
    assert_int_equal(fclose(out), 0);
    char hex[NH_SHA256_HEX_LEN + 1];
    nh_error err;
    assert_int_equal(nh_sha256_file(path, hex, &err), 0);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    path_in(path, f->dir, "missing");
    assert_int_equal(nh_sha256_file(path, hex, &err), -1);
    assert_int_equal(err.code, NH_NOT_FOUND);
    assert_string_equal(hex, "");
    assert_non_null(strstr(err.message, path));
    assert_int_equal(nh_sha256_file(f->dir, hex, &err), -1);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
}

static void test_bad_arguments(void **state) {
    fixture *f = *state;
    nh_plugin_watch *w = (nh_plugin_watch *)1;
    nh_error err;
    const char *const ok[] = {f->a};
    assert_int_equal(nh_plugin_watch_start(ok, 1, 0, on_change, &g_seen, &w, &err), -1);
    assert_null(w);
    assert_int_equal(err.code, NH_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "debounce"));
    assert_int_equal(nh_plugin_watch_start(ok, 1, 100, NULL, &g_seen, &w, &err), -1);
    const char *const empty[] = {""};
    assert_int_equal(nh_plugin_watch_start(empty, 1, 100, on_change, &g_seen, &w, &err), -1);
    assert_non_null(strstr(err.message, "empty"));
    char slash[PATH_MAX + 2];
    snprintf(slash, sizeof slash, "%s/", f->dir);
    const char *const dir[] = {slash};
    assert_int_equal(nh_plugin_watch_start(dir, 1, 100, on_change, &g_seen, &w, &err), -1);
    assert_null(w);

    /* nothing to watch is fine; so is stopping NULL */
    w = start(NULL, 0);
    assert_int_equal(nh_plugin_watch_set(w, dir, 1, &err), -1); /* the set stays empty */
    nh_plugin_watch_stop(w);
    nh_plugin_watch_stop(NULL);
}

/* A file replaced with new bytes: exactly one callback; touching: none; the same bytes: none. */
static void test_replace_touch_same_bytes(void **state) {
    fixture *f = *state;
    const char *const paths[] = {f->a, f->b, f->sentinel};
    nh_plugin_watch *w = start(paths, 3);

    replace_file(f->a, "a version 2");
    assert_int_equal(wait_count(f->a, 1), 1);
    settle(f);
    assert_int_equal(count_of(f->a), 1);
    assert_int_equal(count_of(f->b), 0);

    /* touch: attributes, and an open for writing that writes nothing */
    assert_int_equal(utimensat(AT_FDCWD, f->a, NULL, 0), 0);
    int fd = open(f->b, O_WRONLY | O_APPEND | O_CLOEXEC);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(chmod(f->b, 0600), 0);
    settle(f);
    assert_int_equal(count_of(f->a), 1);
    assert_int_equal(count_of(f->b), 0);

    /* a rebuild producing identical bytes, by rename and in place */
    replace_file(f->a, "a version 2");
    write_file(f->b, "b version 1");
    settle(f);
    assert_int_equal(count_of(f->a), 1);
    assert_int_equal(count_of(f->b), 0);

    /* back to an earlier content is a change */
    replace_file(f->a, "a version 1");
    assert_int_equal(wait_count(f->a, 2), 2);
    settle(f);
    assert_int_equal(count_of(f->a), 2);

    /* other files in the directory do not matter */
    char other[PATH_MAX];
    path_in(other, f->dir, "c.so");
    replace_file(other, "c");
    settle(f);
    assert_int_equal(count_of(f->a) + count_of(f->b), 2);

    pthread_mutex_lock(&g_seen.mu);
    assert_false(g_seen.unknown);
    int total = g_seen.total;
    pthread_mutex_unlock(&g_seen.mu);
    assert_int_equal(nh_plugin_watch_triggers(w), (uint64_t)total);
    nh_plugin_watch_stop(w);
}

/* 30 rewrites within the quiet period: one callback. */
static void test_rapid_rewrites(void **state) {
    fixture *f = *state;
    const char *const paths[] = {f->a, f->sentinel};
    nh_plugin_watch *w = start(paths, 2);
    for (int i = 0; i < 30; i++) {
        char content[64];
        snprintf(content, sizeof content, "a rewrite %d", i);
        if (i % 2 == 0)
            replace_file(f->a, content);
        else
            write_file(f->a, content);
    }
    assert_int_equal(wait_count(f->a, 1), 1);
    settle(f);
    assert_int_equal(count_of(f->a), 1);
    nh_plugin_watch_stop(w);
}

/* A file written in place in two steps, paused shorter than the quiet period: one callback. */
static void test_half_written(void **state) {
    fixture *f = *state;
    const char *const paths[] = {f->a, f->sentinel};
    nh_plugin_watch *w = start(paths, 2);
    int fd = open(f->a, O_WRONLY | O_TRUNC | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "first half, ", 12), 12);
    nh_test_sleep_ms(DEBOUNCE_MS / 4);
    assert_int_equal(write(fd, "second half", 11), 11);
    close(fd);
    assert_int_equal(wait_count(f->a, 1), 1);
    settle(f);
    assert_int_equal(count_of(f->a), 1);
    nh_plugin_watch_stop(w);
}

/* Deleted: nothing; recreated with other bytes: one; recreated with the same bytes: none. */
static void test_delete_recreate(void **state) {
    fixture *f = *state;
    const char *const paths[] = {f->a, f->sentinel};
    nh_plugin_watch *w = start(paths, 2);

    assert_int_equal(unlink(f->a), 0);
    settle(f);
    assert_int_equal(count_of(f->a), 0);
    replace_file(f->a, "a version 3");
    assert_int_equal(wait_count(f->a, 1), 1);
    settle(f);
    assert_int_equal(count_of(f->a), 1);

    assert_int_equal(unlink(f->a), 0);
    settle(f);
    write_file(f->a, "a version 3");
    settle(f);
    assert_int_equal(count_of(f->a), 1);

    /* renamed away and back */
    char away[PATH_MAX];
    path_in(away, f->dir, "away");
    assert_int_equal(rename(f->a, away), 0);
    settle(f);
    assert_int_equal(rename(away, f->a), 0);
    settle(f);
    assert_int_equal(count_of(f->a), 1);
    nh_plugin_watch_stop(w);
}

/* Files and directories missing at start: their creation is a change. */
static void test_missing_at_start(void **state) {
    fixture *f = *state;
    char missing[PATH_MAX], subdir[PATH_MAX], deep[PATH_MAX];
    path_in(missing, f->dir, "later.so");
    path_in(subdir, f->dir, "sub");
    path_in(deep, subdir, "deep.so");
    track(missing);
    track(deep);
    const char *const paths[] = {missing, deep, f->sentinel};
    nh_plugin_watch *w = start(paths, 3);
    replace_file(missing, "later");
    assert_int_equal(wait_count(missing, 1), 1);

    assert_int_equal(mkdir(subdir, 0700), 0);
    write_file(deep, "deep");
    assert_int_equal(wait_count(deep, 1), 1);
    replace_file(deep, "deeper");
    assert_int_equal(wait_count(deep, 2), 2);
    settle(f);
    assert_int_equal(count_of(missing), 1);
    assert_int_equal(count_of(deep), 2);
    nh_plugin_watch_stop(w);
}

/* One watch per directory; the set replaced; descriptors all closed at stop. */
static void test_set_and_descriptors(void **state) {
    fixture *f = *state;
    int fds_before = count_fds();
    int watches_before = count_inotify_watches();

    char subdir[PATH_MAX], c[PATH_MAX], rel_a[PATH_MAX + 8];
    path_in(subdir, f->dir, "sub");
    path_in(c, subdir, "c.so");
    assert_int_equal(mkdir(subdir, 0700), 0);
    write_file(c, "c version 1");
    track(c);
    snprintf(rel_a, sizeof rel_a, "%s/./a.so", f->dir); /* another name of a's directory */

    /* a, b and the sentinel share one directory: one watch; duplicates count once */
    const char *const first[] = {f->a, f->b, f->a, f->sentinel};
    nh_plugin_watch *w = start(first, 4);
    assert_int_equal(count_inotify_watches(), watches_before + 1);
    assert_int_equal(count_fds(), fds_before + 2); /* inotify + eventfd */

    /* a change pending at the time of the set survives it (a is kept) */
    replace_file(f->a, "a version 2");
    const char *const second[] = {f->a, c, f->sentinel};
    nh_error err;
    assert_int_equal(nh_plugin_watch_set(w, second, 3, &err), 0);
    assert_int_equal(count_inotify_watches(), watches_before + 2);
    assert_int_equal(wait_count(f->a, 1), 1);

    /* b is no longer watched, c is */
    replace_file(f->b, "b version 2");
    replace_file(c, "c version 2");
    assert_int_equal(wait_count(c, 1), 1);
    settle(f);
    assert_int_equal(count_of(f->b), 0);
    assert_int_equal(count_of(f->a), 1);

    /* a kept file keeps its hash: its unchanged bytes are not a change after a set */
    const char *const third[] = {c, f->a, f->sentinel};
    assert_int_equal(nh_plugin_watch_set(w, third, 3, &err), 0);
    assert_int_equal(utimensat(AT_FDCWD, f->a, NULL, 0), 0);
    assert_int_equal(utimensat(AT_FDCWD, c, NULL, 0), 0);
    settle(f);
    assert_int_equal(count_of(f->a), 1);
    assert_int_equal(count_of(c), 1);

    /* only the subdirectory (sentinel moved out of the way: it is in the first directory) */
    const char *const fourth[] = {c};
    assert_int_equal(nh_plugin_watch_set(w, fourth, 1, &err), 0);
    assert_int_equal(count_inotify_watches(), watches_before + 1);
    replace_file(c, "c version 3");
    assert_int_equal(wait_count(c, 2), 2);

    /* two names of one directory: one kernel watch, and dropping one name keeps the other */
    const char *const fifth[] = {f->sentinel, rel_a};
    track(rel_a);
    assert_int_equal(nh_plugin_watch_set(w, fifth, 2, &err), 0);
    const char *const sixth[] = {rel_a};
    assert_int_equal(nh_plugin_watch_set(w, sixth, 1, &err), 0);
    assert_int_equal(count_inotify_watches(), watches_before + 1);
    replace_file(f->a, "a version 4");
    assert_int_equal(wait_count(rel_a, 1), 1);

    /* empty set: no watch */
    assert_int_equal(nh_plugin_watch_set(w, NULL, 0, &err), 0);
    assert_int_equal(count_inotify_watches(), watches_before);

    nh_plugin_watch_stop(w);
    assert_int_equal(count_fds(), fds_before);
    assert_int_equal(count_inotify_watches(), watches_before);
    pthread_mutex_lock(&g_seen.mu);
    assert_false(g_seen.unknown);
    pthread_mutex_unlock(&g_seen.mu);
}

/* The descriptors are close-on-exec. */
static void test_cloexec(void **state) {
    fixture *f = *state;
    const char *const paths[] = {f->a};
    int before[256], nbefore = 0;
    for (int fd = 0; fd < 256; fd++)
        if (fcntl(fd, F_GETFD) >= 0) before[nbefore++] = fd;
    nh_plugin_watch *w = start(paths, 1);
    int added = 0;
    for (int fd = 0; fd < 256; fd++) {
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0) continue;
        bool old = false;
        for (int i = 0; i < nbefore; i++)
            old = old || before[i] == fd;
        if (old) continue;
        added++;
        assert_true(flags & FD_CLOEXEC);
    }
    assert_int_equal(added, 2);
    nh_plugin_watch_stop(w);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_sha256),           T(test_bad_arguments),       T(test_replace_touch_same_bytes),
        T(test_rapid_rewrites),   T(test_half_written),        T(test_delete_recreate),
        T(test_missing_at_start), T(test_set_and_descriptors), T(test_cloexec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
