/* The generator's model of a .proto file: its services and methods with their Gorums call
 * types, message types, C names, doc comments and source positions, built from protoc's
 * descriptors and checked (unsupported shapes, unknown options, clashing C names). */
#ifndef NH_CODEGEN_MODEL_H
#define NH_CODEGEN_MODEL_H

#include "strbuf.h"

#include "google/protobuf/compiler/plugin.pb-c.h"

#include <stddef.h>

/** How a method is called (Gorums' option, or RPC without one). */
typedef enum gen_call {
    GEN_RPC,         /**< option (gorums.rpc), or no Gorums option */
    GEN_UNICAST,     /**< option (gorums.unicast) */
    GEN_MULTICAST,   /**< option (gorums.multicast) */
    GEN_QUORUMCALL,  /**< option (gorums.quorumcall) */
    GEN_CORRECTABLE, /**< option (gorums.quorumcall) with `returns (stream T)` */
} gen_call;

/** A message type as protoc-c names it. */
typedef struct gen_type {
    char *full;       /**< "hello.HelloRequest" */
    char *c_type;     /**< "Hello__HelloRequest" */
    char *descriptor; /**< "hello__hello_request__descriptor" */
} gen_type;

/** One method. */
typedef struct gen_method {
    char *name;           /**< "SayHello" */
    char *full_name;      /**< "hello.Greeter.SayHello" */
    char *prefix;         /**< "hello_greeter_say_hello": every stub name starts with it */
    char *upper;          /**< "HELLO_GREETER_SAY_HELLO" */
    gen_call call;        /**< call type */
    gen_type req, resp;   /**< request and response types */
    const char *comments; /**< the .proto's leading comments (borrowed), or NULL */
    int line, col;        /**< 1-based position in the .proto, 0 when unknown */
} gen_method;

/** One service. */
typedef struct gen_service {
    char *full_name;      /**< "hello.Greeter" */
    char *prefix;         /**< "hello_greeter" */
    char *upper;          /**< "HELLO_GREETER" */
    const char *comments; /**< borrowed, or NULL */
    gen_method *methods;
    size_t n_methods;
} gen_service;

/** One .proto file to generate. */
typedef struct gen_file {
    const char *proto; /**< its path as protoc names it ("dir/x.proto"), borrowed */
    char *pbc_header;  /**< "dir/x.pb-c.h" */
    char *out_stem;    /**< "dir/x": outputs are out_stem.nh.h and out_stem.nh.c */
    char *guard;       /**< include guard */
    char *file_macro;  /**< "X_PROTO": X_PROTO_NH_METHODS lists every method of the file */
    gen_service *services;
    size_t n_services;
} gen_file;

/** Builds the model of fd. Problems are appended to err, one line each, as
 * "FILE:LINE:COL: method NAME: what"; returns the number of problems (0: usable). */
int gen_file_build(const Google__Protobuf__FileDescriptorProto *fd, gen_file *out, strbuf *err);

/** Checks that no two methods of the files get the same C name (appended to err as above).
 * Returns the number of clashes. */
int gen_check_clashes(const gen_file *files, size_t n, strbuf *err);

/** The name suffixes (after the method's prefix) of everything generated for a call type,
 * NULL-terminated. The emitter and the clash check both use it. */
const char *const *gen_call_suffixes(gen_call call);

/** The call type's name as Gorums' option spells it ("rpc", "quorumcall", ...). */
const char *gen_call_name(gen_call call);

/** Frees what gen_file_build() allocated. */
void gen_file_free(gen_file *f);

#endif
