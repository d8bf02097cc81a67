/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Creating the control socket, and taking over a stale one: a socket file
 * that nobody accepts on is left over from a process that died and is
 * replaced; a live one belongs to someone else and is refused.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "control-endpoint.h"

int control_chmod_socket(const char *path, unsigned mode)
{
    _cleanup_close_ int pfd = -EBADF;
    char proc[64];
    struct stat st;

    /* chmod(path) follows symlinks: whoever may write to the socket's
     * directory could replace our fresh socket file with a symlink to any
     * file between bind() and chmod(), and a root process would chmod that
     * file. Take the path without following a symlink, make sure it is a
     * socket, and change that inode through its O_PATH fd. */
    pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0)
        return -errno;
    if (fstat(pfd, &st) < 0)
        return -errno;
    if (!S_ISSOCK(st.st_mode))
        return -ENOTSOCK;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
    if (chmod(proc, (mode_t)mode) < 0)
        return -errno;
    return 0;
}

int control_bind_listen(cprkit_ctx *ctx, const char *path, int *ret_fd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int fd = -EBADF;
    int r;

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
    r = control_chmod_socket(path, 0600);
    if (r < 0) {
        /* Not ours any more (a symlink or another file): leave it. */
        return control_fail(ctx, r,
                            "control socket %s: cannot set its mode (%s); "
                            "was it replaced after bind()?",
                            path, strerror(-r));
    }
    if (listen(fd, 16) < 0) {
        r = -errno;
        unlink(path);
        return control_fail(ctx, r, "control socket %s: %s", path,
                            strerror(-r));
    }
    *ret_fd = TAKE_FD(fd);
    return 0;
}
