/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PROCMAP_QUERY, and what maps an address for the preload shim: see
 * vma-info.h. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <glib.h>

#include "vma-info.h"

bool vma_query_disabled;

int vma_query(int maps_fd, uint64_t addr, uint64_t query_flags, bool with_name,
              struct vma_info *ret)
{
    char name[4096]; /* PATH_MAX: the kernel's d_path() fails above it */
    struct procmap_query_v1 q = {
        .size = sizeof(q),
        .query_flags = query_flags,
        .query_addr = addr,
    };
    size_t name_len = 0;

    if (vma_query_disabled)
        return -ENOTTY;
    if (with_name) {
        /* Defined for valgrind, which does not know the kernel writes it. */
        memset(name, 0, sizeof(name));
        q.vma_name_addr = (uintptr_t)name;
        q.vma_name_size = sizeof(name);
    }
    if (ioctl(maps_fd, PROCMAP_QUERY_IOCTL, &q) < 0)
        return -errno;
    ret->start = q.vma_start;
    ret->end = q.vma_end;
    ret->prot = (q.vma_flags & PROCMAP_QUERY_VMA_READABLE ? PROT_READ : 0) |
                (q.vma_flags & PROCMAP_QUERY_VMA_WRITABLE ? PROT_WRITE : 0) |
                (q.vma_flags & PROCMAP_QUERY_VMA_EXECUTABLE ? PROT_EXEC : 0);
    ret->shared = q.vma_flags & PROCMAP_QUERY_VMA_SHARED;
    ret->offset = q.vma_offset;
    ret->dev = makedev(q.dev_major, q.dev_minor);
    ret->ino = q.inode;
    /* The size returned counts the NUL; 0 means no name. Long paths are
     * cut, as in vma_info_parse_line. */
    if (with_name && q.vma_name_size)
        name_len = strnlen(name, sizeof(name));
    if (name_len >= sizeof(ret->name))
        name_len = sizeof(ret->name) - 1;
    memcpy(ret->name, name, name_len);
    ret->name[name_len] = '\0';
    return 0;
}

/* Without the ioctl (before 6.11) /proc/self/maps, a seq_file, answers
 * -ENOTTY; -EINVAL is taken the same way, as it always was here. */
bool vma_query_unsupported(int r)
{
    return r == -ENOTTY || r == -EINVAL;
}

/* Before 6.11: the first line of /proc/self/maps (address order) whose
 * VMA ends above addr. */
static int maps_find(uint64_t addr, struct vma_info *ret)
{
    g_autofree char *maps = NULL;

    if (!g_file_get_contents("/proc/self/maps", &maps, NULL, NULL))
        return -EIO;
    for (const char *p = maps; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);

        if (!vma_info_parse_line(p, len, ret))
            return -EBADMSG;
        if (ret->end > addr)
            return 0;
        p = nl ? nl + 1 : p + len;
    }
    return -ENOENT;
}

int vma_info_find(uint64_t addr, struct vma_info *ret)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    int r;

    if (fd < 0)
        return maps_find(addr, ret);
    r = vma_query(fd, addr, PROCMAP_QUERY_COVERING_OR_NEXT_VMA, true, ret);
    close(fd);
    if (vma_query_unsupported(r))
        r = maps_find(addr, ret);
    return r;
}
