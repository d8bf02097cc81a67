/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The part of the kernel's iommufd uAPI cprkit uses, for building on hosts
 * whose linux-libc-dev predates it (Debian 12 ships 6.1 headers: no
 * <linux/iommufd.h>, no VFIO device cdev ioctls). The values are the
 * kernel's ABI (include/uapi/linux/iommufd.h and vfio.h, Linux 6.13+ for
 * MAP_FILE and CHANGE_PROCESS); a newer system header, when present, wins.
 * Whether the running kernel has an ioctl is probed at run time, never
 * assumed from these definitions.
 */
#pragma once

#include <linux/types.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>

#if __has_include(<linux/iommufd.h>)
#include <linux/iommufd.h>
#endif

#ifndef IOMMUFD_TYPE
#define IOMMUFD_TYPE (';')
#endif

/* ioctl numbers: IOMMUFD_CMD_BASE 0x80 + the command. */
#ifndef IOMMU_DESTROY
struct iommu_destroy {
    __u32 size;
    __u32 id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, 0x80)
#endif

#ifndef IOMMU_IOAS_ALLOC
struct iommu_ioas_alloc {
    __u32 size;
    __u32 flags;
    __u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, 0x81)
#endif

#ifndef IOMMU_IOAS_MAP
enum iommufd_ioas_map_flags {
    IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,
    IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,
    IOMMU_IOAS_MAP_READABLE = 1 << 2,
};
struct iommu_ioas_map {
    __u32 size;
    __u32 flags;
    __u32 ioas_id;
    __u32 __reserved;
    __aligned_u64 user_va;
    __aligned_u64 length;
    __aligned_u64 iova;
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, 0x85)
#endif

#ifndef IOMMU_IOAS_UNMAP
struct iommu_ioas_unmap {
    __u32 size;
    __u32 ioas_id;
    __aligned_u64 iova;
    __aligned_u64 length;
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, 0x86)
#endif

#ifndef IOMMU_OPTION
enum iommufd_option {
    IOMMU_OPTION_RLIMIT_MODE = 0,
    IOMMU_OPTION_HUGE_PAGES = 1,
};
enum iommufd_option_ops {
    IOMMU_OPTION_OP_SET = 0,
    IOMMU_OPTION_OP_GET = 1,
};
struct iommu_option {
    __u32 size;
    __u32 option_id;
    __u16 op;
    __u16 __reserved;
    __u32 object_id;
    __aligned_u64 val64;
};
#define IOMMU_OPTION _IO(IOMMUFD_TYPE, 0x87)
#endif

#ifndef IOMMU_IOAS_MAP_FILE
struct iommu_ioas_map_file {
    __u32 size;
    __u32 flags;
    __u32 ioas_id;
    __s32 fd;
    __aligned_u64 start;
    __aligned_u64 length;
    __aligned_u64 iova;
};
#define IOMMU_IOAS_MAP_FILE _IO(IOMMUFD_TYPE, 0x8f)
#endif

#ifndef IOMMU_IOAS_CHANGE_PROCESS
struct iommu_ioas_change_process {
    __u32 size;
    __u32 __reserved;
};
#define IOMMU_IOAS_CHANGE_PROCESS _IO(IOMMUFD_TYPE, 0x92)
#endif

/* VFIO device cdevs (/dev/vfio/devices/vfioN), Linux 6.6+. */
#ifndef VFIO_DEVICE_BIND_IOMMUFD
struct vfio_device_bind_iommufd {
    __u32 argsz;
    __u32 flags;
    __s32 iommufd;
    __u32 out_devid;
    __aligned_u64 token_uuid_ptr; /* since 6.17; argsz tells older kernels */
};
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
#endif

#ifndef VFIO_DEVICE_ATTACH_IOMMUFD_PT
struct vfio_device_attach_iommufd_pt {
    __u32 argsz;
    __u32 flags;
    __u32 pt_id;
    __u32 pasid; /* since 6.12, with VFIO_DEVICE_ATTACH_PASID */
};
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)
#endif

#ifndef VFIO_DEVICE_DETACH_IOMMUFD_PT
struct vfio_device_detach_iommufd_pt {
    __u32 argsz;
    __u32 flags;
    __u32 pasid;
};
#define VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 20)
#endif
