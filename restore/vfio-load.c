/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VFIO records from the blob. Every record comes back marked "preserved":
 * the application's find-or-create hooks reclaim them one by one, and
 * commit checks that none was left behind. References are checked here so
 * a blob that names an fd it does not carry is refused as a whole.
 */
#include <inttypes.h>
#include <linux/vfio.h>

#include "vfio-internal.h"

static int load_irq(cprkit_ctx *ctx, const Cprkit__IrqIndex *m)
{
    g_autofree struct irq_index_rec *irq = g_new0(struct irq_index_rec, 1);
    g_autofree int *eventfds = NULL;
    int r;

    r = state_fd_resolve(ctx, m->device, CPRKIT_FD_VFIO_DEVICE, "IRQ",
                         &irq->device_fd);
    if (r < 0)
        return r;
    switch (m->kind) {
    case CPRKIT__IRQ_KIND__IRQ_KIND_INTX:
        irq->index = VFIO_PCI_INTX_IRQ_INDEX;
        break;
    case CPRKIT__IRQ_KIND__IRQ_KIND_MSI:
        irq->index = VFIO_PCI_MSI_IRQ_INDEX;
        break;
    case CPRKIT__IRQ_KIND__IRQ_KIND_MSIX:
        irq->index = VFIO_PCI_MSIX_IRQ_INDEX;
        break;
    case CPRKIT__IRQ_KIND__IRQ_KIND_ERR:
        irq->index = VFIO_PCI_ERR_IRQ_INDEX;
        break;
    case CPRKIT__IRQ_KIND__IRQ_KIND_REQ:
        irq->index = VFIO_PCI_REQ_IRQ_INDEX;
        break;
    default:
        return ctx_fail(ctx, -EBADMSG, "IRQ record of unknown kind %d",
                        m->kind);
    }
    /* Since 0.5 MSI and MSI-X may list fewer vectors than count (vectors
     * enabled without an eventfd); the others have exactly one. */
    if (m->count == 0 || m->count > 2048 || m->n_vectors > m->count ||
        (irq->index != VFIO_PCI_MSI_IRQ_INDEX &&
         irq->index != VFIO_PCI_MSIX_IRQ_INDEX &&
         (m->count != 1 || m->n_vectors != 1)))
        return ctx_fail(ctx, -EBADMSG,
                        "IRQ record with %u vectors for a count of %u",
                        (unsigned)m->n_vectors, m->count);
    irq->count = m->count;
    eventfds = g_new(int, m->count);
    for (unsigned v = 0; v < m->count; v++)
        eventfds[v] = -1;
    for (size_t i = 0; i < m->n_vectors; i++) {
        const Cprkit__IrqVector *vec = m->vectors[i];

        if (!vec->has_vector || vec->vector >= m->count ||
            (i > 0 && vec->vector <= m->vectors[i - 1]->vector))
            return ctx_fail(ctx, -EBADMSG,
                            "IRQ vectors out of order or past the count");
        r = state_fd_resolve(ctx, vec->trigger, CPRKIT_FD_EVENTFD, "IRQ vector",
                             &eventfds[vec->vector]);
        if (r < 0)
            return r;
    }
    irq->unmask_fd = -1;
    if (m->intx_unmask) {
        r = state_fd_resolve(ctx, m->intx_unmask, CPRKIT_FD_EVENTFD,
                             "INTx unmask", &irq->unmask_fd);
        if (r < 0)
            return r;
    }
    /* Before 0.5 always false; since, the application's ACTION_MASK. */
    irq->app_masked = irq->index == VFIO_PCI_INTX_IRQ_INDEX && m->masked;
    irq->eventfds = TAKE_PTR(eventfds);
    irq->preserved = true;
    g_ptr_array_add(vfio_of(ctx)->irqs, TAKE_PTR(irq));
    return 0;
}

static int load_mapping(cprkit_ctx *ctx, const Cprkit__DmaMapping *m)
{
    g_autofree struct dma_mapping_rec *dm = g_new0(struct dma_mapping_rec, 1);
    const struct fd_entry *backing;
    int backing_fd, r;

    r = state_fd_resolve(ctx, m->container, CPRKIT_FD_VFIO_CONTAINER,
                         "DMA mapping", &dm->container_fd);
    if (r < 0)
        return r;
    r = state_fd_resolve(ctx, m->backing, CPRKIT_FD_ANY, "DMA backing",
                         &backing_fd);
    if (r < 0)
        return r;
    uint64_t last;

    if (!m->has_iova || !m->size)
        return ctx_fail(ctx, -EBADMSG, "DMA mapping without iova or size");
    if (__builtin_add_overflow(m->iova, m->size - 1, &last))
        return ctx_fail(ctx, -EBADMSG,
                        "DMA mapping iova 0x%" PRIx64 " size 0x%" PRIx64
                        " runs past the end of the address space",
                        m->iova, m->size);
    /* The blob is written after the suspend; a mapping that was not
     * suspended cannot be remapped with MAP_FLAG_VADDR. The keeper's
     * state of a committed program has them valid: a restarted process
     * suspends them first (vfio-adopt.c). */
    if (!m->vaddr_suspended && !ctx->restarted)
        return ctx_fail(ctx, -EBADMSG,
                        "DMA mapping iova 0x%" PRIx64 " was not suspended "
                        "before exec",
                        m->iova);
    backing = fdreg_lookup(ctx, m->backing->name, m->backing->id);
    dm->iova = m->iova;
    dm->size = m->size;
    dm->prot = m->prot;
    dm->backing_dev = backing->identity.dev;
    dm->backing_ino = backing->identity.ino;
    dm->backing_offset = m->backing_offset;
    dm->backing_shared = true;
    dm->suspended = true;
    dm->preserved = true;
    g_ptr_array_add(vfio_of(ctx)->mappings, TAKE_PTR(dm));
    return 0;
}

int vfio_state_load(cprkit_ctx *ctx, const Cprkit__State *state)
{
    struct vfio_state *v = vfio_of(ctx);
    int r;

    for (size_t i = 0; i < state->n_vfio_containers; i++) {
        const Cprkit__VfioContainer *m = state->vfio_containers[i];
        g_autofree struct vfio_container_rec *c =
            g_new0(struct vfio_container_rec, 1);

        r = state_fd_resolve(ctx, m->fd, CPRKIT_FD_VFIO_CONTAINER, "container",
                             &c->fd);
        if (r < 0)
            return r;
        c->id = m->fd->id;
        c->iommu_type = m->iommu_type;
        c->preserved = true;
        g_ptr_array_add(v->containers, TAKE_PTR(c));
    }
    for (size_t i = 0; i < state->n_vfio_groups; i++) {
        const Cprkit__VfioGroup *m = state->vfio_groups[i];
        g_autofree struct vfio_group_rec *g = g_new0(struct vfio_group_rec, 1);

        r = state_fd_resolve(ctx, m->fd, CPRKIT_FD_VFIO_GROUP, "group", &g->fd);
        if (r < 0)
            return r;
        r = state_fd_resolve(ctx, m->container, CPRKIT_FD_VFIO_CONTAINER,
                             "group", &g->container_fd);
        if (r < 0)
            return r;
        g->number = m->group_number;
        g->preserved = true;
        g_ptr_array_add(v->groups, TAKE_PTR(g));
    }
    for (size_t i = 0; i < state->n_vfio_devices; i++) {
        const Cprkit__VfioDevice *m = state->vfio_devices[i];
        g_autofree struct vfio_device_rec *d =
            g_new0(struct vfio_device_rec, 1);

        r = state_fd_resolve(ctx, m->fd, CPRKIT_FD_VFIO_DEVICE, "device",
                             &d->fd);
        if (r < 0)
            return r;
        if (!m->bdf || !*m->bdf)
            return ctx_fail(ctx, -EBADMSG,
                            "device record without a PCI address");
        d->bdf = g_strdup(m->bdf);
        /* Blobs before 0.4 have no cdev field: group devices. */
        d->cdev = m->has_cdev && m->cdev;
        d->group_number = d->cdev ? 0 : m->group_number;
        d->preserved = true;
        d->bus_master = m->has_bus_master ? m->bus_master : -1;
        /* Before the application reclaims it: the fd at this number must
         * still be this device (device fds share one anonymous inode), and
         * still be a bus master if it was. */
        r = vfio_device_check_identity(ctx, d);
        if (r >= 0)
            r = vfio_device_check_bus_master(ctx, d);
        if (r < 0) {
            g_free(d->bdf);
            return r;
        }
        g_ptr_array_add(v->devices, TAKE_PTR(d));
    }
    for (size_t i = 0; i < state->n_dma_mappings; i++) {
        r = load_mapping(ctx, state->dma_mappings[i]);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < state->n_irqs; i++) {
        r = load_irq(ctx, state->irqs[i]);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < state->n_ram_blocks; i++) {
        const Cprkit__RamBlock *m = state->ram_blocks[i];
        g_autofree struct ram_block_rec *ram = g_new0(struct ram_block_rec, 1);

        if (!name_is_valid(m->name))
            return ctx_fail(ctx, -EBADMSG, "RAM block without a valid name");
        r = state_fd_resolve(ctx, m->fd, CPRKIT_FD_MEMFD, "RAM block",
                             &ram->fd);
        if (r < 0)
            return r;
        ram->name = g_strdup(m->name);
        ram->size = m->size;
        ram->preserved = true;
        g_ptr_array_add(v->ram_blocks, TAKE_PTR(ram));
    }
    return 0;
}
