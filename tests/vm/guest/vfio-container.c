/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The type1 container advertises what cprkit's vaddr suspend needs:
 * VFIO_UPDATE_VADDR and VFIO_UNMAP_ALL. The kernel only answers for these
 * once an IOMMU backend is set (before VFIO_SET_IOMMU the container has no
 * driver to ask), so cprkit must check them on a live container.
 */
#include <errno.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "tap.h"
#include "vfio-util.h"

int main(void)
{
    int before_vaddr, before_all, container, group, group_id, r;
    char bdf[16];

    tap_plan(6);

    TAP_CHECK(pci_find(EDU_VENDOR, EDU_DEVICE, bdf));
    group_id = TAP_CHECK(pci_iommu_group(bdf));
    container = TAP_CHECK(vfio_container_open());

    tap_ok(vfio_check_extension(container, VFIO_TYPE1v2_IOMMU) == 1,
           "container supports VFIO_TYPE1v2_IOMMU");

    /* Recorded for the log: cprkit must not trust these answers. */
    before_vaddr = vfio_check_extension(container, VFIO_UPDATE_VADDR);
    before_all = vfio_check_extension(container, VFIO_UNMAP_ALL);
    tap_diag("before VFIO_SET_IOMMU: UPDATE_VADDR=%d UNMAP_ALL=%d",
             before_vaddr, before_all);

    group = TAP_CHECK(vfio_group_open(group_id));
    r = ioctl(group, VFIO_GROUP_SET_CONTAINER, &container);
    tap_ok(r == 0, "group %d (%s) attached to the container", group_id, bdf);

    r = ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
    if (!tap_ok(r == 0, "VFIO_SET_IOMMU type1v2"))
        tap_bail("cannot continue without an IOMMU backend");

    r = vfio_check_extension(container, VFIO_UPDATE_VADDR);
    tap_ok(r == 1, "after VFIO_SET_IOMMU: VFIO_UPDATE_VADDR reported (%d)", r);
    r = vfio_check_extension(container, VFIO_UNMAP_ALL);
    tap_ok(r == 1, "after VFIO_SET_IOMMU: VFIO_UNMAP_ALL reported (%d)", r);

    /* A second container cannot take a group that is already in use. */
    {
        int other = TAP_CHECK(vfio_container_open());
        int g2 = vfio_group_open(group_id);

        tap_ok(g2 == -EBUSY, "group can be opened only once (got %d)", g2);
        if (g2 >= 0)
            close(g2);
        close(other);
    }

    close(group);
    close(container);
    tap_exit();
}
