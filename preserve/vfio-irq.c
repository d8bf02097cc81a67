/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Interrupts: trigger eventfds per vector (and the INTx unmask eventfd),
 * installed with VFIO_DEVICE_SET_IRQS and recorded. On the incoming side
 * the eventfds come back and SET_IRQS is not called: the kernel still
 * signals them, interrupts raised during the update wait in their
 * counters, and re-installing would open a window with no handler.
 */
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>

#include "vfio-internal.h"

static const char *const irq_index_names[] = {
    [VFIO_PCI_INTX_IRQ_INDEX] = "intx",
    [VFIO_PCI_MSI_IRQ_INDEX] = "msi",
    [VFIO_PCI_MSIX_IRQ_INDEX] = "msix",
};

static char *irq_fd_name(const char *bdf, unsigned index)
{
    return g_strdup_printf("vfio-irq:%s:%s", bdf, irq_index_names[index]);
}

static char *unmask_fd_name(const char *bdf)
{
    return g_strdup_printf("vfio-intx-unmask:%s", bdf);
}

static struct irq_index_rec *irq_rec_find(cprkit_ctx *ctx, int device_fd,
                                   unsigned index)
{
    GPtrArray *irqs = vfio_of(ctx)->irqs;

    for (guint i = 0; i < irqs->len; i++) {
        struct irq_index_rec *irq = g_ptr_array_index(irqs, i);

        if (irq->device_fd == device_fd && irq->index == index)
            return irq;
    }
    return NULL;
}

static int set_irqs(cprkit_ctx *ctx, int device_fd, unsigned index,
                    uint32_t action, unsigned count, const int *fds)
{
    size_t size = sizeof(struct vfio_irq_set) + sizeof(int32_t) * count;
    g_autofree struct vfio_irq_set *set = g_malloc0(size);

    set->argsz = (uint32_t)size;
    set->flags = (count ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE) |
                 action;
    set->index = index;
    set->start = 0;
    set->count = count;
    if (count)
        memcpy(set->data, fds, sizeof(int32_t) * count);
    return vfio_ioctl(ctx, device_fd, VFIO_DEVICE_SET_IRQS, set);
}

/* Incoming: hand back the preserved eventfds of this index. */
static int irq_reclaim(cprkit_ctx *ctx, struct vfio_device_rec *d,
                       struct irq_index_rec *irq, unsigned count,
                       int *ret_eventfds)
{
    g_autofree char *name = irq_fd_name(d->bdf, irq->index);
    uint64_t one = 1;

    if (count != irq->count)
        return ctx_fail(ctx, -EBUSY,
                        "%s %s was preserved with %u vectors, asked for %u: "
                        "commit first, then disable and enable it again",
                        d->bdf, irq_index_names[irq->index], irq->count, count);
    for (unsigned v = 0; v < count; v++) {
        int r = cprkit_fd_find(ctx, name, (int)v, CPRKIT_FD_EVENTFD);

        if (r < 0)
            return r;
    }
    if (irq->unmask_fd >= 0) {
        g_autofree char *unmask = unmask_fd_name(d->bdf);
        int r = cprkit_fd_find(ctx, unmask, 0, CPRKIT_FD_EVENTFD);

        if (r < 0)
            return r;
        /* The previous binary may have exec'd between an INTx and its
         * unmask; unmasking a line that is not masked does nothing, and a
         * still-asserted line just fires again. */
        if (write(irq->unmask_fd, &one, sizeof(one)) != sizeof(one))
            return ctx_fail(ctx, -errno, "unmasking INTx of %s: %m", d->bdf);
    }
    irq->preserved = false;
    irq->reclaimed = true;
    memcpy(ret_eventfds, irq->eventfds, sizeof(int) * count);
    return 0;
}

static void close_fds(int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

CPRKIT_EXPORT int cprkit_vfio_irq_enable(cprkit_ctx *ctx, int device_fd,
                                         unsigned index, unsigned count,
                                         int *ret_eventfds)
{
    struct vfio_device_rec *d;
    struct irq_index_rec *irq;
    g_autofree char *name = NULL;
    g_autofree int *fds = NULL;
    int unmask_fd = -1, r;

    r = vfio_device_get(ctx, device_fd, &d);
    if (r < 0)
        return r;
    if (index > VFIO_PCI_MSIX_IRQ_INDEX || count == 0 || !ret_eventfds)
        return ctx_fail(ctx, -EINVAL,
                        "IRQ index %u count %u: use INTx, MSI or MSI-X with "
                        "at least one vector",
                        index, count);
    if (index == VFIO_PCI_INTX_IRQ_INDEX && count != 1)
        return ctx_fail(ctx, -EINVAL, "INTx has exactly one vector");

    irq = irq_rec_find(ctx, device_fd, index);
    if (irq && irq->preserved)
        return irq_reclaim(ctx, d, irq, count, ret_eventfds);
    if (irq)
        return ctx_fail(ctx, -EBUSY,
                        "%s %s is already enabled; disable it first", d->bdf,
                        irq_index_names[index]);
    if (ctx->incoming)
        return ctx_fail(ctx, -EBUSY,
                        "%s %s was not preserved; a new IRQ configuration "
                        "must wait for cprkit_commit()",
                        d->bdf, irq_index_names[index]);

    fds = g_new(int, count);
    for (unsigned v = 0; v < count; v++)
        fds[v] = -1;
    for (unsigned v = 0; v < count; v++) {
        fds[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fds[v] < 0) {
            r = ctx_fail(ctx, -errno, "eventfd: %m");
            goto fail;
        }
    }
    r = set_irqs(ctx, device_fd, index, VFIO_IRQ_SET_ACTION_TRIGGER, count, fds);
    if (r < 0) {
        r = ctx_fail(ctx, r, "VFIO_DEVICE_SET_IRQS %s %s x%u: %s", d->bdf,
                     irq_index_names[index], count, strerror(-r));
        goto fail;
    }
    if (index == VFIO_PCI_INTX_IRQ_INDEX) {
        unmask_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (unmask_fd < 0) {
            r = ctx_fail(ctx, -errno, "eventfd: %m");
            goto fail_disable;
        }
        r = set_irqs(ctx, device_fd, index, VFIO_IRQ_SET_ACTION_UNMASK, 1,
                     &unmask_fd);
        if (r < 0) {
            r = ctx_fail(ctx, r, "INTx unmask eventfd for %s: %s", d->bdf,
                         strerror(-r));
            goto fail_disable;
        }
    }

    name = irq_fd_name(d->bdf, index);
    for (unsigned v = 0; v < count; v++) {
        r = cprkit_fd_save(ctx, name, (int)v, fds[v]);
        if (r < 0)
            goto fail_unsave;
    }
    if (unmask_fd >= 0) {
        g_autofree char *unmask = unmask_fd_name(d->bdf);

        r = cprkit_fd_save(ctx, unmask, 0, unmask_fd);
        if (r < 0)
            goto fail_unsave;
    }
    irq = g_new0(struct irq_index_rec, 1);
    irq->device_fd = device_fd;
    irq->index = index;
    irq->count = count;
    irq->eventfds = g_memdup2(fds, sizeof(int) * count);
    irq->unmask_fd = unmask_fd;
    g_ptr_array_add(vfio_of(ctx)->irqs, irq);
    ctx_state_changed(ctx);
    memcpy(ret_eventfds, fds, sizeof(int) * count);
    return 0;

fail_unsave:
    for (unsigned v = 0; v < count; v++)
        cprkit_fd_remove(ctx, name, (int)v);
fail_disable:
    set_irqs(ctx, device_fd, index, VFIO_IRQ_SET_ACTION_TRIGGER, 0, NULL);
fail:
    close_fds(fds, count);
    if (unmask_fd >= 0)
        close(unmask_fd);
    return r;
}

CPRKIT_EXPORT int cprkit_vfio_intx_unmask_fd(cprkit_ctx *ctx, int device_fd)
{
    struct irq_index_rec *irq =
        irq_rec_find(ctx, device_fd, VFIO_PCI_INTX_IRQ_INDEX);

    if (!irq || irq->preserved || irq->unmask_fd < 0)
        return ctx_fail(ctx, -ENOENT, "INTx is not enabled on fd %d", device_fd);
    return irq->unmask_fd;
}

CPRKIT_EXPORT int cprkit_vfio_irq_disable(cprkit_ctx *ctx, int device_fd,
                                          unsigned index)
{
    struct vfio_device_rec *d = vfio_device_by_fd(ctx, device_fd);
    struct irq_index_rec *irq = irq_rec_find(ctx, device_fd, index);
    g_autofree char *name = NULL;
    int r;

    if (!d || !irq)
        return ctx_fail(ctx, -ENOENT, "IRQ index %u is not enabled on fd %d",
                        index, device_fd);
    if (ctx->incoming)
        return ctx_fail(ctx, -EBUSY,
                        "IRQ changes must wait for cprkit_commit()");
    r = set_irqs(ctx, device_fd, index, VFIO_IRQ_SET_ACTION_TRIGGER, 0, NULL);
    if (r < 0)
        return ctx_fail(ctx, r, "disabling %s %s: %s", d->bdf,
                        irq_index_names[index], strerror(-r));
    name = irq_fd_name(d->bdf, index);
    for (unsigned v = 0; v < irq->count; v++)
        cprkit_fd_remove(ctx, name, (int)v);
    close_fds(irq->eventfds, irq->count);
    if (irq->unmask_fd >= 0) {
        g_autofree char *unmask = unmask_fd_name(d->bdf);

        cprkit_fd_remove(ctx, unmask, 0);
        close(irq->unmask_fd);
    }
    g_ptr_array_remove(vfio_of(ctx)->irqs, irq);
    ctx_state_changed(ctx);
    return 0;
}
