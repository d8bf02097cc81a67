/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internal interfaces of the iommufd participant (preserve/iommufd*.c,
 * restore/iommufd*.c): the second DMA backend, beside VFIO type1. It uses
 * the VFIO layer one way — device records, IRQs and RAM stay the "vfio"
 * participant's (a device cdev is a VFIO device fd) — and the VFIO layer
 * never names it. The core reaches it only through the participant table.
 *
 * Records, as the hooks of cprkit-iommufd.h make them. Every fd they
 * mention (the iommufd, device cdevs) is in the named fd registry; the
 * blob names them by (name, id). A mapping names its file by identity
 * (st_dev, st_ino) and offset only: the kernel holds the file itself.
 */
#pragma once

#include "cprkit/cprkit-iommufd.h"
#include "linux-uapi-iommufd.h"
#include "vfio-internal.h"

/* Registry name of an iommufd; its id is the application's. */
#define IOMMUFD_FD_NAME "iommufd"

struct iommufd_rec {
    int fd;
    int id;
    bool preserved; /* incoming: from the blob, not yet reclaimed */
    bool reclaimed;
};

struct iommufd_ioas_rec {
    int iommufd;      /* fd */
    int id;           /* the application's */
    uint32_t ioas_id; /* the kernel's */
    bool preserved;
    bool reclaimed;
};

struct iommufd_device_rec {
    int fd; /* the cdev; its VFIO record is the vfio participant's */
    int iommufd;
    uint32_t devid;   /* VFIO_DEVICE_BIND_IOMMUFD's out_devid */
    uint32_t pt_id;   /* what ATTACH_IOMMUFD_PT returned (an hwpt id) */
    uint32_t ioas_id; /* what it was attached to */
    bool preserved;
    bool reclaimed;
};

struct iommufd_mapping_rec {
    int iommufd;
    uint32_t ioas_id;
    uint64_t iova;
    uint64_t length;
    uint32_t prot; /* IOMMU_IOAS_MAP_READABLE | _WRITEABLE */
    uint64_t file_dev;
    uint64_t file_ino;
    uint64_t file_offset;
    bool preserved;
    bool reclaimed;
};

/* The participant's private state in a context (iommufd_of()). */
struct iommufd_state {
    GPtrArray *iommufds; /* struct iommufd_rec * */
    GPtrArray *ioases;   /* struct iommufd_ioas_rec * */
    GPtrArray *devices;  /* struct iommufd_device_rec * */
    GPtrArray *mappings; /* struct iommufd_mapping_rec * */

    /* Where the hooks look; unit tests point them elsewhere. Not touched
     * by init/clear. NULL: the real ones. */
    const char *dev_iommu; /* "/dev/iommu" */
    const char *sysfs_pci; /* "/sys/bus/pci/devices" */
    const char *dev_cdevs; /* "/dev/vfio/devices" */
};

/* restore/iommufd-participant.c */
extern const struct participant iommufd_participant;
static inline struct iommufd_state *iommufd_of(cprkit_ctx *ctx)
{
    return participant_state(ctx, &iommufd_participant);
}

/* Every ioctl of the participant — on the iommufd and on device cdevs —
 * goes through the VFIO layer's seam, vfio_ioctl() (vfio_of(ctx)->ioctl_fn
 * in unit tests): one fake sees all of them, in order. */

/* preserve/iommufd.c: records and hooks. */
void iommufd_state_init(struct iommufd_state *s);
void iommufd_state_clear(struct iommufd_state *s);
struct iommufd_rec *iommufd_by_fd(cprkit_ctx *ctx, int fd);
struct iommufd_ioas_rec *iommufd_ioas_find(cprkit_ctx *ctx, int iommufd,
                                           uint32_t ioas_id);
uint64_t iommufd_mapped_bytes(cprkit_ctx *ctx);

/* preserve/iommufd-blockers.c */
int iommufd_check_blockers(cprkit_ctx *ctx);
/* IOMMU_IOAS_CHANGE_PROCESS on one iommufd: 0 or -errno, no message. */
int iommufd_change_process(cprkit_ctx *ctx, int fd);

/* preserve/iommufd-save.c */
int iommufd_state_build(cprkit_ctx *ctx, Cprkit__State *state);

/* restore/iommufd-load.c */
int iommufd_state_load(cprkit_ctx *ctx, const Cprkit__State *state);
unsigned iommufd_list_unreclaimed(cprkit_ctx *ctx, GString *out);
