/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control endpoint: a UNIX socket speaking JSON lines, through which
 * `cpr-exec` asks a running program for its status, its state, a
 * pre-flight check, or an upgrade. Protocol: docs/operations.md.
 *
 * The listening socket is a preserved fd, so the socket path stays valid
 * across updates. The connection of the client that asked for an upgrade
 * is preserved too: the new binary (or, after a rollback, the old one)
 * reclaims it in cprkit_control_listen() and answers it once it serves.
 *
 * This file creates, reclaims and frees the endpoint; the rest of it is
 * one file per concept (list in control-endpoint.h).
 */
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "control-endpoint.h"
#include "sd-notify.h"

struct fd_query {
    const char *name;
    int id;
    bool found;
};

static void match_fd(void *userdata, const char *name, int id, int fd,
                     enum cprkit_fd_type type)
{
    struct fd_query *q = userdata;

    if (id == q->id && strcmp(name, q->name) == 0)
        q->found = true;
}

/* Whether (name, id) is registered, without claiming it. */
static bool control_fd_registered(cprkit_ctx *ctx, const char *name, int id)
{
    struct fd_query q = {name, id, false};

    cprkit_fd_foreach(ctx, match_fd, &q);
    return q.found;
}

int control_fail(cprkit_ctx *ctx, int error, const char *fmt, ...)
{
    _cleanup_free_ char *msg = NULL;
    va_list ap;

    /* vasprintf, not GLib: messages use %m. */
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    cprkit_set_error(ctx, error, "%s", msg ? msg : "");
    if (msg)
        cprkit_log(ctx, LOG_DEBUG, "error: %s", msg);
    return error;
}

uint64_t control_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

char *control_self_exe(void)
{
    char *exe = g_file_read_link("/proc/self/exe", NULL);

    return exe ? exe : g_strdup("");
}

static char *socket_path_of(int fd)
{
    struct sockaddr_un sa = {0};
    socklen_t len = sizeof(sa);

    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 ||
        sa.sun_family != AF_UNIX ||
        len <= offsetof(struct sockaddr_un, sun_path))
        return NULL;
    return g_strndup(sa.sun_path, len - offsetof(struct sockaddr_un, sun_path));
}

CPRKIT_EXPORT int cprkit_control_listen(cprkit_ctx *ctx,
                                        const char *socket_path,
                                        cprkit_control **ret_control)
{
    const char *path =
        socket_path ? socket_path : getenv(CPRKIT_CONTROL_SOCKET_ENV);
    g_autofree char *reclaimed_path = NULL;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    _cleanup_close_ int listen_fd = -EBADF;
    _cleanup_close_ int epoll_fd = -EBADF;
    cprkit_control *c;
    int r;

    if (!ret_control)
        return control_fail(ctx, -EINVAL,
                            "cprkit_control_listen needs ret_control");

    if (control_fd_registered(ctx, CONTROL_LISTEN_FD_NAME, 0)) {
        /* Started by an update: the socket is already listening (clients
         * that connected during the exec wait in its backlog). */
        r = cprkit_fd_find(ctx, CONTROL_LISTEN_FD_NAME, 0, CPRKIT_FD_SOCKET);
        if (r < 0)
            return r;
        listen_fd = r;
        reclaimed_path = socket_path_of(listen_fd);
        if (!reclaimed_path) {
            listen_fd = -EBADF;
            return control_fail(ctx, -ENOTSOCK,
                                "preserved control socket has no path");
        }
        path = reclaimed_path;
    } else {
        if (!path || !*path)
            return control_fail(ctx, -EINVAL,
                                "no control socket path: pass one or set %s",
                                CPRKIT_CONTROL_SOCKET_ENV);
        if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return control_fail(ctx, -ENAMETOOLONG,
                                "control socket path %s is too long", path);
        r = control_bind_listen(ctx, path, &listen_fd);
        if (r < 0)
            return r;
        r = cprkit_fd_save(ctx, CONTROL_LISTEN_FD_NAME, 0, listen_fd);
        if (r < 0) {
            unlink(path);
            return r;
        }
    }

    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0 ||
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
        r = -errno;
        if (!reclaimed_path) {
            cprkit_fd_remove(ctx, CONTROL_LISTEN_FD_NAME, 0);
            unlink(path);
        } else {
            listen_fd = -EBADF; /* stays preserved */
        }
        return control_fail(ctx, r, "control endpoint: epoll: %s",
                            strerror(-r));
    }

    c = g_new0(cprkit_control, 1);
    c->ctx = ctx;
    c->path = g_strdup(path);
    c->listen_fd = TAKE_FD(listen_fd);
    c->epoll_fd = TAKE_FD(epoll_fd);
    c->clients =
        g_ptr_array_new_with_free_func((GDestroyNotify)control_client_free);
    c->pending_fd = -1;
    c->history = json_array();
    c->update_pending = cprkit_is_incoming(ctx);

    /* The client that asked for this update: claimed now (before or after
     * the commit, which does not wait for cprkit's own fds), kept
     * registered until it is answered so that a rollback hands it back to
     * the previous binary too. */
    if (control_fd_registered(ctx, CONTROL_CLIENT_FD_NAME, 0)) {
        r = cprkit_fd_find(ctx, CONTROL_CLIENT_FD_NAME, 0, CPRKIT_FD_SOCKET);
        if (r >= 0) {
            c->pending_fd = r;
        }
    }
    /* Listening after the commit: the update is still to be answered. */
    if (c->pending_fd >= 0)
        c->update_pending = true;
    /* Before the first phase event: it adds to the update under way. */
    control_record_load(c);
    if (c->pending_fd >= 0)
        control_update_phase(c->current, c->pending_fd, c->pending_id,
                             control_incoming_phase(c), NULL);
    if (c->update_pending)
        sdnotify_sendf("STATUS=cprkit: %s, generation %" PRIu64,
                       strcmp(control_incoming_phase(c),
                              CONTROL_PHASE_ROLLING_BACK) == 0
                           ? "rolling back"
                           : "restoring",
                       cprkit_generation(ctx));
    cprkit_log(ctx, LOG_INFO, "control: %s %s",
               reclaimed_path ? "reclaimed" : "listening on", c->path);
    *ret_control = c;
    return 0;
}

CPRKIT_EXPORT void cprkit_control_set_upgrade_fn(cprkit_control *control,
                                                 cprkit_upgrade_fn fn,
                                                 void *userdata)
{
    control->upgrade_fn = fn;
    control->upgrade_userdata = userdata;
}

void control_keeper_sync(cprkit_control *c)
{
    if (cprkit_keeper_sync(c->ctx) < 0)
        cprkit_clear_error(c->ctx);
}

CPRKIT_EXPORT int cprkit_control_mark_serving(cprkit_control *control)
{
    if (cprkit_is_incoming(control->ctx))
        return control_fail(control->ctx, -EBUSY,
                            "the incoming update is not committed yet");
    if (control->update_pending)
        control_finish_update(control, control_now_ns());
    else
        sdnotify_sendf("READY=1\nSTATUS=cprkit: serving, generation %" PRIu64,
                       cprkit_generation(control->ctx));
    /* Set up and serving: what the keeper restarts us with from now on. */
    control_keeper_sync(control);
    return 0;
}

CPRKIT_EXPORT uint64_t
cprkit_control_last_blackout_ns(const cprkit_control *control)
{
    return control->last_blackout_ns;
}

CPRKIT_EXPORT void cprkit_control_free(cprkit_control *c)
{
    if (!c)
        return;
    g_ptr_array_unref(c->clients);
    closep(&c->epoll_fd);
    if (c->pending_fd >= 0) {
        cprkit_fd_remove(c->ctx, CONTROL_CLIENT_FD_NAME, 0);
        close(c->pending_fd);
    }
    cprkit_fd_remove(c->ctx, CONTROL_LISTEN_FD_NAME, 0);
    closep(&c->listen_fd);
    if (c->path)
        unlink(c->path);
    g_free(c->path);
    json_decref(c->history);
    json_decref(c->current);
    json_decref(c->pending_id);
    g_free(c);
}
