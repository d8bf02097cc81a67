/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Lockdown after start-up: the next binary reclaims its devices instead of
 * opening them, so a program that has its devices needs neither the
 * capabilities nor the ioctls that attach groups, create device fds or
 * reset devices. Capabilities are dropped with libcap-ng; a libseccomp
 * filter fails the reconfiguring VFIO ioctls with EPERM and leaves execve
 * alone, so updates keep working; on request it fails VFIO_DEVICE_FEATURE
 * too (low-power entry). Limits: docs/operations.md "Security".
 */
#include <linux/capability.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>

#include <cap-ng.h>
#include <seccomp.h>

#include "control-internal.h"

/* Newer than the Debian 12 kernel headers (Linux 6.6+). */
#ifndef VFIO_DEVICE_BIND_IOMMUFD
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
#endif

/* seccomp sees numbers, not fd types, and VFIO reuses numbers across
 * fd types: VFIO_DEVICE_PCI_HOT_RESET is VFIO_IOMMU_MAP_DMA's number
 * (VFIO_BASE + 13), which every update needs for the vaddr remap, so it
 * cannot be denied. These numbers are used by nothing an update needs. */
const unsigned long lockdown_denied_ioctls[] = {
    VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER,
    VFIO_SET_IOMMU,           VFIO_GROUP_GET_DEVICE_FD,
    VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_RESET,
};
const char *const lockdown_denied_ioctl_names[] = {
    "VFIO_GROUP_SET_CONTAINER", "VFIO_GROUP_UNSET_CONTAINER",
    "VFIO_SET_IOMMU",           "VFIO_GROUP_GET_DEVICE_FD",
    "VFIO_DEVICE_BIND_IOMMUFD", "VFIO_DEVICE_RESET",
};
const size_t lockdown_n_denied_ioctls = ELEMENTSOF(lockdown_denied_ioctls);

/* The 32-bit ABIs of the native architecture: a filter that only knew
 * x86_64 would let a 32-bit int 0x80 ioctl through (or, with the default
 * bad-arch action, kill a 32-bit next binary). */
static void add_compat_arches(scmp_filter_ctx sc)
{
    uint32_t native = seccomp_arch_native();

    if (native == SCMP_ARCH_X86_64) {
        seccomp_arch_add(sc, SCMP_ARCH_X86);
        seccomp_arch_add(sc, SCMP_ARCH_X32);
    } else if (native == SCMP_ARCH_AARCH64) {
        seccomp_arch_add(sc, SCMP_ARCH_ARM);
    }
}

static int deny_ioctl(cprkit_ctx *ctx, scmp_filter_ctx sc,
                      unsigned long request, const char *name)
{
    /* The kernel reads the request as a 32-bit unsigned int: compare only
     * those bits, or setting bit 32 would slip past the filter. */
    int r = seccomp_rule_add(
        sc, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
        SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, (scmp_datum_t)request));

    if (r < 0)
        control_fail(ctx, r, "seccomp rule for %s: %s", name, strerror(-r));
    return r;
}

static int lockdown_seccomp(cprkit_ctx *ctx, unsigned flags)
{
    scmp_filter_ctx sc = seccomp_init(SCMP_ACT_ALLOW);
    size_t n = 0;
    int r;

    if (!sc)
        return control_fail(ctx, -ENOMEM, "seccomp_init failed");
    add_compat_arches(sc);
    /* Every thread, not just the caller. */
    r = seccomp_attr_set(sc, SCMP_FLTATR_CTL_TSYNC, 1);
    if (r < 0)
        control_fail(ctx, r, "seccomp thread sync: %s", strerror(-r));
    if (flags & CPRKIT_LOCKDOWN_SECCOMP)
        for (size_t i = 0; r >= 0 && i < lockdown_n_denied_ioctls; i++, n++)
            r = deny_ioctl(ctx, sc, lockdown_denied_ioctls[i],
                           lockdown_denied_ioctl_names[i]);
    /* One number for every device feature (the feature is in the argument
     * struct, which seccomp cannot read), and type1's
     * VFIO_IOMMU_DIRTY_PAGES has it too: opt-in, as migration and dirty
     * tracking need it. */
    if (r >= 0 && (flags & CPRKIT_LOCKDOWN_DEVICE_FEATURE)) {
        r = deny_ioctl(ctx, sc, VFIO_DEVICE_FEATURE, "VFIO_DEVICE_FEATURE");
        n++;
    }
    if (r >= 0) {
        r = seccomp_load(sc);
        if (r < 0)
            control_fail(ctx, r, "cannot load the seccomp filter: %s",
                         strerror(-r));
    }
    seccomp_release(sc);
    if (r < 0)
        return r;
    cprkit_log(ctx, LOG_INFO, "lockdown: seccomp denies %zu VFIO ioctls", n);
    return 0;
}

static int lockdown_caps(cprkit_ctx *ctx, uint64_t keep_caps)
{
    unsigned last = CAP_LAST_CAP;
    int r;

    capng_get_caps_process();
    capng_clear(CAPNG_SELECT_ALL);
    for (unsigned cap = 0; cap <= last && cap < 64; cap++) {
        if (!(keep_caps & (UINT64_C(1) << cap)))
            continue;
        /* Ambient and inheritable: kept across the next exec for a
         * non-root user; bounding: root gets no more than this after exec. */
        r = capng_update(CAPNG_ADD,
                         CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_INHERITABLE |
                             CAPNG_BOUNDING_SET | CAPNG_AMBIENT,
                         cap);
        if (r < 0)
            return control_fail(ctx, -EINVAL, "cannot keep capability %u", cap);
    }
    r = capng_apply(CAPNG_SELECT_ALL);
    if (r < 0)
        return control_fail(ctx, -EPERM,
                            "cannot drop capabilities (capng_apply: %d): the "
                            "bounding set needs CAP_SETPCAP",
                            r);
    cprkit_log(ctx, LOG_INFO, "lockdown: capabilities reduced to 0x%" PRIx64,
               keep_caps);
    return 0;
}

CPRKIT_EXPORT int cprkit_lockdown(cprkit_ctx *ctx, unsigned flags,
                                  uint64_t keep_caps)
{
    int r;

    if (flags & ~(CPRKIT_LOCKDOWN_CAPS | CPRKIT_LOCKDOWN_SECCOMP |
                  CPRKIT_LOCKDOWN_DEVICE_FEATURE))
        return control_fail(ctx, -EINVAL, "unknown lockdown flags 0x%x", flags);
    /* The filter first: loading it needs CAP_SYS_ADMIN or no_new_privs
     * (libseccomp sets no_new_privs). */
    if (flags & (CPRKIT_LOCKDOWN_SECCOMP | CPRKIT_LOCKDOWN_DEVICE_FEATURE)) {
        r = lockdown_seccomp(ctx, flags);
        if (r < 0)
            return r;
    }
    if (flags & CPRKIT_LOCKDOWN_CAPS) {
        r = lockdown_caps(ctx, keep_caps);
        if (r < 0)
            return r;
    }
    return 0;
}
