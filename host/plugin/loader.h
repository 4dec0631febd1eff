/* nodehost program: loading plugin shared objects.
 *
 * A plugin is never dlopen'ed at its configured path. The loader copies the file into a private
 * state directory under a unique name (<name>-<sha256:16>-<pid>-<counter>.so) and opens the copy
 * with RTLD_NOW | RTLD_LOCAL, so that loading a rebuilt file while the old generation is still
 * mapped gives the new code (glibc returns the already-loaded object for a path or inode it has
 * mapped), and so that rewriting the configured file cannot corrupt a mapped image. The copy
 * stays on disk while loaded (debuggers and sanitizer symbolizers read it) and is removed at
 * unload; copies left by processes that died are removed by nh_plugin_state_dir_prepare().
 *
 * The loader calls the entry function and checks every field of the descriptor; it calls no
 * hook (check_config, init, ... are the caller's business). Note that dlopen itself runs the
 * plugin's ELF constructors, if it has any.
 *
 * Thread safety: the functions may be called from any thread; they share no state except an
 * atomic counter.
 */
#ifndef NH_HOST_PLUGIN_LOADER_H
#define NH_HOST_PLUGIN_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include <nodehost/plugin.h>
#include <nodehost/status.h>

/** Most methods one plugin may declare. */
#define NH_PLUGIN_MAX_METHODS 4096

/** Longest plugin name (the descriptor's name, [a-z0-9_-]). */
#define NH_PLUGIN_NAME_MAX 63

/** One loaded plugin file. Plain value owned by the caller; release with nh_plugin_unload(). */
typedef struct nh_loaded_plugin {
    char *name;                       /**< the name given to nh_plugin_load (configured name) */
    char *source_path;                /**< the configured file */
    char *loaded_path;                /**< the unique copy actually dlopen'ed */
    void *handle;                     /**< the dlopen handle */
    const nh_plugin_descriptor *desc; /**< checked descriptor (desc->name may differ from name) */
    uint64_t file_size;               /**< size of the file in bytes */
    char sha256[65];                  /**< SHA-256 of the file's bytes, lower-case hex
                                           (compare with `sha256sum <file>`) */
} nh_loaded_plugin;

/**
 * Loads source_path as plugin `name` (the configured name, used in messages and in the copy's
 * file name): copies it into state_dir (written to a temporary name, mode 0500, then renamed),
 * dlopens the copy, calls nh_plugin_entry and checks the descriptor with
 * nh_plugin_check_descriptor(). state_dir must exist (see nh_plugin_state_dir_prepare()).
 *
 * Returns 0 with *out filled, or -1 with err (NH_ERR_LOCAL; code NH_NOT_FOUND for a missing file,
 * NH_PERMISSION_DENIED for an unreadable one, NH_INVALID_ARGUMENT for a bad plugin, NH_INTERNAL
 * for state-directory failures). On failure *out is zeroed and nothing stays open or on disk
 * (except, in sanitizer builds, the handle of an object that failed its checks: see
 * nh_plugin_unload()). Messages start with `plugin '<name>' (<source_path>): `, e.g.
 * `plugin 'x' (/p/x.so): missing entry symbol 'nh_plugin_entry' (is NH_PLUGIN_DEFINE used?)`.
 */
int nh_plugin_load(const char *name, const char *source_path, const char *state_dir,
                   nh_loaded_plugin *out, nh_error *err);

/**
 * Checks every field of a descriptor (d may be NULL: "entry returned NULL"). name and path are
 * used in the message only. Returns 0, or -1 with err (NH_INVALID_ARGUMENT) naming the field.
 */
int nh_plugin_check_descriptor(const char *name, const char *path, const nh_plugin_descriptor *d,
                               nh_error *err);

/**
 * Unloads: dlclose (skipped in sanitizer builds, where NH_SANITIZE_BUILD is defined: the handle
 * is leaked on purpose, as the sanitizers do not support dlclose well), removes the copy, frees
 * the strings and zeroes *p. The caller must have dropped every pointer into the plugin (fini
 * called, no call in flight). Accepts NULL and a zeroed value.
 */
void nh_plugin_unload(nh_loaded_plugin *p);

/** Called by nh_plugin_each_conflict() for a method declared by two plugins: first and second
 * are indexes into its array, first < second, first the plugin declaring it first there. Returns
 * 0 to go on, anything else to stop. */
typedef int (*nh_plugin_conflict_fn)(void *arg, const char *method, size_t first, size_t second);

/**
 * Finds every method declared by more than one of plugins (entries may be NULL): calls fn once
 * per later plugin declaring a method an earlier one declares (first: the earliest), in the
 * order of the methods' names. Returns the number of calls made (0: no conflict), or -1 with
 * err (NH_RESOURCE_EXHAUSTED) when out of memory.
 */
long nh_plugin_each_conflict(const nh_loaded_plugin *const *plugins, size_t n,
                             nh_plugin_conflict_fn fn, void *arg, nh_error *err);

/**
 * Checks that no method is declared by two plugins. Takes pointers so that a reload can check a
 * new generation against the others (pass the new one instead of the old). Returns 0, or -1 with
 * err (NH_ALREADY_EXISTS): `method 'pkg.S.M' is declared by plugin 'a' (/p/a.so) and by plugin
 * 'b' (/p/b.so)`.
 */
int nh_plugin_check_conflicts(const nh_loaded_plugin *const *plugins, size_t n, nh_error *err);

/**
 * The default state directory: $XDG_RUNTIME_DIR/nodehost when XDG_RUNTIME_DIR is set to an
 * absolute path, else /tmp/nodehost-<uid>. Returns 0, -1 when buf is too small.
 */
int nh_plugin_state_dir_default(char *buf, size_t size);

/**
 * Makes dir ready: creates it (mode 0700) if missing (not its parents), checks that it is a
 * directory (not a symbolic link) owned by this user, writable by nobody else and not on a
 * noexec file system, then removes copies and temporary files left there by processes that no
 * longer run. Returns 0, or -1 with err naming the directory and the problem.
 */
int nh_plugin_state_dir_prepare(const char *dir, nh_error *err);

#endif
