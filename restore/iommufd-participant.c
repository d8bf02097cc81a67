/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The iommufd participant: the second DMA backend, beside the VFIO type1
 * participant ("vfio"), on the same priority (DMA address spaces first).
 * Registered from a constructor; the core never names it, and the VFIO
 * layer does not know it exists. Its device cdevs are VFIO device records
 * of the "vfio" participant (IRQs, reset), which carries them in its own
 * blob fields (VfioDevice.cdev).
 */
#include "iommufd-internal.h"

static void iommufd_init(cprkit_ctx *ctx)
{
    iommufd_state_init(iommufd_of(ctx));
}

static void iommufd_clear(cprkit_ctx *ctx)
{
    iommufd_state_clear(iommufd_of(ctx));
}

static void iommufd_stats(cprkit_ctx *ctx, participant_stat_fn add,
                          void *userdata)
{
    struct iommufd_state *s = iommufd_of(ctx);

    /* A program that does not use iommufd gets no figures of it: its
     * status and exec log line stay as they were before this backend. The
     * keys are prefixed, as the exec log line has one flat namespace. */
    if (s->iommufds->len == 0)
        return;
    add(userdata, "iommufds", s->iommufds->len, NULL);
    add(userdata, "iommufd_ioases", s->ioases->len, NULL);
    add(userdata, "iommufd_devices", s->devices->len, NULL);
    add(userdata, "iommufd_mappings", s->mappings->len, NULL);
    add(userdata, "iommufd_mapped_bytes", iommufd_mapped_bytes(ctx), NULL);
}

/* Owns State tags 32..47 (iommufds, iommufd_ioases, iommufd_devices,
 * iommufd_mappings; cprkit-state.proto). */
const struct participant iommufd_participant = {
    .name = "iommufd",
    .priority = PARTICIPANT_PRI_IOMMU,
    .state_size = sizeof(struct iommufd_state),
    .init = iommufd_init,
    .clear = iommufd_clear,
    .check_blockers = iommufd_check_blockers,
    /* No suspend / resume: an iommufd mapping holds its file and offset,
     * not this process's virtual address, so nothing becomes invalid at
     * exec and nothing needs restoring when the exec fails. */
    .save = iommufd_state_build,
    /* Ends with IOMMU_IOAS_CHANGE_PROCESS per iommufd (iommufd-load.c). */
    .load = iommufd_state_load,
    .pending = iommufd_list_unreclaimed,
    /* No rollback_prepare / rollback_abort: this binary changed nothing
     * the previous one must find undone — reclaiming touches no kernel
     * state, and the accounting CHANGE_PROCESS moved here is moved back
     * by the previous binary's own load. No adopt: load already did all
     * of it, and CHANGE_PROCESS works from a dead predecessor's mm (it is
     * only mmdrop'ed). No committed: no cache to drop. */
    .stats = iommufd_stats,
};

PARTICIPANT_REGISTER(iommufd_participant)
