/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Creating the control socket, and taking over a stale one: a socket file
 * that nobody accepts on is left over from a process that died and is
 * replaced; a live one belongs to someone else and is refused.
 */
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "control-endpoint.h"

int control_bind_listen(cprkit_ctx *ctx, const char *path, int *ret_fd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int fd = -EBADF;

    memcpy(sa.sun_path, path, strlen(path));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return control_fail(ctx, -errno, "control socket: %m");
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        _cleanup_close_ int probe = -EBADF;

        if (errno != EADDRINUSE)
            return control_fail(ctx, -errno,
                                "cannot bind control socket %s: %m", path);
        /* A socket file nobody accepts on is left over from a process
         * that died: replace it. A live one belongs to someone else. */
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0)
            return control_fail(ctx, -errno, "control socket: %m");
        if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
            errno != ECONNREFUSED)
            return control_fail(
                ctx, -EADDRINUSE,
                "control socket %s is in use by another process", path);
        if (unlink(path) < 0 ||
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            return control_fail(ctx, -errno,
                                "cannot bind control socket %s: %m", path);
    }
    /* Peer credentials are the real check; the mode keeps others from
     * even connecting. */
    if (chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
        int r = -errno;

        unlink(path);
        return control_fail(ctx, r, "control socket %s: %s", path,
                            strerror(-r));
    }
    *ret_fd = TAKE_FD(fd);
    return 0;
}
