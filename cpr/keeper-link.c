/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The program's side of the keeper (docs/keeper.md): under `cpr-exec run`
 * the program is the keeper's child, and the library hands the keeper,
 * over CPRKIT_KEEPER_FD, dups of every preserved fd with the state that
 * names them — after each commit, whenever the set changed
 * (cprkit_keeper_sync()), and right before an update's execve. If the
 * program dies, the keeper starts the right binary with what it kept
 * (shim/keeper.c); the device never sees its last fd close.
 *
 * The protocol is in keeper-proto.h. Sending never blocks the program for
 * long: the socket is the keeper's, which reads it at once; a failed send
 * means the keeper is gone and is only logged — the program serves on,
 * without the keeper's protection.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "cprkit-internal.h"
#include "keeper-proto.h"

void keeper_link_init(struct keeper_link *k)
{
    memset(k, 0, sizeof(*k));
    k->fd = -EBADF;
    k->commit_timeout_ms = KEEPER_DEFAULT_COMMIT_TIMEOUT_MS;
}

void keeper_link_clear(struct keeper_link *k)
{
    closep(&k->fd);
    g_free(k->last_cause);
    keeper_link_init(k);
}

bool keeper_env_is_ours(const char *entry)
{
    static const char *const names[] = {
        CPRKIT_KEEPER_FD_ENV,         CPRKIT_KEEPER_PID_ENV,
        CPRKIT_KEEPER_RESTARTS_ENV,   CPRKIT_KEEPER_LAST_CAUSE_ENV,
        CPRKIT_KEEPER_LAST_AT_ENV,    CPRKIT_RESTART_REASON_ENV,
        CPRKIT_KEEPER_DIED_NS_ENV,
    };

    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        size_t n = strlen(names[i]);

        if (!strncmp(entry, names[i], n) && entry[n] == '=')
            return true;
    }
    return false;
}

static bool parse_u64(const char *s, uint64_t *ret)
{
    char *end;

    if (!s || !g_ascii_isdigit(s[0]))
        return false;
    errno = 0;
    *ret = g_ascii_strtoull(s, &end, 10);
    return errno == 0 && *end == '\0';
}

/* A keeper socket is a SOCK_SEQPACKET UNIX socket; anything else at that
 * number (a stale variable, a launcher that reused the fd) is ignored
 * rather than written to. */
static bool is_keeper_socket(int fd)
{
    struct stat st;
    int type = 0;
    socklen_t len = sizeof(type);

    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
           getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
           type == SOCK_SEQPACKET;
}

void keeper_attach(cprkit_ctx *ctx)
{
    struct keeper_link *k = &ctx->keeper;
    const char *fd_str = getenv(CPRKIT_KEEPER_FD_ENV);
    const char *reason = getenv(CPRKIT_RESTART_REASON_ENV);
    uint64_t v;

    if (reason && !ctx->restarted) {
        ctx->restarted = true;
        ctx->restart_reason = g_strdup(reason);
    }
    if (parse_u64(getenv(CPRKIT_KEEPER_DIED_NS_ENV), &v))
        k->died_ns = v;
    if (k->fd < 0 && parse_u64(fd_str, &v) && v <= INT_MAX) {
        if (is_keeper_socket((int)v) && fd_set_cloexec((int)v, true) == 0) {
            k->fd = (int)v;
            if (parse_u64(getenv(CPRKIT_KEEPER_PID_ENV), &v))
                k->pid = (int)v;
            if (parse_u64(getenv(CPRKIT_KEEPER_RESTARTS_ENV), &v))
                k->restarts = (unsigned)v;
            if (getenv(CPRKIT_KEEPER_LAST_CAUSE_ENV))
                k->last_cause = g_strdup(getenv(CPRKIT_KEEPER_LAST_CAUSE_ENV));
            if (parse_u64(getenv(CPRKIT_KEEPER_LAST_AT_ENV), &v))
                k->last_at_us = v;
        } else {
            ctx_log(ctx, LOG_WARNING,
                    "%s=%s is not a keeper socket; running without a keeper",
                    CPRKIT_KEEPER_FD_ENV, fd_str);
        }
    }
    /* For us alone: a child of the program must not talk to the keeper. */
    unsetenv(CPRKIT_KEEPER_FD_ENV);
    unsetenv(CPRKIT_KEEPER_PID_ENV);
    unsetenv(CPRKIT_KEEPER_RESTARTS_ENV);
    unsetenv(CPRKIT_KEEPER_LAST_CAUSE_ENV);
    unsetenv(CPRKIT_KEEPER_LAST_AT_ENV);
    unsetenv(CPRKIT_RESTART_REASON_ENV);
    unsetenv(CPRKIT_KEEPER_DIED_NS_ENV);
}

/* One datagram: header, tail, fds. */
static int keeper_send(cprkit_ctx *ctx, const char *header, const GString *tail,
                       const int *fds, unsigned n_fds)
{
    struct keeper_link *k = &ctx->keeper;
    g_autoptr(GString) msg = g_string_new(header);
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * KEEPER_FDS_PER_MSG)];
    } control;
    struct iovec iov;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n;

    if (k->fd < 0 || k->broken)
        return 0;
    g_string_append_c(msg, '\n');
    if (tail)
        g_string_append_len(msg, tail->str, (gssize)tail->len);
    if (msg->len > KEEPER_MSG_MAX)
        return ctx_fail(ctx, -EMSGSIZE, "keeper message of %zu bytes is too big",
                        msg->len);
    iov.iov_base = msg->str;
    iov.iov_len = msg->len;
    if (n_fds) {
        struct cmsghdr *cm;

        memset(&control, 0, sizeof(control));
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n_fds);
    }
    do
        n = sendmsg(k->fd, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;

        /* The keeper died or closed its end: go on without it. */
        k->broken = true;
        ctx_log(ctx, LOG_WARNING,
                "the keeper (pid %d) cannot be reached (%s): the program "
                "runs on without its protection",
                k->pid, strerror(e));
        return ctx_fail(ctx, -e, "sending to the keeper: %s", strerror(e));
    }
    return 0;
}

/* Every preserved fd, in "fds" messages of at most KEEPER_FDS_PER_MSG. */
static int send_fds(cprkit_ctx *ctx)
{
    int fds[KEEPER_FDS_PER_MSG];
    g_autoptr(GString) numbers = g_string_new(NULL);
    unsigned n = 0;
    int r;

    for (guint i = 0; i <= ctx->fds->len; i++) {
        if (n == KEEPER_FDS_PER_MSG || (i == ctx->fds->len && n)) {
            r = keeper_send(ctx, "fds", numbers, fds, n);
            if (r < 0)
                return r;
            g_string_truncate(numbers, 0);
            n = 0;
        }
        if (i == ctx->fds->len)
            break;
        {
            const struct fd_entry *e = g_ptr_array_index(ctx->fds, i);

            fds[n++] = e->fd;
            g_string_append_printf(numbers, "%d", e->fd);
            g_string_append_c(numbers, '\0');
        }
    }
    return 0;
}

static void append_command_line(GString *tail, const struct command_line *cmd)
{
    g_string_append(tail, cmd->path);
    g_string_append_c(tail, '\0');
    for (char **a = cmd->argv; a && *a; a++) {
        g_string_append(tail, *a);
        g_string_append_c(tail, '\0');
    }
}

void keeper_hello(cprkit_ctx *ctx, bool loaded)
{
    g_autofree char *header = NULL;

    if (ctx->keeper.fd < 0)
        return;
    header = g_strdup_printf("hello pid=%d loaded=%d", (int)getpid(),
                             loaded ? 1 : 0);
    if (keeper_send(ctx, header, NULL, NULL, 0) < 0)
        ctx_clear_error(ctx);
}

/* Tells the keeper why it cannot keep a state (it drops what it had:
 * restarting from an older state would hand out fds the program closed). */
static void send_unkept(cprkit_ctx *ctx, const char *why)
{
    g_autoptr(GString) tail = g_string_new(why);

    g_string_append_c(tail, '\0');
    ctx_log(ctx, LOG_WARNING, "the keeper cannot keep this state: %s", why);
    if (keeper_send(ctx, "unkept", tail, NULL, 0) < 0)
        ctx_clear_error(ctx);
    ctx->keeper.synced = true;
    ctx->keeper.synced_serial = ctx->state_serial;
}

/* The committed state as a sealed blob: what a restarted process loads.
 * No timestamps (it is no update), the generation as it is now, and this
 * binary's own command line as the one to restart. */
static int sync_now(cprkit_ctx *ctx)
{
    struct command_line self = {0};
    Cprkit__State *state = NULL;
    _cleanup_close_ int blob_fd = -EBADF;
    g_autoptr(GString) tail = g_string_new(NULL);
    g_autofree char *header = NULL;
    int r;

    r = command_line_of_self(ctx, &self);
    if (r >= 0) {
        r = state_build_without_fds(ctx, ctx->generation, &state);
        if (r >= 0) {
            state->n_timestamps = 0;
            r = blob_write_memfd_with_registry(ctx, state, &self, &blob_fd,
                                               NULL);
        }
        state_build_free(state);
    }
    if (r < 0) {
        g_autofree char *why = g_strdup(cprkit_last_error(ctx));

        command_line_clear(&self);
        send_unkept(ctx, why);
        return ctx_fail(ctx, r, "%s", why);
    }
    append_command_line(tail, &self);
    command_line_clear(&self);
    header = g_strdup_printf("state generation=%" PRIu64, ctx->generation);
    r = send_fds(ctx);
    if (r >= 0)
        r = keeper_send(ctx, header, tail, &blob_fd, 1);
    if (r < 0)
        return r;
    ctx->keeper.synced = true;
    ctx->keeper.synced_serial = ctx->state_serial;
    ctx_log(ctx, LOG_DEBUG, "keeper: kept %u fds, generation %" PRIu64,
            ctx->fds->len, ctx->generation);
    return 0;
}

CPRKIT_EXPORT int cprkit_keeper_sync(cprkit_ctx *ctx)
{
    struct keeper_link *k = &ctx->keeper;

    if (k->fd < 0 || k->broken)
        return 0;
    /* Between load and commit the keeper keeps the update's state; the
     * commit hands over the new one. */
    if (ctx->incoming)
        return 0;
    if (k->synced && k->synced_serial == ctx->state_serial)
        return 0;
    return sync_now(ctx);
}

void keeper_handoff(cprkit_ctx *ctx, int blob_fd,
                    const struct command_line *restart, GPtrArray *env)
{
    struct keeper_link *k = &ctx->keeper;
    g_autoptr(GString) tail = g_string_new(NULL);
    g_autofree char *header = NULL;
    int r;

    if (k->fd < 0)
        return;
    if (!k->broken && restart && restart->path) {
        append_command_line(tail, restart);
        header = g_strdup_printf("exec generation=%" PRIu64 " deadline_ms=%u",
                                 ctx->generation + 1, k->commit_timeout_ms);
        r = send_fds(ctx);
        if (r >= 0)
            r = keeper_send(ctx, header, tail, &blob_fd, 1);
        if (r < 0)
            ctx_clear_error(ctx);
    }
    /* The next binary talks to the same keeper. */
    if (fd_set_cloexec(k->fd, false) < 0)
        return;
    g_ptr_array_add(env, g_strdup_printf(CPRKIT_KEEPER_FD_ENV "=%d", k->fd));
    g_ptr_array_add(env, g_strdup_printf(CPRKIT_KEEPER_PID_ENV "=%d", k->pid));
    g_ptr_array_add(env, g_strdup_printf(CPRKIT_KEEPER_RESTARTS_ENV "=%u",
                                         k->restarts));
    if (k->last_cause)
        g_ptr_array_add(env, g_strdup_printf(CPRKIT_KEEPER_LAST_CAUSE_ENV "=%s",
                                             k->last_cause));
    if (k->last_at_us)
        g_ptr_array_add(env, g_strdup_printf(CPRKIT_KEEPER_LAST_AT_ENV
                                             "=%" PRIu64,
                                             k->last_at_us));
}

void keeper_handoff_failed(cprkit_ctx *ctx)
{
    if (ctx->keeper.fd < 0)
        return;
    fd_set_cloexec(ctx->keeper.fd, true);
    if (keeper_send(ctx, "exec-failed", NULL, NULL, 0) < 0)
        ctx_clear_error(ctx);
}

CPRKIT_EXPORT int cprkit_keeper_status(const cprkit_ctx *ctx,
                                       struct cprkit_keeper_status *ret)
{
    const struct keeper_link *k = &ctx->keeper;
    struct cprkit_keeper_status s = {0};

    if (!ret || ret->size < sizeof(s))
        return -EINVAL;
    if (k->fd < 0)
        return -ENOENT;
    s.size = sizeof(s);
    s.pid = k->pid;
    s.restarts = k->restarts;
    s.last_cause = k->last_cause;
    s.last_restart_realtime_us = k->last_at_us;
    s.reachable = !k->broken;
    *ret = s;
    return 0;
}

CPRKIT_EXPORT int cprkit_set_commit_timeout(cprkit_ctx *ctx, uint32_t ms)
{
    if (ms == 0)
        return ctx_fail(ctx, -EINVAL, "a commit timeout of 0 ms");
    ctx->keeper.commit_timeout_ms = ms;
    return 0;
}

CPRKIT_EXPORT bool cprkit_is_restart(const cprkit_ctx *ctx)
{
    return ctx->restarted;
}

CPRKIT_EXPORT const char *cprkit_restart_reason(const cprkit_ctx *ctx)
{
    return ctx->restart_reason;
}
