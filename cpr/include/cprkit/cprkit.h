/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprkit — live update of VFIO programs by exec'ing a new binary in place.
 * This header is the core (libcprkit: pkg-config cprkit); the VFIO
 * find-or-create hooks are in <cprkit/cprkit-vfio.h>.
 *
 * Conventions for every function here:
 *  - int returns are >= 0 on success and a negative errno on failure;
 *  - on failure the context keeps a human-readable reason, see
 *    cprkit_last_error();
 *  - ret_* out-parameters are written only on success;
 *  - the library never prints; it calls the log function set with
 *    cprkit_set_log_fn() (unless the operator sets CPRKIT_LOG and the
 *    application sets no log function: then it writes to stderr).
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

/* Environment variable read by cprkit_new(): the log priority, a syslog
 * name ("debug", "info", "notice", "warning", "err", ...) or 0-7. */
#define CPRKIT_LOG_ENV "CPRKIT_LOG"

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

/* Returns a static name such as "eventfd" for a type. Since: 0.1 */
const char *cprkit_fd_type_name(enum cprkit_fd_type type);

/* ---- context ------------------------------------------------------------ */

/*
 * cprkit_new:
 * Creates a context. Of the environment it reads only CPRKIT_LOG (see
 * cprkit_set_log_priority()); call cprkit_load_incoming() early in
 * start-up to pick up state from a previous binary.
 * Returns: 0 on success or < 0 (-ENOMEM).
 * Since: 0.1
 */
int cprkit_new(cprkit_ctx **ret_ctx);

/* Frees the context. Preserved fds stay open: they belong to the caller.
 * Since: 0.1 */
void cprkit_free(cprkit_ctx *ctx);

/* Log priorities are syslog's (LOG_ERR = 3 ... LOG_DEBUG = 7). */
typedef void (*cprkit_log_fn)(void *userdata, int priority, const char *msg);

/* Sets the log function (NULL: no logging) and the highest priority passed
 * to it. When cprkit_new() finds CPRKIT_LOG set to a valid value, its
 * priority is the context's and cprkit_set_log_priority() leaves it
 * alone (the operator asked for it), and the function is one writing
 * "<priority>cprkit[pid]: message" lines to stderr until
 * cprkit_set_log_fn() replaces it; else LOG_INFO and no function.
 * Since: 0.1 */
void cprkit_set_log_fn(cprkit_ctx *ctx, cprkit_log_fn fn, void *userdata);
void cprkit_set_log_priority(cprkit_ctx *ctx, int max_priority);

/* The highest priority passed to the log function: CPRKIT_LOG's, else the
 * last cprkit_set_log_priority(). Since: 0.5 */
int cprkit_get_log_priority(const cprkit_ctx *ctx);

/* Reason for the last failure on this context, or "" if none. Valid until
 * the next call on the context. Since: 0.1 */
const char *cprkit_last_error(const cprkit_ctx *ctx);

/* Sets the last-error message, for application code called by cprkit (an
 * upgrade function that refuses: the control endpoint reports the message
 * to the client). Returns: error, so `return cprkit_set_error(ctx, -EINVAL,
 * "...")` reads naturally. Since: 0.1 */
int cprkit_set_error(cprkit_ctx *ctx, int error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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
 * Since: 0.1
 */
int cprkit_load_incoming(cprkit_ctx *ctx);

/* True after a successful cprkit_load_incoming() until cprkit_commit().
 * Since: 0.1 */
bool cprkit_is_incoming(const cprkit_ctx *ctx);

/* True if the loaded state was handed back by a newer binary that rolled
 * back. cprkit_rollback_reason() then says why. Since: 0.1 */
bool cprkit_is_rollback(const cprkit_ctx *ctx);
const char *cprkit_rollback_reason(const cprkit_ctx *ctx);

/* Number of completed forward updates of this process (0 in a process that
 * was started normally). Since: 0.1 */
uint64_t cprkit_generation(const cprkit_ctx *ctx);

/*
 * cprkit_commit:
 * Ends the incoming phase: every preserved fd must have been claimed with
 * cprkit_fd_find() (or dropped with cprkit_fd_remove()), otherwise the
 * commit fails with -EBUSY and the message lists what was left. On success
 * the blob is discarded; claimed fds stay registered for the next update.
 * Returns: 0 on success or < 0.
 * Since: 0.1
 */
int cprkit_commit(cprkit_ctx *ctx);

/*
 * cprkit_rollback:
 * From the incoming side, before commit: hands the state back to the binary
 * that wrote it by exec'ing the rollback command line recorded in the blob.
 * Returns only on failure (< 0); the process keeps running then.
 * Since: 0.1
 */
int cprkit_rollback(cprkit_ctx *ctx, const char *reason);

/* CLOCK_MONOTONIC timestamp (ns) of an update phase, or 0 if unknown; the
 * clock is per boot, so old and new binary compare. Phases, in order:
 * "update-start" (before the blockers), "suspend" (DMA vaddrs about to be
 * suspended: the blackout starts), "suspended", "exec" (blob about to be
 * written), "execve" (the execve call), "died" (only in a keeper restart:
 * when the keeper saw the predecessor die), "loaded" (this binary finished
 * cprkit_load_incoming). Lets the new binary measure the blackout.
 * Since: 0.1 */
uint64_t cprkit_timestamp(const cprkit_ctx *ctx, const char *phase);

/* ---- named fds ---------------------------------------------------------- */

/*
 * cprkit_fd_save:
 * Registers fd under (name, id) to be preserved across the next exec. The
 * fd keeps FD_CLOEXEC until the exec itself. Saving an existing (name, id)
 * replaces it.
 * Returns: 0 on success or < 0 (-EBADF fd not open, -EINVAL bad name).
 * Since: 0.1
 */
int cprkit_fd_save(cprkit_ctx *ctx, const char *name, int id, int fd);

/*
 * cprkit_fd_find:
 * Looks up (name, id). On the incoming side this claims a preserved fd;
 * expected_type (CPRKIT_FD_ANY to skip) must match what was recorded.
 * Returns: the fd (>= 0), -ENOENT if not registered, -EMEDIUMTYPE if the
 * recorded type differs from expected_type.
 * Since: 0.1
 */
int cprkit_fd_find(cprkit_ctx *ctx, const char *name, int id,
                   enum cprkit_fd_type expected_type);

/* Forgets (name, id); the fd itself is not closed. Returns 0 or -ENOENT.
 * Since: 0.1 */
int cprkit_fd_remove(cprkit_ctx *ctx, const char *name, int id);

/* Number of registered fds. Since: 0.1 */
size_t cprkit_fd_count(const cprkit_ctx *ctx);

/* ---- application sections ----------------------------------------------- */

/* Stores a copy of data under name (replacing an existing section).
 * Returns: 0 or < 0. Since: 0.1 */
int cprkit_section_put(cprkit_ctx *ctx, const char *name, const void *data,
                       size_t size);

/* Points *ret_data at the section's bytes (owned by ctx, valid until the
 * section is replaced or the ctx freed). Returns: 0 or -ENOENT. Since: 0.1 */
int cprkit_section_get(cprkit_ctx *ctx, const char *name,
                       const void **ret_data, size_t *ret_size);

/* Sections persist: one loaded from the previous binary, or put once, is
 * carried to every next binary until removed. cprkit_section_remove()
 * drops the section name (data from cprkit_section_get() becomes invalid).
 * Returns: 0 or -ENOENT. Since: 0.5 */
int cprkit_section_remove(cprkit_ctx *ctx, const char *name);

/* ---- exec --------------------------------------------------------------- */

/*
 * cprkit_check_update:
 * The blockers cprkit_exec() checks before it changes anything, without
 * changing anything: every container supports VFIO_UPDATE_VADDR, every
 * group is backed by a real IOMMU group (not mdev / no-IOMMU), every DMA
 * mapping is a shared mapping of a preserved fd, RLIMIT_MEMLOCK covers the
 * pinned memory (or CAP_IPC_LOCK), path exists and is executable, every
 * preserved fd is still what was saved, no part of the program registered
 * a blocker (-EOPNOTSUPP, all listed), path reads the state format this
 * process writes (-ENOEXEC: a script, or no cprkit linked, preloaded or
 * built in; -EPROTONOSUPPORT: another format; found by reading the ELF
 * headers of path and of what ld.so would load with it, never running
 * them), and a rollback can run this version again (-ENOENT: its file was
 * replaced or deleted on disk, see cprkit_set_rollback_binary()). Returns: 0 if an update to path
 * can proceed, else < 0 with the first blocker in cprkit_last_error().
 * Since: 0.1 */
int cprkit_check_update(cprkit_ctx *ctx, const char *path);

/*
 * cprkit_set_rollback_binary:
 * The binary a rollback (and the keeper's restart after a crash) runs
 * instead of this process's own /proc/self/exe: a copy of the running
 * program, for when its file was replaced or deleted on disk (a package
 * upgrade renames the new version over it). Without one, such a process
 * cannot be updated: cprkit_check_update() refuses, as the rollback could
 * not run this version again. path must be absolute and have the same
 * content as the running binary (compared byte for byte: -ESTALE if not,
 * naming the first difference); argv stays this process's own. NULL
 * clears it.
 * Returns: 0 or < 0 with cprkit_last_error().
 * Since: 0.5
 */
int cprkit_set_rollback_binary(cprkit_ctx *ctx, const char *path);

struct cprkit_exec_opts {
    /* Size of this struct, for future extension: set to sizeof(). */
    size_t size;
    /* Environment for the new binary; NULL: the current environ. */
    char *const *envp;
    /* Command line to exec to roll back to this binary; NULL: the binary
     * of cprkit_set_rollback_binary() or else this process's own
     * executable (/proc/self/exe), and argv (/proc/self/cmdline). */
    const char *rollback_path;
    char *const *rollback_argv;
};

/*
 * cprkit_exec:
 * The update: checks every blocker (cprkit_check_update()) before touching
 * anything, suspends the DMA vaddrs of all recorded mappings
 * (VFIO_DMA_UNMAP_FLAG_VADDR, with VFIO_DMA_UNMAP_FLAG_ALL where the
 * container supports it: the IOMMU keeps translating and the pages stay
 * pinned, so device DMA goes on), writes the state blob into a sealed memfd,
 * clears FD_CLOEXEC on the preserved fds (only now, so they never leak into
 * another child), passes the blob via CPRKIT_STATE_FD and execs path.
 *
 * If execve fails, the vaddrs are made valid again (VFIO_DMA_MAP_FLAG_VADDR
 * with the old addresses), FD_CLOEXEC is set again, the blob is dropped and
 * the process keeps working as before.
 * Returns: only on failure, < 0.
 * Since: 0.1
 */
int cprkit_exec(cprkit_ctx *ctx, const char *path, char *const argv[],
                const struct cprkit_exec_opts *opts);

/* ---- 0.2: for tools and the control library -----------------------------
 *
 * What libcprkit-control (and any other tool) needs to report on a
 * context without reading its memory: the control library is built and
 * upgraded separately, so it uses only these functions.
 */

/* Passes message (printf format) to the log function, like the library's
 * own messages. Since: 0.2 */
void cprkit_log(cprkit_ctx *ctx, int priority, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Forgets the last-error message: cprkit_last_error() returns "" until the
 * next failure. Since: 0.2 */
void cprkit_clear_error(cprkit_ctx *ctx);

/* Registers a reason no update can start now, under owner (a name:
 * [A-Za-z0-9._-]+, e.g. "app" or "vfio"); cprkit_check_update() and so
 * cprkit_exec() refuse while any is registered, listing them all, and
 * `cpr-exec status` shows them. Register a blocker when the problem first
 * arises and remove it when it goes. Returns 0, -EINVAL (bad owner, empty
 * reason) or -EEXIST (already registered). Since: 0.2 */
int cprkit_blocker_add(cprkit_ctx *ctx, const char *owner, const char *reason);

/* Removes owner's blocker with this reason, or all of owner's when reason
 * is NULL. Returns how many were removed, or -ENOENT. Since: 0.2 */
int cprkit_blocker_remove(cprkit_ctx *ctx, const char *owner,
                          const char *reason);

/* Called once per registered blocker, in registration order. */
typedef void (*cprkit_blocker_fn)(void *userdata, const char *owner,
                                  const char *reason);

/* Calls fn for every registered blocker. Since: 0.2 */
void cprkit_blocker_foreach(const cprkit_ctx *ctx, cprkit_blocker_fn fn,
                            void *userdata);

/* Called once per registered fd, in save order. */
typedef void (*cprkit_fd_fn)(void *userdata, const char *name, int id, int fd,
                             enum cprkit_fd_type type);

/* Calls fn for every registered fd; claims nothing (unlike
 * cprkit_fd_find()). Since: 0.2 */
void cprkit_fd_foreach(const cprkit_ctx *ctx, cprkit_fd_fn fn, void *userdata);

/* A figure of a part of the library (participant: "vfio"), such as
 * "containers" or "mapped_bytes". names is NULL, or a NULL-terminated list
 * of value strings the figure counts (the PCI addresses of "devices"),
 * valid during the call. */
typedef void (*cprkit_stat_fn)(void *userdata, const char *participant,
                               const char *key, uint64_t value,
                               const char *const *names);

/* Calls fn for every figure of every participant, participants in update
 * order, figures in the order each participant gives them. Since: 0.2 */
void cprkit_participant_stats(cprkit_ctx *ctx, cprkit_stat_fn fn,
                              void *userdata);

/*
 * cprkit_state_encode:
 * The state blob an update would write now (cprkit_exec() with default
 * options), without changing anything: for inspection. Its timestamps are
 * the last update's (cprkit_timestamp()): the next one has none yet.
 * *ret_buf is to free() by the caller.
 * Returns: 0 or < 0.
 * Since: 0.2
 */
int cprkit_state_encode(cprkit_ctx *ctx, uint8_t **ret_buf, size_t *ret_size);

/* Receives a decoded blob as a tree of named values, in the order of
 * docs/state-format.md. name is NULL for the elements of an array. Every
 * begin_object or begin_array is closed by one end. A string value may be
 * NULL (no value) and need not be valid UTF-8. Integers that do not fit
 * int64_t, and addresses, come as hex strings ("0x..."). */
struct cprkit_blob_visitor {
    /* Size of this struct, for future extension: set to sizeof(). */
    size_t size;
    void (*begin_object)(void *userdata, const char *name);
    void (*begin_array)(void *userdata, const char *name);
    void (*end)(void *userdata);
    void (*integer)(void *userdata, const char *name, int64_t value);
    void (*string)(void *userdata, const char *name, const char *value);
    void (*boolean)(void *userdata, const char *name, bool value);
};

/*
 * cprkit_blob_visit:
 * Decodes a state blob (as written by cprkit_exec() or
 * cprkit_state_encode()) and passes it to v: "frame" (format_major,
 * format_minor, size, rescue_size, payload_size); "rollback" (null, or
 * path and argv, or error); then "state" with every payload field, or
 * "payload_error" when the payload cannot be decoded (a format major this
 * library does not read). Touches no context state but the last error.
 * Returns: 0, or < 0 when buf is not a blob at all (-EBADMSG).
 * Since: 0.2
 */
int cprkit_blob_visit(cprkit_ctx *ctx, const void *buf, size_t size,
                      const struct cprkit_blob_visitor *v, void *userdata);

/* ---- 0.3: the keeper -------------------------------------------------------
 *
 * Under `cpr-exec run` the program runs as the child of a keeper process
 * that holds dups of every preserved fd and the last committed state
 * (docs/keeper.md). If the program dies — a new binary that crashes,
 * hangs past its commit deadline or is no cprkit program, or a committed
 * program that crashes — the keeper starts the right binary with what it
 * kept, and cprkit_load_incoming() loads it like an update: the device is
 * never reset. cprkit_load_incoming() picks up the keeper's connection
 * (CPRKIT_KEEPER_FD); without a keeper these functions do nothing.
 */

/* True when the keeper started this process after its predecessor died;
 * cprkit_restart_reason() says how it died ("killed by SIGSEGV", "no
 * commit within 30 s"). The state is loaded (cprkit_is_incoming()): reclaim
 * and commit as after an update. When the predecessor was the new binary
 * of an update, cprkit_is_rollback() is true too. Since: 0.3 */
bool cprkit_is_restart(const cprkit_ctx *ctx);
const char *cprkit_restart_reason(const cprkit_ctx *ctx);

/*
 * cprkit_keeper_sync:
 * Hands the keeper the current state (every preserved fd, dup'ed over the
 * keeper's socket, and the records that name them) if it changed since the
 * last time. cprkit_commit() does it; the control endpoint does it after
 * start-up and whenever it serves a request; call it after setting up or
 * changing devices, memory or interrupts outside those. A crash restart
 * gets the state of the last sync. Between cprkit_load_incoming() and
 * cprkit_commit() it does nothing: the keeper holds the update's state.
 * Returns: 0 (also without a keeper) or < 0 when the state cannot be kept
 * (a DMA mapping of anonymous memory; the keeper drops what it held and
 * will not restart the program) or the keeper is gone.
 * Since: 0.3
 */
int cprkit_keeper_sync(cprkit_ctx *ctx);

struct cprkit_keeper_status {
    /* Set to sizeof() by the caller. */
    size_t size;
    int pid;
    /* How often the keeper restarted the program so far, the last cause
     * and when (CLOCK_REALTIME µs, 0 if never). */
    unsigned restarts;
    const char *last_cause;
    uint64_t last_restart_realtime_us;
    /* False once a send to the keeper failed (it is gone). */
    bool reachable;
};

/* Fills ret (strings valid while ctx lives). Returns 0, -ENOENT when not
 * under a keeper, -EINVAL when ret->size is too small. Since: 0.3 */
int cprkit_keeper_status(const cprkit_ctx *ctx,
                         struct cprkit_keeper_status *ret);

/* How long the new binary of the next update has to commit before the
 * keeper kills it and starts this binary again (default 30 000 ms).
 * Returns 0 or -EINVAL (0 ms). Since: 0.3 */
int cprkit_set_commit_timeout(cprkit_ctx *ctx, uint32_t ms);

#ifdef __cplusplus
}
#endif

#endif /* CPRKIT_H */
