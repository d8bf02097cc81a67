/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The program's VFIO fds (containers, groups, devices) and the calls on
 * them, mapped onto the library's find-or-create hooks: on a normal start
 * they create and record, on the incoming side they reclaim what the
 * previous binary preserved. DMA and interrupts: dma-memfd.c and
 * irq-eventfd.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "preload-internal.h"

static struct preload_container containers[PRELOAD_MAX_FDS];
static struct preload_group groups[PRELOAD_MAX_FDS];
static struct preload_device devices[PRELOAD_MAX_FDS];
static size_t n_containers, n_groups, n_devices;
static int container_opens; /* ids in open order */

struct preload_container *preload_container_by_fd(int fd)
{
    for (size_t i = 0; i < n_containers; i++)
        if (containers[i].fd == fd)
            return &containers[i];
    return NULL;
}

static struct preload_group *group_by_fd(int fd)
{
    for (size_t i = 0; i < n_groups; i++)
        if (groups[i].prog_fd == fd || groups[i].lib_fd == fd)
            return &groups[i];
    return NULL;
}

struct preload_device *preload_device_by_fd(int fd)
{
    for (size_t i = 0; i < n_devices; i++)
        if (devices[i].fd == fd)
            return &devices[i];
    return NULL;
}

static int container_open(int flags)
{
    int id = container_opens;
    bool reclaimed = false;
    int fd;

    /* Checked before the library opens (or reclaims) anything: there
     * would be no slot to remember the fd in. */
    if (n_containers == PRELOAD_MAX_FDS) {
        preload_log(LOG_ERR,
                    "open /dev/vfio/vfio refused: the shim tracks at most "
                    "%d VFIO containers",
                    PRELOAD_MAX_FDS);
        return -EMFILE;
    }
    preload_in_lib++;
    fd = cprkit_vfio_container_open(preload_ctx, id, &reclaimed);
    preload_in_lib--;
    if (fd < 0) {
        if (preload_incoming)
            preload_rollback("open /dev/vfio/vfio (container %d): %s", id,
                             cprkit_last_error(preload_ctx));
        return fd;
    }
    container_opens++;
    if (!(flags & O_CLOEXEC))
        preload_log(LOG_DEBUG,
                    "container fd %d stays O_CLOEXEC (cprkit's rule)", fd);
    containers[n_containers++] = (struct preload_container){fd, id};
    if (preload_incoming && !reclaimed)
        preload_rollback("container %d was not preserved", id);
    preload_claim(&(struct preload_item){.kind = PRELOAD_ITEM_CONTAINER,
                                         .a = (uint64_t)id});
    preload_maybe_commit();
    return fd;
}

/* Incoming: the preserved group fd, found by number, in the container it
 * was preserved in (opening it again would fail with EBUSY). */
static int group_reclaim(int number, const struct preload_item *it)
{
    int cfd = -1, fd;

    for (size_t k = 0; k < n_containers; k++)
        if (containers[k].id == (int)it->b)
            cfd = containers[k].fd;
    if (cfd < 0) {
        preload_rollback("/dev/vfio/%d opened before its container %" PRIu64
                         " (the shim needs the program to open /dev/vfio/vfio "
                         "first)",
                         number, it->b);
        return -EINVAL;
    }
    preload_in_lib++;
    fd = cprkit_vfio_group_open(preload_ctx, cfd, (unsigned)number, NULL);
    preload_in_lib--;
    if (fd < 0) {
        preload_rollback("reclaim VFIO group %d: %s", number,
                         cprkit_last_error(preload_ctx));
        return fd;
    }
    groups[n_groups++] =
        (struct preload_group){fd, fd, number, (int)it->b, false};
    preload_claim(it);
    preload_maybe_commit();
    return fd;
}

/* Called with the lock held. Returns the fd for the program or < 0. */
int preload_vfio_open(const char *path, int flags, int (*opener)(void *),
                      void *opener_data)
{
    bool is_container;
    int number = preload_vfio_path(path, &is_container);
    const struct preload_item *preserved;
    int r;

    if (is_container)
        return container_open(flags);
    if (number < 0)
        return opener(opener_data);
    if (n_groups == PRELOAD_MAX_FDS) {
        preload_log(LOG_ERR,
                    "open %s refused: the shim tracks at most %d VFIO groups",
                    path, PRELOAD_MAX_FDS);
        return -EMFILE;
    }
    preserved = preload_incoming_find_group(number);
    if (preserved)
        return group_reclaim(number, preserved);
    if (preload_incoming) {
        preload_rollback("the new binary opens VFIO group %d, which was not "
                         "preserved",
                         number);
        return -EBUSY;
    }
    r = opener(opener_data);
    if (r < 0)
        return r;
    /* Opened for real: the library reopens it at VFIO_GROUP_SET_CONTAINER. */
    groups[n_groups++] = (struct preload_group){r, -1, number, -1, false};
    return r;
}

static int group_set_container(struct preload_group *g, int container_fd)
{
    struct preload_container *c = preload_container_by_fd(container_fd);
    int fd, r;

    if (!c)
        return -EINVAL;
    if (g->lib_fd >= 0) {
        /* Incoming: attached since the previous binary. */
        if (g->container_id != c->id) {
            preload_rollback("VFIO group %d is attached to container %d in "
                             "the new binary, %d before",
                             g->number, c->id, g->container_id);
            return -EINVAL;
        }
        g->attached_here = true;
        return 0;
    }
    /* A group opens once: close the program's fd, let the library open
     * and attach it, and put it back under the program's number. */
    preload_real_close(g->prog_fd);
    preload_in_lib++;
    fd = cprkit_vfio_group_open(preload_ctx, container_fd, (unsigned)g->number,
                                NULL);
    preload_in_lib--;
    if (fd < 0) {
        preload_log(LOG_ERR, "VFIO group %d: %s", g->number,
                    cprkit_last_error(preload_ctx));
        return fd;
    }
    /* The library's open usually gets the number just closed. */
    if (fd != g->prog_fd) {
        if (dup3(fd, g->prog_fd, O_CLOEXEC) < 0) {
            r = -errno;
            preload_log(LOG_ERR, "VFIO group %d: dup3: %s", g->number,
                        strerror(-r));
            return r;
        }
        preload_private_add(fd);
    }
    g->lib_fd = fd;
    g->container_id = c->id;
    g->attached_here = true;
    preload_record_add(&(struct preload_item){.kind = PRELOAD_ITEM_GROUP,
                                              .a = (uint64_t)g->number,
                                              .b = (uint64_t)c->id});
    return 0;
}

static int group_get_device(struct preload_group *g, const char *bdf)
{
    struct preload_item it = {.kind = PRELOAD_ITEM_DEVICE};
    bool reclaimed = false;
    int fd;

    if (g->lib_fd < 0)
        return -EINVAL; /* the kernel says the same without a container */
    if (n_devices == PRELOAD_MAX_FDS || strlen(bdf) >= sizeof(devices[0].bdf))
        return -EINVAL;
    preload_in_lib++;
    fd = cprkit_vfio_device_open(preload_ctx, g->lib_fd, bdf, &reclaimed);
    preload_in_lib--;
    if (fd < 0) {
        if (preload_incoming)
            preload_rollback("device %s: %s", bdf,
                             cprkit_last_error(preload_ctx));
        else
            preload_log(LOG_ERR, "device %s: %s", bdf,
                        cprkit_last_error(preload_ctx));
        return fd;
    }
    devices[n_devices].fd = fd;
    snprintf(devices[n_devices].bdf, sizeof(devices[0].bdf), "%s", bdf);
    n_devices++;
    snprintf(it.bdf, sizeof(it.bdf), "%s", bdf);
    preload_claim(&it);
    preload_maybe_commit();
    return fd;
}

static int container_ioctl(struct preload_container *c, unsigned long req,
                           void *arg)
{
    switch (req) {
    case VFIO_SET_IOMMU:
        /* The library set VFIO_TYPE1v2_IOMMU with the first group. */
        if ((uintptr_t)arg == VFIO_TYPE1v2_IOMMU ||
            (uintptr_t)arg == VFIO_TYPE1_IOMMU)
            return 0;
        preload_log(LOG_ERR,
                    "VFIO_SET_IOMMU type %lu: only type1 IOMMUs are "
                    "supported under the shim",
                    (unsigned long)(uintptr_t)arg);
        return -EINVAL;
    case VFIO_IOMMU_MAP_DMA:
        return preload_map_dma(c, arg);
    case VFIO_IOMMU_UNMAP_DMA:
        return preload_unmap_dma(c, arg);
    }
    return 1;
}

/* A group reclaimed on the incoming side is attached to its container
 * already; the kernel says so (VFIO_GROUP_FLAGS_CONTAINER_SET), and a
 * standard VFIO program (DPDK, SPDK, QEMU) then skips attaching it,
 * setting the IOMMU and mapping its DMA memory: the shim would wait for
 * resources that never come. Until the program attaches it in this binary,
 * the group is shown as the program left it before exec'ing: viable, not
 * attached, so it sets itself up the normal way and each step reclaims. */
static int group_get_status(struct preload_group *g,
                            struct vfio_group_status *status)
{
    if (preload_real_ioctl(g->lib_fd >= 0 ? g->lib_fd : g->prog_fd,
                           VFIO_GROUP_GET_STATUS, status) < 0)
        return -errno;
    if (g->lib_fd >= 0 && !g->attached_here)
        status->flags &= ~(uint32_t)VFIO_GROUP_FLAGS_CONTAINER_SET;
    return 0;
}

static int group_ioctl(struct preload_group *g, unsigned long req, void *arg)
{
    switch (req) {
    case VFIO_GROUP_GET_STATUS:
        return group_get_status(g, arg);
    case VFIO_GROUP_SET_CONTAINER:
        return group_set_container(g, *(const int *)arg);
    case VFIO_GROUP_GET_DEVICE_FD:
        return group_get_device(g, arg);
    case VFIO_GROUP_UNSET_CONTAINER:
        preload_taint("the program detached VFIO group %d from its container",
                      g->number);
        return 1;
    }
    return 1;
}

static int device_ioctl(struct preload_device *d, unsigned long req, void *arg)
{
    int r;

    switch (req) {
    case VFIO_DEVICE_RESET:
        preload_in_lib++;
        r = cprkit_vfio_device_reset(preload_ctx, d->fd);
        preload_in_lib--;
        if (r == 0 && preload_incoming)
            preload_log(LOG_DEBUG,
                        "VFIO_DEVICE_RESET of %s skipped: the "
                        "device is preserved",
                        d->bdf);
        return r;
    case VFIO_DEVICE_SET_IRQS:
        return preload_set_irqs(d, arg);
    }
    return 1;
}

/* Called with the lock held. Returns 1 if the request was not the shim's
 * business (the caller passes it to the kernel). */
int preload_vfio_ioctl(int fd, unsigned long req, void *arg)
{
    struct preload_container *c = preload_container_by_fd(fd);
    struct preload_group *g = c ? NULL : group_by_fd(fd);
    struct preload_device *d = c || g ? NULL : preload_device_by_fd(fd);

    if (c)
        return container_ioctl(c, req, arg);
    if (g)
        return group_ioctl(g, req, arg);
    if (d)
        return device_ioctl(d, req, arg);
    return 1;
}
