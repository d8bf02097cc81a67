/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VFIO records into the State message. Records refer to fds by number;
 * the blob refers to them by (name, id), resolved through the registry. */
#include <inttypes.h>
#include <linux/vfio.h>

#include "vfio-internal.h"

static const Cprkit__IrqKind irq_kinds[] = {
    [VFIO_PCI_INTX_IRQ_INDEX] = CPRKIT__IRQ_KIND__IRQ_KIND_INTX,
    [VFIO_PCI_MSI_IRQ_INDEX] = CPRKIT__IRQ_KIND__IRQ_KIND_MSI,
    [VFIO_PCI_MSIX_IRQ_INDEX] = CPRKIT__IRQ_KIND__IRQ_KIND_MSIX,
    [VFIO_PCI_ERR_IRQ_INDEX] = CPRKIT__IRQ_KIND__IRQ_KIND_ERR,
    [VFIO_PCI_REQ_IRQ_INDEX] = CPRKIT__IRQ_KIND__IRQ_KIND_REQ,
};

/* Vectors without an eventfd (MSI/MSI-X enabled with gaps) are not
 * listed: count says how many the kernel enabled, vectors which of them
 * have a trigger. An index without gaps is written as before 0.5. */
static int build_irq(cprkit_ctx *ctx, Cprkit__State *state,
                     const struct irq_index_rec *irq, Cprkit__IrqIndex *m)
{
    unsigned used = 0, i = 0;
    int r;

    cprkit__irq_index__init(m);
    r = state_fd_ref(ctx, state, irq->device_fd, "IRQ device", &m->device);
    if (r < 0)
        return r;
    m->has_kind = m->has_count = m->has_masked = true;
    m->kind = irq_kinds[irq->index];
    m->count = irq->count;
    m->masked = irq->app_masked;
    for (unsigned v = 0; v < irq->count; v++)
        used += irq->eventfds[v] >= 0;
    m->n_vectors = used;
    m->vectors = (Cprkit__IrqVector **)state_message_array(
        state, used, sizeof(Cprkit__IrqVector));
    for (unsigned v = 0; v < irq->count; v++) {
        Cprkit__IrqVector *vec;

        if (irq->eventfds[v] < 0)
            continue;
        vec = m->vectors[i++];
        cprkit__irq_vector__init(vec);
        vec->has_vector = true;
        vec->vector = v;
        r = state_fd_ref(ctx, state, irq->eventfds[v], "IRQ eventfd",
                         &vec->trigger);
        if (r < 0)
            return r;
    }
    if (irq->unmask_fd >= 0)
        return state_fd_ref(ctx, state, irq->unmask_fd, "INTx unmask eventfd",
                            &m->intx_unmask);
    return 0;
}

static int build_mapping(cprkit_ctx *ctx, Cprkit__State *state,
                         const struct dma_mapping_rec *dm,
                         Cprkit__DmaMapping *m)
{
    const struct fd_entry *backing =
        fdreg_lookup_backing(ctx, dm->backing_dev, dm->backing_ino);
    int r;

    cprkit__dma_mapping__init(m);
    r = state_fd_ref(ctx, state, dm->container_fd, "DMA container",
                     &m->container);
    if (r < 0)
        return r;
    if (!backing)
        return ctx_fail(ctx, -EOPNOTSUPP,
                        "DMA mapping iova 0x%" PRIx64 " is not backed by a "
                        "preserved fd",
                        dm->iova);
    r = state_fd_ref(ctx, state, backing->fd, "DMA backing", &m->backing);
    if (r < 0)
        return r;
    m->has_iova = m->has_size = m->has_prot = m->has_backing_offset =
        m->has_vaddr_suspended = true;
    m->iova = dm->iova;
    m->size = dm->size;
    m->prot = dm->prot;
    m->backing_offset = dm->backing_offset;
    m->vaddr_suspended = dm->suspended;
    return 0;
}

int vfio_state_build(cprkit_ctx *ctx, Cprkit__State *state)
{
    struct vfio_state *v = vfio_of(ctx);
    int r;

    state->n_vfio_containers = v->containers->len;
    state->vfio_containers = (Cprkit__VfioContainer **)state_message_array(
        state, v->containers->len, sizeof(Cprkit__VfioContainer));
    for (guint i = 0; i < v->containers->len; i++) {
        const struct vfio_container_rec *c =
            g_ptr_array_index(v->containers, i);
        Cprkit__VfioContainer *m = state->vfio_containers[i];

        cprkit__vfio_container__init(m);
        r = state_fd_ref(ctx, state, c->fd, "VFIO container", &m->fd);
        if (r < 0)
            return r;
        m->has_iommu_type = true;
        m->iommu_type = c->iommu_type;
    }

    state->n_vfio_groups = v->groups->len;
    state->vfio_groups = (Cprkit__VfioGroup **)state_message_array(
        state, v->groups->len, sizeof(Cprkit__VfioGroup));
    for (guint i = 0; i < v->groups->len; i++) {
        const struct vfio_group_rec *g = g_ptr_array_index(v->groups, i);
        Cprkit__VfioGroup *m = state->vfio_groups[i];

        cprkit__vfio_group__init(m);
        r = state_fd_ref(ctx, state, g->fd, "VFIO group", &m->fd);
        if (r < 0)
            return r;
        r = state_fd_ref(ctx, state, g->container_fd, "VFIO container",
                         &m->container);
        if (r < 0)
            return r;
        m->has_group_number = true;
        m->group_number = g->number;
    }

    state->n_vfio_devices = v->devices->len;
    state->vfio_devices = (Cprkit__VfioDevice **)state_message_array(
        state, v->devices->len, sizeof(Cprkit__VfioDevice));
    for (guint i = 0; i < v->devices->len; i++) {
        const struct vfio_device_rec *d = g_ptr_array_index(v->devices, i);
        Cprkit__VfioDevice *m = state->vfio_devices[i];
        int bm;

        cprkit__vfio_device__init(m);
        r = state_fd_ref(ctx, state, d->fd, "VFIO device", &m->fd);
        if (r < 0)
            return r;
        m->bdf = d->bdf;
        /* A cdev has no group; type1 devices are written as they always
         * were (no cdev field), so their blobs stay byte for byte. */
        if (d->cdev) {
            m->has_cdev = true;
            m->cdev = true;
        } else {
            m->has_group_number = true;
            m->group_number = d->group_number;
        }
        /* Read now (the blob is written after the suspend: nothing of the
         * application runs any more); unreadable: what was loaded. */
        bm = vfio_device_bus_master(ctx, d->fd);
        if (bm < 0)
            bm = d->bus_master;
        if (bm >= 0) {
            m->has_bus_master = true;
            m->bus_master = bm > 0;
        }
    }

    state->n_dma_mappings = v->mappings->len;
    state->dma_mappings = (Cprkit__DmaMapping **)state_message_array(
        state, v->mappings->len, sizeof(Cprkit__DmaMapping));
    for (guint i = 0; i < v->mappings->len; i++) {
        r = build_mapping(ctx, state, g_ptr_array_index(v->mappings, i),
                          state->dma_mappings[i]);
        if (r < 0)
            return r;
    }

    state->n_irqs = v->irqs->len;
    state->irqs = (Cprkit__IrqIndex **)state_message_array(
        state, v->irqs->len, sizeof(Cprkit__IrqIndex));
    for (guint i = 0; i < v->irqs->len; i++) {
        r = build_irq(ctx, state, g_ptr_array_index(v->irqs, i),
                      state->irqs[i]);
        if (r < 0)
            return r;
    }

    state->n_ram_blocks = v->ram_blocks->len;
    state->ram_blocks = (Cprkit__RamBlock **)state_message_array(
        state, v->ram_blocks->len, sizeof(Cprkit__RamBlock));
    for (guint i = 0; i < v->ram_blocks->len; i++) {
        const struct ram_block_rec *ram = g_ptr_array_index(v->ram_blocks, i);
        Cprkit__RamBlock *m = state->ram_blocks[i];

        cprkit__ram_block__init(m);
        m->name = ram->name;
        r = state_fd_ref(ctx, state, ram->fd, "RAM block", &m->fd);
        if (r < 0)
            return r;
        m->has_size = true;
        m->size = ram->size;
    }
    return 0;
}
