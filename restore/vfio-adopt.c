/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Taking over the DMA mappings of a process that died (docs/keeper.md).
 *
 * The keeper kept the container fd, so type1 kept every mapping, its pins
 * and its IOMMU entries: the device DMAs on. But each mapping's vaddr is
 * in whatever state the dead process left it: valid (it died serving, or
 * it was the new binary of an update and had remapped it already) or
 * suspended (it died inside an update's blackout). Neither the state we
 * loaded nor the kernel says which, so each range is suspended on its
 * own: the kernel refuses (-EINVAL) to suspend a range that already is,
 * and that is the answer we need. After this every mapping is as an
 * incoming update expects it; the application remaps them with
 * cprkit_vfio_dma_map() and the kernel moves the pinned-page accounting
 * to this process (vfio_change_dma_owner, docs/kernel-facts.md).
 */
#include <inttypes.h>
#include <linux/vfio.h>
#include <string.h>

#include "vfio-internal.h"

int vfio_adopt(cprkit_ctx *ctx)
{
    GPtrArray *mappings = vfio_of(ctx)->mappings;
    unsigned was_valid = 0;

    for (guint i = 0; i < mappings->len; i++) {
        struct dma_mapping_rec *m = g_ptr_array_index(mappings, i);
        struct vfio_iommu_type1_dma_unmap unmap = {
            .argsz = sizeof(unmap),
            .flags = VFIO_DMA_UNMAP_FLAG_VADDR,
            .iova = m->iova,
            .size = m->size,
        };
        int r = vfio_ioctl(ctx, m->container_fd, VFIO_IOMMU_UNMAP_DMA, &unmap);

        if (r == -EINVAL) {
            /* Already suspended. */
            ctx_clear_error(ctx);
        } else if (r < 0) {
            return ctx_fail(ctx, r,
                            "taking over DMA mapping iova 0x%" PRIx64
                            " size 0x%" PRIx64 " of the previous process: "
                            "UNMAP_DMA VADDR: %s",
                            m->iova, m->size, strerror(-r));
        } else if (unmap.size != m->size) {
            /* Nothing at that iova: the mapping is gone from the kernel
             * (or is another one); remapping it would fail anyway. */
            return ctx_fail(ctx, -ESTALE,
                            "DMA mapping iova 0x%" PRIx64 " size 0x%" PRIx64
                            " of the previous process is not in the "
                            "container (%" PRIu64 " bytes suspended)",
                            m->iova, m->size, (uint64_t)unmap.size);
        } else {
            was_valid++;
        }
        m->suspended = true;
    }
    if (mappings->len)
        ctx_log(ctx, LOG_INFO,
                "took over %u DMA mapping%s of the previous process (%u "
                "still had its addresses)",
                mappings->len, mappings->len == 1 ? "" : "s", was_valid);
    return 0;
}
