/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sd_notify(3) without libsystemd. libsystemd and what it pulls in (gcrypt,
 * zstd, lz4, lzma, ...) would be loaded by every new binary inside the
 * update's blackout, for one datagram.
 *
 * The protocol is systemd's documented interface, stable and meant to be
 * reimplemented: sd_notify(3), NOTES, describes it in full (one datagram
 * holding the state string, sent to the AF_UNIX socket named by
 * $NOTIFY_SOCKET, a path if it starts with "/", Linux's abstract namespace
 * if it starts with "@"), and recent versions of that page carry a
 * standalone example implementation for programs that should not link
 * libsystemd; the notify socket is part of systemd's "Interface
 * Portability and Stability Promise" (systemd.io/PORTABILITY_AND_STABILITY).
 *
 * Like sd_notify(0, ...): NOTIFY_SOCKET stays set for later messages.
 * Process credentials need no SCM_CREDENTIALS message: the kernel attaches
 * the sender's to every datagram when the receiver set SO_PASSCRED, as
 * systemd does. The "vsock:" form (VMs talking to their host's manager)
 * is not supported: -EAFNOSUPPORT.
 */
#include <alloca.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "macros.h"
#include "sd-notify.h"

int sdnotify_send(const char *message)
{
    return sdnotify_send_fds(message, NULL, 0);
}

int sdnotify_send_fds(const char *message, const int *fds, unsigned n_fds)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct iovec iov = {.iov_base = (void *)message,
                        .iov_len = strlen(message)};
    struct msghdr mh = {.msg_name = &sa, .msg_iov = &iov, .msg_iovlen = 1};
    _cleanup_close_ int fd = -EBADF;
    size_t len;

    if (!path || !*path)
        return 0;
    if (path[0] != '/' && path[0] != '@')
        return -EAFNOSUPPORT;
    len = strlen(path);
    if (len >= sizeof(sa.sun_path))
        return -EINVAL;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@') {
        /* Abstract namespace: a leading NUL, and the address is exactly
         * that long (no terminating NUL counted). */
        sa.sun_path[0] = '\0';
        mh.msg_namelen =
            (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    } else {
        mh.msg_namelen =
            (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    }

    if (n_fds) {
        size_t space = CMSG_SPACE(sizeof(int) * n_fds);
        struct cmsghdr *cm;

        if (n_fds > 253)
            return -EINVAL;
        mh.msg_control = alloca(space);
        memset(mh.msg_control, 0, space);
        mh.msg_controllen = space;
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n_fds);
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* MSG_NOSIGNAL: a manager that went away must not kill the process. */
    if (sendmsg(fd, &mh, MSG_NOSIGNAL) < 0)
        return -errno;
    return 1;
}

int sdnotify_sendf(const char *fmt, ...)
{
    _cleanup_free_ char *message = NULL;
    va_list ap;
    int r;

    /* Nothing to format when nobody listens. */
    if (!getenv("NOTIFY_SOCKET"))
        return 0;
    va_start(ap, fmt);
    r = vasprintf(&message, fmt, ap);
    va_end(ap);
    if (r < 0)
        return -ENOMEM;
    return sdnotify_send(message);
}
