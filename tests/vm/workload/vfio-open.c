/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Opening VFIO the way a real user does, through cprkit's find-or-create
 * hooks: on a fresh start they open and configure, after an update they
 * hand back what the previous image left running.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "workload.h"

/* iommufd: one iommufd per "container", with one IOAS in it. */
static int open_iommufd(struct workload *w, unsigned i)
{
    bool reclaimed = false, ioas_reclaimed = false;
    int fd, r;

    fd = cprkit_iommufd_open(w->ctx, (int)i, &reclaimed);
    if (fd < 0)
        return fd;
    r = cprkit_iommufd_ioas_alloc(w->ctx, fd, 0, &w->ioas[i], &ioas_reclaimed);
    if (r < 0)
        return r;
    if (reclaimed != w->incoming || ioas_reclaimed != w->incoming)
        return -ESTALE;
    w->containers[i] = fd;
    return 0;
}

int wl_open_containers(struct workload *w)
{
    for (unsigned i = 0; i < w->ncontainers; i++) {
        bool reclaimed = false;
        int fd;

        if (w->backend == WL_IOMMUFD) {
            fd = open_iommufd(w, i);
            if (fd < 0)
                return fd;
            continue;
        }
        fd = cprkit_vfio_container_open(w->ctx, (int)i, &reclaimed);
        if (fd < 0)
            return fd;
        if (reclaimed != w->incoming)
            return -ESTALE;
        w->containers[i] = fd;
    }
    return 0;
}

bool wl_forgets_device(const struct workload *w, const struct engine *e)
{
    return w->acting_fault == FAULT_UNCLAIMED_DEVICE &&
           e->index == (int)w->nengines - 1;
}

int wl_open_device(struct workload *w, struct engine *e)
{
    bool group_reclaimed = false, dev_reclaimed = false;
    int r;

    r = pci_find(e->vendor, e->device_id, e->bdf);
    if (r < 0)
        return r;
    r = pci_iommu_group(e->bdf);
    if (r < 0)
        return r;
    e->group_nr = r;
    e->container = w->containers[e->container_index];
    if (w->backend == WL_IOMMUFD) {
        group_reclaimed = w->incoming; /* no group: the device's cdev */
        e->group = -1;
        goto device;
    }
    r = cprkit_vfio_group_open(w->ctx, e->container, (unsigned)e->group_nr,
                               &group_reclaimed);
    if (r < 0)
        return r;
    e->group = r;
device:
    /* The faulty new binary of FAULT_UNCLAIMED_DEVICE forgets the last
     * device (and so its interrupts); memory and mappings it reclaims. */
    if (wl_forgets_device(w, e)) {
        e->device = -1;
        e->reclaimed = w->incoming;
        return 0;
    }
    if (w->backend == WL_IOMMUFD)
        r = cprkit_iommufd_device_open(w->ctx, e->container,
                                       w->ioas[e->container_index], e->bdf,
                                       &dev_reclaimed);
    else
        r = cprkit_vfio_device_open(w->ctx, e->group, e->bdf, &dev_reclaimed);
    if (r < 0)
        return r;
    e->device = r;
    e->reclaimed = dev_reclaimed;
    if (group_reclaimed != w->incoming || dev_reclaimed != w->incoming)
        return -ESTALE;
    return vfio_bar_open(e->device, VFIO_PCI_BAR0_REGION_INDEX, &e->bar);
}

int wl_ram(struct workload *w, const char *name, uint64_t size, void **ret)
{
    bool reclaimed = false;
    int fd, r;

    fd = cprkit_ram_open(w->ctx, name, size, &reclaimed);
    if (fd < 0)
        return fd;
    if (reclaimed != w->incoming)
        return -ESTALE;
    /* A new address in every image: cprkit must remap by fd identity. */
    r = memfd_map(fd, size, ret);
    if (r < 0)
        return r;
    if (w->nram == sizeof(w->ram) / sizeof(w->ram[0]))
        return -ENOSPC;
    w->ram[w->nram].addr = *ret;
    w->ram[w->nram].size = size;
    w->ram[w->nram].fd = fd;
    w->nram++;
    return 0;
}

int wl_engine_state(struct workload *w, struct engine *e, size_t size,
                    uint32_t version, void **ret)
{
    char name[40];
    uint32_t got;
    void *mem;
    int r;

    if (size > 4096)
        return -E2BIG;
    snprintf(name, sizeof(name), "%s-state", e->name);
    r = wl_ram(w, name, 4096, &mem);
    if (r < 0)
        return r;
    if (!e->reclaimed) {
        memset(mem, 0, 4096);
        memcpy(mem, &version, sizeof(version));
    } else if (!w->restart) {
        /* An update: the section is the state as of the exec. */
        r = wl_section_load(w, e, mem, size, version);
        if (r < 0)
            return r;
    } else {
        /* A crash: the block holds what the dead image last wrote. */
        memcpy(&got, mem, sizeof(got));
        if (got != version)
            return -EPROTO;
    }
    *ret = mem;
    return 0;
}

int dma_vaddr_valid(int container, uint64_t iova, uint64_t size, void *vaddr)
{
    struct vfio_iommu_type1_dma_map map = {
        .argsz = sizeof(map),
        .flags = VFIO_DMA_MAP_FLAG_VADDR,
        .vaddr = (uintptr_t)vaddr,
        .iova = iova,
        .size = size,
    };

    /*
     * type1 accepts a new vaddr only for a suspended mapping and answers
     * EINVAL for a valid one, so in the good case this changes nothing.
     */
    if (ioctl(container, VFIO_IOMMU_MAP_DMA, &map) == 0)
        return 0;
    return errno == EINVAL ? 1 : -errno;
}

/* iommufd maps by file, not by address: the RAM block behind @vaddr. */
static int iommufd_map_ram(struct workload *w, struct engine *e,
                           uint64_t iova, uint64_t size, void *vaddr)
{
    for (unsigned i = 0; i < w->nram; i++) {
        uint8_t *base = w->ram[i].addr;

        if ((uint8_t *)vaddr < base ||
            (uint8_t *)vaddr + size > base + w->ram[i].size)
            continue;
        return cprkit_iommufd_map_file(
            w->ctx, e->container, w->ioas[e->container_index], w->ram[i].fd,
            (uint64_t)((uint8_t *)vaddr - base), size, iova,
            CPRKIT_IOMMUFD_READ | CPRKIT_IOMMUFD_WRITE);
    }
    return -EFAULT;
}

int wl_dma_map(struct workload *w, struct engine *e, uint64_t iova,
               uint64_t size, void *vaddr)
{
    int r;

    if (e->nmaps == sizeof(e->maps) / sizeof(e->maps[0]))
        return -ENOSPC;
    if (w->backend == WL_IOMMUFD)
        r = iommufd_map_ram(w, e, iova, size, vaddr);
    else
        r = cprkit_vfio_dma_map(w->ctx, e->container, iova, size, vaddr,
                                VFIO_DMA_MAP_FLAG_READ |
                                    VFIO_DMA_MAP_FLAG_WRITE);
    if (r < 0)
        return r;
    e->maps[e->nmaps].iova = iova;
    e->maps[e->nmaps].size = size;
    e->maps[e->nmaps].vaddr = vaddr;
    e->nmaps++;
    return 0;
}

int wl_section_load(struct workload *w, const struct engine *e, void *buf,
                    size_t size, uint32_t version)
{
    const void *data;
    uint32_t got;
    size_t len;
    int r;

    r = cprkit_section_get(w->ctx, e->name, &data, &len);
    if (r < 0)
        return r;
    if (len != size || size < sizeof(got))
        return -EBADMSG;
    /* Every engine state starts with its format version. */
    memcpy(&got, data, sizeof(got));
    if (got != version)
        return -EPROTO;
    memcpy(buf, data, size);
    return 0;
}
