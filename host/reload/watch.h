/* nodehost program: watching plugin files and reporting changes of their content.
 *
 * A trigger of hot reload (besides SIGHUP and the admin service). The watch follows files by
 * name, through inotify on their directories: linkers and `mv` replace the inode, so a watch on
 * the file itself would miss rebuilds. An event on a watched name (created, written and closed,
 * renamed onto, deleted, attributes changed, modified) starts a quiet period; once debounce_ms
 * pass without another event on that name, the file is hashed (SHA-256) and the callback runs
 * only when the hash differs from the last one seen. So touching a file, or a rebuild producing
 * the same bytes, triggers nothing; a file written in several steps triggers once its bytes
 * settle; a deleted file triggers nothing (the loaded generation keeps serving) and triggers
 * when it comes back with other bytes than the last seen. A file missing at start has no hash:
 * its creation is a change.
 *
 * A directory that does not exist (or is removed or renamed while watched) is looked for again
 * every NH_WATCH_RETRY_MS; when it appears, its watched files are checked as after an event.
 * When the kernel's event queue overflows, every file is checked.
 *
 * One thread per watch; it blocks all signals. All descriptors are close-on-exec.
 */
#ifndef NH_HOST_RELOAD_WATCH_H
#define NH_HOST_RELOAD_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include <nodehost/status.h>

/** How often a missing watched directory is looked for, in milliseconds. */
#define NH_WATCH_RETRY_MS 500

/** Smallest and largest debounce accepted by nh_plugin_watch_start(), in milliseconds. */
#define NH_WATCH_DEBOUNCE_MIN_MS 1
#define NH_WATCH_DEBOUNCE_MAX_MS 600000

typedef struct nh_plugin_watch nh_plugin_watch;

/** Called on the watch thread when the content of a watched file changed (after debounce).
 * changed_path is the path as given (valid during the call only). May call
 * nh_plugin_watch_set() and nh_plugin_watch_triggers(), never nh_plugin_watch_stop(). Should
 * not block for long (no other change is reported meanwhile). */
typedef void (*nh_watch_fn)(void *arg, const char *changed_path);

/**
 * Starts watching files (their directories, with inotify: linkers and `mv` replace the inode,
 * so watching the file itself misses rebuilds). After an event on one of the files, waits until
 * debounce_ms pass without further events, then hashes the file (SHA-256); fn runs only when the
 * hash differs from the last one seen (initial hashes are taken at start, on the calling
 * thread), so touching a file, or a rebuild producing identical bytes, triggers nothing, and a
 * half-written file that is then completed triggers once the bytes settle. Missing files are
 * fine (created later => change).
 *
 * paths: n non-empty paths not ending in '/' (relative ones are relative to the current
 * directory at the time of the call); duplicates count once. n may be 0. Files in one directory
 * share one inotify watch. debounce_ms: NH_WATCH_DEBOUNCE_MIN_MS..NH_WATCH_DEBOUNCE_MAX_MS.
 *
 * Returns 0 with *out set, or -1 with err (NH_ERR_LOCAL; NH_INVALID_ARGUMENT for bad arguments,
 * NH_RESOURCE_EXHAUSTED when inotify's limits are reached, NH_INTERNAL otherwise) and *out NULL.
 */
int nh_plugin_watch_start(const char *const *paths, size_t n, uint32_t debounce_ms, nh_watch_fn fn,
                          void *arg, nh_plugin_watch **out, nh_error *err);

/**
 * Replaces the watched set (after a reload changed the plugin list); hashes (and pending
 * events) of files kept stay, files added are hashed now on the calling thread. Any thread,
 * including fn; not concurrently with nh_plugin_watch_stop(). Same rules for paths as
 * nh_plugin_watch_start(). Returns 0, or -1 with err, the watched set then being unchanged.
 */
int nh_plugin_watch_set(nh_plugin_watch *w, const char *const *paths, size_t n, nh_error *err);

/** How many times fn has been called so far (any thread). */
uint64_t nh_plugin_watch_triggers(nh_plugin_watch *w);

/** Stops the thread and frees, closing every descriptor. Accepts NULL. Never called from fn. */
void nh_plugin_watch_stop(nh_plugin_watch *w);

#endif
