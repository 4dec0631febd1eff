/* nodehost program: loading plugin shared objects from unique copies, and checking descriptors.
 * See loader.h for the why. */
#include "plugin/loader.h"

#include "plugin/file_error.h"
#include "plugin/sha256.h"

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Longest method name accepted ("pkg.Service.Method"). */
#define METHOD_NAME_MAX 1023

/* ---- messages -------------------------------------------------------------------------- */

/* A plugin-supplied string made safe to print: at most 64 characters, non-printable bytes as
 * '?', "..." when cut. */
static const char *show(const char *s, char out[72]) {
    if (s == NULL) return "(null)";
    size_t i = 0;
    for (; i < 64 && s[i] != '\0'; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

/* Sets err to "plugin '<name>' (<path>): <fmt...>". Returns -1. */
__attribute__((format(printf, 5, 6))) static int fail(nh_error *err, nh_code code, const char *name,
                                                      const char *path, const char *fmt, ...) {
    char what[NH_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return nh_error_set(err, code, NH_ERR_LOCAL, 0, "plugin '%s' (%s): %s", name, path, what);
}

/* ---- descriptor checks ----------------------------------------------------------------- */

static bool valid_plugin_name(const char *s) {
    size_t n = strnlen(s, NH_PLUGIN_NAME_MAX + 1);
    if (n == 0 || n > NH_PLUGIN_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* "pkg.Service.Method": printable ASCII without spaces, at least two dots, no empty part. */
static bool valid_method_name(const char *s) {
    size_t n = strnlen(s, METHOD_NAME_MAX + 1);
    if (n == 0 || n > METHOD_NAME_MAX) return false;
    int dots = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c <= 0x20 || c >= 0x7f) return false;
        if (c == '.') {
            if (i == 0 || i + 1 == n || s[i + 1] == '.') return false;
            dots++;
        }
    }
    return dots >= 2;
}

static const char *call_type_name(nh_call_type t) {
    switch (t) {
        case NH_CALL_RPC:
            return "RPC";
        case NH_CALL_UNICAST:
            return "UNICAST";
        case NH_CALL_MULTICAST:
            return "MULTICAST";
        case NH_CALL_QUORUMCALL:
            return "QUORUMCALL";
        case NH_CALL_CORRECTABLE:
            return "CORRECTABLE";
    }
    return "?";
}

static int check_message_desc(const char *name, const char *path, size_t i, const char *mname,
                              const char *which, const ProtobufCMessageDescriptor *md,
                              nh_error *err) {
    if (md->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "method %zu '%s': %s descriptor magic is 0x%08x, expected 0x%08x (not a "
                    "protobuf-c message descriptor)",
                    i, mname, which, md->magic, (unsigned)PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
    return 0;
}

static int check_method(const char *name, const char *path, size_t i, const nh_plugin_method *m,
                        nh_error *err) {
    char buf[72];
    if (m->name == NULL)
        return fail(err, NH_INVALID_ARGUMENT, name, path, "method %zu: name is NULL", i);
    if (strnlen(m->name, METHOD_NAME_MAX + 1) > METHOD_NAME_MAX)
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "method %zu: name '%s' is longer than %d characters", i, show(m->name, buf),
                    METHOD_NAME_MAX);
    if (!valid_method_name(m->name))
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "method %zu: name '%s' is not of the form pkg.Service.Method (at least two "
                    "dots, no empty part, printable ASCII without spaces)",
                    i, show(m->name, buf));
    const char *mn = m->name;
    if (m->call_type < NH_CALL_RPC || m->call_type > NH_CALL_CORRECTABLE)
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "method %zu '%s': call_type is %d, expected %d to %d (nh_call_type)", i, mn,
                    (int)m->call_type, NH_CALL_RPC, NH_CALL_CORRECTABLE);
    if (m->request == NULL)
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "method %zu '%s': request descriptor is NULL", i, mn);
    if (check_message_desc(name, path, i, mn, "request", m->request, err) != 0) return -1;
    bool one_way = m->call_type == NH_CALL_UNICAST || m->call_type == NH_CALL_MULTICAST;
    if (m->response == NULL && !one_way)
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "method %zu '%s': response descriptor is NULL (required for %s methods)", i, mn,
                    call_type_name(m->call_type));
    if (m->response != NULL &&
        check_message_desc(name, path, i, mn, "response", m->response, err) != 0)
        return -1;
    if (m->handler == NULL)
        return fail(err, NH_INVALID_ARGUMENT, name, path, "method %zu '%s': handler is NULL", i,
                    mn);
    return 0;
}

typedef struct method_ref {
    const char *name;
    size_t plugin; /* index in the caller's array (conflicts) */
    size_t index;  /* index in the plugin's methods */
} method_ref;

static int method_ref_cmp(const void *a, const void *b) {
    const method_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0) return c;
    if (x->plugin != y->plugin) return x->plugin < y->plugin ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

static int check_duplicates(const char *name, const char *path, const nh_plugin_descriptor *d,
                            nh_error *err) {
    method_ref *refs = malloc(d->method_count * sizeof *refs);
    if (refs == NULL)
        return fail(err, NH_RESOURCE_EXHAUSTED, name, path, "out of memory checking methods");
    for (size_t i = 0; i < d->method_count; i++)
        refs[i] = (method_ref){d->methods[i].name, 0, i};
    qsort(refs, d->method_count, sizeof *refs, method_ref_cmp);
    int rc = 0;
    for (size_t i = 1; i < d->method_count; i++) {
        if (strcmp(refs[i - 1].name, refs[i].name) == 0) {
            rc = fail(err, NH_INVALID_ARGUMENT, name, path,
                      "method '%s' is declared twice (methods %zu and %zu)", refs[i].name,
                      refs[i - 1].index, refs[i].index);
            break;
        }
    }
    free(refs);
    return rc;
}

int nh_plugin_check_descriptor(const char *name, const char *path, const nh_plugin_descriptor *d,
                               nh_error *err) {
    char buf[72];
    if (name == NULL) name = "?";
    if (path == NULL) path = "?";
    if (d == NULL)
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "entry function '%s' returned NULL (no descriptor)", NH_PLUGIN_ENTRY_SYMBOL);
    if (d->magic != NH_PLUGIN_MAGIC)
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "descriptor magic is 0x%08x, expected 0x%08x (not a nodehost plugin "
                    "descriptor)",
                    d->magic, NH_PLUGIN_MAGIC);
    /* Nothing past magic and size may be read before this check. */
    if (d->size < NH_PLUGIN_DESCRIPTOR_MIN_SIZE)
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "truncated descriptor: size %u, expected at least %zu", d->size,
                    (size_t)NH_PLUGIN_DESCRIPTOR_MIN_SIZE);
    if (d->abi_version != NH_PLUGIN_ABI_VERSION)
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "plugin ABI version is %u, this host's is %u (rebuild the plugin with this "
                    "host's SDK)",
                    d->abi_version, NH_PLUGIN_ABI_VERSION);
    if (d->flags != 0)
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "descriptor flags are 0x%x, expected 0 (reserved)", d->flags);
    if (d->name == NULL)
        return fail(err, NH_INVALID_ARGUMENT, name, path, "descriptor name is NULL");
    if (!valid_plugin_name(d->name))
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "descriptor name '%s' is invalid: expected 1 to %d characters of [a-z0-9_-]",
                    show(d->name, buf), NH_PLUGIN_NAME_MAX);
    if (d->version == NULL)
        return fail(err, NH_INVALID_ARGUMENT, name, path, "descriptor version is NULL");
    if (d->version[0] == '\0')
        return fail(err, NH_INVALID_ARGUMENT, name, path, "descriptor version is empty");
    if (d->methods == NULL)
        return fail(err, NH_INVALID_ARGUMENT, name, path, "descriptor methods is NULL");
    if (d->method_count < 1 || d->method_count > NH_PLUGIN_MAX_METHODS)
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "descriptor method_count is %zu, expected 1 to %d", d->method_count,
                    NH_PLUGIN_MAX_METHODS);
    for (size_t i = 0; i < d->method_count; i++)
        if (check_method(name, path, i, &d->methods[i], err) != 0) return -1;
    if (check_duplicates(name, path, d, err) != 0) return -1;
    if ((d->export_state == NULL) != (d->import_state == NULL))
        return fail(err, NH_INVALID_ARGUMENT, name, path,
                    "descriptor has %s but no %s (state hand-over needs both or neither)",
                    d->export_state != NULL ? "export_state" : "import_state",
                    d->export_state != NULL ? "import_state" : "export_state");
    return 0;
}

/* ---- the copy ---------------------------------------------------------------------------- */

static atomic_ulong copy_counter;

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The configured name as a file-name part: [A-Za-z0-9_.-], at most 63, not starting with '.'. */
static void file_part(const char *name, char out[NH_PLUGIN_NAME_MAX + 1]) {
    size_t i = 0;
    for (; i < NH_PLUGIN_NAME_MAX && name[i] != '\0'; i++) {
        char c = name[i];
        out[i] = (isalnum((unsigned char)c) || c == '_' || c == '-' || (c == '.' && i > 0)) &&
                         (unsigned char)c < 0x80
                     ? c
                     : '_';
    }
    out[i] = '\0';
}

/* Copies source into state_dir under a unique name; fills out->loaded_path, sha256, file_size.
 * On failure nothing is left on disk. */
static int copy_source(const char *name, const char *source, const char *state_dir,
                       nh_loaded_plugin *out, nh_error *err) {
    int src = open(source, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (src < 0) {
        int e = errno;
        return nh_error_set(err, nh_file_error_code(e), NH_ERR_LOCAL, 0,
                            "plugin '%s': cannot open %s: %s", name, source, strerror(e));
    }
    struct stat st;
    if (fstat(src, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(src);
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "plugin '%s': %s is not a regular file", name, source);
    }

    unsigned long n = atomic_fetch_add(&copy_counter, 1) + 1;
    long pid = (long)getpid();
    char *tmp = NULL;
    if (asprintf(&tmp, "%s/.tmp-%ld-%lu", state_dir, pid, n) < 0) {
        close(src);
        return fail(err, NH_RESOURCE_EXHAUSTED, name, source, "out of memory");
    }
    int dst = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0700);
    if (dst < 0) {
        int e = errno;
        close(src);
        free(tmp);
        return fail(err, NH_INTERNAL, name, source,
                    "cannot create a copy in state directory %s: %s", state_dir, strerror(e));
    }

    nh_sha256 h;
    nh_sha256_init(&h);
    uint64_t size = 0;
    uint8_t buf[32768];
    int e = 0;
    const char *what = "read";
    for (;;) {
        ssize_t r = read(src, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            e = errno;
            break;
        }
        if (r == 0) break;
        nh_sha256_update(&h, buf, (size_t)r);
        size += (uint64_t)r;
        if (write_all(dst, buf, (size_t)r) != 0) {
            e = errno;
            what = "write";
            break;
        }
    }
    close(src);
    if (e == 0 && fchmod(dst, 0500) != 0) {
        e = errno;
        what = "chmod";
    }
    if (close(dst) != 0 && e == 0) {
        e = errno;
        what = "write";
    }
    char part[NH_PLUGIN_NAME_MAX + 1];
    file_part(name, part);
    nh_sha256_final_hex(&h, out->sha256);
    char *final = NULL;
    if (e == 0 &&
        asprintf(&final, "%s/%s-%.16s-%ld-%lu.so", state_dir, part, out->sha256, pid, n) < 0) {
        final = NULL;
        e = ENOMEM;
        what = "name";
    }
    if (e == 0 && rename(tmp, final) != 0) {
        e = errno;
        what = "rename";
    }
    if (e != 0) {
        unlink(tmp);
        free(tmp);
        free(final);
        return fail(err, NH_INTERNAL, name, source, "cannot copy to state directory %s (%s): %s",
                    state_dir, what, strerror(e));
    }
    free(tmp);
    out->loaded_path = final;
    out->file_size = size;
    return 0;
}

/* ---- load / unload ----------------------------------------------------------------------- */

static void close_handle(void *handle) {
#ifdef NH_SANITIZE_BUILD
    (void)handle; /* leaked on purpose: the sanitizers do not support dlclose well */
#else
    if (handle != NULL) dlclose(handle);
#endif
}

/* dlerror() text without a leading "<loaded path>: " (the copy's name means nothing to users). */
static const char *dl_reason(const char *loaded_path) {
    const char *msg = dlerror();
    if (msg == NULL) return "unknown error";
    size_t n = strlen(loaded_path);
    if (strncmp(msg, loaded_path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    return msg;
}

int nh_plugin_load(const char *name, const char *source_path, const char *state_dir,
                   nh_loaded_plugin *out, nh_error *err) {
    memset(out, 0, sizeof *out);
    if (name == NULL || name[0] == '\0' || source_path == NULL || source_path[0] == '\0' ||
        state_dir == NULL || state_dir[0] == '\0')
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "plugin load: name, path and state directory must not be empty");
    if (copy_source(name, source_path, state_dir, out, err) != 0) {
        memset(out, 0, sizeof *out);
        return -1;
    }

    dlerror();
    void *handle = dlopen(out->loaded_path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0, "plugin '%s': cannot load %s: %s",
                     name, source_path, dl_reason(out->loaded_path));
        goto fail_copy;
    }
    /* A fresh copy must give a fresh object. If the dynamic loader handed back another one
     * (possible only if something pinned the same file), its code would be the old code. */
    struct link_map *lm = NULL;
    if (dlinfo(handle, RTLD_DI_LINKMAP, &lm) != 0 || lm == NULL ||
        strcmp(lm->l_name, out->loaded_path) != 0) {
        fail(err, NH_INTERNAL, name, source_path,
             "the dynamic loader returned another object (%s) for the copy %s",
             lm != NULL ? lm->l_name : "?", out->loaded_path);
        goto fail_handle;
    }

    dlerror();
    void *sym = dlsym(handle, NH_PLUGIN_ENTRY_SYMBOL);
    if (sym == NULL) {
        fail(err, NH_INVALID_ARGUMENT, name, source_path,
             "missing entry symbol '%s' (is NH_PLUGIN_DEFINE used?)", NH_PLUGIN_ENTRY_SYMBOL);
        goto fail_handle;
    }
    nh_plugin_entry_fn entry = (nh_plugin_entry_fn)sym;
    const nh_plugin_descriptor *desc = entry();
    if (nh_plugin_check_descriptor(name, source_path, desc, err) != 0) goto fail_handle;

    out->name = strdup(name);
    out->source_path = strdup(source_path);
    if (out->name == NULL || out->source_path == NULL) {
        fail(err, NH_RESOURCE_EXHAUSTED, name, source_path, "out of memory");
        goto fail_handle;
    }
    out->handle = handle;
    out->desc = desc;
    return 0;

fail_handle:
    close_handle(handle);
fail_copy:
    unlink(out->loaded_path);
    free(out->loaded_path);
    free(out->name);
    free(out->source_path);
    memset(out, 0, sizeof *out);
    return -1;
}

void nh_plugin_unload(nh_loaded_plugin *p) {
    if (p == NULL) return;
    close_handle(p->handle);
    if (p->loaded_path != NULL) unlink(p->loaded_path);
    free(p->loaded_path);
    free(p->name);
    free(p->source_path);
    memset(p, 0, sizeof *p);
}

/* ---- across plugins ---------------------------------------------------------------------- */

long nh_plugin_each_conflict(const nh_loaded_plugin *const *plugins, size_t n,
                             nh_plugin_conflict_fn fn, void *arg, nh_error *err) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (plugins[i] != NULL && plugins[i]->desc != NULL) total += plugins[i]->desc->method_count;
    if (total < 2) return 0;
    method_ref *refs = malloc(total * sizeof *refs);
    if (refs == NULL)
        return nh_error_set(err, NH_RESOURCE_EXHAUSTED, NH_ERR_LOCAL, 0,
                            "out of memory checking plugin methods");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (plugins[i] == NULL || plugins[i]->desc == NULL) continue;
        for (size_t j = 0; j < plugins[i]->desc->method_count; j++)
            refs[k++] = (method_ref){plugins[i]->desc->methods[j].name, i, j};
    }
    /* Sorted by name, then plugin: each run of one name starts with its first plugin. */
    qsort(refs, total, sizeof *refs, method_ref_cmp);
    long found = 0;
    size_t first = 0;
    for (size_t i = 1; i < total; i++) {
        if (strcmp(refs[first].name, refs[i].name) != 0) {
            first = i;
            continue;
        }
        if (refs[i].plugin == refs[first].plugin) continue; /* refused by the descriptor check */
        found++;
        if (fn(arg, refs[i].name, refs[first].plugin, refs[i].plugin) != 0) break;
    }
    free(refs);
    return found;
}

/* nh_plugin_check_conflicts(): the first clash makes the message. */
typedef struct first_clash {
    const nh_loaded_plugin *const *plugins;
    nh_error *err;
} first_clash;

static int on_first_clash(void *arg, const char *method, size_t first, size_t second) {
    first_clash *c = arg;
    const nh_loaded_plugin *a = c->plugins[first], *b = c->plugins[second];
    nh_error_set(c->err, NH_ALREADY_EXISTS, NH_ERR_LOCAL, 0,
                 "method '%s' is declared by plugin '%s' (%s) and by plugin '%s' (%s)", method,
                 a->name, a->source_path, b->name, b->source_path);
    return 1;
}

int nh_plugin_check_conflicts(const nh_loaded_plugin *const *plugins, size_t n, nh_error *err) {
    first_clash c = {plugins, err};
    long found = nh_plugin_each_conflict(plugins, n, on_first_clash, &c, err);
    return found == 0 ? 0 : -1;
}

/* ---- the state directory ----------------------------------------------------------------- */

int nh_plugin_state_dir_default(char *buf, size_t size) {
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (xdg != NULL && xdg[0] == '/')
        n = snprintf(buf, size, "%s/nodehost", xdg);
    else
        n = snprintf(buf, size, "/tmp/nodehost-%lu", (unsigned long)geteuid());
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Parses decimal digits in [s, end) as a positive number; 0 when not one. */
static unsigned long parse_digits(const char *s, const char *end) {
    if (s >= end || end - s > 19) return 0;
    unsigned long v = 0;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9') return 0;
        v = v * 10 + (unsigned long)(*s - '0');
    }
    return v;
}

/* The pid in the name of a file this loader writes (".tmp-<pid>-<n>" or
 * "<name>-<hash16>-<pid>-<n>.so"), or 0 for any other name. */
static pid_t owner_pid(const char *f) {
    size_t len = strlen(f);
    const char *end = f + len;
    if (strncmp(f, ".tmp-", 5) == 0) {
        const char *dash = strchr(f + 5, '-');
        if (dash == NULL || parse_digits(dash + 1, end) == 0) return 0;
        return (pid_t)parse_digits(f + 5, dash);
    }
    if (len < 3 || strcmp(end - 3, ".so") != 0) return 0;
    end -= 3;
    const char *p = end;
    const char *dash[3];
    for (int i = 0; i < 3; i++) { /* the last three '-' */
        while (p > f && p[-1] != '-')
            p--;
        if (p == f) return 0;
        dash[i] = --p;
    }
    if (parse_digits(dash[0] + 1, end) == 0 || dash[1] - dash[2] != 17) return 0;
    for (const char *h = dash[2] + 1; h < dash[1]; h++)
        if (!isxdigit((unsigned char)*h)) return 0;
    return (pid_t)parse_digits(dash[1] + 1, dash[0]);
}

int nh_plugin_state_dir_prepare(const char *dir, nh_error *err) {
    if (dir == NULL || dir[0] == '\0')
        return nh_error_set(err, NH_INVALID_ARGUMENT, NH_ERR_LOCAL, 0,
                            "plugin state directory: empty path");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return nh_error_set(err, nh_file_error_code(errno), NH_ERR_LOCAL, 0,
                            "plugin state directory %s: cannot create: %s", dir, strerror(errno));
    struct stat st;
    if (lstat(dir, &st) != 0)
        return nh_error_set(err, nh_file_error_code(errno), NH_ERR_LOCAL, 0,
                            "plugin state directory %s: %s", dir, strerror(errno));
    const char *problem = NULL;
    if (S_ISLNK(st.st_mode))
        problem = "is a symbolic link";
    else if (!S_ISDIR(st.st_mode))
        problem = "is not a directory";
    else if (st.st_uid != geteuid())
        problem = "is owned by another user";
    else if ((st.st_mode & 022) != 0)
        problem = "is writable by group or others (expected mode 0700)";
    else if (access(dir, W_OK | X_OK) != 0)
        problem = "is not writable";
    struct statvfs vfs;
    if (problem == NULL && statvfs(dir, &vfs) == 0 && (vfs.f_flag & ST_NOEXEC) != 0)
        problem = "is on a noexec file system (plugins cannot be mapped from it)";
    if (problem != NULL)
        return nh_error_set(err, NH_FAILED_PRECONDITION, NH_ERR_LOCAL, 0,
                            "plugin state directory %s %s", dir, problem);

    DIR *d = opendir(dir);
    if (d == NULL)
        return nh_error_set(err, nh_file_error_code(errno), NH_ERR_LOCAL, 0,
                            "plugin state directory %s: %s", dir, strerror(errno));
    pid_t self = getpid();
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        pid_t pid = owner_pid(ent->d_name);
        if (pid <= 0 || pid == self) continue;
        if (kill(pid, 0) != 0 && errno == ESRCH) unlinkat(dirfd(d), ent->d_name, 0);
    }
    closedir(d);
    return 0;
}
