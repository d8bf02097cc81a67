/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Giving a preserved DMA mapping its new virtual address. The kernel takes
 * any vaddr for VFIO_DMA_MAP_FLAG_VADDR and does not check that it is the
 * same memory the IOMMU points at; if it were not, the device would DMA
 * into pages the application no longer sees. So cprkit checks first that
 * the new vaddr maps the same file at the same offset.
 */
#include <inttypes.h>
#include <linux/vfio.h>
#include <string.h>

#include "vfio-internal.h"

int dma_remap_preserved(cprkit_ctx *ctx, struct dma_mapping_rec *m,
                        void *vaddr, uint32_t prot)
{
    struct vfio_iommu_type1_dma_map map = {
        .argsz = sizeof(map),
        .flags = VFIO_DMA_MAP_FLAG_VADDR, /* prot stays what it was */
        .vaddr = (uintptr_t)vaddr,
        .iova = m->iova,
        .size = m->size,
    };
    struct vfio_state *v = vfio_of(ctx);
    struct vma_backing now;
    int r;

    if (prot != m->prot)
        return ctx_fail(ctx, -EINVAL,
                        "iova 0x%" PRIx64 " was mapped with prot 0x%x, not 0x%x",
                        m->iova, m->prot, prot);
    if (!v->vma_cache)
        v->vma_cache = g_new0(struct vma_table, 1);
    r = vma_backing_cached(v->vma_cache, vaddr, m->size, &now);
    if (r < 0)
        return ctx_fail(ctx, -EXDEV,
                        "iova 0x%" PRIx64 ": new address %p is not one mapping "
                        "of the preserved memory",
                        m->iova, vaddr);
    if (!now.shared || now.dev != m->backing_dev || now.ino != m->backing_ino)
        return ctx_fail(ctx, -EXDEV,
                        "iova 0x%" PRIx64 ": new address %p maps other memory "
                        "than the preserved mapping (dev %" PRIu64 " ino %" PRIu64
                        "%s, expected dev %" PRIu64 " ino %" PRIu64 " shared)",
                        m->iova, vaddr, now.dev, now.ino,
                        now.shared ? "" : " private", m->backing_dev,
                        m->backing_ino);
    if (now.offset != m->backing_offset)
        return ctx_fail(ctx, -EXDEV,
                        "iova 0x%" PRIx64 ": new address %p maps offset 0x%" PRIx64
                        " of the preserved memory, the mapping is at 0x%" PRIx64,
                        m->iova, vaddr, now.offset, m->backing_offset);
    r = vfio_ioctl(ctx, m->container_fd, VFIO_IOMMU_MAP_DMA, &map);
    if (r < 0)
        return ctx_fail(ctx, r, "VFIO_DMA_MAP_FLAG_VADDR iova 0x%" PRIx64 ": %s",
                        m->iova, strerror(-r));
    m->vaddr = vaddr;
    m->suspended = false;
    m->preserved = false;
    return 0;
}

/* The incoming phase is over (commit, or the context goes away): the
 * address space is the application's again, drop what was read of it. */
void vma_cache_drop(cprkit_ctx *ctx)
{
    struct vfio_state *v = vfio_of(ctx);

    if (!v->vma_cache)
        return;
    vma_table_clear(v->vma_cache);
    g_free(v->vma_cache);
    v->vma_cache = NULL;
}
