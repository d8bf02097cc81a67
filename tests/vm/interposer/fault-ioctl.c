/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault-ioctl.so: LD_PRELOAD interposer that makes the kernel's VFIO type1
 * look less capable or fail, for the failure-injection tests (in the style
 * of kmod's testsuite preloads). Dormant unless CPRKIT_FAULT is set; it is
 * read at every call, so a test arms and disarms it around one attempt.
 *
 *   CPRKIT_FAULT=item[,item...]
 *     no-update-vaddr      VFIO_CHECK_EXTENSION(VFIO_UPDATE_VADDR) -> 0
 *     no-unmap-all         VFIO_CHECK_EXTENSION(VFIO_UNMAP_ALL) -> 0
 *     unmap-vaddr-fail=N   the Nth VFIO_IOMMU_UNMAP_DMA with
 *                          VFIO_DMA_UNMAP_FLAG_VADDR (counted while armed)
 *                          fails with EIO, without reaching the kernel
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/vfio.h>

typedef int (*ioctl_fn)(int, unsigned long, ...);

static bool has_item(const char *list, const char *item)
{
    size_t len = strlen(item);

    for (const char *p = list; (p = strstr(p, item)); p += len)
        if ((p == list || p[-1] == ',') && (p[len] == ',' || p[len] == '\0' ||
                                           p[len] == '='))
            return true;
    return false;
}

static long item_value(const char *list, const char *item)
{
    const char *p = strstr(list, item);

    return p && p[strlen(item)] == '=' ? strtol(p + strlen(item) + 1, NULL, 10)
                                       : 0;
}

int ioctl(int fd, unsigned long request, ...)
{
    static ioctl_fn real;
    static unsigned vaddr_unmaps;
    const char *faults = getenv("CPRKIT_FAULT");
    va_list ap;
    void *arg;

    va_start(ap, request);
    arg = va_arg(ap, void *);
    va_end(ap);
    if (!real)
        real = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");

    if (!faults) {
        vaddr_unmaps = 0;
        return real(fd, request, arg);
    }
    if (request == VFIO_CHECK_EXTENSION) {
        unsigned long ext = (unsigned long)arg;

        if ((ext == VFIO_UPDATE_VADDR && has_item(faults, "no-update-vaddr")) ||
            (ext == VFIO_UNMAP_ALL && has_item(faults, "no-unmap-all")))
            return 0;
    }
    if (request == VFIO_IOMMU_UNMAP_DMA && arg &&
        (((struct vfio_iommu_type1_dma_unmap *)arg)->flags &
         VFIO_DMA_UNMAP_FLAG_VADDR)) {
        long fail_at = item_value(faults, "unmap-vaddr-fail");

        if (fail_at > 0 && ++vaddr_unmaps == (unsigned long)fail_at) {
            errno = EIO;
            return -1;
        }
    }
    return real(fd, request, arg);
}
