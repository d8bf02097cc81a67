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

#include "vfio-internal.h"

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

/* Memory the new binary cannot map again is known to block every update
 * from the moment it is mapped for DMA: registered then (so `cpr-exec
 * status` shows it), removed with the mapping. The update-time check
 * (blockers.c) still looks at every mapping as it is then. */
static char *private_memory_blocker(const struct dma_mapping_rec *m)
{
    return g_strdup_printf("DMA mapping iova 0x%" PRIx64 " size 0x%" PRIx64
                           " is anonymous or private memory, which the new "
                           "binary cannot map again; allocate it with "
                           "cprkit_ram_open() or map a memfd MAP_SHARED",
                           m->iova, m->size);
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
    ctx_state_changed(ctx);
    if (!m->backing_shared) {
        g_autofree char *why = private_memory_blocker(m);

        (void)ctx_add_blocker(ctx, vfio_participant.name, why);
    }
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
    if (!m->backing_shared) {
        g_autofree char *why = private_memory_blocker(m);

        (void)ctx_remove_blocker(ctx, vfio_participant.name, why);
    }
    g_ptr_array_remove(vfio_of(ctx)->mappings, m);
    ctx_state_changed(ctx);
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
