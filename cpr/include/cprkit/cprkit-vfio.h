/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprkit — the VFIO part of the API: find-or-create hooks for VFIO
 * containers, groups and devices, DMA mappings, interrupts and the RAM they
 * DMA to. It is libcprkit's VFIO type1 participant (preserve/, restore/;
 * docs/design.md, "Layers"), in libcprkit like the core:
 * pkg-config --cflags --libs cprkit.
 *
 * The conventions at the top of cprkit.h hold for every function here.
 */
#ifndef CPRKIT_VFIO_H
#define CPRKIT_VFIO_H

#include <stdbool.h>
#include <stdint.h>

#include "cprkit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- VFIO: find-or-create hooks ------------------------------------------
 *
 * Call these where the application would open or configure VFIO anyway.
 * In a process started normally they open and configure, and record what
 * they did. In a process started by an update (after cprkit_load_incoming()
 * returned 1) they hand back the preserved fd and skip the configuring
 * ioctls (VFIO_GROUP_SET_CONTAINER, VFIO_SET_IOMMU, VFIO_DEVICE_RESET,
 * VFIO_DEVICE_SET_IRQS): the device keeps running untouched.
 *
 * ret_reclaimed (may be NULL) tells which happened, so the application can
 * skip its own device initialisation on the reclaim path.
 *
 * Between cprkit_load_incoming() and cprkit_commit() only reclaiming is
 * allowed: new DMA mappings or a different IRQ configuration are refused
 * with -EBUSY, because a rollback must find the VFIO state exactly as the
 * previous binary left it.
 */

/* Opens /dev/vfio/vfio, or reclaims the preserved container with this id
 * (an application-chosen number, 0 for the first container).
 * Returns: the container fd or < 0. Since: 0.1 */
int cprkit_vfio_container_open(cprkit_ctx *ctx, int id, bool *ret_reclaimed);

/* Opens /dev/vfio/<group_number>, checks it is viable, attaches it to the
 * container and, for the container's first group, sets the IOMMU type
 * (VFIO_TYPE1v2_IOMMU). Reclaim path: hands back the preserved group fd.
 * Returns: the group fd or < 0 (-EPERM: group not viable, i.e. not every
 * device in it is bound to vfio-pci). Since: 0.1 */
int cprkit_vfio_group_open(cprkit_ctx *ctx, int container_fd,
                           unsigned group_number, bool *ret_reclaimed);

/* Gets the device fd for a PCI address such as "0000:00:03.0"
 * (VFIO_GROUP_GET_DEVICE_FD), or reclaims the preserved one. The preserved
 * device fd is never closed, which is what keeps vfio-pci from resetting
 * the device. Returns: the device fd or < 0. Since: 0.1 */
int cprkit_vfio_device_open(cprkit_ctx *ctx, int group_fd, const char *bdf,
                            bool *ret_reclaimed);

/* VFIO_DEVICE_RESET, except for a device reclaimed from the previous
 * binary before cprkit_commit(), where it does nothing and returns 0:
 * resetting would lose the device state the update exists to keep.
 * Returns: 0 or < 0. Since: 0.1 */
int cprkit_vfio_device_reset(cprkit_ctx *ctx, int device_fd);

/*
 * cprkit_vfio_dma_map:
 * VFIO_IOMMU_MAP_DMA of [vaddr, vaddr + size) at iova, recorded so it can
 * be preserved. prot: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE.
 *
 * The memory must be a shared mapping of an fd the new binary can map
 * again (a memfd from cprkit_ram_open(), or any memfd or shared file saved
 * with cprkit_fd_save()); anything else maps fine but blocks the update.
 *
 * Reclaim path: for a preserved range (same container, iova, size), checks
 * that vaddr maps the same fd at the same offset as before — the kernel does
 * not check this — and gives the mapping its new address with
 * VFIO_DMA_MAP_FLAG_VADDR. Returns: 0 or < 0 (-EXDEV: vaddr is backed by
 * other memory than the preserved mapping). Since: 0.1 */
int cprkit_vfio_dma_map(cprkit_ctx *ctx, int container_fd, uint64_t iova,
                        uint64_t size, void *vaddr, uint32_t prot);

/* VFIO_IOMMU_UNMAP_DMA of exactly one recorded mapping. Returns: 0 or < 0.
 * Since: 0.1 */
int cprkit_vfio_dma_unmap(cprkit_ctx *ctx, int container_fd, uint64_t iova,
                          uint64_t size);

/*
 * cprkit_vfio_irq_enable:
 * Sets up count trigger eventfds for an IRQ index with
 * VFIO_DEVICE_SET_IRQS and writes them to ret_eventfds[0..count-1]:
 * VFIO_PCI_INTX_IRQ_INDEX (count 1; also installs an unmask eventfd, see
 * cprkit_vfio_intx_unmask_fd), VFIO_PCI_MSI_IRQ_INDEX,
 * VFIO_PCI_MSIX_IRQ_INDEX, and since 0.5 VFIO_PCI_ERR_IRQ_INDEX (the AER
 * error notifier, PCI Express devices only: -EINVAL elsewhere) and
 * VFIO_PCI_REQ_IRQ_INDEX (the kernel asks for the device back, e.g. when
 * it is unbound from vfio-pci), both count 1.
 *
 * Reclaim path with the same count: returns the preserved eventfds and
 * does not call VFIO_DEVICE_SET_IRQS — the kernel still signals them, and
 * interrupts raised during the update wait in their counters. For INTx the
 * line is left as the previous binary left it: masked again if the
 * application had masked it (cprkit_vfio_intx_mask), else unmasked once, in
 * case the previous binary exec'd between an interrupt and its unmask (if
 * the device still asserts it, it fires again). An MSI/MSI-X index that was
 * preserved with vectors without an eventfd is reclaimed with
 * cprkit_vfio_irq_set_vectors() (-EBUSY here).
 * Returns: 0 or < 0. Since: 0.1 */
int cprkit_vfio_irq_enable(cprkit_ctx *ctx, int device_fd, unsigned index,
                           unsigned count, int *ret_eventfds);

/*
 * cprkit_vfio_irq_set_vectors:
 * MSI or MSI-X vectors [start, start + count) of a device: those with
 * use[i] true get a trigger eventfd (an existing one is kept), the others
 * none (eventfd -1 in VFIO_DEVICE_SET_IRQS; an existing one is closed).
 * use NULL: all of them. ret_eventfds[0..count-1] gets each vector's
 * eventfd or -1.
 *
 * Index not enabled: one VFIO_DEVICE_SET_IRQS for the block, which enables
 * start + count vectors in the device ("sparse": vectors without an
 * eventfd are enabled but raise nothing). Enabled: one SET_IRQS per vector
 * that changes, so the others keep their handler. Vectors past the enabled
 * ones: added in place where the kernel allows it (MSI-X without
 * VFIO_IRQ_INFO_NORESIZE, Linux 6.5+); otherwise (MSI, older kernels) the
 * index is disabled and enabled again with every vector, and interrupts
 * raised in between are lost, as with any such reconfiguration.
 *
 * Reclaim path: the same vectors with and without an eventfd as preserved
 * (else -EBUSY); returns the preserved eventfds, no SET_IRQS. The index
 * may be reclaimed over several calls, each claiming its vectors.
 * Returns: 0 or < 0. Since: 0.5 */
int cprkit_vfio_irq_set_vectors(cprkit_ctx *ctx, int device_fd, unsigned index,
                                unsigned start, unsigned count, const bool *use,
                                int *ret_eventfds);

/* The INTx unmask eventfd of a device whose INTx is enabled: write 1 to it
 * after handling an interrupt (INTx is masked automatically when it fires).
 * Returns: the fd or < 0. Since: 0.1 */
int cprkit_vfio_intx_unmask_fd(cprkit_ctx *ctx, int device_fd);

/* Masks (VFIO_IRQ_SET_ACTION_MASK) or unmasks (ACTION_UNMASK) the INTx
 * line of a device whose INTx is enabled, and records it: a masked line
 * stays masked across an update (and a rollback) until the application
 * unmasks it. A write to the unmask eventfd also unmasks the line in the
 * kernel; use this call to change what is recorded. Before
 * cprkit_commit() only the preserved state may be asked for (-EBUSY).
 * Returns: 0 or < 0. Since: 0.5 */
int cprkit_vfio_intx_mask(cprkit_ctx *ctx, int device_fd, bool mask);

/* Whether the application masked the INTx line with cprkit_vfio_intx_mask()
 * (in the previous binary, after a reclaim). The kernel's own masking of a
 * line that fired is not counted: userspace cannot see it.
 * Returns: 1 masked, 0 not, < 0 (-ENOENT: INTx not enabled). Since: 0.5 */
int cprkit_vfio_intx_is_masked(cprkit_ctx *ctx, int device_fd);

/* VFIO_DEVICE_SET_IRQS with count 0 for the index; closes its eventfds.
 * Returns: 0 or < 0. Since: 0.1 */
int cprkit_vfio_irq_disable(cprkit_ctx *ctx, int device_fd, unsigned index);

/* ---- RAM ----------------------------------------------------------------
 *
 * Guest RAM and DMA buffers that a DMA mapping can keep across exec:
 * anonymous memory cannot cross it, a memfd can. The blocks are records of
 * the VFIO participant, like the mappings.
 */

/* Creates a memfd of size bytes for guest RAM or DMA buffers under name,
 * or reclaims the preserved one (its size must match). Map it MAP_SHARED.
 * Returns: the fd or < 0. Since: 0.1 */
int cprkit_ram_open(cprkit_ctx *ctx, const char *name, uint64_t size,
                    bool *ret_reclaimed);

#ifdef __cplusplus
}
#endif

#endif /* CPRKIT_VFIO_H */
