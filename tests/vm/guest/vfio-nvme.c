/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NVMe admin path through vfio-pci with MSI-X: reset the controller, put
 * the admin queues in a memfd-backed DMA mapping, route MSI-X vector 0 to
 * an eventfd, enable, IDENTIFY CONTROLLER, and check that the
 * completion interrupt arrives and the identify data came from this device.
 */
#include <errno.h>
#include <unistd.h>

#include "nvme.h"
#include "tap.h"
#include "vfio-util.h"

#define IOVA 0x200000ull

int main(void)
{
    struct vfio_irq_info msix;
    struct nvme_ctrl c;
    struct nvme_cqe cqe;
    struct nvme_sqe sqe = {
        .opcode = NVME_ADMIN_IDENTIFY,
        .cid = 0x1234,
        .cdw10 = NVME_IDENTIFY_CNS_CTRL,
    };
    struct vfio_pci p;
    const uint8_t *id;
    uint64_t n = 0;
    uint16_t vid;
    int efd, r;

    tap_plan(13);

    r = vfio_pci_open(NVME_VENDOR, NVME_DEVICE, &p);
    if (!tap_ok(r == 0, "nvme opened through vfio-pci"))
        tap_bail("vfio_pci_open: %s", strerror(-r));
    TAP_CHECK(nvme_ctrl_init(&c, p.device));
    tap_diag("CAP 0x%016llx VS 0x%08x", (unsigned long long)c.cap,
             bar_read32(&c.bar, NVME_REG_VS));

    r = nvme_disable(&c);
    tap_ok(r == 0, "CC.EN=0 -> CSTS.RDY=0 (%d)", r);
    r = nvme_admin_queues_setup(&c, p.container, IOVA);
    if (!tap_ok(r == 0, "admin SQ/CQ in a DMA-mapped memfd (%d)", r))
        tap_bail("admin queue setup: %s", strerror(-r));
    TAP_CHECK(vfio_irq_info(p.device, VFIO_PCI_MSIX_IRQ_INDEX, &msix));
    tap_diag("MSI-X: %u vectors, %s", msix.count,
             msix.flags & VFIO_IRQ_INFO_NORESIZE ? "NORESIZE"
                                                 : "resizable");
    tap_ok(msix.count >= 1 && (msix.flags & VFIO_IRQ_INFO_EVENTFD),
           "MSI-X offers eventfd vectors (%u)", msix.count);
    efd = TAP_CHECK(eventfd_new());
    r = vfio_irq_set_eventfds(p.device, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, &efd);
    if (!tap_ok(r == 0, "MSI-X vector 0 -> eventfd (%d)", r))
        tap_bail("VFIO_DEVICE_SET_IRQS MSI-X: %s", strerror(-r));

    /*
     * Enable only now: the controller binds the admin CQ to its MSI-X
     * vector when it starts (QEMU's nvme marks the vector used only if
     * MSI-X is already enabled then, as Linux' nvme driver does it).
     */
    r = nvme_enable(&c);
    if (!tap_ok(r == 0, "CC.EN=1 -> CSTS.RDY=1 (%d)", r))
        tap_bail("controller did not become ready");

    sqe.prp1 = c.iova + NVME_MEM_DATA;
    nvme_admin_submit(&c, &sqe);
    r = eventfd_wait(efd, EVENT_TIMEOUT_MS, &n);
    tap_ok(r == 0 && n >= 1, "completion interrupt arrives on the MSI-X "
           "eventfd (r=%d count=%llu)", r, (unsigned long long)n);

    r = nvme_admin_reap(&c, &cqe);
    tap_ok(r == 1, "a new CQE is in the admin CQ");
    tap_ok(r == 1 && cqe.cid == sqe.cid && cqe.sq_id == 0,
           "CQE matches the command (cid 0x%x sq %u)", cqe.cid, cqe.sq_id);
    tap_ok(r == 1 && (cqe.status >> 1) == 0, "CQE status is success (0x%x)",
           cqe.status >> 1);

    id = c.mem + NVME_MEM_DATA;
    vid = (uint16_t)(id[0] | id[1] << 8);
    tap_ok(vid == NVME_VENDOR, "identify: PCI vendor 0x%04x", vid);
    tap_ok(memcmp(id + 4, NVME_SERIAL, sizeof(NVME_SERIAL) - 1) == 0,
           "identify: serial number is '" NVME_SERIAL "' (%.20s)",
           (const char *)id + 4);

    /* Nothing else is outstanding: no further interrupt, no further CQE. */
    r = nvme_admin_reap(&c, &cqe);
    tap_ok(r == 0, "no spurious CQE");

    vfio_irq_disable(p.device, VFIO_PCI_MSIX_IRQ_INDEX);
    close(efd);
    nvme_ctrl_fini(&c, p.container);
    vfio_pci_close(&p);
    tap_exit();
}
