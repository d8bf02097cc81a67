/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Lifecycle of the VFIO records and the ioctl seam. */
#include <string.h>
#include <sys/ioctl.h>

#include "vfio-internal.h"

static void device_rec_free(struct vfio_device_rec *d)
{
    g_free(d->bdf);
    g_free(d);
}

static void irq_rec_free(struct irq_index_rec *irq)
{
    g_free(irq->eventfds);
    g_free(irq);
}

static void ram_rec_free(struct ram_block_rec *ram)
{
    g_free(ram->name);
    g_free(ram);
}

void vfio_state_init(struct vfio_state *vfio)
{
    vfio->containers = g_ptr_array_new_with_free_func(g_free);
    vfio->groups = g_ptr_array_new_with_free_func(g_free);
    vfio->devices =
        g_ptr_array_new_with_free_func((GDestroyNotify)device_rec_free);
    vfio->mappings = g_ptr_array_new_with_free_func(g_free);
    vfio->irqs = g_ptr_array_new_with_free_func((GDestroyNotify)irq_rec_free);
    vfio->ram_blocks =
        g_ptr_array_new_with_free_func((GDestroyNotify)ram_rec_free);
}

/* Frees the records, not the fds: those belong to the application. */
void vfio_state_clear(struct vfio_state *vfio)
{
    g_clear_pointer(&vfio->containers, g_ptr_array_unref);
    g_clear_pointer(&vfio->groups, g_ptr_array_unref);
    g_clear_pointer(&vfio->devices, g_ptr_array_unref);
    g_clear_pointer(&vfio->mappings, g_ptr_array_unref);
    g_clear_pointer(&vfio->irqs, g_ptr_array_unref);
    g_clear_pointer(&vfio->ram_blocks, g_ptr_array_unref);
}

/* Returns the ioctl's non-negative result or -errno. */
int vfio_ioctl(cprkit_ctx *ctx, int fd, unsigned long request, void *arg)
{
    int (*fn)(int, unsigned long, void *) = vfio_of(ctx)->ioctl_fn;
    int r = fn ? fn(fd, request, arg) : ioctl(fd, request, arg);

    return r < 0 ? -errno : r;
}
