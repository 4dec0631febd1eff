/* The status code for a failed file operation (errno), shared by the loader and the hashing of
 * plugin files. */
#ifndef NH_HOST_FILE_ERROR_H
#define NH_HOST_FILE_ERROR_H

#include <nodehost/status.h>

#include <errno.h>

/** NOT_FOUND for a missing file or directory, PERMISSION_DENIED when access is refused,
 * INTERNAL otherwise. */
static inline nh_code nh_file_error_code(int e) {
    switch (e) {
        case ENOENT:
        case ENOTDIR:
            return NH_NOT_FOUND;
        case EACCES:
        case EPERM:
            return NH_PERMISSION_DENIED;
        default:
            return NH_INTERNAL;
    }
}

#endif
