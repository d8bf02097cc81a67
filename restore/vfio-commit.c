/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The end of an incoming update: commit requires every preserved VFIO
 * resource to have been reclaimed; rollback suspends again what was
 * remapped, so the previous binary finds the mappings as it left them.
 */
#include <inttypes.h>
#include <linux/vfio.h>
#include <string.h>

#include "vfio-internal.h"

/* Appends to out the clause of commit's message for the preserved
 * mappings nobody remapped; returns how many. Fds (containers, groups,
 * devices, eventfds, RAM) are covered by the registry's claim check;
 * mappings have no fd of their own. */
unsigned vfio_list_unremapped(cprkit_ctx *ctx, GString *out)
{
    GPtrArray *mappings = vfio_of(ctx)->mappings;
    g_autoptr(GString) list = g_string_new(NULL);
    unsigned n = 0;

    for (guint i = 0; i < mappings->len; i++) {
        const struct dma_mapping_rec *m = g_ptr_array_index(mappings, i);

        if (!m->preserved)
            continue;
        g_string_append_printf(list, "%siova 0x%" PRIx64 "+0x%" PRIx64,
                               n ? ", " : "", m->iova, m->size);
        n++;
    }
    if (n)
        g_string_append_printf(out,
                               "%u preserved DMA mapping%s not remapped "
                               "with cprkit_vfio_dma_map(): %s",
                               n, n == 1 ? " was" : "s were", list->str);
    return n;
}

/* Remapped ranges get UNMAP_FLAG_VADDR again, one by one: the ones still
 * suspended must not be touched (type1 refuses to suspend twice). */
int vfio_suspend_for_rollback(cprkit_ctx *ctx)
{
    GPtrArray *mappings = vfio_of(ctx)->mappings;

    for (guint i = 0; i < mappings->len; i++) {
        struct dma_mapping_rec *m = g_ptr_array_index(mappings, i);
        struct vfio_iommu_type1_dma_unmap unmap = {
            .argsz = sizeof(unmap),
            .flags = VFIO_DMA_UNMAP_FLAG_VADDR,
            .iova = m->iova,
            .size = m->size,
        };
        int r;

        if (m->suspended)
            continue;
        r = vfio_ioctl(ctx, m->container_fd, VFIO_IOMMU_UNMAP_DMA, &unmap);
        if (r < 0) {
            vfio_undo_rollback_suspend(ctx);
            return ctx_fail(ctx, r,
                            "rollback: suspending iova 0x%" PRIx64 " again: %s",
                            m->iova, strerror(-r));
        }
        m->suspended = true;
        m->preserved = true; /* owned by the previous binary again */
    }
    return 0;
}

/* The rollback exec failed: this binary keeps going with what it had
 * remapped. */
void vfio_undo_rollback_suspend(cprkit_ctx *ctx)
{
    GPtrArray *mappings = vfio_of(ctx)->mappings;

    for (guint i = 0; i < mappings->len; i++) {
        struct dma_mapping_rec *m = g_ptr_array_index(mappings, i);

        if (m->suspended && m->vaddr && m->preserved)
            dma_remap_preserved(ctx, m, m->vaddr, m->prot);
    }
}
