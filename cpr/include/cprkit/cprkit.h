/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprkit — live update of VFIO programs by exec'ing a new binary in place.
 *
 * Conventions for every function here:
 *  - int returns are >= 0 on success and a negative errno on failure;
 *  - on failure the context keeps a human-readable reason, see
 *    cprkit_last_error();
 *  - ret_* out-parameters are written only on success;
 *  - the library never prints; it calls the log function set with
 *    cprkit_set_log_fn().
 */
#ifndef CPRKIT_H
#define CPRKIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Environment variable that carries the state blob fd across exec. */
#define CPRKIT_STATE_FD_ENV "CPRKIT_STATE_FD"

/* Format major version of the state blob this library writes. */
#define CPRKIT_FORMAT_MAJOR 1

typedef struct cprkit_ctx cprkit_ctx;

/* Types of preserved fds, as recorded in the state blob. */
enum cprkit_fd_type {
    CPRKIT_FD_ANY = 0, /* in lookups: do not check the type */
    CPRKIT_FD_MEMFD = 1,
    CPRKIT_FD_EVENTFD = 2,
    CPRKIT_FD_VFIO_CONTAINER = 3,
    CPRKIT_FD_VFIO_GROUP = 4,
    CPRKIT_FD_VFIO_DEVICE = 5,
    CPRKIT_FD_SOCKET = 6,
    CPRKIT_FD_PIPE = 7,
    CPRKIT_FD_REGULAR_FILE = 8,
    CPRKIT_FD_CHAR_DEVICE = 9,
    CPRKIT_FD_DIRECTORY = 10,
    CPRKIT_FD_OTHER = 11,
};

/* Returns a static name such as "eventfd" for a type. */
const char *cprkit_fd_type_name(enum cprkit_fd_type type);

/* ---- context ------------------------------------------------------------ */

/*
 * cprkit_new:
 * Creates a context. Does not look at the environment; call
 * cprkit_load_incoming() early in start-up to pick up state from a previous
 * binary.
 * Returns: 0 on success or < 0 (-ENOMEM).
 */
int cprkit_new(cprkit_ctx **ret_ctx);

/* Frees the context. Preserved fds stay open: they belong to the caller. */
void cprkit_free(cprkit_ctx *ctx);

/* Log priorities are syslog's (LOG_ERR = 3 ... LOG_DEBUG = 7). */
typedef void (*cprkit_log_fn)(void *userdata, int priority, const char *msg);

/* Sets the log function (NULL: no logging) and the highest priority passed
 * to it (default LOG_INFO). */
void cprkit_set_log_fn(cprkit_ctx *ctx, cprkit_log_fn fn, void *userdata);
void cprkit_set_log_priority(cprkit_ctx *ctx, int max_priority);

/* Reason for the last failure on this context, or "" if none. Valid until
 * the next call on the context. */
const char *cprkit_last_error(const cprkit_ctx *ctx);

/* ---- incoming side ------------------------------------------------------ */

/*
 * cprkit_load_incoming:
 * If CPRKIT_STATE_FD is set, reads and validates the state blob (framing,
 * checksum, version, then every recorded fd: still open, same object, same
 * type), unsets the variable and sets FD_CLOEXEC on every preserved fd and
 * on the blob fd.
 *
 * On a validation failure the context still knows how to roll back (the
 * rollback command line is kept in the blob frame, readable even when the
 * payload is not), so the caller can call cprkit_rollback().
 *
 * Returns: 1 if state was loaded, 0 if this process was not started by an
 * update, < 0 on failure (-EBADMSG corrupt blob, -EPROTONOSUPPORT unknown
 * format version, -EBADF/-ESTALE a recorded fd is missing or changed).
 */
int cprkit_load_incoming(cprkit_ctx *ctx);

/* True after a successful cprkit_load_incoming() until cprkit_commit(). */
bool cprkit_is_incoming(const cprkit_ctx *ctx);

/* True if the loaded state was handed back by a newer binary that rolled
 * back. cprkit_rollback_reason() then says why. */
bool cprkit_is_rollback(const cprkit_ctx *ctx);
const char *cprkit_rollback_reason(const cprkit_ctx *ctx);

/* Number of completed forward updates of this process (0 in a process that
 * was started normally). */
uint64_t cprkit_generation(const cprkit_ctx *ctx);

/*
 * cprkit_commit:
 * Ends the incoming phase: every preserved fd must have been claimed with
 * cprkit_fd_find() (or dropped with cprkit_fd_remove()), otherwise the
 * commit fails with -EBUSY and the message lists what was left. On success
 * the blob is discarded; claimed fds stay registered for the next update.
 * Returns: 0 on success or < 0.
 */
int cprkit_commit(cprkit_ctx *ctx);

/*
 * cprkit_rollback:
 * From the incoming side, before commit: hands the state back to the binary
 * that wrote it by exec'ing the rollback command line recorded in the blob.
 * Returns only on failure (< 0); the process keeps running then.
 */
int cprkit_rollback(cprkit_ctx *ctx, const char *reason);

/* Monotonic timestamp (ns) recorded by the previous binary for a phase such
 * as "exec", or 0 if unknown. Lets the new binary measure the blackout. */
uint64_t cprkit_timestamp(const cprkit_ctx *ctx, const char *phase);

/* ---- named fds ---------------------------------------------------------- */

/*
 * cprkit_fd_save:
 * Registers fd under (name, id) to be preserved across the next exec. The
 * fd keeps FD_CLOEXEC until the exec itself. Saving an existing (name, id)
 * replaces it.
 * Returns: 0 on success or < 0 (-EBADF fd not open, -EINVAL bad name).
 */
int cprkit_fd_save(cprkit_ctx *ctx, const char *name, int id, int fd);

/*
 * cprkit_fd_find:
 * Looks up (name, id). On the incoming side this claims a preserved fd;
 * expected_type (CPRKIT_FD_ANY to skip) must match what was recorded.
 * Returns: the fd (>= 0), -ENOENT if not registered, -EMEDIUMTYPE if the
 * recorded type differs from expected_type.
 */
int cprkit_fd_find(cprkit_ctx *ctx, const char *name, int id,
                   enum cprkit_fd_type expected_type);

/* Forgets (name, id); the fd itself is not closed. Returns 0 or -ENOENT. */
int cprkit_fd_remove(cprkit_ctx *ctx, const char *name, int id);

/* Number of registered fds. */
size_t cprkit_fd_count(const cprkit_ctx *ctx);

/* ---- application sections ----------------------------------------------- */

/* Stores a copy of data under name (replacing an existing section).
 * Returns: 0 or < 0. */
int cprkit_section_put(cprkit_ctx *ctx, const char *name, const void *data,
                       size_t size);

/* Points *ret_data at the section's bytes (owned by ctx, valid until the
 * section is replaced or the ctx freed). Returns: 0 or -ENOENT. */
int cprkit_section_get(cprkit_ctx *ctx, const char *name,
                       const void **ret_data, size_t *ret_size);

/* ---- exec --------------------------------------------------------------- */

struct cprkit_exec_opts {
    /* Size of this struct, for future extension: set to sizeof(). */
    size_t size;
    /* Environment for the new binary; NULL: the current environ. */
    char *const *envp;
    /* Command line to exec to roll back to this binary; NULL: this
     * process's own executable (/proc/self/exe) and argv
     * (/proc/self/cmdline). */
    const char *rollback_path;
    char *const *rollback_argv;
};

/*
 * cprkit_exec:
 * Writes the state blob into a sealed memfd, clears FD_CLOEXEC on the
 * preserved fds (only now, so they never leak into another child), passes
 * the blob via CPRKIT_STATE_FD and execs path with argv.
 *
 * Checks before touching anything: path exists and is executable, every
 * registered fd is still open.
 *
 * If execve fails, FD_CLOEXEC is set again, the blob is dropped and the
 * process keeps working as before.
 * Returns: only on failure, < 0.
 */
int cprkit_exec(cprkit_ctx *ctx, const char *path, char *const argv[],
                const struct cprkit_exec_opts *opts);

#ifdef __cplusplus
}
#endif

#endif /* CPRKIT_H */
