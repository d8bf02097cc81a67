/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The VFIO type1 participant: how the core's update steps reach the VFIO
 * records, hooks and checks of preserve/ and restore/. Registered from a
 * constructor; the core never names it. It sits on top of the layer: it
 * uses preserve/ and restore/, and they name it only to find their state
 * (vfio_of()).
 */
#include "vfio-internal.h"

static void vfio_init(cprkit_ctx *ctx)
{
    vfio_state_init(vfio_of(ctx));
}

static void vfio_clear(cprkit_ctx *ctx)
{
    vma_cache_drop(ctx);
    vfio_state_clear(vfio_of(ctx));
}

static void vfio_stats(cprkit_ctx *ctx, participant_stat_fn add, void *userdata)
{
    struct vfio_state *v = vfio_of(ctx);
    g_autofree const char **bdfs = g_new0(const char *, v->devices->len + 1);

    for (guint i = 0; i < v->devices->len; i++) {
        const struct vfio_device_rec *d = g_ptr_array_index(v->devices, i);

        bdfs[i] = d->bdf ? d->bdf : "";
    }
    add(userdata, "containers", v->containers->len, NULL);
    add(userdata, "groups", v->groups->len, NULL);
    /* The addresses too: `cpr-exec status` lists them. */
    add(userdata, "devices", v->devices->len, bdfs);
    add(userdata, "dma_mappings", v->mappings->len, NULL);
    add(userdata, "mapped_bytes", vfio_mapped_bytes(ctx), NULL);
    add(userdata, "irq_indexes", v->irqs->len, NULL);
    add(userdata, "ram_blocks", v->ram_blocks->len, NULL);
}

/* Owns the VFIO fields of the State (vfio_containers, vfio_groups,
 * vfio_devices, dma_mappings, irqs, ram_blocks; cprkit-state.proto). */
const struct participant vfio_participant = {
    .name = "vfio",
    /* DMA address spaces first: suspended before anything else, resumed
     * last. */
    .priority = PARTICIPANT_PRI_IOMMU,
    .state_size = sizeof(struct vfio_state),
    .init = vfio_init,
    .clear = vfio_clear,
    .check_blockers = vfio_check_blockers,
    .suspend = vfio_suspend_vaddrs,
    .resume = vfio_resume_vaddrs,
    .save = vfio_state_build,
    .load = vfio_state_load,
    .pending = vfio_list_unremapped,
    /* The address space is the application's again. */
    .committed = vma_cache_drop,
    .rollback_prepare = vfio_suspend_for_rollback,
    .rollback_abort = vfio_undo_rollback_suspend,
    .adopt = vfio_adopt,
    .stats = vfio_stats,
};

PARTICIPANT_REGISTER(vfio_participant)
