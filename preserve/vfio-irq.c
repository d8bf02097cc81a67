/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Interrupts: trigger eventfds per vector (and the INTx unmask eventfd),
 * installed with VFIO_DEVICE_SET_IRQS and recorded. On the incoming side
 * the eventfds come back and SET_IRQS is not called: the kernel still
 * signals them, interrupts raised during the update wait in their
 * counters, and re-installing would open a window with no handler.
 *
 * Indexes: INTx, MSI, MSI-X, and the two notifiers of vfio-pci, ERR (AER
 * error detected, PCI Express devices only) and REQ (the kernel asks the
 * user to release the device, e.g. on unbind). MSI and MSI-X may have
 * vectors without an eventfd (-1 in SET_IRQS: enabled in the device, no
 * trigger) and MSI-X may grow while enabled where the kernel allows it.
 */
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>

#include "vfio-internal.h"

/* The kernel's own limit for MSI-X is 2048 vectors (PCI_MSIX_FLAGS_QSIZE). */
#define IRQ_MAX_VECTORS 2048

static const char *const irq_index_names[] = {
    [VFIO_PCI_INTX_IRQ_INDEX] = "intx", [VFIO_PCI_MSI_IRQ_INDEX] = "msi",
    [VFIO_PCI_MSIX_IRQ_INDEX] = "msix", [VFIO_PCI_ERR_IRQ_INDEX] = "err",
    [VFIO_PCI_REQ_IRQ_INDEX] = "req",
};

static bool index_is_msi(unsigned index)
{
    return index == VFIO_PCI_MSI_IRQ_INDEX || index == VFIO_PCI_MSIX_IRQ_INDEX;
}

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

/* fds NULL: VFIO_IRQ_SET_DATA_NONE (count 0 disables the index; count 1
 * with ACTION_MASK/UNMASK masks or unmasks INTx). */
static int set_irqs(cprkit_ctx *ctx, int device_fd, unsigned index,
                    uint32_t action, unsigned start, unsigned count,
                    const int *fds)
{
    size_t size =
        sizeof(struct vfio_irq_set) + (fds ? sizeof(int32_t) * count : 0);
    g_autofree struct vfio_irq_set *set = g_malloc0(size);

    set->argsz = (uint32_t)size;
    set->flags =
        (fds ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE) | action;
    set->index = index;
    set->start = start;
    set->count = count;
    if (fds)
        memcpy(set->data, fds, sizeof(int32_t) * count);
    return vfio_ioctl(ctx, device_fd, VFIO_DEVICE_SET_IRQS, set);
}

/* Whether the kernel can add vectors to the enabled index without
 * disabling it: MSI-X without VFIO_IRQ_INFO_NORESIZE (Linux 6.5+, dynamic
 * MSI-X allocation, when the interrupt domain supports it). MSI never. */
static bool index_can_grow(cprkit_ctx *ctx, int device_fd, unsigned index)
{
    struct vfio_irq_info info = {.argsz = sizeof(info), .index = index};

    if (vfio_ioctl(ctx, device_fd, VFIO_DEVICE_GET_IRQ_INFO, &info) < 0)
        return false;
    return !(info.flags & VFIO_IRQ_INFO_NORESIZE);
}

static int set_irqs_fail(cprkit_ctx *ctx, const struct vfio_device_rec *d,
                         unsigned index, unsigned start, unsigned count, int r)
{
    /* vfio-pci counts ERR only on PCI Express devices: 0 vectors (EINVAL
     * from the range check) on conventional PCI. */
    return ctx_fail(ctx, r, "VFIO_DEVICE_SET_IRQS %s %s vectors %u..%u: %s%s",
                    d->bdf, irq_index_names[index], start, start + count - 1,
                    strerror(-r),
                    index == VFIO_PCI_ERR_IRQ_INDEX && r == -EINVAL
                        ? " (the kernel has an error notifier only for PCI "
                          "Express devices)"
                        : "");
}

static void close_fds(int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

static bool irq_has_gaps(const struct irq_index_rec *irq)
{
    for (unsigned v = 0; v < irq->count; v++)
        if (irq->eventfds[v] < 0)
            return true;
    return false;
}

/* ---- incoming: hand back what was preserved ----------------------------- */

/* Claims the preserved eventfds of vectors [start, start + count) in the
 * registry; ret gets them (-1 for vectors without one). */
static int irq_claim(cprkit_ctx *ctx, const struct vfio_device_rec *d,
                     const struct irq_index_rec *irq, unsigned start,
                     unsigned count, int *ret)
{
    g_autofree char *name = irq_fd_name(d->bdf, irq->index);
    g_autofree int *fds = g_new(int, count);

    for (unsigned i = 0; i < count; i++) {
        fds[i] = irq->eventfds[start + i];
        if (fds[i] >= 0) {
            int r =
                cprkit_fd_find(ctx, name, (int)(start + i), CPRKIT_FD_EVENTFD);

            if (r < 0)
                return r;
        }
    }
    memcpy(ret, fds, sizeof(int) * count);
    return 0;
}

/* The index is reclaimed once every vector with an eventfd was claimed
 * (the application may claim them over several calls). */
static void irq_mark_if_claimed(cprkit_ctx *ctx,
                                const struct vfio_device_rec *d,
                                struct irq_index_rec *irq)
{
    g_autofree char *name = irq_fd_name(d->bdf, irq->index);

    for (unsigned v = 0; v < irq->count; v++) {
        const struct fd_entry *e;

        if (irq->eventfds[v] < 0)
            continue;
        e = fdreg_lookup(ctx, name, (int)v);
        if (!e || !e->claimed)
            return;
    }
    irq->preserved = false;
    irq->reclaimed = true;
}

/* INTx: the line ends up as the previous binary left it. Masked by the
 * application: mask it again (a no-op if it still is; the previous binary
 * may have written the unmask eventfd since). Otherwise unmask once: the
 * kernel masks the line when it fires, and the previous binary may have
 * exec'd between an interrupt and its unmask; a line the device still
 * asserts fires again. The kernel keeps a single "masked" bit and does not
 * say who set it, hence the record. */
static int intx_restore_mask(cprkit_ctx *ctx, const struct vfio_device_rec *d,
                             const struct irq_index_rec *irq)
{
    g_autofree char *unmask = unmask_fd_name(d->bdf);
    uint64_t one = 1;
    int r;

    if (irq->unmask_fd < 0)
        return 0;
    r = cprkit_fd_find(ctx, unmask, 0, CPRKIT_FD_EVENTFD);
    if (r < 0)
        return r;
    if (irq->app_masked) {
        r = set_irqs(ctx, d->fd, VFIO_PCI_INTX_IRQ_INDEX,
                     VFIO_IRQ_SET_ACTION_MASK, 0, 1, NULL);
        if (r < 0)
            return ctx_fail(ctx, r, "masking INTx of %s again: %s", d->bdf,
                            strerror(-r));
        return 0;
    }
    if (write(irq->unmask_fd, &one, sizeof(one)) != sizeof(one))
        return ctx_fail(ctx, -errno, "unmasking INTx of %s: %m", d->bdf);
    return 0;
}

/* cprkit_vfio_irq_enable() of a preserved index: all of it, every vector
 * with an eventfd. */
static int irq_reclaim(cprkit_ctx *ctx, struct vfio_device_rec *d,
                       struct irq_index_rec *irq, unsigned count,
                       int *ret_eventfds)
{
    g_autofree int *fds = g_new(int, count);
    int r;

    if (count != irq->count)
        return ctx_fail(ctx, -EBUSY,
                        "%s %s was preserved with %u vectors, asked for %u: "
                        "commit first, then disable and enable it again",
                        d->bdf, irq_index_names[irq->index], irq->count, count);
    if (irq_has_gaps(irq))
        return ctx_fail(
            ctx, -EBUSY,
            "%s %s was preserved with vectors that have no "
            "eventfd: reclaim it with cprkit_vfio_irq_set_vectors()",
            d->bdf, irq_index_names[irq->index]);
    r = irq_claim(ctx, d, irq, 0, count, fds);
    if (r < 0)
        return r;
    if (irq->index == VFIO_PCI_INTX_IRQ_INDEX) {
        r = intx_restore_mask(ctx, d, irq);
        if (r < 0)
            return r;
    }
    irq_mark_if_claimed(ctx, d, irq);
    memcpy(ret_eventfds, fds, sizeof(int) * count);
    return 0;
}

/* cprkit_vfio_irq_set_vectors() before commit: the same vectors with and
 * without an eventfd as preserved, or -EBUSY. */
static int irq_reclaim_vectors(cprkit_ctx *ctx, struct vfio_device_rec *d,
                               struct irq_index_rec *irq, unsigned start,
                               unsigned count, const bool *use,
                               int *ret_eventfds)
{
    int r;

    for (unsigned i = 0; i < count; i++) {
        unsigned v = start + i;
        bool has = v < irq->count && irq->eventfds[v] >= 0;
        bool want = !use || use[i];

        if (has != want)
            return ctx_fail(ctx, -EBUSY,
                            "%s %s vector %u was preserved %s an eventfd; "
                            "changing it must wait for cprkit_commit()",
                            d->bdf, irq_index_names[irq->index], v,
                            has ? "with" : "without");
    }
    if (start + count > irq->count) {
        /* Only vectors without an eventfd past the end: nothing to claim,
         * but the kernel has not enabled them. */
        return ctx_fail(ctx, -EBUSY,
                        "%s %s was preserved with %u vectors; vectors %u..%u "
                        "must wait for cprkit_commit()",
                        d->bdf, irq_index_names[irq->index], irq->count, start,
                        start + count - 1);
    }
    r = irq_claim(ctx, d, irq, start, count, ret_eventfds);
    if (r < 0)
        return r;
    irq_mark_if_claimed(ctx, d, irq);
    return 0;
}

/* ---- fresh: install and record ------------------------------------------ */

static int save_vector_fds(cprkit_ctx *ctx, const char *name, const int *fds,
                           unsigned from, unsigned to, const bool *only)
{
    for (unsigned v = from; v < to; v++) {
        int r;

        if (fds[v] < 0 || (only && !only[v]))
            continue;
        r = cprkit_fd_save(ctx, name, (int)v, fds[v]);
        if (r < 0) {
            while (v-- > from)
                if (fds[v] >= 0 && (!only || only[v]))
                    cprkit_fd_remove(ctx, name, (int)v);
            return r;
        }
    }
    return 0;
}

/* The index is not enabled: eventfds for the vectors in use of
 * [start, start + count), one SET_IRQS for the block (the kernel enables
 * start + count vectors; those given -1 have no trigger). */
static int irq_install(cprkit_ctx *ctx, struct vfio_device_rec *d,
                       unsigned index, unsigned start, unsigned count,
                       const bool *use, int *ret_eventfds)
{
    unsigned total = start + count;
    g_autofree int *fds = g_new(int, total);
    g_autofree char *name = irq_fd_name(d->bdf, index);
    struct irq_index_rec *irq;
    int unmask_fd = -1, r;

    for (unsigned v = 0; v < total; v++)
        fds[v] = -1;
    for (unsigned v = start; v < total; v++) {
        if (use && !use[v - start])
            continue;
        fds[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fds[v] < 0) {
            r = ctx_fail(ctx, -errno, "eventfd: %m");
            goto fail;
        }
    }
    r = set_irqs(ctx, d->fd, index, VFIO_IRQ_SET_ACTION_TRIGGER, start, count,
                 fds + start);
    if (r < 0) {
        r = set_irqs_fail(ctx, d, index, start, count, r);
        goto fail;
    }
    if (index == VFIO_PCI_INTX_IRQ_INDEX) {
        unmask_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (unmask_fd < 0) {
            r = ctx_fail(ctx, -errno, "eventfd: %m");
            goto fail_disable;
        }
        r = set_irqs(ctx, d->fd, index, VFIO_IRQ_SET_ACTION_UNMASK, 0, 1,
                     &unmask_fd);
        if (r < 0) {
            r = ctx_fail(ctx, r, "INTx unmask eventfd for %s: %s", d->bdf,
                         strerror(-r));
            goto fail_disable;
        }
    }

    r = save_vector_fds(ctx, name, fds, start, total, NULL);
    if (r < 0)
        goto fail_disable;
    if (unmask_fd >= 0) {
        g_autofree char *unmask = unmask_fd_name(d->bdf);

        r = cprkit_fd_save(ctx, unmask, 0, unmask_fd);
        if (r < 0) {
            for (unsigned v = start; v < total; v++)
                if (fds[v] >= 0)
                    cprkit_fd_remove(ctx, name, (int)v);
            goto fail_disable;
        }
    }
    irq = g_new0(struct irq_index_rec, 1);
    irq->device_fd = d->fd;
    irq->index = index;
    irq->count = total;
    irq->eventfds = g_memdup2(fds, sizeof(int) * total);
    irq->unmask_fd = unmask_fd;
    g_ptr_array_add(vfio_of(ctx)->irqs, irq);
    ctx_state_changed(ctx);
    memcpy(ret_eventfds, fds + start, sizeof(int) * count);
    return 0;

fail_disable:
    set_irqs(ctx, d->fd, index, VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, NULL);
fail:
    close_fds(fds, total);
    if (unmask_fd >= 0)
        close(unmask_fd);
    return r;
}

/* The index is enabled: give vectors of [start, start + count) an eventfd
 * or take it away, growing the index if needed. Vectors that do not change
 * are not touched: re-setting one frees and requests its interrupt again,
 * a window in which it is lost. */
static int irq_update(cprkit_ctx *ctx, struct vfio_device_rec *d,
                      struct irq_index_rec *irq, unsigned start, unsigned count,
                      const bool *use, int *ret_eventfds)
{
    unsigned old = irq->count, end = start + count;
    unsigned total = MAX(old, end);
    g_autofree int *fds = g_new(int, total);
    g_autofree bool *created = g_new0(bool, total);
    g_autofree char *name = irq_fd_name(d->bdf, irq->index);
    bool reenable = end > old && !index_can_grow(ctx, d->fd, irq->index);
    unsigned done = 0;
    int r;

    for (unsigned v = 0; v < total; v++)
        fds[v] = v < old ? irq->eventfds[v] : -1;
    for (unsigned v = start; v < end; v++) {
        bool want = !use || use[v - start];

        if (want && fds[v] < 0) {
            fds[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (fds[v] < 0) {
                r = ctx_fail(ctx, -errno, "eventfd: %m");
                goto fail;
            }
            created[v] = true;
        } else if (!want) {
            fds[v] = -1;
        }
    }

    if (reenable) {
        /* NORESIZE (MSI, or MSI-X before Linux 6.5 or without dynamic
         * allocation): the kernel enables a block once, so growing means
         * disabling and enabling it again with every vector. Interrupts
         * raised in between are lost, as with any such reconfiguration. */
        ctx_log(ctx, LOG_NOTICE,
                "%s %s: the kernel cannot add vectors to the enabled index "
                "(NORESIZE); disabling and enabling it with %u vectors",
                d->bdf, irq_index_names[irq->index], total);
        r = set_irqs(ctx, d->fd, irq->index, VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0,
                     NULL);
        if (r >= 0)
            r = set_irqs(ctx, d->fd, irq->index, VFIO_IRQ_SET_ACTION_TRIGGER, 0,
                         total, fds);
        if (r < 0) {
            int again =
                set_irqs(ctx, d->fd, irq->index, VFIO_IRQ_SET_ACTION_TRIGGER, 0,
                         old, irq->eventfds);

            r = set_irqs_fail(ctx, d, irq->index, 0, total, r);
            if (again < 0)
                ctx_log(ctx, LOG_ERR,
                        "%s %s: enabling the previous %u vectors again "
                        "failed too (%s): the index is disabled",
                        d->bdf, irq_index_names[irq->index], old,
                        strerror(-again));
            goto fail;
        }
    } else {
        for (unsigned v = start; v < end; v++, done++) {
            if (fds[v] == (v < old ? irq->eventfds[v] : -1))
                continue;
            r = set_irqs(ctx, d->fd, irq->index, VFIO_IRQ_SET_ACTION_TRIGGER, v,
                         1, &fds[v]);
            if (r < 0) {
                r = set_irqs_fail(ctx, d, irq->index, v, 1, r);
                goto fail_undo;
            }
        }
    }

    r = save_vector_fds(ctx, name, fds, start, end, created);
    if (r < 0)
        goto fail_undo_all;
    for (unsigned v = start; v < MIN(end, old); v++) {
        if (irq->eventfds[v] >= 0 && fds[v] < 0) {
            cprkit_fd_remove(ctx, name, (int)v);
            close(irq->eventfds[v]);
        }
    }
    g_free(irq->eventfds);
    irq->eventfds = g_memdup2(fds, sizeof(int) * total);
    irq->count = total;
    ctx_state_changed(ctx);
    memcpy(ret_eventfds, fds + start, sizeof(int) * count);
    return 0;

fail_undo_all:
    done = count;
fail_undo:
    if (reenable) {
        set_irqs(ctx, d->fd, irq->index, VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0,
                 NULL);
        set_irqs(ctx, d->fd, irq->index, VFIO_IRQ_SET_ACTION_TRIGGER, 0, old,
                 irq->eventfds);
    } else {
        /* Back to what the kernel had, vector by vector. */
        for (unsigned v = start; v < start + done; v++) {
            int was = v < old ? irq->eventfds[v] : -1;

            if (fds[v] != was)
                set_irqs(ctx, d->fd, irq->index, VFIO_IRQ_SET_ACTION_TRIGGER, v,
                         1, &was);
        }
    }
fail:
    for (unsigned v = 0; v < total; v++)
        if (created[v] && fds[v] >= 0)
            close(fds[v]);
    return r;
}

/* ---- the hooks ---------------------------------------------------------- */

CPRKIT_EXPORT int cprkit_vfio_irq_enable(cprkit_ctx *ctx, int device_fd,
                                         unsigned index, unsigned count,
                                         int *ret_eventfds)
{
    struct vfio_device_rec *d;
    struct irq_index_rec *irq;
    int r;

    r = vfio_device_get(ctx, device_fd, &d);
    if (r < 0)
        return r;
    if (index > VFIO_PCI_REQ_IRQ_INDEX || count == 0 ||
        count > IRQ_MAX_VECTORS || !ret_eventfds)
        return ctx_fail(ctx, -EINVAL,
                        "IRQ index %u count %u: use INTx, MSI, MSI-X, ERR or "
                        "REQ with 1 to %u vectors",
                        index, count, IRQ_MAX_VECTORS);
    if (!index_is_msi(index) && count != 1)
        return ctx_fail(ctx, -EINVAL, "%s has exactly one vector",
                        irq_index_names[index]);

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
    return irq_install(ctx, d, index, 0, count, NULL, ret_eventfds);
}

CPRKIT_EXPORT int cprkit_vfio_irq_set_vectors(cprkit_ctx *ctx, int device_fd,
                                              unsigned index, unsigned start,
                                              unsigned count, const bool *use,
                                              int *ret_eventfds)
{
    struct vfio_device_rec *d;
    struct irq_index_rec *irq;
    int r;

    r = vfio_device_get(ctx, device_fd, &d);
    if (r < 0)
        return r;
    if (!index_is_msi(index) || count == 0 || !ret_eventfds ||
        start >= IRQ_MAX_VECTORS || count > IRQ_MAX_VECTORS - start)
        return ctx_fail(ctx, -EINVAL,
                        "IRQ index %u vectors %u+%u: use MSI or MSI-X, "
                        "vectors below %u",
                        index, start, count, IRQ_MAX_VECTORS);

    irq = irq_rec_find(ctx, device_fd, index);
    if (ctx->incoming) {
        if (!irq)
            return ctx_fail(ctx, -EBUSY,
                            "%s %s was not preserved; a new IRQ "
                            "configuration must wait for cprkit_commit()",
                            d->bdf, irq_index_names[index]);
        return irq_reclaim_vectors(ctx, d, irq, start, count, use,
                                   ret_eventfds);
    }
    if (!irq)
        return irq_install(ctx, d, index, start, count, use, ret_eventfds);
    return irq_update(ctx, d, irq, start, count, use, ret_eventfds);
}

CPRKIT_EXPORT int cprkit_vfio_intx_unmask_fd(cprkit_ctx *ctx, int device_fd)
{
    struct irq_index_rec *irq =
        irq_rec_find(ctx, device_fd, VFIO_PCI_INTX_IRQ_INDEX);

    if (!irq || irq->preserved || irq->unmask_fd < 0)
        return ctx_fail(ctx, -ENOENT, "INTx is not enabled on fd %d", device_fd);
    return irq->unmask_fd;
}

static int intx_get(cprkit_ctx *ctx, int device_fd, struct vfio_device_rec **d,
                    struct irq_index_rec **ret)
{
    int r = vfio_device_get(ctx, device_fd, d);

    if (r < 0)
        return r;
    *ret = irq_rec_find(ctx, device_fd, VFIO_PCI_INTX_IRQ_INDEX);
    if (!*ret)
        return ctx_fail(ctx, -ENOENT, "INTx is not enabled on %s", (*d)->bdf);
    return 0;
}

CPRKIT_EXPORT int cprkit_vfio_intx_mask(cprkit_ctx *ctx, int device_fd,
                                        bool mask)
{
    struct vfio_device_rec *d;
    struct irq_index_rec *irq;
    int r;

    r = intx_get(ctx, device_fd, &d, &irq);
    if (r < 0)
        return r;
    /* The blob a rollback hands back says how the line was; before commit
     * it must stay that way. Asking for the same state is fine. */
    if (ctx->incoming && mask != irq->app_masked)
        return ctx_fail(ctx, -EBUSY,
                        "INTx of %s was preserved %s; changing it must wait "
                        "for cprkit_commit()",
                        d->bdf, irq->app_masked ? "masked" : "unmasked");
    if (ctx->incoming)
        return 0;
    r = set_irqs(ctx, device_fd, VFIO_PCI_INTX_IRQ_INDEX,
                 mask ? VFIO_IRQ_SET_ACTION_MASK : VFIO_IRQ_SET_ACTION_UNMASK,
                 0, 1, NULL);
    if (r < 0)
        return ctx_fail(ctx, r, "%s INTx of %s: %s",
                        mask ? "masking" : "unmasking", d->bdf, strerror(-r));
    if (irq->app_masked != mask) {
        irq->app_masked = mask;
        ctx_state_changed(ctx);
    }
    return 0;
}

CPRKIT_EXPORT int cprkit_vfio_intx_is_masked(cprkit_ctx *ctx, int device_fd)
{
    struct vfio_device_rec *d;
    struct irq_index_rec *irq;
    int r;

    r = intx_get(ctx, device_fd, &d, &irq);
    if (r < 0)
        return r;
    return irq->app_masked ? 1 : 0;
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
    r = set_irqs(ctx, device_fd, index, VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0,
                 NULL);
    if (r < 0)
        return ctx_fail(ctx, r, "disabling %s %s: %s", d->bdf,
                        irq_index_names[index], strerror(-r));
    name = irq_fd_name(d->bdf, index);
    for (unsigned v = 0; v < irq->count; v++)
        if (irq->eventfds[v] >= 0)
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
