/* The text of generated stubs (emit.h). Every name is the method's prefix plus a suffix from
 * gen_call_suffixes(), which the clash check uses too. */
#include "emit.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Appends text reflowed into comment lines of at most WIDTH columns, each starting with
 * prefix; "\n" in text starts a new line (a paragraph break when doubled). */
enum { WIDTH = 100 };

static void reflow(strbuf *b, const char *prefix, const char *text) {
    size_t width = WIDTH - strlen(prefix);
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        size_t col = 0;
        sb_puts(b, prefix);
        for (size_t i = 0; i < n;) {
            while (i < n && p[i] == ' ')
                i++;
            size_t w = i;
            while (w < n && p[w] != ' ')
                w++;
            if (w == i) break;
            if (col > 0 && col + 1 + (w - i) > width) {
                sb_puts(b, "\n");
                sb_puts(b, prefix);
                col = 0;
            }
            sb_printf(b, "%s%.*s", col ? " " : "", (int)(w - i), p + i);
            col += (col ? 1 : 0) + (w - i);
            i = w;
        }
        while (b->len > 0 && b->data[b->len - 1] == ' ') /* "*" alone on a blank line */
            b->data[--b->len] = '\0';
        sb_puts(b, "\n");
        p += n;
        if (*p == '\n') p++;
    }
}

/* A doc comment: the .proto's comment (when any) as written, a blank line, then the generated
 * text (printf-style), reflowed. */
static void docf(strbuf *b, const char *proto_comment, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void docf(strbuf *b, const char *proto_comment, const char *fmt, ...) {
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    sb_puts(b, "/**\n");
    if (proto_comment && proto_comment[0]) {
        sb_comment_lines(b, " * ", proto_comment);
        sb_puts(b, " *\n");
    }
    reflow(b, " * ", text);
    sb_puts(b, " */\n");
}

static bool one_way(gen_call c) {
    return c == GEN_UNICAST || c == GEN_MULTICAST;
}

static bool over_config(gen_call c) {
    return c == GEN_MULTICAST || c == GEN_QUORUMCALL || c == GEN_CORRECTABLE;
}

static const char *nh_call_const(gen_call c) {
    switch (c) {
        case GEN_RPC:
            return "NH_CALL_RPC";
        case GEN_UNICAST:
            return "NH_CALL_UNICAST";
        case GEN_MULTICAST:
            return "NH_CALL_MULTICAST";
        case GEN_QUORUMCALL:
            return "NH_CALL_QUORUMCALL";
        case GEN_CORRECTABLE:
            return "NH_CALL_CORRECTABLE";
    }
    return "NH_CALL_RPC";
}

/* ---- header --------------------------------------------------------------------------- */

static void header_map_and_opts(strbuf *b, const gen_method *m) {
    const char *P = m->prefix, *Q = m->req.c_type, *R = m->resp.c_type;
    docf(b, NULL,
         "Per-node request mapping of %s: return NH_MAP_KEEP, NH_MAP_SKIP, or "
         "nh_map_replace(out, &other.base) to send another %s to node_id. Owner thread.",
         m->full_name, m->req.full);
    sb_printf(b,
              "typedef nh_map_verdict (*%s_map_fn)(uint32_t node_id, const %s *req, void *user,\n"
              "nh_buf *out);\n\n",
              P, Q);
    if (m->call == GEN_QUORUMCALL) {
        docf(b, NULL,
             "A quorum function of %s over decoded replies: replies[i] is raw[i] decoded (NULL "
             "for a node's error), n of them in arrival order; it also runs once with n = 0 "
             "when the call starts. To decide, point *result at a reply (or a message valid "
             "until the function returns) and return NH_QF_DONE; or return NH_QF_MORE, or "
             "nh_qf_fail(code, ...). Owner thread.",
             m->full_name);
        sb_printf(b,
                  "typedef nh_qf_verdict (*%s_qf_fn)(const %s *const *replies,\n"
                  "const nh_node_reply *raw, size_t n,\nsize_t config_size, void *user,\n"
                  "const %s **result);\n\n",
                  P, R, R);
    }
    docf(b, NULL, "Options of %s calls; zero-initialise (NULL: all defaults).", m->full_name);
    sb_printf(b, "typedef struct %s_opts {\n", P);
    sb_puts(b, "    nh_call_opts call; /**< timeout, cancellation, metadata */\n");
    if (m->call == GEN_QUORUMCALL) {
        sb_puts(b,
                "    nh_quorum quorum; /**< built-in rule (default majority) when qf is NULL */\n");
        sb_printf(b, "    %s_qf_fn qf; /**< typed quorum function, or NULL */\n", P);
        sb_puts(b, "    void *qf_user; /**< passed to qf */\n");
    }
    if (m->call == GEN_CORRECTABLE)
        sb_puts(b, "    size_t threshold; /**< the level that ends the call; 0: the configuration "
                   "size */\n");
    sb_printf(b, "    %s_map_fn map; /**< per-node request mapping, or NULL */\n", P);
    sb_puts(b, "    void *map_user; /**< passed to map */\n");
    sb_printf(b, "} %s_opts;\n\n", P);
}

static void header_client(strbuf *b, const gen_method *m) {
    const char *P = m->prefix, *Q = m->req.c_type, *R = m->resp.c_type, *F = m->full_name;
    switch (m->call) {
        case GEN_RPC:
            docf(b, NULL,
                 "Completion of %s_async(): reply is the decoded response, NULL on error (r->err "
                 "says "
                 "why); it is freed after the callback returns. Owner thread.",
                 P);
            sb_printf(
                b,
                "typedef void (*%s_done_fn)(const %s *reply, const nh_reply *r, void *user);\n\n",
                P, R);
            docf(
                b, NULL,
                "Starts %s on node; done runs once on the owner thread. Any thread. Returns 0 when "
                "started, -1 with err set when refused (done is then not called).",
                F);
            sb_printf(b,
                      "int %s_async(nh_node *node, const %s *req, const nh_call_opts *opts,\n"
                      "%s_done_fn done, void *user, nh_error *err);\n\n",
                      P, Q, P);
            docf(b, m->comments,
                 "RPC %s: calls node and waits for its response (not on the owner thread). On "
                 "success "
                 "returns 0 with *reply decoded (free it with "
                 "protobuf_c_message_free_unpacked(&(*reply)"
                 "->base, NULL)); -1 with err set otherwise.",
                 F);
            sb_printf(b,
                      "int %s(nh_node *node, const %s *req, const nh_call_opts *opts, %s **reply,\n"
                      "nh_error *err);\n\n",
                      P, Q, R);
            break;
        case GEN_UNICAST:
            docf(b, NULL,
                 "Starts %s (one-way) on node; done, when not NULL, runs once the request was "
                 "handed "
                 "to the transport or failed. Any thread.",
                 F);
            sb_printf(b,
                      "int %s_async(nh_node *node, const %s *req, const nh_call_opts *opts,\n"
                      "nh_reply_fn done, void *user, nh_error *err);\n\n",
                      P, Q);
            docf(
                b, m->comments,
                "Unicast %s: sends to node and waits until the request was handed to the transport "
                "(not on the owner thread). Returns 0, or -1 with err set.",
                F);
            sb_printf(b,
                      "int %s(nh_node *node, const %s *req, const nh_call_opts *opts, nh_error "
                      "*err);\n\n",
                      P, Q);
            break;
        case GEN_MULTICAST:
            header_map_and_opts(b, m);
            docf(b, NULL,
                 "Starts %s (one-way) to every node of cfg; done, when not NULL, runs once every "
                 "send "
                 "was confirmed or failed. Any thread.",
                 F);
            sb_printf(b,
                      "int %s_async(nh_config *cfg, const %s *req, const %s_opts *opts,\n"
                      "nh_mc_done_fn done, void *user, nh_error *err);\n\n",
                      P, Q, P);
            docf(b, m->comments,
                 "Multicast %s: sends to every node of cfg and waits for the send confirmations "
                 "(not "
                 "on the owner thread). Returns 0, or -1 with err set.",
                 F);
            sb_printf(
                b, "int %s(nh_config *cfg, const %s *req, const %s_opts *opts, nh_error *err);\n\n",
                P, Q, P);
            break;
        case GEN_QUORUMCALL:
            header_map_and_opts(b, m);
            docf(b, NULL,
                 "Completion of %s_async(): value is the decoded quorum value, NULL on error "
                 "(r->err "
                 "says why); replies[i] is r->replies[i] decoded (NULL for a node's error), "
                 "r->n_replies of them in arrival order (replies is NULL only when out of memory). "
                 "All of it is freed after the callback returns. Owner thread.",
                 P);
            sb_printf(b,
                      "typedef void (*%s_done_fn)(const %s *value, const %s *const *replies,\n"
                      "const nh_qc_result *r, void *user);\n\n",
                      P, R, R);
            docf(b, NULL,
                 "Starts %s over cfg; done runs once on the owner thread. Any thread. Returns 0 "
                 "when "
                 "started, -1 with err set when refused.",
                 F);
            sb_printf(b,
                      "int %s_async(nh_config *cfg, const %s *req, const %s_opts *opts,\n"
                      "%s_done_fn done, void *user, nh_error *err);\n\n",
                      P, Q, P, P);
            docf(b, m->comments,
                 "Quorum call %s over cfg, waiting for the quorum (not on the owner thread). On "
                 "success returns 0 with *value decoded (when value is not NULL; free it with "
                 "protobuf_c_message_free_unpacked(&(*value)->base, NULL)) and *out filled (when "
                 "not "
                 "NULL; nh_qc_outcome_free()). On failure -1 with err set, *value NULL and *out "
                 "holding what arrived.",
                 F);
            sb_printf(b,
                      "int %s(nh_config *cfg, const %s *req, const %s_opts *opts, %s **value,\n"
                      "nh_qc_outcome *out, nh_error *err);\n\n",
                      P, Q, P, R);
            break;
        case GEN_CORRECTABLE:
            header_map_and_opts(b, m);
            docf(b, NULL,
                 "Level callback of %s_start(): runs each time the level rises (value is the "
                 "decoded "
                 "newest reply) and once at the end (done true, err the outcome). Owner thread.",
                 P);
            sb_printf(b,
                      "typedef void (*%s_level_fn)(int level, const %s *value, bool done,\n"
                      "const nh_error *err, void *user);\n\n",
                      P, R);
            docf(
                b, NULL,
                "Starts the correctable call %s over cfg (servers stream replies). on_level may be "
                "NULL. Returns 0 with *out (release it with nh_correctable_free(); out may be "
                "NULL), "
                "or -1 with err set. Any thread.",
                F);
            sb_printf(
                b,
                "int %s_start(nh_config *cfg, const %s *req, const %s_opts *opts,\n"
                "%s_level_fn on_level, void *user, nh_correctable **out,\nnh_error *err);\n\n",
                P, Q, P, P);
            docf(b, m->comments,
                 "Correctable call %s over cfg, waiting until it ended (not on the owner thread): "
                 "*value is the newest reply decoded (NULL when none; free it with "
                 "protobuf_c_message_free_unpacked()), *level the level reached (both optional). "
                 "Returns 0 when the threshold was reached, -1 with err set otherwise.",
                 F);
            sb_printf(b,
                      "int %s(nh_config *cfg, const %s *req, const %s_opts *opts, %s **value,\n"
                      "int *level, nh_error *err);\n\n",
                      P, Q, P, R);
            break;
    }
}

static void header_server(strbuf *b, const gen_method *m) {
    const char *P = m->prefix, *Q = m->req.c_type, *R = m->resp.c_type, *F = m->full_name;
    char how[256];
    if (m->call == GEN_RPC || m->call == GEN_QUORUMCALL)
        snprintf(how, sizeof how,
                 "Answer with %s_reply() (before returning, or later after nh_ctx_defer()).", P);
    else if (m->call == GEN_CORRECTABLE)
        snprintf(how, sizeof how, "Send replies with %s_send() and end with nh_ctx_finish().", P);
    else
        snprintf(how, sizeof how, "One-way: there is no reply.");
    docf(b, m->comments,
         "Handler of %s, for a plugin to define (not static): the host decodes the request and "
         "calls it on the owner thread with the plugin's state; it must not block. %s",
         F, how);
    sb_printf(b, "void %s_handler(nh_server_ctx *ctx, const %s *req, void *state);\n\n", P, Q);
    if (m->call == GEN_RPC || m->call == GEN_QUORUMCALL) {
        docf(b, NULL,
             "Answers a %s call with reply and ends it. Returns 0; or -1 when the call already "
             "ended, or when out of memory (the call then ends with RESOURCE_EXHAUSTED).",
             F);
        sb_printf(b,
                  "static inline int %s_reply(nh_server_ctx *ctx, const %s *reply) {\n"
                  "    if (nh_ctx_reply_msg(ctx, &reply->base) == 0) return 0;\n"
                  "    nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, \"out of memory\");\n"
                  "    return -1;\n"
                  "}\n\n",
                  P, R);
    } else if (m->call == GEN_CORRECTABLE) {
        docf(b, NULL,
             "Sends one more reply of a %s call (end the call with nh_ctx_finish()). Returns 0; "
             "or -1 when the call already ended, or when out of memory (the call then ends with "
             "RESOURCE_EXHAUSTED).",
             F);
        sb_printf(b,
                  "static inline int %s_send(nh_server_ctx *ctx, const %s *reply) {\n"
                  "    if (nh_ctx_send_msg(ctx, &reply->base) == 0) return 0;\n"
                  "    nh_ctx_reply_error(ctx, NH_RESOURCE_EXHAUSTED, \"out of memory\");\n"
                  "    return -1;\n"
                  "}\n\n",
                  P, R);
    }
    docf(b, NULL, "A handler of %s served by a program with %s_serve().", F, P);
    sb_printf(b,
              "typedef void (*%s_handler_fn)(nh_server_ctx *ctx, const %s *req, void *user);\n\n",
              P, Q);
    docf(b, NULL,
         "Serves %s on rt's back-channel (a client program that servers call back): each "
         "request is decoded and handed to handler on the owner thread; the request is freed "
         "when the call ends. Returns 0, or -1 with err set.",
         F);
    sb_printf(b,
              "int %s_serve(nh_runtime *rt, %s_handler_fn handler, void *user, nh_error *err);\n\n",
              P, P);
    sb_printf(b,
              "/* The plugin method table's entry point of %s (NH_PLUGIN()). */\n"
              "static inline void %s__plugin(nh_server_ctx *ctx, const ProtobufCMessage *req,\n"
              "void *state) {\n"
              "    %s_handler(ctx, (const %s *)req, state);\n"
              "}\n\n",
              F, P, P, Q);
}

static void header_method(strbuf *b, const gen_method *m) {
    sb_printf(b, "/* ---- %s: %s, %s -> %s */\n\n", m->full_name, gen_call_name(m->call),
              m->req.full, m->resp.full);
    docf(b, m->comments, "The full name of %s (%s).", m->full_name, gen_call_name(m->call));
    sb_printf(b, "#define %s_METHOD \"%s\"\n\n", m->upper, m->full_name);
    header_client(b, m);
    header_server(b, m);
}

static void method_entry(strbuf *b, const gen_method *m) {
    sb_printf(b, "    {%s_METHOD, %s, \\\n", m->upper, nh_call_const(m->call));
    sb_printf(b, "     &%s, \\\n", m->req.descriptor);
    if (one_way(m->call))
        sb_puts(b, "     NULL, \\\n");
    else
        sb_printf(b, "     &%s, \\\n", m->resp.descriptor);
    sb_printf(b, "     %s__plugin}", m->prefix);
}

void emit_header(const gen_file *f, strbuf *b) {
    sb_printf(b,
              "/* Generated by protoc-gen-nodehost from %s: typed nodehost stubs (client calls,\n"
              " * handler signatures, the plugin method table). Do not edit: regenerate. */\n"
              "#ifndef %s\n#define %s\n\n#include <nodehost/nodehost.h>\n\n#include \"%s\"\n\n"
              "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n",
              f->proto, f->guard, f->guard, f->pbc_header);
    for (size_t s = 0; s < f->n_services; s++) {
        const gen_service *gs = &f->services[s];
        if (gs->comments && gs->comments[0]) {
            sb_printf(b, "/* ======== service %s\n *\n", gs->full_name);
            sb_comment_lines(b, " * ", gs->comments);
            sb_puts(b, " */\n\n");
        } else {
            sb_printf(b, "/* ======== service %s */\n\n", gs->full_name);
        }
        for (size_t m = 0; m < gs->n_methods; m++)
            header_method(b, &gs->methods[m]);
        docf(b, NULL,
             "Every method of %s as nh_plugin_method entries: a plugin serving the service "
             "defines each *_handler() and names this in NH_PLUGIN().",
             gs->full_name);
        sb_printf(b, "#define %s_NH_METHODS", gs->upper);
        for (size_t m = 0; m < gs->n_methods; m++) {
            sb_puts(b, m ? ", \\\n" : " \\\n");
            method_entry(b, &gs->methods[m]);
        }
        sb_puts(b, "\n\n");
    }
    docf(b, NULL, "Every method of every service of %s, for NH_PLUGIN().", f->proto);
    sb_printf(b, "#define %s_NH_METHODS", f->file_macro);
    bool first = true;
    for (size_t s = 0; s < f->n_services; s++) {
        if (f->services[s].n_methods == 0) continue;
        sb_printf(b, "%s%s_NH_METHODS", first ? " " : ", ", f->services[s].upper);
        first = false;
    }
    sb_printf(b, "\n\n#ifdef __cplusplus\n}\n#endif\n#endif /* %s */\n", f->guard);
}

/* ---- source --------------------------------------------------------------------------- */

static void source_fill(strbuf *b, const gen_method *m) {
    const char *P = m->prefix;
    sb_printf(b, "static void %s__fill(nh_stub_call *c, const %s_opts *o) {\n", P, P);
    sb_puts(b, "    *c = (nh_stub_call){\n");
    sb_printf(b, "        .method = %s_METHOD,\n", m->upper);
    sb_printf(b, "        .request = &%s,\n", m->req.descriptor);
    if (one_way(m->call))
        sb_puts(b, "        .response = NULL,\n    };\n");
    else
        sb_printf(b, "        .response = &%s,\n    };\n", m->resp.descriptor);
    sb_puts(b, "    if (!o) return;\n    c->call = &o->call;\n");
    if (m->call == GEN_QUORUMCALL) {
        sb_printf(b,
                  "    c->quorum = o->quorum;\n"
                  "    if (o->qf) {\n"
                  "        c->qf_tramp = %s__qf;\n"
                  "        c->qf = (nh_stub_fn)o->qf;\n"
                  "        c->qf_user = o->qf_user;\n"
                  "    }\n",
                  P);
    }
    if (m->call == GEN_CORRECTABLE) sb_puts(b, "    c->quorum.threshold = o->threshold;\n");
    sb_printf(b,
              "    if (o->map) {\n"
              "        c->map_tramp = %s__map;\n"
              "        c->map = (nh_stub_fn)o->map;\n"
              "        c->map_user = o->map_user;\n"
              "    }\n}\n\n",
              P);
}

static void source_map(strbuf *b, const gen_method *m) {
    const char *P = m->prefix, *Q = m->req.c_type;
    sb_printf(
        b,
        "static nh_map_verdict %s__map(nh_stub_fn fn, uint32_t node_id,\n"
        "                              const ProtobufCMessage *req, void *user, nh_buf *out) {\n"
        "    return ((%s_map_fn)fn)(node_id, (const %s *)req, user, out);\n}\n\n",
        P, P, Q);
}

/* A request argument as the stubs take it. */
#define REQ_BASE "req ? &req->base : NULL"

static void source_method(strbuf *b, const gen_method *m) {
    const char *P = m->prefix, *R = m->resp.c_type, *U = m->upper;
    sb_printf(b, "/* ---- %s */\n\n", m->full_name);
    if (over_config(m->call)) source_map(b, m);
    switch (m->call) {
        case GEN_RPC:
            sb_printf(b,
                      "static void %s__done(nh_stub_fn fn, const ProtobufCMessage *resp, const "
                      "nh_reply *r,\n"
                      "                     void *user) {\n"
                      "    ((%s_done_fn)fn)((const %s *)resp, r, user);\n}\n\n",
                      P, P, R);
            sb_printf(b,
                      "static const nh_stub_call %s__call = {\n"
                      "    .method = %s_METHOD,\n"
                      "    .request = &%s,\n"
                      "    .response = &%s,\n"
                      "};\n\n",
                      P, U, m->req.descriptor, m->resp.descriptor);
            sb_printf(b,
                      "int %s_async(nh_node *node, const %s *req, const nh_call_opts *opts,\n"
                      "             %s_done_fn done, void *user, nh_error *err) {\n"
                      "    nh_stub_call c = %s__call;\n"
                      "    c.call = opts;\n"
                      "    return nh_stub_rpc_async(node, &c, " REQ_BASE
                      ", %s__done, (nh_stub_fn)done,\n"
                      "                             user, err);\n}\n\n",
                      P, m->req.c_type, P, P, P);
            sb_printf(b,
                      "int %s(nh_node *node, const %s *req, const nh_call_opts *opts, %s **reply,\n"
                      "       nh_error *err) {\n"
                      "    nh_stub_call c = %s__call;\n"
                      "    c.call = opts;\n"
                      "    ProtobufCMessage *m = NULL;\n"
                      "    int rc = nh_stub_rpc(node, &c, " REQ_BASE ", reply ? &m : NULL, err);\n"
                      "    if (reply) *reply = (%s *)m;\n"
                      "    return rc;\n}\n\n",
                      P, m->req.c_type, R, P, R);
            break;
        case GEN_UNICAST:
            sb_printf(b,
                      "static const nh_stub_call %s__call = {\n"
                      "    .method = %s_METHOD,\n"
                      "    .request = &%s,\n"
                      "};\n\n",
                      P, U, m->req.descriptor);
            sb_printf(b,
                      "int %s_async(nh_node *node, const %s *req, const nh_call_opts *opts,\n"
                      "             nh_reply_fn done, void *user, nh_error *err) {\n"
                      "    nh_stub_call c = %s__call;\n"
                      "    c.call = opts;\n"
                      "    return nh_stub_unicast_async(node, &c, " REQ_BASE
                      ", done, user, err);\n}\n\n",
                      P, m->req.c_type, P);
            sb_printf(
                b,
                "int %s(nh_node *node, const %s *req, const nh_call_opts *opts, nh_error *err) {\n"
                "    nh_stub_call c = %s__call;\n"
                "    c.call = opts;\n"
                "    return nh_stub_unicast(node, &c, " REQ_BASE ", err);\n}\n\n",
                P, m->req.c_type, P);
            break;
        case GEN_MULTICAST:
            source_fill(b, m);
            sb_printf(b,
                      "int %s_async(nh_config *cfg, const %s *req, const %s_opts *opts,\n"
                      "             nh_mc_done_fn done, void *user, nh_error *err) {\n"
                      "    nh_stub_call c;\n"
                      "    %s__fill(&c, opts);\n"
                      "    return nh_stub_multicast_async(cfg, &c, " REQ_BASE
                      ", done, user, err);\n}\n\n",
                      P, m->req.c_type, P, P);
            sb_printf(
                b,
                "int %s(nh_config *cfg, const %s *req, const %s_opts *opts, nh_error *err) {\n"
                "    nh_stub_call c;\n"
                "    %s__fill(&c, opts);\n"
                "    return nh_stub_multicast(cfg, &c, " REQ_BASE ", err);\n}\n\n",
                P, m->req.c_type, P, P);
            break;
        case GEN_QUORUMCALL:
            sb_printf(b,
                      "static nh_qf_verdict %s__qf(nh_stub_fn fn, const ProtobufCMessage *const "
                      "*replies,\n"
                      "                            const nh_node_reply *raw, size_t n, size_t "
                      "config_size,\n"
                      "                            void *user, const ProtobufCMessage **result) {\n"
                      "    const %s *value = NULL;\n"
                      "    nh_qf_verdict v = ((%s_qf_fn)fn)((const %s *const *)replies, raw, n,\n"
                      "                                     config_size, user, &value);\n"
                      "    *result = value ? &value->base : NULL;\n"
                      "    return v;\n}\n\n",
                      P, R, P, R);
            sb_printf(
                b,
                "static void %s__done(nh_stub_fn fn, const ProtobufCMessage *value,\n"
                "const ProtobufCMessage *const *replies, const nh_qc_result *r, void *user) {\n"
                "    ((%s_done_fn)fn)((const %s *)value, (const %s *const *)replies, r, "
                "user);\n}\n\n",
                P, P, R, R);
            source_fill(b, m);
            sb_printf(b,
                      "int %s_async(nh_config *cfg, const %s *req, const %s_opts *opts,\n"
                      "             %s_done_fn done, void *user, nh_error *err) {\n"
                      "    nh_stub_call c;\n"
                      "    %s__fill(&c, opts);\n"
                      "    return nh_stub_quorum_call_async(cfg, &c, " REQ_BASE ", %s__done,\n"
                      "                                     (nh_stub_fn)done, user, err);\n}\n\n",
                      P, m->req.c_type, P, P, P, P);
            sb_printf(b,
                      "int %s(nh_config *cfg, const %s *req, const %s_opts *opts, %s **value,\n"
                      "       nh_qc_outcome *out, nh_error *err) {\n"
                      "    nh_stub_call c;\n"
                      "    %s__fill(&c, opts);\n"
                      "    ProtobufCMessage *m = NULL;\n"
                      "    int rc = nh_stub_quorum_call(cfg, &c, " REQ_BASE
                      ", value ? &m : NULL, out, err);\n"
                      "    if (value) *value = (%s *)m;\n"
                      "    return rc;\n}\n\n",
                      P, m->req.c_type, P, R, P, R);
            break;
        case GEN_CORRECTABLE:
            sb_printf(
                b,
                "static void %s__level(nh_stub_fn fn, int level, const ProtobufCMessage *value,\n"
                "                      bool done, const nh_error *err, void *user) {\n"
                "    ((%s_level_fn)fn)(level, (const %s *)value, done, err, user);\n}\n\n",
                P, P, R);
            source_fill(b, m);
            sb_printf(b,
                      "int %s_start(nh_config *cfg, const %s *req, const %s_opts *opts,\n"
                      "             %s_level_fn on_level, void *user, nh_correctable **out,\n"
                      "             nh_error *err) {\n"
                      "    nh_stub_call c;\n"
                      "    %s__fill(&c, opts);\n"
                      "    return nh_stub_correctable_start(cfg, &c, " REQ_BASE ", true,\n"
                      "                                     on_level ? %s__level : NULL,\n"
                      "                                     (nh_stub_fn)on_level, user, out, "
                      "err);\n}\n\n",
                      P, m->req.c_type, P, P, P, P);
            sb_printf(b,
                      "int %s(nh_config *cfg, const %s *req, const %s_opts *opts, %s **value,\n"
                      "       int *level, nh_error *err) {\n"
                      "    nh_stub_call c;\n"
                      "    %s__fill(&c, opts);\n"
                      "    ProtobufCMessage *m = NULL;\n"
                      "    int rc = nh_stub_correctable(cfg, &c, " REQ_BASE
                      ", true, value ? &m : NULL,\n"
                      "                                 level, err);\n"
                      "    if (value) *value = (%s *)m;\n"
                      "    return rc;\n}\n\n",
                      P, m->req.c_type, P, R, P, R);
            break;
    }
    /* Serving it from a program's back-channel. */
    sb_printf(
        b,
        "static void %s__serve(nh_stub_fn fn, nh_server_ctx *ctx, const ProtobufCMessage *req,\n"
        "                      void *user) {\n"
        "    ((%s_handler_fn)fn)(ctx, (const %s *)req, user);\n}\n\n",
        P, P, m->req.c_type);
    sb_printf(b,
              "int %s_serve(nh_runtime *rt, %s_handler_fn handler, void *user, nh_error *err) {\n"
              "    const nh_stub_call c = {\n"
              "        .method = %s_METHOD,\n"
              "        .request = &%s,\n"
              "    };\n"
              "    return nh_stub_serve(rt, &c, %s__serve, (nh_stub_fn)handler, user, err);\n}\n\n",
              P, P, U, m->req.descriptor, P);
}

void emit_source(const gen_file *f, strbuf *b) {
    sb_printf(b,
              "/* Generated by protoc-gen-nodehost from %s: the typed client calls. Do not "
              "edit:\n * regenerate. */\n#include \"%s.nh.h\"\n\n",
              f->proto, f->out_stem);
    for (size_t s = 0; s < f->n_services; s++)
        for (size_t m = 0; m < f->services[s].n_methods; m++)
            source_method(b, &f->services[s].methods[m]);
}
