/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libc functions the shim exports: open/openat (and their 64 forms),
 * ioctl, close, execve/execv/execvp/execvpe. Each passes straight to libc
 * unless the shim is on (the process that started it, not a library call)
 * and the call is the shim's business; then it runs under preload_lock.
 */
/* open and open64 (openat, openat64) are separate symbols to interpose;
 * with 64-bit file offsets the headers would make them one. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "preload-internal.h"

int (*preload_real_openat)(int, const char *, int, ...);
int (*preload_real_ioctl)(int, unsigned long, ...);
int (*preload_real_close)(int);
int (*preload_real_execve)(const char *, char *const[], char *const[]);
static int (*real_open)(const char *, int, ...);

pthread_mutex_t preload_lock = PTHREAD_MUTEX_INITIALIZER;
__thread int preload_in_lib;
bool preload_active;
pid_t preload_owner;

void preload_resolve(void)
{
    if (real_open)
        return;
    preload_real_openat =
        (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
    preload_real_ioctl =
        (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    preload_real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    preload_real_execve = (int (*)(const char *, char *const[],
                                   char *const[]))dlsym(RTLD_NEXT, "execve");
    /* Last: it is what says the others are resolved. */
    real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
}

int preload_errno_ret(int r)
{
    errno = -r;
    return -1;
}

/* Interposed call paths run the shim only in the process that started it
 * (not in forked children) and not for the library's own calls. */
static bool shim_on(void)
{
    return preload_active && !preload_in_lib && getpid() == preload_owner;
}

/* ---- open ------------------------------------------------------------- */

struct open_args {
    int dirfd;
    const char *path;
    int flags;
    mode_t mode;
};

static int do_real_openat(void *data)
{
    struct open_args *a = data;
    int fd = preload_real_openat(a->dirfd, a->path, a->flags, a->mode);

    return fd < 0 ? -errno : fd;
}

static int open_common(int dirfd, const char *path, int flags, mode_t mode)
{
    struct open_args a = {dirfd, path, flags, mode};
    bool is_container;
    int r;

    preload_resolve();
    if (shim_on() && path && preload_iommufd_path(path)) {
        /* Passed through, but no update may pretend to keep it: the exec
         * would close these fds and reset the device behind our back. */
        r = preload_real_openat(dirfd, path, flags, mode);
        if (r >= 0) {
            pthread_mutex_lock(&preload_lock);
            preload_taint("the program opened %s: the shim handles VFIO "
                          "type1 (/dev/vfio/vfio and groups) only, not "
                          "iommufd or VFIO device cdevs (link libcprkit and "
                          "use cprkit-iommufd.h)", path);
            pthread_mutex_unlock(&preload_lock);
        }
        return r;
    }
    if (!shim_on() || !path || preload_vfio_path(path, &is_container) < 0)
        return preload_real_openat(dirfd, path, flags, mode);
    pthread_mutex_lock(&preload_lock);
    r = preload_vfio_open(path, flags, do_real_openat, &a);
    pthread_mutex_unlock(&preload_lock);
    return r < 0 ? preload_errno_ret(r) : r;
}

static mode_t open_mode(int flags, va_list ap)
{
    return (flags & (O_CREAT | __O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, mode);
}

/* ---- ioctl ------------------------------------------------------------ */

EXPORT int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    void *arg;
    int r;

    va_start(ap, req);
    arg = va_arg(ap, void *);
    va_end(ap);
    preload_resolve();
    if (_IOC_TYPE(req) != VFIO_TYPE || !shim_on())
        return preload_real_ioctl(fd, req, arg);
    pthread_mutex_lock(&preload_lock);
    r = preload_vfio_ioctl(fd, req, arg);
    pthread_mutex_unlock(&preload_lock);
    if (r == 1)
        return preload_real_ioctl(fd, req, arg);
    return r < 0 ? preload_errno_ret(r) : r;
}

/* ---- close ------------------------------------------------------------ */

EXPORT int close(int fd)
{
    preload_resolve();
    if (!shim_on())
        return preload_real_close(fd);
    pthread_mutex_lock(&preload_lock);
    /* fds the program never saw (the library's copies, memfds, the
     * control socket) survive programs that close every fd. */
    if (preload_private_has(fd)) {
        pthread_mutex_unlock(&preload_lock);
        return 0;
    }
    if (preload_container_by_fd(fd) || preload_device_by_fd(fd))
        preload_taint("the program closed its VFIO fd %d", fd);
    pthread_mutex_unlock(&preload_lock);
    return preload_real_close(fd);
}

/* ---- execve ----------------------------------------------------------- */

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    static const char *const drop[] = {CPRKIT_CONTROL_SOCKET_ENV,
                                       CPRKIT_STATE_FD_ENV, NULL};
    char **env;
    int r;

    preload_resolve();
    if (preload_in_lib)
        return preload_real_execve(path, argv, envp);
    /* A child of the program (after_fork_child() made it inactive, so this
     * comes first): it must not take over the control socket or the state;
     * without the variables the shim stays passive in what it runs. */
    if (preload_owner > 0 && getpid() != preload_owner) {
        env = preload_env_without(envp, drop);
        if (!env)
            return preload_errno_ret(-ENOMEM);
        r = preload_real_execve(path, argv, env);
        free(env);
        return r;
    }
    if (!preload_active)
        return preload_real_execve(path, argv, envp);
    /* The program replaces itself: that is an update. */
    pthread_mutex_lock(&preload_lock);
    r = preload_upgrade(NULL, preload_ctx, path, argv);
    pthread_mutex_unlock(&preload_lock);
    return preload_errno_ret(r);
}

/* glibc's execv and execvp call its internal execve, not the exported
 * one: they are interposed too (execl* are not: docs/limits.md). */
EXPORT int execv(const char *path, char *const argv[])
{
    extern char **environ;

    return execve(path, argv, environ);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    if (!*file)
        return preload_errno_ret(-ENOENT);
    if (strchr(file, '/'))
        return execve(file, argv, envp);
    /* The search goes through our execve (which strips a child's
     * environment) whenever the shim was ever active in this program. */
    if (preload_in_lib || preload_owner <= 0)
        return ((int (*)(const char *, char *const[], char *const[]))dlsym(
            RTLD_NEXT, "execvpe"))(file, argv, envp);
    return preload_execvpe_search(file, argv, envp);
}

EXPORT int execvp(const char *file, char *const argv[])
{
    extern char **environ;

    return execvpe(file, argv, environ);
}
