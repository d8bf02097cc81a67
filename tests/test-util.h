/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the unit tests. */
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* Number of open fds of this process, to prove failure paths leak none. */
static inline int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    g_assert_nonnull(d);
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

/* This test program: it has the core linked in, so it passes the
 * new-binary probe of cprkit_check_update() where /bin/true would not. */
static inline const char *test_self_exe(void)
{
    static char path[4096];

    if (!path[0])
        g_assert_cmpint(readlink("/proc/self/exe", path, sizeof(path) - 1), >,
                        0);
    return path;
}

/* valgrind preloads its vgpreload_*.so into the programs it runs. */
static inline bool running_under_valgrind(void)
{
    const char *preload = g_getenv("LD_PRELOAD");

    return preload && strstr(preload, "valgrind");
}

static inline bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static inline bool fd_has_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);

    g_assert_cmpint(flags, >=, 0);
    return flags & FD_CLOEXEC;
}

static inline int make_memfd_with(const char *name, const char *content)
{
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, content, strlen(content)), ==,
                    (ssize_t)strlen(content));
    return fd;
}
