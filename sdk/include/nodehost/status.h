/* nodehost: status codes and errors shared by every part of the SDK. */
#ifndef NODEHOST_STATUS_H
#define NODEHOST_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a symbol exported by libnodehost. */
#if defined(NH_BUILDING_LIBRARY)
#define NH_API __attribute__((visibility("default")))
#else
#define NH_API
#endif

/** Status codes. The numbers are gRPC's (and so Gorums') status codes, used on the wire. */
typedef enum nh_code {
    NH_OK = 0,                  /**< success */
    NH_CANCELLED = 1,           /**< the caller cancelled the call */
    NH_UNKNOWN = 2,             /**< a handler error that carried no code */
    NH_INVALID_ARGUMENT = 3,    /**< a bad argument */
    NH_DEADLINE_EXCEEDED = 4,   /**< the call's timeout passed */
    NH_NOT_FOUND = 5,           /**< something named does not exist */
    NH_ALREADY_EXISTS = 6,      /**< something named exists already */
    NH_PERMISSION_DENIED = 7,   /**< not allowed */
    NH_RESOURCE_EXHAUSTED = 8,  /**< a limit was reached (message size, queue) */
    NH_FAILED_PRECONDITION = 9, /**< the call is not allowed in this state or on this thread */
    NH_ABORTED = 10,            /**< aborted */
    NH_OUT_OF_RANGE = 11,       /**< out of range */
    NH_UNIMPLEMENTED = 12,      /**< no handler for the method */
    NH_INTERNAL = 13,           /**< an internal error */
    NH_UNAVAILABLE = 14,        /**< the node cannot be reached, its stream broke, or it closed */
    NH_DATA_LOSS = 15,          /**< data loss */
    NH_UNAUTHENTICATED = 16,    /**< not authenticated */
} nh_code;

/** What kind of failure an nh_error describes (who produced it). */
typedef enum nh_err_kind {
    NH_ERR_NONE = 0,         /**< no error */
    NH_ERR_STATUS = 1,       /**< the remote handler answered with an error status */
    NH_ERR_TRANSPORT = 2,    /**< the connection or stream failed (gRPC status of the stream) */
    NH_ERR_TIMEOUT = 3,      /**< the call's timeout passed before an answer */
    NH_ERR_CANCELLED = 4,    /**< the caller cancelled the call */
    NH_ERR_CLOSED = 5,       /**< the node or runtime was closed ("node closed") */
    NH_ERR_LOCAL = 6,        /**< refused locally: bad argument, wrong thread, limit reached */
    NH_ERR_INCOMPLETE = 7,   /**< a quorum call ended without its quorum ("incomplete call");
                                  code says why: DEADLINE_EXCEEDED, CANCELLED, or UNAVAILABLE
                                  when too many nodes failed */
    NH_ERR_SEND_FAILURE = 8, /**< a multicast could not be sent to some nodes ("send failure") */
} nh_err_kind;

/** Size of the message buffer of an nh_error, including the terminating NUL. */
#define NH_ERROR_MESSAGE_MAX 320

/**
 * An error: a status code, who produced it, the node it concerns (0 if none), and a message
 * that names the node and the cause, for example
 * `node 2 (127.0.0.1:7002): timeout after 100 ms`. Plain value; copy it freely.
 */
typedef struct nh_error {
    nh_code code;                       /**< status code; NH_OK when there is no error */
    nh_err_kind kind;                   /**< who produced the error */
    uint32_t node_id;                   /**< the node concerned, 0 if none */
    char message[NH_ERROR_MESSAGE_MAX]; /**< human-readable text, always NUL-terminated */
} nh_error;

/** The canonical upper-case name of a code ("UNAVAILABLE"); "UNKNOWN_CODE" for others. */
NH_API const char *nh_code_name(nh_code code);

/** A short name for an error kind ("status", "transport", "timeout", ...). */
NH_API const char *nh_err_kind_name(nh_err_kind kind);

/** Maps a status code read from the wire to an nh_code; out-of-range values become NH_UNKNOWN. */
NH_API nh_code nh_code_from_wire(int64_t wire_code);

/** Clears an error to "no error". Accepts NULL. */
NH_API void nh_error_clear(nh_error *err);

/**
 * Sets an error (printf-style message). Accepts a NULL err (then does nothing).
 * Returns -1 so that `return nh_error_set(...)` reports failure.
 */
NH_API int nh_error_set(nh_error *err, nh_code code, nh_err_kind kind, uint32_t node_id,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/** One metadata pair (gRPC header or per-message entry). Keys are lower-case. */
typedef struct nh_metadata {
    const char *key;   /**< lower-case key, NUL-terminated */
    const char *value; /**< value, NUL-terminated */
} nh_metadata;

/** An owned byte buffer returned by blocking calls. Release with nh_buf_free(). */
typedef struct nh_buf {
    uint8_t *data; /**< the bytes (may be NULL when len is 0) */
    size_t len;    /**< number of bytes */
} nh_buf;

/** Frees the bytes of a buffer and resets it to empty. Accepts NULL. */
NH_API void nh_buf_free(nh_buf *buf);

/** The library version, "MAJOR.MINOR.PATCH". */
NH_API const char *nh_version(void);

#ifdef __cplusplus
}
#endif
#endif
