/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The pre-flight of an update (cprkit_check_update(), `cpr-exec check`):
 * the generic blockers here — no update pending, the new binary can be
 * exec'd, every preserved fd is still the object saved, seccomp allows
 * execve — and each participant's own (check_blockers). Nothing changes.
 */
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cprkit-internal.h"

/* A field of /proc/self/status such as "CapEff" or "Seccomp". */
char *proc_status_field(const char *field)
{
    g_autofree char *status = NULL;
    g_auto(GStrv) lines = NULL;
    size_t len = strlen(field);

    if (!g_file_get_contents("/proc/self/status", &status, NULL, NULL))
        return NULL;
    lines = g_strsplit(status, "\n", -1);
    for (char **l = lines; *l; l++)
        if (strncmp(*l, field, len) == 0 && (*l)[len] == ':')
            return g_strstrip(g_strdup(*l + len + 1));
    return NULL;
}

/* Under a seccomp filter, ask a child whether execve is allowed: with an
 * invalid argv pointer an allowed execve fails with EFAULT before running
 * anything, a filtered one fails otherwise or kills the child. */
static int check_seccomp_allows_exec(cprkit_ctx *ctx, const char *path)
{
    g_autofree char *mode = proc_status_field("Seccomp");
    int status;
    pid_t pid;

    if (!mode || strcmp(mode, "2") != 0)
        return 0;
    pid = fork();
    if (pid < 0)
        return ctx_fail(ctx, -errno, "fork for the seccomp probe: %m");
    if (pid == 0) {
        long r = syscall(SYS_execve, path, (char **)1, NULL);

        _exit(r < 0 && errno == EFAULT ? 0 : 1);
    }
    if (waitpid(pid, &status, 0) != pid)
        return ctx_fail(ctx, -errno, "waitpid for the seccomp probe: %m");
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    return ctx_fail(ctx, -EPERM,
                    "this process's seccomp filter does not allow execve: "
                    "the update cannot exec the new binary");
}

CPRKIT_EXPORT int cprkit_check_update(cprkit_ctx *ctx, const char *path)
{
    int r;

    if (ctx->incoming)
        return ctx_fail(ctx, -EBUSY,
                        "an incoming update is not committed yet: commit or "
                        "roll back before starting another");
    r = exec_check_target(ctx, path);
    if (r < 0)
        return r;
    r = fdreg_check_unchanged(ctx);
    if (r < 0)
        return r;
    r = participants_check_blockers(ctx);
    if (r < 0)
        return r;
    return check_seccomp_allows_exec(ctx, path);
}
