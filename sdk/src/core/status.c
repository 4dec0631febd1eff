/* Status codes and errors shared by every part of the SDK. */
#include <nodehost/status.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef NH_VERSION_STRING
#define NH_VERSION_STRING "0.0.0"
#endif

static const char *const code_names[] = {
    [NH_OK] = "OK",
    [NH_CANCELLED] = "CANCELLED",
    [NH_UNKNOWN] = "UNKNOWN",
    [NH_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
    [NH_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
    [NH_NOT_FOUND] = "NOT_FOUND",
    [NH_ALREADY_EXISTS] = "ALREADY_EXISTS",
    [NH_PERMISSION_DENIED] = "PERMISSION_DENIED",
    [NH_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
    [NH_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
    [NH_ABORTED] = "ABORTED",
    [NH_OUT_OF_RANGE] = "OUT_OF_RANGE",
    [NH_UNIMPLEMENTED] = "UNIMPLEMENTED",
    [NH_INTERNAL] = "INTERNAL",
    [NH_UNAVAILABLE] = "UNAVAILABLE",
    [NH_DATA_LOSS] = "DATA_LOSS",
    [NH_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

static const char *const kind_names[] = {
    [NH_ERR_NONE] = "none",
    [NH_ERR_STATUS] = "status",
    [NH_ERR_TRANSPORT] = "transport",
    [NH_ERR_TIMEOUT] = "timeout",
    [NH_ERR_CANCELLED] = "cancelled",
    [NH_ERR_CLOSED] = "closed",
    [NH_ERR_LOCAL] = "local",
    [NH_ERR_INCOMPLETE] = "incomplete",
    [NH_ERR_SEND_FAILURE] = "send failure",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *nh_code_name(nh_code code) {
    unsigned u = (unsigned)code;
    return u < COUNT(code_names) ? code_names[u] : "UNKNOWN_CODE";
}

const char *nh_err_kind_name(nh_err_kind kind) {
    unsigned u = (unsigned)kind;
    return u < COUNT(kind_names) ? kind_names[u] : "unknown";
}

nh_code nh_code_from_wire(int64_t wire_code) {
    if (wire_code < NH_OK || wire_code > NH_UNAUTHENTICATED) return NH_UNKNOWN;
    return (nh_code)wire_code;
}

void nh_error_clear(nh_error *err) {
    if (err == NULL) return;
    err->code = NH_OK;
    err->kind = NH_ERR_NONE;
    err->node_id = 0;
    err->message[0] = '\0';
}

int nh_error_set(nh_error *err, nh_code code, nh_err_kind kind, uint32_t node_id, const char *fmt,
                 ...) {
    if (err == NULL) return -1;
    err->code = code;
    err->kind = kind;
    err->node_id = node_id;
    err->message[0] = '\0';
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        if (n < 0) err->message[0] = '\0';
    }
    err->message[sizeof(err->message) - 1] = '\0';
    return -1;
}

void nh_buf_free(nh_buf *buf) {
    if (buf == NULL) return;
    free(buf->data);
    buf->data = NULL;
    buf->len = 0;
}

const char *nh_version(void) {
    return NH_VERSION_STRING;
}
