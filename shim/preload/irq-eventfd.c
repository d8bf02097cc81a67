/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VFIO_DEVICE_SET_IRQS. The library owns the eventfds wired to the
 * device (they are preserved across exec): the shim puts them under the
 * program's eventfd numbers, so the program waits on the kernel-wired ones
 * and, on the incoming side, finds the interrupts raised during the
 * update in their counters.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "preload-internal.h"

/* Puts the file of lib_fd under the program's fd number, keeping the
 * program's FD_CLOEXEC and O_NONBLOCK choices. */
static int replace_fd(int lib_fd, int prog_fd)
{
    int fdflags = fcntl(prog_fd, F_GETFD);
    int flflags = fcntl(prog_fd, F_GETFL);

    if (fdflags < 0 || flflags < 0)
        return -EBADF;
    if (lib_fd == prog_fd)
        return 0;
    if (dup3(lib_fd, prog_fd, (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
        return -errno;
    if (fcntl(prog_fd, F_SETFL, flflags & O_NONBLOCK) < 0)
        return -errno;
    preload_private_add(lib_fd);
    return 0;
}

/* The library wires its own eventfds (it preserves them); MSI and MSI-X
 * go through cprkit_vfio_irq_set_vectors(), which takes any block of
 * vectors, with or without an eventfd each (fd -1), enabled at once or
 * grown later, as drivers do (DPDK, SPDK). The others (INTx and the error
 * and request notifiers) are one vector, enabled whole. */
static int enable_vectors(struct preload_device *d,
                          const struct vfio_irq_set *s,
                          const int32_t *prog_fds, int *lib_fds)
{
    bool use[PRELOAD_MAX_VECTORS];
    int r;

    for (uint32_t i = 0; i < s->count; i++)
        use[i] = prog_fds[i] >= 0;
    preload_in_lib++;
    if (s->index == VFIO_PCI_MSI_IRQ_INDEX ||
        s->index == VFIO_PCI_MSIX_IRQ_INDEX) {
        r = cprkit_vfio_irq_set_vectors(preload_ctx, d->fd, s->index,
                                        s->start, s->count, use, lib_fds);
    } else if (s->start != 0 || !use[0]) {
        /* The caller reports it (and rolls back on the incoming side). */
        r = cprkit_set_error(preload_ctx, -EINVAL,
                             "IRQ index %u of %s: start %u, fd %d: only MSI "
                             "and MSI-X take blocks of vectors with gaps "
                             "under the shim",
                             s->index, d->bdf, s->start, prog_fds[0]);
    } else {
        r = cprkit_vfio_irq_enable(preload_ctx, d->fd, s->index, s->count,
                                   lib_fds);
    }
    preload_in_lib--;
    return r;
}

int preload_set_irqs(struct preload_device *d, struct vfio_irq_set *s)
{
    uint32_t action = s->flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    uint32_t data = s->flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
    const int32_t *prog_fds = (const int32_t *)s->data;
    struct preload_item it = {.kind = PRELOAD_ITEM_IRQ,
                              .a = s->index,
                              .b = s->count,
                              .c = s->start};
    int lib_fds[PRELOAD_MAX_VECTORS];
    int r;

    snprintf(it.bdf, sizeof(it.bdf), "%s", d->bdf);
    if (action == VFIO_IRQ_SET_ACTION_TRIGGER &&
        data == VFIO_IRQ_SET_DATA_EVENTFD && s->count > 0 &&
        s->count <= PRELOAD_MAX_VECTORS) {
        r = enable_vectors(d, s, prog_fds, lib_fds);
        if (r < 0) {
            if (preload_incoming)
                preload_rollback("IRQ index %u vectors %u..%u of %s: %s",
                                 s->index, s->start, s->start + s->count - 1,
                                 d->bdf, cprkit_last_error(preload_ctx));
            preload_log(LOG_ERR, "VFIO_DEVICE_SET_IRQS: %s",
                        cprkit_last_error(preload_ctx));
            return r;
        }
        /* The program's eventfd numbers now name the kernel-wired
         * eventfds: on the incoming side they hold the interrupts
         * raised during the update. */
        for (uint32_t i = 0; i < s->count; i++) {
            if (prog_fds[i] < 0)
                continue;
            r = replace_fd(lib_fds[i], prog_fds[i]);
            if (r < 0) {
                if (preload_incoming)
                    preload_rollback(
                        "cannot put the preserved eventfd under fd %d: %s",
                        prog_fds[i], strerror(-r));
                return r;
            }
        }
        preload_claim(&it);
        preload_maybe_commit();
        return 0;
    }
    if (action == VFIO_IRQ_SET_ACTION_TRIGGER &&
        data == VFIO_IRQ_SET_DATA_NONE && s->count == 0) {
        if (preload_incoming) {
            preload_rollback(
                "the new binary disables IRQ index %u of %s during its "
                "initialisation",
                s->index, d->bdf);
            return -EBUSY;
        }
        preload_in_lib++;
        r = cprkit_vfio_irq_disable(preload_ctx, d->fd, s->index);
        preload_in_lib--;
        if (r < 0 && r != -ENOENT)
            return r;
        preload_record_remove_irqs(d->bdf, s->index);
        if (r == -ENOENT) /* not enabled through the shim: the kernel's say */
            return preload_real_ioctl(d->fd, VFIO_DEVICE_SET_IRQS, s) < 0
                       ? -errno
                       : 0;
        return 0;
    }
    if (action == VFIO_IRQ_SET_ACTION_UNMASK &&
        data == VFIO_IRQ_SET_DATA_EVENTFD &&
        s->index == VFIO_PCI_INTX_IRQ_INDEX && s->count == 1) {
        preload_in_lib++;
        r = cprkit_vfio_intx_unmask_fd(preload_ctx, d->fd);
        preload_in_lib--;
        if (r < 0)
            return r;
        return replace_fd(r, prog_fds[0]);
    }
    if (data != VFIO_IRQ_SET_DATA_EVENTFD)
        /* Masking, unmasking, loopback triggers: runtime operations that
         * do not change what is preserved. */
        return preload_real_ioctl(d->fd, VFIO_DEVICE_SET_IRQS, s) < 0 ? -errno
                                                                      : 0;
    preload_log(LOG_ERR,
                "VFIO_DEVICE_SET_IRQS flags 0x%x start %u count %u on %s is "
                "not supported under the shim",
                s->flags, s->start, s->count, d->bdf);
    return -EINVAL;
}
