/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What an fd is: its type (memfd, eventfd, VFIO container/group/device, ...)
 * and identity (st_dev/st_ino/st_rdev), recorded when it is saved and
 * checked again on the incoming side.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "cprkit-internal.h"

/* /dev/vfio/vfio is the misc device with minor VFIO_MINOR (196). */
#define MISC_MAJOR 10
#define VFIO_CONTAINER_MINOR 196

static const char *const fd_type_names[] = {
    [CPRKIT_FD_ANY] = "unspecified",
    [CPRKIT_FD_MEMFD] = "memfd",
    [CPRKIT_FD_EVENTFD] = "eventfd",
    [CPRKIT_FD_VFIO_CONTAINER] = "vfio-container",
    [CPRKIT_FD_VFIO_GROUP] = "vfio-group",
    [CPRKIT_FD_VFIO_DEVICE] = "vfio-device",
    [CPRKIT_FD_SOCKET] = "socket",
    [CPRKIT_FD_PIPE] = "pipe",
    [CPRKIT_FD_REGULAR_FILE] = "regular-file",
    [CPRKIT_FD_CHAR_DEVICE] = "char-device",
    [CPRKIT_FD_DIRECTORY] = "directory",
    [CPRKIT_FD_OTHER] = "other",
};

CPRKIT_EXPORT const char *cprkit_fd_type_name(enum cprkit_fd_type type)
{
    if ((unsigned)type >= ELEMENTSOF(fd_type_names))
        return "invalid";
    return fd_type_names[type];
}

/* The kernel's name for what an fd points at: "/memfd:x (deleted)",
 * "anon_inode:[eventfd]", "/dev/vfio/12", "pipe:[123]", ... */
static int fd_link_target(int fd, char *buf, size_t size)
{
    char path[64];
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    n = readlink(path, buf, size - 1);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return 0;
}

static enum cprkit_fd_type classify(const struct stat *st, const char *target)
{
    /* Anonymous inodes have no file type bits on some kernels and S_IFREG
     * on others; the kernel's name for them is what tells them apart. */
    if (strncmp(target, "anon_inode:", 11) == 0) {
        if (strcmp(target, "anon_inode:[eventfd]") == 0)
            return CPRKIT_FD_EVENTFD;
        if (strcmp(target, "anon_inode:[vfio-device]") == 0)
            return CPRKIT_FD_VFIO_DEVICE;
        return CPRKIT_FD_OTHER;
    }
    switch (st->st_mode & S_IFMT) {
    case S_IFSOCK:
        return CPRKIT_FD_SOCKET;
    case S_IFIFO:
        return CPRKIT_FD_PIPE;
    case S_IFDIR:
        return CPRKIT_FD_DIRECTORY;
    case S_IFCHR:
        if (major(st->st_rdev) == MISC_MAJOR &&
            minor(st->st_rdev) == VFIO_CONTAINER_MINOR)
            return CPRKIT_FD_VFIO_CONTAINER;
        /* iommufd-era per-device cdevs live under /dev/vfio/devices/: VFIO
         * device fds like a group's (the iommufd participant saves them
         * under the same names). /dev/iommu itself (misc, dynamic minor)
         * stays a char-device: a new type would load as "other" in a
         * reader that does not know it and fail its identity check. */
        if (strncmp(target, "/dev/vfio/devices/", 18) == 0)
            return CPRKIT_FD_VFIO_DEVICE;
        if (strncmp(target, "/dev/vfio/", 10) == 0)
            return CPRKIT_FD_VFIO_GROUP;
        return CPRKIT_FD_CHAR_DEVICE;
    case S_IFREG:
        /* memfds are shmem files named "/memfd:NAME (deleted)". */
        if (strncmp(target, "/memfd:", 7) == 0)
            return CPRKIT_FD_MEMFD;
        return CPRKIT_FD_REGULAR_FILE;
    default:
        return CPRKIT_FD_OTHER;
    }
}

int fd_fdinfo_field(int fd, const char *field, char *ret, size_t size)
{
    char path[64], buf[1024], key[64];
    const char *p, *end;
    ssize_t n;
    int f;

    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
    f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return -errno;
    n = read(f, buf, sizeof(buf) - 1);
    close(f);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    snprintf(key, sizeof(key), "\n%s:", field);
    p = strstr(buf, key);
    if (!p)
        return -ENOENT;
    p += strlen(key);
    p += strspn(p, " \t");
    end = strchrnul(p, '\n');
    if ((size_t)(end - p) >= size)
        return -ENAMETOOLONG;
    memcpy(ret, p, (size_t)(end - p));
    ret[end - p] = '\0';
    return 0;
}

/* The number that tells this eventfd from every other live one. */
static int eventfd_id(int fd, uint64_t *ret)
{
    char value[32];
    int r = fd_fdinfo_field(fd, "eventfd-id", value, sizeof(value));

    if (r < 0)
        return r;
    return sscanf(value, "%" SCNu64, ret) == 1 ? 0 : -EBADMSG;
}

/* The incoming side checks every preserved fd inside the blackout; the
 * full check (fstat, readlink of /proc/self/fd/N, and fdinfo for an
 * eventfd) costs five syscalls per fd. Two cases need less:
 *  - an eventfd saved with its eventfd-id: the fdinfo of an fd that shows
 *    that id is that eventfd (the id is what told eventfds apart anyway,
 *    they all share one anonymous inode);
 *  - a file with an inode of its own (not an anonymous one: eventfd, VFIO
 *    device, other): the same device and inode number is the same object,
 *    so its kind has not changed either.
 * Anything else, and every mismatch, goes through fd_identify() so the
 * error says what the fd is now. */
bool fd_unchanged_fast(int fd, const struct fd_identity *saved)
{
    struct stat st;
    uint64_t id;

    if (saved->type == CPRKIT_FD_EVENTFD)
        return saved->has_anon_id && eventfd_id(fd, &id) == 0 &&
               id == saved->anon_id;
    if (saved->type == CPRKIT_FD_VFIO_DEVICE && saved->mode_type != S_IFCHR)
        return false; /* a group's device fd: an anonymous inode */
    if (saved->type == CPRKIT_FD_OTHER || saved->mode_type == 0)
        return false;
    return fstat(fd, &st) == 0 && (uint64_t)st.st_dev == saved->dev &&
           (uint64_t)st.st_ino == saved->ino &&
           (uint64_t)st.st_rdev == saved->rdev &&
           (st.st_mode & S_IFMT) == saved->mode_type;
}

int fd_identify(int fd, struct fd_identity *ret)
{
    char target[256];
    struct stat st;
    int r;

    if (fstat(fd, &st) < 0)
        return -errno;
    r = fd_link_target(fd, target, sizeof(target));
    if (r < 0)
        return r;
    ret->type = classify(&st, target);
    ret->dev = st.st_dev;
    ret->ino = st.st_ino;
    ret->rdev = st.st_rdev;
    ret->mode_type = st.st_mode & S_IFMT;
    ret->has_anon_id = ret->type == CPRKIT_FD_EVENTFD &&
                       eventfd_id(fd, &ret->anon_id) == 0;
    if (!ret->has_anon_id)
        ret->anon_id = 0;
    return 0;
}

const char *fd_identity_describe(const struct fd_identity *id, char *buf,
                                 size_t size)
{
    if (id->has_anon_id)
        snprintf(buf, size, "%s (eventfd-id %" PRIu64 ")",
                 cprkit_fd_type_name(id->type), id->anon_id);
    else
        snprintf(buf, size, "%s (ino %" PRIu64 ")",
                 cprkit_fd_type_name(id->type), id->ino);
    return buf;
}

bool fd_identity_equal(const struct fd_identity *a, const struct fd_identity *b)
{
    return a->type == b->type && a->dev == b->dev && a->ino == b->ino &&
           a->rdev == b->rdev && a->mode_type == b->mode_type &&
           (!a->has_anon_id || !b->has_anon_id || a->anon_id == b->anon_id);
}

int fd_set_cloexec(int fd, bool cloexec)
{
    /* FD_CLOEXEC is the only fd flag Linux has: set it without reading
     * the flags first (one syscall per fd, on both sides of the exec,
     * inside the blackout). */
    if (fcntl(fd, F_SETFD, cloexec ? FD_CLOEXEC : 0) < 0)
        return -errno;
    return 0;
}
