/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "vfio-util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/capability.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SYSFS_PCI "/sys/bus/pci/devices"

static int read_sysfs_hex(const char *bdf, const char *attr, unsigned *ret)
{
    char path[PATH_MAX];
    unsigned val;
    FILE *f;
    int r;

    snprintf(path, sizeof(path), SYSFS_PCI "/%s/%s", bdf, attr);
    f = fopen(path, "re");
    if (!f)
        return -errno;
    r = fscanf(f, "%x", &val);
    fclose(f);
    if (r != 1)
        return -EIO;
    *ret = val;
    return 0;
}

int pci_find(uint16_t vendor, uint16_t device, char ret_bdf[static 16])
{
    struct dirent *de;
    DIR *d;
    int r = -ENODEV;

    d = opendir(SYSFS_PCI);
    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        unsigned v, dev;

        if (de->d_name[0] == '.' || strlen(de->d_name) >= 16)
            continue;
        if (read_sysfs_hex(de->d_name, "vendor", &v) < 0 ||
            read_sysfs_hex(de->d_name, "device", &dev) < 0)
            continue;
        if (v == vendor && dev == device) {
            snprintf(ret_bdf, 16, "%s", de->d_name);
            r = 0;
            break;
        }
    }
    closedir(d);
    return r;
}

int pci_iommu_group(const char *bdf)
{
    char path[PATH_MAX], target[PATH_MAX];
    const char *base;
    ssize_t n;
    char *end;
    long id;

    snprintf(path, sizeof(path), SYSFS_PCI "/%s/iommu_group", bdf);
    n = readlink(path, target, sizeof(target) - 1);
    if (n < 0)
        return -errno;
    target[n] = '\0';
    base = strrchr(target, '/');
    base = base ? base + 1 : target;
    errno = 0;
    id = strtol(base, &end, 10);
    if (errno || *end || id < 0 || id > INT_MAX)
        return -EINVAL;
    return (int)id;
}

int vfio_container_open(void)
{
    int fd;

    fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ioctl(fd, VFIO_GET_API_VERSION) != VFIO_API_VERSION) {
        close(fd);
        return -EPROTO;
    }
    return fd;
}

int vfio_check_extension(int container, unsigned long ext)
{
    int r;

    r = ioctl(container, VFIO_CHECK_EXTENSION, ext);
    if (r < 0)
        return -errno;
    return r > 0;
}

int vfio_group_open(int group_id)
{
    struct vfio_group_status status = { .argsz = sizeof(status) };
    char path[64];
    int fd;

    snprintf(path, sizeof(path), "/dev/vfio/%d", group_id);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ioctl(fd, VFIO_GROUP_GET_STATUS, &status) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    /* Not viable: another device of the group is bound to a host driver. */
    if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
        close(fd);
        return -EBUSY;
    }
    return fd;
}

int vfio_pci_device_fd(int group, const char *bdf)
{
    int fd;

    /* The kernel returns it with O_CLOEXEC set (anon inode, flags fixed). */
    fd = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);
    if (fd < 0)
        return -errno;
    return fd;
}

int vfio_pci_open(uint16_t vendor, uint16_t device, struct vfio_pci *ret)
{
    struct vfio_pci p = { .container = -1, .group = -1, .device = -1 };
    int r;

    r = pci_find(vendor, device, p.bdf);
    if (r < 0)
        return r;
    r = pci_iommu_group(p.bdf);
    if (r < 0)
        return r;
    p.group_id = r;

    r = vfio_container_open();
    if (r < 0)
        goto fail;
    p.container = r;
    r = vfio_group_open(p.group_id);
    if (r < 0)
        goto fail;
    p.group = r;
    if (ioctl(p.group, VFIO_GROUP_SET_CONTAINER, &p.container) < 0) {
        r = -errno;
        goto fail;
    }
    /* The IOMMU type can only be set once a group is attached. */
    if (ioctl(p.container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0) {
        r = -errno;
        goto fail;
    }
    r = vfio_pci_device_fd(p.group, p.bdf);
    if (r < 0)
        goto fail;
    p.device = r;

    *ret = p;
    return 0;
fail:
    vfio_pci_close(&p);
    return r;
}

void vfio_pci_close(struct vfio_pci *p)
{
    if (p->device >= 0)
        close(p->device);
    if (p->group >= 0)
        close(p->group);
    if (p->container >= 0)
        close(p->container);
    p->device = p->group = p->container = -1;
}

int vfio_region_info(int device, uint32_t index, struct vfio_region_info *ret)
{
    struct vfio_region_info info = { .argsz = sizeof(info), .index = index };

    if (ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &info) < 0)
        return -errno;
    *ret = info;
    return 0;
}

int vfio_irq_info(int device, uint32_t index, struct vfio_irq_info *ret)
{
    struct vfio_irq_info info = { .argsz = sizeof(info), .index = index };

    if (ioctl(device, VFIO_DEVICE_GET_IRQ_INFO, &info) < 0)
        return -errno;
    *ret = info;
    return 0;
}

int vfio_device_info(int device, struct vfio_device_info *ret)
{
    struct vfio_device_info info = { .argsz = sizeof(info) };

    if (ioctl(device, VFIO_DEVICE_GET_INFO, &info) < 0)
        return -errno;
    *ret = info;
    return 0;
}

static int config_offset(int device, uint64_t *ret)
{
    struct vfio_region_info info = { 0 };
    int r;

    r = vfio_region_info(device, VFIO_PCI_CONFIG_REGION_INDEX, &info);
    if (r < 0)
        return r;
    *ret = info.offset;
    return 0;
}

int pci_config_read(int device, uint32_t off, void *buf, size_t len)
{
    uint64_t base;
    ssize_t n;
    int r;

    r = config_offset(device, &base);
    if (r < 0)
        return r;
    n = pread(device, buf, len, (off_t)(base + off));
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

int pci_config_write(int device, uint32_t off, const void *buf, size_t len)
{
    uint64_t base;
    ssize_t n;
    int r;

    r = config_offset(device, &base);
    if (r < 0)
        return r;
    n = pwrite(device, buf, len, (off_t)(base + off));
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

int pci_cap_offset(int device, uint8_t id)
{
    uint8_t pos = 0, hdr[2];
    int r;

    r = pci_config_read(device, 0x34 /* PCI_CAPABILITY_LIST */, &pos, 1);
    /* 48 entries at most: a looping list ends too. */
    for (int n = 0; r == 0 && pos && n < 48; n++) {
        r = pci_config_read(device, pos & ~3u, hdr, sizeof(hdr));
        if (r == 0 && hdr[0] == id)
            return pos & ~3u;
        pos = hdr[1];
    }
    return r < 0 ? r : 0;
}

int pci_enable_bus_master(int device)
{
    uint16_t cmd;
    int r;

    r = pci_config_read(device, 0x04, &cmd, sizeof(cmd));
    if (r < 0)
        return r;
    cmd |= 0x6; /* PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER */
    return pci_config_write(device, 0x04, &cmd, sizeof(cmd));
}

int vfio_bar_open(int device, uint32_t index, struct vfio_bar *ret)
{
    struct vfio_region_info info = { 0 };
    struct vfio_bar bar = { .device = device };
    void *map;
    int r;

    r = vfio_region_info(device, index, &info);
    if (r < 0)
        return r;
    if (!info.size)
        return -ENOENT;
    bar.offset = info.offset;
    bar.size = info.size;
    /*
     * A BAR that holds the MSI-X table may only be partly mappable; then
     * fall back to pread/pwrite on the device fd, which always works.
     */
    if (info.flags & VFIO_REGION_INFO_FLAG_MMAP) {
        map = mmap(NULL, info.size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   device, (off_t)info.offset);
        if (map != MAP_FAILED)
            bar.map = map;
    }
    *ret = bar;
    return 0;
}

void vfio_bar_close(struct vfio_bar *bar)
{
    if (bar->map)
        munmap((void *)bar->map, bar->size);
    bar->map = NULL;
}

uint32_t bar_read32(const struct vfio_bar *bar, uint64_t off)
{
    uint32_t val = UINT32_MAX;

    if (bar->map)
        return *(volatile uint32_t *)(bar->map + off);
    /* All-ones is what a failed PCI read looks like too. */
    if (pread(bar->device, &val, 4, (off_t)(bar->offset + off)) != 4)
        return UINT32_MAX;
    return val;
}

void bar_write32(const struct vfio_bar *bar, uint64_t off, uint32_t val)
{
    if (bar->map) {
        *(volatile uint32_t *)(bar->map + off) = val;
        return;
    }
    if (pwrite(bar->device, &val, 4, (off_t)(bar->offset + off)) != 4)
        fprintf(stderr, "BAR write at 0x%" PRIx64 " failed: %m\n", off);
}

/* 64-bit registers as two 32-bit accesses, low half first. */
uint64_t bar_read64(const struct vfio_bar *bar, uint64_t off)
{
    uint64_t lo = bar_read32(bar, off);

    return lo | (uint64_t)bar_read32(bar, off + 4) << 32;
}

void bar_write64(const struct vfio_bar *bar, uint64_t off, uint64_t val)
{
    bar_write32(bar, off, (uint32_t)val);
    bar_write32(bar, off + 4, (uint32_t)(val >> 32));
}

int vfio_irq_set_eventfds(int device, uint32_t index, uint32_t start,
                          uint32_t count, const int *fds)
{
    size_t sz = sizeof(struct vfio_irq_set) + count * sizeof(int32_t);
    struct vfio_irq_set *set;
    int r = 0;

    set = calloc(1, sz);
    if (!set)
        return -ENOMEM;
    set->argsz = (uint32_t)sz;
    set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    set->index = index;
    set->start = start;
    set->count = count;
    memcpy(set->data, fds, count * sizeof(int32_t));
    if (ioctl(device, VFIO_DEVICE_SET_IRQS, set) < 0)
        r = -errno;
    free(set);
    return r;
}

int vfio_irq_disable(int device, uint32_t index)
{
    struct vfio_irq_set set = {
        .argsz = sizeof(set),
        .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
        .index = index,
        .start = 0,
        .count = 0,
    };

    if (ioctl(device, VFIO_DEVICE_SET_IRQS, &set) < 0)
        return -errno;
    return 0;
}

int vfio_intx_set_unmask_eventfd(int device, int fd)
{
    /* struct vfio_irq_set ends in a flexible array: header + one fd. */
    union {
        struct vfio_irq_set set;
        uint8_t bytes[sizeof(struct vfio_irq_set) + sizeof(int32_t)];
    } s = {
        .set = {
            .argsz = sizeof(s),
            .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK,
            .index = VFIO_PCI_INTX_IRQ_INDEX,
            .start = 0,
            .count = 1,
        },
    };
    int32_t fd32 = fd;

    memcpy(s.set.data, &fd32, sizeof(fd32));
    if (ioctl(device, VFIO_DEVICE_SET_IRQS, &s) < 0)
        return -errno;
    return 0;
}

static int dma_map(int container, uint32_t flags, uint64_t iova, void *vaddr,
                   uint64_t size)
{
    struct vfio_iommu_type1_dma_map map = {
        .argsz = sizeof(map),
        .flags = flags,
        .vaddr = (uintptr_t)vaddr,
        .iova = iova,
        .size = size,
    };

    if (ioctl(container, VFIO_IOMMU_MAP_DMA, &map) < 0)
        return -errno;
    return 0;
}

static int dma_unmap(int container, uint32_t flags, uint64_t iova,
                     uint64_t size)
{
    struct vfio_iommu_type1_dma_unmap unmap = {
        .argsz = sizeof(unmap),
        .flags = flags,
        .iova = iova,
        .size = size,
    };

    if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) < 0)
        return -errno;
    /* The kernel reports how much it unmapped; partial is a failure here. */
    return unmap.size == size ? 0 : -ERANGE;
}

int vfio_dma_map(int container, uint64_t iova, void *vaddr, uint64_t size)
{
    return dma_map(container, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                   iova, vaddr, size);
}

int vfio_dma_unmap(int container, uint64_t iova, uint64_t size)
{
    return dma_unmap(container, 0, iova, size);
}

int vfio_dma_unmap_vaddr(int container, uint64_t iova, uint64_t size)
{
    return dma_unmap(container, VFIO_DMA_UNMAP_FLAG_VADDR, iova, size);
}

int vfio_dma_map_vaddr(int container, uint64_t iova, void *vaddr,
                       uint64_t size)
{
    /* READ/WRITE must be 0: protection stays what the first map set. */
    return dma_map(container, VFIO_DMA_MAP_FLAG_VADDR, iova, vaddr, size);
}

int memfd_map(int fd, size_t size, void **ret_addr)
{
    void *p;

    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    *ret_addr = p;
    return 0;
}

int memfd_buffer(const char *name, size_t size, int *ret_fd, void **ret_addr)
{
    void *p = NULL;
    int fd, r;

    fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    r = memfd_map(fd, size, &p);
    if (r < 0) {
        close(fd);
        return r;
    }
    *ret_fd = fd;
    *ret_addr = p;
    return 0;
}

int eventfd_new(void)
{
    int fd;

    fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    return fd;
}

int eventfd_drain(int fd, uint64_t *ret_count)
{
    uint64_t v;

    if (read(fd, &v, sizeof(v)) != sizeof(v)) {
        if (errno == EAGAIN) {
            *ret_count = 0;
            return 0;
        }
        return -errno;
    }
    *ret_count = v;
    return 0;
}

int eventfd_wait(int fd, int timeout_ms, uint64_t *ret_count)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int r;

    do
        r = poll(&pfd, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if (r == 0)
        return -ETIMEDOUT;
    return eventfd_drain(fd, ret_count);
}

int eventfd_count_until(int fd, uint64_t want, int timeout_ms,
                        uint64_t *ret_total)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms, total = 0, n;
    int r;

    while (total < want) {
        uint64_t now = now_ms();

        if (now >= deadline)
            break;
        r = eventfd_wait(fd, (int)(deadline - now), &n);
        if (r == -ETIMEDOUT)
            break;
        if (r < 0)
            return r;
        total += n;
    }
    /* Anything already pending beyond @want counts too. */
    r = eventfd_drain(fd, &n);
    if (r < 0)
        return r;
    *ret_total = total + n;
    return 0;
}

int cloexec_set(int fd, bool cloexec)
{
    int flags;

    flags = fcntl(fd, F_GETFD);
    if (flags < 0)
        return -errno;
    flags = cloexec ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
    if (fcntl(fd, F_SETFD, flags) < 0)
        return -errno;
    return 0;
}

int cloexec_get(int fd)
{
    int flags;

    flags = fcntl(fd, F_GETFD);
    if (flags < 0)
        return -errno;
    return !!(flags & FD_CLOEXEC);
}

int arg_get_int(int argc, char **argv, const char *name, long *ret)
{
    size_t len = strlen(name);

    for (int i = 1; i < argc; i++) {
        char *end;
        long v;

        if (strncmp(argv[i], name, len) || argv[i][len] != '=')
            continue;
        errno = 0;
        v = strtol(argv[i] + len + 1, &end, 0);
        if (errno || *end || end == argv[i] + len + 1)
            return -EINVAL;
        *ret = v;
        return 0;
    }
    return -ENOENT;
}

uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int cap_ipc_lock_drop(bool across_exec)
{
    struct __user_cap_header_struct hdr = {
        .version = _LINUX_CAPABILITY_VERSION_3,
    };
    struct __user_cap_data_struct data[2];

    /* root gets its bounding set back at every exec: drop it there too. */
    if (across_exec && prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0) < 0)
        return -errno;
    if (syscall(SYS_capget, &hdr, data) < 0)
        return -errno;
    data[CAP_IPC_LOCK / 32].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
    data[CAP_IPC_LOCK / 32].permitted &= ~CAP_TO_MASK(CAP_IPC_LOCK);
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -errno;
    return 0;
}

void bytes_fill(uint8_t *p, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed ^ (i * 13));
}

bool bytes_check(const uint8_t *p, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(seed ^ (i * 13)))
            return false;
    return true;
}

long proc_status_kb(const char *field)
{
    size_t len = strlen(field);
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "re");

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, field, len) && line[len] == ':' &&
            sscanf(line + len + 1, " %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}
