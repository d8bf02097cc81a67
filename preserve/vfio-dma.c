/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * DMA mappings: the map/unmap wrappers that record each mapping with what
 * backs its memory, and the vaddr suspend / resume around exec.
 *
 * Suspending (VFIO_DMA_UNMAP_FLAG_VADDR) tells type1 the process's virtual
 * address is about to become invalid; the IOMMU keeps translating the iova
 * to the pinned pages, so device DMA goes on through exec. The new process
 * gives each range its new address with VFIO_DMA_MAP_FLAG_VADDR.
 */
#include <inttypes.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "vfio-internal.h"
#include "vma-info.h"

/* One line of /proc/self/maps. */
struct vma {
    uint64_t start, end;
    uint64_t offset;
    uint64_t dev, ino;
    bool shared;
};

/* /proc/self/maps parsed once, sorted by address (the kernel lists VMAs in
 * address order), so checking thousands of mappings is not quadratic. */
int vma_table_load(struct vma_table *t)
{
    g_autofree char *maps = NULL;
    char *line, *save = NULL;

    t->vmas = g_array_new(false, false, sizeof(struct vma));
    if (!g_file_get_contents("/proc/self/maps", &maps, NULL, NULL))
        return -EIO;
    for (line = strtok_r(maps, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        unsigned long long lo, hi, offset, ino;
        unsigned dev_major, dev_minor;
        char perms[8];
        struct vma v = {0};

        if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &lo, &hi, perms,
                   &offset, &dev_major, &dev_minor, &ino) != 7)
            continue;
        v.start = lo;
        v.end = hi;
        v.offset = offset;
        v.dev = makedev(dev_major, dev_minor);
        v.ino = ino;
        v.shared = perms[3] == 's';
        g_array_append_val(t->vmas, v);
    }
    return 0;
}

void vma_table_clear(struct vma_table *t)
{
    g_clear_pointer(&t->vmas, g_array_unref);
}

/* The VMA of the table that covers addr, or -ENOENT. */
static int table_covering(const struct vma_table *t, uint64_t addr,
                          struct vma *ret)
{
    guint lo = 0, hi = t->vmas->len;

    /* First VMA whose end is above addr. */
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;

        if (g_array_index(t->vmas, struct vma, mid).end <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == t->vmas->len || g_array_index(t->vmas, struct vma, lo).start > addr)
        return -ENOENT;
    *ret = g_array_index(t->vmas, struct vma, lo);
    return 0;
}

/* PROCMAP_QUERY (Linux >= 6.11, declared in vma-info.h): the VMA covering
 * an address, straight from the kernel, without reading all of
 * /proc/self/maps. With thousands of DMA mappings this keeps the remap
 * inside the blackout linear instead of quadratic. */
static int query_covering(int maps_fd, uint64_t addr, struct vma *ret)
{
    struct procmap_query_v1 q = {.size = sizeof(q), .query_addr = addr};

    if (ioctl(maps_fd, PROCMAP_QUERY_IOCTL, &q) < 0)
        return -errno;
    ret->start = q.vma_start;
    ret->end = q.vma_end;
    ret->offset = q.vma_offset;
    ret->dev = makedev(q.dev_major, q.dev_minor);
    ret->ino = q.inode;
    ret->shared = q.vma_flags & PROCMAP_QUERY_VMA_SHARED;
    return 0;
}

/* Where VMAs come from: the kernel query, or a parsed table. */
struct vma_source {
    int maps_fd;                 /* >= 0: use PROCMAP_QUERY */
    const struct vma_table *table;
    bool confirm;                /* the table may be stale: confirm */
};

/* A table entry read earlier still describes the process if a VMA with
 * exactly these bounds maps the same file now: its map_files entry exists
 * only then (one lookup in the kernel, no parsing). A remap of the same
 * file at the same bounds with another offset since the table was read is
 * the one change this cannot see. */
static bool vma_still_there(const struct vma *v)
{
    char path[80];
    struct stat st;

    if (!v->ino)
        return false;
    snprintf(path, sizeof(path), "/proc/self/map_files/%" PRIx64 "-%" PRIx64,
             v->start, v->end);
    return stat(path, &st) == 0 && st.st_dev == v->dev && st.st_ino == v->ino;
}

static int source_covering(const struct vma_source *src, uint64_t addr,
                           struct vma *ret)
{
    int r;

    if (src->maps_fd >= 0)
        return query_covering(src->maps_fd, addr, ret);
    r = table_covering(src->table, addr, ret);
    if (r == 0 && src->confirm && !vma_still_there(ret))
        return -EAGAIN; /* stale: the caller reads the table again */
    return r;
}

/*
 * What backs [vaddr, vaddr + size): the range must be covered by mappings
 * of one file, contiguous in file offset — the memory the new binary has
 * to map again at the same offsets. Returns 0, -EFAULT if part of the range
 * is not mapped, -EXDEV if it spans different files or offsets.
 */
static int backing_from(const struct vma_source *src, const void *vaddr,
                        uint64_t size, struct vma_backing *ret)
{
    uint64_t start = (uintptr_t)vaddr, end = start + size, covered = start;
    struct vma_backing b = {0};
    bool first = true;

    if (size == 0 || end < start)
        return -EINVAL;
    while (covered < end) {
        struct vma v = {0};
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
 * kernel does not have it (before 6.11). */
static int query_backing(const void *vaddr, uint64_t size,
                         struct vma_backing *ret)
{
    _cleanup_close_ int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    struct vma_source src = {.maps_fd = fd};

    if (fd < 0)
        return -ENOTTY;
    return backing_from(&src, vaddr, size, ret);
}

static bool query_unsupported(int r)
{
    return r == -ENOTTY || r == -EINVAL;
}

int vma_backing_of(const void *vaddr, uint64_t size, struct vma_backing *ret)
{
    struct vma_table t = {0};
    int r = query_backing(vaddr, size, ret);

    if (!query_unsupported(r))
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
        r = query_backing(vaddr, size, ret);
        if (!query_unsupported(r))
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

static struct dma_mapping_rec *mapping_find(cprkit_ctx *ctx, int container_fd,
                                            uint64_t iova, uint64_t size)
{
    GPtrArray *mappings = vfio_of(ctx)->mappings;

    for (guint i = 0; i < mappings->len; i++) {
        struct dma_mapping_rec *m = g_ptr_array_index(mappings, i);

        if (m->container_fd == container_fd && m->iova == iova &&
            m->size == size)
            return m;
    }
    return NULL;
}

static int dma_map_ioctl(cprkit_ctx *ctx, int container_fd, uint32_t flags,
                         uint64_t iova, uint64_t size, void *vaddr)
{
    struct vfio_iommu_type1_dma_map map = {
        .argsz = sizeof(map),
        .flags = flags,
        .vaddr = (uintptr_t)vaddr,
        .iova = iova,
        .size = size,
    };

    return vfio_ioctl(ctx, container_fd, VFIO_IOMMU_MAP_DMA, &map);
}

static int dma_unmap_ioctl(cprkit_ctx *ctx, int container_fd, uint32_t flags,
                           uint64_t iova, uint64_t size, uint64_t *ret_size)
{
    struct vfio_iommu_type1_dma_unmap unmap = {
        .argsz = sizeof(unmap),
        .flags = flags,
        .iova = iova,
        .size = size,
    };
    int r = vfio_ioctl(ctx, container_fd, VFIO_IOMMU_UNMAP_DMA, &unmap);

    if (r >= 0 && ret_size)
        *ret_size = unmap.size;
    return r;
}

CPRKIT_EXPORT int cprkit_vfio_dma_map(cprkit_ctx *ctx, int container_fd,
                                      uint64_t iova, uint64_t size, void *vaddr,
                                      uint32_t prot)
{
    struct vfio_container_rec *c;
    struct dma_mapping_rec *m;
    struct vma_backing backing;
    int r;

    r = vfio_container_get(ctx, container_fd, &c);
    if (r < 0)
        return r;
    if (prot & ~(uint32_t)(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE))
        return ctx_fail(ctx, -EINVAL,
                        "prot 0x%x: only VFIO_DMA_MAP_FLAG_READ and _WRITE",
                        prot);
    m = mapping_find(ctx, container_fd, iova, size);
    if (m && m->preserved)
        return dma_remap_preserved(ctx, m, vaddr, prot);
    if (m)
        return ctx_fail(ctx, -EEXIST,
                        "iova 0x%" PRIx64 "+0x%" PRIx64 " is already mapped",
                        iova, size);
    if (ctx->incoming)
        return ctx_fail(ctx, -EBUSY,
                        "iova 0x%" PRIx64 "+0x%" PRIx64
                        " was not preserved; new DMA mappings must wait for "
                        "cprkit_commit()",
                        iova, size);

    r = vma_backing_of(vaddr, size, &backing);
    if (r < 0)
        return ctx_fail(ctx, r == -EXDEV ? -EINVAL : -EFAULT,
                        "iova 0x%" PRIx64 ": [%p, +0x%" PRIx64 ") is %s", iova,
                        vaddr, size,
                        r == -EXDEV ? "not one contiguous mapping of one file"
                                    : "not mapped memory");
    r = dma_map_ioctl(ctx, container_fd, prot, iova, size, vaddr);
    if (r < 0)
        return ctx_fail(ctx, r, "VFIO_IOMMU_MAP_DMA iova 0x%" PRIx64
                                " size 0x%" PRIx64 ": %s",
                        iova, size, strerror(-r));
    m = g_new0(struct dma_mapping_rec, 1);
    m->container_fd = container_fd;
    m->iova = iova;
    m->size = size;
    m->prot = prot;
    m->vaddr = vaddr;
    m->backing_dev = backing.dev;
    m->backing_ino = backing.ino;
    m->backing_offset = backing.offset;
    m->backing_shared = backing.shared && backing.file_backed;
    g_ptr_array_add(vfio_of(ctx)->mappings, m);
    return 0;
}

CPRKIT_EXPORT int cprkit_vfio_dma_unmap(cprkit_ctx *ctx, int container_fd,
                                        uint64_t iova, uint64_t size)
{
    struct dma_mapping_rec *m = mapping_find(ctx, container_fd, iova, size);
    int r;

    if (!m)
        return ctx_fail(ctx, -ENOENT,
                        "no mapping at iova 0x%" PRIx64 " size 0x%" PRIx64,
                        iova, size);
    if (m->preserved)
        return ctx_fail(ctx, -EBUSY,
                        "iova 0x%" PRIx64 " is preserved and not remapped yet",
                        iova);
    r = dma_unmap_ioctl(ctx, container_fd, 0, iova, size, NULL);
    if (r < 0)
        return ctx_fail(ctx, r, "VFIO_IOMMU_UNMAP_DMA iova 0x%" PRIx64 ": %s",
                        iova, strerror(-r));
    g_ptr_array_remove(vfio_of(ctx)->mappings, m);
    return 0;
}

uint64_t vfio_mapped_bytes(cprkit_ctx *ctx)
{
    GPtrArray *mappings = vfio_of(ctx)->mappings;
    uint64_t total = 0;

    for (guint i = 0; i < mappings->len; i++)
        total +=
            ((struct dma_mapping_rec *)g_ptr_array_index(mappings, i))->size;
    return total;
}

/* Makes every suspended mapping valid again at its old address: the exec
 * failed and this process goes on serving. Best effort over all mappings;
 * returns the first error. */
int vfio_resume_vaddrs(cprkit_ctx *ctx)
{
    GPtrArray *mappings = vfio_of(ctx)->mappings;
    int first_error = 0;

    for (guint i = 0; i < mappings->len; i++) {
        struct dma_mapping_rec *m = g_ptr_array_index(mappings, i);
        int r;

        if (!m->suspended)
            continue;
        r = dma_map_ioctl(ctx, m->container_fd, VFIO_DMA_MAP_FLAG_VADDR,
                          m->iova, m->size, m->vaddr);
        if (r < 0 && !first_error)
            first_error = ctx_fail(ctx, r,
                                   "cannot make iova 0x%" PRIx64
                                   " valid again: %s",
                                   m->iova, strerror(-r));
        if (r >= 0)
            m->suspended = false;
    }
    return first_error;
}

static int suspend_container(cprkit_ctx *ctx, struct vfio_container_rec *c)
{
    GPtrArray *mappings = vfio_of(ctx)->mappings;
    uint64_t expected = 0, suspended = 0;
    unsigned n = 0;
    int r;

    for (guint i = 0; i < mappings->len; i++) {
        struct dma_mapping_rec *m = g_ptr_array_index(mappings, i);

        if (m->container_fd == c->fd) {
            expected += m->size;
            n++;
        }
    }
    if (n == 0)
        return 0;

    if (c->has_unmap_all) {
        /* One ioctl for the whole container: the blackout does not grow
         * with the number of mappings. */
        r = dma_unmap_ioctl(ctx, c->fd,
                            VFIO_DMA_UNMAP_FLAG_VADDR | VFIO_DMA_UNMAP_FLAG_ALL,
                            0, 0, &suspended);
        if (r < 0)
            return ctx_fail(ctx, r,
                            "suspending the DMA vaddrs of container %d "
                            "(UNMAP_DMA VADDR|ALL): %s",
                            c->id, strerror(-r));
        for (guint i = 0; i < mappings->len; i++) {
            struct dma_mapping_rec *m = g_ptr_array_index(mappings, i);

            if (m->container_fd == c->fd)
                m->suspended = true;
        }
        if (suspended != expected)
            ctx_log(ctx, LOG_WARNING,
                    "container %d: suspended %" PRIu64 " bytes, cprkit "
                    "recorded %" PRIu64 ": mappings made without "
                    "cprkit_vfio_dma_map() cannot be remapped by the new "
                    "binary",
                    c->id, suspended, expected);
        return 0;
    }
    for (guint i = 0; i < mappings->len; i++) {
        struct dma_mapping_rec *m = g_ptr_array_index(mappings, i);

        if (m->container_fd != c->fd)
            continue;
        r = dma_unmap_ioctl(ctx, c->fd, VFIO_DMA_UNMAP_FLAG_VADDR, m->iova,
                            m->size, NULL);
        if (r < 0)
            return ctx_fail(ctx, r,
                            "suspending the DMA vaddr of iova 0x%" PRIx64
                            ": %s",
                            m->iova, strerror(-r));
        m->suspended = true;
    }
    return 0;
}

/* Suspends every recorded mapping; on failure puts back what it did, so
 * the caller sees all-or-nothing. */
int vfio_suspend_vaddrs(cprkit_ctx *ctx)
{
    GPtrArray *containers = vfio_of(ctx)->containers;

    for (guint i = 0; i < containers->len; i++) {
        int r = suspend_container(ctx, g_ptr_array_index(containers, i));

        if (r < 0) {
            g_autofree char *why = g_strdup(cprkit_last_error(ctx));

            vfio_resume_vaddrs(ctx);
            return ctx_fail(ctx, r, "%s", why);
        }
    }
    return 0;
}
