/* Builds and checks the generator's model of a .proto file (model.h). */
#include "model.h"

#include "naming.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* gorums.proto: MethodOptions extensions. Numbers 50000-50999 are Gorums'; an option there
 * that is not one of these was written for another Gorums version and is refused. */
enum {
    GORUMS_RPC = 50001,
    GORUMS_UNICAST = 50002,
    GORUMS_MULTICAST = 50003,
    GORUMS_QUORUMCALL = 50004,
    GORUMS_FIRST = 50000,
    GORUMS_LAST = 50999
};

/* Field numbers of descriptor.proto used in SourceCodeInfo paths. */
enum { FILE_SERVICE = 6, SERVICE_METHOD = 2 };

const char *gen_call_name(gen_call call) {
    switch (call) {
        case GEN_RPC:
            return "rpc";
        case GEN_UNICAST:
            return "unicast";
        case GEN_MULTICAST:
            return "multicast";
        case GEN_QUORUMCALL:
            return "quorumcall";
        case GEN_CORRECTABLE:
            return "quorumcall (streaming: correctable)";
    }
    return "?";
}

static const char *const rpc_suffixes[] = {"",         "_async",      "_done_fn", "_handler",
                                           "_reply",   "_handler_fn", "_serve",   "__done",
                                           "__plugin", "__serve",     "_METHOD",  NULL};
static const char *const unicast_suffixes[] = {
    "", "_async", "_handler", "_handler_fn", "_serve", "__plugin", "__serve", "_METHOD", NULL};
static const char *const multicast_suffixes[] = {
    "",      "_async", "_opts",    "_map_fn", "_handler", "_handler_fn", "_serve",
    "__map", "__fill", "__plugin", "__serve", "_METHOD",  NULL};
static const char *const quorumcall_suffixes[] = {
    "",         "_async", "_opts",       "_map_fn", "_qf_fn",  "_done_fn",
    "_handler", "_reply", "_handler_fn", "_serve",  "__map",   "__qf",
    "__done",   "__fill", "__plugin",    "__serve", "_METHOD", NULL};
static const char *const correctable_suffixes[] = {
    "",       "_start", "_opts",   "_map_fn", "_level_fn", "_handler", "_send",   "_handler_fn",
    "_serve", "__map",  "__level", "__fill",  "__plugin",  "__serve",  "_METHOD", NULL};

const char *const *gen_call_suffixes(gen_call call) {
    switch (call) {
        case GEN_RPC:
            return rpc_suffixes;
        case GEN_UNICAST:
            return unicast_suffixes;
        case GEN_MULTICAST:
            return multicast_suffixes;
        case GEN_QUORUMCALL:
            return quorumcall_suffixes;
        case GEN_CORRECTABLE:
            return correctable_suffixes;
    }
    return rpc_suffixes;
}

/* The location of a path in the file's SourceCodeInfo, or NULL. */
static const Google__Protobuf__SourceCodeInfo__Location *
find_location(const Google__Protobuf__FileDescriptorProto *fd, const int32_t *path, size_t n) {
    if (!fd->source_code_info) return NULL;
    for (size_t i = 0; i < fd->source_code_info->n_location; i++) {
        const Google__Protobuf__SourceCodeInfo__Location *l = fd->source_code_info->location[i];
        if (l->n_path == n && memcmp(l->path, path, n * sizeof *path) == 0) return l;
    }
    return NULL;
}

static void position(const Google__Protobuf__SourceCodeInfo__Location *l, int *line, int *col) {
    *line = *col = 0;
    if (l && l->n_span >= 2) {
        *line = l->span[0] + 1;
        *col = l->span[1] + 1;
    }
}

/* Appends "FILE:LINE:COL: method NAME: " (or without the position when unknown). */
static void where(strbuf *err, const char *file, int line, int col, const char *what,
                  const char *name) {
    if (line > 0)
        sb_printf(err, "%s:%d:%d: %s %s: ", file, line, col, what, name);
    else
        sb_printf(err, "%s: %s %s: ", file, what, name);
}

/* Reads a varint; false when malformed. */
static bool read_varint(const uint8_t *p, size_t len, uint64_t *v) {
    *v = 0;
    for (size_t i = 0; i < len && i < 10; i++) {
        *v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) return true;
    }
    return false;
}

/* The method's call type from its Gorums options. Problems are appended to err. */
static int call_type(const Google__Protobuf__MethodDescriptorProto *m, const char *file,
                     const gen_method *gm, gen_call *out, strbuf *err) {
    int problems = 0;
    int chosen = 0; /* the option number set true, 0 if none */
    const Google__Protobuf__MethodOptions *o = m->options;
    for (size_t i = 0; o && i < o->base.n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *f = &o->base.unknown_fields[i];
        if (f->tag < GORUMS_FIRST || f->tag > GORUMS_LAST) continue; /* not Gorums' */
        if (f->tag < GORUMS_RPC || f->tag > GORUMS_QUORUMCALL) {
            where(err, file, gm->line, gm->col, "method", gm->full_name);
            sb_printf(err,
                      "unknown Gorums option number %u: this generator knows rpc (50001), "
                      "unicast (50002), multicast (50003) and quorumcall (50004) from "
                      "gorums.proto; correctable calls are quorumcall methods that return a "
                      "stream\n",
                      (unsigned)f->tag);
            problems++;
            continue;
        }
        uint64_t v = 0;
        if (f->wire_type != PROTOBUF_C_WIRE_TYPE_VARINT || !read_varint(f->data, f->len, &v) ||
            v > 1) {
            where(err, file, gm->line, gm->col, "method", gm->full_name);
            sb_printf(err, "Gorums option number %u must be a bool (true or false)\n",
                      (unsigned)f->tag);
            problems++;
            continue;
        }
        if (v == 0) continue; /* `= false`: not this call type */
        if (chosen && chosen != (int)f->tag) {
            static const char *const names[] = {"rpc", "unicast", "multicast", "quorumcall"};
            where(err, file, gm->line, gm->col, "method", gm->full_name);
            sb_printf(err, "has two call types, (gorums.%s) and (gorums.%s): choose one\n",
                      names[chosen - GORUMS_RPC], names[f->tag - GORUMS_RPC]);
            problems++;
            continue;
        }
        chosen = (int)f->tag;
    }
    switch (chosen) {
        case GORUMS_UNICAST:
            *out = GEN_UNICAST;
            break;
        case GORUMS_MULTICAST:
            *out = GEN_MULTICAST;
            break;
        case GORUMS_QUORUMCALL:
            *out = GEN_QUORUMCALL;
            break;
        default:
            *out = GEN_RPC;
            break;
    }
    if (m->has_client_streaming && m->client_streaming) {
        where(err, file, gm->line, gm->col, "method", gm->full_name);
        sb_puts(err, "client streaming (`rpc M(stream T)`) is not a Gorums call type\n");
        problems++;
    }
    if (m->has_server_streaming && m->server_streaming) {
        if (*out == GEN_QUORUMCALL) {
            *out = GEN_CORRECTABLE;
        } else {
            where(err, file, gm->line, gm->col, "method", gm->full_name);
            if (chosen)
                sb_printf(err, "returns a stream, but (gorums.%s) methods do not stream",
                          gen_call_name(*out));
            else
                sb_puts(err, "returns a stream, but a method without a Gorums option is an RPC");
            sb_puts(err, ": only quorum calls stream (a correctable call: option "
                         "(gorums.quorumcall) = true)\n");
            problems++;
        }
    }
    return problems;
}

static void type_init(gen_type *t, const char *dotted) {
    const char *full = dotted[0] == '.' ? dotted + 1 : dotted;
    t->full = xstrdup(full);
    t->c_type = pbc_type_name(full);
    t->descriptor = pbc_descriptor_name(full);
}

static void type_free(gen_type *t) {
    free(t->full);
    free(t->c_type);
    free(t->descriptor);
}

int gen_file_build(const Google__Protobuf__FileDescriptorProto *fd, gen_file *out, strbuf *err) {
    *out = (gen_file){0};
    const char *file = fd->name ? fd->name : "(unnamed).proto";
    int problems = 0;
    out->proto = file;
    out->pbc_header = pbc_header_name(file);
    out->out_stem = proto_path_stem(file);
    char *guard_base = path_macro_name(out->out_stem);
    out->guard = join3("NH_GEN_", "", guard_base);
    free(guard_base);
    char *g = join3(out->guard, "", "_NH_H");
    free(out->guard);
    out->guard = g;
    char *stem = proto_stem(file);
    char *stem_upper = path_macro_name(stem);
    out->file_macro = join3(stem_upper, "_", "PROTO");
    free(stem);
    free(stem_upper);

    const char *pkg = fd->package ? fd->package : "";
    if (!pkg[0] && fd->n_service > 0)
        fprintf(stderr,
                "protoc-gen-nodehost: warning: %s has no package: its methods are named "
                "Service.Method, which the nodehost program does not serve from a plugin (it "
                "wants pkg.Service.Method); client calls to other servers work\n",
                file);
    char *pkg_snake = snake_name(pkg);
    out->n_services = fd->n_service;
    out->services = fd->n_service ? xmalloc(fd->n_service * sizeof *out->services) : NULL;
    for (size_t s = 0; s < fd->n_service; s++) {
        const Google__Protobuf__ServiceDescriptorProto *sd = fd->service[s];
        gen_service *gs = &out->services[s];
        *gs = (gen_service){0};
        const char *sname = sd->name ? sd->name : "";
        gs->full_name = pkg[0] ? join3(pkg, ".", sname) : xstrdup(sname);
        char *ssnake = snake_name(sname);
        gs->prefix = pkg[0] ? join3(pkg_snake, "_", ssnake) : xstrdup(ssnake);
        free(ssnake);
        gs->upper = upper_name(gs->prefix);
        int32_t spath[] = {FILE_SERVICE, (int32_t)s};
        const Google__Protobuf__SourceCodeInfo__Location *sl = find_location(fd, spath, 2);
        gs->comments = sl ? sl->leading_comments : NULL;
        gs->n_methods = sd->n_method;
        gs->methods = sd->n_method ? xmalloc(sd->n_method * sizeof *gs->methods) : NULL;
        for (size_t m = 0; m < sd->n_method; m++) {
            const Google__Protobuf__MethodDescriptorProto *md = sd->method[m];
            gen_method *gm = &gs->methods[m];
            *gm = (gen_method){0};
            const char *mname = md->name ? md->name : "";
            gm->name = xstrdup(mname);
            gm->full_name = join3(gs->full_name, ".", mname);
            char *msnake = snake_name(mname);
            gm->prefix = join3(gs->prefix, "_", msnake);
            free(msnake);
            gm->upper = upper_name(gm->prefix);
            int32_t mpath[] = {FILE_SERVICE, (int32_t)s, SERVICE_METHOD, (int32_t)m};
            const Google__Protobuf__SourceCodeInfo__Location *ml = find_location(fd, mpath, 4);
            gm->comments = ml ? ml->leading_comments : NULL;
            position(ml, &gm->line, &gm->col);
            type_init(&gm->req, md->input_type ? md->input_type : "");
            type_init(&gm->resp, md->output_type ? md->output_type : "");
            problems += call_type(md, file, gm, &gm->call, err);
        }
    }
    free(pkg_snake);
    return problems;
}

/* One generated name and the method it belongs to, for the clash check. */
typedef struct named {
    char *name;
    const gen_file *file;
    const gen_method *method; /* NULL: a service's or the file's method table */
    const char *owner;        /* full name of the method, service or file */
} named;

static int by_name(const void *a, const void *b) {
    return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

static void add_named(named **v, size_t *n, size_t *cap, char *name, const gen_file *f,
                      const gen_method *m, const char *owner) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        named *p = realloc(*v, *cap * sizeof *p);
        if (!p) {
            free(name);
            return;
        }
        *v = p;
    }
    (*v)[(*n)++] = (named){name, f, m, owner};
}

static void describe(strbuf *err, const named *x) {
    if (x->method) {
        if (x->method->line > 0)
            sb_printf(err, "method %s (%s:%d:%d)", x->method->full_name, x->file->proto,
                      x->method->line, x->method->col);
        else
            sb_printf(err, "method %s (%s)", x->method->full_name, x->file->proto);
    } else {
        sb_printf(err, "the method table of %s (%s)", x->owner, x->file->proto);
    }
}

int gen_check_clashes(const gen_file *files, size_t n, strbuf *err) {
    named *v = NULL;
    size_t nv = 0, cap = 0;
    for (size_t f = 0; f < n; f++) {
        const gen_file *gf = &files[f];
        if (!gf->proto) continue; /* not generated */
        add_named(&v, &nv, &cap, join3(gf->file_macro, "", "_NH_METHODS"), gf, NULL, gf->proto);
        for (size_t s = 0; s < gf->n_services; s++) {
            const gen_service *gs = &gf->services[s];
            add_named(&v, &nv, &cap, join3(gs->upper, "", "_NH_METHODS"), gf, NULL, gs->full_name);
            for (size_t m = 0; m < gs->n_methods; m++) {
                const gen_method *gm = &gs->methods[m];
                for (const char *const *sfx = gen_call_suffixes(gm->call); *sfx; sfx++) {
                    bool up = strcmp(*sfx, "_METHOD") == 0;
                    add_named(&v, &nv, &cap, join3(up ? gm->upper : gm->prefix, "", *sfx), gf, gm,
                              gm->full_name);
                }
            }
        }
    }
    qsort(v, nv, sizeof *v, by_name);
    int clashes = 0;
    for (size_t i = 1; i < nv; i++) {
        if (strcmp(v[i].name, v[i - 1].name) != 0) continue;
        if (v[i].method == v[i - 1].method && v[i].owner == v[i - 1].owner) continue;
        /* Report at the later one in file order. */
        const named *a = &v[i - 1], *b = &v[i];
        if (b->method && a->method && a->file == b->file && a->method->line > b->method->line) {
            const named *t = a;
            a = b;
            b = t;
        }
        if (b->method)
            where(err, b->file->proto, b->method->line, b->method->col, "method",
                  b->method->full_name);
        else
            sb_printf(err, "%s: %s: ", b->file->proto, b->owner);
        sb_printf(err, "its generated C name %s is also generated for ", v[i].name);
        describe(err, a);
        sb_puts(err, "; rename one of them\n");
        clashes++;
        while (i + 1 < nv && strcmp(v[i + 1].name, v[i].name) == 0)
            i++;
    }
    for (size_t i = 0; i < nv; i++)
        free(v[i].name);
    free(v);
    return clashes;
}

void gen_file_free(gen_file *f) {
    for (size_t s = 0; s < f->n_services; s++) {
        gen_service *gs = &f->services[s];
        for (size_t m = 0; m < gs->n_methods; m++) {
            gen_method *gm = &gs->methods[m];
            free(gm->name);
            free(gm->full_name);
            free(gm->prefix);
            free(gm->upper);
            type_free(&gm->req);
            type_free(&gm->resp);
        }
        free(gs->methods);
        free(gs->full_name);
        free(gs->prefix);
        free(gs->upper);
    }
    free(f->services);
    free(f->pbc_header);
    free(f->out_stem);
    free(f->guard);
    free(f->file_macro);
    *f = (gen_file){0};
}
