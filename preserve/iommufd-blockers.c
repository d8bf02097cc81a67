/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The iommufd blockers (the participant's check_blockers): what would make
 * the new binary's IOMMU_IOAS_CHANGE_PROCESS fail, checked on the old side
 * before anything changes, each with a message naming the iommufd.
 *
 * The probe is IOMMU_IOAS_CHANGE_PROCESS itself, called by the process
 * that made the mappings (as QEMU's cpr-iommufd.c does). With the same mm
 * and user it only validates (drivers/iommu/iommufd/ioas.c,
 * iommufd_ioas_change_process, Linux 7.3): need_charge_update() is false
 * for every iopt_pages, so nothing is charged or uncharged, and
 * change_mm() swaps each reference for an equal one. It fails with EINVAL
 * when an area's pages are not IOPT_ADDRESS_FILE (a mapping made with
 * IOMMU_IOAS_MAP of process memory, or of a dma-buf) and EBUSY when an
 * area has no pages, that is while it is being unmapped (an access object
 * — an emulated/mdev device — has not let go of it yet).
 *
 * "Same mm and user" is the case cprkit makes: the hooks map in this
 * process. A process that changed its uid since it mapped (QEMU's -runas)
 * or that maps through an iommufd another process filled would see the
 * probe really move the accounting to itself (or fail with ENOMEM against
 * its RLIMIT_MEMLOCK): what the new binary's load would do anyway.
 */
#include <inttypes.h>
#include <string.h>
#include <sys/resource.h>

#include "iommufd-internal.h"

#define CAP_IPC_LOCK_BIT 14

int iommufd_change_process(cprkit_ctx *ctx, int fd)
{
    struct iommu_ioas_change_process cp = {.size = sizeof(cp)};

    return vfio_ioctl(ctx, fd, IOMMU_IOAS_CHANGE_PROCESS, &cp);
}

static int check_change_process(cprkit_ctx *ctx, const struct iommufd_rec *f)
{
    int r = iommufd_change_process(ctx, f->fd);

    switch (r) {
    case 0:
        return 0;
    case -ENOTTY:
        return ctx_fail(ctx, -EOPNOTSUPP,
                        "iommufd %d: kernel without IOMMU_IOAS_CHANGE_PROCESS "
                        "(Linux 6.13+): the new binary could not take over "
                        "its mappings",
                        f->id);
    case -EINVAL:
        return ctx_fail(ctx, -EOPNOTSUPP,
                        "iommufd %d has a mapping not made with "
                        "IOMMU_IOAS_MAP_FILE (e.g. IOMMU_IOAS_MAP of anonymous "
                        "memory, or a dma-buf): it cannot change process; map "
                        "memfds with cprkit_iommufd_map_file()",
                        f->id);
    case -EBUSY:
        return ctx_fail(ctx, -EBUSY,
                        "iommufd %d: an IOAS has a mapping without pages (one "
                        "being unmapped, held by an access object): retry "
                        "when it is gone",
                        f->id);
    default:
        return ctx_fail(ctx, r, "iommufd %d: IOMMU_IOAS_CHANGE_PROCESS: %s",
                        f->id, strerror(-r));
    }
}

/* Process-based accounting (IOMMU_OPTION_RLIMIT_MODE = 1,
 * IOPT_PAGES_ACCOUNT_MM) charges pinned pages to the mm that mapped them.
 * CHANGE_PROCESS uncharges that mm through update_mm_locked_vm(), whose
 * mmget_not_zero() fails once the mm is gone — after an exec it always
 * is — so the kernel WARNs and the ioctl returns EINVAL (pages.c,
 * ioas.c). The probe above cannot see it: in the same mm nothing is
 * uncharged. */
static int check_rlimit_mode(cprkit_ctx *ctx, const struct iommufd_rec *f)
{
    struct iommu_option opt = {
        .size = sizeof(opt),
        .option_id = IOMMU_OPTION_RLIMIT_MODE,
        .op = IOMMU_OPTION_OP_GET,
        .object_id = 0,
    };
    int r = vfio_ioctl(ctx, f->fd, IOMMU_OPTION, &opt);

    if (r < 0)
        return ctx_fail(ctx, r,
                        "iommufd %d: IOMMU_OPTION RLIMIT_MODE (get): %s", f->id,
                        strerror(-r));
    if (opt.val64 == 1)
        return ctx_fail(ctx, -EOPNOTSUPP,
                        "iommufd %d uses process-based accounting "
                        "(IOMMU_OPTION_RLIMIT_MODE = 1): after exec, "
                        "IOMMU_IOAS_CHANGE_PROCESS cannot uncharge the old "
                        "address space and fails; keep the default per-user "
                        "accounting (mode 0)",
                        f->id);
    return 0;
}

static bool has_cap_ipc_lock(void)
{
    g_autofree char *cap_eff = proc_status_field("CapEff");

    return cap_eff &&
           (g_ascii_strtoull(cap_eff, NULL, 16) >> CAP_IPC_LOCK_BIT) & 1;
}

/* Per-user accounting (the default): CHANGE_PROCESS charges the new
 * process for every pinned page before it uncharges the old one
 * (charge_current(), then iopt_pages_update_pinned(..., false)), against
 * the new process's RLIMIT_MEMLOCK and the same user's locked_vm, which
 * still holds the old charge: for a moment the user has them twice.
 * Pages mapped with CAP_IPC_LOCK are not accounted. */
static int check_memlock(cprkit_ctx *ctx)
{
    uint64_t mapped = iommufd_mapped_bytes(ctx);
    struct rlimit rl;

    if (mapped == 0 || has_cap_ipc_lock())
        return 0;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) < 0)
        return ctx_fail(ctx, -errno, "getrlimit(RLIMIT_MEMLOCK): %m");
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 2 < mapped)
        return ctx_fail(ctx, -ENOMEM,
                        "RLIMIT_MEMLOCK is %" PRIu64 " bytes but %" PRIu64
                        " bytes are mapped through iommufd: "
                        "IOMMU_IOAS_CHANGE_PROCESS charges the new binary "
                        "before it uncharges the old one, so it needs twice "
                        "that (raise the limit or grant CAP_IPC_LOCK)",
                        (uint64_t)rl.rlim_cur, mapped);
    return 0;
}

/* The kernel keeps every mapping's file, but the new binary must get the
 * file back to reclaim the mapping (and to see the memory): a memfd of
 * cprkit_ram_open() or a file saved with cprkit_fd_save(). Else its commit
 * would refuse and roll back; refuse now, before anything changes. */
static int check_files_preserved(cprkit_ctx *ctx)
{
    GPtrArray *mappings = iommufd_of(ctx)->mappings;

    for (guint i = 0; i < mappings->len; i++) {
        const struct iommufd_mapping_rec *m = g_ptr_array_index(mappings, i);

        if (!fdreg_lookup_backing(ctx, m->file_dev, m->file_ino))
            return ctx_fail(ctx, -EOPNOTSUPP,
                            "iommufd mapping iova 0x%" PRIx64 " maps a file "
                            "(dev %" PRIu64 " ino %" PRIu64 ") that is not a "
                            "preserved fd: the new binary could not reclaim "
                            "it; save it with cprkit_fd_save() or use "
                            "cprkit_ram_open()",
                            m->iova, m->file_dev, m->file_ino);
    }
    return 0;
}

int iommufd_check_blockers(cprkit_ctx *ctx)
{
    GPtrArray *iommufds = iommufd_of(ctx)->iommufds;
    int r;

    for (guint i = 0; i < iommufds->len; i++) {
        const struct iommufd_rec *f = g_ptr_array_index(iommufds, i);

        r = check_change_process(ctx, f);
        if (r < 0)
            return r;
        r = check_rlimit_mode(ctx, f);
        if (r < 0)
            return r;
    }
    r = check_files_preserved(ctx);
    if (r < 0)
        return r;
    return check_memlock(ctx);
}
