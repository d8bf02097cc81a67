/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The cprkit context: registries, logging and the last-error message. */
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cprkit-internal.h"

static const char *const log_priority_names[] = {
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
};

/* A CPRKIT_LOG value: a syslog priority name (any case; "error" and "warn"
 * too) or its number 0-7. Returns the priority or -EINVAL. */
int log_priority_parse(const char *s)
{
    if (!s || !*s)
        return -EINVAL;
    if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
        return s[0] - '0';
    for (int i = 0; i < (int)G_N_ELEMENTS(log_priority_names); i++)
        if (g_ascii_strcasecmp(s, log_priority_names[i]) == 0)
            return i;
    if (g_ascii_strcasecmp(s, "error") == 0)
        return LOG_ERR;
    if (g_ascii_strcasecmp(s, "warn") == 0)
        return LOG_WARNING;
    return -EINVAL;
}

/* What CPRKIT_LOG turns on while the application has set no log function:
 * stderr, with the journal's "<priority>" prefix (as the preload shim and
 * cpr-exec write). One write() per message, so that lines of several
 * threads or processes do not interleave. */
static void log_to_stderr(void *userdata, int priority, const char *msg)
{
    char line[1200]; /* ctx_vlog()'s 1024-byte message and the prefix */
    int n = snprintf(line, sizeof(line), "<%d>cprkit[%d]: %s\n", priority,
                     (int)getpid(), msg);
    ssize_t written;

    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    written = write(STDERR_FILENO, line, (size_t)n);
    (void)written; /* nowhere to report a failed log write */
}

CPRKIT_EXPORT int cprkit_new(cprkit_ctx **ret_ctx)
{
    cprkit_ctx *ctx = calloc(1, sizeof(*ctx));
    int r;

    if (!ctx)
        return -ENOMEM;
    ctx->fds = g_ptr_array_new_with_free_func((GDestroyNotify)fd_entry_free);
    ctx->sections =
        g_ptr_array_new_with_free_func((GDestroyNotify)app_section_free);
    ctx->section_index = g_hash_table_new(keyed_str_hash, g_str_equal);
    ctx->listed_fds = g_array_new(false, false, sizeof(int));
    ctx->timestamps =
        g_ptr_array_new_with_free_func((GDestroyNotify)phase_timestamp_free);
    ctx->update_timestamps =
        g_ptr_array_new_with_free_func((GDestroyNotify)phase_timestamp_free);
    ctx->blockers =
        g_ptr_array_new_with_free_func((GDestroyNotify)update_blocker_free);
    ctx->log_max_priority = LOG_INFO;
    /* The operator's switch (like libkmod's KMOD_LOG): the priority wins
     * over the application's cprkit_set_log_priority() (turning debug
     * logging on is the point), stderr is the destination until the
     * application sets its own. secure_getenv: a set-uid program does not
     * print at its caller's request. */
    r = log_priority_parse(secure_getenv(CPRKIT_LOG_ENV));
    if (r >= 0) {
        ctx->log_max_priority = r;
        ctx->log_priority_from_env = true;
        ctx->log_fn = log_to_stderr;
    }
    ctx->blob_fd = -EBADF;
    keeper_link_init(&ctx->keeper);
    participants_init(ctx);
    *ret_ctx = ctx;
    return 0;
}

CPRKIT_EXPORT void cprkit_free(cprkit_ctx *ctx)
{
    if (!ctx)
        return;
    fd_index_clear(&ctx->fd_index);
    g_ptr_array_unref(ctx->fds);
    arena_clear(&ctx->fd_arena);
    g_hash_table_unref(ctx->section_index);
    g_array_unref(ctx->listed_fds);
    g_ptr_array_unref(ctx->sections);
    g_ptr_array_unref(ctx->timestamps);
    g_ptr_array_unref(ctx->update_timestamps);
    participants_clear(ctx);
    g_ptr_array_unref(ctx->blockers);
    closep(&ctx->blob_fd);
    command_line_clear(&ctx->rescue);
    free(ctx->rollback_reason);
    g_free(ctx->rollback_binary);
    g_free(ctx->restart_reason);
    keeper_link_clear(&ctx->keeper);
    free(ctx->last_error);
    free(ctx);
}

CPRKIT_EXPORT void cprkit_set_log_fn(cprkit_ctx *ctx, cprkit_log_fn fn,
                                     void *userdata)
{
    ctx->log_fn = fn;
    ctx->log_userdata = userdata;
}

CPRKIT_EXPORT void cprkit_set_log_priority(cprkit_ctx *ctx, int max_priority)
{
    if (ctx->log_priority_from_env)
        return;
    ctx->log_max_priority = max_priority;
}

CPRKIT_EXPORT int cprkit_get_log_priority(const cprkit_ctx *ctx)
{
    return ctx->log_max_priority;
}

CPRKIT_EXPORT const char *cprkit_last_error(const cprkit_ctx *ctx)
{
    return ctx->last_error ? ctx->last_error : "";
}

__attribute__((format(printf, 3, 0))) static void
ctx_vlog(cprkit_ctx *ctx, int priority, const char *fmt, va_list ap)
{
    char msg[1024];

    if (!ctx->log_fn || priority > ctx->log_max_priority)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    ctx->log_fn(ctx->log_userdata, priority, msg);
}

void ctx_log(cprkit_ctx *ctx, int priority, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ctx_vlog(ctx, priority, fmt, ap);
    va_end(ap);
}

/* Replaces the last-error message; NULL on allocation failure. */
__attribute__((format(printf, 2, 0))) static void
set_error_v(cprkit_ctx *ctx, const char *fmt, va_list ap)
{
    char *msg = NULL;

    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    free(ctx->last_error);
    ctx->last_error = msg;
}

/* Records why an operation failed and returns error (a negative errno), so
 * call sites read `return ctx_fail(ctx, -EINVAL, "...")`. The library does
 * not log errors as errors: the caller decides; we only pass it at debug. */
int ctx_fail(cprkit_ctx *ctx, int error, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    set_error_v(ctx, fmt, ap);
    va_end(ap);
    if (ctx->last_error)
        ctx_log(ctx, LOG_DEBUG, "error: %s", ctx->last_error);
    return error;
}

CPRKIT_EXPORT int cprkit_set_error(cprkit_ctx *ctx, int error,
                                   const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    set_error_v(ctx, fmt, ap);
    va_end(ap);
    return error;
}

void ctx_clear_error(cprkit_ctx *ctx)
{
    free(ctx->last_error);
    ctx->last_error = NULL;
}

CPRKIT_EXPORT void cprkit_clear_error(cprkit_ctx *ctx)
{
    ctx_clear_error(ctx);
}

CPRKIT_EXPORT void cprkit_log(cprkit_ctx *ctx, int priority, const char *fmt,
                              ...)
{
    va_list ap;

    va_start(ap, fmt);
    ctx_vlog(ctx, priority, fmt, ap);
    va_end(ap);
}

uint64_t monotonic_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void phase_timestamp_free(struct phase_timestamp *t)
{
    if (!t)
        return;
    free(t->phase);
    free(t);
}

/* Records when an update phase happened; a later value for the same phase
 * replaces the earlier one. */
void timestamps_set(GPtrArray *timestamps, const char *phase, uint64_t ns)
{
    struct phase_timestamp *t;

    for (guint i = 0; i < timestamps->len; i++) {
        t = g_ptr_array_index(timestamps, i);
        if (strcmp(t->phase, phase) == 0) {
            t->monotonic_ns = ns;
            return;
        }
    }
    t = g_new0(struct phase_timestamp, 1);
    t->phase = g_strdup(phase);
    t->monotonic_ns = ns;
    g_ptr_array_add(timestamps, t);
}

CPRKIT_EXPORT uint64_t cprkit_timestamp(const cprkit_ctx *ctx,
                                        const char *phase)
{
    for (guint i = 0; i < ctx->timestamps->len; i++) {
        const struct phase_timestamp *t = g_ptr_array_index(ctx->timestamps, i);

        if (strcmp(t->phase, phase) == 0)
            return t->monotonic_ns;
    }
    return 0;
}

void command_line_clear(struct command_line *cmd)
{
    free(cmd->path);
    g_strfreev(cmd->argv);
    cmd->path = NULL;
    cmd->argv = NULL;
}

/* Names are printable, non-empty, at most CPRKIT_NAME_MAX bytes: they show
 * up in error messages and in `cpr-exec inspect`. */
bool name_is_valid(const char *name)
{
    size_t len;

    if (!name)
        return false;
    len = strlen(name);
    if (len == 0 || len > CPRKIT_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    return true;
}
