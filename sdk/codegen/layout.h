/* Lays out generated C: joins continuation lines and wraps code lines longer than 100
 * columns at argument boundaries, aligned after the opening bracket, so generated headers read
 * like hand-written ones whatever the length of the names. Comments are left as they are. */
#ifndef NH_CODEGEN_LAYOUT_H
#define NH_CODEGEN_LAYOUT_H

#include "strbuf.h"

/** Returns in *out (appended) the laid-out form of the C text in. */
void layout_c(const char *in, strbuf *out);

#endif
