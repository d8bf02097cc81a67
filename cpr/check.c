/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The pre-flight of an update (cprkit_check_update(), `cpr-exec check`):
 * the generic blockers here — no update pending, none registered, the new
 * binary can be exec'd, every preserved fd is still the object saved,
 * seccomp allows execve, the new binary reads the state format, a
 * rollback can run this version again — and each participant's own (check_blockers).
 * Nothing changes.
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

/* The new binary must read the state this process writes: exec'ing one
 * that cannot (a script, /bin/true, a program without cprkit, a cprkit
 * of another format) would lose the process and its devices. */
static int check_target_reads_state(cprkit_ctx *ctx, const char *path)
{
    struct binary_probe probe;
    g_autofree char *error = NULL;
    int r = binary_probe_check(path, &probe, &error);

    binary_probe_clear(&probe);
    return r < 0 ? ctx_fail(ctx, r, "%s", error) : 0;
}

void update_blocker_free(struct update_blocker *b)
{
    if (!b)
        return;
    g_free(b->owner);
    g_free(b->reason);
    g_free(b);
}

static struct update_blocker *blocker_find(cprkit_ctx *ctx, const char *owner,
                                           const char *reason, guint *ret_i)
{
    for (guint i = 0; i < ctx->blockers->len; i++) {
        struct update_blocker *b = g_ptr_array_index(ctx->blockers, i);

        if (strcmp(b->owner, owner) == 0 &&
            (!reason || strcmp(b->reason, reason) == 0)) {
            *ret_i = i;
            return b;
        }
    }
    return NULL;
}

int ctx_add_blocker(cprkit_ctx *ctx, const char *owner, const char *reason)
{
    struct update_blocker *b;
    guint i;

    if (!name_is_valid(owner) || !reason || !*reason)
        return ctx_fail(ctx, -EINVAL, "a blocker needs an owner and a reason");
    if (blocker_find(ctx, owner, reason, &i))
        return ctx_fail(ctx, -EEXIST, "blocker already registered: %s: %s",
                        owner, reason);
    b = g_new0(struct update_blocker, 1);
    b->owner = g_strdup(owner);
    b->reason = g_strdup(reason);
    g_ptr_array_add(ctx->blockers, b);
    return 0;
}

/* Removes owner's blocker with this reason, or all of owner's when reason
 * is NULL. Returns how many were removed, or -ENOENT for none. */
int ctx_remove_blocker(cprkit_ctx *ctx, const char *owner, const char *reason)
{
    int n = 0;
    guint i;

    while (owner && blocker_find(ctx, owner, reason, &i)) {
        g_ptr_array_remove_index(ctx->blockers, i);
        n++;
    }
    if (n == 0)
        return ctx_fail(ctx, -ENOENT, "no blocker of '%s' to remove",
                        owner ? owner : "(null)");
    return n;
}

/* The public face of the registry: an application registers what it
 * knows will block an update when the problem first arises (a device
 * model without CPR support, ...), as QEMU's migrate_add_blocker(), so that
 * `cpr-exec status` and `check` show it before anyone tries. */
CPRKIT_EXPORT int cprkit_blocker_add(cprkit_ctx *ctx, const char *owner,
                                     const char *reason)
{
    return ctx_add_blocker(ctx, owner, reason);
}

CPRKIT_EXPORT int cprkit_blocker_remove(cprkit_ctx *ctx, const char *owner,
                                        const char *reason)
{
    return ctx_remove_blocker(ctx, owner, reason);
}

CPRKIT_EXPORT void cprkit_blocker_foreach(const cprkit_ctx *ctx,
                                          cprkit_blocker_fn fn, void *userdata)
{
    for (guint i = 0; i < ctx->blockers->len; i++) {
        const struct update_blocker *b = g_ptr_array_index(ctx->blockers, i);

        fn(userdata, b->owner, b->reason);
    }
}

/* All of them in one message: the operator fixes everything at once. */
static int check_registered_blockers(cprkit_ctx *ctx)
{
    g_autoptr(GString) msg = NULL;

    if (ctx->blockers->len == 0)
        return 0;
    msg = g_string_new(NULL);
    for (guint i = 0; i < ctx->blockers->len; i++) {
        const struct update_blocker *b = g_ptr_array_index(ctx->blockers, i);

        g_string_append_printf(msg, "%s%s: %s", i ? "; " : "", b->owner,
                               b->reason);
    }
    return ctx_fail(ctx, -EOPNOTSUPP, "the update is blocked: %s", msg->str);
}

CPRKIT_EXPORT int cprkit_check_update(cprkit_ctx *ctx, const char *path)
{
    return check_update(ctx, path, true);
}

int check_update(cprkit_ctx *ctx, const char *path, bool own_rollback)
{
    int r;

    if (ctx->incoming)
        return ctx_fail(ctx, -EBUSY,
                        "an incoming update is not committed yet: commit or "
                        "roll back before starting another");
    r = check_registered_blockers(ctx);
    if (r < 0)
        return r;
    r = exec_check_target(ctx, path);
    if (r < 0)
        return r;
    r = fdreg_check_unchanged(ctx);
    if (r < 0)
        return r;
    r = participants_check_blockers(ctx);
    if (r < 0)
        return r;
    r = check_seccomp_allows_exec(ctx, path);
    if (r < 0)
        return r;
    r = check_target_reads_state(ctx, path);
    if (r < 0 || !own_rollback)
        return r;
    return check_rollback_target(ctx);
}
