/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Find-or-create hooks for VFIO containers, groups and devices. Fresh:
 * open and configure, then record. Incoming: hand back the preserved fd and
 * skip VFIO_GROUP_SET_CONTAINER, VFIO_SET_IOMMU and VFIO_DEVICE_RESET — the
 * kernel objects never went away, and touching them would disturb a device
 * that is still doing DMA.
 */
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>

#include "vfio-internal.h"

#define CONTAINER_FD_NAME "vfio-container"
#define GROUP_FD_NAME "vfio-group"

struct vfio_container_rec *vfio_container_by_fd(cprkit_ctx *ctx, int fd)
{
    GPtrArray *containers = vfio_of(ctx)->containers;

    for (guint i = 0; i < containers->len; i++) {
        struct vfio_container_rec *c = g_ptr_array_index(containers, i);

        if (c->fd == fd)
            return c;
    }
    return NULL;
}

static struct vfio_container_rec *container_by_id(cprkit_ctx *ctx, int id)
{
    GPtrArray *containers = vfio_of(ctx)->containers;

    for (guint i = 0; i < containers->len; i++) {
        struct vfio_container_rec *c = g_ptr_array_index(containers, i);

        if (c->id == id)
            return c;
    }
    return NULL;
}

/* Lookups for fds the application passes in: -EBADF with a message when
 * the fd did not come from the matching hook. */
int vfio_container_get(cprkit_ctx *ctx, int fd, struct vfio_container_rec **ret)
{
    *ret = vfio_container_by_fd(ctx, fd);
    if (!*ret)
        return ctx_fail(ctx, -EBADF,
                        "fd %d is not a container opened with "
                        "cprkit_vfio_container_open()",
                        fd);
    return 0;
}

int vfio_device_get(cprkit_ctx *ctx, int fd, struct vfio_device_rec **ret)
{
    *ret = vfio_device_by_fd(ctx, fd);
    if (!*ret)
        return ctx_fail(ctx, -EBADF,
                        "fd %d is not a device opened with "
                        "cprkit_vfio_device_open()",
                        fd);
    return 0;
}

struct vfio_device_rec *vfio_device_by_fd(cprkit_ctx *ctx, int fd)
{
    GPtrArray *devices = vfio_of(ctx)->devices;

    for (guint i = 0; i < devices->len; i++) {
        struct vfio_device_rec *d = g_ptr_array_index(devices, i);

        if (d->fd == fd)
            return d;
    }
    return NULL;
}

CPRKIT_EXPORT int cprkit_vfio_container_open(cprkit_ctx *ctx, int id,
                                             bool *ret_reclaimed)
{
    struct vfio_container_rec *c = container_by_id(ctx, id);
    _cleanup_close_ int fd = -EBADF;
    int r;

    if (c && c->preserved) {
        r = cprkit_fd_find(ctx, CONTAINER_FD_NAME, id,
                           CPRKIT_FD_VFIO_CONTAINER);
        if (r < 0)
            return r;
        c->preserved = false;
        c->reclaimed = true;
        if (ret_reclaimed)
            *ret_reclaimed = true;
        ctx_log(ctx, LOG_DEBUG, "reclaimed VFIO container %d (fd %d)", id, c->fd);
        return c->fd;
    }
    if (c)
        return ctx_fail(ctx, -EEXIST, "VFIO container %d is already open (fd %d)",
                        id, c->fd);
    if (ctx->incoming)
        return ctx_fail(ctx, -EBUSY,
                        "VFIO container %d was not preserved; new VFIO "
                        "resources must wait for cprkit_commit()",
                        id);

    fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return ctx_fail(ctx, -errno, "open /dev/vfio/vfio: %m");
    r = vfio_ioctl(ctx, fd, VFIO_GET_API_VERSION, NULL);
    if (r != VFIO_API_VERSION)
        return ctx_fail(ctx, -EPROTONOSUPPORT,
                        "/dev/vfio/vfio speaks VFIO API %d, cprkit needs %d", r,
                        VFIO_API_VERSION);
    r = cprkit_fd_save(ctx, CONTAINER_FD_NAME, id, fd);
    if (r < 0)
        return r;
    c = g_new0(struct vfio_container_rec, 1);
    c->fd = fd;
    c->id = id;
    g_ptr_array_add(vfio_of(ctx)->containers, c);
    ctx_state_changed(ctx);
    if (ret_reclaimed)
        *ret_reclaimed = false;
    return TAKE_FD(fd);
}

/* The group's container gets its IOMMU with the first group: VFIO_SET_IOMMU
 * needs a group attached. */
static int container_set_iommu(cprkit_ctx *ctx, struct vfio_container_rec *c)
{
    int r;

    if (c->iommu_type)
        return 0;
    r = vfio_ioctl(ctx, c->fd, VFIO_CHECK_EXTENSION,
                   (void *)(uintptr_t)VFIO_TYPE1v2_IOMMU);
    if (r != 1)
        return ctx_fail(ctx, -EOPNOTSUPP,
                        "container %d does not support VFIO_TYPE1v2_IOMMU", c->id);
    r = vfio_ioctl(ctx, c->fd, VFIO_SET_IOMMU,
                   (void *)(uintptr_t)VFIO_TYPE1v2_IOMMU);
    if (r < 0)
        return ctx_fail(ctx, r, "VFIO_SET_IOMMU on container %d: %s", c->id,
                        strerror(-r));
    c->iommu_type = VFIO_TYPE1v2_IOMMU;
    return 0;
}

static struct vfio_group_rec *group_by_number(cprkit_ctx *ctx, unsigned number)
{
    GPtrArray *groups = vfio_of(ctx)->groups;

    for (guint i = 0; i < groups->len; i++) {
        struct vfio_group_rec *g = g_ptr_array_index(groups, i);

        if (g->number == number)
            return g;
    }
    return NULL;
}

CPRKIT_EXPORT int cprkit_vfio_group_open(cprkit_ctx *ctx, int container_fd,
                                         unsigned group_number,
                                         bool *ret_reclaimed)
{
    struct vfio_group_rec *g = group_by_number(ctx, group_number);
    struct vfio_group_status status = {.argsz = sizeof(status)};
    struct vfio_container_rec *c;
    _cleanup_close_ int fd = -EBADF;
    char path[64];
    int r;

    r = vfio_container_get(ctx, container_fd, &c);
    if (r < 0)
        return r;
    if (g && g->preserved) {
        if (g->container_fd != container_fd)
            return ctx_fail(ctx, -EINVAL,
                            "VFIO group %u was preserved in another container",
                            group_number);
        r = cprkit_fd_find(ctx, GROUP_FD_NAME, (int)group_number,
                           CPRKIT_FD_VFIO_GROUP);
        if (r < 0)
            return r;
        g->preserved = false;
        g->reclaimed = true;
        if (ret_reclaimed)
            *ret_reclaimed = true;
        return g->fd;
    }
    if (g)
        return ctx_fail(ctx, -EEXIST, "VFIO group %u is already open (fd %d)",
                        group_number, g->fd);
    if (ctx->incoming)
        return ctx_fail(ctx, -EBUSY,
                        "VFIO group %u was not preserved; new VFIO resources "
                        "must wait for cprkit_commit()",
                        group_number);

    snprintf(path, sizeof(path), "/dev/vfio/%u", group_number);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return ctx_fail(ctx, -errno, "open %s: %m", path);
    r = vfio_ioctl(ctx, fd, VFIO_GROUP_GET_STATUS, &status);
    if (r < 0)
        return ctx_fail(ctx, r, "VFIO_GROUP_GET_STATUS on %s: %s", path,
                        strerror(-r));
    if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
        return ctx_fail(ctx, -EPERM,
                        "VFIO group %u is not viable: bind every device in "
                        "/sys/kernel/iommu_groups/%u/devices to vfio-pci",
                        group_number, group_number);
    r = vfio_ioctl(ctx, fd, VFIO_GROUP_SET_CONTAINER, &container_fd);
    if (r < 0)
        return ctx_fail(ctx, r, "VFIO_GROUP_SET_CONTAINER for group %u: %s",
                        group_number, strerror(-r));
    r = container_set_iommu(ctx, c);
    if (r < 0)
        return r;
    r = cprkit_fd_save(ctx, GROUP_FD_NAME, (int)group_number, fd);
    if (r < 0)
        return r;
    g = g_new0(struct vfio_group_rec, 1);
    g->fd = fd;
    g->number = group_number;
    g->container_fd = container_fd;
    g_ptr_array_add(vfio_of(ctx)->groups, g);
    ctx_state_changed(ctx);
    if (ret_reclaimed)
        *ret_reclaimed = false;
    return TAKE_FD(fd);
}

bool vfio_bdf_is_valid(const char *bdf)
{
    unsigned dom, bus, dev, fn;
    char tail;

    return bdf && strlen(bdf) == 12 &&
           sscanf(bdf, "%4x:%2x:%2x.%1x%c", &dom, &bus, &dev, &fn, &tail) == 4;
}

char *vfio_device_fd_name(const char *bdf)
{
    return g_strdup_printf("vfio-device:%s", bdf);
}

CPRKIT_EXPORT int cprkit_vfio_device_open(cprkit_ctx *ctx, int group_fd,
                                          const char *bdf, bool *ret_reclaimed)
{
    g_autofree char *name = NULL;
    const struct fd_entry *group_entry = fdreg_lookup_fd(ctx, group_fd);
    GPtrArray *devices = vfio_of(ctx)->devices;
    struct vfio_device_rec *d;
    int fd, r;

    if (!vfio_bdf_is_valid(bdf))
        return ctx_fail(ctx, -EINVAL,
                        "'%s' is not a PCI address like 0000:00:03.0",
                        bdf ? bdf : "(null)");
    if (!group_entry || group_entry->identity.type != CPRKIT_FD_VFIO_GROUP)
        return ctx_fail(ctx, -EBADF,
                        "fd %d is not a group opened with "
                        "cprkit_vfio_group_open()",
                        group_fd);
    name = vfio_device_fd_name(bdf);
    for (guint i = 0; i < devices->len; i++) {
        d = g_ptr_array_index(devices, i);
        if (strcmp(d->bdf, bdf) != 0)
            continue;
        if (!d->preserved)
            return ctx_fail(ctx, -EEXIST, "device %s is already open (fd %d)",
                            bdf, d->fd);
        if (d->cdev)
            return ctx_fail(ctx, -EINVAL,
                            "device %s was preserved as a cdev bound to an "
                            "iommufd: reclaim it with "
                            "cprkit_iommufd_device_open()",
                            bdf);
        if (d->group_number != (unsigned)group_entry->id)
            return ctx_fail(ctx, -EINVAL,
                            "device %s was preserved in group %u, not %d", bdf,
                            d->group_number, group_entry->id);
        r = cprkit_fd_find(ctx, name, 0, CPRKIT_FD_VFIO_DEVICE);
        if (r < 0)
            return r;
        d->preserved = false;
        d->reclaimed = true;
        if (ret_reclaimed)
            *ret_reclaimed = true;
        ctx_log(ctx, LOG_DEBUG, "reclaimed device %s (fd %d): no reset", bdf,
                d->fd);
        return d->fd;
    }
    if (ctx->incoming)
        return ctx_fail(ctx, -EBUSY,
                        "device %s was not preserved; new VFIO resources must "
                        "wait for cprkit_commit()",
                        bdf);

    /* The kernel returns the device fd with O_CLOEXEC set. */
    fd = vfio_ioctl(ctx, group_fd, VFIO_GROUP_GET_DEVICE_FD, (void *)bdf);
    if (fd < 0)
        return ctx_fail(ctx, fd, "VFIO_GROUP_GET_DEVICE_FD %s: %s", bdf,
                        strerror(-fd));
    r = cprkit_fd_save(ctx, name, 0, fd);
    if (r < 0) {
        close(fd);
        return r;
    }
    d = g_new0(struct vfio_device_rec, 1);
    d->bus_master = -1;
    d->fd = fd;
    d->bdf = g_strdup(bdf);
    d->group_number = (unsigned)group_entry->id;
    g_ptr_array_add(devices, d);
    ctx_state_changed(ctx);
    if (ret_reclaimed)
        *ret_reclaimed = false;
    return fd;
}

struct vfio_device_rec *vfio_device_by_bdf(cprkit_ctx *ctx, const char *bdf)
{
    GPtrArray *devices = vfio_of(ctx)->devices;

    for (guint i = 0; i < devices->len; i++) {
        struct vfio_device_rec *d = g_ptr_array_index(devices, i);

        if (strcmp(d->bdf, bdf) == 0)
            return d;
    }
    return NULL;
}

/* Records a device cdev the iommufd participant opened and bound: saved
 * under the same name as a group's device fd, so tools and the shim see
 * one kind of device. On failure the caller still owns fd. */
int vfio_cdev_device_add(cprkit_ctx *ctx, int fd, const char *bdf)
{
    g_autofree char *name = vfio_device_fd_name(bdf);
    struct vfio_device_rec *d = vfio_device_by_bdf(ctx, bdf);
    int r;

    if (d)
        return ctx_fail(ctx, -EEXIST, "device %s is already open (fd %d)",
                        bdf, d->fd);
    r = cprkit_fd_save(ctx, name, 0, fd);
    if (r < 0)
        return r;
    d = g_new0(struct vfio_device_rec, 1);
    d->bus_master = -1;
    d->fd = fd;
    d->bdf = g_strdup(bdf);
    d->cdev = true;
    g_ptr_array_add(vfio_of(ctx)->devices, d);
    ctx_state_changed(ctx);
    return 0;
}

/* The preserved cdev of bdf, claimed: its fd, or -ENOENT when bdf was not
 * preserved as a cdev (-EEXIST: already reclaimed or opened). */
int vfio_cdev_device_reclaim(cprkit_ctx *ctx, const char *bdf)
{
    g_autofree char *name = vfio_device_fd_name(bdf);
    struct vfio_device_rec *d = vfio_device_by_bdf(ctx, bdf);
    int r;

    if (!d)
        return ctx_fail(ctx, -ENOENT, "device %s was not preserved", bdf);
    if (!d->preserved)
        return ctx_fail(ctx, -EEXIST, "device %s is already open (fd %d)",
                        bdf, d->fd);
    if (!d->cdev)
        return ctx_fail(ctx, -EINVAL,
                        "device %s was preserved through VFIO group %u, not "
                        "as a cdev: reclaim it with cprkit_vfio_device_open()",
                        bdf, d->group_number);
    r = cprkit_fd_find(ctx, name, 0, CPRKIT_FD_VFIO_DEVICE);
    if (r < 0)
        return r;
    d->preserved = false;
    d->reclaimed = true;
    return d->fd;
}

CPRKIT_EXPORT int cprkit_vfio_device_reset(cprkit_ctx *ctx, int device_fd)
{
    struct vfio_device_rec *d;
    int r;

    r = vfio_device_get(ctx, device_fd, &d);
    if (r < 0)
        return r;
    /* Until commit the device is the one the previous binary left running;
     * after commit an explicit reset is the application's intent. */
    if (d->reclaimed && ctx->incoming) {
        ctx_log(ctx, LOG_INFO,
                "not resetting %s: it was preserved across the update", d->bdf);
        return 0;
    }
    r = vfio_ioctl(ctx, device_fd, VFIO_DEVICE_RESET, NULL);
    if (r < 0)
        return ctx_fail(ctx, r, "VFIO_DEVICE_RESET %s: %s", d->bdf, strerror(-r));
    return 0;
}
