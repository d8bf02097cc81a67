/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Small helpers for guest tests that drive PCI devices through the kernel's
 * VFIO type1 interface. Functions return >= 0 on success and a negative errno
 * on failure; out-parameters (ret_*) are written only on success. Every fd
 * they open is O_CLOEXEC: a test that wants an fd to survive execve() clears
 * the flag itself, right before the exec, as cprkit does.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/vfio.h>

/* PCI IDs of the devices the VM provides (see tests/vm/run-vm). */
#define EDU_VENDOR 0x1234
#define EDU_DEVICE 0x11e8
#define NVME_VENDOR 0x1b36
#define NVME_DEVICE 0x0010
#define E1000E_VENDOR 0x8086
#define E1000E_DEVICE 0x10d3

/*
 * How long to wait for something that must happen (an interrupt, a DMA).
 * Generous: a TCG guest on a loaded 2-core host is slow, and waiting only
 * costs time when the test is failing anyway. Checks that something does
 * NOT happen use short windows instead.
 */
#define EVENT_TIMEOUT_MS 10000

/* Serial number the runner gives the NVMe device (-device nvme,serial=). */
#define NVME_SERIAL "cprkit-nvme"

struct vfio_pci {
    char bdf[16];    /* e.g. "0000:00:03.0" */
    int group_id;    /* /dev/vfio/<group_id> */
    int container;   /* /dev/vfio/vfio, type1v2 IOMMU set */
    int group;
    int device;
};

/* A BAR: mmap'ed when the region allows it, else accessed with pread/pwrite. */
struct vfio_bar {
    int device;
    uint64_t offset; /* region offset within the device fd */
    uint64_t size;
    volatile uint8_t *map;
};

/* Find a PCI device by ID in sysfs; writes its BDF (16 bytes). */
int pci_find(uint16_t vendor, uint16_t device, char ret_bdf[static 16]);

/* IOMMU group number of @bdf (from the iommu_group symlink). */
int pci_iommu_group(const char *bdf);

/* Open /dev/vfio/vfio and check the API version. */
int vfio_container_open(void);

/* VFIO_CHECK_EXTENSION: 1 if supported, 0 if not, < 0 on error. */
int vfio_check_extension(int container, unsigned long ext);

/* Open /dev/vfio/<id> and check the group is viable. */
int vfio_group_open(int group_id);

/*
 * Whole sequence for one device: find it, open a fresh container and its
 * group, attach, set the type1v2 IOMMU, get the device fd.
 */
int vfio_pci_open(uint16_t vendor, uint16_t device, struct vfio_pci *ret);

/* Get the device fd again from the group (vfio-pci resets on first open). */
int vfio_pci_device_fd(int group, const char *bdf);

/* Close device, group and container fds (those >= 0). */
void vfio_pci_close(struct vfio_pci *p);

/* Region and IRQ information. */
int vfio_region_info(int device, uint32_t index, struct vfio_region_info *ret);
int vfio_irq_info(int device, uint32_t index, struct vfio_irq_info *ret);
int vfio_device_info(int device, struct vfio_device_info *ret);

/* PCI config space through the config region. */
int pci_config_read(int device, uint32_t off, void *buf, size_t len);
int pci_config_write(int device, uint32_t off, const void *buf, size_t len);
/* Offset of capability @id in the config space's list, 0 if absent. */
int pci_cap_offset(int device, uint8_t id);

/* Set Memory Space and Bus Master Enable: devices cannot DMA without BME. */
int pci_enable_bus_master(int device);

/* Map region @index (a BAR) of the device. */
int vfio_bar_open(int device, uint32_t index, struct vfio_bar *ret);
void vfio_bar_close(struct vfio_bar *bar);
uint32_t bar_read32(const struct vfio_bar *bar, uint64_t off);
void bar_write32(const struct vfio_bar *bar, uint64_t off, uint32_t val);
uint64_t bar_read64(const struct vfio_bar *bar, uint64_t off);
void bar_write64(const struct vfio_bar *bar, uint64_t off, uint64_t val);

/*
 * Interrupts. vfio_irq_set_eventfds() attaches @count eventfds (fds[i] < 0
 * leaves that vector without one) as triggers of @index starting at @start;
 * vfio_irq_disable() tears the whole index down.
 */
int vfio_irq_set_eventfds(int device, uint32_t index, uint32_t start,
                          uint32_t count, const int *fds);
int vfio_irq_disable(int device, uint32_t index);
/* INTx: an eventfd whose write unmasks the (automasked) line. */
int vfio_intx_set_unmask_eventfd(int device, int fd);

/* DMA mappings in the type1 container. */
int vfio_dma_map(int container, uint64_t iova, void *vaddr, uint64_t size);
int vfio_dma_unmap(int container, uint64_t iova, uint64_t size);
/* Invalidate the vaddr of a mapping: the IOMMU keeps translating. */
int vfio_dma_unmap_vaddr(int container, uint64_t iova, uint64_t size);
/* Give a suspended mapping its new vaddr (same iova and size). */
int vfio_dma_map_vaddr(int container, uint64_t iova, void *vaddr,
                       uint64_t size);

/* A shared memfd mapping: what cprkit requires as DMA backing. */
int memfd_buffer(const char *name, size_t size, int *ret_fd, void **ret_addr);
/* Map an existing memfd (e.g. one inherited over exec) shared. */
int memfd_map(int fd, size_t size, void **ret_addr);

int eventfd_new(void);
/*
 * Wait up to @timeout_ms for @fd to become readable and read its counter
 * (which resets it). -ETIMEDOUT if nothing arrived.
 */
int eventfd_wait(int fd, int timeout_ms, uint64_t *ret_count);
/* Read the counter without waiting: 0 in *ret_count if it was zero. */
int eventfd_drain(int fd, uint64_t *ret_count);
/*
 * Sum the counter over reads until it reaches @want or @timeout_ms passes;
 * the sum (which may fall short, or exceed @want) goes to *ret_total.
 */
int eventfd_count_until(int fd, uint64_t want, int timeout_ms,
                        uint64_t *ret_total);

/* Set or clear FD_CLOEXEC. */
/* Drops CAP_IPC_LOCK from the effective and permitted sets, and with
 * across_exec from the bounding set too, so that the images this process
 * execs run without it (pinned memory is then accounted to the user and
 * checked against RLIMIT_MEMLOCK, by type1 and iommufd alike). */
int cap_ipc_lock_drop(bool across_exec);

/* A "<field>: N kB" line of /proc/self/status (VmLck, VmPin, ...), or -1. */
long proc_status_kb(const char *field);

/* A byte pattern per seed, to tell DMA'd data from stale memory. */
void bytes_fill(uint8_t *p, size_t len, uint8_t seed);
bool bytes_check(const uint8_t *p, size_t len, uint8_t seed);

int cloexec_set(int fd, bool cloexec);
/* 1 if FD_CLOEXEC is set, 0 if not, < 0 on error. */
int cloexec_get(int fd);

/* Parse "name=N" from argv (after an exec); -ENOENT if missing. */
int arg_get_int(int argc, char **argv, const char *name, long *ret);

/* Monotonic milliseconds. */
uint64_t now_ms(void);
