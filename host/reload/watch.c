/* nodehost program: watching plugin files (inotify on their directories, debounce, SHA-256).
 * See watch.h. */
#include "reload/watch.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "plugin/sha256.h"

/* Events that may mean new bytes under a watched name. IN_MODIFY restarts the quiet period while
 * a writer is still writing in place; IN_MOVED_FROM/IN_DELETE are checked too, but a file that
 * is gone is not a change (see check_due). */
#define FILE_EVENTS                                                                                \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB | IN_MODIFY)
/* Events on the watched directory itself: the watch no longer shows that name. */
#define SELF_EVENTS (IN_DELETE_SELF | IN_MOVE_SELF)

typedef struct wfile {
    char *path;                       /* as given */
    const char *base;                 /* last component, inside path */
    size_t dir;                       /* index in the watch's dirs */
    char hash[NH_SHA256_HEX_LEN + 1]; /* last content seen, "" when never seen */
    bool dirty;                       /* an event waits for its quiet period to end */
    int64_t due_ms;                   /* when dirty: when to hash */
} wfile;

typedef struct wdir {
    char *path;       /* the directory part of the files' paths ("." and "/" included) */
    int wd;           /* inotify watch descriptor, -1 while the directory is missing */
    int64_t retry_ms; /* when wd < 0: when to try again */
} wdir;

struct nh_plugin_watch {
    pthread_t thread;
    int ino;  /* inotify descriptor */
    int wake; /* eventfd: stop, or a new set */
    uint32_t debounce_ms;
    nh_watch_fn fn;
    void *arg;
    _Atomic uint64_t triggers;

    pthread_mutex_t mu; /* guards everything below */
    bool stop;
    wfile *files;
    size_t file_count;
    wdir *dirs;
    size_t dir_count;
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int oom(nh_error *err) {
    return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0, "plugin watch: out of memory");
}

static void free_files(wfile *files, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(files[i].path);
    free(files);
}

static void free_dirs(wdir *dirs, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(dirs[i].path);
    free(dirs);
}

static bool wd_in(const wdir *dirs, size_t n, int wd) {
    for (size_t i = 0; i < n; i++)
        if (dirs[i].wd == wd) return true;
    return false;
}

/* The directory part of path (newly allocated): "." without a slash, "/" for "/name". */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Adds the inotify watch of d (d->wd stays -1 while the directory is missing or not a
 * directory). Returns 0, or -1 with errno for other failures. */
static int add_dir_watch(int ino, wdir *d) {
    d->wd = inotify_add_watch(ino, d->path, FILE_EVENTS | SELF_EVENTS | IN_ONLYDIR);
    if (d->wd >= 0) return 0;
    if (errno == ENOENT || errno == ENOTDIR) {
        d->retry_ms = now_ms() + NH_WATCH_RETRY_MS;
        return 0;
    }
    return -1;
}

/* Builds the file and directory tables for paths, reusing the old tables' hashes, pending
 * events and watches (old_* may be empty). Hashes new files. On failure, watches this call added
 * are removed and nothing is allocated. */
static int build(int ino, const wfile *old_files, size_t old_file_count, const wdir *old_dirs,
                 size_t old_dir_count, const char *const *paths, size_t n, wfile **out_files,
                 size_t *out_file_count, wdir **out_dirs, size_t *out_dir_count, nh_error *err) {
    for (size_t i = 0; i < n; i++) {
        size_t len = paths[i] != NULL ? strlen(paths[i]) : 0;
        if (len == 0 || paths[i][len - 1] == '/')
            return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                                "plugin watch: path %zu is %s", i,
                                len == 0 ? "empty" : "a directory (ends with '/')");
    }
    wfile *files = n > 0 ? calloc(n, sizeof *files) : NULL;
    wdir *dirs = n > 0 ? calloc(n, sizeof *dirs) : NULL;
    size_t nf = 0, nd = 0;
    if (n > 0 && (files == NULL || dirs == NULL)) {
        free(files);
        free(dirs);
        return oom(err);
    }
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t j = 0; j < nf && !dup; j++)
            dup = strcmp(files[j].path, paths[i]) == 0;
        if (dup) continue;

        wfile *f = &files[nf];
        char *dpath = dir_of(paths[i]);
        f->path = strdup(paths[i]);
        if (f->path == NULL || dpath == NULL) {
            free(dpath);
            free(f->path);
            goto fail_oom;
        }
        nf++;
        const char *slash = strrchr(f->path, '/');
        f->base = slash != NULL ? slash + 1 : f->path;

        /* the directory: shared with an earlier file, kept from the old table, or new */
        size_t d = 0;
        while (d < nd && strcmp(dirs[d].path, dpath) != 0)
            d++;
        if (d == nd) {
            dirs[d].path = dpath;
            dirs[d].wd = -1;
            nd++;
            size_t o = 0;
            while (o < old_dir_count && strcmp(old_dirs[o].path, dpath) != 0)
                o++;
            if (o < old_dir_count) {
                dirs[d].wd = old_dirs[o].wd;
                dirs[d].retry_ms = old_dirs[o].retry_ms;
            } else if (add_dir_watch(ino, &dirs[d]) != 0) {
                int e = errno;
                if (e == ENOSPC || e == ENOMEM)
                    nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0,
                                 "plugin watch: cannot watch directory %s: %s (see "
                                 "fs.inotify.max_user_watches)",
                                 dpath, strerror(e));
                else
                    nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0,
                                 "plugin watch: cannot watch directory %s: %s", dpath, strerror(e));
                goto fail;
            }
        } else {
            free(dpath);
        }
        f->dir = d;

        /* the content: kept from the old table, or hashed now */
        size_t o = 0;
        while (o < old_file_count && strcmp(old_files[o].path, f->path) != 0)
            o++;
        if (o < old_file_count) {
            memcpy(f->hash, old_files[o].hash, sizeof f->hash);
            f->dirty = old_files[o].dirty;
            f->due_ms = old_files[o].due_ms;
        } else {
            nh_error ignored;
            if (nh_sha256_file(f->path, f->hash, &ignored) != 0) f->hash[0] = '\0';
        }
    }
    *out_files = files;
    *out_file_count = nf;
    *out_dirs = dirs;
    *out_dir_count = nd;
    return 0;

fail_oom:
    oom(err);
fail:
    for (size_t d = 0; d < nd; d++)
        if (dirs[d].wd >= 0 && !wd_in(old_dirs, old_dir_count, dirs[d].wd) &&
            !wd_in(dirs, d, dirs[d].wd))
            inotify_rm_watch(ino, dirs[d].wd);
    free_files(files, nf);
    free_dirs(dirs, nd);
    return -1;
}

/* ---- the thread --------------------------------------------------------------------------------
 */

static void mark_dir_dirty(nh_plugin_watch *w, size_t d, int64_t due) {
    for (size_t i = 0; i < w->file_count; i++)
        if (w->files[i].dir == d) {
            w->files[i].dirty = true;
            w->files[i].due_ms = due;
        }
}

/* Handles one event (w->mu held). */
static void on_event(nh_plugin_watch *w, const struct inotify_event *ev, int64_t now) {
    int64_t due = now + w->debounce_ms;
    if (ev->mask & IN_Q_OVERFLOW) { /* events were lost: check everything */
        for (size_t i = 0; i < w->file_count; i++) {
            w->files[i].dirty = true;
            w->files[i].due_ms = due;
        }
        return;
    }
    if (ev->mask & (IN_IGNORED | SELF_EVENTS)) { /* the directory went away or moved */
        bool removed = false;
        for (size_t d = 0; d < w->dir_count; d++) {
            if (w->dirs[d].wd != ev->wd) continue;
            if (!removed && !(ev->mask & IN_IGNORED)) inotify_rm_watch(w->ino, ev->wd);
            removed = true;
            w->dirs[d].wd = -1;
            w->dirs[d].retry_ms = now; /* perhaps already back */
            mark_dir_dirty(w, d, due);
        }
        return;
    }
    if (ev->len == 0) return;
    for (size_t i = 0; i < w->file_count; i++) {
        wfile *f = &w->files[i];
        if (w->dirs[f->dir].wd == ev->wd && strcmp(f->base, ev->name) == 0) {
            f->dirty = true;
            f->due_ms = due;
        }
    }
}

/* Reads every queued event (w->mu not held). */
static void drain_events(nh_plugin_watch *w) {
    _Alignas(struct inotify_event) char buf[8192];
    for (;;) {
        ssize_t r = read(w->ino, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return; /* EAGAIN: all read */
        int64_t now = now_ms();
        pthread_mutex_lock(&w->mu);
        for (char *p = buf; p < buf + r;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            on_event(w, ev, now);
            p += sizeof *ev + ev->len;
        }
        pthread_mutex_unlock(&w->mu);
    }
}

/* Retries missing directories, hashes files whose quiet period ended, and returns the poll
 * timeout until the next such moment (-1: none). Changed paths are appended to *changed
 * (w->mu held). */
static int check_due(nh_plugin_watch *w, char **changed, size_t *changed_count) {
    int64_t now = now_ms();
    int64_t next = INT64_MAX;
    for (size_t d = 0; d < w->dir_count; d++) {
        wdir *dir = &w->dirs[d];
        if (dir->wd >= 0) continue;
        if (dir->retry_ms <= now) {
            add_dir_watch(w->ino, dir); /* other errors: retried like a missing directory */
            if (dir->wd >= 0)
                mark_dir_dirty(w, d, now);
            else
                dir->retry_ms = now + NH_WATCH_RETRY_MS;
        }
        if (dir->wd < 0 && dir->retry_ms < next) next = dir->retry_ms;
    }
    for (size_t i = 0; i < w->file_count; i++) {
        wfile *f = &w->files[i];
        if (!f->dirty) continue;
        if (f->due_ms > now) {
            if (f->due_ms < next) next = f->due_ms;
            continue;
        }
        f->dirty = false;
        char hex[NH_SHA256_HEX_LEN + 1];
        nh_error ignored;
        /* A file that is gone (or unreadable) is not a change: the loaded one keeps serving. */
        if (nh_sha256_file(f->path, hex, &ignored) != 0 || strcmp(hex, f->hash) == 0) continue;
        memcpy(f->hash, hex, sizeof hex);
        char *copy = strdup(f->path);
        if (copy != NULL) changed[(*changed_count)++] = copy;
    }
    if (next == INT64_MAX) return -1;
    int64_t wait = next - now_ms();
    if (wait < 0) return 0;
    return wait > INT_MAX ? INT_MAX : (int)wait;
}

static void *watch_main(void *arg) {
    nh_plugin_watch *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        if (w->stop) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        char **changed = w->file_count > 0 ? calloc(w->file_count, sizeof *changed) : NULL;
        size_t changed_count = 0;
        int timeout = changed != NULL || w->file_count == 0 ? check_due(w, changed, &changed_count)
                                                            : 100; /* out of memory: later */
        pthread_mutex_unlock(&w->mu);

        for (size_t i = 0; i < changed_count; i++) {
            atomic_fetch_add(&w->triggers, 1);
            w->fn(w->arg, changed[i]);
            free(changed[i]);
        }
        free(changed);
        if (changed_count > 0) continue; /* fn took time: look again before sleeping */

        struct pollfd pfd[2] = {{.fd = w->ino, .events = POLLIN},
                                {.fd = w->wake, .events = POLLIN}};
        int r = poll(pfd, 2, timeout);
        if (r < 0) continue; /* EINTR */
        if (pfd[1].revents != 0) {
            uint64_t v;
            while (read(w->wake, &v, sizeof v) < 0 && errno == EINTR) {
            }
        }
        if (pfd[0].revents != 0) drain_events(w);
    }
    return NULL;
}

static void wake(nh_plugin_watch *w) {
    uint64_t one = 1;
    while (write(w->wake, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

/* ---- entry points -------------------------------------------------------------------------- */

int nh_plugin_watch_start(const char *const *paths, size_t n, uint32_t debounce_ms, nh_watch_fn fn,
                          void *arg, nh_plugin_watch **out, nh_error *err) {
    *out = NULL;
    if (fn == NULL || (paths == NULL && n > 0))
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "plugin watch: no callback or no paths");
    if (debounce_ms < NH_WATCH_DEBOUNCE_MIN_MS || debounce_ms > NH_WATCH_DEBOUNCE_MAX_MS)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "plugin watch: debounce must be between %d and %d ms, got %" PRIu32,
                            NH_WATCH_DEBOUNCE_MIN_MS, NH_WATCH_DEBOUNCE_MAX_MS, debounce_ms);
    nh_plugin_watch *w = calloc(1, sizeof *w);
    if (w == NULL) return oom(err);
    w->debounce_ms = debounce_ms;
    w->fn = fn;
    w->arg = arg;
    atomic_init(&w->triggers, 0);
    w->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->ino < 0) {
        int e = errno;
        free(w);
        return nh_error_set(err, e == EMFILE ? NH_RESOURCE_EXHAUSTED : NH_INTERNAL, NH_ERR_LOCAL, 0,
                            "plugin watch: inotify_init1: %s", strerror(e));
    }
    w->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake < 0) {
        int e = errno;
        close(w->ino);
        free(w);
        return nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0, "plugin watch: eventfd: %s",
                            strerror(e));
    }
    if (build(w->ino, NULL, 0, NULL, 0, paths, n, &w->files, &w->file_count, &w->dirs,
              &w->dir_count, err) != 0) {
        close(w->wake);
        close(w->ino);
        free(w);
        return -1;
    }
    pthread_mutex_init(&w->mu, NULL);

    /* The thread blocks every signal: they belong to the threads that wait for them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, watch_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_mutex_destroy(&w->mu);
        free_files(w->files, w->file_count);
        free_dirs(w->dirs, w->dir_count);
        close(w->wake);
        close(w->ino);
        free(w);
        return nh_error_set(err, NH_INTERNAL, NH_ERR_LOCAL, 0,
                            "plugin watch: cannot start the thread: %s", strerror(rc));
    }
    *out = w;
    return 0;
}

int nh_plugin_watch_set(nh_plugin_watch *w, const char *const *paths, size_t n, nh_error *err) {
    if (paths == NULL && n > 0)
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "plugin watch: no paths");
    pthread_mutex_lock(&w->mu);
    wfile *files;
    wdir *dirs;
    size_t nf, nd;
    if (build(w->ino, w->files, w->file_count, w->dirs, w->dir_count, paths, n, &files, &nf, &dirs,
              &nd, err) != 0) {
        pthread_mutex_unlock(&w->mu);
        return -1;
    }
    for (size_t d = 0; d < w->dir_count; d++) /* watches no longer needed */
        if (w->dirs[d].wd >= 0 && !wd_in(dirs, nd, w->dirs[d].wd) &&
            !wd_in(w->dirs, d, w->dirs[d].wd))
            inotify_rm_watch(w->ino, w->dirs[d].wd);
    free_files(w->files, w->file_count);
    free_dirs(w->dirs, w->dir_count);
    w->files = files;
    w->file_count = nf;
    w->dirs = dirs;
    w->dir_count = nd;
    pthread_mutex_unlock(&w->mu);
    wake(w); /* new deadlines and missing directories */
    return 0;
}

uint64_t nh_plugin_watch_triggers(nh_plugin_watch *w) {
    return atomic_load(&w->triggers);
}

void nh_plugin_watch_stop(nh_plugin_watch *w) {
    if (w == NULL) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_mutex_unlock(&w->mu);
    wake(w);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    free_files(w->files, w->file_count);
    free_dirs(w->dirs, w->dir_count);
    close(w->wake);
    close(w->ino); /* removes every watch */
    free(w);
}
