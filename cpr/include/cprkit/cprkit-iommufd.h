/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprkit — the iommufd part of the API: find-or-create hooks for an
 * iommufd (/dev/iommu), its I/O address spaces (IOAS), VFIO device cdevs
 * (/dev/vfio/devices/vfioN) bound to it, and DMA mappings of memfds made
 * with IOMMU_IOAS_MAP_FILE. It is libcprkit's iommufd participant, the
 * second DMA backend beside VFIO type1 (cprkit-vfio.h); docs/api.md,
 * "iommufd", and docs/design.md, "Layers". pkg-config --cflags --libs cprkit.
 *
 * How an update differs from type1: there is no vaddr to suspend or remap.
 * The kernel holds every mapping by file (the memfd) and offset, so the old
 * binary suspends nothing, and the new binary's cprkit_load_incoming()
 * moves the pinned-page accounting of all mappings to itself with one
 * IOMMU_IOAS_CHANGE_PROCESS per iommufd. Needs Linux 6.13 or later with
 * CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV; an update is refused (before
 * anything changes) when the kernel lacks IOMMU_IOAS_CHANGE_PROCESS, a
 * mapping of the iommufd was not made from a file, the iommufd uses
 * process-based accounting (IOMMU_OPTION_RLIMIT_MODE 1), or, without
 * CAP_IPC_LOCK, RLIMIT_MEMLOCK is below twice the mapped bytes (the kernel
 * charges the new process before it uncharges the old one).
 *
 * Device fds from cprkit_iommufd_device_open() are VFIO device fds like the
 * ones from cprkit_vfio_device_open(): cprkit_vfio_device_reset(),
 * cprkit_vfio_irq_enable(), cprkit_vfio_intx_unmask_fd() and
 * cprkit_vfio_irq_disable() take them, and RAM comes from cprkit_ram_open().
 *
 * The conventions at the top of cprkit.h hold for every function here, and
 * the reclaim rules of cprkit-vfio.h: between cprkit_load_incoming() and
 * cprkit_commit() only reclaiming is allowed (-EBUSY otherwise).
 */
#ifndef CPRKIT_IOMMUFD_H
#define CPRKIT_IOMMUFD_H

#include <stdbool.h>
#include <stdint.h>

#include "cprkit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The prot bits of cprkit_iommufd_map_file(): the values of the kernel's
 * IOMMU_IOAS_MAP_READABLE and IOMMU_IOAS_MAP_WRITEABLE, here because the
 * uAPI headers of many systems predate <linux/iommufd.h>. */
#define CPRKIT_IOMMUFD_READ (1u << 2)
#define CPRKIT_IOMMUFD_WRITE (1u << 1)

/* Opens /dev/iommu, or reclaims the preserved iommufd with this id (an
 * application-chosen number, 0 for the first). Returns: the iommufd or
 * < 0 (-ENOENT with a message: the kernel has no iommufd). Since: 0.4 */
int cprkit_iommufd_open(cprkit_ctx *ctx, int id, bool *ret_reclaimed);

/* Allocates an IOAS in the iommufd (IOMMU_IOAS_ALLOC), or reclaims the
 * preserved one with this id (application-chosen, unique per iommufd).
 * The kernel's IOAS id goes to *ret_ioas_id. Returns: 0 or < 0.
 * Since: 0.4 */
int cprkit_iommufd_ioas_alloc(cprkit_ctx *ctx, int iommufd, int id,
                              uint32_t *ret_ioas_id, bool *ret_reclaimed);

/* Opens the VFIO cdev of the PCI device bdf ("0000:00:03.0"; the cdev is
 * found in /sys/bus/pci/devices/<bdf>/vfio-dev/), binds it to the iommufd
 * (VFIO_DEVICE_BIND_IOMMUFD) and attaches it to the IOAS
 * (VFIO_DEVICE_ATTACH_IOMMUFD_PT). Reclaim path: hands back the preserved
 * cdev fd, bound and attached as it was; no ioctl touches the device.
 * The fd is registered as "vfio-device:<bdf>"/0, the name of a group's
 * device fd. Returns: the device fd or < 0 (-ENOENT: bdf has no VFIO cdev;
 * -EINVAL: preserved attached to another IOAS or iommufd, or through a
 * group). Since: 0.4 */
int cprkit_iommufd_device_open(cprkit_ctx *ctx, int iommufd, uint32_t ioas_id,
                               const char *bdf, bool *ret_reclaimed);

/*
 * cprkit_iommufd_map_file:
 * IOMMU_IOAS_MAP_FILE of [offset, offset + length) of fd at iova (fixed),
 * recorded so it can be preserved. prot: CPRKIT_IOMMUFD_READ |
 * CPRKIT_IOMMUFD_WRITE (the kernel's IOMMU_IOAS_MAP_READABLE and
 * IOMMU_IOAS_MAP_WRITEABLE). fd must be a memfd (cprkit_ram_open()) or
 * another shareable file the new binary gets back.
 *
 * Reclaim path: for a preserved mapping (same IOAS, iova, length), checks
 * that fd is the same file at the same offset — the mapping itself never
 * went away and is not touched. Returns: 0 or < 0 (-EXDEV: fd is not the
 * file, or offset not the offset, the preserved mapping was made from;
 * -EINVAL: prot other than the two flags or none, offset, length or iova
 * not page aligned, length 0, or another prot than the preserved
 * mapping's; -EOVERFLOW: iova or offset + length wraps; -ENOENT: an IOAS
 * not from cprkit_iommufd_ioas_alloc()). Since: 0.4 */
int cprkit_iommufd_map_file(cprkit_ctx *ctx, int iommufd, uint32_t ioas_id,
                            int fd, uint64_t offset, uint64_t length,
                            uint64_t iova, uint32_t prot);

/* IOMMU_IOAS_UNMAP of exactly one recorded mapping (same IOAS, iova and
 * length). Returns: 0 or < 0 (-ENOENT: no such mapping; -EBUSY: preserved
 * and not reclaimed yet). Since: 0.4 */
int cprkit_iommufd_unmap(cprkit_ctx *ctx, int iommufd, uint32_t ioas_id,
                         uint64_t iova, uint64_t length);

#ifdef __cplusplus
}
#endif

#endif /* CPRKIT_IOMMUFD_H */
