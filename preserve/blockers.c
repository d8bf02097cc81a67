/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The VFIO blockers (the participant's check_blockers): everything about
 * containers, groups, DMA mappings and pinned memory that would make an
 * update fail half-way, checked before anything changes, each with a
 * message naming the culprit. Found here, an update costs nothing; found
 * after the vaddr suspend, it costs a blackout and a recovery. The generic
 * ones (target binary, fds, seccomp) are the core's: cpr/check.c.
 */
#include <dirent.h>
#include <linux/vfio.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "vfio-internal.h"

#define CAP_IPC_LOCK_BIT 14

static bool has_cap_ipc_lock(void)
{
    g_autofree char *cap_eff = proc_status_field("CapEff");

    return cap_eff &&
           (g_ascii_strtoull(cap_eff, NULL, 16) >> CAP_IPC_LOCK_BIT) & 1;
}

static int check_container(cprkit_ctx *ctx, struct vfio_container_rec *c)
{
    int r;

    if (!c->iommu_type)
        return 0; /* no group attached yet: nothing mapped */
    r = vfio_ioctl(ctx, c->fd, VFIO_CHECK_EXTENSION,
                   (void *)(uintptr_t)VFIO_UPDATE_VADDR);
    if (r != 1)
        return ctx_fail(ctx, -EOPNOTSUPP,
                        "container %d does not support VFIO_UPDATE_VADDR: "
                        "this kernel cannot keep DMA mappings across exec "
                        "(Linux >= 5.12 with vfio type1 is needed)",
                        c->id);
    /* The suspend that follows the blockers uses one UNMAP_ALL ioctl when
     * the kernel has it. Both are read only after VFIO_SET_IOMMU (before,
     * the kernel reports 0), which iommu_type above guarantees. */
    c->has_unmap_all = vfio_ioctl(ctx, c->fd, VFIO_CHECK_EXTENSION,
                                  (void *)(uintptr_t)VFIO_UNMAP_ALL) == 1;
    return 0;
}

/* A group must be a real IOMMU group of PCI devices: mdev groups pin pages
 * on demand through the vaddr (which is invalid during the update), and
 * no-IOMMU groups have no IOMMU to keep translating. */
static int check_group(cprkit_ctx *ctx, const struct vfio_group_rec *g)
{
    g_autofree char *dir_path =
        g_strdup_printf("/sys/kernel/iommu_groups/%u/devices", g->number);
    g_autoptr(GDir) dir = g_dir_open(dir_path, 0, NULL);
    const struct fd_entry *e = fdreg_lookup_fd(ctx, g->fd);
    const char *name;

    if (e && e->identity.type != CPRKIT_FD_VFIO_GROUP)
        return ctx_fail(ctx, -EOPNOTSUPP, "group %u is not a VFIO group fd",
                        g->number);
    if (!dir)
        return ctx_fail(ctx, -EOPNOTSUPP,
                        "VFIO group %u has no IOMMU group in sysfs (no-IOMMU "
                        "mode?): nothing would translate DMA during the update",
                        g->number);
    while ((name = g_dir_read_name(dir))) {
        g_autofree char *link =
            g_strdup_printf("%s/%s/subsystem", dir_path, name);
        g_autofree char *subsystem = g_file_read_link(link, NULL);

        if (!subsystem || !g_str_has_suffix(subsystem, "/bus/pci"))
            return ctx_fail(ctx, -EOPNOTSUPP,
                            "VFIO group %u contains %s, which is not a PCI "
                            "device (mdev or emulated): cprkit preserves only "
                            "vfio-pci devices",
                            g->number, name);
    }
    return 0;
}

static int check_mapping(cprkit_ctx *ctx, const struct vma_table *vmas,
                         const struct dma_mapping_rec *m)
{
    struct vma_backing now;
    int r;

    if (!m->backing_shared)
        return ctx_fail(ctx, -EOPNOTSUPP,
                        "DMA mapping iova 0x%" PRIx64 " size 0x%" PRIx64
                        " is anonymous or private memory, which the new "
                        "binary cannot map again; allocate it with "
                        "cprkit_ram_open() or map a memfd MAP_SHARED",
                        m->iova, m->size);
    r = vma_table_lookup(vmas, m->vaddr, m->size, &now);
    if (r < 0 || now.dev != m->backing_dev || now.ino != m->backing_ino ||
        now.offset != m->backing_offset)
        return ctx_fail(ctx, -ESTALE,
                        "DMA mapping iova 0x%" PRIx64 ": its memory at %p is "
                        "no longer the file it was mapped from",
                        m->iova, m->vaddr);
    if (!fdreg_lookup_backing(ctx, m->backing_dev, m->backing_ino))
        return ctx_fail(ctx, -EOPNOTSUPP,
                        "DMA mapping iova 0x%" PRIx64 " is backed by a file "
                        "(dev %" PRIu64 " ino %" PRIu64 ") that is not a "
                        "preserved fd; save it with cprkit_fd_save() or use "
                        "cprkit_ram_open()",
                        m->iova, m->backing_dev, m->backing_ino);
    return 0;
}

/* Pages pinned for DMA count against RLIMIT_MEMLOCK; the new process
 * inherits the limit and may be charged again when it remaps. */
static int check_memlock(cprkit_ctx *ctx)
{
    uint64_t pinned = vfio_mapped_bytes(ctx);
    struct rlimit rl;

    if (pinned == 0 || has_cap_ipc_lock())
        return 0;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) < 0)
        return ctx_fail(ctx, -errno, "getrlimit(RLIMIT_MEMLOCK): %m");
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < pinned)
        return ctx_fail(ctx, -ENOMEM,
                        "RLIMIT_MEMLOCK is %" PRIu64 " bytes but %" PRIu64
                        " bytes are DMA-mapped, which the new binary must be "
                        "able to pin (raise the limit or grant CAP_IPC_LOCK)",
                        (uint64_t)rl.rlim_cur, pinned);
    return 0;
}

int vfio_check_blockers(cprkit_ctx *ctx)
{
    struct vfio_state *v = vfio_of(ctx);
    int r;

    for (guint i = 0; i < v->containers->len; i++) {
        r = check_container(ctx, g_ptr_array_index(v->containers, i));
        if (r < 0)
            return r;
    }
    for (guint i = 0; i < v->groups->len; i++) {
        r = check_group(ctx, g_ptr_array_index(v->groups, i));
        if (r < 0)
            return r;
    }
    /* The registry cannot tell device fds apart (one anonymous inode). */
    for (guint i = 0; i < v->devices->len; i++) {
        r = vfio_device_check_identity(ctx, g_ptr_array_index(v->devices, i));
        if (r < 0)
            return r;
    }
    if (v->mappings->len) {
        struct vma_table vmas = {0};

        r = vma_table_load(&vmas);
        for (guint i = 0; r >= 0 && i < v->mappings->len; i++)
            r = check_mapping(ctx, &vmas, g_ptr_array_index(v->mappings, i));
        vma_table_clear(&vmas);
        if (r < 0)
            return r == -EIO ? ctx_fail(ctx, r, "cannot read /proc/self/maps")
                             : r;
    }
    return check_memlock(ctx);
}
