/* C names: the ones protoc-c gives to messages (so generated stubs can name them) and the ones
 * this generator gives to stubs. Every function returns a malloc'ed string. */
#ifndef NH_CODEGEN_NAMING_H
#define NH_CODEGEN_NAMING_H

/** protoc-c's C type of a message by full name (".my_pkg.v1.Msg" -> "MyPkg__V1__Msg"). */
char *pbc_type_name(const char *full_name);

/** protoc-c's descriptor variable of a message (".my_pkg.v1.Msg" ->
 * "my_pkg__v1__msg__descriptor"). */
char *pbc_descriptor_name(const char *full_name);

/** protoc-c's header for a .proto path ("dir/x.proto" -> "dir/x.pb-c.h"). */
char *pbc_header_name(const char *proto_path);

/** A stub name part from a proto identifier: "SayHelloQC" -> "say_hello_qc", "HTTPServer" ->
 * "http_server", "my_pkg.v1" -> "my_pkg_v1". */
char *snake_name(const char *ident);

/** s in upper case. */
char *upper_name(const char *s);

/** A C identifier from a path, upper case, for include guards and file-level macros
 * ("dir/my-file.proto" -> "DIR_MY_FILE_PROTO"). */
char *path_macro_name(const char *path);

/** The file name without directories and ".proto" ("dir/x.proto" -> "x"). */
char *proto_stem(const char *proto_path);

/** The path without ".proto" ("dir/x.proto" -> "dir/x"). */
char *proto_path_stem(const char *proto_path);

/** a and b joined by sep. */
char *join3(const char *a, const char *sep, const char *b);

#endif
