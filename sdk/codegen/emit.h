/* Writes the generated stubs of one .proto file: `<name>.nh.h` (declarations, typed handler
 * signatures, reply helpers and the plugin method table) and `<name>.nh.c` (the typed client
 * calls over nodehost/stubs.h). */
#ifndef NH_CODEGEN_EMIT_H
#define NH_CODEGEN_EMIT_H

#include "model.h"
#include "strbuf.h"

/** Appends the header of f to out. */
void emit_header(const gen_file *f, strbuf *out);

/** Appends the C source of f to out. */
void emit_source(const gen_file *f, strbuf *out);

#endif
