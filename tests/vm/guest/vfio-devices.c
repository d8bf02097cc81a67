/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The emulated devices look to vfio-pci the way the other guest tests (and
 * docs/testing.md) assume: which can be reset by the kernel (FLR) and which
 * interrupt types each offers. If QEMU or the kernel changes this, the
 * reset / interrupt tests would test something else; fail loudly here.
 */
#include <unistd.h>

#include "tap.h"
#include "vfio-util.h"

struct expect {
    const char *name;
    uint16_t vendor, device;
    bool reset;                 /* VFIO_DEVICE_FLAGS_RESET */
    uint32_t intx, msi, msix;   /* minimum vector counts; 0: must be 0 */
};

static const struct expect devices[] = {
    { "edu", EDU_VENDOR, EDU_DEVICE, false, 1, 1, 0 },
    { "nvme", NVME_VENDOR, NVME_DEVICE, true, 1, 0, 1 },
    { "e1000e", E1000E_VENDOR, E1000E_DEVICE, true, 1, 1, 5 },
};

static bool count_matches(uint32_t got, uint32_t want)
{
    return want ? got >= want : got == 0;
}

int main(void)
{
    tap_plan(3 * 5);

    for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++) {
        const struct expect *e = &devices[i];
        struct vfio_device_info info;
        struct vfio_irq_info irq[3];
        struct vfio_pci p;
        int r;

        r = vfio_pci_open(e->vendor, e->device, &p);
        if (!tap_ok(r == 0, "%s: opened through vfio-pci (%s)", e->name,
                    r < 0 ? strerror(-r) : p.bdf)) {
            for (int k = 0; k < 4; k++)
                tap_ok(false, "%s: (not opened)", e->name);
            continue;
        }
        TAP_CHECK(vfio_device_info(p.device, &info));
        tap_ok(info.flags & VFIO_DEVICE_FLAGS_PCI, "%s: is a PCI device",
               e->name);
        tap_ok(!!(info.flags & VFIO_DEVICE_FLAGS_RESET) == e->reset,
               "%s: VFIO_DEVICE_FLAGS_RESET is %s", e->name,
               e->reset ? "set" : "clear");
        for (uint32_t k = 0; k < 3; k++)
            TAP_CHECK(vfio_irq_info(p.device, k, &irq[k]));
        tap_diag("%s: %u regions, INTx %u, MSI %u, MSI-X %u (flags 0x%x)",
                 e->name, info.num_regions, irq[0].count, irq[1].count,
                 irq[2].count, irq[2].flags);
        tap_ok(count_matches(irq[VFIO_PCI_INTX_IRQ_INDEX].count, e->intx) &&
               count_matches(irq[VFIO_PCI_MSI_IRQ_INDEX].count, e->msi),
               "%s: INTx %u and MSI %u vectors as expected", e->name,
               irq[0].count, irq[1].count);
        tap_ok(count_matches(irq[VFIO_PCI_MSIX_IRQ_INDEX].count, e->msix),
               "%s: MSI-X %u vectors as expected (want %s%u)", e->name,
               irq[2].count, e->msix ? ">= " : "", e->msix);
        vfio_pci_close(&p);
    }
    tap_exit();
}
