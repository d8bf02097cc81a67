/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Which PCI device a VFIO device fd is. Every device fd from
 * VFIO_GROUP_GET_DEVICE_FD is an fd of one anonymous inode
 * (anon_inode:[vfio-device]): fstat cannot tell two apart, so two
 * preserved device fds swapped by number would pass the registry's
 * identity check and hand the application the other device. The device
 * itself can say who it is:
 *   - Linux 6.9+ names it in /proc/self/fdinfo ("vfio-device-syspath:
 *     /sys/devices/pci0000:00/0000:00:03.0"), exactly;
 *   - before that, its config space (vendor, device, subsystem IDs) is
 *     compared with sysfs of the recorded address: it tells different
 *     kinds of devices apart, not two identical ones (docs/limits.md).
 * A device cdev (/dev/vfio/devices/vfioN) has an inode (st_rdev) of its
 * own: the registry's identity check tells cdevs apart already.
 */
#include <inttypes.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>

#include "vfio-internal.h"

/* The device's address from fdinfo (the last component of
 * vfio-device-syspath), or -ENOENT (kernel before 6.9). */
static int fdinfo_bdf(int fd, char *ret, size_t size)
{
    char syspath[512];
    const char *base;
    int r = fd_fdinfo_field(fd, "vfio-device-syspath", syspath,
                            sizeof(syspath));

    if (r < 0)
        return r;
    base = strrchr(syspath, '/');
    base = base ? base + 1 : syspath;
    if (strlen(base) >= size)
        return -ENAMETOOLONG;
    memcpy(ret, base, strlen(base) + 1);
    return 0;
}

/* vendor, device, subsystem vendor, subsystem device (config offsets 0, 2,
 * 0x2c, 0x2e). */
struct pci_ids {
    uint16_t vendor, device, sub_vendor, sub_device;
};

static int config_ids(cprkit_ctx *ctx, int fd, struct pci_ids *ret)
{
    struct vfio_region_info info = {
        .argsz = sizeof(info),
        .index = VFIO_PCI_CONFIG_REGION_INDEX,
    };
    uint16_t head[2], sub[2];
    int r;

    r = vfio_ioctl(ctx, fd, VFIO_DEVICE_GET_REGION_INFO, &info);
    if (r < 0)
        return r;
    if (pread(fd, head, sizeof(head), (off_t)info.offset) != sizeof(head) ||
        pread(fd, sub, sizeof(sub), (off_t)info.offset + 0x2c) != sizeof(sub))
        return -EIO;
    ret->vendor = head[0];
    ret->device = head[1];
    ret->sub_vendor = sub[0];
    ret->sub_device = sub[1];
    return 0;
}

static int sysfs_id(const char *dir, const char *file, uint16_t *ret)
{
    g_autofree char *path = g_build_filename(dir, file, NULL);
    g_autofree char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return -ENOENT;
    *ret = (uint16_t)g_ascii_strtoull(text, NULL, 16);
    return 0;
}

static int sysfs_ids(const char *bdf, struct pci_ids *ret)
{
    g_autofree char *dir = g_build_filename("/sys/bus/pci/devices", bdf, NULL);

    if (sysfs_id(dir, "vendor", &ret->vendor) < 0 ||
        sysfs_id(dir, "device", &ret->device) < 0 ||
        sysfs_id(dir, "subsystem_vendor", &ret->sub_vendor) < 0 ||
        sysfs_id(dir, "subsystem_device", &ret->sub_device) < 0)
        return -ENOENT;
    return 0;
}

int vfio_device_check_identity(cprkit_ctx *ctx, const struct vfio_device_rec *d)
{
    struct pci_ids is, want;
    char actual[64];
    int r;

    if (d->cdev)
        return 0;
    r = fdinfo_bdf(d->fd, actual, sizeof(actual));
    if (r == 0) {
        if (strcmp(actual, d->bdf) != 0)
            return ctx_fail(ctx, -ESTALE,
                            "preserved device fd %d of %s is the VFIO device "
                            "of %s: the fds were swapped or replaced",
                            d->fd, d->bdf, actual);
        return 0;
    }
    /* Before Linux 6.9: compare what the device says with what sysfs says
     * of the recorded address. Either unreadable (not a real VFIO device,
     * as in the unit tests' fakes, or no sysfs): nothing to compare. */
    if (config_ids(ctx, d->fd, &is) < 0 || sysfs_ids(d->bdf, &want) < 0) {
        ctx_log(ctx, LOG_DEBUG,
                "device fd %d of %s: cannot read its IDs, not compared",
                d->fd, d->bdf);
        return 0;
    }
    if (memcmp(&is, &want, sizeof(is)) != 0)
        return ctx_fail(ctx, -ESTALE,
                        "preserved device fd %d of %s answers as PCI "
                        "%04x:%04x (subsystem %04x:%04x), but %s is "
                        "%04x:%04x (subsystem %04x:%04x): the fds were "
                        "swapped or replaced",
                        d->fd, d->bdf, is.vendor, is.device, is.sub_vendor,
                        is.sub_device, d->bdf, want.vendor, want.device,
                        want.sub_vendor, want.sub_device);
    return 0;
}

/* Bus Master Enable of the device's command register, read through the
 * config region: 1 set, 0 clear, < 0 unreadable. */
int vfio_device_bus_master(cprkit_ctx *ctx, int fd)
{
    struct vfio_region_info info = {
        .argsz = sizeof(info),
        .index = VFIO_PCI_CONFIG_REGION_INDEX,
    };
    uint16_t command;
    int r;

    r = vfio_ioctl(ctx, fd, VFIO_DEVICE_GET_REGION_INFO, &info);
    if (r < 0)
        return r;
    if (pread(fd, &command, sizeof(command), (off_t)info.offset + 0x04) !=
        sizeof(command))
        return -EIO;
    return (command & 0x04) ? 1 : 0; /* PCI_COMMAND_MASTER */
}

/* A device that did DMA when the blob was written and cannot now has been
 * reset (FLR, a bus reset, the sysfs reset file) or had bus mastering
 * turned off behind the update's back: whatever its driver set up is gone,
 * and reclaiming it as if nothing happened would hand the application a
 * device that silently does nothing. */
int vfio_device_check_bus_master(cprkit_ctx *ctx,
                                 const struct vfio_device_rec *d)
{
    int r;

    if (d->bus_master <= 0)
        return 0;
    r = vfio_device_bus_master(ctx, d->fd);
    if (r < 0) {
        ctx_log(ctx, LOG_DEBUG,
                "device fd %d of %s: cannot read its command register, "
                "bus mastering not checked",
                d->fd, d->bdf);
        return 0;
    }
    if (r == 0)
        return ctx_fail(ctx, -ESTALE,
                        "preserved device %s had bus mastering enabled when "
                        "the state was saved and has it disabled now: it "
                        "was reset or disabled during the update",
                        d->bdf);
    return 0;
}
