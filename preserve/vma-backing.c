/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What file and offset back an address range: the DMA map hook records
 * it, the checked remap compares it (vaddr-remap.c). See vma-info.h.
 */
#include <errno.h>
#include <fcntl.h>

#include "macros.h"
#include "vma-info.h"

/* Where VMAs come from: the kernel query, or a parsed table. */
struct vma_source {
    int maps_fd; /* >= 0: use PROCMAP_QUERY */
    const struct vma_table *table;
    bool confirm; /* the table may be stale: confirm */
};

static int source_covering(const struct vma_source *src, uint64_t addr,
                           struct vma_info *ret)
{
    int r;

    /* No name: the kernel would build a path for each range of the
     * remap loop inside the blackout. */
    if (src->maps_fd >= 0)
        return vma_query(src->maps_fd, addr, 0, false, ret);
    r = vma_table_covering(src->table, addr, ret);
    if (r == 0 && src->confirm && !vma_still_there(ret))
        return -EAGAIN; /* stale: the caller reads the table again */
    return r;
}

/* The range must be covered by mappings of one file, contiguous in file
 * offset: the memory the new binary has to map again at the same offsets. */
static int backing_from(const struct vma_source *src, const void *vaddr,
                        uint64_t size, struct vma_backing *ret)
{
    uint64_t start = (uintptr_t)vaddr, end = start + size, covered = start;
    struct vma_backing b = {0};
    bool first = true;

    if (size == 0 || end < start)
        return -EINVAL;
    while (covered < end) {
        struct vma_info v;
        uint64_t off_at;
        int r = source_covering(src, covered, &v);

        if (r == -ENOENT)
            return -EFAULT; /* a hole in the range */
        if (r < 0)
            return r;
        off_at = v.offset + (covered - v.start);
        if (first) {
            b.dev = v.dev;
            b.ino = v.ino;
            b.offset = off_at;
            b.shared = v.shared;
            b.file_backed = v.ino != 0;
            first = false;
        } else if (v.dev != b.dev || v.ino != b.ino ||
                   off_at != b.offset + (covered - start) ||
                   v.shared != b.shared) {
            return -EXDEV;
        }
        covered = v.end;
    }
    *ret = b;
    return 0;
}

int vma_table_lookup(const struct vma_table *t, const void *vaddr,
                     uint64_t size, struct vma_backing *ret)
{
    struct vma_source src = {.maps_fd = -1, .table = t};

    return backing_from(&src, vaddr, size, ret);
}

/* Backing of a range through PROCMAP_QUERY; -ENOTTY or -EINVAL when the
 * kernel does not have it (before 6.11). With thousands of DMA mappings
 * this keeps the remap inside the blackout linear instead of quadratic. */
static int query_backing_fd(int maps_fd, const void *vaddr, uint64_t size,
                            struct vma_backing *ret)
{
    struct vma_source src = {.maps_fd = maps_fd};

    if (maps_fd < 0)
        return -ENOTTY;
    return backing_from(&src, vaddr, size, ret);
}

static int query_backing(const void *vaddr, uint64_t size,
                         struct vma_backing *ret)
{
    _cleanup_close_ int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

    return query_backing_fd(fd, vaddr, size, ret);
}

int vma_backing_of(const void *vaddr, uint64_t size, struct vma_backing *ret)
{
    struct vma_table t = {0};
    int r = query_backing(vaddr, size, ret);

    if (!vma_query_unsupported(r))
        return r;
    r = vma_table_load(&t);
    if (r >= 0)
        r = vma_table_lookup(&t, vaddr, size, ret);
    vma_table_clear(&t);
    return r;
}

/*
 * For the remap loop inside the blackout: the kernel query where there is
 * one; else a table read once and kept in cache (every answer confirmed,
 * the table read again when stale), so remapping thousands of ranges does
 * not parse /proc/self/maps thousands of times.
 */
int vma_backing_cached(struct vma_table *cache, const void *vaddr,
                       uint64_t size, struct vma_backing *ret)
{
    struct vma_source src = {.maps_fd = -1, .table = cache, .confirm = true};
    int r;

    if (!cache->no_query) {
        /* One open for the whole loop, not one per range: the query asks
         * about the address space now, whatever fd it goes through. */
        if (!cache->maps_fd_open) {
            cache->maps_fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
            cache->maps_fd_open = cache->maps_fd >= 0;
        }
        r = query_backing_fd(cache->maps_fd_open ? cache->maps_fd : -1, vaddr,
                             size, ret);
        if (!vma_query_unsupported(r))
            return r;
        cache->no_query = true;
    }
    if (cache->vmas) {
        r = backing_from(&src, vaddr, size, ret);
        if (r != -EAGAIN && r != -EFAULT && r != -EXDEV)
            return r;
        /* Stale, or not covered by what was read: read again. */
        vma_table_clear(cache);
    }
    r = vma_table_load(cache);
    if (r < 0)
        return r;
    src.confirm = false;
    return backing_from(&src, vaddr, size, ret);
}
