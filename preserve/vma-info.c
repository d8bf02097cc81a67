/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What maps an address, with protection and name: see vma-info.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <glib.h>

#include "vma-info.h"

bool vma_info_parse_line(const char *line, size_t len, struct vma_info *ret)
{
    char buf[512];
    unsigned long long start, end, off, inode;
    char perms[5], dev[32];
    size_t name_len;
    int pos = 0;

    /* Longer lines are read up to here: only their name is cut. */
    if (len >= sizeof(buf))
        len = sizeof(buf) - 1;
    memcpy(buf, line, len);
    buf[len] = '\0';
    if (sscanf(buf, "%llx-%llx %4s %llx %31s %llu %n", &start, &end, perms,
               &off, dev, &inode, &pos) < 6)
        return false;
    ret->start = start;
    ret->end = end;
    ret->prot = (perms[0] == 'r' ? PROT_READ : 0) |
                (perms[1] == 'w' ? PROT_WRITE : 0) |
                (perms[2] == 'x' ? PROT_EXEC : 0);
    ret->shared = perms[3] == 's';
    ret->ino = inode;
    name_len = (size_t)pos <= len ? len - (size_t)pos : 0;
    memcpy(ret->name, buf + pos, name_len);
    ret->name[name_len] = '\0';
    return true;
}

static int query_find(int maps_fd, uint64_t addr, struct vma_info *ret)
{
    char name[4096];
    struct procmap_query_v1 q = {
        .size = sizeof(q),
        .query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA,
        .query_addr = addr,
        .vma_name_addr = (uintptr_t)name,
        .vma_name_size = sizeof(name),
    };
    size_t name_len;

    if (ioctl(maps_fd, PROCMAP_QUERY_IOCTL, &q) < 0)
        return -errno;
    ret->start = q.vma_start;
    ret->end = q.vma_end;
    ret->prot = (q.vma_flags & PROCMAP_QUERY_VMA_READABLE ? PROT_READ : 0) |
                (q.vma_flags & PROCMAP_QUERY_VMA_WRITABLE ? PROT_WRITE : 0) |
                (q.vma_flags & PROCMAP_QUERY_VMA_EXECUTABLE ? PROT_EXEC : 0);
    ret->shared = q.vma_flags & PROCMAP_QUERY_VMA_SHARED;
    ret->ino = q.inode;
    /* The size returned counts the NUL; 0 means no name. Long paths are
     * cut, as in vma_info_parse_line. */
    name_len = q.vma_name_size ? strnlen(name, sizeof(name)) : 0;
    if (name_len >= sizeof(ret->name))
        name_len = sizeof(ret->name) - 1;
    memcpy(ret->name, name, name_len);
    ret->name[name_len] = '\0';
    return 0;
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
    r = query_find(fd, addr, ret);
    close(fd);
    /* A kernel without PROCMAP_QUERY (before 6.11). */
    if (r == -ENOTTY || r == -EINVAL)
        r = maps_find(addr, ret);
    return r;
}
