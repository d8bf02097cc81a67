/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The incoming side: load the blob the previous binary left in
 * CPRKIT_STATE_FD, validate every fd it names, then commit or roll back.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cprkit-internal.h"

extern char **environ;

static int parse_fd_number(const char *s, int *ret)
{
    char *end;
    long v;

    if (!s || !g_ascii_isdigit(s[0]))
        return -EINVAL;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > INT_MAX)
        return -EINVAL;
    *ret = (int)v;
    return 0;
}

/* A blob anyone could still change is not a blob we trust. */
static int check_blob_sealed(cprkit_ctx *ctx, int fd)
{
    const int needed = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK;
    int seals = fcntl(fd, F_GET_SEALS);

    if (seals < 0)
        return ctx_fail(ctx, -EPERM,
                        "state blob fd %d is not a sealable memfd: %m", fd);
    if ((seals & needed) != needed)
        return ctx_fail(ctx, -EPERM,
                        "state blob fd %d is not sealed against writes "
                        "(seals 0x%x); refusing it",
                        fd, seals);
    return 0;
}

/* Every recorded fd must still be open and be the same object: the kernel
 * keeps the fd table across exec, but a launcher or the new binary's own
 * start-up code may have closed or replaced fds before we got here. */
static int validate_fds(cprkit_ctx *ctx)
{
    for (guint i = 0; i < ctx->fds->len; i++) {
        struct fd_entry *e = g_ptr_array_index(ctx->fds, i);
        struct fd_identity now;

        if (fd_unchanged_fast(e->fd, &e->identity))
            continue;
        if (fd_identify(e->fd, &now) < 0)
            return ctx_fail(ctx, -EBADF,
                            "preserved fd '%s'/%d (fd %d, %s) is missing "
                            "after exec",
                            e->name, e->id, e->fd,
                            cprkit_fd_type_name(e->identity.type));
        if (now.type != e->identity.type)
            return ctx_fail(ctx, -ESTALE,
                            "preserved fd '%s'/%d (fd %d) should be %s but "
                            "is %s",
                            e->name, e->id, e->fd,
                            cprkit_fd_type_name(e->identity.type),
                            cprkit_fd_type_name(now.type));
        if (!fd_identity_equal(&now, &e->identity)) {
            char was[64], is[64];

            return ctx_fail(ctx, -ESTALE,
                            "preserved fd '%s'/%d (fd %d) is another %s "
                            "than the one saved: %s, now %s",
                            e->name, e->id, e->fd,
                            cprkit_fd_type_name(now.type),
                            fd_identity_describe(&e->identity, was,
                                                 sizeof(was)),
                            fd_identity_describe(&now, is, sizeof(is)));
        }
    }
    return 0;
}

/* FD_CLOEXEC on the fds the blob listed that are still open. */
static void listed_fds_set_cloexec(cprkit_ctx *ctx, bool cloexec)
{
    for (guint i = 0; i < ctx->listed_fds->len; i++) {
        int fd = g_array_index(ctx->listed_fds, int, i);

        if (fcntl(fd, F_GETFD) >= 0)
            (void)fd_set_cloexec(fd, cloexec);
    }
}

/* Fills the context from the blob in buf, which it overwrites.
 * ret_read_ns, ret_state_ns: when the blob was read and unpacked, and when
 * the state was loaded (timestamps "blob-read", "state-loaded", set by the
 * caller: the state loaded here holds the previous load's). */
static int load_blob_from(cprkit_ctx *ctx, uint8_t *buf, size_t size,
                          uint64_t *ret_read_ns, uint64_t *ret_state_ns)
{
    struct decoded_state decoded;
    struct blob_frame frame;
    int r;

    r = blob_parse_frame(ctx, buf, size, &frame);
    if (r < 0)
        return r;
    /* The rescue block first: with it we can roll back even if the payload
     * turns out to be unreadable. */
    r = blob_parse_rescue(ctx, &frame, &ctx->rescue);
    if (r < 0)
        return r;
    ctx->have_rescue = ctx->rescue.path != NULL;
    r = blob_unpack_for_load(ctx, &frame, buf, &decoded);
    if (r < 0)
        return r;
    *ret_read_ns = monotonic_now_ns();
    /* The listed fds come without FD_CLOEXEC: back to close-on-exec right
     * away, whatever the load and the validation say, so no child inherits
     * them — also when the load fails halfway and forgets them. Not stdio
     * or the blob, which a bad entry may name (the load refuses those);
     * an entry without an fd number has fd -1. */
    for (size_t i = 0; i < decoded.n_fds; i++) {
        int fd = decoded.fds[i].fd;

        if (fd > STDERR_FILENO && fd != ctx->blob_fd &&
            fd_set_cloexec(fd, true) == 0)
            g_array_append_val(ctx->listed_fds, fd);
    }
    r = state_load_decoded(ctx, &decoded);
    decoded_state_clear(&decoded);
    if (r < 0)
        return r;
    *ret_state_ns = monotonic_now_ns();
    return validate_fds(ctx);
}

/* Reads the blob and fills the context. Called with ctx->blob_fd set,
 * checked sealed. */
static int load_blob(cprkit_ctx *ctx, uint64_t *ret_read_ns,
                     uint64_t *ret_state_ns)
{
    struct blob_buffer buf;
    int r;

    r = blob_map_fd(ctx, ctx->blob_fd, &buf);
    if (r < 0)
        return r;
    r = load_blob_from(ctx, buf.data, buf.size, ret_read_ns, ret_state_ns);
    blob_buffer_release(&buf);
    return r;
}

CPRKIT_EXPORT int cprkit_load_incoming(cprkit_ctx *ctx)
{
    const char *fd_str = getenv(CPRKIT_STATE_FD_ENV);
    const char *reason = getenv(CPRKIT_ROLLBACK_REASON_ENV);
    const char *execve_ns = getenv(CPRKIT_EXECVE_NS_ENV);
    uint64_t execve_at = execve_ns ? g_ascii_strtoull(execve_ns, NULL, 10) : 0;
    uint64_t load_start = monotonic_now_ns(), read_ns = 0, state_ns = 0;
    int blob_fd, r;

    if (ctx->incoming)
        return 1;
    /* Under `cpr-exec run`: the keeper's connection, and why it started
     * us if our predecessor died. */
    keeper_attach(ctx);
    if (!fd_str) {
        keeper_hello(ctx, false);
        return 0;
    }
    r = parse_fd_number(fd_str, &blob_fd);
    /* The variables are for us alone: children must not see them, and a
     * failed load must not be retried by a later cprkit_new(). */
    if (reason) {
        ctx->rollback = true;
        ctx->rollback_reason = g_strdup(reason);
    }
    unsetenv(CPRKIT_STATE_FD_ENV);
    unsetenv(CPRKIT_ROLLBACK_REASON_ENV);
    unsetenv(CPRKIT_EXECVE_NS_ENV);
    if (r < 0)
        return ctx_fail(ctx, -EINVAL, "%s is not an fd number",
                        CPRKIT_STATE_FD_ENV);
    /* Nothing is done to the fd until it is known to be a blob: a bogus
     * variable must not make us take over (and close on cprkit_free())
     * someone else's fd, stdout least of all. */
    if (blob_fd <= STDERR_FILENO)
        return ctx_fail(ctx, -EBADF,
                        "%s=%d names standard input, output or error, not "
                        "a state blob",
                        CPRKIT_STATE_FD_ENV, blob_fd);
    if (fcntl(blob_fd, F_GETFD) < 0)
        return ctx_fail(ctx, -EBADF, "%s=%d names no open fd",
                        CPRKIT_STATE_FD_ENV, blob_fd);
    r = check_blob_sealed(ctx, blob_fd);
    if (r < 0)
        return r;
    r = fd_set_cloexec(blob_fd, true);
    if (r < 0)
        return ctx_fail(ctx, -EBADF, "%s=%d: %s", CPRKIT_STATE_FD_ENV,
                        blob_fd, strerror(-r));
    ctx->blob_fd = blob_fd;

    r = load_blob(ctx, &read_ns, &state_ns);
    /* The keeper started us after our predecessor died: what it left may
     * be half-done (VFIO: vaddrs of a dead address space still valid). */
    if (r >= 0 && ctx->restarted)
        r = participants_adopt(ctx);
    if (r < 0)
        return r;
    if (execve_at)
        timestamps_set(ctx->timestamps, "execve", execve_at);
    timestamps_set(ctx->timestamps, "load-start", load_start);
    timestamps_set(ctx->timestamps, "blob-read", read_ns);
    timestamps_set(ctx->timestamps, "state-loaded", state_ns);
    if (ctx->keeper.died_ns)
        timestamps_set(ctx->timestamps, "died", ctx->keeper.died_ns);
    timestamps_set(ctx->timestamps, "loaded", monotonic_now_ns());

    /* The blob says what generation its reader is; on a rollback the
     * reader is the writer itself, one generation back. */
    if (ctx->rollback && ctx->generation > 0)
        ctx->generation--;
    ctx->incoming = true;
    if (ctx->restarted)
        ctx_log(ctx, LOG_INFO,
                "restarted by the keeper (%s)%s: %u preserved fds, %u "
                "sections, generation %" PRIu64,
                ctx->restart_reason, ctx->rollback ? ", update rolled back" : "",
                ctx->fds->len, ctx->sections->len, ctx->generation);
    else
        ctx_log(ctx, LOG_INFO,
                "%s: %u preserved fds, %u sections, generation %" PRIu64,
                ctx->rollback ? "rolled back" : "incoming update",
                ctx->fds->len, ctx->sections->len, ctx->generation);
    keeper_hello(ctx, true);
    return 1;
}

CPRKIT_EXPORT bool cprkit_is_incoming(const cprkit_ctx *ctx)
{
    return ctx->incoming;
}

CPRKIT_EXPORT bool cprkit_is_rollback(const cprkit_ctx *ctx)
{
    return ctx->rollback;
}

CPRKIT_EXPORT const char *cprkit_rollback_reason(const cprkit_ctx *ctx)
{
    return ctx->rollback_reason;
}

CPRKIT_EXPORT uint64_t cprkit_generation(const cprkit_ctx *ctx)
{
    return ctx->generation;
}

CPRKIT_EXPORT int cprkit_commit(cprkit_ctx *ctx)
{
    g_autoptr(GString) unclaimed = g_string_new(NULL);
    g_autoptr(GString) pending = g_string_new(NULL);
    unsigned n_unclaimed = 0, n_pending;

    if (!ctx->incoming)
        return ctx_fail(ctx, -EINVAL, "nothing to commit: no incoming update");
    for (guint i = 0; i < ctx->fds->len; i++) {
        const struct fd_entry *e = g_ptr_array_index(ctx->fds, i);

        /* cprkit's own libraries claim theirs when the application calls
         * them, which may be after the commit (cprkit_control_listen()):
         * they stay open and registered until then. */
        if (e->claimed || g_str_has_prefix(e->name, CPRKIT_LIBRARY_FD_PREFIX))
            continue;
        g_string_append_printf(unclaimed, "%s'%s'/%d (%s)",
                               n_unclaimed ? ", " : "", e->name, e->id,
                               cprkit_fd_type_name(e->identity.type));
        n_unclaimed++;
    }
    n_pending = participants_pending(ctx, pending);
    /* Everything that was left, in one message. */
    if (n_unclaimed || n_pending) {
        g_autoptr(GString) msg = g_string_new("cannot commit: ");

        if (n_unclaimed)
            g_string_append_printf(msg, "%u preserved fd%s not claimed: %s",
                                   n_unclaimed,
                                   n_unclaimed == 1 ? " was" : "s were",
                                   unclaimed->str);
        if (n_unclaimed && n_pending)
            g_string_append(msg, "; ");
        g_string_append(msg, pending->str);
        return ctx_fail(ctx, -EBUSY, "%s", msg->str);
    }

    closep(&ctx->blob_fd);
    ctx->blob_fd = -EBADF;
    participants_committed(ctx);
    command_line_clear(&ctx->rescue);
    ctx->have_rescue = false;
    ctx->incoming = false;
    ctx_log(ctx, LOG_INFO, "update committed, generation %" PRIu64,
            ctx->generation);
    /* The keeper drops the update's state for this one. A keeper that
     * cannot be reached does not undo the commit. */
    ctx->keeper.synced = false;
    if (cprkit_keeper_sync(ctx) < 0)
        ctx_clear_error(ctx);
    return 0;
}

CPRKIT_EXPORT int cprkit_rollback(cprkit_ctx *ctx, const char *reason)
{
    /* Callers naturally pass cprkit_last_error(ctx), which the failure
     * paths below replace: work on a copy. */
    g_autofree char *why =
        g_strdup(reason && *reason ? reason : "rollback requested");
    int r;

    if (ctx->rollback)
        return ctx_fail(ctx, -ELOOP,
                        "this state was already handed back by a rollback "
                        "(%s); refusing to roll back again",
                        ctx->rollback_reason ? ctx->rollback_reason : "?");
    if (ctx->blob_fd < 0)
        return ctx_fail(ctx, -EINVAL,
                        "nothing to roll back: no incoming update");
    if (!ctx->have_rescue)
        return ctx_fail(ctx, -ENOENT,
                        "cannot roll back: the previous binary recorded no "
                        "rollback command line");

    ctx_log(ctx, LOG_WARNING, "rolling back to %s: %s", ctx->rescue.path, why);
    /* The participants put back what this binary changed (VFIO: what it
     * remapped is suspended again), so the previous one finds everything
     * as it left it. */
    r = participants_rollback_prepare(ctx);
    if (r < 0)
        return r;
    /* The same sealed blob goes back: it describes the fds exactly as the
     * previous binary left them, and nothing here has changed them. The
     * registry may have forgotten them (a load that failed): the numbers
     * the blob listed cross the exec too. */
    listed_fds_set_cloexec(ctx, false);
    r = exec_with_blob(ctx, ctx->rescue.path, ctx->rescue.argv, environ,
                       ctx->blob_fd, why, true, &ctx->rescue);
    listed_fds_set_cloexec(ctx, true);
    participants_rollback_abort(ctx);
    return r;
}
