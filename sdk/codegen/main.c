/* protoc-gen-nodehost: a protoc plugin that generates typed nodehost stubs.
 *
 *   protoc -I. -I<prefix>/share/nodehost/proto --c_out=DIR --nodehost_out=DIR x.proto
 *
 * protoc runs it with a CodeGeneratorRequest on standard input and reads a
 * CodeGeneratorResponse from standard output. For every file to generate it writes
 * `<name>.nh.h` and `<name>.nh.c` (docs/user-guide.md describes what they hold); problems in
 * the input (unsupported call shapes, unknown Gorums options, clashing C names) are reported
 * through the response's error, one line each, naming the file, line and method, and nothing
 * is written. */
#include "emit.h"
#include "layout.h"
#include "model.h"
#include "naming.h"
#include "strbuf.h"

#include "google/protobuf/compiler/plugin.pb-c.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *to) {
    fputs("usage: protoc --plugin=protoc-gen-nodehost --nodehost_out=DIR [-I...] FILE.proto\n"
          "\n"
          "A protoc plugin: protoc runs it and writes, for each FILE.proto, FILE.nh.h and\n"
          "FILE.nh.c with typed nodehost stubs (client calls, handler signatures, the plugin\n"
          "method table). Methods take their call type from gorums.proto's options\n"
          "(installed in <prefix>/share/nodehost/proto); a method without one is an RPC.\n"
          "It takes no options of its own (--nodehost_opt).\n",
          to);
}

/* Reads all of stdin. */
static uint8_t *read_all(FILE *in, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            uint8_t *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                return NULL;
            }
            buf = p;
        }
        size_t r = fread(buf + n, 1, cap - n, in);
        n += r;
        if (r == 0) break;
    }
    if (ferror(in)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static const Google__Protobuf__FileDescriptorProto *
find_file(const Google__Protobuf__Compiler__CodeGeneratorRequest *req, const char *name) {
    for (size_t i = 0; i < req->n_proto_file; i++)
        if (req->proto_file[i]->name && strcmp(req->proto_file[i]->name, name) == 0)
            return req->proto_file[i];
    return NULL;
}

/* Builds the response's files (or its error). Returns the number of files. */
static size_t generate(const Google__Protobuf__Compiler__CodeGeneratorRequest *req,
                       Google__Protobuf__Compiler__CodeGeneratorResponse__File ***files_out,
                       strbuf *err) {
    *files_out = NULL;
    if (req->parameter && req->parameter[0]) {
        sb_printf(err,
                  "unknown option '%s': protoc-gen-nodehost takes no options "
                  "(--nodehost_opt / --nodehost_out=OPTIONS:DIR)\n",
                  req->parameter);
        return 0;
    }
    size_t n = req->n_file_to_generate;
    gen_file *models = n ? xmalloc(n * sizeof *models) : NULL;
    int problems = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = req->file_to_generate[i];
        if (strcmp(name, "gorums.proto") == 0 || strncmp(name, "google/protobuf/", 16) == 0) {
            /* Listed only so that protoc-gen-c writes their headers: no services, no stubs. */
            models[i] = (gen_file){0};
            continue;
        }
        const Google__Protobuf__FileDescriptorProto *fd = find_file(req, name);
        if (!fd) {
            sb_printf(err, "%s: not among the request's files\n", req->file_to_generate[i]);
            models[i] = (gen_file){0};
            problems++;
            continue;
        }
        problems += gen_file_build(fd, &models[i], err);
    }
    if (problems == 0) problems += gen_check_clashes(models, n, err);
    size_t nfiles = 0;
    Google__Protobuf__Compiler__CodeGeneratorResponse__File **files = NULL;
    if (problems == 0 && n > 0) {
        files = xmalloc(2 * n * sizeof *files);
        for (size_t i = 0; i < n; i++) {
            if (!models[i].proto) continue; /* skipped above */
            for (int which = 0; which < 2; which++) {
                strbuf text = {0};
                if (which == 0)
                    emit_header(&models[i], &text);
                else
                    emit_source(&models[i], &text);
                Google__Protobuf__Compiler__CodeGeneratorResponse__File *f = xmalloc(sizeof *f);
                google__protobuf__compiler__code_generator_response__file__init(f);
                f->name = join3(models[i].out_stem, "", which == 0 ? ".nh.h" : ".nh.c");
                strbuf laid = {0};
                layout_c(sb_str(&text), &laid);
                f->content = xstrdup(sb_str(&laid));
                sb_free(&laid);
                sb_free(&text);
                files[nfiles++] = f;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        gen_file_free(&models[i]);
    free(models);
    *files_out = files;
    return nfiles;
}

int main(int argc, char **argv) {
    if (argc > 1) {
        bool help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        if (strcmp(argv[1], "--version") == 0) {
            puts("protoc-gen-nodehost " NH_CODEGEN_VERSION);
            return 0;
        }
        usage(help ? stdout : stderr);
        return help ? 0 : 2;
    }
    size_t len = 0;
    uint8_t *in = read_all(stdin, &len);
    if (!in) {
        fputs("protoc-gen-nodehost: cannot read the request from standard input\n", stderr);
        return 1;
    }
    Google__Protobuf__Compiler__CodeGeneratorRequest *req =
        google__protobuf__compiler__code_generator_request__unpack(NULL, len, in);
    free(in);
    if (!req) {
        fputs("protoc-gen-nodehost: standard input is not a CodeGeneratorRequest (this program "
              "is run by protoc: protoc --nodehost_out=DIR ...; see --help)\n",
              stderr);
        return 1;
    }
    strbuf err = {0};
    Google__Protobuf__Compiler__CodeGeneratorResponse resp =
        GOOGLE__PROTOBUF__COMPILER__CODE_GENERATOR_RESPONSE__INIT;
    Google__Protobuf__Compiler__CodeGeneratorResponse__File **files = NULL;
    size_t nfiles = generate(req, &files, &err);
    /* proto3 `optional` fields change nothing in the stubs. */
    resp.has_supported_features = 1;
    resp.supported_features =
        GOOGLE__PROTOBUF__COMPILER__CODE_GENERATOR_RESPONSE__FEATURE__FEATURE_PROTO3_OPTIONAL;
    char *error_text = NULL;
    if (err.len) {
        /* protoc prints it after "--nodehost_out: "; no trailing newline. */
        error_text = xstrdup(sb_str(&err));
        size_t n = strlen(error_text);
        while (n > 0 && error_text[n - 1] == '\n')
            error_text[--n] = '\0';
        resp.error = error_text;
    } else {
        resp.n_file = nfiles;
        resp.file = files;
    }
    size_t out_len = google__protobuf__compiler__code_generator_response__get_packed_size(&resp);
    uint8_t *out = xmalloc(out_len);
    google__protobuf__compiler__code_generator_response__pack(&resp, out);
    int rc = fwrite(out, 1, out_len, stdout) == out_len && fflush(stdout) == 0 ? 0 : 1;
    if (rc) fputs("protoc-gen-nodehost: cannot write the response\n", stderr);
    free(out);
    for (size_t i = 0; i < nfiles; i++) {
        free(files[i]->name);
        free(files[i]->content);
        free(files[i]);
    }
    free(files);
    free(error_text);
    sb_free(&err);
    google__protobuf__compiler__code_generator_request__free_unpacked(req, NULL);
    return rc;
}
