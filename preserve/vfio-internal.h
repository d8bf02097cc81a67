/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internal interfaces of the VFIO type1 participant (preserve/ and
 * restore/). The core (cpr/) never includes this header: it reaches VFIO
 * only through the participant table (cpr/participant.h). Calls go one
 * way inside the layer: restore/ uses preserve/, never the reverse.
 */
#pragma once

#include "cprkit-internal.h"
#include "cprkit/cprkit-vfio.h"
#include "vfio-records.h"
#include "vma-info.h"

/* restore/vfio-participant.c: the participant, and the VFIO state of a
 * context (its private state). */
extern const struct participant vfio_participant;
static inline struct vfio_state *vfio_of(cprkit_ctx *ctx)
{
    return participant_state(ctx, &vfio_participant);
}

/* preserve/vfio-state.c: record lifecycle and the ioctl seam. */
void vfio_state_init(struct vfio_state *vfio);
void vfio_state_clear(struct vfio_state *vfio);
int vfio_ioctl(cprkit_ctx *ctx, int fd, unsigned long request, void *arg);

/* preserve/vfio-devices.c */
struct vfio_container_rec *vfio_container_by_fd(cprkit_ctx *ctx, int fd);
struct vfio_device_rec *vfio_device_by_fd(cprkit_ctx *ctx, int fd);
int vfio_container_get(cprkit_ctx *ctx, int fd,
                       struct vfio_container_rec **ret);
int vfio_device_get(cprkit_ctx *ctx, int fd, struct vfio_device_rec **ret);
char *vfio_device_fd_name(const char *bdf);
bool vfio_bdf_is_valid(const char *bdf);
/* Device cdevs, for the iommufd participant: the VFIO layer keeps their
 * device records (IRQs, reset) as for devices opened through a group. */
struct vfio_device_rec *vfio_device_by_bdf(cprkit_ctx *ctx, const char *bdf);
int vfio_cdev_device_add(cprkit_ctx *ctx, int fd, const char *bdf);
int vfio_cdev_device_reclaim(cprkit_ctx *ctx, const char *bdf);

/* preserve/vfio-device-identity.c: -ESTALE when d's fd is the VFIO device
 * of another PCI address than d->bdf (fds swapped or replaced). */
int vfio_device_check_identity(cprkit_ctx *ctx,
                               const struct vfio_device_rec *d);
/* Bus Master Enable of a device fd: 1, 0, or < 0 unreadable. */
int vfio_device_bus_master(cprkit_ctx *ctx, int fd);
/* -ESTALE when d was saved with bus mastering on and has it off now. */
int vfio_device_check_bus_master(cprkit_ctx *ctx,
                                 const struct vfio_device_rec *d);

/* preserve/blockers.c */
int vfio_check_blockers(cprkit_ctx *ctx);

/* preserve/vfio-dma.c: records of the mappings, suspend and resume. What
 * backs an address range is the maps module's (vma-info.h). */
int vfio_suspend_vaddrs(cprkit_ctx *ctx);
int vfio_resume_vaddrs(cprkit_ctx *ctx);
uint64_t vfio_mapped_bytes(cprkit_ctx *ctx);

/* preserve/vaddr-remap.c: the checked remap, shared by the map hook
 * (preserve/vfio-dma.c) and the rollback (restore/vfio-commit.c). */
int dma_remap_preserved(cprkit_ctx *ctx, struct dma_mapping_rec *m, void *vaddr,
                        uint32_t prot);
void vma_cache_drop(cprkit_ctx *ctx);

/* preserve/vfio-save.c */
int vfio_state_build(cprkit_ctx *ctx, Cprkit__State *state);

/* restore/: records from the blob, commit, rollback. */
int vfio_state_load(cprkit_ctx *ctx, const Cprkit__State *state);
unsigned vfio_list_unremapped(cprkit_ctx *ctx, GString *out);
int vfio_suspend_for_rollback(cprkit_ctx *ctx);
/* restore/vfio-adopt.c */
int vfio_adopt(cprkit_ctx *ctx);
void vfio_undo_rollback_suspend(cprkit_ctx *ctx);
