/* nodehost program: SHA-256 (FIPS 180-4), the identity of plugin files in logs, in the names of
 * the loader's copies, and for the plugin watch (a change is a change of these bytes).
 *
 * A plain, self-contained implementation (the host links nothing but libc for this). The
 * incremental functions let a caller hash while it does something else with the bytes (the
 * loader hashes while copying); nh_sha256_file() hashes a whole file.
 *
 * Thread safety: no shared state; an nh_sha256 value must not be used by two threads at once.
 */
#ifndef NH_HOST_PLUGIN_SHA256_H
#define NH_HOST_PLUGIN_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include <nodehost/status.h>

/** Length of a digest in lower-case hex, without the NUL. */
#define NH_SHA256_HEX_LEN 64

/** An incremental SHA-256 computation. Plain value; no resources to release. */
typedef struct nh_sha256 {
    uint32_t h[8];     /**< the chaining state */
    uint64_t total;    /**< bytes hashed so far */
    uint8_t block[64]; /**< the partial block */
    size_t fill;       /**< bytes in block */
} nh_sha256;

/** Starts a computation (also resets one in progress). */
void nh_sha256_init(nh_sha256 *s);

/** Hashes n more bytes at p (n may be 0). */
void nh_sha256_update(nh_sha256 *s, const void *p, size_t n);

/**
 * Finishes: writes the digest as 64 lower-case hex digits and a NUL into hex (the format of
 * `sha256sum`). The computation must be started again with nh_sha256_init() before reuse.
 */
void nh_sha256_final_hex(nh_sha256 *s, char hex[NH_SHA256_HEX_LEN + 1]);

/**
 * Hashes the whole file at path (opened read-only, following symbolic links) into hex.
 * Returns 0, or -1 with err (NH_ERR_LOCAL; NH_NOT_FOUND when the file or a directory on the way
 * is missing, NH_PERMISSION_DENIED when it cannot be read, NH_INVALID_ARGUMENT when it is not a
 * regular file, NH_INTERNAL for read errors): `<path>: <reason>`. On failure hex is "".
 */
int nh_sha256_file(const char *path, char hex[NH_SHA256_HEX_LEN + 1], nh_error *err);

#endif
