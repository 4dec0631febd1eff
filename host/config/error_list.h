/* A list of the errors found in one configuration file, for checks that go on after an error
 * (`nodehost --check-config` reports every error of the file, not only the first).
 *
 * Checks record what they find and continue where that is safe. Messages are kept whole (no
 * NH_ERROR_MESSAGE_MAX limit for those added with nh_error_list_addf()). A message starting with
 * `FILE:LINE:COL: ` for the list's file has that position: nh_error_list_sort() puts the errors
 * in file order (stable: errors at one position keep the order they were found in; errors
 * without a position go last). At most NH_ERROR_LIST_KEEP messages are kept, later ones only
 * counted.
 *
 * Printed (nh_error_list_print()), the first `shown` errors are one line each, then, when there
 * is more than one error, a summary line:
 *
 * ```
 * conf/node.yaml:4:1: unknown key 'peer' (expected one of: version, node, ...)
 * conf/node.yaml:9:15: log.level: must be one of error, warn, info, debug, got "loud"
 * conf/node.yaml: 2 errors
 * ```
 *
 * or, with more than `shown`: `conf/node.yaml: ... and 7 more errors (27 in all)`. */
#ifndef NH_HOST_ERROR_LIST_H
#define NH_HOST_ERROR_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <nodehost/conf.h>
#include <nodehost/status.h>

/** How many errors `nodehost --check-config` prints before it only counts the rest. */
#define NH_ERROR_LIST_SHOWN 20

/** Most messages a list keeps; errors beyond are counted only. */
#define NH_ERROR_LIST_KEEP 1000

/** One recorded error. */
typedef struct nh_error_entry {
    char *message;      /**< the whole message (malloc'ed) */
    nh_code code;       /**< NH_INVALID_ARGUMENT for configuration mistakes */
    uint32_t line, col; /**< its position in the list's file; 0, 0: none */
} nh_error_entry;

/** The errors of one file. Zero-initialised or nh_error_list_init(); freed with
 * nh_error_list_free(). Not thread-safe. */
typedef struct nh_error_list {
    char *file;            /**< the file's name as messages start with it (NULL: none) */
    nh_error_entry *items; /**< count kept entries, in the order found until sorted */
    size_t count, cap;     /**< kept entries, allocated entries */
    size_t dropped;        /**< errors counted but not kept (over NH_ERROR_LIST_KEEP, or no
                                memory to keep them) */
    bool exhausted;        /**< memory ran out (an NH_RESOURCE_EXHAUSTED error was recorded,
                                or a message could not be kept) */
    bool lost;             /**< a message could not be kept for lack of memory */
} nh_error_list;

/** Prepares an empty list for the errors of file (copied; NULL: no positions are parsed). */
void nh_error_list_init(nh_error_list *l, const char *file);

/** Records a copy of err (its code and message). Returns -1, so that a check can end with
 * `return nh_error_list_add(...)`. */
int nh_error_list_add(nh_error_list *l, const nh_error *err);

/** Records a formatted message of any length with a code. Returns -1. */
int nh_error_list_addf(nh_error_list *l, nh_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Records `FILE:LINE:COL: PATH: message` at n's value position (as nh_conf_error() formats it,
 * without its length limit); n NULL: the message alone. Returns -1. */
int nh_error_list_add_at(nh_error_list *l, const nh_conf_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** All errors recorded: kept plus dropped. */
size_t nh_error_list_total(const nh_error_list *l);

/** Whether an error with code NH_RESOURCE_EXHAUSTED was recorded (or one could not be kept):
 * going on is pointless. */
bool nh_error_list_exhausted(const nh_error_list *l);

/** Puts the kept errors in file order (stable; errors without a position last). */
void nh_error_list_sort(nh_error_list *l);

/** Copies the first kept error into err (code, kind NH_ERR_LOCAL, message cut to
 * NH_ERROR_MESSAGE_MAX - 1 characters), "out of memory" when only dropped ones exist. Returns -1
 * when there is an error, 0 (err untouched) when the list is empty. */
int nh_error_list_first(const nh_error_list *l, nh_error *err);

/** Prints the first `shown` kept errors, one per line, then the summary line described above
 * (none for a single error). */
void nh_error_list_print(const nh_error_list *l, size_t shown, FILE *out);

/** Frees the messages; the list is empty afterwards (and keeps no file). Accepts a zeroed list. */
void nh_error_list_free(nh_error_list *l);

#endif
