/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The exec hand-off: blob into a sealed memfd, FD_CLOEXEC cleared on the
 * preserved fds only now, CPRKIT_STATE_FD in the new environment, execve.
 * If execve returns, everything is put back as it was.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cprkit-internal.h"

extern char **environ;

static bool env_is_ours(const char *entry)
{
    return g_str_has_prefix(entry, CPRKIT_STATE_FD_ENV "=") ||
           g_str_has_prefix(entry, CPRKIT_ROLLBACK_REASON_ENV "=") ||
           g_str_has_prefix(entry, CPRKIT_EXECVE_NS_ENV "=") ||
           keeper_env_is_ours(entry);
}

/* The environment for the new binary: base without stale cprkit variables,
 * plus ours. The keeper is told about the exec here too (keeper-link.c):
 * its variables go in env. */
static char **build_envp(cprkit_ctx *ctx, char *const base[], int blob_fd,
                         const char *rollback_reason,
                         const struct command_line *restart)
{
    GPtrArray *env = g_ptr_array_new();

    for (char *const *e = base; e && *e; e++)
        if (!env_is_ours(*e))
            g_ptr_array_add(env, g_strdup(*e));
    keeper_handoff(ctx, blob_fd, restart, env);
    g_ptr_array_add(env, g_strdup_printf(CPRKIT_STATE_FD_ENV "=%d", blob_fd));
    /* When execve was called: taken after the blob was written, so it
     * cannot be in the blob; the new binary reads it as phase "execve". */
    g_ptr_array_add(env, g_strdup_printf(CPRKIT_EXECVE_NS_ENV "=%" PRIu64,
                                         monotonic_now_ns()));
    if (rollback_reason)
        g_ptr_array_add(env, g_strdup_printf(CPRKIT_ROLLBACK_REASON_ENV "=%s",
                                             rollback_reason));
    g_ptr_array_add(env, NULL);
    return (char **)g_ptr_array_free(env, false);
}

/* Clears FD_CLOEXEC on the preserved fds and the blob, execs, and on
 * failure sets FD_CLOEXEC again. With skip_missing_fds (the rollback path
 * after a failed validation), fds that are gone are left out instead of
 * failing: the previous binary will report them. */
int exec_with_blob(cprkit_ctx *ctx, const char *path, char *const argv[],
                   char *const envp[], int blob_fd, const char *rollback_reason,
                   bool skip_missing_fds, const struct command_line *restart)
{
    char **new_env = build_envp(ctx, envp ? envp : environ, blob_fd,
                                rollback_reason, restart);
    int exec_errno, r;

    if (skip_missing_fds) {
        for (guint i = 0; i < ctx->fds->len; i++) {
            struct fd_entry *e = g_ptr_array_index(ctx->fds, i);
            fd_set_cloexec(e->fd, false);
        }
    } else {
        r = fdreg_set_cloexec_all(ctx, false);
        if (r < 0) {
            keeper_handoff_failed(ctx);
            g_strfreev(new_env);
            return r;
        }
    }
    r = fd_set_cloexec(blob_fd, false);
    if (r < 0) {
        fdreg_set_cloexec_all(ctx, true);
        keeper_handoff_failed(ctx);
        g_strfreev(new_env);
        return ctx_fail(ctx, r, "cannot clear FD_CLOEXEC on the state blob: %s",
                        strerror(-r));
    }

    execve(path, argv, new_env);

    /* Still here: the exec failed. Nothing may leak into the next child. */
    exec_errno = errno;
    fd_set_cloexec(blob_fd, true);
    fdreg_set_cloexec_all(ctx, true);
    keeper_handoff_failed(ctx);
    g_strfreev(new_env);
    return ctx_fail(ctx, -exec_errno, "execve '%s' failed: %s", path,
                    strerror(exec_errno));
}

/* 0 when the files at a and b have the same bytes. */
static int same_content(cprkit_ctx *ctx, const char *a, const char *b)
{
    _cleanup_close_ int fa = open(a, O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int fb = open(b, O_RDONLY | O_CLOEXEC);
    g_autofree char *ba = g_malloc(1 << 16);
    g_autofree char *bb = g_malloc(1 << 16);
    struct stat sa, sb;
    off_t off = 0;

    if (fa < 0 || fstat(fa, &sa) < 0)
        return ctx_fail(ctx, -errno, "cannot read %s: %m", a);
    if (fb < 0 || fstat(fb, &sb) < 0)
        return ctx_fail(ctx, -errno, "cannot read %s: %m", b);
    if (sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino)
        return 0;
    if (sa.st_size != sb.st_size)
        return ctx_fail(ctx, -ESTALE,
                        "%s is not the running program: %jd bytes, the "
                        "running binary %jd",
                        b, (intmax_t)sb.st_size, (intmax_t)sa.st_size);
    while (off < sa.st_size) {
        ssize_t na = pread(fa, ba, 1 << 16, off);
        ssize_t nb = pread(fb, bb, 1 << 16, off);

        if (na <= 0 || nb != na)
            return ctx_fail(ctx, -EIO, "reading %s and %s at %jd failed", a,
                            b, (intmax_t)off);
        if (memcmp(ba, bb, (size_t)na) != 0)
            return ctx_fail(ctx, -ESTALE,
                            "%s is not the running program: its bytes differ "
                            "in [%jd, %jd)",
                            b, (intmax_t)off, (intmax_t)(off + na));
        off += na;
    }
    return 0;
}

CPRKIT_EXPORT int cprkit_set_rollback_binary(cprkit_ctx *ctx, const char *path)
{
    int r;

    if (!path) {
        g_clear_pointer(&ctx->rollback_binary, g_free);
        ctx_state_changed(ctx);
        return 0;
    }
    if (path[0] != '/')
        return ctx_fail(ctx, -EINVAL,
                        "rollback binary '%s' is not an absolute path", path);
    r = exec_check_target(ctx, path);
    if (r < 0)
        return r;
    /* /proc/self/exe opens the running file even when its name is gone. */
    r = same_content(ctx, "/proc/self/exe", path);
    if (r < 0)
        return r;
    g_free(ctx->rollback_binary);
    ctx->rollback_binary = g_strdup(path);
    /* The keeper restarts the program with it too: sync it again. */
    ctx_state_changed(ctx);
    cprkit_log(ctx, LOG_INFO, "rollback binary: %s", path);
    return 0;
}

/* Blocker: a rollback must be able to run this version again. */
int check_rollback_target(cprkit_ctx *ctx)
{
    g_autofree char *exe = NULL;

    if (ctx->rollback_binary) {
        /* Kept from cprkit_set_rollback_binary(); still the same file? */
        int r = exec_check_target(ctx, ctx->rollback_binary);

        return r < 0 ? r : same_content(ctx, "/proc/self/exe",
                                        ctx->rollback_binary);
    }
    exe = g_file_read_link("/proc/self/exe", NULL);
    if (exe && g_str_has_suffix(exe, " (deleted)"))
        return ctx_fail(ctx, -ENOENT,
                        "the running binary %.*s was replaced or deleted on "
                        "disk, so a rollback could not run this version "
                        "again: keep a copy (cp /proc/%d/exe COPY) and name "
                        "it (cpr-exec upgrade --rollback-to COPY, or "
                        "cprkit_set_rollback_binary())",
                        (int)(strlen(exe) - strlen(" (deleted)")), exe,
                        (int)getpid());
    return 0;
}

/* This process's own command line, to come back to on rollback: the
 * rollback binary if one was set, else /proc/self/exe. */
int command_line_of_self(cprkit_ctx *ctx, struct command_line *ret)
{
    g_autofree char *exe = NULL;
    g_autofree char *cmdline = NULL;
    g_autoptr(GError) error = NULL;
    GPtrArray *argv;
    gsize size;

    if (ctx->rollback_binary) {
        exe = g_strdup(ctx->rollback_binary);
    } else {
        exe = g_file_read_link("/proc/self/exe", &error);
        if (!exe)
            return ctx_fail(ctx, -EIO, "cannot read /proc/self/exe: %s",
                            error->message);
    }
    /* The binary was replaced or deleted on disk: its path now names
     * nothing (or something else). Refuse rather than record a rollback
     * that cannot work. */
    if (g_str_has_suffix(exe, " (deleted)"))
        return check_rollback_target(ctx);
    if (!g_file_get_contents("/proc/self/cmdline", &cmdline, &size, &error))
        return ctx_fail(ctx, -EIO, "cannot read /proc/self/cmdline: %s",
                        error->message);

    argv = g_ptr_array_new();
    for (gsize off = 0; off < size;) {
        const char *arg = cmdline + off;

        g_ptr_array_add(argv, g_strdup(arg));
        off += strlen(arg) + 1;
    }
    g_ptr_array_add(argv, NULL);
    ret->path = TAKE_PTR(exe);
    ret->argv = (char **)g_ptr_array_free(argv, false);
    return 0;
}

/* Blocker: fail before anything changes if the target cannot be exec'd. */
int exec_check_target(cprkit_ctx *ctx, const char *path)
{
    struct stat st;

    if (!path)
        return ctx_fail(ctx, -EINVAL, "no new binary given");
    if (stat(path, &st) < 0)
        return ctx_fail(ctx, -errno, "new binary '%s': %m", path);
    if (!S_ISREG(st.st_mode))
        return ctx_fail(ctx, -EACCES, "new binary '%s' is not a regular file",
                        path);
    if (access(path, X_OK) < 0)
        return ctx_fail(ctx, -errno, "new binary '%s' is not executable: %m",
                        path);
    return 0;
}

/* ", dma_mappings 3" for the exec log line. */
static void append_stat(void *userdata, const char *key, uint64_t value,
                        const char *const *names)
{
    g_string_append_printf(userdata, ", %s %" PRIu64, key, value);
}

static int rollback_command_line(cprkit_ctx *ctx,
                                 const struct cprkit_exec_opts *opts,
                                 struct command_line *ret)
{
    if (opts && opts->rollback_path) {
        if (!opts->rollback_argv || !opts->rollback_argv[0])
            return ctx_fail(ctx, -EINVAL,
                            "rollback_path given without rollback_argv");
        ret->path = g_strdup(opts->rollback_path);
        ret->argv = g_strdupv((char **)opts->rollback_argv);
        return 0;
    }
    return command_line_of_self(ctx, ret);
}

CPRKIT_EXPORT int cprkit_exec(cprkit_ctx *ctx, const char *path,
                              char *const argv[],
                              const struct cprkit_exec_opts *opts)
{
    struct command_line rescue = {0};
    _cleanup_close_ int blob_fd = -EBADF;
    Cprkit__State *state = NULL;
    size_t blob_size = 0;
    int r;

    if (opts && opts->size < sizeof(struct cprkit_exec_opts))
        return ctx_fail(ctx, -EINVAL, "cprkit_exec_opts.size is not set");
    if (!path || !argv || !argv[0])
        return ctx_fail(ctx, -EINVAL, "cprkit_exec needs a path and argv[0]");

    /* 1. Blockers first, while nothing has changed. */
    g_ptr_array_set_size(ctx->update_timestamps, 0);
    timestamps_set(ctx->update_timestamps, "update-start", monotonic_now_ns());
    r = check_update(ctx, path, !(opts && opts->rollback_path));
    if (r < 0)
        return r;
    r = rollback_command_line(ctx, opts, &rescue);
    if (r < 0)
        return r;

    /* 2. The blackout starts: the participants suspend (VFIO: DMA keeps
     * running, but this process's addresses are no longer valid to the
     * kernel). */
    timestamps_set(ctx->update_timestamps, "suspend", monotonic_now_ns());
    r = participants_suspend(ctx);
    if (r < 0) {
        command_line_clear(&rescue);
        return r;
    }
    timestamps_set(ctx->update_timestamps, "suspended", monotonic_now_ns());

    /* 3. Written after the suspend, the blob says what is true at exec
     * (VFIO: the mappings as suspended). */
    timestamps_set(ctx->update_timestamps, "exec", monotonic_now_ns());
    r = state_build_without_fds(ctx, ctx->generation + 1, &state);
    if (r >= 0)
        r = blob_write_memfd_with_registry(ctx, state, &rescue, &blob_fd,
                                           &blob_size);
    state_build_free(state);
    if (r < 0) {
        command_line_clear(&rescue);
        goto resume;
    }

    /* Inside the blackout: format the figures only for a listener. */
    if (ctx->log_fn && ctx->log_max_priority >= LOG_INFO) {
        g_autoptr(GString) stats = g_string_new(NULL);

        participants_stats(ctx, append_stat, stats);
        ctx_log(ctx, LOG_INFO,
                "exec %s (generation %" PRIu64 ", %u fds, %zu byte state%s)",
                path, ctx->generation + 1, ctx->fds->len, blob_size,
                stats->str);
    }
    /* 4. Returns only on failure; blob_fd is closed by cleanup. */
    r = exec_with_blob(ctx, path, argv, opts ? opts->envp : NULL, blob_fd,
                       NULL, false, &rescue);
    command_line_clear(&rescue);

resume:
    /* The exec did not happen: this binary goes on serving. */
    {
        g_autofree char *why = g_strdup(cprkit_last_error(ctx));

        if (participants_resume(ctx) < 0)
            return ctx_fail(ctx, r, "%s; and resuming failed: %s", why,
                            cprkit_last_error(ctx));
        ctx_fail(ctx, r, "%s", why);
    }
    return r;
}
