/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Which of the program's fds cross an update the shim starts. The program
 * did not call execve: the new binary re-runs its initialisation and opens
 * again what it needs. An fd it opened without O_CLOEXEC would survive
 * every such exec and pile up (DPDK: 23 -> 32 -> 41 fds over two
 * updates; a leaked lock made the next EAL fail). So before the exec,
 * every fd is made close-on-exec except those the process was started
 * with (stdio, a service manager's sockets, the keeper's) and those cprkit
 * preserves (cprkit_exec() clears FD_CLOEXEC on them again). An fd the
 * program opened itself counts as inherited only while it is the same
 * file: a number reused after a close is the program's.
 * The program's own execve is left alone: what it passes is its choice.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preload-internal.h"

struct fd_at_start {
    int fd;
    dev_t dev;
    ino_t ino;
};

static struct fd_at_start *inherited;
static size_t n_inherited;

/* Calls fn for every open fd above stderr. */
static void each_fd(void (*fn)(int fd, void *data), void *data)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);

        if (*end || end == e->d_name || fd <= STDERR_FILENO ||
            fd == dirfd(d))
            continue;
        fn((int)fd, data);
    }
    closedir(d);
}

static void record_inherited(int fd, void *data)
{
    struct stat st;
    struct fd_at_start *grown;

    (void)data;
    if (fstat(fd, &st) < 0)
        return;
    grown = realloc(inherited, (n_inherited + 1) * sizeof(*inherited));
    if (!grown)
        return;
    inherited = grown;
    inherited[n_inherited++] =
        (struct fd_at_start){.fd = fd, .dev = st.st_dev, .ino = st.st_ino};
}

void preload_exec_fds_init(void)
{
    each_fd(record_inherited, NULL);
}

static bool is_inherited(int fd)
{
    struct stat st;

    for (size_t i = 0; i < n_inherited; i++)
        if (inherited[i].fd == fd)
            return fstat(fd, &st) == 0 && st.st_dev == inherited[i].dev &&
                   st.st_ino == inherited[i].ino;
    return false;
}

static void mark_program_fd(int fd, void *data)
{
    struct preload_exec_fds *changed = data;
    int flags = fcntl(fd, F_GETFD);

    if (flags < 0 || (flags & FD_CLOEXEC) || is_inherited(fd) ||
        preload_private_has(fd))
        return;
    if (changed->n == changed->size) {
        size_t size = changed->size ? 2 * changed->size : 32;
        int *grown = realloc(changed->fds, size * sizeof(int));

        if (!grown)
            return; /* left as it is: a leak, not a failure */
        changed->fds = grown;
        changed->size = size;
    }
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) == 0)
        changed->fds[changed->n++] = fd;
}

void preload_exec_fds_close_on_exec(struct preload_exec_fds *changed)
{
    *changed = (struct preload_exec_fds){0};
    each_fd(mark_program_fd, changed);
    if (changed->n)
        preload_log(LOG_DEBUG,
                    "%zu fd(s) the program opened without O_CLOEXEC are "
                    "closed by the exec",
                    changed->n);
}

void preload_exec_fds_restore(struct preload_exec_fds *changed)
{
    for (size_t i = 0; i < changed->n; i++)
        (void)fcntl(changed->fds[i], F_SETFD, 0);
    free(changed->fds);
    *changed = (struct preload_exec_fds){0};
}
