/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers shared by all cprkit code: cleanup attributes and visibility. */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

/* Symbols are hidden by default (-fvisibility=hidden); the public API is
 * marked with this and listed in libcprkit.sym. */
#define CPRKIT_EXPORT __attribute__((visibility("default")))

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p)
{
    free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

/* Closes an fd, keeping errno: cleanup runs on error paths where errno
 * still matters to the caller. */
static inline void closep(int *fd)
{
    if (*fd >= 0) {
        int saved_errno = errno;
        close(*fd);
        errno = saved_errno;
    }
}
#define _cleanup_close_ _cleanup_(closep)

/* Hands ownership out of a cleanup variable. */
#define TAKE_FD(fd)                                                            \
    ({                                                                         \
        int _fd_ = (fd);                                                       \
        (fd) = -EBADF;                                                         \
        _fd_;                                                                  \
    })
#define TAKE_PTR(p)                                                            \
    ({                                                                         \
        __typeof__(p) _p_ = (p);                                               \
        (p) = NULL;                                                            \
        _p_;                                                                   \
    })

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
