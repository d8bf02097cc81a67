/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What cprkit knows about the application's VFIO state: one record per
 * container, group, device, DMA mapping, IRQ index and RAM memfd. The
 * find-or-create hooks fill them (preserve/), the exec path writes them
 * into the blob and suspends the DMA vaddrs, and the incoming side loads
 * them back and reclaims them (restore/).
 *
 * Every fd a record mentions is also in the named fd registry, which does
 * the CLOEXEC discipline and the identity checks; records refer to fds by
 * number in memory and by (name, id) in the blob.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

struct vfio_container_rec {
    int fd;
    int id;
    uint32_t iommu_type;   /* 0 until VFIO_SET_IOMMU */
    bool has_unmap_all;    /* probed by the blockers of every update */
    bool preserved; /* incoming: from the blob, not yet reclaimed */
    bool reclaimed; /* handed back from the previous binary */
};

struct vfio_group_rec {
    int fd;
    unsigned number;
    int container_fd;
    bool preserved;
    bool reclaimed;
};

struct vfio_device_rec {
    int fd;
    char *bdf;
    unsigned group_number; /* unused for a cdev */
    /* A VFIO device cdev (/dev/vfio/devices/vfioN) bound to an iommufd,
     * opened by the iommufd participant (preserve/iommufd.c), not through
     * a group. */
    bool cdev;
    /* Bus Master Enable in the command register when the blob was written:
     * 1 set, 0 clear, -1 unknown (a blob before 0.5, or unreadable). */
    int bus_master;
    bool preserved;
    bool reclaimed;
};

struct dma_mapping_rec {
    int container_fd;
    uint64_t iova;
    uint64_t size;
    uint32_t prot;
    void *vaddr; /* NULL while preserved and not yet remapped */
    /* What backs [vaddr, vaddr + size): the file's identity and the file
     * offset of vaddr, and whether it is a shared mapping. */
    uint64_t backing_dev;
    uint64_t backing_ino;
    uint64_t backing_offset;
    bool backing_shared;
    bool suspended; /* vaddr invalid in the kernel (UNMAP_FLAG_VADDR) */
    bool preserved; /* incoming: from the blob, not yet remapped */
};

struct irq_index_rec {
    int device_fd;
    unsigned index; /* VFIO_PCI_*_IRQ_INDEX, INTx to REQ */
    /* Vectors the kernel has enabled for the index: the highest vector
     * given an eventfd, plus one (MSI/MSI-X are enabled as a block). */
    unsigned count;
    int *eventfds;  /* count trigger eventfds; -1: vector without one */
    int unmask_fd;  /* INTx only, else -1 */
    /* INTx only: the application masked the line (VFIO_IRQ_SET_ACTION_MASK
     * through cprkit_vfio_intx_mask()); the kernel's own masking of a line
     * that fired is not visible to userspace and is not this. */
    bool app_masked;
    bool preserved; /* incoming: from the blob, not every vector claimed */
    bool reclaimed;
};

struct ram_block_rec {
    char *name;
    int fd;
    uint64_t size;
    bool preserved;
    bool reclaimed;
};

struct vma_table;

/* The VFIO participant's private state in a context (vfio_of()). */
struct vfio_state {
    GPtrArray *containers; /* struct vfio_container_rec * */
    GPtrArray *groups;     /* struct vfio_group_rec * */
    GPtrArray *devices;    /* struct vfio_device_rec * */
    GPtrArray *mappings;   /* struct dma_mapping_rec * */
    GPtrArray *irqs;       /* struct irq_index_rec * */
    GPtrArray *ram_blocks; /* struct ram_block_rec * */

    /* Every VFIO ioctl goes through here; unit tests plug in a fake. Not
     * touched by vfio_state_init/clear: it outlives a failed load. */
    int (*ioctl_fn)(int fd, unsigned long request, void *arg);
    /* The address-space table the remaps of the incoming phase share
     * (preserve/vaddr-remap.c); NULL outside of it. */
    struct vma_table *vma_cache;
};
