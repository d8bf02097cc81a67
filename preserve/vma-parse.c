/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A line of /proc/PID/maps: the one parser of that text in cprkit (see
 * vma-info.h). */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>

#include "vma-info.h"

bool vma_info_parse_line(const char *line, size_t len, struct vma_info *ret)
{
    char buf[sizeof(ret->name)];
    unsigned long long start, end, offset, inode;
    unsigned dev_major, dev_minor;
    char perms[5];
    size_t name_len;
    int pos = 0;

    /* Longer lines are read up to here: the fields come first, only the
     * name is cut. */
    if (len >= sizeof(buf))
        len = sizeof(buf) - 1;
    memcpy(buf, line, len);
    buf[len] = '\0';
    /* The kernel prints "%08lx-%08lx %s %08llx %02x:%02x %lu ", then pads
     * and appends the name if there is one. */
    if (sscanf(buf, "%llx-%llx %4s %llx %x:%x %llu %n", &start, &end, perms,
               &offset, &dev_major, &dev_minor, &inode, &pos) != 7 ||
        strlen(perms) != 4)
        return false;
    ret->start = start;
    ret->end = end;
    ret->prot = (perms[0] == 'r' ? PROT_READ : 0) |
                (perms[1] == 'w' ? PROT_WRITE : 0) |
                (perms[2] == 'x' ? PROT_EXEC : 0);
    ret->shared = perms[3] == 's';
    ret->offset = offset;
    ret->dev = makedev(dev_major, dev_minor);
    ret->ino = inode;
    name_len = (size_t)pos <= len ? len - (size_t)pos : 0;
    memcpy(ret->name, buf + pos, name_len);
    ret->name[name_len] = '\0';
    return true;
}
